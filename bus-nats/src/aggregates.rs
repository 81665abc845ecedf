//! The event store on JetStream: appends with an expected version, loads of
//! one aggregate.
//!
//! ## Keying: a marker per append, in the event stream
//! Event subjects stay `<prefix>.events.<aggregate>.<EventType>`; the
//! aggregate instance is keyed by a *marker subject* in the same stream,
//! `<prefix>.aggregates.<aggregate>.<key>` (`key` =
//! [`aggregate_key`](bus_core::aggregate::aggregate_key) of the id). An
//! append is one atomic batch: first the marker (an `AppendMarker`: first
//! version, count, the previous marker's sequence, the event ids) with
//! `Nats-Expected-Last-Subject-Sequence` = the sequence of the aggregate's
//! last marker (0 for none), then the events on their usual subjects. The
//! server checks the expectation and stores the whole batch, or refuses it
//! (10071), in one step. A batch's messages get consecutive sequences, so a
//! marker at `S` with `k` events means the events are at `S+1 ..= S+k`.
//!
//! ## Append
//! Read the last marker (a direct get by subject), compare its version with
//! the expectation, then send the batch expecting exactly that marker: a
//! compare-and-swap whose compare is done again by the server. A refusal
//! means another append got in first, or that this append's earlier
//! attempt did (its acknowledgement was lost): the marker right after the
//! expected one tells which, by its event ids.
//!
//! ## Load
//! The last marker gives the version; the markers holding the wanted
//! versions are read by following `previous` from it (or, on servers with
//! batched direct get, listed by subject in one request when many are
//! needed); then each marker's events by sequence. Every request is answered
//! from the server's subject index or by sequence: the cost follows the
//! aggregate, not the stream.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bus_core::aggregate::{number_events, same_event_ids, validate_aggregate, validate_append};
use bus_core::envelope::pb::AppendMarker;
use bus_core::{
    AggregateHistory, AppendReceipt, BusError, EventEnvelope, ExpectedVersion, Result, StoredEvent,
};
use futures::{StreamExt, TryStreamExt};
use prost::Message;

use crate::atomic::{self, Outgoing, Refused};
use crate::direct::{self, Get, Raw};
use crate::{Inner, wire};

/// How many events behind its head a load may be before it lists the
/// markers in one batched request instead of following `previous` one
/// request at a time (servers with batched direct get only).
const CHAIN_EVENTS: u64 = 64;

/// Rounds of an `Any` append that keeps losing to other writers.
const MAX_ROUNDS: u32 = 100;

/// Busy answers (too many open batches) before giving up.
const MAX_BUSY: u32 = 50;

/// Room for a marker's headers within the stream's message size limit.
const MARKER_HEADER_ROOM: usize = 512;

/// One stored append marker.
#[derive(Debug, Clone)]
pub struct Marker {
    /// Its stream sequence.
    pub seq: u64,
    /// Its body.
    pub body: AppendMarker,
}

impl Marker {
    fn count(&self) -> u64 {
        u64::from(self.body.count)
    }

    /// The aggregate's version after this append.
    pub fn last_version(&self) -> u64 {
        self.body.first_version + self.count().saturating_sub(1)
    }

    /// The receipt of this append.
    fn receipt(&self, duplicate: bool) -> AppendReceipt {
        AppendReceipt {
            version: self.last_version(),
            positions: (1..=self.count()).map(|i| self.seq + i).collect(),
            duplicate,
        }
    }

    fn decode(subject: &str, raw: Raw) -> Result<Marker> {
        if raw.subject != subject {
            return Err(BusError::Backend(format!(
                "expected an append marker on {subject} at {}, found a message on {}",
                raw.seq, raw.subject
            )));
        }
        let body = AppendMarker::decode(raw.payload.as_ref()).map_err(|e| {
            BusError::Decode(format!(
                "append marker at {} on {subject} is not an AppendMarker: {e}",
                raw.seq
            ))
        })?;
        if body.count == 0 || body.first_version == 0 || body.event_ids.len() != body.count as usize
        {
            return Err(BusError::Decode(format!(
                "append marker at {} on {subject} is inconsistent: first version {}, count {}, {} event ids",
                raw.seq,
                body.first_version,
                body.count,
                body.event_ids.len()
            )));
        }
        Ok(Marker { seq: raw.seq, body })
    }
}

/// The aggregate's last marker.
async fn last(inner: &Inner, subject: &str) -> Result<Option<Marker>> {
    direct::get(inner, Get::Last(subject))
        .await?
        .map(|raw| Marker::decode(subject, raw))
        .transpose()
}

/// The marker at `seq`, which must be on `subject`.
async fn at(inner: &Inner, subject: &str, seq: u64) -> Result<Option<Marker>> {
    direct::get(inner, Get::Seq(seq))
        .await?
        .map(|raw| Marker::decode(subject, raw))
        .transpose()
}

/// The first marker on `subject` after sequence `seq`.
async fn next_after(inner: &Inner, subject: &str, seq: u64) -> Result<Option<Marker>> {
    direct::get(
        inner,
        Get::Next {
            subject,
            from: seq + 1,
        },
    )
    .await?
    .map(|raw| Marker::decode(subject, raw))
    .transpose()
}

/// The markers from `head` back to the one holding version `after + 1`
/// (or the first), oldest first, following `previous`.
async fn chain(inner: &Inner, subject: &str, head: Marker, after: u64) -> Result<Vec<Marker>> {
    let mut out = vec![head];
    loop {
        let oldest = &out[out.len() - 1];
        if oldest.body.first_version <= after + 1 || oldest.body.previous == 0 {
            break;
        }
        let previous = oldest.body.previous;
        match at(inner, subject, previous).await? {
            Some(m) => out.push(m),
            // Removed by the stream's limits: the caller sees the gap.
            None => break,
        }
    }
    out.reverse();
    Ok(out)
}

/// Every marker on `subject` up to sequence `up_to`, oldest first, by
/// batched direct get; `None` when the server has no batched direct get.
async fn listed(inner: &Inner, subject: &str, up_to: u64) -> Result<Option<Vec<Marker>>> {
    let mut out: Vec<Marker> = Vec::new();
    let mut from = 1;
    loop {
        let batch = direct::batch(inner, Some(subject), from, direct::MAX_BATCH).await?;
        if !batch.batched {
            inner.batched_direct_get.store(false, Ordering::Relaxed);
            return Ok(None);
        }
        let Some(last_seq) = batch.raws.last().map(|r| r.seq) else {
            break;
        };
        for raw in batch.raws {
            if raw.seq <= up_to {
                out.push(Marker::decode(subject, raw)?);
            }
        }
        if batch.pending == 0 || last_seq >= up_to {
            break;
        }
        from = last_seq + 1;
    }
    Ok(Some(out))
}

/// The append that took `version` (its first event), found from `head` back.
async fn append_at_version(
    inner: &Inner,
    subject: &str,
    head: &Marker,
    version: u64,
) -> Result<Option<Marker>> {
    let mut m = head.clone();
    loop {
        if m.body.first_version == version {
            return Ok(Some(m));
        }
        if m.body.first_version < version || m.body.previous == 0 {
            return Ok(None);
        }
        match at(inner, subject, m.body.previous).await? {
            Some(prev) => m = prev,
            None => return Ok(None),
        }
    }
}

fn history_gone(aggregate_type: &str, aggregate_id: &str, version: u64) -> BusError {
    BusError::NotFound {
        what: "aggregate events",
        name: format!(
            "{aggregate_type} {aggregate_id:?} version {version} (removed by the stream's limits)"
        ),
    }
}

/// Appends `events` to their aggregate if its version meets `expected`.
pub async fn append(
    inner: &Inner,
    expected: ExpectedVersion,
    mut events: Vec<EventEnvelope>,
) -> Result<AppendReceipt> {
    let (aggregate_type, aggregate_id) = {
        let (t, i) = validate_append(&events)?;
        (t.to_owned(), i.to_owned())
    };
    let limit = inner.stream.max_msg_size;
    for e in &events {
        let size = e.encoded_len();
        if size > limit {
            return Err(BusError::PayloadTooLarge { size, limit });
        }
    }
    inner.js("appending to an aggregate")?;
    inner.atomic_appends()?;
    let layout = &inner.layout;
    let marker_subject = layout.marker_subject(&aggregate_type, &aggregate_id)?;
    let subjects = events
        .iter()
        .map(|e| layout.event_subject(&e.aggregate_type, &e.event_type))
        .collect::<Result<Vec<_>>>()?;
    let ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
    let k = events.len() as u64;
    let dedup = inner.stream.duplicate_window > Duration::ZERO;

    let mut head = last(inner, &marker_subject).await?;
    let (mut rounds, mut lost, mut busy) = (0u32, 0u32, 0u32);
    loop {
        // This append may already be stored: its acknowledgement was lost.
        if let Some(m) = &head {
            if same_event_ids(&m.body.event_ids, &ids) {
                return Ok(m.receipt(true));
            }
        }
        let actual = head.as_ref().map_or(0, Marker::last_version);
        if !expected.is_met_by(actual) {
            if let (Some(v), Some(h)) = (expected.version(), &head) {
                if v < actual {
                    if let Some(m) = append_at_version(inner, &marker_subject, h, v + 1).await? {
                        if same_event_ids(&m.body.event_ids, &ids) {
                            return Ok(m.receipt(true));
                        }
                    }
                }
            }
            return Err(BusError::VersionConflict {
                aggregate_type,
                aggregate_id,
                expected: expected.version().unwrap_or(actual),
                actual,
            });
        }

        let previous = head.as_ref().map_or(0, |m| m.seq);
        number_events(&mut events, actual + 1);
        let marker = AppendMarker {
            aggregate_type: aggregate_type.clone(),
            aggregate_id: aggregate_id.clone(),
            first_version: actual + 1,
            count: u32::try_from(k).unwrap_or(u32::MAX),
            previous,
            event_ids: ids.clone(),
        };
        let marker_body = marker.encode_to_vec();
        if marker_body.len() + MARKER_HEADER_ROOM > limit + crate::streams::HEADER_ALLOWANCE {
            return Err(BusError::PayloadTooLarge {
                size: marker_body.len(),
                limit,
            });
        }
        let mut marker_headers = wire::marker_headers(&marker);
        marker_headers.insert(
            wire::EXPECTED_LAST_SUBJECT_SEQUENCE,
            previous.to_string().as_str(),
        );
        let mut batch = Vec::with_capacity(events.len() + 1);
        batch.push(Outgoing {
            subject: marker_subject.clone(),
            headers: marker_headers,
            body: marker_body.into(),
        });
        for (e, subject) in events.iter().zip(&subjects) {
            let size = e.encoded_len();
            if size > limit {
                return Err(BusError::PayloadTooLarge { size, limit });
            }
            batch.push(Outgoing {
                subject: subject.clone(),
                headers: wire::event_headers(e, dedup),
                body: wire::encode(e),
            });
        }

        match atomic::publish(inner, batch).await {
            Ok(stored) => {
                if stored.count != k + 1 {
                    return Err(BusError::Backend(format!(
                        "the append of {k} events was stored as {} messages",
                        stored.count
                    )));
                }
                return Ok(AppendReceipt {
                    version: actual + k,
                    positions: (stored.last_seq + 1 - k..=stored.last_seq).collect(),
                    duplicate: false,
                });
            }
            Err(Refused::WrongLastSequence) => {
                // Someone appended after `previous`: another writer, or an
                // earlier attempt of this append whose ack was lost.
                if let Some(m) = next_after(inner, &marker_subject, previous).await? {
                    if same_event_ids(&m.body.event_ids, &ids) {
                        return Ok(m.receipt(true));
                    }
                }
                rounds += 1;
                if rounds > MAX_ROUNDS {
                    return Err(BusError::Timeout {
                        operation: format!(
                            "appending to {aggregate_type} {aggregate_id:?}: other writers won \
                             {MAX_ROUNDS} rounds in a row"
                        ),
                        after: Duration::ZERO,
                    });
                }
                head = last(inner, &marker_subject).await?;
            }
            Err(Refused::DuplicateMsgId) => {
                let fresh = last(inner, &marker_subject).await?;
                if let Some(m) = next_after(inner, &marker_subject, previous).await? {
                    if same_event_ids(&m.body.event_ids, &ids) {
                        return Ok(m.receipt(true));
                    }
                }
                let moved = fresh.as_ref().map(|m| m.seq) != head.as_ref().map(|m| m.seq);
                rounds += 1;
                if !moved || rounds > MAX_ROUNDS {
                    return Err(BusError::Conflict(format!(
                        "an event id of this append to {aggregate_type} {aggregate_id:?} is \
                         already stored inside the duplicate window by another append or \
                         publish; a new append needs new event ids"
                    )));
                }
                head = fresh;
            }
            Err(Refused::Unknown(e)) => {
                // Send the same batch again (same expectation): if the first
                // one was stored, the server refuses this one and the marker
                // after `previous` is ours.
                if lost >= inner.config.publish_retries {
                    return Err(e);
                }
                lost += 1;
                tracing::warn!(aggregate = %aggregate_type, id = %aggregate_id, attempt = lost, error = %e,
                    "append not acknowledged; sending it again with the same expectation");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(lost))).await;
            }
            Err(Refused::Busy(e)) => {
                busy += 1;
                if busy > MAX_BUSY {
                    return Err(e);
                }
                tokio::time::sleep(atomic::busy_backoff(busy)).await;
            }
            Err(Refused::Failed(e)) => return Err(e),
        }
    }
}

/// The events of `raws` as stored events, checked against their marker.
fn events_of(
    marker: &Marker,
    first_version: u64,
    raws: Vec<Raw>,
    inner: &Inner,
) -> Result<Vec<StoredEvent>> {
    let aggregate_type = &marker.body.aggregate_type;
    let aggregate_id = &marker.body.aggregate_id;
    let mut out = Vec::with_capacity(raws.len());
    for (i, raw) in raws.into_iter().enumerate() {
        let version = first_version + i as u64;
        let seq = marker.seq + (version - marker.body.first_version) + 1;
        if raw.seq != seq {
            return Err(history_gone(aggregate_type, aggregate_id, version));
        }
        let envelope = wire::decode(&raw.subject, &raw.payload)?;
        let index = usize::try_from(version - marker.body.first_version).unwrap_or(usize::MAX);
        let expected_id = marker.body.event_ids.get(index);
        let subject = inner
            .layout
            .event_subject(&envelope.aggregate_type, &envelope.event_type)?;
        if envelope.aggregate_type != *aggregate_type
            || envelope.aggregate_id != *aggregate_id
            || envelope.sequence != version
            || expected_id != Some(&envelope.event_id)
            || subject != raw.subject
        {
            return Err(BusError::Backend(format!(
                "position {seq} should hold version {version} of {aggregate_type} {aggregate_id:?} \
                 (event {}), but holds {} {:?} version {} (event {}) on {}",
                expected_id.map_or("?", String::as_str),
                envelope.aggregate_type,
                envelope.aggregate_id,
                envelope.sequence,
                envelope.event_id,
                raw.subject
            )));
        }
        out.push(StoredEvent {
            position: raw.seq,
            subject: raw.subject,
            stored_at: raw.time,
            envelope,
        });
    }
    Ok(out)
}

/// The events of `marker` from `first_version` on.
async fn read_events(
    inner: &Inner,
    marker: &Marker,
    first_version: u64,
) -> Result<Vec<StoredEvent>> {
    let offset = first_version - marker.body.first_version;
    let from = marker.seq + 1 + offset;
    let n = marker.count() - offset;
    let mut raws = None;
    if inner.batched_direct_get.load(Ordering::Relaxed) {
        let want = usize::try_from(n).unwrap_or(direct::MAX_BATCH);
        let batch = direct::batch(inner, None, from, want).await?;
        if batch.batched {
            // A gap (removed messages) makes the batch run past the append.
            raws = Some(
                batch
                    .raws
                    .into_iter()
                    .filter(|r| r.seq < from + n)
                    .collect::<Vec<_>>(),
            );
        } else {
            inner.batched_direct_get.store(false, Ordering::Relaxed);
        }
    }
    let raws = match raws {
        Some(raws) => raws,
        None => futures::stream::iter(from..from + n)
            .map(|seq| direct::get(inner, Get::Seq(seq)))
            .buffered(32)
            .try_collect::<Vec<_>>()
            .await?
            .into_iter()
            .flatten()
            .collect(),
    };
    if raws.len() as u64 != n {
        let missing = raws
            .iter()
            .zip(from..)
            .find(|(r, seq)| r.seq != *seq)
            .map_or(from + raws.len() as u64, |(_, seq)| seq);
        let version = marker.body.first_version + (missing - marker.seq - 1);
        return Err(history_gone(
            &marker.body.aggregate_type,
            &marker.body.aggregate_id,
            version,
        ));
    }
    events_of(marker, first_version, raws, inner)
}

/// One aggregate's version and its events after `after`.
pub async fn load(
    inner: &Inner,
    aggregate_type: &str,
    aggregate_id: &str,
    after: u64,
) -> Result<AggregateHistory> {
    validate_aggregate(aggregate_type, aggregate_id)?;
    inner.js("loading an aggregate")?;
    let subject = inner.layout.marker_subject(aggregate_type, aggregate_id)?;
    let Some(head) = last(inner, &subject).await? else {
        return Ok(AggregateHistory::empty(aggregate_type, aggregate_id));
    };
    let version = head.last_version();
    let mut history = AggregateHistory {
        aggregate_type: aggregate_type.to_owned(),
        aggregate_id: aggregate_id.to_owned(),
        version,
        events: Vec::new(),
    };
    if version <= after {
        return Ok(history);
    }
    let mut markers = None;
    if inner.batched_direct_get.load(Ordering::Relaxed) && version - after > CHAIN_EVENTS {
        markers = listed(inner, &subject, head.seq).await?.map(|all| {
            all.into_iter()
                .filter(|m| m.last_version() > after)
                .collect::<Vec<_>>()
        });
    }
    let markers = match markers {
        Some(m) => m,
        None => chain(inner, &subject, head, after).await?,
    };
    // The markers must cover after + 1 ..= version without a hole.
    let mut next = after + 1;
    for (i, m) in markers.iter().enumerate() {
        if m.body.first_version > next {
            return Err(history_gone(aggregate_type, aggregate_id, next));
        }
        if i > 0 && m.body.first_version < next {
            return Err(BusError::Backend(format!(
                "the append markers of {aggregate_type} {aggregate_id:?} overlap at version {}",
                m.body.first_version
            )));
        }
        next = m.last_version() + 1;
    }
    if next != version + 1 {
        return Err(history_gone(aggregate_type, aggregate_id, next));
    }
    let parts: Vec<Vec<StoredEvent>> = futures::stream::iter(markers)
        .map(|m| async move {
            let first = m.body.first_version.max(after + 1);
            read_events(inner, &m, first).await
        })
        .buffered(8)
        .try_collect()
        .await?;
    history.events = parts.into_iter().flatten().collect();
    Ok(history)
}

/// The aggregate's current version (0: none), for snapshots.
pub async fn version(inner: &Inner, aggregate_type: &str, aggregate_id: &str) -> Result<u64> {
    let subject = inner.layout.marker_subject(aggregate_type, aggregate_id)?;
    Ok(last(inner, &subject).await?.map_or(0, |m| m.last_version()))
}
