//! What users see when NATS is unreachable, restarts under load, refuses
//! credentials, or holds a stream with other settings.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bus_core::testkit::{deposit, filter};
use bus_core::{Backend, Bus, BusConfig, BusError, ConsumerConfig, StartPosition};
use bus_nats::NatsBus;
use nats_test_server::{NatsServer, ServerOptions, free_port};

fn config(url: &str) -> BusConfig {
    let mut c = BusConfig {
        backend: Backend::Nats,
        ..BusConfig::default()
    };
    c.nats.url = url.to_owned();
    c
}

#[tokio::test]
async fn unreachable_server_at_start_is_unavailable_naming_the_url_within_the_timeout() {
    let url = format!("nats://127.0.0.1:{}", free_port());
    let mut c = config(&url);
    c.nats.connect_timeout = Duration::from_secs(1);
    let start = Instant::now();
    let result = NatsBus::connect(&c).await;
    let took = start.elapsed();
    match result {
        Err(BusError::Unavailable(msg)) => assert!(msg.contains(&url), "{msg}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // Not a speed goal: the call must respect its timeout instead of hanging.
    assert!(took < Duration::from_secs(5), "gave up after {took:?}");
}

#[tokio::test]
async fn wrong_credentials_are_unauthorized_and_right_ones_connect() {
    let server = NatsServer::start_with(ServerOptions::default().with_user("app", "s3cret")).await;
    let mut c = config(&server.url());
    c.nats.connect_timeout = Duration::from_secs(2);
    c.nats.user = Some("app".into());
    c.nats.password = Some("wrong".into());
    match NatsBus::connect(&c).await {
        Err(BusError::Unauthorized(msg)) => assert!(msg.contains(&server.url()), "{msg}"),
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    c.nats.user = None;
    c.nats.password = None;
    assert!(matches!(
        NatsBus::connect(&c).await,
        Err(BusError::Unauthorized(_))
    ));
    c.nats.user = Some("app".into());
    c.nats.password = Some("s3cret".into());
    let bus = NatsBus::connect(&c)
        .await
        .expect("right credentials connect");
    bus.publish(deposit("p", 1)).await.expect("publish");
}

#[tokio::test]
async fn token_auth_connects() {
    let server = NatsServer::start_with(ServerOptions::default().with_token("t0ken")).await;
    let mut c = config(&server.url());
    c.nats.token = Some("t0ken".into());
    NatsBus::connect(&c).await.expect("token connects");
    c.nats.token = Some("nope".into());
    assert!(matches!(
        NatsBus::connect(&c).await,
        Err(BusError::Unauthorized(_))
    ));
}

#[tokio::test]
async fn stream_config_conflict_names_the_difference_and_update_is_opt_in() {
    let server = NatsServer::start().await;
    let mut c = config(&server.url());
    c.stream.max_age = Duration::from_secs(3600);
    NatsBus::connect(&c).await.expect("creates the stream");
    c.stream.max_age = Duration::from_secs(7200);
    c.stream.max_msgs = 1000;
    match NatsBus::connect(&c).await {
        Err(BusError::Conflict(msg)) => {
            assert!(msg.contains("angzarr-events"), "{msg}");
            assert!(msg.contains("max_age"), "{msg}");
            assert!(msg.contains("max_msgs"), "{msg}");
            assert!(
                msg.contains("update_stream"),
                "says how to resolve it: {msg}"
            );
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    c.nats.update_stream = true;
    NatsBus::connect(&c)
        .await
        .expect("update_stream updates it");
    c.nats.update_stream = false;
    NatsBus::connect(&c).await.expect("now the settings match");
}

#[tokio::test]
async fn an_existing_stream_is_checked_not_recreated() {
    let server = NatsServer::start().await;
    let c = config(&server.url());
    let bus = NatsBus::connect(&c).await.expect("connect");
    bus.publish(deposit("p", 1)).await.expect("publish");
    let again = NatsBus::connect(&c).await.expect("connect again");
    assert_eq!(again.stream_info().await.expect("info").messages, 1);
}

/// One publish call as the publisher saw it.
struct Attempt {
    start: Instant,
    end: Instant,
    acked: bool,
}

/// Publish continuously while the server is killed and restarted: publishers
/// see errors or retry, the consumer resumes by itself, and every
/// acknowledged event is consumed. The kill comes once a third of the events
/// are acknowledged, and the test checks that it interrupted publishing (a
/// publish was in flight while the server was down and was held up or failed
/// by it), so it cannot pass by killing a server nobody was using.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_mid_run_loses_no_acknowledged_event() {
    let mut server = NatsServer::start().await;
    let mut c = config(&server.url());
    c.nats.request_timeout = Duration::from_secs(2);
    c.nats.publish_retries = 1;
    let bus: Arc<dyn Bus> = Arc::new(NatsBus::connect(&c).await.expect("connect"));
    let consumer_config = ConsumerConfig::new("survivor", filter("angzarr.events.>"))
        .start(StartPosition::Beginning)
        .ack_wait(Duration::from_secs(5));
    let mut consumer = bus.consumer(consumer_config).await.expect("consumer");

    let total = 300usize;
    let kill_after = total / 3;
    let acked_so_far = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let bus = Arc::clone(&bus);
        let acked_so_far = Arc::clone(&acked_so_far);
        tokio::spawn(async move {
            let mut acked = BTreeSet::new();
            let mut attempts = Vec::new();
            for i in 0..total {
                let e = deposit("p", i as u64 + 1);
                // The caller retries a failed publish with the same event id:
                // dedup keeps it from being stored twice.
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    let start = Instant::now();
                    let result = bus.publish(e.clone()).await;
                    attempts.push(Attempt {
                        start,
                        end: Instant::now(),
                        acked: result.is_ok(),
                    });
                    match result {
                        Ok(_) => {
                            acked.insert(e.event_id.clone());
                            acked_so_far.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        Err(err) if err.is_transient() && Instant::now() < deadline => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(err) => panic!("publish {i}: {err}"),
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (acked, attempts)
        })
    };

    let consumer_task = tokio::spawn(async move {
        let mut seen = BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(90);
        while seen.len() < total && Instant::now() < deadline {
            match consumer.fetch(50, Duration::from_millis(500)).await {
                Ok(batch) => {
                    for d in batch {
                        seen.insert(d.envelope().event_id.clone());
                        // An ack lost to the restart means a redelivery: fine.
                        let _ = d.ack().await;
                    }
                }
                Err(e) if e.is_transient() => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => panic!("consumer: {e}"),
            }
        }
        seen
    });

    let waiting_since = Instant::now();
    while acked_so_far.load(Ordering::SeqCst) < kill_after {
        assert!(
            waiting_since.elapsed() < Duration::from_secs(30),
            "only {} of {kill_after} publishes acknowledged before the kill",
            acked_so_far.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill().await;
    let killed_at = Instant::now();
    let acked_at_kill = acked_so_far.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restarting_at = Instant::now();
    server.restart().await;

    let (acked, attempts) = publisher.await.expect("publisher");
    let seen = consumer_task.await.expect("consumer");

    // The kill interrupted publishing.
    assert!(
        acked_at_kill < total,
        "the publisher was done before the kill"
    );
    let in_outage: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| a.start < restarting_at && a.end > killed_at)
        .collect();
    // Held up: in flight from (about) the kill until the restart.
    let held_up = |a: &Attempt| {
        !a.acked || (a.start <= killed_at + Duration::from_millis(100) && a.end >= restarting_at)
    };
    assert!(
        in_outage.iter().any(|a| held_up(a)),
        "no publish was held up or failed by the outage ({} in flight during it): \
         the server was not down while publishing",
        in_outage.len()
    );
    assert!(
        !attempts
            .iter()
            .any(|a| a.acked && a.start >= killed_at && a.end < restarting_at),
        "a publish started after the kill was acknowledged before the restart: the server was not down"
    );
    let failed = attempts.iter().filter(|a| !a.acked).count();

    assert_eq!(acked.len(), total);
    let missing: Vec<_> = acked.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events never consumed",
        missing.len()
    );
    let info = bus.stream_info().await.expect("stream info");
    assert_eq!(
        info.messages as usize, total,
        "stored once each ({failed} failed publish calls during the restart)"
    );
}

/// Two processes (two connections) bound to one durable consumer split the
/// events between them, each event going to exactly one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_connections_share_one_durable_consumer() {
    let server = NatsServer::start().await;
    let c = config(&server.url());
    let a = NatsBus::connect(&c).await.expect("first process");
    let b = NatsBus::connect(&c).await.expect("second process");
    let total = 200;
    for i in 0..total {
        a.publish(deposit("p", i + 1)).await.expect("publish");
    }
    let cfg =
        ConsumerConfig::new("shared", filter("angzarr.events.>")).ack_wait(Duration::from_secs(30));
    let mut handles = Vec::new();
    for bus in [a, b] {
        let mut consumer = bus.consumer(cfg.clone()).await.expect("bind");
        handles.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = consumer
                    .fetch(10, Duration::from_millis(500))
                    .await
                    .expect("fetch");
                if batch.is_empty() {
                    break;
                }
                for d in batch {
                    d.ack().await.expect("ack");
                    got.push(d.event.position);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            got
        }));
    }
    let mut per_process = Vec::new();
    for h in handles {
        per_process.push(h.await.expect("worker"));
    }
    let all: BTreeSet<u64> = per_process.iter().flatten().copied().collect();
    let count: usize = per_process.iter().map(Vec::len).sum();
    assert_eq!(count, total as usize, "an event went to both processes");
    assert_eq!(all.len(), total as usize);
    assert!(
        per_process.iter().all(|p| !p.is_empty()),
        "one process got nothing"
    );
}
