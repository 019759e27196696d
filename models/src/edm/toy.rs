//! A small EDM denoiser for low-dimensional data (the 2-D toys): the preconditioning of
//! [`EdmPrecond`](super::EdmPrecond) around an MLP instead of a U-Net.
//!
//! Points are carried as `[B, D, 1, 1]` "images", so the EDM loss, the Heun sampler and the
//! SiD losses run on them unchanged. `F(c_in·x, c_noise)` is an MLP on the concatenation
//! of `c_in·x` and a sinusoidal embedding of `c_noise = ln σ / 4`; its hidden layers use
//! SiLU. The first half of the hidden layers is the "encoder" whose channel mean SiDA uses
//! as its discriminator logit, as the U-Net's encoder is for images.

use super::precond::{coefficient_tensors, Coefficients, Denoiser};
use crate::error::{Error, Result};
use crate::nn::{Linear, Module};
use crate::params::{ParamPath, ParamStore};
use scorch_engine::{DType, Tensor};

/// The MLP's shape.
#[derive(Clone, Debug, PartialEq)]
pub struct ToyConfig {
    /// Data dimension (2 for the toys).
    pub dim: usize,
    /// Hidden width.
    pub hidden: usize,
    /// Hidden layers (≥ 2; the first `hidden_layers / 2` form the encoder).
    pub hidden_layers: usize,
    /// Frequencies of the noise embedding (its width is twice this).
    pub noise_freqs: usize,
    /// σ_d of the data (the toys are scaled to roughly unit variance).
    pub sigma_data: f64,
}

impl Default for ToyConfig {
    fn default() -> Self {
        ToyConfig { dim: 2, hidden: 128, hidden_layers: 4, noise_freqs: 8, sigma_data: 1.0 }
    }
}

/// `D(x; σ) = c_skip·x + c_out·F(c_in·x, c_noise)` with an MLP `F`.
///
/// ```
/// use scorch_models::edm::toy::{ToyConfig, ToyDenoiser};
/// use scorch_models::edm::Denoiser;
/// use scorch_models::params::ParamStore;
/// use scorch_engine::{DType, Tensor};
///
/// let store = ParamStore::new(DType::F32, 0);
/// let net = ToyDenoiser::new(&store.root(), &ToyConfig::default())?;
/// let x = Tensor::zeros(&[5, 2, 1, 1], DType::F32)?;
/// let d = net.denoise(&x, &Tensor::from_f64s(&[0.5], &[1], DType::F32)?, None)?;
/// assert_eq!(d.shape(), [5, 2, 1, 1]);
/// # Ok::<(), scorch_models::Error>(())
/// ```
pub struct ToyDenoiser {
    cfg: ToyConfig,
    layers: Vec<Linear>,
    out: Linear,
    store: ParamStore,
}

impl ToyDenoiser {
    /// Builds the MLP under `p` (`layers.<i>`, `out`) with PyTorch's `nn.Linear` init.
    pub fn new(p: &ParamPath, cfg: &ToyConfig) -> Result<ToyDenoiser> {
        if cfg.dim == 0 || cfg.hidden == 0 || cfg.hidden_layers < 2 || cfg.noise_freqs == 0 {
            return Err(Error::Config(format!(
                "toy denoiser: need dim, hidden, noise_freqs > 0 and hidden_layers ≥ 2, got {cfg:?}"
            )));
        }
        if cfg.sigma_data.is_nan() || cfg.sigma_data <= 0.0 {
            return Err(Error::Config(format!("toy denoiser: σ_d must be positive, got {}", cfg.sigma_data)));
        }
        let mut layers = Vec::new();
        let mut width = cfg.dim + 2 * cfg.noise_freqs;
        for i in 0..cfg.hidden_layers {
            layers.push(Linear::new(&p.pp(format!("layers.{i}")), width, cfg.hidden)?);
            width = cfg.hidden;
        }
        let out = Linear::new(&p.pp("out"), cfg.hidden, cfg.dim)?;
        Ok(ToyDenoiser { cfg: cfg.clone(), layers, out, store: p.store().clone() })
    }

    /// The configuration.
    pub fn config(&self) -> &ToyConfig {
        &self.cfg
    }

    /// The store holding its parameters.
    pub fn store(&self) -> &ParamStore {
        &self.store
    }

    /// The coefficients at `sigma`.
    pub fn coefficients(&self, sigma: f64) -> Coefficients {
        Coefficients::new(sigma, self.cfg.sigma_data)
    }

    /// `(D(x; σ) if decode, logits [B, 1])`, the logits being the mean over the features
    /// of the encoder (the first half of the hidden layers).
    pub fn denoise_and_logits(&self, x: &Tensor, sigma: &Tensor, decode: bool) -> Result<(Option<Tensor>, Tensor)> {
        let d = self.cfg.dim;
        if x.rank() != 4 || x.shape()[1] != d || x.shape()[2] != 1 || x.shape()[3] != 1 {
            return Err(Error::Config(format!("toy denoiser: x {:?} must be [B, {d}, 1, 1]", x.shape())));
        }
        let b = x.shape()[0];
        if sigma.numel() != b && sigma.numel() != 1 {
            return Err(Error::Config(format!(
                "toy denoiser: σ {:?} must have one element or one per sample ({b})",
                sigma.shape()
            )));
        }
        let dtype = self.store.dtype();
        let x2 = x.cast(dtype)?.reshape(&[b, d])?;
        let sigma = sigma.cast(dtype)?.reshape(&[sigma.numel(), 1])?.broadcast_to(&[b, 1])?;
        let [c_skip, c_out, c_in, c_noise] = coefficient_tensors(&sigma, self.cfg.sigma_data)?;

        // Frequencies 1, 2, 4, … (× π) on c_noise ∈ roughly [−1.6, 1.1].
        let freqs: Vec<f64> = (0..self.cfg.noise_freqs).map(|k| std::f64::consts::PI * 2f64.powi(k as i32)).collect();
        let f = Tensor::from_f64s(&freqs, &[1, freqs.len()], dtype)?;
        let arg = c_noise.mul(&f)?;
        let mut h = Tensor::cat(&[x2.mul(&c_in)?, arg.sin()?, arg.cos()?], 1)?;
        let split = self.cfg.hidden_layers / 2;
        let mut enc = None;
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h)?.silu()?;
            if i + 1 == split {
                enc = Some(h.mean(&[1], true)?.cast(DType::F32)?);
                if !decode {
                    return Ok((None, enc.expect("set")));
                }
            }
        }
        let f_x = self.out.forward(&h)?;
        let den = c_skip.mul(&x2)?.add(&c_out.mul(&f_x)?)?.reshape(&[b, d, 1, 1])?;
        Ok((Some(den), enc.expect("the encoder has at least one layer")))
    }
}

impl Denoiser for ToyDenoiser {
    fn denoise(&self, x: &Tensor, sigma: &Tensor, _class_labels: Option<&Tensor>) -> Result<Tensor> {
        Ok(self.denoise_and_logits(x, sigma, true)?.0.expect("decoded"))
    }

    fn sigma_min(&self) -> f64 {
        0.002
    }

    fn sigma_max(&self) -> f64 {
        80.0
    }
}
