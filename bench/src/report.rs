//! Plain-text tables and JSON for `run` and `compare`.

use serde::Serialize;

use crate::cpu;
use crate::workloads::{Latency, Outcome, Percentiles, Throughput, Workload};

/// One server in a comparison.
#[derive(Clone, Debug, Serialize)]
pub struct ServerSummary {
    pub name: String,
    pub command: String,
    /// Median time from spawn to accepting TCP connections.
    pub startup_ms: f64,
    pub startup_samples_ms: Vec<f64>,
    /// `VmRSS` one second after start, before any client connected.
    pub idle_rss_mib: f64,
    /// `VmHWM` after all workloads.
    pub peak_rss_mib: f64,
}

/// A publish workload on both servers (medians over the repeats).
#[derive(Clone, Debug, Serialize)]
pub struct ThroughputRow {
    pub workload: Workload,
    pub size: usize,
    pub msgs: u64,
    pub reference_msgs_per_sec: f64,
    pub ours_msgs_per_sec: f64,
    /// ours / reference: above 1 means ours is faster.
    pub ratio: f64,
    pub reference_runs: Vec<f64>,
    pub ours_runs: Vec<f64>,
    /// Messages lost over all repeats.
    pub reference_lost: u64,
    pub ours_lost: u64,
}

/// A latency workload (reqrep, js-pub-sync, kv-put-sync, kv-get) on both servers
/// (per-percentile medians).
#[derive(Clone, Debug, Serialize)]
pub struct LatencyRow {
    pub workload: Workload,
    pub size: usize,
    pub requests: u64,
    pub reference: Percentiles,
    pub ours: Percentiles,
    /// reference / ours: above 1 means ours is faster.
    pub p50_ratio: f64,
    pub p99_ratio: f64,
    pub p999_ratio: f64,
    /// Operations that failed or were not done over all repeats.
    pub reference_failed: u64,
    pub ours_failed: u64,
}

/// The server's CPU time in one measured run (see [`crate::workloads::Marks`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CpuRun {
    /// User + system clock ticks between the marks; `None` if unread.
    pub ticks: Option<u64>,
    /// The bench process's own (the client's) ticks between the same marks.
    pub client_ticks: Option<u64>,
    /// Wall time between the marks, in milliseconds.
    pub wall_ms: Option<f64>,
    /// Messages delivered in the run ([`Outcome::delivered`]).
    pub delivered: u64,
}

impl CpuRun {
    /// Cores kept busy during the measured phase by the client and by the
    /// server (CPU time over wall time): a side near 1.0 per thread it can
    /// use is the limit; both well under it means the run waited (round
    /// trips, the disk).
    pub fn busy_cores(&self, clk_tck: u64) -> Option<(f64, f64)> {
        let wall = self.wall_ms.filter(|&ms| ms > 0.0)?;
        Some((
            cpu::ticks_ms(self.client_ticks?, clk_tck) / wall,
            cpu::ticks_ms(self.ticks?, clk_tck) / wall,
        ))
    }
}

/// One server's CPU time for one workload over the repeats.
#[derive(Clone, Debug, Serialize)]
pub struct CpuSide {
    pub runs: Vec<CpuRun>,
    /// CPU ms per million messages of each run that has a figure (ticks
    /// read, something delivered).
    pub runs_ms_per_million: Vec<f64>,
    /// Their median; NaN when no run has a figure.
    pub ms_per_million: f64,
    /// Median CPU ms of a run.
    pub cpu_ms: f64,
    /// Median messages delivered per run.
    pub delivered: f64,
    /// Some run counted under [`cpu::COARSE_TICKS`] ticks: the figure is
    /// only as exact as the 1-tick resolution of `/proc`.
    pub coarse: bool,
    /// `VmRSS` right after the workload's last run.
    pub rss_after_mib: Option<f64>,
    /// The client's (bench process's) CPU ms per million messages, median.
    pub client_ms_per_million: f64,
    /// Median cores kept busy by the client and by the server in a run.
    pub client_cores: f64,
    pub server_cores: f64,
}

impl CpuSide {
    pub fn new(runs: &[CpuRun], clk_tck: u64, rss_after_mib: Option<f64>) -> CpuSide {
        let per_million: Vec<f64> = runs
            .iter()
            .filter_map(|run| cpu::ms_per_million(run.ticks?, clk_tck, run.delivered))
            .collect();
        let measured: Vec<&CpuRun> = runs
            .iter()
            .filter(|run| run.ticks.is_some() && run.delivered > 0)
            .collect();
        let cpu_ms: Vec<f64> = measured
            .iter()
            .filter_map(|run| Some(cpu::ticks_ms(run.ticks?, clk_tck)))
            .collect();
        let delivered: Vec<f64> = runs.iter().map(|run| run.delivered as f64).collect();
        let client_per_million: Vec<f64> = runs
            .iter()
            .filter_map(|run| cpu::ms_per_million(run.client_ticks?, clk_tck, run.delivered))
            .collect();
        let busy: Vec<(f64, f64)> = measured
            .iter()
            .filter_map(|run| run.busy_cores(clk_tck))
            .collect();
        let median_or_nan = |values: &[f64]| {
            if values.is_empty() {
                f64::NAN
            } else {
                median(values)
            }
        };
        CpuSide {
            client_ms_per_million: median_or_nan(&client_per_million),
            client_cores: median_or_nan(&busy.iter().map(|b| b.0).collect::<Vec<_>>()),
            server_cores: median_or_nan(&busy.iter().map(|b| b.1).collect::<Vec<_>>()),
            runs: runs.to_vec(),
            ms_per_million: if per_million.is_empty() {
                f64::NAN
            } else {
                median(&per_million)
            },
            runs_ms_per_million: per_million,
            cpu_ms: if cpu_ms.is_empty() {
                f64::NAN
            } else {
                median(&cpu_ms)
            },
            delivered: median(&delivered),
            coarse: measured
                .iter()
                .any(|run| run.ticks.is_some_and(|ticks| ticks < cpu::COARSE_TICKS)),
            rss_after_mib,
        }
    }
}

/// Server CPU time per million messages delivered, one workload on both
/// servers.
#[derive(Clone, Debug, Serialize)]
pub struct CpuRow {
    pub workload: Workload,
    pub size: usize,
    pub reference: CpuSide,
    pub ours: CpuSide,
    /// ours / reference of the medians: below 1 means ours uses less CPU.
    pub ratio: f64,
}

impl CpuRow {
    pub fn new(workload: Workload, size: usize, reference: CpuSide, ours: CpuSide) -> CpuRow {
        CpuRow {
            workload,
            size,
            ratio: ratio(ours.ms_per_million, reference.ms_per_million),
            reference,
            ours,
        }
    }

    /// Either side's figure is coarse.
    pub fn coarse(&self) -> bool {
        self.reference.coarse || self.ours.coarse
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub repeats: usize,
    /// The client the core workloads ran with (`async-nats` or `raw`).
    pub client: String,
    pub reference: ServerSummary,
    pub ours: ServerSummary,
    pub throughput: Vec<ThroughputRow>,
    pub latency: Vec<LatencyRow>,
    /// Clock ticks per second of the CPU figures (`getconf CLK_TCK`).
    pub clk_tck: u64,
    pub cpu: Vec<CpuRow>,
    pub elapsed_secs: f64,
}

impl ThroughputRow {
    pub fn new(reference: &[Throughput], ours: &[Throughput]) -> Option<ThroughputRow> {
        let first = reference.first()?;
        let rates = |runs: &[Throughput]| runs.iter().map(|run| run.msgs_per_sec).collect();
        let reference_runs: Vec<f64> = rates(reference);
        let ours_runs: Vec<f64> = rates(ours);
        let reference_msgs_per_sec = median(&reference_runs);
        let ours_msgs_per_sec = median(&ours_runs);
        Some(ThroughputRow {
            workload: first.workload,
            size: first.size,
            msgs: first.sent,
            reference_msgs_per_sec,
            ours_msgs_per_sec,
            ratio: ratio(ours_msgs_per_sec, reference_msgs_per_sec),
            reference_runs,
            ours_runs,
            reference_lost: reference.iter().map(|run| run.lost).sum(),
            ours_lost: ours.iter().map(|run| run.lost).sum(),
        })
    }
}

impl LatencyRow {
    pub fn new(reference: &[Latency], ours: &[Latency]) -> Option<LatencyRow> {
        let first = reference.first()?;
        let summary = |runs: &[Latency]| {
            let all: Vec<Percentiles> = runs.iter().map(|run| run.percentiles.clone()).collect();
            median_percentiles(&all)
        };
        let reference_summary = summary(reference);
        let ours_summary = summary(ours);
        Some(LatencyRow {
            workload: first.workload,
            size: first.size,
            requests: first.requests,
            p50_ratio: ratio(reference_summary.p50_us, ours_summary.p50_us),
            p99_ratio: ratio(reference_summary.p99_us, ours_summary.p99_us),
            p999_ratio: ratio(reference_summary.p999_us, ours_summary.p999_us),
            reference: reference_summary,
            ours: ours_summary,
            reference_failed: reference.iter().map(|run| run.failed).sum(),
            ours_failed: ours.iter().map(|run| run.failed).sum(),
        })
    }
}

/// The median (mean of the middle two for an even count); 0 when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Each percentile's median over several runs.
pub fn median_percentiles(runs: &[Percentiles]) -> Percentiles {
    let of = |field: fn(&Percentiles) -> f64| median(&runs.iter().map(field).collect::<Vec<_>>());
    Percentiles {
        p50_us: of(|p| p.p50_us),
        p99_us: of(|p| p.p99_us),
        p999_us: of(|p| p.p999_us),
        mean_us: of(|p| p.mean_us),
        max_us: of(|p| p.max_us),
    }
}

/// `numerator / denominator`, NaN when the denominator is not positive.
pub fn ratio(numerator: f64, denominator: f64) -> f64 {
    if denominator > 0.0 {
        numerator / denominator
    } else {
        f64::NAN
    }
}

/// Renders a table: the first column left-aligned, the others right-aligned.
pub fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.zip(&widths).enumerate() {
            if i == 0 {
                out.push_str(&format!("{cell:<width$}"));
            } else {
                out.push_str(&format!("  {cell:>width$}"));
            }
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        out
    };
    let mut out = line(&mut headers.iter().copied());
    let total = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
    out.push_str(&"-".repeat(total));
    out.push('\n');
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// A count with thousands separators: `1234567.8` -> `1,234,568`.
pub fn fmt_count(value: f64) -> String {
    if !value.is_finite() {
        return "-".to_string();
    }
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0.0 && digits != "0" {
        out.insert(0, '-');
    }
    out
}

/// A payload size: `16 B`, `1 KiB`, `1.5 KiB`, `64 KiB`, `1 MiB`.
pub fn fmt_size(bytes: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * 1024;
    let scaled = |unit: usize, name: &str| {
        if bytes % unit == 0 {
            format!("{} {name}", bytes / unit)
        } else {
            format!("{:.1} {name}", bytes as f64 / unit as f64)
        }
    };
    match bytes {
        b if b >= MIB => scaled(MIB, "MiB"),
        b if b >= KIB => scaled(KIB, "KiB"),
        b => format!("{b} B"),
    }
}

pub fn fmt_ratio(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.2}")
    } else {
        "-".to_string()
    }
}

fn fmt_us(value: f64) -> String {
    format!("{value:.1}")
}

/// Relative spread of repeated runs: (max - min) / median, in percent.
pub fn fmt_spread(runs: &[f64]) -> String {
    let min = runs.iter().copied().fold(f64::INFINITY, f64::min);
    let max = runs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let spread = ratio(max - min, median(runs));
    if spread.is_finite() {
        format!("{:.0}%", spread * 100.0)
    } else {
        "-".to_string()
    }
}

/// The results of `run`.
pub fn run_text(outcomes: &[Outcome]) -> String {
    let mut throughput = Vec::new();
    let mut latency = Vec::new();
    for outcome in outcomes {
        match outcome {
            Outcome::Throughput(t) => throughput.push(vec![
                t.workload.name().to_string(),
                fmt_size(t.size),
                fmt_count(t.sent as f64),
                fmt_count(t.received as f64),
                fmt_count(t.lost as f64),
                format!("{:.0}", t.elapsed_secs * 1000.0),
                fmt_count(t.msgs_per_sec),
                format!("{:.1}", t.mib_per_sec),
            ]),
            Outcome::Latency(l) => latency.push(vec![
                l.workload.name().to_string(),
                fmt_size(l.size),
                fmt_count(l.requests as f64),
                fmt_count(l.failed as f64),
                fmt_us(l.percentiles.p50_us),
                fmt_us(l.percentiles.p99_us),
                fmt_us(l.percentiles.p999_us),
                fmt_us(l.percentiles.mean_us),
                fmt_us(l.percentiles.max_us),
            ]),
        }
    }
    let mut out = String::new();
    if !throughput.is_empty() {
        out.push_str(&render_table(
            &[
                "workload", "size", "sent", "received", "lost", "ms", "msgs/s", "MiB/s",
            ],
            &throughput,
        ));
    }
    if !latency.is_empty() {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str("latency (µs)\n");
        out.push_str(&render_table(
            &[
                "workload", "size", "requests", "failed", "p50", "p99", "p999", "mean", "max",
            ],
            &latency,
        ));
    }
    out
}

/// The results of `compare`.
pub fn compare_text(comparison: &Comparison) -> String {
    let reference = &comparison.reference;
    let ours = &comparison.ours;
    let mut out = format!(
        "reference: {}\nours:      {}\nclient:    {} (core workloads)\n\n",
        reference.command, ours.command, comparison.client
    );
    out.push_str(&render_table(
        &[
            "server",
            "startup ms (median)",
            "idle RSS MiB",
            "peak RSS MiB",
        ],
        &[reference, ours]
            .iter()
            .map(|server| {
                vec![
                    server.name.clone(),
                    format!("{:.1}", server.startup_ms),
                    format!("{:.1}", server.idle_rss_mib),
                    format!("{:.1}", server.peak_rss_mib),
                ]
            })
            .collect::<Vec<_>>(),
    ));
    if !comparison.throughput.is_empty() {
        out.push_str(&format!(
            "\nthroughput (msgs/s, median of {} runs; ratio > 1 = ours faster)\n",
            comparison.repeats
        ));
        let rows: Vec<Vec<String>> = comparison
            .throughput
            .iter()
            .map(|row| {
                vec![
                    row.workload.name().to_string(),
                    fmt_size(row.size),
                    fmt_count(row.msgs as f64),
                    fmt_count(row.reference_msgs_per_sec),
                    fmt_count(row.ours_msgs_per_sec),
                    fmt_ratio(row.ratio),
                    format!(
                        "{}/{}",
                        fmt_spread(&row.reference_runs),
                        fmt_spread(&row.ours_runs)
                    ),
                    format!("{}/{}", row.reference_lost, row.ours_lost),
                ]
            })
            .collect();
        out.push_str(&render_table(
            &[
                "workload",
                "size",
                "msgs",
                "reference",
                "ours",
                "ours/ref",
                "spread ref/ours",
                "lost ref/ours",
            ],
            &rows,
        ));
    }
    if !comparison.latency.is_empty() {
        out.push_str(&format!(
            "\nlatency (µs, median of {} runs; ratio = reference/ours, > 1 = ours faster)\n",
            comparison.repeats
        ));
        let rows: Vec<Vec<String>> = comparison
            .latency
            .iter()
            .map(|row| {
                vec![
                    row.workload.name().to_string(),
                    fmt_size(row.size),
                    fmt_us(row.reference.p50_us),
                    fmt_us(row.ours.p50_us),
                    fmt_ratio(row.p50_ratio),
                    fmt_us(row.reference.p99_us),
                    fmt_us(row.ours.p99_us),
                    fmt_ratio(row.p99_ratio),
                    fmt_us(row.reference.p999_us),
                    fmt_us(row.ours.p999_us),
                    fmt_ratio(row.p999_ratio),
                    format!("{}/{}", row.reference_failed, row.ours_failed),
                ]
            })
            .collect();
        out.push_str(&render_table(
            &[
                "workload",
                "size",
                "ref p50",
                "ours p50",
                "ratio",
                "ref p99",
                "ours p99",
                "ratio",
                "ref p999",
                "ours p999",
                "ratio",
                "failed ref/ours",
            ],
            &rows,
        ));
    }
    if !comparison.cpu.is_empty() {
        out.push('\n');
        out.push_str(&cpu_text(
            &comparison.cpu,
            comparison.repeats,
            comparison.clk_tck,
        ));
    }
    out.push_str(&format!(
        "\ncompare took {:.0} s\n",
        comparison.elapsed_secs
    ));
    out
}

/// A CPU figure, `~` in front when it is coarse.
fn fmt_coarse(text: String, coarse: bool) -> String {
    if coarse && text != "-" {
        format!("~{text}")
    } else {
        text
    }
}

/// Busy cores of the client and the server, `-` when unknown.
fn fmt_cores(client: f64, server: f64) -> String {
    if client.is_nan() || server.is_nan() {
        "-".to_string()
    } else {
        format!("{client:.2}/{server:.2}")
    }
}

fn fmt_mib(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), |mib| format!("{mib:.1}"))
}

/// The server CPU table of `compare`, with what a message is per workload.
pub fn cpu_text(rows: &[CpuRow], repeats: usize, clk_tck: u64) -> String {
    let mut out = format!(
        "server CPU per million messages delivered (user + system ms from /proc, median of \
         {repeats} runs; lower is better: ours/ref < 1 = ours uses less CPU)\n"
    );
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let (reference, ours) = (&row.reference, &row.ours);
            let delivered = if reference.delivered == ours.delivered {
                fmt_count(reference.delivered)
            } else {
                format!(
                    "{}/{}",
                    fmt_count(reference.delivered),
                    fmt_count(ours.delivered)
                )
            };
            vec![
                row.workload.name().to_string(),
                fmt_size(row.size),
                delivered,
                fmt_coarse(fmt_count(reference.ms_per_million), reference.coarse),
                fmt_coarse(fmt_count(ours.ms_per_million), ours.coarse),
                fmt_coarse(fmt_ratio(row.ratio), row.coarse()),
                format!("{}/{}", fmt_count(reference.cpu_ms), fmt_count(ours.cpu_ms)),
                format!(
                    "{}/{}",
                    fmt_spread(&reference.runs_ms_per_million),
                    fmt_spread(&ours.runs_ms_per_million)
                ),
                format!(
                    "{}/{}",
                    fmt_mib(reference.rss_after_mib),
                    fmt_mib(ours.rss_after_mib)
                ),
                format!(
                    "{}/{}",
                    fmt_count(reference.client_ms_per_million),
                    fmt_count(ours.client_ms_per_million)
                ),
                format!(
                    "{} | {}",
                    fmt_cores(reference.client_cores, reference.server_cores),
                    fmt_cores(ours.client_cores, ours.server_cores)
                ),
            ]
        })
        .collect();
    out.push_str(&render_table(
        &[
            "workload",
            "size",
            "delivered/run",
            "ref ms/M",
            "ours ms/M",
            "ours/ref",
            "CPU ms/run ref/ours",
            "spread ref/ours",
            "RSS after MiB ref/ours",
            "client ms/M ref/ours",
            "busy cores client/server: ref | ours",
        ],
        &table,
    ));
    out.push_str("delivered/run counts, per run:\n");
    let mut seen = Vec::new();
    for row in rows {
        if !seen.contains(&row.workload) {
            seen.push(row.workload);
            out.push_str(&format!(
                "  {}: {}\n",
                row.workload.name(),
                row.workload.delivered()
            ));
        }
    }
    out.push_str(
        "client ms/M: the bench process's own CPU (its client connections) per million \
         messages; busy cores: CPU time over the measured phase's wall time, client/server \
         (a side near its thread count is the limit; both low means the run waited)\n",
    );
    if rows.iter().any(CpuRow::coarse) {
        let tick_ms = cpu::ticks_ms(1, clk_tck);
        out.push_str(&format!(
            "~ = some run used under {} clock ticks ({:.0} ms) of server CPU: /proc counts in \
             {tick_ms:.0} ms ticks, so the figure is coarse; make runs longer with --msgs \
             (throughput workloads) or --requests (reqrep, js-pub-sync, kv-put-sync, kv-get)\n",
            cpu::COARSE_TICKS,
            cpu::ticks_ms(cpu::COARSE_TICKS, clk_tck),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let table = render_table(
            &["workload", "msgs/s"],
            &[
                vec!["pub".into(), "1,000".into()],
                vec!["fanout".into(), "12".into()],
            ],
        );
        assert_eq!(
            table,
            "workload  msgs/s\n\
             ----------------\n\
             pub        1,000\n\
             fanout        12\n"
        );
    }

    #[test]
    fn counts_get_separators() {
        assert_eq!(fmt_count(0.0), "0");
        assert_eq!(fmt_count(999.4), "999");
        assert_eq!(fmt_count(1000.0), "1,000");
        assert_eq!(fmt_count(1_234_567.8), "1,234,568");
        assert_eq!(fmt_count(-12_345.0), "-12,345");
        assert_eq!(fmt_count(f64::NAN), "-");
    }

    #[test]
    fn sizes_are_human() {
        assert_eq!(fmt_size(16), "16 B");
        assert_eq!(fmt_size(1024), "1 KiB");
        assert_eq!(fmt_size(1536), "1.5 KiB");
        assert_eq!(fmt_size(65_536), "64 KiB");
        assert_eq!(fmt_size(1 << 20), "1 MiB");
    }

    #[test]
    fn medians_and_ratios() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(ratio(3.0, 2.0), 1.5);
        assert!(ratio(1.0, 0.0).is_nan());
        assert_eq!(fmt_ratio(f64::NAN), "-");
        assert_eq!(fmt_ratio(1.004), "1.00");
        assert_eq!(fmt_spread(&[90.0, 100.0, 110.0]), "20%");
    }

    fn runs(ticks: &[Option<u64>], delivered: u64) -> Vec<CpuRun> {
        ticks
            .iter()
            .map(|&ticks| CpuRun {
                ticks,
                client_ticks: None,
                wall_ms: None,
                delivered,
            })
            .collect()
    }

    #[test]
    fn cpu_medians_per_million() {
        // 200,000 messages a run; 30, 50 and 40 ticks at 100 ticks/s.
        let side = CpuSide::new(
            &runs(&[Some(30), Some(50), Some(40)], 200_000),
            100,
            Some(12.5),
        );
        assert_eq!(side.runs_ms_per_million, [1_500.0, 2_500.0, 2_000.0]);
        assert_eq!(side.ms_per_million, 2_000.0);
        assert_eq!(side.cpu_ms, 400.0);
        assert_eq!(side.delivered, 200_000.0);
        assert!(!side.coarse);
        assert_eq!(side.rss_after_mib, Some(12.5));
    }

    #[test]
    fn cpu_runs_without_a_figure_are_left_out() {
        let mut all = runs(&[Some(100), None, Some(300)], 1_000_000);
        all.push(CpuRun {
            ticks: Some(5),
            client_ticks: None,
            wall_ms: None,
            delivered: 0,
        });
        let side = CpuSide::new(&all, 100, None);
        assert_eq!(side.runs_ms_per_million, [1_000.0, 3_000.0]);
        assert_eq!(side.ms_per_million, 2_000.0);
        // The failed run (nothing delivered) does not make the figure coarse.
        assert!(!side.coarse);
        let none = CpuSide::new(&runs(&[None, None], 10), 100, None);
        assert!(none.ms_per_million.is_nan());
        assert!(none.cpu_ms.is_nan());
    }

    #[test]
    fn busy_cores_are_cpu_time_over_wall_time_for_each_side() {
        // A 500 ms phase: the client ran 45 ticks (450 ms), the server 20.
        let run = CpuRun {
            ticks: Some(20),
            client_ticks: Some(45),
            wall_ms: Some(500.0),
            delivered: 100_000,
        };
        assert_eq!(run.busy_cores(100), Some((0.9, 0.4)));
        let side = CpuSide::new(&[run], 100, None);
        assert_eq!(side.client_ms_per_million, 4_500.0);
        assert_eq!((side.client_cores, side.server_cores), (0.9, 0.4));
        assert_eq!(fmt_cores(side.client_cores, side.server_cores), "0.90/0.40");
        // No wall time (or an empty phase): unknown, not infinite.
        let unknown = CpuRun {
            wall_ms: Some(0.0),
            ..run
        };
        assert_eq!(unknown.busy_cores(100), None);
        assert_eq!(fmt_cores(f64::NAN, 0.4), "-");
    }

    #[test]
    fn few_ticks_are_coarse() {
        let side = CpuSide::new(&runs(&[Some(25), Some(19)], 5_000), 100, None);
        assert!(side.coarse);
        let side = CpuSide::new(&runs(&[Some(20)], 5_000), 100, None);
        assert!(!side.coarse);
    }

    #[test]
    fn cpu_ratio_is_ours_over_reference() {
        let reference = CpuSide::new(&runs(&[Some(100)], 1_000_000), 100, Some(14.0));
        let ours = CpuSide::new(&runs(&[Some(50)], 1_000_000), 100, Some(6.0));
        let row = CpuRow::new(Workload::Pub, 16, reference, ours);
        assert_eq!(row.ratio, 0.5);
        assert!(!row.coarse());
    }

    #[test]
    fn cpu_table_marks_coarse_figures() {
        // 200,000 messages to 4 subscribers.
        let reference = CpuSide::new(&runs(&[Some(160), Some(240)], 800_000), 100, Some(14.0));
        let ours = CpuSide::new(&runs(&[Some(80), Some(120)], 800_000), 100, None);
        let fanout = CpuRow::new(Workload::Fanout, 16, reference, ours);
        let reference = CpuSide::new(&runs(&[Some(30)], 5_000), 100, Some(15.0));
        let ours = CpuSide::new(&runs(&[Some(12)], 4_000), 100, Some(7.3));
        let reqrep = CpuRow::new(Workload::Reqrep, 1024, reference, ours);
        let text = cpu_text(&[fanout.clone(), reqrep], 2, 100);
        let expected = "\
server CPU per million messages delivered (user + system ms from /proc, median of 2 runs; lower is better: ours/ref < 1 = ours uses less CPU)
workload   size  delivered/run  ref ms/M  ours ms/M  ours/ref  CPU ms/run ref/ours  spread ref/ours  RSS after MiB ref/ours  client ms/M ref/ours  busy cores client/server: ref | ours
---------------------------------------------------------------------------------------------------------------------------------------------------------------------------------------
fanout     16 B        800,000     2,500      1,250      0.50          2,000/1,000          40%/40%                  14.0/-                   -/-                                 - | -
reqrep    1 KiB    5,000/4,000    60,000    ~30,000     ~0.50              300/120            0%/0%                15.0/7.3                   -/-                                 - | -
delivered/run counts, per run:
  fanout: messages received, summed over the 4 subscribers (4 per message published)
  reqrep: requests answered (request + reply = 1; warm-up not counted)
client ms/M: the bench process's own CPU (its client connections) per million messages; busy cores: CPU time over the measured phase's wall time, client/server (a side near its thread count is the limit; both low means the run waited)
~ = some run used under 20 clock ticks (200 ms) of server CPU: /proc counts in 10 ms ticks, so the figure is coarse; make runs longer with --msgs (throughput workloads) or --requests (reqrep, js-pub-sync, kv-put-sync, kv-get)
";
        assert_eq!(text, expected);
        // Without a coarse figure there is no footnote.
        assert!(!cpu_text(&[fanout], 2, 100).contains("~"));
    }

    #[test]
    fn percentile_medians_are_per_field() {
        let run = |p50_us, p99_us| Percentiles {
            p50_us,
            p99_us,
            ..Percentiles::default()
        };
        let summary = median_percentiles(&[run(10.0, 90.0), run(30.0, 50.0), run(20.0, 70.0)]);
        assert_eq!(summary.p50_us, 20.0);
        assert_eq!(summary.p99_us, 70.0);
    }
}
