//! Subject mappings (`mappings {}` at the top level and in accounts), side
//! by side with nats-server 2.15.1 started from the same configuration
//! text: what subscribers see for every destination form we support, what
//! JetStream stores, which account a mapping belongs to, that permissions
//! judge the mapped subject, how weights share messages out, and that a bad
//! mapping stops the start with nats-server's words.

use std::time::Duration;

use bus_embedded_server::{ServerConfig, ServerHandle, cli, options, start};
use futures::StreamExt;
use nats_test_server::{NatsServer, ServerOptions, nats_server_bin};
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
        "-p".to_owned(),
        "-1".to_owned(),
    ];
    if jetstream {
        args.extend(["-js".to_owned(), "-sd".to_owned()]);
        args.push(dir.path().join("store").display().to_string());
    }
    let cli = cli::parse_args(args).expect("flags");
    let o = options::from_cli(&cli, ServerConfig::default()).expect("configuration accepted");
    (start(o.config).await.expect("start"), dir)
}

async fn reference(config_text: &str, jetstream: bool) -> NatsServer {
    NatsServer::start_with(ServerOptions {
        jetstream,
        extra_config: Some(config_text.to_owned()),
        ..ServerOptions::core()
    })
    .await
}

/// Ours' refusal of a configuration, the file name taken out.
fn our_refusal(config_text: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("server.conf");
    std::fs::write(&path, config_text).expect("write config");
    let cli = cli::parse_args(["-c".to_owned(), path.display().to_string()]).expect("flags");
    match options::from_cli(&cli, ServerConfig::default()) {
        Ok(_) => panic!("accepted:\n{config_text}"),
        Err(e) => e
            .to_string()
            .replace(&path.display().to_string(), "server.conf"),
    }
}

/// nats-server's refusal of a configuration: its error line, without the
/// `nats-server: file:line:col: ` prefix.
fn reference_refusal(config_text: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("server.conf");
    std::fs::write(&path, config_text).expect("write config");
    let out = std::process::Command::new(nats_server_bin())
        .args(["-c", &path.display().to_string(), "-t"])
        .output()
        .expect("run nats-server");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "nats-server accepted:\n{config_text}"
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("nats-server: "))
        .unwrap_or_else(|| panic!("no error line in {text}"));
    let prefix = format!("nats-server: {}:", path.display());
    match line.strip_prefix(&prefix) {
        // `line:col: message`
        Some(rest) => rest.splitn(3, ':').nth(2).unwrap_or(rest).trim().to_owned(),
        None => line.trim_start_matches("nats-server: ").to_owned(),
    }
}

async fn client(url: &str) -> async_nats::Client {
    async_nats::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// Subjects received by `sub` until it is quiet for 300 ms (the first
/// may take up to 3 s on a loaded machine).
async fn subjects(sub: &mut async_nats::Subscriber) -> Vec<String> {
    let mut out = Vec::new();
    let mut wait = Duration::from_secs(3);
    while let Ok(Some(m)) = tokio::time::timeout(wait, sub.next()).await {
        out.push(m.subject.to_string());
        wait = Duration::from_millis(300);
    }
    out
}

/// Publishes each subject and returns what a `>` subscriber saw.
async fn published_as(url: &str, subjects_out: &[&str]) -> Vec<String> {
    let c = client(url).await;
    let mut sub = c.subscribe(">").await.expect("subscribe");
    c.flush().await.expect("flush");
    for s in subjects_out {
        c.publish(s.to_string(), "x".into()).await.expect("publish");
    }
    c.flush().await.expect("flush");
    subjects(&mut sub).await
}

const FORMS: &str = r#"
mappings {
  "lit": "lit.dest"
  "wc.*.*": "wc.$2.{{wildcard(1)}}"
  "tail.>": "moved.>"
  "mix.*.>": "mixed.{{Wildcard(1)}}.>"
  "part.*.*": "part.{{partition(5,1,2)}}.$1.$2"
  "whole.*": "whole.{{partition(3)}}.$1"
  "sfl.*": "sfl.{{splitFromLeft(1,2)}}"
  "sfr.*": "sfr.{{SplitFromRight(1, 2)}}"
  "sll.*": "sll.{{sliceFromLeft(1,3)}}"
  "slr.*": "slr.{{sliceFromRight(1,3)}}"
  "spl.*": "spl.{{split(1,-)}}"
  "lr.*": "lr.{{left(1,2)}}.{{right(1,2)}}"
  "full": [{destination: "full.one", weight: 100%}]
  "single": {destination: "single.one", weight: 100}
}
"#;

const FORM_SUBJECTS: &[&str] = &[
    "lit",
    "lit.not",
    "wc.a.b",
    "tail.x.y.z",
    "mix.a.b.c",
    "part.a.b",
    "part.c.d",
    "part.x.y",
    "whole.k",
    "whole.m",
    "whole.zz",
    "sfl.abcdef",
    "sfl.a",
    "sfr.abcdef",
    "sll.abcdefg",
    "slr.abcdefg",
    "spl.x-y--z",
    "spl.--x",
    "lr.abcdef",
    "lr.ab",
    "full",
    "single",
    "unmapped.x",
];

#[tokio::test]
async fn every_destination_form_maps_as_nats_server_maps_it() {
    let theirs = reference(FORMS, false).await;
    let (our, _dir) = ours(FORMS, false).await;
    let want = published_as(&theirs.url(), FORM_SUBJECTS).await;
    let got = published_as(&format!("nats://{}", our.addr()), FORM_SUBJECTS).await;
    assert_eq!(got, want, "ours vs nats-server");
    // And they are what the mapping rules say, not merely equal.
    for expected in [
        "lit.dest",
        "lit.not",
        "wc.b.a",
        "moved.x.y.z",
        "mixed.a.b.c",
        "sfl.ab.cdef",
        "sfl.a",
        "sfr.abcd.ef",
        "sll.abc.def.g",
        "slr.a.bcd.efg",
        "spl.x.y.z",
        "lr.ab.ef",
        "lr.ab.ab",
        "full.one",
        "single.one",
        "unmapped.x",
    ] {
        assert!(got.iter().any(|s| s == expected), "{expected} in {got:?}");
    }
    // `spl.--x` maps to `spl..x`, a malformed subject: delivered to no one
    // (by either server).
    assert_eq!(got.len(), FORM_SUBJECTS.len() - 1, "{got:?}");
    assert!(!got.iter().any(|s| s.starts_with("spl..")), "{got:?}");
}

#[tokio::test]
async fn jetstream_stores_the_destination_subject() {
    let config = "mappings {\n  \"orders.*\": \"store.orders.$1\"\n}\n";
    let theirs = reference(config, true).await;
    let (our, _dir) = ours(config, true).await;
    let mut results = Vec::new();
    for url in [theirs.url(), format!("nats://{}", our.addr())] {
        let c = client(&url).await;
        let js = async_nats::jetstream::new(c);
        let stream = js
            .create_stream(async_nats::jetstream::stream::Config {
                name: "S".into(),
                subjects: vec!["store.>".into()],
                ..Default::default()
            })
            .await
            .expect("stream");
        let ack = js
            .publish("orders.7", "o7".into())
            .await
            .expect("publish")
            .await
            .expect("puback");
        let stored = stream
            .get_raw_message(ack.sequence)
            .await
            .expect("stored message");
        results.push((ack.stream, ack.sequence, stored.subject.to_string()));
    }
    assert_eq!(results[1], results[0], "ours vs nats-server");
    assert_eq!(results[1], ("S".to_owned(), 1, "store.orders.7".to_owned()));
}

const ACCOUNTS: &str = r#"
mappings { "g": "g.mapped" }
accounts {
  A: {
    users: [ {user: a, password: a} ]
    mappings { "x": "y", "p.*": "q.$1" }
  }
  B: {
    users: [ {user: b, password: b} ]
  }
}
"#;

/// Connects as `user` (password = name).
async fn login(addr: &str, user: &str) -> async_nats::Client {
    async_nats::ConnectOptions::with_user_and_password(user.into(), user.into())
        .connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to {addr} as {user}: {e}"))
}

/// What `a` and `b` see of what each publishes.
async fn account_view(addr: &str) -> (Vec<String>, Vec<String>) {
    let a = login(addr, "a").await;
    let b = login(addr, "b").await;
    let mut in_a = a.subscribe(">").await.expect("sub");
    let mut in_b = b.subscribe(">").await.expect("sub");
    a.flush().await.expect("flush");
    b.flush().await.expect("flush");
    for s in ["x", "p.1", "g"] {
        a.publish(s, "m".into()).await.expect("publish");
        b.publish(s, "m".into()).await.expect("publish");
    }
    a.flush().await.expect("flush");
    b.flush().await.expect("flush");
    (subjects(&mut in_a).await, subjects(&mut in_b).await)
}

#[tokio::test]
async fn an_accounts_mappings_apply_to_its_own_publishes_only() {
    let theirs = reference(ACCOUNTS, false).await;
    let (our, _dir) = ours(ACCOUNTS, false).await;
    let want = account_view(&format!("127.0.0.1:{}", theirs.port())).await;
    let got = account_view(&our.addr().to_string()).await;
    assert_eq!(got, want, "ours vs nats-server");
    assert_eq!(got.0, ["y", "q.1", "g"]);
    assert_eq!(got.1, ["x", "p.1", "g"]);
}

/// Raw protocol: logs in as `user` (password = name) and returns what the
/// server answers to `ops` (until quiet), server PINGs left out.
async fn transcript(addr: &str, user: &str, ops: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut byte = [0u8; 1];
    let mut info = Vec::new();
    while !info.ends_with(b"\r\n") {
        s.read_exact(&mut byte).await.expect("INFO");
        info.push(byte[0]);
    }
    s.write_all(format!("CONNECT {{\"verbose\":false,\"pedantic\":false,\"user\":\"{user}\",\"pass\":\"{user}\"}}\r\n{ops}PING\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).replace("PING\r\n", "")
}

const PERMISSIONS: &str = r#"
authorization {
  users: [
    {user: p, password: p, permissions: {publish: {allow: ["a", "y"]}, subscribe: ">"}}
  ]
}
mappings { "a": "b", "x": "a" }
"#;

#[tokio::test]
async fn permissions_judge_the_mapped_subject() {
    let theirs = reference(PERMISSIONS, false).await;
    let (our, _dir) = ours(PERMISSIONS, false).await;
    let ops = "SUB > 1\r\nPUB a 1\r\n1\r\nPUB x 1\r\n2\r\nPUB y 1\r\n3\r\n";
    let want = transcript(&format!("127.0.0.1:{}", theirs.port()), "p", ops).await;
    let got = transcript(&our.addr().to_string(), "p", ops).await;
    assert_eq!(got, want, "ours vs nats-server");
    assert!(
        got.contains("Permissions Violation for Publish to \"b\""),
        "{got}"
    );
    assert!(got.contains("MSG a 1 1\r\n2\r\n"), "{got}");
}

#[tokio::test]
async fn weights_share_messages_out_on_both_servers() {
    let config = "mappings {\n  w: [ {destination: w.one, weight: 50%}, {destination: w.two, weight: 30%} ]\n}\n";
    let theirs = reference(config, false).await;
    let (our, _dir) = ours(config, false).await;
    for (who, url) in [
        ("nats-server", theirs.url()),
        ("ours", format!("nats://{}", our.addr())),
    ] {
        let subjects_out = vec!["w"; 1000];
        let got = published_as(&url, &subjects_out).await;
        let count = |s: &str| got.iter().filter(|g| *g == s).count();
        let (one, two, rest) = (count("w.one"), count("w.two"), count("w"));
        assert_eq!(one + two + rest, 1000, "{who}: {got:?}");
        // 50% / 30% / the remaining 20% stays on `w`, with wide margins.
        assert!((400..=600).contains(&one), "{who}: w.one {one}");
        assert!((200..=400).contains(&two), "{who}: w.two {two}");
        assert!((100..=300).contains(&rest), "{who}: w {rest}");
    }
}

#[test]
fn bad_mappings_stop_the_start_with_nats_servers_words() {
    for config in [
        "mappings {\n  a: \"b.*\"\n}\n",
        "mappings {\n  \"a..b\": b\n}\n",
        "mappings {\n  a: \"b.{{wildcard(1)}}\"\n}\n",
        "mappings {\n  \"a.*\": \"b.{{wildcard(2)}}\"\n}\n",
        "mappings {\n  \"a.*\": \"b.{{foo(1)}}\"\n}\n",
        "mappings {\n  \"a.*\": \"b.{{wildcard()}}\"\n}\n",
        "mappings {\n  \"a.*\": \"b.{{left(1,2,3)}}\"\n}\n",
        "mappings {\n  \"a.*\": \"b..c\"\n}\n",
        "mappings {\n  \"a.>\": \"b\"\n}\n",
        "mappings {\n  \"a.*\": [{destination: \"b.$1\", weight: 60%}, {destination: \"c.$1\", weight: 50%}]\n}\n",
        "mappings {\n  \"a.*\": [{destination: \"b.$1\", weight: 10}, {destination: \"b.$1\", weight: 10}]\n}\n",
        "mappings {\n  \"a.*\": {destination: \"b.$1\"}\n}\n",
        "mappings {\n  \"a.*\": 5\n}\n",
        "mappings {\n  a: {destination: b, weight: \"x%\"}\n}\n",
        "mappings {\n  a: {destination: b, weight: 101}\n}\n",
        "mappings {\n  a: {destination: b, weight: 100, color: red}\n}\n",
        "accounts {\n  A: {\n    mappings {\n      \"a.*\": \"b.{{wildcard(3)}}\"\n    }\n  }\n}\n",
    ] {
        let theirs = reference_refusal(config);
        let ours = our_refusal(config);
        assert!(
            ours.contains(&theirs),
            "config:\n{config}\nnats-server: {theirs}\nours:        {ours}"
        );
        assert!(
            ours.contains("mappings") && ours.contains("line "),
            "names the key and line: {ours}"
        );
    }
}

#[test]
fn cluster_scoped_destinations_are_refused_not_ignored() {
    let err =
        our_refusal("mappings {\n  a: [ {destination: b, weight: 100%, cluster: east} ]\n}\n");
    assert_eq!(
        err,
        "server.conf: line 2: mappings: cluster is not supported yet by this server; refusing to start"
    );
}

#[tokio::test]
async fn a_server_without_mappings_leaves_subjects_alone() {
    let (our, _dir) = ours("port: -1\n", false).await;
    let got = published_as(&format!("nats://{}", our.addr()), &["a", "b.c"]).await;
    assert_eq!(got, ["a", "b.c"]);
}

const SERVICE: &str = r#"
accounts {
  A: {
    users: [ {user: a, password: a} ]
    exports: [ {service: "svc.>"} ]
    mappings { "svc.old": "svc.new" }
  }
  B: {
    users: [ {user: b, password: b} ]
    imports: [ {service: {account: A, subject: "svc.>"}} ]
  }
}
"#;

/// A raw connection logged in as `user` (password = name), CONNECT and a
/// PING answered.
async fn raw_login(addr: &str, user: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut byte = [0u8; 1];
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        s.read_exact(&mut byte).await.expect("INFO");
        line.push(byte[0]);
    }
    s.write_all(format!("CONNECT {{\"verbose\":false,\"pedantic\":false,\"user\":\"{user}\",\"pass\":\"{user}\"}}\r\nPING\r\n").as_bytes())
        .await
        .expect("write");
    let mut got = Vec::new();
    while !got.ends_with(b"PONG\r\n") {
        s.read_exact(&mut byte).await.expect("PONG");
        got.push(byte[0]);
    }
    s
}

/// Where B's requests on `svc.old` and `svc.other` arrive in A (the
/// subjects of A's MSG lines; raw protocol, so nothing but the servers
/// decides).
async fn service_view(addr: &str) -> Vec<String> {
    let mut a = raw_login(addr, "a").await;
    let mut b = raw_login(addr, "b").await;
    a.write_all(b"SUB svc.> 1\r\nPING\r\n").await.expect("sub");
    let mut byte = [0u8; 1];
    let mut got = Vec::new();
    while !got.ends_with(b"PONG\r\n") {
        a.read_exact(&mut byte).await.expect("PONG");
        got.push(byte[0]);
    }
    b.write_all(b"PUB svc.old reply.to 1\r\nr\r\nPUB svc.other reply.to 1\r\nr\r\nPING\r\n")
        .await
        .expect("pub");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), a.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| l.strip_prefix("MSG ").or_else(|| l.strip_prefix("HMSG ")))
        .filter_map(|l| l.split(' ').next().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn the_exporters_mappings_apply_to_service_requests() {
    let theirs = reference(SERVICE, false).await;
    let (our, _dir) = ours(SERVICE, false).await;
    let want = service_view(&format!("127.0.0.1:{}", theirs.port())).await;
    let got = service_view(&our.addr().to_string()).await;
    assert_eq!(got, want, "ours vs nats-server; its log:\n{}", theirs.log());
    assert_eq!(got, ["svc.new", "svc.other"]);
}

#[tokio::test]
async fn random_picks_every_number_below_n_on_both_servers() {
    let config = "mappings {\n  r: \"r.{{random(3)}}\"\n  \"q.*\": \"q.{{Random(2)}}.$1\"\n}\n";
    let theirs = reference(config, false).await;
    let (our, _dir) = ours(config, false).await;
    for (who, url) in [
        ("nats-server", theirs.url()),
        ("ours", format!("nats://{}", our.addr())),
    ] {
        let mut out = vec!["r"; 300];
        out.extend(vec!["q.x"; 100]);
        let mut got = published_as(&url, &out).await;
        got.sort();
        got.dedup();
        assert_eq!(got, ["q.0.x", "q.1.x", "r.0", "r.1", "r.2"], "{who}");
    }
}
