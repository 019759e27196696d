//! Lookup table.

use super::{layer_err, Module};
use crate::error::Result;
use crate::params::{Init, ParamPath};
use scorch_engine::Tensor;

/// Rows of a `[num_embeddings, dim]` table picked by integer ids (PyTorch's
/// `nn.Embedding`), weight N(0, 1).
#[derive(Clone, Debug)]
pub struct Embedding {
    weight: Tensor,
    name: String,
}

impl Embedding {
    /// A table `{p}.weight` of `num_embeddings` rows of width `dim`.
    pub fn new(p: &ParamPath, num_embeddings: usize, dim: usize) -> Result<Embedding> {
        let weight = p.get_or_init("weight", &[num_embeddings, dim], Init::Normal { mean: 0.0, std: 1.0 })?;
        Ok(Embedding { weight, name: p.prefix().to_string() })
    }

    /// The table `[num_embeddings, dim]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

impl Module for Embedding {
    /// Integer ids `[..]` → `[.., dim]`; an id outside the table is an error naming it.
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let kind = || format!("Embedding({}, {})", self.weight.shape()[0], self.weight.shape()[1]);
        if ids.dtype().is_float() {
            return Err(layer_err(
                kind(),
                &self.name,
                format!("ids must be integers, got {} {:?}", ids.dtype(), ids.shape()),
            ));
        }
        Tensor::embedding(&self.weight, ids).map_err(|e| layer_err(kind(), &self.name, e.to_string()))
    }
}
