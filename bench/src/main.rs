//! `nats-bench`: a NATS benchmark command, like `nats bench`.
//!
//! * `nats-bench run --url nats://127.0.0.1:4222` runs the workloads against
//!   one server.
//! * `nats-bench compare --ours-cmd "<server> -p {port}"` starts nats-server
//!   (the reference) and our server on free ports, runs the same workloads
//!   against both, alternating, and prints medians and ratios, start-up time,
//!   idle and peak memory, and each server's CPU time per million messages
//!   delivered (from `/proc`, around each run's measured phase). With a
//!   JetStream workload (`--workload js-pub,...`) both servers get JetStream
//!   on fresh store directories.
//! * `nats-bench memory --ours-cmd "<server> -p {port}"` measures each
//!   server's resident memory idle, at its peak under rounds of 1:1 and
//!   queue-group load, and after the load (see [`memory`]).
//! * `nats-bench scale --ours-cmd "<server> -js -sd {store_dir} -p {port}"`
//!   fills one file stream with N messages on each server, restarts it and
//!   measures the time until STREAM.INFO answers and the resident memory
//!   after it (see [`scale`]).

mod cpu;
mod jetstream;
mod memory;
mod raw;
mod report;
mod scale;
mod servers;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};

use cpu::CpuWindow;
use report::{Comparison, CpuRow, CpuRun, CpuSide, LatencyRow, ServerSummary, ThroughputRow};
use servers::{ReferenceMode, STORE_DIR_PLACEHOLDER, Server, ServerCommand};
use workloads::{MarksMut, Outcome, Workload};

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

/// How long a started server idles before its resident memory is read.
const IDLE_SETTLE: Duration = Duration::from_secs(1);
/// Messages of the untimed warm-up run on each server in `compare`.
const WARMUP_MSGS: u64 = 20_000;
/// Messages of the untimed JetStream warm-up (js-pub) in `compare`.
const JS_WARMUP_MSGS: u64 = 2_000;
/// Largest accepted payload (nats-server's default max_payload).
const MAX_SIZE: usize = 1 << 20;

#[derive(Parser)]
#[command(
    name = "nats-bench",
    version,
    about = "Benchmark NATS servers (like `nats bench`)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the workloads against one server.
    Run(RunArgs),
    /// Start nats-server and our server, run the workloads against both, compare.
    Compare(CompareArgs),
    /// Resident memory of nats-server and ours, each alone: idle, peak under
    /// rounds of 1:1 then queue-group messages, and after the load with no
    /// client connected.
    Memory(MemoryArgs),
    /// Open time and resident memory after a restart of each server with
    /// one file stream of N messages: time until STREAM.INFO answers, RSS
    /// then, and RSS after a direct get of the first and the last message.
    Scale(ScaleArgs),
}

#[derive(Args)]
struct ScaleArgs {
    /// Command line that starts our server; must have {store_dir} and
    /// {port} (the same directory is used again for the restart).
    #[arg(long)]
    ours_cmd: String,
    /// The reference nats-server binary (looked up on PATH).
    #[arg(long, default_value = "nats-server")]
    reference: String,
    /// JetStream fsync policy of the reference while filling.
    #[arg(long, value_enum, default_value = "default")]
    reference_sync: ReferenceSync,
    /// Where the servers' store directories are created; needs room for
    /// both stores one after the other [default: the system temporary
    /// directory].
    #[arg(long)]
    store_root: Option<PathBuf>,
    /// Messages stored.
    #[arg(long, default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    msgs: u64,
    /// Payload size in bytes (`k` suffix allowed).
    #[arg(long, default_value = "128", value_parser = parse_size)]
    size: usize,
    /// Distinct subjects, published round robin.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    subjects: u64,
    /// Measure only ours (skip the reference).
    #[arg(long)]
    ours_only: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct MemoryArgs {
    /// Command line that starts our server (as for `compare`). When it has
    /// {store_dir}, the reference runs with JetStream enabled too.
    #[arg(long)]
    ours_cmd: String,
    /// The reference nats-server binary (looked up on PATH).
    #[arg(long, default_value = "nats-server")]
    reference: String,
    /// Where the servers' fresh store directories are created [default: the
    /// system temporary directory].
    #[arg(long)]
    store_root: Option<PathBuf>,
    /// Rounds of load.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: u64,
    /// Payload size in bytes (`k` suffix allowed).
    #[arg(long, default_value = "256", value_parser = parse_size)]
    size: usize,
    /// Messages of each round's 1:1 run (one publisher, one subscriber).
    #[arg(long, default_value_t = 3_000_000)]
    msgs: u64,
    /// Messages of each round's queue-group run (four members).
    #[arg(long, default_value_t = 1_000_000)]
    queue_msgs: u64,
    /// Seconds without any client before the after-load figure.
    #[arg(long, default_value_t = 5)]
    after_secs: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct WorkloadArgs {
    /// Workloads to run (comma-separated). The JetStream ones (js-*, kv-*)
    /// run only when asked for.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "pub,pubsub,fanout,queue,reqrep"
    )]
    workload: Vec<Workload>,
    /// Payload sizes in bytes (comma-separated; `k`/`KiB` suffixes allowed)
    /// [default: 16,1024,65536 for the core workloads, 128 for JetStream].
    #[arg(long, value_delimiter = ',', value_parser = parse_size)]
    sizes: Option<Vec<usize>>,
    /// Messages per throughput run [default: core 200k for <= 256 B, 100k
    /// for <= 4 KiB, 40k for <= 16 KiB, else 10k; JetStream 50k for <= 1
    /// KiB, 20k for <= 16 KiB, else 5k].
    #[arg(long)]
    msgs: Option<u64>,
    /// Operations per latency run (reqrep, js-pub-sync, kv-put-sync, kv-get) [default:
    /// 5000, js-pub-sync and kv-put-sync 2000].
    #[arg(long)]
    requests: Option<u64>,
    /// The client the core workloads run with: `async-nats` (what users
    /// run), or `raw`, a lean blocking client (pre-encoded publish batches,
    /// in-place parsing, one thread per connection) that costs far less CPU
    /// per message, so that the server rather than the client sets the pace
    /// on a machine they share. The JetStream workloads always use
    /// async-nats.
    #[arg(long, value_enum, default_value = "async-nats")]
    client: ClientKind,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

/// Which client library drives the core workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ClientKind {
    AsyncNats,
    Raw,
}

impl ClientKind {
    fn name(self) -> &'static str {
        match self {
            ClientKind::AsyncNats => "async-nats",
            ClientKind::Raw => "raw",
        }
    }
}

impl WorkloadArgs {
    fn count(&self, workload: Workload, size: usize) -> u64 {
        let given = if workload.is_latency() {
            self.requests
        } else {
            self.msgs
        };
        given.unwrap_or_else(|| workload.default_count(size))
    }

    /// Refuses a combination that cannot run as asked.
    fn check(&self) -> Result<()> {
        if self.client == ClientKind::Raw {
            if let Some(js) = self.workload.iter().find(|w| w.is_jetstream()) {
                return Err(format!(
                    "--client raw runs only the core workloads (pub, pubsub, fanout, queue, \
                     reqrep), not {}",
                    js.name()
                )
                .into());
            }
        }
        Ok(())
    }

    /// Whether any workload needs JetStream.
    fn jetstream(&self) -> bool {
        self.workload.iter().any(|w| w.is_jetstream())
    }

    /// The (workload, size) pairs, in the order given.
    fn plan(&self) -> Vec<(Workload, usize)> {
        let mut plan = Vec::new();
        for &workload in &self.workload {
            let sizes = self.sizes.as_deref().unwrap_or(workload.default_sizes());
            for &size in sizes {
                if !plan.contains(&(workload, size)) {
                    plan.push((workload, size));
                }
            }
        }
        plan
    }
}

#[derive(Args)]
struct RunArgs {
    /// Server URL.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    url: String,
    #[command(flatten)]
    workloads: WorkloadArgs,
}

/// When the reference nats-server fsyncs its JetStream file store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ReferenceSync {
    /// nats-server's default (`sync_interval: 2m`): publishes are
    /// acknowledged before they are on disk.
    Default,
    /// `sync_interval: always`: every write is fsynced before the ack.
    Always,
}

#[derive(Args)]
struct CompareArgs {
    /// Command line that starts our server; `{port}` is replaced by the port
    /// and `{store_dir}` by a fresh, empty directory (one per start, removed
    /// afterwards) for a JetStream store (split on whitespace, quotes group
    /// words; not run through a shell).
    #[arg(long)]
    ours_cmd: String,
    /// The reference nats-server binary (looked up on PATH); started as
    /// `<reference> -a 127.0.0.1 -p <port>`, with `-js -sd <fresh dir>` in
    /// front when a JetStream workload is asked for.
    #[arg(long, default_value = "nats-server")]
    reference: String,
    /// JetStream fsync policy of the reference: `always` starts it with a
    /// generated config file (`listen: 127.0.0.1:<port>`, `jetstream {
    /// store_dir: "<fresh dir>", sync_interval: always }`) for a
    /// like-for-like durability comparison with a server that fsyncs before
    /// acknowledging.
    #[arg(long, value_enum, default_value = "default")]
    reference_sync: ReferenceSync,
    /// Where the servers' fresh store directories (and config files) are
    /// created; should be on the disk under test, not a tmpfs [default: the
    /// system temporary directory].
    #[arg(long)]
    store_root: Option<PathBuf>,
    /// Runs of each workload on each server; medians are reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    repeats: u64,
    /// Starts of each server for the start-up time median.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    starts: u64,
    #[command(flatten)]
    workloads: WorkloadArgs,
}

/// Parses a payload size: `16`, `1024`, `1k`, `64KiB`, `1M`.
fn parse_size(text: &str) -> std::result::Result<usize, String> {
    let text = text.trim();
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = text[digits.len()..].to_ascii_lowercase();
    let scale = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => return Err(format!("unknown size unit in `{text}`")),
    };
    let size = digits
        .trim()
        .parse::<usize>()
        .map_err(|err| format!("invalid size `{text}`: {err}"))?
        .checked_mul(scale)
        .ok_or_else(|| format!("size `{text}` too large"))?;
    if size > MAX_SIZE {
        return Err(format!("size `{text}` exceeds {MAX_SIZE} bytes"));
    }
    Ok(size)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // On Ctrl-C the command's future is dropped, which kills started servers.
    let result = tokio::select! {
        result = execute(cli.command) => result,
        _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("nats-bench: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(command: Command) -> Result<()> {
    match command {
        Command::Run(args) => run(args).await,
        Command::Compare(args) => compare(args).await,
        Command::Memory(args) => memory_after_load(args).await,
        Command::Scale(args) => scale_after_restart(args).await,
    }
}

async fn scale_after_restart(args: ScaleArgs) -> Result<()> {
    let ours = ServerCommand::parse(&args.ours_cmd)?;
    if !ours.uses_store_dir() {
        return Err(format!("--ours-cmd needs {STORE_DIR_PLACEHOLDER} for `scale`").into());
    }
    let reference =
        ServerCommand::nats_server(&args.reference, reference_mode(true, args.reference_sync))?;
    let scratch_root = args.store_root.clone().unwrap_or_else(std::env::temp_dir);
    let fill = scale::Fill {
        msgs: args.msgs,
        size: args.size,
        subjects: args.subjects,
    };
    // One after the other: a server never shares the machine with the other.
    let ours_side = scale::measure(NAMES[1], &ours, &scratch_root, fill).await?;
    if args.ours_only {
        if args.json {
            println!("{}", serde_json::to_string_pretty(&ours_side)?);
        }
        return Ok(());
    }
    let report = scale::ScaleReport {
        fill,
        reference: scale::measure(NAMES[0], &reference, &scratch_root, fill).await?,
        ours: ours_side,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", scale::text(&report));
    }
    Ok(())
}

async fn memory_after_load(args: MemoryArgs) -> Result<()> {
    let ours = ServerCommand::parse(&args.ours_cmd)?;
    let mode = reference_mode(ours.uses_store_dir(), ReferenceSync::Default);
    let reference = ServerCommand::nats_server(&args.reference, mode)?;
    let scratch_root = args.store_root.clone().unwrap_or_else(std::env::temp_dir);
    let load = memory::Load {
        rounds: args.rounds,
        size: args.size,
        msgs: args.msgs,
        queue_msgs: args.queue_msgs,
        after_secs: args.after_secs,
    };
    // One after the other: a server never shares the machine with the other.
    let report = memory::MemoryReport {
        load,
        reference: memory::measure(NAMES[0], &reference, &scratch_root, load).await?,
        ours: memory::measure(NAMES[1], &ours, &scratch_root, load).await?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", memory::text(&report));
    }
    Ok(())
}

async fn run(args: RunArgs) -> Result<()> {
    args.workloads.check()?;
    let client = args.workloads.client;
    let mut outcomes = Vec::new();
    let mut perf = std::env::var_os("NATS_BENCH_PERF_CTL").map(cpu::PerfControl::new);
    for (workload, size) in args.workloads.plan() {
        let count = args.workloads.count(workload, size);
        let outcome = match perf.as_mut() {
            Some(perf) => run_once(&args.url, "", client, workload, size, count, perf).await,
            None => run_once(&args.url, "", client, workload, size, count, &mut ()).await,
        };
        outcomes.push(outcome);
    }
    if args.workloads.json {
        println!("{}", serde_json::to_string_pretty(&outcomes)?);
    } else {
        print!("{}", report::run_text(&outcomes));
    }
    Ok(())
}

/// Runs a workload once, printing a progress line; a run that fails with an
/// error is reported on stderr and counted as all lost (or failed).
async fn run_once(
    url: &str,
    label: &str,
    client: ClientKind,
    workload: Workload,
    size: usize,
    count: u64,
    marks: MarksMut<'_>,
) -> Outcome {
    let ran = if workload.is_jetstream() {
        jetstream::run(url, workload, size, count, &mut *marks).await
    } else if client == ClientKind::Raw {
        // Blocking sockets and threads: keep the runtime's other tasks (the
        // servers' output readers) running on the remaining workers.
        tokio::task::block_in_place(|| raw::run(url, workload, size, count, &mut *marks))
    } else {
        workloads::run(url, workload, size, count, &mut *marks).await
    };
    match ran {
        Ok(outcome) => {
            eprintln!(
                "{}{}",
                progress(label, workload, size, &outcome),
                marks.note()
            );
            outcome
        }
        Err(err) => {
            eprintln!(
                "{label}{} {}: FAILED: {err}",
                workload.name(),
                report::fmt_size(size)
            );
            Outcome::failed(workload, size, count)
        }
    }
}

/// One line per run on stderr, so that long comparisons show progress.
fn progress(server: &str, workload: Workload, size: usize, outcome: &Outcome) -> String {
    let result = match outcome {
        Outcome::Throughput(t) => format!(
            "{} msgs/s, {} lost",
            report::fmt_count(t.msgs_per_sec),
            t.lost
        ),
        Outcome::Latency(l) => format!(
            "p50 {:.1} µs, p99 {:.1} µs, {} failed",
            l.percentiles.p50_us, l.percentiles.p99_us, l.failed
        ),
    };
    format!(
        "{server}{} {}: {result}",
        workload.name(),
        report::fmt_size(size)
    )
}

/// The two servers of a comparison: index 0 is the reference, 1 is ours.
const NAMES: [&str; 2] = ["reference", "ours"];

/// Alternates which server goes first.
fn order(round: u64) -> [usize; 2] {
    if round % 2 == 0 { [0, 1] } else { [1, 0] }
}

/// How to start the reference for the requested workloads.
fn reference_mode(jetstream: bool, sync: ReferenceSync) -> ReferenceMode {
    match (jetstream, sync) {
        (false, _) => ReferenceMode::Core,
        (true, ReferenceSync::Default) => ReferenceMode::JetStream,
        (true, ReferenceSync::Always) => ReferenceMode::JetStreamSyncAlways,
    }
}

async fn compare(args: CompareArgs) -> Result<()> {
    args.workloads.check()?;
    let client = args.workloads.client;
    let began = Instant::now();
    let jetstream = args.workloads.jetstream() || args.reference_sync == ReferenceSync::Always;
    let mode = reference_mode(jetstream, args.reference_sync);
    let commands = [
        ServerCommand::nats_server(&args.reference, mode)?,
        ServerCommand::parse(&args.ours_cmd)?,
    ];
    if jetstream && !commands[1].uses_store_dir() {
        eprintln!(
            "note: --ours-cmd has no {STORE_DIR_PLACEHOLDER}: our server keeps its JetStream \
             store wherever its command line puts it"
        );
    }
    let scratch_root = args.store_root.clone().unwrap_or_else(std::env::temp_dir);

    // Start-up time: spawn until the port accepts TCP connections.
    let mut startups: [Vec<f64>; 2] = Default::default();
    for round in 0..args.starts {
        for side in order(round) {
            let (server, ready) =
                Server::start(NAMES[side], &commands[side], &scratch_root).await?;
            drop(server);
            startups[side].push(ready.as_secs_f64() * 1000.0);
        }
    }

    let (reference, _) = Server::start(NAMES[0], &commands[0], &scratch_root).await?;
    let (ours, _) = Server::start(NAMES[1], &commands[1], &scratch_root).await?;
    tokio::time::sleep(IDLE_SETTLE).await;
    let idle_rss = [reference.rss_mib()?, ours.rss_mib()?];
    let urls = [reference.url(), ours.url()];
    let servers = [&reference, &ours];
    let clk_tck = cpu::clock_ticks_per_sec();

    for side in [0, 1] {
        workloads::run(&urls[side], Workload::Pubsub, 16, WARMUP_MSGS, &mut ()).await?;
        if args.workloads.jetstream() {
            let label = format!("[{}] warm-up ", NAMES[side]);
            run_once(
                &urls[side],
                &label,
                ClientKind::AsyncNats,
                Workload::JsPub,
                jetstream::DEFAULT_SIZE,
                JS_WARMUP_MSGS,
                &mut (),
            )
            .await;
        }
    }

    let mut throughput = Vec::new();
    let mut latency = Vec::new();
    let mut cpu_rows = Vec::new();
    let mut round = 0;
    for (workload, size) in args.workloads.plan() {
        let count = args.workloads.count(workload, size);
        let mut outcomes: [Vec<Outcome>; 2] = Default::default();
        let mut cpu_runs: [Vec<CpuRun>; 2] = Default::default();
        for _ in 0..args.repeats {
            for side in order(round) {
                let label = format!("[{}] ", NAMES[side]);
                let mut window = CpuWindow::new(servers[side].pid(), clk_tck);
                let outcome = run_once(
                    &urls[side],
                    &label,
                    client,
                    workload,
                    size,
                    count,
                    &mut window,
                )
                .await;
                cpu_runs[side].push(CpuRun {
                    ticks: window.ticks(),
                    client_ticks: window.client_ticks(),
                    wall_ms: window.wall_ms(),
                    delivered: outcome.delivered(),
                });
                outcomes[side].push(outcome);
            }
            round += 1;
        }
        let [reference_cpu, ours_cpu] =
            [0, 1].map(|side| CpuSide::new(&cpu_runs[side], clk_tck, servers[side].rss_mib().ok()));
        cpu_rows.push(CpuRow::new(workload, size, reference_cpu, ours_cpu));
        let [reference_runs, ours_runs] = outcomes;
        if workload.is_latency() {
            let pick = |runs: Vec<Outcome>| -> Vec<_> {
                runs.into_iter()
                    .filter_map(|outcome| match outcome {
                        Outcome::Latency(l) => Some(l),
                        Outcome::Throughput(_) => None,
                    })
                    .collect()
            };
            latency.extend(LatencyRow::new(&pick(reference_runs), &pick(ours_runs)));
        } else {
            let pick = |runs: Vec<Outcome>| -> Vec<_> {
                runs.into_iter()
                    .filter_map(|outcome| match outcome {
                        Outcome::Throughput(t) => Some(t),
                        Outcome::Latency(_) => None,
                    })
                    .collect()
            };
            throughput.extend(ThroughputRow::new(&pick(reference_runs), &pick(ours_runs)));
        }
    }

    let summary = |side: usize| -> Result<ServerSummary> {
        Ok(ServerSummary {
            name: NAMES[side].to_string(),
            command: commands[side].to_string(),
            startup_ms: report::median(&startups[side]),
            startup_samples_ms: startups[side].clone(),
            idle_rss_mib: idle_rss[side],
            peak_rss_mib: servers[side].peak_rss_mib()?,
        })
    };
    let comparison = Comparison {
        repeats: usize::try_from(args.repeats)?,
        client: client.name().to_string(),
        reference: summary(0)?,
        ours: summary(1)?,
        throughput,
        latency,
        clk_tck,
        cpu: cpu_rows,
        elapsed_secs: began.elapsed().as_secs_f64(),
    };
    drop(reference);
    drop(ours);
    if args.workloads.json {
        println!("{}", serde_json::to_string_pretty(&comparison)?);
    } else {
        print!("{}", report::compare_text(&comparison));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("16"), Ok(16));
        assert_eq!(parse_size(" 1024 "), Ok(1024));
        assert_eq!(parse_size("1k"), Ok(1024));
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("0"), Ok(0));
        assert!(parse_size("").is_err());
        assert!(parse_size("12x").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("2M").is_err());
    }

    #[test]
    fn cli_parses_lists() {
        let cli = Cli::try_parse_from([
            "nats-bench",
            "run",
            "--workload",
            "pub,reqrep",
            "--sizes",
            "16,1k",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("expected run");
        };
        assert_eq!(args.url, "nats://127.0.0.1:4222");
        assert_eq!(
            args.workloads.plan(),
            [
                (Workload::Pub, 16),
                (Workload::Pub, 1024),
                (Workload::Reqrep, 16),
                (Workload::Reqrep, 1024)
            ]
        );
        assert_eq!(args.workloads.count(Workload::Pub, 16), 200_000);
        assert_eq!(args.workloads.count(Workload::Reqrep, 16), 5_000);
        assert!(!args.workloads.jetstream());
    }

    #[test]
    fn jetstream_workloads_parse_with_their_defaults() {
        let cli = Cli::try_parse_from([
            "nats-bench",
            "run",
            "--workload",
            "js-pub,js-pub-sync,js-fetch,js-fetch-ack,js-ordered,kv-put,kv-put-sync,kv-get,pub",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("expected run");
        };
        let args = args.workloads;
        assert!(args.jetstream());
        assert_eq!(
            args.plan(),
            [
                (Workload::JsPub, 128),
                (Workload::JsPubSync, 128),
                (Workload::JsFetch, 128),
                (Workload::JsFetchAck, 128),
                (Workload::JsOrdered, 128),
                (Workload::KvPut, 128),
                (Workload::KvPutSync, 128),
                (Workload::KvGet, 128),
                (Workload::Pub, 16),
                (Workload::Pub, 1024),
                (Workload::Pub, 65_536),
            ]
        );
        assert_eq!(args.count(Workload::JsPub, 128), 50_000);
        assert_eq!(args.count(Workload::JsPubSync, 128), 2_000);
        assert_eq!(args.count(Workload::KvGet, 128), 5_000);
        assert_eq!(args.count(Workload::KvPut, 128), 50_000);
        assert_eq!(args.count(Workload::KvPutSync, 128), 2_000);
        assert!(Workload::KvPutSync.is_latency() && Workload::KvPutSync.is_jetstream());
        assert_eq!(args.count(Workload::Pub, 16), 200_000);
    }

    #[test]
    fn counts_and_sizes_apply_to_all() {
        let cli = Cli::try_parse_from([
            "nats-bench",
            "run",
            "--workload",
            "js-fetch,kv-get,reqrep",
            "--sizes",
            "1k",
            "--msgs",
            "300",
            "--requests",
            "40",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("expected run");
        };
        let args = args.workloads;
        assert_eq!(
            args.plan(),
            [
                (Workload::JsFetch, 1024),
                (Workload::KvGet, 1024),
                (Workload::Reqrep, 1024)
            ]
        );
        assert_eq!(args.count(Workload::JsFetch, 1024), 300);
        assert_eq!(args.count(Workload::KvGet, 1024), 40);
        assert_eq!(args.count(Workload::Reqrep, 1024), 40);
    }

    #[test]
    fn reference_sync_parses() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["nats-bench", "compare", "--ours-cmd", "x -p {port}"];
            argv.extend_from_slice(extra);
            match Cli::try_parse_from(argv).map(|cli| cli.command) {
                Ok(Command::Compare(args)) => Ok((args.reference_sync, args.store_root)),
                Ok(_) => panic!("expected compare"),
                Err(err) => Err(err.kind()),
            }
        };
        assert_eq!(parse(&[]), Ok((ReferenceSync::Default, None)));
        assert_eq!(
            parse(&["--reference-sync", "always", "--store-root", "/data"]),
            Ok((ReferenceSync::Always, Some(PathBuf::from("/data"))))
        );
        assert_eq!(
            parse(&["--reference-sync", "sometimes"]),
            Err(clap::error::ErrorKind::InvalidValue)
        );
    }

    #[test]
    fn reference_modes_follow_the_options() {
        assert_eq!(
            reference_mode(false, ReferenceSync::Default),
            ReferenceMode::Core
        );
        assert_eq!(
            reference_mode(true, ReferenceSync::Default),
            ReferenceMode::JetStream
        );
        assert_eq!(
            reference_mode(true, ReferenceSync::Always),
            ReferenceMode::JetStreamSyncAlways
        );
    }

    #[test]
    fn memory_defaults_are_the_issue_s_scenario() {
        let cli = Cli::try_parse_from(["nats-bench", "memory", "--ours-cmd", "x -p {port}"])
            .expect("parses");
        let Command::Memory(args) = cli.command else {
            panic!("expected memory");
        };
        assert_eq!(
            (
                args.rounds,
                args.size,
                args.msgs,
                args.queue_msgs,
                args.after_secs
            ),
            (6, 256, 3_000_000, 1_000_000, 5)
        );
        assert!(
            Cli::try_parse_from(["nats-bench", "memory", "--ours-cmd", "x", "--rounds", "0"])
                .is_err()
        );
    }

    #[test]
    fn scale_defaults_are_the_issue_s_scenario() {
        let cli = Cli::try_parse_from([
            "nats-bench",
            "scale",
            "--ours-cmd",
            "x -sd {store_dir} -p {port}",
        ])
        .expect("parses");
        let Command::Scale(args) = cli.command else {
            panic!("expected scale");
        };
        assert_eq!(
            (args.msgs, args.size, args.subjects, args.ours_only),
            (2_000_000, 128, 1, false)
        );
        for bad in [["--msgs", "0"], ["--subjects", "0"], ["--size", "2M"]] {
            let mut argv = vec!["nats-bench", "scale", "--ours-cmd", "x -p {port}"];
            argv.extend_from_slice(&bad);
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn order_alternates() {
        assert_eq!(order(0), [0, 1]);
        assert_eq!(order(1), [1, 0]);
    }
}
