//! The server: configuration, the accept loop, shared state, and the handle
//! an embedding program keeps. The WebSocket listener, when configured, has
//! its own accept loop in `websocket`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{GLOBAL_ACCOUNT, ServerConfig};
use crate::outbound::Client;
use crate::session;
use crate::state::{ServerState, Stats};

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
    /// A subject mapping cannot be used (embedders: the configuration
    /// reader checks mappings before this).
    #[error("account {account}: mappings: {error}")]
    Mapping {
        /// The account (`$G` for the top-level mappings).
        account: String,
        /// What is wrong.
        error: crate::mapping::MappingError,
    },
    /// `no_auth_user` names none of `auth`'s users.
    #[error(
        "no_auth_user: \"{0}\" not present as user or nkey in authorization block or account configuration"
    )]
    NoAuthUser(String),
    /// The TLS certificate, key or CA could not be loaded.
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsSetupError),
    /// The WebSocket listener's TLS certificate, key or CA could not be
    /// loaded.
    #[error("websocket TLS: {0}")]
    WebSocketTls(crate::tls::TlsSetupError),
    /// The MQTT listener's TLS certificate, key or CA could not be used.
    #[error("mqtt TLS: {0}")]
    MqttTls(crate::tls::TlsSetupError),
    /// The MQTT listener needs an explicit `server_name`, as in nats-server.
    #[error("mqtt requires server name to be explicitly set")]
    MqttServerNameMustBeSet,
    /// The MQTT listener needs JetStream, as in nats-server.
    #[error("mqtt requires JetStream to be enabled if running in standalone mode")]
    MqttNeedsJetStream,
    /// The WebSocket listener's settings cannot be served.
    #[error("websocket: {0}")]
    WebSocket(#[from] crate::websocket::WebSocketSetupError),
}

/// A running server. Dropping the handle does not stop it; call
/// [`ServerHandle::shutdown`].
pub struct ServerHandle {
    shared: Arc<ServerState>,
    addr: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
    ws: Option<(SocketAddr, tokio::task::JoinHandle<()>)>,
    mqtt: Option<(SocketAddr, tokio::task::JoinHandle<()>)>,
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

    /// The bound WebSocket address, when the WebSocket listener is on.
    pub fn websocket_addr(&self) -> Option<SocketAddr> {
        self.ws.as_ref().map(|(a, _)| *a)
    }

    /// The bound MQTT address, when the MQTT listener is on.
    pub fn mqtt_addr(&self) -> Option<SocketAddr> {
        self.mqtt.as_ref().map(|(a, _)| *a)
    }

    /// `ws://host:port` (or `wss://`) for WebSocket clients, when the
    /// listener is on.
    pub fn websocket_url(&self) -> Option<String> {
        let tls = self
            .shared
            .config
            .websocket
            .as_ref()
            .is_some_and(|w| w.tls.is_some());
        let scheme = if tls { "wss" } else { "ws" };
        self.websocket_addr().map(|a| format!("{scheme}://{a}"))
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
        let deadline = tokio::time::Instant::now() + grace;
        let _ = tokio::time::timeout_at(deadline, self.accept).await;
        if let Some((_, ws)) = self.ws {
            let _ = tokio::time::timeout_at(deadline, ws).await;
        }
        if let Some((_, mqtt)) = self.mqtt {
            let _ = tokio::time::timeout_at(deadline, mqtt).await;
        }
        if let Some(js) = &self.shared.jetstream {
            js.shutdown();
        }
        for a in self.shared.accounts.all() {
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
    pub fn account_jetstream(&self, account: &str) -> Option<Arc<crate::jetstream::JetStream>> {
        if account == crate::config::GLOBAL_ACCOUNT {
            return self.shared.global.jetstream.clone();
        }
        self.shared.accounts.get(account)?.jetstream.clone()
    }
}

/// Binds and starts serving; returns once the listener is bound.
pub async fn start(config: ServerConfig) -> Result<ServerHandle, ServerError> {
    let begun = Instant::now();
    // Certificates first: a bad file must stop the start before anything binds.
    let tls = match &config.tls {
        Some(t) => Some(crate::tls::acceptor(t)?),
        None => None,
    };
    let ws_setup = match &config.websocket {
        Some(w) => {
            let tls = match &w.tls {
                Some(t) => Some(crate::tls::acceptor(t).map_err(ServerError::WebSocketTls)?),
                None => None,
            };
            Some((tls, crate::websocket::OriginRules::new(w)?))
        }
        None => None,
    };
    let (listener, addr) = bind(&config.host, config.port).await?;
    let ws_listener = match &config.websocket {
        Some(w) => Some(bind(&w.host, w.port).await?),
        None => None,
    };
    if config.mqtt.is_some() {
        // As nats-server (QoS 1 and sessions will live in JetStream).
        if config.server_name.is_empty() {
            return Err(ServerError::MqttServerNameMustBeSet);
        }
        if config.jetstream.is_none() {
            return Err(ServerError::MqttNeedsJetStream);
        }
    }
    let mqtt_tls = match config.mqtt.as_ref().and_then(|m| m.tls.as_ref()) {
        Some(t) => Some(crate::tls::acceptor(t).map_err(ServerError::MqttTls)?),
        None => None,
    };
    let mqtt_listener = match &config.mqtt {
        Some(m) => Some(bind(&m.host, m.port).await?),
        None => None,
    };
    let monitor = match config.http_port {
        Some(port) => Some(bind(&config.host, port).await?),
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
    if let Some(name) = &config.no_auth_user
        && config.auth.as_ref().is_none_or(|a| !a.has_user(name))
    {
        return Err(ServerError::NoAuthUser(name.clone()));
    }
    let mappings = compile_mappings(&config)?;
    let (global, accounts) =
        crate::account::build(&config.accounts, config.jetstream.as_ref(), mappings)
            .map_err(ServerError::JetStream)?;
    let jetstream = global.jetstream.clone();
    let shared = Arc::new(ServerState {
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
        port: addr.port(),
        monitor_port: monitor.as_ref().map(|(_, a)| a.port()),
        started: SystemTime::now(),
        jetstream,
        tls,
        ws_port: ws_listener.as_ref().map(|(_, a)| a.port()),
    });
    if let Some((listener, _)) = monitor {
        tokio::spawn(crate::monitor::serve(Arc::clone(&shared), listener));
    }
    let accept = tokio::spawn(accept_loop(Arc::clone(&shared), listener));
    let ws = match (ws_listener, ws_setup) {
        (Some((listener, ws_addr)), Some((tls, rules))) => {
            let task = crate::websocket::accept_loop(Arc::clone(&shared), listener, tls, rules);
            Some((ws_addr, tokio::spawn(task)))
        }
        _ => None,
    };
    let mqtt = mqtt_listener.map(|(listener, mqtt_addr)| {
        let task = crate::mqtt::accept_loop(Arc::clone(&shared), listener, mqtt_tls);
        (mqtt_addr, tokio::spawn(task))
    });
    Ok(ServerHandle {
        shared,
        addr,
        accept,
        ws,
        mqtt,
        ready_after: begun.elapsed(),
    })
}

/// Every account's subject mappings, compiled, by account name (`$G`: the
/// top-level ones); accounts without mappings are absent.
fn compile_mappings(
    config: &ServerConfig,
) -> Result<rustc_hash::FxHashMap<String, crate::mapping::Mappings>, ServerError> {
    let sources = std::iter::once((GLOBAL_ACCOUNT, &config.mappings)).chain(
        config
            .accounts
            .iter()
            .map(|a| (a.name.as_str(), &a.mappings)),
    );
    let mut out = rustc_hash::FxHashMap::default();
    for (account, mappings) in sources {
        let compiled =
            crate::mapping::Mappings::new(mappings).map_err(|error| ServerError::Mapping {
                account: account.to_owned(),
                error,
            })?;
        if let Some(m) = compiled {
            out.insert(account.to_owned(), m);
        }
    }
    Ok(out)
}

/// Binds `host:port` (0: a free port) and says where it is bound.
async fn bind(host: &str, port: u16) -> Result<(TcpListener, SocketAddr), ServerError> {
    let addr = format!("{host}:{port}");
    let bind_error = |source| ServerError::Bind {
        addr: addr.clone(),
        source,
    };
    let listener = TcpListener::bind(&addr).await.map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    Ok((listener, bound))
}

async fn accept_loop(shared: Arc<ServerState>, listener: TcpListener) {
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
                connections.spawn(session::serve(Arc::clone(&shared), client, stream));
            }
            _ = shutdown.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}
