//! Differential tests of a stream's `first_seq` and of a purge up to a
//! sequence past the last one against nats-server 2.15.1: the next message
//! gets that sequence, in file and memory streams. The harness is
//! `js_diff/`.

mod js_diff;

use js_diff::*;

fn scenarios() -> Vec<Scenario> {
    vec![
        (
            "first_seq: the first message gets it",
            vec![
                create("F", r#""subjects":["f.>"],"first_seq":1000"#),
                api("STREAM.INFO.F", ""),
                raw("f.a", "one"),
                raw("f.b", "two"),
                api("STREAM.INFO.F", ""),
                api("STREAM.MSG.GET.F", r#"{"seq":1000}"#),
                create(
                    "M",
                    r#""subjects":["m.>"],"storage":"memory","first_seq":7"#,
                ),
                raw("m.a", "one"),
                api("STREAM.INFO.M", ""),
                api(
                    "STREAM.UPDATE.F",
                    r#"{"name":"F","subjects":["f.>"],"first_seq":5}"#,
                ),
            ],
        ),
        (
            "a purge up to a sequence past the last moves the next sequence",
            vec![
                create("P", r#""subjects":["p.>"]"#),
                raw("p.a", "one"),
                raw("p.b", "two"),
                api("STREAM.PURGE.P", r#"{"seq":50}"#),
                api("STREAM.INFO.P", ""),
                raw("p.c", "three"),
                api("STREAM.INFO.P", ""),
                create("Q", r#""subjects":["q.>"],"storage":"memory""#),
                raw("q.a", "one"),
                api("STREAM.PURGE.Q", r#"{"seq":20}"#),
                raw("q.b", "two"),
                api("STREAM.INFO.Q", ""),
            ],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_first_seq_and_purge_past_the_end_match_nats_server() {
    check(scenarios()).await;
}

/// The sequence a stream was told to start at, or a purge moved it to,
/// survives a restart of our server before anything else is stored: the
/// store keeps it as its floor and last sequence on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_sequence_survives_a_restart_before_any_message() {
    use bus_embedded_server::jetstream::JetStreamConfig;
    use bus_embedded_server::{ServerConfig, start};
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
    let request = |c: async_nats::Client, subject: String, body: String| async move {
        let reply = c
            .request(subject.clone(), body.into())
            .await
            .unwrap_or_else(|e| panic!("{subject}: {e}"));
        serde_json::from_slice::<serde_json::Value>(&reply.payload).expect("JSON")
    };

    let server = start(config()).await.expect("start");
    let c = async_nats::connect(format!("nats://{}", server.addr()))
        .await
        .expect("connect");
    let v = request(
        c.clone(),
        "$JS.API.STREAM.CREATE.F".into(),
        r#"{"name":"F","subjects":["f.>"],"first_seq":1000}"#.into(),
    )
    .await;
    assert!(v.get("error").is_none(), "{v}");
    let v = request(
        c.clone(),
        "$JS.API.STREAM.CREATE.P".into(),
        r#"{"name":"P","subjects":["p.>"]}"#.into(),
    )
    .await;
    assert!(v.get("error").is_none(), "{v}");
    let v = request(c.clone(), "p.a".into(), "one".into()).await;
    assert_eq!(v["seq"], 1);
    let v = request(
        c.clone(),
        "$JS.API.STREAM.PURGE.P".into(),
        r#"{"seq":50}"#.into(),
    )
    .await;
    assert_eq!(v["success"], true, "{v}");
    drop(c);
    server.shutdown(Duration::from_secs(1)).await;

    let server = start(config()).await.expect("restart");
    let c = async_nats::connect(format!("nats://{}", server.addr()))
        .await
        .expect("connect");
    let v = request(c.clone(), "f.a".into(), "first".into()).await;
    assert_eq!(v["seq"], 1000, "first_seq kept across the restart: {v}");
    let v = request(c.clone(), "p.b".into(), "after the purge".into()).await;
    assert_eq!(v["seq"], 50, "the purge's next sequence kept: {v}");
    server.shutdown(Duration::from_secs(1)).await;
}
