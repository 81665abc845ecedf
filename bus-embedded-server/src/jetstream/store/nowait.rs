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
//!
//! Only callers that handle "would block" set the mark: to any other code a
//! would-block error would look like a failed read. Unmarked reads (blocking
//! threads, recovery, tests, and rare paths on a worker such as a counter
//! publish reading its subject's total) also try the page cache first, and
//! on a miss wait through [`wait_in_place`]: on a worker it first moves the
//! worker's other tasks to another thread, elsewhere it is a plain read. (A
//! cold read on a blocking thread thus costs one refused `preadv2` before
//! the read that waits: one syscall beside a device read.)

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

/// Runs `f`, which may wait on the device, without stalling the async
/// tasks of the thread's runtime worker: on a multi-threaded runtime tokio
/// hands the worker's other tasks to another thread first
/// (`block_in_place`); on blocking threads and outside a runtime `f` just
/// runs. (A current-thread runtime, used only by tests, has nowhere to hand
/// them: `f` runs there too.)
pub fn wait_in_place<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn waiting_in_place_on_the_only_worker_leaves_its_other_tasks_running() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let (release, held) = mpsc::channel::<()>();
        let (entered, waiting) = mpsc::channel::<()>();
        let waiter = runtime.spawn(async move {
            wait_in_place(|| {
                let _ = entered.send(());
                held.recv_timeout(Duration::from_secs(10)).is_ok()
            })
        });
        waiting
            .recv_timeout(Duration::from_secs(5))
            .expect("the waiting task started");
        let (ran, probe) = mpsc::channel();
        runtime.spawn(async move {
            let _ = ran.send(());
        });
        let free = probe.recv_timeout(Duration::from_secs(3)).is_ok();
        let _ = release.send(());
        let released = runtime.block_on(waiter).expect("waiter");
        assert!(free, "the worker's other tasks stalled behind the wait");
        assert!(released);
    }

    #[test]
    fn waiting_in_place_works_on_a_current_thread_runtime_and_on_blocking_threads() {
        let current = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        assert_eq!(current.block_on(async { wait_in_place(|| 7) }), 7);
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .expect("runtime");
        let on_blocking =
            multi.block_on(async { tokio::task::spawn_blocking(|| wait_in_place(|| 8)).await });
        assert_eq!(on_blocking.expect("blocking task"), 8);
        assert_eq!(wait_in_place(|| 9), 9, "outside any runtime");
    }

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
