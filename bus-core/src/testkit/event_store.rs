//! Scenarios of the bus as an event store: appends with an expected version,
//! loads of one aggregate, snapshots. Re-exported by the scenarios module.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::Harness;
use super::support::*;
use crate::{
    AggregateHistory, AppendReceipt, Bus, BusError, ConsumerConfig, EventEnvelope, ExpectedVersion,
    Snapshot, StartPosition, StoredEvent, StreamSettings,
};

fn settings() -> StreamSettings {
    StreamSettings::default()
}

/// Appends, panicking with the error.
async fn append_ok(
    bus: &dyn Bus,
    expected: ExpectedVersion,
    events: &[EventEnvelope],
) -> AppendReceipt {
    bus.append(expected, events.to_vec())
        .await
        .unwrap_or_else(|e| panic!("append expecting {expected}: {e}"))
}

/// Loads, panicking with the error.
async fn load_ok(bus: &dyn Bus, aggregate_type: &str, id: &str, after: u64) -> AggregateHistory {
    bus.load(aggregate_type, id, after)
        .await
        .unwrap_or_else(|e| panic!("load {aggregate_type} {id:?} after {after}: {e}"))
}

/// `events` as the bus stores them when appended from `first_version` on.
fn numbered(events: &[EventEnvelope], first_version: u64) -> Vec<EventEnvelope> {
    let mut out = events.to_vec();
    crate::aggregate::number_events(&mut out, first_version);
    out
}

fn envelopes(events: &[StoredEvent]) -> Vec<EventEnvelope> {
    events.iter().map(|e| e.envelope.clone()).collect()
}

fn ids(events: &[EventEnvelope]) -> Vec<String> {
    events.iter().map(|e| e.event_id.clone()).collect()
}

/// Asserts a receipt of `k` fresh events ending at `version`.
fn assert_fresh(r: &AppendReceipt, k: usize, version: u64, what: &str) {
    assert!(
        !r.duplicate,
        "{what}: a fresh append reported as a duplicate"
    );
    assert_eq!(r.version, version, "{what}: version after the append");
    assert_eq!(r.positions.len(), k, "{what}: one position per event");
    assert!(
        r.positions.windows(2).all(|w| w[1] == w[0] + 1),
        "{what}: positions of one append are consecutive: {:?}",
        r.positions
    );
}

/// Expects `VersionConflict { expected, actual }` on `player`/`id`.
fn assert_conflict(
    result: crate::Result<AppendReceipt>,
    id: &str,
    expected_version: u64,
    actual_version: u64,
) {
    match result {
        Err(BusError::VersionConflict {
            aggregate_type,
            aggregate_id,
            expected,
            actual,
        }) => {
            assert_eq!(
                (aggregate_type.as_str(), aggregate_id.as_str()),
                ("player", id)
            );
            assert_eq!(
                (expected, actual),
                (expected_version, actual_version),
                "(expected, actual) in the conflict"
            );
        }
        other => panic!(
            "expected VersionConflict (expected {expected_version}, actual {actual_version}), got {other:?}"
        ),
    }
}

/// The receipt of `r` repeated for a retry.
fn assert_repeat_of(again: &AppendReceipt, first: &AppendReceipt, what: &str) {
    assert!(again.duplicate, "{what}: the retry must say duplicate");
    assert_eq!(again.version, first.version, "{what}: version of the retry");
    assert_eq!(
        again.positions, first.positions,
        "{what}: positions of the retry"
    );
}

// ---------------------------------------------------------------- append

/// An append stores its events with sequences numbered by the bus from the
/// aggregate's version (whatever the envelopes held), gives the new version
/// and one position per event, and `load` returns them in order.
pub async fn append_numbers_events_and_reports_version_and_positions(h: &impl Harness) {
    let bus = h.open(settings()).await;
    let before = bus
        .publish(event("hand", "h0", 1, "CardsDealt"))
        .await
        .expect("publish");
    let first: Vec<_> = (0..3).map(|_| deposit("p1", 77)).collect();
    let r1 = append_ok(&*bus, ExpectedVersion::NoAggregate, &first).await;
    assert_fresh(&r1, 3, 3, "first append");
    assert!(r1.positions[0] > before.position, "{r1:?} after {before:?}");
    assert_eq!(r1.first_version(), 1);
    let second = deposits("p1", 2);
    let r2 = append_ok(&*bus, ExpectedVersion::Exactly(3), &second).await;
    assert_fresh(&r2, 2, 5, "second append");
    assert!(r2.positions[0] > r1.positions[2]);
    let third = deposits("p1", 1);
    let r3 = append_ok(&*bus, ExpectedVersion::Any, &third).await;
    assert_fresh(&r3, 1, 6, "append expecting any version");

    let mut expected = numbered(&first, 1);
    expected.extend(numbered(&second, 4));
    expected.extend(numbered(&third, 6));
    let loaded = load_ok(&*bus, "player", "p1", 0).await;
    assert_eq!(loaded.version, 6);
    assert_eq!(
        (loaded.aggregate_type.as_str(), loaded.aggregate_id.as_str()),
        ("player", "p1")
    );
    assert_eq!(envelopes(&loaded.events), expected, "loaded envelopes");
    let all_positions: Vec<u64> = [&r1, &r2, &r3]
        .iter()
        .flat_map(|r| r.positions.clone())
        .collect();
    assert_eq!(positions(&loaded.events), all_positions);
    assert!(
        loaded
            .events
            .iter()
            .all(|e| e.subject == "angzarr.events.player.FundsDeposited"),
        "subjects stay <prefix>.events.<aggregate>.<EventType>"
    );
    let replayed = replay_all(
        &*bus,
        &filter("angzarr.events.player.*"),
        StartPosition::Beginning,
    )
    .await;
    assert_eq!(envelopes(&replayed), expected, "replayed envelopes");
    assert_eq!(positions(&replayed), all_positions);
}

async fn concurrent_appends_at_one_version(h: &impl Harness, writers: usize) {
    let bus = h.open(settings()).await;
    let base = deposits("race", 2);
    append_ok(&*bus, ExpectedVersion::NoAggregate, &base).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(writers));
    let mut tasks = Vec::new();
    for w in 0..writers {
        let bus = Arc::clone(&bus);
        let barrier = Arc::clone(&barrier);
        let events: Vec<_> = (0..(w % 3) + 1).map(|_| deposit("race", 0)).collect();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let result = bus
                .append(ExpectedVersion::Exactly(2), events.clone())
                .await;
            (events, result)
        }));
    }
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for task in tasks {
        let (events, result) = task.await.expect("writer task");
        match result {
            Ok(r) => winners.push((events, r)),
            Err(e) => losers.push((events, e)),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "{writers} writers at version 2: exactly one must win, {} did ({:?})",
        winners.len(),
        winners.iter().map(|w| &w.1).collect::<Vec<_>>()
    );
    let (won_events, won) = winners.remove(0);
    let k = won_events.len() as u64;
    assert_fresh(&won, won_events.len(), 2 + k, "the winner");
    assert_eq!(losers.len(), writers - 1);
    for (_, e) in &losers {
        match e {
            BusError::VersionConflict {
                expected, actual, ..
            } => assert_eq!((*expected, *actual), (2, 2 + k)),
            other => panic!("a losing writer got {other:?}, not VersionConflict"),
        }
    }
    let loaded = load_ok(&*bus, "player", "race", 0).await;
    assert_eq!(loaded.version, 2 + k);
    let mut expected = numbered(&base, 1);
    expected.extend(numbered(&won_events, 3));
    assert_eq!(
        envelopes(&loaded.events),
        expected,
        "only the winner is stored"
    );
    let replayed = replay_all(&*bus, &all(), StartPosition::Beginning).await;
    assert_eq!(
        envelopes(&replayed),
        expected,
        "no event of a losing writer is in the stream"
    );
    // A loser that reloads and retries succeeds: none of its ids was stored.
    if let Some((events, _)) = losers.first() {
        let r = append_ok(&*bus, ExpectedVersion::Exactly(2 + k), events).await;
        assert_fresh(
            &r,
            events.len(),
            2 + k + events.len() as u64,
            "a loser's retry",
        );
    }
}

/// Two writers append at the same expected version at once: exactly one
/// wins, the other gets `VersionConflict` with the expected and actual version.
pub async fn concurrent_appends_at_one_version_exactly_one_wins_of_2(h: &impl Harness) {
    concurrent_appends_at_one_version(h, 2).await;
}

/// Eight writers at the same expected version: exactly one wins.
pub async fn concurrent_appends_at_one_version_exactly_one_wins_of_8(h: &impl Harness) {
    concurrent_appends_at_one_version(h, 8).await;
}

/// Thirty-two writers at the same expected version: exactly one wins.
pub async fn concurrent_appends_at_one_version_exactly_one_wins_of_32(h: &impl Harness) {
    concurrent_appends_at_one_version(h, 32).await;
}

/// An append whose expectation is not met (stale, "no aggregate" on an
/// existing one, ahead) stores none of its events: stream, load, replay and
/// consumers are unchanged, and its event ids are free for a later append.
pub async fn append_failing_its_check_stores_nothing(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    let base = deposits("p1", 2);
    append_ok(&*bus, ExpectedVersion::NoAggregate, &base).await;
    let mut c = open_consumer(&*bus, config("watch", Duration::from_secs(30))).await;
    take_and_ack(&mut c, 2, t.patience).await;
    let info_before = bus.stream_info().await.expect("stream info");
    let refused = deposits("p1", 3);
    assert_conflict(
        bus.append(ExpectedVersion::Exactly(1), refused.clone())
            .await,
        "p1",
        1,
        2,
    );
    assert_conflict(
        bus.append(ExpectedVersion::NoAggregate, refused.clone())
            .await,
        "p1",
        0,
        2,
    );
    assert_conflict(
        bus.append(ExpectedVersion::Exactly(5), refused.clone())
            .await,
        "p1",
        5,
        2,
    );
    let info_after = bus.stream_info().await.expect("stream info");
    assert_eq!(
        (info_after.messages, info_after.last_position),
        (info_before.messages, info_before.last_position),
        "a refused append stored something"
    );
    let loaded = load_ok(&*bus, "player", "p1", 0).await;
    assert_eq!(loaded.version, 2);
    assert_eq!(envelopes(&loaded.events), numbered(&base, 1));
    assert_eq!(
        replay_all(&*bus, &all(), StartPosition::Beginning)
            .await
            .len(),
        2
    );
    assert_quiet(&mut c, t.quiet).await;
    let r = append_ok(&*bus, ExpectedVersion::Exactly(2), &refused).await;
    assert_fresh(&r, 3, 5, "the refused events appended at the right version");
}

/// Repeating an append whose acknowledgement was lost (same event ids, in
/// order) reports the first append's version and positions with
/// `duplicate: true` and stores nothing: right away, after another writer
/// appended, and when retried at the version it produced or with `Any`.
pub async fn append_retried_after_a_lost_ack_returns_the_first_receipt(h: &impl Harness) {
    let bus = h.open(settings()).await;
    let events = deposits("p1", 3);
    let first = append_ok(&*bus, ExpectedVersion::NoAggregate, &events).await;
    let again = append_ok(&*bus, ExpectedVersion::NoAggregate, &events).await;
    assert_repeat_of(&again, &first, "retry at once");

    let other = deposits("p1", 2);
    append_ok(&*bus, ExpectedVersion::Exactly(3), &other).await;
    let late = append_ok(&*bus, ExpectedVersion::NoAggregate, &events).await;
    assert_repeat_of(&late, &first, "retry after another writer appended");

    let one = deposits("p1", 1);
    let r = append_ok(&*bus, ExpectedVersion::Exactly(5), &one).await;
    assert_fresh(&r, 1, 6, "append at 5");
    for (expected, what) in [
        (
            ExpectedVersion::Exactly(5),
            "retry at the version it expected",
        ),
        (
            ExpectedVersion::Exactly(6),
            "retry at the version it produced",
        ),
        (ExpectedVersion::Any, "retry expecting any version"),
    ] {
        let again = append_ok(&*bus, expected, &one).await;
        assert_repeat_of(&again, &r, what);
    }
    let loaded = load_ok(&*bus, "player", "p1", 0).await;
    assert_eq!(loaded.version, 6);
    let mut expected = numbered(&events, 1);
    expected.extend(numbered(&other, 4));
    expected.extend(numbered(&one, 6));
    assert_eq!(
        envelopes(&loaded.events),
        expected,
        "each event stored once"
    );
    let replayed = replay_all(&*bus, &all(), StartPosition::Beginning).await;
    assert_eq!(envelopes(&replayed), expected, "each event stored once");
}

/// An append reusing an event id stored by something else (a publish, or
/// another append) is not a retry: it stores nothing and is a `Conflict`.
pub async fn append_reusing_a_stored_event_id_stores_nothing(h: &impl Harness) {
    let bus = h.open(settings()).await;
    let published = deposit("p1", 1);
    bus.publish(published.clone()).await.expect("publish");
    let mut mixed = deposits("p1", 2);
    mixed[1].event_id.clone_from(&published.event_id);
    match bus.append(ExpectedVersion::NoAggregate, mixed).await {
        Err(BusError::Conflict(_)) => {}
        other => panic!("reusing a published event id: expected Conflict, got {other:?}"),
    }
    let a = deposits("p1", 2);
    append_ok(&*bus, ExpectedVersion::NoAggregate, &a).await;
    let mut overlap = deposits("p1", 2);
    overlap[0].event_id.clone_from(&a[1].event_id);
    match bus.append(ExpectedVersion::Exactly(2), overlap).await {
        Err(BusError::Conflict(_)) => {}
        other => panic!("reusing one id of an append: expected Conflict, got {other:?}"),
    }
    let loaded = load_ok(&*bus, "player", "p1", 0).await;
    assert_eq!(envelopes(&loaded.events), numbered(&a, 1));
    assert_eq!(
        replay_all(&*bus, &all(), StartPosition::Beginning)
            .await
            .len(),
        3,
        "the publish and the one append"
    );
}

/// Empty, mixed, oversized, repeated-id or badly named appends are refused
/// before anything is stored, with errors to match on.
pub async fn invalid_appends_are_refused_before_anything_is_stored(h: &impl Harness) {
    let bus = h
        .open(StreamSettings {
            max_msg_size: 4096,
            ..settings()
        })
        .await;
    let refuse = |r: crate::Result<AppendReceipt>, what: &str| match r {
        Err(BusError::InvalidArgument(_)) => {}
        other => panic!("{what}: expected InvalidArgument, got {other:?}"),
    };
    refuse(
        bus.append(ExpectedVersion::Any, Vec::new()).await,
        "empty append",
    );
    refuse(
        bus.append(
            ExpectedVersion::Any,
            vec![deposit("p1", 1), deposit("p2", 1)],
        )
        .await,
        "two aggregates",
    );
    let e = deposit("p1", 1);
    refuse(
        bus.append(ExpectedVersion::Any, vec![e.clone(), e]).await,
        "one event id twice",
    );
    let many: Vec<_> = (0..=crate::MAX_APPEND_EVENTS)
        .map(|_| deposit("p1", 1))
        .collect();
    refuse(bus.append(ExpectedVersion::Any, many).await, "1000 events");
    let mut bad = deposits("p1", 2);
    bad[1].event_type = "Funds.Deposited".into();
    assert!(matches!(
        bus.append(ExpectedVersion::Any, bad).await,
        Err(BusError::InvalidName { .. })
    ));
    let mut big = deposits("p1", 2);
    if let Some(p) = big[1].payload.as_mut() {
        p.value = vec![7; 8192];
    }
    assert!(matches!(
        bus.append(ExpectedVersion::Any, big).await,
        Err(BusError::PayloadTooLarge { limit: 4096, .. })
    ));
    assert!(matches!(
        bus.load("pla.yer", "p1", 0).await,
        Err(BusError::InvalidName { .. })
    ));
    assert!(matches!(
        bus.load("player", "", 0).await,
        Err(BusError::InvalidArgument(_))
    ));
    assert_eq!(bus.stream_info().await.expect("info").messages, 0);
    assert_eq!(load_ok(&*bus, "player", "p1", 0).await.version, 0);
}

// ---------------------------------------------------------------- load

/// `load` after a version returns the aggregate's version and only the
/// events after it, whatever appends they came in.
pub async fn load_from_a_version_returns_only_later_events(h: &impl Harness) {
    let bus = h.open(settings()).await;
    let mut all_events = Vec::new();
    let mut version = 0;
    for k in [3u64, 2, 4] {
        let events = deposits("p1", k);
        // Another aggregate in between, so the stream is not only this one.
        append_ok(&*bus, ExpectedVersion::Any, &deposits("other", 2)).await;
        append_ok(&*bus, ExpectedVersion::Exactly(version), &events).await;
        all_events.extend(numbered(&events, version + 1));
        version += k;
    }
    let full = load_ok(&*bus, "player", "p1", 0).await;
    assert_eq!(envelopes(&full.events), all_events);
    for after in [0u64, 1, 3, 4, 5, 8, 9, 12] {
        let loaded = load_ok(&*bus, "player", "p1", after).await;
        assert_eq!(loaded.version, 9, "version when loading after {after}");
        let skip = usize::try_from(after.min(9)).unwrap_or(9);
        assert_eq!(
            loaded.events,
            full.events[skip..],
            "events after version {after}"
        );
    }
}

/// An aggregate that has no events loads as version 0 with no events (not
/// an error), and has no snapshot.
pub async fn load_of_an_unknown_aggregate_is_version_zero(h: &impl Harness) {
    let bus = h.open(settings()).await;
    append_ok(&*bus, ExpectedVersion::NoAggregate, &deposits("known", 2)).await;
    bus.publish(deposit("published-only", 1))
        .await
        .expect("publish");
    for id in ["nobody", "published-only", "known-not"] {
        let loaded = load_ok(&*bus, "player", id, 0).await;
        assert_eq!(loaded.version, 0, "{id}");
        assert!(loaded.events.is_empty(), "{id}: {:?}", loaded.events);
    }
    assert!(load_ok(&*bus, "hand", "known", 0).await.events.is_empty());
    assert_eq!(
        bus.load_snapshot("player", "nobody")
            .await
            .expect("load snapshot"),
        None
    );
    let (snapshot, history) = bus
        .load_from_snapshot("player", "nobody")
        .await
        .expect("load from snapshot");
    assert_eq!((snapshot, history.version), (None, 0));
    let r = append_ok(&*bus, ExpectedVersion::NoAggregate, &deposits("nobody", 1)).await;
    assert_eq!(r.version, 1);
}

// ---------------------------------------------------------------- order

/// Appends to four aggregates from concurrent writers (two per aggregate,
/// reloading and retrying on conflicts): consumers on
/// `angzarr.events.*.>` and `angzarr.events.player.*`, a live subscriber and
/// a replay all see the events in append order (their positions), each
/// aggregate's versions 1, 2, 3 ... without gap or repeat.
pub async fn appended_events_reach_consumers_and_replays_in_append_order(h: &impl Harness) {
    let t = h.timing();
    let bus = h.open(settings()).await;
    let mut live = bus
        .subscribe(&filter("angzarr.events.player.*"))
        .await
        .expect("subscribe");
    let aggregates = [
        ("player", "a"),
        ("player", "b"),
        ("hand", "h1"),
        ("hand", "h2"),
    ];
    let appends_per_writer = 6;
    let mut tasks = Vec::new();
    for (aggregate_type, id) in aggregates {
        for writer in 0..2u64 {
            let bus = Arc::clone(&bus);
            tasks.push(tokio::spawn(async move {
                let mut stored: Vec<(u64, EventEnvelope)> = Vec::new();
                let mut version = 0;
                let mut done = 0;
                while done < appends_per_writer {
                    let k = 1 + (done + writer) % 3;
                    let events: Vec<_> = (0..k)
                        .map(|_| event(aggregate_type, id, 0, "Happened"))
                        .collect();
                    match bus
                        .append(ExpectedVersion::Exactly(version), events.clone())
                        .await
                    {
                        Ok(r) => {
                            let numbered = numbered(&events, r.first_version());
                            stored.extend(r.positions.iter().copied().zip(numbered));
                            version = r.version;
                            done += 1;
                        }
                        Err(BusError::VersionConflict { actual, .. }) => version = actual,
                        Err(e) => panic!("append to {aggregate_type} {id}: {e}"),
                    }
                }
                stored
            }));
        }
    }
    let mut appended: BTreeMap<u64, EventEnvelope> = BTreeMap::new();
    for task in tasks {
        for (position, e) in task.await.expect("writer") {
            assert!(
                appended.insert(position, e).is_none(),
                "position {position} given twice"
            );
        }
    }
    let in_order: Vec<EventEnvelope> = appended.values().cloned().collect();
    let check_versions = |events: &[EventEnvelope], source: &str| {
        let mut last: HashMap<(String, String), u64> = HashMap::new();
        for e in events {
            let key = (e.aggregate_type.clone(), e.aggregate_id.clone());
            let prev = last.insert(key, e.sequence).unwrap_or(0);
            assert_eq!(
                e.sequence,
                prev + 1,
                "{source}: {} {} version {} after {prev}",
                e.aggregate_type,
                e.aggregate_id,
                e.sequence
            );
        }
    };
    check_versions(&in_order, "append receipts");

    let replayed = replay_all(&*bus, &all(), StartPosition::Beginning).await;
    assert_eq!(
        positions(&replayed),
        appended.keys().copied().collect::<Vec<_>>()
    );
    assert_eq!(envelopes(&replayed), in_order, "replay order");

    let mut every = open_consumer(
        &*bus,
        ConsumerConfig::new("every", filter("angzarr.events.*.>"))
            .ack_wait(Duration::from_secs(30)),
    )
    .await;
    let got = take_and_ack(&mut every, in_order.len(), t.patience).await;
    assert_eq!(envelopes(&got), in_order, "consumer on angzarr.events.*.>");
    assert_quiet(&mut every, t.quiet).await;

    let players: Vec<EventEnvelope> = in_order
        .iter()
        .filter(|e| e.aggregate_type == "player")
        .cloned()
        .collect();
    let mut player_consumer = open_consumer(
        &*bus,
        ConsumerConfig::new("players", filter("angzarr.events.player.*"))
            .ack_wait(Duration::from_secs(30)),
    )
    .await;
    let got = take_and_ack(&mut player_consumer, players.len(), t.patience).await;
    assert_eq!(
        envelopes(&got),
        players,
        "consumer on angzarr.events.player.*"
    );
    assert_quiet(&mut player_consumer, t.quiet).await;

    // Live subscribers get what is published: on NATS that includes the
    // events of appends the stream then refused (core NATS delivers before
    // the stream decides), and a second copy of an event whose publish was
    // retried after its acknowledgement timed out (the same event id, which
    // the stream stores once). So only the stored events are compared, each
    // at its first arrival, each aggregate's in version order; a repeat must
    // be the same event.
    let stored_ids: std::collections::HashSet<&str> =
        players.iter().map(|e| e.event_id.as_str()).collect();
    let mut seen: Vec<EventEnvelope> = Vec::new();
    while seen.len() < players.len() {
        let e = tokio::time::timeout(t.patience, live.next())
            .await
            .expect("every stored player event reaches the live subscriber in time")
            .expect("subscription open")
            .expect("live event decodes");
        if !stored_ids.contains(e.envelope.event_id.as_str()) {
            continue;
        }
        match seen.iter().find(|s| s.event_id == e.envelope.event_id) {
            Some(first) => assert_eq!(
                *first, e.envelope,
                "a repeated live event (a retried publish) is the same event"
            ),
            None => seen.push(e.envelope),
        }
    }
    for id in ["a", "b"] {
        let of = |events: &[EventEnvelope]| -> Vec<EventEnvelope> {
            events
                .iter()
                .filter(|e| e.aggregate_id == id)
                .cloned()
                .collect()
        };
        assert_eq!(
            of(&seen),
            of(&players),
            "live subscription on angzarr.events.player.*: player {id}"
        );
    }

    for (aggregate_type, id) in aggregates {
        let loaded = load_ok(&*bus, aggregate_type, id, 0).await;
        let expected: Vec<EventEnvelope> = in_order
            .iter()
            .filter(|e| e.aggregate_type == aggregate_type && e.aggregate_id == id)
            .cloned()
            .collect();
        assert_eq!(
            envelopes(&loaded.events),
            expected,
            "load {aggregate_type} {id}"
        );
        assert_eq!(loaded.version, expected.len() as u64);
    }
}

// ---------------------------------------------------------------- snapshots

fn state(n: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: n,
        nanos: 0,
    }
}

/// The latest snapshot is kept (an older one never replaces it, one ahead
/// of the aggregate is refused), and loading from it returns the snapshot
/// and only the events after its version.
pub async fn snapshots_keep_the_latest_and_loading_starts_after_it(h: &impl Harness) {
    let bus = h.open(settings()).await;
    let first = deposits("p1", 3);
    append_ok(&*bus, ExpectedVersion::NoAggregate, &first).await;
    append_ok(&*bus, ExpectedVersion::NoAggregate, &deposits("p2", 1)).await;
    let save = |s: Snapshot| {
        let bus = Arc::clone(&bus);
        async move { bus.save_snapshot(s).await }
    };
    save(Snapshot::from_message("player", "p1", 2, &state(2)))
        .await
        .expect("snapshot at 2");
    let kept = bus
        .load_snapshot("player", "p1")
        .await
        .expect("load snapshot")
        .expect("a snapshot");
    assert_eq!(kept.version, 2);
    assert_eq!(
        kept.decode_state::<prost_types::Duration>()
            .expect("decode"),
        state(2)
    );
    save(Snapshot::from_message("player", "p1", 3, &state(3)))
        .await
        .expect("snapshot at 3");
    save(Snapshot::from_message("player", "p1", 1, &state(1)))
        .await
        .expect("an older snapshot is accepted and ignored");
    match save(Snapshot::from_message("player", "p1", 4, &state(4))).await {
        Err(BusError::InvalidArgument(m)) => assert!(m.contains('4'), "{m}"),
        other => {
            panic!("a snapshot ahead of the aggregate: expected InvalidArgument, got {other:?}")
        }
    }
    match save(Snapshot::from_message("player", "nobody", 1, &state(1))).await {
        Err(BusError::InvalidArgument(_)) => {}
        other => panic!("a snapshot of an unknown aggregate: got {other:?}"),
    }
    let later = deposits("p1", 2);
    append_ok(&*bus, ExpectedVersion::Exactly(3), &later).await;
    let (snapshot, history) = bus
        .load_from_snapshot("player", "p1")
        .await
        .expect("load from snapshot");
    let snapshot = snapshot.expect("the latest snapshot");
    assert_eq!(snapshot.version, 3);
    assert_eq!(
        snapshot
            .decode_state::<prost_types::Duration>()
            .expect("decode"),
        state(3)
    );
    assert_eq!(history.version, 5);
    assert_eq!(envelopes(&history.events), numbered(&later, 4));
    assert_eq!(
        bus.load_snapshot("player", "p2")
            .await
            .expect("load snapshot"),
        None,
        "snapshots are per aggregate"
    );
}

// ---------------------------------------------------------------- persistence

/// Versions, history, the version check, retry recognition and snapshots
/// survive a restart.
pub async fn appended_aggregates_survive_a_restart(h: &impl Harness) {
    let bus = h.open(settings()).await;
    let events = deposits("p1", 3);
    let first = append_ok(&*bus, ExpectedVersion::NoAggregate, &events).await;
    bus.save_snapshot(Snapshot::from_message("player", "p1", 3, &state(3)))
        .await
        .expect("snapshot");
    drop(bus);
    let bus = h.reopen().await;
    let loaded = load_ok(&*bus, "player", "p1", 0).await;
    assert_eq!(loaded.version, 3);
    assert_eq!(envelopes(&loaded.events), numbered(&events, 1));
    assert_eq!(positions(&loaded.events), first.positions);
    assert_conflict(
        bus.append(ExpectedVersion::Exactly(2), deposits("p1", 1))
            .await,
        "p1",
        2,
        3,
    );
    let again = append_ok(&*bus, ExpectedVersion::NoAggregate, &events).await;
    assert_repeat_of(&again, &first, "retry after a restart");
    assert_eq!(
        bus.load_snapshot("player", "p1")
            .await
            .expect("snapshot")
            .map(|s| s.version),
        Some(3)
    );
    let next = append_ok(&*bus, ExpectedVersion::Exactly(3), &deposits("p1", 1)).await;
    assert_fresh(&next, 1, 4, "append after a restart");
    assert!(next.positions[0] > first.positions[2]);
    assert_eq!(ids(&events), ids(&envelopes(&loaded.events)));
}
