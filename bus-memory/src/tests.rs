//! Scenario tests of the memory bus. Timing tests use millisecond durations
//! but only assert lower bounds tightly; upper bounds are generous so a loaded
//! machine does not make them flaky.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime};

use bus_core::{Delivery, Discard, NameKind};
use tokio::time::timeout;

use super::*;

/// Generous upper bound for anything that should happen "soon".
const SOON: Duration = Duration::from_secs(10);

fn ev(aggregate: &str, id: &str, event_type: &str) -> EventEnvelope {
    let mut e = EventEnvelope::from_message(
        aggregate,
        id,
        1,
        &prost_types::Duration {
            seconds: 1,
            nanos: 0,
        },
    );
    e.event_type = event_type.to_owned();
    e
}

fn player(event_type: &str) -> EventEnvelope {
    ev("player", "p-1", event_type)
}

fn hand(event_type: &str) -> EventEnvelope {
    ev("hand", "h-1", event_type)
}

fn f(text: &str) -> Filter {
    Filter::parse(text).unwrap()
}

fn all() -> Filter {
    SubjectLayout::default().all()
}

fn players() -> Filter {
    f("angzarr.events.player.*")
}

fn bus_with(edit: impl FnOnce(&mut StreamSettings)) -> MemoryBus {
    let mut stream = StreamSettings::default();
    edit(&mut stream);
    MemoryBus::new(SubjectLayout::default(), stream, MemoryConfig::default())
}

fn config(name: &str, filter: Filter) -> ConsumerConfig {
    ConsumerConfig::new(name, filter)
}

async fn publish_n(bus: &MemoryBus, n: usize) -> Vec<u64> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(
            bus.publish(player(&format!("E{i}")))
                .await
                .unwrap()
                .position,
        );
    }
    out
}

async fn next_soon(c: &mut Consumer) -> Delivery {
    timeout(SOON, c.next())
        .await
        .expect("a delivery in time")
        .unwrap()
}

async fn replay_positions(bus: &MemoryBus, filter: &Filter, from: StartPosition) -> Vec<u64> {
    bus.replay(filter, from)
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap()
        .iter()
        .map(|e| e.position)
        .collect()
}

// ---------------------------------------------------------------- publishing

#[tokio::test]
async fn positions_start_at_one_and_increase_by_one() {
    let bus = MemoryBus::with_defaults();
    assert_eq!(bus.backend(), "memory");
    assert_eq!(bus.layout().prefix(), "angzarr");
    assert_eq!(publish_n(&bus, 3).await, vec![1, 2, 3]);
    let info = bus.stream_info().await.unwrap();
    assert_eq!(
        (info.messages, info.first_position, info.last_position),
        (3, 1, 3)
    );
}

#[tokio::test]
async fn stored_event_has_subject_time_and_exact_envelope() {
    let bus = MemoryBus::with_defaults();
    let before = SystemTime::now();
    let e = player("Registered").with_metadata("k", "v");
    bus.publish(e.clone()).await.unwrap();
    let events = bus
        .replay(&all(), StartPosition::Beginning)
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].subject, "angzarr.events.player.Registered");
    assert_eq!(events[0].envelope, e);
    assert!(events[0].stored_at >= before);
    let info = bus.stream_info().await.unwrap();
    assert_eq!(info.bytes, e.encoded_len() as u64);
}

#[tokio::test]
async fn dedup_returns_original_position_inside_window() {
    let bus = MemoryBus::with_defaults();
    let e = player("Registered");
    let first = bus.publish(e.clone()).await.unwrap();
    bus.publish(player("Other")).await.unwrap();
    let again = bus.publish(e).await.unwrap();
    assert_eq!(
        first,
        Receipt {
            position: 1,
            duplicate: false
        }
    );
    assert_eq!(
        again,
        Receipt {
            position: 1,
            duplicate: true
        }
    );
    assert_eq!(bus.stream_info().await.unwrap().messages, 2);
}

#[tokio::test]
async fn dedup_window_zero_disables_dedup() {
    let bus = bus_with(|s| s.duplicate_window = Duration::ZERO);
    let e = player("Registered");
    assert_eq!(bus.publish(e.clone()).await.unwrap().position, 1);
    let again = bus.publish(e.clone()).await.unwrap();
    assert_eq!(
        again,
        Receipt {
            position: 2,
            duplicate: false
        }
    );
    let batch = bus.publish_batch(vec![e.clone(), e]).await.unwrap();
    assert!(batch.iter().all(|r| !r.duplicate));
}

#[tokio::test]
async fn dedup_forgets_ids_after_the_window() {
    let bus = bus_with(|s| s.duplicate_window = Duration::from_millis(40));
    let e = player("Registered");
    bus.publish(e.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    let again = bus.publish(e).await.unwrap();
    assert_eq!(
        again,
        Receipt {
            position: 2,
            duplicate: false
        }
    );
}

#[tokio::test]
async fn dedup_outlives_retention_of_the_original() {
    let bus = bus_with(|s| s.max_msgs = 1);
    let e = player("Registered");
    bus.publish(e.clone()).await.unwrap();
    bus.publish(player("Other")).await.unwrap();
    assert_eq!(bus.stream_info().await.unwrap().first_position, 2);
    let again = bus.publish(e).await.unwrap();
    assert_eq!(
        again,
        Receipt {
            position: 1,
            duplicate: true
        }
    );
}

#[tokio::test]
async fn batch_is_stored_in_order_with_consecutive_positions() {
    let bus = MemoryBus::with_defaults();
    bus.publish(hand("Dealt")).await.unwrap();
    let batch = vec![player("A"), player("B"), player("C")];
    let receipts = bus.publish_batch(batch.clone()).await.unwrap();
    let positions: Vec<u64> = receipts.iter().map(|r| r.position).collect();
    assert_eq!(positions, vec![2, 3, 4]);
    let events = bus
        .replay(&players(), StartPosition::Beginning)
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    let envelopes: Vec<EventEnvelope> = events.into_iter().map(|e| e.envelope).collect();
    assert_eq!(envelopes, batch);
}

#[tokio::test]
async fn duplicates_inside_one_batch_store_once() {
    let bus = MemoryBus::with_defaults();
    let a = player("A");
    let earlier = player("Earlier");
    bus.publish(earlier.clone()).await.unwrap();
    let receipts = bus
        .publish_batch(vec![a.clone(), player("B"), a, earlier])
        .await
        .unwrap();
    assert_eq!(
        receipts,
        vec![
            Receipt {
                position: 2,
                duplicate: false
            },
            Receipt {
                position: 3,
                duplicate: false
            },
            Receipt {
                position: 2,
                duplicate: true
            },
            Receipt {
                position: 1,
                duplicate: true
            },
        ]
    );
    assert_eq!(bus.stream_info().await.unwrap().messages, 3);
}

#[tokio::test]
async fn invalid_batches_and_envelopes_store_nothing() {
    let bus = MemoryBus::with_defaults();
    let err = bus
        .publish_batch(vec![player("A"), ev("player", "other", "B")])
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::InvalidArgument(_)), "{err}");
    let err = bus.publish_batch(Vec::new()).await.unwrap_err();
    assert!(matches!(err, BusError::InvalidArgument(_)), "{err}");
    let err = bus
        .publish(player("A").with_event_id("not-a-uuid"))
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::InvalidArgument(_)), "{err}");
    let err = bus.publish(player("Bad.Type")).await.unwrap_err();
    assert!(
        matches!(
            err,
            BusError::InvalidName {
                kind: NameKind::EventType,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(bus.stream_info().await.unwrap(), StreamInfo::default());
}

#[tokio::test]
async fn payload_too_large_names_size_and_limit() {
    let bus = bus_with(|s| s.max_msg_size = 64);
    let mut e = player("Big");
    e = e.with_metadata("blob", "x".repeat(200));
    let size = e.encoded_len();
    let err = bus.publish(e.clone()).await.unwrap_err();
    match err {
        BusError::PayloadTooLarge { size: s, limit } => {
            assert_eq!((s, limit), (size, 64));
        }
        other => panic!("{other:?}"),
    }
    let err = bus
        .publish_batch(vec![player("Small"), e])
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::PayloadTooLarge { .. }), "{err}");
    assert_eq!(bus.stream_info().await.unwrap().messages, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishers_get_unique_positions_in_their_order() {
    let bus = MemoryBus::with_defaults();
    let mut tasks = Vec::new();
    for p in 0..8 {
        let bus = bus.clone();
        tasks.push(tokio::spawn(async move {
            let mut positions = Vec::new();
            for i in 0..100 {
                let e = ev("player", &format!("p{p}"), &format!("E{i}"));
                positions.push(bus.publish(e).await.unwrap().position);
            }
            positions
        }));
    }
    let mut seen = HashSet::new();
    for t in tasks {
        let positions = t.await.unwrap();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "in publish order"
        );
        for p in positions {
            assert!(seen.insert(p), "position {p} reused");
        }
    }
    assert_eq!(seen.len(), 800);
    assert_eq!(bus.stream_info().await.unwrap().last_position, 800);
}

// ----------------------------------------------------------------- retention

#[tokio::test]
async fn stream_info_of_a_new_bus_is_all_zero() {
    let bus = MemoryBus::with_defaults();
    assert_eq!(bus.stream_info().await.unwrap(), StreamInfo::default());
}

#[tokio::test]
async fn max_msgs_discard_old_drops_oldest() {
    let bus = bus_with(|s| s.max_msgs = 3);
    publish_n(&bus, 5).await;
    let info = bus.stream_info().await.unwrap();
    assert_eq!(
        (info.messages, info.first_position, info.last_position),
        (3, 3, 5)
    );
    assert_eq!(
        replay_positions(&bus, &all(), StartPosition::Beginning).await,
        vec![3, 4, 5]
    );
    // A batch larger than the limit keeps its newest events.
    let receipts = bus
        .publish_batch(vec![player("A"), player("B"), player("C"), player("D")])
        .await
        .unwrap();
    assert_eq!(receipts.last().unwrap().position, 9);
    assert_eq!(
        replay_positions(&bus, &all(), StartPosition::Beginning).await,
        vec![7, 8, 9]
    );
}

#[tokio::test]
async fn max_bytes_discard_old_keeps_bytes_under_the_limit() {
    let size = player("Same").encoded_len() as u64;
    let bus = bus_with(|s| s.max_bytes = size * 2 + size / 2);
    publish_n(&bus, 2).await;
    for _ in 0..3 {
        bus.publish(player("Same")).await.unwrap();
    }
    let info = bus.stream_info().await.unwrap();
    assert_eq!(info.messages, 2);
    assert_eq!(info.bytes, size * 2);
    assert_eq!((info.first_position, info.last_position), (4, 5));
}

#[tokio::test]
async fn discard_new_rejects_with_limit_reached() {
    let bus = bus_with(|s| {
        s.max_msgs = 2;
        s.discard = Discard::New;
    });
    let first = player("A");
    bus.publish(first.clone()).await.unwrap();
    bus.publish(player("B")).await.unwrap();
    let err = bus.publish(player("C")).await.unwrap_err();
    match &err {
        BusError::LimitReached(text) => assert!(text.contains("max_msgs"), "{text}"),
        other => panic!("{other:?}"),
    }
    // A duplicate is still answered while full.
    assert_eq!(
        bus.publish(first).await.unwrap(),
        Receipt {
            position: 1,
            duplicate: true
        }
    );
    let info = bus.stream_info().await.unwrap();
    assert_eq!((info.messages, info.last_position), (2, 2));
}

#[tokio::test]
async fn discard_new_rejects_a_whole_batch_that_does_not_fit() {
    let size = player("Same").encoded_len() as u64;
    let bus = bus_with(|s| {
        s.max_bytes = size * 3;
        s.discard = Discard::New;
    });
    bus.publish(player("Same")).await.unwrap();
    let err = bus
        .publish_batch(vec![player("Same"), player("Same"), player("Same")])
        .await
        .unwrap_err();
    match &err {
        BusError::LimitReached(text) => assert!(text.contains("max_bytes"), "{text}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(bus.stream_info().await.unwrap().messages, 1);
    bus.publish_batch(vec![player("Same"), player("Same")])
        .await
        .unwrap();
    assert_eq!(bus.stream_info().await.unwrap().bytes, size * 3);
}

#[tokio::test]
async fn event_larger_than_max_bytes_is_rejected_even_with_discard_old() {
    let size = player("Same").encoded_len() as u64;
    let bus = bus_with(|s| s.max_bytes = size - 1);
    let err = bus.publish(player("Same")).await.unwrap_err();
    assert!(matches!(err, BusError::LimitReached(_)), "{err}");
    assert_eq!(bus.stream_info().await.unwrap(), StreamInfo::default());
}

#[tokio::test]
async fn max_age_expires_events() {
    let bus = bus_with(|s| s.max_age = Duration::from_millis(60));
    publish_n(&bus, 3).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let info = bus.stream_info().await.unwrap();
    assert_eq!(
        info,
        StreamInfo {
            messages: 0,
            bytes: 0,
            first_position: 4,
            last_position: 3
        }
    );
    assert!(
        replay_positions(&bus, &all(), StartPosition::Beginning)
            .await
            .is_empty()
    );
    assert_eq!(bus.publish(player("New")).await.unwrap().position, 4);
    assert_eq!(
        replay_positions(&bus, &all(), StartPosition::Beginning).await,
        vec![4]
    );
}

#[tokio::test]
async fn retention_drops_unacknowledged_deliveries_silently() {
    let bus = bus_with(|s| s.max_msgs = 2);
    publish_n(&bus, 2).await;
    let mut c = bus.consumer(config("c", all())).await.unwrap();
    let d = next_soon(&mut c).await;
    assert_eq!(d.event.position, 1);
    publish_n(&bus, 2).await; // removes 1 and 2
    let info = c.info().await.unwrap();
    assert_eq!(info.num_ack_pending, 0);
    assert_eq!(info.num_pending, 2);
    assert_eq!(info.ack_floor, 2);
    d.ack().await.unwrap();
    assert_eq!(next_soon(&mut c).await.event.position, 3);
    assert!(bus.dead_letters(None).await.unwrap().is_empty());
}

// ------------------------------------------------------------ live subscribers

#[tokio::test]
async fn subscription_receives_only_matching_events_published_after_it() {
    let bus = MemoryBus::with_defaults();
    bus.publish(player("Before")).await.unwrap();
    let mut sub = bus.subscribe(&players()).await.unwrap();
    bus.publish(hand("Dealt")).await.unwrap();
    let e = player("After");
    bus.publish(e.clone()).await.unwrap();
    let got = timeout(SOON, sub.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(got.subject, "angzarr.events.player.After");
    assert_eq!(got.envelope, e);
    assert!(
        timeout(Duration::from_millis(30), sub.next())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn filters_outside_the_namespace_are_rejected() {
    let bus = MemoryBus::with_defaults();
    for bad in ["other.events.>", "angzarr.>"] {
        let err = bus.subscribe(&f(bad)).await.err().unwrap();
        assert!(matches!(err, BusError::InvalidFilter { .. }), "{err}");
        let err = bus
            .replay(&f(bad), StartPosition::Beginning)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, BusError::InvalidFilter { .. }), "{err}");
        let err = bus.consumer(config("c", f(bad))).await.unwrap_err();
        assert!(matches!(err, BusError::InvalidFilter { .. }), "{err}");
    }
}

#[tokio::test]
async fn slow_live_subscriber_drops_but_others_receive() {
    let bus = MemoryBus::new(
        SubjectLayout::default(),
        StreamSettings::default(),
        MemoryConfig {
            subscriber_buffer: 4,
            ..MemoryConfig::default()
        },
    );
    let mut slow = bus.subscribe(&all()).await.unwrap();
    let mut fast = bus.subscribe(&all()).await.unwrap();
    let mut received = Vec::new();
    for chunk in 0..3 {
        for i in 0..4 {
            bus.publish(player(&format!("E{chunk}x{i}"))).await.unwrap();
        }
        for _ in 0..4 {
            let e = timeout(SOON, fast.next()).await.unwrap().unwrap().unwrap();
            received.push(e.subject);
        }
    }
    assert_eq!(received.len(), 12);
    assert_eq!(received[11], "angzarr.events.player.E2x3");
    assert_eq!(bus.dropped_live_events(), 8);
    let mut slow_got = Vec::new();
    while let Ok(Some(e)) = timeout(Duration::from_millis(20), slow.next()).await {
        slow_got.push(e.unwrap().subject);
    }
    assert_eq!(slow_got.len(), 4, "the slow subscriber kept what fitted");
    assert_eq!(slow_got[0], "angzarr.events.player.E0x0");
}

#[tokio::test]
async fn closed_subscriptions_are_removed_and_duplicates_not_sent() {
    let bus = MemoryBus::with_defaults();
    let sub = bus.subscribe(&all()).await.unwrap();
    drop(sub);
    let mut live = bus.subscribe(&all()).await.unwrap();
    let e = player("A");
    bus.publish(e.clone()).await.unwrap();
    bus.publish(e).await.unwrap(); // duplicate: stored nothing, sent nothing
    assert!(timeout(SOON, live.next()).await.unwrap().is_some());
    assert!(
        timeout(Duration::from_millis(30), live.next())
            .await
            .is_err()
    );
    assert_eq!(bus.shared.lock().live.dropped_total(), 0);
    drop(live);
    bus.publish(player("B")).await.unwrap();
    assert!(bus.shared.lock().live.is_empty());
}

// ------------------------------------------------------------------- consumers

#[tokio::test]
async fn consumer_delivers_matching_events_in_order_with_attempt_one() {
    let bus = MemoryBus::with_defaults();
    bus.publish(player("A")).await.unwrap();
    bus.publish(hand("X")).await.unwrap();
    bus.publish(player("B")).await.unwrap();
    let mut c = bus.consumer(config("c", players())).await.unwrap();
    assert_eq!(c.name(), "c");
    for expected in [1, 3] {
        let d = next_soon(&mut c).await;
        assert_eq!((d.event.position, d.attempt), (expected, 1));
        d.ack().await.unwrap();
    }
    assert!(c.fetch(10, Duration::ZERO).await.unwrap().is_empty());
}

#[tokio::test]
async fn consumer_start_positions_follow_jetstream() {
    let bus = bus_with(|s| s.max_msgs = 4);
    publish_n(&bus, 5).await; // stored: 2..=5
    let positions = |c: Consumer| async move {
        let mut c = c;
        c.fetch(100, Duration::from_millis(10))
            .await
            .unwrap()
            .iter()
            .map(|d| d.event.position)
            .collect::<Vec<_>>()
    };
    let c = bus.consumer(config("beginning", all())).await.unwrap();
    assert_eq!(positions(c).await, vec![2, 3, 4, 5]);
    let c = bus
        .consumer(config("old", all()).start(StartPosition::Position(1)))
        .await
        .unwrap();
    assert_eq!(positions(c).await, vec![2, 3, 4, 5]);
    let c = bus
        .consumer(config("pos", all()).start(StartPosition::Position(4)))
        .await
        .unwrap();
    assert_eq!(positions(c).await, vec![4, 5]);
    let new = bus
        .consumer(config("new", all()).start(StartPosition::New))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let t = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    publish_n(&bus, 1).await; // 6
    let c = bus
        .consumer(config("time", all()).start(StartPosition::Time(t)))
        .await
        .unwrap();
    assert_eq!(positions(c).await, vec![6]);
    assert_eq!(positions(new).await, vec![6]);
    let ahead = bus
        .consumer(config("ahead", all()).start(StartPosition::Position(8)))
        .await
        .unwrap();
    publish_n(&bus, 3).await; // 7, 8, 9
    assert_eq!(positions(ahead).await, vec![8, 9]);
}

#[tokio::test]
async fn start_applies_only_when_the_consumer_is_created() {
    let bus = MemoryBus::with_defaults();
    publish_n(&bus, 3).await;
    let mut c = bus.consumer(config("c", all())).await.unwrap();
    next_soon(&mut c).await.ack().await.unwrap();
    drop(c);
    let mut again = bus
        .consumer(config("c", all()).start(StartPosition::New))
        .await
        .unwrap();
    assert_eq!(next_soon(&mut again).await.event.position, 2);
}

#[tokio::test]
async fn rebinding_with_other_filters_conflicts_and_settings_are_updated() {
    let bus = MemoryBus::with_defaults();
    publish_n(&bus, 3).await;
    let mut c = bus
        .consumer(config("c", players()).max_ack_pending(1))
        .await
        .unwrap();
    let err = bus.consumer(config("c", all())).await.unwrap_err();
    match &err {
        BusError::Conflict(text) => {
            assert!(text.contains("c"), "{text}");
            assert!(text.contains("angzarr.events.player.*"), "{text}");
            assert!(text.contains("angzarr.events.>"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.fetch(10, Duration::ZERO).await.unwrap().len(), 1);
    // Same filters: binds, and the new max_ack_pending applies to every handle.
    let _other = bus
        .consumer(config("c", players()).max_ack_pending(10))
        .await
        .unwrap();
    assert_eq!(c.fetch(10, Duration::ZERO).await.unwrap().len(), 2);
}

#[tokio::test]
async fn ack_timeout_redelivers_with_next_attempt() {
    let bus = MemoryBus::with_defaults();
    bus.publish(player("A")).await.unwrap();
    let wait = Duration::from_millis(60);
    let mut c = bus
        .consumer(config("c", all()).ack_wait(wait))
        .await
        .unwrap();
    let first = next_soon(&mut c).await;
    let delivered_at = std::time::Instant::now();
    assert_eq!(first.attempt, 1);
    let second = next_soon(&mut c).await;
    assert!(delivered_at.elapsed() >= wait - Duration::from_millis(5));
    assert_eq!((second.event.position, second.attempt), (1, 2));
    assert_eq!(c.info().await.unwrap().num_redelivered, 1);
    second.ack().await.unwrap();
    let info = c.info().await.unwrap();
    assert_eq!((info.num_ack_pending, info.num_redelivered), (0, 0));
}

#[tokio::test]
async fn backoff_replaces_ack_wait_per_attempt() {
    let bus = MemoryBus::with_defaults();
    bus.publish(player("A")).await.unwrap();
    let backoff = vec![Duration::from_millis(40), Duration::from_millis(250)];
    let mut c = bus
        .consumer(
            config("c", all())
                .ack_wait(Duration::from_secs(60))
                .backoff(backoff.clone()),
        )
        .await
        .unwrap();
    let start = std::time::Instant::now();
    assert_eq!(next_soon(&mut c).await.attempt, 1);
    let d = next_soon(&mut c).await;
    assert_eq!(d.attempt, 2);
    let second_at = start.elapsed();
    assert!(
        second_at >= backoff[0] - Duration::from_millis(5),
        "{second_at:?}"
    );
    let d = next_soon(&mut c).await;
    assert_eq!(d.attempt, 3);
    assert!(
        start.elapsed() >= second_at + backoff[1] - Duration::from_millis(5),
        "{:?}",
        start.elapsed()
    );
    // A nak without delay waits the backoff of the attempt too.
    let naked_at = std::time::Instant::now();
    d.nak().await.unwrap();
    assert!(c.fetch(1, Duration::ZERO).await.unwrap().is_empty());
    let d = next_soon(&mut c).await;
    assert_eq!(d.attempt, 4);
    assert!(naked_at.elapsed() >= backoff[1] - Duration::from_millis(5));
}

#[tokio::test]
async fn nak_redelivers_at_once_without_backoff() {
    let bus = MemoryBus::with_defaults();
    publish_n(&bus, 2).await;
    let mut c = bus.consumer(config("c", all())).await.unwrap();
    let d = next_soon(&mut c).await;
    d.nak().await.unwrap();
    let batch = c.fetch(10, Duration::ZERO).await.unwrap();
    let got: Vec<(u64, u32)> = batch
        .iter()
        .map(|d| (d.event.position, d.attempt))
        .collect();
    assert_eq!(got, vec![(1, 2), (2, 1)]);
}

#[tokio::test]
async fn nak_with_delay_waits_that_long() {
    let bus = MemoryBus::with_defaults();
    publish_n(&bus, 1).await;
    let mut c = bus.consumer(config("c", all())).await.unwrap();
    let d = next_soon(&mut c).await;
    let at = std::time::Instant::now();
    d.nak_with_delay(Duration::from_millis(80)).await.unwrap();
    assert!(c.fetch(1, Duration::ZERO).await.unwrap().is_empty());
    let d = next_soon(&mut c).await;
    assert_eq!(d.attempt, 2);
    assert!(at.elapsed() >= Duration::from_millis(75));
}

#[tokio::test]
async fn max_ack_pending_one_keeps_stream_order_including_redeliveries() {
    let bus = MemoryBus::with_defaults();
    publish_n(&bus, 3).await;
    let mut c = bus
        .consumer(config("c", all()).max_ack_pending(1))
        .await
        .unwrap();
    let d = next_soon(&mut c).await;
    assert_eq!(d.event.position, 1);
    assert!(
        c.fetch(5, Duration::from_millis(20))
            .await
            .unwrap()
            .is_empty()
    );
    d.nak().await.unwrap();
    let d = next_soon(&mut c).await;
    assert_eq!((d.event.position, d.attempt), (1, 2));
    d.ack().await.unwrap();
    let d = next_soon(&mut c).await;
    assert_eq!((d.event.position, d.attempt), (2, 1));
}

#[tokio::test]
async fn max_ack_pending_limits_outstanding_and_ack_wakes_a_waiter() {
    let bus = MemoryBus::with_defaults();
    publish_n(&bus, 5).await;
    let mut a = bus
        .consumer(config("c", all()).max_ack_pending(2))
        .await
        .unwrap();
    let mut b = bus
        .consumer(config("c", all()).max_ack_pending(2))
        .await
        .unwrap();
    let held = a.fetch(10, Duration::from_millis(10)).await.unwrap();
    assert_eq!(held.len(), 2);
    let waiter = tokio::spawn(async move { timeout(SOON, b.next()).await });
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(!waiter.is_finished());
    held[0].ack().await.unwrap();
    let d = waiter.await.unwrap().expect("woken by the ack").unwrap();
    assert_eq!(d.event.position, 3);
}

#[tokio::test]
async fn nak_on_last_attempt_dead_letters_with_reason() {
    let bus = MemoryBus::with_defaults();
    publish_n(&bus, 1).await;
    let mut c = bus
        .consumer(config("c", all()).max_deliver(2))
        .await
        .unwrap();
    next_soon(&mut c).await.nak().await.unwrap();
    let d = next_soon(&mut c).await;
    assert_eq!(d.attempt, 2);
    d.nak_with_reason(None, "cannot parse").await.unwrap();
    assert!(
        c.fetch(1, Duration::from_millis(30))
            .await
            .unwrap()
            .is_empty()
    );
    let dead = bus.dead_letters(Some("c")).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].event.position, 1);
    assert_eq!(dead[0].consumer, "c");
    assert_eq!(dead[0].attempts, 2);
    assert_eq!(dead[0].reason, "cannot parse");
    let info = c.info().await.unwrap();
    assert_eq!((info.dead_lettered, info.ack_floor), (1, 1));

    // Without a reason the text says what happened.
    bus.publish(player("Again")).await.unwrap();
    let mut c2 = bus
        .consumer(
            config("c2", all())
                .max_deliver(1)
                .start(StartPosition::Position(2)),
        )
        .await
        .unwrap();
    next_soon(&mut c2).await.nak().await.unwrap();
    let dead = bus.dead_letters(Some("c2")).await.unwrap();
    assert_eq!(
        dead[0].reason,
        "negatively acknowledged on the last of 1 deliveries"
    );
}

#[tokio::test]
async fn ack_wait_expiry_on_last_attempt_dead_letters() {
    let bus = MemoryBus::with_defaults();
    publish_n(&bus, 2).await;
    let mut c = bus
        .consumer(
            config("c", players())
                .max_deliver(2)
                .ack_wait(Duration::from_millis(30)),
        )
        .await
        .unwrap();
    let first = next_soon(&mut c).await;
    assert_eq!((first.event.position, first.attempt), (1, 1));
    first.ack().await.unwrap();
    assert_eq!(next_soon(&mut c).await.attempt, 1);
    assert_eq!(next_soon(&mut c).await.attempt, 2);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let dead = bus.dead_letters(None).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].event.position, 2);
    assert_eq!(dead[0].attempts, 2);
    assert_eq!(dead[0].reason, "ack wait expired after 2 deliveries");
    let info = c.info().await.unwrap();
    assert_eq!(
        (info.num_ack_pending, info.dead_lettered, info.ack_floor),
        (0, 1, 2)
    );
}

/// A flood of poison events cannot grow the dead-letter store past
/// `max_dead_letters`: it keeps the newest, drops the oldest, and counts.
#[tokio::test]
async fn dead_letters_are_bounded_and_the_oldest_are_dropped() {
    let limit = 10;
    let bus = MemoryBus::new(
        SubjectLayout::default(),
        StreamSettings::default(),
        MemoryConfig {
            max_dead_letters: limit,
            ..MemoryConfig::default()
        },
    );
    let n = 500;
    let positions = publish_n(&bus, n).await;
    let mut c = bus.consumer(config("poison", all())).await.unwrap();
    for (i, p) in positions.iter().enumerate() {
        let d = next_soon(&mut c).await;
        assert_eq!(d.event.position, *p);
        d.term(format!("poison {p}")).await.unwrap();
        let kept = bus.dead_letters(None).await.unwrap().len();
        assert_eq!(kept, (i + 1).min(limit), "after {} dead letters", i + 1);
    }
    let kept = bus.dead_letters(Some("poison")).await.unwrap();
    let kept_positions: Vec<u64> = kept.iter().map(|d| d.event.position).collect();
    assert_eq!(
        kept_positions,
        positions[n - limit..],
        "the newest are kept, in order"
    );
    assert_eq!(
        kept[limit - 1].reason,
        format!("poison {}", positions[n - 1])
    );
    assert_eq!(bus.dropped_dead_letters(), (n - limit) as u64);
    // The consumer's count is of events it dead-lettered, kept or not.
    assert_eq!(c.info().await.unwrap().dead_lettered, n as u64);

    // The bound is for the whole store: another consumer's dead letter
    // pushes out the oldest of the first one's.
    let mut other = bus.consumer(config("other", all())).await.unwrap();
    next_soon(&mut other).await.term("other").await.unwrap();
    let all_kept = bus.dead_letters(None).await.unwrap();
    assert_eq!(all_kept.len(), limit);
    assert_eq!(all_kept[0].event.position, positions[n - limit + 1]);
    assert_eq!(
        (
            all_kept[limit - 1].consumer.as_str(),
            all_kept[limit - 1].event.position
        ),
        ("other", positions[0])
    );
    assert_eq!(
        bus.dead_letters(Some("poison")).await.unwrap().len(),
        limit - 1
    );
}

/// `[bus.memory] max_dead_letters` from a configuration file reaches the bus.
#[tokio::test]
async fn max_dead_letters_is_read_from_the_configuration() {
    let config = BusConfig::parse(
        "[bus]\nbackend = \"memory\"\n[bus.memory]\nmax_dead_letters = 2\n",
        "t",
    )
    .unwrap();
    assert_eq!(config.memory.max_dead_letters, 2);
    let bus = MemoryBus::from_config(&config).unwrap();
    publish_n(&bus, 3).await;
    let mut c = bus.consumer(ConsumerConfig::new("c", all())).await.unwrap();
    for _ in 0..3 {
        next_soon(&mut c).await.term("bad").await.unwrap();
    }
    let kept: Vec<u64> = bus
        .dead_letters(None)
        .await
        .unwrap()
        .iter()
        .map(|d| d.event.position)
        .collect();
    assert_eq!(kept, [2, 3]);
    assert_eq!(bus.dropped_dead_letters(), 1);
}

#[tokio::test]
async fn term_dead_letters_immediately_and_ack_is_idempotent() {
    let bus = MemoryBus::with_defaults();
    publish_n(&bus, 2).await;
    let mut c = bus.consumer(config("c", all())).await.unwrap();
    let d = next_soon(&mut c).await;
    d.term("poison").await.unwrap();
    d.ack().await.unwrap(); // not pending any more: fine
    let d2 = next_soon(&mut c).await;
    d2.ack().await.unwrap();
    d2.ack().await.unwrap();
    d2.nak().await.unwrap(); // no longer pending: ignored
    let dead = bus.dead_letters(Some("c")).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].attempts, dead[0].reason.as_str()), (1, "poison"));
    let info = c.info().await.unwrap();
    assert_eq!(
        (info.num_ack_pending, info.ack_floor, info.dead_lettered),
        (0, 2, 1)
    );
    assert!(
        c.fetch(1, Duration::from_millis(20))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn in_progress_restarts_the_ack_wait_clock() {
    let bus = MemoryBus::with_defaults();
    publish_n(&bus, 1).await;
    let mut c = bus
        .consumer(config("c", all()).ack_wait(Duration::from_millis(1000)))
        .await
        .unwrap();
    let d = next_soon(&mut c).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    d.in_progress().await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Past the first deadline, before the restarted one.
    assert!(c.fetch(1, Duration::ZERO).await.unwrap().is_empty());
    assert_eq!(c.info().await.unwrap().num_ack_pending, 1);
    d.ack().await.unwrap();
}

#[tokio::test]
async fn stale_nak_from_an_earlier_delivery_is_ignored() {
    let bus = MemoryBus::with_defaults();
    publish_n(&bus, 1).await;
    let mut c = bus
        .consumer(config("c", all()).ack_wait(Duration::from_millis(30)))
        .await
        .unwrap();
    let old = next_soon(&mut c).await;
    let current = next_soon(&mut c).await; // after the timeout
    assert_eq!(current.attempt, 2);
    current.in_progress().await.unwrap();
    old.nak().await.unwrap();
    assert!(c.fetch(1, Duration::ZERO).await.unwrap().is_empty());
    // An ack from any delivery settles the event.
    old.ack().await.unwrap();
    assert_eq!(c.info().await.unwrap().num_ack_pending, 0);
}

#[tokio::test]
async fn lowering_max_deliver_on_rebind_dead_letters_instead_of_redelivering() {
    let bus = MemoryBus::with_defaults();
    publish_n(&bus, 1).await;
    let mut c = bus.consumer(config("c", all())).await.unwrap();
    next_soon(&mut c).await.nak().await.unwrap();
    next_soon(&mut c).await.nak().await.unwrap();
    let _ = bus
        .consumer(config("c", all()).max_deliver(2))
        .await
        .unwrap();
    assert!(
        c.fetch(1, Duration::from_millis(20))
            .await
            .unwrap()
            .is_empty()
    );
    let dead = bus.dead_letters(Some("c")).await.unwrap();
    assert_eq!((dead.len(), dead[0].attempts), (1, 2));
}

#[tokio::test]
async fn consumer_info_counts_are_exact() {
    let bus = MemoryBus::with_defaults();
    // positions: 1 p, 2 h, 3 p, 4 p, 5 h, 6 p
    for e in [
        player("A"),
        hand("X"),
        player("B"),
        player("C"),
        hand("Y"),
        player("D"),
    ] {
        bus.publish(e).await.unwrap();
    }
    let mut c = bus
        .consumer(config("c", players()).ack_wait(Duration::from_secs(60)))
        .await
        .unwrap();
    let info = bus.consumer_info("c").await.unwrap();
    assert_eq!(
        info,
        ConsumerInfo {
            name: "c".into(),
            filters: vec!["angzarr.events.player.*".into()],
            num_pending: 4,
            num_ack_pending: 0,
            num_redelivered: 0,
            delivered: 0,
            ack_floor: 0,
            dead_lettered: 0,
        }
    );
    let d1 = next_soon(&mut c).await; // 1
    let d3 = next_soon(&mut c).await; // 3
    let info = c.info().await.unwrap();
    assert_eq!(
        (
            info.num_pending,
            info.num_ack_pending,
            info.delivered,
            info.ack_floor
        ),
        (2, 2, 3, 0)
    );
    d3.ack().await.unwrap();
    assert_eq!(c.info().await.unwrap().ack_floor, 0);
    d1.nak().await.unwrap();
    let again = next_soon(&mut c).await;
    assert_eq!((again.event.position, again.attempt), (1, 2));
    let info = c.info().await.unwrap();
    assert_eq!(
        (info.num_ack_pending, info.num_redelivered, info.delivered),
        (1, 1, 3)
    );
    again.ack().await.unwrap();
    let info = c.info().await.unwrap();
    // 1 and 3 done, 2 is not ours; 4 is the next undelivered.
    assert_eq!(
        (
            info.num_pending,
            info.num_ack_pending,
            info.num_redelivered,
            info.ack_floor
        ),
        (2, 0, 0, 3)
    );
    let d4 = next_soon(&mut c).await;
    d4.term("bad").await.unwrap();
    let d6 = next_soon(&mut c).await;
    assert_eq!(d6.event.position, 6);
    let info = c.info().await.unwrap();
    assert_eq!(
        (
            info.num_pending,
            info.num_ack_pending,
            info.delivered,
            info.ack_floor,
            info.dead_lettered
        ),
        (0, 1, 6, 5, 1)
    );
    d6.ack().await.unwrap();
    bus.publish(hand("Z")).await.unwrap(); // 7, not ours
    let info = c.info().await.unwrap();
    assert_eq!((info.num_pending, info.ack_floor), (0, 7));
    bus.publish(player("E")).await.unwrap(); // 8
    let info = bus.consumer_info("c").await.unwrap();
    assert_eq!((info.num_pending, info.ack_floor), (1, 7));
}

#[tokio::test]
async fn several_filters_match_any() {
    let bus = MemoryBus::with_defaults();
    bus.publish(player("A")).await.unwrap();
    bus.publish(ev("table", "t", "Opened")).await.unwrap();
    bus.publish(hand("X")).await.unwrap();
    let mut c = bus
        .consumer(config("c", players()).also(f("angzarr.events.hand.>")))
        .await
        .unwrap();
    assert_eq!(c.info().await.unwrap().num_pending, 2);
    let got: Vec<u64> = c
        .fetch(10, Duration::from_millis(10))
        .await
        .unwrap()
        .iter()
        .map(|d| d.event.position)
        .collect();
    assert_eq!(got, vec![1, 3]);
    // Filter order does not make a different consumer.
    bus.consumer(config("c", f("angzarr.events.hand.>")).also(players()))
        .await
        .unwrap();
}

#[tokio::test]
async fn unknown_consumers_are_not_found() {
    let bus = MemoryBus::with_defaults();
    for err in [
        bus.consumer_info("nope").await.unwrap_err(),
        bus.delete_consumer("nope").await.unwrap_err(),
    ] {
        match err {
            BusError::NotFound { what, name } => {
                assert_eq!((what, name.as_str()), ("consumer", "nope"))
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(bus.dead_letters(Some("nope")).await.unwrap().is_empty());
    let err = bus.consumer(config("bad.name", all())).await.unwrap_err();
    assert!(matches!(err, BusError::InvalidName { .. }), "{err}");
}

#[tokio::test]
async fn deleted_consumer_handles_get_not_found_and_dead_letters_remain() {
    let bus = MemoryBus::with_defaults();
    publish_n(&bus, 1).await;
    let mut c = bus.consumer(config("c", all())).await.unwrap();
    next_soon(&mut c).await.term("no").await.unwrap();
    let waiter = tokio::spawn(async move {
        let r = timeout(SOON, c.next()).await;
        (r, c)
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    bus.delete_consumer("c").await.unwrap();
    let (r, mut c) = waiter.await.unwrap();
    let err = r.expect("woken by the delete").unwrap_err();
    assert!(matches!(err, BusError::NotFound { .. }), "{err}");
    assert!(matches!(
        c.fetch(1, Duration::ZERO).await.unwrap_err(),
        BusError::NotFound { .. }
    ));
    assert!(matches!(
        c.info().await.unwrap_err(),
        BusError::NotFound { .. }
    ));
    assert_eq!(bus.dead_letters(Some("c")).await.unwrap().len(), 1);
    // A new consumer of the same name starts afresh; the old handle stays dead.
    let mut fresh = bus.consumer(config("c", all())).await.unwrap();
    assert_eq!(next_soon(&mut fresh).await.attempt, 1);
    assert!(c.next().await.is_err());
}

#[tokio::test]
async fn dead_letters_are_oldest_first_across_consumers() {
    let bus = MemoryBus::with_defaults();
    publish_n(&bus, 2).await;
    let mut a = bus.consumer(config("a", all())).await.unwrap();
    let mut b = bus.consumer(config("b", all())).await.unwrap();
    next_soon(&mut a).await.term("a1").await.unwrap();
    next_soon(&mut b).await.term("b1").await.unwrap();
    next_soon(&mut a).await.term("a2").await.unwrap();
    let reasons: Vec<String> = bus
        .dead_letters(None)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.reason)
        .collect();
    assert_eq!(reasons, vec!["a1", "b1", "a2"]);
    let a_only: Vec<String> = bus
        .dead_letters(Some("a"))
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.reason)
        .collect();
    assert_eq!(a_only, vec!["a1", "a2"]);
}

#[tokio::test]
async fn next_wakes_on_publish_and_fetch_waits_only_for_the_first() {
    let bus = MemoryBus::with_defaults();
    let mut c = bus.consumer(config("c", players())).await.unwrap();
    let start = std::time::Instant::now();
    assert!(
        c.fetch(5, Duration::from_millis(50))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(start.elapsed() >= Duration::from_millis(45));
    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            bus.publish(hand("NotOurs")).await.unwrap();
            bus.publish(player("A")).await.unwrap();
        })
    };
    let d = next_soon(&mut c).await;
    assert_eq!(d.event.position, 2);
    publisher.await.unwrap();
    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            bus.publish_batch(vec![player("B"), player("C")])
                .await
                .unwrap();
        })
    };
    let start = std::time::Instant::now();
    let got = c.fetch(5, SOON).await.unwrap();
    assert!(start.elapsed() < SOON);
    assert_eq!(got.len(), 2, "the batch arrives under one lock");
    publisher.await.unwrap();
    assert!(c.fetch(0, Duration::ZERO).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_handles_share_work_without_duplicates() {
    let bus = MemoryBus::with_defaults();
    let total = 400usize;
    let mut workers = Vec::new();
    for w in 0..2 {
        let mut c = bus
            .consumer(config("shared", all()).max_ack_pending(16))
            .await
            .unwrap();
        let bus = bus.clone();
        workers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = c.fetch(8, Duration::from_millis(200)).await.unwrap();
                if batch.is_empty() {
                    let info = bus.consumer_info("shared").await.unwrap();
                    if info.ack_floor as usize >= total {
                        break;
                    }
                    continue;
                }
                for d in batch {
                    assert_eq!(d.attempt, 1, "worker {w} got a redelivery");
                    got.push(d.event.position);
                    d.ack().await.unwrap();
                }
            }
            got
        }));
    }
    let mut publishers = Vec::new();
    for p in 0..4 {
        let bus = bus.clone();
        publishers.push(tokio::spawn(async move {
            for i in 0..total / 4 {
                bus.publish(ev("player", &format!("p{p}"), &format!("E{i}")))
                    .await
                    .unwrap();
            }
        }));
    }
    for p in publishers {
        p.await.unwrap();
    }
    let mut seen = BTreeMap::new();
    let mut per_worker = Vec::new();
    for w in workers {
        let got = timeout(Duration::from_secs(60), w).await.unwrap().unwrap();
        per_worker.push(got.len());
        for p in got {
            *seen.entry(p).or_insert(0) += 1;
        }
    }
    assert_eq!(seen.len(), total, "every event delivered");
    assert!(seen.values().all(|n| *n == 1), "no event delivered twice");
    let info = bus.consumer_info("shared").await.unwrap();
    assert_eq!((info.num_pending, info.num_ack_pending), (0, 0));
    assert_eq!(per_worker.iter().sum::<usize>(), total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_next_loses_nothing() {
    let bus = MemoryBus::with_defaults();
    let total = 200u64;
    let mut c = bus
        .consumer(config("c", all()).ack_wait(Duration::from_secs(60)))
        .await
        .unwrap();
    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            for i in 0..total {
                bus.publish(player(&format!("E{i}"))).await.unwrap();
                if i % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        })
    };
    let mut got = Vec::new();
    let mut cancelled = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while (got.len() as u64) < total && std::time::Instant::now() < deadline {
        // Alternate between timeouts and select! so both cancel paths are used.
        let attempt = if got.len() % 2 == 0 {
            timeout(Duration::from_micros(200), c.next()).await.ok()
        } else {
            tokio::select! {
                d = c.next() => Some(d),
                () = tokio::time::sleep(Duration::from_micros(200)) => None,
            }
        };
        match attempt {
            Some(d) => {
                let d = d.unwrap();
                assert_eq!(d.attempt, 1);
                got.push(d.event.position);
                d.ack().await.unwrap();
            }
            None => cancelled += 1,
        }
    }
    publisher.await.unwrap();
    let expected: Vec<u64> = (1..=total).collect();
    assert_eq!(
        got, expected,
        "in order, none lost, none twice ({cancelled} cancelled waits)"
    );
    let info = c.info().await.unwrap();
    assert_eq!((info.num_ack_pending, info.num_pending), (0, 0));
}

// -------------------------------------------------------------------- replay

#[tokio::test]
async fn replay_stops_at_head_seen_at_start() {
    let bus = MemoryBus::with_defaults();
    publish_n(&bus, 3).await;
    let mut replay = bus.replay(&all(), StartPosition::Beginning).await.unwrap();
    publish_n(&bus, 2).await;
    let mut got = Vec::new();
    while let Some(e) = timeout(SOON, replay.next()).await.unwrap() {
        got.push(e.unwrap().position);
    }
    assert_eq!(got, vec![1, 2, 3]);
}

#[tokio::test]
async fn replay_filters_and_honours_start_positions() {
    let bus = MemoryBus::with_defaults();
    bus.publish(player("A")).await.unwrap();
    bus.publish(hand("X")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let t = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    bus.publish(player("B")).await.unwrap();
    bus.publish(hand("Y")).await.unwrap();
    assert_eq!(
        replay_positions(&bus, &players(), StartPosition::Beginning).await,
        vec![1, 3]
    );
    assert_eq!(
        replay_positions(&bus, &all(), StartPosition::Position(2)).await,
        vec![2, 3, 4]
    );
    assert_eq!(
        replay_positions(&bus, &all(), StartPosition::Time(t)).await,
        vec![3, 4]
    );
    assert!(
        replay_positions(&bus, &all(), StartPosition::New)
            .await
            .is_empty()
    );
    assert!(
        replay_positions(&bus, &all(), StartPosition::Position(99))
            .await
            .is_empty()
    );
    assert!(
        replay_positions(
            &bus,
            &f("angzarr.events.*.Nothing"),
            StartPosition::Beginning
        )
        .await
        .is_empty()
    );
}

#[tokio::test]
async fn replay_reads_a_large_log_in_chunks_in_order() {
    let bus = MemoryBus::with_defaults();
    let n = (REPLAY_CHUNK as usize) * 3 + 7;
    let batch: Vec<EventEnvelope> = (0..n).map(|i| player(&format!("E{}", i % 5))).collect();
    bus.publish_batch(batch).await.unwrap();
    let got = replay_positions(&bus, &all(), StartPosition::Beginning).await;
    assert_eq!(got, (1..=n as u64).collect::<Vec<_>>());
    let e0 = replay_positions(
        &bus,
        &f("angzarr.events.player.E0"),
        StartPosition::Beginning,
    )
    .await;
    assert_eq!(e0.len(), n.div_ceil(5));
    assert!(e0.iter().all(|p| (p - 1) % 5 == 0));
}

#[tokio::test]
async fn replay_skips_events_removed_during_the_replay() {
    let chunk = REPLAY_CHUNK as usize;
    let bus = bus_with(|s| s.max_msgs = (chunk * 2) as u64);
    publish_n(&bus, chunk * 2).await;
    let mut replay = bus.replay(&all(), StartPosition::Beginning).await.unwrap();
    let first = replay.next().await.unwrap().unwrap();
    assert_eq!(first.position, 1);
    // Everything the replay has not read yet is removed.
    publish_n(&bus, chunk * 2).await;
    let mut rest = Vec::new();
    while let Some(e) = replay.next().await {
        rest.push(e.unwrap().position);
    }
    // Only what was already read into the first chunk comes out.
    assert_eq!(rest, (2..=chunk as u64).collect::<Vec<_>>());
}

#[tokio::test]
async fn in_progress_revives_an_expired_delivery_not_yet_redelivered() {
    let bus = MemoryBus::with_defaults();
    publish_n(&bus, 1).await;
    let mut c = bus
        .consumer(config("c", all()).ack_wait(Duration::from_millis(500)))
        .await
        .unwrap();
    let d = next_soon(&mut c).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    // The sweep has seen the deadline pass; nobody took the redelivery yet.
    let info = bus.consumer_info("c").await.unwrap();
    assert_eq!((info.num_ack_pending, info.num_redelivered), (1, 0));
    d.in_progress().await.unwrap();
    assert!(c.fetch(1, Duration::ZERO).await.unwrap().is_empty());
    // Not acked within the restarted wait: redelivered after all.
    let again = next_soon(&mut c).await;
    assert_eq!((again.event.position, again.attempt), (1, 2));
}

#[tokio::test]
async fn in_progress_after_nak_does_not_cancel_the_nak() {
    let bus = MemoryBus::with_defaults();
    publish_n(&bus, 1).await;
    let mut c = bus
        .consumer(config("c", all()).ack_wait(Duration::from_secs(60)))
        .await
        .unwrap();
    let d = next_soon(&mut c).await;
    d.nak().await.unwrap();
    d.in_progress().await.unwrap();
    let again = c.fetch(1, SOON).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 2);
    // Also when the delayed nak has come due before the in_progress.
    again[0]
        .nak_with_delay(Duration::from_millis(20))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    bus.consumer_info("c").await.unwrap(); // sweeps: the nak is due
    again[0].in_progress().await.unwrap();
    let third = c.fetch(1, SOON).await.unwrap();
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].attempt, 3);
}

#[tokio::test]
async fn max_age_expiry_updates_consumer_counts() {
    let bus = bus_with(|s| s.max_age = Duration::from_millis(60));
    publish_n(&bus, 3).await;
    let mut c = bus.consumer(config("c", all())).await.unwrap();
    let _held = next_soon(&mut c).await;
    let info = c.info().await.unwrap();
    assert_eq!((info.num_pending, info.num_ack_pending), (2, 1));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let info = c.info().await.unwrap();
    assert_eq!(
        (
            info.num_pending,
            info.num_ack_pending,
            info.delivered,
            info.ack_floor
        ),
        (0, 0, 1, 3)
    );
    assert!(bus.dead_letters(None).await.unwrap().is_empty());
    bus.publish(player("Fresh")).await.unwrap();
    assert_eq!(next_soon(&mut c).await.event.position, 4);
}
