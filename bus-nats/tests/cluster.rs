//! A three-node JetStream cluster on loopback with a 3-replica stream: publish
//! continuously while a node is killed and restarted. Every acknowledged event
//! is consumed afterwards, and no event the consumer acknowledged is delivered
//! to it again.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bus_core::testkit::{deposit, filter};
use bus_core::{Backend, Bus, BusConfig, ConsumerConfig, StartPosition};
use bus_nats::NatsBus;
use nats_test_server::NatsCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_node_mid_publish_loses_no_acknowledged_event() {
    let mut cluster = NatsCluster::start(3).await;
    let mut config = BusConfig {
        backend: Backend::Nats,
        ..BusConfig::default()
    };
    config.nats.url = cluster.url_list();
    config.nats.request_timeout = Duration::from_secs(3);
    config.nats.publish_retries = 3;
    config.stream.replicas = 3;
    let bus: Arc<dyn Bus> = Arc::new(connect_while_the_stream_forms(&config).await);
    let consumer_config = ConsumerConfig::new("cluster-projector", filter("angzarr.events.>"))
        .start(StartPosition::Beginning)
        .ack_wait(Duration::from_secs(5));
    let mut consumer = bus.consumer(consumer_config).await.expect("consumer");

    let total = 400usize;
    let publisher = {
        let bus = Arc::clone(&bus);
        tokio::spawn(async move {
            let mut acked = BTreeSet::new();
            let mut errors = 0usize;
            for i in 0..total {
                let e = deposit("p", i as u64 + 1);
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    match bus.publish(e.clone()).await {
                        Ok(_) => {
                            acked.insert(e.event_id.clone());
                            break;
                        }
                        Err(err) if Instant::now() < deadline => {
                            errors += 1;
                            eprintln!("publish {i} failed, retrying: {err}");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(err) => panic!("publish {i} kept failing: {err}"),
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (acked, errors)
        })
    };

    let consumer_task = tokio::spawn(async move {
        let mut seen = BTreeSet::new();
        let mut acked_by_me = BTreeSet::new();
        let mut again_after_ack = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(150);
        while seen.len() < total && Instant::now() < deadline {
            match consumer.fetch(50, Duration::from_millis(500)).await {
                Ok(batch) => {
                    for d in batch {
                        let id = d.envelope().event_id.clone();
                        if acked_by_me.contains(&id) {
                            again_after_ack.push((d.event.position, d.attempt));
                        }
                        seen.insert(id.clone());
                        if d.ack().await.is_ok() {
                            acked_by_me.insert(id);
                        }
                    }
                }
                Err(e) => {
                    eprintln!("fetch failed, retrying: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        (seen, again_after_ack)
    });

    tokio::time::sleep(Duration::from_millis(800)).await;
    // Kill the node leading the stream: the hardest case for acknowledged
    // writes (a new leader must be elected from the two survivors).
    let victim = stream_leader(&cluster).await;
    eprintln!("killing stream leader n{}", victim + 1);
    cluster.kill(victim).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.restart(victim).await;

    let (acked, errors) = publisher.await.expect("publisher");
    let (seen, again_after_ack) = consumer_task.await.expect("consumer");
    assert_eq!(acked.len(), total);
    let missing = acked.difference(&seen).count();
    assert_eq!(
        missing, 0,
        "{missing} acknowledged events never consumed ({errors} publish errors)"
    );
    assert!(
        again_after_ack.is_empty(),
        "delivered again after a confirmed ack: {again_after_ack:?}"
    );
    let info = bus.stream_info().await.expect("stream info");
    assert_eq!(info.messages as usize, total, "each event stored once");
}

/// Connects the bus, retrying transient failures for up to a minute: on a
/// fresh cluster the meta leader is elected (the fixture waits for that),
/// but creating the 3-replica stream also waits for the stream's own group
/// to elect a leader, which can outlast one 3 s request on a loaded
/// machine. A retry finds the stream created by the timed-out request, or
/// creates it.
async fn connect_while_the_stream_forms(config: &BusConfig) -> NatsBus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match NatsBus::connect(config).await {
            Ok(bus) => return bus,
            Err(e) if e.is_transient() && Instant::now() < deadline => {
                eprintln!("connect failed, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("connect: {e}"),
        }
    }
}

/// Index of the node leading the event stream, asked of the cluster itself.
async fn stream_leader(cluster: &NatsCluster) -> usize {
    let client = async_nats::connect(cluster.url(0)).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("angzarr-events").await.expect("stream");
    let info = stream.info().await.expect("stream info");
    let leader = info
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .expect("a replicated stream has a leader");
    (0..cluster.len())
        .find(|&i| cluster.node_name(i) == leader)
        .unwrap_or_else(|| panic!("leader {leader} is not a node of this cluster"))
}
