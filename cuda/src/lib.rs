//! # scorch-cuda
//!
//! The CUDA backend: one `.cu` file per kernel family under `cuda/kernels/`, embedded with
//! `include_str!`, compiled by NVRTC for the device's `sm_XY` and cached on disk.
//!
//! [`Cuda`] implements the engine's `Kernels` trait over device storage: elementwise,
//! reductions, cuBLAS matmul, flash attention, implicit-GEMM convolution, norms, indexing,
//! random numbers, the fused losses and the optimizer updates. Detection never panics
//! ([`probe`]); `scorch cuda-check` and `scorch ops --check --device cuda` check the kernels
//! against the CPU on a GPU, and CI compiles every source with NVRTC.

pub mod backend;
pub mod compile;
pub mod device;
pub mod probe;
pub mod smoke;

pub use backend::{deterministic, set_deterministic, Cuda, CudaStorage};
pub use compile::{compile_cubin, kernel_sources, CompileError, KernelSource};
pub use cudarc;
pub use device::{CudaDevice, CudaError, MemoryStats};
pub use probe::{cuda_available, cuda_status, nvrtc_available, CudaStatus};
