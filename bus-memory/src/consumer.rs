//! State of one durable consumer: its cursor in the log, the events it has
//! delivered and not yet settled, their timers, and its counters.
//!
//! Every method runs under the bus lock and takes the log (and the dead-letter
//! store) explicitly, so all consumer transitions are atomic with the log.
//!
//! Invariants:
//! - `cursor` is the next position to consider for a first delivery; it is at
//!   least the log's first position, and either past the head or at an event
//!   that matches the filters (non-matching events are skipped eagerly);
//! - `num_pending` is the number of stored matching events at or after `cursor`;
//! - every entry of `pending` is in exactly one index: `timers` (delivered and
//!   waiting for its ack deadline, or scheduled for redelivery) or `ready`
//!   (redeliverable now);
//! - `pending` only holds events still stored in the log (retention drops them
//!   silently), except redriven dead letters (`redriven`), which carry their
//!   own copy of the event and stay until settled;
//! - a position is in `redriven` only while it is in `pending`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bus_core::{ConsumerConfig, ConsumerInfo, DeadLetter, StoredEvent};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::dead::DeadLetters;
use crate::log::{Entry, Log, after_saturating};

/// Where a delivered, unsettled event stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Delivered; redeliverable (or dead-lettered) when the deadline passes.
    Outstanding(Instant),
    /// Nak'ed; redeliverable at this instant (possibly at once).
    Scheduled(Instant),
    /// Redeliverable now.
    Ready,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    /// Deliveries so far.
    attempts: u32,
    slot: Slot,
    /// The current delivery was nak'ed (so `in_progress` no longer applies).
    naked: bool,
}

/// Outcome of an acknowledgement operation on this consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// The state changed (waiters may want to look again).
    Changed,
    /// Nothing to do (not pending, or a stale delivery).
    Unchanged,
}

/// One durable consumer.
#[derive(Debug)]
pub(crate) struct ConsumerState {
    /// Identity of this incarnation (a re-created consumer gets a new one).
    pub id: u64,
    pub config: ConsumerConfig,
    /// Woken when this consumer may have something new to hand out.
    pub notify: Arc<Notify>,
    cursor: u64,
    num_pending: u64,
    delivered: u64,
    dead_lettered: u64,
    pending: BTreeMap<u64, Pending>,
    timers: BTreeSet<(Instant, u64)>,
    ready: BTreeSet<u64>,
    /// Dead letters sent back to this consumer and not yet settled: position
    /// -> (dead-letter id, the event as dead-lettered).
    redriven: BTreeMap<u64, (u64, StoredEvent)>,
}

impl ConsumerState {
    /// A new consumer positioned by `config.start`.
    pub fn new(id: u64, config: ConsumerConfig, log: &Log) -> Self {
        let cursor = log.resolve_start(config.start);
        let num_pending = log
            .range(cursor, log.last())
            .filter(|e| config.matches(&e.event.subject))
            .count() as u64;
        let mut c = ConsumerState {
            id,
            config,
            notify: Arc::new(Notify::new()),
            cursor,
            num_pending,
            delivered: 0,
            dead_lettered: 0,
            pending: BTreeMap::new(),
            timers: BTreeSet::new(),
            ready: BTreeSet::new(),
            redriven: BTreeMap::new(),
        };
        c.skip_unmatched(log);
        c
    }

    /// Applies new delivery settings from a later `consumer()` call.
    pub fn update_settings(&mut self, config: &ConsumerConfig) {
        self.config.ack_wait = config.ack_wait;
        self.config.max_deliver = config.max_deliver;
        self.config.backoff = config.backoff.clone();
        self.config.max_ack_pending = config.max_ack_pending;
    }

    fn matches(&self, entry: &Entry) -> bool {
        self.config.matches(&entry.event.subject)
    }

    /// Moves the cursor past events that do not match (keeps the invariant).
    fn skip_unmatched(&mut self, log: &Log) {
        if self.cursor < log.first() {
            self.cursor = log.first();
        }
        while self.cursor <= log.last() {
            match log.get(self.cursor) {
                Some(e) if self.matches(e) => break,
                Some(_) => self.cursor += 1,
                None => self.cursor = log.first().max(self.cursor + 1),
            }
        }
    }

    /// A new event was appended. Returns true when it matches and is ahead
    /// of the cursor (so a waiting handle may take it).
    pub fn on_stored(&mut self, entry: &Entry) -> bool {
        let position = entry.position();
        if position < self.cursor {
            return false;
        }
        if self.matches(entry) {
            self.num_pending += 1;
            true
        } else {
            if position == self.cursor {
                self.cursor += 1;
            }
            false
        }
    }

    /// Retention removed `entry` from the log. Returns true when it was
    /// pending here (a max_ack_pending slot was freed).
    pub fn on_removed(&mut self, entry: &Entry) -> bool {
        let position = entry.position();
        if position >= self.cursor && self.matches(entry) {
            self.num_pending = self.num_pending.saturating_sub(1);
        }
        if self.redriven.contains_key(&position) {
            // A redriven dead letter carries its own copy.
            return false;
        }
        match self.pending.remove(&position) {
            Some(p) => {
                self.unindex(position, p.slot);
                true
            }
            None => false,
        }
    }

    /// Called once after a run of removals.
    pub fn after_removals(&mut self, log: &Log) {
        self.skip_unmatched(log);
    }

    fn unindex(&mut self, position: u64, slot: Slot) {
        match slot {
            Slot::Outstanding(t) | Slot::Scheduled(t) => {
                self.timers.remove(&(t, position));
            }
            Slot::Ready => {
                self.ready.remove(&position);
            }
        }
    }

    fn index(&mut self, position: u64, slot: Slot) {
        match slot {
            Slot::Outstanding(t) | Slot::Scheduled(t) => {
                self.timers.insert((t, position));
            }
            Slot::Ready => {
                self.ready.insert(position);
            }
        }
    }

    /// Moves the pending event at `position` to `slot`, keeping the indexes.
    fn set_slot(&mut self, position: u64, slot: Slot) {
        let Some(p) = self.pending.get_mut(&position) else {
            return;
        };
        let old = std::mem::replace(&mut p.slot, slot);
        self.unindex(position, old);
        self.index(position, slot);
    }

    /// Removes `position` from pending and records a dead letter for it.
    /// A redriven dead letter's earlier dead letter makes room for this one.
    fn dead_letter(&mut self, position: u64, reason: String, log: &Log, dead: &mut DeadLetters) {
        let Some(p) = self.pending.remove(&position) else {
            return;
        };
        self.unindex(position, p.slot);
        let event = match self.redriven.remove(&position) {
            Some((earlier, event)) => {
                dead.remove(earlier);
                event
            }
            None => match log.get(position) {
                Some(entry) => entry.event.clone(),
                None => return,
            },
        };
        self.dead_lettered += 1;
        tracing::debug!(
            consumer = %self.config.name,
            position,
            attempts = p.attempts,
            %reason,
            "event dead-lettered"
        );
        dead.push(DeadLetter {
            id: 0,
            event,
            consumer: self.config.name.clone(),
            attempts: p.attempts,
            reason,
            dead_lettered_at: SystemTime::now(),
        });
    }

    /// The wait allowed for the `attempt`-th delivery.
    fn wait_for(&self, attempt: u32) -> Duration {
        self.config.redelivery_delay(attempt)
    }

    /// Applies every timer due at `now`: ack deadlines that passed make the
    /// event redeliverable, or dead-letter it on the last allowed delivery;
    /// scheduled redeliveries become ready. Returns true when anything changed.
    pub fn sweep(&mut self, now: Instant, log: &Log, dead: &mut DeadLetters) -> bool {
        let mut changed = false;
        while let Some(&(t, position)) = self.timers.first() {
            if t > now {
                break;
            }
            changed = true;
            let Some(p) = self.pending.get(&position).copied() else {
                self.timers.remove(&(t, position));
                continue;
            };
            match p.slot {
                Slot::Outstanding(_) if p.attempts >= self.config.max_deliver => {
                    let reason = format!("ack wait expired after {} deliveries", p.attempts);
                    self.dead_letter(position, reason, log, dead);
                }
                _ => self.set_slot(position, Slot::Ready),
            }
        }
        changed
    }

    /// Hands out the next delivery at `now`, if any: the lowest-positioned
    /// redeliverable event first, else the next new matching event when fewer
    /// than `max_ack_pending` are unsettled. The event counts as delivered as
    /// soon as this returns.
    pub fn take(
        &mut self,
        now: Instant,
        log: &Log,
        dead: &mut DeadLetters,
    ) -> Option<(StoredEvent, u32)> {
        while let Some(&position) = self.ready.first() {
            let Some(p) = self.pending.get(&position).copied() else {
                self.ready.remove(&position);
                continue;
            };
            let event = match (self.redriven.get(&position), log.get(position)) {
                (Some((_, event)), _) => event.clone(),
                (None, Some(entry)) => entry.event.clone(),
                (None, None) => {
                    self.pending.remove(&position);
                    self.ready.remove(&position);
                    continue;
                }
            };
            if p.attempts >= self.config.max_deliver {
                // Only possible when max_deliver was lowered by a later bind.
                let reason = format!(
                    "max_deliver ({}) reached after {} deliveries",
                    self.config.max_deliver, p.attempts
                );
                self.dead_letter(position, reason, log, dead);
                continue;
            }
            let attempt = p.attempts + 1;
            let deadline = after_saturating(now, self.wait_for(attempt));
            if let Some(p) = self.pending.get_mut(&position) {
                p.attempts = attempt;
                p.naked = false;
            }
            self.set_slot(position, Slot::Outstanding(deadline));
            return Some((event, attempt));
        }
        if self.pending.len() >= self.config.max_ack_pending {
            return None;
        }
        self.skip_unmatched(log);
        let entry = log.get(self.cursor)?;
        let event = entry.event.clone();
        let position = self.cursor;
        let deadline = after_saturating(now, self.wait_for(1));
        self.pending.insert(
            position,
            Pending {
                attempts: 1,
                slot: Slot::Outstanding(deadline),
                naked: false,
            },
        );
        self.index(position, Slot::Outstanding(deadline));
        self.delivered = self.delivered.max(position);
        self.num_pending = self.num_pending.saturating_sub(1);
        self.cursor += 1;
        self.skip_unmatched(log);
        Some((event, 1))
    }

    /// The earliest instant at which a timer is due, if any.
    pub fn next_wake(&self) -> Option<Instant> {
        self.timers.first().map(|(t, _)| *t)
    }

    /// Ack: the event is done, whichever delivery acknowledges it. A
    /// redriven dead letter leaves the dead-letter store now.
    pub fn ack(&mut self, position: u64, dead: &mut DeadLetters) -> Settled {
        match self.pending.remove(&position) {
            Some(p) => {
                self.unindex(position, p.slot);
                if let Some((id, _)) = self.redriven.remove(&position) {
                    dead.remove(id);
                }
                Settled::Changed
            }
            None => Settled::Unchanged,
        }
    }

    /// Queues the dead letter `id` of `event` for redelivery to this
    /// consumer (as attempt 1 again). Returns false, queuing nothing, when
    /// the event is already pending here (a redrive not yet settled).
    pub fn redrive(&mut self, id: u64, event: StoredEvent) -> bool {
        let position = event.position;
        if self.pending.contains_key(&position) {
            return false;
        }
        self.pending.insert(
            position,
            Pending {
                attempts: 0,
                slot: Slot::Ready,
                naked: false,
            },
        );
        self.index(position, Slot::Ready);
        self.redriven.insert(position, (id, event));
        true
    }

    /// Nak of the `attempt`-th delivery: redeliver after `delay` (or the
    /// backoff, or at once), or dead-letter it when that was the last allowed
    /// delivery. Ignored for a delivery that is no longer the current one.
    pub fn nak(
        &mut self,
        position: u64,
        attempt: u32,
        (delay, reason): (Option<Duration>, Option<String>),
        now: Instant,
        log: &Log,
        dead: &mut DeadLetters,
    ) -> Settled {
        let Some(p) = self.pending.get(&position).copied() else {
            return Settled::Unchanged;
        };
        if p.attempts != attempt {
            return Settled::Unchanged;
        }
        if p.attempts >= self.config.max_deliver {
            let reason = reason.unwrap_or_else(|| {
                format!(
                    "negatively acknowledged on the last of {} deliveries",
                    p.attempts
                )
            });
            self.dead_letter(position, reason, log, dead);
            return Settled::Changed;
        }
        let delay = delay.unwrap_or_else(|| {
            if self.config.backoff.is_empty() {
                Duration::ZERO
            } else {
                self.config.redelivery_delay(p.attempts)
            }
        });
        if let Some(p) = self.pending.get_mut(&position) {
            p.naked = true;
        }
        let slot = if delay.is_zero() {
            Slot::Ready
        } else {
            Slot::Scheduled(after_saturating(now, delay))
        };
        self.set_slot(position, slot);
        Settled::Changed
    }

    /// Term: dead-letter now with `reason`, whichever delivery asks.
    pub fn term(
        &mut self,
        position: u64,
        reason: String,
        log: &Log,
        dead: &mut DeadLetters,
    ) -> Settled {
        if !self.pending.contains_key(&position) {
            return Settled::Unchanged;
        }
        self.dead_letter(position, reason, log, dead);
        Settled::Changed
    }

    /// In progress on the `attempt`-th delivery: restart its ack-wait clock.
    /// Also revives a delivery whose deadline passed but that was not
    /// redelivered yet. Ignored for a delivery that is no longer current or
    /// that was nak'ed.
    pub fn in_progress(&mut self, position: u64, attempt: u32, now: Instant) -> Settled {
        let Some(p) = self.pending.get(&position).copied() else {
            return Settled::Unchanged;
        };
        if p.attempts != attempt || p.naked {
            // A stale delivery, or one the handler already nak'ed.
            return Settled::Unchanged;
        }
        let deadline = after_saturating(now, self.wait_for(p.attempts));
        self.set_slot(position, Slot::Outstanding(deadline));
        Settled::Changed
    }

    /// The consumer's state (call after a sweep).
    pub fn info(&self, log: &Log) -> ConsumerInfo {
        let lowest_unsettled = self
            .pending
            .keys()
            .next()
            .copied()
            .unwrap_or(self.cursor)
            .min(self.cursor);
        ConsumerInfo {
            name: self.config.name.clone(),
            filters: self
                .config
                .filters
                .iter()
                .map(|f| f.as_str().to_owned())
                .collect(),
            num_pending: self.num_pending,
            num_ack_pending: self.pending.len() as u64,
            num_redelivered: self.pending.values().filter(|p| p.attempts > 1).count() as u64,
            delivered: self.delivered,
            ack_floor: lowest_unsettled.saturating_sub(1).min(log.last()),
            dead_lettered: self.dead_lettered,
        }
    }
}
