//! A push consumer with a backlog far larger than its subscriber's
//! `max_pending` (issue #15 item 3, js-push): the consumer hands the
//! subscriber's connection a buffer's worth at a time and goes on as it is
//! written, so every message arrives, in order, and the connection is not
//! closed as a slow consumer. (A delivery round used to queue the whole
//! backlog at once.) async-nats 0.51 against our server in-process.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use bus_embedded_server::{ServerConfig, jetstream::JetStreamConfig, start};
use bytes::Bytes;
use futures::StreamExt;

/// Bound on any single wait for something that must happen.
const WAIT: Duration = Duration::from_secs(20);
/// The subscriber connection's output limit: far below the backlog (and
/// over twice the 256 KiB a push round stops at, which a write in
/// progress plus a filled buffer can reach).
const MAX_PENDING: usize = 1024 * 1024;
/// Messages stored before the consumer starts (about 5 MiB on the wire).
const BACKLOG: u64 = 20_000;

async fn backlog_arrives_whole(flow_control: bool) {
    let dir = tempfile::tempdir().expect("temp store dir");
    let server = start(ServerConfig {
        port: 0,
        max_pending: MAX_PENDING,
        jetstream: Some(JetStreamConfig {
            store_dir: dir.path().to_path_buf(),
            ..Default::default()
        }),
        ..ServerConfig::default()
    })
    .await
    .expect("our server starts with JetStream");
    let client = async_nats::connect(server.client_url())
        .await
        .expect("connect");
    let js = jetstream::new(client.clone());
    let stream = js
        .create_stream(stream::Config {
            name: "BACKLOG".into(),
            subjects: vec!["backlog.>".into()],
            ..Default::default()
        })
        .await
        .expect("stream");
    let payload = Bytes::from(vec![b'x'; 128]);
    let mut acks = Vec::new();
    for i in 0..BACKLOG {
        let ack = js
            .publish(format!("backlog.{}", i % 7), payload.clone())
            .await
            .expect("publish");
        acks.push(ack);
        if acks.len() == 1000 {
            for ack in acks.drain(..) {
                ack.await.expect("ack");
            }
        }
    }
    for ack in acks.drain(..) {
        ack.await.expect("ack");
    }
    let consumer = stream
        .create_consumer(consumer::push::Config {
            deliver_subject: client.new_inbox(),
            ack_policy: consumer::AckPolicy::None,
            flow_control,
            idle_heartbeat: if flow_control {
                Duration::from_secs(5)
            } else {
                Duration::ZERO
            },
            ..Default::default()
        })
        .await
        .expect("push consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut next = 1;
    while next <= BACKLOG {
        let msg = tokio::time::timeout(WAIT, messages.next())
            .await
            .unwrap_or_else(|_| panic!("message {next} not within {WAIT:?}"))
            .expect("stream ended")
            .expect("message");
        let info = msg.info().expect("a JetStream message");
        assert_eq!(info.stream_sequence, next, "in order, none missing");
        assert_eq!(msg.payload.len(), 128);
        next += 1;
    }
    assert_eq!(
        server
            .stats()
            .slow_consumers
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "no connection was cut off as a slow consumer"
    );
    assert_eq!(
        client.connection_state(),
        async_nats::connection::State::Connected
    );
    // The connection still works both ways.
    client.flush().await.expect("flush after the backlog");
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_backlog_larger_than_max_pending_arrives_whole_without_a_slow_consumer() {
    backlog_arrives_whole(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_controlled_push_backlog_larger_than_max_pending_arrives_whole() {
    backlog_arrives_whole(true).await;
}
