//! # scorch-models
//!
//! What the papers are built from: [`params`] (named parameters with path-prefixed
//! lookup and safetensors checkpoints), [`nn`] (layers with PyTorch's initialisers),
//! [`optim`] (fused Adam / AdamW / SGD, EMA, clipping, resumable state) and [`data`]
//! (Fashion-MNIST as tensors, seeded mini-batches).

pub mod data;
pub mod edm;
pub mod error;
pub mod metrics;
pub mod nn;
pub mod optim;
pub mod params;
pub mod sid;
pub mod train;

pub use error::{Error, Result};
pub use nn::Module;
pub use optim::Optimizer;
pub use params::{Init, ParamPath, ParamStore};
