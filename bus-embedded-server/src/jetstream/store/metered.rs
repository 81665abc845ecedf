//! Storage accounting: [`Metered`] wraps a stream's [`Store`] and keeps
//! the bytes it holds charged to shared [`Meter`]s (the account's and the
//! server's, for the stream's storage type), so resource limits can be
//! checked on every publish without asking every stream.
//!
//! Only the calls that change what is stored (append, batch append,
//! remove, purge, destroy) touch the meters: one relaxed atomic add per
//! meter per change. Everything else is forwarded unchanged.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{
    BatchMsg, CorruptRecord, Purge, Store, StoreError, StoreState, StoredMsg, SubjectFilter,
    SyncJob, subjects,
};

/// Bytes in use (message accounting sizes, as `max_bytes` counts them),
/// shared by every store charged to it.
#[derive(Debug, Default)]
pub struct Meter {
    bytes: AtomicU64,
}

impl Meter {
    /// Bytes currently charged.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Adds `bytes` as if a store had stored them (tests).
    #[cfg(test)]
    pub(crate) fn charge_for_test(&self, bytes: u64) {
        self.charge(0, bytes);
    }

    fn charge(&self, from: u64, to: u64) {
        if to > from {
            self.bytes.fetch_add(to - from, Ordering::Relaxed);
        } else if from > to {
            // Never below zero, whatever the order of concurrent changes.
            let _ = self
                .bytes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                    Some(b.saturating_sub(from - to))
                });
        }
    }
}

/// A store whose stored bytes are charged to `meters`.
pub struct Metered {
    inner: Box<dyn Store>,
    meters: Vec<Arc<Meter>>,
    /// What is charged now (the inner store's bytes after the last change).
    charged: u64,
}

impl Metered {
    /// Wraps `inner`, charging what it already holds (a recovered store).
    pub fn new(inner: Box<dyn Store>, meters: Vec<Arc<Meter>>) -> Metered {
        let charged = inner.bytes();
        for m in &meters {
            m.charge(0, charged);
        }
        Metered {
            inner,
            meters,
            charged,
        }
    }

    fn recharge(&mut self) {
        let now = self.inner.bytes();
        if now != self.charged {
            for m in &self.meters {
                m.charge(self.charged, now);
            }
            self.charged = now;
        }
    }
}

impl Drop for Metered {
    /// A stream that goes away (deleted, or the server stops) no longer
    /// holds its bytes.
    fn drop(&mut self) {
        for m in &self.meters {
            m.charge(self.charged, 0);
        }
    }
}

impl Store for Metered {
    fn append(
        &mut self,
        subject: &str,
        hdr: &[u8],
        data: &[u8],
        ts: i64,
    ) -> Result<u64, StoreError> {
        let r = self.inner.append(subject, hdr, data, ts);
        self.recharge();
        r
    }

    fn append_batch(&mut self, msgs: &[BatchMsg<'_>], ts: i64) -> Result<u64, StoreError> {
        let r = self.inner.append_batch(msgs, ts);
        self.recharge();
        r
    }

    fn skip_to(&mut self, seq: u64, ts: i64) -> Result<(), StoreError> {
        let r = self.inner.skip_to(seq, ts);
        self.recharge();
        r
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

    fn write_mark(&self) -> u64 {
        self.inner.write_mark()
    }

    fn durable_mark(&self) -> u64 {
        self.inner.durable_mark()
    }

    fn poisoned(&self) -> Option<String> {
        self.inner.poisoned()
    }

    fn get(&mut self, seq: u64) -> Result<Option<StoredMsg>, StoreError> {
        self.inner.get(seq)
    }

    fn next_from(
        &mut self,
        start: u64,
        filter: &SubjectFilter,
    ) -> Result<Option<StoredMsg>, StoreError> {
        self.inner.next_from(start, filter)
    }

    fn next_with_headers_from(&mut self, start: u64) -> Result<Option<StoredMsg>, StoreError> {
        self.inner.next_with_headers_from(start)
    }

    fn last_by_subject(&mut self, filter: &str) -> Result<Option<StoredMsg>, StoreError> {
        self.inner.last_by_subject(filter)
    }

    fn subject_index(&self) -> &dyn subjects::SubjectQueries {
        self.inner.subject_index()
    }

    fn subject_of(&mut self, seq: u64) -> Result<Option<Arc<str>>, StoreError> {
        self.inner.subject_of(seq)
    }

    fn last_seq_of_subject(&self, subject: &str) -> Option<u64> {
        self.inner.last_seq_of_subject(subject)
    }

    fn first_seq_of_subject(&self, subject: &str) -> Option<u64> {
        self.inner.first_seq_of_subject(subject)
    }

    fn subject_count(&self, subject: &str) -> u64 {
        self.inner.subject_count(subject)
    }

    fn subject_seqs(&self, subject: &str) -> Vec<u64> {
        self.inner.subject_seqs(subject)
    }

    fn subjects(&self, filter: &str) -> Vec<(String, u64)> {
        self.inner.subjects(filter)
    }

    fn last_seqs_per_subject(&self, filter: &SubjectFilter) -> Vec<u64> {
        self.inner.last_seqs_per_subject(filter)
    }

    fn num_pending(&self, start: u64, filter: &SubjectFilter) -> u64 {
        self.inner.num_pending(start, filter)
    }

    fn seq_for_time(&self, ts: i64) -> u64 {
        self.inner.seq_for_time(ts)
    }

    fn remove(&mut self, seq: u64, erase: bool) -> Result<bool, StoreError> {
        let r = self.inner.remove(seq, erase);
        self.recharge();
        r
    }

    fn purge(&mut self, purge: &Purge) -> Result<u64, StoreError> {
        let r = self.inner.purge(purge);
        self.recharge();
        r
    }

    fn state(&self) -> StoreState {
        self.inner.state()
    }

    fn bytes(&self) -> u64 {
        self.charged
    }

    fn deleted_up_to(&self, limit: usize) -> Vec<u64> {
        self.inner.deleted_up_to(limit)
    }

    fn deleted(&self) -> Vec<u64> {
        self.inner.deleted()
    }

    fn corrupt_records(&self) -> Vec<CorruptRecord> {
        self.inner.corrupt_records()
    }

    fn close(&mut self) -> Result<(), StoreError> {
        self.inner.close()
    }

    fn destroy(&mut self) -> Result<(), StoreError> {
        let r = self.inner.destroy();
        for m in &self.meters {
            m.charge(self.charged, 0);
        }
        self.charged = 0;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jetstream::store::mem::MemStore;

    #[test]
    fn every_change_to_what_is_stored_is_charged_to_every_meter() {
        let account = Arc::new(Meter::default());
        let server = Arc::new(Meter::default());
        let mut other = MemStore::new();
        other.append("o", b"", b"0123456789", 1).unwrap();
        // A second store charged to the server only: the server meter is
        // the sum of both.
        let _other = Metered::new(Box::new(other), vec![Arc::clone(&server)]);
        assert_eq!(server.bytes(), 27);

        let mut s = Metered::new(
            Box::new(MemStore::new()),
            vec![Arc::clone(&account), Arc::clone(&server)],
        );
        s.append("a", b"", b"xxxx", 1).unwrap();
        s.append("a", b"", b"yyyy", 2).unwrap();
        assert_eq!(account.bytes(), 42, "two messages of 1 + 4 + 16");
        assert_eq!(server.bytes(), 42 + 27);
        let batch = [BatchMsg {
            subject: "b",
            hdr: b"",
            data: b"z",
        }; 2];
        s.append_batch(&batch, 3).unwrap();
        assert_eq!(account.bytes(), 42 + 36);
        assert!(s.remove(1, false).unwrap());
        assert_eq!(account.bytes(), 21 + 36);
        s.purge(&Purge::default()).unwrap();
        assert_eq!(account.bytes(), 0);
        assert_eq!(server.bytes(), 27);
        s.append("a", b"", b"xxxx", 4).unwrap();
        drop(s);
        assert_eq!(account.bytes(), 0, "a dropped stream holds nothing");
        assert_eq!(server.bytes(), 27);
    }

    #[test]
    fn a_store_opened_with_data_is_charged_at_once() {
        let meter = Arc::new(Meter::default());
        let mut inner = MemStore::new();
        inner.append("a", b"h", b"d", 1).unwrap();
        let mut s = Metered::new(Box::new(inner), vec![Arc::clone(&meter)]);
        assert_eq!(meter.bytes(), 19);
        s.destroy().unwrap();
        assert_eq!(meter.bytes(), 0);
    }
}
