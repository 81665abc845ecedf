//! Newer JetStream options this server does not build yet are refused
//! with an API error naming them, never accepted and ignored: a client
//! that asks for a consumer priority group or a pinned client must not
//! believe it has one.

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

fn error_of(v: &Value) -> (i64, String) {
    (
        v["error"]["err_code"].as_i64().unwrap_or(0),
        v["error"]["description"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_priority_groups_and_pinning_are_refused_not_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(ServerConfig {
        port: 0,
        jetstream: Some(JetStreamConfig {
            store_dir: dir.path().to_path_buf(),
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
    let created = api(
        &c,
        "STREAM.CREATE.S",
        json!({"name": "S", "subjects": ["s.>"]}),
    )
    .await;
    assert!(created.get("error").is_none(), "{created}");

    let consumer = |extra: Value| {
        let mut config = json!({"name": "C", "ack_policy": "explicit"});
        if let (Value::Object(m), Value::Object(e)) = (&mut config, extra) {
            m.extend(e);
        }
        json!({"stream_name": "S", "config": config})
    };
    for (extra, text) in [
        (
            json!({"priority_groups": ["jobs"], "priority_policy": "overflow"}),
            "consumer priority groups are not supported by this server",
        ),
        (
            json!({"priority_policy": "pinned_client"}),
            "consumer priority policies are not supported by this server",
        ),
    ] {
        let v = api(&c, "CONSUMER.CREATE.S.C", consumer(extra.clone())).await;
        assert_eq!(error_of(&v), (10012, text.to_owned()), "for {extra}");
    }
    let info = api(&c, "STREAM.INFO.S", json!({})).await;
    assert_eq!(info["state"]["consumer_count"], 0, "nothing was created");

    // The fields at nats-server's defaults ask for nothing.
    let v = api(
        &c,
        "CONSUMER.CREATE.S.C",
        consumer(json!({"priority_policy": "none", "priority_groups": []})),
    )
    .await;
    assert!(v.get("error").is_none(), "{v}");
    assert!(
        v["config"].get("priority_policy").is_none(),
        "an option not built is not echoed back as if it were: {v}"
    );

    // The call is answered, not left to time out.
    let v = api(&c, "CONSUMER.UNPIN.S.C", json!({"group": "jobs"})).await;
    assert_eq!(error_of(&v).0, 10012);
    server.shutdown(Duration::from_secs(1)).await;
}
