//! MQTT 3.1.1 packets: bytes from a client to [`Packet`], and the packets
//! the server sends to bytes. Only the packets of protocol level 4 (3.1.1);
//! nothing here knows about sessions or NATS.
//!
//! Nothing from the network is trusted: a remaining length over the
//! listener's limit is refused before its bytes are awaited, every length
//! inside a packet is checked against the packet's end, strings must be
//! UTF-8 without NUL, and reserved flag bits must be as the specification
//! fixes them.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The largest remaining length the 4-byte encoding can carry.
pub const MAX_REMAINING: usize = 268_435_455;

/// A packet that cannot be decoded (the connection is then closed, as
/// MQTT 3.1.1 has no error reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// The remaining-length encoding runs past 4 bytes.
    MalformedLength,
    /// The packet is longer than the server accepts.
    TooLarge(usize),
    /// A packet type the client may not send (or type 0 / 15).
    UnexpectedType(u8),
    /// Reserved flag bits not as MQTT 3.1.1 fixes them.
    BadFlags(u8),
    /// A length inside the packet runs past its end, or bytes are left over.
    Truncated(&'static str),
    /// A string that is not UTF-8, or holds NUL.
    BadString(&'static str),
    /// The CONNECT protocol name is not `MQTT`.
    ProtocolName(String),
    /// QoS 3 (or a will QoS without a will).
    BadQos(u8),
    /// A CONNECT with invalid flags (reserved bit, password without user,
    /// will bits without will).
    BadConnectFlags(u8),
    /// A SUBSCRIBE or UNSUBSCRIBE without topic filters.
    NoFilters,
    /// Packet identifier 0 where one is required.
    ZeroPacketId,
}

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodecError::MalformedLength => write!(f, "malformed remaining length"),
            CodecError::TooLarge(n) => write!(f, "packet of {n} bytes is too large"),
            CodecError::UnexpectedType(t) => write!(f, "unexpected packet type {t}"),
            CodecError::BadFlags(b) => write!(f, "invalid fixed header flags {b:#04x}"),
            CodecError::Truncated(what) => write!(f, "malformed packet: {what}"),
            CodecError::BadString(what) => write!(f, "invalid string in {what}"),
            CodecError::ProtocolName(p) => write!(f, "unexpected protocol name {p:?}"),
            CodecError::BadQos(q) => write!(f, "invalid QoS {q}"),
            CodecError::BadConnectFlags(b) => write!(f, "invalid connect flags {b:#04x}"),
            CodecError::NoFilters => write!(f, "no topic filter"),
            CodecError::ZeroPacketId => write!(f, "packet identifier 0"),
        }
    }
}

impl std::error::Error for CodecError {}

/// The will a CONNECT carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: String,
    pub message: Bytes,
    pub qos: u8,
    pub retain: bool,
}

/// A CONNECT packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Protocol level (4 for 3.1.1).
    pub level: u8,
    pub clean_session: bool,
    /// Keep-alive in seconds (0 = none).
    pub keep_alive: u16,
    pub client_id: String,
    pub will: Option<Will>,
    pub username: Option<String>,
    pub password: Option<Bytes>,
}

/// A PUBLISH packet (either direction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: u8,
    pub retain: bool,
    pub topic: String,
    /// Present for QoS 1 and 2.
    pub packet_id: Option<u16>,
    pub payload: Bytes,
}

/// What a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Connect),
    Publish(Publish),
    PubAck(u16),
    PubRec(u16),
    PubRel(u16),
    PubComp(u16),
    /// Packet id and (filter, requested QoS) pairs.
    Subscribe(u16, Vec<(String, u8)>),
    Unsubscribe(u16, Vec<String>),
    PingReq,
    Disconnect,
}

/// Reads one packet from the front of `buf`; `Ok(None)` when more bytes
/// are needed. `max` bounds the remaining length.
pub fn decode(buf: &mut BytesMut, max: usize) -> Result<Option<Packet>, CodecError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let mut len: usize = 0;
    let mut header = 1;
    loop {
        if header > 4 {
            return Err(CodecError::MalformedLength);
        }
        let Some(&b) = buf.get(header) else {
            return Ok(None);
        };
        len |= usize::from(b & 0x7f) << (7 * (header - 1));
        header += 1;
        if b & 0x80 == 0 {
            break;
        }
    }
    if len > max.min(MAX_REMAINING) {
        return Err(CodecError::TooLarge(len));
    }
    if buf.len() < header + len {
        buf.reserve(header + len - buf.len());
        return Ok(None);
    }
    let first = buf[0];
    buf.advance(header);
    let body = buf.split_to(len).freeze();
    parse(first >> 4, first & 0x0f, body).map(Some)
}

fn parse(kind: u8, flags: u8, mut body: Bytes) -> Result<Packet, CodecError> {
    let expect_flags = |want: u8| {
        if flags == want {
            Ok(())
        } else {
            Err(CodecError::BadFlags(flags))
        }
    };
    let packet = match kind {
        1 => {
            expect_flags(0)?;
            Packet::Connect(connect(&mut body)?)
        }
        3 => {
            let qos = (flags >> 1) & 0x03;
            if qos == 3 {
                return Err(CodecError::BadQos(qos));
            }
            let topic = string(&mut body, "topic name")?;
            let packet_id = if qos > 0 {
                Some(packet_id(&mut body)?)
            } else {
                None
            };
            return Ok(Packet::Publish(Publish {
                dup: flags & 0x08 != 0,
                qos,
                retain: flags & 0x01 != 0,
                topic,
                packet_id,
                payload: body,
            }));
        }
        4 => {
            expect_flags(0)?;
            Packet::PubAck(packet_id(&mut body)?)
        }
        5 => {
            expect_flags(0)?;
            Packet::PubRec(packet_id(&mut body)?)
        }
        6 => {
            expect_flags(2)?;
            Packet::PubRel(packet_id(&mut body)?)
        }
        7 => {
            expect_flags(0)?;
            Packet::PubComp(packet_id(&mut body)?)
        }
        8 => {
            expect_flags(2)?;
            let id = packet_id(&mut body)?;
            let mut filters = Vec::new();
            while body.has_remaining() {
                let filter = string(&mut body, "topic filter")?;
                if !body.has_remaining() {
                    return Err(CodecError::Truncated("subscribe QoS"));
                }
                let qos = body.get_u8();
                if qos > 2 {
                    return Err(CodecError::BadQos(qos));
                }
                filters.push((filter, qos));
            }
            if filters.is_empty() {
                return Err(CodecError::NoFilters);
            }
            Packet::Subscribe(id, filters)
        }
        10 => {
            expect_flags(2)?;
            let id = packet_id(&mut body)?;
            let mut filters = Vec::new();
            while body.has_remaining() {
                filters.push(string(&mut body, "topic filter")?);
            }
            if filters.is_empty() {
                return Err(CodecError::NoFilters);
            }
            Packet::Unsubscribe(id, filters)
        }
        12 => {
            expect_flags(0)?;
            Packet::PingReq
        }
        14 => {
            expect_flags(0)?;
            Packet::Disconnect
        }
        other => return Err(CodecError::UnexpectedType(other)),
    };
    if body.has_remaining() {
        return Err(CodecError::Truncated("bytes after the packet"));
    }
    Ok(packet)
}

fn connect(body: &mut Bytes) -> Result<Connect, CodecError> {
    let name = string(body, "protocol name")?;
    if name != "MQTT" {
        return Err(CodecError::ProtocolName(name));
    }
    if body.remaining() < 4 {
        return Err(CodecError::Truncated("connect header"));
    }
    let level = body.get_u8();
    let flags = body.get_u8();
    let keep_alive = body.get_u16();
    if level != 4 {
        // The caller answers with return code 1; the rest is not read.
        body.advance(body.remaining());
        return Ok(Connect {
            level,
            clean_session: false,
            keep_alive,
            client_id: String::new(),
            will: None,
            username: None,
            password: None,
        });
    }
    let has_will = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0x03;
    let will_retain = flags & 0x20 != 0;
    let has_user = flags & 0x80 != 0;
    let has_password = flags & 0x40 != 0;
    if flags & 0x01 != 0
        || (!has_will && (will_qos != 0 || will_retain))
        || (has_password && !has_user)
    {
        return Err(CodecError::BadConnectFlags(flags));
    }
    if will_qos == 3 {
        return Err(CodecError::BadQos(will_qos));
    }
    let client_id = string(body, "client ID")?;
    let will = if has_will {
        let topic = string(body, "will topic")?;
        let message = bytes(body, "will message")?;
        Some(Will {
            topic,
            message,
            qos: will_qos,
            retain: will_retain,
        })
    } else {
        None
    };
    let username = if has_user {
        Some(string(body, "user name")?)
    } else {
        None
    };
    let password = if has_password {
        Some(bytes(body, "password")?)
    } else {
        None
    };
    Ok(Connect {
        level,
        clean_session: flags & 0x02 != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
    })
}

fn packet_id(body: &mut Bytes) -> Result<u16, CodecError> {
    if body.remaining() < 2 {
        return Err(CodecError::Truncated("packet identifier"));
    }
    match body.get_u16() {
        0 => Err(CodecError::ZeroPacketId),
        id => Ok(id),
    }
}

fn bytes(body: &mut Bytes, what: &'static str) -> Result<Bytes, CodecError> {
    if body.remaining() < 2 {
        return Err(CodecError::Truncated(what));
    }
    let n = usize::from(body.get_u16());
    if body.remaining() < n {
        return Err(CodecError::Truncated(what));
    }
    Ok(body.split_to(n))
}

fn string(body: &mut Bytes, what: &'static str) -> Result<String, CodecError> {
    let raw = bytes(body, what)?;
    match std::str::from_utf8(&raw) {
        Ok(s) if !s.contains('\0') => Ok(s.to_owned()),
        _ => Err(CodecError::BadString(what)),
    }
}

fn fixed_header(out: &mut BytesMut, first: u8, len: usize) {
    out.put_u8(first);
    let mut n = len;
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.put_u8(b);
        if n == 0 {
            break;
        }
    }
}

/// CONNACK with the session-present flag and a return code.
pub fn connack(out: &mut BytesMut, session_present: bool, code: u8) {
    out.put_slice(&[0x20, 2, u8::from(session_present), code]);
}

/// PINGRESP.
pub fn pingresp(out: &mut BytesMut) {
    out.put_slice(&[0xd0, 0]);
}

/// SUBACK: one return code per filter (granted QoS, or 0x80 = failure).
pub fn suback(out: &mut BytesMut, id: u16, codes: &[u8]) {
    fixed_header(out, 0x90, 2 + codes.len());
    out.put_u16(id);
    out.put_slice(codes);
}

/// PUBACK for `id` (QoS 1).
pub fn puback(out: &mut BytesMut, id: u16) {
    out.put_slice(&[0x40, 2]);
    out.put_u16(id);
}

/// PUBREC for `id` (QoS 2, first answer: the message is stored).
pub fn pubrec(out: &mut BytesMut, id: u16) {
    out.put_slice(&[0x50, 2]);
    out.put_u16(id);
}

/// PUBREL for `id` (QoS 2 delivery, answer to the client's PUBREC; its
/// fixed header flags are 0010, MQTT-3.6.1-1).
pub fn pubrel(out: &mut BytesMut, id: u16) {
    out.put_slice(&[0x62, 2]);
    out.put_u16(id);
}

/// PUBCOMP for `id` (QoS 2, answer to PUBREL: the exchange is over).
pub fn pubcomp(out: &mut BytesMut, id: u16) {
    out.put_slice(&[0x70, 2]);
    out.put_u16(id);
}

/// UNSUBACK for `id`.
pub fn unsuback(out: &mut BytesMut, id: u16) {
    out.put_slice(&[0xb0, 2]);
    out.put_u16(id);
}

/// A PUBLISH to the client; `packet_id` only for QoS > 0. `None` when the
/// topic or the packet cannot be encoded (too long).
pub fn publish(
    out: &mut BytesMut,
    topic: &str,
    qos: u8,
    retain: bool,
    dup: bool,
    packet_id: Option<u16>,
    payload: &[u8],
) -> Option<()> {
    let topic_len = u16::try_from(topic.len()).ok()?;
    let len = 2 + topic.len() + if qos > 0 { 2 } else { 0 } + payload.len();
    if len > MAX_REMAINING {
        return None;
    }
    let first = 0x30 | (u8::from(dup) << 3) | (qos << 1) | u8::from(retain);
    fixed_header(out, first, len);
    out.put_u16(topic_len);
    out.put_slice(topic.as_bytes());
    if qos > 0 {
        out.put_u16(packet_id.unwrap_or(1));
    }
    out.put_slice(payload);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(first: u8, body: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        fixed_header(&mut out, first, body.len());
        out.put_slice(body);
        out
    }

    fn connect_body(flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 4, b'M', b'Q', b'T', b'T', 4, flags, 0, 60];
        b.extend_from_slice(payload);
        b
    }

    fn s(text: &str) -> Vec<u8> {
        let mut v = (text.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(text.as_bytes());
        v
    }

    #[test]
    fn connect_with_will_user_and_password_decodes() {
        let mut payload = s("cid");
        payload.extend(s("will/t"));
        payload.extend(s("bye"));
        payload.extend(s("u"));
        payload.extend(s("p"));
        let mut buf = frame(0x10, &connect_body(0xc2 | 0x04 | 0x08, &payload));
        let Some(Packet::Connect(c)) = decode(&mut buf, 1 << 20).unwrap() else {
            panic!("not a connect");
        };
        assert!(c.clean_session);
        assert_eq!(c.keep_alive, 60);
        assert_eq!(c.client_id, "cid");
        let will = c.will.unwrap();
        assert_eq!((will.topic.as_str(), will.qos), ("will/t", 1));
        assert_eq!(&will.message[..], b"bye");
        assert_eq!(c.username.as_deref(), Some("u"));
        assert_eq!(c.password.as_deref(), Some(&b"p"[..]));
        assert!(buf.is_empty());
    }

    #[test]
    fn connect_flags_that_break_the_rules_are_refused() {
        // Reserved bit.
        let mut buf = frame(0x10, &connect_body(0x03, &s("c")));
        assert_eq!(
            decode(&mut buf, 1 << 20),
            Err(CodecError::BadConnectFlags(0x03))
        );
        // Password without user name.
        let mut buf = frame(0x10, &connect_body(0x42, &s("c")));
        assert!(matches!(
            decode(&mut buf, 1 << 20),
            Err(CodecError::BadConnectFlags(_))
        ));
        // Will QoS without will.
        let mut buf = frame(0x10, &connect_body(0x0a, &s("c")));
        assert!(matches!(
            decode(&mut buf, 1 << 20),
            Err(CodecError::BadConnectFlags(_))
        ));
    }

    #[test]
    fn wrong_protocol_name_is_refused() {
        let mut body = vec![0, 6];
        body.extend_from_slice(b"MQIsdp");
        body.extend_from_slice(&[3, 2, 0, 60]);
        body.extend(s("c"));
        let mut buf = frame(0x10, &body);
        assert_eq!(
            decode(&mut buf, 1 << 20),
            Err(CodecError::ProtocolName("MQIsdp".into()))
        );
    }

    #[test]
    fn other_protocol_levels_decode_for_return_code_1() {
        let mut body = mqtt_level(3);
        body.extend(s("c"));
        let mut buf = frame(0x10, &body);
        let Some(Packet::Connect(c)) = decode(&mut buf, 1 << 20).unwrap() else {
            panic!("not a connect");
        };
        assert_eq!(c.level, 3);
    }

    fn mqtt_level(level: u8) -> Vec<u8> {
        vec![0, 4, b'M', b'Q', b'T', b'T', level, 2, 0, 60]
    }

    #[test]
    fn publish_qos0_and_qos1_decode() {
        let mut body = s("a/b");
        body.extend_from_slice(b"hello");
        let mut buf = frame(0x31, &body);
        let Some(Packet::Publish(p)) = decode(&mut buf, 1 << 20).unwrap() else {
            panic!()
        };
        assert_eq!((p.qos, p.retain, p.packet_id), (0, true, None));
        assert_eq!(&p.payload[..], b"hello");

        let mut body = s("a");
        body.extend_from_slice(&[0, 7]);
        body.extend_from_slice(b"x");
        let mut buf = frame(0x32, &body);
        let Some(Packet::Publish(p)) = decode(&mut buf, 1 << 20).unwrap() else {
            panic!()
        };
        assert_eq!((p.qos, p.packet_id), (1, Some(7)));
    }

    #[test]
    fn publish_qos3_is_refused() {
        let mut buf = frame(0x36, &s("a"));
        assert_eq!(decode(&mut buf, 1 << 20), Err(CodecError::BadQos(3)));
    }

    #[test]
    fn subscribe_needs_flags_2_and_a_filter() {
        let mut body = vec![0, 1];
        body.extend(s("a/#"));
        body.push(1);
        body.extend(s("b"));
        body.push(0);
        let mut buf = frame(0x82, &body);
        assert_eq!(
            decode(&mut buf, 1 << 20).unwrap(),
            Some(Packet::Subscribe(
                1,
                vec![("a/#".into(), 1), ("b".into(), 0)]
            ))
        );
        let mut buf = frame(0x80, &body);
        assert_eq!(decode(&mut buf, 1 << 20), Err(CodecError::BadFlags(0)));
        let mut buf = frame(0x82, &[0, 1]);
        assert_eq!(decode(&mut buf, 1 << 20), Err(CodecError::NoFilters));
        let mut bad_qos = vec![0, 1];
        bad_qos.extend(s("a"));
        bad_qos.push(3);
        let mut buf = frame(0x82, &bad_qos);
        assert_eq!(decode(&mut buf, 1 << 20), Err(CodecError::BadQos(3)));
    }

    #[test]
    fn partial_packets_wait_for_more_bytes() {
        let mut body = s("topic");
        body.extend_from_slice(&[7u8; 300]);
        let full = frame(0x30, &body);
        for cut in 0..full.len() {
            let mut part = BytesMut::from(&full[..cut]);
            assert_eq!(decode(&mut part, 1 << 20), Ok(None), "cut at {cut}");
        }
        let mut all = full.clone();
        assert!(matches!(
            decode(&mut all, 1 << 20),
            Ok(Some(Packet::Publish(_)))
        ));
    }

    #[test]
    fn lengths_are_checked_before_reading() {
        // Five length bytes.
        let mut buf = BytesMut::from(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01][..]);
        assert_eq!(decode(&mut buf, 1 << 20), Err(CodecError::MalformedLength));
        // Over the limit, with no payload sent yet.
        let mut buf = BytesMut::from(&[0x30, 0xff, 0xff, 0x7f][..]);
        assert_eq!(decode(&mut buf, 1024), Err(CodecError::TooLarge(2_097_151)));
        // A string length past the end.
        let mut buf = frame(0x30, &[0, 9, b'a']);
        assert!(matches!(
            decode(&mut buf, 1 << 20),
            Err(CodecError::Truncated(_))
        ));
    }

    #[test]
    fn garbage_never_panics() {
        // A small deterministic generator: every byte string decodes to a
        // packet, an error, or a request for more bytes.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut buf = BytesMut::new();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let n = (seed % 40) as usize;
            for i in 0..n {
                buf.put_u8((seed >> (i % 8 * 8)) as u8 ^ i as u8);
            }
            let _ = decode(&mut buf, 1 << 16);
        }
    }

    #[test]
    fn invalid_utf8_and_nul_are_refused() {
        let mut buf = frame(0x30, &[0, 2, 0xff, 0xfe]);
        assert_eq!(
            decode(&mut buf, 1 << 20),
            Err(CodecError::BadString("topic name"))
        );
        let mut buf = frame(0x30, &[0, 2, b'a', 0]);
        assert_eq!(
            decode(&mut buf, 1 << 20),
            Err(CodecError::BadString("topic name"))
        );
    }

    #[test]
    fn encoded_packets_round_trip_through_the_length_encoding() {
        let mut out = BytesMut::new();
        let payload = vec![1u8; 200];
        publish(&mut out, "a/b", 1, true, false, Some(9), &payload).unwrap();
        assert_eq!(out[0], 0x33);
        // 2 + 3 + 2 + 200 = 207 = 0xcf 0x01 in two bytes.
        assert_eq!(&out[1..3], &[0xcf, 0x01]);
        let mut out = BytesMut::new();
        suback(&mut out, 5, &[0, 1, 0x80]);
        assert_eq!(&out[..], &[0x90, 5, 0, 5, 0, 1, 0x80]);
        let mut out = BytesMut::new();
        connack(&mut out, true, 0);
        assert_eq!(&out[..], &[0x20, 2, 1, 0]);
        // PUBREL's fixed header flags are 0010 (MQTT-3.6.1-1).
        let mut out = BytesMut::new();
        pubrel(&mut out, 0x1234);
        assert_eq!(&out[..], &[0x62, 2, 0x12, 0x34]);
    }
}
