//! MQTT clients in operator mode (decentralized JWT authentication: the
//! MQTT password is a user JWT, a bearer one as MQTT has no nonce to sign)
//! and with a top-level `no_auth_user`: paho-mqtt against ours and
//! nats-server 2.15.1 started from the same configuration, by the same
//! script (`tests/clients/python/mqtt_operator.py`; its header lists the
//! scenarios of each mode). The JWTs are made here
//! (`operator_support`) and handed to the script in `MQTT_JWTS`.
//!
//! paho-mqtt is installed by `scripts/test.sh`; when it is missing the
//! script exits 3 and the test fails, it never skips.

mod operator_support;

mod py_scenarios;
use std::path::Path;
use std::time::Duration;

use bus_embedded_server::cli::Cli;
use bus_embedded_server::{ServerConfig, ServerHandle, options, start};
use nats_test_server::{NatsServer, ServerOptions, free_port};
use nkeys::KeyPair;
use operator_support::{Operator, now, open_limits, user, user_with_key};
use serde_json::json;

/// The operator-mode configuration (one account with JetStream) and the
/// user JWTs the script's `operator` mode names.
fn operator_world() -> (String, serde_json::Value) {
    let mut op = Operator::new();
    let revoked_key = KeyPair::new_user();
    let mut limits = open_limits();
    for (k, v) in [
        ("mem_storage", json!(-1)),
        ("disk_storage", json!(-1)),
        ("streams", json!(-1)),
        ("consumer", json!(-1)),
    ] {
        limits[k] = v;
    }
    let a = op.add_account(
        "A",
        json!({"limits": limits, "revocations": {revoked_key.public_key(): now() + 60}}),
    );
    let acc = &op.accounts[a].key;
    let bearer = |extra: serde_json::Value| {
        let mut nats = json!({"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
                              "bearer_token": true});
        if let serde_json::Value::Object(m) = extra {
            for (k, v) in m {
                nats[k] = v;
            }
        }
        nats
    };
    let jwts = json!({
        "bearer": user(acc, bearer(json!({})), json!({})).jwt,
        "plain": user(acc, bearer(json!({"bearer_token": false})), json!({})).jwt,
        "expired": user(acc, bearer(json!({})), json!({"exp": now() - 10})).jwt,
        "revoked": user_with_key(acc, revoked_key, bearer(json!({})), json!({})).jwt,
        "restricted": user(
            acc,
            bearer(json!({"pub": {"allow": ["ok.>"]}, "sub": {"allow": ["ok.>"]}})),
            json!({}),
        )
        .jwt,
        "mqtt_only": user(acc, bearer(json!({"allowed_connection_types": ["MQTT"]})), json!({})).jwt,
        "standard_only": user(
            acc,
            bearer(json!({"allowed_connection_types": ["STANDARD"]})),
            json!({}),
        )
        .jwt,
    });
    (op.config(), jwts)
}

/// The top-level configuration of the script's `noauth_top` mode.
const NOAUTH_TOP: &str = r#"
accounts { A { jetstream: enabled, users: [ {user: alice, password: apw}, {user: bob, password: bpw} ] } }
no_auth_user: bob
"#;

fn config(mode: &str) -> (String, serde_json::Value) {
    match mode {
        "operator" => operator_world(),
        "noauth_top" => (NOAUTH_TOP.to_owned(), json!({})),
        other => panic!("no mode {other}"),
    }
}

async fn ours(dir: &Path, top: &str) -> ServerHandle {
    let path = dir.join("server.conf");
    let text = format!(
        "server_name: ours\nport: -1\njetstream {{ store_dir: {:?} }}\n{top}\nmqtt {{ host: 127.0.0.1, port: -1 }}\n",
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

async fn run_script(mode: &str, mqtt_port: u16, jwts: &serde_json::Value, server: &str) {
    py_scenarios::run(
        py_scenarios::script("mqtt_operator.py"),
        vec![mode.to_string(), mqtt_port.to_string()],
        vec![("MQTT_JWTS", jwts.to_string())],
        format!("mode {mode} against {server} (mqtt port {mqtt_port})"),
    )
    .await;
}

async fn on_ours(mode: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (top, jwts) = config(mode);
    let server = ours(dir.path(), &top).await;
    let port = server.mqtt_addr().expect("mqtt listener").port();
    run_script(mode, port, &jwts, "ours").await;
    server.shutdown(Duration::from_secs(2)).await;
}

async fn on_nats_server(mode: &str) {
    let (top, jwts) = config(mode);
    let port = free_port();
    let _server = NatsServer::start_with(ServerOptions {
        extra_config: Some(format!("{top}\nmqtt {{ port: {port} }}\n")),
        ..ServerOptions::default()
    })
    .await;
    run_script(mode, port, &jwts, "nats-server").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_logs_in_with_a_bearer_user_jwt_as_password_on_ours() {
    on_ours("operator").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_logs_in_with_a_bearer_user_jwt_as_password_on_nats_server() {
    on_nats_server("operator").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_with_a_top_level_no_auth_user_on_ours() {
    on_ours("noauth_top").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_with_a_top_level_no_auth_user_on_nats_server() {
    on_nats_server("noauth_top").await;
}
