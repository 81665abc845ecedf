//! The embedded backend owns its server and its store, so a data directory
//! written by an earlier version of the bus (an event stream without the
//! append marker subjects and without `allow_atomic`) is upgraded in place
//! when it opens, keeping its events, and appends then work.

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
