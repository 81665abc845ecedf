//! The per-subject sequence index both stores keep: for every subject
//! present, its sequences in order. The queries stores answer from it live
//! here once.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::SubjectFilter;
use crate::subject;

/// Subject -> its sequences (ascending). Derefs to the map for inserts and
/// removals.
#[derive(Debug, Default)]
pub struct SubjectIndex(HashMap<Arc<str>, BTreeSet<u64>>);

impl std::ops::Deref for SubjectIndex {
    type Target = HashMap<Arc<str>, BTreeSet<u64>>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for SubjectIndex {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl SubjectIndex {
    /// The smallest sequence `>= start` on a subject passing `filter`.
    pub fn first_from(&self, start: u64, filter: &SubjectFilter) -> Option<u64> {
        self.0
            .iter()
            .filter(|(subject, _)| filter.matches(subject))
            .filter_map(|(_, seqs)| seqs.range(start..).next().copied())
            .min()
    }

    /// The newest sequence on a subject matching `filter` (wildcards allowed).
    pub fn last_matching(&self, filter: &str) -> Option<u64> {
        if subject::has_wildcards(filter) {
            self.0
                .iter()
                .filter(|(s, _)| subject::matches(filter, s))
                .filter_map(|(_, seqs)| seqs.last().copied())
                .max()
        } else {
            self.last_of(filter)
        }
    }

    /// The newest sequence on this literal subject.
    pub fn last_of(&self, subject: &str) -> Option<u64> {
        self.0.get(subject).and_then(|s| s.last().copied())
    }

    /// Messages on this literal subject.
    pub fn count(&self, subject: &str) -> u64 {
        self.0.get(subject).map_or(0, |s| s.len() as u64)
    }

    /// Sequences of this literal subject, oldest first.
    pub fn seqs(&self, subject: &str) -> Vec<u64> {
        self.0
            .get(subject)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Per-subject counts of the subjects matching `filter` (all when empty), sorted.
    pub fn counts(&self, filter: &str) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .0
            .iter()
            .filter(|(s, _)| filter.is_empty() || subject::matches(filter, s))
            .map(|(s, seqs)| (s.to_string(), seqs.len() as u64))
            .collect();
        out.sort();
        out
    }

    /// The newest sequence of every subject passing `filter`, ascending.
    pub fn last_per_subject(&self, filter: &SubjectFilter) -> Vec<u64> {
        let mut out: Vec<u64> = self
            .0
            .iter()
            .filter(|(s, _)| filter.matches(s))
            .filter_map(|(_, seqs)| seqs.last().copied())
            .collect();
        out.sort_unstable();
        out
    }

    /// Sequences `>= start` on subjects passing `filter`.
    pub fn pending_from(&self, start: u64, filter: &SubjectFilter) -> u64 {
        self.0
            .iter()
            .filter(|(s, _)| filter.matches(s))
            .map(|(_, seqs)| seqs.range(start..).count() as u64)
            .sum()
    }
}
