//! `angzarr-nats-server`: the bundled server as a standalone binary that
//! takes nats-server's flags and configuration file, and logs the lines test
//! harnesses wait for ("Listening for client connections on", "Server is
//! ready").

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use bus_embedded_server::cli::{self, SignalCommand};
use bus_embedded_server::options::{self, Options};
use bus_embedded_server::{Auth, ServerConfig, SyncPolicy, VERSION, start};

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
    bus_embedded_server::memory::return_freed_memory_to_the_os();
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
    let Options {
        config,
        warnings,
        log_file,
        pid_file,
        ports_file_dir: ports_dir,
    } = match options::from_cli(&cli, ServerConfig::default()) {
        Ok(o) => o,
        Err(e) => return fail(&e.to_string()),
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
    if let Some(url) = server.websocket_url() {
        log.line("INF", &format!("Listening for websocket clients on {url}"));
        if url.starts_with("ws:") {
            log.line(
                "WRN",
                "Websocket not configured with TLS. DO NOT USE IN PRODUCTION!",
            );
        }
    }
    log.line(
        "INF",
        &format!("Listening for client connections on {}", server.addr()),
    );
    if let Some(tls) = &tls_settings {
        log.line("INF", "TLS required for client connections");
        if tls.handshake_first && tls.handshake_first_fallback.is_none() {
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
