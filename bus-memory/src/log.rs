//! The ordered event log: stored entries, positions, byte accounting and the
//! duplicate-detection window. Retention decisions that also touch consumers
//! live in the `state` module; this module only knows the log itself.
//!
//! Invariants:
//! - positions are assigned `last + 1`, never reused, and the entries in
//!   `entries` have contiguous positions (retention only removes from the
//!   front), so a position is found by index arithmetic;
//! - `bytes` is the sum of `size` over `entries`;
//! - `stored_at` never decreases along the log (clamped to the previous
//!   event's), so a start time is found by binary search.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use bus_core::{StartPosition, StoredEvent, StreamInfo};
use tokio::time::Instant;

/// One stored event.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The event as readers see it.
    pub event: StoredEvent,
    /// When it was stored, on the monotonic clock (for `max_age`).
    pub stored_mono: Instant,
    /// Its encoded envelope size in bytes.
    pub size: u64,
}

impl Entry {
    pub fn position(&self) -> u64 {
        self.event.position
    }
}

/// `now + d`, or `None` when that is not representable (treated as "never").
pub(crate) fn after(now: Instant, d: Duration) -> Option<Instant> {
    now.checked_add(d)
}

/// `now + d`, saturating to a far future instant when not representable.
pub(crate) fn after_saturating(now: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(30 * 365 * 86_400);
    after(now, d).or_else(|| after(now, FAR)).unwrap_or(now)
}

/// The stored events and the duplicate window.
#[derive(Debug)]
pub(crate) struct Log {
    entries: VecDeque<Entry>,
    /// Position of the newest event ever stored (0 = never written).
    last: u64,
    /// Sum of the sizes of `entries`.
    bytes: u64,
    /// `stored_at` of the newest event ever stored.
    last_stored_at: SystemTime,
    /// Event id -> (position, when recorded), for ids inside the window.
    dedup: HashMap<String, (u64, Instant)>,
    /// The same ids in recording order, to expire them cheaply.
    dedup_order: VecDeque<(Instant, String)>,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            entries: VecDeque::new(),
            last: 0,
            bytes: 0,
            last_stored_at: SystemTime::UNIX_EPOCH,
            dedup: HashMap::new(),
            dedup_order: VecDeque::new(),
        }
    }
}

impl Log {
    /// Position of the oldest stored event, or `last + 1` when empty.
    pub fn first(&self) -> u64 {
        self.entries.front().map_or(self.last + 1, Entry::position)
    }

    /// Position of the newest event ever stored (0 = never written).
    pub fn last(&self) -> u64 {
        self.last
    }

    pub fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The stored entry at `position`, if it is still in the log.
    pub fn get(&self, position: u64) -> Option<&Entry> {
        let first = self.first();
        if position < first || position > self.last {
            return None;
        }
        let index = usize::try_from(position - first).ok()?;
        self.entries.get(index)
    }

    /// Stream info with the JetStream conventions for an empty stream.
    pub fn info(&self) -> StreamInfo {
        StreamInfo {
            messages: self.len(),
            bytes: self.bytes,
            first_position: if self.last == 0 { 0 } else { self.first() },
            last_position: self.last,
        }
    }

    /// Appends an event and returns its entry (position `last + 1`).
    pub fn push(
        &mut self,
        subject: String,
        envelope: bus_core::EventEnvelope,
        size: usize,
        now: Instant,
    ) -> &Entry {
        self.last += 1;
        let stored_at = SystemTime::now().max(self.last_stored_at);
        self.last_stored_at = stored_at;
        let size = size as u64;
        self.bytes += size;
        self.entries.push_back(Entry {
            event: StoredEvent {
                position: self.last,
                subject,
                stored_at,
                envelope,
            },
            stored_mono: now,
            size,
        });
        let index = self.entries.len() - 1;
        &self.entries[index]
    }

    /// Removes the oldest entry.
    pub fn pop_front(&mut self) -> Option<Entry> {
        let entry = self.entries.pop_front()?;
        self.bytes = self.bytes.saturating_sub(entry.size);
        Some(entry)
    }

    /// True when the oldest entry is older than `max_age` (zero = never).
    pub fn front_expired(&self, now: Instant, max_age: Duration) -> bool {
        if max_age.is_zero() {
            return false;
        }
        self.entries
            .front()
            .and_then(|e| after(e.stored_mono, max_age))
            .is_some_and(|expiry| expiry <= now)
    }

    /// Forgets event ids recorded `window` or longer ago.
    pub fn expire_dedup(&mut self, now: Instant, window: Duration) {
        while let Some((recorded, _)) = self.dedup_order.front() {
            let expired = after(*recorded, window).is_some_and(|end| end <= now);
            if !expired {
                break;
            }
            if let Some((recorded, id)) = self.dedup_order.pop_front() {
                if self.dedup.get(&id).is_some_and(|(_, at)| *at == recorded) {
                    self.dedup.remove(&id);
                }
            }
        }
    }

    /// The position stored for `event_id` inside the window, if any.
    pub fn dedup_lookup(&self, event_id: &str) -> Option<u64> {
        self.dedup.get(event_id).map(|(position, _)| *position)
    }

    /// Records `event_id` as stored at `position`.
    pub fn dedup_record(&mut self, event_id: &str, position: u64, now: Instant) {
        self.dedup.insert(event_id.to_owned(), (position, now));
        self.dedup_order.push_back((now, event_id.to_owned()));
    }

    /// Position of the first event stored at or after `t` (`last + 1` when none).
    pub fn first_at_or_after(&self, t: SystemTime) -> u64 {
        let index = self.entries.partition_point(|e| e.event.stored_at < t);
        self.entries
            .get(index)
            .map_or(self.last + 1, Entry::position)
    }

    /// Where a consumer or replay starting at `start` begins (may be past the head).
    pub fn resolve_start(&self, start: StartPosition) -> u64 {
        match start {
            StartPosition::Beginning => self.first(),
            StartPosition::Position(p) => p.max(self.first()),
            StartPosition::Time(t) => self.first_at_or_after(t),
            StartPosition::New => self.last + 1,
        }
    }

    /// Entries with positions in `from..=to` that are still stored, in order.
    pub fn range(&self, from: u64, to: u64) -> impl Iterator<Item = &Entry> {
        let first = self.first();
        let from = from.max(first);
        let to = to.min(self.last);
        let (start, end) = if from > to {
            (0, 0)
        } else {
            let start = usize::try_from(from - first).unwrap_or(usize::MAX);
            let end = usize::try_from(to - first + 1).unwrap_or(usize::MAX);
            (start.min(self.entries.len()), end.min(self.entries.len()))
        };
        self.entries.range(start..end)
    }
}
