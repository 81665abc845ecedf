//! Accounts as nats-server 2.15.1 has them (`accounts {}`): isolated subject
//! spaces, stream and service exports/imports, JetStream per account. The
//! same configuration text is given to ours (read as the binary reads it)
//! and, for the differential tests, to nats-server.

use std::path::Path;
use std::time::Duration;

use bus_embedded_server::jetstream::JetStreamConfig;
use bus_embedded_server::{ServerConfig, ServerHandle, conf, start};
use nats_test_server::{NatsServer, ServerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Two accounts: A imports B's `b.>` stream with a prefix and B's `b.svc`
/// service as `local.svc`; B imports A's `a.events.>`. A user without an
/// account (`g`) is in `$G`.
const CONFIG: &str = r#"
authorization { users: [ {user: g, password: g} ] }
accounts {
  A: {
    users: [ {user: a, password: a} ]
    jetstream: enabled
    exports: [ {stream: "a.events.>"}, {service: "a.svc.>"} ]
    imports: [
      {stream: {account: B, subject: "b.>"}, prefix: "from_b"}
      {service: {account: B, subject: "b.svc"}, to: "local.svc"}
    ]
  }
  B: {
    users: [ {user: b, password: b} ]
    exports: [ {stream: "b.>"}, {service: "b.svc"} ]
    imports: [ {stream: {account: A, subject: "a.events.>"}} ]
  }
  C: {
    users: [ {user: c, password: c} ]
    jetstream: {max_mem: 1M, max_file: 1G}
  }
}
"#;

/// Our server from configuration text, as the binary reads it.
async fn ours(config_text: &str, store: Option<&Path>) -> ServerHandle {
    let root = conf::parse(config_text, Path::new("test.conf"), &|_| None).expect("config parses");
    let (auth, timeout) = match root.get("authorization") {
        Some(block) => conf::authorization_from_conf(block).expect("authorization accepted"),
        None => (None, None),
    };
    let accounts = match root.get("accounts") {
        Some(block) => conf::accounts_from_conf(block).expect("accounts accepted"),
        None => Vec::new(),
    };
    let auth = conf::merge_users(auth, &accounts).expect("users merge");
    start(ServerConfig {
        port: 0,
        auth,
        auth_timeout: timeout.unwrap_or(Duration::from_secs(2)),
        accounts,
        jetstream: store.map(|dir| JetStreamConfig {
            store_dir: dir.to_path_buf(),
            ..JetStreamConfig::default()
        }),
        ..ServerConfig::default()
    })
    .await
    .expect("start")
}

async fn reference(config_text: &str, jetstream: bool) -> NatsServer {
    NatsServer::start_with(ServerOptions {
        jetstream,
        extra_config: Some(config_text.to_owned()),
        ..ServerOptions::core()
    })
    .await
}

/// A raw protocol connection.
struct Conn {
    s: TcpStream,
}

impl Conn {
    /// Connects as `user` (password = user name), INFO consumed.
    async fn login(addr: &str, user: &str, headers: bool) -> Conn {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let mut byte = [0u8; 1];
        let mut info = Vec::new();
        while !info.ends_with(b"\r\n") {
            s.read_exact(&mut byte).await.expect("INFO");
            info.push(byte[0]);
        }
        let mut c = Conn { s };
        c.send(&format!(
            "CONNECT {{\"verbose\":false,\"pedantic\":false,\"user\":\"{user}\",\"pass\":\"{user}\",\"headers\":{headers},\"no_responders\":{headers}}}\r\nPING\r\n"
        ))
        .await;
        assert_eq!(c.read().await, "PONG\r\n", "login of {user}");
        c
    }

    async fn send(&mut self, text: &str) {
        self.s.write_all(text.as_bytes()).await.expect("write");
    }

    /// What arrives until the connection goes quiet.
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

/// The `_R_.` reply subject in a delivered request.
fn reply_subject(text: &str) -> String {
    text.split_whitespace()
        .find(|t| t.starts_with("_R_."))
        .expect("a _R_ reply subject")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_subject_in_two_accounts_does_not_cross() {
    let server = ours(CONFIG, None).await;
    let addr = server.addr().to_string();
    let mut a = Conn::login(&addr, "a", false).await;
    let mut b = Conn::login(&addr, "b", false).await;
    let mut g = Conn::login(&addr, "g", false).await;
    for c in [&mut a, &mut b, &mut g] {
        c.send("SUB x.y 1\r\nPING\r\n").await;
        assert_eq!(c.read().await, "PONG\r\n");
    }
    b.send("PUB x.y 2\r\nhi\r\nPING\r\n").await;
    assert_eq!(b.read().await, "MSG x.y 1 2\r\nhi\r\nPONG\r\n");
    assert_eq!(a.read().await, "");
    assert_eq!(g.read().await, "");
    g.send("PUB x.y 2\r\ngg\r\nPING\r\n").await;
    assert_eq!(g.read().await, "MSG x.y 1 2\r\ngg\r\nPONG\r\n");
    assert_eq!(a.read().await, "");
    assert_eq!(b.read().await, "");
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_export_reaches_importer_with_prefix_and_not_the_other_way() {
    let server = ours(CONFIG, None).await;
    let addr = server.addr().to_string();
    let mut a = Conn::login(&addr, "a", false).await;
    let mut b = Conn::login(&addr, "b", false).await;
    a.send("SUB > 1\r\nPING\r\n").await;
    assert_eq!(a.read().await, "PONG\r\n");
    b.send("SUB > 1\r\nPING\r\n").await;
    assert_eq!(b.read().await, "PONG\r\n");
    // B's export, with A's prefix; the reply subject passes unchanged.
    b.send("PUB b.foo r.1 2\r\nhi\r\nPING\r\n").await;
    assert_eq!(b.read().await, "MSG b.foo 1 r.1 2\r\nhi\r\nPONG\r\n");
    assert_eq!(a.read().await, "MSG from_b.b.foo 1 r.1 2\r\nhi\r\n");
    // A's export, without a prefix; A's other subjects stay in A.
    a.send("PUB a.events.1 2\r\nev\r\nPUB a.other 2\r\nno\r\nPING\r\n")
        .await;
    assert_eq!(
        a.read().await,
        "MSG a.events.1 1 2\r\nev\r\nMSG a.other 1 2\r\nno\r\nPONG\r\n"
    );
    assert_eq!(b.read().await, "MSG a.events.1 1 2\r\nev\r\n");
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_import_request_reaches_exporter_and_one_reply_returns() {
    let server = ours(CONFIG, None).await;
    let addr = server.addr().to_string();
    let mut a = Conn::login(&addr, "a", true).await;
    let mut b = Conn::login(&addr, "b", false).await;
    b.send("SUB b.svc 1\r\nPING\r\n").await;
    assert_eq!(b.read().await, "PONG\r\n");
    a.send("SUB inbox.1 9\r\nPUB local.svc inbox.1 3\r\nreq\r\nPING\r\n")
        .await;
    assert_eq!(a.read().await, "PONG\r\n");
    let request = b.read().await;
    assert!(request.starts_with("MSG b.svc 1 _R_."), "{request:?}");
    assert!(request.ends_with(" 3\r\nreq\r\n"), "{request:?}");
    let r = reply_subject(&request);
    // Singleton: the first reply goes through, the second does not.
    b.send(&format!(
        "PUB {r} 3\r\nrsp\r\nPUB {r} 4\r\nrsp2\r\nPING\r\n"
    ))
    .await;
    assert_eq!(b.read().await, "PONG\r\n");
    assert_eq!(a.read().await, "MSG inbox.1 9 3\r\nrsp\r\n");
    // No service subscriber: the requester gets no-responders.
    b.send("UNSUB 1\r\nPING\r\n").await;
    assert_eq!(b.read().await, "PONG\r\n");
    a.send("PUB local.svc inbox.1 3\r\nreq\r\nPING\r\n").await;
    assert_eq!(
        a.read().await,
        "HMSG inbox.1 9 41 41\r\nNATS/1.0 503\r\nNats-Subject: local.svc\r\n\r\n\r\nPONG\r\n"
    );
    // B's own clients cannot reach A's subjects by publishing there.
    b.send("PUB inbox.1 2\r\nxx\r\nPING\r\n").await;
    assert_eq!(b.read().await, "PONG\r\n");
    assert_eq!(a.read().await, "");
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_request_carries_the_requesting_account_in_a_header() {
    let server = ours(CONFIG, None).await;
    let addr = server.addr().to_string();
    let mut a = Conn::login(&addr, "a", true).await;
    let mut b = Conn::login(&addr, "b", true).await;
    b.send("SUB b.svc 1\r\nPING\r\n").await;
    assert_eq!(b.read().await, "PONG\r\n");
    a.send("PUB local.svc inbox.1 3\r\nreq\r\n").await;
    let request = b.read().await;
    assert!(request.starts_with("HMSG b.svc 1 _R_."), "{request:?}");
    assert!(
        request.contains("\r\nNats-Request-Info: {\"acc\":\"A\",\"rtt\":"),
        "{request:?}"
    );
    assert!(request.ends_with("\r\n\r\nreq\r\n"), "{request:?}");
    server.shutdown(Duration::from_secs(1)).await;
}

/// `$JS.API.<api>` answered in the account `user` is in.
async fn js_api(addr: &str, user: &str, api: &str, body: &str) -> serde_json::Value {
    let mut c = Conn::login(addr, user, false).await;
    c.send(&format!(
        "SUB _INBOX.js 1\r\nPUB $JS.API.{api} _INBOX.js {}\r\n{body}\r\n",
        body.len()
    ))
    .await;
    let text = c.read().await;
    let json = text
        .split("\r\n")
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON answer to {api} for {user}: {text:?}"));
    serde_json::from_str(json).expect("json")
}

fn stream_names(v: &serde_json::Value) -> Vec<String> {
    v["streams"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_streams_are_per_account_and_survive_a_restart_in_their_own_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ours(CONFIG, Some(dir.path())).await;
    let addr = server.addr().to_string();
    let created = js_api(
        &addr,
        "a",
        "STREAM.CREATE.ORDERS",
        r#"{"name":"ORDERS","subjects":["orders.>"]}"#,
    )
    .await;
    assert!(created["error"].is_null(), "{created}");
    let created = js_api(
        &addr,
        "c",
        "STREAM.CREATE.LOGS",
        r#"{"name":"LOGS","subjects":["logs.>"]}"#,
    )
    .await;
    assert!(created["error"].is_null(), "{created}");
    // A publish in A is stored in A's stream only.
    let mut a = Conn::login(&addr, "a", false).await;
    a.send("SUB ack 1\r\nPUB orders.1 ack 2\r\nhi\r\n").await;
    assert!(a.read().await.contains("\"stream\":\"ORDERS\""));
    assert_eq!(
        stream_names(&js_api(&addr, "a", "STREAM.NAMES", "").await),
        ["ORDERS"]
    );
    assert_eq!(
        stream_names(&js_api(&addr, "c", "STREAM.NAMES", "").await),
        ["LOGS"]
    );
    let missing = js_api(&addr, "c", "STREAM.INFO.ORDERS", "").await;
    assert_eq!(missing["error"]["err_code"], 10059, "{missing}");
    server.shutdown(Duration::from_secs(2)).await;
    assert!(dir.path().join("jetstream/A/streams/ORDERS").is_dir());
    assert!(dir.path().join("jetstream/C/streams/LOGS").is_dir());
    assert!(!dir.path().join("jetstream/$G/streams/ORDERS").exists());

    let server = ours(CONFIG, Some(dir.path())).await;
    let addr = server.addr().to_string();
    let info = js_api(&addr, "a", "STREAM.INFO.ORDERS", "").await;
    assert_eq!(info["state"]["messages"], 1, "{info}");
    assert_eq!(
        stream_names(&js_api(&addr, "c", "STREAM.NAMES", "").await),
        ["LOGS"]
    );
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_without_jetstream_is_answered_like_nats_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reference = reference(CONFIG, true).await;
    let server = ours(CONFIG, Some(dir.path())).await;
    let ref_addr = format!("127.0.0.1:{}", reference.port());
    let our_addr = server.addr().to_string();
    // B has no JetStream; neither has $G once accounts enable it.
    for user in ["b", "g"] {
        for api in [
            "INFO",
            "STREAM.NAMES",
            "STREAM.LIST",
            "STREAM.INFO.X",
            "STREAM.PURGE.X",
            "CONSUMER.LIST.X",
            "CONSUMER.NAMES.X",
            "CONSUMER.CREATE.X.Y",
        ] {
            let want = js_api(&ref_addr, user, api, "").await;
            let got = js_api(&our_addr, user, api, "").await;
            assert_eq!(got, want, "{user} {api}");
        }
    }
    let want = js_api(&ref_addr, "a", "INFO", "").await;
    let got = js_api(&our_addr, "a", "INFO", "").await;
    assert!(want["error"].is_null() && got["error"].is_null(), "{got}");
    server.shutdown(Duration::from_secs(1)).await;
}

/// One scenario over connections of A, B (no headers) and $G, transcript
/// with generated reply subjects masked.
async fn transcript(addr: &str) -> Vec<String> {
    let mut a = Conn::login(addr, "a", true).await;
    let mut b = Conn::login(addr, "b", false).await;
    let mut g = Conn::login(addr, "g", false).await;
    let mut out = Vec::new();
    let mask = |s: String| -> String {
        s.split(' ')
            .map(|t| {
                if t.starts_with("_R_.") {
                    "_R_.<masked>"
                } else {
                    t
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    a.send("SUB > 1\r\nSUB inbox.1 2\r\nPING\r\n").await;
    out.push(a.read().await);
    b.send("SUB > 1\r\nSUB b.svc 2\r\nPING\r\n").await;
    out.push(b.read().await);
    g.send("SUB > 1\r\nPING\r\n").await;
    out.push(g.read().await);
    for (who, text) in [
        ("b", "PUB x.y 2\r\nhi\r\nPUB b.foo r.1 2\r\nhi\r\nPING\r\n"),
        ("a", "PUB a.events.1 2\r\nev\r\nPUB x.y 2\r\nhA\r\nPING\r\n"),
        (
            "g",
            "PUB b.foo 2\r\ngg\r\nPUB a.events.2 2\r\ngg\r\nPING\r\n",
        ),
    ] {
        match who {
            "a" => a.send(text).await,
            "b" => b.send(text).await,
            _ => g.send(text).await,
        }
        for c in [&mut a, &mut b, &mut g] {
            out.push(c.read().await);
        }
    }
    a.send("UNSUB 1\r\nPUB local.svc inbox.1 3\r\nreq\r\nPING\r\n")
        .await;
    out.push(a.read().await);
    let request = b.read().await;
    let r = reply_subject(&request);
    out.push(mask(request));
    b.send(&format!(
        "UNSUB 1\r\nPUB {r} 3\r\nrsp\r\nPUB {r} 4\r\nrsp2\r\nPING\r\n"
    ))
    .await;
    out.push(b.read().await);
    out.push(a.read().await);
    out.push(g.read().await);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_protocol_account_routing_matches_nats_server() {
    let reference = reference(CONFIG, false).await;
    let server = ours(CONFIG, None).await;
    let want = transcript(&format!("127.0.0.1:{}", reference.port())).await;
    let got = transcript(&server.addr().to_string()).await;
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        assert_eq!(
            g, w,
            "step {i}:\n  nats-server: {w:?}\n  ours:        {g:?}"
        );
    }
    assert_eq!(got.len(), want.len());
    server.shutdown(Duration::from_secs(1)).await;
}

fn conf_error(text: &str) -> String {
    let root = conf::parse(text, Path::new("test.conf"), &|_| None).expect("config parses");
    conf::accounts_from_conf(root.get("accounts").expect("accounts"))
        .expect_err("refused")
        .to_string()
}

#[test]
fn account_jetstream_limits_are_read_under_nats_servers_names_and_aliases() {
    let text = "accounts {\n  A: { jetstream: { max_mem: 1M, max_file: 2G, max_streams: 3, max_consumers: 4, max_ack_pending: 50, memory_max_stream_bytes: 512K, store_max_stream_bytes: 1G, max_bytes_required: true } }\n  B: { jetstream: { mem: 100, disk: 200, streams: 1, consumers: 2 } }\n  C: { jetstream: enabled }\n}\n";
    let root = conf::parse(text, Path::new("test.conf"), &|_| None).expect("config parses");
    let accounts =
        conf::accounts_from_conf(root.get("accounts").expect("accounts")).expect("accepted");
    let a = &accounts[0].jetstream_limits;
    assert!(accounts[0].jetstream);
    assert_eq!(
        (a.max_memory, a.max_store, a.max_streams, a.max_consumers),
        (1_000_000, 2_000_000_000, 3, 4)
    );
    assert_eq!(a.max_ack_pending, 50);
    assert_eq!(
        (a.memory_max_stream_bytes, a.store_max_stream_bytes),
        (512_000, 1_000_000_000)
    );
    assert!(a.max_bytes_required);
    let b = &accounts[1].jetstream_limits;
    assert_eq!(
        (b.max_memory, b.max_store, b.max_streams, b.max_consumers),
        (100, 200, 1, 2)
    );
    let c = &accounts[2].jetstream_limits;
    assert!(accounts[2].jetstream);
    assert_eq!((c.max_memory, c.max_store, c.max_streams), (-1, -1, -1));
    // Unknown keys are refused, not ignored.
    assert!(
        conf_error("accounts {\n  A: { jetstream: { max_widgets: 1 } }\n}\n")
            .contains("max_widgets")
    );
    assert!(
        conf_error("accounts {\n  A: { jetstream: { max_mem: [1] } }\n}\n").contains("max_mem")
    );
}

#[test]
fn bad_account_values_are_named_by_key_and_line() {
    assert_eq!(
        conf_error("accounts {\n  A: {\n    jetstream: maybe\n  }\n}\n"),
        "line 3: jetstream: Expected 'enabled' or 'disabled' for string value, got 'maybe'"
    );
    assert_eq!(
        conf_error("accounts {\n  A: { jetstream: 7 }\n}\n"),
        "line 2: jetstream: Expected map, bool or string to define JetStream, got integer"
    );
    assert_eq!(
        conf_error("accounts {\n  A: 5\n}\n"),
        "line 2: A: Expected map entries for accounts, got integer"
    );
    assert_eq!(
        conf_error("accounts {\n  A: {\n    exports: [\n      {stream: 5}\n    ]\n  }\n}\n"),
        "line 4: stream: Expected stream name to be string, got integer"
    );
    assert_eq!(
        conf_error("accounts {\n  A: {\n    exports: [ {foo: \"x\"} ]\n  }\n}\n"),
        "line 3: exports: unknown field \"foo\""
    );
    assert_eq!(
        conf_error(
            "accounts {\n  A: {\n    imports: [\n      {stream: {account: B, subject: x}, prefix: p, to: q}\n    ]\n  }\n  B: { exports: [ {stream: x} ] }\n}\n"
        ),
        "line 4: Stream import can not have a 'prefix' and a 'to' property"
    );
    assert_eq!(
        conf_error("accounts {\n  A: {\n    nope: 1\n  }\n}\n"),
        "line 3: A: unknown field \"nope\""
    );
    assert_eq!(
        conf_error("accounts {\n  A: {\n    limits: { max_conn: 1 }\n  }\n}\n"),
        "line 3: A: limits is not supported yet by this server; refusing to start"
    );
    assert_eq!(
        conf_error("accounts {\n  A: { users: [ {user: a} ] }\n}\n"),
        "line 2: user a needs `password`"
    );
    assert_eq!(
        conf_error("accounts {\n  A: { imports: [ {stream: {account: Z, subject: x}} ] }\n}\n"),
        "A: \"Z\" account not defined for stream import"
    );
    assert_eq!(
        conf_error(
            "accounts {\n  A: { imports: [ {service: {account: B, subject: x}} ] }\n  B: { exports: [ {stream: x} ] }\n}\n"
        ),
        "A: Error adding service import \"x\": service import not authorized"
    );
}

#[test]
fn account_users_merge_with_authorization_users_and_duplicates_are_refused() {
    let text = "authorization { users: [ {user: g, password: g} ] }\naccounts {\n  A: { users: [ {user: a, password: a}, {user: g, password: x} ] }\n}\n";
    let root = conf::parse(text, Path::new("test.conf"), &|_| None).expect("parses");
    let (auth, _) =
        conf::authorization_from_conf(root.get("authorization").expect("block")).expect("auth");
    let accounts =
        conf::accounts_from_conf(root.get("accounts").expect("accounts")).expect("accounts");
    assert_eq!(
        conf::merge_users(auth, &accounts)
            .expect_err("duplicate")
            .to_string(),
        "Duplicate user \"g\" detected"
    );
    let accounts = conf::accounts_from_conf(
        conf::parse(
            "accounts { A: { users: [ {user: a, password: a} ], jetstream: enabled } }",
            Path::new("t.conf"),
            &|_| None,
        )
        .expect("parses")
        .get("accounts")
        .expect("accounts"),
    )
    .expect("accounts");
    assert!(accounts[0].jetstream);
    let merged = conf::merge_users(None, &accounts)
        .expect("merged")
        .expect("auth");
    let bus_embedded_server::Auth::Identities(ids) = merged else {
        panic!("identities expected");
    };
    assert_eq!(ids[0].account.as_deref(), Some("A"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connz_shows_each_connections_account() {
    let root = conf::parse(CONFIG, Path::new("test.conf"), &|_| None).expect("config parses");
    let (auth, _) =
        conf::authorization_from_conf(root.get("authorization").expect("block")).expect("auth");
    let accounts =
        conf::accounts_from_conf(root.get("accounts").expect("accounts")).expect("accounts");
    let server = start(ServerConfig {
        port: 0,
        http_port: Some(0),
        auth: conf::merge_users(auth, &accounts).expect("merge"),
        accounts,
        ..ServerConfig::default()
    })
    .await
    .expect("start");
    let addr = server.addr().to_string();
    let _a = Conn::login(&addr, "a", false).await;
    let _g = Conn::login(&addr, "g", false).await;
    let port = server.monitor_port().expect("monitor");
    let mut http = TcpStream::connect(("127.0.0.1", port)).await.expect("http");
    http.write_all(b"GET /connz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut body = String::new();
    http.read_to_string(&mut body).await.expect("response");
    let json: serde_json::Value =
        serde_json::from_str(&body[body.find("\r\n\r\n").expect("headers") + 4..]).expect("json");
    let accounts: Vec<&str> = json["connections"]
        .as_array()
        .expect("connections")
        .iter()
        .filter_map(|c| c["account"].as_str())
        .collect();
    assert_eq!(accounts, ["A", "$G"]);
    server.shutdown(Duration::from_secs(1)).await;
}
