//! Authorization as nats-server 2.15.1 does it: nkey users (a signature over
//! the INFO nonce) and per-user publish/subscribe permissions with
//! allow_responses and default_permissions. The same configuration text is
//! given to nats-server and to ours; raw protocol replies and what
//! async-nats and nats-py report are compared between the two.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use bus_embedded_server::jetstream::JetStreamConfig;
use bus_embedded_server::{ServerConfig, ServerHandle, conf, start};
use futures::StreamExt;
use nats_test_server::{NatsServer, ServerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A user nkey pair for the tests: (seed, public key).
fn user_key() -> (String, String) {
    let kp = nkeys::KeyPair::new_user();
    (kp.seed().expect("seed"), kp.public_key())
}

/// Our server configured from `authorization { ... }` text, as the binary
/// would read it.
async fn ours(config_text: &str, jetstream: Option<&Path>) -> ServerHandle {
    let root = conf::parse(config_text, Path::new("test.conf"), &|_| None).expect("config parses");
    let (auth, timeout) =
        conf::authorization_from_conf(root.get("authorization").expect("authorization block"))
            .expect("authorization accepted");
    start(ServerConfig {
        port: 0,
        auth,
        auth_timeout: timeout.unwrap_or(Duration::from_secs(2)),
        jetstream: jetstream.map(|dir| JetStreamConfig {
            store_dir: dir.to_path_buf(),
            ..JetStreamConfig::default()
        }),
        ..ServerConfig::default()
    })
    .await
    .expect("start")
}

async fn reference(config_text: &str, jetstream: bool) -> NatsServer {
    NatsServer::start_with(ServerOptions {
        jetstream,
        extra_config: Some(config_text.to_owned()),
        ..ServerOptions::core()
    })
    .await
}

/// Signs `nonce` with `seed`, base64url without padding (as clients send).
fn sign(seed: &str, nonce: &str) -> String {
    let kp = nkeys::KeyPair::from_seed(seed).expect("seed");
    let sig = kp.sign(nonce.as_bytes()).expect("sign");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig)
}

/// Reads INFO, sends what `input` makes of its nonce, and returns what the
/// server says until it closes or goes quiet, INFO masked (nonce noted).
async fn exchange(addr: &str, input: &dyn Fn(&str) -> String) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut info = Vec::new();
    let mut byte = [0u8; 1];
    while !info.ends_with(b"\r\n") {
        s.read_exact(&mut byte).await.expect("INFO");
        info.push(byte[0]);
    }
    let json: serde_json::Value =
        serde_json::from_slice(&info[5..info.len() - 2]).expect("INFO json");
    let nonce = json["nonce"].as_str().unwrap_or_default().to_owned();
    s.write_all(input(&nonce).as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_millis(400), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                out.extend_from_slice(b"<closed>");
                break;
            }
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    let nonce_note = if nonce.is_empty() { "" } else { " nonce" };
    format!(
        "INFO <masked{nonce_note}>\r\n{}",
        String::from_utf8_lossy(&out)
    )
}

fn connect(creds: &str) -> String {
    format!("CONNECT {{\"verbose\":false,\"pedantic\":false,{creds}}}\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_protocol_permission_and_nkey_replies_match_nats_server() {
    let (seed, public) = user_key();
    let (other_seed, _) = user_key();
    let config = format!(
        r#"authorization {{
  default_permissions: {{ publish: "def.>", subscribe: "def.>" }}
  users: [
    {{ nkey: {public}, permissions: {{ publish: "n.>", subscribe: ["n.>", "_INBOX.>"] }} }}
    {{ user: a, password: b, permissions: {{
        publish: {{ allow: ["foo.>", "bar"], deny: ["foo.secret"] }}
        subscribe: {{ allow: ["foo.*", "q.>", "w.* grp"], deny: ["foo.x", "q dq"] }}
    }} }}
    {{ user: d, password: b }}
    {{ user: p, password: b, permissions: {{ subscribe: "nothing" }} }}
  ]
}}"#
    );
    let reference = reference(&config, false).await;
    let server = ours(&config, None).await;
    let ref_addr = format!("127.0.0.1:{}", reference.port());
    let our_addr = server.addr().to_string();
    let a = connect("\"user\":\"a\",\"pass\":\"b\"");
    type Scenario<'a> = Box<dyn Fn(&str) -> String + 'a>;
    let scenarios: Vec<(&str, Scenario)> = vec![
        (
            "nkey login",
            Box::new(|n: &str| {
                connect(&format!(
                    "\"nkey\":\"{public}\",\"sig\":\"{}\"",
                    sign(&seed, n)
                )) + "PING\r\n"
            }),
        ),
        (
            "nkey with the signature of another key",
            Box::new(|n: &str| {
                connect(&format!(
                    "\"nkey\":\"{public}\",\"sig\":\"{}\"",
                    sign(&other_seed, n)
                )) + "PING\r\n"
            }),
        ),
        (
            "nkey without a signature",
            Box::new(|_: &str| connect(&format!("\"nkey\":\"{public}\"")) + "PING\r\n"),
        ),
        (
            "nkey with a garbage signature",
            Box::new(|_: &str| {
                connect(&format!("\"nkey\":\"{public}\",\"sig\":\"!!\"")) + "PING\r\n"
            }),
        ),
        (
            "nkey wins over a valid password",
            Box::new(|_: &str| {
                connect(&format!(
                    "\"user\":\"a\",\"pass\":\"b\",\"nkey\":\"{public}\",\"sig\":\"AAAA\""
                )) + "PING\r\n"
            }),
        ),
        (
            "nkey user permissions",
            Box::new(|n: &str| {
                connect(&format!(
                    "\"nkey\":\"{public}\",\"sig\":\"{}\"",
                    sign(&seed, n)
                )) + "SUB n.a 1\r\nSUB x 2\r\nPUB n.a 1\r\nx\r\nPUB x 1\r\nx\r\nPING\r\n"
            }),
        ),
        (
            "publish allow and deny with wildcards",
            Box::new(|_: &str| {
                a.clone()
                    + "SUB foo.> 1\r\nPUB foo.secret 1\r\nx\r\nPUB foo.y 1\r\ny\r\nPUB bar 1\r\nz\r\n\
                       PUB baz 1\r\nw\r\nPUB foo.a.b 1\r\nv\r\nPING\r\n"
            }),
        ),
        (
            "subscribe allow and deny with wildcards and queues",
            Box::new(|_: &str| {
                a.clone()
                    + "SUB foo.x 1\r\nSUB foo.y 2\r\nSUB foo.* 3\r\nSUB q.* 4\r\nSUB bar grp 5\r\n\
                       SUB * 6\r\nSUB > 7\r\nSUB w.a 8\r\nSUB w.a grp 9\r\nSUB w.a g2 10\r\n\
                       SUB q.a dq 11\r\nSUB q dq 12\r\nSUB foo..a 13\r\nPING\r\n"
            }),
        ),
        (
            "verbose: violations get no +OK",
            Box::new(|_: &str| {
                "CONNECT {\"verbose\":true,\"user\":\"a\",\"pass\":\"b\"}\r\nSUB foo.x 1\r\n\
                 PUB baz 1\r\nw\r\nSUB foo.y 2\r\nPING\r\n"
                    .to_owned()
            }),
        ),
        (
            "pedantic: invalid subjects and permissions",
            Box::new(|_: &str| {
                "CONNECT {\"verbose\":false,\"pedantic\":true,\"user\":\"a\",\"pass\":\"b\"}\r\n\
                 PUB foo.* 1\r\nx\r\nPUB baz.* 1\r\nx\r\nPUB foo..x 1\r\nx\r\nPING\r\n"
                    .to_owned()
            }),
        ),
        (
            "default permissions for a user without its own",
            Box::new(|_: &str| {
                connect("\"user\":\"d\",\"pass\":\"b\"")
                    + "SUB def.a 1\r\nSUB x 2\r\nPUB def.a 1\r\nx\r\nPUB x 1\r\nx\r\nPING\r\n"
            }),
        ),
        (
            "subscribe-only permissions leave publish open",
            Box::new(|_: &str| {
                connect("\"user\":\"p\",\"pass\":\"b\"")
                    + "SUB x 1\r\nSUB nothing 2\r\nPUB nothing 1\r\nx\r\nPUB x 1\r\nx\r\nPING\r\n"
            }),
        ),
    ];
    let mut differences = Vec::new();
    for (name, input) in &scenarios {
        let (want, got) = tokio::join!(exchange(&ref_addr, input), exchange(&our_addr, input));
        if want != got {
            differences.push(format!(
                "{name}:\n  nats-server: {want:?}\n  ours:        {got:?}"
            ));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

/// Two connections on one server: a publisher and a subscriber whose
/// wildcard subscription covers a subject it may not subscribe to.
async fn deny_filter_outcome(addr: &str) -> String {
    let sub = TcpStream::connect(addr).await.expect("connect");
    let publ = TcpStream::connect(addr).await.expect("connect");
    let (mut sub, mut publ) = (sub, publ);
    let mut buf = vec![0u8; 4096];
    let _ = sub.read(&mut buf).await;
    let _ = publ.read(&mut buf).await;
    sub.write_all(
        b"CONNECT {\"verbose\":false,\"user\":\"s\",\"pass\":\"b\"}\r\nSUB foo.* 1\r\nPING\r\n",
    )
    .await
    .expect("write");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let n = sub.read(&mut buf).await.expect("PONG");
    assert_eq!(&buf[..n], b"PONG\r\n");
    publ.write_all(b"CONNECT {\"verbose\":false,\"user\":\"pub\",\"pass\":\"b\"}\r\nPUB foo.x 1\r\nx\r\nPUB foo.y 1\r\ny\r\nPING\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(300)).await;
    sub.write_all(b"PING\r\n").await.expect("write");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let n = sub.read(&mut buf).await.expect("read");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_subscription_does_not_receive_denied_subjects_like_nats_server() {
    let config = r#"authorization { users: [
  { user: s, password: b, permissions: { subscribe: { deny: "foo.x" } } }
  { user: pub, password: b }
] }"#;
    let reference = reference(config, false).await;
    let server = ours(config, None).await;
    let want = deny_filter_outcome(&format!("127.0.0.1:{}", reference.port())).await;
    let got = deny_filter_outcome(&server.addr().to_string()).await;
    assert_eq!(want, "MSG foo.y 1 1\r\ny\r\nPONG\r\n");
    assert_eq!(got, want);
}

/// `"_INBOX.<random>"` in a message, masked (`_INBOX.manual` kept).
fn mask_inbox(text: &str) -> String {
    match text.split_once("\"_INBOX.") {
        Some((head, tail)) if !tail.starts_with("manual") => {
            let rest = tail.split_once('"').map_or("", |(_, r)| r);
            format!("{head}\"_INBOX.<random>\"{rest}")
        }
        _ => text.to_owned(),
    }
}

/// A responder that may publish nothing but answers: one reply per
/// request with allow_responses: true; a second reply and any other
/// publish are violations.
async fn allow_responses_outcome(url: &str) -> Vec<String> {
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let svc = async_nats::ConnectOptions::with_user_and_password("svc".into(), "b".into())
        .event_callback(move |e| {
            let tx = events_tx.clone();
            async move {
                let _ = tx.send(e.to_string());
            }
        })
        .connect(url)
        .await
        .expect("svc connects");
    let client = async_nats::ConnectOptions::with_user_and_password("c".into(), "b".into())
        .request_timeout(Some(Duration::from_secs(10)))
        .connect(url)
        .await
        .expect("client connects");
    let mut requests = svc.subscribe("svc").await.expect("svc subscribes");
    svc.flush().await.expect("flush");
    let service = tokio::spawn({
        let svc = svc.clone();
        async move {
            while let Some(req) = requests.next().await {
                let reply = req.reply.expect("reply subject");
                // Two answers: the second is over the limit of 1.
                svc.publish(reply.clone(), "one".into())
                    .await
                    .expect("publish");
                svc.publish(reply, "two".into()).await.expect("publish");
                svc.publish("elsewhere", "x".into()).await.expect("publish");
                svc.flush().await.expect("flush");
            }
        }
    });
    // A request first: answered once it reaches the service, which proves
    // the service is listening.
    let mut outcome = Vec::new();
    // async-nats' flush is not a round trip, so the service's SUB may reach
    // the server after this request does: retry while nobody listens yet.
    let mut attempts = 0;
    let answer = loop {
        match client.request("svc", "q1".into()).await {
            Ok(answer) => break answer,
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders && attempts < 50 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("request: {e:?}"),
        }
    };
    outcome.push(format!(
        "request: {}",
        String::from_utf8_lossy(&answer.payload)
    ));
    // Then with a reply subject of our own, to see every answer.
    let mut inbox = client.subscribe("_INBOX.manual").await.expect("inbox");
    client
        .publish_with_reply("svc", "_INBOX.manual", "q2".into())
        .await
        .expect("request");
    client.flush().await.expect("flush");
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), inbox.next()).await {
        outcome.push(format!("reply: {}", String::from_utf8_lossy(&m.payload)));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(e) = events.try_recv() {
        outcome.push(format!("svc event: {}", mask_inbox(&e)));
    }
    service.abort();
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_responses_lets_a_service_answer_requests_once_like_nats_server() {
    let config = r#"authorization { users: [
  { user: svc, password: b, permissions: { publish: { deny: ">" }, subscribe: "svc", allow_responses: true } }
  { user: c, password: b }
] }"#;
    let reference = reference(config, false).await;
    let server = ours(config, None).await;
    let want = allow_responses_outcome(&reference.url()).await;
    let got = allow_responses_outcome(&server.client_url()).await;
    assert_eq!(
        want.iter().filter(|l| l.starts_with("reply")).count(),
        1,
        "{want:?}"
    );
    assert!(want.contains(&"request: one".to_owned()), "{want:?}");
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_responses_max_and_expiry_are_enforced() {
    let config = r#"authorization { users: [
  { user: svc, password: b, permissions: { publish: "none", subscribe: "svc", allow_responses: { max: 2, expires: "300ms" } } }
  { user: c, password: b }
] }"#;
    let server = ours(config, None).await;
    let client = async_nats::ConnectOptions::with_user_and_password("c".into(), "b".into())
        .connect(server.client_url())
        .await
        .expect("client");
    let mut inbox = client.subscribe("_INBOX.r").await.expect("inbox");
    client.flush().await.expect("flush");
    let mut svc = TcpStream::connect(server.addr()).await.expect("connect");
    svc.write_all(
        b"CONNECT {\"verbose\":false,\"user\":\"svc\",\"pass\":\"b\"}\r\nSUB svc 1\r\nPING\r\n",
    )
    .await
    .expect("write");
    let mut buf = vec![0u8; 4096];
    tokio::time::sleep(Duration::from_millis(150)).await;
    let _ = svc.read(&mut buf).await;
    client
        .publish_with_reply("svc", "_INBOX.r", "q".into())
        .await
        .expect("request");
    client.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(100)).await;
    svc.write_all(b"PUB _INBOX.r 1\r\n1\r\nPUB _INBOX.r 1\r\n2\r\nPUB _INBOX.r 1\r\n3\r\nPING\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let n = svc.read(&mut buf).await.expect("read");
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        text.ends_with("-ERR 'Permissions Violation for Publish to \"_INBOX.r\"'\r\nPONG\r\n"),
        "{text:?}"
    );
    for want in ["1", "2"] {
        let m = tokio::time::timeout(Duration::from_secs(2), inbox.next())
            .await
            .expect("reply in time")
            .expect("reply");
        assert_eq!(m.payload, want.as_bytes());
    }
    // A new request, answered after the 300 ms expiry: refused.
    client
        .publish_with_reply("svc", "_INBOX.r", "q".into())
        .await
        .expect("request");
    client.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(450)).await;
    svc.write_all(b"PUB _INBOX.r 1\r\n4\r\nPING\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let n = svc.read(&mut buf).await.expect("read");
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        text.ends_with("-ERR 'Permissions Violation for Publish to \"_INBOX.r\"'\r\nPONG\r\n"),
        "{text:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nkey_login_with_async_nats_ok_wrong_seed_and_missing_sig() {
    let (seed, public) = user_key();
    let (wrong_seed, _) = user_key();
    let config = format!("authorization {{ users: [ {{ nkey: {public} }} ] }}");
    let reference = reference(&config, false).await;
    let server = ours(&config, None).await;
    for url in [reference.url(), server.client_url()] {
        let ok = async_nats::ConnectOptions::with_nkey(seed.clone())
            .connect(&url)
            .await
            .expect("right seed connects");
        ok.flush().await.expect("flush");
        let err = async_nats::ConnectOptions::with_nkey(wrong_seed.clone())
            .connect(&url)
            .await
            .expect_err("wrong seed is refused");
        assert_eq!(
            err.kind(),
            async_nats::ConnectErrorKind::AuthorizationViolation,
            "{url}: {err}"
        );
        let err = async_nats::ConnectOptions::with_user_and_password("x".into(), "y".into())
            .connect(&url)
            .await
            .expect_err("no nkey is refused");
        assert_eq!(
            err.kind(),
            async_nats::ConnectErrorKind::AuthorizationViolation
        );
    }
    let said = exchange(&server.addr().to_string(), &|_| {
        connect(&format!("\"nkey\":\"{public}\"")) + "PING\r\n"
    })
    .await;
    assert_eq!(
        said,
        "INFO <masked nonce>\r\n-ERR 'Authorization Violation'\r\n<closed>"
    );
}

/// What async-nats reports for a publish and a subscription it may not make.
async fn async_nats_violation_events(url: &str) -> Vec<String> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let nc = async_nats::ConnectOptions::with_user_and_password("a".into(), "b".into())
        .event_callback(move |e| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(e.to_string());
            }
        })
        .connect(url)
        .await
        .expect("connects");
    nc.publish("denied.x", "x".into()).await.expect("publish");
    nc.flush().await.expect("flush");
    let _sub = nc.subscribe("denied.y").await.expect("subscribe");
    nc.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    events.push(format!("state: {:?}", nc.connection_state()));
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_nats_reports_violations_as_with_nats_server() {
    let config = r#"authorization { users: [
  { user: a, password: b, permissions: { publish: { deny: "denied.>" }, subscribe: { deny: "denied.>" } } }
] }"#;
    let reference = reference(config, false).await;
    let server = ours(config, None).await;
    let want = async_nats_violation_events(&reference.url()).await;
    let got = async_nats_violation_events(&server.client_url()).await;
    assert!(
        want.iter().any(|e| e.contains("Permissions Violation")),
        "{want:?}"
    );
    assert_eq!(got, want);
    for url in [reference.url(), server.client_url()] {
        let err = async_nats::ConnectOptions::with_user_and_password("a".into(), "x".into())
            .connect(&url)
            .await
            .expect_err("wrong password");
        assert_eq!(
            err.kind(),
            async_nats::ConnectErrorKind::AuthorizationViolation
        );
    }
}

fn nats_py(args: &[&str]) -> String {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python/authorization.py");
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "nats-py script failed (nats-py and nkeys are installed by `bash scripts/test.sh` \
         from tests/clients/python/requirements.txt):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_nkey_login_and_violations_as_with_nats_server() {
    let (seed, public) = user_key();
    let (wrong_seed, _) = user_key();
    let config = format!(
        r#"authorization {{ users: [
  {{ nkey: {public} }}
  {{ user: a, password: b, permissions: {{ publish: {{ deny: "denied.>" }}, subscribe: {{ deny: "denied.>" }} }} }}
] }}"#
    );
    let reference = reference(&config, false).await;
    let server = ours(&config, None).await;
    let (ref_url, our_url) = (reference.url(), server.client_url());
    let run = |args: Vec<String>| async move {
        tokio::task::spawn_blocking(move || {
            nats_py(&args.iter().map(String::as_str).collect::<Vec<_>>())
        })
        .await
        .expect("join")
    };
    for (name, args) in [
        ("right seed", vec!["nkey", seed.as_str()]),
        ("wrong seed", vec!["nkey", wrong_seed.as_str()]),
        ("violations", vec!["denied", "a", "b", "denied.x"]),
    ] {
        let with = |url: &str| {
            std::iter::once(url.to_owned())
                .chain(args.iter().map(|a| (*a).to_owned()))
                .collect::<Vec<_>>()
        };
        let want = run(with(&ref_url)).await;
        let got = run(with(&our_url)).await;
        match name {
            "right seed" => assert_eq!(want, "connected\n"),
            "wrong seed" => assert!(want.starts_with("connect failed"), "{want}"),
            _ => assert!(want.contains("ermissions"), "{want}"),
        }
        assert_eq!(got, want, "{name}");
    }
}

/// Creating a stream as a user without publish rights on
/// `$JS.API.STREAM.CREATE.>`: refused (the request is dropped, so it times
/// out), while other API calls work.
async fn jetstream_create_outcome(url: &str) -> (String, String) {
    let nc = async_nats::ConnectOptions::with_user_and_password("js".into(), "b".into())
        .request_timeout(Some(Duration::from_millis(1500)))
        .connect(url)
        .await
        .expect("connects");
    let js = async_nats::jetstream::new(nc);
    let info = match js.query_account().await {
        Ok(_) => "account info ok".to_owned(),
        Err(e) => format!("account info failed: {e}"),
    };
    let create = match js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "S".into(),
            subjects: vec!["s.>".into()],
            ..Default::default()
        })
        .await
    {
        Ok(_) => "created".to_owned(),
        Err(e) => format!("create failed: {:?}", e.kind()),
    };
    (info, create)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_api_is_denied_by_publish_permissions() {
    let config = r#"authorization { users: [
  { user: js, password: b, permissions: { publish: { deny: "$JS.API.STREAM.CREATE.>" } } }
] }"#;
    let store = tempfile::tempdir().expect("tempdir");
    let reference = reference(config, true).await;
    let server = ours(config, Some(store.path())).await;
    let want = jetstream_create_outcome(&reference.url()).await;
    let got = jetstream_create_outcome(&server.client_url()).await;
    assert_eq!(want.0, "account info ok");
    assert!(want.1.starts_with("create failed"), "{want:?}");
    assert_eq!(got, want);
}

/// What async-nats reports for a login, as a comparable string.
async fn async_nats_login(url: &str, mode: &str, a: &str, b: &str) -> String {
    let options = match mode {
        "user" => async_nats::ConnectOptions::with_user_and_password(a.into(), b.into()),
        "token" => async_nats::ConnectOptions::with_token(a.into()),
        _ => async_nats::ConnectOptions::new(),
    };
    match options
        .connection_timeout(Duration::from_secs(3))
        .connect(url)
        .await
    {
        Ok(nc) => match nc.flush().await {
            Ok(()) => "connected".to_owned(),
            Err(e) => format!("flush failed: {e}"),
        },
        Err(e) => format!("connect failed: {:?}", e.kind()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_and_password_logins_report_like_nats_server_in_both_clients() {
    let run_py = |args: Vec<String>| async move {
        tokio::task::spawn_blocking(move || {
            nats_py(&args.iter().map(String::as_str).collect::<Vec<_>>())
        })
        .await
        .expect("join")
    };
    for (config, cases) in [
        (
            "authorization { users: [ { user: a, password: b } ] }",
            vec![
                ("user", "a", "b", true),
                ("user", "a", "wrong", false),
                ("user", "nobody", "b", false),
                ("token", "b", "", false),
                ("anonymous", "", "", false),
            ],
        ),
        (
            "authorization { token: s3cret }",
            vec![
                ("token", "s3cret", "", true),
                ("token", "wrong", "", false),
                ("user", "a", "s3cret", false),
                ("anonymous", "", "", false),
            ],
        ),
    ] {
        let reference = reference(config, false).await;
        let server = ours(config, None).await;
        for (mode, a, b, ok) in cases {
            let want = async_nats_login(&reference.url(), mode, a, b).await;
            let got = async_nats_login(&server.client_url(), mode, a, b).await;
            assert_eq!(want == "connected", ok, "{config} {mode} {a}: {want}");
            assert_eq!(got, want, "async-nats, {config}, {mode} {a} {b}");
            let args = |url: String| {
                let mut v = vec![url, mode.to_owned()];
                v.extend(
                    [a, b]
                        .iter()
                        .filter(|s| !s.is_empty())
                        .map(|s| (*s).to_owned()),
                );
                v
            };
            let want = run_py(args(reference.url())).await;
            let got = run_py(args(server.client_url())).await;
            assert_eq!(want.starts_with("connected"), ok, "{config} {mode}: {want}");
            assert_eq!(got, want, "nats-py, {config}, {mode} {a} {b}");
        }
    }
}
