//! # scorch-cuda
//!
//! The CUDA backend: one `.cu` file per kernel family under `cuda/kernels/`, embedded with
//! `include_str!`, compiled by NVRTC for the device's `sm_XY` and cached on disk.
//!
//! Status: the kernel sources, the NVRTC compiler with its disk cache, and driver detection
//! that never panics are here and compile-checked in CI; the `Kernels` implementation that
//! runs them on a device (and its CPU-parity check) is not written yet.

pub mod compile;
pub mod probe;

pub use compile::{compile_cubin, kernel_sources, CompileError, KernelSource};
pub use probe::{cuda_available, nvrtc_available, CudaStatus};
