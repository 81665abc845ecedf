//! Handle lifecycle on JetStream: what reached a handle but was not returned
//! goes back to the consumer at once when the handle is closed, instead of
//! after the ack wait.

use std::time::{Duration, Instant};

use bus_core::testkit::{deposit, filter};
use bus_core::{Backend, Bus, BusConfig, ConsumerConfig};
use bus_nats::NatsBus;
use nats_test_server::NatsServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_handle_hands_back_unreturned_events_at_once() {
    let server = NatsServer::start().await;
    let mut config = BusConfig {
        backend: Backend::Nats,
        ..BusConfig::default()
    };
    config.nats.url = server.url();
    let bus = NatsBus::connect(&config).await.expect("connect");
    let cfg = ConsumerConfig::new("handover", filter("angzarr.events.>"))
        .ack_wait(Duration::from_secs(30));
    let mut first = bus.consumer(cfg.clone()).await.expect("first handle");
    bus.publish(deposit("p", 1)).await.expect("publish");
    // Ask for up to 10 while only one exists: the pull stays open.
    let got = first
        .fetch(10, Duration::from_secs(2))
        .await
        .expect("fetch");
    assert_eq!(got.len(), 1);
    got[0].ack().await.expect("ack");
    // These reach the first handle's open pull, unreturned.
    bus.publish(deposit("p", 2)).await.expect("publish");
    bus.publish(deposit("p", 3)).await.expect("publish");
    tokio::time::sleep(Duration::from_millis(200)).await;
    first.close().await.expect("close");

    let mut second = bus.consumer(cfg).await.expect("second handle");
    let start = Instant::now();
    let mut seqs = Vec::new();
    while seqs.len() < 2 && start.elapsed() < Duration::from_secs(20) {
        for d in second
            .fetch(10, Duration::from_millis(500))
            .await
            .expect("fetch")
        {
            seqs.push(d.envelope().sequence);
            d.ack().await.expect("ack");
        }
    }
    seqs.sort_unstable();
    assert_eq!(seqs, [2, 3]);
    // Well before the 30 s ack wait: they were handed back, not timed out.
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
}
