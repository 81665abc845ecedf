//! Plain-text tables and JSON for `run` and `compare`.

use serde::Serialize;

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

/// A latency workload (reqrep, js-pub-sync, kv-get) on both servers
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

#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub repeats: usize,
    pub reference: ServerSummary,
    pub ours: ServerSummary,
    pub throughput: Vec<ThroughputRow>,
    pub latency: Vec<LatencyRow>,
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
        "reference: {}\nours:      {}\n\n",
        reference.command, ours.command
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
    out.push_str(&format!(
        "\ncompare took {:.0} s\n",
        comparison.elapsed_secs
    ));
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
