//! TLS for client connections, checked against nats-server 2.15.1 wherever
//! the two can be compared: async-nats over TLS (upgrade after a plain INFO,
//! and `handshake_first`), mutual TLS, what a plain-text client gets (the
//! same bytes: INFO, then the connection closes without a reply), the
//! handshake timeout, `/varz`, nats-py with an `ssl.SSLContext`, and the
//! binary's `tls {}` block and `--tls*` flags.
//!
//! Certificates are made at test time ([`TestPki`]: a CA, a server
//! certificate for 127.0.0.1 and localhost, a client certificate, and one
//! from an unrelated CA).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bus_embedded_server::{ServerConfig, ServerError, ServerHandle, TlsConfig, start};
use futures::StreamExt;
use nats_test_server::tls::TestPki;
use nats_test_server::{NatsServer, ServerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_angzarr-nats-server");

#[derive(Clone, Copy, Default)]
struct Mode {
    verify: bool,
    handshake_first: bool,
    /// Handshake timeout; `None` = the default (2 s).
    timeout: Option<Duration>,
    /// With `handshake_first`: the fallback delay, as the config file
    /// says it (`auto`, `"300ms"`) and as a duration.
    fallback: Option<(&'static str, Duration)>,
}

async fn ours(pki: &TestPki, mode: Mode) -> ServerHandle {
    let mut tls = TlsConfig::new(pki.server_cert(), pki.server_key());
    if mode.verify {
        tls.ca_file = Some(pki.ca_file());
        tls.verify = true;
    }
    tls.handshake_first = mode.handshake_first;
    tls.handshake_first_fallback = mode.fallback.map(|(_, d)| d);
    if let Some(t) = mode.timeout {
        tls.timeout = t;
    }
    start(ServerConfig {
        port: 0,
        http_port: Some(0),
        tls: Some(tls),
        ..ServerConfig::default()
    })
    .await
    .expect("our server starts with TLS")
}

async fn reference(pki: &TestPki, mode: Mode) -> NatsServer {
    let mut block = pki.server_block(mode.verify, mode.handshake_first);
    if let Some((text, _)) = mode.fallback {
        block = block.replace("handshake_first: true", &format!("handshake_first: {text}"));
    }
    if let Some(t) = mode.timeout {
        // Inside the block: before its closing brace.
        let end = block.rfind('}').expect("block end");
        block.insert_str(end, &format!("  timeout: {}\n", t.as_secs_f64()));
    }
    NatsServer::start_with(ServerOptions {
        extra_config: Some(block),
        ..ServerOptions::core()
    })
    .await
}

/// Both servers' client addresses (`host:port`), ours first.
struct Pair {
    ours: ServerHandle,
    reference: NatsServer,
}

impl Pair {
    async fn start(pki: &TestPki, mode: Mode) -> Pair {
        Pair {
            ours: ours(pki, mode).await,
            reference: reference(pki, mode).await,
        }
    }

    fn addrs(&self) -> [(&'static str, String); 2] {
        [
            ("our server", self.ours.addr().to_string()),
            (
                "nats-server",
                format!("127.0.0.1:{}", self.reference.port()),
            ),
        ]
    }
}

#[derive(Clone, Copy)]
enum ClientCert {
    None,
    Trusted,
    Stranger,
}

async fn connect(
    pki: &TestPki,
    addr: &str,
    cert: ClientCert,
    tls_first: bool,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    let mut options = async_nats::ConnectOptions::new()
        .add_root_certificates(pki.ca_file())
        .require_tls(true)
        .connection_timeout(Duration::from_secs(5));
    options = match cert {
        ClientCert::None => options,
        ClientCert::Trusted => options.add_client_certificate(pki.client_cert(), pki.client_key()),
        ClientCert::Stranger => {
            options.add_client_certificate(pki.stranger_cert(), pki.stranger_key())
        }
    };
    if tls_first {
        options = options.tls_first();
    }
    options.connect(format!("nats://{addr}")).await
}

/// Subscribes, publishes, receives; and a request/reply round trip.
async fn pub_sub_works(client: &async_nats::Client, what: &str) {
    let mut sub = client.subscribe("tls.test").await.expect("subscribe");
    client.flush().await.expect("flush");
    client
        .publish("tls.test", "over tls".into())
        .await
        .expect("publish");
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap_or_else(|_| panic!("{what}: no message within 5 s"))
        .expect("subscription open");
    assert_eq!(&msg.payload[..], b"over tls", "{what}");

    let mut service = client.subscribe("tls.svc").await.expect("subscribe svc");
    let responder = client.clone();
    let answer = tokio::spawn(async move {
        if let Some(m) = service.next().await
            && let Some(reply) = m.reply
        {
            let _ = responder.publish(reply, "pong".into()).await;
            let _ = responder.flush().await;
        }
    });
    client.flush().await.expect("flush");
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        client.request("tls.svc", "ping".into()),
    )
    .await
    .unwrap_or_else(|_| panic!("{what}: no reply within 5 s"))
    .unwrap_or_else(|e| panic!("{what}: request: {e}"));
    assert_eq!(&reply.payload[..], b"pong", "{what}");
    let _ = answer.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_nats_over_tls_pub_sub_and_request() {
    let pki = TestPki::generate();
    let pair = Pair::start(&pki, Mode::default()).await;
    for (name, addr) in pair.addrs() {
        let client = connect(&pki, &addr, ClientCert::None, false)
            .await
            .unwrap_or_else(|e| panic!("{name}: TLS connect: {e}"));
        assert!(client.server_info().tls_required, "{name}: tls_required");
        pub_sub_works(&client, name).await;
    }
    // The same, on the same server, for two connections crossing each other.
    let a = connect(&pki, &pair.ours.addr().to_string(), ClientCert::None, false)
        .await
        .expect("a");
    let b = connect(&pki, &pair.ours.addr().to_string(), ClientCert::None, false)
        .await
        .expect("b");
    let mut sub = b.subscribe("cross").await.expect("sub");
    // async-nats' flush() is not a round trip: a message to itself is (the
    // server has then processed the SUB before it).
    let inbox = b.new_inbox();
    let mut barrier = b.subscribe(inbox.clone()).await.expect("sub inbox");
    b.publish(inbox, "barrier".into()).await.expect("pub inbox");
    tokio::time::timeout(Duration::from_secs(5), barrier.next())
        .await
        .expect("barrier message in time")
        .expect("open");
    for i in 0..1000 {
        a.publish("cross", format!("m{i}").into())
            .await
            .expect("pub");
    }
    a.flush().await.expect("flush");
    for i in 0..1000 {
        let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("message in time")
            .expect("open");
        assert_eq!(
            String::from_utf8_lossy(&m.payload),
            format!("m{i}"),
            "message {i} (connects: a {}, b {})",
            a.statistics()
                .connects
                .load(std::sync::atomic::Ordering::Relaxed),
            b.statistics()
                .connects
                .load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    pair.ours.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_first_with_async_nats_tls_first() {
    let pki = TestPki::generate();
    let mode = Mode {
        handshake_first: true,
        ..Mode::default()
    };
    let pair = Pair::start(&pki, mode).await;
    for (name, addr) in pair.addrs() {
        let client = connect(&pki, &addr, ClientCert::None, true)
            .await
            .unwrap_or_else(|e| panic!("{name}: tls_first connect: {e}"));
        assert!(client.server_info().tls_required, "{name}");
        pub_sub_works(&client, name).await;
        // Without tls_first the client waits for a plain INFO that never
        // comes: it fails (both servers).
        let plain_first = connect(&pki, &addr, ClientCert::None, false).await;
        assert!(
            plain_first.is_err(),
            "{name}: a client not using handshake first connected"
        );
    }
    pair.ours.shutdown(Duration::from_secs(2)).await;
}

/// Connects in plain text and waits (up to 5 s) for the INFO line: how
/// long it took and what it said.
async fn wait_for_plain_info(addr: &str) -> (Duration, Option<serde_json::Value>) {
    let mut s = TcpStream::connect(addr).await.expect("tcp connect");
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(2).any(|w| w == b"\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return (started.elapsed(), None),
        }
    }
    let elapsed = started.elapsed();
    let end = got
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(got.len());
    let line = String::from_utf8_lossy(&got[..end]).into_owned();
    let info = line
        .strip_prefix("INFO ")
        .and_then(|j| serde_json::from_str(j.trim()).ok());
    (elapsed, info)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_first_fallback_serves_tls_first_and_plain_info_clients() {
    let pki = TestPki::generate();
    for fallback in [
        ("auto", Duration::from_millis(50)),
        ("\"300ms\"", Duration::from_millis(300)),
    ] {
        let mode = Mode {
            handshake_first: true,
            fallback: Some(fallback),
            ..Mode::default()
        };
        let pair = Pair::start(&pki, mode).await;
        for (name, addr) in pair.addrs() {
            let what = format!("{name} with handshake_first: {}", fallback.0);
            // A TLS-first client starts the handshake at once.
            let first = connect(&pki, &addr, ClientCert::None, true)
                .await
                .unwrap_or_else(|e| panic!("{what}: tls_first connect: {e}"));
            assert!(first.server_info().tls_required, "{what}");
            pub_sub_works(&first, &what).await;
            // A client that waits for INFO gets it after the delay, in plain
            // text, and upgrades as usual.
            let plain = connect(&pki, &addr, ClientCert::None, false)
                .await
                .unwrap_or_else(|e| panic!("{what}: INFO-first connect: {e}"));
            assert!(plain.server_info().tls_required, "{what}");
            pub_sub_works(&plain, &what).await;
            let (took, info) = wait_for_plain_info(&addr).await;
            let info = info.unwrap_or_else(|| panic!("{what}: no plain INFO after the delay"));
            assert_eq!(info["tls_required"], true, "{what}: {info}");
            assert!(
                took >= fallback.1.mul_f64(0.8),
                "{what}: INFO after {took:?}, before the delay"
            );
            assert!(
                took < fallback.1 + Duration::from_secs(1),
                "{what}: INFO after {took:?}"
            );
            // A plain-text CONNECT after that INFO is still closed: TLS is
            // required.
            let got = plain_session(&addr, Duration::from_secs(2), PLAIN_CONNECT).await;
            assert!(got.info.is_some(), "{what}: no INFO");
            assert!(got.closed, "{what}: a plain CONNECT was let in");
            first.drain().await.ok();
            plain.drain().await.ok();
        }
        pair.ours.shutdown(Duration::from_secs(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let pki = TestPki::generate();
    let mode = Mode {
        verify: true,
        ..Mode::default()
    };
    let pair = Pair::start(&pki, mode).await;
    for (name, addr) in pair.addrs() {
        let none = connect(&pki, &addr, ClientCert::None, false).await;
        assert!(none.is_err(), "{name}: connected without a client cert");
        let stranger = connect(&pki, &addr, ClientCert::Stranger, false).await;
        assert!(
            stranger.is_err(),
            "{name}: connected with a certificate of another CA"
        );
        let client = connect(&pki, &addr, ClientCert::Trusted, false)
            .await
            .unwrap_or_else(|e| panic!("{name}: mTLS connect: {e}"));
        pub_sub_works(&client, name).await;
    }
    // handshake_first with verification too.
    let hf = ours(
        &pki,
        Mode {
            verify: true,
            handshake_first: true,
            ..Mode::default()
        },
    )
    .await;
    let addr = hf.addr().to_string();
    assert!(
        connect(&pki, &addr, ClientCert::None, true).await.is_err(),
        "handshake_first + verify: connected without a client cert"
    );
    let client = connect(&pki, &addr, ClientCert::Trusted, true)
        .await
        .expect("handshake_first + verify with a client cert");
    pub_sub_works(&client, "handshake_first + verify").await;
    hf.shutdown(Duration::from_secs(2)).await;
    pair.ours.shutdown(Duration::from_secs(2)).await;
}

/// What a plain-text client sees: the INFO line (parsed) and every byte
/// after it until the server closes (`closed`) or 5 s pass.
struct PlainSession {
    info: Option<serde_json::Value>,
    after_info: Vec<u8>,
    closed: bool,
    elapsed: Duration,
}

/// Connects in plain text, reads INFO (if any comes within `info_wait`),
/// writes `send`, then reads until the connection closes.
async fn plain_session(addr: &str, info_wait: Duration, send: &[u8]) -> PlainSession {
    let mut s = TcpStream::connect(addr).await.expect("tcp connect");
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut closed = false;
    let mut info = None;
    let info_deadline = tokio::time::Instant::now() + info_wait;
    while !got.windows(2).any(|w| w == b"\r\n") {
        match tokio::time::timeout_at(info_deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    if let Some(end) = got.windows(2).position(|w| w == b"\r\n") {
        let line = String::from_utf8_lossy(&got[..end]).into_owned();
        let json = line.strip_prefix("INFO ").expect("an INFO line").trim();
        info = Some(serde_json::from_str(json).expect("INFO json"));
        got.drain(..end + 2);
    }
    if !closed && !send.is_empty() {
        let _ = s.write_all(send).await;
    }
    while !closed {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => closed = true,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    PlainSession {
        info,
        after_info: got,
        closed,
        elapsed: started.elapsed(),
    }
}

const PLAIN_CONNECT: &[u8] = b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPING\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_client_is_refused_like_nats_server() {
    let pki = TestPki::generate();
    for mode in [
        Mode::default(),
        Mode {
            verify: true,
            ..Mode::default()
        },
    ] {
        let pair = Pair::start(&pki, mode).await;
        let mut seen = Vec::new();
        for (name, addr) in pair.addrs() {
            let got = plain_session(&addr, Duration::from_secs(5), PLAIN_CONNECT).await;
            let info = got.info.unwrap_or_else(|| panic!("{name}: no plain INFO"));
            assert_eq!(info["tls_required"], true, "{name}: {info}");
            assert_eq!(
                info.get("tls_verify").cloned(),
                mode.verify.then_some(serde_json::Value::Bool(true)),
                "{name}: {info}"
            );
            assert!(got.closed, "{name}: still open after a plain CONNECT");
            seen.push((name, got.after_info));
        }
        // nats-server sends nothing after INFO (no -ERR, no TLS alert).
        assert_eq!(
            seen[0].1,
            seen[1].1,
            "bytes after INFO differ: ours {:?}, nats-server {:?}",
            String::from_utf8_lossy(&seen[0].1),
            String::from_utf8_lossy(&seen[1].1)
        );
        assert!(seen[0].1.is_empty(), "{:?}", seen[0].1);
        pair.ours.shutdown(Duration::from_secs(2)).await;
    }

    // handshake_first: no plain INFO at all, and a plain CONNECT is closed.
    let pair = Pair::start(
        &pki,
        Mode {
            handshake_first: true,
            ..Mode::default()
        },
    )
    .await;
    for (name, addr) in pair.addrs() {
        let got = plain_session(&addr, Duration::from_millis(300), PLAIN_CONNECT).await;
        assert!(got.info.is_none(), "{name}: sent a plain INFO");
        assert!(got.closed, "{name}: still open");
        assert!(got.after_info.is_empty(), "{name}: {:?}", got.after_info);
    }
    pair.ours.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_timeout_closes_a_client_that_never_starts_tls() {
    let pki = TestPki::generate();
    let timeout = Duration::from_millis(500);
    let pair = Pair::start(
        &pki,
        Mode {
            timeout: Some(timeout),
            ..Mode::default()
        },
    )
    .await;
    for (name, addr) in pair.addrs() {
        // Reads INFO, then sends nothing.
        let got = plain_session(&addr, Duration::from_secs(5), b"").await;
        assert!(got.info.is_some(), "{name}: no INFO");
        assert!(got.closed, "{name}: not closed after {:?}", got.elapsed);
        assert!(got.after_info.is_empty(), "{name}: {:?}", got.after_info);
        assert!(
            got.elapsed >= timeout - Duration::from_millis(50)
                && got.elapsed < timeout + Duration::from_secs(2),
            "{name}: closed after {:?} (timeout {timeout:?})",
            got.elapsed
        );
    }
    // The connection is gone from the server's count.
    let deadline = Instant::now() + Duration::from_secs(2);
    while pair.ours.connections() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(pair.ours.connections(), 0);
    pair.ours.shutdown(Duration::from_secs(2)).await;
}

fn varz_tls(port: u16) -> serde_json::Value {
    let (status, body) = nats_test_server::http_get(port, "/varz").expect("GET /varz");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("varz json");
    serde_json::json!({
        "tls_required": v.get("tls_required"),
        "tls_verify": v.get("tls_verify"),
        "tls_timeout": v.get("tls_timeout"),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn varz_reports_tls_like_nats_server() {
    let pki = TestPki::generate();
    for mode in [
        Mode::default(),
        Mode {
            verify: true,
            timeout: Some(Duration::from_millis(1500)),
            ..Mode::default()
        },
    ] {
        let pair = Pair::start(&pki, mode).await;
        let ours = varz_tls(pair.ours.monitor_port().expect("monitoring on"));
        let theirs = varz_tls(pair.reference.monitor_port());
        assert_eq!(ours, theirs);
        assert_eq!(ours["tls_required"], true);
        pair.ours.shutdown(Duration::from_secs(2)).await;
    }
}

#[tokio::test]
async fn start_refuses_unusable_tls_files() {
    let pki = TestPki::generate();
    let missing = pki.dir().join("nope.pem");
    let cases = [
        TlsConfig::new(&missing, pki.server_key()),
        TlsConfig::new(pki.server_cert(), &missing),
        // A certificate where the key should be.
        TlsConfig::new(pki.server_cert(), pki.server_cert()),
        TlsConfig {
            verify: true,
            ..TlsConfig::new(pki.server_cert(), pki.server_key())
        },
        TlsConfig {
            ca_file: Some(missing.clone()),
            ..TlsConfig::new(pki.server_cert(), pki.server_key())
        },
    ];
    for tls in cases {
        let shown = format!("{tls:?}");
        match start(ServerConfig {
            port: 0,
            tls: Some(tls),
            ..ServerConfig::default()
        })
        .await
        {
            Err(ServerError::Tls(e)) => assert!(!e.to_string().is_empty(), "{shown}"),
            Err(e) => panic!("{shown}: unexpected error {e}"),
            Ok(_) => panic!("{shown}: started"),
        }
    }
}

// ---------------------------------------------------------------------------
// nats-py
// ---------------------------------------------------------------------------

/// The scripts exit with this when nats-py is not installed.
const EXIT_NOT_INSTALLED: i32 = 3;

fn run_python_tls(url: &str, pki: &TestPki, client_cert: bool, handshake_first: bool) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python/tls.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .arg(url)
        .arg(pki.ca_file())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null());
    if client_cert {
        cmd.arg("--cert")
            .arg(pki.client_cert())
            .arg("--key")
            .arg(pki.client_key());
    }
    if handshake_first {
        cmd.arg("--handshake-first");
    }
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run python3 ({e}); run `bash scripts/test.sh` to install nats-py")
    });
    let report = format!(
        "{cmd:?}\n--- stdout ---\n{}--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Never skipped: a missing nats-py fails (CI installs it).
    assert_ne!(
        out.status.code(),
        Some(EXIT_NOT_INSTALLED),
        "nats-py is not installed: run `bash scripts/test.sh`\n{report}"
    );
    assert!(out.status.success(), "{report}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed, 0 failed"),
        "{report}"
    );
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_connects_with_tls() {
    let pki = TestPki::generate();
    for mode in [
        Mode::default(),
        Mode {
            verify: true,
            ..Mode::default()
        },
        Mode {
            handshake_first: true,
            ..Mode::default()
        },
    ] {
        let pair = Pair::start(&pki, mode).await;
        for (name, addr) in pair.addrs() {
            let url = format!("tls://{addr}");
            let pki = &pki;
            tokio::task::block_in_place(|| {
                let report = run_python_tls(&url, pki, mode.verify, mode.handshake_first);
                println!("{name}: {report}");
            });
        }
        pair.ours.shutdown(Duration::from_secs(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_connects_to_handshake_first_auto_both_ways() {
    let pki = TestPki::generate();
    let mode = Mode {
        handshake_first: true,
        fallback: Some(("auto", Duration::from_millis(50))),
        ..Mode::default()
    };
    let pair = Pair::start(&pki, mode).await;
    for (name, addr) in pair.addrs() {
        let url = format!("tls://{addr}");
        let pki = &pki;
        // nats-py's default (INFO first, then TLS), and tls_handshake_first.
        for handshake_first in [false, true] {
            tokio::task::block_in_place(|| {
                let report = run_python_tls(&url, pki, false, handshake_first);
                println!("{name} (tls_handshake_first {handshake_first}): {report}");
            });
        }
    }
    pair.ours.shutdown(Duration::from_secs(2)).await;
}

// ---------------------------------------------------------------------------
// The binary: `tls {}` and `--tls*` flags
// ---------------------------------------------------------------------------

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary and returns it with its client address once ready.
fn spawn_binary(args: &[String], dir: &Path) -> (Child, String) {
    let log = dir.join(format!("server-{}.log", args.len()));
    let child = Command::new(BIN)
        .args(args)
        .arg("-l")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the binary");
    let child = Child(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("Server is ready") {
            assert!(
                text.contains("TLS required for client connections"),
                "{text}"
            );
            let addr = text
                .lines()
                .find_map(|l| l.split("Listening for client connections on ").nth(1))
                .expect("listening line")
                .trim()
                .to_owned();
            return (child, addr);
        }
        assert!(Instant::now() < deadline, "not ready:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_takes_the_tls_block_and_the_tls_flags() {
    let pki = TestPki::generate();
    let conf = pki.dir().join("server.conf");
    std::fs::write(
        &conf,
        format!("listen: 127.0.0.1:-1\n{}", pki.server_block(true, false)),
    )
    .expect("write config");
    let (_server, addr) = spawn_binary(&["-c".into(), conf.display().to_string()], pki.dir());
    assert!(connect(&pki, &addr, ClientCert::None, false).await.is_err());
    let client = connect(&pki, &addr, ClientCert::Trusted, false)
        .await
        .expect("mTLS to the binary (config file)");
    pub_sub_works(&client, "binary, tls block").await;

    let flags = vec![
        "-a".to_owned(),
        "127.0.0.1".to_owned(),
        "-p".to_owned(),
        "-1".to_owned(),
        "--tlscert".to_owned(),
        pki.server_cert().display().to_string(),
        "--tlskey".to_owned(),
        pki.server_key().display().to_string(),
        "--tlsverify".to_owned(),
        "--tlscacert".to_owned(),
        pki.ca_file().display().to_string(),
    ];
    let (_server, addr) = spawn_binary(&flags, pki.dir());
    assert!(connect(&pki, &addr, ClientCert::None, false).await.is_err());
    let client = connect(&pki, &addr, ClientCert::Trusted, false)
        .await
        .expect("mTLS to the binary (flags)");
    pub_sub_works(&client, "binary, flags").await;
}

#[test]
fn binary_tls_flag_errors_match_nats_server() {
    let pki = TestPki::generate();
    let cert = pki.server_cert().display().to_string();
    let cases: [&[&str]; 3] = [
        &["--tls"],
        &["--tlsverify", "--tlskey", "k.pem"],
        &["--tls", "--tlscert", &cert],
    ];
    for args in cases {
        let run = |bin: &Path| {
            let out = Command::new(bin)
                .args(["-p", "-1"])
                .args(args)
                .stdin(Stdio::null())
                .output()
                .expect("run");
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            )
        };
        let ours = run(Path::new(BIN));
        let theirs = run(&nats_test_server::nats_server_bin());
        assert_eq!(ours, theirs, "{args:?}");
    }
}
