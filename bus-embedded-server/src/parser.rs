//! The client-side protocol parser: bytes in, [`ClientOp`]s out.
//!
//! Resumable: [`Parser::parse`] takes what is buffered and returns
//! `Ok(None)` when an op is incomplete (read more, call again); nothing is
//! consumed until a whole op is there, so input may be split at any byte.
//! Limits are checked before anything is allocated: a control line longer
//! than `max_control_line` or a declared size over `max_payload` is an error
//! at once, whatever the rest of the input.
//! Publishes without copying: [`Parser::parse_in_place`] leaves a whole
//! PUB/HPUB in the read buffer and says where its parts are ([`PubAt`]);
//! [`Parser::parse`] cuts it into slices of the buffer. Control lines that
//! outlive the read (SUB, UNSUB, CONNECT) are copied out, so they do not
//! pin the buffer.

use bytes::{Buf, Bytes, BytesMut};

/// One operation sent by a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOp {
    /// `CONNECT {json}`.
    Connect(Bytes),
    /// `PUB` or `HPUB`. For HPUB, `payload` holds headers then body and
    /// `header_len` says where the body starts.
    Pub {
        /// Subject published to.
        subject: Bytes,
        /// Reply subject, if any.
        reply: Option<Bytes>,
        /// `Some(n)` for HPUB: the first n bytes of `payload` are headers.
        header_len: Option<usize>,
        /// Headers (HPUB) and body.
        payload: Bytes,
    },
    /// `SUB subject [queue] sid`.
    Sub {
        /// Subject or wildcard filter.
        subject: Bytes,
        /// Queue group.
        queue: Option<Bytes>,
        /// Subscription id, opaque.
        sid: Bytes,
    },
    /// `UNSUB sid [max]`.
    Unsub {
        /// Subscription id.
        sid: Bytes,
        /// Auto-unsubscribe after this many deliveries in total.
        max: Option<u64>,
    },
    /// `PING`.
    Ping,
    /// `PONG`.
    Pong,
    /// `INFO {json}` (clients may send it; ignored).
    Info,
}

/// Why the input is not valid protocol. Every one closes the connection;
/// [`ProtoError::err_text`] is the `-ERR` nats-server sends first, if any.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// A control line longer than the limit (sent whole or split).
    #[error("maximum control line exceeded")]
    MaxControlLine,
    /// A declared size larger than max_payload.
    #[error("Maximum Payload Violation")]
    MaxPayload,
    /// An op we do not know, an op without its arguments, or a payload not
    /// followed by CRLF.
    #[error("Unknown Protocol Operation")]
    Unknown,
    /// Arguments that do not parse (wrong count, a size that is not a
    /// number or overflows). nats-server closes without an `-ERR`.
    #[error("malformed arguments")]
    Malformed,
}

impl ProtoError {
    /// The `-ERR` text sent before closing, when nats-server sends one.
    pub fn err_text(&self) -> Option<&'static str> {
        match self {
            ProtoError::MaxControlLine => Some("maximum control line exceeded"),
            ProtoError::MaxPayload => Some("Maximum Payload Violation"),
            ProtoError::Unknown => Some("Unknown Protocol Operation"),
            ProtoError::Malformed => None,
        }
    }
}

/// A PUB/HPUB control line, read once: where its fields are, and the
/// size it declared, kept while its payload arrives.
#[derive(Debug, Clone, Copy)]
struct Awaiting {
    /// Bytes of the control line including its line ending.
    line_len: usize,
    /// Payload bytes expected (headers + body).
    size: usize,
    /// The subject's start and end in the control line.
    subject: (usize, usize),
    /// The reply subject's, if any.
    reply: Option<(usize, usize)>,
    /// HPUB: the header size.
    header_len: Option<usize>,
}

/// Parser state for one connection.
#[derive(Debug, Clone)]
pub struct Parser {
    max_control_line: usize,
    max_payload: usize,
    awaiting: Option<Awaiting>,
}

fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.eq_ignore_ascii_case(y))
}

/// Splits `line` on runs of spaces and tabs into at most `N` fields; returns
/// how many there were (more than N is reported as N + 1).
fn fields<const N: usize>(line: &[u8]) -> ([(usize, usize); N], usize) {
    let mut out = [(0, 0); N];
    let mut count = 0;
    let mut i = 0;
    while i < line.len() {
        while i < line.len() && (line[i] == b' ' || line[i] == b'\t') {
            i += 1;
        }
        if i == line.len() {
            break;
        }
        let start = i;
        while i < line.len() && line[i] != b' ' && line[i] != b'\t' {
            i += 1;
        }
        if count == N {
            return (out, N + 1);
        }
        out[count] = (start, i);
        count += 1;
    }
    (out, count)
}

fn number(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

impl Parser {
    /// A parser with these limits.
    pub fn new(max_control_line: usize, max_payload: usize) -> Self {
        Parser {
            max_control_line,
            max_payload,
            awaiting: None,
        }
    }

    /// Changes the payload limit (it can differ per account later).
    pub fn set_max_payload(&mut self, max_payload: usize) {
        self.max_payload = max_payload;
    }

    /// The next complete op in `buf`, consuming it; `Ok(None)` when more
    /// input is needed.
    pub fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<ClientOp>, ProtoError> {
        Ok(match self.parse_in_place(buf)? {
            None => None,
            Some(Parsed::Op(op)) => Some(op),
            Some(Parsed::Pub(at)) => Some(at.take(buf)),
        })
    }

    /// Like [`Parser::parse`], but a complete PUB or HPUB is left in `buf`
    /// and described by a [`PubAt`]: the caller reads it from
    /// `&buf[..at.len]` and then advances `buf` by `at.len`. The publish
    /// path then takes no reference-counted slices of the read buffer
    /// (about a tenth of the server's CPU per 16 B publish).
    pub fn parse_in_place(&mut self, buf: &mut BytesMut) -> Result<Option<Parsed>, ProtoError> {
        if let Some(a) = self.awaiting {
            if buf.len() < a.line_len + a.size + 2 {
                return Ok(None);
            }
            self.awaiting = None;
            return complete(buf, &a).map(|at| Some(Parsed::Pub(at)));
        }
        let Some(nl) = memchr::memchr(b'\n', buf) else {
            // A trailing '\r' may be the first half of the line ending, which
            // does not count toward the limit (found by the fuzzer: a line of
            // exactly max_control_line bytes split between '\r' and '\n').
            let line = buf.strip_suffix(b"\r").unwrap_or(buf);
            if line.len() > self.max_control_line {
                return Err(ProtoError::MaxControlLine);
            }
            return Ok(None);
        };
        let line_end = if nl > 0 && buf[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        if line_end > self.max_control_line {
            return Err(ProtoError::MaxControlLine);
        }
        let line = &buf[..line_end];
        let op_end = line
            .iter()
            .position(|&b| b == b' ' || b == b'\t')
            .unwrap_or(line.len());
        let op = &line[..op_end];
        let args_start = op_end;
        if eq_ignore_case(op, b"PUB") || eq_ignore_case(op, b"HPUB") {
            let headers = op.len() == 4;
            let args = &line[args_start..];
            let (f, n) = fields::<4>(args);
            let size_field = |i: usize| &args[f[i].0..f[i].1];
            let at = |i: usize| (args_start + f[i].0, args_start + f[i].1);
            if n == 0 {
                return Err(ProtoError::Unknown);
            }
            // The total size (HPUB: headers + body, checked to hold the
            // headers).
            let (size, header_len, reply) = if headers {
                if !(n == 3 || n == 4) {
                    return Err(ProtoError::Malformed);
                }
                let h = number(size_field(n - 2)).ok_or(ProtoError::Malformed)?;
                let t = number(size_field(n - 1)).ok_or(ProtoError::Malformed)?;
                if h > t {
                    return Err(ProtoError::Malformed);
                }
                (t, Some(h), (n == 4).then(|| at(1)))
            } else {
                if !(n == 2 || n == 3) {
                    return Err(ProtoError::Malformed);
                }
                let t = number(size_field(n - 1)).ok_or(ProtoError::Malformed)?;
                (t, None, (n == 3).then(|| at(1)))
            };
            if size > self.max_payload as u64 {
                return Err(ProtoError::MaxPayload);
            }
            // Both at most max_payload (a usize) here.
            let awaiting = Awaiting {
                line_len: nl + 1,
                size: size as usize,
                subject: at(0),
                reply,
                header_len: header_len.map(|h| h as usize),
            };
            if buf.len() < awaiting.line_len + awaiting.size + 2 {
                self.awaiting = Some(awaiting);
                return Ok(None);
            }
            return complete(buf, &awaiting).map(|at| Some(Parsed::Pub(at)));
        }
        control(buf, nl, line_end, op_end).map(|op| op.map(Parsed::Op))
    }
}

/// A control line other than PUB/HPUB, complete in `buf` (`nl`: its
/// newline, `line_end`: where the line ends before `\r\n`, `op_end`: where
/// the verb ends), taken off `buf`.
fn control(
    buf: &mut BytesMut,
    nl: usize,
    line_end: usize,
    op_end: usize,
) -> Result<Option<ClientOp>, ProtoError> {
    let args_start = op_end;
    let op = &buf[..op_end];
    let result = if eq_ignore_case(op, b"PING") {
        ClientOp::Ping
    } else if eq_ignore_case(op, b"PONG") {
        ClientOp::Pong
    } else if eq_ignore_case(op, b"SUB") {
        let line = detach_line(buf, nl + 1);
        let args = &line[args_start..line_end];
        let (f, n) = fields::<3>(args);
        let at = |i: usize| line.slice(args_start + f[i].0..args_start + f[i].1);
        return match n {
            0 => Err(ProtoError::Unknown),
            2 => Ok(Some(ClientOp::Sub {
                subject: at(0),
                queue: None,
                sid: at(1),
            })),
            3 => Ok(Some(ClientOp::Sub {
                subject: at(0),
                queue: Some(at(1)),
                sid: at(2),
            })),
            _ => Err(ProtoError::Malformed),
        };
    } else if eq_ignore_case(op, b"UNSUB") {
        let line = detach_line(buf, nl + 1);
        let args = &line[args_start..line_end];
        let (f, n) = fields::<2>(args);
        let at = |i: usize| line.slice(args_start + f[i].0..args_start + f[i].1);
        return match n {
            0 => Err(ProtoError::Unknown),
            1 => Ok(Some(ClientOp::Unsub {
                sid: at(0),
                max: None,
            })),
            // nats-server ignores a max that is not a number.
            2 => Ok(Some(ClientOp::Unsub {
                sid: at(0),
                max: number(&at(1)),
            })),
            _ => Err(ProtoError::Malformed),
        };
    } else if eq_ignore_case(op, b"CONNECT") {
        let line = detach_line(buf, nl + 1);
        let json = line.slice(args_start..line_end);
        let trimmed_start = json
            .iter()
            .position(|b| *b != b' ' && *b != b'\t')
            .unwrap_or(json.len());
        return Ok(Some(ClientOp::Connect(json.slice(trimmed_start..))));
    } else if eq_ignore_case(op, b"INFO") {
        ClientOp::Info
    } else {
        return Err(ProtoError::Unknown);
    };
    buf.advance(nl + 1);
    Ok(Some(result))
}

/// Takes a control line (SUB, UNSUB, CONNECT) off the front of `buf` as a
/// copy of its own. What is parsed from it lives as long as the subscription
/// or connection does; a slice of the read buffer would keep that whole
/// allocation (64 KiB, or the size of the largest message read into it)
/// alive just as long.
fn detach_line(buf: &mut BytesMut, len: usize) -> Bytes {
    let line = Bytes::copy_from_slice(&buf[..len]);
    buf.advance(len);
    line
}

/// A PUB or HPUB whose control line and payload are all buffered, still in
/// the buffer: where its parts are, as offsets from the buffer's front.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PubAt {
    subject: (usize, usize),
    reply: Option<(usize, usize)>,
    /// HPUB: the header size (headers come first in the payload).
    pub header_len: Option<usize>,
    payload: (usize, usize),
    /// Bytes of the whole frame (line, payload and its `\r\n`).
    pub len: usize,
}

/// What [`Parser::parse_in_place`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// An op already taken off the buffer.
    Op(ClientOp),
    /// A publish left in the buffer.
    Pub(PubAt),
}

impl PubAt {
    /// The subject, from the buffer the frame was parsed in.
    pub fn subject<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.subject.0..self.subject.1]
    }

    /// The reply subject, if the publish has one.
    pub fn reply<'a>(&self, buf: &'a [u8]) -> Option<&'a [u8]> {
        self.reply.map(|(s, e)| &buf[s..e])
    }

    /// The payload (headers included for an HPUB).
    pub fn payload<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.payload.0..self.payload.1]
    }

    /// Takes the frame off `buf` as an op of its own: slices of one shared
    /// chunk.
    pub fn take(self, buf: &mut BytesMut) -> ClientOp {
        let chunk = buf.split_to(self.len).freeze();
        ClientOp::Pub {
            subject: chunk.slice(self.subject.0..self.subject.1),
            reply: self.reply.map(|(s, e)| chunk.slice(s..e)),
            header_len: self.header_len,
            payload: chunk.slice(self.payload.0..self.payload.1),
        }
    }
}

/// The publish `a` announced, once all of it is in `buf`: its payload must
/// end with `\r\n`.
fn complete(buf: &BytesMut, a: &Awaiting) -> Result<PubAt, ProtoError> {
    let end = a.line_len + a.size;
    if buf.get(end..end + 2) != Some(&b"\r\n"[..]) {
        return Err(ProtoError::Unknown);
    }
    Ok(PubAt {
        subject: a.subject,
        reply: a.reply,
        header_len: a.header_len,
        payload: (a.line_len, end),
        len: end + 2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8], splits: &[usize]) -> Result<Vec<ClientOp>, ProtoError> {
        let mut p = Parser::new(4096, 1024 * 1024);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut last = 0;
        for &s in splits.iter().chain(std::iter::once(&input.len())) {
            buf.extend_from_slice(&input[last..s]);
            last = s;
            while let Some(op) = p.parse(&mut buf)? {
                out.push(op);
            }
        }
        assert!(
            buf.is_empty(),
            "left over: {:?}",
            String::from_utf8_lossy(&buf)
        );
        Ok(out)
    }

    /// The publish path reads a PUB where it lies in the read buffer: the
    /// frame stays until the caller advances past it, the parts are the
    /// ones `parse` cuts out, and a frame that arrives in pieces is found
    /// the same way once complete.
    #[test]
    fn a_publish_parsed_in_place_stays_in_the_buffer_until_advanced() {
        let mut p = Parser::new(4096, 1024);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(b"PUB a.b _R.1 5\r\nhel");
        assert_eq!(p.parse_in_place(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"lo\r\nHPUB h r 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n");
        let Some(Parsed::Pub(at)) = p.parse_in_place(&mut buf).unwrap() else {
            panic!("expected a publish");
        };
        assert_eq!(at.len, b"PUB a.b _R.1 5\r\nhello\r\n".len());
        assert_eq!(at.subject(&buf), b"a.b");
        assert_eq!(at.reply(&buf), Some(&b"_R.1"[..]));
        assert_eq!(at.payload(&buf), b"hello");
        assert_eq!(at.header_len, None);
        assert!(buf.starts_with(b"PUB a.b"), "left in place");
        buf.advance(at.len);
        let Some(Parsed::Pub(at)) = p.parse_in_place(&mut buf).unwrap() else {
            panic!("expected an HPUB");
        };
        assert_eq!(at.header_len, Some(12));
        assert_eq!(at.payload(&buf), b"NATS/1.0\r\n\r\nhi");
        let ClientOp::Pub {
            subject,
            reply,
            header_len,
            payload,
        } = at.take(&mut buf)
        else {
            panic!("expected ClientOp::Pub");
        };
        assert_eq!(
            (&subject[..], reply.as_deref(), header_len, &payload[..]),
            (
                &b"h"[..],
                Some(&b"r"[..]),
                Some(12),
                &b"NATS/1.0\r\n\r\nhi"[..]
            )
        );
        assert_eq!(
            p.parse_in_place(&mut buf).unwrap(),
            Some(Parsed::Op(ClientOp::Ping))
        );
        assert!(buf.is_empty());
        // A payload not followed by CRLF is still refused.
        let mut bad = BytesMut::from(&b"PUB a 2\r\nxyz\r\n"[..]);
        assert_eq!(p.parse_in_place(&mut bad), Err(ProtoError::Unknown));
    }

    /// Subscriptions keep their subject and sid for as long as they live: a
    /// slice of the read buffer would pin the whole buffer, which may have
    /// grown to the largest message the connection sent.
    #[test]
    fn a_subscription_parsed_from_a_large_read_buffer_does_not_point_into_it() {
        let mut p = Parser::new(4096, 1 << 20);
        let mut buf = BytesMut::with_capacity(1 << 20);
        buf.extend_from_slice(b"SUB foo.bar q 1\r\nUNSUB 1 5\r\nCONNECT {}\r\n");
        let start = buf.as_ptr() as usize;
        let inside = |b: &Bytes| (start..start + (1 << 20)).contains(&(b.as_ptr() as usize));
        let Some(ClientOp::Sub {
            subject,
            queue: Some(queue),
            sid,
        }) = p.parse(&mut buf).unwrap()
        else {
            panic!("expected SUB with a queue");
        };
        assert_eq!(
            (&subject[..], &queue[..], &sid[..]),
            (&b"foo.bar"[..], &b"q"[..], &b"1"[..])
        );
        assert!(!inside(&subject) && !inside(&queue) && !inside(&sid));
        let Some(ClientOp::Unsub { sid, max }) = p.parse(&mut buf).unwrap() else {
            panic!("expected UNSUB");
        };
        assert_eq!((&sid[..], max), (&b"1"[..], Some(5)));
        assert!(!inside(&sid));
        let Some(ClientOp::Connect(json)) = p.parse(&mut buf).unwrap() else {
            panic!("expected CONNECT");
        };
        assert_eq!(&json[..], b"{}");
        assert!(!inside(&json));
        assert!(buf.is_empty());
    }

    const SAMPLE: &[u8] =
        b"CONNECT {\"verbose\":false}\r\nPING\r\npong\r\nsub foo.* 1\r\nSUB\tbar  q1 22\r\n\
PUB foo.x 5\r\nhello\r\npub foo.y reply.1 0\r\n\r\nHPUB h.1 12 14\r\nNATS/1.0\r\n\r\nhi\r\n\
HPUB h.2 r.2 12 12\r\nNATS/1.0\r\n\r\n\r\nUNSUB 1\r\nunsub 22 10\r\nPUB bin 4\r\n\r\n\r\n\r\n";

    fn expected() -> Vec<ClientOp> {
        let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        vec![
            ClientOp::Connect(b("{\"verbose\":false}")),
            ClientOp::Ping,
            ClientOp::Pong,
            ClientOp::Sub {
                subject: b("foo.*"),
                queue: None,
                sid: b("1"),
            },
            ClientOp::Sub {
                subject: b("bar"),
                queue: Some(b("q1")),
                sid: b("22"),
            },
            ClientOp::Pub {
                subject: b("foo.x"),
                reply: None,
                header_len: None,
                payload: b("hello"),
            },
            ClientOp::Pub {
                subject: b("foo.y"),
                reply: Some(b("reply.1")),
                header_len: None,
                payload: b(""),
            },
            ClientOp::Pub {
                subject: b("h.1"),
                reply: None,
                header_len: Some(12),
                payload: b("NATS/1.0\r\n\r\nhi"),
            },
            ClientOp::Pub {
                subject: b("h.2"),
                reply: Some(b("r.2")),
                header_len: Some(12),
                payload: b("NATS/1.0\r\n\r\n"),
            },
            ClientOp::Unsub {
                sid: b("1"),
                max: None,
            },
            ClientOp::Unsub {
                sid: b("22"),
                max: Some(10),
            },
            ClientOp::Pub {
                subject: b("bin"),
                reply: None,
                header_len: None,
                payload: b("\r\n\r\n"),
            },
        ]
    }

    #[test]
    fn every_op_parses_whole() {
        assert_eq!(parse_all(SAMPLE, &[]).unwrap(), expected());
    }

    #[test]
    fn every_op_parses_when_split_at_every_byte() {
        for split in 0..=SAMPLE.len() {
            assert_eq!(
                parse_all(SAMPLE, &[split]).unwrap(),
                expected(),
                "split at {split}"
            );
        }
    }

    #[test]
    fn every_op_parses_one_byte_at_a_time() {
        let splits: Vec<usize> = (1..SAMPLE.len()).collect();
        assert_eq!(parse_all(SAMPLE, &splits).unwrap(), expected());
    }

    #[test]
    fn oversized_control_line_is_rejected_whole_or_split() {
        let long = format!("SUB {} 1\r\n", "a".repeat(5000));
        assert_eq!(
            parse_all(long.as_bytes(), &[]),
            Err(ProtoError::MaxControlLine)
        );
        // Without the newline yet: rejected as soon as the limit is passed.
        let mut p = Parser::new(4096, 1024);
        let mut buf = BytesMut::from(&long.as_bytes()[..4200]);
        assert_eq!(p.parse(&mut buf), Err(ProtoError::MaxControlLine));
    }

    #[test]
    fn control_line_of_exactly_the_limit_is_accepted_however_it_is_split() {
        let line = format!("SUB {} 1\r\n", "a".repeat(64 - 6));
        assert_eq!(line.len() - 2, 64);
        for split in 0..=line.len() {
            let mut p = Parser::new(64, 1024);
            let mut buf = BytesMut::from(&line.as_bytes()[..split]);
            let first = p.parse(&mut buf);
            assert!(
                matches!(first, Ok(None) | Ok(Some(_))),
                "split {split}: {first:?}"
            );
            buf.extend_from_slice(&line.as_bytes()[split..]);
            if first == Ok(None) {
                assert!(
                    matches!(p.parse(&mut buf), Ok(Some(ClientOp::Sub { .. }))),
                    "split {split}"
                );
            }
        }
        let too_long = format!("SUB {} 1\r", "a".repeat(64 - 5));
        let mut p = Parser::new(64, 1024);
        assert_eq!(
            p.parse(&mut BytesMut::from(too_long.as_bytes())),
            Err(ProtoError::MaxControlLine)
        );
    }

    #[test]
    fn payload_over_the_limit_is_rejected_before_it_arrives() {
        let mut p = Parser::new(4096, 1024);
        let mut buf = BytesMut::from(&b"PUB foo 1025\r\n"[..]);
        assert_eq!(p.parse(&mut buf), Err(ProtoError::MaxPayload));
        // Sizes that overflow: nats-server closes without an -ERR.
        let mut buf = BytesMut::from(&b"PUB foo 99999999999999999999999\r\n"[..]);
        assert_eq!(p.parse(&mut buf), Err(ProtoError::Malformed));
        let mut buf = BytesMut::from(&b"HPUB foo 10 18446744073709551615\r\n"[..]);
        assert_eq!(p.parse(&mut buf), Err(ProtoError::Malformed));
    }

    #[test]
    fn a_payload_of_exactly_max_payload_is_accepted_and_one_byte_more_refused() {
        let mut p = Parser::new(4096, 8);
        let mut buf = BytesMut::from(&b"HPUB s r 4 8\r\nNATS1234\r\n"[..]);
        assert_eq!(
            p.parse(&mut buf),
            Ok(Some(ClientOp::Pub {
                subject: Bytes::from_static(b"s"),
                reply: Some(Bytes::from_static(b"r")),
                header_len: Some(4),
                payload: Bytes::from_static(b"NATS1234"),
            }))
        );
        assert!(buf.is_empty());
        let mut buf = BytesMut::from(&b"PUB s 9\r\n"[..]);
        assert_eq!(p.parse(&mut buf), Err(ProtoError::MaxPayload));
    }

    #[test]
    fn a_message_split_inside_its_subject_and_across_many_payload_reads_keeps_its_fields() {
        // Control line cut inside the subject and the reply; a 3,000-byte
        // payload holding protocol-looking text arriving in 7-byte reads;
        // the trailing CRLF split; then the next op in the same read.
        let body: Vec<u8> = b"PUB x 1\r\n\r\nMSG "
            .iter()
            .copied()
            .cycle()
            .take(3000)
            .collect();
        let mut input = b"PUB orders.eu.new _INBOX.abc 3000\r\n".to_vec();
        input.extend_from_slice(&body);
        input.extend_from_slice(b"\r\nPING\r\n");
        let mut splits = vec![7, 20];
        splits.extend((40..input.len() - 7).step_by(7));
        splits.push(input.len() - 7);
        splits.push(input.len() - 6);
        assert_eq!(
            parse_all(&input, &splits).unwrap(),
            vec![
                ClientOp::Pub {
                    subject: Bytes::from_static(b"orders.eu.new"),
                    reply: Some(Bytes::from_static(b"_INBOX.abc")),
                    header_len: None,
                    payload: Bytes::from(body),
                },
                ClientOp::Ping,
            ]
        );
    }

    #[test]
    fn a_payload_not_followed_by_crlf_is_refused_even_when_it_arrives_late() {
        let mut p = Parser::new(4096, 1024);
        let mut buf = BytesMut::from(&b"PUB s 3\r\nab"[..]);
        assert_eq!(p.parse(&mut buf), Ok(None));
        buf.extend_from_slice(b"cX\n");
        assert_eq!(p.parse(&mut buf), Err(ProtoError::Unknown));
    }

    #[test]
    fn malformed_ops_are_unknown_protocol_operations() {
        for bad in [
            &b"FOO\r\n"[..],
            b"PUB\r\n",
            b"PUB a b c d\r\n",
            b"PUB foo x\r\n",
            b"SUB foo\r\n",
            b"SUB a b c d\r\n",
            b"UNSUB\r\n",
            b"HPUB foo 10 5\r\n",
            b"PUB foo 3\r\nabcXY",
        ] {
            assert!(
                parse_all(bad, &[]).is_err(),
                "{:?} accepted",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678_u64;
        for _ in 0..2000 {
            let mut input = Vec::new();
            for _ in 0..(seed % 64) {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let pick = (seed >> 33) as usize;
                let atoms: [&[u8]; 12] = [
                    b"PUB ", b"HPUB ", b"SUB ", b"\r\n", b" ", b"1", b"99", b"foo", b"\t",
                    b"UNSUB ", b"\n", b"\xff",
                ];
                input.extend_from_slice(atoms[pick % atoms.len()]);
            }
            let mut p = Parser::new(64, 128);
            let mut buf = BytesMut::from(&input[..]);
            while let Ok(Some(_)) = p.parse(&mut buf) {}
        }
    }
}
