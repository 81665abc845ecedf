//! One MQTT connection: CONNECT and its checks, then the bridge between
//! the client's MQTT packets and the NATS session that stands for it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::Sessions;
use super::codec::{self, Connect, Packet, Publish};
use super::jsa::Jsa;
use super::server_ops::{self, ServerOp};
use super::session::{self, Record, SessionError};
use super::topic;
use super::transport::MqttStream;
use crate::outbound::Client;
use crate::state::ServerState;

/// CONNACK return codes (MQTT 3.1.1, 3.2.2.3).
const RC_ACCEPTED: u8 = 0;
const RC_BAD_PROTOCOL: u8 = 1;
const RC_IDENTIFIER_REJECTED: u8 = 2;
const RC_SERVER_UNAVAILABLE: u8 = 3;
const RC_NOT_AUTHORIZED: u8 = 5;
/// nats-server's CONNACK code (outside MQTT 3.1.1's) for a QoS 2 will
/// under `reject_qos2_publish`.
const RC_QOS2_WILL_REJECTED: u8 = 0x10;

/// SUBACK's failure code.
const SUBACK_FAILURE: u8 = 0x80;

/// The header nats-server puts on every message an MQTT client publishes
/// (`Nmqtt-Pub` with the QoS), so NATS subscribers of both servers see the
/// same message.
const QOS0_HEADER: &[u8] = b"NATS/1.0\r\nNmqtt-Pub:0\r\n\r\n";
const QOS1_HEADER: &[u8] = b"NATS/1.0\r\nNmqtt-Pub:1\r\n\r\n";
const QOS2_HEADER: &[u8] = b"NATS/1.0\r\nNmqtt-Pub:2\r\n\r\n";

/// The text of the session's answer to a publish the permissions deny.
const PUB_DENIED: &str = "Permissions Violation for Publish to \"";

/// Bytes of the pipe between the bridge and its session.
const PIPE: usize = 64 * 1024;

/// Runs one MQTT connection to its end.
pub(super) async fn serve(
    shared: Arc<ServerState>,
    stream: MqttStream,
    peer: SocketAddr,
    sessions: Arc<Sessions>,
) {
    let debug = shared.config.debug;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut inbuf = BytesMut::with_capacity(4096);
    let max = max_packet(&shared);
    // The first packet must be CONNECT, within the auth timeout (the
    // block's own `authorization { timeout }` when set).
    let auth_timeout = shared
        .config
        .mqtt
        .as_ref()
        .and_then(|m| m.auth_timeout)
        .unwrap_or(shared.config.auth_timeout);
    let first = tokio::time::timeout(auth_timeout, read_packet(&mut rd, &mut inbuf, max)).await;
    let connect = match first {
        Ok(Ok(Some(Packet::Connect(c)))) => c,
        Ok(Ok(Some(_))) => {
            if debug {
                tracing::debug!("{peer} - mqtt: first packet is not CONNECT");
            }
            return;
        }
        Ok(Err(e)) => {
            if debug {
                tracing::debug!("{peer} - mqtt: {e}");
            }
            return;
        }
        _ => return,
    };
    let refused = |code: u8, why: &str| {
        tracing::warn!("{peer} - mqtt: CONNECT refused (return code {code}): {why}");
        let mut out = BytesMut::new();
        codec::connack(&mut out, false, code);
        out
    };
    let reject_qos2 = shared
        .config
        .mqtt
        .as_ref()
        .is_some_and(|m| m.reject_qos2_publish);
    let answer = match check_connect(&connect, reject_qos2) {
        Ok(()) => None,
        Err((code, why)) => Some(refused(code, &why)),
    };
    let answer = answer.or_else(|| {
        (shared.client_count() >= shared.config.max_connections)
            .then(|| refused(RC_SERVER_UNAVAILABLE, "maximum connections exceeded"))
    });
    if let Some(out) = answer {
        let _ = wr.write_all(&out).await;
        let _ = wr.shutdown().await;
        return;
    }
    let will = match &connect.will {
        Some(w) => match topic::topic_to_subject(&w.topic) {
            Ok(subject) if crate::subject::valid_literal(&subject) => Some(WillMsg {
                subject,
                topic: w.topic.clone(),
                qos: w.qos,
                retain: w.retain,
                payload: w.message.clone(),
            }),
            _ => {
                tracing::warn!("{peer} - mqtt: invalid will topic {:?}", w.topic);
                return;
            }
        },
        None => None,
    };
    let client_id = if connect.client_id.is_empty() {
        uuid::Uuid::new_v4().simple().to_string()
    } else {
        connect.client_id.clone()
    };

    // The NATS client that stands for this connection.
    let id = shared.next_client.fetch_add(1, Ordering::Relaxed);
    shared
        .stats
        .total_connections
        .fetch_add(1, Ordering::Relaxed);
    let client = Arc::new(Client::new(id, shared.config.max_pending, peer));
    shared.add_client(Arc::clone(&client));
    let nats_client = Arc::clone(&client);
    let nonce = shared
        .config
        .auth
        .as_ref()
        .is_some_and(crate::config::Auth::needs_nonce)
        .then(crate::auth::new_nonce);
    let info = shared.info_with_nonce(id, peer, nonce.as_deref());
    let (ours, theirs) = tokio::io::duplex(PIPE);
    let (session_rd, session_wr) = tokio::io::split(theirs);
    let session = tokio::spawn(crate::session::run_via(
        crate::session::Listener::Mqtt,
        Arc::clone(&shared),
        client,
        session_rd,
        session_wr,
        nonce,
        Some(info),
    ));
    let (nats_rd, nats_wr) = tokio::io::split(ours);
    let hash = session::client_hash(&client_id);
    let keep_alive = (connect.keep_alive > 0)
        .then(|| Duration::from_secs(u64::from(connect.keep_alive) * 3 / 2));
    let mut bridge = Bridge {
        shared: Arc::clone(&shared),
        peer,
        client_id,
        hash,
        clean: connect.clean_session,
        registered: false,
        session_lock: None,
        conn: id,
        sessions,
        kick: Arc::new(Notify::new()),
        rd,
        wr,
        inbuf,
        out: BytesMut::new(),
        nats_rd,
        nats_wr,
        nats_in: BytesMut::with_capacity(8192),
        nats_out: Vec::new(),
        max,
        keep_alive,
        will,
        client: nats_client,
        jsa: None,
        jobs: VecDeque::new(),
        filters: HashMap::new(),
        sids: HashMap::new(),
        inflight: HashMap::new(),
        inflight_seq: HashMap::new(),
        pending_pubrel: HashMap::new(),
        pubrel: None,
        next_packet_id: 0,
        next_sid: 1,
        barriers: VecDeque::from([Barrier::Connect]),
        connected: false,
    };
    bridge.nats_out.extend_from_slice(&nats_connect(&connect));
    bridge.nats_out.extend_from_slice(b"PING\r\n");
    let end = bridge.run().await;
    bridge.finish(end).await;
    // The session ends once its input is closed (or at shutdown).
    let _ = tokio::time::timeout(Duration::from_secs(5), session).await;
}

/// The CONNECT checks nats-server makes before authentication, and the
/// features this server refuses, as a return code and the reason logged
/// (`reject_qos2`: the block's `reject_qos2_publish`).
fn check_connect(c: &Connect, reject_qos2: bool) -> Result<(), (u8, String)> {
    if c.level != 4 {
        return Err((
            RC_BAD_PROTOCOL,
            format!("unacceptable protocol version of {}", c.level),
        ));
    }
    if c.client_id.is_empty() && !c.clean_session {
        return Err((
            RC_IDENTIFIER_REJECTED,
            "empty client ID requires the clean session flag".into(),
        ));
    }
    if c.client_id
        .contains(|ch: char| ch.is_whitespace() || matches!(ch, '.' | '*' | '>'))
    {
        return Err((
            RC_IDENTIFIER_REJECTED,
            format!("invalid character in client ID {:?}", c.client_id),
        ));
    }
    if let Some(w) = &c.will {
        if w.topic.is_empty() {
            return Err((RC_SERVER_UNAVAILABLE, "empty will topic".into()));
        }
        if reject_qos2 && w.qos == 2 {
            return Err((
                RC_QOS2_WILL_REJECTED,
                "QoS 2 wills are rejected (reject_qos2_publish)".into(),
            ));
        }
    }
    if c.username.as_deref() == Some("") {
        return Err((4, "empty user name".into()));
    }
    Ok(())
}

/// The NATS CONNECT for an MQTT CONNECT: the credentials (the password
/// also as a token and as a user JWT, as nats-server takes it: in operator
/// mode an MQTT client logs in with a bearer user JWT as its password, the
/// user name being anything but empty), headers on, no verbose.
fn nats_connect(c: &Connect) -> Vec<u8> {
    let mut o = serde_json::json!({
        "verbose": false,
        "pedantic": false,
        "headers": true,
        "protocol": 1,
        "lang": "mqtt",
        "version": "3.1.1",
        "name": c.client_id,
    });
    if let Some(user) = &c.username {
        o["user"] = serde_json::Value::String(user.clone());
    }
    if let Some(pass) = &c.password {
        let pass = String::from_utf8_lossy(pass).into_owned();
        o["pass"] = serde_json::Value::String(pass.clone());
        o["auth_token"] = serde_json::Value::String(pass.clone());
        o["jwt"] = serde_json::Value::String(pass);
    }
    let mut line = b"CONNECT ".to_vec();
    line.extend_from_slice(o.to_string().as_bytes());
    line.extend_from_slice(b"\r\n");
    line
}

/// The key of a QoS 1 filter's consumer in a session record, as
/// nats-server keys it: the filter's subject (`i` 0), `<parent> fwc` for
/// the parent level a `#` filter also takes (`i` 1).
fn qos1_key(subject: &str, i: usize) -> String {
    if i == 0 {
        subject.to_owned()
    } else {
        format!("{subject} fwc")
    }
}

/// A JetStream ack subject's consumer part and stream sequence
/// (`$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>...`): the same
/// message redelivered has the same key.
fn ack_key(reply: &str) -> Option<(String, u64)> {
    let mut t = reply.split('.');
    let (Some("$JS"), Some("ACK"), Some(stream), Some(consumer), Some(_dc), Some(sseq)) =
        (t.next(), t.next(), t.next(), t.next(), t.next(), t.next())
    else {
        return None;
    };
    Some((format!("{stream}.{consumer}"), sseq.parse().ok()?))
}

/// Whether a JetStream ack subject says the message was delivered before
/// (its delivery count above 1): nats-server sets DUP then, so a resumed
/// session's first redelivery of a message sent before the reconnection
/// carries it.
fn redelivered(reply: &str) -> bool {
    reply
        .split('.')
        .nth(4)
        .and_then(|dc| dc.parse::<u64>().ok())
        .is_some_and(|dc| dc > 1)
}

/// The largest MQTT packet taken: the payload limit plus room for the
/// topic and the header nats-server adds.
fn max_packet(shared: &ServerState) -> usize {
    shared.config.max_payload.saturating_add(64 * 1024)
}

async fn read_packet(
    rd: &mut ReadHalf<MqttStream>,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<Packet>, codec::CodecError> {
    loop {
        if let Some(p) = codec::decode(buf, max)? {
            return Ok(Some(p));
        }
        match rd.read_buf(buf).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
    }
}

/// What a PING sent to the session waits for: its PONG says every line
/// before it was processed, with any `-ERR` for them already read.
enum Barrier {
    /// CONNECT: a PONG means authenticated.
    Connect,
    /// A PUBLISH that needs more once routed: its PUBACK (QoS 1), its
    /// retained copy stored (unless the permissions denied it).
    Published {
        subject: String,
        puback: Option<u16>,
        retained: Option<Retain>,
        /// QoS 1 or 2: its QoS and payload, for the QoS 1 subscriptions'
        /// stream.
        qos1: Option<(u8, bytes::Bytes)>,
        /// A released QoS 2 message: the PUBCOMP to send once it is
        /// stored (and forgotten in `$MQTT_qos2in`).
        pubcomp: Option<u16>,
        denied: bool,
    },
    /// A QoS 2 PUBLISH to store until its PUBREL, then PUBREC.
    Qos2Received(u16, super::jsa::Qos2In),
    /// A PUBREL: the stored QoS 2 message to publish.
    PubRel(u16),
    /// The client's PUBREC for QoS 2 delivery `id` (the message's ack
    /// subject, `None` for a retained copy).
    PubRec(u16, Option<String>),
    /// SUBSCRIBE `id`: per filter, what was asked and its return code.
    SubAck(u16, Vec<SubEntry>),
    /// UNSUBSCRIBE `id`, with the JetStream sides to end.
    UnsubAck(u16, Vec<super::jsa::Qos1Sub>),
}

/// One filter of a SUBSCRIBE on its way to the SUBACK.
struct SubEntry {
    /// The filter, when this SUBSCRIBE made its subscription.
    filter: Option<String>,
    /// Its NATS subjects.
    subjects: Vec<String>,
    /// Granted QoS, or [`SUBACK_FAILURE`].
    code: u8,
}

impl SubEntry {
    fn failed() -> Self {
        SubEntry {
            filter: None,
            subjects: Vec::new(),
            code: SUBACK_FAILURE,
        }
    }
}

/// A retained PUBLISH to store once the session routed it.
struct Retain {
    topic: String,
    qos: u8,
    payload: bytes::Bytes,
}

/// The will a connection leaves.
struct WillMsg {
    subject: String,
    topic: String,
    qos: u8,
    retain: bool,
    payload: bytes::Bytes,
}

/// Work after a barrier that may block (JetStream), done in order so the
/// client sees acknowledgements in the order of its packets (MQTT-4.6.0-2).
enum Job {
    /// Takes the client ID over, finds its stored session (resumed, or
    /// wiped for a clean session), then CONNACK.
    Connect,
    /// Stores the retained message of `subject` (or removes it, for an
    /// empty payload) and the QoS 1 message for the QoS 1 subscriptions,
    /// then PUBACKs `puback`.
    Store {
        subject: String,
        retain: Option<Retain>,
        qos1: Option<(u8, bytes::Bytes)>,
        puback: Option<u16>,
        pubcomp: Option<u16>,
    },
    PubAck(u16),
    /// Stores a QoS 2 message until its PUBREL, then PUBREC.
    Qos2Store(u16, super::jsa::Qos2In),
    /// Publishes the QoS 2 message released by a PUBREL (PUBCOMP once
    /// stored; at once when there is none).
    PubRel(u16),
    /// Stores the PUBREL owed for a PUBRECed QoS 2 delivery, then
    /// acknowledges the delivery (its consumer then sends the PUBREL).
    PubRec(u16, Option<String>),
    /// The JetStream side of the QoS 1 filters, SUBACK, then the retained
    /// messages of the filters granted.
    SubAck(u16, Vec<SubEntry>),
    /// Ends JetStream sides, then UNSUBACK.
    UnsubAck(u16, Vec<super::jsa::Qos1Sub>),
}

/// One MQTT subscription: its NATS subscriptions (the filter's subject,
/// and for `a/#` also `a`).
struct Filter {
    sids: Vec<u64>,
    /// The QoS granted.
    qos: u8,
    /// QoS 1 or 2: the JetStream side of each of its subjects.
    js: Vec<(u64, super::jsa::Qos1Sub)>,
}

/// What a NATS subscription id of the bridge stands for.
struct SidInfo {
    /// The MQTT filter's subject (deliveries are checked against it).
    filter: String,
    /// The filter was granted QoS 1 or 2 (its QoS 1 and 2 messages come
    /// through its consumers).
    qos1: bool,
    /// The QoS the filter was granted.
    qos: u8,
    /// A QoS 1 consumer's deliveries (subjects under `$MQTT.msgs.`).
    js: bool,
}

/// A QoS 1 or 2 PUBLISH sent to the client and not yet acknowledged
/// (PUBACK, or PUBREC for QoS 2).
struct InFlight {
    /// The consumer's ack subject (`None` for a retained copy).
    reply: Option<String>,
}

/// How the bridge ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// DISCONNECT: no will.
    Disconnected,
    /// Anything else (socket closed, keep-alive, bad packet): the will is
    /// published.
    Abnormal,
    /// The server is stopping: the session is closing on its own.
    Shutdown,
    /// A newer connection with the same client ID took over: no will (as
    /// nats-server).
    TakenOver,
    /// Refused at CONNECT by authentication.
    NotAuthorized,
    /// Refused at CONNECT after authentication, with this CONNACK return
    /// code (a retained will or a persistent session without JetStream in
    /// the account, a session record of another client ID, a store error).
    Refused(u8),
}

struct Bridge {
    shared: Arc<ServerState>,
    peer: SocketAddr,
    client_id: String,
    /// nats-server's hash of the client ID (its consumers' name prefix).
    hash: String,
    /// The clean session flag: a persistent session (`false`) keeps its
    /// record in `$MQTT_sess` and its consumers past the connection.
    clean: bool,
    /// Registered in [`Sessions`] under the client ID (released at the end).
    registered: bool,
    /// Held from CONNECT to the end: no other connection of this client
    /// ID uses its session meanwhile.
    session_lock: Option<tokio::sync::OwnedMutexGuard<()>>,
    conn: u64,
    sessions: Arc<Sessions>,
    kick: Arc<Notify>,
    rd: ReadHalf<MqttStream>,
    wr: WriteHalf<MqttStream>,
    inbuf: BytesMut,
    /// MQTT bytes to write to the client.
    out: BytesMut,
    nats_rd: ReadHalf<DuplexStream>,
    nats_wr: WriteHalf<DuplexStream>,
    nats_in: BytesMut,
    /// NATS protocol to write to the session.
    nats_out: Vec<u8>,
    max: usize,
    keep_alive: Option<Duration>,
    will: Option<WillMsg>,
    /// The NATS client that stands for this connection (its account).
    client: Arc<Client>,
    /// JetStream of the account, with the server's authority (retained
    /// messages); `None` when the account has none.
    jsa: Option<Jsa>,
    jobs: VecDeque<Job>,
    filters: HashMap<String, Filter>,
    /// NATS subscription id to its NATS filter subject.
    sids: HashMap<u64, SidInfo>,
    /// QoS 1 deliveries awaiting the client's PUBACK, by packet id.
    inflight: HashMap<u16, InFlight>,
    /// The packet id of a stored message in flight, by (consumer ack
    /// prefix, stream sequence): a redelivery reuses it with DUP set.
    inflight_seq: HashMap<(String, u64), u16>,
    /// QoS 2 deliveries PUBRECed and not yet PUBCOMPed, by packet id: the
    /// ack subject of the stored PUBREL's delivery (`None` until its
    /// consumer delivered it).
    pending_pubrel: HashMap<u16, Option<String>>,
    /// The session's PUBREL consumer (from its first QoS 2 subscription),
    /// with its subscription id.
    pubrel: Option<(u64, super::jsa::Qos1Sub)>,
    next_packet_id: u16,
    next_sid: u64,
    barriers: VecDeque<Barrier>,
    connected: bool,
}

impl Bridge {
    async fn run(&mut self) -> End {
        let mut shutdown = self.shared.shutdown.subscribe();
        let far = Duration::from_secs(86_400 * 365);
        let sleep = tokio::time::sleep(self.keep_alive.unwrap_or(far));
        tokio::pin!(sleep);
        let kick = Arc::clone(&self.kick);
        loop {
            if let Some(end) = self.flush().await {
                return end;
            }
            tokio::select! {
                read = self.rd.read_buf(&mut self.inbuf), if self.connected => {
                    match read {
                        Ok(0) | Err(_) => return End::Abnormal,
                        Ok(_) => {}
                    }
                    if let Some(ka) = self.keep_alive {
                        sleep.as_mut().reset(Instant::now() + ka);
                    }
                    loop {
                        match codec::decode(&mut self.inbuf, self.max) {
                            Ok(Some(p)) => {
                                if let Some(end) = self.packet(p) {
                                    return end;
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                tracing::warn!("{} - mqtt: {e}", self.peer);
                                return End::Abnormal;
                            }
                        }
                    }
                }
                read = self.nats_rd.read_buf(&mut self.nats_in) => {
                    match read {
                        Ok(0) | Err(_) => {
                            return if self.connected { End::Abnormal } else { End::NotAuthorized };
                        }
                        Ok(_) => {}
                    }
                    loop {
                        match server_ops::next(&mut self.nats_in) {
                            Ok(Some(op)) => {
                                if let Some(end) = self.server_op(op) {
                                    return end;
                                }
                            }
                            Ok(None) => break,
                            Err(server_ops::Garbled) => return End::Abnormal,
                        }
                    }
                    if let Some(end) = self.run_jobs().await {
                        return end;
                    }
                }
                () = &mut sleep, if self.connected && self.keep_alive.is_some() => {
                    if self.shared.config.debug {
                        tracing::debug!("{} - mqtt: keep-alive expired", self.peer);
                    }
                    return End::Abnormal;
                }
                () = kick.notified() => {
                    if self.shared.config.debug {
                        tracing::debug!("{} - mqtt: taken over by a new connection with client ID {:?}", self.peer, self.client_id);
                    }
                    return End::TakenOver;
                }
                _ = shutdown.changed() => return End::Shutdown,
            }
        }
    }

    /// Writes what is pending to the session and to the client.
    async fn flush(&mut self) -> Option<End> {
        if !self.nats_out.is_empty() {
            let bytes = std::mem::take(&mut self.nats_out);
            if self.nats_wr.write_all(&bytes).await.is_err() {
                return Some(End::Abnormal);
            }
        }
        if !self.out.is_empty() {
            let bytes = self.out.split();
            if self.wr.write_all(&bytes).await.is_err() {
                return Some(End::Abnormal);
            }
        }
        None
    }

    fn ping_barrier(&mut self, barrier: Barrier) {
        self.nats_out.extend_from_slice(b"PING\r\n");
        self.barriers.push_back(barrier);
    }

    /// One packet from the client; `Some` ends the connection.
    fn packet(&mut self, p: Packet) -> Option<End> {
        match p {
            Packet::Connect(_) => {
                tracing::warn!("{} - mqtt: second CONNECT", self.peer);
                Some(End::Abnormal)
            }
            Packet::Publish(p) => self.publish(p),
            Packet::Subscribe(id, filters) => {
                self.subscribe(id, filters);
                None
            }
            Packet::Unsubscribe(id, filters) => {
                let mut ended = Vec::new();
                for f in filters {
                    let Ok(subject) = topic::filter_to_subject(&f) else {
                        continue;
                    };
                    if let Some(old) = self.filters.remove(&subject) {
                        ended.extend(self.drop_filter(old));
                    }
                }
                self.ping_barrier(Barrier::UnsubAck(id, ended));
                None
            }
            Packet::PingReq => {
                codec::pingresp(&mut self.out);
                None
            }
            Packet::Disconnect => Some(End::Disconnected),
            Packet::PubAck(id) => {
                // An unknown id (acknowledged twice, or after the
                // subscription went) is ignored.
                if let Some(f) = self.inflight.remove(&id)
                    && let Some(reply) = f.reply
                {
                    if let Some((prefix, seq)) = ack_key(&reply) {
                        self.inflight_seq.remove(&(prefix, seq));
                    }
                    if let Some(jsa) = &self.jsa {
                        jsa.ack(&reply);
                    }
                }
                None
            }
            Packet::PubRel(id) => {
                if self.jsa.is_some() {
                    self.ping_barrier(Barrier::PubRel(id));
                } else {
                    // Nothing can have been stored.
                    codec::pubcomp(&mut self.out, id);
                }
                None
            }
            Packet::PubRec(id) => {
                // As nats-server: the PUBREL is owed (stored) even for a
                // packet id not in flight; the delivery is acknowledged.
                let reply = self.inflight.remove(&id).and_then(|f| f.reply);
                if let Some((prefix, seq)) = reply.as_deref().and_then(ack_key) {
                    self.inflight_seq.remove(&(prefix, seq));
                }
                if self.pubrel.is_none() {
                    // No QoS 2 subscription ever: nothing was sent with
                    // QoS 2, so no PUBREL is owed.
                    tracing::warn!(
                        "{} - mqtt: PUBREC for packet id {id} without a QoS 2 subscription",
                        self.peer
                    );
                    if let (Some(reply), Some(jsa)) = (&reply, &self.jsa) {
                        jsa.ack(reply);
                    }
                    return None;
                }
                self.pending_pubrel.entry(id).or_insert(None);
                self.ping_barrier(Barrier::PubRec(id, reply));
                None
            }
            Packet::PubComp(id) => {
                // An unknown id (completed twice) is ignored.
                if let Some(Some(reply)) = self.pending_pubrel.remove(&id)
                    && let Some(jsa) = &self.jsa
                {
                    jsa.ack(&reply);
                }
                None
            }
        }
    }

    fn publish(&mut self, p: Publish) -> Option<End> {
        if p.qos == 2 && self.qos2_rejected() {
            tracing::warn!(
                "{} - mqtt: QoS 2 PUBLISH refused (reject_qos2_publish); closing",
                self.peer
            );
            return Some(End::Abnormal);
        }
        if p.qos > 1 && self.jsa.is_none() {
            tracing::warn!(
                "{} - mqtt: PUBLISH with QoS {} needs JetStream, which the account lacks; closing",
                self.peer,
                p.qos
            );
            return Some(End::Abnormal);
        }
        if p.retain && self.jsa.is_none() {
            tracing::warn!(
                "{} - mqtt: retained PUBLISH needs JetStream, which the account lacks; closing",
                self.peer
            );
            return Some(End::Abnormal);
        }
        let subject = match topic::topic_to_subject(&p.topic) {
            Ok(s) if crate::subject::valid_literal(&s) => s,
            _ => {
                tracing::warn!("{} - mqtt: invalid topic name {:?}", self.peer, p.topic);
                return Some(End::Abnormal);
            }
        };
        if QOS0_HEADER.len() + p.payload.len() > self.shared.config.max_payload {
            tracing::warn!("{} - mqtt: maximum payload exceeded", self.peer);
            return Some(End::Abnormal);
        }
        if p.qos == 2 {
            // Stored until its PUBREL, which publishes it (once).
            let Some(id) = p.packet_id else {
                return Some(End::Abnormal);
            };
            self.ping_barrier(Barrier::Qos2Received(
                id,
                super::jsa::Qos2In {
                    subject,
                    topic: p.topic,
                    retain: p.retain,
                    payload: p.payload,
                },
            ));
            return None;
        }
        self.hpub(&subject, p.qos, &p.payload);
        let puback = if p.qos == 1 { p.packet_id } else { None };
        if puback.is_some() || p.retain {
            let retained = p.retain.then(|| Retain {
                topic: p.topic.clone(),
                qos: p.qos,
                payload: p.payload.clone(),
            });
            self.ping_barrier(Barrier::Published {
                subject,
                puback,
                retained,
                qos1: (p.qos == 1 && self.jsa.is_some()).then(|| (1, p.payload.clone())),
                pubcomp: None,
                denied: false,
            });
        }
        None
    }

    /// The block's `reject_qos2_publish`.
    fn qos2_rejected(&self) -> bool {
        self.shared
            .config
            .mqtt
            .as_ref()
            .is_some_and(|m| m.reject_qos2_publish)
    }

    /// A publish to the session, with the header that tells its QoS.
    fn hpub(&mut self, subject: &str, qos: u8, payload: &[u8]) {
        let hdr = match qos {
            0 => QOS0_HEADER,
            1 => QOS1_HEADER,
            _ => QOS2_HEADER,
        };
        let h = hdr.len();
        self.nats_out
            .extend_from_slice(format!("HPUB {subject} {h} {}\r\n", h + payload.len()).as_bytes());
        self.nats_out.extend_from_slice(hdr);
        self.nats_out.extend_from_slice(payload);
        self.nats_out.extend_from_slice(b"\r\n");
    }

    /// Runs the jobs due, in order; `Some` ends the connection.
    async fn run_jobs(&mut self) -> Option<End> {
        while let Some(job) = self.jobs.pop_front() {
            match job {
                Job::Connect => {
                    if let Some(end) = self.connect_session().await {
                        return Some(end);
                    }
                }
                Job::PubAck(id) => codec::puback(&mut self.out, id),
                Job::Qos2Store(id, m) => {
                    let jsa = self.jsa.clone()?;
                    let cid = self.client_id.clone();
                    match tokio::task::spawn_blocking(move || jsa.store_qos2_in(&cid, id, &m)).await
                    {
                        Ok(Ok(())) => codec::pubrec(&mut self.out, id),
                        Ok(Err(e)) => {
                            tracing::warn!(
                                "{} - mqtt: QoS 2 message not stored: {e}; closing",
                                self.peer
                            );
                            return Some(End::Abnormal);
                        }
                        Err(_) => return Some(End::Abnormal),
                    }
                }
                Job::PubRel(id) => {
                    let jsa = self.jsa.clone()?;
                    let cid = self.client_id.clone();
                    match tokio::task::spawn_blocking(move || jsa.qos2_in(&cid, id)).await {
                        Ok(Ok(Some(m))) => {
                            self.hpub(&m.subject, 2, &m.payload);
                            self.ping_barrier(Barrier::Published {
                                subject: m.subject,
                                puback: None,
                                retained: m.retain.then(|| Retain {
                                    topic: m.topic,
                                    qos: 2,
                                    payload: m.payload.clone(),
                                }),
                                qos1: Some((2, m.payload)),
                                pubcomp: Some(id),
                                denied: false,
                            });
                        }
                        // Released already (a PUBREL sent again) or never
                        // received: the exchange is over all the same.
                        Ok(Ok(None)) => codec::pubcomp(&mut self.out, id),
                        Ok(Err(e)) => {
                            tracing::warn!(
                                "{} - mqtt: QoS 2 message not read: {e}; closing",
                                self.peer
                            );
                            return Some(End::Abnormal);
                        }
                        Err(_) => return Some(End::Abnormal),
                    }
                }
                Job::PubRec(id, reply) => {
                    let jsa = self.jsa.clone()?;
                    let hash = self.hash.clone();
                    let stored = tokio::task::spawn_blocking(move || {
                        jsa.store_pubrel(&hash, id)?;
                        if let Some(reply) = &reply {
                            jsa.ack(reply);
                        }
                        Ok::<_, super::jsa::JsaError>(())
                    })
                    .await;
                    match stored {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(
                                "{} - mqtt: PUBREL for packet id {id} not stored: {e}; closing",
                                self.peer
                            );
                            return Some(End::Abnormal);
                        }
                        Err(_) => return Some(End::Abnormal),
                    }
                }
                Job::Store {
                    subject,
                    retain,
                    qos1,
                    puback,
                    pubcomp,
                } => {
                    let jsa = self.jsa.clone()?;
                    let cid = self.client_id.clone();
                    let stored = tokio::task::spawn_blocking(move || {
                        if let Some(r) = &retain {
                            jsa.store_retained(&subject, &r.topic, r.qos, &r.payload)?;
                        }
                        if let Some((qos, payload)) = &qos1 {
                            jsa.store_qos1(&subject, *qos, payload)?;
                        }
                        if let Some(id) = pubcomp {
                            jsa.forget_qos2_in(&cid, Some(id))?;
                        }
                        Ok::<_, super::jsa::JsaError>(())
                    })
                    .await;
                    match stored {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(
                                "{} - mqtt: message not stored: {e}; closing",
                                self.peer
                            );
                            return Some(End::Abnormal);
                        }
                        Err(_) => return Some(End::Abnormal),
                    }
                    if let Some(id) = puback {
                        codec::puback(&mut self.out, id);
                    }
                    if let Some(id) = pubcomp {
                        codec::pubcomp(&mut self.out, id);
                    }
                }
                Job::UnsubAck(id, ended) => {
                    self.end_qos1(ended).await;
                    // Stored before the UNSUBACK that says it is gone.
                    if let Some(end) = self.save_session().await {
                        return Some(end);
                    }
                    codec::unsuback(&mut self.out, id);
                }
                Job::SubAck(id, mut entries) => {
                    if let Some(end) = self.start_qos1(&mut entries, &BTreeMap::new(), None).await {
                        return Some(end);
                    }
                    // Stored before the SUBACK that promises it.
                    if let Some(end) = self.save_session().await {
                        return Some(end);
                    }
                    let codes: Vec<u8> = entries.iter().map(|e| e.code).collect();
                    codec::suback(&mut self.out, id, &codes);
                    let Some(jsa) = self.jsa.clone() else {
                        continue;
                    };
                    let granted: Vec<(Vec<String>, u8)> = entries
                        .into_iter()
                        .filter(|e| e.code != SUBACK_FAILURE && !e.subjects.is_empty())
                        .map(|e| (e.subjects, e.code))
                        .collect();
                    let found = tokio::task::spawn_blocking(move || {
                        let mut all = Vec::new();
                        for (subjects, qos) in &granted {
                            for r in jsa.retained_matching(subjects)? {
                                all.push((r, *qos));
                            }
                        }
                        Ok::<_, super::jsa::JsaError>(all)
                    })
                    .await;
                    let retained = match found {
                        Ok(Ok(r)) => r,
                        Ok(Err(e)) => {
                            tracing::warn!("{} - mqtt: retained messages not read: {e}", self.peer);
                            continue;
                        }
                        Err(_) => return Some(End::Abnormal),
                    };
                    for (r, granted) in retained {
                        let qos = granted.min(r.qos);
                        if qos == 2 && self.qos2_rejected() {
                            // As nats-server under reject_qos2_publish.
                            tracing::warn!(
                                "{} - mqtt: retained QoS 2 message on {:?} not sent \
                                 (reject_qos2_publish)",
                                self.peer,
                                r.topic
                            );
                            continue;
                        }
                        let id = if qos >= 1 {
                            let Some(id) = self.packet_id() else {
                                tracing::warn!(
                                    "{} - mqtt: no packet id free; retained message on {:?} not sent",
                                    self.peer,
                                    r.topic
                                );
                                continue;
                            };
                            self.inflight.insert(id, InFlight { reply: None });
                            Some(id)
                        } else {
                            None
                        };
                        if codec::publish(&mut self.out, &r.topic, qos, true, false, id, &r.payload)
                            .is_none()
                        {
                            tracing::warn!(
                                "{} - mqtt: retained message on {:?} cannot be sent as MQTT",
                                self.peer,
                                r.topic
                            );
                        }
                    }
                }
            }
        }
        None
    }

    /// Removes a filter's NATS subscriptions; returns its JetStream sides
    /// for the caller to end (they block).
    fn drop_filter(&mut self, f: Filter) -> Vec<super::jsa::Qos1Sub> {
        for sid in f.sids {
            self.sids.remove(&sid);
            self.nats_out
                .extend_from_slice(format!("UNSUB {sid}\r\n").as_bytes());
        }
        f.js.into_iter()
            .map(|(sid, q)| {
                self.sids.remove(&sid);
                q
            })
            .collect()
    }

    fn subscribe(&mut self, id: u16, filters: Vec<(String, u8)>) {
        let mut entries = Vec::with_capacity(filters.len());
        let downgrade = self
            .shared
            .config
            .mqtt
            .as_ref()
            .is_some_and(|m| m.downgrade_qos2_subscribe);
        for (filter, qos) in filters {
            let qos = if qos == 2 && downgrade {
                tracing::warn!(
                    "{} - mqtt: QoS 2 SUBSCRIBE to {filter:?} granted QoS 1 \
                     (downgrade_qos2_subscribe)",
                    self.peer
                );
                1
            } else {
                qos
            };
            if qos >= 1 && self.jsa.is_none() {
                tracing::warn!(
                    "{} - mqtt: SUBSCRIBE to {filter:?} with QoS {qos} refused: QoS {qos} \
                     needs JetStream, which the account lacks",
                    self.peer,
                );
                entries.push(SubEntry::failed());
                continue;
            }
            let subject = match topic::filter_to_subject(&filter) {
                Ok(s) if crate::subject::valid_filter(&s) => s,
                _ => {
                    tracing::warn!("{} - mqtt: invalid topic filter {filter:?}", self.peer);
                    entries.push(SubEntry::failed());
                    continue;
                }
            };
            if let Some(f) = self.filters.get(&subject) {
                // The same filter again keeps the subscription (and the
                // QoS it was granted).
                entries.push(SubEntry {
                    filter: None,
                    subjects: Vec::new(),
                    code: f.qos,
                });
                continue;
            }
            let subjects = self.add_filter(&subject, qos);
            entries.push(SubEntry {
                filter: Some(subject),
                subjects,
                code: qos,
            });
        }
        self.ping_barrier(Barrier::SubAck(id, entries));
    }

    /// The NATS subscriptions of the filter with NATS subject `subject`
    /// (its subject, and for `a/#` also `a`), registered as a filter
    /// granted `qos`; returns the subjects.
    fn add_filter(&mut self, subject: &str, qos: u8) -> Vec<String> {
        let mut subjects = vec![subject.to_owned()];
        if let Some(parent) = topic::level_up_subject(subject) {
            subjects.push(parent.to_owned());
        }
        let mut sids = Vec::new();
        for s in &subjects {
            let sid = self.next_sid;
            self.next_sid += 1;
            self.nats_out
                .extend_from_slice(format!("SUB {s} {sid}\r\n").as_bytes());
            // Deliveries are filtered by the MQTT filter's subject.
            self.sids.insert(
                sid,
                SidInfo {
                    filter: subject.to_owned(),
                    qos1: qos >= 1,
                    qos,
                    js: false,
                },
            );
            sids.push(sid);
        }
        self.filters.insert(
            subject.to_owned(),
            Filter {
                sids,
                qos,
                js: Vec::new(),
            },
        );
        subjects
    }

    /// CONNECT's session step, once authenticated: takes the client ID
    /// over (and waits until the connection it took it from has ended),
    /// sweeps the account's leftovers of a previous run (once), then finds
    /// the stored session. A clean session wipes it; a persistent one
    /// resumes it (session present) or stores a new, empty one, before
    /// the CONNACK.
    async fn connect_session(&mut self) -> Option<End> {
        self.sessions
            .take_over(&self.client_id, self.conn, Arc::clone(&self.kick));
        self.registered = true;
        let lock = self.sessions.registry.lock(&self.client_id);
        match tokio::time::timeout(Duration::from_secs(10), lock).await {
            Ok(g) => self.session_lock = Some(g),
            Err(_) => {
                tracing::warn!(
                    "{} - mqtt: CONNECT refused: the previous connection of client ID {:?} \
                     did not end in time",
                    self.peer,
                    self.client_id
                );
                return Some(End::Refused(RC_SERVER_UNAVAILABLE));
            }
        }
        let mut present = false;
        let mut resumed = None;
        if let Some(jsa) = self.jsa.clone() {
            let account = self.client.account_name().to_owned();
            if let Err(e) = self.sessions.registry.swept(&account, &jsa).await {
                tracing::warn!("{} - mqtt: leftover sessions not swept: {e}", self.peer);
            }
            let (cid, clean, hash) = (self.client_id.clone(), self.clean, self.hash.clone());
            let found = tokio::task::spawn_blocking(move || {
                if clean {
                    // A clean session starts without QoS 2 messages left
                    // unreleased by an earlier connection, nor PUBRELs owed.
                    jsa.forget_qos2_in(&cid, None)?;
                    jsa.remove_pubrel(&hash)?;
                }
                match session::load(&jsa, &cid)? {
                    // MQTT-3.1.2-6: a clean session discards the old one.
                    Some(rec) if clean || rec.clean => session::wipe(&jsa, &rec)?,
                    Some(rec) => return Ok(Some(rec)),
                    None => {}
                }
                // A clean session has its record too while it is
                // connected (`"clean": true`), as nats-server writes it.
                session::save(
                    &jsa,
                    &Record {
                        id: cid,
                        clean,
                        ..Record::default()
                    },
                )?;
                Ok::<_, SessionError>(None)
            })
            .await;
            match found {
                Ok(Ok(rec)) => {
                    present = rec.is_some();
                    resumed = rec;
                }
                Ok(Err(e)) => {
                    tracing::warn!("{} - mqtt: CONNECT refused: {e}", self.peer);
                    let code = if matches!(e, SessionError::Collision { .. }) {
                        RC_IDENTIFIER_REJECTED
                    } else {
                        RC_SERVER_UNAVAILABLE
                    };
                    return Some(End::Refused(code));
                }
                Err(_) => return Some(End::Abnormal),
            }
        }
        self.connected = true;
        codec::connack(&mut self.out, present, RC_ACCEPTED);
        match resumed {
            Some(rec) => self.resume(rec).await,
            None => None,
        }
    }

    /// Subscribes again to what a resumed session's record holds, without
    /// retained messages (as nats-server), binding QoS 1 subscriptions to
    /// their consumers; the record is rewritten if that changed anything
    /// (a consumer made again).
    async fn resume(&mut self, rec: Record) -> Option<End> {
        let mut entries = Vec::new();
        for (subject, qos) in &rec.subs {
            if !crate::subject::valid_filter(subject) {
                tracing::warn!(
                    "{} - mqtt: stored subscription {subject:?} is not a filter; dropped",
                    self.peer
                );
                continue;
            }
            let qos = (*qos).min(2);
            let subjects = self.add_filter(subject, qos);
            entries.push(SubEntry {
                filter: Some(subject.clone()),
                subjects,
                code: qos,
            });
        }
        if let Some(end) = self
            .start_qos1(&mut entries, &rec.cons, rec.pubrel.as_ref())
            .await
        {
            return Some(end);
        }
        if self.record() != rec {
            return self.save_session().await;
        }
        None
    }

    /// The session as its record stores it.
    fn record(&self) -> Record {
        Record {
            id: self.client_id.clone(),
            clean: self.clean,
            subs: self
                .filters
                .iter()
                .map(|(subject, f)| (subject.clone(), f.qos))
                .collect(),
            cons: self
                .filters
                .values()
                .flat_map(|f| f.js.iter())
                .map(|(_, q)| (q.key().to_owned(), q.config().clone()))
                .collect(),
            pubrel: self.pubrel.as_ref().map(|(_, q)| q.config().clone()),
        }
    }

    /// Stores the session's record as it is now (a clean session's too,
    /// marked clean, as nats-server keeps it while connected); a record
    /// that cannot be stored ends the connection before the
    /// acknowledgement that would promise it.
    async fn save_session(&mut self) -> Option<End> {
        let jsa = self.jsa.clone()?;
        let rec = self.record();
        match tokio::task::spawn_blocking(move || session::save(&jsa, &rec)).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => {
                tracing::warn!("{} - mqtt: session not stored: {e}; closing", self.peer);
                Some(End::Abnormal)
            }
            Err(_) => Some(End::Abnormal),
        }
    }

    /// A packet id not in flight (1..=65535).
    fn packet_id(&mut self) -> Option<u16> {
        for _ in 0..u16::MAX {
            self.next_packet_id = self.next_packet_id.wrapping_add(1).max(1);
            if !self.inflight.contains_key(&self.next_packet_id)
                && !self.pending_pubrel.contains_key(&self.next_packet_id)
            {
                return Some(self.next_packet_id);
            }
        }
        None
    }

    /// Starts the JetStream side of the QoS 1 filters just granted (bound
    /// to the consumer `known` holds under its key, for a resumed session;
    /// else a new one); a filter whose consumer cannot be made fails
    /// (0x80) and loses its NATS subscriptions.
    async fn start_qos1(
        &mut self,
        entries: &mut [SubEntry],
        known: &BTreeMap<String, serde_json::Value>,
        pubrel: Option<&serde_json::Value>,
    ) -> Option<End> {
        let jsa = self.jsa.clone()?;
        if self.pubrel.is_none() && (pubrel.is_some() || entries.iter().any(|e| e.code == 2)) {
            // The session's PUBREL consumer, before its first QoS 2
            // delivery (a resumed session's, to send the PUBRELs it owes).
            let sid = self.next_sid;
            self.next_sid += 1;
            let (jsa2, client, hash, stored) = (
                jsa.clone(),
                Arc::clone(&self.client),
                self.hash.clone(),
                pubrel.cloned(),
            );
            let r = tokio::task::spawn_blocking(move || {
                jsa2.subscribe_pubrel(&client, &hash, sid, stored.as_ref())
            })
            .await;
            match r {
                Ok(Ok(q)) => self.pubrel = Some((sid, q)),
                Ok(Err(e)) => {
                    tracing::warn!(
                        "{} - mqtt: QoS 2 subscriptions failed: PUBREL consumer not made: {e}",
                        self.peer
                    );
                    let mut ended = Vec::new();
                    for e in entries.iter_mut().filter(|e| e.code == 2) {
                        e.code = SUBACK_FAILURE;
                        if let Some(f) = e.filter.as_ref().and_then(|f| self.filters.remove(f)) {
                            ended.extend(self.drop_filter(f));
                        }
                    }
                    self.end_qos1(ended).await;
                }
                Err(_) => return Some(End::Abnormal),
            }
        }
        for e in entries.iter_mut() {
            if !(1..=2).contains(&e.code) {
                continue;
            }
            let Some(filter) = e.filter.clone() else {
                continue;
            };
            let mut made = Vec::new();
            let mut failed = None;
            for (i, subject) in e.subjects.iter().enumerate() {
                let sid = self.next_sid;
                self.next_sid += 1;
                let key = qos1_key(subject, i);
                let stored = known.get(&key).cloned();
                let (jsa, client, subject2, hash) = (
                    jsa.clone(),
                    Arc::clone(&self.client),
                    subject.clone(),
                    self.hash.clone(),
                );
                let r = tokio::task::spawn_blocking(move || match stored {
                    Some(config) => jsa.resume_qos1(&client, &key, &config, sid),
                    None => jsa.subscribe_qos1(&client, &subject2, sid, &hash, &key),
                })
                .await;
                match r {
                    Ok(Ok(q)) => made.push((sid, q)),
                    Ok(Err(err)) => {
                        failed = Some(err.to_string());
                        break;
                    }
                    Err(_) => return Some(End::Abnormal),
                }
                let filter_subject = e.subjects.first().cloned().unwrap_or_default();
                self.sids.insert(
                    sid,
                    SidInfo {
                        filter: filter_subject,
                        qos1: true,
                        qos: e.code,
                        js: true,
                    },
                );
            }
            if let Some(why) = failed {
                tracing::warn!(
                    "{} - mqtt: QoS 1 subscription to {filter:?} failed: {why}",
                    self.peer
                );
                e.code = SUBACK_FAILURE;
                if let Some(mut f) = self.filters.remove(&filter) {
                    f.js.extend(made);
                    let ended = self.drop_filter(f);
                    self.end_qos1(ended).await;
                }
                continue;
            }
            if let Some(f) = self.filters.get_mut(&filter) {
                f.js.extend(made);
            }
        }
        None
    }

    /// Ends the JetStream sides of subscriptions (their consumers).
    async fn end_qos1(&mut self, ended: Vec<super::jsa::Qos1Sub>) {
        if ended.is_empty() {
            return;
        }
        let Some(jsa) = self.jsa.clone() else {
            return;
        };
        let peer = self.peer;
        let _ = tokio::task::spawn_blocking(move || {
            for q in &ended {
                if let Err(e) = jsa.unsubscribe_qos1(q) {
                    tracing::warn!("{peer} - mqtt: QoS 1 consumer not removed: {e}");
                }
            }
        })
        .await;
    }

    /// One operation from the session; `Some` ends the connection.
    fn server_op(&mut self, op: ServerOp) -> Option<End> {
        match op {
            ServerOp::Info | ServerOp::Ok => None,
            ServerOp::Ping => {
                self.nats_out.extend_from_slice(b"PONG\r\n");
                None
            }
            ServerOp::Pong => match self.barriers.pop_front() {
                Some(Barrier::Connect) => {
                    self.jsa = Jsa::of_account(&self.shared, self.client.account_name());
                    if self.jsa.is_none() && self.will.as_ref().is_some_and(|w| w.retain) {
                        tracing::warn!(
                            "{} - mqtt: CONNECT refused: a retained will needs JetStream, \
                             which the account lacks",
                            self.peer
                        );
                        return Some(End::Refused(RC_SERVER_UNAVAILABLE));
                    }
                    if self.jsa.is_none() && !self.clean {
                        tracing::warn!(
                            "{} - mqtt: CONNECT refused: a persistent session needs JetStream, \
                             which the account lacks",
                            self.peer
                        );
                        return Some(End::Refused(RC_SERVER_UNAVAILABLE));
                    }
                    self.jobs.push_back(Job::Connect);
                    None
                }
                Some(Barrier::Published {
                    subject,
                    puback,
                    retained,
                    qos1,
                    pubcomp,
                    denied,
                }) => {
                    // nats-server acknowledges a denied QoS 1 publish too,
                    // and stores nothing of it (a denied QoS 2 one is
                    // forgotten and completed).
                    if denied && pubcomp.is_some() {
                        self.jobs.push_back(Job::Store {
                            subject,
                            retain: None,
                            qos1: None,
                            puback,
                            pubcomp,
                        });
                    } else if !denied && (retained.is_some() || qos1.is_some()) {
                        self.jobs.push_back(Job::Store {
                            subject,
                            retain: retained,
                            qos1,
                            puback,
                            pubcomp,
                        });
                    } else if let Some(id) = puback {
                        self.jobs.push_back(Job::PubAck(id));
                    }
                    None
                }
                Some(Barrier::Qos2Received(id, m)) => {
                    self.jobs.push_back(Job::Qos2Store(id, m));
                    None
                }
                Some(Barrier::PubRel(id)) => {
                    self.jobs.push_back(Job::PubRel(id));
                    None
                }
                Some(Barrier::PubRec(id, reply)) => {
                    self.jobs.push_back(Job::PubRec(id, reply));
                    None
                }
                Some(Barrier::SubAck(id, entries)) => {
                    self.jobs.push_back(Job::SubAck(id, entries));
                    None
                }
                Some(Barrier::UnsubAck(id, ended)) => {
                    self.jobs.push_back(Job::UnsubAck(id, ended));
                    None
                }
                None => None,
            },
            ServerOp::Err(text) => self.server_error(&text),
            ServerOp::Msg {
                subject,
                sid,
                reply,
                headers,
                payload,
            } => {
                self.deliver(sid, &subject, reply, headers.as_deref(), &payload);
                None
            }
        }
    }

    /// A message for subscription `sid`, as a PUBLISH (unless the
    /// subscription is gone, or MQTT-4.7.2-1 hides a `$` topic from it):
    /// QoS 1 with a packet id for a QoS 1 consumer's delivery, QoS 0
    /// otherwise. A QoS 1 filter's plain NATS subscription skips what an
    /// MQTT client published with QoS 1: that comes through its consumer.
    fn deliver(
        &mut self,
        sid: u64,
        subject: &str,
        reply: Option<String>,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) {
        if self.pubrel.as_ref().is_some_and(|(s, _)| *s == sid) {
            // A PUBREL owed to the client (stored at its PUBREC).
            if let (Some(reply), Some(pi)) = (reply, headers.and_then(super::jsa::pubrel_id)) {
                self.pending_pubrel.insert(pi, Some(reply));
                codec::pubrel(&mut self.out, pi);
            }
            return;
        }
        let Some(info) = self.sids.get(&sid) else {
            return;
        };
        let granted = info.qos;
        let (subject, js) = if info.js {
            match subject.strip_prefix(super::jsa::MSGS_PREFIX) {
                Some(s) => (s, true),
                None => return,
            }
        } else {
            if info.qos1
                && headers.is_some_and(|h| {
                    matches!(
                        crate::jetstream::headers::get(h, "Nmqtt-Pub").map(str::trim),
                        Some("1" | "2")
                    )
                })
            {
                return;
            }
            (subject, false)
        };
        if topic::wildcard_skips(&info.filter, subject) {
            // Never to be sent: acknowledged so it does not come back.
            if let (true, Some(reply), Some(jsa)) = (js, &reply, &self.jsa) {
                jsa.ack(reply);
            }
            return;
        }
        let topic = topic::subject_to_topic(subject);
        let mut qos = 0;
        let mut id = None;
        let mut dup = false;
        if js && let Some(reply) = reply {
            // The QoS it was published with, at most the granted one.
            let published = headers
                .and_then(|h| crate::jetstream::headers::get(h, "Nmqtt-Pub"))
                .and_then(|q| q.trim().parse::<u8>().ok())
                .unwrap_or(1);
            qos = published.min(granted).clamp(1, 2);
            dup = redelivered(&reply);
            let key = ack_key(&reply);
            let known = key.as_ref().and_then(|k| self.inflight_seq.get(k).copied());
            if known.is_some_and(|pid| self.pending_pubrel.contains_key(&pid)) {
                // PUBRECed already: its PUBREL is on the way instead.
                return;
            }
            let pid = match known {
                Some(pid) => {
                    dup = true;
                    pid
                }
                None => match self.packet_id() {
                    Some(pid) => pid,
                    // Redelivered by the consumer later.
                    None => return,
                },
            };
            if let Some(k) = key {
                self.inflight_seq.insert(k, pid);
            }
            self.inflight.insert(pid, InFlight { reply: Some(reply) });
            id = Some(pid);
        }
        if codec::publish(&mut self.out, &topic, qos, false, dup, id, payload).is_none() {
            tracing::warn!(
                "{} - mqtt: message on {subject:?} cannot be sent as MQTT",
                self.peer
            );
        }
    }

    fn server_error(&mut self, text: &str) -> Option<End> {
        if !self.connected {
            // Authentication (or anything else) refused the CONNECT.
            tracing::warn!("{} - mqtt: CONNECT refused: {text}", self.peer);
            return Some(End::NotAuthorized);
        }
        if let Some(denied) = text
            .strip_prefix("Permissions Violation for Subscription to \"")
            .and_then(|rest| rest.split('"').next())
        {
            // The subscription being acknowledged that holds this subject
            // fails, and its other NATS subscriptions go.
            let mut undo = Vec::new();
            if let Some(Barrier::SubAck(_, entries)) = self
                .barriers
                .iter_mut()
                .find(|b| matches!(b, Barrier::SubAck(..)))
            {
                for e in entries.iter_mut() {
                    if e.code != SUBACK_FAILURE && e.subjects.iter().any(|s| s == denied) {
                        e.code = SUBACK_FAILURE;
                        undo.extend(e.subjects.iter().cloned());
                    }
                }
            }
            if !undo.is_empty() {
                let failed: Vec<String> = self
                    .filters
                    .iter()
                    .filter(|(_, f)| {
                        f.sids
                            .iter()
                            .any(|sid| self.sids.get(sid).is_some_and(|s| undo.contains(&s.filter)))
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in failed {
                    if let Some(f) = self.filters.remove(&k) {
                        for sid in f.sids {
                            self.sids.remove(&sid);
                            self.nats_out
                                .extend_from_slice(format!("UNSUB {sid}\r\n").as_bytes());
                        }
                    }
                }
            }
            return None;
        }
        if let Some(denied) = text
            .strip_prefix(PUB_DENIED)
            .and_then(|rest| rest.split('"').next())
        {
            // The oldest publish waiting on this subject was the one denied.
            if let Some(Barrier::Published { denied: d, .. }) =
                self.barriers.iter_mut().find(|b| {
                    matches!(b, Barrier::Published { subject, denied: false, .. } if subject == denied)
                })
            {
                *d = true;
            }
            return None;
        }
        // Publish permission errors drop the message (as nats-server does
        // for MQTT QoS 0); anything else closes the session, which the
        // read side then sees.
        if self.shared.config.debug {
            tracing::debug!("{} - mqtt: session said: {text}", self.peer);
        }
        None
    }

    /// Lets the session answer every barrier still out, then stores the
    /// retained messages they allow: a retained PUBLISH right before the
    /// connection ends (DISCONNECT, a closed socket, its will) is kept,
    /// as nats-server keeps it. Nothing more is sent to the client.
    async fn settle_stores(&mut self) {
        if self.flush().await.is_some() {
            return;
        }
        let routed = async {
            while !self.barriers.is_empty() {
                match self.nats_rd.read_buf(&mut self.nats_in).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                while let Ok(Some(op)) = server_ops::next(&mut self.nats_in) {
                    // Deliveries are dropped: the client is gone.
                    if !matches!(op, ServerOp::Msg { .. }) {
                        let _ = self.server_op(op);
                    }
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), routed)
            .await
            .is_err()
        {
            tracing::warn!(
                "{} - mqtt: the session did not answer in time; retained messages still \
                 waiting are not stored",
                self.peer
            );
            return;
        }
        self.jobs.retain(|j| matches!(j, Job::Store { .. }));
        for job in &mut self.jobs {
            // A released QoS 2 message is still forgotten (its PUBCOMP
            // goes nowhere).
            if let Job::Store { puback, .. } = job {
                *puback = None;
            }
        }
        let _ = self.run_jobs().await;
    }

    /// Ends the connection: the will (when due), CONNACK 5 for a refused
    /// login, then the session's input is closed.
    async fn finish(&mut self, end: End) {
        if end == End::NotAuthorized {
            codec::connack(&mut self.out, false, RC_NOT_AUTHORIZED);
        }
        if let End::Refused(code) = end {
            codec::connack(&mut self.out, false, code);
        }
        if end == End::Abnormal
            && self.connected
            && let Some(will) = self.will.take()
        {
            self.hpub(&will.subject, will.qos, &will.payload);
            if will.retain || (will.qos >= 1 && self.jsa.is_some()) {
                self.ping_barrier(Barrier::Published {
                    subject: will.subject,
                    puback: None,
                    qos1: (will.qos >= 1).then(|| (will.qos, will.payload.clone())),
                    pubcomp: None,
                    retained: will.retain.then(|| Retain {
                        topic: will.topic,
                        qos: will.qos,
                        payload: will.payload,
                    }),
                    denied: false,
                });
            }
        }
        if self.connected && end != End::Shutdown && self.jsa.is_some() {
            self.settle_stores().await;
        }
        let ended: Vec<_> = std::mem::take(&mut self.filters)
            .into_values()
            .flat_map(|f| f.js.into_iter().map(|(_, q)| q))
            .collect();
        let mut ended = ended;
        if let Some((_, q)) = self.pubrel.take() {
            ended.push(q);
        }
        if self.clean {
            // Every consumer of a clean session goes with it (its PUBREL
            // consumer with the PUBRELs it owes), then its record.
            self.end_qos1(ended).await;
            if self.connected
                && let Some(jsa) = self.jsa.clone()
            {
                let (peer, cid) = (self.peer, self.client_id.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    if let Err(e) = session::forget_client(&jsa, &cid) {
                        tracing::warn!("{peer} - mqtt: clean session record not removed: {e}");
                    }
                })
                .await;
            }
        } else if let Some(jsa) = &self.jsa {
            // A persistent session's consumers stay, for its next connection.
            for q in &ended {
                jsa.detach_qos1(q);
            }
        }
        let _ = self.flush().await;
        let _ = self.wr.shutdown().await;
        let _ = self.nats_wr.shutdown().await;
        if self.registered {
            self.sessions.release(&self.client_id, self.conn);
        }
        // Read what the session still says until it closes its side, so its
        // writer never waits on a full pipe.
        let drain = async {
            let mut sink = BytesMut::with_capacity(8192);
            loop {
                sink.clear();
                match self.nats_rd.read_buf(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
        // The next connection of this client ID may go on.
        self.session_lock = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(clean: bool, client_id: &str) -> Connect {
        Connect {
            level: 4,
            clean_session: clean,
            keep_alive: 30,
            client_id: client_id.into(),
            will: None,
            username: None,
            password: None,
        }
    }

    fn check_connect_plain(c: &Connect) -> Result<(), (u8, String)> {
        check_connect(c, false)
    }

    #[test]
    fn reject_qos2_publish_refuses_a_qos2_will_with_nats_servers_code() {
        let mut c = connect(true, "w");
        c.will = Some(codec::Will {
            topic: "t".into(),
            message: bytes::Bytes::new(),
            qos: 2,
            retain: false,
        });
        assert_eq!(check_connect(&c, false), Ok(()));
        assert_eq!(
            check_connect(&c, true).map_err(|e| e.0),
            Err(RC_QOS2_WILL_REJECTED)
        );
        if let Some(w) = c.will.as_mut() {
            w.qos = 1;
        }
        assert_eq!(check_connect(&c, true), Ok(()));
    }

    #[test]
    fn connect_checks_give_nats_servers_return_codes() {
        assert_eq!(check_connect_plain(&connect(true, "ok")), Ok(()));
        assert_eq!(check_connect_plain(&connect(true, "")), Ok(()));
        assert_eq!(
            check_connect_plain(&connect(false, "")).map_err(|e| e.0),
            Err(RC_IDENTIFIER_REJECTED)
        );
        assert_eq!(
            check_connect_plain(&connect(true, "a.b")).map_err(|e| e.0),
            Err(RC_IDENTIFIER_REJECTED)
        );
        let mut old = connect(true, "x");
        old.level = 3;
        assert_eq!(
            check_connect_plain(&old).map_err(|e| e.0),
            Err(RC_BAD_PROTOCOL)
        );
    }

    #[test]
    fn unsupported_connect_features_are_refused_not_ignored() {
        // Persistent sessions are served.
        assert_eq!(check_connect_plain(&connect(false, "persist")), Ok(()));
        let mut c = connect(true, "w");
        c.will = Some(codec::Will {
            topic: String::new(),
            message: bytes::Bytes::new(),
            qos: 2,
            retain: false,
        });
        assert_eq!(
            check_connect_plain(&c).map_err(|e| e.0),
            Err(RC_SERVER_UNAVAILABLE),
            "an empty will topic"
        );
        // QoS 1, QoS 2 and retained wills are served.
        for qos in [1, 2] {
            if let Some(w) = c.will.as_mut() {
                w.topic = "t".into();
                w.qos = qos;
                w.retain = true;
            }
            assert_eq!(check_connect_plain(&c), Ok(()));
        }
    }

    #[test]
    fn a_redelivery_has_the_ack_key_of_its_first_delivery() {
        let first = ack_key("$JS.ACK.$MQTT_msgs.mqtt_x.1.42.7.1700000000.0");
        let again = ack_key("$JS.ACK.$MQTT_msgs.mqtt_x.2.42.9.1700000099.0");
        assert_eq!(first, Some(("$MQTT_msgs.mqtt_x".to_string(), 42)));
        assert_eq!(first, again);
        assert_eq!(ack_key("_INBOX.abc"), None);
        assert!(!redelivered(
            "$JS.ACK.$MQTT_msgs.mqtt_x.1.42.7.1700000000.0"
        ));
        assert!(redelivered("$JS.ACK.$MQTT_msgs.mqtt_x.2.42.9.1700000099.0"));
        assert!(!redelivered("_INBOX.abc"));
        assert_eq!(ack_key("$JS.ACK.s.c.1.notanumber.1"), None);
    }

    #[test]
    fn nats_connect_carries_the_credentials() {
        let mut c = connect(true, "cid");
        c.username = Some("u\"q".into());
        c.password = Some(bytes::Bytes::from_static(b"p"));
        let line = String::from_utf8(nats_connect(&c)).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(line.trim_start_matches("CONNECT ").trim_end()).unwrap();
        assert_eq!(json["user"], "u\"q");
        assert_eq!(json["pass"], "p");
        assert_eq!(
            json["jwt"], "p",
            "operator mode reads the password as a user JWT"
        );
        assert_eq!(json["name"], "cid");
        assert_eq!(json["headers"], true);
    }
}
