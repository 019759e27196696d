//! EDM's training loss (`training/loss.py :: EDMLoss`, spec §1.2):
//!
//! ```text
//! ln σ ~ N(P_mean, P_std²)                      P_mean = −1.2, P_std = 1.2
//! λ(σ) = (σ² + σ_d²) / (σ·σ_d)²                 (= 1 / c_out²)
//! L    = λ(σ) · (D(y + σ·n; σ, c) − y)²,  n ~ N(0, I)
//! ```
//!
//! The loss is returned per element, `[B, C, H, W]`, as the official code returns it; the
//! training loop reduces it as `loss.sum() · (loss_scaling / batch)` (a per-sample sum over
//! pixels, a mean over the batch).
//!
//! Augmentation: apply the augment pipe to get `(y, augment_labels)` and pass
//! `net.with_augment_labels(&augment_labels)` as the denoiser.

use super::precond::Denoiser;
use crate::error::{Error, Result};
use scorch_engine::{DType, Generator, Tensor};

/// The loss's constants.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EdmLoss {
    /// Mean of ln σ (−1.2).
    pub p_mean: f64,
    /// Standard deviation of ln σ (1.2).
    pub p_std: f64,
    /// σ_d (0.5).
    pub sigma_data: f64,
}

impl Default for EdmLoss {
    fn default() -> Self {
        EdmLoss { p_mean: -1.2, p_std: 1.2, sigma_data: 0.5 }
    }
}

impl EdmLoss {
    /// Per-sample noise levels `σ = exp(P_mean + P_std·n)`, `n ~ N(0, 1)`, shape `[B, 1, 1, 1]`.
    pub fn sample_sigma(&self, batch: usize, dtype: DType, gen: &Generator) -> Result<Tensor> {
        let n = Tensor::randn(&[batch, 1, 1, 1], dtype, gen)?;
        Ok(n.affine(self.p_std, self.p_mean)?.exp()?)
    }

    /// The loss weight `λ(σ) = (σ² + σ_d²) / (σ·σ_d)²`, elementwise.
    pub fn weight(&self, sigma: &Tensor) -> Result<Tensor> {
        let sd2 = self.sigma_data * self.sigma_data;
        Ok(sigma.sqr()?.add_scalar(sd2)?.div(&sigma.sqr()?.mul_scalar(sd2)?)?)
    }

    /// `λ(σ)` at one noise level.
    pub fn weight_at(&self, sigma: f64) -> f64 {
        let sd2 = self.sigma_data * self.sigma_data;
        (sigma * sigma + sd2) / (sigma * sigma * sd2)
    }

    /// The elementwise loss `λ(σ)·(D(y + σ·n; σ, labels) − y)²` `[B, C, H, W]` for clean
    /// images `y [B, C, H, W]`, drawing σ and then the noise from `gen`.
    pub fn loss(
        &self,
        net: &impl Denoiser,
        images: &Tensor,
        labels: Option<&Tensor>,
        gen: &Generator,
    ) -> Result<Tensor> {
        if images.rank() != 4 {
            return Err(Error::Config(format!("EDM loss: images {:?} must be [B, C, H, W]", images.shape())));
        }
        let sigma = self.sample_sigma(images.shape()[0], images.dtype(), gen)?;
        self.loss_at(net, images, &sigma, labels, gen)
    }

    /// The elementwise loss at given noise levels `sigma [B, 1, 1, 1]` (the noise `n` still
    /// drawn from `gen`).
    pub fn loss_at(
        &self,
        net: &impl Denoiser,
        images: &Tensor,
        sigma: &Tensor,
        labels: Option<&Tensor>,
        gen: &Generator,
    ) -> Result<Tensor> {
        let weight = self.weight(sigma)?;
        let n = Tensor::randn(images.shape(), images.dtype(), gen)?.mul(sigma)?;
        let denoised = net.denoise(&images.add(&n)?, &sigma.reshape(&[sigma.numel()])?, labels)?;
        Ok(weight.mul(&denoised.cast(images.dtype())?.sub(images)?.sqr()?)?)
    }
}
