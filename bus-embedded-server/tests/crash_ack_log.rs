//! The binary SIGKILLed while a durable consumer's acks are confirmed
//! through its state log (`obs/<name>/state.log`, see
//! `stream/consumer/state_log.rs`): over several kill-and-restart cycles,
//! with many double acks in flight, no message whose ack was confirmed is
//! delivered again, and every message never confirmed still comes (or
//! stays pending) after the last restart. Each cycle's first state write
//! compacts into `state.json` and the later ones append to the log, so the
//! kills land on both. SIGKILL spares the page cache: a power loss before
//! the log's fdatasync is shown by the simulated filesystem instead
//! (`state_log::tests::power_loss_before_the_sync_loses_only_the_unsynced_record`
//! and the consumer model test). Kept apart from `crash.rs` (which other
//! work edits).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;

mod server_process;

use server_process::start;

const MESSAGES: u64 = 1500;
const CYCLES: u64 = 3;

async fn connect(url: &str) -> (async_nats::Client, jetstream::Context) {
    let client = async_nats::ConnectOptions::new()
        .max_reconnects(1)
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .expect("connect");
    let js = jetstream::context::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .build(client.clone());
    (client, js)
}

fn index_of(m: &jetstream::Message) -> u64 {
    std::str::from_utf8(&m.payload)
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("payload is an index")
}

async fn durable(js: &jetstream::Context) -> consumer::PullConsumer {
    js.get_stream("A")
        .await
        .expect("stream")
        .get_consumer("dur")
        .await
        .expect("the durable consumer survived the restart")
}

/// Up to `want` deliveries (fewer once nothing comes for a while).
async fn fetch(c: &consumer::PullConsumer, want: usize) -> Vec<jetstream::Message> {
    let mut out = Vec::new();
    while out.len() < want {
        let mut batch = c
            .fetch()
            .max_messages(want - out.len())
            .expires(Duration::from_millis(700))
            .messages()
            .await
            .expect("fetch");
        let before = out.len();
        while let Some(m) = batch.next().await {
            out.push(m.expect("message"));
        }
        if out.len() == before {
            break;
        }
    }
    out
}

/// Stream `A` with [`MESSAGES`] messages and the durable pull consumer
/// `dur` (explicit acks, 1 s ack wait) on it.
async fn fill_stream_and_create_durable(js: &jetstream::Context) {
    js.create_stream(stream::Config {
        name: "A".to_owned(),
        subjects: vec!["a.>".to_owned()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .expect("create stream");
    let mut acks = Vec::new();
    for i in 0..MESSAGES {
        acks.push(
            js.publish("a.x", i.to_string().into())
                .await
                .expect("publish"),
        );
    }
    for a in acks {
        a.await.expect("puback");
    }
    js.get_stream("A")
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
        .expect("create durable consumer");
}

/// The messages of `got` whose ack was already confirmed.
fn already_confirmed(got: &[jetstream::Message], confirmed: &Mutex<BTreeSet<u64>>) -> Vec<u64> {
    let done = confirmed.lock().expect("confirmed");
    got.iter()
        .map(index_of)
        .filter(|i| done.contains(i))
        .collect()
}

/// After the last start: reads and acks until every message never handed
/// to the acker (not in `attempted`) came and nothing more comes for longer
/// than the ack wait (pending ones had their redelivery), asserting that
/// none whose ack was confirmed comes again; returns what came.
async fn drain_after_the_last_start(
    c: &consumer::PullConsumer,
    confirmed: &BTreeSet<u64>,
    attempted: &BTreeSet<u64>,
) -> BTreeSet<u64> {
    let must: BTreeSet<u64> = (0..MESSAGES).filter(|i| !attempted.contains(i)).collect();
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut quiet_since = Instant::now();
    loop {
        let got = fetch(c, 500).await;
        if !got.is_empty() {
            quiet_since = Instant::now();
        }
        for m in got {
            let i = index_of(&m);
            assert!(
                !confirmed.contains(&i),
                "message {i}: its ack was confirmed, yet it was delivered after the restart"
            );
            seen.insert(i);
            m.ack().await.expect("ack");
        }
        if must.is_subset(&seen) && quiet_since.elapsed() > Duration::from_millis(2500) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "messages never acked did not come: {:?}",
            must.difference(&seen).collect::<Vec<_>>()
        );
    }
    seen
}

fn state_log(store: &Path) -> std::path::PathBuf {
    store.join("jetstream/$G/streams/A/obs/dur/state.log")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_acks_in_the_state_log_are_never_redelivered_after_repeated_sigkills() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let confirmed: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
    // Every message handed to the acker (its ack may or may not have been
    // sent, and may or may not have been written, when the kill came).
    let mut attempted = BTreeSet::new();
    for cycle in 0..CYCLES {
        let mut server = start(&store, &dir.path().join(format!("{cycle}.log")));
        let (client, js) = connect(&server.url).await;
        if cycle == 0 {
            fill_stream_and_create_durable(&js).await;
        }
        let c = durable(&js).await;
        let got = fetch(&c, 450).await;
        let again = already_confirmed(&got, &confirmed);
        assert!(
            again.is_empty(),
            "cycle {cycle}: messages whose ack was confirmed were delivered again: {again:?}"
        );
        assert!(!got.is_empty(), "cycle {cycle}: nothing delivered");
        attempted.extend(got.iter().map(index_of));
        // Double-ack them, 64 in flight; SIGKILL after a number of
        // confirmations that differs per cycle, with acks still in flight.
        let kill_after = [37usize, 211, 140][cycle as usize % 3].min(got.len() - 1);
        let confirmed_now: Arc<Mutex<usize>> = Arc::default();
        let acker = {
            let confirmed = Arc::clone(&confirmed);
            let confirmed_now = Arc::clone(&confirmed_now);
            tokio::spawn(async move {
                futures::stream::iter(got)
                    .for_each_concurrent(64, |m| {
                        let confirmed = Arc::clone(&confirmed);
                        let confirmed_now = Arc::clone(&confirmed_now);
                        async move {
                            if m.double_ack().await.is_ok() {
                                confirmed.lock().expect("confirmed").insert(index_of(&m));
                                *confirmed_now.lock().expect("count") += 1;
                            }
                        }
                    })
                    .await;
            })
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while *confirmed_now.lock().expect("count") < kill_after {
            assert!(Instant::now() < deadline, "double acks are not confirmed");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        server.sigkill();
        acker.abort();
        let _ = acker.await;
        drop(js);
        drop(client);
        if cycle > 0 {
            // The acks of this cycle went to the log (the first write of a
            // process compacts, the later ones append).
            let log = std::fs::metadata(state_log(&store))
                .map(|m| m.len())
                .unwrap_or(0);
            assert!(log > 0, "cycle {cycle}: nothing was appended to state.log");
        }
    }
    // Last start: nothing confirmed comes again; everything never handed
    // to the acker comes, and the rest of the unconfirmed ones may (their
    // ack may have been written before the kill).
    let server = start(&store, &dir.path().join("last.log"));
    let (_client, js) = connect(&server.url).await;
    let c = durable(&js).await;
    let confirmed = confirmed.lock().expect("confirmed").clone();
    let seen = drain_after_the_last_start(&c, &confirmed, &attempted).await;
    eprintln!(
        "{} acks confirmed over {CYCLES} SIGKILLs, {} messages delivered after the last restart",
        confirmed.len(),
        seen.len()
    );
    assert!(
        confirmed.len() >= 37 + 140,
        "too few confirmations to prove anything"
    );
}

/// A batch acknowledgement as the bus sends it (`Delivery::ack_all` on a
/// NATS backend): every ack of a fetched batch but the last sent without
/// waiting, the last as a double ack whose confirmation stands for the
/// whole batch (ARCHITECTURE.md, "Batch acknowledgement"). SIGKILLed over
/// several cycles with batches in flight: no message of a batch whose last
/// ack was confirmed is delivered again, and every message never handed to
/// the acker still comes after the last restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_batch_ack_is_never_redelivered_after_repeated_sigkills() {
    const BATCH: usize = 50;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let confirmed: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
    let mut attempted = BTreeSet::new();
    let mut batches_confirmed = 0usize;
    for cycle in 0..CYCLES {
        let mut server = start(&store, &dir.path().join(format!("batch{cycle}.log")));
        let (client, js) = connect(&server.url).await;
        if cycle == 0 {
            fill_stream_and_create_durable(&js).await;
        }
        let c = durable(&js).await;
        let got = fetch(&c, 400).await;
        let again = already_confirmed(&got, &confirmed);
        assert!(
            again.is_empty(),
            "cycle {cycle}: messages of a confirmed batch ack were delivered again: {again:?}"
        );
        assert!(got.len() > BATCH, "cycle {cycle}: too little delivered");
        attempted.extend(got.iter().map(index_of));
        // Batches acked one after another by two tasks (so a batch's
        // plain acks interleave with another's double ack); SIGKILL after
        // a number of confirmed batches that differs per cycle.
        let kill_after = [1usize, 4, 2][cycle as usize % 3];
        let batches_now: Arc<Mutex<usize>> = Arc::default();
        let mut chunks: Vec<Vec<jetstream::Message>> = Vec::new();
        let mut rest = got;
        while !rest.is_empty() {
            let tail = rest.split_off(BATCH.min(rest.len()));
            chunks.push(std::mem::replace(&mut rest, tail));
        }
        let ackers: Vec<_> = (0..2)
            .map(|k| {
                let mine: Vec<Vec<jetstream::Message>> = chunks
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i % 2 == k)
                    .map(|(_, b)| b.clone())
                    .collect();
                let confirmed = Arc::clone(&confirmed);
                let batches_now = Arc::clone(&batches_now);
                tokio::spawn(async move {
                    for batch in mine {
                        let Some((last, before)) = batch.split_last() else {
                            continue;
                        };
                        for m in before {
                            if m.ack().await.is_err() {
                                return;
                            }
                        }
                        if last.double_ack().await.is_err() {
                            return;
                        }
                        confirmed
                            .lock()
                            .expect("confirmed")
                            .extend(batch.iter().map(index_of));
                        *batches_now.lock().expect("count") += 1;
                    }
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        while *batches_now.lock().expect("count") < kill_after {
            assert!(Instant::now() < deadline, "batch acks are not confirmed");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        server.sigkill();
        for a in ackers {
            a.abort();
            let _ = a.await;
        }
        batches_confirmed += *batches_now.lock().expect("count");
        drop(chunks);
        drop(js);
        drop(client);
    }
    let server = start(&store, &dir.path().join("batch-last.log"));
    let (_client, js) = connect(&server.url).await;
    let c = durable(&js).await;
    let confirmed = confirmed.lock().expect("confirmed").clone();
    let seen = drain_after_the_last_start(&c, &confirmed, &attempted).await;
    eprintln!(
        "{batches_confirmed} batch acks ({} messages) confirmed over {CYCLES} SIGKILLs, {} delivered after the last restart",
        confirmed.len(),
        seen.len()
    );
    assert!(
        batches_confirmed >= 1 + 4 + 2,
        "too few confirmed batches to prove anything"
    );
}
