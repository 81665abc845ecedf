//! The command line (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Operate the angzarr event bus: run the server, publish, tail and replay
/// events, inspect streams, consumers and dead letters, benchmark.
#[derive(Debug, Parser)]
#[command(
    name = "angzarr-bus",
    version,
    propagate_version = true,
    after_help = "Connection: without --config or --url the tool talks to nats://127.0.0.1:4222 \
(what `angzarr-bus server` listens on). --config FILE reads a bus TOML ([bus] table; \
BUS_BACKEND and NATS_URL apply); a file with backend = \"embedded\" is reached at its \
[bus.embedded] host:port, since the service owns that server. --url wins over both.\n\n\
Filters: `player.*` is short for `<prefix>.events.player.*`; `>` (the default) is every event; \
a filter starting with the prefix is used as given."
)]
pub struct Cli {
    /// Bus configuration file (TOML with a [bus] table). Default: built-in defaults.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// NATS server URL; shortcut for backend = "nats" with this URL.
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// Machine-readable output: one JSON document (listings) or one JSON object per line (events).
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the bundled NATS server (with JetStream) in the foreground; takes nats-server flags
    /// (-a, -p, -m, -n, -js, -sd, --user/--pass, --auth, -D, -V). Ctrl-C or SIGTERM stops it.
    #[command(disable_help_flag = true, disable_version_flag = true)]
    Server(PassThrough),
    /// Publish one event and print its stream position.
    Publish(PublishArgs),
    /// Follow live events matching a filter (Ctrl-C to stop).
    Tail(TailArgs),
    /// Print stored events matching a filter, from a position or time up to the current head.
    Replay(ReplayArgs),
    /// List streams: the bus's event stream and, on NATS, every JetStream stream.
    Streams,
    /// Stream details.
    Stream {
        /// What to show.
        #[command(subcommand)]
        command: StreamCommand,
    },
    /// List the durable consumers of the event stream (NATS backends).
    Consumers,
    /// Consumer details.
    Consumer {
        /// What to show.
        #[command(subcommand)]
        command: ConsumerCommand,
    },
    /// List dead-lettered events; `dead-letters redrive` sends them back to their consumer.
    DeadLetters(DeadLettersArgs),
    /// Serve the operator console (streams, consumers with lag, dead letters with redrive,
    /// event browser) for the server this tool connects to, on loopback unless told otherwise.
    Console(ConsoleArgs),
    /// Show one aggregate's version and events (appended with an expected version), in
    /// version order; read from that aggregate's own index, not by replaying the stream.
    Aggregate(AggregateArgs),
    /// Run the `nats-bench` benchmark (found next to this binary or on PATH); every argument
    /// is passed through unchanged: try `angzarr-bus bench --help`.
    #[command(disable_help_flag = true, disable_version_flag = true)]
    Bench(PassThrough),
}

/// Arguments handed to another parser or program unchanged.
#[derive(Debug, Args)]
pub struct PassThrough {
    /// Arguments passed through.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<String>,
}

/// `publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Aggregate type, e.g. `player` (a subject token).
    pub aggregate: String,
    /// Aggregate id, e.g. a player's UUID.
    pub aggregate_id: String,
    /// Event type, e.g. `FundsDeposited` (a subject token).
    pub event_type: String,
    /// Payload: text, `@FILE` for a file's bytes, `@-` for standard input. Stored verbatim.
    #[arg(long, value_name = "TEXT|@FILE")]
    pub payload: Option<String>,
    /// Type URL of the payload (e.g. `type.googleapis.com/poker.v1.FundsDeposited` for an
    /// encoded protobuf message). Default: none.
    #[arg(long, value_name = "URL", requires = "payload")]
    pub type_url: Option<String>,
    /// The aggregate's sequence (version) of this event; 0 = not set.
    #[arg(long, default_value_t = 0)]
    pub sequence: u64,
    /// Correlation id.
    #[arg(long, value_name = "ID")]
    pub correlation_id: Option<String>,
    /// Causation id.
    #[arg(long, value_name = "ID")]
    pub causation_id: Option<String>,
    /// Event id (a UUID); reuse one to retry idempotently. Default: a fresh UUID v7.
    #[arg(long, value_name = "UUID")]
    pub event_id: Option<String>,
    /// Metadata entry KEY=VALUE (repeatable).
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub metadata: Vec<(String, String)>,
}

/// `tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// Filter, e.g. `player.*` or `angzarr.events.*.FundsDeposited`. Default: every event.
    #[arg(default_value = ">")]
    pub filter: String,
    /// Also print the payload (UTF-8 text when it is printable, else hex).
    #[arg(long)]
    pub payload: bool,
}

/// `replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Filter, e.g. `player.*`. Default: every event.
    #[arg(default_value = ">")]
    pub filter: String,
    /// Start at this stream position (or the first matching event after it).
    #[arg(long, value_name = "N", group = "from")]
    pub from_position: Option<u64>,
    /// Start at the first event stored at or after this time: RFC 3339 in UTC
    /// (`2025-01-31T12:00:00Z`) or a duration ago (`15m`, `2h`).
    #[arg(long, value_name = "TIME", group = "from", value_parser = parse_time)]
    pub from_time: Option<std::time::SystemTime>,
    /// Start at the oldest stored event (the default).
    #[arg(long, group = "from")]
    pub from_beginning: bool,
    /// Also print the payload (UTF-8 text when it is printable, else hex).
    #[arg(long)]
    pub payload: bool,
    /// No progress or summary on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `stream ...`.
#[derive(Debug, Subcommand)]
pub enum StreamCommand {
    /// Details of the bus's event stream, or of the named JetStream stream.
    Info {
        /// A JetStream stream name (NATS backends). Default: the bus's event stream.
        name: Option<String>,
    },
}

/// `consumer ...`.
#[derive(Debug, Subcommand)]
pub enum ConsumerCommand {
    /// State of one durable consumer.
    Info {
        /// The durable name.
        name: String,
    },
}

/// `console`.
#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// Address to listen on. Anything but loopback exposes the console (and its redrive
    /// action) to the network: do that only behind credentials and TLS.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8223")]
    pub listen: String,
}

/// `dead-letters`.
#[derive(Debug, Args)]
pub struct DeadLettersArgs {
    /// Only this consumer's dead letters.
    #[arg(long, value_name = "NAME")]
    pub consumer: Option<String>,
    /// Instead of listing: an action on dead letters.
    #[command(subcommand)]
    pub action: Option<DeadLettersCommand>,
}

/// `dead-letters <action>`.
#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// Send dead letters back to the consumer that gave up on them (and to no other
    /// consumer). Each stays listed until the consumer acknowledges its redelivery;
    /// running the command again never sends one twice.
    Redrive(RedriveArgs),
}

/// `dead-letters redrive`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["position", "all"])))]
pub struct RedriveArgs {
    /// The consumer whose dead letters are sent back to it.
    #[arg(long, value_name = "NAME")]
    pub consumer: String,
    /// The dead letter of this stream position (repeat for several).
    #[arg(long, value_name = "P")]
    pub position: Vec<u64>,
    /// Every dead letter of the consumer.
    #[arg(long)]
    pub all: bool,
}

/// `aggregate`.
#[derive(Debug, Args)]
pub struct AggregateArgs {
    /// Aggregate type, e.g. `player`.
    pub aggregate: String,
    /// Aggregate id, e.g. a player's UUID.
    pub aggregate_id: String,
    /// Only the events after this version (0, the default: all of them).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub after_version: u64,
    /// Also print the payload (UTF-8 text when it is printable, else hex).
    #[arg(long)]
    pub payload: bool,
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

/// RFC 3339 (UTC, `Z`) or a duration ago.
pub fn parse_time(text: &str) -> Result<std::time::SystemTime, String> {
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        return Ok(t);
    }
    if let Ok(ago) = humantime::parse_duration(text) {
        return std::time::SystemTime::now()
            .checked_sub(ago)
            .ok_or_else(|| format!("{text:?} ago is before the epoch"));
    }
    Err(format!(
        "{text:?} is neither an RFC 3339 time such as 2025-01-31T12:00:00Z nor a duration such as 15m"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cli {
        match Cli::try_parse_from(std::iter::once("angzarr-bus").chain(args.iter().copied())) {
            Ok(c) => c,
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_go_anywhere() {
        let cli = parse(&["consumers", "--json", "--url", "nats://h:1"]);
        assert!(cli.json);
        assert_eq!(cli.url.as_deref(), Some("nats://h:1"));
        assert!(matches!(cli.command, Command::Consumers));
        let cli = parse(&["--config", "bus.toml", "streams"]);
        assert_eq!(cli.config, Some(PathBuf::from("bus.toml")));
    }

    #[test]
    fn publish_takes_three_positionals_and_options() {
        let cli = parse(&[
            "publish",
            "player",
            "p-1",
            "FundsDeposited",
            "--payload",
            "hello",
            "--sequence",
            "3",
            "--correlation-id",
            "c-9",
            "--metadata",
            "tenant=acme",
        ]);
        let Command::Publish(p) = cli.command else {
            panic!("not publish")
        };
        assert_eq!(
            (
                p.aggregate.as_str(),
                p.aggregate_id.as_str(),
                p.event_type.as_str()
            ),
            ("player", "p-1", "FundsDeposited")
        );
        assert_eq!(p.payload.as_deref(), Some("hello"));
        assert_eq!(p.sequence, 3);
        assert_eq!(p.correlation_id.as_deref(), Some("c-9"));
        assert_eq!(p.metadata, vec![("tenant".to_owned(), "acme".to_owned())]);
    }

    #[test]
    fn publish_rejects_bad_metadata_and_type_url_without_payload() {
        let base = ["angzarr-bus", "publish", "a", "b", "C"];
        let with =
            |extra: &[&str]| Cli::try_parse_from(base.iter().chain(extra.iter()).copied()).is_err();
        assert!(with(&["--metadata", "novalue"]));
        assert!(with(&["--type-url", "x"]));
        assert!(!with(&[]));
    }

    #[test]
    fn replay_start_options_are_exclusive_and_default_to_the_beginning() {
        let cli = parse(&["replay"]);
        let Command::Replay(r) = cli.command else {
            panic!("not replay")
        };
        assert_eq!(r.filter, ">");
        assert!(r.from_position.is_none() && r.from_time.is_none());
        let cli = parse(&["replay", "player.*", "--from-position", "42"]);
        let Command::Replay(r) = cli.command else {
            panic!("not replay")
        };
        assert_eq!((r.filter.as_str(), r.from_position), ("player.*", Some(42)));
        assert!(
            Cli::try_parse_from([
                "angzarr-bus",
                "replay",
                "--from-position",
                "1",
                "--from-beginning"
            ])
            .is_err()
        );
    }

    #[test]
    fn times_parse_as_rfc3339_or_durations_ago() {
        let t = parse_time("2025-01-31T12:00:00Z").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            humantime::format_rfc3339(t).to_string(),
            "2025-01-31T12:00:00Z"
        );
        let ago = parse_time("15m").unwrap_or_else(|e| panic!("{e}"));
        let elapsed = std::time::SystemTime::now()
            .duration_since(ago)
            .unwrap_or_default();
        assert!(elapsed >= std::time::Duration::from_secs(15 * 60));
        assert!(parse_time("yesterday-ish").is_err());
    }

    #[test]
    fn server_and_bench_pass_their_flags_through() {
        let cli = parse(&["server", "-p", "4333", "-js", "-sd", "/tmp/x", "--help"]);
        let Command::Server(s) = cli.command else {
            panic!("not server")
        };
        assert_eq!(s.args, ["-p", "4333", "-js", "-sd", "/tmp/x", "--help"]);
        let cli = parse(&["server", "--version"]);
        let Command::Server(s) = cli.command else {
            panic!("not server")
        };
        assert_eq!(s.args, ["--version"]);
        let cli = parse(&["bench", "run", "--url", "nats://x:1", "--msgs", "10"]);
        let Command::Bench(b) = cli.command else {
            panic!("not bench")
        };
        // --url is the global option when it comes first... unless it follows a
        // pass-through value, which makes it part of the pass-through.
        assert_eq!(b.args, ["run", "--url", "nats://x:1", "--msgs", "10"]);
        assert!(cli.url.is_none());
    }

    #[test]
    fn aggregate_takes_type_id_and_a_version() {
        let cli = parse(&["aggregate", "player", "p-1", "--json"]);
        assert!(cli.json);
        let Command::Aggregate(a) = cli.command else {
            panic!("not aggregate")
        };
        assert_eq!(
            (
                a.aggregate.as_str(),
                a.aggregate_id.as_str(),
                a.after_version
            ),
            ("player", "p-1", 0)
        );
        let cli = parse(&[
            "aggregate",
            "table",
            "t 1",
            "--after-version",
            "3",
            "--payload",
        ]);
        let Command::Aggregate(a) = cli.command else {
            panic!("not aggregate")
        };
        assert_eq!((a.after_version, a.payload), (3, true));
        assert!(Cli::try_parse_from(["angzarr-bus", "aggregate", "player"]).is_err());
    }

    #[test]
    fn stream_and_consumer_info() {
        let cli = parse(&["stream", "info"]);
        assert!(matches!(
            cli.command,
            Command::Stream {
                command: StreamCommand::Info { name: None }
            }
        ));
        let cli = parse(&["consumer", "info", "projector"]);
        let Command::Consumer {
            command: ConsumerCommand::Info { name },
        } = cli.command
        else {
            panic!("not consumer info")
        };
        assert_eq!(name, "projector");
        let cli = parse(&["dead-letters", "--consumer", "projector"]);
        let Command::DeadLetters(d) = cli.command else {
            panic!("not dead-letters")
        };
        assert_eq!(d.consumer.as_deref(), Some("projector"));
    }
}
