//! Fast-ingest batch publishing (ADR-50 "fast batch", nats-server 2.14),
//! as nats-server 2.15.1 does it on one server.
//!
//! A publisher marks each message of a batch in its reply subject,
//! `<prefix>.<id>.<flow>.<gap>.<batch seq>.<op>.$FI`: `op` 0 starts the
//! batch, 1 appends, 2 stores the message and commits, 3 commits without
//! storing it (end of batch), 4 pings. Unlike an atomic batch nothing is
//! staged: every message is checked and stored as a plain publish would
//! be. The server answers on the reply subjects with
//! - flow acks `{"type":"ack","seq":N,"msgs":M}`: batch messages up to
//!   `N` are stored (and, here, durable); the next ack comes `M` messages
//!   later (at most the client's `flow`, at most 500, shared between the
//!   stream's fast batches; the first message's ack has `seq` 0);
//! - gap notices `{"type":"gap","last_seq":E,"seq":S}` when a batch
//!   sequence is skipped: with gap mode `ok` the batch goes on from `S`,
//!   with `fail` it ends there;
//! - error notices `{"type":"err","seq":S,"error":{...}}` when a message
//!   fails a check (expected sequences, limits...): with `ok` the batch
//!   goes on, with `fail` it ends;
//! - the final pub ack, `{"stream":..,"seq":..,"batch":id,"count":n}`
//!   (`seq` the stream sequence of the batch's last stored message, `n`
//!   the last batch sequence taken), when the batch commits or ends early.
//!
//! A batch idle for [`super::BATCH_IDLE`] is forgotten without a reply;
//! a stream holds at most [`MAX_PER_STREAM`] and the process
//! [`MAX_TOTAL`] batches. Batch state lives only in memory: after a
//! restart a batch's next message is refused as unknown (10208), as
//! nats-server refuses a batch it does not know.
//!
//! This module owns the reply-subject grammar and the per-batch state
//! machine; it must not store messages itself (that is
//! `StreamInner::store_msg`, which runs every check a plain publish runs)
//! nor send anything but the replies above.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use super::json_str;
use crate::jetstream::errors::ApiError;

/// The reply subject suffix marking a fast batch message.
pub(crate) const SUFFIX: &str = ".$FI";
/// Most fast batches one stream holds at once (nats-server's default).
pub(crate) const MAX_PER_STREAM: usize = 1000;
/// Most fast batches the process holds at once (nats-server's default).
pub(crate) const MAX_TOTAL: usize = 50_000;
/// Highest flow value the server grants (shared by a stream's batches).
const MAX_FLOW: u16 = 500;
/// Flow value a client gets when its reply does not say (or says 0).
const DEFAULT_FLOW: u16 = 10;

/// Fast batches held by every stream of the process.
static TOTAL: AtomicUsize = AtomicUsize::new(0);

/// What a message does to its batch (the `<op>` token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// 0: the first message.
    Start,
    /// 1: a further message.
    Append,
    /// 2: store this message and commit.
    Commit,
    /// 3: commit without storing this message.
    CommitEob,
    /// 4: keep the batch alive and resend the last flow ack.
    Ping,
}

/// A fast batch reply subject, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request<'a> {
    pub id: &'a str,
    /// Batch sequence (1-based).
    pub seq: u64,
    /// The client's flow value: the most messages per flow ack.
    pub flow: u16,
    /// Gap mode `ok` (true) or `fail`.
    pub gap_ok: bool,
    pub op: Op,
}

impl Request<'_> {
    fn commits(&self) -> bool {
        matches!(self.op, Op::Commit | Op::CommitEob)
    }
}

/// A reply subject ending in [`SUFFIX`] that does not follow the grammar
/// (refused with 10206).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidPattern;

/// Digits only, no sign, no overflow.
fn number(token: &str) -> Option<u64> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse().ok()
}

/// Parses `<prefix>.<id>.<flow>.<gap>.<seq>.<op>.$FI` (the caller checked
/// the suffix), with nats-server's rules: `op` 0..=4; `seq` 1 and up (not
/// `u64::MAX`), 1 for a start and not for an append or an end-of-batch;
/// gap `ok` or `fail`; a missing or zero flow is 10, a larger one than
/// 65535 is 65535; the id may be empty and is checked for length later.
pub(crate) fn parse(reply: &str) -> Result<Request<'_>, InvalidPattern> {
    let body = reply.strip_suffix(SUFFIX).ok_or(InvalidPattern)?;
    let mut tokens = body.rsplitn(6, '.');
    let mut next = || tokens.next().ok_or(InvalidPattern);
    let op = match number(next()?) {
        Some(0) => Op::Start,
        Some(1) => Op::Append,
        Some(2) => Op::Commit,
        Some(3) => Op::CommitEob,
        Some(4) => Op::Ping,
        _ => return Err(InvalidPattern),
    };
    let seq = number(next()?).ok_or(InvalidPattern)?;
    if seq == 0 || seq == u64::MAX {
        return Err(InvalidPattern);
    }
    let misplaced = match op {
        Op::Start => seq != 1,
        Op::Append | Op::CommitEob => seq == 1,
        Op::Commit | Op::Ping => false,
    };
    if misplaced {
        return Err(InvalidPattern);
    }
    let gap_ok = match next()? {
        "ok" => true,
        "fail" => false,
        _ => return Err(InvalidPattern),
    };
    let flow_token = next()?;
    let flow = match flow_token.bytes().all(|b| b.is_ascii_digit()) && !flow_token.is_empty() {
        // All digits: zero means the default; too large saturates.
        true => match flow_token.parse::<u64>() {
            Ok(0) => DEFAULT_FLOW,
            Ok(n) => u16::try_from(n).unwrap_or(u16::MAX),
            Err(_) => u16::MAX,
        },
        false => DEFAULT_FLOW,
    };
    let id = next()?;
    // There must be a prefix before the id.
    next()?;
    Ok(Request {
        id,
        seq,
        flow,
        gap_ok,
        op,
    })
}

/// One fast batch's progress.
#[derive(Debug)]
pub(crate) struct Batch {
    /// Highest batch sequence taken.
    lseq: u64,
    /// Highest batch sequence known stored (at most `lseq`).
    pseq: u64,
    /// Batch sequence of the last flow ack.
    fseq: u64,
    /// Stream sequence of the batch's last stored message (0: none yet).
    sseq: u64,
    /// A flow ack every this many messages.
    every: u16,
    /// The client's flow value (the upper bound of `every`).
    max_every: u16,
    gap_ok: bool,
    last_active: Instant,
}

/// What a message of a fast batch leads to, for the stream to carry out.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Replies {
    /// Sent at once (gap and error notices, the first message's flow ack,
    /// a refusal).
    pub now: Vec<Vec<u8>>,
    /// Sent once what was stored so far is durable (flow acks, the final
    /// pub ack).
    pub durable: Vec<Vec<u8>>,
}

/// What to do with the message itself after [`Batches::before_store`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Store it, then report with [`Batches::after_store`].
    Store,
    /// Nothing to store; the replies say it all.
    Done,
}

/// How storing a batch message went.
#[derive(Debug)]
pub(crate) enum Outcome {
    Stored(u64),
    Duplicate(u64),
    Refused(ApiError),
}

/// A stream's fast batches, by id. Counted in the process total while
/// held.
#[derive(Debug, Default)]
pub(crate) struct Batches {
    by_id: HashMap<String, Batch>,
}

impl Drop for Batches {
    fn drop(&mut self) {
        TOTAL.fetch_sub(self.by_id.len(), Ordering::Relaxed);
    }
}

fn flow_ack(seq: u64, every: u16) -> Vec<u8> {
    format!("{{\"type\":\"ack\",\"seq\":{seq},\"msgs\":{every}}}").into_bytes()
}

fn gap_notice(expected: u64, seq: u64) -> Vec<u8> {
    format!("{{\"type\":\"gap\",\"last_seq\":{expected},\"seq\":{seq}}}").into_bytes()
}

fn error_notice(seq: u64, err: &ApiError) -> Vec<u8> {
    serde_json::json!({"type": "err", "seq": seq, "error": err})
        .to_string()
        .into_bytes()
}

fn pub_ack(stream: &str, seq: u64, id: &str, count: u64) -> Vec<u8> {
    format!(
        "{{\"stream\":{},\"seq\":{seq},\"batch\":{},\"count\":{count}}}",
        json_str(stream),
        json_str(id)
    )
    .into_bytes()
}

/// A publish refusal as a plain publish gets it.
pub(crate) fn refusal(stream: &str, err: &ApiError) -> Vec<u8> {
    serde_json::json!({"error": err, "stream": stream, "seq": 0})
        .to_string()
        .into_bytes()
}

impl Batches {
    /// Forgets every batch (the stream no longer allows fast batches).
    pub(crate) fn clear(&mut self) {
        TOTAL.fetch_sub(self.by_id.len(), Ordering::Relaxed);
        self.by_id.clear();
    }

    fn remove(&mut self, id: &str) {
        if self.by_id.remove(id).is_some() {
            TOTAL.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Forgets the batches idle for [`super::BATCH_IDLE`].
    fn sweep(&mut self, now: Instant) {
        let before = self.by_id.len();
        self.by_id
            .retain(|_, b| now.duration_since(b.last_active) < super::BATCH_IDLE);
        TOTAL.fetch_sub(before - self.by_id.len(), Ordering::Relaxed);
    }

    /// Sends the next flow ack if batch `id` is due one (nats-server's
    /// ramp: the flow value doubles towards, or halves down to, 500 shared
    /// by the stream's batches and capped by the client's flow).
    fn check_flow(&mut self, id: &str, out: &mut Replies) -> bool {
        let share = u16::try_from((usize::from(MAX_FLOW) / self.by_id.len().max(1)).max(1))
            .unwrap_or(MAX_FLOW);
        let Some(b) = self.by_id.get_mut(id) else {
            return false;
        };
        let every = u64::from(b.every.max(1));
        if b.pseq < b.fseq + every {
            return false;
        }
        b.fseq += (b.pseq - b.fseq) / every * every;
        let target = share.min(b.max_every);
        if b.every < target {
            b.every = b.every.saturating_mul(2).min(target);
        } else if b.every > target {
            b.every = (b.every / 2).max(target);
        }
        out.durable.push(flow_ack(b.fseq, b.every));
        true
    }

    /// Ends batch `id`: its pub ack names the last stored message and the
    /// last batch sequence taken.
    fn commit(&mut self, stream: &str, id: &str, out: &mut Replies) {
        if let Some(b) = self.by_id.get(id) {
            out.durable.push(pub_ack(stream, b.sseq, id, b.lseq));
        }
        self.remove(id);
    }

    /// Takes a message of a fast batch up to the point of storing it:
    /// finds or starts its batch, handles pings, gaps and commits without
    /// a message. `Err` is a refusal of the message (sent only if the
    /// stream acks); `acks`: the stream acks publishes (not `no_ack`).
    pub(crate) fn before_store(
        &mut self,
        stream: &str,
        req: &Request<'_>,
        acks: bool,
        now: Instant,
        out: &mut Replies,
    ) -> Result<Next, ApiError> {
        if req.id.len() > 64 {
            return Err(ApiError::fast_batch_id_invalid());
        }
        match self.by_id.get(req.id) {
            Some(b) if now.duration_since(b.last_active) >= super::BATCH_IDLE => {
                self.remove(req.id);
            }
            _ => {}
        }
        if !self.by_id.contains_key(req.id) {
            // Only a first message starts a batch (a ping never does).
            if req.seq != 1 || req.op == Op::Ping {
                return Err(ApiError::fast_batch_unknown());
            }
            self.sweep(now);
            if self.by_id.len() >= MAX_PER_STREAM {
                return Err(ApiError::fast_batch_too_many_inflight());
            }
            if TOTAL.fetch_add(1, Ordering::Relaxed) >= MAX_TOTAL {
                TOTAL.fetch_sub(1, Ordering::Relaxed);
                return Err(ApiError::fast_batch_too_many_inflight());
            }
            // The only batch gets what it asks for (up to 500); others
            // start at one and ramp up.
            let every = if self.by_id.is_empty() {
                req.flow.min(MAX_FLOW)
            } else {
                1
            };
            self.by_id.insert(
                req.id.to_owned(),
                Batch {
                    lseq: 0,
                    pseq: 0,
                    fseq: 0,
                    sseq: 0,
                    every,
                    max_every: req.flow,
                    gap_ok: req.gap_ok,
                    last_active: now,
                },
            );
        }
        let Some(b) = self.by_id.get_mut(req.id) else {
            return Ok(Next::Done);
        };
        b.last_active = now;
        if req.op == Op::Ping {
            let mut resend = true;
            if req.seq > b.lseq {
                // The ping's sequence is the highest the client sent: what
                // lies above what arrived was lost.
                out.now.push(gap_notice(b.lseq + 1, req.seq + 1));
                if b.gap_ok {
                    b.lseq = req.seq;
                    b.pseq = b.lseq;
                    resend = !self.check_flow(req.id, out);
                } else {
                    self.commit(stream, req.id, out);
                    resend = false;
                }
            }
            if resend && let Some(b) = self.by_id.get(req.id) {
                out.durable.push(flow_ack(b.fseq, b.every));
            }
            return Ok(Next::Done);
        }
        b.lseq += 1;
        if b.lseq != req.seq {
            // nats-server 2.15.1 reports a repeat too (`seq` below
            // `last_seq`).
            out.now.push(gap_notice(b.lseq, req.seq));
            if b.gap_ok && req.seq > b.lseq {
                b.lseq = req.seq;
            } else {
                // A repeat, or a gap the batch does not allow: it ends with
                // what it had.
                b.lseq -= 1;
                self.commit(stream, req.id, out);
                return Ok(Next::Done);
            }
        }
        if req.op == Op::CommitEob {
            b.lseq -= 1;
            b.pseq = b.lseq;
            self.commit(stream, req.id, out);
            return Ok(Next::Done);
        }
        if req.seq == 1 && acks && !req.commits() {
            out.now.push(flow_ack(0, b.every));
        }
        Ok(Next::Store)
    }

    /// Reports how storing a message of batch `req` went.
    pub(crate) fn after_store(
        &mut self,
        stream: &str,
        req: &Request<'_>,
        outcome: &Outcome,
        out: &mut Replies,
    ) {
        let Some(b) = self.by_id.get_mut(req.id) else {
            return;
        };
        match outcome {
            Outcome::Stored(seq) => {
                b.sseq = *seq;
                b.pseq = b.lseq;
                if req.commits() {
                    self.commit(stream, req.id, out);
                } else {
                    self.check_flow(req.id, out);
                }
            }
            Outcome::Duplicate(seq) => {
                b.pseq = req.seq;
                let (gap_ok, lseq) = (b.gap_ok, b.lseq);
                self.check_flow(req.id, out);
                if !req.commits() {
                    return;
                }
                if !gap_ok && lseq == 1 {
                    // A one-message batch answers as a plain publish would.
                    out.now.push(
                        format!(
                            "{{\"stream\":{},\"seq\":{seq},\"duplicate\":true,\"batch\":{},\"count\":{}}}",
                            json_str(stream),
                            json_str(req.id),
                            req.seq
                        )
                        .into_bytes(),
                    );
                    self.remove(req.id);
                    return;
                }
                self.commit(stream, req.id, out);
            }
            Outcome::Refused(err) => {
                if !b.gap_ok && b.lseq == 1 {
                    out.now.push(refusal(stream, err));
                    self.remove(req.id);
                    return;
                }
                out.now.push(error_notice(req.seq, err));
                if b.gap_ok && !req.commits() {
                    return;
                }
                b.lseq -= 1;
                b.pseq = b.lseq;
                self.commit(stream, req.id, out);
            }
        }
    }

    /// Removes batch `id` (a refused required API level).
    pub(crate) fn abandon(&mut self, id: &str) {
        self.remove(id);
    }

    /// How many batches are held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(reply: &str) -> Request<'_> {
        parse(reply).expect("valid")
    }

    #[test]
    fn reply_subject_grammar_follows_nats_server() {
        let r = req("_INBOX.x.b1.10.ok.1.0.$FI");
        assert_eq!(
            r,
            Request {
                id: "b1",
                seq: 1,
                flow: 10,
                gap_ok: true,
                op: Op::Start
            }
        );
        assert_eq!(req("p.b.0.fail.2.1.$FI").flow, DEFAULT_FLOW);
        assert_eq!(req("p.b.x.fail.2.1.$FI").flow, DEFAULT_FLOW);
        assert_eq!(req("p.b.99999.fail.2.1.$FI").flow, u16::MAX);
        assert_eq!(req("p..5.ok.1.2.$FI").id, "");
        assert!(!req("p.b.5.fail.7.4.$FI").gap_ok);
        for bad in [
            "b.10.ok.1.0.$FI",      // no prefix
            "p.b.10.ok.1.5.$FI",    // unknown op
            "p.b.10.ok.1.x.$FI",    // op not a number
            "p.b.10.ok.2.0.$FI",    // start that is not 1
            "p.b.10.ok.1.1.$FI",    // append at 1
            "p.b.10.ok.1.3.$FI",    // end of batch at 1
            "p.b.10.ok.0.2.$FI",    // sequence 0
            "p.b.10.maybe.1.0.$FI", // gap mode
            "p.b.10.ok.18446744073709551615.1.$FI",
            "$FI",
            "p.b.10.ok.1.0.$FX",
        ] {
            assert_eq!(parse(bad), Err(InvalidPattern), "{bad}");
        }
    }

    fn run(b: &mut Batches, reply: &str, store_as: Option<Outcome>) -> Replies {
        let r = req(reply);
        let mut out = Replies::default();
        match b.before_store("S", &r, true, Instant::now(), &mut out) {
            Err(e) => out.now.push(refusal("S", &e)),
            Ok(Next::Done) => {}
            Ok(Next::Store) => {
                let o = store_as.expect("a store outcome");
                b.after_store("S", &r, &o, &mut out);
            }
        }
        out
    }

    fn text(v: &[Vec<u8>]) -> Vec<String> {
        v.iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    #[test]
    fn flow_acks_come_every_n_and_the_commit_acks_the_batch() {
        let mut b = Batches::default();
        let o = run(&mut b, "p.f.2.fail.1.0.$FI", Some(Outcome::Stored(1)));
        assert_eq!(text(&o.now), [r#"{"type":"ack","seq":0,"msgs":2}"#]);
        assert!(o.durable.is_empty());
        let o = run(&mut b, "p.f.2.fail.2.1.$FI", Some(Outcome::Stored(2)));
        assert_eq!(text(&o.durable), [r#"{"type":"ack","seq":2,"msgs":2}"#]);
        let o = run(&mut b, "p.f.2.fail.3.2.$FI", Some(Outcome::Stored(3)));
        assert_eq!(
            text(&o.durable),
            [r#"{"stream":"S","seq":3,"batch":"f","count":3}"#]
        );
        assert_eq!(b.len(), 0);
        let o = run(&mut b, "p.f.2.fail.4.1.$FI", None);
        assert_eq!(o.now.len(), 1);
        assert!(text(&o.now)[0].contains(r#""err_code":10208"#));
    }

    #[test]
    fn a_gap_ends_a_fail_batch_and_is_skipped_in_an_ok_batch() {
        let mut b = Batches::default();
        run(&mut b, "p.f.10.fail.1.0.$FI", Some(Outcome::Stored(7)));
        let o = run(&mut b, "p.f.10.fail.3.1.$FI", None);
        assert_eq!(text(&o.now), [r#"{"type":"gap","last_seq":2,"seq":3}"#]);
        assert_eq!(
            text(&o.durable),
            [r#"{"stream":"S","seq":7,"batch":"f","count":1}"#]
        );
        run(&mut b, "p.k.10.ok.1.0.$FI", Some(Outcome::Stored(8)));
        let o = run(&mut b, "p.k.10.ok.5.1.$FI", Some(Outcome::Stored(9)));
        assert_eq!(text(&o.now), [r#"{"type":"gap","last_seq":2,"seq":5}"#]);
        let o = run(&mut b, "p.k.10.ok.6.3.$FI", None);
        assert_eq!(
            text(&o.durable),
            [r#"{"stream":"S","seq":9,"batch":"k","count":5}"#]
        );
    }

    #[test]
    fn a_second_batch_starts_at_one_and_ramps_up() {
        let mut b = Batches::default();
        run(&mut b, "p.a.100.ok.1.0.$FI", Some(Outcome::Stored(1)));
        let o = run(&mut b, "p.b.100.ok.1.0.$FI", Some(Outcome::Stored(2)));
        assert_eq!(
            text(&o.now),
            [r#"{"type":"ack","seq":0,"msgs":1}"#],
            "a second batch acks every message at first"
        );
        assert_eq!(text(&o.durable), [r#"{"type":"ack","seq":1,"msgs":2}"#]);
    }

    #[test]
    fn an_idle_batch_is_forgotten_and_counted_out() {
        let mut b = Batches::default();
        run(&mut b, "p.a.10.ok.1.0.$FI", Some(Outcome::Stored(1)));
        if let Some(x) = b.by_id.get_mut("a") {
            x.last_active -= super::super::BATCH_IDLE;
        }
        let o = run(&mut b, "p.a.10.ok.2.1.$FI", None);
        assert_eq!(text(&o.now).len(), 1);
        assert!(text(&o.now)[0].contains("10208"));
        assert_eq!(b.len(), 0);
    }
}
