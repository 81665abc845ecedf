//! The memory store (storage `memory`): messages in a B-tree by sequence,
//! with a per-subject index. Nothing survives a restart; every append is
//! "durable" at once.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use super::subjects::SubjectQueries;
use super::{Purge, Store, StoreError, StoreState, StoredMsg, SubjectFilter, SyncJob};

/// In-memory message storage.
#[derive(Debug, Default)]
pub struct MemStore {
    msgs: BTreeMap<u64, StoredMsg>,
    by_subject: super::subjects::SubjectIndex,
    bytes: u64,
    last_seq: u64,
    last_ts: i64,
    /// Lowest sequence that may still be present (after purges, first_seq).
    floor: u64,
}

impl MemStore {
    /// An empty store whose first sequence will be 1.
    pub fn new() -> Self {
        MemStore {
            floor: 1,
            ..MemStore::default()
        }
    }

    fn drop_msg(&mut self, seq: u64) -> bool {
        let Some(msg) = self.msgs.remove(&seq) else {
            return false;
        };
        self.bytes = self.bytes.saturating_sub(msg.size());
        if let Some(set) = self.by_subject.get_mut(&msg.subject) {
            set.remove(&seq);
            if set.is_empty() {
                self.by_subject.remove(&msg.subject);
            }
        }
        true
    }

    fn first_seq(&self) -> u64 {
        self.msgs
            .keys()
            .next()
            .copied()
            .unwrap_or(self.last_seq + 1)
            .max(self.floor)
    }
}

impl Store for MemStore {
    fn append(
        &mut self,
        subject: &str,
        hdr: &[u8],
        data: &[u8],
        ts: i64,
    ) -> Result<u64, StoreError> {
        let seq = self.last_seq + 1;
        let subject: Arc<str> = match self.by_subject.get_key_value(subject) {
            Some((k, _)) => Arc::clone(k),
            None => subject.into(),
        };
        let msg = StoredMsg {
            seq,
            subject: Arc::clone(&subject),
            hdr: Bytes::copy_from_slice(hdr),
            data: Bytes::copy_from_slice(data),
            ts,
        };
        self.bytes += msg.size();
        self.msgs.insert(seq, msg);
        self.by_subject.entry(subject).or_default().insert(seq);
        self.last_seq = seq;
        self.last_ts = ts;
        Ok(seq)
    }

    fn skip_to(&mut self, seq: u64, _ts: i64) -> Result<(), StoreError> {
        self.last_seq = self.last_seq.max(seq.saturating_sub(1));
        Ok(())
    }

    fn take_sync(&mut self) -> Option<SyncJob> {
        None
    }

    fn synced(&mut self, _upto: u64, _result: std::io::Result<()>) {}

    fn durable_seq(&self) -> u64 {
        self.last_seq
    }

    fn poisoned(&self) -> Option<String> {
        None
    }

    fn get(&mut self, seq: u64) -> Result<Option<StoredMsg>, StoreError> {
        Ok(self.msgs.get(&seq).cloned())
    }

    fn next_from(
        &mut self,
        start: u64,
        filter: &SubjectFilter,
    ) -> Result<Option<StoredMsg>, StoreError> {
        match filter {
            SubjectFilter::All => Ok(self.msgs.range(start..).next().map(|(_, m)| m.clone())),
            SubjectFilter::Any(_) => Ok(self
                .by_subject
                .first_from(start, filter)
                .and_then(|s| self.msgs.get(&s).cloned())),
        }
    }

    fn last_by_subject(&mut self, filter: &str) -> Result<Option<StoredMsg>, StoreError> {
        Ok(self
            .by_subject
            .last_matching(filter)
            .and_then(|s| self.msgs.get(&s).cloned()))
    }

    fn subject_index(&self) -> &dyn super::subjects::SubjectQueries {
        &self.by_subject
    }

    fn num_pending(&self, start: u64, filter: &SubjectFilter) -> u64 {
        match filter {
            SubjectFilter::All => super::count_from(&self.msgs, start),
            SubjectFilter::Any(_) => self.by_subject.pending_from(start, filter),
        }
    }

    fn seq_for_time(&self, ts: i64) -> u64 {
        self.msgs
            .values()
            .find(|m| m.ts >= ts)
            .map_or(self.last_seq + 1, |m| m.seq)
    }

    fn remove(&mut self, seq: u64, _erase: bool) -> Result<bool, StoreError> {
        let removed = self.drop_msg(seq);
        if removed && self.msgs.is_empty() {
            self.floor = self.last_seq + 1;
        }
        Ok(removed)
    }

    fn purge(&mut self, purge: &Purge) -> Result<u64, StoreError> {
        let victims = purge.victims(self.msgs.keys().copied(), &self.by_subject);
        let mut n = 0;
        for seq in victims {
            if self.drop_msg(seq) {
                n += 1;
            }
        }
        self.last_seq = purge.last_after(self.last_seq);
        self.floor = purge.floor_after(self.floor, self.last_seq, self.msgs.is_empty());
        Ok(n)
    }

    fn bytes(&self) -> u64 {
        self.bytes
    }

    fn state(&self) -> StoreState {
        let first_seq = self.first_seq();
        let (first_ts, msgs) = (
            self.msgs.get(&first_seq).map_or(0, |m| m.ts),
            self.msgs.len() as u64,
        );
        let span = (self.last_seq + 1).saturating_sub(first_seq);
        StoreState {
            msgs,
            bytes: self.bytes,
            first_seq,
            first_ts,
            last_seq: self.last_seq,
            last_ts: self.last_ts,
            num_deleted: span.saturating_sub(msgs),
            num_subjects: self.by_subject.len() as u64,
        }
    }

    fn deleted_up_to(&self, limit: usize) -> Vec<u64> {
        super::gaps(&self.msgs, self.first_seq(), self.last_seq, limit)
    }

    fn close(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn destroy(&mut self) -> Result<(), StoreError> {
        self.msgs.clear();
        self.by_subject.clear();
        self.bytes = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(subjects: &[&str]) -> MemStore {
        let mut s = MemStore::new();
        for (i, subj) in subjects.iter().enumerate() {
            s.append(subj, b"", format!("m{i}").as_bytes(), i as i64 + 1)
                .expect("append");
        }
        s
    }

    #[test]
    fn sequences_start_at_one_and_survive_purge() {
        let mut s = store_with(&["a", "b", "a"]);
        assert_eq!(s.state().last_seq, 3);
        assert_eq!(s.purge(&Purge::default()).expect("purge"), 3);
        let st = s.state();
        assert_eq!((st.msgs, st.first_seq, st.last_seq), (0, 4, 3));
        assert_eq!(s.append("a", b"", b"x", 9).expect("append"), 4);
    }

    #[test]
    fn filtered_reads_use_the_subject_index() {
        let mut s = store_with(&["x.a", "y.b", "x.c", "y.d"]);
        let f = SubjectFilter::Any(vec!["y.*".into()]);
        assert_eq!(s.next_from(1, &f).expect("read").map(|m| m.seq), Some(2));
        assert_eq!(s.next_from(3, &f).expect("read").map(|m| m.seq), Some(4));
        assert_eq!(s.num_pending(1, &f), 2);
        assert_eq!(
            s.last_by_subject("x.>").expect("read").map(|m| m.seq),
            Some(3)
        );
    }

    #[test]
    fn purge_keep_and_seq_and_interior_deletes() {
        let mut s = store_with(&["a", "a", "a", "b", "a"]);
        assert_eq!(
            s.purge(&Purge {
                filter: Some("a".into()),
                keep: Some(1),
                ..Purge::default()
            })
            .expect("purge"),
            3
        );
        assert_eq!(s.subject_seqs("a"), vec![5]);
        assert_eq!(s.state().first_seq, 4);
        assert!(s.deleted().is_empty());
        assert!(s.remove(4, false).expect("remove"));
        assert_eq!(s.state().first_seq, 5);
        let mut s = store_with(&["a", "b", "c"]);
        assert!(s.remove(2, false).expect("remove"));
        assert_eq!(s.deleted(), vec![2]);
        assert_eq!(s.state().num_deleted, 1);
    }
}
