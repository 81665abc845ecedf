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
    // The JetStream API level, as nats-server 2.11+ shows it: 4, the level
    // of nats-server 2.14 whose features this server has (2.15.1 says 5).
    assert_eq!(v["api"]["level"], 4);
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

/// Issue #13 item 5: `/jsz` shows what a consumer's info shows of the new
/// state: a paused consumer (`paused`, `pause_remaining`) and a pinned
/// client's id in `priority_groups`, as nats-server's consumer details do.
#[tokio::test]
async fn jsz_shows_paused_consumers_and_pinned_clients() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(ServerConfig {
        port: 0,
        http_port: Some(0),
        jetstream: Some(bus_embedded_server::JetStreamConfig {
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
    let api = |subject: &str, body: serde_json::Value| {
        let client = client.clone();
        let subject = subject.to_owned();
        async move {
            let reply = client
                .request(subject.clone(), body.to_string().into())
                .await
                .expect("api reply");
            let v: serde_json::Value = serde_json::from_slice(&reply.payload).expect("json");
            assert!(v.get("error").is_none(), "{subject}: {v}");
            v
        }
    };
    api(
        "$JS.API.STREAM.CREATE.P",
        serde_json::json!({"name": "P", "subjects": ["p.>"]}),
    )
    .await;
    client
        .request("p.1", Bytes::from_static(b"x"))
        .await
        .expect("stored");
    api(
        "$JS.API.CONSUMER.CREATE.P.HELD",
        serde_json::json!({"stream_name": "P", "config": {"durable_name": "HELD", "ack_policy": "explicit"}}),
    )
    .await;
    api(
        "$JS.API.CONSUMER.PAUSE.P.HELD",
        serde_json::json!({"pause_until": "2999-01-01T00:00:00Z"}),
    )
    .await;
    api(
        "$JS.API.CONSUMER.CREATE.P.PINNED",
        serde_json::json!({"stream_name": "P", "config": {
            "durable_name": "PINNED", "ack_policy": "explicit",
            "priority_policy": "pinned_client", "priority_groups": ["g"],
            "priority_timeout": 60_000_000_000i64}}),
    )
    .await;
    // A pull on its own inbox subscription (as the clients' fetch does).
    let inbox = client.new_inbox();
    let mut deliveries = client.subscribe(inbox.clone()).await.expect("inbox");
    client
        .publish_with_reply(
            "$JS.API.CONSUMER.MSG.NEXT.P.PINNED",
            inbox,
            serde_json::json!({"batch": 1, "group": "g", "expires": 2_000_000_000})
                .to_string()
                .into(),
        )
        .await
        .expect("pull");
    use futures::StreamExt;
    let pulled = tokio::time::timeout(Duration::from_secs(5), deliveries.next())
        .await
        .expect("a delivery in time")
        .expect("pulled");
    let pin = pulled
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Pin-Id"))
        .map(|v| v.as_str().to_owned())
        .expect("a pinned delivery carries its pin id");

    let (status, body) = get(port, "/jsz?consumers=true").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let consumers = v["account_details"][0]["stream_detail"][0]["consumer_detail"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let by_name = |name: &str| {
        consumers
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} missing from /jsz: {body}"))
    };
    let held = by_name("HELD");
    assert_eq!(held["paused"], true, "{held}");
    assert!(
        held["pause_remaining"].as_i64().is_some_and(|r| r > 0),
        "{held}"
    );
    let pinned = by_name("PINNED");
    assert_eq!(pinned["priority_groups"][0]["group"], "g", "{pinned}");
    assert_eq!(
        pinned["priority_groups"][0]["pinned_client_id"],
        pin.as_str(),
        "{pinned}"
    );
    assert!(pinned.get("paused").is_none_or(|p| p == false), "{pinned}");
    server.shutdown(Duration::from_secs(1)).await;
}
