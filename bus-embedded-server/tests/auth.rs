//! Authentication as nats-server does it: token, user/password (plain or
//! bcrypt), the auth timeout, and `Authorization Violation` for anything else,
//! checked against nats-server 2.15.1 where the wire replies can be compared.

use std::time::Duration;

use bus_embedded_server::{Auth, ServerConfig, ServerHandle, User, start};
use nats_test_server::{NatsServer, ServerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn ours(auth: Auth, auth_timeout: Duration) -> ServerHandle {
    start(ServerConfig {
        port: 0,
        auth: Some(auth),
        auth_timeout,
        ..ServerConfig::default()
    })
    .await
    .expect("start")
}

/// What the server says to `input` until it closes or goes quiet, INFO masked.
async fn exchange(addr: &str, input: &[u8], quiet: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(input).await.expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(quiet, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                out.extend_from_slice(b"<closed>");
                break;
            }
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    match text.split_once("\r\n") {
        Some((info, rest)) if info.starts_with("INFO ") => {
            let auth = if info.contains("\"auth_required\":true") {
                "auth_required"
            } else {
                "open"
            };
            format!("INFO <{auth}>\r\n{rest}")
        }
        _ => text,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_password_replies_match_nats_server() {
    let reference = NatsServer::start_with(ServerOptions::core().with_user("app", "s3cret")).await;
    let server = ours(
        Auth::Users(vec![User {
            name: "app".into(),
            password: "s3cret".into(),
        }]),
        Duration::from_secs(2),
    )
    .await;
    let ref_addr = format!("127.0.0.1:{}", reference.port());
    let our_addr = server.addr().to_string();
    let quiet = Duration::from_millis(400);
    let mut differences = Vec::new();
    for (name, input) in [
        (
            "right credentials",
            "CONNECT {\"verbose\":false,\"user\":\"app\",\"pass\":\"s3cret\"}\r\nPING\r\n",
        ),
        (
            "wrong password",
            "CONNECT {\"verbose\":false,\"user\":\"app\",\"pass\":\"nope\"}\r\nPING\r\n",
        ),
        (
            "unknown user",
            "CONNECT {\"verbose\":false,\"user\":\"eve\",\"pass\":\"s3cret\"}\r\nPING\r\n",
        ),
        ("no credentials", "CONNECT {\"verbose\":false}\r\nPING\r\n"),
        (
            "token instead",
            "CONNECT {\"verbose\":false,\"auth_token\":\"s3cret\"}\r\nPING\r\n",
        ),
        ("ping before connect", "PING\r\n"),
        ("pub before connect", "PUB a 1\r\nx\r\n"),
    ] {
        let (want, got) = tokio::join!(
            exchange(&ref_addr, input.as_bytes(), quiet),
            exchange(&our_addr, input.as_bytes(), quiet)
        );
        if want != got {
            differences.push(format!(
                "{name}:\n  nats-server: {want:?}\n  ours:        {got:?}"
            ));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

#[tokio::test]
async fn no_connect_within_the_auth_timeout_is_closed() {
    let server = ours(Auth::Token("t0ken".into()), Duration::from_millis(300)).await;
    let said = exchange(&server.addr().to_string(), b"", Duration::from_secs(3)).await;
    assert_eq!(
        said,
        "INFO <auth_required>\r\n-ERR 'Authentication Timeout'\r\n<closed>"
    );
}

#[tokio::test]
async fn token_auth_with_async_nats() {
    let server = ours(Auth::Token("t0ken".into()), Duration::from_secs(2)).await;
    let ok = async_nats::ConnectOptions::with_token("t0ken".into())
        .connect(server.client_url())
        .await
        .expect("right token");
    ok.flush().await.expect("flush");
    let err = async_nats::ConnectOptions::with_token("wrong".into())
        .connect(server.client_url())
        .await
        .expect_err("wrong token");
    assert_eq!(
        err.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation
    );
}

#[tokio::test]
async fn bcrypt_password_is_accepted_and_plain_text_is_not_needed() {
    let hash = bcrypt::hash("s3cret", 4).expect("hash");
    let auth = Auth::Users(vec![User {
        name: "app".into(),
        password: hash,
    }]);
    assert!(!auth.has_plain_secrets());
    let server = ours(auth, Duration::from_secs(2)).await;
    let ok = async_nats::ConnectOptions::with_user_and_password("app".into(), "s3cret".into())
        .connect(server.client_url())
        .await
        .expect("right password");
    ok.flush().await.expect("flush");
    let err = async_nats::ConnectOptions::with_user_and_password("app".into(), "wrong".into())
        .connect(server.client_url())
        .await
        .expect_err("wrong password");
    assert_eq!(
        err.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation
    );
}

#[test]
fn plain_secrets_are_detected() {
    assert!(Auth::Token("plain".into()).has_plain_secrets());
    assert!(
        Auth::Users(vec![User {
            name: "a".into(),
            password: "p".into()
        }])
        .has_plain_secrets()
    );
}

/// A bcrypt check takes a long time by design; it must not stall the other
/// connections served by the same thread (issue #12 item 9). The server
/// runs on a single-threaded runtime of its own, so a check done on its
/// worker would hold up every round trip of an already connected client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bcrypt_login_does_not_stall_other_connections() {
    // Cost 12: hundreds of milliseconds even in a release build.
    let hash = bcrypt::hash("slow-secret", 12).expect("hash");
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let server = ours(
                Auth::Users(vec![User {
                    name: "u".into(),
                    password: hash,
                }]),
                Duration::from_secs(30),
            )
            .await;
            addr_tx.send(server.client_url()).expect("send url");
            std::future::pending::<()>().await;
        });
    });
    let url = addr_rx.recv().expect("server url");
    let login =
        || async_nats::ConnectOptions::with_user_and_password("u".into(), "slow-secret".into());
    let a = login().connect(&url).await.expect("first client");
    // A answers its own requests: each is a round trip through the server
    // (async-nats' flush is not one).
    let mut echo = a.subscribe("rt.echo").await.expect("subscribe");
    let responder = a.clone();
    tokio::spawn(async move {
        use futures::StreamExt;
        while let Some(m) = echo.next().await {
            if let Some(reply) = m.reply {
                let _ = responder.publish(reply, m.payload).await;
            }
        }
    });
    a.request("rt.echo", "warm-up".into())
        .await
        .expect("first round trip");
    // B logs in (one bcrypt check) while A keeps doing round trips.
    let b = tokio::spawn({
        let url = url.clone();
        async move {
            let begun = std::time::Instant::now();
            let b = login().connect(&url).await.expect("second client");
            (b, begun.elapsed())
        }
    });
    let mut slowest = Duration::ZERO;
    while !b.is_finished() {
        let begun = std::time::Instant::now();
        a.request("rt.echo", "x".into()).await.expect("round trip");
        slowest = slowest.max(begun.elapsed());
    }
    let (_b, login_took) = b.await.expect("login task");
    assert!(
        slowest < login_took / 3,
        "a round trip of another client took {slowest:?} while a login took {login_took:?}"
    );
}
