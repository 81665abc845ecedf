//! Message tracing through async-nats, against our server: a trace-only
//! message reaches no subscriber and no stream while its event arrives; a
//! traced message is delivered with its headers and stored with the trace
//! header disabled; a subscriber that went away is not in the event; the
//! event itself is an ordinary message a stream can capture.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use bus_embedded_server::{ServerConfig, ServerHandle, jetstream::JetStreamConfig, start};
use futures::StreamExt;
use serde_json::Value;

/// Bound on any single wait for something that must happen.
const WAIT: Duration = Duration::from_secs(10);
/// How long to wait for something that must not happen.
const QUIET: Duration = Duration::from_millis(300);

async fn ours() -> (ServerHandle, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp store dir");
    let handle = start(ServerConfig {
        port: 0,
        jetstream: Some(JetStreamConfig {
            store_dir: dir.path().to_path_buf(),
            ..Default::default()
        }),
        ..ServerConfig::default()
    })
    .await
    .expect("our server starts with JetStream");
    (handle, dir)
}

fn trace_headers(dest: &str, only: bool) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("Nats-Trace-Dest", dest);
    if only {
        h.insert("Nats-Trace-Only", "true");
    }
    h
}

async fn event(sub: &mut async_nats::Subscriber) -> Value {
    let m = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("trace event in time")
        .expect("subscription open");
    serde_json::from_slice(&m.payload).expect("event is JSON")
}

fn types(ev: &Value) -> Vec<&str> {
    ev["events"]
        .as_array()
        .expect("events list")
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn a_trace_only_message_is_not_received_nor_stored_but_its_event_arrives() {
    let (server, _dir) = ours().await;
    let client = async_nats::ConnectOptions::new()
        .name("tracer")
        .connect(server.client_url())
        .await
        .expect("connect");
    let js = jetstream::new(client.clone());
    let mut stream = js
        .create_stream(stream::Config {
            name: "ORDERS".into(),
            subjects: vec!["orders.>".into()],
            ..Default::default()
        })
        .await
        .expect("stream");
    let mut subscriber = client.subscribe("orders.>").await.expect("sub");
    let mut traces = client.subscribe("traces").await.expect("sub");
    client.flush().await.expect("flush");

    client
        .publish_with_headers("orders.1", trace_headers("traces", true), "x".into())
        .await
        .expect("publish");
    client.flush().await.expect("flush");

    let ev = event(&mut traces).await;
    assert_eq!(types(&ev), ["in", "eg", "js"], "{ev}");
    assert_eq!(ev["events"][0]["name"], "tracer");
    assert_eq!(ev["events"][0]["subj"], "orders.1");
    assert_eq!(ev["events"][1]["sub"], "orders.>");
    assert_eq!(ev["events"][2]["stream"], "ORDERS");
    assert_eq!(ev["events"][2]["subject"], "orders.1");
    assert_eq!(ev["request"]["header"]["Nats-Trace-Only"][0], "true");
    assert!(ev["server"]["id"].is_string());
    assert!(
        tokio::time::timeout(QUIET, subscriber.next())
            .await
            .is_err(),
        "a trace-only message was delivered"
    );
    let info = stream.info().await.expect("info");
    assert_eq!(info.state.messages, 0, "a trace-only message was stored");
}

#[tokio::test]
async fn a_traced_message_is_delivered_with_its_headers_and_stored_with_tracing_disabled() {
    let (server, _dir) = ours().await;
    let client = async_nats::connect(server.client_url())
        .await
        .expect("connect");
    let js = jetstream::new(client.clone());
    let stream = js
        .create_stream(stream::Config {
            name: "ORDERS".into(),
            subjects: vec!["orders.>".into()],
            ..Default::default()
        })
        .await
        .expect("stream");
    let mut subscriber = client.subscribe("orders.>").await.expect("sub");
    let mut traces = client.subscribe("traces").await.expect("sub");
    client.flush().await.expect("flush");

    let ack = js
        .publish_with_headers("orders.1", trace_headers("traces", false), "x".into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    assert_eq!(ack.sequence, 1);
    let m = tokio::time::timeout(WAIT, subscriber.next())
        .await
        .expect("delivered in time")
        .expect("open");
    let headers = m.headers.expect("headers kept");
    assert_eq!(
        headers.get("Nats-Trace-Dest").map(|v| v.as_str()),
        Some("traces")
    );
    let ev = event(&mut traces).await;
    assert_eq!(types(&ev), ["in", "eg", "js"], "{ev}");
    let stored = stream.get_raw_message(1).await.expect("stored");
    assert_eq!(
        stored
            .headers
            .get("Nats-Trace-Dest")
            .map(|v| v.as_str().to_owned()),
        Some("trace disabled".to_owned()),
        "a stored message must not trace its deliveries again"
    );
}

#[tokio::test]
async fn a_trace_only_jetstream_publish_gets_no_ack_but_a_failing_check_is_answered() {
    let (server, _dir) = ours().await;
    let client = async_nats::connect(server.client_url())
        .await
        .expect("connect");
    let js = jetstream::new(client.clone());
    js.create_stream(stream::Config {
        name: "ORDERS".into(),
        subjects: vec!["orders.>".into()],
        ..Default::default()
    })
    .await
    .expect("stream");
    let mut traces = client.subscribe("traces").await.expect("sub");
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.expect("sub");
    client.flush().await.expect("flush");

    client
        .publish_with_reply_and_headers(
            "orders.1",
            inbox.clone(),
            trace_headers("traces", true),
            "x".into(),
        )
        .await
        .expect("publish");
    let ev = event(&mut traces).await;
    assert_eq!(ev["events"][1]["type"], "js", "{ev}");
    assert!(
        tokio::time::timeout(QUIET, replies.next()).await.is_err(),
        "a trace-only message was acknowledged"
    );

    let mut h = trace_headers("traces", true);
    h.insert("Nats-Expected-Last-Sequence", "5");
    client
        .publish_with_reply_and_headers("orders.1", inbox, h, "x".into())
        .await
        .expect("publish");
    let ev = event(&mut traces).await;
    assert_eq!(
        ev["events"][1]["error"], "last sequence mismatch: 5 vs 0",
        "{ev}"
    );
    let reply = tokio::time::timeout(WAIT, replies.next())
        .await
        .expect("error answered")
        .expect("open");
    let body: Value = serde_json::from_slice(&reply.payload).expect("JSON");
    assert_eq!(body["error"]["err_code"], 10071, "{body}");
}

#[tokio::test]
async fn a_subscriber_that_disconnected_is_not_in_the_event() {
    let (server, _dir) = ours().await;
    let publisher = async_nats::connect(server.client_url())
        .await
        .expect("connect");
    let leaving = async_nats::ConnectOptions::new()
        .name("leaving")
        .connect(server.client_url())
        .await
        .expect("connect");
    let staying = async_nats::ConnectOptions::new()
        .name("staying")
        .connect(server.client_url())
        .await
        .expect("connect");
    let _gone = leaving.subscribe("work").await.expect("sub");
    let mut kept = staying.subscribe("work").await.expect("sub");
    leaving.flush().await.expect("flush");
    staying.flush().await.expect("flush");
    let mut traces = publisher.subscribe("traces").await.expect("sub");
    publisher.flush().await.expect("flush");
    drop(_gone);
    leaving.drain().await.expect("drain");
    tokio::time::sleep(Duration::from_millis(200)).await;

    publisher
        .publish_with_headers("work", trace_headers("traces", false), "x".into())
        .await
        .expect("publish");
    let ev = event(&mut traces).await;
    let egresses: Vec<&str> = ev["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["type"] == "eg")
        .map(|e| e["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(egresses, ["staying"], "{ev}");
    tokio::time::timeout(WAIT, kept.next())
        .await
        .expect("delivered")
        .expect("open");
}

#[tokio::test]
async fn the_trace_event_can_be_captured_by_a_stream() {
    let (server, _dir) = ours().await;
    let client = async_nats::connect(server.client_url())
        .await
        .expect("connect");
    let js = jetstream::new(client.clone());
    let mut traces = js
        .create_stream(stream::Config {
            name: "TRACES".into(),
            subjects: vec!["traces".into()],
            ..Default::default()
        })
        .await
        .expect("stream");
    client
        .publish_with_headers("nobody", trace_headers("traces", false), "x".into())
        .await
        .expect("publish");
    client.flush().await.expect("flush");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if traces.info().await.expect("info").state.messages == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "event not stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let m = traces.get_raw_message(1).await.expect("stored event");
    let ev: Value = serde_json::from_slice(&m.payload).expect("JSON");
    assert_eq!(types(&ev), ["in"], "{ev}");
}
