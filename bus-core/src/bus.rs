//! The `Bus` trait and the handles it returns.
//!
//! Shape: publishing is a method call that returns receipts; everything that
//! yields events is a *pull* handle (`Subscription`, `Replay`: `futures::Stream`s;
//! `Consumer`: `next()` / `fetch()`), so the caller controls concurrency and
//! back-pressure, can `select!` over several sources, and pays no boxing per
//! event for a handler callback. Acknowledgement is explicit on each
//! [`Delivery`].

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::stream::{BoxStream, Stream, StreamExt};

use crate::aggregate::{AggregateHistory, AppendReceipt, ExpectedVersion, Snapshot};
use crate::envelope::EventEnvelope;
use crate::error::{BusError, Result};
use crate::settings::ConsumerDefaults;
use crate::subject::{Filter, SubjectLayout, validate_consumer_name};

/// What the bus says about one stored event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// Stream position (1-based, strictly increasing across the whole stream).
    /// For a duplicate, the position of the event stored first.
    pub position: u64,
    /// True when the event id was already stored inside the duplicate window and
    /// this publish stored nothing.
    pub duplicate: bool,
}

/// An event read from the stream (by a consumer or a replay).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Stream position.
    pub position: u64,
    /// Subject it was stored under, `<prefix>.events.<aggregate>.<EventType>`.
    pub subject: String,
    /// When the bus stored it.
    pub stored_at: SystemTime,
    /// The envelope exactly as published.
    pub envelope: EventEnvelope,
}

/// An event seen by a live subscription (not necessarily stored; no position).
#[derive(Debug, Clone, PartialEq)]
pub struct LiveEvent {
    /// Subject it was published on.
    pub subject: String,
    /// The envelope exactly as published.
    pub envelope: EventEnvelope,
}

/// Where a durable consumer starts when it is first created, or where a replay starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartPosition {
    /// The first event still in the stream.
    #[default]
    Beginning,
    /// The event at this stream position (or the first after it).
    Position(u64),
    /// The first event stored at or after this time.
    Time(SystemTime),
    /// Only events stored after the consumer is created. A replay from `New` is empty.
    New,
}

/// Settings of a durable, named consumer.
///
/// `start` applies only when the consumer is created; an existing consumer
/// resumes from its own position. Binding to an existing consumer with other
/// filters is a [`BusError::Conflict`]; the delivery settings (`ack_wait`,
/// `max_deliver`, `backoff`, `max_ack_pending`) are updated to the new values.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerConfig {
    /// Durable name; every handle with this name shares one position and the work.
    pub name: String,
    /// One or more filters; an event matching any of them is delivered.
    pub filters: Vec<Filter>,
    /// Where a new consumer starts.
    pub start: StartPosition,
    /// How long a delivery may stay unacknowledged before redelivery.
    pub ack_wait: Duration,
    /// Deliveries before the event goes to the dead-letter store.
    pub max_deliver: u32,
    /// Redelivery delays by attempt (the last repeats); empty = `ack_wait`.
    pub backoff: Vec<Duration>,
    /// Most unacknowledged deliveries at once. With 1, events are processed
    /// strictly in stream order, redeliveries included.
    pub max_ack_pending: usize,
}

impl ConsumerConfig {
    /// A consumer with the crate defaults ([`ConsumerDefaults::default`]).
    pub fn new(name: impl Into<String>, filter: Filter) -> Self {
        Self::with_defaults(name, filter, &ConsumerDefaults::default())
    }

    /// A consumer with the configured defaults (`[bus.consumer]`).
    pub fn with_defaults(
        name: impl Into<String>,
        filter: Filter,
        defaults: &ConsumerDefaults,
    ) -> Self {
        ConsumerConfig {
            name: name.into(),
            filters: vec![filter],
            start: StartPosition::Beginning,
            ack_wait: defaults.ack_wait,
            max_deliver: defaults.max_deliver,
            backoff: defaults.backoff.clone(),
            max_ack_pending: defaults.max_ack_pending,
        }
    }

    /// Sets the start position.
    pub fn start(mut self, start: StartPosition) -> Self {
        self.start = start;
        self
    }

    /// Adds another filter.
    pub fn also(mut self, filter: Filter) -> Self {
        self.filters.push(filter);
        self
    }

    /// Sets the ack wait.
    pub fn ack_wait(mut self, d: Duration) -> Self {
        self.ack_wait = d;
        self
    }

    /// Sets max deliver.
    pub fn max_deliver(mut self, n: u32) -> Self {
        self.max_deliver = n;
        self
    }

    /// Sets the backoff list.
    pub fn backoff(mut self, delays: Vec<Duration>) -> Self {
        self.backoff = delays;
        self
    }

    /// Sets max ack pending.
    pub fn max_ack_pending(mut self, n: usize) -> Self {
        self.max_ack_pending = n;
        self
    }

    /// Checks the settings against a layout: valid name, at least one filter,
    /// every filter inside the bus namespace, positive limits.
    pub fn validate(&self, layout: &SubjectLayout) -> Result<()> {
        validate_consumer_name(&self.name)?;
        if self.filters.is_empty() {
            return Err(BusError::InvalidArgument(format!(
                "consumer {} has no filter",
                self.name
            )));
        }
        for f in &self.filters {
            layout.filter(f.as_str())?;
        }
        let bad = |what: &str| {
            Err(BusError::InvalidArgument(format!(
                "consumer {}: {what}",
                self.name
            )))
        };
        if self.max_deliver == 0 {
            return bad("max_deliver must be at least 1");
        }
        if self.max_ack_pending == 0 {
            return bad("max_ack_pending must be at least 1");
        }
        if self.ack_wait.is_zero() {
            return bad("ack_wait must be positive");
        }
        if self.backoff.iter().any(Duration::is_zero) {
            return bad("backoff delays must be positive");
        }
        Ok(())
    }

    /// The delay before redelivering after the `attempt`-th delivery failed
    /// (timeout or nak without its own delay): `backoff[attempt-1]`, the last
    /// entry repeating, or `ack_wait` when there is no backoff list.
    pub fn redelivery_delay(&self, attempt: u32) -> Duration {
        if self.backoff.is_empty() {
            return self.ack_wait;
        }
        let i = (attempt.max(1) as usize - 1).min(self.backoff.len() - 1);
        self.backoff[i]
    }

    /// True when any filter matches `subject`.
    pub fn matches(&self, subject: &str) -> bool {
        self.filters.iter().any(|f| f.matches(subject))
    }
}

/// State of a durable consumer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerInfo {
    /// Its name.
    pub name: String,
    /// Its filters.
    pub filters: Vec<String>,
    /// Matching events in the stream not yet delivered.
    pub num_pending: u64,
    /// Delivered and not yet acknowledged.
    pub num_ack_pending: u64,
    /// Events delivered more than once (counted once each).
    pub num_redelivered: u64,
    /// Highest stream position delivered so far (0 = none).
    pub delivered: u64,
    /// Every matching event at or below this position is acknowledged,
    /// dead-lettered or gone.
    pub ack_floor: u64,
    /// Events this consumer moved to the dead-letter store.
    pub dead_lettered: u64,
}

/// State of the event stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamInfo {
    /// Messages stored: the events and, on the NATS backends, one marker
    /// per [`Bus::append`] (which also takes a position).
    pub messages: u64,
    /// Their encoded bytes.
    pub bytes: u64,
    /// Position of the oldest stored event (0 when empty and never written).
    pub first_position: u64,
    /// Position of the newest event ever stored (0 when never written).
    pub last_position: u64,
}

/// An event a consumer gave up on, with why.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Identity of this dead letter in the dead-letter store (unique per
    /// store, never reused: the dead-letter stream's sequence on NATS).
    pub id: u64,
    /// The event as it was stored.
    pub event: StoredEvent,
    /// The consumer that gave up.
    pub consumer: String,
    /// How many times it was delivered.
    pub attempts: u32,
    /// The reason: the handler's `term`/`nak` reason, or the ack timeout.
    pub reason: String,
    /// When it was dead-lettered.
    pub dead_lettered_at: SystemTime,
}

/// Which dead letters of one consumer a redrive sends back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedriveSelection {
    /// Every dead letter the consumer has.
    All,
    /// The dead letters of these stream positions.
    Positions(Vec<u64>),
}

/// What [`Bus::redrive_dead_letters`] did, by stream position.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RedriveReport {
    /// Dead letters queued now for redelivery to the consumer.
    pub redriven: Vec<u64>,
    /// Dead letters already on their way back from an earlier redrive that
    /// the consumer has not acknowledged yet (not queued a second time).
    pub already_pending: Vec<u64>,
    /// Requested positions for which the consumer has no dead letter (never
    /// dead-lettered, or already redriven and acknowledged).
    pub not_found: Vec<u64>,
}

/// Backend side of a [`Delivery`]'s acknowledgement.
#[async_trait]
pub trait Acker: Send + Sync {
    /// Processed: never deliver again.
    async fn ack(&self) -> Result<()>;
    /// Not processed: redeliver after `delay` (or the consumer's backoff when
    /// `None`); on the last attempt, dead-letter with `reason`.
    async fn nak(&self, delay: Option<Duration>, reason: Option<String>) -> Result<()>;
    /// Never redeliver: dead-letter now with `reason`.
    async fn term(&self, reason: String) -> Result<()>;
    /// Still working: restart the ack-wait clock.
    async fn in_progress(&self) -> Result<()>;
    /// For [`Delivery::ack_all`]: the ordered acknowledgement channel this
    /// delivery's ack goes to, if there is one. Two deliveries with the same
    /// key have their acks applied by the server in the order they were
    /// sent, and a confirmed ack on the key confirms every ack sent on it
    /// before (see ARCHITECTURE.md, "Batch acknowledgement"). `None` (the
    /// default): no such order; `ack_all` confirms each ack by itself.
    fn ordered_acks(&self) -> Option<String> {
        None
    }
    /// Sends the ack without waiting for its confirmation. Only
    /// [`Delivery::ack_all`] calls it, always followed by a confirmed
    /// [`Acker::ack`] of a delivery with the same [`Acker::ordered_acks`]
    /// key. The default confirms it anyway.
    async fn ack_unconfirmed(&self) -> Result<()> {
        self.ack().await
    }
}

/// One delivery of a stored event to a durable consumer.
pub struct Delivery {
    /// The event.
    pub event: StoredEvent,
    /// 1 for the first delivery, 2 for the first redelivery, ...
    pub attempt: u32,
    acker: Box<dyn Acker>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("event", &self.event)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// Wraps an event with its backend acknowledgement handle.
    pub fn new(event: StoredEvent, attempt: u32, acker: Box<dyn Acker>) -> Self {
        Delivery {
            event,
            attempt,
            acker,
        }
    }

    /// The envelope.
    pub fn envelope(&self) -> &EventEnvelope {
        &self.event.envelope
    }

    /// Acknowledge: processed, never deliver again. Idempotent.
    pub async fn ack(&self) -> Result<()> {
        self.acker.ack().await
    }

    /// Acknowledges every delivery of `deliveries` (processed, never deliver
    /// again) and returns once each of those acks is confirmed, as
    /// [`Delivery::ack`] confirms one: a durable backend has them on disk.
    /// It acknowledges exactly the deliveries given, none other (not an
    /// "ack all up to"). Cheaper than awaiting each `ack()`: on NATS the
    /// acks of one consumer are sent without waiting and only the last is
    /// confirmed, which confirms those sent before it on the same
    /// connection. On an error some of them may be acknowledged and others
    /// not; acks are idempotent, so acknowledging the whole set again is
    /// safe.
    pub async fn ack_all<'a>(deliveries: impl IntoIterator<Item = &'a Delivery>) -> Result<()> {
        let mut ordered: Vec<(String, Vec<&Delivery>)> = Vec::new();
        let mut alone = Vec::new();
        for d in deliveries {
            match d.acker.ordered_acks() {
                Some(key) => match ordered.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, group)) => group.push(d),
                    None => ordered.push((key, vec![d])),
                },
                None => alone.push(d),
            }
        }
        let mut work: Vec<futures::future::BoxFuture<'_, Result<()>>> = Vec::new();
        for (_, group) in ordered {
            work.push(Box::pin(async move {
                let Some((last, before)) = group.split_last() else {
                    return Ok(());
                };
                for d in before {
                    d.acker.ack_unconfirmed().await?;
                }
                last.acker.ack().await
            }));
        }
        for d in alone {
            work.push(Box::pin(d.acker.ack()));
        }
        let mut first_error = Ok(());
        for r in futures::future::join_all(work).await {
            if first_error.is_ok() {
                first_error = r;
            }
        }
        first_error
    }

    /// Negative acknowledge: redeliver after the consumer's backoff (or at once
    /// without backoff). On the last allowed attempt the event is dead-lettered.
    pub async fn nak(&self) -> Result<()> {
        self.acker.nak(None, None).await
    }

    /// Negative acknowledge with an explicit redelivery delay.
    pub async fn nak_with_delay(&self, delay: Duration) -> Result<()> {
        self.acker.nak(Some(delay), None).await
    }

    /// Negative acknowledge with the reason recorded if this was the last attempt.
    pub async fn nak_with_reason(
        &self,
        delay: Option<Duration>,
        reason: impl Into<String>,
    ) -> Result<()> {
        self.acker.nak(delay, Some(reason.into())).await
    }

    /// Terminate: never redeliver; the event goes to the dead-letter store with `reason`.
    pub async fn term(&self, reason: impl Into<String>) -> Result<()> {
        self.acker.term(reason.into()).await
    }

    /// Still working on it: restart the ack-wait clock.
    pub async fn in_progress(&self) -> Result<()> {
        self.acker.in_progress().await
    }
}

/// Backend side of a [`Consumer`] handle.
#[async_trait]
pub trait ConsumerBackend: Send {
    /// Waits for the next delivery (new event or redelivery).
    async fn next(&mut self) -> Result<Delivery>;
    /// Up to `max` deliveries, waiting at most `wait` for the first one; an empty
    /// vector when none arrived in time.
    async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>>;
    /// Current consumer state.
    async fn info(&self) -> Result<ConsumerInfo>;
    /// Stops pulling and hands back at once whatever reached this handle but
    /// was not returned, so other handles get it without waiting for the ack
    /// wait. The default has nothing to hand back.
    async fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A handle on a durable consumer. Several handles with one name (in one
/// process or many) share the consumer: each event goes to one of them.
/// Dropping the handle leaves the consumer and its position in place.
pub struct Consumer {
    name: String,
    inner: Box<dyn ConsumerBackend>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("name", &self.name)
            .finish()
    }
}

impl Consumer {
    /// Wraps a backend consumer.
    pub fn new(name: impl Into<String>, inner: Box<dyn ConsumerBackend>) -> Self {
        Consumer {
            name: name.into(),
            inner,
        }
    }

    /// The durable name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits for the next delivery, asking the backend for one event at a
    /// time (consumer counts stay exact; use [`Consumer::fetch`] for
    /// throughput). Cancel-safe: dropping the future loses no event.
    pub async fn next(&mut self) -> Result<Delivery> {
        self.inner.next().await
    }

    /// Up to `max` deliveries, waiting at most `wait` for the first.
    pub async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        self.inner.fetch(max, wait).await
    }

    /// Current consumer state.
    pub async fn info(&self) -> Result<ConsumerInfo> {
        self.inner.info().await
    }

    /// Closes the handle gracefully: events that reached it but were not
    /// returned go back to the consumer at once (instead of after the ack
    /// wait). Deliveries already returned keep their ack handles. Dropping a
    /// handle without `close` is safe too, only slower to hand back.
    pub async fn close(mut self) -> Result<()> {
        self.inner.close().await
    }
}

/// A live, at-most-once subscription: events published after it was created
/// that match its filter. A subscriber that falls behind loses events (what
/// core NATS gives); use a durable consumer for at-least-once.
pub struct Subscription {
    inner: BoxStream<'static, Result<LiveEvent>>,
}

impl Subscription {
    /// Wraps a backend stream.
    pub fn new(inner: BoxStream<'static, Result<LiveEvent>>) -> Self {
        Subscription { inner }
    }

    /// The next event, or `None` when the bus closed the subscription.
    pub async fn next(&mut self) -> Option<Result<LiveEvent>> {
        self.inner.next().await
    }
}

impl Stream for Subscription {
    type Item = Result<LiveEvent>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// A finite, ordered read of history: every stored event matching the filter
/// from the start position up to the head as it was when the replay began,
/// then the stream ends.
pub struct Replay {
    inner: BoxStream<'static, Result<StoredEvent>>,
}

impl Replay {
    /// Wraps a backend stream.
    pub fn new(inner: BoxStream<'static, Result<StoredEvent>>) -> Self {
        Replay { inner }
    }

    /// The next event, or `None` at the head.
    pub async fn next(&mut self) -> Option<Result<StoredEvent>> {
        self.inner.next().await
    }

    /// Reads everything up to the head.
    pub async fn collect_all(mut self) -> Result<Vec<StoredEvent>> {
        let mut out = Vec::new();
        while let Some(e) = self.next().await {
            out.push(e?);
        }
        Ok(out)
    }
}

impl Stream for Replay {
    type Item = Result<StoredEvent>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// The event bus every backend implements. Object safe: use `Arc<dyn Bus>`.
///
/// Guarantees every backend gives (the contract suite checks each):
/// - positions are unique and increase in publish order;
/// - events of one aggregate published by one publisher (or in one batch) are
///   stored, replayed and first-delivered in that order;
/// - an event id stored inside the duplicate window is not stored again: the
///   receipt has `duplicate: true` and the first position;
/// - a failed batch may have stored some of its events (memory: a prefix;
///   NATS pipelines the batch, so any subset): retrying the whole batch is
///   safe because event ids deduplicate.
#[async_trait]
pub trait Bus: Send + Sync {
    /// Short backend name for logs: "memory", "nats", "embedded".
    fn backend(&self) -> &'static str;

    /// The subject layout (prefix) of this bus.
    fn layout(&self) -> &SubjectLayout;

    /// Publishes one event and waits until it is stored.
    async fn publish(&self, event: EventEnvelope) -> Result<Receipt>;

    /// Publishes an ordered batch of events of one aggregate; one receipt per event.
    async fn publish_batch(&self, events: Vec<EventEnvelope>) -> Result<Vec<Receipt>>;

    /// Subscribes to live events matching `filter` (at-most-once per
    /// publish: on NATS a publish the bus retried after its acknowledgement
    /// timed out can arrive twice, with the same event id).
    async fn subscribe(&self, filter: &Filter) -> Result<Subscription>;

    /// Creates the durable consumer, or binds to it when it exists.
    async fn consumer(&self, config: ConsumerConfig) -> Result<Consumer>;

    /// State of a durable consumer.
    async fn consumer_info(&self, name: &str) -> Result<ConsumerInfo>;

    /// Deletes a durable consumer and its position. Its dead letters remain.
    async fn delete_consumer(&self, name: &str) -> Result<()>;

    /// Reads history matching `filter` from `from` up to the current head.
    async fn replay(&self, filter: &Filter, from: StartPosition) -> Result<Replay>;

    /// Dead-lettered events, oldest first; of one consumer, or of all when `None`.
    async fn dead_letters(&self, consumer: Option<&str>) -> Result<Vec<DeadLetter>>;

    /// Sends dead letters of `consumer` back to that consumer, and to no
    /// other: its handles receive each as a fresh delivery (attempt 1 again,
    /// its own `max_deliver` attempts) of the original stored event
    /// (position, subject, store time, envelope). A dead letter stays in the
    /// store until the consumer acknowledges its redelivery, then it is
    /// removed; a redelivery that fails again is dead-lettered again (with
    /// the new reason) in its place. Redriving a dead letter that is already
    /// on its way back does not queue it twice, so a redrive repeated after
    /// a crash sends nothing twice. `NotFound` when the consumer does not exist.
    async fn redrive_dead_letters(
        &self,
        consumer: &str,
        selection: &RedriveSelection,
    ) -> Result<RedriveReport>;

    /// State of the event stream.
    async fn stream_info(&self) -> Result<StreamInfo>;

    /// Appends events of one aggregate if its version meets `expected`: all
    /// of them are stored or none. The bus numbers them: their envelope
    /// `sequence`s become `version + 1 ..= version + k` (whatever they held),
    /// and the receipt gives the new version and each event's position.
    ///
    /// The check and the write are one step of the storage (no read then
    /// write): of several appends expecting the same version, exactly one is
    /// stored and the others fail with [`BusError::VersionConflict`], which
    /// carries the expected and the actual version.
    ///
    /// Retrying is safe: an append whose event ids (in order) equal those of
    /// the aggregate's latest append, or of the append that took the expected
    /// version + 1, is that append again (its acknowledgement was lost): the
    /// receipt repeats its version and positions with `duplicate: true`, and
    /// nothing is stored. An append reusing some other stored event id
    /// inside the duplicate window stores nothing and fails with
    /// [`BusError::Conflict`].
    ///
    /// At most [`MAX_APPEND_EVENTS`](crate::MAX_APPEND_EVENTS) events; an
    /// empty, mixed or otherwise invalid append is an error and stores
    /// nothing. Needs a log (JetStream; nats-server 2.12 or later for the
    /// nats backend): elsewhere [`BusError::Unsupported`].
    async fn append(
        &self,
        expected: ExpectedVersion,
        events: Vec<EventEnvelope>,
    ) -> Result<AppendReceipt>;

    /// One aggregate's version and its appended events with a version
    /// greater than `after_version` (0: all of them), in version order. The
    /// cost follows this aggregate's appends and events, not the stream's
    /// size. An aggregate without events is version 0 with no events, not
    /// an error. When events it needs were removed by the stream's limits
    /// (`max_age`, `max_msgs`, `max_bytes`) the load fails with
    /// [`BusError::NotFound`] rather than return a history with a hole.
    async fn load(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after_version: u64,
    ) -> Result<AggregateHistory>;

    /// Keeps `snapshot` as the aggregate's latest, unless a snapshot of the
    /// same or a later version is already kept (then nothing changes). A
    /// snapshot of a version the aggregate has not reached is an
    /// [`BusError::InvalidArgument`].
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<()>;

    /// The aggregate's latest snapshot, if any.
    async fn load_snapshot(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Option<Snapshot>>;

    /// The aggregate's latest snapshot (if any) and its events after the
    /// snapshot's version: what rebuilding its state needs.
    async fn load_from_snapshot(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<(Option<Snapshot>, AggregateHistory)> {
        let snapshot = self.load_snapshot(aggregate_type, aggregate_id).await?;
        let after = snapshot.as_ref().map_or(0, |s| s.version);
        let history = self.load(aggregate_type, aggregate_id, after).await?;
        Ok((snapshot, history))
    }

    /// Releases what the bus owns (connections; the bundled server of the
    /// embedded backend, shut down cleanly). Handles already taken may stop
    /// working. The default does nothing.
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}
