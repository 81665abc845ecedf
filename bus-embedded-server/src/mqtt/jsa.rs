//! The MQTT listener's own, privileged path to JetStream in the
//! connection's account (nats-server's internal "JSA" client): the
//! `$MQTT_*` streams are created and written here with the server's
//! authority, not the user's (whose permissions may not even allow
//! `$JS.API.>`), as nats-server does.
//!
//! QoS 1 subscriptions: the stream `$MQTT_msgs` (QoS 1 messages MQTT
//! clients publish) and one durable consumer per subscribed subject,
//! delivered to the connection through an internal subscription.
//!
//! QoS 2 subscriptions: deliveries through the same `$MQTT_msgs`
//! consumers, and, per session, the stream `$MQTT_out` (nats-server's
//! configuration: interest retention) where a PUBREL owed to the client is
//! stored (subject `$MQTT.out.pubrel.<client hash>`, header
//! `Nmqtt-PubRel: <packet id>`) from the client's PUBREC until its PUBCOMP,
//! read by the durable consumer `$MQTT_PUBREL_<client hash>` pushing to
//! `$MQTT.deliver.pubrel.<client hash>`, as nats-server does.
//!
//! Retained messages: one per
//! topic, in the stream `$MQTT_rmsgs` (subjects `$MQTT.rmsgs.<subject>`,
//! one message per subject, file storage, the configuration nats-server
//! 2.15.1 gives it), created the first time a client of the account
//! publishes or looks up a retained message. Each stored message carries
//! the MQTT topic (`Nmqtt-RTopic`) and its flags (`Nmqtt-RFlags`: QoS << 1
//! | retain), as nats-server's do, so retained messages read the same on
//! both servers' stores.
//!
//! Every function here blocks (stream creation, fsync, store reads that
//! may go to disk): callers run them on a blocking thread.
//!
//! Must not: apply a client's permissions (the bridge does that through
//! the session before it calls here), or touch streams other than the
//! `$MQTT_*` ones.

use std::sync::Arc;

use crate::account::Account;
use crate::jetstream::JetStream;
use crate::jetstream::errors::ApiError;
use crate::jetstream::headers::{self, HeaderBuilder};
use crate::jetstream::store::Purge;
use crate::jetstream::stream::Stream;
use crate::outbound::Client;
use crate::state::ServerState;
use crate::sublist::Subscription;

use super::topic;

/// The retained messages' stream.
pub(crate) const RMSGS: &str = "$MQTT_rmsgs";
/// The subject prefix of [`RMSGS`].
const RMSGS_PREFIX: &str = "$MQTT.rmsgs.";
/// nats-server 2.15.1's configuration of [`RMSGS`].
const RMSGS_CONFIG: &str = r#"{"name":"$MQTT_rmsgs","subjects":["$MQTT.rmsgs.>"],"retention":"limits","max_msgs_per_subject":1,"storage":"file","num_replicas":1}"#;

/// The stream of QoS 1 messages published by MQTT clients, read by one
/// durable consumer per QoS 1 subscription (interest retention: a
/// message goes once every subscription acknowledged it).
pub(crate) const MSGS: &str = "$MQTT_msgs";
/// The subject prefix of [`MSGS`].
pub(crate) const MSGS_PREFIX: &str = "$MQTT.msgs.";
/// The deliver subject prefix of the QoS 1 consumers.
pub(crate) const SUB_PREFIX: &str = "$MQTT.sub.";
/// nats-server 2.15.1's configuration of [`MSGS`].
const MSGS_CONFIG: &str = r#"{"name":"$MQTT_msgs","subjects":["$MQTT.msgs.>"],"retention":"interest","storage":"file","num_replicas":1}"#;

/// The QoS 2 messages received from MQTT clients and not yet released
/// (PUBREL): one per client ID and packet id, the first one kept, as
/// nats-server 2.15.1 keeps them.
pub(crate) const QOS2IN: &str = "$MQTT_qos2in";
/// The subject prefix of [`QOS2IN`] (`<prefix><client id>.<packet id>`).
const QOS2IN_PREFIX: &str = "$MQTT.qos2.in.";
/// nats-server 2.15.1's configuration of [`QOS2IN`].
const QOS2IN_CONFIG: &str = r#"{"name":"$MQTT_qos2in","subjects":["$MQTT.qos2.in.>"],"retention":"limits","discard":"new","max_msgs_per_subject":1,"discard_new_per_subject":true,"storage":"file","num_replicas":1}"#;

/// The stream of PUBRELs owed to clients (QoS 2 deliveries PUBRECed and
/// not yet PUBCOMPed).
pub(crate) const OUT: &str = "$MQTT_out";
/// The subject prefix of a session's PUBRELs in [`OUT`] (`<prefix><client
/// hash>`).
const PUBREL_PREFIX: &str = "$MQTT.out.pubrel.";
/// The deliver subject prefix of a session's PUBREL consumer.
const PUBREL_DELIVER_PREFIX: &str = "$MQTT.deliver.pubrel.";
/// The durable name prefix of a session's PUBREL consumer.
pub(crate) const PUBREL_DURABLE_PREFIX: &str = "$MQTT_PUBREL_";
/// nats-server 2.15.1's configuration of [`OUT`].
const OUT_CONFIG: &str = r#"{"name":"$MQTT_out","subjects":["$MQTT.out.>"],"retention":"interest","storage":"file","num_replicas":1}"#;
/// The header of a stored PUBREL: its packet id.
const PUBREL_HEADER: &str = "Nmqtt-PubRel";

/// The packet id a stored PUBREL (a delivery of a PUBREL consumer)
/// carries; `None` when absent, garbled or 0.
pub(crate) fn pubrel_id(hdr: &[u8]) -> Option<u16> {
    headers::get(hdr, PUBREL_HEADER)
        .and_then(|v| v.trim().parse::<u16>().ok())
        .filter(|pi| *pi != 0)
}

/// A QoS 2 message received and stored, waiting for its PUBREL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Qos2In {
    /// The NATS subject it goes to.
    pub subject: String,
    /// The MQTT topic it was published with.
    pub topic: String,
    pub retain: bool,
    pub payload: bytes::Bytes,
}

/// A QoS 1 subscription's JetStream side: its durable consumer and the
/// internal subscription that takes the consumer's deliveries into the
/// connection's session (with the bridge's own subscription id).
pub(crate) struct Qos1Sub {
    /// The stream of its consumer ([`MSGS`], or [`OUT`] for a session's
    /// PUBREL consumer).
    stream: &'static str,
    consumer: String,
    sub: Arc<Subscription<Client>>,
    /// Its key in a session record (the `mqtt::session` module doc).
    key: String,
    /// The consumer's configuration, as a session record keeps it.
    config: serde_json::Value,
}

impl Qos1Sub {
    /// Its key in a session record.
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// The consumer's configuration, for a session record.
    pub(crate) fn config(&self) -> &serde_json::Value {
        &self.config
    }
}

/// Why a JetStream step of the MQTT listener failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JsaError {
    /// JetStream refused (stream creation, limits, store): nats-server's
    /// error code and text.
    #[error("JetStream error {err_code}: {description}")]
    Api { err_code: u32, description: String },
    /// The store did not make the change durable.
    #[error("not durable: {0}")]
    NotDurable(String),
}

impl From<ApiError> for JsaError {
    fn from(e: ApiError) -> Self {
        JsaError::Api {
            err_code: e.err_code,
            description: e.description,
        }
    }
}

/// A retained message, as a new subscription receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Retained {
    /// The NATS subject it was published on.
    pub subject: String,
    /// The MQTT topic it was published with.
    pub topic: String,
    /// The QoS it was published with.
    pub qos: u8,
    pub payload: bytes::Bytes,
}

/// The JetStream of one connection's account, with the server's authority.
#[derive(Clone)]
pub(crate) struct Jsa {
    js: Arc<JetStream>,
    account: Arc<Account>,
    /// The QoS 1 consumers' `ack_wait` (nanoseconds) and
    /// `max_ack_pending`, from the `mqtt {}` block.
    ack_wait_nanos: u64,
    max_ack_pending: u16,
}

impl Jsa {
    /// The JetStream of the account named `account`; `None` without one.
    pub(crate) fn of_account(shared: &ServerState, account: &str) -> Option<Jsa> {
        let acc = if account == crate::config::GLOBAL_ACCOUNT {
            Some(Arc::clone(&shared.global))
        } else {
            shared.accounts.get(account)
        };
        let account = acc?;
        let js = account.jetstream.clone()?;
        let (ack_wait, max_ack_pending) = shared.config.mqtt.as_ref().map_or(
            (
                crate::config::MqttConfig::DEFAULT_ACK_WAIT,
                crate::config::MqttConfig::DEFAULT_MAX_ACK_PENDING,
            ),
            |m| (m.ack_wait, m.max_ack_pending),
        );
        Some(Jsa {
            js,
            account,
            ack_wait_nanos: u64::try_from(ack_wait.as_nanos()).unwrap_or(u64::MAX),
            max_ack_pending,
        })
    }

    /// Stores a QoS 1 message an MQTT client published (already routed to
    /// NATS subscribers) for the QoS 1 subscriptions, durably. Nothing is
    /// stored while the account has no `$MQTT_msgs` stream: no QoS 1
    /// subscription was ever made, so no one would read it.
    /// `qos` (1 or 2) is the one it was published with (its `Nmqtt-Pub`).
    pub(crate) fn store_qos1(
        &self,
        subject: &str,
        qos: u8,
        payload: &[u8],
    ) -> Result<(), JsaError> {
        let Some(stream) = self.js.stream(MSGS) else {
            return Ok(());
        };
        let hdr = HeaderBuilder::new().add("Nmqtt-Pub", qos).build();
        stream.store_internal(&format!("{MSGS_PREFIX}{subject}"), &hdr, payload)?;
        stream.wait_durable().map_err(JsaError::NotDurable)
    }

    /// The account's JetStream engine (for the session records).
    pub(super) fn engine(&self) -> &Arc<JetStream> {
        &self.js
    }

    /// Starts the JetStream side of a QoS 1 subscription to the NATS
    /// filter `subject`: a durable consumer of `$MQTT_msgs` named
    /// `<hash>_<id>` (`hash`: the client ID's, as nats-server names them;
    /// deliver new, explicit ack, nats-server's `ack_wait` and
    /// `max_ack_pending`) pushing to a fresh `$MQTT.sub.<id>` subject,
    /// which `client` receives as subscription `sid` whatever its
    /// permissions. `key` names it in a session record.
    pub(crate) fn subscribe_qos1(
        &self,
        client: &Arc<Client>,
        subject: &str,
        sid: u64,
        hash: &str,
        key: &str,
    ) -> Result<Qos1Sub, JsaError> {
        self.ensure_msgs()?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let deliver = format!("{SUB_PREFIX}{id}");
        let sub = self.bind(client, &deliver, sid);
        let consumer = format!("{hash}_{id}");
        let config = serde_json::json!({
            "durable_name": consumer,
            "deliver_policy": "new",
            "ack_policy": "explicit",
            "ack_wait": self.ack_wait_nanos,
            "max_deliver": -1,
            "filter_subject": format!("{MSGS_PREFIX}{subject}"),
            "replay_policy": "instant",
            "max_ack_pending": self.max_ack_pending,
            "deliver_subject": deliver,
        });
        if let Err(e) = crate::jetstream::api::ensure_consumer(
            &self.js,
            MSGS,
            &consumer,
            config.to_string().as_bytes(),
        ) {
            self.account.sublist.remove(&sub);
            return Err(e.into());
        }
        Ok(Qos1Sub {
            stream: MSGS,
            consumer,
            sub,
            key: key.to_owned(),
            config,
        })
    }

    /// The internal subscription on `deliver` that hands a consumer's
    /// deliveries to `client` as subscription `sid`.
    fn bind(&self, client: &Arc<Client>, deliver: &str, sid: u64) -> Arc<Subscription<Client>> {
        let sub = Arc::new(Subscription::new(
            Arc::clone(client),
            deliver,
            None,
            bytes::Bytes::from(sid.to_string()),
        ));
        self.account.sublist.insert(Arc::clone(&sub));
        sub
    }

    /// Subscribes `client` (as `sid`) to `deliver`, makes the durable
    /// `consumer` of `stream` from `config` if the store no longer has it
    /// (the subscription is taken back if that fails), and wakes the
    /// consumer, which waits for a subscriber.
    fn bind_consumer(
        &self,
        client: &Arc<Client>,
        (stream, stream_name): (&Arc<Stream>, &str),
        consumer: &str,
        deliver: &str,
        sid: u64,
        config: &serde_json::Value,
    ) -> Result<Arc<Subscription<Client>>, JsaError> {
        let sub = self.bind(client, deliver, sid);
        if stream.consumer(consumer).is_none()
            && let Err(e) = crate::jetstream::api::ensure_consumer(
                &self.js,
                stream_name,
                consumer,
                config.to_string().as_bytes(),
            )
        {
            self.account.sublist.remove(&sub);
            return Err(e.into());
        }
        self.js.subscribed(deliver);
        Ok(sub)
    }

    /// Binds a resumed session's QoS 1 subscription again to its durable
    /// consumer (`config`, from the session record), which kept its place
    /// in `$MQTT_msgs` while the client was away; a consumer gone from the
    /// store is made again from its configuration.
    pub(crate) fn resume_qos1(
        &self,
        client: &Arc<Client>,
        key: &str,
        config: &serde_json::Value,
        sid: u64,
    ) -> Result<Qos1Sub, JsaError> {
        let field = |name: &str| {
            config
                .get(name)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| JsaError::Api {
                    err_code: 0,
                    description: format!("session record: consumer without {name}"),
                })
        };
        let consumer = field("durable_name")?;
        let deliver = field("deliver_subject")?;
        let stream = self.ensure_msgs()?;
        let sub = self.bind_consumer(client, (&stream, MSGS), &consumer, &deliver, sid, config)?;
        Ok(Qos1Sub {
            stream: MSGS,
            consumer,
            sub,
            key: key.to_owned(),
            config: config.clone(),
        })
    }

    /// Starts (or, with the configuration a session record kept, binds
    /// again) the session's PUBREL consumer on [`OUT`], named and pushing
    /// as nats-server names them after the client ID's `hash`; `client`
    /// receives its deliveries as subscription `sid`. Unacknowledged
    /// PUBRELs (a reconnection, a restart) come again after `ack_wait`.
    pub(crate) fn subscribe_pubrel(
        &self,
        client: &Arc<Client>,
        hash: &str,
        sid: u64,
        stored: Option<&serde_json::Value>,
    ) -> Result<Qos1Sub, JsaError> {
        let stream = crate::jetstream::api::ensure_stream(&self.js, OUT, OUT_CONFIG.as_bytes())?;
        let consumer = format!("{PUBREL_DURABLE_PREFIX}{hash}");
        let deliver = format!("{PUBREL_DELIVER_PREFIX}{hash}");
        let config = match stored {
            Some(c) => c.clone(),
            None => serde_json::json!({
                "durable_name": consumer,
                "deliver_policy": "new",
                "ack_policy": "explicit",
                "ack_wait": self.ack_wait_nanos,
                "max_deliver": -1,
                "filter_subject": format!("{PUBREL_PREFIX}{hash}"),
                "replay_policy": "instant",
                "max_ack_pending": self.max_ack_pending,
                "deliver_subject": deliver,
            }),
        };
        let deliver = config
            .get("deliver_subject")
            .and_then(serde_json::Value::as_str)
            .unwrap_or(&deliver)
            .to_owned();
        let sub = self.bind_consumer(client, (&stream, OUT), &consumer, &deliver, sid, &config)?;
        Ok(Qos1Sub {
            stream: OUT,
            consumer,
            sub,
            key: String::new(),
            config,
        })
    }

    /// Stores the PUBREL owed for packet id `pi` of the session whose
    /// client ID hashes to `hash` (the client PUBRECed a QoS 2 delivery),
    /// durably; its consumer then delivers it to the connection.
    pub(crate) fn store_pubrel(&self, hash: &str, pi: u16) -> Result<(), JsaError> {
        let stream = crate::jetstream::api::ensure_stream(&self.js, OUT, OUT_CONFIG.as_bytes())?;
        let hdr = HeaderBuilder::new().add(PUBREL_HEADER, pi).build();
        stream.store_internal(&format!("{PUBREL_PREFIX}{hash}"), &hdr, b"")?;
        stream.wait_durable().map_err(JsaError::NotDurable)
    }

    /// Ends a QoS 1 subscription: its consumer (and so its interest in
    /// the stored messages) and its internal subscription.
    pub(crate) fn unsubscribe_qos1(&self, q: &Qos1Sub) -> Result<(), JsaError> {
        self.account.sublist.remove(&q.sub);
        crate::jetstream::api::remove_consumer(&self.js, q.stream, &q.consumer)?;
        Ok(())
    }

    /// Unbinds a persistent session's QoS 1 subscription from its
    /// connection: the consumer stays, and stops delivering until the
    /// session is resumed.
    pub(crate) fn detach_qos1(&self, q: &Qos1Sub) {
        self.account.sublist.remove(&q.sub);
    }

    /// Stores a QoS 2 PUBLISH of client `client_id` with packet id `pi`
    /// until its PUBREL, durably (before the PUBREC). A resend of the same
    /// packet id before the PUBREL keeps the first one.
    pub(crate) fn store_qos2_in(
        &self,
        client_id: &str,
        pi: u16,
        m: &Qos2In,
    ) -> Result<(), JsaError> {
        let stream =
            crate::jetstream::api::ensure_stream(&self.js, QOS2IN, QOS2IN_CONFIG.as_bytes())?;
        let key = format!("{QOS2IN_PREFIX}{client_id}.{pi}");
        if stream.last_by_subject(&key)?.is_some() {
            return Ok(());
        }
        let hdr = HeaderBuilder::new()
            .add("Nmqtt-Pub", 2)
            .add("Nmqtt-Subject", &m.subject)
            .add("Nmqtt-RTopic", &m.topic)
            .add("Nmqtt-RFlags", (2 << 1) | u8::from(m.retain))
            .build();
        stream.store_internal(&key, &hdr, &m.payload)?;
        stream.wait_durable().map_err(JsaError::NotDurable)
    }

    /// The QoS 2 message of client `client_id` with packet id `pi` waiting
    /// for its PUBREL, if any.
    pub(crate) fn qos2_in(&self, client_id: &str, pi: u16) -> Result<Option<Qos2In>, JsaError> {
        let Some(stream) = self.js.stream(QOS2IN) else {
            return Ok(None);
        };
        let Some(m) = stream.last_by_subject(&format!("{QOS2IN_PREFIX}{client_id}.{pi}"))? else {
            return Ok(None);
        };
        let (Some(subject), Some(topic)) = (
            headers::get(&m.hdr, "Nmqtt-Subject"),
            headers::get(&m.hdr, "Nmqtt-RTopic"),
        ) else {
            return Ok(None);
        };
        let retain = headers::get(&m.hdr, "Nmqtt-RFlags")
            .and_then(|f| f.trim().parse::<u8>().ok())
            .is_some_and(|f| f & 1 == 1);
        Ok(Some(Qos2In {
            subject: subject.trim().to_owned(),
            topic: topic.to_owned(),
            retain,
            payload: m.data,
        }))
    }

    /// Forgets the QoS 2 message of `client_id` with packet id `pi` (all
    /// of the client's with `None`: a clean session starts without them),
    /// durably.
    pub(crate) fn forget_qos2_in(&self, client_id: &str, pi: Option<u16>) -> Result<(), JsaError> {
        let Some(stream) = self.js.stream(QOS2IN) else {
            return Ok(());
        };
        let filter = match pi {
            Some(pi) => format!("{QOS2IN_PREFIX}{client_id}.{pi}"),
            None => format!("{QOS2IN_PREFIX}{client_id}.*"),
        };
        // Most connections have none: no purge, no fsync.
        if stream.subjects(&filter).is_empty() {
            return Ok(());
        }
        stream.purge(&Purge {
            filter: Some(filter),
            seq: None,
            keep: None,
        })?;
        stream.wait_durable().map_err(JsaError::NotDurable)
    }

    /// Removes the PUBREL consumer of the session whose client ID hashes
    /// to `hash`, if any (and so, by interest retention, its stored
    /// PUBRELs): a clean session starts and ends without them.
    pub(crate) fn remove_pubrel(&self, hash: &str) -> Result<(), JsaError> {
        let Some(stream) = self.js.stream(OUT) else {
            return Ok(());
        };
        let consumer = format!("{PUBREL_DURABLE_PREFIX}{hash}");
        if stream.consumer(&consumer).is_none() {
            return Ok(());
        }
        crate::jetstream::api::remove_consumer(&self.js, OUT, &consumer)?;
        Ok(())
    }

    /// Acknowledges a QoS 1 delivery (the client's PUBACK) through the
    /// consumer's ack subject `reply`.
    pub(crate) fn ack(&self, reply: &str) {
        self.js.on_publish(reply, None, b"", b"+ACK");
    }

    fn ensure_msgs(&self) -> Result<Arc<Stream>, JsaError> {
        Ok(crate::jetstream::api::ensure_stream(
            &self.js,
            MSGS,
            MSGS_CONFIG.as_bytes(),
        )?)
    }

    fn rmsgs(&self) -> Result<Arc<Stream>, JsaError> {
        Ok(crate::jetstream::api::ensure_stream(
            &self.js,
            RMSGS,
            RMSGS_CONFIG.as_bytes(),
        )?)
    }

    /// Stores (or, with an empty payload, removes) the retained message of
    /// `subject`, durably.
    pub(crate) fn store_retained(
        &self,
        subject: &str,
        topic: &str,
        qos: u8,
        payload: &[u8],
    ) -> Result<(), JsaError> {
        let stream = self.rmsgs()?;
        let key = format!("{RMSGS_PREFIX}{subject}");
        if payload.is_empty() {
            stream.purge(&Purge {
                filter: Some(key),
                seq: None,
                keep: None,
            })?;
        } else {
            let hdr = HeaderBuilder::new()
                .add("Nmqtt-RTopic", topic)
                .add("Nmqtt-RFlags", (qos << 1) | 1)
                .build();
            stream.store_internal(&key, &hdr, payload)?;
        }
        stream.wait_durable().map_err(JsaError::NotDurable)
    }

    /// The retained messages a subscription to the NATS filter subjects
    /// `filters` receives (MQTT-4.7.2-1: not `$` topics for a filter that
    /// starts with a wildcard).
    pub(crate) fn retained_matching(&self, filters: &[String]) -> Result<Vec<Retained>, JsaError> {
        let Some(stream) = self.js.stream(RMSGS) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for filter in filters {
            for (key, _) in stream.subjects(&format!("{RMSGS_PREFIX}{filter}")) {
                let Some(subject) = key.strip_prefix(RMSGS_PREFIX) else {
                    continue;
                };
                if topic::wildcard_skips(filter, subject)
                    || out.iter().any(|r: &Retained| r.subject == subject)
                {
                    continue;
                }
                let Some(m) = stream.last_by_subject(&key)? else {
                    continue;
                };
                let topic = headers::get(&m.hdr, "Nmqtt-RTopic")
                    .map_or_else(|| topic::subject_to_topic(subject), str::to_owned);
                let qos = headers::get(&m.hdr, "Nmqtt-RFlags")
                    .and_then(|f| f.trim().parse::<u8>().ok())
                    .map_or(0, |f| (f >> 1) & 3);
                out.push(Retained {
                    subject: subject.to_owned(),
                    topic,
                    qos,
                    payload: m.data,
                });
            }
        }
        Ok(out)
    }
}

/// A [`Jsa`] on a JetStream of its own in `dir`, for unit tests.
#[cfg(test)]
pub(super) fn open_for_tests(dir: &std::path::Path) -> Jsa {
    let js = JetStream::open(crate::config::JetStreamConfig {
        store_dir: dir.to_owned(),
        ..crate::config::JetStreamConfig::default()
    })
    .expect("open");
    let account = Arc::new_cyclic(|me| {
        Account::new(me.clone(), "$G", Some(Arc::clone(&js)), false, false, None)
    });
    Jsa {
        js,
        account,
        ack_wait_nanos: 30_000_000_000,
        max_ack_pending: 1024,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path) -> Jsa {
        open_for_tests(dir)
    }

    #[test]
    fn a_stored_pubrel_names_its_packet_id() {
        let hdr = HeaderBuilder::new().add(PUBREL_HEADER, 513).build();
        assert_eq!(pubrel_id(&hdr), Some(513));
        let zero = HeaderBuilder::new().add(PUBREL_HEADER, 0).build();
        assert_eq!(pubrel_id(&zero), None);
        let other = HeaderBuilder::new().add("Nmqtt-Pub", 2).build();
        assert_eq!(pubrel_id(&other), None);
        let big = HeaderBuilder::new().add(PUBREL_HEADER, 70000).build();
        assert_eq!(pubrel_id(&big), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_qos2_message_is_kept_once_until_forgotten() {
        // The store's flusher runs on the runtime; these calls block.
        tokio::task::spawn_blocking(a_qos2_message_is_kept_once_until_forgotten_body)
            .await
            .expect("no panic");
    }

    fn a_qos2_message_is_kept_once_until_forgotten_body() {
        let dir = tempfile::tempdir().expect("tempdir");
        let jsa = open(dir.path());
        let m = |payload: &'static [u8]| Qos2In {
            subject: "a.b".into(),
            topic: "a/b".into(),
            retain: true,
            payload: bytes::Bytes::from_static(payload),
        };
        assert_eq!(jsa.qos2_in("c", 7).unwrap(), None);
        jsa.store_qos2_in("c", 7, &m(b"first")).unwrap();
        // A resend before the PUBREL keeps the first.
        jsa.store_qos2_in("c", 7, &m(b"resent")).unwrap();
        assert_eq!(jsa.qos2_in("c", 7).unwrap(), Some(m(b"first")));
        assert_eq!(jsa.qos2_in("other", 7).unwrap(), None);
        jsa.forget_qos2_in("c", Some(7)).unwrap();
        assert_eq!(jsa.qos2_in("c", 7).unwrap(), None);
        jsa.store_qos2_in("c", 8, &m(b"x")).unwrap();
        jsa.store_qos2_in("c", 9, &m(b"y")).unwrap();
        jsa.store_qos2_in("d", 8, &m(b"z")).unwrap();
        jsa.forget_qos2_in("c", None).unwrap();
        assert_eq!(jsa.qos2_in("c", 8).unwrap(), None);
        assert_eq!(jsa.qos2_in("c", 9).unwrap(), None);
        assert_eq!(jsa.qos2_in("d", 8).unwrap(), Some(m(b"z")));
    }

    fn topics(found: &[Retained]) -> Vec<(&str, &[u8], u8)> {
        let mut v: Vec<_> = found
            .iter()
            .map(|r| (r.topic.as_str(), &r.payload[..], r.qos))
            .collect();
        v.sort();
        v
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retained_messages_are_one_per_subject_and_an_empty_payload_removes() {
        // The store's flusher runs on the runtime; these calls block.
        tokio::task::spawn_blocking(
            retained_messages_are_one_per_subject_and_an_empty_payload_removes_body,
        )
        .await
        .expect("no panic");
    }

    fn retained_messages_are_one_per_subject_and_an_empty_payload_removes_body() {
        let dir = tempfile::tempdir().expect("tempdir");
        let jsa = open(dir.path());
        // No stream yet: nothing retained, and nothing is created by a lookup.
        assert!(jsa.retained_matching(&["a.>".into()]).unwrap().is_empty());
        assert!(jsa.js.stream(RMSGS).is_none());
        jsa.store_retained("a.b", "a/b", 0, b"one").unwrap();
        jsa.store_retained("a.b", "a/b", 1, b"two").unwrap();
        jsa.store_retained("a", "a", 0, b"parent").unwrap();
        jsa.store_retained("$x.y", "$x/y", 0, b"dollar").unwrap();
        let cfg = jsa.js.stream(RMSGS).unwrap().config();
        assert_eq!(cfg.max_msgs_per_subject, 1);
        assert_eq!(cfg.subjects, vec!["$MQTT.rmsgs.>".to_string()]);
        let found = jsa.retained_matching(&["a.>".into(), "a".into()]).unwrap();
        assert_eq!(
            topics(&found),
            vec![("a", &b"parent"[..], 0), ("a/b", &b"two"[..], 1)]
        );
        // A filter starting with a wildcard skips `$` topics; a literal
        // `$` filter finds them.
        assert_eq!(
            topics(&jsa.retained_matching(&[">".into()]).unwrap()).len(),
            2
        );
        assert_eq!(
            topics(&jsa.retained_matching(&["$x.*".into()]).unwrap()),
            vec![("$x/y", &b"dollar"[..], 0)]
        );
        jsa.store_retained("a.b", "a/b", 0, b"").unwrap();
        assert_eq!(
            topics(&jsa.retained_matching(&["a.>".into(), "a".into()]).unwrap()),
            vec![("a", &b"parent"[..], 0)]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retained_messages_survive_a_reopen_of_the_store() {
        // The store's flusher runs on the runtime; these calls block.
        tokio::task::spawn_blocking(retained_messages_survive_a_reopen_of_the_store_body)
            .await
            .expect("no panic");
    }

    fn retained_messages_survive_a_reopen_of_the_store_body() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let jsa = open(dir.path());
            jsa.store_retained("k.v", "k/v", 1, b"kept").unwrap();
            jsa.js.shutdown();
        }
        let jsa = open(dir.path());
        assert_eq!(
            topics(&jsa.retained_matching(&["k.v".into()]).unwrap()),
            vec![("k/v", &b"kept"[..], 1)]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_existing_stream_of_that_name_is_used_as_it_is() {
        // The store's flusher runs on the runtime; these calls block.
        tokio::task::spawn_blocking(an_existing_stream_of_that_name_is_used_as_it_is_body)
            .await
            .expect("no panic");
    }

    fn an_existing_stream_of_that_name_is_used_as_it_is_body() {
        let dir = tempfile::tempdir().expect("tempdir");
        let jsa = open(dir.path());
        let mine = br#"{"name":"$MQTT_rmsgs","subjects":["$MQTT.rmsgs.>"],"storage":"memory"}"#;
        crate::jetstream::api::ensure_stream(&jsa.js, RMSGS, mine).unwrap();
        jsa.store_retained("t", "t", 0, b"x").unwrap();
        let s = jsa.js.stream(RMSGS).unwrap();
        assert_eq!(
            s.config().storage,
            crate::jetstream::types::StorageType::Memory
        );
        assert_eq!(s.state().msgs, 1);
    }
}
