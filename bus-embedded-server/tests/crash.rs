//! Crash tests against the real binary (Durability section of the
//! reliability checklist): the server is run as a child process on a store
//! directory, killed with SIGKILL (`Child::kill`) at random moments, and
//! restarted on the same directory; the client is async-nats.
//!
//! Every random choice comes from a SplitMix64 generator seeded from the
//! cycle number; the seed is printed so a failure can be replayed.
//!
//! What these tests cannot show: SIGKILL kills the process, not the
//! machine. The kernel's page cache survives, so everything the server had
//! *written* is still there after the restart, fsynced or not. A server
//! that acknowledged after the write but before the fsync would pass every
//! test here. Only the simulated power loss of the file store's model test
//! (`src/jetstream/store/file/model.rs` on `store/sim.rs`, which drops
//! every byte and directory entry not fsynced) and the directory tests in
//! `src/jetstream/stream/mod.rs` prove fsync-before-acknowledge.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, message::PublishMessage, stream};
use futures::StreamExt;

mod server_process;

use server_process::{segments, spawn, start, stream_dir};

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

/// SplitMix64: small, deterministic, good enough to pick delays.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// Starts the binary on `store` and expects it to exit without becoming
/// ready; returns its exit status and log.
fn start_expecting_failure(store: &Path, log: &Path) -> (std::process::ExitStatus, String) {
    let mut child = spawn(store, log);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return (status, std::fs::read_to_string(log).unwrap_or_default());
        }
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("Server is ready") || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server started (or hung) instead of refusing to start; log:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

async fn connect(url: &str) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .max_reconnects(1)
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .expect("connect")
}

fn context(client: async_nats::Client) -> jetstream::Context {
    jetstream::context::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .ack_timeout(Duration::from_secs(5))
        .build(client)
}

async fn create_file_stream(js: &jetstream::Context, name: &str, subjects: &str) {
    js.create_stream(stream::Config {
        name: name.to_owned(),
        subjects: vec![subjects.to_owned()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .expect("create stream");
}

/// Every message of a stream, in delivery order: (stream sequence, payload),
/// read by an ephemeral pull consumer (ack none).
async fn read_all(js: &jetstream::Context, name: &str) -> Vec<(u64, Vec<u8>)> {
    let mut stream = js.get_stream(name).await.expect("get stream");
    let expected = stream.info().await.expect("stream info").state.messages;
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            ack_policy: consumer::AckPolicy::None,
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .expect("create reader consumer");
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
            out.push((seq, m.payload.to_vec()));
        }
        assert!(
            out.len() > before,
            "the reader stalled after {} of {expected} messages",
            out.len()
        );
    }
    out
}

// ---------------------------------------------------------------------------
// 1. Acknowledged publishes survive SIGKILL
// ---------------------------------------------------------------------------

const CYCLES: u64 = 50;
const PUBLISHERS: u64 = 4;
const WINDOW: usize = 32;
/// Payload size: large enough that the 8 MiB segments roll over a few times
/// during the test, so kills also land around segment creation.
const PAYLOAD: usize = 1000;

/// `<id>` padded with dots to `PAYLOAD` bytes.
fn crash_payload(id: u64) -> bytes::Bytes {
    let mut p = id.to_string().into_bytes();
    p.resize(PAYLOAD, b'.');
    p.into()
}

fn crash_payload_id(payload: &[u8]) -> Option<u64> {
    let digits = payload.iter().take_while(|b| b.is_ascii_digit()).count();
    if payload.len() != PAYLOAD || payload[digits..].iter().any(|b| *b != b'.') {
        return None;
    }
    std::str::from_utf8(&payload[..digits]).ok()?.parse().ok()
}

/// (publisher, message id, stream sequence) of every PubAck received.
type Acks = Arc<Mutex<Vec<(u64, u64, u64)>>>;

/// Panics unless a failed publish is what losing the server causes: the
/// server was killed, and the error is the connection's (no reply, a
/// closed subscription, a request that could not go out), not an answer
/// from the server refusing the message.
fn expect_disconnect(killed: &AtomicBool, id: u64, e: &jetstream::context::PublishError) {
    use jetstream::context::PublishErrorKind as K;
    let refused = std::error::Error::source(e)
        .is_some_and(|s| s.downcast_ref::<jetstream::Error>().is_some());
    let disconnect = matches!(e.kind(), K::BrokenPipe | K::TimedOut | K::Other) && !refused;
    assert!(
        killed.load(Ordering::SeqCst) && disconnect,
        "publish of m-{id} failed {} the server was killed: {e} ({:?})",
        if killed.load(Ordering::SeqCst) {
            "after"
        } else {
            "before"
        },
        e.kind()
    );
}

/// Publishes in windows of `WINDOW` until `stop` or the connection fails;
/// a failure before the server is killed, or one that is not the expected
/// disconnect, fails the test.
async fn publisher(
    js: jetstream::Context,
    task: u64,
    ids: Arc<AtomicU64>,
    acks: Acks,
    stop: Arc<AtomicBool>,
    killed: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let mut inflight = Vec::with_capacity(WINDOW);
        for _ in 0..WINDOW {
            let id = ids.fetch_add(1, Ordering::SeqCst);
            let publish = PublishMessage::build()
                .message_id(format!("m-{id}"))
                .payload(crash_payload(id));
            match js.send_publish(format!("crash.{task}"), publish).await {
                Ok(f) => inflight.push((id, f)),
                Err(e) => {
                    expect_disconnect(&killed, id, &e);
                    break;
                }
            }
        }
        if inflight.is_empty() {
            return;
        }
        for (id, f) in inflight {
            match f.await {
                Ok(ack) => {
                    assert!(!ack.duplicate, "fresh message id m-{id} acked as duplicate");
                    acks.lock().expect("acks").push((task, id, ack.sequence));
                }
                Err(e) => {
                    expect_disconnect(&killed, id, &e);
                    return;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_publishes_survive_sigkill_at_random_moments() {
    let began = Instant::now();
    let store = tempfile::tempdir().expect("tempdir");
    let logs = tempfile::tempdir().expect("tempdir");
    let ids = Arc::new(AtomicU64::new(0));
    // id -> acknowledged stream sequence, over all cycles.
    let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
    // Per publisher, (id, seq) in the order its acks were received.
    let mut per_task: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
    let mut kills = 0u64;
    let mut startup_kills = 0u64;
    for cycle in 0..CYCLES {
        let seed = 0xC0FF_EE00_0000_0000 ^ cycle;
        let mut rng = Rng::new(seed);
        let delay = rng.range(5, 150);
        let log = logs.path().join(format!("cycle-{cycle}.log"));
        // Every fifth cycle, one extra kill while the server starts
        // (recovering the store), before it is ready.
        if cycle % 5 == 4 {
            let early = rng.range(0, 30);
            let mut child = spawn(store.path(), &log);
            tokio::time::sleep(Duration::from_millis(early)).await;
            let _ = child.kill();
            let _ = child.wait();
            startup_kills += 1;
        }
        let mut server = start(store.path(), &log);
        let client = connect(&server.url).await;
        let js = context(client.clone());
        if cycle == 0 {
            create_file_stream(&js, "CRASH", "crash.>").await;
        }
        let acks: Acks = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let killed = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..PUBLISHERS)
            .map(|t| {
                tokio::spawn(publisher(
                    js.clone(),
                    t,
                    Arc::clone(&ids),
                    Arc::clone(&acks),
                    Arc::clone(&stop),
                    Arc::clone(&killed),
                ))
            })
            .collect();
        // Every cycle must get publishes acknowledged (a server that
        // refuses or stalls after a restart fails here), then the kill
        // comes at a random moment.
        let deadline = Instant::now() + Duration::from_secs(20);
        while acks.lock().expect("acks").is_empty() {
            assert!(
                Instant::now() < deadline,
                "cycle {cycle}: no publish acknowledged after the restart"
            );
            if tasks.iter().any(|t| t.is_finished()) {
                // A publisher failed (its panic is raised when it is joined).
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(delay)).await;
        killed.store(true, Ordering::SeqCst);
        server.sigkill();
        kills += 1;
        // Acks the server sent before it died may still be in the socket.
        tokio::time::sleep(Duration::from_millis(20)).await;
        stop.store(true, Ordering::SeqCst);
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            if let Err(e) = t.await
                && e.is_panic()
            {
                std::panic::resume_unwind(e.into_panic());
            }
        }
        drop(js);
        drop(client);
        let got = std::mem::take(&mut *acks.lock().expect("acks"));
        eprintln!(
            "cycle {cycle:2}: seed {seed:#018x}, kill {delay:3} ms after the first ack, {:5} acked",
            got.len()
        );
        assert!(!got.is_empty(), "cycle {cycle}: nothing acknowledged");
        for (task, id, seq) in got {
            per_task.entry(task).or_default().push((id, seq));
            assert!(acked.insert(id, seq).is_none(), "m-{id} acknowledged twice");
        }
    }
    // The same sequence must never have been acknowledged for two messages.
    let mut by_seq: HashMap<u64, u64> = HashMap::new();
    for (&id, &seq) in &acked {
        if let Some(other) = by_seq.insert(seq, id) {
            panic!("sequence {seq} acknowledged for both m-{other} and m-{id}");
        }
    }

    // One publisher's messages go out in order on one connection: their
    // sequences follow the order of their ids.
    for (task, list) in &per_task {
        for w in list.windows(2) {
            assert!(
                w[0].0 < w[1].0 && w[0].1 < w[1].1,
                "publisher {task}: m-{} got seq {} but the later m-{} got seq {}",
                w[0].0,
                w[0].1,
                w[1].0,
                w[1].1
            );
        }
    }

    let log = logs.path().join("final.log");
    let server = start(store.path(), &log);
    let client = connect(&server.url).await;
    let js = context(client.clone());
    let messages = read_all(&js, "CRASH").await;
    let mut found: HashMap<u64, u64> = HashMap::new();
    let mut last_seq = 0;
    for (seq, payload) in &messages {
        assert!(
            *seq > last_seq,
            "stream sequences not strictly increasing: {seq} after {last_seq}"
        );
        last_seq = *seq;
        let id = crash_payload_id(payload).unwrap_or_else(|| {
            panic!(
                "seq {seq}: damaged payload {:?}",
                String::from_utf8_lossy(payload)
            )
        });
        if let Some(first) = found.insert(id, *seq) {
            panic!("m-{id} stored twice: sequences {first} and {seq}");
        }
    }
    let mut missing = Vec::new();
    for (&id, &seq) in &acked {
        match found.get(&id) {
            Some(&s) => assert_eq!(s, seq, "m-{id} acknowledged as {seq} but stored at {s}"),
            None => missing.push((id, seq)),
        }
    }
    assert!(
        missing.is_empty(),
        "{} acknowledged messages lost, e.g. (id, seq) {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    // Dedup survives the restarts: re-publishing acknowledged ids is
    // answered as a duplicate with the original sequence.
    for (&id, &seq) in acked.iter().rev().take(20) {
        let ack = js
            .send_publish(
                "crash.0",
                PublishMessage::build()
                    .message_id(format!("m-{id}"))
                    .payload(crash_payload(id)),
            )
            .await
            .expect("publish")
            .await
            .expect("ack");
        assert!(
            ack.duplicate,
            "m-{id} re-published after restarts was stored again"
        );
        assert_eq!(ack.sequence, seq);
    }
    let unacked_kept = messages.len() - acked.len();
    let segment_files = segments(store.path(), "CRASH").len();
    eprintln!(
        "{CYCLES} cycles, {kills} kills while publishing + {startup_kills} during startup, \
         {} acknowledged messages all present once, {unacked_kept} unacknowledged kept, \
         {} ids attempted, {segment_files} segment files, {:.1} s",
        acked.len(),
        ids.load(Ordering::SeqCst),
        began.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------
// 2. Consumer acks survive SIGKILL
// ---------------------------------------------------------------------------

const CONSUMER_MSGS: u64 = 200;
const DELIVERED_FIRST: usize = 150;

/// Stream `C` with `CONSUMER_MSGS` messages (payload = index) and a durable
/// explicit-ack pull consumer `dur` (short ack wait so redeliveries after
/// the restart come quickly).
async fn consumer_setup(js: &jetstream::Context) -> consumer::PullConsumer {
    create_file_stream(js, "C", "c.>").await;
    for i in 0..CONSUMER_MSGS {
        js.publish("c.x", i.to_string().into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
    js.get_stream("C")
        .await
        .expect("stream")
        .create_consumer(consumer::pull::Config {
            durable_name: Some("dur".to_owned()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(1),
            max_ack_pending: -1,
            ..Default::default()
        })
        .await
        .expect("create durable consumer")
}

fn index_of(m: &jetstream::Message) -> u64 {
    std::str::from_utf8(&m.payload)
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("payload is an index")
}

/// After the restart: every message the durable consumer delivers (acking
/// each), until every index in `must` was seen and nothing new came for a
/// while (longer than the ack wait, so pending ones had their chance).
async fn drain_after_restart(js: &jetstream::Context, must: &BTreeSet<u64>) -> Vec<u64> {
    let consumer: consumer::PullConsumer = js
        .get_stream("C")
        .await
        .expect("stream")
        .get_consumer("dur")
        .await
        .expect("the durable consumer survived the restart");
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut quiet_since = Instant::now();
    loop {
        let mut batch = consumer
            .batch()
            .max_messages(500)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .expect("pull");
        let mut got = false;
        while let Some(m) = batch.next().await {
            let m = m.expect("message");
            seen.push(index_of(&m));
            m.ack().await.expect("ack");
            got = true;
        }
        if got {
            quiet_since = Instant::now();
        }
        let all = must.iter().all(|i| seen.contains(i));
        if all && quiet_since.elapsed() > Duration::from_millis(2500) {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "not every unacknowledged message came back: missing {:?}",
            must.iter()
                .filter(|i| !seen.contains(i))
                .collect::<Vec<_>>()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_consumer_messages_are_not_redelivered_after_sigkill() {
    let store = tempfile::tempdir().expect("tempdir");
    let logs = tempfile::tempdir().expect("tempdir");
    let mut server = start(store.path(), &logs.path().join("1.log"));
    let client = connect(&server.url).await;
    let js = context(client.clone());
    let consumer = consumer_setup(&js).await;
    let mut batch = consumer
        .fetch()
        .max_messages(DELIVERED_FIRST)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .expect("fetch");
    let mut delivered = Vec::new();
    while let Some(m) = batch.next().await {
        delivered.push(m.expect("message"));
    }
    assert_eq!(delivered.len(), DELIVERED_FIRST);
    // Double-ack two of every three delivered messages, four at a time;
    // SIGKILL once 60 confirmations are in, with more acks in flight.
    let to_ack: Vec<jetstream::Message> = delivered
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .map(|(_, m)| m)
        .collect();
    let attempted: BTreeSet<u64> = to_ack.iter().map(index_of).collect();
    let confirmed: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
    let acker = {
        let confirmed = Arc::clone(&confirmed);
        tokio::spawn(async move {
            futures::stream::iter(to_ack)
                .for_each_concurrent(4, |m| {
                    let confirmed = Arc::clone(&confirmed);
                    async move {
                        if m.double_ack().await.is_ok() {
                            confirmed.lock().expect("confirmed").insert(index_of(&m));
                        }
                    }
                })
                .await;
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while confirmed.lock().expect("confirmed").len() < 60 {
        assert!(Instant::now() < deadline, "double acks are not confirmed");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    server.sigkill();
    tokio::time::sleep(Duration::from_millis(20)).await;
    acker.abort();
    let _ = acker.await;
    drop(js);
    drop(client);
    let confirmed = confirmed.lock().expect("confirmed").clone();

    let server = start(store.path(), &logs.path().join("2.log"));
    let client = connect(&server.url).await;
    let js = context(client.clone());
    let must: BTreeSet<u64> = (0..CONSUMER_MSGS)
        .filter(|i| !attempted.contains(i))
        .collect();
    let seen = drain_after_restart(&js, &must).await;
    let back: Vec<u64> = seen
        .iter()
        .copied()
        .filter(|i| confirmed.contains(i))
        .collect();
    let unconfirmed_back = seen
        .iter()
        .filter(|i| attempted.contains(i) && !confirmed.contains(i))
        .count();
    eprintln!(
        "double ack: {} confirmed before SIGKILL, {} attempted, {} never acked; after restart \
         {} delivered ({} of the unconfirmed attempts)",
        confirmed.len(),
        attempted.len(),
        must.len(),
        seen.len(),
        unconfirmed_back
    );
    assert!(
        back.is_empty(),
        "messages whose double ack was confirmed were redelivered: {back:?}"
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_acked_consumer_messages_lose_nothing_unacked_after_sigkill() {
    let store = tempfile::tempdir().expect("tempdir");
    let logs = tempfile::tempdir().expect("tempdir");
    let mut server = start(store.path(), &logs.path().join("1.log"));
    let client = connect(&server.url).await;
    let js = context(client.clone());
    let consumer = consumer_setup(&js).await;
    let mut batch = consumer
        .fetch()
        .max_messages(DELIVERED_FIRST)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .expect("fetch");
    let mut acked = BTreeSet::new();
    let mut i = 0;
    while let Some(m) = batch.next().await {
        let m = m.expect("message");
        if i % 3 != 0 {
            m.ack().await.expect("ack");
            acked.insert(index_of(&m));
        }
        i += 1;
    }
    assert_eq!(i, DELIVERED_FIRST);
    client.flush().await.expect("flush");
    // Most acks are persisted by now (<= 20 ms); the last ones may not be.
    tokio::time::sleep(Duration::from_millis(5)).await;
    server.sigkill();
    drop(js);
    drop(client);

    let server = start(store.path(), &logs.path().join("2.log"));
    let client = connect(&server.url).await;
    let js = context(client.clone());
    let must: BTreeSet<u64> = (0..CONSUMER_MSGS).filter(|i| !acked.contains(i)).collect();
    let seen = drain_after_restart(&js, &must).await;
    let back = seen.iter().filter(|i| acked.contains(i)).count();
    eprintln!(
        "plain ack: {} acked (fire and forget) before SIGKILL, {} of them redelivered after \
         restart (allowed: at-least-once); all {} unacked delivered",
        acked.len(),
        back,
        must.len()
    );
    drop(server);
}

// ---------------------------------------------------------------------------
// 3. Damaged segment files
// ---------------------------------------------------------------------------

/// Publishes `n` messages to `subject` with payload `tag-<i>-` padded to 64
/// bytes; returns the acknowledged sequences.
async fn publish_padded(js: &jetstream::Context, subject: &str, from: u64, n: u64) -> Vec<u64> {
    let mut seqs = Vec::new();
    for i in from..from + n {
        seqs.push(
            js.publish(subject.to_owned(), padded(i).into())
                .await
                .expect("publish")
                .await
                .expect("ack")
                .sequence,
        );
    }
    seqs
}

fn padded(i: u64) -> Vec<u8> {
    let mut p = format!("msg-{i:06}-").into_bytes();
    p.resize(64, b'x');
    p
}

fn padded_index(payload: &[u8]) -> u64 {
    assert_eq!(payload.len(), 64, "payload {payload:?}");
    assert!(
        payload[11..].iter().all(|b| *b == b'x'),
        "payload {payload:?}"
    );
    std::str::from_utf8(&payload[4..10])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("payload {payload:?}"))
}

/// A durable explicit-ack pull consumer `past` on stream `T` that has
/// received and acknowledged everything up to now.
async fn catch_up(js: &jetstream::Context, want: usize) -> Vec<u64> {
    let consumer: consumer::PullConsumer = js
        .get_stream("T")
        .await
        .expect("stream")
        .get_consumer("past")
        .await
        .expect("the durable consumer");
    let mut seqs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seqs.len() < want {
        let mut batch = consumer
            .fetch()
            .max_messages(want - seqs.len())
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .expect("fetch");
        while let Some(m) = batch.next().await {
            let m = m.expect("message");
            seqs.push(m.info().expect("info").stream_sequence);
            m.double_ack().await.expect("double ack");
        }
        assert!(
            Instant::now() < deadline,
            "the consumer got only {seqs:?} of {want} messages"
        );
    }
    seqs
}

/// Item 6 of the reliability issue: the last record of the log is cut
/// (a torn write, or damage found at the next start). Recovery drops it,
/// and its sequence is never assigned again: a consumer that already
/// received and acknowledged it receives the next message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_recovers_and_its_sequence_is_never_reused() {
    let store = tempfile::tempdir().expect("tempdir");
    let logs = tempfile::tempdir().expect("tempdir");
    let mut server = start(store.path(), &logs.path().join("0.log"));
    // (sequence, payload index) of every message that must be there.
    let mut expected: Vec<(u64, u64)> = {
        let client = connect(&server.url).await;
        let js = context(client);
        create_file_stream(&js, "T", "t.>").await;
        let seqs = publish_padded(&js, "t.a", 1, 100).await;
        assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
        js.get_stream("T")
            .await
            .expect("stream")
            .create_consumer(consumer::pull::Config {
                durable_name: Some("past".to_owned()),
                ack_policy: consumer::AckPolicy::Explicit,
                ..Default::default()
            })
            .await
            .expect("create durable consumer");
        assert_eq!(catch_up(&js, 100).await, seqs);
        seqs.into_iter().map(|s| (s, s)).collect()
    };
    // A record here is 44 bytes of framing + 3 (subject) + 64 (payload) =
    // 111 bytes: cut into its checksum, its payload, its header, leaving
    // one byte of it.
    for (round, cut) in [1u64, 4, 30, 70, 110].into_iter().enumerate() {
        server.sigkill();
        let last = segments(store.path(), "T").pop().expect("a segment file");
        // The active segment is extended ahead of its writes (zeros after
        // its last record): the torn write leaves zeros where the cut
        // bytes were, the file keeps its length.
        use std::os::unix::fs::FileExt;
        let bytes = std::fs::read(&last).expect("read segment");
        let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1) as u64;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&last)
            .expect("open segment")
            .write_all_at(&vec![0u8; cut as usize], end - cut)
            .expect("zero the torn bytes");
        let (lost, _) = expected.pop().expect("a message to lose");
        server = start(
            store.path(),
            &logs.path().join(format!("{}.log", round + 1)),
        );
        assert!(
            server.log_text().contains("torn tail"),
            "cut {cut}: the log does not report the torn tail:\n{}",
            server.log_text()
        );
        let client = connect(&server.url).await;
        let js = context(client);
        let info = js
            .get_stream("T")
            .await
            .expect("stream")
            .info()
            .await
            .expect("info")
            .clone();
        assert_eq!(info.state.messages, expected.len() as u64, "cut {cut}");
        assert!(
            info.state.last_sequence >= lost,
            "cut {cut}: last sequence went back to {} below the cut {lost}",
            info.state.last_sequence
        );
        let all = read_all(&js, "T").await;
        let got: Vec<(u64, u64)> = all
            .iter()
            .map(|(s, payload)| (*s, padded_index(payload)))
            .collect();
        assert_eq!(got, expected, "cut {cut}");
        // New publishes never get the cut sequence again, and the consumer
        // that had it receives the new message.
        let index = 1000 + round as u64;
        let next = publish_padded(&js, "t.a", index, 1).await[0];
        assert!(
            next > lost,
            "cut {cut}: sequence {lost} was given again to a new message"
        );
        assert_eq!(
            catch_up(&js, 1).await,
            vec![next],
            "cut {cut}: the consumer past the cut record skipped the new message"
        );
        eprintln!(
            "cut {cut:3} bytes off the last record (seq {lost}): {} messages recovered, \
             next publish got seq {next}, delivered to the consumer",
            expected.len()
        );
        expected.push((next, index));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_bit_mid_segment_is_reported_and_later_messages_kept() {
    let store = tempfile::tempdir().expect("tempdir");
    let logs = tempfile::tempdir().expect("tempdir");
    let mut server = start(store.path(), &logs.path().join("0.log"));
    {
        let client = connect(&server.url).await;
        let js = context(client);
        create_file_stream(&js, "F", "f.>").await;
        publish_padded(&js, "f.a", 1, 100).await;
    }
    server.sigkill();
    let segs = segments(store.path(), "F");
    assert_eq!(segs.len(), 1, "expected one segment: {segs:?}");
    let mut bytes = std::fs::read(&segs[0]).expect("read segment");
    let damaged = 50u64;
    let needle = format!("msg-{damaged:06}-");
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .expect("the payload of message 50 in the segment");
    bytes[at + 20] ^= 0x04; // a bit in the padding of its payload
    std::fs::write(&segs[0], &bytes).expect("write segment");

    let server = start(store.path(), &logs.path().join("1.log"));
    let log = server.log_text();
    assert!(
        log.contains("corrupt"),
        "the log does not mention the corrupt record:\n{log}"
    );
    let client = connect(&server.url).await;
    let js = context(client);
    let mut stream = js.get_stream("F").await.expect("stream");
    let info = stream.info().await.expect("info").clone();
    assert_eq!(info.state.messages, 99);
    assert_eq!(info.state.last_sequence, 100);
    let all = read_all(&js, "F").await;
    let seqs: Vec<u64> = all.iter().map(|(s, _)| *s).collect();
    let want: Vec<u64> = (1..=100).filter(|s| *s != damaged).collect();
    assert_eq!(seqs, want);
    for (seq, payload) in &all {
        assert_eq!(padded_index(payload), *seq);
    }
    match stream.get_raw_message(damaged).await {
        Ok(m) => panic!("the damaged message is served: {m:?}"),
        Err(e) => assert_eq!(
            e.kind(),
            async_nats::jetstream::stream::RawMessageErrorKind::NoMessageFound,
            "the damaged message must read as deleted (10037 no message found): {e}"
        ),
    }
    let next = publish_padded(&js, "f.a", 101, 1).await;
    assert_eq!(next, vec![101]);
    eprintln!(
        "bit flip at byte {} of the segment (message {damaged}): 99 messages kept, log line: {}",
        at + 20,
        log.lines()
            .find(|l| l.contains("corrupt"))
            .unwrap_or_default()
    );
}

// ---------------------------------------------------------------------------
// 4. Damaged stream metadata
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_stream_metadata_refuses_start_and_keeps_the_stream_directory() {
    let store = tempfile::tempdir().expect("tempdir");
    let logs = tempfile::tempdir().expect("tempdir");
    let mut server = start(store.path(), &logs.path().join("0.log"));
    {
        let client = connect(&server.url).await;
        let js = context(client);
        create_file_stream(&js, "M", "m.>").await;
        publish_padded(&js, "m.a", 1, 10).await;
    }
    server.sigkill();
    let dir = stream_dir(store.path(), "M");
    let meta = dir.join("meta.json");
    let good = std::fs::read(&meta).expect("meta.json");
    let sizes = |segs: &[PathBuf]| -> Vec<(PathBuf, u64)> {
        segs.iter()
            .map(|p| (p.clone(), std::fs::metadata(p).expect("segment").len()))
            .collect()
    };
    let before = sizes(&segments(store.path(), "M"));
    assert!(!before.is_empty());

    for (what, damage) in [
        ("garbage", b"{\"config\": {not json".to_vec()),
        ("empty", Vec::new()),
        ("truncated", good[..good.len() / 2].to_vec()),
    ] {
        std::fs::write(&meta, &damage).expect("damage meta.json");
        let (status, log) =
            start_expecting_failure(store.path(), &logs.path().join(format!("{what}.log")));
        assert!(!status.success(), "{what}: exit status {status}");
        assert!(
            log.contains(&meta.display().to_string()),
            "{what}: the error does not name {}:\n{log}",
            meta.display()
        );
        assert!(dir.is_dir(), "{what}: the stream directory was removed");
        assert_eq!(
            sizes(&segments(store.path(), "M")),
            before,
            "{what}: segment files changed"
        );
        assert_eq!(
            std::fs::read(&meta).expect("meta.json"),
            damage,
            "{what}: meta.json was rewritten"
        );
        eprintln!(
            "{what} meta.json: {status}: {}",
            log.lines()
                .find(|l| l.contains("meta.json"))
                .unwrap_or_default()
        );
    }

    // Repairing the file brings everything back.
    std::fs::write(&meta, &good).expect("restore meta.json");
    let server = start(store.path(), &logs.path().join("restored.log"));
    let client = connect(&server.url).await;
    let js = context(client);
    let all = read_all(&js, "M").await;
    assert_eq!(all.len(), 10);
    for (seq, payload) in &all {
        assert_eq!(padded_index(payload), *seq);
    }
}

// ---------------------------------------------------------------------------
// 5. Confirmed deletes, purges and consumer changes survive SIGKILL
// ---------------------------------------------------------------------------

const CHANGE_CYCLES: u64 = 12;
const CHANGE_SUBJECTS: [&str; 3] = ["d.a", "d.b", "d.c"];

/// One operation of the change test.
#[derive(Debug, Clone)]
enum Change {
    Publish(String, Vec<u8>),
    Delete {
        seq: u64,
        erase: bool,
    },
    Purge {
        filter: Option<String>,
        below: Option<u64>,
        keep: Option<u64>,
    },
    CreateConsumer(String),
    DeleteConsumer(String),
}

impl Change {
    fn describe(&self) -> String {
        match self {
            Change::Publish(subject, _) => format!("publish to {subject}"),
            other => format!("{other:?}"),
        }
    }
}

/// What the server confirmed: the messages of stream `D` (sequence ->
/// subject and payload) and its durable consumers.
#[derive(Debug, Default)]
struct Confirmed {
    present: BTreeMap<u64, (String, Vec<u8>)>,
    consumers: BTreeSet<String>,
    /// Sent, not confirmed when the server died: its outcome is unknown.
    in_flight: Option<Change>,
    confirmed: u64,
    deletes: u64,
    purges: u64,
    consumer_changes: u64,
}

impl Confirmed {
    /// Sequences a purge removes, as the server computes them.
    fn victims(&self, filter: &Option<String>, below: Option<u64>, keep: Option<u64>) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .present
            .iter()
            .filter(|(_, (subject, _))| filter.as_ref().is_none_or(|f| f == subject))
            .map(|(s, _)| *s)
            .collect();
        if let Some(below) = below {
            v.retain(|s| *s < below);
        }
        if let Some(keep) = keep {
            v.truncate(v.len().saturating_sub(keep as usize));
        }
        v
    }

    /// Whether the change in flight may have removed `seq`.
    fn maybe_removed(&self, seq: u64) -> bool {
        match &self.in_flight {
            Some(Change::Delete { seq: s, .. }) => *s == seq,
            Some(Change::Purge {
                filter,
                below,
                keep,
            }) => self.victims(filter, *below, *keep).contains(&seq),
            _ => false,
        }
    }
}

/// `<subject>|<n>`: the payload carries its subject (read back by
/// `read_all`, which returns payloads only).
fn change_payload(subject: &str, n: u64) -> Vec<u8> {
    format!("{subject}|{n}").into_bytes()
}

async fn durable_names(stream: &jetstream::stream::Stream) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut list = stream.consumer_names();
    while let Some(n) = list.next().await {
        let n = n.expect("consumer name");
        if n.starts_with("dur-") {
            names.insert(n);
        }
    }
    names
}

/// After a restart: the stream and its consumers are what was confirmed,
/// give or take the change in flight when the server died.
async fn check_confirmed(js: &jetstream::Context, model: &mut Confirmed, cycle: u64) {
    let stream = js.get_stream("D").await.expect("stream D");
    // Consumers first: read_all adds an ephemeral one.
    let names = durable_names(&stream).await;
    for name in names.symmetric_difference(&model.consumers) {
        let explained = match &model.in_flight {
            Some(Change::CreateConsumer(n) | Change::DeleteConsumer(n)) => n == name,
            _ => false,
        };
        assert!(
            explained,
            "cycle {cycle}: consumer {name} is {} although the opposite was confirmed",
            if names.contains(name) { "back" } else { "gone" }
        );
    }
    let found: BTreeMap<u64, Vec<u8>> = read_all(js, "D").await.into_iter().collect();
    for (seq, (_, payload)) in &model.present {
        match found.get(seq) {
            Some(p) => assert_eq!(p, payload, "cycle {cycle}: seq {seq} changed"),
            None => assert!(
                model.maybe_removed(*seq),
                "cycle {cycle}: confirmed message {seq} is lost"
            ),
        }
    }
    let mut present = BTreeMap::new();
    for (seq, payload) in found {
        let subject = match model.present.get(&seq) {
            Some((subject, _)) => subject.clone(),
            None => match &model.in_flight {
                Some(Change::Publish(subject, p)) if *p == payload => subject.clone(),
                _ => panic!(
                    "cycle {cycle}: message {seq} ({}) is there although it was confirmed deleted or never published",
                    String::from_utf8_lossy(&payload)
                ),
            },
        };
        present.insert(seq, (subject, payload));
    }
    model.present = present;
    model.consumers = names;
    model.in_flight = None;
}

/// Runs random changes one at a time, recording each confirmation; after
/// a confirmed delete or purge it sometimes asks for the kill right away.
async fn changer(
    js: jetstream::Context,
    model: Arc<Mutex<Confirmed>>,
    killed: Arc<AtomicBool>,
    kill_now: Arc<tokio::sync::Notify>,
    mut rng: Rng,
) {
    let stream = js.get_stream("D").await.expect("stream D");
    let mut n = 0u64;
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        assert!(
            killed.load(Ordering::SeqCst),
            "{what} failed before the server was killed: {e}"
        );
    };
    loop {
        n += 1;
        let change = {
            let m = model.lock().expect("model");
            let seqs: Vec<u64> = m.present.keys().copied().collect();
            let pick = |r: &mut Rng| seqs[(r.next() % seqs.len() as u64) as usize];
            match rng.range(0, 99) {
                0..=44 => {
                    let subject = CHANGE_SUBJECTS[rng.range(0, 2) as usize];
                    let tag = rng.next();
                    Change::Publish(subject.to_owned(), change_payload(subject, tag))
                }
                45..=64 if !seqs.is_empty() => Change::Delete {
                    seq: pick(&mut rng),
                    erase: rng.range(0, 1) == 0,
                },
                65..=79 if !seqs.is_empty() => {
                    let filter = match rng.range(0, 3) {
                        0 => None,
                        i => Some(CHANGE_SUBJECTS[i as usize - 1].to_owned()),
                    };
                    match rng.range(0, 2) {
                        0 => Change::Purge {
                            filter,
                            below: Some(pick(&mut rng)),
                            keep: None,
                        },
                        1 => Change::Purge {
                            filter,
                            below: None,
                            keep: Some(rng.range(0, 3)),
                        },
                        _ => Change::Purge {
                            filter,
                            below: None,
                            keep: None,
                        },
                    }
                }
                80..=89 => Change::CreateConsumer(format!("dur-{}", rng.range(0, 5))),
                _ if !m.consumers.is_empty() => {
                    let names: Vec<&String> = m.consumers.iter().collect();
                    Change::DeleteConsumer(
                        names[rng.range(0, names.len() as u64 - 1) as usize].clone(),
                    )
                }
                _ => continue,
            }
        };
        model.lock().expect("model").in_flight = Some(change.clone());
        let mut kill_after = false;
        match &change {
            Change::Publish(subject, payload) => {
                match js.publish(subject.clone(), payload.clone().into()).await {
                    Ok(f) => match f.await {
                        Ok(ack) => {
                            let mut m = model.lock().expect("model");
                            m.present
                                .insert(ack.sequence, (subject.clone(), payload.clone()));
                        }
                        Err(e) => return fail("publish", &e),
                    },
                    Err(e) => return fail("publish", &e),
                }
            }
            Change::Delete { seq, erase } => {
                let body = serde_json::json!({"seq": seq, "no_erase": !erase});
                let got: Result<serde_json::Value, _> =
                    js.request("STREAM.MSG.DELETE.D", &body).await;
                match got {
                    Ok(v) if v["success"] == true => {
                        let mut m = model.lock().expect("model");
                        m.present.remove(seq);
                        m.deletes += 1;
                        kill_after = rng.range(0, 3) == 0;
                    }
                    Ok(v) => panic!("delete of {seq} refused: {v}"),
                    Err(e) => return fail("delete", &e),
                }
            }
            Change::Purge {
                filter,
                below,
                keep,
            } => {
                let want = model.lock().expect("model").victims(filter, *below, *keep);
                let got = match (below, keep) {
                    (Some(b), _) => match filter {
                        Some(f) => stream.purge().filter(f.clone()).sequence(*b).await,
                        None => stream.purge().sequence(*b).await,
                    },
                    (None, Some(k)) => match filter {
                        Some(f) => stream.purge().filter(f.clone()).keep(*k).await,
                        None => stream.purge().keep(*k).await,
                    },
                    (None, None) => match filter {
                        Some(f) => stream.purge().filter(f.clone()).await,
                        None => stream.purge().await,
                    },
                };
                match got {
                    Ok(r) => {
                        assert_eq!(r.purged, want.len() as u64, "purge {change:?}");
                        let mut m = model.lock().expect("model");
                        for v in want {
                            m.present.remove(&v);
                        }
                        m.purges += 1;
                        kill_after = rng.range(0, 3) == 0;
                    }
                    Err(e) => return fail("purge", &e),
                }
            }
            Change::CreateConsumer(name) => {
                let got = stream
                    .create_consumer(consumer::pull::Config {
                        durable_name: Some(name.clone()),
                        ack_policy: consumer::AckPolicy::Explicit,
                        ..Default::default()
                    })
                    .await;
                match got {
                    Ok(_) => {
                        let mut m = model.lock().expect("model");
                        m.consumers.insert(name.clone());
                        m.consumer_changes += 1;
                        kill_after = rng.range(0, 5) == 0;
                    }
                    Err(e) => return fail("consumer create", &e),
                }
            }
            Change::DeleteConsumer(name) => match stream.delete_consumer(name).await {
                Ok(_) => {
                    let mut m = model.lock().expect("model");
                    m.consumers.remove(name);
                    m.consumer_changes += 1;
                    kill_after = rng.range(0, 5) == 0;
                }
                Err(e) => return fail("consumer delete", &e),
            },
        }
        {
            let mut m = model.lock().expect("model");
            m.in_flight = None;
            m.confirmed += 1;
        }
        if kill_after && n > 5 {
            // Only a kill waiting right now (no permit kept for later).
            kill_now.notify_waiters();
        }
    }
}

/// Issue 12, item 15: message deletes (plain and erasing), purges (by
/// subject, below a sequence, keeping the newest) and durable consumer
/// creates and deletes, each confirmed, survive a SIGKILL; the kill often
/// comes right after a confirmed delete or purge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_deletes_purges_and_consumer_changes_survive_sigkill() {
    let store = tempfile::tempdir().expect("tempdir");
    let logs = tempfile::tempdir().expect("tempdir");
    let model = Arc::new(Mutex::new(Confirmed::default()));
    let mut right_after = 0;
    for cycle in 0..=CHANGE_CYCLES {
        let seed = 0xDE1E_7E00_0000_0000 ^ cycle;
        let mut rng = Rng::new(seed);
        let server = start(store.path(), &logs.path().join(format!("{cycle}.log")));
        let client = connect(&server.url).await;
        let js = context(client.clone());
        if cycle == 0 {
            create_file_stream(&js, "D", "d.>").await;
        } else {
            let mut taken = std::mem::take(&mut *model.lock().expect("model"));
            let before = (taken.present.len(), taken.consumers.len());
            check_confirmed(&js, &mut taken, cycle).await;
            eprintln!(
                "cycle {cycle:2}: after the restart {} messages and {} consumers, as confirmed \
                 (before the kill: {before:?})",
                taken.present.len(),
                taken.consumers.len()
            );
            *model.lock().expect("model") = taken;
        }
        if cycle == CHANGE_CYCLES {
            break;
        }
        let mut server = server;
        let killed = Arc::new(AtomicBool::new(false));
        let kill_now = Arc::new(tokio::sync::Notify::new());
        let before = model.lock().expect("model").confirmed;
        let task = tokio::spawn(changer(
            js.clone(),
            Arc::clone(&model),
            Arc::clone(&killed),
            Arc::clone(&kill_now),
            Rng::new(rng.next()),
        ));
        let deadline = Instant::now() + Duration::from_secs(20);
        while model.lock().expect("model").confirmed < before + 20 && !task.is_finished() {
            assert!(
                Instant::now() < deadline,
                "cycle {cycle}: changes are not confirmed"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Even cycles: kill right after a confirmed delete or purge (if one
        // comes in time); odd cycles: at a random moment.
        let wait = Duration::from_millis(rng.range(20, 300));
        let now = if cycle % 2 == 0 {
            tokio::select! {
                _ = kill_now.notified() => true,
                _ = tokio::time::sleep(wait) => false,
            }
        } else {
            tokio::time::sleep(wait).await;
            false
        };
        killed.store(true, Ordering::SeqCst);
        server.sigkill();
        right_after += u64::from(now);
        tokio::time::sleep(Duration::from_millis(20)).await;
        task.abort();
        if let Err(e) = task.await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
        let m = model.lock().expect("model");
        eprintln!(
            "cycle {cycle:2}: seed {seed:#018x}, {} changes confirmed, killed {}, in flight: {:?}",
            m.confirmed - before,
            if now {
                "right after a confirmed delete or purge"
            } else {
                "at a random moment"
            },
            m.in_flight.as_ref().map(Change::describe)
        );
        drop(m);
        drop(js);
        drop(client);
    }
    let m = model.lock().expect("model");
    eprintln!(
        "{CHANGE_CYCLES} kills ({right_after} right after a confirmed delete or purge): {} changes confirmed, {} deletes, {} purges, {} consumer creates/deletes",
        m.confirmed, m.deletes, m.purges, m.consumer_changes
    );
    assert!(m.deletes > 0 && m.purges > 0 && m.consumer_changes > 0);
}

// ---------------------------------------------------------------------------
// 5. Atomic batches are whole or absent after SIGKILL
// ---------------------------------------------------------------------------
//
// A batch is in one buffered chunk, normally one write call, which SIGKILL
// cannot tear; what
// this proves is that every committed batch survives, at the sequences its
// PubAck gave, and that recovery keeps the bracketed records as whole
// batches. A batch cut at any byte (power loss, torn write) is the file
// store's model test (`atomic_batch` operations) and
// `an_atomic_batch_cut_anywhere_is_dropped_whole_on_recovery`.

const BATCH_CYCLES: u64 = 20;
const BATCH_PUBLISHERS: u64 = 3;
const BATCH_PAYLOAD: usize = 1000;

/// `<publisher>:<batch>:<index>:<size>` padded with dots.
fn batch_payload(publisher: u64, batch: u64, index: u64, size: u64) -> bytes::Bytes {
    let mut p = format!("{publisher}:{batch}:{index}:{size}").into_bytes();
    p.resize(BATCH_PAYLOAD, b'.');
    p.into()
}

/// (publisher, batch, index, size) from a payload, `None` if damaged.
fn batch_payload_parts(payload: &[u8]) -> Option<(u64, u64, u64, u64)> {
    if payload.len() != BATCH_PAYLOAD {
        return None;
    }
    let text = std::str::from_utf8(payload).ok()?;
    let (head, dots) = text.split_at(text.find('.')?);
    if dots.bytes().any(|b| b != b'.') {
        return None;
    }
    let mut parts = head.split(':').map(|p| p.parse::<u64>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next()??,
        parts.next()??,
    ))
}

/// (publisher, batch) -> (size, last sequence) of every committed batch.
type BatchAcks = Arc<Mutex<BTreeMap<(u64, u64), (u64, u64)>>>;

/// Publishes atomic batches of 1..=120 messages until the connection
/// fails: every message but the last without a reply, the last with
/// `Nats-Batch-Commit: 1` as a request whose PubAck is recorded.
async fn batch_publisher(
    client: async_nats::Client,
    publisher: u64,
    first_batch: u64,
    mut rng: Rng,
    acks: BatchAcks,
    killed: Arc<AtomicBool>,
) {
    for batch in first_batch.. {
        let size = rng.range(1, 120);
        let id = format!("p{publisher}-b{batch}");
        let subject = format!("batch.{publisher}");
        for index in 1..=size {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Batch-Id", id.as_str());
            headers.insert("Nats-Batch-Sequence", index.to_string().as_str());
            let payload = batch_payload(publisher, batch, index, size);
            if index < size {
                if client
                    .publish_with_headers(subject.clone(), headers, payload)
                    .await
                    .is_err()
                {
                    assert!(
                        killed.load(Ordering::SeqCst),
                        "{id}: publish failed before the kill"
                    );
                    return;
                }
                continue;
            }
            headers.insert("Nats-Batch-Commit", "1");
            let reply = match client
                .request_with_headers(subject.clone(), headers, payload)
                .await
            {
                Ok(reply) => reply,
                Err(e) => {
                    assert!(
                        killed.load(Ordering::SeqCst),
                        "{id}: commit failed before the kill: {e}"
                    );
                    return;
                }
            };
            let ack: serde_json::Value = serde_json::from_slice(&reply.payload)
                .unwrap_or_else(|e| panic!("{id}: commit reply is not JSON ({e})"));
            assert!(ack.get("error").is_none(), "{id}: commit refused: {ack}");
            assert_eq!(ack["batch"], serde_json::json!(id), "{id}: {ack}");
            assert_eq!(ack["count"], serde_json::json!(size), "{id}: {ack}");
            let last = ack["seq"]
                .as_u64()
                .unwrap_or_else(|| panic!("{id}: no seq in {ack}"));
            acks.lock()
                .expect("acks")
                .insert((publisher, batch), (size, last));
        }
    }
}

/// Reads the whole stream and checks every batch in it is whole: all its
/// messages, in order, at consecutive sequences, once. Returns
/// (publisher, batch) -> (size, last sequence) of the batches found.
async fn stored_batches(js: &jetstream::Context) -> BTreeMap<(u64, u64), (u64, u64)> {
    let messages = read_all(js, "B").await;
    let mut found: BTreeMap<(u64, u64), (u64, u64)> = BTreeMap::new();
    let mut open: Option<((u64, u64), u64, u64)> = None; // (key, next index, size)
    for (seq, payload) in &messages {
        let (publisher, batch, index, size) = batch_payload_parts(payload).unwrap_or_else(|| {
            panic!(
                "seq {seq}: damaged payload {:?}",
                String::from_utf8_lossy(payload)
            )
        });
        let key = (publisher, batch);
        match open {
            Some((k, next, _)) => assert!(
                k == key && next == index,
                "seq {seq}: p{publisher}-b{batch} message {index} where p{}-b{} message {next} \
                 was due (a batch torn apart or interleaved)",
                k.0,
                k.1
            ),
            None => {
                assert_eq!(
                    index, 1,
                    "seq {seq}: p{publisher}-b{batch} starts at message {index} of {size}"
                );
                assert!(
                    !found.contains_key(&key),
                    "p{publisher}-b{batch} stored twice"
                );
            }
        }
        if index == size {
            found.insert(key, (size, *seq));
            open = None;
        } else {
            open = Some((key, index + 1, size));
        }
    }
    if let Some((k, next, size)) = open {
        panic!(
            "p{}-b{} ends at message {} of {size}: a partial batch was stored",
            k.0,
            k.1,
            next - 1
        );
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atomic_batches_are_whole_or_absent_after_sigkill() {
    let store = tempfile::tempdir().expect("tempdir");
    let logs = tempfile::tempdir().expect("tempdir");
    let mut acked: BTreeMap<(u64, u64), (u64, u64)> = BTreeMap::new();
    let mut next_batch = 0u64;
    let mut kept_unacked = 0usize;
    for cycle in 0..=BATCH_CYCLES {
        let seed = 0xBA7C_0000_0000_0000 ^ cycle;
        let mut rng = Rng::new(seed);
        let mut server = start(store.path(), &logs.path().join(format!("{cycle}.log")));
        let client = connect(&server.url).await;
        let js = context(client.clone());
        if cycle == 0 {
            js.create_stream(stream::Config {
                name: "B".to_owned(),
                subjects: vec!["batch.>".to_owned()],
                storage: stream::StorageType::File,
                allow_atomic_publish: true,
                ..Default::default()
            })
            .await
            .expect("create stream");
        } else {
            let found = stored_batches(&js).await;
            for (key, want) in &acked {
                assert_eq!(
                    found.get(key),
                    Some(want),
                    "cycle {cycle}: committed batch p{}-b{} (size, last seq) lost or moved",
                    key.0,
                    key.1
                );
            }
            kept_unacked = found.len() - acked.len();
        }
        if cycle == BATCH_CYCLES {
            eprintln!(
                "{BATCH_CYCLES} kills: {} committed batches whole, {kept_unacked} unconfirmed \
                 batches kept whole, no partial batch",
                acked.len()
            );
            break;
        }
        let acks: BatchAcks = Arc::default();
        let killed = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..BATCH_PUBLISHERS)
            .map(|p| {
                let first = next_batch + p * 1_000_000;
                tokio::spawn(batch_publisher(
                    client.clone(),
                    p,
                    first,
                    Rng::new(rng.next()),
                    Arc::clone(&acks),
                    Arc::clone(&killed),
                ))
            })
            .collect();
        next_batch += 10_000;
        let deadline = Instant::now() + Duration::from_secs(20);
        while acks.lock().expect("acks").is_empty() && !tasks.iter().any(|t| t.is_finished()) {
            assert!(
                Instant::now() < deadline,
                "cycle {cycle}: no batch committed"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.range(5, 200))).await;
        killed.store(true, Ordering::SeqCst);
        server.sigkill();
        tokio::time::sleep(Duration::from_millis(20)).await;
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            if let Err(e) = t.await
                && e.is_panic()
            {
                std::panic::resume_unwind(e.into_panic());
            }
        }
        let got = std::mem::take(&mut *acks.lock().expect("acks"));
        eprintln!(
            "cycle {cycle:2}: seed {seed:#018x}, {} batches committed",
            got.len()
        );
        assert!(!got.is_empty(), "cycle {cycle}: nothing committed");
        acked.extend(got);
        drop(js);
        drop(client);
    }
}
