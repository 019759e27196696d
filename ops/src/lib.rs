//! # scorch-ops
//!
//! What a kernel computes: dtypes, strided layouts, the [`Kernels`] trait and the rayon CPU
//! reference kernels. Knows nothing of gradients; the engine composes these primitives.

pub mod beta_f32;
pub mod dtype;
pub mod error;
pub mod layout;
pub mod philox;
pub mod special;

pub use dtype::{DType, Elem};
pub use error::{Error, Result};
pub use layout::Layout;
pub mod cpu;
pub mod kernels;

pub use cpu::CpuStorage;
pub use kernels::{Cpu, Kernels};
