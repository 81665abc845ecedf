//! One stream: its configuration, its store, publish checks, limits and
//! retention, and the group-commit loop that acknowledges publishes once
//! they are durable. A stream owns its consumers ([`consumer`]): they live
//! in its table, read its store and are told of its acks, purges and new
//! messages; nothing else creates or removes them.

pub mod consumer;
pub mod counter;
pub(crate) mod direct;
pub(crate) mod fast_batch;
pub(crate) mod features;
pub(crate) mod persist;
pub mod priority;
pub mod schedule;
#[cfg(test)]
mod slow_disk;
pub(crate) mod sourcing;
pub(crate) mod transform;
pub mod ttl;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::errors::ApiError;
use super::headers;
use super::store::mem::MemStore;
use super::store::storage::{self, RealFs, Storage};
use super::store::{BatchMsg, Purge, Store, StoreState, StoredMsg, SubjectFilter};
use super::types::{DiscardPolicy, Retention, StorageType, StreamConfig, now_nanos};
use super::{JetStream, atomic_write, lock, read, write};
use crate::trace::JetStreamReport;
use consumer::Consumer;

/// Most interior deleted sequences STREAM.INFO lists (`deleted_details`).
pub const MAX_DELETED_DETAILS: usize = 100_000;

/// A `Nats-Msg-Id` as the duplicate window remembers it: as written when
/// short, else a keyed 128-bit digest, so an entry costs the same however
/// long a client makes its ids (nats-server allows up to the header size).
/// The keys are random per process; the window is rebuilt from the log at
/// open, so digests never need to survive a restart.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum DedupKey {
    Short(Box<str>),
    Digest(u128),
}

/// Ids up to this many bytes are kept as written.
const DEDUP_ID_KEPT: usize = 64;

impl DedupKey {
    fn of(id: &str) -> DedupKey {
        if id.len() <= DEDUP_ID_KEPT {
            return DedupKey::Short(id.into());
        }
        use std::hash::BuildHasher;
        static KEYS: std::sync::OnceLock<[std::collections::hash_map::RandomState; 2]> =
            std::sync::OnceLock::new();
        let [a, b] = KEYS.get_or_init(Default::default);
        DedupKey::Digest((u128::from(a.hash_one(id)) << 64) | u128::from(b.hash_one(id)))
    }
}

/// What is written to `meta.json` of a stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StreamMeta {
    pub config: StreamConfig,
    pub created: i64,
}

/// A confirmation waiting for the change it confirms to become durable:
/// a publish's ack, or the reply to a message delete or a purge.
struct PendingAck {
    /// The store's write mark right after the change.
    mark: u64,
    /// Empty: nothing to answer (a publish without a reply that only
    /// waits to be republished).
    reply: String,
    body: Vec<u8>,
    /// For an API reply: its response type (the failure reply names it).
    api_type: Option<String>,
    /// Republished copies, sent just before the reply once durable.
    republish: Vec<transform::Republished>,
}

/// How long the thread that ran a stream's last sync job waits for the
/// next one before going back to the blocking pool (see `Stream::linger`).
const SYNC_LINGER: Duration = Duration::from_millis(5);

/// What [`Stream::start_syncs`] did.
enum SyncStart {
    /// A sync loop runs: it takes the writes.
    Running,
    /// The job was handed to this idle sync thread: unpark it (after
    /// releasing the stream's lock).
    Handed(std::thread::Thread),
    /// Nothing to write.
    Nothing,
    /// A job for a new loop ([`Stream::drive_syncs`] on a blocking thread).
    Spawn(super::store::SyncJob),
}

pub(crate) struct StreamInner {
    /// Shared so the publish path reads it without copying.
    pub config: Arc<StreamConfig>,
    pub store: Box<dyn Store>,
    dedup: HashMap<DedupKey, u64>,
    dedup_order: VecDeque<(i64, DedupKey)>,
    last_msg_id: Option<String>,
    pending_acks: VecDeque<PendingAck>,
    /// A blocking thread is running `Stream::drive_syncs`: it takes the
    /// next sync job itself when its job is done (see `Stream::sync_soon`).
    driving: bool,
    /// The thread that ran the last sync jobs, waiting (at most
    /// [`SYNC_LINGER`]) for the next one instead of returning to the pool:
    /// a writer that finds it here hands it the job in `handed` and
    /// unparks it (see `Stream::start_syncs`).
    idle_driver: Option<std::thread::Thread>,
    /// A sync job handed to `idle_driver` (with `driving` set for it).
    handed: Option<super::store::SyncJob>,
    /// Per-message TTL expiries: (expiry time, seq).
    ttls: BTreeMap<(i64, u64), ()>,
    last_expiry_check: i64,
    /// The account's resource limits, checked before every store.
    resources: Arc<super::limits::AccountResources>,
    /// Where the next `max_age` scan starts: what lies below is gone or
    /// marked `Nats-TTL: never` (see [`ttl`]).
    age_scan_from: u64,
    /// Fast batches being received (see [`fast_batch`]); empty unless the
    /// stream has `allow_batched`.
    fast: fast_batch::Batches,
    /// `subject_transform` and `republish`, compiled (`None` for a stream
    /// with neither: one check on the publish path).
    transforms: Option<Box<transform::Transforms>>,
    /// Republished copies of what the last store call stored, taken by the
    /// publish that called it.
    republished: Vec<transform::Republished>,
    /// Message schedules: when each fires (see [`schedule`]); empty on
    /// streams without them.
    schedules: schedule::Schedules,
}

/// A stream.
pub struct Stream {
    /// Name.
    pub name: String,
    /// The name as a JSON string (quoted, escaped): every publish
    /// acknowledgement carries it.
    name_json: String,
    /// Creation time, Unix nanoseconds.
    pub created: i64,
    pub(crate) inner: Mutex<StreamInner>,
    consumers: RwLock<BTreeMap<String, Arc<Consumer>>>,
    subjects: RwLock<Vec<String>>,
    sync_wake: Arc<Notify>,
    /// How long the sync thread waits for the next job ([`SYNC_LINGER`];
    /// tests make it long so that what they hand it does not depend on
    /// timing), nanoseconds.
    sync_linger: std::sync::atomic::AtomicU64,
    /// This stream, for the blocking thread `sync_soon` starts.
    me: Weak<Stream>,
    pub(crate) dir: Option<PathBuf>,
    js: Weak<JetStream>,
    closed: AtomicBool,
    /// Atomic batches being received (`Nats-Batch-Id`), by id.
    batches: Mutex<HashMap<String, StagedBatch>>,
    /// Messages a consumer could not read back (sequence, or the sequence
    /// a consumer's scan started at, -> why): reported by `/healthz` and
    /// `/jsz` until a read of that sequence succeeds or it is removed.
    read_errors: Mutex<BTreeMap<u64, String>>,
    storage: StorageType,
    /// Fixed at creation (updates may not change it).
    retention: Retention,
    /// The task copying this stream's mirror or sources, if it has any.
    sourcing: Mutex<Option<Arc<sourcing::Sourcing>>>,
    /// Held by a sourcing round (one at a time, across config updates).
    sourcing_round: Mutex<()>,
    /// Sourcing tasks to wake when new messages are durable here; only
    /// looked at when `watched` is set.
    watchers: Mutex<Vec<Weak<Notify>>>,
    watched: AtomicBool,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").field("name", &self.name).finish()
    }
}

/// Most messages in one atomic batch (nats-server's limit).
pub const MAX_BATCH_MSGS: u64 = 1000;
/// Most atomic batches a stream receives at once (nats-server's limit).
pub const MAX_INFLIGHT_BATCHES: usize = 50;
/// An atomic batch with no message for this long is abandoned.
pub const BATCH_IDLE: Duration = Duration::from_secs(10);

/// An atomic batch being received: its messages so far, held back until
/// the commit.
struct StagedBatch {
    msgs: Vec<StagedMsg>,
    last_active: std::time::Instant,
}

struct StagedMsg {
    subject: String,
    hdr: Vec<u8>,
    data: Vec<u8>,
}

/// Outcome of storing one message.
enum Stored {
    New(u64),
    Duplicate(u64),
    /// A counter increment: its sequence and the subject's new total.
    Counter(u64, String),
    /// A trace-only publish passed every check; nothing was stored.
    Checked,
}

/// The text nats-server puts in a trace event's `js` entry for a refused
/// publish: its internal error where it differs from the API error's.
fn trace_error_text(err: &ApiError, hdr: &[u8]) -> String {
    let actual = || err.description.rsplit(' ').next().unwrap_or_default();
    match err.err_code {
        10071 => match (
            headers::get(hdr, "Nats-Expected-Last-Subject-Sequence"),
            headers::get(hdr, "Nats-Expected-Last-Sequence"),
        ) {
            (Some(want), _) => format!(
                "last sequence by subject mismatch: {} vs {}",
                want.trim(),
                actual()
            ),
            (None, Some(want)) => {
                format!("last sequence mismatch: {} vs {}", want.trim(), actual())
            }
            _ => err.description.clone(),
        },
        10070 => match headers::get(hdr, "Nats-Expected-Last-Msg-Id") {
            Some(want) => format!(
                "last msgid mismatch: {:?} vs {:?}",
                want.trim(),
                err.description
                    .strip_prefix("wrong last msg ID: ")
                    .unwrap_or_default()
            ),
            None => err.description.clone(),
        },
        _ if *err == ApiError::expected_stream_mismatch() => {
            "expected stream does not match".to_owned()
        }
        _ if *err == ApiError::msg_ttl_disabled() => "message TTL disabled".to_owned(),
        _ => err.description.clone(),
    }
}

/// Creates a stream's directory crash-atomically: it is built under a
/// temporary name (`<name>.creating-<n>`) with its `meta.json`, then renamed
/// into place and the rename fsynced. A crash leaves the whole stream or
/// none of it (recovery removes `.creating-` directories). Something
/// already under that name (leftovers without `meta.json`, ignored at
/// start, e.g. of a stream deleted by an older version) is moved aside as
/// `<name>.orphaned-<n>` and kept, so the new stream starts empty and never
/// picks up old consumers or messages.
pub(crate) fn create_stream_dir<S: Storage>(
    fs: &S,
    streams: &Path,
    name: &str,
    meta: &[u8],
) -> std::io::Result<PathBuf> {
    storage::create_dir_durable(fs, streams)?;
    let d = streams.join(name);
    if fs.kind(&d)?.is_some() {
        let aside = storage::marked(fs, &d, storage::ORPHANED);
        tracing::warn!(dir = %d.display(), to = %aside.display(), "a new stream's directory name was taken by leftovers; moved them aside");
        fs.rename(&d, &aside)?;
    }
    let tmp = storage::marked(fs, &d, storage::CREATING);
    fs.create_dir(&tmp)?;
    storage::atomic_write(fs, &tmp.join("meta.json"), meta)?;
    fs.rename(&tmp, &d)?;
    fs.sync_dir(streams)?;
    Ok(d)
}

/// Deletes a stream's files crash-safely. The delete point is the durable
/// rename of its directory to `<name>.deleted-<n>`: before it the whole
/// stream (messages, consumers) is there after a crash, after it none of
/// it (recovery finishes the removal). Then the store is destroyed and the
/// renamed directory removed (failures there are only logged).
pub(crate) fn delete_stream_dir<S: Storage>(
    fs: &S,
    store: &mut dyn Store,
    dir: &Path,
) -> std::io::Result<()> {
    let gone = storage::mark_deleted(fs, dir)?;
    if let Err(e) = store.destroy() {
        tracing::warn!(dir = %gone.display(), error = %e, "destroying a deleted stream's store failed");
    }
    if let Err(e) = storage::finish_delete(fs, &gone) {
        tracing::warn!(dir = %gone.display(), error = %e, "could not remove a deleted stream's directory; the next start removes it");
    }
    Ok(())
}

/// What recovery finds in a directory of the streams directory.
#[derive(Debug)]
pub(crate) enum StreamDir {
    /// A stream: its `meta.json`.
    Meta(Vec<u8>),
    /// Not a stream (no `meta.json`, a stream being created or deleted
    /// when the process stopped, leftovers moved aside): ignored.
    NotAStream,
}

/// Removes the leftovers of an interrupted create or delete (`dir` named
/// `.creating-` or `.deleted-`); true when `dir` was one (or is set aside).
fn leftover<S: Storage>(fs: &S, dir: &Path) -> bool {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match storage::dir_name(&name) {
        storage::DirName::Live => false,
        storage::DirName::Orphaned => {
            tracing::warn!(dir = %dir.display(), "leftovers moved aside when a stream was created again; kept, ignored");
            true
        }
        storage::DirName::Creating | storage::DirName::Deleted => {
            tracing::info!(dir = %dir.display(), "removing what an interrupted create or delete left");
            if let Err(e) = storage::finish_delete(fs, dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove it");
            }
            true
        }
    }
}

/// Reads a directory of the streams directory at recovery.
pub(crate) fn read_stream_dir<S: Storage>(fs: &S, dir: &Path) -> Result<StreamDir, String> {
    if leftover(fs, dir) {
        return Ok(StreamDir::NotAStream);
    }
    let meta_path = dir.join("meta.json");
    match fs.read_file(&meta_path) {
        Ok(b) => Ok(StreamDir::Meta(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(dir = %dir.display(), "directory without meta.json in the store; ignored");
            Ok(StreamDir::NotAStream)
        }
        Err(e) => Err(format!("{}: {e}", meta_path.display())),
    }
}

/// The consumer directories of a stream's `obs` directory, sorted; the
/// leftovers of interrupted consumer deletes are removed. No `obs`
/// directory: none. One that cannot be listed is an error (starting
/// without the stream's consumers would lose them to the clients).
pub(crate) fn consumer_dirs<S: Storage>(fs: &S, obs: &Path) -> std::io::Result<Vec<PathBuf>> {
    let entries = match fs.list_dir(obs) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut dirs: Vec<PathBuf> = entries
        .into_iter()
        .map(|e| obs.join(e.name))
        .filter(|d| !leftover(fs, d))
        .collect();
    dirs.sort();
    Ok(dirs)
}

fn open_store(
    js: &JetStream,
    config: &StreamConfig,
    dir: Option<&Path>,
) -> Result<Box<dyn Store>, String> {
    let store = open_raw_store(js, config, dir)?;
    // Charged to the account's and the server's meters, which the
    // resource limits are checked against.
    Ok(Box::new(super::store::metered::Metered::new(
        store,
        js.resources.meters(config.storage),
    )))
}

/// A new stream's `first_seq`: its first message gets that sequence (a
/// whole purge up to it, which the store keeps as its floor and last
/// sequence), durable before the create is confirmed.
fn start_at(store: &mut dyn Store, first_seq: u64) -> Result<(), String> {
    store
        .purge(&Purge {
            filter: None,
            seq: Some(first_seq),
            keep: None,
        })
        .map_err(|e| format!("first_seq: {e}"))?;
    if let Some(job) = store.take_sync() {
        let upto = job.upto;
        let result = (job.run)();
        let failed = result.as_ref().err().map(ToString::to_string);
        store.synced(upto, result);
        if let Some(e) = failed {
            return Err(format!("first_seq: {e}"));
        }
    }
    Ok(())
}

fn open_raw_store(
    js: &JetStream,
    config: &StreamConfig,
    dir: Option<&Path>,
) -> Result<Box<dyn Store>, String> {
    match (config.storage, dir) {
        (StorageType::File, Some(dir)) => {
            let (store, report) = super::store::file::FileStore::open(
                &dir.join("msgs"),
                super::store::file::FileStoreConfig {
                    segment_bytes: js.config.segment_bytes,
                    sync: persist::sync_policy(js.config.sync, config.persist_mode),
                    // A mirror's sequences are its origin's: what a torn
                    // tail held is copied again under the same sequences.
                    cut_tail: if config.mirror.is_some() {
                        super::store::file::CutTail::Refill
                    } else {
                        super::store::file::CutTail::NeverReuse
                    },
                },
            )
            .map_err(|e| e.to_string())?;
            if report.truncated_bytes > 0 {
                tracing::warn!(
                    stream = %config.name,
                    bytes = report.truncated_bytes,
                    "cut a torn tail from the stream's last segment"
                );
            }
            for c in &report.corrupt {
                tracing::error!(
                    stream = %config.name,
                    segment = %c.segment,
                    offset = c.offset,
                    len = c.len,
                    reason = %c.reason,
                    "skipped a corrupt record"
                );
            }
            if report.index_rebuilt {
                tracing::info!(stream = %config.name, "rebuilt the stream's index from its log");
            }
            Ok(Box::new(store))
        }
        _ => Ok(Box::new(MemStore::new())),
    }
}

/// One step towards making a store's changes up to its write mark `mark`
/// durable (see `Stream::wait_durable`).
pub(crate) enum DurableStep {
    /// They are.
    Done,
    /// They never will be: the store is poisoned.
    Failed(String),
    /// Run this sync job (outside the stream's lock), then hand its
    /// result to `Store::synced`.
    Run(super::store::SyncJob),
    /// Another sync job is out (the flusher's): wait for it.
    Wait,
}

/// The next [`DurableStep`] for `store`.
pub(crate) fn durable_step(store: &mut dyn Store, mark: u64) -> DurableStep {
    if store.durable_mark() >= mark {
        return DurableStep::Done;
    }
    if let Some(reason) = store.poisoned() {
        return DurableStep::Failed(reason);
    }
    match store.take_sync() {
        Some(job) => DurableStep::Run(job),
        None => DurableStep::Wait,
    }
}

/// What recovery needs to know of one consumer to reapply acks.
pub(crate) struct AckView<'a> {
    /// Its subject filter.
    pub filter: SubjectFilter,
    /// The highest stream sequence it delivered.
    pub delivered: u64,
    /// Whether it acknowledged a stream sequence.
    pub has_acked: Box<dyn Fn(u64) -> bool + 'a>,
}

/// The messages up to `bound` (the highest sequence a consumer delivered),
/// per subject: what recovery considers for removal (see
/// `Stream::reapply_acks`).
pub(crate) fn delivered_per_subject(
    index: &dyn super::store::subjects::SubjectQueries,
    bound: u64,
) -> Vec<(Arc<str>, Vec<u64>)> {
    index.up_to_per_subject(bound)
}

/// Among `candidates` (from [`delivered_per_subject`]), the messages of an
/// interest or work-queue stream that every interested consumer
/// acknowledged (and some consumer is interested in): what recovery
/// removes again. Sorted. Called without the stream's lock held (it takes
/// the consumers' locks).
pub(crate) fn acked_by_every_interested(
    candidates: Vec<(Arc<str>, Vec<u64>)>,
    consumers: &[AckView<'_>],
) -> Vec<u64> {
    let mut doomed = Vec::new();
    for (subject, seqs) in candidates {
        let interested: Vec<&AckView<'_>> = consumers
            .iter()
            .filter(|c| c.filter.matches(&subject))
            .collect();
        if interested.is_empty() {
            continue;
        }
        doomed.extend(
            seqs.into_iter()
                .filter(|s| interested.iter().all(|c| (c.has_acked)(*s))),
        );
    }
    doomed.sort_unstable();
    doomed
}

impl Stream {
    /// Creates a new stream (config already validated and normalised).
    pub(crate) fn create(js: &JetStream, config: StreamConfig) -> Result<Arc<Stream>, ApiError> {
        let created = now_nanos();
        let dir = match config.storage {
            StorageType::File => {
                let meta = StreamMeta {
                    config: config.clone(),
                    created,
                };
                let bytes = serde_json::to_vec_pretty(&meta)
                    .map_err(|e| ApiError::stream_general(e.to_string()))?;
                let d = create_stream_dir(&RealFs, &js.streams_dir(), &config.name, &bytes)
                    .map_err(|e| ApiError::stream_general(format!("stream directory: {e}")))?;
                Some(d)
            }
            StorageType::Memory => None,
        };
        let mut store =
            open_store(js, &config, dir.as_deref()).map_err(ApiError::stream_general)?;
        if config.first_seq > 1 {
            start_at(store.as_mut(), config.first_seq).map_err(ApiError::stream_general)?;
        }
        Ok(Stream::assemble(js, config, created, store, dir))
    }

    fn assemble(
        js: &JetStream,
        config: StreamConfig,
        created: i64,
        store: Box<dyn Store>,
        dir: Option<PathBuf>,
    ) -> Arc<Stream> {
        let storage = config.storage;
        let stream = Arc::new_cyclic(|me| Stream {
            me: me.clone(),
            name: config.name.clone(),
            name_json: json_str(&config.name),
            created,
            subjects: RwLock::new(config.subjects.clone()),
            retention: config.retention,
            inner: Mutex::new(StreamInner {
                transforms: transform::compile(&config),
                republished: Vec::new(),
                config: Arc::new(config),
                store,
                dedup: HashMap::new(),
                dedup_order: VecDeque::new(),
                last_msg_id: None,
                pending_acks: VecDeque::new(),
                driving: false,
                idle_driver: None,
                handed: None,
                ttls: BTreeMap::new(),
                last_expiry_check: 0,
                resources: Arc::clone(&js.resources),
                age_scan_from: 0,
                fast: fast_batch::Batches::default(),
                schedules: schedule::Schedules::default(),
            }),
            consumers: RwLock::new(BTreeMap::new()),
            sync_wake: Arc::new(Notify::new()),
            sync_linger: std::sync::atomic::AtomicU64::new(
                u64::try_from(SYNC_LINGER.as_nanos()).unwrap_or(u64::MAX),
            ),
            dir,
            js: js.weak(),
            closed: AtomicBool::new(false),
            batches: Mutex::new(HashMap::new()),
            read_errors: Mutex::new(BTreeMap::new()),
            storage,
            sourcing: Mutex::new(None),
            sourcing_round: Mutex::new(()),
            watchers: Mutex::new(Vec::new()),
            watched: AtomicBool::new(false),
        });
        stream.rebuild_dedup();
        tokio::spawn(flusher(
            Arc::downgrade(&stream),
            Arc::clone(&stream.sync_wake),
        ));
        stream
    }

    /// (Re)starts the task copying this stream's mirror or sources after
    /// its configuration changed (sources that stay keep their position).
    pub(crate) fn restart_sourcing(self: &Arc<Self>) {
        if let Some(s) = self.install_sourcing() {
            s.spawn(self);
        }
    }

    /// Sets up (without starting) the copying of this stream's mirror or
    /// sources, replacing (and stopping) what was there.
    pub(crate) fn install_sourcing(&self) -> Option<Arc<sourcing::Sourcing>> {
        let mut slot = lock(&self.sourcing);
        let previous = slot.take();
        if let Some(p) = &previous {
            p.stop();
        }
        *slot = sourcing::Sourcing::new(self, previous.as_deref());
        slot.clone()
    }

    /// Wakes the task copying this stream's mirror or sources, if any.
    pub(crate) fn wake_sourcing(&self) {
        if let Some(s) = lock(&self.sourcing).as_ref() {
            s.wake();
        }
    }

    fn stop_sourcing(&self) {
        if let Some(s) = lock(&self.sourcing).take() {
            s.stop();
        }
    }

    /// Stream info's `mirror` or `sources`, if it has them.
    pub(crate) fn sourcing_info(
        &self,
        js: Option<&JetStream>,
    ) -> Option<(&'static str, serde_json::Value)> {
        let s = lock(&self.sourcing).clone()?;
        Some(s.info(js))
    }

    /// Wakes `wake` whenever new messages of this stream are durable.
    pub(crate) fn watch(&self, wake: &Arc<Notify>) {
        let mut w = lock(&self.watchers);
        w.retain(|n| n.strong_count() > 0);
        w.push(Arc::downgrade(wake));
        self.watched.store(true, Ordering::Release);
    }

    fn wake_watchers(&self) {
        let mut w = lock(&self.watchers);
        w.retain(|n| match n.upgrade() {
            Some(n) => {
                n.notify_one();
                true
            }
            None => false,
        });
        if w.is_empty() {
            self.watched.store(false, Ordering::Release);
        }
    }

    /// Messages from `start` on passing `filter` (a source's lag).
    pub(crate) fn pending_from(&self, start: u64, filter: &SubjectFilter) -> u64 {
        lock(&self.inner).store.num_pending(start, filter)
    }

    /// The first message at or after `seq` passing `filter`.
    pub(crate) fn next_matching(
        &self,
        seq: u64,
        filter: &SubjectFilter,
    ) -> Result<Option<StoredMsg>, super::store::StoreError> {
        lock(&self.inner).store.next_from(seq, filter)
    }

    /// The newest message stored from the source with index name `iname`
    /// (its `Nats-Stream-Source` header): the origin sequence and identity.
    /// Scans back from the last message (once, when sourcing starts).
    pub(crate) fn last_sourced(&self, iname: &str) -> Option<(u64, String)> {
        let st = self.state();
        let mut seq = st.last_seq;
        while seq >= st.first_seq.max(1) {
            if let Ok(Some(m)) = self.read_msg(seq)
                && !m.hdr.is_empty()
                && let Some(v) = headers::get(&m.hdr, sourcing::SOURCE_HEADER)
                && let Some((name, origin_seq, ident)) = sourcing::parse_source_header(v)
                && name == iname
            {
                return Some((origin_seq, ident));
            }
            seq -= 1;
        }
        None
    }

    /// Stores messages of a mirror's origin under their own sequences and
    /// times. `progress` gets each origin sequence once it is stored, while
    /// the stream's lock is still held. Returns the last sequence stored; on
    /// failure also what was stored before it.
    pub(crate) fn store_mirrored(
        &self,
        msgs: &[StoredMsg],
        progress: impl Fn(u64),
    ) -> Result<Option<u64>, (Option<u64>, ApiError)> {
        let interest = if self.retention == Retention::Interest {
            self.interest_checker()
        } else {
            Vec::new()
        };
        let mut inner = lock(&self.inner);
        let mut last = None;
        for m in msgs {
            if let Err(e) = inner.store_mirrored(m, &interest) {
                drop(inner);
                self.stored_wake();
                return Err((last, e));
            }
            progress(m.seq);
            last = Some(m.seq);
        }
        drop(inner);
        self.stored_wake();
        Ok(last)
    }

    /// Stores sourced messages (subject, header block with the source's
    /// header, origin message) as new messages. `progress` gets each origin
    /// sequence once it is stored, under the stream's lock. Returns the
    /// origin sequence of the last one stored; on failure also what was
    /// stored before it.
    pub(crate) fn store_sourced(
        &self,
        msgs: &[(String, Vec<u8>, StoredMsg)],
        progress: impl Fn(u64),
    ) -> Result<Option<u64>, (Option<u64>, ApiError)> {
        let interest = if self.retention == Retention::Interest {
            self.interest_checker()
        } else {
            Vec::new()
        };
        let mut inner = lock(&self.inner);
        let mut last = None;
        for (subject, hdr, m) in msgs {
            if let Err(e) = inner.store_msg(&self.name, subject, hdr, &m.data, &interest) {
                drop(inner);
                self.stored_wake();
                return Err((last, e));
            }
            progress(m.seq);
            last = Some(m.seq);
        }
        drop(inner);
        self.stored_wake();
        Ok(last)
    }

    /// Stores one message for the server itself (the MQTT listener's
    /// retained messages): the publish checks and limits apply, nothing
    /// is answered. Returns the sequence; durable once [`Self::wait_durable`]
    /// returns.
    pub(crate) fn store_internal(
        &self,
        subject: &str,
        hdr: &[u8],
        data: &[u8],
    ) -> Result<u64, ApiError> {
        let interest = if self.retention == Retention::Interest {
            self.interest_checker()
        } else {
            Vec::new()
        };
        let stored = lock(&self.inner).store_msg(&self.name, subject, hdr, data, &interest);
        self.stored_wake();
        match stored? {
            Stored::New(seq) | Stored::Duplicate(seq) | Stored::Counter(seq, _) => Ok(seq),
            // `store_msg` never does a dry run.
            Stored::Checked => Err(ApiError::stream_general("not stored")),
        }
    }

    /// New messages were stored outside a publish: sync them and tell the
    /// consumers, as a publish does.
    fn stored_wake(&self) {
        if self.storage == StorageType::Memory {
            self.signal_consumers();
        } else {
            self.sync_soon();
        }
    }

    /// Starts making what was just written durable. When no sync job is
    /// out, the job is taken here and run on a blocking thread, which
    /// then sends the confirmations it made due and takes the next job
    /// itself while there is one ([`Stream::drive_syncs`]): a publish to an
    /// idle stream costs one hand-off to the thread that writes and
    /// fsyncs, which also acknowledges, instead of going through the
    /// flusher task before and after it. Under load the thread's loop is
    /// the group commit: publishes arriving while a job is out join the
    /// next one. Never waits on the disk (only the stream's lock); outside
    /// a runtime, or when another caller's job is out, the flusher is woken
    /// as before.
    fn sync_soon(&self) {
        if let (Ok(rt), Some(me)) = (tokio::runtime::Handle::try_current(), self.me.upgrade()) {
            let mut inner = lock(&self.inner);
            if inner.driving {
                return;
            }
            if !self.is_closed() {
                match Self::start_syncs(&mut inner) {
                    SyncStart::Running => return,
                    SyncStart::Handed(driver) => {
                        // Unparked after the lock is released, or it would
                        // wake only to wait for the lock.
                        drop(inner);
                        driver.unpark();
                        return;
                    }
                    SyncStart::Spawn(job) => {
                        drop(inner);
                        rt.spawn_blocking(move || me.drive_syncs(job));
                        return;
                    }
                    SyncStart::Nothing => {}
                }
            }
        }
        self.sync_wake.notify_one();
    }

    /// Takes the next sync job, under the stream's lock, unless a sync
    /// loop is running: hands it to the thread idling in
    /// [`Stream::linger`] when there is one (the caller unparks it once
    /// the lock is released: the job runs on the thread that ran the
    /// previous ones, with no trip through the blocking pool's queue and
    /// its lock), else returns it for a new loop.
    fn start_syncs(inner: &mut StreamInner) -> SyncStart {
        if inner.driving {
            return SyncStart::Running;
        }
        let Some(job) = inner.store.take_sync() else {
            return SyncStart::Nothing;
        };
        inner.driving = true;
        match inner.idle_driver.take() {
            Some(driver) => {
                inner.handed = Some(job);
                SyncStart::Handed(driver)
            }
            None => SyncStart::Spawn(job),
        }
    }

    /// After the last sync job: waits at most [`SYNC_LINGER`] for a writer
    /// to hand this thread the next one ([`Stream::start_syncs`]).
    /// `None` when none came (or the stream closed): the loop ends and the
    /// thread goes back to the pool. A sequential publisher's next publish
    /// comes one round trip after its ack, well within the wait.
    fn linger(&self) -> Option<super::store::SyncJob> {
        let me = std::thread::current();
        let wait = Duration::from_nanos(self.sync_linger.load(Ordering::Relaxed));
        let deadline = std::time::Instant::now() + wait;
        {
            let mut inner = lock(&self.inner);
            if inner.driving || inner.idle_driver.is_some() || self.is_closed() {
                return None;
            }
            inner.idle_driver = Some(me.clone());
        }
        loop {
            std::thread::park_timeout(
                deadline.saturating_duration_since(std::time::Instant::now()),
            );
            let mut inner = lock(&self.inner);
            if let Some(job) = inner.handed.take() {
                // `driving` was set for this thread by whoever handed it.
                return Some(job);
            }
            let still_idle = inner
                .idle_driver
                .as_ref()
                .is_some_and(|t| t.id() == me.id());
            if !still_idle {
                // Sent away by a close.
                return None;
            }
            if std::time::Instant::now() >= deadline || self.is_closed() {
                inner.idle_driver = None;
                return None;
            }
        }
    }

    /// Sends the thread idling in [`Stream::linger`] away (a close).
    fn dismiss_idle_driver(inner: &mut StreamInner) {
        if let Some(driver) = inner.idle_driver.take() {
            // Under the lock (a close is rare): it leaves once it has it.
            driver.unpark();
        }
    }

    /// Runs `job` and every sync job after it until none is left (on a
    /// blocking thread: it waits on the disk), sending after each the
    /// confirmations it made due and waking the consumers. Started with
    /// `driving` set; clears it, under the stream's lock, when it finds no
    /// next job, so a writer that saw it set can rely on this loop to take
    /// its writes.
    fn drive_syncs(self: Arc<Self>, mut job: super::store::SyncJob) {
        loop {
            let upto = job.upto;
            // A panic must not leave `driving` set (nothing would sync
            // again): it fails the job like an I/O error.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job.run))
                .unwrap_or_else(|_| Err(std::io::Error::other("the sync job panicked")));
            if let Err(e) = &result {
                tracing::error!(stream = %self.name, "write or fsync failed; the stream stops acknowledging: {e}");
            }
            let next = {
                let mut inner = lock(&self.inner);
                inner.store.synced(upto, result);
                let next = if self.is_closed() {
                    None
                } else {
                    inner.store.take_sync()
                };
                inner.driving = next.is_some();
                next
            };
            match self.js.upgrade() {
                Some(js) => self.release_acks(&js),
                None => return,
            }
            self.signal_consumers();
            match next {
                Some(j) => job = j,
                None => {
                    if self.is_closed() {
                        // The flusher ends at its next round; what a
                        // close left waiting is answered there.
                        self.sync_wake.notify_one();
                        return;
                    }
                    match self.linger() {
                        Some(j) => job = j,
                        None => return,
                    }
                }
            }
        }
    }

    /// Reopens a stream from its directory; `Ok(None)` when the directory
    /// holds no stream metadata (left alone, never deleted).
    pub(crate) fn recover(js: &JetStream, dir: &Path) -> Result<Option<Arc<Stream>>, String> {
        let meta_path = dir.join("meta.json");
        let bytes = match read_stream_dir(&RealFs, dir)? {
            StreamDir::Meta(b) => b,
            StreamDir::NotAStream => return Ok(None),
        };
        let meta: StreamMeta = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{} is not valid stream metadata: {e}", meta_path.display()))?;
        let store = open_store(js, &meta.config, Some(dir))?;
        let stream = Stream::assemble(js, meta.config, meta.created, store, Some(dir.to_owned()));
        let obs = dir.join("obs");
        let consumers = match consumer_dirs(&RealFs, &obs) {
            Ok(c) => c,
            Err(e) => {
                stream.shutdown();
                return Err(format!("{}: {e}", obs.display()));
            }
        };
        for d in consumers {
            // A consumer that cannot be read stops the start with a clear
            // error, as a stream does: running without it would let a
            // client create it again over its confirmed acks.
            match Consumer::recover(js, &stream, &d) {
                Ok(Some(c)) => {
                    write(&stream.consumers).insert(c.name.clone(), c);
                }
                Ok(None) => {}
                Err(e) => {
                    stream.shutdown();
                    return Err(format!("consumer {}: {e}", d.display()));
                }
            }
        }
        stream.reapply_acks();
        stream.restart_sourcing();
        Ok(Some(stream))
    }

    /// Interest and work-queue retention remove a message once every
    /// interested consumer acknowledged it. A consumer confirms an ack once
    /// its state file is written, and the stream's removal is written by
    /// the next sync job: a crash in between leaves acknowledged messages in
    /// the log. At recovery the consumers' states say which: they are
    /// removed again (only messages some consumer is interested in and that
    /// every interested consumer acknowledged).
    fn reapply_acks(&self) {
        if self.retention == Retention::Limits {
            return;
        }
        let consumers = self.consumers();
        let views: Vec<AckView<'_>> = consumers
            .iter()
            .map(|c| AckView {
                filter: c.filter(),
                delivered: c.info().delivered.stream_seq,
                has_acked: Box::new(|s| c.has_acked(s)),
            })
            .collect();
        let bound = views.iter().map(|c| c.delivered).max().unwrap_or(0);
        if bound == 0 {
            return;
        }
        let candidates = delivered_per_subject(lock(&self.inner).store.subject_index(), bound);
        let doomed = acked_by_every_interested(candidates, &views);
        if doomed.is_empty() {
            return;
        }
        let mut inner = lock(&self.inner);
        for seq in &doomed {
            let _ = inner.store.remove(*seq, false);
        }
        drop(inner);
        tracing::info!(stream = %self.name, count = doomed.len(), "removed messages every interested consumer had acknowledged before the restart");
        self.sync_wake.notify_one();
    }

    /// The engine this stream belongs to.
    pub(crate) fn js(&self) -> Option<Arc<JetStream>> {
        self.js.upgrade()
    }

    /// True when this stream captures the literal `subject`.
    pub fn captures(&self, subject: &str) -> bool {
        read(&self.subjects)
            .iter()
            .any(|f| crate::subject::matches(f, subject))
    }

    /// Current configuration.
    pub fn config(&self) -> StreamConfig {
        StreamConfig::clone(&lock(&self.inner).config)
    }

    /// The configuration, shared (no copy; for per-request checks).
    pub fn config_ref(&self) -> Arc<StreamConfig> {
        Arc::clone(&lock(&self.inner).config)
    }

    /// Store state.
    pub fn state(&self) -> StoreState {
        lock(&self.inner).store.state()
    }

    /// Storage type and bytes used.
    pub fn usage(&self) -> (StorageType, u64) {
        (self.storage, self.state().bytes)
    }

    /// A consumer by name.
    pub fn consumer(&self, name: &str) -> Option<Arc<Consumer>> {
        read(&self.consumers).get(name).cloned()
    }

    /// All consumers.
    pub fn consumers(&self) -> Vec<Arc<Consumer>> {
        read(&self.consumers).values().cloned().collect()
    }

    /// Number of consumers.
    pub fn consumer_count(&self) -> usize {
        read(&self.consumers).len()
    }

    pub(crate) fn add_consumer(&self, c: Arc<Consumer>) {
        write(&self.consumers).insert(c.name.clone(), c);
    }

    pub(crate) fn remove_consumer(&self, name: &str) -> Option<Arc<Consumer>> {
        write(&self.consumers).remove(name)
    }

    /// The highest sequence consumers may deliver (durable).
    pub fn visible_seq(&self) -> u64 {
        lock(&self.inner).store.durable_seq()
    }

    /// Damaged records found when the store opened.
    pub fn corrupt_records(&self) -> Vec<super::store::CorruptRecord> {
        lock(&self.inner).store.corrupt_records()
    }

    /// Why the store refuses writes, if it does.
    pub fn poisoned(&self) -> Option<String> {
        lock(&self.inner).store.poisoned()
    }

    /// A consumer could not read message `seq` (or the first one at or
    /// after it): logged once and reported until it reads again.
    pub(crate) fn note_read_error(&self, seq: u64, error: &str) {
        let mut errors = lock(&self.read_errors);
        if errors.insert(seq, error.to_owned()).is_none() {
            tracing::error!(stream = %self.name, seq, %error, "a stored message cannot be read; its consumers wait on it");
        }
    }

    /// Message `seq` was read (or is gone): it no longer blocks anyone.
    pub(crate) fn clear_read_error(&self, seq: u64) {
        let mut errors = lock(&self.read_errors);
        if !errors.is_empty() {
            errors.remove(&seq);
        }
    }

    /// Messages consumers cannot read back, with why.
    pub fn read_errors(&self) -> Vec<(u64, String)> {
        lock(&self.read_errors)
            .iter()
            .map(|(s, e)| (*s, e.clone()))
            .collect()
    }

    /// Applies a new configuration (validated by the API layer).
    pub(crate) fn update_config(self: &Arc<Self>, config: StreamConfig) -> Result<(), ApiError> {
        let resource = self.config_ref();
        let sourcing_changed =
            resource.mirror != config.mirror || resource.sources != config.sources;
        drop(resource);
        if let Some(dir) = &self.dir {
            let meta = StreamMeta {
                config: config.clone(),
                created: self.created,
            };
            let bytes = serde_json::to_vec_pretty(&meta)
                .map_err(|e| ApiError::update_failed(e.to_string()))?;
            atomic_write(&dir.join("meta.json"), &bytes)
                .map_err(|e| ApiError::update_failed(format!("stream metadata: {e}")))?;
        }
        *write(&self.subjects) = config.subjects.clone();
        let mut inner = lock(&self.inner);
        if !config.allow_batched {
            inner.fast.clear();
        }
        inner.transforms = transform::compile(&config);
        inner.config = Arc::new(config);
        let _ = inner.enforce_limits(None);
        drop(inner);
        for c in self.consumers() {
            c.refresh_filter(self);
        }
        if sourcing_changed {
            self.restart_sourcing();
        }
        self.sync_wake.notify_one();
        Ok(())
    }

    /// Stores a client's publish and arranges its acknowledgement.
    pub(crate) fn publish(
        &self,
        js: &JetStream,
        subject: &str,
        reply: Option<&str>,
        hdr: &[u8],
        data: &[u8],
    ) {
        self.publish_traced(js, subject, reply, hdr, data, None);
    }

    /// [`Stream::publish`] of a traced message (`trace`: trace only, and
    /// the report to fill): a trace-only message runs every check but is
    /// not stored nor acknowledged; a delivered one is stored with its
    /// `Nats-Trace-Dest` disabled (so its deliveries are not traced again).
    pub(crate) fn publish_traced(
        &self,
        js: &JetStream,
        subject: &str,
        reply: Option<&str>,
        hdr: &[u8],
        data: &[u8],
        mut trace: Option<(bool, &mut JetStreamReport)>,
    ) {
        if let Some((_, report)) = trace.as_mut() {
            report.stream = self.name.clone();
        }
        let batched = reply.is_some_and(|r| r.ends_with(fast_batch::SUFFIX))
            || (!hdr.is_empty() && headers::get(hdr, "Nats-Batch-Id").is_some());
        if let (true, Some((only, report))) = (batched, trace.as_mut()) {
            if *only {
                // Not built: refused rather than stored.
                report.error = "message tracing of batch publishes is not supported".to_owned();
                if let Some(reply) = reply {
                    let err = ApiError::stream_general(
                        "message tracing of batch publishes is not supported",
                    );
                    let body = serde_json::json!({"error": err, "stream": self.name, "seq": 0});
                    js.send(reply, None, b"", body.to_string().as_bytes());
                }
                return;
            }
            report.subject = subject.to_owned();
        }
        if let Some(reply) = reply
            && reply.ends_with(fast_batch::SUFFIX)
        {
            self.publish_fast(js, subject, reply, hdr, data);
            return;
        }
        if !hdr.is_empty()
            && let Some(id) = headers::get(hdr, "Nats-Batch-Id")
        {
            self.publish_in_batch(js, id, subject, reply, hdr, data);
            return;
        }
        let interest = if self.retention == Retention::Interest {
            self.interest_checker()
        } else {
            Vec::new()
        };
        let only = matches!(trace, Some((true, _)));
        // A stored traced message must not trigger traces when delivered.
        let disabled;
        let hdr = if trace.is_some() && !only {
            disabled = crate::trace::set_header(hdr, crate::trace::DEST, crate::trace::DISABLED);
            &disabled[..]
        } else {
            hdr
        };
        let mut inner = lock(&self.inner);
        let transformed = match &inner.transforms {
            None => None,
            Some(t) => t.ingest(subject),
        };
        let subject = transformed.as_deref().unwrap_or(subject);
        let outcome = inner.store_or_check(&self.name, subject, hdr, data, &interest, false, only);
        if let Some((_, report)) = trace {
            match &outcome {
                Ok(Stored::Duplicate(_)) => report.error = "msgid is duplicate".to_owned(),
                Ok(_) => {
                    report.subject = subject.to_owned();
                    report.no_interest = self.retention == Retention::Interest
                        && !interest.iter().any(|f| f.matches(subject));
                }
                Err(err) => report.error = trace_error_text(err, hdr),
            }
        }
        if let Ok(Stored::Checked) = outcome {
            return;
        }
        let no_ack = inner.config.no_ack;
        let memory = self.storage == StorageType::Memory;
        let republish = std::mem::take(&mut inner.republished);
        match outcome {
            Err(err) => {
                drop(inner);
                if let Some(reply) = reply {
                    let body = serde_json::json!({"error": err, "stream": self.name, "seq": 0});
                    js.send(reply, None, b"", body.to_string().as_bytes());
                }
            }
            Ok(stored) => {
                let body = match stored {
                    Stored::Duplicate(seq) => format!(
                        "{{\"stream\":{},\"seq\":{seq},\"duplicate\":true}}",
                        self.name_json
                    ),
                    Stored::Counter(seq, val) => format!(
                        "{{\"stream\":{},\"seq\":{seq},\"val\":{}}}",
                        self.name_json,
                        json_str(&val)
                    ),
                    Stored::New(seq) => {
                        format!("{{\"stream\":{},\"seq\":{seq}}}", self.name_json)
                    }
                    Stored::Checked => String::new(),
                };
                let reply = reply.filter(|_| !no_ack);
                if reply.is_some() || !republish.is_empty() {
                    // The mark covers the message (or, for a duplicate,
                    // everything before it) and the removals the
                    // publish caused (limits, rollups).
                    let mark = inner.store.write_mark();
                    if memory || mark <= inner.store.durable_mark() && inner.pending_acks.is_empty()
                    {
                        drop(inner);
                        // Republished copies go first (nats-server's order).
                        send_republished(js, &republish);
                        if let Some(reply) = reply {
                            js.send(reply, None, b"", body.as_bytes());
                        }
                    } else {
                        inner.pending_acks.push_back(PendingAck {
                            mark,
                            reply: reply.unwrap_or_default().to_owned(),
                            body: body.into_bytes(),
                            api_type: None,
                            republish,
                        });
                        drop(inner);
                    }
                } else {
                    drop(inner);
                }
                if memory {
                    self.signal_consumers();
                } else {
                    self.sync_soon();
                }
            }
        }
    }

    /// One message of an atomic batch (ADR-50, as nats-server 2.15.1 does
    /// it): staged until the message with `Nats-Batch-Commit` (`1`: store
    /// it too; `eob`: it only ends the batch), then every check runs as if
    /// the messages before were stored, and all are stored as one unit or
    /// none. Messages before the commit get an empty reply.
    fn publish_in_batch(
        &self,
        js: &JetStream,
        id: &str,
        subject: &str,
        reply: Option<&str>,
        hdr: &[u8],
        data: &[u8],
    ) {
        let refuse = |err: ApiError| {
            if let Some(reply) = reply {
                let body = serde_json::json!({"error": err, "stream": self.name, "seq": 0});
                js.send(reply, None, b"", body.to_string().as_bytes());
            }
        };
        if !self.config().allow_atomic {
            return refuse(ApiError::atomic_disabled());
        }
        if id.is_empty() || id.len() > 64 {
            return refuse(ApiError::batch_id_invalid());
        }
        // The subject it is stored under (before the batch lock: the
        // stream lock is never taken inside it).
        let transformed = lock(&self.inner)
            .transforms
            .as_ref()
            .and_then(|t| t.ingest(subject));
        let mut batches = lock(&self.batches);
        let now = std::time::Instant::now();
        batches.retain(|_, b| now.duration_since(b.last_active) < BATCH_IDLE);
        let Some(seq) =
            headers::get(hdr, "Nats-Batch-Sequence").and_then(|s| s.trim().parse::<u64>().ok())
        else {
            batches.remove(id);
            drop(batches);
            return refuse(ApiError::batch_sequence_missing());
        };
        let commit = headers::get(hdr, "Nats-Batch-Commit");
        if !matches!(commit, None | Some("1" | "eob")) {
            batches.remove(id);
            drop(batches);
            return refuse(ApiError::batch_commit_invalid());
        }
        let expected = batches.get(id).map_or(1, |b| b.msgs.len() as u64 + 1);
        let fresh = !batches.contains_key(id);
        if seq != expected || (seq == 1 && !fresh) {
            // A gap, a repeat, or a batch that starts again: abandoned.
            batches.remove(id);
            drop(batches);
            return refuse(ApiError::batch_incomplete());
        }
        if fresh && batches.len() >= MAX_INFLIGHT_BATCHES {
            drop(batches);
            return refuse(ApiError::batch_too_many_inflight());
        }
        if seq > MAX_BATCH_MSGS {
            batches.remove(id);
            drop(batches);
            return refuse(ApiError::batch_too_large());
        }
        let batch = batches.entry(id.to_owned()).or_insert_with(|| StagedBatch {
            msgs: Vec::new(),
            last_active: now,
        });
        batch.last_active = now;
        if commit != Some("eob") {
            batch.msgs.push(StagedMsg {
                subject: transformed.unwrap_or_else(|| subject.to_owned()),
                hdr: hdr.to_vec(),
                data: data.to_vec(),
            });
        }
        if commit.is_none() {
            drop(batches);
            if let Some(reply) = reply {
                js.send(reply, None, b"", b"");
            }
            return;
        }
        let mut staged = batches.remove(id).map(|b| b.msgs).unwrap_or_default();
        drop(batches);
        if staged.is_empty() {
            return refuse(ApiError::batch_incomplete());
        }
        if commit == Some("eob") {
            // As nats-server does, the last stored message carries the
            // commit mark, so a reader sees where the batch ended.
            if let Some(last) = staged.last_mut() {
                last.hdr = headers::with_added(&last.hdr, "Nats-Batch-Commit", "1");
            }
        }
        let interest = if self.retention == Retention::Interest {
            self.interest_checker()
        } else {
            Vec::new()
        };
        let mut inner = lock(&self.inner);
        let last = match inner.store_batch(&self.name, &staged, &interest) {
            Ok(last) => last,
            Err(err) => {
                inner.republished.clear();
                drop(inner);
                return refuse(err);
            }
        };
        let body = format!(
            "{{\"stream\":{},\"seq\":{last},\"batch\":{},\"count\":{}}}",
            json_str(&self.name),
            json_str(id),
            staged.len()
        );
        let memory = self.storage == StorageType::Memory;
        let republish = std::mem::take(&mut inner.republished);
        let reply = reply.filter(|_| !inner.config.no_ack);
        if reply.is_some() || !republish.is_empty() {
            let mark = inner.store.write_mark();
            if memory || mark <= inner.store.durable_mark() && inner.pending_acks.is_empty() {
                drop(inner);
                send_republished(js, &republish);
                if let Some(reply) = reply {
                    js.send(reply, None, b"", body.as_bytes());
                }
            } else {
                inner.pending_acks.push_back(PendingAck {
                    mark,
                    reply: reply.unwrap_or_default().to_owned(),
                    body: body.into_bytes(),
                    api_type: None,
                    republish,
                });
                drop(inner);
            }
        } else {
            drop(inner);
        }
        if memory {
            self.signal_consumers();
        } else {
            self.sync_soon();
        }
    }

    /// One message of a fast batch (reply subject ending in `.$FI`, see
    /// [`fast_batch`]), with nats-server 2.15.1's checks in its order:
    /// sealed, size, `allow_batched`, the reply's grammar, then the batch.
    fn publish_fast(&self, js: &JetStream, subject: &str, reply: &str, hdr: &[u8], data: &[u8]) {
        let interest = if self.retention == Retention::Interest {
            self.interest_checker()
        } else {
            Vec::new()
        };
        let mut inner = lock(&self.inner);
        let cfg = Arc::clone(&inner.config);
        let acks = !cfg.no_ack;
        let refuse = |inner: std::sync::MutexGuard<'_, StreamInner>, err: ApiError| {
            drop(inner);
            if acks {
                js.send(reply, None, b"", &fast_batch::refusal(&self.name, &err));
            }
        };
        if cfg.sealed {
            return refuse(inner, ApiError::stream_sealed());
        }
        if cfg.max_msg_size >= 0
            && (hdr.len() as i64 > cfg.max_msg_size
                || data.len() as i64 > cfg.max_msg_size - hdr.len() as i64)
        {
            return refuse(inner, ApiError::message_too_large());
        }
        if !cfg.allow_batched {
            return refuse(inner, ApiError::fast_batch_disabled());
        }
        let Ok(req) = fast_batch::parse(reply) else {
            return refuse(inner, ApiError::fast_batch_invalid_pattern());
        };
        let mut out = fast_batch::Replies::default();
        let next = match inner.fast.before_store(
            &self.name,
            &req,
            acks,
            std::time::Instant::now(),
            &mut out,
        ) {
            Ok(next) => next,
            Err(err) => return refuse(inner, err),
        };
        let mut stored_any = false;
        if next == fast_batch::Next::Store {
            // The required API level may refuse the batch; the header is
            // never stored.
            let mut hdr = std::borrow::Cow::Borrowed(hdr);
            if !hdr.is_empty() && headers::get(&hdr, "Nats-Required-Api-Level").is_some() {
                if headers::requires_higher_level(&hdr) {
                    inner.fast.abandon(req.id);
                    return refuse(inner, ApiError::required_api_level());
                }
                hdr = std::borrow::Cow::Owned(headers::without(&hdr, "Nats-Required-Api-Level"));
            }
            let outcome = match inner.store_msg(&self.name, subject, &hdr, data, &interest) {
                Ok(Stored::New(seq) | Stored::Counter(seq, _)) => {
                    stored_any = true;
                    fast_batch::Outcome::Stored(seq)
                }
                Ok(Stored::Duplicate(seq)) => fast_batch::Outcome::Duplicate(seq),
                // Only a dry run (trace only) answers this; `store_msg`
                // never does one.
                Ok(Stored::Checked) => {
                    fast_batch::Outcome::Refused(ApiError::stream_general("not stored"))
                }
                Err(err) => fast_batch::Outcome::Refused(err),
            };
            inner.fast.after_store(&self.name, &req, &outcome, &mut out);
        }
        let memory = self.storage == StorageType::Memory;
        // Republished copies of what was stored go out once it is durable,
        // before the flow ack that covers it (as for a plain publish).
        let mut republish = std::mem::take(&mut inner.republished);
        let mut ready = Vec::new();
        if !out.durable.is_empty() || !republish.is_empty() {
            let mark = inner.store.write_mark();
            if memory || mark <= inner.store.durable_mark() && inner.pending_acks.is_empty() {
                ready = out.durable;
            } else if out.durable.is_empty() {
                inner.pending_acks.push_back(PendingAck {
                    mark,
                    reply: String::new(),
                    body: Vec::new(),
                    api_type: None,
                    republish: std::mem::take(&mut republish),
                });
            } else {
                for body in out.durable {
                    inner.pending_acks.push_back(PendingAck {
                        mark,
                        reply: reply.to_owned(),
                        body,
                        api_type: None,
                        republish: std::mem::take(&mut republish),
                    });
                }
            }
        }
        drop(inner);
        for body in &out.now {
            js.send(reply, None, b"", body);
        }
        send_republished(js, &republish);
        for body in &ready {
            js.send(reply, None, b"", body);
        }
        if !memory {
            // The group commit makes the message durable and sends what
            // waits for that.
            self.sync_soon();
        } else if stored_any {
            self.signal_consumers();
        }
    }

    /// A closure telling whether some consumer is interested in a subject
    /// (interest and work-queue retention).
    fn interest_checker(&self) -> Vec<SubjectFilter> {
        read(&self.consumers).values().map(|c| c.filter()).collect()
    }

    /// Wakes every consumer (new messages are visible).
    pub(crate) fn signal_consumers(&self) {
        for c in read(&self.consumers).values() {
            c.signal();
        }
        if self.watched.load(Ordering::Acquire) {
            self.wake_watchers();
        }
    }

    /// Sends the reply to an API request that changed the store (message
    /// delete, purge) once that change is durable, as publishes are
    /// acknowledged: tombstones fsynced under `SyncPolicy::Always`, written
    /// to the kernel under `Interval`. `api_type` is the response type, for
    /// the error reply if the store fails first.
    pub(crate) fn reply_when_durable(
        &self,
        js: &JetStream,
        reply: &str,
        body: Vec<u8>,
        api_type: &str,
    ) {
        let mut inner = lock(&self.inner);
        let mark = inner.store.write_mark();
        if self.storage == StorageType::Memory
            || mark <= inner.store.durable_mark() && inner.pending_acks.is_empty()
        {
            drop(inner);
            js.send(reply, None, b"", &body);
            return;
        }
        inner.pending_acks.push_back(PendingAck {
            mark,
            reply: reply.to_owned(),
            body,
            api_type: Some(api_type.to_owned()),
            republish: Vec::new(),
        });
        drop(inner);
        self.sync_wake.notify_one();
    }

    /// Sends the confirmations whose changes are durable (or errors, if the
    /// store is poisoned).
    fn release_acks(&self, js: &JetStream) {
        let mut out = Vec::new();
        {
            let mut inner = lock(&self.inner);
            let durable = inner.store.durable_mark();
            let poisoned = inner.store.poisoned();
            while let Some(p) = inner.pending_acks.front() {
                if p.mark <= durable {
                    if let Some(p) = inner.pending_acks.pop_front() {
                        out.push((p.reply, p.body, p.republish));
                    }
                } else if let Some(reason) = &poisoned {
                    // Not durable: not republished either.
                    if let Some(p) = inner.pending_acks.pop_front() {
                        let err = ApiError::store_failed(reason.clone());
                        let body = match &p.api_type {
                            None => {
                                serde_json::json!({"error": err, "stream": self.name, "seq": 0})
                            }
                            Some(t) => serde_json::json!({"type": t, "error": err}),
                        };
                        out.push((p.reply, body.to_string().into_bytes(), Vec::new()));
                    }
                } else {
                    break;
                }
            }
        }
        if out.is_empty() {
            return;
        }
        let Some(router) = js.router() else {
            return;
        };
        // One delivery run for the whole release: each connection's writer
        // is woken once, when the run ends, instead of once per
        // confirmation. Called from the blocking thread that fsyncs, a wake
        // per confirmation was a cross-thread wake-up of a runtime worker
        // per publish, and the writer sent the confirmations in many small
        // writes as they trickled in.
        let mut run = router.deliveries();
        // Mostly run by the thread that fsynced (outside the runtime's
        // workers): the confirmations go straight to the sockets of idle
        // connections (one non-blocking send each) rather than through a
        // wake-up of each connection's writer task, which would first have
        // to wake a worker. Also right from the flusher task.
        run.write_through();
        for (reply, body, republish) in out {
            // Republished copies go first (nats-server's order).
            for m in &republish {
                run.route_as(&m.subject, &m.subject, None, &m.hdr, &m.data);
            }
            if !reply.is_empty() {
                run.route_as(&reply, &reply, None, b"", &body);
            }
        }
    }

    /// Whether an expiry round is due (at most every 100 ms, and only for
    /// streams with a max_age or messages with a TTL; marks it done), and
    /// whether a message schedule is due.
    fn timers_due(&self) -> (bool, bool) {
        let now = now_nanos();
        let mut inner = lock(&self.inner);
        let fire = inner.schedules.next_due().is_some_and(|at| at <= now);
        if now - inner.last_expiry_check < 100_000_000
            || (inner.config.max_age <= 0 && inner.ttls.is_empty())
        {
            return (false, fire);
        }
        inner.last_expiry_check = now;
        (true, fire)
    }

    /// Fires the message schedules that are due (see [`schedule`]): reads
    /// the schedule messages, so on a blocking thread for a file stream.
    fn fire_schedules(&self) {
        let interest = if self.retention == Retention::Interest {
            self.interest_checker()
        } else {
            Vec::new()
        };
        lock(&self.inner).fire_schedules(&self.name, now_nanos(), &interest);
    }

    /// Removes messages over max_age and past their TTL (see [`ttl`]).
    /// Reads the expiring messages (markers keep their subjects and
    /// headers): on a blocking thread for a file stream.
    fn expire(&self) {
        let now = now_nanos();
        // A marker replacing an expired message is kept only where a
        // consumer is interested (interest streams).
        let interest = if self.retention == Retention::Interest {
            self.interest_checker()
        } else {
            Vec::new()
        };
        let mut inner = lock(&self.inner);
        inner.expire_due(now, &interest);
        if inner.republished.is_empty() {
            return;
        }
        // Markers to republish: once durable, as publishes are.
        let republish = std::mem::take(&mut inner.republished);
        let Some(js) = self.js.upgrade() else {
            return;
        };
        let mark = inner.store.write_mark();
        if self.storage == StorageType::Memory
            || mark <= inner.store.durable_mark() && inner.pending_acks.is_empty()
        {
            drop(inner);
            send_republished(&js, &republish);
        } else {
            inner.pending_acks.push_back(PendingAck {
                mark,
                reply: String::new(),
                body: Vec::new(),
                api_type: None,
                republish,
            });
            drop(inner);
            self.sync_wake.notify_one();
        }
    }

    fn rebuild_dedup(&self) {
        let mut inner = lock(&self.inner);
        let window = inner.config.duplicate_window;
        let now = now_nanos();
        let from = inner.store.seq_for_time(now - window);
        let mut seq = from;
        let allow_ttl = inner.config.allow_msg_ttl;
        // Only messages with headers can carry an id: the store skips the
        // others (the file store without reading them).
        while let Ok(Some(m)) = inner.store.next_with_headers_from(seq) {
            seq = m.seq + 1;
            if !m.hdr.is_empty()
                && let Some(id) = headers::get(&m.hdr, "Nats-Msg-Id")
            {
                let key = DedupKey::of(id);
                inner.dedup.insert(key.clone(), m.seq);
                inner.dedup_order.push_back((m.ts, key));
            }
        }
        let last_seq = inner.store.state().last_seq;
        if let Ok(Some(last)) = inner.store.get(last_seq) {
            inner.last_msg_id = headers::get(&last.hdr, "Nats-Msg-Id").map(str::to_owned);
        }
        if allow_ttl {
            inner.rebuild_ttls();
        }
        if inner.config.allow_msg_schedules {
            inner.rebuild_schedules();
        }
    }

    /// Message by sequence.
    pub fn get_msg(&self, seq: u64) -> Result<Option<StoredMsg>, ApiError> {
        self.read_msg(seq).map_err(|e| ApiError::stream_read(&e))
    }

    /// Message by sequence, with the store's own error (which tells a read
    /// that would have waited on the disk from a failed one).
    pub(crate) fn read_msg(&self, seq: u64) -> Result<Option<StoredMsg>, super::store::StoreError> {
        lock(&self.inner).store.get(seq)
    }

    /// Newest message on a subject (wildcards allowed).
    pub fn last_by_subject(&self, subject: &str) -> Result<Option<StoredMsg>, ApiError> {
        lock(&self.inner)
            .store
            .last_by_subject(subject)
            .map_err(|e| ApiError::stream_read(&e))
    }

    /// First message at or after `seq` matching `subject`.
    pub fn next_by_subject(&self, subject: &str, seq: u64) -> Result<Option<StoredMsg>, ApiError> {
        let filter = SubjectFilter::from_filters([subject]);
        lock(&self.inner)
            .store
            .next_from(seq, &filter)
            .map_err(|e| ApiError::stream_read(&e))
    }

    /// Deletes one message.
    pub(crate) fn delete_msg(&self, seq: u64, erase: bool) -> Result<bool, ApiError> {
        let mut inner = lock(&self.inner);
        let r = inner
            .store
            .remove(seq, erase)
            .map_err(|e| ApiError::msg_delete_failed(e.to_string()));
        drop(inner);
        self.sync_wake.notify_one();
        r
    }

    /// Purges per the request; returns the number removed.
    pub(crate) fn purge(&self, purge: &Purge) -> Result<u64, ApiError> {
        let mut inner = lock(&self.inner);
        let n = inner
            .store
            .purge(purge)
            .map_err(|e| ApiError::purge_failed(e.to_string()))?;
        if purge.filter.is_none() && purge.seq.is_none() && purge.keep.is_none() {
            inner.dedup.clear();
            inner.dedup_order.clear();
        }
        drop(inner);
        for c in self.consumers() {
            c.on_purge(self);
        }
        self.sync_wake.notify_one();
        Ok(n)
    }

    /// Removes acknowledged messages under interest / work-queue retention.
    pub(crate) fn on_acked(&self, seqs: &[u64]) {
        if self.retention == Retention::Limits || seqs.is_empty() {
            return;
        }
        let consumers = self.consumers();
        let mut doomed = Vec::new();
        {
            let mut inner = lock(&self.inner);
            for &seq in seqs {
                let Ok(Some(subject)) = inner.store.subject_of(seq) else {
                    continue;
                };
                doomed.push((seq, subject));
            }
        }
        let doomed: Vec<u64> = doomed
            .into_iter()
            .filter(|(seq, subject)| {
                consumers
                    .iter()
                    .filter(|c| c.filter().matches(subject))
                    .all(|c| c.has_acked(*seq))
            })
            .map(|(seq, _)| seq)
            .collect();
        if doomed.is_empty() {
            return;
        }
        let mut inner = lock(&self.inner);
        for seq in doomed {
            let _ = inner.store.remove(seq, false);
        }
        drop(inner);
        self.sync_wake.notify_one();
    }

    /// Waits until every change made to the store so far is durable (as
    /// confirmations are: fsynced under `SyncPolicy::Always`), running the
    /// sync job itself when the flusher has none out. Blocks (an admin
    /// request); an error when the store is poisoned or after five seconds.
    pub(crate) fn wait_durable(&self) -> Result<(), String> {
        let mark = lock(&self.inner).store.write_mark();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let step = durable_step(lock(&self.inner).store.as_mut(), mark);
            match step {
                DurableStep::Done => return Ok(()),
                DurableStep::Failed(reason) => return Err(reason),
                DurableStep::Run(job) => {
                    let upto = job.upto;
                    let result = (job.run)();
                    if let Err(e) = &result {
                        tracing::error!(stream = %self.name, "write or fsync failed; the stream stops acknowledging: {e}");
                    }
                    lock(&self.inner).store.synced(upto, result);
                    // The flusher sends the confirmations this made due.
                    self.sync_wake.notify_one();
                }
                DurableStep::Wait => {
                    if std::time::Instant::now() >= deadline {
                        return Err("timed out waiting for the stream's writes".into());
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }

    /// Stops the stream (server shutdown): final sync, acks, consumer state.
    pub(crate) fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.stop_sourcing();
        for c in self.consumers() {
            c.shutdown();
        }
        let mut inner = lock(&self.inner);
        Self::dismiss_idle_driver(&mut inner);
        if let Err(e) = inner.store.close() {
            tracing::error!(stream = %self.name, "closing the store failed: {e}");
        }
        self.sync_wake.notify_one();
    }

    /// Deletes the stream and its data. The stream's directory (with its
    /// consumers' directories in it) goes first and at once, so a crash
    /// leaves the whole stream or none of it.
    pub(crate) fn destroy(&self) -> Result<(), ApiError> {
        self.closed.store(true, Ordering::SeqCst);
        self.stop_sourcing();
        let mut inner = lock(&self.inner);
        Self::dismiss_idle_driver(&mut inner);
        // Failed publishes still waiting get nothing (as on nats-server).
        inner.pending_acks.clear();
        let deleted = match &self.dir {
            Some(dir) => delete_stream_dir(&RealFs, inner.store.as_mut(), dir)
                .map_err(|e| ApiError::delete_failed(e.to_string())),
            None => inner
                .store
                .destroy()
                .map_err(|e| ApiError::delete_failed(e.to_string())),
        };
        drop(inner);
        for c in self.consumers() {
            c.stop(true);
        }
        write(&self.consumers).clear();
        self.sync_wake.notify_one();
        deleted
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Per-subject counts for STREAM.INFO.
    pub fn subjects(&self, filter: &str) -> Vec<(String, u64)> {
        lock(&self.inner).store.subjects(filter)
    }

    /// Interior deletes for STREAM.INFO: at most [`MAX_DELETED_DETAILS`]
    /// (the state's `num_deleted` counts them all), so a request cannot
    /// make the server allocate for a huge span of removed sequences.
    pub fn deleted(&self) -> Vec<u64> {
        lock(&self.inner).store.deleted_up_to(MAX_DELETED_DETAILS)
    }
}

impl StreamInner {
    /// Checks and stores one message, in nats-server's order of checks
    /// (`processJetStreamMsg`): counters, expected stream, TTLs allowed,
    /// expected sequences, schedules, then dedup, expected last msg id,
    /// rollups, the counter's new value, sizes, limits, the TTL's value.
    fn store_msg(
        &mut self,
        stream: &str,
        subject: &str,
        hdr: &[u8],
        data: &[u8],
        interest: &[SubjectFilter],
    ) -> Result<Stored, ApiError> {
        self.store_msg_as(stream, subject, hdr, data, interest, false)
    }

    /// [`Self::store_msg`]; `produced`: a message a schedule fires (its
    /// headers were checked when the schedule was published, as
    /// nats-server skips those checks for it).
    fn store_msg_as(
        &mut self,
        stream: &str,
        subject: &str,
        hdr: &[u8],
        data: &[u8],
        interest: &[SubjectFilter],
        produced: bool,
    ) -> Result<Stored, ApiError> {
        self.store_or_check(stream, subject, hdr, data, interest, produced, false)
    }

    /// Every check of a publish, storing it unless `dry_run` (a trace-only
    /// message: `Stored::Checked` when it would have been stored).
    #[allow(clippy::too_many_arguments)]
    fn store_or_check(
        &mut self,
        stream: &str,
        subject: &str,
        hdr: &[u8],
        data: &[u8],
        interest: &[SubjectFilter],
        produced: bool,
        dry_run: bool,
    ) -> Result<Stored, ApiError> {
        let cfg = Arc::clone(&self.config);
        let cfg = &*cfg;
        if cfg.sealed {
            return Err(ApiError::stream_sealed());
        }
        if let Some(reason) = self.store.poisoned() {
            return Err(ApiError::store_failed(reason));
        }
        let now = now_nanos();
        let mut msg_id = None;
        let mut rollup = None;
        let mut incr = None;
        // The header block as stored (a raised TTL is rewritten, a counter
        // may carry its sources).
        let mut hdr = std::borrow::Cow::Borrowed(hdr);
        let present = if hdr.is_empty() {
            features::Present::default()
        } else {
            features::scan(&hdr)
        };
        if !hdr.is_empty() {
            if present.incr {
                incr = counter::parse_incr(&hdr)?;
            }
            if incr.is_some() {
                if !cfg.allow_msg_counter {
                    return Err(ApiError::msg_incr_disabled());
                }
                if !data.is_empty() {
                    return Err(ApiError::msg_incr_payload());
                }
                if counter::incompatible(&hdr) {
                    return Err(ApiError::msg_incr_invalid());
                }
            }
            if let Some(expected) = headers::get(&hdr, "Nats-Expected-Stream")
                && !expected.is_empty()
                && expected != stream
            {
                return Err(ApiError::expected_stream_mismatch());
            }
            if present.ttl && !cfg.allow_msg_ttl && ttl::wants_ttl(&hdr) {
                return Err(ApiError::msg_ttl_disabled());
            }
            if headers::get(&hdr, "Nats-Expected-Last-Subject-Sequence").is_some() {
                self.check_last_on_subject(&hdr, subject)?;
            } else if headers::get(&hdr, "Nats-Expected-Last-Subject-Sequence-Subject")
                .is_some_and(|s| !s.is_empty())
            {
                return Err(ApiError::expected_last_subject_seq_missing());
            }
            let last = self.store.state().last_seq;
            if let Some(v) = headers::get(&hdr, "Nats-Expected-Last-Sequence") {
                let expected: u64 = v.parse().map_err(|_| ApiError::wrong_last_sequence(last))?;
                if expected != last {
                    return Err(ApiError::wrong_last_sequence(last));
                }
            }
            if present.schedule
                && !produced
                && let Some(h) = schedule::check_publish(cfg, subject, &hdr, &mut *self.store)?
            {
                hdr = std::borrow::Cow::Owned(h);
            }
            if let Some(id) = headers::get(&hdr, "Nats-Msg-Id").filter(|s| !s.is_empty()) {
                self.prune_dedup(now);
                if let Some(&seq) = self.dedup.get(&DedupKey::of(id)) {
                    return Ok(Stored::Duplicate(seq));
                }
                msg_id = Some(id.to_owned());
            }
            if let Some(v) = headers::get(&hdr, "Nats-Expected-Last-Msg-Id")
                && !v.is_empty()
            {
                let last_id = self.last_msg_id.as_deref().unwrap_or("");
                if v != last_id {
                    return Err(ApiError::wrong_last_msg_id(last_id));
                }
            }
            if let Some(v) = headers::get(&hdr, "Nats-Rollup").filter(|v| !v.is_empty()) {
                if !cfg.allow_rollup_hdrs || cfg.deny_purge {
                    return Err(ApiError::rollup_failed("rollup not permitted"));
                }
                match v.to_ascii_lowercase().as_str() {
                    "sub" => rollup = Some(false),
                    "all" => rollup = Some(true),
                    other => {
                        return Err(ApiError::rollup_failed(format!(
                            "rollup value invalid: {other:?}"
                        )));
                    }
                }
            }
        }
        if cfg.allow_msg_counter && incr.is_none() {
            return Err(ApiError::msg_incr_missing());
        }
        let mut counter_val = None;
        let mut counted_data = None;
        if let Some(incr) = &incr {
            let last = self
                .store
                .last_seq_of_subject(subject)
                .and_then(|seq| self.store.get(seq).ok().flatten());
            let applied =
                counter::apply(last.as_ref().map(|m| (&m.hdr[..], &m.data[..])), incr, &hdr)?;
            if let Some(h) = applied.hdr {
                hdr = std::borrow::Cow::Owned(h);
            }
            counted_data = Some(applied.body);
            counter_val = Some(applied.val);
        }
        let data: &[u8] = counted_data.as_deref().unwrap_or(data);
        if cfg.max_msg_size >= 0 && (hdr.len() + data.len()) as i64 > cfg.max_msg_size {
            return Err(ApiError::message_too_large());
        }
        if hdr.len() > 64 * 1024 {
            return Err(ApiError::header_too_large());
        }
        let size = match cfg.storage {
            StorageType::File => super::store::file_msg_size(subject.len(), hdr.len(), data.len()),
            StorageType::Memory => super::store::msg_size(subject.len(), hdr.len(), data.len()),
        };
        self.resources.check_publish(cfg.storage, size)?;
        // Discard new: refuse rather than evict.
        if cfg.discard == DiscardPolicy::New {
            let st = self.store.state();
            if cfg.max_msgs > 0 && st.msgs >= cfg.max_msgs as u64 {
                return Err(ApiError::store_failed("maximum messages exceeded"));
            }
            if cfg.max_bytes > 0 && st.bytes + size > cfg.max_bytes as u64 {
                return Err(ApiError::store_failed("maximum bytes exceeded"));
            }
            if cfg.discard_new_per_subject
                && cfg.max_msgs_per_subject > 0
                && self.store.subject_count(subject) >= cfg.max_msgs_per_subject as u64
            {
                return Err(ApiError::store_failed(
                    "maximum messages per subject exceeded",
                ));
            }
        }
        let (ttl, raised) = if !present.ttl {
            (None, None)
        } else {
            ttl::check_header(cfg, &hdr)?
        };
        if let Some(raised) = raised {
            hdr = std::borrow::Cow::Owned(raised);
        }
        let retention = cfg.retention;
        // Republish: where to, and the subject's last sequence before this.
        let republish_to = match &self.transforms {
            None => None,
            Some(t) => t.republish_to(subject).map(|to| {
                let last = self.store.last_seq_of_subject(subject).unwrap_or(0);
                (to, last)
            }),
        };
        if dry_run {
            return Ok(Stored::Checked);
        }
        let seq = self
            .store
            .append(subject, &hdr, data, now)
            .map_err(|e| ApiError::store_failed(e.to_string()))?;
        if let Some(id) = &msg_id {
            let key = DedupKey::of(id);
            self.dedup.insert(key.clone(), seq);
            self.dedup_order.push_back((now, key));
        }
        self.last_msg_id = msg_id;
        if let Some(secs) = ttl {
            self.ttls.insert(
                (now.saturating_add(secs.saturating_mul(1_000_000_000)), seq),
                (),
            );
        }
        match rollup {
            Some(false) => {
                let _ = self.store.purge(&Purge {
                    filter: Some(subject.to_owned()),
                    seq: Some(seq),
                    keep: None,
                });
            }
            Some(true) => {
                let _ = self.store.purge(&Purge {
                    filter: None,
                    seq: Some(seq),
                    keep: None,
                });
            }
            None => {}
        }
        let mut republish_to = republish_to;
        if cfg.allow_msg_schedules {
            self.on_stored(seq, subject, &hdr, now);
        }
        if retention == Retention::Interest && !interest.iter().any(|f| f.matches(subject)) {
            // Nobody to deliver to: nothing is kept (nats-server's behaviour;
            // a work queue keeps it for a consumer yet to come), nor
            // republished.
            let _ = self.store.remove(seq, false);
            republish_to = None;
        }
        if let (Some((to, last)), Some(t)) = (republish_to, &self.transforms) {
            let copy = t.republished(to, stream, subject, seq, now, last, &hdr, data);
            self.republished.push(copy);
        }
        self.enforce_limits(Some(subject))
            .map_err(|e| ApiError::store_failed(e.to_string()))?;
        Ok(match counter_val {
            Some(val) => Stored::Counter(seq, val),
            None => Stored::New(seq),
        })
    }

    /// Stores one message of a mirror's origin under its origin sequence
    /// and time. Sequences between the last stored and it are skipped: a
    /// floor when nothing is stored, else the store's skip (they read as
    /// deleted, as on nats-server); either is one record, so a crash never
    /// leaves a placeholder behind as a message.
    fn store_mirrored(
        &mut self,
        m: &StoredMsg,
        interest: &[SubjectFilter],
    ) -> Result<(), ApiError> {
        if let Some(reason) = self.store.poisoned() {
            return Err(ApiError::store_failed(reason));
        }
        let st = self.store.state();
        if m.seq <= st.last_seq {
            return Ok(());
        }
        let failed = |e: super::store::StoreError| ApiError::store_failed(e.to_string());
        if m.seq > st.last_seq + 1 {
            if st.msgs == 0 {
                self.store
                    .purge(&Purge {
                        filter: None,
                        seq: Some(m.seq),
                        keep: None,
                    })
                    .map_err(failed)?;
            } else {
                self.store.skip_to(m.seq, m.ts).map_err(failed)?;
            }
        }
        let cfg = Arc::clone(&self.config);
        let size = match cfg.storage {
            StorageType::File => {
                super::store::file_msg_size(m.subject.len(), m.hdr.len(), m.data.len())
            }
            StorageType::Memory => {
                super::store::msg_size(m.subject.len(), m.hdr.len(), m.data.len())
            }
        };
        self.resources.check_publish(cfg.storage, size)?;
        let seq = self
            .store
            .append(&m.subject, &m.hdr, &m.data, m.ts)
            .map_err(failed)?;
        if seq != m.seq {
            return Err(ApiError::store_failed(format!(
                "mirror stored origin sequence {} as {seq}",
                m.seq
            )));
        }
        if cfg.retention == Retention::Interest && !interest.iter().any(|f| f.matches(&m.subject)) {
            let _ = self.store.remove(seq, false);
        }
        self.enforce_limits(Some(&m.subject)).map_err(failed)
    }

    /// `Nats-Expected-Last-Subject-Sequence`: the newest sequence on the
    /// message's subject, or on the subjects matching
    /// `Nats-Expected-Last-Subject-Sequence-Subject` (wildcards allowed,
    /// nats-server 2.11), must be the one given (0: none).
    fn check_last_on_subject(&self, hdr: &[u8], subject: &str) -> Result<(), ApiError> {
        let Some(v) = headers::get(hdr, "Nats-Expected-Last-Subject-Sequence") else {
            return Ok(());
        };
        let on = headers::get(hdr, "Nats-Expected-Last-Subject-Sequence-Subject")
            .filter(|s| !s.is_empty())
            .unwrap_or(subject);
        let last = if crate::subject::has_wildcards(on) {
            self.store.subject_index().last_matching(on)
        } else {
            self.store.last_seq_of_subject(on)
        }
        .unwrap_or(0);
        let expected: u64 = v
            .trim()
            .parse()
            .map_err(|_| ApiError::wrong_last_sequence(last))?;
        if expected != last {
            return Err(ApiError::wrong_last_sequence(last));
        }
        Ok(())
    }

    /// A counter subject's stored total (zero when it has no message).
    fn counter_total(&mut self, subject: &str) -> Result<num_bigint::BigInt, ApiError> {
        let last = self
            .store
            .last_seq_of_subject(subject)
            .and_then(|seq| self.store.get(seq).ok().flatten());
        match last {
            Some(m) => counter::total_of(&m.data),
            None => Ok(num_bigint::BigInt::default()),
        }
    }

    /// Checks and stores an atomic batch as one unit: each message is
    /// checked as if those before it were stored (expected sequences,
    /// limits), then all are appended together, or nothing is. Returns the
    /// last message's sequence.
    fn store_batch(
        &mut self,
        stream: &str,
        msgs: &[StagedMsg],
        interest: &[SubjectFilter],
    ) -> Result<u64, ApiError> {
        let cfg = Arc::clone(&self.config);
        let cfg = &*cfg;
        if cfg.sealed {
            return Err(ApiError::stream_sealed());
        }
        if let Some(reason) = self.store.poisoned() {
            return Err(ApiError::store_failed(reason));
        }
        let now = now_nanos();
        self.prune_dedup(now);
        let st = self.store.state();
        let (mut count, mut bytes) = (st.msgs, st.bytes);
        let mut per_subject: HashMap<&str, u64> = HashMap::new();
        let mut ids: std::collections::HashSet<&str> = std::collections::HashSet::new();
        let mut ttls = Vec::with_capacity(msgs.len());
        // Header blocks rewritten because their TTL was raised, by index.
        let mut raised_hdrs: Vec<(usize, Vec<u8>)> = Vec::new();
        // Counter streams: the stored bodies (new totals) by index, and
        // each subject's running total within the batch.
        let mut counted: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut totals: HashMap<&str, num_bigint::BigInt> = HashMap::new();
        for (i, m) in msgs.iter().enumerate() {
            let staged_last = st.last_seq + i as u64;
            let (subject, hdr) = (m.subject.as_str(), m.hdr.as_slice());
            if hdr.len() > 64 * 1024 {
                return Err(ApiError::header_too_large());
            }
            if cfg.max_msg_size >= 0 && (hdr.len() + m.data.len()) as i64 > cfg.max_msg_size {
                return Err(ApiError::message_too_large());
            }
            let mut ttl = None;
            let incr = if hdr.is_empty() {
                None
            } else {
                counter::parse_incr(hdr)?
            };
            if let Some(incr) = &incr {
                if !cfg.allow_msg_counter {
                    return Err(ApiError::msg_incr_disabled());
                }
                if !m.data.is_empty() {
                    return Err(ApiError::msg_incr_payload());
                }
                if counter::incompatible(hdr) {
                    return Err(ApiError::msg_incr_invalid());
                }
                // The running total: this batch's own increments first.
                let base = match totals.remove(subject) {
                    Some(total) => total,
                    None => self.counter_total(subject)?,
                };
                let total = base + incr;
                counted.push((i, counter::body(&total)));
                totals.insert(subject, total);
            } else if cfg.allow_msg_counter {
                return Err(ApiError::msg_incr_missing());
            }
            if !hdr.is_empty() {
                if let Some(expected) = headers::get(hdr, "Nats-Expected-Stream")
                    && expected != stream
                {
                    return Err(ApiError::expected_stream_mismatch());
                }
                if headers::get(hdr, "Nats-Expected-Last-Msg-Id").is_some() {
                    return Err(ApiError::batch_unsupported_header(
                        "Nats-Expected-Last-Msg-Id",
                    ));
                }
                if let Some(id) = headers::get(hdr, "Nats-Msg-Id").filter(|s| !s.is_empty())
                    && (!ids.insert(id) || self.dedup.contains_key(&DedupKey::of(id)))
                {
                    return Err(ApiError::batch_duplicate_msg_id());
                }
                if let Some(v) = headers::get(hdr, "Nats-Expected-Last-Sequence") {
                    let expected: u64 = v
                        .trim()
                        .parse()
                        .map_err(|_| ApiError::wrong_last_sequence(staged_last))?;
                    if expected != staged_last {
                        return Err(ApiError::wrong_last_sequence(staged_last));
                    }
                    // Right, but only the first message may say it
                    // (nats-server 2.15.1).
                    if i > 0 {
                        return Err(ApiError::wrong_last_sequence_in_batch());
                    }
                }
                if headers::get(hdr, "Nats-Expected-Last-Subject-Sequence").is_some() {
                    // A subject this batch already wrote to: nats-server
                    // refuses the expectation rather than judge it.
                    if per_subject.contains_key(subject) {
                        return Err(ApiError::wrong_last_sequence_in_batch());
                    }
                    self.check_last_on_subject(hdr, subject)?;
                }
                if features::scan(hdr).schedule {
                    schedule::check_in_batch(cfg, subject, hdr, &mut *self.store)?;
                }
                if let Some(v) = headers::get(hdr, "Nats-Rollup") {
                    return Err(ApiError::rollup_failed(format!("batch rollup {v} invalid")));
                }
                if !cfg.allow_msg_ttl && ttl::wants_ttl(hdr) {
                    return Err(ApiError::msg_ttl_disabled());
                }
                let (secs, raised) = ttl::check_header(cfg, hdr)?;
                ttl = secs.map(|s| s.saturating_mul(1_000_000_000));
                if let Some(raised) = raised {
                    raised_hdrs.push((i, raised));
                }
            }
            ttls.push(ttl);
            let data_len = counted
                .last()
                .filter(|(at, _)| *at == i)
                .map_or(m.data.len(), |(_, d)| d.len());
            let size = match cfg.storage {
                StorageType::File => {
                    super::store::file_msg_size(subject.len(), hdr.len(), data_len)
                }
                StorageType::Memory => super::store::msg_size(subject.len(), hdr.len(), data_len),
            };
            let on_subject = per_subject.entry(subject).or_insert(0);
            // The account's limits, with the batch's earlier messages.
            self.resources
                .check_publish(cfg.storage, bytes.saturating_sub(st.bytes) + size)?;
            if cfg.discard == DiscardPolicy::New {
                if cfg.max_msgs > 0 && count >= cfg.max_msgs as u64 {
                    return Err(ApiError::store_failed("maximum messages exceeded"));
                }
                if cfg.max_bytes > 0 && bytes + size > cfg.max_bytes as u64 {
                    return Err(ApiError::store_failed("maximum bytes exceeded"));
                }
                if cfg.discard_new_per_subject
                    && cfg.max_msgs_per_subject > 0
                    && self.store.subject_count(subject) + *on_subject
                        >= cfg.max_msgs_per_subject as u64
                {
                    return Err(ApiError::store_failed(
                        "maximum messages per subject exceeded",
                    ));
                }
            }
            *on_subject += 1;
            count += 1;
            bytes += size;
        }
        let refs: Vec<BatchMsg<'_>> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| BatchMsg {
                subject: &m.subject,
                hdr: raised_hdrs
                    .iter()
                    .find(|(at, _)| *at == i)
                    .map_or(&m.hdr[..], |(_, h)| &h[..]),
                data: counted
                    .iter()
                    .find(|(at, _)| *at == i)
                    .map_or(&m.data[..], |(_, d)| &d[..]),
            })
            .collect();
        // Republish: each message's destination and its subject's last
        // sequence before it (an earlier message of the batch counts).
        let mut republish_to: Vec<Option<(String, u64)>> = Vec::new();
        if let Some(t) = &self.transforms {
            let mut last_in_batch: HashMap<&str, u64> = HashMap::new();
            for (i, m) in msgs.iter().enumerate() {
                let to = t.republish_to(&m.subject).map(|to| {
                    let last = match last_in_batch.get(m.subject.as_str()) {
                        Some(seq) => *seq,
                        None => self.store.last_seq_of_subject(&m.subject).unwrap_or(0),
                    };
                    (to, last)
                });
                last_in_batch.insert(&m.subject, st.last_seq + 1 + i as u64);
                republish_to.push(to);
            }
        }
        let first = self
            .store
            .append_batch(&refs, now)
            .map_err(|e| ApiError::store_failed(e.to_string()))?;
        let retention = cfg.retention;
        let mut last_id = None;
        for (i, (m, ttl)) in msgs.iter().zip(ttls).enumerate() {
            let seq = first + i as u64;
            last_id = headers::get(&m.hdr, "Nats-Msg-Id").filter(|s| !s.is_empty());
            if let Some(id) = last_id {
                let key = DedupKey::of(id);
                self.dedup.insert(key.clone(), seq);
                self.dedup_order.push_back((now, key));
            }
            if let Some(ttl) = ttl {
                self.ttls.insert((now.saturating_add(ttl), seq), ());
            }
            if cfg.allow_msg_schedules {
                self.on_stored(seq, &m.subject, &m.hdr, now);
            }
            if retention == Retention::Interest && !interest.iter().any(|f| f.matches(&m.subject)) {
                let _ = self.store.remove(seq, false);
            } else if let (Some(Some((to, last))), Some(t)) =
                (republish_to.get_mut(i).map(Option::take), &self.transforms)
            {
                let r = &refs[i];
                let copy = t.republished(to, stream, &m.subject, seq, now, last, r.hdr, r.data);
                self.republished.push(copy);
            }
        }
        self.last_msg_id = last_id.map(str::to_owned);
        for subject in per_subject.keys() {
            self.enforce_limits(Some(subject))
                .map_err(|e| ApiError::store_failed(e.to_string()))?;
        }
        Ok(first + msgs.len() as u64 - 1)
    }

    fn prune_dedup(&mut self, now: i64) {
        let cutoff = now - self.config.duplicate_window;
        while let Some((ts, _)) = self.dedup_order.front() {
            if *ts > cutoff {
                break;
            }
            if let Some((_, id)) = self.dedup_order.pop_front() {
                self.dedup.remove(&id);
            }
        }
    }

    /// Discard-old limits after an append (or a config update).
    fn enforce_limits(&mut self, subject: Option<&str>) -> Result<(), super::store::StoreError> {
        let cfg = Arc::clone(&self.config);
        if cfg.max_msgs_per_subject > 0
            && let Some(subject) = subject
        {
            // The oldest go, one by one: the store knows each subject's
            // first sequence and count without listing its sequences.
            let limit = cfg.max_msgs_per_subject as u64;
            while self.store.subject_count(subject) > limit {
                let Some(seq) = self.store.first_seq_of_subject(subject) else {
                    break;
                };
                if !self.store.remove(seq, false)? {
                    break;
                }
            }
        }
        if cfg.discard == DiscardPolicy::Old {
            loop {
                let st = self.store.state();
                let over_msgs = cfg.max_msgs > 0 && st.msgs > cfg.max_msgs as u64;
                let over_bytes = cfg.max_bytes > 0 && st.bytes > cfg.max_bytes as u64;
                if !(over_msgs || over_bytes) || st.msgs == 0 {
                    break;
                }
                if !self.store.remove(st.first_seq, false)? {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// A JSON string literal.
/// Routes republished copies, in their order.
fn send_republished(js: &JetStream, msgs: &[transform::Republished]) {
    for m in msgs {
        js.send(&m.subject, None, &m.hdr, &m.data);
    }
}

pub(crate) fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// Group commit: runs sync jobs one at a time, then acknowledges what
/// became durable and wakes consumers; also expires old messages.
async fn flusher(stream: Weak<Stream>, wake: Arc<Notify>) {
    loop {
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        let Some(s) = stream.upgrade() else {
            return;
        };
        let Some(js) = s.js.upgrade() else {
            return;
        };
        if s.is_closed() {
            s.release_acks(&js);
            return;
        }
        let (expire, fire) = s.timers_due();
        if expire || fire {
            let run = move |s: &Stream| {
                if expire {
                    s.expire();
                }
                if fire {
                    s.fire_schedules();
                }
            };
            if s.storage == StorageType::File {
                // Expiring and firing schedules read messages from the
                // segment files: never on the async workers (issue #12
                // item 9).
                let timed = Arc::clone(&s);
                if tokio::task::spawn_blocking(move || run(&timed))
                    .await
                    .is_err()
                {
                    return;
                }
            } else {
                run(&s);
            }
        }
        let start = Stream::start_syncs(&mut lock(&s.inner));
        if let SyncStart::Handed(driver) = &start {
            driver.unpark();
        }
        if let SyncStart::Spawn(job) = start {
            // Run as `sync_soon` runs it. Not awaited: under steady load
            // that thread never runs out of jobs, and this task must still
            // expire messages and fire schedules.
            let driven = Arc::clone(&s);
            tokio::task::spawn_blocking(move || driven.drive_syncs(job));
        }
        s.release_acks(&js);
        s.signal_consumers();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use super::*;

    #[test]
    fn long_msg_ids_are_kept_as_small_digests_that_still_tell_ids_apart() {
        let long = "y".repeat(60_000);
        let key = DedupKey::of(&long);
        assert!(
            matches!(key, DedupKey::Digest(_)),
            "kept whole: {} bytes",
            long.len()
        );
        assert_eq!(key, DedupKey::of(&long));
        assert_ne!(key, DedupKey::of(&format!("{long}z")));
        assert_eq!(DedupKey::of("m-1"), DedupKey::Short("m-1".into()));
    }
    use crate::jetstream::store::{CorruptRecord, Purge, StoreError, SyncJob};
    use crate::jetstream::types::PersistMode;
    use crate::jetstream::{JetStreamConfig, Router};

    /// A memory store whose sync jobs run `sync` (one job out at a time, as
    /// the file store's): by default they fail like a disk that returns
    /// EIO.
    struct ScriptedDisk {
        inner: MemStore,
        durable: u64,
        poisoned: Option<String>,
        job_out: bool,
        sync: Arc<dyn Fn() -> std::io::Result<()> + Send + Sync>,
    }

    impl ScriptedDisk {
        fn eio() -> ScriptedDisk {
            ScriptedDisk::syncing(Arc::new(|| {
                Err(std::io::Error::other("fsync: input/output error"))
            }))
        }

        fn syncing(sync: Arc<dyn Fn() -> std::io::Result<()> + Send + Sync>) -> ScriptedDisk {
            ScriptedDisk {
                inner: MemStore::new(),
                durable: 0,
                poisoned: None,
                job_out: false,
                sync,
            }
        }
    }

    impl Store for ScriptedDisk {
        fn append(&mut self, s: &str, h: &[u8], d: &[u8], ts: i64) -> Result<u64, StoreError> {
            if let Some(p) = &self.poisoned {
                return Err(StoreError::Poisoned(p.clone()));
            }
            self.inner.append(s, h, d, ts)
        }
        fn take_sync(&mut self) -> Option<SyncJob> {
            let upto = self.inner.state().last_seq;
            if self.job_out || upto <= self.durable || self.poisoned.is_some() {
                return None;
            }
            self.job_out = true;
            let sync = Arc::clone(&self.sync);
            Some(SyncJob {
                upto,
                run: Box::new(move || sync()),
            })
        }
        fn synced(&mut self, upto: u64, result: std::io::Result<()>) {
            self.job_out = false;
            match result {
                Ok(()) => self.durable = upto,
                Err(e) => self.poisoned = Some(e.to_string()),
            }
        }
        fn durable_seq(&self) -> u64 {
            self.durable
        }
        fn write_mark(&self) -> u64 {
            self.inner.state().last_seq
        }
        fn durable_mark(&self) -> u64 {
            self.durable
        }
        fn poisoned(&self) -> Option<String> {
            self.poisoned.clone()
        }
        fn get(&mut self, seq: u64) -> Result<Option<StoredMsg>, StoreError> {
            self.inner.get(seq)
        }
        fn next_from(
            &mut self,
            s: u64,
            f: &SubjectFilter,
        ) -> Result<Option<StoredMsg>, StoreError> {
            self.inner.next_from(s, f)
        }
        fn last_by_subject(&mut self, f: &str) -> Result<Option<StoredMsg>, StoreError> {
            self.inner.last_by_subject(f)
        }
        fn subject_index(&self) -> &dyn crate::jetstream::store::subjects::SubjectQueries {
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

    #[derive(Default)]
    struct Captured(StdMutex<Vec<(String, String)>>);

    impl Router for Captured {
        fn route(&self, subject: &str, reply: Option<&str>, hdr: &[u8], data: &[u8]) -> usize {
            self.route_as(subject, subject, reply, hdr, data)
        }
        fn route_as(&self, to: &str, _: &str, _: Option<&str>, _: &[u8], data: &[u8]) -> usize {
            if let Ok(mut v) = self.0.lock() {
                v.push((to.to_owned(), String::from_utf8_lossy(data).into_owned()));
            }
            1
        }
        fn has_interest(&self, _: &str) -> bool {
            true
        }
    }

    /// A JetStream on a fresh directory delivering to `router`, and on it
    /// stream `S` (subjects `s.>`, republished to `r.>` when `republish`)
    /// over `store`. The directory lives as long as the returned guard.
    fn scripted_stream(
        router: &Arc<dyn Router>,
        republish: bool,
        store: ScriptedDisk,
    ) -> (tempfile::TempDir, Arc<JetStream>, Arc<Stream>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let js = JetStream::open(JetStreamConfig {
            store_dir: dir.path().to_owned(),
            ..JetStreamConfig::default()
        })
        .expect("open");
        js.set_router(Arc::downgrade(router));
        let mut config = StreamConfig {
            name: "S".into(),
            subjects: vec!["s.>".into()],
            republish: republish.then(|| crate::jetstream::types::RePublish {
                src: "s.>".into(),
                dest: "r.>".into(),
                headers_only: false,
            }),
            ..StreamConfig::default()
        };
        config.normalize();
        let stream = Stream::assemble(&js, config, now_nanos(), Box::new(store), None);
        write(&js.streams).insert("S".into(), Arc::clone(&stream));
        (dir, js, stream)
    }

    #[tokio::test]
    async fn a_failed_fsync_poisons_the_stream_instead_of_acknowledging() {
        let captured = Arc::new(Captured::default());
        let router: Arc<dyn Router> = Arc::clone(&captured) as _;
        let store = ScriptedDisk::eio();
        let (_dir, js, stream) = scripted_stream(&router, false, store);

        stream.publish(&js, "s.a", Some("reply.1"), b"", b"one");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let first = loop {
            let got = router_msgs(&captured);
            if let Some((_, body)) = got.iter().find(|(to, _)| to == "reply.1") {
                break body.clone();
            }
            assert!(tokio::time::Instant::now() < deadline, "no reply: {got:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let v: serde_json::Value = serde_json::from_str(&first).expect("json");
        assert_eq!(v["error"]["err_code"], 10077, "{first}");
        assert!(first.contains("input/output error"), "{first}");
        assert!(
            v.get("seq").is_some_and(|s| s == 0),
            "not acknowledged: {first}"
        );

        stream.publish(&js, "s.a", Some("reply.2"), b"", b"two");
        let second = router_msgs(&captured)
            .into_iter()
            .find(|(to, _)| to == "reply.2")
            .map(|(_, b)| b)
            .expect("refused at once");
        assert!(second.contains("10077"), "{second}");
        assert_eq!(stream.visible_seq(), 0, "consumers see nothing undurable");
        assert_eq!(js.health_problems().len(), 1);
    }

    #[tokio::test]
    async fn a_message_that_never_became_durable_is_not_republished() {
        let captured = Arc::new(Captured::default());
        let router: Arc<dyn Router> = Arc::clone(&captured) as _;
        let store = ScriptedDisk::eio();
        let (_dir, js, stream) = scripted_stream(&router, true, store);

        // One without a reply (its copy waits for durability alone), then
        // one with a reply, whose failure ends the wait.
        stream.publish(&js, "s.a", None, b"", b"no reply");
        stream.publish(&js, "s.b", Some("reply.1"), b"", b"one");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let got = router_msgs(&captured);
            if got.iter().any(|(to, _)| to == "reply.1") {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "no reply: {got:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let got = router_msgs(&captured);
        assert!(
            got.iter().all(|(to, _)| !to.starts_with("r.")),
            "nothing undurable is republished: {got:?}"
        );
    }

    /// Sync jobs that wait for a permit each; counts the jobs that ran.
    #[derive(Default)]
    struct Gate {
        state: StdMutex<(u32, u32)>,
        changed: std::sync::Condvar,
    }

    impl Gate {
        fn permit(&self) {
            if let Ok(mut s) = self.state.lock() {
                s.0 += 1;
            }
            self.changed.notify_all();
        }

        fn pass(&self) -> std::io::Result<()> {
            let mut s = self
                .state
                .lock()
                .map_err(|_| std::io::Error::other("gate"))?;
            while s.0 == 0 {
                s = self
                    .changed
                    .wait(s)
                    .map_err(|_| std::io::Error::other("gate"))?;
            }
            s.0 -= 1;
            s.1 += 1;
            Ok(())
        }

        fn jobs(&self) -> u32 {
            self.state.lock().map(|s| s.1).unwrap_or_default()
        }
    }

    /// The publish path hands its write to a blocking thread that syncs
    /// and acknowledges: no ack goes out before its job has run, and
    /// publishes arriving while a job is out are made durable together by
    /// the next one (group commit), which that thread takes itself.
    #[tokio::test]
    async fn publishes_during_a_sync_job_are_acknowledged_by_the_next_job_never_before() {
        let captured = Arc::new(Captured::default());
        let router: Arc<dyn Router> = Arc::clone(&captured) as _;
        let gate = Arc::new(Gate::default());
        let passing = Arc::clone(&gate);
        let store = ScriptedDisk::syncing(Arc::new(move || passing.pass()));
        let (_dir, js, stream) = scripted_stream(&router, false, store);

        stream.publish(&js, "s.a", Some("reply.1"), b"", b"one");
        stream.publish(&js, "s.a", Some("reply.2"), b"", b"two");
        stream.publish(&js, "s.a", Some("reply.3"), b"", b"three");
        assert!(
            router_msgs(&captured).is_empty(),
            "nothing is acknowledged before its job ran"
        );

        gate.permit();
        let first = wait_reply(&captured, "reply.1").await;
        assert!(first.contains("\"seq\":1"), "{first}");
        let got = router_msgs(&captured);
        assert!(
            got.iter().all(|(to, _)| to == "reply.1"),
            "2 and 3 wait for the next job: {got:?}"
        );

        gate.permit();
        let second = wait_reply(&captured, "reply.2").await;
        let third = wait_reply(&captured, "reply.3").await;
        assert!(second.contains("\"seq\":2"), "{second}");
        assert!(third.contains("\"seq\":3"), "{third}");
        assert_eq!(gate.jobs(), 2, "2 and 3 shared one job");
        assert_eq!(stream.visible_seq(), 3);
    }

    /// The thread that ran a sync job waits for the next one: a publish
    /// arriving then is handed to it (the same thread runs its job, no new
    /// loop through the blocking pool), is still acknowledged only after
    /// that job ran, and a close sends the waiting thread away.
    #[tokio::test]
    async fn a_publish_while_the_sync_thread_waits_is_handed_to_it_and_acknowledged_after_its_job()
    {
        let captured = Arc::new(Captured::default());
        let router: Arc<dyn Router> = Arc::clone(&captured) as _;
        let gate = Arc::new(Gate::default());
        let passing = Arc::clone(&gate);
        let threads = Arc::new(StdMutex::new(Vec::new()));
        let seen = Arc::clone(&threads);
        let store = ScriptedDisk::syncing(Arc::new(move || {
            if let Ok(mut t) = seen.lock() {
                t.push(std::thread::current().id());
            }
            passing.pass()
        }));
        let (_dir, js, stream) = scripted_stream(&router, false, store);
        // Long enough that the hand-off below cannot miss it.
        stream.sync_linger.store(600_000_000_000, Ordering::Relaxed);
        let idle = |s: &Stream| lock(&s.inner).idle_driver.is_some();

        stream.publish(&js, "s.a", Some("reply.1"), b"", b"one");
        gate.permit();
        wait_reply(&captured, "reply.1").await;
        wait_until("the sync thread waits for the next job", || idle(&stream)).await;

        stream.publish(&js, "s.a", Some("reply.2"), b"", b"two");
        assert!(!idle(&stream), "the publish took the waiting thread");
        assert!(
            reply_to(&captured, "reply.2").is_none(),
            "nothing is acknowledged before its job ran"
        );
        gate.permit();
        let second = wait_reply(&captured, "reply.2").await;
        assert!(second.contains("\"seq\":2"), "{second}");
        let ran_on = threads.lock().map(|t| t.clone()).unwrap_or_default();
        assert_eq!(ran_on.len(), 2);
        assert_eq!(
            ran_on[0], ran_on[1],
            "the second job ran on the waiting thread"
        );

        // It waits again; a close sends it away (it holds the stream).
        wait_until("the sync thread waits again", || idle(&stream)).await;
        let held = Arc::strong_count(&stream);
        stream.shutdown();
        assert!(!idle(&stream));
        wait_until("the dismissed thread let go of the stream", || {
            Arc::strong_count(&stream) == held - 1
        })
        .await;
    }

    fn router_msgs(router: &Captured) -> Vec<(String, String)> {
        router.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// A router that records, per delivery run, the targets delivered to
    /// (in order); deliveries outside a run are recorded as runs of one.
    #[derive(Default)]
    struct Runs(Arc<StdMutex<Vec<Vec<String>>>>);

    struct RunRecorder {
        runs: Arc<StdMutex<Vec<Vec<String>>>>,
        run: Vec<String>,
    }

    impl crate::jetstream::Deliveries for RunRecorder {
        fn route_as(&mut self, to: &str, _: &str, _: Option<&str>, _: &[u8], _: &[u8]) -> usize {
            self.run.push(to.to_owned());
            1
        }
    }

    impl Drop for RunRecorder {
        fn drop(&mut self) {
            if let Ok(mut v) = self.runs.lock() {
                v.push(std::mem::take(&mut self.run));
            }
        }
    }

    impl Router for Runs {
        fn route(&self, subject: &str, reply: Option<&str>, hdr: &[u8], data: &[u8]) -> usize {
            self.route_as(subject, subject, reply, hdr, data)
        }
        fn route_as(&self, to: &str, _: &str, _: Option<&str>, _: &[u8], _: &[u8]) -> usize {
            if let Ok(mut v) = self.0.lock() {
                v.push(vec![to.to_owned()]);
            }
            1
        }
        fn has_interest(&self, _: &str) -> bool {
            true
        }
        fn deliveries(&self) -> Box<dyn crate::jetstream::Deliveries + '_> {
            Box::new(RunRecorder {
                runs: Arc::clone(&self.0),
                run: Vec::new(),
            })
        }
    }

    /// The confirmations one sync job made due leave in one delivery run
    /// (each connection's writer is woken once for all of them, not once
    /// per confirmation), in publish order, each after its republished
    /// copy.
    #[tokio::test]
    async fn confirmations_made_due_by_one_sync_job_leave_in_one_delivery_run_in_order() {
        let runs = Arc::new(Runs::default());
        let router: Arc<dyn Router> = Arc::clone(&runs) as _;
        let gate = Arc::new(Gate::default());
        let passing = Arc::clone(&gate);
        let store = ScriptedDisk::syncing(Arc::new(move || passing.pass()));
        let (_dir, js, stream) = scripted_stream(&router, true, store);

        stream.publish(&js, "s.a", Some("reply.1"), b"", b"one");
        stream.publish(&js, "s.b", Some("reply.2"), b"", b"two");
        stream.publish(&js, "s.c", Some("reply.3"), b"", b"three");
        stream.publish(&js, "s.d", Some("reply.4"), b"", b"four");
        gate.permit();
        gate.permit();
        let seen = |runs: &Runs| {
            runs.0
                .lock()
                .map(|v| v.clone())
                .unwrap_or_default()
                .into_iter()
                .filter(|r| !r.is_empty())
                .collect::<Vec<_>>()
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !seen(&runs).iter().flatten().any(|to| to == "reply.4") {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no reply: {:?}",
                seen(&runs)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            seen(&runs),
            vec![
                vec!["r.a".to_owned(), "reply.1".to_owned()],
                vec![
                    "r.b".to_owned(),
                    "reply.2".to_owned(),
                    "r.c".to_owned(),
                    "reply.3".to_owned(),
                    "r.d".to_owned(),
                    "reply.4".to_owned(),
                ],
            ],
            "one run per sync job, copies before their confirmation"
        );
        assert_eq!(gate.jobs(), 2);
    }

    mod dirs {
        //! Stream and consumer directories under crashes and power loss,
        //! on the simulated filesystem.

        use std::path::{Path, PathBuf};

        use super::super::consumer::{create_consumer_dir, remove_consumer_dir};
        use super::super::{
            StreamDir, consumer_dirs, create_stream_dir, delete_stream_dir, read_stream_dir,
        };
        use crate::jetstream::store::Store;
        use crate::jetstream::store::file::{FileStore, FileStoreConfig};
        use crate::jetstream::store::sim::{PowerLoss, SimFs};
        use crate::jetstream::store::storage::{Storage, create_dir_durable};

        const STREAMS: &str = "/js/streams";

        fn streams() -> &'static Path {
            Path::new(STREAMS)
        }

        fn open(sim: &SimFs, dir: &Path) -> FileStore<SimFs> {
            match FileStore::open_in(sim.clone(), &dir.join("msgs"), FileStoreConfig::default()) {
                Ok((s, _)) => s,
                Err(e) => panic!("open {}: {e}", dir.display()),
            }
        }

        /// Stream S with messages 1..=5 and consumer `c`, all durable.
        fn setup(seed: u64) -> (SimFs, PathBuf, FileStore<SimFs>) {
            let sim = SimFs::new(seed);
            create_dir_durable(&sim, streams()).expect("streams dir");
            let dir = create_stream_dir(&sim, streams(), "S", b"{\"S\":1}").expect("create");
            let mut store = open(&sim, &dir);
            for i in 0..5 {
                store.append("s", b"", b"x", i).expect("append");
            }
            let job = store.take_sync().expect("job");
            let upto = job.upto;
            let r = (job.run)();
            store.synced(upto, r);
            create_consumer_dir(&sim, &dir.join("obs").join("c"), b"{}", &Default::default())
                .expect("consumer");
            for d in ["/", "/js", STREAMS, "/js/streams/S", "/js/streams/S/obs"] {
                sim.sync_dir(Path::new(d)).expect("sync");
            }
            (sim, dir, store)
        }

        /// After a restart: the streams found (name, last seq, consumers).
        fn recover(sim: &SimFs) -> Vec<(String, u64, Vec<String>)> {
            let mut out = Vec::new();
            for name in sim.names(streams()) {
                let dir = streams().join(&name);
                match read_stream_dir(sim, &dir) {
                    Ok(StreamDir::Meta(_)) => {
                        let store = open(sim, &dir);
                        let consumers = consumer_dirs(sim, &dir.join("obs"))
                            .expect("consumer dirs")
                            .iter()
                            .filter(|d| sim.exists(&d.join("meta.json")))
                            .map(|d| {
                                d.file_name()
                                    .unwrap_or_default()
                                    .to_string_lossy()
                                    .into_owned()
                            })
                            .collect();
                        out.push((name, store.state().last_seq, consumers));
                    }
                    Ok(_) => {}
                    Err(e) => panic!("{name}: {e}"),
                }
            }
            out
        }

        /// Issue 12, item 4: a stream delete interrupted anywhere leaves the
        /// whole stream or none of it (never one whose last sequence went
        /// back), and a stream created again with the same name starts
        /// empty, without the old stream's consumers.
        #[test]
        fn stream_delete_is_all_or_nothing_and_a_new_stream_starts_clean() {
            let ops = {
                let (sim, dir, mut store) = setup(0);
                let before = sim.ops();
                delete_stream_dir(&sim, &mut store, &dir).expect("delete");
                sim.ops() - before
            };
            for power in [false, true] {
                for k in 0..=ops {
                    let (sim, dir, mut store) = setup(k);
                    sim.die_after(Some(k));
                    let done = delete_stream_dir(&sim, &mut store, &dir).is_ok();
                    drop(store);
                    if power {
                        sim.power_loss(PowerLoss::Strict);
                    } else {
                        sim.crash();
                    }
                    let case = format!("died after {k} of {ops} operations, power loss {power}");
                    let found = recover(&sim);
                    match found.as_slice() {
                        [] => {}
                        [(name, last, consumers)] => {
                            assert!(!done, "{case}: the stream survived its delete");
                            assert_eq!(
                                (name.as_str(), *last, consumers.clone()),
                                ("S", 5, vec!["c".to_owned()]),
                                "{case}: a half-deleted stream"
                            );
                            continue;
                        }
                        more => panic!("{case}: {more:?}"),
                    }
                    let dir = create_stream_dir(&sim, streams(), "S", b"{\"S\":2}")
                        .unwrap_or_else(|e| panic!("{case}: create again: {e}"));
                    assert_eq!(
                        recover(&sim),
                        vec![("S".to_owned(), 0, Vec::new())],
                        "{case}: the new stream is not empty"
                    );
                    assert!(
                        consumer_dirs(&sim, &dir.join("obs"))
                            .expect("consumer dirs")
                            .is_empty(),
                        "{case}"
                    );
                }
            }
        }

        /// Issue 12, item 5: a confirmed consumer create or delete survives
        /// a power loss.
        #[test]
        fn consumer_create_and_delete_are_durable_when_they_return() {
            for k in 0..40 {
                let (sim, dir, store) = setup(k);
                drop(store);
                let c = dir.join("obs").join("d");
                sim.die_after(Some(k));
                let created = create_consumer_dir(&sim, &c, b"{}", &Default::default()).is_ok();
                sim.power_loss(PowerLoss::Strict);
                let found = recover(&sim);
                let has_d = found
                    .first()
                    .is_some_and(|(_, _, cs)| cs.contains(&"d".to_owned()));
                assert!(
                    !created || has_d,
                    "died after {k}: a created consumer vanished"
                );
                if !has_d {
                    continue;
                }
                let removed = remove_consumer_dir(&sim, &c).is_ok();
                assert!(removed);
                sim.power_loss(PowerLoss::Strict);
                let found = recover(&sim);
                assert_eq!(
                    found,
                    vec![("S".to_owned(), 5, vec!["c".to_owned()])],
                    "died after {k}: a deleted consumer came back"
                );
            }
        }
    }

    /// Found by the consumer model test: a consumer delete whose rename
    /// reached the directory but whose fsync failed was refused; a second
    /// delete found the name gone and confirmed without making the rename
    /// durable, so a power loss brought the consumer back.
    #[test]
    fn a_retried_consumer_delete_makes_the_first_attempts_rename_durable() {
        use crate::jetstream::store::sim::{PowerLoss, SimFs, SimOp};
        let sim = SimFs::new(7);
        let c = Path::new("/js/streams/S/obs/c");
        consumer::create_consumer_dir(&sim, c, b"{}", &Default::default()).expect("create");
        sim.fail_next(SimOp::SyncDir);
        assert!(
            consumer::remove_consumer_dir(&sim, c).is_err(),
            "first delete"
        );
        consumer::remove_consumer_dir(&sim, c).expect("second delete");
        sim.power_loss(PowerLoss::Strict);
        assert!(!sim.exists(c), "a confirmed consumer delete came back");
    }

    fn reply_to(router: &Captured, to: &str) -> Option<String> {
        router_msgs(router)
            .into_iter()
            .find(|(t, _)| t == to)
            .map(|(_, b)| b)
    }

    async fn wait_reply(router: &Captured, to: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(b) = reply_to(router, to) {
                return b;
            }
            assert!(tokio::time::Instant::now() < deadline, "no reply on {to}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn file_js(dir: &Path) -> (Arc<JetStream>, Arc<Captured>, Arc<dyn Router>) {
        let captured = Arc::new(Captured::default());
        let router: Arc<dyn Router> = Arc::clone(&captured) as _;
        (js_routed_to(dir, &router), captured, router)
    }

    /// JetStream on `dir` delivering through `router` (the caller keeps it
    /// alive: the engine holds it weakly).
    fn js_routed_to(dir: &Path, router: &Arc<dyn Router>) -> Arc<JetStream> {
        let js = JetStream::open(JetStreamConfig {
            store_dir: dir.to_owned(),
            ..JetStreamConfig::default()
        })
        .expect("open");
        js.set_router(Arc::downgrade(router));
        js
    }

    /// The duplicate table is rebuilt at open from the messages with
    /// headers only (the file store skips runs holding none unread): ids
    /// among many messages without headers, spread over sealed segments,
    /// are still duplicates after a restart, and a message without headers
    /// is never one.
    #[tokio::test]
    async fn message_ids_among_messages_without_headers_are_still_duplicates_after_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let captured = Arc::new(Captured::default());
        let router: Arc<dyn Router> = Arc::clone(&captured) as _;
        let open = || {
            let js = JetStream::open(JetStreamConfig {
                store_dir: dir.path().to_owned(),
                segment_bytes: 2048,
                ..JetStreamConfig::default()
            })
            .expect("open");
            js.set_router(Arc::downgrade(&router));
            js
        };
        let with_id = |i: u32| format!("NATS/1.0\r\nNats-Msg-Id: id-{i}\r\n\r\n");
        // A PubAck's sequence and duplicate flag.
        let seq_dup = |ack: &str| {
            let v: serde_json::Value = serde_json::from_str(ack).unwrap_or_default();
            (
                v["seq"].as_u64().unwrap_or(0),
                v["duplicate"].as_bool().unwrap_or(false),
            )
        };
        let js = open();
        js.on_publish(
            "$JS.API.STREAM.CREATE.D",
            Some("r.create"),
            b"",
            br#"{"name":"D","subjects":["d.>"],"storage":"file"}"#,
        );
        assert!(
            wait_reply(&captured, "r.create")
                .await
                .contains("did_create")
        );
        // Ids only in a few segments: most sealed runs hold no header.
        for i in 1..=400u32 {
            let hdr = if i % 97 == 0 {
                with_id(i)
            } else {
                String::new()
            };
            js.on_publish(
                "d.x",
                Some(&format!("r.pub.{i}")),
                hdr.as_bytes(),
                b"0123456789",
            );
            let ack = wait_reply(&captured, &format!("r.pub.{i}")).await;
            assert_eq!(seq_dup(&ack), (u64::from(i), false), "{ack}");
        }
        js.shutdown();
        drop(js);
        let js = open();
        for i in [97u32, 194, 291, 388] {
            let reply = format!("r.again.{i}");
            js.on_publish("d.x", Some(&reply), with_id(i).as_bytes(), b"again");
            let ack = wait_reply(&captured, &reply).await;
            assert_eq!(seq_dup(&ack), (u64::from(i), true), "id-{i}: {ack}");
        }
        js.on_publish("d.x", Some("r.plain"), b"", b"plain");
        let ack = wait_reply(&captured, "r.plain").await;
        assert_eq!(seq_dup(&ack), (401, false), "{ack}");
        js.shutdown();
    }

    /// What a restart would find in the stream's files right now (the
    /// page cache included, as after a SIGKILL): the sequences present.
    fn on_disk(js: &JetStream, stream: &str) -> Vec<u64> {
        let msgs = js.streams_dir().join(stream).join("msgs");
        let copy = tempfile::tempdir().expect("tempdir");
        for e in std::fs::read_dir(&msgs).expect("msgs dir") {
            let p = e.expect("entry").path();
            std::fs::copy(&p, copy.path().join(p.file_name().expect("name"))).expect("copy");
        }
        let (mut store, _) = crate::jetstream::store::file::FileStore::open(
            copy.path(),
            crate::jetstream::store::file::FileStoreConfig::default(),
        )
        .expect("reopen a copy");
        let mut seqs = Vec::new();
        let mut at = 0;
        while let Ok(Some(m)) = store.next_from(at, &SubjectFilter::All) {
            seqs.push(m.seq);
            at = m.seq + 1;
        }
        seqs
    }

    /// Issue 12, item 2: a message delete or a purge is confirmed only once
    /// its tombstones are on disk. Runs on one thread, so the stream's
    /// flusher cannot run between the request and the check: a reply sent
    /// at once would be a reply for a change only in memory.
    #[tokio::test]
    async fn deletes_and_purges_are_confirmed_only_once_on_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (js, captured, _router) = file_js(dir.path());
        js.on_publish(
            "$JS.API.STREAM.CREATE.S",
            Some("r.create"),
            b"",
            br#"{"name":"S","subjects":["s.>"],"storage":"file"}"#,
        );
        assert!(
            wait_reply(&captured, "r.create")
                .await
                .contains("did_create")
        );
        for i in 1..=6 {
            let subject = if i % 2 == 0 { "s.even" } else { "s.odd" };
            js.on_publish(subject, Some(&format!("r.pub.{i}")), b"", b"x");
            wait_reply(&captured, &format!("r.pub.{i}")).await;
        }
        assert_eq!(on_disk(&js, "S"), vec![1, 2, 3, 4, 5, 6]);
        let requests: [(&str, &[u8], &[u64]); 3] = [
            (
                "$JS.API.STREAM.MSG.DELETE.S",
                br#"{"seq":3}"#,
                &[1, 2, 4, 5, 6],
            ),
            ("$JS.API.STREAM.PURGE.S", br#"{"filter":"s.even"}"#, &[1, 5]),
            ("$JS.API.STREAM.PURGE.S", br#"{"seq":5}"#, &[5]),
        ];
        for (i, (api, body, left)) in requests.into_iter().enumerate() {
            let reply = format!("r.api.{i}");
            // Straight to the API handler, on this thread (the server may
            // run it on a blocking thread, which would make the early-reply
            // check below depend on timing).
            let handled = crate::jetstream::api::handle(
                &js,
                api.trim_start_matches("$JS.API."),
                Some(&reply),
                b"",
                body,
            );
            assert!(handled);
            if let Some(early) = reply_to(&captured, &reply) {
                assert_eq!(
                    on_disk(&js, "S"),
                    left,
                    "{api} {} confirmed before it was on disk: {early}",
                    String::from_utf8_lossy(body)
                );
            }
            let answer = wait_reply(&captured, &reply).await;
            assert!(answer.contains(r#""success":true"#), "{answer}");
            assert_eq!(on_disk(&js, "S"), left, "{api}");
        }
        js.shutdown();
    }

    /// A stream `S` (subjects `s.>`) with three messages and a durable
    /// consumer `C` (explicit ack, `deliver_policy`), on disk under `dir`;
    /// returns the create's answer.
    async fn stream_with_consumer(
        js: &JetStream,
        captured: &Captured,
        deliver_policy: &str,
        before_create: impl FnOnce(),
    ) -> String {
        js.on_publish(
            "$JS.API.STREAM.CREATE.S",
            Some("r.create"),
            b"",
            br#"{"name":"S","subjects":["s.>"],"storage":"file"}"#,
        );
        assert!(
            wait_reply(captured, "r.create")
                .await
                .contains("did_create")
        );
        for i in 1..=3 {
            js.on_publish("s.x", Some(&format!("r.pub.{i}")), b"", b"m");
            wait_reply(captured, &format!("r.pub.{i}")).await;
        }
        before_create();
        let body = format!(
            r#"{{"stream_name":"S","config":{{"durable_name":"C","ack_policy":"explicit","deliver_policy":"{deliver_policy}"}}}}"#
        );
        js.on_publish(
            "$JS.API.CONSUMER.CREATE.S.C",
            Some("r.consumer"),
            b"",
            body.as_bytes(),
        );
        wait_reply(captured, "r.consumer").await
    }

    fn consumer_dir(root: &Path) -> PathBuf {
        root.join("jetstream/$G/streams/S/obs/C")
    }

    /// Found by the consumer model test: the create wrote the consumer's
    /// starting position after confirming, ignoring a failure, so a
    /// deliver-new consumer could come back after a restart delivering the
    /// stream from its first message. The position is now part of the
    /// create: when it cannot be written the create is refused.
    #[tokio::test]
    async fn a_consumer_create_whose_start_position_cannot_be_written_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (js, captured, _router) = file_js(dir.path());
        // The state file's temporary name is taken by a directory.
        let blocked = consumer_dir(dir.path()).join("state.tmp");
        let answer = stream_with_consumer(&js, &captured, "new", || {
            std::fs::create_dir_all(&blocked).expect("block");
        })
        .await;
        js.shutdown();
        drop(js);
        assert!(answer.contains(r#""error""#), "confirmed: {answer}");
        let (js, _captured, _router) = file_js(dir.path());
        let stream = js.stream("S").expect("stream S");
        if let Some(c) = stream.consumer("C") {
            assert_eq!(c.info().delivered.stream_seq, 3, "start position lost");
        }
        js.shutdown();
    }

    /// Found by the consumer model test: a state file that could not be
    /// read (an I/O error, not a missing file) restarted the consumer from
    /// the stream's first message, forgetting its confirmed acks (and the
    /// next state write overwrote them). Now the start fails clearly.
    #[tokio::test]
    async fn a_consumer_whose_state_cannot_be_read_stops_the_start_instead_of_forgetting_acks() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (js, captured, _router) = file_js(dir.path());
            let answer = stream_with_consumer(&js, &captured, "all", || {}).await;
            assert!(answer.contains(r#""name":"C""#), "{answer}");
            js.shutdown();
        }
        let state = consumer_dir(dir.path()).join("state.json");
        std::fs::remove_file(&state).expect("remove state");
        std::fs::create_dir(&state).expect("unreadable state");
        match JetStream::open(JetStreamConfig {
            store_dir: dir.path().to_owned(),
            ..JetStreamConfig::default()
        }) {
            Ok(js) => {
                js.shutdown();
                panic!("started without the consumer's state");
            }
            Err(e) => assert!(e.to_string().contains("state.json"), "{e}"),
        }
    }

    /// Found by the consumer model test: a stream's consumer directory
    /// that could not be listed was taken as "no consumers", so a start
    /// under a transient error lost every consumer to the clients. Now the
    /// start fails clearly.
    #[tokio::test]
    async fn an_unlistable_consumer_directory_stops_the_start_instead_of_dropping_consumers() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (js, captured, _router) = file_js(dir.path());
            let answer = stream_with_consumer(&js, &captured, "all", || {}).await;
            assert!(answer.contains(r#""name":"C""#), "{answer}");
            js.shutdown();
        }
        let obs = dir.path().join("jetstream/$G/streams/S/obs");
        std::fs::rename(&obs, obs.with_extension("kept")).expect("move obs");
        std::fs::write(&obs, b"not a directory").expect("obs file");
        match JetStream::open(JetStreamConfig {
            store_dir: dir.path().to_owned(),
            ..JetStreamConfig::default()
        }) {
            Ok(js) => {
                let consumers = js.stream("S").map(|s| s.consumer_count());
                js.shutdown();
                panic!("started with consumers {consumers:?}");
            }
            Err(e) => assert!(e.to_string().contains("obs"), "{e}"),
        }
    }

    /// Found by the consumer model test: a consumer delete was confirmed
    /// even when its directory could not be removed, and the consumer came
    /// back at the next start. Now the delete is refused and the consumer
    /// keeps running; once the directory can be removed, the delete holds.
    #[tokio::test]
    async fn a_consumer_delete_that_cannot_reach_the_disk_is_refused_and_the_consumer_stays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let obs = dir.path().join("jetstream/$G/streams/S/obs");
        let kept = obs.with_extension("kept");
        {
            let (js, captured, _router) = file_js(dir.path());
            let answer = stream_with_consumer(&js, &captured, "all", || {}).await;
            assert!(answer.contains(r#""name":"C""#), "{answer}");
            std::fs::rename(&obs, &kept).expect("move obs");
            std::fs::write(&obs, b"not a directory").expect("obs file");
            js.on_publish("$JS.API.CONSUMER.DELETE.S.C", Some("r.del1"), b"", b"");
            let refused = wait_reply(&captured, "r.del1").await;
            assert!(refused.contains(r#""err_code":10051"#), "{refused}");
            let stream = js.stream("S").expect("stream S");
            assert!(stream.consumer("C").is_some(), "the consumer was dropped");
            std::fs::remove_file(&obs).expect("obs file");
            std::fs::rename(&kept, &obs).expect("restore obs");
            js.on_publish("$JS.API.CONSUMER.DELETE.S.C", Some("r.del2"), b"", b"");
            let deleted = wait_reply(&captured, "r.del2").await;
            assert!(deleted.contains(r#""success":true"#), "{deleted}");
            js.shutdown();
        }
        let (js, _captured, _router) = file_js(dir.path());
        let stream = js.stream("S").expect("stream S");
        assert!(
            stream.consumer("C").is_none(),
            "a deleted consumer came back"
        );
        js.shutdown();
    }

    /// A copy of `from` at `to`: what a crash at this moment leaves (the
    /// files as written so far).
    fn copy_tree(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("read_dir") {
            let entry = entry.expect("entry");
            let target = to.join(entry.file_name());
            if entry.file_type().expect("type").is_dir() {
                copy_tree(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).expect("copy");
            }
        }
    }

    /// Found by the consumer model test: a work-queue consumer deleted
    /// while the stream's removals of the messages it acknowledged were not
    /// yet on disk took with it the only record of those acks (its state
    /// file, which recovery reapplies): a crash right after the confirmed
    /// delete brought the messages back. The delete now waits until the
    /// stream's removals are durable.
    #[tokio::test]
    async fn deleting_a_work_queue_consumer_does_not_bring_its_acknowledged_messages_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (js, captured, _router) = file_js(dir.path());
            work_queue_with_jobs(
                &js,
                &captured,
                r#"{"durable_name":"wq","ack_policy":"explicit"}"#,
                5,
            )
            .await;
            js.shutdown();
        }
        // The consumer's acks of 1..=3 are on disk; the stream's removals
        // are not.
        let state = dir.path().join("jetstream/$G/streams/W/obs/wq/state.json");
        std::fs::write(
            &state,
            br#"{"delivered_consumer_seq":3,"delivered_stream_seq":3,"ack_floor_consumer_seq":3,"ack_floor_stream_seq":3,"next_sseq":4,"pending":[],"lps":[]}"#,
        )
        .expect("write state");
        let crashed = tempfile::tempdir().expect("tempdir");
        {
            // The start reapplies the acks (in memory); the delete comes
            // before the flusher ever runs (nothing here yields), and the
            // process dies as soon as it is confirmed.
            let (js, captured, _router) = file_js(dir.path());
            crate::jetstream::api::handle(&js, "CONSUMER.DELETE.W.wq", Some("r.del"), b"", b"");
            let answer = reply_to(&captured, "r.del").expect("delete answered");
            assert!(answer.contains(r#""success":true"#), "{answer}");
            copy_tree(dir.path(), crashed.path());
            js.shutdown();
        }
        let (js, _captured, _router) = file_js(crashed.path());
        let st = js.stream("W").expect("stream W").state();
        assert_eq!(
            (st.msgs, st.first_seq),
            (2, 4),
            "acknowledged work-queue messages came back after the consumer's delete"
        );
        js.shutdown();
    }

    /// A file work-queue stream `W` (subjects `w.>`) with one durable
    /// consumer (`consumer`: its config JSON, with its `durable_name`) and
    /// `jobs` messages on `w.job`, each acknowledged.
    async fn work_queue_with_jobs(js: &JetStream, captured: &Captured, consumer: &str, jobs: u64) {
        js.on_publish(
            "$JS.API.STREAM.CREATE.W",
            Some("r.create"),
            b"",
            br#"{"name":"W","subjects":["w.>"],"storage":"file","retention":"workqueue"}"#,
        );
        assert!(
            wait_reply(captured, "r.create")
                .await
                .contains("did_create")
        );
        let name = serde_json::from_str::<serde_json::Value>(consumer).expect("consumer JSON")
            ["durable_name"]
            .as_str()
            .expect("durable_name")
            .to_owned();
        js.on_publish(
            &format!("$JS.API.CONSUMER.CREATE.W.{name}"),
            Some("r.consumer"),
            b"",
            format!(r#"{{"stream_name":"W","config":{consumer}}}"#).as_bytes(),
        );
        let created = wait_reply(captured, "r.consumer").await;
        assert!(
            created.contains(&format!(r#""name":"{name}""#)),
            "{created}"
        );
        for i in 1..=jobs {
            js.on_publish("w.job", Some(&format!("r.pub.{i}")), b"", b"job");
            wait_reply(captured, &format!("r.pub.{i}")).await;
        }
    }

    /// Found by the consumer model test: a work-queue message its consumer
    /// gave up on after max_deliver attempts stays in the stream (as on
    /// nats-server 2.15.1), but the restart's reapplied acks counted it as
    /// acknowledged and removed it. The state file now lists such messages.
    #[tokio::test]
    async fn a_work_queue_message_given_up_after_max_deliver_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (js, captured, _router) = file_js(dir.path());
            work_queue_with_jobs(
                &js,
                &captured,
                r#"{"durable_name":"C","ack_policy":"explicit","max_deliver":1,"ack_wait":50000000}"#,
                2,
            )
            .await;
            js.on_publish(
                "$JS.API.CONSUMER.MSG.NEXT.W.C",
                Some("r.pull"),
                b"",
                br#"{"batch":2}"#,
            );
            let stream = js.stream("W").expect("stream W");
            let c = stream.consumer("C").expect("consumer C");
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while c.info().num_ack_pending > 0 || c.info().delivered.stream_seq < 2 {
                assert!(tokio::time::Instant::now() < deadline, "{:?}", c.info());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(stream.state().msgs, 2, "given up, not acknowledged");
            js.shutdown();
        }
        let (js, _captured, _router) = file_js(dir.path());
        let st = js.stream("W").expect("stream W").state();
        assert_eq!(
            st.msgs, 2,
            "unacknowledged work-queue messages removed at restart"
        );
        js.shutdown();
    }

    /// Issue 12, item 2 (work queues): a message every interested consumer
    /// acknowledged (as its persisted state says) stays gone after a
    /// restart, even when the stream's removal did not reach the disk.
    #[tokio::test]
    async fn acknowledged_work_queue_messages_do_not_come_back_after_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (js, captured, _router) = file_js(dir.path());
            work_queue_with_jobs(
                &js,
                &captured,
                r#"{"durable_name":"wq","ack_policy":"explicit"}"#,
                5,
            )
            .await;
            js.shutdown();
        }
        // The consumer acknowledged 1..=3 and persisted that (its state file
        // is written before an ack is confirmed); the stream's tombstones
        // for them never reached the disk.
        let state = dir.path().join("jetstream/$G/streams/W/obs/wq/state.json");
        assert!(state.exists(), "{}", state.display());
        std::fs::write(
            &state,
            br#"{"delivered_consumer_seq":3,"delivered_stream_seq":3,"ack_floor_consumer_seq":3,"ack_floor_stream_seq":3,"next_sseq":4,"pending":[],"lps":[]}"#,
        )
        .expect("write state");
        let (js, _captured, _router) = file_js(dir.path());
        let stream = js.stream("W").expect("stream W");
        let st = stream.state();
        assert_eq!(
            (st.msgs, st.first_seq, st.last_seq),
            (2, 4, 5),
            "acknowledged work-queue messages came back"
        );
        js.shutdown();
    }
    /// ADR-56 `persist_mode: async`: acknowledged before the fsync, but
    /// only once written to the kernel, so what was acknowledged is in the
    /// files at once (as a SIGKILL would leave them) and after a clean
    /// restart; the mode is kept with the stream.
    #[tokio::test]
    async fn an_async_persist_stream_keeps_every_acknowledged_message_across_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (js, captured, _router) = file_js(dir.path());
            js.on_publish(
                "$JS.API.STREAM.CREATE.A",
                Some("r.create"),
                b"",
                br#"{"name":"A","subjects":["a.>"],"persist_mode":"async"}"#,
            );
            let created = wait_reply(&captured, "r.create").await;
            assert!(created.contains(r#""persist_mode":"async""#), "{created}");
            for i in 1..=20u64 {
                js.on_publish("a.x", Some(&format!("r.pub.{i}")), b"", b"m");
                let ack = wait_reply(&captured, &format!("r.pub.{i}")).await;
                assert!(ack.contains(&format!(r#""seq":{i}"#)), "{ack}");
            }
            assert_eq!(on_disk(&js, "A"), (1..=20).collect::<Vec<u64>>());
            js.shutdown();
        }
        let (js, captured, _router) = file_js(dir.path());
        let stream = js.stream("A").expect("stream A");
        assert_eq!(stream.config().persist_mode, PersistMode::Async);
        let st = stream.state();
        assert_eq!((st.msgs, st.last_seq), (20, 20));
        js.on_publish("a.x", Some("r.pub.after"), b"", b"m");
        let ack = wait_reply(&captured, "r.pub.after").await;
        assert!(ack.contains(r#""seq":21"#), "{ack}");
        js.shutdown();
    }

    /// A router whose interest in `push.in` the test switches (a client
    /// subscribing or leaving); every other subject has interest.
    #[derive(Default)]
    struct Gated {
        open: std::sync::atomic::AtomicBool,
        inner: Captured,
    }

    impl Router for Gated {
        fn route(&self, subject: &str, reply: Option<&str>, hdr: &[u8], data: &[u8]) -> usize {
            self.inner.route(subject, reply, hdr, data)
        }
        fn route_as(&self, to: &str, s: &str, r: Option<&str>, h: &[u8], d: &[u8]) -> usize {
            self.inner.route_as(to, s, r, h, d)
        }
        fn has_interest(&self, subject: &str) -> bool {
            subject != "push.in" || self.open.load(Ordering::SeqCst)
        }
    }

    async fn wait_until(what: &str, cond: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !cond() {
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// A push consumer whose deliver subject has no subscriber is counted
    /// as waiting (so a subscription in the account looks for it), delivers
    /// once a subscription on a filter matching its deliver subject is
    /// announced, and leaves the count when bound or deleted.
    #[tokio::test]
    async fn a_push_consumer_waiting_for_its_subscriber_is_counted_and_served_when_one_arrives() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gated = Arc::new(Gated::default());
        let router: Arc<dyn Router> = Arc::clone(&gated) as _;
        let js = js_routed_to(dir.path(), &router);
        let api = |api: &str, reply: &str, body: &[u8]| {
            assert!(crate::jetstream::api::handle(
                &js,
                api,
                Some(reply),
                b"",
                body
            ));
        };
        api(
            "STREAM.CREATE.P",
            "r.s",
            br#"{"name":"P","subjects":["p.>"]}"#,
        );
        wait_reply(&gated.inner, "r.s").await;
        js.on_publish("p.1", Some("r.p1"), b"", b"one");
        wait_reply(&gated.inner, "r.p1").await;
        api(
            "CONSUMER.CREATE.P.C",
            "r.c",
            br#"{"stream_name":"P","config":{"durable_name":"C","deliver_subject":"push.in","ack_policy":"none"}}"#,
        );
        let created = wait_reply(&gated.inner, "r.c").await;
        assert!(created.contains(r#""name":"C""#), "{created}");
        let unbound = || js.unbound_push.load(Ordering::SeqCst);
        wait_until("the unbound push consumer is counted", || unbound() == 1).await;
        assert!(reply_to(&gated.inner, "push.in").is_none());

        // A subscription in another subject space wakes nothing and
        // changes nothing; one on `push.*` serves the consumer.
        js.subscribed("other.>");
        gated.open.store(true, Ordering::SeqCst);
        js.subscribed("push.*");
        let got = wait_reply(&gated.inner, "push.in").await;
        assert_eq!(got, "one");
        wait_until("a bound push consumer is not counted", || unbound() == 0).await;

        // Its subscriber leaves: counted again at its next round (a new
        // message); deleted while waiting: not counted any more.
        gated.open.store(false, Ordering::SeqCst);
        js.on_publish("p.2", Some("r.p2"), b"", b"two");
        wait_reply(&gated.inner, "r.p2").await;
        wait_until("unbound again after its subscriber left", || unbound() == 1).await;
        api("CONSUMER.DELETE.P.C", "r.d", b"");
        let deleted = wait_reply(&gated.inner, "r.d").await;
        assert!(deleted.contains(r#""success":true"#), "{deleted}");
        assert_eq!(unbound(), 0, "a deleted consumer leaves the count");
        js.shutdown();
    }
}
