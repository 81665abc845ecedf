//! Message storage for one stream: the [`Store`] trait and its two
//! implementations, [`mem::MemStore`] (storage `memory`) and
//! [`file::FileStore`] (storage `file`, the crash-safe segmented log), which
//! answer the per-subject queries of [`subjects::SubjectQueries`].
//!
//! A store only stores: sequence numbers, subjects, headers, payloads and
//! timestamps. Stream semantics (limits policy, dedup, expected-sequence
//! checks, retention by interest) live in `jetstream::stream`, which calls
//! these primitives under the stream's lock.
//!
//! Durability contract: [`Store::append`] makes a record readable at once
//! but durable only after the [`SyncJob`] returned by a later
//! [`Store::take_sync`] has run and its result was reported back with
//! [`Store::synced`]. Every change (append, remove, purge) raises the
//! store's [`Store::write_mark`]; the stream confirms a publish, a message
//! delete or a purge only when the store's [`Store::durable_mark`] has
//! reached the mark the change left, and lets consumers see messages up to
//! [`Store::durable_seq`]. A failed sync poisons the store: every later
//! `append` fails with [`StoreError::Poisoned`].

pub mod file;
pub mod mem;
pub mod metered;
pub mod nowait;
#[cfg(test)]
pub mod sim;
pub mod storage;
pub mod subjects;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::subject;

/// One stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMsg {
    /// Stream sequence (first is 1).
    pub seq: u64,
    /// The subject it was published to.
    pub subject: Arc<str>,
    /// NATS header block (`NATS/1.0\r\n...\r\n\r\n`), empty when none.
    pub hdr: Bytes,
    /// Payload.
    pub data: Bytes,
    /// Store time, Unix nanoseconds.
    pub ts: i64,
}

impl StoredMsg {
    /// Bytes this message counts against max_bytes (nats-server's formula
    /// for the memory store: subject + headers + payload + 16).
    pub fn size(&self) -> u64 {
        msg_size(self.subject.len(), self.hdr.len(), self.data.len())
    }
}

/// Accounting size of a message (see [`StoredMsg::size`]).
pub fn msg_size(subject: usize, hdr: usize, data: usize) -> u64 {
    (subject + hdr + data + 16) as u64
}

/// Accounting size of a message in the file store: nats-server's file
/// store counts its record framing (30 bytes, 4 more with headers), and
/// stream info and max_bytes show that number.
pub fn file_msg_size(subject: usize, hdr: usize, data: usize) -> u64 {
    let hdr = if hdr == 0 { 0 } else { hdr + 4 };
    (22 + subject + hdr + data + 8) as u64
}

/// Counts and bounds of a store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreState {
    /// Messages present.
    pub msgs: u64,
    /// Sum of [`StoredMsg::size`] of the messages present.
    pub bytes: u64,
    /// Lowest sequence present (`last_seq + 1` when empty).
    pub first_seq: u64,
    /// Its timestamp (0 when empty).
    pub first_ts: i64,
    /// Highest sequence ever assigned (survives purges and deletes).
    pub last_seq: u64,
    /// Its timestamp (0 when none).
    pub last_ts: i64,
    /// Sequences between first and last that are gone (interior deletes).
    pub num_deleted: u64,
    /// Distinct subjects present.
    pub num_subjects: u64,
}

/// Which messages a read considers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SubjectFilter {
    /// Every message.
    #[default]
    All,
    /// Messages whose subject matches any of these NATS filters
    /// (`*` and `>` wildcards).
    Any(Vec<String>),
}

impl SubjectFilter {
    /// From a consumer's `filter_subject` / `filter_subjects`, where empty
    /// or `>` means all.
    pub fn from_filters<I: IntoIterator<Item = S>, S: AsRef<str>>(filters: I) -> Self {
        let list: Vec<String> = filters
            .into_iter()
            .map(|f| f.as_ref().to_owned())
            .filter(|f| !f.is_empty())
            .collect();
        if list.is_empty() || list.iter().any(|f| f == ">") {
            SubjectFilter::All
        } else {
            SubjectFilter::Any(list)
        }
    }

    /// True when `subject` (a literal) passes.
    pub fn matches(&self, subject: &str) -> bool {
        match self {
            SubjectFilter::All => true,
            SubjectFilter::Any(list) => list.iter().any(|f| subject::matches(f, subject)),
        }
    }
}

/// The sequences in `first..=last` that `index` lacks, ascending, at most
/// `limit`: walks the gaps between its keys, so the cost follows what is
/// stored and what is returned, not the span.
pub fn gaps<V>(index: &BTreeMap<u64, V>, first: u64, last: u64, limit: usize) -> Vec<u64> {
    let mut out = Vec::new();
    if first > last {
        return out;
    }
    let mut next = first;
    let present = index.range(first..=last).map(|(k, _)| *k);
    for key in present.chain(std::iter::once(last.saturating_add(1))) {
        while next < key {
            if out.len() >= limit {
                return out;
            }
            out.push(next);
            next += 1;
        }
        next = key.saturating_add(1);
    }
    out
}

/// Keys `>= start` in a sequence index, without walking it when the
/// sequences are dense (the common case) and from the shorter end otherwise.
pub fn count_from<V>(index: &std::collections::BTreeMap<u64, V>, start: u64) -> u64 {
    let (Some((&first, _)), Some((&last, _))) = (index.first_key_value(), index.last_key_value())
    else {
        return 0;
    };
    let len = index.len() as u64;
    if start <= first {
        return len;
    }
    if start > last {
        return 0;
    }
    if len == last - first + 1 {
        return last - start + 1;
    }
    if last - start < start - first {
        index.range(start..).count() as u64
    } else {
        len - index.range(..start).count() as u64
    }
}

/// A purge request (STREAM.PURGE body): everything matching `filter`,
/// or only below sequence `seq` (exclusive), or all but the newest `keep`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Purge {
    /// Only subjects matching this filter.
    pub filter: Option<String>,
    /// Only sequences below this.
    pub seq: Option<u64>,
    /// Keep this many of the newest (matching) messages.
    pub keep: Option<u64>,
}

impl Purge {
    /// The subject filter that restricts the purge (`None`: every subject).
    pub fn subject_filter(&self) -> Option<&str> {
        self.filter
            .as_deref()
            .filter(|f| !f.is_empty() && *f != subject::TAIL)
    }

    /// The sequences it removes, ascending: out of `all` (every stored
    /// sequence, ascending), or out of the subjects matching its filter.
    pub fn victims(
        &self,
        all: impl Iterator<Item = u64>,
        by_subject: &dyn subjects::SubjectQueries,
    ) -> Vec<u64> {
        let mut victims: Vec<u64> = match self.subject_filter() {
            None => all.collect(),
            Some(f) => by_subject.seqs_matching(f),
        };
        if let Some(below) = self.seq {
            victims.retain(|s| *s < below);
        }
        if let Some(keep) = self.keep {
            let keep = usize::try_from(keep).unwrap_or(usize::MAX);
            let n = victims.len().saturating_sub(keep);
            victims.truncate(n);
        }
        victims
    }

    /// The store's last sequence after the purge: a whole purge up to a
    /// sequence past the last one moves the last sequence up to just below
    /// it, so the next message gets it (nats-server's compact; also how a
    /// stream's `first_seq` is set).
    pub fn last_after(&self, last_seq: u64) -> u64 {
        let whole = self.subject_filter().is_none() && self.keep.is_none();
        match self.seq {
            Some(below) if whole && below > last_seq + 1 => below - 1,
            _ => last_seq,
        }
    }

    /// The store's first sequence after the purge, from the one before
    /// (`floor`), its last sequence, and whether any message is left: a
    /// purge up to a sequence moves the floor there even past gaps.
    pub fn floor_after(&self, floor: u64, last_seq: u64, empty: bool) -> u64 {
        let whole = self.subject_filter().is_none() && self.keep.is_none();
        match self.seq {
            Some(below) if whole && empty => below.max(floor),
            _ if empty => last_seq + 1,
            Some(below) if whole => floor.max(below),
            _ => floor,
        }
    }
}

/// One message of [`Store::append_batch`].
#[derive(Debug, Clone, Copy)]
pub struct BatchMsg<'a> {
    /// Subject.
    pub subject: &'a str,
    /// NATS header block (may be empty).
    pub hdr: &'a [u8],
    /// Payload.
    pub data: &'a [u8],
}

/// A record the file store found damaged when opening (reported in logs and /jsz).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptRecord {
    /// Segment file name.
    pub segment: String,
    /// Byte offset of the damaged record in it.
    pub offset: u64,
    /// Bytes skipped.
    pub len: u64,
    /// What was wrong.
    pub reason: String,
}

/// What opening a file store found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Messages recovered.
    pub msgs: u64,
    /// Bytes cut from a torn tail (an incomplete last record).
    pub truncated_bytes: u64,
    /// Sequences the cut bytes may have held: skipped, never assigned.
    pub seqs_skipped: u64,
    /// Damaged records skipped in the middle of the log.
    pub corrupt: Vec<CorruptRecord>,
    /// True when an index file was missing or bad and was rebuilt from the log.
    pub index_rebuilt: bool,
}

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An earlier write or fsync failed; the store refuses to acknowledge
    /// anything until the stream is reopened.
    #[error("store is poisoned after a failed write: {0}")]
    Poisoned(String),
    /// Disk I/O failed.
    #[error("storage I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// The store's files are damaged beyond what recovery can repair.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Over the store's byte or message capacity.
    #[error("insufficient storage resources available")]
    Full,
}

impl StoreError {
    /// A read refused because it would have waited on the disk (see
    /// [`nowait`]): not a failure, the caller retries where it may wait.
    pub fn would_block(&self) -> bool {
        matches!(self, StoreError::Io(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

/// Work that makes appended records durable; runs without the stream lock.
pub struct SyncJob {
    /// Highest sequence this job makes durable.
    pub upto: u64,
    /// Writes buffered bytes (if any) and fsyncs; run on a blocking thread.
    pub run: Box<dyn FnOnce() -> std::io::Result<()> + Send>,
}

impl std::fmt::Debug for SyncJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncJob").field("upto", &self.upto).finish()
    }
}

/// Storage of one stream's messages.
///
/// All methods are called with the stream's lock held, so they take
/// `&mut self` freely; none may block on anything but local disk I/O.
pub trait Store: Send {
    /// Appends a message with the next sequence and returns it. Readable at
    /// once; durable after a sync (see the module docs).
    fn append(
        &mut self,
        subject: &str,
        hdr: &[u8],
        data: &[u8],
        ts: i64,
    ) -> Result<u64, StoreError>;

    /// Appends `msgs` with consecutive sequences as one unit and returns
    /// the first: after a crash or a power loss either all of them are
    /// there or none (the file store brackets them, see
    /// `docs/file-store.md`). A store without crash recovery appends them
    /// one by one.
    fn append_batch(&mut self, msgs: &[BatchMsg<'_>], ts: i64) -> Result<u64, StoreError> {
        let first = self.state().last_seq + 1;
        for m in msgs {
            self.append(m.subject, m.hdr, m.data, ts)?;
        }
        Ok(first)
    }

    /// Makes `seq` the next sequence appended; the sequences skipped read
    /// as deleted (a mirror skipping what its origin no longer has). A
    /// store with crash recovery skips them in one record, so a crash
    /// leaves all of them skipped or none (never a placeholder message).
    /// This fallback, for stores without crash recovery, appends and
    /// removes a placeholder per sequence.
    fn skip_to(&mut self, seq: u64, ts: i64) -> Result<(), StoreError> {
        while self.state().last_seq + 1 < seq {
            let skipped = self.append("", b"", b"", ts)?;
            self.remove(skipped, false)?;
        }
        Ok(())
    }

    /// Hands out the work to make everything appended so far durable, or
    /// `None` when there is nothing to sync (or the store needs no sync).
    fn take_sync(&mut self) -> Option<SyncJob>;

    /// Reports the outcome of a [`SyncJob`]: on success everything up to
    /// `upto` is durable; on failure the store is poisoned.
    fn synced(&mut self, upto: u64, result: std::io::Result<()>);

    /// Highest sequence known durable (memory store: the last appended).
    fn durable_seq(&self) -> u64;

    /// A number that grows with every change the store takes (a message,
    /// a delete, a purge); a change is durable once [`Store::durable_mark`]
    /// reaches the value this had right after it. Stores that need no sync
    /// keep both at 0.
    fn write_mark(&self) -> u64 {
        0
    }

    /// The highest write mark known durable (see [`Store::write_mark`]).
    fn durable_mark(&self) -> u64 {
        self.write_mark()
    }

    /// Why the store is poisoned, if it is.
    fn poisoned(&self) -> Option<String>;

    /// The message with this sequence, if present.
    fn get(&mut self, seq: u64) -> Result<Option<StoredMsg>, StoreError>;

    /// The first message with sequence `>= start` passing `filter`.
    fn next_from(
        &mut self,
        start: u64,
        filter: &SubjectFilter,
    ) -> Result<Option<StoredMsg>, StoreError>;

    /// The first message with sequence `>= start` that has a header block
    /// (the only ones that can carry a message id: the duplicate table is
    /// rebuilt from these). Stores that know which messages have headers
    /// answer without reading the others.
    fn next_with_headers_from(&mut self, start: u64) -> Result<Option<StoredMsg>, StoreError> {
        let mut at = start;
        while let Some(m) = self.next_from(at, &SubjectFilter::All)? {
            if !m.hdr.is_empty() {
                return Ok(Some(m));
            }
            at = m.seq + 1;
        }
        Ok(None)
    }

    /// The newest message whose subject matches `filter` (may have wildcards).
    fn last_by_subject(&mut self, filter: &str) -> Result<Option<StoredMsg>, StoreError>;

    /// The per-subject index the subject queries below are answered from.
    fn subject_index(&self) -> &dyn subjects::SubjectQueries;

    /// The subject of message `seq`, if stored. Stores that keep subjects
    /// in memory answer without reading the message (acks of interest and
    /// work-queue streams ask it on the async workers).
    fn subject_of(&mut self, seq: u64) -> Result<Option<Arc<str>>, StoreError> {
        Ok(self.get(seq)?.map(|m| m.subject))
    }

    /// Sequence of the newest message on this literal subject.
    fn last_seq_of_subject(&self, subject: &str) -> Option<u64> {
        self.subject_index().last_of(subject)
    }

    /// Sequence of the oldest message on this literal subject.
    fn first_seq_of_subject(&self, subject: &str) -> Option<u64> {
        self.subject_index().first_of(subject)
    }

    /// Number of messages on this literal subject.
    fn subject_count(&self, subject: &str) -> u64 {
        self.subject_index().count(subject)
    }

    /// Sequences present for one literal subject, oldest first.
    fn subject_seqs(&self, subject: &str) -> Vec<u64> {
        self.subject_index().seqs(subject)
    }

    /// For each subject matching `filter`: its message count (sorted by subject).
    fn subjects(&self, filter: &str) -> Vec<(String, u64)> {
        self.subject_index().counts(filter)
    }

    /// For deliver policy last_per_subject: the newest sequence of every
    /// subject passing `filter`, ascending.
    fn last_seqs_per_subject(&self, filter: &SubjectFilter) -> Vec<u64> {
        self.subject_index().last_per_subject(filter)
    }

    /// Messages with sequence `>= start` passing `filter`.
    fn num_pending(&self, start: u64, filter: &SubjectFilter) -> u64;

    /// The first sequence whose timestamp is `>= ts` (`last_seq + 1` if none).
    fn seq_for_time(&self, ts: i64) -> u64;

    /// Removes one message (`erase` also overwrites its bytes on disk).
    /// Returns false when it was not present.
    fn remove(&mut self, seq: u64, erase: bool) -> Result<bool, StoreError>;

    /// Removes messages per [`Purge`]; returns how many.
    fn purge(&mut self, purge: &Purge) -> Result<u64, StoreError>;

    /// Counts and bounds.
    fn state(&self) -> StoreState;

    /// The state's `bytes` alone (cheap: resource accounting asks after
    /// every change).
    fn bytes(&self) -> u64 {
        self.state().bytes
    }

    /// Interior deleted sequences, ascending, at most `limit` of them (for
    /// STREAM.INFO deleted_details; the state's `num_deleted` is exact).
    /// Costs what is stored plus what is returned, never the sequence span.
    fn deleted_up_to(&self, limit: usize) -> Vec<u64>;

    /// Every interior deleted sequence, ascending (tests and small stores).
    fn deleted(&self) -> Vec<u64> {
        self.deleted_up_to(usize::MAX)
    }

    /// Damaged records found when the store was opened (file store only).
    fn corrupt_records(&self) -> Vec<CorruptRecord> {
        Vec::new()
    }

    /// Flushes everything and syncs; called at shutdown. Errors are logged by the caller.
    fn close(&mut self) -> Result<(), StoreError>;

    /// Deletes the store's data for good (stream delete).
    fn destroy(&mut self) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_the_missing_sequences_up_to_the_limit() {
        let index: BTreeMap<u64, ()> = [2u64, 3, 7, 10].into_iter().map(|k| (k, ())).collect();
        assert_eq!(gaps(&index, 1, 10, usize::MAX), [1, 4, 5, 6, 8, 9]);
        assert_eq!(gaps(&index, 2, 12, usize::MAX), [4, 5, 6, 8, 9, 11, 12]);
        assert_eq!(gaps(&index, 1, 10, 2), [1, 4]);
        assert!(gaps(&index, 2, 3, usize::MAX).is_empty());
        let empty: BTreeMap<u64, ()> = BTreeMap::new();
        assert_eq!(gaps(&empty, 5, 7, usize::MAX), [5, 6, 7]);
        assert!(gaps(&empty, 1, 0, usize::MAX).is_empty(), "an empty span");
    }

    /// A stream whose first and last messages are far apart holds a huge
    /// span of removed sequences: listing them is capped, counting is not
    /// (issue #12 item 10).
    #[test]
    fn deleted_details_are_capped_while_num_deleted_stays_exact() {
        let mut s = mem::MemStore::new();
        s.append("keep", b"", b"first", 1).expect("append");
        for i in 0..250_000 {
            s.append("gone", b"", b"", i).expect("append");
        }
        s.append("keep", b"", b"last", 2).expect("append");
        let removed = s
            .purge(&Purge {
                filter: Some("gone".into()),
                ..Purge::default()
            })
            .expect("purge");
        assert_eq!(removed, 250_000);
        assert_eq!(s.state().num_deleted, 250_000);
        let listed = s.deleted_up_to(100_000);
        assert_eq!(listed.len(), 100_000);
        assert_eq!(listed.first(), Some(&2));
        assert_eq!(listed.last(), Some(&100_001));
    }

    #[test]
    fn count_from_matches_a_walk_for_dense_and_sparse_indexes() {
        let dense: std::collections::BTreeMap<u64, ()> = (5..=20).map(|s| (s, ())).collect();
        let mut sparse = dense.clone();
        for s in [6, 11, 12, 19] {
            sparse.remove(&s);
        }
        for index in [&dense, &sparse] {
            for start in 0..25 {
                assert_eq!(
                    count_from(index, start),
                    index.range(start..).count() as u64,
                    "start {start}"
                );
            }
        }
        assert_eq!(
            count_from(&std::collections::BTreeMap::<u64, ()>::new(), 3),
            0
        );
    }
}
