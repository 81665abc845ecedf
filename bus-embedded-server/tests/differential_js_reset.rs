//! Differential tests of consumer reset (nats-server 2.14,
//! `$JS.API.CONSUMER.RESET.<stream>.<consumer>`) against nats-server
//! 2.15.1. The harness is `js_diff/`.

mod js_diff;

use js_diff::*;

fn scenarios() -> Vec<Scenario> {
    vec![(
        "consumer reset",
        concat(vec![
            vec![create("R", r#""subjects":["r.>"]"#)],
            publish_n("r.x", 4),
            vec![
                api(
                    "CONSUMER.CREATE.R.C",
                    r#"{"stream_name":"R","config":{"durable_name":"C","ack_policy":"explicit"}}"#,
                ),
                pull("R", "C", r#"{"batch":3,"no_wait":true}"#).collect(300),
                api("CONSUMER.RESET.R.C", ""),
                api("CONSUMER.INFO.R.C", ""),
                pull("R", "C", r#"{"batch":1,"no_wait":true}"#).collect(300),
                api("CONSUMER.RESET.R.C", r#"{"seq":3}"#),
                pull("R", "C", r#"{"batch":1,"no_wait":true}"#).collect(300),
                api("CONSUMER.RESET.R.C", r#"{"seq":99}"#),
                api("CONSUMER.RESET.R.NOPE", ""),
                api("CONSUMER.INFO.R.C", ""),
            ],
        ]),
    )]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_reset_matches_nats_server() {
    check(scenarios()).await;
}

/// A reset is on disk when it is answered: after a restart the consumer
/// delivers from the sequence it was reset to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_position_survives_a_restart() {
    use bus_embedded_server::jetstream::JetStreamConfig;
    use bus_embedded_server::{ServerConfig, start};
    use futures::StreamExt;
    use std::time::Duration;

    let dir = tempfile::tempdir().expect("tempdir");
    let config = || ServerConfig {
        port: 0,
        jetstream: Some(JetStreamConfig {
            store_dir: dir.path().to_path_buf(),
            ..JetStreamConfig::default()
        }),
        ..ServerConfig::default()
    };
    async fn request(c: &async_nats::Client, subject: &str, body: &str) -> serde_json::Value {
        let reply = c
            .request(subject.to_owned(), body.to_owned().into())
            .await
            .unwrap_or_else(|e| panic!("{subject}: {e}"));
        serde_json::from_slice(&reply.payload).expect("JSON")
    }

    let server = start(config()).await.expect("start");
    let c = async_nats::connect(format!("nats://{}", server.addr()))
        .await
        .expect("connect");
    request(
        &c,
        "$JS.API.STREAM.CREATE.R",
        r#"{"name":"R","subjects":["r.>"]}"#,
    )
    .await;
    for i in 1..=4 {
        let v = request(&c, "r.x", &format!("m{i}")).await;
        assert_eq!(v["seq"], i);
    }
    request(
        &c,
        "$JS.API.CONSUMER.CREATE.R.C",
        r#"{"stream_name":"R","config":{"durable_name":"C","ack_policy":"explicit"}}"#,
    )
    .await;
    let v = request(&c, "$JS.API.CONSUMER.RESET.R.C", r#"{"seq":3}"#).await;
    assert_eq!(v["reset_seq"], 3, "{v}");
    drop(c);
    server.shutdown(Duration::from_secs(1)).await;

    let server = start(config()).await.expect("restart");
    let c = async_nats::connect(format!("nats://{}", server.addr()))
        .await
        .expect("connect");
    let inbox = c.new_inbox();
    let mut sub = c.subscribe(inbox.clone()).await.expect("subscribe");
    c.publish_with_reply(
        "$JS.API.CONSUMER.MSG.NEXT.R.C",
        inbox,
        r#"{"batch":1,"expires":2000000000}"#.into(),
    )
    .await
    .expect("pull");
    let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("a message within 5 s")
        .expect("message");
    assert_eq!(&m.payload[..], b"m3");
    server.shutdown(Duration::from_secs(1)).await;
}
