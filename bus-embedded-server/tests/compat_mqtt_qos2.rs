//! QoS 2 subscriptions (deliveries with PUBREC/PUBREL/PUBCOMP, the
//! PUBRELs owed kept in `$MQTT_out`), a resumed session's redeliveries
//! with DUP, and the `mqtt { reject_qos2_publish, downgrade_qos2_subscribe
//! }` switches: raw MQTT packets and paho-mqtt against ours and nats-server
//! 2.15.1 with the same configuration and the same script
//! (`tests/clients/python/mqtt_qos2.py`; its header lists the scenarios of
//! each mode), and a clean session's `$MQTT_sess` record (kept only
//! while it is connected, as nats-server keeps it).
//!
//! paho-mqtt is installed by `scripts/test.sh`; when it is missing the
//! script exits 3 and the test fails, it never skips.

mod py_scenarios;
use std::path::Path;
use std::time::Duration;

use bus_embedded_server::cli::Cli;
use bus_embedded_server::{ServerConfig, ServerHandle, options, start};
use nats_test_server::{NatsServer, ServerOptions, free_port};

/// The `mqtt { }` keys (besides the port) of a script mode.
fn keys(mode: &str) -> &'static str {
    match mode {
        "qos2" => "ack_wait: \"1s\"",
        "switches" => "reject_qos2_publish: true, downgrade_qos2_subscribe: true",
        other => panic!("no mode {other}"),
    }
}

async fn ours(dir: &Path, mqtt_keys: &str) -> ServerHandle {
    let path = dir.join("server.conf");
    let text = format!(
        "server_name: ours\nport: -1\njetstream {{ store_dir: {:?} }}\nmqtt {{ host: 127.0.0.1, port: -1, {mqtt_keys} }}\n",
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

async fn run_script(mode: &str, mqtt_port: u16, nats_url: &str, server: &str) {
    py_scenarios::run(
        py_scenarios::script("mqtt_qos2.py"),
        vec![
            mode.to_string(),
            mqtt_port.to_string(),
            nats_url.to_string(),
        ],
        vec![],
        format!("mode {mode} against {server} (mqtt port {mqtt_port})"),
    )
    .await;
}

async fn on_ours(mode: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = ours(dir.path(), keys(mode)).await;
    let port = server.mqtt_addr().expect("mqtt listener").port();
    run_script(mode, port, &server.client_url(), "ours").await;
    server.shutdown(Duration::from_secs(2)).await;
}

async fn on_nats_server(mode: &str) {
    let port = free_port();
    let server = NatsServer::start_with(ServerOptions {
        extra_config: Some(format!("mqtt {{ port: {port}, {} }}\n", keys(mode))),
        ..ServerOptions::default()
    })
    .await;
    run_script(mode, port, &server.url(), "nats-server").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_subscriptions_deliver_exactly_once_with_pubrec_pubrel_pubcomp_on_ours() {
    on_ours("qos2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_subscriptions_deliver_exactly_once_with_pubrec_pubrel_pubcomp_on_nats_server() {
    on_nats_server("qos2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_qos2_publish_and_downgrade_qos2_subscribe_on_ours() {
    on_ours("switches").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_qos2_publish_and_downgrade_qos2_subscribe_on_nats_server() {
    on_nats_server("switches").await;
}
