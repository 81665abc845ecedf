//! The standalone binary behaves the way test harnesses drive nats-server:
//! flags, config file, the log lines they wait for, the ports file, signals.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_angzarr-nats-server");

struct Running {
    child: Child,
    log: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(args: &[&str], dir: &tempfile::TempDir) -> Running {
    let log = dir.path().join("server.log");
    let mut all: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    all.push("-l".to_owned());
    all.push(log.display().to_string());
    let child = Command::new(BIN)
        .args(&all)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    Running { child, log }
}

fn wait_for(path: &PathBuf, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} never appeared in:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `host:port` from the "Listening for client connections on" line.
fn listening_addr(log: &str) -> String {
    log.lines()
        .find_map(|l| l.split("Listening for client connections on ").nth(1))
        .expect("listening line")
        .trim()
        .to_owned()
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "the server did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn random_port_ports_file_ready_line_and_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir_text = dir.path().display().to_string();
    let mut server = spawn(
        &[
            "-a",
            "127.0.0.1",
            "-p",
            "-1",
            "-m",
            "-1",
            "--ports_file_dir",
            &dir_text,
        ],
        &dir,
    );
    let log = wait_for(&server.log, "Server is ready");
    assert!(
        log.contains("Listening for client connections on 127.0.0.1:"),
        "{log}"
    );
    let ports_file = dir
        .path()
        .join(format!("angzarr-nats-server_{}.ports", server.child.id()));
    let ports: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ports_file).expect("ports file"))
            .expect("json");
    let url = ports["nats"][0].as_str().expect("nats url").to_owned();
    assert!(
        ports["monitoring"][0]
            .as_str()
            .is_some_and(|m| m.starts_with("http://127.0.0.1:")),
        "{ports}"
    );
    let client = async_nats::connect(url).await.expect("connect");
    client.flush().await.expect("flush");
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(server.child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
    assert!(wait_exit(&mut server.child).success());
    assert!(
        std::fs::read_to_string(&server.log)
            .unwrap_or_default()
            .contains("Server Exiting")
    );
}

#[tokio::test]
async fn config_file_is_read_and_unsupported_keys_are_warnings_with_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("server.conf");
    std::fs::write(
        &conf,
        "# a comment\nlisten: 127.0.0.1:-1\nserver_name: \"conf-test\"\nmax_payload: 64KB\nfrobnicate: true\n",
    )
    .expect("write conf");
    let conf_text = conf.display().to_string();
    let _server = spawn(&["-c", &conf_text], &dir);
    let log = wait_for(&_server.log, "Server is ready");
    assert!(
        log.contains("frobnicate"),
        "unsupported key not reported: {log}"
    );
    assert!(log.contains(":5"), "line of the unsupported key: {log}");
    let addr = listening_addr(&log);
    let client = async_nats::connect(format!("nats://{addr}"))
        .await
        .expect("connect");
    assert_eq!(client.server_info().max_payload, 64 * 1024);
    assert_eq!(client.server_info().server_name, "conf-test");
}

#[test]
fn test_flag_checks_a_config_and_names_the_bad_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.conf");
    std::fs::write(&good, "port: 4333\n").expect("write");
    let out = Command::new(BIN)
        .args(["-t", "-c"])
        .arg(&good)
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let bad = dir.path().join("bad.conf");
    std::fs::write(&bad, "port: 4333\nhttp {\n  port: \"unterminated\n").expect("write");
    let out = Command::new(BIN)
        .args(["-t", "-c"])
        .arg(&bad)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.conf:3") || stderr.contains("bad.conf:2"),
        "{stderr}"
    );
}

#[test]
fn unknown_flag_is_an_error_naming_it() {
    let out = Command::new(BIN).arg("--bogus").output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("flag provided but not defined: -bogus"));
}

#[tokio::test]
async fn signal_ldm_puts_the_server_in_lame_duck_mode_and_it_exits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = spawn(&["-p", "-1"], &dir);
    wait_for(&server.log, "Server is ready");
    let out = Command::new(BIN)
        .arg("--signal")
        .arg(format!("ldm={}", server.child.id()))
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    assert!(wait_exit(&mut server.child).success());
    assert!(
        std::fs::read_to_string(&server.log)
            .unwrap_or_default()
            .contains("lame duck")
    );
}

#[tokio::test]
async fn dv_logs_connections_and_protocol_ops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = spawn(&["-p", "-1", "-DV"], &dir);
    let log = wait_for(&server.log, "Server is ready");
    let addr = listening_addr(&log);
    let client = async_nats::connect(format!("nats://{addr}"))
        .await
        .expect("connect");
    let _sub = client.subscribe("traced.subject").await.expect("sub");
    client.flush().await.expect("flush");
    let log = wait_for(&server.log, "<<- [SUB traced.subject");
    assert!(log.contains("Client connection created"), "{log}");
    assert!(log.contains("<<- [CONNECT {"), "{log}");
}

#[tokio::test]
async fn dv_traces_connect_with_secrets_redacted_like_nats_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = spawn(
        &["-p", "-1", "-DV", "--user", "app", "--pass", "pa55-Wörd"],
        &dir,
    );
    let log = wait_for(&server.log, "Server is ready");
    let addr = listening_addr(&log);
    let client =
        async_nats::ConnectOptions::with_user_and_password("app".into(), "pa55-Wörd".into())
            .connect(format!("nats://{addr}"))
            .await
            .expect("connect");
    client.flush().await.expect("flush");
    // A raw CONNECT with every secret nats-server redacts, one with an
    // escaped quote inside.
    let mut raw = tokio::net::TcpStream::connect(&addr).await.expect("tcp");
    use tokio::io::AsyncWriteExt;
    raw.write_all(
        b"CONNECT {\"verbose\":false,\"user\":\"app\",\"pass\":\"x\\\"tail-secret\",\"auth_token\":\"tok-secret\",\"sig\":\"sig-secret\",\"nkey\":\"UNKEYSECRET\"}\r\nPING\r\n",
    )
    .await
    .expect("write");
    let log = wait_for(&server.log, "\"nkey\":\"[REDACTED]\"");
    for secret in [
        "pa55-Wörd",
        "tail-secret",
        "tok-secret",
        "sig-secret",
        "UNKEYSECRET",
    ] {
        assert!(!log.contains(secret), "{secret} in the trace:\n{log}");
    }
    assert!(log.contains("\"pass\":\"[REDACTED]\""), "{log}");
    assert!(
        log.contains("\"user\":\"app\""),
        "the user name stays: {log}"
    );
}

#[tokio::test]
async fn user_and_pass_flags_require_credentials_and_warn_about_plain_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = spawn(&["-p", "-1", "--user", "app", "--pass", "s3cret"], &dir);
    let log = wait_for(&server.log, "Server is ready");
    assert!(log.contains("Plaintext passwords detected"), "{log}");
    let addr = listening_addr(&log);
    let url = format!("nats://{addr}");
    let err = async_nats::ConnectOptions::new()
        .connect(&url)
        .await
        .expect_err("no credentials");
    assert_eq!(
        err.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation
    );
    async_nats::ConnectOptions::with_user_and_password("app".into(), "s3cret".into())
        .connect(&url)
        .await
        .expect("credentials");
}

#[tokio::test]
async fn authorization_block_with_users_is_enforced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("auth.conf");
    std::fs::write(
        &conf,
        "listen: 127.0.0.1:-1\nauthorization {\n  users: [\n    {user: alice, password: a1}\n    {user: bob, password: b2}\n  ]\n  timeout: 1\n}\n",
    )
    .expect("write");
    let conf_text = conf.display().to_string();
    let server = spawn(&["-c", &conf_text], &dir);
    let log = wait_for(&server.log, "Server is ready");
    let addr = listening_addr(&log);
    let url = format!("nats://{addr}");
    for (user, pass, ok) in [
        ("alice", "a1", true),
        ("bob", "b2", true),
        ("bob", "a1", false),
    ] {
        let r = async_nats::ConnectOptions::with_user_and_password(user.into(), pass.into())
            .connect(&url)
            .await;
        assert_eq!(r.is_ok(), ok, "{user}/{pass}");
    }
}

/// Runs the binary on `config` and returns its stderr once it exits, which
/// it must do with a failure: a server that wrongly accepts the config
/// would otherwise run forever, so it is killed after a deadline and the
/// test fails naming `what`.
fn refused_start(config: &str, what: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("refused.conf");
    std::fs::write(&conf, config).expect("write");
    let mut child = Command::new(BIN)
        .arg("-c")
        .arg(&conf)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("started without enforcing {what}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    assert!(!out.status.success(), "started without enforcing {what}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn authorization_it_cannot_enforce_makes_it_refuse_to_start() {
    let stderr = refused_start(
        "listen: 127.0.0.1:-1\nauthorization {\n  auth_callout { issuer: \"AABBCC\" }\n  users: [ {user: a, password: b} ]\n}\n",
        "auth_callout",
    );
    assert!(
        stderr.contains("auth_callout") && stderr.contains("line 3"),
        "{stderr}"
    );
}

#[test]
fn operator_mode_keys_it_cannot_honour_and_encryption_at_rest_refuse_to_start() {
    // (config, key, line, what the error says)
    for (config, key, line, says) in [
        (
            "operator: /etc/nats/op.jwt\nresolver: MEMORY\n",
            "operator",
            2,
            "error reading /etc/nats/op.jwt",
        ),
        (
            "operators: [/etc/nats/op.jwt]\nresolver: MEMORY\n",
            "operator",
            2,
            "error reading /etc/nats/op.jwt",
        ),
        (
            "trusted: [O1]\nresolver: MEMORY\n",
            "operator",
            2,
            "error reading O1",
        ),
        ("resolver: MEMORY\n", "resolver", 2, "needs `operator`"),
        (
            "resolver_preload: { A: \"eyJ\" }\n",
            "resolver_preload",
            2,
            "needs `operator`",
        ),
        (
            "operator: eyJh.eyJi.c2ln\nresolver: URL(http://127.0.0.1:9090/jwt/v1/accounts/)\n",
            "resolver",
            3,
            "refusing to start",
        ),
        (
            "operator: eyJh.eyJi.c2ln\nresolver: { type: cache, dir: /tmp/jwt }\n",
            "resolver",
            3,
            "refusing to start",
        ),
        (
            "resolver_pinned_accounts: [A]\n",
            "resolver_pinned_accounts",
            2,
            "refusing to start",
        ),
        (
            "resolver_tls: { cert_file: c }\n",
            "resolver_tls",
            2,
            "refusing to start",
        ),
        (
            "trusted_keys: [O1]\n",
            "trusted_keys",
            2,
            "refusing to start",
        ),
        (
            "jetstream {\n  cipher: chachapoly\n}\n",
            "jetstream.cipher",
            3,
            "refusing to start",
        ),
        (
            "jetstream {\n  key: s3cr3t\n}\n",
            "jetstream.key",
            3,
            "refusing to start",
        ),
        (
            "jetstream {\n  prev_key: old\n}\n",
            "jetstream.prev_key",
            3,
            "refusing to start",
        ),
        (
            "jetstream {\n  tpm: { keys_file: k }\n}\n",
            "jetstream.tpm",
            3,
            "refusing to start",
        ),
    ] {
        let stderr = refused_start(&format!("listen: 127.0.0.1:-1\n{config}"), key);
        assert!(
            stderr.contains(&format!(":{line}: {key}: ")) && stderr.contains(says),
            "{key}: {stderr}"
        );
    }
}
