//! The `embedded` backend: the bundled NATS server with JetStream, started
//! inside this process, and the NATS adapter connected to it.
//!
//! The server binds `[bus.embedded] host:port` (loopback and 4222 by
//! default; port 0 picks a free one) and stores streams under `data_dir`.
//! Other processes on the machine share it by configuring
//! `backend = "nats"` with its URL. The server stops when the bus is closed
//! ([`Bus::close`]) or dropped.
//!
//! With `[bus.embedded] tls_cert_file` / `tls_key_file` the server requires
//! TLS (and, with `tls_verify`, client certificates signed by
//! `tls_ca_file`); the in-process adapter then connects with TLS, trusting
//! `[bus.nats] tls_ca_file` or else `[bus.embedded] tls_ca_file`, and
//! presenting `[bus.nats] tls_cert_file` / `tls_key_file` when set.
//!
//! With `[bus.embedded] user` / `password` (or `token`) the server requires
//! those credentials from every client, so other processes sharing it must
//! authenticate (`[bus.nats] user` / `password`, or `NATS_USER` /
//! `NATS_PASSWORD`); the in-process adapter connects with them, in place of
//! any `[bus.nats]` credentials.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bus_core::{
    AggregateHistory, AppendReceipt, Bus, BusConfig, BusError, Consumer, ConsumerConfig,
    ConsumerInfo, DeadLetter, EventEnvelope, ExpectedVersion, Filter, Receipt, RedriveReport,
    RedriveSelection, Replay, Result, Snapshot, StartPosition, StreamInfo, SubjectLayout,
    Subscription,
};
use bus_embedded_server::jetstream::JetStreamConfig;
use bus_embedded_server::{Auth, ServerConfig, ServerHandle, TlsConfig, User};
use tokio::sync::Mutex;

/// Where `[bus.embedded] console = true` serves the console on the monitoring port.
pub const CONSOLE_PATH: &str = "/console";

/// The console on the monitoring port. The server starts before the bus
/// can connect to it, so the console is set once the bus is up; until then
/// its pages answer 503.
#[derive(Default)]
struct ConsoleMount {
    console: std::sync::OnceLock<Arc<bus_console::Console>>,
}

impl bus_embedded_server::HttpHandler for ConsoleMount {
    fn handle(
        &self,
        request: bus_embedded_server::HttpRequest,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = bus_embedded_server::HttpResponse> + Send>,
    > {
        let Some(console) = self.console.get().cloned() else {
            return Box::pin(std::future::ready(bus_embedded_server::HttpResponse {
                status: 503,
                headers: vec![("content-type".to_owned(), "text/plain".to_owned())],
                body: b"the console is starting\n".to_vec(),
            }));
        };
        let request = bus_console::Request {
            method: request.method,
            path: request.path,
            query: request.query,
            headers: request.headers,
            body: request.body,
        };
        Box::pin(async move {
            let r = console.handle(request).await;
            bus_embedded_server::HttpResponse {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }
        })
    }
}

/// A [`NatsBus`](bus_nats::NatsBus) on a server this process runs.
pub struct EmbeddedBus {
    inner: bus_nats::NatsBus,
    server: Mutex<Option<Running>>,
    url: String,
    monitor_port: Option<u16>,
}

impl EmbeddedBus {
    /// Starts the bundled server per `config.embedded` and connects to it.
    pub async fn start(config: &BusConfig) -> Result<EmbeddedBus> {
        let e = &config.embedded;
        std::fs::create_dir_all(&e.data_dir).map_err(|err| {
            BusError::Unavailable(format!(
                "[bus.embedded] data_dir = {:?}: cannot create it: {err}",
                e.data_dir.display().to_string()
            ))
        })?;
        let console = e.console.then(|| Arc::new(ConsoleMount::default()));
        let server_config = ServerConfig {
            http_mount: console.as_ref().map(|c| bus_embedded_server::HttpMount {
                prefix: CONSOLE_PATH.to_owned(),
                handler: Arc::clone(c) as Arc<dyn bus_embedded_server::HttpHandler>,
            }),
            host: e.host.clone(),
            port: e.port,
            http_port: e.http_port,
            jetstream: Some(JetStreamConfig {
                store_dir: e.data_dir.clone(),
                ..JetStreamConfig::default()
            }),
            tls: tls_config(e),
            auth: auth_config(e),
            ..ServerConfig::default()
        };
        let runtime = server_runtime()?;
        let started = match runtime
            .spawn(bus_embedded_server::start(server_config))
            .await
        {
            Ok(started) => started,
            Err(err) => {
                runtime.shutdown_background();
                return Err(BusError::Unavailable(format!(
                    "the embedded server could not start: {err}"
                )));
            }
        };
        let handle = match started {
            Ok(handle) => handle,
            Err(err) => {
                runtime.shutdown_background();
                return Err(BusError::Unavailable(format!(
                    "the embedded server could not start ({err}); if another process already runs \
                 it on this port, configure backend = \"nats\" with its URL, or set \
                 [bus.embedded] port = 0 for a free port"
                )));
            }
        };
        let server = Running { handle, runtime };
        let url = server.handle.client_url();
        let monitor_port = server.handle.monitor_port();
        let mut nats_config = config.clone();
        nats_config.nats.url = url.clone();
        nats_config.nats.jetstream = true;
        if e.user.is_some() || e.token.is_some() {
            // The in-process connection presents the credentials the server requires.
            nats_config.nats.user.clone_from(&e.user);
            nats_config.nats.password.clone_from(&e.password);
            nats_config.nats.token.clone_from(&e.token);
            nats_config.nats.credentials_file = None;
        }
        if e.tls_enabled() {
            nats_config.nats.tls_required = true;
            if nats_config.nats.tls_ca_file.is_none() {
                nats_config.nats.tls_ca_file.clone_from(&e.tls_ca_file);
            }
        }
        let inner = match bus_nats::NatsBus::connect_bundled(&nats_config).await {
            Ok(b) => b,
            Err(err) => {
                server.shutdown(Duration::from_secs(2)).await;
                return Err(err);
            }
        };
        if let Some(mount) = &console {
            let credentials = match (&e.user, &e.password, &e.token) {
                (Some(user), Some(password), _) => Some(bus_console::Credentials::UserPassword {
                    user: user.clone(),
                    password: password.clone(),
                }),
                (_, _, Some(token)) => Some(bus_console::Credentials::Token(token.clone())),
                _ => None,
            };
            let _ = mount.console.set(Arc::new(bus_console::Console::new(
                bus_console::ConsoleConfig {
                    bus: Arc::new(inner.clone()),
                    client: inner.client().clone(),
                    events_stream: nats_config.nats.stream_name.clone(),
                    dead_letter_stream: nats_config.nats.dead_letter_stream_name(),
                    credentials,
                    base: CONSOLE_PATH.to_owned(),
                },
            )));
            if let Some(port) = monitor_port {
                tracing::info!(
                    "operator console at http://{}:{port}{CONSOLE_PATH}/",
                    e.host
                );
            }
        }
        Ok(EmbeddedBus {
            inner,
            server: Mutex::new(Some(server)),
            url,
            monitor_port,
        })
    }

    /// The URL other processes use to share this server (`backend = "nats"`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The monitoring port the server bound (`/metrics`, `/healthz` ...),
    /// when `[bus.embedded] http_port` is set (0 picks a free one).
    pub fn monitor_port(&self) -> Option<u16> {
        self.monitor_port
    }
}

/// The credentials the bundled server requires from every client, from
/// `[bus.embedded] user` / `password` or `token` (plain text: the in-process
/// adapter presents them too).
fn auth_config(e: &bus_core::config::EmbeddedConfig) -> Option<Auth> {
    if let Some(token) = &e.token {
        return Some(Auth::Token(token.clone()));
    }
    let (Some(user), Some(password)) = (&e.user, &e.password) else {
        return None;
    };
    Some(Auth::Users(vec![User {
        name: user.clone(),
        password: password.clone(),
    }]))
}

/// The bundled server's TLS settings from `[bus.embedded]`.
fn tls_config(e: &bus_core::config::EmbeddedConfig) -> Option<TlsConfig> {
    let (Some(cert), Some(key)) = (&e.tls_cert_file, &e.tls_key_file) else {
        return None;
    };
    let mut tls = TlsConfig::new(cert, key);
    tls.ca_file.clone_from(&e.tls_ca_file);
    tls.verify = e.tls_verify;
    Some(tls)
}

/// The bundled server on its own threads: a multi-threaded tokio runtime
/// with a worker per core (as nats-server runs a thread per core), not the
/// application's. Sharing the application's workers, every round trip of
/// the bus's own requests (pulls of a replay, acks of a consumer) waited
/// for the application's tasks on the same threads, and the server's
/// connection, consumer and writer tasks for the bus client's; its own
/// threads also keep an application that blocks its workers from stalling
/// the server (docs/benchmarks.md, "The Bus read paths").
struct Running {
    handle: ServerHandle,
    runtime: tokio::runtime::Runtime,
}

fn server_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .thread_name("bus-embedded-server")
        .enable_all()
        .build()
        .map_err(|err| {
            BusError::Unavailable(format!(
                "the embedded server's threads could not start: {err}"
            ))
        })
}

impl Running {
    /// Stops the server (on its threads) and then its runtime.
    async fn shutdown(self, grace: Duration) {
        let Running { handle, runtime } = self;
        let _ = runtime.spawn(handle.shutdown(grace)).await;
        // Not a blocking drop: this may run on an async worker.
        runtime.shutdown_background();
    }

    /// The same from a `Drop`: on a thread of its own, which may block.
    fn shutdown_detached(self, grace: Duration) {
        let Running { handle, runtime } = self;
        let stopping = std::thread::Builder::new()
            .name("bus-embedded-server-stop".to_owned())
            .spawn(move || {
                runtime.block_on(handle.shutdown(grace));
                drop(runtime);
            });
        if let Err(e) = stopping {
            tracing::warn!("the embedded server could not be stopped cleanly: {e}");
        }
    }
}

impl Drop for EmbeddedBus {
    fn drop(&mut self) {
        if let Some(server) = self.server.get_mut().take() {
            server.shutdown_detached(Duration::from_secs(2));
        }
    }
}

#[async_trait]
impl Bus for EmbeddedBus {
    fn backend(&self) -> &'static str {
        "embedded"
    }
    fn layout(&self) -> &SubjectLayout {
        self.inner.layout()
    }
    async fn publish(&self, event: EventEnvelope) -> Result<Receipt> {
        self.inner.publish(event).await
    }
    async fn publish_batch(&self, events: Vec<EventEnvelope>) -> Result<Vec<Receipt>> {
        self.inner.publish_batch(events).await
    }
    async fn subscribe(&self, filter: &Filter) -> Result<Subscription> {
        self.inner.subscribe(filter).await
    }
    async fn consumer(&self, config: ConsumerConfig) -> Result<Consumer> {
        self.inner.consumer(config).await
    }
    async fn consumer_info(&self, name: &str) -> Result<ConsumerInfo> {
        self.inner.consumer_info(name).await
    }
    async fn delete_consumer(&self, name: &str) -> Result<()> {
        self.inner.delete_consumer(name).await
    }
    async fn replay(&self, filter: &Filter, from: StartPosition) -> Result<Replay> {
        self.inner.replay(filter, from).await
    }
    async fn dead_letters(&self, consumer: Option<&str>) -> Result<Vec<DeadLetter>> {
        self.inner.dead_letters(consumer).await
    }
    async fn redrive_dead_letters(
        &self,
        consumer: &str,
        selection: &RedriveSelection,
    ) -> Result<RedriveReport> {
        self.inner.redrive_dead_letters(consumer, selection).await
    }
    async fn stream_info(&self) -> Result<StreamInfo> {
        self.inner.stream_info().await
    }
    async fn append(
        &self,
        expected: ExpectedVersion,
        events: Vec<EventEnvelope>,
    ) -> Result<AppendReceipt> {
        self.inner.append(expected, events).await
    }
    async fn load(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after_version: u64,
    ) -> Result<AggregateHistory> {
        self.inner
            .load(aggregate_type, aggregate_id, after_version)
            .await
    }
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<()> {
        self.inner.save_snapshot(snapshot).await
    }
    async fn load_snapshot(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Option<Snapshot>> {
        self.inner.load_snapshot(aggregate_type, aggregate_id).await
    }
    async fn close(&self) -> Result<()> {
        self.inner.close().await?;
        if let Some(server) = self.server.lock().await.take() {
            server.shutdown(Duration::from_secs(5)).await;
        }
        Ok(())
    }
}

/// Keeps the type usable behind `Arc<dyn Bus>`.
pub(crate) fn boxed(bus: EmbeddedBus) -> Arc<dyn Bus> {
    Arc::new(bus)
}
