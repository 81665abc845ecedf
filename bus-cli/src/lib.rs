//! # bus-cli: `angzarr-bus`, the command-line tool for operating the bus
//!
//! Like the `nats` CLI, for this bus: `server` runs the bundled server,
//! `publish` / `tail` / `replay` write and read events with decoded
//! envelopes, `streams`, `stream info`, `consumers`, `consumer info` and
//! `dead-letters` inspect state, `dead-letters redrive` sends dead letters
//! back to their consumer, `aggregate` shows one aggregate's events,
//! `console` serves the operator console, `bench` runs `nats-bench`. Tables by
//! default, `--json` for scripts; errors say what to do and exit with 1.
//!
//! Layout: [`args`] (clap), [`connect`] (which bus, connecting), [`commands`]
//! (the bus commands), [`server`], [`bench`](mod@bench), [`format`](mod@format) (event lines and
//! JSON), [`table`] (the table renderer), [`error`].

pub mod args;
pub mod bench;
pub mod commands;
pub mod connect;
pub mod console;
pub mod error;
pub mod format;
pub mod server;
pub mod table;

use std::process::ExitCode;

use std::sync::Arc;

use clap::Parser;

use args::{Cli, Command, ConsumerCommand, StreamCommand};
use error::{CliError, CliResult};

/// Parses the process arguments, runs the command, reports the error.
pub fn main_entry() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        // No runtime needed to exec another program.
        Command::Bench(ref b) => bench::run(b.args.clone()),
        _ => match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(run(cli)),
            Err(e) => Err(CliError::msg(format!(
                "cannot start the async runtime: {e}"
            ))),
        },
    };
    match result {
        Ok(()) | Err(CliError::BrokenPipe) => ExitCode::SUCCESS,
        Err(CliError::Exit(code)) => ExitCode::from(code),
        Err(CliError::Message(m)) => {
            eprintln!("error: {m}");
            ExitCode::from(1)
        }
    }
}

/// Runs one parsed command line.
pub async fn run(cli: Cli) -> CliResult {
    let json = cli.json;
    let command = match cli.command {
        Command::Server(s) => return server::run(s.args).await,
        Command::Bench(b) => return bench::run(b.args),
        other => other,
    };
    let resolved = connect::resolve(cli.config.as_deref(), cli.url.as_deref(), |k| {
        std::env::var(k).ok()
    })?;
    let bus = connect::open(&resolved).await?;
    let result = match command {
        Command::Publish(a) => commands::publish(&bus, a, json).await,
        Command::Tail(a) => commands::tail(&bus, &resolved, a, json).await,
        Command::Replay(a) => commands::replay(&bus, a, json).await,
        Command::Streams => commands::streams(&bus, &resolved, json).await,
        Command::Stream {
            command: StreamCommand::Info { name },
        } => commands::stream_info(&bus, &resolved, name, json).await,
        Command::Consumers => commands::consumers(&bus, &resolved, json).await,
        Command::Consumer {
            command: ConsumerCommand::Info { name },
        } => commands::consumer_info(&bus, &name, json).await,
        Command::DeadLetters(args::DeadLettersArgs {
            action: Some(args::DeadLettersCommand::Redrive(a)),
            ..
        }) => commands::redrive(&bus, a, json).await,
        Command::DeadLetters(a) => commands::dead_letters(&bus, a.consumer.as_deref(), json).await,
        Command::Console(a) => console::run(Arc::clone(&bus), &resolved, a).await,
        Command::Aggregate(a) => commands::aggregate(&bus, a, json).await,
        Command::Server(_) | Command::Bench(_) => Ok(()),
    };
    let _ = bus.close().await;
    result
}
