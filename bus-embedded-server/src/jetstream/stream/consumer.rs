//! One consumer: its position in the stream, the messages awaiting
//! acknowledgement, waiting pull requests or a push target, redelivery,
//! flow control and heartbeats, and its persisted state.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::Stream;
use super::priority::{self, Pin, PriorityPolicy, PullPriority, Verdict};
use crate::jetstream::errors::ApiError;
use crate::jetstream::headers::HeaderBuilder;
use crate::jetstream::store::storage::{self, RealFs, Storage};
use crate::jetstream::store::{StoredMsg, SubjectFilter, nowait};
use crate::jetstream::types::{
    AckPolicy, ConsumerConfig, ConsumerInfoJson, DeliverPolicy, PriorityGroupState, Retention,
    SequencePair, StorageType, now_nanos, rfc3339,
};
use crate::jetstream::{JetStream, atomic_write, lock, nanos, read, write};

mod state_log;
use state_log::StateLog;

/// Persisted consumer definition (`obs/<name>/meta.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ConsumerMeta {
    pub name: String,
    pub config: ConsumerConfig,
    pub created: i64,
}

/// Creates a durable consumer's directory (`obs/<name>`) with its
/// `state.json` (the starting position) and then its `meta.json` (what
/// makes the directory a consumer at recovery: a directory without one is
/// ignored). Durable when it returns: the new `obs` and consumer directory
/// entries are fsynced into their parents, both files into the consumer's
/// directory. An error means the create is not confirmed.
pub(crate) fn create_consumer_dir<S: Storage>(
    fs: &S,
    dir: &Path,
    meta: &[u8],
    state: &ConsumerStateFile,
) -> std::io::Result<()> {
    storage::create_dir_durable(fs, dir)?;
    write_consumer_state(fs, dir, state)?;
    storage::atomic_write(fs, &dir.join("meta.json"), meta)
}

/// Writes a consumer's `state.json` atomically and durably (temporary
/// file, fsync, rename, directory fsync): after `Ok` this state survives a
/// power loss; after an error the previous one is there (or this one).
pub(crate) fn write_consumer_state<S: Storage>(
    fs: &S,
    dir: &Path,
    state: &ConsumerStateFile,
) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(state).map_err(std::io::Error::other)?;
    storage::atomic_write(fs, &dir.join("state.json"), &bytes)
}

/// Reads a durable consumer's directory at recovery: its definition and
/// its saved position. `Ok(None)` when the directory holds no `meta.json`
/// (a create that never completed). A missing `state.json` (stores written
/// before the state was part of the create) starts from the stream's
/// first message; a state file that cannot be decoded too, logged
/// (at-least-once). A file that cannot be read (an I/O error) is an error:
/// starting from scratch would forget confirmed acks, and the next state
/// write would overwrite them.
pub(crate) fn read_consumer_dir<S: Storage>(
    fs: &S,
    dir: &Path,
) -> Result<Option<(ConsumerMeta, ConsumerStateFile)>, String> {
    let meta_path = dir.join("meta.json");
    let bytes = match fs.read_file(&meta_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", meta_path.display())),
    };
    let meta: ConsumerMeta =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", meta_path.display()))?;
    let state_path = dir.join("state.json");
    let saved = match fs.read_file(&state_path) {
        Ok(b) => match serde_json::from_slice::<ConsumerStateFile>(&b) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(
                    consumer = %meta.name,
                    "state file unreadable ({e}); restarting from the stream's first message (at-least-once)"
                );
                ConsumerStateFile::default()
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => ConsumerStateFile::default(),
        Err(e) => return Err(format!("{}: {e}", state_path.display())),
    };
    let saved = state_log::newest_state(fs, dir, &meta.name, saved)?;
    Ok(Some((meta, saved)))
}

/// Removes a deleted consumer's directory crash-safely: a durable rename to
/// `<name>.deleted-<n>` first (the consumer cannot come back, even with only
/// part of its files), then the removal. Already gone is fine once that is
/// durable: an earlier attempt may have renamed it and failed to fsync the
/// rename, so the parent is fsynced again (no parent either: its stream's
/// directory went first).
pub(crate) fn remove_consumer_dir<S: Storage>(fs: &S, dir: &Path) -> std::io::Result<()> {
    match storage::remove_dir_durable(fs, dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match storage::parent_of(dir).map(|p| fs.sync_dir(p)) {
                Some(Err(e)) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        }
        other => other,
    }
}

/// Persisted consumer position (`obs/<name>/state.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ConsumerStateFile {
    delivered_consumer_seq: u64,
    delivered_stream_seq: u64,
    ack_floor_consumer_seq: u64,
    ack_floor_stream_seq: u64,
    next_sseq: u64,
    /// (stream seq, consumer seq, delivered at, deliveries)
    pending: Vec<(u64, u64, i64, u64)>,
    /// last-per-subject sequences still to deliver
    lps: Vec<u64>,
    /// Stream sequences given up on after max_deliver attempts: no longer
    /// pending, yet not acknowledged (an interest or work-queue stream
    /// keeps them). Absent in files of older versions and when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    given_up: Vec<u64>,
    /// Which write of the consumer's state this is (`state_log`): at
    /// recovery the highest version among `state.json` and the records of
    /// `state.log` wins. Absent (0) in files of older versions.
    #[serde(default)]
    version: u64,
}

impl ConsumerStateFile {
    /// This state stamped as the `version`th write.
    fn with_version(mut self, version: u64) -> ConsumerStateFile {
        self.version = version;
        self
    }

    /// A new consumer's state: nothing delivered, to start at stream
    /// sequence `next_sseq` (after the last-per-subject sequences `lps`).
    fn starting(next_sseq: u64, lps: VecDeque<u64>) -> ConsumerStateFile {
        let start = lps.front().copied().unwrap_or(next_sseq);
        ConsumerStateFile {
            delivered_stream_seq: start.saturating_sub(1),
            ack_floor_stream_seq: start.saturating_sub(1),
            next_sseq,
            lps: lps.into_iter().collect(),
            ..ConsumerStateFile::default()
        }
    }
}

#[derive(Debug, Clone)]
struct Pending {
    dseq: u64,
    ts: i64,
    deadline: Instant,
    deliveries: u64,
}

#[derive(Debug)]
struct PullRequest {
    reply: String,
    batch: u64,
    /// Bytes the request may still receive (`None` = no limit).
    max_bytes: Option<u64>,
    expires: Option<Instant>,
    no_wait: bool,
    heartbeat: Option<Duration>,
    next_hb: Option<Instant>,
    delivered: u64,
    /// The request's priority fields, on a consumer with a priority policy.
    priority: Option<PullPriority>,
}

impl PullRequest {
    /// A `no_wait` request without an expiry: it ends (404) as soon as
    /// nothing more can be delivered.
    fn ends_when_idle(&self) -> bool {
        self.no_wait && self.expires.is_none()
    }
}

/// The waiting pull requests, oldest first, with what makes the per-request
/// work O(1): how many end when idle. Requests on the same reply subject
/// are separate requests, each served in full (as nats-server does:
/// async-nats's `messages()` asks for the next batch on the same inbox
/// before the current one is drained). Callers may change a request's
/// counters through `front_mut`/`iter_mut`, never its `no_wait` or
/// `expires`.
#[derive(Default)]
struct WaitQueue {
    queue: VecDeque<PullRequest>,
    ends_when_idle: usize,
}

impl WaitQueue {
    fn len(&self) -> usize {
        self.queue.len()
    }

    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = &PullRequest> {
        self.queue.iter()
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut PullRequest> {
        self.queue.iter_mut()
    }

    fn front(&self) -> Option<&PullRequest> {
        self.queue.front()
    }

    fn front_mut(&mut self) -> Option<&mut PullRequest> {
        self.queue.front_mut()
    }

    fn forget(&mut self, req: &PullRequest) {
        if req.ends_when_idle() {
            self.ends_when_idle -= 1;
        }
    }

    fn pop_front(&mut self) -> Option<PullRequest> {
        let req = self.queue.pop_front()?;
        self.forget(&req);
        Some(req)
    }

    fn push_back(&mut self, req: PullRequest) {
        if req.ends_when_idle() {
            self.ends_when_idle += 1;
        }
        self.queue.push_back(req);
    }

    /// Adds `req` after every waiting request of the same or a better
    /// (lower) priority rank (`prioritized` consumers).
    fn insert_by_rank(&mut self, req: PullRequest) {
        self.push_back(req);
        self.settle_back();
    }

    /// Moves the last request forward past those of a worse rank.
    fn settle_back(&mut self) {
        let Some(last) = self.queue.len().checked_sub(1) else {
            return;
        };
        let rank = PullPriority::rank(self.queue[last].priority.as_ref());
        let at = self
            .queue
            .iter()
            .position(|w| PullPriority::rank(w.priority.as_ref()) > rank)
            .unwrap_or(last);
        if at < last
            && let Some(req) = self.queue.pop_back()
        {
            self.queue.insert(at, req);
        }
    }

    /// Moves the head request to the back (passed over for now).
    fn cycle(&mut self) {
        if let Some(req) = self.queue.pop_front() {
            self.queue.push_back(req);
        }
    }

    /// A prioritized consumer served the head request, which wants more:
    /// it goes behind the others of its rank.
    fn requeue_front_by_rank(&mut self) {
        if self.queue.len() > 1 {
            self.cycle();
            self.settle_back();
        }
    }

    fn retain(&mut self, mut keep: impl FnMut(&PullRequest) -> bool) {
        let idle = &mut self.ends_when_idle;
        self.queue.retain(|w| {
            let kept = keep(w);
            if !kept && w.ends_when_idle() {
                *idle -= 1;
            }
            kept
        });
    }

    /// Takes out the requests that end when idle (none: O(1)).
    fn take_ending_when_idle(&mut self) -> Vec<PullRequest> {
        if self.ends_when_idle == 0 {
            return Vec::new();
        }
        let mut taken = Vec::new();
        let mut kept = VecDeque::with_capacity(self.queue.len());
        for req in self.queue.drain(..) {
            if req.ends_when_idle() {
                taken.push(req);
            } else {
                kept.push_back(req);
            }
        }
        self.queue = kept;
        self.ends_when_idle = 0;
        taken
    }

    fn drain_all(&mut self) -> Vec<PullRequest> {
        self.ends_when_idle = 0;
        self.queue.drain(..).collect()
    }
}

/// Body of a pull request (`CONSUMER.MSG.NEXT`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PullBody {
    batch: i64,
    expires: i64,
    max_bytes: i64,
    no_wait: bool,
    idle_heartbeat: i64,
    // Clients send `null` for the priority fields they leave unset.
    #[serde(deserialize_with = "null_as_default")]
    group: String,
    #[serde(deserialize_with = "null_as_default")]
    min_pending: i64,
    #[serde(deserialize_with = "null_as_default")]
    min_ack_pending: i64,
    #[serde(deserialize_with = "null_as_default")]
    id: String,
    #[serde(deserialize_with = "null_as_default")]
    priority: i64,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl PullBody {
    /// Its priority fields (a JSON request always has them).
    fn take_priority(&mut self) -> PullPriority {
        PullPriority {
            group: std::mem::take(&mut self.group),
            min_pending: self.min_pending,
            min_ack_pending: self.min_ack_pending,
            id: std::mem::take(&mut self.id),
            priority: self.priority,
        }
    }
}

enum Source {
    Redeliver,
    LastPerSubject,
    Fresh,
}

/// What the consumer can deliver next.
enum Next {
    Msg(StoredMsg, Source),
    /// Nothing deliverable now.
    Nothing,
    /// The next message cannot be read: the consumer stays on it.
    Unreadable,
    /// Reading the next message would wait on the disk, which the calling
    /// thread must not do (see `store::nowait`): retry on a blocking thread.
    WouldBlock,
}

struct CState {
    config: ConsumerConfig,
    filter: SubjectFilter,
    next_sseq: u64,
    dseq: u64,
    delivered_sseq: u64,
    floor: (u64, u64),
    pending: BTreeMap<u64, Pending>,
    /// Given up on after max_deliver attempts (see `ConsumerStateFile`).
    given_up: BTreeSet<u64>,
    timers: BTreeSet<(Instant, u64)>,
    redeliver: BTreeSet<u64>,
    lps: VecDeque<u64>,
    waiting: WaitQueue,
    last_active: Instant,
    dirty: bool,
    last_persist: Instant,
    ack_replies: Vec<String>,
    /// A state write took its snapshot and is not on disk yet.
    writing: bool,
    /// Confirmations of acks that changed nothing, asked for while a write
    /// was in flight: they wait for that write (see `confirm_or_queue`).
    after_write: Vec<String>,
    fc_outstanding: Option<String>,
    fc_counter: u64,
    /// The last delivery round stopped at a read that would have waited on
    /// the disk: the consumer's task runs the next round on a blocking thread.
    read_blocked: bool,
    since_fc_msgs: u64,
    since_fc_bytes: u64,
    last_push: Instant,
    push_bound: bool,
    /// Counted in the engine's `unbound_push` (a push consumer whose last
    /// round found no subscriber).
    counted_unbound: bool,
    no_interest_since: Option<Instant>,
    /// Unix nanoseconds of the last delivery and ack (0 = none yet).
    last_delivered: i64,
    last_acked: i64,
    /// The current pin (`pinned_client` consumers).
    pin: Option<Pin>,
    /// The last push round stopped because the deliver subject's
    /// subscriber had a full buffer's worth queued: the task runs the next
    /// round once this completes (see `pump`).
    backlog: Option<crate::jetstream::DrainWait>,
    /// The last count of messages still to deliver and what it was
    /// counted for (see `pending_memo`).
    pending_memo: Option<(PendingKey, u64)>,
}

/// What a count of messages still to deliver depends on: the stream's
/// contents (every store or removal changes its last sequence or its
/// message count) and the consumer's position. The filter is not in it: a
/// filter change forgets the count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PendingKey {
    last_seq: u64,
    msgs: u64,
    next_sseq: u64,
    lps: usize,
}

/// A consumer.
pub struct Consumer {
    /// Name.
    pub name: String,
    /// Its stream's name.
    pub stream_name: String,
    /// Creation time, Unix nanoseconds.
    pub created: i64,
    /// Durable (survives restarts, no inactivity deletion unless configured).
    pub durable: bool,
    state: Mutex<CState>,
    filter: RwLock<SubjectFilter>,
    wake: Arc<Notify>,
    closed: AtomicBool,
    /// The state's writer (`state_log`), held while the state is written
    /// (snapshot included), so that writers never share the temp file or
    /// the log's end and the last write is the newest state: the consumer
    /// task, a reset and a shutdown may all write. `None` without files.
    persisting: Mutex<Option<StateLog<RealFs>>>,
    dir: Option<PathBuf>,
    stream: Weak<Stream>,
    js: Weak<JetStream>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("name", &self.name)
            .finish()
    }
}

/// Most pull requests one consumer keeps waiting, whatever its max_waiting.
pub(crate) const MAX_WAITING_CEILING: usize = 65_536;

/// Flow control: a request after this many messages or bytes...
const FC_MSGS: u64 = 1024;
const FC_BYTES: u64 = 1024 * 1024;
/// ...and no more than twice that in flight without a reply.
const FC_STALL_FACTOR: u64 = 2;
/// Longest a push consumer waits for a backlogged subscriber to write
/// before it tries another round (which stops again after one message
/// while the subscriber is still behind).
const BACKLOG_WAIT: Duration = Duration::from_millis(100);

impl Consumer {
    /// Creates a consumer (config validated and normalised) positioned per
    /// its deliver policy, persists it when durable on a file stream, and
    /// starts its task.
    pub(crate) fn create(
        js: &JetStream,
        stream: &Arc<Stream>,
        name: String,
        config: ConsumerConfig,
        durable: bool,
    ) -> Result<Arc<Consumer>, ApiError> {
        let filter = effective_filter(stream, &config);
        let (next_sseq, lps) = start_position(stream, &config, &filter)?;
        let created = now_nanos();
        let dir = (durable && !config.mem_storage && stream.config().storage == StorageType::File)
            .then(|| stream.dir.as_ref().map(|d| d.join("obs").join(&name)))
            .flatten();
        let saved = ConsumerStateFile::starting(next_sseq, lps);
        if let Some(dir) = &dir {
            let meta = ConsumerMeta {
                name: name.clone(),
                config: config.clone(),
                created,
            };
            let bytes = serde_json::to_vec_pretty(&meta)
                .map_err(|e| ApiError::consumer_create(e.to_string()))?;
            // The starting position is durable with the create: a consumer
            // confirmed created never restarts from elsewhere.
            create_consumer_dir(&RealFs, dir, &bytes, &saved)
                .map_err(|e| ApiError::consumer_create(format!("consumer directory: {e}")))?;
        }
        Ok(Consumer::assemble(
            js, stream, name, config, durable, created, dir, saved,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        js: &JetStream,
        stream: &Arc<Stream>,
        name: String,
        config: ConsumerConfig,
        durable: bool,
        created: i64,
        dir: Option<PathBuf>,
        saved: ConsumerStateFile,
    ) -> Arc<Consumer> {
        let filter = effective_filter(stream, &config);
        let log = dir
            .as_ref()
            .map(|d| StateLog::new(d.clone(), saved.version));
        let c = Arc::new(Consumer {
            name,
            stream_name: stream.name.clone(),
            created,
            durable,
            state: Mutex::new(CState::new(config, filter.clone(), saved, Instant::now())),
            filter: RwLock::new(filter),
            wake: Arc::new(Notify::new()),
            closed: AtomicBool::new(false),
            persisting: Mutex::new(log),
            dir,
            stream: Arc::downgrade(stream),
            js: js.weak(),
        });
        tokio::spawn(run(Arc::downgrade(&c), Arc::clone(&c.wake)));
        c.signal();
        c
    }

    /// Reopens a durable consumer from its directory.
    pub(crate) fn recover(
        js: &JetStream,
        stream: &Arc<Stream>,
        dir: &Path,
    ) -> Result<Option<Arc<Consumer>>, String> {
        let Some((meta, saved)) = read_consumer_dir(&RealFs, dir)? else {
            return Ok(None);
        };
        Ok(Some(Consumer::assemble(
            js,
            stream,
            meta.name,
            meta.config,
            true,
            meta.created,
            Some(dir.to_owned()),
            saved,
        )))
    }

    /// Recomputes the effective filter after the stream's subjects changed.
    pub(crate) fn refresh_filter(&self, stream: &Stream) {
        let config = self.config();
        let filter = effective_filter(stream, &config);
        *write(&self.filter) = filter.clone();
        let mut st = lock(&self.state);
        st.filter = filter;
        st.pending_memo = None;
    }

    /// The consumer's subject filter.
    pub fn filter(&self) -> SubjectFilter {
        read(&self.filter).clone()
    }

    /// Current configuration.
    pub fn config(&self) -> ConsumerConfig {
        lock(&self.state).config.clone()
    }

    /// Wakes the consumer's task (new messages, a pull request...).
    pub fn signal(&self) {
        self.wake.notify_one();
    }

    /// True when `seq` was delivered and acknowledged (or needs no ack).
    pub fn has_acked(&self, seq: u64) -> bool {
        lock(&self.state).has_acked(seq)
    }

    /// Applies an updated configuration (validated by the API layer).
    pub(crate) fn update_config(&self, config: ConsumerConfig) -> Result<(), ApiError> {
        if let Some(dir) = &self.dir {
            let meta = ConsumerMeta {
                name: self.name.clone(),
                config: config.clone(),
                created: self.created,
            };
            let bytes = serde_json::to_vec_pretty(&meta)
                .map_err(|e| ApiError::consumer_create(e.to_string()))?;
            atomic_write(&dir.join("meta.json"), &bytes)
                .map_err(|e| ApiError::consumer_create(e.to_string()))?;
        }
        let filter = match self.stream.upgrade() {
            Some(stream) => effective_filter(&stream, &config),
            None => SubjectFilter::from_filters(config.filters()),
        };
        *write(&self.filter) = filter.clone();
        let mut st = lock(&self.state);
        st.config = config;
        st.filter = filter;
        st.pending_memo = None;
        drop(st);
        self.signal();
        Ok(())
    }

    /// Moves the consumer back (or forward) to deliver from stream sequence
    /// `seq`, or from where its deliver policy starts (nats-server 2.14's
    /// reset): everything unacknowledged is forgotten, the delivery count
    /// starts again, and the new position is on disk before this returns.
    /// Returns the sequence it now starts at.
    pub(crate) fn reset(&self, seq: Option<u64>) -> Result<u64, ApiError> {
        let stream = self
            .stream
            .upgrade()
            .ok_or_else(ApiError::consumer_not_found)?;
        let config = self.config();
        let (next, lps) = match seq {
            Some(s) => (s, VecDeque::new()),
            None => start_position(&stream, &config, &self.filter())?,
        };
        let start = lps.front().copied().unwrap_or(next);
        {
            let mut st = lock(&self.state);
            st.next_sseq = next;
            st.lps = lps;
            st.delivered_sseq = start.saturating_sub(1);
            st.floor = (0, start.saturating_sub(1));
            st.dseq = 0;
            st.last_delivered = 0;
            st.pending.clear();
            st.given_up.clear();
            st.timers.clear();
            st.redeliver.clear();
            st.pending_memo = None;
            st.dirty = true;
        }
        if let Some(log) = lock(&self.persisting).as_mut() {
            let snapshot = self.snapshot();
            log.write(&RealFs, snapshot)
                .map_err(|e| ApiError::consumer_create(format!("consumer state: {e}")))?;
        }
        self.signal();
        Ok(start)
    }

    /// Info as CONSUMER.INFO returns it.
    pub fn info(&self) -> ConsumerInfoJson {
        let stream = self.stream.upgrade();
        let st = lock(&self.state);
        let num_pending = stream.as_ref().map_or(0, |s| pending_count(s, &st));
        let pause_remaining =
            super::super::types::pause_remaining(st.config.pause_until.as_deref());
        ConsumerInfoJson {
            stream_name: self.stream_name.clone(),
            name: self.name.clone(),
            created: rfc3339(self.created),
            config: st.config.clone(),
            delivered: SequencePair {
                consumer_seq: st.dseq,
                stream_seq: st.delivered_sseq,
                last_active: (st.last_delivered > 0).then(|| rfc3339(st.last_delivered)),
            },
            ack_floor: SequencePair {
                consumer_seq: st.floor.0,
                stream_seq: st.floor.1,
                last_active: (st.last_acked > 0).then(|| rfc3339(st.last_acked)),
            },
            num_ack_pending: st.pending.len() as u64,
            num_redelivered: st.pending.values().filter(|p| p.deliveries > 1).count() as u64,
            // Like nats-server, requests whose requester went away do not count.
            num_waiting: st
                .waiting
                .iter()
                .filter(|w| {
                    self.js
                        .upgrade()
                        .and_then(|js| js.router())
                        .is_none_or(|r| r.has_interest(&w.reply))
                })
                .count() as u64,
            num_pending,
            push_bound: st.config.is_push() && st.push_bound,
            paused: pause_remaining.is_some(),
            pause_remaining,
            priority_groups: st.config.priority_groups.first().map(|group| {
                vec![PriorityGroupState {
                    group: group.clone(),
                    pinned_client_id: st.pin.as_ref().map(|p| p.id.clone()),
                    pinned_ts: st
                        .pin
                        .as_ref()
                        .map_or_else(|| "0001-01-01T00:00:00Z".to_owned(), |p| rfc3339(p.ts)),
                }]
            }),
            ts: rfc3339(now_nanos()),
        }
    }

    /// A pull request arrived (`CONSUMER.MSG.NEXT` or `+NXT`).
    pub(crate) fn pull(&self, js: &JetStream, reply: &str, body: &[u8]) {
        let Some(stream) = self.stream.upgrade() else {
            return;
        };
        let text = std::str::from_utf8(body).unwrap_or("").trim();
        let (req, mut prio) = if text.is_empty() {
            let body = PullBody {
                batch: 1,
                ..PullBody::default()
            };
            (body, None)
        } else if let Ok(n) = text.parse::<i64>() {
            let body = PullBody {
                batch: n,
                ..PullBody::default()
            };
            (body, None)
        } else {
            match serde_json::from_str::<PullBody>(text) {
                Ok(mut b) => {
                    let p = b.take_priority();
                    (b, Some(p))
                }
                Err(e) => {
                    status(js, reply, 400, &format!("Bad Request - {e}"));
                    return;
                }
            }
        };
        let mut st = lock(&self.state);
        if st.config.is_push() {
            drop(st);
            status(js, reply, 409, "Consumer is push based");
            return;
        }
        let batch = if req.batch <= 0 { 1 } else { req.batch as u64 };
        if st.config.max_batch > 0 && batch > st.config.max_batch as u64 {
            let text = format!("Exceeded MaxRequestBatch of {}", st.config.max_batch);
            drop(st);
            status(js, reply, 409, &text);
            return;
        }
        if st.config.max_expires > 0 && req.expires > st.config.max_expires {
            let text = format!(
                "Exceeded MaxRequestExpires of {}",
                go_duration(nanos(st.config.max_expires))
            );
            drop(st);
            status(js, reply, 409, &text);
            return;
        }
        if st.config.max_bytes > 0 && req.max_bytes > st.config.max_bytes {
            let text = format!("Exceeded MaxRequestMaxBytes of {}", st.config.max_bytes);
            drop(st);
            status(js, reply, 409, &text);
            return;
        }
        if req.idle_heartbeat > 0
            && req.expires > 0
            && req.idle_heartbeat.saturating_mul(2) > req.expires
        {
            drop(st);
            status(js, reply, 400, "Bad Request - heartbeat value too large");
            return;
        }
        match priority::check_request(&st.config, st.pin.as_ref(), prio.as_ref()) {
            Ok(carries_pin) => {
                if carries_pin {
                    // A request with the pin keeps it alive.
                    let ttl = nanos(st.config.priority_timeout);
                    if let Some(pin) = st.pin.as_mut() {
                        pin.expires = later(Instant::now(), ttl);
                    }
                }
            }
            Err(refusal) => {
                drop(st);
                let (code, text) = refusal.status();
                status(js, reply, code, &text);
                return;
            }
        }
        let policy = st.config.priority_policy;
        if policy.is_none() {
            prio = None;
        }
        // Whatever max_waiting says (nats-server accepts any), no consumer
        // holds more than MAX_WAITING_CEILING requests: each costs memory.
        let max_waiting = usize::try_from(st.config.max_waiting)
            .unwrap_or(512)
            .clamp(1, MAX_WAITING_CEILING);
        if st.waiting.len() >= max_waiting {
            drop(st);
            status(js, reply, 409, "Exceeded MaxWaiting");
            return;
        }
        let now = Instant::now();
        let heartbeat = (req.idle_heartbeat > 0).then(|| nanos(req.idle_heartbeat));
        let request = PullRequest {
            reply: reply.to_owned(),
            batch,
            max_bytes: u64::try_from(req.max_bytes).ok().filter(|b| *b > 0),
            expires: (req.expires > 0).then(|| later(now, nanos(req.expires))),
            no_wait: req.no_wait,
            heartbeat,
            next_hb: heartbeat.map(|h| later(now, h)),
            delivered: 0,
            priority: prio,
        };
        if policy == PriorityPolicy::Prioritized {
            st.waiting.insert_by_rank(request);
        } else {
            st.waiting.push_back(request);
        }
        st.last_active = now;
        // Served here, on the connection's worker, as far as the page cache
        // holds the messages; a read that would wait on the disk is left to
        // the consumer's task, which does it on a blocking thread.
        let acked = {
            let _cached_reads_only = nowait::enter();
            self.pump(js, &stream, &mut st)
        };
        drop(st);
        stream.on_acked(&acked);
        self.signal();
    }

    /// An ack (`$JS.ACK...`) for stream sequence `sseq`.
    pub(crate) fn on_ack(
        &self,
        js: &JetStream,
        stream: &Arc<Stream>,
        sseq: u64,
        _dseq: u64,
        body: &[u8],
        reply: Option<&str>,
    ) {
        let text = std::str::from_utf8(body).unwrap_or("");
        let (kind, rest) = match text.find(|c: char| c.is_whitespace() || c == '{') {
            Some(i) => (&text[..i], text[i..].trim()),
            None => (text, ""),
        };
        let mut acked = Vec::new();
        let mut next_pull = None;
        let wake = {
            let mut st = lock(&self.state);
            let was_dirty = st.dirty;
            let was_full = st.config.ack_policy != AckPolicy::None
                && st.config.max_ack_pending > 0
                && st.pending.len() >= st.config.max_ack_pending as usize;
            st.apply_ack(kind, rest, sseq, &mut acked);
            if kind == "+NXT" {
                next_pull = reply.map(|r| (r.to_owned(), rest.to_owned()));
            }
            if let Some(r) = reply
                && next_pull.is_none()
                && st.confirm_or_queue(self.dir.is_some(), r)
            {
                js.send(r, None, b"", b"");
            }
            // The consumer's task has something new to do only when this
            // ack is not a plain one (timers, redeliveries), freed a slot
            // deliveries were held back for (max_ack_pending), queued a
            // confirmation, or made a clean state dirty (a dirty state
            // already has its write scheduled: whoever made it dirty woke
            // the task, which arms the write's timer). Waking it for every
            // plain ack cost a task round per message.
            !matches!(kind, "" | "+ACK") || was_full || !was_dirty || !st.ack_replies.is_empty()
        };
        stream.on_acked(&acked);
        if let Some((reply, body)) = next_pull {
            self.pull(js, &reply, body.as_bytes());
        }
        if wake {
            self.signal();
        }
    }

    /// The client answered a flow-control request.
    pub(crate) fn on_flow_control_reply(&self) {
        let mut st = lock(&self.state);
        st.fc_outstanding = None;
        st.since_fc_msgs = 0;
        st.since_fc_bytes = 0;
        drop(st);
        self.signal();
    }

    /// The stream was purged: skip what is gone.
    pub(crate) fn on_purge(&self, stream: &Stream) {
        let first = stream.state().first_seq;
        let mut st = lock(&self.state);
        if st.next_sseq < first {
            st.next_sseq = first;
        }
        let gone: Vec<u64> = st.pending.range(..first).map(|(s, _)| *s).collect();
        for s in gone {
            st.remove_pending(s);
        }
        st.lps.retain(|s| *s >= first);
        st.given_up.retain(|s| *s >= first);
        if st.delivered_sseq < first.saturating_sub(1) {
            st.delivered_sseq = first.saturating_sub(1);
        }
        st.update_floor();
        st.dirty = true;
        drop(st);
        self.signal();
    }

    /// A subscription on `subject` appeared: wakes a push consumer whose
    /// last round found no subscriber on a deliver subject it matches.
    pub(crate) fn wake_if_subscriber(&self, subject: &str) {
        let wake = {
            let st = lock(&self.state);
            !st.push_bound
                && st
                    .config
                    .deliver_subject
                    .as_deref()
                    .is_some_and(|d| crate::subject::matches(subject, d))
        };
        if wake {
            self.signal();
        }
    }

    /// Stops the consumer; with `deleted`, tells waiting pulls and removes its files.
    pub(crate) fn stop(&self, deleted: bool) {
        self.closed.store(true, Ordering::SeqCst);
        {
            let mut st = lock(&self.state);
            if st.counted_unbound {
                st.counted_unbound = false;
                if let Some(js) = self.js.upgrade() {
                    js.unbound_push.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        if deleted {
            let waiting: Vec<String> = lock(&self.state)
                .waiting
                .drain_all()
                .into_iter()
                .map(|w| w.reply)
                .collect();
            if let Some(js) = self.js.upgrade() {
                for r in waiting {
                    status(&js, &r, 409, "Consumer Deleted");
                }
            }
            if let Some(dir) = &self.dir
                && let Err(e) = remove_consumer_dir(&RealFs, dir)
            {
                tracing::error!(consumer = %self.name, dir = %dir.display(), "removing the consumer's directory failed: {e}");
            }
        }
        self.signal();
    }

    /// Whether the last delivery round stopped at a read that would have
    /// waited on the disk (and forgets it).
    fn take_read_blocked(&self) -> bool {
        std::mem::take(&mut lock(&self.state).read_blocked)
    }

    /// What the last push round left to wait for (see `CState::backlog`).
    fn take_backlog(&self) -> Option<crate::jetstream::DrainWait> {
        lock(&self.state).backlog.take()
    }

    /// Deletes the consumer's directory crash-safely (durable when `Ok`:
    /// the consumer does not come back after a restart). Nothing to do for
    /// a consumer without files.
    ///
    /// On an interest or work-queue stream the messages its confirmed acks
    /// removed must be gone for good first: until then its state file is
    /// what removes them again at recovery (`Stream::reapply_acks`), and a
    /// crash after the delete would bring them back. No confirmation is
    /// sent meanwhile (the state writer waits).
    pub(crate) fn remove_files(&self, stream: &Stream) -> Result<(), String> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let mut no_confirmations = lock(&self.persisting);
        if let Some(log) = no_confirmations.as_mut() {
            // Nothing is confirmed through the open log from now on.
            log.forget_file();
        }
        if stream.retention != Retention::Limits {
            stream
                .wait_durable()
                .map_err(|e| format!("the stream's removals are not durable: {e}"))?;
        }
        remove_consumer_dir(&RealFs, dir).map_err(|e| e.to_string())
    }

    /// Server shutdown: persists the state (compacted into `state.json`).
    pub(crate) fn shutdown(&self) {
        if let Some(log) = lock(&self.persisting).as_mut() {
            let snapshot = self.snapshot();
            if let Err(e) = log.compact(&RealFs, snapshot) {
                tracing::error!(consumer = %self.name, "persisting consumer state failed: {e}");
            }
        }
        self.stop(false);
    }

    fn snapshot(&self) -> ConsumerStateFile {
        lock(&self.state).snapshot()
    }

    /// Writes the state. The ack confirmations queued until the moment of
    /// the snapshot are taken with it, under the state's lock, so one write
    /// confirms every ack it holds (acks that arrived while the consumer's
    /// task was on its way here included); they are returned to be sent
    /// now that the state is on disk. `None`: not written; none of them
    /// may be sent (the clients' ack requests time out), and the state
    /// stays dirty to be written again.
    fn persist_now(&self) -> Option<Vec<String>> {
        let mut one_writer = lock(&self.persisting);
        let (snap, mut replies) = {
            let mut st = lock(&self.state);
            let replies = st.take_for_persist(Instant::now());
            (st.snapshot(), replies)
        };
        let written = match one_writer.as_mut() {
            None => true,
            Some(log) => match log.write(&RealFs, snap) {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(consumer = %self.name, "persisting consumer state failed: {e}");
                    false
                }
            },
        };
        let waited = lock(&self.state).write_done(written);
        if !written {
            return None;
        }
        replies.extend(waited);
        Some(replies)
    }

    /// Delivers whatever can be delivered now. Returns sequences that count
    /// as acknowledged by delivery (ack none) for retention.
    fn pump(&self, js: &JetStream, stream: &Stream, st: &mut CState) -> Vec<u64> {
        let mut acked = Vec::new();
        if self.closed.load(Ordering::SeqCst) {
            return acked;
        }
        let visible = stream.visible_seq();
        let push = st.config.is_push();
        let deliver_subject = st.config.deliver_subject.clone().unwrap_or_default();
        if push {
            let bound = js
                .router()
                .is_some_and(|r| r.has_interest(&deliver_subject));
            st.push_bound = bound;
            if st.counted_unbound == bound {
                st.counted_unbound = !bound;
                if bound {
                    js.unbound_push.fetch_sub(1, Ordering::Relaxed);
                } else {
                    js.unbound_push.fetch_add(1, Ordering::Relaxed);
                }
            }
            if !bound {
                return acked;
            }
        }
        // One run of deliveries for the round: the writers are woken once
        // at its end, so a batch leaves in few writes.
        let router = js.router();
        let mut out = router.as_deref().map(|r| r.deliveries());
        let mut ack_reply = String::new();
        let mut remaining: Option<u64> = None;
        let mut exhausted = false;
        let mut unreadable = false;
        st.read_blocked = false;
        let now = Instant::now();
        loop {
            if push {
                if st.config.flow_control
                    && st.fc_outstanding.is_some()
                    && (st.since_fc_msgs >= FC_MSGS * FC_STALL_FACTOR
                        || st.since_fc_bytes >= FC_BYTES * FC_STALL_FACTOR)
                {
                    break;
                }
            } else if st.waiting.is_empty() {
                break;
            }
            if st.config.ack_policy != AckPolicy::None
                && st.config.max_ack_pending > 0
                && st.pending.len() >= st.config.max_ack_pending as usize
                && st.redeliver.is_empty()
            {
                exhausted = true;
                break;
            }
            // A paused consumer delivers nothing (pull requests wait, or
            // get 404 / 408 as when nothing is pending).
            if st.config.pause_until.is_some()
                && super::super::types::pause_remaining(st.config.pause_until.as_deref()).is_some()
            {
                exhausted = true;
                break;
            }
            // Counted before the message is taken, so that the count the
            // previous round left (for this position) serves while the
            // stream is unchanged; what remains after it follows from it.
            let before = match remaining {
                Some(r) => r,
                None => pending_memo(stream, st),
            };
            let (msg, source) = match st.next_msg(stream, visible) {
                Next::Msg(msg, source) => (msg, source),
                Next::Nothing => {
                    exhausted = true;
                    break;
                }
                Next::Unreadable => {
                    unreadable = true;
                    break;
                }
                Next::WouldBlock => {
                    // Neither "nothing pending" nor an error: the same round
                    // runs again on a blocking thread.
                    st.read_blocked = true;
                    break;
                }
            };
            let dseq = st.dseq + 1;
            let deliveries = st.pending.get(&msg.seq).map_or(1, |p| p.deliveries + 1);
            let next_remaining = if matches!(source, Source::Redeliver) {
                // A redelivery leaves the undelivered count as it is
                // (nats-server reports it in the ack reply, not 0).
                Some(before)
            } else {
                Some(before.saturating_sub(1))
            };
            let pending_after = next_remaining.unwrap_or(0);
            // A priority policy picks which waiting request gets it.
            let mut just_pinned = false;
            if !push && !st.config.priority_policy.is_none() {
                match self.choose_request(js, st, pending_after + 1) {
                    Some(pinned) => just_pinned = pinned,
                    None => {
                        st.unread(&msg, source);
                        break;
                    }
                }
            }
            write_ack_reply(
                &mut ack_reply,
                &self.stream_name,
                &self.name,
                [deliveries, msg.seq, dseq],
                msg.ts,
                pending_after,
            );
            // A pull's max_bytes counts what goes out: subject, reply,
            // headers and payload (as nats-server counts it).
            let wire =
                (msg.subject.len() + ack_reply.len() + msg.hdr.len() + msg.data.len()) as u64;
            if !push
                && let Some(req) = st.waiting.front()
                && req.max_bytes.is_some_and(|left| wire > left)
            {
                st.unread(&msg, source);
                if just_pinned {
                    // The pin goes with the request it was claimed for.
                    st.pin = None;
                }
                if let Some(req) = st.waiting.pop_front() {
                    let h = HeaderBuilder::status(409, "Message Size Exceeds MaxBytes")
                        .add("Nats-Pending-Messages", req.batch)
                        .add("Nats-Pending-Bytes", req.max_bytes.unwrap_or(0))
                        .build();
                    js.send(&req.reply, None, &h, b"");
                }
                continue;
            }
            let size = wire;
            let (hdr, data): (Vec<u8>, &[u8]) = if st.config.headers_only {
                let h = HeaderBuilder::new()
                    .extend_from(&msg.hdr)
                    .add("Nats-Msg-Size", msg.data.len())
                    .build();
                (h, b"")
            } else {
                (msg.hdr.to_vec(), &msg.data)
            };
            let hdr = if !push && st.config.priority_policy == PriorityPolicy::PinnedClient {
                let id = st.pin.as_ref().map_or("", |p| p.id.as_str());
                HeaderBuilder::new()
                    .extend_from(&hdr)
                    .add("Nats-Pin-Id", id)
                    .build()
            } else {
                hdr
            };
            let target = if push {
                deliver_subject.as_str()
            } else {
                st.waiting.front().map_or("", |r| r.reply.as_str())
            };
            let received = match out.as_mut() {
                Some(out) => out.route_as(target, &msg.subject, Some(&ack_reply), &hdr, data),
                None => 0,
            };
            if !push && received == 0 {
                // Nobody listens on this request's inbox any more (its
                // client went away): drop the request, as nats-server
                // does, and give the message to the next one. Nothing of
                // this attempt is recorded.
                st.unread(&msg, source);
                st.waiting.pop_front();
                continue;
            }
            // Delivery.
            remaining = next_remaining;
            let redelivery = matches!(source, Source::Redeliver);
            st.record_delivery(msg.seq, dseq, deliveries, redelivery, now, &mut acked);
            if push {
                st.last_push = now;
                st.since_fc_msgs += 1;
                st.since_fc_bytes += size;
                if st.config.flow_control
                    && st.fc_outstanding.is_none()
                    && (st.since_fc_msgs >= FC_MSGS || st.since_fc_bytes >= FC_BYTES)
                {
                    self.send_flow_control(js, st, &deliver_subject);
                }
                // A subscriber with a buffer's worth queued: end the round
                // (its writer is woken when `out` is dropped) and go on
                // once it has written, instead of queueing the whole
                // backlog at once. The client sees the same messages; they
                // leave while later ones are read, and a long backlog does
                // not end the connection as a slow consumer.
                if let Some(o) = out.as_mut()
                    && o.backlogged()
                {
                    st.backlog = o.drained(BACKLOG_WAIT);
                    break;
                }
            } else if let Some(req) = st.waiting.front_mut() {
                req.batch -= 1;
                req.delivered += 1;
                if let Some(left) = req.max_bytes.as_mut() {
                    *left = left.saturating_sub(size);
                }
                if let Some(h) = req.heartbeat {
                    req.next_hb = Some(later(now, h));
                }
                // Waiting requests take turns, as in nats-server: one that
                // wants more goes to the back (behind the others of its
                // priority, on a prioritized consumer).
                if req.batch == 0 {
                    st.waiting.pop_front();
                } else if st.config.priority_policy == PriorityPolicy::Prioritized {
                    st.waiting.requeue_front_by_rank();
                } else {
                    st.waiting.cycle();
                }
            }
        }
        // What the round left to deliver is the next round's count, as
        // long as the stream does not change meanwhile (the key's stream
        // part is still the one the count started from).
        if let (Some(r), Some((key, count))) = (remaining, st.pending_memo.as_mut()) {
            key.next_sseq = st.next_sseq;
            key.lps = st.lps.len();
            *count = r;
        }
        if push
            && st.config.flow_control
            && st.fc_outstanding.is_none()
            && st.since_fc_msgs > 0
            && exhausted
        {
            self.send_flow_control(js, st, &deliver_subject);
        }
        if !push && unreadable {
            // A no_wait request must not be told "No Messages" while the
            // consumer waits on a message it cannot read; requests with an
            // expiry wait for it as usual.
            for req in st.waiting.take_ending_when_idle() {
                status(js, &req.reply, 500, "Stream Read Error");
            }
        }
        if !push && exhausted {
            // no_wait requests end when nothing more can be delivered now.
            // nats-server: a no_wait request ends with 404 (also after
            // some messages); with an expiry it waits for it like any other
            // (408 then).
            for req in st.waiting.take_ending_when_idle() {
                status(js, &req.reply, 404, "No Messages");
            }
        }
        acked
    }

    /// Puts the waiting request that may have the next message at the head
    /// of the queue, by the consumer's priority policy (`pending`: messages
    /// left to deliver, the one at hand included). Requests with a stale
    /// pin are ended with 423 on the way. `None`: no request may have it
    /// now; `Some(true)`: the head request just pinned the consumer.
    fn choose_request(&self, js: &JetStream, st: &mut CState, pending: u64) -> Option<bool> {
        let policy = st.config.priority_policy;
        let mut passed_over = 0;
        loop {
            let head = st.waiting.front()?;
            let verdict = priority::verdict(
                policy,
                st.pin.as_ref(),
                head.priority.as_ref(),
                pending,
                st.pending.len() as u64,
            );
            match verdict {
                Verdict::Serve { pin: None } => return Some(false),
                Verdict::Serve { pin: Some(group) } => {
                    let pin = Pin {
                        id: priority::new_pin_id(),
                        ts: now_nanos(),
                        group,
                        expires: later(Instant::now(), nanos(st.config.priority_timeout)),
                    };
                    self.pinned_advisory(js, &pin);
                    st.pin = Some(pin);
                    return Some(true);
                }
                Verdict::Skip => {
                    st.waiting.cycle();
                    passed_over += 1;
                    if passed_over >= st.waiting.len() {
                        return None;
                    }
                }
                Verdict::WrongPin => {
                    if let Some(req) = st.waiting.pop_front() {
                        let h = HeaderBuilder::status(423, "Nats-Wrong-Pin-Id")
                            .add("Nats-Pending-Messages", req.batch)
                            .add("Nats-Pending-Bytes", req.max_bytes.unwrap_or(0))
                            .build();
                        js.send(&req.reply, None, &h, b"");
                    }
                }
            }
        }
    }

    /// `CONSUMER.UNPIN`: forgets the pin of `group` (the next request of
    /// the group to be served gets a new one).
    pub(crate) fn unpin(&self, js: &JetStream, group: &str) -> Result<(), ApiError> {
        let mut st = lock(&self.state);
        if !st.config.priority_groups.iter().any(|g| g == group) {
            return Err(ApiError::invalid_priority_group());
        }
        st.pin = None;
        self.unpinned_advisory(js, group, "admin");
        drop(st);
        self.signal();
        Ok(())
    }

    fn pinned_advisory(&self, js: &JetStream, pin: &Pin) {
        let body = serde_json::json!({
            "type": "io.nats.jetstream.advisory.v1.consumer_group_pinned",
            "id": priority::new_pin_id(),
            "timestamp": rfc3339(now_nanos()),
            "account": js.account,
            "stream": self.stream_name,
            "consumer": self.name,
            "group": pin.group,
            "pinned_id": pin.id,
        });
        let subject = format!(
            "$JS.EVENT.ADVISORY.CONSUMER.PINNED.{}.{}",
            self.stream_name, self.name
        );
        js.send(&subject, None, b"", body.to_string().as_bytes());
    }

    fn unpinned_advisory(&self, js: &JetStream, group: &str, reason: &str) {
        let body = serde_json::json!({
            "type": "io.nats.jetstream.advisory.v1.consumer_group_unpinned",
            "id": priority::new_pin_id(),
            "timestamp": rfc3339(now_nanos()),
            "account": js.account,
            "stream": self.stream_name,
            "consumer": self.name,
            "group": group,
            "reason": reason,
        });
        let subject = format!(
            "$JS.EVENT.ADVISORY.CONSUMER.UNPINNED.{}.{}",
            self.stream_name, self.name
        );
        js.send(&subject, None, b"", body.to_string().as_bytes());
    }

    fn send_flow_control(&self, js: &JetStream, st: &mut CState, deliver_subject: &str) {
        st.fc_counter += 1;
        let reply = format!(
            "$JS.FC.{}.{}.{}",
            self.stream_name, self.name, st.fc_counter
        );
        let h = HeaderBuilder::status(100, "FlowControl Request").build();
        js.send(deliver_subject, Some(&reply), &h, b"");
        st.fc_outstanding = Some(reply);
    }

    /// Timers: ack timeouts, expired pulls, heartbeats, inactivity.
    /// Returns the next time something is due and whether to delete the consumer.
    fn tick(&self, js: &JetStream, stream: &Arc<Stream>) -> (Instant, bool, bool) {
        let now = Instant::now();
        let mut st = lock(&self.state);
        let mut advisories = Vec::new();
        // Ack timeouts.
        st.ack_timeouts(now, &mut advisories);
        // A pin nobody renewed lapses.
        if st.pin.as_ref().is_some_and(|p| p.expires <= now)
            && let Some(pin) = st.pin.take()
        {
            self.unpinned_advisory(js, &pin.group, "timeout");
        }
        // Pull requests whose inbox nobody listens to any more are dropped
        // (their client went away); they would hold a max_waiting slot.
        if let Some(router) = js.router() {
            st.waiting.retain(|w| router.has_interest(&w.reply));
        }
        // Expired pull requests and pull heartbeats.
        let mut expired = Vec::new();
        st.waiting.retain(|w| {
            if w.expires.is_some_and(|e| e <= now) {
                expired.push((w.reply.clone(), w.batch, w.max_bytes.unwrap_or(0)));
                false
            } else {
                true
            }
        });
        for (reply, batch, bytes) in expired {
            let h = HeaderBuilder::status(408, "Request Timeout")
                .add("Nats-Pending-Messages", batch)
                .add("Nats-Pending-Bytes", bytes)
                .build();
            js.send(&reply, None, &h, b"");
        }
        let (dseq, sseq) = (st.dseq, st.delivered_sseq);
        for w in st.waiting.iter_mut() {
            if let (Some(h), Some(at)) = (w.heartbeat, w.next_hb)
                && at <= now
            {
                let hb = HeaderBuilder::status(100, "Idle Heartbeat")
                    .add("Nats-Last-Consumer", dseq)
                    .add("Nats-Last-Stream", sseq)
                    .build();
                js.send(&w.reply, None, &hb, b"");
                w.next_hb = Some(later(now, h));
            }
        }
        let acked = self.pump(js, stream, &mut st);
        // Push idle heartbeats.
        let push = st.config.is_push();
        if push && st.config.idle_heartbeat > 0 {
            let every = nanos(st.config.idle_heartbeat);
            if now.duration_since(st.last_push) >= every {
                let mut h = HeaderBuilder::status(100, "Idle Heartbeat")
                    .add("Nats-Last-Consumer", st.dseq)
                    .add("Nats-Last-Stream", st.delivered_sseq);
                if let Some(fc) = &st.fc_outstanding {
                    h = h.add("Nats-Consumer-Stalled", fc);
                }
                let subject = st.config.deliver_subject.clone().unwrap_or_default();
                js.send(&subject, None, &h.build(), b"");
                st.last_push = now;
            }
        }
        // Inactivity.
        let mut delete = false;
        if st.config.inactive_threshold > 0 {
            let threshold = nanos(st.config.inactive_threshold);
            if push {
                if st.push_bound {
                    st.no_interest_since = None;
                } else {
                    let since = *st.no_interest_since.get_or_insert(now);
                    delete = now.duration_since(since) >= threshold;
                }
            } else if st.waiting.is_empty() && now.duration_since(st.last_active) >= threshold {
                delete = true;
            }
        }
        // Next wake-up.
        let mut next = now + Duration::from_millis(500);
        if let Some(&(at, _)) = st.timers.first() {
            next = next.min(at);
        }
        for w in st.waiting.iter() {
            if let Some(e) = w.expires {
                next = next.min(e);
            }
            if let Some(h) = w.next_hb {
                next = next.min(h);
            }
        }
        if push && st.config.idle_heartbeat > 0 {
            next = next.min(later(st.last_push, nanos(st.config.idle_heartbeat)));
        }
        if let Some(pin) = &st.pin {
            next = next.min(pin.expires);
        }
        let persist = self.dir.is_some()
            && st.dirty
            && (!st.ack_replies.is_empty()
                || now.duration_since(st.last_persist) >= Duration::from_millis(20));
        if !persist && st.dirty && self.dir.is_some() {
            next = next.min(st.last_persist + Duration::from_millis(20));
        }
        drop(st);
        // The state is written by the caller off the async workers
        // (`persist_now`, which takes the confirmations with its snapshot).
        stream.on_acked(&acked);
        for (seq, deliveries) in advisories {
            let subject = format!(
                "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{}",
                self.stream_name, self.name
            );
            let body = serde_json::json!({
                "type": "io.nats.jetstream.advisory.v1.max_deliver",
                "stream": self.stream_name,
                "consumer": self.name,
                "stream_seq": seq,
                "deliveries": deliveries,
                "timestamp": rfc3339(now_nanos()),
            });
            js.send(&subject, None, b"", body.to_string().as_bytes());
        }
        (next, delete, persist)
    }
}

impl CState {
    /// A consumer's state from its saved position (a new consumer's
    /// starting position, or `state.json` at recovery); what was pending is
    /// due again one ack wait from `now`.
    fn new(
        config: ConsumerConfig,
        filter: SubjectFilter,
        saved: ConsumerStateFile,
        now: Instant,
    ) -> CState {
        let ack_wait = nanos(config.ack_wait);
        let mut pending = BTreeMap::new();
        let mut timers = BTreeSet::new();
        for (sseq, dseq, ts, deliveries) in saved.pending {
            let deadline = later(now, ack_wait);
            pending.insert(
                sseq,
                Pending {
                    dseq,
                    ts,
                    deadline,
                    deliveries,
                },
            );
            timers.insert((deadline, sseq));
        }
        CState {
            config,
            filter,
            next_sseq: saved.next_sseq.max(1),
            dseq: saved.delivered_consumer_seq,
            delivered_sseq: saved.delivered_stream_seq,
            floor: (saved.ack_floor_consumer_seq, saved.ack_floor_stream_seq),
            pending,
            given_up: saved.given_up.into_iter().collect(),
            timers,
            redeliver: BTreeSet::new(),
            lps: saved.lps.into_iter().collect(),
            waiting: WaitQueue::default(),
            last_active: now,
            dirty: false,
            last_persist: now,
            ack_replies: Vec::new(),
            writing: false,
            after_write: Vec::new(),
            fc_outstanding: None,
            fc_counter: 0,
            read_blocked: false,
            since_fc_msgs: 0,
            since_fc_bytes: 0,
            last_push: now,
            push_bound: false,
            counted_unbound: false,
            no_interest_since: None,
            last_delivered: 0,
            last_acked: 0,
            pin: None,
            backlog: None,
            pending_memo: None,
        }
    }

    /// What `state.json` holds.
    fn snapshot(&self) -> ConsumerStateFile {
        ConsumerStateFile {
            delivered_consumer_seq: self.dseq,
            delivered_stream_seq: self.delivered_sseq,
            ack_floor_consumer_seq: self.floor.0,
            ack_floor_stream_seq: self.floor.1,
            next_sseq: self.next_sseq,
            pending: self
                .pending
                .iter()
                .map(|(s, p)| (*s, p.dseq, p.ts, p.deliveries))
                .collect(),
            lps: self.lps.iter().copied().collect(),
            given_up: self.given_up.iter().copied().collect(),
            version: 0,
        }
    }

    /// True when `seq` was delivered and acknowledged (or needs no ack);
    /// not when it was given up on after max_deliver attempts.
    fn has_acked(&self, seq: u64) -> bool {
        (seq <= self.floor.1 || (seq <= self.delivered_sseq && !self.pending.contains_key(&seq)))
            && !self.given_up.contains(&seq)
    }

    /// Applies an ack (`kind`: `+ACK` or empty, `+NXT`, `-NAK` with its
    /// optional `{"delay": n}` in `rest`, `+WPI`, `+TERM`) for stream
    /// sequence `sseq`; what it acknowledged goes to `acked`.
    fn apply_ack(&mut self, kind: &str, rest: &str, sseq: u64, acked: &mut Vec<u64>) {
        match kind {
            "" | "+ACK" | "+NXT" => self.ack(sseq, acked),
            "-NAK" => {
                let delay = serde_json::from_str::<serde_json::Value>(rest)
                    .ok()
                    .and_then(|v| v.get("delay").and_then(serde_json::Value::as_i64))
                    .filter(|d| *d > 0);
                self.nak(sseq, delay.map(nanos));
            }
            "+WPI" => {
                let wait = self.ack_wait_for(self.pending.get(&sseq).map_or(1, |p| p.deliveries));
                if let Some(p) = self.pending.get_mut(&sseq) {
                    let old = p.deadline;
                    p.deadline = later(Instant::now(), wait);
                    let new = p.deadline;
                    self.timers.remove(&(old, sseq));
                    self.timers.insert((new, sseq));
                }
            }
            "+TERM" if self.pending.contains_key(&sseq) => {
                self.remove_pending(sseq);
                self.update_floor();
                self.dirty = true;
                acked.push(sseq);
            }
            _ => {}
        }
    }

    /// An ack asked for a confirmation on `reply`: true when it can be sent
    /// now; false when it was queued until the state is on disk (a durable
    /// consumer whose state changed: `persisted`).
    ///
    /// A clean state with a write in flight is not on disk yet: that write
    /// may hold acks applied before this one (acks sent earlier on the same
    /// connection without a confirmation: a batch acknowledgement confirms
    /// them all with its last ack, ARCHITECTURE.md "Batch
    /// acknowledgement"), so an ack that changed nothing waits for that
    /// write to land, not for a new one.
    fn confirm_or_queue(&mut self, persisted: bool, reply: &str) -> bool {
        if persisted && self.dirty {
            self.ack_replies.push(reply.to_owned());
            false
        } else if persisted && self.writing {
            self.after_write.push(reply.to_owned());
            false
        } else {
            true
        }
    }

    /// Records a delivery of stream sequence `seq` as consumer sequence
    /// `dseq` (its `deliveries`th); `redelivery` when it came from the
    /// redelivery set. Under ack none it counts as acknowledged (`acked`).
    fn record_delivery(
        &mut self,
        seq: u64,
        dseq: u64,
        deliveries: u64,
        redelivery: bool,
        now: Instant,
        acked: &mut Vec<u64>,
    ) {
        self.dseq = dseq;
        self.last_delivered = now_nanos();
        if !redelivery && self.delivered_sseq < seq {
            self.delivered_sseq = seq;
        }
        if self.config.ack_policy == AckPolicy::None {
            self.update_floor();
            acked.push(seq);
        } else {
            let wait = self.ack_wait_for(deliveries);
            let deadline = later(now, wait);
            if let Some(old) = self.pending.get(&seq).map(|p| p.deadline) {
                self.timers.remove(&(old, seq));
            }
            self.pending.insert(
                seq,
                Pending {
                    dseq,
                    ts: now_nanos(),
                    deadline,
                    deliveries,
                },
            );
            self.timers.insert((deadline, seq));
        }
        self.dirty = true;
    }

    /// Ack waits over at `now`: those messages are due for redelivery, or,
    /// out of attempts (max_deliver), dropped from pending without more
    /// redeliveries (nats-server does so and sends an advisory: their
    /// stream sequence and deliveries go to `advisories`).
    fn ack_timeouts(&mut self, now: Instant, advisories: &mut Vec<(u64, u64)>) {
        while let Some(&(at, seq)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, seq));
            let Some(p) = self.pending.get(&seq).cloned() else {
                continue;
            };
            if p.deadline != at {
                continue;
            }
            if self.config.max_deliver > 0 && p.deliveries >= self.config.max_deliver as u64 {
                self.pending.remove(&seq);
                self.given_up.insert(seq);
                self.update_floor();
                self.dirty = true;
                advisories.push((seq, p.deliveries));
            } else {
                self.redeliver.insert(seq);
            }
        }
    }

    /// A message due for redelivery is gone from the stream: it is no
    /// longer pending. A state change like an ack (the state is dirty): an
    /// ack confirmed after it must wait for it to be written, or a crash
    /// that also loses the stream's delete would redeliver a message whose
    /// ack was confirmed.
    fn forget_gone(&mut self, seq: u64) {
        self.remove_pending(seq);
        self.update_floor();
        self.dirty = true;
    }

    /// The state is about to be written: it is clean from now on, and the
    /// ack confirmations queued so far go out once the write succeeded.
    fn take_for_persist(&mut self, now: Instant) -> Vec<String> {
        self.dirty = false;
        self.writing = true;
        self.last_persist = now;
        std::mem::take(&mut self.ack_replies)
    }

    /// The write `take_for_persist` began is over (`written`: on disk).
    /// Returns the confirmations that waited for it (`confirm_or_queue`),
    /// to be sent with the write's own; none when it failed (the state is
    /// dirty again, and those clients' ack requests time out, as the
    /// write's own do).
    fn write_done(&mut self, written: bool) -> Vec<String> {
        self.writing = false;
        let waited = std::mem::take(&mut self.after_write);
        if written {
            waited
        } else {
            self.dirty = true;
            Vec::new()
        }
    }

    fn ack_wait_for(&self, deliveries: u64) -> Duration {
        if !self.config.backoff.is_empty() {
            let i = usize::try_from(deliveries.saturating_sub(1))
                .unwrap_or(usize::MAX)
                .min(self.config.backoff.len() - 1);
            return nanos(self.config.backoff[i]);
        }
        let w = nanos(self.config.ack_wait);
        if w.is_zero() {
            Duration::from_secs(30)
        } else {
            w
        }
    }

    fn remove_pending(&mut self, seq: u64) {
        if let Some(p) = self.pending.remove(&seq) {
            self.timers.remove(&(p.deadline, seq));
        }
        self.redeliver.remove(&seq);
    }

    fn ack(&mut self, seq: u64, acked: &mut Vec<u64>) {
        match self.config.ack_policy {
            AckPolicy::None => {}
            AckPolicy::Explicit => {
                if self.pending.contains_key(&seq) {
                    self.remove_pending(seq);
                    acked.push(seq);
                }
            }
            AckPolicy::All => {
                let below: Vec<u64> = self.pending.range(..=seq).map(|(s, _)| *s).collect();
                for s in below {
                    self.remove_pending(s);
                    acked.push(s);
                }
            }
        }
        self.update_floor();
        self.dirty = true;
        self.last_acked = now_nanos();
    }

    fn nak(&mut self, seq: u64, delay: Option<Duration>) {
        let Some(p) = self.pending.get(&seq).cloned() else {
            return;
        };
        self.timers.remove(&(p.deadline, seq));
        // Out of attempts: no immediate redelivery; expire it now so the
        // ack-timeout path drops it from pending and sends the advisory.
        let exhausted =
            self.config.max_deliver > 0 && p.deliveries >= self.config.max_deliver as u64;
        let delay = if exhausted {
            Some(Duration::ZERO)
        } else {
            delay
        };
        match delay {
            Some(d) => {
                let at = later(Instant::now(), d);
                if let Some(p) = self.pending.get_mut(&seq) {
                    p.deadline = at;
                }
                self.timers.insert((at, seq));
            }
            None => {
                self.redeliver.insert(seq);
            }
        }
    }

    fn update_floor(&mut self) {
        match self.pending.iter().next() {
            Some((sseq, p)) => {
                self.floor = (p.dseq.saturating_sub(1), sseq.saturating_sub(1));
            }
            None => {
                self.floor = (self.dseq, self.delivered_sseq);
            }
        }
    }

    /// The next message to deliver: a redelivery, then last-per-subject
    /// starts, then the stream in order. A message that is gone (deleted,
    /// removed by limits) is skipped; one that cannot be read is not: the
    /// consumer stays on it and the stream reports it.
    fn next_msg(&mut self, stream: &Stream, visible: u64) -> Next {
        while let Some(seq) = self.redeliver.pop_first() {
            match stream.read_msg(seq) {
                Ok(Some(m)) => {
                    stream.clear_read_error(seq);
                    return Next::Msg(m, Source::Redeliver);
                }
                Ok(None) => {
                    stream.clear_read_error(seq);
                    self.forget_gone(seq);
                }
                Err(e) if e.would_block() => {
                    self.redeliver.insert(seq);
                    return Next::WouldBlock;
                }
                Err(e) => {
                    self.redeliver.insert(seq);
                    stream.note_read_error(seq, &e.to_string());
                    return Next::Unreadable;
                }
            }
        }
        while let Some(&seq) = self.lps.front() {
            if seq > visible {
                return Next::Nothing;
            }
            match stream.read_msg(seq) {
                Ok(Some(m)) => {
                    self.lps.pop_front();
                    stream.clear_read_error(seq);
                    return Next::Msg(m, Source::LastPerSubject);
                }
                Ok(None) => {
                    self.lps.pop_front();
                }
                Err(e) if e.would_block() => return Next::WouldBlock,
                Err(e) => {
                    stream.note_read_error(seq, &e.to_string());
                    return Next::Unreadable;
                }
            }
        }
        let read = {
            let mut inner = lock(&stream.inner);
            inner.store.next_from(self.next_sseq, &self.filter)
        };
        match read {
            Ok(Some(m)) if m.seq <= visible => {
                stream.clear_read_error(self.next_sseq);
                self.next_sseq = m.seq + 1;
                Next::Msg(m, Source::Fresh)
            }
            Ok(_) => Next::Nothing,
            Err(e) if e.would_block() => Next::WouldBlock,
            Err(e) => {
                stream.note_read_error(self.next_sseq, &e.to_string());
                Next::Unreadable
            }
        }
    }

    fn unread(&mut self, msg: &StoredMsg, source: Source) {
        match source {
            Source::Redeliver => {
                self.redeliver.insert(msg.seq);
            }
            Source::LastPerSubject => self.lps.push_front(msg.seq),
            Source::Fresh => self.next_sseq = msg.seq,
        }
    }
}

/// The consumer's filter, or `All` when it covers every subject the stream
/// captures (reads then skip the per-subject index).
fn effective_filter(stream: &Stream, config: &ConsumerConfig) -> SubjectFilter {
    let filter = SubjectFilter::from_filters(config.filters());
    if let SubjectFilter::Any(list) = &filter {
        let subjects = stream.config().subjects;
        if !subjects.is_empty()
            && subjects
                .iter()
                .all(|s| list.iter().any(|f| crate::subject::covers(f, s)))
        {
            return SubjectFilter::All;
        }
    }
    filter
}

/// `$JS.ACK.<stream>.<consumer>.<deliveries>.<stream seq>.<consumer
/// seq>.<timestamp>.<pending>` into `out` (cleared first): the reply
/// subject of every delivery, written without the formatting machinery.
fn write_ack_reply(
    out: &mut String,
    stream: &str,
    consumer: &str,
    counts: [u64; 3],
    ts: i64,
    pending: u64,
) {
    let mut num = itoa::Buffer::new();
    out.clear();
    out.push_str("$JS.ACK.");
    out.push_str(stream);
    out.push('.');
    out.push_str(consumer);
    for n in counts {
        out.push('.');
        out.push_str(num.format(n));
    }
    out.push('.');
    out.push_str(num.format(ts));
    out.push('.');
    out.push_str(num.format(pending));
}

/// Messages still to deliver.
fn pending_count(stream: &Stream, st: &CState) -> u64 {
    let inner = lock(&stream.inner);
    inner.store.num_pending(st.next_sseq, &st.filter) + st.lps.len() as u64
}

/// Messages still to deliver, as `pending_count`, counted again only when
/// the stream or the consumer's position changed since the last count (a
/// round leaves its count for the next one). For a filter on some of the
/// stream's subjects a count walks every sequence left on them, so counting
/// once per delivery round made a replay quadratic in the stream's length.
fn pending_memo(stream: &Stream, st: &mut CState) -> u64 {
    let inner = lock(&stream.inner);
    let state = inner.store.state();
    let key = PendingKey {
        last_seq: state.last_seq,
        msgs: state.msgs,
        next_sseq: st.next_sseq,
        lps: st.lps.len(),
    };
    if let Some((k, n)) = st.pending_memo
        && k == key
    {
        return n;
    }
    let n = inner.store.num_pending(st.next_sseq, &st.filter) + st.lps.len() as u64;
    st.pending_memo = Some((key, n));
    n
}

/// Where a consumer with `config` starts: the next stream sequence to
/// deliver and, for deliver-last-per-subject, the sequences to deliver
/// first. Used at creation and by a reset without a sequence.
fn start_position(
    stream: &Stream,
    config: &ConsumerConfig,
    filter: &SubjectFilter,
) -> Result<(u64, VecDeque<u64>), ApiError> {
    let mut inner = lock(&stream.inner);
    start_in(inner.store.as_mut(), config, filter)
}

/// [`start_position`] in a store.
fn start_in(
    store: &mut dyn crate::jetstream::store::Store,
    config: &ConsumerConfig,
    filter: &SubjectFilter,
) -> Result<(u64, VecDeque<u64>), ApiError> {
    let st = store.state();
    Ok(match config.deliver_policy {
        DeliverPolicy::All => (st.first_seq.max(1), VecDeque::new()),
        DeliverPolicy::New => (st.last_seq + 1, VecDeque::new()),
        DeliverPolicy::Last => {
            let last = match filter {
                SubjectFilter::All => (st.msgs > 0).then_some(st.last_seq),
                SubjectFilter::Any(list) => list
                    .iter()
                    .filter_map(|f| store.last_by_subject(f).ok().flatten())
                    .map(|m| m.seq)
                    .max(),
            };
            (last.unwrap_or(st.last_seq + 1), VecDeque::new())
        }
        DeliverPolicy::ByStartSequence => {
            let Some(seq) = config.opt_start_seq.filter(|s| *s > 0) else {
                return Err(ApiError::invalid_policy(
                    "consumer delivery policy is deliver by start sequence, but optional start sequence is not set",
                ));
            };
            (seq, VecDeque::new())
        }
        DeliverPolicy::ByStartTime => {
            let Some(ts) = config
                .opt_start_time
                .as_deref()
                .and_then(crate::jetstream::types::parse_rfc3339)
            else {
                return Err(ApiError::invalid_policy(
                    "consumer delivery policy is deliver by start time, but optional start time is not set",
                ));
            };
            (store.seq_for_time(ts), VecDeque::new())
        }
        DeliverPolicy::LastPerSubject => {
            let seqs = store.last_seqs_per_subject(filter);
            (st.last_seq + 1, seqs.into_iter().collect())
        }
    })
}

/// `now + d`, with absurd durations (from configs or requests) capped at
/// ten years instead of overflowing.
fn later(now: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
    now + d.min(FAR)
}

/// Sends a status-only message (`NATS/1.0 <code> <text>`).
fn status(js: &JetStream, subject: &str, code: u16, text: &str) {
    let h = HeaderBuilder::status(code, text).build();
    js.send(subject, None, &h, b"");
}

/// Go's duration format for the few messages that print one.
fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The consumer's task: timers and deliveries of new messages.
async fn run(consumer: Weak<Consumer>, wake: Arc<Notify>) {
    let mut next = Instant::now();
    let mut backlog: Option<crate::jetstream::DrainWait> = None;
    loop {
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep_until(next) => {}
            _ = async {
                if let Some(b) = backlog.as_mut() {
                    b.await;
                }
            }, if backlog.is_some() => {}
        }
        let Some(c) = consumer.upgrade() else {
            return;
        };
        if c.closed.load(Ordering::SeqCst) {
            return;
        }
        let (Some(js), Some(stream)) = (c.js.upgrade(), c.stream.upgrade()) else {
            return;
        };
        // A round runs here as far as the page cache holds the messages it
        // delivers; if a read would wait on the disk, the round runs again
        // on a blocking thread (issue #12 item 9: never on the workers).
        let (mut at, mut delete, mut persist) = {
            let _cached_reads_only = nowait::enter();
            c.tick(&js, &stream)
        };
        if c.take_read_blocked() {
            let (ticker, js, stream) = (Arc::clone(&c), Arc::clone(&js), Arc::clone(&stream));
            match tokio::task::spawn_blocking(move || ticker.tick(&js, &stream)).await {
                Ok((again_at, again_delete, again_persist)) => {
                    at = again_at;
                    delete |= again_delete;
                    persist |= again_persist;
                }
                Err(e) => {
                    // Cancelled at runtime shutdown, or a bug that panicked.
                    tracing::error!(consumer = %c.name, "consumer round did not complete: {e}");
                    return;
                }
            }
        }
        if persist {
            // fsync on a blocking thread: never stall the connections'
            // tasks that share this worker. The acks that arrive until the
            // write takes its snapshot are confirmed by it too.
            let writer = Arc::clone(&c);
            let written = tokio::task::spawn_blocking(move || writer.persist_now())
                .await
                .ok()
                .flatten();
            if let Some(replies) = written {
                for r in replies {
                    js.send(&r, None, b"", b"");
                }
            } else {
                // Not on disk: no confirmation (the client's ack request
                // times out), and the state is written again later.
                lock(&c.state).dirty = true;
                c.signal();
            }
        }
        if delete {
            tracing::debug!(stream = %stream.name, consumer = %c.name, "deleting inactive consumer");
            stream.remove_consumer(&c.name);
            c.stop(true);
            return;
        }
        backlog = c.take_backlog();
        next = at;
    }
}

#[cfg(test)]
mod model;

#[cfg(test)]
mod tests {
    use crate::jetstream::{JetStream, JetStreamConfig};

    #[test]
    fn the_ack_reply_subject_reads_as_nats_server_writes_it() {
        let mut out = String::from("left over");
        for (counts, ts, pending) in [
            ([1, 1, 1], 1_700_000_000_123_456_789i64, 0),
            ([3, u64::MAX, 42], -5, u64::MAX),
            ([0, 0, 0], 0, 7),
        ] {
            super::write_ack_reply(&mut out, "ORDERS", "c-1", counts, ts, pending);
            let [d, s, c] = counts;
            assert_eq!(
                out,
                format!("$JS.ACK.ORDERS.c-1.{d}.{s}.{c}.{ts}.{pending}")
            );
        }
    }

    /// Found by the consumer model test: a message dropped from pending
    /// because the stream deleted it left the state clean, so an ack or
    /// term of it was confirmed at once while the state file still had it
    /// pending; a crash that also lost the stream's (unconfirmed) delete
    /// then redelivered it. The confirmation now waits for the state write.
    #[test]
    fn an_ack_after_a_deleted_message_left_pending_waits_for_the_state_write() {
        use super::{CState, ConsumerStateFile};
        use crate::jetstream::store::SubjectFilter;
        use crate::jetstream::types::{AckPolicy, ConsumerConfig};
        let config = ConsumerConfig {
            ack_policy: AckPolicy::Explicit,
            ..ConsumerConfig::default()
        };
        let saved = ConsumerStateFile {
            delivered_consumer_seq: 1,
            delivered_stream_seq: 2,
            ack_floor_stream_seq: 1,
            next_sseq: 3,
            pending: vec![(2, 1, 0, 1)],
            ..ConsumerStateFile::default()
        };
        let mut st = CState::new(
            config,
            SubjectFilter::All,
            saved,
            tokio::time::Instant::now(),
        );
        st.forget_gone(2);
        let mut acked = Vec::new();
        st.apply_ack("+TERM", "", 2, &mut acked);
        assert!(st.has_acked(2));
        assert!(
            !st.confirm_or_queue(true, "reply"),
            "confirmed before the state without message 2 was written"
        );
        assert_eq!(
            st.take_for_persist(tokio::time::Instant::now()),
            vec!["reply"]
        );
    }

    /// A batch acknowledgement sends plain acks and confirms only the last:
    /// its confirmation must mean the earlier ones are on disk. When the
    /// confirmed one leaves the state clean (an in-progress of a message
    /// acked already; an `+ACK` always marks the state dirty today, so it
    /// waits for a new write anyway) while a write holding the earlier
    /// acks is in flight, the state is clean but not on disk: the
    /// confirmation waits for that write, and a failed write sends it not
    /// at all.
    #[test]
    fn an_ack_changing_nothing_waits_for_the_write_in_flight_that_holds_earlier_acks() {
        use super::{CState, ConsumerStateFile};
        use crate::jetstream::store::SubjectFilter;
        use crate::jetstream::types::{AckPolicy, ConsumerConfig};
        let config = ConsumerConfig {
            ack_policy: AckPolicy::Explicit,
            ..ConsumerConfig::default()
        };
        let saved = ConsumerStateFile {
            delivered_consumer_seq: 2,
            delivered_stream_seq: 2,
            ack_floor_stream_seq: 0,
            next_sseq: 3,
            pending: vec![(1, 1, 0, 1), (2, 2, 0, 1)],
            ..ConsumerStateFile::default()
        };
        let now = tokio::time::Instant::now();
        for (written, expect) in [(true, vec!["last".to_owned()]), (false, Vec::new())] {
            let mut st = CState::new(config.clone(), SubjectFilter::All, saved.clone(), now);
            let mut acked = Vec::new();
            st.apply_ack("+ACK", "", 2, &mut acked); // acked before the batch
            st.take_for_persist(now);
            assert!(st.write_done(true).is_empty());
            st.apply_ack("+ACK", "", 1, &mut acked); // a plain ack of the batch
            assert!(st.dirty);
            assert!(st.take_for_persist(now).is_empty());
            st.apply_ack("+WPI", "", 2, &mut acked); // confirmed, changes nothing
            assert!(
                !st.dirty,
                "the in-progress of an acked message changed the state"
            );
            assert!(
                !st.confirm_or_queue(true, "last"),
                "confirmed while the write holding the ack of 1 was in flight"
            );
            assert_eq!(st.write_done(written), expect);
            assert_eq!(st.dirty, !written, "a failed write leaves the state dirty");
        }
    }

    /// A state write confirms every ack queued until its snapshot (also
    /// those that arrived after the consumer's task decided to write), and
    /// a write that fails confirms none of its round: they are dropped (the
    /// clients' ack requests time out), the state stays dirty, and no later
    /// write sends them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_state_write_confirms_the_acks_queued_before_its_snapshot_and_a_failed_one_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let js = JetStream::open(JetStreamConfig {
            store_dir: dir.path().to_path_buf(),
            ..JetStreamConfig::default()
        })
        .expect("jetstream");
        let api = |subject: &str, body: &str| {
            crate::jetstream::api::handle(&js, subject, None, b"", body.as_bytes());
        };
        api("STREAM.CREATE.S", r#"{"name":"S","subjects":["s.>"]}"#);
        api(
            "CONSUMER.DURABLE.CREATE.S.C",
            r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit"}}"#,
        );
        let consumer = js
            .stream("S")
            .and_then(|s| s.consumer("C"))
            .expect("consumer");
        let queue = |replies: &[&str]| {
            let mut st = super::lock(&consumer.state);
            st.dirty = true;
            for r in replies {
                assert!(!st.confirm_or_queue(true, r), "{r} waits for a write");
            }
        };
        queue(&["r1", "r2"]);
        assert_eq!(
            consumer.persist_now(),
            Some(vec!["r1".to_owned(), "r2".to_owned()]),
            "one write confirms both"
        );
        assert!(!super::lock(&consumer.state).dirty);

        // The next write fails: its directory is gone (and the log forgot
        // its open file, so the write is a compaction into the directory).
        let consumer_dir = dir.path().join("jetstream/$G/streams/S/obs/C");
        if let Some(log) = super::lock(&consumer.persisting).as_mut() {
            log.forget_file();
        }
        std::fs::remove_dir_all(&consumer_dir).expect("remove the consumer's directory");
        queue(&["r3"]);
        assert_eq!(consumer.persist_now(), None, "nothing to confirm");
        assert!(
            super::lock(&consumer.state).dirty,
            "the state is written again"
        );

        std::fs::create_dir_all(&consumer_dir).expect("directory back");
        assert_eq!(
            consumer.persist_now(),
            Some(Vec::new()),
            "the failed round's ack is never confirmed"
        );
        js.shutdown();
    }

    /// The consumer task and a shutdown may write the state file at the
    /// same moment (issue #12 item 8): every write must succeed and the
    /// file must always be one whole state, the newest.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_state_writes_never_tear_or_lose_the_state_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let js = JetStream::open(JetStreamConfig {
            store_dir: dir.path().to_path_buf(),
            ..JetStreamConfig::default()
        })
        .expect("jetstream");
        let api = |subject: &str, body: &str| {
            crate::jetstream::api::handle(&js, subject, None, b"", body.as_bytes());
        };
        api("STREAM.CREATE.S", r#"{"name":"S","subjects":["s.>"]}"#);
        api(
            "CONSUMER.DURABLE.CREATE.S.C",
            r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit"}}"#,
        );
        let consumer = js
            .stream("S")
            .and_then(|s| s.consumer("C"))
            .expect("consumer");
        let writers: Vec<_> = (0..8)
            .map(|i| {
                let c = std::sync::Arc::clone(&consumer);
                std::thread::spawn(move || {
                    (0..100)
                        .map(|n| {
                            super::lock(&c.state).dseq = i * 1000 + n;
                            c.persist_now().is_some()
                        })
                        .filter(|ok| !ok)
                        .count()
                })
            })
            .collect();
        let failed: usize = writers.into_iter().map(|w| w.join().expect("writer")).sum();
        assert_eq!(failed, 0, "every state write succeeds");
        let consumer_dir = dir.path().join("jetstream/$G/streams/S/obs/C");
        let text = std::fs::read_to_string(consumer_dir.join("state.json")).expect("state file");
        let _: super::ConsumerStateFile =
            serde_json::from_str(&text).expect("a whole state, not a torn one");
        // What a restart reads: state.json or a newer record of state.log.
        let saved = match super::read_consumer_dir(&super::RealFs, &consumer_dir) {
            Ok(Some((_, saved))) => saved,
            other => panic!("the consumer's directory does not read back: {other:?}"),
        };
        assert!(
            saved.version >= 800,
            "every write took a version: {saved:?}"
        );
        assert_eq!(
            saved.delivered_consumer_seq,
            super::lock(&consumer.state).dseq,
            "the last write is the newest state"
        );
        js.shutdown();
    }
}
