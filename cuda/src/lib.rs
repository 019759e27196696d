//! # scorch-cuda
//!
//! The CUDA backend: one `.cu` file per kernel family under `cuda/kernels/`, embedded with
//! `include_str!`, compiled by NVRTC for the device's `sm_XY` and cached on disk.
//!
//! Status: the kernel sources, the NVRTC compiler with its disk cache, driver detection that
//! never panics, the device/module loader and a parity check of the families written so far
//! (`scorch cuda-check`) are here; the sources are compile-checked in CI. The `Kernels`
//! implementation over device storage (so the engine runs on the GPU), attention, conv, norms,
//! matmul through cuBLAS and the optimizer kernels are not written yet.

pub mod backend;
pub mod compile;
pub mod device;
pub mod probe;
pub mod smoke;

pub use backend::{Cuda, CudaStorage};
pub use compile::{compile_cubin, kernel_sources, CompileError, KernelSource};
pub use cudarc;
pub use device::{CudaDevice, CudaError, MemoryStats};
pub use probe::{cuda_available, cuda_status, nvrtc_available, CudaStatus};
