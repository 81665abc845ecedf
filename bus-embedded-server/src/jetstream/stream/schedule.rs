//! Message schedules (ADR-51, `allow_msg_schedules`) are not built: a
//! stream asking for them is refused at create and update (see
//! `check_config`); on any other stream the schedule headers get
//! nats-server 2.15.1's publish errors, so a scheduled message is never
//! stored as if it were a plain one.

use super::headers;
use crate::jetstream::errors::ApiError;
use crate::jetstream::types::StreamConfig;

/// Refuses a stream config asking for message schedules.
pub(crate) fn check_config(cfg: &StreamConfig) -> Result<(), ApiError> {
    if cfg.allow_msg_schedules {
        return Err(ApiError::invalid_config(
            "message schedules are not supported by this server",
        ));
    }
    Ok(())
}

/// Checks a publish's schedule headers (the stream has no schedules).
pub(super) fn check_publish(hdr: &[u8]) -> Result<(), ApiError> {
    if headers::get(hdr, "Nats-Schedule").is_some_and(|v| !v.is_empty()) {
        return Err(ApiError::schedules_disabled());
    }
    // Set by a scheduler on what it publishes, never by a client.
    if ["Nats-Scheduler", "Nats-Schedule-Next"]
        .iter()
        .any(|h| headers::get(hdr, h).is_some_and(|v| !v.is_empty()))
    {
        return Err(ApiError::schedules_scheduler_invalid());
    }
    Ok(())
}
