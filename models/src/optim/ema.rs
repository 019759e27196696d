//! Exponential moving average of parameters.

use super::{check_params, span};
use crate::error::{Error, Result};
use crate::params::list;
use scorch_engine::backend::ema_update_storage;
use scorch_engine::safetensors_io::RawTensor;
use scorch_engine::{no_grad, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// The name prefix of EMA weights in checkpoints.
pub const EMA_PREFIX: &str = "ema.";

/// An exponential moving average `shadow ← β·shadow + (1−β)·param` of a list of
/// parameters, updated in place by a fused kernel. Shadows start as copies of the
/// parameters.
pub struct Ema {
    beta: f64,
    /// `(name, live parameter, shadow)`.
    entries: Vec<(String, Tensor, Tensor)>,
}

impl Ema {
    /// An average with decay `beta ∈ [0, 1]` per update.
    pub fn new(params: impl IntoIterator<Item = (String, Tensor)>, beta: f64) -> Result<Ema> {
        check_beta(beta)?;
        let _ng = no_grad();
        let entries = check_params("EMA", params)?
            .into_iter()
            .map(|(name, p)| {
                let shadow = p.copy()?;
                Ok((name, p, shadow))
            })
            .collect::<Result<_>>()?;
        Ok(Ema { beta, entries })
    }

    /// An average whose weights halve every `half_life_images` training images, updated
    /// once per batch of `batch_size` (EDM's `ema_halflife_kimg` rule, see
    /// [`Ema::beta_from_half_life`]).
    pub fn from_half_life_images(
        params: impl IntoIterator<Item = (String, Tensor)>,
        half_life_images: f64,
        batch_size: usize,
    ) -> Result<Ema> {
        Ema::new(params, Ema::beta_from_half_life(half_life_images, batch_size))
    }

    /// β = 0.5^(batch_size / half_life_images), floored at 1e-8 images as EDM does
    /// (`training_loop.py`: `ema_beta = 0.5 ** (batch_size / max(ema_halflife_nimg, 1e-8))`).
    pub fn beta_from_half_life(half_life_images: f64, batch_size: usize) -> f64 {
        0.5f64.powf(batch_size as f64 / half_life_images.max(1e-8))
    }

    /// EDM's β with its ramp-up: the half-life is capped at `images_seen · rampup_ratio`,
    /// so early in training the average follows the parameters closely.
    pub fn edm_beta(half_life_images: f64, batch_size: usize, images_seen: u64, rampup_ratio: Option<f64>) -> f64 {
        let half_life = match rampup_ratio {
            Some(r) => half_life_images.min(images_seen as f64 * r),
            None => half_life_images,
        };
        Ema::beta_from_half_life(half_life, batch_size)
    }

    /// The decay per update.
    pub fn beta(&self) -> f64 {
        self.beta
    }

    /// Changes the decay (for ramp-ups).
    pub fn set_beta(&mut self, beta: f64) -> Result<()> {
        check_beta(beta)?;
        self.beta = beta;
        Ok(())
    }

    /// Moves every shadow towards its parameter with the current β.
    pub fn update(&mut self) -> Result<()> {
        let _ng = no_grad();
        for (name, p, shadow) in &self.entries {
            let (sr, pr) = (span(shadow), span(p));
            let beta = self.beta;
            // One `?` per buffer lock taken (shadow, parameter); the kernel's result is mapped below.
            shadow
                .with_storage_mut(|ss, _| p.with_storage(|ps, _| ema_update_storage((ss, sr), (ps, pr), beta)))??
                .map_err(|e| Error::Param { name: name.clone(), detail: format!("EMA update: {e}") })?;
        }
        Ok(())
    }

    /// `(name, shadow)` pairs, in the order given at construction.
    pub fn shadows(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.entries.iter().map(|(n, _, s)| (n.as_str(), s))
    }

    /// The shadow of parameter `name`.
    pub fn shadow(&self, name: &str) -> Option<&Tensor> {
        self.entries.iter().find(|(n, _, _)| n == name).map(|(_, _, s)| s)
    }

    /// Exchanges the values of the parameters and their shadows: call it to evaluate with
    /// the averaged weights, and again to continue training.
    pub fn swap(&self) -> Result<()> {
        let _ng = no_grad();
        for (_, p, shadow) in &self.entries {
            let live = p.copy()?;
            p.assign(shadow)?;
            shadow.assign(&live)?;
        }
        Ok(())
    }

    /// The shadows as tensors named `ema.<param name>`.
    pub fn state_tensors(&self) -> Result<Vec<RawTensor>> {
        self.entries
            .iter()
            .map(|(n, _, s)| {
                Ok(RawTensor::new(format!("{EMA_PREFIX}{n}"), s.dtype(), s.shape().to_vec(), s.to_bytes()?))
            })
            .collect()
    }

    /// Restores shadows saved by [`Ema::state_tensors`]; tensors not starting with `ema.`
    /// are ignored, the `ema.` ones must match exactly. `path` only labels errors.
    pub fn load_state_tensors(&mut self, raw: &[RawTensor], path: &Path) -> Result<()> {
        let by_name: HashMap<&str, &RawTensor> =
            raw.iter().filter_map(|r| r.name.strip_prefix(EMA_PREFIX).map(|n| (n, r))).collect();
        let mut problems = Vec::new();
        let mut missing = Vec::new();
        for (n, _, s) in &self.entries {
            match by_name.get(n.as_str()) {
                None => missing.push(format!("{EMA_PREFIX}{n}")),
                Some(r) if r.shape != s.shape() || r.dtype != s.dtype() => problems.push(format!(
                    "`{EMA_PREFIX}{n}` is {} {:?} in the file, expected {} {:?}",
                    r.dtype,
                    r.shape,
                    s.dtype(),
                    s.shape()
                )),
                Some(_) => {}
            }
        }
        let mut unexpected: Vec<String> = by_name
            .keys()
            .filter(|k| !self.entries.iter().any(|(n, _, _)| n == *k))
            .map(|k| format!("{EMA_PREFIX}{k}"))
            .collect();
        unexpected.sort();
        if !missing.is_empty() {
            problems.push(format!("EMA weights missing from the file: {}", list(&missing)));
        }
        if !unexpected.is_empty() {
            problems.push(format!("EMA weights for no averaged parameter: {}", list(&unexpected)));
        }
        if !problems.is_empty() {
            return Err(Error::Checkpoint { path: path.to_path_buf(), detail: problems.join("; ") });
        }
        let _ng = no_grad();
        for (n, _, s) in &self.entries {
            let r = by_name[n.as_str()];
            s.assign(&Tensor::from_bytes(&r.data, r.dtype, &r.shape)?)?;
        }
        Ok(())
    }
}

fn check_beta(beta: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&beta) {
        return Err(Error::Config(format!("EMA decay {beta} outside [0, 1]")));
    }
    Ok(())
}
