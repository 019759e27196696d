//! Dropout.

use super::Module;
use crate::error::{Error, Result};
use crate::params::{ParamPath, TrainFlag};
use scorch_engine::{Generator, Tensor};
use std::sync::Arc;

/// Zeroes each element with probability `p` and scales the rest by `1/(1−p)` in training
/// mode; the identity in evaluation mode (PyTorch's `nn.Dropout`). The masks come from the
/// store's runtime generator ([`ParamStore::rng`](crate::params::ParamStore::rng)) and the
/// mode from its train flag.
#[derive(Clone, Debug)]
pub struct Dropout {
    p: f64,
    training: TrainFlag,
    rng: Arc<Generator>,
}

impl Dropout {
    /// Dropout with probability `p ∈ [0, 1]` following `path`'s store.
    pub fn new(path: &ParamPath, p: f64) -> Result<Dropout> {
        Dropout::with_rng(path.store().train_flag(), path.store().rng(), p)
    }

    /// Dropout with its own mode flag and generator.
    pub fn with_rng(training: TrainFlag, rng: Arc<Generator>, p: f64) -> Result<Dropout> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::Config(format!("dropout probability {p} outside [0, 1]")));
        }
        Ok(Dropout { p, training, rng })
    }

    /// The drop probability.
    pub fn p(&self) -> f64 {
        self.p
    }
}

impl Module for Dropout {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !self.training.is_training() || self.p == 0.0 {
            return Ok(x.clone());
        }
        if self.p == 1.0 {
            return Ok(x.mul_scalar(0.0)?);
        }
        let keep = Tensor::full(x.shape(), 1.0 - self.p, x.dtype())?.bernoulli(&self.rng)?;
        Ok(x.mul(&keep.mul_scalar(1.0 / (1.0 - self.p))?)?)
    }
}
