//! The dead-letter store: bounded by `[bus.memory] max_dead_letters`; when
//! full, the oldest dead letter makes room for the new one (like a stream's
//! `max_msgs` with discard old), so a poison flood cannot grow the process
//! without limit.

use std::collections::VecDeque;

use bus_core::DeadLetter;

#[derive(Debug)]
pub(crate) struct DeadLetters {
    items: VecDeque<DeadLetter>,
    limit: usize,
    discarded: u64,
    /// The id the next dead letter gets (ids are never reused).
    next_id: u64,
}

impl DeadLetters {
    /// An empty store keeping at most `limit` dead letters (at least 1).
    pub fn new(limit: usize) -> Self {
        DeadLetters {
            items: VecDeque::new(),
            limit: limit.max(1),
            discarded: 0,
            next_id: 1,
        }
    }

    /// Stores `dead` under a new id, dropping the oldest when the store is full.
    pub fn push(&mut self, mut dead: DeadLetter) {
        dead.id = self.next_id;
        self.next_id += 1;
        while self.items.len() >= self.limit {
            let Some(oldest) = self.items.pop_front() else {
                break;
            };
            self.discarded += 1;
            tracing::warn!(
                consumer = %oldest.consumer,
                position = oldest.event.position,
                limit = self.limit,
                "dead-letter store full (bus.memory.max_dead_letters); oldest dead letter dropped"
            );
        }
        self.items.push_back(dead);
    }

    /// Removes the dead letter `id` (a redrive the consumer acknowledged, or
    /// one replaced by a new dead letter of the same event). True when it was there.
    pub fn remove(&mut self, id: u64) -> bool {
        match self.items.iter().position(|d| d.id == id) {
            Some(i) => self.items.remove(i).is_some(),
            None => false,
        }
    }

    /// The dead letters kept, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &DeadLetter> {
        self.items.iter()
    }

    /// Dead letters dropped so far to stay within the limit.
    pub fn discarded(&self) -> u64 {
        self.discarded
    }
}
