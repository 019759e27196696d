//! EDM's preconditioned denoiser (`EDMPrecond`, spec §1.1):
//!
//! ```text
//! D(x; σ, c) = c_skip(σ)·x + c_out(σ)·F(c_in(σ)·x, c_noise(σ), c)
//! c_skip = σ_d² / (σ² + σ_d²)    c_out = σ·σ_d / √(σ² + σ_d²)
//! c_in   = 1 / √(σ² + σ_d²)      c_noise = ln(σ) / 4             σ_d = 0.5
//! ```
//!
//! `D` predicts the clean image from `x = x₀ + σ·ε`; the score is `(D − x)/σ²`.

use super::layers::Scope;
use super::networks::{UNet, UNetConfig};
use crate::error::{Error, Result};
use crate::params::{list, ParamPath, ParamStore};
use scorch_engine::safetensors_io::{self, RawTensor};
use scorch_engine::{no_grad, DType, Tensor};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// [`Coefficients`] as differentiable tensors of `sigma`'s shape:
/// `[c_skip, c_out, c_in, c_noise]` for data of standard deviation `sigma_data`.
pub fn coefficient_tensors(sigma: &Tensor, sigma_data: f64) -> Result<[Tensor; 4]> {
    let sd2 = sigma_data * sigma_data;
    let s2_plus_sd2 = sigma.sqr()?.add_scalar(sd2)?;
    let c_skip = s2_plus_sd2.reciprocal()?.mul_scalar(sd2)?;
    let c_out = sigma.mul_scalar(sigma_data)?.mul(&s2_plus_sd2.rsqrt()?)?;
    let c_in = s2_plus_sd2.rsqrt()?;
    let c_noise = sigma.log()?.mul_scalar(0.25)?;
    Ok([c_skip, c_out, c_in, c_noise])
}

/// A denoiser `D(x; σ, c)` as the sampler and the loss see it: EDM's network, a guided
/// pair of evaluations, or a closed-form one (any
/// `Fn(&Tensor, &Tensor, Option<&Tensor>) -> Result<Tensor>` is one).
pub trait Denoiser {
    /// `D(x; σ, class_labels)`: `x [B, C, H, W]` (any float dtype), `σ` with `B` or one
    /// element, optional one-hot labels `[B or 1, label_dim]`. Returns the denoised
    /// `[B, C, H, W]`.
    fn denoise(&self, x: &Tensor, sigma: &Tensor, class_labels: Option<&Tensor>) -> Result<Tensor>;

    /// The smallest noise level it supports (the sampler clamps σ_min to it).
    fn sigma_min(&self) -> f64 {
        0.0
    }

    /// The largest noise level it supports (the sampler clamps σ_max to it).
    fn sigma_max(&self) -> f64 {
        f64::INFINITY
    }

    /// Maps a noise level to one it supports (the identity for EDM).
    fn round_sigma(&self, sigma: f64) -> f64 {
        sigma
    }
}

impl<F: Fn(&Tensor, &Tensor, Option<&Tensor>) -> Result<Tensor>> Denoiser for F {
    fn denoise(&self, x: &Tensor, sigma: &Tensor, class_labels: Option<&Tensor>) -> Result<Tensor> {
        self(x, sigma, class_labels)
    }
}

/// The preconditioning coefficients at one noise level.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Coefficients {
    /// `σ_d² / (σ² + σ_d²)`: how much of the input is kept.
    pub c_skip: f64,
    /// `σ·σ_d / √(σ² + σ_d²)`: the scale of the network output.
    pub c_out: f64,
    /// `1 / √(σ² + σ_d²)`: the input scaling to unit variance.
    pub c_in: f64,
    /// `ln(σ) / 4`: the noise label the network is conditioned on.
    pub c_noise: f64,
}

impl Coefficients {
    /// The coefficients at `sigma` for data standard deviation `sigma_data`.
    pub fn new(sigma: f64, sigma_data: f64) -> Coefficients {
        let (s2, d2) = (sigma * sigma, sigma_data * sigma_data);
        Coefficients {
            c_skip: d2 / (s2 + d2),
            c_out: sigma * sigma_data / (s2 + d2).sqrt(),
            c_in: 1.0 / (s2 + d2).sqrt(),
            c_noise: sigma.ln() / 4.0,
        }
    }
}

/// EDMPrecond's constructor arguments: the U-Net (whose config carries the resolution,
/// channels and `label_dim`) and the noise model.
#[derive(Clone, Debug, PartialEq)]
pub struct EdmConfig {
    /// The wrapped network `F`.
    pub unet: UNetConfig,
    /// σ_d, the data's standard deviation (0.5 for images in [−1, 1]).
    pub sigma_data: f64,
    /// Smallest supported σ (0).
    pub sigma_min: f64,
    /// Largest supported σ (∞).
    pub sigma_max: f64,
}

impl EdmConfig {
    /// EDM's defaults around `unet`: σ_d = 0.5, σ ∈ [0, ∞).
    pub fn new(unet: UNetConfig) -> EdmConfig {
        EdmConfig { unet, sigma_data: 0.5, sigma_min: 0.0, sigma_max: f64::INFINITY }
    }
}

/// The preconditioned denoiser `D(x; σ, c)` around a U-Net `F` stored under `model.`
/// (so every key of an official teacher, `model.enc.32x32_conv.weight`, …, matches).
///
/// ```
/// use scorch_models::edm::{presets, EdmPrecond};
/// use scorch_models::params::ParamStore;
/// use scorch_engine::{DType, Tensor};
///
/// let store = ParamStore::new(DType::F32, 0);
/// let net = EdmPrecond::new(&store.root(), &presets::fashion_mnist(false))?;
/// let x = Tensor::zeros(&[2, 1, 32, 32], DType::F32)?;
/// let d = net.forward(&x, &Tensor::from_f64s(&[0.5, 2.0], &[2], DType::F32)?, None, None)?;
/// assert_eq!(d.shape(), [2, 1, 32, 32]);
/// # Ok::<(), scorch_models::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct EdmPrecond {
    cfg: EdmConfig,
    model: UNet,
    scope: Scope,
}

impl EdmPrecond {
    /// Builds the network under `p.model` with EDM's random initialisation.
    pub fn new(p: &ParamPath, cfg: &EdmConfig) -> Result<EdmPrecond> {
        EdmPrecond::build(Scope::new(p, false), cfg)
    }

    /// Builds it with every parameter zero (fast: for counting, or before loading a
    /// checkpoint with [`EdmPrecond::load`]).
    pub fn zeroed(p: &ParamPath, cfg: &EdmConfig) -> Result<EdmPrecond> {
        EdmPrecond::build(Scope::new(p, true), cfg)
    }

    fn build(scope: Scope, cfg: &EdmConfig) -> Result<EdmPrecond> {
        let (cin, cout) = cfg.unet.channels();
        if cin != cout {
            return Err(Error::Config(format!(
                "EDMPrecond: the U-Net maps {cin} channels to {cout}; a denoiser needs the same count"
            )));
        }
        let valid =
            cfg.sigma_data > 0.0 && cfg.sigma_data.is_finite() && cfg.sigma_min >= 0.0 && cfg.sigma_min < cfg.sigma_max;
        if !valid {
            return Err(Error::Config(format!(
                "EDMPrecond: need σ_data > 0 and 0 ≤ σ_min < σ_max, got σ_data {}, σ ∈ [{}, {}]",
                cfg.sigma_data, cfg.sigma_min, cfg.sigma_max
            )));
        }
        let model = UNet::build(&scope.pp("model"), &cfg.unet)?;
        Ok(EdmPrecond { cfg: cfg.clone(), model, scope })
    }

    /// The configuration.
    pub fn config(&self) -> &EdmConfig {
        &self.cfg
    }

    /// The wrapped U-Net `F`.
    pub fn model(&self) -> &UNet {
        &self.model
    }

    /// Number of classes (0 = unconditional).
    pub fn label_dim(&self) -> usize {
        self.cfg.unet.label_dim()
    }

    /// Image resolution.
    pub fn img_resolution(&self) -> usize {
        self.cfg.unet.img_resolution()
    }

    /// Image channels.
    pub fn img_channels(&self) -> usize {
        self.cfg.unet.channels().0
    }

    /// The parameter store the network lives in.
    pub fn store(&self) -> &ParamStore {
        self.scope.store()
    }

    /// The dtype the U-Net runs in (its parameters').
    pub fn dtype(&self) -> DType {
        self.scope.dtype()
    }

    /// The coefficients at `sigma` for this network's σ_d.
    pub fn coefficients(&self, sigma: f64) -> Coefficients {
        Coefficients::new(sigma, self.cfg.sigma_data)
    }

    /// `D(x; σ, c)`. `x [B, C, H, W]` is cast to the network's dtype (as the official code
    /// casts to fp32) and so is the result; `sigma` has `B` elements or one (shared, e.g.
    /// `[1]` or a 0-d tensor). `class_labels [B or 1, label_dim]` are one-hot rows; `None`
    /// on a conditional net means the all-zeros row (no class), and labels are ignored by
    /// an unconditional one. `augment_labels [B, augment_dim]` feed `map_augment` when the
    /// net has one (zeros = not augmented).
    pub fn forward(
        &self,
        x: &Tensor,
        sigma: &Tensor,
        class_labels: Option<&Tensor>,
        augment_labels: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (d, _) = self.forward_parts(x, sigma, class_labels, augment_labels, None)?;
        Ok(d.expect("decoded"))
    }

    /// SiDA's shared encoder (spec §4.1): `(D(x; σ, c) if decode, logits)` where the
    /// logits `[B, 1, r, r]` are the channel mean of the U-Net encoder's output, in f32.
    /// With `decode = false` only the mapping network and the encoder run.
    pub fn denoise_and_logits(
        &self,
        x: &Tensor,
        sigma: &Tensor,
        class_labels: Option<&Tensor>,
        augment_labels: Option<&Tensor>,
        decode: bool,
    ) -> Result<(Option<Tensor>, Tensor)> {
        let (d, h) = self.forward_parts(x, sigma, class_labels, augment_labels, Some(decode))?;
        let h = h.expect("the encoder output was asked for");
        Ok((d, h.mean(&[1], true)?.cast(DType::F32)?))
    }

    /// `encoder`: `None` = the denoiser alone; `Some(decode)` = the encoder output too,
    /// and the denoised image when `decode`.
    fn forward_parts(
        &self,
        x: &Tensor,
        sigma: &Tensor,
        class_labels: Option<&Tensor>,
        augment_labels: Option<&Tensor>,
        encoder: Option<bool>,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dtype = self.dtype();
        let x = x.cast(dtype)?;
        let batch = x.shape().first().copied().unwrap_or(0);
        if sigma.numel() != batch && sigma.numel() != 1 {
            return Err(Error::Config(format!(
                "EDMPrecond: σ {:?} must have one element or one per sample ({batch})",
                sigma.shape()
            )));
        }
        let sigma = sigma.cast(dtype)?.reshape(&[sigma.numel(), 1, 1, 1])?;
        let label_dim = self.label_dim();
        let zeros;
        let class_labels = match (label_dim, class_labels) {
            (0, _) => None,
            (_, Some(c)) => Some(c),
            (_, None) => {
                zeros = Tensor::zeros(&[1, label_dim], dtype)?;
                Some(&zeros)
            }
        };

        let [c_skip, c_out, c_in, c_noise] = coefficient_tensors(&sigma, self.cfg.sigma_data)?;
        let c_noise = c_noise.reshape(&[sigma.numel()])?;

        let x_in = x.mul(&c_in)?;
        let (f_x, h) = match encoder {
            None => (Some(self.model.forward(&x_in, &c_noise, class_labels, augment_labels)?), None),
            Some(decode) => {
                let (f, h) = self.model.forward_parts(&x_in, &c_noise, class_labels, augment_labels, decode)?;
                (f, Some(h))
            }
        };
        let d = match f_x {
            Some(f_x) => Some(c_skip.mul(&x)?.add(&c_out.mul(&f_x)?)?),
            None => None,
        };
        Ok((d, h))
    }

    /// This network with `augment_labels` attached, as a [`Denoiser`] (for the loss on
    /// augmented images).
    pub fn with_augment_labels<'a>(&'a self, augment_labels: &'a Tensor) -> Augmented<'a> {
        Augmented { net: self, augment_labels }
    }

    /// Every state-dict key (parameters and buffers) in PyTorch's order, `model.` first.
    pub fn state_dict_keys(&self) -> Vec<String> {
        self.scope.state_dict_keys()
    }

    /// The buffers (`resample_filter`, NCSN++'s `map_noise.freqs`) with their full names.
    pub fn buffers(&self) -> Vec<(String, Tensor)> {
        self.scope.buffers()
    }

    /// `(parameter tensors, scalar parameters)` of this network.
    pub fn num_parameters(&self) -> (usize, usize) {
        let buffers: HashSet<String> = self.buffers().into_iter().map(|(n, _)| n).collect();
        let names: Vec<String> = self.state_dict_keys().into_iter().filter(|k| !buffers.contains(k)).collect();
        let numel = names.iter().filter_map(|n| self.store().get(n)).map(|t| t.numel()).sum();
        (names.len(), numel)
    }

    /// Loads a state dict (e.g. an official pickle's `ema` converted to safetensors by
    /// name): every parameter and buffer of this network must be present with its shape,
    /// and no other tensor may be. Nothing changes unless all fit. `origin` labels errors.
    pub fn load_state_dict(&self, raw: &[RawTensor], origin: &Path) -> Result<()> {
        let keys = self.state_dict_keys();
        let known: HashSet<&str> = keys.iter().map(String::as_str).collect();
        let by_name: HashMap<&str, &RawTensor> = raw.iter().map(|r| (r.name.as_str(), r)).collect();
        let missing: Vec<String> = keys.iter().filter(|k| !by_name.contains_key(k.as_str())).cloned().collect();
        let unexpected: Vec<String> =
            raw.iter().filter(|r| !known.contains(r.name.as_str())).map(|r| r.name.clone()).collect();
        let mut problems = Vec::new();
        if !missing.is_empty() {
            problems.push(format!("missing from the file: {}", list(&missing)));
        }
        if !unexpected.is_empty() {
            problems.push(format!("not in the network: {}", list(&unexpected)));
        }
        let buffers = self.buffers();
        for (name, t) in &buffers {
            if let Some(r) = by_name.get(name.as_str()) {
                if r.shape != t.shape() {
                    problems.push(format!("`{name}` is {:?} in the file but {:?} in the network", r.shape, t.shape()));
                }
            }
        }
        if !problems.is_empty() {
            return Err(Error::Checkpoint { path: origin.to_path_buf(), detail: problems.join("; ") });
        }
        let buffer_names: HashSet<&str> = buffers.iter().map(|(n, _)| n.as_str()).collect();
        let params: Vec<RawTensor> = raw.iter().filter(|r| !buffer_names.contains(r.name.as_str())).cloned().collect();
        // Checks shapes and dtypes of the parameters before writing any.
        self.store().load_raw(&params, origin, false)?;
        let _g = no_grad();
        for (name, t) in &buffers {
            let r = by_name[name.as_str()];
            t.assign(&Tensor::from_bytes(&r.data, r.dtype, &r.shape)?)?;
        }
        Ok(())
    }

    /// [`EdmPrecond::load_state_dict`] from a safetensors file.
    pub fn load(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        self.load_state_dict(&safetensors_io::load(path)?, path)
    }
}

impl Denoiser for EdmPrecond {
    fn denoise(&self, x: &Tensor, sigma: &Tensor, class_labels: Option<&Tensor>) -> Result<Tensor> {
        self.forward(x, sigma, class_labels, None)
    }

    fn sigma_min(&self) -> f64 {
        self.cfg.sigma_min
    }

    fn sigma_max(&self) -> f64 {
        self.cfg.sigma_max
    }
}

/// An [`EdmPrecond`] with augmentation labels attached (see
/// [`EdmPrecond::with_augment_labels`]).
#[derive(Clone, Copy, Debug)]
pub struct Augmented<'a> {
    net: &'a EdmPrecond,
    augment_labels: &'a Tensor,
}

impl Denoiser for Augmented<'_> {
    fn denoise(&self, x: &Tensor, sigma: &Tensor, class_labels: Option<&Tensor>) -> Result<Tensor> {
        self.net.forward(x, sigma, class_labels, Some(self.augment_labels))
    }

    fn sigma_min(&self) -> f64 {
        self.net.sigma_min()
    }

    fn sigma_max(&self) -> f64 {
        self.net.sigma_max()
    }
}

/// Classifier-free guidance around a class-conditional denoiser trained with label
/// dropout: `D_κ = D_uncond + κ·(D_cond − D_uncond)`, the unconditional evaluation being
/// the all-zeros label row (what label dropout trains). Both run as one batch of 2B.
/// κ = 1 is the plain conditional denoiser; without labels it is the unconditional one.
#[derive(Clone, Copy, Debug)]
pub struct ClassifierFreeGuidance<'a, D: Denoiser> {
    net: &'a D,
    guidance: f64,
}

impl<'a, D: Denoiser> ClassifierFreeGuidance<'a, D> {
    /// Guidance strength κ around `net`.
    pub fn new(net: &'a D, guidance: f64) -> ClassifierFreeGuidance<'a, D> {
        ClassifierFreeGuidance { net, guidance }
    }
}

impl<D: Denoiser> Denoiser for ClassifierFreeGuidance<'_, D> {
    fn denoise(&self, x: &Tensor, sigma: &Tensor, class_labels: Option<&Tensor>) -> Result<Tensor> {
        let Some(labels) = class_labels else {
            return self.net.denoise(x, sigma, None);
        };
        if self.guidance == 1.0 {
            return self.net.denoise(x, sigma, Some(labels));
        }
        let b = x.shape().first().copied().unwrap_or(0);
        if labels.rank() != 2 {
            return Err(Error::Config(format!("guidance: class labels {:?} must be [B, label_dim]", labels.shape())));
        }
        let labels = labels.broadcast_to(&[b, labels.shape()[1]])?;
        let x2 = Tensor::cat(&[x.clone(), x.clone()], 0)?;
        let labels2 = Tensor::cat(&[labels.clone(), Tensor::zeros_like(&labels)?], 0)?;
        let sigma2 = if sigma.numel() == 1 {
            sigma.clone()
        } else {
            let s = sigma.reshape(&[sigma.numel()])?;
            Tensor::cat(&[s.clone(), s], 0)?
        };
        let d = self.net.denoise(&x2, &sigma2, Some(&labels2))?;
        let (d_cond, d_uncond) = (d.narrow(0, 0, b)?, d.narrow(0, b, b)?);
        Ok(d_uncond.add(&d_cond.sub(&d_uncond)?.mul_scalar(self.guidance)?)?)
    }

    fn sigma_min(&self) -> f64 {
        self.net.sigma_min()
    }

    fn sigma_max(&self) -> f64 {
        self.net.sigma_max()
    }

    fn round_sigma(&self, sigma: f64) -> f64 {
        self.net.round_sigma(sigma)
    }
}
