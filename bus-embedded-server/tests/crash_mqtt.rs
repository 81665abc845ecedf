//! MQTT state that must survive a crash: retained messages acknowledged
//! (PUBACK for a QoS 1 retained PUBLISH) before the server is SIGKILLed
//! are there after the restart, and one removed (empty retained payload)
//! stays removed. Run against our binary and against nats-server 2.15.1
//! restarted on the same store directory, with the same raw MQTT packets.
//! (nats-server 2.15.1 acknowledges the removal before it is durable: a
//! removed retained message was seen to come back after its SIGKILL, so
//! on it only the kept messages are asserted.) Also: a persistent
//! session's QoS 1 subscription gets every message acknowledged while it
//! was away, across the SIGKILL, with session-present 1 (both servers);
//! and on ours a clean session's consumer left by the SIGKILL is swept
//! at the account's first connection after the restart; a QoS 2 message
//! PUBRECed before the SIGKILL is published by its PUBREL after it (both);
//! a QoS 2 delivery PUBRECed before the SIGKILL gets its PUBREL again, not
//! the message, and one not PUBRECed comes again (both).

mod mqtt_raw;
mod server_process;

use std::time::Duration;

use nats_test_server::{NatsServer, ServerOptions, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use mqtt_raw::{connect_packet, mqtt_str, packet, read_n};

/// Our binary with an MQTT listener, started (and restarted) on one store
/// directory.
struct Ours {
    dir: tempfile::TempDir,
    port: u16,
    config: String,
}

impl Ours {
    fn new() -> Self {
        Self::with_keys("")
    }

    /// With more `mqtt { }` keys (`, key: value`...).
    fn with_keys(keys: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let config = dir.path().join("server.conf");
        std::fs::write(
            &config,
            format!("server_name: crashmq\nmqtt {{ host: 127.0.0.1, port: {port}{keys} }}\n"),
        )
        .expect("write config");
        let config = config.display().to_string();
        Ours { dir, port, config }
    }

    fn start(&self) -> server_process::Server {
        server_process::start_with(
            &self.dir.path().join("store"),
            &self.dir.path().join("server.log"),
            &["-c", &self.config],
        )
    }
}

/// Connects (clean session), retrying while the listener comes up.
async fn connected(port: u16, client_id: &str) -> TcpStream {
    for _ in 0..100 {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await {
            s.write_all(&connect_packet(client_id, 0x02, None))
                .await
                .expect("send");
            assert_eq!(read_n(&mut s, 4).await, [0x20, 2, 0, 0], "CONNACK");
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no MQTT listener on {port}");
}

/// A QoS 1 retained PUBLISH, returning once it is acknowledged.
async fn publish_retained(s: &mut TcpStream, topic: &str, id: u16, payload: &[u8]) {
    let mut body = mqtt_str(topic);
    body.extend_from_slice(&id.to_be_bytes());
    body.extend_from_slice(payload);
    s.write_all(&packet(0x33, &body)).await.expect("send");
    let mut ack = vec![0x40, 2];
    ack.extend_from_slice(&id.to_be_bytes());
    assert_eq!(read_n(s, 4).await, ack, "PUBACK for {topic}");
}

/// Subscribes to `filter` at QoS 0 and collects the (topic, payload,
/// retain) of what arrives within a second.
async fn retained_for(port: u16, filter: &str) -> Vec<(String, Vec<u8>, bool)> {
    let mut s = connected(port, "reader").await;
    let mut body = vec![0, 1];
    body.extend(mqtt_str(filter));
    body.push(0);
    s.write_all(&packet(0x82, &body)).await.expect("send");
    assert_eq!(read_n(&mut s, 5).await, [0x90, 3, 0, 1, 0], "SUBACK");
    let mut got = Vec::new();
    loop {
        let mut first = [0u8; 1];
        match tokio::time::timeout(Duration::from_secs(1), s.read_exact(&mut first)).await {
            Err(_) => break,
            Ok(r) => {
                r.expect("read");
            }
        }
        let mut len = 0usize;
        let mut shift = 0;
        loop {
            let b = read_n(&mut s, 1).await[0];
            len |= usize::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        let rest = read_n(&mut s, len).await;
        assert_eq!(first[0] & 0xf0, 0x30, "a PUBLISH");
        assert_eq!(first[0] & 0x06, 0, "QoS 0 (granted)");
        let tlen = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let topic = String::from_utf8(rest[2..2 + tlen].to_vec()).expect("utf-8 topic");
        got.push((topic, rest[2 + tlen..].to_vec(), first[0] & 1 == 1));
    }
    got.sort();
    got
}

/// Before the crash: three retained messages, one replaced, one removed.
async fn before_crash(port: u16) {
    let mut s = connected(port, "writer").await;
    publish_retained(&mut s, "crash/a", 1, b"first").await;
    publish_retained(&mut s, "crash/a", 2, b"second").await;
    publish_retained(&mut s, "crash/b/deep", 3, b"deep").await;
    publish_retained(&mut s, "crash/gone", 4, b"soon gone").await;
    publish_retained(&mut s, "crash/gone", 5, b"").await;
}

fn expected() -> Vec<(String, Vec<u8>, bool)> {
    vec![
        ("crash/a".into(), b"second".to_vec(), true),
        ("crash/b/deep".into(), b"deep".to_vec(), true),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_retained_messages_survive_sigkill_on_ours() {
    let ours = Ours::new();
    let mqtt_port = ours.port;
    let mut server = ours.start();
    before_crash(mqtt_port).await;
    server.sigkill();
    let server = ours.start();
    let got = retained_for(mqtt_port, "crash/#").await;
    assert_eq!(got, expected(), "log:\n{}", server.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_retained_messages_survive_sigkill_on_nats_server() {
    let mqtt_port = free_port();
    let mut server = NatsServer::start_with(ServerOptions {
        extra_config: Some(format!("mqtt {{ port: {mqtt_port} }}\n")),
        ..ServerOptions::default()
    })
    .await;
    before_crash(mqtt_port).await;
    server.restart().await;
    let mut got = retained_for(mqtt_port, "crash/#").await;
    got.retain(|(topic, _, _)| topic != "crash/gone");
    // nats-server sends the PUBACK before its retained-message store has
    // the message (seen in CI: `crash/b/deep` missing after the kill), so
    // on the reference only what it kept is checked: nothing but the
    // acknowledged messages, with their payloads and flags. Ours must keep
    // all of them (the test above).
    let expected = expected();
    assert!(
        got.iter().all(|m| expected.contains(m)),
        "nats-server kept something never acknowledged: {got:?}"
    );
}

// ---------------------------------------------------------------------------
// Persistent sessions: what a QoS 1 subscriber with clean session 0 was
// promised survives a SIGKILL of the server.

/// CONNECT with `flags` (0 = persistent session), retrying while the
/// listener comes up; returns the connection and the session-present flag.
async fn connect_with(port: u16, client_id: &str, flags: u8) -> (TcpStream, bool) {
    for _ in 0..100 {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await {
            s.write_all(&connect_packet(client_id, flags, None))
                .await
                .expect("send");
            let ack = read_n(&mut s, 4).await;
            assert_eq!((ack[0], ack[1], ack[3]), (0x20, 2, 0), "CONNACK {ack:?}");
            return (s, ack[2] & 1 == 1);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no MQTT listener on {port}");
}

/// SUBSCRIBE to `filter` at QoS 1, granted QoS 1.
async fn subscribe_qos1(s: &mut TcpStream, filter: &str) {
    let mut body = vec![0, 7];
    body.extend(mqtt_str(filter));
    body.push(1);
    s.write_all(&packet(0x82, &body)).await.expect("send");
    assert_eq!(read_n(s, 5).await, [0x90, 3, 0, 7, 1], "SUBACK");
}

/// A QoS 1 PUBLISH, returning once it is acknowledged.
async fn publish_qos1(s: &mut TcpStream, topic: &str, id: u16, payload: &[u8]) {
    let mut body = mqtt_str(topic);
    body.extend_from_slice(&id.to_be_bytes());
    body.extend_from_slice(payload);
    s.write_all(&packet(0x32, &body)).await.expect("send");
    let mut ack = vec![0x40, 2];
    ack.extend_from_slice(&id.to_be_bytes());
    assert_eq!(read_n(s, 4).await, ack, "PUBACK for {topic}");
}

/// The payloads of the QoS 1 PUBLISHes that arrive (each acknowledged)
/// until `want` distinct ones came or nothing came for 3 s.
async fn qos1_received(s: &mut TcpStream, want: usize) -> std::collections::BTreeSet<Vec<u8>> {
    let mut got = std::collections::BTreeSet::new();
    while got.len() < want {
        let mut first = [0u8; 1];
        match tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut first)).await {
            Err(_) => break,
            Ok(r) => {
                r.expect("read");
            }
        }
        let mut len = 0usize;
        let mut shift = 0;
        loop {
            let b = read_n(s, 1).await[0];
            len |= usize::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        let rest = read_n(s, len).await;
        assert_eq!(first[0] & 0xf0, 0x30, "a PUBLISH");
        assert_eq!(first[0] & 0x06, 2, "QoS 1");
        let tlen = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let id = [rest[2 + tlen], rest[3 + tlen]];
        s.write_all(&[0x40, 2, id[0], id[1]]).await.expect("PUBACK");
        got.insert(rest[4 + tlen..].to_vec());
    }
    got
}

const AWAY: usize = 20;

fn away_payload(i: usize) -> Vec<u8> {
    format!("away-{i}").into_bytes()
}

/// Before the crash: a persistent QoS 1 subscriber leaves (DISCONNECT),
/// then [`AWAY`] QoS 1 messages are published and acknowledged.
async fn persistent_before_crash(port: u16) {
    let (mut s, present) = connect_with(port, "keeper", 0x00).await;
    assert!(!present, "a new session is not present");
    subscribe_qos1(&mut s, "away/t").await;
    s.write_all(&[0xe0, 0]).await.expect("DISCONNECT");
    drop(s);
    let mut p = connected(port, "away-writer").await;
    for i in 0..AWAY {
        let id = u16::try_from(i + 1).expect("small");
        publish_qos1(&mut p, "away/t", id, &away_payload(i)).await;
    }
}

/// After the restart: the session is present and every acknowledged
/// message arrives without a new SUBSCRIBE.
async fn persistent_after_restart(port: u16) -> (bool, std::collections::BTreeSet<Vec<u8>>) {
    let (mut s, present) = connect_with(port, "keeper", 0x00).await;
    let got = qos1_received(&mut s, AWAY).await;
    (present, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_qos1_session_gets_every_acknowledged_message_after_sigkill_on_ours() {
    let ours = Ours::new();
    let mqtt_port = ours.port;
    let mut server = ours.start();
    persistent_before_crash(mqtt_port).await;
    server.sigkill();
    let server = ours.start();
    let (present, got) = persistent_after_restart(mqtt_port).await;
    assert!(present, "session present after the restart");
    let want: std::collections::BTreeSet<_> = (0..AWAY).map(away_payload).collect();
    assert_eq!(got, want, "log:\n{}", server.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_qos1_session_gets_every_acknowledged_message_after_sigkill_on_nats_server() {
    let mqtt_port = free_port();
    let mut server = NatsServer::start_with(ServerOptions {
        extra_config: Some(format!("mqtt {{ port: {mqtt_port} }}\n")),
        ..ServerOptions::default()
    })
    .await;
    persistent_before_crash(mqtt_port).await;
    server.restart().await;
    let (present, got) = persistent_after_restart(mqtt_port).await;
    assert!(present, "session present after the restart");
    let want: std::collections::BTreeSet<_> = (0..AWAY).map(away_payload).collect();
    assert_eq!(got, want);
}

/// The names of the consumers of `$MQTT_msgs`.
async fn msgs_consumers(url: &str) -> Vec<String> {
    use futures::StreamExt;
    let nc = async_nats::connect(url).await.expect("nats connect");
    let js = async_nats::jetstream::new(nc);
    let stream = js.get_stream("$MQTT_msgs").await.expect("$MQTT_msgs");
    let mut names: Vec<String> = stream
        .consumer_names()
        .map(|n| n.expect("consumer name"))
        .collect()
        .await;
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_sessions_qos1_consumer_left_by_sigkill_is_removed_after_restart_on_ours() {
    let ours = Ours::new();
    let mqtt_port = ours.port;
    let mut server = ours.start();
    // A persistent session's consumer (must stay) and a clean session's,
    // connected when the server dies (must go).
    let (mut keeper, _) = connect_with(mqtt_port, "kept", 0x00).await;
    subscribe_qos1(&mut keeper, "kept/t").await;
    keeper.write_all(&[0xe0, 0]).await.expect("DISCONNECT");
    drop(keeper);
    let (mut clean, _) = connect_with(mqtt_port, "orphan", 0x02).await;
    subscribe_qos1(&mut clean, "orphan/t").await;
    let before = msgs_consumers(&server.url).await;
    assert_eq!(before.len(), 2, "{before:?}");
    server.sigkill();
    drop(clean);
    let server = ours.start();
    // The first MQTT connection of the account sweeps.
    let (_poke, present) = connect_with(mqtt_port, "poke", 0x02).await;
    assert!(!present);
    let after = msgs_consumers(&server.url).await;
    let kept_prefix = format!("{}_", short_hash("kept"));
    assert_eq!(after.len(), 1, "{after:?}\nlog:\n{}", server.log_text());
    assert!(after[0].starts_with(&kept_prefix), "{after:?}");
    // And the persistent session is still served from it.
    let (mut keeper, present) = connect_with(mqtt_port, "kept", 0x00).await;
    assert!(present);
    let mut p = connected(mqtt_port, "kept-writer").await;
    publish_qos1(&mut p, "kept/t", 1, b"still here").await;
    let got = qos1_received(&mut keeper, 1).await;
    assert_eq!(
        got.into_iter().collect::<Vec<_>>(),
        vec![b"still here".to_vec()]
    );
}

/// nats-server's 8-character hash of a client ID (its consumers' prefix).
fn short_hash(id: &str) -> String {
    use sha2::Digest;
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    sha2::Sha256::digest(id.as_bytes())[..8]
        .iter()
        .map(|b| DIGITS[usize::from(*b) % 62] as char)
        .collect()
}

/// A QoS 2 PUBLISH answered with PUBREC before the SIGKILL is released
/// by its PUBREL after the restart: PUBCOMP, and a persistent QoS 1
/// subscriber gets it.
async fn qos2_released_after_restart(port: u16, restart: impl std::future::Future<Output = ()>) {
    let (mut sub, _) = connect_with(port, "q2-reader", 0x00).await;
    subscribe_qos1(&mut sub, "q2crash/t").await;
    sub.write_all(&[0xe0, 0]).await.expect("DISCONNECT");
    drop(sub);
    let (mut p, _) = connect_with(port, "q2-writer", 0x00).await;
    let mut body = mqtt_str("q2crash/t");
    body.extend_from_slice(&[0, 9]);
    body.extend_from_slice(b"exactly once");
    p.write_all(&packet(0x34, &body)).await.expect("send");
    assert_eq!(read_n(&mut p, 4).await, [0x50, 2, 0, 9], "PUBREC");
    restart.await;
    drop(p);
    let (mut p, present) = connect_with(port, "q2-writer", 0x00).await;
    assert!(present);
    p.write_all(&[0x62, 2, 0, 9]).await.expect("PUBREL");
    assert_eq!(read_n(&mut p, 4).await, [0x70, 2, 0, 9], "PUBCOMP");
    let (mut sub, present) = connect_with(port, "q2-reader", 0x00).await;
    assert!(present);
    let got = qos1_received(&mut sub, 1).await;
    assert_eq!(
        got.into_iter().collect::<Vec<_>>(),
        vec![b"exactly once".to_vec()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_message_received_before_sigkill_is_published_by_its_pubrel_after_on_ours() {
    let ours = Ours::new();
    let mqtt_port = ours.port;
    let mut server = Some(ours.start());
    let restart = async {
        if let Some(mut s) = server.take() {
            s.sigkill();
        }
        server = Some(ours.start());
    };
    qos2_released_after_restart(mqtt_port, restart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_message_received_before_sigkill_is_published_by_its_pubrel_after_on_nats_server() {
    let mqtt_port = free_port();
    let mut server = NatsServer::start_with(ServerOptions {
        extra_config: Some(format!("mqtt {{ port: {mqtt_port} }}\n")),
        ..ServerOptions::default()
    })
    .await;
    qos2_released_after_restart(mqtt_port, server.restart()).await;
}

/// One packet from a raw socket: (first byte, body); `None` when nothing
/// comes for `quiet`.
async fn next_packet(s: &mut TcpStream, quiet: Duration) -> Option<(u8, Vec<u8>)> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(quiet, s.read_exact(&mut first)).await {
        Err(_) => return None,
        Ok(r) => {
            r.expect("read");
        }
    }
    let mut len = 0usize;
    let mut shift = 0;
    loop {
        let b = read_n(s, 1).await[0];
        len |= usize::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
    }
    Some((first[0], read_n(s, len).await))
}

/// A QoS 2 PUBLISH's packet id and payload (`body` after the fixed header).
fn qos2_publish(first: u8, body: &[u8]) -> (u16, Vec<u8>) {
    assert_eq!(first & 0xf6, 0x34, "a QoS 2 PUBLISH: {first:#x}");
    let tlen = usize::from(u16::from_be_bytes([body[0], body[1]]));
    let id = u16::from_be_bytes([body[2 + tlen], body[3 + tlen]]);
    (id, body[4 + tlen..].to_vec())
}

/// A QoS 2 PUBLISH from an MQTT client, completed.
async fn publish_qos2(port: u16, payload: &[u8], id: u8) {
    let mut p = connected(port, "q2out-writer").await;
    let mut body = mqtt_str("q2out/t");
    body.extend_from_slice(&[0, id]);
    body.extend_from_slice(payload);
    p.write_all(&packet(0x34, &body)).await.expect("send");
    assert_eq!(read_n(&mut p, 4).await, [0x50, 2, 0, id], "PUBREC");
    p.write_all(&[0x62, 2, 0, id]).await.expect("PUBREL");
    assert_eq!(read_n(&mut p, 4).await, [0x70, 2, 0, id], "PUBCOMP");
}

/// A persistent session's QoS 2 subscription across a SIGKILL: the
/// delivery PUBRECed before it gets its PUBREL again after the restart
/// (never the message again), the one not PUBRECed comes again; each
/// completes once and nothing more comes.
async fn qos2_delivery_across_restart(port: u16, restart: impl std::future::Future<Output = ()>) {
    let (mut sub, _) = connect_with(port, "q2out-reader", 0x00).await;
    let mut body = vec![0, 7];
    body.extend(mqtt_str("q2out/t"));
    body.push(2);
    sub.write_all(&packet(0x82, &body)).await.expect("send");
    assert_eq!(read_n(&mut sub, 5).await, [0x90, 3, 0, 7, 2], "SUBACK");
    publish_qos2(port, b"released", 1).await;
    let (first, body) = next_packet(&mut sub, Duration::from_secs(5))
        .await
        .expect("the first delivery");
    let (released, payload) = qos2_publish(first, &body);
    assert_eq!(payload, b"released");
    let [hi, lo] = released.to_be_bytes();
    sub.write_all(&[0x50, 2, hi, lo]).await.expect("PUBREC");
    assert_eq!(read_n(&mut sub, 4).await, [0x62, 2, hi, lo], "PUBREL");
    publish_qos2(port, b"pending", 2).await;
    let (first, body) = next_packet(&mut sub, Duration::from_secs(5))
        .await
        .expect("the second delivery");
    assert_eq!(qos2_publish(first, &body).1, b"pending");
    restart.await;
    drop(sub);
    let (mut sub, present) = connect_with(port, "q2out-reader", 0x00).await;
    assert!(present, "session present after the restart");
    let mut pubrels = Vec::new();
    let mut messages = Vec::new();
    // The packet ids whose PUBREL is owed: the delivery PUBRECed before
    // the kill, then the one that comes again and is PUBRECed now.
    let mut owed = vec![released];
    while let Some((first, body)) = next_packet(&mut sub, Duration::from_secs(3)).await {
        if first == 0x62 {
            pubrels.push(body.clone());
            sub.write_all(&[0x70, 2, body[0], body[1]])
                .await
                .expect("PUBCOMP");
            continue;
        }
        let (id, payload) = qos2_publish(first, &body);
        let [hi, lo] = id.to_be_bytes();
        messages.push(payload);
        owed.push(id);
        sub.write_all(&[0x50, 2, hi, lo]).await.expect("PUBREC");
    }
    assert_eq!(
        messages,
        vec![b"pending".to_vec()],
        "messages after the restart"
    );
    // Each PUBREL owed arrives; a PUBREL may come more than once (the
    // sender resends it until the PUBCOMP is processed: nats-server does
    // after `ack_wait` when the machine is slow, and MQTT's receiver
    // answers each with PUBCOMP), but never for a packet id not owed.
    let owed: Vec<Vec<u8>> = owed.iter().map(|id| id.to_be_bytes().to_vec()).collect();
    assert!(
        pubrels.len() >= owed.len(),
        "a PUBREL for each of {owed:?}: {pubrels:?}"
    );
    for id in &owed {
        assert!(pubrels.contains(id), "the PUBREL for {id:?}: {pubrels:?}");
    }
    for p in &pubrels {
        assert!(owed.contains(p), "a PUBREL for {p:?} not owed ({owed:?})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_delivery_pubreced_before_sigkill_gets_its_pubrel_not_the_message_on_ours() {
    let ours = Ours::with_keys(", ack_wait: \"1s\"");
    let mqtt_port = ours.port;
    let mut server = Some(ours.start());
    let restart = async {
        if let Some(mut s) = server.take() {
            s.sigkill();
        }
        server = Some(ours.start());
    };
    qos2_delivery_across_restart(mqtt_port, restart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_delivery_pubreced_before_sigkill_gets_its_pubrel_not_the_message_on_nats_server() {
    let mqtt_port = free_port();
    let mut server = NatsServer::start_with(ServerOptions {
        extra_config: Some(format!("mqtt {{ port: {mqtt_port}, ack_wait: \"1s\" }}\n")),
        ..ServerOptions::default()
    })
    .await;
    qos2_delivery_across_restart(mqtt_port, server.restart()).await;
}
