//! The same raw protocol sent to nats-server 2.15.1 and to ours: what comes
//! back must be the same. The INFO line is compared field by field, minus
//! only what truly differs (see [`info_fields`]). Each scenario is also sent
//! split at odd byte boundaries.

use std::time::Duration;

use bus_embedded_server::{ServerConfig, start};
use nats_test_server::{NatsServer, ServerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `input` in pieces of `chunk` bytes and returns what the server says
/// until it closes or goes quiet, without the INFO line.
async fn exchange(addr: &str, input: &[u8], chunk: usize) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut out = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        if s.write_all(piece).await.is_err() {
            break;
        }
        let _ = s.flush().await;
        if chunk < input.len() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await {
            Ok(Ok(0)) => {
                out.extend_from_slice(b"<closed>");
                break;
            }
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Ok(Err(_)) => {
                out.extend_from_slice(b"<closed>");
                break;
            }
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    match text.strip_prefix("INFO ") {
        Some(rest) => match rest.find("\r\n") {
            Some(i) => format!("INFO {}{}", info_fields(&rest[..i]), &rest[i..]),
            None => text,
        },
        None => text,
    }
}

/// The INFO JSON without what truly differs between the two servers:
/// values that change with every process or connection (`server_id`,
/// `server_name`, `port`, `client_id`, `nonce`), the implementation's own
/// identity (`version`, `go`, `git_commit`), the JetStream API level
/// (`api_lvl`: ours 4, nats-server 2.15.1's 5), and what nats-server sends
/// that this server does not implement yet (`xkey`, auth callout's
/// encryption key). Everything
/// else (`proto`, `headers`, `max_payload`, `host`, `client_ip`, flags such
/// as `auth_required`) must be equal. Keys come out sorted.
fn info_fields(json: &str) -> String {
    const DIFFER: [&str; 10] = [
        "server_id",
        "server_name",
        "port",
        "client_id",
        "nonce",
        "version",
        "go",
        "git_commit",
        "api_lvl",
        "xkey",
    ];
    let Ok(serde_json::Value::Object(mut fields)) = serde_json::from_str(json) else {
        return format!("<not JSON: {json}>");
    };
    fields.retain(|k, _| !DIFFER.contains(&k.as_str()));
    let sorted: std::collections::BTreeMap<_, _> = fields.into_iter().collect();
    serde_json::to_string(&sorted).unwrap_or_default()
}

const Q: &str = "CONNECT {\"verbose\":false}\r\n";
const V: &str = "CONNECT {}\r\n";
const H: &str = "CONNECT {\"verbose\":false,\"headers\":true,\"no_responders\":true}\r\n";

fn scenarios() -> Vec<(&'static str, String)> {
    let big = "x".repeat(1024 * 1024);
    vec![
        ("ping", "PING\r\n".to_owned()),
        (
            "verbose by default",
            format!("{V}SUB a 1\r\nPUB a 1\r\nx\r\nUNSUB 1\r\nPING\r\n"),
        ),
        (
            "pub sub",
            format!("{Q}SUB foo 1\r\nPUB foo 5\r\nhello\r\nPING\r\n"),
        ),
        (
            "reply subject",
            format!("{Q}SUB foo 1\r\nPUB foo bar 2\r\nhi\r\nPING\r\n"),
        ),
        (
            "wildcards",
            format!("{Q}SUB a.* 1\r\nSUB a.> 2\r\nPUB a.b 1\r\nx\r\nPUB a.b.c 1\r\ny\r\nPING\r\n"),
        ),
        (
            "lowercase ops and tabs",
            format!("{Q}sub\tfoo\t1\r\npub foo 1\r\nx\r\nping\r\n"),
        ),
        (
            "unsub max",
            format!(
                "{Q}SUB foo 1\r\nUNSUB 1 2\r\nPUB foo 1\r\na\r\nPUB foo 1\r\nb\r\nPUB foo 1\r\nc\r\nPING\r\n"
            ),
        ),
        ("unsub bad max", format!("{Q}UNSUB 1 x\r\nPING\r\n")),
        (
            "echo off",
            "CONNECT {\"verbose\":false,\"echo\":false}\r\nSUB foo 1\r\nPUB foo 1\r\nx\r\nPING\r\n"
                .to_owned(),
        ),
        (
            "headers",
            format!("{H}SUB foo 1\r\nHPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n"),
        ),
        (
            "no responders",
            format!("{H}SUB r 1\r\nPUB x r 1\r\nx\r\nPING\r\n"),
        ),
        (
            "hpub without headers closes",
            format!("{Q}SUB foo 1\r\nHPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n"),
        ),
        (
            "no responders needs headers",
            "CONNECT {\"no_responders\":true}\r\nPING\r\n".to_owned(),
        ),
        ("bad connect json", "CONNECT {bad\r\nPING\r\n".to_owned()),
        ("unknown op", format!("{Q}FOO\r\n")),
        ("pub without args", format!("{Q}PUB\r\n")),
        ("pub too many args", format!("{Q}PUB a b c d\r\nPING\r\n")),
        ("sub without sid", format!("{Q}SUB foo\r\n")),
        (
            "sub queue",
            format!("{Q}SUB foo bar baz\r\nPUB foo 1\r\nx\r\nPING\r\n"),
        ),
        ("unsub without args", format!("{Q}UNSUB\r\nPING\r\n")),
        ("negative size", format!("{Q}PUB foo -1\r\nPING\r\n")),
        (
            "overflowing size",
            format!("{Q}PUB foo 99999999999999999999999\r\n"),
        ),
        ("payload over max", format!("{Q}PUB foo 1048577\r\n")),
        (
            "payload at max",
            format!("{Q}PUB foo 1048576\r\n{big}\r\nPING\r\n"),
        ),
        (
            "payload not followed by crlf",
            format!("{Q}PUB foo 3\r\nabcXY\r\nPING\r\n"),
        ),
        (
            "control line over max",
            format!("{Q}SUB {} 1\r\n", "a".repeat(5000)),
        ),
        (
            "invalid sub subject",
            format!("{Q}SUB foo..bar 1\r\nPING\r\n"),
        ),
        (
            "invalid pub subject",
            format!("{Q}PUB foo.* 1\r\nx\r\nPUB foo. 1\r\nx\r\nPING\r\n"),
        ),
        (
            "duplicate sid",
            format!("{Q}SUB foo 1\r\nSUB foo 1\r\nPUB foo 1\r\nx\r\nPING\r\n"),
        ),
        ("bare newlines", format!("{Q}PUB foo 2\nab\r\nPING\n")),
        (
            "client info is ignored",
            format!("{Q}INFO {{}}\r\nPING\r\n"),
        ),
        (
            "hpub header longer than total",
            format!("{H}HPUB foo 5 3\r\n"),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_protocol_replies_match_nats_server() {
    let reference = NatsServer::start_with(ServerOptions::core()).await;
    let ours = start(ServerConfig {
        port: 0,
        ..ServerConfig::default()
    })
    .await
    .expect("ours starts");
    let ref_addr = format!("127.0.0.1:{}", reference.port());
    let our_addr = ours.addr().to_string();
    let mut differences = Vec::new();
    for (name, input) in scenarios() {
        for chunk in [usize::MAX, 7, 3] {
            // Trickling is slow (1 ms per piece): stay well under the 2 s
            // after which both servers send their first PING.
            if chunk != usize::MAX && input.len() / chunk > 600 {
                continue;
            }
            // When a PUB's arguments arrive split, nats-server sometimes
            // reports the bad subject twice (it re-checks once the split
            // arguments are reassembled; which splits do it varies); we
            // report each bad PUB once. Compared whole only.
            if name == "invalid pub subject" && chunk != usize::MAX {
                continue;
            }
            let (want, got) = tokio::join!(
                exchange(&ref_addr, input.as_bytes(), chunk),
                exchange(&our_addr, input.as_bytes(), chunk)
            );
            if want != got {
                differences.push(format!(
                    "{name} (chunks of {chunk}):\n  nats-server: {want:?}\n  ours:        {got:?}"
                ));
            }
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}
