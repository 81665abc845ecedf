//! Sequential reads in blocks (issue #15 item 3).
//!
//! A consumer walking a stream reads records that lie one after another in
//! a segment. Reading each with its own `pread` cost a syscall, a page-cache
//! copy and an allocation per message. [`ReadAhead`] keeps a few blocks of
//! [`BLOCK`] bytes read once from a segment and serves the records inside
//! them as [`Bytes`] slices of the block (no copy, no allocation per
//! message). The caller still checks each record's checksum: a bit flip in
//! a block is found exactly as in a record read alone.
//!
//! What it may cache, and why that stays true (the caller's part):
//! - only bytes the store knows are written to the file: a block never
//!   reaches past the first byte still buffered or being written by the
//!   sync job in flight (`limit`), so it never holds a half-written tail;
//! - written bytes of a segment never change, except an erased message's
//!   record, rewritten in place; an erased message has left the index
//!   before, so its stale bytes in a block are never asked for;
//! - a block names its segment's base and file: a segment that is unlinked
//!   is forgotten ([`ReadAhead::forget_segment`]), and a file that is not
//!   the same open file (`Arc::ptr_eq`) never matches.
//!
//! It must not: decide what is a message (the index does), check records
//! (the caller decodes and checks them), or read anything but whole blocks
//! inside `limit`. Blocks are filled only for reads that continue a walk
//! (the record starts where a block or the previous single read ended), so
//! random gets (direct get, KV) keep reading just their record.

use std::io;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

/// Bytes read at once for a sequential walk.
pub(super) const BLOCK: usize = 64 * 1024;
/// Blocks kept per store (two consumers walking different places of one
/// stream each keep theirs).
const SLOTS: usize = 2;
/// A record starting at most this far after a block's end (deleted
/// records in between) still continues that block's walk.
const GAP: u64 = 4096;

#[derive(Debug)]
struct Block<F> {
    seg: u64,
    file: Arc<F>,
    start: u64,
    bytes: Bytes,
    /// Last use (for replacing the older block).
    used: u64,
}

impl<F> Block<F> {
    fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }

    fn holds(&self, seg: u64, file: &Arc<F>, off: u64, len: usize) -> bool {
        self.seg == seg
            && Arc::ptr_eq(&self.file, file)
            && off >= self.start
            && off.saturating_add(len as u64) <= self.end()
    }

    /// Whether a record at `off` continues a walk through this block.
    fn continued_by(&self, seg: u64, file: &Arc<F>, off: u64) -> bool {
        self.seg == seg
            && Arc::ptr_eq(&self.file, file)
            && off >= self.start
            && off <= self.end().saturating_add(GAP)
    }
}

/// A store's read-ahead blocks. See the module docs.
#[derive(Debug)]
pub(super) struct ReadAhead<F> {
    slots: Vec<Block<F>>,
    /// Where the last record read alone ended (segment, offset): a read
    /// starting there is a walk, and fills a block.
    walk: Option<(u64, u64)>,
    tick: u64,
}

impl<F> Default for ReadAhead<F> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            walk: None,
            tick: 0,
        }
    }
}

impl<F> ReadAhead<F> {
    /// The record at `off..off+len` of segment `seg` (open as `file`), from
    /// a cached block, or from a block read now when this read continues a
    /// walk. `limit`: the end of the segment's bytes known to be written.
    /// `read` fills a buffer from the file exactly (it decides whether it
    /// may wait on the device).
    ///
    /// `None`: read the record alone (not a walk, the record is not all
    /// inside `limit`, or the block read failed: the single read reports
    /// the error, or "would block", itself).
    pub(super) fn get(
        &mut self,
        seg: u64,
        file: &Arc<F>,
        off: u64,
        len: usize,
        limit: u64,
        read: impl FnOnce(&F, &mut [u8], u64) -> io::Result<()>,
    ) -> Option<Bytes> {
        self.tick += 1;
        if let Some(b) = self.slots.iter_mut().find(|b| b.holds(seg, file, off, len)) {
            b.used = self.tick;
            let rel = usize::try_from(off - b.start).ok()?;
            return Some(b.bytes.slice(rel..rel + len));
        }
        let end = off.checked_add(len as u64)?;
        let continues = self
            .slots
            .iter()
            .position(|b| b.continued_by(seg, file, off));
        let walking = continues.is_some() || self.walk == Some((seg, off));
        if !walking || end > limit {
            self.walk = Some((seg, end));
            return None;
        }
        let n = usize::try_from((limit - off).min(BLOCK.max(len) as u64)).ok()?;
        // The block to replace: the one this walk came from, a free slot,
        // or the one used longest ago.
        let at = match continues {
            Some(i) => i,
            None if self.slots.len() < SLOTS => self.slots.len(),
            None => self
                .slots
                .iter()
                .enumerate()
                .min_by_key(|(_, b)| b.used)
                .map_or(0, |(i, _)| i),
        };
        let old = (at < self.slots.len()).then(|| std::mem::take(&mut self.slots[at].bytes));
        let mut buf = reuse(old, n);
        if read(file, &mut buf, off).is_err() {
            if at < self.slots.len() {
                self.slots.swap_remove(at);
            }
            self.walk = Some((seg, end));
            return None;
        }
        let bytes = buf.freeze();
        let rec = bytes.slice(0..len);
        let block = Block {
            seg,
            file: Arc::clone(file),
            start: off,
            bytes,
            used: self.tick,
        };
        if at < self.slots.len() {
            self.slots[at] = block;
        } else {
            self.slots.push(block);
        }
        self.walk = None;
        Some(rec)
    }

    /// Drops the blocks of segment `seg` (it is being unlinked).
    pub(super) fn forget_segment(&mut self, seg: u64) {
        self.slots.retain(|b| b.seg != seg);
        if self.walk.is_some_and(|(s, _)| s == seg) {
            self.walk = None;
        }
    }

    /// Drops every block (the store closes or is destroyed).
    pub(super) fn clear(&mut self) {
        self.slots.clear();
        self.walk = None;
    }

    /// No block kept.
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// A zeroed buffer of `n` bytes, in the old block's memory when nothing
/// else holds a slice of it any more.
fn reuse(old: Option<Bytes>, n: usize) -> BytesMut {
    match old.map(Bytes::try_into_mut) {
        Some(Ok(mut b)) => {
            b.clear();
            b.resize(n, 0);
            b
        }
        _ => BytesMut::zeroed(n),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A "file" in memory counting its reads.
    #[derive(Debug)]
    struct Mem {
        bytes: Vec<u8>,
        reads: AtomicUsize,
    }

    fn mem(len: usize) -> Arc<Mem> {
        Arc::new(Mem {
            bytes: (0..len).map(|i| (i % 251) as u8).collect(),
            reads: AtomicUsize::new(0),
        })
    }

    fn read_mem(f: &Mem, buf: &mut [u8], off: u64) -> io::Result<()> {
        f.reads.fetch_add(1, Ordering::Relaxed);
        let off = off as usize;
        let src = f
            .bytes
            .get(off..off + buf.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn get(ra: &mut ReadAhead<Mem>, f: &Arc<Mem>, off: u64, len: usize) -> Option<Bytes> {
        ra.get(1, f, off, len, f.bytes.len() as u64, read_mem)
    }

    #[test]
    fn a_walk_reads_one_block_and_serves_the_records_inside_it() {
        let f = mem(3 * BLOCK);
        let mut ra = ReadAhead::default();
        // The first read is alone; the next one continues the walk.
        assert!(get(&mut ra, &f, 0, 100).is_none());
        let mut off = 100;
        while off <= BLOCK as u64 + 200 {
            let b = get(&mut ra, &f, off, 100).expect("a walk is served");
            assert_eq!(&b[..], &f.bytes[off as usize..off as usize + 100]);
            off += 100;
        }
        // One block for the walk (starting at 100) and one more for the
        // record that crossed its end.
        assert_eq!(f.reads.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_record_split_across_a_block_end_is_read_whole_from_the_next_block() {
        let f = mem(2 * BLOCK + 10);
        let mut ra = ReadAhead::default();
        assert!(get(&mut ra, &f, 0, 10).is_none());
        assert!(get(&mut ra, &f, 10, 10).is_some());
        // Block is 10..10+BLOCK; a record from BLOCK-20 to BLOCK+80 crosses it.
        let at = BLOCK as u64 - 20;
        let b = get(&mut ra, &f, at, 100).expect("continues the walk");
        assert_eq!(&b[..], &f.bytes[at as usize..at as usize + 100]);
        assert_eq!(f.reads.load(Ordering::Relaxed), 2);
        // The new block starts at the split record.
        let b = get(&mut ra, &f, at + 100, 50).expect("inside the new block");
        assert_eq!(&b[..], &f.bytes[at as usize + 100..at as usize + 150]);
        assert_eq!(f.reads.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_record_larger_than_a_block_is_read_whole() {
        let f = mem(4 * BLOCK);
        let mut ra = ReadAhead::default();
        assert!(get(&mut ra, &f, 0, 64).is_none());
        let big = 2 * BLOCK + 7;
        let b = get(&mut ra, &f, 64, big).expect("a walk");
        assert_eq!(b.len(), big);
        assert_eq!(&b[..], &f.bytes[64..64 + big]);
    }

    #[test]
    fn a_segment_ending_mid_block_gives_a_short_block_and_nothing_past_the_limit() {
        let f = mem(BLOCK);
        let mut ra = ReadAhead::default();
        let limit = 1000;
        assert!(ra.get(1, &f, 0, 100, limit, read_mem).is_none());
        let b = ra.get(1, &f, 100, 100, limit, read_mem).expect("a walk");
        assert_eq!(&b[..], &f.bytes[100..200]);
        // Inside the short block.
        assert!(ra.get(1, &f, 900, 100, limit, read_mem).is_some());
        // Past the limit (not known written): never from a block.
        assert!(ra.get(1, &f, 1000, 100, limit, read_mem).is_none());
        assert!(ra.get(1, &f, 950, 100, limit, read_mem).is_none());
        // Once the limit moved, the walk picks up there.
        assert!(ra.get(1, &f, 1000, 100, 5000, read_mem).is_some());
        assert_eq!(f.reads.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn random_reads_never_read_blocks() {
        let f = mem(8 * BLOCK);
        let mut ra = ReadAhead::default();
        for off in [5000u64, 100, 70_000, 3 * 65_536 + 9, 12] {
            assert!(get(&mut ra, &f, off, 50).is_none(), "{off}");
        }
        assert_eq!(f.reads.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_different_file_or_a_forgotten_segment_is_never_served_from_a_block() {
        let f = mem(2 * BLOCK);
        let mut ra = ReadAhead::default();
        assert!(get(&mut ra, &f, 0, 10).is_none());
        assert!(get(&mut ra, &f, 10, 10).is_some());
        // Same segment base, another file (a segment recreated): no hit.
        let other = mem(2 * BLOCK);
        assert!(get(&mut ra, &other, 20, 10).is_none());
        ra.forget_segment(1);
        assert!(get(&mut ra, &f, 20, 10).is_none());
    }

    #[test]
    fn a_failed_block_read_falls_back_to_a_single_read() {
        let f = mem(BLOCK);
        let mut ra = ReadAhead::default();
        assert!(get(&mut ra, &f, 0, 10).is_none());
        let failing = |_: &Mem, _: &mut [u8], _: u64| -> io::Result<()> {
            Err(io::ErrorKind::WouldBlock.into())
        };
        assert!(ra.get(1, &f, 10, 10, BLOCK as u64, failing).is_none());
        assert!(ra.slots.is_empty());
    }

    #[test]
    fn a_block_no_one_holds_a_slice_of_is_reused() {
        let f = mem(4 * BLOCK);
        let mut ra = ReadAhead::default();
        assert!(get(&mut ra, &f, 0, 10).is_none());
        let first = get(&mut ra, &f, 10, 10).expect("walk");
        let ptr = ra.slots[0].bytes.as_ptr();
        drop(first);
        // Walk on past the block: the slot is refilled in place.
        let b = get(&mut ra, &f, BLOCK as u64 + 10, 10).expect("walk");
        assert_eq!(&b[..], &f.bytes[BLOCK + 10..BLOCK + 20]);
        assert_eq!(ra.slots.len(), 1);
        assert_eq!(ra.slots[0].bytes.as_ptr(), ptr);
    }

    #[test]
    fn two_walks_in_one_store_keep_a_block_each() {
        let f = mem(8 * BLOCK);
        let mut ra = ReadAhead::default();
        let far = 4 * BLOCK as u64;
        assert!(get(&mut ra, &f, 0, 10).is_none());
        assert!(get(&mut ra, &f, 10, 10).is_some());
        assert!(get(&mut ra, &f, far, 10).is_none());
        assert!(get(&mut ra, &f, far + 10, 10).is_some());
        for i in 2..100u64 {
            assert!(get(&mut ra, &f, i * 10, 10).is_some());
            assert!(get(&mut ra, &f, far + i * 10, 10).is_some());
        }
        assert_eq!(f.reads.load(Ordering::Relaxed), 2);
    }
}
