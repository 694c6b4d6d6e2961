//! Shared by every target: with `LIVERSEG_FUZZ_SKIP_KNOWN=1` in the
//! environment, the two kinds of failure already known from the bad-input
//! replay (`tests/tests/bad_input.rs`) no longer stop the fuzzer, so it can
//! look for others: a single allocation over 64 MiB is refused (the
//! parsers' fallible reservations then fail cleanly; an infallible one
//! still aborts and is reported), and each input runs on a thread with a
//! 64 MiB stack (deeply nested sequences recurse once per level). Without
//! the variable the targets run as the service does.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::OnceLock;

const ALLOCATION_LIMIT: usize = 64 << 20;

fn skip_known() -> bool {
    static SKIP: OnceLock<bool> = OnceLock::new();
    *SKIP.get_or_init(|| std::env::var_os("LIVERSEG_FUZZ_SKIP_KNOWN").is_some_and(|v| v == "1"))
}

struct Guard;

// SAFETY: every call goes to the system allocator unchanged, or is answered
// with null (allocation failure), which callers handle.
unsafe impl GlobalAlloc for Guard {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOCATION_LIMIT && skip_known() {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOCATION_LIMIT && skip_known() {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > ALLOCATION_LIMIT && skip_known() {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GUARD: Guard = Guard;

/// Runs `f` on `data`, on a large stack when known failures are skipped.
pub fn run(data: &[u8], f: fn(&[u8])) {
    if !skip_known() {
        f(data);
        return;
    }
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn_scoped(scope, || f(data))
            .expect("spawn the input's thread");
        if let Err(panic) = worker.join() {
            std::panic::resume_unwind(panic);
        }
    });
}
