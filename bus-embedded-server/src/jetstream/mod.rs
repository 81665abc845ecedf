//! JetStream: persistent streams and consumers over the NATS protocol,
//! answering nats-server's `$JS.API.>` requests so that unchanged clients
//! (async-nats, nats.py, nats.js) work.
//!
//! ## Layout
//! - [`store`]: message storage per stream (memory and the crash-safe file
//!   store). Knows nothing about NATS.
//! - [`stream`]: one stream: publish checks (dedup, expected sequences,
//!   rollups, limits), retention, group-commit acknowledgement; it owns
//!   its consumers ([`stream::consumer`], also reachable as [`consumer`]):
//!   pull requests, push delivery, acks, redelivery, state persistence.
//! - [`api`]: the `$JS.API.*` request handlers and their JSON.
//! - [`types`], [`errors`], [`headers`]: JSON shapes, nats-server's error
//!   codes, NATS header blocks; [`jsz`]: `/jsz`, health and Prometheus
//!   figures; [`versioning`]: the `_nats.*` level and version stamps in
//!   stream and consumer metadata.
//!
//! Subjects are compared by the crate's `subject` module; messages leave
//! through the [`Router`] the account implements (its fan-out).
//!
//! ## Invariants
//! - A publish to a stream is acknowledged only once its sequence is
//!   durable in the store (fsynced, for the file store in `always` mode).
//! - Consumers deliver only durable messages, so nothing a client saw can
//!   vanish in a crash.
//! - Lock order: consumer state, then stream state. Nothing holds the
//!   stream lock while taking a consumer lock.
//! - The JetStream layer never writes to sockets: it hands messages to the
//!   server's router, which appends them to connections' buffers.

pub mod api;
mod direct;
pub mod errors;
pub mod headers;
pub mod jsz;
pub mod limits;
pub mod store;
pub mod stream;
pub mod types;
pub mod versioning;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;

pub use crate::config::{JetStreamConfig, SyncPolicy};
pub use stream::consumer;

use stream::Stream;

/// Delivers messages into the core server (implemented by the server).
pub trait Router: Send + Sync {
    /// Publishes a message to every matching subscription; returns how many
    /// received it.
    fn route(&self, subject: &str, reply: Option<&str>, hdr: &[u8], data: &[u8]) -> usize;
    /// Delivers to the subscriptions matching `to` a message that shows
    /// `subject` (how consumers deliver a stored message to an inbox).
    fn route_as(
        &self,
        to: &str,
        subject: &str,
        reply: Option<&str>,
        hdr: &[u8],
        data: &[u8],
    ) -> usize;
    /// True when some subscription matches `subject`.
    fn has_interest(&self, subject: &str) -> bool;
    /// A run of [`route_as`](Router::route_as) deliveries by one producer
    /// (a consumer's delivery round): an implementation may look up the
    /// subscriptions of a target once for consecutive deliveries to it and
    /// wake each connection's writer once, when the run is dropped, so
    /// that a batch leaves in few writes. The default routes each delivery
    /// on its own.
    fn deliveries(&self) -> Box<dyn Deliveries + '_> {
        Box::new(OneByOne(self))
    }
    /// The JetStream another account serves through this account's
    /// imports under the API prefix `api` (a service import of that
    /// account's `$JS.API.>`), and, when `deliver` is set, whose stream
    /// export of `<deliver>.>` this account imports: the origin side of a
    /// mirror or source with `external`. `None` when the imports do not
    /// allow it.
    fn external_jetstream(&self, _api: &str, _deliver: &str) -> Option<Arc<JetStream>> {
        None
    }
}

/// Deliveries of one producer, finished when dropped (see
/// [`Router::deliveries`]).
pub trait Deliveries {
    /// As [`Router::route_as`]; the message is queued for its subscribers
    /// when this returns, their writers may be woken only at the end of
    /// the run.
    fn route_as(
        &mut self,
        to: &str,
        subject: &str,
        reply: Option<&str>,
        hdr: &[u8],
        data: &[u8],
    ) -> usize;
    /// Asks that the run, when it ends, write its output straight to the
    /// sockets of connections whose writers are idle instead of waking
    /// them: for a producer on a thread outside the runtime (the fsync
    /// thread sending confirmations), whose wake-up of a writer would be a
    /// cross-thread wake of a runtime worker. The default does nothing.
    fn write_through(&mut self) {}
    /// Whether a subscriber delivered to in this run has more output
    /// queued than it should take before writing some (the stall threshold
    /// of `outbound`): a producer that can wait should end its run and go
    /// on once [`Deliveries::drained`] completes.
    fn backlogged(&self) -> bool {
        false
    }
    /// Completes once the backlogged subscribers of this run have written
    /// their output down to the threshold (or closed), or after `limit`;
    /// `None` when none is backlogged.
    fn drained(&mut self, _limit: Duration) -> Option<DrainWait> {
        None
    }
}

/// What [`Deliveries::drained`] hands out: owned, so a consumer's task can
/// wait on it after the run has ended.
pub type DrainWait = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>>;

/// [`Router::deliveries`]' default: every delivery routed on its own.
struct OneByOne<'a, R: ?Sized>(&'a R);

impl<R: Router + ?Sized> Deliveries for OneByOne<'_, R> {
    fn route_as(
        &mut self,
        to: &str,
        subject: &str,
        reply: Option<&str>,
        hdr: &[u8],
        data: &[u8],
    ) -> usize {
        self.0.route_as(to, subject, reply, hdr, data)
    }
}

/// Errors opening JetStream.
#[derive(Debug, thiserror::Error)]
pub enum JetStreamError {
    /// The store directory could not be used.
    #[error("JetStream store directory {dir}: {source}")]
    StoreDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A stream's data could not be recovered.
    #[error("stream {stream} could not be recovered: {reason}")]
    Recovery {
        /// Stream name.
        stream: String,
        /// Why.
        reason: String,
    },
}

/// Counters of the JetStream API.
#[derive(Debug, Default)]
pub struct ApiStats {
    /// Requests handled.
    pub total: AtomicU64,
    /// Requests answered with an error.
    pub errors: AtomicU64,
}

/// The JetStream engine of one server (one account).
pub struct JetStream {
    pub(crate) config: JetStreamConfig,
    pub(crate) streams: RwLock<BTreeMap<String, Arc<Stream>>>,
    router: OnceLock<Weak<dyn Router>>,
    pub(crate) api_stats: ApiStats,
    /// Serialises stream create/update/delete (subject overlap checks).
    pub(crate) admin: Mutex<()>,
    pub(crate) self_ref: OnceLock<Weak<JetStream>>,
    /// The account this engine serves (`$G` for the global account).
    pub(crate) account: String,
    /// The account's JetStream limits and usage, tied to the server's.
    pub(crate) resources: Arc<limits::AccountResources>,
    /// How many push consumers found no subscriber on their deliver
    /// subject at their last round: while it is 0, a new subscription
    /// costs nothing here (see [`JetStream::subscribed`]).
    pub(crate) unbound_push: AtomicUsize,
}

impl std::fmt::Debug for JetStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStream")
            .field("store_dir", &self.config.store_dir)
            .finish()
    }
}

impl JetStream {
    /// Opens JetStream: creates the store directory and recovers every
    /// stream and consumer found there. Must run inside a tokio runtime.
    pub fn open(config: JetStreamConfig) -> Result<Arc<JetStream>, JetStreamError> {
        let server = limits::ServerResources::new(config.max_memory, config.max_store);
        let resources = Arc::new(limits::AccountResources::new(
            crate::config::AccountJetStreamLimits::default(),
            server,
        ));
        Self::open_account(config, "$G", resources)
    }

    /// Opens the JetStream of one account: its streams live under
    /// `<store_dir>/jetstream/<account>/streams`; `resources` holds the
    /// account's limits and the server's it shares with other accounts.
    pub fn open_account(
        config: JetStreamConfig,
        account: &str,
        resources: Arc<limits::AccountResources>,
    ) -> Result<Arc<JetStream>, JetStreamError> {
        let dir = config.streams_dir_for(account);
        std::fs::create_dir_all(&dir).map_err(|source| JetStreamError::StoreDir {
            dir: dir.clone(),
            source,
        })?;
        let js = Arc::new(JetStream {
            config,
            streams: RwLock::new(BTreeMap::new()),
            router: OnceLock::new(),
            api_stats: ApiStats::default(),
            admin: Mutex::new(()),
            self_ref: OnceLock::new(),
            account: account.to_owned(),
            resources,
            unbound_push: AtomicUsize::new(0),
        });
        let _ = js.self_ref.set(Arc::downgrade(&js));
        js.recover()?;
        Ok(js)
    }

    /// A client subscribed to `subject` in this account: a push consumer
    /// waiting for a subscriber on a deliver subject it matches starts
    /// delivering now rather than at its next periodic round (nats-server
    /// is told of new interest at once too).
    pub(crate) fn subscribed(&self, subject: &str) {
        if self.unbound_push.load(Ordering::Relaxed) == 0 {
            return;
        }
        let streams: Vec<Arc<Stream>> = match self.streams.read() {
            Ok(s) => s.values().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().values().cloned().collect(),
        };
        for stream in streams {
            for consumer in stream.consumers() {
                consumer.wake_if_subscriber(subject);
            }
        }
    }

    /// Connects the engine to the server's router (once).
    pub fn set_router(&self, router: Weak<dyn Router>) {
        let _ = self.router.set(router);
    }

    pub(crate) fn router(&self) -> Option<Arc<dyn Router>> {
        self.router.get().and_then(Weak::upgrade)
    }

    /// Sends a message through the router (no-op before it is set).
    pub(crate) fn send(
        &self,
        subject: &str,
        reply: Option<&str>,
        hdr: &[u8],
        data: &[u8],
    ) -> usize {
        match self.router() {
            Some(r) => r.route(subject, reply, hdr, data),
            None => 0,
        }
    }

    /// Streams by name.
    pub fn stream(&self, name: &str) -> Option<Arc<Stream>> {
        read(&self.streams).get(name).cloned()
    }

    /// Every stream, by name.
    pub fn all_streams(&self) -> Vec<Arc<Stream>> {
        read(&self.streams).values().cloned().collect()
    }

    /// The stream capturing a literal subject.
    pub fn stream_for_subject(&self, subject: &str) -> Option<Arc<Stream>> {
        read(&self.streams)
            .values()
            .find(|s| s.captures(subject))
            .cloned()
    }

    /// Called for every message published by a client. Returns true when
    /// JetStream handled it as a request (API call, ack, stream publish),
    /// which counts as a responder for no-responders purposes.
    pub fn on_publish(&self, subject: &str, reply: Option<&str>, hdr: &[u8], data: &[u8]) -> bool {
        if let Some(rest) = subject.strip_prefix("$JS.") {
            if let Some(api) = rest.strip_prefix("API.") {
                if api::touches_disk(api)
                    && let (Ok(runtime), Some(js)) =
                        (tokio::runtime::Handle::try_current(), self.weak().upgrade())
                {
                    // Creating, updating, deleting or purging writes and
                    // fsyncs files: on a blocking thread, never on the
                    // async workers that serve connections. The answer
                    // goes out through the router as usual.
                    let (api, reply) = (api.to_owned(), reply.map(str::to_owned));
                    let (hdr, data) = (hdr.to_vec(), data.to_vec());
                    runtime.spawn_blocking(move || {
                        api::handle(&js, &api, reply.as_deref(), &hdr, &data);
                    });
                    return true;
                }
                if api::reads_messages(api) {
                    // From the page cache here; a message that is not in
                    // memory is read on a blocking thread instead.
                    let _cached_reads_only = store::nowait::enter();
                    return api::handle(self, api, reply, hdr, data);
                }
                return api::handle(self, api, reply, hdr, data);
            }
            if let Some(ack) = rest.strip_prefix("ACK.") {
                return self.on_ack(ack, reply, data);
            }
            if let Some(fc) = rest.strip_prefix("FC.") {
                // Flow-control replies: the consumer resumes on any answer.
                return self.on_flow_control(fc);
            }
        }
        match self.stream_for_subject(subject) {
            Some(stream) => {
                stream.publish(self, subject, reply, hdr, data);
                true
            }
            None => false,
        }
    }

    /// A traced client publish (`Nats-Trace-Dest`): what [`Self::on_publish`]
    /// does, plus the report of the stream that captured it, if any. With
    /// `only` (trace only) a stream checks the message but stores nothing,
    /// and the JetStream API, acks and flow-control subjects are not acted
    /// on.
    pub(crate) fn on_publish_traced(
        &self,
        subject: &str,
        reply: Option<&str>,
        hdr: &[u8],
        data: &[u8],
        only: bool,
    ) -> (bool, Option<crate::trace::JetStreamReport>) {
        if subject.starts_with("$JS.") {
            if only {
                return (false, None);
            }
            return (self.on_publish(subject, reply, hdr, data), None);
        }
        match self.stream_for_subject(subject) {
            Some(stream) => {
                let mut report = crate::trace::JetStreamReport::default();
                stream.publish_traced(self, subject, reply, hdr, data, Some((only, &mut report)));
                (true, Some(report))
            }
            None => (false, None),
        }
    }

    fn on_ack(&self, tokens: &str, reply: Option<&str>, data: &[u8]) -> bool {
        let parts: Vec<&str> = tokens.split('.').collect();
        // <stream>.<consumer>.<dc>.<sseq>.<dseq>.<ts>.<pending>, or the
        // newer form with <domain>.<account hash> in front (and a token after).
        let (stream, consumer, nums) = match parts.len() {
            7 => (parts[0], parts[1], &parts[2..]),
            9 | 10 => (parts[2], parts[3], &parts[4..]),
            _ => return false,
        };
        let Some(s) = self.stream(stream) else {
            return false;
        };
        let Some(c) = s.consumer(consumer) else {
            return false;
        };
        let (Some(sseq), Some(dseq)) = (
            nums.get(1).and_then(|t| t.parse::<u64>().ok()),
            nums.get(2).and_then(|t| t.parse::<u64>().ok()),
        ) else {
            return false;
        };
        c.on_ack(self, &s, sseq, dseq, data, reply);
        true
    }

    fn on_flow_control(&self, tokens: &str) -> bool {
        let mut parts = tokens.split('.');
        let (Some(stream), Some(consumer)) = (parts.next(), parts.next()) else {
            return false;
        };
        if let Some(c) = self.stream(stream).and_then(|s| s.consumer(consumer)) {
            c.on_flow_control_reply();
            return true;
        }
        false
    }

    /// Bytes stored in memory and file streams.
    pub fn usage(&self) -> (u64, u64) {
        let mut mem = 0;
        let mut file = 0;
        for s in self.all_streams() {
            let (storage, bytes) = s.usage();
            match storage {
                types::StorageType::Memory => mem += bytes,
                types::StorageType::File => file += bytes,
            }
        }
        (mem, file)
    }

    /// Number of consumers over all streams.
    pub fn consumer_count(&self) -> usize {
        self.all_streams().iter().map(|s| s.consumer_count()).sum()
    }

    /// Stops every stream: flushes and closes stores, persists consumer state.
    pub fn shutdown(&self) {
        for s in self.all_streams() {
            s.shutdown();
        }
    }

    fn recover(self: &Arc<Self>) -> Result<(), JetStreamError> {
        let dir = self.streams_dir();
        let entries = std::fs::read_dir(&dir).map_err(|source| JetStreamError::StoreDir {
            dir: dir.clone(),
            source,
        })?;
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        for d in dirs {
            match Stream::recover(self, &d) {
                Ok(Some(stream)) => {
                    self.resources.restore(&stream.config());
                    write(&self.streams).insert(stream.name.clone(), stream);
                }
                Ok(None) => {}
                Err(reason) => {
                    return Err(JetStreamError::Recovery {
                        stream: d
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        reason,
                    });
                }
            }
        }
        // A mirror or source recovered before its origin looked for it in
        // vain: look again now that every stream is back.
        for s in self.all_streams() {
            s.wake_sourcing();
        }
        Ok(())
    }

    /// The account this engine serves.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// Where this engine's streams live.
    pub fn streams_dir(&self) -> PathBuf {
        self.config.streams_dir_for(&self.account)
    }

    pub(crate) fn weak(&self) -> Weak<JetStream> {
        self.self_ref.get().cloned().unwrap_or_default()
    }
}

pub(crate) fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    match l.read() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

pub(crate) fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    match l.write() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Writes a file atomically: temp file, fsync, rename, fsync the directory.
pub(crate) fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    store::storage::atomic_write(&store::storage::RealFs, path, bytes)
}

/// Duration from nanoseconds (negative = zero).
pub(crate) fn nanos(n: i64) -> Duration {
    Duration::from_nanos(u64::try_from(n).unwrap_or(0))
}
