//! The event store on the bundled server where the contract suite cannot
//! show it: a data directory written by an earlier version of the bus (an
//! event stream without the append marker subjects and without
//! `allow_atomic`) is upgraded in place when it opens, keeping its events,
//! and appends then work; and a lost acknowledgement of an append (dropped
//! by a proxy, as `bus-nats/tests/event_store.rs` does on nats-server) is
//! retried and recognised.

#[path = "../../bus-nats/tests/support/nats_proxy.rs"]
mod nats_proxy;

use async_nats::jetstream;
use bus::{BusConfig, EmbeddedBus, ExpectedVersion, StartPosition};
use bus_core::Bus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_store_from_before_appends_is_upgraded_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = BusConfig::default();
    config.embedded.port = 0;
    config.embedded.data_dir = dir.path().join("data");

    let bus = EmbeddedBus::start(&config).await.expect("embedded starts");
    bus.publish(bus_core::testkit::deposit("p0", 1))
        .await
        .expect("publish");
    // Make the stream what earlier versions created: events only.
    let client = async_nats::connect(bus.url()).await.expect("client");
    let js = jetstream::new(client);
    let mut old = js
        .get_stream("angzarr-events")
        .await
        .expect("stream")
        .info()
        .await
        .expect("info")
        .config
        .clone();
    old.subjects = vec!["angzarr.events.>".into()];
    old.allow_atomic_publish = false;
    js.update_stream(&old).await.expect("downgrade the stream");
    drop(js);
    bus.close().await.expect("close");

    let bus = EmbeddedBus::start(&config)
        .await
        .expect("an old store opens without update_stream");
    let client = async_nats::connect(bus.url()).await.expect("client");
    let js = jetstream::new(client);
    let now = js
        .get_stream("angzarr-events")
        .await
        .expect("stream")
        .info()
        .await
        .expect("info")
        .config
        .clone();
    assert!(
        now.subjects.contains(&"angzarr.aggregates.>".to_owned()),
        "marker subjects added: {:?}",
        now.subjects
    );
    let events = bus
        .replay(&bus.layout().all(), StartPosition::Beginning)
        .await
        .expect("replay")
        .collect_all()
        .await
        .expect("replay");
    assert_eq!(events.len(), 1, "the old event is kept");
    let r = bus
        .append(
            ExpectedVersion::NoAggregate,
            vec![bus_core::testkit::deposit("p1", 0)],
        )
        .await
        .expect("append on the upgraded store");
    assert_eq!(r.version, 1);
    assert!(now.allow_atomic_publish, "allow_atomic turned on");
    bus.close().await.expect("close");
}

/// The acknowledgement of an append to the bundled server is lost (a proxy
/// drops it): the bus sends the same batch again, the server refuses it
/// (the expectation no longer holds), and the bus recognises its own first
/// append: the receipt has its positions and `duplicate: true`, and the
/// events are stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_append_acknowledgement_on_the_bundled_server_is_recognised_by_the_retry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = BusConfig::default();
    config.embedded.port = 0;
    config.embedded.data_dir = dir.path().join("data");
    let embedded = EmbeddedBus::start(&config).await.expect("embedded starts");
    let proxy =
        nats_proxy::Proxy::start(embedded.url().to_owned(), nats_proxy::Rules::default()).await;
    let mut c = BusConfig {
        backend: bus::Backend::Nats,
        ..BusConfig::default()
    };
    c.nats.url.clone_from(&proxy.url);
    c.nats.request_timeout = std::time::Duration::from_secs(1);
    c.nats.publish_retries = 2;
    let bus = bus_nats::NatsBus::connect(&c).await.expect("connect");
    let deposits = |n: usize| -> Vec<_> {
        (0..n)
            .map(|_| bus_core::testkit::deposit("p1", 0))
            .collect()
    };
    bus.append(ExpectedVersion::NoAggregate, deposits(2))
        .await
        .expect("first append");
    proxy.drop_next_batch_acks(1);
    let events = deposits(3);
    let r = bus
        .append(ExpectedVersion::Exactly(2), events.clone())
        .await
        .expect("the append succeeds despite the lost acknowledgement");
    assert_eq!(proxy.dropped(), 1, "the proxy dropped the acknowledgement");
    assert!(r.duplicate, "the retry found the first attempt: {r:?}");
    assert_eq!(r.version, 5);
    let loaded = bus.load("player", "p1", 2).await.expect("load");
    let positions: Vec<u64> = loaded.events.iter().map(|e| e.position).collect();
    assert_eq!(r.positions, positions);
    let ids: Vec<&str> = loaded
        .events
        .iter()
        .map(|e| e.envelope.event_id.as_str())
        .collect();
    let sent: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, sent);
    let all = bus
        .replay(&bus.layout().all(), StartPosition::Beginning)
        .await
        .expect("replay")
        .collect_all()
        .await
        .expect("replay");
    assert_eq!(all.len(), 5, "each event stored once");
    bus.close().await.expect("close");
    embedded.close().await.expect("close");
}

/// Issue #14 item 4: appended events keep the subjects users filter on,
/// for any subscriber, here a client in another language (nats-py) with
/// the two filters the documentation names. The marker that keys an
/// append is outside `angzarr.events.>`, so neither filter sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_events_reach_a_python_subscriber_on_the_documented_filters() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = BusConfig::default();
    config.embedded.port = 0;
    config.embedded.data_dir = dir.path().join("data");
    let bus = EmbeddedBus::start(&config).await.expect("embedded starts");

    const SCRIPT: &str = r#"
import asyncio, sys
import nats

async def main(url):
    nc = await nats.connect(url)
    async def on(label):
        async def cb(msg):
            print(label, msg.subject, flush=True)
        return cb
    await nc.subscribe("angzarr.events.player.*", cb=await on("player"))
    await nc.subscribe("angzarr.events.*.>", cb=await on("all"))
    await nc.flush()
    print("READY", flush=True)
    await asyncio.sleep(3)
    await nc.close()

asyncio.run(main(sys.argv[1]))
"#;
    let mut child = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(bus.url())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("python3 is needed (with nats-py: pip install -r bus-embedded-server/tests/clients/python/requirements.txt): {e}")
        });
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let ready = lines.next_line().await.expect("read").unwrap_or_default();
    assert_eq!(
        ready, "READY",
        "the nats-py subscriber did not start (is nats-py installed for python3?)"
    );

    let events = vec![
        bus_core::testkit::deposit("p9", 0),
        bus_core::testkit::deposit("p9", 0),
        bus_core::testkit::deposit("p9", 0),
    ];
    let receipt = bus
        .append(ExpectedVersion::NoAggregate, events)
        .await
        .expect("append");
    assert_eq!(receipt.version, 3);

    let mut seen = Vec::new();
    while let Some(line) = lines.next_line().await.expect("read") {
        seen.push(line);
    }
    let _ = child.wait().await;
    let expected = "angzarr.events.player.FundsDeposited";
    for label in ["player", "all"] {
        let got: Vec<&String> = seen.iter().filter(|l| l.starts_with(label)).collect();
        assert_eq!(
            got.len(),
            3,
            "{label} filter saw every appended event and nothing else: {seen:?}"
        );
        assert!(
            got.iter()
                .all(|l| l.as_str() == format!("{label} {expected}")),
            "{seen:?}"
        );
    }
    bus.close().await.expect("close");
}
