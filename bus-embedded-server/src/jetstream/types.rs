//! The JSON shapes of the JetStream API (stream and consumer configuration,
//! info and state), with nats-server's defaults and field names.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Nanoseconds since the Unix epoch, now.
pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// RFC 3339 with nanoseconds, UTC; `0001-01-01T00:00:00Z` for 0 (Go's zero time).
pub fn rfc3339(nanos: i64) -> String {
    if nanos <= 0 {
        return "0001-01-01T00:00:00Z".to_owned();
    }
    let t = UNIX_EPOCH + Duration::from_nanos(nanos as u64);
    humantime::format_rfc3339_nanos(t).to_string()
}

/// Parses RFC 3339 into Unix nanoseconds.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(text.trim_end_matches('Z'))
        .ok()
        .or_else(|| humantime::parse_rfc3339(text).ok())?;
    let d = t.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(d.as_nanos()).ok()
}

/// How long a consumer paused until `until` (RFC 3339) stays paused, in
/// nanoseconds (saturated, as Go's `time.Until` is for far dates); none
/// when that time is not in the future or is not a time.
pub fn pause_remaining(until: Option<&str>) -> Option<i64> {
    let text = until?;
    let t = humantime::parse_rfc3339_weak(text.trim_end_matches('Z'))
        .ok()
        .or_else(|| humantime::parse_rfc3339(text).ok())?;
    let left = t.duration_since(SystemTime::now()).ok()?;
    (!left.is_zero()).then(|| i64::try_from(left.as_nanos()).unwrap_or(i64::MAX))
}

fn is_false(b: &bool) -> bool {
    !*b
}
fn is_zero(n: &i64) -> bool {
    *n == 0
}
fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// Stream retention policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Retention {
    /// Keep until limits remove them.
    #[default]
    Limits,
    /// Keep while some consumer has not acknowledged.
    Interest,
    /// Remove once acknowledged by its consumer.
    #[serde(rename = "workqueue")]
    WorkQueue,
}

/// Where messages are stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageType {
    /// The crash-safe file store.
    #[default]
    File,
    /// Memory only.
    Memory,
}

/// What happens when a limit is reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscardPolicy {
    /// Remove the oldest messages.
    #[default]
    Old,
    /// Refuse new messages.
    New,
}

/// When a file stream's appends reach stable storage (ADR-56,
/// nats-server 2.12's `persist_mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PersistMode {
    /// The server's sync policy (by default: fsynced before the ack).
    #[default]
    Default,
    /// Acknowledged once written to the kernel; fsynced in the background
    /// (R1 file streams only).
    Async,
}

impl PersistMode {
    /// Whether this is `default` (for `skip_serializing_if`: nats-server
    /// does not show it).
    pub fn is_default(&self) -> bool {
        *self == PersistMode::Default
    }
}

impl<'de> Deserialize<'de> for PersistMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // As nats-server: "default", "" or "async"; null and anything
        // else are invalid JSON.
        let s = String::deserialize(d)?;
        match s.as_str() {
            "default" | "" => Ok(PersistMode::Default),
            "async" => Ok(PersistMode::Async),
            other => Err(serde::de::Error::custom(format!(
                "can not unmarshal {other:?}"
            ))),
        }
    }
}

/// A stream's configuration, as `STREAM.CREATE` takes and `STREAM.INFO` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamConfig {
    /// Stream name.
    pub name: String,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Subjects captured (wildcards allowed; none on a mirror).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
    /// Retention policy.
    pub retention: Retention,
    /// Most consumers (-1 unlimited).
    pub max_consumers: i64,
    /// Most messages (-1 unlimited).
    pub max_msgs: i64,
    /// Most bytes (-1 unlimited).
    pub max_bytes: i64,
    /// Oldest message age, nanoseconds (0 unlimited).
    pub max_age: i64,
    /// Most messages per subject (-1 unlimited).
    pub max_msgs_per_subject: i64,
    /// Largest message (-1 unlimited).
    pub max_msg_size: i64,
    /// Discard policy.
    pub discard: DiscardPolicy,
    /// With discard new and max_msgs_per_subject: refuse per subject.
    #[serde(skip_serializing_if = "is_false")]
    pub discard_new_per_subject: bool,
    /// Storage type.
    pub storage: StorageType,
    /// Replicas (1 on a single server).
    pub num_replicas: i64,
    /// Don't acknowledge publishes.
    #[serde(skip_serializing_if = "is_false")]
    pub no_ack: bool,
    /// Nats-Msg-Id dedup window, nanoseconds (none by default on mirrors
    /// and sourcing streams, as nats-server; then not shown).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub duplicate_window: i64,
    /// Compression (only "none" here).
    pub compression: String,
    /// DIRECT.GET answered.
    pub allow_direct: bool,
    /// Mirror direct: a mirror answering direct gets for its origin's
    /// subjects (refused: not built here).
    pub mirror_direct: bool,
    /// No more changes.
    pub sealed: bool,
    /// MSG.DELETE refused.
    pub deny_delete: bool,
    /// PURGE refused.
    pub deny_purge: bool,
    /// Nats-Rollup honoured.
    pub allow_rollup_hdrs: bool,
    /// Consumer defaults.
    pub consumer_limits: serde_json::Value,
    /// Nats-TTL honoured (always shown, as nats-server does).
    pub allow_msg_ttl: bool,
    /// TTL of the markers left when max_age or a TTL removes a subject's
    /// last message, nanoseconds (0: no markers).
    #[serde(skip_serializing_if = "is_zero")]
    pub subject_delete_marker_ttl: i64,
    /// Counter stream (`Nats-Incr`, ADR-49).
    #[serde(skip_serializing_if = "is_false")]
    pub allow_msg_counter: bool,
    /// Message schedules (`Nats-Schedule`, ADR-51; see `stream::schedule`).
    #[serde(skip_serializing_if = "is_false")]
    pub allow_msg_schedules: bool,
    /// Atomic batch publish (`Nats-Batch-*` headers) accepted.
    #[serde(skip_serializing_if = "is_false")]
    pub allow_atomic: bool,
    /// Fast-ingest batch publish (replies ending in `.$FI`) accepted.
    #[serde(skip_serializing_if = "is_false")]
    pub allow_batched: bool,
    /// First sequence of a new stream.
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub first_seq: u64,
    /// Subject transform applied to every message on ingest (the subject
    /// it is stored under).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_transform: Option<SubjectTransformConfig>,
    /// Republish of every stored message whose subject matches `src`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub republish: Option<RePublish>,
    /// The stream this one mirrors (see `stream::sourcing`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<StreamSource>,
    /// The streams this one sources from (see `stream::sourcing`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<StreamSource>>,
    /// When appends reach stable storage (`async`: R1 file streams only).
    #[serde(skip_serializing_if = "PersistMode::is_default")]
    pub persist_mode: PersistMode,
    /// Placement (ignored on one server).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placement: Option<serde_json::Value>,
    /// User metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            name: String::new(),
            description: None,
            subjects: Vec::new(),
            retention: Retention::Limits,
            max_consumers: -1,
            max_msgs: -1,
            max_bytes: -1,
            max_age: 0,
            max_msgs_per_subject: -1,
            max_msg_size: -1,
            discard: DiscardPolicy::Old,
            discard_new_per_subject: false,
            storage: StorageType::File,
            num_replicas: 1,
            no_ack: false,
            duplicate_window: 0,
            compression: "none".to_owned(),
            allow_direct: false,
            mirror_direct: false,
            sealed: false,
            deny_delete: false,
            deny_purge: false,
            allow_rollup_hdrs: false,
            consumer_limits: serde_json::json!({}),
            allow_msg_ttl: false,
            subject_delete_marker_ttl: 0,
            allow_msg_counter: false,
            allow_msg_schedules: false,
            allow_atomic: false,
            allow_batched: false,
            first_seq: 0,
            subject_transform: None,
            republish: None,
            mirror: None,
            sources: None,
            persist_mode: PersistMode::Default,
            placement: None,
            metadata: None,
        }
    }
}

/// A stream's `subject_transform`: subjects matching `src` (empty: all)
/// are stored under `dest` (empty: unchanged).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectTransformConfig {
    /// Subjects transformed (a filter; empty means `>`).
    #[serde(default)]
    pub src: String,
    /// Their new form (a mapping destination).
    #[serde(default)]
    pub dest: String,
}

/// A stream's `republish`: each stored message whose subject matches `src`
/// is published again to `dest` (a mapping destination) with its stream,
/// subject and sequences in headers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RePublish {
    /// Subjects republished (a filter; nats-server shows `>` for empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub src: String,
    /// Where they go (empty: nowhere).
    #[serde(default)]
    pub dest: String,
    /// Headers only: the payload is left out and its size given in
    /// `Nats-Msg-Size`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub headers_only: bool,
}

/// nats-server's default duplicate window.
pub const DEFAULT_DUPLICATE_WINDOW: i64 = 120_000_000_000;

impl StreamConfig {
    /// Applies nats-server's defaults (0 means unlimited, and so on).
    pub fn normalize(&mut self) {
        for v in [
            &mut self.max_consumers,
            &mut self.max_msgs,
            &mut self.max_bytes,
            &mut self.max_msgs_per_subject,
            &mut self.max_msg_size,
        ] {
            // nats-server shows any value <= 0 as -1 (unlimited).
            if *v <= 0 {
                *v = -1;
            }
        }
        if self.num_replicas == 0 {
            self.num_replicas = 1;
        }
        if self.subjects.is_empty() && self.mirror.is_none() && self.sources.is_none() {
            self.subjects = vec![self.name.clone()];
        }
        if self.duplicate_window == 0 && self.mirror.is_none() && self.sources.is_none() {
            self.duplicate_window = if self.max_age > 0 && self.max_age < DEFAULT_DUPLICATE_WINDOW {
                self.max_age
            } else {
                DEFAULT_DUPLICATE_WINDOW
            };
        }
        // Subject delete markers need TTLs and roll-ups: nats-server turns
        // them on (outside pedantic mode).
        if self.subject_delete_marker_ttl > 0 {
            self.allow_msg_ttl = true;
            if !self.allow_rollup_hdrs {
                self.allow_rollup_hdrs = true;
                self.deny_purge = false;
            }
        }
        // So do message schedules (each schedule rolls up its subject).
        if self.allow_msg_schedules && !self.allow_rollup_hdrs {
            self.allow_rollup_hdrs = true;
            self.deny_purge = false;
        }
        if self.compression.is_empty() {
            self.compression = "none".to_owned();
        }
        if self.consumer_limits.is_null() {
            self.consumer_limits = serde_json::json!({});
        }
        // As nats-server: an empty republish source is `>`, and `>` to `>`
        // with a subject transform from the stream's only subject is an
        // implicit republish under the transformed subject.
        if let Some(rp) = &mut self.republish {
            if rp.src.is_empty() {
                rp.src = ">".to_owned();
            }
            if rp.src == ">"
                && rp.dest == ">"
                && let Some(st) = &self.subject_transform
                && self.subjects.len() == 1
                && st.src == self.subjects[0]
            {
                rp.src = st.dest.clone();
                rp.dest = st.dest.clone();
            }
        }
        // nats-server shows an empty source list as none.
        if self.sources.as_ref().is_some_and(Vec::is_empty) {
            self.sources = None;
        }
        if matches!(&self.placement, Some(serde_json::Value::Null)) {
            self.placement = None;
        }
    }
}

/// Which messages a new consumer starts with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliverPolicy {
    /// From the first message.
    #[default]
    All,
    /// The last message only, then new ones.
    Last,
    /// Only messages published after creation.
    New,
    /// From `opt_start_seq`.
    #[serde(rename = "by_start_sequence")]
    ByStartSequence,
    /// From `opt_start_time`.
    ByStartTime,
    /// The last message of every subject, then new ones.
    LastPerSubject,
}

/// How a consumer's messages are acknowledged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckPolicy {
    /// No acks.
    None,
    /// An ack covers every earlier message.
    All,
    /// Each message acked on its own.
    #[default]
    Explicit,
}

/// Replay speed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplayPolicy {
    /// As fast as possible.
    #[default]
    Instant,
    /// At the original pace.
    Original,
}

/// A consumer's priority policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PriorityPolicy {
    /// No priority groups.
    #[default]
    None,
    /// Requests with `min_pending` / `min_ack_pending` serve the overflow.
    Overflow,
    /// One client at a time, by pin id.
    PinnedClient,
    /// Requests served by their `priority`, lowest first.
    Prioritized,
}

impl PriorityPolicy {
    /// Whether this is `none` (for `skip_serializing_if`).
    pub fn is_none(&self) -> bool {
        *self == PriorityPolicy::None
    }
}

impl<'de> Deserialize<'de> for PriorityPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "none" => PriorityPolicy::None,
            "overflow" => PriorityPolicy::Overflow,
            "pinned_client" => PriorityPolicy::PinnedClient,
            "prioritized" => PriorityPolicy::Prioritized,
            other => {
                return Err(serde::de::Error::custom(format!(
                    "unknown priority policy: {other:?}"
                )));
            }
        })
    }
}

/// A consumer's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsumerConfig {
    /// Durable name (legacy durable field).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub durable_name: Option<String>,
    /// Name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Start policy.
    pub deliver_policy: DeliverPolicy,
    /// Start sequence for by_start_sequence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opt_start_seq: Option<u64>,
    /// Start time for by_start_time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opt_start_time: Option<String>,
    /// Ack policy.
    pub ack_policy: AckPolicy,
    /// Ack wait, nanoseconds.
    #[serde(skip_serializing_if = "is_zero")]
    pub ack_wait: i64,
    /// Most deliveries per message (-1 unlimited).
    pub max_deliver: i64,
    /// Redelivery delays, nanoseconds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backoff: Vec<i64>,
    /// One filter.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub filter_subject: String,
    /// Several filters.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filter_subjects: Vec<String>,
    /// Replay policy.
    pub replay_policy: ReplayPolicy,
    /// Rate limit (not enforced).
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub rate_limit_bps: u64,
    /// Sampling (not supported).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sample_freq: String,
    /// Most waiting pull requests.
    #[serde(skip_serializing_if = "is_zero")]
    pub max_waiting: i64,
    /// Most unacknowledged messages.
    #[serde(skip_serializing_if = "is_zero")]
    pub max_ack_pending: i64,
    /// Push flow control.
    #[serde(skip_serializing_if = "is_false")]
    pub flow_control: bool,
    /// Push idle heartbeat, nanoseconds.
    #[serde(skip_serializing_if = "is_zero")]
    pub idle_heartbeat: i64,
    /// Deliver headers only (with Nats-Msg-Size).
    #[serde(skip_serializing_if = "is_false")]
    pub headers_only: bool,
    /// Largest pull batch.
    #[serde(skip_serializing_if = "is_zero")]
    pub max_batch: i64,
    /// Longest pull expiry, nanoseconds.
    #[serde(skip_serializing_if = "is_zero")]
    pub max_expires: i64,
    /// Largest pull max_bytes.
    #[serde(skip_serializing_if = "is_zero")]
    pub max_bytes: i64,
    /// Push target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliver_subject: Option<String>,
    /// Push queue group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliver_group: Option<String>,
    /// Delete after this long without interest, nanoseconds.
    #[serde(skip_serializing_if = "is_zero")]
    pub inactive_threshold: i64,
    /// Replicas.
    pub num_replicas: i64,
    /// Keep state in memory only.
    #[serde(skip_serializing_if = "is_false")]
    pub mem_storage: bool,
    /// User metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Paused until this time (RFC 3339; nats-server 2.11). Go's zero time
    /// is stored as none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_until: Option<String>,
    /// Priority groups (pull consumers with a priority policy).
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub priority_groups: Vec<String>,
    /// Priority policy.
    #[serde(skip_serializing_if = "PriorityPolicy::is_none")]
    pub priority_policy: PriorityPolicy,
    /// How long a pin lasts without a request carrying it, nanoseconds
    /// (`pinned_client`).
    #[serde(skip_serializing_if = "is_zero")]
    pub priority_timeout: i64,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            durable_name: None,
            name: None,
            description: None,
            deliver_policy: DeliverPolicy::All,
            opt_start_seq: None,
            opt_start_time: None,
            ack_policy: AckPolicy::None,
            ack_wait: 0,
            max_deliver: 0,
            backoff: Vec::new(),
            filter_subject: String::new(),
            filter_subjects: Vec::new(),
            replay_policy: ReplayPolicy::Instant,
            rate_limit_bps: 0,
            sample_freq: String::new(),
            max_waiting: 0,
            max_ack_pending: 0,
            flow_control: false,
            idle_heartbeat: 0,
            headers_only: false,
            max_batch: 0,
            max_expires: 0,
            max_bytes: 0,
            deliver_subject: None,
            deliver_group: None,
            inactive_threshold: 0,
            num_replicas: 0,
            mem_storage: false,
            metadata: None,
            pause_until: None,
            priority_groups: Vec::new(),
            priority_policy: PriorityPolicy::None,
            priority_timeout: 0,
        }
    }
}

impl ConsumerConfig {
    /// Push consumer (has a deliver subject).
    pub fn is_push(&self) -> bool {
        self.deliver_subject
            .as_deref()
            .is_some_and(|s| !s.is_empty())
    }

    /// The filters in effect (filter_subject or filter_subjects).
    pub fn filters(&self) -> Vec<String> {
        if !self.filter_subjects.is_empty() {
            self.filter_subjects.clone()
        } else if !self.filter_subject.is_empty() {
            vec![self.filter_subject.clone()]
        } else {
            Vec::new()
        }
    }

    /// Applies nats-server's defaults.
    pub fn normalize(&mut self, durable: bool) {
        if self
            .pause_until
            .as_deref()
            .is_some_and(|t| t.is_empty() || t.starts_with("0001-01-01T00:00:00"))
        {
            self.pause_until = None;
        }
        if self.ack_policy != AckPolicy::None {
            if self.ack_wait == 0 {
                self.ack_wait = self.backoff.first().copied().unwrap_or(30_000_000_000);
            }
            if self.max_ack_pending == 0 {
                self.max_ack_pending = 1000;
            }
        }
        if self.max_deliver == 0 {
            self.max_deliver = -1;
        }
        if !self.is_push() && self.max_waiting <= 0 {
            self.max_waiting = 512;
        }
        if !durable && self.inactive_threshold == 0 {
            self.inactive_threshold = 5_000_000_000;
        }
        if self.deliver_subject.as_deref() == Some("") {
            self.deliver_subject = None;
        }
        if self.deliver_group.as_deref() == Some("") {
            self.deliver_group = None;
        }
    }
}

/// `{consumer_seq, stream_seq}` pairs (delivered, ack_floor).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequencePair {
    /// Consumer sequence.
    pub consumer_seq: u64,
    /// Stream sequence.
    pub stream_seq: u64,
    /// Time of the last activity (omitted when unknown).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_active: Option<String>,
}

/// A stream's state in STREAM.INFO.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamStateJson {
    /// Messages.
    pub messages: u64,
    /// Bytes.
    pub bytes: u64,
    /// First sequence.
    pub first_seq: u64,
    /// Its time.
    pub first_ts: String,
    /// Last sequence.
    pub last_seq: u64,
    /// Its time.
    pub last_ts: String,
    /// Per subject counts (on request).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subjects: Option<BTreeMap<String, u64>>,
    /// Distinct subjects.
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub num_subjects: u64,
    /// Deleted sequences (on request).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted: Option<Vec<u64>>,
    /// Interior deletes.
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub num_deleted: u64,
    /// Consumers.
    pub consumer_count: u64,
}

/// A consumer's info.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumerInfoJson {
    /// Stream name.
    pub stream_name: String,
    /// Consumer name.
    pub name: String,
    /// Creation time.
    pub created: String,
    /// Configuration.
    pub config: ConsumerConfig,
    /// Last delivered.
    pub delivered: SequencePair,
    /// Ack floor.
    pub ack_floor: SequencePair,
    /// Awaiting ack.
    pub num_ack_pending: u64,
    /// Delivered more than once and still pending.
    pub num_redelivered: u64,
    /// Waiting pull requests.
    pub num_waiting: u64,
    /// Messages left to deliver.
    pub num_pending: u64,
    /// Push: someone listens on the deliver subject.
    #[serde(skip_serializing_if = "is_false")]
    pub push_bound: bool,
    /// Paused (`pause_until` in the future).
    #[serde(skip_serializing_if = "is_false")]
    pub paused: bool,
    /// Nanoseconds until the pause ends, while paused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_remaining: Option<i64>,
    /// The first priority group and its pin (consumers with groups).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority_groups: Option<Vec<PriorityGroupState>>,
    /// Response time.
    pub ts: String,
}

/// A priority group's state in consumer info.
#[derive(Debug, Clone, Serialize)]
pub struct PriorityGroupState {
    /// The group.
    pub group: String,
    /// The pin id, while pinned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned_client_id: Option<String>,
    /// When it was pinned (Go's zero time when not).
    pub pinned_ts: String,
}

/// A mirror's or a source's configuration (nats-server's `StreamSource`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StreamSource {
    /// The origin stream's name.
    #[serde(default)]
    pub name: String,
    /// Start at this origin sequence (first sync only).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub opt_start_seq: u64,
    /// Start at the first origin message stored at or after this time
    /// (first sync only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_start_time: Option<String>,
    /// Only origin messages on these subjects.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub filter_subject: String,
    /// Filters with a subject transform each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_transforms: Vec<SubjectTransformConfig>,
    /// The origin is reached through another API prefix (another account
    /// or domain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalStream>,
}

/// Where an external origin's API lives.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExternalStream {
    /// The API prefix (instead of `$JS.API`).
    #[serde(default, rename = "api")]
    pub api: String,
    /// The delivery prefix.
    #[serde(default, rename = "deliver")]
    pub deliver: String,
}
