//! The monitoring endpoints report what happened, with nats-server's field names.

use std::time::Duration;

use bus_embedded_server::{ServerConfig, start};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn varz_connz_subsz_healthz_and_metrics_report_traffic() {
    let server = start(ServerConfig {
        port: 0,
        http_port: Some(0),
        ..ServerConfig::default()
    })
    .await
    .expect("start");
    let port = server.monitor_port().expect("monitoring on");
    let client = async_nats::ConnectOptions::new()
        .name("monitored")
        .connect(server.client_url())
        .await
        .expect("connect");
    let _sub = client.subscribe("m.>").await.expect("sub");
    for _ in 0..5 {
        client
            .publish("m.x", Bytes::from_static(b"hello"))
            .await
            .expect("pub");
    }
    client.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(100)).await;

    let (status, body) = get(port, "/varz").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["in_msgs"], 5);
    assert_eq!(v["out_msgs"], 5);
    assert_eq!(v["in_bytes"], 25);
    assert_eq!(v["connections"], 1);
    assert_eq!(v["subscriptions"], 1);
    assert!(v["mem"].as_u64().unwrap_or(0) > 0, "{v}");
    assert_eq!(v["port"], server.addr().port());
    assert!(v["server_id"].as_str().is_some_and(|s| !s.is_empty()));

    let (_, body) = get(port, "/connz").await;
    let c: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(c["num_connections"], 1);
    assert_eq!(c["connections"][0]["name"], "monitored");
    assert_eq!(c["connections"][0]["subscriptions"], 1);
    assert_eq!(c["connections"][0]["in_msgs"], 5);

    let (_, body) = get(port, "/subsz").await;
    let s: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(s["num_subscriptions"], 1);

    let (status, body) = get(port, "/healthz").await;
    assert_eq!(status, 200);
    assert!(body.contains("\"ok\""), "{body}");

    let (status, body) = get(port, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("nats_varz_in_msgs 5"), "{body}");
    assert!(
        body.contains("# TYPE nats_varz_connections gauge"),
        "{body}"
    );

    let (status, _) = get(port, "/nope").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn jsz_reports_streams_consumers_and_their_positions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(ServerConfig {
        port: 0,
        http_port: Some(0),
        jetstream: Some(bus_embedded_server::jetstream::JetStreamConfig {
            store_dir: dir.path().to_owned(),
            ..Default::default()
        }),
        ..ServerConfig::default()
    })
    .await
    .expect("start");
    let port = server.monitor_port().expect("monitoring on");
    let client = async_nats::connect(server.client_url())
        .await
        .expect("connect");
    let js = async_nats::jetstream::new(client);
    let stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "ORDERS".into(),
            subjects: vec!["orders.>".into()],
            ..Default::default()
        })
        .await
        .expect("stream");
    for i in 0..10 {
        js.publish(format!("orders.{i}"), Bytes::from_static(b"x"))
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("billing".into()),
            ..Default::default()
        })
        .await
        .expect("consumer");
    use futures::StreamExt;
    let mut batch = consumer
        .fetch()
        .max_messages(4)
        .messages()
        .await
        .expect("fetch");
    let mut n = 0;
    while let Some(m) = batch.next().await {
        let m = m.expect("message");
        n += 1;
        if n <= 3 {
            m.double_ack().await.expect("ack");
        }
    }
    assert_eq!(n, 4);

    let (status, body) = get(port, "/jsz?streams=true&consumers=true").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["streams"], 1);
    assert_eq!(v["consumers"], 1);
    assert_eq!(v["messages"], 10);
    // The JetStream API level, as nats-server 2.11+ shows it.
    assert_eq!(v["api"]["level"], 1);
    let s = &v["account_details"][0]["stream_detail"][0];
    assert_eq!(s["name"], "ORDERS");
    assert_eq!(s["state"]["last_seq"], 10);
    let c = &s["consumer_detail"][0];
    assert_eq!(c["name"], "billing");
    assert_eq!(c["delivered"]["stream_seq"], 4);
    assert_eq!(c["ack_floor"]["stream_seq"], 3);
    assert_eq!(c["num_ack_pending"], 1);
    assert_eq!(c["num_pending"], 6);

    let (status, body) = get(port, "/healthz").await;
    assert_eq!((status, body.contains("ok")), (200, true));
    let (_, metrics) = get(port, "/metrics").await;
    assert!(
        metrics.contains("nats_jetstream_stream_messages{stream=\"ORDERS\"} 10"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "nats_jetstream_consumer_num_pending{stream=\"ORDERS\",consumer=\"billing\"} 6"
        ),
        "{metrics}"
    );
    server.shutdown(Duration::from_secs(1)).await;
}
