//! `imgate-trim`: returns the heap that glibc's malloc keeps after a mass disconnect to the OS.
//!
//! glibc does not give freed small chunks back by itself: after 19,000 sockets leave, the gateway's
//! RSS stays near its high-water mark (BENCHMARKS.md, "Soak"). `malloc_trim(0)` walks every arena
//! and releases the whole free pages inside them (`madvise(MADV_DONTNEED)`), not only the top of the
//! heap. This crate is the only place of the workspace with `unsafe` (the FFI call); on other
//! targets (musl, macOS) [`trim`] does nothing.

/// Asks glibc to return the free memory of every arena to the OS. Returns whether it released any.
/// It takes the arenas' locks while it walks them (milliseconds for a heap of ~100 MB): call it from
/// a blocking thread, and rarely.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn trim() -> bool {
    // SAFETY: malloc_trim takes a size and touches only the allocator's own state, under its locks;
    // it is safe to call from any thread at any time.
    unsafe { libc::malloc_trim(0) != 0 }
}

/// Not glibc: nothing to do.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() -> bool {
    false
}

/// Bytes of the heap in use by the program (glibc's `mallinfo2`: `uordblks + hblkhd`, allocated
/// chunks and mmapped blocks), as opposed to what the RSS also holds: free chunks not returned yet.
/// Walks the arenas under their locks, like [`trim`].
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn in_use() -> Option<u64> {
    // SAFETY: mallinfo2 only reads the allocator's statistics, under its locks, and returns a plain
    // struct by value.
    let m = unsafe { libc::mallinfo2() };
    Some((m.uordblks + m.hblkhd) as u64)
}

/// Not glibc: unknown.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn in_use() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn trim_can_be_called() {
        let v: Vec<Vec<u8>> = (0..10_000).map(|_| vec![1u8; 512]).collect();
        drop(v);
        let _ = super::trim();
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        assert!(super::in_use().is_some_and(|b| b > 0));
    }
}
