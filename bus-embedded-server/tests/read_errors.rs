//! A stored message that cannot be read back while the server runs (its
//! record no longer passes its checksum: a disk error, a bit flip) must
//! surface, never be skipped: the consumer stays on it, a `no_wait` pull is
//! not told "No Messages", the ack floor does not move past it, and
//! `/healthz` and `/jsz` report it (issue #12 item 3).
//!
//! The damage is made by flipping a byte of the record's payload in the
//! segment file on disk after the message was acknowledged.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, pull},
    stream,
};
use bus_embedded_server::{JetStreamConfig, ServerConfig, ServerHandle, start};
use futures::StreamExt;

const WAIT: Duration = Duration::from_secs(10);

async fn server(dir: &Path) -> ServerHandle {
    start(ServerConfig {
        port: 0,
        http_port: Some(0),
        jetstream: Some(JetStreamConfig {
            store_dir: dir.to_path_buf(),
            ..JetStreamConfig::default()
        }),
        ..ServerConfig::default()
    })
    .await
    .expect("server starts")
}

/// Flips the first byte of `marker` in every segment file of `stream`.
fn damage(store: &Path, stream: &str, marker: &[u8]) {
    let dir: PathBuf = store
        .join("jetstream")
        .join("$G")
        .join("streams")
        .join(stream)
        .join("msgs");
    let mut hit = false;
    for entry in std::fs::read_dir(&dir).expect("segments") {
        let path = entry.expect("entry").path();
        let mut bytes = std::fs::read(&path).expect("read segment");
        if let Some(at) = bytes.windows(marker.len()).position(|w| w == marker) {
            bytes[at] ^= 0x55;
            std::fs::write(&path, &bytes).expect("write segment");
            hit = true;
        }
    }
    assert!(hit, "marker {marker:?} not found under {}", dir.display());
}

async fn http_get(port: u16, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("monitor connect");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("request");
    let mut text = String::new();
    s.read_to_string(&mut text).await.expect("response");
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (status, text)
}

async fn setup(
    dir: &Path,
) -> (
    ServerHandle,
    jetstream::Context,
    jetstream::consumer::PullConsumer,
) {
    let handle = server(dir).await;
    let client = async_nats::connect(handle.client_url())
        .await
        .expect("connect");
    let js = jetstream::new(client);
    let s = js
        .create_stream(stream::Config {
            name: "R".into(),
            subjects: vec!["r.>".into()],
            ..Default::default()
        })
        .await
        .expect("stream");
    for i in 1..=3 {
        js.publish("r.x", format!("PAYLOAD-{i}-MARKER").into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
    let c = s
        .create_consumer(pull::Config {
            durable_name: Some("C".into()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .expect("consumer");
    (handle, js, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_new_message_stops_the_consumer_and_is_reported_not_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (handle, _js, mut c) = setup(dir.path()).await;
    let first = c
        .fetch()
        .max_messages(1)
        .messages()
        .await
        .expect("fetch")
        .next()
        .await
        .expect("one message")
        .expect("message");
    assert_eq!(&first.payload[..], b"PAYLOAD-1-MARKER");
    first.ack().await.expect("ack");
    damage(dir.path(), "R", b"PAYLOAD-2-MARKER");
    // A no_wait pull: message 3 must not come (that would skip 2), and the
    // answer must not be a plain "no messages".
    let mut batch = c.fetch().max_messages(2).messages().await.expect("fetch");
    let mut got = Vec::new();
    let mut failed = false;
    while let Some(item) = tokio::time::timeout(WAIT, batch.next())
        .await
        .expect("the fetch ends")
    {
        match item {
            Ok(m) => got.push(String::from_utf8_lossy(&m.payload).into_owned()),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(
        got.is_empty(),
        "nothing past the unreadable message: {got:?}"
    );
    assert!(
        failed,
        "the fetch reports an error instead of 'no messages'"
    );
    let info = c.info().await.expect("info");
    assert_eq!(
        info.delivered.stream_sequence, 1,
        "position not moved past 2"
    );
    assert_eq!(info.ack_floor.stream_sequence, 1);
    assert_eq!(info.num_pending, 2, "2 and 3 are still to deliver");
    let port = handle.monitor_port().expect("monitoring");
    let (status, body) = http_get(port, "/healthz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("message 2"), "{body}");
    let (_, jsz) = http_get(port, "/jsz?streams=true").await;
    assert!(jsz.contains("\"read_errors\""), "{jsz}");
    handle.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_redelivery_is_not_taken_for_a_deleted_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (handle, _js, mut c) = setup(dir.path()).await;
    let mut msgs = Vec::new();
    let mut batch = c.fetch().max_messages(3).messages().await.expect("fetch");
    while let Some(m) = tokio::time::timeout(WAIT, batch.next())
        .await
        .expect("fetch ends")
    {
        msgs.push(m.expect("message"));
    }
    assert_eq!(msgs.len(), 3);
    msgs[0].ack().await.expect("ack 1");
    msgs[2].ack().await.expect("ack 3");
    damage(dir.path(), "R", b"PAYLOAD-2-MARKER");
    msgs[1]
        .ack_with(jetstream::AckKind::Nak(None))
        .await
        .expect("nak 2");
    // A pull makes the consumer try the redelivery.
    let mut batch = c.fetch().max_messages(1).messages().await.expect("fetch");
    while let Some(item) = tokio::time::timeout(WAIT, batch.next())
        .await
        .expect("the fetch ends")
    {
        if let Ok(m) = item {
            panic!("nothing readable to deliver, got {:?}", m.payload);
        }
    }
    let info = c.info().await.expect("info");
    assert_eq!(
        info.ack_floor.stream_sequence, 1,
        "the floor stays below the unread message"
    );
    assert_eq!(info.num_ack_pending, 1, "2 is still pending, not forgotten");
    let (status, _) = http_get(handle.monitor_port().expect("monitoring"), "/healthz").await;
    assert_eq!(status, 503);
    handle.shutdown(Duration::from_secs(2)).await;
}
