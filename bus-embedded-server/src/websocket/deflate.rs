//! permessage-deflate (RFC 7692) for the WebSocket listener, as
//! nats-server does it with `compression: true`: it is granted whenever
//! the client's `Sec-WebSocket-Extensions` names `permessage-deflate`
//! (its parameters are not looked at), always answered with
//! `server_no_context_takeover; client_no_context_takeover`, so every
//! message is compressed and decompressed on its own (memory per
//! connection stays one compressor and one decompressor); the server
//! compresses what it sends only above [`THRESHOLD`] bytes and takes
//! compressed and plain messages alike; a compressed message may not
//! inflate beyond the connection's `max_payload` (nats-server's limit),
//! and no message on such a connection may arrive larger than eight
//! times that (at most 64 MiB; nats-server bounds only compressed ones
//! so, and refuses an oversized PUB in a plain one anyway).
//!
//! Such a connection is framed by ratchet (tokio-websockets refuses
//! frames with RSV1 set): [`Deflate`] is its extension, and
//! [`serve_compressed`] pumps the session's byte stream through a pipe to
//! and from ratchet's message halves. Connections that did not negotiate
//! compression never come here. This module must not parse protocol ops:
//! the session does.

use std::sync::Arc;

use bytes::BytesMut;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use ratchet_rs::{
    CloseCode, CloseReason, Extension, ExtensionDecoder, ExtensionEncoder, FrameHeader, Message,
    OpCode, PayloadType, Role, RsvBits, SplittableExtension, WebSocket, WebSocketConfig,
    WebSocketStream,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::session;
use crate::state::ServerState;

/// Messages the server sends of at most this many bytes go uncompressed
/// (nats-server's threshold).
pub(crate) const THRESHOLD: usize = 64;
/// The `Sec-WebSocket-Extensions` line of an upgrade that granted
/// compression (with its CRLF).
pub(crate) const RESPONSE_HEADER: &str = "Sec-WebSocket-Extensions: permessage-deflate; \
     server_no_context_takeover; client_no_context_takeover\r\n";
/// The tail a sender strips from each compressed message (RFC 7692 7.2.1).
const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];
/// Largest compressed message nats-server accepts, whatever `max_payload`.
const MAX_COMPRESSED: usize = 64 * 1024 * 1024;
/// Buffer of the pipe between the session and the pump, per direction.
const PIPE: usize = 64 * 1024;

/// True when `Sec-WebSocket-Extensions` (any of its headers) names
/// `permessage-deflate` (any case, as an extension or a parameter, as
/// nats-server reads it).
pub(crate) fn offered(headers: &[httparse::Header<'_>]) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("Sec-WebSocket-Extensions"))
        .any(|h| {
            String::from_utf8_lossy(h.value).split([',', ';']).any(|t| {
                t.trim_matches([' ', '\t'])
                    .eq_ignore_ascii_case("permessage-deflate")
            })
        })
}

/// Why a compressed connection ends.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeflateError {
    /// The compressor failed (not expected with in-memory buffers).
    #[error("compression failed: {0}")]
    Compress(#[from] flate2::CompressError),
    /// A compressed message is not valid deflate data.
    #[error("invalid compressed message: {0}")]
    Corrupt(#[from] flate2::DecompressError),
    /// A compressed message that does not end where its data does.
    #[error("invalid compressed message: truncated")]
    Truncated,
    /// A compressed message that inflates beyond the limit.
    #[error("compressed message inflates beyond {limit} bytes")]
    TooLarge {
        /// The connection's `max_payload`.
        limit: usize,
    },
    /// RSV1 on a continuation frame (only a message's first frame says
    /// whether it is compressed).
    #[error("invalid continuation frame")]
    CompressedContinuation,
}

/// The compressing half: each message above [`THRESHOLD`] on its own.
#[derive(Debug)]
pub(crate) struct Encoder {
    deflate: Compress,
}

/// The decompressing half: each compressed message on its own, inflated
/// to at most `limit` bytes.
#[derive(Debug)]
pub(crate) struct Decoder {
    inflate: Decompress,
    /// Whether the message being received started compressed.
    compressed: bool,
    limit: usize,
}

/// The negotiated extension, both halves.
#[derive(Debug)]
pub(crate) struct Deflate {
    encoder: Encoder,
    decoder: Decoder,
}

impl Deflate {
    /// For a connection whose messages may inflate to `limit` bytes.
    pub(crate) fn new(limit: usize) -> Deflate {
        Deflate {
            encoder: Encoder {
                // nats-server's level (best speed), raw deflate.
                deflate: Compress::new(Compression::fast(), false),
            },
            decoder: Decoder {
                inflate: Decompress::new(false),
                compressed: false,
                limit,
            },
        }
    }
}

impl Encoder {
    /// `input` deflated on its own, without the trailing empty block.
    fn compress(&mut self, input: &[u8]) -> Result<Vec<u8>, DeflateError> {
        self.deflate.reset();
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        loop {
            let done = usize::try_from(self.deflate.total_in()).unwrap_or(usize::MAX);
            let rest = input.get(done..).unwrap_or_default();
            self.deflate
                .compress_vec(rest, &mut out, FlushCompress::Sync)?;
            let consumed = usize::try_from(self.deflate.total_in()).unwrap_or(usize::MAX);
            // Done when all input is in and the flush fit (room was left).
            if consumed >= input.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity().max(4096));
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        Ok(out)
    }
}

impl ExtensionEncoder for Encoder {
    type Error = DeflateError;

    fn encode(
        &mut self,
        payload: &mut BytesMut,
        header: &mut FrameHeader,
    ) -> Result<(), Self::Error> {
        if payload.len() <= THRESHOLD || header.opcode == OpCode::Continuation {
            return Ok(());
        }
        let out = self.compress(payload)?;
        payload.clear();
        payload.extend_from_slice(&out);
        header.rsv1 = true;
        Ok(())
    }
}

impl Decoder {
    /// `input` (a whole compressed message) inflated, at most `limit`
    /// bytes.
    fn inflate(&mut self, input: &[u8]) -> Result<Vec<u8>, DeflateError> {
        self.inflate.reset(false);
        let limit = self.limit;
        let mut out =
            Vec::with_capacity(input.len().saturating_mul(4).clamp(1024, limit.max(1024)));
        for part in [input, &TAIL[..]] {
            let start = self.inflate.total_in();
            loop {
                let done = usize::try_from(self.inflate.total_in() - start).unwrap_or(usize::MAX);
                let rest = part.get(done..).unwrap_or_default();
                let before = (self.inflate.total_in(), out.len());
                let status = self
                    .inflate
                    .decompress_vec(rest, &mut out, FlushDecompress::Sync)?;
                if out.len() > limit {
                    return Err(DeflateError::TooLarge { limit });
                }
                let consumed =
                    usize::try_from(self.inflate.total_in() - start).unwrap_or(usize::MAX);
                if status == Status::StreamEnd
                    || (consumed >= part.len() && out.len() < out.capacity())
                {
                    break;
                }
                if out.len() == out.capacity() {
                    // Room for one byte past the limit, to see it crossed.
                    let room = (limit + 1)
                        .saturating_sub(out.len())
                        .min(out.capacity().max(4096));
                    if room == 0 {
                        return Err(DeflateError::TooLarge { limit });
                    }
                    out.reserve_exact(room);
                } else if before == (self.inflate.total_in(), out.len()) {
                    return Err(DeflateError::Truncated);
                }
            }
        }
        Ok(out)
    }
}

impl ExtensionDecoder for Decoder {
    type Error = DeflateError;

    fn decode(
        &mut self,
        payload: &mut BytesMut,
        header: &mut FrameHeader,
    ) -> Result<(), Self::Error> {
        // Ratchet hands over the message received so far (its frames'
        // payloads joined), at each of its frames.
        if header.opcode == OpCode::Continuation {
            if header.rsv1 {
                return Err(DeflateError::CompressedContinuation);
            }
        } else {
            self.compressed = header.rsv1;
        }
        if !header.fin || !self.compressed {
            return Ok(());
        }
        self.compressed = false;
        let out = self.inflate(payload)?;
        payload.clear();
        payload.extend_from_slice(&out);
        header.rsv1 = false;
        Ok(())
    }
}

impl ExtensionEncoder for Deflate {
    type Error = DeflateError;

    fn encode(
        &mut self,
        payload: &mut BytesMut,
        header: &mut FrameHeader,
    ) -> Result<(), Self::Error> {
        self.encoder.encode(payload, header)
    }
}

impl ExtensionDecoder for Deflate {
    type Error = DeflateError;

    fn decode(
        &mut self,
        payload: &mut BytesMut,
        header: &mut FrameHeader,
    ) -> Result<(), Self::Error> {
        self.decoder.decode(payload, header)
    }
}

impl Extension for Deflate {
    fn bits(&self) -> RsvBits {
        RsvBits {
            rsv1: true,
            rsv2: false,
            rsv3: false,
        }
    }
}

impl SplittableExtension for Deflate {
    type SplitEncoder = Encoder;
    type SplitDecoder = Decoder;

    fn split(self) -> (Encoder, Decoder) {
        (self.encoder, self.decoder)
    }
}

/// The upgraded, compressed connection as a client: registered, INFO,
/// then the ordinary session over a pipe whose other end a pump moves to
/// and from ratchet's halves (each chunk the session writes goes out as
/// one binary message; each message's payload is read as bytes).
pub(crate) async fn serve_compressed<S: WebSocketStream>(
    shared: Arc<ServerState>,
    stream: S,
    addr: std::net::SocketAddr,
) {
    let limit = shared.config.max_payload;
    let config = WebSocketConfig {
        max_message_size: limit.saturating_mul(8).clamp(1024, MAX_COMPRESSED),
    };
    let ws = WebSocket::from_upgraded(
        config,
        stream,
        Some(Deflate::new(limit)),
        BytesMut::new(),
        Role::Server,
    );
    let Ok((mut sender, mut receiver)) = ws.split() else {
        return;
    };
    let (client, nonce, info) = super::admit(&shared, addr);
    if shared.client_count() >= shared.config.max_connections {
        // As nats-server: INFO, the error, then a close frame.
        let _ = sender.write(&info, PayloadType::Binary).await;
        let _ = sender
            .write(
                b"-ERR 'maximum connections exceeded'\r\n",
                PayloadType::Binary,
            )
            .await;
        let _ = sender
            .close(CloseReason::new(
                CloseCode::Policy,
                Some("Maximum Connections Exceeded".into()),
            ))
            .await;
        return;
    }
    shared.add_client(Arc::clone(&client));
    let (session_end, pump_end) = tokio::io::duplex(PIPE);
    let (session_read, session_write) = tokio::io::split(session_end);
    let (mut from_session, mut to_session) = tokio::io::split(pump_end);

    // Client messages into the pipe, until the client closes or errs.
    let inbound = async move {
        let mut buf = BytesMut::new();
        loop {
            match receiver.read(&mut buf).await {
                Ok(Message::Binary | Message::Text) => {
                    if to_session.write_all(&buf).await.is_err() {
                        break;
                    }
                    buf.clear();
                }
                // Answered by ratchet; a partial message stays in `buf`.
                Ok(Message::Ping(_) | Message::Pong(_)) => {}
                Ok(Message::Close(_)) | Err(_) => break,
            }
        }
        // The session reads the end of its input (the pipe's other half
        // lives on in `outbound`, so dropping this one would not say it).
        let _ = to_session.shutdown().await;
    };
    // The session's output as messages, then the close frame.
    let close_client = Arc::clone(&client);
    let outbound = async move {
        let mut buf = vec![0u8; PIPE];
        loop {
            match from_session.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let Some(chunk) = buf.get(..n) else { break };
                    if sender.write(chunk, PayloadType::Binary).await.is_err()
                        || sender.flush().await.is_err()
                    {
                        return;
                    }
                }
            }
        }
        let (code, text) = super::close_status(close_client.close_reason());
        let code = CloseCode::try_from(u16::from(code).to_be_bytes()).unwrap_or(CloseCode::Normal);
        let _ = sender
            .close(CloseReason::new(code, Some(text.into())))
            .await;
    };
    let pump = async move {
        tokio::pin!(inbound, outbound);
        tokio::select! {
            () = &mut outbound => {}
            () = &mut inbound => outbound.await,
        }
    };
    let session = session::run_via(
        session::Listener::WebSocket,
        shared,
        client,
        session_read,
        session_write,
        nonce,
        Some(info),
    );
    tokio::join!(session, pump);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(opcode: OpCode, fin: bool, rsv1: bool) -> FrameHeader {
        FrameHeader {
            fin,
            rsv1,
            rsv2: false,
            rsv3: false,
            opcode,
        }
    }

    fn parse(raw: &str) -> bool {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut headers);
        assert!(req.parse(raw.as_bytes()).is_ok());
        offered(req.headers)
    }

    #[test]
    fn the_offer_is_found_as_nats_server_finds_it() {
        let req = |ext: &str| format!("GET / HTTP/1.1\r\nHost: h\r\n{ext}\r\n");
        assert!(parse(&req(
            "Sec-WebSocket-Extensions: permessage-deflate\r\n"
        )));
        assert!(parse(&req(
            "Sec-WebSocket-Extensions: foo, PerMessage-Deflate; server_max_window_bits=10\r\n"
        )));
        assert!(parse(&req(
            "sec-websocket-extensions: foo; permessage-deflate\r\n"
        )));
        assert!(!parse(&req(
            "Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n"
        )));
        assert!(!parse(&req("")));
    }

    #[test]
    fn small_messages_go_plain_and_larger_ones_round_trip_compressed() {
        let Deflate {
            mut encoder,
            mut decoder,
        } = Deflate::new(1 << 20);
        let mut small = BytesMut::from(&b"PONG\r\n"[..]);
        let mut h = header(OpCode::Binary, true, false);
        encoder.encode(&mut small, &mut h).unwrap();
        assert!(!h.rsv1);
        assert_eq!(&small[..], b"PONG\r\n");

        let text = "MSG a 1 1000\r\n".to_string() + &"abc".repeat(1000) + "\r\n";
        for _ in 0..3 {
            // Each message on its own: the same input, the same output.
            let mut m = BytesMut::from(text.as_bytes());
            let mut h = header(OpCode::Binary, true, false);
            encoder.encode(&mut m, &mut h).unwrap();
            assert!(h.rsv1);
            assert!(m.len() < text.len() / 10, "{}", m.len());
            assert!(!m.ends_with(&TAIL));
            decoder.decode(&mut m, &mut h).unwrap();
            assert!(!h.rsv1);
            assert_eq!(&m[..], text.as_bytes());
        }
    }

    #[test]
    fn a_fragmented_compressed_message_is_inflated_at_its_last_frame() {
        let Deflate {
            mut encoder,
            mut decoder,
        } = Deflate::new(1 << 20);
        let text = "y".repeat(5000);
        let compressed = encoder.compress(text.as_bytes()).unwrap();
        let (a, b) = compressed.split_at(3);
        let mut so_far = BytesMut::from(a);
        decoder
            .decode(&mut so_far, &mut header(OpCode::Binary, false, true))
            .unwrap();
        assert_eq!(&so_far[..], a);
        so_far.extend_from_slice(b);
        decoder
            .decode(&mut so_far, &mut header(OpCode::Continuation, true, false))
            .unwrap();
        assert_eq!(&so_far[..], text.as_bytes());
        // RSV1 on a continuation is refused.
        assert!(matches!(
            decoder.decode(
                &mut BytesMut::from(&b"x"[..]),
                &mut header(OpCode::Continuation, true, true)
            ),
            Err(DeflateError::CompressedContinuation)
        ));
    }

    #[test]
    fn corrupt_data_and_a_bomb_are_errors_not_panics() {
        let Deflate {
            mut encoder,
            mut decoder,
        } = Deflate::new(10_000);
        let mut junk = BytesMut::from(&b"\xff\xff\xff\xff\xff garbage"[..]);
        assert!(
            decoder
                .decode(&mut junk, &mut header(OpCode::Binary, true, true))
                .is_err()
        );
        // 10 001 bytes inflate past a 10 000 byte limit; 10 000 do not.
        let over = encoder.compress(&[b'z'; 10_001]).unwrap();
        let mut m = BytesMut::from(&over[..]);
        assert!(matches!(
            decoder.decode(&mut m, &mut header(OpCode::Binary, true, true)),
            Err(DeflateError::TooLarge { limit: 10_000 })
        ));
        let at = encoder.compress(&[b'z'; 10_000]).unwrap();
        let mut m = BytesMut::from(&at[..]);
        decoder
            .decode(&mut m, &mut header(OpCode::Binary, true, true))
            .unwrap();
        assert_eq!(m.len(), 10_000);
        // An uncompressed message passes through untouched.
        let mut plain = BytesMut::from(&b"PING\r\n"[..]);
        decoder
            .decode(&mut plain, &mut header(OpCode::Text, true, false))
            .unwrap();
        assert_eq!(&plain[..], b"PING\r\n");
    }
}
