//! Accounts, as nats-server's `accounts {}` block: isolated subject spaces
//! (one subscription index each), users assigned to them, explicit stream
//! and service exports/imports between them, and JetStream per account.
//!
//! Connections without an account (no accounts configured, no auth, or a
//! user of `authorization {}`) belong to the global account `$G`; with no
//! accounts configured that is the only account and nothing on the publish
//! path looks anything up.
//!
//! - A stream import makes messages published in the exporting account on
//!   the imported subjects also reach the importing account's subscribers
//!   (subject with the import's `prefix`, or mapped to its `to`).
//! - A service import makes a request published in the importing account
//!   on the import's local subject (`to`, else the subject) reach the
//!   exporting account on the exported subject, with a generated `_R_.`
//!   reply subject that leads back to the requester's reply subject (once,
//!   by default; `response_type: stream|chunked` allows several until the
//!   response threshold).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustc_hash::FxHashMap;

use crate::client::{self, Client};
use crate::config::{AccountConfig, ExportKind, GLOBAL_ACCOUNT as GLOBAL, ResponseType};
use crate::subject;
use crate::sublist::Sublist;

// ---------------------------------------------------------------------------
// Runtime
// ---------------------------------------------------------------------------

/// Where a stream export delivers in an importing account.
pub(crate) struct StreamRoute {
    /// The import's subject (in the exporting account).
    pattern: String,
    /// The importing account.
    pub(crate) target: Weak<Account>,
    prefix: Option<String>,
    to: Option<String>,
}

impl StreamRoute {
    /// The subject in the importing account, when `subject` is imported.
    pub(crate) fn map(&self, subject: &str) -> Option<String> {
        if !subject::matches(&self.pattern, subject) {
            return None;
        }
        Some(match (&self.prefix, &self.to) {
            (Some(p), _) => format!("{p}.{subject}"),
            (None, Some(to)) => subject::map(&self.pattern, to, subject),
            (None, None) => subject.to_owned(),
        })
    }
}

/// A service this account imports.
pub(crate) struct ServiceRoute {
    /// The subject this account's clients publish to.
    local: String,
    /// The subject in the exporting account.
    remote: String,
    /// The exporting account.
    pub(crate) target: Weak<Account>,
    response_type: ResponseType,
    threshold: Duration,
}

impl ServiceRoute {
    /// The subject in the exporting account, when `subject` is this import's.
    pub(crate) fn map(&self, subject: &str) -> Option<String> {
        subject::matches(&self.local, subject).then(|| {
            if self.local == self.remote {
                subject.to_owned()
            } else {
                subject::map(&self.local, &self.remote, subject)
            }
        })
    }
}

/// Links to other accounts, set once every account exists.
#[derive(Default)]
pub(crate) struct Routes {
    /// This account's stream exports, per importing account.
    pub(crate) streams_out: Vec<StreamRoute>,
    /// This account's service imports.
    pub(crate) services_in: Vec<ServiceRoute>,
}

/// A reply the exporting account's service may still send.
struct PendingReply {
    target: Weak<Account>,
    reply: Bytes,
    left: usize,
    expires: Instant,
}

/// Above this many pending replies, used-up and expired ones are dropped.
const REPLIES_PRUNE_AT: usize = 4096;

/// One account at run time.
pub(crate) struct Account {
    pub(crate) name: Arc<str>,
    pub(crate) sublist: Sublist<Client>,
    queue_pick: AtomicUsize,
    /// The account's JetStream, when enabled for it.
    pub(crate) jetstream: Option<Arc<crate::jetstream::JetStream>>,
    /// JetStream runs on the server but not for this account: `$JS.API.>`
    /// requests are answered "not enabled for account" (as nats-server).
    pub(crate) jetstream_refused: bool,
    /// Imports/exports; unset when the account has none (the fast path).
    pub(crate) routes: OnceLock<Routes>,
    /// True when other accounts import services from this one (its
    /// clients' `_R_.` publishes are looked up).
    pub(crate) exports_services: bool,
    replies: Mutex<FxHashMap<Bytes, PendingReply>>,
    reply_prefix: String,
    next_reply: AtomicU64,
}

impl Account {
    pub(crate) fn new(
        name: &str,
        jetstream: Option<Arc<crate::jetstream::JetStream>>,
        jetstream_refused: bool,
        exports_services: bool,
    ) -> Account {
        let nonce = crate::auth::new_nonce();
        let prefix: String = nonce
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(6)
            .collect();
        Account {
            name: name.into(),
            sublist: Sublist::default(),
            queue_pick: AtomicUsize::new(0),
            jetstream,
            jetstream_refused,
            routes: OnceLock::new(),
            exports_services,
            replies: Mutex::new(FxHashMap::default()),
            reply_prefix: prefix,
            next_reply: AtomicU64::new(1),
        }
    }

    /// A rotating start index for picking a queue group member.
    pub(crate) fn next_queue_pick(&self, len: usize) -> usize {
        self.queue_pick.fetch_add(1, Ordering::Relaxed) % len.max(1)
    }

    fn replies(&self) -> std::sync::MutexGuard<'_, FxHashMap<Bytes, PendingReply>> {
        match self.replies.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// A fresh `_R_.` reply subject in this (the exporting) account that
    /// leads back to `reply` in `requester`.
    pub(crate) fn reply_for(
        &self,
        requester: &Arc<Account>,
        reply: &Bytes,
        route: &ServiceRoute,
    ) -> Bytes {
        let n = self.next_reply.fetch_add(1, Ordering::Relaxed);
        let mut tail = String::new();
        let mut v = n;
        const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        while v > 0 {
            tail.push(char::from(DIGITS[(v % 62) as usize]));
            v /= 62;
        }
        let subject = Bytes::from(format!("_R_.{}.{tail}", self.reply_prefix));
        let left = match route.response_type {
            ResponseType::Singleton => 1,
            ResponseType::Stream | ResponseType::Chunked => usize::MAX,
        };
        let now = Instant::now();
        let mut replies = self.replies();
        if replies.len() >= REPLIES_PRUNE_AT {
            replies.retain(|_, p| p.left > 0 && p.expires > now);
        }
        replies.insert(
            subject.clone(),
            PendingReply {
                target: Arc::downgrade(requester),
                reply: reply.clone(),
                left,
                expires: now + route.threshold,
            },
        );
        subject
    }

    /// A publish on a `_R_.` subject of this account: where it goes (the
    /// requester's account and reply subject), when still allowed.
    pub(crate) fn take_reply(&self, subject: &[u8]) -> Option<(Arc<Account>, Bytes)> {
        let mut replies = self.replies();
        let pending = replies.get_mut(subject)?;
        if pending.expires <= Instant::now() {
            replies.remove(subject);
            return None;
        }
        pending.left = pending.left.saturating_sub(1);
        let out = (pending.target.upgrade()?, pending.reply.clone());
        if pending.left == 0 {
            replies.remove(subject);
        }
        Some(out)
    }
}

impl crate::jetstream::Router for Account {
    fn route(&self, subject: &str, reply: Option<&str>, hdr: &[u8], data: &[u8]) -> usize {
        self.route_as(subject, subject, reply, hdr, data)
    }

    fn route_as(
        &self,
        to: &str,
        subject: &str,
        reply: Option<&str>,
        hdr: &[u8],
        data: &[u8],
    ) -> usize {
        let matches = self.sublist.matches(to);
        let joined: Vec<u8>;
        let (header_len, body): (Option<usize>, &[u8]) = if hdr.is_empty() {
            (None, data)
        } else {
            joined = [hdr, data].concat();
            (Some(hdr.len()), &joined[..])
        };
        let reply = reply.map(str::as_bytes);
        let mut delivered = 0;
        let deliver = |sub: &Arc<crate::client::Sub>| -> bool {
            if !sub.take_delivery() {
                return false;
            }
            let outcome = sub
                .client
                .deliver(subject.as_bytes(), &sub.sid, reply, header_len, body);
            if sub.exhausted() && self.sublist.remove(sub) {
                sub.client.subs.fetch_sub(1, Ordering::Relaxed);
            }
            match outcome {
                client::Delivered::Ok { wake } | client::Delivered::Stall { wake } => {
                    if wake {
                        sub.client.wake_writer();
                    }
                    true
                }
                client::Delivered::Dropped => false,
            }
        };
        for sub in &matches.plain {
            if deliver(sub) {
                delivered += 1;
            }
        }
        for group in &matches.groups {
            let start = self.next_queue_pick(group.len());
            for i in 0..group.len() {
                if deliver(&group[(start + i) % group.len()]) {
                    delivered += 1;
                    break;
                }
            }
        }
        delivered
    }

    fn has_interest(&self, subject: &str) -> bool {
        !self.sublist.matches(subject).is_empty()
    }
}

/// Builds the run-time accounts: `$G`, and the configured ones, each
/// with its JetStream when enabled, then links imports to exports.
pub(crate) fn build(
    configs: &[AccountConfig],
    jetstream: Option<&crate::config::JetStreamConfig>,
) -> Result<(Arc<Account>, Vec<Arc<Account>>), crate::jetstream::JetStreamError> {
    let exports_services = |name: &str| {
        configs.iter().any(|c| {
            c.imports
                .iter()
                .any(|i| i.kind == ExportKind::Service && i.account == name)
        })
    };
    let open = |name: &str| -> Result<_, crate::jetstream::JetStreamError> {
        match jetstream {
            Some(js) => Ok(Some(crate::jetstream::JetStream::open_account(
                js.clone(),
                name,
            )?)),
            None => Ok(None),
        }
    };
    // nats-server: with accounts configured, JetStream is on only for the
    // accounts that enable it; with none, for `$G`.
    let global_js = if configs.is_empty() {
        open(GLOBAL)?
    } else {
        None
    };
    let mut accounts = vec![Arc::new(Account::new(
        GLOBAL,
        global_js,
        jetstream.is_some() && !configs.is_empty(),
        false,
    ))];
    for c in configs {
        let js = if c.jetstream { open(&c.name)? } else { None };
        let refused = jetstream.is_some() && js.is_none();
        accounts.push(Arc::new(Account::new(
            &c.name,
            js,
            refused,
            exports_services(&c.name),
        )));
    }
    let find = |name: &str| accounts.iter().find(|a| &*a.name == name).cloned();
    let mut routes: FxHashMap<String, Routes> = FxHashMap::default();
    for c in configs {
        let Some(importer) = find(&c.name) else {
            continue;
        };
        for i in &c.imports {
            let Some(exporter) = find(&i.account) else {
                continue;
            };
            match i.kind {
                ExportKind::Stream => {
                    routes
                        .entry(i.account.clone())
                        .or_default()
                        .streams_out
                        .push(StreamRoute {
                            pattern: i.subject.clone(),
                            target: Arc::downgrade(&importer),
                            prefix: i.prefix.clone(),
                            to: i.to.clone(),
                        });
                }
                ExportKind::Service => {
                    let export = configs.iter().find(|e| e.name == i.account).and_then(|e| {
                        e.exports.iter().find(|x| {
                            x.kind == ExportKind::Service && subject::covers(&x.subject, &i.subject)
                        })
                    });
                    routes
                        .entry(c.name.clone())
                        .or_default()
                        .services_in
                        .push(ServiceRoute {
                            local: i.to.clone().unwrap_or_else(|| i.subject.clone()),
                            remote: i.subject.clone(),
                            target: Arc::downgrade(&exporter),
                            response_type: export.map(|e| e.response_type).unwrap_or_default(),
                            threshold: export
                                .map_or(Duration::from_secs(120), |e| e.response_threshold),
                        });
                }
            }
        }
    }
    for (name, r) in routes {
        if let Some(a) = find(&name) {
            let _ = a.routes.set(r);
        }
    }
    for a in &accounts {
        if let Some(js) = &a.jetstream {
            let router: Arc<dyn crate::jetstream::Router> = Arc::clone(a) as _;
            js.set_router(Arc::downgrade(&router));
        }
    }
    let mut accounts = accounts.into_iter();
    let global = accounts
        .next()
        .unwrap_or_else(|| Arc::new(Account::new(GLOBAL, None, false, false)));
    Ok((global, accounts.collect()))
}

/// Adds a header line to a message's header block (creating one).
pub(crate) fn with_header(
    header_len: Option<usize>,
    payload: &[u8],
    line: &str,
) -> (usize, Vec<u8>) {
    let mut out = Vec::with_capacity(payload.len() + line.len() + 16);
    match header_len {
        Some(h) if h >= 4 && h <= payload.len() && payload[..h].ends_with(b"\r\n\r\n") => {
            out.extend_from_slice(&payload[..h - 2]);
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n\r\n");
            let hl = out.len();
            out.extend_from_slice(&payload[h..]);
            (hl, out)
        }
        _ => {
            out.extend_from_slice(b"NATS/1.0\r\n");
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n\r\n");
            let hl = out.len();
            out.extend_from_slice(payload);
            (hl, out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_is_added_to_a_message() {
        let (h, out) = with_header(None, b"hi", "X: 1");
        assert_eq!(&out[..h], b"NATS/1.0\r\nX: 1\r\n\r\n");
        let (h2, out2) = with_header(Some(h), &out, "Y: 2");
        assert_eq!(&out2[..h2], b"NATS/1.0\r\nX: 1\r\nY: 2\r\n\r\n");
        assert_eq!(&out2[h2..], b"hi");
    }
}
