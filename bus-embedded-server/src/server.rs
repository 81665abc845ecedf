//! The server: configuration, the accept loop, shared state, and the handle
//! an embedding program keeps.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::account::Account;
use crate::client::{self, Client};
use crate::config::ServerConfig;

/// The nats-server version whose client-visible core behaviour we implement.
pub const VERSION: &str = "2.10.0";

/// Server start failures.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// JetStream could not be opened (store directory, recovery).
    #[error(transparent)]
    JetStream(#[from] crate::jetstream::JetStreamError),
    /// The TLS certificate, key or CA could not be loaded.
    #[error("TLS: {0}")]
    Tls(String),
}

/// Server-wide counters. Traffic counters here hold closed connections'
/// totals; [`ServerHandle::traffic`] adds the open ones.
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

pub(crate) struct Shared {
    pub config: ServerConfig,
    pub server_id: String,
    pub server_name: String,
    /// The global account `$G` (everyone, when no accounts are configured).
    pub global: Arc<Account>,
    /// The configured accounts by name (not `$G`).
    pub accounts: HashMap<String, Arc<Account>>,
    pub stats: Stats,
    pub shutdown: watch::Sender<bool>,
    /// False once in lame duck mode.
    accepting: watch::Sender<bool>,
    clients: Mutex<HashMap<u64, Arc<Client>>>,
    next_client: AtomicU64,
    queue_pick: AtomicUsize,
    port: u16,
    monitor_port: Option<u16>,
    pub started: SystemTime,
    /// The JetStream engine, when enabled.
    pub jetstream: Option<Arc<crate::jetstream::JetStream>>,
    /// Accepts client TLS handshakes, when TLS is configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Shared {
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
        let mut line = b"INFO ".to_vec();
        line.extend_from_slice(info.to_string().as_bytes());
        line.extend_from_slice(b"\r\n");
        line
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

    /// A rotating start index for picking a queue group member.
    pub fn next_queue_pick(&self, len: usize) -> usize {
        self.queue_pick.fetch_add(1, Ordering::Relaxed) % len.max(1)
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
        self.global.sublist.len() + self.accounts.values().map(|a| a.sublist.len()).sum::<u64>()
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

    fn add_client(&self, client: Arc<Client>) {
        match self.clients.lock() {
            Ok(mut c) => c.insert(client.id, client),
            Err(p) => p.into_inner().insert(client.id, client),
        };
    }
}

/// A running server. Dropping the handle does not stop it; call
/// [`ServerHandle::shutdown`].
pub struct ServerHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
    ready_after: Duration,
}

impl ServerHandle {
    /// The bound client address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `nats://host:port` for clients.
    pub fn client_url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// The server id (as in INFO).
    pub fn server_id(&self) -> &str {
        &self.shared.server_id
    }

    /// The bound monitoring port, when monitoring is on.
    pub fn monitor_port(&self) -> Option<u16> {
        self.shared.monitor_port
    }

    /// Current number of client connections.
    pub fn connections(&self) -> usize {
        self.shared.client_count()
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// (in_msgs, in_bytes, out_msgs, out_bytes) since start, all connections.
    pub fn traffic(&self) -> [u64; 4] {
        self.shared.traffic()
    }

    /// Time from `start` being called to listening.
    pub fn ready_after(&self) -> Duration {
        self.ready_after
    }

    /// Lame duck mode: stops accepting, tells clients (INFO with `ldm`) so
    /// they reconnect elsewhere, waits `duration` for them to leave, then
    /// shuts down.
    pub async fn lame_duck(self, duration: Duration) {
        let _ = self.shared.accepting.send(false);
        let info = self.shared.lame_duck_info();
        for c in self.shared.clients() {
            c.send(&info);
        }
        let deadline = tokio::time::Instant::now() + duration;
        while self.shared.client_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.shutdown(Duration::from_secs(5)).await;
    }

    /// Stops accepting, closes every connection after flushing what was
    /// already queued for it, and waits (at most `grace`) for them to end.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.shared.shutdown.send(true);
        let _ = tokio::time::timeout(grace, self.accept).await;
        if let Some(js) = &self.shared.jetstream {
            js.shutdown();
        }
        for a in self.shared.accounts.values() {
            if let Some(js) = &a.jetstream {
                js.shutdown();
            }
        }
    }

    /// The JetStream engine, when enabled.
    pub fn jetstream(&self) -> Option<&Arc<crate::jetstream::JetStream>> {
        self.shared.jetstream.as_ref()
    }

    /// The JetStream engine of a configured account (`$G`: the global one).
    pub fn account_jetstream(&self, account: &str) -> Option<&Arc<crate::jetstream::JetStream>> {
        if account == crate::config::GLOBAL_ACCOUNT {
            return self.shared.global.jetstream.as_ref();
        }
        self.shared.accounts.get(account)?.jetstream.as_ref()
    }
}

/// Binds and starts serving; returns once the listener is bound.
pub async fn start(config: ServerConfig) -> Result<ServerHandle, ServerError> {
    let begun = Instant::now();
    // Certificates first: a bad file must stop the start before anything binds.
    let tls = match &config.tls {
        Some(t) => Some(crate::tls::acceptor(t).map_err(ServerError::Tls)?),
        None => None,
    };
    let bind = format!("{}:{}", config.host, config.port);
    let listener = TcpListener::bind(&bind)
        .await
        .map_err(|source| ServerError::Bind {
            addr: bind.clone(),
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr: bind, source })?;
    let monitor = match config.http_port {
        Some(port) => {
            let bind = format!("{}:{}", config.host, port);
            let listener = TcpListener::bind(&bind)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: bind.clone(),
                    source,
                })?;
            let port = listener
                .local_addr()
                .map_err(|source| ServerError::Bind { addr: bind, source })?
                .port();
            Some((listener, port))
        }
        None => None,
    };
    let server_id = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
    let server_name = if config.server_name.is_empty() {
        server_id.clone()
    } else {
        config.server_name.clone()
    };
    let (shutdown, _) = watch::channel(false);
    let (accepting, _) = watch::channel(true);
    let (global, accounts) = crate::account::build(&config.accounts, config.jetstream.as_ref())
        .map_err(ServerError::JetStream)?;
    let jetstream = global.jetstream.clone();
    let accounts: HashMap<String, Arc<Account>> = accounts
        .into_iter()
        .map(|a| (a.name.to_string(), a))
        .collect();
    let shared = Arc::new(Shared {
        config,
        server_id,
        server_name,
        global,
        accounts,
        stats: Stats::default(),
        shutdown,
        accepting,
        clients: Mutex::new(HashMap::new()),
        next_client: AtomicU64::new(1),
        queue_pick: AtomicUsize::new(0),
        port: addr.port(),
        monitor_port: monitor.as_ref().map(|(_, p)| *p),
        started: SystemTime::now(),
        jetstream,
        tls,
    });
    if let Some((listener, _)) = monitor {
        tokio::spawn(crate::monitor::serve(Arc::clone(&shared), listener));
    }
    let accept = tokio::spawn(accept_loop(Arc::clone(&shared), listener));
    Ok(ServerHandle {
        shared,
        addr,
        accept,
        ready_after: begun.elapsed(),
    })
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
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
                    // Lame duck: close the listener so new clients go elsewhere.
                    listener = None;
                }
            }
            accepted = accept => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let id = shared.next_client.fetch_add(1, Ordering::Relaxed);
                shared.stats.total_connections.fetch_add(1, Ordering::Relaxed);
                if shared.client_count() >= shared.config.max_connections {
                    let info = shared.info_for(id, peer);
                    connections.spawn(async move {
                        use tokio::io::AsyncWriteExt;
                        let mut stream = stream;
                        let _ = stream.write_all(&info).await;
                        let _ = stream.write_all(b"-ERR 'maximum connections exceeded'\r\n").await;
                        let _ = stream.shutdown().await;
                    });
                    continue;
                }
                let client = Arc::new(Client::new(id, shared.config.max_pending, peer));
                shared.add_client(Arc::clone(&client));
                connections.spawn(client::serve(Arc::clone(&shared), client, stream));
            }
            _ = shutdown.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}
