//! Versioning stamps in stream and consumer metadata (nats-server 2.11+,
//! ADR-44): the API level an asset needs (`_nats.req.level`), kept in its
//! stored config, and the server's version and API level (`_nats.ver`,
//! `_nats.level`), added only to the config shown in create, update and
//! info answers (never stored, never in `STREAM.LIST`/`CONSUMER.LIST`).
//!
//! What nats-server 2.15.1 does, and this module copies:
//! - On stream create/update and consumer create/update/pause, the
//!   required level is computed from the config and overwrites whatever
//!   the request said; user-supplied `_nats.ver`/`_nats.level` are
//!   dropped; other keys, `_nats.*` ones included, are kept as given.
//! - Streams: TTLs or subject delete markers need 1; counters, atomic
//!   batches, schedules and `persist_mode: async` need 2; fast batches 4.
//! - Consumers: `pause_until` (any non-zero time, past ones too) and
//!   priority policies, groups or a pin timeout need 1.
//!
//! Owns only the metadata keys; it must not judge a config (the API
//! handlers do) nor touch the publish or delivery paths.

use std::collections::BTreeMap;

use serde_json::Value;

use super::headers::API_LEVEL;
use super::types::{ConsumerConfig, PersistMode, PriorityPolicy, StreamConfig};

/// The nats-server version whose client-visible behaviour we implement:
/// clients turn features on by it (nats.js's consumer reset needs 2.14,
/// batched direct get and priority groups 2.11), so it names the newest
/// release whose JetStream features this server has (see README for what
/// of 2.14 is not built: message tracing, MQTT QoS 1/2).
pub const VERSION: &str = "2.14.0";

/// Metadata key: the API level an asset needs (stored).
pub const REQUIRED_LEVEL_KEY: &str = "_nats.req.level";
/// Metadata key: the server's version (answers only).
pub const SERVER_VERSION_KEY: &str = "_nats.ver";
/// Metadata key: the server's API level (answers only).
pub const SERVER_LEVEL_KEY: &str = "_nats.level";

/// The API level a stream's config needs.
pub fn stream_required_level(cfg: &StreamConfig) -> i64 {
    let mut level = 0;
    if cfg.allow_msg_ttl || cfg.subject_delete_marker_ttl > 0 {
        level = level.max(1);
    }
    if cfg.allow_msg_counter
        || cfg.allow_atomic
        || cfg.allow_msg_schedules
        || cfg.persist_mode == PersistMode::Async
    {
        level = level.max(2);
    }
    if cfg.allow_batched {
        level = level.max(4);
    }
    level
}

/// The API level a consumer's config needs.
pub fn consumer_required_level(cfg: &ConsumerConfig) -> i64 {
    let paused = cfg.pause_until.as_deref().is_some_and(|t| !t.is_empty());
    let priority = cfg.priority_policy != PriorityPolicy::None
        || cfg.priority_timeout != 0
        || !cfg.priority_groups.is_empty();
    i64::from(paused || priority)
}

/// Stamps a stream config about to be created or updated: its required
/// level, and no server keys.
pub fn stamp_stream(cfg: &mut StreamConfig) {
    let level = stream_required_level(cfg);
    stamp(&mut cfg.metadata, level);
}

/// Stamps a consumer config about to be created, updated or paused.
pub fn stamp_consumer(cfg: &mut ConsumerConfig) {
    let level = consumer_required_level(cfg);
    stamp(&mut cfg.metadata, level);
}

fn stamp(meta: &mut Option<BTreeMap<String, String>>, level: i64) {
    let m = meta.get_or_insert_with(Default::default);
    m.remove(SERVER_VERSION_KEY);
    m.remove(SERVER_LEVEL_KEY);
    m.insert(REQUIRED_LEVEL_KEY.to_owned(), level.to_string());
}

/// For comparing a create request with the asset already there: takes
/// the stored required level (or none, for an asset stored before levels
/// were stamped), so the stamp alone never makes two configs differ.
pub fn adopt_stored_level(
    meta: &mut Option<BTreeMap<String, String>>,
    stored: Option<&BTreeMap<String, String>>,
) {
    match stored.and_then(|m| m.get(REQUIRED_LEVEL_KEY)) {
        Some(level) => {
            meta.get_or_insert_with(Default::default)
                .insert(REQUIRED_LEVEL_KEY.to_owned(), level.clone());
        }
        None => {
            if let Some(m) = meta {
                m.remove(REQUIRED_LEVEL_KEY);
                if m.is_empty() {
                    *meta = None;
                }
            }
        }
    }
}

/// Adds the server's version and API level to the `config.metadata` of a
/// stream or consumer info answer (create, update, info; not lists).
pub fn show_server_keys(info: &mut Value) {
    let Some(Value::Object(cfg)) = info.get_mut("config") else {
        return;
    };
    let meta = cfg
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    if !meta.is_object() {
        *meta = Value::Object(Default::default());
    }
    if let Value::Object(m) = meta {
        m.insert(SERVER_VERSION_KEY.into(), Value::from(VERSION));
        m.insert(SERVER_LEVEL_KEY.into(), Value::from(API_LEVEL.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(f: impl FnOnce(&mut StreamConfig)) -> StreamConfig {
        let mut c = StreamConfig::default();
        f(&mut c);
        c
    }

    #[test]
    fn stream_levels_follow_the_features_nats_server_names() {
        assert_eq!(stream_required_level(&stream(|_| {})), 0);
        assert_eq!(
            stream_required_level(&stream(|c| c.allow_msg_ttl = true)),
            1
        );
        assert_eq!(
            stream_required_level(&stream(|c| c.subject_delete_marker_ttl = 1)),
            1
        );
        assert_eq!(stream_required_level(&stream(|c| c.allow_atomic = true)), 2);
        assert_eq!(
            stream_required_level(&stream(|c| c.allow_msg_counter = true)),
            2
        );
        assert_eq!(
            stream_required_level(&stream(|c| c.allow_msg_schedules = true)),
            2
        );
        assert_eq!(
            stream_required_level(&stream(|c| c.persist_mode = PersistMode::Async)),
            2
        );
        assert_eq!(
            stream_required_level(&stream(|c| {
                c.allow_batched = true;
                c.allow_msg_ttl = true;
            })),
            4
        );
    }

    #[test]
    fn consumer_levels_count_pause_and_priority() {
        let mut c = ConsumerConfig::default();
        assert_eq!(consumer_required_level(&c), 0);
        c.pause_until = Some("2000-01-01T00:00:00Z".into());
        assert_eq!(consumer_required_level(&c), 1);
        c.pause_until = None;
        c.priority_groups = vec!["g".into()];
        assert_eq!(consumer_required_level(&c), 1);
    }

    #[test]
    fn stamping_overwrites_the_level_and_drops_server_keys_but_keeps_the_rest() {
        let mut c = stream(|c| c.allow_msg_ttl = true);
        c.metadata = Some(
            [
                ("x", "1"),
                ("_nats.req.level", "9"),
                ("_nats.ver", "0.0.1"),
                ("_nats.level", "77"),
                ("_nats.other", "z"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        );
        stamp_stream(&mut c);
        let m = c.metadata.expect("metadata");
        let keys: Vec<(&str, &str)> = m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            keys,
            vec![("_nats.other", "z"), ("_nats.req.level", "1"), ("x", "1")]
        );
    }

    #[test]
    fn a_stream_stored_before_stamps_still_equals_its_recreate() {
        let stored = stream(|_| {});
        let mut asked = stream(|_| {});
        stamp_stream(&mut asked);
        assert_ne!(stored, asked);
        adopt_stored_level(&mut asked.metadata, stored.metadata.as_ref());
        assert_eq!(stored, asked);
        let mut stored = stream(|c| c.allow_msg_ttl = true);
        stamp_stream(&mut stored);
        let mut asked = stream(|c| c.allow_msg_ttl = true);
        asked.metadata = Some([(REQUIRED_LEVEL_KEY.to_owned(), "0".to_owned())].into());
        adopt_stored_level(&mut asked.metadata, stored.metadata.as_ref());
        assert_eq!(stored, asked);
    }

    #[test]
    fn answers_show_the_server_keys_even_without_stored_metadata() {
        let mut v = serde_json::json!({"config": {"name": "S"}});
        show_server_keys(&mut v);
        assert_eq!(v["config"]["metadata"]["_nats.ver"], VERSION);
        assert_eq!(
            v["config"]["metadata"]["_nats.level"],
            API_LEVEL.to_string()
        );
    }
}
