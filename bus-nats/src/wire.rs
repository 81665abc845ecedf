//! How an event travels as a NATS message: the subject from the layout, the
//! protobuf envelope as the body, and headers for tools that do not decode
//! protobuf (and for JetStream deduplication). The body alone is authoritative.

use std::time::{Duration, SystemTime};

use async_nats::HeaderMap;
use bus_core::{BusError, DeadLetter, EventEnvelope, StoredEvent};
use bytes::Bytes;
use prost::Message;

/// JetStream deduplication key: the event id.
pub const MSG_ID: &str = "Nats-Msg-Id";
/// The event id (same as `Nats-Msg-Id`, kept for readers of core NATS).
pub const EVENT_ID: &str = "Angzarr-Event-Id";
/// Aggregate id (not in the subject).
pub const AGGREGATE_ID: &str = "Angzarr-Aggregate-Id";
/// Per-aggregate sequence.
pub const SEQUENCE: &str = "Angzarr-Sequence";
/// Correlation id, when set.
pub const CORRELATION_ID: &str = "Angzarr-Correlation-Id";
/// Causation id, when set.
pub const CAUSATION_ID: &str = "Angzarr-Causation-Id";
/// W3C trace context headers copied from the envelope metadata.
pub const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// Atomic batch publish (ADR-50, nats-server 2.12+): the batch id, the
/// message's 1-based place in the batch, and `1` on the last message.
pub const BATCH_ID: &str = "Nats-Batch-Id";
/// Place of the message in its batch, from 1.
pub const BATCH_SEQUENCE: &str = "Nats-Batch-Sequence";
/// `1` on the batch's last message: store the batch now.
pub const BATCH_COMMIT: &str = "Nats-Batch-Commit";
/// Store only if the subject's last message has this stream sequence (0: none).
pub const EXPECTED_LAST_SUBJECT_SEQUENCE: &str = "Nats-Expected-Last-Subject-Sequence";

/// Append marker headers, for tools that do not decode protobuf (the body,
/// an `AppendMarker`, is authoritative): the aggregate's version after the
/// append and the number of events that follow the marker.
pub const MARKER_VERSION: &str = "Angzarr-Version";
/// Events in the append.
pub const MARKER_COUNT: &str = "Angzarr-Event-Count";

/// Dead-letter headers.
pub const DL_CONSUMER: &str = "Angzarr-Dead-Letter-Consumer";
/// Deliveries before giving up.
pub const DL_ATTEMPTS: &str = "Angzarr-Dead-Letter-Attempts";
/// Why.
pub const DL_REASON: &str = "Angzarr-Dead-Letter-Reason";
/// Subject of the original event.
pub const DL_SUBJECT: &str = "Angzarr-Original-Subject";
/// Stream position of the original event.
pub const DL_POSITION: &str = "Angzarr-Original-Position";
/// When the original was stored (unix nanoseconds).
pub const DL_STORED_AT: &str = "Angzarr-Original-Stored-At";

/// On a redrive item: the dead-letter stream sequence of the dead letter it
/// sends back (removed from there once the consumer acknowledges the item).
pub const DL_ID: &str = "Angzarr-Dead-Letter-Id";

/// Headers for publishing `envelope`; `dedup` adds `Nats-Msg-Id` (off when
/// the configured duplicate window is zero).
pub fn event_headers(envelope: &EventEnvelope, dedup: bool) -> HeaderMap {
    let mut h = HeaderMap::new();
    if dedup {
        h.insert(MSG_ID, envelope.event_id.as_str());
    }
    h.insert(EVENT_ID, envelope.event_id.as_str());
    // Header values cannot carry CR/LF; the body has the exact value anyway.
    if let Some(v) = header_safe(&envelope.aggregate_id) {
        h.insert(AGGREGATE_ID, v);
    }
    h.insert(SEQUENCE, envelope.sequence.to_string().as_str());
    if let Some(v) = header_safe(&envelope.correlation_id) {
        h.insert(CORRELATION_ID, v);
    }
    if let Some(v) = header_safe(&envelope.causation_id) {
        h.insert(CAUSATION_ID, v);
    }
    for key in TRACE_HEADERS {
        if let Some(v) = envelope.metadata.get(key).and_then(|v| header_safe(v)) {
            h.insert(key, v);
        }
    }
    h
}

/// Headers of an append marker (the batch headers are added when sending).
pub fn marker_headers(marker: &bus_core::envelope::pb::AppendMarker) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(v) = header_safe(&marker.aggregate_id) {
        h.insert(AGGREGATE_ID, v);
    }
    let version = marker.first_version + u64::from(marker.count).saturating_sub(1);
    h.insert(MARKER_VERSION, version.to_string().as_str());
    h.insert(MARKER_COUNT, marker.count.to_string().as_str());
    h
}

fn header_safe(value: &str) -> Option<&str> {
    (!value.is_empty() && !value.contains(['\r', '\n'])).then_some(value)
}

/// The body of an event message.
pub fn encode(envelope: &EventEnvelope) -> Bytes {
    Bytes::from(envelope.encode_to_vec())
}

/// Decodes an event body.
pub fn decode(subject: &str, body: &[u8]) -> Result<EventEnvelope, BusError> {
    EventEnvelope::decode(body).map_err(|e| {
        BusError::Decode(format!(
            "message on {subject} is not an event envelope: {e}"
        ))
    })
}

/// Converts a JetStream timestamp.
pub fn system_time(t: time::OffsetDateTime) -> SystemTime {
    let nanos = t.unix_timestamp_nanos();
    if nanos >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    } else {
        SystemTime::UNIX_EPOCH
    }
}

/// Converts to a JetStream timestamp.
pub fn offset_time(t: SystemTime) -> time::OffsetDateTime {
    let nanos = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i128::try_from(d.as_nanos()).unwrap_or(i128::MAX),
        Err(e) => -i128::try_from(e.duration().as_nanos()).unwrap_or(i128::MAX),
    };
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// Headers of a dead-letter message for `event`. `replaces` is the dead
/// letter a failed redrive of the same event replaces (its sequence).
pub fn dead_letter_headers(
    event: &StoredEvent,
    consumer: &str,
    attempts: u32,
    reason: &str,
    replaces: Option<u64>,
) -> HeaderMap {
    let mut h = HeaderMap::new();
    // Dedup: the same event dead-lettered twice by one consumer (a retry after
    // a crash between publishing here and terminating the original) is stored
    // once; a redriven event that fails again is a new dead letter, once per
    // dead letter it replaces.
    let id = match replaces {
        None => format!("dlq.{consumer}.{}", event.position),
        Some(earlier) => format!("dlq.{consumer}.{}.{earlier}", event.position),
    };
    h.insert(MSG_ID, id.as_str());
    h.insert(DL_CONSUMER, consumer);
    h.insert(DL_ATTEMPTS, attempts.to_string().as_str());
    let reason: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    h.insert(DL_REASON, reason.as_str());
    h.insert(DL_SUBJECT, event.subject.as_str());
    h.insert(DL_POSITION, event.position.to_string().as_str());
    let stored = event
        .stored_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.insert(DL_STORED_AT, stored.to_string().as_str());
    h
}

/// Headers of the redrive item that sends dead letter `dead` (stored at
/// dead-letter sequence `dead.id`) back to its consumer: the dead letter's
/// own headers, its id, and a message id that stores it once.
pub fn redrive_headers(dead: &DeadLetter) -> HeaderMap {
    let mut h = dead_letter_headers(
        &dead.event,
        &dead.consumer,
        dead.attempts,
        &dead.reason,
        None,
    );
    h.insert(
        MSG_ID,
        format!("redrive.{}.{}", dead.consumer, dead.id).as_str(),
    );
    h.insert(DL_ID, dead.id.to_string().as_str());
    h
}

/// The original event's position, subject and store time, and the dead
/// letter's id, from a redrive item's headers.
pub fn decode_redrive(
    headers: Option<&HeaderMap>,
) -> Result<(u64, String, SystemTime, u64), BusError> {
    let get = |key: &str| -> Result<String, BusError> {
        headers
            .and_then(|h| h.get(key))
            .map(|v| v.as_str().to_owned())
            .ok_or_else(|| BusError::Decode(format!("redrive item without header {key}")))
    };
    let number = |key: &str| -> Result<u64, BusError> {
        get(key)?
            .parse::<u64>()
            .map_err(|e| BusError::Decode(format!("redrive item header {key}: {e}")))
    };
    Ok((
        number(DL_POSITION)?,
        get(DL_SUBJECT)?,
        SystemTime::UNIX_EPOCH + Duration::from_nanos(number(DL_STORED_AT)?),
        number(DL_ID)?,
    ))
}

/// Rebuilds dead letter `id` (its dead-letter stream sequence) from a
/// message of the dead-letter stream.
pub fn decode_dead_letter(
    id: u64,
    headers: Option<&HeaderMap>,
    body: &[u8],
    dead_lettered_at: SystemTime,
) -> Result<DeadLetter, BusError> {
    let get = |key: &str| -> Result<String, BusError> {
        headers
            .and_then(|h| h.get(key))
            .map(|v| v.as_str().to_owned())
            .ok_or_else(|| BusError::Decode(format!("dead letter without header {key}")))
    };
    let number = |key: &str| -> Result<u128, BusError> {
        get(key)?
            .parse::<u128>()
            .map_err(|e| BusError::Decode(format!("dead letter header {key}: {e}")))
    };
    let subject = get(DL_SUBJECT)?;
    let envelope = decode(&subject, body)?;
    let stored_nanos = number(DL_STORED_AT)?;
    Ok(DeadLetter {
        id,
        event: StoredEvent {
            position: u64::try_from(number(DL_POSITION)?).unwrap_or(u64::MAX),
            subject,
            stored_at: SystemTime::UNIX_EPOCH
                + Duration::from_nanos(u64::try_from(stored_nanos).unwrap_or(u64::MAX)),
            envelope,
        },
        consumer: get(DL_CONSUMER)?,
        attempts: u32::try_from(number(DL_ATTEMPTS)?).unwrap_or(u32::MAX),
        reason: get(DL_REASON)?,
        dead_lettered_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_carry_ids_and_trace_context_but_not_line_breaks() {
        let e = bus_core::testkit::deposit("p1", 3)
            .with_correlation_id("corr")
            .with_causation_id("bad\r\nvalue")
            .with_metadata("traceparent", "00-abc-def-01");
        let h = event_headers(&e, true);
        assert!(event_headers(&e, false).get(MSG_ID).is_none());
        assert_eq!(h.get(MSG_ID).map(|v| v.as_str()), Some(e.event_id.as_str()));
        assert_eq!(h.get(CORRELATION_ID).map(|v| v.as_str()), Some("corr"));
        assert!(h.get(CAUSATION_ID).is_none());
        assert_eq!(
            h.get("traceparent").map(|v| v.as_str()),
            Some("00-abc-def-01")
        );
        assert_eq!(h.get(SEQUENCE).map(|v| v.as_str()), Some("3"));
    }

    #[test]
    fn dead_letter_roundtrips_through_headers() {
        let event = StoredEvent {
            position: 42,
            subject: "angzarr.events.player.FundsDeposited".into(),
            stored_at: SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789),
            envelope: bus_core::testkit::deposit("p1", 1),
        };
        let h = dead_letter_headers(&event, "proj", 5, "boom\nagain", None);
        let body = encode(&event.envelope);
        let now = SystemTime::now();
        let dl = decode_dead_letter(7, Some(&h), &body, now).unwrap();
        assert_eq!(dl.id, 7);
        assert_eq!(h.get(MSG_ID).map(|v| v.as_str()), Some("dlq.proj.42"));
        let again = dead_letter_headers(&event, "proj", 5, "boom", Some(7));
        assert_eq!(again.get(MSG_ID).map(|v| v.as_str()), Some("dlq.proj.42.7"));
        let item = redrive_headers(&dl);
        assert_eq!(item.get(MSG_ID).map(|v| v.as_str()), Some("redrive.proj.7"));
        assert_eq!(
            decode_redrive(Some(&item)).unwrap(),
            (42, event.subject.clone(), event.stored_at, 7)
        );
        assert_eq!(dl.event, event);
        assert_eq!(
            (dl.consumer.as_str(), dl.attempts, dl.reason.as_str()),
            ("proj", 5, "boom again")
        );
    }

    #[test]
    fn garbage_body_is_a_decode_error() {
        assert!(matches!(
            decode("s", &[0xff, 0xff]),
            Err(BusError::Decode(_))
        ));
    }

    #[test]
    fn times_convert_both_ways() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        assert_eq!(system_time(offset_time(t)), t);
    }
}
