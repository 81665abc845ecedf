//! The file store's walks (`next_from`, served from read-ahead blocks)
//! against the memory store and against damage on disk: what a consumer
//! reads must be what a plain read gives, whatever happens meanwhile.

use std::fs;
use std::path::Path;

use super::super::mem::MemStore;
use super::scenarios::sync;
use super::*;

fn open(dir: &Path, segment_bytes: u64) -> FileStore {
    FileStore::open(
        dir,
        FileStoreConfig {
            segment_bytes,
            ..FileStoreConfig::default()
        },
    )
    .unwrap()
    .0
}

fn body(seq: u64) -> Vec<u8> {
    format!("body-{seq}-{}", "y".repeat((seq % 13) as usize * 9)).into_bytes()
}

fn fill(s: &mut FileStore, n: u64) {
    for _ in 0..n {
        let seq = s.state().last_seq + 1;
        assert_eq!(
            s.append(&format!("w.{}", seq % 4), b"", &body(seq), seq as i64)
                .unwrap(),
            seq
        );
    }
}

/// Walks from `from` to the end with `next_from`, as a consumer does.
fn walk(s: &mut dyn Store, from: u64, filter: &SubjectFilter) -> Vec<StoredMsg> {
    let mut out = Vec::new();
    let mut at = from;
    while let Some(m) = s.next_from(at, filter).unwrap() {
        at = m.seq + 1;
        out.push(m);
    }
    out
}

#[test]
fn a_long_walk_reads_every_message_intact_from_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = open(tmp.path(), 1 << 20);
    fill(&mut s, 3000);
    sync(&mut s);
    let got = walk(&mut s, 1, &SubjectFilter::All);
    assert_eq!(got.len(), 3000);
    for (i, m) in got.iter().enumerate() {
        let seq = i as u64 + 1;
        assert_eq!(m.seq, seq);
        assert_eq!(m.data, body(seq), "{seq}");
        assert_eq!(&*m.subject, format!("w.{}", seq % 4));
        assert_eq!(m.ts, seq as i64);
    }
    // The walk was served from blocks: at most a few per 64 KiB read.
    assert!(!s.readahead.is_empty(), "no block was kept");
}

#[test]
fn a_bit_flipped_inside_a_block_is_reported_for_its_message_only() {
    for at_seq in [2u64, 57, 300] {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = open(tmp.path(), 1 << 20);
        fill(&mut s, 400);
        sync(&mut s);
        // Damage the record on disk after the store indexed it.
        let e = s.index.get(at_seq).unwrap();
        let path = s.segments[&e.seg].path.clone();
        let mut bytes = fs::read(&path).unwrap();
        let flip = (e.off + u64::from(e.len)) as usize - 7;
        bytes[flip] ^= 0x10;
        fs::write(&path, &bytes).unwrap();
        let mut seq = 1;
        while seq < at_seq {
            let m = s.next_from(seq, &SubjectFilter::All).unwrap().unwrap();
            assert_eq!((m.seq, m.data.clone()), (seq, body(seq).into()));
            seq += 1;
        }
        let err = s.next_from(at_seq, &SubjectFilter::All).unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt(why) if why.contains(&format!("message {at_seq} "))),
            "{err:?}"
        );
        // The messages after it read back.
        let rest = walk(&mut s, at_seq + 1, &SubjectFilter::All);
        assert_eq!(rest.len() as u64, 400 - at_seq);
        assert!(rest.iter().all(|m| m.data == body(m.seq)));
    }
}

#[test]
fn a_walk_never_serves_bytes_the_sync_job_is_still_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = open(tmp.path(), 1 << 20);
    fill(&mut s, 100);
    sync(&mut s);
    // Walk to the end of what is written: the block ends there.
    assert_eq!(walk(&mut s, 1, &SubjectFilter::All).len(), 100);
    fill(&mut s, 100);
    // The job is out but has not written yet: its bytes are only in memory.
    let job = s.take_sync().unwrap();
    let mid = walk(&mut s, 101, &SubjectFilter::All);
    assert_eq!(mid.len(), 100);
    assert!(mid.iter().all(|m| m.data == body(m.seq)));
    let upto = job.upto;
    let result = (job.run)();
    s.synced(upto, result);
    fill(&mut s, 50);
    sync(&mut s);
    let all = walk(&mut s, 1, &SubjectFilter::All);
    assert_eq!(all.len(), 250);
    assert!(all.iter().all(|m| m.data == body(m.seq)));
}

#[test]
fn walks_match_the_mem_store_under_appends_removals_erasures_purges_and_reclaims() {
    for seg in [700u64, 40_000, 1 << 20] {
        let tmp = tempfile::tempdir().unwrap();
        let mut f = open(tmp.path(), seg);
        let mut m = MemStore::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ seg;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let filters = [
            SubjectFilter::All,
            SubjectFilter::Any(vec!["w.1".into()]),
            SubjectFilter::Any(vec!["w.2".into(), "w.3".into()]),
        ];
        // Three walkers (more than the store keeps blocks for), each at
        // its own place with its own filter.
        let mut at = [1u64, 1, 1];
        let mut ts = 0;
        for step in 0..4000 {
            let last = m.state().last_seq;
            match rnd(100) {
                0..=39 => {
                    ts += 1;
                    let subj = format!("w.{}", rnd(4));
                    let data = vec![b'a' + rnd(26) as u8; rnd(400) as usize];
                    let a = m.append(&subj, b"", &data, ts).unwrap();
                    assert_eq!(a, f.append(&subj, b"", &data, ts).unwrap());
                }
                40..=47 => {
                    let seq = rnd(last + 2);
                    let erase = rnd(2) == 0;
                    assert_eq!(m.remove(seq, erase).unwrap(), f.remove(seq, erase).unwrap());
                }
                48..=49 => {
                    let p = Purge {
                        seq: (rnd(2) == 0).then(|| rnd(last + 5)),
                        keep: (rnd(3) == 0).then(|| rnd(40)),
                        ..Purge::default()
                    };
                    assert_eq!(m.purge(&p).unwrap(), f.purge(&p).unwrap(), "{p:?}");
                }
                50..=64 => sync(&mut f),
                _ => {
                    // A walker takes a few steps.
                    let w = rnd(3) as usize;
                    for _ in 0..rnd(60) {
                        let a = m.next_from(at[w], &filters[w]).unwrap();
                        let b = f.next_from(at[w], &filters[w]).unwrap();
                        assert_eq!(a, b, "seg {seg} step {step} walker {w} at {}", at[w]);
                        match a {
                            Some(msg) => at[w] = msg.seq + 1,
                            None => break,
                        }
                    }
                    if rnd(20) == 0 {
                        at[w] = rnd(last + 2);
                    }
                }
            }
        }
        sync(&mut f);
        for filter in &filters {
            assert_eq!(walk(&mut m, 1, filter), walk(&mut f, 1, filter));
        }
    }
}
