//! `angzarr-bus console` against an external nats-server 2.15.1 that
//! requires a password: the console listens on loopback, asks the browser
//! for the server's credentials, shows the bus's streams, consumers and dead
//! letters, and never shows the password.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use bus::{Backend, BusConfig, ConsumerConfig};
use nats_test_server::{NatsServer, ServerOptions};

const BIN: &str = env!("CARGO_BIN_EXE_angzarr-bus");

fn get(addr: &str, path: &str, auth: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the console");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut req = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    if let Some(a) = auth {
        req.push_str(&format!("authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_command_serves_an_external_nats_on_loopback_behind_its_credentials() {
    let server = NatsServer::start_with(ServerOptions::default().with_user("ops", "pw-9x7")).await;
    let mut config = BusConfig {
        backend: Backend::Nats,
        ..BusConfig::default()
    };
    config.nats.url = server.url();
    config.nats.user = Some("ops".into());
    config.nats.password = Some("pw-9x7".into());
    let bus = bus::open(&config).await.expect("open");
    let mut c = bus
        .consumer(ConsumerConfig::new("billing", bus.layout().all()))
        .await
        .expect("consumer");
    bus.publish(bus_core_event()).await.expect("publish");
    let d = tokio::time::timeout(Duration::from_secs(10), c.next())
        .await
        .expect("delivery")
        .expect("next");
    d.term("card declined").await.expect("term");

    let mut child = Command::new(BIN)
        .args(["--url", &server.url(), "console", "--listen", "127.0.0.1:0"])
        .env("NATS_USER", "ops")
        .env("NATS_PASSWORD", "pw-9x7")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn angzarr-bus console");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    let read = tokio::task::spawn_blocking(move || {
        let mut r = BufReader::new(stdout);
        r.read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("the console starts within 20 s")
        .expect("join")
        .expect("read");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    assert!(addr.starts_with("127.0.0.1:"), "{line}");

    let addr2 = addr.clone();
    let results = tokio::task::spawn_blocking(move || {
        let unauthenticated = get(&addr2, "/console/streams", None);
        // "ops:pw-9x7" in base64.
        let auth = "Basic b3BzOnB3LTl4Nw==";
        let pages: Vec<(u16, String)> = [
            "/console/streams",
            "/console/consumers",
            "/console/dead-letters",
            "/console/events?aggregate_type=player",
        ]
        .iter()
        .map(|p| get(&addr2, p, Some(auth)))
        .collect();
        (unauthenticated, pages)
    })
    .await
    .expect("join");
    let _ = child.kill();
    let _ = child.wait();
    let (unauthenticated, pages) = results;
    assert_eq!(unauthenticated.0, 401, "{}", unauthenticated.1);
    for (status, text) in &pages {
        assert_eq!(*status, 200, "{text}");
        assert!(
            !text.contains("pw-9x7"),
            "a page shows the password: {text}"
        );
    }
    assert!(pages[0].1.contains("angzarr-events-dlq"), "{}", pages[0].1);
    assert!(pages[1].1.contains("billing"), "{}", pages[1].1);
    assert!(pages[2].1.contains("card declined"), "{}", pages[2].1);
    assert!(pages[3].1.contains("FundsDeposited"), "{}", pages[3].1);
    c.close().await.expect("close");
    bus.close().await.expect("close");
}

fn bus_core_event() -> bus::EventEnvelope {
    let mut e =
        bus::EventEnvelope::from_message("player", "p-1", 1, &prost_types::Duration::default());
    "FundsDeposited".clone_into(&mut e.event_type);
    e
}
