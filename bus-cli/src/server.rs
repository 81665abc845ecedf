//! `angzarr-bus server`: the bundled server in the foreground, in this process.
//!
//! Chosen over exec'ing `angzarr-nats-server` so the tool works on its own
//! (one binary to install). Flags are parsed by the bundled server's own
//! nats-server flag parser (`bus_embedded_server::cli`), so `-p 4222`,
//! `--port=4222`, `-js`, `-sd DIR`, `-DV` mean what they mean to nats-server.
//! Supported: `-a/--addr`, `-p/--port`, `-n/--name`, `-m/--http_port`,
//! `-js/--jetstream`, `-sd/--store_dir`, `--user`/`--pass`, `--auth`,
//! `--tls`/`--tlscert`/`--tlskey`/`--tlsverify`/`--tlscacert`, `-D`, `-V`;
//! they are merged by `bus_embedded_server::options`, the same code as
//! `angzarr-nats-server`'s. A configuration file, log/pid/ports files, signals and flags the
//! bundled server does not implement are refused with a pointer to
//! `angzarr-nats-server`, which supports the file format and those options.
//!
//! Differences from nats-server's defaults, because the bus needs them:
//! JetStream is on unless `-js=false`, and it stores under `./data` (the
//! `[bus.embedded] data_dir` default) unless `-sd` says otherwise.

use std::path::PathBuf;
use std::time::Duration;

use bus_embedded_server::cli::{self, Cli};
use bus_embedded_server::options;
use bus_embedded_server::{Auth, JetStreamConfig, ServerConfig, VERSION};

use crate::commands::out;
use crate::error::{CliError, CliResult};

fn refuse(what: &str) -> CliError {
    CliError::msg(format!(
        "`angzarr-bus server` does not support {what}: run `angzarr-nats-server` (same flags, \
         plus configuration files) instead"
    ))
}

/// What `angzarr-bus server` adds to the nats-server usage text.
const NOTE: &str = "angzarr-bus server: runs the bundled server in this process. Supported flags: \
-a/--addr, -p/--port, -n/--name, -m/--http_port, -js/--jetstream (on by default), \
-sd/--store_dir (default ./data), --user/--pass, --auth, --tls/--tlscert/--tlskey/--tlsverify/--tlscacert, -D, -V. \
For configuration files and the other flags use angzarr-nats-server.";

/// Turns parsed nats-server flags into a server configuration.
pub fn build(cli: &Cli) -> CliResult<ServerConfig> {
    if let Some(flag) = cli.unsupported.first() {
        return Err(refuse(&format!("-{}", flag.name)));
    }
    if cli.config.is_some() || cli.test_config {
        return Err(refuse("configuration files (-c)"));
    }
    if cli.log_file.is_some() {
        return Err(refuse("log files (-l); redirect stderr instead"));
    }
    if cli.pid_file.is_some() || cli.ports_file_dir.is_some() {
        return Err(refuse("pid and ports files"));
    }
    if cli.signal.is_some() {
        return Err(refuse("signals (-sl); stop it with Ctrl-C or SIGTERM"));
    }
    // JetStream is on by default here (the bus needs it), under ./data;
    // `-js=false` turns it off and `-sd` moves it, through the same merge
    // as angzarr-nats-server's.
    let defaults = ServerConfig {
        jetstream: Some(JetStreamConfig {
            store_dir: PathBuf::from("./data"),
            ..JetStreamConfig::default()
        }),
        ..ServerConfig::default()
    };
    let options = options::from_cli(cli, defaults).map_err(|e| CliError::msg(e.to_string()))?;
    Ok(options.config)
}

fn log(level: &str, text: &str) {
    eprintln!(
        "[{}] {} [{level}] {text}",
        std::process::id(),
        humantime::format_rfc3339_millis(std::time::SystemTime::now())
    );
}

/// Runs the server until Ctrl-C or SIGTERM.
pub async fn run(args: Vec<String>) -> CliResult {
    let cli = match cli::parse_args(args) {
        Ok(c) => c,
        Err(e) => {
            return Err(CliError::msg(format!(
                "{e}: see `angzarr-bus server --help` for the flags"
            )));
        }
    };
    if cli.help || cli.help_tls {
        return out(&format!("{}\n\n{NOTE}\n", cli::usage()));
    }
    if cli.version {
        return out(&format!(
            "angzarr-bus {} (bundled NATS server, nats-server v{VERSION} protocol)\n",
            env!("CARGO_PKG_VERSION")
        ));
    }
    let config = build(&cli)?;
    let level = if config.trace {
        "trace"
    } else if config.debug {
        "debug"
    } else {
        "warn"
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
            "bus_embedded_server={level}"
        )))
        .with_target(false)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .try_init();
    log(
        "INF",
        &format!("Starting angzarr-bus server (bundled NATS server {VERSION})"),
    );
    if config.auth.as_ref().is_some_and(Auth::has_plain_secrets) {
        log("WRN", "Plaintext passwords detected, use bcrypt hashes");
    }
    if let Some(js) = &config.jetstream {
        std::fs::create_dir_all(&js.store_dir).map_err(|e| {
            CliError::msg(format!(
                "cannot create the JetStream store directory {} ({e}): pass a writable one with -sd DIR",
                js.store_dir.display()
            ))
        })?;
        log("INF", "Starting JetStream");
        log(
            "INF",
            &format!(
                "  Store directory: {:?}",
                js.store_dir.display().to_string()
            ),
        );
    } else {
        log(
            "WRN",
            "JetStream is off (-js=false): the bus can only publish and tail",
        );
    }
    let host = config.host.clone();
    let port_asked = config.port;
    let server = bus_embedded_server::start(config).await.map_err(|e| {
        CliError::msg(format!(
            "cannot start the server ({e}): if another server already listens on port {port_asked}, \
             stop it or pass -p PORT (-p -1 picks a free port); if it is the store, pass another -sd DIR"
        ))
    })?;
    if let Some(m) = server.monitor_port() {
        log("INF", &format!("Starting http monitor on {host}:{m}"));
    }
    if let Some(url) = server.websocket_url() {
        log("INF", &format!("Listening for websocket clients on {url}"));
        if url.starts_with("ws:") {
            log(
                "WRN",
                "Websocket not configured with TLS. DO NOT USE IN PRODUCTION!",
            );
        }
    }
    log(
        "INF",
        &format!("Listening for client connections on {}", server.addr()),
    );
    log(
        "INF",
        &format!("Server is ready: clients use --url {}", server.client_url()),
    );
    wait_for_stop().await;
    log("INF", "Initiating Shutdown...");
    server.shutdown(Duration::from_secs(5)).await;
    log("INF", "Server Exiting..");
    Ok(())
}

async fn wait_for_stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        cli::parse_args(args.iter().map(|s| (*s).to_owned())).unwrap()
    }

    #[test]
    fn nats_server_flags_map_to_the_configuration() {
        let c = build(&parse(&[
            "-a", "0.0.0.0", "-p", "4333", "-m", "8333", "-sd", "/tmp/s",
        ]))
        .unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.http_port),
            ("0.0.0.0", 4333, Some(8333))
        );
        let js = c.jetstream.unwrap();
        assert_eq!(js.store_dir, PathBuf::from("/tmp/s"));
    }

    #[test]
    fn jetstream_is_on_by_default_and_can_be_turned_off() {
        let c = build(&parse(&[])).unwrap();
        assert_eq!(c.jetstream.unwrap().store_dir, PathBuf::from("./data"));
        assert!(build(&parse(&["-js=false"])).unwrap().jetstream.is_none());
        assert_eq!(build(&parse(&["-p", "-1"])).unwrap().port, 0);
    }

    #[test]
    fn auth_flags_and_refusals() {
        let c = build(&parse(&["--user", "u", "--pass", "p"])).unwrap();
        assert!(matches!(c.auth, Some(Auth::Users(ref u)) if u[0].name == "u"));
        assert!(build(&parse(&["--user", "u"])).is_err());
        let Err(CliError::Message(m)) = build(&parse(&["-c", "nats.conf"])) else {
            panic!("accepted a configuration file")
        };
        assert!(m.contains("angzarr-nats-server"), "{m}");
    }
}
