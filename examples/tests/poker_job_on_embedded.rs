//! The main job end to end on the embedded backend (the default): the
//! bundled server with JetStream in this process, on a fresh data directory;
//! then the process "restarts" (bus closed, opened again on the same data)
//! and every event and both projectors' positions are still there.

use std::sync::Arc;

use bus::{Backend, BusConfig};
use examples::job::{self, JobOptions, Progress};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_on_the_embedded_default_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = BusConfig::default();
    assert_eq!(config.backend, Backend::Embedded);
    config.embedded.port = 0;
    config.embedded.data_dir = dir.path().join("data");
    let bus = bus::open(&config).await.expect("embedded bus");
    let options = JobOptions {
        players: 20,
        hands: 80,
        seats_at_once: true,
        ..JobOptions::default()
    };
    let mut resumed = None;
    let summary = job::run(Arc::clone(&bus), &options, |p| {
        if let Progress::ProjectorResumed { from_position, .. } = p {
            resumed = Some(from_position);
        }
    })
    .await
    .expect("job runs");
    assert!(summary.ok(), "{summary:?}");
    assert!(resumed.is_some(), "the projector was stopped and resumed");
    assert!(summary.events > 500, "{} events", summary.events);
    assert!(
        summary.conflicts_retried > 0,
        "{} workers never raced: {summary:?}",
        summary.workers
    );
    let before = bus.stream_info().await.expect("info");
    let positions: Vec<_> = {
        let mut v = Vec::new();
        for name in [job::TABLE_PROJECTOR, job::PLAYER_PROJECTOR] {
            v.push(bus.consumer_info(name).await.expect("consumer info"));
        }
        v
    };
    bus.close().await.expect("close");
    drop(bus);

    let bus = bus::open(&config).await.expect("embedded bus reopens");
    let after = bus.stream_info().await.expect("info");
    assert_eq!(after.messages, before.messages);
    assert_eq!(after.last_position, before.last_position);
    for old in positions {
        let now = bus.consumer_info(&old.name).await.expect("consumer info");
        assert_eq!(
            now.ack_floor, old.ack_floor,
            "{} kept its position",
            old.name
        );
        assert_eq!(now.num_pending, 0, "{} has nothing left", old.name);
    }
    bus.close().await.expect("close");
}
