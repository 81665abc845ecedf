//! The main job against a real nats-server (JetStream), selected the way a
//! user does it: BUS_BACKEND=nats and NATS_URL over the defaults.

use std::sync::Arc;

use bus::{Backend, BusConfig};
use examples::job::{self, JobOptions, Progress};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_on_nats_resumes_projector_and_read_models_equal_replay() {
    let server = nats_test_server::NatsServer::start().await;
    let url = server.url();
    let mut config = BusConfig::default();
    config
        .apply_env(|k| match k {
            "BUS_BACKEND" => Some("nats".to_owned()),
            "NATS_URL" => Some(url.clone()),
            _ => None,
        })
        .expect("environment");
    assert_eq!(config.backend, Backend::Nats);
    let bus = bus::open(&config).await.expect("nats bus");
    let options = JobOptions {
        players: 20,
        hands: 60,
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
    assert_eq!(summary.backend, "nats");
    assert!(resumed.is_some_and(|p| p > 1), "resumed at {resumed:?}");
    // The stream also holds one marker per append (StreamInfo::messages).
    assert!(bus.stream_info().await.expect("info").messages > summary.events);
    assert_eq!(summary.table_events, summary.events);
    assert!(summary.conflicts_retried > 0, "{summary:?}");
}
