//! Fast-ingest batch publishing at the wrong moments, driven by async-nats
//! connections (async-nats 0.51 has `allow_batched` in its stream config
//! but no fast-batch publisher, so the reply subjects are written here;
//! nats.js's publisher runs in `compat_other_clients.rs`):
//! - a restart between flow acks: every message a flow ack covered is
//!   still there, and the batch, held only in memory, is then unknown;
//! - a publisher that disconnects mid-batch: what it sent is stored, and
//!   the batch goes on from another connection (batches are keyed by id,
//!   not by connection), on ours as on nats-server 2.15.1.

use std::time::Duration;

use async_nats::jetstream;
use bus_embedded_server::jetstream::JetStreamConfig;
use bus_embedded_server::{ServerConfig, start};
use futures::StreamExt;
use nats_test_server::NatsServer;
use serde_json::Value;

/// `$JS.API.<api>` with a JSON body, the reply as JSON.
async fn api(c: &async_nats::Client, api: &str, body: Value) -> Value {
    let m = c
        .request(format!("$JS.API.{api}"), body.to_string().into())
        .await
        .expect("api request");
    serde_json::from_slice(&m.payload).expect("api JSON")
}

/// A stream with `allow_batched` (async-nats has the field only behind
/// its `server_2_14` feature, so the request is written out).
async fn fast_stream(url: &str, name: &str, subjects: &str) {
    let c = async_nats::connect(url).await.expect("connect");
    let _ = api(&c, &format!("STREAM.DELETE.{name}"), Value::Null).await;
    let body = serde_json::json!({"name": name, "subjects": [subjects], "allow_batched": true});
    let info = api(&c, &format!("STREAM.CREATE.{name}"), body).await;
    assert_eq!(info["config"]["allow_batched"], true, "{info}");
}

/// Publishes batch message `seq` of `id` with reply
/// `<prefix>.<id>.<flow>.fail.<seq>.<op>.$FI`.
async fn send(c: &async_nats::Client, prefix: &str, id: &str, flow: u16, seq: u64, op: u8) {
    c.publish_with_reply(
        "fb.x",
        format!("{prefix}.{id}.{flow}.fail.{seq}.{op}.$FI"),
        format!("{id}-{seq}").into(),
    )
    .await
    .expect("publish");
}

/// The next JSON reply on `sub`, within 5 s.
async fn next_json(sub: &mut async_nats::Subscriber) -> Value {
    let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("a reply within 5 s")
        .expect("subscription open");
    serde_json::from_slice(&m.payload).expect("JSON reply")
}

async fn bodies(url: &str, stream: &str) -> Vec<String> {
    let c = async_nats::connect(url).await.expect("connect");
    let js = jetstream::new(c);
    let mut s = js.get_stream(stream).await.expect("stream");
    let last = s.info().await.expect("info").state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        let m = s.get_raw_message(seq).await.expect("message");
        out.push(String::from_utf8_lossy(&m.payload).into_owned());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_acked_messages_survive_a_restart_and_the_batch_is_then_unknown() {
    let store = tempfile::tempdir().expect("tempdir");
    let config = || ServerConfig {
        port: 0,
        jetstream: Some(JetStreamConfig {
            store_dir: store.path().to_owned(),
            ..Default::default()
        }),
        ..ServerConfig::default()
    };
    let server = start(config()).await.expect("ours starts");
    let url = format!("nats://{}", server.addr());
    fast_stream(&url, "FB", "fb.>").await;
    let c = async_nats::connect(&url).await.expect("connect");
    let prefix = c.new_inbox();
    let mut sub = c.subscribe(format!("{prefix}.>")).await.expect("sub");
    send(&c, &prefix, "r1", 10, 1, 0).await;
    assert_eq!(
        next_json(&mut sub).await,
        serde_json::json!({"type": "ack", "seq": 0, "msgs": 10})
    );
    for seq in 2..=30 {
        send(&c, &prefix, "r1", 10, seq, 1).await;
    }
    let mut acked = Vec::new();
    while acked.last() != Some(&30) {
        let v = next_json(&mut sub).await;
        assert_eq!(v["type"], "ack", "{v}");
        acked.push(v["seq"].as_u64().expect("seq"));
    }
    assert_eq!(acked, [10, 20, 30], "a flow ack every 10 messages");
    drop(sub);
    drop(c);
    server.shutdown(Duration::from_secs(2)).await;

    let server = start(config()).await.expect("ours restarts");
    let url = format!("nats://{}", server.addr());
    let want: Vec<String> = (1..=30).map(|s| format!("r1-{s}")).collect();
    assert_eq!(
        bodies(&url, "FB").await,
        want,
        "every flow-acked message, in order"
    );
    let c = async_nats::connect(&url).await.expect("connect");
    let info = api(&c, "STREAM.INFO.FB", Value::Null).await;
    assert_eq!(
        info["config"]["allow_batched"], true,
        "the option survives: {info}"
    );
    let prefix = c.new_inbox();
    let mut sub = c.subscribe(format!("{prefix}.>")).await.expect("sub");
    send(&c, &prefix, "r1", 10, 31, 1).await;
    let v = next_json(&mut sub).await;
    assert_eq!(
        v["error"]["err_code"], 10208,
        "batch state is not kept: {v}"
    );
    server.shutdown(Duration::from_secs(2)).await;
}

/// A batch started on one connection that drops, finished on another.
async fn disconnect_story(url: &str) -> (Value, Vec<String>) {
    fast_stream(url, "FD", "fb.>").await;
    let a = async_nats::connect(url).await.expect("connect a");
    let prefix = a.new_inbox();
    let mut sub = a.subscribe(format!("{prefix}.>")).await.expect("sub");
    send(&a, &prefix, "d1", 5, 1, 0).await;
    let first = next_json(&mut sub).await;
    assert_eq!(first["type"], "ack", "{first}");
    for seq in 2..=5 {
        send(&a, &prefix, "d1", 5, seq, 1).await;
    }
    // The flow ack for 5 arrives; then the connection goes away.
    let v = next_json(&mut sub).await;
    assert_eq!(
        (v["type"].as_str(), v["seq"].as_u64()),
        (Some("ack"), Some(5))
    );
    a.flush().await.expect("flush");
    drop(sub);
    drop(a);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let b = async_nats::connect(url).await.expect("connect b");
    let prefix = b.new_inbox();
    let mut sub = b.subscribe(format!("{prefix}.>")).await.expect("sub");
    send(&b, &prefix, "d1", 5, 6, 1).await;
    send(&b, &prefix, "d1", 5, 7, 2).await;
    let ack = next_json(&mut sub).await;
    (ack, bodies(url, "FD").await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_survives_its_publisher_disconnecting_like_nats_server() {
    let reference = NatsServer::start().await;
    let store = tempfile::tempdir().expect("tempdir");
    let ours = start(ServerConfig {
        port: 0,
        jetstream: Some(JetStreamConfig {
            store_dir: store.path().to_owned(),
            ..Default::default()
        }),
        ..ServerConfig::default()
    })
    .await
    .expect("ours starts");
    let want = disconnect_story(&reference.url()).await;
    let got = disconnect_story(&format!("nats://{}", ours.addr())).await;
    assert_eq!(
        want.0,
        serde_json::json!({"stream": "FD", "seq": 7, "batch": "d1", "count": 7})
    );
    assert_eq!(got, want);
    ours.shutdown(Duration::from_secs(2)).await;
}
