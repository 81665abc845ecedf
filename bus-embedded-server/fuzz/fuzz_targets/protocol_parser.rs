//! Fuzzes the client protocol parser (`bus_embedded_server::parser`).
//!
//! Input layout: the first `CONTROL` bytes choose how the rest is cut into
//! pieces (each control byte, cycled, is the length of the next piece; a 0
//! means "call parse once more with nothing new, then feed 1 byte"). The rest
//! is the protocol byte stream.
//!
//! Checked, besides "no panic":
//! * the buffer always holds exactly the bytes fed and not yet consumed
//!   (it never grows beyond what was fed), an op always consumes input,
//!   `Ok(None)` consumes nothing and asking again without new input gives
//!   `Ok(None)` again;
//! * after an `Err` nothing more is fed;
//! * every op is within the limits and well formed (subjects, replies,
//!   queues and sids are non-empty tokens without spaces, tabs or newlines;
//!   a payload is at most max_payload; an HPUB header length is at most the
//!   payload length);
//! * resumability: the same stream parsed whole gives the same ops, the same
//!   first error (if any) and, without error, the same number of bytes left
//!   over.
//!
//! `PROTOCOL_FUZZ_NO_CRLF_SPLIT=1` in the environment stops the splitting
//! from ever cutting between a `\r` and the `\n` after it. That hides one
//! known resumability bug (a control line of exactly max_control_line bytes
//! is rejected when a read ends between its `\r` and `\n`, see README.md)
//! so that a run can look for others; leave it unset normally.
#![no_main]

use std::sync::OnceLock;

use bus_embedded_server::parser::{ClientOp, Parser, ProtoError};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

const MAX_CONTROL_LINE: usize = 256;
const MAX_PAYLOAD: usize = 1024;
/// Leading input bytes that drive the splitting.
const CONTROL: usize = 4;

/// Whether `PROTOCOL_FUZZ_NO_CRLF_SPLIT` is set (to anything but "0").
fn no_crlf_split() -> bool {
    static FLAG: OnceLock<bool> = OnceLock::new();
    *FLAG.get_or_init(|| std::env::var_os("PROTOCOL_FUZZ_NO_CRLF_SPLIT").is_some_and(|v| v != "0"))
}

/// What a whole run produced.
#[derive(Debug, PartialEq, Eq, Default)]
struct Outcome {
    ops: Vec<ClientOp>,
    error: Option<ProtoError>,
    /// Unconsumed bytes at the end (only when there was no error: after an
    /// error the buffered amount depends on how much had been fed).
    left_over: Option<usize>,
}

/// A parsed run, with the bookkeeping for the buffer invariant.
struct Run {
    parser: Parser,
    buf: BytesMut,
    fed: usize,
    consumed: usize,
    out: Outcome,
}

fn token(what: &str, b: &[u8]) {
    assert!(!b.is_empty(), "empty {what}");
    assert!(
        b.len() <= MAX_CONTROL_LINE,
        "{what} longer than a control line"
    );
    assert!(
        !b.iter().any(|c| matches!(c, b' ' | b'\t' | b'\n')),
        "{what} {:?} holds a separator",
        String::from_utf8_lossy(b)
    );
}

fn check_op(op: &ClientOp) {
    match op {
        ClientOp::Pub {
            subject,
            reply,
            header_len,
            payload,
        } => {
            token("subject", subject);
            if let Some(reply) = reply {
                token("reply", reply);
            }
            assert!(payload.len() <= MAX_PAYLOAD, "payload over max_payload");
            if let Some(h) = header_len {
                assert!(
                    *h <= payload.len(),
                    "header_len {h} > payload {}",
                    payload.len()
                );
            }
        }
        ClientOp::Sub {
            subject,
            queue,
            sid,
        } => {
            token("subject", subject);
            if let Some(queue) = queue {
                token("queue", queue);
            }
            token("sid", sid);
        }
        ClientOp::Unsub { sid, .. } => token("sid", sid),
        ClientOp::Connect(json) => {
            assert!(
                json.len() <= MAX_CONTROL_LINE,
                "CONNECT longer than a control line"
            );
            assert!(!json.contains(&b'\n'), "CONNECT argument holds a newline");
        }
        ClientOp::Ping | ClientOp::Pong | ClientOp::Info => {}
    }
}

impl Run {
    fn new() -> Self {
        Run {
            parser: Parser::new(MAX_CONTROL_LINE, MAX_PAYLOAD),
            buf: BytesMut::new(),
            fed: 0,
            consumed: 0,
            out: Outcome::default(),
        }
    }

    fn check_buffer(&self) {
        assert_eq!(
            self.buf.len(),
            self.fed - self.consumed,
            "buffer holds something other than the unconsumed input"
        );
    }

    /// Feeds `piece` and parses until `Ok(None)` or `Err`; false after an
    /// error (the caller must stop).
    fn feed(&mut self, piece: &[u8]) -> bool {
        assert!(self.out.error.is_none(), "fed after an error");
        self.buf.extend_from_slice(piece);
        self.fed += piece.len();
        loop {
            let before = self.buf.len();
            match self.parser.parse(&mut self.buf) {
                Ok(Some(op)) => {
                    assert!(
                        self.buf.len() < before,
                        "{op:?} returned without consuming input"
                    );
                    self.consumed += before - self.buf.len();
                    self.check_buffer();
                    check_op(&op);
                    self.out.ops.push(op);
                }
                Ok(None) => {
                    assert_eq!(self.buf.len(), before, "Ok(None) consumed input");
                    self.check_buffer();
                    // Asking again with nothing new changes nothing.
                    assert_eq!(self.parser.parse(&mut self.buf), Ok(None), "second ask");
                    assert_eq!(self.buf.len(), before, "second Ok(None) consumed input");
                    return true;
                }
                Err(e) => {
                    assert!(self.buf.len() <= before, "buffer grew on error");
                    self.out.error = Some(e);
                    return false;
                }
            }
        }
    }

    fn finish(mut self) -> Outcome {
        if self.out.error.is_none() {
            self.out.left_over = Some(self.buf.len());
        }
        self.out
    }
}

fuzz_target!(|data: &[u8]| {
    let (control, input) = data.split_at(CONTROL.min(data.len()));

    // Fed in pieces.
    let mut split = Run::new();
    let mut pos = 0;
    let mut step = 0;
    while pos < input.len() {
        let mut len = usize::from(control[step % control.len()]);
        step += 1;
        if len == 0 {
            if !split.feed(&[]) {
                break;
            }
            len = 1;
        }
        let mut end = (pos + len).min(input.len());
        if no_crlf_split() && end < input.len() && input[end - 1] == b'\r' && input[end] == b'\n' {
            end += 1;
        }
        let piece = &input[pos..end];
        pos = end;
        if !split.feed(piece) {
            break;
        }
    }
    let split = split.finish();

    // Fed whole.
    let mut whole = Run::new();
    whole.feed(input);
    let whole = whole.finish();

    assert_eq!(
        split, whole,
        "split feeding (control {control:?}) and whole feeding disagree"
    );
});
