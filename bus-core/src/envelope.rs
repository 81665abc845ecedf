//! The protobuf event envelope and typed helpers around it.

use std::collections::BTreeMap;
use std::time::SystemTime;

use prost::{Message, Name};
use uuid::Uuid;

use crate::error::{BusError, NameKind, Result};
use crate::subject::validate_token;

/// Generated protobuf types (`proto/angzarr/bus/v1/envelope.proto`).
pub mod pb {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    include!(concat!(env!("OUT_DIR"), "/angzarr.bus.v1.rs"));
}

pub use pb::{EventBatch, EventEnvelope};

impl EventEnvelope {
    /// Builds an envelope around a typed domain event. The event type token is
    /// the message's protobuf name (`FundsDeposited`), the payload's type URL its
    /// full name, the event id a fresh UUID v7 (time-ordered), and `occurred_at` now.
    ///
    /// ```
    /// # use bus_core::EventEnvelope;
    /// let payload = prost_types::Duration { seconds: 1, nanos: 0 };
    /// let e = EventEnvelope::from_message("player", "p-1", 1, &payload);
    /// assert_eq!(e.event_type, "Duration");
    /// assert_eq!(e.decode_payload::<prost_types::Duration>().unwrap(), payload);
    /// ```
    pub fn from_message<M: Message + Name>(
        aggregate_type: impl Into<String>,
        aggregate_id: impl Into<String>,
        sequence: u64,
        message: &M,
    ) -> Self {
        EventEnvelope {
            event_id: Uuid::now_v7().to_string(),
            aggregate_type: aggregate_type.into(),
            aggregate_id: aggregate_id.into(),
            sequence,
            event_type: M::NAME.to_owned(),
            payload: Some(prost_types::Any {
                type_url: M::type_url(),
                value: message.encode_to_vec(),
            }),
            occurred_at: Some(prost_types::Timestamp::from(SystemTime::now())),
            correlation_id: String::new(),
            causation_id: String::new(),
            metadata: BTreeMap::new(),
        }
    }

    /// Sets the correlation id (builder style).
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = id.into();
        self
    }

    /// Sets the causation id (builder style).
    pub fn with_causation_id(mut self, id: impl Into<String>) -> Self {
        self.causation_id = id.into();
        self
    }

    /// Sets the event id (builder style), e.g. a deterministic id for idempotent retries.
    pub fn with_event_id(mut self, id: impl Into<String>) -> Self {
        self.event_id = id.into();
        self
    }

    /// Adds one metadata entry (builder style).
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Decodes the payload as `M`, checking that the type URL names `M`.
    pub fn decode_payload<M: Message + Name + Default>(&self) -> Result<M> {
        let any = self
            .payload
            .as_ref()
            .ok_or_else(|| BusError::Decode(format!("event {} has no payload", self.event_id)))?;
        let expected = M::type_url();
        if any.type_url != expected {
            return Err(BusError::Decode(format!(
                "event {} carries {:?}, not {:?}",
                self.event_id, any.type_url, expected
            )));
        }
        M::decode(any.value.as_slice()).map_err(|e| {
            BusError::Decode(format!("event {} payload {}: {e}", self.event_id, expected))
        })
    }

    /// The type URL of the payload, or "" when there is none.
    pub fn payload_type_url(&self) -> &str {
        self.payload.as_ref().map_or("", |a| a.type_url.as_str())
    }

    /// `occurred_at` as a `SystemTime`, when set and representable.
    pub fn occurred_at_time(&self) -> Option<SystemTime> {
        self.occurred_at
            .and_then(|ts| SystemTime::try_from(ts).ok())
    }

    /// The event id parsed as a UUID.
    pub fn event_uuid(&self) -> Result<Uuid> {
        Uuid::parse_str(&self.event_id).map_err(|e| {
            BusError::InvalidArgument(format!("event id {:?} is not a UUID: {e}", self.event_id))
        })
    }

    /// Checks everything a backend needs before storing: the event id is a UUID,
    /// the aggregate and event types are subject tokens, the aggregate id is set.
    pub fn validate(&self) -> Result<()> {
        self.event_uuid()?;
        validate_token(NameKind::AggregateType, &self.aggregate_type)?;
        validate_token(NameKind::EventType, &self.event_type)?;
        if self.aggregate_id.is_empty() {
            return Err(BusError::InvalidArgument(format!(
                "event {} has an empty aggregate id",
                self.event_id
            )));
        }
        Ok(())
    }

    /// Decodes an envelope from its protobuf bytes.
    pub fn decode_bytes(bytes: &[u8]) -> Result<Self> {
        EventEnvelope::decode(bytes).map_err(BusError::from)
    }
}

/// Validates a batch: non-empty, every envelope valid, all of one aggregate
/// (same type and id). Returns the aggregate `(type, id)`.
pub fn validate_batch(events: &[EventEnvelope]) -> Result<(&str, &str)> {
    let first = events
        .first()
        .ok_or_else(|| BusError::InvalidArgument("empty batch".to_owned()))?;
    for e in events {
        e.validate()?;
        if e.aggregate_type != first.aggregate_type || e.aggregate_id != first.aggregate_id {
            return Err(BusError::InvalidArgument(format!(
                "a batch must hold events of one aggregate: {}/{} and {}/{}",
                first.aggregate_type, first.aggregate_id, e.aggregate_type, e.aggregate_id
            )));
        }
    }
    Ok((&first.aggregate_type, &first.aggregate_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_payload_roundtrips_and_wrong_type_is_a_decode_error() {
        let msg = prost_types::Timestamp {
            seconds: 7,
            nanos: 9,
        };
        let e = EventEnvelope::from_message("clock", "c1", 3, &msg);
        assert_eq!(e.event_type, "Timestamp");
        assert_eq!(
            e.payload_type_url(),
            "type.googleapis.com/google.protobuf.Timestamp"
        );
        assert_eq!(e.decode_payload::<prost_types::Timestamp>().unwrap(), msg);
        assert!(matches!(
            e.decode_payload::<prost_types::Duration>(),
            Err(BusError::Decode(_))
        ));
        e.validate().unwrap();
    }

    #[test]
    fn envelope_bytes_roundtrip_exactly() {
        let e = EventEnvelope::from_message("clock", "c1", 3, &prost_types::Duration::default())
            .with_correlation_id("corr")
            .with_causation_id("cause")
            .with_metadata("k", "v");
        let bytes = e.encode_to_vec();
        let back = EventEnvelope::decode_bytes(&bytes).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.encode_to_vec(), bytes);
    }

    #[test]
    fn garbage_bytes_are_a_decode_error_not_a_panic() {
        assert!(matches!(
            EventEnvelope::decode_bytes(&[0xff, 0xff, 0xff]),
            Err(BusError::Decode(_))
        ));
    }

    #[test]
    fn invalid_envelopes_are_rejected() {
        let ok = EventEnvelope::from_message("a", "id", 1, &prost_types::Duration::default());
        assert!(matches!(
            ok.clone().with_event_id("nope").validate(),
            Err(BusError::InvalidArgument(_))
        ));
        let mut e = ok.clone();
        e.aggregate_id.clear();
        assert!(matches!(e.validate(), Err(BusError::InvalidArgument(_))));
        let mut e = ok.clone();
        e.event_type = "a.b".into();
        assert!(matches!(e.validate(), Err(BusError::InvalidName { .. })));
        let mut other = ok.clone();
        other.aggregate_id = "other".into();
        assert!(validate_batch(&[ok.clone(), other]).is_err());
        assert!(validate_batch(&[]).is_err());
        assert!(validate_batch(&[ok.clone(), ok]).is_ok());
    }
}
