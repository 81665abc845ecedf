//! From nats-server's command line to a [`ServerConfig`]: the one merge of
//! defaults, configuration file and flags, shared by the
//! `angzarr-nats-server` binary and `angzarr-bus server`.
//!
//! Layering, lowest first: the caller's defaults (nats-server's, or the
//! bus tool's, which turns JetStream on), then the file given with `-c`
//! (read by `conf`), then the flags. Settings that cannot be
//! honoured are errors ([`OptionsError`], naming the file, key and line, or
//! the flag), never silently dropped. This module reads files but starts
//! nothing.

use std::path::{Path, PathBuf};

use crate::cli::Cli;
use crate::conf::{self, BlockError, ConfError, ServerConf, SyncInterval, TlsConf, WebSocketConf};
use crate::config::{
    Auth, JetStreamConfig, ListenerAuth, Login, MqttConfig, ServerConfig, SyncPolicy, TlsConfig,
    User, WebSocketConfig,
};

/// What the command line and configuration file ask for.
#[derive(Debug)]
pub struct Options {
    /// The server to start.
    pub config: ServerConfig,
    /// Options read but not acted on, one line each (`file:line: key (why)`).
    pub warnings: Vec<String>,
    /// `-l` / `log_file`.
    pub log_file: Option<PathBuf>,
    /// `-P` / `pid_file`.
    pub pid_file: Option<PathBuf>,
    /// `--ports_file_dir` / `ports_file_dir`.
    pub ports_file_dir: Option<PathBuf>,
}

/// Why the command line and configuration cannot be turned into a server.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    /// The configuration file could not be read, or a key in it is wrong.
    #[error(transparent)]
    Conf(#[from] ConfError),
    /// The file's `authorization {}` block is wrong or asks for what this
    /// server cannot enforce.
    #[error("{}: authorization: {source}", file.display())]
    Authorization {
        /// The configuration file.
        file: PathBuf,
        /// What is wrong, with its line.
        source: BlockError,
    },
    /// The file's `accounts {}` block is wrong or asks for what this server
    /// cannot enforce.
    #[error("{}: accounts: {source}", file.display())]
    Accounts {
        /// The configuration file.
        file: PathBuf,
        /// What is wrong, with its line.
        source: BlockError,
    },
    /// The file's top-level `mappings {}` block is wrong.
    #[error("{}: {source}", file.display())]
    Mappings {
        /// The configuration file.
        file: PathBuf,
        /// What is wrong, with its line.
        source: BlockError,
    },
    /// `no_auth_user` without any `users` (in `authorization {}` or an
    /// account) to name.
    #[error("{}: no_auth_user: \"{name}\" present, but users/nkeys are not defined", file.display())]
    NoAuthUserWithoutUsers {
        /// The configuration file.
        file: PathBuf,
        /// The name given.
        name: String,
    },
    /// `no_auth_user` names none of the users.
    #[error("{}: no_auth_user: \"{name}\" not present as user or nkey in authorization block or account configuration", file.display())]
    NoAuthUserUnknown {
        /// The configuration file.
        file: PathBuf,
        /// The name given.
        name: String,
    },
    /// A port outside 1..=65535 (`-1` and `0` mean a free port).
    #[error("invalid {what} {value}: pass a port from 1 to 65535, or -1 for a free one")]
    Port {
        /// `port` or `http port`.
        what: &'static str,
        /// As given.
        value: i32,
    },
    /// The file's `tls {}` block lacks a certificate or key.
    #[error("{}: missing '{key}' in TLS configuration", file.display())]
    TlsIncomplete {
        /// The configuration file.
        file: PathBuf,
        /// `cert_file` or `key_file`.
        key: &'static str,
    },
    /// A `--tls*` flag without `--tlscert`.
    #[error("TLS Server certificate must be present and valid")]
    TlsCertMissing,
    /// A `--tls*` flag without `--tlskey`.
    #[error("TLS Server private key must be present and valid")]
    TlsKeyMissing,
    /// A `websocket {}` block with a port but neither `tls {}` nor
    /// `no_tls: true` (nats-server's message).
    #[error("{}: line {line}: websocket requires TLS configuration", file.display())]
    WebSocketWithoutTls {
        /// The configuration file.
        file: PathBuf,
        /// Line of the block.
        line: usize,
    },
    /// Operator mode (`operator`, `resolver`, `resolver_preload`) is
    /// wrong: a JWT that does not verify, an account this server cannot
    /// honour, or a combination nats-server refuses.
    #[error("{}: {key}: {message}", file.display())]
    Operator {
        /// The configuration file.
        file: PathBuf,
        /// The key (`operator`, `resolver_preload`, ...).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A listener block's (`mqtt`, `websocket`) `authorization {}` /
    /// `no_auth_user` cannot be served with the server's other
    /// authentication.
    #[error("{}: {source}", file.display())]
    ListenerAuth {
        /// The configuration file.
        file: PathBuf,
        /// What is wrong.
        source: ListenerAuthError,
    },
    /// `--user`/`--pass`/`--auth` with operator mode in the file.
    #[error("--user, --pass and --auth cannot be combined with operator mode (JWT authentication)")]
    AuthFlagsInOperatorMode,
    /// `--user` without `--pass` (or the reverse), or with `--auth`.
    #[error("use either --user with --pass, or --auth (a token)")]
    AuthFlags,
}

/// Why a listener block's (`mqtt`, `websocket`) own authentication
/// refuses the start (nats-server's messages where it has one); each
/// names the block.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ListenerAuthError {
    /// `authorization { user }` beside `users`.
    #[error("{0} authentication username not compatible with presence of users/nkeys")]
    UserWithUsers(&'static str),
    /// `authorization { token }` beside `users`.
    #[error("{0} authentication token not compatible with presence of users/nkeys")]
    TokenWithUsers(&'static str),
    /// `no_auth_user` in operator mode.
    #[error("no_auth_user not compatible with Trusted Operator")]
    NoAuthUserWithOperator,
    /// `authorization { user | token }` in operator mode, where every
    /// client must present a user JWT.
    #[error(
        "{0} authorization user/token cannot be used in operator mode (clients must present a \
         user JWT); refusing to start"
    )]
    CredentialsWithOperator(&'static str),
}

fn port(value: i32, what: &'static str) -> Result<u16, OptionsError> {
    match value {
        -1 | 0 => Ok(0),
        p => u16::try_from(p).map_err(|_| OptionsError::Port { what, value }),
    }
}

/// Reads `cli.config` (if any) over `defaults`, then applies the flags.
/// Flags nats-server has but this server does not implement become
/// warnings; callers that must refuse them check [`Cli::unsupported`]
/// first.
pub fn from_cli(cli: &Cli, defaults: ServerConfig) -> Result<Options, OptionsError> {
    let mut options = Options {
        config: defaults,
        warnings: Vec::new(),
        log_file: None,
        pid_file: None,
        ports_file_dir: None,
    };
    if let Some(path) = &cli.config {
        let root = conf::parse_file(path)?;
        let (file, warnings) = conf::server_conf(&root)?;
        for w in warnings {
            options.warnings.push(format!(
                "{}:{}: {} ({})",
                path.display(),
                w.line,
                w.key,
                w.message
            ));
        }
        apply_file(&mut options, file, path)?;
    }
    apply_flags(&mut options, cli)?;
    Ok(options)
}

/// The configuration file's settings over the defaults.
fn apply_file(options: &mut Options, c: ServerConf, path: &Path) -> Result<(), OptionsError> {
    let operator = conf::operator_from_conf(&c)?;
    let operator_conflicts = [
        ("authorization", c.authorization.is_some()),
        ("accounts", c.accounts.is_some()),
        ("no_auth_user", c.no_auth_user.is_some()),
    ];
    let system_account_line = c.system_account.as_ref().map(|v| v.line);
    let config = &mut options.config;
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
    let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    if let Some(v) = c.max_payload {
        config.max_payload = size(v);
    }
    if let Some(v) = c.max_connections {
        config.max_connections = size(v);
    }
    if let Some(v) = c.max_subs {
        config.max_subs = size(v);
    }
    if let Some(v) = c.max_control_line {
        config.max_control_line = size(v);
    }
    if let Some(v) = c.max_pending {
        config.max_pending = size(v);
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
    options.log_file = c.log_file;
    options.pid_file = c.pid_file;
    options.ports_file_dir = c.ports_file_dir;
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
            Some(SyncInterval::Every(d)) => SyncPolicy::Interval(d),
            _ => SyncPolicy::Always,
        };
        config.jetstream = Some(js);
    }
    if let Some(t) = &c.tls {
        config.tls = Some(tls_from_file(t, path)?);
    }
    if let Some(block) = &c.authorization {
        let (auth, timeout) =
            conf::authorization_from_conf(block).map_err(|source| OptionsError::Authorization {
                file: path.to_path_buf(),
                source,
            })?;
        config.auth = auth;
        if let Some(t) = timeout {
            config.auth_timeout = t;
        }
    }
    if let Some(block) = &c.accounts {
        let accounts_error = |source| OptionsError::Accounts {
            file: path.to_path_buf(),
            source,
        };
        let accounts = conf::accounts_from_conf(block).map_err(accounts_error)?;
        config.auth = conf::merge_users(config.auth.take(), &accounts).map_err(accounts_error)?;
        config.accounts = accounts;
    }
    if let Some(block) = &c.mappings {
        config.mappings =
            conf::mappings_from_conf(block).map_err(|source| OptionsError::Mappings {
                file: path.to_path_buf(),
                source,
            })?;
    }
    // The `users` (of `authorization {}` and of the accounts), by user
    // name or nkey: the users nats-server lets `no_auth_user` name.
    let mut listed = c
        .authorization
        .as_ref()
        .map(conf::authorization::listed_users)
        .unwrap_or_default();
    for a in &config.accounts {
        listed.extend(a.users.iter().map(|u| match &u.login {
            Login::Password(p) => p.name.clone(),
            Login::Nkey(k) => k.clone(),
        }));
    }
    if let Some(name) = c.no_auth_user {
        check_no_auth_user(&listed, &name, path)?;
        config.no_auth_user = Some(name);
    }
    match &operator {
        Some(op) => operator_mode(options, operator_conflicts, op, path)?,
        None => {
            if let Some(line) = system_account_line {
                options.warnings.push(format!(
                    "{}:{line}: system_account (ignored outside operator mode by this server)",
                    path.display(),
                ));
            }
        }
    }
    if let Some(block) = &c.websocket {
        let (w, warnings) = conf::websocket_from_conf(block)?;
        for w in warnings {
            options.warnings.push(format!(
                "{}:{}: {} ({})",
                path.display(),
                w.line,
                w.key,
                w.message
            ));
        }
        options.config.websocket = websocket_from_file(&w, (&listed, operator.is_some()), path)?;
    }
    if let Some(block) = &c.mqtt {
        let (m, warnings) = conf::mqtt_from_conf(block)?;
        for w in warnings {
            options.warnings.push(format!(
                "{}:{}: {} ({})",
                path.display(),
                w.line,
                w.key,
                w.message
            ));
        }
        // As nats-server: no port (or 0) means no listener; the host
        // defaults to 0.0.0.0.
        if let Some(p) = m.port.filter(|p| *p != 0) {
            let mut mqtt = MqttConfig::new(
                m.host.clone().unwrap_or_else(|| "0.0.0.0".to_owned()),
                port(p, "mqtt port")?,
            );
            // 0 means the default, as in nats-server.
            if let Some(w) = m.ack_wait.filter(|w| !w.is_zero()) {
                mqtt.ack_wait = w;
            }
            if let Some(n) = m.max_ack_pending.filter(|n| *n > 0) {
                mqtt.max_ack_pending = n;
            }
            mqtt.reject_qos2_publish = m.reject_qos2_publish;
            mqtt.downgrade_qos2_subscribe = m.downgrade_qos2_subscribe;
            if let Some(t) = &m.tls {
                mqtt.tls = Some(tls_from_file(t, path)?);
            }
            let operator_mode = operator.is_some();
            (mqtt.auth, mqtt.auth_timeout) = listener_auth(
                "mqtt",
                m.authorization.as_ref(),
                m.no_auth_user.as_deref(),
                (&listed, operator_mode),
                path,
            )?;
            options.config.mqtt = Some(mqtt);
        }
    }
    Ok(())
}

/// Operator mode: verifies the operator and account JWTs and turns each
/// account into an `accounts` entry named by its public key (with its
/// JetStream limits), judged at CONNECT by a [`crate::jwt::Trust`].
fn operator_mode(
    options: &mut Options,
    conflicts: [(&str, bool); 3],
    op: &conf::OperatorConf,
    path: &Path,
) -> Result<(), OptionsError> {
    use crate::config::AccountConfig;
    let err = |key: &str, message: String| OptionsError::Operator {
        file: path.to_path_buf(),
        key: key.to_owned(),
        message,
    };
    for (key, set) in conflicts {
        if set {
            return Err(err(
                key,
                "cannot be combined with operator mode (JWT authentication)".to_owned(),
            ));
        }
    }
    let operators = op
        .operators
        .iter()
        .map(|t| crate::jwt::operator(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err("operator", e.to_string()))?;
    let mut jwts: Vec<(String, String, String)> = Vec::new();
    if let conf::ResolverConf::Dir { dir } = &op.resolver {
        // As nats-server's directory resolver: a directory that does not
        // exist yet is created (a fresh volume), where pushed JWTs land.
        std::fs::create_dir_all(dir)
            .map_err(|e| err("resolver", format!("cannot create {}: {e}", dir.display())))?;
        let entries = std::fs::read_dir(dir)
            .map_err(|e| err("resolver", format!("cannot read {}: {e}", dir.display())))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "jwt"))
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f)
                .map_err(|e| err("resolver", format!("cannot read {}: {e}", f.display())))?;
            let key = f
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let jwt = conf::operator::jwt_in_text(&text).unwrap_or(text);
            jwts.push((key, jwt, format!("resolver ({})", f.display())));
        }
    }
    for (key, jwt, line) in &op.preload {
        jwts.push((
            key.clone(),
            jwt.clone(),
            format!("resolver_preload (line {line})"),
        ));
    }
    let mut trusted = Vec::new();
    for (key, jwt, at) in jwts {
        let a = crate::jwt::account(&jwt, &operators)
            .map_err(|e| err(&at, format!("account {key}: {e}")))?;
        if a.trusted.key != key {
            return Err(err(
                &at,
                format!("account {key}: the JWT is for {}", a.trusted.key),
            ));
        }
        // Whether the server runs JetStream is known only after the flags;
        // on a server without it the account simply has none (as in
        // nats-server).
        let (jetstream, jetstream_limits) = crate::account::jetstream_of_jwt(&a.limits);
        options.config.accounts.retain(|x| x.name != key);
        options.config.accounts.push(AccountConfig {
            name: key.clone(),
            users: Vec::new(),
            jetstream,
            jetstream_limits,
            exports: Vec::new(),
            imports: Vec::new(),
            mappings: Vec::new(),
        });
        trusted.retain(|t: &crate::jwt::TrustedAccount| t.key != key);
        trusted.push(a.trusted);
    }
    let system_account = op
        .system_account
        .clone()
        .or_else(|| operators.iter().find_map(|o| o.system_account.clone()));
    let dir = match &op.resolver {
        conf::ResolverConf::Dir { dir } => Some(dir.clone()),
        conf::ResolverConf::Memory => None,
    };
    options.config.auth = Some(Auth::Operator(std::sync::Arc::new(crate::jwt::Trust::new(
        &operators,
        trusted,
        system_account,
        dir,
    ))));
    Ok(())
}

/// `no_auth_user` (top-level or a listener's) must name one of the
/// `users`, as in nats-server.
fn check_no_auth_user(listed: &[String], name: &str, path: &Path) -> Result<(), OptionsError> {
    if listed.is_empty() {
        return Err(OptionsError::NoAuthUserWithoutUsers {
            file: path.to_path_buf(),
            name: name.to_owned(),
        });
    }
    if !listed.iter().any(|u| u == name) {
        return Err(OptionsError::NoAuthUserUnknown {
            file: path.to_path_buf(),
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// A listener block's (`what`: `mqtt`, `websocket`) own authentication
/// and its timeout, checked as nats-server checks them: `no_auth_user`
/// names one of the `users` (`listed`) and is refused in operator mode; a
/// `user` or `token` is refused when there are `users` (those log in with
/// their own passwords on every listener). In operator mode a `user` or
/// `token` could never be presented (clients need a JWT), so it refuses
/// the start.
fn listener_auth(
    what: &'static str,
    authorization: Option<&conf::ListenerAuthConf>,
    no_auth_user: Option<&str>,
    (listed, operator_mode): (&[String], bool),
    path: &Path,
) -> Result<(Option<ListenerAuth>, Option<std::time::Duration>), OptionsError> {
    let a = authorization.cloned().unwrap_or_default();
    let user = a.user.filter(|u| !u.is_empty());
    let token = a.token.filter(|t| !t.is_empty());
    let no_auth_user = no_auth_user.filter(|n| !n.is_empty()).map(str::to_owned);
    let refuse = |e: ListenerAuthError| OptionsError::ListenerAuth {
        file: path.to_path_buf(),
        source: e,
    };
    if let Some(name) = &no_auth_user {
        if operator_mode {
            return Err(refuse(ListenerAuthError::NoAuthUserWithOperator));
        }
        check_no_auth_user(listed, name, path)?;
    }
    if !listed.is_empty() {
        if user.is_some() {
            return Err(refuse(ListenerAuthError::UserWithUsers(what)));
        }
        if token.is_some() {
            return Err(refuse(ListenerAuthError::TokenWithUsers(what)));
        }
    }
    if operator_mode && (user.is_some() || token.is_some()) {
        return Err(refuse(ListenerAuthError::CredentialsWithOperator(what)));
    }
    // 0 means the server's, as in nats-server.
    let timeout = a.timeout.filter(|t| !t.is_zero());
    if user.is_none() && token.is_none() && no_auth_user.is_none() {
        return Ok((None, timeout));
    }
    let auth = ListenerAuth {
        user: user.map(|name| User {
            name,
            password: a.password.unwrap_or_default(),
        }),
        token,
        no_auth_user,
    };
    Ok((Some(auth), timeout))
}

/// The configuration file's `websocket { }` block; `None` when it has no
/// port (nats-server ignores such a block). The host defaults to 0.0.0.0,
/// as in nats-server (whatever the client listener's host).
fn websocket_from_file(
    w: &WebSocketConf,
    users: (&[String], bool),
    path: &Path,
) -> Result<Option<WebSocketConfig>, OptionsError> {
    let Some(p) = w.port.filter(|p| *p != 0) else {
        return Ok(None);
    };
    let tls = match &w.tls {
        Some(t) => Some(tls_from_file(t, path)?),
        None if w.no_tls => None,
        None => {
            return Err(OptionsError::WebSocketWithoutTls {
                file: path.to_path_buf(),
                line: w.line,
            });
        }
    };
    let (auth, auth_timeout) = listener_auth(
        "websocket",
        w.authorization.as_ref(),
        w.no_auth_user.as_deref(),
        users,
        path,
    )?;
    Ok(Some(WebSocketConfig {
        auth,
        auth_timeout,
        host: w.host.clone().unwrap_or_else(|| "0.0.0.0".to_owned()),
        port: port(p, "websocket port")?,
        tls,
        same_origin: w.same_origin,
        allowed_origins: w.allowed_origins.clone(),
        handshake_timeout: w.handshake_timeout,
        compression: w.compression,
        headers: w.headers.clone(),
        ping_interval: w.ping_interval,
    }))
}

/// The configuration file's `tls { }` block (nats-server's messages for a
/// missing certificate or key).
fn tls_from_file(t: &TlsConf, path: &Path) -> Result<TlsConfig, OptionsError> {
    let missing = |key| OptionsError::TlsIncomplete {
        file: path.to_path_buf(),
        key,
    };
    let cert = t.cert_file.clone().ok_or_else(|| missing("cert_file"))?;
    let key = t.key_file.clone().ok_or_else(|| missing("key_file"))?;
    let mut tls = TlsConfig::new(cert, key);
    tls.ca_file.clone_from(&t.ca_file);
    tls.verify = t.verify;
    tls.handshake_first = t.handshake_first;
    tls.handshake_first_fallback = t.handshake_first_fallback;
    if let Some(timeout) = t.timeout {
        tls.timeout = timeout;
    }
    Ok(tls)
}

/// The flags over whatever the defaults and the file said.
fn apply_flags(options: &mut Options, cli: &Cli) -> Result<(), OptionsError> {
    let config = &mut options.config;
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
        options.log_file.clone_from(&cli.log_file);
    }
    if cli.pid_file.is_some() {
        options.pid_file.clone_from(&cli.pid_file);
    }
    if cli.ports_file_dir.is_some() {
        options.ports_file_dir.clone_from(&cli.ports_file_dir);
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
    if matches!(config.auth, Some(Auth::Operator(_)))
        && (cli.user.is_some() || cli.pass.is_some() || cli.auth.is_some())
    {
        return Err(OptionsError::AuthFlagsInOperatorMode);
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
        _ => return Err(OptionsError::AuthFlags),
    }
    config.tls = tls_from_flags(cli, config.tls.take())?;
    for flag in &cli.unsupported {
        options.warnings.push(format!(
            "flag -{} is not supported by this server and is ignored",
            flag.name
        ));
    }
    Ok(())
}

/// Any `--tls*` flag replaces the file's TLS settings (as in nats-server,
/// which keeps the file's timeout and handshake_first).
fn tls_from_flags(cli: &Cli, file: Option<TlsConfig>) -> Result<Option<TlsConfig>, OptionsError> {
    let given = ["tls", "tls_cert", "tls_key", "tls_verify", "tls_ca_cert"]
        .iter()
        .any(|f| cli.is_set(f));
    if !given {
        return Ok(file);
    }
    let cert = cli.tls_cert.clone().ok_or(OptionsError::TlsCertMissing)?;
    let key = cli.tls_key.clone().ok_or(OptionsError::TlsKeyMissing)?;
    let mut tls = TlsConfig::new(cert, key);
    tls.ca_file.clone_from(&cli.tls_ca_cert);
    tls.verify = cli.tls_verify;
    if let Some(f) = file {
        tls.timeout = f.timeout;
        tls.handshake_first = f.handshake_first;
        tls.handshake_first_fallback = f.handshake_first_fallback;
    }
    Ok(Some(tls))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn build_with(config: &str) -> Result<Options, String> {
        build_with_flags(config, &[], ServerConfig::default())
    }

    fn build_with_flags(
        config: &str,
        flags: &[&str],
        defaults: ServerConfig,
    ) -> Result<Options, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("server.conf");
        std::fs::write(&path, config).expect("write config");
        let mut args = vec!["-c".to_owned(), path.display().to_string()];
        args.extend(flags.iter().map(|f| (*f).to_owned()));
        let cli = crate::cli::parse_args(args).expect("flags");
        from_cli(&cli, defaults).map_err(|e| {
            e.to_string()
                .replace(&path.display().to_string(), "server.conf")
        })
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_the_defaults() {
        let o = build_with_flags(
            "port: 4333\nhttp: 8333\nmax_payload: 2MB\njetstream { store_dir: /tmp/a }\n",
            &["-p", "4444", "-sd", "/tmp/b"],
            ServerConfig::default(),
        )
        .expect("accepted");
        assert_eq!(o.config.port, 4444);
        assert_eq!(o.config.http_port, Some(8333));
        assert_eq!(o.config.max_payload, 2 * 1024 * 1024);
        assert_eq!(
            o.config.jetstream.map(|j| j.store_dir),
            Some(PathBuf::from("/tmp/b"))
        );
        // The bus tool's defaults turn JetStream on; `-js=false` still wins.
        let on = ServerConfig {
            jetstream: Some(JetStreamConfig::default()),
            ..ServerConfig::default()
        };
        let o = build_with_flags("port: 1\n", &["-js=false"], on).expect("accepted");
        assert!(o.config.jetstream.is_none());
    }

    #[test]
    fn flags_that_cannot_be_honoured_are_errors() {
        let flags = |f: &[&str]| {
            crate::cli::parse_args(f.iter().map(|s| (*s).to_owned()))
                .map_err(|e| e.to_string())
                .and_then(|cli| from_cli(&cli, ServerConfig::default()).map_err(|e| e.to_string()))
        };
        assert!(matches!(
            flags(&["--user", "u"]).err().as_deref(),
            Some("use either --user with --pass, or --auth (a token)")
        ));
        assert!(flags(&["--auth", "t", "--pass", "p"]).is_err());
        assert_eq!(
            flags(&["-p", "70000"]).err().as_deref(),
            Some("invalid port 70000: pass a port from 1 to 65535, or -1 for a free one")
        );
        assert_eq!(
            flags(&["--tlskey", "k.pem"]).err().as_deref(),
            Some("TLS Server certificate must be present and valid")
        );
        assert_eq!(flags(&["-p", "-1"]).map(|o| o.config.port), Ok(0));
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
            .expect_err("refused");
        assert_eq!(
            err,
            "server.conf: accounts: line 4: jetstream: Expected 'enabled' or 'disabled' for string value, got 'maybe'"
        );
        let err = build_with("accounts {\n  A: { users: [ {user: a, password: a} ] }\n  B: { users: [ {user: a, password: b} ] }\n}\n").expect_err("refused");
        assert_eq!(err, "server.conf: accounts: Duplicate user \"a\" detected");
    }

    #[test]
    fn unsupported_authorization_keys_still_refuse_to_start() {
        let err = build_with(
            "authorization {\n  users: [\n    { user: a, password: b, account: A }\n  ]\n}\n",
        )
        .expect_err("refused");
        assert_eq!(
            err,
            "server.conf: authorization: line 3: users: account is not supported yet by this server; refusing to start"
        );
        let err = build_with("authorization {\n  token: t\n  auth_callout { issuer: x }\n}\n")
            .expect_err("refused");
        assert_eq!(
            err,
            "server.conf: authorization: line 3: auth_callout is not supported yet by this server; refusing to start"
        );
    }

    #[test]
    fn bad_permission_values_are_named_with_key_and_line() {
        let err = build_with(
            "authorization {\n  users: [\n    { user: a, password: b, permissions: {\n      publish: 7\n    } }\n  ]\n}\n",
        ).expect_err("refused");
        assert_eq!(
            err,
            "server.conf: authorization: line 4: publish: Expected subject permissions to be a subject, or array of subjects, got integer"
        );
    }

    #[test]
    fn mqtt_block_tls_and_own_authorization_become_the_listener_config() {
        let o = build_with(
            "server_name: s\nmqtt {\n  port: 1883\n  tls { cert_file: c.pem, key_file: k.pem, timeout: 3 }\n  authorization { user: mq, password: pw, timeout: 0.5 }\n}\n",
        )
        .expect("accepted");
        let m = o.config.mqtt.expect("mqtt on");
        let tls = m.tls.expect("tls");
        assert_eq!(tls.cert_file, std::path::PathBuf::from("c.pem"));
        assert_eq!(tls.timeout, std::time::Duration::from_secs(3));
        let auth = m.auth.expect("own auth");
        assert_eq!(
            auth.user.map(|u| (u.name, u.password)),
            Some(("mq".into(), "pw".into()))
        );
        assert_eq!(m.auth_timeout, Some(std::time::Duration::from_millis(500)));
        // A timeout alone changes the timeout, not who may log in.
        let o = build_with("mqtt {\n  port: 1883\n  authorization { timeout: 4 }\n}\n")
            .expect("accepted");
        let m = o.config.mqtt.expect("mqtt on");
        assert!(m.auth.is_none());
        assert_eq!(m.auth_timeout, Some(std::time::Duration::from_secs(4)));
    }

    #[test]
    fn websocket_block_becomes_the_listener_config() {
        let o = build_with(
            "host: 10.0.0.1\nwebsocket {\n  port: -1\n  no_tls: true\n  same_origin: true\n  allowed_origins: \"https://a.example\"\n  handshake_timeout: \"2s\"\n}\n",
        )
        .expect("accepted");
        let ws = o.config.websocket.expect("websocket on");
        // nats-server's default, not the client listener's host.
        assert_eq!(ws.host, "0.0.0.0");
        assert_eq!(ws.port, 0);
        assert!(ws.tls.is_none() && ws.same_origin);
        assert_eq!(ws.allowed_origins, ["https://a.example"]);
        assert_eq!(ws.handshake_timeout, Some(Duration::from_secs(2)));
        let o = build_with(
            "websocket {\n  listen: \"0.0.0.0:8443\"\n  tls { cert_file: c.pem, key_file: k.pem }\n}\n",
        )
        .expect("accepted");
        let ws = o.config.websocket.expect("websocket on");
        assert_eq!((ws.host.as_str(), ws.port), ("0.0.0.0", 8443));
        assert_eq!(ws.tls.map(|t| t.cert_file), Some(PathBuf::from("c.pem")));
        // No port: no listener, as in nats-server.
        let o = build_with("port: 1\nwebsocket { no_tls: true }\n").expect("accepted");
        assert!(o.config.websocket.is_none());
    }

    #[test]
    fn websocket_without_tls_or_no_tls_refuses_to_start() {
        assert_eq!(
            build_with("port: 1\nwebsocket {\n  port: 8080\n}\n")
                .err()
                .as_deref(),
            Some("server.conf: line 2: websocket requires TLS configuration")
        );
        assert!(
            build_with("websocket { port: 8080, tls { cert_file: c.pem } }").is_err(),
            "a TLS block without a key is refused"
        );
    }
}
