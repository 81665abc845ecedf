//! Helpers the scenarios share: event builders and bounded waits.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::{
    Bus, Consumer, ConsumerConfig, Delivery, EventEnvelope, Filter, StartPosition, StoredEvent,
};

/// Type URL of the test payloads.
pub const TEST_TYPE_URL_PREFIX: &str = "type.googleapis.com/angzarr.test.";

/// An envelope for `aggregate_type`/`aggregate_id` at `sequence` with event
/// type `event_type`, a fresh UUID and a payload that encodes its identity.
pub fn event(
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: u64,
    event_type: &str,
) -> EventEnvelope {
    EventEnvelope {
        event_id: uuid::Uuid::new_v4().to_string(),
        aggregate_type: aggregate_type.to_owned(),
        aggregate_id: aggregate_id.to_owned(),
        sequence,
        event_type: event_type.to_owned(),
        payload: Some(prost_types::Any {
            type_url: format!("{TEST_TYPE_URL_PREFIX}{event_type}"),
            value: format!("{aggregate_id}#{sequence}").into_bytes(),
        }),
        occurred_at: Some(prost_types::Timestamp::from(SystemTime::now())),
        correlation_id: String::new(),
        causation_id: String::new(),
        metadata: BTreeMap::new(),
    }
}

/// A player event (`player`, `FundsDeposited`).
pub fn deposit(player: &str, sequence: u64) -> EventEnvelope {
    event("player", player, sequence, "FundsDeposited")
}

/// Parses a filter, panicking on a typo in the suite itself.
pub fn filter(text: &str) -> Filter {
    match Filter::parse(text) {
        Ok(f) => f,
        Err(e) => panic!("the suite used a bad filter {text:?}: {e}"),
    }
}

/// `angzarr.events.>`.
pub fn all() -> Filter {
    filter("angzarr.events.>")
}

/// Publishes each event in turn, returning the positions.
pub async fn publish_all(bus: &dyn Bus, events: &[EventEnvelope]) -> Vec<u64> {
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        let r = bus
            .publish(e.clone())
            .await
            .unwrap_or_else(|err| panic!("publish failed: {err}"));
        assert!(!r.duplicate, "a fresh event id was reported as a duplicate");
        out.push(r.position);
    }
    out
}

/// `n` deposits for one player, sequences 1..=n.
pub fn deposits(player: &str, n: u64) -> Vec<EventEnvelope> {
    (1..=n).map(|s| deposit(player, s)).collect()
}

/// Opens a consumer, panicking with the error.
pub async fn open_consumer(bus: &dyn Bus, config: ConsumerConfig) -> Consumer {
    let name = config.name.clone();
    bus.consumer(config)
        .await
        .unwrap_or_else(|e| panic!("consumer {name}: {e}"))
}

/// A consumer config for all events from the beginning with this ack wait.
pub fn config(name: &str, ack_wait: Duration) -> ConsumerConfig {
    ConsumerConfig::new(name, all())
        .start(StartPosition::Beginning)
        .ack_wait(ack_wait)
}

/// The next delivery, failing the test after `patience`.
pub async fn next_within(consumer: &mut Consumer, patience: Duration) -> Delivery {
    match tokio::time::timeout(patience, consumer.next()).await {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => panic!("consumer {}: next failed: {e}", consumer.name()),
        Err(_) => panic!(
            "consumer {}: no delivery within {patience:?}",
            consumer.name()
        ),
    }
}

/// Asserts that nothing is delivered for `quiet`.
pub async fn assert_quiet(consumer: &mut Consumer, quiet: Duration) {
    match consumer.fetch(1, quiet).await {
        Ok(v) if v.is_empty() => {}
        Ok(v) => panic!(
            "consumer {}: expected no delivery, got position {} attempt {}",
            consumer.name(),
            v[0].event.position,
            v[0].attempt
        ),
        Err(e) => panic!("consumer {}: fetch failed: {e}", consumer.name()),
    }
}

/// Receives `n` deliveries (in batches), failing the test when one does not
/// come within `patience`; none is acknowledged.
pub async fn take(consumer: &mut Consumer, n: usize, patience: Duration) -> Vec<Delivery> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let got = consumer
            .fetch(n - out.len(), patience)
            .await
            .unwrap_or_else(|e| panic!("consumer {}: fetch failed: {e}", consumer.name()));
        if got.is_empty() {
            panic!(
                "consumer {}: {} of {n} deliveries within {patience:?}",
                consumer.name(),
                out.len()
            );
        }
        out.extend(got);
    }
    out
}

/// Receives and acks `n` deliveries, returning the events in delivery order.
pub async fn take_and_ack(
    consumer: &mut Consumer,
    n: usize,
    patience: Duration,
) -> Vec<StoredEvent> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let d = next_within(consumer, patience).await;
        d.ack().await.unwrap_or_else(|e| panic!("ack failed: {e}"));
        out.push(d.event);
    }
    out
}

/// The whole replay of `filter` from `from`.
pub async fn replay_all(bus: &dyn Bus, filter: &Filter, from: StartPosition) -> Vec<StoredEvent> {
    let replay = bus
        .replay(filter, from)
        .await
        .unwrap_or_else(|e| panic!("replay {filter}: {e}"));
    match tokio::time::timeout(Duration::from_secs(60), replay.collect_all()).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("replay {filter} failed: {e}"),
        Err(_) => panic!("replay {filter} did not end within 60s"),
    }
}

/// Positions of stored events.
pub fn positions(events: &[StoredEvent]) -> Vec<u64> {
    events.iter().map(|e| e.position).collect()
}

/// Polls `check` every 20 ms until it returns `Some`, failing after `patience`.
pub async fn eventually<T, F, Fut>(patience: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("not within {patience:?}: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
