//! The facade opens the configured backend (file, then BUS_BACKEND / NATS_URL),
//! and reports the ones not built yet as unsupported rather than silently
//! substituting another.

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
async fn unbuilt_backends_say_so_instead_of_falling_back() {
    for backend in [Backend::Embedded] {
        let config = BusConfig {
            backend,
            ..BusConfig::default()
        };
        match bus::open(&config).await {
            Err(BusError::Unsupported(msg)) => assert!(msg.contains(backend.as_str()), "{msg}"),
            Err(other) => panic!("{backend}: unexpected error {other}"),
            Ok(_) => panic!("{backend}: opened although it is not built"),
        }
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
