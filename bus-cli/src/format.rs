//! How events are printed: one line per event, or one JSON object per line.

use std::time::SystemTime;

use bus::EventEnvelope;
use serde_json::{Value, json};

/// One event to print (from a replay, a live subscription or a dead letter).
pub struct EventView<'a> {
    /// Stream position, when known (not for live events).
    pub position: Option<u64>,
    /// Subject.
    pub subject: &'a str,
    /// When the bus stored it, when known.
    pub stored_at: Option<SystemTime>,
    /// The envelope.
    pub envelope: &'a EventEnvelope,
}

/// RFC 3339 UTC with milliseconds.
pub fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// The payload bytes (empty without payload).
pub fn payload_bytes(e: &EventEnvelope) -> &[u8] {
    e.payload.as_ref().map_or(&[][..], |a| a.value.as_slice())
}

/// The payload as UTF-8 text when it is printable, else lowercase hex.
/// Returns (encoding, text).
pub fn payload_text(bytes: &[u8]) -> (&'static str, String) {
    match std::str::from_utf8(bytes) {
        Ok(s) if s.chars().all(|c| !c.is_control() || c == '\n' || c == '\t') => {
            ("utf8", s.to_owned())
        }
        _ => ("hex", hex(bytes)),
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

impl EventView<'_> {
    /// The human-readable line: position, time, aggregate type/id, sequence,
    /// event type, correlation id, payload size (and payload).
    pub fn line(&self, with_payload: bool) -> String {
        let e = self.envelope;
        let position = self
            .position
            .map_or_else(|| "-".to_owned(), |p| format!("#{p}"));
        let when = self
            .stored_at
            .or_else(|| e.occurred_at_time())
            .map_or_else(|| "-".to_owned(), time);
        let bytes = payload_bytes(e);
        let mut line = format!(
            "{position:>7}  {when}  {}/{}  seq={}  {}  corr={}  {}B",
            e.aggregate_type,
            e.aggregate_id,
            e.sequence,
            e.event_type,
            or_dash(&e.correlation_id),
            bytes.len()
        );
        if with_payload && !bytes.is_empty() {
            let (encoding, text) = payload_text(bytes);
            let text = if encoding == "utf8" {
                format!("{text:?}")
            } else {
                format!("0x{text}")
            };
            line.push_str("  payload=");
            line.push_str(&text);
        }
        line
    }

    /// The JSON object.
    pub fn json(&self, with_payload: bool) -> Value {
        let e = self.envelope;
        let bytes = payload_bytes(e);
        let mut v = json!({
            "position": self.position,
            "subject": self.subject,
            "stored_at": self.stored_at.map(time),
            "event_id": e.event_id,
            "aggregate_type": e.aggregate_type,
            "aggregate_id": e.aggregate_id,
            "sequence": e.sequence,
            "event_type": e.event_type,
            "occurred_at": e.occurred_at_time().map(time),
            "correlation_id": e.correlation_id,
            "causation_id": e.causation_id,
            "metadata": e.metadata,
            "payload_type_url": e.payload_type_url(),
            "payload_size": bytes.len(),
        });
        if with_payload && let Some(obj) = v.as_object_mut() {
            let (encoding, text) = payload_text(bytes);
            obj.insert("payload_encoding".to_owned(), json!(encoding));
            obj.insert("payload".to_owned(), json!(text));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> EventEnvelope {
        EventEnvelope {
            event_id: "0190e0a0-0000-7000-8000-000000000000".to_owned(),
            aggregate_type: "player".to_owned(),
            aggregate_id: "p-1".to_owned(),
            sequence: 3,
            event_type: "FundsDeposited".to_owned(),
            payload: Some(prost_types::Any {
                type_url: String::new(),
                value: b"hi".to_vec(),
            }),
            occurred_at: None,
            correlation_id: "c-9".to_owned(),
            causation_id: String::new(),
            metadata: Default::default(),
        }
    }

    #[test]
    fn line_shows_the_decoded_envelope() {
        let e = envelope();
        let v = EventView {
            position: Some(12),
            subject: "angzarr.events.player.FundsDeposited",
            stored_at: Some(SystemTime::UNIX_EPOCH),
            envelope: &e,
        };
        assert_eq!(
            v.line(false),
            "    #12  1970-01-01T00:00:00.000Z  player/p-1  seq=3  FundsDeposited  corr=c-9  2B"
        );
        assert!(v.line(true).ends_with("2B  payload=\"hi\""));
        let j = v.json(true);
        assert_eq!(j["position"], 12);
        assert_eq!(j["payload"], "hi");
        assert_eq!(j["payload_encoding"], "utf8");
    }

    #[test]
    fn binary_payloads_print_as_hex() {
        assert_eq!(payload_text(&[0, 0xff]), ("hex", "00ff".to_owned()));
        assert_eq!(payload_text(b"a\tb"), ("utf8", "a\tb".to_owned()));
    }
}
