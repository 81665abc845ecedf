//! `nats-bench memory`: resident memory of each server under and after a
//! load (issue #15 item 7). Each server is started alone (the other is not
//! running, so they do not compete for the machine), idles, takes rounds of
//! 1:1 messages then queue-group messages, and is then left with no client
//! connected. Reported per server: `VmRSS` when idle, after each round and
//! a few seconds after the last client left, and the peak (`VmHWM`), with
//! our figures over nats-server's.
//!
//! Resident memory hardly depends on how busy the machine is (unlike
//! throughput), so the figures are comparable across runs on a shared
//! machine; the rounds' figures vary by a few MiB with scheduling (how far
//! a subscriber falls behind decides how much the server buffers).

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::Result;
use crate::report::{fmt_count, fmt_ratio, ratio, render_table};
use crate::servers::{Server, ServerCommand};
use crate::workloads::{self, Outcome, Workload};

/// How long a started server idles before its resident memory is read.
const IDLE_SETTLE: Duration = Duration::from_secs(1);

/// The load of one `memory` run.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Load {
    pub rounds: u64,
    /// Payload size in bytes.
    pub size: usize,
    /// Messages of each round's 1:1 (pubsub) run.
    pub msgs: u64,
    /// Messages of each round's queue-group run.
    pub queue_msgs: u64,
    /// How long the server is left without clients before the after-load
    /// figure.
    pub after_secs: u64,
}

/// One server's figures, in MiB.
#[derive(Clone, Debug, Serialize)]
pub struct MemorySide {
    pub name: String,
    pub command: String,
    pub idle_rss_mib: f64,
    /// `VmRSS` after each round (its clients gone).
    pub round_rss_mib: Vec<f64>,
    /// `VmHWM`: the most the process was ever resident with.
    pub peak_rss_mib: f64,
    /// `VmRSS` [`Load::after_secs`] after the last round.
    pub after_load_rss_mib: f64,
    /// Messages lost over all rounds (a server that drops messages under
    /// load would look lean for the wrong reason).
    pub lost: u64,
}

/// The result of `nats-bench memory`.
#[derive(Clone, Debug, Serialize)]
pub struct MemoryReport {
    pub load: Load,
    pub reference: MemorySide,
    pub ours: MemorySide,
}

/// Starts `command`, measures it under `load`, stops it.
pub async fn measure(
    name: &str,
    command: &ServerCommand,
    scratch_root: &Path,
    load: Load,
) -> Result<MemorySide> {
    let (server, _) = Server::start(name, command, scratch_root).await?;
    tokio::time::sleep(IDLE_SETTLE).await;
    let idle_rss_mib = server.rss_mib()?;
    let url = server.url();
    let mut round_rss_mib = Vec::new();
    let mut lost = 0;
    for round in 1..=load.rounds {
        for (workload, msgs) in [
            (Workload::Pubsub, load.msgs),
            (Workload::Queue, load.queue_msgs),
        ] {
            if msgs == 0 {
                continue;
            }
            let outcome = match workloads::run(&url, workload, load.size, msgs, &mut ()).await {
                Ok(outcome) => outcome,
                Err(err) => {
                    eprintln!("[{name}] round {round} {}: FAILED: {err}", workload.name());
                    Outcome::failed(workload, load.size, msgs)
                }
            };
            if let Outcome::Throughput(t) = &outcome {
                lost += t.lost;
                eprintln!(
                    "[{name}] round {round} {}: {} msgs/s, {} lost",
                    workload.name(),
                    fmt_count(t.msgs_per_sec),
                    t.lost
                );
            }
        }
        round_rss_mib.push(server.rss_mib()?);
    }
    tokio::time::sleep(Duration::from_secs(load.after_secs)).await;
    Ok(MemorySide {
        name: name.to_string(),
        command: command.to_string(),
        idle_rss_mib,
        round_rss_mib,
        peak_rss_mib: server.peak_rss_mib()?,
        after_load_rss_mib: server.rss_mib()?,
        lost,
    })
}

/// The report as text: one row per server and one of ratios.
pub fn text(report: &MemoryReport) -> String {
    let load = &report.load;
    let mut out = format!(
        "reference: {}\nours:      {}\n\n{} rounds of {} 1:1 messages then {} queue-group \
         messages of {} B; after-load = {} s after the last client left\n",
        report.reference.command,
        report.ours.command,
        load.rounds,
        fmt_count(load.msgs as f64),
        fmt_count(load.queue_msgs as f64),
        load.size,
        load.after_secs,
    );
    let side_row = |side: &MemorySide| {
        vec![
            side.name.clone(),
            format!("{:.1}", side.idle_rss_mib),
            format!("{:.1}", side.peak_rss_mib),
            format!("{:.1}", side.after_load_rss_mib),
            side.lost.to_string(),
            side.round_rss_mib
                .iter()
                .map(|mib| format!("{mib:.1}"))
                .collect::<Vec<_>>()
                .join(" "),
        ]
    };
    let (r, o) = (&report.reference, &report.ours);
    let ratios = vec![
        "ours/reference".to_string(),
        fmt_ratio(ratio(o.idle_rss_mib, r.idle_rss_mib)),
        fmt_ratio(ratio(o.peak_rss_mib, r.peak_rss_mib)),
        fmt_ratio(ratio(o.after_load_rss_mib, r.after_load_rss_mib)),
        String::new(),
        String::new(),
    ];
    out.push_str(&render_table(
        &[
            "server",
            "idle MiB",
            "peak MiB",
            "after-load MiB",
            "lost",
            "after each round MiB",
        ],
        &[side_row(r), side_row(o), ratios],
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(name: &str, idle: f64, peak: f64, after: f64) -> MemorySide {
        MemorySide {
            name: name.to_string(),
            command: format!("{name} -p {{port}}"),
            idle_rss_mib: idle,
            round_rss_mib: vec![after + 1.0, after],
            peak_rss_mib: peak,
            after_load_rss_mib: after,
            lost: 0,
        }
    }

    #[test]
    fn the_report_puts_both_servers_and_their_ratio_side_by_side() {
        let report = MemoryReport {
            load: Load {
                rounds: 2,
                size: 256,
                msgs: 3_000_000,
                queue_msgs: 1_000_000,
                after_secs: 5,
            },
            reference: side("reference", 10.0, 40.0, 20.0),
            ours: side("ours", 5.0, 60.0, 5.0),
        };
        let text = text(&report);
        assert!(text.contains("2 rounds of 3,000,000 1:1 messages then 1,000,000 queue-group"));
        let rows: Vec<Vec<&str>> = text
            .lines()
            .skip_while(|line| !line.starts_with("server"))
            .skip(2)
            .map(|line| line.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows[0],
            ["reference", "10.0", "40.0", "20.0", "0", "21.0", "20.0"]
        );
        assert_eq!(rows[1], ["ours", "5.0", "60.0", "5.0", "0", "6.0", "5.0"]);
        assert_eq!(rows[2], ["ours/reference", "0.50", "1.50", "0.25"]);
    }
}
