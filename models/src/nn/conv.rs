//! 2-D convolution layer.

use super::{layer_err, Module};
use crate::error::Result;
use crate::params::{Init, ParamPath};
use scorch_engine::{ConvParams, Tensor};

/// Geometry of a [`Conv2d`] (the same in both spatial dims, as PyTorch's integer forms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dConfig {
    /// Step between windows.
    pub stride: usize,
    /// Zeros added on every side.
    pub padding: usize,
    /// Spacing of kernel taps.
    pub dilation: usize,
    /// Channel groups (in and out channels must both divide by it).
    pub groups: usize,
    /// Whether the layer has a bias.
    pub bias: bool,
}

impl Default for Conv2dConfig {
    fn default() -> Self {
        Conv2dConfig { stride: 1, padding: 0, dilation: 1, groups: 1, bias: true }
    }
}

impl Conv2dConfig {
    /// Stride 1 with "same" padding for an odd `kernel`.
    pub fn same(kernel: usize) -> Conv2dConfig {
        Conv2dConfig { padding: kernel / 2, ..Default::default() }
    }
}

/// 2-D convolution over `[N, C_in, H, W]` (PyTorch's `nn.Conv2d`): weight
/// `[C_out, C_in/groups, k, k]` from kaiming-uniform(a = √5), bias U(±1/√fan_in) with
/// `fan_in = C_in/groups · k²`.
#[derive(Clone, Debug)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    params: ConvParams,
    in_channels: usize,
    name: String,
}

impl Conv2d {
    /// A `kernel × kernel` convolution with parameters `{p}.weight` and `{p}.bias`.
    pub fn new(
        p: &ParamPath,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        cfg: Conv2dConfig,
    ) -> Result<Conv2d> {
        let kind = || format!("Conv2d({in_channels}→{out_channels}, k={kernel})");
        if cfg.groups == 0 || in_channels % cfg.groups != 0 || out_channels % cfg.groups != 0 {
            return Err(layer_err(
                kind(),
                p.prefix(),
                format!("{in_channels} in and {out_channels} out channels do not split into {} groups", cfg.groups),
            ));
        }
        if kernel == 0 || cfg.stride == 0 || cfg.dilation == 0 {
            return Err(layer_err(
                kind(),
                p.prefix(),
                format!("kernel, stride and dilation must be positive: {cfg:?}"),
            ));
        }
        let shape = [out_channels, in_channels / cfg.groups, kernel, kernel];
        let weight = p.get_or_init("weight", &shape, Init::pytorch_weight())?;
        let fan_in = Init::fans(&shape).0;
        let bias =
            if cfg.bias { Some(p.get_or_init("bias", &[out_channels], Init::pytorch_bias(fan_in))?) } else { None };
        let params = ConvParams {
            stride: [cfg.stride; 2],
            padding: [cfg.padding; 2],
            dilation: [cfg.dilation; 2],
            groups: cfg.groups,
        };
        Ok(Conv2d { weight, bias, params, in_channels, name: p.prefix().to_string() })
    }

    /// The weight `[C_out, C_in/groups, k, k]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias `[C_out]`, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// Stride, padding, dilation and groups as the engine takes them.
    pub fn params(&self) -> ConvParams {
        self.params
    }

    fn kind(&self) -> String {
        format!("Conv2d({}→{}, k={})", self.in_channels, self.weight.shape()[0], self.weight.shape()[2])
    }
}

impl Module for Conv2d {
    /// `[N, C_in, H, W] → [N, C_out, H', W']`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() != 4 || x.shape()[1] != self.in_channels {
            return Err(layer_err(
                self.kind(),
                &self.name,
                format!("input {:?} must be [N, {}, H, W]", x.shape(), self.in_channels),
            ));
        }
        x.conv2d(&self.weight, self.bias.as_ref(), self.params)
            .map_err(|e| layer_err(self.kind(), &self.name, format!("input {:?}: {e}", x.shape())))
    }
}
