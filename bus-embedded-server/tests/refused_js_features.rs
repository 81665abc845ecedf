//! Newer JetStream options are either honoured or refused with an API
//! error naming them, never accepted and ignored. Consumer priority groups
//! and pinned clients used to be refused here (10012); they are built now
//! (`stream::priority`), so this checks they are no longer refused, that
//! they are kept, not dropped, across a restart, and that the pin (held in
//! memory, as nats-server holds it) does not outlive the server. A
//! stream's `subject_transform` and `republish` used to be refused
//! (10052); they are built now (`stream::transform`), and kept across a
//! restart. Message schedules used to be refused too; they are built
//! (`stream::schedule`), and what of them is not (schedules inside atomic
//! batches) is refused here.

use std::time::Duration;

use bus_embedded_server::jetstream::JetStreamConfig;
use bus_embedded_server::{ServerConfig, start};
use serde_json::{Value, json};

async fn api(c: &async_nats::Client, api: &str, body: Value) -> Value {
    let reply = c
        .request(format!("$JS.API.{api}"), body.to_string().into())
        .await
        .unwrap_or_else(|e| panic!("{api} answered: {e}"));
    serde_json::from_slice(&reply.payload).expect("JSON answer")
}

async fn pull(c: &async_nats::Client, body: Value) -> async_nats::Message {
    let inbox = c.new_inbox();
    let mut sub = c.subscribe(inbox.clone()).await.expect("subscribe");
    c.publish_with_reply(
        "$JS.API.CONSUMER.MSG.NEXT.S.C",
        inbox,
        body.to_string().into(),
    )
    .await
    .expect("pull");
    use futures::StreamExt;
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("an answer to the pull")
        .expect("open")
}

async fn our_server(
    dir: &std::path::Path,
) -> (bus_embedded_server::ServerHandle, async_nats::Client) {
    let server = start(ServerConfig {
        port: 0,
        jetstream: Some(JetStreamConfig {
            store_dir: dir.to_path_buf(),
            ..JetStreamConfig::default()
        }),
        ..ServerConfig::default()
    })
    .await
    .expect("start");
    let c = async_nats::ConnectOptions::new()
        .request_timeout(Some(Duration::from_secs(5)))
        .connect(format!("nats://{}", server.addr()))
        .await
        .expect("connect");
    (server, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_groups_are_honoured_kept_across_a_restart_and_the_pin_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, c) = our_server(dir.path()).await;
    let created = api(
        &c,
        "STREAM.CREATE.S",
        json!({"name": "S", "subjects": ["s.>"]}),
    )
    .await;
    assert!(created.get("error").is_none(), "{created}");
    let config = json!({
        "durable_name": "C",
        "ack_policy": "explicit",
        "priority_groups": ["jobs"],
        "priority_policy": "pinned_client",
        "priority_timeout": 60_000_000_000i64,
    });
    let v = api(
        &c,
        "CONSUMER.DURABLE.CREATE.S.C",
        json!({"stream_name": "S", "config": config}),
    )
    .await;
    assert!(v.get("error").is_none(), "not refused: {v}");
    assert_eq!(v["config"]["priority_policy"], "pinned_client", "{v}");
    assert_eq!(v["config"]["priority_groups"], json!(["jobs"]));
    assert_eq!(v["config"]["priority_timeout"], 60_000_000_000i64);

    for i in 0..2 {
        c.request("s.x", format!("m{i}").into())
            .await
            .expect("publish");
    }
    let m = pull(&c, json!({"batch": 1, "group": "jobs"})).await;
    let pin = m
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Pin-Id"))
        .map(|v| v.as_str().to_owned())
        .expect("pinned");
    let info = api(&c, "CONSUMER.INFO.S.C", json!({})).await;
    assert_eq!(info["priority_groups"][0]["pinned_client_id"], json!(pin));

    // The UNPIN call is answered (not left to time out), also when wrong.
    let v = api(&c, "CONSUMER.UNPIN.S.C", json!({"group": "other"})).await;
    assert_eq!(v["error"]["err_code"], 10160, "{v}");

    server.shutdown(Duration::from_secs(2)).await;
    let (server, c) = our_server(dir.path()).await;
    let info = api(&c, "CONSUMER.INFO.S.C", json!({})).await;
    assert_eq!(info["config"]["priority_policy"], "pinned_client", "{info}");
    assert_eq!(info["config"]["priority_groups"], json!(["jobs"]));
    assert_eq!(
        info["priority_groups"],
        json!([{"group": "jobs", "pinned_ts": "0001-01-01T00:00:00Z"}]),
        "no pin after a restart"
    );
    // The old pin is stale: its pull ends with 423 when a message is there.
    let m = pull(&c, json!({"batch": 1, "group": "jobs", "id": pin})).await;
    assert_eq!(m.status.map(|s| s.as_u16()), Some(423));
    assert_eq!(m.description.as_deref(), Some("Nats-Wrong-Pin-Id"));
    // A new client gets the message and a new pin.
    let m = pull(&c, json!({"batch": 1, "group": "jobs"})).await;
    assert_eq!(m.payload.as_ref(), b"m1");
    let new_pin = m
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Pin-Id"))
        .map(|v| v.as_str().to_owned())
        .expect("pinned again");
    assert_ne!(new_pin, pin);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_transform_and_republish_are_honoured_and_kept_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, c) = our_server(dir.path()).await;
    let created = api(
        &c,
        "STREAM.CREATE.T",
        json!({
            "name": "T",
            "subjects": ["t.*"],
            "subject_transform": {"src": "t.*", "dest": "u.$1"},
            "republish": {"src": "u.*", "dest": "r.$1"},
        }),
    )
    .await;
    assert!(
        created.get("error").is_none(),
        "no longer refused: {created}"
    );
    server.shutdown(Duration::from_secs(2)).await;

    let (server, c) = our_server(dir.path()).await;
    let info = api(&c, "STREAM.INFO.T", json!({})).await;
    assert_eq!(
        info["config"]["subject_transform"],
        json!({"src": "t.*", "dest": "u.$1"})
    );
    assert_eq!(
        info["config"]["republish"],
        json!({"src": "u.*", "dest": "r.$1"})
    );
    use futures::StreamExt;
    let mut sub = c.subscribe("r.>").await.expect("subscribe");
    c.flush().await.expect("flush");
    let ack = c.request("t.1", "x".into()).await.expect("ack");
    let ack: Value = serde_json::from_slice(&ack.payload).expect("ack json");
    assert_eq!(ack["seq"], json!(1), "{ack}");
    let copy = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("republished after the restart")
        .expect("open");
    assert_eq!(copy.subject.as_str(), "r.1");
    let stored = api(&c, "STREAM.MSG.GET.T", json!({"seq": 1})).await;
    assert_eq!(stored["message"]["subject"], json!("u.1"), "{stored}");
    server.shutdown(Duration::from_secs(1)).await;
}

/// `allow_msg_schedules` is honoured and kept across a restart; the parts
/// of schedules this server does not build are refused with an API error,
/// never stored as a plain message: a schedule inside an atomic batch
/// (10177).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_are_honoured_and_their_unbuilt_parts_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, c) = our_server(dir.path()).await;
    let created = api(
        &c,
        "STREAM.CREATE.S",
        json!({"name": "S", "subjects": ["s.>"], "allow_msg_schedules": true, "allow_atomic": true}),
    )
    .await;
    assert!(created.get("error").is_none(), "not refused: {created}");
    assert_eq!(created["config"]["allow_msg_schedules"], true);
    assert_eq!(created["config"]["allow_rollup_hdrs"], true, "{created}");

    let mut h = async_nats::HeaderMap::new();
    h.insert("Nats-Schedule", "@every 1s");
    h.insert("Nats-Schedule-Target", "s.t");
    h.insert("Nats-Batch-Id", "b1");
    h.insert("Nats-Batch-Sequence", "1");
    h.insert("Nats-Batch-Commit", "1");
    let reply = c
        .request_with_headers("s.batched", h, "x".into())
        .await
        .expect("answered");
    let v: Value = serde_json::from_slice(&reply.payload).expect("JSON");
    assert_eq!(v["error"]["err_code"], 10177, "{v}");
    let info = api(&c, "STREAM.INFO.S", json!({})).await;
    assert_eq!(info["state"]["messages"], 0, "nothing stored: {info}");

    server.shutdown(Duration::from_secs(2)).await;
    let (server, c) = our_server(dir.path()).await;
    let info = api(&c, "STREAM.INFO.S", json!({})).await;
    assert_eq!(info["config"]["allow_msg_schedules"], true, "{info}");
    server.shutdown(Duration::from_secs(1)).await;
}
