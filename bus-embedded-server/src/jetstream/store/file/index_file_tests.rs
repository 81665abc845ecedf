//! Tests of the per-segment index files (`seg_index`) through the store:
//! a store with valid index files does not read its sealed segments at
//! open, and an index file that is lost, damaged, truncated, stale or never
//! written (power loss) gives the same store as a full scan of the log.

use std::path::{Path, PathBuf};

use super::super::sim::{PowerLoss, SimFs};
use super::super::storage::Storage;
use super::super::{Purge, Store, SubjectFilter};
use super::scenarios::sync;
use super::{FileStore, FileStoreConfig, SEGMENT_HEADER_LEN, index_name, segment_name};

const DIR: &str = "/s/msgs";
const SEG: u64 = 400;

fn dir() -> &'static Path {
    Path::new(DIR)
}

fn cfg() -> FileStoreConfig {
    FileStoreConfig {
        segment_bytes: SEG,
        ..FileStoreConfig::default()
    }
}

fn open(sim: &SimFs) -> (FileStore<SimFs>, super::super::RecoveryReport) {
    match FileStore::open_in(sim.clone(), dir(), cfg()) {
        Ok(x) => x,
        Err(e) => panic!("open: {e}"),
    }
}

/// A store of many segments with interior deletes, an erase, a filtered
/// purge and a prefix purge, closed cleanly.
fn populated(seed: u64) -> SimFs {
    let sim = SimFs::new(seed);
    assert!(
        sim.create_dir_all(Path::new("/s"))
            .and_then(|()| sim.sync_dir(Path::new("/")))
            .is_ok()
    );
    let (mut s, _) = open(&sim);
    for i in 1..=120u64 {
        let subj = format!("s.{}", i % 5);
        let hdr: &[u8] = if i % 4 == 0 {
            b"NATS/1.0\r\nA: b\r\n\r\n"
        } else {
            b""
        };
        assert_eq!(
            s.append(&subj, hdr, format!("m{i}").as_bytes(), i as i64)
                .ok(),
            Some(i)
        );
        if i % 17 == 0 {
            sync(&mut s);
        }
    }
    sync(&mut s);
    for seq in [7, 30, 31, 64] {
        assert_eq!(s.remove(seq, false).ok(), Some(true));
    }
    assert_eq!(s.remove(50, true).ok(), Some(true));
    let filtered = Purge {
        filter: Some("s.3".into()),
        seq: Some(90),
        ..Purge::default()
    };
    assert!(s.purge(&filtered).is_ok());
    let prefix = Purge {
        seq: Some(5),
        ..Purge::default()
    };
    assert!(s.purge(&prefix).is_ok());
    sync(&mut s);
    assert!(s.close().is_ok());
    drop(s);
    sim.crash();
    sim
}

fn segments(sim: &SimFs) -> Vec<u64> {
    sim.names(dir())
        .iter()
        .filter_map(|n| super::parse_segment_name(n))
        .collect()
}

fn idx_path(base: u64) -> PathBuf {
    dir().join(index_name(base))
}

/// The store opened with its index files answers exactly as a full scan of
/// the same log.
fn same_as_full_scan(sim: &SimFs) -> super::super::RecoveryReport {
    let (mut scanned, _) = match FileStore::open_scanning(sim.fork(), dir(), cfg()) {
        Ok(x) => x,
        Err(e) => panic!("scan: {e}"),
    };
    let (mut s, report) = open(sim);
    assert_eq!(s.state(), scanned.state());
    assert_eq!(s.deleted_up_to(1000), scanned.deleted_up_to(1000));
    assert_eq!(s.corrupt_records(), scanned.corrupt_records());
    let mut at = 0;
    loop {
        let a = s.next_from(at, &SubjectFilter::All).ok().flatten();
        let b = scanned.next_from(at, &SubjectFilter::All).ok().flatten();
        assert_eq!(a, b);
        match a {
            Some(m) => at = m.seq + 1,
            None => break,
        }
    }
    for i in 0..5 {
        let subj = format!("s.{i}");
        assert_eq!(s.subject_seqs(&subj), scanned.subject_seqs(&subj));
    }
    drop(s);
    sim.crash();
    report
}

#[test]
fn sealed_segments_get_index_files_and_open_reads_only_their_headers() {
    let sim = populated(1);
    let segs = segments(&sim);
    assert!(segs.len() > 10, "{} segments", segs.len());
    let (newest, sealed) = segs.split_last().expect("segments");
    // Message 50 was erased: its segment's index file went (the next open
    // scans it and writes it again).
    let erased = segs.iter().copied().filter(|b| *b <= 50).max();
    for base in sealed {
        assert_eq!(
            sim.exists(&idx_path(*base)),
            Some(*base) != erased,
            "index file of {base}"
        );
    }
    assert!(
        !sim.exists(&idx_path(*newest)),
        "the newest segment is not sealed"
    );
    let (s, report) = open(&sim);
    assert!(report.index_rebuilt, "the erased segment's index file");
    assert_eq!(s.indexed_segments, sealed.len() - 1);
    drop(s);
    sim.crash();
    // Now every sealed segment has its index file.
    let before: Vec<u64> = segs
        .iter()
        .map(|b| sim.bytes_read(&dir().join(segment_name(*b))))
        .collect();
    let (s, report) = open(&sim);
    assert!(!report.index_rebuilt);
    assert_eq!(s.indexed_segments, sealed.len());
    // Segments holding only consecutive messages (and state records) are
    // indexed at once; those with tombstones or gaps message by message.
    assert!(
        s.bulk_segments > 0 && s.bulk_segments < sealed.len(),
        "{} of {} sealed segments indexed at once",
        s.bulk_segments,
        sealed.len()
    );
    for (base, was) in segs.iter().zip(&before) {
        let read = sim.bytes_read(&dir().join(segment_name(*base))) - was;
        if base == newest {
            assert!(
                read > SEGMENT_HEADER_LEN as u64,
                "the newest segment is scanned"
            );
        } else {
            // Its header (twice: salt, then format) and its last 4 bytes,
            // and once more when a removal recovered from a later segment
            // (a tombstone) reads its run back from its index file.
            assert!(
                read <= 3 * SEGMENT_HEADER_LEN as u64 + 8,
                "segment {base}: {read} bytes read at open"
            );
        }
    }
    drop(s);
    sim.crash();
    same_as_full_scan(&sim);
}

#[test]
fn a_lost_corrupt_truncated_or_stale_index_file_is_rebuilt_from_its_segment() {
    for damage in ["lost", "bit flip", "truncated", "stale", "empty"] {
        let sim = populated(2);
        let segs = segments(&sim);
        let victim = segs[segs.len() / 2];
        let path = idx_path(victim);
        let bytes = sim.peek(&path).expect("index file");
        match damage {
            "lost" => assert!(sim.remove_file(&path).is_ok()),
            "bit flip" => {
                for at in [0, 9, 40, bytes.len() / 2, bytes.len() - 1] {
                    let mut b = bytes.clone();
                    b[at] ^= 0x10;
                    assert!(sim.poke(&path, &b));
                    let report = same_as_full_scan(&sim);
                    // A flip in the header or summary section is seen at
                    // open; one in the events of a segment applied from its
                    // summary when its run is read back (the full walk
                    // above): either way the file is written again.
                    if at <= 40 {
                        assert!(report.index_rebuilt, "{damage} at {at}");
                    }
                    assert_eq!(sim.peek(&path), Some(bytes.clone()), "{damage} at {at}");
                }
                continue;
            }
            "truncated" => assert!(sim.poke(&path, &bytes[..bytes.len() - 5])),
            "empty" => assert!(sim.poke(&path, b"")),
            _ => {
                // The segment is longer than its index says (garbage
                // appended behind the index's back): scanned, the garbage
                // reported as a damaged record.
                let seg = dir().join(segment_name(victim));
                let mut b = sim.peek(&seg).expect("segment");
                b.extend_from_slice(&[0xB5, 0x1E, 0, 0, 0, 0]);
                assert!(sim.poke(&seg, &b));
            }
        }
        let report = same_as_full_scan(&sim);
        assert!(report.index_rebuilt, "{damage}");
        if damage == "stale" {
            assert_eq!(report.corrupt.len(), 1, "{damage}: {:?}", report.corrupt);
        }
        // Rebuilt: the next open uses it.
        let (s, report) = open(&sim);
        assert!(!report.index_rebuilt, "{damage}: rebuilt again");
        assert_eq!(s.indexed_segments, segments(&sim).len() - 1, "{damage}");
    }
}

#[test]
fn a_power_loss_between_a_segment_fsync_and_its_index_write_costs_only_a_scan() {
    for (seed, mode) in (0..24u64).map(|i| {
        (
            100 + i,
            if i % 2 == 0 {
                PowerLoss::Strict
            } else {
                PowerLoss::Torn
            },
        )
    }) {
        let sim = SimFs::new(seed);
        assert!(
            sim.create_dir_all(Path::new("/s"))
                .and_then(|()| sim.sync_dir(Path::new("/")))
                .is_ok()
        );
        let (mut s, _) = open(&sim);
        // Every sync job seals a segment and writes its index file, never
        // fsynced: the power loss takes some or all of them.
        for i in 1..=60u64 {
            assert!(
                s.append(&format!("s.{}", i % 3), b"", b"0123456789", i as i64)
                    .is_ok()
            );
            if i % 5 == 0 {
                sync(&mut s);
            }
        }
        sync(&mut s);
        let want = s.state();
        drop(s);
        sim.power_loss(mode);
        same_as_full_scan(&sim);
        let (s, _) = open(&sim);
        // Everything acknowledged (fsynced) is there.
        assert_eq!(s.state(), want, "seed {seed}");
    }
}

#[test]
fn an_old_store_without_index_files_opens_as_before_and_gains_them() {
    let sim = populated(3);
    for base in segments(&sim) {
        let _ = sim.remove_file(&idx_path(base));
    }
    let report = same_as_full_scan(&sim);
    assert!(report.index_rebuilt);
    let segs = segments(&sim);
    for base in &segs[..segs.len() - 1] {
        assert!(sim.exists(&idx_path(*base)), "{base} gained no index file");
    }
    let (s, _) = open(&sim);
    assert_eq!(s.indexed_segments, segs.len() - 1);
}

#[test]
fn an_erase_in_a_sealed_segment_drops_its_index_file_and_a_reopen_scans_it() {
    let sim = populated(4);
    let (mut s, _) = open(&sim);
    let seq = 100;
    let seg = s.index.get(seq).expect("indexed").seg;
    assert!(sim.exists(&idx_path(seg)));
    assert_eq!(s.remove(seq, true).ok(), Some(true));
    sync(&mut s);
    assert!(
        !sim.exists(&idx_path(seg)),
        "the erased segment kept its index file"
    );
    drop(s);
    sim.crash();
    let report = same_as_full_scan(&sim);
    assert!(report.index_rebuilt);
}

#[test]
fn an_index_file_whose_segment_is_gone_is_removed_at_open() {
    let sim = populated(5);
    let orphan = idx_path(999_999);
    let segs = segments(&sim);
    let some = sim.peek(&idx_path(segs[0])).expect("index file");
    let made = sim.create_truncate(&orphan);
    assert!(made.is_ok());
    assert!(sim.poke(&orphan, &some));
    let (_s, _) = open(&sim);
    assert!(!sim.exists(&orphan));
}

/// A store written by appends only (no removal: every sealed run is
/// dense, as an event store's), closed cleanly.
fn appended(seed: u64, n: u64) -> SimFs {
    let sim = SimFs::new(seed);
    assert!(
        sim.create_dir_all(Path::new("/s"))
            .and_then(|()| sim.sync_dir(Path::new("/")))
            .is_ok()
    );
    let (mut s, _) = open(&sim);
    for i in 1..=n {
        let hdr: &[u8] = if i % 4 == 0 {
            b"NATS/1.0\r\nA: b\r\n\r\n"
        } else {
            b""
        };
        assert_eq!(
            s.append(
                &format!("s.{}", i % 5),
                hdr,
                format!("m{i}").as_bytes(),
                i as i64
            )
            .ok(),
            Some(i)
        );
        if i % 9 == 0 {
            sync(&mut s);
        }
    }
    sync(&mut s);
    assert!(s.close().is_ok());
    drop(s);
    sim.crash();
    sim
}

fn filters() -> Vec<SubjectFilter> {
    vec![
        SubjectFilter::All,
        SubjectFilter::Any(vec!["s.1".into()]),
        SubjectFilter::Any(vec!["s.2".into(), "s.4".into()]),
        SubjectFilter::Any(vec!["nothing".into()]),
    ]
}

/// Every query of `s` answers as `full` (a store with every slot in
/// memory), for every sequence and position up to `last + 1`.
fn same_answers(s: &mut FileStore<SimFs>, full: &mut FileStore<SimFs>, last: u64) {
    assert_eq!(s.state(), full.state());
    assert_eq!(s.deleted_up_to(1000), full.deleted_up_to(1000));
    for seq in 0..=last + 1 {
        assert_eq!(s.get(seq).ok(), full.get(seq).ok(), "get {seq}");
        assert_eq!(s.subject_of(seq).ok(), full.subject_of(seq).ok(), "{seq}");
        assert_eq!(s.seq_for_time(seq as i64), full.seq_for_time(seq as i64));
        for f in filters() {
            assert_eq!(
                s.next_from(seq, &f).ok(),
                full.next_from(seq, &f).ok(),
                "next from {seq} {f:?}"
            );
            assert_eq!(s.num_pending(seq, &f), full.num_pending(seq, &f));
        }
    }
    for i in 0..5 {
        let subj = format!("s.{i}");
        assert_eq!(s.subject_seqs(&subj), full.subject_seqs(&subj), "{subj}");
        assert_eq!(
            s.last_by_subject(&subj).ok(),
            full.last_by_subject(&subj).ok()
        );
    }
    assert_eq!(
        s.subject_index().counts(""),
        full.subject_index().counts("")
    );
}

fn open_full(sim: &SimFs) -> FileStore<SimFs> {
    match FileStore::open_scanning(sim.fork(), dir(), cfg()) {
        Ok((s, _)) => s,
        Err(e) => panic!("scan: {e}"),
    }
}

#[test]
fn sealed_dense_runs_stay_unloaded_after_open_and_answer_as_loaded_ones() {
    let sim = appended(6, 150);
    let (mut s, _) = open(&sim);
    let runs = s.index.unloaded_runs();
    assert!(runs > 20, "{runs} unloaded runs");
    assert_eq!(s.index.cache_stats(), (0, 0), "open read no run back");
    let mut full = open_full(&sim);
    same_answers(&mut s, &mut full, 150);
    // The cache (one slot in tests) evicted and reloaded all along.
    let (loads, held) = s.index.cache_stats();
    assert!(loads > runs as u64 * 2, "{loads} loads of {runs} runs");
    assert!(held < 10, "the cache holds {held} slots");
    assert_eq!(s.index.unloaded_runs(), runs, "reads pin nothing");
}

#[test]
fn removals_from_unloaded_runs_load_them_and_survive_reopen() {
    let sim = appended(7, 150);
    let (mut s, _) = open(&sim);
    let mut full = open_full(&sim);
    let runs = s.index.unloaded_runs();
    let filtered = Purge {
        filter: Some("s.3".into()),
        seq: Some(90),
        ..Purge::default()
    };
    let prefix = Purge {
        seq: Some(12),
        ..Purge::default()
    };
    for st in [&mut s, &mut full] {
        for seq in [40, 41, 77, 120] {
            assert_eq!(st.remove(seq, false).ok(), Some(true));
        }
        assert_eq!(st.remove(60, true).ok(), Some(true), "erase");
        assert_eq!(st.remove(60, false).ok(), Some(false), "already gone");
        assert!(st.purge(&filtered).is_ok());
        assert!(st.purge(&prefix).is_ok());
        sync(st);
    }
    assert!(s.index.unloaded_runs() < runs, "removals pinned their runs");
    same_answers(&mut s, &mut full, 150);
    drop((s, full));
    sim.crash();
    same_as_full_scan(&sim);
    let (mut s, _) = open(&sim);
    let mut full = open_full(&sim);
    same_answers(&mut s, &mut full, 150);
}

#[test]
fn an_index_file_lost_or_damaged_after_open_is_rebuilt_from_its_segment_when_read_back() {
    let sim = appended(8, 150);
    let (mut s, _) = open(&sim);
    let mut full = open_full(&sim);
    let segs = segments(&sim);
    let (lost, flipped) = (segs[3], segs[segs.len() / 2]);
    assert!(sim.remove_file(&idx_path(lost)).is_ok());
    let mut bytes = sim.peek(&idx_path(flipped)).expect("index file");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    assert!(sim.poke(&idx_path(flipped), &bytes));
    same_answers(&mut s, &mut full, 150);
    assert!(sim.exists(&idx_path(lost)), "rebuilt when read back");
    assert_ne!(
        sim.peek(&idx_path(flipped)),
        Some(bytes),
        "the damaged index file was rewritten"
    );
    drop(s);
    sim.crash();
    // The rebuilt files are used by the next open.
    let (_s, report) = open(&sim);
    assert!(!report.index_rebuilt);
}

/// The version byte of an index file.
fn idx_version(sim: &SimFs, base: u64) -> Option<u8> {
    sim.peek(&idx_path(base)).and_then(|b| b.get(4).copied())
}

#[test]
fn open_applies_plain_segments_from_their_summary_reading_only_that_section() {
    let sim = appended(9, 150);
    let segs = segments(&sim);
    let (_, sealed) = segs.split_last().expect("segments");
    let before: Vec<u64> = sealed
        .iter()
        .map(|b| sim.bytes_read(&idx_path(*b)))
        .collect();
    let (mut s, report) = open(&sim);
    assert!(!report.index_rebuilt);
    assert_eq!(s.indexed_segments, sealed.len());
    assert_eq!(
        s.summarized_segments,
        sealed.len(),
        "every segment is plain"
    );
    assert_eq!(s.index.cache_stats(), (0, 0), "open read no run back");
    for (base, was) in sealed.iter().zip(&before) {
        let size = sim.peek(&idx_path(*base)).map_or(0, |b| b.len() as u64);
        let read = sim.bytes_read(&idx_path(*base)) - was;
        // The probe (shortened in tests) and the rest of the summary
        // section: not the events.
        assert!(read < size, "index file of {base}: {read} of {size} bytes");
    }
    let mut full = open_full(&sim);
    same_answers(&mut s, &mut full, 150);
    drop((s, full));
    sim.crash();
    same_as_full_scan(&sim);
}

#[test]
fn a_damaged_summary_section_is_rebuilt_and_damaged_events_behind_a_good_summary_are_rebuilt_when_read()
 {
    let sim = appended(10, 150);
    let segs = segments(&sim);
    let victim = segs[segs.len() / 2];
    let path = idx_path(victim);
    let good = sim.peek(&path).expect("index file");
    // Where the summary section ends (its checksum included).
    let summary_end =
        36 + u64::from_le_bytes(good[28..36].try_into().expect("8 bytes")) as usize + 4;
    for at in [30, 38, summary_end - 2, summary_end + 3, good.len() - 6] {
        let mut b = good.clone();
        b[at] ^= 0x10;
        assert!(sim.poke(&path, &b));
        let (s, report) = open(&sim);
        let in_summary = at < summary_end;
        assert_eq!(report.index_rebuilt, in_summary, "flip at {at}");
        assert_eq!(
            s.summarized_segments,
            segs.len() - 1 - usize::from(in_summary),
            "flip at {at}"
        );
        drop(s);
        sim.crash();
        // Same as a full scan, whose walk reads every run back: a file
        // whose events were damaged is rewritten then.
        same_as_full_scan(&sim);
        assert_eq!(sim.peek(&path), Some(good.clone()), "flip at {at}: rebuilt");
    }
}

#[test]
fn a_store_with_version_1_index_files_opens_from_them_and_rewrites_them_with_a_summary() {
    for sim in [populated(11), appended(12, 150)] {
        let segs = segments(&sim);
        let (_, sealed) = segs.split_last().expect("segments");
        // What the previous version wrote: the same events, no summary.
        let mut v1 = 0;
        for base in sealed {
            let Some(bytes) = sim.peek(&idx_path(*base)) else {
                continue;
            };
            let seg = sim.peek(&dir().join(segment_name(*base))).expect("segment");
            let mut tail = [0u8; 4];
            tail.copy_from_slice(&seg[seg.len() - 4..]);
            let id = super::seg_index::SegmentId {
                base: *base,
                len: seg.len() as u64,
                tail,
            };
            let scan = super::seg_index::decode(&bytes, id).expect("a valid index file");
            assert!(sim.poke(&idx_path(*base), &super::seg_index::encode_v1(&scan, id)));
            assert_eq!(idx_version(&sim, *base), Some(1));
            v1 += 1;
        }
        assert!(v1 > 10, "{v1} index files");
        let (s, _) = open(&sim);
        assert_eq!(s.summarized_segments, 0, "no summary in version 1");
        assert_eq!(s.indexed_segments, v1, "every version-1 file was used");
        drop(s);
        sim.crash();
        for base in sealed {
            assert_eq!(idx_version(&sim, *base), Some(2), "{base} rewritten");
        }
        same_as_full_scan(&sim);
        let (s, report) = open(&sim);
        assert!(!report.index_rebuilt);
        assert_eq!(s.indexed_segments, sealed.len());
        assert!(s.summarized_segments > 0);
    }
}

#[test]
fn the_search_for_messages_with_headers_skips_runs_without_and_answers_as_a_walk() {
    let sim = appended(13, 150);
    let (mut s, _) = open(&sim);
    let mut full = open_full(&sim);
    for seq in [33, 34, 35, 36, 77, 120] {
        assert_eq!(s.remove(seq, false).ok(), Some(true));
        assert_eq!(full.remove(seq, false).ok(), Some(true));
    }
    for start in 0..=152u64 {
        let got = s
            .next_with_headers_from(start)
            .ok()
            .flatten()
            .map(|m| m.seq);
        let mut want = None;
        let mut at = start;
        while let Ok(Some(m)) = full.next_from(at, &SubjectFilter::All) {
            if !m.hdr.is_empty() {
                want = Some(m.seq);
                break;
            }
            at = m.seq + 1;
        }
        assert_eq!(got, want, "from {start}");
    }
}
