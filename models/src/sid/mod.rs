//! Score identity Distillation: SiD (Zhou et al., ICML 2024), SiDA and SiD²A (ICLR 2025),
//! following the official `mingyuanzhou/SiD` code (spec `edm-sid.md` §3–4).
//!
//! A pretrained EDM teacher `f_φ` is distilled into a one-step generator
//! `G_θ(z) = D_θ(σ_init·z; σ_init)` (initialised from the teacher) with the help of a fake
//! score network `f_ψ` (also initialised from the teacher) that tracks the generator's
//! distribution. Each iteration takes one fake-score step and then one generator step:
//!
//! - [`loss`]: the fake-score loss (EDM's loss on generator samples), the generator loss
//!   (the fused score-identity op, normaliser detached) and SiDA's discriminator terms
//!   (the fake network's encoder, channel-mean logits, no new parameters).
//! - [`distill`]: the [`Distiller`] holding the three networks, both Adam optimizers
//!   (β1 = 0), the generator's EMA and the iteration counter, with checkpoints that
//!   resume bit-for-bit.
//! - [`train`]: the Fashion-MNIST front end behind `scorch distill`.
//! - [`toy`]: 2-D toy distillation (a teacher on a toy set, then SiD / SiDA).
//!
//! Networks are anything implementing [`DistillNet`]: EDM's [`EdmPrecond`] and the MLP
//! [`ToyDenoiser`].

pub mod distill;
pub mod loss;
pub mod quickstart;
pub mod toy;
pub mod train;

pub use distill::{DistillConfig, Distiller, Method, MicroBatch, StepStats};
pub use loss::SidLoss;

use crate::edm::toy::ToyDenoiser;
use crate::edm::{Denoiser, EdmPrecond};
use crate::error::Result;
use crate::params::ParamStore;
use scorch_engine::Tensor;

/// A denoiser SiD can distil: it owns its parameters and exposes the encoder logits SiDA
/// uses as a discriminator.
pub trait DistillNet: Denoiser {
    /// The store holding its parameters (train/eval flag, dropout stream, checkpoints).
    fn store(&self) -> &ParamStore;

    /// `(D(x; σ, c) if decode, discriminator logits)` from one pass.
    fn denoise_and_logits(
        &self,
        x: &Tensor,
        sigma: &Tensor,
        class_labels: Option<&Tensor>,
        decode: bool,
    ) -> Result<(Option<Tensor>, Tensor)>;
}

impl DistillNet for EdmPrecond {
    fn store(&self) -> &ParamStore {
        EdmPrecond::store(self)
    }

    fn denoise_and_logits(
        &self,
        x: &Tensor,
        sigma: &Tensor,
        class_labels: Option<&Tensor>,
        decode: bool,
    ) -> Result<(Option<Tensor>, Tensor)> {
        EdmPrecond::denoise_and_logits(self, x, sigma, class_labels, None, decode)
    }
}

impl DistillNet for ToyDenoiser {
    fn store(&self) -> &ParamStore {
        ToyDenoiser::store(self)
    }

    fn denoise_and_logits(
        &self,
        x: &Tensor,
        sigma: &Tensor,
        _class_labels: Option<&Tensor>,
        decode: bool,
    ) -> Result<(Option<Tensor>, Tensor)> {
        ToyDenoiser::denoise_and_logits(self, x, sigma, decode)
    }
}
