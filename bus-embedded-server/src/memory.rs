//! How the process's allocator gives memory back after a burst of traffic.
//!
//! glibc's malloc raises its mmap threshold every time a large block
//! (a connection's outbound buffer grown under a backlog) is freed, up to
//! 32 MiB; from then on such blocks come from the heap, where they are kept
//! when freed (`malloc_trim` every few seconds did not give it back either).
//! After rounds of 3,000,000 1:1 messages and 1,000,000 queue messages of
//! 256 B the server stayed at 100-160 MiB with no client connected
//! (nats-server: 24 MiB). With both thresholds pinned at [`THRESHOLD`],
//! large blocks are always mapped and unmapped on free, and the heap is
//! trimmed: under 10 MiB after the same load, and a lower peak
//! (docs/benchmarks.md, "Memory after load").
//!
//! This is a process-wide setting, so the library never makes it on its
//! own: the binaries (`angzarr-nats-server`, `angzarr-bus`) call
//! [`return_freed_memory_to_the_os`] at start, and an application that
//! embeds the server may do the same.

/// Pins glibc's mmap and trim thresholds (see the module documentation).
/// Returns whether the allocator accepted both; on other C libraries it
/// does nothing and returns false.
pub fn return_freed_memory_to_the_os() -> bool {
    set_thresholds(THRESHOLD)
}

/// Blocks this large or larger are mapped on their own and unmapped when
/// freed. 1 MiB returned as much after load as 128 KiB (9 against 7 MiB)
/// without the extra CPU of mapping every mid-sized buffer.
pub const THRESHOLD: i32 = 1024 * 1024;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set_thresholds(t: i32) -> bool {
    // SAFETY: `mallopt` takes two integers and only changes glibc's
    // allocator parameters; it is safe to call at any time from any thread
    // (glibc takes its own locks), and no pointer crosses the boundary.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, t) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, t) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds(_: i32) -> bool {
    false
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_accepts_the_pinned_thresholds() {
        assert!(super::return_freed_memory_to_the_os());
    }
}
