//! async-nats's JetStream, KV and object store APIs, unchanged, against our
//! server.
//!
//! Every scenario is a plain async function taking a [`Target`]; the
//! `scenario!` macro expands it into a module with one test against our
//! server and, where it is cheap, one against the reference nats-server,
//! which proves the scenario itself (e.g.
//! `pull_fetch_with_explicit_acks::against_our_server` and
//! `pull_fetch_with_explicit_acks::against_nats_server`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{
    self, AckKind, Context,
    consumer::{self, AckPolicy, DeliverPolicy, pull, push},
    context::PublishErrorKind,
    kv, object_store,
    stream::{self, DiscardPolicy, StorageType},
};
use base64::Engine;
use bus_embedded_server::{ServerConfig, ServerHandle, jetstream::JetStreamConfig, start};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use nats_test_server::{NatsServer, ServerOptions};
use serde_json::{Value, json};
use sha2::Digest;

/// Bound on any single wait for something that must happen.
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------

/// The server a scenario runs against.
enum Target {
    Ours {
        handle: Option<ServerHandle>,
        dir: tempfile::TempDir,
    },
    Reference(NatsServer),
}

async fn start_ours(dir: &std::path::Path) -> ServerHandle {
    start(ServerConfig {
        port: 0,
        jetstream: Some(JetStreamConfig {
            store_dir: dir.to_path_buf(),
            ..Default::default()
        }),
        ..ServerConfig::default()
    })
    .await
    .expect("our server starts with JetStream")
}

impl Target {
    async fn ours() -> Self {
        let dir = tempfile::tempdir().expect("temp store dir");
        let handle = start_ours(dir.path()).await;
        Target::Ours {
            handle: Some(handle),
            dir,
        }
    }

    async fn reference() -> Self {
        Target::Reference(
            NatsServer::start_with(ServerOptions {
                jetstream: true,
                ..ServerOptions::default()
            })
            .await,
        )
    }

    fn url(&self) -> String {
        match self {
            Target::Ours { handle, .. } => handle.as_ref().expect("server running").client_url(),
            Target::Reference(s) => s.url(),
        }
    }

    async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url()).await.expect("connect")
    }

    async fn js(&self) -> (async_nats::Client, Context) {
        let c = self.client().await;
        let js = jetstream::new(c.clone());
        (c, js)
    }

    /// Stops the server cleanly and starts it again on the same store.
    async fn restart(&mut self) {
        match self {
            Target::Ours { handle, dir } => {
                if let Some(h) = handle.take() {
                    h.shutdown(Duration::from_secs(2)).await;
                }
                *handle = Some(start_ours(dir.path()).await);
            }
            Target::Reference(s) => {
                s.stop().await;
                s.restart().await;
            }
        }
    }

    async fn stop(self) {
        match self {
            Target::Ours { handle, dir } => {
                if let Some(h) = handle {
                    h.shutdown(Duration::from_secs(2)).await;
                }
                drop(dir);
            }
            Target::Reference(s) => drop(s),
        }
    }
}

/// One module per scenario: `against_our_server`, and `against_nats_server`
/// unless the scenario is marked `ours_only`.
macro_rules! scenario {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn against_our_server() {
                let mut t = super::Target::ours().await;
                super::$name(&mut t).await;
                t.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn against_nats_server() {
                let mut t = super::Target::reference().await;
                super::$name(&mut t).await;
                t.stop().await;
            }
        }
    };
    ($name:ident, ours_only) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn against_our_server() {
                let mut t = super::Target::ours().await;
                super::$name(&mut t).await;
                t.stop().await;
            }
        }
    };
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

async fn within<F: std::future::IntoFuture>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(WAIT, f.into_future())
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {WAIT:?}"))
}

/// A core request to `$JS.API.<api>`, its JSON answer.
async fn api(c: &async_nats::Client, api: &str, body: Value) -> Value {
    let msg = within(
        api,
        c.request(format!("$JS.API.{api}"), Bytes::from(body.to_string())),
    )
    .await
    .unwrap_or_else(|e| panic!("$JS.API.{api}: {e}"));
    serde_json::from_slice(&msg.payload).expect("API answers JSON")
}

/// A publish as a core request with headers, the JSON PubAck (or error).
async fn raw_publish(
    c: &async_nats::Client,
    subject: &str,
    headers: &[(&str, &str)],
    payload: &str,
) -> Value {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.insert(*k, *v);
    }
    let msg = within(
        "raw publish",
        c.request_with_headers(subject.to_owned(), h, Bytes::from(payload.to_owned())),
    )
    .await
    .expect("publish answered");
    serde_json::from_slice(&msg.payload).expect("PubAck is JSON")
}

fn err_code(v: &Value) -> u64 {
    v.pointer("/error/err_code")
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("expected an error answer, got {v}"))
}

async fn publish(js: &Context, subject: &str, payload: impl Into<Bytes>) -> u64 {
    within(
        "publish ack",
        js.publish(subject.to_owned(), payload.into())
            .await
            .expect("publish sent"),
    )
    .await
    .expect("publish acknowledged")
    .sequence
}

async fn stream(js: &Context, name: &str, subjects: &[&str]) -> stream::Stream {
    js.create_stream(stream::Config {
        name: name.to_owned(),
        subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    })
    .await
    .expect("create stream")
}

async fn fill(js: &Context, subject: &str, n: usize) {
    let mut acks = Vec::with_capacity(n);
    for i in 0..n {
        acks.push(
            js.publish(subject.to_owned(), Bytes::from(i.to_string()))
                .await
                .expect("publish"),
        );
    }
    for a in acks {
        within("ack", a).await.expect("acknowledged");
    }
}

async fn pull_consumer(s: &stream::Stream, config: pull::Config) -> consumer::PullConsumer {
    s.create_consumer(config).await.expect("create consumer")
}

/// `fetch()` (no wait): what is available now.
async fn fetch_now(c: &consumer::PullConsumer, max: usize) -> Vec<jetstream::Message> {
    let batch = c.fetch().max_messages(max).messages().await.expect("fetch");
    within("fetch", batch.try_collect::<Vec<_>>())
        .await
        .expect("fetch messages")
}

/// A pull request with `expires`: up to `max` messages.
async fn batch(
    c: &consumer::PullConsumer,
    max: usize,
    expires: Duration,
) -> Vec<jetstream::Message> {
    let batch = c
        .batch()
        .max_messages(max)
        .expires(expires)
        .messages()
        .await
        .expect("batch");
    within("batch", batch.try_collect::<Vec<_>>())
        .await
        .expect("batch messages")
}

fn payloads(msgs: &[jetstream::Message]) -> Vec<String> {
    msgs.iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect()
}

fn sseq(m: &jetstream::Message) -> u64 {
    m.info().expect("ack reply parses").stream_sequence
}

fn delivered(m: &jetstream::Message) -> i64 {
    m.info().expect("ack reply parses").delivered
}

/// Acks `m` with `kind` as a request, so the server has applied it when
/// this returns (`double_ack` for the other kinds).
async fn confirm(c: &async_nats::Client, m: &jetstream::Message, kind: AckKind) {
    let reply = m
        .reply
        .clone()
        .expect("a JetStream message has an ack subject");
    within("ack confirmation", c.request(reply, Bytes::from(kind)))
        .await
        .expect("ack confirmed");
}

async fn ack_all(msgs: &[jetstream::Message]) {
    for m in msgs {
        within("double ack", m.double_ack())
            .await
            .expect("ack confirmed");
    }
}

// ---------------------------------------------------------------------------
// Publishing
// ---------------------------------------------------------------------------

async fn publish_acks_carry_stream_and_sequence(t: &mut Target) {
    let (c, js) = t.js().await;
    stream(&js, "ORDERS", &["orders.>"]).await;
    for expected in 1..=3u64 {
        let ack = within(
            "ack",
            js.publish(format!("orders.{expected}"), "x".into())
                .await
                .expect("publish"),
        )
        .await
        .expect("ack");
        assert_eq!(ack.stream, "ORDERS");
        assert_eq!(ack.sequence, expected);
        assert!(!ack.duplicate);
    }
    // A subject no stream captures: no responders, which async-nats reports
    // as "no stream".
    let err = js
        .publish("nowhere", "x".into())
        .await
        .expect("publish sent")
        .await
        .expect_err("no stream captures the subject");
    assert_eq!(err.kind(), PublishErrorKind::StreamNotFound);
    // The raw PubAck JSON.
    let ack = raw_publish(&c, "orders.raw", &[], "y").await;
    assert_eq!(ack["stream"], "ORDERS");
    assert_eq!(ack["seq"], 4);
}
scenario!(publish_acks_carry_stream_and_sequence);

async fn msg_id_duplicate_is_flagged_and_not_stored(t: &mut Target) {
    let (c, js) = t.js().await;
    let mut s = stream(&js, "DEDUP", &["dedup.>"]).await;
    let first = raw_publish(&c, "dedup.a", &[("Nats-Msg-Id", "m-1")], "one").await;
    assert_eq!(first["seq"], 1);
    assert!(first.get("duplicate").is_none() || first["duplicate"] == false);
    let again = raw_publish(&c, "dedup.a", &[("Nats-Msg-Id", "m-1")], "one").await;
    assert_eq!(again["seq"], 1, "{again}");
    assert_eq!(again["duplicate"], true, "{again}");
    let other = raw_publish(&c, "dedup.a", &[("Nats-Msg-Id", "m-2")], "two").await;
    assert_eq!(other["seq"], 2);
    // Through async-nats too.
    let mut h = HeaderMap::new();
    h.insert("Nats-Msg-Id", "m-2");
    let ack = within(
        "ack",
        js.publish_with_headers("dedup.a", h, "two".into())
            .await
            .expect("publish"),
    )
    .await
    .expect("ack");
    assert!(ack.duplicate);
    assert_eq!(ack.sequence, 2);
    assert_eq!(s.info().await.expect("info").state.messages, 2);
}
scenario!(msg_id_duplicate_is_flagged_and_not_stored);

/// Message ids far longer than usual (the window keeps a digest of them)
/// still deduplicate exactly: the same long id twice is one message, two
/// long ids differing in their last byte are two.
async fn long_msg_ids_deduplicate_exactly(t: &mut Target) {
    let (c, js) = t.js().await;
    let mut s = stream(&js, "LONGID", &["long.>"]).await;
    let base = "x".repeat(20_000);
    let (a, b) = (format!("{base}a"), format!("{base}b"));
    let first = raw_publish(&c, "long.a", &[("Nats-Msg-Id", &a)], "one").await;
    assert_eq!(first["seq"], 1, "{first}");
    let again = raw_publish(&c, "long.a", &[("Nats-Msg-Id", &a)], "one").await;
    assert_eq!(
        (again["seq"].clone(), again["duplicate"].clone()),
        (1.into(), true.into())
    );
    let other = raw_publish(&c, "long.a", &[("Nats-Msg-Id", &b)], "two").await;
    assert_eq!(other["seq"], 2, "{other}");
    assert_eq!(s.info().await.expect("info").state.messages, 2);
}
scenario!(long_msg_ids_deduplicate_exactly);

async fn expected_sequence_headers_reject_conflicts(t: &mut Target) {
    let (c, js) = t.js().await;
    stream(&js, "EXP", &["exp.>"]).await;
    publish(&js, "exp.a", "1").await; // seq 1
    publish(&js, "exp.b", "2").await; // seq 2

    let ok = raw_publish(&c, "exp.a", &[("Nats-Expected-Last-Sequence", "2")], "3").await;
    assert_eq!(ok["seq"], 3, "{ok}");
    let bad = raw_publish(&c, "exp.a", &[("Nats-Expected-Last-Sequence", "2")], "x").await;
    assert_eq!(err_code(&bad), 10071, "{bad}");
    assert_eq!(bad["error"]["code"], 400, "{bad}");

    // Last sequence of exp.b is 2; of exp.a is 3.
    let ok = raw_publish(
        &c,
        "exp.b",
        &[("Nats-Expected-Last-Subject-Sequence", "2")],
        "4",
    )
    .await;
    assert_eq!(ok["seq"], 4, "{ok}");
    let bad = raw_publish(
        &c,
        "exp.a",
        &[("Nats-Expected-Last-Subject-Sequence", "1")],
        "x",
    )
    .await;
    assert_eq!(err_code(&bad), 10071, "{bad}");
    // 0 = the subject must have no message yet.
    let ok = raw_publish(
        &c,
        "exp.c",
        &[("Nats-Expected-Last-Subject-Sequence", "0")],
        "5",
    )
    .await;
    assert_eq!(ok["seq"], 5, "{ok}");
    let bad = raw_publish(
        &c,
        "exp.c",
        &[("Nats-Expected-Last-Subject-Sequence", "0")],
        "x",
    )
    .await;
    assert_eq!(err_code(&bad), 10071, "{bad}");

    let bad = raw_publish(&c, "exp.a", &[("Nats-Expected-Stream", "OTHER")], "x").await;
    assert_eq!(err_code(&bad), 10060, "{bad}");
    let ok = raw_publish(&c, "exp.a", &[("Nats-Expected-Stream", "EXP")], "6").await;
    assert_eq!(ok["seq"], 6, "{ok}");

    raw_publish(&c, "exp.a", &[("Nats-Msg-Id", "id-7")], "7").await;
    let bad = raw_publish(&c, "exp.a", &[("Nats-Expected-Last-Msg-Id", "nope")], "x").await;
    assert_eq!(err_code(&bad), 10070, "{bad}");
    let ok = raw_publish(&c, "exp.a", &[("Nats-Expected-Last-Msg-Id", "id-7")], "8").await;
    assert_eq!(ok["seq"], 8, "{ok}");

    // async-nats maps the conflict to its typed kind.
    let mut h = HeaderMap::new();
    h.insert("Nats-Expected-Last-Sequence", "1");
    let err = js
        .publish_with_headers("exp.a", h, "x".into())
        .await
        .expect("sent")
        .await
        .expect_err("conflict");
    assert_eq!(err.kind(), PublishErrorKind::WrongLastSequence);
}
scenario!(expected_sequence_headers_reject_conflicts);

async fn discard_new_rejects_publishes_beyond_limits(t: &mut Target) {
    let (c, js) = t.js().await;
    let mut s = js
        .create_stream(stream::Config {
            name: "FULL".into(),
            subjects: vec!["full.>".into()],
            max_messages: 2,
            discard: DiscardPolicy::New,
            ..Default::default()
        })
        .await
        .expect("create");
    publish(&js, "full.a", "1").await;
    publish(&js, "full.a", "2").await;
    let bad = raw_publish(&c, "full.a", &[], "3").await;
    assert_eq!(err_code(&bad), 10077, "{bad}");
    assert_eq!(bad["error"]["code"], 503, "{bad}");
    let state = s.info().await.expect("info").state.clone();
    assert_eq!((state.messages, state.last_sequence), (2, 2));

    let _ = js
        .create_stream(stream::Config {
            name: "FULLB".into(),
            subjects: vec!["fullb.>".into()],
            max_bytes: 200,
            discard: DiscardPolicy::New,
            ..Default::default()
        })
        .await
        .expect("create");
    let big = "z".repeat(150);
    raw_publish(&c, "fullb.a", &[], &big).await;
    let bad = raw_publish(&c, "fullb.a", &[], &big).await;
    assert_eq!(err_code(&bad), 10077, "{bad}");
    assert_eq!(
        bad["error"]["description"], "maximum bytes exceeded",
        "{bad}"
    );
}
scenario!(discard_new_rejects_publishes_beyond_limits);

async fn max_msgs_per_subject_keeps_newest(t: &mut Target) {
    let (_c, js) = t.js().await;
    let mut s = js
        .create_stream(stream::Config {
            name: "PERSUBJ".into(),
            subjects: vec!["ps.>".into()],
            max_messages_per_subject: 2,
            allow_direct: true,
            ..Default::default()
        })
        .await
        .expect("create");
    for i in 1..=5 {
        publish(&js, "ps.a", i.to_string()).await;
    }
    publish(&js, "ps.b", "b").await;
    let state = s.info().await.expect("info").state.clone();
    assert_eq!(state.messages, 3);
    assert_eq!(state.first_sequence, 4);
    assert_eq!(state.last_sequence, 6);
    let last = s
        .get_last_raw_message_by_subject("ps.a")
        .await
        .expect("last");
    assert_eq!(last.payload, "5");
    assert_eq!(last.sequence, 5);
    let first = s
        .get_first_raw_message_by_subject("ps.a", 1)
        .await
        .expect("first");
    assert_eq!(first.sequence, 4);
    assert!(s.get_raw_message(3).await.is_err(), "seq 3 was dropped");
}
scenario!(max_msgs_per_subject_keeps_newest);

// ---------------------------------------------------------------------------
// Stream administration
// ---------------------------------------------------------------------------

async fn stream_create_update_info_list_delete(t: &mut Target) {
    let (c, js) = t.js().await;
    let config = stream::Config {
        name: "ADMIN".into(),
        subjects: vec!["admin.>".into()],
        storage: StorageType::File,
        max_messages: 100,
        ..Default::default()
    };
    let info = js.create_stream(config.clone()).await.expect("create");
    let info = info.cached_info().clone();
    assert_eq!(info.config.name, "ADMIN");
    assert_eq!(info.config.max_messages, 100);
    assert_eq!(info.state.messages, 0);
    // Same config again: fine (idempotent).
    js.create_stream(config.clone()).await.expect("same again");
    // A different config under the same name: stream name in use.
    let bad = api(
        &c,
        "STREAM.CREATE.ADMIN",
        serde_json::json!({"name": "ADMIN", "subjects": ["admin.>"], "max_msgs": 5}),
    )
    .await;
    assert_eq!(err_code(&bad), 10058, "{bad}");
    // Overlapping subjects with another stream.
    let bad = api(
        &c,
        "STREAM.CREATE.OVER",
        serde_json::json!({"name": "OVER", "subjects": ["admin.x"]}),
    )
    .await;
    assert_eq!(err_code(&bad), 10065, "{bad}");

    stream(&js, "OTHER", &["other.*"]).await;
    publish(&js, "admin.one", "1").await;

    let updated = js
        .update_stream(stream::Config {
            subjects: vec!["admin.>".into(), "extra.>".into()],
            max_messages: 50,
            ..config.clone()
        })
        .await
        .expect("update");
    assert_eq!(updated.config.max_messages, 50);
    assert_eq!(updated.config.subjects.len(), 2);
    assert_eq!(updated.state.messages, 1);
    assert_eq!(publish(&js, "extra.x", "2").await, 2);
    // Storage type cannot change.
    let bad = api(
        &c,
        "STREAM.UPDATE.ADMIN",
        serde_json::json!({"name": "ADMIN", "subjects": ["admin.>"], "storage": "memory"}),
    )
    .await;
    assert_eq!(err_code(&bad), 10052, "{bad}");
    let bad = api(
        &c,
        "STREAM.UPDATE.MISSING",
        serde_json::json!({"name": "MISSING", "subjects": ["missing"]}),
    )
    .await;
    assert_eq!(err_code(&bad), 10059, "{bad}");

    let mut s = js.get_stream("ADMIN").await.expect("get");
    let info = s.info().await.expect("info");
    assert_eq!(info.state.messages, 2);
    assert_eq!(info.state.last_sequence, 2);
    let subjects = s
        .info_with_subjects("admin.>")
        .await
        .expect("info with subjects")
        .try_collect::<Vec<_>>()
        .await
        .expect("subjects");
    assert_eq!(subjects, vec![("admin.one".to_owned(), 1)]);

    let names: BTreeSet<String> = js.stream_names().try_collect().await.expect("stream names");
    assert_eq!(
        names,
        BTreeSet::from(["ADMIN".to_owned(), "OTHER".to_owned()])
    );
    let filtered = api(
        &c,
        "STREAM.NAMES",
        serde_json::json!({"subject": "other.x"}),
    )
    .await;
    assert_eq!(
        filtered["streams"],
        serde_json::json!(["OTHER"]),
        "{filtered}"
    );
    assert_eq!(filtered["total"], 1, "{filtered}");
    let listed: Vec<stream::Info> = js.streams().try_collect().await.expect("stream list");
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .any(|i| i.config.name == "ADMIN" && i.state.messages == 2)
    );
    let by_subject = js.stream_by_subject("extra.y").await.expect("by subject");
    assert_eq!(by_subject, "ADMIN");

    assert!(js.delete_stream("ADMIN").await.expect("delete").success);
    let gone = api(&c, "STREAM.INFO.ADMIN", serde_json::json!({})).await;
    assert_eq!(err_code(&gone), 10059, "{gone}");
    assert!(js.delete_stream("ADMIN").await.is_err());
    let err = js
        .publish("admin.one", "x".into())
        .await
        .expect("sent")
        .await
        .expect_err("no stream any more");
    assert_eq!(err.kind(), PublishErrorKind::StreamNotFound);
}
scenario!(stream_create_update_info_list_delete);

async fn stream_purge_by_filter_keep_and_sequence(t: &mut Target) {
    let (_c, js) = t.js().await;
    let mut s = stream(&js, "PURGE", &["p.>"]).await;
    for i in 0..10 {
        let subject = if i % 2 == 0 { "p.even" } else { "p.odd" };
        publish(&js, subject, i.to_string()).await;
    }
    // Filter: only p.even (5 messages).
    let r = s.purge().filter("p.even").await.expect("purge filter");
    assert!(r.success);
    assert_eq!(r.purged, 5);
    assert_eq!(s.info().await.expect("info").state.messages, 5);
    // Keep the newest 2 of what is left.
    let r = s.purge().keep(2).await.expect("purge keep");
    assert_eq!(r.purged, 3);
    let state = s.info().await.expect("info").state.clone();
    assert_eq!(state.messages, 2);
    assert_eq!(state.first_sequence, 8);
    // Up to (not including) a sequence.
    let r = s.purge().sequence(10).await.expect("purge seq");
    assert_eq!(r.purged, 1);
    let state = s.info().await.expect("info").state.clone();
    assert_eq!((state.messages, state.first_sequence), (1, 10));
    // Everything; the sequence carries on.
    let r = s.purge().await.expect("purge all");
    assert_eq!(r.purged, 1);
    let state = s.info().await.expect("info").state.clone();
    assert_eq!(state.messages, 0);
    assert_eq!(state.first_sequence, 11);
    assert_eq!(state.last_sequence, 10);
    assert_eq!(publish(&js, "p.even", "again").await, 11);
}
scenario!(stream_purge_by_filter_keep_and_sequence);

async fn get_message_raw_direct_and_last_by_subject(t: &mut Target) {
    let (c, js) = t.js().await;
    let s = js
        .create_stream(stream::Config {
            name: "GET".into(),
            subjects: vec!["get.>".into()],
            allow_direct: true,
            ..Default::default()
        })
        .await
        .expect("create");
    let mut h = HeaderMap::new();
    h.insert("X-Color", "blue");
    within(
        "ack",
        js.publish_with_headers("get.a", h, "a1".into())
            .await
            .expect("pub"),
    )
    .await
    .expect("ack");
    publish(&js, "get.b", "b1").await;
    publish(&js, "get.a", "a2").await;

    let m = s.get_raw_message(1).await.expect("get 1");
    assert_eq!(m.subject.as_str(), "get.a");
    assert_eq!(m.payload, "a1");
    assert_eq!(m.sequence, 1);
    assert_eq!(
        m.headers.get("X-Color").map(|v| v.as_str()),
        Some("blue"),
        "{:?}",
        m.headers
    );
    let last_a = s
        .get_last_raw_message_by_subject("get.a")
        .await
        .expect("last a");
    assert_eq!((last_a.sequence, last_a.payload.as_ref()), (3, &b"a2"[..]));
    let next_b = s
        .get_first_raw_message_by_subject("get.a", 2)
        .await
        .expect("next a from 2");
    assert_eq!(next_b.sequence, 3);
    let first_b = s
        .get_next_raw_message_by_subject("get.b")
        .await
        .expect("first b");
    assert_eq!(first_b.sequence, 2);
    let missing = api(&c, "STREAM.MSG.GET.GET", serde_json::json!({"seq": 99})).await;
    assert_eq!(err_code(&missing), 10037, "{missing}");
    assert!(s.get_raw_message(99).await.is_err());
    assert!(s.get_last_raw_message_by_subject("get.zzz").await.is_err());

    // Direct get.
    let d = s.direct_get(1).await.expect("direct 1");
    assert_eq!(d.payload, "a1");
    assert_eq!(d.subject.as_str(), "get.a");
    assert_eq!(d.sequence, 1);
    assert_eq!(d.headers.get("X-Color").map(|v| v.as_str()), Some("blue"));
    let d = s
        .direct_get_last_for_subject("get.a")
        .await
        .expect("direct last");
    assert_eq!((d.sequence, d.payload.as_ref()), (3, &b"a2"[..]));
    let d = s
        .direct_get_next_for_subject("get.a", Some(2))
        .await
        .expect("direct next");
    assert_eq!(d.sequence, 3);
    let d = s
        .direct_get_first_for_subject("get.b")
        .await
        .expect("direct first");
    assert_eq!(d.sequence, 2);
    assert!(s.direct_get(99).await.is_err());
    assert!(s.direct_get_last_for_subject("get.zzz").await.is_err());
}
scenario!(get_message_raw_direct_and_last_by_subject);

// ---------------------------------------------------------------------------
// Pull consumers
// ---------------------------------------------------------------------------

async fn pull_fetch_with_explicit_acks(t: &mut Target) {
    let (_c, js) = t.js().await;
    let s = stream(&js, "PULL", &["pull.>"]).await;
    fill(&js, "pull.a", 10).await;
    let mut c = pull_consumer(
        &s,
        pull::Config {
            durable_name: Some("worker".into()),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        },
    )
    .await;
    let first = fetch_now(&c, 4).await;
    assert_eq!(payloads(&first), ["0", "1", "2", "3"]);
    let info = m_info(&first[0]);
    assert_eq!(info, (1, 1, 1, 9));
    ack_all(&first).await;
    let i = c.info().await.expect("consumer info").clone();
    assert_eq!(i.num_ack_pending, 0);
    assert_eq!(i.num_pending, 6);
    assert_eq!(i.delivered.stream_sequence, 4);
    assert_eq!(i.ack_floor.stream_sequence, 4);
    assert_eq!(i.ack_floor.consumer_sequence, 4);

    // A batch larger than what is left returns what is left.
    let rest = batch(&c, 100, Duration::from_millis(500)).await;
    assert_eq!(payloads(&rest), ["4", "5", "6", "7", "8", "9"]);
    let i = c.info().await.expect("consumer info").clone();
    assert_eq!(i.num_ack_pending, 6);
    assert_eq!(i.num_pending, 0);
    ack_all(&rest).await;
    let i = c.info().await.expect("consumer info").clone();
    assert_eq!(i.num_ack_pending, 0);
    assert_eq!(i.ack_floor.stream_sequence, 10);
    // Nothing more: an empty fetch.
    assert!(fetch_now(&c, 5).await.is_empty());
}
scenario!(pull_fetch_with_explicit_acks);

/// (stream seq, consumer seq, delivered, pending) of a message.
fn m_info(m: &jetstream::Message) -> (u64, u64, i64, u64) {
    let i = m.info().expect("info");
    (
        i.stream_sequence,
        i.consumer_sequence,
        i.delivered,
        i.pending,
    )
}

async fn pull_batch_with_expiry_returns_fewer_messages(t: &mut Target) {
    let (_c, js) = t.js().await;
    let s = stream(&js, "FEW", &["few"]).await;
    fill(&js, "few", 3).await;
    let c = pull_consumer(
        &s,
        pull::Config {
            durable_name: Some("few".into()),
            ..Default::default()
        },
    )
    .await;
    let started = Instant::now();
    let msgs = batch(&c, 50, Duration::from_millis(800)).await;
    assert_eq!(payloads(&msgs), ["0", "1", "2"]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the request ends at its expiry"
    );
    ack_all(&msgs).await;
    // An empty stream: the request expires with nothing.
    let started = Instant::now();
    assert!(batch(&c, 5, Duration::from_millis(500)).await.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(400));
    // A message published while a request waits is delivered to it.
    let js2 = js.clone();
    let publisher = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        publish(&js2, "few", "late").await
    });
    let msgs = batch(&c, 5, Duration::from_secs(2)).await;
    assert_eq!(payloads(&msgs), ["late"]);
    assert_eq!(publisher.await.expect("publisher"), 4);
}
scenario!(pull_batch_with_expiry_returns_fewer_messages);

/// A pull request whose client went away gets nothing more: the messages
/// go to the next live puller at once, each on its first delivery, instead
/// of into a dead inbox until the ack wait (issue #12 item 1).
async fn a_pull_request_whose_client_disconnected_receives_nothing(t: &mut Target) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_c, js) = t.js().await;
    let s = stream(&js, "DEAD", &["dead.>"]).await;
    let c = pull_consumer(
        &s,
        pull::Config {
            durable_name: Some("C".into()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            ..Default::default()
        },
    )
    .await;
    // A client that asks for 10 messages (no expiry) and disconnects.
    let addr = t.url().trim_start_matches("nats://").to_owned();
    let mut raw = within("tcp connect", tokio::net::TcpStream::connect(&addr))
        .await
        .expect("tcp");
    let mut info = [0u8; 4096];
    let _ = within("INFO", raw.read(&mut info))
        .await
        .expect("read INFO");
    raw.write_all(
        b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\nSUB _INBOX.gone 1\r\nPUB $JS.API.CONSUMER.MSG.NEXT.DEAD.C _INBOX.gone 12\r\n{\"batch\":10}\r\nPING\r\n",
    )
    .await
    .expect("write");
    let mut pong = [0u8; 64];
    let _ = within("PONG", raw.read(&mut pong))
        .await
        .expect("read PONG");
    drop(raw);
    tokio::time::sleep(Duration::from_millis(300)).await;
    fill(&js, "dead.x", 3).await;
    let got = batch(&c, 3, Duration::from_secs(3)).await;
    assert_eq!(payloads(&got), ["0", "1", "2"], "a live puller gets them");
    for m in &got {
        let info = m.info().expect("ack reply");
        assert_eq!(
            info.delivered, 1,
            "first delivery, none wasted on the dead request"
        );
        m.ack().await.expect("ack");
    }
}
scenario!(a_pull_request_whose_client_disconnected_receives_nothing);

/// Consumer creates racing on one work-queue stream: exactly one of the
/// overlapping consumers is admitted, whatever the interleaving, and the
/// others get "filtered consumer not unique on workqueue stream" (issue #12
/// item 8).
async fn racing_workqueue_consumer_creates_admit_exactly_one(t: &mut Target) {
    let (c, js) = t.js().await;
    js.create_stream(stream::Config {
        name: "WQ".into(),
        subjects: vec!["wq.>".into()],
        retention: stream::RetentionPolicy::WorkQueue,
        ..Default::default()
    })
    .await
    .expect("stream");
    let mut clients = Vec::new();
    for _ in 0..12 {
        clients.push(t.client().await);
    }
    drop(c);
    let creates = clients.iter().enumerate().map(|(i, client)| async move {
        let body = serde_json::json!({
            "stream_name": "WQ",
            "config": {"durable_name": format!("W{i}"), "ack_policy": "explicit", "filter_subject": "wq.>"},
        });
        api(client, &format!("CONSUMER.CREATE.WQ.W{i}"), body).await
    });
    let answers = futures::future::join_all(creates).await;
    let ok = answers.iter().filter(|a| a.get("error").is_none()).count();
    assert_eq!(ok, 1, "exactly one admitted: {answers:#?}");
    for a in answers.iter().filter(|a| a.get("error").is_some()) {
        assert_eq!(err_code(a), 10100, "{a}");
    }
    let names = api(&clients[0], "CONSUMER.NAMES.WQ", serde_json::json!({})).await;
    assert_eq!(names["total"], 1, "{names}");
}
scenario!(racing_workqueue_consumer_creates_admit_exactly_one);

async fn pull_messages_stream_delivers_everything_in_order(t: &mut Target) {
    let (_c, js) = t.js().await;
    let s = stream(&js, "STREAMED", &["streamed.*"]).await;
    fill(&js, "streamed.a", 250).await;
    let c = pull_consumer(
        &s,
        pull::Config {
            durable_name: Some("reader".into()),
            filter_subject: "streamed.a".into(),
            ..Default::default()
        },
    )
    .await;
    let mut messages = c
        .stream()
        .max_messages_per_batch(40)
        .messages()
        .await
        .expect("messages");
    for i in 0..250u64 {
        let m = within("next", messages.next())
            .await
            .expect("stream open")
            .expect("message");
        assert_eq!(m.payload, i.to_string());
        assert_eq!(sseq(&m), i + 1);
        m.ack().await.expect("ack");
    }
    // Live messages keep coming.
    publish(&js, "streamed.a", "live").await;
    let m = within("live", messages.next())
        .await
        .expect("open")
        .expect("message");
    assert_eq!(m.payload, "live");
    m.double_ack().await.expect("ack");
    drop(messages);
    let mut c = c;
    let i = c.info().await.expect("info").clone();
    assert_eq!(i.ack_floor.stream_sequence, 251);
}
scenario!(pull_messages_stream_delivers_everything_in_order);

async fn ack_wait_expiry_redelivers(t: &mut Target) {
    let (_c, js) = t.js().await;
    let s = stream(&js, "AW", &["aw"]).await;
    fill(&js, "aw", 2).await;
    let mut c = pull_consumer(
        &s,
        pull::Config {
            durable_name: Some("slow".into()),
            ack_wait: Duration::from_millis(600),
            ..Default::default()
        },
    )
    .await;
    let first = fetch_now(&c, 1).await;
    assert_eq!(m_info(&first[0]).0, 1);
    assert_eq!(delivered(&first[0]), 1);
    // Not acked: after ack_wait, seq 1 comes again before seq 2.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let again = batch(&c, 1, Duration::from_secs(2)).await;
    assert_eq!(again.len(), 1);
    assert_eq!(sseq(&again[0]), 1);
    assert_eq!(delivered(&again[0]), 2);
    ack_all(&again).await;
    let i = c.info().await.expect("info").clone();
    assert_eq!(i.num_redelivered, 0, "redelivered counts pending only");
    let next = batch(&c, 1, Duration::from_secs(2)).await;
    assert_eq!(sseq(&next[0]), 2);
    assert_eq!(delivered(&next[0]), 1);
    // In-progress extends the deadline.
    next[0].ack_with(AckKind::Progress).await.expect("wpi");
    tokio::time::sleep(Duration::from_millis(400)).await;
    next[0].ack_with(AckKind::Progress).await.expect("wpi");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        batch(&c, 1, Duration::from_millis(100)).await.is_empty(),
        "progress kept seq 2 from being redelivered"
    );
    ack_all(&next).await;
}
scenario!(ack_wait_expiry_redelivers);

async fn nak_with_delay_redelivers_after_the_delay(t: &mut Target) {
    let (nc, js) = t.js().await;
    let s = stream(&js, "NAK", &["nak"]).await;
    fill(&js, "nak", 2).await;
    let c = pull_consumer(
        &s,
        pull::Config {
            durable_name: Some("naker".into()),
            ack_wait: Duration::from_secs(30),
            ..Default::default()
        },
    )
    .await;
    let m = fetch_now(&c, 1).await.remove(0);
    assert_eq!(sseq(&m), 1);
    // Plain nak: redelivered at once.
    confirm(&nc, &m, AckKind::Nak(None)).await;
    let m = batch(&c, 1, Duration::from_secs(2)).await.remove(0);
    assert_eq!((sseq(&m), delivered(&m)), (1, 2));
    // Nak with a delay: seq 2 first, seq 1 only after the delay.
    let naked = Instant::now();
    confirm(&nc, &m, AckKind::Nak(Some(Duration::from_millis(800)))).await;
    let m2 = batch(&c, 1, Duration::from_secs(2)).await.remove(0);
    assert_eq!(sseq(&m2), 2);
    ack_all(&[m2]).await;
    let m = batch(&c, 1, Duration::from_secs(3)).await.remove(0);
    assert_eq!((sseq(&m), delivered(&m)), (1, 3));
    assert!(
        naked.elapsed() >= Duration::from_millis(700),
        "redelivered after {:?}",
        naked.elapsed()
    );
    ack_all(&[m]).await;
}
scenario!(nak_with_delay_redelivers_after_the_delay);

async fn term_stops_redelivery(t: &mut Target) {
    let (nc, js) = t.js().await;
    let s = stream(&js, "TERM", &["term"]).await;
    fill(&js, "term", 1).await;
    let mut c = pull_consumer(
        &s,
        pull::Config {
            durable_name: Some("terminator".into()),
            ack_wait: Duration::from_millis(300),
            ..Default::default()
        },
    )
    .await;
    let m = fetch_now(&c, 1).await.remove(0);
    confirm(&nc, &m, AckKind::Term).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(batch(&c, 1, Duration::from_millis(300)).await.is_empty());
    let i = c.info().await.expect("info").clone();
    assert_eq!(i.num_ack_pending, 0);
    assert_eq!(i.ack_floor.stream_sequence, 1);
}
scenario!(term_stops_redelivery);

async fn max_deliver_bounds_redeliveries(t: &mut Target) {
    let (nc, js) = t.js().await;
    let s = stream(&js, "MD", &["md"]).await;
    fill(&js, "md", 1).await;
    let mut c = pull_consumer(
        &s,
        pull::Config {
            durable_name: Some("limited".into()),
            ack_wait: Duration::from_millis(300),
            max_deliver: 2,
            ..Default::default()
        },
    )
    .await;
    let m = batch(&c, 1, Duration::from_secs(1)).await.remove(0);
    assert_eq!(delivered(&m), 1);
    confirm(&nc, &m, AckKind::Nak(None)).await;
    let m = batch(&c, 1, Duration::from_secs(1)).await.remove(0);
    assert_eq!(delivered(&m), 2);
    confirm(&nc, &m, AckKind::Nak(None)).await;
    // No third attempt, whether by nak or by timeout.
    assert!(batch(&c, 1, Duration::from_millis(900)).await.is_empty());
    let i = c.info().await.expect("info").clone();
    assert_eq!(i.delivered.stream_sequence, 1);
    assert_eq!(i.delivered.consumer_sequence, 2);

    // The same bound when attempts run out by ack timeouts.
    let timeouts = pull_consumer(
        &s,
        pull::Config {
            durable_name: Some("timeouts".into()),
            ack_wait: Duration::from_millis(300),
            max_deliver: 2,
            ..Default::default()
        },
    )
    .await;
    let mut attempts = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        for m in batch(&timeouts, 1, Duration::from_millis(500)).await {
            attempts.push(delivered(&m));
        }
    }
    assert_eq!(attempts, [1, 2], "attempts by timeout");
}
scenario!(max_deliver_bounds_redeliveries);

async fn max_ack_pending_limits_outstanding_messages(t: &mut Target) {
    let (_c, js) = t.js().await;
    let s = stream(&js, "MAP", &["map"]).await;
    fill(&js, "map", 10).await;
    let mut c = pull_consumer(
        &s,
        pull::Config {
            durable_name: Some("bounded".into()),
            max_ack_pending: 3,
            ..Default::default()
        },
    )
    .await;
    let first = batch(&c, 10, Duration::from_millis(600)).await;
    assert_eq!(payloads(&first), ["0", "1", "2"]);
    assert!(batch(&c, 10, Duration::from_millis(300)).await.is_empty());
    assert_eq!(c.info().await.expect("info").num_ack_pending, 3);
    ack_all(&first[..2]).await;
    let more = batch(&c, 10, Duration::from_millis(600)).await;
    assert_eq!(payloads(&more), ["3", "4"]);
    ack_all(&first[2..]).await;
    ack_all(&more).await;
    let rest = batch(&c, 10, Duration::from_millis(600)).await;
    assert_eq!(payloads(&rest), ["5", "6", "7"]);
}
scenario!(max_ack_pending_limits_outstanding_messages);

async fn consumer_admin_info_names_list_delete(t: &mut Target) {
    let (c, js) = t.js().await;
    let s = stream(&js, "CADM", &["cadm.>"]).await;
    fill(&js, "cadm.x", 3).await;
    let _a: consumer::PullConsumer = s
        .create_consumer(pull::Config {
            durable_name: Some("a".into()),
            filter_subject: "cadm.x".into(),
            ..Default::default()
        })
        .await
        .expect("a");
    let _b: consumer::PullConsumer = s
        .create_consumer(pull::Config {
            durable_name: Some("b".into()),
            deliver_policy: DeliverPolicy::Last,
            ..Default::default()
        })
        .await
        .expect("b");
    let info = s.consumer_info("a").await.expect("info a");
    assert_eq!(info.stream_name, "CADM");
    assert_eq!(info.name, "a");
    assert_eq!(info.num_pending, 3);
    assert_eq!(info.config.filter_subject, "cadm.x");
    assert_eq!(s.consumer_info("b").await.expect("info b").num_pending, 1);
    let names: BTreeSet<String> = s.consumer_names().try_collect().await.expect("names");
    assert_eq!(names, BTreeSet::from(["a".to_owned(), "b".to_owned()]));
    let list: Vec<consumer::Info> = s.consumers().try_collect().await.expect("list");
    assert_eq!(list.len(), 2);
    // get_or_create of an existing consumer with the same config.
    let _: consumer::PullConsumer = s
        .get_or_create_consumer(
            "a",
            pull::Config {
                durable_name: Some("a".into()),
                filter_subject: "cadm.x".into(),
                ..Default::default()
            },
        )
        .await
        .expect("get or create");
    assert!(s.delete_consumer("a").await.expect("delete").success);
    let gone = api(&c, "CONSUMER.INFO.CADM.a", serde_json::json!({})).await;
    assert_eq!(err_code(&gone), 10014, "{gone}");
    let missing_stream = api(&c, "CONSUMER.INFO.NOPE.a", serde_json::json!({})).await;
    assert_eq!(err_code(&missing_stream), 10059, "{missing_stream}");
    let s2 = js.get_stream("CADM").await.expect("stream");
    assert_eq!(s2.cached_info().state.consumer_count, 1);
}
scenario!(consumer_admin_info_names_list_delete);

// ---------------------------------------------------------------------------
// Push consumers
// ---------------------------------------------------------------------------

async fn push_consumer_delivers_to_its_subject(t: &mut Target) {
    let (c, js) = t.js().await;
    let s = stream(&js, "PUSH", &["push.>"]).await;
    fill(&js, "push.a", 20).await;
    let inbox = c.new_inbox();
    let consumer: consumer::PushConsumer = s
        .create_consumer(push::Config {
            durable_name: Some("pusher".into()),
            deliver_subject: inbox,
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .expect("push consumer");
    let mut messages = consumer.messages().await.expect("messages");
    for i in 0..20u64 {
        let m = within("push", messages.next())
            .await
            .expect("open")
            .expect("message");
        assert_eq!(m.payload, i.to_string());
        assert_eq!(sseq(&m), i + 1);
        m.ack().await.expect("ack");
    }
    publish(&js, "push.b", "live").await;
    let m = within("live", messages.next())
        .await
        .expect("open")
        .expect("message");
    assert_eq!(m.payload, "live");
    m.double_ack().await.expect("ack");
    let info = s.consumer_info("pusher").await.expect("info");
    assert!(
        info.push_bound,
        "an active subscription is on the deliver subject"
    );
    assert_eq!(info.ack_floor.stream_sequence, 21);
}
scenario!(push_consumer_delivers_to_its_subject);

async fn push_consumer_with_deliver_group_splits_work(t: &mut Target) {
    let (c, js) = t.js().await;
    let s = stream(&js, "QPUSH", &["qpush"]).await;
    let inbox = c.new_inbox();
    let consumer: consumer::PushConsumer = s
        .create_consumer(push::Config {
            durable_name: Some("group".into()),
            deliver_subject: inbox,
            deliver_group: Some("workers".into()),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .expect("queue push consumer");
    let mut one = consumer.messages().await.expect("member one");
    let c2 = t.client().await;
    let js2 = jetstream::new(c2.clone());
    let consumer2: consumer::PushConsumer = js2
        .get_stream("QPUSH")
        .await
        .expect("stream")
        .get_consumer("group")
        .await
        .expect("same consumer");
    let mut two = consumer2.messages().await.expect("member two");
    // Both members' subscriptions are registered before anything is sent.
    c.flush().await.expect("flush one");
    c2.flush().await.expect("flush two");
    fill(&js, "qpush", 60).await;
    let mut seen = BTreeSet::new();
    let mut counts = [0usize; 2];
    let deadline = Instant::now() + WAIT;
    while seen.len() < 60 && Instant::now() < deadline {
        tokio::select! {
            Some(m) = one.next() => {
                let m = m.expect("message");
                assert!(seen.insert(sseq(&m)), "delivered twice");
                counts[0] += 1;
                m.ack().await.expect("ack");
            }
            Some(m) = two.next() => {
                let m = m.expect("message");
                assert!(seen.insert(sseq(&m)), "delivered twice");
                counts[1] += 1;
                m.ack().await.expect("ack");
            }
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    assert_eq!(seen.len(), 60, "every message once");
    // Ours rotates a queue group's members, so both get work. nats-server
    // 2.15.1 promises only that one member gets each message: on a loaded
    // machine (CI) it was seen giving all 60 to one member, so the split
    // is asserted of ours alone.
    if matches!(t, Target::Ours { .. }) {
        assert!(
            counts[0] > 0 && counts[1] > 0,
            "both members got work: {counts:?}"
        );
    }
}
scenario!(push_consumer_with_deliver_group_splits_work);

// ---------------------------------------------------------------------------
// Ordered consumers
// ---------------------------------------------------------------------------

const ORDERED_COUNT: usize = 5000;

async fn ordered_push_consumer_replays_thousands_in_order(t: &mut Target) {
    let (c, js) = t.js().await;
    let s = stream(&js, "ORDP", &["ordp.*"]).await;
    fill(&js, "ordp.a", ORDERED_COUNT).await;
    let ordered: consumer::Consumer<push::OrderedConfig> = s
        .create_consumer(push::OrderedConfig {
            deliver_subject: c.new_inbox(),
            filter_subject: "ordp.a".into(),
            ..Default::default()
        })
        .await
        .expect("ordered push");
    let mut messages = ordered.messages().await.expect("messages");
    for i in 0..ORDERED_COUNT {
        let m = within("ordered push", messages.next())
            .await
            .expect("open")
            .expect("message");
        assert_eq!(m.payload, i.to_string());
        assert_eq!(sseq(&m), i as u64 + 1);
    }
    publish(&js, "ordp.a", "live").await;
    let m = within("live", messages.next())
        .await
        .expect("open")
        .expect("message");
    assert_eq!(m.payload, "live");
}
scenario!(ordered_push_consumer_replays_thousands_in_order);

async fn ordered_pull_consumer_replays_thousands_in_order(t: &mut Target) {
    let (_c, js) = t.js().await;
    let s = stream(&js, "ORDL", &["ordl.*"]).await;
    fill(&js, "ordl.a", ORDERED_COUNT).await;
    fill(&js, "ordl.b", 10).await;
    let ordered: consumer::Consumer<pull::OrderedConfig> = s
        .create_consumer(pull::OrderedConfig {
            filter_subject: "ordl.a".into(),
            ..Default::default()
        })
        .await
        .expect("ordered pull");
    let mut messages = ordered.messages().await.expect("messages");
    for i in 0..ORDERED_COUNT {
        let m = within("ordered pull", messages.next())
            .await
            .expect("open")
            .expect("message");
        assert_eq!(m.payload, i.to_string());
        assert_eq!(sseq(&m), i as u64 + 1);
    }
    publish(&js, "ordl.a", "live").await;
    let m = within("live", messages.next())
        .await
        .expect("open")
        .expect("message");
    assert_eq!(m.payload, "live");
}
scenario!(ordered_pull_consumer_replays_thousands_in_order);

// ---------------------------------------------------------------------------
// Key-value
// ---------------------------------------------------------------------------

async fn kv_bucket(js: &Context, name: &str, history: i64) -> kv::Store {
    js.create_key_value(kv::Config {
        bucket: name.to_owned(),
        history,
        ..Default::default()
    })
    .await
    .expect("create bucket")
}

async fn kv_put_get_create_update_delete_purge(t: &mut Target) {
    let (_c, js) = t.js().await;
    let kv = kv_bucket(&js, "CONFIG", 5).await;
    let status = kv.status().await.expect("status");
    assert_eq!(status.bucket(), "CONFIG");
    assert_eq!(status.history(), 5);

    let r1 = kv.put("color", "red".into()).await.expect("put");
    assert_eq!(r1, 1);
    assert_eq!(kv.get("color").await.expect("get"), Some("red".into()));
    let e = kv.entry("color").await.expect("entry").expect("exists");
    assert_eq!((e.revision, e.operation), (1, kv::Operation::Put));
    assert_eq!(kv.get("missing").await.expect("get"), None);

    // create: only when absent.
    let err = kv
        .create("color", "green".into())
        .await
        .expect_err("exists");
    assert_eq!(err.kind(), kv::CreateErrorKind::AlreadyExists);
    let r2 = kv.create("size", "L".into()).await.expect("create");
    assert_eq!(r2, 2);

    // update: only at the given revision.
    let r3 = kv.update("color", "blue".into(), r1).await.expect("update");
    assert_eq!(r3, 3);
    let err = kv
        .update("color", "pink".into(), r1)
        .await
        .expect_err("stale revision");
    assert_eq!(err.kind(), kv::UpdateErrorKind::WrongLastRevision);
    assert_eq!(kv.get("color").await.expect("get"), Some("blue".into()));
    let old = kv
        .entry_for_revision("color", 1)
        .await
        .expect("entry at rev")
        .expect("rev 1 kept");
    assert_eq!(old.value, "red");

    // delete: a tombstone; get sees nothing, create works again.
    kv.delete("color").await.expect("delete");
    assert_eq!(kv.get("color").await.expect("get"), None);
    let e = kv.entry("color").await.expect("entry").expect("tombstone");
    assert_eq!(e.operation, kv::Operation::Delete);
    let r5 = kv.create("color", "green".into()).await.expect("re-create");
    assert_eq!(r5, 5);

    // purge: history of the key gone but the purge marker.
    kv.purge("color").await.expect("purge");
    assert_eq!(kv.get("color").await.expect("get"), None);
    let hist: Vec<kv::Entry> = kv
        .history("color")
        .await
        .expect("history")
        .try_collect()
        .await
        .expect("entries");
    assert_eq!(hist.len(), 1, "{hist:?}");
    assert_eq!(hist[0].operation, kv::Operation::Purge);
    assert_eq!(kv.get("size").await.expect("get"), Some("L".into()));

    // The bucket is also visible through the JetStream API.
    let names: Vec<String> = js.stream_names().try_collect().await.expect("names");
    assert!(names.contains(&"KV_CONFIG".to_owned()), "{names:?}");
    let again = js.get_key_value("CONFIG").await.expect("open bucket");
    assert_eq!(again.get("size").await.expect("get"), Some("L".into()));
    js.delete_key_value("CONFIG").await.expect("delete bucket");
    assert!(js.get_key_value("CONFIG").await.is_err());
}
scenario!(kv_put_get_create_update_delete_purge);

async fn kv_history_and_keys(t: &mut Target) {
    let (_c, js) = t.js().await;
    let kv = kv_bucket(&js, "HIST", 3).await;
    for v in ["1", "2", "3", "4", "5"] {
        kv.put("counter", Bytes::from(v)).await.expect("put");
    }
    kv.put("other", "x".into()).await.expect("put");
    kv.put("gone", "x".into()).await.expect("put");
    kv.delete("gone").await.expect("delete");
    let hist: Vec<kv::Entry> = kv
        .history("counter")
        .await
        .expect("history")
        .try_collect()
        .await
        .expect("entries");
    let values: Vec<&[u8]> = hist.iter().map(|e| e.value.as_ref()).collect();
    assert_eq!(values, [b"3", b"4", b"5"], "history keeps 3");
    assert_eq!(
        hist.iter().map(|e| e.revision).collect::<Vec<_>>(),
        [3, 4, 5]
    );
    let keys: BTreeSet<String> = kv
        .keys()
        .await
        .expect("keys")
        .try_collect()
        .await
        .expect("keys");
    assert_eq!(
        keys,
        BTreeSet::from(["counter".to_owned(), "other".to_owned()]),
        "deleted keys are not listed"
    );
}
scenario!(kv_history_and_keys);

async fn next_entry(w: &mut kv::Watch) -> kv::Entry {
    within("watch entry", w.next())
        .await
        .expect("watch open")
        .expect("entry")
}

async fn kv_watch_and_watch_all_see_live_updates(t: &mut Target) {
    let (_c, js) = t.js().await;
    let kv = kv_bucket(&js, "WATCH", 1).await;
    kv.put("a.one", "old".into()).await.expect("put");
    kv.put("b.one", "b".into()).await.expect("put");

    // watch (no history): only what changes from now on... async-nats's
    // watch delivers the last value per key first ("updates only" is
    // watch_from_revision), so check both initial and live entries.
    let mut w = kv.watch("a.>").await.expect("watch");
    let mut all = kv.watch_all().await.expect("watch all");
    let mut hist = kv.watch_with_history("a.one").await.expect("watch hist");

    let first = next_entry(&mut hist).await;
    assert_eq!(
        (first.key.as_str(), first.value.as_ref()),
        ("a.one", &b"old"[..])
    );

    kv.put("a.one", "new".into()).await.expect("put");
    kv.put("b.one", "b2".into()).await.expect("put");
    kv.delete("a.one").await.expect("delete");

    let e = next_entry(&mut w).await;
    assert_eq!((e.key.as_str(), e.value.as_ref()), ("a.one", &b"new"[..]));
    let e = next_entry(&mut w).await;
    assert_eq!(
        (e.key.as_str(), e.operation),
        ("a.one", kv::Operation::Delete)
    );

    let mut got = Vec::new();
    for _ in 0..3 {
        let e = next_entry(&mut all).await;
        got.push((
            e.key,
            String::from_utf8_lossy(&e.value).into_owned(),
            e.operation,
        ));
    }
    assert_eq!(
        got,
        [
            ("a.one".to_owned(), "new".to_owned(), kv::Operation::Put),
            ("b.one".to_owned(), "b2".to_owned(), kv::Operation::Put),
            ("a.one".to_owned(), String::new(), kv::Operation::Delete),
        ]
    );
    let e = next_entry(&mut hist).await;
    assert_eq!(e.value, "new");
    let e = next_entry(&mut hist).await;
    assert_eq!(e.operation, kv::Operation::Delete);

    // From a revision: replays from there.
    // History 1: revision 2 (b.one) was replaced by 4, so the first entry
    // at or after 2 is 4.
    let mut from = kv.watch_all_from_revision(2).await.expect("from rev");
    let e = next_entry(&mut from).await;
    assert_eq!((e.revision, e.key.as_str()), (4, "b.one"));
}
scenario!(kv_watch_and_watch_all_see_live_updates);

/// A watcher knows when it has caught up: `seen_current` turns true on the
/// entry after which nothing older is pending (clients compute it from
/// the pending count in each delivery's ack reply) and stays true for
/// live updates.
async fn kv_watcher_sees_seen_current_once_caught_up(t: &mut Target) {
    let (_c, js) = t.js().await;
    let kv = kv_bucket(&js, "CURRENT", 1).await;
    for key in ["k1", "k2", "k3"] {
        kv.put(key, "v".into()).await.expect("put");
    }
    // With history: the current value of every key first, then updates.
    let mut all = kv.watch_with_history(">").await.expect("watch all");
    let mut flags = Vec::new();
    for _ in 0..3 {
        let e = next_entry(&mut all).await;
        flags.push((e.key, e.seen_current));
    }
    assert_eq!(
        flags,
        [
            ("k1".to_owned(), false),
            ("k2".to_owned(), false),
            ("k3".to_owned(), true)
        ]
    );
    kv.put("k4", "live".into()).await.expect("put");
    let e = next_entry(&mut all).await;
    assert_eq!((e.key.as_str(), e.seen_current), ("k4", true));
}
scenario!(kv_watcher_sees_seen_current_once_caught_up);

// ---------------------------------------------------------------------------
// Object store
// ---------------------------------------------------------------------------

fn digest_of(data: &[u8]) -> String {
    format!(
        "SHA-256={}",
        base64::engine::general_purpose::URL_SAFE.encode(sha2::Sha256::digest(data))
    )
}

fn content(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

async fn object_put_get_info_list_delete(t: &mut Target) {
    let (_c, js) = t.js().await;
    let store = js
        .create_object_store(object_store::Config {
            bucket: "FILES".into(),
            ..Default::default()
        })
        .await
        .expect("create object store");
    let sizes: [(&str, usize); 4] = [
        ("empty", 0),
        ("one-byte", 1),
        ("chunk-plus-one", 128 * 1024 + 1),
        ("sixty-four-mib", 64 * 1024 * 1024),
    ];
    for (name, len) in sizes {
        let data = content(len);
        let mut reader: &[u8] = &data;
        let info = tokio::time::timeout(Duration::from_secs(120), store.put(name, &mut reader))
            .await
            .unwrap_or_else(|_| panic!("put {name} in time"))
            .unwrap_or_else(|e| panic!("put {name}: {e}"));
        assert_eq!(info.size, len, "{name}");
        assert_eq!(
            info.digest.as_deref(),
            Some(digest_of(&data).as_str()),
            "{name}"
        );

        let info = store.info(name).await.expect("info");
        assert_eq!(info.size, len);
        assert_eq!(info.chunks, len.div_ceil(128 * 1024), "{name}");
        assert_eq!(info.digest.as_deref(), Some(digest_of(&data).as_str()));

        let mut object = store.get(name).await.expect("get");
        let mut back = Vec::with_capacity(len);
        tokio::time::timeout(
            Duration::from_secs(120),
            tokio::io::AsyncReadExt::read_to_end(&mut object, &mut back),
        )
        .await
        .unwrap_or_else(|_| panic!("read {name} in time"))
        .unwrap_or_else(|e| panic!("read {name}: {e}"));
        assert_eq!(back.len(), len, "{name}");
        assert!(back == data, "{name}: contents differ");
    }
    let listed: BTreeSet<String> = store
        .list()
        .await
        .expect("list")
        .map_ok(|i| i.name)
        .try_collect()
        .await
        .expect("list");
    assert_eq!(listed.len(), 4, "{listed:?}");
    // Replacing an object drops the old chunks.
    let mut reader: &[u8] = b"replacement";
    store.put("one-byte", &mut reader).await.expect("replace");
    let mut object = store.get("one-byte").await.expect("get");
    let mut back = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut object, &mut back)
        .await
        .expect("read");
    assert_eq!(back, b"replacement");

    store.delete("sixty-four-mib").await.expect("delete");
    assert!(store.get("sixty-four-mib").await.is_err());
    let info = js
        .get_stream("OBJ_FILES")
        .await
        .expect("backing stream")
        .cached_info()
        .clone();
    assert!(
        info.state.bytes < 1024 * 1024,
        "the deleted object's chunks are purged: {} bytes left",
        info.state.bytes
    );
    let listed: BTreeSet<String> = store
        .list()
        .await
        .expect("list")
        .map_ok(|i| i.name)
        .try_collect()
        .await
        .expect("list");
    assert_eq!(
        listed,
        BTreeSet::from([
            "empty".to_owned(),
            "one-byte".to_owned(),
            "chunk-plus-one".to_owned()
        ])
    );
    js.delete_object_store("FILES").await.expect("delete store");
}
scenario!(object_put_get_info_list_delete);

// ---------------------------------------------------------------------------
// Restart
// ---------------------------------------------------------------------------

async fn durable_consumer_resumes_after_restart(t: &mut Target) {
    {
        let (_c, js) = t.js().await;
        let s = stream(&js, "DUR", &["dur.>"]).await;
        fill(&js, "dur.a", 10).await;
        let c = pull_consumer(
            &s,
            pull::Config {
                durable_name: Some("keeper".into()),
                ack_wait: Duration::from_secs(1),
                ..Default::default()
            },
        )
        .await;
        let msgs = fetch_now(&c, 4).await;
        assert_eq!(payloads(&msgs), ["0", "1", "2", "3"]);
        ack_all(&msgs[..3]).await; // seq 4 delivered but not acked
        let kv = kv_bucket(&js, "KEEP", 1).await;
        kv.put("k", "v".into()).await.expect("put");
    }
    t.restart().await;
    let (_c, js) = t.js().await;
    let mut s = js.get_stream("DUR").await.expect("stream recovered");
    let state = s.info().await.expect("info").state.clone();
    assert_eq!((state.messages, state.last_sequence), (10, 10));
    assert_eq!(s.get_raw_message(7).await.expect("get").payload, "6");
    let mut c: consumer::PullConsumer = s.get_consumer("keeper").await.expect("consumer recovered");
    let info = c.info().await.expect("info").clone();
    assert_eq!(info.ack_floor.stream_sequence, 3);
    assert_eq!(info.delivered.stream_sequence, 4);
    // Seq 4 (unacked before the restart) and 5..=10 are delivered; 1..=3
    // (acked) never again. nats-server redelivers 4 when its ack wait runs
    // out rather than first, so the order is not checked.
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    while seen.len() < 7 && Instant::now() < deadline {
        for m in batch(&c, 20, Duration::from_millis(700)).await {
            let seq = sseq(&m);
            assert!(seq >= 4, "acked seq {seq} redelivered after the restart");
            seen.insert(seq);
            ack_all(&[m]).await;
        }
    }
    assert_eq!(seen, (4..=10).collect::<BTreeSet<_>>());
    assert!(batch(&c, 20, Duration::from_millis(1500)).await.is_empty());
    assert_eq!(publish(&js, "dur.a", "after").await, 11);
    let kv = js.get_key_value("KEEP").await.expect("bucket recovered");
    assert_eq!(kv.get("k").await.expect("get"), Some("v".into()));
    let s2 = s.info().await.expect("info").clone();
    assert_eq!(s2.state.consumer_count, 1);
}
scenario!(durable_consumer_resumes_after_restart);

/// A consumer paused until a moment shortly ahead delivers nothing before
/// it and resumes by itself after it; a pull request made meanwhile is
/// served once the pause ends (nats-server 2.11's consumer pause).
async fn a_paused_pull_consumer_resumes_by_itself(t: &mut Target) {
    let (c, js) = t.js().await;
    stream(&js, "PAUSED", &["paused"]).await;
    js.publish("paused", "m1".into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    let until_time = std::time::SystemTime::now() + Duration::from_millis(1500);
    let until = humantime::format_rfc3339_nanos(until_time).to_string();
    let v = api(
        &c,
        "CONSUMER.CREATE.PAUSED.C",
        json!({"stream_name": "PAUSED", "config": {"durable_name": "C", "ack_policy": "explicit", "pause_until": until}}),
    )
    .await;
    assert_eq!(v["paused"], true, "{v}");
    let inbox = c.new_inbox();
    let mut sub = c.subscribe(inbox.clone()).await.expect("subscribe");
    c.publish_with_reply(
        "$JS.API.CONSUMER.MSG.NEXT.PAUSED.C",
        inbox,
        json!({"batch": 1, "expires": 4_000_000_000u64})
            .to_string()
            .into(),
    )
    .await
    .expect("pull");
    let m = within("the message after the pause", sub.next())
        .await
        .expect("delivery");
    assert_eq!(&m.payload[..], b"m1");
    assert!(
        std::time::SystemTime::now() >= until_time,
        "delivered before the pause ended"
    );
    let v = api(&c, "CONSUMER.INFO.PAUSED.C", json!({})).await;
    assert!(v.get("paused").is_none(), "no longer paused: {v}");
}
scenario!(a_paused_pull_consumer_resumes_by_itself);
