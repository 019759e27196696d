//! Multi-head attention: input projection, the engine's fused scaled dot-product
//! attention, output projection.

use super::{layer_err, Linear, Module};
use crate::error::Result;
use crate::params::{Init, ParamPath};
use scorch_engine::Tensor;

/// Multi-head attention over batch-first sequences `[B, S, D]` (PyTorch's
/// `nn.MultiheadAttention(D, heads, batch_first=True)`, same parameter names, so its
/// checkpoints load by name).
///
/// The query, key and value projections are one packed `in_proj_weight [3D, D]` (rows
/// `0..D` for queries, then keys, then values) with `in_proj_bias [3D]`, initialised as
/// PyTorch does: xavier-uniform over the packed matrix, zero bias; `out_proj` is a
/// [`Linear`] with PyTorch's default weight and a zero bias. Self-attention runs the
/// packed projection as one matrix product.
#[derive(Clone, Debug)]
pub struct MultiHeadAttention {
    in_proj_weight: Tensor,
    in_proj_bias: Option<Tensor>,
    out_proj: Linear,
    heads: usize,
    name: String,
}

impl MultiHeadAttention {
    /// `heads` heads over model width `dim` (which `heads` must divide), with biases.
    pub fn new(p: &ParamPath, dim: usize, heads: usize) -> Result<MultiHeadAttention> {
        MultiHeadAttention::with_bias(p, dim, heads, true)
    }

    /// With or without the projection biases.
    pub fn with_bias(p: &ParamPath, dim: usize, heads: usize, bias: bool) -> Result<MultiHeadAttention> {
        if heads == 0 || dim % heads != 0 {
            return Err(layer_err(
                format!("MultiHeadAttention({dim}, heads={heads})"),
                p.prefix(),
                format!("width {dim} does not split into {heads} heads"),
            ));
        }
        let in_proj_weight = p.get_or_init("in_proj_weight", &[3 * dim, dim], Init::XavierUniform { gain: 1.0 })?;
        let in_proj_bias = bias.then(|| p.get_or_init("in_proj_bias", &[3 * dim], Init::Zeros)).transpose()?;
        let out_proj =
            Linear::with_init(&p.pp("out_proj"), dim, dim, Init::pytorch_weight(), bias.then_some(Init::Zeros))?;
        Ok(MultiHeadAttention { in_proj_weight, in_proj_bias, out_proj, heads, name: p.prefix().to_string() })
    }

    /// Model width D.
    pub fn dim(&self) -> usize {
        self.in_proj_weight.shape()[1]
    }

    /// Number of heads.
    pub fn heads(&self) -> usize {
        self.heads
    }

    fn kind(&self) -> String {
        format!("MultiHeadAttention({}, heads={})", self.dim(), self.heads)
    }

    /// Rows `i·D..(i+1)·D` of the packed projection (0: query, 1: key, 2: value).
    fn proj(&self, x: &Tensor, first: usize, count: usize) -> Result<Tensor> {
        let d = self.dim();
        let w = self.in_proj_weight.narrow(0, first * d, count * d)?;
        let b = self.in_proj_bias.as_ref().map(|b| b.narrow(0, first * d, count * d)).transpose()?;
        Ok(x.linear(&w, b.as_ref())?)
    }

    /// `[B, S, N·D] → N tensors [B, H, S, D/H]` (views).
    fn split_heads<const N: usize>(&self, x: &Tensor) -> Result<[Tensor; N]> {
        let (b, s, d) = (x.shape()[0], x.shape()[1], self.dim());
        let x = x.reshape(&[b, s, N, self.heads, d / self.heads])?.permute(&[2, 0, 3, 1, 4])?;
        let parts = (0..N).map(|i| x.narrow(0, i, 1)?.squeeze(0)).collect::<scorch_engine::Result<Vec<_>>>()?;
        Ok(parts.try_into().expect("N parts were split off"))
    }

    fn check(&self, what: &str, x: &Tensor) -> Result<()> {
        if x.rank() != 3 || x.shape()[2] != self.dim() {
            return Err(layer_err(
                self.kind(),
                &self.name,
                format!("{what} {:?} must be [B, S, {}]", x.shape(), self.dim()),
            ));
        }
        Ok(())
    }

    /// Attention of `query [B, Sq, D]` over `context [B, Sk, D]` (keys and values both
    /// projected from it); `mask` is additive and broadcasts to `[B, H, Sq, Sk]`, `causal`
    /// hides key j > query i. Returns `[B, Sq, D]`.
    pub fn attend(&self, query: &Tensor, context: &Tensor, mask: Option<&Tensor>, causal: bool) -> Result<Tensor> {
        self.check("query", query)?;
        self.check("context", context)?;
        if query.shape()[0] != context.shape()[0] {
            return Err(layer_err(
                self.kind(),
                &self.name,
                format!("query {:?} and context {:?} differ in batch", query.shape(), context.shape()),
            ));
        }
        let (q, k, v) = if query.same_storage(context) && query.layout() == context.layout() {
            let [q, k, v] = self.split_heads(&self.proj(query, 0, 3)?)?;
            (q, k, v)
        } else {
            let [q] = self.split_heads(&self.proj(query, 0, 1)?)?;
            let [k, v] = self.split_heads(&self.proj(context, 1, 2)?)?;
            (q, k, v)
        };
        let o = Tensor::scaled_dot_product_attention(&q, &k, &v, mask, causal, None)
            .map_err(|e| layer_err(self.kind(), &self.name, e.to_string()))?;
        let (b, sq) = (query.shape()[0], query.shape()[1]);
        let o = o.permute(&[0, 2, 1, 3])?.reshape(&[b, sq, self.dim()])?;
        self.out_proj.forward(&o)
    }

    /// Self-attention with optional mask and causal masking.
    pub fn self_attend(&self, x: &Tensor, mask: Option<&Tensor>, causal: bool) -> Result<Tensor> {
        self.attend(x, x, mask, causal)
    }
}

impl Module for MultiHeadAttention {
    /// Unmasked self-attention, `[B, S, D] → [B, S, D]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.self_attend(x, None, false)
    }
}
