//! The bus as an event store: appending one aggregate's events with an
//! expected version, loading one aggregate, and snapshots.
//!
//! An *aggregate* is identified by its type (a subject token such as
//! `player`) and its id (free text). Its *version* is the number of events
//! appended to it with [`Bus::append`](crate::Bus::append), which is also the
//! envelope `sequence` of its last event. Events published with
//! [`Bus::publish`](crate::Bus::publish) are not part of any aggregate's
//! history.

use std::time::SystemTime;

use prost::{Message, Name};

use crate::envelope::{EventEnvelope, validate_batch};
use crate::error::{BusError, Result};
pub use crate::subject::{
    MAX_AGGREGATE_KEY_LEN, aggregate_id_from_key, aggregate_key, validate_aggregate,
};

pub use crate::envelope::pb::Snapshot;

/// The most events one append may hold. NATS stores an append as one atomic
/// batch of at most 1000 messages, one of which is the append's marker; the
/// memory backend enforces the same limit so that code works on every backend.
pub const MAX_APPEND_EVENTS: usize = 999;

/// What an append expects the aggregate's version to be when it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// Whatever it is: no check, the events get the next versions.
    Any,
    /// The aggregate has no events yet (version 0).
    NoAggregate,
    /// Exactly this version (`Exactly(0)` is [`ExpectedVersion::NoAggregate`]).
    Exactly(u64),
}

impl ExpectedVersion {
    /// The version this expectation requires, or `None` for `Any`.
    pub fn version(self) -> Option<u64> {
        match self {
            ExpectedVersion::Any => None,
            ExpectedVersion::NoAggregate => Some(0),
            ExpectedVersion::Exactly(n) => Some(n),
        }
    }

    /// True when an aggregate at `actual` meets the expectation.
    pub fn is_met_by(self, actual: u64) -> bool {
        self.version().is_none_or(|v| v == actual)
    }
}

impl std::fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoAggregate => f.write_str("no aggregate yet (version 0)"),
            ExpectedVersion::Exactly(n) => write!(f, "version {n}"),
        }
    }
}

/// What the bus says about a stored append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendReceipt {
    /// The aggregate's version after the append: the sequence of its last event.
    pub version: u64,
    /// Stream position of each event, in order (consecutive within an append).
    pub positions: Vec<u64>,
    /// True when this exact append (same event ids, in order) was already
    /// stored, by an earlier attempt whose acknowledgement was lost: nothing
    /// was stored now, and the version and positions are those of that append.
    pub duplicate: bool,
}

impl AppendReceipt {
    /// The version of the append's first event.
    pub fn first_version(&self) -> u64 {
        self.version + 1 - self.positions.len() as u64
    }
}

/// One aggregate's events as [`Bus::load`](crate::Bus::load) returns them.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateHistory {
    /// The aggregate type.
    pub aggregate_type: String,
    /// The aggregate id.
    pub aggregate_id: String,
    /// Its version when it was read (0: no events).
    pub version: u64,
    /// Its events after the requested version, in version order (which is
    /// also stream order).
    pub events: Vec<crate::StoredEvent>,
}

impl AggregateHistory {
    /// An aggregate without events.
    pub fn empty(aggregate_type: &str, aggregate_id: &str) -> Self {
        AggregateHistory {
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id: aggregate_id.to_owned(),
            version: 0,
            events: Vec::new(),
        }
    }
}

/// Checks an append before anything is sent: at least one and at most
/// [`MAX_APPEND_EVENTS`] valid events of one aggregate, no event id twice,
/// and an aggregate id that fits a key. Returns the aggregate `(type, id)`.
pub fn validate_append(events: &[EventEnvelope]) -> Result<(&str, &str)> {
    let (aggregate_type, aggregate_id) = validate_batch(events)?;
    if events.len() > MAX_APPEND_EVENTS {
        return Err(BusError::InvalidArgument(format!(
            "an append holds at most {MAX_APPEND_EVENTS} events, this one has {}",
            events.len()
        )));
    }
    let mut seen = std::collections::HashSet::with_capacity(events.len());
    for e in events {
        if !seen.insert(e.event_id.as_str()) {
            return Err(BusError::InvalidArgument(format!(
                "event id {} appears twice in one append",
                e.event_id
            )));
        }
    }
    validate_aggregate(aggregate_type, aggregate_id)?;
    Ok((aggregate_type, aggregate_id))
}

/// Sets the envelope sequences of an append's events to
/// `first_version, first_version + 1, ...`.
pub fn number_events(events: &mut [EventEnvelope], first_version: u64) {
    for (i, e) in events.iter_mut().enumerate() {
        e.sequence = first_version + i as u64;
    }
}

/// True when `a` and `b` hold the same event ids in the same order: how an
/// append recognises an earlier attempt of itself.
pub fn same_event_ids<A: AsRef<str>, B: AsRef<str>>(a: &[A], b: &[B]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.as_ref() == y.as_ref())
}

impl Snapshot {
    /// A snapshot of `aggregate_type`/`aggregate_id` at `version` whose state
    /// is a typed protobuf message, taken now.
    pub fn from_message<M: Message + Name>(
        aggregate_type: impl Into<String>,
        aggregate_id: impl Into<String>,
        version: u64,
        state: &M,
    ) -> Self {
        Snapshot {
            aggregate_type: aggregate_type.into(),
            aggregate_id: aggregate_id.into(),
            version,
            state: Some(prost_types::Any {
                type_url: M::type_url(),
                value: state.encode_to_vec(),
            }),
            taken_at: Some(prost_types::Timestamp::from(SystemTime::now())),
        }
    }

    /// Decodes the state as `M`, checking that the type URL names `M`.
    pub fn decode_state<M: Message + Name + Default>(&self) -> Result<M> {
        let what = || {
            format!(
                "snapshot of {} {:?}",
                self.aggregate_type, self.aggregate_id
            )
        };
        let any = self
            .state
            .as_ref()
            .ok_or_else(|| BusError::Decode(format!("{} has no state", what())))?;
        if any.type_url != M::type_url() {
            return Err(BusError::Decode(format!(
                "{} carries {:?}, not {:?}",
                what(),
                any.type_url,
                M::type_url()
            )));
        }
        M::decode(any.value.as_slice()).map_err(|e| BusError::Decode(format!("{}: {e}", what())))
    }

    /// `taken_at` as a `SystemTime`, when set and representable.
    pub fn taken_at_time(&self) -> Option<SystemTime> {
        self.taken_at.and_then(|ts| SystemTime::try_from(ts).ok())
    }

    /// Checks what every backend needs before storing a snapshot: a valid
    /// aggregate and a version of at least 1.
    pub fn validate(&self) -> Result<()> {
        validate_aggregate(&self.aggregate_type, &self.aggregate_id)?;
        if self.version == 0 {
            return Err(BusError::InvalidArgument(format!(
                "snapshot of {} {:?}: version 0 has no state to keep",
                self.aggregate_type, self.aggregate_id
            )));
        }
        Ok(())
    }

    /// The error for a snapshot of a version the aggregate has not reached.
    pub fn ahead_of(&self, actual: u64) -> BusError {
        BusError::InvalidArgument(format!(
            "snapshot of {} {:?} at version {}: the aggregate is at version {actual}",
            self.aggregate_type, self.aggregate_id, self.version
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(aggregate_type: &str, id: &str, sequence: u64, event_type: &str) -> EventEnvelope {
        let mut e = EventEnvelope::from_message(
            aggregate_type,
            id,
            sequence,
            &prost_types::Duration::default(),
        );
        e.event_type = event_type.to_owned();
        e
    }

    #[test]
    fn keys_keep_plain_ids_and_escape_everything_else_one_to_one() {
        for id in [
            "p-1",
            "0af76519-16cd-43dd-8448-eb211c80319c",
            "a.b",
            "a b",
            "*",
            ">",
            "x=y",
            "=3D",
            "ünï",
            "tab\there",
            "a/b\\c",
        ] {
            let key = aggregate_key(id);
            assert!(
                key.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'='),
                "{id:?} -> {key:?}"
            );
            assert_eq!(aggregate_id_from_key(&key).as_deref(), Some(id), "{key}");
        }
        assert_ne!(aggregate_key("x=3D"), aggregate_key("x="));
        assert_eq!(aggregate_key("p-1"), "p-1");
        assert_eq!(aggregate_id_from_key("a=2e"), None);
        assert_eq!(aggregate_id_from_key("a.b"), None);
        assert_eq!(aggregate_id_from_key("a=2"), None);
    }

    #[test]
    fn appends_are_checked_for_size_repeats_and_ids() {
        let one = event("player", "p", 1, "A");
        assert!(validate_append(std::slice::from_ref(&one)).is_ok());
        assert!(matches!(
            validate_append(&[one.clone(), one.clone()]),
            Err(BusError::InvalidArgument(m)) if m.contains("twice")
        ));
        let many: Vec<_> = (0..=MAX_APPEND_EVENTS as u64)
            .map(|s| event("player", "p", s, "A"))
            .collect();
        assert!(matches!(
            validate_append(&many),
            Err(BusError::InvalidArgument(m)) if m.contains("999")
        ));
        assert!(validate_append(&many[..MAX_APPEND_EVENTS]).is_ok());
        let long = event("player", &"x".repeat(MAX_AGGREGATE_KEY_LEN + 1), 1, "A");
        assert!(matches!(
            validate_append(&[long]),
            Err(BusError::InvalidArgument(m)) if m.contains("too long")
        ));
    }

    #[test]
    fn expectations_compare_versions() {
        assert!(ExpectedVersion::Any.is_met_by(7));
        assert!(ExpectedVersion::NoAggregate.is_met_by(0));
        assert!(!ExpectedVersion::NoAggregate.is_met_by(1));
        assert!(ExpectedVersion::Exactly(3).is_met_by(3));
        assert!(!ExpectedVersion::Exactly(3).is_met_by(4));
        let r = AppendReceipt {
            version: 7,
            positions: vec![10, 11, 12],
            duplicate: false,
        };
        assert_eq!(r.first_version(), 5);
    }

    #[test]
    fn snapshot_state_roundtrips_and_version_zero_is_refused() {
        let state = prost_types::Duration {
            seconds: 3,
            nanos: 0,
        };
        let s = Snapshot::from_message("player", "p", 4, &state);
        assert_eq!(s.decode_state::<prost_types::Duration>().unwrap(), state);
        assert!(s.decode_state::<prost_types::Timestamp>().is_err());
        s.validate().unwrap();
        let mut zero = s.clone();
        zero.version = 0;
        assert!(matches!(zero.validate(), Err(BusError::InvalidArgument(_))));
    }
}
