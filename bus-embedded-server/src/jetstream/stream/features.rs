//! Stream configuration rules of the message features (TTLs, subject
//! delete markers, counters; schedules are refused in [`super::schedule`]), with nats-server 2.15.1's texts,
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
