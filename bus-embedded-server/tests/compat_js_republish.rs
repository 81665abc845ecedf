//! Stream `subject_transform` and `republish` (and a key-value bucket's
//! `republish`) through async-nats's own API, against our server and, to
//! prove each scenario, against nats-server 2.15.1.

use std::time::Duration;

use async_nats::jetstream::{
    self, kv,
    stream::{self, Republish, SubjectTransform},
};
use bus_embedded_server::{ServerConfig, jetstream::JetStreamConfig, start};
use futures::StreamExt;
use js_target::{Target, scenario};

mod js_target;

/// Bound on any single wait for something that must happen.
const WAIT: Duration = Duration::from_secs(10);

fn header(m: &async_nats::Message, name: &str) -> Option<String> {
    m.headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.as_str().to_owned())
}

async fn next(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a message in time")
        .expect("subscription open")
}

/// A client watching one subscription that covers both the republish
/// destination and its own reply subject sees the republished copy first,
/// then the PubAck, with the stream's headers; `Nats-Last-Sequence` lets
/// it notice a gap per subject.
async fn republished_copy_arrives_before_the_pub_ack_with_the_stream_headers(t: &Target) {
    let (client, js) = t.js().await;
    js.create_stream(stream::Config {
        name: "S".into(),
        subjects: vec!["s.>".into()],
        republish: Some(Republish {
            source: "s.>".into(),
            destination: "rp.msg.>".into(),
            headers_only: false,
        }),
        ..Default::default()
    })
    .await
    .expect("stream with republish");
    let mut sub = client.subscribe("rp.>").await.expect("subscribe");
    client.flush().await.expect("flush");
    for (i, (subject, body)) in [("s.a", "one"), ("s.b", "two"), ("s.a", "three")]
        .into_iter()
        .enumerate()
    {
        client
            .publish_with_reply(subject, format!("rp.ack.{i}"), body.into())
            .await
            .expect("publish");
        let copy = next(&mut sub).await;
        // `s.>` to `rp.msg.>`: the tokens after `s.` follow.
        let tail = subject.trim_start_matches("s.");
        assert_eq!(copy.subject.as_str(), format!("rp.msg.{tail}"));
        assert_eq!(&copy.payload[..], body.as_bytes());
        assert_eq!(header(&copy, "Nats-Stream").as_deref(), Some("S"));
        assert_eq!(header(&copy, "Nats-Subject").as_deref(), Some(subject));
        let seq = (i + 1).to_string();
        assert_eq!(header(&copy, "Nats-Sequence"), Some(seq.clone()));
        let last = match i {
            2 => "1",
            _ => "0",
        };
        assert_eq!(header(&copy, "Nats-Last-Sequence").as_deref(), Some(last));
        assert!(header(&copy, "Nats-Time-Stamp").is_some_and(|ts| ts.ends_with('Z')));
        let ack = next(&mut sub).await;
        assert_eq!(ack.subject.as_str(), format!("rp.ack.{i}"));
        let v: serde_json::Value = serde_json::from_slice(&ack.payload).expect("ack json");
        assert_eq!(v["seq"], serde_json::json!(i + 1));
    }
}
scenario!(republished_copy_arrives_before_the_pub_ack_with_the_stream_headers);

/// A stream with a subject transform stores `orders.<id>` as
/// `store.<id>.orders`, and republishes headers only to `notify.<id>`.
async fn transformed_subjects_are_stored_and_republished_headers_only(t: &Target) {
    let (client, js) = t.js().await;
    let mut s = js
        .create_stream(stream::Config {
            name: "T".into(),
            subjects: vec!["orders.*".into()],
            subject_transform: Some(SubjectTransform {
                source: "orders.*".into(),
                destination: "store.$1.orders".into(),
            }),
            republish: Some(Republish {
                source: "store.*.orders".into(),
                destination: "notify.{{wildcard(1)}}".into(),
                headers_only: true,
            }),
            ..Default::default()
        })
        .await
        .expect("stream with transform");
    let mut sub = client.subscribe("notify.>").await.expect("subscribe");
    client.flush().await.expect("flush");
    js.publish("orders.42", "payload of 21 bytes..".into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    let copy = next(&mut sub).await;
    assert_eq!(copy.subject.as_str(), "notify.42");
    assert!(copy.payload.is_empty());
    assert_eq!(
        header(&copy, "Nats-Subject").as_deref(),
        Some("store.42.orders")
    );
    assert_eq!(header(&copy, "Nats-Msg-Size").as_deref(), Some("21"));
    let stored = s
        .get_last_raw_message_by_subject("store.42.orders")
        .await
        .expect("stored under the transformed subject");
    assert_eq!(stored.sequence, 1);
    let info = s.info().await.expect("info");
    let tr = info
        .config
        .subject_transform
        .clone()
        .expect("transform kept");
    assert_eq!(tr.destination, "store.$1.orders");
}
scenario!(transformed_subjects_are_stored_and_republished_headers_only);

/// A key-value bucket created with `republish` (async-nats's `kv::Config`):
/// a client that only subscribes to the republished subjects sees puts
/// and deletes with the bucket's stream headers and the KV operation.
async fn kv_bucket_republish_reaches_a_plain_subscriber(t: &Target) {
    let (client, js) = t.js().await;
    let kv = js
        .create_key_value(kv::Config {
            bucket: "profiles".into(),
            history: 3,
            republish: Some(Republish {
                source: "$KV.profiles.>".into(),
                destination: "cache.profiles.>".into(),
                headers_only: false,
            }),
            ..Default::default()
        })
        .await
        .expect("bucket with republish");
    let mut sub = client
        .subscribe("cache.profiles.>")
        .await
        .expect("subscribe");
    client.flush().await.expect("flush");
    kv.put("alice", "v1".into()).await.expect("put");
    kv.put("alice", "v2".into()).await.expect("put");
    kv.delete("alice").await.expect("delete");
    let first = next(&mut sub).await;
    assert_eq!(first.subject.as_str(), "cache.profiles.alice");
    assert_eq!(&first.payload[..], b"v1");
    assert_eq!(
        header(&first, "Nats-Stream").as_deref(),
        Some("KV_profiles")
    );
    assert_eq!(
        header(&first, "Nats-Subject").as_deref(),
        Some("$KV.profiles.alice")
    );
    let second = next(&mut sub).await;
    assert_eq!(&second.payload[..], b"v2");
    assert_eq!(header(&second, "Nats-Last-Sequence").as_deref(), Some("1"));
    let del = next(&mut sub).await;
    assert_eq!(header(&del, "KV-Operation").as_deref(), Some("DEL"));
    assert_eq!(header(&del, "Nats-Sequence").as_deref(), Some("3"));
    assert_eq!(header(&del, "Nats-Last-Sequence").as_deref(), Some("2"));
    let status = kv.status().await.expect("status");
    assert_eq!(
        status
            .info
            .config
            .republish
            .map(|r| r.destination)
            .as_deref(),
        Some("cache.profiles.>")
    );
}
scenario!(kv_bucket_republish_reaches_a_plain_subscriber);

/// A stream that republishes into its own subjects would loop: refused
/// with nats-server's error.
async fn a_republish_into_the_streams_own_subjects_is_refused(t: &Target) {
    let (_client, js) = t.js().await;
    let err = js
        .create_stream(stream::Config {
            name: "L".into(),
            subjects: vec!["l.>".into()],
            republish: Some(Republish {
                source: ">".into(),
                destination: "l.again.>".into(),
                headers_only: false,
            }),
            ..Default::default()
        })
        .await
        .expect_err("a cycle is refused");
    let text = err.to_string();
    assert!(
        text.contains("republish destination forms a cycle"),
        "{text}"
    );
}
scenario!(a_republish_into_the_streams_own_subjects_is_refused);

/// Republished copies of a file stream go out only once the message is
/// durable, and a restart neither loses the transform nor republishes
/// the stored messages again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn republish_and_transform_survive_a_restart_without_republishing_old_messages() {
    let dir = tempfile::tempdir().expect("temp store dir");
    let config = || ServerConfig {
        port: 0,
        jetstream: Some(JetStreamConfig {
            store_dir: dir.path().to_path_buf(),
            ..Default::default()
        }),
        ..ServerConfig::default()
    };
    let handle = start(config()).await.expect("start");
    let c = async_nats::connect(handle.client_url())
        .await
        .expect("connect");
    let js = jetstream::new(c.clone());
    js.create_stream(stream::Config {
        name: "P".into(),
        subjects: vec!["p.*".into()],
        subject_transform: Some(SubjectTransform {
            source: "p.*".into(),
            destination: "q.$1".into(),
        }),
        republish: Some(Republish {
            source: "q.*".into(),
            destination: "out.$1".into(),
            headers_only: false,
        }),
        ..Default::default()
    })
    .await
    .expect("stream");
    js.publish("p.1", "before".into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    handle.shutdown(Duration::from_secs(2)).await;

    let handle = start(config()).await.expect("restart");
    let c = async_nats::connect(handle.client_url())
        .await
        .expect("connect");
    let js = jetstream::new(c.clone());
    let mut sub = c.subscribe("out.>").await.expect("subscribe");
    c.flush().await.expect("flush");
    js.publish("p.1", "after".into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    let copy = next(&mut sub).await;
    assert_eq!(&copy.payload[..], b"after");
    assert_eq!(header(&copy, "Nats-Subject").as_deref(), Some("q.1"));
    assert_eq!(header(&copy, "Nats-Sequence").as_deref(), Some("2"));
    assert_eq!(header(&copy, "Nats-Last-Sequence").as_deref(), Some("1"));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), sub.next())
            .await
            .is_err(),
        "only the new message is republished"
    );
    handle.shutdown(Duration::from_secs(2)).await;
}
