//! Everything behind the bus lock, and the operations that must keep the log,
//! the consumers and the dead-letter store consistent with one another:
//! storing (dedup, limits, retention) and lazy expiry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bus_core::{
    BusError, Discard, EventEnvelope, Receipt, Result, StreamSettings, SubjectLayout,
    config::MemoryConfig,
};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::aggregates::Aggregates;
use crate::consumer::ConsumerState;
use crate::dead::DeadLetters;
use crate::live::Live;
use crate::log::{Entry, Log};

/// What every handle of one bus shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub layout: SubjectLayout,
    pub stream: StreamSettings,
    pub memory: MemoryConfig,
    state: Mutex<State>,
}

impl Shared {
    pub fn new(layout: SubjectLayout, stream: StreamSettings, memory: MemoryConfig) -> Self {
        let state = Mutex::new(State::new(memory.max_dead_letters));
        Shared {
            layout,
            stream,
            memory,
            state,
        }
    }

    /// The state, recovering from a poisoned lock (every mutation below keeps
    /// the state consistent step by step, so a panic elsewhere cannot leave it
    /// half-updated in a way that matters more than refusing service would).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An event checked and encoded-sized before taking the lock.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub envelope: EventEnvelope,
    pub subject: String,
    pub size: usize,
}

/// The state behind the lock.
#[derive(Debug)]
pub(crate) struct State {
    pub log: Log,
    pub consumers: HashMap<String, ConsumerState>,
    pub dead: DeadLetters,
    pub live: Live,
    pub aggregates: Aggregates,
    pub next_consumer_id: u64,
}

impl State {
    /// Empty state whose dead-letter store keeps at most `max_dead_letters`.
    pub fn new(max_dead_letters: usize) -> Self {
        State {
            log: Log::default(),
            consumers: HashMap::new(),
            dead: DeadLetters::new(max_dead_letters),
            live: Live::default(),
            aggregates: Aggregates::default(),
            next_consumer_id: 0,
        }
    }

    /// The consumer `name` (when `id` is given, only that incarnation of it),
    /// with the log and the dead-letter store borrowed beside it.
    pub fn consumer(
        &mut self,
        name: &str,
        id: Option<u64>,
    ) -> Option<(&mut ConsumerState, &Log, &mut DeadLetters)> {
        let State {
            log,
            consumers,
            dead,
            ..
        } = self;
        let consumer = consumers
            .get_mut(name)
            .filter(|c| id.is_none_or(|id| c.id == id))?;
        Some((consumer, log, dead))
    }

    /// Removes the oldest event, telling every consumer.
    fn remove_oldest(&mut self) -> Option<Entry> {
        let entry = self.log.pop_front()?;
        for c in self.consumers.values_mut() {
            if c.on_removed(&entry) {
                c.notify.notify_waiters();
            }
        }
        Some(entry)
    }

    fn after_removals(&mut self) {
        for c in self.consumers.values_mut() {
            c.after_removals(&self.log);
        }
    }

    /// Lazy expiry: drops events older than `max_age` and forgets event ids
    /// older than the duplicate window. Runs on every path that reads or writes.
    pub fn expire(&mut self, now: Instant, settings: &StreamSettings) {
        let mut removed = false;
        while self.log.front_expired(now, settings.max_age) {
            if self.remove_oldest().is_none() {
                break;
            }
            removed = true;
        }
        if removed {
            self.after_removals();
        }
        self.log.expire_dedup(now, settings.duplicate_window);
    }

    /// Expires, then applies due timers of every consumer.
    pub fn sweep_all(&mut self, now: Instant, settings: &StreamSettings) {
        self.expire(now, settings);
        let State {
            log,
            consumers,
            dead,
            ..
        } = self;
        for c in consumers.values_mut() {
            if c.sweep(now, log, dead) {
                c.notify.notify_waiters();
            }
        }
    }

    /// Stores a batch (one event is a batch of one) atomically: duplicates
    /// (also inside the batch) store nothing and get the first position; with
    /// `discard: new` a batch that would exceed a limit stores nothing. Returns
    /// the receipts and the notifiers of consumers that have new work.
    pub fn store(
        &mut self,
        settings: &StreamSettings,
        batch: Vec<Prepared>,
        now: Instant,
    ) -> Result<(Vec<Receipt>, Vec<Arc<Notify>>)> {
        self.expire(now, settings);
        let dedup = !settings.duplicate_window.is_zero();

        // Plan: which events are new, and every receipt.
        let mut receipts = Vec::with_capacity(batch.len());
        let mut in_batch: HashMap<&str, u64> = HashMap::new();
        let mut new_count: u64 = 0;
        let mut new_bytes: u64 = 0;
        let mut is_new = Vec::with_capacity(batch.len());
        for p in &batch {
            let id = p.envelope.event_id.as_str();
            let original = if dedup {
                self.log
                    .dedup_lookup(id)
                    .or_else(|| in_batch.get(id).copied())
            } else {
                None
            };
            match original {
                Some(position) => {
                    receipts.push(Receipt {
                        position,
                        duplicate: true,
                    });
                    is_new.push(false);
                }
                None => {
                    new_count += 1;
                    let position = self.log.last() + new_count;
                    if dedup {
                        in_batch.insert(id, position);
                    }
                    new_bytes += p.size as u64;
                    receipts.push(Receipt {
                        position,
                        duplicate: false,
                    });
                    is_new.push(true);
                    if settings.max_bytes > 0 && p.size as u64 > settings.max_bytes {
                        return Err(BusError::LimitReached(format!(
                            "max_bytes ({}): event {} alone is {} bytes",
                            settings.max_bytes, id, p.size
                        )));
                    }
                }
            }
        }
        drop(in_batch);

        if settings.discard == Discard::New {
            let messages = self.log.len();
            if settings.max_msgs > 0 && messages + new_count > settings.max_msgs {
                return Err(BusError::LimitReached(format!(
                    "max_msgs ({}): the stream holds {} events and discard is new",
                    settings.max_msgs, messages
                )));
            }
            let bytes = self.log.bytes();
            if settings.max_bytes > 0 && bytes + new_bytes > settings.max_bytes {
                return Err(BusError::LimitReached(format!(
                    "max_bytes ({}): the stream holds {} bytes, {} more do not fit, and discard is new",
                    settings.max_bytes, bytes, new_bytes
                )));
            }
        }

        // Store, in order.
        let mut woken: Vec<Arc<Notify>> = Vec::new();
        let mut woken_ids: Vec<u64> = Vec::new();
        for (p, new) in batch.into_iter().zip(is_new) {
            if !new {
                continue;
            }
            let Prepared {
                envelope,
                subject,
                size,
            } = p;
            if dedup {
                let position = self.log.last() + 1;
                self.log.dedup_record(&envelope.event_id, position, now);
            }
            let entry = self.log.push(subject, envelope, size, now);
            for c in self.consumers.values_mut() {
                if c.on_stored(entry) && !woken_ids.contains(&c.id) {
                    woken_ids.push(c.id);
                    woken.push(Arc::clone(&c.notify));
                }
            }
            if !self.live.is_empty() {
                self.live
                    .dispatch(&entry.event.subject, &entry.event.envelope, now);
            }
        }

        // Retention with discard: old.
        let mut removed = false;
        loop {
            let over_msgs = settings.max_msgs > 0 && self.log.len() > settings.max_msgs;
            let over_bytes = settings.max_bytes > 0 && self.log.bytes() > settings.max_bytes;
            if !(over_msgs || over_bytes) || self.remove_oldest().is_none() {
                break;
            }
            removed = true;
        }
        if removed {
            self.after_removals();
        }
        Ok((receipts, woken))
    }
}
