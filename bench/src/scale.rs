//! `nats-bench scale`: what a server costs after a restart as a function of
//! what it stores (issue #15 item 6). Each server, alone on the machine:
//!
//! 1. starts on a fresh store directory; one file stream (`SCALE`, subject
//!    `scale.<n>`, allow_direct) is filled with `msgs` messages of `size`
//!    bytes, published with a window of pending acknowledgements;
//! 2. is stopped with SIGTERM (a clean shutdown) and started again on the
//!    same store directory;
//! 3. is asked for STREAM.INFO until it answers with every message: the
//!    time from the second spawn to that answer is the open time;
//! 4. reports `VmRSS` right after that answer, and again after a direct get
//!    of the first and of the last message (the reads a cold store pays
//!    for), plus the store directory's size on disk.

use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, Context, stream};
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;

use crate::Result;
use crate::report::{fmt_count, fmt_ratio, ratio, render_table};
use crate::servers::{Server, ServerCommand};

/// Name of the stream the run fills.
const STREAM: &str = "SCALE";
/// Publish acknowledgements awaited at once while filling.
const FILL_WINDOW: usize = 4096;
/// How long one publish may wait for its acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take, after SIGTERM, to shut down cleanly.
const STOP_GRACE: Duration = Duration::from_secs(120);
/// How long a restarted server may take to answer STREAM.INFO.
const OPEN_TIMEOUT: Duration = Duration::from_secs(600);
/// How long one request (stream create, info, direct get) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What one `scale` run stores.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Fill {
    /// Messages stored.
    pub msgs: u64,
    /// Payload size in bytes.
    pub size: usize,
    /// Distinct subjects, published round robin.
    pub subjects: u64,
}

/// One server's figures.
#[derive(Clone, Debug, Serialize)]
pub struct ScaleSide {
    pub name: String,
    pub command: String,
    /// Seconds the fill took (publish to last acknowledgement).
    pub fill_secs: f64,
    /// Store directory size after the clean stop, in MiB.
    pub disk_mib: f64,
    /// Seconds from the restart's spawn until STREAM.INFO answered.
    pub open_secs: f64,
    /// Seconds from the restart's spawn until the port accepted TCP.
    pub port_secs: f64,
    /// `VmRSS` right after that first STREAM.INFO answer, in MiB.
    pub rss_after_open_mib: f64,
    /// `VmRSS` after a direct get of the first and the last message.
    pub rss_after_gets_mib: f64,
    /// Seconds the two direct gets took.
    pub gets_secs: f64,
}

/// The result of `nats-bench scale`.
#[derive(Clone, Debug, Serialize)]
pub struct ScaleReport {
    pub fill: Fill,
    pub reference: ScaleSide,
    pub ours: ScaleSide,
}

fn context(client: async_nats::Client) -> Context {
    jetstream::ContextBuilder::new()
        .timeout(REQUEST_TIMEOUT)
        .ack_timeout(ACK_TIMEOUT)
        .build(client)
}

/// Fills, restarts and measures one server.
pub async fn measure(
    name: &str,
    command: &ServerCommand,
    scratch_root: &Path,
    fill: Fill,
) -> Result<ScaleSide> {
    let (server, _) = Server::start(name, command, scratch_root).await?;
    let fill_secs = fill_stream(&server.url(), fill)
        .await
        .map_err(|err| format!("[{name}] filling: {err}"))?;
    eprintln!(
        "[{name}] stored {} messages in {fill_secs:.1} s",
        fmt_count(fill.msgs as f64)
    );
    let scratch = server.stop(STOP_GRACE).await?;
    let disk_mib = dir_bytes(&scratch.join("store")) as f64 / (1024.0 * 1024.0);
    let (server, port) = Server::restart_in(name, command, scratch).await?;
    let spawned = server.spawned();
    let url = server.url();
    let open = tokio::time::timeout(OPEN_TIMEOUT, wait_for_info(&url, fill.msgs))
        .await
        .map_err(|_| format!("[{name}] no STREAM.INFO within {OPEN_TIMEOUT:?} of the restart"))?;
    let (js, info_at) = open.map_err(|err| format!("[{name}] after the restart: {err}"))?;
    let open_secs = info_at.duration_since(spawned).as_secs_f64();
    let rss_after_open_mib = server.rss_mib()?;
    let stream = js.get_stream_no_info(STREAM).await?;
    let gets = Instant::now();
    for seq in [1, fill.msgs] {
        let msg = tokio::time::timeout(REQUEST_TIMEOUT, stream.direct_get(seq))
            .await
            .map_err(|_| format!("[{name}] direct get {seq}: no answer"))?
            .map_err(|err| format!("[{name}] direct get {seq}: {err}"))?;
        if msg.payload.len() != fill.size {
            return Err(format!(
                "[{name}] direct get {seq}: {} bytes, expected {}",
                msg.payload.len(),
                fill.size
            )
            .into());
        }
    }
    let gets_secs = gets.elapsed().as_secs_f64();
    let rss_after_gets_mib = server.rss_mib()?;
    eprintln!(
        "[{name}] reopened: STREAM.INFO after {open_secs:.2} s, {rss_after_open_mib:.1} MiB \
         resident ({rss_after_gets_mib:.1} MiB after two direct gets)"
    );
    Ok(ScaleSide {
        name: name.to_string(),
        command: command.to_string(),
        fill_secs,
        disk_mib,
        open_secs,
        port_secs: port.as_secs_f64(),
        rss_after_open_mib,
        rss_after_gets_mib,
        gets_secs,
    })
}

/// Creates the stream and publishes `fill.msgs` messages with up to
/// [`FILL_WINDOW`] acknowledgements pending; every one must be acknowledged.
async fn fill_stream(url: &str, fill: Fill) -> Result<f64> {
    let client = async_nats::connect(url).await?;
    let js = context(client);
    let config = stream::Config {
        name: STREAM.to_string(),
        subjects: vec!["scale.>".to_string()],
        storage: stream::StorageType::File,
        num_replicas: 1,
        allow_direct: true,
        ..Default::default()
    };
    tokio::time::timeout(REQUEST_TIMEOUT, js.create_stream(config))
        .await
        .map_err(|_| "stream create: no answer")??;
    let subjects: Vec<String> = (0..fill.subjects.max(1))
        .map(|i| format!("scale.{i}"))
        .collect();
    let payload = Bytes::from(vec![b'x'; fill.size]);
    let started = Instant::now();
    let mut pending = FuturesUnordered::new();
    let mut acked = 0u64;
    let mut progress = Instant::now();
    for i in 0..fill.msgs {
        if pending.len() >= FILL_WINDOW {
            if let Some(result) = pending.next().await {
                let _: jetstream::publish::PublishAck = result?;
                acked += 1;
            }
        }
        let subject = subjects[(i % subjects.len() as u64) as usize].clone();
        let ack = js.publish(subject, payload.clone()).await?;
        pending.push(ack.into_future());
        if progress.elapsed() >= Duration::from_secs(10) {
            eprintln!("  ... {} acknowledged", fmt_count(acked as f64));
            progress = Instant::now();
        }
    }
    while let Some(result) = pending.next().await {
        let _: jetstream::publish::PublishAck = result?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Connects (retrying while refused) and asks STREAM.INFO until it answers
/// with `msgs` messages; returns the context and when the answer came.
async fn wait_for_info(url: &str, msgs: u64) -> Result<(Context, Instant)> {
    let client = loop {
        match async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
        {
            Ok(client) => break client,
            Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    };
    let js = context(client);
    loop {
        if let Ok(Ok(mut stream)) =
            tokio::time::timeout(REQUEST_TIMEOUT, js.get_stream(STREAM)).await
        {
            let at = Instant::now();
            let state = &stream.info().await?.state;
            if state.messages == msgs {
                return Ok((js, at));
            }
            return Err(format!(
                "STREAM.INFO says {} messages, {msgs} were stored",
                state.messages
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Bytes of the regular files under `dir`, recursively.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The report as text: one row per server and one of ratios.
pub fn text(report: &ScaleReport) -> String {
    let fill = &report.fill;
    let mut out = format!(
        "reference: {}\nours:      {}\n\n{} messages of {} B on {} subject(s) in one file \
         stream, clean stop, restart\n",
        report.reference.command,
        report.ours.command,
        fmt_count(fill.msgs as f64),
        fill.size,
        fill.subjects,
    );
    let row = |s: &ScaleSide| {
        vec![
            s.name.clone(),
            format!("{:.1}", s.fill_secs),
            format!("{:.0}", s.disk_mib),
            format!("{:.2}", s.port_secs),
            format!("{:.2}", s.open_secs),
            format!("{:.1}", s.rss_after_open_mib),
            format!("{:.1}", s.rss_after_gets_mib),
        ]
    };
    let (r, o) = (&report.reference, &report.ours);
    let ratios = vec![
        "ours/reference".to_string(),
        fmt_ratio(ratio(o.fill_secs, r.fill_secs)),
        fmt_ratio(ratio(o.disk_mib, r.disk_mib)),
        fmt_ratio(ratio(o.port_secs, r.port_secs)),
        fmt_ratio(ratio(o.open_secs, r.open_secs)),
        fmt_ratio(ratio(o.rss_after_open_mib, r.rss_after_open_mib)),
        fmt_ratio(ratio(o.rss_after_gets_mib, r.rss_after_gets_mib)),
    ];
    out.push_str(&render_table(
        &[
            "server",
            "fill s",
            "disk MiB",
            "port s",
            "STREAM.INFO s",
            "RSS open MiB",
            "RSS gets MiB",
        ],
        &[row(r), row(o), ratios],
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(name: &str, open: f64, rss: f64) -> ScaleSide {
        ScaleSide {
            name: name.to_string(),
            command: format!("{name} -p {{port}}"),
            fill_secs: 10.0,
            disk_mib: 349.0,
            open_secs: open,
            port_secs: open / 2.0,
            rss_after_open_mib: rss,
            rss_after_gets_mib: rss + 1.0,
            gets_secs: 0.001,
        }
    }

    #[test]
    fn the_report_puts_open_time_and_memory_side_by_side() {
        let report = ScaleReport {
            fill: Fill {
                msgs: 2_000_000,
                size: 128,
                subjects: 1,
            },
            reference: side("reference", 0.4, 35.0),
            ours: side("ours", 2.0, 280.0),
        };
        let text = text(&report);
        assert!(text.contains("2,000,000 messages of 128 B on 1 subject(s)"));
        let rows: Vec<Vec<&str>> = text
            .lines()
            .skip_while(|line| !line.starts_with("server"))
            .skip(2)
            .map(|line| line.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows[0],
            ["reference", "10.0", "349", "0.20", "0.40", "35.0", "36.0"]
        );
        assert_eq!(
            rows[1],
            ["ours", "10.0", "349", "1.00", "2.00", "280.0", "281.0"]
        );
        assert_eq!(
            rows[2],
            [
                "ours/reference",
                "1.00",
                "1.00",
                "5.00",
                "5.00",
                "8.00",
                "7.81"
            ]
        );
    }

    #[test]
    fn dir_bytes_adds_up_nested_files() {
        let dir =
            std::env::temp_dir().join(format!("nats-bench-scale-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("x"), [0u8; 10]).unwrap();
        std::fs::write(dir.join("a/b/y"), [0u8; 5]).unwrap();
        assert_eq!(dir_bytes(&dir), 15);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(dir_bytes(&dir), 0);
    }
}
