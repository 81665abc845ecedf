//! Decentralized (JWT) authentication, "operator mode": the JWT format
//! (base64url header, claims and an ed25519 signature by the issuer's nkey),
//! the operator, account and user claims of NATS JWT v2 that this server
//! acts on, and [`Trust`]: the operators and accounts the configuration
//! trusts, which judges a CONNECT's `jwt` + `sig`.
//!
//! It only decodes, verifies and decides: it must not touch sockets,
//! accounts' subscriptions or the configuration file (the `conf` module
//! reads `operator`/`resolver_preload`; `options` builds the [`Trust`]).
//! Claims it cannot honour are refused (an account at startup, a user at
//! CONNECT), never ignored.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Why a JWT is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url parts, or the JSON does not parse.
    #[error("malformed JWT: {0}")]
    Malformed(String),
    /// The header's `alg` is not `ed25519-nkey` (v2) or `ed25519` (v1).
    #[error("unsupported JWT algorithm {0:?}")]
    Algorithm(String),
    /// The issuer is not a valid nkey, or the signature does not verify.
    #[error("JWT signature does not verify against its issuer {0}")]
    Signature(String),
    /// The claims are of another type than expected.
    #[error("expected a {expected} JWT, got {got:?}")]
    WrongType {
        /// `operator`, `account` or `user`.
        expected: &'static str,
        /// As found in `nats.type`.
        got: String,
    },
    /// `exp` lies in the past.
    #[error("JWT has expired")]
    Expired,
    /// `nbf` lies in the future.
    #[error("JWT is not valid yet")]
    NotYetValid,
    /// The subject is not a key of the right kind (`U...` for a user).
    #[error("{0} is not a {1} key")]
    SubjectKind(String, &'static str),
    /// A claim this server cannot enforce is set.
    #[error("{0} is not supported by this server")]
    Unsupported(String),
}

/// The claims every NATS JWT carries, with the type-specific `nats` part.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims<N> {
    /// Issued at (unix seconds).
    #[serde(default)]
    pub iat: i64,
    /// Expires at (unix seconds); 0 = never.
    #[serde(default)]
    pub exp: i64,
    /// Not valid before (unix seconds); 0 = always.
    #[serde(default)]
    pub nbf: i64,
    /// The issuer's public nkey (it signed the JWT).
    pub iss: String,
    /// The subject's public nkey.
    pub sub: String,
    /// A display name.
    #[serde(default)]
    pub name: String,
    /// The type-specific claims.
    pub nats: N,
}

#[derive(Deserialize)]
struct Header {
    #[serde(default)]
    alg: String,
}

/// Decodes `token`, checks its signature by its issuer (`iss`) and that
/// `nats.type` is `expected`. Time is not checked here.
pub fn decode<N: DeserializeOwned + Typed>(token: &str) -> Result<Claims<N>, JwtError> {
    let token = token.trim();
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed(
            "expected header.claims.signature".into(),
        ));
    };
    let b64 = |p: &str| {
        URL_SAFE_NO_PAD
            .decode(p.trim_end_matches('='))
            .map_err(|e| JwtError::Malformed(e.to_string()))
    };
    let header: Header =
        serde_json::from_slice(&b64(h)?).map_err(|e| JwtError::Malformed(e.to_string()))?;
    if header.alg != "ed25519-nkey" && header.alg != "ed25519" {
        return Err(JwtError::Algorithm(header.alg));
    }
    let raw = b64(c)?;
    let kind: TypeOnly =
        serde_json::from_slice(&raw).map_err(|e| JwtError::Malformed(e.to_string()))?;
    if kind.nats.kind != N::TYPE {
        return Err(JwtError::WrongType {
            expected: N::TYPE,
            got: kind.nats.kind,
        });
    }
    let claims: Claims<N> =
        serde_json::from_slice(&raw).map_err(|e| JwtError::Malformed(e.to_string()))?;
    let sig = b64(s).or_else(|_| {
        STANDARD
            .decode(s)
            .map_err(|e| JwtError::Malformed(e.to_string()))
    })?;
    let signed = &token[..h.len() + 1 + c.len()];
    let key = nkeys::KeyPair::from_public_key(&claims.iss)
        .map_err(|_| JwtError::Signature(claims.iss.clone()))?;
    key.verify(signed.as_bytes(), &sig)
        .map_err(|_| JwtError::Signature(claims.iss.clone()))?;
    Ok(claims)
}

#[derive(Deserialize)]
struct TypeOnly {
    nats: TypeField,
}

#[derive(Deserialize)]
struct TypeField {
    #[serde(rename = "type", default)]
    kind: String,
}

/// The `nats.type` a claims struct stands for.
pub trait Typed {
    /// `operator`, `account` or `user`.
    const TYPE: &'static str;
}

/// `nats` of an operator JWT.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct OperatorNats {
    /// Keys that may sign account JWTs besides the operator's own.
    pub signing_keys: Vec<String>,
    /// The system account's public key.
    pub system_account: String,
}

impl Typed for OperatorNats {
    const TYPE: &'static str = "operator";
}

/// `nats.limits` of an account JWT (NATS, account and JetStream limits;
/// -1 = unlimited).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct AccountLimits {
    /// Subscriptions per connection.
    pub subs: i64,
    /// Bytes per message.
    pub payload: i64,
    /// Data bytes (not enforced by nats-server for clients either).
    pub data: i64,
    /// Client connections to the account.
    pub conn: i64,
    /// Leaf node connections (this server has no leaf nodes).
    pub leaf: i64,
    /// Imports.
    pub imports: i64,
    /// Exports.
    pub exports: i64,
    /// Wildcard exports allowed.
    pub wildcards: bool,
    /// Bearer tokens refused.
    pub disallow_bearer: bool,
    /// JetStream memory bytes (0 with `disk_storage` 0: JetStream off).
    pub mem_storage: i64,
    /// JetStream file bytes.
    pub disk_storage: i64,
    /// Streams.
    pub streams: i64,
    /// Consumers.
    pub consumer: i64,
    /// Highest `max_ack_pending` of a consumer.
    pub max_ack_pending: i64,
    /// Highest `max_bytes` of a memory stream.
    pub mem_max_stream_bytes: i64,
    /// Highest `max_bytes` of a file stream.
    pub disk_max_stream_bytes: i64,
    /// Every stream must set `max_bytes`.
    pub max_bytes_required: bool,
}

impl Default for AccountLimits {
    fn default() -> Self {
        AccountLimits {
            subs: -1,
            payload: -1,
            data: -1,
            conn: -1,
            leaf: -1,
            imports: -1,
            exports: -1,
            wildcards: true,
            disallow_bearer: false,
            mem_storage: 0,
            disk_storage: 0,
            streams: 0,
            consumer: 0,
            max_ack_pending: 0,
            mem_max_stream_bytes: 0,
            disk_max_stream_bytes: 0,
            max_bytes_required: false,
        }
    }
}

/// One entry of an account's `signing_keys`: a plain key, or a scoped key
/// whose users get the scope's template instead of their own permissions.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SigningKey {
    /// A public account nkey.
    Key(String),
    /// `{"kind": "user_scope", "key": ..., "template": {...}}`.
    Scoped {
        /// The public key.
        key: String,
        /// `user_scope`.
        #[serde(default)]
        kind: String,
        /// The users' permissions and limits.
        #[serde(default)]
        template: Box<UserPermissionLimits>,
    },
}

/// `nats` of an account JWT.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AccountNats {
    /// Limits.
    pub limits: AccountLimits,
    /// Keys that may sign the account's users.
    pub signing_keys: Vec<SigningKey>,
    /// User public key (or `*`) -> users issued at or before this time
    /// (unix seconds) are revoked.
    pub revocations: HashMap<String, i64>,
    /// Permissions of users whose JWT sets none.
    pub default_permissions: JwtPermissions,
    /// Imports (refused: not supported in operator mode yet).
    pub imports: Vec<serde_json::Value>,
    /// Exports (refused: not supported in operator mode yet).
    pub exports: Vec<serde_json::Value>,
    /// Subject mappings (refused: not supported in operator mode yet).
    pub mappings: serde_json::Map<String, serde_json::Value>,
    /// Per-tier JetStream limits (refused).
    pub tiered_limits: serde_json::Map<String, serde_json::Value>,
    /// External authorization (refused).
    pub authorization: serde_json::Value,
    /// Message tracing of `traceparent` messages (`trace { dest,
    /// sampling }`, refused: not built).
    pub trace: serde_json::Value,
}

impl Typed for AccountNats {
    const TYPE: &'static str = "account";
}

/// Allow/deny lists of a JWT.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct JwtSubjects {
    /// Allowed subjects.
    pub allow: Vec<String>,
    /// Denied subjects.
    pub deny: Vec<String>,
}

/// `resp` of a user JWT: responses allowed to received requests.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct JwtResponses {
    /// Responses per request.
    pub max: i64,
    /// For how long, in nanoseconds.
    pub ttl: i64,
}

/// `pub`, `sub`, `resp`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct JwtPermissions {
    /// Publish.
    #[serde(rename = "pub")]
    pub publish: JwtSubjects,
    /// Subscribe.
    #[serde(rename = "sub")]
    pub subscribe: JwtSubjects,
    /// Responses.
    pub resp: Option<JwtResponses>,
}

impl JwtPermissions {
    /// True when no permission is set (the account's defaults apply).
    pub fn is_empty(&self) -> bool {
        self.publish == JwtSubjects::default()
            && self.subscribe == JwtSubjects::default()
            && self.resp.is_none()
    }
}

/// A user's permissions and limits (the user JWT's, or a scope template).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct UserPermissionLimits {
    /// Permissions.
    #[serde(flatten)]
    pub permissions: JwtPermissions,
    /// Subscriptions (-1 = unlimited).
    pub subs: i64,
    /// Data bytes (-1 = unlimited).
    pub data: i64,
    /// Bytes per message (-1 = unlimited).
    pub payload: i64,
    /// Allowed source networks (refused when set).
    pub src: serde_json::Value,
    /// Allowed times of day (refused when set).
    pub times: serde_json::Value,
    /// Connection types (STANDARD, WEBSOCKET, ...).
    pub allowed_connection_types: Vec<String>,
    /// No signature over the nonce needed.
    pub bearer_token: bool,
}

impl Default for UserPermissionLimits {
    fn default() -> Self {
        UserPermissionLimits {
            permissions: JwtPermissions::default(),
            subs: -1,
            data: -1,
            payload: -1,
            src: serde_json::Value::Null,
            times: serde_json::Value::Null,
            allowed_connection_types: Vec::new(),
            bearer_token: false,
        }
    }
}

/// `nats` of a user JWT.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct UserNats {
    /// Permissions and limits.
    #[serde(flatten)]
    pub limits: UserPermissionLimits,
    /// With a signing key as `iss`: the account it signs for.
    pub issuer_account: String,
}

impl Typed for UserNats {
    const TYPE: &'static str = "user";
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn check_time(exp: i64, nbf: i64) -> Result<(), JwtError> {
    let now = now();
    if exp > 0 && now > exp {
        return Err(JwtError::Expired);
    }
    if nbf > 0 && now < nbf {
        return Err(JwtError::NotYetValid);
    }
    Ok(())
}

/// One trusted account, from its JWT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedAccount {
    /// Public key (the account's name in this server).
    pub key: String,
    /// Display name (`name` of the JWT).
    pub name: String,
    /// Expiry (unix seconds; 0 = never).
    pub exp: i64,
    /// Signing keys -> the scope template for scoped keys.
    signing_keys: HashMap<String, Option<UserPermissionLimits>>,
    revocations: HashMap<String, i64>,
    default_permissions: JwtPermissions,
    subs: i64,
    payload: i64,
    disallow_bearer: bool,
    limits: AccountLimits,
}

impl TrustedAccount {
    /// Whether the user `key`, issued at `iat` (unix seconds), is revoked
    /// (by key, or all users by `*`, issued at or before the time given).
    pub fn revokes(&self, key: &str, iat: i64) -> bool {
        let by = |k: &str| self.revocations.get(k).is_some_and(|ts| *ts >= iat);
        by(key) || by("*")
    }

    /// The JetStream part of its limits.
    pub fn jetstream_limits(&self) -> ([i64; 7], bool) {
        self.limits.jetstream_limits()
    }
}

/// The operators and accounts the configuration trusts. Accounts known
/// at startup may be updated while running (a newer JWT pushed to the
/// system account); the rest is fixed.
#[derive(Debug)]
pub struct Trust {
    operators: Vec<Operator>,
    /// Keys that may sign account JWTs (operators' identity and signing keys).
    operator_keys: Vec<String>,
    /// Accounts by public key.
    accounts: RwLock<HashMap<String, Arc<TrustedAccount>>>,
    /// The system account's public key.
    pub system_account: Option<String>,
    /// The directory resolver's directory (`None`: MEMORY).
    pub dir: Option<PathBuf>,
}

impl PartialEq for Trust {
    fn eq(&self, other: &Self) -> bool {
        self.operator_keys == other.operator_keys
            && self.system_account == other.system_account
            && self.dir == other.dir
    }
}

impl Eq for Trust {}

/// An operator's JWT, verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// Its public key.
    pub key: String,
    /// The keys that may sign accounts.
    pub signing_keys: Vec<String>,
    /// The system account it names, if any.
    pub system_account: Option<String>,
}

/// Reads an operator JWT (self-signed, as nsc writes them).
pub fn operator(token: &str) -> Result<Operator, JwtError> {
    let c: Claims<OperatorNats> = decode(token)?;
    check_time(c.exp, 0)?;
    if !c.sub.starts_with('O') || (c.iss != c.sub && !c.nats.signing_keys.contains(&c.iss)) {
        return Err(JwtError::Signature(c.iss));
    }
    Ok(Operator {
        key: c.sub,
        signing_keys: c.nats.signing_keys,
        system_account: (!c.nats.system_account.is_empty()).then_some(c.nats.system_account),
    })
}

/// A verified account JWT with what the server builds from it.
#[derive(Debug, Clone)]
pub struct AccountJwt {
    /// Who it trusts.
    pub trusted: TrustedAccount,
    /// Its limits (JetStream's among them).
    pub limits: AccountLimits,
}

/// Reads an account JWT that one of `operators` must have signed, and
/// refuses claims this server cannot honour.
pub fn account(token: &str, operators: &[Operator]) -> Result<AccountJwt, JwtError> {
    let c: Claims<AccountNats> = decode(token)?;
    if !operators
        .iter()
        .any(|o| o.key == c.iss || o.signing_keys.contains(&c.iss))
    {
        return Err(JwtError::Signature(c.iss));
    }
    if !c.sub.starts_with('A') {
        return Err(JwtError::SubjectKind(c.sub, "account"));
    }
    let n = &c.nats;
    let refuse = |what: &str| Err(JwtError::Unsupported(what.to_owned()));
    if !n.imports.is_empty() {
        return refuse("account imports in a JWT");
    }
    if !n.exports.is_empty() {
        return refuse("account exports in a JWT");
    }
    if !n.mappings.is_empty() {
        return refuse("account mappings in a JWT");
    }
    if !n.tiered_limits.is_empty() {
        return refuse("tiered JetStream limits in a JWT");
    }
    if !n.authorization.is_null() && n.authorization != serde_json::json!({}) {
        return refuse("external authorization (auth callout) in a JWT");
    }
    if !n.trace.is_null() && n.trace != serde_json::json!({}) {
        return refuse("message tracing of traceparent messages (trace) in a JWT");
    }
    if n.limits.conn >= 0 {
        return refuse("the account connection limit (limits.conn)");
    }
    if n.limits.data >= 0 {
        return refuse("the account data limit (limits.data)");
    }
    let l = &n.limits;
    let signing_keys = n
        .signing_keys
        .iter()
        .map(|k| match k {
            SigningKey::Key(k) => (k.clone(), None),
            SigningKey::Scoped { key, template, .. } => {
                (key.clone(), Some(UserPermissionLimits::clone(template)))
            }
        })
        .collect();
    Ok(AccountJwt {
        trusted: TrustedAccount {
            key: c.sub,
            name: c.name,
            exp: c.exp,
            signing_keys,
            revocations: n.revocations.clone(),
            default_permissions: n.default_permissions.clone(),
            subs: l.subs,
            payload: l.payload,
            disallow_bearer: l.disallow_bearer,
            limits: l.clone(),
        },
        limits: l.clone(),
    })
}

/// What a user JWT grants once verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtUser {
    /// The user's public key.
    pub key: String,
    /// The account (public key).
    pub account: String,
    /// Permissions (empty = unrestricted).
    pub permissions: JwtPermissions,
    /// Subscriptions per connection (`None` = unlimited).
    pub max_subs: Option<usize>,
    /// Bytes per message (`None` = the server's).
    pub max_payload: Option<usize>,
    /// When the user's JWT expires (unix seconds).
    pub expires: Option<i64>,
    /// When it was issued (unix seconds).
    pub issued_at: i64,
}

/// Why a CONNECT's JWT is refused (the client sees
/// `Authorization Violation` for each; the server logs the reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserRefused {
    /// The JWT itself is bad (format, signature, expiry).
    #[error(transparent)]
    Jwt(#[from] JwtError),
    /// The CONNECT carries no JWT.
    #[error("no user JWT in CONNECT")]
    Missing,
    /// Its account is not trusted (unknown to the resolver).
    #[error("account {0} not found")]
    UnknownAccount(String),
    /// The account's JWT has expired.
    #[error("account {0} has expired")]
    AccountExpired(String),
    /// The issuer is neither the account nor one of its signing keys.
    #[error("user JWT issuer {0} is not the account or one of its signing keys")]
    Issuer(String),
    /// The user is revoked by its account.
    #[error("user {0} has been revoked")]
    Revoked(String),
    /// No or a wrong signature over the nonce.
    #[error("signature over the nonce does not verify")]
    Signature,
    /// A bearer token where the account refuses them.
    #[error("bearer tokens are not allowed by the account")]
    Bearer,
    /// The JWT's `allowed_connection_types` leave this connection's out.
    #[error("connection type {} not allowed by the user JWT", .0.name())]
    ConnectionType(ConnectionType),
}

/// The kind of connection a user logs in through, as a user JWT's
/// `allowed_connection_types` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionType {
    /// The client port.
    Standard,
    /// The WebSocket listener.
    WebSocket,
    /// The MQTT listener.
    Mqtt,
}

impl ConnectionType {
    /// The name in `allowed_connection_types`.
    pub fn name(self) -> &'static str {
        match self {
            ConnectionType::Standard => "STANDARD",
            ConnectionType::WebSocket => "WEBSOCKET",
            ConnectionType::Mqtt => "MQTT",
        }
    }

    /// Whether `allowed` (a user JWT's list) lets this type in, as
    /// nats-server judges it: an empty list allows every type; names are
    /// compared without case; names nats-server does not know are left
    /// out, and a list of nothing but those allows no type (its author
    /// meant some type this server does not serve).
    pub fn allowed_by(self, allowed: &[String]) -> bool {
        const KNOWN: [&str; 7] = [
            "STANDARD",
            "WEBSOCKET",
            "LEAFNODE",
            "LEAFNODE_WS",
            "MQTT",
            "MQTT_WS",
            "IN_PROCESS",
        ];
        if allowed.is_empty() {
            return true;
        }
        allowed
            .iter()
            .map(|t| t.to_ascii_uppercase())
            .filter(|t| KNOWN.contains(&t.as_str()))
            .any(|t| t == self.name())
    }
}

/// CONNECT's `sig` (base64url without padding, or standard base64) over
/// the nonce, by the user's key.
fn verify_nonce(public: &str, nonce: &[u8], sig: &str) -> bool {
    let Ok(key) = nkeys::KeyPair::from_public_key(public) else {
        return false;
    };
    let Ok(sig) = URL_SAFE_NO_PAD
        .decode(sig)
        .or_else(|_| STANDARD.decode(sig))
    else {
        return false;
    };
    key.verify(nonce, &sig).is_ok()
}

impl AccountLimits {
    /// True when the account may use JetStream (some storage allowed).
    pub fn jetstream_enabled(&self) -> bool {
        self.mem_storage != 0 || self.disk_storage != 0
    }

    /// The JetStream part, to tell whether a newer JWT changes it.
    pub fn jetstream_limits(&self) -> ([i64; 7], bool) {
        (
            [
                self.mem_storage,
                self.disk_storage,
                self.streams,
                self.consumer,
                self.max_ack_pending,
                self.mem_max_stream_bytes,
                self.disk_max_stream_bytes,
            ],
            self.max_bytes_required,
        )
    }
}

fn limit(v: i64) -> Option<usize> {
    usize::try_from(v).ok()
}

fn min_limit(a: i64, b: i64) -> Option<usize> {
    match (limit(a), limit(b)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Trust {
    /// Trust in these operators and accounts (`dir`: the directory
    /// resolver's directory, where pushed account JWTs are stored).
    pub fn new(
        operators: &[Operator],
        accounts: Vec<TrustedAccount>,
        system_account: Option<String>,
        dir: Option<PathBuf>,
    ) -> Trust {
        let mut operator_keys = Vec::new();
        for o in operators {
            operator_keys.push(o.key.clone());
            operator_keys.extend(o.signing_keys.iter().cloned());
        }
        Trust {
            operators: operators.to_vec(),
            operator_keys,
            accounts: RwLock::new(
                accounts
                    .into_iter()
                    .map(|a| (a.key.clone(), Arc::new(a)))
                    .collect(),
            ),
            system_account,
            dir,
        }
    }

    fn read_accounts(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<TrustedAccount>>> {
        match self.accounts.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The trusted account of this public key.
    pub fn account(&self, key: &str) -> Option<Arc<TrustedAccount>> {
        self.read_accounts().get(key).cloned()
    }

    /// The operators, for verifying account JWTs pushed while running.
    pub fn operators(&self) -> &[Operator] {
        &self.operators
    }

    /// Replaces a known account's trust (revocations, signing keys,
    /// limits) with a newer JWT's; false when the account is unknown.
    pub fn update(&self, account: TrustedAccount) -> bool {
        let mut map = match self.accounts.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match map.get_mut(&account.key) {
            Some(a) => {
                *a = Arc::new(account);
                true
            }
            None => false,
        }
    }

    /// Trusts an account that was not known (a JWT pushed while running);
    /// replaces it when it was.
    pub fn add(&self, account: TrustedAccount) {
        let mut map = match self.accounts.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        map.insert(account.key.clone(), Arc::new(account));
    }

    /// Judges a CONNECT's `jwt` and `sig` (over `nonce`) on the client
    /// port.
    pub fn authenticate(
        &self,
        jwt: Option<&str>,
        sig: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<JwtUser, UserRefused> {
        self.authenticate_via(jwt, sig, nonce, ConnectionType::Standard)
    }

    /// Judges a CONNECT's `jwt` and `sig` (over `nonce`) for a connection
    /// of type `via` (the JWT's `allowed_connection_types`).
    pub fn authenticate_via(
        &self,
        jwt: Option<&str>,
        sig: Option<&str>,
        nonce: Option<&str>,
        via: ConnectionType,
    ) -> Result<JwtUser, UserRefused> {
        let jwt = jwt.filter(|j| !j.is_empty()).ok_or(UserRefused::Missing)?;
        let c: Claims<UserNats> = decode(jwt)?;
        check_time(c.exp, c.nbf)?;
        if !c.sub.starts_with('U') {
            return Err(JwtError::SubjectKind(c.sub, "user").into());
        }
        let account_key = if c.nats.issuer_account.is_empty() {
            c.iss.as_str()
        } else {
            c.nats.issuer_account.as_str()
        };
        let account = self
            .account(account_key)
            .ok_or_else(|| UserRefused::UnknownAccount(account_key.to_owned()))?;
        if account.exp > 0 && now() > account.exp {
            return Err(UserRefused::AccountExpired(account.key.clone()));
        }
        let scope = if c.iss == account.key {
            None
        } else {
            match account.signing_keys.get(&c.iss) {
                Some(scope) => scope.as_ref(),
                None => return Err(UserRefused::Issuer(c.iss.clone())),
            }
        };
        if account.revokes(&c.sub, c.iat) {
            return Err(UserRefused::Revoked(c.sub.clone()));
        }
        let granted = scope.unwrap_or(&c.nats.limits);
        if !granted.src.is_null() && granted.src != serde_json::json!([]) {
            return Err(JwtError::Unsupported("source network limits (src)".into()).into());
        }
        if !granted.times.is_null() && granted.times != serde_json::json!([]) {
            return Err(JwtError::Unsupported("connect time limits (times)".into()).into());
        }
        if !via.allowed_by(&granted.allowed_connection_types) {
            return Err(UserRefused::ConnectionType(via));
        }
        if granted.bearer_token {
            if account.disallow_bearer {
                return Err(UserRefused::Bearer);
            }
        } else {
            let (Some(sig), Some(nonce)) = (sig, nonce) else {
                return Err(UserRefused::Signature);
            };
            if !verify_nonce(&c.sub, nonce.as_bytes(), sig) {
                return Err(UserRefused::Signature);
            }
        }
        let permissions = if granted.permissions.is_empty() {
            account.default_permissions.clone()
        } else {
            granted.permissions.clone()
        };
        Ok(JwtUser {
            key: c.sub.clone(),
            account: account.key.clone(),
            permissions,
            max_subs: min_limit(granted.subs, account.subs),
            max_payload: min_limit(granted.payload, account.payload),
            expires: (c.exp > 0).then_some(c.exp),
            issued_at: c.iat,
        })
    }

    /// Whether `key` may sign account JWTs.
    pub fn trusts_operator_key(&self, key: &str) -> bool {
        self.operator_keys.iter().any(|k| k == key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nkeys::KeyPair;

    fn sign(claims: serde_json::Value, signer: &KeyPair) -> String {
        let h = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
        let c = URL_SAFE_NO_PAD.encode(claims.to_string());
        let sig = signer.sign(format!("{h}.{c}").as_bytes()).expect("sign");
        format!("{h}.{c}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    struct World {
        op: KeyPair,
        acc: KeyPair,
        trust: Trust,
    }

    fn world(account_nats: serde_json::Value) -> World {
        let op = KeyPair::new_operator();
        let acc = KeyPair::new_account();
        let o = operator(&sign(
            serde_json::json!({"iss": op.public_key(), "sub": op.public_key(),
                "nats": {"type": "operator", "version": 2}}),
            &op,
        ))
        .expect("operator");
        let a = account(
            &sign(
                serde_json::json!({"iss": op.public_key(), "sub": acc.public_key(), "name": "A",
                    "nats": account_nats}),
                &op,
            ),
            std::slice::from_ref(&o),
        )
        .expect("account");
        let trust = Trust::new(&[o], vec![a.trusted], None, None);
        World { op, acc, trust }
    }

    fn user_jwt(signer: &KeyPair, user: &KeyPair, nats: serde_json::Value, iat: i64) -> String {
        sign(
            serde_json::json!({"iss": signer.public_key(), "sub": user.public_key(), "iat": iat,
                "nats": nats}),
            signer,
        )
    }

    fn sig(user: &KeyPair, nonce: &str) -> String {
        URL_SAFE_NO_PAD.encode(user.sign(nonce.as_bytes()).expect("sign"))
    }

    #[test]
    fn a_user_signed_by_its_account_with_a_nonce_signature_gets_its_permissions() {
        let w = world(serde_json::json!({"type": "account", "limits": {"subs": 5}}));
        let u = KeyPair::new_user();
        let jwt = user_jwt(
            &w.acc,
            &u,
            serde_json::json!({"type": "user", "pub": {"allow": ["a.>"]}, "payload": 10}),
            now(),
        );
        let got = w
            .trust
            .authenticate(Some(&jwt), Some(&sig(&u, "nonce")), Some("nonce"))
            .expect("accepted");
        assert_eq!(got.account, w.acc.public_key());
        assert_eq!(got.max_subs, Some(5));
        assert_eq!(got.max_payload, Some(10));
        assert_eq!(got.permissions.publish.allow, vec!["a.>".to_owned()]);
        assert_eq!(
            w.trust
                .authenticate(Some(&jwt), Some(&sig(&u, "other")), Some("nonce")),
            Err(UserRefused::Signature)
        );
    }

    #[test]
    fn revoked_expired_foreign_and_tampered_users_are_refused() {
        let revoked_user = KeyPair::new_user();
        let w = world(serde_json::json!({"type": "account",
            "revocations": {revoked_user.public_key(): now() + 5}}));
        let jwt = user_jwt(
            &w.acc,
            &revoked_user,
            serde_json::json!({"type": "user"}),
            now(),
        );
        let s = sig(&revoked_user, "n");
        assert!(matches!(
            w.trust.authenticate(Some(&jwt), Some(&s), Some("n")),
            Err(UserRefused::Revoked(_))
        ));
        let u = KeyPair::new_user();
        let expired = sign(
            serde_json::json!({"iss": w.acc.public_key(), "sub": u.public_key(),
                "exp": now() - 10, "nats": {"type": "user"}}),
            &w.acc,
        );
        assert_eq!(
            w.trust
                .authenticate(Some(&expired), Some(&sig(&u, "n")), Some("n")),
            Err(UserRefused::Jwt(JwtError::Expired))
        );
        let stranger = KeyPair::new_account();
        let foreign = user_jwt(&stranger, &u, serde_json::json!({"type": "user"}), now());
        assert!(matches!(
            w.trust
                .authenticate(Some(&foreign), Some(&sig(&u, "n")), Some("n")),
            Err(UserRefused::UnknownAccount(_))
        ));
        let good = user_jwt(&w.acc, &u, serde_json::json!({"type": "user"}), now());
        let mut parts: Vec<&str> = good.split('.').collect();
        let other = user_jwt(
            &w.acc,
            &u,
            serde_json::json!({"type": "user", "subs": 1}),
            now(),
        );
        let other_claims = other.split('.').nth(1).expect("claims");
        parts[1] = other_claims;
        let tampered = parts.join(".");
        // Claims swapped under the old signature.
        assert!(matches!(
            w.trust
                .authenticate(Some(&tampered), Some(&sig(&u, "n")), Some("n")),
            Err(UserRefused::Jwt(JwtError::Signature(_)))
        ));
        assert!(w.trust.trusts_operator_key(&w.op.public_key()));
        // A "user" JWT whose subject is no user key, and one not valid yet.
        let not_a_user = KeyPair::new_account();
        let jwt = user_jwt(
            &w.acc,
            &not_a_user,
            serde_json::json!({"type": "user"}),
            now(),
        );
        assert!(matches!(
            w.trust
                .authenticate(Some(&jwt), Some(&sig(&not_a_user, "n")), Some("n")),
            Err(UserRefused::Jwt(JwtError::SubjectKind(_, "user")))
        ));
        let early = sign(
            serde_json::json!({"iss": w.acc.public_key(), "sub": u.public_key(),
                "nbf": now() + 3600, "nats": {"type": "user"}}),
            &w.acc,
        );
        assert_eq!(
            w.trust
                .authenticate(Some(&early), Some(&sig(&u, "n")), Some("n")),
            Err(UserRefused::Jwt(JwtError::NotYetValid))
        );
    }

    #[test]
    fn allowed_connection_types_let_in_only_the_types_they_name() {
        let w = world(serde_json::json!({"type": "account"}));
        let u = KeyPair::new_user();
        let judged = |types: serde_json::Value, via: ConnectionType| {
            let jwt = user_jwt(
                &w.acc,
                &u,
                serde_json::json!({"type": "user", "bearer_token": true,
                                   "allowed_connection_types": types}),
                now(),
            );
            w.trust.authenticate_via(Some(&jwt), None, None, via)
        };
        assert!(judged(serde_json::json!([]), ConnectionType::Mqtt).is_ok());
        assert!(judged(serde_json::json!(["MQTT"]), ConnectionType::Mqtt).is_ok());
        assert!(judged(serde_json::json!(["mqtt"]), ConnectionType::Mqtt).is_ok());
        assert!(
            judged(
                serde_json::json!(["STANDARD", "MQTT"]),
                ConnectionType::Standard
            )
            .is_ok()
        );
        assert_eq!(
            judged(serde_json::json!(["MQTT"]), ConnectionType::Standard).err(),
            Some(UserRefused::ConnectionType(ConnectionType::Standard))
        );
        assert_eq!(
            judged(serde_json::json!(["STANDARD"]), ConnectionType::WebSocket).err(),
            Some(UserRefused::ConnectionType(ConnectionType::WebSocket))
        );
        // Only names nats-server does not know: no type is let in.
        assert!(judged(serde_json::json!(["CARRIER_PIGEON"]), ConnectionType::Mqtt).is_err());
        assert!(
            judged(
                serde_json::json!(["CARRIER_PIGEON", "MQTT"]),
                ConnectionType::Mqtt
            )
            .is_ok()
        );
    }

    #[test]
    fn a_scoped_signing_key_grants_its_template_not_the_users_claims() {
        let sk = KeyPair::new_account();
        let op = KeyPair::new_operator();
        let acc = KeyPair::new_account();
        let o = operator(&sign(
            serde_json::json!({"iss": op.public_key(), "sub": op.public_key(),
                "nats": {"type": "operator"}}),
            &op,
        ))
        .expect("operator");
        let a = account(
            &sign(
                serde_json::json!({"iss": op.public_key(), "sub": acc.public_key(),
                    "nats": {"type": "account", "signing_keys": [
                        {"kind": "user_scope", "key": sk.public_key(),
                         "template": {"sub": {"allow": ["s.>"]}}}]}}),
                &op,
            ),
            std::slice::from_ref(&o),
        )
        .expect("account");
        let trust = Trust::new(&[o], vec![a.trusted], None, None);
        let u = KeyPair::new_user();
        let jwt = user_jwt(
            &sk,
            &u,
            serde_json::json!({"type": "user", "issuer_account": acc.public_key()}),
            now(),
        );
        let got = trust
            .authenticate(Some(&jwt), Some(&sig(&u, "n")), Some("n"))
            .expect("accepted");
        assert_eq!(got.permissions.subscribe.allow, vec!["s.>".to_owned()]);
    }

    #[test]
    fn account_claims_this_server_cannot_honour_are_refused() {
        let op = KeyPair::new_operator();
        let o = operator(&sign(
            serde_json::json!({"iss": op.public_key(), "sub": op.public_key(),
                "nats": {"type": "operator"}}),
            &op,
        ))
        .expect("operator");
        let acc = KeyPair::new_account();
        for nats in [
            serde_json::json!({"type": "account", "exports": [{"subject": "x", "type": "stream"}]}),
            serde_json::json!({"type": "account", "limits": {"conn": 3}}),
            serde_json::json!({"type": "account", "tiered_limits": {"R1": {}}}),
            serde_json::json!({"type": "account", "trace": {"dest": "t", "sampling": 50}}),
        ] {
            let t = sign(
                serde_json::json!({"iss": op.public_key(), "sub": acc.public_key(), "nats": nats}),
                &op,
            );
            assert!(matches!(
                account(&t, std::slice::from_ref(&o)),
                Err(JwtError::Unsupported(_))
            ));
        }
        // Signed by someone else than the operator.
        let t = sign(
            serde_json::json!({"iss": acc.public_key(), "sub": acc.public_key(),
                "nats": {"type": "account"}}),
            &acc,
        );
        assert!(matches!(
            account(&t, std::slice::from_ref(&o)),
            Err(JwtError::Signature(_))
        ));
        assert!(matches!(
            account("not.a.jwt", std::slice::from_ref(&o)),
            Err(JwtError::Malformed(_))
        ));
        assert!(matches!(operator(&t), Err(JwtError::WrongType { .. })));
    }
}
