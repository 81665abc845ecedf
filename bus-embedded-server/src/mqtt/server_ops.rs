//! What the NATS session says to the MQTT bridge: the server side of the
//! NATS protocol (`INFO`, `PING`, `PONG`, `+OK`, `-ERR`, `MSG`, `HMSG`) read
//! from the in-process pipe. Only the session writes that pipe, so the
//! input is well formed; anything else is an error that closes the bridge.

use bytes::{Buf, Bytes, BytesMut};

/// One operation from the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServerOp {
    Info,
    Ping,
    Pong,
    Ok,
    /// The text inside `-ERR '...'`.
    Err(String),
    /// A delivered message: subject, subscription id, headers (`HMSG`
    /// only, with the `NATS/1.0` line) and payload.
    Msg {
        subject: String,
        sid: u64,
        /// The reply subject (a JetStream delivery's ack subject).
        reply: Option<String>,
        headers: Option<Bytes>,
        payload: Bytes,
    },
}

/// The session wrote something that is not the NATS server protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Garbled;

/// Takes one operation off the front of `buf`; `Ok(None)` when incomplete.
pub(crate) fn next(buf: &mut BytesMut) -> Result<Option<ServerOp>, Garbled> {
    let Some(eol) = memchr::memmem::find(buf, b"\r\n") else {
        return Ok(None);
    };
    let line = std::str::from_utf8(&buf[..eol]).map_err(|_| Garbled)?;
    let mut words = line.split(' ').filter(|w| !w.is_empty());
    let op = words.next().ok_or(Garbled)?.to_ascii_uppercase();
    let simple = match op.as_str() {
        "INFO" => Some(ServerOp::Info),
        "PING" => Some(ServerOp::Ping),
        "PONG" => Some(ServerOp::Pong),
        "+OK" => Some(ServerOp::Ok),
        "-ERR" => {
            let text = line[4..].trim().trim_matches('\'').to_owned();
            Some(ServerOp::Err(text))
        }
        _ => None,
    };
    if let Some(op) = simple {
        buf.advance(eol + 2);
        return Ok(Some(op));
    }
    let args: Vec<&str> = words.collect();
    let (subject, sid, reply, hlen, total) = match (op.as_str(), args.as_slice()) {
        ("MSG", [s, sid, len]) => (*s, *sid, None, None, *len),
        ("MSG", [s, sid, r, len]) => (*s, *sid, Some(*r), None, *len),
        ("HMSG", [s, sid, h, len]) => (
            *s,
            *sid,
            None,
            Some(h.parse::<usize>().map_err(|_| Garbled)?),
            *len,
        ),
        ("HMSG", [s, sid, r, h, len]) => (
            *s,
            *sid,
            Some(*r),
            Some(h.parse::<usize>().map_err(|_| Garbled)?),
            *len,
        ),
        _ => return Err(Garbled),
    };
    let reply = reply.map(str::to_owned);
    let sid: u64 = sid.parse().map_err(|_| Garbled)?;
    let total: usize = total.parse().map_err(|_| Garbled)?;
    let subject = subject.to_owned();
    if hlen.is_some_and(|h| h > total) {
        return Err(Garbled);
    }
    if buf.len() < eol + 2 + total + 2 {
        return Ok(None);
    }
    buf.advance(eol + 2);
    let mut body = buf.split_to(total).freeze();
    buf.advance(2);
    let headers = hlen.map(|h| body.split_to(h));
    Ok(Some(ServerOp::Msg {
        subject,
        sid,
        reply,
        headers,
        payload: body,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_lines_and_messages_parse() {
        let mut buf = BytesMut::from(
            &b"INFO {\"a\":1}\r\nPING\r\n-ERR 'Permissions Violation for Subscription to \"x\"'\r\nMSG a.b 7 5\r\nhello\r\nHMSG c 8 _INBOX.1 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPONG\r\n"[..],
        );
        assert_eq!(next(&mut buf), Ok(Some(ServerOp::Info)));
        assert_eq!(next(&mut buf), Ok(Some(ServerOp::Ping)));
        assert_eq!(
            next(&mut buf),
            Ok(Some(ServerOp::Err(
                "Permissions Violation for Subscription to \"x\"".into()
            )))
        );
        assert_eq!(
            next(&mut buf),
            Ok(Some(ServerOp::Msg {
                subject: "a.b".into(),
                sid: 7,
                reply: None,
                headers: None,
                payload: Bytes::from_static(b"hello"),
            }))
        );
        assert_eq!(
            next(&mut buf),
            Ok(Some(ServerOp::Msg {
                subject: "c".into(),
                sid: 8,
                reply: Some("_INBOX.1".into()),
                headers: Some(Bytes::from_static(b"NATS/1.0\r\n\r\n")),
                payload: Bytes::from_static(b"hi"),
            }))
        );
        assert_eq!(next(&mut buf), Ok(Some(ServerOp::Pong)));
        assert_eq!(next(&mut buf), Ok(None));
    }

    #[test]
    fn a_message_waits_for_its_payload() {
        let mut buf = BytesMut::from(&b"MSG a 1 5\r\nhel"[..]);
        assert_eq!(next(&mut buf), Ok(None));
        buf.extend_from_slice(b"lo\r\n");
        assert!(matches!(next(&mut buf), Ok(Some(ServerOp::Msg { .. }))));
    }
}
