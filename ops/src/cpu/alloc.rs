//! Keeping freed kernel buffers in the process (glibc).
//!
//! Every op allocates its output, and the buffers of a training step are freed and
//! allocated again at the next one. With glibc's defaults, buffers above the dynamic mmap
//! threshold go back to the kernel on free and come back as fresh zeroed pages, so a
//! training step spent ~15% of its time in page faults and page clearing (perf, the EDM
//! Fashion-MNIST step). [`tune`] raises the mmap threshold to 32 MiB (glibc's maximum) and
//! turns off heap trimming, so freed buffers are reused from the heap instead, as a
//! caching allocator would: the process's resident memory stays at its peak.
//!
//! It runs once, on the first tensor the engine creates; `SCORCH_MALLOC_TUNE=0` turns it
//! off. Other platforms and C libraries are left alone.

use std::sync::Once;

static TUNE: Once = Once::new();

/// Applies the settings once per process (a no-op after the first call, off glibc, or
/// with `SCORCH_MALLOC_TUNE=0`).
pub fn tune() {
    TUNE.call_once(|| {
        if std::env::var("SCORCH_MALLOC_TUNE").is_ok_and(|v| v == "0") {
            return;
        }
        apply();
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply() {
    // glibc's mallopt parameter numbers (malloc.h).
    const M_TRIM_THRESHOLD: libc::c_int = -1;
    const M_TOP_PAD: libc::c_int = -2;
    const M_MMAP_THRESHOLD: libc::c_int = -3;
    // SAFETY: mallopt only changes allocator tuning parameters; it is safe to call at any
    // time, from any thread, and returns 0 when a value is refused (then glibc keeps its
    // default, which is still correct).
    unsafe {
        libc::mallopt(M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(M_TRIM_THRESHOLD, libc::c_int::MAX);
        libc::mallopt(M_TOP_PAD, 64 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() {}
