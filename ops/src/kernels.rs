//! The [`Kernels`] trait: the primitive set every backend provides. The engine's
//! differentiable functions call only these. `Cpu` implements it with the rayon kernels in
//! [`crate::cpu`]; the CUDA backend implements it with NVRTC-compiled kernels.

use crate::cpu::attention::AttnGeom;
use crate::cpu::conv::{Conv2dParams, ConvGeom};
use crate::cpu::elementwise::{BinaryOp, UnaryOp};
use crate::cpu::fused::KlubParams;
use crate::cpu::norm::NormKind;
use crate::cpu::pool::Pool2d;
use crate::cpu::reduce::ReduceOp;
use crate::cpu::{self, CpuStorage, RandDist};
use crate::{DType, Layout, Result};

/// A buffer together with the view of it an op reads.
pub type View<'a, S> = (&'a S, &'a Layout);

/// The primitives a backend implements. Outputs are new contiguous buffers.
pub trait Kernels {
    type Storage;
    fn unary(&self, op: UnaryOp, x: View<Self::Storage>) -> Result<Self::Storage>;
    fn binary(
        &self,
        op: BinaryOp,
        a: View<Self::Storage>,
        b: View<Self::Storage>,
    ) -> Result<(Self::Storage, Vec<usize>)>;
    fn where_cond(
        &self,
        c: View<Self::Storage>,
        a: View<Self::Storage>,
        b: View<Self::Storage>,
    ) -> Result<(Self::Storage, Vec<usize>)>;
    fn cast(&self, x: View<Self::Storage>, dtype: DType) -> Result<Self::Storage>;
    fn contiguous(&self, x: View<Self::Storage>) -> Result<Self::Storage>;
    fn copy_into(&self, dst: &mut Self::Storage, dst_l: &Layout, src: View<Self::Storage>) -> Result<()>;
    fn reduce(&self, op: ReduceOp, x: View<Self::Storage>, axes: &[usize]) -> Result<Self::Storage>;
    fn softmax(&self, x: View<Self::Storage>, axis: usize, log: bool) -> Result<Self::Storage>;
    fn cumsum(&self, x: View<Self::Storage>, axis: usize) -> Result<Self::Storage>;
    fn matmul(&self, a: View<Self::Storage>, b: View<Self::Storage>) -> Result<(Self::Storage, Vec<usize>)>;
    fn conv2d(
        &self,
        x: View<Self::Storage>,
        w: View<Self::Storage>,
        p: Conv2dParams,
    ) -> Result<(Self::Storage, ConvGeom)>;
    fn conv2d_bwd_data(
        &self,
        gy: View<Self::Storage>,
        w: View<Self::Storage>,
        cin_hw: [usize; 3],
        p: Conv2dParams,
    ) -> Result<Self::Storage>;
    fn conv2d_bwd_weight(
        &self,
        x: View<Self::Storage>,
        gy: View<Self::Storage>,
        wshape: [usize; 4],
        p: Conv2dParams,
    ) -> Result<Self::Storage>;
    #[allow(clippy::type_complexity)]
    fn norm_fwd(
        &self,
        kind: NormKind,
        x: View<Self::Storage>,
        w: Option<View<Self::Storage>>,
        b: Option<View<Self::Storage>>,
        eps: f64,
    ) -> Result<(Self::Storage, Self::Storage, Self::Storage)>;
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn norm_bwd(
        &self,
        kind: NormKind,
        gy: View<Self::Storage>,
        x: View<Self::Storage>,
        mean: &Self::Storage,
        rstd: &Self::Storage,
        w: Option<View<Self::Storage>>,
    ) -> Result<(Self::Storage, Self::Storage, Self::Storage)>;
    fn attention_fwd(
        &self,
        q: View<Self::Storage>,
        k: View<Self::Storage>,
        v: View<Self::Storage>,
        mask: Option<View<Self::Storage>>,
        scale: Option<f64>,
        causal: bool,
    ) -> Result<(Self::Storage, Self::Storage, AttnGeom)>;
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn attention_bwd(
        &self,
        q: View<Self::Storage>,
        k: View<Self::Storage>,
        v: View<Self::Storage>,
        mask: Option<View<Self::Storage>>,
        out: View<Self::Storage>,
        lse: View<Self::Storage>,
        grad_out: View<Self::Storage>,
        scale: Option<f64>,
        causal: bool,
    ) -> Result<(Self::Storage, Self::Storage, Self::Storage)>;
    fn random(&self, dtype: DType, n: usize, seed: u64, offset: u64, dist: RandDist) -> Result<Self::Storage>;
    fn randint(&self, n: usize, lo: i64, hi: i64, seed: u64, offset: u64) -> Result<Self::Storage>;
    fn avg_pool2d(&self, x: View<Self::Storage>, p: Pool2d) -> Result<Self::Storage>;
    fn avg_pool2d_bwd(&self, gy: View<Self::Storage>, hw: [usize; 2], p: Pool2d) -> Result<Self::Storage>;
    /// Pooled values and the i64 flat in-plane index of each chosen element.
    fn max_pool2d(&self, x: View<Self::Storage>, p: Pool2d) -> Result<(Self::Storage, Self::Storage)>;
    fn upsample_bilinear2d(&self, x: View<Self::Storage>, oh: usize, ow: usize) -> Result<Self::Storage>;
    fn upsample_bilinear2d_bwd(&self, gy: View<Self::Storage>, hw: [usize; 2]) -> Result<Self::Storage>;
    fn index_select(&self, x: View<Self::Storage>, dim: usize, idx: View<Self::Storage>) -> Result<Self::Storage>;
    fn index_add(
        &self,
        src: View<Self::Storage>,
        dim: usize,
        idx: View<Self::Storage>,
        size: usize,
    ) -> Result<Self::Storage>;
    fn gather(&self, x: View<Self::Storage>, dim: usize, idx: View<Self::Storage>) -> Result<Self::Storage>;
    fn scatter_add(
        &self,
        src: View<Self::Storage>,
        dim: usize,
        idx: View<Self::Storage>,
        shape: &[usize],
    ) -> Result<Self::Storage>;
    /// SiD generator loss per sample and the normaliser used, see [`crate::cpu::fused`].
    fn sid_generator_loss(
        &self,
        y_real: View<Self::Storage>,
        y_fake: View<Self::Storage>,
        x_g: View<Self::Storage>,
        alpha: f64,
        weight: Option<&[f64]>,
    ) -> Result<(Self::Storage, Self::Storage)>;
    #[allow(clippy::type_complexity)]
    fn sid_generator_loss_bwd(
        &self,
        y_real: View<Self::Storage>,
        y_fake: View<Self::Storage>,
        x_g: View<Self::Storage>,
        w: &Self::Storage,
        g: View<Self::Storage>,
        alpha: f64,
    ) -> Result<(Self::Storage, Self::Storage, Self::Storage)>;
    fn sid_fake_score_loss(
        &self,
        d: View<Self::Storage>,
        y: View<Self::Storage>,
        weight: &[f64],
    ) -> Result<Self::Storage>;
    fn sid_fake_score_loss_bwd(
        &self,
        d: View<Self::Storage>,
        y: View<Self::Storage>,
        weight: &[f64],
        g: View<Self::Storage>,
    ) -> Result<(Self::Storage, Self::Storage)>;
    fn beta_kl(&self, p: [View<Self::Storage>; 4]) -> Result<Self::Storage>;
    fn beta_kl_bwd(&self, p: [View<Self::Storage>; 4], g: View<Self::Storage>) -> Result<[Self::Storage; 4]>;
    fn beta_klub(&self, xh: View<Self::Storage>, x: View<Self::Storage>, p: &KlubParams) -> Result<Self::Storage>;
    fn beta_klub_bwd(
        &self,
        xh: View<Self::Storage>,
        x: View<Self::Storage>,
        p: &KlubParams,
        g: View<Self::Storage>,
    ) -> Result<Self::Storage>;
    fn patch_embed(
        &self,
        x: View<Self::Storage>,
        tops: &[usize],
        lefts: &[usize],
        ph: usize,
        pw: usize,
    ) -> Result<Self::Storage>;
    fn patch_embed_bwd(
        &self,
        g: View<Self::Storage>,
        xshape: &[usize],
        tops: &[usize],
        lefts: &[usize],
    ) -> Result<Self::Storage>;
}

/// The CPU backend.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu;

impl Kernels for Cpu {
    type Storage = CpuStorage;
    fn unary(&self, op: UnaryOp, x: View<CpuStorage>) -> Result<CpuStorage> {
        cpu::elementwise::unary(op, x.0, x.1)
    }
    fn binary(&self, op: BinaryOp, a: View<CpuStorage>, b: View<CpuStorage>) -> Result<(CpuStorage, Vec<usize>)> {
        cpu::elementwise::binary(op, a.0, a.1, b.0, b.1)
    }
    fn where_cond(
        &self,
        c: View<CpuStorage>,
        a: View<CpuStorage>,
        b: View<CpuStorage>,
    ) -> Result<(CpuStorage, Vec<usize>)> {
        cpu::elementwise::where_cond(c.0, c.1, a.0, a.1, b.0, b.1)
    }
    fn cast(&self, x: View<CpuStorage>, dtype: DType) -> Result<CpuStorage> {
        Ok(cpu::elementwise::cast(x.0, x.1, dtype))
    }
    fn contiguous(&self, x: View<CpuStorage>) -> Result<CpuStorage> {
        Ok(cpu::elementwise::contiguous(x.0, x.1))
    }
    fn copy_into(&self, dst: &mut CpuStorage, dst_l: &Layout, src: View<CpuStorage>) -> Result<()> {
        cpu::elementwise::copy_into(dst, dst_l, src.0, src.1)
    }
    fn reduce(&self, op: ReduceOp, x: View<CpuStorage>, axes: &[usize]) -> Result<CpuStorage> {
        cpu::reduce::reduce(op, x.0, x.1, axes)
    }
    fn softmax(&self, x: View<CpuStorage>, axis: usize, log: bool) -> Result<CpuStorage> {
        cpu::reduce::softmax(x.0, x.1, axis, log)
    }
    fn cumsum(&self, x: View<CpuStorage>, axis: usize) -> Result<CpuStorage> {
        cpu::reduce::cumsum(x.0, x.1, axis)
    }
    fn matmul(&self, a: View<CpuStorage>, b: View<CpuStorage>) -> Result<(CpuStorage, Vec<usize>)> {
        cpu::matmul::matmul(a.0, a.1, b.0, b.1)
    }
    fn conv2d(&self, x: View<CpuStorage>, w: View<CpuStorage>, p: Conv2dParams) -> Result<(CpuStorage, ConvGeom)> {
        cpu::conv::conv2d(x.0, x.1, w.0, w.1, p)
    }
    fn conv2d_bwd_data(
        &self,
        gy: View<CpuStorage>,
        w: View<CpuStorage>,
        cin_hw: [usize; 3],
        p: Conv2dParams,
    ) -> Result<CpuStorage> {
        Ok(cpu::conv::conv2d_bwd_data(gy.0, gy.1, w.0, w.1, cin_hw, p)?.0)
    }
    fn conv2d_bwd_weight(
        &self,
        x: View<CpuStorage>,
        gy: View<CpuStorage>,
        wshape: [usize; 4],
        p: Conv2dParams,
    ) -> Result<CpuStorage> {
        Ok(cpu::conv::conv2d_bwd_weight(x.0, x.1, gy.0, gy.1, wshape, p)?.0)
    }
    fn norm_fwd(
        &self,
        kind: NormKind,
        x: View<CpuStorage>,
        w: Option<View<CpuStorage>>,
        b: Option<View<CpuStorage>>,
        eps: f64,
    ) -> Result<(CpuStorage, CpuStorage, CpuStorage)> {
        cpu::norm::norm_fwd(kind, x.0, x.1, w, b, eps)
    }
    fn norm_bwd(
        &self,
        kind: NormKind,
        gy: View<CpuStorage>,
        x: View<CpuStorage>,
        mean: &CpuStorage,
        rstd: &CpuStorage,
        w: Option<View<CpuStorage>>,
    ) -> Result<(CpuStorage, CpuStorage, CpuStorage)> {
        cpu::norm::norm_bwd(kind, gy.0, gy.1, x.0, x.1, mean, rstd, w)
    }
    fn attention_fwd(
        &self,
        q: View<CpuStorage>,
        k: View<CpuStorage>,
        v: View<CpuStorage>,
        mask: Option<View<CpuStorage>>,
        scale: Option<f64>,
        causal: bool,
    ) -> Result<(CpuStorage, CpuStorage, AttnGeom)> {
        cpu::attention::attention_fwd(q, k, v, mask, scale, causal)
    }
    fn attention_bwd(
        &self,
        q: View<CpuStorage>,
        k: View<CpuStorage>,
        v: View<CpuStorage>,
        mask: Option<View<CpuStorage>>,
        out: View<CpuStorage>,
        lse: View<CpuStorage>,
        grad_out: View<CpuStorage>,
        scale: Option<f64>,
        causal: bool,
    ) -> Result<(CpuStorage, CpuStorage, CpuStorage)> {
        cpu::attention::attention_bwd(q, k, v, mask, out, lse, grad_out, scale, causal)
    }
    fn random(&self, dtype: DType, n: usize, seed: u64, offset: u64, dist: RandDist) -> Result<CpuStorage> {
        cpu::random(dtype, n, seed, offset, dist)
    }
    fn randint(&self, n: usize, lo: i64, hi: i64, seed: u64, offset: u64) -> Result<CpuStorage> {
        cpu::randint(n, lo, hi, seed, offset)
    }
    fn avg_pool2d(&self, x: View<CpuStorage>, p: Pool2d) -> Result<CpuStorage> {
        cpu::pool::avg_pool2d(x.0, x.1, p)
    }
    fn avg_pool2d_bwd(&self, gy: View<CpuStorage>, hw: [usize; 2], p: Pool2d) -> Result<CpuStorage> {
        cpu::pool::avg_pool2d_bwd(gy.0, gy.1, hw, p)
    }
    fn max_pool2d(&self, x: View<CpuStorage>, p: Pool2d) -> Result<(CpuStorage, CpuStorage)> {
        cpu::pool::max_pool2d(x.0, x.1, p)
    }
    fn upsample_bilinear2d(&self, x: View<CpuStorage>, oh: usize, ow: usize) -> Result<CpuStorage> {
        cpu::pool::upsample_bilinear2d(x.0, x.1, oh, ow)
    }
    fn upsample_bilinear2d_bwd(&self, gy: View<CpuStorage>, hw: [usize; 2]) -> Result<CpuStorage> {
        cpu::pool::upsample_bilinear2d_bwd(gy.0, gy.1, hw)
    }
    fn index_select(&self, x: View<CpuStorage>, dim: usize, idx: View<CpuStorage>) -> Result<CpuStorage> {
        let size = *x.1.shape.get(dim).ok_or(crate::Error::Axis { axis: dim as isize, rank: x.1.rank() })?;
        let iv = cpu::index::read_indices("index_select", idx.0, idx.1, size)?;
        cpu::index::index_select(x.0, x.1, dim, &iv)
    }
    fn index_add(&self, src: View<CpuStorage>, dim: usize, idx: View<CpuStorage>, size: usize) -> Result<CpuStorage> {
        let iv = cpu::index::read_indices("index_add", idx.0, idx.1, size)?;
        cpu::index::index_add(src.0, src.1, dim, &iv, size)
    }
    fn gather(&self, x: View<CpuStorage>, dim: usize, idx: View<CpuStorage>) -> Result<CpuStorage> {
        let size = *x.1.shape.get(dim).ok_or(crate::Error::Axis { axis: dim as isize, rank: x.1.rank() })?;
        let iv = cpu::index::read_indices("gather", idx.0, idx.1, size)?;
        cpu::index::gather(x.0, x.1, dim, &iv, &idx.1.shape)
    }
    fn scatter_add(
        &self,
        src: View<CpuStorage>,
        dim: usize,
        idx: View<CpuStorage>,
        shape: &[usize],
    ) -> Result<CpuStorage> {
        let size = *shape.get(dim).ok_or(crate::Error::Axis { axis: dim as isize, rank: shape.len() })?;
        let iv = cpu::index::read_indices("scatter_add", idx.0, idx.1, size)?;
        cpu::index::scatter_add(src.0, src.1, dim, &iv, shape)
    }
    fn sid_generator_loss(
        &self,
        y_real: View<CpuStorage>,
        y_fake: View<CpuStorage>,
        x_g: View<CpuStorage>,
        alpha: f64,
        weight: Option<&[f64]>,
    ) -> Result<(CpuStorage, CpuStorage)> {
        cpu::fused::sid_generator_loss(y_real, y_fake, x_g, alpha, weight)
    }
    fn sid_generator_loss_bwd(
        &self,
        y_real: View<CpuStorage>,
        y_fake: View<CpuStorage>,
        x_g: View<CpuStorage>,
        w: &CpuStorage,
        g: View<CpuStorage>,
        alpha: f64,
    ) -> Result<(CpuStorage, CpuStorage, CpuStorage)> {
        cpu::fused::sid_generator_loss_bwd(y_real, y_fake, x_g, w, g, alpha)
    }
    fn sid_fake_score_loss(&self, d: View<CpuStorage>, y: View<CpuStorage>, weight: &[f64]) -> Result<CpuStorage> {
        cpu::fused::sid_fake_score_loss(d, y, weight)
    }
    fn sid_fake_score_loss_bwd(
        &self,
        d: View<CpuStorage>,
        y: View<CpuStorage>,
        weight: &[f64],
        g: View<CpuStorage>,
    ) -> Result<(CpuStorage, CpuStorage)> {
        cpu::fused::sid_fake_score_loss_bwd(d, y, weight, g)
    }
    fn beta_kl(&self, p: [View<CpuStorage>; 4]) -> Result<CpuStorage> {
        cpu::fused::beta_kl(p)
    }
    fn beta_kl_bwd(&self, p: [View<CpuStorage>; 4], g: View<CpuStorage>) -> Result<[CpuStorage; 4]> {
        cpu::fused::beta_kl_bwd(p, g)
    }
    fn beta_klub(&self, xh: View<CpuStorage>, x: View<CpuStorage>, p: &KlubParams) -> Result<CpuStorage> {
        cpu::fused::beta_klub(xh, x, p)
    }
    fn beta_klub_bwd(
        &self,
        xh: View<CpuStorage>,
        x: View<CpuStorage>,
        p: &KlubParams,
        g: View<CpuStorage>,
    ) -> Result<CpuStorage> {
        cpu::fused::beta_klub_bwd(xh, x, p, g)
    }
    fn patch_embed(
        &self,
        x: View<CpuStorage>,
        tops: &[usize],
        lefts: &[usize],
        ph: usize,
        pw: usize,
    ) -> Result<CpuStorage> {
        cpu::fused::patch_embed(x, tops, lefts, ph, pw)
    }
    fn patch_embed_bwd(
        &self,
        g: View<CpuStorage>,
        xshape: &[usize],
        tops: &[usize],
        lefts: &[usize],
    ) -> Result<CpuStorage> {
        cpu::fused::patch_embed_bwd(g, xshape, tops, lefts)
    }
}
