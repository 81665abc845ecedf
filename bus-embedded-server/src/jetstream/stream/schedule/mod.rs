//! Message schedules (ADR-51, `allow_msg_schedules`) as nats-server 2.15.1
//! has them.
//!
//! A schedule is a message: published on its own subject with
//! `Nats-Schedule` (see `pattern`), `Nats-Schedule-Target` (a literal
//! subject of the stream, not the schedule's own) and optionally
//! `Nats-Schedule-TTL`, `Nats-Schedule-Rollup: sub`, `Nats-Schedule-Source`
//! and `Nats-Schedule-Time-Zone` (for cron expressions: a zone of the
//! system's database, as nats-server loads it). It is
//! stored with `Nats-Rollup: sub` added, so a new schedule on a subject
//! replaces the old one: one schedule per subject. Any message without
//! `Nats-Scheduler` stored on a schedule's subject cancels it.
//!
//! When it fires, the stream stores on the target a copy of the schedule's
//! payload and headers (or of the last message on the source subject, if
//! there is one) without the `Nats-Schedule*`, `Nats-Expected-*`,
//! `Nats-Msg-Id`, `Nats-TTL` and `Nats-Rollup` headers, then with
//! `Nats-Scheduler: <schedule subject>`, `Nats-Schedule-Next: <next time,
//! RFC 3339>` (repeating) or `purge` (`@at`), `Nats-TTL` and `Nats-Rollup`
//! as the schedule asked. Storing a message with `Nats-Schedule-Next:
//! purge` purges its scheduler's subject (clients may publish such a
//! message to cancel a schedule); one with a time moves the scheduler's
//! next firing there.
//!
//! Durability and restarts: the timer set (`Schedules`) holds no state
//! of its own. At open it is rebuilt by replaying the stream in order
//! through the same rules as a live store (`StreamInner::on_stored`):
//! schedules add themselves, produced messages move their scheduler's next
//! time or purge it. The produced message is appended before the purge or
//! the move, so a crash in between leaves the produced message in the log
//! and the replay finishes the purge (an `@at` never fires twice) or finds
//! the next time in it. A schedule that came due while the server was down
//! fires once right after the start (nats-server does so after a clean
//! shutdown), then repeats from then on.
//!
//! Firing runs in the stream's flusher round (every 250 ms at most, like
//! nats-server's minimum timer), on a blocking thread for file streams
//! (it reads the schedule messages); streams without schedules only
//! compare an empty map's first key.

mod pattern;

use std::collections::{BTreeMap, HashMap};

pub(crate) use pattern::Pattern;

use super::{StreamInner, headers};
use crate::jetstream::errors::ApiError;
use crate::jetstream::store::{Purge, Store, SubjectFilter};
use crate::jetstream::types::{DiscardPolicy, StreamConfig};
use crate::subject;

/// Stream config rules for schedules (after the delete-marker checks);
/// `allow_rollup_hdrs` is turned on by `StreamConfig::normalize`.
pub(crate) fn check_config(cfg: &StreamConfig) -> Result<(), ApiError> {
    if cfg.allow_msg_schedules && cfg.discard == DiscardPolicy::New {
        return Err(ApiError::invalid_config(
            "message scheduling cannot use discard new",
        ));
    }
    Ok(())
}

/// What an update may not change.
pub(crate) fn check_update(old: &StreamConfig, new: &StreamConfig) -> Result<(), ApiError> {
    if old.allow_msg_schedules && !new.allow_msg_schedules {
        return Err(ApiError::invalid_config(
            "message schedules can not be disabled",
        ));
    }
    Ok(())
}

/// A non-empty header value.
fn value<'a>(hdr: &'a [u8], name: &str) -> Option<&'a str> {
    headers::get(hdr, name).filter(|v| !v.is_empty())
}

/// The schedule a header block holds, read as at publish: `Ok(None)` when
/// it holds none; errors for a bad time zone or pattern.
fn schedule_of(hdr: &[u8]) -> Result<Option<Pattern>, ApiError> {
    let zone = match headers::get(hdr, "Nats-Schedule-Time-Zone") {
        None => None,
        Some(name) => Some(
            (!name.is_empty())
                .then(|| pattern::Zone::load(name))
                .flatten()
                .ok_or_else(ApiError::schedules_time_zone_invalid)?,
        ),
    };
    let p = headers::get(hdr, "Nats-Schedule").unwrap_or("");
    match pattern::parse(p, zone.as_ref()) {
        None => Err(ApiError::schedules_pattern_invalid()),
        Some(Pattern::None) => Ok(None),
        Some(p) => Ok(Some(p)),
    }
}

/// A stored schedule's pattern (`None`: not a valid schedule).
fn stored_pattern(hdr: &[u8]) -> Option<Pattern> {
    schedule_of(hdr).ok().flatten()
}

/// Whether any stream subject can hold `s`.
fn in_stream(cfg: &StreamConfig, s: &str) -> bool {
    cfg.subjects.iter().any(|f| subject::overlaps(f, s))
}

/// Checks a client's publish carrying schedule headers, in nats-server's
/// order; returns the header block to store when it changes (a schedule
/// gets `Nats-Rollup: sub`). `store` answers whether a purge request's
/// scheduler subject holds a schedule.
pub(super) fn check_publish(
    cfg: &StreamConfig,
    subj: &str,
    hdr: &[u8],
    store: &mut dyn Store,
) -> Result<Option<Vec<u8>>, ApiError> {
    let allowed = cfg.allow_msg_schedules;
    let disabled = |e: ApiError| {
        if allowed {
            e
        } else {
            ApiError::schedules_disabled()
        }
    };
    let mut out = None;
    let sched = schedule_of(hdr).map_err(disabled)?;
    if sched
        .as_ref()
        .is_some_and(|p| !p.valid_at(crate::jetstream::types::now_nanos()))
    {
        // A cron expression with no time within five years.
        return Err(disabled(ApiError::schedules_pattern_invalid()));
    }
    if sched.is_some() {
        if !allowed {
            return Err(ApiError::schedules_disabled());
        }
        let ttl = value(hdr, "Nats-Schedule-TTL");
        if ttl.is_some_and(|t| super::ttl::parse_ttl(t).is_none()) {
            return Err(ApiError::schedules_ttl_invalid());
        }
        if value(hdr, "Nats-Schedule-Rollup").is_some_and(|r| r != "sub") {
            return Err(ApiError::schedules_rollup_invalid());
        }
        if ttl.is_some() && !cfg.allow_msg_ttl {
            return Err(ApiError::msg_ttl_disabled());
        }
        let target = value(hdr, "Nats-Schedule-Target").unwrap_or("");
        if !subject::valid_literal(target) || target == subj {
            return Err(ApiError::schedules_target_invalid());
        }
        let source = value(hdr, "Nats-Schedule-Source");
        if let Some(src) = source
            && (src == target || src == subj || !subject::valid_literal(src))
        {
            return Err(ApiError::schedules_source_invalid());
        }
        if !in_stream(cfg, target) {
            return Err(ApiError::schedules_target_invalid());
        }
        if source.is_some_and(|s| !in_stream(cfg, s)) {
            return Err(ApiError::schedules_source_invalid());
        }
        match headers::get(hdr, "Nats-Rollup") {
            None => out = Some(headers::with_added(hdr, "Nats-Rollup", "sub")),
            Some("") => {
                let without = strip(hdr, |k| k == "Nats-Rollup");
                out = Some(headers::with_added(&without, "Nats-Rollup", "sub"));
            }
            Some(r) if r.eq_ignore_ascii_case("sub") => {}
            Some(_) => return Err(ApiError::schedules_rollup_invalid()),
        }
    }
    if let Some(next) = value(hdr, "Nats-Schedule-Next") {
        // Clients may only ask for a purge.
        if next != "purge" {
            return Err(ApiError::schedules_scheduler_invalid());
        }
        let scheduler = value(hdr, "Nats-Scheduler").unwrap_or("");
        if scheduler == subj || !subject::valid_literal(scheduler) {
            return Err(ApiError::schedules_scheduler_invalid());
        }
        if !allowed {
            return Err(ApiError::schedules_disabled());
        }
        // The purged subject must hold a schedule, if it holds anything.
        if let Ok(Some(last)) = store.last_by_subject(scheduler)
            && value(&last.hdr, "Nats-Schedule").is_none()
        {
            return Err(ApiError::schedules_scheduler_invalid());
        }
    } else if value(hdr, "Nats-Scheduler").is_some() {
        return Err(ApiError::schedules_scheduler_invalid());
    }
    Ok(out)
}

/// Checks a message of an atomic batch: schedule headers get the errors a
/// plain publish gets; a valid schedule or purge request in a batch is
/// refused (not built here).
pub(super) fn check_in_batch(
    cfg: &StreamConfig,
    subj: &str,
    hdr: &[u8],
    store: &mut dyn Store,
) -> Result<(), ApiError> {
    check_publish(cfg, subj, hdr, store)?;
    for name in ["Nats-Schedule", "Nats-Schedule-Next"] {
        if value(hdr, name).is_some() {
            return Err(ApiError::batch_unsupported_header(name));
        }
    }
    Ok(())
}

/// The schedules of a stream: when each fires next. Empty (no allocation)
/// on streams without schedules.
#[derive(Debug, Default)]
pub(crate) struct Schedules {
    /// Schedule subject -> (its message's sequence, next firing, Unix ns).
    by_subject: HashMap<String, (u64, i64)>,
    /// (next firing, sequence) -> schedule subject.
    timers: BTreeMap<(i64, u64), String>,
}

impl Schedules {
    fn add(&mut self, subj: &str, seq: u64, at: i64) {
        if let Some((old_seq, old_at)) = self.by_subject.insert(subj.to_owned(), (seq, at)) {
            self.timers.remove(&(old_at, old_seq));
        }
        self.timers.insert((at, seq), subj.to_owned());
    }

    fn remove_subject(&mut self, subj: &str) {
        if let Some((seq, at)) = self.by_subject.remove(subj) {
            self.timers.remove(&(at, seq));
        }
    }

    /// Moves the schedule on `subj` to `at`, if it is older than the
    /// produced message (`produced`) that says so.
    fn update(&mut self, subj: &str, produced: u64, at: i64) {
        if let Some(e) = self.by_subject.get_mut(subj)
            && e.0 < produced
        {
            self.timers.remove(&(e.1, e.0));
            e.1 = at;
            self.timers.insert((at, e.0), subj.to_owned());
        }
    }

    /// When the next schedule fires.
    pub(crate) fn next_due(&self) -> Option<i64> {
        self.timers.first_key_value().map(|(&(at, _), _)| at)
    }

    /// How many schedules there are.
    pub(crate) fn len(&self) -> usize {
        self.by_subject.len()
    }

    /// The schedules due at `now`, by sequence; they stay known by subject
    /// (firing moves or removes them).
    fn take_due(&mut self, now: i64) -> Vec<(i64, u64, String)> {
        let mut due = Vec::new();
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((at, seq), subj) = entry.remove_entry();
            due.push((at, seq, subj));
        }
        due.sort_unstable_by_key(|d| d.1);
        due
    }

    /// Forgets the schedule on `subj` if it is still message `seq`.
    fn forget(&mut self, subj: &str, seq: u64) {
        if self.by_subject.get(subj).is_some_and(|e| e.0 == seq) {
            self.remove_subject(subj);
        }
    }

    /// Puts a taken schedule back, firing at `at`.
    fn retry(&mut self, subj: &str, seq: u64, at: i64) {
        if self.by_subject.get(subj).is_some_and(|e| e.0 == seq) {
            self.add(subj, seq, at);
        }
    }
}

/// `hdr` without the lines whose name `drop` picks (names as written).
fn strip(hdr: &[u8], drop: impl Fn(&str) -> bool) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(hdr) else {
        return hdr.to_vec();
    };
    let mut out = String::with_capacity(text.len());
    let mut lines = text.split_inclusive("\r\n");
    if let Some(first) = lines.next() {
        out.push_str(first);
    }
    for line in lines {
        if !line.split_once(':').is_some_and(|(k, _)| drop(k.trim())) {
            out.push_str(line);
        }
    }
    out.into_bytes()
}

/// The header block of a produced message: `base` (the schedule's or the
/// source message's) without scheduling and store-control headers, then
/// the scheduler's own.
fn produced_header(
    base: &[u8],
    scheduler: &str,
    next: Option<&str>,
    ttl: Option<&str>,
    rollup: Option<&str>,
) -> Vec<u8> {
    let base = if base.is_empty() {
        b"NATS/1.0\r\n\r\n".as_slice()
    } else {
        base
    };
    let mut h = strip(base, |k| {
        k.starts_with("Nats-Schedule")
            || k.starts_with("Nats-Expected-")
            || k == "Nats-Msg-Id"
            || k == "Nats-TTL"
            || k == "Nats-Rollup"
    });
    h = headers::with_added(&h, "Nats-Scheduler", scheduler);
    h = headers::with_added(&h, "Nats-Schedule-Next", next.unwrap_or("purge"));
    if let Some(ttl) = ttl {
        h = headers::with_added(&h, "Nats-TTL", ttl);
    }
    if let Some(rollup) = rollup {
        h = headers::with_added(&h, "Nats-Rollup", rollup);
    }
    h
}

/// nats-server's shortest schedule timer.
const MIN_DELAY_NANOS: i64 = 250_000_000;

/// Retry delay for a schedule whose produced message could not be stored.
const RETRY_NANOS: i64 = 5_000_000_000;

impl StreamInner {
    /// Keeps the timer set true after message `seq` on `subj` was stored
    /// at `ts` (live, and replayed at open): a schedule adds itself (or
    /// replaces the one on its subject), any other message without
    /// `Nats-Scheduler` cancels its subject's schedule, a produced message
    /// moves its scheduler's next firing or purges it.
    pub(super) fn on_stored(&mut self, seq: u64, subj: &str, hdr: &[u8], ts: i64) {
        if hdr.is_empty() {
            if self.schedules.len() > 0 {
                self.schedules.remove_subject(subj);
            }
            return;
        }
        if let Some(at) = stored_pattern(hdr).and_then(|p| p.first(ts)) {
            // Never sooner than nats-server's shortest timer after the
            // store (an `@at` in the past fires after that, not within
            // the publish).
            self.schedules
                .add(subj, seq, at.max(ts.saturating_add(MIN_DELAY_NANOS)));
        } else if value(hdr, "Nats-Scheduler").is_none() {
            self.schedules.remove_subject(subj);
        }
        let (Some(next), Some(scheduler)) = (
            value(hdr, "Nats-Schedule-Next"),
            value(hdr, "Nats-Scheduler"),
        ) else {
            return;
        };
        if next == "purge" {
            // Everything on the scheduler's subject before this message
            // (at open, usually long gone: then nothing is written).
            if self
                .store
                .first_seq_of_subject(scheduler)
                .is_some_and(|first| first < seq)
            {
                let _ = self.store.purge(&Purge {
                    filter: Some(scheduler.to_owned()),
                    seq: Some(seq),
                    keep: None,
                });
            }
            if self
                .schedules
                .by_subject
                .get(scheduler)
                .is_some_and(|e| e.0 < seq)
            {
                self.schedules.remove_subject(scheduler);
            }
        } else if let Some((secs, nanos)) = pattern::parse_rfc3339(next) {
            let at = secs
                .saturating_mul(1_000_000_000)
                .saturating_add(i64::from(nanos));
            self.schedules.update(scheduler, seq, at);
        }
    }

    /// Rebuilds the timer set from the stored messages (at open).
    pub(super) fn rebuild_schedules(&mut self) {
        self.schedules = Schedules::default();
        let mut seq = 0;
        while let Ok(Some(m)) = self.store.next_from(seq, &SubjectFilter::All) {
            seq = m.seq + 1;
            self.on_stored(m.seq, &m.subject, &m.hdr, m.ts);
        }
    }

    /// Fires the schedules due at `now`: stores their produced messages.
    /// Returns true when any was due.
    pub(super) fn fire_schedules(
        &mut self,
        stream: &str,
        now: i64,
        interest: &[SubjectFilter],
    ) -> bool {
        let due = self.schedules.take_due(now);
        if due.is_empty() {
            return false;
        }
        for (at, seq, subj) in due {
            match self.fire_one(stream, at, seq, &subj, now, interest) {
                Ok(true) => {}
                Ok(false) => self.schedules.forget(&subj, seq),
                // A sealed stream stores nothing again.
                Err(e) if e == ApiError::stream_sealed() => self.schedules.forget(&subj, seq),
                Err(e) => {
                    tracing::warn!(stream, schedule = %subj, error = %e.description, "a scheduled message could not be stored; retrying");
                    self.schedules
                        .retry(&subj, seq, now.saturating_add(RETRY_NANOS));
                }
            }
        }
        true
    }

    /// Fires one schedule; `Ok(false)`: it is gone or no longer valid.
    fn fire_one(
        &mut self,
        stream: &str,
        at: i64,
        seq: u64,
        subj: &str,
        now: i64,
        interest: &[SubjectFilter],
    ) -> Result<bool, ApiError> {
        let m = match self.store.get(seq) {
            Ok(Some(m)) if m.subject.as_ref() == subj => m,
            Ok(_) => return Ok(false),
            Err(e) => return Err(ApiError::stream_read(&e)),
        };
        let Some(p) = stored_pattern(&m.hdr) else {
            return Ok(false);
        };
        let ttl = value(&m.hdr, "Nats-Schedule-TTL");
        if ttl.is_some_and(|t| super::ttl::parse_ttl(t).is_none()) {
            return Ok(false);
        }
        let Some(target) = value(&m.hdr, "Nats-Schedule-Target") else {
            return Ok(false);
        };
        let rollup = value(&m.hdr, "Nats-Schedule-Rollup");
        let source = match value(&m.hdr, "Nats-Schedule-Source") {
            Some(src) => self
                .store
                .last_by_subject(src)
                .map_err(|e| ApiError::stream_read(&e))?,
            None => None,
        };
        let (base, data) = match &source {
            Some(s) => (&s.hdr[..], &s.data[..]),
            None => (&m.hdr[..], &m.data[..]),
        };
        let next = if p.repeats() {
            match p.after(at, now) {
                Some(next) => Some(next),
                None => return Ok(false),
            }
        } else {
            None
        };
        let next = next.map(|t| p.format(t));
        let hdr = produced_header(base, subj, next.as_deref(), ttl, rollup);
        let target = target.to_owned();
        self.store_msg_as(stream, &target, &hdr, data, interest, true)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const NANOS: i64 = 1_000_000_000;

    #[test]
    fn a_produced_message_loses_control_headers_and_names_its_scheduler() {
        let base = b"NATS/1.0\r\nNats-Schedule: @every 1s\r\nFoo: bar\r\nNats-Schedule-Target: t\r\nNats-Msg-Id: 1\r\nNats-TTL: 5s\r\nNats-Expected-Stream: S\r\nNats-Rollup: sub\r\n\r\n";
        let h = produced_header(base, "s.a", None, Some("10s"), Some("sub"));
        assert_eq!(
            String::from_utf8_lossy(&h),
            "NATS/1.0\r\nFoo: bar\r\nNats-Scheduler: s.a\r\nNats-Schedule-Next: purge\r\nNats-TTL: 10s\r\nNats-Rollup: sub\r\n\r\n"
        );
        let h = produced_header(b"", "s.a", Some("1970-01-01T00:00:01Z"), None, None);
        assert_eq!(
            String::from_utf8_lossy(&h),
            "NATS/1.0\r\nNats-Scheduler: s.a\r\nNats-Schedule-Next: 1970-01-01T00:00:01Z\r\n\r\n"
        );
    }

    #[test]
    fn one_schedule_per_subject_and_only_newer_produced_messages_move_it() {
        let mut s = Schedules::default();
        s.add("a", 1, 100);
        s.add("a", 3, 50);
        assert_eq!(s.len(), 1);
        assert_eq!(s.next_due(), Some(50));
        // A produced message older than the schedule does not move it.
        s.update("a", 2, 10);
        assert_eq!(s.next_due(), Some(50));
        s.update("a", 4, 70);
        assert_eq!(s.next_due(), Some(70));
        let due = s.take_due(70);
        assert_eq!(due, vec![(70, 3, "a".to_owned())]);
        assert_eq!(s.next_due(), None);
        s.retry("a", 3, 80);
        assert_eq!(s.next_due(), Some(80));
        s.forget("a", 2);
        assert_eq!(s.len(), 1);
        s.forget("a", 3);
        assert_eq!((s.len(), s.next_due()), (0, None));
    }

    /// A stream over `store` as recovery opens it (the timer set is
    /// rebuilt from the messages).
    fn reopened(
        dir: &std::path::Path,
        store: crate::jetstream::store::mem::MemStore,
    ) -> (
        Arc<crate::jetstream::JetStream>,
        Arc<crate::jetstream::stream::Stream>,
    ) {
        let js = crate::jetstream::JetStream::open(crate::jetstream::JetStreamConfig {
            store_dir: dir.to_owned(),
            ..crate::jetstream::JetStreamConfig::default()
        })
        .expect("open");
        let mut config = StreamConfig {
            name: "S".into(),
            subjects: vec!["s.>".into()],
            allow_msg_schedules: true,
            ..StreamConfig::default()
        };
        config.normalize();
        let stream = crate::jetstream::stream::Stream::assemble(
            &js,
            config,
            crate::jetstream::types::now_nanos(),
            Box::new(store),
            None,
        );
        (js, stream)
    }

    fn sched_hdr(pattern: &str) -> Vec<u8> {
        format!(
            "NATS/1.0\r\nNats-Schedule: {pattern}\r\nNats-Schedule-Target: s.t\r\nNats-Rollup: sub\r\n\r\n"
        )
        .into_bytes()
    }

    fn count(stream: &crate::jetstream::stream::Stream, subject: &str) -> u64 {
        crate::jetstream::lock(&stream.inner)
            .store
            .subject_count(subject)
    }

    /// A crash after an `@at` schedule's produced message was appended but
    /// before its schedule was purged: the replay at open finishes the
    /// purge, so it does not fire a second time.
    #[tokio::test]
    async fn a_crash_between_firing_and_purging_does_not_fire_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = crate::jetstream::store::mem::MemStore::new();
        let now = crate::jetstream::types::now_nanos();
        store
            .append("s.a", &sched_hdr("@at 2020-01-01T00:00:00Z"), b"p", now)
            .expect("append");
        let fired = produced_header(
            &sched_hdr("@at 2020-01-01T00:00:00Z"),
            "s.a",
            None,
            None,
            None,
        );
        store.append("s.t", &fired, b"p", now).expect("append");
        let (_js, stream) = reopened(dir.path(), store);
        assert_eq!(
            count(&stream, "s.a"),
            0,
            "the interrupted purge is finished"
        );
        assert_eq!(crate::jetstream::lock(&stream.inner).schedules.len(), 0);
        stream.fire_schedules();
        assert_eq!(count(&stream, "s.t"), 1, "fired once");
    }

    /// A repeating schedule's next time is the one its last produced
    /// message announced (not recomputed from the schedule's own time).
    #[tokio::test]
    async fn a_reopened_repeating_schedule_fires_when_its_last_message_said() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = crate::jetstream::store::mem::MemStore::new();
        let now = crate::jetstream::types::now_nanos();
        store
            .append("s.a", &sched_hdr("@every 1s"), b"p", now - 10 * NANOS)
            .expect("append");
        let next = now + 3600 * NANOS;
        let next_text = pattern::format_rfc3339_nano(next, 0);
        let fired = produced_header(&sched_hdr("@every 1s"), "s.a", Some(&next_text), None, None);
        store.append("s.t", &fired, b"p", now).expect("append");
        let (_js, stream) = reopened(dir.path(), store);
        let due = crate::jetstream::lock(&stream.inner).schedules.next_due();
        assert_eq!(due, Some(next));
        stream.fire_schedules();
        assert_eq!(count(&stream, "s.t"), 1, "not due yet");
    }

    /// A schedule due while the server was down fires once at open, and a
    /// repeating one then moves on from now.
    #[tokio::test]
    async fn schedules_due_while_down_fire_once_after_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = crate::jetstream::store::mem::MemStore::new();
        let long_ago = crate::jetstream::types::now_nanos() - 60 * NANOS;
        store
            .append(
                "s.a",
                &sched_hdr("@at 2020-01-01T00:00:00Z"),
                b"a",
                long_ago,
            )
            .expect("append");
        store
            .append("s.b", &sched_hdr("@every 5s"), b"b", long_ago)
            .expect("append");
        let (_js, stream) = reopened(dir.path(), store);
        stream.fire_schedules();
        stream.fire_schedules();
        assert_eq!(count(&stream, "s.t"), 2, "each fired once");
        assert_eq!(count(&stream, "s.a"), 0, "the @at schedule is gone");
        assert_eq!(count(&stream, "s.b"), 1, "the repeating one stays");
        let inner = crate::jetstream::lock(&stream.inner);
        let due = inner.schedules.next_due().expect("b is scheduled");
        assert!(
            due > crate::jetstream::types::now_nanos(),
            "moved on from now"
        );
    }
}
