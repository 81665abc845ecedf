//! `console`: the operator console (crate `bus-console`) for the server this
//! tool connects to, served from this process.

use std::net::SocketAddr;
use std::sync::Arc;

use bus::Bus;

use crate::args::ConsoleArgs;
use crate::connect::{Resolved, jetstream};
use crate::error::{CliError, CliResult};

/// Serves the console until Ctrl-C or SIGTERM.
pub async fn run(bus: Arc<dyn Bus>, resolved: &Resolved, args: ConsoleArgs) -> CliResult {
    let Some(js) = jetstream(resolved).await? else {
        return Err(CliError::msg(
            "the console needs a NATS server with JetStream (--url or a bus configuration with backend = \"nats\")",
        ));
    };
    let addr: SocketAddr = args.listen.parse().map_err(|e| {
        CliError::msg(format!(
            "--listen {:?}: expected HOST:PORT such as 127.0.0.1:8223 ({e})",
            args.listen
        ))
    })?;
    let nats = &resolved.config.nats;
    // When the server requires credentials, so does the console: the same ones.
    let credentials = match (
        &nats.user,
        &nats.password,
        &nats.token,
        &nats.credentials_file,
    ) {
        (Some(user), Some(password), _, _) => Some(bus_console::Credentials::UserPassword {
            user: user.clone(),
            password: password.clone(),
        }),
        (_, _, Some(token), _) => Some(bus_console::Credentials::Token(token.clone())),
        (_, _, _, Some(_)) => match std::env::var("ANGZARR_CONSOLE_TOKEN") {
            Ok(t) if !t.is_empty() => Some(bus_console::Credentials::Token(t)),
            _ => {
                return Err(CliError::msg(
                    "the server is reached with a credentials file, which a browser cannot present: \
                     set ANGZARR_CONSOLE_TOKEN to the token the console should require",
                ));
            }
        },
        _ => None,
    };
    let console = Arc::new(bus_console::Console::new(bus_console::ConsoleConfig {
        bus,
        client: js.client(),
        events_stream: nats.stream_name.clone(),
        dead_letter_stream: nats.dead_letter_stream_name(),
        credentials,
        base: "/console".to_owned(),
    }));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| CliError::msg(format!("cannot listen on {addr}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| CliError::msg(format!("cannot listen on {addr}: {e}")))?;
    if !bound.ip().is_loopback() {
        eprintln!(
            "warning: the console listens on {bound}, not loopback: anyone who can reach it and \
             passes its credentials can redrive dead letters"
        );
    }
    println!("console at http://{bound}/console/ (Ctrl-C to stop)");
    let shutdown = async {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
    };
    bus_console::serve(console, listener, shutdown).await;
    Ok(())
}
