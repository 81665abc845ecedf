//! Proves the fixture against the real nats-server: single node,
//! kill -9 and restart on the same port and store, a three-node JetStream
//! cluster surviving the loss of a node, and auth options.

use std::future::IntoFuture;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use async_nats::{ConnectErrorKind, ConnectOptions, ToServerAddrs};
use futures::StreamExt;
use nats_test_server::{NatsCluster, NatsServer, ServerOptions, http_get};

/// Await `fut` for at most `secs` seconds; panic naming `what` otherwise.
async fn within<T>(secs: u64, what: &str, fut: impl IntoFuture<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {secs}s: {what}"))
}

async fn connect<A: ToServerAddrs + std::fmt::Debug>(addrs: A) -> async_nats::Client {
    let what = format!("connect to {addrs:?}");
    within(10, &what, async_nats::connect(&addrs))
        .await
        .unwrap_or_else(|err| panic!("{what}: {err}"))
}

/// Publish `count` messages to `subject` through JetStream, each acked.
async fn publish_acked(js: &jetstream::Context, subject: &str, first: usize, count: usize) {
    for i in first..first + count {
        let ack = within(
            10,
            "publish",
            js.publish(subject.to_owned(), format!("m{i}").into()),
        )
        .await
        .unwrap_or_else(|err| panic!("publish m{i}: {err}"));
        within(10, "publish ack", ack)
            .await
            .unwrap_or_else(|err| panic!("ack of m{i}: {err}"));
    }
}

async fn stream_messages(js: &jetstream::Context, name: &str) -> u64 {
    let mut stream = within(10, "get stream", js.get_stream(name))
        .await
        .unwrap_or_else(|err| panic!("get stream {name}: {err}"));
    within(10, "stream info", stream.info())
        .await
        .unwrap_or_else(|err| panic!("info of stream {name}: {err}"))
        .state
        .messages
}

#[tokio::test]
async fn single_server_accepts_clients_and_jetstream() {
    let server = NatsServer::start().await;
    assert_eq!(server.url(), format!("nats://127.0.0.1:{}", server.port()));
    assert_ne!(server.port(), server.monitor_port());
    assert!(server.log().contains("Server is ready"), "{}", server.log());

    // Monitoring answers on its own port.
    let (status, body) = http_get(server.monitor_port(), "/varz").expect("GET /varz");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!("\"port\": {}", server.port())),
        "{body}"
    );

    // Core NATS round trip.
    let client = connect(&server.url()).await;
    let mut sub = client
        .subscribe("fixture.core")
        .await
        .expect("subscribe to fixture.core");
    client
        .publish("fixture.core", "hello".into())
        .await
        .expect("publish to fixture.core");
    let msg = within(5, "core message", sub.next())
        .await
        .expect("subscription ended");
    assert_eq!(&msg.payload[..], b"hello");

    // JetStream: a stream, an acked publish, and the count.
    let js = jetstream::new(client);
    within(
        10,
        "create stream",
        js.create_stream(stream::Config {
            name: "SELFTEST".into(),
            subjects: vec!["selftest.>".into()],
            storage: stream::StorageType::Memory,
            ..Default::default()
        }),
    )
    .await
    .expect("create stream SELFTEST");
    publish_acked(&js, "selftest.one", 0, 1).await;
    assert_eq!(stream_messages(&js, "SELFTEST").await, 1);
}

#[tokio::test]
async fn restart_keeps_port_and_stored_stream() {
    let mut server = NatsServer::start().await;
    let url = server.url();
    let port = server.port();
    let pid = server.pid().expect("a started server has a pid");

    let js = jetstream::new(connect(&url).await);
    within(
        10,
        "create stream",
        js.create_stream(stream::Config {
            name: "DURABLE".into(),
            subjects: vec!["durable.>".into()],
            storage: stream::StorageType::File,
            ..Default::default()
        }),
    )
    .await
    .expect("create file stream DURABLE");
    publish_acked(&js, "durable.x", 0, 3).await;
    drop(js);

    server.kill().await;
    assert!(!server.is_running(), "killed server still running");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still accepts after kill -9"
    );

    server.restart().await;
    assert_eq!(server.port(), port);
    assert_eq!(server.url(), url);
    assert_ne!(server.pid(), Some(pid), "restart must run a new process");
    assert!(
        server
            .store_dir()
            .join("jetstream")
            .try_exists()
            .unwrap_or(false),
        "store dir kept: {}",
        server.store_dir().display()
    );

    let js = jetstream::new(connect(&url).await);
    assert_eq!(stream_messages(&js, "DURABLE").await, 3, "{}", server.log());

    // A graceful stop and a second restart work too.
    server.stop().await;
    assert!(!server.is_running());
    server.restart().await;
    let js = jetstream::new(connect(&url).await);
    assert_eq!(stream_messages(&js, "DURABLE").await, 3);
}

/// Messages in `stream` according to node `i`'s own replica (`/jsz`), if it
/// has one.
fn replica_messages(cluster: &NatsCluster, i: usize, stream: &str) -> Option<u64> {
    let (status, body) =
        http_get(cluster.monitor_port(i), "/jsz?accounts=true&streams=true").ok()?;
    if status != 200 {
        return None;
    }
    let jsz: serde_json::Value = serde_json::from_str(&body).ok()?;
    jsz.get("account_details")?
        .as_array()?
        .iter()
        .filter_map(|account| account.get("stream_detail")?.as_array())
        .flatten()
        .find(|detail| detail.get("name").and_then(|n| n.as_str()) == Some(stream))?
        .get("state")?
        .get("messages")?
        .as_u64()
}

#[tokio::test]
async fn cluster_of_three_elects_a_meta_leader_and_replicates() {
    let mut cluster = NatsCluster::start(3).await;
    assert_eq!(cluster.len(), 3);
    assert_eq!(cluster.urls().len(), 3);
    assert_eq!(cluster.url_list(), cluster.urls().join(","));
    let meta_leader = cluster
        .meta_leader()
        .expect("a started cluster has a meta leader");

    let js = jetstream::new(connect(&cluster.url(0)).await);
    let mut created = within(
        15,
        "create R3 stream",
        js.create_stream(stream::Config {
            name: "REPL".into(),
            subjects: vec!["repl.>".into()],
            storage: stream::StorageType::File,
            num_replicas: 3,
            ..Default::default()
        }),
    )
    .await
    .unwrap_or_else(|err| panic!("create R3 stream: {err}\n{}", cluster.logs()));
    // The create is answered before the new stream's leader has made its
    // subjects' interest known to every node: on a loaded machine a publish
    // right after it meets no responder ("no stream found"). Wait for one.
    within(15, "the R3 stream takes publishes", async {
        loop {
            match js.publish("repl.a", "m0".into()).await {
                Ok(ack) => match ack.await {
                    Ok(_) => return,
                    Err(e) if e.kind() == PublishErrorKind::StreamNotFound => {}
                    Err(e) => panic!("ack of m0: {e}"),
                },
                Err(e) => panic!("publish m0: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    publish_acked(&js, "repl.a", 1, 4).await;

    // Kill a node that leads neither the meta group nor the stream, so the
    // test does not wait for elections (the fixture is under test here).
    let info = within(10, "stream info", created.info())
        .await
        .expect("stream info");
    let stream_leader = info
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .expect("an R3 stream has a leader");
    let victim = (0..3)
        .find(|&i| i != meta_leader && cluster.node_name(i) != stream_leader)
        .expect("one of three nodes leads nothing");
    drop(js);
    cluster.kill(victim).await;
    assert!(!cluster.is_running(victim));

    // Publish through another node while one is down: quorum 2 of 3.
    let other = (0..3).find(|&i| i != victim).expect("another node runs");
    let js = jetstream::new(connect(&cluster.url(other)).await);
    publish_acked(&js, "repl.b", 5, 3).await;
    assert_eq!(stream_messages(&js, "REPL").await, 8);

    // The restarted node comes back healthy and catches up its replica.
    cluster.restart(victim).await;
    assert!(cluster.is_running(victim));
    let caught_up = within(15, "restarted replica catches up", async {
        loop {
            if replica_messages(&cluster, victim, "REPL") == Some(8) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(caught_up, "{}", cluster.node_log(victim));

    // A client given every node's URL works (async-nats takes a list, not a
    // comma-separated string: split `url_list()` before connecting).
    let urls: Vec<String> = cluster.url_list().split(',').map(str::to_owned).collect();
    assert_eq!(urls, cluster.urls());
    let js = jetstream::new(connect(urls).await);
    assert_eq!(stream_messages(&js, "REPL").await, 8);
}

#[tokio::test]
async fn auth_options_require_credentials() {
    let server = NatsServer::start_with(ServerOptions::core().with_user("alice", "s3cret")).await;

    let denied = within(
        10,
        "connect without credentials",
        async_nats::connect(server.url()),
    )
    .await
    .expect_err("connecting without credentials must fail");
    assert_eq!(
        denied.kind(),
        ConnectErrorKind::AuthorizationViolation,
        "{denied}"
    );

    let wrong = within(
        10,
        "connect with a wrong password",
        ConnectOptions::new()
            .user_and_password("alice".into(), "wrong".into())
            .connect(server.url()),
    )
    .await
    .expect_err("a wrong password must fail");
    assert_eq!(
        wrong.kind(),
        ConnectErrorKind::AuthorizationViolation,
        "{wrong}"
    );

    let client = within(
        10,
        "connect with credentials",
        ConnectOptions::new()
            .user_and_password("alice".into(), "s3cret".into())
            .connect(server.url()),
    )
    .await
    .unwrap_or_else(|err| panic!("connect with credentials: {err}\n{}", server.log()));
    within(5, "flush", client.flush())
        .await
        .expect("flush with credentials");

    // Token auth, with JetStream on.
    let server = NatsServer::start_with(ServerOptions::default().with_token("t0ken")).await;
    let denied = within(
        10,
        "connect without token",
        async_nats::connect(server.url()),
    )
    .await
    .expect_err("connecting without the token must fail");
    assert_eq!(denied.kind(), ConnectErrorKind::AuthorizationViolation);
    let client = within(
        10,
        "connect with token",
        ConnectOptions::new()
            .token("t0ken".into())
            .connect(server.url()),
    )
    .await
    .unwrap_or_else(|err| panic!("connect with token: {err}\n{}", server.log()));
    within(5, "flush", client.flush())
        .await
        .expect("flush with token");
}

#[tokio::test]
#[should_panic(expected = "--- nats-server log ---")]
async fn a_server_that_cannot_start_panics_with_its_log() {
    let _server = NatsServer::start_with(ServerOptions {
        extra_config: Some("this is { not valid".into()),
        ..ServerOptions::default()
    })
    .await;
}
