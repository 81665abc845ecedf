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

/// The nats-server version whose client-visible core behaviour we implement.
pub const VERSION: &str = "2.10.0";

/// Server settings (the subset of nats-server's that this server supports).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind; loopback unless told otherwise.
    pub host: String,
    /// Client port; 0 picks a free one.
    pub port: u16,
    /// Name reported in INFO (a generated id when empty).
    pub server_name: String,
    /// Largest message payload accepted.
    pub max_payload: usize,
    /// Longest control line accepted.
    pub max_control_line: usize,
    /// Most simultaneous client connections.
    pub max_connections: usize,
    /// Outbound bytes a connection may have pending before it is closed as a
    /// slow consumer.
    pub max_pending: usize,
    /// A write to a client that takes longer than this closes it (slow consumer).
    pub write_deadline: Duration,
    /// Interval of server PINGs.
    pub ping_interval: Duration,
    /// PINGs without PONG before the connection is closed as stale.
    pub ping_max: u32,
    /// Monitoring HTTP port (`/varz` ...); `None` = off, `Some(0)` = a free port.
    pub http_port: Option<u16>,
    /// Who may connect; `None` = anyone.
    pub auth: Option<Auth>,
    /// With auth: a connection must send a valid CONNECT within this.
    pub auth_timeout: Duration,
    /// Log connection lifecycle at debug level (`-D`).
    pub debug: bool,
    /// Log every protocol op received and control reply sent at trace level (`-V`).
    pub trace: bool,
    /// JetStream (`-js`, `jetstream {}`); `None` = off.
    pub jetstream: Option<crate::jetstream::JetStreamConfig>,
    /// TLS for client connections (`tls {}`, `--tls*`); `None` = plain TCP.
    pub tls: Option<crate::tls::TlsConfig>,
    /// Accounts (`accounts {}`); empty = everyone in the global account.
    /// Their users must also be in `auth` (as identities naming the account).
    pub accounts: Vec<crate::account::AccountConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".to_owned(),
            port: 4222,
            server_name: String::new(),
            max_payload: 1024 * 1024,
            max_control_line: 4096,
            max_connections: 64 * 1024,
            max_pending: 64 * 1024 * 1024,
            write_deadline: Duration::from_secs(10),
            ping_interval: Duration::from_secs(120),
            ping_max: 2,
            http_port: None,
            auth: None,
            auth_timeout: Duration::from_secs(2),
            debug: false,
            trace: false,
            jetstream: None,
            tls: None,
            accounts: Vec::new(),
        }
    }
}

/// Client authentication, as nats-server's `--auth` / `--user` `--pass` and
/// `authorization { token | user/password | users [...] }`. Secrets may be
/// plain text or bcrypt hashes (`$2a$...`, `$2b$...`, `$2y$...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// One token every client presents (`auth_token`).
    Token(String),
    /// Named users with passwords.
    Users(Vec<User>),
    /// nats-server's `users` list in full: password and nkey users, each
    /// with optional publish/subscribe permissions. With any nkey user, INFO
    /// carries a nonce for the client to sign.
    Identities(Vec<crate::auth::Identity>),
}

/// The credentials of a CONNECT.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// `user`.
    pub user: Option<&'a str>,
    /// `pass`.
    pub pass: Option<&'a str>,
    /// `auth_token`.
    pub token: Option<&'a str>,
    /// `nkey` (public key).
    pub nkey: Option<&'a str>,
    /// `sig`: the signature of the INFO nonce.
    pub sig: Option<&'a str>,
}

/// One user of [`Auth::Users`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// User name.
    pub name: String,
    /// Password, plain or a bcrypt hash.
    pub password: String,
}

impl Auth {
    /// True when any secret is stored in plain text (nats-server warns).
    pub fn has_plain_secrets(&self) -> bool {
        match self {
            Auth::Token(t) => !is_bcrypt(t),
            Auth::Users(users) => users.iter().any(|u| !is_bcrypt(&u.password)),
            Auth::Identities(ids) => ids.iter().any(|i| match &i.login {
                crate::auth::Login::Password(u) => !is_bcrypt(&u.password),
                crate::auth::Login::Nkey(_) => false,
            }),
        }
    }

    /// True when INFO must carry a nonce (an nkey user is configured).
    pub fn needs_nonce(&self) -> bool {
        matches!(self, Auth::Identities(ids)
            if ids.iter().any(|i| matches!(i.login, crate::auth::Login::Nkey(_))))
    }

    /// Checks CONNECT's credentials.
    pub fn allows(&self, user: Option<&str>, pass: Option<&str>, token: Option<&str>) -> bool {
        let creds = Credentials {
            user,
            pass,
            token,
            ..Credentials::default()
        };
        self.authenticate(&creds, None).is_some()
    }

    /// Checks CONNECT's credentials (`nonce`: the one sent in INFO); on
    /// success, the user's permissions (`None` = unrestricted). As
    /// nats-server: a CONNECT with an `nkey` is judged by it alone when nkey
    /// users are configured.
    pub fn authenticate(
        &self,
        creds: &Credentials<'_>,
        nonce: Option<&str>,
    ) -> Option<Option<&crate::auth::Permissions>> {
        self.authenticate_account(creds, nonce).map(|(p, _)| p)
    }

    /// As [`Auth::authenticate`], with the user's account (`None` = `$G`).
    pub fn authenticate_account(
        &self,
        creds: &Credentials<'_>,
        nonce: Option<&str>,
    ) -> Option<(Option<&crate::auth::Permissions>, Option<&str>)> {
        use crate::auth::Login;
        let password = |found: Option<&User>| match (found, creds.pass) {
            (Some(u), Some(pass)) => secret_matches(pass, &u.password),
            _ => false,
        };
        match self {
            Auth::Token(expected) => creds
                .token
                .is_some_and(|t| secret_matches(t, expected))
                .then_some((None, None)),
            Auth::Users(users) => {
                let user = creds.user?;
                password(users.iter().find(|u| u.name == user)).then_some((None, None))
            }
            Auth::Identities(ids) => {
                if let Some(nkey) = creds.nkey.filter(|k| !k.is_empty())
                    && self.needs_nonce()
                {
                    let id = ids
                        .iter()
                        .find(|i| matches!(&i.login, Login::Nkey(k) if k == nkey))?;
                    let (Some(sig), Some(nonce)) = (creds.sig, nonce) else {
                        return None;
                    };
                    return crate::auth::verify_nkey(nkey, nonce.as_bytes(), sig)
                        .then_some((id.permissions.as_ref(), id.account.as_deref()));
                }
                let user = creds.user?;
                let id = ids
                    .iter()
                    .find(|i| matches!(&i.login, Login::Password(u) if u.name == user))?;
                let Login::Password(u) = &id.login else {
                    return None;
                };
                password(Some(u)).then_some((id.permissions.as_ref(), id.account.as_deref()))
            }
        }
    }
}

fn is_bcrypt(secret: &str) -> bool {
    secret.starts_with("$2a$") || secret.starts_with("$2b$") || secret.starts_with("$2y$")
}

/// Compares a presented secret with a stored one: bcrypt when stored as a
/// hash, otherwise in constant time.
fn secret_matches(given: &str, stored: &str) -> bool {
    if is_bcrypt(stored) {
        bcrypt::verify(given, stored).unwrap_or(false)
    } else {
        use subtle::ConstantTimeEq;
        given.len() == stored.len() && bool::from(given.as_bytes().ct_eq(stored.as_bytes()))
    }
}

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
        if account == crate::account::GLOBAL {
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
