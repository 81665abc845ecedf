//! The event store on a real nats-server 2.15.1, where only a server can
//! show it: a server too old for atomic batches, a lost acknowledgement of
//! an append, a stream created by an earlier version of the bus, and a
//! server that answers batched direct gets as plain ones. The odd servers
//! are nats-server behind a small NATS-protocol proxy that rewrites what the
//! server says (its INFO version, the acknowledgement of a batch, the
//! headers of a direct get reply).

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use bus_core::testkit::deposit;
use bus_core::{Backend, Bus, BusConfig, BusError, EventEnvelope, ExpectedVersion, StartPosition};
use bus_nats::NatsBus;
use nats_test_server::NatsServer;

fn config(url: &str) -> BusConfig {
    let mut c = BusConfig {
        backend: Backend::Nats,
        ..BusConfig::default()
    };
    c.nats.url = url.to_owned();
    c
}

fn deposits(id: &str, n: usize) -> Vec<EventEnvelope> {
    (0..n).map(|_| deposit(id, 0)).collect()
}

#[path = "support/nats_proxy.rs"]
mod nats_proxy;
use nats_proxy::{Proxy, Rules};

// ------------------------------------------------------------------ tests

/// An external server older than 2.12 has no atomic batches: connecting
/// works, `append` is `Unsupported` naming the version it needs and the one
/// the server has, and `load` still reads what a newer client appended
/// (with single direct gets, since 2.10 has no batched ones).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_on_a_server_older_than_2_12_is_unsupported_naming_the_version() {
    let server = NatsServer::start().await;
    let direct = NatsBus::connect(&config(&server.url()))
        .await
        .expect("connect");
    let mut version = 0;
    for k in [1usize, 40, 3, 60] {
        let r = direct
            .append(ExpectedVersion::Exactly(version), deposits("p1", k))
            .await
            .expect("append on 2.15.1");
        version = r.version;
    }
    let proxy = Proxy::start(
        server.url(),
        Rules {
            version: Some("2.10.7".into()),
            ..Rules::default()
        },
    )
    .await;
    let old = NatsBus::connect(&config(&proxy.url))
        .await
        .expect("connecting to an old server works");
    match old.append(ExpectedVersion::Any, deposits("p1", 1)).await {
        Err(BusError::Unsupported(m)) => {
            assert!(m.contains("2.12.0"), "names the version it needs: {m}");
            assert!(m.contains("2.10.7"), "names the server's version: {m}");
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
    for after in [0, 1, 41, 100, version] {
        let through_old = old.load("player", "p1", after).await.expect("load");
        let reference = direct.load("player", "p1", after).await.expect("load");
        assert_eq!(through_old, reference, "load after {after}");
        assert_eq!(
            through_old.events.len() as u64,
            version - after,
            "after {after}"
        );
    }
}

/// The acknowledgement of an append is lost: the bus sends the same batch
/// again, the server refuses it (the expectation no longer holds), and the
/// bus recognises its own first append: the receipt has its positions and
/// `duplicate: true`, and the events are stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_append_acknowledgement_is_retried_and_reports_the_first_append() {
    let server = NatsServer::start().await;
    let proxy = Proxy::start(server.url(), Rules::default()).await;
    let mut c = config(&proxy.url);
    c.nats.request_timeout = Duration::from_secs(1);
    c.nats.publish_retries = 2;
    let bus = NatsBus::connect(&c).await.expect("connect");
    bus.append(ExpectedVersion::NoAggregate, deposits("p1", 2))
        .await
        .expect("first append");
    proxy.drop_next_batch_acks(1);
    let events = deposits("p1", 3);
    let r = bus
        .append(ExpectedVersion::Exactly(2), events.clone())
        .await
        .expect("the append succeeds despite the lost acknowledgement");
    assert_eq!(proxy.dropped(), 1, "the proxy dropped the acknowledgement");
    assert!(r.duplicate, "the retry found the first attempt: {r:?}");
    assert_eq!(r.version, 5);
    let loaded = bus.load("player", "p1", 2).await.expect("load");
    let positions: Vec<u64> = loaded.events.iter().map(|e| e.position).collect();
    assert_eq!(r.positions, positions);
    let ids: Vec<&str> = loaded
        .events
        .iter()
        .map(|e| e.envelope.event_id.as_str())
        .collect();
    let sent: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, sent);
    let all = bus
        .replay(&bus.layout().all(), StartPosition::Beginning)
        .await
        .expect("replay")
        .collect_all()
        .await
        .expect("replay");
    assert_eq!(all.len(), 5, "each event stored once");
}

/// With no retries configured the lost acknowledgement is a `Timeout`; the
/// caller's own retry of the same append is then recognised as the append
/// that was stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_retries_a_lost_ack_is_a_timeout_and_the_callers_retry_is_recognised() {
    let server = NatsServer::start().await;
    let proxy = Proxy::start(
        server.url(),
        Rules {
            drop_batch_acks: 1,
            ..Rules::default()
        },
    )
    .await;
    let mut c = config(&proxy.url);
    c.nats.request_timeout = Duration::from_secs(1);
    c.nats.publish_retries = 0;
    let bus = NatsBus::connect(&c).await.expect("connect");
    let events = deposits("p1", 2);
    match bus
        .append(ExpectedVersion::NoAggregate, events.clone())
        .await
    {
        Err(BusError::Timeout { .. }) => {}
        other => panic!("expected Timeout, got {other:?}"),
    }
    let r = bus
        .append(ExpectedVersion::NoAggregate, events.clone())
        .await
        .expect("the retry");
    assert!(r.duplicate, "{r:?}");
    assert_eq!(r.version, 2);
    let loaded = bus.load("player", "p1", 0).await.expect("load");
    assert_eq!(
        loaded.events.iter().map(|e| e.position).collect::<Vec<_>>(),
        r.positions
    );
}

/// A stream made by an earlier version of the bus (events only, no
/// `allow_atomic`): connecting is a `Conflict` naming what is missing, and
/// `update_stream` adds it, keeping the events, after which appends work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_from_before_appends_conflicts_and_update_stream_upgrades_it() {
    let server = NatsServer::start().await;
    let client = async_nats::connect(server.url()).await.expect("client");
    let js = jetstream::new(client);
    let old = NatsBus::connect(&config(&server.url()))
        .await
        .expect("connect");
    old.publish(deposit("p0", 1)).await.expect("publish");
    drop(old);
    // What earlier versions created: the events subject only.
    let mut info = js
        .get_stream("angzarr-events")
        .await
        .expect("stream")
        .info()
        .await
        .expect("info")
        .config
        .clone();
    info.subjects = vec!["angzarr.events.>".into()];
    info.allow_atomic_publish = false;
    js.update_stream(&info).await.expect("downgrade the stream");

    match NatsBus::connect(&config(&server.url())).await {
        Err(BusError::Conflict(m)) => {
            assert!(m.contains("angzarr.aggregates.>"), "{m}");
            assert!(m.contains("allow_atomic"), "{m}");
            assert!(m.contains("update_stream"), "{m}");
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    let mut c = config(&server.url());
    c.nats.update_stream = true;
    let bus = NatsBus::connect(&c).await.expect("update_stream upgrades");
    let r = bus
        .append(ExpectedVersion::NoAggregate, deposits("p1", 2))
        .await
        .expect("append after the upgrade");
    assert_eq!(r.version, 2);
    let after: stream::Config = js
        .get_stream("angzarr-events")
        .await
        .expect("stream")
        .info()
        .await
        .expect("info")
        .config
        .clone();
    assert!(after.allow_atomic_publish);
    assert!(after.subjects.contains(&"angzarr.aggregates.>".to_owned()));
    let all = bus
        .replay(&bus.layout().all(), StartPosition::Beginning)
        .await
        .expect("replay")
        .collect_all()
        .await
        .expect("replay");
    assert_eq!(all.len(), 3, "the old event is still there");
}

/// A server that answers a batched direct get with one plain message (as
/// servers before 2.11 do): loads notice and read with single direct gets,
/// with the same result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_fall_back_to_single_direct_gets_when_batches_are_answered_plainly() {
    let server = NatsServer::start().await;
    let direct = NatsBus::connect(&config(&server.url()))
        .await
        .expect("connect");
    let mut version = 0;
    for k in [5usize, 70, 2, 90] {
        version = direct
            .append(ExpectedVersion::Exactly(version), deposits("p1", k))
            .await
            .expect("append")
            .version;
        direct
            .append(ExpectedVersion::Any, deposits("other", 3))
            .await
            .expect("append");
    }
    let proxy = Proxy::start(
        server.url(),
        Rules {
            plain_direct_gets: true,
            ..Rules::default()
        },
    )
    .await;
    let plain = NatsBus::connect(&config(&proxy.url))
        .await
        .expect("connect");
    for after in [0, 4, 75, 160, version] {
        let got = tokio::time::timeout(Duration::from_secs(20), plain.load("player", "p1", after))
            .await
            .expect("no waiting for an end of batch that never comes")
            .expect("load");
        let reference = direct.load("player", "p1", after).await.expect("load");
        assert_eq!(got, reference, "load after {after}");
        assert_eq!(got.events.len() as u64, version - after);
    }
}
