//! The `websocket { }` block's own `authorization {}` and
//! `no_auth_user` (nats-server's auth override for WebSocket clients):
//! async-nats over `ws://` against ours and nats-server 2.15.1 with the
//! same configuration, plus the start checks nats-server makes.

use std::time::Duration;

use bus_embedded_server::{ServerConfig, ServerHandle, start};
use futures::StreamExt;
use nats_test_server::{NatsServer, ServerOptions, free_port};

const WAIT: Duration = Duration::from_secs(5);

const USERS: &str = r#"
authorization {
  users = [
    { user: alice, password: secret },
    { user: bob, password: pw2, permissions: { publish: ["allowed.>"], subscribe: ["allowed.>", "_INBOX.>"] } }
  ]
}
no_auth_user: alice
"#;

/// A server with `top` and `websocket { port, no_tls, <ws_keys> }`:
/// (name, ws url, nats url, keep-alive).
async fn both(
    top: &str,
    ws_keys: &str,
) -> Vec<(&'static str, String, String, Box<dyn std::any::Any>)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("server.conf");
    std::fs::write(
        &path,
        format!(
            "port: -1\n{top}\nwebsocket {{ host: 127.0.0.1, port: -1, no_tls: true, {ws_keys} }}\n"
        ),
    )
    .expect("write config");
    let cli = bus_embedded_server::cli::parse_args(["-c".to_owned(), path.display().to_string()])
        .expect("flags");
    let options = bus_embedded_server::options::from_cli(&cli, ServerConfig::default())
        .expect("configuration accepted");
    let ours: ServerHandle = start(options.config).await.expect("our server starts");
    let ours_ws = ours.websocket_url().expect("ws listener");
    let ours_nats = ours.client_url();
    let ws_port = free_port();
    let theirs = NatsServer::start_with(ServerOptions {
        extra_config: Some(format!(
            "{top}\nwebsocket {{ port: {ws_port}, no_tls: true, {ws_keys} }}\n"
        )),
        ..ServerOptions::core()
    })
    .await;
    let theirs_nats = theirs.url();
    vec![
        ("ours", ours_ws, ours_nats, Box::new((ours, dir))),
        (
            "nats-server",
            format!("ws://127.0.0.1:{ws_port}"),
            theirs_nats,
            Box::new(theirs),
        ),
    ]
}

async fn connect(
    url: &str,
    opts: async_nats::ConnectOptions,
) -> Result<async_nats::Client, String> {
    match tokio::time::timeout(
        WAIT,
        opts.retry_on_initial_connect()
            .max_reconnects(0)
            .connect(url),
    )
    .await
    {
        Ok(Ok(c)) => {
            // With retry_on_initial_connect the refusal shows on flush.
            match tokio::time::timeout(Duration::from_secs(2), c.flush()).await {
                Ok(Ok(())) => Ok(c),
                other => Err(format!("{other:?}")),
            }
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

fn plain() -> async_nats::ConnectOptions {
    async_nats::ConnectOptions::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_block_user_password_replace_the_servers_for_ws_clients_only() {
    for (name, ws, nats, _keep) in both("", "authorization { user: wsu, password: wsp }").await {
        let ok = connect(
            &ws,
            async_nats::ConnectOptions::with_user_and_password("wsu".into(), "wsp".into()),
        )
        .await;
        assert!(ok.is_ok(), "{name}: right password refused: {ok:?}");
        let bad = connect(
            &ws,
            async_nats::ConnectOptions::with_user_and_password("wsu".into(), "no".into()),
        )
        .await;
        assert!(bad.is_err(), "{name}: wrong password accepted");
        let none = connect(&ws, plain()).await;
        assert!(none.is_err(), "{name}: no credentials accepted over ws");
        let tcp = connect(&nats, plain()).await;
        assert!(
            tcp.is_ok(),
            "{name}: the client port needs no credentials: {tcp:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_block_token_is_the_only_token_over_ws() {
    for (name, ws, _nats, _keep) in both(
        "authorization { token: natstok }",
        "authorization { token: wstok }",
    )
    .await
    {
        let ok = connect(&ws, async_nats::ConnectOptions::with_token("wstok".into())).await;
        assert!(ok.is_ok(), "{name}: block token refused: {ok:?}");
        let server = connect(
            &ws,
            async_nats::ConnectOptions::with_token("natstok".into()),
        )
        .await;
        assert!(
            server.is_err(),
            "{name}: the server's token accepted over ws"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_block_no_auth_user_gets_that_users_permissions() {
    for (name, ws, nats, _keep) in both(USERS, "no_auth_user: bob").await {
        let alice = connect(&nats, plain())
            .await
            .unwrap_or_else(|e| panic!("{name}: tcp: {e}"));
        let mut seen = alice.subscribe(">").await.expect("sub");
        alice.flush().await.expect("flush");
        let bob = connect(&ws, plain())
            .await
            .unwrap_or_else(|e| panic!("{name}: ws: {e}"));
        // bob may publish only to allowed.>: the other never arrives.
        bob.publish("secret.x", "no".into()).await.expect("pub");
        bob.publish("allowed.x", "yes".into()).await.expect("pub");
        bob.flush().await.expect("flush");
        let first = tokio::time::timeout(WAIT, seen.next())
            .await
            .expect("a message")
            .expect("open");
        assert_eq!(first.subject.as_str(), "allowed.x", "{name}");
        // A named user still logs in with its own password over ws.
        let named = connect(
            &ws,
            async_nats::ConnectOptions::with_user_and_password("alice".into(), "secret".into()),
        )
        .await;
        assert!(named.is_ok(), "{name}: alice refused: {named:?}");
        let wrong = connect(
            &ws,
            async_nats::ConnectOptions::with_user_and_password("alice".into(), "x".into()),
        )
        .await;
        assert!(wrong.is_err(), "{name}: wrong password accepted");
    }
}

#[test]
fn websocket_block_authorization_that_cannot_work_refuses_the_start() {
    let cases = [
        (
            format!(
                "{USERS}\nwebsocket {{ port: 8080, no_tls: true, authorization {{ user: a, password: b }} }}\n"
            ),
            "websocket authentication username not compatible with presence of users/nkeys",
        ),
        (
            format!(
                "{USERS}\nwebsocket {{ port: 8080, no_tls: true, authorization {{ token: t }} }}\n"
            ),
            "websocket authentication token not compatible with presence of users/nkeys",
        ),
        (
            "websocket { port: 8080, no_tls: true, no_auth_user: nobody }\n".to_owned(),
            "no_auth_user: \"nobody\" present, but users/nkeys are not defined",
        ),
    ];
    for (text, expected) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("server.conf");
        std::fs::write(&path, &text).expect("write");
        let cli =
            bus_embedded_server::cli::parse_args(["-c".to_owned(), path.display().to_string()])
                .expect("flags");
        let err = bus_embedded_server::options::from_cli(&cli, ServerConfig::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_else(|| panic!("accepted:\n{text}"));
        assert!(err.contains(expected), "{err}");
        // nats-server says the same (it stops at start).
        let out = std::process::Command::new("nats-server")
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg("-1")
            .arg("-m")
            .arg("0")
            .output()
            .expect("run nats-server");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success() && said.contains(expected),
            "nats-server: {said}"
        );
    }
}
