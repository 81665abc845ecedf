//! Durable consumers on JetStream pull consumers.
//!
//! A handle owns one inbox subscription and at most one outstanding pull
//! request. `next()` asks the server for one message at a time and `fetch(n)`
//! for up to n, so the server never counts as delivered more than the caller
//! asked for (consumer counts stay exact and handles sharing a consumer split
//! the work). Messages that arrive after a caller stopped waiting stay in the
//! handle's buffer for the next call: nothing is lost when a `next()` future
//! is dropped.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, FromConsumer, pull};
use async_nats::{StatusCode, Subscriber};
use async_trait::async_trait;
use bus_core::{
    Acker, BusError, Consumer, ConsumerBackend, ConsumerConfig, ConsumerInfo, Delivery, Result,
    StartPosition, StoredEvent,
};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use tokio::time::Instant;

use crate::{Inner, errors, redrive, wire};

/// How long one pull request of `next()` waits on the server before it is renewed.
const NEXT_EXPIRES: Duration = Duration::from_secs(5);
/// Slack after a pull request's expiry before we stop waiting for its end marker.
const EXPIRY_GRACE: Duration = Duration::from_secs(1);
/// JetStream's "no limit" for a consumer's max_deliver.
const UNLIMITED: i64 = -1;
/// When dead-lettering an exhausted event fails, it is handed back to the
/// server to come again after this much per failed try so far (capped by
/// [`DEAD_LETTER_RETRY_MAX`]), and whichever handle receives it tries again.
const DEAD_LETTER_RETRY: Duration = Duration::from_secs(1);
const DEAD_LETTER_RETRY_MAX: Duration = Duration::from_secs(30);
/// How often a handle looks at the redrive queue while it finds nothing
/// there (it looks again at once after finding an item).
const REDRIVE_POLL: Duration = Duration::from_secs(1);
/// How long `fetch` waits for the rest of a pull that the server said has
/// more to send (the last delivery's pending count was not zero) once the
/// messages already received are handed out: a pull's messages arrive back
/// to back, so a gap this long means the server is holding them (e.g. the
/// consumer reached max_ack_pending) and the call returns what it has.
const BATCH_GAP: Duration = Duration::from_millis(20);

fn stream_handle_error(inner: &Inner, e: impl std::fmt::Display) -> BusError {
    errors::classify(&format!("using stream {}", inner.config.stream_name), e)
}

async fn stream(inner: &Inner) -> Result<async_nats::jetstream::stream::Stream<()>> {
    let js = inner.js("a durable consumer")?;
    js.get_stream_no_info(&inner.config.stream_name)
        .await
        .map_err(|e| stream_handle_error(inner, e))
}

fn not_found(name: &str) -> BusError {
    BusError::NotFound {
        what: "consumer",
        name: name.to_owned(),
    }
}

fn is_not_found(e: &impl std::fmt::Display) -> bool {
    let text = e.to_string();
    text.contains("10014") || text.to_lowercase().contains("consumer not found")
}

/// The server-side configuration for `cfg`. The server gets no delivery
/// limit: the caller's `max_deliver` is enforced by the handles, and a
/// delivery beyond it is how a handle learns that the last allowed attempt
/// timed out (see the crate docs). With a server-side limit, that delivery
/// would be the server's last: if dead-lettering it failed, or the handle
/// holding it went away, the server would drop the event.
fn server_config(cfg: &ConsumerConfig) -> pull::Config {
    let filters: Vec<String> = cfg.filters.iter().map(|f| f.as_str().to_owned()).collect();
    let (filter_subject, filter_subjects) = if filters.len() == 1 {
        (filters[0].clone(), Vec::new())
    } else {
        (String::new(), filters)
    };
    let mut backoff = cfg.backoff.clone();
    backoff.truncate(cfg.max_deliver as usize);
    pull::Config {
        durable_name: Some(cfg.name.clone()),
        name: Some(cfg.name.clone()),
        deliver_policy: deliver_policy(cfg.start),
        ack_policy: AckPolicy::Explicit,
        ack_wait: cfg.ack_wait,
        max_deliver: UNLIMITED,
        filter_subject,
        filter_subjects,
        max_ack_pending: i64::try_from(cfg.max_ack_pending).unwrap_or(i64::MAX),
        backoff,
        ..Default::default()
    }
}

fn deliver_policy(start: StartPosition) -> DeliverPolicy {
    match start {
        StartPosition::Beginning | StartPosition::Position(0) => DeliverPolicy::All,
        StartPosition::Position(p) => DeliverPolicy::ByStartSequence { start_sequence: p },
        StartPosition::Time(t) => DeliverPolicy::ByStartTime {
            start_time: wire::offset_time(t),
        },
        StartPosition::New => DeliverPolicy::New,
    }
}

fn filters_of(c: &consumer::Config) -> BTreeSet<String> {
    let mut set: BTreeSet<String> = c.filter_subjects.iter().cloned().collect();
    if !c.filter_subject.is_empty() {
        set.insert(c.filter_subject.clone());
    }
    set
}

/// Creates the durable consumer or binds to it, then returns a handle.
pub async fn open(inner: Arc<Inner>, cfg: ConsumerConfig) -> Result<Consumer> {
    let stream = stream(&inner).await?;
    let want = server_config(&cfg);
    let mut attempts = 0;
    loop {
        attempts += 1;
        match stream.consumer_info(&cfg.name).await {
            Ok(info) => {
                let have = info.config;
                let want_filters: BTreeSet<String> =
                    cfg.filters.iter().map(|f| f.as_str().to_owned()).collect();
                if filters_of(&have) != want_filters {
                    return Err(BusError::Conflict(format!(
                        "consumer {} exists with filters {:?}, not {:?}; delete it or use another name",
                        cfg.name,
                        filters_of(&have),
                        want_filters
                    )));
                }
                let same = have.max_deliver == want.max_deliver
                    && have.backoff == want.backoff
                    && have.max_ack_pending == want.max_ack_pending
                    && (!want.backoff.is_empty() || have.ack_wait == want.ack_wait);
                if !same {
                    let mut updated = pull::Config::try_from_consumer_config(have)
                        .map_err(|e| BusError::Backend(format!("consumer {}: {e}", cfg.name)))?;
                    updated.ack_wait = want.ack_wait;
                    updated.max_deliver = want.max_deliver;
                    updated.backoff = want.backoff.clone();
                    updated.max_ack_pending = want.max_ack_pending;
                    stream.update_consumer(updated).await.map_err(|e| {
                        errors::classify(&format!("updating consumer {}", cfg.name), e)
                    })?;
                }
                break;
            }
            Err(e) if is_not_found(&e) => match stream.create_consumer_strict(want.clone()).await {
                Ok(_) => break,
                // Another handle created it meanwhile: bind to it.
                Err(e) if e.to_string().contains("10148") && attempts < 3 => continue,
                Err(e)
                    if e.to_string().to_lowercase().contains("already exists") && attempts < 3 =>
                {
                    continue;
                }
                Err(e) => {
                    return Err(errors::classify(
                        &format!("creating consumer {}", cfg.name),
                        e,
                    ));
                }
            },
            Err(e) => {
                return Err(errors::classify(
                    &format!("reading consumer {}", cfg.name),
                    e,
                ));
            }
        }
    }
    let inbox = inner.client.new_inbox();
    let sub = inner
        .client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| errors::classify(&format!("subscribing for consumer {}", cfg.name), e))?;
    let redrive_inbox = inner.client.new_inbox();
    let redrive_sub = inner
        .client
        .subscribe(redrive_inbox.clone())
        .await
        .map_err(|e| errors::classify(&format!("subscribing for consumer {}", cfg.name), e))?;
    let name = cfg.name.clone();
    let handle = NatsConsumer {
        next_subject: format!(
            "$JS.API.CONSUMER.MSG.NEXT.{}.{}",
            inner.config.stream_name, cfg.name
        ),
        redrive: RedriveSource {
            next_subject: format!(
                "$JS.API.CONSUMER.MSG.NEXT.{}.{}",
                inner.redrive_stream, cfg.name
            ),
            inbox: redrive_inbox,
            sub: redrive_sub,
            look_at: Instant::now(),
            outstanding: false,
        },
        settings: Arc::new(cfg),
        inner,
        inbox,
        sub,
        buffer: VecDeque::new(),
        pull: None,
        more_pending: false,
    };
    Ok(Consumer::new(name, Box::new(handle)))
}

/// The event consumer's server-side configuration (`NotFound` when it does not exist).
pub async fn server_config_of(inner: &Inner, name: &str) -> Result<consumer::Config> {
    let stream = stream(inner).await?;
    let info = stream.consumer_info(name).await.map_err(|e| {
        if is_not_found(&e) {
            not_found(name)
        } else {
            errors::classify(&format!("reading consumer {name}"), e)
        }
    })?;
    Ok(info.config)
}

/// Consumer state as the contract reports it.
pub async fn info(inner: &Inner, name: &str) -> Result<ConsumerInfo> {
    let stream = stream(inner).await?;
    let info = stream.consumer_info(name).await.map_err(|e| {
        if is_not_found(&e) {
            not_found(name)
        } else {
            errors::classify(&format!("reading consumer {name}"), e)
        }
    })?;
    let dead_lettered = dead_letter_count(inner, name).await?;
    Ok(ConsumerInfo {
        name: info.name,
        filters: filters_of(&info.config).into_iter().collect(),
        num_pending: info.num_pending,
        num_ack_pending: info.num_ack_pending as u64,
        num_redelivered: info.num_redelivered as u64,
        delivered: info.delivered.stream_sequence,
        ack_floor: info.ack_floor.stream_sequence,
        dead_lettered,
    })
}

async fn dead_letter_count(inner: &Inner, consumer: &str) -> Result<u64> {
    let js = inner.js("reading dead letters")?;
    let dlq = js
        .get_stream_no_info(&inner.dead_letter_stream)
        .await
        .map_err(|e| errors::classify("reading the dead-letter stream", e))?;
    let subject = inner.dead_letter_subject(consumer);
    let mut info = dlq
        .info_with_subjects(&subject)
        .await
        .map_err(|e| errors::classify("reading the dead-letter stream", e))?;
    let mut count = 0;
    while let Some(entry) = info.next().await {
        let (_, n) = entry.map_err(|e| errors::classify("reading the dead-letter stream", e))?;
        count += n as u64;
    }
    Ok(count)
}

/// Deletes a durable consumer.
pub async fn delete(inner: &Inner, name: &str) -> Result<()> {
    let stream = stream(inner).await?;
    stream.delete_consumer(name).await.map_err(|e| {
        if is_not_found(&e) {
            not_found(name)
        } else {
            errors::classify(&format!("deleting consumer {name}"), e)
        }
    })?;
    // Its dead letters remain; items on their way back stay queued for a
    // consumer created again under this name.
    redrive::delete_queue_consumer(inner, name).await
}

/// One outstanding pull request.
struct Pull {
    remaining: usize,
    ends_at: Instant,
}

/// The handle's view of the redrive queue: dead letters sent back to this
/// consumer. It asks for one item at a time (`no_wait`), at most every
/// [`REDRIVE_POLL`] while the queue is empty, so a consumer without
/// redrives pays one small request a second.
struct RedriveSource {
    next_subject: String,
    inbox: String,
    sub: Subscriber,
    /// When to look at the queue next.
    look_at: Instant,
    /// A request was sent whose answer has not been read yet (it may still
    /// come after a dropped `next()`; the next look reads it first).
    outstanding: bool,
}

struct NatsConsumer {
    inner: Arc<Inner>,
    settings: Arc<ConsumerConfig>,
    next_subject: String,
    inbox: String,
    sub: Subscriber,
    buffer: VecDeque<async_nats::Message>,
    pull: Option<Pull>,
    /// The last delivery received said messages remain for this consumer
    /// after it (the pending count of its ack subject).
    more_pending: bool,
    redrive: RedriveSource,
}

impl NatsConsumer {
    async fn request(&mut self, batch: usize, expires: Duration, no_wait: bool) -> Result<()> {
        let expires = expires.max(Duration::from_millis(10));
        let body = serde_json::json!({
            "batch": batch,
            "expires": u64::try_from(expires.as_nanos()).unwrap_or(u64::MAX),
            "no_wait": no_wait,
        });
        self.inner
            .client
            .publish_with_reply(
                self.next_subject.clone(),
                self.inbox.clone(),
                Bytes::from(body.to_string()),
            )
            .await
            .map_err(|e| {
                errors::classify(&format!("pulling from consumer {}", self.settings.name), e)
            })?;
        self.pull = Some(Pull {
            remaining: batch,
            ends_at: Instant::now() + expires + EXPIRY_GRACE,
        });
        Ok(())
    }

    /// Waits for one message or status on the inbox until `deadline`; returns
    /// false on timeout.
    async fn receive(&mut self, deadline: Instant) -> Result<bool> {
        let deadline = match &self.pull {
            Some(p) => deadline.min(p.ends_at),
            None => deadline,
        };
        match tokio::time::timeout_at(deadline, self.sub.next()).await {
            Err(_) => {
                if self
                    .pull
                    .as_ref()
                    .is_some_and(|p| Instant::now() >= p.ends_at)
                {
                    self.pull = None;
                }
                Ok(false)
            }
            Ok(None) => Err(BusError::Closed(format!(
                "consumer {}: subscription closed",
                self.settings.name
            ))),
            Ok(Some(m)) => {
                self.absorb(m).await?;
                Ok(true)
            }
        }
    }

    /// Takes every message already waiting on the inbox without blocking.
    async fn drain_ready(&mut self) -> Result<()> {
        while let Some(next) = self.sub.next().now_or_never() {
            match next {
                Some(m) => self.absorb(m).await?,
                None => break,
            }
        }
        Ok(())
    }

    async fn absorb(&mut self, m: async_nats::Message) -> Result<()> {
        match m.status {
            None | Some(StatusCode::OK) => {
                self.more_pending = m
                    .reply
                    .as_deref()
                    .and_then(ack_subject_pending)
                    .is_some_and(|pending| pending > 0);
                if let Some(p) = self.pull.as_mut() {
                    p.remaining = p.remaining.saturating_sub(1);
                    if p.remaining == 0 {
                        self.pull = None;
                    }
                }
                self.buffer.push_back(m);
            }
            Some(StatusCode::IDLE_HEARTBEAT) => {}
            Some(StatusCode::TIMEOUT) | Some(StatusCode::NOT_FOUND) => self.pull = None,
            Some(StatusCode::NO_RESPONDERS) => {
                self.pull = None;
                // Either the consumer is gone or JetStream is (re)starting.
                match info(&self.inner, &self.settings.name).await {
                    Err(e @ BusError::NotFound { .. }) => return Err(e),
                    _ => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
            Some(status) => {
                self.pull = None;
                let description = m.description.unwrap_or_default();
                if description.to_lowercase().contains("consumer deleted") {
                    return Err(not_found(&self.settings.name));
                }
                tracing::debug!(consumer = %self.settings.name, %status, %description, "pull request ended");
            }
        }
        Ok(())
    }

    /// The next buffered message as a delivery, dead-lettering deliveries
    /// beyond the caller's max_deliver on the way.
    async fn pop(&mut self) -> Result<Option<Delivery>> {
        while let Some(m) = self.buffer.pop_front() {
            if let Some(d) = self.deliverable(m).await? {
                return Ok(Some(d));
            }
        }
        Ok(None)
    }

    /// `m` as a delivery for the caller, or `None` when it is not one: a
    /// delivery beyond max_deliver or an undecodable body is dead-lettered
    /// here (or, if that fails, handed back to the server to try again).
    async fn deliverable(&self, m: async_nats::Message) -> Result<Option<Delivery>> {
        self.deliverable_from(m, false).await
    }

    /// As [`Self::deliverable`], for an event (`redriven` false) or an item
    /// of the redrive queue (the original event's identity is in its headers).
    async fn deliverable_from(
        &self,
        m: async_nats::Message,
        redriven: bool,
    ) -> Result<Option<Delivery>> {
        let Some(reply) = m.reply.clone() else {
            return Ok(None);
        };
        let js_message = async_nats::jetstream::Message {
            message: m,
            context: self.inner.js("a durable consumer")?.clone(),
        };
        let (mut position, delivered, mut stored_at) = match js_message.info() {
            Ok(i) => (
                i.stream_sequence,
                i.delivered,
                wire::system_time(i.published),
            ),
            Err(e) => {
                tracing::warn!(consumer = %self.settings.name, error = %e, "message without JetStream metadata skipped");
                return Ok(None);
            }
        };
        let m = js_message.message;
        let mut subject = m.subject.to_string();
        let mut redrive_of = None;
        if redriven {
            match wire::decode_redrive(m.headers.as_ref()) {
                Ok((original, original_subject, original_stored_at, dead_letter)) => {
                    position = original;
                    subject = original_subject;
                    stored_at = original_stored_at;
                    redrive_of = Some(dead_letter);
                }
                Err(e) => {
                    // Not ours to deliver; leave it for an operator to look at.
                    tracing::warn!(consumer = %self.settings.name, error = %e, "redrive item without its headers terminated");
                    let _ = self
                        .inner
                        .client
                        .publish(reply, Bytes::from_static(b"+TERM"))
                        .await;
                    return Ok(None);
                }
            }
        }
        let attempt = u32::try_from(delivered.max(1)).unwrap_or(u32::MAX);
        let acker = NatsAcker {
            inner: Arc::clone(&self.inner),
            settings: Arc::clone(&self.settings),
            reply: reply.to_string(),
            subject: subject.clone(),
            body: m.payload.clone(),
            position,
            stored_at,
            attempt,
            backing_off: AtomicBool::new(false),
            redrive_of,
        };
        if attempt > self.settings.max_deliver {
            let reason = format!(
                "not acknowledged within the ack wait on any of {} deliveries",
                self.settings.max_deliver
            );
            acker
                .dead_letter_or_retry(self.settings.max_deliver, &reason)
                .await;
            return Ok(None);
        }
        let envelope = match wire::decode(&subject, &m.payload) {
            Ok(e) => e,
            Err(e) => {
                // No handler can process bytes that are not an envelope.
                acker.dead_letter_or_retry(attempt, &e.to_string()).await;
                return Ok(None);
            }
        };
        let event = StoredEvent {
            position,
            subject,
            stored_at,
            envelope,
        };
        Ok(Some(Delivery::new(event, attempt, Box::new(acker))))
    }

    /// One redriven dead letter for this consumer, if the redrive queue has
    /// one and it is time to look (see [`RedriveSource`]).
    async fn take_redriven(&mut self) -> Result<Option<Delivery>> {
        loop {
            // An answer to an earlier look that came after its caller left.
            while let Some(Some(m)) = self.redrive.sub.next().now_or_never() {
                if let Some(d) = self.redriven_answer(m).await? {
                    return Ok(Some(d));
                }
            }
            if self.redrive.outstanding || Instant::now() < self.redrive.look_at {
                if self.redrive.outstanding && Instant::now() >= self.redrive.look_at {
                    // Its answer was lost; ask again.
                    self.redrive.outstanding = false;
                    continue;
                }
                return Ok(None);
            }
            let body = Bytes::from_static(br#"{"batch":1,"no_wait":true}"#);
            self.inner
                .client
                .publish_with_reply(
                    self.redrive.next_subject.clone(),
                    self.redrive.inbox.clone(),
                    body,
                )
                .await
                .map_err(|e| {
                    errors::classify(&format!("pulling from consumer {}", self.settings.name), e)
                })?;
            self.redrive.outstanding = true;
            self.redrive.look_at = Instant::now() + REDRIVE_POLL;
            let answer =
                tokio::time::timeout(self.inner.config.request_timeout, self.redrive.sub.next())
                    .await;
            match answer {
                Err(_) => return Ok(None),
                Ok(None) => {
                    return Err(BusError::Closed(format!(
                        "consumer {}: subscription closed",
                        self.settings.name
                    )));
                }
                Ok(Some(m)) => {
                    let found = m.status.is_none() || m.status == Some(StatusCode::OK);
                    let d = self.redriven_answer(m).await?;
                    if d.is_some() || !found {
                        return Ok(d);
                    }
                    // An item that was not deliverable (dead-lettered): look again.
                }
            }
        }
    }

    /// Reads one answer of the redrive queue: an item becomes a delivery
    /// (and the queue is looked at again at once), a status means empty.
    async fn redriven_answer(&mut self, m: async_nats::Message) -> Result<Option<Delivery>> {
        self.redrive.outstanding = false;
        match m.status {
            None | Some(StatusCode::OK) => {
                self.redrive.look_at = Instant::now();
                self.deliverable_from(m, true).await
            }
            _ => Ok(None),
        }
    }

    /// True when `m` is a delivery beyond the caller's max_deliver.
    fn exhausted(&self, m: &async_nats::Message) -> bool {
        let Ok(js) = self.inner.js("a durable consumer") else {
            return false;
        };
        let js_message = async_nats::jetstream::Message {
            message: m.clone(),
            context: js.clone(),
        };
        js_message
            .info()
            .is_ok_and(|i| i.delivered > i64::from(self.settings.max_deliver))
    }
}

#[async_trait]
impl ConsumerBackend for NatsConsumer {
    async fn next(&mut self) -> Result<Delivery> {
        loop {
            if let Some(d) = self.pop().await? {
                return Ok(d);
            }
            if let Some(d) = self.take_redriven().await? {
                return Ok(d);
            }
            if self.pull.is_none() {
                self.request(1, NEXT_EXPIRES, false).await?;
            }
            let far = Instant::now() + NEXT_EXPIRES + EXPIRY_GRACE;
            self.receive(far.min(self.redrive.look_at)).await?;
        }
    }

    async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        let mut out = Vec::new();
        if max == 0 {
            return Ok(out);
        }
        let deadline = Instant::now() + wait;
        loop {
            // Redriven dead letters (looked for at most once a second).
            while out.len() < max {
                match self.take_redriven().await? {
                    Some(d) => out.push(d),
                    None => break,
                }
            }
            self.drain_ready().await?;
            while out.len() < max {
                match self.pop().await? {
                    Some(d) => out.push(d),
                    None => break,
                }
            }
            if out.len() == max {
                return Ok(out);
            }
            if !out.is_empty() && self.buffer.is_empty() {
                // The rest of this pull is on its way when the server said
                // messages remain: take them too (briefly), so one call
                // returns a whole batch rather than what the socket held,
                // and a batch acknowledgement confirms once per batch.
                if self.pull.is_none() || !self.more_pending {
                    return Ok(out);
                }
                let until = (Instant::now() + BATCH_GAP).min(deadline);
                if !self.receive(until).await? {
                    return Ok(out);
                }
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(out);
            }
            if self.pull.is_none() {
                self.request(max - out.len(), deadline - now, true).await?;
            }
            if !self.receive(deadline.min(self.redrive.look_at)).await?
                && Instant::now() >= deadline
            {
                return Ok(out);
            }
        }
    }

    async fn info(&self) -> Result<ConsumerInfo> {
        info(&self.inner, &self.settings.name).await
    }

    async fn close(&mut self) -> Result<()> {
        // Let the outstanding pull request end (it is bounded by its
        // expiry), so nothing is still on its way to this handle...
        while self.pull.is_some() {
            let ends_at = self.pull.as_ref().map_or_else(Instant::now, |p| p.ends_at);
            if !self.receive(ends_at).await? {
                break;
            }
        }
        self.drain_ready().await?;
        while let Some(Some(m)) = self.redrive.sub.next().now_or_never() {
            if m.status.is_none() || m.status == Some(StatusCode::OK) {
                if let Some(reply) = m.reply {
                    self.inner
                        .client
                        .publish(reply, Bytes::from_static(b"-NAK"))
                        .await
                        .map_err(|e| errors::classify("returning undelivered events", e))?;
                }
            }
        }
        // ...then dead-letter what is exhausted and give back the rest.
        while let Some(m) = self.buffer.pop_front() {
            if self.exhausted(&m) {
                // Dead-letters it, or hands it back to try again later.
                let handed_out = self.deliverable(m).await?;
                debug_assert!(handed_out.is_none(), "an exhausted event became a delivery");
                continue;
            }
            if let Some(reply) = m.reply {
                self.inner
                    .client
                    .publish(reply, Bytes::from_static(b"-NAK"))
                    .await
                    .map_err(|e| errors::classify("returning undelivered events", e))?;
            }
        }
        self.inner
            .client
            .flush()
            .await
            .map_err(|e| errors::classify("returning undelivered events", e))
    }
}

impl Drop for NatsConsumer {
    fn drop(&mut self) {
        // Messages buffered here, or already waiting on the inbox, would be
        // redelivered only after their ack wait; nak them now so another
        // handle gets them at once. (Any still in flight when the handle goes
        // away are redelivered after the ack wait, as JetStream does.) This
        // includes deliveries beyond max_deliver: the server-side consumer
        // has no delivery limit, so they come back and the handle that
        // receives them dead-letters them.
        while let Some(Some(m)) = self.sub.next().now_or_never() {
            if m.status.is_none() || m.status == Some(StatusCode::OK) {
                self.buffer.push_back(m);
            }
        }
        while let Some(Some(m)) = self.redrive.sub.next().now_or_never() {
            if m.status.is_none() || m.status == Some(StatusCode::OK) {
                self.buffer.push_back(m);
            }
        }
        for m in self.buffer.drain(..) {
            if let Some(reply) = m.reply {
                let client = self.inner.client.clone();
                if let Ok(handle) = tokio::runtime::Handle::try_current() {
                    handle.spawn(async move {
                        let _ = client.publish(reply, Bytes::from_static(b"-NAK")).await;
                    });
                }
            }
        }
    }
}

struct NatsAcker {
    inner: Arc<Inner>,
    settings: Arc<ConsumerConfig>,
    reply: String,
    subject: String,
    body: Bytes,
    position: u64,
    stored_at: SystemTime,
    attempt: u32,
    /// This delivery was nak'ed into its backoff (see `nak`): a later
    /// `in_progress` must not push the redelivery further out.
    backing_off: AtomicBool,
    /// For a redriven dead letter, its id (dead-letter stream sequence):
    /// removed once the consumer acknowledges, replaced if it fails again.
    redrive_of: Option<u64>,
}

impl NatsAcker {
    /// Sends an ack-kind and waits for the server to confirm it.
    async fn send(&self, body: Bytes, what: &str) -> Result<()> {
        self.inner
            .client
            .request(self.reply.clone(), body)
            .await
            .map(|_| ())
            .map_err(|e| {
                errors::classify(
                    &format!(
                        "{what} position {} for consumer {}",
                        self.position, self.settings.name
                    ),
                    e,
                )
            })
    }

    /// Stores the event in the dead-letter stream, then terminates it.
    async fn dead_letter(&self, attempts: u32, reason: &str) -> Result<()> {
        let js = self.inner.js("dead-lettering")?;
        let event = StoredEvent {
            position: self.position,
            subject: self.subject.clone(),
            stored_at: self.stored_at,
            envelope: Default::default(),
        };
        let headers = wire::dead_letter_headers(
            &event,
            &self.settings.name,
            attempts,
            reason,
            self.redrive_of,
        );
        let subject = self.inner.dead_letter_subject(&self.settings.name);
        let ack = js
            .publish_with_headers(subject.clone(), headers, self.body.clone())
            .await
            .map_err(|e| errors::publish(&subject, self.inner.config.request_timeout, &e))?;
        ack.await
            .map_err(|e| errors::publish(&subject, self.inner.config.request_timeout, &e))?;
        tracing::warn!(consumer = %self.settings.name, position = self.position, attempts, %reason, "event dead-lettered");
        if let Some(earlier) = self.redrive_of {
            // The new dead letter replaces the one this redrive came from.
            redrive::delete_dead_letter(&self.inner, earlier).await?;
        }
        self.send(Bytes::from_static(b"+TERM"), "terminating").await
    }
}

impl NatsAcker {
    /// Dead-letters the event; if that fails, hands it back to the server
    /// to come again after a delay, so that a handle tries again. Nothing
    /// here may drop it: an exhausted event ends in the dead-letter stream.
    async fn dead_letter_or_retry(&self, attempts: u32, reason: &str) {
        let Err(e) = self.dead_letter(attempts, reason).await else {
            return;
        };
        let tries = self
            .attempt
            .saturating_sub(self.settings.max_deliver)
            .max(1);
        let delay = DEAD_LETTER_RETRY
            .saturating_mul(tries)
            .min(DEAD_LETTER_RETRY_MAX);
        tracing::warn!(
            consumer = %self.settings.name,
            position = self.position,
            error = %e,
            retry_in = ?delay,
            "could not dead-letter an exhausted event; it comes back to try again"
        );
        let body = Bytes::from(format!(
            "-NAK {{\"delay\": {}}}",
            u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX)
        ));
        // Unconfirmed: if this nak is lost too, the ack wait brings it back.
        if let Err(e) = self.inner.client.publish(self.reply.clone(), body).await {
            tracing::warn!(
                consumer = %self.settings.name,
                position = self.position,
                error = %e,
                "could not hand an exhausted event back; it comes back after the ack wait"
            );
        }
    }
}

#[async_trait]
impl Acker for NatsAcker {
    async fn ack(&self) -> Result<()> {
        if let Some(dead_letter) = self.redrive_of {
            // First the dead letter, then the item: never an acknowledged
            // item whose dead letter could be redriven again (see `redrive`).
            redrive::delete_dead_letter(&self.inner, dead_letter).await?;
        }
        self.send(Bytes::from_static(b"+ACK"), "acknowledging")
            .await
    }

    /// The consumer's ack subjects on this bus's connection: a server
    /// applies one connection's acks for one consumer in the order sent and
    /// confirms an ack only once those before it are applied (nats-server)
    /// or on disk (ours); ARCHITECTURE.md, "Batch acknowledgement". A
    /// redriven dead letter has none: its ack deletes the dead letter first.
    fn ordered_acks(&self) -> Option<String> {
        if self.redrive_of.is_some() {
            return None;
        }
        ack_channel(&self.reply)
            .map(|consumer| format!("{:p} {consumer}", Arc::as_ptr(&self.inner)))
    }

    async fn ack_unconfirmed(&self) -> Result<()> {
        if self.redrive_of.is_some() {
            return self.ack().await;
        }
        self.inner
            .client
            .publish(self.reply.clone(), Bytes::from_static(b"+ACK"))
            .await
            .map_err(|e| {
                errors::classify(
                    &format!(
                        "acknowledging position {} for consumer {}",
                        self.position, self.settings.name
                    ),
                    e,
                )
            })
    }

    async fn nak(&self, delay: Option<Duration>, reason: Option<String>) -> Result<()> {
        if self.attempt >= self.settings.max_deliver {
            let reason = reason.unwrap_or_else(|| {
                format!(
                    "negatively acknowledged on the last of {} deliveries",
                    self.settings.max_deliver
                )
            });
            return self.dead_letter(self.attempt, &reason).await;
        }
        if delay.is_none() && !self.settings.backoff.is_empty() {
            // Redeliver after backoff[attempt-1]. A nak delay would not say
            // that: nats-server counts it from the backoff deadline, not from
            // now (it redelivers after delay + backoff[attempt-1] -
            // backoff[0]). Restarting the ack timer does: the server-side
            // consumer has the same backoff list, so it redelivers after
            // backoff[attempt-1] from now.
            self.backing_off.store(true, Ordering::Relaxed);
            return self
                .send(Bytes::from_static(b"+WPI"), "negatively acknowledging")
                .await;
        }
        let body = match delay {
            Some(d) if !d.is_zero() => Bytes::from(format!(
                "-NAK {{\"delay\": {}}}",
                u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
            )),
            _ => Bytes::from_static(b"-NAK"),
        };
        self.send(body, "negatively acknowledging").await
    }

    async fn term(&self, reason: String) -> Result<()> {
        self.dead_letter(self.attempt, &reason).await
    }

    async fn in_progress(&self) -> Result<()> {
        if self.backing_off.load(Ordering::Relaxed) {
            // Nak'ed: no longer in progress (as on every backend).
            return Ok(());
        }
        self.send(Bytes::from_static(b"+WPI"), "extending").await
    }
}

/// The stream and consumer part of an ack subject
/// (`$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer
/// seq>.<timestamp>.<pending>`, or with `<domain>.<account hash>` in front
/// and possibly a token after), or `None` for a subject of another form.
fn ack_channel(reply: &str) -> Option<&str> {
    let rest = reply.strip_prefix("$JS.ACK.")?;
    let keep = match rest.split('.').count() {
        7 => 2,
        9 | 10 => 4,
        _ => return None,
    };
    let end = rest.match_indices('.').nth(keep - 1).map(|(i, _)| i)?;
    Some(&rest[..end])
}

/// The pending count of an ack subject of the forms [`ack_channel`]
/// reads: how many messages the consumer still had to deliver after this
/// one; `None` for a subject of another form.
fn ack_subject_pending(reply: &str) -> Option<u64> {
    let rest = reply.strip_prefix("$JS.ACK.")?;
    let at = match rest.split('.').count() {
        7 => 6,
        9 | 10 => 8,
        _ => return None,
    };
    rest.split('.').nth(at)?.parse().ok()
}

#[cfg(test)]
mod ack_channel_tests {
    use super::{ack_channel, ack_subject_pending};

    #[test]
    fn the_pending_count_is_read_from_both_ack_subject_forms() {
        assert_eq!(
            ack_subject_pending("$JS.ACK.EVENTS.drain.1.10.10.1700000000.5"),
            Some(5)
        );
        assert_eq!(
            ack_subject_pending("$JS.ACK.EVENTS.drain.1.10.10.1700000000.0"),
            Some(0)
        );
        assert_eq!(
            ack_subject_pending("$JS.ACK.hub.ABC.EVENTS.drain.1.10.10.1700000000.7.x"),
            Some(7)
        );
        assert_eq!(
            ack_subject_pending("$JS.ACK.hub.ABC.EVENTS.drain.1.10.10.1700000000.7"),
            Some(7)
        );
        assert_eq!(ack_subject_pending("_INBOX.abc"), None);
        assert_eq!(ack_subject_pending("$JS.ACK.EVENTS.drain.1"), None);
        assert_eq!(
            ack_subject_pending("$JS.ACK.EVENTS.drain.1.10.10.1700000000.x"),
            None
        );
    }

    #[test]
    fn acks_of_one_consumer_share_a_channel_and_other_consumers_do_not() {
        let a = ack_channel("$JS.ACK.EVENTS.drain.1.10.10.1700000000.5");
        let b = ack_channel("$JS.ACK.EVENTS.drain.2.11.12.1700000001.4");
        let c = ack_channel("$JS.ACK.EVENTS.other.1.10.10.1700000000.5");
        assert_eq!(a, Some("EVENTS.drain"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            ack_channel("$JS.ACK.hub.ABC.EVENTS.drain.1.10.10.1700000000.5.x"),
            Some("hub.ABC.EVENTS.drain")
        );
        assert_eq!(ack_channel("_INBOX.abc"), None);
        assert_eq!(ack_channel("$JS.ACK.EVENTS.drain.1"), None);
    }
}
