//! The binary SIGKILLed while a stream republishes: every copy a
//! subscriber saw must describe a message that is still in the stream
//! after the restart (copies go out only once the message is durable, as
//! PubAcks do). SIGKILL kills the process, not the machine: what was
//! written but not fsynced survives it, so a power loss is not shown here
//! (the stream's unit test `a_message_that_never_became_durable_is_not_
//! republished` covers a failing fsync). Kept apart from `crash.rs`
//! (which other work edits).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

mod server_process;

use server_process::start;

/// How long a request, the first copy or the collector's end may take: it
/// only bounds a hang. A stream create and the reads after a restart
/// wait for fsyncs, which take seconds on a loaded machine (the 5 s
/// request timeout this replaces could fail the test there).
const HANG: Duration = Duration::from_secs(60);

async fn api(c: &async_nats::Client, api: &str, body: Value) -> Value {
    let reply = c
        .request(format!("$JS.API.{api}"), body.to_string().into())
        .await
        .unwrap_or_else(|e| panic!("{api}: {e}"));
    serde_json::from_slice(&reply.payload).expect("JSON answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_republished_copy_seen_before_sigkill_is_still_stored_after_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let log = dir.path().join("server.log");
    // Sequence -> payload of every copy seen, over all cycles.
    let seen: Arc<Mutex<BTreeMap<u64, Vec<u8>>>> = Arc::default();
    for cycle in 0..3u64 {
        let mut server = start(&store, &log);
        let c = async_nats::ConnectOptions::new()
            .max_reconnects(1)
            .request_timeout(Some(HANG))
            .connect(&server.url)
            .await
            .expect("connect");
        if cycle == 0 {
            let v = api(
                &c,
                "STREAM.CREATE.K",
                json!({"name": "K", "subjects": ["k.*"],
                       "republish": {"src": "k.*", "dest": "copy.$1"}}),
            )
            .await;
            assert!(v.get("error").is_none(), "{v}");
        }
        let watcher = async_nats::connect(&server.url).await.expect("connect");
        let mut sub = watcher.subscribe("copy.*").await.expect("subscribe");
        watcher.flush().await.expect("flush");
        let record = Arc::clone(&seen);
        let killed = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let (k, n) = (Arc::clone(&killed), Arc::clone(&count));
        let collector = tokio::spawn(async move {
            // Until the server is dead and nothing more comes.
            loop {
                let m = match tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(_) if k.load(Ordering::SeqCst) => break,
                    Err(_) => continue,
                };
                let seq = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Sequence"))
                    .and_then(|v| v.as_str().parse::<u64>().ok())
                    .expect("Nats-Sequence on every copy");
                // A sequence seen again with another payload would mean
                // the first copy's message was lost and its number reused.
                if let Some(before) = record.lock().expect("lock").insert(seq, m.payload.to_vec()) {
                    assert_eq!(before, m.payload.to_vec(), "seq {seq} was reused");
                }
                n.fetch_add(1, Ordering::SeqCst);
            }
        });
        // Fire-and-forget publishes (no reply: nothing waits for the
        // disk but the copies), then SIGKILL mid-stream.
        let publisher = c.clone();
        let pubs = tokio::spawn(async move {
            let mut i = 0u64;
            loop {
                let body = format!("c{cycle}-m{i}");
                if publisher
                    .publish(format!("k.{}", i % 7), body.into())
                    .await
                    .is_err()
                {
                    return;
                }
                i += 1;
                if i % 50 == 0 {
                    let _ = publisher.flush().await;
                }
            }
        });
        // Kill only once copies are flowing (fsyncs can be slow on a busy
        // machine), at a different moment each cycle.
        let deadline = Instant::now() + HANG;
        while count.load(Ordering::SeqCst) == 0 {
            assert!(
                Instant::now() < deadline,
                "cycle {cycle}: no copy republished"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(50 + 100 * cycle)).await;
        // SIGKILL (`Child::kill` sends SIGKILL on unix).
        server.child.kill().expect("SIGKILL");
        server.child.wait().expect("reap");
        killed.store(true, Ordering::SeqCst);
        pubs.abort();
        tokio::time::timeout(HANG, collector)
            .await
            .expect("the collector ends once the server is gone")
            .expect("collector");
        drop(server);
    }

    let server = start(&store, &log);
    let c = async_nats::ConnectOptions::new()
        .request_timeout(Some(HANG))
        .connect(&server.url)
        .await
        .expect("connect");
    let seen = seen.lock().expect("lock").clone();
    assert!(!seen.is_empty());
    for (seq, payload) in &seen {
        let v = api(&c, "STREAM.MSG.GET.K", json!({"seq": seq})).await;
        let data = v["message"]["data"]
            .as_str()
            .unwrap_or_else(|| panic!("republished seq {seq} is gone after the crash: {v}"));
        use base64::Engine as _;
        let stored = base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("base64");
        assert_eq!(&stored, payload, "seq {seq}");
    }
}
