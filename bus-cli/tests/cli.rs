//! The built `angzarr-bus` binary against an in-process bundled server.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bus::{Backend, Bus, BusConfig, ConsumerConfig, EventEnvelope, ExpectedVersion};
use bus_embedded_server::jetstream::JetStreamConfig;
use bus_embedded_server::{ServerConfig, ServerHandle};

const BIN: &str = env!("CARGO_BIN_EXE_angzarr-bus");

struct Server {
    handle: Option<ServerHandle>,
    url: String,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let handle = bus_embedded_server::start(ServerConfig {
            port: 0,
            jetstream: Some(JetStreamConfig {
                store_dir: dir.path().to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("start the server");
        let url = handle.client_url();
        Server {
            handle: Some(handle),
            url,
            _dir: dir,
        }
    }

    async fn bus(&self) -> Arc<dyn Bus> {
        let mut config = BusConfig {
            backend: Backend::Nats,
            ..BusConfig::default()
        };
        config.nats.url = self.url.clone();
        bus::open(&config).await.expect("open the bus")
    }

    async fn stop(mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown(Duration::from_secs(2)).await;
        }
    }
}

/// Runs the binary with `--url` and `args` (off the async workers).
async fn run(url: &str, args: &[&str]) -> Output {
    let mut all = vec!["--url".to_owned(), url.to_owned()];
    all.extend(args.iter().map(|s| (*s).to_owned()));
    tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(&all)
            .output()
            .expect("run angzarr-bus")
    })
    .await
    .expect("join")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

fn event(aggregate_id: &str, sequence: u64, event_type: &str) -> EventEnvelope {
    let mut e = EventEnvelope::from_message(
        "player",
        aggregate_id,
        sequence,
        &prost_types::Duration::default(),
    );
    event_type.clone_into(&mut e.event_type);
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_then_replay_shows_the_event_decoded() {
    let server = Server::start().await;
    let out = ok(&run(
        &server.url,
        &[
            "publish",
            "player",
            "p-1",
            "FundsDeposited",
            "--payload",
            "100 chips",
            "--sequence",
            "4",
            "--correlation-id",
            "req-77",
        ],
    )
    .await);
    assert!(out.contains("at position 1"), "{out}");
    let out = ok(&run(&server.url, &["replay", "player.*", "--payload"]).await);
    let line = out.lines().next().unwrap();
    for part in [
        "#1",
        "player/p-1",
        "seq=4",
        "FundsDeposited",
        "corr=req-77",
        "9B",
        "payload=\"100 chips\"",
    ] {
        assert!(line.contains(part), "{part:?} missing in {line:?}");
    }
    // Filters that do not match print nothing.
    let out = ok(&run(&server.url, &["replay", "table.*"]).await);
    assert!(out.is_empty(), "{out}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_starts_at_the_requested_position_and_reports_progress() {
    let server = Server::start().await;
    let bus = server.bus().await;
    for i in 1..=3 {
        bus.publish(event("p-2", i, "FundsDeposited"))
            .await
            .unwrap();
    }
    let o = run(&server.url, &["replay", "--from-position", "2"]).await;
    let out = ok(&o);
    let positions: Vec<&str> = out
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(positions, ["#2", "#3"]);
    assert!(stderr(&o).contains("replayed 2 events"), "{}", stderr(&o));
    let o = run(&server.url, &["replay", "--from-time", "1h", "--quiet"]).await;
    assert_eq!(ok(&o).lines().count(), 3);
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    bus.close().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_parses_and_has_the_fields() {
    let server = Server::start().await;
    let out = ok(&run(
        &server.url,
        &[
            "--json",
            "publish",
            "player",
            "p-1",
            "Joined",
            "--correlation-id",
            "c-1",
            "--metadata",
            "tenant=acme",
        ],
    )
    .await);
    let receipt: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(receipt["position"], 1);
    assert_eq!(receipt["duplicate"], false);
    assert_eq!(receipt["subject"], "angzarr.events.player.Joined");
    let id = receipt["event_id"].as_str().unwrap().to_owned();

    // Publishing the same event id again is a duplicate.
    let out = ok(&run(
        &server.url,
        &[
            "--json",
            "publish",
            "player",
            "p-1",
            "Joined",
            "--event-id",
            &id,
        ],
    )
    .await);
    let again: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (again["position"].as_u64(), again["duplicate"].as_bool()),
        (Some(1), Some(true))
    );

    let out = ok(&run(&server.url, &["replay", "--json"]).await);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    let e = &lines[0];
    assert_eq!(e["position"], 1);
    assert_eq!(e["event_id"], id.as_str());
    assert_eq!(e["aggregate_type"], "player");
    assert_eq!(e["aggregate_id"], "p-1");
    assert_eq!(e["event_type"], "Joined");
    assert_eq!(e["correlation_id"], "c-1");
    assert_eq!(e["metadata"]["tenant"], "acme");
    assert!(e["stored_at"].as_str().unwrap().ends_with('Z'));

    let out = ok(&run(&server.url, &["streams", "--json"]).await);
    let streams: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(streams["event_stream"]["last_position"], 1);
    let names: Vec<&str> = streams["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "angzarr-events",
            "angzarr-events-dlq",
            "angzarr-events-redrive"
        ]
    );
    assert_eq!(streams["streams"][2]["role"], "redrive queue");

    let out = ok(&run(&server.url, &["stream", "info", "--json"]).await);
    let info: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(info["messages"], 1);
    assert_eq!(info["storage"], "file");

    let out = ok(&run(&server.url, &["stream", "info"]).await);
    assert!(out.contains("last position:"), "{out}");
    let o = run(&server.url, &["stream", "info", "nope"]).await;
    assert!(!o.status.success());
    assert!(stderr(&o).contains("angzarr-bus streams"), "{}", stderr(&o));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_lists_a_consumer_with_its_pending_count() {
    let server = Server::start().await;
    let bus = server.bus().await;
    let filter = bus.layout().aggregate("player").unwrap();
    let consumer = bus
        .consumer(ConsumerConfig::new("projector", filter))
        .await
        .unwrap();
    for i in 1..=3 {
        bus.publish(event("p-3", i, "FundsDeposited"))
            .await
            .unwrap();
    }
    let out = ok(&run(&server.url, &["consumers"]).await);
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("CONSUMER") && header.contains("PENDING"),
        "{out}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[0], "projector");
    assert_eq!(row[1], "angzarr.events.player.*");
    assert_eq!(row[2], "3", "pending in {out}");

    let out = ok(&run(&server.url, &["consumers", "--json"]).await);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let c = &list.as_array().unwrap()[0];
    assert_eq!(c["name"], "projector");
    assert_eq!(c["num_pending"], 3);
    assert_eq!(c["ack_floor"], 0);
    assert_eq!(c["num_redelivered"], 0);

    let out = ok(&run(&server.url, &["consumer", "info", "projector", "--json"]).await);
    let info: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(info["num_pending"], 3);
    let out = ok(&run(&server.url, &["consumer", "info", "projector"]).await);
    assert!(
        out.contains("pending:") && out.contains("ack floor:"),
        "{out}"
    );

    let o = run(&server.url, &["consumer", "info", "missing"]).await;
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("angzarr-bus consumers"),
        "{}",
        stderr(&o)
    );
    drop(consumer);
    bus.close().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_show_a_terminated_event() {
    let server = Server::start().await;
    let bus = server.bus().await;
    let mut consumer = bus
        .consumer(ConsumerConfig::new("billing", bus.layout().all()))
        .await
        .unwrap();
    bus.publish(event("p-4", 1, "CardCharged")).await.unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .unwrap()
        .unwrap();
    delivery.term("card declined").await.unwrap();

    let out = ok(&run(&server.url, &["dead-letters"]).await);
    let mut lines = out.lines();
    assert!(lines.next().unwrap().starts_with("POSITION"), "{out}");
    let row = lines.next().unwrap();
    for part in ["billing", "card declined", "CardCharged", "player/p-4"] {
        assert!(row.contains(part), "{part:?} missing in {row:?}");
    }
    assert!(row.trim_start().starts_with('1'), "{row}");

    let out = ok(&run(
        &server.url,
        &["dead-letters", "--consumer", "billing", "--json"],
    )
    .await);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let d = &list.as_array().unwrap()[0];
    assert_eq!(d["consumer"], "billing");
    assert_eq!(d["reason"], "card declined");
    assert_eq!(d["attempts"], 1);
    assert_eq!(d["position"], 1);
    assert_eq!(d["event_type"], "CardCharged");

    let out = ok(&run(&server.url, &["dead-letters", "--consumer", "other"]).await);
    assert!(out.contains("no dead letters"), "{out}");
    consumer.close().await.unwrap();
    bus.close().await.unwrap();
    server.stop().await;
}

async fn next_of(c: &mut bus::Consumer) -> bus::Delivery {
    tokio::time::timeout(Duration::from_secs(10), c.next())
        .await
        .expect("a delivery")
        .expect("next")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_redrive_sends_one_back_to_its_consumer_only() {
    let server = Server::start().await;
    let bus = server.bus().await;
    let mut billing = bus
        .consumer(ConsumerConfig::new("billing", bus.layout().all()))
        .await
        .unwrap();
    let mut audit = bus
        .consumer(ConsumerConfig::new("audit", bus.layout().all()))
        .await
        .unwrap();
    let sent = event("p-5", 1, "CardCharged");
    bus.publish(sent.clone()).await.unwrap();
    next_of(&mut audit).await.ack().await.unwrap();
    next_of(&mut billing)
        .await
        .term("card declined")
        .await
        .unwrap();

    // Neither --position nor --all: refused, nothing sent.
    let o = run(
        &server.url,
        &["dead-letters", "redrive", "--consumer", "billing"],
    )
    .await;
    assert!(!o.status.success(), "{}", stdout(&o));

    let out = ok(&run(
        &server.url,
        &[
            "dead-letters",
            "redrive",
            "--consumer",
            "billing",
            "--position",
            "1",
        ],
    )
    .await);
    assert!(
        out.contains("redriven 1 dead letter to consumer billing (positions 1)"),
        "{out}"
    );
    let d = next_of(&mut billing).await;
    assert_eq!((d.event.position, d.attempt), (1, 1));
    assert_eq!(d.event.envelope, sent);
    d.ack().await.unwrap();
    let gone = async {
        for _ in 0..100 {
            if bus.dead_letters(Some("billing")).await.unwrap().is_empty() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    };
    assert!(
        gone.await,
        "the dead letter stays after its redelivery was acknowledged"
    );
    let none = audit.fetch(1, Duration::from_millis(1500)).await.unwrap();
    assert!(none.is_empty(), "audit got a second copy");

    let out = ok(&run(
        &server.url,
        &[
            "dead-letters",
            "redrive",
            "--consumer",
            "billing",
            "--all",
            "--json",
        ],
    )
    .await);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["redriven"], serde_json::json!([]));
    let o = run(
        &server.url,
        &["dead-letters", "redrive", "--consumer", "nobody", "--all"],
    )
    .await;
    assert!(!o.status.success());
    assert!(stderr(&o).contains("nobody"), "{}", stderr(&o));
    billing.close().await.unwrap();
    audit.close().await.unwrap();
    bus.close().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_shows_one_aggregates_events_in_version_order_as_a_table_and_json() {
    let server = Server::start().await;
    let bus = server.bus().await;
    let id = "p 7.x";
    let first = bus
        .append(
            ExpectedVersion::NoAggregate,
            vec![
                event(id, 0, "PlayerRegistered"),
                event(id, 0, "FundsDeposited"),
            ],
        )
        .await
        .unwrap();
    // Another aggregate's events in between: positions are not versions.
    bus.append(
        ExpectedVersion::NoAggregate,
        vec![event("p-8", 0, "PlayerRegistered")],
    )
    .await
    .unwrap();
    let mut last = event(id, 0, "FundsWithdrawn");
    last.correlation_id = "req-9".to_owned();
    let second = bus
        .append(ExpectedVersion::Exactly(2), vec![last])
        .await
        .unwrap();
    let positions: Vec<u64> = first
        .positions
        .iter()
        .chain(&second.positions)
        .copied()
        .collect();

    let out = ok(&run(&server.url, &["aggregate", "player", id]).await);
    let mut lines = out.lines();
    assert_eq!(
        lines.next().unwrap(),
        "player \"p 7.x\": version 3, 3 events"
    );
    assert!(lines.next().unwrap().starts_with("VERSION"), "{out}");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 3, "{out}");
    for ((row, version), (event_type, position)) in rows.iter().zip(1..).zip(
        ["PlayerRegistered", "FundsDeposited", "FundsWithdrawn"]
            .iter()
            .zip(&positions),
    ) {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[0], version.to_string(), "{row}");
        assert_eq!(cells[1], position.to_string(), "{row}");
        assert!(cells.contains(event_type), "{event_type} missing in {row}");
    }
    assert!(rows[2].contains("req-9"), "{}", rows[2]);

    let out = ok(&run(
        &server.url,
        &["aggregate", "player", id, "--after-version", "2"],
    )
    .await);
    assert!(
        out.starts_with("player \"p 7.x\": version 3, 1 events after version 2"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 3, "{out}");

    let out = ok(&run(&server.url, &["aggregate", "player", id, "--json"]).await);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["aggregate_type"], "player");
    assert_eq!(v["aggregate_id"], id);
    assert_eq!(v["version"], 3);
    let events = v["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    for (e, (version, position)) in events.iter().zip((1..).zip(&positions)) {
        assert_eq!(e["sequence"], version);
        assert_eq!(e["position"], *position);
        assert_eq!(e["aggregate_id"], id);
        assert_eq!(
            e["subject"].as_str().unwrap().split('.').nth(2),
            Some("player")
        );
    }
    assert_eq!(events[2]["correlation_id"], "req-9");

    let out = ok(&run(&server.url, &["aggregate", "player", "nobody"]).await);
    assert_eq!(out.trim_end(), "player \"nobody\": version 0, no events");
    let out = ok(&run(&server.url, &["aggregate", "player", "nobody", "--json"]).await);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["version"].as_u64(), v["events"].as_array().map(Vec::len)),
        (Some(0), Some(0))
    );

    let o = run(&server.url, &["aggregate", "pla.yer", "p-1"]).await;
    assert!(
        !o.status.success(),
        "a bad aggregate type must fail: {}",
        stdout(&o)
    );
    assert!(stderr(&o).contains("error:"), "{}", stderr(&o));
    bus.close().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_url_gives_the_helpful_error_and_a_failure_status() {
    // Port 1 on loopback: nothing listens there.
    let o = run("nats://127.0.0.1:1", &["streams"]).await;
    assert!(!o.status.success());
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.starts_with("error: cannot connect to nats://127.0.0.1:1"),
        "{err}"
    );
    assert!(err.contains("is the server running?"), "{err}");
    assert!(err.contains("angzarr-bus server"), "{err}");
    assert!(stdout(&o).is_empty());

    let o = run("nats://127.0.0.1:1", &["replay", "bad..filter"]).await;
    assert!(!o.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_an_event_published_after_it_started() {
    let server = Server::start().await;
    let bus = server.bus().await;
    let mut child = Command::new(BIN)
        .args(["--url", &server.url, "tail", "player.*"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<(bool, String)>();
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send((true, line));
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx2.send((false, line));
        }
    });
    // Wait until it says it is subscribed.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (is_out, line) = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("tail did not start");
        if !is_out && line.starts_with("tailing") {
            break;
        }
    }
    // A live subscription sees only what is published after the server has
    // its SUB; publish until the line shows (at most a few times).
    let mut seen = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    while seen.is_none() && Instant::now() < deadline {
        n += 1;
        bus.publish(event("p-5", n, "Tailed")).await.unwrap();
        let until = Instant::now() + Duration::from_millis(500);
        while let Ok((is_out, line)) =
            rx.recv_timeout(until.saturating_duration_since(Instant::now()))
        {
            if is_out && line.contains("Tailed") {
                seen = Some(line);
                break;
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let line = seen.expect("tail printed no event");
    assert!(line.contains("player/p-5"), "{line}");
    assert!(
        line.trim_start().starts_with('-'),
        "live events have no position: {line}"
    );
    bus.close().await.unwrap();
    server.stop().await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_runs_in_the_foreground_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut child = Command::new(BIN)
        .args(["server", "-p", "-1", "-sd"])
        .arg(&store)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("server did not start");
        if let Some(a) = line.split("Listening for client connections on ").nth(1) {
            break a.trim().to_owned();
        }
    };
    let url = format!("nats://{addr}");
    let out = ok(&run(&url, &["publish", "player", "p-6", "Started"]).await);
    assert!(out.contains("at position 1"), "{out}");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(store.exists());
}

#[test]
fn bench_without_nats_bench_says_how_to_get_it() {
    let o = Command::new(BIN)
        .args(["bench", "--version"])
        .env("PATH", "")
        .output()
        .unwrap();
    // When nats-bench was built next to angzarr-bus it runs instead; only
    // check the message when it is absent.
    let beside = std::path::Path::new(BIN)
        .with_file_name(format!("nats-bench{}", std::env::consts::EXE_SUFFIX));
    if !beside.exists() {
        assert_eq!(o.status.code(), Some(1));
        assert!(
            stderr(&o).contains("cargo build --release -p nats-bench"),
            "{}",
            stderr(&o)
        );
    }
}
