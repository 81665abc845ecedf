//! The server's shared state: configuration, identity, accounts, the
//! registry of open connections with their counters, the shutdown and
//! lame-duck signals, and the INFO lines it sends. Sessions, the accept
//! loop and the monitor read it; only the accept loop and sessions add
//! and remove connections.
//!
//! It must not run tasks or touch sockets.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::watch;

use crate::account::Account;
use crate::config::ServerConfig;
use crate::jetstream::JetStream;
use crate::outbound::Client;

/// The nats-server version we report (see [`crate::jetstream::versioning::VERSION`]).
pub use crate::jetstream::versioning::VERSION;

/// Server-wide counters. Traffic counters here hold closed connections'
/// totals; [`crate::ServerHandle::traffic`] adds the open ones.
#[derive(Default)]
pub struct Stats {
    /// Messages received from closed connections.
    pub in_msgs: AtomicU64,
    /// Payload bytes received from closed connections.
    pub in_bytes: AtomicU64,
    /// Messages delivered to closed connections.
    pub out_msgs: AtomicU64,
    /// Payload bytes delivered to closed connections.
    pub out_bytes: AtomicU64,
    /// Connections closed as slow consumers.
    pub slow_consumers: AtomicU64,
    /// Connections accepted since start.
    pub total_connections: AtomicU64,
}

/// `INFO {json}\r\n`.
fn info_line(info: &serde_json::Value) -> Vec<u8> {
    let mut line = b"INFO ".to_vec();
    line.extend_from_slice(info.to_string().as_bytes());
    line.extend_from_slice(b"\r\n");
    line
}

/// What every connection, the accept loop and the monitor share.
pub(crate) struct ServerState {
    pub config: ServerConfig,
    pub server_id: String,
    pub server_name: String,
    /// The global account `$G` (everyone, when no accounts are configured).
    pub global: Arc<Account>,
    /// The configured accounts by name (not `$G`).
    pub accounts: crate::account::Accounts,
    pub stats: Stats,
    pub shutdown: watch::Sender<bool>,
    /// False once in lame duck mode.
    pub accepting: watch::Sender<bool>,
    /// Open connections by id (use `add_client`, `remove_client`, `clients`).
    pub clients: Mutex<HashMap<u64, Arc<Client>>>,
    pub next_client: AtomicU64,
    pub port: u16,
    pub monitor_port: Option<u16>,
    pub started: SystemTime,
    /// The JetStream engine, when enabled.
    pub jetstream: Option<Arc<JetStream>>,
    /// Accepts client TLS handshakes, when TLS is configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// The WebSocket listener's bound port, when it is on.
    pub ws_port: Option<u16>,
}

impl ServerState {
    /// INFO line for a new connection.
    pub fn info_for(&self, client_id: u64, addr: SocketAddr) -> Vec<u8> {
        self.info_with_nonce(client_id, addr, None)
    }

    /// INFO line for a new connection, with the nonce an nkey user signs.
    pub fn info_with_nonce(
        &self,
        client_id: u64,
        addr: SocketAddr,
        nonce: Option<&str>,
    ) -> Vec<u8> {
        info_line(&self.info_json(client_id, addr, nonce))
    }

    /// INFO line for a new WebSocket connection: as nats-server says it to
    /// WebSocket clients, with the WebSocket listener's host and port, and
    /// `tls_required`/`tls_available` saying whether that listener is TLS
    /// (the client listener's TLS does not apply to it).
    pub fn ws_info_with_nonce(
        &self,
        client_id: u64,
        addr: SocketAddr,
        nonce: Option<&str>,
    ) -> Vec<u8> {
        let mut info = self.info_json(client_id, addr, nonce);
        let ws = self.config.websocket.as_ref();
        info["host"] = serde_json::Value::String(ws.map(|w| w.host.clone()).unwrap_or_default());
        info["port"] = serde_json::Value::from(self.ws_port.unwrap_or(0));
        let Some(map) = info.as_object_mut() else {
            return info_line(&info);
        };
        map.remove("tls_required");
        map.remove("tls_available");
        // The block's own authorization makes it required there too.
        if ws.is_some_and(|w| w.auth.is_some()) {
            map.insert("auth_required".into(), serde_json::Value::Bool(true));
        }
        if ws.is_some_and(|w| w.tls.is_some()) {
            map.insert("tls_required".into(), serde_json::Value::Bool(true));
            map.insert("tls_available".into(), serde_json::Value::Bool(true));
        }
        info_line(&info)
    }

    fn info_json(
        &self,
        client_id: u64,
        addr: SocketAddr,
        nonce: Option<&str>,
    ) -> serde_json::Value {
        let info = serde_json::json!({
            "server_id": self.server_id,
            "server_name": self.server_name,
            "version": VERSION,
            "proto": 1,
            "go": "rust",
            "host": self.config.host,
            "port": self.port,
            "headers": true,
            "max_payload": self.config.max_payload,
            "api_lvl": crate::jetstream::headers::API_LEVEL,
            "client_id": client_id,
            "client_ip": addr.ip().to_string(),
        });
        let mut info = info;
        if self.config.auth.is_some() {
            info["auth_required"] = serde_json::Value::Bool(true);
        }
        if self.config.jetstream.is_some() {
            info["jetstream"] = serde_json::Value::Bool(true);
        }
        if let Some(tls) = &self.config.tls {
            info["tls_required"] = serde_json::Value::Bool(true);
            if tls.verify {
                info["tls_verify"] = serde_json::Value::Bool(true);
            }
        }
        if let Some(nonce) = nonce {
            info["nonce"] = serde_json::Value::String(nonce.to_owned());
        }
        info
    }

    /// INFO telling clients the server is entering lame duck mode.
    pub fn lame_duck_info(&self) -> Vec<u8> {
        let info = serde_json::json!({
            "server_id": self.server_id,
            "server_name": self.server_name,
            "version": VERSION,
            "proto": 1,
            "host": self.config.host,
            "port": self.port,
            "headers": true,
            "max_payload": self.config.max_payload,
            "ldm": true,
        });
        let mut info = info;
        if let Some(tls) = &self.config.tls {
            info["tls_required"] = serde_json::Value::Bool(true);
            if tls.verify {
                info["tls_verify"] = serde_json::Value::Bool(true);
            }
        }
        let mut line = b"INFO ".to_vec();
        line.extend_from_slice(info.to_string().as_bytes());
        line.extend_from_slice(b"\r\n");
        line
    }

    /// Forgets a closed connection, keeping its counters in the totals.
    pub fn remove_client(&self, id: u64) {
        let removed = match self.clients.lock() {
            Ok(mut c) => c.remove(&id),
            Err(p) => p.into_inner().remove(&id),
        };
        if let Some(c) = removed {
            let s = &self.stats;
            s.in_msgs
                .fetch_add(c.in_msgs.load(Ordering::Relaxed), Ordering::Relaxed);
            s.in_bytes
                .fetch_add(c.in_bytes.load(Ordering::Relaxed), Ordering::Relaxed);
            s.out_msgs
                .fetch_add(c.out_msgs.load(Ordering::Relaxed), Ordering::Relaxed);
            s.out_bytes
                .fetch_add(c.out_bytes.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    /// (in_msgs, in_bytes, out_msgs, out_bytes) over closed and open connections.
    pub fn traffic(&self) -> [u64; 4] {
        let s = &self.stats;
        let mut t = [
            s.in_msgs.load(Ordering::Relaxed),
            s.in_bytes.load(Ordering::Relaxed),
            s.out_msgs.load(Ordering::Relaxed),
            s.out_bytes.load(Ordering::Relaxed),
        ];
        for c in self.clients() {
            t[0] += c.in_msgs.load(Ordering::Relaxed);
            t[1] += c.in_bytes.load(Ordering::Relaxed);
            t[2] += c.out_msgs.load(Ordering::Relaxed);
            t[3] += c.out_bytes.load(Ordering::Relaxed);
        }
        t
    }

    /// Subscriptions over every account.
    pub fn subscription_count(&self) -> u64 {
        self.global.sublist.len()
            + self
                .accounts
                .all()
                .iter()
                .map(|a| a.sublist.len())
                .sum::<u64>()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn monitor_port(&self) -> u16 {
        self.monitor_port.unwrap_or(0)
    }

    pub fn clients(&self) -> Vec<Arc<Client>> {
        match self.clients.lock() {
            Ok(c) => c.values().cloned().collect(),
            Err(p) => p.into_inner().values().cloned().collect(),
        }
    }

    pub fn client_count(&self) -> usize {
        match self.clients.lock() {
            Ok(c) => c.len(),
            Err(p) => p.into_inner().len(),
        }
    }

    pub fn add_client(&self, client: Arc<Client>) {
        match self.clients.lock() {
            Ok(mut c) => c.insert(client.id, client),
            Err(p) => p.into_inner().insert(client.id, client),
        };
    }
}
