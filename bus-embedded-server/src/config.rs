//! What the server is asked to be: every configuration type in one place.
//!
//! Plain data with defaults and a few questions about itself. Who fills it
//! in: an embedding program directly, or `options` from
//! nats-server's flags and configuration file (read by `conf`).
//! Who acts on it: `server` (listeners, limits), `auth`
//! (who may connect and do what), `account` (accounts, imports and
//! exports), `tls` and `jetstream`.
//!
//! This module must not read files, parse text or reach into the running
//! server; it depends on no other module of the crate except for the file
//! store's [`SyncPolicy`], which it re-exports.

use std::path::PathBuf;
use std::time::Duration;

pub use crate::jetstream::store::file::SyncPolicy;

/// The global account: everyone, when no accounts are configured.
pub const GLOBAL_ACCOUNT: &str = "$G";

/// Server settings (the subset of nats-server's that this server supports).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind; loopback unless told otherwise.
    pub host: String,
    /// Client port; 0 picks a free one.
    pub port: u16,
    /// Name reported in INFO (a generated id when empty).
    pub server_name: String,
    /// Largest message payload accepted.
    pub max_payload: usize,
    /// Longest control line accepted.
    pub max_control_line: usize,
    /// Most simultaneous client connections.
    pub max_connections: usize,
    /// Most subscriptions per connection (`max_subs`); 0 = no limit, as in
    /// nats-server. A SUB past it gets `-ERR 'maximum subscriptions
    /// exceeded'` and the connection stays open.
    pub max_subs: usize,
    /// Outbound bytes a connection may have pending before it is closed as a
    /// slow consumer.
    pub max_pending: usize,
    /// A write to a client that takes longer than this closes it (slow consumer).
    pub write_deadline: Duration,
    /// Interval of server PINGs.
    pub ping_interval: Duration,
    /// PINGs without PONG before the connection is closed as stale.
    pub ping_max: u32,
    /// Monitoring HTTP port (`/varz` ...); `None` = off, `Some(0)` = a free port.
    pub http_port: Option<u16>,
    /// Who may connect; `None` = anyone.
    pub auth: Option<Auth>,
    /// With auth: a connection must send a valid CONNECT within this.
    pub auth_timeout: Duration,
    /// Log connection lifecycle at debug level (`-D`).
    pub debug: bool,
    /// Log every protocol op received and control reply sent at trace level (`-V`).
    pub trace: bool,
    /// JetStream (`-js`, `jetstream {}`); `None` = off.
    pub jetstream: Option<JetStreamConfig>,
    /// TLS for client connections (`tls {}`, `--tls*`); `None` = plain TCP.
    pub tls: Option<TlsConfig>,
    /// Accounts (`accounts {}`); empty = everyone in the global account.
    /// Their users must also be in `auth` (as identities naming the account).
    pub accounts: Vec<AccountConfig>,
    /// `no_auth_user`: a client whose CONNECT carries no credentials at
    /// all logs in as this user (a name or an nkey of `auth`'s users),
    /// with its account and permissions. `None` = such clients are refused
    /// when `auth` is set.
    pub no_auth_user: Option<String>,
    /// Top-level `mappings {}`: subject mappings of the global account `$G`
    /// (each account has its own in [`AccountConfig::mappings`]).
    pub mappings: Vec<SubjectMapping>,
    /// Extra pages on the monitoring port (the bus's operator console);
    /// `None` = only the monitoring endpoints. Not a nats-server option.
    pub http_mount: Option<HttpMount>,
    /// A second listener for clients speaking the protocol inside WebSocket
    /// frames (`websocket {}`); `None` = off.
    pub websocket: Option<WebSocketConfig>,
    /// A listener for MQTT 3.1.1 clients (`mqtt {}`); `None` = off.
    pub mqtt: Option<MqttConfig>,
}

/// The MQTT listener (nats-server's `mqtt { }` block): MQTT 3.1.1 clients
/// as clients of the global account, with the server's authentication and
/// permissions. What is served and what is refused: see the README.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttConfig {
    /// Address to bind (from a configuration file: 0.0.0.0 unless set, as
    /// in nats-server).
    pub host: String,
    /// Port; 0 picks a free one.
    pub port: u16,
    /// How long a QoS 1 delivery waits for its PUBACK before it is sent
    /// again (nats-server's default 30 s).
    pub ack_wait: std::time::Duration,
    /// QoS 1 deliveries in flight per subscription (nats-server's default
    /// 1024).
    pub max_ack_pending: u16,
    /// TLS from the first byte (`tls {}` inside the block); `None` = plain
    /// TCP. The certificate, key, CA, `verify` and the handshake
    /// `timeout` apply (MQTT has no INFO to send first, so
    /// `handshake_first` changes nothing).
    pub tls: Option<TlsConfig>,
    /// The block's own `authorization {}` / `no_auth_user`, which replace
    /// the server's for MQTT clients (nats-server's auth override); `None`
    /// = MQTT clients log in as NATS clients do.
    pub auth: Option<ListenerAuth>,
    /// The block's `authorization { timeout }`: how long a client has to
    /// send its CONNECT; `None` = the server's `auth_timeout`.
    pub auth_timeout: Option<Duration>,
    /// `reject_qos2_publish`: a QoS 2 PUBLISH closes the connection and a
    /// QoS 2 will refuses the CONNECT (CONNACK 0x10), as in nats-server.
    pub reject_qos2_publish: bool,
    /// `downgrade_qos2_subscribe`: QoS 2 subscriptions are granted QoS 1.
    pub downgrade_qos2_subscribe: bool,
}

/// A listener's own authentication (an `mqtt { }` or `websocket { }`
/// block's `authorization {}` and `no_auth_user`), used for that listener's
/// clients instead of the server's single user, token and
/// `no_auth_user`, as nats-server's "auth override". The server's `users`
/// (of `authorization {}` and `accounts {}`) still log in with their own
/// passwords; `user`/`token` are only allowed when there are none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListenerAuth {
    /// `authorization { user, password }`: the one user and password
    /// (plain or bcrypt) the listener's clients present.
    pub user: Option<User>,
    /// `authorization { token }`: the token (an MQTT client sends it as
    /// its password).
    pub token: Option<String>,
    /// `no_auth_user`: a client without a user name logs in as this user
    /// of the server's `users` (its account and permissions).
    pub no_auth_user: Option<String>,
}

impl MqttConfig {
    /// nats-server's `ack_wait` default.
    pub const DEFAULT_ACK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
    /// nats-server's `max_ack_pending` default.
    pub const DEFAULT_MAX_ACK_PENDING: u16 = 1024;

    /// A listener on `host:port` with nats-server's QoS 1 defaults.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        MqttConfig {
            host: host.into(),
            port,
            ack_wait: Self::DEFAULT_ACK_WAIT,
            max_ack_pending: Self::DEFAULT_MAX_ACK_PENDING,
            tls: None,
            auth: None,
            auth_timeout: None,
            reject_qos2_publish: false,
            downgrade_qos2_subscribe: false,
        }
    }
}

/// The WebSocket listener (nats-server's `websocket { }` block): the same
/// protocol, accounts and permissions as TCP clients, inside WebSocket
/// frames (binary or text), over TLS unless `tls` is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSocketConfig {
    /// Address to bind (from a configuration file: 0.0.0.0 unless set, as
    /// in nats-server).
    pub host: String,
    /// Port; 0 picks a free one.
    pub port: u16,
    /// TLS from the first byte (`wss://`); `None` = plain (`no_tls: true`).
    /// Only the certificate, key, CA and `verify` apply (the handshake is
    /// bounded by `handshake_timeout`, not the TLS `timeout`).
    pub tls: Option<TlsConfig>,
    /// Refuse an upgrade whose `Origin` is not the request's own host and
    /// port (`same_origin`).
    pub same_origin: bool,
    /// Origins allowed to upgrade, as `scheme://host[:port]`
    /// (`allowed_origins`); empty = any. A request without `Origin` is
    /// always allowed, as in nats-server.
    pub allowed_origins: Vec<String>,
    /// Longest the TLS handshake and the HTTP upgrade request may take;
    /// `None` = no limit (nats-server's default too).
    pub handshake_timeout: Option<Duration>,
    /// The block's own `authorization {}` / `no_auth_user`, which replace
    /// the server's for WebSocket clients (nats-server's auth override);
    /// `None` = they log in as TCP clients do.
    pub auth: Option<ListenerAuth>,
    /// permessage-deflate for clients that offer it (`compression`).
    pub compression: bool,
    /// Extra header lines of the 101 response (`headers { }`), in order;
    /// names nats-server forbids refuse the start.
    pub headers: Vec<(String, String)>,
    /// PING interval for this listener's clients (`ping_interval`);
    /// `None` = the server's.
    pub ping_interval: Option<Duration>,
    /// The block's `authorization { timeout }`: how long a client has to
    /// send CONNECT; `None` = the server's `auth_timeout`.
    pub auth_timeout: Option<Duration>,
}

impl WebSocketConfig {
    /// Plain WebSocket (no TLS) on `host:port`, no origin checks.
    pub fn plain(host: impl Into<String>, port: u16) -> WebSocketConfig {
        WebSocketConfig {
            host: host.into(),
            port,
            tls: None,
            same_origin: false,
            allowed_origins: Vec::new(),
            handshake_timeout: None,
            auth: None,
            compression: false,
            headers: Vec::new(),
            ping_interval: None,
            auth_timeout: None,
        }
    }
}

/// Requests on the monitoring port whose path is `prefix` or starts with
/// `prefix/` go to `handler` instead of the monitoring endpoints.
#[derive(Clone)]
pub struct HttpMount {
    /// Path prefix, e.g. `/console` (no trailing slash).
    pub prefix: String,
    /// Who answers.
    pub handler: std::sync::Arc<dyn HttpHandler>,
}

impl std::fmt::Debug for HttpMount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpMount")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// One HTTP request handed to an [`HttpMount`] (body read whole, at most
/// [`HttpRequest::MAX_BODY`] bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, prefix included.
    pub path: String,
    /// The query string without `?` (empty when none).
    pub query: String,
    /// Header names in lower case, with their values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// Largest body passed on; a longer one gets 413 without reaching the handler.
    pub const MAX_BODY: usize = 64 * 1024;

    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The answer of an [`HttpMount`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// Answers the requests of an [`HttpMount`].
pub trait HttpHandler: Send + Sync {
    /// Answers one request.
    fn handle(
        &self,
        request: HttpRequest,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = HttpResponse> + Send>>;
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".to_owned(),
            port: 4222,
            server_name: String::new(),
            max_payload: 1024 * 1024,
            max_control_line: 4096,
            max_connections: 64 * 1024,
            max_subs: 0,
            max_pending: 64 * 1024 * 1024,
            write_deadline: Duration::from_secs(10),
            ping_interval: Duration::from_secs(120),
            ping_max: 2,
            http_port: None,
            auth: None,
            auth_timeout: Duration::from_secs(2),
            debug: false,
            trace: false,
            jetstream: None,
            tls: None,
            accounts: Vec::new(),
            no_auth_user: None,
            mappings: Vec::new(),
            http_mount: None,
            websocket: None,
            mqtt: None,
        }
    }
}

// ---------------------------------------------------------------------------
// Authentication and permissions
// ---------------------------------------------------------------------------

/// Client authentication, as nats-server's `--auth` / `--user` `--pass` and
/// `authorization { token | user/password | users [...] }`. Secrets may be
/// plain text or bcrypt hashes (`$2a$...`, `$2b$...`, `$2y$...`). How a
/// CONNECT is checked against it: `auth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// One token every client presents (`auth_token`).
    Token(String),
    /// Named users with passwords.
    Users(Vec<User>),
    /// nats-server's `users` list in full: password and nkey users, each
    /// with optional publish/subscribe permissions. With any nkey user, INFO
    /// carries a nonce for the client to sign.
    Identities(Vec<Identity>),
    /// Operator mode (decentralized JWT authentication): users present a
    /// JWT signed by a trusted account (or its signing keys) and sign the
    /// INFO nonce with their nkey. The accounts are `accounts` entries
    /// named by their public keys.
    Operator(std::sync::Arc<crate::jwt::Trust>),
}

/// One user of [`Auth::Users`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// User name.
    pub name: String,
    /// Password, plain or a bcrypt hash.
    pub password: String,
}

/// One entry of [`Auth::Identities`]: how a user logs in, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User/password or nkey.
    pub login: Login,
    /// `None` = no restrictions.
    pub permissions: Option<Permissions>,
    /// The account the user logs into (`accounts { A { users } }`); `None`
    /// = the global account `$G`.
    pub account: Option<String>,
}

/// How an [`Identity`] proves who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    /// User name and password (plain or bcrypt).
    Password(User),
    /// A user nkey (public key, `U...`): CONNECT signs the INFO nonce.
    Nkey(String),
}

/// What a user may publish and subscribe to (`permissions {}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    /// `publish` (`pub`): `None` = anything.
    pub publish: Option<SubjectPermission>,
    /// `subscribe` (`sub`): `None` = anything.
    pub subscribe: Option<SubjectPermission>,
    /// `allow_responses`: may publish to the reply subjects of messages it
    /// received, even where `publish` says no.
    pub allow_responses: Option<ResponsePermission>,
}

/// Allow and deny lists of subjects (wildcards allowed). For subscriptions
/// an entry may name a queue group after a space: `"foo.* workers"`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectPermission {
    /// `None` = everything not denied; `Some(empty)` = nothing.
    pub allow: Option<Vec<String>>,
    /// Denied subjects; deny wins over allow.
    pub deny: Option<Vec<String>>,
}

/// `allow_responses`: how many replies per received request, and for how
/// long after it arrived (zero = no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponsePermission {
    /// Responses allowed per request (nats-server's default: 1).
    pub max: usize,
    /// How long after the request responses are allowed (nats-server's
    /// default: 2 minutes).
    pub expires: Duration,
}

impl Default for ResponsePermission {
    fn default() -> Self {
        ResponsePermission {
            max: 1,
            expires: Duration::from_secs(120),
        }
    }
}

/// True when a stored secret is a bcrypt hash.
pub(crate) fn is_bcrypt(secret: &str) -> bool {
    secret.starts_with("$2a$") || secret.starts_with("$2b$") || secret.starts_with("$2y$")
}

impl Auth {
    /// True when any secret is stored in plain text (nats-server warns).
    pub fn has_plain_secrets(&self) -> bool {
        match self {
            Auth::Token(t) => !is_bcrypt(t),
            Auth::Users(users) => users.iter().any(|u| !is_bcrypt(&u.password)),
            Auth::Identities(ids) => ids.iter().any(|i| match &i.login {
                Login::Password(u) => !is_bcrypt(&u.password),
                Login::Nkey(_) => false,
            }),
            Auth::Operator(_) => false,
        }
    }

    /// A stored bcrypt hash, when any secret is one: checking a CONNECT then
    /// costs a bcrypt verification (done off the async workers).
    pub fn bcrypt_hash(&self) -> Option<&str> {
        match self {
            Auth::Token(t) => is_bcrypt(t).then_some(t.as_str()),
            Auth::Users(users) => users
                .iter()
                .map(|u| u.password.as_str())
                .find(|p| is_bcrypt(p)),
            Auth::Identities(ids) => ids.iter().find_map(|i| match &i.login {
                Login::Password(u) if is_bcrypt(&u.password) => Some(u.password.as_str()),
                _ => None,
            }),
            Auth::Operator(_) => None,
        }
    }

    /// True when INFO must carry a nonce (an nkey user is configured).
    pub fn needs_nonce(&self) -> bool {
        match self {
            Auth::Identities(ids) => ids.iter().any(|i| matches!(i.login, Login::Nkey(_))),
            Auth::Operator(_) => true,
            Auth::Token(_) | Auth::Users(_) => false,
        }
    }
}

// ---------------------------------------------------------------------------
// Accounts
// ---------------------------------------------------------------------------

/// Stream or service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportKind {
    /// Messages flow from the exporter to importers.
    Stream,
    /// Requests flow from importers to the exporter, replies back.
    Service,
}

impl std::fmt::Display for ExportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ExportKind::Stream => "stream",
            ExportKind::Service => "service",
        })
    }
}

/// How many replies a service request may get (`response_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseType {
    /// One reply (the default).
    #[default]
    Singleton,
    /// Any number until the response threshold.
    Stream,
    /// Any number until the response threshold.
    Chunked,
}

/// One entry of an account's `exports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// Stream or service.
    pub kind: ExportKind,
    /// The exported subject (wildcards allowed).
    pub subject: String,
    /// `accounts: [...]`: only these may import; `None` = anyone.
    pub accounts: Option<Vec<String>>,
    /// Services: how many replies a request may get.
    pub response_type: ResponseType,
    /// Services: how long replies are accepted (`response_threshold`).
    pub response_threshold: Duration,
}

/// One entry of an account's `imports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// Stream or service.
    pub kind: ExportKind,
    /// The exporting account.
    pub account: String,
    /// The subject in the exporting account.
    pub subject: String,
    /// The subject in this account (`to`); for services the subject this
    /// account's clients publish requests to.
    pub to: Option<String>,
    /// Streams: a prefix put in front of the subject (`prefix`).
    pub prefix: Option<String>,
}

/// One account of the `accounts {}` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountConfig {
    /// Account name.
    pub name: String,
    /// Users that log into this account (their `account` is this name).
    pub users: Vec<Identity>,
    /// `jetstream: enabled` (or a limits map).
    pub jetstream: bool,
    /// The account's JetStream limits (the `jetstream {}` map; all
    /// unlimited for `jetstream: enabled`).
    pub jetstream_limits: AccountJetStreamLimits,
    /// What other accounts may import.
    pub exports: Vec<Export>,
    /// What this account takes from others.
    pub imports: Vec<Import>,
    /// Subject mappings applied to what this account's clients publish.
    pub mappings: Vec<SubjectMapping>,
}

/// One entry of `mappings {}`: publishes on `source` (wildcards allowed) go
/// to one of `destinations` (how destinations are written and picked: the
/// `mapping` module).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectMapping {
    /// The subject (or pattern) clients publish on.
    pub source: String,
    /// Where they go, with weights in percent.
    pub destinations: Vec<MapDestination>,
}

impl SubjectMapping {
    /// `source` always to `destination` (weight 100).
    pub fn new(source: impl Into<String>, destination: impl Into<String>) -> SubjectMapping {
        SubjectMapping {
            source: source.into(),
            destinations: vec![MapDestination {
                subject: destination.into(),
                weight: 100,
            }],
        }
    }
}

/// One destination of a [`SubjectMapping`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapDestination {
    /// The destination subject, with `$N` and `{{function()}}` tokens.
    pub subject: String,
    /// Percent of the messages that go here (0..=100).
    pub weight: u8,
}

/// One account's JetStream limits (nats-server's account `jetstream {}`
/// map); -1 is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountJetStreamLimits {
    /// Bytes of memory storage (`max_mem`).
    pub max_memory: i64,
    /// Bytes of file storage (`max_file`, `max_store`).
    pub max_store: i64,
    /// Streams (`max_streams`).
    pub max_streams: i64,
    /// Consumers over all streams (`max_consumers`).
    pub max_consumers: i64,
    /// Highest `max_ack_pending` a consumer may have, and its default.
    pub max_ack_pending: i64,
    /// Highest `max_bytes` of one memory stream.
    pub memory_max_stream_bytes: i64,
    /// Highest `max_bytes` of one file stream.
    pub store_max_stream_bytes: i64,
    /// Every stream must set `max_bytes`.
    pub max_bytes_required: bool,
}

impl Default for AccountJetStreamLimits {
    fn default() -> Self {
        AccountJetStreamLimits {
            max_memory: -1,
            max_store: -1,
            max_streams: -1,
            max_consumers: -1,
            max_ack_pending: -1,
            memory_max_stream_bytes: -1,
            store_max_stream_bytes: -1,
            max_bytes_required: false,
        }
    }
}

// ---------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------

/// nats-server's default TLS handshake timeout.
pub const DEFAULT_TLS_TIMEOUT: Duration = Duration::from_secs(2);

/// TLS settings of the client listener (nats-server's `tls { }` block and
/// `--tls*` flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM server certificate (chain), `cert_file` / `--tlscert`.
    pub cert_file: PathBuf,
    /// PEM private key of the certificate, `key_file` / `--tlskey`.
    pub key_file: PathBuf,
    /// PEM CA certificates that client certificates must chain to,
    /// `ca_file` / `--tlscacert`; required with `verify`.
    pub ca_file: Option<PathBuf>,
    /// Require and verify a client certificate (mutual TLS), `verify` /
    /// `--tlsverify`.
    pub verify: bool,
    /// Longest a TLS handshake may take before the connection is closed.
    pub timeout: Duration,
    /// Handshake before INFO (`handshake_first`); clients must be told to
    /// do so (async-nats `tls_first()`, nats-py `tls_handshake_first`).
    pub handshake_first: bool,
    /// With `handshake_first`: how long to wait for the client to start
    /// the handshake before sending INFO in plain text and going on as
    /// without `handshake_first` (`handshake_first: auto` is 50 ms, a
    /// duration is that long); `None`: TLS-first clients only.
    pub handshake_first_fallback: Option<Duration>,
}

/// nats-server's wait for a TLS-first client with `handshake_first: auto`.
pub const DEFAULT_TLS_HANDSHAKE_FIRST_FALLBACK: Duration = Duration::from_millis(50);

impl TlsConfig {
    /// Server certificate and key, no client verification, default timeout.
    pub fn new(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> TlsConfig {
        TlsConfig {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            ca_file: None,
            verify: false,
            timeout: DEFAULT_TLS_TIMEOUT,
            handshake_first: false,
            handshake_first_fallback: None,
        }
    }
}

// ---------------------------------------------------------------------------
// JetStream
// ---------------------------------------------------------------------------

/// JetStream settings (nats-server's `jetstream {}` block).
#[derive(Debug, Clone)]
pub struct JetStreamConfig {
    /// Where file streams live (`<store_dir>/jetstream/...`).
    pub store_dir: PathBuf,
    /// Memory storage limit in bytes (-1 unlimited).
    pub max_memory: i64,
    /// File storage limit in bytes (-1 unlimited).
    pub max_store: i64,
    /// When file stores fsync (default: before every acknowledgement).
    pub sync: SyncPolicy,
    /// Segment size of the file store.
    pub segment_bytes: u64,
}

impl Default for JetStreamConfig {
    fn default() -> Self {
        JetStreamConfig {
            store_dir: std::env::temp_dir().join("nats"),
            max_memory: -1,
            max_store: -1,
            sync: SyncPolicy::Always,
            segment_bytes: 8 * 1024 * 1024,
        }
    }
}

impl JetStreamConfig {
    /// `<store_dir>/jetstream/$G/streams`.
    pub fn streams_dir(&self) -> PathBuf {
        self.streams_dir_for(GLOBAL_ACCOUNT)
    }

    /// `<store_dir>/jetstream/<account>/streams`.
    pub fn streams_dir_for(&self, account: &str) -> PathBuf {
        self.store_dir
            .join("jetstream")
            .join(account)
            .join("streams")
    }
}
