//! EDM's sampler (`generate.py :: edm_sampler`, spec §1.4): Heun's 2nd-order method on the
//! probability-flow ODE `dx/dσ = (x − D(x; σ))/σ`, with optional stochastic churn.
//!
//! Noise levels (ρ = 7), then `σ_N = 0`:
//! ```text
//! σ_i = (σ_max^(1/ρ) + i/(N−1)·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ,   i = 0..N−1
//! ```
//! Step i: `γ_i = min(S_churn/N, √2−1)` if `S_min ≤ σ_i ≤ S_max` else 0;
//! `σ̂ = σ_i(1+γ_i)`, `x̂ = x + √(σ̂² − σ_i²)·S_noise·ε`; Euler
//! `x' = x̂ + (σ_{i+1} − σ̂)·d`, `d = (x̂ − D(x̂; σ̂))/σ̂`; then, except on the last step,
//! Heun's correction with `d' = (x' − D(x'; σ_{i+1}))/σ_{i+1}`:
//! `x' = x̂ + (σ_{i+1} − σ̂)·(d + d')/2`. That is `2N − 1` evaluations of `D`.
//!
//! The state is kept in f64 (as the official code does) and `D` sees it cast by the
//! denoiser (EDMPrecond runs in its parameters' dtype).

use super::precond::Denoiser;
use crate::error::{Error, Result};
use scorch_engine::{no_grad, DType, Generator, Tensor};

/// The sampler's settings. The default is EDM's deterministic CIFAR-10 sampler
/// (N = 18, NFE 35); [`EdmSampler::imagenet64`] is its stochastic ImageNet-64 one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EdmSampler {
    /// N, the number of noise levels before σ_N = 0 (18).
    pub num_steps: usize,
    /// σ_min (0.002).
    pub sigma_min: f64,
    /// σ_max (80).
    pub sigma_max: f64,
    /// ρ, the curvature of the level spacing (7).
    pub rho: f64,
    /// S_churn, total stochasticity (0 = deterministic).
    pub s_churn: f64,
    /// S_min: churn only where σ_i ≥ S_min (0).
    pub s_min: f64,
    /// S_max: churn only where σ_i ≤ S_max (∞).
    pub s_max: f64,
    /// S_noise, the scale of the added noise (1).
    pub s_noise: f64,
}

impl Default for EdmSampler {
    fn default() -> Self {
        EdmSampler {
            num_steps: 18,
            sigma_min: 0.002,
            sigma_max: 80.0,
            rho: 7.0,
            s_churn: 0.0,
            s_min: 0.0,
            s_max: f64::INFINITY,
            s_noise: 1.0,
        }
    }
}

impl EdmSampler {
    /// EDM's ImageNet-64 setting: N = 256, S_churn 40, S_min 0.05, S_max 50, S_noise 1.003.
    pub fn imagenet64() -> EdmSampler {
        EdmSampler { num_steps: 256, s_churn: 40.0, s_min: 0.05, s_max: 50.0, s_noise: 1.003, ..Default::default() }
    }

    /// Number of denoiser evaluations per sample: `2N − 1`.
    pub fn nfe(&self) -> usize {
        (2 * self.num_steps).saturating_sub(1)
    }

    fn check(&self) -> Result<()> {
        let ok = self.num_steps >= 2
            && self.rho > 0.0
            && self.sigma_min > 0.0
            && self.sigma_min < self.sigma_max
            && self.sigma_max.is_finite()
            && self.s_churn >= 0.0
            && self.s_noise >= 0.0;
        if !ok {
            return Err(Error::Config(format!(
                "EDM sampler: need N ≥ 2, ρ > 0, 0 < σ_min < σ_max < ∞, S_churn ≥ 0, S_noise ≥ 0; got {self:?}"
            )));
        }
        Ok(())
    }

    /// The `N + 1` noise levels `σ_0 > … > σ_{N−1} = σ_min`, `σ_N = 0`, for a denoiser
    /// supporting `[net_sigma_min, net_sigma_max]` (σ_min, σ_max are clamped into it, and
    /// each level goes through `round_sigma`).
    pub fn time_steps(&self, net: &impl Denoiser) -> Result<Vec<f64>> {
        self.check()?;
        let sigma_min = self.sigma_min.max(net.sigma_min());
        let sigma_max = self.sigma_max.min(net.sigma_max());
        let (lo, hi) = (sigma_min.powf(1.0 / self.rho), sigma_max.powf(1.0 / self.rho));
        let n = self.num_steps;
        let mut t: Vec<f64> =
            (0..n).map(|i| net.round_sigma((hi + i as f64 / (n - 1) as f64 * (lo - hi)).powf(self.rho))).collect();
        t.push(0.0);
        Ok(t)
    }

    /// Draws samples from `latents` (`z ~ N(0, I)`, `[B, C, H, W]`; scaled by σ_0 here):
    /// runs the sampler under `no_grad` and returns the final `x` in f64 (images in
    /// [−1, 1] for EDM's networks). `class_labels` are passed to every evaluation; `gen`
    /// supplies the churn noise (drawn only on steps with γ_i > 0).
    pub fn sample(
        &self,
        net: &impl Denoiser,
        latents: &Tensor,
        class_labels: Option<&Tensor>,
        gen: &Generator,
    ) -> Result<Tensor> {
        let _g = no_grad();
        let t_steps = self.time_steps(net)?;
        let n = self.num_steps;
        let sigma = |s: f64| Tensor::full(&[1], s, DType::F64);
        let denoise =
            |x: &Tensor, s: f64| -> Result<Tensor> { Ok(net.denoise(x, &sigma(s)?, class_labels)?.cast(DType::F64)?) };

        let mut x_next = latents.cast(DType::F64)?.mul_scalar(t_steps[0])?;
        for (i, w) in t_steps.windows(2).enumerate() {
            let (t_cur, t_next) = (w[0], w[1]);
            let x_cur = x_next;

            // Temporarily increase the noise level ("churn").
            let gamma = if self.s_min <= t_cur && t_cur <= self.s_max {
                (self.s_churn / n as f64).min(std::f64::consts::SQRT_2 - 1.0)
            } else {
                0.0
            };
            let t_hat = net.round_sigma(t_cur + gamma * t_cur);
            let x_hat = if t_hat > t_cur {
                let eps = Tensor::randn(x_cur.shape(), DType::F64, gen)?;
                x_cur.add(&eps.mul_scalar((t_hat * t_hat - t_cur * t_cur).sqrt() * self.s_noise)?)?
            } else {
                x_cur
            };

            // Euler step.
            let d_cur = x_hat.sub(&denoise(&x_hat, t_hat)?)?.mul_scalar(1.0 / t_hat)?;
            x_next = x_hat.add(&d_cur.mul_scalar(t_next - t_hat)?)?;

            // 2nd-order correction, except into σ_N = 0.
            if i < n - 1 {
                let d_prime = x_next.sub(&denoise(&x_next, t_next)?)?.mul_scalar(1.0 / t_next)?;
                x_next = x_hat.add(&d_cur.add(&d_prime)?.mul_scalar(0.5 * (t_next - t_hat))?)?;
            }
        }
        Ok(x_next)
    }
}

/// `clip(x·127.5 + 128, 0, 255)` as bytes in the order of `x` (EDM's image output, for
/// images in [−1, 1]).
pub fn to_uint8(x: &Tensor) -> Result<Vec<u8>> {
    Ok(x.to_vec_f64()?.into_iter().map(|v| (v * 127.5 + 128.0).clamp(0.0, 255.0) as u8).collect())
}
