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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustc_hash::FxHashMap;

use crate::config::{
    AccountConfig, AccountJetStreamLimits, ExportKind, GLOBAL_ACCOUNT as GLOBAL, ResponseType,
};
use crate::jetstream::limits::{AccountResources, ServerResources};
use crate::jetstream::{Deliveries, DrainWait, JetStream, JetStreamError, Router};
use crate::mapping::Mappings;
use crate::outbound::{Batch, Client, Delivered, Frame, Sub};
use crate::replies::ReplyTable;
use crate::subject;
use crate::sublist::{Matches, Sublist};
use crate::trace::{NotDelivered, Receiver, Tracer};

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
}

/// Most service requests an account may have awaiting replies at once;
/// past it the oldest can no longer be answered.
const MAX_OPEN_SERVICE_REPLIES: usize = 65_536;

/// One account at run time.
pub(crate) struct Account {
    pub(crate) name: Arc<str>,
    /// This account, for the reply routes other accounts keep to it.
    me: Weak<Account>,
    pub(crate) sublist: Sublist<Client>,
    queue_pick: AtomicUsize,
    /// The account's JetStream, when enabled for it.
    pub(crate) jetstream: Option<Arc<JetStream>>,
    /// JetStream runs on the server but not for this account: `$JS.API.>`
    /// requests are answered "not enabled for account" (as nats-server).
    pub(crate) jetstream_refused: bool,
    /// Imports/exports; unset when the account has none (the fast path).
    pub(crate) routes: OnceLock<Routes>,
    /// True when other accounts import services from this one (its
    /// clients' `_R_.` publishes are looked up).
    pub(crate) exports_services: bool,
    replies: Mutex<ReplyTable<PendingReply>>,
    reply_prefix: String,
    next_reply: AtomicU64,
    /// Subject mappings of what this account's clients publish; `None`
    /// when it has none (the publish path then checks this one field).
    pub(crate) mappings: Option<Mappings>,
}

impl Account {
    /// A new account; `me` is its own weak handle (`Arc::new_cyclic`).
    pub(crate) fn new(
        me: Weak<Account>,
        name: &str,
        jetstream: Option<Arc<JetStream>>,
        jetstream_refused: bool,
        exports_services: bool,
        mappings: Option<Mappings>,
    ) -> Account {
        let nonce = crate::auth::new_nonce();
        let prefix: String = nonce
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(6)
            .collect();
        Account {
            name: name.into(),
            me,
            sublist: Sublist::default(),
            queue_pick: AtomicUsize::new(0),
            jetstream,
            jetstream_refused,
            routes: OnceLock::new(),
            exports_services,
            replies: Mutex::new(ReplyTable::new(MAX_OPEN_SERVICE_REPLIES)),
            reply_prefix: prefix,
            next_reply: AtomicU64::new(1),
            mappings,
        }
    }

    /// A rotating start index for picking a queue group member: the one
    /// queue-pick policy (round robin per account, the next member when the
    /// picked one cannot take the message).
    fn next_queue_pick(&self, len: usize) -> usize {
        self.queue_pick.fetch_add(1, Ordering::Relaxed) % len.max(1)
    }

    fn replies(&self) -> std::sync::MutexGuard<'_, ReplyTable<PendingReply>> {
        match self.replies.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// A fresh `_R_.` reply subject in this (the exporting) account that
    /// leads back to `reply` in `requester`.
    fn reply_for(&self, requester: &Account, reply: &[u8], route: &ServiceRoute) -> Bytes {
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
        self.replies().insert(
            &subject,
            Some(Instant::now() + route.threshold),
            PendingReply {
                target: requester.me.clone(),
                reply: Bytes::copy_from_slice(reply),
                left,
            },
        );
        subject
    }

    /// A publish on a `_R_.` subject of this account: where it goes (the
    /// requester's account and reply subject), when still allowed.
    fn take_reply(&self, subject: &[u8]) -> Option<(Arc<Account>, Bytes)> {
        let mut replies = self.replies();
        let pending = replies.get_mut(subject)?;
        pending.left = pending.left.saturating_sub(1);
        let out = (pending.target.upgrade()?, pending.reply.clone());
        if pending.left == 0 {
            replies.remove(subject);
        }
        Some(out)
    }
}

// ---------------------------------------------------------------------------
// Fan-out
// ---------------------------------------------------------------------------

/// One message on its way to subscribers.
#[derive(Clone, Copy)]
pub(crate) struct Message<'a> {
    /// The subject subscribers see.
    pub(crate) subject: &'a str,
    /// The reply subject, if any.
    pub(crate) reply: Option<&'a [u8]>,
    /// Length of the header block at the start of `payload`, if any.
    pub(crate) header_len: Option<usize>,
    /// Headers and body.
    pub(crate) payload: &'a [u8],
    /// The trace of a message published with `Nats-Trace-Dest`; `None` on
    /// the ordinary path (which then pays one check per fan-out).
    pub(crate) trace: Option<&'a Tracer>,
}

impl Account {
    /// Delivers `msg` to the subscriptions in `matches`, which the caller
    /// looked up in this account's sublist (a publishing connection from
    /// its cache): every plain subscription, and one member per queue
    /// group. Connection `skip` gets nothing (a publisher that asked for no
    /// echo). A subscription that reaches its `UNSUB` max is removed. The
    /// receiving connection's permissions filter what it gets (see
    /// `Client::deliver`). Returns how many received it.
    pub(crate) fn deliver(
        &self,
        matches: &Matches<Client>,
        msg: &Message<'_>,
        skip: Option<u64>,
        batch: &mut Batch,
    ) -> u64 {
        if let Some(t) = msg.trace {
            return self.deliver_traced(matches, msg, skip, batch, t);
        }
        let subject = msg.subject.as_bytes();
        if matches.plain.len() + matches.groups.len() < 2 {
            // One receiver: formatting its line directly is cheapest.
            return self.deliver_each(matches, skip, batch, |sub| {
                sub.client
                    .deliver(subject, &sub.sid, msg.reply, msg.header_len, msg.payload)
            });
        }
        // Several: the line is built once, each delivery copies it.
        let mut scratch = std::mem::take(&mut batch.scratch);
        let frame = Frame::build(
            &mut scratch,
            subject,
            msg.reply,
            msg.header_len,
            msg.payload,
        );
        let delivered = self.deliver_each(matches, skip, batch, |sub| {
            sub.client.deliver_frame(&frame, &sub.sid)
        });
        batch.scratch = scratch;
        delivered
    }

    /// [`Self::deliver`]'s walk: `deliver` queues the message for one
    /// subscription.
    fn deliver_each(
        &self,
        matches: &Matches<Client>,
        skip: Option<u64>,
        batch: &mut Batch,
        deliver: impl Fn(&Arc<Sub>) -> Delivered,
    ) -> u64 {
        let mut delivered = 0;
        for sub in &matches.plain {
            if skip == Some(sub.client.id) || !sub.take_delivery() {
                continue;
            }
            if batch.note(&sub.client, deliver(sub)) {
                delivered += 1;
            }
            self.expire_if_done(sub);
        }
        for group in &matches.groups {
            let start = self.next_queue_pick(group.len());
            for i in 0..group.len() {
                let sub = &group[(start + i) % group.len()];
                if sub.exhausted() || skip == Some(sub.client.id) || !sub.take_delivery() {
                    continue;
                }
                let queued = batch.note(&sub.client, deliver(sub));
                self.expire_if_done(sub);
                if queued {
                    delivered += 1;
                    break;
                }
            }
        }
        delivered
    }

    /// [`Self::deliver`] of a traced message: each subscription's egress
    /// entry (delivered, or why not); trace only: recorded, not delivered.
    fn deliver_traced(
        &self,
        matches: &Matches<Client>,
        msg: &Message<'_>,
        skip: Option<u64>,
        batch: &mut Batch,
        t: &Tracer,
    ) -> u64 {
        let mut delivered = 0;
        for sub in &matches.plain {
            if self.deliver_one_traced(sub, msg, skip, batch, t) {
                delivered += 1;
            }
        }
        for group in &matches.groups {
            let start = self.next_queue_pick(group.len());
            for i in 0..group.len() {
                let sub = &group[(start + i) % group.len()];
                if sub.exhausted() {
                    continue;
                }
                if self.deliver_one_traced(sub, msg, skip, batch, t) {
                    delivered += 1;
                    break;
                }
            }
        }
        delivered
    }

    /// One subscription's delivery of a traced message, recorded; true when
    /// it was delivered (or, trace only, would have been).
    fn deliver_one_traced(
        &self,
        sub: &Arc<Sub>,
        msg: &Message<'_>,
        skip: Option<u64>,
        batch: &mut Batch,
        t: &Tracer,
    ) -> bool {
        let subject = msg.subject.as_bytes();
        let receiver = Receiver {
            cid: sub.client.id,
            name: sub.client.name_text(),
            account: sub.client.account_name(),
            subscription: sub.subject.as_bytes(),
            queue: sub.queue.as_deref().map(str::as_bytes),
        };
        let refused = if skip == Some(sub.client.id) {
            Some(NotDelivered::NoEcho)
        } else if sub.client.withholds(subject) {
            Some(NotDelivered::SubscriptionDenied)
        } else if t.only {
            sub.exhausted()
                .then_some(NotDelivered::AutoUnsubscribeExceeded)
        } else if !sub.take_delivery() {
            Some(NotDelivered::AutoUnsubscribeExceeded)
        } else {
            let outcome =
                sub.client
                    .deliver(subject, &sub.sid, msg.reply, msg.header_len, msg.payload);
            let queued = batch.note(&sub.client, outcome);
            self.expire_if_done(sub);
            (!queued).then_some(NotDelivered::ClientClosed)
        };
        t.egress(receiver, refused);
        refused.is_none()
    }

    /// The fan-out of a message published in this account, by a client or
    /// by JetStream: the local subscriptions (`matches`, for `msg.subject`),
    /// then other accounts through this account's stream exports and
    /// service imports, and, when it is a reply of one of this account's
    /// services (`_R_.`), the requester. Returns how many received it.
    pub(crate) fn fan_out(
        &self,
        matches: &Matches<Client>,
        msg: &Message<'_>,
        skip: Option<u64>,
        batch: &mut Batch,
    ) -> u64 {
        let mut delivered = self.deliver(matches, msg, skip, batch);
        if let Some(routes) = self.routes.get() {
            delivered += self.across(routes, msg, batch);
        }
        if self.exports_services && msg.subject.starts_with("_R_.") {
            if let Some((requester, to)) = self.take_reply(msg.subject.as_bytes()) {
                if let Ok(to) = std::str::from_utf8(&to) {
                    delivered += requester.deliver_subject(
                        &Message {
                            subject: to,
                            ..*msg
                        },
                        batch,
                    );
                }
            }
        }
        delivered
    }

    /// Delivers `msg` to this account's subscriptions matching its subject
    /// (no further hop to other accounts).
    pub(crate) fn deliver_subject(&self, msg: &Message<'_>, batch: &mut Batch) -> u64 {
        let matches = self.sublist.matches(msg.subject);
        self.deliver(&matches, msg, None, batch)
    }

    /// Stream exports to importing accounts and service imports to
    /// exporting ones.
    fn across(&self, routes: &Routes, msg: &Message<'_>, batch: &mut Batch) -> u64 {
        let mut delivered = 0;
        for route in &routes.streams_out {
            if let (Some(mapped), Some(target)) = (route.map(msg.subject), route.target.upgrade()) {
                if let Some(t) = msg.trace {
                    // Tracing stops at the import (nats-server without
                    // `allow_trace`): trace only goes no further.
                    t.stream_export(&target.name, &mapped);
                    if t.only {
                        delivered += 1;
                        continue;
                    }
                }
                delivered += target.deliver_subject(
                    &Message {
                        subject: &mapped,
                        trace: None,
                        ..*msg
                    },
                    batch,
                );
            }
        }
        for route in &routes.services_in {
            let (Some(mapped), Some(exporter)) = (route.map(msg.subject), route.target.upgrade())
            else {
                continue;
            };
            // As nats-server: the exporting account's own subject mappings
            // apply to the subject the request arrives on.
            let mapped = match exporter.mappings.as_ref().and_then(|m| m.map(&mapped)) {
                Some(to) if to.is_empty() => break,
                Some(to) => to,
                None => mapped,
            };
            // Tracing stops at the import (nats-server without
            // `allow_trace`): trace only goes no further, a delivered
            // message goes on with its trace header disabled.
            let mut untraced = None;
            if let Some(t) = msg.trace {
                t.service_import(&exporter.name, msg.subject, &mapped);
                if t.only {
                    delivered += 1;
                    break;
                }
                if let Some(h) = msg.header_len.filter(|h| *h <= msg.payload.len()) {
                    let mut p = crate::trace::set_header(
                        &msg.payload[..h],
                        crate::trace::DEST,
                        crate::trace::DISABLED,
                    );
                    let hl = p.len();
                    p.extend_from_slice(&msg.payload[h..]);
                    untraced = Some((hl, p));
                }
            }
            let (header_len, payload) = match &untraced {
                Some((hl, p)) => (Some(*hl), &p[..]),
                None => (msg.header_len, msg.payload),
            };
            let reply = msg.reply.map(|r| exporter.reply_for(self, r, route));
            let info = format!("Nats-Request-Info: {{\"acc\":\"{}\",\"rtt\":0}}", self.name);
            let (header_len, body) = with_header(header_len, payload, &info);
            delivered += exporter.deliver_subject(
                &Message {
                    subject: &mapped,
                    reply: reply.as_deref(),
                    header_len: Some(header_len),
                    payload: &body,
                    trace: None,
                },
                batch,
            );
            // The first matching import takes the request.
            break;
        }
        delivered
    }

    /// A stored message that shows `subject` delivered to the
    /// subscriptions `matches` of `to` (JetStream's deliveries).
    #[allow(clippy::too_many_arguments)]
    fn deliver_as(
        &self,
        matches: &Matches<Client>,
        to: &str,
        subject: &str,
        reply: Option<&str>,
        hdr: &[u8],
        data: &[u8],
        batch: &mut Batch,
    ) -> usize {
        let joined: Vec<u8>;
        let (header_len, payload): (Option<usize>, &[u8]) = if hdr.is_empty() {
            (None, data)
        } else {
            joined = [hdr, data].concat();
            (Some(hdr.len()), &joined[..])
        };
        let msg = Message {
            subject,
            reply: reply.map(str::as_bytes),
            header_len,
            payload,
            trace: None,
        };
        // A push consumer's delivery to its deliver subject shows the
        // stored subject: it stays in this account (as before imports
        // were routed for JetStream); everything else fans out.
        let delivered = if to == subject {
            self.fan_out(matches, &msg, None, batch)
        } else {
            self.deliver(matches, &msg, None, batch)
        };
        usize::try_from(delivered).unwrap_or(usize::MAX)
    }

    /// Removes a subscription that reached its `UNSUB` max.
    pub(crate) fn expire_if_done(&self, sub: &Arc<Sub>) {
        if sub.exhausted() && self.sublist.remove(sub) {
            sub.client.subs.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// One JetStream delivery round through an account: the subscriptions of
/// the last target are kept while the sublist's generation says they are
/// current (a round delivers mostly to one inbox or deliver subject), and
/// the writers are woken once, when the round ends.
struct AccountDeliveries<'a> {
    account: &'a Account,
    batch: Batch,
    /// Target, sublist generation, its subscriptions.
    last: Option<(String, u64, Matches<Client>)>,
    /// Write to idle sockets directly at the end ([`Deliveries::write_through`]).
    write_through: bool,
}

impl Deliveries for AccountDeliveries<'_> {
    fn route_as(
        &mut self,
        to: &str,
        subject: &str,
        reply: Option<&str>,
        hdr: &[u8],
        data: &[u8],
    ) -> usize {
        let generation = self.account.sublist.generation();
        let current = self
            .last
            .as_ref()
            .is_some_and(|(t, g, _)| *g == generation && t == to);
        if !current {
            // Read the generation before the lookup: a change in between
            // makes the next delivery look up again.
            let matches = self.account.sublist.matches(to);
            self.last = Some((to.to_owned(), generation, matches));
        }
        let Some((_, _, matches)) = &self.last else {
            return 0;
        };
        self.account
            .deliver_as(matches, to, subject, reply, hdr, data, &mut self.batch)
    }

    fn write_through(&mut self) {
        self.write_through = true;
    }

    fn backlogged(&self) -> bool {
        self.batch.stalled()
    }

    fn drained(&mut self, limit: Duration) -> Option<DrainWait> {
        let stalls = self.batch.take_stalls();
        if stalls.is_empty() {
            return None;
        }
        Some(Box::pin(crate::outbound::wait_drained(stalls, limit)))
    }
}

impl Drop for AccountDeliveries<'_> {
    fn drop(&mut self) {
        if self.write_through {
            self.batch.write_through();
        } else {
            self.batch.wake();
        }
    }
}

/// JetStream delivers through its account's fan-out, like a client.
impl Router for Account {
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
        let mut batch = Batch::default();
        let delivered = self.deliver_as(&matches, to, subject, reply, hdr, data, &mut batch);
        batch.finish();
        delivered
    }

    fn deliveries(&self) -> Box<dyn Deliveries + '_> {
        Box::new(AccountDeliveries {
            account: self,
            batch: Batch::default(),
            last: None,
            write_through: false,
        })
    }

    fn has_interest(&self, subject: &str) -> bool {
        !self.sublist.matches(subject).is_empty()
    }

    fn external_jetstream(&self, api: &str, deliver: &str) -> Option<Arc<JetStream>> {
        let routes = self.routes.get()?;
        // The requests a sourcing stream sends under the prefix must reach
        // the other account's JetStream API.
        let probe = format!("{api}.STREAM.INFO.X");
        let exporter = routes.services_in.iter().find_map(|r| {
            (r.map(&probe).as_deref() == Some("$JS.API.STREAM.INFO.X"))
                .then(|| r.target.upgrade())
                .flatten()
        })?;
        let js = exporter.jetstream.clone()?;
        if !deliver.is_empty() {
            // Deliveries to `<deliver>.…` in the exporter must reach here.
            let me = self.me.upgrade()?;
            let sample = format!("{deliver}.x");
            let imported = exporter.routes.get().is_some_and(|r| {
                r.streams_out.iter().any(|s| {
                    s.target.upgrade().is_some_and(|t| Arc::ptr_eq(&t, &me))
                        && s.map(&sample).is_some()
                })
            });
            if !imported {
                return None;
            }
        }
        Some(js)
    }
}

/// The configured accounts by name (not `$G`), and what it takes to open
/// one more while running: an account whose JWT is pushed to the system
/// account (`nsc push`) after the server started. Looked up at CONNECT and
/// by the monitor, never on the message path.
pub(crate) struct Accounts {
    by_name: RwLock<HashMap<String, Arc<Account>>>,
    jetstream: Option<crate::config::JetStreamConfig>,
    server: Option<Arc<ServerResources>>,
}

impl Accounts {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Account>>> {
        match self.by_name.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The account of this name.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<Account>> {
        self.read().get(name).cloned()
    }

    /// Every account (a snapshot).
    pub(crate) fn all(&self) -> Vec<Arc<Account>> {
        self.read().values().cloned().collect()
    }

    /// Opens and adds an account that has no imports, exports or mappings
    /// (one from a JWT), with JetStream when `jetstream` and the server runs
    /// it; the existing account when one of that name is already running.
    pub(crate) fn open(
        &self,
        name: &str,
        jetstream: bool,
        limits: AccountJetStreamLimits,
    ) -> Result<Arc<Account>, JetStreamError> {
        let mut map = match self.by_name.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(a) = map.get(name) {
            return Ok(Arc::clone(a));
        }
        let js = match (jetstream, &self.jetstream, &self.server) {
            (true, Some(js), Some(server)) => {
                let resources = Arc::new(AccountResources::new(limits, Arc::clone(server)));
                Some(JetStream::open_account(js.clone(), name, resources)?)
            }
            _ => None,
        };
        let refused = self.jetstream.is_some() && js.is_none();
        let a = Arc::new_cyclic(|me| Account::new(me.clone(), name, js, refused, false, None));
        if let Some(js) = &a.jetstream {
            let router: Arc<dyn Router> = Arc::clone(&a) as _;
            js.set_router(Arc::downgrade(&router));
        }
        map.insert(name.to_owned(), Arc::clone(&a));
        Ok(a)
    }
}

/// Whether an account JWT gives JetStream, and its limits as this server
/// counts them (0 in the JWT for streams, consumers, ack pending and the
/// per-stream byte caps means unlimited).
pub(crate) fn jetstream_of_jwt(l: &crate::jwt::AccountLimits) -> (bool, AccountJetStreamLimits) {
    let jetstream = l.jetstream_enabled();
    if !jetstream {
        return (false, AccountJetStreamLimits::default());
    }
    let unlimited_if_zero = |v: i64| if v == 0 { -1 } else { v };
    (
        true,
        AccountJetStreamLimits {
            max_memory: l.mem_storage,
            max_store: l.disk_storage,
            max_streams: unlimited_if_zero(l.streams),
            max_consumers: unlimited_if_zero(l.consumer),
            max_ack_pending: unlimited_if_zero(l.max_ack_pending),
            memory_max_stream_bytes: unlimited_if_zero(l.mem_max_stream_bytes),
            store_max_stream_bytes: unlimited_if_zero(l.disk_max_stream_bytes),
            max_bytes_required: l.max_bytes_required,
        },
    )
}

/// Builds the run-time accounts: `$G`, and the configured ones, each
/// with its JetStream when enabled and its compiled subject mappings (taken
/// from `mappings` by account name), then links imports to exports.
pub(crate) fn build(
    configs: &[AccountConfig],
    jetstream: Option<&crate::config::JetStreamConfig>,
    mut mappings: FxHashMap<String, Mappings>,
) -> Result<(Arc<Account>, Accounts), JetStreamError> {
    let exports_services = |name: &str| {
        configs.iter().any(|c| {
            c.imports
                .iter()
                .any(|i| i.kind == ExportKind::Service && i.account == name)
        })
    };
    // One server-wide pool of JetStream memory and storage, which every
    // account's usage and reservations are charged to.
    let server = jetstream.map(|js| ServerResources::new(js.max_memory, js.max_store));
    let open = |name: &str, limits: AccountJetStreamLimits| -> Result<_, JetStreamError> {
        match (jetstream, &server) {
            (Some(js), Some(server)) => {
                let resources = Arc::new(AccountResources::new(limits, Arc::clone(server)));
                Ok(Some(JetStream::open_account(js.clone(), name, resources)?))
            }
            _ => Ok(None),
        }
    };
    let account = |name: &str, js, refused, exports, maps| {
        Arc::new_cyclic(|me| Account::new(me.clone(), name, js, refused, exports, maps))
    };
    // nats-server: with accounts configured, JetStream is on only for the
    // accounts that enable it; with none, for `$G`.
    let global_js = if configs.is_empty() {
        open(GLOBAL, AccountJetStreamLimits::default())?
    } else {
        None
    };
    let mut accounts = vec![account(
        GLOBAL,
        global_js,
        jetstream.is_some() && !configs.is_empty(),
        false,
        mappings.remove(GLOBAL),
    )];
    for c in configs {
        let js = if c.jetstream {
            open(&c.name, c.jetstream_limits)?
        } else {
            None
        };
        let refused = jetstream.is_some() && js.is_none();
        accounts.push(account(
            &c.name,
            js,
            refused,
            exports_services(&c.name),
            mappings.remove(&c.name),
        ));
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
            let router: Arc<dyn Router> = Arc::clone(a) as _;
            js.set_router(Arc::downgrade(&router));
        }
    }
    let mut accounts = accounts.into_iter();
    let global = accounts
        .next()
        .unwrap_or_else(|| account(GLOBAL, None, false, false, None));
    let by_name = accounts.map(|a| (a.name.to_string(), a)).collect();
    Ok((
        global,
        Accounts {
            by_name: RwLock::new(by_name),
            jetstream: jetstream.cloned(),
            server,
        },
    ))
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
    use crate::config::{Export, Import, Permissions, SubjectPermission};
    use crate::sublist::Subscription;

    fn client(id: u64) -> Arc<Client> {
        let c = Arc::new(Client::new(
            id,
            1 << 20,
            "127.0.0.1:1".parse().expect("addr"),
        ));
        c.headers.store(true, Ordering::Relaxed);
        c
    }

    fn subscribe(
        account: &Account,
        c: &Arc<Client>,
        subject: &str,
        queue: Option<&str>,
    ) -> Arc<Sub> {
        let sub = Arc::new(Subscription::new(
            Arc::clone(c),
            subject,
            queue,
            Bytes::from(format!("{}", c.id)),
        ));
        account.sublist.insert(Arc::clone(&sub));
        c.subs.fetch_add(1, Ordering::Relaxed);
        sub
    }

    fn publish(account: &Account, subject: &str, reply: Option<&str>, skip: Option<u64>) -> u64 {
        let msg = Message {
            subject,
            reply: reply.map(str::as_bytes),
            header_len: None,
            payload: b"x",
            trace: None,
        };
        let matches = account.sublist.matches(subject);
        let mut batch = Batch::default();
        let n = account.fan_out(&matches, &msg, skip, &mut batch);
        batch.finish();
        n
    }

    fn text(c: &Client) -> String {
        String::from_utf8_lossy(&c.drain_output()).into_owned()
    }

    fn global() -> Arc<Account> {
        let (global, _) = build(&[], None, FxHashMap::default()).expect("accounts");
        global
    }

    /// A JetStream delivery run keeps the target's subscriptions only while
    /// the sublist is unchanged: a subscription removed (by UNSUB or by
    /// reaching its max) or added during the run is seen by the next
    /// delivery, and every delivery is queued before the run ends.
    #[test]
    fn a_delivery_run_looks_the_target_up_again_when_subscriptions_change() {
        let account = global();
        let (a, b) = (client(1), client(2));
        let sub_a = subscribe(&account, &a, "_INBOX.x", None);
        let mut run = account.deliveries();
        let ack = Some("$JS.ACK.S.C.1.1.1.0.0");
        assert_eq!(run.route_as("_INBOX.x", "s.one", ack, b"", b"m1"), 1);
        assert_eq!(run.route_as("_INBOX.x", "s.two", ack, b"", b"m2"), 1);
        assert!(account.sublist.remove(&sub_a));
        assert_eq!(run.route_as("_INBOX.x", "s.three", ack, b"", b"m3"), 0);
        let sub_b = subscribe(&account, &b, "_INBOX.x", None);
        sub_b.max.store(1, Ordering::Relaxed);
        assert_eq!(run.route_as("_INBOX.x", "s.four", ack, b"", b"m4"), 1);
        // b reached its max: removed, and the next delivery sees it.
        assert_eq!(run.route_as("_INBOX.x", "s.five", ack, b"", b"m5"), 0);
        drop(run);
        let (ta, tb) = (text(&a), text(&b));
        assert_eq!(ta.matches("MSG ").count(), 2, "{ta}");
        assert!(
            ta.contains("MSG s.one 1 $JS.ACK.S.C.1.1.1.0.0 2\r\nm1\r\n"),
            "{ta}"
        );
        assert!(ta.contains("m2") && !ta.contains("m3"), "{ta}");
        assert_eq!(tb, "MSG s.four 2 $JS.ACK.S.C.1.1.1.0.0 2\r\nm4\r\n");
    }

    #[test]
    fn every_plain_subscription_and_one_member_per_queue_group_get_a_message() {
        let account = global();
        let (a, b, q1, q2) = (client(1), client(2), client(3), client(4));
        subscribe(&account, &a, "orders.*", None);
        subscribe(&account, &b, "orders.new", None);
        subscribe(&account, &q1, "orders.>", Some("workers"));
        subscribe(&account, &q2, "orders.new", Some("workers"));
        for _ in 0..10 {
            assert_eq!(publish(&account, "orders.new", None, None), 3);
        }
        assert_eq!(a.out_msgs.load(Ordering::Relaxed), 10);
        assert_eq!(b.out_msgs.load(Ordering::Relaxed), 10);
        let (n1, n2) = (
            q1.out_msgs.load(Ordering::Relaxed),
            q2.out_msgs.load(Ordering::Relaxed),
        );
        assert_eq!(n1 + n2, 10, "one member per message");
        assert!(n1 > 0 && n2 > 0, "the pick rotates: {n1} / {n2}");
    }

    #[test]
    fn a_publisher_without_echo_is_skipped_in_plain_subscriptions_and_groups() {
        let account = global();
        let (me, other) = (client(1), client(2));
        subscribe(&account, &me, "s", None);
        subscribe(&account, &me, "s", Some("g"));
        subscribe(&account, &other, "s", Some("g"));
        for _ in 0..4 {
            assert_eq!(publish(&account, "s", None, Some(me.id)), 1);
        }
        assert_eq!(me.out_msgs.load(Ordering::Relaxed), 0);
        assert_eq!(other.out_msgs.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn a_queue_member_that_cannot_take_the_message_passes_it_to_the_next() {
        let account = global();
        let (closed, denied, open) = (client(1), client(2), client(3));
        closed.close_outbound();
        let rules = Arc::new(crate::auth::Rules::new(&Permissions {
            subscribe: Some(SubjectPermission {
                allow: None,
                deny: Some(vec!["jobs.secret".into()]),
            }),
            ..Permissions::default()
        }));
        assert!(rules.may_subscribe("jobs.*", Some("g")));
        let _ = denied.rules.set(rules);
        subscribe(&account, &closed, "jobs.*", Some("g"));
        subscribe(&account, &denied, "jobs.*", Some("g"));
        subscribe(&account, &open, "jobs.*", Some("g"));
        for _ in 0..6 {
            assert_eq!(publish(&account, "jobs.secret", None, None), 1);
        }
        assert_eq!(open.out_msgs.load(Ordering::Relaxed), 6);
        assert_eq!(
            denied.out_msgs.load(Ordering::Relaxed),
            0,
            "permissions filter"
        );
        // The denied member still gets what it may see.
        for _ in 0..6 {
            publish(&account, "jobs.open", None, None);
        }
        assert!(denied.out_msgs.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn a_subscription_is_removed_once_it_reached_its_unsub_max() {
        let account = global();
        let c = client(1);
        let sub = subscribe(&account, &c, "s", None);
        sub.max.store(2, Ordering::Relaxed);
        assert_eq!(publish(&account, "s", None, None), 1);
        assert_eq!(publish(&account, "s", None, None), 1);
        assert_eq!(publish(&account, "s", None, None), 0);
        assert!(account.sublist.is_empty());
        assert_eq!(c.subs.load(Ordering::Relaxed), 0);
    }

    fn two_accounts() -> (Arc<Account>, Arc<Account>) {
        let export = |kind, subject: &str| Export {
            kind,
            subject: subject.into(),
            accounts: None,
            response_type: ResponseType::Singleton,
            response_threshold: Duration::from_secs(60),
        };
        let import = |kind, subject: &str, to: Option<&str>, prefix: Option<&str>| Import {
            kind,
            account: "A".into(),
            subject: subject.into(),
            to: to.map(Into::into),
            prefix: prefix.map(Into::into),
        };
        let configs = [
            AccountConfig {
                name: "A".into(),
                users: Vec::new(),
                jetstream: false,
                jetstream_limits: Default::default(),
                exports: vec![
                    export(ExportKind::Stream, "events.>"),
                    export(ExportKind::Service, "svc.*"),
                ],
                imports: Vec::new(),
                mappings: Vec::new(),
            },
            AccountConfig {
                name: "B".into(),
                users: Vec::new(),
                jetstream: false,
                jetstream_limits: Default::default(),
                exports: Vec::new(),
                imports: vec![
                    import(ExportKind::Stream, "events.>", None, Some("from_a")),
                    import(ExportKind::Service, "svc.*", Some("ask.*"), None),
                ],
                mappings: Vec::new(),
            },
        ];
        let (_, accounts) = build(&configs, None, FxHashMap::default()).expect("accounts");
        let find = |n: &str| accounts.get(n).expect("account");
        (find("A"), find("B"))
    }

    #[test]
    fn a_stream_export_reaches_the_importer_under_its_prefix() {
        let (a, b) = two_accounts();
        let (in_a, in_b) = (client(1), client(2));
        subscribe(&a, &in_a, "events.>", None);
        subscribe(&b, &in_b, "from_a.events.>", None);
        assert_eq!(publish(&a, "events.x", None, None), 2);
        assert!(text(&in_b).starts_with("MSG from_a.events.x 2 1\r\n"));
        assert_eq!(publish(&a, "other", None, None), 0);
    }

    #[test]
    fn a_service_import_forwards_the_request_and_routes_one_reply_back() {
        let (a, b) = two_accounts();
        let (service, requester) = (client(1), client(2));
        subscribe(&a, &service, "svc.*", None);
        subscribe(&b, &requester, "_INBOX.>", None);
        assert_eq!(publish(&b, "ask.time", Some("_INBOX.1"), None), 1);
        let request = text(&service);
        assert!(request.starts_with("HMSG svc.time 1 _R_."), "{request}");
        assert!(request.contains("Nats-Request-Info: {\"acc\":\"B\",\"rtt\":0}"));
        let reply_to = request.split(' ').nth(3).expect("reply subject").to_owned();
        // The service answers in its own account; the requester gets it on
        // its own reply subject, once.
        assert_eq!(publish(&a, &reply_to, None, None), 1);
        assert!(text(&requester).starts_with("MSG _INBOX.1 2 1\r\n"));
        assert_eq!(
            publish(&a, &reply_to, None, None),
            0,
            "singleton: one reply"
        );
    }

    #[test]
    fn jetstream_routes_through_the_same_fan_out() {
        let (a, b) = two_accounts();
        let (in_a, in_b) = (client(1), client(2));
        subscribe(&a, &in_a, "events.*", Some("g"));
        subscribe(&b, &in_b, "from_a.events.*", None);
        assert_eq!(a.route("events.1", None, b"", b"x"), 2);
        assert!(a.has_interest("events.2") && !a.has_interest("nothing"));
        // A push delivery shows the stored subject and stays local.
        let inbox = client(3);
        subscribe(&a, &inbox, "deliver.c", None);
        text(&in_b);
        assert_eq!(
            a.route_as(
                "deliver.c",
                "events.1",
                Some("$JS.ACK.x"),
                b"NATS/1.0\r\n\r\n",
                b"y"
            ),
            1
        );
        assert!(text(&inbox).starts_with("HMSG events.1 3 $JS.ACK.x 12 13\r\n"));
        assert!(text(&in_b).is_empty());
    }

    #[test]
    fn a_header_is_added_to_a_message() {
        let (h, out) = with_header(None, b"hi", "X: 1");
        assert_eq!(&out[..h], b"NATS/1.0\r\nX: 1\r\n\r\n");
        let (h2, out2) = with_header(Some(h), &out, "Y: 2");
        assert_eq!(&out2[..h2], b"NATS/1.0\r\nX: 1\r\nY: 2\r\n\r\n");
        assert_eq!(&out2[h2..], b"hi");
    }
}
