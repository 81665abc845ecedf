//! Per-subject queries. [`SubjectQueries`] is what the stream asks a store
//! about its subjects; [`SubjectIndex`] answers it for the memory store
//! from a sequence set per subject. The file store answers it from its
//! compact index (`file/index.rs`: first, last and count per subject plus
//! per-segment subject summaries, no per-message set).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::SubjectFilter;
use crate::subject;

/// The per-subject questions a store answers (see [`super::Store::subject_index`]).
pub trait SubjectQueries {
    /// The smallest sequence `>= start` on a subject passing `filter`.
    fn first_from(&self, start: u64, filter: &SubjectFilter) -> Option<u64>;

    /// The newest sequence on a subject matching `filter` (wildcards allowed).
    fn last_matching(&self, filter: &str) -> Option<u64> {
        if subject::has_wildcards(filter) {
            self.last_per_subject(&SubjectFilter::Any(vec![filter.to_owned()]))
                .last()
                .copied()
        } else {
            self.last_of(filter)
        }
    }

    /// The newest sequence on this literal subject.
    fn last_of(&self, subject: &str) -> Option<u64>;

    /// The oldest sequence on this literal subject.
    fn first_of(&self, subject: &str) -> Option<u64>;

    /// Messages on this literal subject.
    fn count(&self, subject: &str) -> u64;

    /// Sequences of this literal subject, oldest first.
    fn seqs(&self, subject: &str) -> Vec<u64>;

    /// Per-subject counts of the subjects matching `filter` (all when empty), sorted.
    fn counts(&self, filter: &str) -> Vec<(String, u64)>;

    /// The newest sequence of every subject passing `filter`, ascending.
    fn last_per_subject(&self, filter: &SubjectFilter) -> Vec<u64>;

    /// Sequences `>= start` on subjects passing `filter`.
    fn pending_from(&self, start: u64, filter: &SubjectFilter) -> u64;

    /// Distinct subjects stored.
    fn num_subjects(&self) -> u64;

    /// Every sequence on a subject matching `filter` (wildcards allowed),
    /// ascending.
    fn seqs_matching(&self, filter: &str) -> Vec<u64>;

    /// Every subject with its sequences `<= bound` (ascending), subjects
    /// without one left out; in no particular order.
    fn up_to_per_subject(&self, bound: u64) -> Vec<(Arc<str>, Vec<u64>)>;
}

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

impl SubjectQueries for SubjectIndex {
    fn first_from(&self, start: u64, filter: &SubjectFilter) -> Option<u64> {
        self.0
            .iter()
            .filter(|(subject, _)| filter.matches(subject))
            .filter_map(|(_, seqs)| seqs.range(start..).next().copied())
            .min()
    }

    fn last_of(&self, subject: &str) -> Option<u64> {
        self.0.get(subject).and_then(|s| s.last().copied())
    }

    fn first_of(&self, subject: &str) -> Option<u64> {
        self.0.get(subject).and_then(|s| s.first().copied())
    }

    fn count(&self, subject: &str) -> u64 {
        self.0.get(subject).map_or(0, |s| s.len() as u64)
    }

    fn seqs(&self, subject: &str) -> Vec<u64> {
        self.0
            .get(subject)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    fn counts(&self, filter: &str) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .0
            .iter()
            .filter(|(s, _)| filter.is_empty() || subject::matches(filter, s))
            .map(|(s, seqs)| (s.to_string(), seqs.len() as u64))
            .collect();
        out.sort();
        out
    }

    fn last_per_subject(&self, filter: &SubjectFilter) -> Vec<u64> {
        let mut out: Vec<u64> = self
            .0
            .iter()
            .filter(|(s, _)| filter.matches(s))
            .filter_map(|(_, seqs)| seqs.last().copied())
            .collect();
        out.sort_unstable();
        out
    }

    fn pending_from(&self, start: u64, filter: &SubjectFilter) -> u64 {
        self.0
            .iter()
            .filter(|(s, _)| filter.matches(s))
            .map(|(_, seqs)| seqs.range(start..).count() as u64)
            .sum()
    }

    fn num_subjects(&self) -> u64 {
        self.0.len() as u64
    }

    fn seqs_matching(&self, filter: &str) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .0
            .iter()
            .filter(|(s, _)| subject::matches(filter, s))
            .flat_map(|(_, seqs)| seqs.iter().copied())
            .collect();
        v.sort_unstable();
        v
    }

    fn up_to_per_subject(&self, bound: u64) -> Vec<(Arc<str>, Vec<u64>)> {
        self.0
            .iter()
            .map(|(subject, seqs)| {
                (
                    Arc::clone(subject),
                    seqs.range(..=bound).copied().collect::<Vec<u64>>(),
                )
            })
            .filter(|(_, seqs)| !seqs.is_empty())
            .collect()
    }
}
