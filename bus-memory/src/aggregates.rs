//! The event-store side of the memory bus: per aggregate, its version and
//! its appends (first version, first position, event ids), and the latest
//! snapshot. Everything here runs under the bus lock, so an append's check
//! and its write are one step.
//!
//! Invariants:
//! - an aggregate's appends are kept in version order, their versions are
//!   contiguous from 1, and the last one ends at the aggregate's version;
//! - an append's events were stored together, so its positions are
//!   `first_position ..= first_position + count - 1`;
//! - the index is never trimmed: when the stream's limits remove an
//!   aggregate's events, the version stays and loads that need them fail.

use std::collections::HashMap;

use bus_core::aggregate::same_event_ids;
use bus_core::{AggregateHistory, AppendReceipt, BusError, ExpectedVersion, Result, Snapshot};

use crate::log::Log;

/// One stored append.
#[derive(Debug, Clone)]
pub(crate) struct AppendRecord {
    pub first_version: u64,
    pub first_position: u64,
    pub event_ids: Vec<String>,
}

impl AppendRecord {
    fn last_version(&self) -> u64 {
        self.first_version + self.event_ids.len() as u64 - 1
    }

    /// The receipt this append got (repeated for a retry).
    pub fn receipt(&self, duplicate: bool) -> AppendReceipt {
        AppendReceipt {
            version: self.last_version(),
            positions: (0..self.event_ids.len() as u64)
                .map(|i| self.first_position + i)
                .collect(),
            duplicate,
        }
    }
}

/// One aggregate's appends.
#[derive(Debug, Default)]
pub(crate) struct AggregateLog {
    appends: Vec<AppendRecord>,
}

impl AggregateLog {
    pub fn version(&self) -> u64 {
        self.appends.last().map_or(0, AppendRecord::last_version)
    }

    /// The earlier append `ids` repeats: the latest append, or the one that
    /// took the version after the expected one, when its ids are these.
    pub fn repeat_of(&self, expected: ExpectedVersion, ids: &[String]) -> Option<&AppendRecord> {
        if let Some(latest) = self.appends.last() {
            if same_event_ids(&latest.event_ids, ids) {
                return Some(latest);
            }
        }
        let next = expected.version()? + 1;
        let index = self.appends.partition_point(|r| r.last_version() < next);
        self.appends
            .get(index)
            .filter(|r| r.first_version == next && same_event_ids(&r.event_ids, ids))
    }

    pub fn push(&mut self, record: AppendRecord) {
        self.appends.push(record);
    }

    /// The appends holding versions after `after`.
    fn after(&self, after: u64) -> &[AppendRecord] {
        let start = self.appends.partition_point(|r| r.last_version() <= after);
        &self.appends[start..]
    }
}

/// Every aggregate's appends and latest snapshot.
#[derive(Debug, Default)]
pub(crate) struct Aggregates {
    logs: HashMap<(String, String), AggregateLog>,
    snapshots: HashMap<(String, String), Snapshot>,
}

fn key(aggregate_type: &str, aggregate_id: &str) -> (String, String) {
    (aggregate_type.to_owned(), aggregate_id.to_owned())
}

impl Aggregates {
    pub fn get(&self, aggregate_type: &str, aggregate_id: &str) -> Option<&AggregateLog> {
        self.logs.get(&key(aggregate_type, aggregate_id))
    }

    pub fn version(&self, aggregate_type: &str, aggregate_id: &str) -> u64 {
        self.get(aggregate_type, aggregate_id)
            .map_or(0, AggregateLog::version)
    }

    pub fn record(&mut self, aggregate_type: &str, aggregate_id: &str, record: AppendRecord) {
        self.logs
            .entry(key(aggregate_type, aggregate_id))
            .or_default()
            .push(record);
    }

    /// The events after `after` with the aggregate's version, read from `log`.
    pub fn load(
        &self,
        log: &Log,
        aggregate_type: &str,
        aggregate_id: &str,
        after: u64,
    ) -> Result<AggregateHistory> {
        let Some(agg) = self.get(aggregate_type, aggregate_id) else {
            return Ok(AggregateHistory::empty(aggregate_type, aggregate_id));
        };
        let mut events = Vec::new();
        for record in agg.after(after) {
            for (i, _) in record.event_ids.iter().enumerate() {
                let version = record.first_version + i as u64;
                if version <= after {
                    continue;
                }
                let position = record.first_position + i as u64;
                let entry = log.get(position).ok_or_else(|| BusError::NotFound {
                    what: "aggregate events",
                    name: format!(
                        "{aggregate_type} {aggregate_id:?} version {version} (position {position} \
                         was removed by the stream's limits)"
                    ),
                })?;
                events.push(entry.event.clone());
            }
        }
        Ok(AggregateHistory {
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id: aggregate_id.to_owned(),
            version: agg.version(),
            events,
        })
    }

    /// Keeps `snapshot` unless one of the same or a later version is kept.
    pub fn save_snapshot(&mut self, snapshot: Snapshot) {
        let k = key(&snapshot.aggregate_type, &snapshot.aggregate_id);
        match self.snapshots.get(&k) {
            Some(kept) if kept.version >= snapshot.version => {}
            _ => {
                self.snapshots.insert(k, snapshot);
            }
        }
    }

    pub fn snapshot(&self, aggregate_type: &str, aggregate_id: &str) -> Option<Snapshot> {
        self.snapshots
            .get(&key(aggregate_type, aggregate_id))
            .cloned()
    }
}
