//! Stream and consumer settings shared by every backend. They are part of the
//! configuration file (`[bus.stream]`, `[bus.consumer]`) and are what the
//! contract suite varies between scenarios.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What happens when a stream limit (`max_msgs`, `max_bytes`) is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Discard {
    /// Remove the oldest events to make room (JetStream `discard: old`).
    #[default]
    Old,
    /// Refuse the new event with [`crate::BusError::LimitReached`].
    New,
}

/// Where a persistent backend keeps the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// On disk (the default; survives restarts).
    #[default]
    File,
    /// In memory (lost on restart).
    Memory,
}

/// Limits and behaviour of the event stream (`[bus.stream]`).
///
/// Zero means "unlimited" for `max_msgs`, `max_bytes` and `max_age`, as in JetStream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamSettings {
    /// Maximum number of events kept (0 = unlimited).
    pub max_msgs: u64,
    /// Maximum total encoded bytes kept (0 = unlimited).
    pub max_bytes: u64,
    /// Maximum age of an event (0 = unlimited), e.g. `"7d"`.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Largest encoded event accepted, in bytes.
    pub max_msg_size: usize,
    /// Window in which a repeated event id is recognised as a duplicate, e.g. `"2m"`.
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Duration,
    /// What to do when `max_msgs` or `max_bytes` is reached.
    pub discard: Discard,
    /// File or memory storage (persistent backends only).
    pub storage: Storage,
    /// Number of replicas in a cluster (NATS backends only).
    pub replicas: u8,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            max_msgs: 0,
            max_bytes: 0,
            max_age: Duration::ZERO,
            max_msg_size: 1024 * 1024,
            duplicate_window: Duration::from_secs(120),
            discard: Discard::Old,
            storage: Storage::File,
            replicas: 1,
        }
    }
}

/// Defaults for durable consumers (`[bus.consumer]`); each
/// [`crate::ConsumerConfig`] starts from these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsumerDefaults {
    /// How long a delivered event may stay unacknowledged before it is redelivered.
    #[serde(with = "humantime_serde")]
    pub ack_wait: Duration,
    /// Deliveries before an event goes to the dead-letter store (at least 1).
    pub max_deliver: u32,
    /// Redelivery delays by attempt (the last repeats); empty = `ack_wait` each time.
    #[serde(with = "duration_list")]
    pub backoff: Vec<Duration>,
    /// Most events delivered and not yet acknowledged at once (at least 1).
    pub max_ack_pending: usize,
}

impl Default for ConsumerDefaults {
    fn default() -> Self {
        ConsumerDefaults {
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            backoff: Vec::new(),
            max_ack_pending: 1000,
        }
    }
}

/// Serde for a list of human-readable durations (`["1s", "5s", "30s"]`).
mod duration_list {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error, ser::SerializeSeq};

    pub fn serialize<S: Serializer>(list: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(list.len()))?;
        for d in list {
            seq.serialize_element(&humantime::format_duration(*d).to_string())?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let texts = Vec::<String>::deserialize(d)?;
        texts
            .iter()
            .map(|t| {
                humantime::parse_duration(t)
                    .map_err(|e| D::Error::custom(format!("invalid duration {t:?}: {e}")))
            })
            .collect()
    }
}
