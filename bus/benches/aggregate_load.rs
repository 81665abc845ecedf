//! Loading one aggregate costs what that aggregate holds, not what the stream
//! holds: the same aggregates (10 events each, appended 2 at a time,
//! interleaved with every other aggregate's so that each one's events are
//! spread over the whole stream) are loaded from a stream of 10,000 events
//! and again once it holds 1,000,000 (100,000 aggregates).
//!
//! Run:
//!
//! ```text
//! cargo bench -p bus --bench aggregate_load -- --backend nats       # nats-server 2.15.1 started here
//! cargo bench -p bus --bench aggregate_load -- --backend embedded   # the bundled server, in this process
//! cargo bench -p bus --bench aggregate_load -- --backend nats --url nats://host:4222
//! ```
//!
//! Options: `--small <aggregates>` (1000), `--large <aggregates>` (100000),
//! `--events <per aggregate>` (10), `--per-append <events>` (2), `--loads <n>`
//! (2000), `--writers <concurrent appenders>` (64), `--fill append|raw`
//! (append). The figures are latencies of one `load` at a time on this
//! machine; what matters is the ratio between the two stream sizes.
//!
//! `--fill raw` (`--backend nats`) writes exactly the messages appends write
//! (each append's marker, then its events, at consecutive sequences) as
//! pipelined plain publishes from one connection, instead of atomic
//! batches. It exists because nats-server 2.15.1 takes about 15-20 ms per
//! atomic batch commit, whatever the concurrency (measured here: 1, 8 and
//! 48 writers all store about 55 appends/s, against 0.3 ms for a plain
//! publish), so 500,000 appends would take hours. Loads read what is stored
//! and cannot tell the difference; every load is checked as usual.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bus::{Backend, Bus, BusConfig, ExpectedVersion};
use bus_core::testkit::event;

#[derive(Clone)]
struct Options {
    backend: Backend,
    url: Option<String>,
    small: usize,
    large: usize,
    events: usize,
    per_append: usize,
    loads: usize,
    writers: usize,
    raw: bool,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        backend: Backend::Nats,
        url: None,
        small: 1_000,
        large: 100_000,
        events: 10,
        per_append: 2,
        loads: 2_000,
        writers: 64,
        raw: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|e| format!("{v}: {e}"));
        match a.as_str() {
            "--backend" => {
                o.backend = match value()?.as_str() {
                    "nats" => Backend::Nats,
                    "embedded" => Backend::Embedded,
                    "memory" => Backend::Memory,
                    other => return Err(format!("unknown backend {other}")),
                }
            }
            "--url" => o.url = Some(value()?),
            "--small" => o.small = number(value()?)?,
            "--large" => o.large = number(value()?)?,
            "--events" => o.events = number(value()?)?,
            "--per-append" => o.per_append = number(value()?)?,
            "--loads" => o.loads = number(value()?)?,
            "--writers" => o.writers = number(value()?)?,
            "--fill" => {
                o.raw = match value()?.as_str() {
                    "append" => false,
                    "raw" => true,
                    other => return Err(format!("--fill append|raw, not {other}")),
                }
            }
            // cargo bench passes --bench; ignore what is not ours.
            _ => {}
        }
    }
    if o.raw && o.backend != Backend::Nats {
        return Err("--fill raw is for --backend nats (appends to the others are fast)".to_owned());
    }
    if o.small == 0 || o.large < o.small || o.events == 0 || o.per_append == 0 {
        return Err("need 0 < small <= large, events > 0, per-append > 0".to_owned());
    }
    Ok(o)
}

fn aggregate_id(i: usize) -> String {
    format!("agg-{i:07}")
}

/// Appends `events` events to each aggregate in `from..to`, `per_append` at
/// a time, round by round over all of them, with `writers` appending at once.
async fn fill(bus: &Arc<dyn Bus>, o: &Options, from: usize, to: usize) -> Result<(), String> {
    let rounds = o.events.div_ceil(o.per_append);
    for round in 0..rounds {
        let k = o.per_append.min(o.events - round * o.per_append);
        let version = (round * o.per_append) as u64;
        let next = Arc::new(AtomicUsize::new(from));
        let mut tasks = Vec::new();
        for _ in 0..o.writers {
            let bus = Arc::clone(bus);
            let next = Arc::clone(&next);
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= to {
                        return Ok::<(), String>(());
                    }
                    let id = aggregate_id(i);
                    let events = (0..k)
                        .map(|_| event("account", &id, 0, "Credited"))
                        .collect();
                    bus.append(ExpectedVersion::Exactly(version), events)
                        .await
                        .map_err(|e| format!("append to {id}: {e}"))?;
                }
            }));
        }
        for t in tasks {
            t.await.map_err(|e| e.to_string())??;
        }
    }
    Ok(())
}

/// `--fill raw`: the messages `fill` would store (per round and aggregate
/// a marker, then its events), published in order on one connection with
/// their acknowledgements awaited per chunk; `markers` holds each
/// aggregate's last marker sequence.
async fn fill_raw(
    js: &async_nats::jetstream::Context,
    layout: &bus::SubjectLayout,
    o: &Options,
    from: usize,
    to: usize,
    markers: &mut Vec<u64>,
) -> Result<(), String> {
    use bus_core::envelope::pb::AppendMarker;
    use prost::Message;
    markers.resize(to, 0);
    let rounds = o.events.div_ceil(o.per_append);
    let subject = layout
        .event_subject("account", "Credited")
        .map_err(|e| e.to_string())?;
    for round in 0..rounds {
        let k = o.per_append.min(o.events - round * o.per_append);
        let version = (round * o.per_append) as u64;
        // async-nats holds at most 1000 unacknowledged publishes per context
        // (a publish waits for room): acks are awaited per chunk below that.
        let chunk = (900 / (k + 1)).max(1);
        let mut start = from;
        while start < to {
            let end = (start + chunk).min(to);
            let mut acks = Vec::with_capacity((end - start) * (k + 1));
            for (i, marker_seq) in markers.iter().enumerate().take(end).skip(start) {
                let id = aggregate_id(i);
                let events: Vec<_> = (0..k)
                    .map(|j| event("account", &id, version + 1 + j as u64, "Credited"))
                    .collect();
                let marker = AppendMarker {
                    aggregate_type: "account".to_owned(),
                    aggregate_id: id.clone(),
                    first_version: version + 1,
                    count: k as u32,
                    previous: *marker_seq,
                    event_ids: events.iter().map(|e| e.event_id.clone()).collect(),
                };
                let marker_subject = layout
                    .marker_subject("account", &id)
                    .map_err(|e| e.to_string())?;
                let headers = bus_nats::wire::marker_headers(&marker);
                let ack = js
                    .publish_with_headers(marker_subject, headers, marker.encode_to_vec().into())
                    .await
                    .map_err(|e| e.to_string())?;
                acks.push((Some(i), ack));
                for e in &events {
                    let ack = js
                        .publish_with_headers(
                            subject.clone(),
                            bus_nats::wire::event_headers(e, true),
                            bus_nats::wire::encode(e),
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    acks.push((None, ack));
                }
            }
            let mut expected_next = None;
            for (marker_of, ack) in acks {
                let seq = ack.await.map_err(|e| e.to_string())?.sequence;
                if let Some(next) = expected_next {
                    if marker_of.is_none() && seq != next {
                        return Err(format!("an event was stored at {seq}, not {next}"));
                    }
                }
                if let Some(i) = marker_of {
                    markers[i] = seq;
                }
                expected_next = Some(seq + 1);
            }
            start = end;
        }
    }
    Ok(())
}

struct Figures {
    mean: Duration,
    p50: Duration,
    p99: Duration,
}

/// Loads `n` aggregates picked across `0..aggregates`, one at a time.
async fn measure(
    bus: &Arc<dyn Bus>,
    o: &Options,
    aggregates: usize,
    seed: u64,
) -> Result<Figures, String> {
    let mut x = seed;
    let mut times = Vec::with_capacity(o.loads);
    for _ in 0..o.loads {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let i = usize::try_from(x >> 33).unwrap_or(0) % aggregates;
        let id = aggregate_id(i);
        let start = Instant::now();
        let history = bus
            .load("account", &id, 0)
            .await
            .map_err(|e| format!("load {id}: {e}"))?;
        times.push(start.elapsed());
        if history.events.len() != o.events || history.version != o.events as u64 {
            return Err(format!(
                "load {id}: {} events at version {}, expected {}",
                history.events.len(),
                history.version,
                o.events
            ));
        }
    }
    times.sort();
    let total: Duration = times.iter().sum();
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    Ok(Figures {
        mean: total / times.len() as u32,
        p50: at(0.5),
        p99: at(0.99),
    })
}

async fn run(o: Options) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut server = None;
    let mut config = BusConfig {
        backend: o.backend,
        ..BusConfig::default()
    };
    match o.backend {
        Backend::Nats => {
            let url = match &o.url {
                Some(u) => u.clone(),
                None => {
                    let s = nats_test_server::NatsServer::start().await;
                    let u = s.url();
                    server = Some(s);
                    u
                }
            };
            config.nats.url = url;
        }
        Backend::Embedded => {
            config.embedded.port = 0;
            config.embedded.data_dir = dir.path().join("data");
        }
        Backend::Memory => {}
    }
    config.stream.max_msg_size = 64 * 1024;
    let bus = bus::open(&config).await.map_err(|e| e.to_string())?;
    println!(
        "aggregate load: backend {}{}, {} events per aggregate appended {} at a time, \
         {} loads of one aggregate at a time, {}",
        bus.backend(),
        if server.is_some() {
            " (nats-server started here)"
        } else {
            ""
        },
        o.events,
        o.per_append,
        o.loads,
        if o.raw {
            "filled by raw publishes of the same messages (--fill raw)".to_owned()
        } else {
            format!("{} writers filling", o.writers)
        }
    );
    println!(
        "  {:>11} {:>11} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "events", "aggregates", "messages", "fill", "mean", "p50", "p99"
    );
    let raw = if o.raw {
        let client = async_nats::connect(config.nats.url.clone())
            .await
            .map_err(|e| e.to_string())?;
        Some(async_nats::jetstream::new(client))
    } else {
        None
    };
    let mut markers = Vec::new();
    let mut rows = Vec::new();
    let mut filled = 0;
    for (size, seed) in [(o.small, 1u64), (o.large, 2u64)] {
        let start = Instant::now();
        match &raw {
            Some(js) => fill_raw(js, bus.layout(), &o, filled, size, &mut markers).await?,
            None => fill(&bus, &o, filled, size).await?,
        }
        let fill_time = start.elapsed();
        filled = size;
        let messages = bus.stream_info().await.map_err(|e| e.to_string())?.messages;
        // Warm up connections and caches the same way for both sizes.
        measure(
            &bus,
            &Options {
                loads: 200,
                ..o.clone()
            },
            size,
            seed + 100,
        )
        .await?;
        let f = measure(&bus, &o, size, seed).await?;
        println!(
            "  {:>11} {:>11} {:>10} {:>9.1?} {:>10.2?} {:>10.2?} {:>10.2?}",
            size * o.events,
            size,
            messages,
            fill_time,
            f.mean,
            f.p50,
            f.p99
        );
        rows.push(f);
    }
    let ratio = |a: Duration, b: Duration| b.as_secs_f64() / a.as_secs_f64().max(1e-12);
    println!(
        "  load time at {} events / at {} events: mean {:.2}x, p50 {:.2}x, p99 {:.2}x",
        o.large * o.events,
        o.small * o.events,
        ratio(rows[0].mean, rows[1].mean),
        ratio(rows[0].p50, rows[1].p50),
        ratio(rows[0].p99, rows[1].p99)
    );
    bus.close().await.map_err(|e| e.to_string())?;
    drop(server);
    Ok(())
}

fn main() -> std::process::ExitCode {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match rt.block_on(run(o)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
