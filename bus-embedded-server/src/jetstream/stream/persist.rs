//! `persist_mode` (ADR-56, nats-server 2.12): a file stream may ask to be
//! acknowledged before its appends are fsynced (`async`). Here: the
//! config rules, with nats-server 2.15.1's texts, and the sync policy its
//! file store is opened with. Must not touch the publish path: the mode
//! only picks the store's [`SyncPolicy`] when the stream is opened.

use std::time::Duration;

use crate::jetstream::SyncPolicy;
use crate::jetstream::errors::ApiError;
use crate::jetstream::types::{PersistMode, StorageType, StreamConfig};

/// How often an `async` stream's store fsyncs when the server itself
/// fsyncs before every ack: nats-server's default `sync_interval`.
pub const ASYNC_SYNC_INTERVAL: Duration = Duration::from_secs(120);

/// Create (and update) checks of an `async` stream, before the replicas
/// check (nats-server names the persist mode first).
pub(crate) fn check_config(cfg: &StreamConfig) -> Result<(), ApiError> {
    if cfg.persist_mode != PersistMode::Async {
        return Ok(());
    }
    if cfg.storage != StorageType::File {
        return Err(ApiError::invalid_config(
            "async persist mode is only supported on file storage",
        ));
    }
    if cfg.num_replicas > 1 {
        return Err(ApiError::invalid_config(
            "async persist mode is not supported on replicated streams",
        ));
    }
    if cfg.allow_atomic {
        return Err(ApiError::invalid_config(
            "async persist mode is not supported with atomic batch publish",
        ));
    }
    Ok(())
}

/// The mode is fixed at create.
pub(crate) fn check_update(old: &StreamConfig, new: &StreamConfig) -> Result<(), ApiError> {
    if old.persist_mode != new.persist_mode {
        return Err(ApiError::invalid_config(
            "stream configuration update can not change persist mode",
        ));
    }
    Ok(())
}

/// The sync policy of a stream's file store: the server's, except that an
/// `async` stream never fsyncs before its acks (it keeps the server's
/// interval if there is one).
pub(crate) fn sync_policy(server: SyncPolicy, mode: PersistMode) -> SyncPolicy {
    match (mode, server) {
        (PersistMode::Async, SyncPolicy::Always) => SyncPolicy::Interval(ASYNC_SYNC_INTERVAL),
        _ => server,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_async_streams_leave_the_servers_sync_policy() {
        let every = SyncPolicy::Interval(Duration::from_secs(5));
        assert_eq!(
            sync_policy(SyncPolicy::Always, PersistMode::Default),
            SyncPolicy::Always
        );
        assert_eq!(
            sync_policy(SyncPolicy::Always, PersistMode::Async),
            SyncPolicy::Interval(ASYNC_SYNC_INTERVAL)
        );
        assert_eq!(sync_policy(every, PersistMode::Async), every);
        assert_eq!(sync_policy(every, PersistMode::Default), every);
    }

    #[test]
    fn async_is_refused_off_r1_file_streams_and_with_atomic_batches() {
        let ok = StreamConfig {
            persist_mode: PersistMode::Async,
            ..StreamConfig::default()
        };
        assert!(check_config(&ok).is_ok());
        for (bad, text) in [
            (
                StreamConfig {
                    storage: StorageType::Memory,
                    ..ok.clone()
                },
                "async persist mode is only supported on file storage",
            ),
            (
                StreamConfig {
                    num_replicas: 3,
                    ..ok.clone()
                },
                "async persist mode is not supported on replicated streams",
            ),
            (
                StreamConfig {
                    allow_atomic: true,
                    ..ok.clone()
                },
                "async persist mode is not supported with atomic batch publish",
            ),
        ] {
            let e = check_config(&bad).expect_err(text);
            assert_eq!((e.err_code, e.description.as_str()), (10052, text));
        }
        assert!(check_update(&ok, &StreamConfig::default()).is_err());
        assert!(check_update(&ok, &ok).is_ok());
    }
}
