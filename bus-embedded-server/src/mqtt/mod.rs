//! The MQTT 3.1.1 listener (nats-server's `mqtt { }` block).
//!
//! Each MQTT connection becomes an ordinary NATS client of the global
//! account: the connection task speaks the NATS protocol to a `session`
//! over an in-process pipe (as `websocket` hands its frames to the same
//! session machinery), so authentication, permissions, subject mappings,
//! imports and exports, monitoring and slow-consumer rules are the ones
//! NATS clients get. MQTT packets become `CONNECT`/`HPUB`/`SUB`/`UNSUB`
//! lines, deliveries (`MSG`/`HMSG`) become MQTT PUBLISH packets, with topic
//! names mapped as nats-server maps them ([`topic`]). With the block's
//! `tls {}` the connection is TLS from the first byte (`transport`); the
//! block's own `authorization {}` / `no_auth_user` are applied by the
//! session the connection runs with (`session::Listener::Mqtt`).
//!
//! Served: CONNECT with clean and persistent sessions (a persistent
//! session's record and consumers kept in JetStream by [`session`]), QoS 0, 1
//! and 2 publish (QoS 2 kept in `$MQTT_qos2in` until its PUBREL), QoS 0, 1
//! and 2 subscribe (QoS 1 and 2 deliveries through durable consumers of
//! the account's `$MQTT_msgs` stream; the PUBRELs a session owes for QoS 2
//! deliveries kept in `$MQTT_out` until their PUBCOMP), retained messages (kept in the account's `$MQTT_rmsgs`
//! stream through [`jsa`], the listener's privileged path to JetStream),
//! PINGREQ, UNSUBSCRIBE, DISCONNECT, keep-alive (1.5 × the client's
//! value, in whole seconds), wills with QoS 0/1/2 and retain, session
//! takeover (a second connection with the same client ID closes the
//! first, without its will, as nats-server). Refused, each with the MQTT
//! answer that says so: persistent sessions without JetStream in the
//! account (CONNACK return code 3, server unavailable), QoS 1 and 2
//! subscriptions without JetStream (SUBACK failure 0x80), QoS 2 PUBLISH
//! without JetStream
//! in the account (the connection is closed, MQTT 3.1.1's only answer to
//! a packet the server will not take).
//!
//! Must not: touch accounts or subscriptions directly (everything a
//! client does goes through the session; only [`jsa`] and [`session`] reach JetStream,
//! and only the `$MQTT_*` streams), or block the accept loop on one
//! connection.

pub mod codec;
mod connection;
mod jsa;
mod server_ops;
mod session;
pub mod topic;
mod transport;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::state::ServerState;

/// The connections with a client ID, for session takeover: a newer
/// connection with the same ID tells the older one to close.
#[derive(Default)]
pub(crate) struct Sessions {
    by_client_id: Mutex<HashMap<String, (u64, Arc<Notify>)>>,
    /// Stored sessions: per-client-ID locks, the sweep after a start.
    registry: session::Registry,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, Arc<Notify>)>> {
        match self.by_client_id.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Registers connection `conn` under `client_id`, telling the previous
    /// holder (if any) to close.
    fn take_over(&self, client_id: &str, conn: u64, kick: Arc<Notify>) {
        if let Some((_, old)) = self.lock().insert(client_id.to_owned(), (conn, kick)) {
            old.notify_one();
        }
    }

    /// Forgets `client_id` if connection `conn` still holds it.
    fn release(&self, client_id: &str, conn: u64) {
        let mut map = self.lock();
        if map.get(client_id).is_some_and(|(c, _)| *c == conn) {
            map.remove(client_id);
        }
    }
}

/// Accepts MQTT connections until shutdown (or lame duck, which closes the
/// listener), then waits for the connections to end.
pub(crate) async fn accept_loop(
    shared: Arc<ServerState>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let tls_timeout = shared
        .config
        .mqtt
        .as_ref()
        .and_then(|m| m.tls.as_ref())
        .map_or(crate::config::DEFAULT_TLS_TIMEOUT, |t| t.timeout);
    let sessions = Arc::new(Sessions::default());
    let mut shutdown = shared.shutdown.subscribe();
    let mut accepting = shared.accepting.subscribe();
    let mut listener = Some(listener);
    let mut connections = JoinSet::new();
    loop {
        let accept = async {
            match &listener {
                Some(l) => l.accept().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = accepting.changed() => {
                if !*accepting.borrow() {
                    listener = None;
                }
            }
            accepted = accept => {
                let (stream, peer): (_, SocketAddr) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "mqtt accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let shared = Arc::clone(&shared);
                let sessions = Arc::clone(&sessions);
                let tls = tls.clone();
                connections.spawn(async move {
                    let stream = transport::MqttStream::accept(
                        stream,
                        tls.as_ref().map(|a| (a, tls_timeout)),
                        shared.shutdown.subscribe(),
                        peer,
                        shared.config.debug,
                    )
                    .await;
                    if let Some(stream) = stream {
                        connection::serve(shared, stream, peer, sessions).await;
                    }
                });
            }
            _ = shutdown.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}
