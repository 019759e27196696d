//! # scorch-engine
//!
//! Tensors that remember: [`Tensor`] (an `Arc` handle over a strided storage), define-by-run
//! reverse-mode autodiff ([`grad`], [`no_grad`], `backward`), the differentiable functions,
//! the Philox [`Generator`], safetensors IO and the op registry with its test harness.

pub mod autocast;
pub mod autograd;
pub mod backend;
pub mod device;
pub mod error;
pub mod io;
pub mod ops;
pub mod rng;
pub mod safetensors_io;
pub mod tensor;

pub use autocast::{autocast, autocast_dtype};
pub use autograd::{grad, is_grad_enabled, no_grad, set_grad_enabled};
pub use device::Device;
pub use error::{Error, Result};
pub use ops::conv::ConvParams;
pub use rng::Generator;
pub use scorch_ops::{DType, Layout};
pub use tensor::Tensor;
pub mod registry;
pub mod testing;
