//! Stream configuration rules of the message features (TTLs, subject
//! delete markers, counters; schedules have theirs in [`super::schedule`]), with nats-server 2.15.1's texts,
//! in its order of checks.

use crate::jetstream::errors::ApiError;
use crate::jetstream::types::{DiscardPolicy, Retention, StreamConfig};

/// Create (and update) checks, after the duplicate-window checks;
/// `ttl_asked`: the request set `allow_msg_ttl` itself (delete markers
/// turn it on, which a counter stream may have).
pub(crate) fn check_config(cfg: &StreamConfig, ttl_asked: bool) -> Result<(), ApiError> {
    if cfg.allow_msg_counter {
        if cfg.discard == DiscardPolicy::New {
            return Err(ApiError::invalid_config(
                "counter stream cannot use discard new",
            ));
        }
        if ttl_asked {
            return Err(ApiError::invalid_config(
                "counter stream cannot use message TTLs",
            ));
        }
        if cfg.allow_msg_schedules {
            return Err(ApiError::invalid_config(
                "counter stream cannot use message schedules",
            ));
        }
        if cfg.retention != Retention::Limits {
            return Err(ApiError::invalid_config(
                "counter stream can only use limits retention",
            ));
        }
    }
    if cfg.subject_delete_marker_ttl > 0 && cfg.subject_delete_marker_ttl < 1_000_000_000 {
        return Err(ApiError::invalid_config(
            "subject delete marker TTL must be at least 1 second",
        ));
    }
    if cfg.subject_delete_marker_ttl < 0 {
        return Err(ApiError::invalid_config(
            "subject delete marker TTL must not be negative",
        ));
    }
    Ok(())
}

/// What an update may not change.
pub(crate) fn check_update(old: &StreamConfig, new: &StreamConfig) -> Result<(), ApiError> {
    if old.allow_msg_ttl && !new.allow_msg_ttl {
        return Err(ApiError::invalid_config(
            "message TTL status can not be disabled",
        ));
    }
    if old.allow_msg_counter != new.allow_msg_counter {
        return Err(ApiError::invalid_config(
            "stream configuration update can not change message counter setting",
        ));
    }
    Ok(())
}

/// Which message-feature headers a header block may hold, found in one
/// pass over the header names (no UTF-8 check, no allocation), so a
/// publish with other headers (`Nats-Msg-Id`...) pays one scan, not one per
/// feature. Names compare ASCII-case-insensitively, as header lookups do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Present {
    /// `Nats-Incr`.
    pub incr: bool,
    /// `Nats-TTL`.
    pub ttl: bool,
    /// `Nats-Schedule*` / `Nats-Scheduler`.
    pub schedule: bool,
}

/// Scans `hdr`'s header names (see [`Present`]).
pub(crate) fn scan(hdr: &[u8]) -> Present {
    let mut p = Present::default();
    // Skip the `NATS/1.0` line; each further line is `Name: value`.
    for line in hdr.split(|&b| b == b'\n').skip(1) {
        let name = match line.iter().position(|&b| b == b':') {
            Some(at) => line[..at].trim_ascii(),
            None => continue,
        };
        let starts = |prefix: &[u8]| {
            name.len() >= prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix)
        };
        if name.eq_ignore_ascii_case(b"Nats-Incr") {
            p.incr = true;
        } else if name.eq_ignore_ascii_case(b"Nats-TTL") {
            p.ttl = true;
        } else if starts(b"Nats-Schedul") {
            p.schedule = true;
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_scan_finds_the_feature_headers_in_any_case() {
        let none = scan(b"NATS/1.0\r\nNats-Msg-Id: 1\r\nNats-TTLX: 1\r\n\r\n");
        assert_eq!(none, Present::default());
        let all = scan(b"NATS/1.0\r\nnats-incr: 1\r\n NATS-TTL : 5s\r\nNats-Scheduler: x\r\n\r\n");
        assert_eq!(
            all,
            Present {
                incr: true,
                ttl: true,
                schedule: true
            }
        );
        assert!(scan(b"NATS/1.0\r\nNats-Schedule-Next: x\r\n\r\n").schedule);
        assert_eq!(scan(b""), Present::default());
    }
}
