//! Batched direct get (nats-server 2.11+) read by a real client: async-nats
//! sends the requests and parses every reply, the messages' headers and
//! the `204 EOB` status that ends a batch, from ours as from nats-server
//! 2.15.1.

use std::time::Duration;

use async_nats::jetstream;
use bus_embedded_server::jetstream::JetStreamConfig;
use bus_embedded_server::{ServerConfig, start};
use futures::StreamExt;
use nats_test_server::NatsServer;

/// What one request brings back: (status, subject header, sequence
/// header, pending header, last-sequence header, payload).
type Reply = (
    Option<u16>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
);

async fn ask(c: &async_nats::Client, body: &str) -> Vec<Reply> {
    let inbox = c.new_inbox();
    let mut sub = c.subscribe(inbox.clone()).await.expect("subscribe");
    c.publish_with_reply("$JS.API.DIRECT.GET.KV", inbox, body.to_owned().into())
        .await
        .expect("request");
    let mut out = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
        let h = |name: &str| {
            m.headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.to_string())
        };
        let end = m.status.map(|s| s.as_u16());
        out.push((
            end,
            h("Nats-Subject"),
            h("Nats-Sequence"),
            h("Nats-Num-Pending"),
            h("Nats-Last-Sequence"),
            String::from_utf8_lossy(&m.payload).into_owned(),
        ));
        if end.is_some() {
            break;
        }
    }
    out
}

async fn story(url: &str) -> Vec<Vec<Reply>> {
    let c = async_nats::connect(url).await.expect("connect");
    let js = jetstream::new(c.clone());
    let _ = js.delete_stream("KV").await;
    js.create_stream(jetstream::stream::Config {
        name: "KV".into(),
        subjects: vec!["kv.>".into()],
        allow_direct: true,
        ..Default::default()
    })
    .await
    .expect("stream");
    for (k, v) in [("a", "1"), ("b", "1"), ("a", "2"), ("c", "1"), ("b", "2")] {
        js.publish(format!("kv.{k}"), v.into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
    let mut out = Vec::new();
    for body in [
        r#"{"seq":2,"batch":2}"#,
        r#"{"next_by_subj":"kv.b","batch":5}"#,
        r#"{"multi_last":["kv.*"]}"#,
        r#"{"multi_last":["kv.*"],"up_to_seq":3}"#,
    ] {
        out.push(ask(&c, body).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_nats_reads_batches_and_their_end_from_both_servers() {
    let theirs = NatsServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ours = start(ServerConfig {
        port: 0,
        jetstream: Some(JetStreamConfig {
            store_dir: dir.path().to_path_buf(),
            ..JetStreamConfig::default()
        }),
        ..ServerConfig::default()
    })
    .await
    .expect("start");
    let want = story(&theirs.url()).await;
    let got = story(&format!("nats://{}", ours.addr())).await;
    assert_eq!(got, want, "ours vs nats-server");
    let s = |v: &str| Some(v.to_owned());
    // From seq 2, two messages, then the end: 2 still pending after seq 3.
    assert_eq!(
        got[0],
        [
            (None, s("kv.b"), s("2"), s("3"), s("0"), "1".into()),
            (None, s("kv.a"), s("3"), s("2"), s("2"), "2".into()),
            (Some(204), None, None, s("2"), s("3"), String::new()),
        ]
    );
    // The last of each key, oldest first.
    let seqs: Vec<_> = got[2].iter().map(|r| r.2.clone()).collect();
    assert_eq!(seqs, [s("3"), s("4"), s("5"), None]);
    // Up to seq 3: a and b as they were then.
    let seqs: Vec<_> = got[3].iter().map(|r| (r.1.clone(), r.5.clone())).collect();
    assert_eq!(
        seqs,
        [
            (s("kv.b"), "1".to_owned()),
            (s("kv.a"), "2".to_owned()),
            (None, String::new())
        ]
    );
}
