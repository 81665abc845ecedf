//! The poker example's main job. See README.md: it generates load, stops and
//! resumes a projector, and checks the read models against a full replay.
//! Exit code 0 when they match, 1 on a mismatch, 2 on an error.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bus::BusConfig;
use clap::Parser;
use examples::job::{self, JobOptions, Progress};

/// Runs the poker example on the configured bus.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Bus configuration file (TOML, `[bus]` table). Without it: defaults plus
    /// BUS_BACKEND / NATS_URL from the environment.
    #[arg(short, long, env = "BUS_CONFIG")]
    config: Option<PathBuf>,
    /// Players to register.
    #[arg(long, default_value_t = 200)]
    players: usize,
    /// Hands to play.
    #[arg(long, default_value_t = 1500)]
    hands: usize,
    /// Seed of the deterministic load.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Hands played at once (worker tasks sharing the players). 1 (without
    /// --seats-at-once) runs one command at a time.
    #[arg(long, default_value_t = 32)]
    workers: usize,
    /// The seated players of a hand bet at once too, so appends to one hand
    /// race (many more conflicts retried, slower).
    #[arg(long)]
    seats_at_once: bool,
    /// Only generate load, as a second writer beside a running job: play
    /// --hands hands among these registered players (comma-separated ids),
    /// print one summary line and exit; no projectors, no checks.
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    load_players: Vec<String>,
    /// Hand ids of --load-players are `<prefix>-<number>`.
    #[arg(long, default_value = "load", value_name = "PREFIX")]
    hand_prefix: String,
}

/// `--load-players`: hands among existing players, then one line.
async fn load_only(bus: std::sync::Arc<dyn bus::Bus>, args: &Args) -> ExitCode {
    use std::sync::Arc;
    let service = Arc::new(examples::service::CommandService::new(bus));
    let tally = Arc::new(job::Tally::default());
    let started = Instant::now();
    let (tasks, mut done) = job::spawn_hands(
        Arc::clone(&service),
        Arc::new(args.load_players.clone()),
        job::Hands {
            count: args.hands,
            seed: args.seed,
            workers: args.workers,
            prefix: args.hand_prefix.clone(),
            seats_at_once: args.seats_at_once,
        },
        Arc::clone(&tally),
    );
    while done.recv().await.is_some() {}
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("error: worker failed: {e}");
                return ExitCode::from(2);
            }
        }
    }
    println!(
        "load: {} hands, {} commands accepted, {} refused, {} events, {} conflicts retried, {:.2?}",
        args.hands,
        tally.commands(),
        tally.rejected(),
        service.published(),
        service.conflicts_retried(),
        started.elapsed()
    );
    ExitCode::SUCCESS
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = match &args.config {
        Some(path) => BusConfig::load(path),
        None => BusConfig::from_env(),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let bus = match bus::open(&config).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: cannot open the {} backend: {e}", config.backend);
            return ExitCode::from(2);
        }
    };
    if !args.load_players.is_empty() {
        return load_only(bus, &args).await;
    }
    if bus.backend() == "memory" {
        println!("backend: memory (in-process; nothing is persisted)");
    } else {
        println!("backend: {}", bus.backend());
    }
    let options = JobOptions {
        players: args.players,
        hands: args.hands,
        seed: args.seed,
        consumer: config.consumer.clone(),
        workers: args.workers,
        seats_at_once: args.seats_at_once,
    };
    let tty = std::io::stdout().is_terminal();
    let mut last_print = Instant::now() - Duration::from_secs(1);
    let progress = move |p: Progress| {
        let mut out = std::io::stdout();
        match p {
            Progress::Load {
                commands,
                events,
                elapsed,
                hands_done,
                hands_total,
            } => {
                let done = hands_done == hands_total;
                if last_print.elapsed() < Duration::from_millis(if tty { 100 } else { 1000 })
                    && !done
                {
                    return;
                }
                last_print = Instant::now();
                let rate = events as f64 / elapsed.as_secs_f64().max(1e-9);
                let line = format!(
                    "load: hand {hands_done}/{hands_total}  commands {commands}  events {events}  {rate:.0} events/s"
                );
                if tty {
                    let _ = write!(out, "\r{line}   ");
                    if done {
                        let _ = writeln!(out);
                    }
                } else {
                    let _ = writeln!(out, "{line}");
                }
                let _ = out.flush();
            }
            Progress::ProjectorStopped { ack_floor, handled } => {
                if tty {
                    let _ = writeln!(out);
                }
                let _ = writeln!(
                    out,
                    "projector {}: stopped after {handled} deliveries; bus holds its position (ack floor {ack_floor})",
                    job::TABLE_PROJECTOR
                );
            }
            Progress::ProjectorResumed {
                from_position,
                pending,
            } => {
                let _ = writeln!(
                    out,
                    "projector {}: restarted, resuming from position {from_position} with {pending} events pending",
                    job::TABLE_PROJECTOR
                );
            }
            Progress::History { events } => {
                let _ = writeln!(
                    out,
                    "the stream already holds {events} events from earlier runs; \
                     the projectors' read models are in memory, so they start from the beginning"
                );
            }
            Progress::Draining { pending } => {
                if last_print.elapsed() >= Duration::from_millis(500) {
                    last_print = Instant::now();
                    let _ = writeln!(out, "draining: {pending} events pending");
                }
            }
        }
    };
    match job::run(bus, &options, progress).await {
        Ok(s) => {
            println!();
            println!("summary ({} backend)", s.backend);
            println!("  commands accepted     {}", s.commands);
            println!(
                "  commands refused      {} (overdrawn bets, refused by the player aggregate)",
                s.rejected
            );
            println!("  events published      {}", s.events);
            println!(
                "  conflicts retried     {} (appends that lost a race to another of the {} workers, \
                 reloaded and decided again)",
                s.conflicts_retried, s.workers
            );
            println!(
                "  load                  {:.2?} ({:.0} events/s)",
                s.load_time,
                s.events_per_sec()
            );
            println!("  projector resumed at  position {}", s.resumed_from);
            println!("  players               {}", s.players);
            println!("  chips on the table    {}", s.total_balance);
            println!("  dead letters          {}", s.dead_letters);
            println!(
                "  table-stats           {} events, {}",
                s.table_events,
                if s.table_matches {
                    "equals full replay"
                } else {
                    "DIFFERS from full replay"
                }
            );
            println!(
                "  player-directory      {} events, {}",
                s.directory_events,
                if s.directory_matches {
                    "equals replay of player events"
                } else {
                    "DIFFERS from replay"
                }
            );
            if s.ok() {
                println!("OK: read models equal their rebuild from full replay");
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "MISMATCH: a read model differs from its rebuild, or events were dead-lettered"
                );
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
