//! Store scenarios that every [`Store`] implementation must pass, run on
//! both the memory store and the file store (test only).

use super::super::{Purge, Store, StoreState, SubjectFilter};

/// Runs the store's sync job, if any, and reports the outcome.
pub(crate) fn sync(s: &mut dyn Store) {
    if let Some(job) = s.take_sync() {
        let upto = job.upto;
        let result = (job.run)();
        s.synced(upto, result);
    }
}

fn fill(s: &mut dyn Store, subjects: &[&str]) {
    for (i, subj) in subjects.iter().enumerate() {
        s.append(subj, b"", format!("m{i}").as_bytes(), i as i64 + 1)
            .unwrap();
        if i % 3 == 1 {
            sync(s);
        }
    }
}

fn span(s: &dyn Store) -> (u64, u64, u64) {
    let st = s.state();
    (st.msgs, st.first_seq, st.last_seq)
}

/// A named scenario.
pub(crate) type Scenario = (&'static str, fn(&mut dyn Store));

/// Every scenario.
pub(crate) const SCENARIOS: &[Scenario] = &[
    (
        "sequences_start_at_one_and_survive_purge",
        sequences_start_at_one_and_survive_purge,
    ),
    (
        "filtered_reads_use_the_subject_index",
        filtered_reads_use_the_subject_index,
    ),
    (
        "purge_keep_and_seq_and_interior_deletes",
        purge_keep_and_seq_and_interior_deletes,
    ),
    (
        "purge_seq_beyond_last_raises_the_floor",
        purge_seq_beyond_last_raises_the_floor,
    ),
    (
        "subject_queries_and_time_lookup",
        subject_queries_and_time_lookup,
    ),
    (
        "reads_return_exact_bytes_and_headers",
        reads_return_exact_bytes_and_headers,
    ),
    (
        "remove_all_one_by_one_moves_first_seq",
        remove_all_one_by_one_moves_first_seq,
    ),
    ("erase_removes_like_remove", erase_removes_like_remove),
];

/// Runs every scenario on a fresh store from `make`.
pub(crate) fn run_all(make: &mut dyn FnMut() -> Box<dyn Store>) {
    for (name, scenario) in SCENARIOS {
        let mut store = make();
        eprintln!("scenario {name}");
        scenario(store.as_mut());
    }
}

fn sequences_start_at_one_and_survive_purge(s: &mut dyn Store) {
    fill(s, &["a", "b", "a"]);
    assert_eq!(s.state().last_seq, 3);
    assert_eq!(s.purge(&Purge::default()).unwrap(), 3);
    assert_eq!(span(s), (0, 4, 3));
    assert_eq!(s.append("a", b"", b"x", 9).unwrap(), 4);
    assert_eq!(span(s), (1, 4, 4));
}

fn filtered_reads_use_the_subject_index(s: &mut dyn Store) {
    fill(s, &["x.a", "y.b", "x.c", "y.d"]);
    let f = SubjectFilter::Any(vec!["y.*".into()]);
    assert_eq!(s.next_from(1, &f).unwrap().map(|m| m.seq), Some(2));
    assert_eq!(s.next_from(3, &f).unwrap().map(|m| m.seq), Some(4));
    assert_eq!(s.next_from(5, &f).unwrap(), None);
    assert_eq!(s.num_pending(1, &f), 2);
    assert_eq!(s.num_pending(2, &SubjectFilter::All), 3);
    assert_eq!(s.last_by_subject("x.>").unwrap().map(|m| m.seq), Some(3));
    assert_eq!(s.last_by_subject("y.b").unwrap().map(|m| m.seq), Some(2));
    assert_eq!(s.last_by_subject("z").unwrap(), None);
    assert_eq!(s.last_seqs_per_subject(&f), vec![2, 4]);
}

fn purge_keep_and_seq_and_interior_deletes(s: &mut dyn Store) {
    fill(s, &["a", "a", "a", "b", "a"]);
    let keep_one = Purge {
        filter: Some("a".into()),
        keep: Some(1),
        ..Purge::default()
    };
    assert_eq!(s.purge(&keep_one).unwrap(), 3);
    assert_eq!(s.subject_seqs("a"), vec![5]);
    assert_eq!(s.state().first_seq, 4);
    assert!(s.deleted().is_empty());
    assert!(s.remove(4, false).unwrap());
    assert!(!s.remove(4, false).unwrap());
    assert_eq!(s.state().first_seq, 5);
    for _ in 0..3 {
        s.append("c", b"", b"z", 10).unwrap();
    }
    assert!(s.remove(7, false).unwrap());
    assert_eq!(s.deleted(), vec![7]);
    assert_eq!(s.state().num_deleted, 1);
    let below = Purge {
        seq: Some(7),
        ..Purge::default()
    };
    assert_eq!(s.purge(&below).unwrap(), 2);
    assert_eq!(span(s), (1, 8, 8));
    let keep = Purge {
        keep: Some(5),
        ..Purge::default()
    };
    assert_eq!(s.purge(&keep).unwrap(), 0);
}

/// nats-server's compact: a whole purge up to a sequence past the last
/// one makes that sequence the next one (how `first_seq` is set too).
fn purge_seq_beyond_last_raises_the_floor(s: &mut dyn Store) {
    fill(s, &["a", "b", "c"]);
    let far = Purge {
        seq: Some(100),
        ..Purge::default()
    };
    assert_eq!(s.purge(&far).unwrap(), 3);
    let st: StoreState = s.state();
    assert_eq!((st.msgs, st.first_seq, st.last_seq), (0, 100, 99));
    assert_eq!(s.append("d", b"", b"x", 5).unwrap(), 100);
    assert_eq!(s.state().first_seq, 100);
    // A filtered purge or one that keeps messages never moves it.
    let filtered = Purge {
        filter: Some("d".into()),
        seq: Some(500),
        ..Purge::default()
    };
    assert_eq!(s.purge(&filtered).unwrap(), 1);
    assert_eq!(s.state().last_seq, 100);
}

fn subject_queries_and_time_lookup(s: &mut dyn Store) {
    fill(s, &["o.1", "o.2", "o.1", "p", "o.1"]);
    assert_eq!(
        s.subjects("o.*"),
        vec![("o.1".to_owned(), 3), ("o.2".to_owned(), 1)]
    );
    assert_eq!(s.subjects("").len(), 3);
    assert_eq!(s.subject_count("o.1"), 3);
    assert_eq!(s.subject_count("nope"), 0);
    assert_eq!(s.subject_seqs("o.1"), vec![1, 3, 5]);
    assert_eq!(s.last_seq_of_subject("o.1"), Some(5));
    assert_eq!(s.last_seq_of_subject("zz"), None);
    assert_eq!(s.seq_for_time(3), 3);
    assert_eq!(s.seq_for_time(0), 1);
    assert_eq!(s.seq_for_time(99), 6);
    let st = s.state();
    assert_eq!((st.first_ts, st.last_ts, st.num_subjects), (1, 5, 3));
    // The memory store's formula, or the file store's (record framing).
    let mem = 3 * (3 + 2 + 16) + (3 + 2 + 16) + (1 + 2 + 16);
    let file = 3 * (3 + 2 + 30) + (3 + 2 + 30) + (1 + 2 + 30);
    assert!(st.bytes == mem || st.bytes == file, "bytes {}", st.bytes);
}

fn reads_return_exact_bytes_and_headers(s: &mut dyn Store) {
    let hdr = b"NATS/1.0\r\nK: v\r\n\r\n";
    let big = vec![7u8; 5000];
    s.append("h", hdr, b"with header", 11).unwrap();
    s.append("big", b"", &big, 12).unwrap();
    s.append("empty", b"", b"", 13).unwrap();
    for round in 0..2 {
        let m = s.get(1).unwrap().unwrap();
        assert_eq!(
            (&*m.subject, &m.hdr[..], &m.data[..], m.ts),
            ("h", &hdr[..], &b"with header"[..], 11),
            "round {round}"
        );
        assert_eq!(s.get(2).unwrap().unwrap().data, big);
        assert!(s.get(3).unwrap().unwrap().data.is_empty());
        assert_eq!(s.get(4).unwrap(), None);
        assert_eq!(s.get(0).unwrap(), None);
        sync(s);
    }
    assert_eq!(s.durable_seq(), 3);
}

fn remove_all_one_by_one_moves_first_seq(s: &mut dyn Store) {
    fill(s, &["a", "b", "c", "d"]);
    assert!(s.remove(2, false).unwrap());
    assert!(s.remove(3, false).unwrap());
    assert_eq!(s.deleted(), vec![2, 3]);
    assert!(s.remove(1, false).unwrap());
    assert_eq!(span(s), (1, 4, 4));
    assert!(s.remove(4, false).unwrap());
    assert_eq!(span(s), (0, 5, 4));
    assert!(s.deleted().is_empty());
    assert_eq!(s.append("e", b"", b"", 1).unwrap(), 5);
}

fn erase_removes_like_remove(s: &mut dyn Store) {
    fill(s, &["a", "b", "c"]);
    sync(s);
    assert!(s.remove(2, true).unwrap());
    s.append("d", b"", b"secret", 4).unwrap();
    assert!(s.remove(4, true).unwrap());
    sync(s);
    assert_eq!(s.get(2).unwrap(), None);
    assert_eq!(s.get(4).unwrap(), None);
    assert_eq!(s.deleted(), vec![2, 4]);
    assert_eq!(s.get(3).unwrap().unwrap().data, &b"m2"[..]);
}
