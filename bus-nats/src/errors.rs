//! Mapping async-nats and JetStream failures onto `BusError` kinds.

use std::fmt::Display;
use std::time::Duration;

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use bus_core::BusError;

/// Classifies an error by its text when async-nats gives no finer kind.
/// `doing` says what we were doing, e.g. "creating stream angzarr-events".
pub fn classify(doing: &str, error: impl Display) -> BusError {
    let text = error.to_string();
    let lower = text.to_lowercase();
    if lower.contains("timed out") || lower.contains("timeout") {
        BusError::Timeout {
            operation: doing.to_owned(),
            after: Duration::ZERO,
        }
    } else if lower.contains("no responders") {
        BusError::Unavailable(format!(
            "{doing}: no responders (is JetStream enabled on the server, and is it up?)"
        ))
    } else if lower.contains("authorization") || lower.contains("permissions violation") {
        BusError::Unauthorized(format!("{doing}: {text}"))
    } else if lower.contains("broken pipe")
        || lower.contains("disconnected")
        || lower.contains("connection")
        || lower.contains("io error")
    {
        BusError::Unavailable(format!("{doing}: {text}"))
    } else if lower.contains("maximum messages")
        || lower.contains("maximum bytes")
        || lower.contains("resource limits exceeded")
    {
        BusError::LimitReached(format!("{doing}: {text}"))
    } else if lower.contains("maximum payload") || lower.contains("message size exceeds") {
        BusError::PayloadTooLarge { size: 0, limit: 0 }
    } else {
        BusError::Backend(format!("{doing}: {text}"))
    }
}

/// Maps a JetStream publish failure.
pub fn publish(subject: &str, timeout: Duration, e: &PublishError) -> BusError {
    match e.kind() {
        PublishErrorKind::TimedOut => BusError::Timeout {
            operation: format!("waiting for the acknowledgement of a publish to {subject}"),
            after: timeout,
        },
        PublishErrorKind::StreamNotFound => BusError::Unavailable(format!(
            "no JetStream stream answered for {subject}: the stream is electing a leader, \
             was deleted, or JetStream is down"
        )),
        PublishErrorKind::BrokenPipe => {
            BusError::Unavailable(format!("publishing to {subject}: connection lost"))
        }
        PublishErrorKind::MaxPayloadExceeded => BusError::PayloadTooLarge { size: 0, limit: 0 },
        _ => classify(&format!("publishing to {subject}"), e),
    }
}

/// True when a publish failure is worth retrying with the same message id:
/// no ack in time, a lost connection, or no responder (what a publish sees
/// while a clustered stream elects a new leader).
pub fn publish_retryable(e: &PublishError) -> bool {
    matches!(
        e.kind(),
        PublishErrorKind::TimedOut
            | PublishErrorKind::BrokenPipe
            | PublishErrorKind::StreamNotFound
    ) || e.to_string().to_lowercase().contains("no responders")
}
