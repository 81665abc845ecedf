//! Errors the user sees: one sentence saying what went wrong and what to do.

use bus::BusError;

/// A command failure.
#[derive(Debug)]
pub enum CliError {
    /// Print this and exit with status 1.
    Message(String),
    /// Standard output was closed (e.g. `| head`): stop quietly, status 0.
    BrokenPipe,
    /// A child program (bench) ended with this status; exit with it.
    Exit(u8),
}

impl CliError {
    /// A message error.
    pub fn msg(text: impl Into<String>) -> Self {
        CliError::Message(text.into())
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            CliError::BrokenPipe
        } else {
            CliError::Message(format!("cannot write the output: {e}"))
        }
    }
}

/// Result of a command.
pub type CliResult<T = ()> = Result<T, CliError>;

/// Where the tool connects, for messages.
#[derive(Debug, Clone)]
pub struct Target {
    /// e.g. `nats://127.0.0.1:4222`, or `the memory backend`.
    pub describe: String,
}

/// The error of opening the bus, with what to do.
pub fn open_error(target: &Target, e: BusError) -> CliError {
    let to = &target.describe;
    CliError::Message(match e {
        BusError::Unavailable(_) | BusError::Timeout { .. } => format!(
            "cannot connect to {to} ({e}): is the server running? Start one with \
             `angzarr-bus server`, or pass --url nats://HOST:PORT (or --config FILE)"
        ),
        BusError::Unauthorized(_) => format!(
            "{to} refused the connection ({e}): put the credentials (user/password, token or \
             credentials_file) in the [bus.nats] table of a file and pass it with --config FILE"
        ),
        BusError::Conflict(_) => format!(
            "the event stream at {to} exists with other settings ({e}): pass the service's own \
             configuration with --config FILE so the settings match"
        ),
        BusError::Config(_) => format!("{e}: fix the configuration and try again"),
        other => format!("cannot open the bus at {to}: {other}"),
    })
}

/// The error of a bus operation, with what to do.
pub fn op_error(what: &str, e: BusError) -> CliError {
    CliError::Message(match &e {
        BusError::NotFound {
            what: "consumer",
            name,
        } => format!(
            "{what}: consumer {name:?} does not exist: list the consumers with `angzarr-bus consumers`"
        ),
        BusError::NotFound { .. } => format!("{what}: {e}"),
        BusError::InvalidFilter { .. } => format!(
            "{what}: {e}: use a filter such as `player.*`, `*.FundsDeposited` or `>` \
             (short for <prefix>.events.…), or a full subject filter under <prefix>.events"
        ),
        BusError::InvalidName { .. } | BusError::InvalidArgument(_) => {
            format!("{what}: {e}: fix the argument and try again")
        }
        BusError::Unsupported(_) => format!(
            "{what}: {e}: this needs a JetStream bus (backend nats with jetstream = true, or \
             a server started with `angzarr-bus server`)"
        ),
        BusError::Unavailable(_) | BusError::Timeout { .. } => {
            format!("{what}: {e}: check that the server is still running and reachable")
        }
        _ => format!("{what}: {e}"),
    })
}
