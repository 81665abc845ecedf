//! Which bus the tool talks to, and connecting to it.
//!
//! Resolution: `--config FILE` (with `BUS_BACKEND` / `NATS_URL`) or, without
//! a file, the built-in defaults with backend `nats` (a command-line tool is a
//! client of a running server, by default `angzarr-bus server` on
//! 127.0.0.1:4222) plus the same environment overrides; then `--url` forces
//! backend `nats` with that URL. A configuration with backend `embedded`
//! names the server the *service* runs in-process: the tool connects to it at
//! `[bus.embedded] host:port` instead of starting a second server on the
//! same store.

use std::sync::Arc;

use bus::{Backend, Bus, BusConfig};

use crate::error::{CliError, CliResult, Target, open_error};

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// What `bus::open` gets (never `embedded`).
    pub config: BusConfig,
    /// For messages.
    pub target: Target,
}

impl Resolved {
    /// The NATS URL when the backend is NATS.
    pub fn nats_url(&self) -> Option<&str> {
        (self.config.backend == Backend::Nats).then_some(self.config.nats.url.as_str())
    }
}

/// Builds the configuration from the global options and `env`.
pub fn resolve(
    config_file: Option<&std::path::Path>,
    url: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> CliResult<Resolved> {
    let mut config = match config_file {
        Some(path) => BusConfig::load_with_env(path, &env)
            .map_err(|e| CliError::msg(format!("{e}: fix the file or pass another --config")))?,
        None => {
            let mut c = BusConfig {
                backend: Backend::Nats,
                ..BusConfig::default()
            };
            c.apply_env(&env)
                .map_err(|e| CliError::msg(format!("{e}: fix or unset the variable")))?;
            c
        }
    };
    if let Some(url) = url {
        if url.trim().is_empty() {
            return Err(CliError::msg(
                "--url is empty: pass a server URL such as nats://127.0.0.1:4222",
            ));
        }
        config.backend = Backend::Nats;
        config.nats.url = url.to_owned();
    }
    if config.backend == Backend::Embedded {
        let e = &config.embedded;
        if e.port == 0 {
            return Err(CliError::msg(
                "the configuration runs the embedded server on a random port ([bus.embedded] \
                 port = 0), so the tool cannot find it: pass the service's server URL with --url",
            ));
        }
        let host = match e.host.as_str() {
            "0.0.0.0" | "" => "127.0.0.1".to_owned(),
            "::" => "[::1]".to_owned(),
            h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
            h => h.to_owned(),
        };
        config.nats.url = format!("nats://{host}:{}", e.port);
        config.nats.jetstream = true;
        config.backend = Backend::Nats;
    }
    let describe = match config.backend {
        Backend::Memory => "the memory backend".to_owned(),
        _ => config.nats.url.clone(),
    };
    Ok(Resolved {
        config,
        target: Target { describe },
    })
}

/// Opens the bus.
pub async fn open(resolved: &Resolved) -> CliResult<Arc<dyn Bus>> {
    if resolved.config.backend == Backend::Memory {
        eprintln!(
            "note: backend memory: this process has its own empty bus that is gone when it exits; \
             use --url to reach a server"
        );
    }
    bus::open(&resolved.config)
        .await
        .map_err(|e| open_error(&resolved.target, e))
}

/// A JetStream context on the configured server, for what the Bus trait does
/// not cover (listing streams and consumers). `None` on the memory backend.
pub async fn jetstream(resolved: &Resolved) -> CliResult<Option<async_nats::jetstream::Context>> {
    let Some(url) = resolved.nats_url() else {
        return Ok(None);
    };
    let nats = &resolved.config.nats;
    let mut options = async_nats::ConnectOptions::new()
        .connection_timeout(nats.connect_timeout)
        .request_timeout(Some(nats.request_timeout))
        .max_reconnects(Some(1));
    if let (Some(user), Some(password)) = (&nats.user, &nats.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &nats.token {
        options = options.token(token.clone());
    }
    if let Some(creds) = &nats.credentials_file {
        options = options.credentials_file(creds).await.map_err(|e| {
            CliError::msg(format!(
                "cannot use the credentials file {}: {e}: fix bus.nats.credentials_file",
                creds.display()
            ))
        })?;
    }
    if nats.tls_required {
        options = options.require_tls(true);
    }
    if let Some(ca) = &nats.tls_ca_file {
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&nats.tls_cert_file, &nats.tls_key_file) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    let mut addrs = Vec::new();
    for u in nats.urls() {
        let addr: async_nats::ServerAddr = u.parse().map_err(|e| {
            CliError::msg(format!(
                "invalid server URL {u:?} ({e}): pass one such as nats://127.0.0.1:4222"
            ))
        })?;
        addrs.push(addr);
    }
    let client = tokio::time::timeout(nats.connect_timeout, options.connect(addrs))
        .await
        .map_err(|_| {
            CliError::msg(format!(
                "cannot connect to {url}: no answer within {:?}: is the server running? Start one \
                 with `angzarr-bus server` or pass --url",
                nats.connect_timeout
            ))
        })?
        .map_err(|e| {
            CliError::msg(format!(
                "cannot connect to {url} ({e}): is the server running? Start one with \
                 `angzarr-bus server` or pass --url"
            ))
        })?;
    let mut js = async_nats::jetstream::new(client);
    js.set_timeout(nats.request_timeout);
    Ok(Some(js))
}

/// Turns a short filter (`player.*`, `>`) into `<prefix>.events.…`; a filter
/// starting with `<prefix>.` is used as given.
pub fn expand_filter(prefix: &str, filter: &str) -> String {
    let filter = filter.trim();
    if filter.starts_with(&format!("{prefix}.")) {
        filter.to_owned()
    } else {
        format!("{prefix}.events.{filter}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults_talk_to_a_local_server() {
        let r = resolve(None, None, no_env).unwrap();
        assert_eq!(r.config.backend, Backend::Nats);
        assert_eq!(r.nats_url(), Some("nats://127.0.0.1:4222"));
    }

    #[test]
    fn url_overrides_environment_and_backend() {
        let env = |k: &str| match k {
            "BUS_BACKEND" => Some("memory".to_owned()),
            "NATS_URL" => Some("nats://env:1".to_owned()),
            _ => None,
        };
        let r = resolve(None, None, env).unwrap();
        assert_eq!(r.config.backend, Backend::Memory);
        let r = resolve(None, Some("nats://cli:2"), env).unwrap();
        assert_eq!(r.nats_url(), Some("nats://cli:2"));
        assert!(resolve(None, Some(" "), no_env).is_err());
    }

    #[test]
    fn embedded_configuration_is_reached_at_its_address() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bus.toml");
        std::fs::write(
            &path,
            "[bus]\nbackend = \"embedded\"\n[bus.embedded]\nhost = \"0.0.0.0\"\nport = 4333\n",
        )
        .unwrap();
        let r = resolve(Some(&path), None, no_env).unwrap();
        assert_eq!(r.nats_url(), Some("nats://127.0.0.1:4333"));
        std::fs::write(
            &path,
            "[bus]\nbackend = \"embedded\"\n[bus.embedded]\nport = 0\n",
        )
        .unwrap();
        assert!(resolve(Some(&path), None, no_env).is_err());
    }

    #[test]
    fn a_bad_file_names_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bus.toml");
        std::fs::write(&path, "[bus]\nbackedn = \"nats\"\n").unwrap();
        let Err(CliError::Message(m)) = resolve(Some(&path), None, no_env) else {
            panic!("accepted a typo")
        };
        assert!(m.contains("backedn"), "{m}");
    }

    #[test]
    fn short_filters_expand_under_the_prefix() {
        assert_eq!(expand_filter("angzarr", ">"), "angzarr.events.>");
        assert_eq!(
            expand_filter("angzarr", "player.*"),
            "angzarr.events.player.*"
        );
        assert_eq!(
            expand_filter("angzarr", "angzarr.events.*.X"),
            "angzarr.events.*.X"
        );
    }
}
