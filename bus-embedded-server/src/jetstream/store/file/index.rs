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
//! Must not do I/O: it only answers where things are.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use super::Entry;

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

/// Consecutive sequences of one segment.
#[derive(Debug)]
struct Run {
    seg: u64,
    /// Slots before this are all empty.
    head: usize,
    /// Non-empty slots.
    live: usize,
    slots: Vec<Slot>,
}

impl Run {
    fn dense(&self) -> bool {
        self.live == self.slots.len() - self.head
    }
}

/// Subject -> id, with how many indexed messages use it.
#[derive(Debug, Default)]
struct Subjects {
    ids: HashMap<Arc<str>, (u32, u64)>,
    names: Vec<Option<Arc<str>>>,
    free: Vec<u32>,
}

impl Subjects {
    fn acquire(&mut self, subject: &Arc<str>) -> u32 {
        if let Some((id, n)) = self.ids.get_mut(subject) {
            *n += 1;
            return *id;
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
        self.ids.insert(Arc::clone(subject), (id, 1));
        id
    }

    fn name(&self, id: u32) -> Arc<str> {
        match self.names.get(id as usize) {
            Some(Some(name)) => Arc::clone(name),
            // Unreachable while the index is consistent; an empty subject
            // is a wrong answer, not a crash.
            _ => Arc::from(""),
        }
    }

    fn release(&mut self, id: u32) {
        let Some(Some(name)) = self.names.get(id as usize) else {
            return;
        };
        let gone = match self.ids.get_mut(name) {
            Some((_, n)) => {
                *n -= 1;
                *n == 0
            }
            None => false,
        };
        if gone {
            self.ids.remove(&Arc::clone(name));
            self.names[id as usize] = None;
            self.free.push(id);
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
        *self = MsgIndex::default();
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

    /// Indexes `seq` (replacing what was indexed under it).
    pub(super) fn insert(&mut self, seq: u64, e: &Entry) {
        self.remove(seq);
        let hdr = if e.size + 10 == u64::from(e.len) {
            HAS_HDR
        } else {
            0
        };
        let slot = Slot {
            off: e.off,
            ts: e.ts,
            len: e.len.max(1),
            subj: self.subjects.acquire(&e.subject) | hdr,
        };
        self.len += 1;
        if let Some((&first, run)) = self.runs.range_mut(..=seq).next_back() {
            let i = (seq - first) as usize;
            if i < run.slots.len() {
                run.slots[i] = slot;
                run.live += 1;
                run.head = run.head.min(i);
                return;
            }
            if i == run.slots.len() && run.seg == e.seg {
                run.slots.push(slot);
                run.live += 1;
                return;
            }
        }
        let newest = self.runs.last_key_value().is_none_or(|(&k, _)| k < seq);
        if newest && let Some(mut prev) = self.runs.last_entry() {
            let prev = prev.get_mut();
            // Sealed: it grows no more.
            prev.slots.shrink_to_fit();
        }
        self.runs.insert(
            seq,
            Run {
                seg: e.seg,
                head: 0,
                live: 1,
                slots: vec![slot],
            },
        );
    }

    /// The entry of `seq`, if indexed.
    pub(super) fn get(&self, seq: u64) -> Option<Entry> {
        let (&first, run) = self.runs.range(..=seq).next_back()?;
        let slot = run.slots.get((seq - first) as usize)?;
        (slot.len != 0).then(|| self.entry(run.seg, slot))
    }

    #[cfg(test)]
    fn contains(&self, seq: u64) -> bool {
        self.runs
            .range(..=seq)
            .next_back()
            .and_then(|(&first, run)| run.slots.get((seq - first) as usize))
            .is_some_and(|s| s.len != 0)
    }

    /// Un-indexes `seq`, returning its entry.
    pub(super) fn remove(&mut self, seq: u64) -> Option<Entry> {
        let (&first, run) = self.runs.range_mut(..=seq).next_back()?;
        let i = (seq - first) as usize;
        let slot = *run.slots.get(i)?;
        if slot.len == 0 {
            return None;
        }
        run.slots[i] = EMPTY;
        run.live -= 1;
        let seg = run.seg;
        if run.live == 0 {
            self.runs.remove(&first);
        } else if i == run.head {
            while run.slots[run.head].len == 0 {
                run.head += 1;
            }
            if run.head >= TRIM_FRONT && run.head * 2 > run.slots.len() {
                if let Some(mut run) = self.runs.remove(&first) {
                    let cut = run.head;
                    run.slots.drain(..cut);
                    run.slots.shrink_to_fit();
                    run.head = 0;
                    self.runs.insert(first + cut as u64, run);
                }
            }
        }
        self.len -= 1;
        let e = self.entry(seg, &slot);
        self.subjects.release(slot.subj & !HAS_HDR);
        Some(e)
    }

    /// The lowest indexed sequence and its timestamp.
    pub(super) fn first(&self) -> Option<(u64, i64)> {
        let (&first, run) = self.runs.first_key_value()?;
        let slot = run.slots.get(run.head)?;
        Some((first + run.head as u64, slot.ts))
    }

    /// Indexed sequences `>= start`, ascending, with their segment and
    /// timestamp.
    pub(super) fn iter_from(&self, start: u64) -> impl Iterator<Item = (u64, u64, i64)> + '_ {
        let before = self
            .runs
            .range(..=start)
            .next_back()
            .filter(|(first, run)| **first + run.slots.len() as u64 > start);
        let after = self.runs.range((Bound::Excluded(start), Bound::Unbounded));
        before
            .into_iter()
            .chain(after)
            .flat_map(move |(&first, run)| {
                let from = (start.max(first) - first) as usize;
                run.slots[from.max(run.head)..]
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.len != 0)
                    .map(move |(i, s)| (first + (from.max(run.head) + i) as u64, run.seg, s.ts))
            })
    }

    /// The lowest indexed sequence `>= start`.
    pub(super) fn next_from(&self, start: u64) -> Option<u64> {
        self.iter_from(start).next().map(|(seq, _, _)| seq)
    }

    /// Indexed sequences `>= start`.
    pub(super) fn count_from(&self, start: u64) -> u64 {
        let mut n = 0;
        if let Some((&first, run)) = self.runs.range(..=start).next_back() {
            let end = first + run.slots.len() as u64;
            if start < end {
                let from = start.max(first + run.head as u64);
                n += if run.dense() {
                    end - from
                } else {
                    run.slots[(from - first) as usize..]
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
            .filter(|(first, run)| **first + run.slots.len() as u64 > start);
        let after = self.runs.range((Bound::Excluded(start), Bound::Unbounded));
        before.into_iter().chain(after).flat_map(
            move |(&first, run)| -> Box<dyn Iterator<Item = (u64, u64)> + '_> {
                let lo = start.max(first + run.head as u64);
                let end = first + run.slots.len() as u64;
                if lo >= end {
                    return Box::new(std::iter::empty());
                }
                if run.dense() {
                    return Box::new(std::iter::once((lo, end - 1)));
                }
                Box::new(
                    run.slots[(lo - first) as usize..]
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| s.len != 0)
                        .map(move |(i, _)| (lo + i as u64, lo + i as u64)),
                )
            },
        )
    }
}

#[cfg(test)]
mod tests {
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
    /// step: every query the store asks agrees.
    #[test]
    fn the_compact_index_answers_as_a_map_would() {
        let subjects: Vec<Arc<str>> = ["a", "b.c", "dd"].iter().map(|s| Arc::from(*s)).collect();
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
                        let e = entry(seg, seq, &subjects[(next() % 3) as usize], next() % 2 == 0);
                        idx.insert(seq, &e);
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
                        assert!(same(&got, &map.remove(&victim).expect("in map")));
                        assert!(idx.remove(victim).is_none());
                    }
                    _ if !map.is_empty() => {
                        // Re-index an existing one (recovery's duplicate).
                        let keys: Vec<u64> = map.keys().copied().collect();
                        let k = keys[(next() % keys.len() as u64) as usize];
                        let e = entry(map[&k].seg, k, &subjects[0], false);
                        idx.insert(k, &e);
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
            }
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
        assert!(run.slots.len() < 5_000, "{} slots kept", run.slots.len());
        assert_eq!(idx.first().map(|(s, _)| s), Some(9_001));
        assert_eq!(idx.count_from(0), 1_000);
        assert!(idx.gaps(9_001, 10_000, 10).is_empty());
    }
}
