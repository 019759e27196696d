//! Layers: each owns its parameters (taken from a [`ParamPath`](crate::params::ParamPath),
//! so they carry checkpoint names), initialises them as PyTorch's layer of the same name
//! does, checks its input and calls the engine's differentiable functions.
//!
//! | layer | PyTorch | parameters |
//! |-------|---------|------------|
//! | [`Linear`] | `nn.Linear` | `weight [out, in]`, `bias [out]` |
//! | [`Conv2d`] | `nn.Conv2d` | `weight [out, in/groups, k, k]`, `bias [out]` |
//! | [`GroupNorm`] | `nn.GroupNorm` | `weight [C]`, `bias [C]` |
//! | [`LayerNorm`] | `nn.LayerNorm` | `weight [D]`, `bias [D]` |
//! | [`RmsNorm`] | `nn.RMSNorm` | `weight [D]` |
//! | [`Embedding`] | `nn.Embedding` | `weight [V, D]` |
//! | [`Dropout`] | `nn.Dropout` | — |
//! | [`MultiHeadAttention`] | `nn.MultiheadAttention` (batch first) | `in_proj_weight [3D, D]`, `in_proj_bias [3D]`, `out_proj.{weight, bias}` |

mod attention;
mod conv;
mod dropout;
mod embedding;
mod linear;
mod norm;

pub use attention::MultiHeadAttention;
pub use conv::{Conv2d, Conv2dConfig};
pub use dropout::Dropout;
pub use embedding::Embedding;
pub use linear::Linear;
pub use norm::{GroupNorm, LayerNorm, RmsNorm};

use crate::error::{Error, Result};
use scorch_engine::Tensor;

/// A layer or network that maps one tensor to another.
pub trait Module {
    /// Applies the module. Gradients flow to its parameters through the engine's autograd.
    fn forward(&self, x: &Tensor) -> Result<Tensor>;
}

impl<F: Fn(&Tensor) -> Result<Tensor>> Module for F {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self(x)
    }
}

/// Modules applied one after the other.
///
/// ```
/// use scorch_models::nn::{Linear, Module, Sequential};
/// use scorch_models::params::ParamStore;
/// use scorch_engine::{DType, Tensor};
///
/// let store = ParamStore::new(DType::F32, 0);
/// let root = store.root();
/// let mlp = Sequential::new()
///     .add(Linear::new(&root.pp("0"), 8, 16)?)
///     .add(|x: &Tensor| Ok(x.relu()?))
///     .add(Linear::new(&root.pp("2"), 16, 2)?);
/// assert_eq!(mlp.forward(&Tensor::zeros(&[5, 8], DType::F32)?)?.shape(), [5, 2]);
/// # Ok::<(), scorch_models::Error>(())
/// ```
#[derive(Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Module + Send + Sync>>,
}

impl Sequential {
    /// An empty sequence (the identity).
    pub fn new() -> Sequential {
        Sequential::default()
    }

    /// Appends a module.
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, m: impl Module + Send + Sync + 'static) -> Sequential {
        self.layers.push(Box::new(m));
        self
    }

    /// Number of modules.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether there are no modules.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl Module for Sequential {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut y = x.clone();
        for l in &self.layers {
            y = l.forward(&y)?;
        }
        Ok(y)
    }
}

/// A [`Error::Layer`] for the layer `layer` at parameter path `name`.
pub(crate) fn layer_err(layer: impl Into<String>, name: &str, detail: impl Into<String>) -> Error {
    Error::Layer { layer: layer.into(), name: name.to_string(), detail: detail.into() }
}
