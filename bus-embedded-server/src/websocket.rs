//! The WebSocket listener (nats-server's `websocket { }`): accepts, runs
//! the TLS handshake when configured, reads the HTTP upgrade request and
//! checks it as nats-server does (method, `Host`, `Upgrade`, `Connection`,
//! `Sec-WebSocket-Key`, `Sec-WebSocket-Version`, then the origin rules),
//! answers `101 Switching Protocols` or the same refusal status and body
//! nats-server's HTTP server sends, and hands the session a byte stream
//! ([`WsBytes`]) over the WebSocket messages. From there the connection is
//! an ordinary session: same INFO (with this listener's host, port and
//! TLS), CONNECT, authentication, accounts and permissions as TCP clients.
//!
//! Framing (masking, fragmentation, control frames, close handshake) is
//! tokio-websockets'; this module owns only the upgrade and the adapter.
//! It must not parse protocol ops or touch subscriptions: the session does.
//! With `compression: true`, a client offering permessage-deflate gets
//! it (the 101 says so) and its connection is framed by ratchet with the
//! [`deflate`] extension instead; the others, and every client of a
//! listener without compression, stay on tokio-websockets unchanged.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use base64::Engine as _;
use bytes::{Buf, Bytes, BytesMut};
use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_websockets::{CloseCode, Message, WebSocketStream};

use crate::config::WebSocketConfig;
use crate::outbound::{Client, CloseReason};
use crate::session;
use crate::state::ServerState;

mod deflate;

/// Longest upgrade request read (nats-server's HTTP server allows 1 MB of
/// headers; an upgrade request is a few hundred bytes).
const MAX_REQUEST: usize = 64 * 1024;
/// Most request headers looked at.
const MAX_HEADERS: usize = 128;
/// The WebSocket GUID of RFC 6455 section 1.3.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why the WebSocket settings cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum WebSocketSetupError {
    /// An `allowed_origins` entry is not `scheme://host[:port]`.
    #[error("unable to parse allowed origin: {0:?}")]
    AllowedOrigin(String),
    /// A `headers` name the upgrade itself sets (nats-server's text).
    #[error("websocket: invalid header {0:?} not allowed")]
    ReservedHeader(String),
    /// A `headers` name starting `Sec-WebSocket-` (nats-server's text).
    #[error("websocket: invalid header {0:?}, \"Sec-WebSocket-\" prefix not allowed")]
    SecWebSocketHeader(String),
    /// A `headers` name or value that would break the response (a line
    /// break, or a name that is not an HTTP token).
    #[error("websocket: invalid header {0:?}: not a valid header line")]
    MalformedHeader(String),
}

/// `headers { }` as the 101's extra lines, checked as nats-server checks
/// the names (and, beyond it, that each makes one well-formed line).
fn header_lines(headers: &[(String, String)]) -> Result<String, WebSocketSetupError> {
    let mut lines = String::new();
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if [
            "host",
            "content-length",
            "connection",
            "upgrade",
            "nats-no-masking",
        ]
        .contains(&lower.as_str())
        {
            return Err(WebSocketSetupError::ReservedHeader(name.clone()));
        }
        if lower.starts_with("sec-websocket-") {
            return Err(WebSocketSetupError::SecWebSocketHeader(name.clone()));
        }
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty()
            || !name.bytes().all(token)
            || value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
        {
            return Err(WebSocketSetupError::MalformedHeader(name.clone()));
        }
        lines.push_str(&format!("{name}: {value}\r\n"));
    }
    Ok(lines)
}

/// An origin reduced to what nats-server compares: scheme, lower-case
/// host, port (the scheme's default when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: String,
}

/// `host[:port]` (IPv6 in brackets) into host and port, the port defaulting
/// to 443 when `tls` and 80 otherwise; `None` when malformed.
fn host_and_port(tls: bool, hostport: &str) -> Option<(String, String)> {
    let default = if tls { "443" } else { "80" };
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => (host, default),
            p => (host, p.strip_prefix(':')?),
        }
    } else {
        match hostport.split_once(':') {
            None => (hostport, default),
            Some((_, p)) if p.contains(':') => return None,
            Some((h, p)) => (h, p),
        }
    };
    Some((host.to_ascii_lowercase(), port.to_owned()))
}

/// Parses `scheme://host[:port][/...]` as nats-server reads an Origin
/// header or an allowed origin; `None` when it is not such a URL.
fn parse_origin(text: &str) -> Option<Origin> {
    let (scheme, rest) = text.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (host, port) = host_and_port(scheme == "https", authority)?;
    Some(Origin {
        scheme: scheme.to_owned(),
        host,
        port,
    })
}

/// The origin rules of one listener (and whether it grants
/// compression, the other per-listener answer of the upgrade).
#[derive(Debug, Default)]
pub(crate) struct OriginRules {
    same_origin: bool,
    allowed: Vec<Origin>,
    tls: bool,
    compression: bool,
    /// `headers { }`, ready to append to the 101.
    headers: String,
}

impl OriginRules {
    /// The rules of `config`; an allowed origin that is not a URL refuses
    /// the start.
    pub(crate) fn new(config: &WebSocketConfig) -> Result<OriginRules, WebSocketSetupError> {
        let allowed = config
            .allowed_origins
            .iter()
            .map(|o| parse_origin(o).ok_or_else(|| WebSocketSetupError::AllowedOrigin(o.clone())))
            .collect::<Result<_, _>>()?;
        Ok(OriginRules {
            same_origin: config.same_origin,
            allowed,
            tls: config.tls.is_some(),
            compression: config.compression,
            headers: header_lines(&config.headers)?,
        })
    }

    /// Whether a request with `origin` (the `Origin` or
    /// `Sec-WebSocket-Origin` header) to `host` (its `Host`) may upgrade.
    /// No rule, or no origin header: allowed.
    fn allows(&self, origin: Option<&str>, host: &str) -> bool {
        if !self.same_origin && self.allowed.is_empty() {
            return true;
        }
        let Some(origin) = origin.filter(|o| !o.is_empty()) else {
            return true;
        };
        let Some(o) = parse_origin(origin) else {
            return false;
        };
        if self.same_origin {
            match host_and_port(self.tls, host) {
                Some((h, p)) if h == o.host && p == o.port => {}
                _ => return false,
            }
        }
        if !self.allowed.is_empty() {
            // nats-server keys the list by host: the last entry for a host wins.
            let entry = self.allowed.iter().rev().find(|a| a.host == o.host);
            return entry.is_some_and(|a| a.scheme == o.scheme && a.port == o.port);
        }
        true
    }
}

/// What a refused upgrade gets: nats-server's HTTP server answers with the
/// status and its standard text as the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Not `GET`.
    MethodNotAllowed,
    /// A missing or wrong header.
    BadRequest,
    /// `Host` missing altogether (an HTTP/1.1 request without it; the
    /// HTTP server refuses it before the upgrade handler runs).
    MissingHost,
    /// The origin rules refuse it.
    Forbidden,
    /// Headers over [`MAX_REQUEST`].
    TooLarge,
    /// Not HTTP at all.
    Malformed,
    /// Bytes after the request, before the upgrade was answered:
    /// nats-server closes without a word.
    EarlyData,
}

impl Refusal {
    /// The response, in the request's HTTP version (`minor`: 0 or 1), as
    /// nats-server's HTTP server writes it.
    fn response(self, minor: u8) -> Vec<u8> {
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        // The upgrade handler's refusals: the status text as the body.
        let handler = |status: &str, text: &str| {
            let body = format!("{text}\n");
            format!(
                "HTTP/1.{minor} {status} {text}\r\nContent-Type: text/plain; charset=utf-8\r\n\
                 Sec-Websocket-Version: 13\r\nX-Content-Type-Options: nosniff\r\n\
                 Date: {date}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        // The HTTP server's own refusals, before any handler runs.
        let server = |status: &str| {
            format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n\
                 Connection: close\r\n\r\n{status}"
            )
        };
        match self {
            Refusal::MethodNotAllowed => handler("405", "Method Not Allowed"),
            Refusal::BadRequest => handler("400", "Bad Request"),
            Refusal::Forbidden => handler("403", "Forbidden"),
            Refusal::MissingHost => server("400 Bad Request: missing required Host header"),
            Refusal::TooLarge => server("431 Request Header Fields Too Large"),
            Refusal::Malformed => server("400 Bad Request"),
            Refusal::EarlyData => String::new(),
        }
        .into_bytes()
    }
}

/// True when header `name` lists `token` (comma-separated, any case).
fn header_has(headers: &[httparse::Header<'_>], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .any(|h| {
            String::from_utf8_lossy(h.value)
                .split(',')
                .any(|t| t.trim_matches([' ', '\t']).eq_ignore_ascii_case(token))
        })
}

/// The first value of header `name`.
fn header<'h>(headers: &'h [httparse::Header<'_>], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| std::str::from_utf8(h.value).ok())
}

/// An accepted upgrade: the key to answer. (`X-Forwarded-For` is not
/// taken: nats-server only shows it in its log lines; INFO's `client_ip`
/// keeps the peer's address.)
#[derive(Debug, PartialEq, Eq)]
struct Upgrade {
    key: String,
    /// permessage-deflate granted (the listener compresses and the
    /// client offered it).
    deflate: bool,
}

/// Checks a complete request head (`head`, `extra`: bytes that followed
/// it) in nats-server's order.
fn check_request(head: &[u8], extra: bool, rules: &OriginRules) -> Result<Upgrade, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) | Err(_) => return Err(Refusal::Malformed),
    }
    let headers = req.headers;
    if req.method != Some("GET") {
        return Err(Refusal::MethodNotAllowed);
    }
    let host = match header(headers, "Host") {
        None if req.version == Some(1) => return Err(Refusal::MissingHost),
        None | Some("") => return Err(Refusal::BadRequest),
        Some(h) => h,
    };
    if !header_has(headers, "Upgrade", "websocket") || !header_has(headers, "Connection", "Upgrade")
    {
        return Err(Refusal::BadRequest);
    }
    let key = match header(headers, "Sec-WebSocket-Key") {
        Some(k) if !k.is_empty() => k.to_owned(),
        _ => return Err(Refusal::BadRequest),
    };
    if !header_has(headers, "Sec-WebSocket-Version", "13") {
        return Err(Refusal::BadRequest);
    }
    let origin = header(headers, "Origin")
        .filter(|o| !o.is_empty())
        .or_else(|| header(headers, "Sec-WebSocket-Origin"));
    if !rules.allows(origin, host) {
        return Err(Refusal::Forbidden);
    }
    if extra {
        return Err(Refusal::EarlyData);
    }
    let deflate = rules.compression && deflate::offered(headers);
    Ok(Upgrade { key, deflate })
}

/// `Sec-WebSocket-Accept` for `key` (RFC 6455 section 4.2.2).
fn accept_key(key: &str) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes())
}

/// Reads the request head and answers it. `Ok(None)`: the client went
/// away or sent something refused (the refusal already written).
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    rules: &OriginRules,
) -> io::Result<Option<Upgrade>> {
    let mut buf = BytesMut::with_capacity(1024);
    let end = loop {
        if let Some(i) = memchr::memmem::find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() >= MAX_REQUEST {
            refuse(stream, Refusal::TooLarge, 1).await;
            return Ok(None);
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(None);
        }
    };
    // The version the refusal answers in (nats-server echoes HTTP/1.0).
    let first_line = buf[..end].split(|b| *b == b'\n').next().unwrap_or_default();
    let minor = u8::from(!first_line.ends_with(b" HTTP/1.0\r"));
    match check_request(&buf[..end], buf.len() > end, rules) {
        Ok(up) => {
            let response = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{}{}\r\n",
                accept_key(&up.key),
                if up.deflate {
                    deflate::RESPONSE_HEADER
                } else {
                    ""
                },
                rules.headers,
            );
            stream.write_all(response.as_bytes()).await?;
            stream.flush().await?;
            Ok(Some(up))
        }
        Err(refusal) => {
            refuse(stream, refusal, minor).await;
            Ok(None)
        }
    }
}

/// Answers a refused upgrade and closes (nats-server's HTTP server would
/// keep the connection for another request; nothing but an upgrade is
/// served here).
async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, refusal: Refusal, minor: u8) {
    let _ = stream.write_all(&refusal.response(minor)).await;
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
}

/// A byte stream over a WebSocket connection, for the session: reads give
/// the payloads of binary and text messages in order (ping, pong and the
/// close handshake are answered underneath); each write goes out as one
/// binary message; shutting down sends a close frame whose status says
/// why the connection ended, as nats-server's does.
pub(crate) struct WsBytes<S> {
    ws: WebSocketStream<S>,
    /// Unread payload of the last message.
    pending: Bytes,
    client: Arc<Client>,
    close_sent: bool,
    /// The close status to send instead of the client's close reason's.
    close_as: Option<(CloseCode, &'static str)>,
}

fn io_error(e: tokio_websockets::Error) -> io::Error {
    match e {
        tokio_websockets::Error::Io(e) => e,
        other => io::Error::other(other),
    }
}

/// The close status and text nats-server sends for why a connection ended.
fn close_status(reason: Option<CloseReason>) -> (CloseCode, &'static str) {
    match reason {
        None | Some(CloseReason::ClientClosed) => (CloseCode::NORMAL_CLOSURE, "Client Closed"),
        Some(CloseReason::ServerShutdown) => (CloseCode::GOING_AWAY, "Server Shutdown"),
        Some(CloseReason::ProtocolError) => (CloseCode::PROTOCOL_ERROR, "Protocol Violation"),
        Some(CloseReason::SlowConsumer) => {
            (CloseCode::POLICY_VIOLATION, "Slow Consumer (Pending Bytes)")
        }
        Some(CloseReason::AuthorizationViolation) => {
            (CloseCode::POLICY_VIOLATION, "Authorization Violation")
        }
        Some(CloseReason::AuthenticationTimeout) => {
            (CloseCode::POLICY_VIOLATION, "Authentication Timeout")
        }
        Some(CloseReason::AuthenticationExpired) => {
            (CloseCode::POLICY_VIOLATION, "Authentication Expired")
        }
        Some(CloseReason::AuthenticationRevoked) => {
            (CloseCode::POLICY_VIOLATION, "Authentication Revoked")
        }
        Some(CloseReason::MaxSubscriptionsExceeded) => (
            CloseCode::POLICY_VIOLATION,
            "Maximum Subscriptions Exceeded",
        ),
        // nats-server sends 1006 here, a code RFC 6455 forbids on the wire.
        Some(CloseReason::StaleConnection) => {
            (CloseCode::INTERNAL_SERVER_ERROR, "Stale Connection")
        }
        Some(CloseReason::WriteError) => (CloseCode::INTERNAL_SERVER_ERROR, "Write Error"),
        Some(CloseReason::TlsHandshakeFailure) => {
            (CloseCode::INTERNAL_SERVER_ERROR, "TLS Handshake Failure")
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsBytes<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
                Some(Ok(msg)) if msg.is_binary() || msg.is_text() => {
                    self.pending = msg.into_payload().into();
                }
                // The peer's close: end of input (the reply is sent underneath).
                Some(Ok(msg)) if msg.is_close() => return Poll::Ready(Ok(())),
                Some(Ok(_)) => {} // ping or pong: answered underneath
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsBytes<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(io_error)?;
        Pin::new(&mut self.ws)
            .start_send(Message::binary(Bytes::copy_from_slice(buf)))
            .map_err(io_error)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(io_error)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.close_sent {
            // After the peer's close the library has already answered it;
            // sending fails then and is not needed.
            if ready!(Pin::new(&mut self.ws).poll_ready(cx)).is_ok() {
                let (code, text) = self
                    .close_as
                    .unwrap_or_else(|| close_status(self.client.close_reason()));
                let _ = Pin::new(&mut self.ws).start_send(Message::close(Some(code), text));
            }
            self.close_sent = true;
        }
        // Not waiting for the peer's answer to the close: the session is over.
        let _ = ready!(Pin::new(&mut self.ws).poll_flush(cx));
        Pin::new(self.ws.get_mut()).poll_shutdown(cx)
    }
}

/// Accepts WebSocket connections until shutdown (or lame duck, which
/// closes the listener), then waits for the sessions to end.
pub(crate) async fn accept_loop(
    shared: Arc<ServerState>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    rules: OriginRules,
) {
    let rules = Arc::new(rules);
    let mut shutdown = shared.shutdown.subscribe();
    let mut accepting = shared.accepting.subscribe();
    let mut listener = Some(listener);
    let mut connections = JoinSet::new();
    loop {
        let accept = async {
            match &listener {
                Some(l) => l.accept().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = accepting.changed() => {
                if !*accepting.borrow() {
                    listener = None;
                }
            }
            accepted = accept => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "websocket accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                connections.spawn(connection(
                    Arc::clone(&shared),
                    stream,
                    peer,
                    tls.clone(),
                    Arc::clone(&rules),
                ));
            }
            _ = shutdown.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// One WebSocket connection: TLS, upgrade (both within the handshake
/// timeout, and abandoned at shutdown), then the session.
async fn connection(
    shared: Arc<ServerState>,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    rules: Arc<OriginRules>,
) {
    let _ = stream.set_nodelay(true);
    let timeout = shared
        .config
        .websocket
        .as_ref()
        .and_then(|w| w.handshake_timeout);
    let mut shutdown = shared.shutdown.subscribe();
    let debug = shared.config.debug;
    match tls {
        None => {
            let mut stream = stream;
            let up = tokio::select! {
                up = within(timeout, upgrade(&mut stream, &rules)) => up,
                _ = shutdown.changed() => None,
            };
            match up {
                Some(Upgrade { deflate: true, .. }) => {
                    deflate::serve_compressed(shared, stream, peer).await;
                }
                Some(_) => serve(shared, stream, peer).await,
                None if debug => {
                    tracing::debug!("{peer} - websocket handshake not completed");
                }
                None => {}
            }
        }
        Some(acceptor) => {
            let handshake = async {
                let mut tls = acceptor.accept(stream).await.ok()?;
                let up = upgrade(&mut tls, &rules).await.ok()??;
                Some((tls, up))
            };
            let done = tokio::select! {
                done = within(timeout, handshake) => done,
                _ = shutdown.changed() => None,
            };
            if let Some((tls, up)) = done {
                if up.deflate {
                    deflate::serve_compressed(shared, tls, peer).await;
                } else {
                    serve(shared, tls, peer).await;
                }
            } else if debug {
                tracing::debug!("{peer} - websocket TLS handshake or upgrade not completed");
            }
        }
    }
}

/// `fut` within `limit` (no limit when `None`); `None` when it did not
/// finish in time or produced nothing.
async fn within<T, F>(limit: Option<Duration>, fut: F) -> Option<T>
where
    F: std::future::Future,
    F::Output: IntoOption<T>,
{
    match limit {
        Some(limit) => tokio::time::timeout(limit, fut)
            .await
            .ok()
            .and_then(IntoOption::into_option),
        None => fut.await.into_option(),
    }
}

/// The upgrade's `io::Result<Option<_>>` and the TLS path's `Option<_>`
/// alike, as an option.
trait IntoOption<T> {
    fn into_option(self) -> Option<T>;
}

impl<T> IntoOption<T> for Option<T> {
    fn into_option(self) -> Option<T> {
        self
    }
}

impl<T> IntoOption<T> for io::Result<Option<T>> {
    fn into_option(self) -> Option<T> {
        self.ok().flatten()
    }
}

/// A new WebSocket connection's client (numbered, counted in the server's
/// statistics, not yet registered), the nonce it must sign when the
/// server's authentication needs one, and the INFO that greets it; shared
/// by the plain and the compressed ([`deflate::serve_compressed`]) paths.
fn admit(shared: &ServerState, addr: SocketAddr) -> (Arc<Client>, Option<String>, Vec<u8>) {
    let id = shared.next_client.fetch_add(1, Ordering::Relaxed);
    shared
        .stats
        .total_connections
        .fetch_add(1, Ordering::Relaxed);
    let client = Arc::new(Client::new(id, shared.config.max_pending, addr));
    let nonce = shared
        .config
        .auth
        .as_ref()
        .is_some_and(crate::config::Auth::needs_nonce)
        .then(crate::auth::new_nonce);
    let info = shared.ws_info_with_nonce(id, addr, nonce.as_deref());
    (client, nonce, info)
}

/// The upgraded connection as a client: registered, INFO (WebSocket's),
/// then the ordinary session over [`WsBytes`].
async fn serve<S>(shared: Arc<ServerState>, stream: S, addr: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (client, nonce, info) = admit(&shared, addr);
    let ws = tokio_websockets::ServerBuilder::new().serve(stream);
    let mut bytes = WsBytes {
        ws,
        pending: Bytes::new(),
        client: Arc::clone(&client),
        close_sent: false,
        close_as: None,
    };
    if shared.client_count() >= shared.config.max_connections {
        // As nats-server: INFO, the error, then a close frame.
        let _ = bytes.write_all(&info).await;
        let _ = bytes
            .write_all(b"-ERR 'maximum connections exceeded'\r\n")
            .await;
        bytes.close_as = Some((CloseCode::POLICY_VIOLATION, "Maximum Connections Exceeded"));
        let _ = bytes.shutdown().await;
        return;
    }
    shared.add_client(Arc::clone(&client));
    let (reader, writer) = tokio::io::split(bytes);
    session::run_via(
        session::Listener::WebSocket,
        shared,
        client,
        reader,
        writer,
        nonce,
        Some(info),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(same_origin: bool, allowed: &[&str], tls: bool) -> OriginRules {
        let mut c = WebSocketConfig::plain("127.0.0.1", 0);
        c.same_origin = same_origin;
        c.allowed_origins = allowed.iter().map(|s| (*s).to_owned()).collect();
        if tls {
            c.tls = Some(crate::config::TlsConfig::new("c", "k"));
        }
        OriginRules::new(&c).unwrap_or_default()
    }

    fn request(extra_headers: &str) -> String {
        format!(
            "GET / HTTP/1.1\r\nHost: localhost:8080\r\nUpgrade: websocket\r\n\
             Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
        )
    }

    #[test]
    fn accept_key_is_the_rfc_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn a_complete_request_upgrades() {
        let r = rules(false, &[], false);
        let up = check_request(
            request("X-Forwarded-For: 10.1.2.3\r\n").as_bytes(),
            false,
            &r,
        );
        assert_eq!(
            up,
            Ok(Upgrade {
                key: "dGhlIHNhbXBsZSBub25jZQ==".into(),
                deflate: false,
            })
        );
    }

    #[test]
    fn each_missing_header_is_a_bad_request() {
        let r = rules(false, &[], false);
        let full = request("");
        for drop in [
            "Upgrade: websocket\r\n",
            "Connection: keep-alive, Upgrade\r\n",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            "Sec-WebSocket-Version: 13\r\n",
        ] {
            let req = full.replace(drop, "");
            assert_eq!(
                check_request(req.as_bytes(), false, &r),
                Err(Refusal::BadRequest),
                "{drop}"
            );
        }
        let no_host = full.replace("Host: localhost:8080\r\n", "");
        assert_eq!(
            check_request(no_host.as_bytes(), false, &r),
            Err(Refusal::MissingHost)
        );
        let post = full.replacen("GET", "POST", 1);
        assert_eq!(
            check_request(post.as_bytes(), false, &r),
            Err(Refusal::MethodNotAllowed)
        );
        assert_eq!(
            check_request(full.as_bytes(), true, &r),
            Err(Refusal::EarlyData)
        );
    }

    #[test]
    fn origin_rules_as_nats_server() {
        let same = rules(true, &[], false);
        assert!(same.allows(None, "localhost:8080"));
        assert!(same.allows(Some("http://LOCALHOST:8080"), "localhost:8080"));
        assert!(!same.allows(Some("http://localhost:8081"), "localhost:8080"));
        assert!(!same.allows(Some("null"), "localhost:8080"));
        assert!(same.allows(Some("http://localhost"), "localhost"));
        let same_tls = rules(true, &[], true);
        assert!(same_tls.allows(Some("https://h"), "h"));
        let list = rules(
            false,
            &["https://a.example", "http://b.example:8000"],
            false,
        );
        assert!(list.allows(Some("https://a.example:443"), "x"));
        assert!(!list.allows(Some("http://a.example"), "x"));
        assert!(list.allows(Some("http://b.example:8000"), "x"));
        assert!(!list.allows(Some("http://b.example"), "x"));
        assert!(!list.allows(Some("http://c.example:8000"), "x"));
        assert!(!list.allows(Some("http://[::1]:80"), "x"));
    }

    #[test]
    fn headers_become_lines_and_reserved_names_refuse_the_start() {
        let h = |pairs: &[(&str, &str)]| {
            header_lines(
                &pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            h(&[("X-A", "1"), ("Strict-Transport-Security", "max-age=1")]).ok(),
            Some("X-A: 1\r\nStrict-Transport-Security: max-age=1\r\n".to_owned())
        );
        assert_eq!(
            h(&[("Content-Length", "1")]).map_err(|e| e.to_string()),
            Err("websocket: invalid header \"Content-Length\" not allowed".to_owned())
        );
        assert_eq!(
            h(&[("sec-websocket-protocol", "x")]).map_err(|e| e.to_string()),
            Err(
                "websocket: invalid header \"sec-websocket-protocol\", \"Sec-WebSocket-\" prefix not allowed"
                    .to_owned()
            )
        );
        assert!(matches!(
            h(&[("X-A", "1\r\nX-B: 2")]),
            Err(WebSocketSetupError::MalformedHeader(_))
        ));
        assert!(matches!(
            h(&[("X A", "1")]),
            Err(WebSocketSetupError::MalformedHeader(_))
        ));
    }

    #[test]
    fn an_allowed_origin_that_is_no_url_refuses_the_start() {
        let mut c = WebSocketConfig::plain("127.0.0.1", 0);
        c.allowed_origins = vec!["not a url".into()];
        assert!(matches!(
            OriginRules::new(&c),
            Err(WebSocketSetupError::AllowedOrigin(_))
        ));
    }
}
