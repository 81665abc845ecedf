//! # bus-memory: a complete in-process implementation of the `Bus` contract
//!
//! [`MemoryBus`] keeps everything in process memory and mirrors JetStream
//! semantics (it is the reference the NATS backends are compared with in the
//! contract suite): an ordered log with 1-based positions, duplicate detection
//! by event id inside a window, `max_msgs` / `max_bytes` / `max_age` retention
//! with discard old/new, at-most-once live subscriptions, durable consumers
//! with ack deadlines, redelivery, backoff, `max_ack_pending` and a
//! dead-letter store, and finite replays.
//!
//! ## Layout
//! - `lib.rs`: [`MemoryBus`] and its [`Bus`] implementation; publishing
//!   (validation outside the lock), subscribe, replay streams.
//! - `aggregates`: the event-store side: per aggregate its appends (for
//!   version checks, retries and loads) and its latest snapshot.
//! - `state`: `Shared` (settings + the one lock) and `State`, everything behind
//!   the lock: the log, the consumers, the dead letters, the live subscribers;
//!   storing a batch (dedup, limits, retention) and lazy expiry.
//! - `dead`: the dead-letter store, bounded by `[bus.memory]
//!   max_dead_letters` (the oldest is dropped to make room).
//! - `log`: the ordered log (positions, bytes, `stored_at`, dedup window).
//! - `consumer`: one durable consumer's cursor, unsettled deliveries, timers
//!   and counters; the delivery rules.
//! - `handle`: consumer handles (`next` / `fetch` waiting) and ack handles.
//! - `live`: live subscribers (bounded channels, drops when full).
//!
//! ## Invariants
//! - One `std::sync::Mutex` guards all state; it is never held across an
//!   `.await`, and a poisoned lock is recovered, never unwrapped.
//! - Positions are assigned under the lock, strictly increasing, never reused;
//!   the stored events always have contiguous positions (retention only removes
//!   the oldest), and `stream_info` is computed from exact running totals.
//! - Time-based rules (`max_age`, the duplicate window, ack deadlines,
//!   scheduled redeliveries) are applied lazily on every path that reads or
//!   writes, so no background task is needed; waiting handles sleep until the
//!   consumer's earliest timer or a wake-up (publish, ack, nak, term, delete).
//! - An event is handed to a consumer handle only in the critical section that
//!   returns it, so `next()` / `fetch()` are cancel-safe.
//! - When retention removes an event a consumer has not settled, the consumer
//!   forgets it silently (as JetStream does); dead letters keep their own copy.

mod aggregates;
mod consumer;
mod dead;
mod handle;
mod live;
mod log;
mod state;

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use bus_core::config::MemoryConfig;
use bus_core::{
    AggregateHistory, AppendReceipt, Bus, BusConfig, BusError, Consumer, ConsumerConfig,
    ConsumerInfo, DeadLetter, EventEnvelope, ExpectedVersion, Filter, Receipt, RedriveReport,
    RedriveSelection, Replay, Result, Snapshot, StartPosition, StoredEvent, StreamInfo,
    StreamSettings, SubjectLayout, Subscription,
    aggregate::{number_events, validate_aggregate},
    validate_append, validate_batch,
};
use futures::StreamExt;
use prost::Message;
use tokio::time::Instant;

use crate::aggregates::AppendRecord;
use crate::consumer::ConsumerState;
use crate::handle::MemoryConsumer;
use crate::state::{Prepared, Shared};

/// Positions examined per lock acquisition while replaying.
const REPLAY_CHUNK: u64 = 512;

/// The in-process bus. Cheap to clone: clones share one stream.
#[derive(Clone)]
pub struct MemoryBus {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBus")
            .field("prefix", &self.shared.layout.prefix())
            .field("stream", &self.shared.stream)
            .field("memory", &self.shared.memory)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::with_defaults()
    }
}

impl MemoryBus {
    /// A bus with this subject layout, stream limits and memory settings.
    pub fn new(layout: SubjectLayout, stream: StreamSettings, memory: MemoryConfig) -> Self {
        MemoryBus {
            shared: Arc::new(Shared::new(layout, stream, memory)),
        }
    }

    /// A bus with the default layout (`angzarr`), stream settings and memory settings.
    pub fn with_defaults() -> Self {
        Self::new(
            SubjectLayout::default(),
            StreamSettings::default(),
            MemoryConfig::default(),
        )
    }

    /// A bus from the `[bus]` configuration (prefix, `[bus.stream]`, `[bus.memory]`).
    pub fn from_config(config: &BusConfig) -> Result<Self> {
        Ok(Self::new(
            SubjectLayout::new(&config.subject_prefix)?,
            config.stream.clone(),
            config.memory.clone(),
        ))
    }

    /// The stream settings this bus enforces.
    pub fn stream_settings(&self) -> &StreamSettings {
        &self.shared.stream
    }

    /// Live events dropped so far because a subscriber's buffer was full.
    pub fn dropped_live_events(&self) -> u64 {
        self.shared.lock().live.dropped_total()
    }

    /// Dead letters dropped so far (the oldest first) to keep the store
    /// within `[bus.memory] max_dead_letters`.
    pub fn dropped_dead_letters(&self) -> u64 {
        self.shared.lock().dead.discarded()
    }

    /// Checks one envelope (already validated) and computes its subject and size.
    fn prepare(&self, envelope: EventEnvelope) -> Result<Prepared> {
        let size = envelope.encoded_len();
        let limit = self.shared.stream.max_msg_size;
        if size > limit {
            return Err(BusError::PayloadTooLarge { size, limit });
        }
        let subject = self
            .shared
            .layout
            .event_subject(&envelope.aggregate_type, &envelope.event_type)?;
        Ok(Prepared {
            envelope,
            subject,
            size,
        })
    }

    /// Stores prepared events under one lock acquisition, then wakes consumers.
    fn store(&self, batch: Vec<Prepared>) -> Result<Vec<Receipt>> {
        let (receipts, woken) = {
            let mut state = self.shared.lock();
            state.store(&self.shared.stream, batch, Instant::now())?
        };
        for notify in woken {
            notify.notify_waiters();
        }
        Ok(receipts)
    }
}

/// Filters as a set of texts (order and repetition do not change what matches).
fn filter_set(filters: &[Filter]) -> BTreeSet<&str> {
    filters.iter().map(Filter::as_str).collect()
}

fn list(filters: &[Filter]) -> String {
    let texts: Vec<&str> = filters.iter().map(Filter::as_str).collect();
    format!("[{}]", texts.join(", "))
}

/// State of one replay between chunks.
struct ReplayCursor {
    shared: Arc<Shared>,
    filter: Filter,
    /// Next position to examine.
    next: u64,
    /// Last position to examine: the head when the replay began.
    head: u64,
    buffer: VecDeque<StoredEvent>,
}

impl ReplayCursor {
    /// Reads the next chunk of positions under the lock.
    fn fill(&mut self) {
        let mut state = self.shared.lock();
        state.expire(Instant::now(), &self.shared.stream);
        self.next = self.next.max(state.log.first());
        if self.next > self.head {
            return;
        }
        let end = self.head.min(self.next.saturating_add(REPLAY_CHUNK - 1));
        let filter = &self.filter;
        self.buffer.extend(
            state
                .log
                .range(self.next, end)
                .filter(|e| filter.matches(&e.event.subject))
                .map(|e| e.event.clone()),
        );
        self.next = end + 1;
    }

    async fn step(mut self) -> Option<(Result<StoredEvent>, Self)> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Some((Ok(event), self));
            }
            if self.next > self.head {
                return None;
            }
            self.fill();
            if self.buffer.is_empty() {
                // A long run of non-matching events: let other tasks in.
                tokio::task::yield_now().await;
            }
        }
    }
}

#[async_trait]
impl Bus for MemoryBus {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn layout(&self) -> &SubjectLayout {
        &self.shared.layout
    }

    async fn publish(&self, event: EventEnvelope) -> Result<Receipt> {
        event.validate()?;
        let prepared = self.prepare(event)?;
        let mut receipts = self.store(vec![prepared])?;
        receipts
            .pop()
            .ok_or_else(|| BusError::Backend("the store returned no receipt".to_owned()))
    }

    async fn publish_batch(&self, events: Vec<EventEnvelope>) -> Result<Vec<Receipt>> {
        validate_batch(&events)?;
        let prepared = events
            .into_iter()
            .map(|e| self.prepare(e))
            .collect::<Result<Vec<_>>>()?;
        self.store(prepared)
    }

    async fn subscribe(&self, filter: &Filter) -> Result<Subscription> {
        let filter = self.shared.layout.filter(filter.as_str())?;
        let mut rx = self
            .shared
            .lock()
            .live
            .add(filter, self.shared.memory.subscriber_buffer);
        let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|o| o.map(Ok)));
        Ok(Subscription::new(stream.boxed()))
    }

    async fn consumer(&self, config: ConsumerConfig) -> Result<Consumer> {
        config.validate(&self.shared.layout)?;
        let name = config.name.clone();
        let (id, notify) = {
            let mut state = self.shared.lock();
            state.expire(Instant::now(), &self.shared.stream);
            if let Some(existing) = state.consumers.get_mut(&name) {
                if filter_set(&existing.config.filters) != filter_set(&config.filters) {
                    return Err(BusError::Conflict(format!(
                        "consumer {name} exists with filters {}, not {}",
                        list(&existing.config.filters),
                        list(&config.filters)
                    )));
                }
                existing.update_settings(&config);
                // A larger max_ack_pending may let waiting handles proceed.
                existing.notify.notify_waiters();
                (existing.id, Arc::clone(&existing.notify))
            } else {
                let id = state.next_consumer_id;
                state.next_consumer_id += 1;
                let created = ConsumerState::new(id, config, &state.log);
                let notify = Arc::clone(&created.notify);
                state.consumers.insert(name.clone(), created);
                (id, notify)
            }
        };
        let handle = MemoryConsumer::new(Arc::clone(&self.shared), name.clone(), id, notify);
        Ok(Consumer::new(name, Box::new(handle)))
    }

    async fn consumer_info(&self, name: &str) -> Result<ConsumerInfo> {
        let mut state = self.shared.lock();
        let now = Instant::now();
        state.expire(now, &self.shared.stream);
        let (consumer, log, dead) =
            state
                .consumer(name, None)
                .ok_or_else(|| BusError::NotFound {
                    what: "consumer",
                    name: name.to_owned(),
                })?;
        if consumer.sweep(now, log, dead) {
            consumer.notify.notify_waiters();
        }
        Ok(consumer.info(log))
    }

    async fn delete_consumer(&self, name: &str) -> Result<()> {
        let removed = self.shared.lock().consumers.remove(name);
        match removed {
            Some(consumer) => {
                // Waiting handles wake up and report NotFound.
                consumer.notify.notify_waiters();
                Ok(())
            }
            None => Err(BusError::NotFound {
                what: "consumer",
                name: name.to_owned(),
            }),
        }
    }

    async fn replay(&self, filter: &Filter, from: StartPosition) -> Result<Replay> {
        let filter = self.shared.layout.filter(filter.as_str())?;
        let (next, head) = {
            let mut state = self.shared.lock();
            state.expire(Instant::now(), &self.shared.stream);
            (state.log.resolve_start(from), state.log.last())
        };
        let cursor = ReplayCursor {
            shared: Arc::clone(&self.shared),
            filter,
            next,
            head,
            buffer: VecDeque::new(),
        };
        Ok(Replay::new(
            futures::stream::unfold(cursor, ReplayCursor::step).boxed(),
        ))
    }

    async fn dead_letters(&self, consumer: Option<&str>) -> Result<Vec<DeadLetter>> {
        let mut state = self.shared.lock();
        state.sweep_all(Instant::now(), &self.shared.stream);
        Ok(state
            .dead
            .iter()
            .filter(|d| consumer.is_none_or(|name| d.consumer == name))
            .cloned()
            .collect())
    }

    async fn redrive_dead_letters(
        &self,
        consumer: &str,
        selection: &RedriveSelection,
    ) -> Result<RedriveReport> {
        let mut report = RedriveReport::default();
        let notify = {
            let mut state = self.shared.lock();
            state.sweep_all(Instant::now(), &self.shared.stream);
            let (target, _, dead) =
                state
                    .consumer(consumer, None)
                    .ok_or_else(|| BusError::NotFound {
                        what: "consumer",
                        name: consumer.to_owned(),
                    })?;
            let chosen: Vec<DeadLetter> = dead
                .iter()
                .filter(|d| d.consumer == consumer)
                .filter(|d| match selection {
                    RedriveSelection::All => true,
                    RedriveSelection::Positions(p) => p.contains(&d.event.position),
                })
                .cloned()
                .collect();
            if let RedriveSelection::Positions(wanted) = selection {
                report.not_found = wanted
                    .iter()
                    .copied()
                    .filter(|p| !chosen.iter().any(|d| d.event.position == *p))
                    .collect();
            }
            for d in chosen {
                let position = d.event.position;
                if target.redrive(d.id, d.event) {
                    report.redriven.push(position);
                } else {
                    report.already_pending.push(position);
                }
            }
            Arc::clone(&target.notify)
        };
        if !report.redriven.is_empty() {
            notify.notify_waiters();
        }
        Ok(report)
    }

    async fn stream_info(&self) -> Result<StreamInfo> {
        let mut state = self.shared.lock();
        state.expire(Instant::now(), &self.shared.stream);
        Ok(state.log.info())
    }

    async fn append(
        &self,
        expected: ExpectedVersion,
        mut events: Vec<EventEnvelope>,
    ) -> Result<AppendReceipt> {
        let (aggregate_type, aggregate_id) = {
            let (t, i) = validate_append(&events)?;
            (t.to_owned(), i.to_owned())
        };
        let ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
        let stream = &self.shared.stream;
        let (receipt, woken) = {
            // One lock: the version check, the dedup check and the write
            // are one step, so two appends can never both pass the check.
            let mut state = self.shared.lock();
            let now = Instant::now();
            state.expire(now, stream);
            let actual = state.aggregates.version(&aggregate_type, &aggregate_id);
            if let Some(earlier) = state
                .aggregates
                .get(&aggregate_type, &aggregate_id)
                .and_then(|agg| agg.repeat_of(expected, &ids))
            {
                return Ok(earlier.receipt(true));
            }
            if !expected.is_met_by(actual) {
                return Err(BusError::VersionConflict {
                    aggregate_type,
                    aggregate_id,
                    expected: expected.version().unwrap_or(actual),
                    actual,
                });
            }
            if !stream.duplicate_window.is_zero() {
                if let Some((id, position)) = ids
                    .iter()
                    .find_map(|id| state.log.dedup_lookup(id).map(|p| (id, p)))
                {
                    return Err(BusError::Conflict(format!(
                        "event id {id} of this append to {aggregate_type} {aggregate_id:?} is \
                         already stored (position {position}) by another append or publish; \
                         a new append needs new event ids"
                    )));
                }
            }
            number_events(&mut events, actual + 1);
            let prepared = events
                .into_iter()
                .map(|e| self.prepare(e))
                .collect::<Result<Vec<_>>>()?;
            let (receipts, woken) = state.store(stream, prepared, now)?;
            let first_position = receipts.first().map_or(0, |r| r.position);
            let record = AppendRecord {
                first_version: actual + 1,
                first_position,
                event_ids: ids,
            };
            let receipt = record.receipt(false);
            state
                .aggregates
                .record(&aggregate_type, &aggregate_id, record);
            (receipt, woken)
        };
        for notify in woken {
            notify.notify_waiters();
        }
        Ok(receipt)
    }

    async fn load(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after_version: u64,
    ) -> Result<AggregateHistory> {
        validate_aggregate(aggregate_type, aggregate_id)?;
        let mut state = self.shared.lock();
        state.expire(Instant::now(), &self.shared.stream);
        state
            .aggregates
            .load(&state.log, aggregate_type, aggregate_id, after_version)
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<()> {
        snapshot.validate()?;
        let size = snapshot.encoded_len();
        let limit = self.shared.stream.max_msg_size;
        if size > limit {
            return Err(BusError::PayloadTooLarge { size, limit });
        }
        let mut state = self.shared.lock();
        let actual = state
            .aggregates
            .version(&snapshot.aggregate_type, &snapshot.aggregate_id);
        if snapshot.version > actual {
            return Err(snapshot.ahead_of(actual));
        }
        state.aggregates.save_snapshot(snapshot);
        Ok(())
    }

    async fn load_snapshot(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Option<Snapshot>> {
        validate_aggregate(aggregate_type, aggregate_id)?;
        Ok(self
            .shared
            .lock()
            .aggregates
            .snapshot(aggregate_type, aggregate_id))
    }
}

#[cfg(test)]
mod tests;
