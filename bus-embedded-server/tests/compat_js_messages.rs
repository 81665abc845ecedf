//! The stream-message features of nats-server 2.11-2.12 (per-message TTL,
//! subject delete markers as KV limit markers, counters, the API level) as
//! async-nats 0.51 uses them, unchanged: each scenario runs against our
//! server and, where it proves the scenario itself, against nats-server
//! 2.15.1. The restart scenarios SIGKILL our binary (`crash.rs` style).

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, kv, stream};
use futures::StreamExt;
mod js_target;
mod server_process;

use js_target::both;
use server_process::start as spawn_server;
/// Bound on any single wait for something that must happen.
const WAIT: Duration = Duration::from_secs(10);

async fn within<F: std::future::IntoFuture>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(WAIT, f.into_future())
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {WAIT:?}"))
}

async fn js(url: &str) -> jetstream::Context {
    let client = async_nats::connect(url).await.expect("connect");
    jetstream::new(client)
}

// ---------------------------------------------------------------------------
// KV limit markers (subject delete markers as KV uses them)
// ---------------------------------------------------------------------------

/// A bucket with `limit_markers`: a key created with a TTL and a key aged
/// out by `max_age` both reach a watcher as a purge once they expire, the
/// key reads as absent and can be created again; a purge with a TTL is
/// itself removed after its TTL.
async fn kv_limit_markers_tell_watchers_a_key_expired(url: &str) {
    let js = js(url).await;
    let kv = js
        .create_key_value(kv::Config {
            bucket: "lm".into(),
            history: 1,
            max_age: Duration::from_secs(3),
            limit_markers: Some(Duration::from_secs(2)),
            ..Default::default()
        })
        .await
        .expect("a bucket with limit markers (needs API level 1)");
    let info = js
        .get_stream("KV_lm")
        .await
        .expect("stream")
        .cached_info()
        .clone();
    assert!(info.config.allow_message_ttl);
    assert_eq!(
        info.config.subject_delete_marker_ttl,
        Some(Duration::from_secs(2))
    );
    let mut watch = kv.watch_all().await.expect("watch");
    kv.create_with_ttl("short", "v".into(), Duration::from_secs(1))
        .await
        .expect("create with a TTL");
    let started = Instant::now();
    kv.put("aged", "v".into()).await.expect("put");
    kv.put("gone", "v".into()).await.expect("put");
    let mut seen = Vec::new();
    let mut watched = async |n: usize, seen: &mut Vec<(String, kv::Operation)>| {
        while seen.len() < n {
            let entry = within("watch", watch.next())
                .await
                .expect("watch ended")
                .expect("entry");
            seen.push((entry.key.clone(), entry.operation));
        }
    };
    // Seen before the purge, which would otherwise roll it up first.
    watched(3, &mut seen).await;
    kv.purge_with_ttl("gone", Duration::from_secs(1))
        .await
        .expect("purge with a TTL");
    watched(6, &mut seen).await;
    use kv::Operation::{Purge, Put};
    assert_eq!(
        seen,
        vec![
            ("short".to_owned(), Put),
            ("aged".to_owned(), Put),
            ("gone".to_owned(), Put),
            ("gone".to_owned(), Purge),
            // The TTL marker (about 1 s), then max_age's (about 3 s).
            ("short".to_owned(), Purge),
            ("aged".to_owned(), Purge),
        ]
    );
    assert!(
        started.elapsed() >= Duration::from_millis(2500),
        "max_age's marker came after {:?}",
        started.elapsed()
    );
    assert_eq!(kv.get("short").await.expect("get"), None);
    assert_eq!(kv.get("aged").await.expect("get"), None);
    // The purge marker had a 1 s TTL: gone from the stream, not just hidden.
    let stream = js.get_stream("KV_lm").await.expect("stream");
    assert!(
        stream
            .get_last_raw_message_by_subject("$KV.lm.gone")
            .await
            .is_err(),
        "the purge marker outlived its TTL"
    );
    // A key whose last entry is a marker can be created again.
    kv.create("short", "again".into())
        .await
        .expect("create after the marker");
}
both!(kv_limit_markers_tell_watchers_a_key_expired);

/// A TTL on a stream without `allow_msg_ttl`, and an invalid TTL, are
/// refused with the error codes clients match on.
async fn ttl_refusals_reach_the_client_as_api_errors(url: &str) {
    let js = js(url).await;
    for (name, allow) in [("NOTTL", false), ("TTL", true)] {
        js.create_stream(stream::Config {
            name: name.into(),
            subjects: vec![format!("{}.>", name.to_lowercase())],
            allow_message_ttl: allow,
            ..Default::default()
        })
        .await
        .expect("stream");
    }
    let publish = |subject: &'static str, ttl: &'static str| {
        let js = js.clone();
        async move {
            let mut h = HeaderMap::new();
            h.insert("Nats-TTL", ttl);
            js.publish_with_headers(subject, h, "x".into())
                .await
                .expect("sent")
                .await
        }
    };
    let code = |r: Result<jetstream::publish::PublishAck, jetstream::context::PublishError>| {
        let e = r.expect_err("refused");
        e.to_string()
    };
    assert!(code(publish("nottl.a", "5s").await).contains("10166"));
    assert!(code(publish("ttl.a", "500ms").await).contains("10165"));
    assert!(code(publish("ttl.a", "soon").await).contains("10165"));
    let ack = publish("ttl.a", "never").await.expect("never is a TTL");
    assert_eq!(ack.sequence, 1);
}
both!(ttl_refusals_reach_the_client_as_api_errors);

// ---------------------------------------------------------------------------
// Counters
// ---------------------------------------------------------------------------

async fn incr(js: &jetstream::Context, subject: &'static str, by: &str) -> String {
    let mut h = HeaderMap::new();
    h.insert("Nats-Incr", by);
    let ack = js
        .publish_with_headers(subject, h, bytes::Bytes::new())
        .await
        .expect("sent")
        .await
        .expect("increment acknowledged");
    ack.value.expect("a counter's PubAck carries its total")
}

/// Counter increments from async-nats: the PubAck's `val` is the running
/// total per subject, beyond 64 bits, and the stored message holds it.
async fn counter_totals_come_back_in_the_puback(url: &str) {
    let js = js(url).await;
    js.create_stream(stream::Config {
        name: "CNT".into(),
        subjects: vec!["cnt.>".into()],
        allow_message_counter: true,
        ..Default::default()
    })
    .await
    .expect("counter stream");
    assert_eq!(incr(&js, "cnt.a", "5").await, "5");
    assert_eq!(incr(&js, "cnt.a", "-7").await, "-2");
    assert_eq!(
        incr(&js, "cnt.b", "9223372036854775807").await,
        "9223372036854775807"
    );
    assert_eq!(
        incr(&js, "cnt.b", "9223372036854775807").await,
        "18446744073709551614"
    );
    let stream = js.get_stream("CNT").await.expect("stream");
    let last = stream
        .get_last_raw_message_by_subject("cnt.a")
        .await
        .expect("last");
    assert_eq!(&last.payload[..], br#"{"val":"-2"}"#);
    // A plain publish is refused: a counter stream only counts.
    let err = js
        .publish("cnt.a", "1".into())
        .await
        .expect("sent")
        .await
        .expect_err("a payload without Nats-Incr");
    assert!(err.to_string().contains("10169"), "{err}");
}
both!(counter_totals_come_back_in_the_puback);

// ---------------------------------------------------------------------------
// API level
// ---------------------------------------------------------------------------

/// async-nats reads the API level from account info (it gates KV limit
/// markers on level 1).
async fn account_info_reports_an_api_level(url: &str) {
    let js = js(url).await;
    let info = js.query_account().await.expect("account info");
    assert!(info.requests.level >= 1, "level {}", info.requests.level);
}
both!(account_info_reports_an_api_level);

// ---------------------------------------------------------------------------
// Restarts: expiry times and counter totals live in the stored messages
// ---------------------------------------------------------------------------

/// SIGKILL right after the acknowledgements, down past the TTL: after the
/// restart the expired message is replaced by its delete marker (the
/// expiry time comes from the stored message), `never` and plain messages
/// stay, and a counter goes on from its stored total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_expiry_and_counter_totals_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let log = dir.path().join("server.log");
    let mut server = spawn_server(&store, &log);
    {
        let js = js(&server.url).await;
        js.create_stream(stream::Config {
            name: "T".into(),
            subjects: vec!["t.>".into()],
            allow_message_ttl: true,
            // Not above the message's TTL, which it would raise.
            subject_delete_marker_ttl: Some(Duration::from_secs(2)),
            ..Default::default()
        })
        .await
        .expect("TTL stream");
        js.create_stream(stream::Config {
            name: "CNT".into(),
            subjects: vec!["cnt.>".into()],
            allow_message_counter: true,
            ..Default::default()
        })
        .await
        .expect("counter stream");
        for (subject, ttl) in [
            ("t.short", Some("2s")),
            ("t.never", Some("never")),
            ("t.plain", None),
        ] {
            let mut h = HeaderMap::new();
            if let Some(ttl) = ttl {
                h.insert("Nats-TTL", ttl);
            }
            js.publish_with_headers(subject, h, "x".into())
                .await
                .expect("sent")
                .await
                .expect("acknowledged");
        }
        assert_eq!(incr(&js, "cnt.a", "40").await, "40");
    }
    server.child.kill().expect("SIGKILL");
    server.child.wait().expect("reap");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let server = spawn_server(&store, &log);
    let js = js(&server.url).await;
    let stream = js.get_stream("T").await.expect("stream after restart");
    let deadline = Instant::now() + Duration::from_secs(3);
    let marker = loop {
        let last = stream
            .get_last_raw_message_by_subject("t.short")
            .await
            .expect("t.short has a message");
        if last.sequence > 3 {
            break last;
        }
        assert!(
            Instant::now() < deadline,
            "t.short did not expire after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        marker.headers.get("Nats-Marker-Reason").map(|v| v.as_str()),
        Some("MaxAge")
    );
    assert!(marker.payload.is_empty());
    for subject in ["t.never", "t.plain"] {
        stream
            .get_last_raw_message_by_subject(subject)
            .await
            .unwrap_or_else(|e| panic!("{subject} lost: {e}"));
    }
    assert_eq!(incr(&js, "cnt.a", "2").await, "42");
}
