//! # scorch
//!
//! A reverse-mode autodiff engine with CPU (rayon) kernels — CUDA kernels arrive with the
//! CUDA backend — and generative models on top. This facade re-exports the layers:
//! [`ops`] (kernels), [`engine`] (tensors and autodiff), [`models`] (nn, optim, data).

pub use scorch_cuda as cuda;
pub use scorch_engine as engine;
pub use scorch_engine::testing;
pub use scorch_engine::{grad, no_grad, DType, Device, Error, Generator, Result, Tensor};
pub use scorch_models as models;
pub use scorch_ops as ops;
