//! # bus-nats: the Bus on a NATS server or cluster, via async-nats
//!
//! Two modes, chosen by `[bus.nats] jetstream`:
//! - **core** (`false`): publish and live subscribe over core NATS,
//!   at-most-once; receipts carry position 0. Durable consumers, replay,
//!   dead letters and stream info return [`BusError::Unsupported`].
//! - **JetStream** (`true`): at connect the event stream (`stream_name`, on
//!   `<prefix>.events.>`), the dead-letter stream (on
//!   `<prefix>.deadletter.>`) and the redrive queue (on `<prefix>.redrive.>`) are created, or checked against `[bus.stream]`
//!   (a difference is a `Conflict` listing it unless `update_stream = true`).
//!   Publishes wait for the PubAck, carry `Nats-Msg-Id` = event id, and are
//!   retried on ack timeouts with the same id. Durable consumers are JetStream
//!   pull consumers; replays are ordered consumers bounded by the head seen at
//!   their start.
//!
//! ## Layout
//! - `wire`: envelope <-> NATS message (body, headers), dead-letter headers.
//! - `streams`: the stream configuration we want, and create/check/update.
//! - `consumer`: durable consumer configuration, the pull loop behind a
//!   `Consumer` handle, acks, and dead-lettering.
//! - `replay`: bounded ordered reads for replays and dead letters.
//! - `aggregates`: the event store: appends with an expected version (one
//!   atomic batch: a marker on `<prefix>.aggregates.<type>.<key>` expecting
//!   the aggregate's last marker, then the events) and loads of one
//!   aggregate by direct gets.
//! - `atomic`: atomic batch publish (ADR-50) built from headers.
//! - `direct`: direct gets, single and batched.
//! - `snapshots`: the latest snapshot per aggregate in a KV bucket.
//! - `redrive`: sending dead letters back to their consumer through the
//!   redrive queue (`<stream_name>-redrive`, work-queue retention).
//! - `errors`: async-nats errors -> `BusError`.
//!
//! ## Backoff and nak delays
//! The consumer's backoff list goes to the server, which uses it for ack
//! timeouts. A nak without a delay restarts the ack timer (`+WPI`) so the
//! server redelivers after `backoff[attempt-1]` from the nak. An explicit
//! delay is sent as given (`-NAK {"delay": ..}`); note that nats-server 2.x,
//! when the consumer has a backoff list, counts such a delay from the
//! backoff deadline and redelivers after `delay + backoff[attempt-1] -
//! backoff[0]` (the bundled server redelivers after `delay`).
//!
//! ## Dead letters on JetStream
//! The server knows only "stop after max_deliver", and drops what it stops.
//! To dead-letter *every* exhausted event, even one whose last attempt timed
//! out while no handle was alive, the JetStream consumer has no delivery
//! limit and the handles enforce `max_deliver`: a nak (or term) on the last
//! allowed attempt publishes the event to the dead-letter stream and
//! terminates it; a delivery beyond the limit (the last attempt timed out) is
//! never handed to the caller but dead-lettered and terminated by whichever
//! handle receives it. Until both steps succeed the event stays on the
//! server: if the dead-letter publish fails, the handle naks it with a delay
//! to try again; a closed handle dead-letters what it holds, a dropped one
//! naks it, and one that vanishes leaves it to the ack wait, so a later
//! delivery (to any handle) dead-letters it. Dead-letter messages carry
//! `Nats-Msg-Id = dlq.<consumer>.<position>`, so a retry after a failure
//! between the two steps stores one dead letter (inside the dead-letter
//! stream's 2-minute duplicate window).

mod aggregates;
mod atomic;
mod consumer;
mod direct;
mod errors;
mod redrive;
mod replay;
mod snapshots;
mod streams;
pub mod wire;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use async_nats::jetstream;
use async_trait::async_trait;
use bus_core::config::NatsConfig;
use bus_core::{
    AggregateHistory, AppendReceipt, Bus, BusConfig, BusError, Consumer, ConsumerConfig,
    ConsumerInfo, DeadLetter, EventEnvelope, ExpectedVersion, Filter, LiveEvent, Receipt,
    RedriveReport, RedriveSelection, Replay, Result, Snapshot, StartPosition, StreamInfo,
    StreamSettings, SubjectLayout, Subscription, validate_batch,
};
use futures::StreamExt;
use prost::Message;

/// The token after the prefix for dead-letter subjects.
pub const DEAD_LETTER_TOKEN: &str = "deadletter";

/// Subject token of the redrive queue: `<prefix>.redrive.<consumer>.<id>`.
pub const REDRIVE_TOKEN: &str = "redrive";

/// The oldest nats-server with atomic batch publish (ADR-50), which appends
/// with an expected version need.
pub const ATOMIC_APPEND_MIN_VERSION: &str = "2.12.0";
/// The oldest nats-server with batched direct get (ADR-31), which loads use
/// when they are there (single direct gets otherwise).
pub const BATCHED_DIRECT_GET_MIN_VERSION: &str = "2.11.0";

/// What the bundled server (bus-embedded-server) puts in the `go` field of
/// its INFO, which tells it from nats-server.
pub const BUNDLED_SERVER_GO: &str = "rust";

/// `major.minor.patch` of a server version such as `2.12.1` or
/// `2.12.0-RC.1` (a pre-release counts as its release).
pub fn parse_server_version(version: &str) -> Option<(u64, u64, u64)> {
    let core = version
        .trim()
        .trim_start_matches('v')
        .split(['-', '+'])
        .next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

/// True when `version` is `min` or later.
pub fn server_at_least(version: &str, min: &str) -> bool {
    match (parse_server_version(version), parse_server_version(min)) {
        (Some(v), Some(m)) => v >= m,
        _ => false,
    }
}

/// A bus on NATS. Cheap to clone.
#[derive(Clone)]
pub struct NatsBus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for NatsBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBus")
            .field("url", &self.inner.config.url)
            .field("jetstream", &self.inner.js.is_some())
            .field("stream", &self.inner.config.stream_name)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub client: async_nats::Client,
    pub js: Option<jetstream::Context>,
    pub layout: SubjectLayout,
    pub config: NatsConfig,
    pub stream: StreamSettings,
    pub dead_letter_stream: String,
    /// The redrive queue (`<stream_name>-redrive`).
    pub redrive_stream: String,
    pub backend_name: &'static str,
    /// `Ok` when appends with an expected version work here; otherwise why
    /// not (server too old, stream without `allow_atomic`). Decided once,
    /// at connect.
    pub atomic: std::result::Result<(), String>,
    /// Loads ask for batched direct gets (servers 2.11+); turned off for
    /// good when the server answers one as a plain direct get.
    pub batched_direct_get: AtomicBool,
    /// The snapshot bucket, opened (or created) when first used.
    pub snapshots: tokio::sync::OnceCell<jetstream::kv::Store>,
}

impl Inner {
    pub fn js(&self, operation: &str) -> Result<&jetstream::Context> {
        self.js.as_ref().ok_or_else(|| {
            BusError::Unsupported(format!(
                "{operation} requires JetStream (set [bus.nats] jetstream = true)"
            ))
        })
    }

    /// `Ok` when appends are possible, else `Unsupported` saying why.
    pub fn atomic_appends(&self) -> Result<()> {
        self.atomic.clone().map_err(BusError::Unsupported)
    }

    /// `<prefix>.deadletter.<consumer>`.
    pub fn dead_letter_subject(&self, consumer: &str) -> String {
        format!("{}.{DEAD_LETTER_TOKEN}.{consumer}", self.layout.prefix())
    }

    /// Subject of the redrive item for dead letter `id` of `consumer`.
    pub fn redrive_subject(&self, consumer: &str, id: u64) -> String {
        format!("{}.{REDRIVE_TOKEN}.{consumer}.{id}", self.layout.prefix())
    }

    /// Every redrive item of `consumer`.
    pub fn redrive_filter(&self, consumer: &str) -> String {
        format!("{}.{REDRIVE_TOKEN}.{consumer}.*", self.layout.prefix())
    }
}

impl NatsBus {
    /// Connects with `[bus.nats]` (honouring `connect_timeout`) and, in
    /// JetStream mode, creates or checks the streams.
    pub async fn connect(config: &BusConfig) -> Result<Self> {
        Self::connect_named(config, "nats").await
    }

    /// Like [`NatsBus::connect`], reporting `backend_name` from [`Bus::backend`].
    pub async fn connect_named(config: &BusConfig, backend_name: &'static str) -> Result<Self> {
        Self::connect_with(config, backend_name, false).await
    }

    /// How the embedded backend connects to the bundled server it started:
    /// the event stream is upgraded for appends without `update_stream`
    /// (the bus owns that server and its store), and appends work when the
    /// server says `allow_atomic` back for the stream, whatever version it
    /// reports.
    pub async fn connect_bundled(config: &BusConfig) -> Result<Self> {
        Self::connect_with(config, "embedded", true).await
    }

    async fn connect_with(
        config: &BusConfig,
        backend_name: &'static str,
        bundled: bool,
    ) -> Result<Self> {
        let layout = config.layout()?;
        let nats = &config.nats;
        let client = connect_client(nats).await?;
        let js = if nats.jetstream {
            let mut js = jetstream::new(client.clone());
            js.set_timeout(nats.request_timeout);
            Some(js)
        } else {
            None
        };
        // What the server can do is decided here, once. An external server
        // has atomic batches from 2.12.0 on (its INFO version), and the
        // stream must then say `allow_atomic` back; the bundled server is
        // asked for `allow_atomic` whatever it reports, and has atomic
        // batches when it says it back (a server that does not know the
        // setting leaves it out of the stream's configuration). Nothing is
        // asked again later: an append on a server without them is
        // `Unsupported` with the reason found here.
        let info = client.server_info();
        let version = info.version;
        let url = nats.urls().join(",");
        // The bundled server (run by another process: `angzarr-bus server`,
        // `angzarr-nats-server`) says `"go": "rust"` in its INFO; older
        // builds reported a version below their JetStream features, so it
        // is asked for `allow_atomic` whatever its version, and has it when
        // it says it back.
        let ours = bundled || info.go == BUNDLED_SERVER_GO;
        let ask_atomic = ours || server_at_least(&version, ATOMIC_APPEND_MIN_VERSION);
        let mut inner = Inner {
            client,
            js,
            layout,
            config: nats.clone(),
            stream: config.stream.clone(),
            dead_letter_stream: nats.dead_letter_stream_name(),
            redrive_stream: format!("{}-redrive", nats.stream_name),
            backend_name,
            atomic: Err(format!(
                "appending with an expected version needs JetStream and nats-server \
                 {ATOMIC_APPEND_MIN_VERSION} or later (atomic batch publish); the server at {url} \
                 is {version:?}"
            )),
            batched_direct_get: AtomicBool::new(
                ours || server_at_least(&version, BATCHED_DIRECT_GET_MIN_VERSION),
            ),
            snapshots: tokio::sync::OnceCell::new(),
        };
        if let Some(js) = &inner.js {
            let changes = streams::Changes {
                settings: nats.update_stream,
                upgrades: bundled,
            };
            let events = streams::ensure(js, &streams::events(&inner, ask_atomic), changes).await?;
            streams::ensure(js, &streams::dead_letters(&inner), changes).await?;
            streams::ensure(js, &streams::redrives(&inner), changes).await?;
            if ask_atomic {
                inner.atomic = if events.allow_atomic_publish {
                    Ok(())
                } else if ours {
                    Err(format!(
                        "appending with an expected version needs atomic batch publish \
                         (allow_atomic), which this bundled server ({version}) does not have"
                    ))
                } else {
                    Err(format!(
                        "the stream {} on the server at {url} ({version}) does not allow atomic \
                         batches: the server left allow_atomic out of its configuration",
                        nats.stream_name
                    ))
                };
            }
        }
        Ok(NatsBus {
            inner: Arc::new(inner),
        })
    }

    /// The underlying client (for health checks and advanced use).
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.client
    }

    async fn publish_checked(&self, subject: String, envelope: &EventEnvelope) -> Result<Receipt> {
        let body = wire::encode(envelope);
        let inner = &self.inner;
        let headers = wire::event_headers(envelope, inner.stream.duplicate_window > Duration::ZERO);
        let Some(js) = &inner.js else {
            inner
                .client
                .publish_with_headers(subject.clone(), headers, body)
                .await
                .map_err(|e| errors::classify(&format!("publishing to {subject}"), e))?;
            return Ok(Receipt {
                position: 0,
                duplicate: false,
            });
        };
        let mut attempt = 0;
        loop {
            let result = match js
                .publish_with_headers(subject.clone(), headers.clone(), body.clone())
                .await
            {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match result {
                Ok(ack) => {
                    return Ok(Receipt {
                        position: ack.sequence,
                        duplicate: ack.duplicate,
                    });
                }
                Err(e)
                    if attempt < inner.config.publish_retries && errors::publish_retryable(&e) =>
                {
                    attempt += 1;
                    tracing::warn!(%subject, attempt, error = %e, "publish not acknowledged; retrying with the same Nats-Msg-Id");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
                Err(e) => {
                    return Err(self.size_aware(
                        errors::publish(&subject, inner.config.request_timeout, &e),
                        envelope,
                    ));
                }
            }
        }
    }

    /// Fills in sizes for a payload error the server reported without them.
    fn size_aware(&self, e: BusError, envelope: &EventEnvelope) -> BusError {
        match e {
            BusError::PayloadTooLarge { size: 0, .. } => BusError::PayloadTooLarge {
                size: envelope.encoded_len(),
                limit: self.inner.stream.max_msg_size,
            },
            other => other,
        }
    }

    fn check_size(&self, envelope: &EventEnvelope) -> Result<()> {
        let size = envelope.encoded_len();
        let limit = self.inner.stream.max_msg_size;
        if size > limit {
            return Err(BusError::PayloadTooLarge { size, limit });
        }
        Ok(())
    }

    fn subject_of(&self, envelope: &EventEnvelope) -> Result<String> {
        envelope.validate()?;
        self.check_size(envelope)?;
        self.inner
            .layout
            .event_subject(&envelope.aggregate_type, &envelope.event_type)
    }
}

/// Connects the client, naming the URL in every failure.
async fn connect_client(nats: &NatsConfig) -> Result<async_nats::Client> {
    let mut options = async_nats::ConnectOptions::new()
        .connection_timeout(nats.connect_timeout)
        .request_timeout(Some(nats.request_timeout))
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Disconnected => {
                    tracing::warn!("NATS connection lost; reconnecting")
                }
                async_nats::Event::Connected => tracing::info!("NATS connection (re)established"),
                other => tracing::debug!(event = %other, "NATS client event"),
            }
        });
    if let Some(name) = &nats.client_name {
        options = options.name(name);
    }
    if let (Some(user), Some(password)) = (&nats.user, &nats.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &nats.token {
        options = options.token(token.clone());
    }
    if let Some(creds) = &nats.credentials_file {
        options = options.credentials_file(creds).await.map_err(|e| {
            BusError::Config(bus_core::ConfigError::InvalidValue {
                origin: "configuration".to_owned(),
                key: "bus.nats.credentials_file".to_owned(),
                line: None,
                message: format!("cannot use {}: {e}", creds.display()),
            })
        })?;
    }
    if nats.tls_required {
        options = options.require_tls(true);
    }
    if let Some(ca) = &nats.tls_ca_file {
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&nats.tls_cert_file, &nats.tls_key_file) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    let urls = nats.urls();
    let mut addrs = Vec::with_capacity(urls.len());
    for u in &urls {
        let addr: async_nats::ServerAddr = u.parse().map_err(|e| {
            BusError::Config(bus_core::ConfigError::InvalidValue {
                origin: "configuration".to_owned(),
                key: "bus.nats.url".to_owned(),
                line: None,
                message: format!("invalid URL {u:?}: {e}"),
            })
        })?;
        addrs.push(addr);
    }
    let url_text = urls.join(",");
    // async-nats applies connection_timeout per attempt; bound the whole call too.
    let connect = options.connect(addrs);
    match tokio::time::timeout(nats.connect_timeout + Duration::from_millis(250), connect).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => {
            let text = e.to_string();
            match e.kind() {
                async_nats::ConnectErrorKind::AuthorizationViolation => {
                    Err(BusError::Unauthorized(format!(
                        "NATS server at {url_text} rejected the credentials: {text}"
                    )))
                }
                _ => Err(BusError::Unavailable(format!(
                    "cannot connect to NATS at {url_text}: {text}"
                ))),
            }
        }
        Err(_) => Err(BusError::Unavailable(format!(
            "cannot connect to NATS at {url_text}: no connection within {:?} (bus.nats.connect_timeout)",
            nats.connect_timeout
        ))),
    }
}

#[async_trait]
impl Bus for NatsBus {
    fn backend(&self) -> &'static str {
        self.inner.backend_name
    }

    fn layout(&self) -> &SubjectLayout {
        &self.inner.layout
    }

    async fn publish(&self, event: EventEnvelope) -> Result<Receipt> {
        let subject = self.subject_of(&event)?;
        self.publish_checked(subject, &event).await
    }

    async fn publish_batch(&self, events: Vec<EventEnvelope>) -> Result<Vec<Receipt>> {
        validate_batch(&events)?;
        let mut subjects = Vec::with_capacity(events.len());
        for e in &events {
            subjects.push(self.subject_of(e)?);
        }
        let Some(js) = &self.inner.js else {
            let mut receipts = Vec::with_capacity(events.len());
            for (subject, e) in subjects.into_iter().zip(&events) {
                receipts.push(self.publish_checked(subject, e).await?);
            }
            return Ok(receipts);
        };
        // Pipeline: send every publish (the server stores them in this order),
        // then collect the acknowledgements; retry only the ones that failed.
        let dedup = self.inner.stream.duplicate_window > Duration::ZERO;
        let mut pending = Vec::with_capacity(events.len());
        for (subject, e) in subjects.iter().zip(&events) {
            let sent = js
                .publish_with_headers(
                    subject.clone(),
                    wire::event_headers(e, dedup),
                    wire::encode(e),
                )
                .await;
            pending.push(sent);
        }
        let mut receipts = Vec::with_capacity(events.len());
        for ((sent, subject), e) in pending.into_iter().zip(subjects).zip(&events) {
            let acked = match sent {
                Ok(ack) => ack.await,
                Err(err) => Err(err),
            };
            let receipt = match acked {
                Ok(ack) => Receipt {
                    position: ack.sequence,
                    duplicate: ack.duplicate,
                },
                Err(err) if errors::publish_retryable(&err) => {
                    self.publish_checked(subject, e).await?
                }
                Err(err) => {
                    return Err(self.size_aware(
                        errors::publish(&subject, self.inner.config.request_timeout, &err),
                        e,
                    ));
                }
            };
            receipts.push(receipt);
        }
        Ok(receipts)
    }

    async fn subscribe(&self, filter: &Filter) -> Result<Subscription> {
        let filter = self.inner.layout.filter(filter.as_str())?;
        let subscriber = self
            .inner
            .client
            .subscribe(filter.as_str().to_owned())
            .await
            .map_err(|e| errors::classify(&format!("subscribing to {filter}"), e))?;
        let stream = subscriber.map(|m| {
            let subject = m.subject.to_string();
            let envelope = wire::decode(&subject, &m.payload)?;
            Ok(LiveEvent { subject, envelope })
        });
        Ok(Subscription::new(stream.boxed()))
    }

    async fn consumer(&self, config: ConsumerConfig) -> Result<Consumer> {
        self.inner.js("a durable consumer")?;
        config.validate(&self.inner.layout)?;
        consumer::open(Arc::clone(&self.inner), config).await
    }

    async fn consumer_info(&self, name: &str) -> Result<ConsumerInfo> {
        self.inner.js("consumer info")?;
        consumer::info(&self.inner, name).await
    }

    async fn delete_consumer(&self, name: &str) -> Result<()> {
        self.inner.js("deleting a consumer")?;
        consumer::delete(&self.inner, name).await
    }

    async fn replay(&self, filter: &Filter, from: StartPosition) -> Result<Replay> {
        self.inner.js("replay")?;
        let filter = self.inner.layout.filter(filter.as_str())?;
        replay::events(Arc::clone(&self.inner), filter, from).await
    }

    async fn dead_letters(&self, consumer: Option<&str>) -> Result<Vec<DeadLetter>> {
        self.inner.js("reading dead letters")?;
        replay::dead_letters(&self.inner, consumer).await
    }

    async fn redrive_dead_letters(
        &self,
        consumer: &str,
        selection: &RedriveSelection,
    ) -> Result<RedriveReport> {
        self.inner.js("redriving dead letters")?;
        redrive::redrive(&self.inner, consumer, selection).await
    }

    async fn stream_info(&self) -> Result<StreamInfo> {
        let js = self.inner.js("stream info")?;
        let name = &self.inner.config.stream_name;
        let mut stream = js
            .get_stream(name)
            .await
            .map_err(|e| errors::classify(&format!("reading stream {name}"), e))?;
        let info = stream
            .info()
            .await
            .map_err(|e| errors::classify(&format!("reading stream {name}"), e))?;
        Ok(StreamInfo {
            messages: info.state.messages,
            bytes: info.state.bytes,
            first_position: info.state.first_sequence,
            last_position: info.state.last_sequence,
        })
    }

    async fn append(
        &self,
        expected: ExpectedVersion,
        events: Vec<EventEnvelope>,
    ) -> Result<AppendReceipt> {
        aggregates::append(&self.inner, expected, events).await
    }

    async fn load(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after_version: u64,
    ) -> Result<AggregateHistory> {
        aggregates::load(&self.inner, aggregate_type, aggregate_id, after_version).await
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<()> {
        snapshots::save(&self.inner, snapshot).await
    }

    async fn load_snapshot(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Option<Snapshot>> {
        snapshots::load(&self.inner, aggregate_type, aggregate_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_versions_compare_by_number() {
        assert_eq!(parse_server_version("2.15.1"), Some((2, 15, 1)));
        assert_eq!(parse_server_version("v2.12.0-RC.3"), Some((2, 12, 0)));
        assert_eq!(parse_server_version("2.10"), Some((2, 10, 0)));
        assert_eq!(parse_server_version("nope"), None);
        assert!(server_at_least("2.12.0", ATOMIC_APPEND_MIN_VERSION));
        assert!(server_at_least("2.15.1", ATOMIC_APPEND_MIN_VERSION));
        assert!(server_at_least("3.0.0", ATOMIC_APPEND_MIN_VERSION));
        assert!(!server_at_least("2.11.9", ATOMIC_APPEND_MIN_VERSION));
        assert!(!server_at_least("2.10.0", ATOMIC_APPEND_MIN_VERSION));
        assert!(!server_at_least("", ATOMIC_APPEND_MIN_VERSION));
        assert!(server_at_least("2.11.0", BATCHED_DIRECT_GET_MIN_VERSION));
        assert!(!server_at_least("2.10.22", BATCHED_DIRECT_GET_MIN_VERSION));
    }
}
