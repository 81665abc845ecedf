//! Consumer priority groups through async-nats's own API (pull consumers
//! with `priority_policy`, `group(..)`, `min_pending(..)`, `priority(..)`,
//! its `Nats-Pin-Id` handling and `Stream::unpin_consumer`), against our
//! server and, to prove each scenario, against nats-server 2.15.1.

use std::time::Duration;

use async_nats::jetstream::{
    self, Context,
    consumer::{self, AckPolicy, PriorityPolicy, pull},
    stream,
};
use futures::StreamExt;
use js_target::{Target, scenario};
use serde_json::Value;

mod js_target;

/// Bound on any single wait for something that must happen.
const WAIT: Duration = Duration::from_secs(10);

async fn stream_and_consumer(js: &Context, config: pull::Config) -> consumer::PullConsumer {
    let s = js
        .create_stream(stream::Config {
            name: "S".into(),
            subjects: vec!["s.>".into()],
            ..Default::default()
        })
        .await
        .expect("stream");
    s.create_consumer(config).await.expect("consumer")
}

async fn publish(js: &Context, n: usize, tag: &str) {
    for i in 0..n {
        js.publish("s.x", format!("{tag}{i}").into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
}

fn pin_of(m: &jetstream::Message) -> Option<String> {
    m.headers
        .as_ref()
        .and_then(|h| h.get("Nats-Pin-Id"))
        .map(|v| v.as_str().to_owned())
}

async fn pinned_id(c: &mut consumer::PullConsumer) -> Option<String> {
    let info = c.info().await.expect("info");
    info.priority_groups
        .first()
        .and_then(|g| g.pinned_client_id.clone())
}

/// One active projector per consumer: the first client pulling the group
/// gets every message, tagged with its pin; a standby gets none; when the
/// active one stops pulling, the pin lapses after `priority_timeout` and
/// the standby takes over with a new pin (both announced by advisories).
async fn pinned_client_fails_over_to_the_standby_after_priority_timeout(t: &Target) {
    let (client, js) = t.js().await;
    let mut advisories = client
        .subscribe("$JS.EVENT.ADVISORY.CONSUMER.*.S.C")
        .await
        .expect("advisories");
    let mut c = stream_and_consumer(
        &js,
        pull::Config {
            name: Some("C".into()),
            ack_policy: AckPolicy::Explicit,
            priority_policy: PriorityPolicy::PinnedClient,
            priority_groups: vec!["jobs".into()],
            priority_timeout: Duration::from_secs(1),
            ..Default::default()
        },
    )
    .await;
    let mut active = c
        .stream()
        .group("jobs")
        .expires(Duration::from_millis(300))
        .messages()
        .await
        .expect("active");
    publish(&js, 3, "a").await;
    let mut first_pin = None;
    for _ in 0..3 {
        let m = tokio::time::timeout(WAIT, active.next())
            .await
            .expect("the active client gets the message")
            .expect("open")
            .expect("message");
        let pin = pin_of(&m).expect("a Nats-Pin-Id header");
        assert!(!pin.is_empty());
        assert_eq!(*first_pin.get_or_insert(pin.clone()), pin, "one pin");
        m.ack().await.expect("ack");
    }
    let first_pin = first_pin.expect("pinned");
    assert_eq!(pinned_id(&mut c).await.as_deref(), Some(first_pin.as_str()));

    // A standby pulling the same group gets nothing while the pin holds.
    let mut standby = c
        .stream()
        .group("jobs")
        .expires(Duration::from_millis(300))
        .messages()
        .await
        .expect("standby");
    publish(&js, 1, "b").await;
    let m = tokio::time::timeout(WAIT, active.next())
        .await
        .expect("still the active client")
        .expect("open")
        .expect("message");
    assert_eq!(pin_of(&m).as_deref(), Some(first_pin.as_str()));
    m.ack().await.expect("ack");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), standby.next())
            .await
            .is_err(),
        "the standby gets nothing while the active client pulls"
    );

    // The active client goes away: after priority_timeout the standby is pinned.
    drop(active);
    publish(&js, 1, "c").await;
    let m = tokio::time::timeout(WAIT, standby.next())
        .await
        .expect("the standby takes over")
        .expect("open")
        .expect("message");
    let second_pin = pin_of(&m).expect("a pin");
    assert_ne!(second_pin, first_pin, "a new pin for the new client");
    assert_eq!(m.payload.as_ref(), b"c0");
    m.ack().await.expect("ack");
    assert_eq!(
        pinned_id(&mut c).await.as_deref(),
        Some(second_pin.as_str())
    );

    // Pinned, unpinned (timeout), pinned again.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let a = tokio::time::timeout(WAIT, advisories.next())
            .await
            .expect("advisory")
            .expect("open");
        if !a.subject.as_str().contains("PINNED.") {
            continue;
        }
        let v: Value = serde_json::from_slice(&a.payload).expect("json");
        seen.push((
            v["type"].as_str().unwrap_or("").to_owned(),
            v["pinned_id"].as_str().map(str::to_owned),
            v["reason"].as_str().map(str::to_owned),
            v["group"].as_str().unwrap_or("").to_owned(),
        ));
    }
    let pinned = "io.nats.jetstream.advisory.v1.consumer_group_pinned".to_owned();
    let unpinned = "io.nats.jetstream.advisory.v1.consumer_group_unpinned".to_owned();
    assert_eq!(
        seen,
        vec![
            (pinned.clone(), Some(first_pin), None, "jobs".into()),
            (unpinned, None, Some("timeout".into()), "jobs".into()),
            (pinned, Some(second_pin), None, "jobs".into()),
        ]
    );
}
scenario!(pinned_client_fails_over_to_the_standby_after_priority_timeout);

/// `unpin_consumer` takes the pin away at once: the pinned client's next
/// pull gets 423, async-nats forgets the pin, and the next client served
/// gets a new one.
async fn unpin_moves_the_pin_without_waiting_for_the_timeout(t: &Target) {
    let (_client, js) = t.js().await;
    let mut c = stream_and_consumer(
        &js,
        pull::Config {
            name: Some("C".into()),
            ack_policy: AckPolicy::Explicit,
            priority_policy: PriorityPolicy::PinnedClient,
            priority_groups: vec!["jobs".into()],
            priority_timeout: Duration::from_secs(60),
            ..Default::default()
        },
    )
    .await;
    let mut active = c
        .stream()
        .group("jobs")
        .expires(Duration::from_millis(300))
        .messages()
        .await
        .expect("active");
    publish(&js, 1, "a").await;
    let m = tokio::time::timeout(WAIT, active.next())
        .await
        .expect("message")
        .expect("open")
        .expect("message");
    let first_pin = pin_of(&m).expect("pin");
    m.ack().await.expect("ack");
    drop(active);

    let s = js.get_stream("S").await.expect("stream");
    let err = s
        .unpin_consumer("C", "nope")
        .await
        .expect_err("unknown group");
    assert!(err.to_string().contains("10160"), "{err}");
    s.unpin_consumer("C", "jobs").await.expect("unpin");
    assert_eq!(pinned_id(&mut c).await, None, "no pin after unpin");

    // Long before the 60 s timeout, a new client is served with a new pin.
    let mut next = c
        .stream()
        .group("jobs")
        .expires(Duration::from_millis(300))
        .messages()
        .await
        .expect("next");
    publish(&js, 1, "b").await;
    let m = tokio::time::timeout(WAIT, next.next())
        .await
        .expect("the new client is served")
        .expect("open")
        .expect("message");
    let second = pin_of(&m).expect("pin");
    assert_ne!(second, first_pin);
    assert_eq!(pinned_id(&mut c).await, Some(second));
}
scenario!(unpin_moves_the_pin_without_waiting_for_the_timeout);

/// Overflow: a pull asking for `min_pending` is served only while the
/// consumer has at least that many messages left to deliver.
async fn overflow_pull_is_served_only_when_the_backlog_reaches_min_pending(t: &Target) {
    let (_client, js) = t.js().await;
    let c = stream_and_consumer(
        &js,
        pull::Config {
            name: Some("C".into()),
            ack_policy: AckPolicy::Explicit,
            priority_policy: PriorityPolicy::Overflow,
            priority_groups: vec!["A".into()],
            ..Default::default()
        },
    )
    .await;
    publish(&js, 3, "m").await;
    let overflow = || {
        c.fetch()
            .group("A")
            .min_pending(5)
            .max_messages(10)
            .expires(Duration::from_millis(400))
    };
    let got: Vec<_> = overflow().messages().await.expect("fetch").collect().await;
    assert!(
        got.iter().all(|m| m.is_err()) || got.is_empty(),
        "3 pending < 5: nothing delivered, got {} messages",
        got.iter().filter(|m| m.is_ok()).count()
    );
    publish(&js, 3, "n").await;
    // 6 pending: served while at least 5 are left (counting the one at hand).
    let got: Vec<_> = overflow()
        .messages()
        .await
        .expect("fetch")
        .filter_map(|m| async move { m.ok() })
        .collect()
        .await;
    assert_eq!(got.len(), 2, "delivered while 6 and 5 were pending");
    // A pull of the group without limits takes the rest.
    let rest: Vec<_> = c
        .fetch()
        .group("A")
        .max_messages(10)
        .expires(Duration::from_millis(400))
        .messages()
        .await
        .expect("fetch")
        .filter_map(|m| async move { m.ok() })
        .collect()
        .await;
    assert_eq!(rest.len(), 4);
}
scenario!(overflow_pull_is_served_only_when_the_backlog_reaches_min_pending);

/// Prioritized: of two waiting pulls, the one with the lower `priority`
/// value is served first.
async fn prioritized_serves_the_lowest_priority_value_first(t: &Target) {
    let (_client, js) = t.js().await;
    let c = stream_and_consumer(
        &js,
        pull::Config {
            name: Some("C".into()),
            ack_policy: AckPolicy::Explicit,
            priority_policy: PriorityPolicy::Prioritized,
            priority_groups: vec!["A".into()],
            ..Default::default()
        },
    )
    .await;
    let fetch = |p: usize| {
        c.fetch()
            .group("A")
            .priority(p)
            .max_messages(1)
            .expires(Duration::from_millis(800))
            .messages()
    };
    let mut low = fetch(7).await.expect("fetch 7");
    let mut high = fetch(2).await.expect("fetch 2");
    // Both requests are at the server before the message exists.
    tokio::time::sleep(Duration::from_millis(100)).await;
    publish(&js, 1, "m").await;
    let m = tokio::time::timeout(WAIT, high.next())
        .await
        .expect("priority 2 is served")
        .expect("open")
        .expect("message");
    assert_eq!(m.payload.as_ref(), b"m0");
    let other = low.next().await;
    assert!(
        !matches!(other, Some(Ok(_))),
        "priority 7 gets nothing: {other:?}"
    );
}
scenario!(prioritized_serves_the_lowest_priority_value_first);
