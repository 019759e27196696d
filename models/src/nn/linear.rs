//! Fully connected layer.

use super::{layer_err, Module};
use crate::error::Result;
use crate::params::{Init, ParamPath};
use scorch_engine::Tensor;

/// `y = x Wᵀ + b` over the last dim (PyTorch's `nn.Linear`): weight `[out, in]` from
/// kaiming-uniform(a = √5), i.e. U(±1/√in), bias U(±1/√in).
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
    name: String,
}

impl Linear {
    /// A layer with a bias, parameters `{p}.weight` and `{p}.bias`.
    pub fn new(p: &ParamPath, in_features: usize, out_features: usize) -> Result<Linear> {
        Linear::with_bias(p, in_features, out_features, true)
    }

    /// A layer with or without a bias.
    pub fn with_bias(p: &ParamPath, in_features: usize, out_features: usize, bias: bool) -> Result<Linear> {
        Linear::with_init(
            p,
            in_features,
            out_features,
            Init::pytorch_weight(),
            bias.then(|| Init::pytorch_bias(in_features)),
        )
    }

    /// A layer with explicit initialisers (no bias when `bias` is `None`).
    pub fn with_init(
        p: &ParamPath,
        in_features: usize,
        out_features: usize,
        weight: Init,
        bias: Option<Init>,
    ) -> Result<Linear> {
        let w = p.get_or_init("weight", &[out_features, in_features], weight)?;
        let b = bias.map(|init| p.get_or_init("bias", &[out_features], init)).transpose()?;
        Ok(Linear { weight: w, bias: b, name: p.prefix().to_string() })
    }

    /// The weight `[out, in]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias `[out]`, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// Input width.
    pub fn in_features(&self) -> usize {
        self.weight.shape()[1]
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.weight.shape()[0]
    }

    fn kind(&self) -> String {
        format!("Linear({}→{})", self.in_features(), self.out_features())
    }
}

impl Module for Linear {
    /// `[.., in] → [.., out]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() == 0 || x.shape()[x.rank() - 1] != self.in_features() {
            return Err(layer_err(
                self.kind(),
                &self.name,
                format!("input {:?} must end in {} features", x.shape(), self.in_features()),
            ));
        }
        Ok(x.linear(&self.weight, self.bias.as_ref())?)
    }
}
