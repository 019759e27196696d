//! Differentiable functions, one file per family (named like the kernels in `scorch-ops`).

pub mod attention;
pub mod conv;
pub mod create;
pub mod elementwise;
pub mod fused;
pub mod index;
pub mod loss;
pub mod matmul;
pub mod norm;
pub mod reduce;
pub mod shape;
