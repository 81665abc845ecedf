//! Operator mode (decentralized JWT authentication), side by side with
//! nats-server 2.15.1 started from the same configuration text (operator
//! JWT, system account, `resolver: MEMORY` with `resolver_preload`). The
//! credentials are made by the test (`operator_support`): users signed by
//! their account or its signing keys, some expired, revoked, foreign, or
//! signing the nonce with the wrong key; each step's answer must be the
//! same on both servers.

mod operator_support;

use std::time::Duration;

use bus_embedded_server::{ServerConfig, ServerHandle, cli, options, start};
use futures::StreamExt;
use nats_test_server::{NatsServer, ServerOptions};
use nkeys::KeyPair;
use operator_support::{Operator, User, now, open_limits, user};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Ours from configuration text, read as the binary reads a `-c` file.
async fn ours(config_text: &str, jetstream: bool) -> (ServerHandle, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("server.conf");
    std::fs::write(&path, config_text).expect("write config");
    let mut args = vec![
        "-c".to_owned(),
        path.display().to_string(),
        "-p".into(),
        "-1".into(),
    ];
    if jetstream {
        args.extend([
            "-js".into(),
            "-sd".into(),
            dir.path().join("js").display().to_string(),
        ]);
    }
    let cli = cli::parse_args(args).expect("flags");
    let o = options::from_cli(&cli, ServerConfig::default()).expect("configuration accepted");
    (start(o.config).await.expect("start"), dir)
}

async fn reference(config_text: &str, jetstream: bool) -> NatsServer {
    NatsServer::start_with(ServerOptions {
        extra_config: Some(config_text.to_owned()),
        jetstream,
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

/// A raw protocol connection.
struct Conn {
    s: TcpStream,
}

impl Conn {
    /// Connects, reads INFO and its nonce, sends CONNECT with the members
    /// `fields(nonce)` makes and a PING; returns what came back.
    async fn open(addr: &str, fields: impl FnOnce(&str) -> String) -> (Conn, String) {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let mut byte = [0u8; 1];
        let mut info = Vec::new();
        while !info.ends_with(b"\r\n") {
            s.read_exact(&mut byte).await.expect("INFO");
            info.push(byte[0]);
        }
        let info: serde_json::Value = serde_json::from_slice(&info[5..]).expect("INFO json");
        let nonce = info["nonce"].as_str().unwrap_or_default().to_owned();
        let fields = fields(&nonce);
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
        let _ = self.s.write_all(text.as_bytes()).await;
    }

    /// What arrives until the connection goes quiet (server PINGs left out).
    async fn read(&mut self) -> String {
        self.read_for(Duration::from_millis(250)).await
    }

    async fn read_for(&mut self, quiet: Duration) -> String {
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match tokio::time::timeout(quiet, self.s.read(&mut buf)).await {
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

/// The users of the story, made once so both servers judge the same JWTs.
struct Cast {
    op: Operator,
    good: User,
    restricted: User,
    expired: User,
    revoked: User,
    foreign: User,
    limited: User,
    scoped: User,
    bearer: User,
    future: User,
    no_sub: User,
}

fn cast() -> Cast {
    let mut op = Operator::new();
    let revoked_key = KeyPair::new_user();
    let scoped_key = KeyPair::new_account();
    let revoked_pub = revoked_key.public_key();
    let a = op.add_account(
        "A",
        json!({
            "limits": open_limits(),
            "revocations": {revoked_pub: now() + 60},
            "signing_keys": [{"kind": "user_scope", "key": scoped_key.public_key(), "role": "r",
                              "template": {"pub": {"allow": ["scoped.>"]}, "sub": {"allow": ["scoped.>"]},
                                           "subs": -1, "data": -1, "payload": -1}}],
        }),
    );
    let acc = &op.accounts[a].key;
    let ia = op.accounts[a].key.public_key();
    let plain = json!({"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1});
    let good = user(acc, plain.clone(), json!({}));
    let restricted = user(
        acc,
        json!({"pub": {"allow": ["ok.>"], "deny": ["ok.secret"]}, "sub": {"deny": ["no.>"]},
               "subs": -1, "data": -1, "payload": -1}),
        json!({}),
    );
    let expired = user(acc, plain.clone(), json!({"exp": now() - 10}));
    let revoked = operator_support::user_with_key(acc, revoked_key, plain.clone(), json!({}));
    let stranger = KeyPair::new_account();
    let foreign = user(&stranger, plain.clone(), json!({}));
    let limited = user(
        acc,
        json!({"pub": {}, "sub": {}, "subs": 1, "data": -1, "payload": 8}),
        json!({}),
    );
    let scoped = user(&scoped_key, json!({"issuer_account": ia}), json!({}));
    let bearer = user(
        acc,
        json!({"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1, "bearer_token": true}),
        json!({}),
    );
    let future = user(acc, plain, json!({"nbf": now() + 3600}));
    let no_sub = user(
        acc,
        json!({"pub": {}, "sub": {}, "subs": 0, "data": -1, "payload": -1}),
        json!({}),
    );
    Cast {
        op,
        good,
        restricted,
        expired,
        revoked,
        foreign,
        limited,
        scoped,
        bearer,
        future,
        no_sub,
    }
}

/// The whole story on one server: what each step saw.
async fn story(addr: &str, c: &Cast) -> Vec<String> {
    let mut steps = Vec::new();
    fn signed(u: &User) -> impl FnOnce(&str) -> String + '_ {
        move |nonce: &str| u.connect_fields(nonce, &u.key)
    }
    let (mut good, answer) = Conn::open(addr, signed(&c.good)).await;
    steps.push(format!("good connect: {answer}"));
    good.send("SUB anything.> 1\r\nPUB anything.x 2\r\nhi\r\nPING\r\n")
        .await;
    steps.push(format!("good pub/sub: {}", good.read().await));
    let (mut r, answer) = Conn::open(addr, signed(&c.restricted)).await;
    steps.push(format!("restricted connect: {answer}"));
    r.send("SUB no.x 1\r\nPUB bad 1\r\nx\r\nPUB ok.secret 1\r\nx\r\nSUB ok.> 2\r\nPUB ok.fine 1\r\nx\r\nPING\r\n")
        .await;
    steps.push(format!("restricted pub/sub: {}", r.read().await));
    for (what, u) in [
        ("expired", &c.expired),
        ("revoked", &c.revoked),
        ("foreign account", &c.foreign),
        ("not yet valid", &c.future),
    ] {
        let (_, answer) = Conn::open(addr, signed(u)).await;
        steps.push(format!("{what}: {answer}"));
    }
    let other = KeyPair::new_user();
    let (_, answer) = Conn::open(addr, |n| c.good.connect_fields(n, &other)).await;
    steps.push(format!("wrong signature: {answer}"));
    let (_, answer) = Conn::open(addr, |_| format!("\"jwt\":\"{}\"", c.good.jwt)).await;
    steps.push(format!("no signature: {answer}"));
    let (_, answer) = Conn::open(addr, |_| "\"user\":\"a\",\"pass\":\"a\"".to_owned()).await;
    steps.push(format!("user and password: {answer}"));
    let (_, answer) = Conn::open(addr, |_| String::new()).await;
    steps.push(format!("no credentials: {answer}"));
    let (_, answer) = Conn::open(addr, |_| {
        "\"jwt\":\"eyJnot.a.jwt\",\"sig\":\"x\"".to_owned()
    })
    .await;
    steps.push(format!("garbage jwt: {answer}"));
    let (mut l, answer) = Conn::open(addr, signed(&c.limited)).await;
    steps.push(format!("limited connect: {answer}"));
    l.send("SUB a 1\r\nSUB b 2\r\nPUB x 8\r\n12345678\r\nPING\r\n")
        .await;
    steps.push(format!("limited subs: {}", l.read().await));
    l.send("PUB x 9\r\n123456789\r\n").await;
    steps.push(format!("limited payload: {}", l.read().await));
    let (mut n, answer) = Conn::open(addr, signed(&c.no_sub)).await;
    // nats-server sends the error from another goroutine: before or after
    // the PONG, as it happens.
    let mut lines: Vec<&str> = answer.split_inclusive("\r\n").collect();
    lines.sort_unstable();
    steps.push(format!("subs 0 connect: {}", lines.concat()));
    n.send("SUB a 1\r\nPING\r\n").await;
    steps.push(format!("subs 0 sub: {}", n.read().await));
    let (mut s, answer) = Conn::open(addr, signed(&c.scoped)).await;
    steps.push(format!("scoped connect: {answer}"));
    s.send("SUB other 1\r\nPUB other 1\r\nx\r\nSUB scoped.x 2\r\nPUB scoped.x 1\r\ny\r\nPING\r\n")
        .await;
    steps.push(format!("scoped pub/sub: {}", s.read().await));
    let (_, answer) = Conn::open(addr, |_| format!("\"jwt\":\"{}\"", c.bearer.jwt)).await;
    steps.push(format!("bearer without sig: {answer}"));
    steps
}

#[tokio::test]
async fn jwt_users_are_judged_as_nats_server_judges_them() {
    let c = cast();
    let config = c.op.config();
    let theirs = reference(&config, false).await;
    let (our, _dir) = ours(&config, false).await;
    let want = story(&format!("127.0.0.1:{}", theirs.port()), &c).await;
    let got = story(&our.addr().to_string(), &c).await;
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        assert_eq!(
            g, w,
            "step {i}:\n  nats-server: {w:?}\n  ours:        {g:?}"
        );
    }
    assert_eq!(got.len(), want.len());
    // What the story must show, whatever nats-server says.
    assert_eq!(got[0], "good connect: PONG\r\n");
    assert!(
        got[3].contains("Permissions Violation for Publish to \"bad\""),
        "{}",
        got[3]
    );
    assert!(got[4].contains("Authorization Violation"), "{}", got[4]);
    assert!(got[5].contains("Authorization Violation"), "{}", got[5]);
    assert!(got[6].contains("Authorization Violation"), "{}", got[6]);
    assert!(got[8].contains("Authorization Violation"), "{}", got[8]);
    assert!(
        got[14].contains("maximum subscriptions exceeded"),
        "{}",
        got[14]
    );
    assert!(got[15].contains("Maximum Payload Violation"), "{}", got[15]);
    assert!(
        got[19].contains("Permissions Violation for Publish to \"other\""),
        "{}",
        got[19]
    );
    assert!(got[19].contains("MSG scoped.x 2 1"), "{}", got[19]);
    assert_eq!(got[20], "bearer without sig: PONG\r\n");
}

#[tokio::test]
async fn async_nats_with_a_creds_file_publishes_and_is_refused_like_on_nats_server() {
    let c = cast();
    let config = c.op.config();
    let dir = tempfile::tempdir().expect("tempdir");
    let good = c.good.write_creds(dir.path(), "good");
    let restricted = c.restricted.write_creds(dir.path(), "restricted");
    let expired = c.expired.write_creds(dir.path(), "expired");
    let revoked = c.revoked.write_creds(dir.path(), "revoked");
    let theirs = reference(&config, false).await;
    let (our, _ours_dir) = ours(&config, false).await;
    let mut outcomes = Vec::new();
    for addr in [
        format!("127.0.0.1:{}", theirs.port()),
        our.addr().to_string(),
    ] {
        let mut seen = Vec::new();
        let nc = async_nats::ConnectOptions::with_credentials_file(&good)
            .await
            .expect("creds")
            .connect(&addr)
            .await
            .expect("good user connects");
        let mut sub = nc.subscribe("orders.>").await.expect("subscribe");
        nc.publish("orders.1", "x".into()).await.expect("publish");
        nc.flush().await.expect("flush");
        let m = tokio::time::timeout(Duration::from_secs(2), sub.next())
            .await
            .expect("delivered")
            .expect("message");
        seen.push(format!("good received {}", m.subject));
        // The restricted user's denied publish does not reach the good one.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let r = async_nats::ConnectOptions::with_credentials_file(&restricted)
            .await
            .expect("creds")
            .event_callback(move |e| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(e.to_string());
                }
            })
            .connect(&addr)
            .await
            .expect("restricted user connects");
        r.publish("orders.2", "y".into()).await.expect("publish");
        r.flush().await.expect("flush");
        let event = tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        seen.push(format!("restricted event: {event}"));
        let nothing = tokio::time::timeout(Duration::from_millis(200), sub.next()).await;
        seen.push(format!("denied publish delivered: {}", nothing.is_ok()));
        for (what, creds) in [("expired", &expired), ("revoked", &revoked)] {
            let e = async_nats::ConnectOptions::with_credentials_file(creds)
                .await
                .expect("creds")
                .connect(&addr)
                .await
                .expect_err("refused");
            seen.push(format!("{what}: {e}"));
        }
        outcomes.push(seen);
    }
    assert_eq!(outcomes[1], outcomes[0]);
    assert_eq!(outcomes[1][2], "denied publish delivered: false");
    assert!(
        outcomes[1][3].contains("authorization violation"),
        "{:?}",
        outcomes[1]
    );
}

#[tokio::test]
async fn a_user_whose_jwt_expires_while_connected_is_disconnected_like_on_nats_server() {
    let mut c = cast();
    let acc = KeyPair::from_seed(&c.op.accounts[0].key.seed().expect("seed")).expect("key");
    c.good = user(
        &acc,
        json!({"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1}),
        json!({"exp": now() + 2}),
    );
    let config = c.op.config();
    let theirs = reference(&config, false).await;
    let (our, _dir) = ours(&config, false).await;
    // Both at once: the JWT expires at the same moment for both.
    let watch = |addr: String| {
        let u = &c.good;
        async move {
            let (mut conn, answer) = Conn::open(&addr, |n| u.connect_fields(n, &u.key)).await;
            let later = conn.read_for(Duration::from_secs(4)).await;
            (answer, later)
        }
    };
    let (a, b) = tokio::join!(
        watch(format!("127.0.0.1:{}", theirs.port())),
        watch(our.addr().to_string())
    );
    let seen = [a, b];
    assert_eq!(seen[1], seen[0]);
    assert_eq!(seen[1].0, "PONG\r\n");
    assert!(seen[1].1.contains("-ERR"), "{:?}", seen[1]);
}

/// A `$JS.API` request's answer, with what varies between servers masked.
async fn js_request(nc: &async_nats::Client, subject: &str, body: serde_json::Value) -> String {
    let m = nc
        .request(subject.to_owned(), body.to_string().into())
        .await
        .expect("answer");
    let mut v: serde_json::Value = serde_json::from_slice(&m.payload).expect("json");
    if v.get("error").is_some() {
        return v["error"].to_string();
    }
    if let Some(cfg) = v.get_mut("config") {
        return format!("ok {}", cfg["name"]);
    }
    v["type"].to_string()
}

#[tokio::test]
async fn jetstream_limits_come_from_the_account_jwt_as_on_nats_server() {
    let mut op = Operator::new();
    let mut limits = open_limits();
    for (k, v) in [
        ("mem_storage", json!(1_048_576)),
        ("disk_storage", json!(1_048_576)),
        ("streams", json!(1)),
        ("consumer", json!(1)),
        ("max_ack_pending", json!(-1)),
        ("mem_max_stream_bytes", json!(-1)),
        ("disk_max_stream_bytes", json!(-1)),
        ("max_bytes_required", json!(false)),
    ] {
        limits[k] = v;
    }
    let js = op.add_account("JS", json!({"limits": limits}));
    let nojs = op.add_account("NOJS", json!({"limits": open_limits()}));
    let plain = json!({"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1});
    let js_user = user(&op.accounts[js].key, plain.clone(), json!({}));
    let nojs_user = user(&op.accounts[nojs].key, plain, json!({}));
    let config = op.config();
    let dir = tempfile::tempdir().expect("tempdir");
    let js_creds = js_user.write_creds(dir.path(), "js");
    let nojs_creds = nojs_user.write_creds(dir.path(), "nojs");
    let theirs = reference(&config, true).await;
    let (our, _ours_dir) = ours(&config, true).await;
    let mut outcomes = Vec::new();
    for addr in [
        format!("127.0.0.1:{}", theirs.port()),
        our.addr().to_string(),
    ] {
        let mut seen = Vec::new();
        let nc = async_nats::ConnectOptions::with_credentials_file(&js_creds)
            .await
            .expect("creds")
            .connect(&addr)
            .await
            .expect("connect");
        for (name, extra) in [
            ("S1", json!({})),
            ("S2", json!({})),
            ("BIG", json!({"max_bytes": 10_000_000})),
        ] {
            let mut body =
                json!({"name": name, "subjects": [format!("{name}.>")], "storage": "file"});
            for (k, v) in extra.as_object().expect("map") {
                body[k] = v.clone();
            }
            seen.push(js_request(&nc, &format!("$JS.API.STREAM.CREATE.{name}"), body).await);
        }
        let n = async_nats::ConnectOptions::with_credentials_file(&nojs_creds)
            .await
            .expect("creds")
            .connect(&addr)
            .await
            .expect("connect");
        seen.push(js_request(&n, "$JS.API.INFO", json!({})).await);
        outcomes.push(seen);
    }
    assert_eq!(outcomes[1], outcomes[0]);
    assert_eq!(outcomes[1][0], "ok \"S1\"");
    assert!(outcomes[1][1].contains("10027"), "{:?}", outcomes[1]);
    assert!(outcomes[1][3].contains("10039"), "{:?}", outcomes[1]);
}

#[test]
fn operator_configurations_this_server_cannot_trust_refuse_to_start() {
    let mut op = Operator::new();
    op.add_account("A", json!({"limits": open_limits()}));
    let good = op.config();
    // An account JWT with one byte of its claims changed.
    let jwt = &op.accounts[0].jwt;
    let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
    let swap = if &parts[1][5..6] == "A" { "B" } else { "A" };
    parts[1].replace_range(5..6, swap);
    let tampered = good.replace(jwt.as_str(), &parts.join("."));
    let e = our_refusal(&tampered);
    assert!(
        e.contains("resolver_preload") && e.contains(&op.accounts[0].key.public_key()),
        "{e}"
    );
    // An account signed by another operator.
    let other = Operator::new();
    let foreign =
        operator_support::account_signed(&other.key, KeyPair::new_account(), "F", json!({}));
    let e = our_refusal(&format!(
        "{good}resolver_preload {{ {}: {} }}\n",
        foreign.key.public_key(),
        foreign.jwt
    ));
    assert!(e.contains("signature"), "{e}");
    // Exports in an account JWT are not supported: refused, not ignored.
    let mut op2 = Operator::new();
    op2.add_account(
        "E",
        json!({"limits": open_limits(), "exports": [{"subject": "x", "type": "stream"}]}),
    );
    let e = our_refusal(&op2.config());
    assert!(e.contains("exports") && e.contains("not supported"), "{e}");
    // Operator mode and an authorization block do not mix (nats-server
    // refuses too).
    let e = our_refusal(&format!("{good}authorization {{ token: t }}\n"));
    assert!(
        e.contains("authorization") && e.contains("operator mode"),
        "{e}"
    );
    let e = our_refusal("operator: /no/such/file.jwt\nresolver: MEMORY\n");
    assert!(
        e.contains("operator") && e.contains("/no/such/file.jwt"),
        "{e}"
    );
}

#[tokio::test]
async fn a_directory_resolver_serves_the_account_jwts_it_finds_on_disk() {
    let mut op = Operator::new();
    let a = op.add_account("DIR", json!({"limits": open_limits()}));
    let u = user(
        &op.accounts[a].key,
        json!({"pub": {"allow": ["dir.>"]}, "sub": {}, "subs": -1, "data": -1, "payload": -1}),
        json!({}),
    );
    let stranger = op.add_account("NOTONDISK", json!({"limits": open_limits()}));
    let absent = user(&op.accounts[stranger].key, json!({}), json!({}));
    let dir = tempfile::tempdir().expect("tempdir");
    let jwts = dir.path().join("jwt");
    std::fs::create_dir(&jwts).expect("mkdir");
    for acc in [&op.system, &op.accounts[a]] {
        std::fs::write(jwts.join(format!("{}.jwt", acc.key.public_key())), &acc.jwt)
            .expect("write jwt");
    }
    let config = format!(
        "operator: {}\nsystem_account: {}\nresolver {{\n  type: full\n  dir: \"{}\"\n}}\n",
        op.jwt,
        op.system.key.public_key(),
        jwts.display()
    );
    let good = u.write_creds(dir.path(), "dir");
    let missing = absent.write_creds(dir.path(), "absent");
    let theirs = reference(&config, false).await;
    let (our, _ours_dir) = ours(&config, false).await;
    let mut outcomes = Vec::new();
    for addr in [
        format!("127.0.0.1:{}", theirs.port()),
        our.addr().to_string(),
    ] {
        let mut seen = Vec::new();
        let nc = async_nats::ConnectOptions::with_credentials_file(&good)
            .await
            .expect("creds")
            .connect(&addr)
            .await
            .expect("a user of an account on disk connects");
        let mut sub = nc.subscribe("dir.x").await.expect("subscribe");
        nc.publish("dir.x", "1".into()).await.expect("publish");
        nc.flush().await.expect("flush");
        let m = tokio::time::timeout(Duration::from_secs(2), sub.next())
            .await
            .expect("delivered")
            .expect("message");
        seen.push(format!("received {}", m.subject));
        let e = async_nats::ConnectOptions::with_credentials_file(&missing)
            .await
            .expect("creds")
            .connect(&addr)
            .await
            .expect_err("an account not on disk is unknown");
        seen.push(format!("absent: {e}"));
        outcomes.push(seen);
    }
    assert_eq!(outcomes[1], outcomes[0]);
    assert_eq!(outcomes[1][0], "received dir.x");
}

/// The configuration the Helm chart renders for `server.operator`: the
/// operator JWT in a file (nsc's armoured form, as a Secret holds it), a
/// directory resolver on a fresh volume (the directory does not exist
/// yet), and the app's account preloaded. Both servers start from it, create
/// the directory, and a user of the preloaded account connects with its
/// `.creds` file and sends and receives.
#[tokio::test]
async fn the_helm_charts_operator_configuration_starts_on_a_fresh_volume_like_nats_server() {
    let mut op = Operator::new();
    let a = op.add_account("APP", json!({"limits": open_limits()}));
    let u = user(
        &op.accounts[a].key,
        json!({"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1}),
        json!({}),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let operator_file = dir.path().join("operator.jwt");
    std::fs::write(
        &operator_file,
        format!(
            "-----BEGIN NATS OPERATOR JWT-----\n{}\n------END NATS OPERATOR JWT------\n",
            op.jwt
        ),
    )
    .expect("write operator jwt");
    let creds = u.write_creds(dir.path(), "app");
    let mut outcomes = Vec::new();
    for (i, theirs_first) in [true, false].into_iter().enumerate() {
        let volume = dir.path().join(format!("data{i}"));
        let config = format!(
            "operator: \"{}\"\nsystem_account: \"{}\"\nresolver {{\n  type: full\n  dir: \"{}\"\n}}\n\
             resolver_preload {{\n  {}: \"{}\"\n  {}: \"{}\"\n}}\n",
            operator_file.display(),
            op.system.key.public_key(),
            volume.join("jwt").display(),
            op.system.key.public_key(),
            op.system.jwt,
            op.accounts[a].key.public_key(),
            op.accounts[a].jwt,
        );
        std::fs::create_dir(&volume).expect("mkdir volume");
        let (addr, _keep) = if theirs_first {
            let t = reference(&config, false).await;
            (format!("127.0.0.1:{}", t.port()), (Some(t), None))
        } else {
            let (h, d) = ours(&config, false).await;
            (h.addr().to_string(), (None, Some((h, d))))
        };
        let nc = async_nats::ConnectOptions::with_credentials_file(&creds)
            .await
            .expect("creds")
            .connect(&addr)
            .await
            .expect("the app's user connects");
        let mut sub = nc.subscribe("angzarr.events.>").await.expect("subscribe");
        nc.publish("angzarr.events.player.Joined", "1".into())
            .await
            .expect("publish");
        nc.flush().await.expect("flush");
        let m = tokio::time::timeout(Duration::from_secs(2), sub.next())
            .await
            .expect("delivered")
            .expect("message");
        outcomes.push((m.subject.to_string(), volume.join("jwt").is_dir()));
    }
    assert_eq!(outcomes[1], outcomes[0], "ours differs from nats-server");
    assert_eq!(
        outcomes[1],
        ("angzarr.events.player.Joined".to_owned(), true),
        "the resolver directory is created on a fresh volume"
    );
}

/// `nsc push` of an account the server has never seen (directory
/// resolver): the server stores it and serves it at once, JetStream
/// included, as nats-server does; ours also after a restart (read back
/// from the directory).
#[tokio::test]
async fn an_account_pushed_while_running_serves_its_users_at_once_like_nats_server() {
    let mut op = Operator::new();
    let mut limits = open_limits();
    for (k, v) in [
        ("mem_storage", json!(-1)),
        ("disk_storage", json!(-1)),
        ("streams", json!(-1)),
        ("consumer", json!(-1)),
    ] {
        limits[k] = v;
    }
    let fresh = op.add_account("FRESH", json!({"limits": limits}));
    let plain = json!({"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1});
    let sys_user = user(&op.system.key, plain.clone(), json!({}));
    let fresh_user = user(&op.accounts[fresh].key, plain, json!({}));
    let dir = tempfile::tempdir().expect("tempdir");
    let sys_creds = sys_user.write_creds(dir.path(), "sys");
    let fresh_creds = fresh_user.write_creds(dir.path(), "fresh");
    let connect_fresh = |addr: String| {
        let creds = fresh_creds.clone();
        async move {
            async_nats::ConnectOptions::with_credentials_file(&creds)
                .await
                .expect("creds")
                .connect(&addr)
                .await
                .map_err(|e| e.to_string())
        }
    };
    let mut outcomes = Vec::new();
    for reference_server in [true, false] {
        // Only the system account is on disk at start.
        let jwts = dir.path().join(format!("jwt-{reference_server}"));
        std::fs::create_dir(&jwts).expect("mkdir");
        std::fs::write(
            jwts.join(format!("{}.jwt", op.system.key.public_key())),
            &op.system.jwt,
        )
        .expect("write jwt");
        let config = format!(
            "operator: {}\nsystem_account: {}\nresolver {{\n  type: full\n  dir: \"{}\"\n}}\n",
            op.jwt,
            op.system.key.public_key(),
            jwts.display()
        );
        let mut theirs = None;
        let mut ours_server = None;
        let addr = if reference_server {
            let t = reference(&config, true).await;
            let a = format!("127.0.0.1:{}", t.port());
            theirs = Some(t);
            a
        } else {
            let o = ours(&config, true).await;
            let a = o.0.addr().to_string();
            ours_server = Some(o);
            a
        };
        let mut seen = Vec::new();
        let before = connect_fresh(addr.clone()).await;
        seen.push(format!("before the push: {:?}", before.map(|_| ())));
        let sys = async_nats::ConnectOptions::with_credentials_file(&sys_creds)
            .await
            .expect("creds")
            .connect(&addr)
            .await
            .expect("system user connects");
        let m = sys
            .request(
                "$SYS.REQ.CLAIMS.UPDATE",
                op.accounts[fresh].jwt.clone().into(),
            )
            .await
            .expect("answered");
        let v: serde_json::Value = serde_json::from_slice(&m.payload).expect("json");
        seen.push(format!(
            "push: {} {}",
            v["data"]["code"], v["data"]["message"]
        ));
        let nc = connect_fresh(addr.clone())
            .await
            .expect("a user of the pushed account connects");
        seen.push(
            js_request(
                &nc,
                "$JS.API.STREAM.CREATE.PUSHED",
                json!({"name": "PUSHED", "subjects": ["pushed.>"], "storage": "file"}),
            )
            .await,
        );
        let ack = nc
            .request("pushed.one", "1".into())
            .await
            .expect("publish acknowledged");
        seen.push(String::from_utf8_lossy(&ack.payload).replace(' ', ""));
        outcomes.push(seen);
        drop(theirs);
        if let Some((handle, store)) = ours_server {
            // Ours again, from the same directory and store: the pushed
            // account is read back and its stream is there.
            drop(nc);
            drop(sys);
            handle.shutdown(Duration::from_secs(5)).await;
            let cli = cli::parse_args([
                "-c".to_owned(),
                store.path().join("server.conf").display().to_string(),
                "-p".into(),
                "-1".into(),
                "-js".into(),
                "-sd".into(),
                store.path().join("js").display().to_string(),
            ])
            .expect("flags");
            let o = options::from_cli(&cli, ServerConfig::default()).expect("config");
            let again = start(o.config).await.expect("restart");
            let nc = connect_fresh(again.addr().to_string())
                .await
                .expect("the pushed account survives a restart");
            let info = js_request(&nc, "$JS.API.STREAM.INFO.PUSHED", json!({})).await;
            assert_eq!(info, "ok \"PUSHED\"", "after a restart");
        }
    }
    assert_eq!(outcomes[1], outcomes[0], "ours differs from nats-server");
    assert!(
        outcomes[1][0].contains("Err") && outcomes[1][1] == "push: 200 \"jwt updated\"",
        "{:?}",
        outcomes[1]
    );
    assert_eq!(outcomes[1][2], "ok \"PUSHED\"");
    assert!(outcomes[1][3].contains("\"seq\":1"), "{:?}", outcomes[1]);
}

/// Runs tests/clients/python/authorization.py with `args`; its stdout.
fn nats_py(args: Vec<String>) -> String {
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
        "nats-py script failed (nats-py and nkeys are installed by `bash scripts/test.sh` \
         from tests/clients/python/requirements.txt):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_with_a_creds_file_as_with_nats_server() {
    let c = cast();
    let config = c.op.config();
    let dir = tempfile::tempdir().expect("tempdir");
    let restricted = c.restricted.write_creds(dir.path(), "restricted");
    let expired = c.expired.write_creds(dir.path(), "expired");
    let theirs = reference(&config, false).await;
    let (our, _ours_dir) = ours(&config, false).await;
    let mut outcomes = Vec::new();
    for url in [
        format!("nats://127.0.0.1:{}", theirs.port()),
        format!("nats://{}", our.addr()),
    ] {
        let mut seen = String::new();
        for creds in [&restricted, &expired] {
            let args = vec![
                url.clone(),
                "creds".into(),
                creds.display().to_string(),
                "ok.py".into(),
            ];
            seen.push_str(
                &tokio::task::spawn_blocking(move || nats_py(args))
                    .await
                    .expect("join"),
            );
        }
        outcomes.push(seen);
    }
    assert_eq!(outcomes[1], outcomes[0]);
    assert!(
        outcomes[1].contains("received ok.py hello"),
        "{}",
        outcomes[1]
    );
    assert!(
        outcomes[1].contains("permissions violation for publish to \"denied.x\""),
        "{}",
        outcomes[1]
    );
    assert!(
        outcomes[1].contains("Authorization Violation"),
        "{}",
        outcomes[1]
    );
}

#[tokio::test]
async fn the_system_account_answers_server_ping_and_claims_updates_revoking_connected_users_like_nats_server()
 {
    let mut op = Operator::new();
    let a = op.add_account("UPD", json!({"limits": open_limits()}));
    let plain = json!({"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1});
    let sys_user = user(&op.system.key, plain.clone(), json!({}));
    let victim = user(
        &op.accounts[a].key,
        plain.clone(),
        json!({"iat": now() - 10}),
    );
    let other = op.add_account("OTHER", json!({"limits": open_limits()}));
    // The update: the same account, now revoking the victim.
    let updated = operator_support::account_signed(
        &op.key,
        nkeys::KeyPair::from_seed(&op.accounts[a].key.seed().expect("seed")).expect("key"),
        "UPD",
        json!({"limits": open_limits(), "revocations": {victim.key.public_key(): now()}}),
    );
    let key = op.accounts[a].key.public_key();
    let dir = tempfile::tempdir().expect("tempdir");
    let sys_creds = sys_user.write_creds(dir.path(), "sys");
    let victim_creds = victim.write_creds(dir.path(), "victim");
    let mut outcomes = Vec::new();
    for reference_server in [true, false] {
        let jwts = dir.path().join(format!("jwt-{reference_server}"));
        std::fs::create_dir(&jwts).expect("mkdir");
        for acc in [&op.system, &op.accounts[a], &op.accounts[other]] {
            std::fs::write(jwts.join(format!("{}.jwt", acc.key.public_key())), &acc.jwt)
                .expect("write jwt");
        }
        let config = format!(
            "operator: {}\nsystem_account: {}\nresolver {{\n  type: full\n  dir: \"{}\"\n}}\n",
            op.jwt,
            op.system.key.public_key(),
            jwts.display()
        );
        let (theirs, ours_server);
        let addr = if reference_server {
            theirs = Some(reference(&config, false).await);
            format!("127.0.0.1:{}", theirs.as_ref().expect("server").port())
        } else {
            ours_server = Some(ours(&config, false).await);
            ours_server.as_ref().expect("server").0.addr().to_string()
        };
        let mut seen = Vec::new();
        let nc = async_nats::ConnectOptions::with_credentials_file(&sys_creds)
            .await
            .expect("creds")
            .connect(&addr)
            .await
            .expect("system user connects");
        let ping = nc
            .request("$SYS.REQ.SERVER.PING", "".into())
            .await
            .expect("PING answered");
        let ping: serde_json::Value = serde_json::from_slice(&ping.payload).expect("json");
        seen.push(format!(
            "ping: server.id is a string {}, statsz.connections {}",
            ping["server"]["id"].is_string(),
            ping["statsz"]["connections"]
        ));
        let victim_before = async_nats::ConnectOptions::with_credentials_file(&victim_creds)
            .await
            .expect("creds")
            .connect(&addr)
            .await
            .is_ok();
        seen.push(format!(
            "victim before the update connects: {victim_before}"
        ));
        // A connection of the victim made before the update.
        let (mut connected, answer) =
            Conn::open(&addr, |n| victim.connect_fields(n, &victim.key)).await;
        seen.push(format!("victim connection: {answer}"));
        for (what, subject, body) in [
            (
                "garbage",
                format!("$SYS.REQ.ACCOUNT.{key}.CLAIMS.UPDATE"),
                "garbage".to_owned(),
            ),
            (
                "another account's jwt",
                format!("$SYS.REQ.ACCOUNT.{key}.CLAIMS.UPDATE"),
                op.accounts[other].jwt.clone(),
            ),
            (
                "update",
                format!("$SYS.REQ.ACCOUNT.{key}.CLAIMS.UPDATE"),
                updated.jwt.clone(),
            ),
        ] {
            let m = nc.request(subject, body.into()).await.expect("answered");
            let v: serde_json::Value = serde_json::from_slice(&m.payload).expect("json");
            let part = if v.get("error").is_some() {
                &v["error"]
            } else {
                &v["data"]
            };
            seen.push(format!("{what}: {part}"));
        }
        seen.push(format!(
            "victim connection after the update: {}",
            connected.read().await
        ));
        let victim_after = async_nats::ConnectOptions::with_credentials_file(&victim_creds)
            .await
            .expect("creds")
            .connect(&addr)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        seen.push(format!("victim after the update: {victim_after:?}"));
        let stored = std::fs::read_to_string(jwts.join(format!("{key}.jwt"))).unwrap_or_default();
        seen.push(format!("stored: {}", stored.trim() == updated.jwt));
        outcomes.push(seen);
    }
    assert_eq!(outcomes[1], outcomes[0]);
    assert_eq!(
        outcomes[1][0],
        "ping: server.id is a string true, statsz.connections 1"
    );
    assert!(outcomes[1][5].contains("jwt updated"), "{:?}", outcomes[1]);
    assert_eq!(
        outcomes[1][6],
        "victim connection after the update: -ERR 'User Authentication Revoked'\r\n<closed>"
    );
    assert!(
        outcomes[1][7].contains("authorization violation"),
        "{:?}",
        outcomes[1]
    );
    assert_eq!(outcomes[1][8], "stored: true");
}
