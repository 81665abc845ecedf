//! The bus read paths an event-sourced service lives on, the same bus code
//! on the embedded default (the bundled server in this process) and on
//! nats-server 2.15.1 (started here), side by side in one run:
//!
//! - `bus.replay` of every event from the beginning (a projection rebuild);
//! - a durable consumer draining them: `fetch` of a batch, the batch
//!   acknowledged with `Delivery::ack_all` (every ack confirmed) before the
//!   next fetch.
//!
//! Both servers get the same events (filled untimed, with
//! `publish_batch(100)` from 8 tasks). The figures are events/s on this
//! machine; what matters is the ratio ours / nats-server within one run
//! (> 1: ours faster). Issue #15 asks for >= 1.0 at 1,000,000 events.
//!
//! Run:
//!
//! ```text
//! cargo bench -p bus --bench replay_drain                       # 200,000 events
//! cargo bench -p bus --bench replay_drain -- --events 1000000  # the issue's size
//! ```
//!
//! Options: `--events <n>` (200000), `--batch <fetch size>` (500),
//! `--repeats <n>` (2: each figure is the best of n runs on the same data),
//! `--ours-process <path to angzarr-nats-server>`: a third column, the same
//! bus code on our server started as its own process (as nats-server is),
//! to tell the server's speed from its placement in the bench's process.
//! `--ack-each`: the drain awaits each delivery's `ack()` (together) instead
//! of `Delivery::ack_all`, as it did before the batch acknowledgement.
//! `--full-batches`: the drain fetches until it holds a whole batch before
//! acknowledging it (a `fetch` returns what has arrived, often a part of
//! the pull), so each confirmation covers `--batch` deliveries.
//! The headline figure stays the embedded default, as users run it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bus::{Backend, Bus, BusConfig, ConsumerConfig, Delivery, StartPosition};
use bus_core::testkit::{deposit, filter};

struct Options {
    events: usize,
    batch: usize,
    repeats: usize,
    ours_process: Option<PathBuf>,
    /// Each delivery's `ack()` awaited (together) instead of
    /// `Delivery::ack_all`: the drain as it was before the batch ack.
    ack_each: bool,
    /// Fetch until a whole batch is in hand (or the rest of the events)
    /// before acknowledging it: one confirmation per `--batch` deliveries.
    full_batches: bool,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        events: 200_000,
        batch: 500,
        repeats: 2,
        ours_process: None,
        ack_each: false,
        full_batches: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| -> Result<usize, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .filter(|v| *v > 0)
                .ok_or_else(|| format!("{name} needs a positive number"))
        };
        match a.as_str() {
            "--events" => o.events = value("--events")?,
            "--batch" => o.batch = value("--batch")?,
            "--repeats" => o.repeats = value("--repeats")?,
            "--ours-process" => {
                let path = args
                    .next()
                    .map(PathBuf::from)
                    .filter(|p| p.is_file())
                    .ok_or("--ours-process needs the path of an angzarr-nats-server binary")?;
                o.ours_process = Some(path);
            }
            "--ack-each" => o.ack_each = true,
            "--full-batches" => o.full_batches = true,
            // cargo bench passes --bench to every bench target.
            "--bench" => {}
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(o)
}

/// events/s of the best of `repeats` runs for each read path.
struct Figures {
    replay: f64,
    drain: f64,
}

async fn fill(bus: &Arc<dyn Bus>, events: usize) -> Result<(), String> {
    let tasks = 8;
    let per_task = events.div_ceil(tasks);
    let mut handles = Vec::new();
    for t in 0..tasks {
        let bus = Arc::clone(bus);
        let mine = per_task.min(events.saturating_sub(t * per_task));
        handles.push(tokio::spawn(async move {
            let mut seq = 0u64;
            while (seq as usize) < mine {
                let n = 100.min(mine - seq as usize);
                let batch: Vec<_> = (0..n)
                    .map(|_| {
                        seq += 1;
                        deposit(&format!("agg{t}"), seq)
                    })
                    .collect();
                bus.publish_batch(batch)
                    .await
                    .map_err(|e| format!("fill: {e}"))?;
            }
            Ok::<(), String>(())
        }));
    }
    for h in handles {
        h.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

async fn replay(bus: &Arc<dyn Bus>, events: usize) -> Result<Duration, String> {
    let all = filter("angzarr.events.>");
    let start = Instant::now();
    let mut r = bus
        .replay(&all, StartPosition::Beginning)
        .await
        .map_err(|e| format!("replay: {e}"))?;
    let mut count = 0;
    while let Some(e) = r.next().await {
        e.map_err(|e| format!("replay event: {e}"))?;
        count += 1;
    }
    let took = start.elapsed();
    if count != events {
        return Err(format!("replay saw {count} events of {events}"));
    }
    Ok(took)
}

async fn drain(bus: &Arc<dyn Bus>, name: &str, o: &Options) -> Result<Duration, String> {
    let all = filter("angzarr.events.>");
    let config = ConsumerConfig::new(name, all)
        .start(StartPosition::Beginning)
        .max_ack_pending(o.batch * 2)
        .ack_wait(Duration::from_secs(60));
    let start = Instant::now();
    let mut consumer = bus
        .consumer(config)
        .await
        .map_err(|e| format!("consumer: {e}"))?;
    let mut count = 0;
    while count < o.events {
        let mut batch = consumer
            .fetch(o.batch, Duration::from_secs(5))
            .await
            .map_err(|e| format!("fetch: {e}"))?;
        if batch.is_empty() {
            return Err(format!("drain stalled at {count} of {}", o.events));
        }
        let want = o.batch.min(o.events - count);
        while o.full_batches && batch.len() < want {
            let more = consumer
                .fetch(want - batch.len(), Duration::from_secs(5))
                .await
                .map_err(|e| format!("fetch: {e}"))?;
            if more.is_empty() {
                return Err(format!("drain stalled at {count} of {}", o.events));
            }
            batch.extend(more);
        }
        count += batch.len();
        if o.ack_each {
            let acks = batch.iter().map(|d| d.ack());
            for r in futures::future::join_all(acks).await {
                r.map_err(|e| format!("ack: {e}"))?;
            }
        } else {
            Delivery::ack_all(&batch)
                .await
                .map_err(|e| format!("ack: {e}"))?;
        }
    }
    let took = start.elapsed();
    if count != o.events {
        return Err(format!("drain saw {count} deliveries of {}", o.events));
    }
    Ok(took)
}

/// Where the bus's server runs.
enum Target {
    /// The embedded default: our server inside this process.
    Embedded,
    /// nats-server 2.15.1, its own process.
    NatsServer,
    /// Our server binary as its own process (`--ours-process`).
    OursProcess(PathBuf),
}

/// Our server binary running as its own process; killed on drop.
struct OwnProcess(std::process::Child);

impl Drop for OwnProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `bin` on a free loopback port with JetStream in `dir`; returns
/// once it accepts connections.
async fn start_own_process(
    bin: &std::path::Path,
    dir: &std::path::Path,
) -> Result<(OwnProcess, String), String> {
    let port = nats_test_server::free_port();
    let child = std::process::Command::new(bin)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let process = OwnProcess(child);
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok((process, format!("nats://127.0.0.1:{port}")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!(
        "{} did not accept connections on port {port}",
        bin.display()
    ))
}

async fn measure(target: &Target, o: &Options) -> Result<Figures, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut config = BusConfig::default();
    let mut _server = None;
    let mut _process = None;
    match target {
        Target::NatsServer => {
            config.backend = Backend::Nats;
            let s = nats_test_server::NatsServer::start().await;
            config.nats.url = s.url();
            _server = Some(s);
        }
        Target::OursProcess(bin) => {
            config.backend = Backend::Nats;
            let (p, url) = start_own_process(bin, dir.path()).await?;
            config.nats.url = url;
            _process = Some(p);
        }
        Target::Embedded => {
            config.backend = Backend::Embedded;
            config.embedded.port = 0;
            config.embedded.data_dir = dir.path().join("data");
        }
    }
    let bus = bus::open(&config).await.map_err(|e| e.to_string())?;
    fill(&bus, o.events).await?;
    let rate = |d: Duration| o.events as f64 / d.as_secs_f64().max(1e-9);
    let mut f = Figures {
        replay: 0.0,
        drain: 0.0,
    };
    for i in 0..o.repeats {
        f.replay = f.replay.max(rate(replay(&bus, o.events).await?));
        f.drain = f
            .drain
            .max(rate(drain(&bus, &format!("drain{i}"), o).await?));
    }
    Ok(f)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("replay_drain: {e}");
            std::process::exit(2);
        }
    };
    println!(
        "bus read paths: {} events of ~120 bytes, durable drain fetching {} and confirming every ack \
         per batch ({}), best of {} runs",
        o.events,
        o.batch,
        match (o.ack_each, o.full_batches) {
            (true, false) => "each ack() awaited",
            (true, true) => "each ack() awaited, whole batches",
            (false, false) => "Delivery::ack_all",
            (false, true) => "Delivery::ack_all, whole batches",
        },
        o.repeats
    );
    let mut targets = vec![
        ("embedded (ours)", Target::Embedded),
        ("nats-server 2.15.1", Target::NatsServer),
    ];
    if let Some(bin) = &o.ours_process {
        targets.push(("ours, own process", Target::OursProcess(bin.clone())));
    }
    let mut rows = Vec::new();
    for (label, target) in targets {
        match measure(&target, &o).await {
            Ok(f) => rows.push((label, f)),
            Err(e) => {
                eprintln!("replay_drain: {label}: {e}");
                std::process::exit(1);
            }
        }
    }
    let third = rows.get(2).map(|r| r.0);
    println!(
        "\n  {:<34} {:>16} {:>20} {:>8}{}",
        "events/s",
        rows[0].0,
        rows[1].0,
        "ratio",
        third.map_or(String::new(), |t| format!(" {t:>20} {:>8}", "ratio"))
    );
    type Pick = fn(&Figures) -> f64;
    let paths: [(&str, Pick); 2] = [
        ("bus.replay from the beginning", |f| f.replay),
        ("durable drain, acks per batch", |f| f.drain),
    ];
    for (what, pick) in paths {
        let (ours, theirs) = (pick(&rows[0].1), pick(&rows[1].1));
        let own = rows.get(2).map_or(String::new(), |r| {
            let v = pick(&r.1);
            format!(" {:>20.0} {:>7.2}x", v, v / theirs.max(1e-9))
        });
        println!(
            "  {:<34} {:>16.0} {:>20.0} {:>7.2}x{own}",
            what,
            ours,
            theirs,
            ours / theirs.max(1e-9)
        );
    }
}
