//! nats-py and nats.js, unchanged, against our server: the core scenarios of
//! `compat_async_nats.rs` (`compat.py`, `compat.mjs`) and the JetStream + KV
//! scenarios of `compat_jetstream.rs` (`jetstream.py`, `jetstream.mjs`), and
//! nats.js over WebSocket (`websocket.mjs`: `wsconnect` against the
//! `websocket {}` listener, beside a TCP client; again with
//! `compression: true`, asserting permessage-deflate was negotiated and
//! moving 1 MiB of text each way), nats.js fast-ingest
//! batch publishing (`fast_ingest.mjs`) and KV purge of delete markers
//! older than a threshold (`kv_purge_deletes.py`, `kv_purge_deletes.mjs`),
//! run by the scripts in
//! `tests/clients/` (see their headers for the scenario list).
//!
//! Each script also runs against the reference nats-server, which proves the
//! scripts themselves. The client libraries are installed by
//! `scripts/test.sh` (pip and `npm ci`, versions pinned in
//! `tests/clients/python/requirements.txt` and
//! `tests/clients/node/package-lock.json`); when they are missing the tests
//! fail, they never skip.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bus_embedded_server::jetstream::JetStreamConfig;
use bus_embedded_server::{ServerConfig, start};
use nats_test_server::{NatsServer, ServerOptions};

/// A whole script run (up to 8 scenarios, each bounded by 30 s inside the
/// script; the longest take well under a second each).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);
/// The scripts exit with this when their client library is not installed.
const EXIT_NOT_INSTALLED: i32 = 3;
const INSTALL_HINT: &str = "run `bash scripts/test.sh`, which installs the client libraries";

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

#[derive(Clone, Copy, Debug)]
enum Client {
    Python,
    Node,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Python => "nats-py",
            Client::Node => "nats.js (@nats-io/transport-node)",
        }
    }

    /// Runs `script` of this client with `urls` as its arguments.
    fn command(self, script: Script, urls: &[String]) -> Command {
        let dir = clients_dir();
        let compression = matches!(script, Script::WebSocketDeflate);
        let script = script.file_stem();
        let mut cmd = match self {
            Client::Python => {
                let mut cmd = Command::new("python3");
                cmd.arg(dir.join(format!("python/{script}.py")))
                    .env("PYTHONDONTWRITEBYTECODE", "1")
                    .env("PYTHONUNBUFFERED", "1");
                cmd
            }
            Client::Node => {
                let mut cmd = Command::new("node");
                cmd.arg(dir.join(format!("node/{script}.mjs")));
                cmd
            }
        };
        cmd.args(urls).current_dir(env!("CARGO_MANIFEST_DIR"));
        if compression {
            cmd.env("NATS_WS_COMPRESSION", "on");
        }
        cmd
    }

    /// Panics (never skips) unless the pinned client library is installed.
    fn assert_installed(self) {
        let dir = clients_dir();
        match self {
            Client::Python => {
                let requirements = dir.join("python/requirements.txt");
                let pinned = std::fs::read_to_string(&requirements)
                    .expect("read tests/clients/python/requirements.txt");
                let pinned = pinned
                    .lines()
                    .find_map(|line| line.trim().strip_prefix("nats-py=="))
                    .expect("requirements.txt pins nats-py==VERSION")
                    .trim()
                    .to_owned();
                let out = Command::new("python3")
                    .args([
                        "-c",
                        "import importlib.metadata, nats; \
                         print(importlib.metadata.version('nats-py'))",
                    ])
                    .stdin(Stdio::null())
                    .output()
                    .unwrap_or_else(|e| {
                        panic!("cannot run python3 ({e}): install Python 3; then {INSTALL_HINT}")
                    });
                assert!(
                    out.status.success(),
                    "nats-py is not installed for python3: {INSTALL_HINT} \
                     (python3 -m pip install -r {}).\n{}",
                    requirements.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
                let installed = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                assert_eq!(
                    installed, pinned,
                    "python3 has nats-py {installed}, requirements.txt pins {pinned}: {INSTALL_HINT}"
                );
            }
            Client::Node => {
                let node_dir = dir.join("node");
                let installed = node_dir.join("node_modules/@nats-io/transport-node/package.json");
                assert!(
                    installed.is_file(),
                    "{} is missing: nats.js is not installed; {INSTALL_HINT} \
                     (npm ci --prefix bus-embedded-server/tests/clients/node)",
                    installed.display()
                );
                let version = |path: &Path, pointer: &str| -> String {
                    let text = std::fs::read_to_string(path)
                        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
                    let json: serde_json::Value = serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
                    json.pointer(pointer)
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or_else(|| panic!("{} has no {pointer}", path.display()))
                        .to_owned()
                };
                for package in [
                    "@nats-io/transport-node",
                    "@nats-io/jetstream",
                    "@nats-io/kv",
                    "@nats-io/nats-core",
                    "ws",
                ] {
                    let installed = node_dir.join(format!("node_modules/{package}/package.json"));
                    assert!(
                        installed.is_file(),
                        "{} is missing: {package} is not installed; {INSTALL_HINT} \
                         (npm ci --prefix bus-embedded-server/tests/clients/node)",
                        installed.display()
                    );
                    let locked = version(
                        &node_dir.join("package-lock.json"),
                        &format!(
                            "/packages/node_modules~1{}/version",
                            package.replace('/', "~1")
                        ),
                    );
                    let installed = version(&installed, "/version");
                    assert_eq!(
                        installed, locked,
                        "node_modules has {package} {installed}, package-lock.json \
                         locks {locked}: {INSTALL_HINT}"
                    );
                }
                let out = Command::new("node")
                    .arg("--version")
                    .stdin(Stdio::null())
                    .output()
                    .unwrap_or_else(|e| {
                        panic!("cannot run node ({e}): install Node.js 20+; then {INSTALL_HINT}")
                    });
                assert!(out.status.success(), "node --version failed");
            }
        }
    }
}

/// Which script of a client: the core scenarios, the JetStream ones, or
/// (nats.js only) the WebSocket and fast-ingest ones.
#[derive(Clone, Copy, Debug)]
enum Script {
    Core,
    JetStream,
    WebSocket,
    /// `websocket.mjs` against a listener with `compression: true` (and
    /// `max_payload` 4 MB, for its 1 MiB messages).
    WebSocketDeflate,
    FastIngest,
    KvPurgeDeletes,
}

impl Script {
    fn file_stem(self) -> &'static str {
        match self {
            Script::Core => "compat",
            Script::JetStream => "jetstream",
            Script::WebSocket | Script::WebSocketDeflate => "websocket",
            Script::FastIngest => "fast_ingest",
            Script::KvPurgeDeletes => "kv_purge_deletes",
        }
    }
}

struct Run {
    status: Option<std::process::ExitStatus>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Runs `cmd` to completion or until `timeout`, then kills it.
fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Run {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}; {INSTALL_HINT}"));
    let pipe = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = pipe(Box::new(child.stdout.take().expect("stdout piped")));
    let err = pipe(Box::new(child.stderr.take().expect("stderr piped")));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the script") {
            break Some(status);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Run {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        elapsed: started.elapsed(),
    }
}

/// Runs the client's script against `urls` (the server's client URL; for
/// the WebSocket script its WebSocket URL first) and asserts that every
/// scenario passed.
async fn run_script(client: Client, script: Script, urls: Vec<String>, server: &str) {
    client.assert_installed();
    let cmd = client.command(script, &urls);
    let url = urls.join(" ");
    let shown = format!("{cmd:?}");
    let run = tokio::task::spawn_blocking(move || run_with_timeout(cmd, SCRIPT_TIMEOUT))
        .await
        .expect("script runner");
    let report = format!(
        "{} against {server} ({url}): {shown}\n--- stdout ---\n{}--- stderr ---\n{}",
        client.name(),
        run.stdout,
        run.stderr
    );
    let Some(status) = run.status else {
        panic!("timed out after {:?} and was killed\n{report}", run.elapsed);
    };
    assert_ne!(
        status.code(),
        Some(EXIT_NOT_INSTALLED),
        "the client library is not installed: {INSTALL_HINT}\n{report}"
    );
    assert!(status.success(), "exited with {status}\n{report}");
    let summary = run.stdout.lines().last().unwrap_or_default();
    assert!(
        summary.ends_with(" 0 failed") && run.stdout.contains("ok "),
        "unexpected summary line {summary:?}\n{report}"
    );
    // Shown with --nocapture; the distribution notes are worth a look.
    println!("{report}");
}

async fn against_our_server(client: Client, script: Script) {
    let store = tempfile::tempdir().expect("JetStream store dir");
    let jetstream = match script {
        Script::Core => None,
        Script::JetStream
        | Script::WebSocket
        | Script::WebSocketDeflate
        | Script::FastIngest
        | Script::KvPurgeDeletes => Some(JetStreamConfig {
            store_dir: store.path().to_path_buf(),
            ..JetStreamConfig::default()
        }),
    };
    let deflate = matches!(script, Script::WebSocketDeflate);
    let websocket = matches!(script, Script::WebSocket | Script::WebSocketDeflate).then(|| {
        let mut ws = bus_embedded_server::WebSocketConfig::plain("127.0.0.1", 0);
        ws.compression = deflate;
        ws
    });
    let defaults = ServerConfig::default();
    let server = start(ServerConfig {
        port: 0,
        jetstream,
        websocket,
        max_payload: if deflate {
            4 * 1024 * 1024
        } else {
            defaults.max_payload
        },
        ..defaults
    })
    .await
    .expect("our server starts");
    let urls = server
        .websocket_url()
        .into_iter()
        .chain([server.client_url()])
        .collect();
    run_script(client, script, urls, "our server").await;
    server.shutdown(Duration::from_secs(2)).await;
}

async fn against_nats_server(client: Client, script: Script) {
    let mut options = match script {
        Script::Core => ServerOptions::core(),
        Script::JetStream
        | Script::WebSocket
        | Script::WebSocketDeflate
        | Script::FastIngest
        | Script::KvPurgeDeletes => ServerOptions::default(),
    };
    let mut urls = Vec::new();
    if let Script::WebSocket | Script::WebSocketDeflate = script {
        let port = nats_test_server::free_port();
        options.extra_config = Some(if matches!(script, Script::WebSocketDeflate) {
            format!(
                "max_payload: 4MB\nwebsocket {{ port: {port}, no_tls: true, compression: true }}"
            )
        } else {
            format!("websocket {{ port: {port}, no_tls: true }}")
        });
        urls.push(format!("ws://127.0.0.1:{port}"));
    }
    let reference = NatsServer::start_with(options).await;
    urls.push(reference.url());
    run_script(client, script, urls, "nats-server").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_core_scenarios_pass_against_our_server() {
    against_our_server(Client::Python, Script::Core).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_js_core_scenarios_pass_against_our_server() {
    against_our_server(Client::Node, Script::Core).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_scenarios_pass_against_nats_server() {
    against_nats_server(Client::Python, Script::Core).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_js_scenarios_pass_against_nats_server() {
    against_nats_server(Client::Node, Script::Core).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_jetstream_and_kv_scenarios_pass_against_our_server() {
    against_our_server(Client::Python, Script::JetStream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_js_jetstream_and_kv_scenarios_pass_against_our_server() {
    against_our_server(Client::Node, Script::JetStream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_jetstream_and_kv_scenarios_pass_against_nats_server() {
    against_nats_server(Client::Python, Script::JetStream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_js_jetstream_and_kv_scenarios_pass_against_nats_server() {
    against_nats_server(Client::Node, Script::JetStream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_js_over_websocket_scenarios_pass_against_our_server() {
    against_our_server(Client::Node, Script::WebSocket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_js_over_websocket_scenarios_pass_against_nats_server() {
    against_nats_server(Client::Node, Script::WebSocket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_js_over_compressed_websocket_scenarios_pass_against_our_server() {
    against_our_server(Client::Node, Script::WebSocketDeflate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_js_over_compressed_websocket_scenarios_pass_against_nats_server() {
    against_nats_server(Client::Node, Script::WebSocketDeflate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_js_fast_ingest_batches_pass_against_our_server() {
    against_our_server(Client::Node, Script::FastIngest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_js_fast_ingest_batches_pass_against_nats_server() {
    against_nats_server(Client::Node, Script::FastIngest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_kv_purge_deletes_older_than_passes_against_our_server() {
    against_our_server(Client::Python, Script::KvPurgeDeletes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_js_kv_purge_deletes_older_than_passes_against_our_server() {
    against_our_server(Client::Node, Script::KvPurgeDeletes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_kv_purge_deletes_older_than_passes_against_nats_server() {
    against_nats_server(Client::Python, Script::KvPurgeDeletes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_js_kv_purge_deletes_older_than_passes_against_nats_server() {
    against_nats_server(Client::Node, Script::KvPurgeDeletes).await;
}
