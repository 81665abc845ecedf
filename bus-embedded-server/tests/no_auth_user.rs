//! `no_auth_user`, side by side with nats-server 2.15.1 started from the
//! same configuration text: a client that connects without credentials is
//! that user (its account, its permissions); a client that gives
//! credentials is judged by them (a wrong password is still refused); and
//! the start is refused, with nats-server's words, when the name is no
//! user.

use std::time::Duration;

use bus_embedded_server::{ServerConfig, ServerHandle, cli, options, start};
use futures::StreamExt;
use nats_test_server::{NatsServer, ServerOptions, nats_server_bin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Ours from configuration text, read as the binary reads a `-c` file.
async fn ours(config_text: &str) -> (ServerHandle, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("server.conf");
    std::fs::write(&path, config_text).expect("write config");
    let args = ["-c", &path.display().to_string(), "-p", "-1"].map(str::to_owned);
    let cli = cli::parse_args(args).expect("flags");
    let o = options::from_cli(&cli, ServerConfig::default()).expect("configuration accepted");
    (start(o.config).await.expect("start"), dir)
}

async fn reference(config_text: &str) -> NatsServer {
    NatsServer::start_with(ServerOptions {
        extra_config: Some(config_text.to_owned()),
        ..ServerOptions::core()
    })
    .await
}

fn our_refusal(config_text: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("server.conf");
    std::fs::write(&path, config_text).expect("write config");
    let cli = cli::parse_args(["-c".to_owned(), path.display().to_string()]).expect("flags");
    match options::from_cli(&cli, ServerConfig::default()) {
        Ok(_) => panic!("accepted:\n{config_text}"),
        Err(e) => e.to_string(),
    }
}

/// nats-server's refusal: its error line without `nats-server: `. (Its
/// `-t` config check does not look at `no_auth_user`, so the server is
/// started for real, on a free port, and must exit.)
fn reference_refusal(config_text: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("server.conf");
    std::fs::write(&path, config_text).expect("write config");
    let log = dir.path().join("out.log");
    let out_file = std::fs::File::create(&log).expect("log file");
    let mut child = std::process::Command::new(nats_server_bin())
        .args([
            "-c",
            &path.display().to_string(),
            "-a",
            "127.0.0.1",
            "-p",
            "-1",
        ])
        .stdout(out_file.try_clone().expect("clone"))
        .stderr(out_file)
        .spawn()
        .expect("run nats-server");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let exited = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        exited.is_some_and(|s| !s.success()),
        "nats-server accepted:\n{config_text}\n{text}"
    );
    text.lines()
        .find_map(|l| l.strip_prefix("nats-server: "))
        .unwrap_or_else(|| panic!("no error line in {text}"))
        .to_owned()
}

/// A raw protocol connection.
struct Conn {
    s: TcpStream,
}

impl Conn {
    /// Connects and sends CONNECT with `fields` (JSON members, may be
    /// empty) and a PING; returns the connection and what came back.
    async fn open(addr: &str, fields: &str) -> (Conn, String) {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let mut byte = [0u8; 1];
        let mut info = Vec::new();
        while !info.ends_with(b"\r\n") {
            s.read_exact(&mut byte).await.expect("INFO");
            info.push(byte[0]);
        }
        let sep = if fields.is_empty() { "" } else { "," };
        let mut c = Conn { s };
        c.send(&format!(
            "CONNECT {{\"verbose\":false,\"pedantic\":false{sep}{fields}}}\r\nPING\r\n"
        ))
        .await;
        let answer = c.read().await;
        (c, answer)
    }

    async fn send(&mut self, text: &str) {
        self.s.write_all(text.as_bytes()).await.expect("write");
    }

    /// What arrives until the connection goes quiet (server PINGs left out).
    async fn read(&mut self) -> String {
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match tokio::time::timeout(Duration::from_millis(250), self.s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    out.extend_from_slice(b"<closed>");
                    break;
                }
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
                Err(_) => break,
            }
        }
        String::from_utf8_lossy(&out).replace("PING\r\n", "")
    }
}

fn login(user: &str, pass: &str) -> String {
    format!("\"user\":\"{user}\",\"pass\":\"{pass}\"")
}

const ACCOUNTS: &str = r#"
authorization { users: [ {user: g, password: g} ] }
accounts {
  A: {
    users: [
      {user: a, password: a, permissions: {publish: ["a.>"], subscribe: ["a.>"]}}
      {user: a2, password: a2}
    ]
  }
  B: { users: [ {user: b, password: b} ] }
}
no_auth_user: a
"#;

/// The whole story on one server, step by step: what each connection saw.
async fn story(addr: &str) -> Vec<String> {
    let mut steps = Vec::new();
    // Anonymous: user `a` in account A, with a's permissions.
    let (mut anon, answer) = Conn::open(addr, "").await;
    steps.push(format!("anonymous connect: {answer}"));
    anon.send("SUB a.> 1\r\nSUB b.> 2\r\nPUB b.x 1\r\nx\r\nPING\r\n")
        .await;
    steps.push(format!("anonymous sub/pub: {}", anon.read().await));
    // Empty strings count as no credentials.
    let (_, answer) = Conn::open(addr, "\"user\":\"\",\"pass\":\"\"").await;
    steps.push(format!("empty credentials: {answer}"));
    // Other accounts' and $G's publishes do not reach it; A's do.
    let (mut a2, answer) = Conn::open(addr, &login("a2", "a2")).await;
    steps.push(format!("a2 connect: {answer}"));
    let (mut b, answer) = Conn::open(addr, &login("b", "b")).await;
    steps.push(format!("b connect: {answer}"));
    let (mut g, answer) = Conn::open(addr, &login("g", "g")).await;
    steps.push(format!("g connect: {answer}"));
    a2.send("PUB a.from_a2 1\r\n1\r\nPING\r\n").await;
    b.send("PUB a.from_b 1\r\n2\r\nPING\r\n").await;
    g.send("PUB a.from_g 1\r\n3\r\nPING\r\n").await;
    for (who, c) in [("a2", &mut a2), ("b", &mut b), ("g", &mut g)] {
        steps.push(format!("{who} publish: {}", c.read().await));
    }
    steps.push(format!("anonymous received: {}", anon.read().await));
    // And what the anonymous client publishes stays in A.
    a2.send("SUB a.> 9\r\nPING\r\n").await;
    steps.push(format!("a2 sub: {}", a2.read().await));
    anon.send("PUB a.from_anon 1\r\n4\r\nPING\r\n").await;
    steps.push(format!("anonymous publish: {}", anon.read().await));
    steps.push(format!("a2 received: {}", a2.read().await));
    // Credentials given are judged by themselves.
    for (what, fields) in [
        ("a, wrong password", login("a", "nope")),
        ("unknown user", login("zed", "zed")),
        ("password only", "\"pass\":\"a\"".to_owned()),
        ("token only", "\"auth_token\":\"a\"".to_owned()),
        ("b, right password", login("b", "b")),
    ] {
        let (_, answer) = Conn::open(addr, &fields).await;
        steps.push(format!("{what}: {answer}"));
    }
    steps
}

#[tokio::test]
async fn a_client_without_credentials_is_the_no_auth_user_in_its_account() {
    let theirs = reference(ACCOUNTS).await;
    let (our, _dir) = ours(ACCOUNTS).await;
    let want = story(&format!("127.0.0.1:{}", theirs.port())).await;
    let got = story(&our.addr().to_string()).await;
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        assert_eq!(
            g, w,
            "step {i}:\n  nats-server: {w:?}\n  ours:        {g:?}"
        );
    }
    assert_eq!(got.len(), want.len());
    // What the story must show, whatever nats-server says.
    assert_eq!(got[0], "anonymous connect: PONG\r\n");
    assert!(
        got[1].contains("Permissions Violation for Subscription to \"b.>\"")
            && got[1].contains("Permissions Violation for Publish to \"b.x\""),
        "{}",
        got[1]
    );
    assert_eq!(got[9], "anonymous received: MSG a.from_a2 1 1\r\n1\r\n");
    assert_eq!(got[12], "a2 received: MSG a.from_anon 9 1\r\n4\r\n");
    assert!(got[13].contains("Authorization Violation"), "{}", got[13]);
    assert_eq!(got[17], "b, right password: PONG\r\n");
}

#[tokio::test]
async fn async_nats_without_credentials_lands_in_the_users_account() {
    let theirs = reference(ACCOUNTS).await;
    let (our, _dir) = ours(ACCOUNTS).await;
    for (who, addr) in [
        ("nats-server", format!("127.0.0.1:{}", theirs.port())),
        ("ours", our.addr().to_string()),
    ] {
        let anon = async_nats::connect(&addr).await.expect("anonymous connect");
        let mut sub = anon.subscribe("a.>").await.expect("subscribe");
        anon.flush().await.expect("flush");
        for user in ["a2", "b"] {
            let c = async_nats::ConnectOptions::with_user_and_password(user.into(), user.into())
                .connect(&addr)
                .await
                .expect("connect");
            c.publish(format!("a.{user}"), "x".into())
                .await
                .expect("publish");
            c.flush().await.expect("flush");
        }
        let first = tokio::time::timeout(Duration::from_secs(2), sub.next())
            .await
            .expect("a message")
            .expect("open");
        assert_eq!(first.subject.as_str(), "a.a2", "{who}");
        let more = tokio::time::timeout(Duration::from_millis(300), sub.next()).await;
        assert!(more.is_err(), "{who}: B's message crossed: {more:?}");
    }
}

const NKEY: &str = "UCI2RKP4HOQDGOEJCOF2UEPQBRNSIZNBENTP6UCIYX3NFTUTYZX2APGJ";

#[tokio::test]
async fn an_nkey_no_auth_user_needs_no_signature() {
    let config = format!(
        "accounts {{\n  A: {{ users: [ {{nkey: {NKEY}}}, {{user: a2, password: a2}} ] }}\n  B: {{ users: [ {{user: b, password: b}} ] }}\n}}\nno_auth_user: {NKEY}\n"
    );
    let theirs = reference(&config).await;
    let (our, _dir) = ours(&config).await;
    let mut results = Vec::new();
    for addr in [
        format!("127.0.0.1:{}", theirs.port()),
        our.addr().to_string(),
    ] {
        let (mut anon, answer) = Conn::open(&addr, "").await;
        anon.send("SUB > 1\r\nPING\r\n").await;
        let subscribed = anon.read().await;
        let (mut a2, _) = Conn::open(&addr, &login("a2", "a2")).await;
        let (mut b, _) = Conn::open(&addr, &login("b", "b")).await;
        a2.send("PUB in.a 1\r\n1\r\nPING\r\n").await;
        b.send("PUB in.b 1\r\n2\r\nPING\r\n").await;
        a2.read().await;
        b.read().await;
        // A wrong nkey is not rescued by no_auth_user.
        let (_, wrong) = Conn::open(&addr, "\"nkey\":\"UNKNOWN\",\"sig\":\"x\"").await;
        results.push((answer, subscribed, anon.read().await, wrong));
    }
    assert_eq!(results[1], results[0], "ours vs nats-server");
    assert_eq!(results[1].0, "PONG\r\n");
    assert_eq!(results[1].2, "MSG in.a 1 1\r\n1\r\n");
    assert!(results[1].3.contains("Authorization Violation"));
}

#[tokio::test]
async fn a_no_auth_user_with_a_bcrypt_password_is_refused_as_nats_server_refuses_it() {
    let hash = bcrypt::hash("secret", 4).expect("hash");
    let config = format!(
        "authorization {{ users: [ {{user: h, password: \"{hash}\"}}, {{user: p, password: p}} ] }}\nno_auth_user: h\n"
    );
    let theirs = reference(&config).await;
    let (our, _dir) = ours(&config).await;
    let mut results = Vec::new();
    for addr in [
        format!("127.0.0.1:{}", theirs.port()),
        our.addr().to_string(),
    ] {
        let (_, anon) = Conn::open(&addr, "").await;
        let (_, right) = Conn::open(&addr, &login("h", "secret")).await;
        let (_, wrong) = Conn::open(&addr, &login("h", "nope")).await;
        results.push((anon, right, wrong));
    }
    assert_eq!(results[1], results[0], "ours vs nats-server");
    // nats-server compares the stored hash with itself: never a match.
    assert!(results[1].0.contains("Authorization Violation"));
    assert_eq!(results[1].1, "PONG\r\n");
    assert!(results[1].2.contains("Authorization Violation"));
}

#[test]
fn a_no_auth_user_that_is_no_user_stops_the_start_as_in_nats_server() {
    for config in [
        "no_auth_user: x\n",
        "authorization { user: a, password: b }\nno_auth_user: a\n",
        "authorization { token: abc }\nno_auth_user: a\n",
        "authorization { users: [ {user: a, password: b} ] }\nno_auth_user: c\n",
        "accounts { A: { users: [ {user: a, password: b} ] } }\nno_auth_user: c\n",
    ] {
        let theirs = reference_refusal(config);
        let ours = our_refusal(config);
        assert!(
            ours.ends_with(&theirs),
            "config:\n{config}\nnats-server: {theirs}\nours:        {ours}"
        );
    }
}

#[test]
fn no_auth_user_inside_an_account_is_refused_as_nats_server_refuses_it() {
    let config = "accounts { A: { users: [ {user: a, password: b} ], no_auth_user: a } }\n";
    let theirs = reference_refusal(config);
    assert!(
        theirs.contains("unknown field \"no_auth_user\""),
        "{theirs}"
    );
    let ours = our_refusal(config);
    assert!(ours.ends_with("unknown field \"no_auth_user\""), "{ours}");
}

#[test]
fn an_embedder_naming_no_configured_user_gets_an_error_not_an_open_server() {
    let config = ServerConfig {
        port: 0,
        no_auth_user: Some("ghost".into()),
        ..ServerConfig::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let err = rt
        .block_on(start(config))
        .err()
        .expect("refused")
        .to_string();
    assert_eq!(
        err,
        "no_auth_user: \"ghost\" not present as user or nkey in authorization block or account configuration"
    );
}

fn nats_py(args: &[&str]) -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients/python/authorization.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "nats-py script failed (nats-py is installed by `bash scripts/test.sh` \
         from tests/clients/python/requirements.txt):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_without_credentials_gets_the_users_permissions() {
    let theirs = reference(ACCOUNTS).await;
    let (our, _dir) = ours(ACCOUNTS).await;
    let mut results = Vec::new();
    for url in [theirs.url(), format!("nats://{}", our.addr())] {
        let url2 = url.clone();
        let (anonymous, denied, allowed) = tokio::task::spawn_blocking(move || {
            (
                nats_py(&[&url2, "anonymous"]),
                nats_py(&[&url2, "denied", "-", "-", "b.x"]),
                nats_py(&[&url2, "denied", "-", "-", "a.x"]),
            )
        })
        .await
        .expect("nats-py");
        results.push((anonymous, denied, allowed));
    }
    assert_eq!(results[1], results[0], "ours vs nats-server");
    assert_eq!(results[1].0.trim(), "connected");
    assert!(
        results[1]
            .1
            .to_lowercase()
            .contains("permissions violation"),
        "{}",
        results[1].1
    );
    assert_eq!(results[1].2.trim(), "still connected: True");
}
