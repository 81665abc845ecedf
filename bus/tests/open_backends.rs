//! The facade opens the configured backend (file, then BUS_BACKEND / NATS_URL):
//! memory, an external NATS server, or the bundled server (embedded).

use bus::{Backend, BusConfig, BusError};

#[tokio::test]
async fn memory_backend_opens_and_publishes() {
    let config = BusConfig {
        backend: Backend::Memory,
        ..BusConfig::default()
    };
    let bus = bus::open(&config).await.expect("memory opens");
    assert_eq!(bus.backend(), "memory");
    let receipt = bus
        .publish(bus_core::testkit::deposit("p1", 1))
        .await
        .expect("publish");
    assert_eq!(receipt.position, 1);
}

#[tokio::test]
async fn embedded_backend_starts_the_bundled_server_and_keeps_events_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = BusConfig::default();
    assert_eq!(config.backend, Backend::Embedded, "embedded is the default");
    config.embedded.port = 0;
    config.embedded.data_dir = dir.path().join("data");
    let bus = bus::open(&config).await.expect("embedded opens");
    assert_eq!(bus.backend(), "embedded");
    for n in 1..=3 {
        bus.publish(bus_core::testkit::deposit("p1", n))
            .await
            .expect("publish");
    }
    bus.close().await.expect("close");
    let bus = bus::open(&config).await.expect("embedded reopens");
    assert_eq!(bus.stream_info().await.expect("info").messages, 3);
    bus.close().await.expect("close");
}

#[tokio::test]
async fn embedded_backend_on_a_taken_port_says_how_to_share_the_server() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = BusConfig::default();
    config.embedded.port = taken.local_addr().expect("addr").port();
    config.embedded.data_dir = dir.path().join("data");
    match bus::open(&config).await {
        Err(BusError::Unavailable(msg)) => assert!(msg.contains("backend = \"nats\""), "{msg}"),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("opened on a port that is in use"),
    }
}

#[tokio::test]
async fn subject_prefix_from_config_shapes_subjects() {
    let config = BusConfig::parse(
        "[bus]\nbackend = \"memory\"\nsubject_prefix = \"acme\"\n",
        "inline.toml",
    )
    .expect("config");
    let bus = bus::open(&config).await.expect("opens");
    assert_eq!(bus.layout().prefix(), "acme");
    assert!(matches!(
        bus.subscribe(&bus_core::Filter::parse("angzarr.events.>").expect("filter"))
            .await,
        Err(BusError::InvalidFilter { .. })
    ));
}

#[tokio::test]
async fn nats_backend_opens_from_file_with_environment_overrides() {
    let server = nats_test_server::NatsServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bus.toml");
    std::fs::write(&path, "[bus]\nbackend = \"memory\"\n").expect("write");
    let url = server.url();
    let config = BusConfig::load_with_env(&path, |k| match k {
        "BUS_BACKEND" => Some("nats".to_owned()),
        "NATS_URL" => Some(url.clone()),
        _ => None,
    })
    .expect("config");
    let bus = bus::open(&config).await.expect("nats opens");
    assert_eq!(bus.backend(), "nats");
    let r = bus
        .publish(bus_core::testkit::deposit("p1", 1))
        .await
        .expect("publish");
    assert_eq!((r.position, r.duplicate), (1, false));
}

#[tokio::test]
async fn a_second_process_shares_the_embedded_server_through_the_nats_backend() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut owner_config = BusConfig::default();
    owner_config.embedded.port = port;
    owner_config.embedded.data_dir = dir.path().join("data");
    let owner = bus::open(&owner_config).await.expect("embedded opens");

    // What a second process configures: backend nats, the owner's URL.
    let guest_config = BusConfig::parse(
        &format!(
            "[bus]\nbackend = \"nats\"\n[bus.nats]\nurl = \"nats://127.0.0.1:{port}\"\njetstream = true\n"
        ),
        "guest.toml",
    )
    .expect("config");
    let guest = bus::open(&guest_config).await.expect("nats backend joins");
    let receipt = guest
        .publish(bus_core::testkit::deposit("shared", 1))
        .await
        .expect("publish through the shared server");
    assert_eq!(receipt.position, 1);
    assert_eq!(owner.stream_info().await.expect("info").messages, 1);
    guest.close().await.expect("close guest");
    owner.close().await.expect("close owner");
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The bundled server runs on threads of its own, not the application's:
/// it answers a client while the application's runtime is blocked (here
/// the test's only thread, waiting for that client).
#[tokio::test(flavor = "current_thread")]
async fn the_embedded_server_answers_while_the_applications_only_worker_is_blocked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut config = BusConfig::default();
    config.embedded.port = port;
    config.embedded.data_dir = dir.path().join("data");
    let bus = bus::open(&config).await.expect("embedded opens");
    let answered = std::thread::spawn(move || -> std::io::Result<String> {
        use std::io::{BufRead, BufReader, Write};
        let stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
        let mut writer = stream.try_clone()?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        writer.write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n")?;
        line.clear();
        reader.read_line(&mut line)?;
        Ok(line)
    })
    .join()
    .expect("the client thread");
    assert_eq!(
        answered.expect("the server answered in time").trim_end(),
        "PONG"
    );
    bus.close().await.expect("close");
}

/// Dropping the bus without `close()` (inside a runtime, where a runtime
/// must not be dropped in place: that would panic) stops the server.
#[tokio::test]
async fn dropping_the_embedded_bus_stops_its_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut config = BusConfig::default();
    config.embedded.port = port;
    config.embedded.data_dir = dir.path().join("data");
    let bus = bus::open(&config).await.expect("embedded opens");
    bus.publish(bus_core::testkit::deposit("p1", 1))
        .await
        .expect("publish");
    drop(bus);
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the server still accepts connections 5 s after the bus was dropped");
}
