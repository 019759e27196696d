//! EDM's primitive layers (`training/networks.py`, spec §2.1): its own weight
//! initialisation (`weight_init` scaled by `init_weight` / `init_bias`), `Linear`,
//! `Conv2d` with FIR up/down-sampling through a `resample_filter` buffer, and `GroupNorm`
//! with EDM's group rule. They differ from [`crate::nn`] in exactly these points, which
//! is why they live here.
//!
//! Every layer takes a [`Scope`]: parameters go to the [`ParamStore`] under the scope's
//! path (so names equal the official state-dict keys), buffers (`resample_filter`,
//! `freqs`) to a list kept beside it, and the scope records every key in PyTorch's
//! `state_dict()` order.

use crate::error::{Error, Result};
use crate::nn::layer_err;
use crate::params::{Init, ParamPath, ParamStore};
use scorch_engine::{no_grad, ConvParams, DType, Tensor};
use std::sync::{Arc, Mutex, MutexGuard};

/// The fan-based schemes of EDM's `weight_init(shape, mode, fan_in, fan_out)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitMode {
    /// √(6/(fan_in+fan_out)) · U(−1, 1).
    XavierUniform,
    /// √(2/(fan_in+fan_out)) · N(0, 1).
    XavierNormal,
    /// √(3/fan_in) · U(−1, 1).
    KaimingUniform,
    /// √(1/fan_in) · N(0, 1).
    KaimingNormal,
}

/// EDM's per-layer init arguments: `weight = weight_init(mode) · init_weight`,
/// `bias = weight_init(mode) · init_bias` (the bias drawn with the weight's fans).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WeightInit {
    /// The scheme.
    pub mode: InitMode,
    /// Scale of the weight (`init_weight`).
    pub init_weight: f64,
    /// Scale of the bias (`init_bias`; 0 gives zeros).
    pub init_bias: f64,
}

impl Default for WeightInit {
    /// The defaults of EDM's `Linear` and `Conv2d`: kaiming-normal, weight ×1, bias ×0.
    fn default() -> Self {
        WeightInit::new(InitMode::KaimingNormal)
    }
}

impl WeightInit {
    /// `mode` with `init_weight = 1`, `init_bias = 0`.
    pub const fn new(mode: InitMode) -> WeightInit {
        WeightInit { mode, init_weight: 1.0, init_bias: 0.0 }
    }

    /// The same scheme with weight scale `w`.
    pub const fn weight(self, w: f64) -> WeightInit {
        WeightInit { init_weight: w, ..self }
    }

    /// The same scheme with bias scale `b`.
    pub const fn bias(self, b: f64) -> WeightInit {
        WeightInit { init_bias: b, ..self }
    }

    /// The [`Init`] for a tensor scaled by `scale` in a layer with fans `(fan_in, fan_out)`.
    fn init(&self, scale: f64, fan_in: usize, fan_out: usize) -> Init {
        let scale = scale.abs();
        if scale == 0.0 {
            return Init::Zeros;
        }
        let (fi, fo) = (fan_in.max(1) as f64, fan_out.max(1) as f64);
        match self.mode {
            InitMode::XavierUniform => uniform(scale * (6.0 / (fi + fo)).sqrt()),
            InitMode::XavierNormal => Init::Normal { mean: 0.0, std: scale * (2.0 / (fi + fo)).sqrt() },
            InitMode::KaimingUniform => uniform(scale * (3.0 / fi).sqrt()),
            InitMode::KaimingNormal => Init::Normal { mean: 0.0, std: scale * (1.0 / fi).sqrt() },
        }
    }
}

fn uniform(bound: f64) -> Init {
    Init::Uniform { lo: -bound, hi: bound }
}

/// What a network's construction registered besides parameters.
#[derive(Default)]
struct Registry {
    /// Every state-dict key (parameters and buffers) in PyTorch's order.
    keys: Vec<String>,
    /// Buffers with their full names.
    buffers: Vec<(String, Tensor)>,
}

/// A position in a network under construction: a [`ParamPath`] plus the network's buffer
/// list and state-dict key order, and whether parameters are filled with zeros instead of
/// their random initialisation (fast, for counting parameters or before loading weights).
#[derive(Clone)]
pub struct Scope {
    path: ParamPath,
    registry: Arc<Mutex<Registry>>,
    zeroed: bool,
}

impl std::fmt::Debug for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope").field("prefix", &self.path.prefix()).field("zeroed", &self.zeroed).finish()
    }
}

impl Scope {
    /// The root scope of a new network at `path`. With `zeroed`, every parameter and the
    /// random `freqs` buffer start at zero.
    pub fn new(path: &ParamPath, zeroed: bool) -> Scope {
        Scope { path: path.clone(), registry: Arc::default(), zeroed }
    }

    /// One level down (`scope.pp("enc").pp("32x32_conv")`).
    pub fn pp(&self, name: impl AsRef<str>) -> Scope {
        Scope { path: self.path.pp(name), registry: self.registry.clone(), zeroed: self.zeroed }
    }

    /// The parameter path.
    pub fn path(&self) -> &ParamPath {
        &self.path
    }

    /// The dotted prefix (for error messages).
    pub fn prefix(&self) -> &str {
        self.path.prefix()
    }

    /// The parameter store.
    pub fn store(&self) -> &ParamStore {
        self.path.store()
    }

    /// The dtype of parameters and buffers.
    pub fn dtype(&self) -> DType {
        self.store().dtype()
    }

    /// Whether parameters are created as zeros.
    pub fn zeroed(&self) -> bool {
        self.zeroed
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The parameter `name` of `shape`, created with `init` (zeros in a zeroed scope).
    pub fn param(&self, name: &str, shape: &[usize], init: Init) -> Result<Tensor> {
        let init = if self.zeroed { Init::Zeros } else { init };
        let t = self.path.get_or_init(name, shape, init)?;
        self.registry().keys.push(self.path.join(name));
        Ok(t)
    }

    /// Registers `value` (cast to the scope's dtype) as the buffer `name`.
    pub fn buffer(&self, name: &str, value: Tensor) -> Result<Tensor> {
        let value = {
            let _g = no_grad();
            value.cast(self.dtype())?.contiguous()?
        };
        let full = self.path.join(name);
        let mut reg = self.registry();
        reg.keys.push(full.clone());
        reg.buffers.push((full, value.clone()));
        Ok(value)
    }

    /// Every state-dict key registered so far through any scope of this network, in
    /// PyTorch's `state_dict()` order.
    pub fn state_dict_keys(&self) -> Vec<String> {
        self.registry().keys.clone()
    }

    /// Every buffer registered so far, with its full name.
    pub fn buffers(&self) -> Vec<(String, Tensor)> {
        self.registry().buffers.clone()
    }
}

/// Fully connected layer (EDM's `Linear`): `weight [out, in]`, optional `bias [out]`,
/// `y = x·Wᵀ + b`; fans `(in, out)`.
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
    name: String,
}

impl Linear {
    /// A layer at `scope` with `{scope}.weight` and, with `bias`, `{scope}.bias`.
    pub fn new(scope: &Scope, in_features: usize, out_features: usize, bias: bool, init: WeightInit) -> Result<Linear> {
        if in_features == 0 || out_features == 0 {
            return Err(layer_err(
                format!("Linear({in_features}→{out_features})"),
                scope.prefix(),
                "needs at least one input and one output feature",
            ));
        }
        let weight = scope.param(
            "weight",
            &[out_features, in_features],
            init.init(init.init_weight, in_features, out_features),
        )?;
        let bias = bias
            .then(|| scope.param("bias", &[out_features], init.init(init.init_bias, in_features, out_features)))
            .transpose()?;
        Ok(Linear { weight, bias, name: scope.prefix().to_string() })
    }

    /// Input width.
    pub fn in_features(&self) -> usize {
        self.weight.shape()[1]
    }

    /// `[.., in] → [.., out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() == 0 || x.shape()[x.rank() - 1] != self.in_features() {
            return Err(layer_err(
                format!("Linear({}→{})", self.in_features(), self.weight.shape()[0]),
                &self.name,
                format!("input {:?} must end in {} features", x.shape(), self.in_features()),
            ));
        }
        Ok(x.linear(&self.weight, self.bias.as_ref())?)
    }
}

/// Whether a [`Conv2d`] changes the resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resample {
    /// Same resolution.
    Keep,
    /// 2× up-sampling (transposed depthwise conv with `4·f`) before the convolution.
    Up,
    /// 2× down-sampling (depthwise conv with `f`, stride 2) before the convolution.
    Down,
}

/// The normalised 2-D FIR filter `f = a aᵀ / (Σa)²` as a `[1, 1, n, n]` tensor
/// (`[1,1]` gives 2×2 of 0.25; `[1,3,3,1]` the 4×4 binomial / 64).
pub fn resample_filter(taps: &[f64], dtype: DType) -> Result<Tensor> {
    let s: f64 = taps.iter().sum();
    if taps.is_empty() || s == 0.0 || !s.is_finite() {
        return Err(Error::Config(format!("resample filter {taps:?} must be non-empty with a finite non-zero sum")));
    }
    let n = taps.len();
    let f: Vec<f64> = taps.iter().flat_map(|a| taps.iter().map(move |b| a * b / (s * s))).collect();
    Ok(Tensor::from_f64s(&f, &[1, 1, n, n], dtype)?)
}

/// Convolution with optional FIR up/down-sampling (EDM's `Conv2d`): `weight [out, in, k, k]`
/// only if `kernel > 0`, `bias [out]` only if also `bias`, and the buffer
/// `resample_filter [1, 1, n, n]` only if it resamples. Fans `(in·k², out·k²)`.
///
/// Non-fused: resample (padding `(n−1)/2`), then the `k × k` conv (padding `k/2`).
/// Fused down (NCSN++'s `aux_residual`): the conv with padding `k/2 + (n−1)/2`, then the
/// depthwise filter with stride 2 and no padding over the output channels. Fused up:
/// transposed depthwise filter with padding `k/2 + (n−1)/2`, then the conv unpadded.
#[derive(Clone, Debug)]
pub struct Conv2d {
    weight: Option<Tensor>,
    bias: Option<Tensor>,
    filter: Option<Tensor>,
    resample: Resample,
    fused: bool,
    in_channels: usize,
    out_channels: usize,
    name: String,
}

impl Conv2d {
    /// A `kernel × kernel` convolution at one resolution (padding `kernel/2`), with a bias.
    pub fn new(
        scope: &Scope,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        init: WeightInit,
    ) -> Result<Conv2d> {
        Conv2d::resampling(scope, in_channels, out_channels, kernel, true, Resample::Keep, &[1.0, 1.0], false, init)
    }

    /// The general form. `kernel = 0` means "resample only" (no weight, no bias).
    #[allow(clippy::too_many_arguments)]
    pub fn resampling(
        scope: &Scope,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        bias: bool,
        resample: Resample,
        filter: &[f64],
        fused: bool,
        init: WeightInit,
    ) -> Result<Conv2d> {
        let kind = format!("Conv2d({in_channels}→{out_channels}, k={kernel})");
        if in_channels == 0 || out_channels == 0 {
            return Err(layer_err(kind, scope.prefix(), "needs at least one input and one output channel"));
        }
        if kernel == 0 && (resample == Resample::Keep || in_channels != out_channels) {
            return Err(layer_err(
                kind,
                scope.prefix(),
                "kernel 0 (resample only) needs up or down and as many output as input channels",
            ));
        }
        let (fan_in, fan_out) = (in_channels * kernel * kernel, out_channels * kernel * kernel);
        let weight = (kernel > 0)
            .then(|| {
                scope.param(
                    "weight",
                    &[out_channels, in_channels, kernel, kernel],
                    init.init(init.init_weight, fan_in, fan_out),
                )
            })
            .transpose()?;
        let bias = (kernel > 0 && bias)
            .then(|| scope.param("bias", &[out_channels], init.init(init.init_bias, fan_in, fan_out)))
            .transpose()?;
        let filter = match resample {
            Resample::Keep => None,
            _ => Some(scope.buffer("resample_filter", resample_filter(filter, scope.dtype())?)?),
        };
        Ok(Conv2d {
            weight,
            bias,
            filter,
            resample,
            fused: fused && kernel > 0,
            in_channels,
            out_channels,
            name: scope.prefix().to_string(),
        })
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.in_channels
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.out_channels
    }

    fn kind(&self) -> String {
        let k = self.weight.as_ref().map_or(0, |w| w.shape()[2]);
        format!("Conv2d({}→{}, k={k})", self.in_channels, self.out_channels)
    }

    /// The depthwise FIR step over `channels` channels.
    fn fir(&self, x: &Tensor, f: &Tensor, channels: usize, up: bool, pad: usize) -> Result<Tensor> {
        let n = f.shape()[3];
        let p = ConvParams { stride: [2, 2], padding: [pad, pad], dilation: [1, 1], groups: channels };
        if up {
            let w = f.mul_scalar(4.0)?.broadcast_to(&[channels, 1, n, n])?.contiguous()?;
            Ok(x.conv_transpose2d(&w, None, p, [0, 0])?)
        } else {
            let w = f.broadcast_to(&[channels, 1, n, n])?.contiguous()?;
            Ok(x.conv2d(&w, None, p)?)
        }
    }

    /// `[N, in, H, W] → [N, out, H', W']` (H' = 2H up, H/2 down).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() != 4 || x.shape()[1] != self.in_channels {
            return Err(layer_err(
                self.kind(),
                &self.name,
                format!("input {:?} must be [N, {}, H, W]", x.shape(), self.in_channels),
            ));
        }
        let wrap = |e: scorch_engine::Error| layer_err(self.kind(), &self.name, format!("input {:?}: {e}", x.shape()));
        let conv = |x: &Tensor, w: &Tensor, pad: usize| {
            x.conv2d(w, None, ConvParams { stride: [1, 1], padding: [pad, pad], dilation: [1, 1], groups: 1 })
                .map_err(wrap)
        };
        let w_pad = self.weight.as_ref().map_or(0, |w| w.shape()[3] / 2);
        let f_pad = self.filter.as_ref().map_or(0, |f| (f.shape()[3] - 1) / 2);
        let mut y = x.clone();
        match (&self.weight, &self.filter, self.fused, self.resample) {
            (Some(w), Some(f), true, Resample::Up) => {
                y = self.fir(&y, f, self.in_channels, true, w_pad + f_pad)?;
                y = conv(&y, w, 0)?;
            }
            (Some(w), Some(f), true, Resample::Down) => {
                y = conv(&y, w, w_pad + f_pad)?;
                y = self.fir(&y, f, self.out_channels, false, 0)?;
            }
            (w, f, _, resample) => {
                if let Some(f) = f {
                    y = self.fir(&y, f, self.in_channels, resample == Resample::Up, f_pad)?;
                }
                if let Some(w) = w {
                    y = conv(&y, w, w_pad)?;
                }
            }
        }
        match &self.bias {
            Some(b) => Ok(y.add(&b.reshape(&[1, self.out_channels, 1, 1])?)?),
            None => Ok(y),
        }
    }
}

/// Group normalisation with EDM's group count `min(num_groups, C / min_channels_per_group)`
/// (32 and 4 by default): `weight [C]` (ones), `bias [C]` (zeros).
#[derive(Clone, Debug)]
pub struct GroupNorm {
    groups: usize,
    eps: f64,
    weight: Tensor,
    bias: Tensor,
    name: String,
}

impl GroupNorm {
    /// `GroupNorm(num_channels, num_groups=32, min_channels_per_group=4, eps)`.
    pub fn new(scope: &Scope, channels: usize, eps: f64) -> Result<GroupNorm> {
        let groups = 32.min(channels / 4);
        if groups == 0 || channels % groups != 0 {
            return Err(layer_err(
                format!("GroupNorm({channels})"),
                scope.prefix(),
                format!(
                    "{channels} channels do not split into min(32, {channels}/4) = {groups} groups; \
                     use at least 4 channels and a multiple of the group count"
                ),
            ));
        }
        let weight = scope.param("weight", &[channels], Init::Ones)?;
        let bias = scope.param("bias", &[channels], Init::Zeros)?;
        Ok(GroupNorm { groups, eps, weight, bias, name: scope.prefix().to_string() })
    }

    /// `[N, C, ...] → [N, C, ...]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let c = self.weight.shape()[0];
        if x.rank() < 2 || x.shape()[1] != c {
            return Err(layer_err(
                format!("GroupNorm({c})"),
                &self.name,
                format!("input {:?} must be [N, {c}, ...]", x.shape()),
            ));
        }
        Ok(x.group_norm(self.groups, Some(&self.weight), Some(&self.bias), self.eps)?)
    }
}

/// Noise-level embedding of DDPM++ and ADM (`PositionalEmbedding`, spec §2.3):
/// `freqs_i = (1/max_positions)^(i / (N/2 − [endpoint]))`, `i < N/2`, and
/// `[cos(c_noise·freqs) | sin(c_noise·freqs)]`. No parameters.
#[derive(Clone, Debug)]
pub struct PositionalEmbedding {
    freqs: Tensor,
}

impl PositionalEmbedding {
    /// `num_channels` outputs (even; at least 4 with `endpoint`).
    pub fn new(num_channels: usize, max_positions: f64, endpoint: bool, dtype: DType) -> Result<PositionalEmbedding> {
        let half = num_channels / 2;
        let denom = half as f64 - if endpoint { 1.0 } else { 0.0 };
        if num_channels % 2 != 0 || denom <= 0.0 {
            return Err(Error::Config(format!(
                "positional embedding of {num_channels} channels: needs an even count of at least {}",
                if endpoint { 4 } else { 2 }
            )));
        }
        let f: Vec<f64> = (0..half).map(|i| (1.0 / max_positions).powf(i as f64 / denom)).collect();
        Ok(PositionalEmbedding { freqs: Tensor::from_f64s(&f, &[1, half], dtype)? })
    }

    /// `c_noise [B] → [B, N]` as `[cos | sin]`.
    pub fn forward(&self, c_noise: &Tensor) -> Result<Tensor> {
        outer_cos_sin(c_noise, &self.freqs)
    }
}

/// Noise-level embedding of NCSN++ (`FourierEmbedding`, spec §2.3): the buffer
/// `freqs [N/2] ~ N(0, scale²)` (random at init, so it must come from the checkpoint) and
/// `[cos(2π·c_noise·freqs) | sin(2π·c_noise·freqs)]`.
#[derive(Clone, Debug)]
pub struct FourierEmbedding {
    freqs: Tensor,
}

impl FourierEmbedding {
    /// Registers `{scope}.freqs`, drawn from the store's runtime generator (zeros in a
    /// zeroed scope).
    pub fn new(scope: &Scope, num_channels: usize, scale: f64) -> Result<FourierEmbedding> {
        if num_channels < 2 || num_channels % 2 != 0 {
            return Err(Error::Config(format!("Fourier embedding of {num_channels} channels: needs an even count")));
        }
        let half = num_channels / 2;
        let value = if scope.zeroed() {
            Tensor::zeros(&[half], scope.dtype())?
        } else {
            Tensor::randn(&[half], scope.dtype(), &scope.store().rng())?.mul_scalar(scale)?
        };
        Ok(FourierEmbedding { freqs: scope.buffer("freqs", value)? })
    }

    /// `c_noise [B] → [B, N]` as `[cos | sin]`.
    pub fn forward(&self, c_noise: &Tensor) -> Result<Tensor> {
        let f = self.freqs.mul_scalar(2.0 * std::f64::consts::PI)?;
        outer_cos_sin(c_noise, &f.reshape(&[1, f.numel()])?)
    }
}

/// `[cos(x ⊗ f) | sin(x ⊗ f)]` for `x [B]`, `f [1, N/2]`.
fn outer_cos_sin(x: &Tensor, f: &Tensor) -> Result<Tensor> {
    if x.rank() != 1 {
        return Err(Error::Config(format!("noise labels {:?} must be a vector [B]", x.shape())));
    }
    let a = x.reshape(&[x.numel(), 1])?.mul(&f.cast(x.dtype())?)?;
    Ok(Tensor::cat(&[a.cos()?, a.sin()?], 1)?)
}
