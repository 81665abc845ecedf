//! `$JS.API.DIRECT.GET.<stream>` and `$JS.API.DIRECT.GET.<stream>.<subject>`
//! as nats-server 2.15.1 answers them: one message by `seq`,
//! `last_by_subj`, `next_by_subj` or `start_time`; a batch (`batch`,
//! `max_bytes`, optionally `next_by_subj` with wildcards) of messages
//! carrying `Nats-Num-Pending` and `Nats-Last-Sequence`, ended by a
//! `204 EOB` status; the last message per subject of `multi_last` filters
//! up to `up_to_seq` / `up_to_time` (EOB adds `Nats-UpTo-Sequence`); and
//! `no_hdr` (payload only). Answers are messages with status headers, not
//! JSON. Reading is the stream's (`stream::direct`); this module owns the
//! request's checks, in nats-server's order, and the replies' form.

use serde::Deserialize;

use super::JetStream;
use super::headers::HeaderBuilder;
use super::store::StoredMsg;
use super::stream::Stream;
use super::stream::direct::{BatchRead, MultiLastError};
use super::types::{parse_rfc3339, rfc3339};

/// What a batch may send when the request sets no `max_bytes`
/// (nats-server's default `max_pending`, 64 MiB).
const DEFAULT_MAX_BYTES: i64 = 64 * 1024 * 1024;

/// The request body (nats-server's `JSApiMsgGetRequest`).
#[derive(Default, Deserialize)]
#[serde(default)]
struct Request {
    seq: u64,
    last_by_subj: String,
    next_by_subj: String,
    batch: i64,
    max_bytes: i64,
    start_time: Option<String>,
    multi_last: Vec<String>,
    up_to_seq: u64,
    up_to_time: Option<String>,
    no_hdr: bool,
}

/// A parsed request with its times read.
struct Parsed {
    req: Request,
    start: Option<i64>,
    up_to: Option<i64>,
}

fn parse(data: &[u8]) -> Option<Parsed> {
    let req: Request = if data.trim_ascii() == b"null" {
        Request::default()
    } else {
        serde_json::from_slice(data).ok()?
    };
    let time = |t: &Option<String>| match t {
        Some(t) => parse_rfc3339(t).map(Some),
        None => Some(None),
    };
    Some(Parsed {
        start: time(&req.start_time)?,
        up_to: time(&req.up_to_time)?,
        req,
    })
}

fn status(js: &JetStream, reply: &str, code: u16, text: &str) {
    js.send(reply, None, &HeaderBuilder::status(code, text).build(), b"");
}

/// What became of a direct get.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The stream does not answer direct gets (none of that name, or
    /// `allow_direct` off): the requester sees no responders.
    NotServed,
    /// Answered (or nothing to answer: no reply subject).
    Answered,
    /// Nothing sent: a message it needs is not in memory and this thread
    /// must not wait on the disk (see `store::nowait`). Ask again where
    /// reads may wait.
    WouldBlock,
}

/// A read that stopped because it would have waited on the disk.
struct Blocked;

/// Answers a direct get.
pub(crate) fn direct_get(
    js: &JetStream,
    tokens: &[&str],
    reply: Option<&str>,
    data: &[u8],
) -> Outcome {
    let Some(stream) = js.stream(tokens[0]) else {
        return Outcome::NotServed;
    };
    if !stream.config_ref().allow_direct {
        return Outcome::NotServed;
    }
    let Some(reply) = reply else {
        return Outcome::Answered;
    };
    let answered = if tokens.len() > 1 {
        last_in_subject(js, &stream, &tokens[1..].join("."), reply, data)
    } else {
        by_request(js, &stream, reply, data)
    };
    match answered {
        Ok(()) => Outcome::Answered,
        Err(Blocked) => Outcome::WouldBlock,
    }
}

/// A single-message read: `Err(Blocked)` before anything is sent when it
/// would have waited on the disk.
fn found(
    read: Result<Option<StoredMsg>, super::errors::ApiError>,
) -> Result<Option<StoredMsg>, Blocked> {
    match read {
        Err(e) if e.is_read_would_block() => Err(Blocked),
        other => Ok(other.ok().flatten()),
    }
}

/// `DIRECT.GET.<stream>.<subject>`: the last message on the subject; a
/// body may only carry `no_hdr` (and `max_bytes`).
fn last_in_subject(
    js: &JetStream,
    stream: &Stream,
    subject: &str,
    reply: &str,
    data: &[u8],
) -> Result<(), Blocked> {
    let mut no_hdr = false;
    // Any body is read as JSON (white space alone is malformed).
    if !data.is_empty() {
        let Some(p) = parse(data) else {
            status(js, reply, 408, "Malformed Request");
            return Ok(());
        };
        let r = &p.req;
        if !r.last_by_subj.is_empty()
            || !r.next_by_subj.is_empty()
            || !r.multi_last.is_empty()
            || r.seq != 0
            || r.batch != 0
            || p.start.is_some()
            || r.up_to_seq != 0
            || p.up_to.is_some()
        {
            status(js, reply, 408, "Bad Request");
            return Ok(());
        }
        no_hdr = r.no_hdr;
    }
    match found(stream.last_by_subject(subject))? {
        Some(msg) => send_one(js, stream, reply, &msg, no_hdr),
        None => status(js, reply, 404, "Message Not Found"),
    }
    Ok(())
}

fn by_request(js: &JetStream, stream: &Stream, reply: &str, data: &[u8]) -> Result<(), Blocked> {
    if data.is_empty() {
        status(js, reply, 408, "Empty Request");
        return Ok(());
    }
    let Some(Parsed { req, start, up_to }) = parse(data) else {
        status(js, reply, 408, "Malformed Request");
        return Ok(());
    };
    let (last, next) = (!req.last_by_subj.is_empty(), !req.next_by_subj.is_empty());
    let multi = !req.multi_last.is_empty();
    if req.seq == 0 && !last && !next && !multi && start.is_none() {
        status(js, reply, 408, "Empty Request");
        return Ok(());
    }
    // Pairs of options that cannot go together (nats-server's list).
    let (seq, timed) = (req.seq > 0, start.is_some());
    let conflicts = [
        (seq, last),
        (seq, timed),
        (timed, last),
        (last, next),
        (last, req.batch > 0),
        (last, multi),
        (next, multi),
        (req.up_to_seq > 0, up_to.is_some()),
    ];
    if conflicts.iter().any(|(a, b)| *a && *b) {
        status(js, reply, 408, "Bad Request");
        return Ok(());
    }
    let max_bytes = if req.max_bytes == 0 {
        DEFAULT_MAX_BYTES
    } else {
        req.max_bytes
    };
    if multi {
        return multi_last(js, stream, reply, &req, up_to, max_bytes);
    }
    let from = match start {
        Some(t) => stream.seq_for_time(t),
        None => req.seq,
    };
    let next_for = next.then_some(req.next_by_subj.as_str());
    if req.batch == 0 {
        let read = match (from > 0, next_for) {
            (true, None) => stream.get_msg(from),
            (_, Some(subject)) => stream.next_by_subject(subject, from.max(1)),
            (false, None) => stream.last_by_subject(&req.last_by_subj),
        };
        match found(read)? {
            Some(msg) => send_one(js, stream, reply, &msg, req.no_hdr),
            None => status(js, reply, 404, "Message Not Found"),
        }
        return Ok(());
    }
    match stream.direct_batch(from, next_for, req.batch, max_bytes, !req.no_hdr) {
        Err(e) if e.is_read_would_block() => return Err(Blocked),
        Ok(Some(read)) => {
            send_batch(js, stream, reply, &read, req.no_hdr);
            let eob = HeaderBuilder::status(204, "EOB")
                .add("Nats-Num-Pending", read.pending)
                .add("Nats-Last-Sequence", read.last)
                .build();
            js.send(reply, None, &eob, b"");
        }
        _ => status(js, reply, 404, "Message Not Found"),
    }
    Ok(())
}

fn multi_last(
    js: &JetStream,
    stream: &Stream,
    reply: &str,
    req: &Request,
    up_to_time: Option<i64>,
    max_bytes: i64,
) -> Result<(), Blocked> {
    let mut up_to = req.up_to_seq;
    if let Some(t) = up_to_time {
        let seq = stream.seq_for_time(t);
        if seq <= stream.state().first_seq {
            status(js, reply, 404, "No Results");
            return Ok(());
        }
        // The sequence stored at or after the time is the ceiling's
        // successor.
        up_to = seq - 1;
    }
    if up_to == 0 {
        up_to = stream.state().last_seq;
    }
    match stream.direct_multi_last(&req.multi_last, req.seq, up_to, req.batch, max_bytes) {
        Ok(read) => {
            // nats-server sends the headers here even with `no_hdr`.
            send_batch(js, stream, reply, &read, false);
            let eob = HeaderBuilder::status(204, "EOB")
                .add("Nats-Num-Pending", read.pending)
                .add("Nats-Last-Sequence", read.last)
                .add("Nats-UpTo-Sequence", up_to)
                .build();
            js.send(reply, None, &eob, b"");
        }
        Err(MultiLastError::TooMany) => status(js, reply, 413, "Too Many Results"),
        Err(MultiLastError::NoResults) => status(js, reply, 404, "No Results"),
        Err(MultiLastError::Read) => status(js, reply, 404, "Message Not Found"),
        Err(MultiLastError::WouldBlock) => return Err(Blocked),
    }
    Ok(())
}

/// The headers every direct get reply carries.
fn described(stream: &Stream, msg: &StoredMsg) -> HeaderBuilder {
    HeaderBuilder::new()
        .extend_from(&msg.hdr)
        .add("Nats-Stream", &stream.name)
        .add("Nats-Subject", &msg.subject)
        .add("Nats-Sequence", msg.seq)
        .add("Nats-Time-Stamp", rfc3339(msg.ts))
}

fn send_one(js: &JetStream, stream: &Stream, reply: &str, msg: &StoredMsg, no_hdr: bool) {
    let h = if no_hdr {
        Vec::new()
    } else {
        described(stream, msg).build()
    };
    js.send(reply, None, &h, &msg.data);
}

fn send_batch(js: &JetStream, stream: &Stream, reply: &str, read: &BatchRead, no_hdr: bool) {
    for item in &read.items {
        let h = if no_hdr {
            Vec::new()
        } else {
            described(stream, &item.msg)
                .add("Nats-Num-Pending", item.pending)
                .add("Nats-Last-Sequence", item.previous)
                .build()
        };
        js.send(reply, None, &h, &item.msg.data);
    }
}
