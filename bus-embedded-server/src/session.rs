//! One client connection's session: the read loop (parse, dispatch, server
//! PINGs, auth timeout), CONNECT and authentication, SUB/UNSUB, and PUB
//! handed to the account's fan-out and then to JetStream. `serve` is a
//! connection's whole life: TLS upgrade (by `tls`), the writer task (by
//! `outbound`), the session, cleanup.
//!
//! The session is the only owner of its connection's read half and of its
//! subscription table; other connections reach it only through its
//! `Client` handle. It must not write to a socket itself (the writer
//! does) or deliver to subscribers except through `Account`'s fan-out.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rustc_hash::FxHashMap;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;

use crate::account::{Account, Message};
use crate::auth::{Credentials, Rules};
use crate::outbound::{self, Batch, Client, CloseReason, Sub};
use crate::parser::{ClientOp, Parsed, Parser, PubAt};
use crate::state::ServerState;
use crate::sublist::{Matches, Subscription};
use crate::trace::{self, Tracer};
use crate::{subject, tls};

#[derive(Deserialize)]
#[serde(default)]
struct Connect {
    verbose: bool,
    pedantic: bool,
    echo: Option<bool>,
    headers: bool,
    no_responders: bool,
    name: Option<String>,
    lang: Option<String>,
    version: Option<String>,
    user: Option<String>,
    pass: Option<String>,
    auth_token: Option<String>,
    nkey: Option<String>,
    sig: Option<String>,
    jwt: Option<String>,
}

impl Default for Connect {
    fn default() -> Self {
        // nats-server treats a CONNECT without "verbose" or "pedantic" as
        // verbose and pedantic.
        Connect {
            verbose: true,
            pedantic: true,
            echo: None,
            headers: false,
            no_responders: false,
            name: None,
            lang: None,
            version: None,
            user: None,
            pass: None,
            auth_token: None,
            nkey: None,
            sig: None,
            jwt: None,
        }
    }
}

/// The outcome of checking a CONNECT's credentials, owned (it may come
/// back from a blocking thread).
enum Login {
    /// No authentication configured.
    Open,
    /// Authenticated: the user's permissions and account (`None`: `$G`).
    User {
        permissions: Option<crate::config::Permissions>,
        account: Option<String>,
        /// Operator mode: the user JWT's limits and expiry.
        jwt: Option<Box<JwtLimits>>,
    },
    /// Bad or missing credentials.
    Refused,
}

/// What a user JWT limits beyond permissions.
struct JwtLimits {
    /// The user's public key and JWT issue time.
    user: (String, i64),
    max_subs: Option<usize>,
    max_payload: Option<usize>,
    /// Unix seconds.
    expires: Option<i64>,
}

/// Operator mode: the CONNECT's `jwt`, signed nonce and the account, for
/// a connection through `via`.
fn jwt_login(trust: &crate::jwt::Trust, c: &Connect, nonce: Option<&str>, via: Listener) -> Login {
    match trust.authenticate_via(
        c.jwt.as_deref(),
        c.sig.as_deref(),
        nonce,
        via.connection_type(),
    ) {
        Ok(user) => Login::User {
            permissions: crate::auth::jwt_permissions(&user.permissions),
            account: Some(user.account),
            jwt: Some(Box::new(JwtLimits {
                user: (user.key, user.issued_at),
                max_subs: user.max_subs,
                max_payload: user.max_payload,
                expires: user.expires,
            })),
        },
        Err(why) => {
            tracing::debug!("JWT authentication refused: {why}");
            Login::Refused
        }
    }
}

fn parse_connect(json: &[u8]) -> Result<Connect, CloseReason> {
    // nats-server closes without an -ERR.
    serde_json::from_slice(json).map_err(|_| CloseReason::ProtocolError)
}

/// The listener a connection came through, for the authentication that
/// applies to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listener {
    /// The client port: the server's authentication.
    Nats,
    /// The WebSocket listener: its block's own authentication when it has
    /// one (`WebSocketConfig::auth`), else the server's.
    WebSocket,
    /// The MQTT listener: its block's own authentication when it has one
    /// (`MqttConfig::auth`), else the server's.
    Mqtt,
}

impl Listener {
    /// The listener's own authentication, replacing the server's.
    fn own_auth(self, state: &ServerState) -> Option<&crate::config::ListenerAuth> {
        match self {
            Listener::Nats => None,
            Listener::WebSocket => state.config.websocket.as_ref()?.auth.as_ref(),
            Listener::Mqtt => state.config.mqtt.as_ref()?.auth.as_ref(),
        }
    }

    /// The listener's own `ping_interval`.
    fn ping_interval(self, state: &ServerState) -> Option<std::time::Duration> {
        match self {
            Listener::WebSocket => state.config.websocket.as_ref()?.ping_interval,
            Listener::Nats | Listener::Mqtt => None,
        }
    }

    /// The connection type a user JWT's `allowed_connection_types` names.
    fn connection_type(self) -> crate::jwt::ConnectionType {
        match self {
            Listener::Nats => crate::jwt::ConnectionType::Standard,
            Listener::WebSocket => crate::jwt::ConnectionType::WebSocket,
            Listener::Mqtt => crate::jwt::ConnectionType::Mqtt,
        }
    }

    /// The listener's own `authorization { timeout }`.
    fn auth_timeout(self, state: &ServerState) -> Option<std::time::Duration> {
        match self {
            Listener::Nats => None,
            Listener::WebSocket => state.config.websocket.as_ref()?.auth_timeout,
            Listener::Mqtt => state.config.mqtt.as_ref()?.auth_timeout,
        }
    }
}

/// Checks a CONNECT's credentials against the server's, or the
/// listener's own (`nonce`: the one sent in INFO). May take a bcrypt
/// verification.
fn login(state: &ServerState, c: &Connect, nonce: Option<&str>, via: Listener) -> Login {
    let creds = Credentials {
        user: c.user.as_deref(),
        pass: c.pass.as_deref(),
        token: c.auth_token.as_deref(),
        nkey: c.nkey.as_deref(),
        sig: c.sig.as_deref(),
    };
    if let Some(own) = via.own_auth(state) {
        return match own.authenticate(state.config.auth.as_ref(), &creds, nonce) {
            Some((permissions, account)) => Login::User {
                permissions: permissions.cloned(),
                account: account.map(str::to_owned),
                jwt: None,
            },
            None => Login::Refused,
        };
    }
    let Some(auth) = &state.config.auth else {
        return Login::Open;
    };
    if let crate::config::Auth::Operator(trust) = auth {
        return jwt_login(trust, c, nonce, via);
    }
    let found = match &state.config.no_auth_user {
        Some(name) if creds.is_empty() => auth.no_auth_identity(name),
        _ => auth.authenticate_account(&creds, nonce),
    };
    match found {
        Some((permissions, account)) => Login::User {
            permissions: permissions.cloned(),
            account: account.map(str::to_owned),
            jwt: None,
        },
        None => Login::Refused,
    }
}

/// Per-connection state owned by the read loop.
struct Session {
    shared: Arc<ServerState>,
    client: Arc<Client>,
    /// The connection's account: its subscriptions and publishes live there
    /// (`$G` until CONNECT authenticates a user of another).
    account: Arc<Account>,
    parser: Parser,
    subs: FxHashMap<Bytes, Arc<Sub>>,
    cache: FxHashMap<Bytes, (u64, Arc<Matches<Client>>)>,
    verbose: bool,
    pedantic: bool,
    no_responders: bool,
    echo: bool,
    pings_out: u32,
    /// The listener the connection came through.
    via: Listener,
    /// This read's deliveries: writers to wake at its end, slower
    /// consumers to wait for.
    batch: Batch,
    /// CONNECT received (nats-server sends no PING before it).
    connected: bool,
    /// The nonce sent in INFO (nkey users sign it).
    nonce: Option<String>,
    /// The user's permissions; `None` = unrestricted (the fast path).
    rules: Option<Arc<Rules>>,
    /// Publish decisions by subject (allow/deny lists only; responses are
    /// never cached).
    pub_cache: FxHashMap<Bytes, bool>,
    /// `-V`: log each op.
    trace: bool,
    /// Subscriptions allowed (0 = unlimited): the server's, or a user
    /// JWT's.
    max_subs: usize,
    /// Operator mode: a user of the system account (its `$SYS.REQ.`
    /// requests are answered by the server).
    system: bool,
    /// A user JWT allows no subscription (`subs: 0`).
    subs_forbidden: bool,
    /// Operator mode: when the connection ends (the user's JWT expires),
    /// with the error text sent then.
    close_at: Option<(tokio::time::Instant, Option<&'static str>, CloseReason)>,
}

/// Logs one received op the way nats-server traces (`<<- [OP args]`),
/// payloads left out.
fn trace_op(cid: u64, addr: std::net::SocketAddr, op: &ClientOp) {
    let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
    let line = match op {
        ClientOp::Pub {
            subject,
            reply,
            header_len,
            payload,
        } => {
            let verb = if header_len.is_some() { "HPUB" } else { "PUB" };
            let reply = reply
                .as_ref()
                .map(|r| format!(" {}", text(r)))
                .unwrap_or_default();
            let hdr = header_len.map(|h| format!(" {h}")).unwrap_or_default();
            format!("{verb} {}{reply}{hdr} {}", text(subject), payload.len())
        }
        ClientOp::Sub {
            subject,
            queue,
            sid,
        } => match queue {
            Some(q) => format!("SUB {} {} {}", text(subject), text(q), text(sid)),
            None => format!("SUB {} {}", text(subject), text(sid)),
        },
        ClientOp::Unsub { sid, max } => match max {
            Some(m) => format!("UNSUB {} {m}", text(sid)),
            None => format!("UNSUB {}", text(sid)),
        },
        ClientOp::Connect(json) => format!("CONNECT {}", redact_connect(json)),
        ClientOp::Ping => "PING".to_owned(),
        ClientOp::Pong => "PONG".to_owned(),
        ClientOp::Info => "INFO".to_owned(),
    };
    tracing::trace!("{addr} - cid:{cid} - <<- [{line}]");
}

/// CONNECT fields whose values never reach a log (nats-server redacts the
/// same ones, nkey included).
const SECRETS: &[&str] = &["pass", "password", "auth_token", "sig", "nkey", "jwt"];

/// The CONNECT JSON as written, with the string value of each secret field
/// replaced by `[REDACTED]`. Works on the text (keeps the client's key order
/// and spacing, as nats-server's trace does) and honours escaped quotes
/// inside a value, which nats-server's does not.
fn redact_connect(json: &[u8]) -> String {
    let text = String::from_utf8_lossy(json);
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    // Index just past the closing quote of the string starting at `start`
    // (which is a quote).
    let string_end = |start: usize| {
        let mut j = start + 1;
        while j < bytes.len() {
            match bytes[j] {
                b'\\' => j += 2,
                b'"' => return j + 1,
                _ => j += 1,
            }
        }
        bytes.len()
    };
    while i < bytes.len() {
        if bytes[i] != b'"' {
            i += 1;
            continue;
        }
        let key_end = string_end(i);
        let key = &text[i + 1..key_end.saturating_sub(1).max(i + 1)];
        let mut j = key_end;
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        if j < bytes.len() && bytes[j] == b':' {
            j += 1;
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            if j < bytes.len() && bytes[j] == b'"' {
                let value_end = string_end(j);
                if SECRETS.contains(&key) {
                    out.push_str(&text[copied..=j]);
                    out.push_str("[REDACTED]\"");
                    copied = value_end;
                }
                i = value_end;
                continue;
            }
        }
        i = key_end;
    }
    out.push_str(&text[copied.min(text.len())..]);
    out
}

const CACHE_MAX: usize = 4096;

/// A copy of `subject` to keep as a cache key. A published subject is a
/// slice of the connection's read buffer; kept as it is, each of up to
/// [`CACHE_MAX`] keys would pin the buffer it was read into (64 KiB, or the
/// size of the largest message read into it): 2,000 publishes of 1 MB to
/// distinct subjects held 2.2 GiB (`bench/scripts/retained-by-subjects.py`).
fn detached(subject: &[u8]) -> Bytes {
    Bytes::copy_from_slice(subject)
}

/// Most publish permission decisions remembered per connection.
const PERM_CACHE_MAX: usize = 1024;
/// When the first server PING goes out (nats-server: 2 s).
const FIRST_PING: Duration = Duration::from_secs(2);
/// A connection's read buffer: its usual capacity, and the spare room under
/// which it is given that much more before a read.
const READ_CAPACITY: usize = 64 * 1024;
const READ_MIN_SPARE: usize = 4096;
/// A read buffer that grew past this (for a payload larger than
/// [`READ_CAPACITY`]) is replaced by a fresh one once everything in it was
/// parsed, so one large message does not keep its size for the life of the
/// connection.
const READ_SHRINK_ABOVE: usize = 4 * READ_CAPACITY;

/// Makes `buf` ready for the next read: back to [`READ_CAPACITY`] when it
/// is empty and grew past [`READ_SHRINK_ABOVE`], else at least
/// [`READ_MIN_SPARE`] bytes of room.
fn fit_read_buffer(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > READ_SHRINK_ABOVE {
        *buf = BytesMut::with_capacity(READ_CAPACITY);
    } else if buf.capacity() - buf.len() < READ_MIN_SPARE {
        buf.reserve(READ_CAPACITY);
    }
}

impl Session {
    fn err(&self, text: &str) {
        let mut line = Vec::with_capacity(text.len() + 10);
        line.extend_from_slice(b"-ERR '");
        line.extend_from_slice(text.as_bytes());
        line.extend_from_slice(b"'\r\n");
        self.client.send(&line);
    }

    fn ok(&self) {
        if self.verbose {
            self.client.send(b"+OK\r\n");
        }
    }

    fn matches(&mut self, subject: &[u8], text: &str) -> Arc<Matches<Client>> {
        let generation = self.account.sublist.generation();
        if let Some((g, m)) = self.cache.get(subject) {
            if *g == generation {
                return Arc::clone(m);
            }
        }
        let m = Arc::new(self.account.sublist.matches(text));
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
        self.cache
            .insert(detached(subject), (generation, Arc::clone(&m)));
        m
    }

    /// Handles a publish left in the read buffer (`buf` starts with it):
    /// what [`Session::handle`] does for a [`ClientOp::Pub`], without the
    /// op's reference-counted slices. Not for a traced connection, whose
    /// trace line wants the op.
    fn handle_pub_at(&mut self, buf: &[u8], at: PubAt) -> Result<(), CloseReason> {
        self.connect_first(false)?;
        self.publish_checked(
            at.subject(buf),
            at.reply(buf),
            at.header_len,
            at.payload(buf),
        )
    }

    /// A publish as received: HPUB needs headers negotiated.
    fn publish_checked(
        &mut self,
        subject: &[u8],
        reply: Option<&[u8]>,
        header_len: Option<usize>,
        payload: &[u8],
    ) -> Result<(), CloseReason> {
        if header_len.is_some() && !self.client.headers.load(Ordering::Relaxed) {
            // HPUB without headers negotiated: nats-server closes.
            return Err(CloseReason::ProtocolError);
        }
        self.publish(subject, reply, header_len, payload)
    }

    /// With auth, the first op must be CONNECT (nats-server): any other op
    /// (`is_connect` false) before it ends the connection.
    fn connect_first(&mut self, is_connect: bool) -> Result<(), CloseReason> {
        if self.shared.config.auth.is_some() && !self.connected && !is_connect {
            self.err("Authorization Violation");
            return Err(CloseReason::AuthorizationViolation);
        }
        Ok(())
    }

    /// Handles one op; `Err` ends the connection.
    fn handle(&mut self, op: ClientOp) -> Result<(), CloseReason> {
        if self.trace {
            trace_op(self.client.id, self.client.addr, &op);
        }
        self.connect_first(matches!(op, ClientOp::Connect(_)))?;
        match op {
            ClientOp::Pub {
                subject,
                reply,
                header_len,
                payload,
            } => self.publish_checked(&subject, reply.as_deref(), header_len, &payload),
            ClientOp::Sub {
                subject,
                queue,
                sid,
            } => {
                self.subscribe(subject, queue, sid);
                Ok(())
            }
            ClientOp::Unsub { sid, max } => {
                self.unsubscribe(&sid, max);
                self.ok();
                Ok(())
            }
            ClientOp::Ping => {
                self.client.send(b"PONG\r\n");
                Ok(())
            }
            ClientOp::Pong => {
                self.pings_out = 0;
                Ok(())
            }
            ClientOp::Connect(json) => self.connect(&json),
            ClientOp::Info => Ok(()),
        }
    }

    fn connect(&mut self, json: &[u8]) -> Result<(), CloseReason> {
        let c = parse_connect(json)?;
        let login = login(&self.shared, &c, self.nonce.as_deref(), self.via);
        self.finish_connect(c, login)
    }

    /// True when checking a CONNECT's credentials costs a bcrypt
    /// verification: `connect_off_workers` does it.
    fn slow_auth(&self) -> bool {
        self.shared
            .config
            .auth
            .as_ref()
            .is_some_and(|a| a.bcrypt_hash().is_some())
            || self
                .via
                .own_auth(&self.shared)
                .is_some_and(crate::config::ListenerAuth::bcrypt)
    }

    /// CONNECT when authentication is slow (bcrypt): the check runs on a
    /// blocking thread, so the connections sharing this worker wait for
    /// nothing.
    async fn connect_off_workers(&mut self, json: Bytes) -> Result<(), CloseReason> {
        if self.trace {
            trace_op(
                self.client.id,
                self.client.addr,
                &ClientOp::Connect(json.clone()),
            );
        }
        let c = parse_connect(&json)?;
        let shared = Arc::clone(&self.shared);
        let nonce = self.nonce.clone();
        let via = self.via;
        let (c, login) = tokio::task::spawn_blocking(move || {
            let login = login(&shared, &c, nonce.as_deref(), via);
            (c, login)
        })
        .await
        .map_err(|_| CloseReason::ProtocolError)?;
        self.finish_connect(c, login)
    }

    /// Applies an authenticated (or refused) CONNECT.
    fn finish_connect(&mut self, c: Connect, login: Login) -> Result<(), CloseReason> {
        match login {
            Login::Open => {}
            Login::User {
                permissions,
                account,
                jwt,
            } if !self.connected => {
                if let Some(limits) = jwt {
                    self.apply_jwt_limits(&limits);
                }
                if let Some(perms) = permissions {
                    let rules = Arc::new(Rules::new(&perms));
                    let _ = self.client.rules.set(Arc::clone(&rules));
                    self.rules = Some(rules);
                }
                if let Some(name) = account {
                    // An account the server does not run is refused,
                    // never `$G`.
                    let Some(account) = self.shared.accounts.get(&name) else {
                        self.err("Authorization Violation");
                        return Err(CloseReason::AuthorizationViolation);
                    };
                    let _ = self.client.account.set(Arc::clone(&account.name));
                    self.account = account;
                    self.system = matches!(&self.shared.config.auth,
                        Some(crate::config::Auth::Operator(t))
                            if t.system_account.as_deref() == Some(name.as_str()));
                }
            }
            Login::User { .. } => {}
            Login::Refused => {
                self.err("Authorization Violation");
                return Err(CloseReason::AuthorizationViolation);
            }
        }
        if c.no_responders && !c.headers {
            self.err("no responders requires headers support");
            return Err(CloseReason::ProtocolError);
        }
        self.connected = true;
        self.verbose = c.verbose;
        self.pedantic = c.pedantic;
        self.no_responders = c.no_responders;
        self.echo = c.echo.unwrap_or(true);
        self.client.echo.store(self.echo, Ordering::Relaxed);
        self.client.headers.store(c.headers, Ordering::Relaxed);
        self.client.set_identity(
            c.name.unwrap_or_default(),
            c.lang.unwrap_or_default(),
            c.version.unwrap_or_default(),
        );
        self.ok();
        Ok(())
    }

    /// A user JWT's limits: the smaller of its and the server's.
    fn apply_jwt_limits(&mut self, limits: &JwtLimits) {
        let _ = self.client.jwt_user.set(limits.user.clone());
        if let Some(n) = limits.max_subs {
            self.max_subs = if self.max_subs == 0 {
                n
            } else {
                self.max_subs.min(n)
            };
            if n == 0 {
                // A JWT's 0 allows no subscription at all: as nats-server,
                // the error and the close come a moment after CONNECT
                // (what the client already sent is still answered).
                self.subs_forbidden = true;
                self.close_at = Some((
                    tokio::time::Instant::now() + std::time::Duration::from_millis(20),
                    Some("maximum subscriptions exceeded"),
                    CloseReason::MaxSubscriptionsExceeded,
                ));
                return;
            }
        }
        if let Some(n) = limits.max_payload {
            self.parser
                .set_max_payload(n.min(self.shared.config.max_payload));
        }
        if let Some(exp) = limits.expires {
            let at = std::time::UNIX_EPOCH
                + std::time::Duration::from_secs(u64::try_from(exp).unwrap_or(0));
            let left = at
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            self.close_at = Some((
                tokio::time::Instant::now() + left,
                // nats-server's words when a user JWT expires mid-connection.
                Some("User Authentication Expired"),
                CloseReason::AuthenticationExpired,
            ));
        }
    }

    fn subscribe(&mut self, subject: Bytes, queue: Option<Bytes>, sid: Bytes) {
        let Ok(text) = std::str::from_utf8(&subject) else {
            self.err("Invalid Subject");
            return;
        };
        // nats-server checks permissions before the subject's form.
        if let Some(rules) = &self.rules {
            let q = queue.as_deref().map(String::from_utf8_lossy);
            if !rules.may_subscribe(text, q.as_deref()) {
                let text = match &q {
                    Some(q) => format!(
                        "Permissions Violation for Subscription to \"{text}\" using queue \"{q}\""
                    ),
                    None => format!("Permissions Violation for Subscription to \"{text}\""),
                };
                self.err(&text);
                return;
            }
        }
        let max_subs = self.max_subs;
        if (self.subs_forbidden || (max_subs > 0 && self.subs.len() >= max_subs))
            && !self.subs.contains_key(&sid)
        {
            // nats-server: refused, the connection stays open.
            self.err("maximum subscriptions exceeded");
            return;
        }
        if !subject::valid_filter(text) {
            self.err("Invalid Subject");
            return;
        }
        let queue: Option<&str> = match &queue {
            Some(q) => match std::str::from_utf8(q) {
                Ok(q) if !q.is_empty() => Some(q),
                _ => {
                    self.err("Invalid Subject");
                    return;
                }
            },
            None => None,
        };
        if self.subs.contains_key(&sid) {
            // nats-server ignores a duplicate sid.
            self.ok();
            return;
        }
        let sub = Arc::new(Subscription::new(
            Arc::clone(&self.client),
            text,
            queue,
            sid.clone(),
        ));
        self.account.sublist.insert(Arc::clone(&sub));
        self.client.subs.fetch_add(1, Ordering::Relaxed);
        self.subs.insert(sid, sub);
        if let Some(js) = &self.account.jetstream {
            js.subscribed(text);
        }
        self.ok();
    }

    fn unsubscribe(&mut self, sid: &Bytes, max: Option<u64>) {
        let Some(sub) = self.subs.get(sid).cloned() else {
            return;
        };
        match max {
            Some(m) if m > 0 && sub.delivered.load(Ordering::Relaxed) < m => {
                sub.max.store(m, Ordering::Relaxed);
            }
            _ => {
                self.subs.remove(sid);
                if self.account.sublist.remove(&sub) {
                    self.client.subs.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn publish(
        &mut self,
        subject: &[u8],
        reply: Option<&[u8]>,
        header_len: Option<usize>,
        payload: &[u8],
    ) -> Result<(), CloseReason> {
        let Ok(text) = std::str::from_utf8(subject) else {
            self.err("Invalid Publish Subject");
            return Ok(());
        };
        let mut malformed = false;
        if !subject::valid_literal(text) {
            // nats-server: in pedantic mode (the default when CONNECT does
            // not say) an -ERR; either way a malformed subject (empty
            // tokens) is dropped, while one whose only fault is a wildcard
            // token is still delivered (clients put filters in JetStream
            // API subjects).
            if self.pedantic {
                self.err("Invalid Publish Subject");
            }
            malformed = subject::has_empty_token(text);
        }
        // Message tracing: only a message with headers is looked at.
        if let Some(h) = header_len.filter(|h| *h > 0 && *h <= payload.len())
            && let Some(request) = trace::requested(&payload[..h])
        {
            return self.publish_traced(
                request, subject, text, malformed, reply, header_len, payload,
            );
        }
        // Subject mappings: one branch when the account has none. A mapped
        // publish goes on as if published on the destination (permissions
        // included, as nats-server checks them after mapping).
        if !malformed
            && let Some(mappings) = &self.account.mappings
            && let Some(to) = mappings.map(text)
        {
            return self.publish_mapped(to.as_bytes(), reply, header_len, payload, None);
        }
        self.route(subject, text, malformed, reply, header_len, payload, None)
    }

    /// A publish with `Nats-Trace-Dest`: as nats-server, an unusable
    /// destination leaves it untraced (dropped when trace only), one this
    /// user may not publish to refuses it; otherwise it goes the usual way
    /// with a [`Tracer`] collecting what happens, and the event is sent to
    /// the destination at the end.
    #[allow(clippy::too_many_arguments)]
    fn publish_traced(
        &mut self,
        request: trace::Request,
        subject: &[u8],
        text: &str,
        malformed: bool,
        reply: Option<&[u8]>,
        header_len: Option<usize>,
        payload: &[u8],
    ) -> Result<(), CloseReason> {
        let (dest, only, headers) = match request {
            trace::Request::Untraced { only: true, .. } => return Ok(()),
            trace::Request::Untraced {
                only: false,
                disable,
            } => {
                let payload = match header_len {
                    Some(h) if disable => {
                        let mut p = trace::set_header(&payload[..h], trace::DEST, trace::DISABLED);
                        let hl = p.len();
                        p.extend_from_slice(&payload[h..]);
                        return self.publish_untraced(
                            subject,
                            text,
                            malformed,
                            reply,
                            Some(hl),
                            &p,
                        );
                    }
                    _ => payload,
                };
                return self.publish_untraced(subject, text, malformed, reply, header_len, payload);
            }
            trace::Request::Trace {
                dest,
                only,
                headers,
            } => (dest, only, headers),
        };
        if self.rules.is_some() && !self.may_publish(dest.as_bytes(), &dest) {
            self.err(&format!("Permissions Violation for Publish to \"{dest}\""));
            return Ok(());
        }
        let tracer = Tracer::new(
            dest,
            only,
            headers,
            trace::Publisher {
                cid: self.client.id,
                name: self.client.name_text(),
                account: &self.account.name,
                subject: text,
                size: payload.len(),
            },
        );
        let result = if !malformed
            && let Some(mappings) = &self.account.mappings
            && let Some(to) = mappings.map(text)
        {
            tracer.mapped(&to);
            self.publish_mapped(to.as_bytes(), reply, header_len, payload, Some(&tracer))
        } else {
            self.route(
                subject,
                text,
                malformed,
                reply,
                header_len,
                payload,
                Some(&tracer),
            )
        };
        self.send_trace(tracer);
        result
    }

    /// A publish whose trace header cannot be acted on: delivered as if it
    /// had none.
    fn publish_untraced(
        &mut self,
        subject: &[u8],
        text: &str,
        malformed: bool,
        reply: Option<&[u8]>,
        header_len: Option<usize>,
        payload: &[u8],
    ) -> Result<(), CloseReason> {
        if !malformed
            && let Some(mappings) = &self.account.mappings
            && let Some(to) = mappings.map(text)
        {
            return self.publish_mapped(to.as_bytes(), reply, header_len, payload, None);
        }
        self.route(subject, text, malformed, reply, header_len, payload, None)
    }

    /// An `HPUB` over `max_payload` (`buf` starts with its control line,
    /// then whatever of its headers was read): when those headers ask for
    /// a trace, the event with the ingress error nats-server records, sent
    /// before the connection is closed.
    fn trace_oversized(&mut self, buf: &[u8]) {
        let Some(nl) = memchr::memchr(b'\n', buf) else {
            return;
        };
        let line = &buf[..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let fields: Vec<&[u8]> = line
            .split(|b| *b == b' ' || *b == b'\t')
            .filter(|t| !t.is_empty())
            .collect();
        if !(fields.len() == 4 || fields.len() == 5) || !fields[0].eq_ignore_ascii_case(b"HPUB") {
            return;
        }
        let number = |b: &[u8]| std::str::from_utf8(b).ok()?.parse::<u64>().ok();
        let (Some(h), Some(total), Ok(subject)) = (
            number(fields[fields.len() - 2]),
            number(fields[fields.len() - 1]),
            std::str::from_utf8(fields[1]),
        ) else {
            return;
        };
        let rest = &buf[nl + 1..];
        let hdr = &rest[..rest.len().min(usize::try_from(h).unwrap_or(usize::MAX))];
        let Some(trace::Request::Trace { dest, headers, .. }) = trace::requested(hdr) else {
            return;
        };
        if self.rules.is_some() && !self.may_publish(dest.as_bytes(), &dest) {
            return;
        }
        let tracer = Tracer::new(
            dest,
            false,
            headers,
            trace::Publisher {
                cid: self.client.id,
                name: self.client.name_text(),
                account: &self.account.name,
                subject,
                size: usize::try_from(total).unwrap_or(usize::MAX),
            },
        );
        tracer.ingress_error("maximum payload exceeded".to_owned());
        self.send_trace(tracer);
    }

    /// Publishes a finished trace event to its destination in this
    /// connection's account (as nats-server's internal messages: no reply,
    /// no headers).
    fn send_trace(&mut self, tracer: Tracer) {
        let dest = tracer.dest.clone();
        let server = crate::system::server_info(&self.shared);
        let body = tracer.finish(&server);
        let msg = Message {
            subject: &dest,
            reply: None,
            header_len: None,
            payload: &body,
            trace: None,
        };
        let matches = self.account.sublist.matches(&dest);
        self.account.fan_out(&matches, &msg, None, &mut self.batch);
        if let Some(js) = &self.account.jetstream {
            js.on_publish(&dest, None, b"", &body);
        }
    }

    /// A publish whose subject a mapping changed to `to`.
    fn publish_mapped(
        &mut self,
        to: &[u8],
        reply: Option<&[u8]>,
        header_len: Option<usize>,
        payload: &[u8],
        trace: Option<&Tracer>,
    ) -> Result<(), CloseReason> {
        // Empty: the weights picked no destination; the message is dropped.
        let text = match std::str::from_utf8(to) {
            Ok(t) if !t.is_empty() => t,
            _ => {
                self.ok();
                return Ok(());
            }
        };
        let malformed = subject::has_empty_token(text);
        self.route(to, text, malformed, reply, header_len, payload, trace)
    }

    /// A publish on `subject` (`text`: the same, as text) past its form
    /// checks and mappings: permissions, fan-out, JetStream.
    #[allow(clippy::too_many_arguments)]
    fn route(
        &mut self,
        subject: &[u8],
        text: &str,
        malformed: bool,
        reply: Option<&[u8]>,
        header_len: Option<usize>,
        payload: &[u8],
        trace: Option<&Tracer>,
    ) -> Result<(), CloseReason> {
        if self.rules.is_some() && !self.may_publish(subject, text) {
            // Dropped; the connection stays open (nats-server).
            let error = format!("Permissions Violation for Publish to \"{text}\"");
            self.err(&error);
            if let Some(t) = trace {
                t.ingress_error(error);
            }
            return Ok(());
        }
        if malformed {
            self.ok();
            return Ok(());
        }
        // Per-connection counters only (no shared cache line on the hot
        // path); /varz adds them up.
        self.client.in_msgs.fetch_add(1, Ordering::Relaxed);
        self.client
            .in_bytes
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        // nats-server acknowledges a verbose PUB before delivering it.
        self.ok();
        let matches = self.matches(subject, text);
        let msg = Message {
            subject: text,
            reply,
            header_len,
            payload,
            trace,
        };
        let skip = (!self.echo).then_some(self.client.id);
        let mut delivered = self.account.fan_out(&matches, &msg, skip, &mut self.batch);
        if let Some(js) = &self.account.jetstream {
            let (hdr, data) = match header_len {
                Some(h) if h <= payload.len() => (&payload[..h], &payload[h..]),
                _ => (&b""[..], payload),
            };
            let reply_text = reply.and_then(|r| std::str::from_utf8(r).ok());
            // JetStream's replies go out through the router, which wakes
            // writers itself.
            let taken = match trace {
                None => js.on_publish(text, reply_text, hdr, data),
                Some(t) => {
                    let (taken, report) = js.on_publish_traced(text, reply_text, hdr, data, t.only);
                    if let Some(report) = report {
                        t.jetstream(report);
                    }
                    taken
                }
            };
            if taken {
                delivered += 1;
            }
        } else if trace.is_some_and(|t| t.only) {
            // Trace only: nothing else acts on it.
        } else if self.account.jetstream_refused
            && let Some(api) = text.strip_prefix("$JS.API.")
        {
            // nats-server's `$JS.API.>` responder takes every request here,
            // answering the APIs it knows.
            delivered += 1;
            if let Some(reply) = reply.and_then(|r| std::str::from_utf8(r).ok())
                && let Some(answer) = crate::jetstream::api::not_enabled_for_account(api)
            {
                let answer = Message {
                    subject: reply,
                    reply: None,
                    header_len: None,
                    payload: answer.as_bytes(),
                    trace: None,
                };
                self.account.deliver_subject(&answer, &mut self.batch);
            }
        }
        if self.system
            && !trace.is_some_and(|t| t.only)
            && let Some(req) = text.strip_prefix("$SYS.REQ.")
            && let Some(answer) = crate::system::answer(
                &self.shared,
                req,
                payload.get(header_len.unwrap_or(0)..).unwrap_or_default(),
            )
        {
            delivered += 1;
            if let Some(reply) = reply.and_then(|r| std::str::from_utf8(r).ok()) {
                let answer = Message {
                    subject: reply,
                    reply: None,
                    header_len: None,
                    payload: &answer,
                    trace: None,
                };
                self.account.deliver_subject(&answer, &mut self.batch);
            }
        }
        if delivered == 0
            && self.no_responders
            && let Some(reply) = reply
        {
            self.no_responders_status(subject, reply);
        }
        Ok(())
    }

    /// The publish permission check, cached per subject; a subject the
    /// lists refuse may still be a reply this user may answer.
    fn may_publish(&mut self, subject: &[u8], text: &str) -> bool {
        let Some(rules) = &self.rules else {
            return true;
        };
        if !rules.restricts_publish() {
            return true;
        }
        let allowed = match self.pub_cache.get(subject) {
            Some(allowed) => *allowed,
            None => {
                let allowed = rules.may_publish(text);
                if self.pub_cache.len() >= PERM_CACHE_MAX {
                    self.pub_cache.clear();
                }
                self.pub_cache.insert(detached(subject), allowed);
                allowed
            }
        };
        allowed || rules.may_respond(subject)
    }

    /// Tells the publisher no one is listening: an HMSG with status 503 on the
    /// reply subject, to this connection's subscriptions matching it.
    fn no_responders_status(&mut self, subject: &[u8], reply: &[u8]) {
        let Ok(text) = std::str::from_utf8(reply) else {
            return;
        };
        if !subject::valid_literal(text) {
            return;
        }
        let matches = self.matches(reply, text);
        let mut status = Vec::with_capacity(48 + subject.len());
        status.extend_from_slice(b"NATS/1.0 503\r\nNats-Subject: ");
        status.extend_from_slice(subject);
        status.extend_from_slice(b"\r\n\r\n");
        for sub in matches.plain.iter().chain(matches.groups.iter().flatten()) {
            if sub.client.id == self.client.id {
                let outcome =
                    sub.client
                        .deliver(reply, &sub.sid, None, Some(status.len()), &status);
                self.batch.note(&sub.client, outcome);
                break;
            }
        }
    }

    fn cleanup(&mut self) {
        for (_, sub) in self.subs.drain() {
            self.account.sublist.remove(&sub);
        }
    }
}

/// Runs one connection to its end.
pub(crate) async fn serve(shared: Arc<ServerState>, client: Arc<Client>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let nonce = shared
        .config
        .auth
        .as_ref()
        .is_some_and(crate::config::Auth::needs_nonce)
        .then(crate::auth::new_nonce);
    let (Some(acceptor), Some(tls_config)) = (shared.tls.clone(), shared.config.tls.as_ref())
    else {
        // Plain TCP: owned halves, no lock between reader and writer. A
        // duplicate of the socket lets a thread outside the runtime write
        // to it while the writer is idle (`Client::write_through`).
        if let Ok(fd) = std::os::fd::AsFd::as_fd(&stream).try_clone_to_owned() {
            client.set_direct(std::net::TcpStream::from(fd));
        }
        let (reader, writer_half) = stream.into_split();
        let info = shared.info_with_nonce(client.id, client.addr, nonce.as_deref());
        return run(shared, client, reader, writer_half, nonce, Some(info)).await;
    };
    let info = shared.info_with_nonce(client.id, client.addr, nonce.as_deref());
    let upgraded = tls::handshake(
        stream,
        &acceptor,
        tls_config,
        &info,
        shared.shutdown.subscribe(),
        (client.addr, client.id, shared.config.debug),
    )
    .await;
    match upgraded {
        Some(tls::Upgraded { stream, info_sent }) => {
            let (reader, writer_half) = tokio::io::split(stream);
            // INFO inside TLS when the handshake came first.
            let info = (!info_sent)
                .then(|| shared.info_with_nonce(client.id, client.addr, nonce.as_deref()));
            run(shared, client, reader, writer_half, nonce, info).await;
        }
        None => {
            client.mark_closing(CloseReason::TlsHandshakeFailure);
            client.close_outbound();
            shared.remove_client(client.id);
        }
    }
}

/// Runs one connection (plain, TLS or WebSocket: any byte stream) to its
/// end, first sending `info` (`None` when the TLS upgrade already sent INFO
/// in plain text).
pub(crate) async fn run<R, W>(
    shared: Arc<ServerState>,
    client: Arc<Client>,
    reader: R,
    writer_half: W,
    nonce: Option<String>,
    info: Option<Vec<u8>>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    run_via(
        Listener::Nats,
        shared,
        client,
        reader,
        writer_half,
        nonce,
        info,
    )
    .await;
}

/// [`run`] for a connection that came through `via` (whose own
/// authentication, if any, judges its CONNECT).
pub(crate) async fn run_via<R, W>(
    via: Listener,
    shared: Arc<ServerState>,
    client: Arc<Client>,
    mut reader: R,
    writer_half: W,
    nonce: Option<String>,
    info: Option<Vec<u8>>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let cfg = shared.config.clone();
    let writer_task = tokio::spawn(outbound::writer(
        Arc::clone(&client),
        writer_half,
        cfg.write_deadline,
    ));
    if let Some(info) = info {
        client.send(&info);
    }
    let mut session = Session {
        shared: Arc::clone(&shared),
        client: Arc::clone(&client),
        account: Arc::clone(&shared.global),
        parser: Parser::new(cfg.max_control_line, cfg.max_payload),
        subs: FxHashMap::default(),
        cache: FxHashMap::default(),
        verbose: false,
        pedantic: false,
        no_responders: false,
        echo: true,
        pings_out: 0,
        batch: Batch::default(),
        connected: false,
        nonce,
        rules: None,
        pub_cache: FxHashMap::default(),
        trace: cfg.trace,
        max_subs: cfg.max_subs,
        subs_forbidden: false,
        system: false,
        close_at: None,
        via,
    };
    // (With TLS, logged before the handshake.)
    if cfg.debug && shared.tls.is_none() {
        tracing::debug!(
            "{} - cid:{} - Client connection created",
            client.addr,
            client.id
        );
    }
    let mut buf = BytesMut::with_capacity(READ_CAPACITY);
    let mut shutdown = shared.shutdown.subscribe();
    // Like nats-server: a first PING soon after connect (it measures the
    // round trip), then one per ping_interval unless the client was active.
    let ping_interval = via.ping_interval(&shared).unwrap_or(cfg.ping_interval);
    let first_ping = ping_interval.min(FIRST_PING);
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + first_ping, ping_interval);
    let mut rtt_measured = false;
    let mut last_in = tokio::time::Instant::now();
    let auth_deadline =
        tokio::time::Instant::now() + via.auth_timeout(&shared).unwrap_or(cfg.auth_timeout);
    let auth_required = cfg.auth.is_some() || via.own_auth(&shared).is_some();
    let reason = 'conn: loop {
        fit_read_buffer(&mut buf);
        tokio::select! {
            read = reader.read_buf(&mut buf) => {
                match read {
                    Ok(0) | Err(_) => break CloseReason::ClientClosed,
                    Ok(_) => last_in = tokio::time::Instant::now(),
                }
                loop {
                    match session.parser.parse_in_place(&mut buf) {
                        Ok(Some(parsed)) => {
                            let handled = match parsed {
                                Parsed::Pub(at) if !session.trace => {
                                    let handled = session.handle_pub_at(&buf, at);
                                    bytes::Buf::advance(&mut buf, at.len);
                                    handled
                                }
                                Parsed::Pub(at) => session.handle(at.take(&mut buf)),
                                Parsed::Op(ClientOp::Connect(json)) if session.slow_auth() => {
                                    session.connect_off_workers(json).await
                                }
                                Parsed::Op(op) => session.handle(op),
                            };
                            if let Err(reason) = handled {
                                break 'conn reason;
                            }
                        }
                        Ok(None) => {
                            session.batch.wake();
                            session.batch.stall().await;
                            break;
                        }
                        Err(e) => {
                            if e == crate::parser::ProtoError::MaxPayload && session.connected {
                                // nats-server still sends the trace event
                                // (ingress error) of an oversized HPUB.
                                session.trace_oversized(&buf);
                                session.batch.wake();
                            }
                            if let Some(text) = e.err_text() {
                                session.err(text);
                            }
                            break 'conn CloseReason::ProtocolError;
                        }
                    }
                }
            }
            _ = ping.tick() => {
                if !session.connected || (rtt_measured && last_in.elapsed() < ping_interval) {
                    continue;
                }
                if session.pings_out >= cfg.ping_max {
                    session.err("Stale Connection");
                    break CloseReason::StaleConnection;
                }
                rtt_measured = true;
                session.pings_out += 1;
                client.send(b"PING\r\n");
            }
            _ = client.closing.notified() => {
                break client.close_reason().unwrap_or(CloseReason::ProtocolError);
            }
            _ = shutdown.changed() => break CloseReason::ServerShutdown,
            _ = tokio::time::sleep_until(auth_deadline), if auth_required && !session.connected => {
                session.err("Authentication Timeout");
                break CloseReason::AuthenticationTimeout;
            }
            _ = tokio::time::sleep_until(session.close_at.map_or(auth_deadline, |c| c.0)), if session.close_at.is_some() => {
                let (_, text, reason) = session.close_at.take().unwrap_or((auth_deadline, None, CloseReason::ProtocolError));
                if let Some(text) = text {
                    session.err(text);
                }
                break reason;
            }
        }
    };
    // Deliveries made before the connection ended still go out.
    session.batch.wake();
    if cfg.debug {
        tracing::debug!(
            "{} - cid:{} - Client connection closed: {reason:?}",
            client.addr,
            client.id
        );
    }
    if reason == CloseReason::SlowConsumer {
        shared.stats.slow_consumers.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(cid = client.id, "slow consumer detected; connection closed");
    }
    client.mark_closing(reason);
    session.cleanup();
    client.close_outbound();
    let _ = writer_task.await;
    shared.remove_client(client.id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_buffer_grown_for_a_large_message_shrinks_once_parsed() {
        let mut buf = BytesMut::with_capacity(2 << 20);
        fit_read_buffer(&mut buf);
        assert_eq!(buf.capacity(), READ_CAPACITY);
        // Not while it holds a partial message.
        let mut partial = BytesMut::with_capacity(2 << 20);
        partial.extend_from_slice(b"PUB a 1000000\r\n");
        fit_read_buffer(&mut partial);
        assert!(partial.capacity() >= 2 << 20);
        assert_eq!(&partial[..], b"PUB a 1000000\r\n");
    }

    #[test]
    fn a_cache_key_does_not_point_into_the_read_buffer_of_its_publish() {
        let read = Bytes::from(vec![b'x'; 1 << 20]);
        let subject = read.slice(100..120);
        let key = detached(&subject);
        assert_eq!(key, subject);
        let start = read.as_ptr() as usize;
        assert!(!(start..start + read.len()).contains(&(key.as_ptr() as usize)));
    }

    #[test]
    fn a_full_read_buffer_gets_room_for_the_next_read() {
        let mut buf = BytesMut::with_capacity(READ_CAPACITY);
        buf.extend_from_slice(&[b'x'; READ_CAPACITY - 10]);
        fit_read_buffer(&mut buf);
        assert!(buf.capacity() - buf.len() >= READ_MIN_SPARE);
        assert_eq!(buf.len(), READ_CAPACITY - 10);
    }

    #[test]
    fn connect_secrets_are_redacted_and_nothing_else_changes() {
        let r = |s: &str| redact_connect(s.as_bytes());
        assert_eq!(
            r(r#"{"user": "a", "pass": "p", "echo": true}"#),
            r#"{"user": "a", "pass": "[REDACTED]", "echo": true}"#
        );
        assert_eq!(
            r(r#"{"auth_token":"t","sig":"s","nkey":"U1","jwt":"j","name":"pass"}"#),
            r#"{"auth_token":"[REDACTED]","sig":"[REDACTED]","nkey":"[REDACTED]","jwt":"[REDACTED]","name":"pass"}"#
        );
        assert_eq!(
            r(r#"{"pass":"a\"b\\","user":"u"}"#),
            r#"{"pass":"[REDACTED]","user":"u"}"#
        );
        assert_eq!(r(r#"{"verbose":false}"#), r#"{"verbose":false}"#);
        // Malformed input never panics and never shows a secret's start.
        for bad in [
            r#"{"pass":"unterminated"#,
            r#"{"pass""#,
            "\"",
            "",
            r#"{"pass":5}"#,
        ] {
            let out = r(bad);
            assert!(!out.contains("unterminated"), "{out}");
        }
    }
}
