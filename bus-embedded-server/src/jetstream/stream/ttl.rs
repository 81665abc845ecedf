//! Per-message TTLs (`Nats-TTL`, `allow_msg_ttl`) and subject delete
//! markers (`subject_delete_marker_ttl`), as nats-server 2.15.1 has them.
//!
//! - A TTL is whole seconds: a Go duration (`1s`, `1h2m`, `1.5s` = 1 s;
//!   under a second is invalid), a bare integer of seconds, or `never`
//!   (the message is also exempt from `max_age`).
//! - On a stream with delete markers, a TTL shorter than the marker TTL is
//!   raised to it and the stored `Nats-TTL` header rewritten (seconds),
//!   unless `max_msgs_per_subject` is 1.
//! - When `max_age` or a TTL removes a subject's last message (and it is
//!   not itself a marker), a marker takes its place: an empty message on
//!   that subject with `Nats-Marker-Reason: MaxAge`, `Nats-TTL: <marker
//!   TTL as a Go duration>` and `Nats-Rollup: sub`. nats-server writes
//!   `MaxAge` for both causes; purges and message deletes leave no marker.
//! - Expiry times are the store timestamp plus the TTL, so they survive a
//!   restart: the timer set is rebuilt from the stored headers.

use super::{StreamInner, headers};
use crate::jetstream::store::{Purge, SubjectFilter};
use crate::jetstream::types::Retention;

/// The TTL a message is stored with, in seconds (`None`: it does not
/// expire), and its header block when the TTL had to be raised to the
/// stream's delete-marker TTL; errors as nats-server gives them.
pub(super) fn check_header(
    cfg: &crate::jetstream::types::StreamConfig,
    hdr: &[u8],
) -> Result<(Option<i64>, Option<Vec<u8>>), crate::jetstream::errors::ApiError> {
    use crate::jetstream::errors::ApiError;
    let Some(v) = headers::get(hdr, "Nats-TTL") else {
        return Ok((None, None));
    };
    match parse_ttl(v).ok_or_else(ApiError::msg_ttl_invalid)? {
        Ttl::Secs(secs) => {
            // A TTL shorter than the delete markers' is raised to it, so a
            // marker never outlives what it stands for (not in KV-like
            // streams keeping one message per subject).
            let min = cfg.subject_delete_marker_ttl / 1_000_000_000;
            if min > 0 && cfg.max_msgs_per_subject != 1 && secs < min {
                return Ok((Some(min), Some(with_ttl_secs(hdr, min))));
            }
            Ok((Some(secs), None))
        }
        Ttl::Never | Ttl::None => Ok((None, None)),
    }
}

/// Whether `hdr` asks for a TTL a stream without `allow_msg_ttl` refuses
/// (an empty or zero value is no TTL).
pub(super) fn wants_ttl(hdr: &[u8]) -> bool {
    matches!(
        headers::get(hdr, "Nats-TTL").and_then(parse_ttl),
        Some(Ttl::Secs(_) | Ttl::Never)
    )
}

/// A parsed `Nats-TTL` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// No TTL (a bare `0`-like integer nats-server reads as none).
    None,
    /// Never expires, not even by `max_age`.
    Never,
    /// Expires this many seconds after it was stored.
    Secs(i64),
}

impl Ttl {
    /// Nanoseconds, for a TTL that expires.
    pub fn nanos(self) -> Option<i64> {
        match self {
            Ttl::Secs(s) => Some(s.saturating_mul(1_000_000_000)),
            _ => None,
        }
    }
}

/// Parses a `Nats-TTL` value as nats-server does; `None` is invalid.
pub fn parse_ttl(v: &str) -> Option<Ttl> {
    if v.is_empty() {
        return Some(Ttl::None);
    }
    if v.eq_ignore_ascii_case("never") {
        return Some(Ttl::Never);
    }
    if let Some(nanos) = parse_go_duration(v) {
        if nanos < 1_000_000_000 {
            return None;
        }
        return Some(Ttl::Secs(nanos / 1_000_000_000));
    }
    // Go's parseInt64: digits only, else a failure.
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match v.parse::<i64>() {
        Ok(0) => Some(Ttl::None),
        Ok(n) => Some(Ttl::Secs(n)),
        Err(_) => None,
    }
}

/// Go's `time.ParseDuration`: `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, or `0`;
/// nanoseconds.
pub fn parse_go_duration(s: &str) -> Option<i64> {
    let mut rest = s;
    let mut neg = false;
    if let Some(r) = rest.strip_prefix('-') {
        neg = true;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    let mut total_int: i128 = 0;
    while !rest.is_empty() {
        let int_end = rest
            .bytes()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(rest.len());
        let int_part = &rest[..int_end];
        rest = &rest[int_end..];
        let mut frac_part = "";
        if let Some(r) = rest.strip_prefix('.') {
            let frac_end = r
                .bytes()
                .position(|b| !b.is_ascii_digit())
                .unwrap_or(r.len());
            frac_part = &r[..frac_end];
            rest = &r[frac_end..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return None;
        }
        let unit_end = rest
            .bytes()
            .position(|b| b == b'.' || b.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let whole: i128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().ok()?
        };
        total_int = total_int.checked_add(whole.checked_mul(scale)?)?;
        if !frac_part.is_empty() {
            let f: f64 = format!("0.{frac_part}").parse().ok()?;
            total += f * scale as f64;
        }
    }
    let v = total_int.checked_add(total as i128)?;
    let v = if neg { -v } else { v };
    i64::try_from(v).ok()
}

/// Go's `time.Duration.String()` for a whole number of seconds.
pub fn go_duration_secs(secs: i64) -> String {
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// A subject delete marker (or a KV purge marker): never replaced by
/// another marker when it expires.
pub fn is_marker(hdr: &[u8]) -> bool {
    !hdr.is_empty()
        && (headers::get(hdr, "Nats-Marker-Reason").is_some_and(|v| !v.is_empty())
            || headers::get(hdr, "KV-Operation") == Some("PURGE"))
}

/// The header block of a subject delete marker.
pub fn marker_header(marker_ttl_secs: i64) -> Vec<u8> {
    format!(
        "NATS/1.0\r\nNats-Marker-Reason: MaxAge\r\nNats-TTL: {}\r\nNats-Rollup: sub\r\n\r\n",
        go_duration_secs(marker_ttl_secs)
    )
    .into_bytes()
}

/// `hdr` with its `Nats-TTL` header replaced by `Nats-TTL: <secs>` at the
/// end of the block (how nats-server rewrites a TTL it raises).
pub fn with_ttl_secs(hdr: &[u8], secs: i64) -> Vec<u8> {
    let without = remove_header(hdr, "Nats-TTL");
    headers::with_added(&without, "Nats-TTL", &secs.to_string())
}

/// `hdr` without the lines of header `name` (exact name).
pub fn remove_header(hdr: &[u8], name: &str) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(hdr) else {
        return hdr.to_vec();
    };
    let mut out = String::with_capacity(text.len());
    let mut lines = text.split_inclusive("\r\n");
    if let Some(first) = lines.next() {
        out.push_str(first);
    }
    for line in lines {
        let drop = line.split_once(':').is_some_and(|(k, _)| k.trim() == name);
        if !drop {
            out.push_str(line);
        }
    }
    out.into_bytes()
}

impl StreamInner {
    /// Removes messages over `max_age` and past their TTL; with subject
    /// delete markers, a subject's last message is replaced by a marker.
    /// Returns true when anything changed.
    pub(super) fn expire_due(&mut self, now: i64, interest: &[SubjectFilter]) -> bool {
        let cfg = std::sync::Arc::clone(&self.config);
        let marker_secs = cfg.subject_delete_marker_ttl / 1_000_000_000;
        let mut changed = false;
        if cfg.max_age > 0 {
            // Below `age_scan_from` only `never` messages are left (all
            // older ones were removed), so they are not read again.
            let mut seq = self.age_scan_from;
            let cutoff = now - cfg.max_age;
            while let Ok(Some(m)) = self.store.next_from(seq, &SubjectFilter::All) {
                if m.ts > cutoff {
                    break;
                }
                seq = m.seq + 1;
                self.age_scan_from = seq;
                if !m.hdr.is_empty()
                    && headers::get(&m.hdr, "Nats-TTL").and_then(parse_ttl) == Some(Ttl::Never)
                {
                    continue;
                }
                self.expire_one(m.seq, &m.subject, &m.hdr, marker_secs, now, interest);
                changed = true;
            }
        }
        let mut due = Vec::new();
        while let Some((&(at, seq), ())) = self.ttls.first_key_value() {
            if at > now {
                break;
            }
            self.ttls.remove(&(at, seq));
            due.push(seq);
        }
        due.sort_unstable();
        for seq in due {
            let Ok(Some(m)) = self.store.get(seq) else {
                continue;
            };
            self.expire_one(m.seq, &m.subject, &m.hdr, marker_secs, now, interest);
            changed = true;
        }
        changed
    }

    fn expire_one(
        &mut self,
        seq: u64,
        subject: &str,
        hdr: &[u8],
        marker_secs: i64,
        now: i64,
        interest: &[SubjectFilter],
    ) {
        let last = self.store.subject_count(subject) == 1;
        if marker_secs <= 0 || !last || is_marker(hdr) {
            let _ = self.store.remove(seq, false);
            return;
        }
        self.store_marker(subject, marker_secs, now, interest);
    }

    /// Stores a subject delete marker on `subject`, which rolls up what the
    /// subject held.
    pub(super) fn store_marker(
        &mut self,
        subject: &str,
        marker_secs: i64,
        now: i64,
        interest: &[SubjectFilter],
    ) {
        let hdr = marker_header(marker_secs);
        // A marker is republished like any stored message (nats-server
        // stores it through its publish path).
        let republish_to = match &self.transforms {
            None => None,
            Some(t) => t.republish_to(subject).map(|to| {
                let last = self.store.last_seq_of_subject(subject).unwrap_or(0);
                (to, last)
            }),
        };
        let Ok(seq) = self.store.append(subject, &hdr, b"", now) else {
            return;
        };
        self.last_msg_id = None;
        self.ttls.insert(
            (
                now.saturating_add(marker_secs.saturating_mul(1_000_000_000)),
                seq,
            ),
            (),
        );
        let _ = self.store.purge(&Purge {
            filter: Some(subject.to_owned()),
            seq: Some(seq),
            keep: None,
        });
        if self.config.retention == Retention::Interest
            && !interest.iter().any(|f| f.matches(subject))
        {
            let _ = self.store.remove(seq, false);
        } else if let (Some((to, last)), Some(t)) = (republish_to, &self.transforms) {
            let copy = t.republished(to, &self.config.name, subject, seq, now, last, &hdr, b"");
            self.republished.push(copy);
        }
        let _ = self.enforce_limits(Some(subject));
    }

    /// Re-reads the TTLs of stored messages (at open).
    pub(super) fn rebuild_ttls(&mut self) {
        self.ttls.clear();
        let mut seq = 0;
        // A TTL is a header: the store skips messages without any.
        while let Ok(Some(m)) = self.store.next_with_headers_from(seq) {
            seq = m.seq + 1;
            if m.hdr.is_empty() {
                continue;
            }
            if let Some(ttl) = headers::get(&m.hdr, "Nats-TTL")
                .and_then(parse_ttl)
                .and_then(Ttl::nanos)
            {
                self.ttls.insert((m.ts.saturating_add(ttl), m.seq), ());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_values_read_as_nats_server_reads_them() {
        assert_eq!(parse_ttl("never"), Some(Ttl::Never));
        assert_eq!(parse_ttl("NEVER"), Some(Ttl::Never));
        assert_eq!(parse_ttl("1s"), Some(Ttl::Secs(1)));
        assert_eq!(parse_ttl("1.5s"), Some(Ttl::Secs(1)));
        assert_eq!(parse_ttl("1h2m"), Some(Ttl::Secs(3720)));
        assert_eq!(parse_ttl("30"), Some(Ttl::Secs(30)));
        assert_eq!(parse_ttl("500ms"), None);
        assert_eq!(parse_ttl("0"), None);
        assert_eq!(parse_ttl("-1"), None);
        assert_eq!(parse_ttl("-1s"), None);
        assert_eq!(parse_ttl("abc"), None);
        assert_eq!(parse_ttl(""), Some(Ttl::None));
        assert_eq!(parse_ttl("00"), Some(Ttl::None));
    }

    #[test]
    fn go_durations_parse_and_print_like_go() {
        assert_eq!(parse_go_duration("1h30m"), Some(5_400_000_000_000));
        assert_eq!(parse_go_duration(".5s"), Some(500_000_000));
        assert_eq!(parse_go_duration("1.s"), Some(1_000_000_000));
        assert_eq!(parse_go_duration("2us"), Some(2_000));
        assert_eq!(parse_go_duration("1d"), None);
        assert_eq!(parse_go_duration("1"), None);
        assert_eq!(parse_go_duration("."), None);
        assert_eq!(go_duration_secs(2), "2s");
        assert_eq!(go_duration_secs(60), "1m0s");
        assert_eq!(go_duration_secs(300), "5m0s");
        assert_eq!(go_duration_secs(3661), "1h1m1s");
    }

    #[test]
    fn a_raised_ttl_replaces_the_header_at_the_end() {
        let h = b"NATS/1.0\r\nNats-TTL: 1s\r\nA: b\r\n\r\n";
        assert_eq!(
            with_ttl_secs(h, 5),
            b"NATS/1.0\r\nA: b\r\nNats-TTL: 5\r\n\r\n".to_vec()
        );
        assert!(is_marker(&marker_header(2)));
        assert!(!is_marker(b"NATS/1.0\r\nKV-Operation: DEL\r\n\r\n"));
    }
}
