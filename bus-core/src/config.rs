//! Bus configuration: the `[bus]` table of a TOML file, then the environment.
//!
//! Layering, lowest to highest: built-in defaults, the file, then `BUS_BACKEND`,
//! `NATS_URL` and the credential variables `NATS_USER`, `NATS_PASSWORD`,
//! `NATS_TOKEN`, `NATS_CREDS` (so secrets can come from the environment, e.g.
//! a Kubernetes Secret, and stay out of the file). A variable set to an empty
//! (or all-blank) value counts as unset, as for `BUS_BACKEND` / `NATS_URL`. Every error names the key (or variable) and the file, and
//! the line when the file has one; unknown keys under `[bus]` are errors, so a
//! typo never silently falls back to a default. Other top-level tables are left
//! alone: an application may keep its own settings in the same file.
//!
//! Why `toml` + `serde_path_to_error` and not the `config` crate: the `config`
//! crate folds key case and loses line numbers and key paths for unknown
//! fields, and these errors are the whole user experience of a config file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::{ConsumerDefaults, StreamSettings};
use crate::subject::{SubjectLayout, token_problem};

/// Environment variable that overrides `bus.backend`.
pub const ENV_BACKEND: &str = "BUS_BACKEND";
/// Environment variable that overrides `bus.nats.url`.
pub const ENV_NATS_URL: &str = "NATS_URL";
/// Environment variable that overrides `bus.nats.user`.
pub const ENV_NATS_USER: &str = "NATS_USER";
/// Environment variable that overrides `bus.nats.password`.
pub const ENV_NATS_PASSWORD: &str = "NATS_PASSWORD";
/// Environment variable that overrides `bus.nats.token`.
pub const ENV_NATS_TOKEN: &str = "NATS_TOKEN";
/// Environment variable that overrides `bus.nats.credentials_file` (a path).
pub const ENV_NATS_CREDS: &str = "NATS_CREDS";

/// What [`ConfigError::Env`] shows instead of a secret's value.
const HIDDEN: &str = "<hidden>";

pub use crate::error::ConfigError;

/// Which backend the bus runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The bundled NATS-protocol server, started in-process (the default).
    #[default]
    Embedded,
    /// An external NATS server or cluster.
    Nats,
    /// In-process memory (tests; nothing persists).
    Memory,
}

impl Backend {
    /// The name used in files and `BUS_BACKEND`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Embedded => "embedded",
            Backend::Nats => "nats",
            Backend::Memory => "memory",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "embedded" => Some(Backend::Embedded),
            "nats" => Some(Backend::Nats),
            "memory" => Some(Backend::Memory),
            _ => None,
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[bus.nats]`: the NATS connection (also used by the embedded backend, which
/// connects the NATS adapter to the bundled server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL, or several separated by commas (a cluster's seed list).
    pub url: String,
    /// JetStream mode (persistence, durable consumers, replay). `false` is core
    /// NATS: at-most-once publish and live subscribe only.
    pub jetstream: bool,
    /// Name of the event stream.
    pub stream_name: String,
    /// Name of the dead-letter stream (default `<stream_name>-dlq`).
    pub dead_letter_stream: Option<String>,
    /// Opt-in: update an existing stream whose settings differ from `[bus.stream]`
    /// instead of reporting the difference as an error.
    pub update_stream: bool,
    /// Connection name shown by the server's monitoring.
    pub client_name: Option<String>,
    /// Give up connecting after this long, e.g. `"5s"`.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Timeout of a request (publish acknowledgement, API call), e.g. `"5s"`.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// A publish whose acknowledgement timed out (lost connection, leader
    /// change) is sent again this many times with the same `Nats-Msg-Id`, so
    /// the retry cannot store the event twice. 0 = report the timeout at once.
    pub publish_retries: u32,
    /// User name (with `password`).
    pub user: Option<String>,
    /// Password (with `user`).
    pub password: Option<String>,
    /// Token authentication.
    pub token: Option<String>,
    /// A `.creds` file (JWT + nkey seed) for decentralized auth.
    pub credentials_file: Option<PathBuf>,
    /// Require TLS even for `nats://` URLs.
    pub tls_required: bool,
    /// PEM file of the CA that signed the server certificate.
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with `tls_key_file`).
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub tls_key_file: Option<PathBuf>,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://127.0.0.1:4222".to_owned(),
            jetstream: true,
            stream_name: "angzarr-events".to_owned(),
            dead_letter_stream: None,
            update_stream: false,
            client_name: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            publish_retries: 2,
            user: None,
            password: None,
            token: None,
            credentials_file: None,
            tls_required: false,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

impl NatsConfig {
    /// The dead-letter stream name.
    pub fn dead_letter_stream_name(&self) -> String {
        self.dead_letter_stream
            .clone()
            .unwrap_or_else(|| format!("{}-dlq", self.stream_name))
    }

    /// The URLs in `url`, split on commas and trimmed.
    pub fn urls(&self) -> Vec<&str> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    }
}

/// `[bus.embedded]`: the bundled server started in-process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedConfig {
    /// Address to bind (loopback unless you mean to expose it).
    pub host: String,
    /// Client port; 0 picks a free port.
    pub port: u16,
    /// Monitoring HTTP port (`/varz`, `/jsz`, `/healthz`); absent = off.
    pub http_port: Option<u16>,
    /// Where streams are stored.
    pub data_dir: PathBuf,
    /// PEM server certificate: with `tls_key_file`, the server requires TLS
    /// and the in-process NATS adapter connects with TLS (trusting
    /// `tls_ca_file`, or `[bus.nats] tls_ca_file` when set). The certificate
    /// must name `host` (e.g. SAN `127.0.0.1`).
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA: the one client certificates must chain to (with
    /// `tls_verify`), and the one the in-process adapter trusts for the
    /// server certificate unless `[bus.nats] tls_ca_file` says otherwise.
    pub tls_ca_file: Option<PathBuf>,
    /// Require client certificates signed by `tls_ca_file` (mutual TLS); the
    /// in-process adapter presents `[bus.nats] tls_cert_file` / `tls_key_file`.
    pub tls_verify: bool,
    /// User name every client must present (with `password`); the in-process
    /// adapter connects with it, other processes sharing the server need it too.
    pub user: Option<String>,
    /// Password of `user`, in plain text (the in-process adapter sends it).
    pub password: Option<String>,
    /// Token every client must present (instead of `user`/`password`).
    pub token: Option<String>,
    /// Serve the operator console at `/console` on the monitoring port
    /// (needs `http_port`); it asks for the same credentials as the server.
    pub console: bool,
}

impl EmbeddedConfig {
    /// True when the bundled server is configured for TLS.
    pub fn tls_enabled(&self) -> bool {
        self.tls_cert_file.is_some()
    }
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            host: "127.0.0.1".to_owned(),
            port: 4222,
            http_port: None,
            data_dir: PathBuf::from("./data"),
            tls_cert_file: None,
            tls_key_file: None,
            tls_ca_file: None,
            tls_verify: false,
            user: None,
            password: None,
            token: None,
            console: false,
        }
    }
}

/// `[bus.memory]`: the in-process backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryConfig {
    /// Events buffered per live subscription before it starts losing them
    /// (at-most-once, like a core NATS slow consumer).
    pub subscriber_buffer: usize,
    /// Dead letters kept (all consumers together); past it the oldest is
    /// dropped, like a stream's `max_msgs` with discard old.
    pub max_dead_letters: usize,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            subscriber_buffer: 4096,
            max_dead_letters: 10_000,
        }
    }
}

/// The whole `[bus]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    /// Which backend to run on.
    pub backend: Backend,
    /// First token(s) of every subject.
    pub subject_prefix: String,
    /// Stream limits and behaviour.
    pub stream: StreamSettings,
    /// Defaults for durable consumers.
    pub consumer: ConsumerDefaults,
    /// NATS connection.
    pub nats: NatsConfig,
    /// Bundled server.
    pub embedded: EmbeddedConfig,
    /// In-process backend.
    pub memory: MemoryConfig,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            backend: Backend::default(),
            subject_prefix: crate::subject::DEFAULT_PREFIX.to_owned(),
            stream: StreamSettings::default(),
            consumer: ConsumerDefaults::default(),
            nats: NatsConfig::default(),
            embedded: EmbeddedConfig::default(),
            memory: MemoryConfig::default(),
        }
    }
}

#[derive(Deserialize)]
struct FileShape {
    bus: Option<toml::Value>,
}

impl BusConfig {
    /// Loads `path`, then applies `BUS_BACKEND` / `NATS_URL` from the process environment.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(path, |k| std::env::var(k).ok())
    }

    /// Defaults plus the process environment, for running without a file.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut c = BusConfig::default();
        c.apply_env(|k| std::env::var(k).ok())?;
        Ok(c)
    }

    /// Loads `path` with an explicit environment lookup (tests pass a map).
    pub fn load_with_env(
        path: impl AsRef<Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            file: path.to_owned(),
            source,
        })?;
        let mut c = Self::parse(&text, &path.display().to_string())?;
        c.apply_env(env)?;
        Ok(c)
    }

    /// Parses TOML text; `origin` names it in errors (a file path or `<string>`).
    /// No environment overrides are applied.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let line_of = |span: Option<std::ops::Range<usize>>| {
            span.map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
        };
        let shape: FileShape = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            origin: origin.to_owned(),
            line: line_of(e.span()).unwrap_or(1),
            message: e.message().trim().to_owned(),
        })?;
        let Some(bus) = shape.bus else {
            return Err(ConfigError::MissingBusTable {
                origin: origin.to_owned(),
            });
        };
        // Re-serialize the [bus] table so that errors carry spans within it;
        // then map them back by looking the key up in the original text.
        let bus_text = toml::to_string(&bus).map_err(|e| ConfigError::Syntax {
            origin: origin.to_owned(),
            line: 1,
            message: e.to_string(),
        })?;
        let de = toml::Deserializer::parse(&bus_text).map_err(|e| ConfigError::Syntax {
            origin: origin.to_owned(),
            line: 1,
            message: e.message().trim().to_owned(),
        })?;
        let config: BusConfig = serde_path_to_error::deserialize(de).map_err(|err| {
            let path = err.path().to_string();
            let inner = err.into_inner();
            let message = inner.message().trim().to_owned();
            let parent = if path == "." || path.is_empty() {
                "bus".to_owned()
            } else {
                format!("bus.{path}")
            };
            if let Some((field, expected)) = unknown_field(&message) {
                // serde_path_to_error already ends the path with the field.
                let key = if parent.rsplit('.').next() == Some(field.as_str()) {
                    parent
                } else {
                    format!("{parent}.{field}")
                };
                ConfigError::UnknownKey {
                    origin: origin.to_owned(),
                    line: find_key_line(text, &key),
                    key,
                    expected,
                }
            } else {
                ConfigError::InvalidValue {
                    origin: origin.to_owned(),
                    line: find_key_line(text, &parent),
                    key: parent,
                    message,
                }
            }
        })?;
        config.validate(origin, |key| find_key_line(text, key))?;
        Ok(config)
    }

    /// Applies `BUS_BACKEND`, `NATS_URL`, `NATS_USER`, `NATS_PASSWORD`,
    /// `NATS_TOKEN` and `NATS_CREDS` from `env`, then re-validates them.
    ///
    /// Empty values count as unset. The credential variables replace the
    /// file's `[bus.nats]` authentication: `NATS_USER` / `NATS_PASSWORD`
    /// (either may complete the other from the file) clear `token` and
    /// `credentials_file`, `NATS_TOKEN` clears the others, and so does
    /// `NATS_CREDS`. Setting variables of two methods is an error naming
    /// them; error messages never show a password or token.
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(value) = env(ENV_BACKEND).filter(|v| !v.trim().is_empty()) {
            self.backend = Backend::parse(&value).ok_or_else(|| ConfigError::Env {
                var: ENV_BACKEND,
                value: value.clone(),
                message: "unknown backend; expected one of embedded, nats, memory".to_owned(),
            })?;
        }
        if let Some(value) = env(ENV_NATS_URL).filter(|v| !v.trim().is_empty()) {
            check_urls(&value).map_err(|message| ConfigError::Env {
                var: ENV_NATS_URL,
                value: value.clone(),
                message,
            })?;
            self.nats.url = value;
        }
        self.apply_credentials_env(env)
    }

    fn apply_credentials_env(
        &mut self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        let get = |var: &str| env(var).filter(|v| !v.trim().is_empty());
        let user = get(ENV_NATS_USER);
        let password = get(ENV_NATS_PASSWORD);
        let token = get(ENV_NATS_TOKEN);
        let creds = get(ENV_NATS_CREDS);
        let mut methods: Vec<&'static str> = Vec::new();
        if user.is_some() || password.is_some() {
            methods.push(if user.is_some() {
                ENV_NATS_USER
            } else {
                ENV_NATS_PASSWORD
            });
        }
        if token.is_some() {
            methods.push(ENV_NATS_TOKEN);
        }
        if creds.is_some() {
            methods.push(ENV_NATS_CREDS);
        }
        if methods.len() > 1 {
            return Err(ConfigError::Env {
                var: methods[1],
                value: if methods[1] == ENV_NATS_CREDS {
                    creds.unwrap_or_default()
                } else {
                    HIDDEN.to_owned()
                },
                message: format!(
                    "conflicts with {}: set only one of NATS_USER/NATS_PASSWORD, NATS_TOKEN \
                     and NATS_CREDS",
                    methods[0]
                ),
            });
        }
        let nats = &mut self.nats;
        if user.is_some() || password.is_some() {
            nats.token = None;
            nats.credentials_file = None;
            if let Some(u) = user {
                nats.user = Some(u);
            }
            if let Some(p) = password {
                nats.password = Some(p);
            }
            match (&nats.user, &nats.password) {
                (Some(u), None) => {
                    return Err(ConfigError::Env {
                        var: ENV_NATS_USER,
                        value: u.clone(),
                        message: "needs a password: set NATS_PASSWORD or bus.nats.password".into(),
                    });
                }
                (None, Some(_)) => {
                    return Err(ConfigError::Env {
                        var: ENV_NATS_PASSWORD,
                        value: HIDDEN.to_owned(),
                        message: "needs a user: set NATS_USER or bus.nats.user".into(),
                    });
                }
                _ => {}
            }
        } else if let Some(t) = token {
            nats.user = None;
            nats.password = None;
            nats.credentials_file = None;
            nats.token = Some(t);
        } else if let Some(c) = creds {
            nats.user = None;
            nats.password = None;
            nats.token = None;
            nats.credentials_file = Some(PathBuf::from(c));
        }
        Ok(())
    }

    /// The subject layout for `subject_prefix` (validated at load time).
    pub fn layout(&self) -> Result<SubjectLayout, crate::BusError> {
        SubjectLayout::new(&self.subject_prefix)
    }

    /// Checks values serde cannot: prefix, URLs, names, ranges.
    fn validate(
        &self,
        origin: &str,
        line: impl Fn(&str) -> Option<usize>,
    ) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::InvalidValue {
            origin: origin.to_owned(),
            key: key.to_owned(),
            line: line(key),
            message,
        };
        if let Err(e) = SubjectLayout::new(&self.subject_prefix) {
            return Err(invalid("bus.subject_prefix", e.to_string()));
        }
        check_urls(&self.nats.url).map_err(|m| invalid("bus.nats.url", m))?;
        if let Some(problem) = stream_name_problem(&self.nats.stream_name) {
            return Err(invalid("bus.nats.stream_name", problem.to_owned()));
        }
        if let Some(dlq) = &self.nats.dead_letter_stream {
            if let Some(problem) = stream_name_problem(dlq) {
                return Err(invalid("bus.nats.dead_letter_stream", problem.to_owned()));
            }
            if *dlq == self.nats.stream_name {
                return Err(invalid(
                    "bus.nats.dead_letter_stream",
                    "must differ from bus.nats.stream_name".to_owned(),
                ));
            }
        }
        if self.nats.connect_timeout.is_zero() {
            return Err(invalid(
                "bus.nats.connect_timeout",
                "must be positive".into(),
            ));
        }
        if self.nats.request_timeout.is_zero() {
            return Err(invalid(
                "bus.nats.request_timeout",
                "must be positive".into(),
            ));
        }
        match (&self.nats.user, &self.nats.password) {
            (Some(_), None) => {
                return Err(invalid(
                    "bus.nats.password",
                    "is required with bus.nats.user".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "bus.nats.user",
                    "is required with bus.nats.password".into(),
                ));
            }
            _ => {}
        }
        let auth_methods = [
            self.nats.user.is_some(),
            self.nats.token.is_some(),
            self.nats.credentials_file.is_some(),
        ]
        .iter()
        .filter(|set| **set)
        .count();
        if auth_methods > 1 {
            return Err(invalid(
                "bus.nats.token",
                "set only one of user/password, token and credentials_file".into(),
            ));
        }
        if self.nats.tls_cert_file.is_some() != self.nats.tls_key_file.is_some() {
            return Err(invalid(
                "bus.nats.tls_key_file",
                "tls_cert_file and tls_key_file go together".into(),
            ));
        }
        if self.stream.max_msg_size == 0 {
            return Err(invalid(
                "bus.stream.max_msg_size",
                "must be positive".into(),
            ));
        }
        if !(1..=5).contains(&self.stream.replicas) {
            return Err(invalid(
                "bus.stream.replicas",
                "must be between 1 and 5".into(),
            ));
        }
        if self.consumer.max_deliver == 0 {
            return Err(invalid(
                "bus.consumer.max_deliver",
                "must be at least 1".into(),
            ));
        }
        if self.consumer.max_ack_pending == 0 {
            return Err(invalid(
                "bus.consumer.max_ack_pending",
                "must be at least 1".into(),
            ));
        }
        if self.consumer.ack_wait.is_zero() {
            return Err(invalid("bus.consumer.ack_wait", "must be positive".into()));
        }
        if self.consumer.backoff.iter().any(Duration::is_zero) {
            return Err(invalid(
                "bus.consumer.backoff",
                "delays must be positive".into(),
            ));
        }
        if self.embedded.host.trim().is_empty() {
            return Err(invalid("bus.embedded.host", "must not be empty".into()));
        }
        if self.embedded.data_dir.as_os_str().is_empty() {
            return Err(invalid("bus.embedded.data_dir", "must not be empty".into()));
        }
        if self.embedded.tls_cert_file.is_some() != self.embedded.tls_key_file.is_some() {
            return Err(invalid(
                "bus.embedded.tls_key_file",
                "tls_cert_file and tls_key_file go together".into(),
            ));
        }
        if (self.embedded.tls_ca_file.is_some() || self.embedded.tls_verify)
            && !self.embedded.tls_enabled()
        {
            return Err(invalid(
                "bus.embedded.tls_cert_file",
                "is required with tls_ca_file / tls_verify (the server's certificate)".into(),
            ));
        }
        if self.embedded.tls_verify {
            if self.embedded.tls_ca_file.is_none() {
                return Err(invalid(
                    "bus.embedded.tls_ca_file",
                    "is required with tls_verify (the CA client certificates must chain to)".into(),
                ));
            }
            if self.backend == Backend::Embedded && self.nats.tls_cert_file.is_none() {
                return Err(invalid(
                    "bus.nats.tls_cert_file",
                    "is required with bus.embedded.tls_verify: the in-process connection \
                     must present a client certificate (with bus.nats.tls_key_file)"
                        .into(),
                ));
            }
        }
        match (&self.embedded.user, &self.embedded.password) {
            (Some(_), None) => {
                return Err(invalid(
                    "bus.embedded.password",
                    "is required with bus.embedded.user".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "bus.embedded.user",
                    "is required with bus.embedded.password".into(),
                ));
            }
            _ => {}
        }
        if self.embedded.console && self.embedded.http_port.is_none() {
            return Err(invalid(
                "bus.embedded.console",
                "needs bus.embedded.http_port: the console is served on the monitoring port".into(),
            ));
        }
        if self.embedded.user.is_some() && self.embedded.token.is_some() {
            return Err(invalid(
                "bus.embedded.token",
                "set only one of user/password and token".into(),
            ));
        }
        for (key, secret) in [
            ("bus.embedded.user", &self.embedded.user),
            ("bus.embedded.password", &self.embedded.password),
            ("bus.embedded.token", &self.embedded.token),
        ] {
            if let Some(s) = secret {
                if s.is_empty() {
                    return Err(invalid(key, "must not be empty".into()));
                }
                if key != "bus.embedded.user" && looks_like_bcrypt(s) {
                    return Err(invalid(
                        key,
                        "must be plain text, not a bcrypt hash: the in-process connection \
                         presents it to the server"
                            .into(),
                    ));
                }
            }
        }
        if self.memory.subscriber_buffer == 0 {
            return Err(invalid(
                "bus.memory.subscriber_buffer",
                "must be at least 1".into(),
            ));
        }
        if self.memory.max_dead_letters == 0 {
            return Err(invalid(
                "bus.memory.max_dead_letters",
                "must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// A bcrypt hash as the server would read it (`$2a$`, `$2b$`, `$2y$`).
fn looks_like_bcrypt(s: &str) -> bool {
    ["$2a$", "$2b$", "$2y$"].iter().any(|p| s.starts_with(p))
}

/// Why `name` cannot be a JetStream stream name, or `None`.
pub fn stream_name_problem(name: &str) -> Option<&'static str> {
    if let Some(p) = token_problem(name) {
        return Some(p);
    }
    if name.contains(['/', '\\']) {
        return Some("must not contain '/' or '\\'");
    }
    if name.len() > 255 {
        return Some("must be at most 255 bytes");
    }
    None
}

/// Checks a URL or comma-separated URL list: each must have a scheme among
/// nats, tls, ws, wss (or none: `host:port`), a host, and a valid port.
fn check_urls(value: &str) -> Result<(), String> {
    let urls: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if urls.is_empty() {
        return Err("no URL given".to_owned());
    }
    for u in urls {
        let with_scheme = if u.contains("://") {
            u.to_owned()
        } else {
            format!("nats://{u}")
        };
        let parsed =
            url::Url::parse(&with_scheme).map_err(|e| format!("invalid URL {u:?}: {e}"))?;
        if !matches!(parsed.scheme(), "nats" | "tls" | "ws" | "wss") {
            return Err(format!(
                "invalid URL {u:?}: scheme {:?} is not one of nats, tls, ws, wss",
                parsed.scheme()
            ));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(format!("invalid URL {u:?}: no host"));
        }
    }
    Ok(())
}

/// Parses serde's "unknown field `x`, expected one of `a`, `b`" message.
fn unknown_field(message: &str) -> Option<(String, String)> {
    let rest = message.strip_prefix("unknown field `")?;
    let end = rest.find('`')?;
    let field = rest[..end].to_owned();
    let expected = rest[end + 1..]
        .trim_start_matches(',')
        .trim()
        .trim_start_matches("expected one of ")
        .trim_start_matches("expected ")
        .to_owned();
    Some((field, expected))
}

/// Best-effort 1-based line of a dotted key such as `bus.nats.url` in TOML text:
/// the line assigning the last token inside the right table (or the table header
/// itself for a table key).
fn find_key_line(text: &str, key: &str) -> Option<usize> {
    let tokens: Vec<&str> = key.split('.').collect();
    let last = tokens.last()?;
    let mut table: Vec<String> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(header) = line.strip_prefix('[') {
            let header = header.trim_start_matches('[');
            let name = header.split(']').next().unwrap_or("").trim();
            table = name
                .split('.')
                .map(|t| t.trim().trim_matches('"').to_owned())
                .collect();
            if table.iter().map(String::as_str).eq(tokens.iter().copied()) {
                return Some(i + 1);
            }
            continue;
        }
        let Some((lhs, _)) = line.split_once('=') else {
            continue;
        };
        let mut full: Vec<String> = table.clone();
        full.extend(
            lhs.split('.')
                .map(|t| t.trim().trim_matches('"').to_owned()),
        );
        if full.len() == tokens.len() && full.iter().map(String::as_str).eq(tokens.iter().copied())
        {
            return Some(i + 1);
        }
        // An inline table `nats = { url = ... }` holding the key.
        if full.len() < tokens.len()
            && full
                .iter()
                .map(String::as_str)
                .eq(tokens[..full.len()].iter().copied())
            && line.contains(&format!("{last} "))
        {
            return Some(i + 1);
        }
    }
    None
}

/// Human-readable duration, for messages and `--json` output.
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn empty_bus_table_gives_the_documented_defaults() {
        let c = BusConfig::parse("[bus]\n", "t.toml").unwrap();
        assert_eq!(c, BusConfig::default());
        assert_eq!(c.backend, Backend::Embedded);
        assert_eq!(c.subject_prefix, "angzarr");
        assert_eq!(c.nats.stream_name, "angzarr-events");
        assert_eq!(c.nats.dead_letter_stream_name(), "angzarr-events-dlq");
    }

    #[test]
    fn full_file_is_read_with_durations_and_enums() {
        let c = BusConfig::parse(
            r#"
[bus]
backend = "nats"
subject_prefix = "acme.prod"

[bus.stream]
max_msgs = 10
max_age = "7d"
duplicate_window = "30s"
discard = "new"
storage = "memory"
replicas = 3

[bus.consumer]
ack_wait = "10s"
max_deliver = 3
backoff = ["1s", "5s"]

[bus.nats]
url = "nats://a:4222, nats://b:4222"
jetstream = false
stream_name = "orders"
"#,
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.backend, Backend::Nats);
        assert_eq!(c.stream.max_age, Duration::from_secs(7 * 86400));
        assert_eq!(c.stream.duplicate_window, Duration::from_secs(30));
        assert_eq!(c.stream.discard, crate::Discard::New);
        assert_eq!(
            c.consumer.backoff,
            vec![Duration::from_secs(1), Duration::from_secs(5)]
        );
        assert_eq!(c.nats.urls(), vec!["nats://a:4222", "nats://b:4222"]);
        assert!(!c.nats.jetstream);
    }

    #[test]
    fn unknown_backend_names_the_key_file_and_line() {
        let err = BusConfig::parse("[bus]\nbackend = \"kafka\"\n", "my.toml").unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, ConfigError::InvalidValue { ref key, .. } if key == "bus.backend"),
            "{text}"
        );
        assert!(text.contains("my.toml"), "{text}");
        assert!(text.contains("line 2"), "{text}");
        assert!(text.contains("kafka"), "{text}");
    }

    #[test]
    fn unknown_key_names_the_full_key_and_line() {
        let err =
            BusConfig::parse("[bus]\n\n[bus.nats]\njetsream = true\n", "my.toml").unwrap_err();
        let text = err.to_string();
        match &err {
            ConfigError::UnknownKey { key, line, .. } => {
                assert_eq!(key, "bus.nats.jetsream");
                assert_eq!(*line, Some(4));
            }
            other => panic!("{other:?}"),
        }
        assert!(text.contains("my.toml"), "{text}");
        assert!(
            text.contains("jetstream"),
            "lists the expected keys: {text}"
        );
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = BusConfig::parse("[bus.nats]\njetstream = \"yes\"\n", "my.toml").unwrap_err();
        match &err {
            ConfigError::InvalidValue { key, line, .. } => {
                assert_eq!(key, "bus.nats.jetstream");
                assert_eq!(*line, Some(2));
            }
            other => panic!("{other:?}"),
        }
        let err = BusConfig::parse("[bus.stream]\nmax_age = \"soon\"\n", "my.toml").unwrap_err();
        assert!(
            matches!(&err, ConfigError::InvalidValue { key, .. } if key == "bus.stream.max_age"),
            "{err}"
        );
    }

    #[test]
    fn bad_url_names_the_key() {
        for url in ["http://x:4222", "nats://", "nats://host:99999", ""] {
            let text = format!("[bus.nats]\nurl = {url:?}\n");
            let err = BusConfig::parse(&text, "my.toml").unwrap_err();
            assert!(
                matches!(&err, ConfigError::InvalidValue { key, line: Some(2), .. } if key == "bus.nats.url"),
                "{url}: {err}"
            );
        }
    }

    #[test]
    fn syntax_error_names_the_line() {
        let err = BusConfig::parse("[bus]\nbackend = \n", "my.toml").unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { line: 2, .. }), "{err}");
    }

    #[test]
    fn missing_bus_table_is_an_error() {
        let err = BusConfig::parse("[app]\nx = 1\n", "my.toml").unwrap_err();
        assert!(matches!(err, ConfigError::MissingBusTable { .. }), "{err}");
    }

    #[test]
    fn other_top_level_tables_are_left_to_the_application() {
        let c = BusConfig::parse("[app]\nx = 1\n[bus]\nbackend = \"memory\"\n", "t").unwrap();
        assert_eq!(c.backend, Backend::Memory);
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bus.toml");
        std::fs::write(
            &path,
            "[bus]\nbackend = \"memory\"\n[bus.nats]\nurl = \"nats://a:1\"\n",
        )
        .unwrap();
        let c = BusConfig::load_with_env(&path, |k| match k {
            ENV_BACKEND => Some("nats".into()),
            ENV_NATS_URL => Some("nats://b:2".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.backend, Backend::Nats);
        assert_eq!(c.nats.url, "nats://b:2");
        let c = BusConfig::load_with_env(&path, no_env).unwrap();
        assert_eq!(c.backend, Backend::Memory);
    }

    #[test]
    fn bad_environment_values_name_the_variable() {
        let mut c = BusConfig::default();
        let err = c
            .apply_env(|k| (k == ENV_BACKEND).then(|| "kafka".to_owned()))
            .unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Env {
                    var: ENV_BACKEND,
                    ..
                }
            ),
            "{err}"
        );
        let err = c
            .apply_env(|k| (k == ENV_NATS_URL).then(|| "http://x".to_owned()))
            .unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Env {
                    var: ENV_NATS_URL,
                    ..
                }
            ),
            "{err}"
        );
    }

    fn env_map<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn credential_variables_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bus.toml");
        std::fs::write(
            &path,
            "[bus]\nbackend = \"nats\"\n[bus.nats]\ntoken = \"file-token\"\n",
        )
        .unwrap();
        // User and password replace the file's token.
        let c = BusConfig::load_with_env(
            &path,
            env_map(&[(ENV_NATS_USER, "app"), (ENV_NATS_PASSWORD, "s3cret")]),
        )
        .unwrap();
        assert_eq!(c.nats.user.as_deref(), Some("app"));
        assert_eq!(c.nats.password.as_deref(), Some("s3cret"));
        assert_eq!(c.nats.token, None);
        // A token replaces the file's token.
        let c = BusConfig::load_with_env(&path, env_map(&[(ENV_NATS_TOKEN, "env-token")])).unwrap();
        assert_eq!(c.nats.token.as_deref(), Some("env-token"));
        // A .creds path replaces the token.
        let c =
            BusConfig::load_with_env(&path, env_map(&[(ENV_NATS_CREDS, "/run/nats/app.creds")]))
                .unwrap();
        assert_eq!(
            c.nats.credentials_file.as_deref(),
            Some(Path::new("/run/nats/app.creds"))
        );
        assert_eq!(c.nats.token, None);
        // Without variables the file's token stays.
        let c = BusConfig::load_with_env(&path, no_env).unwrap();
        assert_eq!(c.nats.token.as_deref(), Some("file-token"));
    }

    #[test]
    fn password_variable_completes_the_user_from_the_file() {
        let mut c = BusConfig::parse(
            "[bus.nats]\nuser = \"app\"\npassword = \"from-file\"\n",
            "t",
        )
        .unwrap();
        c.apply_env(env_map(&[(ENV_NATS_PASSWORD, "from-secret")]))
            .unwrap();
        assert_eq!(c.nats.user.as_deref(), Some("app"));
        assert_eq!(c.nats.password.as_deref(), Some("from-secret"));
    }

    #[test]
    fn empty_credential_variables_count_as_unset() {
        let mut c = BusConfig::parse("[bus.nats]\ntoken = \"t\"\n", "t").unwrap();
        c.apply_env(env_map(&[
            (ENV_NATS_USER, ""),
            (ENV_NATS_PASSWORD, "  "),
            (ENV_NATS_TOKEN, ""),
            (ENV_NATS_CREDS, ""),
        ]))
        .unwrap();
        assert_eq!(c.nats.token.as_deref(), Some("t"));
        assert_eq!(c.nats.user, None);
    }

    #[test]
    fn incomplete_or_conflicting_credential_variables_name_the_variable_and_hide_secrets() {
        for (pairs, var) in [
            (&[(ENV_NATS_USER, "app")][..], ENV_NATS_USER),
            (&[(ENV_NATS_PASSWORD, "pw-secret")][..], ENV_NATS_PASSWORD),
            (
                &[
                    (ENV_NATS_USER, "app"),
                    (ENV_NATS_PASSWORD, "pw-secret"),
                    (ENV_NATS_TOKEN, "tok-secret"),
                ][..],
                ENV_NATS_TOKEN,
            ),
            (
                &[(ENV_NATS_TOKEN, "tok-secret"), (ENV_NATS_CREDS, "/x.creds")][..],
                ENV_NATS_CREDS,
            ),
        ] {
            let mut c = BusConfig::default();
            let err = c.apply_env(env_map(pairs)).unwrap_err();
            let text = err.to_string();
            assert!(
                matches!(&err, ConfigError::Env { var: v, .. } if *v == var),
                "{pairs:?}: {text}"
            );
            assert!(
                !text.contains("pw-secret") && !text.contains("tok-secret"),
                "leaks a secret: {text}"
            );
        }
    }

    #[test]
    fn embedded_console_needs_the_monitoring_port() {
        let c = BusConfig::parse("[bus.embedded]\nhttp_port = 8222\nconsole = true\n", "t")
            .expect("console with a monitoring port");
        assert!(c.embedded.console);
        assert!(!BusConfig::default().embedded.console, "off unless enabled");
        let e = BusConfig::parse("[bus.embedded]\nconsole = true\n", "t")
            .expect_err("console without a monitoring port");
        assert!(e.to_string().contains("bus.embedded.console"), "{e}");
        assert!(e.to_string().contains("http_port"), "{e}");
    }

    #[test]
    fn embedded_credentials_parse_and_are_checked() {
        let c =
            BusConfig::parse("[bus.embedded]\nuser = \"app\"\npassword = \"pw\"\n", "t").unwrap();
        assert_eq!(c.embedded.user.as_deref(), Some("app"));
        assert_eq!(c.embedded.password.as_deref(), Some("pw"));
        let c = BusConfig::parse("[bus.embedded]\ntoken = \"tok\"\n", "t").unwrap();
        assert_eq!(c.embedded.token.as_deref(), Some("tok"));
        for (text, key) in [
            ("[bus.embedded]\nuser = \"a\"\n", "bus.embedded.password"),
            ("[bus.embedded]\npassword = \"a\"\n", "bus.embedded.user"),
            (
                "[bus.embedded]\nuser = \"a\"\npassword = \"b\"\ntoken = \"t\"\n",
                "bus.embedded.token",
            ),
            (
                "[bus.embedded]\nuser = \"a\"\npassword = \"$2a$11$abcdefghijklmnopqrstuv\"\n",
                "bus.embedded.password",
            ),
            ("[bus.embedded]\ntoken = \"\"\n", "bus.embedded.token"),
        ] {
            let err = BusConfig::parse(text, "t").unwrap_err();
            assert!(
                matches!(&err, ConfigError::InvalidValue { key: k, .. } if k == key),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn missing_file_is_an_io_error_naming_it() {
        let err = BusConfig::load_with_env("/nonexistent/bus.toml", no_env).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/bus.toml"), "{err}");
    }

    #[test]
    fn out_of_range_values_name_the_key() {
        for (text, key) in [
            ("[bus.stream]\nreplicas = 7\n", "bus.stream.replicas"),
            (
                "[bus.consumer]\nmax_deliver = 0\n",
                "bus.consumer.max_deliver",
            ),
            (
                "[bus.nats]\nstream_name = \"a.b\"\n",
                "bus.nats.stream_name",
            ),
            ("[bus]\nsubject_prefix = \"a..b\"\n", "bus.subject_prefix"),
            ("[bus.stream]\nreplicas = -1\n", "bus.stream.replicas"),
            (
                "[bus.memory]\nmax_dead_letters = 0\n",
                "bus.memory.max_dead_letters",
            ),
        ] {
            let err = BusConfig::parse(text, "t").unwrap_err();
            assert!(
                matches!(&err, ConfigError::InvalidValue { key: k, .. } if k == key),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn embedded_tls_settings_parse() {
        let c = BusConfig::parse(
            "[bus.embedded]\ntls_cert_file = \"s.pem\"\ntls_key_file = \"s-key.pem\"\n\
             tls_ca_file = \"ca.pem\"\ntls_verify = true\n\
             [bus.nats]\ntls_cert_file = \"c.pem\"\ntls_key_file = \"c-key.pem\"\n",
            "t",
        )
        .expect("valid");
        assert!(c.embedded.tls_enabled() && c.embedded.tls_verify);
        assert_eq!(c.embedded.tls_ca_file.as_deref(), Some(Path::new("ca.pem")));
        assert!(!BusConfig::default().embedded.tls_enabled());
    }

    #[test]
    fn incomplete_or_conflicting_credentials_name_the_key() {
        for (text, key) in [
            ("[bus.nats]\nuser = \"a\"\n", "bus.nats.password"),
            ("[bus.nats]\npassword = \"a\"\n", "bus.nats.user"),
            (
                "[bus.nats]\nuser = \"a\"\npassword = \"b\"\ntoken = \"t\"\n",
                "bus.nats.token",
            ),
            (
                "[bus.nats]\ntls_cert_file = \"c.pem\"\n",
                "bus.nats.tls_key_file",
            ),
            (
                "[bus.embedded]\ntls_cert_file = \"c.pem\"\n",
                "bus.embedded.tls_key_file",
            ),
            (
                "[bus.embedded]\ntls_verify = true\n",
                "bus.embedded.tls_cert_file",
            ),
            (
                "[bus.embedded]\ntls_cert_file = \"c\"\ntls_key_file = \"k\"\ntls_verify = true\n",
                "bus.embedded.tls_ca_file",
            ),
            (
                "[bus.embedded]\ntls_cert_file = \"c\"\ntls_key_file = \"k\"\ntls_ca_file = \"ca\"\ntls_verify = true\n",
                "bus.nats.tls_cert_file",
            ),
        ] {
            let err = BusConfig::parse(text, "t").unwrap_err();
            assert!(
                matches!(&err, ConfigError::InvalidValue { key: k, .. } if k == key),
                "{text}: {err}"
            );
        }
    }
}
