//! One client connection: its outbound buffer (shared with every publisher
//! that delivers to it), its read loop (parse, dispatch), and its writer.
//!
//! Delivery never waits on a socket: a publisher appends `MSG`/`HMSG` bytes to
//! the subscriber's buffer under a short lock and wakes its writer only when
//! the buffer goes from empty to non-empty; the writer sends everything
//! accumulated in one write. A buffer over `max_pending`, or a write that
//! misses `write_deadline`, closes that connection as a slow consumer and no
//! other.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use rustc_hash::FxHashMap;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::parser::{ClientOp, Parser};
use crate::server::Shared;
use crate::subject;
use crate::sublist::{Matches, Subscriber, Subscription};

/// A subscription of a client.
pub type Sub = Subscription<Client>;

/// Outcome of appending a message to a connection's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivered {
    /// Queued; `wake` when the buffer was empty (the writer must be woken).
    Ok {
        /// The writer needs a wake-up.
        wake: bool,
    },
    /// Queued, but the connection has more than half its max_pending
    /// waiting: the producer should stall briefly.
    Stall {
        /// The writer needs a wake-up.
        wake: bool,
    },
    /// Not queued: the connection is closed (or was just closed as a slow consumer).
    Dropped,
}

/// Why a connection was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed it.
    ClientClosed,
    /// Protocol error.
    ProtocolError,
    /// Outbound buffer over max_pending or write deadline missed.
    SlowConsumer,
    /// No PONG to our PINGs.
    StaleConnection,
    /// Server shutting down.
    ServerShutdown,
    /// Bad or missing credentials.
    AuthorizationViolation,
    /// No CONNECT within the auth timeout.
    AuthenticationTimeout,
    /// A write failed.
    WriteError,
    /// The TLS handshake failed or timed out.
    TlsHandshakeFailure,
}

struct Outbound {
    buf: BytesMut,
    closed: bool,
}

/// The part of a connection other tasks see.
pub struct Client {
    pub(crate) id: u64,
    out: Mutex<Outbound>,
    wake: Notify,
    /// Signalled by the writer after each write (fast-producer stalls wait on it).
    drained: Notify,
    /// Set when the connection must end (slow consumer, fatal error).
    pub(crate) closing: Notify,
    close_reason: Mutex<Option<CloseReason>>,
    echo: AtomicBool,
    headers: AtomicBool,
    max_pending: usize,
    pub(crate) in_msgs: AtomicU64,
    pub(crate) in_bytes: AtomicU64,
    pub(crate) out_msgs: AtomicU64,
    pub(crate) out_bytes: AtomicU64,
    pub(crate) name: Mutex<String>,
    pub(crate) lang: Mutex<String>,
    pub(crate) version: Mutex<String>,
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) started: std::time::SystemTime,
    pub(crate) subs: AtomicU64,
    /// The connection's permissions, once CONNECT authenticated a user that
    /// has some: deliveries consult them (reply tracking for
    /// allow_responses, deny filter for wildcard subscriptions).
    pub(crate) rules: std::sync::OnceLock<Arc<crate::auth::Rules>>,
    /// The connection's account, once CONNECT put it in one other than `$G`.
    pub(crate) account: std::sync::OnceLock<Arc<str>>,
}

impl Subscriber for Client {
    fn id(&self) -> u64 {
        self.id
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Client {
    pub(crate) fn new(id: u64, max_pending: usize, addr: std::net::SocketAddr) -> Self {
        Client {
            id,
            out: Mutex::new(Outbound {
                buf: BytesMut::with_capacity(8192),
                closed: false,
            }),
            wake: Notify::new(),
            drained: Notify::new(),
            closing: Notify::new(),
            close_reason: Mutex::new(None),
            echo: AtomicBool::new(true),
            headers: AtomicBool::new(false),
            max_pending,
            in_msgs: AtomicU64::new(0),
            in_bytes: AtomicU64::new(0),
            out_msgs: AtomicU64::new(0),
            out_bytes: AtomicU64::new(0),
            name: Mutex::new(String::new()),
            lang: Mutex::new(String::new()),
            version: Mutex::new(String::new()),
            addr,
            started: std::time::SystemTime::now(),
            subs: AtomicU64::new(0),
            rules: std::sync::OnceLock::new(),
            account: std::sync::OnceLock::new(),
        }
    }

    /// Wakes the writer (after deliveries made outside a read loop).
    pub(crate) fn wake_writer(&self) {
        self.wake.notify_one();
    }

    /// Pending outbound bytes.
    pub(crate) fn pending(&self) -> usize {
        lock(&self.out).buf.len()
    }

    pub(crate) fn name_text(&self) -> String {
        lock(&self.name).clone()
    }

    pub(crate) fn lang_text(&self) -> String {
        lock(&self.lang).clone()
    }

    /// The connection's account name (`$G` unless CONNECT chose another).
    pub(crate) fn account_name(&self) -> &str {
        self.account
            .get()
            .map_or(crate::config::GLOBAL_ACCOUNT, |a| a.as_ref())
    }

    pub(crate) fn version_text(&self) -> String {
        lock(&self.version).clone()
    }

    /// Appends raw protocol bytes (INFO, PONG, +OK, -ERR...).
    pub(crate) fn send(&self, bytes: &[u8]) {
        let mut out = lock(&self.out);
        if out.closed {
            return;
        }
        let was_empty = out.buf.is_empty();
        out.buf.extend_from_slice(bytes);
        drop(out);
        if was_empty {
            self.wake.notify_one();
        }
    }

    /// Appends a message for `sid`.
    pub(crate) fn deliver(
        &self,
        subject: &[u8],
        sid: &[u8],
        reply: Option<&[u8]>,
        header_len: Option<usize>,
        payload: &[u8],
    ) -> Delivered {
        // A client that did not negotiate headers gets the body only.
        let (header_len, payload) = match header_len {
            Some(h) if !self.headers.load(Ordering::Relaxed) => {
                (None, &payload[h.min(payload.len())..])
            }
            other => (other, payload),
        };
        if let Some(rules) = self.rules.get() {
            if rules.withholds(subject) {
                return Delivered::Dropped;
            }
            if let (Some(responses), Some(reply)) = (&rules.responses, reply) {
                responses.track(reply);
            }
        }
        let mut out = lock(&self.out);
        if out.closed {
            return Delivered::Dropped;
        }
        let was_empty = out.buf.is_empty();
        let buf = &mut out.buf;
        buf.reserve(subject.len() + sid.len() + reply.map_or(0, <[u8]>::len) + payload.len() + 48);
        let mut num = itoa::Buffer::new();
        buf.put_slice(if header_len.is_some() {
            b"HMSG "
        } else {
            b"MSG "
        });
        buf.put_slice(subject);
        buf.put_u8(b' ');
        buf.put_slice(sid);
        buf.put_u8(b' ');
        if let Some(r) = reply {
            buf.put_slice(r);
            buf.put_u8(b' ');
        }
        if let Some(h) = header_len {
            buf.put_slice(num.format(h).as_bytes());
            buf.put_u8(b' ');
        }
        buf.put_slice(num.format(payload.len()).as_bytes());
        buf.put_slice(b"\r\n");
        buf.put_slice(payload);
        buf.put_slice(b"\r\n");
        let pending = buf.len();
        if pending > self.max_pending {
            out.closed = true;
            drop(out);
            self.mark_closing(CloseReason::SlowConsumer);
            return Delivered::Dropped;
        }
        drop(out);
        self.out_msgs.fetch_add(1, Ordering::Relaxed);
        self.out_bytes
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        // The caller wakes the writer once per read batch (see
        // `Session::flush`), so a burst goes out in few writes.
        if pending > self.max_pending / 2 {
            Delivered::Stall { wake: was_empty }
        } else {
            Delivered::Ok { wake: was_empty }
        }
    }

    /// Waits (at most `limit`) until this client's pending output is back
    /// under half of max_pending: how a fast producer is slowed down for a
    /// consumer that is keeping up, just more slowly.
    async fn wait_drained(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, async {
            loop {
                let drained = self.drained.notified();
                tokio::pin!(drained);
                drained.as_mut().enable();
                {
                    let out = lock(&self.out);
                    if out.closed || out.buf.len() <= self.max_pending / 2 {
                        return;
                    }
                }
                drained.await;
            }
        })
        .await;
    }

    /// Ends the connection for `reason` (first reason wins).
    pub(crate) fn mark_closing(&self, reason: CloseReason) {
        {
            let mut r = lock(&self.close_reason);
            if r.is_none() {
                *r = Some(reason);
            }
        }
        self.closing.notify_one();
        self.wake.notify_one();
    }

    pub(crate) fn close_reason(&self) -> Option<CloseReason> {
        *lock(&self.close_reason)
    }

    /// Stops accepting output; the writer flushes what is there and exits.
    fn close_outbound(&self) {
        lock(&self.out).closed = true;
        self.wake.notify_one();
    }
}

/// Writes the client's outbound bytes until it is closed and drained.
/// `socket` is a TCP write half or one of a TLS stream (which must be
/// flushed for its records to leave; a no-op on TCP).
async fn writer<W: AsyncWrite + Unpin>(client: Arc<Client>, mut socket: W, deadline: Duration) {
    loop {
        let chunk = {
            let mut out = lock(&client.out);
            if out.buf.is_empty() {
                if out.closed {
                    break;
                }
                None
            } else {
                Some(out.buf.split().freeze())
            }
        };
        let Some(chunk) = chunk else {
            client.wake.notified().await;
            continue;
        };
        let write = async {
            socket.write_all(&chunk).await?;
            socket.flush().await
        };
        match tokio::time::timeout(deadline, write).await {
            Ok(Ok(())) => client.drained.notify_waiters(),
            Ok(Err(_)) => {
                client.mark_closing(CloseReason::WriteError);
                lock(&client.out).closed = true;
                return;
            }
            Err(_) => {
                client.mark_closing(CloseReason::SlowConsumer);
                lock(&client.out).closed = true;
                return;
            }
        }
    }
    let _ = socket.shutdown().await;
}

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
        }
    }
}

/// Per-connection state owned by the read loop.
struct Session {
    shared: Arc<Shared>,
    client: Arc<Client>,
    /// The connection's account: its subscriptions and publishes live there
    /// (`$G` until CONNECT authenticates a user of another).
    account: Arc<crate::account::Account>,
    parser: Parser,
    subs: FxHashMap<Bytes, Arc<Sub>>,
    cache: FxHashMap<Bytes, (u64, Arc<Matches<Client>>)>,
    verbose: bool,
    pedantic: bool,
    no_responders: bool,
    echo: bool,
    pings_out: u32,
    /// Connections that asked this producer to slow down in the current read.
    stalls: Vec<Arc<Client>>,
    /// Connections whose writers must be woken at the end of this read.
    wakes: Vec<Arc<Client>>,
    /// CONNECT received (nats-server sends no PING before it).
    connected: bool,
    /// The nonce sent in INFO (nkey users sign it).
    nonce: Option<String>,
    /// The user's permissions; `None` = unrestricted (the fast path).
    rules: Option<Arc<crate::auth::Rules>>,
    /// Publish decisions by subject (allow/deny lists only; responses are
    /// never cached).
    pub_cache: FxHashMap<Bytes, bool>,
    /// `-V`: log each op.
    trace: bool,
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
        ClientOp::Connect(json) => format!("CONNECT {}", text(json)),
        ClientOp::Ping => "PING".to_owned(),
        ClientOp::Pong => "PONG".to_owned(),
        ClientOp::Info => "INFO".to_owned(),
    };
    tracing::trace!("{addr} - cid:{cid} - <<- [{line}]");
}

const CACHE_MAX: usize = 4096;
/// Most publish permission decisions remembered per connection.
const PERM_CACHE_MAX: usize = 1024;
/// Longest a producer is held back per read for slower consumers.
const STALL_BUDGET: Duration = Duration::from_millis(10);
/// When the first server PING goes out (nats-server: 2 s).
const FIRST_PING: Duration = Duration::from_secs(2);

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

    fn matches(&mut self, subject: &Bytes, text: &str) -> Arc<Matches<Client>> {
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
            .insert(subject.clone(), (generation, Arc::clone(&m)));
        m
    }

    /// Handles one op; `Err` ends the connection.
    fn handle(&mut self, op: ClientOp) -> Result<(), CloseReason> {
        if self.trace {
            trace_op(self.client.id, self.client.addr, &op);
        }
        if self.shared.config.auth.is_some()
            && !self.connected
            && !matches!(op, ClientOp::Connect(_))
        {
            // With auth, the first op must be CONNECT (nats-server).
            self.err("Authorization Violation");
            return Err(CloseReason::AuthorizationViolation);
        }
        match op {
            ClientOp::Pub {
                subject,
                reply,
                header_len,
                payload,
            } => {
                if header_len.is_some() && !self.client.headers.load(Ordering::Relaxed) {
                    // HPUB without headers negotiated: nats-server closes.
                    return Err(CloseReason::ProtocolError);
                }
                self.publish(subject, reply, header_len, payload)
            }
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
        let c: Connect = match serde_json::from_slice(json) {
            Ok(c) => c,
            // nats-server closes without an -ERR.
            Err(_) => return Err(CloseReason::ProtocolError),
        };
        if let Some(auth) = &self.shared.config.auth {
            let creds = crate::auth::Credentials {
                user: c.user.as_deref(),
                pass: c.pass.as_deref(),
                token: c.auth_token.as_deref(),
                nkey: c.nkey.as_deref(),
                sig: c.sig.as_deref(),
            };
            match auth.authenticate_account(&creds, self.nonce.as_deref()) {
                Some((perms, account)) if !self.connected => {
                    if let Some(perms) = perms {
                        let rules = Arc::new(crate::auth::Rules::new(perms));
                        let _ = self.client.rules.set(Arc::clone(&rules));
                        self.rules = Some(rules);
                    }
                    if let Some(account) = account.and_then(|a| self.shared.accounts.get(a)) {
                        let _ = self.client.account.set(Arc::clone(&account.name));
                        self.account = Arc::clone(account);
                    }
                }
                Some(_) => {}
                None => {
                    self.err("Authorization Violation");
                    return Err(CloseReason::AuthorizationViolation);
                }
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
        *lock(&self.client.name) = c.name.unwrap_or_default();
        *lock(&self.client.lang) = c.lang.unwrap_or_default();
        *lock(&self.client.version) = c.version.unwrap_or_default();
        self.ok();
        Ok(())
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
        if !subject::valid_filter(text) {
            self.err("Invalid Subject");
            return;
        }
        let queue = match &queue {
            Some(q) => match std::str::from_utf8(q) {
                Ok(q) if !q.is_empty() => Some(q.into()),
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
        let sub = Arc::new(Subscription {
            client: Arc::clone(&self.client),
            subject: text.into(),
            queue,
            sid: sid.clone(),
            max: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
        });
        self.account.sublist.insert(Arc::clone(&sub));
        self.client.subs.fetch_add(1, Ordering::Relaxed);
        self.subs.insert(sid, sub);
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
        subject: Bytes,
        reply: Option<Bytes>,
        header_len: Option<usize>,
        payload: Bytes,
    ) -> Result<(), CloseReason> {
        let Ok(text) = std::str::from_utf8(&subject) else {
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
        if self.rules.is_some() && !self.may_publish(&subject, text) {
            // Dropped; the connection stays open (nats-server).
            self.err(&format!("Permissions Violation for Publish to \"{text}\""));
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
        let matches = self.matches(&subject, text);
        let reply_ref = reply.as_deref();
        let mut delivered = 0u64;
        for sub in &matches.plain {
            if !self.echo && sub.client.id == self.client.id {
                continue;
            }
            if !sub.take_delivery() {
                continue;
            }
            if self.note(
                &sub.client,
                sub.client
                    .deliver(&subject, &sub.sid, reply_ref, header_len, &payload),
            ) {
                delivered += 1;
            }
            if sub.exhausted() {
                self.expire(sub);
            }
        }
        for group in &matches.groups {
            let start = self.shared.next_queue_pick(group.len());
            for i in 0..group.len() {
                let sub = &group[(start + i) % group.len()];
                if sub.exhausted() || (!self.echo && sub.client.id == self.client.id) {
                    continue;
                }
                if !sub.take_delivery() {
                    continue;
                }
                let outcome = sub
                    .client
                    .deliver(&subject, &sub.sid, reply_ref, header_len, &payload);
                let ok = self.note(&sub.client, outcome);
                if sub.exhausted() {
                    self.expire(sub);
                }
                if ok {
                    delivered += 1;
                    break;
                }
            }
        }
        if self.account.routes.get().is_some() {
            delivered += self.cross_account(text, &subject, reply.as_ref(), header_len, &payload);
        } else if self.account.exports_services && subject.starts_with(b"_R_.") {
            delivered += self.service_reply(&subject, reply.as_ref(), header_len, &payload);
        }
        if let Some(js) = &self.account.jetstream {
            let (hdr, data) = match header_len {
                Some(h) if h <= payload.len() => (&payload[..h], &payload[h..]),
                _ => (&b""[..], &payload[..]),
            };
            let reply_text = reply.as_deref().and_then(|r| std::str::from_utf8(r).ok());
            // JetStream's replies go out through the router, which wakes
            // writers itself.
            if js.on_publish(text, reply_text, hdr, data) {
                delivered += 1;
            }
        } else if self.account.jetstream_refused
            && let Some(api) = text.strip_prefix("$JS.API.")
        {
            // nats-server's `$JS.API.>` responder takes every request here,
            // answering the APIs it knows.
            delivered += 1;
            if let Some(reply) = &reply
                && let Some(answer) = crate::jetstream::api::not_enabled_for_account(api)
            {
                let reply = Bytes::clone(reply);
                let account = Arc::clone(&self.account);
                self.deliver_in(&account, &reply, None, None, answer.as_bytes());
            }
        }
        if delivered == 0
            && self.no_responders
            && let Some(reply) = &reply
        {
            self.no_responders_status(&subject, reply);
        }
        Ok(())
    }

    /// Imports and exports of this account for one publish: stream exports
    /// to importing accounts, service imports to exporting ones, and
    /// replies of this account's services to their requesters.
    fn cross_account(
        &mut self,
        text: &str,
        subject: &Bytes,
        reply: Option<&Bytes>,
        header_len: Option<usize>,
        payload: &Bytes,
    ) -> u64 {
        let account = Arc::clone(&self.account);
        let Some(routes) = account.routes.get() else {
            return 0;
        };
        let mut delivered = 0;
        for route in &routes.streams_out {
            if let (Some(mapped), Some(target)) = (route.map(text), route.target.upgrade()) {
                delivered += self.deliver_in(
                    &target,
                    mapped.as_bytes(),
                    reply.map(|r| &r[..]),
                    header_len,
                    payload,
                );
            }
        }
        for route in &routes.services_in {
            let (Some(mapped), Some(exporter)) = (route.map(text), route.target.upgrade()) else {
                continue;
            };
            let reply = reply.map(|r| exporter.reply_for(&self.account, r, route));
            let info = format!(
                "Nats-Request-Info: {{\"acc\":\"{}\",\"rtt\":0}}",
                self.account.name
            );
            let (hl, body) = crate::account::with_header(header_len, payload, &info);
            delivered += self.deliver_in(
                &exporter,
                mapped.as_bytes(),
                reply.as_deref(),
                Some(hl),
                &body,
            );
            // The first matching import takes the request.
            break;
        }
        if self.account.exports_services && subject.starts_with(b"_R_.") {
            delivered += self.service_reply(subject, reply, header_len, payload);
        }
        delivered
    }

    /// A reply published by this account's service on a generated `_R_.`
    /// subject: delivered to the requester's reply subject in its account.
    fn service_reply(
        &mut self,
        subject: &Bytes,
        reply: Option<&Bytes>,
        header_len: Option<usize>,
        payload: &Bytes,
    ) -> u64 {
        let Some((target, to)) = self.account.take_reply(subject) else {
            return 0;
        };
        self.deliver_in(&target, &to, reply.map(|r| &r[..]), header_len, payload)
    }

    /// Delivers a message to the subscribers of `account` matching `subject`
    /// (one member per queue group); how many got it.
    fn deliver_in(
        &mut self,
        account: &crate::account::Account,
        subject: &[u8],
        reply: Option<&[u8]>,
        header_len: Option<usize>,
        payload: &[u8],
    ) -> u64 {
        let Ok(text) = std::str::from_utf8(subject) else {
            return 0;
        };
        let matches = account.sublist.matches(text);
        let mut delivered = 0;
        for sub in &matches.plain {
            if !sub.take_delivery() {
                continue;
            }
            let outcome = sub
                .client
                .deliver(subject, &sub.sid, reply, header_len, payload);
            if self.note(&sub.client, outcome) {
                delivered += 1;
            }
            if sub.exhausted() && account.sublist.remove(sub) {
                sub.client.subs.fetch_sub(1, Ordering::Relaxed);
            }
        }
        for group in &matches.groups {
            let start = account.next_queue_pick(group.len());
            for i in 0..group.len() {
                let sub = &group[(start + i) % group.len()];
                if sub.exhausted() || !sub.take_delivery() {
                    continue;
                }
                let outcome = sub
                    .client
                    .deliver(subject, &sub.sid, reply, header_len, payload);
                let ok = self.note(&sub.client, outcome);
                if sub.exhausted() && account.sublist.remove(sub) {
                    sub.client.subs.fetch_sub(1, Ordering::Relaxed);
                }
                if ok {
                    delivered += 1;
                    break;
                }
            }
        }
        delivered
    }

    /// The publish permission check, cached per subject; a subject the
    /// lists refuse may still be a reply this user may answer.
    fn may_publish(&mut self, subject: &Bytes, text: &str) -> bool {
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
                self.pub_cache.insert(subject.clone(), allowed);
                allowed
            }
        };
        allowed || rules.may_respond(subject)
    }

    /// Tells the publisher no one is listening: an HMSG with status 503 on the
    /// reply subject, to this connection's subscriptions matching it.
    fn no_responders_status(&mut self, subject: &[u8], reply: &Bytes) {
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
                self.note(&Arc::clone(&sub.client), outcome);
                break;
            }
        }
    }

    /// Records a delivery outcome; true when the message was queued.
    fn note(&mut self, client: &Arc<Client>, outcome: Delivered) -> bool {
        match outcome {
            Delivered::Ok { wake } => {
                if wake {
                    self.wakes.push(Arc::clone(client));
                }
                true
            }
            Delivered::Stall { wake } => {
                if wake {
                    self.wakes.push(Arc::clone(client));
                }
                if !self.stalls.iter().any(|c| c.id == client.id) {
                    self.stalls.push(Arc::clone(client));
                }
                true
            }
            Delivered::Dropped => false,
        }
    }

    /// Wakes the writers of every connection this read delivered to.
    fn flush(&mut self) {
        for client in self.wakes.drain(..) {
            client.wake.notify_one();
        }
    }

    /// Slows this producer down for the consumers that asked for it, at most
    /// STALL_BUDGET per read (as nats-server does), so a slower consumer is
    /// not cut off by a burst while a stuck one still reaches max_pending.
    async fn stall(&mut self) {
        if self.stalls.is_empty() {
            return;
        }
        let deadline = tokio::time::Instant::now() + STALL_BUDGET;
        for client in std::mem::take(&mut self.stalls) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            client.wait_drained(left).await;
        }
    }

    fn expire(&self, sub: &Arc<Sub>) {
        if self.account.sublist.remove(sub) {
            sub.client.subs.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn cleanup(&mut self) {
        for (_, sub) in self.subs.drain() {
            self.account.sublist.remove(&sub);
        }
    }
}

/// Runs one connection to its end.
pub(crate) async fn serve(shared: Arc<Shared>, client: Arc<Client>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let nonce = shared
        .config
        .auth
        .as_ref()
        .is_some_and(crate::config::Auth::needs_nonce)
        .then(crate::auth::new_nonce);
    let Some(acceptor) = shared.tls.clone() else {
        // Plain TCP: owned halves, no lock between reader and writer.
        let (reader, writer_half) = stream.into_split();
        return run(shared, client, reader, writer_half, nonce, false).await;
    };
    let handshake_first = shared
        .config
        .tls
        .as_ref()
        .is_some_and(|t| t.handshake_first);
    match tls_handshake(&shared, &client, stream, &acceptor, nonce.as_deref()).await {
        Some(tls) => {
            let (reader, writer_half) = tokio::io::split(tls);
            run(shared, client, reader, writer_half, nonce, !handshake_first).await;
        }
        None => {
            client.mark_closing(CloseReason::TlsHandshakeFailure);
            client.close_outbound();
            shared.remove_client(client.id);
        }
    }
}

/// The content type of a TLS handshake record (a ClientHello starts with it).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The TLS handshake, as nats-server does it: unless `handshake_first`,
/// INFO goes out in plain text first and the client must then start the
/// handshake. A failure or a handshake longer than the TLS timeout closes
/// the connection without a word (nats-server sends nothing either).
async fn tls_handshake(
    shared: &Shared,
    client: &Client,
    mut stream: TcpStream,
    acceptor: &tokio_rustls::TlsAcceptor,
    nonce: Option<&str>,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let (timeout, handshake_first) = shared
        .config
        .tls
        .as_ref()
        .map_or((crate::config::DEFAULT_TLS_TIMEOUT, false), |t| {
            (t.timeout, t.handshake_first)
        });
    let debug = shared.config.debug;
    let (addr, cid) = (client.addr, client.id);
    if debug {
        tracing::debug!("{addr} - cid:{cid} - Client connection created");
    }
    let deadline = tokio::time::Instant::now() + timeout;
    if !handshake_first {
        let info = shared.info_with_nonce(cid, addr, nonce);
        match tokio::time::timeout_at(deadline, stream.write_all(&info)).await {
            Ok(Ok(())) => {}
            _ => return None,
        }
    }
    if debug {
        tracing::debug!("{addr} - cid:{cid} - Starting TLS client connection handshake");
    }
    let mut shutdown = shared.shutdown.subscribe();
    let handshake = async {
        // Like Go's TLS stack, give up without a reply (no TLS alert) when
        // the first record is not a handshake: a plain-text client (its
        // CONNECT) just sees the connection closed, as with nats-server.
        let mut first = [0u8; 1];
        match stream.peek(&mut first).await {
            Ok(1) if first[0] == TLS_HANDSHAKE_RECORD => {}
            Ok(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "tls: first record does not look like a TLS handshake",
                ));
            }
            Err(e) => return Err(e),
        }
        acceptor.accept(stream).await
    };
    let outcome = tokio::select! {
        r = tokio::time::timeout_at(deadline, handshake) => r,
        _ = shutdown.changed() => return None,
    };
    match outcome {
        Ok(Ok(tls)) => {
            if debug {
                let (_, conn) = tls.get_ref();
                tracing::debug!("{addr} - cid:{cid} - TLS handshake complete");
                tracing::debug!(
                    "{addr} - cid:{cid} - TLS version {}, cipher suite {}",
                    conn.protocol_version()
                        .map(|v| format!("{v:?}").replace("TLSv1_", "1."))
                        .unwrap_or_default(),
                    conn.negotiated_cipher_suite()
                        .map(|c| format!("{:?}", c.suite()))
                        .unwrap_or_default()
                );
            }
            Some(tls)
        }
        Ok(Err(e)) => {
            if crate::tls::is_client_cert_error(&e) {
                tracing::error!("{addr} - cid:{cid} - TLS handshake error: {e}");
            } else if debug {
                tracing::debug!("{addr} - cid:{cid} - TLS handshake error: {e}");
            }
            if debug {
                tracing::debug!(
                    "{addr} - cid:{cid} - Client connection closed: TLS Handshake Failure"
                );
            }
            None
        }
        Err(_) => {
            if debug {
                tracing::debug!("{addr} - cid:{cid} - TLS handshake timeout");
                tracing::debug!(
                    "{addr} - cid:{cid} - Client connection closed: TLS Handshake Failure"
                );
            }
            None
        }
    }
}

/// Runs one connection (plain or TLS) to its end; `info_sent` when the TLS
/// upgrade already sent INFO in plain text.
async fn run<R, W>(
    shared: Arc<Shared>,
    client: Arc<Client>,
    mut reader: R,
    writer_half: W,
    nonce: Option<String>,
    info_sent: bool,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let cfg = shared.config.clone();
    let writer_task = tokio::spawn(writer(Arc::clone(&client), writer_half, cfg.write_deadline));
    if !info_sent {
        client.send(&shared.info_with_nonce(client.id, client.addr, nonce.as_deref()));
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
        stalls: Vec::new(),
        wakes: Vec::new(),
        connected: false,
        nonce,
        rules: None,
        pub_cache: FxHashMap::default(),
        trace: cfg.trace,
    };
    // (With TLS, logged before the handshake.)
    if cfg.debug && shared.tls.is_none() {
        tracing::debug!(
            "{} - cid:{} - Client connection created",
            client.addr,
            client.id
        );
    }
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut shutdown = shared.shutdown.subscribe();
    // Like nats-server: a first PING soon after connect (it measures the
    // round trip), then one per ping_interval unless the client was active.
    let first_ping = cfg.ping_interval.min(FIRST_PING);
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + first_ping, cfg.ping_interval);
    let mut rtt_measured = false;
    let mut last_in = tokio::time::Instant::now();
    let auth_deadline = tokio::time::Instant::now() + cfg.auth_timeout;
    let auth_required = cfg.auth.is_some();
    let reason = 'conn: loop {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        tokio::select! {
            read = reader.read_buf(&mut buf) => {
                match read {
                    Ok(0) | Err(_) => break CloseReason::ClientClosed,
                    Ok(_) => last_in = tokio::time::Instant::now(),
                }
                loop {
                    match session.parser.parse(&mut buf) {
                        Ok(Some(op)) => {
                            if let Err(reason) = session.handle(op) {
                                break 'conn reason;
                            }
                        }
                        Ok(None) => {
                            session.flush();
                            session.stall().await;
                            break;
                        }
                        Err(e) => {
                            if let Some(text) = e.err_text() {
                                session.err(text);
                            }
                            break 'conn CloseReason::ProtocolError;
                        }
                    }
                }
            }
            _ = ping.tick() => {
                if !session.connected || (rtt_measured && last_in.elapsed() < cfg.ping_interval) {
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
        }
    };
    // Deliveries made before the connection ended still go out.
    session.flush();
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
