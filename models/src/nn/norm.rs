//! Normalisation layers over the engine's fused group / layer / RMS norm.

use super::{layer_err, Module};
use crate::error::Result;
use crate::params::{Init, ParamPath};
use scorch_engine::Tensor;

/// Group norm over `[N, C, ...]` (PyTorch's `nn.GroupNorm`): statistics per sample and
/// group of `C/groups` channels, then a per-channel affine (weight ones, bias zeros).
#[derive(Clone, Debug)]
pub struct GroupNorm {
    groups: usize,
    eps: f64,
    weight: Tensor,
    bias: Tensor,
    name: String,
}

impl GroupNorm {
    /// `groups` groups over `channels` channels (which must divide); parameters
    /// `{p}.weight`, `{p}.bias`.
    pub fn new(p: &ParamPath, groups: usize, channels: usize, eps: f64) -> Result<GroupNorm> {
        if groups == 0 || channels % groups != 0 {
            return Err(layer_err(
                format!("GroupNorm({groups}, {channels})"),
                p.prefix(),
                format!("{channels} channels do not split into {groups} groups"),
            ));
        }
        let weight = p.get_or_init("weight", &[channels], Init::Ones)?;
        let bias = p.get_or_init("bias", &[channels], Init::Zeros)?;
        Ok(GroupNorm { groups, eps, weight, bias, name: p.prefix().to_string() })
    }

    fn channels(&self) -> usize {
        self.weight.shape()[0]
    }
}

impl Module for GroupNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() < 2 || x.shape()[1] != self.channels() {
            return Err(layer_err(
                format!("GroupNorm({}, {})", self.groups, self.channels()),
                &self.name,
                format!("input {:?} must be [N, {}, ...]", x.shape(), self.channels()),
            ));
        }
        Ok(x.group_norm(self.groups, Some(&self.weight), Some(&self.bias), self.eps)?)
    }
}

/// Layer norm over the last dim (PyTorch's `nn.LayerNorm(dim)`), with an optional
/// elementwise weight (ones) and bias (zeros).
#[derive(Clone, Debug)]
pub struct LayerNorm {
    dim: usize,
    eps: f64,
    weight: Option<Tensor>,
    bias: Option<Tensor>,
    name: String,
}

impl LayerNorm {
    /// With weight and bias (`{p}.weight`, `{p}.bias`).
    pub fn new(p: &ParamPath, dim: usize, eps: f64) -> Result<LayerNorm> {
        LayerNorm::with_affine(p, dim, eps, true, true)
    }

    /// Choosing the affine parts: `elementwise_affine=False` is `(false, false)`,
    /// `bias=False` is `(true, false)`.
    pub fn with_affine(p: &ParamPath, dim: usize, eps: f64, weight: bool, bias: bool) -> Result<LayerNorm> {
        let weight = weight.then(|| p.get_or_init("weight", &[dim], Init::Ones)).transpose()?;
        let bias = bias.then(|| p.get_or_init("bias", &[dim], Init::Zeros)).transpose()?;
        Ok(LayerNorm { dim, eps, weight, bias, name: p.prefix().to_string() })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() == 0 || x.shape()[x.rank() - 1] != self.dim {
            return Err(layer_err(
                format!("LayerNorm({})", self.dim),
                &self.name,
                format!("input {:?} must end in {}", x.shape(), self.dim),
            ));
        }
        Ok(x.layer_norm(self.weight.as_ref(), self.bias.as_ref(), self.eps)?)
    }
}

/// RMS norm over the last dim (PyTorch's `nn.RMSNorm(dim)`): `x / √(mean(x²) + eps) · w`,
/// weight ones.
#[derive(Clone, Debug)]
pub struct RmsNorm {
    eps: f64,
    weight: Tensor,
    name: String,
}

impl RmsNorm {
    /// With weight `{p}.weight`.
    pub fn new(p: &ParamPath, dim: usize, eps: f64) -> Result<RmsNorm> {
        let weight = p.get_or_init("weight", &[dim], Init::Ones)?;
        Ok(RmsNorm { eps, weight, name: p.prefix().to_string() })
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dim = self.weight.shape()[0];
        if x.rank() == 0 || x.shape()[x.rank() - 1] != dim {
            return Err(layer_err(
                format!("RmsNorm({dim})"),
                &self.name,
                format!("input {:?} must end in {dim}", x.shape()),
            ));
        }
        Ok(x.rms_norm(Some(&self.weight), self.eps)?)
    }
}
