//! Reads that must not wait on the disk.
//!
//! The async workers serve every connection: a read that waits on the
//! device there stalls all of them. Code running on a worker marks the
//! current thread with [`enter`] around the store calls it makes; while the
//! mark is set, the file store reads records with
//! [`StorageFile::read_exact_at_nowait`](super::storage::StorageFile::read_exact_at_nowait)
//! (the page cache only) and a record that is not in memory fails with
//! [`StoreError::would_block`](super::StoreError::would_block). The caller
//! then does the same work again on a blocking thread, where reads may wait.
//! Without the mark (blocking threads, recovery, tests) reads are plain.
//!
//! Only callers that handle "would block" set the mark: to any other code a
//! would-block error would look like a failed read.

use std::cell::Cell;

thread_local! {
    static NOWAIT: Cell<bool> = const { Cell::new(false) };
}

/// While alive, store reads on this thread never wait on the device.
#[must_use = "the mark lasts as long as the guard"]
#[derive(Debug)]
pub struct NoWait {
    was: bool,
}

/// Marks this thread until the guard is dropped (nests).
pub fn enter() -> NoWait {
    NoWait {
        was: NOWAIT.with(|n| n.replace(true)),
    }
}

/// Clears the mark until the guard is dropped: code that must read (its
/// cached-only try failed and there is nowhere to hand it) may wait again.
pub fn leave() -> NoWait {
    NoWait {
        was: NOWAIT.with(|n| n.replace(false)),
    }
}

/// True while a [`NoWait`] guard is alive on this thread.
pub fn active() -> bool {
    NOWAIT.with(Cell::get)
}

impl Drop for NoWait {
    fn drop(&mut self) {
        NOWAIT.with(|n| n.set(self.was));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_lasts_as_long_as_its_guard_and_nests() {
        assert!(!active());
        {
            let _outer = enter();
            assert!(active());
            {
                let _inner = enter();
                assert!(active());
            }
            assert!(active(), "an inner guard must not clear the outer mark");
        }
        assert!(!active());
        std::thread::spawn(|| assert!(!active(), "another thread is not marked"))
            .join()
            .expect("thread");
    }
}
