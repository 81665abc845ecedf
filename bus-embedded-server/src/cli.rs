//! nats-server's command-line flags, parsed the way nats-server 2.15.1 parses
//! them (Go `flag` package rules, checked against the real binary):
//!
//! * `-name` and `--name` are the same flag; values are given as `-name=v`
//!   or `-name v`;
//! * a non-boolean flag takes the next argument whatever it looks like, so
//!   `-p -1` is port -1 (random);
//! * a boolean flag takes no separate value (`-js`, `-D`) but accepts
//!   `-js=true` / `-js=false` (also `1`, `t`, `T`, `TRUE`, `True` and the `0`/`f`
//!   forms); `-js false` makes `false` a positional argument;
//! * integers are Go integer literals: `10`, `-1`, `+5`, `0x10`, `0o17`,
//!   `010` (octal!), `1_000`;
//! * parsing stops at `--` or at the first argument that is not a flag; the
//!   positional `version` and `help` are honoured, anything else is an error;
//! * the debug/trace shorthands are flags of their own: `-D`, `-V`, `-DV`,
//!   `-VV` (verbose trace), `-DVV`; whatever the order on the command line,
//!   they apply in the order `-D`, `-V`, `-DV`, `-DVV`, `-VV`, each one that
//!   is given (even `=false`) overriding the previous ones and the
//!   configuration file.
//!
//! nats-server flags this server does not implement (clustering,
//! syslog, ...) are parsed with their proper arity and listed in
//! [`Cli::unsupported`] so the caller can warn or refuse.

use std::path::PathBuf;

/// The parsed command line. Options not given are `None` / `false`; use
/// [`Cli::is_set`] to tell an explicit `-D=false` from an absent `-D`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cli {
    /// `-a`, `--addr`, `--net`: client listen host.
    pub addr: Option<String>,
    /// `-p`, `--port`: client port; -1 means random.
    pub port: Option<i32>,
    /// `-n`, `--name`, `--server_name`.
    pub server_name: Option<String>,
    /// `-m`, `--http_port`: monitoring port; -1 means random.
    pub http_port: Option<i32>,
    /// `-c`, `--config`.
    pub config: Option<PathBuf>,
    /// `-js`, `--jetstream`.
    pub jetstream: bool,
    /// `-sd`, `--store_dir`.
    pub store_dir: Option<PathBuf>,
    /// `--user`.
    pub user: Option<String>,
    /// `--pass`.
    pub pass: Option<String>,
    /// `--auth`: token.
    pub auth: Option<String>,
    /// `--tls`: TLS on, clients not verified.
    pub tls: bool,
    /// `--tlscert`: server certificate (PEM).
    pub tls_cert: Option<PathBuf>,
    /// `--tlskey`: its private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// `--tlsverify`: TLS on, client certificates required and verified.
    pub tls_verify: bool,
    /// `--tlscacert`: the CA client certificates must chain to.
    pub tls_ca_cert: Option<PathBuf>,
    /// `-l`, `--log`.
    pub log_file: Option<PathBuf>,
    /// `-T`, `--logtime` (nats-server's default is true).
    pub logtime: Option<bool>,
    /// `-D`, `--debug`, `-DV`, `-DVV`.
    pub debug: bool,
    /// `-V`, `--trace`, `-DV`, `-VV`, `-DVV`.
    pub trace: bool,
    /// `-VV`, `-DVV`: trace the system account too.
    pub trace_verbose: bool,
    /// `-P`, `--pid`.
    pub pid_file: Option<PathBuf>,
    /// `--ports_file_dir`.
    pub ports_file_dir: Option<PathBuf>,
    /// `-t`: check the configuration file and exit.
    pub test_config: bool,
    /// `-v`, `--version`, or the positional `version`.
    pub version: bool,
    /// `-h`, `--help`, or the positional `help`.
    pub help: bool,
    /// `--help_tls`.
    pub help_tls: bool,
    /// `-sl`, `--signal`: `<command>[=<pid or pid file>]`, see [`parse_signal`].
    pub signal: Option<String>,
    /// nats-server flags that were given but that this server does not
    /// implement, in command-line order.
    pub unsupported: Vec<UnsupportedFlag>,
    /// Canonical names (the field names above) of the options given
    /// explicitly, in the order first given.
    pub set_flags: Vec<&'static str>,
}

impl Cli {
    /// Whether an option was given explicitly; `name` is the field name
    /// (`"debug"`, `"port"`, `"jetstream"`, ...).
    pub fn is_set(&self, name: &str) -> bool {
        self.set_flags.contains(&name)
    }

    fn mark(&mut self, name: &'static str) {
        if !self.set_flags.contains(&name) {
            self.set_flags.push(name);
        }
    }
}

/// A recognised nats-server flag this server does not implement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedFlag {
    /// Long name without dashes (`"tls"`, `"cluster"`, `"https_port"`).
    pub name: &'static str,
    /// The value; `"true"`/`"false"` for boolean flags.
    pub value: String,
}

/// A command-line error. The messages are the ones nats-server prints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CliError {
    #[error("flag provided but not defined: -{0}")]
    UnknownFlag(String),
    #[error("bad flag syntax: {0}")]
    BadSyntax(String),
    #[error("flag needs an argument: -{0}")]
    MissingValue(String),
    #[error("invalid boolean value {value:?} for -{flag}: parse error")]
    InvalidBool { flag: String, value: String },
    /// `reason` is `"parse error"` or `"value out of range"`.
    #[error("invalid value {value:?} for flag -{flag}: {reason}")]
    InvalidValue {
        flag: String,
        value: String,
        reason: &'static str,
    },
    #[error("unrecognized command: {0:?}")]
    UnrecognizedCommand(String),
    #[error("must specify [-c, --config] option to check configuration file syntax")]
    TestWithoutConfig,
    #[error("unknown signal {0:?}")]
    UnknownSignal(String),
    #[error("invalid signal parameters: [{}]", .0.join(" "))]
    InvalidSignalParameters(Vec<String>),
}

impl CliError {
    /// nats-server follows these errors with its usage text (on stdout, and
    /// then exits with status 0); the others it prints as
    /// `nats-server: <message>` and exits with status 1.
    pub fn shows_usage(&self) -> bool {
        matches!(
            self,
            CliError::UnknownFlag(_)
                | CliError::BadSyntax(_)
                | CliError::MissingValue(_)
                | CliError::InvalidBool { .. }
                | CliError::InvalidValue { .. }
        )
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Int,
    Str,
}

#[derive(Clone, Copy)]
enum Target {
    Addr,
    Port,
    ServerName,
    PidFile,
    HttpPort,
    Config,
    TestConfig,
    Signal,
    PortsFileDir,
    LogFile,
    Logtime,
    Debug,
    Trace,
    TraceVerbose,
    DebugTrace,
    DebugTraceVerbose,
    JetStream,
    StoreDir,
    User,
    Pass,
    Auth,
    Tls,
    TlsCert,
    TlsKey,
    TlsVerify,
    TlsCaCert,
    Help,
    Version,
    HelpTls,
    Unsupported(&'static str),
}

struct FlagSpec {
    names: &'static [&'static str],
    kind: Kind,
    target: Target,
}

const fn spec(names: &'static [&'static str], kind: Kind, target: Target) -> FlagSpec {
    FlagSpec {
        names,
        kind,
        target,
    }
}

/// Every flag nats-server 2.15.1 defines.
const FLAGS: &[FlagSpec] = &[
    spec(&["a", "addr", "net"], Kind::Str, Target::Addr),
    spec(&["p", "port"], Kind::Int, Target::Port),
    spec(&["n", "name", "server_name"], Kind::Str, Target::ServerName),
    spec(&["P", "pid"], Kind::Str, Target::PidFile),
    spec(&["m", "http_port"], Kind::Int, Target::HttpPort),
    spec(
        &["ms", "https_port"],
        Kind::Int,
        Target::Unsupported("https_port"),
    ),
    spec(&["c", "config"], Kind::Str, Target::Config),
    spec(&["t"], Kind::Bool, Target::TestConfig),
    spec(&["sl", "signal"], Kind::Str, Target::Signal),
    spec(
        &["client_advertise"],
        Kind::Str,
        Target::Unsupported("client_advertise"),
    ),
    spec(&["ports_file_dir"], Kind::Str, Target::PortsFileDir),
    spec(&["l", "log"], Kind::Str, Target::LogFile),
    spec(&["T", "logtime"], Kind::Bool, Target::Logtime),
    spec(
        &["logtime_utc"],
        Kind::Bool,
        Target::Unsupported("logtime_utc"),
    ),
    spec(&["s", "syslog"], Kind::Bool, Target::Unsupported("syslog")),
    spec(
        &["r", "remote_syslog"],
        Kind::Str,
        Target::Unsupported("remote_syslog"),
    ),
    spec(&["D", "debug"], Kind::Bool, Target::Debug),
    spec(&["V", "trace"], Kind::Bool, Target::Trace),
    spec(&["VV"], Kind::Bool, Target::TraceVerbose),
    spec(&["DV"], Kind::Bool, Target::DebugTrace),
    spec(&["DVV"], Kind::Bool, Target::DebugTraceVerbose),
    spec(
        &["log_size_limit"],
        Kind::Int,
        Target::Unsupported("log_size_limit"),
    ),
    spec(
        &["max_traced_msg_len"],
        Kind::Int,
        Target::Unsupported("max_traced_msg_len"),
    ),
    spec(&["js", "jetstream"], Kind::Bool, Target::JetStream),
    spec(&["sd", "store_dir"], Kind::Str, Target::StoreDir),
    spec(&["user"], Kind::Str, Target::User),
    spec(&["pass"], Kind::Str, Target::Pass),
    spec(&["auth"], Kind::Str, Target::Auth),
    spec(&["tls"], Kind::Bool, Target::Tls),
    spec(&["tlscert"], Kind::Str, Target::TlsCert),
    spec(&["tlskey"], Kind::Str, Target::TlsKey),
    spec(&["tlsverify"], Kind::Bool, Target::TlsVerify),
    spec(&["tlscacert"], Kind::Str, Target::TlsCaCert),
    spec(&["routes"], Kind::Str, Target::Unsupported("routes")),
    spec(&["cluster"], Kind::Str, Target::Unsupported("cluster")),
    spec(
        &["cluster_name"],
        Kind::Str,
        Target::Unsupported("cluster_name"),
    ),
    spec(
        &["no_advertise"],
        Kind::Bool,
        Target::Unsupported("no_advertise"),
    ),
    spec(
        &["cluster_advertise"],
        Kind::Str,
        Target::Unsupported("cluster_advertise"),
    ),
    spec(
        &["connect_retries"],
        Kind::Int,
        Target::Unsupported("connect_retries"),
    ),
    spec(
        &["cluster_listen"],
        Kind::Str,
        Target::Unsupported("cluster_listen"),
    ),
    spec(&["profile"], Kind::Int, Target::Unsupported("profile")),
    spec(&["h", "help"], Kind::Bool, Target::Help),
    spec(&["v", "version"], Kind::Bool, Target::Version),
    spec(&["help_tls"], Kind::Bool, Target::HelpTls),
];

fn lookup(name: &str) -> Option<&'static FlagSpec> {
    FLAGS.iter().find(|f| f.names.contains(&name))
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

const PARSE_ERROR: &str = "parse error";
const RANGE_ERROR: &str = "value out of range";

/// Go's `strconv.ParseInt(s, 0, 64)`: optional sign, `0x`/`0o`/`0b` or a
/// leading `0` (octal) prefix, `_` between digits.
fn parse_go_int(s: &str) -> Result<i64, &'static str> {
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(rest) = lower.strip_prefix("0x") {
        (16, rest, true)
    } else if let Some(rest) = lower.strip_prefix("0o") {
        (8, rest, true)
    } else if let Some(rest) = lower.strip_prefix("0b") {
        (2, rest, true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..], true)
    } else {
        (10, lower.as_str(), false)
    };
    let mut value: i128 = 0;
    let mut seen_digit = false;
    // '_' must follow a digit or the base prefix, and be followed by a digit.
    let mut prev_ok_for_underscore = prefixed;
    let mut prev_underscore = false;
    for c in digits.chars() {
        if c == '_' {
            if !prev_ok_for_underscore {
                return Err(PARSE_ERROR);
            }
            prev_ok_for_underscore = false;
            prev_underscore = true;
            continue;
        }
        let d = c.to_digit(radix).ok_or(PARSE_ERROR)?;
        seen_digit = true;
        prev_ok_for_underscore = true;
        prev_underscore = false;
        value = value * i128::from(radix) + i128::from(d);
        if value > i128::from(i64::MAX) + 1 {
            value = i128::from(i64::MAX) + 2; // saturate: out of range below
        }
    }
    if prev_underscore || !seen_digit {
        return Err(PARSE_ERROR);
    }
    let signed = if negative { -value } else { value };
    i64::try_from(signed).map_err(|_| RANGE_ERROR)
}

fn parse_int_flag(flag: &str, value: &str) -> Result<i64, CliError> {
    parse_go_int(value).map_err(|reason| CliError::InvalidValue {
        flag: flag.to_string(),
        value: value.to_string(),
        reason,
    })
}

fn parse_port_flag(flag: &str, value: &str) -> Result<i32, CliError> {
    let n = parse_int_flag(flag, value)?;
    i32::try_from(n).map_err(|_| CliError::InvalidValue {
        flag: flag.to_string(),
        value: value.to_string(),
        reason: RANGE_ERROR,
    })
}

/// Parses the command-line arguments, without the program name (as in
/// `std::env::args().skip(1)`).
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Cli, CliError> {
    let args: Vec<String> = args.into_iter().collect();
    let mut cli = Cli::default();
    // The debug/trace family, applied in a fixed order after parsing.
    let (mut d, mut v, mut dv, mut dvv, mut vv) = (None, None, None, None, None);
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        if arg.len() < 2 || !arg.starts_with('-') {
            break;
        }
        let mut name = &arg[1..];
        if let Some(rest) = name.strip_prefix('-') {
            name = rest;
            if name.is_empty() {
                i += 1; // "--" ends the flags
                break;
            }
        }
        if name.is_empty() || name.starts_with('-') || name.starts_with('=') {
            return Err(CliError::BadSyntax(arg.clone()));
        }
        i += 1;
        let (name, inline) = match name.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (name, None),
        };
        let Some(flag) = lookup(name) else {
            return Err(CliError::UnknownFlag(name.to_string()));
        };
        let value: String = match (flag.kind, inline) {
            (Kind::Bool, None) => "true".to_string(),
            (Kind::Bool, Some(v)) => match parse_go_bool(v) {
                Some(b) => b.to_string(),
                None => {
                    return Err(CliError::InvalidBool {
                        flag: name.to_string(),
                        value: v.to_string(),
                    });
                }
            },
            (_, Some(v)) => v.to_string(),
            (_, None) => match args.get(i) {
                Some(next) => {
                    i += 1;
                    next.clone()
                }
                None => return Err(CliError::MissingValue(name.to_string())),
            },
        };
        let on = value == "true";
        match flag.target {
            Target::Addr => {
                cli.addr = Some(value);
                cli.mark("addr");
            }
            Target::Port => {
                cli.port = Some(parse_port_flag(name, &value)?);
                cli.mark("port");
            }
            Target::ServerName => {
                cli.server_name = Some(value);
                cli.mark("server_name");
            }
            Target::PidFile => {
                cli.pid_file = Some(PathBuf::from(value));
                cli.mark("pid_file");
            }
            Target::HttpPort => {
                cli.http_port = Some(parse_port_flag(name, &value)?);
                cli.mark("http_port");
            }
            Target::Config => {
                cli.config = Some(PathBuf::from(value));
                cli.mark("config");
            }
            Target::TestConfig => {
                cli.test_config = on;
                cli.mark("test_config");
            }
            Target::Signal => {
                cli.signal = Some(value);
                cli.mark("signal");
            }
            Target::PortsFileDir => {
                cli.ports_file_dir = Some(PathBuf::from(value));
                cli.mark("ports_file_dir");
            }
            Target::LogFile => {
                cli.log_file = Some(PathBuf::from(value));
                cli.mark("log_file");
            }
            Target::Logtime => {
                cli.logtime = Some(on);
                cli.mark("logtime");
            }
            Target::Debug => d = Some(on),
            Target::Trace => v = Some(on),
            Target::DebugTrace => dv = Some(on),
            Target::DebugTraceVerbose => dvv = Some(on),
            Target::TraceVerbose => vv = Some(on),
            Target::JetStream => {
                cli.jetstream = on;
                cli.mark("jetstream");
            }
            Target::StoreDir => {
                cli.store_dir = Some(PathBuf::from(value));
                cli.mark("store_dir");
            }
            Target::User => {
                cli.user = Some(value);
                cli.mark("user");
            }
            Target::Pass => {
                cli.pass = Some(value);
                cli.mark("pass");
            }
            Target::Auth => {
                cli.auth = Some(value);
                cli.mark("auth");
            }
            Target::Tls => {
                cli.tls = on;
                cli.mark("tls");
            }
            Target::TlsCert => {
                cli.tls_cert = Some(PathBuf::from(value));
                cli.mark("tls_cert");
            }
            Target::TlsKey => {
                cli.tls_key = Some(PathBuf::from(value));
                cli.mark("tls_key");
            }
            Target::TlsVerify => {
                cli.tls_verify = on;
                cli.mark("tls_verify");
            }
            Target::TlsCaCert => {
                cli.tls_ca_cert = Some(PathBuf::from(value));
                cli.mark("tls_ca_cert");
            }
            Target::Help => {
                cli.help = on;
                cli.mark("help");
            }
            Target::Version => {
                cli.version = on;
                cli.mark("version");
            }
            Target::HelpTls => {
                cli.help_tls = on;
                cli.mark("help_tls");
            }
            Target::Unsupported(canonical) => {
                if flag.kind == Kind::Int {
                    parse_int_flag(name, &value)?;
                }
                cli.unsupported.push(UnsupportedFlag {
                    name: canonical,
                    value,
                });
            }
        }
    }
    if let Some(on) = d {
        cli.debug = on;
        cli.mark("debug");
    }
    if let Some(on) = v {
        cli.trace = on;
        cli.mark("trace");
    }
    if let Some(on) = dv {
        cli.debug = on;
        cli.trace = on;
        cli.mark("debug");
        cli.mark("trace");
    }
    if let Some(on) = dvv {
        cli.debug = on;
        cli.trace = on;
        cli.trace_verbose = on;
        cli.mark("debug");
        cli.mark("trace");
        cli.mark("trace_verbose");
    }
    if let Some(on) = vv {
        cli.trace = on;
        cli.trace_verbose = on;
        cli.mark("trace");
        cli.mark("trace_verbose");
    }
    if let Some(command) = args.get(i) {
        match command.as_str() {
            "version" => cli.version = true,
            "help" => cli.help = true,
            _ => return Err(CliError::UnrecognizedCommand(command.clone())),
        }
    }
    if cli.test_config && cli.config.is_none() && !cli.version && !cli.help && !cli.help_tls {
        return Err(CliError::TestWithoutConfig);
    }
    Ok(cli)
}

/// The command of `--signal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalCommand {
    /// `ldm`: enter lame duck mode.
    Ldm,
    /// `stop`: stop the server.
    Stop,
    /// `quit`: stop the server.
    Quit,
    /// `term`: stop the server.
    Term,
    /// `reopen`: reopen the log file.
    Reopen,
    /// `reload`: reload the configuration file.
    Reload,
}

/// A parsed `--signal` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalRequest {
    pub command: SignalCommand,
    /// A process id or the path of a pid file; `None` means "the only
    /// nats-server process running".
    pub pid: Option<String>,
}

/// Parses a `--signal` value, `<command>[=<pid or pid file>]`. The command is
/// case-sensitive, as in nats-server.
pub fn parse_signal(value: &str) -> Result<SignalRequest, CliError> {
    let mut parts = value.split('=');
    let command = parts.next().unwrap_or_default();
    let pid = parts.next().map(str::to_string);
    let extra: Vec<String> = parts.map(str::to_string).collect();
    if !extra.is_empty() {
        return Err(CliError::InvalidSignalParameters(extra));
    }
    let command = match command {
        "ldm" => SignalCommand::Ldm,
        "stop" => SignalCommand::Stop,
        "quit" => SignalCommand::Quit,
        "term" => SignalCommand::Term,
        "reopen" => SignalCommand::Reopen,
        "reload" => SignalCommand::Reload,
        other => return Err(CliError::UnknownSignal(other.to_string())),
    };
    Ok(SignalRequest { command, pid })
}

/// The help text.
pub fn usage() -> &'static str {
    USAGE
}

const USAGE: &str = "\
Usage: nats-server [options]

Server:
    -a, --addr, --net <host>         Host to listen on for clients (default: 0.0.0.0)
    -p, --port <port>                Client port, -1 for a random one (default: 4222)
    -n, --name, --server_name <name> Name of this server (default: generated)
    -P, --pid <file>                 Write the process id to this file
    -m, --http_port <port>           Serve HTTP monitoring on this port (-1: random)
    -c, --config <file>              Read options from this configuration file
    -t                               Check the configuration file, then exit
    -sl, --signal <cmd>[=<pid>]      Signal a running server: ldm, stop, quit, term,
                                     reopen or reload; <pid> is a process id or a
                                     pid file (default: the only server running)
        --ports_file_dir <dir>       Write the listening ports to a file in <dir>

Logging:
    -l, --log <file>                 Log to this file instead of standard error
    -T, --logtime                    Timestamp log lines (default: true; -T=false)
    -D, --debug                      Log debug messages
    -V, --trace                      Log the protocol traffic
    -VV                              Like -V, including the system account
    -DV                              Same as -D -V
    -DVV                             Same as -D -VV

JetStream:
    -js, --jetstream                 Turn JetStream on
    -sd, --store_dir <dir>           Where JetStream keeps its data

Authorization:
        --user <user>                Require this user name from clients
        --pass <password>            Require this password from clients
        --auth <token>               Require this token from clients

TLS:
        --tls                        Enable TLS, do not verify clients
        --tlscert <file>             Server certificate file
        --tlskey <file>              Private key for server certificate
        --tlsverify                  Enable TLS, verify client certificates
        --tlscacert <file>           Client certificate CA for verification
                                     (any TLS flag replaces the configuration
                                     file's tls block, keeping its timeout and
                                     handshake_first)

Other:
    -h, --help                       Print this text
    -v, --version                    Print the version

Flags take one or two dashes; give values as -flag value or -flag=value;
switches accept -flag=true or -flag=false.
Also recognised for compatibility with nats-server, but not acted on:
-ms/--https_port, --client_advertise, --logtime_utc, -s/--syslog,
-r/--remote_syslog, --log_size_limit, --max_traced_msg_len, --routes,
--cluster, --cluster_name, --no_advertise, --cluster_advertise,
--connect_retries, --cluster_listen, --profile, --help_tls.
";

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn ok(list: &[&str]) -> Cli {
        match parse_args(args(list)) {
            Ok(cli) => cli,
            Err(e) => panic!("{list:?}: {e}"),
        }
    }

    fn err(list: &[&str]) -> CliError {
        match parse_args(args(list)) {
            Ok(cli) => panic!("{list:?}: expected an error, got {cli:?}"),
            Err(e) => e,
        }
    }

    /// Every spelling of a value flag: -x v, -x=v, --x v, --x=v.
    fn spellings(names: &[&str], value: &str) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        for name in names {
            for dashes in ["-", "--"] {
                out.push(vec![format!("{dashes}{name}"), value.to_string()]);
                out.push(vec![format!("{dashes}{name}={value}")]);
            }
        }
        out
    }

    fn each_spelling(names: &[&str], value: &str, check: impl Fn(&Cli)) {
        for list in spellings(names, value) {
            match parse_args(list.clone()) {
                Ok(cli) => check(&cli),
                Err(e) => panic!("{list:?}: {e}"),
            }
        }
    }

    #[test]
    fn no_arguments() {
        let cli = ok(&[]);
        assert_eq!(cli, Cli::default());
        assert!(!cli.is_set("debug"));
    }

    #[test]
    fn string_flags_in_every_spelling() {
        each_spelling(&["a", "addr", "net"], "127.0.0.1", |c| {
            assert_eq!(c.addr.as_deref(), Some("127.0.0.1"));
            assert!(c.is_set("addr"));
        });
        each_spelling(&["n", "name", "server_name"], "n1", |c| {
            assert_eq!(c.server_name.as_deref(), Some("n1"))
        });
        each_spelling(&["c", "config"], "x.conf", |c| {
            assert_eq!(c.config, Some(PathBuf::from("x.conf")))
        });
        each_spelling(&["sd", "store_dir"], "/d", |c| {
            assert_eq!(c.store_dir, Some(PathBuf::from("/d")))
        });
        each_spelling(&["user"], "u", |c| assert_eq!(c.user.as_deref(), Some("u")));
        each_spelling(&["pass"], "p", |c| assert_eq!(c.pass.as_deref(), Some("p")));
        each_spelling(&["auth"], "tok", |c| {
            assert_eq!(c.auth.as_deref(), Some("tok"))
        });
        each_spelling(&["l", "log"], "/l.log", |c| {
            assert_eq!(c.log_file, Some(PathBuf::from("/l.log")))
        });
        each_spelling(&["P", "pid"], "/p.pid", |c| {
            assert_eq!(c.pid_file, Some(PathBuf::from("/p.pid")))
        });
        each_spelling(&["ports_file_dir"], "/tmp", |c| {
            assert_eq!(c.ports_file_dir, Some(PathBuf::from("/tmp")))
        });
        each_spelling(&["sl", "signal"], "ldm=1234", |c| {
            assert_eq!(c.signal.as_deref(), Some("ldm=1234"))
        });
    }

    #[test]
    fn port_flags_in_every_spelling() {
        for value in ["4222", "-1", "0"] {
            let want: i32 = value.parse().expect("int");
            each_spelling(&["p", "port"], value, |c| assert_eq!(c.port, Some(want)));
            each_spelling(&["m", "http_port"], value, |c| {
                assert_eq!(c.http_port, Some(want))
            });
        }
    }

    #[test]
    fn minus_one_is_a_value_not_a_flag() {
        let cli = ok(&["-p", "-1", "-m", "-1", "-a", "127.0.0.1"]);
        assert_eq!((cli.port, cli.http_port), (Some(-1), Some(-1)));
        // Like Go, a value flag takes the next argument even if it looks like a flag.
        let cli = ok(&["-n", "-D"]);
        assert_eq!(cli.server_name.as_deref(), Some("-D"));
        assert!(!cli.debug);
        assert_eq!(
            err(&["-p", "-t"]).to_string(),
            "invalid value \"-t\" for flag -p: parse error"
        );
    }

    #[test]
    fn go_integer_literals() {
        let port = |v: &str| ok(&["-p", v]).port;
        assert_eq!(port("0x10"), Some(16));
        assert_eq!(port("0X10"), Some(16));
        assert_eq!(port("010"), Some(8));
        assert_eq!(port("0o17"), Some(15));
        assert_eq!(port("0b101"), Some(5));
        assert_eq!(port("1_000"), Some(1000));
        assert_eq!(port("0x_10"), Some(16));
        assert_eq!(port("+5"), Some(5));
        assert_eq!(port("-0"), Some(0));
        for bad in [
            "abc", "", " 5", "5 ", "1__0", "_1", "1_", "0x", "0o", "0b", "-", "08", "1e3", "--1",
            "+-1", "0x1g",
        ] {
            let e = err(&["-p", bad]);
            assert_eq!(
                e,
                CliError::InvalidValue {
                    flag: "p".into(),
                    value: bad.into(),
                    reason: "parse error"
                },
                "{bad:?}"
            );
        }
        assert_eq!(
            err(&["--port", "99999999999"]).to_string(),
            "invalid value \"99999999999\" for flag -port: value out of range"
        );
        assert_eq!(
            err(&["-p", "99999999999999999999999"]).to_string(),
            "invalid value \"99999999999999999999999\" for flag -p: value out of range"
        );
        assert_eq!(parse_go_int("-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(
            parse_go_int("9223372036854775808"),
            Err("value out of range")
        );
    }

    #[test]
    fn bad_values_name_the_flag() {
        assert_eq!(
            err(&["-p", "abc"]).to_string(),
            "invalid value \"abc\" for flag -p: parse error"
        );
        assert_eq!(
            err(&["--http_port=x"]).to_string(),
            "invalid value \"x\" for flag -http_port: parse error"
        );
        assert_eq!(
            err(&["-m", "1.5"]).to_string(),
            "invalid value \"1.5\" for flag -m: parse error"
        );
        assert_eq!(
            err(&["-p="]).to_string(),
            "invalid value \"\" for flag -p: parse error"
        );
        assert_eq!(
            err(&["--connect_retries", "x"]).to_string(),
            "invalid value \"x\" for flag -connect_retries: parse error"
        );
        assert!(err(&["-p", "abc"]).shows_usage());
    }

    #[test]
    fn boolean_flags_in_every_spelling() {
        type BoolCase = (&'static [&'static str], fn(&Cli) -> bool, &'static str);
        let bools: &[BoolCase] = &[
            (&["js", "jetstream"], |c| c.jetstream, "jetstream"),
            (&["D", "debug"], |c| c.debug, "debug"),
            (&["V", "trace"], |c| c.trace, "trace"),
            (&["t"], |c| c.test_config, "test_config"),
            (&["v", "version"], |c| c.version, "version"),
            (&["h", "help"], |c| c.help, "help"),
            (&["help_tls"], |c| c.help_tls, "help_tls"),
            (&["T", "logtime"], |c| c.logtime == Some(true), "logtime"),
        ];
        for (names, get, canonical) in bools {
            for name in *names {
                for dashes in ["-", "--"] {
                    // `-t` alone needs a config file.
                    let extra: &[&str] = if *canonical == "test_config" {
                        &["-c", "x.conf"]
                    } else {
                        &[]
                    };
                    let with = |flag: String| {
                        let mut list = vec![flag];
                        list.extend(extra.iter().map(|s| s.to_string()));
                        list
                    };
                    for (suffix, want) in [
                        ("", true),
                        ("=true", true),
                        ("=1", true),
                        ("=T", true),
                        ("=TRUE", true),
                        ("=True", true),
                        ("=t", true),
                    ] {
                        let cli =
                            parse_args(with(format!("{dashes}{name}{suffix}"))).expect("parse");
                        assert_eq!(get(&cli), want, "{dashes}{name}{suffix}");
                        assert!(cli.is_set(canonical), "{dashes}{name}{suffix}");
                    }
                    for suffix in ["=false", "=0", "=f", "=F", "=FALSE", "=False"] {
                        let cli =
                            parse_args(with(format!("{dashes}{name}{suffix}"))).expect("parse");
                        assert!(!get(&cli), "{dashes}{name}{suffix}");
                        assert!(cli.is_set(canonical), "{dashes}{name}{suffix}");
                    }
                }
            }
        }
        assert_eq!(ok(&["-T=false"]).logtime, Some(false));
        assert_eq!(ok(&[]).logtime, None);
    }

    #[test]
    fn boolean_values_must_be_attached() {
        assert_eq!(
            err(&["-js=yes"]).to_string(),
            "invalid boolean value \"yes\" for -js: parse error"
        );
        assert_eq!(
            err(&["--jetstream="]).to_string(),
            "invalid boolean value \"\" for -jetstream: parse error"
        );
        // `-js false`: `false` is a positional argument.
        assert_eq!(
            err(&["-js", "false"]).to_string(),
            "unrecognized command: \"false\""
        );
        let cli = ok(&["-js=false"]);
        assert!(!cli.jetstream && cli.is_set("jetstream"));
    }

    #[test]
    fn debug_and_trace_shorthands() {
        let dt = |list: &[&str]| {
            let c = ok(list);
            (c.debug, c.trace, c.trace_verbose)
        };
        assert_eq!(dt(&["-D"]), (true, false, false));
        assert_eq!(dt(&["-V"]), (false, true, false));
        assert_eq!(dt(&["-DV"]), (true, true, false));
        assert_eq!(dt(&["--DV"]), (true, true, false));
        assert_eq!(dt(&["-VV"]), (false, true, true));
        assert_eq!(dt(&["-DVV"]), (true, true, true));
        assert_eq!(dt(&["-D", "-V"]), (true, true, false));
        // Fixed precedence D < V < DV < DVV < VV, whatever the order given
        // (observed with nats-server 2.15.1).
        assert_eq!(dt(&["-DV", "-D=false"]), (true, true, false));
        assert_eq!(dt(&["-D=false", "-DV"]), (true, true, false));
        assert_eq!(dt(&["-DV", "-DV=false"]), (false, false, false));
        assert_eq!(dt(&["-VV", "-V=false"]), (false, true, true));
        assert_eq!(dt(&["-DVV", "-DV=false"]), (true, true, true));
        assert_eq!(dt(&["-DVV", "-VV=false"]), (true, false, false));
        assert_eq!(dt(&["-VV", "-DV=false"]), (false, true, true));
        let c = ok(&["-DV=false"]);
        assert!(c.is_set("debug") && c.is_set("trace") && !c.is_set("trace_verbose"));
        let c = ok(&["-D=false"]);
        assert!(c.is_set("debug") && !c.is_set("trace"));
        assert_eq!(
            err(&["-DVX"]).to_string(),
            "flag provided but not defined: -DVX"
        );
        assert_eq!(
            err(&["-VD"]).to_string(),
            "flag provided but not defined: -VD"
        );
    }

    #[test]
    fn unknown_flags_and_bad_syntax() {
        let e = err(&["--bogus"]);
        assert_eq!(e.to_string(), "flag provided but not defined: -bogus");
        assert!(e.shows_usage());
        assert_eq!(
            err(&["-bogus=1"]).to_string(),
            "flag provided but not defined: -bogus"
        );
        assert_eq!(
            err(&["--max_payload", "5"]).to_string(),
            "flag provided but not defined: -max_payload"
        );
        assert_eq!(
            err(&["-x="]).to_string(),
            "flag provided but not defined: -x"
        );
        assert_eq!(
            err(&["---port=5"]).to_string(),
            "bad flag syntax: ---port=5"
        );
        assert_eq!(err(&["-=x"]).to_string(), "bad flag syntax: -=x");
        assert_eq!(err(&["--=x"]).to_string(), "bad flag syntax: --=x");
        assert_eq!(err(&["-p"]).to_string(), "flag needs an argument: -p");
        assert_eq!(
            err(&["-a", "h", "--config"]).to_string(),
            "flag needs an argument: -config"
        );
        assert_eq!(
            err(&["-js", "-sd"]).to_string(),
            "flag needs an argument: -sd"
        );
        // Flag names are case-sensitive.
        assert_eq!(
            err(&["-JS"]).to_string(),
            "flag provided but not defined: -JS"
        );
        assert_eq!(
            err(&["--Port", "1"]).to_string(),
            "flag provided but not defined: -Port"
        );
    }

    #[test]
    fn positional_arguments() {
        assert_eq!(
            err(&["x", "-p", "5"]).to_string(),
            "unrecognized command: \"x\""
        );
        let e = err(&["-c", "x.conf", "-t", "extra"]);
        assert_eq!(e.to_string(), "unrecognized command: \"extra\"");
        assert!(!e.shows_usage());
        assert_eq!(
            err(&["-t", "-c", "x.conf", "-"]).to_string(),
            "unrecognized command: \"-\""
        );
        // `--` ends the flags; what follows is positional.
        assert_eq!(
            err(&["--", "-p", "5"]).to_string(),
            "unrecognized command: \"-p\""
        );
        assert_eq!(ok(&["-p", "5", "--"]).port, Some(5));
        assert!(ok(&["version"]).version);
        assert!(ok(&["-p", "5", "version", "extra"]).version);
        assert!(ok(&["help"]).help);
    }

    #[test]
    fn test_config_needs_a_config_file() {
        let e = err(&["-t"]);
        assert_eq!(
            e.to_string(),
            "must specify [-c, --config] option to check configuration file syntax"
        );
        assert!(!e.shows_usage());
        let cli = ok(&["-t", "-c", "x.conf"]);
        assert!(cli.test_config);
        assert!(ok(&["-t", "-v"]).version);
        assert!(ok(&["-t", "-h"]).help);
        assert!(ok(&["-t=false"]).is_set("test_config"));
    }

    #[test]
    fn last_value_wins() {
        let cli = ok(&["-p", "1", "--port=2", "-a", "x", "--net", "y"]);
        assert_eq!((cli.port, cli.addr.as_deref()), (Some(2), Some("y")));
        assert_eq!(cli.set_flags, ["port", "addr"]);
        assert!(!ok(&["-js", "-js=false"]).jetstream);
    }

    #[test]
    fn unsupported_flags_are_collected() {
        let cli = ok(&[
            "-ms",
            "8443",
            "--cluster",
            "nats://x:6222",
            "--routes=a,b",
            "-s",
            "-r",
            "udp://x:514",
            "--no_advertise=false",
            "--profile",
            "6060",
            "--logtime_utc",
            "--client_advertise",
            "h:1",
            "--log_size_limit",
            "100",
            "--max_traced_msg_len",
            "10",
            "--cluster_name",
            "c",
            "--cluster_advertise",
            "a",
            "--connect_retries",
            "3",
            "--cluster_listen",
            "l",
            "-p",
            "1",
        ]);
        let names: Vec<&str> = cli.unsupported.iter().map(|u| u.name).collect();
        assert_eq!(
            names,
            [
                "https_port",
                "cluster",
                "routes",
                "syslog",
                "remote_syslog",
                "no_advertise",
                "profile",
                "logtime_utc",
                "client_advertise",
                "log_size_limit",
                "max_traced_msg_len",
                "cluster_name",
                "cluster_advertise",
                "connect_retries",
                "cluster_listen",
            ]
        );
        assert_eq!(cli.unsupported[0].value, "8443");
        assert_eq!(cli.unsupported[3].value, "true");
        assert_eq!(cli.unsupported[5].value, "false");
        assert_eq!(cli.port, Some(1));
        assert_eq!(
            err(&["-ms", "x"]).to_string(),
            "invalid value \"x\" for flag -ms: parse error"
        );
        assert_eq!(
            err(&["--log_size_limit", "1MB"]).to_string(),
            "invalid value \"1MB\" for flag -log_size_limit: parse error"
        );
    }

    #[test]
    fn tls_flags() {
        let cli = ok(&[
            "--tlsverify",
            "--tlscert",
            "c.pem",
            "-tlskey=k.pem",
            "--tlscacert",
            "ca.pem",
        ]);
        assert!(cli.tls_verify && !cli.tls);
        assert_eq!(cli.tls_cert.as_deref(), Some(std::path::Path::new("c.pem")));
        assert_eq!(cli.tls_key.as_deref(), Some(std::path::Path::new("k.pem")));
        assert_eq!(
            cli.tls_ca_cert.as_deref(),
            Some(std::path::Path::new("ca.pem"))
        );
        assert_eq!(
            cli.set_flags,
            ["tls_verify", "tls_cert", "tls_key", "tls_ca_cert"]
        );
        assert!(cli.unsupported.is_empty());
        let cli = ok(&["--tls=false"]);
        assert!(!cli.tls && cli.is_set("tls"));
    }

    #[test]
    fn signals() {
        let s = |v: &str| parse_signal(v);
        assert_eq!(
            s("ldm=1234"),
            Ok(SignalRequest {
                command: SignalCommand::Ldm,
                pid: Some("1234".into())
            })
        );
        assert_eq!(
            s("stop"),
            Ok(SignalRequest {
                command: SignalCommand::Stop,
                pid: None
            })
        );
        assert_eq!(
            s("quit=/var/run/nats.pid").map(|r| r.pid),
            Ok(Some("/var/run/nats.pid".into()))
        );
        assert_eq!(s("term=1").map(|r| r.command), Ok(SignalCommand::Term));
        assert_eq!(s("reopen=1").map(|r| r.command), Ok(SignalCommand::Reopen));
        assert_eq!(s("reload=1").map(|r| r.command), Ok(SignalCommand::Reload));
        assert_eq!(
            s("LDM=1").map_err(|e| e.to_string()),
            Err("unknown signal \"LDM\"".to_string())
        );
        assert_eq!(
            s("").map_err(|e| e.to_string()),
            Err("unknown signal \"\"".to_string())
        );
        assert_eq!(
            s("ldm=1=2").map_err(|e| e.to_string()),
            Err("invalid signal parameters: [2]".to_string())
        );
        assert_eq!(ok(&["-sl=ldm=42"]).signal.as_deref(), Some("ldm=42"));
        assert_eq!(
            ok(&["--signal", "reload"]).signal.as_deref(),
            Some("reload")
        );
    }

    #[test]
    fn usage_lists_the_supported_flags() {
        let text = usage();
        for flag in [
            "--addr",
            "--net",
            "--port",
            "--name",
            "--server_name",
            "--pid",
            "--http_port",
            "--config",
            "-t ",
            "--signal",
            "--ports_file_dir",
            "--log",
            "--logtime",
            "--debug",
            "--trace",
            "-VV",
            "-DV ",
            "-DVV",
            "--jetstream",
            "--store_dir",
            "--user",
            "--pass",
            "--auth",
            "--help",
            "--version",
        ] {
            assert!(text.contains(flag), "{flag}");
        }
    }

    #[test]
    fn a_realistic_command_line() {
        let cli = ok(&[
            "-c",
            "/etc/nats.conf",
            "-a",
            "127.0.0.1",
            "-p",
            "-1",
            "-m",
            "8222",
            "-js",
            "-sd",
            "/data",
            "-DV",
            "-n",
            "hub",
            "--user",
            "u",
            "--pass",
            "p",
            "-l",
            "/var/log/nats.log",
            "-P",
            "/run/nats.pid",
            "--ports_file_dir",
            "/run",
        ]);
        assert_eq!(cli.config, Some(PathBuf::from("/etc/nats.conf")));
        assert_eq!(cli.addr.as_deref(), Some("127.0.0.1"));
        assert_eq!((cli.port, cli.http_port), (Some(-1), Some(8222)));
        assert!(cli.jetstream && cli.debug && cli.trace && !cli.trace_verbose);
        assert_eq!(cli.store_dir, Some(PathBuf::from("/data")));
        assert_eq!(cli.server_name.as_deref(), Some("hub"));
        assert_eq!(
            (cli.user.as_deref(), cli.pass.as_deref()),
            (Some("u"), Some("p"))
        );
        assert_eq!(cli.log_file, Some(PathBuf::from("/var/log/nats.log")));
        assert_eq!(cli.pid_file, Some(PathBuf::from("/run/nats.pid")));
        assert_eq!(cli.ports_file_dir, Some(PathBuf::from("/run")));
        assert!(cli.unsupported.is_empty());
    }
}
