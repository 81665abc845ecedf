//! The file store's per-message index, kept compact (issue #15 item 6):
//! where every stored message's record is, its timestamp and its subject.
//!
//! Messages are kept in *runs*: a run is a contiguous array of 24-byte
//! slots (record offset, timestamp, record length, subject id) for the
//! consecutive sequences `first..first + slots.len()` of one segment,
//! indexed by `seq - first`. Appending the next sequence to the same
//! segment extends the newest run; a new segment, or a jump in sequences
//! (a purge that moved the last sequence), starts a new run. A removed
//! message leaves an empty slot (length 0) until its whole run is empty;
//! a run whose front is mostly empty is cut down. Subjects are interned
//! once and referred to by a `u32` id; the accounting size is derived from
//! the record length and one flag (whether the message has headers).
//!
//! The cost is 24 bytes per slot instead of a B-tree node entry holding a
//! 56-byte entry (segment, offset, length, timestamp, a 16-byte `Arc<str>`,
//! size), and lookups are a B-tree search over runs (about one per
//! segment) plus an array index.
//!
//! Per subject it keeps no sequence set: each subject has its count and
//! its first and last sequence (nats-server's "psim"), and each run a
//! summary of the subjects in it (per subject: count and the slot span
//! that holds them). The queries that need a subject's sequences in
//! between (the next one from a consumer's position, the pending count
//! from it, a filtered purge, the first after the first was removed) walk
//! the runs, skip those whose summary lacks the subject, and scan only the
//! summarised span of the others. A last-by-subject is a map lookup.
//!
//! Sealed runs built at open ([`MsgIndex::append_run`] with a loader set)
//! are *unloaded*: every slot live, only their length and subject summary
//! kept. The queries that need no slot (counts and next sequence over
//! dense runs, gaps, runs skipped by their summary) answer without them;
//! the others read the slots back through the [`RunLoader`] the file store
//! gives (its only I/O, done on the caller's thread under the store's
//! lock) into a cache bounded in slots (least recently used runs evicted;
//! `&self` queries load through a mutex). A run that is about to change
//! (a removal, a replacement) is loaded for good first ("pinned").

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use super::super::SubjectFilter;
use super::super::subjects::SubjectQueries;
use super::Entry;
use crate::subject;

/// Set in [`Slot::subj`] when the message has a header block.
const HAS_HDR: u32 = 1 << 31;
/// A run's leading empty slots are dropped once they are at least this many
/// and more than half the run.
const TRIM_FRONT: usize = 1024;

/// One message: 24 bytes.
#[derive(Debug, Clone, Copy)]
struct Slot {
    off: u64,
    ts: i64,
    /// Record length; 0: no message (removed, or never in this run).
    len: u32,
    /// Subject id, with [`HAS_HDR`].
    subj: u32,
}

const EMPTY: Slot = Slot {
    off: 0,
    ts: 0,
    len: 0,
    subj: 0,
};

/// A run's summary of one subject: how many of its slots hold it, all of
/// them within the slot indexes `first..=last`. Removals narrow the span
/// only when they take its end slot, so it may be wider than the slots
/// that still hold the subject, never narrower.
#[derive(Debug, Clone, Copy)]
struct Sum {
    first: u32,
    last: u32,
    count: u32,
}

/// Hashes the store's own subject ids (small integers it hands out, not
/// input): one multiplication instead of SipHash on every append.
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A map keyed by subject id.
type IdMap<V> = HashMap<u32, V, std::hash::BuildHasherDefault<IdHasher>>;

/// A run's slots: in memory, or left on disk (a sealed run whose every
/// slot is live, built at open by [`MsgIndex::append_run`]) with only its
/// length kept; [`MsgIndex::slots`] loads those into the bounded cache.
#[derive(Debug)]
enum Body {
    Loaded(Vec<Slot>),
    Unloaded(usize),
}

/// Consecutive sequences of one segment.
#[derive(Debug)]
struct Run {
    seg: u64,
    /// Slots before this are all empty.
    head: usize,
    /// Non-empty slots.
    live: usize,
    body: Body,
    /// No message of the run has a later timestamp (an upper bound:
    /// removals leave it), so a search by time skips the run unread.
    max_ts: i64,
    /// Messages with a header block put in this run (an upper bound:
    /// removals leave it), so a search for those skips the run unread.
    hdrs: u64,
    /// Subject id -> where in this run it is.
    subjs: IdMap<Sum>,
}

impl Run {
    /// Slots (sequences `first..first + len`).
    fn len(&self) -> usize {
        match &self.body {
            Body::Loaded(v) => v.len(),
            Body::Unloaded(n) => *n,
        }
    }

    fn dense(&self) -> bool {
        self.live == self.len() - self.head
    }

    fn vec_mut(&mut self) -> Option<&mut Vec<Slot>> {
        match &mut self.body {
            Body::Loaded(v) => Some(v),
            Body::Unloaded(_) => None,
        }
    }

    fn add_subject(&mut self, id: u32, i: usize) {
        let i = i as u32;
        self.subjs
            .entry(id)
            .and_modify(|s| {
                s.first = s.first.min(i);
                s.last = s.last.max(i);
                s.count += 1;
            })
            .or_insert(Sum {
                first: i,
                last: i,
                count: 1,
            });
    }

    fn drop_subject(subjs: &mut IdMap<Sum>, id: u32, i: usize) {
        let i = i as u32;
        let Some(s) = subjs.get_mut(&id) else {
            return;
        };
        s.count = s.count.saturating_sub(1);
        if s.count == 0 {
            subjs.remove(&id);
            return;
        }
        if s.first == i {
            s.first += 1;
        }
        if s.last == i {
            s.last = s.last.saturating_sub(1);
        }
    }

    /// The slot indexes of this run that may hold `id`, from `from` on
    /// (empty when the run holds none).
    fn span_of(&self, id: u32, from: usize) -> std::ops::Range<usize> {
        match self.subjs.get(&id) {
            Some(s) => {
                let lo = (s.first as usize).max(from).max(self.head);
                let hi = (s.last as usize + 1).min(self.len());
                lo..hi.max(lo)
            }
            None => 0..0,
        }
    }

    fn holds_any(&self, set: &[bool]) -> bool {
        self.subjs.keys().any(|id| in_set(set, *id))
    }
}

fn in_set(set: &[bool], id: u32) -> bool {
    set.get(id as usize).copied().unwrap_or(false)
}

fn slot_id(slot: &Slot) -> u32 {
    slot.subj & !HAS_HDR
}

/// Per subject (nats-server's psim): its id, how many indexed messages
/// use it, and its oldest and newest sequence.
#[derive(Debug, Clone, Copy)]
struct Psi {
    id: u32,
    count: u64,
    first: u64,
    last: u64,
}

/// Subject -> id and [`Psi`].
#[derive(Debug, Default)]
struct Subjects {
    ids: HashMap<Arc<str>, Psi>,
    names: Vec<Option<Arc<str>>>,
    free: Vec<u32>,
}

impl Subjects {
    /// The id of `subject`, counting one more message on it at `seq`.
    fn acquire(&mut self, subject: &Arc<str>, seq: u64) -> u32 {
        if let Some(p) = self.ids.get_mut(subject) {
            p.count += 1;
            p.first = p.first.min(seq);
            p.last = p.last.max(seq);
            return p.id;
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.names[id as usize] = Some(Arc::clone(subject));
                id
            }
            None => {
                self.names.push(Some(Arc::clone(subject)));
                (self.names.len() - 1) as u32
            }
        };
        self.ids.insert(
            Arc::clone(subject),
            Psi {
                id,
                count: 1,
                first: seq,
                last: seq,
            },
        );
        id
    }

    /// The id of `subject`, counting `count` more messages on it, the
    /// lowest at `first` and the highest at `last` (a bulk
    /// [`Subjects::acquire`]).
    fn acquire_many(&mut self, subject: &Arc<str>, count: u64, first: u64, last: u64) -> u32 {
        let id = self.acquire(subject, first);
        if let Some(p) = self.ids.get_mut(subject) {
            p.count += count.saturating_sub(1);
            p.last = p.last.max(last);
        }
        id
    }

    fn psi(&self, id: u32) -> Option<Psi> {
        let name = self.names.get(id as usize)?.as_ref()?;
        self.ids.get(name).copied()
    }

    fn set_psi(&mut self, p: Psi) {
        if let Some(Some(name)) = self.names.get(p.id as usize)
            && let Some(m) = self.ids.get_mut(name)
        {
            *m = p;
        }
    }

    fn name(&self, id: u32) -> Arc<str> {
        match self.names.get(id as usize) {
            Some(Some(name)) => Arc::clone(name),
            // Unreachable while the index is consistent; an empty subject
            // is a wrong answer, not a crash.
            _ => Arc::from(""),
        }
    }

    /// Forgets `id` (its last message is gone).
    fn forget(&mut self, id: u32) {
        let Some(Some(name)) = self.names.get(id as usize) else {
            return;
        };
        self.ids.remove(&Arc::clone(name));
        self.names[id as usize] = None;
        self.free.push(id);
    }

    /// A membership table by id of the subjects `pred` accepts, and their
    /// [`Psi`]s.
    fn matching(&self, pred: impl Fn(&str) -> bool) -> (Vec<bool>, Vec<Psi>) {
        let mut set = vec![false; self.names.len()];
        let mut out = Vec::new();
        for (name, p) in &self.ids {
            if pred(name) {
                set[p.id as usize] = true;
                out.push(*p);
            }
        }
        (set, out)
    }
}

/// One message for [`MsgIndex::append_run`].
#[derive(Debug, Clone, Copy)]
pub(super) struct BulkMsg {
    pub(super) off: u64,
    pub(super) ts: i64,
    /// Record length.
    pub(super) len: u32,
    /// Index into the segment's subject table (out of range: its entry 0).
    pub(super) subject: u32,
    /// It has a header block.
    pub(super) hdr: bool,
}

/// Above this many subjects whose sequences straddle the start of a
/// query, one walk over the runs answers for all of them instead of one
/// walk per subject.
const PER_SUBJECT_WALKS: usize = 8;

/// What a [`RunLoader`] gives for a segment: its messages, as
/// [`MsgIndex::append_run`] takes them, with their sequences.
#[derive(Debug, Default)]
pub(super) struct LoadedRun {
    /// The segment's subject table ([`BulkMsg::subject`] indexes it; out of
    /// range: entry 0).
    pub(super) subjects: Vec<Arc<str>>,
    /// Every message found in the segment, ascending.
    pub(super) msgs: Vec<(u64, BulkMsg)>,
}

/// Reads the messages of segment `seg` back (the file store's: its index
/// file, or a scan of the segment when that fails its checks); `None`
/// when neither can be read.
pub(super) type RunLoader = dyn Fn(u64) -> Option<LoadedRun> + Send + Sync;

/// Slots of unloaded runs the cache keeps loaded (32 MiB of slots, about
/// 1.4 M messages), past the run being read. Tests keep one slot, so every
/// load evicts.
#[cfg(not(test))]
const CACHE_SLOTS: usize = (32 << 20) / std::mem::size_of::<Slot>();
#[cfg(test)]
const CACHE_SLOTS: usize = 1;

/// Loaded slots of unloaded runs, least recently used evicted first.
#[derive(Debug)]
struct Cache {
    /// Most slots kept (the run just loaded is kept even when larger).
    budget: usize,
    /// Slots held.
    held: usize,
    tick: u64,
    /// Run (first sequence) -> its slots and when they were last used.
    runs: HashMap<u64, (Arc<[Slot]>, u64)>,
    /// Loads so far (tests and stats).
    loads: u64,
}

impl Default for Cache {
    fn default() -> Self {
        Cache {
            budget: CACHE_SLOTS,
            held: 0,
            tick: 0,
            runs: HashMap::new(),
            loads: 0,
        }
    }
}

impl Cache {
    fn take(&mut self, first: u64) -> Option<Arc<[Slot]>> {
        let (slots, _) = self.runs.remove(&first)?;
        self.held -= slots.len();
        Some(slots)
    }
}

/// The loader and the cache of unloaded runs' slots. Queries on `&self`
/// load through the mutex (interior mutability): the index stays behind
/// the store's lock, so the mutex is never contended.
#[derive(Default)]
struct Lazy {
    loader: Option<Arc<RunLoader>>,
    cache: std::sync::Mutex<Cache>,
    /// A run could not be read back since [`MsgIndex::take_failure`]: the
    /// answers given meanwhile may have missed its messages.
    failed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Lazy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lazy")
            .field("loader", &self.loader.is_some())
            .finish_non_exhaustive()
    }
}

/// A run's slots for reading: borrowed from a loaded run, or shared with
/// the cache (kept alive while read even if evicted meanwhile).
enum Slots<'a> {
    Ref(&'a [Slot]),
    Shared(Arc<[Slot]>),
}

impl std::ops::Deref for Slots<'_> {
    type Target = [Slot];

    fn deref(&self) -> &[Slot] {
        match self {
            Slots::Ref(s) => s,
            Slots::Shared(s) => s,
        }
    }
}

/// The index: sequence -> [`Entry`]. See the module docs.
#[derive(Debug, Default)]
pub(super) struct MsgIndex {
    /// Keyed by each run's first sequence; runs never overlap.
    runs: BTreeMap<u64, Run>,
    len: u64,
    subjects: Subjects,
    lazy: Lazy,
}

impl MsgIndex {
    /// Messages indexed.
    pub(super) fn len(&self) -> u64 {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(super) fn clear(&mut self) {
        let loader = self.lazy.loader.take();
        *self = MsgIndex::default();
        self.lazy.loader = loader;
    }

    /// From now on [`MsgIndex::append_run`] leaves the runs it builds
    /// unloaded (their summary kept), and `loader` reads their slots back
    /// when a query needs them.
    pub(super) fn set_loader(&mut self, loader: Arc<RunLoader>) {
        self.lazy.loader = Some(loader);
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        // A panic while it was held left nothing half-done that matters:
        // the cache only holds copies.
        self.lazy
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Loads so far and slots held by the cache of unloaded runs.
    #[cfg(test)]
    pub(super) fn cache_stats(&self) -> (u64, usize) {
        let c = self.cache();
        (c.loads, c.held)
    }

    /// Runs whose slots are not in memory (outside the cache).
    #[cfg(test)]
    pub(super) fn unloaded_runs(&self) -> usize {
        self.runs
            .values()
            .filter(|r| matches!(r.body, Body::Unloaded(_)))
            .count()
    }

    /// The slots of the run at `first`, loading them into the cache if it
    /// is unloaded (evicting the least recently used others past the
    /// budget).
    fn slots<'a>(&'a self, first: u64, run: &'a Run) -> Slots<'a> {
        let n = match &run.body {
            Body::Loaded(v) => return Slots::Ref(v),
            Body::Unloaded(n) => *n,
        };
        let mut cache = self.cache();
        cache.tick += 1;
        let tick = cache.tick;
        if let Some((slots, used)) = cache.runs.get_mut(&first) {
            *used = tick;
            return Slots::Shared(Arc::clone(slots));
        }
        let Some(loaded) = self.load(first, run.seg, n) else {
            // Not kept: the next query tries again.
            return Slots::Shared(vec![EMPTY; n].into());
        };
        let slots: Arc<[Slot]> = loaded.into();
        cache.loads += 1;
        cache.held += n;
        cache.runs.insert(first, (Arc::clone(&slots), tick));
        while cache.held > cache.budget {
            let Some(oldest) = cache
                .runs
                .iter()
                .filter(|(k, _)| **k != first)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            cache.take(oldest);
        }
        Slots::Shared(slots)
    }

    /// Reads the slots of the unloaded run `first..first + n` of segment
    /// `seg` through the loader; `None` (logged, and noted for
    /// [`MsgIndex::take_failure`]) when the segment cannot be read or no
    /// longer holds every message of the run.
    fn load(&self, first: u64, seg: u64, n: usize) -> Option<Vec<Slot>> {
        let mut slots = vec![EMPTY; n];
        let loaded = self.lazy.loader.as_ref().and_then(|l| l(seg));
        let mut found = 0usize;
        if let Some(run) = &loaded {
            // The segment's subject table -> ids, each looked up once.
            let ids: Vec<u32> = run
                .subjects
                .iter()
                .map(|name| self.subjects.ids.get(&**name).map_or(0, |p| p.id))
                .collect();
            for (seq, m) in &run.msgs {
                let Some(i) = seq.checked_sub(first).filter(|i| *i < n as u64) else {
                    continue;
                };
                let id = ids
                    .get(m.subject as usize)
                    .or(ids.first())
                    .copied()
                    .unwrap_or(0);
                let slot = &mut slots[i as usize];
                if slot.len == 0 {
                    found += 1;
                }
                *slot = Slot {
                    off: m.off,
                    ts: m.ts,
                    len: m.len.max(1),
                    subj: id | if m.hdr { HAS_HDR } else { 0 },
                };
            }
        }
        if found != n {
            tracing::error!(
                segment = seg,
                first,
                expected = n,
                found,
                "file store: could not read back every message of a sealed segment"
            );
            self.lazy
                .failed
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return None;
        }
        Some(slots)
    }

    /// Whether a run could not be read back since the last call (the
    /// answers given meanwhile may have missed its messages; the store
    /// reports an I/O error instead).
    pub(super) fn take_failure(&self) -> bool {
        self.lazy
            .failed
            .swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    /// Makes the run at `first` loaded for good (it is about to change);
    /// false if it could not be read back (it stays unloaded).
    fn pin(&mut self, first: u64) -> bool {
        let Some(run) = self.runs.get(&first) else {
            return true;
        };
        let Body::Unloaded(n) = run.body else {
            return true;
        };
        let seg = run.seg;
        let cached = self.cache().take(first);
        let slots = match cached {
            Some(s) => s.to_vec(),
            None => match self.load(first, seg, n) {
                Some(slots) => slots,
                None => return false,
            },
        };
        if let Some(run) = self.runs.get_mut(&first) {
            run.body = Body::Loaded(slots);
        }
        true
    }

    /// Pins the run holding `seq`, if any; false if it could not be read
    /// back.
    fn pin_at(&mut self, seq: u64) -> bool {
        match self.runs.range(..=seq).next_back() {
            Some((&first, run)) if matches!(run.body, Body::Unloaded(_)) => self.pin(first),
            _ => true,
        }
    }

    /// Pins every run holding one of `seqs` (ascending), before they are
    /// removed: false (nothing removed yet) if one could not be read back.
    pub(super) fn pin_all(&mut self, seqs: &[u64]) -> bool {
        let mut last_run = None;
        for &seq in seqs {
            let Some((&first, _)) = self.runs.range(..=seq).next_back() else {
                continue;
            };
            if last_run == Some(first) {
                continue;
            }
            last_run = Some(first);
            if !self.pin(first) {
                return false;
            }
        }
        true
    }

    fn entry(&self, seg: u64, slot: &Slot) -> Entry {
        let hdr = slot.subj & HAS_HDR != 0;
        // file_msg_size from the record length: 44 bytes of framing
        // against 30 (34 with headers) counted.
        let size = u64::from(slot.len).saturating_sub(if hdr { 10 } else { 14 });
        Entry {
            seg,
            off: slot.off,
            len: slot.len,
            ts: slot.ts,
            subject: self.subjects.name(slot.subj & !HAS_HDR),
            size,
        }
    }

    /// The interned copy of `subject`, if a message uses it.
    pub(super) fn intern(&self, subject: &str) -> Option<Arc<str>> {
        self.subjects
            .ids
            .get_key_value(subject)
            .map(|(k, _)| Arc::clone(k))
    }

    /// Indexes `seq` (replacing what was indexed under it).
    pub(super) fn insert(&mut self, seq: u64, e: &Entry) {
        // An append (past the newest run) replaces nothing: no lookup.
        let past_end = self
            .runs
            .last_key_value()
            .is_none_or(|(&k, r)| seq >= k + r.len() as u64);
        if !past_end {
            self.remove(seq);
        }
        // The run it goes into (or is appended to) changes: in memory. (It
        // is never an unloaded one: those are sealed, and a message that
        // replaces one of theirs removed it first, pinning the run.)
        self.pin_at(seq);
        let hdr = if e.size + 10 == u64::from(e.len) {
            HAS_HDR
        } else {
            0
        };
        let id = self.subjects.acquire(&e.subject, seq);
        let slot = Slot {
            off: e.off,
            ts: e.ts,
            len: e.len.max(1),
            subj: id | hdr,
        };
        self.len += 1;
        if let Some((&first, run)) = self.runs.range_mut(..=seq).next_back() {
            let i = (seq - first) as usize;
            let seg = run.seg;
            if let Some(slots) = run.vec_mut() {
                if i < slots.len() {
                    slots[i] = slot;
                    run.hdrs += u64::from(hdr != 0);
                    run.max_ts = run.max_ts.max(slot.ts);
                    run.live += 1;
                    run.head = run.head.min(i);
                    run.add_subject(id, i);
                    return;
                }
                if i == slots.len() && seg == e.seg {
                    slots.push(slot);
                    run.hdrs += u64::from(hdr != 0);
                    run.max_ts = run.max_ts.max(slot.ts);
                    run.live += 1;
                    run.add_subject(id, i);
                    return;
                }
            }
        }
        let newest = self.runs.last_key_value().is_none_or(|(&k, _)| k < seq);
        if newest
            && let Some(mut prev) = self.runs.last_entry()
            && let Some(slots) = prev.get_mut().vec_mut()
        {
            // Sealed: it grows no more.
            slots.shrink_to_fit();
        }
        let mut subjs = IdMap::default();
        subjs.insert(
            id,
            Sum {
                first: 0,
                last: 0,
                count: 1,
            },
        );
        self.runs.insert(
            seq,
            Run {
                seg: e.seg,
                head: 0,
                live: 1,
                body: Body::Loaded(vec![slot]),
                max_ts: slot.ts,
                hdrs: u64::from(hdr != 0),
                subjs,
            },
        );
    }

    /// One past the highest sequence any run covers (0: empty): every
    /// sequence from here on can be appended without replacing anything.
    pub(super) fn end(&self) -> u64 {
        self.runs
            .last_key_value()
            .map_or(0, |(&k, r)| k + r.len() as u64)
    }

    /// Indexes `msgs` as the consecutive sequences `first..` of segment
    /// `seg` at once (a sealed segment replayed from its index file): one
    /// run built with its final size, each subject looked up once, instead
    /// of an [`MsgIndex::insert`] per message. `subjects` is the segment's
    /// subject table, [`BulkMsg::subject`] an index into it. The result is
    /// what inserting them one by one gives (which it falls back to when
    /// `first` is below [`MsgIndex::end`]).
    pub(super) fn append_run(
        &mut self,
        seg: u64,
        first: u64,
        msgs: &[BulkMsg],
        subjects: &[Arc<str>],
    ) {
        if msgs.is_empty() {
            return;
        }
        let empty: Arc<str> = Arc::from("");
        let name = |i: u32| {
            subjects
                .get(i as usize)
                .or(subjects.first())
                .unwrap_or(&empty)
        };
        if first < self.end() {
            for (i, m) in msgs.iter().enumerate() {
                let subject = name(m.subject);
                // insert() reads the header flag back from the size.
                let size = u64::from(m.len).saturating_sub(if m.hdr { 10 } else { 14 });
                self.insert(
                    first + i as u64,
                    &Entry {
                        seg,
                        off: m.off,
                        len: m.len,
                        ts: m.ts,
                        subject: Arc::clone(subject),
                        size,
                    },
                );
            }
            return;
        }
        // Per local subject: where in the run it is.
        let mut sums: Vec<Option<Sum>> = vec![None; subjects.len().max(1)];
        for (i, m) in msgs.iter().enumerate() {
            let local = if (m.subject as usize) < sums.len() {
                m.subject as usize
            } else {
                0
            };
            let i = i as u32;
            match &mut sums[local] {
                Some(s) => {
                    s.last = i;
                    s.count += 1;
                }
                slot @ None => {
                    *slot = Some(Sum {
                        first: i,
                        last: i,
                        count: 1,
                    });
                }
            }
        }
        let mut ids = vec![0u32; sums.len()];
        let mut subjs = IdMap::default();
        for (local, sum) in sums.iter().enumerate() {
            let Some(s) = sum else {
                continue;
            };
            ids[local] = self.add_run_subject(&mut subjs, name(local as u32), first, *s);
        }
        // With a loader the slots stay on disk (the run's summary answers
        // what needs no slot; the loader reads them back when needed).
        let body = if self.lazy.loader.is_some() {
            Body::Unloaded(msgs.len())
        } else {
            Body::Loaded(
                msgs.iter()
                    .map(|m| Slot {
                        off: m.off,
                        ts: m.ts,
                        len: m.len.max(1),
                        subj: ids.get(m.subject as usize).copied().unwrap_or(ids[0])
                            | if m.hdr { HAS_HDR } else { 0 },
                    })
                    .collect(),
            )
        };
        if let Some(mut prev) = self.runs.last_entry()
            && let Some(slots) = prev.get_mut().vec_mut()
        {
            // Sealed: it grows no more.
            slots.shrink_to_fit();
        }
        self.len += msgs.len() as u64;
        self.runs.insert(
            first,
            Run {
                seg,
                head: 0,
                live: msgs.len(),
                body,
                max_ts: msgs.iter().map(|m| m.ts).max().unwrap_or(i64::MIN),
                hdrs: msgs.iter().filter(|m| m.hdr).count() as u64,
                subjs,
            },
        );
    }

    /// Counts `s`, a new run's messages of subject `name` (offsets from
    /// the run's `first` sequence), in the subject table and merges it into
    /// the run's per-subject summary `subjs`; returns the subject's id.
    fn add_run_subject(
        &mut self,
        subjs: &mut IdMap<Sum>,
        name: &Arc<str>,
        first: u64,
        s: Sum,
    ) -> u32 {
        let id = self.subjects.acquire_many(
            name,
            u64::from(s.count),
            first + u64::from(s.first),
            first + u64::from(s.last),
        );
        subjs
            .entry(id)
            .and_modify(|t: &mut Sum| {
                t.first = t.first.min(s.first);
                t.last = t.last.max(s.last);
                t.count += s.count;
            })
            .or_insert(s);
        id
    }

    /// Indexes the messages of a plain sealed segment from its summary
    /// (`seg_index::Plain`: `count` consecutive sequences from `first`, the
    /// newest timestamp `max_ts`, `hdrs` of them with headers, and per
    /// subject its slot span and count, in the order of the segment's
    /// subject table) as an unloaded run, exactly as
    /// [`MsgIndex::append_run`] builds it from the messages. Only with a
    /// loader (the slots are read back through it) and past
    /// [`MsgIndex::end`]; returns `false` (nothing done) otherwise.
    pub(super) fn append_summary(
        &mut self,
        seg: u64,
        first: u64,
        count: usize,
        max_ts: i64,
        hdrs: u64,
        subjects: &[(Arc<str>, u32, u32, u32)],
    ) -> bool {
        if self.lazy.loader.is_none() || count == 0 || first < self.end() {
            return false;
        }
        let mut subjs = IdMap::default();
        for (name, lo, hi, n) in subjects {
            let s = Sum {
                first: *lo,
                last: *hi,
                count: *n,
            };
            self.add_run_subject(&mut subjs, name, first, s);
        }
        if let Some(mut prev) = self.runs.last_entry()
            && let Some(slots) = prev.get_mut().vec_mut()
        {
            // Sealed: it grows no more.
            slots.shrink_to_fit();
        }
        self.len += count as u64;
        self.runs.insert(
            first,
            Run {
                seg,
                head: 0,
                live: count,
                body: Body::Unloaded(count),
                max_ts,
                hdrs,
                subjs,
            },
        );
        true
    }

    /// The first indexed sequence at or after `start` whose message has a
    /// header block. Runs that never held one are skipped unread.
    pub(super) fn next_with_headers(&self, start: u64) -> Option<u64> {
        for (first, run) in self.runs_from(start) {
            if run.hdrs == 0 || run.live == 0 {
                continue;
            }
            let from = start.saturating_sub(first) as usize;
            let slots = self.slots(first, run);
            let lo = from.max(run.head);
            if let Some(i) = slots
                .get(lo..)
                .unwrap_or_default()
                .iter()
                .position(|s| s.len != 0 && s.subj & HAS_HDR != 0)
            {
                return Some(first + (lo + i) as u64);
            }
        }
        None
    }

    /// The entry of `seq`, if indexed.
    pub(super) fn get(&self, seq: u64) -> Option<Entry> {
        let (&first, run) = self.runs.range(..=seq).next_back()?;
        let i = (seq - first) as usize;
        if i >= run.len() {
            return None;
        }
        let slots = self.slots(first, run);
        let slot = slots.get(i)?;
        (slot.len != 0).then(|| self.entry(run.seg, slot))
    }

    #[cfg(test)]
    fn contains(&self, seq: u64) -> bool {
        self.runs
            .range(..=seq)
            .next_back()
            .is_some_and(|(&first, run)| {
                self.slots(first, run)
                    .get((seq - first) as usize)
                    .is_some_and(|s| s.len != 0)
            })
    }

    /// Un-indexes `seq`, returning its entry.
    pub(super) fn remove(&mut self, seq: u64) -> Option<Entry> {
        {
            let (&first, run) = self.runs.range(..=seq).next_back()?;
            if seq - first >= run.len() as u64 {
                return None;
            }
        }
        // A run that loses a message stays in memory from then on.
        if !self.pin_at(seq) {
            return None;
        }
        let (&first, run) = self.runs.range_mut(..=seq).next_back()?;
        let i = (seq - first) as usize;
        let Body::Loaded(slots) = &mut run.body else {
            return None;
        };
        let slot = *slots.get(i)?;
        if slot.len == 0 {
            return None;
        }
        slots[i] = EMPTY;
        run.live -= 1;
        let id = slot_id(&slot);
        Run::drop_subject(&mut run.subjs, id, i);
        let seg = run.seg;
        if run.live == 0 {
            self.runs.remove(&first);
        } else if i == run.head {
            while slots[run.head].len == 0 {
                run.head += 1;
            }
            if run.head >= TRIM_FRONT && run.head * 2 > slots.len() {
                if let Some(mut run) = self.runs.remove(&first) {
                    let cut = run.head;
                    if let Some(slots) = run.vec_mut() {
                        slots.drain(..cut);
                        slots.shrink_to_fit();
                    }
                    run.head = 0;
                    let c = cut as u32;
                    for s in run.subjs.values_mut() {
                        s.first = s.first.saturating_sub(c);
                        s.last = s.last.saturating_sub(c);
                    }
                    self.runs.insert(first + cut as u64, run);
                }
            }
        }
        self.len -= 1;
        let e = self.entry(seg, &slot);
        self.release(id, seq);
        Some(e)
    }

    /// One message of subject `id`, at `seq`, has left the index: its
    /// count drops and, when it was the first or the last, the next one
    /// in is found.
    fn release(&mut self, id: u32, seq: u64) {
        let Some(mut p) = self.subjects.psi(id) else {
            return;
        };
        if p.count <= 1 {
            self.subjects.forget(id);
            return;
        }
        p.count -= 1;
        if p.count == 1 {
            if seq == p.first {
                p.first = p.last;
            } else if seq == p.last {
                p.last = p.first;
            }
        } else {
            if seq == p.first {
                p.first = self.next_of(id, seq + 1, u64::MAX).unwrap_or(p.last);
            }
            if seq == p.last {
                p.last = self.prev_of(id, seq - 1).unwrap_or(p.first);
            }
        }
        self.subjects.set_psi(p);
    }

    /// The run holding `from` (if any) and every later run, with their
    /// first sequence.
    fn runs_from(&self, from: u64) -> impl Iterator<Item = (u64, &Run)> + '_ {
        let before = self
            .runs
            .range(..=from)
            .next_back()
            .filter(|(first, run)| **first + run.len() as u64 > from);
        let after = self.runs.range((Bound::Excluded(from), Bound::Unbounded));
        before.into_iter().chain(after).map(|(&k, run)| (k, run))
    }

    /// The lowest sequence of subject `id` in `from..=limit`.
    fn next_of(&self, id: u32, from: u64, limit: u64) -> Option<u64> {
        for (first, run) in self.runs_from(from) {
            if first > limit {
                break;
            }
            let span = run.span_of(id, from.saturating_sub(first) as usize);
            if span.is_empty() {
                continue;
            }
            let lo = span.start;
            if let Some(i) = self.slots(first, run)[span]
                .iter()
                .position(|s| s.len != 0 && slot_id(s) == id)
            {
                let seq = first + (lo + i) as u64;
                return (seq <= limit).then_some(seq);
            }
        }
        None
    }

    /// The highest sequence of subject `id` that is `<= upto`.
    fn prev_of(&self, id: u32, upto: u64) -> Option<u64> {
        for (&first, run) in self.runs.range(..=upto).rev() {
            let mut span = run.span_of(id, 0);
            span.end = span.end.min((upto - first) as usize + 1);
            if span.start >= span.end {
                continue;
            }
            let lo = span.start;
            if let Some(i) = self.slots(first, run)[span]
                .iter()
                .rposition(|s| s.len != 0 && slot_id(s) == id)
            {
                return Some(first + (lo + i) as u64);
            }
        }
        None
    }

    /// Messages of subject `p` from `start` on.
    fn count_of_from(&self, p: &Psi, start: u64) -> u64 {
        if start <= p.first {
            return p.count;
        }
        if start > p.last {
            return 0;
        }
        let mut n = 0;
        for (first, run) in self.runs_from(start) {
            if first > p.last {
                break;
            }
            if first >= start {
                n += run.subjs.get(&p.id).map_or(0, |s| u64::from(s.count));
                continue;
            }
            let span = run.span_of(p.id, (start - first) as usize);
            if span.is_empty() {
                continue;
            }
            n += self.slots(first, run)[span]
                .iter()
                .filter(|s| s.len != 0 && slot_id(s) == p.id)
                .count() as u64;
        }
        n
    }

    /// The lowest sequence in `start..=limit` on a subject in `set`.
    fn first_in_set_from(&self, start: u64, limit: u64, set: &[bool]) -> Option<u64> {
        for (first, run) in self.runs_from(start) {
            if first > limit {
                break;
            }
            if !run.holds_any(set) {
                continue;
            }
            let lo = (start.saturating_sub(first) as usize).max(run.head);
            if let Some(i) = self.slots(first, run)[lo..]
                .iter()
                .position(|s| s.len != 0 && in_set(set, slot_id(s)))
            {
                let seq = first + (lo + i) as u64;
                return (seq <= limit).then_some(seq);
            }
        }
        None
    }

    /// Messages from `start` on whose subject is in `set`.
    fn count_in_set_from(&self, start: u64, set: &[bool]) -> u64 {
        let mut n = 0;
        for (first, run) in self.runs_from(start) {
            if first >= start {
                n += run
                    .subjs
                    .iter()
                    .filter(|(id, _)| in_set(set, **id))
                    .map(|(_, s)| u64::from(s.count))
                    .sum::<u64>();
                continue;
            }
            let lo = (start - first) as usize;
            n += self.slots(first, run)[lo.max(run.head)..]
                .iter()
                .filter(|s| s.len != 0 && in_set(set, slot_id(s)))
                .count() as u64;
        }
        n
    }

    /// Every sequence on a subject in `set`, ascending, from `from` to
    /// `to`.
    fn seqs_in_set(&self, set: &[bool], from: u64, to: u64) -> Vec<u64> {
        let mut out = Vec::new();
        for (first, run) in self.runs_from(from) {
            if first > to {
                break;
            }
            if !run.holds_any(set) {
                continue;
            }
            let lo = (from.saturating_sub(first) as usize).max(run.head);
            out.extend(
                self.slots(first, run)[lo..]
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.len != 0 && in_set(set, slot_id(s)))
                    .map(|(i, _)| first + (lo + i) as u64)
                    .take_while(|seq| *seq <= to),
            );
        }
        out
    }

    /// The lowest indexed sequence and its timestamp.
    pub(super) fn first(&self) -> Option<(u64, i64)> {
        let (&first, run) = self.runs.first_key_value()?;
        let slot = *self.slots(first, run).get(run.head)?;
        Some((first + run.head as u64, slot.ts))
    }

    /// Indexed sequences `>= start`, ascending, with their segment and
    /// timestamp.
    pub(super) fn iter_from(&self, start: u64) -> impl Iterator<Item = (u64, u64, i64)> + '_ {
        let before = self
            .runs
            .range(..=start)
            .next_back()
            .filter(|(first, run)| **first + run.len() as u64 > start);
        let after = self.runs.range((Bound::Excluded(start), Bound::Unbounded));
        before
            .into_iter()
            .chain(after)
            .flat_map(move |(&first, run)| {
                let from = ((start.max(first) - first) as usize).max(run.head);
                let seg = run.seg;
                // Owns the slots while walking them (an unloaded run's stay
                // readable even if the cache evicts them meanwhile).
                let slots = self.slots(first, run);
                (from..slots.len()).filter_map(move |i| {
                    let s = slots[i];
                    (s.len != 0).then_some((first + i as u64, seg, s.ts))
                })
            })
    }

    /// The lowest indexed sequence whose timestamp is `>= ts`: runs whose
    /// newest timestamp is older are skipped without reading their slots.
    pub(super) fn first_at_or_after(&self, ts: i64) -> Option<u64> {
        for (&first, run) in &self.runs {
            if run.max_ts < ts {
                continue;
            }
            let slots = self.slots(first, run);
            if let Some(i) = slots[run.head..]
                .iter()
                .position(|s| s.len != 0 && s.ts >= ts)
            {
                return Some(first + (run.head + i) as u64);
            }
        }
        None
    }

    /// The lowest indexed sequence `>= start` (a dense run answers without
    /// its slots).
    pub(super) fn next_from(&self, start: u64) -> Option<u64> {
        for (first, run) in self.runs_from(start) {
            let lo = start.max(first + run.head as u64);
            let end = first + run.len() as u64;
            if lo >= end {
                continue;
            }
            if run.dense() {
                return Some(lo);
            }
            let slots = self.slots(first, run);
            if let Some(i) = slots[(lo - first) as usize..]
                .iter()
                .position(|s| s.len != 0)
            {
                return Some(lo + i as u64);
            }
        }
        None
    }

    /// Indexed sequences `>= start`.
    pub(super) fn count_from(&self, start: u64) -> u64 {
        let mut n = 0;
        if let Some((&first, run)) = self.runs.range(..=start).next_back() {
            let end = first + run.len() as u64;
            if start < end {
                let from = start.max(first + run.head as u64);
                n += if run.dense() {
                    end.saturating_sub(from)
                } else {
                    self.slots(first, run)[(from - first) as usize..]
                        .iter()
                        .filter(|s| s.len != 0)
                        .count() as u64
                };
            }
        }
        let later: u64 = self
            .runs
            .range((Bound::Excluded(start), Bound::Unbounded))
            .map(|(_, run)| run.live as u64)
            .sum();
        n + later
    }

    /// Indexed messages per segment.
    pub(super) fn live_per_segment(&self) -> BTreeMap<u64, u64> {
        let mut out = BTreeMap::new();
        for run in self.runs.values() {
            *out.entry(run.seg).or_insert(0) += run.live as u64;
        }
        out
    }

    /// The sequences in `first..=last` that are not indexed, ascending, at
    /// most `limit`. Costs the runs plus the slots of runs with holes, not
    /// the span.
    pub(super) fn gaps(&self, first: u64, last: u64, limit: usize) -> Vec<u64> {
        let mut out = Vec::new();
        if first > last {
            return out;
        }
        let mut next = first;
        // Emits next..below (capped at last); false once the limit is hit.
        let emit = |out: &mut Vec<u64>, next: &mut u64, below: u64| -> bool {
            while *next < below && *next <= last {
                if out.len() >= limit {
                    return false;
                }
                out.push(*next);
                *next += 1;
            }
            true
        };
        for (lo, hi) in self.present_from(first) {
            if lo > last {
                break;
            }
            if !emit(&mut out, &mut next, lo) {
                return out;
            }
            next = next.max(hi.saturating_add(1));
        }
        emit(&mut out, &mut next, last.saturating_add(1));
        out
    }

    /// What is present from `start` on, as ascending spans `lo..=hi`:
    /// a dense run is one span, other runs give one per message.
    fn present_from(&self, start: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        let before = self
            .runs
            .range(..=start)
            .next_back()
            .filter(|(first, run)| **first + run.len() as u64 > start);
        let after = self.runs.range((Bound::Excluded(start), Bound::Unbounded));
        before.into_iter().chain(after).flat_map(
            move |(&first, run)| -> Box<dyn Iterator<Item = (u64, u64)> + '_> {
                let lo = start.max(first + run.head as u64);
                let end = first + run.len() as u64;
                if lo >= end {
                    return Box::new(std::iter::empty());
                }
                if run.dense() {
                    return Box::new(std::iter::once((lo, end - 1)));
                }
                let slots = self.slots(first, run);
                let from = (lo - first) as usize;
                Box::new((from..slots.len()).filter_map(move |i| {
                    let seq = first + i as u64;
                    (slots[i].len != 0).then_some((seq, seq))
                }))
            },
        )
    }
}

impl SubjectQueries for MsgIndex {
    fn first_from(&self, start: u64, filter: &SubjectFilter) -> Option<u64> {
        let mut best: Option<u64> = None;
        let mut straddle = Vec::new();
        for (name, p) in &self.subjects.ids {
            if p.last < start || !filter.matches(name) {
                continue;
            }
            if p.first >= start {
                best = Some(best.map_or(p.first, |b| b.min(p.first)));
            } else {
                straddle.push(p.id);
            }
        }
        if straddle.len() <= PER_SUBJECT_WALKS {
            for id in straddle {
                if let Some(seq) = self.next_of(id, start, best.unwrap_or(u64::MAX)) {
                    best = Some(best.map_or(seq, |b| b.min(seq)));
                }
            }
        } else {
            let mut set = vec![false; self.subjects.names.len()];
            for id in straddle {
                set[id as usize] = true;
            }
            if let Some(seq) = self.first_in_set_from(start, best.unwrap_or(u64::MAX), &set) {
                best = Some(best.map_or(seq, |b| b.min(seq)));
            }
        }
        best
    }

    fn last_of(&self, subject: &str) -> Option<u64> {
        self.subjects.ids.get(subject).map(|p| p.last)
    }

    fn first_of(&self, subject: &str) -> Option<u64> {
        self.subjects.ids.get(subject).map(|p| p.first)
    }

    fn count(&self, subject: &str) -> u64 {
        self.subjects.ids.get(subject).map_or(0, |p| p.count)
    }

    fn seqs(&self, subject: &str) -> Vec<u64> {
        let Some(p) = self.subjects.ids.get(subject) else {
            return Vec::new();
        };
        let mut set = vec![false; self.subjects.names.len()];
        set[p.id as usize] = true;
        self.seqs_in_set(&set, p.first, p.last)
    }

    fn counts(&self, filter: &str) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .subjects
            .ids
            .iter()
            .filter(|(s, _)| filter.is_empty() || subject::matches(filter, s))
            .map(|(s, p)| (s.to_string(), p.count))
            .collect();
        out.sort();
        out
    }

    fn last_per_subject(&self, filter: &SubjectFilter) -> Vec<u64> {
        let mut out: Vec<u64> = self
            .subjects
            .ids
            .iter()
            .filter(|(s, _)| filter.matches(s))
            .map(|(_, p)| p.last)
            .collect();
        out.sort_unstable();
        out
    }

    fn pending_from(&self, start: u64, filter: &SubjectFilter) -> u64 {
        let mut n = 0;
        let mut straddle = Vec::new();
        for (name, p) in &self.subjects.ids {
            if p.last < start || !filter.matches(name) {
                continue;
            }
            if p.first >= start {
                n += p.count;
            } else {
                straddle.push(*p);
            }
        }
        if straddle.len() <= PER_SUBJECT_WALKS {
            n + straddle
                .iter()
                .map(|p| self.count_of_from(p, start))
                .sum::<u64>()
        } else {
            let mut set = vec![false; self.subjects.names.len()];
            for p in straddle {
                set[p.id as usize] = true;
            }
            n + self.count_in_set_from(start, &set)
        }
    }

    fn num_subjects(&self) -> u64 {
        self.subjects.ids.len() as u64
    }

    fn seqs_matching(&self, filter: &str) -> Vec<u64> {
        let (set, found) = self.subjects.matching(|s| subject::matches(filter, s));
        let (Some(from), Some(to)) = (
            found.iter().map(|p| p.first).min(),
            found.iter().map(|p| p.last).max(),
        ) else {
            return Vec::new();
        };
        self.seqs_in_set(&set, from, to)
    }

    fn up_to_per_subject(&self, bound: u64) -> Vec<(Arc<str>, Vec<u64>)> {
        let mut by_id: HashMap<u32, Vec<u64>> = HashMap::new();
        for (first, run) in self.runs_from(0) {
            if first > bound {
                break;
            }
            for (i, s) in self.slots(first, run).iter().enumerate().skip(run.head) {
                let seq = first + i as u64;
                if seq > bound {
                    break;
                }
                if s.len != 0 {
                    by_id.entry(slot_id(s)).or_default().push(seq);
                }
            }
        }
        by_id
            .into_iter()
            .map(|(id, seqs)| (self.subjects.name(id), seqs))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::subjects::SubjectIndex;
    use super::*;

    fn entry(seg: u64, seq: u64, subject: &Arc<str>, hdr: bool) -> Entry {
        let len = 44 + subject.len() as u32 + (seq % 7) as u32 + if hdr { 12 } else { 0 };
        Entry {
            seg,
            off: seq * 100,
            len,
            ts: seq as i64 * 10,
            subject: Arc::clone(subject),
            size: u64::from(len) - if hdr { 10 } else { 14 },
        }
    }

    fn same(a: &Entry, b: &Entry) -> bool {
        (a.seg, a.off, a.len, a.ts, &*a.subject, a.size)
            == (b.seg, b.off, b.len, b.ts, &*b.subject, b.size)
    }

    /// Random inserts (mostly appends, sometimes gaps, new segments and
    /// re-inserts) and removals, checked against a plain map after every
    /// step: every query the store asks agrees, the per-subject ones (first,
    /// last, count, next from a position, pending, purge sets) with the
    /// memory store's per-subject sequence sets.
    #[test]
    fn the_compact_index_answers_as_a_map_would() {
        let subjects: Vec<Arc<str>> = [
            "a", "b.c", "dd", "b.e", "f.g.h", "k.1", "k.2", "k.3", "k.4", "k.5", "k.6", "k.7",
            "k.8", "k.9", "k.10",
        ]
        .iter()
        .map(|s| Arc::from(*s))
        .collect();
        let filters: Vec<SubjectFilter> = vec![
            SubjectFilter::All,
            SubjectFilter::Any(vec!["a".into()]),
            SubjectFilter::Any(vec!["b.*".into()]),
            SubjectFilter::Any(vec!["k.*".into(), "dd".into()]),
            SubjectFilter::Any(vec![">".into()]),
        ];
        for seed in 0..40u64 {
            let mut rng = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let mut next = || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            let mut idx = MsgIndex::default();
            let mut map: BTreeMap<u64, Entry> = BTreeMap::new();
            let mut sets = SubjectIndex::default();
            let n_subj = 1 + (seed % subjects.len() as u64);
            let mut seq = 1u64;
            let mut seg = 1u64;
            for _ in 0..3_000 {
                match next() % 10 {
                    0..=5 => {
                        match next() % 20 {
                            0 => seq += next() % 50,
                            1 => seg = seq,
                            _ => {}
                        }
                        let e = entry(
                            seg,
                            seq,
                            &subjects[(next() % n_subj) as usize],
                            next() % 2 == 0,
                        );
                        idx.insert(seq, &e);
                        sets.entry(Arc::clone(&e.subject)).or_default().insert(seq);
                        map.insert(seq, e);
                        seq += 1;
                    }
                    6..=8 if !map.is_empty() => {
                        // Mostly the oldest (limits), sometimes any.
                        let keys: Vec<u64> = map.keys().copied().collect();
                        let victim = if next() % 2 == 0 {
                            keys[0]
                        } else {
                            keys[(next() % keys.len() as u64) as usize]
                        };
                        let got = idx.remove(victim).expect("present");
                        unset(&mut sets, &got.subject, victim);
                        assert!(same(&got, &map.remove(&victim).expect("in map")));
                        assert!(idx.remove(victim).is_none());
                    }
                    _ if !map.is_empty() => {
                        // Re-index an existing one (recovery's duplicate).
                        let keys: Vec<u64> = map.keys().copied().collect();
                        let k = keys[(next() % keys.len() as u64) as usize];
                        let e = entry(map[&k].seg, k, &subjects[0], false);
                        idx.insert(k, &e);
                        unset(&mut sets, &map[&k].subject, k);
                        sets.entry(Arc::clone(&e.subject)).or_default().insert(k);
                        map.insert(k, e);
                    }
                    _ => {}
                }
                assert_eq!(idx.len(), map.len() as u64);
                assert_eq!(idx.first(), map.first_key_value().map(|(k, e)| (*k, e.ts)));
                let probe = next() % (seq + 2);
                assert_eq!(idx.contains(probe), map.contains_key(&probe));
                match (idx.get(probe), map.get(&probe)) {
                    (Some(a), Some(b)) => assert!(same(&a, b), "seq {probe}"),
                    (None, None) => {}
                    (a, b) => panic!("seq {probe}: {a:?} vs {b:?}"),
                }
                assert_eq!(
                    idx.next_from(probe),
                    map.range(probe..).next().map(|(k, _)| *k)
                );
                assert_eq!(idx.count_from(probe), map.range(probe..).count() as u64);
                let first = map.keys().next().copied().unwrap_or(seq);
                assert_eq!(
                    idx.gaps(first, seq, 64),
                    crate::jetstream::store::gaps(&map, first, seq, 64)
                );
                if next() % 64 == 0 {
                    same_subject_answers(&idx, &sets, probe, &subjects, &filters);
                }
            }
            for probe in [0, seq / 3, seq / 2, seq] {
                same_subject_answers(&idx, &sets, probe, &subjects, &filters);
            }
            let mut a = idx.up_to_per_subject(seq / 2);
            let mut b = sets.up_to_per_subject(seq / 2);
            a.sort();
            b.sort();
            assert_eq!(a, b);
            let listed: Vec<(u64, u64, i64)> = idx.iter_from(0).collect();
            let want: Vec<(u64, u64, i64)> = map.iter().map(|(k, e)| (*k, e.seg, e.ts)).collect();
            assert_eq!(listed, want);
            let mut per_seg = BTreeMap::new();
            for e in map.values() {
                *per_seg.entry(e.seg).or_insert(0u64) += 1;
            }
            assert_eq!(idx.live_per_segment(), per_seg);
        }
    }

    fn unset(sets: &mut SubjectIndex, subject: &Arc<str>, seq: u64) {
        if let Some(s) = sets.get_mut(subject) {
            s.remove(&seq);
            if s.is_empty() {
                sets.remove(subject);
            }
        }
    }

    /// `bulk` and `one` hold the same message at `probe` (or neither does),
    /// count the same from it, and find the same first message at or after
    /// the time just before it (`label` tells the phase in a failure).
    fn same_at(bulk: &MsgIndex, one: &MsgIndex, probe: u64, label: &str) {
        match (bulk.get(probe), one.get(probe)) {
            (Some(a), Some(b)) => assert!(same(&a, &b), "seq {probe}{label}"),
            (None, None) => {}
            (a, b) => panic!("seq {probe}{label}: {a:?} vs {b:?}"),
        }
        assert_eq!(bulk.count_from(probe), one.count_from(probe));
        let t = probe as i64 * 10 - 5;
        assert_eq!(
            bulk.first_at_or_after(t),
            one.iter_from(0)
                .find(|(_, _, ts)| *ts >= t)
                .map(|(s, _, _)| s),
            "time {t}{label}"
        );
    }

    fn same_subject_answers(
        idx: &MsgIndex,
        sets: &SubjectIndex,
        probe: u64,
        subjects: &[Arc<str>],
        filters: &[SubjectFilter],
    ) {
        assert_eq!(idx.num_subjects(), sets.num_subjects());
        for s in subjects {
            assert_eq!(idx.first_of(s), sets.first_of(s), "first of {s}");
            assert_eq!(idx.last_of(s), sets.last_of(s), "last of {s}");
            assert_eq!(idx.count(s), sets.count(s), "count of {s}");
        }
        let s = &subjects[(probe % subjects.len() as u64) as usize];
        assert_eq!(idx.seqs(s), sets.seqs(s), "seqs of {s}");
        for f in filters {
            assert_eq!(
                idx.first_from(probe, f),
                sets.first_from(probe, f),
                "{f:?} from {probe}"
            );
            assert_eq!(
                idx.pending_from(probe, f),
                sets.pending_from(probe, f),
                "{f:?} from {probe}"
            );
            assert_eq!(idx.last_per_subject(f), sets.last_per_subject(f));
        }
        for f in ["b.*", "k.*", "a", ">", "nothing"] {
            assert_eq!(idx.seqs_matching(f), sets.seqs_matching(f), "{f}");
            assert_eq!(idx.last_matching(f), sets.last_matching(f), "{f}");
            assert_eq!(idx.counts(f), sets.counts(f), "{f}");
        }
    }

    /// A sealed segment's messages indexed at once (`append_run`, what
    /// `open` does with a plain segment's index file) answer every query
    /// as the same messages inserted one by one, also after removals and
    /// with later appends, and when the run does not start past the end
    /// (the fallback). With a loader (as the file store opens) the runs
    /// are left unloaded and read back on demand through a cache of one
    /// slot (tests), so every load evicts the others: the answers are the
    /// same before any removal (all unloaded), after removals (those runs
    /// pinned), and for a walk during which other runs are loaded.
    #[test]
    fn a_run_appended_at_once_answers_as_one_by_one_inserts() {
        for lazy in [false, true] {
            runs_appended_at_once_answer_as_one_by_one_inserts(lazy);
        }
    }

    type Segs = Arc<std::sync::Mutex<HashMap<u64, Vec<(u64, BulkMsg)>>>>;

    fn loader_of(segs: &Segs, table: &[Arc<str>]) -> Arc<RunLoader> {
        let (segs, table) = (Arc::clone(segs), table.to_vec());
        Arc::new(move |seg| {
            let msgs = segs.lock().ok()?.get(&seg)?.clone();
            Some(LoadedRun {
                subjects: table.clone(),
                msgs,
            })
        })
    }

    fn runs_appended_at_once_answer_as_one_by_one_inserts(lazy: bool) {
        let table: Vec<Arc<str>> = ["", "a", "b.c", "k.1", "k.2"]
            .iter()
            .map(|s| Arc::from(*s))
            .collect();
        let filters: Vec<SubjectFilter> = vec![
            SubjectFilter::All,
            SubjectFilter::Any(vec!["a".into()]),
            SubjectFilter::Any(vec!["k.*".into(), "b.c".into()]),
        ];
        for seed in 0..20u64 {
            let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut next = || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            let mut bulk = MsgIndex::default();
            let segs: Segs = Arc::default();
            if lazy {
                bulk.set_loader(loader_of(&segs, &table));
            }
            let mut one = MsgIndex::default();
            let mut sets = SubjectIndex::default();
            let mut seq = 1 + next() % 5;
            for seg in 0..6u64 {
                // Every fifth seed: the last segment overlaps the one
                // before (recovery's duplicates), which append_run leaves
                // to one-by-one inserts.
                let first = if seed % 5 == 0 && seg == 5 {
                    seq.saturating_sub(2).max(1)
                } else {
                    seq
                };
                let n = 1 + next() % 300;
                let mut msgs = Vec::new();
                for i in 0..n {
                    // Index 9 is out of the table: read as entry 0 ("").
                    let local = match next() % 11 {
                        10 => 9,
                        k => 1 + (k % 4) as u32,
                    };
                    let hdr = next() % 3 == 0;
                    let name = table.get(local as usize).unwrap_or(&table[0]);
                    let e = entry(seg, first + i, name, hdr);
                    msgs.push(BulkMsg {
                        off: e.off,
                        ts: e.ts,
                        len: e.len,
                        subject: local,
                        hdr,
                    });
                    if let Some(old) = one.get(first + i) {
                        unset(&mut sets, &old.subject, first + i);
                    }
                    one.insert(first + i, &e);
                    sets.entry(Arc::clone(name)).or_default().insert(first + i);
                }
                if let Ok(mut segs) = segs.lock() {
                    segs.insert(
                        seg,
                        msgs.iter()
                            .enumerate()
                            .map(|(i, m)| (first + i as u64, *m))
                            .collect(),
                    );
                }
                bulk.append_run(seg, first, &msgs, &table);
                seq = first + n + next() % 3;
            }
            if lazy {
                // (An overlapping last segment pins the one before.)
                assert!(bulk.unloaded_runs() >= 4, "seed {seed}");
            }
            // Before any removal (every run unloaded when lazy).
            let walked: Vec<(u64, u64, i64)> = bulk
                .iter_from(0)
                .inspect(|(s, _, _)| {
                    // Loads (and evicts) other runs during the walk.
                    let _ = bulk.get(seq.saturating_sub(1 + s % 7));
                    let _ = bulk.get(s / 2);
                })
                .collect();
            assert_eq!(walked, one.iter_from(0).collect::<Vec<_>>());
            for probe in 0..=seq {
                same_at(&bulk, &one, probe, "");
                assert_eq!(bulk.next_from(probe), one.next_from(probe));
                if probe % 13 == 0 {
                    same_subject_answers(&bulk, &sets, probe, &table[1..], &filters);
                }
            }
            assert_eq!(bulk.gaps(1, seq, 1000), one.gaps(1, seq, 1000));
            assert_eq!(bulk.first(), one.first());
            if lazy {
                let (loads, held) = bulk.cache_stats();
                assert!(loads > 6, "seed {seed}: {loads} loads");
                assert!(held <= 300, "seed {seed}: the cache holds {held} slots");
            }
            // Removals (oldest and random), then appends to a new segment.
            for _ in 0..200 {
                let Some(victim) = one.next_from(next() % seq) else {
                    continue;
                };
                let a = one.remove(victim).expect("present");
                let b = bulk.remove(victim).expect("present in bulk");
                assert!(same(&a, &b), "seq {victim}");
                unset(&mut sets, &a.subject, victim);
            }
            for i in 0..50 {
                let e = entry(99, seq + i, &table[1 + (i % 4) as usize], false);
                one.insert(seq + i, &e);
                bulk.insert(seq + i, &e);
                sets.entry(Arc::clone(&e.subject))
                    .or_default()
                    .insert(seq + i);
            }
            let end = seq + 50;
            assert_eq!(bulk.len(), one.len());
            assert_eq!(bulk.first(), one.first());
            assert_eq!(bulk.end(), one.end());
            for probe in 0..=end + 1 {
                same_at(&bulk, &one, probe, " after removals");
                if probe % 17 == 0 {
                    same_subject_answers(&bulk, &sets, probe, &table[1..], &filters);
                }
            }
            assert_eq!(bulk.live_per_segment(), one.live_per_segment());
            assert_eq!(bulk.gaps(1, end, 1000), one.gaps(1, end, 1000));
        }
    }

    #[test]
    fn subjects_are_released_and_their_ids_reused() {
        let mut idx = MsgIndex::default();
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        idx.insert(1, &entry(1, 1, &a, false));
        idx.insert(2, &entry(1, 2, &b, true));
        assert!(idx.remove(1).is_some());
        assert_eq!(idx.subjects.ids.len(), 1, "a is gone");
        idx.insert(3, &entry(1, 3, &Arc::from("c"), false));
        assert_eq!(idx.subjects.names.len(), 2, "c took a's id");
        assert_eq!(&*idx.get(3).expect("3").subject, "c");
        assert_eq!(&*idx.get(2).expect("2").subject, "b");
    }

    #[test]
    fn a_run_emptied_from_the_front_gives_its_memory_back() {
        let mut idx = MsgIndex::default();
        let a: Arc<str> = Arc::from("a");
        for seq in 1..=10_000 {
            idx.insert(seq, &entry(1, seq, &a, false));
        }
        for seq in 1..=9_000 {
            assert!(idx.remove(seq).is_some());
        }
        let run = idx.runs.values().next().expect("one run");
        assert!(run.len() < 5_000, "{} slots kept", run.len());
        assert_eq!(idx.first().map(|(s, _)| s), Some(9_001));
        assert_eq!(
            idx.first_of("a"),
            Some(9_001),
            "the subject's first moved with the cut"
        );
        assert_eq!(
            idx.pending_from(9_500, &SubjectFilter::Any(vec!["a".into()])),
            501
        );
        assert_eq!(idx.seqs("a").len(), 1_000);
        assert_eq!(idx.count_from(0), 1_000);
        assert!(idx.gaps(9_001, 10_000, 10).is_empty());
    }
}
