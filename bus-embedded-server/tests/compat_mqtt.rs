//! The MQTT listener (`mqtt {}`): paho-mqtt (MQTT 3.1.1), unchanged, with
//! nats-py beside it for MQTT <-> NATS interop, against ours and against
//! nats-server 2.15.1 with the same script and the same configuration
//! (`tests/clients/python/mqtt.py`: its header lists the scenarios), plus
//! what this server refuses (raw MQTT packets, ours only) and the start
//! checks nats-server makes.
//!
//! paho-mqtt and nats-py are installed by `scripts/test.sh` (pinned in
//! `tests/clients/python/requirements.txt`); when they are missing the
//! script exits 3 and the test fails, it never skips.

mod py_scenarios;
use std::path::Path;
use std::time::{Duration, Instant};

use bus_embedded_server::cli::Cli;
use bus_embedded_server::{ServerConfig, ServerHandle, options, start};
use nats_test_server::{NatsServer, ServerOptions, free_port};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

mod mqtt_raw;
use mqtt_raw::{closed, connect_packet, mqtt_str, packet, read_n};

/// The same users on both servers (see the script's header).
const AUTH: &str = r#"
authorization {
  users = [
    { user: alice, password: secret },
    { user: bob, password: pw2, permissions: { publish: ["allowed.>"], subscribe: ["allowed.>"] } }
  ]
}
no_auth_user: alice
"#;

/// The QoS 1 settings of the script's servers (its redelivery and
/// flow-control scenarios count on them).
const QOS1_KEYS: &str = "ack_wait: \"2s\", max_ack_pending: 2";

/// Ours from a configuration file (as the binary reads it), with a
/// JetStream store in `dir`.
async fn ours(dir: &Path, mqtt_block: &str) -> ServerHandle {
    let path = dir.join("server.conf");
    let text = format!(
        "server_name: ours\nport: -1\njetstream {{ store_dir: {:?} }}\n{AUTH}\n{mqtt_block}\n",
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

async fn reference(mqtt_port: u16) -> NatsServer {
    NatsServer::start_with(ServerOptions {
        extra_config: Some(format!(
            "{AUTH}\nmqtt {{ port: {mqtt_port}, {QOS1_KEYS} }}\n"
        )),
        ..ServerOptions::default()
    })
    .await
}

/// Runs the paho script against `mqtt_port` / `nats_url` and asserts every
/// scenario passed.
async fn run_script(mqtt_port: u16, nats_url: String, server: &'static str) {
    py_scenarios::run(
        py_scenarios::script("mqtt.py"),
        vec![mqtt_port.to_string(), nats_url.clone()],
        vec![],
        format!("(paho-mqtt) against {server} (mqtt port {mqtt_port}, {nats_url})"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_mqtt_qos0_auth_will_keepalive_and_nats_interop_on_ours() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = ours(
        dir.path(),
        &format!("mqtt {{ host: 127.0.0.1, port: -1, {QOS1_KEYS} }}"),
    )
    .await;
    let port = server.mqtt_addr().expect("mqtt listener").port();
    run_script(port, server.client_url(), "ours").await;
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_mqtt_qos0_auth_will_keepalive_and_nats_interop_on_nats_server() {
    let port = free_port();
    let server = reference(port).await;
    run_script(port, server.url(), "nats-server").await;
}

// ------------------------------------------------------ raw MQTT, ours only

async fn connected(port: u16, client_id: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("tcp");
    s.write_all(&connect_packet(client_id, 0x02, None))
        .await
        .expect("send");
    assert_eq!(read_n(&mut s, 4).await, [0x20, 2, 0, 0], "CONNACK accepted");
    s
}

#[tokio::test]
async fn features_not_served_yet_are_refused_with_mqtt_answers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = ours(dir.path(), "mqtt { host: 127.0.0.1, port: -1 }").await;
    let port = server.mqtt_addr().expect("mqtt listener").port();

    // QoS 0, 1 and 2 side by side are granted (QoS 2 deliveries:
    // compat_mqtt_qos2.rs).
    let mut s = connected(port, "subq").await;
    let mut body = vec![0, 9];
    for (f, q) in [("a", 1u8), ("b", 0), ("c", 2)] {
        body.extend(mqtt_str(f));
        body.push(q);
    }
    s.write_all(&packet(0x82, &body)).await.expect("send");
    assert_eq!(read_n(&mut s, 7).await, [0x90, 5, 0, 9, 1, 0, 2]);

    // Protocol level 3 (MQTT 3.1): CONNACK 1.
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("tcp");
    let mut body = mqtt_str("MQTT");
    body.extend_from_slice(&[3, 2, 0, 30]);
    body.extend(mqtt_str("old"));
    s.write_all(&packet(0x10, &body)).await.expect("send");
    assert_eq!(read_n(&mut s, 4).await, [0x20, 2, 0, 1]);
    server.shutdown(Duration::from_secs(2)).await;
}

/// A CONNECT with user `n` / password `p` (and a will when given, with
/// its flag bits in `will_flags`).
fn login_packet(client_id: &str, will_flags: u8, will: Option<(&str, &str)>) -> Vec<u8> {
    login_packet_flags(client_id, 0x02 | will_flags, will)
}

/// [`login_packet`] with all the session and will flags in `flags` (0:
/// a persistent session, no will).
fn login_packet_flags(client_id: &str, flags: u8, will: Option<(&str, &str)>) -> Vec<u8> {
    let mut body = mqtt_str("MQTT");
    body.extend_from_slice(&[4, 0x80 | 0x40 | flags, 0, 30]);
    body.extend(mqtt_str(client_id));
    if let Some((t, m)) = will {
        body.extend(mqtt_str(t));
        body.extend(mqtt_str(m));
    }
    body.extend(mqtt_str("n"));
    body.extend(mqtt_str("p"));
    packet(0x10, &body)
}

#[tokio::test]
async fn retained_messages_in_an_account_without_jetstream_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("server.conf");
    let text = format!(
        "server_name: nojs\nport: -1\njetstream {{ store_dir: {:?} }}\n\
         accounts {{ NOJS {{ users: [ {{ user: n, password: p }} ] }} }}\n\
         mqtt {{ host: 127.0.0.1, port: -1 }}\n",
        dir.path().join("js").display().to_string()
    );
    std::fs::write(&path, text).expect("write config");
    let cli = Cli {
        config: Some(path),
        ..Cli::default()
    };
    let o = options::from_cli(&cli, ServerConfig::default()).expect("configuration accepted");
    let server = start(o.config).await.expect("our server starts");
    let port = server.mqtt_addr().expect("mqtt listener").port();

    // A retained will cannot be kept: CONNACK 3 once the account is known.
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("tcp");
    s.write_all(&login_packet("nojs-will", 0x04 | 0x20, Some(("w", "m"))))
        .await
        .expect("send");
    assert_eq!(read_n(&mut s, 4).await, [0x20, 2, 0, 3]);
    assert!(closed(&mut s).await);

    // A persistent session cannot be kept: CONNACK 3.
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("tcp");
    s.write_all(&login_packet_flags("nojs-persist", 0, None))
        .await
        .expect("send");
    assert_eq!(read_n(&mut s, 4).await, [0x20, 2, 0, 3]);
    assert!(closed(&mut s).await);

    // QoS 1 needs no JetStream: acknowledged.
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("tcp");
    s.write_all(&login_packet("nojs", 0, None))
        .await
        .expect("send");
    assert_eq!(read_n(&mut s, 4).await, [0x20, 2, 0, 0]);
    let mut body = mqtt_str("t");
    body.extend_from_slice(&[0, 5]);
    body.extend_from_slice(b"x");
    s.write_all(&packet(0x32, &body)).await.expect("send");
    assert_eq!(read_n(&mut s, 4).await, [0x40, 2, 0, 5]);
    // A retained PUBLISH: closed, nothing acknowledged.
    s.write_all(&packet(0x33, &body)).await.expect("send");
    assert!(closed(&mut s).await, "retained publish must close");

    // A QoS 2 PUBLISH cannot be stored until its PUBREL: closed, no PUBREC.
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("tcp");
    s.write_all(&login_packet("nojs-q2", 0, None))
        .await
        .expect("send");
    assert_eq!(read_n(&mut s, 4).await, [0x20, 2, 0, 0]);
    // QoS 1 and 2 subscriptions need the account's JetStream: 0x80 each.
    let mut sub = vec![0, 3];
    for (f, q) in [("a", 2u8), ("b", 1), ("c", 0)] {
        sub.extend(mqtt_str(f));
        sub.push(q);
    }
    s.write_all(&packet(0x82, &sub)).await.expect("send");
    assert_eq!(read_n(&mut s, 7).await, [0x90, 5, 0, 3, 0x80, 0x80, 0]);
    s.write_all(&packet(0x34, &body)).await.expect("send");
    assert!(
        closed(&mut s).await,
        "QoS 2 publish without JetStream must close"
    );
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn garbage_and_non_connect_first_packets_close_the_connection() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = ours(dir.path(), "mqtt { host: 127.0.0.1, port: -1 }").await;
    let port = server.mqtt_addr().expect("mqtt listener").port();
    for first in [
        vec![0xc0, 0],                      // PINGREQ before CONNECT
        vec![0x10, 0xff, 0xff, 0xff, 0xff], // malformed length
        b"CONNECT {}\r\n".to_vec(),         // NATS, not MQTT
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("tcp");
        s.write_all(&first).await.expect("send");
        assert!(closed(&mut s).await, "{first:?}");
    }
    // The server still serves MQTT after them.
    let mut s = connected(port, "after").await;
    s.write_all(&[0xc0, 0]).await.expect("send");
    assert_eq!(read_n(&mut s, 2).await, [0xd0, 0]);
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn a_connection_that_never_sends_connect_is_closed_after_the_auth_timeout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = ours(dir.path(), "mqtt { host: 127.0.0.1, port: -1 }").await;
    let port = server.mqtt_addr().expect("mqtt listener").port();
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("tcp");
    let started = Instant::now();
    assert!(closed(&mut s).await);
    assert!(started.elapsed() >= Duration::from_millis(1500));
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn mqtt_without_server_name_or_jetstream_refuses_to_start_as_nats_server() {
    let mut config = ServerConfig {
        port: 0,
        mqtt: Some(bus_embedded_server::MqttConfig::new("127.0.0.1", 0)),
        ..ServerConfig::default()
    };
    let Err(err) = start(config.clone()).await else {
        panic!("started without server_name");
    };
    assert_eq!(
        err.to_string(),
        "mqtt requires server name to be explicitly set"
    );
    config.server_name = "n".into();
    let Err(err) = start(config).await else {
        panic!("started without JetStream");
    };
    assert_eq!(
        err.to_string(),
        "mqtt requires JetStream to be enabled if running in standalone mode"
    );
}

#[test]
fn mqtt_options_not_served_yet_refuse_the_start_naming_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    // (`tls`, `authorization` and `no_auth_user` are served:
    // compat_mqtt_tls_auth.rs.)
    for key in ["js_domain: x", "consumer_replicas: 1"] {
        let path = dir.path().join("server.conf");
        std::fs::write(&path, format!("mqtt {{ port: 1883, {key} }}\n")).expect("write");
        let cli = Cli {
            config: Some(path),
            ..Cli::default()
        };
        let Err(err) = options::from_cli(&cli, ServerConfig::default()) else {
            panic!("{key}: accepted");
        };
        let name = key.split(':').next().unwrap_or_default();
        assert!(
            err.to_string().contains(&format!("mqtt.{name}")),
            "{key}: {err}"
        );
    }
}

#[test]
fn mqtt_ack_wait_and_max_ack_pending_reach_the_config_and_zero_means_default() {
    let dir = tempfile::tempdir().expect("temp dir");
    let read = |keys: &str| {
        let path = dir.path().join("server.conf");
        std::fs::write(&path, format!("mqtt {{ port: 1883, {keys} }}\n")).expect("write");
        let cli = Cli {
            config: Some(path),
            ..Cli::default()
        };
        options::from_cli(&cli, ServerConfig::default())
            .map(|o| o.config.mqtt.expect("mqtt"))
            .map_err(|e| e.to_string())
    };
    let m = read("ack_wait: \"5s\", max_ack_pending: 9").expect("accepted");
    assert_eq!((m.ack_wait, m.max_ack_pending), (Duration::from_secs(5), 9));
    let m = read("ack_wait: 0, max_ack_pending: 0").expect("accepted");
    assert_eq!(
        (m.ack_wait, m.max_ack_pending),
        (Duration::from_secs(30), 1024)
    );
    let err = read("max_ack_pending: 65536").expect_err("refused");
    assert!(err.contains("mqtt.max_ack_pending"), "{err}");
}

#[tokio::test]
async fn shutdown_closes_mqtt_connections_and_returns_promptly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = ours(dir.path(), "mqtt { host: 127.0.0.1, port: -1 }").await;
    let port = server.mqtt_addr().expect("mqtt listener").port();
    let mut a = connected(port, "shut-a").await;
    let mut b = connected(port, "shut-b").await;
    let mut body = vec![0, 1];
    body.extend(mqtt_str("x/#"));
    body.push(0);
    a.write_all(&packet(0x82, &body)).await.expect("send");
    assert_eq!(read_n(&mut a, 5).await, [0x90, 3, 0, 1, 0]);
    assert_eq!(server.connections(), 2, "MQTT clients are connections");
    let started = Instant::now();
    server.shutdown(Duration::from_secs(3)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown waited"
    );
    assert!(closed(&mut a).await && closed(&mut b).await);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).await.is_err(),
        "listener still open"
    );
}

#[tokio::test]
async fn a_client_that_vanishes_mid_packet_publishes_its_will_and_leaves() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = ours(dir.path(), "mqtt { host: 127.0.0.1, port: -1 }").await;
    let port = server.mqtt_addr().expect("mqtt listener").port();
    let nc = async_nats::connect(format!("nats://alice:secret@{}", server.addr()))
        .await
        .expect("nats");
    let mut wills = nc.subscribe("gone.>").await.expect("sub");
    nc.flush().await.expect("flush");
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("tcp");
    s.write_all(&connect_packet(
        "vanish",
        0x02 | 0x04,
        Some(("gone/v", "bye")),
    ))
    .await
    .expect("send");
    assert_eq!(read_n(&mut s, 4).await, [0x20, 2, 0, 0]);
    // Half a PUBLISH (declares 100 bytes, sends 3), then the socket goes.
    s.write_all(&[0x30, 100, 0, 1, b't']).await.expect("send");
    drop(s);
    let msg = tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut wills))
        .await
        .expect("will in time")
        .expect("will");
    assert_eq!(msg.subject.as_str(), "gone.v");
    assert_eq!(&msg.payload[..], b"bye");
    let headers = msg.headers.expect("nats-server's MQTT header");
    assert_eq!(headers.get("Nmqtt-Pub").map(|v| v.as_str()), Some("0"));
    // The connection is gone from the server too.
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.connections() > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.connections(), 1, "only the NATS client is left");
    server.shutdown(Duration::from_secs(2)).await;
}
