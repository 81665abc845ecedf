//! Pull requests that overlap on one inbox, as async-nats's
//! `consumer.messages()` sends them: it asks for the next batch before the
//! current one is drained, always with the same reply subject. nats-server
//! keeps every such request and serves each one in full; a server that let
//! the newer request replace the older one would deliver fewer messages
//! than asked for, and the client would sit waiting for the rest until the
//! request expired. Each scenario runs against our (in-process) server and
//! nats-server 2.15.1.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
mod js_target;
use js_target::both;

/// Bound on any single wait for something that must happen.
const WAIT: Duration = Duration::from_secs(10);

/// A stream `OV` on `ov.>` and a durable pull consumer `C` (ack none).
async fn stream_and_consumer(url: &str) -> (async_nats::Client, jetstream::Context) {
    let client = async_nats::connect(url).await.expect("connect");
    let js = jetstream::new(client.clone());
    let s = js
        .create_stream(stream::Config {
            name: "OV".into(),
            subjects: vec!["ov.>".into()],
            ..Default::default()
        })
        .await
        .expect("stream");
    s.create_consumer(consumer::pull::Config {
        durable_name: Some("C".into()),
        ack_policy: consumer::AckPolicy::None,
        ..Default::default()
    })
    .await
    .expect("consumer");
    (client, js)
}

/// Two requests of 3 on the same inbox wait on an empty stream; then 10
/// messages arrive: both requests are served, 6 messages in all, in stream
/// order, and nothing more.
async fn two_waiting_requests_on_one_inbox_are_both_served(url: &str) {
    let (client, js) = stream_and_consumer(url).await;
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.expect("subscribe");
    for _ in 0..2 {
        client
            .publish_with_reply(
                "$JS.API.CONSUMER.MSG.NEXT.OV.C",
                inbox.clone(),
                r#"{"batch":3,"expires":5000000000}"#.into(),
            )
            .await
            .expect("pull request");
    }
    client.flush().await.expect("flush");
    // Both requests are waiting before anything is published.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..10 {
        js.publish("ov.x", format!("m{i}").into_bytes().into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
    let mut got = Vec::new();
    while got.len() < 6 {
        let m = tokio::time::timeout(WAIT, sub.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of 6 messages arrived: {got:?}", got.len()))
            .expect("subscription ended");
        assert!(m.status.is_none(), "a status instead of a message: {m:?}");
        got.push(String::from_utf8_lossy(&m.payload).into_owned());
    }
    assert_eq!(got, ["m0", "m1", "m2", "m3", "m4", "m5"]);
    // Nothing beyond the 6 asked for.
    if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), sub.next()).await {
        panic!("a seventh message arrived: {m:?}");
    }
}
both!(two_waiting_requests_on_one_inbox_are_both_served);

/// A request of 5 is partly served (3 messages are there); a second request
/// of 5 on the same inbox arrives before the first is filled: the first
/// still gets its last 2, the second its 5, as messages come in.
async fn a_partly_served_request_keeps_its_remainder_when_another_arrives(url: &str) {
    let (client, js) = stream_and_consumer(url).await;
    for i in 0..3 {
        js.publish("ov.x", format!("m{i}").into_bytes().into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.expect("subscribe");
    let request = r#"{"batch":5,"expires":5000000000}"#;
    client
        .publish_with_reply(
            "$JS.API.CONSUMER.MSG.NEXT.OV.C",
            inbox.clone(),
            request.into(),
        )
        .await
        .expect("pull request");
    let mut got = Vec::new();
    while got.len() < 3 {
        let m = tokio::time::timeout(WAIT, sub.next())
            .await
            .expect("the first 3 messages")
            .expect("subscription ended");
        got.push(String::from_utf8_lossy(&m.payload).into_owned());
    }
    client
        .publish_with_reply(
            "$JS.API.CONSUMER.MSG.NEXT.OV.C",
            inbox.clone(),
            request.into(),
        )
        .await
        .expect("second pull request");
    client.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 3..12 {
        js.publish("ov.x", format!("m{i}").into_bytes().into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
    while got.len() < 10 {
        let m = tokio::time::timeout(WAIT, sub.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of 10 messages arrived: {got:?}", got.len()))
            .expect("subscription ended");
        assert!(m.status.is_none(), "a status instead of a message: {m:?}");
        got.push(String::from_utf8_lossy(&m.payload).into_owned());
    }
    let want: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want);
}
both!(a_partly_served_request_keeps_its_remainder_when_another_arrives);

/// async-nats's `messages()` with small batches, which always has a second
/// request in flight before the first is used up, reads 2,000 messages
/// without stalling (a lost remainder would leave it waiting for the
/// request's 30 s expiry).
async fn overlapping_batches_of_messages_stream_without_stalls(url: &str) {
    let (_client, js) = stream_and_consumer(url).await;
    let mut acks = Vec::new();
    for i in 0..2000 {
        acks.push(
            js.publish("ov.x", format!("m{i}").into_bytes().into())
                .await
                .expect("publish"),
        );
    }
    for a in acks {
        a.await.expect("ack");
    }
    let c: consumer::PullConsumer = js
        .get_consumer_from_stream("C", "OV")
        .await
        .expect("consumer");
    let mut messages = c
        .stream()
        .max_messages_per_batch(50)
        .messages()
        .await
        .expect("messages");
    for i in 0..2000 {
        let m = tokio::time::timeout(Duration::from_secs(5), messages.next())
            .await
            .unwrap_or_else(|_| panic!("stalled after {i} messages"))
            .expect("stream ended")
            .expect("message");
        assert_eq!(m.payload, format!("m{i}").as_bytes());
    }
}
both!(overlapping_batches_of_messages_stream_without_stalls);
