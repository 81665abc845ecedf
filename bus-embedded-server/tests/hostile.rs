//! Hostile input beyond the protocol parser's own tests (those, with
//! oversized control lines, overflowing sizes and garbage, whole and split,
//! are in differential.rs, limits.rs and the parser's unit tests): a stuck
//! subscriber's effect on healthy ones, measured, and absurd JetStream API
//! requests, which must each get an answer while the server keeps serving.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bus_embedded_server::jetstream::JetStreamConfig;
use bus_embedded_server::{ServerConfig, start};
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Publishes `total` messages of 512 B to `load` and returns the rate at
/// which a healthy async-nats subscriber received them (all of them).
async fn healthy_rate(url: &str, total: usize) -> f64 {
    let healthy = async_nats::connect(url).await.expect("connect");
    let mut sub = healthy.subscribe("load").await.expect("sub");
    healthy.flush().await.expect("flush");
    let publisher = async_nats::connect(url).await.expect("connect");
    let body = Bytes::from(vec![b'x'; 512]);
    let began = Instant::now();
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
    assert_eq!(got, total, "a healthy subscriber lost messages");
    total as f64 / began.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_subscribers_keep_receiving_while_a_stuck_one_is_cut_off() {
    let server = start(ServerConfig {
        port: 0,
        max_pending: 2 * 1024 * 1024,
        ..ServerConfig::default()
    })
    .await
    .expect("start");
    let url = server.client_url();
    let total = 40_000;
    let baseline = healthy_rate(&url, total).await;

    // Three subscribers that never read a byte.
    let mut stuck = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(server.addr()).await.expect("tcp");
        s.write_all(b"CONNECT {\"verbose\":false}\r\nSUB load 1\r\nPING\r\n")
            .await
            .expect("sub");
        stuck.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let during = healthy_rate(&url, total).await;
    assert_eq!(
        server.stats().slow_consumers.load(Ordering::Relaxed),
        3,
        "each stuck subscriber is closed as a slow consumer"
    );
    // A measurement, not a pass/fail criterion (shared machines are noisy):
    // the stuck subscribers cost the healthy one at most the 10 ms per read
    // a producer may be held back for a slower consumer, until they are cut.
    eprintln!(
        "healthy subscriber: {baseline:.0} msgs/s alone, {during:.0} msgs/s with 3 stuck \
         subscribers being cut off ({:.2}x)",
        during / baseline
    );
    drop(stuck);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_jetstream_requests_get_answers_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(ServerConfig {
        port: 0,
        jetstream: Some(JetStreamConfig {
            store_dir: dir.path().to_owned(),
            ..JetStreamConfig::default()
        }),
        ..ServerConfig::default()
    })
    .await
    .expect("start");
    let client = async_nats::connect(server.client_url())
        .await
        .expect("connect");
    let ok = client
        .request(
            "$JS.API.STREAM.CREATE.S",
            Bytes::from_static(br#"{"name":"S","subjects":["s.>"]}"#),
        )
        .await
        .expect("create");
    assert!(!String::from_utf8_lossy(&ok.payload).contains("\"error\""));
    client
        .request(
            "$JS.API.CONSUMER.CREATE.S.C",
            Bytes::from_static(
                br#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit"}}"#,
            ),
        )
        .await
        .expect("consumer");

    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let many_subjects = format!(
        r#"{{"name":"M","subjects":[{}]}}"#,
        (0..20_000)
            .map(|i| format!("\"m.{i}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    let long_name = format!(r#"{{"name":"{}"}}"#, "N".repeat(100_000));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("$JS.API.STREAM.CREATE.X", deep.clone().into_bytes()),
        ("$JS.API.STREAM.CREATE.M", many_subjects.into_bytes()),
        ("$JS.API.STREAM.CREATE.N", long_name.into_bytes()),
        ("$JS.API.STREAM.CREATE.X", vec![0xff, 0xfe, 0x00, 0x80]),
        (
            "$JS.API.STREAM.CREATE.X",
            br#"{"name":"X","max_msgs":9223372036854775807,"max_bytes":-9223372036854775808,"max_age":9223372036854775807,"duplicate_window":1}"#.to_vec(),
        ),
        (
            "$JS.API.STREAM.CREATE.Y",
            br#"{"name":"Y","max_age":1e309}"#.to_vec(),
        ),
        ("$JS.API.STREAM.UPDATE.S", deep.clone().into_bytes()),
        ("$JS.API.STREAM.INFO.S", br#"{"subjects_filter":">","offset":18446744073709551615}"#.to_vec()),
        ("$JS.API.STREAM.PURGE.S", br#"{"seq":18446744073709551615,"keep":18446744073709551615}"#.to_vec()),
        ("$JS.API.STREAM.MSG.GET.S", br#"{"seq":18446744073709551615}"#.to_vec()),
        ("$JS.API.STREAM.MSG.DELETE.S", br#"{"seq":18446744073709551615}"#.to_vec()),
        ("$JS.API.STREAM.NAMES", br#"{"offset":-1,"subject":"*.*.*.>"}"#.to_vec()),
        (
            "$JS.API.CONSUMER.CREATE.S.D",
            br#"{"stream_name":"S","config":{"durable_name":"D","ack_wait":-1,"max_deliver":-9,"backoff":[-1,0,9223372036854775807],"max_ack_pending":-5}}"#.to_vec(),
        ),
        (
            "$JS.API.CONSUMER.CREATE.S.E",
            br#"{"stream_name":"S","config":{"durable_name":"E","deliver_policy":"by_start_sequence","opt_start_seq":18446744073709551615}}"#.to_vec(),
        ),
        ("$JS.API.CONSUMER.CREATE.S", deep.into_bytes()),
        ("$JS.API.CONSUMER.INFO.S.C", vec![b'x'; 500_000]),
    ];
    for (subject, body) in cases {
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            client.request(subject.to_owned(), Bytes::from(body)),
        )
        .await
        .unwrap_or_else(|_| panic!("{subject}: no answer within 10 s"))
        .unwrap_or_else(|e| panic!("{subject}: {e}"));
        let text = String::from_utf8_lossy(&reply.payload);
        let v: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{subject}: {e}: {text}"));
        assert!(v["type"].is_string(), "{subject}: {text}");
    }
    // Absurd pull requests: each gets a status, none stalls the consumer.
    for body in [
        r#"{"batch":18446744073709551615}"#,
        r#"{"batch":-1,"expires":-1}"#,
        r#"{"batch":1,"max_bytes":-1,"no_wait":true}"#,
        r#"{"batch":1,"expires":9223372036854775807,"idle_heartbeat":9223372036854775807}"#,
        "[[[[[[",
    ] {
        let inbox = client.new_inbox();
        let mut sub = client.subscribe(inbox.clone()).await.expect("sub");
        client
            .publish_with_reply("$JS.API.CONSUMER.MSG.NEXT.S.C", inbox, body.into())
            .await
            .expect("pull");
        if body.contains("no_wait") || body.starts_with('[') {
            let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
                .await
                .unwrap_or_else(|_| panic!("{body}: no status"))
                .expect("message");
            assert!(m.status.is_some(), "{body}: expected a status, got {m:?}");
        }
    }
    // Still serving: a publish is stored and acknowledged.
    let ack = client
        .request("s.ok", Bytes::from_static(b"fine"))
        .await
        .expect("publish");
    let text = String::from_utf8_lossy(&ack.payload);
    assert!(text.contains("\"seq\":1"), "{text}");
    server.shutdown(Duration::from_secs(1)).await;
}
