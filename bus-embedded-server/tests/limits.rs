//! Limits and misbehaving clients: each closes the offending connection with
//! nats-server's error text and leaves the others alone.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bus_embedded_server::{ServerConfig, start};
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                out.extend_from_slice(b"<closed>");
                break;
            }
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn connection_over_max_connections_is_refused_with_the_nats_error() {
    let server = start(ServerConfig {
        port: 0,
        max_connections: 2,
        ..ServerConfig::default()
    })
    .await
    .expect("start");
    let _a = async_nats::connect(server.client_url())
        .await
        .expect("first");
    let _b = async_nats::connect(server.client_url())
        .await
        .expect("second");
    let mut third = TcpStream::connect(server.addr()).await.expect("tcp");
    let said = read_until_closed(&mut third, Duration::from_secs(3)).await;
    assert!(said.starts_with("INFO "), "{said}");
    assert!(
        said.contains("-ERR 'maximum connections exceeded'\r\n"),
        "{said}"
    );
    assert!(said.ends_with("<closed>"), "{said}");
}

#[tokio::test]
async fn client_that_never_answers_pings_is_closed_as_stale() {
    let server = start(ServerConfig {
        port: 0,
        ping_interval: Duration::from_millis(200),
        ping_max: 2,
        ..ServerConfig::default()
    })
    .await
    .expect("start");
    let mut s = TcpStream::connect(server.addr()).await.expect("tcp");
    s.write_all(b"CONNECT {\"verbose\":false}\r\n")
        .await
        .expect("connect");
    let said = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert_eq!(said.matches("PING\r\n").count(), 2, "{said}");
    assert!(
        said.contains("-ERR 'Stale Connection'\r\n<closed>"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_that_stops_reading_is_closed_and_others_keep_receiving() {
    let server = start(ServerConfig {
        port: 0,
        max_pending: 2 * 1024 * 1024,
        ..ServerConfig::default()
    })
    .await
    .expect("start");
    // A raw subscriber that never reads.
    let mut stuck = TcpStream::connect(server.addr()).await.expect("tcp");
    stuck
        .write_all(b"CONNECT {\"verbose\":false}\r\nSUB load 1\r\nPING\r\n")
        .await
        .expect("sub");
    let healthy = async_nats::connect(server.client_url())
        .await
        .expect("connect");
    let mut sub = healthy.subscribe("load").await.expect("sub");
    healthy.flush().await.expect("flush");
    let publisher = async_nats::connect(server.client_url())
        .await
        .expect("connect");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let total = 20_000;
    let body = Bytes::from(vec![b'x'; 512]);
    let receiver = tokio::spawn(async move {
        let mut got = 0;
        while got < total {
            match tokio::time::timeout(Duration::from_secs(10), sub.next()).await {
                Ok(Some(_)) => got += 1,
                _ => break,
            }
        }
        got
    });
    for _ in 0..total {
        publisher
            .publish("load", body.clone())
            .await
            .expect("publish");
    }
    publisher.flush().await.expect("flush");
    let got = receiver.await.expect("receiver");
    assert_eq!(got, total, "the healthy subscriber lost messages");
    assert_eq!(server.stats().slow_consumers.load(Ordering::Relaxed), 1);
    // The stuck connection was closed by the server.
    let mut buf = vec![0u8; 1 << 20];
    let mut closed = false;
    for _ in 0..200 {
        match tokio::time::timeout(Duration::from_secs(2), stuck.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) => continue,
            Err(_) => break,
        }
    }
    assert!(closed, "slow consumer still connected");
}

#[tokio::test]
async fn no_ping_before_connect_like_nats_server() {
    let server = start(ServerConfig {
        port: 0,
        ping_interval: Duration::from_millis(100),
        ..ServerConfig::default()
    })
    .await
    .expect("start");
    let mut s = TcpStream::connect(server.addr()).await.expect("tcp");
    let said = read_until_closed(&mut s, Duration::from_millis(600)).await;
    assert!(said.starts_with("INFO "), "{said}");
    assert!(!said.contains("PING"), "pinged before CONNECT: {said}");
}

/// A subscriber flooded with messages still gets its PONG promptly: the
/// PONG is queued behind data already pending, never behind data that keeps
/// arriving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pong_is_not_starved_by_a_flood_of_outbound_messages() {
    let server = start(ServerConfig {
        port: 0,
        ..ServerConfig::default()
    })
    .await
    .expect("start");
    let mut sub = TcpStream::connect(server.addr()).await.expect("tcp");
    sub.write_all(b"CONNECT {\"verbose\":false}\r\nSUB flood 1\r\nPING\r\n")
        .await
        .expect("sub");
    let mut buf = vec![0u8; 1 << 16];
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("PONG") {
        let n = sub.read(&mut buf).await.expect("read");
        seen.extend_from_slice(&buf[..n]);
    }
    let publisher = async_nats::connect(server.client_url())
        .await
        .expect("connect");
    let flooding = tokio::spawn(async move {
        let body = Bytes::from(vec![b'x'; 256]);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::time::Instant::now() < deadline {
            for _ in 0..1000 {
                if publisher.publish("flood", body.clone()).await.is_err() {
                    return;
                }
            }
            let _ = publisher.flush().await;
        }
    });
    // Let the flood build up, then ask.
    let mut received = 0usize;
    let warmup = tokio::time::Instant::now() + Duration::from_millis(500);
    while tokio::time::Instant::now() < warmup {
        received += sub.read(&mut buf).await.expect("read");
    }
    sub.write_all(b"PING\r\n").await.expect("ping");
    let asked = tokio::time::Instant::now();
    let mut tail: Vec<u8> = Vec::new();
    let mut answered = None;
    while asked.elapsed() < Duration::from_secs(10) {
        let n = sub.read(&mut buf).await.expect("read");
        received += n;
        tail.extend_from_slice(&buf[..n]);
        if tail.windows(6).any(|w| w == b"PONG\r\n") {
            answered = Some(asked.elapsed());
            break;
        }
        let keep = tail.len().saturating_sub(8);
        tail.drain(..keep);
    }
    flooding.abort();
    assert!(
        received > 100_000,
        "no flood reached the subscriber ({received} bytes)"
    );
    let answered = answered.expect("no PONG within 10 s while flooded");
    // Not a speed goal: only that the PONG is not starved by the ongoing flood.
    assert!(answered < Duration::from_secs(5), "PONG after {answered:?}");
}

/// What a connection sees when it subscribes past `max_subs`: the SUB is
/// refused with -ERR and the connection stays open (issue #12 item 10).
async fn subscribe_past_max_subs(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("tcp");
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).await.expect("INFO");
    assert!(buf[..n].starts_with(b"INFO "));
    s.write_all(
        b"CONNECT {\"verbose\":true,\"pedantic\":false}\r\nSUB a 1\r\nSUB b 2\r\nSUB c 3\r\nPING\r\n",
    )
    .await
    .expect("write");
    let mut said = read_until_closed(&mut s, Duration::from_millis(500)).await;
    // Still open: a second PING is answered.
    s.write_all(b"PING\r\n").await.expect("write");
    said.push_str(&read_until_closed(&mut s, Duration::from_millis(500)).await);
    said
}

#[tokio::test]
async fn subscriptions_past_max_subs_are_refused_like_nats_server() {
    let ours = start(ServerConfig {
        port: 0,
        max_subs: 2,
        ..ServerConfig::default()
    })
    .await
    .expect("start");
    let reference = nats_test_server::NatsServer::start_with(nats_test_server::ServerOptions {
        extra_config: Some("max_subs: 2".into()),
        ..nats_test_server::ServerOptions::core()
    })
    .await;
    let want = subscribe_past_max_subs(reference.url().trim_start_matches("nats://")).await;
    let got = subscribe_past_max_subs(&ours.addr().to_string()).await;
    assert_eq!(
        want,
        "+OK\r\n+OK\r\n+OK\r\n-ERR 'maximum subscriptions exceeded'\r\nPONG\r\nPONG\r\n"
    );
    assert_eq!(got, want);
}

/// A consumer configured with an absurd max_waiting (nats-server accepts
/// any) still holds at most 65,536 pull requests: the ones past it get
/// 409 Exceeded MaxWaiting instead of growing memory (issue #12 item 10).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_requests_past_the_waiting_ceiling_are_refused_whatever_max_waiting_says() {
    const CEILING: usize = 65_536;
    const SENT: usize = CEILING + 1_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(ServerConfig {
        port: 0,
        jetstream: Some(bus_embedded_server::JetStreamConfig {
            store_dir: dir.path().to_path_buf(),
            ..Default::default()
        }),
        ..ServerConfig::default()
    })
    .await
    .expect("start");
    let client = async_nats::connect(server.client_url())
        .await
        .expect("connect");
    let js = async_nats::jetstream::new(client.clone());
    let stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "W".into(),
            subjects: vec!["w.>".into()],
            ..Default::default()
        })
        .await
        .expect("stream");
    let mut consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("C".into()),
            max_waiting: 1_000_000_000,
            ..Default::default()
        })
        .await
        .expect("consumer");
    // One connection listening on all the request inboxes, sending them all.
    let mut refusals = client.subscribe("_INBOX.w.>").await.expect("sub");
    client.flush().await.expect("flush");
    for i in 0..SENT {
        client
            .publish_with_reply(
                "$JS.API.CONSUMER.MSG.NEXT.W.C",
                format!("_INBOX.w.{i}"),
                Bytes::from_static(b"{\"batch\":1,\"expires\":60000000000}"),
            )
            .await
            .expect("publish");
    }
    client.flush().await.expect("flush");
    let mut refused = 0;
    while refused < SENT - CEILING {
        let m = tokio::time::timeout(Duration::from_secs(30), refusals.next())
            .await
            .expect("a refusal per request past the ceiling")
            .expect("message");
        let status = m.status.map(u16::from);
        assert_eq!(status, Some(409), "{:?}", m.description);
        assert_eq!(m.description.as_deref(), Some("Exceeded MaxWaiting"));
        refused += 1;
    }
    let info = consumer.info().await.expect("info");
    assert_eq!(info.num_waiting as usize, CEILING);
}
