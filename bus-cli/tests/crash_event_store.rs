//! Appends with an expected version survive SIGKILL of the server (issue
//! #14 item 9). The bundled server runs as a child process
//! (`angzarr-bus server`) on a fixed port and a store directory; several
//! writers append to the same few aggregates through the nats backend,
//! expecting the version they last saw, while the server is SIGKILLed at
//! random moments and restarted on the same port and directory.
//!
//! A writer whose append got no answer (the server died) sends the same
//! append again (same event ids, same expectation) until it gets one: the
//! bus reports the earlier attempt when it was stored, or a version
//! conflict when it was not. Afterwards, on a server restarted once more:
//! every acknowledged append is in its aggregate whole, at the versions and
//! positions its receipt gave; no aggregate has a gap or a version twice;
//! no event is stored twice; and every append that was never acknowledged
//! is there whole or not at all.
//!
//! The random moments come from a SplitMix64 seeded with a constant; the
//! seed is printed. SIGKILL does not lose the page cache, so this shows the
//! batch is recovered whole or not at all, not that it was fsynced (the
//! file store's model test shows that).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bus::{Backend, Bus, BusConfig, BusError, EventEnvelope, ExpectedVersion, StartPosition};

const BIN: &str = env!("CARGO_BIN_EXE_angzarr-bus");

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// The server child process; SIGKILLed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Starts `angzarr-bus server` on `port` and `store`; waits until it accepts
/// connections.
fn start(port: u16, store: &Path, log: &Path) -> Server {
    // The log is appended to: only what this process writes counts.
    let from = std::fs::metadata(log).map_or(0, |m| m.len() as usize);
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let child = Command::new(BIN)
        .args(["server", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store)
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("spawn angzarr-bus server");
    let mut server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = std::fs::read(log).unwrap_or_default();
        let text = String::from_utf8_lossy(all.get(from..).unwrap_or_default()).into_owned();
        if text.contains("Server is ready") {
            return server;
        }
        if let Some(status) = server.0.try_wait().expect("try_wait") {
            panic!("the server exited ({status}); log:\n{text}");
        }
        assert!(Instant::now() < deadline, "server not ready; log:\n{text}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn sigkill(server: &mut Server) {
    server.0.kill().expect("SIGKILL");
    server.0.wait().expect("reap");
}

fn config(port: u16) -> BusConfig {
    let mut c = BusConfig {
        backend: Backend::Nats,
        ..BusConfig::default()
    };
    c.nats.url = format!("nats://127.0.0.1:{port}");
    c.nats.request_timeout = Duration::from_secs(2);
    c.nats.publish_retries = 1;
    c
}

fn event(aggregate_id: &str) -> EventEnvelope {
    let mut e = EventEnvelope::from_message(
        "account",
        aggregate_id,
        0,
        &prost_types::Duration::default(),
    );
    "Credited".clone_into(&mut e.event_type);
    e
}

/// One append a writer sent, and what became of it.
#[derive(Debug, Clone)]
struct Attempt {
    aggregate: String,
    ids: Vec<String>,
    /// `Some((first version, positions))` when acknowledged.
    acked: Option<(u64, Vec<u64>)>,
}

#[derive(Default)]
struct Log {
    attempts: Vec<Attempt>,
    /// Appends that got no answer at least once before their outcome.
    unanswered: u64,
    /// Of those, how many the retry found stored (`duplicate`).
    recovered: u64,
    conflicts: u64,
}

/// Appends to `aggregates` until `stop`, expecting the version it last saw;
/// an append without an answer is sent again unchanged until it has one.
async fn writer(
    bus: Arc<dyn Bus>,
    aggregates: Arc<Vec<String>>,
    seed: u64,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Log>>,
) {
    let mut rng = Rng(seed);
    let mut known: HashMap<String, u64> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        let aggregate = aggregates[rng.range(0, aggregates.len() as u64 - 1) as usize].clone();
        let k = rng.range(1, 4) as usize;
        let events: Vec<EventEnvelope> = (0..k).map(|_| event(&aggregate)).collect();
        let ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
        let version = known.get(&aggregate).copied().unwrap_or(0);
        let mut unanswered = false;
        let outcome = loop {
            match bus
                .append(ExpectedVersion::Exactly(version), events.clone())
                .await
            {
                Ok(r) => break Ok(r),
                Err(BusError::VersionConflict { actual, .. }) => break Err(actual),
                Err(_) => {
                    // No answer (the server is down or restarting): the
                    // append may or may not be stored; send it again.
                    unanswered = true;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        let mut l = log.lock().expect("log");
        if unanswered {
            l.unanswered += 1;
        }
        match outcome {
            Ok(r) => {
                if unanswered && r.duplicate {
                    l.recovered += 1;
                }
                known.insert(aggregate.clone(), r.version);
                l.attempts.push(Attempt {
                    aggregate,
                    ids,
                    acked: Some((r.first_version(), r.positions)),
                });
            }
            Err(actual) => {
                l.conflicts += 1;
                known.insert(aggregate.clone(), actual);
                l.attempts.push(Attempt {
                    aggregate,
                    ids,
                    acked: None,
                });
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_sigkill_whole_without_gaps_or_duplicates() {
    const SEED: u64 = 0x14_2026;
    const WRITERS: usize = 6;
    const KILLS: usize = 5;
    eprintln!("seed {SEED:#x}");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let log_path = dir.path().join("server.log");
    let port = free_port();
    let mut server = start(port, &store, &log_path);

    let aggregates: Arc<Vec<String>> = Arc::new((0..4).map(|i| format!("acct-{i}")).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Log::default()));
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        // Each writer has its own connection, as separate processes would.
        let bus = bus::open(&config(port)).await.expect("open the bus");
        tasks.push(tokio::spawn(writer(
            bus,
            Arc::clone(&aggregates),
            SEED + w as u64,
            Arc::clone(&stop),
            Arc::clone(&log),
        )));
    }

    let mut rng = Rng(SEED);
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(rng.range(200, 900))).await;
        sigkill(&mut server);
        tokio::time::sleep(Duration::from_millis(rng.range(0, 300))).await;
        server = start(port, &store, &log_path);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("writers finish once the server is back")
            .expect("writer task");
    }
    // Once more, with nothing in flight.
    sigkill(&mut server);
    let _server = start(port, &store, &log_path);
    let bus = bus::open(&config(port)).await.expect("open after restart");

    let log = std::mem::take(&mut *log.lock().expect("log"));
    let acked = log.attempts.iter().filter(|a| a.acked.is_some()).count();
    eprintln!(
        "{} appends: {acked} acknowledged, {} conflicts, {} without an answer at first \
         ({} of them found stored by the retry)",
        log.attempts.len(),
        log.conflicts,
        log.unanswered,
        log.recovered
    );
    assert!(acked > 20, "too few appends got through: {acked}");
    assert!(
        log.unanswered > 0,
        "no append was cut off by a kill: the test did not test anything"
    );

    // Every aggregate: versions 1..=n, each once, in stream order.
    let mut stored: HashMap<String, (String, u64, u64)> = HashMap::new(); // id -> (agg, version, pos)
    for aggregate in aggregates.iter() {
        let h = bus.load("account", aggregate, 0).await.expect("load");
        assert_eq!(h.events.len() as u64, h.version, "{aggregate}: a gap");
        let mut last_position = 0;
        for (i, ev) in h.events.iter().enumerate() {
            assert_eq!(
                ev.envelope.sequence,
                i as u64 + 1,
                "{aggregate}: version order"
            );
            assert!(ev.position > last_position, "{aggregate}: stream order");
            last_position = ev.position;
            let previous = stored.insert(
                ev.envelope.event_id.clone(),
                (aggregate.clone(), ev.envelope.sequence, ev.position),
            );
            assert!(
                previous.is_none(),
                "event {} stored twice",
                ev.envelope.event_id
            );
        }
    }
    // The stream holds exactly those events, each once.
    let replayed = bus
        .replay(&bus.layout().all(), StartPosition::Beginning)
        .await
        .expect("replay")
        .collect_all()
        .await
        .expect("replay");
    assert_eq!(replayed.len(), stored.len(), "events outside the loads");
    let mut seen = HashSet::new();
    for ev in &replayed {
        assert!(
            seen.insert(ev.envelope.event_id.clone()),
            "duplicate in the stream"
        );
        let (_, version, position) = stored
            .get(&ev.envelope.event_id)
            .expect("a replayed event belongs to an aggregate's history");
        assert_eq!((*version, *position), (ev.envelope.sequence, ev.position));
    }

    // Each append: acknowledged ones whole where the receipt said; the
    // others whole or not at all.
    let mut by_aggregate: BTreeMap<&str, u64> = BTreeMap::new();
    for a in &log.attempts {
        let found: Vec<Option<&(String, u64, u64)>> =
            a.ids.iter().map(|id| stored.get(id)).collect();
        match &a.acked {
            Some((first_version, positions)) => {
                for (i, f) in found.iter().enumerate() {
                    let (agg, version, position) = f.unwrap_or_else(|| {
                        panic!("acknowledged append {a:?} lost event {}", a.ids[i])
                    });
                    assert_eq!(agg, &a.aggregate);
                    assert_eq!(*version, first_version + i as u64, "{a:?}");
                    assert_eq!(*position, positions[i], "{a:?}");
                }
                *by_aggregate.entry(&a.aggregate).or_default() += a.ids.len() as u64;
            }
            None => {
                let present = found.iter().filter(|f| f.is_some()).count();
                assert_eq!(
                    present,
                    0,
                    "an append refused with a version conflict left {present} of {} events: {a:?}",
                    a.ids.len()
                );
            }
        }
    }
    // Nothing is stored that no acknowledged append accounts for.
    for aggregate in aggregates.iter() {
        let n = stored.values().filter(|(agg, ..)| agg == aggregate).count() as u64;
        assert_eq!(
            by_aggregate.get(aggregate.as_str()).copied().unwrap_or(0),
            n,
            "{aggregate}: stored events that no acknowledged append holds"
        );
    }
    bus.close().await.expect("close");
}
