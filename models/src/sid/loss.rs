//! The SiD and SiDA losses (spec `edm-sid.md` §3.2–3.4 and §4.2–4.3), written against any
//! [`DistillNet`]. Each returns per-sample values (`[B]`) so the caller scales and sums
//! them as the official loop does (`Σ · ls / B`).

use super::DistillNet;
use crate::edm::{ClassifierFreeGuidance, Denoiser, EdmLoss};
use crate::error::{Error, Result};
use scorch_engine::ops::fused::{sid_fake_score_loss, sid_generator_loss_weighted};
use scorch_engine::{no_grad, DType, Generator, Tensor};

/// The constants of SiD's losses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SidLoss {
    /// α of the generator loss (upstream default 1.2; SiDA uses 1.0).
    pub alpha: f64,
    /// σ_init: the generator is `D_θ(σ_init·z; σ_init)` (upstream 2.5).
    pub sigma_init: f64,
    /// Upper end of the generator loss's t ∈ [0, t_max] as a fraction (upstream
    /// `tmax = 800` of 1000 → 0.8).
    pub t_max: f64,
    /// σ_min of the t → σ map (0.002).
    pub sigma_min: f64,
    /// σ_max of the t → σ map (80).
    pub sigma_max: f64,
    /// ρ of the t → σ map (7).
    pub rho: f64,
    /// The EDM loss the fake-score network is trained with (log-normal σ, λ(σ)).
    pub edm: EdmLoss,
    /// SiD-LSG κ₁: classifier-free guidance of the fake network's own output in its
    /// training loss (spec §5.4; 1 = none). Needs class labels and label dropout.
    pub guidance_fake_train: f64,
    /// SiD-LSG κ₂ = κ₃: guidance of the fake network in the generator loss (§5.5).
    pub guidance_fake_eval: f64,
    /// SiD-LSG κ₄: guidance of the teacher in the generator loss (§5.5).
    pub guidance_teacher: f64,
}

impl Default for SidLoss {
    fn default() -> Self {
        SidLoss {
            alpha: 1.2,
            sigma_init: 2.5,
            t_max: 0.8,
            sigma_min: 0.002,
            sigma_max: 80.0,
            rho: 7.0,
            edm: EdmLoss::default(),
            guidance_fake_train: 1.0,
            guidance_fake_eval: 1.0,
            guidance_teacher: 1.0,
        }
    }
}

/// What the generator loss hands back besides its value: the per-sample normaliser `w`
/// (detached) and the denoised outputs, for SiDA's adversarial term and for logging.
pub struct GeneratorTerms {
    /// Per-sample SiD loss, summed over the sample's elements: `[B']` (B' ≤ B after the
    /// NaN filter).
    pub loss: Tensor,
    /// `w = 1/max(mean|x_g − y_real|, 1e-5)` per kept sample, `[B']`, detached.
    pub weight: Tensor,
    /// SiDA: the fake-score network's encoder logits on `x_t` (kept samples).
    pub logits: Option<Tensor>,
    /// Samples dropped because they held NaN.
    pub dropped: usize,
}

impl SidLoss {
    /// σ(t) = (σ_max^(1/ρ) + (1 − t)(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ (σ(0) = σ_min, σ(0.8) ≈
    /// 24.41).
    pub fn sigma_at(&self, t: f64) -> f64 {
        let (lo, hi) = (self.sigma_min.powf(1.0 / self.rho), self.sigma_max.powf(1.0 / self.rho));
        (hi + (1.0 - t) * (lo - hi)).powf(self.rho)
    }

    /// The generator loss's noise levels: `t = u·t_max`, `u ~ U(0, 1)`, as `[B, 1, 1, 1]`.
    pub fn sample_generator_sigma(&self, batch: usize, dtype: DType, gen: &Generator) -> Result<Tensor> {
        let u = Tensor::rand(&[batch], DType::F64, gen)?.to_vec_f64()?;
        let s: Vec<f64> = u.iter().map(|&u| self.sigma_at(u * self.t_max)).collect();
        Ok(Tensor::from_f64s(&s, &[batch, 1, 1, 1], dtype)?)
    }

    /// The one-step generator `x_g = D_θ(σ_init·z; σ_init, c)`.
    pub fn generate(&self, g: &impl Denoiser, z: &Tensor, labels: Option<&Tensor>) -> Result<Tensor> {
        let s = Tensor::from_f64s(&[self.sigma_init], &[1], z.dtype())?;
        g.denoise(&z.mul_scalar(self.sigma_init)?, &s, labels)
    }

    /// The fake-score loss (§3.3) on generator samples `x_g` (treated as data, so pass
    /// them detached): `λ(σ)·‖f_ψ(x_g + σn; σ) − x_g‖²` summed per sample, `[B']`, with
    /// samples holding NaN dropped. With `real = Some(x_real)` (SiDA, §4.2) it also
    /// returns the discriminator loss `Σ_i λ(σ_i)·(BCE_r + BCE_f)/2` (a scalar): the
    /// encoder sees the fakes and the real images noised with the same σ and noise.
    pub fn fake_score_loss(
        &self,
        fake: &impl DistillNet,
        x_g: &Tensor,
        labels: Option<&Tensor>,
        real: Option<&Tensor>,
        gen: &Generator,
    ) -> Result<(Tensor, Option<Tensor>)> {
        check_images("fake-score loss", x_g)?;
        let b = x_g.shape()[0];
        let sigma = self.edm.sample_sigma(b, x_g.dtype(), gen)?;
        let n = Tensor::randn(x_g.shape(), x_g.dtype(), gen)?.mul(&sigma)?;
        let sig = sigma.reshape(&[b])?;
        let lambda: Vec<f64> = sig.to_vec_f64()?.iter().map(|&s| self.edm.weight_at(s)).collect();
        let guided = labels.is_some() && self.guidance_fake_train != 1.0;
        if guided && real.is_some() {
            return Err(Error::Config("SiDA with SiD-LSG guidance (κ₁ ≠ 1) is not supported".into()));
        }
        let (denoised, logits_fake) = if guided {
            let d = ClassifierFreeGuidance::new(fake, self.guidance_fake_train).denoise(&x_g.add(&n)?, &sig, labels)?;
            (d, None)
        } else {
            let (d, l) = fake.denoise_and_logits(&x_g.add(&n)?, &sig, labels, true)?;
            (d.expect("decoded"), Some(l))
        };
        let denoised = denoised.cast(x_g.dtype())?;
        let keep = finite_rows(&[&denoised, x_g])?;
        let loss = match &keep {
            None => sid_fake_score_loss(&denoised, x_g, &lambda)?,
            Some(k) => {
                let lam: Vec<f64> = k.iter().map(|&i| lambda[i]).collect();
                let idx = index(k)?;
                sid_fake_score_loss(&denoised.index_select(0, &idx)?, &x_g.index_select(0, &idx)?, &lam)?
            }
        };
        let Some(real) = real else { return Ok((loss, None)) };
        if real.shape() != x_g.shape() {
            return Err(Error::Config(format!(
                "SiDA: real images {:?} must match the generated ones {:?}",
                real.shape(),
                x_g.shape()
            )));
        }
        let logits_fake = logits_fake.expect("unguided");
        let (_, logits_real) = fake.denoise_and_logits(&real.cast(x_g.dtype())?.add(&n)?, &sig, labels, false)?;
        // BCE-with-logits means over the (micro-)batch and the logit map.
        let bce_real = logits_real.neg()?.softplus()?.mean_all()?;
        let bce_fake = logits_fake.softplus()?.mean_all()?;
        let lambda_sum: f64 = lambda.iter().sum();
        let disc = bce_real.add(&bce_fake)?.mul_scalar(0.5 * lambda_sum)?;
        Ok((loss, Some(disc)))
    }

    /// The generator loss (§3.4) for `x_g = G(z)` (with its graph): σ from the t_max
    /// schedule, `x_t = x_g + σn` fed to the teacher and the fake-score network, the fused
    /// score-identity loss with the detached normaliser. `with_logits` also returns the
    /// fake network's encoder logits on `x_t` (SiDA).
    pub fn generator_loss(
        &self,
        teacher: &impl DistillNet,
        fake: &impl DistillNet,
        x_g: &Tensor,
        labels: Option<&Tensor>,
        with_logits: bool,
        gen: &Generator,
    ) -> Result<GeneratorTerms> {
        check_images("generator loss", x_g)?;
        let b = x_g.shape()[0];
        let sigma = self.sample_generator_sigma(b, x_g.dtype(), gen)?;
        let x_t = x_g.add(&Tensor::randn(x_g.shape(), x_g.dtype(), gen)?.mul(&sigma)?)?;
        let sig = sigma.reshape(&[b])?;
        let y_real = ClassifierFreeGuidance::new(teacher, self.guidance_teacher).denoise(&x_t, &sig, labels)?;
        let y_real = y_real.cast(x_g.dtype())?;
        let (y_fake, logits) = if labels.is_some() && self.guidance_fake_eval != 1.0 {
            if with_logits {
                return Err(Error::Config("SiDA with SiD-LSG guidance (κ₂ ≠ 1) is not supported".into()));
            }
            let b = x_t.shape()[0];
            let d = ClassifierFreeGuidance::new(fake, self.guidance_fake_eval).denoise(&x_t, &sig, labels)?;
            (d, Tensor::zeros(&[b, 1], DType::F32)?)
        } else {
            let (d, l) = fake.denoise_and_logits(&x_t, &sig, labels, true)?;
            (d.expect("decoded"), l)
        };
        let y_fake = y_fake.cast(x_g.dtype())?;
        let keep = finite_rows(&[x_g, &y_real, &y_fake])?;
        let (y_real, y_fake, x_g, logits, dropped) = match &keep {
            None => (y_real, y_fake, x_g.clone(), logits, 0),
            Some(k) => {
                let idx = index(k)?;
                (
                    y_real.index_select(0, &idx)?,
                    y_fake.index_select(0, &idx)?,
                    x_g.index_select(0, &idx)?,
                    logits.index_select(0, &idx)?,
                    b - k.len(),
                )
            }
        };
        let weight = {
            let _ng = no_grad();
            let rest: Vec<isize> = (1..x_g.rank() as isize).collect();
            let kept = x_g.shape()[0];
            x_g.sub(&y_real)?.abs()?.mean(&rest, false)?.clamp(1e-5, f64::INFINITY)?.reciprocal()?.reshape(&[kept])?
        };
        let loss = sid_generator_loss_weighted(&y_real, &y_fake, &x_g, self.alpha, Some(&weight))?;
        Ok(GeneratorTerms { loss, weight, logits: with_logits.then_some(logits), dropped })
    }
}

fn check_images(what: &str, x: &Tensor) -> Result<()> {
    if x.rank() != 4 || x.shape()[0] == 0 {
        return Err(Error::Config(format!("SiD {what}: samples {:?} must be a non-empty [B, C, H, W]", x.shape())));
    }
    Ok(())
}

/// `None` when every row of every tensor is finite, else the indices of the finite rows.
/// Only per-row sums (accumulated in f64, so a finite f32 row cannot overflow) leave the
/// kernels: a row sum is non-finite exactly when the row holds a NaN or an infinity.
fn finite_rows(ts: &[&Tensor]) -> Result<Option<Vec<usize>>> {
    let b = ts[0].shape()[0];
    let mut ok = vec![true; b];
    for t in ts {
        let sums = t.detach().reshape(&[b, t.numel() / b.max(1)])?.sum(&[1], false)?.to_vec_f64()?;
        for (k, s) in ok.iter_mut().zip(sums) {
            *k &= s.is_finite();
        }
    }
    if ok.iter().all(|&k| k) {
        return Ok(None);
    }
    Ok(Some((0..b).filter(|&i| ok[i]).collect()))
}

fn index(k: &[usize]) -> Result<Tensor> {
    Ok(Tensor::from_vec(k.iter().map(|&i| i as i64).collect::<Vec<i64>>(), &[k.len()])?)
}
