//! Redrive through crashes, on nats-server 2.15.1: the server killed with
//! SIGKILL after the consumer acknowledged a redriven event, and a consumer
//! that dies between the two steps of acknowledging one (dead letter
//! removed, queue item not yet acknowledged). In both, a redrive run again
//! afterwards sends nothing twice, and no event is lost.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use bus_core::testkit::{deposits, filter};
use bus_core::{Backend, Bus, BusConfig, Consumer, ConsumerConfig, RedriveSelection};
use bus_nats::NatsBus;
use nats_test_server::NatsServer;
use tokio::time::Instant;

const PATIENCE: Duration = Duration::from_secs(20);
const ACK_WAIT: Duration = Duration::from_millis(800);

fn config(url: &str) -> BusConfig {
    let mut c = BusConfig {
        backend: Backend::Nats,
        ..BusConfig::default()
    };
    c.nats.url = url.to_owned();
    c.nats.request_timeout = Duration::from_secs(2);
    c
}

fn consumer_config() -> ConsumerConfig {
    ConsumerConfig::new("proj", filter("angzarr.events.>")).ack_wait(ACK_WAIT)
}

async fn open(url: &str) -> Arc<dyn Bus> {
    Arc::new(
        NatsBus::connect(&config(url))
            .await
            .unwrap_or_else(|e| panic!("connect: {e}")),
    )
}

/// Publishes `n` events and dead-letters them all for `proj`; returns positions.
async fn dead_lettered(bus: &dyn Bus, c: &mut Consumer, n: usize) -> Vec<u64> {
    for e in deposits("p", n as u64) {
        bus.publish(e).await.expect("publish");
    }
    let mut out = Vec::new();
    for _ in 0..n {
        let d = tokio::time::timeout(PATIENCE, c.next())
            .await
            .expect("delivery")
            .expect("next");
        out.push(d.event.position);
        d.term("bug").await.expect("term");
    }
    let deadline = Instant::now() + PATIENCE;
    while bus.dead_letters(Some("proj")).await.expect("dl").len() < n {
        assert!(Instant::now() < deadline, "dead letters not stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    out
}

/// Every delivery until none comes for 2 s (longer than the redrive poll
/// and the ack wait), acknowledged: (position, attempt).
async fn drain(c: &mut Consumer) -> Vec<(u64, u32)> {
    let mut got = Vec::new();
    loop {
        let batch = c.fetch(10, Duration::from_secs(2)).await.expect("fetch");
        if batch.is_empty() {
            return got;
        }
        for d in batch {
            got.push((d.event.position, d.attempt));
            d.ack().await.expect("ack");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_after_the_server_is_killed_never_resends_an_acknowledged_event() {
    let mut server = NatsServer::start().await;
    let bus = open(&server.url()).await;
    let mut c = bus.consumer(consumer_config()).await.expect("consumer");
    let p = dead_lettered(&*bus, &mut c, 3).await;
    let r = bus
        .redrive_dead_letters("proj", &RedriveSelection::All)
        .await
        .expect("redrive");
    assert_eq!(r.redriven, p);
    let d = tokio::time::timeout(PATIENCE, c.next())
        .await
        .expect("redriven delivery")
        .expect("next");
    let acked = d.event.position;
    d.ack().await.expect("ack");
    drop(c);
    server.kill().await;
    server.restart().await;
    let bus = open(&server.url()).await;
    let r = bus
        .redrive_dead_letters("proj", &RedriveSelection::All)
        .await
        .expect("redrive after the crash");
    assert!(r.redriven.is_empty(), "{r:?}");
    let mut others: Vec<u64> = p.iter().copied().filter(|x| *x != acked).collect();
    others.sort_unstable();
    let mut pending = r.already_pending.clone();
    pending.sort_unstable();
    assert_eq!(pending, others, "{r:?}");
    let mut c = bus.consumer(consumer_config()).await.expect("consumer");
    let mut got: Vec<u64> = drain(&mut c).await.into_iter().map(|(p, _)| p).collect();
    got.sort_unstable();
    assert_eq!(
        got, others,
        "after the crash: each queued dead letter once, the acknowledged one ({acked}) never"
    );
    assert!(bus.dead_letters(Some("proj")).await.expect("dl").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_dying_between_removing_the_dead_letter_and_acking_gets_it_once_more_and_no_redrive_repeats_it()
 {
    let server = NatsServer::start().await;
    let bus = open(&server.url()).await;
    let mut c = bus.consumer(consumer_config()).await.expect("consumer");
    let p = dead_lettered(&*bus, &mut c, 1).await;
    let dl = bus.dead_letters(Some("proj")).await.expect("dl");
    bus.redrive_dead_letters("proj", &RedriveSelection::All)
        .await
        .expect("redrive");
    let d = tokio::time::timeout(PATIENCE, c.next())
        .await
        .expect("redriven delivery")
        .expect("next");
    assert_eq!((d.event.position, d.attempt), (p[0], 1));
    // The first step of its ack (the dead letter removed), then the process dies.
    let js = jetstream::new(async_nats::connect(server.url()).await.expect("raw client"));
    js.get_stream("angzarr-events-dlq")
        .await
        .expect("dlq")
        .delete_message(dl[0].id)
        .await
        .expect("delete");
    std::mem::forget(d);
    std::mem::forget(c);

    let r = bus
        .redrive_dead_letters("proj", &RedriveSelection::All)
        .await
        .expect("redrive again");
    assert_eq!(
        r,
        bus_core::RedriveReport::default(),
        "nothing left to redrive"
    );
    let mut c = bus.consumer(consumer_config()).await.expect("consumer");
    // Never acknowledged, so it comes back once (at-least-once), as attempt 2.
    assert_eq!(drain(&mut c).await, [(p[0], 2)]);
    assert!(bus.dead_letters(Some("proj")).await.expect("dl").is_empty());
}
