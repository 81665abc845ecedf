//! Crash tests of mirrors and sources against the real binary: the server
//! is SIGKILLed while a mirror and a source are catching up on many origin
//! messages, restarted on the same store, and killed again; at the end the
//! mirror holds every origin message under its origin sequence and the
//! source every origin message exactly once, in order (nothing copied
//! twice, nothing skipped). The harness is the style of `crash.rs`.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;

mod server_process;

use server_process::start;

async fn context(url: &str) -> jetstream::Context {
    let client = async_nats::ConnectOptions::new()
        .max_reconnects(1)
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .expect("connect");
    jetstream::context::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .ack_timeout(Duration::from_secs(10))
        .build(client)
}

async fn messages(js: &jetstream::Context, name: &str) -> u64 {
    let mut s = js.get_stream(name).await.expect("get stream");
    s.info().await.expect("stream info").state.messages
}

/// Every message of a stream in order: (sequence, payload, its
/// `Nats-Stream-Source` header if any).
async fn read_all(js: &jetstream::Context, name: &str) -> Vec<(u64, String, Option<String>)> {
    let stream = js.get_stream(name).await.expect("get stream");
    let expected = messages(js, name).await;
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("reader consumer");
    let mut out = Vec::new();
    while (out.len() as u64) < expected {
        let mut batch = consumer
            .batch()
            .max_messages(1000)
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .expect("pull");
        let before = out.len();
        while let Some(m) = batch.next().await {
            let m = m.expect("message");
            let seq = m.info().expect("info").stream_sequence;
            let src = m
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Stream-Source"))
                .map(|v| v.to_string());
            out.push((seq, String::from_utf8_lossy(&m.payload).into_owned(), src));
        }
        assert!(out.len() > before, "the reader stalled at {}", out.len());
    }
    out
}

const N: u64 = 6000;

async fn last_seq(js: &jetstream::Context, name: &str) -> u64 {
    let mut s = js.get_stream(name).await.expect("get stream");
    s.info().await.expect("stream info").state.last_sequence
}

/// The last origin sequence on `o.1` among `1..=total`.
fn filtered_last(total: u64) -> u64 {
    (1..=total).rev().find(|k| k % 7 == 1).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_and_source_catching_up_survive_sigkill_without_duplicates_or_gaps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let log = dir.path().join("server.log");
    let mut server = start(&store, &log);
    let mut js = context(&server.url).await;
    js.create_stream(stream::Config {
        name: "O".into(),
        subjects: vec!["o.>".into()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .expect("origin");
    // Windows of acknowledged async publishes.
    let mut i = 1;
    while i <= N {
        let mut acks = Vec::new();
        for k in i..(i + 500).min(N + 1) {
            acks.push(
                js.publish(format!("o.{}", k % 7), format!("m{k}").into())
                    .await
                    .expect("publish"),
            );
        }
        for a in acks {
            a.await.expect("ack");
        }
        i += 500;
    }
    js.create_stream(stream::Config {
        name: "F".into(),
        storage: stream::StorageType::File,
        mirror: Some(stream::Source {
            name: "O".into(),
            filter_subject: Some("o.1".into()),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .expect("filtered mirror");
    js.create_stream(stream::Config {
        name: "S".into(),
        storage: stream::StorageType::File,
        sources: Some(vec![stream::Source {
            name: "O".into(),
            ..Default::default()
        }]),
        ..Default::default()
    })
    .await
    .expect("source");
    // The plain mirror last: it copies fastest, and the kills below must
    // find at least one mirror still catching up.
    js.create_stream(stream::Config {
        name: "M".into(),
        storage: stream::StorageType::File,
        mirror: Some(stream::Source {
            name: "O".into(),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .expect("mirror");
    // Kill while catching up, several times, restarting on the same store;
    // an origin message published after each restart must be copied too.
    let mut total = N;
    let (mut mirror_partial, mut source_partial) = (0, 0);
    let mut delay = 0;
    for cycle in 0..6 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let (m, f, s) = (
            messages(&js, "M").await,
            last_seq(&js, "F").await,
            messages(&js, "S").await,
        );
        if m < total || f < filtered_last(total) {
            mirror_partial += 1;
        }
        if s < total {
            source_partial += 1;
        }
        eprintln!(
            "cycle {cycle}: SIGKILL with the mirror at {m}, the filtered mirror at sequence {f} and the source at {s} of {total}"
        );
        server.sigkill();
        server = start(&store, &log);
        js = context(&server.url).await;
        total += 1;
        js.publish(format!("o.{}", total % 7), format!("m{total}").into())
            .await
            .expect("publish")
            .await
            .expect("ack");
        delay = delay * 2 + 5;
    }
    assert!(
        mirror_partial >= 1 && source_partial >= 1,
        "the kills should have hit the mirrors and the source mid-sync ({mirror_partial}, {source_partial})"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while messages(&js, "M").await < total
        || messages(&js, "S").await < total
        || last_seq(&js, "F").await < filtered_last(total)
    {
        assert!(
            Instant::now() < deadline,
            "the mirror and source did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mirror = read_all(&js, "M").await;
    assert_eq!(mirror.len() as u64, total, "mirror message count");
    for (k, (seq, payload, _)) in mirror.iter().enumerate() {
        let want = k as u64 + 1;
        assert_eq!(
            (*seq, payload.as_str()),
            (want, format!("m{want}").as_str())
        );
    }
    let source = read_all(&js, "S").await;
    assert_eq!(source.len() as u64, total, "source message count");
    for (k, (seq, payload, hdr)) in source.iter().enumerate() {
        let want = k as u64 + 1;
        assert_eq!(
            (*seq, payload.as_str()),
            (want, format!("m{want}").as_str())
        );
        let hdr = hdr
            .as_deref()
            .expect("a sourced message carries Nats-Stream-Source");
        let fields: Vec<&str> = hdr.split(' ').collect();
        assert_eq!(
            &fields[..4],
            &["O", want.to_string().as_str(), ">", ">"],
            "{hdr}"
        );
    }
    // The filtered mirror: the origin's `o.1` messages under their own
    // sequences, every other sequence skipped.
    let filtered = read_all(&js, "F").await;
    let want: Vec<(u64, String)> = (1..=total)
        .filter(|k| k % 7 == 1)
        .map(|k| (k, format!("m{k}")))
        .collect();
    let got: Vec<(u64, String)> = filtered.into_iter().map(|(s, p, _)| (s, p)).collect();
    assert_eq!(got, want, "filtered mirror");
    // And still exactly once after a last clean look a moment later.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(messages(&js, "M").await, total);
    assert_eq!(messages(&js, "S").await, total);
}
