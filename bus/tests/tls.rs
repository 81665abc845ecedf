//! TLS through the bus configuration: the NATS adapter (`[bus.nats] tls_*`)
//! against our server started in-process with mutual TLS, and the embedded
//! backend with `[bus.embedded] tls_*` end to end (publish, then consume).
//! Certificates are made at test time (`nats_test_server::tls::TestPki`).

use std::time::Duration;

use bus::{Backend, BusConfig};
use bus_core::ConsumerConfig;
use bus_core::testkit::deposit;
use bus_embedded_server::jetstream::JetStreamConfig;
use bus_embedded_server::{ServerConfig, TlsConfig};
use nats_test_server::tls::TestPki;
use tokio::io::AsyncReadExt;

/// Publishes three events, then a durable consumer receives and acks them.
async fn publish_and_consume(bus: &dyn bus_core::Bus, what: &str) {
    for n in 1..=3 {
        let r = bus
            .publish(deposit("tls", n))
            .await
            .unwrap_or_else(|e| panic!("{what}: publish: {e}"));
        assert_eq!(r.position, n, "{what}");
    }
    let filter = bus.layout().all();
    let mut consumer = bus
        .consumer(ConsumerConfig::new("tls-reader", filter))
        .await
        .unwrap_or_else(|e| panic!("{what}: consumer: {e}"));
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let d = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .unwrap_or_else(|_| panic!("{what}: no delivery within 10 s ({seen:?})"))
            .unwrap_or_else(|e| panic!("{what}: next: {e}"));
        seen.push(d.envelope().sequence);
        d.ack().await.expect("ack");
    }
    assert_eq!(seen, [1, 2, 3], "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_adapter_connects_to_a_tls_server_with_bus_nats_settings() {
    let pki = TestPki::generate();
    let store = tempfile::tempdir().expect("store");
    let mut tls = TlsConfig::new(pki.server_cert(), pki.server_key());
    tls.ca_file = Some(pki.ca_file());
    tls.verify = true;
    let server = bus_embedded_server::start(ServerConfig {
        port: 0,
        jetstream: Some(JetStreamConfig {
            store_dir: store.path().to_path_buf(),
            ..JetStreamConfig::default()
        }),
        tls: Some(tls),
        ..ServerConfig::default()
    })
    .await
    .expect("TLS server starts");
    let port = server.addr().port();
    let text = |client_cert: bool| {
        let mut t = format!(
            "[bus]\nbackend = \"nats\"\n[bus.nats]\nurl = \"nats://127.0.0.1:{port}\"\n\
             connect_timeout = \"3s\"\ntls_required = true\ntls_ca_file = {:?}\n",
            pki.ca_file().display().to_string()
        );
        if client_cert {
            t.push_str(&format!(
                "tls_cert_file = {:?}\ntls_key_file = {:?}\n",
                pki.client_cert().display().to_string(),
                pki.client_key().display().to_string()
            ));
        }
        BusConfig::parse(&t, "bus.toml").expect("config")
    };

    // Without the client certificate the server refuses the handshake.
    assert!(
        bus::open(&text(false)).await.is_err(),
        "opened without a client certificate"
    );
    let bus = bus::open(&text(true))
        .await
        .expect("the NATS adapter connects with TLS and a client certificate");
    assert_eq!(bus.backend(), "nats");
    publish_and_consume(bus.as_ref(), "nats adapter over mTLS").await;
    bus.close().await.expect("close");
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_backend_with_tls_publishes_and_consumes() {
    let pki = TestPki::generate();
    let dir = tempfile::tempdir().expect("data dir");
    let mut config = BusConfig {
        backend: Backend::Embedded,
        ..BusConfig::default()
    };
    config.embedded.port = 0;
    config.embedded.data_dir = dir.path().join("data");
    config.embedded.tls_cert_file = Some(pki.server_cert());
    config.embedded.tls_key_file = Some(pki.server_key());
    config.embedded.tls_ca_file = Some(pki.ca_file());
    config.embedded.tls_verify = true;
    config.nats.tls_cert_file = Some(pki.client_cert());
    config.nats.tls_key_file = Some(pki.client_key());
    let bus = bus::open(&config).await.expect("embedded opens with TLS");
    assert_eq!(bus.backend(), "embedded");
    publish_and_consume(bus.as_ref(), "embedded over mTLS").await;
    assert_eq!(bus.stream_info().await.expect("stream info").messages, 3);
    bus.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_backend_with_tls_tells_plain_clients_tls_is_required() {
    let pki = TestPki::generate();
    let dir = tempfile::tempdir().expect("data dir");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let config = BusConfig::parse(
        &format!(
            "[bus.embedded]\nport = {port}\ndata_dir = {:?}\ntls_cert_file = {:?}\n\
             tls_key_file = {:?}\ntls_ca_file = {:?}\n",
            dir.path().join("data").display().to_string(),
            pki.server_cert().display().to_string(),
            pki.server_key().display().to_string(),
            pki.ca_file().display().to_string(),
        ),
        "embedded-tls.toml",
    )
    .expect("config");
    let bus = bus::open(&config).await.expect("embedded opens with TLS");
    bus.publish(deposit("tls", 1)).await.expect("publish");
    let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("tcp");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), plain.read(&mut buf))
        .await
        .expect("INFO in time")
        .expect("read");
    let info = String::from_utf8_lossy(&buf[..n]);
    assert!(info.contains("\"tls_required\":true"), "{info}");
    assert!(!info.contains("tls_verify"), "{info}");
    bus.close().await.expect("close");
}
