//! The `mqtt { }` block's own `tls {}`, `authorization {}` and
//! `no_auth_user`: paho-mqtt (and nats-py beside it) against ours and
//! nats-server 2.15.1 with the same configuration and the same script
//! (`tests/clients/python/mqtt_tls_auth.py`: its header lists the
//! scenarios of each mode), plus the start checks nats-server makes on
//! such a block.
//!
//! Certificates are made at test time (`nats_test_server::tls::TestPki`).
//! paho-mqtt and nats-py are installed by `scripts/test.sh`; when they
//! are missing the script exits 3 and the test fails, it never skips.

mod py_scenarios;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use bus_embedded_server::cli::Cli;
use bus_embedded_server::{ServerConfig, ServerHandle, options, start};
use nats_test_server::tls::TestPki;
use nats_test_server::{NatsServer, ServerOptions, free_port};

/// The users of the `noauth` mode (see the script's header).
const USERS: &str = r#"
authorization {
  users = [
    { user: alice, password: secret },
    { user: bob, password: pw2, permissions: { publish: ["allowed.>"], subscribe: ["allowed.>"] } }
  ]
}
no_auth_user: alice
"#;

/// The top-level configuration and the `mqtt { }` keys (besides the
/// port) of a script mode.
fn mode_config(mode: &str, pki: &TestPki) -> (String, String) {
    let files = format!(
        "cert_file: {:?}, key_file: {:?}",
        pki.server_cert().display().to_string(),
        pki.server_key().display().to_string()
    );
    match mode {
        "tls" => (String::new(), format!("tls {{ {files} }}")),
        "mtls" => (
            String::new(),
            format!(
                "tls {{ {files}, ca_file: {:?}, verify: true }}",
                pki.ca_file().display().to_string()
            ),
        ),
        "user" => (
            String::new(),
            "authorization { user: mq, password: mqpw, timeout: 1 }".to_owned(),
        ),
        "token" => (
            "authorization { token: natstok }".to_owned(),
            "authorization { token: mqtok }".to_owned(),
        ),
        "noauth" => (USERS.to_owned(), "no_auth_user: bob".to_owned()),
        other => panic!("no mode {other}"),
    }
}

/// Ours from a configuration file (as the binary reads it).
async fn ours(dir: &Path, top: &str, mqtt_keys: &str) -> ServerHandle {
    let path = dir.join("server.conf");
    let text = format!(
        "server_name: ours\nport: -1\njetstream {{ store_dir: {:?} }}\n{top}\nmqtt {{ host: 127.0.0.1, port: -1, {mqtt_keys} }}\n",
        dir.join("js").display().to_string()
    );
    std::fs::write(&path, text).expect("write config");
    let cli = Cli {
        config: Some(path),
        ..Cli::default()
    };
    let o = options::from_cli(&cli, ServerConfig::default()).expect("configuration accepted");
    start(o.config).await.expect("our server starts")
}

async fn reference(top: &str, mqtt_port: u16, mqtt_keys: &str) -> NatsServer {
    NatsServer::start_with(ServerOptions {
        extra_config: Some(format!(
            "{top}\nmqtt {{ port: {mqtt_port}, {mqtt_keys} }}\n"
        )),
        ..ServerOptions::default()
    })
    .await
}

/// Runs the script's `mode` against `mqtt_port` / `nats_url` and asserts
/// every scenario passed.
async fn run_script(mode: &str, mqtt_port: u16, nats_url: String, pki: &Path, server: &str) {
    py_scenarios::run(
        py_scenarios::script("mqtt_tls_auth.py"),
        vec![
            mode.to_string(),
            mqtt_port.to_string(),
            nats_url.clone(),
            pki.display().to_string(),
        ],
        vec![],
        format!("mode {mode} against {server} (mqtt port {mqtt_port}, {nats_url})"),
    )
    .await;
}

async fn on_ours(mode: &str) {
    let pki = TestPki::generate();
    let dir = tempfile::tempdir().expect("temp dir");
    let (top, keys) = mode_config(mode, &pki);
    let server = ours(dir.path(), &top, &keys).await;
    let port = server.mqtt_addr().expect("mqtt listener").port();
    run_script(mode, port, server.client_url(), pki.dir(), "ours").await;
    server.shutdown(Duration::from_secs(2)).await;
}

async fn on_nats_server(mode: &str) {
    let pki = TestPki::generate();
    let (top, keys) = mode_config(mode, &pki);
    let port = free_port();
    let server = reference(&top, port, &keys).await;
    run_script(mode, port, server.url(), pki.dir(), "nats-server").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_over_tls_on_ours() {
    on_ours("tls").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_over_tls_on_nats_server() {
    on_nats_server("tls").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_mutual_tls_requires_a_client_certificate_on_ours() {
    on_ours("mtls").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_mutual_tls_requires_a_client_certificate_on_nats_server() {
    on_nats_server("mtls").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_block_user_password_and_timeout_on_ours() {
    on_ours("user").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_block_user_password_and_timeout_on_nats_server() {
    on_nats_server("user").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_block_token_replaces_the_server_token_on_ours() {
    on_ours("token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_block_token_replaces_the_server_token_on_nats_server() {
    on_nats_server("token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_block_no_auth_user_with_its_permissions_on_ours() {
    on_ours("noauth").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_block_no_auth_user_with_its_permissions_on_nats_server() {
    on_nats_server("noauth").await;
}

// ------------------------------------------------------------ start checks

/// Ours's configuration error for `text`, or `None` when accepted.
fn our_start_error(text: &str) -> Option<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("server.conf");
    std::fs::write(&path, text).expect("write config");
    let cli = Cli {
        config: Some(path),
        ..Cli::default()
    };
    options::from_cli(&cli, ServerConfig::default())
        .err()
        .map(|e| e.to_string())
}

/// nats-server's output when it refuses to start with `text`, or `None`
/// when it starts (stopped after 3 s). (`-t` does not make these checks.)
fn nats_server_start_error(text: &str) -> Option<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("server.conf");
    std::fs::write(&path, text).expect("write config");
    let mut child = Command::new("nats-server")
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nats-server (install nats-server 2.15.1)");
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            let out = child.wait_with_output().expect("output");
            return (!status.success()).then(|| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn mqtt_block_authorization_that_cannot_work_refuses_the_start_like_nats_server() {
    let base = "server_name: s\nport: -1\nhttp_port: -1\njetstream: enabled\n";
    let cases = [
        (
            format!(
                "{base}{USERS}\nmqtt {{ port: -1, authorization {{ user: a, password: b }} }}\n"
            ),
            "mqtt authentication username not compatible with presence of users/nkeys",
        ),
        (
            format!("{base}{USERS}\nmqtt {{ port: -1, authorization {{ token: t }} }}\n"),
            "mqtt authentication token not compatible with presence of users/nkeys",
        ),
        (
            format!("{base}\nmqtt {{ port: -1, no_auth_user: nobody }}\n"),
            "no_auth_user: \"nobody\" present, but users/nkeys are not defined",
        ),
        (
            format!("{base}{USERS}\nmqtt {{ port: -1, no_auth_user: nobody }}\n"),
            "no_auth_user: \"nobody\" not present as user or nkey in authorization block or account configuration",
        ),
    ];
    for (text, expected) in cases {
        let ours = our_start_error(&text).unwrap_or_else(|| panic!("ours accepted:\n{text}"));
        assert!(ours.contains(expected), "ours: {ours}\n{text}");
        let theirs = nats_server_start_error(&text)
            .unwrap_or_else(|| panic!("nats-server accepted:\n{text}"));
        assert!(theirs.contains(expected), "nats-server: {theirs}\n{text}");
    }
    // `users` inside the block: an unknown field on both.
    let text = format!("{base}\nmqtt {{ port: -1, authorization {{ users: [] }} }}\n");
    let ours = our_start_error(&text).unwrap_or_default();
    assert!(ours.contains("unknown field"), "ours: {ours}");
    let theirs = nats_server_start_error(&text).unwrap_or_default();
    assert!(theirs.contains("unknown field"), "nats-server: {theirs}");
}

#[tokio::test]
async fn unusable_mqtt_tls_files_refuse_the_start() {
    let pki = TestPki::generate();
    let mut config = ServerConfig {
        port: 0,
        server_name: "s".into(),
        jetstream: Some(bus_embedded_server::JetStreamConfig {
            store_dir: tempfile::tempdir().expect("dir").keep(),
            ..Default::default()
        }),
        ..ServerConfig::default()
    };
    let mut mqtt = bus_embedded_server::MqttConfig::new("127.0.0.1", 0);
    let mut tls =
        bus_embedded_server::TlsConfig::new(pki.server_cert(), pki.dir().join("none.pem"));
    mqtt.tls = Some(tls.clone());
    config.mqtt = Some(mqtt.clone());
    let err = start(config.clone()).await.err().map(|e| e.to_string());
    assert!(
        err.as_deref()
            .is_some_and(|e| e.starts_with("mqtt TLS: ") && e.contains("none.pem")),
        "{err:?}"
    );
    // verify without a CA.
    tls.key_file = pki.server_key();
    tls.verify = true;
    mqtt.tls = Some(tls);
    config.mqtt = Some(mqtt);
    let err = start(config).await.err().map(|e| e.to_string());
    assert!(
        err.as_deref()
            .is_some_and(|e| e.contains("verify requires ca_file")),
        "{err:?}"
    );
}
