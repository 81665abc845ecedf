//! MQTT sessions that outlive their connection (CONNECT with the clean
//! session flag 0), kept as nats-server keeps them: one record per client
//! ID in the account's `$MQTT_sess` stream (subject `$MQTT.sess.<hash of
//! the client ID>`, one message per subject, file storage), a JSON object
//! with the client ID, the subscriptions (NATS subject of each filter →
//! granted QoS) and the durable `$MQTT_msgs` consumer of each QoS 1
//! subscription (keyed as nats-server keys them: the filter's subject, and
//! `<parent> fwc` for the parent level a `#` filter also takes), with the
//! configuration it was made with, and (`pubrel`) the configuration of
//! its PUBREL consumer once it had a QoS 2 subscription. The consumers are named
//! `<hash>_<unique>` and push to `$MQTT.sub.<unique>`; a resumed session
//! binds to them again, so they keep their place in the stream while the
//! client is away.
//!
//! Also here: the per-client-ID lock that serialises the connections of
//! one client ID (a new one waits until the one it took over has ended and
//! written its record), and the sweep, on the first connection of an
//! account after a start, of what a killed server left behind: records of
//! clean sessions (and their consumers), and `$MQTT.sub.` consumers no
//! record names.
//!
//! Every function on a [`Jsa`] here blocks (store reads, fsync): callers
//! run them on a blocking thread.
//!
//! Must not: decide MQTT semantics (present flag, what a clean session
//! wipes: the connection does), or touch streams other than `$MQTT_sess`,
//! `$MQTT_msgs` and (through [`Jsa`]) `$MQTT_out`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::jsa::{Jsa, JsaError, MSGS, SUB_PREFIX};
use crate::jetstream::store::Purge;

/// The sessions' stream.
pub(crate) const SESS: &str = "$MQTT_sess";
/// The subject prefix of [`SESS`].
const SESS_PREFIX: &str = "$MQTT.sess.";
/// nats-server 2.15.1's configuration of [`SESS`].
const SESS_CONFIG: &str = r#"{"name":"$MQTT_sess","subjects":["$MQTT.sess.>"],"retention":"limits","max_msgs_per_subject":1,"storage":"file","num_replicas":1}"#;

/// nats-server's hash of a client ID: the token of its record's subject
/// and the prefix of its consumers' names.
pub(crate) fn client_hash(client_id: &str) -> String {
    crate::jetstream::stream::sourcing::config::short_hash(client_id)
}

/// A session as stored (nats-server's field names).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The client ID (a record found under another ID's hash is a
    /// collision: refused).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// A clean session's record (kept while it is connected, as
    /// nats-server keeps it; a killed server's are swept).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clean: bool,
    /// NATS subject of each filter → the QoS granted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subs: BTreeMap<String, u8>,
    /// The QoS 1 subscriptions' consumers: key (see the module doc) → the
    /// consumer's configuration.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cons: BTreeMap<String, serde_json::Value>,
    /// The session's PUBREL consumer on `$MQTT_out` (made at its first
    /// QoS 2 subscription): its configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pubrel: Option<serde_json::Value>,
}

impl Record {
    /// The durable names of its consumers.
    pub(crate) fn consumer_names(&self) -> impl Iterator<Item = &str> {
        self.cons
            .values()
            .filter_map(|c| c.get("durable_name").and_then(serde_json::Value::as_str))
    }
}

/// Why a stored session cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error(transparent)]
    Jsa(#[from] JsaError),
    /// The record under this client ID's hash is another client's.
    #[error("session record of client ID {stored:?} found under the hash of {asked:?}")]
    Collision { stored: String, asked: String },
    /// The record is not JSON this server reads.
    #[error("session record unreadable: {0}")]
    Garbled(String),
}

fn subject_of(hash: &str) -> String {
    format!("{SESS_PREFIX}{hash}")
}

/// The stored session of `client_id`, if any.
pub(crate) fn load(jsa: &Jsa, client_id: &str) -> Result<Option<Record>, SessionError> {
    let Some(stream) = jsa.engine().stream(SESS) else {
        return Ok(None);
    };
    let Some(m) = stream
        .last_by_subject(&subject_of(&client_hash(client_id)))
        .map_err(JsaError::from)?
    else {
        return Ok(None);
    };
    let rec: Record =
        serde_json::from_slice(&m.data).map_err(|e| SessionError::Garbled(e.to_string()))?;
    if rec.id != client_id {
        return Err(SessionError::Collision {
            stored: rec.id,
            asked: client_id.to_owned(),
        });
    }
    Ok(Some(rec))
}

/// Stores `rec` as its client's session, durably.
pub(crate) fn save(jsa: &Jsa, rec: &Record) -> Result<(), JsaError> {
    let stream = crate::jetstream::api::ensure_stream(jsa.engine(), SESS, SESS_CONFIG.as_bytes())?;
    let body = serde_json::to_vec(rec).map_err(|e| JsaError::Api {
        err_code: 0,
        description: e.to_string(),
    })?;
    stream.store_internal(&subject_of(&client_hash(&rec.id)), &[], &body)?;
    stream.wait_durable().map_err(JsaError::NotDurable)
}

/// Deletes the session of `rec.id`: its consumers (with its PUBREL
/// consumer its owed PUBRELs go), then its record.
pub(crate) fn wipe(jsa: &Jsa, rec: &Record) -> Result<(), JsaError> {
    for name in rec.consumer_names() {
        crate::jetstream::api::remove_consumer(jsa.engine(), MSGS, name)?;
    }
    jsa.remove_pubrel(&client_hash(&rec.id))?;
    forget(jsa, &client_hash(&rec.id))
}

/// Deletes the record of `client_id` (a clean session's, at its end),
/// durably.
pub(crate) fn forget_client(jsa: &Jsa, client_id: &str) -> Result<(), JsaError> {
    forget(jsa, &client_hash(client_id))
}

/// Deletes the record stored under `hash`, durably.
fn forget(jsa: &Jsa, hash: &str) -> Result<(), JsaError> {
    let Some(stream) = jsa.engine().stream(SESS) else {
        return Ok(());
    };
    stream.purge(&Purge {
        filter: Some(subject_of(hash)),
        seq: None,
        keep: None,
    })?;
    stream.wait_durable().map_err(JsaError::NotDurable)
}

/// What [`sweep`] removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Swept {
    /// Records of clean sessions.
    pub records: usize,
    /// `$MQTT_msgs` consumers.
    pub consumers: usize,
}

/// Removes what connections that were alive when the server was killed
/// left behind: the records of clean sessions with their consumers, and
/// the MQTT consumers (deliver subject under `$MQTT.sub.`) of
/// `$MQTT_msgs` that no record names. Run before any connection of the
/// account uses its sessions after a start: every MQTT consumer then
/// belongs to a stored persistent session or to nobody.
pub(crate) fn sweep(jsa: &Jsa) -> Result<Swept, JsaError> {
    let mut swept = Swept::default();
    let mut kept: HashSet<String> = HashSet::new();
    if let Some(stream) = jsa.engine().stream(SESS) {
        for (subject, _) in stream.subjects(&format!("{SESS_PREFIX}>")) {
            let Some(m) = stream.last_by_subject(&subject)? else {
                continue;
            };
            let Ok(rec) = serde_json::from_slice::<Record>(&m.data) else {
                // Not ours to judge: its consumers stay named (none known).
                tracing::warn!("mqtt: unreadable session record on {subject:?} left as it is");
                continue;
            };
            if rec.clean {
                for name in rec.consumer_names() {
                    crate::jetstream::api::remove_consumer(jsa.engine(), MSGS, name)?;
                }
                if let Some(hash) = subject.strip_prefix(SESS_PREFIX) {
                    forget(jsa, hash)?;
                    swept.records += 1;
                }
            } else {
                kept.extend(rec.consumer_names().map(str::to_owned));
            }
        }
    }
    if let Some(msgs) = jsa.engine().stream(MSGS) {
        for c in msgs.consumers() {
            let mqtt = c
                .config()
                .deliver_subject
                .as_deref()
                .is_some_and(|d| d.starts_with(SUB_PREFIX));
            if mqtt && !kept.contains(&c.name) {
                crate::jetstream::api::remove_consumer(jsa.engine(), MSGS, &c.name)?;
                swept.consumers += 1;
            }
        }
    }
    Ok(swept)
}

/// The listener's bookkeeping of sessions across connections.
#[derive(Default)]
pub(crate) struct Registry {
    /// One lock per client ID in use: held by its connection from CONNECT
    /// to its end.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The accounts whose leftovers were swept since the start.
    swept: tokio::sync::Mutex<HashSet<String>>,
}

impl Registry {
    /// Waits until no other connection holds `client_id`'s session.
    pub(crate) async fn lock(&self, client_id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut map = match self.locks.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            // Locks nobody holds or waits for are dropped as others come.
            map.retain(|_, l| Arc::strong_count(l) > 1);
            Arc::clone(map.entry(client_id.to_owned()).or_default())
        };
        lock.lock_owned().await
    }

    /// Runs [`sweep`] for the account of `jsa` once per start, before any
    /// of its connections goes on.
    pub(crate) async fn swept(&self, account: &str, jsa: &Jsa) -> Result<(), JsaError> {
        let mut done = self.swept.lock().await;
        if done.contains(account) {
            return Ok(());
        }
        let jsa2 = jsa.clone();
        let r = tokio::task::spawn_blocking(move || sweep(&jsa2))
            .await
            .map_err(|e| JsaError::NotDurable(e.to_string()))??;
        if r != Swept::default() {
            tracing::info!(
                "mqtt: account {account:?}: removed {} clean session record(s) and {} \
                 consumer(s) left by connections of a previous run",
                r.records,
                r.consumers
            );
        }
        done.insert(account.to_owned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consumer(jsa: &Jsa, name: &str, deliver: &str) -> serde_json::Value {
        let config = serde_json::json!({
            "durable_name": name,
            "deliver_subject": deliver,
            "ack_policy": "explicit",
            "filter_subject": format!("$MQTT.msgs.{name}"),
        });
        crate::jetstream::api::ensure_stream(
            jsa.engine(),
            MSGS,
            br#"{"name":"$MQTT_msgs","subjects":["$MQTT.msgs.>"],"retention":"interest"}"#,
        )
        .unwrap();
        crate::jetstream::api::ensure_consumer(
            jsa.engine(),
            MSGS,
            name,
            config.to_string().as_bytes(),
        )
        .unwrap();
        config
    }

    fn names(jsa: &Jsa) -> Vec<String> {
        let mut v: Vec<String> = jsa
            .engine()
            .stream(MSGS)
            .unwrap()
            .consumers()
            .iter()
            .map(|c| c.name.clone())
            .collect();
        v.sort();
        v
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sweep_removes_clean_sessions_and_unnamed_mqtt_consumers_only() {
        // The store's flusher runs on the runtime; these calls block.
        tokio::task::spawn_blocking(sweep_body)
            .await
            .expect("no panic");
    }

    fn sweep_body() {
        let dir = tempfile::tempdir().expect("tempdir");
        let jsa = super::super::jsa::open_for_tests(dir.path());
        let kept = consumer(&jsa, "K_1", "$MQTT.sub.1");
        let clean = consumer(&jsa, "C_2", "$MQTT.sub.2");
        consumer(&jsa, "O_3", "$MQTT.sub.3");
        consumer(&jsa, "user", "not.mqtt");
        let persistent = Record {
            id: "p".into(),
            subs: [("k".to_string(), 1)].into(),
            cons: [("k".to_string(), kept)].into(),
            ..Record::default()
        };
        save(&jsa, &persistent).unwrap();
        save(
            &jsa,
            &Record {
                id: "c".into(),
                clean: true,
                cons: [("c".to_string(), clean)].into(),
                ..Record::default()
            },
        )
        .unwrap();
        assert_eq!(
            sweep(&jsa).unwrap(),
            Swept {
                records: 1,
                consumers: 1
            }
        );
        assert_eq!(names(&jsa), vec!["K_1".to_string(), "user".to_string()]);
        assert_eq!(load(&jsa, "p").unwrap(), Some(persistent));
        assert_eq!(load(&jsa, "c").unwrap(), None);
        // Nothing more the second time.
        assert_eq!(sweep(&jsa).unwrap(), Swept::default());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_record_of_another_client_id_is_a_collision_and_wipe_removes_all() {
        tokio::task::spawn_blocking(collision_body)
            .await
            .expect("no panic");
    }

    fn collision_body() {
        let dir = tempfile::tempdir().expect("tempdir");
        let jsa = super::super::jsa::open_for_tests(dir.path());
        let cfg = consumer(&jsa, "W_1", "$MQTT.sub.w");
        let rec = Record {
            id: "mine".into(),
            cons: [("w".to_string(), cfg)].into(),
            ..Record::default()
        };
        save(&jsa, &rec).unwrap();
        // Someone else's record under this ID's subject.
        let stream = jsa.engine().stream(SESS).unwrap();
        stream
            .store_internal(
                &subject_of(&client_hash("theirs")),
                &[],
                br#"{"id":"mine"}"#,
            )
            .unwrap();
        assert!(matches!(
            load(&jsa, "theirs"),
            Err(SessionError::Collision { .. })
        ));
        wipe(&jsa, &rec).unwrap();
        assert_eq!(load(&jsa, "mine").unwrap(), None);
        assert!(names(&jsa).is_empty());
    }

    #[test]
    fn client_hash_is_nats_servers() {
        // As nats-server 2.15.1 names `$MQTT.sess.<hash>` for this ID.
        assert_eq!(client_hash("ps69b79c2e9"), "OXK0cF65");
    }

    #[test]
    fn record_reads_nats_servers_json_and_writes_its_field_names() {
        let theirs = br#"{"origin":"jpM4xcq6","id":"c1","subs":{"a.b":1,"z":0},"cons":{"a.b":{"durable_name":"H_x","deliver_subject":"$MQTT.sub.x","ack_wait":2000000000}}}"#;
        let rec: Record = serde_json::from_slice(theirs).unwrap();
        assert_eq!(rec.id, "c1");
        assert!(!rec.clean);
        assert_eq!(rec.subs.get("a.b"), Some(&1));
        assert_eq!(rec.consumer_names().collect::<Vec<_>>(), vec!["H_x"]);
        let ours = serde_json::to_value(&rec).unwrap();
        assert_eq!(ours["subs"]["z"], 0);
        assert!(ours.get("clean").is_none(), "false is left out");
        let empty = serde_json::to_value(Record {
            id: "e".into(),
            ..Record::default()
        })
        .unwrap();
        assert_eq!(empty, serde_json::json!({"id": "e"}));
    }

    #[test]
    fn record_keeps_the_pubrel_consumer_under_nats_servers_name() {
        let theirs = br#"{"id":"c2","subs":{"q":2},"pubrel":{"durable_name":"$MQTT_PUBREL_H","deliver_subject":"$MQTT.deliver.pubrel.H"}}"#;
        let rec: Record = serde_json::from_slice(theirs).unwrap();
        assert_eq!(rec.subs.get("q"), Some(&2));
        let pubrel = rec.pubrel.as_ref().expect("pubrel consumer");
        assert_eq!(pubrel["durable_name"], "$MQTT_PUBREL_H");
        let ours = serde_json::to_value(&rec).unwrap();
        assert_eq!(ours["pubrel"]["deliver_subject"], "$MQTT.deliver.pubrel.H");
    }
}
