//! Reply subjects that may still be answered, with a deadline and a cap:
//! the bookkeeping behind `allow_responses` (which replies a connection
//! may publish to) and service imports (where a `_R_.` reply goes back).
//!
//! Inserting, looking up and forgetting cost O(1) amortized however many
//! replies are open: expired entries leave from the front of an insertion
//! queue, and past `cap` open entries the oldest is dropped (its request
//! can then no longer be answered through this table). It knows nothing
//! of connections or accounts.

use std::collections::VecDeque;
use std::time::Instant;

use rustc_hash::FxHashMap;

/// Open replies by subject, each with a deadline (`None`: until used or
/// pushed out by the cap) and a value.
pub(crate) struct ReplyTable<V> {
    entries: FxHashMap<Box<[u8]>, Entry<V>>,
    /// Insertion order, for expiry and the cap; an entry replaced or
    /// removed since leaves a stale item here, recognized by its stamp.
    order: VecDeque<(Option<Instant>, u64, Box<[u8]>)>,
    next_stamp: u64,
    cap: usize,
}

struct Entry<V> {
    expires: Option<Instant>,
    stamp: u64,
    value: V,
}

impl<V> ReplyTable<V> {
    /// An empty table holding at most `cap` open replies.
    pub(crate) fn new(cap: usize) -> Self {
        ReplyTable {
            entries: FxHashMap::default(),
            order: VecDeque::new(),
            next_stamp: 0,
            cap: cap.max(1),
        }
    }

    /// Open replies (expired ones not yet swept included).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Opens (or reopens) `subject` until `expires`.
    pub(crate) fn insert(&mut self, subject: &[u8], expires: Option<Instant>, value: V) {
        let now = Instant::now();
        self.sweep(now);
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.entries.insert(
            subject.into(),
            Entry {
                expires,
                stamp,
                value,
            },
        );
        self.order.push_back((expires, stamp, subject.into()));
        while self.entries.len() > self.cap {
            self.pop_oldest();
        }
        // Stale queue items (replaced or removed entries) never outnumber
        // live ones by much.
        if self.order.len() > 2 * self.entries.len() + 64 {
            let entries = &self.entries;
            self.order
                .retain(|(_, stamp, key)| entries.get(key).is_some_and(|e| e.stamp == *stamp));
        }
    }

    /// The value of an open, unexpired reply, to update it; an expired one
    /// is forgotten and `None` returned.
    pub(crate) fn get_mut(&mut self, subject: &[u8]) -> Option<&mut V> {
        let now = Instant::now();
        let expired = self.entries.get(subject)?.expires.is_some_and(|e| e <= now);
        if expired {
            self.entries.remove(subject);
            return None;
        }
        self.entries.get_mut(subject).map(|e| &mut e.value)
    }

    /// Forgets `subject`.
    pub(crate) fn remove(&mut self, subject: &[u8]) {
        self.entries.remove(subject);
    }

    /// Drops expired entries from the front of the queue.
    fn sweep(&mut self, now: Instant) {
        while let Some((expires, _, _)) = self.order.front() {
            if !expires.is_some_and(|e| e <= now) {
                break;
            }
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((_, stamp, key)) = self.order.pop_front()
            && self.entries.get(&key).is_some_and(|e| e.stamp == stamp)
        {
            self.entries.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_cap_bounds_open_replies_and_drops_the_oldest() {
        let mut t = ReplyTable::new(1000);
        for i in 0..5000u32 {
            t.insert(format!("_INBOX.{i}").as_bytes(), None, i);
            assert!(t.len() <= 1000);
        }
        assert!(t.get_mut(b"_INBOX.0").is_none(), "the oldest went first");
        assert_eq!(t.get_mut(b"_INBOX.4999").copied(), Some(4999));
        assert!(t.order.len() <= 2 * t.len() + 64);
    }

    #[test]
    fn expired_replies_leave_without_a_full_scan_and_are_never_answered() {
        let mut t = ReplyTable::new(1 << 20);
        let past = Instant::now() - Duration::from_secs(1);
        for i in 0..3000u32 {
            t.insert(format!("old.{i}").as_bytes(), Some(past), i);
        }
        // Each insert swept the expired ones before it.
        assert!(t.len() <= 1, "{}", t.len());
        assert!(t.get_mut(b"old.2999").is_none(), "expired: not answerable");
        let later = Instant::now() + Duration::from_secs(60);
        t.insert(b"new", Some(later), 7);
        assert_eq!(t.get_mut(b"new").copied(), Some(7));
    }

    #[test]
    fn reopening_and_removing_keep_queue_and_map_consistent() {
        let mut t = ReplyTable::new(3);
        for _ in 0..10 {
            t.insert(b"a", None, 1);
        }
        t.insert(b"b", None, 2);
        t.insert(b"c", None, 3);
        t.remove(b"b");
        t.insert(b"d", None, 4);
        t.insert(b"e", None, 5);
        assert_eq!(t.len(), 3);
        assert!(t.get_mut(b"a").is_none(), "a was the oldest live entry");
        assert_eq!(t.get_mut(b"e").copied(), Some(5));
    }
}
