//! Direct get reads of more than one message (nats-server 2.11+, ADR-31),
//! each under one hold of the stream's lock so a batch is a snapshot of the
//! store: a batch from a sequence (optionally only subjects matching
//! `next_by_subj`), and the last message of every subject matching
//! `multi_last` filters up to a sequence. What the reply messages look like
//! is the `direct` module's business; this one only reads.

use super::Stream;
use crate::jetstream::errors::ApiError;
use crate::jetstream::lock;
use crate::jetstream::store::{StoredMsg, SubjectFilter};

/// Most subjects a `multi_last` request may match (nats-server's limit).
pub(crate) const MAX_MULTI_LAST: usize = 1024;

/// One message of a batch with what its headers report: messages still
/// pending after it, and the sequence sent before it (0 for the first).
pub(crate) struct BatchItem {
    pub(crate) msg: StoredMsg,
    pub(crate) pending: u64,
    pub(crate) previous: u64,
}

/// A batch read: the messages and what the end-of-batch status reports.
pub(crate) struct BatchRead {
    pub(crate) items: Vec<BatchItem>,
    /// Messages still pending after the last one sent.
    pub(crate) pending: u64,
    /// Sequence of the last message sent (0: none).
    pub(crate) last: u64,
}

/// Why a `multi_last` read returns no batch.
pub(crate) enum MultiLastError {
    /// More subjects than [`MAX_MULTI_LAST`].
    TooMany,
    /// No subject matched.
    NoResults,
    /// The store failed to read a message it listed.
    Read,
    /// A message is not in memory and this thread must not wait on the
    /// disk (see `store::nowait`): nothing was read, ask again elsewhere.
    WouldBlock,
}

/// Sizes counted against `max_bytes` (nats-server's: subject, stored
/// headers and payload).
fn counted(m: &StoredMsg) -> i64 {
    i64::try_from(m.subject.len() + m.hdr.len() + m.data.len()).unwrap_or(i64::MAX)
}

impl Stream {
    /// The first sequence stored at or after `ts` (Unix nanoseconds);
    /// `last_seq + 1` when none.
    pub(crate) fn seq_for_time(&self, ts: i64) -> u64 {
        lock(&self.inner).store.seq_for_time(ts)
    }

    /// Up to `batch` messages from `start` on (only subjects matching
    /// `next_for` when given), stopping once `max_bytes` is reached. `None`
    /// when not even the first exists. `count_down`: each message lowers
    /// the pending count (nats-server skips that for `no_hdr` requests,
    /// whose end-of-batch then reports the count at the start).
    pub(crate) fn direct_batch(
        &self,
        start: u64,
        next_for: Option<&str>,
        batch: i64,
        max_bytes: i64,
        count_down: bool,
    ) -> Result<Option<BatchRead>, ApiError> {
        let filter = SubjectFilter::from_filters(next_for);
        let mut inner = lock(&self.inner);
        let store = &mut inner.store;
        let mut pending = store.num_pending(start, &filter);
        let mut items: Vec<BatchItem> = Vec::new();
        let mut seq = start;
        let mut last = 0;
        let mut sent_bytes: i64 = 0;
        let mut i: i64 = 0;
        while i < batch {
            let found = store
                .next_from(seq, &filter)
                .map_err(|e| ApiError::stream_read(&e))?;
            let Some(msg) = found else {
                if i == 0 {
                    return Ok(None);
                }
                break;
            };
            seq = msg.seq + 1;
            if count_down {
                pending = pending.saturating_sub(1);
            }
            sent_bytes = sent_bytes.saturating_add(counted(&msg));
            let previous = last;
            last = msg.seq;
            items.push(BatchItem {
                msg,
                pending,
                previous,
            });
            if sent_bytes >= max_bytes {
                break;
            }
            i += 1;
        }
        Ok(Some(BatchRead {
            items,
            pending,
            last,
        }))
    }

    /// The last message of each subject matching `filters` at or below
    /// `up_to`, oldest first, skipping sequences below `min_seq`, stopping
    /// after `batch` messages (when positive) or once `max_bytes` is
    /// reached.
    pub(crate) fn direct_multi_last(
        &self,
        filters: &[String],
        min_seq: u64,
        up_to: u64,
        batch: i64,
        max_bytes: i64,
    ) -> Result<BatchRead, MultiLastError> {
        let mut inner = lock(&self.inner);
        let store = &mut inner.store;
        let mut seqs: Vec<u64> = Vec::new();
        for filter in filters {
            for (subject, _) in store.subjects(filter) {
                let last = match store.last_seq_of_subject(&subject) {
                    Some(l) if l <= up_to => Some(l),
                    _ => store
                        .subject_seqs(&subject)
                        .into_iter()
                        .rev()
                        .find(|s| *s <= up_to),
                };
                if let Some(l) = last
                    && !seqs.contains(&l)
                {
                    seqs.push(l);
                }
            }
            if seqs.len() > MAX_MULTI_LAST {
                return Err(MultiLastError::TooMany);
            }
        }
        if seqs.is_empty() {
            return Err(MultiLastError::NoResults);
        }
        seqs.sort_unstable();
        let mut pending = seqs.len() as u64;
        let mut items: Vec<BatchItem> = Vec::new();
        let mut last = 0;
        let mut sent_bytes: i64 = 0;
        for seq in seqs {
            pending = pending.saturating_sub(1);
            if seq < min_seq {
                continue;
            }
            let msg = match store.get(seq) {
                Ok(Some(m)) => m,
                Err(e) if e.would_block() => return Err(MultiLastError::WouldBlock),
                Ok(None) | Err(_) => return Err(MultiLastError::Read),
            };
            sent_bytes = sent_bytes.saturating_add(counted(&msg));
            let previous = last;
            last = msg.seq;
            items.push(BatchItem {
                msg,
                pending,
                previous,
            });
            if sent_bytes >= max_bytes || (batch > 0 && items.len() as i64 >= batch) {
                break;
            }
        }
        Ok(BatchRead {
            items,
            pending,
            last,
        })
    }
}
