//! `websocket { compression: true }` (permessage-deflate), side by side
//! with nats-server 2.15.1 through a raw client that sees the 101's
//! headers and each frame's RSV1 bit: what the upgrade grants for each
//! offer (and with compression off), which frames the server compresses
//! (above 64 bytes), compressed and plain client frames (also
//! fragmented), 1 MiB of text each way, and the connection closing
//! (without a panic: the server serves the next client) on a corrupt
//! compressed frame, on RSV1 where compression was not negotiated, on a
//! compressed continuation frame, and on a message that inflates beyond
//! `max_payload`. nats.js over compressed WebSocket:
//! `compat_other_clients.rs`. Also the block's other wire options:
//! `headers { }` on the 101 and `ping_interval` for its clients.

use std::io::Write as _;
use std::time::Duration;

use bus_embedded_server::{ServerConfig, ServerHandle, WebSocketConfig, start};
use nats_test_server::{NatsServer, ServerOptions, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound on any single wait for something that must happen.
const WAIT: Duration = Duration::from_secs(10);
/// How long a quiet connection is watched for more frames.
const QUIET: Duration = Duration::from_millis(400);
/// The 101's extension line when compression is granted (nats-server's).
const GRANTED: &str = "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// One server: ours or nats-server, with a WebSocket port.
struct Side {
    name: &'static str,
    ws_port: u16,
    _ours: Option<ServerHandle>,
    _reference: Option<NatsServer>,
}

async fn ours(compression: bool, max_payload: usize) -> Side {
    let mut ws = WebSocketConfig::plain("127.0.0.1", 0);
    ws.compression = compression;
    let handle = start(ServerConfig {
        port: 0,
        websocket: Some(ws),
        max_payload,
        ..ServerConfig::default()
    })
    .await
    .expect("our server starts");
    Side {
        name: "ours",
        ws_port: handle.websocket_addr().expect("websocket bound").port(),
        _ours: Some(handle),
        _reference: None,
    }
}

async fn reference(compression: bool, max_payload: usize) -> Side {
    let port = free_port();
    let mut options = ServerOptions::core();
    options.extra_config = Some(format!(
        "max_payload: {max_payload}\nwebsocket {{ port: {port}, no_tls: true, compression: {compression} }}\n"
    ));
    Side {
        name: "nats-server",
        ws_port: port,
        _ours: None,
        _reference: Some(NatsServer::start_with(options).await),
    }
}

async fn both(compression: bool, max_payload: usize) -> [Side; 2] {
    [
        ours(compression, max_payload).await,
        reference(compression, max_payload).await,
    ]
}

/// A frame as received: FIN, RSV1, opcode, payload (not inflated).
#[derive(Debug)]
struct Frame {
    rsv1: bool,
    opcode: u8,
    payload: Vec<u8>,
}

impl Frame {
    /// The payload, inflated when RSV1 says it is compressed.
    fn data(&self) -> Vec<u8> {
        if self.rsv1 {
            inflate(&self.payload)
        } else {
            self.payload.clone()
        }
    }
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut c = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    c.write_all(data).expect("deflate");
    c.flush().expect("sync flush");
    let mut out = c.get_ref().clone();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]), "sync flush tail");
    out.truncate(out.len() - 4);
    out
}

fn inflate(data: &[u8]) -> Vec<u8> {
    let mut d = flate2::write::DeflateDecoder::new(Vec::new());
    d.write_all(data).expect("inflate");
    d.write_all(&[0, 0, 0xff, 0xff]).expect("inflate tail");
    d.flush().expect("inflate flush");
    d.get_ref().clone()
}

/// A masked client frame.
fn frame(payload: &[u8], opcode: u8, rsv1: bool, fin: bool) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | (u8::from(rsv1) << 6) | opcode];
    let n = payload.len();
    if n < 126 {
        out.push(0x80 | n as u8);
    } else if n < 65536 {
        out.push(0x80 | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    let mask = [0x11, 0x5a, 0xc3, 0x7e];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// A raw WebSocket client after its upgrade.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The 101's `Sec-WebSocket-Extensions` line, if any.
    extensions: Option<String>,
}

impl Raw {
    async fn connect(side: &Side, offer: Option<&str>) -> Raw {
        let mut stream = TcpStream::connect(("127.0.0.1", side.ws_port))
            .await
            .unwrap_or_else(|e| panic!("{}: connect: {e}", side.name));
        let mut req = String::from(
            "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        );
        if let Some(offer) = offer {
            req.push_str(&format!("Sec-WebSocket-Extensions: {offer}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).await.expect("request");
        let mut buf = Vec::new();
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
                .await
                .expect("101 in time")
                .expect("read 101");
            assert!(n > 0, "{}: closed before the 101", side.name);
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        assert!(
            head.starts_with("HTTP/1.1 101 "),
            "{}: not upgraded: {head}",
            side.name
        );
        let extensions = head
            .lines()
            .find(|l| {
                l.to_ascii_lowercase()
                    .starts_with("sec-websocket-extensions:")
            })
            .map(str::to_owned);
        Raw {
            stream,
            buf: buf[end..].to_vec(),
            extensions,
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    async fn fill(&mut self, n: usize, wait: Duration) -> bool {
        while self.buf.len() < n {
            let mut chunk = vec![0u8; 64 * 1024];
            match tokio::time::timeout(wait, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return false,
                Ok(Ok(k)) => self.buf.extend_from_slice(&chunk[..k]),
            }
        }
        true
    }

    /// The next frame, `None` when none came within `wait` or the
    /// connection ended.
    async fn frame(&mut self, wait: Duration) -> Option<Frame> {
        if !self.fill(2, wait).await {
            return None;
        }
        let (b0, b1) = (self.buf[0], self.buf[1]);
        let (mut len, mut at) = (usize::from(b1 & 0x7f), 2);
        if len == 126 {
            self.fill(4, wait).await.then_some(())?;
            len = usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
            at = 4;
        } else if len == 127 {
            self.fill(10, wait).await.then_some(())?;
            let mut b = [0u8; 8];
            b.copy_from_slice(&self.buf[2..10]);
            len = usize::try_from(u64::from_be_bytes(b)).expect("length");
            at = 10;
        }
        self.fill(at + len, wait).await.then_some(())?;
        let payload = self.buf[at..at + len].to_vec();
        self.buf.drain(..at + len);
        Some(Frame {
            rsv1: b0 & 0x40 != 0,
            opcode: b0 & 0x0f,
            payload,
        })
    }

    /// Frames until the connection is quiet for [`QUIET`].
    async fn frames(&mut self) -> Vec<Frame> {
        let mut out = Vec::new();
        while let Some(f) = self.frame(QUIET).await {
            out.push(f);
        }
        out
    }

    /// Data frames until one whose inflated payload contains `what`.
    async fn until(&mut self, what: &[u8], side: &str) -> Vec<Frame> {
        let mut out = Vec::new();
        loop {
            let f = self.frame(WAIT).await.unwrap_or_else(|| {
                panic!("{side}: no frame with {:?}", String::from_utf8_lossy(what))
            });
            let hit = f.data().windows(what.len()).any(|w| w == what);
            out.push(f);
            if hit {
                return out;
            }
        }
    }

    /// True when the server ends the connection (EOF or reset, after any
    /// close frame) within [`WAIT`].
    async fn closed(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
            }
        }
    }
}

/// The protocol ops the frames carry, in order (MSG payloads skipped;
/// INFO left out: nats-server sends a second one after CONNECT).
fn ops(frames: &[Frame]) -> Vec<String> {
    let data: Vec<u8> = frames.iter().flat_map(Frame::data).collect();
    let mut out = Vec::new();
    let mut rest = &data[..];
    while let Some(end) = rest.windows(2).position(|w| w == b"\r\n") {
        let line = String::from_utf8_lossy(&rest[..end]).into_owned();
        rest = &rest[end + 2..];
        let word = line.split(' ').next().unwrap_or_default().to_owned();
        if word == "MSG" {
            let size: usize = line
                .rsplit(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("MSG size");
            rest = &rest[(size + 2).min(rest.len())..];
            out.push(line);
        } else if word != "INFO" {
            out.push(word);
        }
    }
    out
}

/// nats-server's rule: a frame is compressed exactly when what it
/// carries is over 64 bytes.
fn assert_threshold(frames: &[Frame], side: &str) {
    for f in frames.iter().filter(|f| f.opcode == 2) {
        let len = f.data().len();
        assert_eq!(f.rsv1, len > 64, "{side}: {len} bytes, RSV1 {}", f.rsv1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upgrade_grants_permessage_deflate_as_nats_server_does() {
    let offers = [
        None,
        Some("permessage-deflate"),
        Some("permessage-deflate; client_max_window_bits"),
        Some("permessage-deflate; server_max_window_bits=10"),
        Some("x-webkit-deflate-frame"),
        Some("foo, PerMessage-Deflate; client_no_context_takeover"),
    ];
    for compression in [true, false] {
        let sides = both(compression, 1024 * 1024).await;
        let mut seen = Vec::new();
        for side in &sides {
            let mut got = Vec::new();
            for offer in offers {
                got.push(Raw::connect(side, offer).await.extensions);
            }
            seen.push(got);
        }
        assert_eq!(
            seen[0], seen[1],
            "compression {compression}: ours vs nats-server"
        );
        let granted = seen[0]
            .iter()
            .filter(|e| e.as_deref() == Some(GRANTED))
            .count();
        assert_eq!(granted, if compression { 4 } else { 0 }, "{:?}", seen[0]);
        assert!(
            seen[0]
                .iter()
                .all(|e| e.is_none() || e.as_deref() == Some(GRANTED))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_and_plain_frames_flow_as_nats_server_sends_them() {
    let sides = both(true, 1024 * 1024).await;
    let mut all = Vec::new();
    for side in &sides {
        let mut c = Raw::connect(side, Some("permessage-deflate")).await;
        let mut seen = c.until(b"INFO ", side.name).await;
        // A compressed CONNECT + SUB + PING; a small PONG comes back plain.
        c.send(&frame(
            &deflate(b"CONNECT {\"verbose\":false,\"protocol\":1}\r\nSUB a 1\r\nPING\r\n"),
            2,
            true,
            true,
        ))
        .await;
        seen.extend(c.until(b"PONG", side.name).await);
        // A plain PUB: its small MSG + PONG come back plain.
        c.send(&frame(b"PUB a 5\r\nhello\r\nPING\r\n", 2, false, true))
            .await;
        let small = c.until(b"PONG", side.name).await;
        assert!(small.iter().all(|f| !f.rsv1), "{}: {small:?}", side.name);
        seen.extend(small);
        // A compressed PUB of 100 bytes: its MSG (over 64 bytes) comes back
        // compressed.
        let body = format!("PUB a 100\r\n{}\r\nPING\r\n", "x".repeat(100));
        c.send(&frame(&deflate(body.as_bytes()), 2, true, true))
            .await;
        let big = c.until(b"PONG", side.name).await;
        assert!(big.iter().any(|f| f.rsv1), "{}: {big:?}", side.name);
        assert!(
            big.iter()
                .any(|f| f.data().starts_with(b"MSG a 1 100\r\nxxxx")),
            "{}",
            side.name
        );
        seen.extend(big);
        // The same, fragmented: RSV1 on the first frame only.
        let d = deflate(body.as_bytes());
        let mut two = frame(&d[..5], 2, true, false);
        two.extend(frame(&d[5..], 0, false, true));
        c.send(&two).await;
        seen.extend(c.until(b"PONG", side.name).await);
        // A text frame is read like a binary one; a ping is answered.
        c.send(&frame(b"PING\r\n", 1, false, true)).await;
        seen.extend(c.until(b"PONG", side.name).await);
        c.send(&frame(b"hi", 9, false, true)).await;
        let pong = c.frame(WAIT).await.expect("pong frame");
        assert_eq!(
            (pong.opcode, pong.rsv1, pong.payload.as_slice()),
            (10, false, &b"hi"[..])
        );
        seen.extend(c.frames().await);
        assert_threshold(&seen, side.name);
        all.push(ops(&seen));
    }
    // How the servers batch ops into frames is their own; the ops and the
    // compression rule must agree.
    assert_eq!(all[0], all[1], "ours vs nats-server");
    assert_eq!(
        all[0],
        [
            "PONG",
            "MSG a 1 5",
            "PONG",
            "MSG a 1 100",
            "PONG",
            "MSG a 1 100",
            "PONG",
            "PONG"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mib_of_text_round_trips_compressed_both_ways() {
    let text: String = "the quick brown fox jumps over the lazy dog 0123456789\n"
        .repeat(20_000)
        .chars()
        .take(1024 * 1024)
        .collect();
    for side in &both(true, 4 * 1024 * 1024).await {
        let mut c = Raw::connect(side, Some("permessage-deflate")).await;
        c.until(b"INFO ", side.name).await;
        c.send(&frame(
            &deflate(b"CONNECT {\"verbose\":false,\"protocol\":1}\r\nSUB big 1\r\nPING\r\n"),
            2,
            true,
            true,
        ))
        .await;
        c.until(b"PONG", side.name).await;
        let pub_op = format!("PUB big {}\r\n{text}\r\nPING\r\n", text.len());
        let compressed = deflate(pub_op.as_bytes());
        assert!(compressed.len() < text.len() / 20, "{}", compressed.len());
        c.send(&frame(&compressed, 2, true, true)).await;
        let frames = c.until(b"PONG", side.name).await;
        let wire: usize = frames.iter().map(|f| f.payload.len()).sum();
        let data: Vec<u8> = frames.iter().flat_map(Frame::data).collect();
        let expected = format!("MSG big 1 {}\r\n{text}\r\n", text.len());
        assert!(
            data.starts_with(expected.as_bytes()),
            "{}: {} bytes back",
            side.name,
            data.len()
        );
        assert!(frames.iter().any(|f| f.rsv1), "{}", side.name);
        assert!(
            wire < text.len() / 10,
            "{}: {wire} bytes on the wire",
            side.name
        );
    }
}

/// Connects with compression and logs in; `None` offer = not negotiated.
async fn logged_in(side: &Side, offer: Option<&str>) -> Raw {
    let mut c = Raw::connect(side, offer).await;
    c.until(b"INFO ", side.name).await;
    c.send(&frame(
        b"CONNECT {\"verbose\":false}\r\nPING\r\n",
        2,
        false,
        true,
    ))
    .await;
    c.until(b"PONG", side.name).await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_compressed_frames_close_the_connection_as_nats_server() {
    let compressed_connect = deflate(b"CONNECT {\"verbose\":false}\r\nPING\r\n");
    let bomb = format!("PUB a 20000\r\n{}\r\n", "z".repeat(20_000));
    let cases: Vec<(&str, Option<&str>, Vec<u8>)> = vec![
        (
            "corrupt deflate data",
            Some("permessage-deflate"),
            frame(b"\xff\xff\xff\xff\xff garbage", 2, true, true),
        ),
        (
            "RSV1 without negotiation",
            None,
            frame(&compressed_connect, 2, true, true),
        ),
        ("compressed continuation", Some("permessage-deflate"), {
            let mut f = frame(&compressed_connect[..3], 2, true, false);
            f.extend(frame(&compressed_connect[3..], 0, true, true));
            f
        }),
        (
            "inflates beyond max_payload",
            Some("permessage-deflate"),
            frame(&deflate(bomb.as_bytes()), 2, true, true),
        ),
    ];
    for side in &both(true, 10_000).await {
        for (what, offer, bytes) in &cases {
            let mut c = logged_in(side, *offer).await;
            c.send(bytes).await;
            assert!(c.closed().await, "{}: {what}: still open", side.name);
        }
        // Still serving.
        let mut c = logged_in(side, Some("permessage-deflate")).await;
        c.send(&frame(b"PING\r\n", 2, false, true)).await;
        c.until(b"PONG", side.name).await;
    }
}

// ---------------------------------------------------------------------------
// The block's other wire options: `headers { }` and `ping_interval`.
// ---------------------------------------------------------------------------

async fn with_block(extra: &str, ours_ws: WebSocketConfig) -> [Side; 2] {
    let handle = start(ServerConfig {
        port: 0,
        websocket: Some(ours_ws),
        ..ServerConfig::default()
    })
    .await
    .expect("our server starts");
    let ours = Side {
        name: "ours",
        ws_port: handle.websocket_addr().expect("websocket bound").port(),
        _ours: Some(handle),
        _reference: None,
    };
    let port = free_port();
    let mut options = ServerOptions::core();
    options.extra_config = Some(format!(
        "websocket {{ port: {port}, no_tls: true, {extra} }}\n"
    ));
    let reference = Side {
        name: "nats-server",
        ws_port: port,
        _ours: None,
        _reference: Some(NatsServer::start_with(options).await),
    };
    [ours, reference]
}

/// The 101's header lines after `Sec-WebSocket-Accept`.
async fn upgrade_headers(side: &Side, offer: Option<&str>) -> Vec<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", side.ws_port))
        .await
        .expect("connect");
    let mut req = String::from(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
    );
    if let Some(offer) = offer {
        req.push_str(&format!("Sec-WebSocket-Extensions: {offer}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.expect("request");
    let mut buf = Vec::new();
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .expect("101 in time")
            .expect("read");
        assert!(n > 0, "{}: closed", side.name);
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    head.lines()
        .skip_while(|l| !l.starts_with("Sec-WebSocket-Accept"))
        .skip(1)
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_headers_follow_the_upgrade_response_as_nats_server() {
    let mut ws = WebSocketConfig::plain("127.0.0.1", 0);
    ws.compression = true;
    ws.headers = vec![("X-Frame-Options".into(), "DENY".into())];
    let sides = with_block("compression: true, headers { X-Frame-Options: DENY }", ws).await;
    let mut seen = Vec::new();
    for side in &sides {
        seen.push((
            upgrade_headers(side, None).await,
            upgrade_headers(side, Some("permessage-deflate")).await,
        ));
    }
    assert_eq!(seen[0], seen[1], "ours vs nats-server");
    assert_eq!(seen[0].0, vec!["X-Frame-Options: DENY".to_owned()]);
    assert_eq!(
        seen[0].1,
        vec![GRANTED.to_owned(), "X-Frame-Options: DENY".to_owned()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_interval_of_the_block_sets_the_websocket_clients_pings() {
    let mut ws = WebSocketConfig::plain("127.0.0.1", 0);
    ws.ping_interval = Some(Duration::from_millis(300));
    for side in &with_block("ping_interval: \"300ms\"", ws).await {
        let mut c = logged_in(side, None).await;
        // The first PING comes at once (round-trip measurement) and is
        // answered; then, with the client idle, at most 300 ms apart,
        // where the server's default interval is two minutes.
        let started = tokio::time::Instant::now();
        let mut pings = 0;
        while pings < 3 {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{}: {pings} PINGs in 5 s",
                side.name
            );
            let f = c
                .frame(WAIT)
                .await
                .unwrap_or_else(|| panic!("{}: closed", side.name));
            if f.data().windows(6).any(|w| w == b"PING\r\n") {
                pings += 1;
                c.send(&frame(b"PONG\r\n", 2, false, true)).await;
            }
        }
    }
}
