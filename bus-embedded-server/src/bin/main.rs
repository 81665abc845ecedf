//! `angzarr-nats-server`: the bundled server as a standalone binary that
//! takes nats-server's flags and configuration file, and logs the lines test
//! harnesses wait for ("Listening for client connections on", "Server is
//! ready").

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use bus_embedded_server::cli::{self, Cli, SignalCommand};
use bus_embedded_server::conf;
use bus_embedded_server::jetstream::{JetStreamConfig, SyncPolicy};
use bus_embedded_server::{Auth, ServerConfig, TlsConfig, User, VERSION, start};

/// A logger writing nats-server's line format to stderr or the log file.
struct Log {
    file: Option<std::fs::File>,
    debug: bool,
}

impl Log {
    fn line(&mut self, level: &str, text: &str) {
        if level == "DBG" && !self.debug {
            return;
        }
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let line = format!(
            "[{}] {} [{level}] {text}\n",
            std::process::id(),
            timestamp(now)
        );
        match &mut self.file {
            Some(f) => {
                let _ = f.write_all(line.as_bytes());
            }
            None => eprint!("{line}"),
        }
    }
}

fn timestamp(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}/{m:02}/{d:02} {:02}:{:02}:{:02}.{:06}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        since_epoch.subsec_micros()
    )
}

fn fail(text: &str) -> ExitCode {
    eprintln!("nats-server: {text}");
    ExitCode::from(1)
}

fn port(value: i32, what: &str) -> Result<u16, String> {
    match value {
        -1 | 0 => Ok(0),
        p if (1..=65535).contains(&p) => Ok(p as u16),
        p => Err(format!("invalid {what} {p}")),
    }
}

/// What the command line and configuration file ask for.
struct Settings {
    config: ServerConfig,
    warnings: Vec<String>,
    log_file: Option<PathBuf>,
    pid_file: Option<PathBuf>,
    ports_dir: Option<PathBuf>,
}

/// Reads the `authorization {}` block (token, users with passwords or
/// nkeys, permissions, timeout: see [`bus_embedded_server::auth`]); keys
/// this server cannot enforce stop the start, named with their line.
fn authorization(
    block: &conf::Located,
    path: &Path,
) -> Result<(Option<Auth>, Option<Duration>), String> {
    bus_embedded_server::auth::authorization_from_conf(block)
        .map_err(|e| format!("{}: authorization: {e}", path.display()))
}

/// The configuration file's `tls { }` block (nats-server's messages for a
/// missing certificate or key).
fn tls_from_file(t: &conf::TlsConf, path: &Path) -> Result<TlsConfig, String> {
    let missing = |what: &str| format!("{}: missing '{what}' in TLS configuration", path.display());
    let cert = t.cert_file.clone().ok_or_else(|| missing("cert_file"))?;
    let key = t.key_file.clone().ok_or_else(|| missing("key_file"))?;
    let mut tls = TlsConfig::new(cert, key);
    tls.ca_file.clone_from(&t.ca_file);
    tls.verify = t.verify;
    tls.handshake_first = t.handshake_first;
    if let Some(timeout) = t.timeout {
        tls.timeout = timeout;
    }
    Ok(tls)
}

/// Any `--tls*` flag replaces the file's TLS settings (as in nats-server,
/// which keeps the file's timeout and handshake_first).
fn tls_from_flags(cli: &Cli, file: Option<&TlsConfig>) -> Result<Option<TlsConfig>, String> {
    let given = ["tls", "tls_cert", "tls_key", "tls_verify", "tls_ca_cert"]
        .iter()
        .any(|f| cli.is_set(f));
    if !given {
        return Ok(file.cloned());
    }
    let cert = cli
        .tls_cert
        .clone()
        .ok_or("TLS Server certificate must be present and valid")?;
    let key = cli
        .tls_key
        .clone()
        .ok_or("TLS Server private key must be present and valid")?;
    let mut tls = TlsConfig::new(cert, key);
    tls.ca_file.clone_from(&cli.tls_ca_cert);
    tls.verify = cli.tls_verify;
    if let Some(f) = file {
        tls.timeout = f.timeout;
        tls.handshake_first = f.handshake_first;
    }
    Ok(Some(tls))
}

/// Flags over the configuration file over defaults.
fn build(cli: &Cli) -> Result<Settings, String> {
    let mut config = ServerConfig::default();
    let mut warnings = Vec::new();
    let mut log_file = None;
    let mut pid_file = None;
    let mut ports_dir = None;
    if let Some(path) = &cli.config {
        let root = conf::parse_file(path).map_err(|e| e.to_string())?;
        let (c, warns) = conf::server_conf(&root).map_err(|e| e.to_string())?;
        for w in warns {
            warnings.push(format!(
                "{}:{}: {} ({})",
                path.display(),
                w.line,
                w.key,
                w.message
            ));
        }
        if let Some(h) = c.host {
            config.host = h;
        }
        if let Some(p) = c.port {
            config.port = port(p, "port")?;
        }
        if let Some(n) = c.server_name {
            config.server_name = n;
        }
        if let Some(p) = c.http_port {
            config.http_port = Some(port(p, "http port")?);
        }
        if let Some(v) = c.max_payload {
            config.max_payload = v as usize;
        }
        if let Some(v) = c.max_connections {
            config.max_connections = v as usize;
        }
        if let Some(v) = c.max_control_line {
            config.max_control_line = v as usize;
        }
        if let Some(v) = c.max_pending {
            config.max_pending = v as usize;
        }
        if let Some(v) = c.write_deadline {
            config.write_deadline = v;
        }
        if let Some(v) = c.ping_interval {
            config.ping_interval = v;
        }
        if let Some(v) = c.ping_max {
            config.ping_max = v;
        }
        config.debug = c.debug.unwrap_or(false);
        config.trace = c.trace.unwrap_or(false);
        log_file = c.log_file;
        pid_file = c.pid_file;
        ports_dir = c.ports_file_dir;
        if let Some(j) = c.jetstream.as_ref().filter(|j| j.enabled) {
            let mut js = JetStreamConfig::default();
            if let Some(d) = &j.store_dir {
                js.store_dir.clone_from(d);
            }
            if let Some(m) = j.max_memory_store {
                js.max_memory = i64::try_from(m).unwrap_or(i64::MAX);
            }
            if let Some(m) = j.max_file_store {
                js.max_store = i64::try_from(m).unwrap_or(i64::MAX);
            }
            js.sync = match j.sync_interval {
                Some(conf::SyncInterval::Every(d)) => SyncPolicy::Interval(d),
                _ => SyncPolicy::Always,
            };
            config.jetstream = Some(js);
        }
        if let Some(t) = &c.tls {
            config.tls = Some(tls_from_file(t, path)?);
        }
        if let Some(block) = &c.authorization {
            let (auth, timeout) = authorization(block, path)?;
            config.auth = auth;
            if let Some(t) = timeout {
                config.auth_timeout = t;
            }
        }
        if let Some(block) = &c.accounts {
            let at = |e: String| format!("{}: accounts: {e}", path.display());
            let accounts = bus_embedded_server::account::accounts_from_conf(block).map_err(at)?;
            config.auth = bus_embedded_server::account::merge_users(config.auth.take(), &accounts)
                .map_err(at)?;
            config.accounts = accounts;
        }
    }
    if cli.is_set("debug") {
        config.debug = cli.debug;
    }
    if cli.is_set("trace") {
        config.trace = cli.trace;
    }
    if let Some(a) = &cli.addr {
        config.host.clone_from(a);
    }
    if let Some(p) = cli.port {
        config.port = port(p, "port")?;
    }
    if let Some(n) = &cli.server_name {
        config.server_name.clone_from(n);
    }
    if let Some(p) = cli.http_port {
        config.http_port = Some(port(p, "http port")?);
    }
    if cli.log_file.is_some() {
        log_file.clone_from(&cli.log_file);
    }
    if cli.pid_file.is_some() {
        pid_file.clone_from(&cli.pid_file);
    }
    if cli.ports_file_dir.is_some() {
        ports_dir.clone_from(&cli.ports_file_dir);
    }
    if cli.is_set("jetstream") {
        if cli.jetstream {
            config
                .jetstream
                .get_or_insert_with(JetStreamConfig::default);
        } else {
            config.jetstream = None;
        }
    }
    if let Some(dir) = &cli.store_dir
        && let Some(js) = config.jetstream.as_mut()
    {
        js.store_dir.clone_from(dir);
    }
    match (&cli.user, &cli.pass, &cli.auth) {
        (Some(user), Some(pass), None) => {
            config.auth = Some(Auth::Users(vec![User {
                name: user.clone(),
                password: pass.clone(),
            }]));
        }
        (None, None, Some(token)) => config.auth = Some(Auth::Token(token.clone())),
        (None, None, None) => {}
        _ => {
            return Err("use either --user with --pass, or --auth (a token)".to_owned());
        }
    }
    config.tls = tls_from_flags(cli, config.tls.as_ref())?;
    for flag in &cli.unsupported {
        warnings.push(format!(
            "flag -{} is not supported by this server and is ignored",
            flag.name
        ));
    }
    Ok(Settings {
        config,
        warnings,
        log_file,
        pid_file,
        ports_dir,
    })
}

fn send_signal(request: &str) -> ExitCode {
    let parsed = match cli::parse_signal(request) {
        Ok(r) => r,
        Err(e) => return fail(&e.to_string()),
    };
    let signal = match parsed.command {
        SignalCommand::Ldm => "USR2",
        SignalCommand::Stop | SignalCommand::Term => "TERM",
        SignalCommand::Quit => "INT",
        SignalCommand::Reopen => "USR1",
        SignalCommand::Reload => "HUP",
    };
    let Some(pid) = parsed.pid else {
        return fail("--signal needs a pid: --signal <command>=<pid>");
    };
    let pid = if Path::new(&pid).is_file() {
        std::fs::read_to_string(&pid)
            .unwrap_or_default()
            .trim()
            .to_owned()
    } else {
        pid
    };
    if pid.parse::<u32>().is_err() {
        return fail(&format!("invalid pid {pid:?}"));
    }
    match std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(&pid)
        .status()
    {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        _ => fail(&format!("could not signal process {pid}")),
    }
}

fn main() -> ExitCode {
    let cli = match cli::parse_args(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            if e.shows_usage() {
                eprintln!("{}", cli::usage());
            }
            return ExitCode::from(1);
        }
    };
    if cli.help || cli.help_tls {
        println!("{}", cli::usage());
        return ExitCode::SUCCESS;
    }
    if cli.version {
        println!(
            "nats-server: v{VERSION} (angzarr-nats-server {})",
            env!("CARGO_PKG_VERSION")
        );
        return ExitCode::SUCCESS;
    }
    if let Some(signal) = &cli.signal {
        return send_signal(signal);
    }
    let Settings {
        config,
        warnings,
        log_file,
        pid_file,
        ports_dir,
    } = match build(&cli) {
        Ok(b) => b,
        Err(e) => return fail(&e),
    };
    if cli.test_config {
        for w in &warnings {
            eprintln!("warning: {w}");
        }
        let path = cli
            .config
            .as_deref()
            .map(Path::display)
            .map(|d| d.to_string())
            .unwrap_or_default();
        println!("nats-server: configuration file {path} test is successful");
        return ExitCode::SUCCESS;
    }
    let file = match &log_file {
        Some(p) => match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
        {
            Ok(f) => Some(f),
            Err(e) => return fail(&format!("cannot open log file {}: {e}", p.display())),
        },
        None => None,
    };
    let mut log = Log {
        file,
        debug: config.debug || config.trace,
    };
    {
        // The server's own events (slow consumers at warn; with -D / -V
        // also connection and protocol traces), to the same place.
        let level = if config.trace {
            "trace"
        } else if config.debug {
            "debug"
        } else {
            "warn"
        };
        let filter = tracing_subscriber::EnvFilter::new(format!("bus_embedded_server={level}"));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_target(false)
            .with_ansi(false);
        let _ = match log_file.clone() {
            Some(path) => builder
                .with_writer(move || -> Box<dyn std::io::Write> {
                    match std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                    {
                        Ok(f) => Box::new(f),
                        Err(_) => Box::new(std::io::stderr()),
                    }
                })
                .try_init(),
            None => builder.with_writer(std::io::stderr).try_init(),
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(run(config, warnings, pid_file, ports_dir, &mut log))
}

async fn run(
    config: ServerConfig,
    warnings: Vec<String>,
    pid_file: Option<PathBuf>,
    ports_dir: Option<PathBuf>,
    log: &mut Log,
) -> ExitCode {
    log.line("INF", "Starting nats-server");
    log.line(
        "INF",
        &format!(
            "  Version:  {VERSION} (angzarr-nats-server {})",
            env!("CARGO_PKG_VERSION")
        ),
    );
    log.line("INF", "  Git:      [not set]");
    if config.auth.as_ref().is_some_and(Auth::has_plain_secrets) {
        log.line("WRN", "Plaintext passwords detected, use nkeys or bcrypt");
    }
    for w in &warnings {
        log.line("WRN", w);
    }
    let js_settings = config.jetstream.clone();
    let tls_settings = config.tls.clone();
    let server = match start(config).await {
        Ok(s) => s,
        Err(e) => {
            log.line("ERR", &e.to_string());
            return ExitCode::from(1);
        }
    };
    log.line("INF", &format!("  Name:     {}", server.server_id()));
    log.line("INF", &format!("  ID:       {}", server.server_id()));
    if let Some(js) = &js_settings {
        log.line("INF", "Starting JetStream");
        log.line(
            "INF",
            &format!("  Store Directory: \"{}\"", js.store_dir.display()),
        );
        match js.sync {
            SyncPolicy::Always => log.line(
                "INF",
                "  Sync: always (a publish is acknowledged only after fsync; group commit)",
            ),
            SyncPolicy::Interval(d) => log.line(
                "WRN",
                &format!(
                    "  Sync: every {d:?}: a power loss can lose up to {d:?} of acknowledged messages"
                ),
            ),
        }
    }
    if let Some(p) = server.monitor_port() {
        log.line(
            "INF",
            &format!("Starting http monitor on {}:{p}", server.addr().ip()),
        );
    }
    log.line(
        "INF",
        &format!("Listening for client connections on {}", server.addr()),
    );
    if let Some(tls) = &tls_settings {
        log.line("INF", "TLS required for client connections");
        if tls.handshake_first {
            log.line(
                "WRN",
                "Clients that are not using \"TLS Handshake First\" option will fail to connect",
            );
        }
    }
    if let Some(path) = &pid_file {
        if let Err(e) = std::fs::write(path, std::process::id().to_string()) {
            log.line(
                "ERR",
                &format!("cannot write pid file {}: {e}", path.display()),
            );
        }
    }
    if let Some(dir) = &ports_dir {
        let exe = std::env::args()
            .next()
            .and_then(|a| {
                Path::new(&a)
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "nats-server".to_owned());
        let monitoring: Vec<String> = server
            .monitor_port()
            .map(|p| format!("http://{}:{p}", server.addr().ip()))
            .into_iter()
            .collect();
        let ports = serde_json::json!({ "nats": [server.client_url()], "monitoring": monitoring });
        let path = dir.join(format!("{exe}_{}.ports", std::process::id()));
        if let Err(e) = std::fs::write(&path, ports.to_string()) {
            log.line(
                "ERR",
                &format!("cannot write ports file {}: {e}", path.display()),
            );
        }
    }
    log.line("INF", "Server is ready");
    let outcome = wait_for_signal().await;
    match outcome {
        Stop::LameDuck => {
            log.line("INF", "Entering lame duck mode, stop accepting new clients");
            server.lame_duck(Duration::from_secs(30)).await;
        }
        Stop::Now => {
            log.line("INF", "Initiating Shutdown...");
            server.shutdown(Duration::from_secs(10)).await;
        }
    }
    if let Some(path) = &pid_file {
        let _ = std::fs::remove_file(path);
    }
    log.line("INF", "Server Exiting..");
    ExitCode::SUCCESS
}

enum Stop {
    Now,
    LameDuck,
}

#[cfg(unix)]
async fn wait_for_signal() -> Stop {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut usr2)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined2()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return Stop::Now;
    };
    tokio::select! {
        _ = term.recv() => Stop::Now,
        _ = int.recv() => Stop::Now,
        _ = usr2.recv() => Stop::LameDuck,
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> Stop {
    let _ = tokio::signal::ctrl_c().await;
    Stop::Now
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build_with(config: &str) -> Result<Settings, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("server.conf");
        std::fs::write(&path, config).expect("write config");
        let args = ["-c".to_owned(), path.display().to_string()];
        let cli = cli::parse_args(args).expect("flags");
        build(&cli).map_err(|e| e.replace(&path.display().to_string(), "server.conf"))
    }

    #[test]
    fn permissions_and_nkeys_in_the_config_file_are_accepted() {
        let settings = build_with(
            "port: 4333\nauthorization {\n  users: [\n    { nkey: UCI2RKP4HOQDGOEJCOF2UEPQBRNSIZNBENTP6UCIYX3NFTUTYZX2APGJ }\n    { user: a, password: b, permissions: { publish: \"a.>\", subscribe: { allow: [\"a.*\"], deny: \"a.x\" }, allow_responses: true } }\n  ]\n}\n",
        )
        .expect("accepted");
        let auth = settings.config.auth.expect("auth");
        assert!(auth.needs_nonce());
        let Auth::Identities(ids) = auth else {
            panic!("identities expected");
        };
        assert_eq!(ids.len(), 2);
        assert!(ids[1].permissions.is_some());
    }

    #[test]
    fn accounts_in_the_config_file_give_users_their_account() {
        let settings = build_with(
            "accounts {\n  A: { users: [ {user: a, password: a} ], jetstream: enabled }\n  B: { users: [ {user: b, password: b} ] }\n}\n",
        )
        .expect("accepted");
        let names: Vec<&str> = settings
            .config
            .accounts
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        assert_eq!(names, ["A", "B"]);
        assert!(settings.warnings.iter().all(|w| !w.contains("accounts")));
        let Some(Auth::Identities(ids)) = &settings.config.auth else {
            panic!("identities expected");
        };
        let accounts: Vec<Option<&str>> = ids.iter().map(|i| i.account.as_deref()).collect();
        assert_eq!(accounts, [Some("A"), Some("B")]);
    }

    #[test]
    fn bad_account_values_in_the_config_file_are_named_with_key_and_line() {
        let err = build_with("port: 4333\naccounts {\n  A: {\n    jetstream: maybe\n  }\n}\n")
            .err()
            .expect("refused");
        assert_eq!(
            err,
            "server.conf: accounts: line 4: jetstream: Expected 'enabled' or 'disabled' for string value, got 'maybe'"
        );
        let err = build_with("accounts {\n  A: { users: [ {user: a, password: a} ] }\n  B: { users: [ {user: a, password: b} ] }\n}\n")
            .err()
            .expect("refused");
        assert_eq!(err, "server.conf: accounts: Duplicate user \"a\" detected");
    }

    #[test]
    fn unsupported_authorization_keys_still_refuse_to_start() {
        let err = build_with(
            "authorization {\n  users: [\n    { user: a, password: b, account: A }\n  ]\n}\n",
        )
        .err()
        .expect("refused");
        assert_eq!(
            err,
            "server.conf: authorization: line 3: users: account is not supported yet by this server; refusing to start"
        );
        let err = build_with("authorization {\n  token: t\n  auth_callout { issuer: x }\n}\n")
            .err()
            .expect("refused");
        assert_eq!(
            err,
            "server.conf: authorization: line 3: auth_callout is not supported yet by this server; refusing to start"
        );
    }

    #[test]
    fn bad_permission_values_are_named_with_key_and_line() {
        let err = build_with(
            "authorization {\n  users: [\n    { user: a, password: b, permissions: {\n      publish: 7\n    } }\n  ]\n}\n",
        )
        .err()
        .expect("refused");
        assert_eq!(
            err,
            "server.conf: authorization: line 4: publish: Expected subject permissions to be a subject, or array of subjects, got integer"
        );
    }
}
