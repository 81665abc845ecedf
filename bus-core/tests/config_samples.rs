//! Every sample under `config/` loads, and says what its name promises.

use std::path::PathBuf;
use std::time::Duration;

use bus_core::{Backend, BusConfig, Storage};

fn sample(name: &str) -> BusConfig {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../config")
        .join(name);
    BusConfig::load_with_env(&path, |_| None).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_sample_file_loads() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("config dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            BusConfig::load_with_env(&path, |_| None)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            count += 1;
        }
    }
    assert!(count >= 6, "expected the six samples, found {count}");
}

#[test]
fn embedded_sample_is_the_persistent_default() {
    let c = sample("embedded.toml");
    assert_eq!(c.backend, Backend::Embedded);
    assert_eq!(c.embedded.host, "127.0.0.1");
    assert!(c.nats.jetstream);
    assert_eq!(c.consumer.backoff.len(), 3);
}

#[test]
fn memory_sample_selects_memory() {
    let c = sample("memory.toml");
    assert_eq!(c.backend, Backend::Memory);
    assert_eq!(c.stream.max_age, Duration::ZERO);
}

#[test]
fn nats_core_sample_turns_jetstream_off() {
    let c = sample("nats-core.toml");
    assert_eq!(c.backend, Backend::Nats);
    assert!(!c.nats.jetstream);
}

#[test]
fn nats_jetstream_sample_names_stream_and_dead_letters() {
    let c = sample("nats-jetstream.toml");
    assert!(c.nats.jetstream);
    assert_eq!(c.nats.stream_name, "angzarr-events");
    assert_eq!(c.nats.dead_letter_stream_name(), "angzarr-events-dlq");
    assert_eq!(c.stream.storage, Storage::File);
    assert_eq!(c.stream.max_age, Duration::from_secs(7 * 24 * 3600));
}

#[test]
fn cluster_sample_lists_three_seeds_with_three_replicas() {
    let c = sample("nats-cluster.toml");
    assert_eq!(c.nats.urls().len(), 3);
    assert_eq!(c.stream.replicas, 3);
}

#[test]
fn environment_overrides_a_sample() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/embedded.toml");
    let c = BusConfig::load_with_env(&path, |k| match k {
        "BUS_BACKEND" => Some("nats".into()),
        "NATS_URL" => Some("nats://nats.internal:4222".into()),
        _ => None,
    })
    .expect("loads");
    assert_eq!(c.backend, Backend::Nats);
    assert_eq!(c.nats.url, "nats://nats.internal:4222");
}

#[test]
fn secure_sample_sets_credentials_and_mutual_tls() {
    let c = sample("nats-secure.toml");
    assert_eq!(c.nats.user.as_deref(), Some("poker"));
    assert!(c.nats.tls_required);
    assert!(c.nats.tls_cert_file.is_some() && c.nats.tls_key_file.is_some());
    assert_eq!(c.nats.publish_retries, 3);
}
