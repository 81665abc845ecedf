//! The WebSocket listener (`websocket {}`), checked side by side with
//! nats-server 2.15.1: async-nats over `ws://` and `wss://` (pub/sub,
//! request/reply across WebSocket and TCP, a JetStream publish and pull
//! consume), text frames, INFO as seen over WebSocket, authentication like
//! TCP clients, the upgrade's refusals byte for byte (bad origin, missing
//! headers, wrong method), and the handshake timeout.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, stream};
use bus_embedded_server::{Auth, ServerConfig, ServerHandle, TlsConfig, WebSocketConfig, start};
use futures::{SinkExt, StreamExt};
use nats_test_server::tls::TestPki;
use nats_test_server::{NatsServer, ServerOptions, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound on any single wait for something that must happen.
const WAIT: Duration = Duration::from_secs(10);

/// One server of a side-by-side pair.
struct Side {
    /// `ours` or `nats-server`, for messages.
    name: &'static str,
    /// TCP client URL.
    nats_url: String,
    /// WebSocket URL.
    ws_url: String,
    /// WebSocket port.
    ws_port: u16,
    _ours: Option<ServerHandle>,
    _reference: Option<NatsServer>,
    _dir: Option<tempfile::TempDir>,
}

/// What both servers' `websocket {}` blocks say.
#[derive(Clone, Default)]
struct Ws {
    same_origin: bool,
    allowed_origins: Vec<String>,
    handshake_timeout: Option<Duration>,
    /// `wss://` with these certificates.
    tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// With `tls`: client certificates required, signed by this CA.
    verify: Option<std::path::PathBuf>,
    jetstream: bool,
    token: Option<String>,
}

impl Ws {
    fn block(&self, port: u16) -> String {
        let mut b = format!("websocket {{\n  port: {port}\n");
        match &self.tls {
            Some((cert, key)) => {
                b.push_str(&format!(
                    "  tls {{ cert_file: {:?}, key_file: {:?}",
                    cert.display().to_string(),
                    key.display().to_string()
                ));
                if let Some(ca) = &self.verify {
                    b.push_str(&format!(
                        ", ca_file: {:?}, verify: true",
                        ca.display().to_string()
                    ));
                }
                b.push_str(" }\n");
            }
            None => b.push_str("  no_tls: true\n"),
        }
        if self.same_origin {
            b.push_str("  same_origin: true\n");
        }
        if !self.allowed_origins.is_empty() {
            b.push_str(&format!("  allowed_origins: {:?}\n", self.allowed_origins));
        }
        if let Some(t) = self.handshake_timeout {
            b.push_str(&format!("  handshake_timeout: \"{}ms\"\n", t.as_millis()));
        }
        b.push_str("}\n");
        b
    }

    async fn ours(&self) -> Side {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut ws = WebSocketConfig::plain("127.0.0.1", 0);
        ws.same_origin = self.same_origin;
        ws.allowed_origins.clone_from(&self.allowed_origins);
        ws.handshake_timeout = self.handshake_timeout;
        ws.tls = self.tls.as_ref().map(|(cert, key)| {
            let mut t = TlsConfig::new(cert, key);
            if let Some(ca) = &self.verify {
                t.ca_file = Some(ca.clone());
                t.verify = true;
            }
            t
        });
        let handle = start(ServerConfig {
            port: 0,
            websocket: Some(ws),
            auth: self.token.clone().map(Auth::Token),
            jetstream: self
                .jetstream
                .then(|| bus_embedded_server::JetStreamConfig {
                    store_dir: dir.path().to_path_buf(),
                    ..Default::default()
                }),
            ..ServerConfig::default()
        })
        .await
        .expect("our server starts with a websocket listener");
        let ws_port = handle.websocket_addr().expect("websocket bound").port();
        Side {
            name: "ours",
            nats_url: handle.client_url(),
            ws_url: handle.websocket_url().expect("websocket url"),
            ws_port,
            _ours: Some(handle),
            _reference: None,
            _dir: Some(dir),
        }
    }

    async fn reference(&self) -> Side {
        let port = free_port();
        let mut options = if self.jetstream {
            ServerOptions::default()
        } else {
            ServerOptions::core()
        };
        if let Some(t) = &self.token {
            options = options.with_token(t);
        }
        options.extra_config = Some(self.block(port));
        let server = NatsServer::start_with(options).await;
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        Side {
            name: "nats-server",
            nats_url: server.url(),
            ws_url: format!("{scheme}://127.0.0.1:{port}"),
            ws_port: port,
            _ours: None,
            _reference: Some(server),
            _dir: None,
        }
    }

    /// Ours, then nats-server.
    async fn both(&self) -> [Side; 2] {
        [self.ours().await, self.reference().await]
    }
}

async fn ws_client(side: &Side) -> async_nats::Client {
    tokio::time::timeout(WAIT, async_nats::connect(&side.ws_url))
        .await
        .unwrap_or_else(|_| panic!("{}: websocket connect timed out", side.name))
        .unwrap_or_else(|e| panic!("{}: websocket connect: {e}", side.name))
}

// ---------------------------------------------------------------------------
// async-nats over ws://
// ---------------------------------------------------------------------------

const WARM_UP: &[u8] = b"warm-up";

/// nats-server 2.15.1 now and then does not deliver what a TCP client
/// publishes to an async-nats WebSocket subscriber whose SUB a PING/PONG
/// already confirmed (9 fresh pairs in 40 in a probe, with no disconnect;
/// ours: 0 in 40). On the reference side only, `publisher` sends warm-up
/// messages until one reaches `sub` (the scenario skips them after).
async fn reference_warm_up(
    publisher: &async_nats::Client,
    sub: &mut async_nats::Subscriber,
    subject: &'static str,
) {
    for _ in 0..20 {
        publisher
            .publish(subject, WARM_UP.into())
            .await
            .expect("warm-up publish");
        publisher.flush().await.expect("warm-up flush");
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(250), sub.next()).await {
            return;
        }
    }
    panic!("nats-server: no warm-up message reached the WebSocket subscriber");
}

async fn pub_sub_and_request_reply(side: &Side) {
    let ws = ws_client(side).await;
    let tcp = async_nats::connect(&side.nats_url)
        .await
        .unwrap_or_else(|e| panic!("{}: tcp connect: {e}", side.name));
    // WebSocket subscriber, TCP publisher, and the reverse: one account.
    let mut ws_sub = ws.subscribe("ws.events").await.expect("ws subscribe");
    let mut tcp_sub = tcp.subscribe("ws.events").await.expect("tcp subscribe");
    ws.flush().await.expect("ws flush");
    tcp.flush().await.expect("tcp flush");
    if side.name != "ours" {
        reference_warm_up(&tcp, &mut ws_sub, "ws.events").await;
    }
    tcp.publish("ws.events", "from tcp".into())
        .await
        .expect("tcp publish");
    ws.publish("ws.events", "from ws".into())
        .await
        .expect("ws publish");
    ws.flush().await.expect("ws flush");
    tcp.flush().await.expect("tcp flush");
    for sub in [&mut ws_sub, &mut tcp_sub] {
        let mut got = Vec::new();
        while got.len() < 2 {
            let m = tokio::time::timeout(WAIT, sub.next())
                .await
                .unwrap_or_else(|_| panic!("{}: message timed out", side.name))
                .expect("subscription open");
            if m.payload.as_ref() != WARM_UP {
                got.push(String::from_utf8_lossy(&m.payload).into_owned());
            }
        }
        got.sort();
        assert_eq!(got, ["from tcp", "from ws"], "{}", side.name);
    }
    // A large payload crosses several frames' worth of bytes intact.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    ws.publish("ws.events", big.clone().into())
        .await
        .expect("big publish");
    let m = tokio::time::timeout(WAIT, tcp_sub.next())
        .await
        .expect("big message in time")
        .expect("open");
    assert_eq!(m.payload.as_ref(), big.as_slice(), "{}", side.name);

    // Request over WebSocket, responder on TCP.
    let mut service = tcp.subscribe("ws.svc").await.expect("service sub");
    tcp.flush().await.expect("flush");
    let responder = {
        let tcp = tcp.clone();
        tokio::spawn(async move {
            if let Some(req) = service.next().await {
                if let Some(reply) = req.reply {
                    let mut answer = b"re: ".to_vec();
                    answer.extend_from_slice(&req.payload);
                    let _ = tcp.publish(reply, answer.into()).await;
                    let _ = tcp.flush().await;
                }
            }
        })
    };
    // nats-server 2.15.1 now and then answers "no responders" to the first
    // request from a WebSocket client for a TCP client's subscription that
    // a PING/PONG already confirmed (a few runs in twenty); it gets more
    // tries, ours must answer the first.
    let tries = if side.name == "ours" { 1 } else { 5 };
    let mut attempt = 0;
    let answer = loop {
        attempt += 1;
        let result = tokio::time::timeout(WAIT, ws.request("ws.svc", "hello".into()))
            .await
            .expect("request in time");
        match result {
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders && attempt < tries => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => break other.unwrap_or_else(|e| panic!("{}: request: {e}", side.name)),
        }
    };
    assert_eq!(answer.payload.as_ref(), b"re: hello", "{}", side.name);
    responder.await.expect("responder");
    // No responders over WebSocket too.
    let err = ws
        .request("ws.nobody", "x".into())
        .await
        .expect_err("no responders");
    assert_eq!(
        err.kind(),
        async_nats::RequestErrorKind::NoResponders,
        "{}",
        side.name
    );
}

#[tokio::test]
async fn pub_sub_and_request_reply_over_websocket_as_nats_server() {
    for side in Ws::default().both().await {
        pub_sub_and_request_reply(&side).await;
    }
}

async fn jetstream_publish_and_pull(side: &Side) {
    let ws = ws_client(side).await;
    let js = jetstream::new(ws);
    js.create_stream(stream::Config {
        name: "WSORDERS".into(),
        subjects: vec!["wsorders.>".into()],
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("{}: create stream: {e}", side.name));
    for i in 1..=5u64 {
        let ack = js
            .publish("wsorders.new", format!("order {i}").into())
            .await
            .expect("publish")
            .await
            .unwrap_or_else(|e| panic!("{}: puback: {e}", side.name));
        assert_eq!(ack.sequence, i, "{}", side.name);
        assert_eq!(ack.stream, "WSORDERS");
    }
    let consumer = js
        .create_consumer_on_stream(
            pull::Config {
                durable_name: Some("worker".into()),
                ..Default::default()
            },
            "WSORDERS",
        )
        .await
        .unwrap_or_else(|e| panic!("{}: create consumer: {e}", side.name));
    let mut batch = consumer
        .fetch()
        .max_messages(5)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .expect("fetch");
    let mut got = Vec::new();
    while let Some(m) = tokio::time::timeout(WAIT, batch.next())
        .await
        .expect("fetch in time")
    {
        let m = m.expect("message");
        got.push(String::from_utf8_lossy(&m.payload).into_owned());
        m.double_ack().await.expect("ack");
    }
    assert_eq!(
        got,
        (1..=5).map(|i| format!("order {i}")).collect::<Vec<_>>(),
        "{}",
        side.name
    );
    let mut consumer = js
        .get_consumer_from_stream::<pull::Config, _, _>("worker", "WSORDERS")
        .await
        .expect("consumer");
    let info = consumer.info().await.expect("consumer info");
    assert_eq!(info.num_ack_pending, 0, "{}", side.name);
    assert_eq!(info.delivered.stream_sequence, 5, "{}", side.name);
}

#[tokio::test]
async fn jetstream_publish_and_pull_consume_over_websocket_as_nats_server() {
    let ws = Ws {
        jetstream: true,
        ..Ws::default()
    };
    for side in ws.both().await {
        jetstream_publish_and_pull(&side).await;
    }
}

// ---------------------------------------------------------------------------
// Raw WebSocket: text frames, INFO, close
// ---------------------------------------------------------------------------

type RawWs = tokio_websockets::WebSocketStream<tokio_websockets::MaybeTlsStream<TcpStream>>;

async fn raw_ws(side: &Side) -> RawWs {
    let uri = format!("ws://127.0.0.1:{}/", side.ws_port);
    let (ws, _) = tokio_websockets::ClientBuilder::new()
        .uri(&uri)
        .expect("uri")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{}: raw websocket: {e}", side.name));
    ws
}

/// Reads message payloads until `want` appears in what arrived (or the
/// connection ends, or WAIT passes); returns all text received.
async fn read_until(ws: &mut RawWs, want: &str) -> String {
    read_until_within(ws, want, WAIT).await
}

/// [`read_until`] bounded by `limit`.
async fn read_until_within(ws: &mut RawWs, want: &str, limit: Duration) -> String {
    let mut text = String::new();
    let deadline = Instant::now() + limit;
    while !text.contains(want) && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), ws.next()).await {
            Ok(Some(Ok(m))) if m.is_binary() || m.is_text() => {
                text.push_str(&String::from_utf8_lossy(m.as_payload()));
            }
            Ok(Some(Ok(m))) if m.is_close() => {
                let (code, reason) = m
                    .as_close()
                    .unwrap_or((tokio_websockets::CloseCode::NO_STATUS_RECEIVED, ""));
                text.push_str(&format!("<close {} {reason}>", u16::from(code)));
                break;
            }
            Ok(Some(Ok(_))) | Err(_) => {}
            Ok(Some(Err(_)) | None) => break,
        }
    }
    text
}

fn info_of(text: &str) -> serde_json::Value {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("INFO "))
        .unwrap_or_else(|| panic!("no INFO in {text:?}"));
    serde_json::from_str(line.trim()).expect("INFO is JSON")
}

#[tokio::test]
async fn text_frames_carry_the_protocol_and_info_names_the_websocket_listener() {
    for side in Ws::default().both().await {
        let mut ws = raw_ws(&side).await;
        let first = read_until(&mut ws, "\r\n").await;
        let info = info_of(&first);
        assert_eq!(info["port"], side.ws_port, "{}: {info}", side.name);
        assert!(info.get("tls_required").is_none(), "{}: {info}", side.name);
        // The protocol in a text frame, then a binary one.
        ws.send(tokio_websockets::Message::text(
            "CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB t 1\r\n",
        ))
        .await
        .expect("send text");
        ws.send(tokio_websockets::Message::binary(
            &b"PUB t 2\r\nhi\r\nPING\r\n"[..],
        ))
        .await
        .expect("send binary");
        let got = read_until(&mut ws, "PONG\r\n").await;
        assert!(
            got.contains("MSG t 1 2\r\nhi\r\n"),
            "{}: {got:?}",
            side.name
        );
        assert!(got.ends_with("PONG\r\n"), "{}: {got:?}", side.name);
        // A protocol error closes with -ERR and a close frame.
        ws.send(tokio_websockets::Message::binary(&b"BOGUS\r\n"[..]))
            .await
            .expect("send");
        let got = read_until(&mut ws, "<close").await;
        if side.name == "ours" {
            assert!(
                got.contains("-ERR 'Unknown Protocol Operation'"),
                "{}: {got:?}",
                side.name
            );
            // nats-server 2.15.1 drops the TCP connection without a close
            // frame here (often resetting it before the -ERR is read); we
            // end the WebSocket properly, with its "protocol error" status.
            assert!(got.contains("<close 1002 Protocol Violation>"), "{got:?}");
        }
        // Either way the connection is over.
        assert!(
            matches!(
                tokio::time::timeout(WAIT, ws.next()).await,
                Ok(None | Some(Err(_)))
            ),
            "{}: still open after a protocol error",
            side.name
        );
    }
}

#[tokio::test]
async fn websocket_clients_authenticate_like_tcp_clients() {
    let ws = Ws {
        token: Some("s3cret".into()),
        ..Ws::default()
    };
    for side in ws.both().await {
        let mut raw = raw_ws(&side).await;
        let info = info_of(&read_until(&mut raw, "\r\n").await);
        assert_eq!(info["auth_required"], true, "{}: {info}", side.name);
        raw.send(tokio_websockets::Message::binary(
            &b"CONNECT {\"verbose\":false,\"auth_token\":\"wrong\"}\r\nPING\r\n"[..],
        ))
        .await
        .expect("send");
        let got = read_until(&mut raw, "<close").await;
        assert!(
            got.contains("-ERR 'Authorization Violation'"),
            "{}: {got:?}",
            side.name
        );
        assert!(got.contains("<close 1008"), "{}: {got:?}", side.name);
        let client = async_nats::ConnectOptions::with_token("s3cret".into())
            .connect(&side.ws_url)
            .await
            .unwrap_or_else(|e| panic!("{}: token over ws: {e}", side.name));
        client.flush().await.expect("flush");
    }
}

// ---------------------------------------------------------------------------
// The upgrade's refusals, byte for byte
// ---------------------------------------------------------------------------

const GOOD: &str = "GET / HTTP/1.1\r\nHost: 127.0.0.1:PORT\r\nUpgrade: websocket\r\n\
                    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                    Sec-WebSocket-Version: 13\r\n";

/// Sends `request` and reads what comes back until the server closes or
/// stops talking for 300 ms; the `Date:` header is dropped.
async fn exchange(port: u16, request: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(request.as_bytes()).await.expect("send");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out)
        .split("\r\n")
        .filter(|l| !l.starts_with("Date: "))
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// The response to each named request, from both servers, must be the same
/// (the request's `PORT` replaced by the server's WebSocket port).
async fn same_answers(ws: Ws, cases: &[(&str, String)]) {
    let [ours, reference] = ws.both().await;
    for (name, request) in cases {
        let a = exchange(
            ours.ws_port,
            &request.replace("PORT", &ours.ws_port.to_string()),
        )
        .await;
        let b = exchange(
            reference.ws_port,
            &request.replace("PORT", &reference.ws_port.to_string()),
        )
        .await;
        // An accepted upgrade is compared up to the end of the 101 (INFO
        // follows, with each server's own identity).
        let head = |r: &str| {
            r.split_once("\r\n\r\n")
                .map_or(r.to_owned(), |(h, _)| h.to_owned())
        };
        if a.starts_with("HTTP/1.1 101") {
            assert_eq!(head(&a), head(&b), "{name}: ours vs nats-server");
        } else {
            assert_eq!(a, b, "{name}: ours vs nats-server");
        }
        assert!(
            !name.starts_with("accepted") || a.starts_with("HTTP/1.1 101"),
            "{name}: {a}"
        );
    }
}

#[tokio::test]
async fn upgrade_refusals_match_nats_server_for_missing_headers_and_wrong_method() {
    let good = format!("{GOOD}\r\n");
    let cases = [
        ("wrong method", good.replacen("GET", "POST", 1)),
        (
            "missing Sec-WebSocket-Key",
            good.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
        ),
        (
            "missing Upgrade",
            good.replace("Upgrade: websocket\r\n", ""),
        ),
        (
            "Upgrade not websocket",
            good.replace("Upgrade: websocket", "Upgrade: h2c"),
        ),
        (
            "missing Connection",
            good.replace("Connection: Upgrade\r\n", ""),
        ),
        (
            "wrong version",
            good.replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
        ),
        ("missing Host", good.replace("Host: 127.0.0.1:PORT\r\n", "")),
        ("empty Host", good.replace("Host: 127.0.0.1:PORT", "Host: ")),
        (
            "HTTP/1.0 without Host",
            good.replace("Host: 127.0.0.1:PORT\r\n", "")
                .replace("HTTP/1.1", "HTTP/1.0"),
        ),
        ("not HTTP", "HELLO\r\n\r\n".to_owned()),
        (
            "accepted: asks for permessage-deflate, gets no extension",
            good.replace(
                "\r\n\r\n",
                "\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
            ),
        ),
        (
            "accepted: tokens in any case and order",
            good.replace("Upgrade: websocket", "Upgrade: WebSocket")
                .replace("Connection: Upgrade", "Connection: keep-alive, upgrade"),
        ),
        ("data before the upgrade answer", format!("{good}PING\r\n")),
    ];
    same_answers(Ws::default(), &cases).await;
}

#[tokio::test]
async fn upgrade_refusals_match_nats_server_for_origins() {
    let with_origin = |o: &str| format!("{GOOD}Origin: {o}\r\n\r\n");
    let same = [
        (
            "accepted: same origin",
            with_origin("http://127.0.0.1:PORT"),
        ),
        ("accepted: no origin", format!("{GOOD}\r\n")),
        ("other port", with_origin("http://127.0.0.1:1")),
        ("other host", with_origin("http://evil.example:PORT")),
        ("not a URL", with_origin("null")),
    ];
    same_answers(
        Ws {
            same_origin: true,
            ..Ws::default()
        },
        &same,
    )
    .await;
    let listed = [
        ("accepted: listed", with_origin("https://app.example")),
        (
            "accepted: listed with port",
            with_origin("http://other.example:8080"),
        ),
        ("unlisted host", with_origin("https://evil.example")),
        (
            "listed host, other scheme",
            with_origin("http://app.example"),
        ),
        (
            "listed host, other port",
            with_origin("http://other.example:8081"),
        ),
    ];
    same_answers(
        Ws {
            allowed_origins: vec![
                "https://app.example".into(),
                "http://other.example:8080".into(),
            ],
            ..Ws::default()
        },
        &listed,
    )
    .await;
}

// ---------------------------------------------------------------------------
// Handshake timeout
// ---------------------------------------------------------------------------

#[tokio::test]
async fn handshake_timeout_closes_a_silent_or_slow_upgrade_as_nats_server() {
    let ws = Ws {
        handshake_timeout: Some(Duration::from_millis(500)),
        ..Ws::default()
    };
    for side in ws.both().await {
        for partial in ["", "GET / HTTP/1.1\r\nHost: x\r\n"] {
            let mut s = TcpStream::connect(("127.0.0.1", side.ws_port))
                .await
                .expect("connect");
            s.write_all(partial.as_bytes()).await.expect("send");
            let begun = Instant::now();
            let mut buf = [0u8; 1024];
            let mut got = Vec::new();
            let closed = tokio::time::timeout(Duration::from_secs(5), async {
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
            })
            .await;
            assert!(closed.is_ok(), "{}: not closed after 5 s", side.name);
            let took = begun.elapsed();
            assert!(
                took >= Duration::from_millis(400) && took < Duration::from_secs(3),
                "{}: closed after {took:?}",
                side.name
            );
            assert_eq!(
                String::from_utf8_lossy(&got),
                "",
                "{}: nothing is said before closing",
                side.name
            );
        }
        // A complete upgrade within the timeout still works afterwards.
        let client = ws_client(&side).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        client
            .flush()
            .await
            .expect("an upgraded connection outlives the timeout");
    }
}

// ---------------------------------------------------------------------------
// wss://
// ---------------------------------------------------------------------------

#[tokio::test]
async fn wss_pub_sub_with_a_test_certificate_as_nats_server() {
    let pki = TestPki::generate();
    let ws = Ws {
        tls: Some((pki.server_cert(), pki.server_key())),
        ..Ws::default()
    };
    for side in ws.both().await {
        assert!(side.ws_url.starts_with("wss://"), "{}", side.ws_url);
        let client = async_nats::ConnectOptions::new()
            .add_root_certificates(pki.ca_file())
            .connect(&side.ws_url)
            .await
            .unwrap_or_else(|e| panic!("{}: wss connect: {e}", side.name));
        let mut sub = client.subscribe("secure").await.expect("sub");
        client
            .publish("secure", "sealed".into())
            .await
            .expect("pub");
        let m = tokio::time::timeout(WAIT, sub.next())
            .await
            .expect("in time")
            .expect("open");
        assert_eq!(m.payload.as_ref(), b"sealed", "{}", side.name);
        // Plain ws:// to a wss listener gets nowhere.
        let plain = format!("ws://127.0.0.1:{}", side.ws_port);
        let refused = tokio::time::timeout(
            WAIT,
            async_nats::ConnectOptions::new()
                .retry_on_initial_connect()
                .max_reconnects(Some(1))
                .connect(&plain),
        )
        .await;
        assert!(
            !matches!(refused, Ok(Ok(ref c)) if c.flush().await.is_ok()),
            "{}: plain ws to a wss listener must fail",
            side.name
        );
    }
}

#[tokio::test]
async fn wss_info_says_tls_required_on_both() {
    let pki = TestPki::generate();
    let ws = Ws {
        tls: Some((pki.server_cert(), pki.server_key())),
        ..Ws::default()
    };
    for side in ws.both().await {
        let roots = rustls_roots(&pki);
        let connector = tokio_websockets::Connector::Rustls(tokio_rustls::TlsConnector::from(
            std::sync::Arc::new(
                rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .expect("protocols")
                .with_root_certificates(roots)
                .with_no_client_auth(),
            ),
        ));
        let uri = format!("wss://localhost:{}/", side.ws_port);
        let (mut ws, _) = tokio_websockets::ClientBuilder::new()
            .connector(&connector)
            .uri(&uri)
            .expect("uri")
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{}: wss: {e}", side.name));
        let info = info_of(&read_until(&mut ws, "\r\n").await);
        assert_eq!(info["tls_required"], true, "{}: {info}", side.name);
        assert_eq!(info["port"], side.ws_port, "{}: {info}", side.name);
    }
}

fn rustls_roots(pki: &TestPki) -> rustls::RootCertStore {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(pki.ca_file()).expect("ca file") {
        roots.add(cert.expect("ca cert")).expect("add ca");
    }
    roots
}

// ---------------------------------------------------------------------------
// Life cycle
// ---------------------------------------------------------------------------

#[tokio::test]
async fn shutdown_closes_websocket_clients_with_going_away() {
    let side = Ws::default().ours().await;
    let mut raw = raw_ws(&side).await;
    let _ = read_until(&mut raw, "\r\n").await;
    let handle = side._ours.expect("ours");
    let begun = Instant::now();
    handle.shutdown(Duration::from_secs(5)).await;
    assert!(
        begun.elapsed() < Duration::from_secs(4),
        "shutdown waited on the websocket client"
    );
    let got = read_until(&mut raw, "<close").await;
    assert!(got.contains("<close 1001 Server Shutdown>"), "{got:?}");
}

// ---------------------------------------------------------------------------
// Accounts and permissions, from the same configuration text
// ---------------------------------------------------------------------------

const ACCOUNTS: &str = r#"
accounts {
  A: { users: [ { user: a, password: a, permissions: { publish: { deny: "secret.>" } } } ] }
  B: { users: [ { user: b, password: b } ] }
}
"#;

/// Ours started from `text` (plus a WebSocket block on a free port) through
/// the binary's own option reading.
async fn ours_from_config(text: &str) -> (ServerHandle, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("server.conf");
    let conf = format!("port: -1\n{text}\nwebsocket {{ port: -1, no_tls: true }}\n");
    std::fs::write(&path, conf).expect("write config");
    let cli = bus_embedded_server::cli::parse_args(["-c".to_owned(), path.display().to_string()])
        .expect("flags");
    let options = bus_embedded_server::options::from_cli(&cli, ServerConfig::default())
        .expect("configuration accepted");
    let handle = start(options.config).await.expect("our server starts");
    (handle, dir)
}

async fn accounts_and_permissions(name: &str, ws_url: &str, nats_url: &str) {
    let login =
        |user: &str| async_nats::ConnectOptions::with_user_and_password(user.into(), user.into());
    // The subscriber is a raw WebSocket client logged in as `a` (async-nats
    // over WebSocket against nats-server 2.15.1 now and then misses this
    // delivery; a raw client never does, on either server).
    let port = ws_url.rsplit(':').next().unwrap_or_default();
    let uri = format!("ws://127.0.0.1:{port}/");
    let (mut raw, _) = tokio_websockets::ClientBuilder::new()
        .uri(&uri)
        .expect("uri")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{name}: raw ws: {e}"));
    let _ = read_until(&mut raw, "\r\n").await;
    raw.send(tokio_websockets::Message::binary(
        &b"CONNECT {\"verbose\":false,\"user\":\"a\",\"pass\":\"a\"}\r\nSUB shared 1\r\nPING\r\n"[..],
    ))
    .await
    .expect("send");
    let got = read_until(&mut raw, "PONG\r\n").await;
    assert!(got.ends_with("PONG\r\n"), "{name}: {got:?}");
    let ws_b = login("b")
        .connect(ws_url)
        .await
        .unwrap_or_else(|e| panic!("{name}: ws b: {e}"));
    let ws_a = login("a").connect(ws_url).await.expect("ws a");
    let tcp_a = login("a").connect(nats_url).await.expect("tcp a");
    // Another account's publish does not cross over; the same account's do,
    // whichever listener they came through.
    ws_b.publish("shared", "from B".into())
        .await
        .expect("pub b");
    ws_b.flush().await.expect("flush b");
    ws_a.publish("shared", "from ws A".into())
        .await
        .expect("pub ws a");
    ws_a.flush().await.expect("flush ws a");
    let mut got = read_until(&mut raw, "from ws A\r\n").await;
    assert!(
        got.contains("MSG shared 1 9\r\nfrom ws A\r\n"),
        "{name}: {got:?}"
    );
    // nats-server 2.15.1 now and then drops the first publish of a
    // just-connected TCP client of account A here (about one run in four);
    // it gets further tries, ours must deliver the first.
    let tries = if name == "ours" { 1 } else { 5 };
    for _ in 0..tries {
        tcp_a
            .publish("shared", "from tcp A".into())
            .await
            .expect("pub a");
        tcp_a.flush().await.expect("flush a");
        got.push_str(&read_until_within(&mut raw, "from tcp A\r\n", Duration::from_secs(1)).await);
        if got.contains("from tcp A") {
            break;
        }
    }
    assert!(
        got.contains("MSG shared 1 10\r\nfrom tcp A\r\n"),
        "{name}: {got:?}"
    );
    assert!(
        !got.contains("from B"),
        "{name}: account B's message reached account A: {got:?}"
    );
    // A denied publish over WebSocket gets the permissions error, as over TCP.
    raw.send(tokio_websockets::Message::binary(
        &b"PUB secret.x 1\r\nx\r\nPING\r\n"[..],
    ))
    .await
    .expect("send");
    let got = read_until(&mut raw, "PONG\r\n").await;
    assert!(
        got.contains("-ERR 'Permissions Violation for Publish to \"secret.x\"'"),
        "{name}: {got:?}"
    );
}

#[tokio::test]
async fn accounts_and_permissions_apply_to_websocket_clients_as_nats_server() {
    let (ours, _dir) = ours_from_config(ACCOUNTS).await;
    accounts_and_permissions(
        "ours",
        &ours.websocket_url().expect("ws url"),
        &ours.client_url(),
    )
    .await;
    let port = free_port();
    let reference = NatsServer::start_with(ServerOptions {
        extra_config: Some(format!(
            "{ACCOUNTS}\nwebsocket {{ port: {port}, no_tls: true }}\n"
        )),
        ..ServerOptions::core()
    })
    .await;
    accounts_and_permissions(
        "nats-server",
        &format!("ws://127.0.0.1:{port}"),
        &reference.url(),
    )
    .await;
}

#[tokio::test]
async fn max_connections_counts_websocket_clients_as_nats_server() {
    for side in [
        {
            let (h, dir) = ours_from_config("max_connections: 1").await;
            Side {
                name: "ours",
                nats_url: h.client_url(),
                ws_url: h.websocket_url().expect("ws url"),
                ws_port: h.websocket_addr().expect("ws").port(),
                _ours: Some(h),
                _reference: None,
                _dir: Some(dir),
            }
        },
        {
            let port = free_port();
            let reference = NatsServer::start_with(ServerOptions {
                extra_config: Some(format!(
                    "max_connections: 1\nwebsocket {{ port: {port}, no_tls: true }}\n"
                )),
                ..ServerOptions::core()
            })
            .await;
            Side {
                name: "nats-server",
                nats_url: reference.url(),
                ws_url: format!("ws://127.0.0.1:{port}"),
                ws_port: port,
                _ours: None,
                _reference: Some(reference),
                _dir: None,
            }
        },
    ] {
        let first = async_nats::connect(&side.nats_url).await.expect("first");
        first.flush().await.expect("flush");
        let mut raw = raw_ws(&side).await;
        let got = read_until(&mut raw, "<close").await;
        assert!(got.starts_with("INFO "), "{}: {got:?}", side.name);
        assert!(
            got.contains("-ERR 'maximum connections exceeded'\r\n"),
            "{}: {got:?}",
            side.name
        );
        assert!(
            got.ends_with("<close 1008 Maximum Connections Exceeded>"),
            "{}: {got:?}",
            side.name
        );
    }
}

#[tokio::test]
async fn x_forwarded_for_does_not_change_info_client_ip_as_nats_server() {
    // nats-server shows X-Forwarded-For only in its log lines.
    for side in Ws::default().both().await {
        for (header, want) in [
            ("X-Forwarded-For: 10.9.8.7\r\n", "127.0.0.1"),
            ("", "127.0.0.1"),
        ] {
            let request = format!("{GOOD}{header}\r\n").replace("PORT", &side.ws_port.to_string());
            let answer = exchange(side.ws_port, &request).await;
            let info = answer
                .find("INFO ")
                .and_then(|i| answer[i + 5..].split("\r\n").next())
                .unwrap_or_else(|| panic!("{}: no INFO in {answer:?}", side.name));
            let info: serde_json::Value = serde_json::from_str(info.trim()).expect("INFO is JSON");
            assert_eq!(info["client_ip"], want, "{}: {header}", side.name);
        }
    }
}

// ---------------------------------------------------------------------------
// Configurations refused at start
// ---------------------------------------------------------------------------

/// Starts `bin` with `config` and returns its stderr once it exits, which
/// it must do with a failure (killed after 10 s otherwise, failing the test).
fn refused_start(bin: &std::path::Path, config: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("ws.conf");
    std::fs::write(&conf, config).expect("write");
    let mut child = std::process::Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{} started with {config:?}", bin.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    assert!(
        !out.status.success(),
        "{} accepted {config:?}",
        bin.display()
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn websocket_blocks_nats_server_refuses_are_refused_with_its_words() {
    let ours = std::path::PathBuf::from(env!("CARGO_BIN_EXE_angzarr-nats-server"));
    let reference = nats_test_server::nats_server_bin();
    for (config, words) in [
        (
            "port: -1\nwebsocket { port: -1 }\n",
            "websocket requires TLS configuration",
        ),
        (
            "port: -1\nwebsocket { port: -1, no_tls: true, bogus: 1 }\n",
            "unknown field \"bogus\"",
        ),
        (
            "port: -1\nwebsocket { port: -1, no_tls: true, headers { Upgrade: x } }\n",
            "websocket: invalid header \"Upgrade\" not allowed",
        ),
        (
            "port: -1\nwebsocket { port: -1, no_tls: true, headers { Sec-WebSocket-Protocol: x } }\n",
            "websocket: invalid header \"Sec-WebSocket-Protocol\", \"Sec-WebSocket-\" prefix not allowed",
        ),
    ] {
        for bin in [&ours, &reference] {
            let stderr = refused_start(bin, config);
            assert!(stderr.contains(words), "{}: {stderr}", bin.display());
        }
    }
}

#[test]
fn websocket_options_we_cannot_honour_refuse_the_start_naming_the_key() {
    let ours = std::path::PathBuf::from(env!("CARGO_BIN_EXE_angzarr-nats-server"));
    for (key, line) in [
        // (`authorization` and `no_auth_user` are served:
        // compat_websocket_auth.rs.)
        ("jwt_cookie", "jwt_cookie: jwt"),
        ("user_cookie", "user_cookie: u"),
    ] {
        let stderr = refused_start(
            &ours,
            &format!("port: -1\nwebsocket {{\n  port: -1\n  no_tls: true\n  {line}\n}}\n"),
        );
        assert!(
            stderr.contains(&format!("websocket.{key}")) && stderr.contains(":5"),
            "{key}: {stderr}"
        );
    }
}

#[tokio::test]
async fn wss_with_verify_requires_a_client_certificate_as_nats_server() {
    let pki = TestPki::generate();
    let ws = Ws {
        tls: Some((pki.server_cert(), pki.server_key())),
        verify: Some(pki.ca_file()),
        ..Ws::default()
    };
    for side in ws.both().await {
        let client = async_nats::ConnectOptions::new()
            .add_root_certificates(pki.ca_file())
            .add_client_certificate(pki.client_cert(), pki.client_key())
            .connect(&side.ws_url)
            .await
            .unwrap_or_else(|e| panic!("{}: wss with a client certificate: {e}", side.name));
        client.flush().await.expect("flush");
        for (what, options) in [
            (
                "no client certificate",
                async_nats::ConnectOptions::new().add_root_certificates(pki.ca_file()),
            ),
            (
                "a certificate from another CA",
                async_nats::ConnectOptions::new()
                    .add_root_certificates(pki.ca_file())
                    .add_client_certificate(pki.stranger_cert(), pki.stranger_key()),
            ),
        ] {
            let refused = tokio::time::timeout(WAIT, options.connect(&side.ws_url)).await;
            assert!(
                matches!(refused, Ok(Err(_))),
                "{}: {what} was let in",
                side.name
            );
        }
    }
}

#[tokio::test]
async fn varz_describes_the_websocket_listener_as_nats_server() {
    let block = |port: i32| {
        format!(
            "port: -1\nhttp: -1\nwebsocket {{ port: {port}, no_tls: true, same_origin: true, \
             allowed_origins: [\"https://a.example\"], handshake_timeout: \"3s\" }}\n"
        )
    };
    let (ours, _dir) = {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("server.conf");
        std::fs::write(&path, block(-1)).expect("write config");
        let cli =
            bus_embedded_server::cli::parse_args(["-c".to_owned(), path.display().to_string()])
                .expect("flags");
        let options = bus_embedded_server::options::from_cli(&cli, ServerConfig::default())
            .expect("configuration accepted");
        (start(options.config).await.expect("our server starts"), dir)
    };
    let port = free_port();
    let reference = NatsServer::start_with(ServerOptions {
        extra_config: Some(format!(
            "websocket {{ port: {port}, no_tls: true, same_origin: true, \
             allowed_origins: [\"https://a.example\"], handshake_timeout: \"3s\" }}\n"
        )),
        ..ServerOptions::core()
    })
    .await;
    let ours_varz = {
        let monitor = ours.monitor_port().expect("monitoring on");
        let (status, body) =
            tokio::task::spawn_blocking(move || nats_test_server::http_get(monitor, "/varz"))
                .await
                .expect("join")
                .expect("GET /varz");
        assert_eq!(status, 200);
        serde_json::from_str::<serde_json::Value>(&body).expect("json")
    };
    let (status, body) = reference.monitor_get("/varz").expect("GET /varz");
    assert_eq!(status, 200);
    let reference_varz: serde_json::Value = serde_json::from_str(&body).expect("json");
    let mut a = ours_varz["websocket"].clone();
    let mut b = reference_varz["websocket"].clone();
    assert_eq!(a["port"], ours.websocket_addr().expect("ws").port());
    assert_eq!(b["port"], port);
    a["port"] = serde_json::Value::Null;
    b["port"] = serde_json::Value::Null;
    assert_eq!(a, b, "ours vs nats-server");
}
