//! One connection's output, which every publisher delivering to it
//! shares: the [`Client`] handle (its outbound buffer, flags and counters),
//! the writer task that owns the socket's write half, the slow-consumer
//! rule, and [`Batch`], which a producer uses to wake writers once per
//! burst and to hold back for consumers that are falling behind.
//!
//! Delivery never waits on a socket: a publisher appends `MSG`/`HMSG` bytes
//! to the subscriber's buffer under a short lock; the writer sends
//! everything accumulated in one write. Unwritten bytes (queued and being
//! written) over `max_pending`, or a write that misses `write_deadline`,
//! close that connection as a slow consumer and no other. A producer
//! delivering to a connection with more than [`STALL_PENDING`] (at most
//! half its `max_pending`) queued behind the current write is asked to
//! stall briefly (at most [`STALL_BUDGET`] per batch), so a
//! slower-but-alive consumer is not cut off by a burst while a stuck one
//! still reaches the limit.
//!
//! Memory: a connection holds what the socket needs, not the largest burst
//! it ever saw. Producers are held back once [`STALL_PENDING`] bytes wait
//! behind the write in progress (not at half of `max_pending`, 32 MiB by
//! default, where a 1:1 load used to keep the buffer), so under load a
//! connection holds about two such buffers: one being written, one being
//! filled. The bytes being written count toward `max_pending` (as in
//! nats-server), so one connection holds at most that in all. A buffer
//! whose allocation grew past [`SHRINK_ABOVE`] is kept while traffic goes
//! on (no allocation per write) and replaced by a small one once the
//! connection had nothing to write for [`SHRINK_IDLE`].
//!
//! This module must not parse client input, look up subscriptions or know
//! about accounts: it formats and queues bytes and applies the connection's
//! permission filter to what it is handed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

use crate::auth::Rules;
use crate::config::GLOBAL_ACCOUNT;
use crate::sublist::{Subscriber, Subscription};

/// A subscription of a client.
pub type Sub = Subscription<Client>;

/// Longest a producer is held back per batch for slower consumers.
pub(crate) const STALL_BUDGET: Duration = Duration::from_millis(10);

/// Bytes queued behind a connection's write in progress over which
/// producers delivering to it are asked to stall (half of `max_pending`
/// when that is smaller). Small
/// enough that a buffer under steady load stays below glibc's mmap
/// threshold (`crate::memory::THRESHOLD`), large enough that a write moves
/// many messages.
pub(crate) const STALL_PENDING: usize = 256 * 1024;

/// A connection's outbound buffer starts with this capacity.
const INITIAL_CAPACITY: usize = 8 * 1024;

/// An outbound buffer whose allocation may have grown past this is
/// replaced by a fresh [`INITIAL_CAPACITY`] one once the connection had
/// nothing to write for [`SHRINK_IDLE`].
pub(crate) const SHRINK_ABOVE: usize = 64 * 1024;

/// How long a grown outbound buffer is kept with nothing to write. Under
/// load the next messages come sooner and reuse the allocation (no
/// allocation per write); once the load ends, it is freed.
pub(crate) const SHRINK_IDLE: Duration = Duration::from_millis(500);

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

/// A message's `MSG`/`HMSG` line, built once for all its subscribers
/// (see [`Frame::build`]): everything but the sid, so a delivery copies
/// four pieces (line start, sid, line end, payload) instead of formatting
/// the line again for each subscriber.
pub(crate) struct Frame<'a> {
    /// `MSG <subject> ` or `HMSG <subject> `, then ` [reply ][hdr ]size\r\n`.
    line: &'a [u8],
    /// Where the sid goes in `line`.
    sid_at: usize,
    subject: &'a [u8],
    reply: Option<&'a [u8]>,
    header_len: Option<usize>,
    payload: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Writes the line parts of a message into `scratch` (reused from
    /// message to message) and returns the frame that refers to them.
    pub(crate) fn build(
        scratch: &'a mut Vec<u8>,
        subject: &'a [u8],
        reply: Option<&'a [u8]>,
        header_len: Option<usize>,
        payload: &'a [u8],
    ) -> Self {
        scratch.clear();
        scratch.extend_from_slice(if header_len.is_some() {
            b"HMSG "
        } else {
            b"MSG "
        });
        scratch.extend_from_slice(subject);
        scratch.push(b' ');
        let sid_at = scratch.len();
        scratch.push(b' ');
        let mut num = itoa::Buffer::new();
        if let Some(r) = reply {
            scratch.extend_from_slice(r);
            scratch.push(b' ');
        }
        if let Some(h) = header_len {
            scratch.extend_from_slice(num.format(h).as_bytes());
            scratch.push(b' ');
        }
        scratch.extend_from_slice(num.format(payload.len()).as_bytes());
        scratch.extend_from_slice(b"\r\n");
        Frame {
            line: scratch,
            sid_at,
            subject,
            reply,
            header_len,
            payload,
        }
    }
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
    /// The user's JWT expired while connected.
    AuthenticationExpired,
    /// A user JWT allowing no subscriptions (`subs: 0`).
    MaxSubscriptionsExceeded,
    /// The user was revoked by a newer account JWT while connected.
    AuthenticationRevoked,
    /// A write failed.
    WriteError,
    /// The TLS handshake failed or timed out.
    TlsHandshakeFailure,
}

struct Outbound {
    buf: BytesMut,
    /// Bytes handed to the writer and not yet written.
    in_flight: usize,
    /// The largest write since the buffer was fresh: its allocation is at
    /// most about twice that.
    largest_write: usize,
    closed: bool,
    /// A second handle on a plain TCP connection's socket (a duplicated
    /// descriptor, non-blocking like the writer's), for
    /// [`Client::write_through`]: `None` for TLS and WebSocket connections,
    /// and dropped once the connection closes so the socket does not
    /// outlive it.
    direct: Option<std::net::TcpStream>,
}

impl Outbound {
    /// Unwritten bytes: queued and being written.
    fn pending(&self) -> usize {
        self.buf.len() + self.in_flight
    }

    /// Takes everything queued for one write; the rest of the allocation
    /// stays for the next messages (and is reclaimed whole once the chunk
    /// is written and dropped).
    fn take_for_write(&mut self) -> bytes::Bytes {
        let chunk = self.buf.split();
        self.in_flight = chunk.len();
        self.largest_write = self.largest_write.max(chunk.len());
        chunk.freeze()
    }

    /// Whether the buffer's allocation may have grown past [`SHRINK_ABOVE`].
    fn grown(&self) -> bool {
        self.largest_write > SHRINK_ABOVE / 2 || self.buf.capacity() > SHRINK_ABOVE
    }

    /// Replaces an empty buffer that grew by a fresh small one, freeing the
    /// large allocation; true when it did.
    fn shrink_if_idle(&mut self) -> bool {
        if self.buf.is_empty() && self.in_flight == 0 && self.grown() {
            self.buf = BytesMut::with_capacity(INITIAL_CAPACITY);
            self.largest_write = 0;
            true
        } else {
            false
        }
    }
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
    pub(crate) echo: AtomicBool,
    pub(crate) headers: AtomicBool,
    max_pending: usize,
    /// Pending bytes over which producers are asked to stall.
    stall_at: usize,
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
    pub(crate) rules: std::sync::OnceLock<Arc<Rules>>,
    /// The connection's account, once CONNECT put it in one other than `$G`.
    pub(crate) account: std::sync::OnceLock<Arc<str>>,
    /// Operator mode: the user's public key and its JWT's issue time, so
    /// a revocation pushed later can end the connection.
    pub(crate) jwt_user: std::sync::OnceLock<(String, i64)>,
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
                buf: BytesMut::with_capacity(INITIAL_CAPACITY),
                in_flight: 0,
                largest_write: 0,
                closed: false,
                direct: None,
            }),
            wake: Notify::new(),
            drained: Notify::new(),
            closing: Notify::new(),
            close_reason: Mutex::new(None),
            echo: AtomicBool::new(true),
            headers: AtomicBool::new(false),
            max_pending,
            stall_at: STALL_PENDING.min(max_pending / 2),
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
            jwt_user: std::sync::OnceLock::new(),
        }
    }

    /// Pending outbound bytes (queued and being written).
    pub(crate) fn pending(&self) -> usize {
        lock(&self.out).pending()
    }

    pub(crate) fn name_text(&self) -> String {
        lock(&self.name).clone()
    }

    pub(crate) fn lang_text(&self) -> String {
        lock(&self.lang).clone()
    }

    /// The connection's account name (`$G` unless CONNECT chose another).
    pub(crate) fn account_name(&self) -> &str {
        self.account.get().map_or(GLOBAL_ACCOUNT, |a| a.as_ref())
    }

    /// What CONNECT said the client is (`name`, `lang`, `version`).
    pub(crate) fn set_identity(&self, name: String, lang: String, version: String) {
        *lock(&self.name) = name;
        *lock(&self.lang) = lang;
        *lock(&self.version) = version;
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

    /// Lets [`Self::write_through`] write to `socket` (a duplicate of the
    /// plain TCP socket whose write half the writer task owns).
    pub(crate) fn set_direct(&self, socket: std::net::TcpStream) {
        let mut out = lock(&self.out);
        if !out.closed {
            out.direct = Some(socket);
        }
    }

    /// Sends what is queued straight from the calling thread when the
    /// writer has nothing in flight, instead of waking the writer task:
    /// one non-blocking `send` under the buffer's lock (so nothing can
    /// overtake or interleave with it: the writer only writes what it took
    /// under the same lock, and none of that is in flight). What the socket
    /// does not take at once (a full socket buffer, an error) is left to the
    /// writer, which is then woken as usual. For a thread outside the
    /// runtime that finished a batch of deliveries (the stream's fsync
    /// thread sending PubAcks): waking the writer would cost a cross-thread
    /// wake-up of a runtime worker (the I/O driver's eventfd and an
    /// `epoll_wait` return) before the bytes leave.
    pub(crate) fn write_through(&self) {
        use std::io::Write;
        let mut out = lock(&self.out);
        if !out.closed && out.in_flight == 0 && !out.buf.is_empty() {
            let sent = match &out.direct {
                Some(socket) => {
                    let mut socket: &std::net::TcpStream = socket;
                    socket.write(&out.buf).ok()
                }
                None => None,
            };
            match sent {
                Some(n) if n >= out.buf.len() => {
                    out.buf.clear();
                    drop(out);
                    self.drained.notify_waiters();
                    return;
                }
                Some(n) => bytes::Buf::advance(&mut out.buf, n),
                None => {}
            }
        }
        drop(out);
        self.wake.notify_one();
    }

    /// True when this connection's permissions keep `subject` from it (a
    /// wildcard subscription covering a denied subject).
    pub(crate) fn withholds(&self, subject: &[u8]) -> bool {
        self.rules.get().is_some_and(|r| r.withholds(subject))
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
        self.queued(out, was_empty, payload.len())
    }

    /// [`Self::deliver`] of a message framed once for all its subscribers.
    pub(crate) fn deliver_frame(&self, frame: &Frame<'_>, sid: &[u8]) -> Delivered {
        if frame.header_len.is_some() && !self.headers.load(Ordering::Relaxed) {
            // This client gets a different line (MSG, body only).
            return self.deliver(
                frame.subject,
                sid,
                frame.reply,
                frame.header_len,
                frame.payload,
            );
        }
        if let Some(rules) = self.rules.get() {
            if rules.withholds(frame.subject) {
                return Delivered::Dropped;
            }
            if let (Some(responses), Some(reply)) = (&rules.responses, frame.reply) {
                responses.track(reply);
            }
        }
        let (head, tail) = frame.line.split_at(frame.sid_at);
        let mut out = lock(&self.out);
        if out.closed {
            return Delivered::Dropped;
        }
        let was_empty = out.buf.is_empty();
        let buf = &mut out.buf;
        buf.reserve(frame.line.len() + sid.len() + frame.payload.len() + 2);
        buf.put_slice(head);
        buf.put_slice(sid);
        buf.put_slice(tail);
        buf.put_slice(frame.payload);
        buf.put_slice(b"\r\n");
        self.queued(out, was_empty, frame.payload.len())
    }

    /// The end of a delivery: the slow-consumer check, counters, and
    /// whether the producer should stall.
    fn queued(
        &self,
        mut out: std::sync::MutexGuard<'_, Outbound>,
        was_empty: bool,
        payload_len: usize,
    ) -> Delivered {
        let queued = out.buf.len();
        let pending = out.pending();
        if pending > self.max_pending {
            out.closed = true;
            drop(out);
            self.mark_closing(CloseReason::SlowConsumer);
            return Delivered::Dropped;
        }
        drop(out);
        self.out_msgs.fetch_add(1, Ordering::Relaxed);
        self.out_bytes
            .fetch_add(payload_len as u64, Ordering::Relaxed);
        // The caller wakes the writer once per batch (see [`Batch`]), so a
        // burst goes out in few writes.
        if queued > self.stall_at {
            Delivered::Stall { wake: was_empty }
        } else {
            Delivered::Ok { wake: was_empty }
        }
    }

    /// Waits (at most `limit`) until this client's pending output is back
    /// under its stall threshold: how a fast producer is slowed down for a
    /// consumer that is keeping up, just more slowly.
    pub(crate) async fn wait_drained(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, async {
            loop {
                let drained = self.drained.notified();
                tokio::pin!(drained);
                drained.as_mut().enable();
                {
                    let out = lock(&self.out);
                    if out.closed || out.buf.len() <= self.stall_at {
                        return;
                    }
                }
                drained.await;
            }
        })
        .await;
    }

    /// Takes what is queued for the socket (tests of the layers above read
    /// deliveries with it).
    #[cfg(test)]
    pub(crate) fn drain_output(&self) -> Vec<u8> {
        lock(&self.out).buf.split().to_vec()
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
    pub(crate) fn close_outbound(&self) {
        {
            let mut out = lock(&self.out);
            out.closed = true;
            out.direct = None;
        }
        self.wake.notify_one();
    }
}

/// Writes the client's outbound bytes until it is closed and drained.
/// `socket` is a TCP write half or one of a TLS stream (which must be
/// flushed for its records to leave; a no-op on TCP).
pub(crate) async fn writer<W: AsyncWrite + Unpin>(
    client: Arc<Client>,
    mut socket: W,
    deadline: Duration,
) {
    loop {
        let (chunk, grown) = {
            let mut out = lock(&client.out);
            if out.buf.is_empty() {
                if out.closed {
                    out.direct = None;
                    break;
                }
                (None, out.grown())
            } else {
                (Some(out.take_for_write()), false)
            }
        };
        let Some(chunk) = chunk else {
            if !grown {
                client.wake.notified().await;
            } else if tokio::time::timeout(SHRINK_IDLE, client.wake.notified())
                .await
                .is_err()
            {
                lock(&client.out).shrink_if_idle();
            }
            continue;
        };
        // Producers held back for this connection fill the next buffer
        // while this one is written.
        client.drained.notify_waiters();
        let write = async {
            socket.write_all(&chunk).await?;
            socket.flush().await
        };
        let written = tokio::time::timeout(deadline, write).await;
        drop(chunk);
        lock(&client.out).in_flight = 0;
        match written {
            Ok(Ok(())) => client.drained.notify_waiters(),
            Ok(Err(_)) => {
                client.mark_closing(CloseReason::WriteError);
                client.close_outbound();
                return;
            }
            Err(_) => {
                client.mark_closing(CloseReason::SlowConsumer);
                client.close_outbound();
                return;
            }
        }
    }
    let _ = socket.shutdown().await;
}

/// Waits until each of `clients` has its pending output back under its
/// stall threshold (or is closed), `limit` at most in all.
pub(crate) async fn wait_drained(clients: Vec<Arc<Client>>, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    for client in clients {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        client.wait_drained(left).await;
    }
}

/// What one producer's deliveries ask of it: the writers to wake once it
/// is done (so a burst leaves in few writes), and the consumers over half
/// their `max_pending` it should wait for before producing more.
#[derive(Default)]
pub(crate) struct Batch {
    wakes: Vec<Arc<Client>>,
    stalls: Vec<Arc<Client>>,
    /// Reused for each message's [`Frame`].
    pub(crate) scratch: Vec<u8>,
}

impl Batch {
    /// Records a delivery outcome; true when the message was queued.
    pub(crate) fn note(&mut self, client: &Arc<Client>, outcome: Delivered) -> bool {
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

    /// Wakes the writers of every connection delivered to since the last call.
    pub(crate) fn wake(&mut self) {
        for client in self.wakes.drain(..) {
            client.wake.notify_one();
        }
    }

    /// [`Self::wake`] for a producer outside the runtime: each connection
    /// delivered to is written to directly when its writer is idle
    /// ([`Client::write_through`]), its writer woken otherwise.
    pub(crate) fn write_through(&mut self) {
        for client in self.wakes.drain(..) {
            client.write_through();
        }
    }

    /// Holds the producer back for the consumers that asked for it, at most
    /// [`STALL_BUDGET`] in all (as nats-server does).
    pub(crate) async fn stall(&mut self) {
        if self.stalls.is_empty() {
            return;
        }
        wait_drained(std::mem::take(&mut self.stalls), STALL_BUDGET).await;
    }

    /// Whether a delivery of this batch asked the producer to stall.
    pub(crate) fn stalled(&self) -> bool {
        !self.stalls.is_empty()
    }

    /// The connections a delivery of this batch asked the producer to wait
    /// for (forgotten by the batch).
    pub(crate) fn take_stalls(&mut self) -> Vec<Arc<Client>> {
        std::mem::take(&mut self.stalls)
    }

    /// For producers that do not wait (the JetStream engine): wakes the
    /// writers and forgets the stall requests.
    pub(crate) fn finish(mut self) {
        self.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Permissions, SubjectPermission};

    fn client(max_pending: usize) -> Arc<Client> {
        let c = Arc::new(Client::new(
            7,
            max_pending,
            "127.0.0.1:1".parse().expect("addr"),
        ));
        c.headers.store(true, Ordering::Relaxed);
        c
    }

    fn take(c: &Client) -> Vec<u8> {
        c.drain_output()
    }

    #[test]
    fn messages_are_framed_as_msg_and_hmsg() {
        let c = client(1 << 20);
        assert_eq!(
            c.deliver(b"a.b", b"9", Some(b"_INBOX.x"), None, b"hello"),
            Delivered::Ok { wake: true }
        );
        assert_eq!(take(&c), b"MSG a.b 9 _INBOX.x 5\r\nhello\r\n");
        let hdr = b"NATS/1.0\r\nK: v\r\n\r\n";
        let body = [&hdr[..], b"hi"].concat();
        c.deliver(b"a.b", b"9", None, Some(hdr.len()), &body);
        assert_eq!(
            take(&c),
            [&b"HMSG a.b 9 18 20\r\n"[..], &body, b"\r\n"].concat()
        );
        assert_eq!(c.out_msgs.load(Ordering::Relaxed), 2);
        assert_eq!(c.out_bytes.load(Ordering::Relaxed), 5 + 20);
    }

    #[test]
    fn a_message_framed_once_is_what_each_subscriber_would_get_framed_alone() {
        let hdr = b"NATS/1.0\r\nK: v\r\n\r\n";
        let with_hdr = [&hdr[..], b"body"].concat();
        /// Subject, reply, header length, payload.
        type Case<'a> = (&'a [u8], Option<&'a [u8]>, Option<usize>, &'a [u8]);
        let cases: [Case<'_>; 5] = [
            (b"a.b", None, None, b"hello"),
            (b"a.b", Some(b"_INBOX.r.1"), None, b""),
            (b"x", None, Some(hdr.len()), &with_hdr),
            (b"x.y.z", Some(b"r"), Some(hdr.len()), &with_hdr),
            (b"big", None, None, &[b'p'; 5000]),
        ];
        let mut scratch = Vec::new();
        for (subject, reply, header_len, payload) in cases {
            for headers in [true, false] {
                for sid in [&b"1"[..], b"123456789012"] {
                    let alone = client(1 << 20);
                    let framed = client(1 << 20);
                    alone.headers.store(headers, Ordering::Relaxed);
                    framed.headers.store(headers, Ordering::Relaxed);
                    let frame = Frame::build(&mut scratch, subject, reply, header_len, payload);
                    assert_eq!(
                        framed.deliver_frame(&frame, sid),
                        alone.deliver(subject, sid, reply, header_len, payload)
                    );
                    assert_eq!(
                        take(&framed),
                        take(&alone),
                        "subject {:?} reply {reply:?} hdr {header_len:?} headers {headers}",
                        String::from_utf8_lossy(subject)
                    );
                    assert_eq!(
                        framed.out_bytes.load(Ordering::Relaxed),
                        alone.out_bytes.load(Ordering::Relaxed)
                    );
                }
            }
        }
    }

    #[test]
    fn a_framed_delivery_honours_the_slow_consumer_limit_and_permissions() {
        let mut scratch = Vec::new();
        let c = client(100);
        let frame = Frame::build(&mut scratch, b"s", None, None, &[b'x'; 120]);
        assert_eq!(c.deliver_frame(&frame, b"1"), Delivered::Dropped);
        assert_eq!(c.close_reason(), Some(CloseReason::SlowConsumer));
        let c = client(1 << 20);
        let rules = Arc::new(Rules::new(&Permissions {
            subscribe: Some(SubjectPermission {
                allow: None,
                deny: Some(vec!["secret.>".into()]),
            }),
            ..Permissions::default()
        }));
        assert!(rules.may_subscribe(">", None));
        let _ = c.rules.set(rules);
        let frame = Frame::build(&mut scratch, b"secret.x", None, None, b"no");
        assert_eq!(c.deliver_frame(&frame, b"1"), Delivered::Dropped);
        assert!(take(&c).is_empty());
    }

    #[test]
    fn a_client_without_headers_gets_the_body_only() {
        let c = client(1 << 20);
        c.headers.store(false, Ordering::Relaxed);
        let hdr = b"NATS/1.0\r\n\r\n";
        let body = [&hdr[..], b"xy"].concat();
        c.deliver(b"s", b"1", None, Some(hdr.len()), &body);
        assert_eq!(take(&c), b"MSG s 1 2\r\nxy\r\n");
    }

    /// A connected pair of plain TCP sockets: the server side's duplicate
    /// handed to the client as its direct socket, and the peer.
    fn direct_pair(c: &Client) -> (std::net::TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let peer =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server_side, _) = listener.accept().expect("accept");
        server_side.set_nonblocking(true).expect("nonblocking");
        c.set_direct(server_side.try_clone().expect("dup"));
        peer.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        (server_side, peer)
    }

    fn read_exactly(peer: &mut std::net::TcpStream, n: usize) -> Vec<u8> {
        use std::io::Read;
        let mut got = vec![0; n];
        peer.read_exact(&mut got).expect("read");
        got
    }

    #[test]
    fn write_through_sends_queued_output_itself_when_the_writer_is_idle() {
        let c = client(1 << 20);
        let (_server_side, mut peer) = direct_pair(&c);
        c.deliver(b"a", b"1", None, None, b"x");
        c.deliver(b"b", b"2", None, None, b"yz");
        c.write_through();
        let want = b"MSG a 1 1\r\nx\r\nMSG b 2 2\r\nyz\r\n";
        assert_eq!(read_exactly(&mut peer, want.len()), want);
        assert_eq!(c.pending(), 0);
        // Nothing was left for the writer: the next delivery finds the
        // buffer empty again.
        assert_eq!(
            c.deliver(b"c", b"3", None, None, b"!"),
            Delivered::Ok { wake: true }
        );
    }

    #[test]
    fn write_through_leaves_output_to_the_writer_while_a_write_is_in_flight() {
        let c = client(1 << 20);
        let (_server_side, _peer) = direct_pair(&c);
        c.deliver(b"a", b"1", None, None, b"first");
        // The writer took the first message and is writing it.
        let taken = lock(&c.out).take_for_write();
        c.deliver(b"b", b"2", None, None, b"second");
        c.write_through();
        // Sending "second" now could overtake "first": it stays queued.
        assert_eq!(&taken[..], b"MSG a 1 5\r\nfirst\r\n");
        assert_eq!(take(&c), b"MSG b 2 6\r\nsecond\r\n");
    }

    #[test]
    fn a_closed_connection_drops_its_direct_socket_and_writes_nothing_through_it() {
        use std::io::Read;
        let c = client(1 << 20);
        let (server_side, mut peer) = direct_pair(&c);
        // The test's own handle goes: only the client's duplicate is left.
        drop(server_side);
        c.deliver(b"a", b"1", None, None, b"late");
        c.close_outbound();
        c.write_through();
        // The last descriptor of the socket was the client's: the peer
        // sees the connection end, with none of the queued output.
        let mut rest = Vec::new();
        peer.read_to_end(&mut rest).expect("read to end");
        assert!(rest.is_empty(), "got {rest:?}");
    }

    #[test]
    fn the_writer_is_woken_only_when_the_buffer_was_empty() {
        let c = client(1 << 20);
        assert_eq!(
            c.deliver(b"s", b"1", None, None, b"1"),
            Delivered::Ok { wake: true }
        );
        assert_eq!(
            c.deliver(b"s", b"1", None, None, b"2"),
            Delivered::Ok { wake: false }
        );
        take(&c);
        assert_eq!(
            c.deliver(b"s", b"1", None, None, b"3"),
            Delivered::Ok { wake: true }
        );
    }

    #[test]
    fn over_half_max_pending_asks_the_producer_to_stall() {
        // Each message is 71 bytes framed: the first stays under half of
        // 200, the second goes over it.
        let c = client(200);
        let payload = [b'x'; 60];
        assert!(matches!(
            c.deliver(b"s", b"1", None, None, &payload),
            Delivered::Ok { .. }
        ));
        assert_eq!(
            c.deliver(b"s", b"1", None, None, &payload),
            Delivered::Stall { wake: false }
        );
    }

    #[test]
    fn over_max_pending_the_connection_is_closed_as_a_slow_consumer() {
        let c = client(100);
        let payload = [b'x'; 120];
        assert_eq!(
            c.deliver(b"s", b"1", None, None, &payload),
            Delivered::Dropped
        );
        assert_eq!(c.close_reason(), Some(CloseReason::SlowConsumer));
        // Nothing more is queued once closed, not even control lines.
        assert_eq!(
            c.deliver(b"s", b"1", None, None, b"small"),
            Delivered::Dropped
        );
        c.send(b"PING\r\n");
        assert_eq!(c.out_msgs.load(Ordering::Relaxed), 0);
        assert!(!take(&c).ends_with(b"PING\r\n"));
    }

    #[test]
    fn a_grown_buffer_is_kept_while_busy_and_replaced_by_a_small_one_when_idle() {
        let c = client(64 << 20);
        let payload = [b'x'; 1024];
        while c.pending() <= 4 * SHRINK_ABOVE {
            c.deliver(b"s", b"1", None, None, &payload);
        }
        let queued = c.pending();
        let chunk = lock(&c.out).take_for_write();
        assert_eq!(chunk.len(), queued, "everything queued goes in one write");
        assert!(
            !lock(&c.out).shrink_if_idle(),
            "not while the chunk is being written"
        );
        drop(chunk);
        lock(&c.out).in_flight = 0;
        c.deliver(b"s", b"1", None, None, &payload);
        assert!(!lock(&c.out).shrink_if_idle(), "not while messages wait");
        drop(lock(&c.out).take_for_write());
        lock(&c.out).in_flight = 0;
        let mut out = lock(&c.out);
        assert!(out.shrink_if_idle());
        assert!(out.buf.is_empty());
        assert!(
            out.buf.capacity() <= INITIAL_CAPACITY,
            "the large allocation is gone, capacity now {}",
            out.buf.capacity()
        );
        assert!(!out.shrink_if_idle(), "a fresh buffer is not grown");
    }

    #[test]
    fn a_small_buffer_is_split_and_kept() {
        let c = client(64 << 20);
        c.deliver(b"s", b"1", None, None, b"hello");
        let chunk = lock(&c.out).take_for_write();
        assert_eq!(&chunk[..], b"MSG s 1 5\r\nhello\r\n");
        drop(chunk);
        let mut out = lock(&c.out);
        out.in_flight = 0;
        assert!(
            out.buf.capacity() > 0,
            "the rest of the allocation stays for the next messages"
        );
        assert!(!out.shrink_if_idle());
    }

    #[test]
    fn bytes_being_written_count_as_pending_toward_max_pending() {
        // 315 bytes a message framed; stall over 500 queued, close over
        // 1000 unwritten (queued plus being written).
        let c = client(1000);
        let payload = [b'x'; 300];
        assert!(matches!(
            c.deliver(b"s", b"1", None, None, &payload),
            Delivered::Ok { .. }
        ));
        let chunk = lock(&c.out).take_for_write();
        assert_eq!(chunk.len(), 315);
        assert_eq!(c.pending(), 315, "in flight is still pending");
        // The producer may fill the next buffer while one is written.
        assert!(matches!(
            c.deliver(b"s", b"1", None, None, &payload),
            Delivered::Ok { .. }
        ));
        assert!(matches!(
            c.deliver(b"s", b"1", None, None, &payload),
            Delivered::Stall { .. }
        ));
        assert_eq!(c.pending(), 945);
        // Queued (945 after this one) plus in flight (315) is over
        // max_pending: a slow consumer, although the buffer alone is not.
        assert_eq!(
            c.deliver(b"s", b"1", None, None, &payload),
            Delivered::Dropped
        );
        assert_eq!(c.close_reason(), Some(CloseReason::SlowConsumer));
    }

    #[test]
    fn producers_stall_once_the_socket_has_enough_to_write_not_at_half_max_pending() {
        let c = client(64 << 20);
        let payload = [b'x'; 1024];
        let mut stalled_at = None;
        for _ in 0..(STALL_PENDING / 1024 + 2) {
            if let Delivered::Stall { .. } = c.deliver(b"s", b"1", None, None, &payload) {
                stalled_at = Some(c.pending());
                break;
            }
        }
        let stalled_at = stalled_at.expect("a stall before 32 MiB");
        assert!(stalled_at > STALL_PENDING && stalled_at <= STALL_PENDING + 1100);
    }

    #[test]
    fn the_first_close_reason_wins() {
        let c = client(100);
        c.mark_closing(CloseReason::StaleConnection);
        c.mark_closing(CloseReason::SlowConsumer);
        assert_eq!(c.close_reason(), Some(CloseReason::StaleConnection));
    }

    #[test]
    fn denied_subjects_are_withheld_and_replies_tracked_for_responses() {
        let c = client(1 << 20);
        let rules = Arc::new(Rules::new(&Permissions {
            subscribe: Some(SubjectPermission {
                allow: None,
                deny: Some(vec!["secret.>".into()]),
            }),
            allow_responses: Some(crate::config::ResponsePermission::default()),
            ..Permissions::default()
        }));
        // A wildcard subscription covering a denied subject turns the
        // delivery filter on.
        assert!(rules.may_subscribe(">", None));
        let _ = c.rules.set(Arc::clone(&rules));
        assert_eq!(
            c.deliver(b"secret.x", b"1", None, None, b"no"),
            Delivered::Dropped
        );
        assert!(c.close_reason().is_none(), "withholding is not closing");
        assert!(matches!(
            c.deliver(b"open.x", b"1", Some(b"_INBOX.r"), None, b"yes"),
            Delivered::Ok { .. }
        ));
        assert!(
            rules.may_respond(b"_INBOX.r"),
            "the reply may be answered once"
        );
        assert!(!rules.may_respond(b"_INBOX.r"));
    }

    #[tokio::test]
    async fn a_batch_wakes_each_writer_once_and_remembers_whom_to_wait_for() {
        let fast = client(1 << 20);
        let slow = client(200);
        let mut batch = Batch::default();
        assert!(batch.note(&fast, fast.deliver(b"s", b"1", None, None, b"a")));
        assert!(batch.note(&fast, fast.deliver(b"s", b"1", None, None, b"b")));
        assert!(batch.note(&slow, slow.deliver(b"s", b"1", None, None, &[b'x'; 60])));
        assert!(batch.note(&slow, slow.deliver(b"s", b"1", None, None, &[b'x'; 60])));
        assert!(!batch.note(&slow, Delivered::Dropped));
        assert_eq!(batch.wakes.len(), 2, "one wake per writer");
        assert_eq!(batch.stalls.len(), 1);
        // Nobody drains `slow`: the stall gives up after the budget.
        let begun = tokio::time::Instant::now();
        batch.stall().await;
        assert!(begun.elapsed() >= STALL_BUDGET);
        assert!(batch.stalls.is_empty());
        batch.wake();
        assert!(batch.wakes.is_empty());
    }

    #[tokio::test]
    async fn the_writer_sends_what_accumulated_and_flushes_before_closing() {
        let c = client(1 << 20);
        let (ours, mut theirs) = tokio::io::duplex(1 << 16);
        let task = tokio::spawn(writer(Arc::clone(&c), ours, Duration::from_secs(5)));
        c.deliver(b"s", b"1", None, None, b"one");
        c.deliver(b"s", b"1", None, None, b"two");
        c.wake.notify_one();
        c.close_outbound();
        task.await.expect("writer");
        let mut got = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut theirs, &mut got)
            .await
            .expect("read");
        assert_eq!(got, b"MSG s 1 3\r\none\r\nMSG s 1 3\r\ntwo\r\n");
    }

    #[tokio::test]
    async fn after_a_burst_the_idle_writer_gives_the_large_buffer_back() {
        let c = client(64 << 20);
        let (ours, mut theirs) = tokio::io::duplex(1 << 16);
        let task = tokio::spawn(writer(Arc::clone(&c), ours, Duration::from_secs(5)));
        let payload = [b'x'; 1024];
        while c.pending() < 4 * SHRINK_ABOVE {
            c.deliver(b"s", b"1", None, None, &payload);
        }
        let queued = c.pending();
        c.wake.notify_one();
        let mut got = vec![0; queued];
        tokio::io::AsyncReadExt::read_exact(&mut theirs, &mut got)
            .await
            .expect("read");
        // The writer frees it after SHRINK_IDLE with nothing to write;
        // wait for that (bounded, so a writer that never does fails).
        let mut shrunk = false;
        for _ in 0..200 {
            {
                let out = lock(&c.out);
                if out.pending() == 0 && out.buf.capacity() <= INITIAL_CAPACITY {
                    shrunk = true;
                    break;
                }
            }
            tokio::time::sleep(SHRINK_IDLE / 10).await;
        }
        assert!(shrunk, "the grown buffer was not replaced");
        // And the connection still works.
        c.deliver(b"s", b"1", None, None, b"after");
        c.wake.notify_one();
        let mut tail = [0; 18];
        tokio::io::AsyncReadExt::read_exact(&mut theirs, &mut tail)
            .await
            .expect("read");
        assert_eq!(&tail, b"MSG s 1 5\r\nafter\r\n");
        c.close_outbound();
        task.await.expect("writer");
    }

    #[tokio::test]
    async fn a_write_past_the_deadline_closes_the_connection_as_a_slow_consumer() {
        let c = client(1 << 20);
        // A peer that never reads: the duplex fills after 64 bytes.
        let (ours, _theirs) = tokio::io::duplex(64);
        let task = tokio::spawn(writer(Arc::clone(&c), ours, Duration::from_millis(50)));
        c.deliver(b"s", b"1", None, None, &[b'x'; 4096]);
        c.wake.notify_one();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the writer gives up")
            .expect("writer");
        assert_eq!(c.close_reason(), Some(CloseReason::SlowConsumer));
        assert_eq!(
            c.deliver(b"s", b"1", None, None, b"late"),
            Delivered::Dropped
        );
    }
}
