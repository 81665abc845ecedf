//! Crash tests of mirrors and sources against the real binary: the server
//! is SIGKILLed while a mirror and a source are catching up on many origin
//! messages, restarted on the same store, and killed again; at the end the
//! mirror holds every origin message under its origin sequence and the
//! source every origin message exactly once, in order (nothing copied
//! twice, nothing skipped). A SIGKILL in the middle of a write can leave
//! the last record of a copy torn: the copy must take that message again
//! from the origin. The harness is the style of `crash.rs`.

use std::path::{Path, PathBuf};
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
/// Origin messages published after each restart.
const AFTER_RESTART: u64 = 200;

async fn last_seq(js: &jetstream::Context, name: &str) -> u64 {
    let mut s = js.get_stream(name).await.expect("get stream");
    s.info().await.expect("stream info").state.last_sequence
}

/// The last origin sequence on `o.1` among `1..=total`.
fn filtered_last(total: u64) -> u64 {
    (1..=total).rev().find(|k| k % 7 == 1).unwrap_or(0)
}

/// Publishes origin messages `from..=to` (`m<k>` on `o.<k % 7>`) as one
/// window of acknowledged async publishes.
async fn publish_origin(js: &jetstream::Context, from: u64, to: u64) {
    let mut acks = Vec::new();
    for k in from..=to {
        acks.push(
            js.publish(format!("o.{}", k % 7), format!("m{k}").into())
                .await
                .expect("publish"),
        );
    }
    for a in acks {
        a.await.expect("ack");
    }
}

/// The origin `O` with messages `1..=n`.
async fn create_origin(js: &jetstream::Context, n: u64) {
    js.create_stream(stream::Config {
        name: "O".into(),
        subjects: vec!["o.>".into()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .expect("origin");
    let mut i = 1;
    while i <= n {
        publish_origin(js, i, (i + 499).min(n)).await;
        i += 500;
    }
}

/// The copies of `O`: the mirror `F` of its `o.1` messages, the source
/// `S`, and the plain mirror `M` last (it copies fastest, and the kills
/// must find at least one mirror still catching up).
async fn create_copies(js: &jetstream::Context) {
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
}

/// Waits until `M` and `S` hold `total` messages and `F` reached the last
/// `o.1` message (a liveness guard of 60 s, not a speed check).
async fn wait_caught_up(js: &jetstream::Context, total: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (m, s, f) = (
            messages(js, "M").await,
            messages(js, "S").await,
            last_seq(js, "F").await,
        );
        if m >= total && s >= total && f >= filtered_last(total) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the mirror and source did not catch up: the mirror holds {m} (last sequence {}), \
             the source {s} and the filtered mirror is at sequence {f}, of {total}",
            last_seq(js, "M").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every copy holds exactly the origin messages `1..=total`: the mirror
/// under their origin sequences, the filtered mirror the `o.1` ones under
/// theirs, the source each once, in order, with its origin sequence in
/// `Nats-Stream-Source` (its own sequences increase; after a torn tail they
/// skip the cut one, which is never assigned again).
async fn check_copies(js: &jetstream::Context, total: u64) {
    let mirror = read_all(js, "M").await;
    let got: Vec<(u64, String)> = mirror.into_iter().map(|(s, p, _)| (s, p)).collect();
    let want: Vec<(u64, String)> = (1..=total).map(|k| (k, format!("m{k}"))).collect();
    if got != want {
        let missing: Vec<u64> = (1..=total)
            .filter(|k| !got.iter().any(|(s, _)| s == k))
            .collect();
        panic!(
            "mirror: {} messages of {total}, origin sequences missing: {missing:?}",
            got.len()
        );
    }
    let source = read_all(js, "S").await;
    assert_eq!(source.len() as u64, total, "source message count");
    let mut prev = 0;
    for (k, (seq, payload, hdr)) in source.iter().enumerate() {
        let want = k as u64 + 1;
        assert!(*seq > prev, "source sequences out of order at {seq}");
        prev = *seq;
        assert_eq!(payload.as_str(), format!("m{want}").as_str(), "source");
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
    let filtered = read_all(js, "F").await;
    let want: Vec<(u64, String)> = (1..=total)
        .filter(|k| k % 7 == 1)
        .map(|k| (k, format!("m{k}")))
        .collect();
    let got: Vec<(u64, String)> = filtered.into_iter().map(|(s, p, _)| (s, p)).collect();
    assert_eq!(got, want, "filtered mirror");
}

/// What the server logged about torn tails when it started.
fn torn_tails(server: &server_process::Server) -> Vec<String> {
    server
        .log_text()
        .lines()
        .filter(|l| l.contains("torn tail"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_and_source_catching_up_survive_sigkill_without_duplicates_or_gaps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let log = dir.path().join("server.log");
    let mut server = start(&store, &log);
    let mut js = context(&server.url).await;
    create_origin(&js, N).await;
    create_copies(&js).await;
    // Kill while catching up, several times, restarting on the same store;
    // origin messages published after each restart must be copied too.
    // At least six kills, and more (up to 24) until one has found a mirror
    // and one the source still catching up: on a fast machine the copies
    // may finish before a given kill, so each restart adds a window of
    // origin messages for them to copy again. Each kill waits up to a
    // delay cycling from 0 ms up, and comes at once when it sees a copy
    // behind that no kill has hit yet.
    let mut total = N;
    let (mut mirror_partial, mut source_partial) = (0, 0);
    let mut cycle = 0;
    while cycle < 6 || ((mirror_partial == 0 || source_partial == 0) && cycle < 24) {
        let delay = Duration::from_millis([0, 5, 15, 35, 75, 155][cycle % 6]);
        let until = Instant::now() + delay;
        let (m, f, s) = loop {
            let (m, f, s) = (
                messages(&js, "M").await,
                last_seq(&js, "F").await,
                messages(&js, "S").await,
            );
            let mirror_behind = m < total || f < filtered_last(total);
            let wanted =
                (mirror_behind && mirror_partial == 0) || (s < total && source_partial == 0);
            if wanted || Instant::now() >= until {
                break (m, f, s);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
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
        for line in torn_tails(&server) {
            eprintln!("cycle {cycle}: the restart found a torn tail: {line}");
        }
        js = context(&server.url).await;
        publish_origin(&js, total + 1, total + AFTER_RESTART).await;
        total += AFTER_RESTART;
        cycle += 1;
    }
    assert!(
        mirror_partial >= 1 && source_partial >= 1,
        "the kills should have hit the mirrors and the source mid-sync ({mirror_partial}, {source_partial})"
    );
    wait_caught_up(&js, total).await;
    check_copies(&js, total).await;
    // And still exactly once after a last clean look a moment later.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(messages(&js, "M").await, total);
    assert_eq!(messages(&js, "S").await, total);
}

/// The newest segment file of stream `name`.
fn newest_segment(store: &Path, name: &str) -> PathBuf {
    server_process::segments(store, name)
        .pop()
        .unwrap_or_else(|| panic!("stream {name}: no segment"))
}

/// What a SIGKILL in the middle of a copy's write leaves (the kernel stops
/// a write at a page boundary once the process is killed): the last record
/// of the mirror, the filtered mirror and the source cut short. The store
/// cuts a torn tail and never assigns its sequence again; a mirror, whose
/// sequences are its origin's, must then take that message again from the
/// origin instead of resuming after it (it stayed one message short for
/// good), and the source takes it again under a new sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_whose_last_record_was_torn_by_sigkill_copy_that_message_again() {
    const BEFORE: u64 = 300;
    const TOTAL: u64 = 307;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let log = dir.path().join("server.log");
    let mut server = start(&store, &log);
    let js = context(&server.url).await;
    create_origin(&js, BEFORE).await;
    create_copies(&js).await;
    wait_caught_up(&js, BEFORE).await;
    server.sigkill();
    for name in ["M", "F", "S"] {
        use std::os::unix::fs::FileExt;
        let seg = newest_segment(&store, name);
        // The active segment is extended ahead of its writes (zeros after
        // its last record): the bytes the write did not reach read as
        // zeros, the file keeps its length.
        let bytes = std::fs::read(&seg).expect("read segment");
        let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1) as u64;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .expect("open segment")
            .write_all_at(&[0u8; 3], end - 3)
            .expect("tear the last record");
    }
    let server = start(&store, &log);
    let torn = torn_tails(&server);
    assert!(
        torn.len() >= 3,
        "the restart should have cut three torn tails:\n{}",
        server.log_text()
    );
    let js = context(&server.url).await;
    // New origin messages after the restart (one on `o.1`): each copy
    // resumes from what it kept.
    publish_origin(&js, BEFORE + 1, TOTAL).await;
    // A mirror that resumed after the cut sequence reaches the last
    // sequence with one message fewer: wait for the last sequences, then
    // compare.
    let deadline = Instant::now() + Duration::from_secs(60);
    while last_seq(&js, "M").await < TOTAL
        || last_seq(&js, "F").await < filtered_last(TOTAL)
        || messages(&js, "S").await < TOTAL
    {
        assert!(Instant::now() < deadline, "the copies did not resume");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check_copies(&js, TOTAL).await;
}
