//! Test only: a file stream whose disk reads hang must not take the async
//! workers with it (issue #12 item 9).
//!
//! The store is a memory store whose reads (`get`, `next_from`,
//! `last_by_subject`) behave, while armed, like reads of records that are
//! not in the page cache of a slow or failing disk: where the thread is
//! marked `store::nowait` they fail at once with "would block" (as
//! `preadv2(RWF_NOWAIT)` does), elsewhere they hang until the test releases
//! them. The runtime has ONE worker thread: if a read waited on it, nothing
//! else could run on it until the read returned, so a probe task spawned
//! meanwhile must still finish; and once the "disk" answers, the request
//! must still be answered, from the blocking thread.

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::Stream;
use super::consumer::Consumer;
use crate::jetstream::store::mem::MemStore;
use crate::jetstream::store::nowait;
use crate::jetstream::store::subjects::SubjectQueries;
use crate::jetstream::store::{
    CorruptRecord, Purge, Store, StoreError, StoreState, StoredMsg, SubjectFilter, SyncJob,
};
use crate::jetstream::types::{AckPolicy, ConsumerConfig, StorageType, StreamConfig, now_nanos};
use crate::jetstream::{JetStream, JetStreamConfig, Router, write};

/// Reads block while `armed`; `entered` counts reads that started blocking.
#[derive(Default)]
struct Gate {
    state: Mutex<(bool, u32)>,
    changed: Condvar,
}

impl Gate {
    fn arm(&self, on: bool) {
        if let Ok(mut s) = self.state.lock() {
            s.0 = on;
        }
        self.changed.notify_all();
    }

    /// A read: while armed, refused at once where reads must not wait
    /// (as `preadv2(RWF_NOWAIT)` refuses a page-cache miss), else held
    /// until the test disarms the gate.
    fn pass(&self) -> Result<(), StoreError> {
        if nowait::active() && self.state.lock().map(|s| s.0).unwrap_or(false) {
            return Err(StoreError::Io(std::io::ErrorKind::WouldBlock.into()));
        }
        self.block();
        Ok(())
    }

    fn block(&self) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        if s.0 {
            s.1 += 1;
            self.changed.notify_all();
        }
        while s.0 {
            s = match self.changed.wait(s) {
                Ok(s) => s,
                Err(_) => return,
            };
        }
    }

    /// Waits until a read is blocked at the gate; false after `limit`.
    fn wait_entered(&self, limit: Duration) -> bool {
        let Ok(s) = self.state.lock() else {
            return false;
        };
        self.changed
            .wait_timeout_while(s, limit, |s| s.1 == 0)
            .map(|(s, _)| s.1 > 0)
            .unwrap_or(false)
    }
}

struct SlowDisk {
    inner: MemStore,
    gate: Arc<Gate>,
}

impl Store for SlowDisk {
    fn append(&mut self, s: &str, h: &[u8], d: &[u8], ts: i64) -> Result<u64, StoreError> {
        self.inner.append(s, h, d, ts)
    }
    fn take_sync(&mut self) -> Option<SyncJob> {
        self.inner.take_sync()
    }
    fn synced(&mut self, upto: u64, result: std::io::Result<()>) {
        self.inner.synced(upto, result);
    }
    fn durable_seq(&self) -> u64 {
        self.inner.durable_seq()
    }
    fn poisoned(&self) -> Option<String> {
        self.inner.poisoned()
    }
    fn get(&mut self, seq: u64) -> Result<Option<StoredMsg>, StoreError> {
        self.gate.pass()?;
        self.inner.get(seq)
    }
    fn next_from(&mut self, s: u64, f: &SubjectFilter) -> Result<Option<StoredMsg>, StoreError> {
        self.gate.pass()?;
        self.inner.next_from(s, f)
    }
    fn last_by_subject(&mut self, f: &str) -> Result<Option<StoredMsg>, StoreError> {
        self.gate.pass()?;
        self.inner.last_by_subject(f)
    }
    fn subject_index(&self) -> &dyn SubjectQueries {
        self.inner.subject_index()
    }
    fn num_pending(&self, s: u64, f: &SubjectFilter) -> u64 {
        self.inner.num_pending(s, f)
    }
    fn seq_for_time(&self, ts: i64) -> u64 {
        self.inner.seq_for_time(ts)
    }
    fn remove(&mut self, seq: u64, erase: bool) -> Result<bool, StoreError> {
        self.inner.remove(seq, erase)
    }
    fn purge(&mut self, p: &Purge) -> Result<u64, StoreError> {
        self.inner.purge(p)
    }
    fn state(&self) -> StoreState {
        self.inner.state()
    }
    fn deleted_up_to(&self, limit: usize) -> Vec<u64> {
        self.inner.deleted_up_to(limit)
    }
    fn corrupt_records(&self) -> Vec<CorruptRecord> {
        Vec::new()
    }
    fn close(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    fn destroy(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Records what the server sends, by destination subject.
#[derive(Default)]
struct Sent(Mutex<Vec<(String, Vec<u8>)>>);

impl Sent {
    fn to(&self, subject: &str) -> Vec<Vec<u8>> {
        self.0
            .lock()
            .map(|v| {
                v.iter()
                    .filter(|(to, _)| to == subject)
                    .map(|(_, d)| d.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Router for Sent {
    fn route(&self, subject: &str, reply: Option<&str>, hdr: &[u8], data: &[u8]) -> usize {
        self.route_as(subject, subject, reply, hdr, data)
    }
    fn route_as(&self, to: &str, _: &str, _: Option<&str>, _: &[u8], data: &[u8]) -> usize {
        if let Ok(mut v) = self.0.lock() {
            v.push((to.to_owned(), data.to_vec()));
        }
        1
    }
    fn has_interest(&self, _: &str) -> bool {
        true
    }
}

struct Setup {
    js: Arc<JetStream>,
    stream: Arc<Stream>,
    sent: Arc<Sent>,
    gate: Arc<Gate>,
    _router: Arc<dyn Router>,
    _dir: tempfile::TempDir,
}

impl Drop for Setup {
    /// A failed assertion must not leave a read hanging: the runtime would
    /// wait for its worker forever when dropped.
    fn drop(&mut self) {
        self.gate.arm(false);
    }
}

/// A "file" stream S on `s.>` with messages one and two published (and
/// durable: the memory store has nothing to sync).
fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let js = JetStream::open(JetStreamConfig {
        store_dir: dir.path().to_owned(),
        ..JetStreamConfig::default()
    })
    .expect("open");
    let sent = Arc::new(Sent::default());
    let router: Arc<dyn Router> = Arc::clone(&sent) as _;
    js.set_router(Arc::downgrade(&router));
    let mut config = StreamConfig {
        name: "S".into(),
        subjects: vec!["s.>".into()],
        storage: StorageType::File,
        allow_direct: true,
        ..StreamConfig::default()
    };
    config.normalize();
    let gate = Arc::new(Gate::default());
    let store = SlowDisk {
        inner: MemStore::new(),
        gate: Arc::clone(&gate),
    };
    let stream = Stream::assemble(&js, config, now_nanos(), Box::new(store), None);
    write(&js.streams).insert("S".into(), Arc::clone(&stream));
    stream.publish(&js, "s.a", None, b"", b"one");
    stream.publish(&js, "s.a", None, b"", b"two");
    Setup {
        js,
        stream,
        sent,
        gate,
        _router: router,
        _dir: dir,
    }
}

/// Spawns a task on the (only) worker and tells whether it ran within 3 s.
fn worker_is_free(runtime: &tokio::runtime::Runtime) -> bool {
    let (tx, rx) = mpsc::channel();
    runtime.spawn(async move {
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(3)).is_ok()
}

fn one_worker() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Waits (in real time) until `subject` got `n` messages; false after 5 s.
fn received(sent: &Sent, subject: &str, n: usize) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if sent.to(subject).len() >= n {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn a_pull_whose_message_read_hangs_leaves_the_async_worker_free() {
    let runtime = one_worker();
    let _guard = runtime.enter();
    let s = setup();
    let mut config = ConsumerConfig {
        durable_name: Some("C".into()),
        ack_policy: AckPolicy::Explicit,
        ..ConsumerConfig::default()
    };
    config.normalize(true);
    let consumer =
        Consumer::create(&s.js, &s.stream, "C".into(), config, true).expect("consumer created");
    s.stream.add_consumer(Arc::clone(&consumer));

    s.gate.arm(true);
    let (js, c) = (Arc::clone(&s.js), Arc::clone(&consumer));
    // The pull request arrives on a connection's task, on the worker.
    runtime.spawn(async move { c.pull(&js, "inbox.1", br#"{"batch":2,"expires":5000000000}"#) });
    assert!(
        s.gate.wait_entered(Duration::from_secs(5)),
        "the pull never read the stream"
    );
    assert!(
        worker_is_free(&runtime),
        "a read waiting on the disk holds the async worker"
    );
    assert!(
        s.sent.to("inbox.1").is_empty(),
        "delivered past a hung read"
    );

    s.gate.arm(false);
    assert!(
        received(&s.sent, "inbox.1", 2),
        "the messages read once the disk answered were not delivered: {:?}",
        s.sent.to("inbox.1")
    );
    assert_eq!(s.sent.to("inbox.1"), vec![b"one".to_vec(), b"two".to_vec()]);
}

/// Sends the API request `subject` with `body` from a task on the only
/// worker while the stream's reads hang; checks that the worker stays free
/// and nothing is answered before the read completes; then releases the
/// read and returns the `n` answers sent to the reply subject.
fn api_request_while_reads_hang(
    subject: &'static str,
    body: &'static [u8],
    n: usize,
) -> Vec<Vec<u8>> {
    let runtime = one_worker();
    let _guard = runtime.enter();
    let s = setup();

    s.gate.arm(true);
    let js = Arc::clone(&s.js);
    runtime.spawn(async move { js.on_publish(subject, Some("inbox.api"), b"", body) });
    assert!(
        s.gate.wait_entered(Duration::from_secs(5)),
        "{subject} never read the stream"
    );
    assert!(
        worker_is_free(&runtime),
        "{subject} waiting on the disk holds the async worker"
    );
    assert!(
        s.sent.to("inbox.api").is_empty(),
        "{subject} answered (in part) before the hung read"
    );

    s.gate.arm(false);
    assert!(
        received(&s.sent, "inbox.api", n),
        "{subject}: not answered once the disk answered: {:?}",
        s.sent.to("inbox.api")
    );
    s.sent.to("inbox.api")
}

#[test]
fn a_direct_get_whose_read_hangs_leaves_the_async_worker_free() {
    let answers = api_request_while_reads_hang("$JS.API.DIRECT.GET.S", br#"{"seq":2}"#, 1);
    assert_eq!(answers, vec![b"two".to_vec()]);
}

#[test]
fn a_direct_get_of_a_subjects_last_message_whose_read_hangs_leaves_the_async_worker_free() {
    let answers = api_request_while_reads_hang("$JS.API.DIRECT.GET.S.s.a", b"", 1);
    assert_eq!(answers, vec![b"two".to_vec()]);
}

#[test]
fn a_msg_get_whose_read_hangs_leaves_the_async_worker_free() {
    let answers = api_request_while_reads_hang("$JS.API.STREAM.MSG.GET.S", br#"{"seq":1}"#, 1);
    let body = String::from_utf8_lossy(&answers[0]).into_owned();
    assert!(body.contains("\"seq\":1"), "{body}");
}

#[test]
fn a_batched_direct_get_whose_read_hangs_leaves_the_async_worker_free_and_answers_whole() {
    let answers =
        api_request_while_reads_hang("$JS.API.DIRECT.GET.S", br#"{"seq":1,"batch":5}"#, 3);
    // Both messages, then the end-of-batch status (empty body).
    assert_eq!(answers, vec![b"one".to_vec(), b"two".to_vec(), Vec::new()]);
}
