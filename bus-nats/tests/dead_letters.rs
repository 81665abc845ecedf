//! Every exhausted event ends in the dead-letter stream, whatever fails and
//! whatever order handles go away in.
//!
//! The delivery after the last allowed one (the last attempt timed out) is
//! never handed to the caller: the handle that receives it dead-letters it.
//! These tests make that step meet a dead-letter stream that refuses the
//! publish, and a handle that is closed, dropped or vanishes while holding
//! that delivery; each time the event must still reach the dead-letter
//! stream, through this handle or a later one.

use std::time::Duration;

use async_nats::jetstream;
use bus_core::testkit::{deposit, filter};
use bus_core::{Backend, Bus, BusConfig, Consumer, ConsumerConfig, Delivery};
use bus_nats::NatsBus;
use nats_test_server::NatsServer;
use tokio::time::Instant;

const ACK_WAIT: Duration = Duration::from_millis(500);
const PATIENCE: Duration = Duration::from_secs(20);
const DEAD_LETTER_STREAM: &str = "angzarr-events-dlq";

fn config(url: &str) -> BusConfig {
    let mut c = BusConfig {
        backend: Backend::Nats,
        ..BusConfig::default()
    };
    c.nats.url = url.to_owned();
    c.nats.request_timeout = Duration::from_secs(2);
    c
}

/// One delivery allowed, a short ack wait.
fn one_attempt(name: &str) -> ConsumerConfig {
    ConsumerConfig::new(name, filter("angzarr.events.>"))
        .ack_wait(ACK_WAIT)
        .max_deliver(1)
}

async fn raw_jetstream(server: &NatsServer) -> jetstream::Context {
    let client = async_nats::connect(server.url())
        .await
        .unwrap_or_else(|e| panic!("raw client: {e}"));
    jetstream::new(client)
}

async fn first_delivery(consumer: &mut Consumer) -> Delivery {
    let d = tokio::time::timeout(PATIENCE, consumer.next())
        .await
        .unwrap_or_else(|_| panic!("no first delivery within {PATIENCE:?}"))
        .unwrap_or_else(|e| panic!("next: {e}"));
    assert_eq!(d.attempt, 1);
    d
}

/// Leaves a pull request of `consumer` open (a `next()` the caller gave up
/// on) and waits past the ack wait, so the delivery beyond max_deliver
/// reaches the handle without being taken from it.
async fn let_the_extra_delivery_reach(consumer: &mut Consumer) {
    let gave_up = tokio::time::timeout(Duration::from_millis(100), consumer.next()).await;
    assert!(
        gave_up.is_err(),
        "a delivery beyond max_deliver was handed to the caller: {:?}",
        gave_up.map(|r| r.map(|d| (d.event.position, d.attempt)))
    );
    tokio::time::sleep(ACK_WAIT * 3).await;
}

/// Polls `consumer` (so that whatever reaches it is handled) until the
/// dead-letter stream holds one dead letter of `name`; nothing may be handed
/// to the caller meanwhile.
async fn polled_until_dead_lettered(bus: &NatsBus, consumer: &mut Consumer, name: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match consumer.fetch(1, Duration::from_millis(200)).await {
            Ok(got) => assert!(
                got.is_empty(),
                "a delivery beyond max_deliver was handed to the caller: position {} attempt {}",
                got[0].event.position,
                got[0].attempt
            ),
            Err(e) => panic!("fetch failed: {e}"),
        }
        let dead = bus.dead_letters(Some(name)).await.expect("dead letters");
        if !dead.is_empty() {
            assert_eq!(dead.len(), 1, "{dead:?}");
            assert_eq!(dead[0].attempts, 1);
            assert!(
                dead[0].reason.contains("ack wait"),
                "reason: {:?}",
                dead[0].reason
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the exhausted event of {name} never reached the dead-letter stream within {PATIENCE:?}"
        );
    }
}

/// The dead-letter stream is gone when the extra delivery arrives, so
/// publishing the dead letter fails; once the stream is back, the event is
/// dead-lettered (it was neither dropped nor terminated meanwhile).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_event_is_dead_lettered_once_the_refusing_dead_letter_stream_is_back() {
    let server = NatsServer::start().await;
    let c = config(&server.url());
    let bus = NatsBus::connect(&c).await.expect("connect");
    let js = raw_jetstream(&server).await;
    bus.publish(deposit("p", 1)).await.expect("publish");
    let mut consumer = bus
        .consumer(one_attempt("refused"))
        .await
        .expect("consumer");
    let unacked = first_delivery(&mut consumer).await;
    drop(unacked);
    js.delete_stream(DEAD_LETTER_STREAM)
        .await
        .expect("delete the dead-letter stream");
    // The extra delivery arrives while the dead letter cannot be stored.
    let start = Instant::now();
    while start.elapsed() < ACK_WAIT * 4 {
        match consumer.fetch(1, Duration::from_millis(200)).await {
            Ok(got) => assert!(got.is_empty(), "an exhausted event was handed out"),
            // Reporting the failure is fine; losing the event is not.
            Err(e) => eprintln!("fetch while the dead-letter stream is gone: {e}"),
        }
    }
    // The handle did receive the extra delivery while the stream was gone.
    let info = js
        .get_stream("angzarr-events")
        .await
        .expect("event stream")
        .consumer_info("refused")
        .await
        .expect("consumer info");
    assert!(
        info.delivered.consumer_sequence >= 2,
        "the delivery beyond max_deliver never came while the dead-letter stream was gone: {:?}",
        info.delivered
    );
    assert!(
        js.get_stream(DEAD_LETTER_STREAM).await.is_err(),
        "the dead-letter stream came back by itself"
    );
    // Connecting again creates the dead-letter stream.
    NatsBus::connect(&c).await.expect("connect again");
    polled_until_dead_lettered(&bus, &mut consumer, "refused").await;
}

/// A handle is closed while it holds the extra delivery (it arrived for a
/// `next()` the caller gave up on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_event_held_by_a_closed_handle_is_dead_lettered() {
    let server = NatsServer::start().await;
    let bus = NatsBus::connect(&config(&server.url()))
        .await
        .expect("connect");
    bus.publish(deposit("p", 1)).await.expect("publish");
    let mut consumer = bus.consumer(one_attempt("closed")).await.expect("consumer");
    drop(first_delivery(&mut consumer).await);
    let_the_extra_delivery_reach(&mut consumer).await;
    consumer.close().await.expect("close");
    let mut later = bus.consumer(one_attempt("closed")).await.expect("rebind");
    polled_until_dead_lettered(&bus, &mut later, "closed").await;
}

/// The same, with the handle dropped instead of closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_event_held_by_a_dropped_handle_is_dead_lettered() {
    let server = NatsServer::start().await;
    let bus = NatsBus::connect(&config(&server.url()))
        .await
        .expect("connect");
    bus.publish(deposit("p", 1)).await.expect("publish");
    let mut consumer = bus
        .consumer(one_attempt("dropped"))
        .await
        .expect("consumer");
    drop(first_delivery(&mut consumer).await);
    let_the_extra_delivery_reach(&mut consumer).await;
    drop(consumer);
    let mut later = bus.consumer(one_attempt("dropped")).await.expect("rebind");
    polled_until_dead_lettered(&bus, &mut later, "dropped").await;
}

/// The handle holding the extra delivery vanishes without a word (a process
/// that dies): nothing nak's or terminates it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_event_held_by_a_vanished_handle_is_dead_lettered() {
    let server = NatsServer::start().await;
    let c = config(&server.url());
    let bus = NatsBus::connect(&c).await.expect("connect");
    bus.publish(deposit("p", 1)).await.expect("publish");
    {
        let dying = NatsBus::connect(&c).await.expect("a second process");
        let mut consumer = dying
            .consumer(one_attempt("vanished"))
            .await
            .expect("consumer");
        drop(first_delivery(&mut consumer).await);
        let_the_extra_delivery_reach(&mut consumer).await;
        // No close, no Drop: the handle just stops, holding the delivery.
        std::mem::forget(consumer);
    }
    let mut later = bus.consumer(one_attempt("vanished")).await.expect("rebind");
    polled_until_dead_lettered(&bus, &mut later, "vanished").await;
}

/// A nak on the last allowed attempt while the dead-letter stream refuses
/// the dead letter: the caller sees the error, and the event is
/// dead-lettered once the stream is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_nak_on_the_last_attempt_is_dead_lettered_once_the_stream_is_back() {
    let server = NatsServer::start().await;
    let c = config(&server.url());
    let bus = NatsBus::connect(&c).await.expect("connect");
    let js = raw_jetstream(&server).await;
    bus.publish(deposit("p", 1)).await.expect("publish");
    let mut consumer = bus.consumer(one_attempt("naked")).await.expect("consumer");
    let d = first_delivery(&mut consumer).await;
    js.delete_stream(DEAD_LETTER_STREAM)
        .await
        .expect("delete the dead-letter stream");
    let refused = d.nak_with_reason(None, "handler failed").await;
    assert!(
        refused.is_err(),
        "the nak reported success without a dead-letter stream"
    );
    NatsBus::connect(&c).await.expect("connect again");
    polled_until_dead_lettered(&bus, &mut consumer, "naked").await;
}

/// A consumer created by an earlier bus-nats (server-side max_deliver =
/// max_deliver + 1, the last delivery being the server's last) is updated
/// to no server-side limit when a handle binds to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_created_with_a_server_side_limit_is_updated_to_none() {
    let server = NatsServer::start().await;
    let bus = NatsBus::connect(&config(&server.url()))
        .await
        .expect("connect");
    let js = raw_jetstream(&server).await;
    let stream = js.get_stream("angzarr-events").await.expect("event stream");
    stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("legacy".into()),
            filter_subject: "angzarr.events.>".into(),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: ACK_WAIT,
            max_deliver: 2,
            ..Default::default()
        })
        .await
        .expect("legacy consumer");
    bus.publish(deposit("p", 1)).await.expect("publish");
    let mut consumer = bus.consumer(one_attempt("legacy")).await.expect("bind");
    let info = stream
        .clone()
        .consumer_info("legacy")
        .await
        .expect("consumer info");
    assert_eq!(info.config.max_deliver, -1, "server-side limit kept");
    drop(first_delivery(&mut consumer).await);
    let_the_extra_delivery_reach(&mut consumer).await;
    std::mem::forget(consumer);
    let mut later = bus.consumer(one_attempt("legacy")).await.expect("rebind");
    polled_until_dead_lettered(&bus, &mut later, "legacy").await;
}
