//! Detecting CUDA without panicking: cudarc panics when it loads an absent library, so every
//! library is probed (dlopen through cudarc's own `is_culib_present`) before first use.

use std::sync::OnceLock;

/// What this machine offers, with the reason when something is missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CudaStatus {
    /// libcuda loaded and at least one device answered.
    Available { devices: usize },
    /// Something is missing; the message names it.
    Unavailable(String),
}

/// Probes libcuda, then the device count (cuInit errors are values, not panics). Cached.
pub fn cuda_status() -> CudaStatus {
    static STATUS: OnceLock<CudaStatus> = OnceLock::new();
    STATUS
        .get_or_init(|| {
            // SAFETY: only attempts to dlopen the candidate library names.
            if !unsafe { cudarc::driver::sys::is_culib_present() } {
                return CudaStatus::Unavailable("libcuda (the NVIDIA driver library) was not found".into());
            }
            match cudarc::driver::CudaContext::device_count() {
                Ok(n) if n > 0 => CudaStatus::Available { devices: n as usize },
                Ok(_) => CudaStatus::Unavailable("the CUDA driver reports no devices".into()),
                Err(e) => CudaStatus::Unavailable(format!("the CUDA driver failed to initialise: {e:?}")),
            }
        })
        .clone()
}

/// True when a CUDA device can be used.
pub fn cuda_available() -> bool {
    matches!(cuda_status(), CudaStatus::Available { .. })
}

/// True when libnvrtc can be loaded (needed to compile kernels, even without a GPU).
pub fn nvrtc_available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    // SAFETY: only attempts to dlopen the candidate library names.
    *OK.get_or_init(|| unsafe { cudarc::nvrtc::sys::is_culib_present() })
}
