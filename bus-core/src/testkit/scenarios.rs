//! The scenarios. Each takes a [`Harness`] and panics with a message saying
//! what the backend got wrong.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::Harness;
pub use super::event_store::*;
use super::support::*;
use crate::{
    Bus, BusError, ConsumerConfig, Discard, EventEnvelope, NameKind, StartPosition, StreamSettings,
};

fn settings() -> StreamSettings {
    StreamSettings::default()
}

// ---------------------------------------------------------------- roundtrip

/// Every field of the envelope, payload bytes included, comes back exactly:
/// through a live subscription, a durable consumer and a replay.
pub async fn roundtrip_preserves_exact_bytes_and_metadata(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    let mut live = bus.subscribe(&all()).await.expect("subscribe");
    let mut e = event("player", "p-42", 7, "PlayerRegistered");
    e.payload = Some(prost_types::Any {
        type_url: "type.googleapis.com/poker.PlayerRegistered".into(),
        value: (0..=255u8).chain([0, 0, 255]).collect(),
    });
    e.occurred_at = Some(prost_types::Timestamp {
        seconds: 1_700_000_000,
        nanos: 123_456_789,
    });
    e.correlation_id = "corr-1".into();
    e.causation_id = "cmd-9".into();
    e.metadata.insert(
        "traceparent".into(),
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
    );
    e.metadata.insert("tenant".into(), "ünïcødé ✓".into());
    e.metadata.insert("empty".into(), String::new());

    let receipt = bus.publish(e.clone()).await.expect("publish");
    assert!(!receipt.duplicate);
    assert!(receipt.position >= 1, "positions start at 1");

    let got = tokio::time::timeout(t.patience, live.next())
        .await
        .expect("live event within patience")
        .expect("subscription open")
        .expect("live event decodes");
    assert_eq!(got.envelope, e, "live subscription changed the envelope");
    assert_eq!(got.subject, "angzarr.events.player.PlayerRegistered");

    let mut c = open_consumer(&*bus, config("roundtrip", t.ack_wait)).await;
    let d = next_within(&mut c, t.patience).await;
    assert_eq!(d.event.envelope, e, "durable consumer changed the envelope");
    assert_eq!(d.event.position, receipt.position);
    assert_eq!(d.event.subject, "angzarr.events.player.PlayerRegistered");
    assert_eq!(d.attempt, 1);
    let age = SystemTime::now()
        .duration_since(d.event.stored_at)
        .unwrap_or(Duration::ZERO);
    assert!(
        age < Duration::from_secs(300),
        "stored_at is not the store time: {:?}",
        d.event.stored_at
    );
    d.ack().await.expect("ack");

    let replayed = replay_all(&*bus, &all(), StartPosition::Beginning).await;
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0].envelope, e, "replay changed the envelope");
    assert_eq!(replayed[0].position, receipt.position);
}

/// A typed protobuf message published with `EventEnvelope::from_message`
/// decodes back to the same message after a trip through the bus.
pub async fn typed_payload_roundtrips_through_the_bus(h: &impl Harness) {
    let bus = h.open(settings()).await;
    let msg = prost_types::Duration {
        seconds: 90,
        nanos: 5,
    };
    let e = EventEnvelope::from_message("timer", "t-1", 1, &msg).with_correlation_id("c");
    bus.publish(e.clone()).await.expect("publish");
    let events = replay_all(&*bus, &all(), StartPosition::Beginning).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].subject, "angzarr.events.timer.Duration");
    let back: prost_types::Duration = events[0].envelope.decode_payload().expect("decode");
    assert_eq!(back, msg);
    assert!(matches!(
        events[0]
            .envelope
            .decode_payload::<prost_types::Timestamp>(),
        Err(BusError::Decode(_))
    ));
}

/// Positions are unique and increase in publish order; stream info agrees.
pub async fn positions_increase_in_publish_order(h: &impl Harness) {
    let bus = h.open(settings()).await;
    let before = bus.stream_info().await.expect("stream info");
    assert_eq!(before.messages, 0);
    let positions = publish_all(&*bus, &deposits("p1", 20)).await;
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "positions not increasing: {positions:?}"
    );
    let info = bus.stream_info().await.expect("stream info");
    assert_eq!(info.messages, 20);
    assert_eq!(info.last_position, *positions.last().expect("20 positions"));
    assert_eq!(info.first_position, positions[0]);
    assert!(info.bytes > 0);
}

// ---------------------------------------------------------------- filters

async fn publish_poker_mix(bus: &dyn Bus) {
    publish_all(
        bus,
        &[
            event("player", "p1", 1, "PlayerRegistered"),
            event("player", "p1", 2, "FundsDeposited"),
            event("hand", "h1", 1, "CardsDealt"),
            event("hand", "h1", 2, "HandWon"),
            event("table", "t1", 1, "FundsDeposited"),
        ],
    )
    .await;
}

/// `*` matches one token, `>` the rest, for replays and consumers alike.
pub async fn filters_follow_nats_wildcard_semantics(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    publish_poker_mix(&*bus).await;
    for (f, expected) in [
        (
            "angzarr.events.player.*",
            vec!["PlayerRegistered", "FundsDeposited"],
        ),
        (
            "angzarr.events.player.>",
            vec!["PlayerRegistered", "FundsDeposited"],
        ),
        ("angzarr.events.hand.>", vec!["CardsDealt", "HandWon"]),
        (
            "angzarr.events.*.>",
            vec![
                "PlayerRegistered",
                "FundsDeposited",
                "CardsDealt",
                "HandWon",
                "FundsDeposited",
            ],
        ),
        (
            "angzarr.events.>",
            vec![
                "PlayerRegistered",
                "FundsDeposited",
                "CardsDealt",
                "HandWon",
                "FundsDeposited",
            ],
        ),
        (
            "angzarr.events.*.FundsDeposited",
            vec!["FundsDeposited", "FundsDeposited"],
        ),
        ("angzarr.events.hand.CardsDealt", vec!["CardsDealt"]),
        ("angzarr.events.nobody.*", vec![]),
    ] {
        let got: Vec<String> = replay_all(&*bus, &filter(f), StartPosition::Beginning)
            .await
            .into_iter()
            .map(|e| e.envelope.event_type)
            .collect();
        assert_eq!(got, expected, "replay of {f}");
    }
    let mut c = open_consumer(
        &*bus,
        ConsumerConfig::new("players", filter("angzarr.events.player.*")).ack_wait(t.ack_wait),
    )
    .await;
    let got = take_and_ack(&mut c, 2, t.patience).await;
    assert!(got.iter().all(|e| e.envelope.aggregate_type == "player"));
    assert_quiet(&mut c, t.quiet).await;
    assert_eq!(c.info().await.expect("info").num_pending, 0);
}

/// A consumer with two filters receives events matching either, in stream order.
pub async fn consumer_with_several_filters_gets_their_union(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    publish_poker_mix(&*bus).await;
    let cfg = ConsumerConfig::new("two", filter("angzarr.events.player.PlayerRegistered"))
        .also(filter("angzarr.events.hand.*"))
        .ack_wait(t.ack_wait);
    let mut c = open_consumer(&*bus, cfg).await;
    let got: Vec<String> = take_and_ack(&mut c, 3, t.patience)
        .await
        .into_iter()
        .map(|e| e.envelope.event_type)
        .collect();
    assert_eq!(got, ["PlayerRegistered", "CardsDealt", "HandWon"]);
    assert_quiet(&mut c, t.quiet).await;
}

/// A live subscription gets events published after it, matching its filter only.
pub async fn live_subscription_sees_only_new_matching_events(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    bus.publish(deposit("old", 1)).await.expect("publish");
    let mut sub = bus
        .subscribe(&filter("angzarr.events.player.*"))
        .await
        .expect("subscribe");
    bus.publish(event("hand", "h1", 1, "CardsDealt"))
        .await
        .expect("publish");
    let wanted = deposit("new", 1);
    bus.publish(wanted.clone()).await.expect("publish");
    let got = tokio::time::timeout(t.patience, sub.next())
        .await
        .expect("live event in time")
        .expect("open")
        .expect("ok");
    assert_eq!(got.envelope, wanted, "got an old or non-matching event");
    let more = tokio::time::timeout(t.quiet, sub.next()).await;
    assert!(more.is_err(), "unexpected extra live event: {more:?}");
}

/// Every live subscriber whose filter matches gets its own copy.
pub async fn live_subscriptions_fan_out_to_every_subscriber(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    let mut a = bus.subscribe(&all()).await.expect("subscribe");
    let mut b = bus
        .subscribe(&filter("angzarr.events.*.FundsDeposited"))
        .await
        .expect("subscribe");
    let events = deposits("p", 10);
    publish_all(&*bus, &events).await;
    for sub in [&mut a, &mut b] {
        for e in &events {
            let got = tokio::time::timeout(t.patience, sub.next())
                .await
                .expect("in time")
                .expect("open")
                .expect("ok");
            assert_eq!(&got.envelope, e, "live order differs from publish order");
        }
    }
}

// ---------------------------------------------------------------- order

/// Three aggregates published concurrently, each by its own task: every
/// aggregate's events arrive in sequence order at a consumer and in a replay.
pub async fn per_aggregate_order_is_kept_across_interleaved_publishers(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    let n = 40u64;
    let mut tasks = Vec::new();
    for agg in ["a", "b", "c"] {
        let bus = Arc::clone(&bus);
        tasks.push(tokio::spawn(async move {
            for s in 1..=n {
                bus.publish(deposit(agg, s)).await.expect("publish");
            }
        }));
    }
    for task in tasks {
        task.await.expect("publisher task");
    }
    let check = |events: &[crate::StoredEvent], source: &str| {
        let mut last: HashMap<String, u64> = HashMap::new();
        for e in events {
            let prev = last
                .insert(e.envelope.aggregate_id.clone(), e.envelope.sequence)
                .unwrap_or(0);
            assert_eq!(
                e.envelope.sequence,
                prev + 1,
                "{source}: aggregate {} out of order",
                e.envelope.aggregate_id
            );
        }
        assert!(
            last.values().all(|&v| v == n),
            "{source}: missing events {last:?}"
        );
    };
    let mut c = open_consumer(&*bus, config("order", t.ack_wait)).await;
    let got = take_and_ack(&mut c, 3 * n as usize, t.patience).await;
    check(&got, "consumer");
    check(
        &replay_all(&*bus, &all(), StartPosition::Beginning).await,
        "replay",
    );
}

/// A batch gets consecutive positions in its order, one receipt per event;
/// a repeated event id inside the batch is reported as a duplicate.
pub async fn batch_is_stored_in_order_with_one_receipt_each(h: &impl Harness) {
    let bus = h.open(settings()).await;
    bus.publish(event("hand", "h0", 1, "CardsDealt"))
        .await
        .expect("publish");
    let batch = deposits("p1", 5);
    let first_receipts = bus.publish_batch(batch.clone()).await.expect("batch");
    assert_eq!(first_receipts.len(), 5);
    assert!(first_receipts.iter().all(|r| !r.duplicate));
    assert!(
        first_receipts
            .windows(2)
            .all(|w| w[1].position == w[0].position + 1),
        "{first_receipts:?}"
    );
    let stored = replay_all(
        &*bus,
        &filter("angzarr.events.player.>"),
        StartPosition::Beginning,
    )
    .await;
    let envelopes: Vec<_> = stored.into_iter().map(|e| e.envelope).collect();
    assert_eq!(envelopes, batch);

    let mut again = deposits("p1", 2);
    again.push(batch[0].clone());
    let receipts = bus.publish_batch(again).await.expect("batch with a repeat");
    assert!(!receipts[0].duplicate && !receipts[1].duplicate);
    assert!(receipts[2].duplicate, "repeated event id not flagged");
    assert_eq!(receipts[2].position, first_receipts[0].position);
    assert_eq!(bus.stream_info().await.expect("info").messages, 8);
}

/// A batch that fails validation (mixed aggregates, bad token, empty) stores
/// none of its events.
pub async fn failed_batch_validation_stores_nothing(h: &impl Harness) {
    let bus = h.open(settings()).await;
    let mixed = vec![deposit("p1", 1), deposit("p2", 1)];
    assert!(matches!(
        bus.publish_batch(mixed).await,
        Err(BusError::InvalidArgument(_))
    ));
    let mut bad = deposits("p1", 3);
    bad[2].event_type = "Funds.Deposited".into();
    assert!(matches!(
        bus.publish_batch(bad).await,
        Err(BusError::InvalidName { .. })
    ));
    assert!(matches!(
        bus.publish_batch(Vec::new()).await,
        Err(BusError::InvalidArgument(_))
    ));
    assert_eq!(bus.stream_info().await.expect("info").messages, 0);
}

// ---------------------------------------------------------------- durable consumers

/// Two differently named consumers each get every event.
pub async fn fan_out_every_durable_consumer_sees_every_event(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    let positions = publish_all(&*bus, &deposits("p", 25)).await;
    for name in ["projector-a", "projector-b"] {
        let mut c = open_consumer(&*bus, config(name, t.ack_wait)).await;
        let got = take_and_ack(&mut c, 25, t.patience).await;
        assert_eq!(super::support::positions(&got), positions, "{name}");
    }
}

/// Two handles with one consumer name share the events: together they see each
/// exactly once, and both do some of the work.
pub async fn shared_consumer_splits_work_without_duplicates(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    let n = 200usize;
    let published: BTreeSet<u64> = publish_all(&*bus, &deposits("p", n as u64))
        .await
        .into_iter()
        .collect();
    let cfg = config("shared", Duration::from_secs(30));
    let seen = Arc::new(std::sync::Mutex::new(Vec::<(usize, u64)>::new()));
    let mut tasks = Vec::new();
    for worker in 0..2 {
        let mut c = open_consumer(&*bus, cfg.clone()).await;
        let seen = Arc::clone(&seen);
        let patience = t.patience;
        tasks.push(tokio::spawn(async move {
            let deadline = Instant::now() + patience;
            loop {
                if seen.lock().map(|s| s.len()).unwrap_or(n) >= n || Instant::now() > deadline {
                    break;
                }
                let batch = c.fetch(5, Duration::from_millis(100)).await.expect("fetch");
                for d in batch {
                    d.ack().await.expect("ack");
                    if let Ok(mut s) = seen.lock() {
                        s.push((worker, d.event.position));
                    }
                }
                // Give the other worker a turn, as real handlers take time.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("worker");
    }
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let unique: BTreeSet<u64> = seen.iter().map(|(_, p)| *p).collect();
    assert_eq!(seen.len(), unique.len(), "an event went to both handles");
    assert_eq!(unique, published, "events missing");
    for worker in 0..2 {
        assert!(
            seen.iter().any(|(w, _)| *w == worker),
            "worker {worker} got nothing"
        );
    }
}

/// Dropping a handle and binding again resumes after the last ack.
pub async fn durable_consumer_resumes_after_its_handle_is_dropped(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    let positions = publish_all(&*bus, &deposits("p", 10)).await;
    {
        let mut c = open_consumer(&*bus, config("resume", t.ack_wait)).await;
        let got = take_and_ack(&mut c, 4, t.patience).await;
        assert_eq!(super::support::positions(&got), positions[..4]);
    }
    let info = bus.consumer_info("resume").await.expect("info");
    assert_eq!(info.ack_floor, positions[3]);
    let mut c = open_consumer(&*bus, config("resume", t.ack_wait)).await;
    let got = take_and_ack(&mut c, 6, t.patience).await;
    assert_eq!(super::support::positions(&got), positions[4..]);
    assert_quiet(&mut c, t.quiet).await;
}

/// StartPosition::Beginning delivers from the first stored event.
pub async fn consumer_starts_at_beginning(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    let positions = publish_all(&*bus, &deposits("p", 5)).await;
    let mut c = open_consumer(&*bus, config("begin", t.ack_wait)).await;
    assert_eq!(
        super::support::positions(&take_and_ack(&mut c, 5, t.patience).await),
        positions
    );
}

/// StartPosition::Position(p) delivers from p on.
pub async fn consumer_starts_at_position(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    let positions = publish_all(&*bus, &deposits("p", 8)).await;
    let mut c = open_consumer(
        &*bus,
        config("at-pos", t.ack_wait).start(StartPosition::Position(positions[5])),
    )
    .await;
    assert_eq!(
        super::support::positions(&take_and_ack(&mut c, 3, t.patience).await),
        positions[5..]
    );
    assert_quiet(&mut c, t.quiet).await;
}

/// StartPosition::Time(t) delivers events stored at or after t.
pub async fn consumer_starts_at_time(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    publish_all(&*bus, &deposits("early", 3)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let cut = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let late = publish_all(&*bus, &deposits("late", 3)).await;
    let mut c = open_consumer(
        &*bus,
        config("at-time", t.ack_wait).start(StartPosition::Time(cut)),
    )
    .await;
    assert_eq!(
        super::support::positions(&take_and_ack(&mut c, 3, t.patience).await),
        late
    );
    assert_quiet(&mut c, t.quiet).await;
}

/// StartPosition::New delivers only events published after creation.
pub async fn consumer_starting_new_sees_only_later_events(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    publish_all(&*bus, &deposits("old", 3)).await;
    let mut c = open_consumer(
        &*bus,
        config("new-only", t.ack_wait).start(StartPosition::New),
    )
    .await;
    assert_quiet(&mut c, t.quiet).await;
    let fresh = publish_all(&*bus, &deposits("fresh", 2)).await;
    assert_eq!(
        super::support::positions(&take_and_ack(&mut c, 2, t.patience).await),
        fresh
    );
}

/// Binding to an existing consumer resumes from its position whatever start
/// position the new handle asks for.
pub async fn start_position_is_ignored_when_resuming(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    let positions = publish_all(&*bus, &deposits("p", 6)).await;
    {
        let mut c = open_consumer(&*bus, config("resume2", t.ack_wait)).await;
        take_and_ack(&mut c, 3, t.patience).await;
    }
    let mut c = open_consumer(
        &*bus,
        config("resume2", t.ack_wait).start(StartPosition::New),
    )
    .await;
    assert_eq!(
        super::support::positions(&take_and_ack(&mut c, 3, t.patience).await),
        positions[3..]
    );
}

// ---------------------------------------------------------------- redelivery

/// A nak'ed event comes back with attempt 2, then 3.
pub async fn nak_redelivers_with_increasing_attempt(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    let pos = publish_all(&*bus, &deposits("p", 1)).await[0];
    let mut c = open_consumer(&*bus, config("nak", Duration::from_secs(30))).await;
    for attempt in 1..=3 {
        let d = next_within(&mut c, t.patience).await;
        assert_eq!((d.event.position, d.attempt), (pos, attempt));
        if attempt < 3 {
            d.nak().await.expect("nak");
        } else {
            d.ack().await.expect("ack");
        }
    }
    assert_quiet(&mut c, t.quiet).await;
    let info = c.info().await.expect("info");
    assert_eq!((info.num_ack_pending, info.ack_floor), (0, pos));
}

/// nak with a delay: the event is not redelivered before the delay.
pub async fn nak_with_delay_holds_the_event_back(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    publish_all(&*bus, &deposits("p", 1)).await;
    let mut c = open_consumer(&*bus, config("nak-delay", Duration::from_secs(30))).await;
    let d = next_within(&mut c, t.patience).await;
    let delay = Duration::from_millis(800);
    let start = Instant::now();
    d.nak_with_delay(delay).await.expect("nak");
    let again = next_within(&mut c, t.patience).await;
    let waited = start.elapsed();
    assert_eq!(again.attempt, 2);
    assert!(
        waited >= delay - Duration::from_millis(50),
        "redelivered after {waited:?}, before the {delay:?} delay"
    );
    again.ack().await.expect("ack");
}

/// An event neither acked nor nak'ed is redelivered once ack_wait passes.
pub async fn unacked_event_is_redelivered_after_ack_wait(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    let pos = publish_all(&*bus, &deposits("p", 1)).await[0];
    let mut c = open_consumer(&*bus, config("timeout", t.ack_wait)).await;
    let start = Instant::now();
    let first = next_within(&mut c, t.patience).await;
    let second = next_within(&mut c, t.patience).await;
    let waited = start.elapsed();
    assert_eq!((second.event.position, second.attempt), (pos, 2));
    assert!(
        waited >= t.ack_wait - Duration::from_millis(50),
        "redelivered after {waited:?} < ack_wait"
    );
    drop(first);
    second.ack().await.expect("ack");
    assert_quiet(&mut c, t.ack_wait + t.quiet).await;
}

/// in_progress restarts the ack-wait clock.
pub async fn in_progress_extends_the_ack_deadline(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    publish_all(&*bus, &deposits("p", 1)).await;
    let ack_wait = Duration::from_millis(1500);
    let mut c = open_consumer(&*bus, config("wpi", ack_wait)).await;
    let d = next_within(&mut c, t.patience).await;
    let start = Instant::now();
    tokio::time::sleep(Duration::from_millis(900)).await;
    d.in_progress().await.expect("in progress");
    let progressed = start.elapsed();
    // Without in_progress the event would come back at 1.5 s; with it, not before
    // progressed + 1.5 s. Watch until 1.5 s + a margin after the start.
    let watch_until = start + ack_wait + Duration::from_millis(300);
    if progressed + Duration::from_millis(300) < ack_wait {
        let quiet = watch_until.saturating_duration_since(Instant::now());
        assert_quiet(&mut c, quiet).await;
    }
    d.ack().await.expect("ack");
    assert_quiet(&mut c, ack_wait).await;
}

async fn wait_dead_letters(
    bus: &dyn Bus,
    consumer: &str,
    n: usize,
    patience: Duration,
) -> Vec<crate::DeadLetter> {
    eventually(
        patience,
        &format!("{n} dead letters of {consumer}"),
        || async {
            let dl = bus
                .dead_letters(Some(consumer))
                .await
                .expect("dead letters");
            (dl.len() >= n).then_some(dl)
        },
    )
    .await
}

/// After max_deliver naks the event is dead-lettered with the handler's reason
/// and never delivered again.
pub async fn naks_up_to_max_deliver_dead_letter_with_reason(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    let e = deposit("poison", 1);
    let pos = publish_all(&*bus, std::slice::from_ref(&e)).await[0];
    let mut c = open_consumer(
        &*bus,
        config("dlq-nak", Duration::from_secs(30)).max_deliver(3),
    )
    .await;
    for attempt in 1..=3 {
        let d = next_within(&mut c, t.patience).await;
        assert_eq!(d.attempt, attempt);
        d.nak_with_reason(None, format!("handler failed: boom {attempt}"))
            .await
            .expect("nak");
    }
    assert_quiet(&mut c, t.quiet).await;
    let dl = wait_dead_letters(&*bus, "dlq-nak", 1, t.patience).await;
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].consumer, "dlq-nak");
    assert_eq!(dl[0].attempts, 3);
    assert_eq!(dl[0].event.position, pos);
    assert_eq!(dl[0].event.envelope, e);
    assert!(dl[0].reason.contains("boom 3"), "reason {:?}", dl[0].reason);
    let all_dl = bus.dead_letters(None).await.expect("all dead letters");
    assert_eq!(all_dl.len(), 1);
    let info = c.info().await.expect("info");
    assert_eq!(info.dead_lettered, 1);
    assert_eq!(info.num_ack_pending, 0);
}

/// After max_deliver ack timeouts the event is dead-lettered with a reason
/// saying so (that the ack wait expired, not a nak's or backoff's wording).
pub async fn ack_timeouts_up_to_max_deliver_dead_letter(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    let pos = publish_all(&*bus, &deposits("slow", 1)).await[0];
    let mut c = open_consumer(&*bus, config("dlq-timeout", t.ack_wait).max_deliver(2)).await;
    let first = next_within(&mut c, t.patience).await;
    let second = next_within(&mut c, t.patience).await;
    assert_eq!((first.attempt, second.attempt), (1, 2));
    assert_quiet(&mut c, t.ack_wait + t.quiet).await;
    let dl = wait_dead_letters(&*bus, "dlq-timeout", 1, t.patience).await;
    assert_eq!(dl.len(), 1, "one event, one dead letter: {dl:?}");
    assert_eq!((dl[0].event.position, dl[0].attempts), (pos, 2));
    assert!(
        dl[0].reason.to_lowercase().contains("ack wait"),
        "reason should say that the ack wait expired: {:?}",
        dl[0].reason
    );
}

/// term dead-letters at once with its reason; no redelivery.
pub async fn term_dead_letters_at_once_and_never_redelivers(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    publish_all(&*bus, &deposits("bad", 1)).await;
    let mut c = open_consumer(&*bus, config("term", t.ack_wait).max_deliver(5)).await;
    let d = next_within(&mut c, t.patience).await;
    d.term("cannot decode payload").await.expect("term");
    assert_quiet(&mut c, t.ack_wait + t.quiet).await;
    let dl = wait_dead_letters(&*bus, "term", 1, t.patience).await;
    assert_eq!(dl[0].attempts, 1);
    assert!(
        dl[0].reason.contains("cannot decode payload"),
        "{:?}",
        dl[0].reason
    );
}

/// An event that keeps failing does not hold back the ones after it.
pub async fn poison_event_does_not_block_later_events(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    let positions = publish_all(
        &*bus,
        &[deposit("poison", 1), deposit("good", 1), deposit("good", 2)],
    )
    .await;
    let mut c = open_consumer(
        &*bus,
        config("poison", Duration::from_secs(30)).max_deliver(2),
    )
    .await;
    let mut acked = Vec::new();
    let deadline = Instant::now() + t.patience;
    while acked.len() < 2 && Instant::now() < deadline {
        let d = next_within(&mut c, t.patience).await;
        if d.envelope().aggregate_id == "poison" {
            d.nak_with_reason(None, "always fails").await.expect("nak");
        } else {
            acked.push(d.event.position);
            d.ack().await.expect("ack");
        }
    }
    assert_eq!(acked, positions[1..]);
    wait_dead_letters(&*bus, "poison", 1, t.patience).await;
}

/// With a backoff list, the n-th redelivery waits backoff[n-1]: not less,
/// and not more than [`Timing::slack`](super::Timing::slack) on top. The two
/// delays differ by more than the slack, so a backend that takes the wrong
/// entry, ignores the list, or falls back to the ack wait fails.
pub async fn backoff_spaces_redeliveries(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    publish_all(&*bus, &deposits("p", 1)).await;
    let backoff = vec![Duration::from_millis(300), Duration::from_millis(1500)];
    assert!(
        backoff[0] + t.slack < backoff[1] - Duration::from_millis(50),
        "the harness's slack {:?} is too large for this scenario to tell the delays apart",
        t.slack
    );
    let mut c = open_consumer(
        &*bus,
        config("backoff", Duration::from_secs(30))
            .backoff(backoff.clone())
            .max_deliver(3),
    )
    .await;
    let mut gaps = Vec::new();
    let mut d = next_within(&mut c, t.patience).await;
    for attempt in 2..=3 {
        d.nak().await.expect("nak");
        let start = Instant::now();
        d = next_within(&mut c, t.patience).await;
        gaps.push(start.elapsed());
        assert_eq!(d.attempt, attempt);
    }
    d.ack().await.expect("ack");
    for (gap, want) in gaps.iter().zip(&backoff) {
        assert!(
            *gap >= *want - Duration::from_millis(50),
            "gaps {gaps:?} shorter than backoff {backoff:?}"
        );
        assert!(
            *gap <= *want + t.slack,
            "gaps {gaps:?} longer than backoff {backoff:?} by more than the slack {:?}",
            t.slack
        );
    }
}

/// With max_ack_pending = 1, a nak'ed event is redelivered before any later
/// event: handlers see the aggregate strictly in order.
pub async fn single_in_flight_keeps_order_under_redelivery(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    let positions = publish_all(&*bus, &deposits("p", 5)).await;
    let mut c = open_consumer(
        &*bus,
        config("strict", Duration::from_secs(30)).max_ack_pending(1),
    )
    .await;
    let mut processed = Vec::new();
    let mut failed_once = false;
    while processed.len() < 5 {
        let d = next_within(&mut c, t.patience).await;
        if d.envelope().sequence == 2 && !failed_once {
            failed_once = true;
            d.nak().await.expect("nak");
            continue;
        }
        processed.push(d.event.position);
        d.ack().await.expect("ack");
    }
    assert_eq!(processed, positions, "order broken under redelivery");
}

/// Default consumer: naks reorder deliveries, but every event is acked in the end.
pub async fn every_event_is_processed_at_least_once_despite_naks(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    let positions: BTreeSet<u64> = publish_all(&*bus, &deposits("p", 30))
        .await
        .into_iter()
        .collect();
    let mut c = open_consumer(&*bus, config("naky", Duration::from_secs(30))).await;
    let mut acked = BTreeSet::new();
    let mut naked = BTreeSet::new();
    while acked.len() < positions.len() {
        let d = next_within(&mut c, t.patience).await;
        let p = d.event.position;
        if p % 3 == 0 && naked.insert(p) {
            d.nak().await.expect("nak");
        } else {
            assert!(
                acked.insert(p),
                "position {p} delivered again after its ack"
            );
            d.ack().await.expect("ack");
        }
    }
    assert_eq!(acked, positions);
    assert_quiet(&mut c, t.quiet).await;
}

/// Acking twice is harmless and does not disturb other events.
pub async fn ack_is_idempotent(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    publish_all(&*bus, &deposits("p", 2)).await;
    let mut c = open_consumer(&*bus, config("ack2", t.ack_wait)).await;
    let d = next_within(&mut c, t.patience).await;
    d.ack().await.expect("ack");
    d.ack().await.expect("second ack is fine");
    let d2 = next_within(&mut c, t.patience).await;
    assert_eq!(d2.envelope().sequence, 2);
    d2.ack().await.expect("ack");
    assert_quiet(&mut c, t.ack_wait + t.quiet).await;
}

/// `Delivery::ack_all` acknowledges exactly the deliveries it is given:
/// once it returns, every one of them is acknowledged (the consumer's info
/// says so at once: confirmed means applied), the ones left out stay
/// pending and come back on a nak, deliveries of another consumer in the
/// same call are acknowledged too, and nothing acknowledged comes again.
pub async fn ack_all_acknowledges_exactly_the_deliveries_it_is_given(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    let positions = publish_all(&*bus, &deposits("p", 200)).await;
    let long_wait = Duration::from_secs(30);
    let mut c = open_consumer(&*bus, config("batch", long_wait)).await;
    let mut other = open_consumer(&*bus, config("batch-other", long_wait)).await;
    let got = take(&mut c, 200, t.patience).await;
    assert_eq!(
        got.iter().map(|d| d.event.position).collect::<Vec<_>>(),
        positions
    );
    let others = take(&mut other, 3, t.patience).await;
    crate::Delivery::ack_all(std::iter::empty())
        .await
        .expect("acknowledging nothing");
    // Left out: one in the middle and the last one delivered.
    let left_out = [57, 199];
    let acked = got
        .iter()
        .enumerate()
        .filter(|(i, _)| !left_out.contains(i))
        .map(|(_, d)| d);
    crate::Delivery::ack_all(acked.chain(&others))
        .await
        .expect("ack_all");
    let info = bus.consumer_info("batch").await.expect("info");
    assert_eq!(
        (info.num_ack_pending, info.ack_floor, info.num_pending),
        (2, positions[56], 0),
        "after ack_all returned: only the two left out are unacknowledged"
    );
    let info = bus.consumer_info("batch-other").await.expect("info");
    assert_eq!(
        (info.num_ack_pending, info.ack_floor),
        (0, positions[2]),
        "the other consumer's deliveries in the same call"
    );
    for i in left_out {
        got[i].nak().await.expect("nak");
    }
    let again = take(&mut c, 2, t.patience).await;
    assert_eq!(
        again
            .iter()
            .map(|d| (d.event.position, d.attempt))
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([(positions[57], 2), (positions[199], 2)]),
        "only the deliveries left out come back"
    );
    crate::Delivery::ack_all(&again).await.expect("ack_all");
    let info = bus.consumer_info("batch").await.expect("info");
    assert_eq!((info.num_ack_pending, info.ack_floor), (0, positions[199]));
    // Acknowledging a batch again is harmless.
    crate::Delivery::ack_all(&got).await.expect("ack_all again");
    assert_quiet(&mut c, t.quiet).await;
}

// ---------------------------------------------------------------- dedup

/// The same event id twice inside the window: stored once, receipt flags the
/// duplicate with the first position.
pub async fn duplicate_event_id_inside_window_is_stored_once(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    let e = deposit("p", 1);
    let first = bus.publish(e.clone()).await.expect("publish");
    bus.publish(deposit("q", 1)).await.expect("publish");
    let again = bus.publish(e.clone()).await.expect("republish");
    assert!(again.duplicate, "duplicate not reported");
    assert_eq!(again.position, first.position);
    assert_eq!(bus.stream_info().await.expect("info").messages, 2);
    let mut c = open_consumer(&*bus, config("dedup", t.ack_wait)).await;
    take_and_ack(&mut c, 2, t.patience).await;
    assert_quiet(&mut c, t.quiet).await;
}

/// Outside the duplicate window the same id is stored again.
pub async fn duplicate_event_id_after_window_is_stored_again(h: &impl Harness) {
    let window = Duration::from_millis(400);
    let bus = h
        .open(StreamSettings {
            duplicate_window: window,
            ..settings()
        })
        .await;
    let e = deposit("p", 1);
    let first = bus.publish(e.clone()).await.expect("publish");
    tokio::time::sleep(window + Duration::from_millis(400)).await;
    let again = bus.publish(e).await.expect("republish");
    assert!(!again.duplicate, "still a duplicate after the window");
    assert!(again.position > first.position);
}

// ---------------------------------------------------------------- replay

/// A replay returns history in order and ends at the head as it was when it
/// started, even while events keep arriving.
pub async fn replay_reads_to_the_head_seen_at_start_and_ends(h: &impl Harness) {
    let bus = h.open(settings()).await;
    let positions = publish_all(&*bus, &deposits("p", 1200)).await;
    let mut replay = bus
        .replay(&all(), StartPosition::Beginning)
        .await
        .expect("replay");
    let mut got = Vec::new();
    for _ in 0..10 {
        got.push(replay.next().await.expect("item").expect("ok").position);
    }
    publish_all(&*bus, &deposits("late", 5)).await;
    let rest = tokio::time::timeout(Duration::from_secs(60), replay.collect_all())
        .await
        .expect("replay ends")
        .expect("ok");
    got.extend(rest.iter().map(|e| e.position));
    assert_eq!(
        got, positions,
        "replay must stop at the head seen at its start"
    );
}

/// Replays from a position and from a time.
pub async fn replay_from_position_and_time(h: &impl Harness) {
    let bus = h.open(settings()).await;
    let early = publish_all(&*bus, &deposits("early", 4)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let cut = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let late = publish_all(&*bus, &deposits("late", 3)).await;
    let from_pos = replay_all(&*bus, &all(), StartPosition::Position(early[2])).await;
    let mut want = early[2..].to_vec();
    want.extend(&late);
    assert_eq!(super::support::positions(&from_pos), want);
    let from_time = replay_all(&*bus, &all(), StartPosition::Time(cut)).await;
    assert_eq!(super::support::positions(&from_time), late);
    let beyond = replay_all(&*bus, &all(), StartPosition::Position(late[2] + 100)).await;
    assert!(beyond.is_empty());
    assert!(
        replay_all(&*bus, &all(), StartPosition::New)
            .await
            .is_empty()
    );
}

/// Replaying an empty stream ends at once.
pub async fn replay_of_empty_stream_ends_at_once(h: &impl Harness) {
    let bus = h.open(settings()).await;
    assert!(
        replay_all(&*bus, &all(), StartPosition::Beginning)
            .await
            .is_empty()
    );
}

// ---------------------------------------------------------------- concurrency

/// Eight publishers at once: every event stored once, positions unique, and a
/// consumer and a replay see exactly the published events, each once, every
/// publisher's events in its publish order. A lost event fails after
/// `patience` without progress, naming what is missing.
pub async fn concurrent_publishers_lose_and_duplicate_nothing(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    let writers = 8usize;
    let per = 100u64;
    let total = writers * per as usize;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let bus = Arc::clone(&bus);
        let patience = t.patience;
        tasks.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            for s in 1..=per {
                let e = deposit(&format!("w{w}"), s);
                let r = match tokio::time::timeout(patience, bus.publish(e.clone())).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(err)) => panic!("publisher w{w}, sequence {s}: {err}"),
                    Err(_) => {
                        panic!("publisher w{w}, sequence {s}: no receipt within {patience:?}")
                    }
                };
                assert!(
                    !r.duplicate,
                    "publisher w{w}, sequence {s}: a fresh event id was reported as a duplicate"
                );
                sent.push((r.position, e.event_id));
            }
            sent
        }));
    }
    // Position -> (publisher, sequence, event id), for every receipt.
    let mut published: BTreeMap<u64, (String, u64, String)> = BTreeMap::new();
    for (w, task) in tasks.into_iter().enumerate() {
        let sent = task.await.expect("publisher task");
        assert!(
            sent.windows(2).all(|p| p[0].0 < p[1].0),
            "publisher w{w}: positions not increasing in its publish order: {:?}",
            sent.iter().map(|(p, _)| p).collect::<Vec<_>>()
        );
        for (s, (position, id)) in (1..).zip(sent) {
            if let Some((other, other_s, _)) = published.insert(position, (format!("w{w}"), s, id))
            {
                panic!("position {position} given to w{w} #{s} and to {other} #{other_s}");
            }
        }
    }
    assert_eq!(published.len(), total);

    // The replay: history in position order, each event exactly once.
    let replayed = replay_all(&*bus, &all(), StartPosition::Beginning).await;
    assert!(
        replayed.windows(2).all(|p| p[0].position < p[1].position),
        "replay not in position order (or a position twice)"
    );
    check_exactly_the_published("replay", &replayed, &published, per);

    // A consumer: first deliveries (nothing is nak'ed, and the ack wait is
    // far away), so each event exactly once, each publisher in order.
    let mut c = open_consumer(
        &*bus,
        config("conc", Duration::from_secs(60)).max_ack_pending(10_000),
    )
    .await;
    let mut delivered = Vec::with_capacity(total);
    let mut seen = BTreeSet::new();
    while delivered.len() < total {
        let batch = c.fetch(100, t.patience).await.expect("fetch");
        if batch.is_empty() {
            let got: BTreeSet<u64> = delivered
                .iter()
                .map(|e: &crate::StoredEvent| e.position)
                .collect();
            let missing: Vec<u64> = published
                .keys()
                .filter(|p| !got.contains(p))
                .copied()
                .take(10)
                .collect();
            panic!(
                "consumer: nothing delivered for {:?} after {} of {total} events; missing positions include {missing:?}",
                t.patience,
                delivered.len()
            );
        }
        for d in batch {
            assert!(
                seen.insert(d.event.position),
                "consumer: position {} delivered twice (attempt {}) without a nak or an ack timeout",
                d.event.position,
                d.attempt
            );
            assert_eq!(
                d.attempt, 1,
                "consumer: a redelivery without a nak or timeout"
            );
            d.ack().await.expect("ack");
            delivered.push(d.event);
        }
    }
    assert_quiet(&mut c, t.quiet).await;
    check_exactly_the_published("consumer", &delivered, &published, per);
}

/// `events` (a replay, or first deliveries in the order received) hold each
/// published event exactly once, nothing else, and every publisher's events
/// in its sequence order.
fn check_exactly_the_published(
    source: &str,
    events: &[crate::StoredEvent],
    published: &BTreeMap<u64, (String, u64, String)>,
    per: u64,
) {
    let mut seen: HashMap<u64, usize> = HashMap::new();
    let mut last: HashMap<&str, u64> = HashMap::new();
    for (i, e) in events.iter().enumerate() {
        if let Some(first) = seen.insert(e.position, i) {
            panic!(
                "{source}: position {} seen twice (items {first} and {i})",
                e.position
            );
        }
        let Some((publisher, sequence, id)) = published.get(&e.position) else {
            panic!(
                "{source}: position {} was never published (event {})",
                e.position, e.envelope.event_id
            );
        };
        assert_eq!(
            (
                &e.envelope.event_id,
                &e.envelope.aggregate_id,
                e.envelope.sequence
            ),
            (id, publisher, *sequence),
            "{source}: position {} is not the event published there",
            e.position
        );
        let prev = last.insert(publisher.as_str(), *sequence).unwrap_or(0);
        assert_eq!(
            *sequence,
            prev + 1,
            "{source}: publisher {publisher}'s #{sequence} came after its #{prev}"
        );
    }
    let missing: Vec<u64> = published
        .keys()
        .filter(|p| !seen.contains_key(p))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "{source}: {} published events missing, e.g. positions {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        last.values().all(|&s| s == per),
        "{source}: a publisher's events are incomplete: {last:?}"
    );
}

// ---------------------------------------------------------------- bad input

/// Bad names, ids and arguments are matchable errors naming the problem, and
/// nothing is stored.
pub async fn bad_input_is_a_clear_error_and_stores_nothing(h: &impl Harness) {
    let bus = h.open(settings()).await;
    for (agg, ty) in [
        ("pla.yer", "X"),
        ("", "X"),
        ("p", "Funds Deposited"),
        ("p", "A*"),
        ("p", ">"),
    ] {
        let e = event(agg, "id", 1, ty);
        match bus.publish(e).await {
            Err(BusError::InvalidName { token, kind, .. }) => {
                assert!(token == agg || token == ty, "error names {token:?}");
                assert!(matches!(
                    kind,
                    NameKind::AggregateType | NameKind::EventType
                ));
            }
            other => panic!("{agg:?}/{ty:?}: expected InvalidName, got {other:?}"),
        }
    }
    let mut e = deposit("p", 1);
    e.event_id = "not-a-uuid".into();
    assert!(
        matches!(bus.publish(e).await, Err(BusError::InvalidArgument(m)) if m.contains("not-a-uuid"))
    );
    let mut e = deposit("p", 1);
    e.aggregate_id.clear();
    assert!(matches!(
        bus.publish(e).await,
        Err(BusError::InvalidArgument(_))
    ));

    for f in ["other.events.>", "angzarr.>"] {
        assert!(
            matches!(
                bus.subscribe(&filter(f)).await,
                Err(BusError::InvalidFilter { .. })
            ),
            "{f}"
        );
        assert!(
            matches!(
                bus.replay(&filter(f), StartPosition::Beginning).await,
                Err(BusError::InvalidFilter { .. })
            ),
            "{f}"
        );
        let cfg = ConsumerConfig::new("outside", filter(f));
        assert!(
            matches!(bus.consumer(cfg).await, Err(BusError::InvalidFilter { .. })),
            "{f}"
        );
    }
    assert!(matches!(
        bus.consumer(ConsumerConfig::new("bad.name", all())).await,
        Err(BusError::InvalidName {
            kind: NameKind::ConsumerName,
            ..
        })
    ));
    assert!(matches!(
        bus.consumer(ConsumerConfig::new("zero", all()).max_deliver(0))
            .await,
        Err(BusError::InvalidArgument(_))
    ));
    assert!(matches!(
        bus.consumer(ConsumerConfig::new("zero", all()).max_ack_pending(0))
            .await,
        Err(BusError::InvalidArgument(_))
    ));
    assert!(matches!(
        bus.consumer_info("nobody").await,
        Err(BusError::NotFound { .. })
    ));
    assert!(matches!(
        bus.delete_consumer("nobody").await,
        Err(BusError::NotFound { .. })
    ));
    assert!(
        bus.dead_letters(Some("nobody"))
            .await
            .expect("dead letters")
            .is_empty()
    );
    assert_eq!(bus.stream_info().await.expect("info").messages, 0);
}

/// An event whose encoding exceeds max_msg_size is refused with the sizes.
pub async fn payload_over_the_limit_is_rejected(h: &impl Harness) {
    let bus = h
        .open(StreamSettings {
            max_msg_size: 4096,
            ..settings()
        })
        .await;
    let mut e = deposit("p", 1);
    if let Some(any) = e.payload.as_mut() {
        any.value = vec![7u8; 8000];
    }
    match bus.publish(e).await {
        Err(BusError::PayloadTooLarge { size, limit }) => {
            assert!(size > 8000, "size {size}");
            assert_eq!(limit, 4096);
        }
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    let mut ok = deposit("p", 1);
    if let Some(any) = ok.payload.as_mut() {
        any.value = vec![7u8; 2000];
    }
    bus.publish(ok).await.expect("a smaller event fits");
    assert_eq!(bus.stream_info().await.expect("info").messages, 1);
}

/// Binding an existing consumer with other filters is a conflict.
pub async fn consumer_rebind_with_other_filters_conflicts(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    open_consumer(&*bus, config("rebind", t.ack_wait)).await;
    let other = ConsumerConfig::new("rebind", filter("angzarr.events.player.*"));
    match bus.consumer(other).await {
        Err(BusError::Conflict(m)) => assert!(m.contains("rebind"), "{m}"),
        other => panic!("expected Conflict, got {other:?}"),
    }
    // Same filters, other delivery settings: allowed.
    open_consumer(&*bus, config("rebind", t.ack_wait).max_deliver(9)).await;
}

/// num_pending, num_ack_pending, delivered and ack_floor follow deliveries and acks.
pub async fn consumer_info_tracks_pending_and_ack_floor(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    let positions = publish_all(&*bus, &deposits("p", 10)).await;
    publish_all(&*bus, &[event("hand", "h", 1, "CardsDealt")]).await;
    let mut c = open_consumer(
        &*bus,
        ConsumerConfig::new("info", filter("angzarr.events.player.*"))
            .ack_wait(Duration::from_secs(30)),
    )
    .await;
    let info = c.info().await.expect("info");
    assert_eq!(
        (
            info.name.as_str(),
            info.num_pending,
            info.num_ack_pending,
            info.delivered,
            info.ack_floor
        ),
        ("info", 10, 0, 0, 0)
    );
    assert_eq!(info.filters, vec!["angzarr.events.player.*".to_owned()]);
    take_and_ack(&mut c, 4, t.patience).await;
    let held: Vec<_> = [
        next_within(&mut c, t.patience).await,
        next_within(&mut c, t.patience).await,
    ]
    .into();
    let info = bus.consumer_info("info").await.expect("info");
    assert_eq!(info.num_pending, 4);
    assert_eq!(info.num_ack_pending, 2);
    assert_eq!(info.delivered, positions[5]);
    assert_eq!(info.ack_floor, positions[3]);
    held[1].ack().await.expect("ack");
    let info = bus.consumer_info("info").await.expect("info");
    assert_eq!(
        (info.num_ack_pending, info.ack_floor),
        (1, positions[3]),
        "a gap keeps the floor"
    );
    held[0].nak().await.expect("nak");
    let again = next_within(&mut c, t.patience).await;
    assert_eq!(again.event.position, positions[4]);
    let info = bus.consumer_info("info").await.expect("info");
    assert_eq!(info.num_redelivered, 1);
    again.ack().await.expect("ack");
    let info = bus.consumer_info("info").await.expect("info");
    assert_eq!((info.num_ack_pending, info.ack_floor), (0, positions[5]));
}

/// Deleting a consumer forgets its position; its dead letters stay readable.
pub async fn deleted_consumer_starts_over_and_keeps_dead_letters(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    let positions = publish_all(&*bus, &deposits("p", 3)).await;
    {
        let mut c = open_consumer(&*bus, config("gone", t.ack_wait)).await;
        let d = next_within(&mut c, t.patience).await;
        d.term("bad").await.expect("term");
        take_and_ack(&mut c, 2, t.patience).await;
    }
    wait_dead_letters(&*bus, "gone", 1, t.patience).await;
    bus.delete_consumer("gone").await.expect("delete");
    assert!(matches!(
        bus.consumer_info("gone").await,
        Err(BusError::NotFound { .. })
    ));
    assert_eq!(bus.dead_letters(Some("gone")).await.expect("dl").len(), 1);
    let mut c = open_consumer(&*bus, config("gone", t.ack_wait)).await;
    assert_eq!(
        super::support::positions(&take_and_ack(&mut c, 3, t.patience).await),
        positions
    );
}

// ---------------------------------------------------------------- retention

/// max_msgs with discard old keeps the newest events.
pub async fn max_msgs_discard_old_drops_the_oldest(h: &impl Harness) {
    let bus = h
        .open(StreamSettings {
            max_msgs: 5,
            ..settings()
        })
        .await;
    let positions = publish_all(&*bus, &deposits("p", 8)).await;
    let info = bus.stream_info().await.expect("info");
    assert_eq!(info.messages, 5);
    assert_eq!(info.first_position, positions[3]);
    assert_eq!(info.last_position, positions[7]);
    let kept = replay_all(&*bus, &all(), StartPosition::Beginning).await;
    assert_eq!(super::support::positions(&kept), positions[3..]);
}

/// max_msgs with discard new refuses events once full.
pub async fn max_msgs_discard_new_refuses_with_limit_reached(h: &impl Harness) {
    let bus = h
        .open(StreamSettings {
            max_msgs: 3,
            discard: Discard::New,
            ..settings()
        })
        .await;
    publish_all(&*bus, &deposits("p", 3)).await;
    assert!(matches!(
        bus.publish(deposit("q", 1)).await,
        Err(BusError::LimitReached(_))
    ));
    assert_eq!(bus.stream_info().await.expect("info").messages, 3);
}

/// Events older than max_age disappear.
pub async fn max_age_expires_old_events(h: &impl Harness) {
    let t = h.timing();
    let max_age = Duration::from_millis(1000);
    let bus = h
        .open(StreamSettings {
            max_age,
            duplicate_window: Duration::from_millis(500),
            ..settings()
        })
        .await;
    publish_all(&*bus, &deposits("p", 3)).await;
    tokio::time::sleep(max_age).await;
    let fresh = publish_all(&*bus, &deposits("q", 1)).await;
    eventually(t.patience, "old events expire", || async {
        let kept = replay_all(&*bus, &all(), StartPosition::Beginning).await;
        (super::support::positions(&kept) == fresh).then_some(())
    })
    .await;
}

// ---------------------------------------------------------------- redrive

/// How long "no second copy arrives" is watched for after a redrive: longer
/// than a backend may take to notice a redrive (the NATS handles look at
/// the redrive queue once a second while it is empty).
const REDRIVE_QUIET: Duration = Duration::from_millis(1800);

/// Terminates every delivery of `consumer` until `n` dead letters exist;
/// returns their positions in order.
async fn dead_letter_all(
    bus: &dyn Bus,
    c: &mut crate::Consumer,
    n: usize,
    t: &super::Timing,
) -> Vec<u64> {
    for _ in 0..n {
        let d = next_within(c, t.patience).await;
        d.term(format!("bug in the handler at {}", d.event.position))
            .await
            .expect("term");
    }
    let dl = wait_dead_letters(bus, c.name(), n, t.patience).await;
    let mut p: Vec<u64> = dl.iter().map(|d| d.event.position).collect();
    p.sort_unstable();
    p
}

/// Every delivery until nothing comes for `quiet`, acked: (position, attempt).
async fn drain(c: &mut crate::Consumer, quiet: Duration, patience: Duration) -> Vec<(u64, u32)> {
    let mut got = Vec::new();
    let deadline = Instant::now() + patience;
    loop {
        let batch = c.fetch(10, quiet).await.expect("fetch");
        if batch.is_empty() {
            return got;
        }
        for d in batch {
            got.push((d.event.position, d.attempt));
            d.ack().await.expect("ack");
        }
        assert!(
            Instant::now() < deadline,
            "deliveries did not stop: {got:?}"
        );
    }
}

/// A redriven dead letter comes back to the consumer that gave up on it,
/// with its original position, subject and envelope, as attempt 1; it stays
/// in the dead-letter store until that consumer acknowledges it, then it is
/// gone. Another consumer of the same events sees no second copy.
pub async fn redrive_sends_a_dead_letter_back_only_to_its_consumer(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    let events = [deposit("p", 1), deposit("p", 2)];
    let positions = publish_all(&*bus, &events).await;
    let mut other = open_consumer(&*bus, config("redrive-other", Duration::from_secs(30))).await;
    take_and_ack(&mut other, 2, t.patience).await;
    let mut c = open_consumer(
        &*bus,
        config("redrive-proj", Duration::from_secs(30)).max_deliver(3),
    )
    .await;
    let first = next_within(&mut c, t.patience).await;
    assert_eq!(first.event.position, positions[0]);
    let original = first.event.clone();
    first.term("projector bug").await.expect("term");
    take_and_ack(&mut c, 1, t.patience).await;
    wait_dead_letters(&*bus, "redrive-proj", 1, t.patience).await;

    let report = bus
        .redrive_dead_letters(
            "redrive-proj",
            &crate::RedriveSelection::Positions(vec![positions[0]]),
        )
        .await
        .expect("redrive");
    assert_eq!(report.redriven, [positions[0]], "{report:?}");
    assert!(
        report.already_pending.is_empty() && report.not_found.is_empty(),
        "{report:?}"
    );

    let again = next_within(&mut c, t.patience).await;
    assert_eq!(again.event.position, original.position);
    assert_eq!(again.event.subject, original.subject);
    assert_eq!(
        again.event.envelope, events[0],
        "the original envelope, exactly"
    );
    assert_eq!(again.attempt, 1, "a redrive is a fresh start");
    let still = bus.dead_letters(Some("redrive-proj")).await.expect("dl");
    assert_eq!(
        still.len(),
        1,
        "removed only once the consumer has it: {still:?}"
    );
    again.ack().await.expect("ack");
    eventually(
        t.patience,
        "the acknowledged dead letter to leave the store",
        || async {
            bus.dead_letters(Some("redrive-proj"))
                .await
                .expect("dl")
                .is_empty()
                .then_some(())
        },
    )
    .await;
    assert_quiet(&mut other, REDRIVE_QUIET).await;
    assert_quiet(&mut c, REDRIVE_QUIET).await;
    let report = bus
        .redrive_dead_letters(
            "redrive-proj",
            &crate::RedriveSelection::Positions(vec![positions[0]]),
        )
        .await
        .expect("redrive again");
    assert_eq!(report.not_found, [positions[0]], "{report:?}");
    assert!(report.redriven.is_empty(), "{report:?}");
}

/// A redrive repeated after an earlier one was cut short (some redriven
/// events acknowledged, some still on their way) queues only what was not
/// queued yet: the consumer receives each dead letter exactly once, and the
/// report counts what was sent, what was already pending and what was not there.
pub async fn repeated_redrive_sends_nothing_twice(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    publish_all(&*bus, &deposits("p", 3)).await;
    let mut c = open_consumer(
        &*bus,
        config("redrive-rep", Duration::from_secs(30)).max_deliver(2),
    )
    .await;
    let p = dead_letter_all(&*bus, &mut c, 3, &t).await;
    let one = |x: u64| crate::RedriveSelection::Positions(vec![x]);

    let r = bus
        .redrive_dead_letters("redrive-rep", &one(p[0]))
        .await
        .expect("redrive");
    assert_eq!(r.redriven, [p[0]], "{r:?}");
    let d = next_within(&mut c, t.patience).await;
    assert_eq!(d.event.position, p[0]);
    d.ack().await.expect("ack");

    let r = bus
        .redrive_dead_letters("redrive-rep", &one(p[1]))
        .await
        .expect("redrive");
    assert_eq!(r.redriven, [p[1]], "{r:?}");
    // Interrupted here: p[0] acknowledged, p[1] queued and not yet taken.
    let r = bus
        .redrive_dead_letters("redrive-rep", &crate::RedriveSelection::All)
        .await
        .expect("redrive all");
    assert_eq!(r.redriven, [p[2]], "only the one never redriven: {r:?}");
    assert_eq!(r.already_pending, [p[1]], "{r:?}");
    let mut got = drain(&mut c, REDRIVE_QUIET, t.patience).await;
    got.sort_unstable();
    assert_eq!(
        got,
        [(p[1], 1), (p[2], 1)],
        "each redriven dead letter once, p[0] never again"
    );
    eventually(
        t.patience,
        "every acknowledged dead letter to leave the store",
        || async {
            bus.dead_letters(Some("redrive-rep"))
                .await
                .expect("dl")
                .is_empty()
                .then_some(())
        },
    )
    .await;
    let r = bus
        .redrive_dead_letters("redrive-rep", &crate::RedriveSelection::All)
        .await
        .expect("redrive all again");
    assert_eq!(r, crate::RedriveReport::default());
    assert_quiet(&mut c, REDRIVE_QUIET).await;
}

/// A redriven event the handler still cannot process is dead-lettered
/// again with the new reason, in place of the old dead letter.
pub async fn redriven_event_that_fails_again_is_dead_lettered_again(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    publish_all(&*bus, &deposits("p", 1)).await;
    let mut c = open_consumer(&*bus, config("redrive-fail", Duration::from_secs(30))).await;
    let p = dead_letter_all(&*bus, &mut c, 1, &t).await;
    bus.redrive_dead_letters("redrive-fail", &crate::RedriveSelection::All)
        .await
        .expect("redrive");
    let d = next_within(&mut c, t.patience).await;
    assert_eq!((d.event.position, d.attempt), (p[0], 1));
    d.term("still broken").await.expect("term");
    let dl = eventually(
        t.patience,
        "the new dead letter in place of the old",
        || async {
            let dl = bus.dead_letters(Some("redrive-fail")).await.expect("dl");
            (dl.len() == 1 && dl[0].reason.contains("still broken")).then_some(dl)
        },
    )
    .await;
    assert_eq!((dl[0].event.position, dl[0].attempts), (p[0], 1));
    assert_quiet(&mut c, REDRIVE_QUIET).await;
    assert_eq!(
        bus.dead_letters(Some("redrive-fail"))
            .await
            .expect("dl")
            .len(),
        1,
        "the old dead letter is gone"
    );
}

/// Redriving to a consumer that does not exist is `NotFound`.
pub async fn redrive_to_an_unknown_consumer_is_not_found(h: &impl Harness) {
    let bus = h.open(settings()).await;
    match bus
        .redrive_dead_letters("nobody", &crate::RedriveSelection::All)
        .await
    {
        Err(BusError::NotFound { .. }) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}

// ---------------------------------------------------------------- persistence

/// Published events are all there after a restart, unchanged.
pub async fn events_survive_a_restart(h: &impl Harness) {
    let bus = h.open(settings()).await;
    let events = deposits("p", 50);
    publish_all(&*bus, &events).await;
    drop(bus);
    let bus = h.reopen().await;
    let back: Vec<_> = replay_all(&*bus, &all(), StartPosition::Beginning)
        .await
        .into_iter()
        .map(|e| e.envelope)
        .collect();
    assert_eq!(back, events);
}

/// A consumer resumes after its last ack across a restart.
pub async fn consumer_position_survives_a_restart(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    let positions = publish_all(&*bus, &deposits("p", 10)).await;
    {
        let mut c = open_consumer(&*bus, config("durable", t.ack_wait)).await;
        take_and_ack(&mut c, 4, t.patience).await;
    }
    drop(bus);
    let bus = h.reopen().await;
    let mut c = open_consumer(&*bus, config("durable", t.ack_wait)).await;
    assert_eq!(
        super::support::positions(&take_and_ack(&mut c, 6, t.patience).await),
        positions[4..]
    );
    // Nothing acked comes back, before or after the restart.
    assert_quiet(&mut c, t.ack_wait + t.quiet).await;
}

/// Acks confirmed by `Delivery::ack_all` survive a restart: after it, the
/// consumer delivers only what the batch left out.
pub async fn acks_confirmed_by_ack_all_survive_a_restart(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    let positions = publish_all(&*bus, &deposits("p", 50)).await;
    {
        let mut c = open_consumer(&*bus, config("batch", t.ack_wait)).await;
        let got = take(&mut c, 50, t.patience).await;
        crate::Delivery::ack_all(&got[..40]).await.expect("ack_all");
    }
    drop(bus);
    let bus = h.reopen().await;
    let mut c = open_consumer(&*bus, config("batch", t.ack_wait)).await;
    let mut after: Vec<u64> = take_and_ack(&mut c, 10, t.patience)
        .await
        .iter()
        .map(|e| e.position)
        .collect();
    after.sort_unstable();
    assert_eq!(
        after,
        positions[40..],
        "only the unacknowledged ten come back"
    );
    assert_quiet(&mut c, t.ack_wait + t.quiet).await;
}

/// Delivered but unacknowledged events come back after a restart, as
/// redeliveries; an event acknowledged before the restart never does.
pub async fn unacked_events_are_redelivered_after_a_restart(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    let positions = publish_all(&*bus, &deposits("p", 3)).await;
    {
        let mut c = open_consumer(&*bus, config("crash", t.ack_wait)).await;
        let d = next_within(&mut c, t.patience).await;
        assert_eq!((d.event.position, d.attempt), (positions[0], 1));
        d.ack().await.expect("ack");
        let unacked = next_within(&mut c, t.patience).await;
        assert_eq!((unacked.event.position, unacked.attempt), (positions[1], 1));
    }
    drop(bus);
    let bus = h.reopen().await;
    let mut c = open_consumer(&*bus, config("crash", t.ack_wait)).await;
    // Everything delivered after the restart, until nothing more comes for
    // longer than an ack wait (so a redelivery of anything would show).
    let mut got: Vec<(u64, u32)> = Vec::new();
    let deadline = Instant::now() + t.patience;
    loop {
        let batch = c
            .fetch(10, t.ack_wait + t.quiet)
            .await
            .expect("fetch after the restart");
        if batch.is_empty() && got.len() >= 2 {
            break;
        }
        for d in batch {
            got.push((d.event.position, d.attempt));
            d.ack().await.expect("ack");
        }
        assert!(
            Instant::now() < deadline,
            "after the restart, deliveries (position, attempt) {got:?} did not settle within {:?}",
            t.patience
        );
    }
    assert!(
        got.iter().all(|&(p, _)| p != positions[0]),
        "position {} was acknowledged before the restart and delivered again after it: {got:?}",
        positions[0]
    );
    let mut by_position = got.clone();
    by_position.sort_unstable();
    // The unacked event comes back as its second attempt; the one never
    // delivered comes for the first time (in either order: a redelivery may
    // overtake later events). Each exactly once.
    assert_eq!(
        by_position,
        [(positions[1], 2), (positions[2], 1)],
        "deliveries (position, attempt) after the restart, in arrival order: {got:?}"
    );
}

/// A redrive interrupted by a restart (one redriven event acknowledged, one
/// still queued) and run again afterwards sends the acknowledged one never
/// again and the queued one exactly once.
pub async fn redrive_interrupted_by_a_restart_sends_nothing_twice(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    publish_all(&*bus, &deposits("p", 2)).await;
    let p = {
        let mut c = open_consumer(&*bus, config("redrive-restart", Duration::from_secs(30))).await;
        let p = dead_letter_all(&*bus, &mut c, 2, &t).await;
        let r = bus
            .redrive_dead_letters("redrive-restart", &crate::RedriveSelection::All)
            .await
            .expect("redrive");
        assert_eq!(r.redriven, p, "{r:?}");
        let d = next_within(&mut c, t.patience).await;
        d.ack().await.expect("ack");
        let acked = d.event.position;
        c.close().await.expect("close");
        (acked, if acked == p[0] { p[1] } else { p[0] })
    };
    let (acked, queued) = p;
    drop(bus);
    let bus = h.reopen().await;
    let r = bus
        .redrive_dead_letters("redrive-restart", &crate::RedriveSelection::All)
        .await
        .expect("redrive after the restart");
    assert!(r.redriven.is_empty(), "{r:?}");
    assert_eq!(r.already_pending, [queued], "{r:?}");
    let mut c = open_consumer(&*bus, config("redrive-restart", Duration::from_secs(30))).await;
    let got = drain(&mut c, REDRIVE_QUIET, t.patience).await;
    assert_eq!(
        got,
        [(queued, 1)],
        "after the restart: the queued dead letter once, the acknowledged one ({acked}) never"
    );
    eventually(
        t.patience,
        "the dead letters to leave the store",
        || async {
            bus.dead_letters(Some("redrive-restart"))
                .await
                .expect("dl")
                .is_empty()
                .then_some(())
        },
    )
    .await;
}

/// Dedup holds across a restart inside the window.
pub async fn dedup_survives_a_restart(h: &impl Harness) {
    let bus = h.open(settings()).await;
    let e = deposit("p", 1);
    let first = bus.publish(e.clone()).await.expect("publish");
    drop(bus);
    let bus = h.reopen().await;
    let again = bus.publish(e).await.expect("republish");
    assert!(again.duplicate);
    assert_eq!(again.position, first.position);
}

// ---------------------------------------------------------------- live-only (core NATS)

/// Every envelope field comes back exactly through a live subscription.
pub async fn live_roundtrip_preserves_exact_bytes_and_metadata(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    let mut live = bus.subscribe(&all()).await.expect("subscribe");
    let mut e = event("player", "p-42", 7, "PlayerRegistered");
    e.payload = Some(prost_types::Any {
        type_url: "type.googleapis.com/poker.PlayerRegistered".into(),
        value: (0..=255u8).collect(),
    });
    e.correlation_id = "corr-1".into();
    e.causation_id = "cmd-9".into();
    e.metadata.insert(
        "traceparent".into(),
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
    );
    e.metadata.insert("tenant".into(), "ünïcødé".into());
    bus.publish(e.clone()).await.expect("publish");
    let got = tokio::time::timeout(t.patience, live.next())
        .await
        .expect("in time")
        .expect("open")
        .expect("decodes");
    assert_eq!(got.envelope, e);
    assert_eq!(got.subject, "angzarr.events.player.PlayerRegistered");
}

/// Live subscriptions apply NATS wildcard semantics.
pub async fn live_filters_follow_nats_wildcard_semantics(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    let mut players = bus
        .subscribe(&filter("angzarr.events.player.*"))
        .await
        .expect("subscribe");
    let mut hands = bus
        .subscribe(&filter("angzarr.events.hand.>"))
        .await
        .expect("subscribe");
    let mut deposits = bus
        .subscribe(&filter("angzarr.events.*.FundsDeposited"))
        .await
        .expect("subscribe");
    publish_poker_mix(&*bus).await;
    for (sub, expected) in [
        (&mut players, vec!["PlayerRegistered", "FundsDeposited"]),
        (&mut hands, vec!["CardsDealt", "HandWon"]),
        (&mut deposits, vec!["FundsDeposited", "FundsDeposited"]),
    ] {
        let mut got = Vec::new();
        for _ in 0..expected.len() {
            let e = tokio::time::timeout(t.patience, sub.next())
                .await
                .expect("in time")
                .expect("open")
                .expect("ok");
            got.push(e.envelope.event_type);
        }
        assert_eq!(got, expected);
        let extra = tokio::time::timeout(t.quiet, sub.next()).await;
        assert!(extra.is_err(), "unexpected extra event {extra:?}");
    }
}

/// Bad names, ids, filters and sizes are refused before anything is sent.
pub async fn bad_publish_input_is_a_clear_error(h: &impl Harness) {
    let bus = h
        .open(StreamSettings {
            max_msg_size: 4096,
            ..settings()
        })
        .await;
    let e = event("pla.yer", "id", 1, "X");
    assert!(matches!(
        bus.publish(e).await,
        Err(BusError::InvalidName {
            kind: NameKind::AggregateType,
            ..
        })
    ));
    let mut e = deposit("p", 1);
    e.event_id = "nope".into();
    assert!(matches!(
        bus.publish(e).await,
        Err(BusError::InvalidArgument(_))
    ));
    assert!(matches!(
        bus.publish_batch(vec![deposit("a", 1), deposit("b", 1)])
            .await,
        Err(BusError::InvalidArgument(_))
    ));
    let mut big = deposit("p", 1);
    if let Some(any) = big.payload.as_mut() {
        any.value = vec![1; 8000];
    }
    assert!(matches!(
        bus.publish(big).await,
        Err(BusError::PayloadTooLarge { limit: 4096, .. })
    ));
    assert!(matches!(
        bus.subscribe(&filter("other.>")).await,
        Err(BusError::InvalidFilter { .. })
    ));
}

/// Without a log (core NATS), operations that need one say so.
pub async fn persistence_operations_are_unsupported_without_a_log(h: &impl Harness) {
    let bus = h.open(settings()).await;
    let unsupported = |r: Result<(), BusError>, what: &str| match r {
        Err(BusError::Unsupported(m)) => {
            assert!(m.to_lowercase().contains("jetstream"), "{what}: {m}")
        }
        other => panic!("{what}: expected Unsupported, got {other:?}"),
    };
    unsupported(
        bus.consumer(ConsumerConfig::new("c", all()))
            .await
            .map(|_| ()),
        "consumer",
    );
    unsupported(
        bus.replay(&all(), StartPosition::Beginning)
            .await
            .map(|_| ()),
        "replay",
    );
    unsupported(bus.dead_letters(None).await.map(|_| ()), "dead_letters");
    unsupported(bus.stream_info().await.map(|_| ()), "stream_info");
    unsupported(
        bus.redrive_dead_letters("c", &crate::RedriveSelection::All)
            .await
            .map(|_| ()),
        "redrive_dead_letters",
    );
    unsupported(bus.consumer_info("c").await.map(|_| ()), "consumer_info");
    unsupported(
        bus.append(crate::ExpectedVersion::Any, vec![deposit("p", 1)])
            .await
            .map(|_| ()),
        "append",
    );
    unsupported(bus.load("player", "p", 0).await.map(|_| ()), "load");
    unsupported(
        bus.load_snapshot("player", "p").await.map(|_| ()),
        "load_snapshot",
    );
    unsupported(
        bus.save_snapshot(crate::Snapshot::from_message(
            "player",
            "p",
            1,
            &prost_types::Duration::default(),
        ))
        .await,
        "save_snapshot",
    );
    let r = bus
        .publish(deposit("p", 1))
        .await
        .expect("publishing still works");
    assert!(!r.duplicate);
}
