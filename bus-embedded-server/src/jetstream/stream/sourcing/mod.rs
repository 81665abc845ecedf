//! Mirrors and sources (nats-server's `mirror` / `sources`): a stream that
//! copies other streams of its account, or of another account whose
//! JetStream API it imports (`external`), read directly from their stores
//! inside the server.
//!
//! One task per sourcing stream ([`Sourcing`]) reads each origin from its
//! position on, only messages the origin has made durable, and stores them
//! in the sourcing stream:
//! - a mirror keeps the origin's sequences and timestamps (sequences the
//!   origin no longer has are skipped: a floor when the mirror is empty,
//!   else one record raising its last sequence), so its position is its
//!   own last sequence;
//! - a source stores each message as a new one with a `Nats-Stream-Source`
//!   header (origin name, origin sequence, filters, destinations, original
//!   subject, origin identity, nats-server's layout), so its position is in
//!   the message itself, written atomically with it.
//!
//! After a restart (or a crash) the mirror resumes after its last stored
//! sequence and each source after the newest stored message carrying its
//! index name: nothing is copied twice and nothing skipped, since both are
//! read back from what the store kept. A mirror's store gives a torn last
//! record's sequence back (`CutTail::Refill`), so the mirror copies that
//! origin message again; a source copies it again under a new sequence.
//!
//! The task is woken by the origin when it has new durable messages (see
//! [`Stream::watch`]; a stream nobody sources pays one relaxed load), and
//! once a second to find origins that appear later.
//!
//! This module never holds an origin's lock while taking the sourcing
//! stream's (each read and each store is its own short critical section),
//! and never writes to sockets.

pub(crate) mod config;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;

use super::Stream;
use crate::jetstream::errors::ApiError;
use crate::jetstream::store::StoredMsg;
use crate::jetstream::types::{StreamSource, now_nanos};
use crate::jetstream::{JetStream, lock};

/// The header a sourced message carries.
pub const SOURCE_HEADER: &str = "Nats-Stream-Source";
/// Most messages read from an origin before storing them.
const BATCH: usize = 256;
/// How often an idle task looks for its origins without being woken.
const IDLE: Duration = Duration::from_secs(1);
/// An origin never reached is reported missing after this long.
const MISSING_NEW: Duration = Duration::from_millis(1500);
/// An origin that went away is reported missing after this long.
const MISSING_GONE: Duration = Duration::from_secs(10);

/// One mirror or source: its configuration and where it is.
#[derive(Debug)]
pub(crate) struct Source {
    pub cfg: StreamSource,
    pub iname: String,
    compiled: config::Compiled,
    /// The newest origin sequence stored (sources) or the sourcing
    /// stream's last sequence (mirror).
    pos: AtomicU64,
    /// The next origin sequence to look at.
    next: AtomicU64,
    /// False until the position is known (recovered or started).
    ready: AtomicBool,
    /// The origin's last sequence seen, for the lag when it is gone.
    lag: AtomicU64,
    /// Unix ns of the last contact with the origin (0: never).
    last_contact: AtomicI64,
    /// The origin being watched (to notice it was recreated).
    origin: Mutex<Weak<Stream>>,
    /// The origin's identity (creation time hash).
    ident: Mutex<String>,
    /// Why storing failed last (logged once per change).
    failing: Mutex<Option<String>>,
    /// Since when (Unix ns) the origin is not found; 0 while it is.
    missing_since: AtomicI64,
    /// For partition transforms.
    rng: crate::mapping::Rng,
}

impl Source {
    fn new(cfg: &StreamSource) -> Source {
        Source {
            iname: config::index_name(cfg),
            compiled: config::Compiled::new(cfg),
            cfg: cfg.clone(),
            pos: AtomicU64::new(0),
            next: AtomicU64::new(1),
            ready: AtomicBool::new(false),
            lag: AtomicU64::new(0),
            last_contact: AtomicI64::new(0),
            origin: Mutex::new(Weak::new()),
            ident: Mutex::new(String::new()),
            failing: Mutex::new(None),
            missing_since: AtomicI64::new(0),
            rng: crate::mapping::Rng::new(),
        }
    }

    /// Stream info's `StreamSourceInfo` for this source.
    fn info(&self, js: Option<&JetStream>, mirror: bool) -> Value {
        let pos = self.pos.load(Ordering::Acquire);
        let origin = lock(&self.origin).upgrade().filter(|o| !o.is_closed());
        let origin = match (&self.cfg.external, origin) {
            (Some(_), o) => o,
            (None, _) => js.and_then(|js| js.stream(&self.cfg.name)),
        };
        let lag = match origin {
            Some(origin) if self.ready.load(Ordering::Acquire) => {
                let lag = origin.pending_from(pos + 1, &self.compiled.filter);
                self.lag.store(lag, Ordering::Release);
                lag
            }
            _ => self.lag.load(Ordering::Acquire),
        };
        let last = self.last_contact.load(Ordering::Acquire);
        let active = if last == 0 {
            -1
        } else {
            now_nanos().saturating_sub(last).max(0)
        };
        let mut v = serde_json::Map::new();
        v.insert("name".into(), json!(self.cfg.name));
        if let Some(ext) = &self.cfg.external {
            v.insert("external".into(), json!(ext));
        }
        v.insert("lag".into(), json!(lag));
        if !mirror && pos > 0 {
            v.insert("seq".into(), json!(pos));
        }
        v.insert("active".into(), json!(active));
        // nats-server shows a mirror's filter once it reached the origin.
        if (!mirror || last != 0) && !self.cfg.filter_subject.is_empty() {
            v.insert("filter_subject".into(), json!(self.cfg.filter_subject));
        }
        if !self.cfg.subject_transforms.is_empty() {
            v.insert(
                "subject_transforms".into(),
                json!(self.cfg.subject_transforms),
            );
        }
        // nats-server reports a missing origin once its consumer could
        // not be created: soon for an origin never reached, after its
        // stall detection for one that went away.
        let since = self.missing_since.load(Ordering::Acquire);
        if since > 0 {
            let missing_for = now_nanos().saturating_sub(since);
            let wait = if last == 0 { MISSING_NEW } else { MISSING_GONE };
            if missing_for >= wait.as_nanos() as i64 {
                v.insert("error".into(), json!(ApiError::stream_not_found()));
            }
        }
        Value::Object(v)
    }
}

/// The mirror or the sources of one stream, and the task copying them.
#[derive(Debug)]
pub(crate) struct Sourcing {
    mirror: bool,
    pub sources: Vec<Arc<Source>>,
    wake: Arc<Notify>,
    stop: AtomicBool,
}

impl Sourcing {
    /// What `target`'s configuration asks to copy (not started yet, see
    /// [`Sourcing::spawn`]); `None` when it has no mirror and no sources.
    /// `previous` (the sourcing being replaced by a configuration update)
    /// hands over the positions of the sources that stay.
    pub fn new(target: &Stream, previous: Option<&Sourcing>) -> Option<Arc<Sourcing>> {
        let cfg = target.config_ref();
        let (mirror, list): (bool, Vec<&StreamSource>) = match (&cfg.mirror, &cfg.sources) {
            (Some(m), _) => (true, vec![m]),
            (None, Some(s)) if !s.is_empty() => (false, s.iter().collect()),
            _ => return None,
        };
        let sources: Vec<Arc<Source>> = list
            .into_iter()
            .map(|c| {
                let s = Source::new(c);
                if let Some(old) = previous.and_then(|p| {
                    p.sources
                        .iter()
                        .find(|o| o.iname == s.iname && o.ready.load(Ordering::Acquire))
                }) {
                    s.pos
                        .store(old.pos.load(Ordering::Acquire), Ordering::Release);
                    s.next
                        .store(old.next.load(Ordering::Acquire), Ordering::Release);
                    *lock(&s.ident) = lock(&old.ident).clone();
                    s.ready.store(true, Ordering::Release);
                }
                Arc::new(s)
            })
            .collect();
        Some(Arc::new(Sourcing {
            mirror,
            sources,
            wake: Arc::new(Notify::new()),
            stop: AtomicBool::new(false),
        }))
    }

    /// Starts the task copying into `target`.
    pub fn spawn(self: &Arc<Self>, target: &Arc<Stream>) {
        tokio::spawn(run(Arc::downgrade(target), Arc::clone(self)));
    }

    /// Makes the task run a round now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops the task (the stream is deleted, stopped or reconfigured).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Stream info's `mirror` (object) or `sources` (array).
    pub fn info(&self, js: Option<&JetStream>) -> (&'static str, Value) {
        if self.mirror {
            let v = self
                .sources
                .first()
                .map_or(Value::Null, |s| s.info(js, true));
            ("mirror", v)
        } else {
            let list = self.sources.iter().map(|s| s.info(js, false)).collect();
            ("sources", Value::Array(list))
        }
    }
}

async fn run(target: Weak<Stream>, sourcing: Arc<Sourcing>) {
    loop {
        if sourcing.stop.load(Ordering::SeqCst) {
            return;
        }
        let Some(t) = target.upgrade() else {
            return;
        };
        if t.is_closed() {
            return;
        }
        let Some(js) = t.js.upgrade() else {
            return;
        };
        let mut progressed = false;
        for src in &sourcing.sources {
            if sourcing.stop.load(Ordering::SeqCst) {
                return;
            }
            // Reading the store may wait on the disk: off the async workers.
            let (t2, js2, src2, s2) = (
                Arc::clone(&t),
                Arc::clone(&js),
                Arc::clone(src),
                Arc::clone(&sourcing),
            );
            match tokio::task::spawn_blocking(move || step(&js2, &t2, &s2, &src2)).await {
                Ok(p) => progressed |= p,
                Err(_) => return,
            }
        }
        drop((t, js));
        if !progressed {
            tokio::select! {
                _ = sourcing.wake.notified() => {}
                _ = tokio::time::sleep(IDLE) => {}
            }
        }
    }
}

/// One round for one source: find the origin, copy what it has made
/// durable since the position (up to [`BATCH`] messages). True when
/// something was stored.
fn step(js: &JetStream, t: &Arc<Stream>, sourcing: &Sourcing, src: &Source) -> bool {
    // One round at a time per stream (a configuration update replaces the
    // task; the old one may still be in a round).
    let _round = lock(&t.sourcing_round);
    if sourcing.stop.load(Ordering::SeqCst) || t.is_closed() {
        return false;
    }
    // An external origin lives in the account the API prefix leads to
    // through this account's imports (nats-server goes over those imports;
    // here the other account's streams are read directly).
    let origin_js = match &src.cfg.external {
        None => None,
        Some(ext) => match js
            .router()
            .and_then(|r| r.external_jetstream(&ext.api, &ext.deliver))
        {
            Some(other) => Some(other),
            // Nothing answers under that prefix: nats-server's consumer
            // request times out and it reports nothing; neither do we.
            None => return false,
        },
    };
    let origin_js: &JetStream = origin_js.as_deref().unwrap_or(js);
    let Some(origin) = origin_js.stream(&src.cfg.name) else {
        note_missing(src);
        return false;
    };
    src.missing_since.store(0, Ordering::Release);
    if !src.ready.load(Ordering::Acquire) {
        start_position(t, sourcing.mirror, src, &origin);
        src.ready.store(true, Ordering::Release);
    }
    // Watch the origin (again when it was recreated).
    let same = lock(&src.origin)
        .upgrade()
        .is_some_and(|o| Arc::ptr_eq(&o, &origin));
    if !same {
        origin.watch(&sourcing.wake);
        *lock(&src.origin) = Arc::downgrade(&origin);
        let ident = config::identity(origin.created);
        let mut known = lock(&src.ident);
        if !known.is_empty() && *known != ident && !sourcing.mirror {
            // The origin was deleted and created again: start over, as
            // nats-server does for a recreated source.
            tracing::warn!(stream = %t.name, source = %src.cfg.name, "source stream was recreated, resetting source state");
            src.pos.store(0, Ordering::Release);
            src.next.store(1, Ordering::Release);
        }
        *known = ident;
    }
    src.last_contact.store(now_nanos(), Ordering::Release);
    let visible = origin.visible_seq();
    let mut seq = src.next.load(Ordering::Acquire);
    let mut msgs: Vec<StoredMsg> = Vec::new();
    while msgs.len() < BATCH && seq <= visible {
        match origin.next_matching(seq, &src.compiled.filter) {
            Ok(Some(m)) if m.seq <= visible => {
                seq = m.seq + 1;
                msgs.push(m);
            }
            Ok(_) => {
                seq = visible + 1;
                break;
            }
            Err(e) => {
                note_failure(t, src, format!("reading {}: {e}", src.cfg.name));
                break;
            }
        }
    }
    if msgs.is_empty() {
        src.next.store(seq, Ordering::Release);
        let pos = src.pos.load(Ordering::Acquire);
        src.lag.store(
            origin.pending_from(pos + 1, &src.compiled.filter),
            Ordering::Release,
        );
        return false;
    }
    let rng = &src.rng;
    // The position moves under the stream's lock, with each message: stream
    // info reads the state under that lock and the lag after it, so it never
    // shows a message stored and still counted as lag.
    let progress = |seq: u64| src.pos.store(seq, Ordering::Release);
    let result = if sourcing.mirror {
        let batch: Vec<StoredMsg> = msgs
            .into_iter()
            .map(|mut m| {
                if let Some(s) = src.compiled.subject(&m.subject, rng) {
                    m.subject = Arc::from(s);
                }
                m
            })
            .collect();
        t.store_mirrored(&batch, progress)
    } else {
        let ident = lock(&src.ident).clone();
        let batch: Vec<(String, Vec<u8>, StoredMsg)> = msgs
            .into_iter()
            .map(|m| {
                let subject = src
                    .compiled
                    .subject(&m.subject, rng)
                    .unwrap_or_else(|| m.subject.to_string());
                let value = format!(
                    "{} {} {} {}{}",
                    src.iname.split(' ').next().unwrap_or_default(),
                    m.seq,
                    src.iname.split(' ').skip(1).collect::<Vec<_>>().join(" "),
                    m.subject,
                    if ident.is_empty() {
                        String::new()
                    } else {
                        format!(" {ident}")
                    }
                );
                let hdr = sourced_header(&m.hdr, &value);
                (subject, hdr, m)
            })
            .collect();
        t.store_sourced(&batch, progress)
    };
    let (stored, failure) = match result {
        Ok(last) => (last, None),
        Err((last, e)) => (last, Some(e)),
    };
    if let Some(last) = stored {
        src.pos.store(last, Ordering::Release);
        src.next.store(last + 1, Ordering::Release);
        src.lag.store(
            origin.pending_from(last + 1, &src.compiled.filter),
            Ordering::Release,
        );
    }
    match failure {
        Some(e) => {
            note_failure(t, src, e.description);
            false
        }
        None => {
            src.next.store(seq, Ordering::Release);
            *lock(&src.failing) = None;
            stored.is_some()
        }
    }
}

/// The origin is not there (or not reachable through the imports).
fn note_missing(src: &Source) {
    let _ = src
        .missing_since
        .compare_exchange(0, now_nanos(), Ordering::AcqRel, Ordering::Acquire);
}

fn note_failure(t: &Stream, src: &Source, why: String) {
    let mut failing = lock(&src.failing);
    if failing.as_deref() != Some(why.as_str()) {
        tracing::warn!(stream = %t.name, source = %src.iname, "storing from the origin failed, retrying: {why}");
        *failing = Some(why);
    }
}

/// Where a mirror or source starts: after what the sourcing stream already
/// holds (its last sequence for a mirror, the newest message with this
/// source's header for a source), else at the configured start.
fn start_position(t: &Stream, mirror: bool, src: &Source, origin: &Stream) {
    let found = if mirror {
        let last = t.state().last_seq;
        (last > 0).then_some(last)
    } else {
        t.last_sourced(&src.iname).map(|(seq, ident)| {
            *lock(&src.ident) = ident;
            seq
        })
    };
    let next = match found {
        Some(pos) => {
            src.pos.store(pos, Ordering::Release);
            pos + 1
        }
        None if src.cfg.opt_start_seq > 0 => src.cfg.opt_start_seq,
        None => match src
            .cfg
            .opt_start_time
            .as_deref()
            .and_then(crate::jetstream::types::parse_rfc3339)
        {
            Some(ts) => origin.seq_for_time(ts),
            None => 1,
        },
    };
    src.next.store(next.max(1), Ordering::Release);
}

/// The header block of a sourced message: the origin's, without its own
/// `Nats-Stream-Source`, `Nats-Expected-*` and `Nats-Batch-*` headers, with
/// this source's `Nats-Stream-Source`.
fn sourced_header(hdr: &[u8], value: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(hdr.len() + value.len() + 40);
    out.extend_from_slice(b"NATS/1.0\r\n");
    if let Ok(text) = std::str::from_utf8(hdr) {
        for line in text.split("\r\n").skip(1) {
            if line.is_empty() {
                continue;
            }
            let name = line.split_once(':').map_or(line, |(k, _)| k).trim();
            if name.eq_ignore_ascii_case(SOURCE_HEADER)
                || name.starts_with("Nats-Expected-")
                || name.starts_with("Nats-Batch-")
            {
                continue;
            }
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(SOURCE_HEADER.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out
}

/// Reads a stored `Nats-Stream-Source` value: the source's index name, the
/// origin sequence and the origin's identity (nats-server's 2.10+ layout,
/// `<stream> <seq> <filter> <dest> <orig subject> [<ident>]`).
pub(crate) fn parse_source_header(value: &str) -> Option<(String, u64, String)> {
    let fields: Vec<&str> = value.split(' ').collect();
    if fields.len() < 4 {
        return None;
    }
    let seq = fields[1].parse().ok()?;
    let iname = format!("{} {} {}", fields[0], fields[2], fields[3]);
    let ident = fields.get(5).map_or(String::new(), |s| (*s).to_owned());
    Some((iname, seq, ident))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sourced_header_replaces_the_origins_source_and_expectations() {
        let hdr = b"NATS/1.0\r\nNats-Msg-Id: a\r\nNats-Stream-Source: X 1 > > x\r\nNats-Expected-Last-Sequence: 3\r\nNats-Batch-Id: b\r\n\r\n";
        let out = sourced_header(hdr, "O 4 o.b t.b o.b ID");
        assert_eq!(
            std::str::from_utf8(&out).ok(),
            Some("NATS/1.0\r\nNats-Msg-Id: a\r\nNats-Stream-Source: O 4 o.b t.b o.b ID\r\n\r\n")
        );
        assert_eq!(
            sourced_header(b"", "O 1 > > o.a"),
            b"NATS/1.0\r\nNats-Stream-Source: O 1 > > o.a\r\n\r\n".to_vec()
        );
    }

    #[test]
    fn a_source_header_gives_back_its_index_name_sequence_and_identity() {
        assert_eq!(
            parse_source_header("O 4 o.b t.b o.b IRMxgnhj"),
            Some(("O o.b t.b".to_owned(), 4, "IRMxgnhj".to_owned()))
        );
        assert_eq!(
            parse_source_header("O 7 > > o.a"),
            Some(("O > >".to_owned(), 7, String::new()))
        );
        assert_eq!(parse_source_header("O 7"), None);
        assert_eq!(parse_source_header("O x > > o"), None);
    }
}
