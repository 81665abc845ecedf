//! The server's options in a parsed configuration: the top-level keys this
//! server understands, the `tls {}` and `jetstream {}` blocks, into a
//! [`ServerConf`] (every option `None` unless set, so flags and defaults can
//! be layered by `options`); [`Warning`]s for keys it ignores.
//! The `authorization {}`, `accounts {}` and `websocket {}` blocks are kept
//! raw here and read by `authorization`, `accounts` and `websocket`.

use std::path::PathBuf;
use std::time::Duration;

use super::error::ConfError;
use super::syntax::{Located, Value, duration_of};

/// The server options read from a configuration. `None` means "not set":
/// the server's default applies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerConf {
    /// Client listen host. `listen: ":4222"` sets it back to `None`.
    pub host: Option<String>,
    /// Client port; -1 means a random port.
    pub port: Option<i32>,
    pub server_name: Option<String>,
    pub http_host: Option<String>,
    /// Monitoring port; -1 means a random port.
    pub http_port: Option<i32>,
    pub max_payload: Option<u64>,
    pub max_connections: Option<u64>,
    /// `max_subs` / `max_subscriptions`: subscriptions per connection.
    pub max_subs: Option<u64>,
    pub max_control_line: Option<u64>,
    pub max_pending: Option<u64>,
    pub write_deadline: Option<Duration>,
    pub ping_interval: Option<Duration>,
    pub ping_max: Option<u32>,
    pub debug: Option<bool>,
    pub trace: Option<bool>,
    pub logtime: Option<bool>,
    pub log_file: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub ports_file_dir: Option<PathBuf>,
    /// Lower-cased, as nats-server reports them.
    pub server_tags: Vec<String>,
    pub jetstream: Option<JetStreamConf>,
    /// The raw `authorization` block.
    pub authorization: Option<Located>,
    /// The raw `accounts` block (read by `accounts_from_conf`).
    pub accounts: Option<Located>,
    /// The `tls` block.
    pub tls: Option<TlsConf>,
    /// The raw `websocket` (or `ws`) block (read by `websocket_from_conf`).
    pub websocket: Option<Located>,
    /// The raw `mqtt` block (read by `mqtt_from_conf`).
    pub mqtt: Option<Located>,
    /// `no_auth_user` (checked against the users by `options`).
    pub no_auth_user: Option<String>,
    /// The raw top-level `mappings` block (read by `mappings_from_conf`).
    pub mappings: Option<Located>,
    pub lame_duck_duration: Option<Duration>,
    pub lame_duck_grace_period: Option<Duration>,
    /// The raw `operator` (`operators`, `trusted`) value: JWTs or files
    /// (read by `operator_from_conf`).
    pub operator: Option<Located>,
    /// The raw `resolver` value.
    pub resolver: Option<Located>,
    /// The raw `resolver_preload` map.
    pub resolver_preload: Option<Located>,
    /// `system_account` (`system`).
    pub system_account: Option<Located>,
}

/// The `jetstream` option.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JetStreamConf {
    pub enabled: bool,
    pub store_dir: Option<PathBuf>,
    /// `None` when unset or negative (nats-server then sizes it itself).
    pub max_memory_store: Option<u64>,
    pub max_file_store: Option<u64>,
    pub strict: Option<bool>,
    pub sync_interval: Option<SyncInterval>,
}

/// The `tls { }` block (client connections).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsConf {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub verify: bool,
    /// Handshake timeout: seconds (integer or fractional) or a duration string.
    pub timeout: Option<Duration>,
    pub handshake_first: bool,
    /// `handshake_first: auto` or a duration: the wait for a TLS-first
    /// client before INFO goes out in plain text.
    pub handshake_first_fallback: Option<Duration>,
}

/// `tls { }` keys nats-server knows that this server does not implement.
/// They refuse the start: running with different security than configured
/// is never right.
const KNOWN_UNSUPPORTED_TLS: &[&str] = &[
    "ca_certs_match",
    "cert_match",
    "cert_match_by",
    "cert_match_skip_invalid",
    "cert_store",
    "certs",
    "cipher_suites",
    "connection_rate_limit",
    "curve_preferences",
    "insecure",
    "min_version",
    "ocsp_peer",
    "pinned_certs",
    "verify_and_map",
    "verify_cert_and_check_known_urls",
];

/// `jetstream { sync_interval: ... }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncInterval {
    /// `sync_interval: always`: sync after every write.
    Always,
    Every(Duration),
}

/// An option that was read but is not acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The key as written, prefixed by its block for nested keys
    /// (`jetstream.domain`).
    pub key: String,
    pub line: usize,
    pub message: String,
}

/// Top-level keys nats-server 2.15.1 knows but this server does not act on.
const KNOWN_UNSUPPORTED: &[&str] = &[
    "allow_non_tls",
    "client_advertise",
    "cluster",
    "connect_error_reports",
    "default_js_domain",
    "default_sentinel",
    "disable_sublist_cache",
    "gateway",
    "http_base_path",
    "https",
    "https_port",
    "leaf",
    "leafnodes",
    "log_max_num",
    "log_size_limit",
    "logfile_max_num",
    "logfile_size_limit",
    "logtime_utc",
    "max_closed_clients",
    "max_traced_msg_len",
    "no_fast_producer_stall",
    "no_header_support",
    "no_sys_acc",
    "no_system_account",
    "ocsp",
    "ocsp_cache",
    "prof_block_rate",
    "prof_port",
    "proxies",
    "reconnect_error_reports",
    "remote_syslog",
    "server_metadata",
    "syslog",
    "trace_headers",
    "trace_verbose",
    "write_timeout",
];

/// Top-level keys of decentralized (JWT) authentication. Ignoring them
/// would run the server open to anyone, so they refuse the start.
const REFUSED: &[&str] = &["resolver_pinned_accounts", "resolver_tls", "trusted_keys"];

/// `jetstream { ... }` keys nats-server knows but this server does not act on.
const KNOWN_UNSUPPORTED_JETSTREAM: &[&str] = &[
    "domain",
    "extension_hint",
    "limits",
    "max_buffered_msgs",
    "max_buffered_size",
    "max_outstanding_catchup",
    "request_queue_limit",
    "unique_tag",
];

/// `jetstream { ... }` keys of encryption at rest. Ignoring them would
/// write in clear what the operator asked to encrypt, so they refuse the
/// start.
const REFUSED_JETSTREAM: &[&str] = &["cipher", "key", "prev_key", "tpm"];

pub(super) struct Reader {
    pub(super) warnings: Vec<Warning>,
}

impl Reader {
    pub(super) fn invalid<T>(
        &self,
        key: &str,
        value: &Located,
        message: impl Into<String>,
    ) -> Result<T, ConfError> {
        Err(ConfError::Invalid {
            at: value.loc(),
            key: key.to_string(),
            message: message.into(),
        })
    }

    pub(super) fn wrong_type<T>(
        &self,
        key: &str,
        value: &Located,
        expected: &str,
    ) -> Result<T, ConfError> {
        self.invalid(
            key,
            value,
            format!("expected {expected}, got {}", value.value.type_name()),
        )
    }

    pub(super) fn warn(&mut self, key: String, value: &Located, message: String) {
        self.warnings.push(Warning {
            key,
            line: value.line,
            message,
        });
    }

    pub(super) fn string(&self, key: &str, value: &Located) -> Result<String, ConfError> {
        match &value.value {
            Value::String(s) => Ok(s.clone()),
            _ => self.wrong_type(key, value, "a string"),
        }
    }

    pub(super) fn boolean(&self, key: &str, value: &Located) -> Result<bool, ConfError> {
        match value.value {
            Value::Bool(b) => Ok(b),
            _ => self.wrong_type(key, value, "a boolean (true/false, yes/no, on/off)"),
        }
    }

    pub(super) fn integer(&self, key: &str, value: &Located) -> Result<i64, ConfError> {
        match value.value {
            Value::Integer(i) => Ok(i),
            _ => self.wrong_type(key, value, "an integer"),
        }
    }

    fn unsigned(&self, key: &str, value: &Located) -> Result<u64, ConfError> {
        let i = self.integer(key, value)?;
        u64::try_from(i)
            .or_else(|_| self.invalid(key, value, format!("must not be negative, got {i}")))
    }

    /// An unsigned integer nats-server stores in an int32.
    fn unsigned_i32(&self, key: &str, value: &Located) -> Result<u64, ConfError> {
        let n = self.unsigned(key, value)?;
        if n > i32::MAX as u64 {
            return self.invalid(
                key,
                value,
                format!("value {n} is too big (at most {})", i32::MAX),
            );
        }
        Ok(n)
    }

    pub(super) fn port(&self, key: &str, value: &Located) -> Result<i32, ConfError> {
        let i = self.integer(key, value)?;
        i32::try_from(i).or_else(|_| self.invalid(key, value, format!("port {i} is out of range")))
    }

    pub(super) fn duration(&mut self, key: &str, value: &Located) -> Result<Duration, ConfError> {
        if let Value::Integer(i) = value.value {
            self.warn(
                key.to_string(),
                value,
                format!("{key} should be converted to a duration (\"{i}s\"); the integer is taken as seconds"),
            );
        }
        duration_of(key, value)
    }

    fn path(&self, key: &str, value: &Located) -> Result<PathBuf, ConfError> {
        self.string(key, value).map(PathBuf::from)
    }

    /// `host:port`, `:port`, `[v6]:port`, or an integer port. Returns the
    /// host (`Some(None)` when written empty, `None` when only a port was
    /// given) and the port.
    #[allow(clippy::type_complexity)]
    pub(super) fn host_port(
        &self,
        key: &str,
        value: &Located,
    ) -> Result<(Option<Option<String>>, i32), ConfError> {
        match &value.value {
            Value::Integer(_) => Ok((None, self.port(key, value)?)),
            Value::String(s) => {
                let Some((host, port)) = s.rsplit_once(':') else {
                    return self.invalid(
                        key,
                        value,
                        format!("could not parse address string \"{s}\""),
                    );
                };
                let port: i32 = port.parse().or_else(|_| {
                    self.invalid(key, value, format!("could not parse port \"{port}\""))
                })?;
                let host = host
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .unwrap_or(host);
                let host = if host.is_empty() {
                    None
                } else {
                    Some(host.to_string())
                };
                Ok((Some(host), port))
            }
            _ => self.wrong_type(key, value, "a port or host:port"),
        }
    }

    fn tags(&self, key: &str, value: &Located) -> Result<Vec<String>, ConfError> {
        match &value.value {
            Value::String(s) => Ok(vec![s.to_lowercase()]),
            Value::Array(items) => items
                .iter()
                .map(|item| self.string(key, item).map(|s| s.to_lowercase()))
                .collect(),
            _ => self.wrong_type(key, value, "a string or an array of strings"),
        }
    }

    /// A JetStream store size: an integer (size suffixes allowed; negative
    /// means unset) or a string with a `K`/`M`/`G`/`T` suffix, which
    /// nats-server reads in powers of 1024 (`"1G"` = 1073741824).
    fn store_size(&self, key: &str, value: &Located) -> Result<Option<u64>, ConfError> {
        match &value.value {
            Value::Integer(i) => Ok(u64::try_from(*i).ok()),
            Value::String(s) if s.is_empty() => Ok(None),
            Value::String(s) => {
                let Some(last) = s.chars().last() else {
                    return Ok(None);
                };
                let shift = match last {
                    'K' => 10,
                    'M' => 20,
                    'G' => 30,
                    'T' => 40,
                    _ => {
                        return self.invalid(
                            key,
                            value,
                            "sizes defined as strings must end in K, M, G, T",
                        );
                    }
                };
                let digits = s.get(..s.len() - 1).unwrap_or_default();
                let digits = digits.strip_prefix('+').unwrap_or(digits);
                let n: u64 = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                    digits.parse().or_else(|_| {
                        self.invalid(key, value, format!("size \"{s}\" is out of range"))
                    })?
                } else {
                    return self.invalid(key, value, format!("invalid size \"{s}\""));
                };
                n.checked_mul(1u64 << shift)
                    .filter(|n| *n <= i64::MAX as u64)
                    .map(Some)
                    .ok_or(())
                    .or_else(|_| self.invalid(key, value, format!("size \"{s}\" is out of range")))
            }
            _ => self.wrong_type(key, value, "a size (integer or string like \"1G\")"),
        }
    }

    /// `tls { cert_file, key_file, ca_file, verify, timeout, handshake_first }`;
    /// unknown keys are errors, as in nats-server ("error parsing tls config").
    pub(super) fn tls(&mut self, value: &Located) -> Result<TlsConf, ConfError> {
        let Value::Map(entries) = &value.value else {
            return self.wrong_type("tls", value, "a map");
        };
        let mut t = TlsConf::default();
        for (k, v) in entries {
            let name = format!("tls.{k}");
            match k.to_ascii_lowercase().as_str() {
                "cert_file" => t.cert_file = Some(self.path(&name, v)?),
                "key_file" => t.key_file = Some(self.path(&name, v)?),
                "ca_file" => t.ca_file = Some(self.path(&name, v)?),
                "verify" => t.verify = self.boolean(&name, v)?,
                "timeout" => {
                    t.timeout = Some(match v.value {
                        Value::Float(f) if f.is_finite() && f >= 0.0 => Duration::from_secs_f64(f),
                        Value::Integer(i) if i >= 0 => Duration::from_secs(i.unsigned_abs()),
                        _ => duration_of(&name, v)?,
                    });
                }
                "handshake_first" | "first" | "immediate" => {
                    // As nats-server: a boolean, `true`/`on`/`false`/`off`,
                    // `auto` (50 ms fallback) or a Go duration (that long).
                    let (first, fallback) = match &v.value {
                        Value::Bool(b) => (*b, None),
                        Value::String(s) => match s.to_ascii_lowercase().as_str() {
                            "true" | "on" => (true, None),
                            "false" | "off" => (false, None),
                            "auto" | "auto_fallback" => (
                                true,
                                Some(crate::config::DEFAULT_TLS_HANDSHAKE_FIRST_FALLBACK),
                            ),
                            other => match super::syntax::parse_duration(other) {
                                Ok(d) => (true, (!d.is_zero()).then_some(d)),
                                Err(_) => {
                                    return self.invalid(
                                        &name,
                                        v,
                                        format!("field {k:?}'s value {s:?} is invalid"),
                                    );
                                }
                            },
                        },
                        // An unquoted duration (`300ms`).
                        Value::Duration(d) => (true, (!d.is_zero()).then_some(*d)),
                        _ => {
                            return self.invalid(
                                &name,
                                v,
                                format!("field {k:?} should be a boolean or a string"),
                            );
                        }
                    };
                    t.handshake_first = first;
                    t.handshake_first_fallback = fallback;
                }
                lower if KNOWN_UNSUPPORTED_TLS.contains(&lower) => {
                    return self.invalid(
                        &name,
                        v,
                        format!("{k} is not supported yet by this server; refusing to start"),
                    );
                }
                _ if v.used_as_variable => {}
                _ => {
                    return self.invalid(
                        &name,
                        v,
                        format!("error parsing tls config, unknown field \"{k}\""),
                    );
                }
            }
        }
        Ok(t)
    }

    fn jetstream(&mut self, value: &Located) -> Result<JetStreamConf, ConfError> {
        let key = "jetstream";
        match &value.value {
            Value::Bool(b) => Ok(JetStreamConf {
                enabled: *b,
                ..JetStreamConf::default()
            }),
            Value::String(s) if s.eq_ignore_ascii_case("enabled") => Ok(JetStreamConf {
                enabled: true,
                ..JetStreamConf::default()
            }),
            Value::String(s) if s.eq_ignore_ascii_case("disabled") => Ok(JetStreamConf::default()),
            Value::String(s) => self.invalid(
                key,
                value,
                format!("expected 'enabled' or 'disabled', got '{s}'"),
            ),
            Value::Map(entries) => {
                let mut js = JetStreamConf {
                    enabled: true,
                    ..JetStreamConf::default()
                };
                for (k, v) in entries {
                    let name = format!("jetstream.{k}");
                    match k.to_ascii_lowercase().as_str() {
                        "enabled" | "enable" => js.enabled = self.boolean(&name, v)?,
                        "store_dir" | "storedir" | "store" => {
                            js.store_dir = Some(self.path(&name, v)?)
                        }
                        "max_mem_store" | "max_memory_store" | "max_mem" => {
                            js.max_memory_store = self.store_size(&name, v)?;
                        }
                        "max_file_store" | "max_file" => {
                            js.max_file_store = self.store_size(&name, v)?
                        }
                        "strict" => js.strict = Some(self.boolean(&name, v)?),
                        "sync_interval" | "sync" => {
                            js.sync_interval = Some(match &v.value {
                                Value::String(s) if s.eq_ignore_ascii_case("always") => {
                                    SyncInterval::Always
                                }
                                _ => SyncInterval::Every(self.duration(&name, v)?),
                            });
                        }
                        lower if REFUSED_JETSTREAM.contains(&lower) => {
                            return self.invalid(
                                &name,
                                v,
                                "encryption at rest is not supported yet by this server; \
                                 refusing to start rather than store in clear",
                            );
                        }
                        lower if KNOWN_UNSUPPORTED_JETSTREAM.contains(&lower) => {
                            self.warn(
                                name.clone(),
                                v,
                                format!("unsupported option '{name}' is ignored"),
                            );
                        }
                        _ if v.used_as_variable => {}
                        _ => self.warn(
                            name.clone(),
                            v,
                            format!("unknown field '{name}' is ignored"),
                        ),
                    }
                }
                Ok(js)
            }
            _ => self.wrong_type(key, value, "a map, a boolean, or 'enabled'/'disabled'"),
        }
    }
}

/// Reads the options this server supports out of a parsed configuration.
/// Later keys override earlier ones (nats-server applies them in an
/// unspecified order). Options nats-server knows but this server ignores, and
/// unknown keys (which nats-server itself rejects), give a [`Warning`]; a
/// supported option with a wrong type or an invalid value is an error.
pub fn server_conf(root: &Located) -> Result<(ServerConf, Vec<Warning>), ConfError> {
    let Value::Map(entries) = &root.value else {
        return Err(ConfError::Invalid {
            at: root.loc(),
            key: String::new(),
            message: format!(
                "the configuration must be a map, got {}",
                root.value.type_name()
            ),
        });
    };
    if entries.is_empty() {
        return Err(ConfError::Empty {
            file: root.file.as_ref().map(|f| f.to_path_buf()),
        });
    }
    let mut r = Reader {
        warnings: Vec::new(),
    };
    let mut c = ServerConf::default();
    let mut top_store_dir: Option<(PathBuf, &Located)> = None;
    for (key, v) in entries {
        let k = key.as_str();
        match key.to_ascii_lowercase().as_str() {
            "listen" => {
                let (host, port) = r.host_port(k, v)?;
                if let Some(host) = host {
                    c.host = host;
                }
                c.port = Some(port);
            }
            "host" | "net" => c.host = Some(r.string(k, v)?),
            "port" => c.port = Some(r.port(k, v)?),
            "server_name" => {
                let name = r.string(k, v)?;
                if name.contains(' ') {
                    return r.invalid(k, v, "server name cannot contain spaces");
                }
                c.server_name = Some(name);
            }
            "http" => {
                let (host, port) = r.host_port(k, v)?;
                if let Some(host) = host {
                    c.http_host = host;
                }
                c.http_port = Some(port);
            }
            "http_port" | "monitor_port" => c.http_port = Some(r.port(k, v)?),
            "max_payload" => c.max_payload = Some(r.unsigned_i32(k, v)?),
            "max_connections" | "max_conn" => c.max_connections = Some(r.unsigned(k, v)?),
            "max_subs" | "max_subscriptions" => c.max_subs = Some(r.unsigned(k, v)?),
            "max_control_line" => c.max_control_line = Some(r.unsigned_i32(k, v)?),
            "max_pending" => c.max_pending = Some(r.unsigned(k, v)?),
            "write_deadline" => c.write_deadline = Some(r.duration(k, v)?),
            "ping_interval" => c.ping_interval = Some(r.duration(k, v)?),
            "ping_max" => {
                let n = r.unsigned(k, v)?;
                c.ping_max = Some(
                    u32::try_from(n)
                        .or_else(|_| r.invalid(k, v, format!("{n} is out of range")))?,
                );
            }
            "debug" => c.debug = Some(r.boolean(k, v)?),
            "trace" => c.trace = Some(r.boolean(k, v)?),
            "logtime" => c.logtime = Some(r.boolean(k, v)?),
            "log_file" | "logfile" => c.log_file = Some(r.path(k, v)?),
            "pid_file" | "pidfile" => c.pid_file = Some(r.path(k, v)?),
            "ports_file_dir" => c.ports_file_dir = Some(r.path(k, v)?),
            "server_tags" => c.server_tags = r.tags(k, v)?,
            "jetstream" => c.jetstream = Some(r.jetstream(v)?),
            "store_dir" => top_store_dir = Some((r.path(k, v)?, v)),
            "tls" => c.tls = Some(r.tls(v)?),
            "websocket" | "ws" => match v.value {
                Value::Map(_) => c.websocket = Some(v.clone()),
                _ => return r.wrong_type(k, v, "a map"),
            },
            "mqtt" => match v.value {
                Value::Map(_) => c.mqtt = Some(v.clone()),
                _ => return r.wrong_type(k, v, "a map"),
            },
            "authorization" => match v.value {
                Value::Map(_) => c.authorization = Some(v.clone()),
                _ => return r.wrong_type(k, v, "a map"),
            },
            "accounts" => match v.value {
                Value::Map(_) => c.accounts = Some(v.clone()),
                _ => return r.wrong_type(k, v, "a map"),
            },
            "no_auth_user" => c.no_auth_user = Some(r.string(k, v)?),
            "mappings" | "maps" => match v.value {
                Value::Map(_) => c.mappings = Some(v.clone()),
                _ => return r.wrong_type(k, v, "a map"),
            },
            "lame_duck_duration" => {
                let d = r.duration(k, v)?;
                if d < Duration::from_secs(30) {
                    return r.invalid(k, v, format!("{d:?} is too short, minimum is 30 seconds"));
                }
                c.lame_duck_duration = Some(d);
            }
            "lame_duck_grace_period" => c.lame_duck_grace_period = Some(r.duration(k, v)?),
            "operator" | "operators" | "trusted" => c.operator = Some(v.clone()),
            "resolver" => c.resolver = Some(v.clone()),
            "resolver_preload" => match v.value {
                Value::Map(_) => c.resolver_preload = Some(v.clone()),
                _ => return r.wrong_type(k, v, "a map"),
            },
            "system_account" | "system" => match v.value {
                Value::String(_) => c.system_account = Some(v.clone()),
                _ => return r.wrong_type(k, v, "a string"),
            },
            lower if REFUSED.contains(&lower) => {
                return r.invalid(
                    k,
                    v,
                    "is not supported yet by this server in operator mode; \
                     refusing to start rather than run without it",
                );
            }
            lower if KNOWN_UNSUPPORTED.contains(&lower) => {
                r.warn(
                    key.clone(),
                    v,
                    format!("unsupported option '{key}' is ignored"),
                );
            }
            _ if v.used_as_variable => {}
            _ => r.warn(
                key.clone(),
                v,
                format!("unknown field '{key}' is ignored (nats-server rejects it)"),
            ),
        }
    }
    if let Some((dir, v)) = top_store_dir {
        if let Some(js) = c.jetstream.as_mut() {
            if js.store_dir.is_some() {
                return r.invalid("store_dir", v, "Duplicate 'store_dir' configuration");
            }
            js.store_dir = Some(dir);
        }
    }
    Ok((c, r.warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::parse;
    use crate::conf::syntax::tests::p;
    use std::path::Path;

    const REALISTIC: &str = include_str!("testdata/realistic.conf");

    fn sc(text: &str) -> (ServerConf, Vec<Warning>) {
        server_conf(&p(text)).expect("server_conf")
    }

    fn sc_err(text: &str) -> String {
        match server_conf(&p(text)) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn no_panic_on_prefixes_and_corruptions() {
        let env = |name: &str| {
            if name == "X" {
                Some("[1, {a: ".to_string())
            } else {
                None
            }
        };
        let check = |text: &str| {
            if let Ok(root) = parse(text, Path::new("fuzz.conf"), &env) {
                let _ = server_conf(&root);
            }
        };
        let text = REALISTIC;
        for (i, _) in text.char_indices() {
            check(&text[..i]);
            check(&text[i..]);
        }
        // Single-byte substitutions with syntax characters.
        let specials = [
            "{", "}", "[", "]", "\"", "'", "$", "\\", "#", "/", ":", "=", ",", ";", "\n", "-", ".",
            "$X", "\u{e9}",
        ];
        for (i, _) in text.char_indices().step_by(3) {
            for sp in specials {
                let mut mutated = String::from(&text[..i]);
                mutated.push_str(sp);
                let rest = &text[i..];
                let skip = rest.chars().next().map_or(0, char::len_utf8);
                mutated.push_str(&rest[skip..]);
                check(&mutated);
            }
        }
        // Odd inputs.
        for odd in [
            "\u{feff}port: 1",
            "\0",
            "\"\\",
            "'",
            "$",
            "-",
            ".",
            "k: -",
            "k: \"\\u12",
            "k: \"\\uD800\"",
            "{",
            "}",
            "[",
            "]",
            "a{b{c{",
            "include",
            "include ",
            "include \"",
            "k: $X",
        ] {
            check(odd);
        }
    }

    #[test]
    fn realistic_config() {
        let root = p(REALISTIC);
        let (c, warnings) = server_conf(&root).expect("server_conf");
        assert_eq!(c.server_name.as_deref(), Some("hub-1"));
        assert_eq!(c.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(c.port, Some(4222));
        assert_eq!(c.http_host.as_deref(), Some("127.0.0.1"));
        assert_eq!(c.http_port, Some(-1));
        assert_eq!(c.max_payload, Some(8 << 20));
        assert_eq!(c.max_pending, Some(64 << 20));
        assert_eq!(c.ping_interval, Some(Duration::from_secs(120)));
        assert_eq!(c.write_deadline, Some(Duration::from_secs(10)));
        assert_eq!(c.ping_max, Some(3));
        assert_eq!(
            (c.debug, c.trace, c.logtime),
            (Some(false), Some(false), Some(true))
        );
        assert_eq!(c.server_tags, ["region:eu", "az:1", "plain"]);
        let js = c.jetstream.expect("js");
        assert!(js.enabled);
        assert_eq!(js.store_dir.as_deref(), Some(Path::new("/var/lib/nats")));
        assert_eq!(js.max_memory_store, Some(1_000_000_000));
        assert_eq!(js.max_file_store, Some(10 << 30));
        assert_eq!(js.sync_interval, Some(SyncInterval::Always));
        let auth = c.authorization.expect("auth");
        let users = auth
            .get("users")
            .and_then(Located::as_array)
            .expect("users");
        assert_eq!(
            users[0].get("password").and_then(Located::as_str),
            Some("s3cr\"té")
        );
        assert_eq!(c.lame_duck_duration, Some(Duration::from_secs(120)));
        // `cluster` is known to nats-server but unsupported here; PASS was used
        // as a variable so it is not reported.
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].key, "cluster");
        assert_eq!(warnings[0].line, 31);
    }

    // --- typed layer ---

    #[test]
    fn listen_and_http_forms() {
        let (c, _) = sc("listen: 127.0.0.1:4222");
        assert_eq!((c.host.as_deref(), c.port), (Some("127.0.0.1"), Some(4222)));
        let (c, _) = sc("host: 1.2.3.4\nlisten: 4223");
        assert_eq!((c.host.as_deref(), c.port), (Some("1.2.3.4"), Some(4223)));
        let (c, _) = sc("host: 1.2.3.4\nlisten: \":4224\"");
        assert_eq!((c.host, c.port), (None, Some(4224)));
        let (c, _) = sc("listen: \"[::1]:4225\"");
        assert_eq!((c.host.as_deref(), c.port), (Some("::1"), Some(4225)));
        let (c, _) = sc("listen: 127.0.0.1:-1");
        assert_eq!(c.port, Some(-1));
        let (c, _) = sc("net: 0.0.0.0\nport: -1");
        assert_eq!((c.host.as_deref(), c.port), (Some("0.0.0.0"), Some(-1)));
        let (c, _) = sc("listen: 127.0.0.1:1\nport: 2");
        assert_eq!(c.port, Some(2), "later keys win");
        let (c, _) = sc("http: 127.0.0.1:-1");
        assert_eq!(
            (c.http_host.as_deref(), c.http_port),
            (Some("127.0.0.1"), Some(-1))
        );
        let (c, _) = sc("http: 8222");
        assert_eq!((c.http_host, c.http_port), (None, Some(8222)));
        let (c, _) = sc("http_port: 8223");
        assert_eq!(c.http_port, Some(8223));
        let (c, _) = sc("monitor_port: -1");
        assert_eq!(c.http_port, Some(-1));
        assert_eq!(
            sc_err("listen: abc"),
            "test.conf:1: listen: could not parse address string \"abc\""
        );
        assert!(sc_err("listen: \":\"").contains("could not parse port"));
        assert!(sc_err("listen: 1.5").contains("expected a port or host:port, got float"));
        assert!(sc_err("http: \"abc\"").contains("http: could not parse address"));
        assert!(sc_err("port: 99999999999").contains("out of range"));
    }

    #[test]
    fn scalar_options() {
        let (c, w) = sc(
            "max_payload: 1MB\nmax_connections: 100\nmax_conn: 200\nmax_control_line: 4KB\nmax_pending: 100TB\nping_max: 5\ndebug: yes\ntrace: on\nlogtime: false\nlogfile: /tmp/l.log\npidfile: /tmp/p.pid\nports_file_dir: /tmp\nserver_name: n1\nlame_duck_duration: \"30s\"\nlame_duck_grace_period: \"5s\"",
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.max_payload, Some(1 << 20));
        assert_eq!(c.max_connections, Some(200));
        assert_eq!(c.max_control_line, Some(4096));
        assert_eq!(c.max_pending, Some(100 << 40));
        assert_eq!(c.ping_max, Some(5));
        assert_eq!(
            (c.debug, c.trace, c.logtime),
            (Some(true), Some(true), Some(false))
        );
        assert_eq!(c.log_file.as_deref(), Some(Path::new("/tmp/l.log")));
        assert_eq!(c.pid_file.as_deref(), Some(Path::new("/tmp/p.pid")));
        assert_eq!(c.ports_file_dir.as_deref(), Some(Path::new("/tmp")));
        assert_eq!(c.server_name.as_deref(), Some("n1"));
        assert_eq!(c.lame_duck_duration, Some(Duration::from_secs(30)));
        assert_eq!(c.lame_duck_grace_period, Some(Duration::from_secs(5)));
        let (c, _) = sc("log_file: a\npid_file: b");
        assert_eq!(
            (c.log_file, c.pid_file),
            (Some(PathBuf::from("a")), Some(PathBuf::from("b")))
        );
        let (c, _) = sc("server_tags: Single");
        assert_eq!(c.server_tags, ["single"]);
    }

    #[test]
    fn durations_as_integers_warn() {
        let (c, w) = sc("ping_interval: 20\nwrite_deadline: \"10s\"");
        assert_eq!(c.ping_interval, Some(Duration::from_secs(20)));
        assert_eq!(c.write_deadline, Some(Duration::from_secs(10)));
        assert_eq!(w.len(), 1);
        assert_eq!((w[0].key.as_str(), w[0].line), ("ping_interval", 1));
        assert!(w[0].message.contains("should be converted to a duration"));
        // A bare `2m` is the integer 2000000 in nats-server, hence seconds.
        let (c, w) = sc("ping_interval: 2m");
        assert_eq!(c.ping_interval, Some(Duration::from_secs(2_000_000)));
        assert_eq!(w.len(), 1);
        let (c, _) = sc("ping_interval: 1h30m");
        assert_eq!(c.ping_interval, Some(Duration::from_secs(5400)));
    }

    #[test]
    fn wrong_types_are_errors_naming_key_and_line() {
        assert_eq!(
            sc_err("a: 1\nport: abc"),
            "test.conf:2: port: expected an integer, got string"
        );
        assert_eq!(
            sc_err("debug: enabled"),
            "test.conf:1: debug: expected a boolean (true/false, yes/no, on/off), got string"
        );
        assert!(sc_err("debug: \"true\"").contains("debug: expected a boolean"));
        assert!(sc_err("debug: 1").contains("got integer"));
        assert!(sc_err("server_name: 1").contains("server_name: expected a string, got integer"));
        assert!(sc_err("server_name: \"a b\"").contains("cannot contain spaces"));
        assert!(sc_err("max_payload: 1.5").contains("max_payload: expected an integer, got float"));
        assert!(sc_err("max_payload: 2GB").contains("too big"));
        assert!(sc_err("max_payload: -5").contains("must not be negative"));
        assert!(sc_err("max_control_line: 5GB").contains("too big"));
        assert!(
            sc_err("ping_interval: bogus").contains("ping_interval: invalid duration \"bogus\"")
        );
        assert!(sc_err("ping_interval: 1.5").contains("got float"));
        assert!(sc_err("ping_max: 1.5").contains("ping_max"));
        assert!(sc_err("lame_duck_duration: \"1s\"").contains("minimum is 30 seconds"));
        assert!(sc_err("authorization: 1").contains("authorization: expected a map"));
        assert!(sc_err("server_tags: 1").contains("server_tags"));
        assert!(
            sc_err("server_tags: [a, [b]]").contains("server_tags: expected a string, got array")
        );
        assert!(sc_err("log_file: 1").contains("log_file"));
        assert!(sc_err("\n\njetstream: 1").starts_with("test.conf:3: jetstream:"));
    }

    #[test]
    fn jetstream_forms() {
        let js = |t: &str| sc(t).0.jetstream.expect("jetstream");
        assert!(js("jetstream: enabled").enabled);
        assert!(js("jetstream: ENABLED").enabled);
        assert!(js("jetstream: \"enabled\"").enabled);
        assert!(js("jetstream: true").enabled);
        assert!(js("jetstream: yes").enabled);
        assert!(js("jetstream: on").enabled);
        assert!(!js("jetstream: disabled").enabled);
        assert!(!js("jetstream: false").enabled);
        assert!(!js("jetstream: off").enabled);
        assert!(js("jetstream {}").enabled);
        assert!(!js("jetstream { enabled: false }").enabled);
        assert!(!js("jetstream { enable: false }").enabled);
        assert!(
            sc_err("jetstream: maybe").contains("expected 'enabled' or 'disabled', got 'maybe'")
        );
        assert!(sc_err("jetstream: \"true\"").contains("expected 'enabled' or 'disabled'"));
        for key in ["store_dir", "storedir", "store", "Store_Dir"] {
            assert_eq!(
                js(&format!("jetstream {{ {key}: /d }}")).store_dir,
                Some(PathBuf::from("/d")),
                "{key}"
            );
        }
        for key in [
            "max_mem_store",
            "max_memory_store",
            "max_mem",
            "MAX_MEM_STORE",
        ] {
            assert_eq!(
                js(&format!("jetstream {{ {key}: 1G }}")).max_memory_store,
                Some(1_000_000_000),
                "{key}"
            );
        }
        for key in ["max_file_store", "max_file"] {
            assert_eq!(
                js(&format!("jetstream {{ {key}: 10GB }}")).max_file_store,
                Some(10 << 30),
                "{key}"
            );
        }
        // Strings use powers of 1024 and need an upper-case K/M/G/T suffix.
        assert_eq!(
            js("jetstream { max_mem_store: \"1G\" }").max_memory_store,
            Some(1 << 30)
        );
        assert_eq!(
            js("jetstream { max_mem_store: \"+2K\" }").max_memory_store,
            Some(2048)
        );
        assert_eq!(
            js("jetstream { max_mem_store: \"\" }").max_memory_store,
            None
        );
        assert_eq!(js("jetstream { max_mem_store: -1 }").max_memory_store, None);
        assert_eq!(
            js("jetstream { max_mem_store: 0 }").max_memory_store,
            Some(0)
        );
        assert!(sc_err("jetstream { max_mem_store: \"1g\" }").contains("must end in K, M, G, T"));
        assert!(sc_err("jetstream { max_mem_store: \"1024\" }").contains("must end in K, M, G, T"));
        assert!(sc_err("jetstream { max_mem_store: \"1.5G\" }").contains("invalid size"));
        assert!(sc_err("jetstream { max_mem_store: 1.5 }").contains("got float"));
        assert_eq!(js("jetstream { strict: yes }").strict, Some(true));
        assert!(sc_err("jetstream { strict: 1 }").contains("jetstream.strict"));
        assert_eq!(
            js("jetstream { sync_interval: always }").sync_interval,
            Some(SyncInterval::Always)
        );
        assert_eq!(
            js("jetstream { sync_interval: \"ALWAYS\" }").sync_interval,
            Some(SyncInterval::Always)
        );
        assert_eq!(
            js("jetstream { sync: 2s }").sync_interval,
            Some(SyncInterval::Every(Duration::from_secs(2)))
        );
        assert!(sc_err("jetstream { sync_interval: soon }").contains("jetstream.sync_interval"));
        // Top-level store_dir feeds JetStream; both at once is an error.
        assert_eq!(
            js("store_dir: /top\njetstream: enabled").store_dir,
            Some(PathBuf::from("/top"))
        );
        assert!(
            sc_err("store_dir: /a\njetstream { store_dir: /b }").contains("Duplicate 'store_dir'")
        );
        assert!(sc("store_dir: /a").0.jetstream.is_none());
        let (_, w) = sc("jetstream {\n domain: hub\n bogus: 1\n}");
        assert_eq!(w.len(), 2);
        assert_eq!((w[0].key.as_str(), w[0].line), ("jetstream.domain", 2));
        assert!(w[0].message.contains("unsupported"));
        assert_eq!((w[1].key.as_str(), w[1].line), ("jetstream.bogus", 3));
        assert!(w[1].message.contains("unknown"));
    }

    #[test]
    fn unsupported_and_unknown_keys_warn() {
        let (c, w) = sc(
            "port: 1\ncluster { name: x }\nfoo: bar\nOCSP { }\nV: 1\nmax_closed_clients: $V\nmax_subs: $V",
        );
        let got: Vec<(&str, usize)> = w.iter().map(|w| (w.key.as_str(), w.line)).collect();
        assert_eq!(
            got,
            [
                ("cluster", 2),
                ("foo", 3),
                ("OCSP", 4),
                ("max_closed_clients", 6)
            ]
        );
        assert_eq!(c.max_subs, Some(1), "max_subs is read (and enforced)");
        assert!(w[0].message.contains("unsupported option 'cluster'"));
        assert!(w[1].message.contains("unknown field 'foo'"));
    }

    #[test]
    fn tls_block() {
        let (c, w) = sc(
            "tls {\n  cert_file: \"/c.pem\"\n  key_file: '/k.pem'\n  ca_file: /ca.pem\n  verify: true\n  timeout: 0.5\n  handshake_first: true\n}",
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            c.tls,
            Some(TlsConf {
                cert_file: Some("/c.pem".into()),
                key_file: Some("/k.pem".into()),
                ca_file: Some("/ca.pem".into()),
                verify: true,
                timeout: Some(Duration::from_millis(500)),
                handshake_first: true,
                handshake_first_fallback: None,
            })
        );
        let timeout = |t: &str| {
            sc(&format!("tls {{ timeout: {t} }}"))
                .0
                .tls
                .and_then(|t| t.timeout)
        };
        assert_eq!(timeout("3"), Some(Duration::from_secs(3)));
        assert_eq!(timeout("\"1500ms\""), Some(Duration::from_millis(1500)));
        assert!(sc_err("tls { foo: 1 }").contains("unknown field \"foo\""));
        assert!(sc_err("tls { timeout: \"abc\" }").contains("tls.timeout"));
        assert!(sc_err("tls { verify_and_map: true }").contains("refusing to start"));
        let first = |v: &str| {
            let t = sc(&format!("tls {{ handshake_first: {v} }}"))
                .0
                .tls
                .expect("tls block");
            (t.handshake_first, t.handshake_first_fallback)
        };
        assert_eq!(first("\"300ms\""), (true, Some(Duration::from_millis(300))));
        assert_eq!(first("auto"), (true, Some(Duration::from_millis(50))));
        assert_eq!(
            first("\"AUTO_FALLBACK\""),
            (true, Some(Duration::from_millis(50)))
        );
        assert_eq!(first("on"), (true, None));
        assert_eq!(first("\"off\""), (false, None));
        assert_eq!(first("\"0s\""), (true, None));
        assert_eq!(first("1s"), (true, Some(Duration::from_secs(1))));
        assert!(
            sc_err("tls { handshake_first: \"soon\" }")
                .contains("field \"handshake_first\"'s value \"soon\" is invalid")
        );
        assert!(sc_err("tls { handshake_first: 3 }").contains("should be a boolean or a string"));
        assert!(sc_err("tls: 1").contains("expected a map"));
    }

    #[test]
    fn authorization_is_kept_raw() {
        let (c, w) = sc("authorization {\n  token: \"s3cret\"\n  timeout: 1\n}");
        assert!(w.is_empty());
        let auth = c.authorization.expect("auth");
        assert_eq!(auth.line, 1);
        assert_eq!(auth.get("token").and_then(Located::as_str), Some("s3cret"));
        assert_eq!(auth.get("timeout").map(|t| t.line), Some(3));
    }

    #[test]
    fn keys_whose_absence_lowers_protection_refuse_the_start() {
        for key in ["resolver_pinned_accounts: [A]", "trusted_keys: [\"O1\"]"] {
            let e = sc_err(&format!("port: 4222\n{key}\n"));
            assert!(e.starts_with("test.conf:2: "), "{e}");
            assert!(e.contains("refusing to start"), "{e}");
        }
    }

    #[test]
    fn empty_config_is_an_error() {
        let e = server_conf(&p("# nothing\n")).expect_err("empty");
        assert_eq!(e.to_string(), "test.conf: config has no values or is empty");
        let e = server_conf(&Located::new(Value::Integer(1), 1)).expect_err("not a map");
        assert!(e.to_string().contains("must be a map"));
    }
}
