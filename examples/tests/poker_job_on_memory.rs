//! The main job end to end on the memory backend: load, projector stop and
//! resume, drain, and read models equal to their rebuild from replay.

use std::sync::Arc;

use bus::{Backend, Bus, BusConfig};
use examples::job::{self, JobOptions, Progress};

async fn memory_bus() -> Arc<dyn Bus> {
    let config = BusConfig {
        backend: Backend::Memory,
        ..BusConfig::default()
    };
    bus::open(&config).await.expect("memory bus")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_resumes_projector_and_read_models_equal_replay() {
    let bus = memory_bus().await;
    let options = JobOptions {
        players: 30,
        hands: 120,
        ..JobOptions::default()
    };
    let mut stopped_at = None;
    let mut resumed = None;
    let summary = job::run(Arc::clone(&bus), &options, |p| match p {
        Progress::ProjectorStopped { ack_floor, .. } => stopped_at = Some(ack_floor),
        Progress::ProjectorResumed {
            from_position,
            pending,
        } => resumed = Some((from_position, pending)),
        _ => {}
    })
    .await
    .expect("job runs");
    assert!(summary.ok(), "{summary:?}");
    let stopped_at = stopped_at.expect("the projector was stopped halfway");
    let (from, pending) = resumed.expect("the projector resumed");
    assert_eq!(from, stopped_at + 1, "resumes right after its ack floor");
    assert!(pending > 0, "events arrived while it was stopped");
    assert!(summary.rejected > 0, "some overdrawn bets were refused");
    assert!(summary.events > 1000, "{} events", summary.events);
    assert_eq!(summary.players, 30);
    let info = bus.stream_info().await.expect("stream info");
    assert_eq!(info.messages, summary.events);
    assert_eq!(summary.table_events, summary.events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_runs_one_command_at_a_time_without_conflicts() {
    let bus = memory_bus().await;
    let options = JobOptions {
        players: 10,
        hands: 30,
        workers: 1,
        ..JobOptions::default()
    };
    let summary = job::run(Arc::clone(&bus), &options, |_| {})
        .await
        .expect("job");
    assert!(summary.ok(), "{summary:?}");
    assert_eq!(summary.conflicts_retried, 0, "{summary:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chips_are_conserved_across_the_table() {
    let bus = memory_bus().await;
    let options = JobOptions {
        players: 10,
        hands: 60,
        ..JobOptions::default()
    };
    let summary = job::run(Arc::clone(&bus), &options, |_| {})
        .await
        .expect("job");
    // Every chip on the table was deposited; bets move chips into pots and pots
    // back to winners, so balances = deposits - bets + pots won.
    let directory: examples::projector::PlayerDirectory = examples::projector::rebuild(
        &*bus,
        &bus.layout()
            .filter("angzarr.events.player.>")
            .expect("filter"),
    )
    .await
    .expect("rebuild");
    assert_eq!(
        summary.total_balance,
        directory.deposited - directory.withdrawn
    );
}
