//! Counter streams (ADR-49, `allow_msg_counter`): a publish carries
//! `Nats-Incr: <signed integer>` and no payload; the stream stores the
//! subject's new total as `{"val":"<total>"}` (arbitrary precision, a
//! decimal string) and the PubAck carries it as `"val"`. The running value
//! is the last message on the subject, so it survives restarts with the
//! stream's messages. `Nats-Counter-Sources` (kept by sourcing streams) is
//! carried over from the previous value.

use std::collections::BTreeMap;

use num_bigint::BigInt;

use super::headers;
use crate::jetstream::errors::ApiError;

/// `Nats-Incr`: `Ok(None)` when absent, an error when not a base-10
/// integer (Go's `big.Int.SetString(v, 10)`).
pub fn parse_incr(hdr: &[u8]) -> Result<Option<BigInt>, ApiError> {
    let Some(v) = raw_header(hdr, "Nats-Incr") else {
        return Ok(None);
    };
    if v.is_empty() {
        return Ok(None);
    }
    parse_int(v)
        .map(Some)
        .ok_or_else(ApiError::msg_incr_invalid)
}

/// A base-10 integer with an optional sign, nothing else.
pub fn parse_int(v: &str) -> Option<BigInt> {
    let digits = v.strip_prefix(['+', '-']).unwrap_or(v);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// Headers a counter increment may not carry.
pub fn incompatible(hdr: &[u8]) -> bool {
    [
        "Nats-Rollup",
        "Nats-Expected-Stream",
        "Nats-Expected-Last-Msg-Id",
        "Nats-Expected-Last-Subject-Sequence-Subject",
    ]
    .iter()
    .any(|h| raw_header(hdr, h).is_some_and(|v| !v.is_empty()))
        || [
            "Nats-Expected-Last-Sequence",
            "Nats-Expected-Last-Subject-Sequence",
        ]
        .iter()
        .any(|h| raw_header(hdr, h).is_some_and(|v| !v.is_empty()))
}

#[derive(serde::Deserialize)]
struct CounterValue {
    #[serde(default)]
    val: String,
}

/// What an increment stores.
pub struct Applied {
    /// The new payload, `{"val":"<total>"}`.
    pub body: Vec<u8>,
    /// The header block, when sources are carried over.
    pub hdr: Option<Vec<u8>>,
    /// The new total.
    pub val: String,
}

/// An increment on top of `last` (the subject's last message).
pub fn apply(last: Option<(&[u8], &[u8])>, incr: &BigInt, hdr: &[u8]) -> Result<Applied, ApiError> {
    let mut total = BigInt::default();
    let mut sources: Option<BTreeMap<String, BTreeMap<String, String>>> = None;
    if let Some((last_hdr, last_data)) = last {
        let v: CounterValue =
            serde_json::from_slice(last_data).map_err(|_| ApiError::msg_counter_broken())?;
        if let Some(s) = raw_header(last_hdr, "Nats-Counter-Sources").filter(|s| !s.is_empty()) {
            sources = Some(serde_json::from_str(s).map_err(|_| ApiError::msg_counter_broken())?);
        }
        total = parse_int(&v.val).unwrap_or_default();
    }
    total += incr;
    let val = total.to_string();
    let body = format!("{{\"val\":\"{val}\"}}").into_bytes();
    let new_hdr = sources.filter(|s| !s.is_empty()).map(|s| {
        let json = serde_json::to_string(&s).unwrap_or_default();
        set_header(hdr, "Nats-Counter-Sources", &json)
    });
    Ok(Applied {
        body,
        hdr: new_hdr,
        val,
    })
}

/// The total a counter message (`{"val":"..."}`) holds; a body that is
/// not one is a broken counter.
pub fn total_of(data: &[u8]) -> Result<BigInt, ApiError> {
    let v: CounterValue =
        serde_json::from_slice(data).map_err(|_| ApiError::msg_counter_broken())?;
    Ok(parse_int(&v.val).unwrap_or_default())
}

/// The stored body of a counter message holding `total`.
pub fn body(total: &BigInt) -> Vec<u8> {
    format!("{{\"val\":\"{total}\"}}").into_bytes()
}

/// A header's value as nats-server's `sliceHeader` finds it: exact name,
/// leading spaces skipped, `Some("")` when present but empty.
pub fn raw_header<'a>(hdr: &'a [u8], name: &str) -> Option<&'a str> {
    if hdr.is_empty() {
        return None;
    }
    headers::get(hdr, name)
}

/// `hdr` with `name` set to `value`: replaced where it is, else appended.
pub fn set_header(hdr: &[u8], name: &str, value: &str) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(hdr) else {
        return hdr.to_vec();
    };
    let mut out = String::with_capacity(text.len() + value.len());
    let mut found = false;
    let mut lines = text.split_inclusive("\r\n");
    if let Some(first) = lines.next() {
        out.push_str(first);
    }
    for line in lines {
        if !found && line.split_once(':').is_some_and(|(k, _)| k == name) {
            out.push_str(name);
            out.push_str(": ");
            out.push_str(value);
            out.push_str("\r\n");
            found = true;
        } else {
            out.push_str(line);
        }
    }
    if found {
        out.into_bytes()
    } else {
        headers::with_added(hdr, name, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increments_are_signed_base_ten_integers_of_any_size() {
        let h = |v: &str| format!("NATS/1.0\r\nNats-Incr: {v}\r\n\r\n").into_bytes();
        assert_eq!(parse_incr(&h("5")).ok().flatten(), Some(BigInt::from(5)));
        assert_eq!(parse_incr(&h("+5")).ok().flatten(), Some(BigInt::from(5)));
        assert_eq!(
            parse_incr(&h("-12")).ok().flatten(),
            Some(BigInt::from(-12))
        );
        for bad in ["x", "1.5", "1_000", "+", "0x10", "1e3"] {
            assert!(parse_incr(&h(bad)).is_err(), "{bad}");
        }
        let big = "123456789012345678901234567890";
        let applied = apply(
            Some((b"", br#"{"val":"1"}"#)),
            &parse_int(big).expect("big"),
            b"",
        )
        .expect("apply");
        assert_eq!(applied.val, "123456789012345678901234567891");
        assert_eq!(
            applied.body,
            br#"{"val":"123456789012345678901234567891"}"#.to_vec()
        );
        assert!(apply(Some((b"", b"nope")), &BigInt::from(1), b"").is_err());
    }
}
