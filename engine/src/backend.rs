//! [`Dispatch`]: the [`Kernels`] trait over the engine's [`Storage`], routing each call to the
//! CPU kernels or to the CUDA backend of the device holding the first operand. Every other
//! operand must live on the same device; a mix is a clear error, never a silent copy.

use crate::tensor::Storage;
use scorch_cuda::{Cuda, CudaStorage};
use scorch_ops::cpu::attention::AttnGeom;
use scorch_ops::cpu::conv::{Conv2dParams, ConvGeom};
use scorch_ops::cpu::elementwise::{BinaryOp, UnaryOp};
use scorch_ops::cpu::fused::KlubParams;
use scorch_ops::cpu::norm::NormKind;
use scorch_ops::cpu::pool::Pool2d;
use scorch_ops::cpu::reduce::ReduceOp;
use scorch_ops::cpu::{CpuStorage, RandDist};
use scorch_ops::kernels::View;
use scorch_ops::{Cpu, DType, Error, Kernels, Layout, Result};

fn mixed(s: &Storage, want: &str) -> Error {
    Error::Msg(format!(
        "operands on different devices: expected {want}, found an operand on {} (move tensors with to_device first)",
        s.device()
    ))
}

/// Unwraps operands for the CPU kernels.
#[derive(Clone, Copy)]
struct OnCpu;
impl OnCpu {
    fn v<'a>(self, (s, l): View<'a, Storage>) -> Result<View<'a, CpuStorage>> {
        Ok((self.r(s)?, l))
    }
    fn o<'a>(self, v: Option<View<'a, Storage>>) -> Result<Option<View<'a, CpuStorage>>> {
        v.map(|v| self.v(v)).transpose()
    }
    fn r(self, s: &Storage) -> Result<&CpuStorage> {
        match s {
            Storage::Cpu(c) => Ok(c),
            other => Err(mixed(other, "cpu")),
        }
    }
    fn m(self, s: &mut Storage) -> Result<&mut CpuStorage> {
        match s {
            Storage::Cpu(c) => Ok(c),
            other => Err(mixed(other, "cpu")),
        }
    }
    fn s(self, c: CpuStorage) -> Storage {
        Storage::Cpu(c)
    }
}

/// Unwraps operands for the CUDA kernels of one device.
#[derive(Clone, Copy)]
struct OnCuda(usize);
impl OnCuda {
    fn v<'a>(self, (s, l): View<'a, Storage>) -> Result<View<'a, CudaStorage>> {
        Ok((self.r(s)?, l))
    }
    fn o<'a>(self, v: Option<View<'a, Storage>>) -> Result<Option<View<'a, CudaStorage>>> {
        v.map(|v| self.v(v)).transpose()
    }
    fn r(self, s: &Storage) -> Result<&CudaStorage> {
        match s {
            Storage::Cuda(c) if c.ordinal() == self.0 => Ok(c),
            other => Err(mixed(other, &format!("cuda:{}", self.0))),
        }
    }
    fn m(self, s: &mut Storage) -> Result<&mut CudaStorage> {
        if !matches!(s, Storage::Cuda(c) if c.ordinal() == self.0) {
            return Err(mixed(s, &format!("cuda:{}", self.0)));
        }
        match s {
            Storage::Cuda(c) => Ok(c),
            Storage::Cpu(_) => unreachable!("checked above"),
        }
    }
    fn s(self, c: CudaStorage) -> Storage {
        Storage::Cuda(c)
    }
}

/// Runs `$body` with `$k` bound to the backend of `$first`'s device and `$d` to the matching
/// operand unwrapper (the body is written once and compiled for both backends).
macro_rules! dispatch {
    ($first:expr, |$k:ident, $d:ident| $body:expr) => {
        match $first {
            Storage::Cpu(_) => {
                let $k = Cpu;
                let $d = OnCpu;
                $body
            }
            Storage::Cuda(c) => {
                let $k = Cuda::of(c);
                let $d = OnCuda(c.ordinal());
                $body
            }
        }
    };
}

/// The engine's backend switch.
#[derive(Clone, Copy, Debug, Default)]
pub struct Dispatch;

impl Kernels for Dispatch {
    type Storage = Storage;

    fn unary(&self, op: UnaryOp, x: View<Storage>) -> Result<Storage> {
        dispatch!(x.0, |k, d| Ok(d.s(k.unary(op, d.v(x)?)?)))
    }
    fn binary(&self, op: BinaryOp, a: View<Storage>, b: View<Storage>) -> Result<(Storage, Vec<usize>)> {
        dispatch!(a.0, |k, d| {
            let (o, sh) = k.binary(op, d.v(a)?, d.v(b)?)?;
            Ok((d.s(o), sh))
        })
    }
    fn where_cond(&self, c: View<Storage>, a: View<Storage>, b: View<Storage>) -> Result<(Storage, Vec<usize>)> {
        dispatch!(a.0, |k, d| {
            let (o, sh) = k.where_cond(d.v(c)?, d.v(a)?, d.v(b)?)?;
            Ok((d.s(o), sh))
        })
    }
    fn cast(&self, x: View<Storage>, dtype: DType) -> Result<Storage> {
        dispatch!(x.0, |k, d| Ok(d.s(k.cast(d.v(x)?, dtype)?)))
    }
    fn contiguous(&self, x: View<Storage>) -> Result<Storage> {
        dispatch!(x.0, |k, d| Ok(d.s(k.contiguous(d.v(x)?)?)))
    }
    fn copy_into(&self, dst: &mut Storage, dst_l: &Layout, src: View<Storage>) -> Result<()> {
        dispatch!(src.0, |k, d| k.copy_into(d.m(dst)?, dst_l, d.v(src)?))
    }
    fn reduce(&self, op: ReduceOp, x: View<Storage>, axes: &[usize]) -> Result<Storage> {
        dispatch!(x.0, |k, d| Ok(d.s(k.reduce(op, d.v(x)?, axes)?)))
    }
    fn softmax(&self, x: View<Storage>, axis: usize, log: bool) -> Result<Storage> {
        dispatch!(x.0, |k, d| Ok(d.s(k.softmax(d.v(x)?, axis, log)?)))
    }
    fn cumsum(&self, x: View<Storage>, axis: usize) -> Result<Storage> {
        dispatch!(x.0, |k, d| Ok(d.s(k.cumsum(d.v(x)?, axis)?)))
    }
    fn matmul(&self, a: View<Storage>, b: View<Storage>) -> Result<(Storage, Vec<usize>)> {
        dispatch!(a.0, |k, d| {
            let (o, sh) = k.matmul(d.v(a)?, d.v(b)?)?;
            Ok((d.s(o), sh))
        })
    }
    fn conv2d(&self, x: View<Storage>, w: View<Storage>, p: Conv2dParams) -> Result<(Storage, ConvGeom)> {
        dispatch!(x.0, |k, d| {
            let (o, g) = k.conv2d(d.v(x)?, d.v(w)?, p)?;
            Ok((d.s(o), g))
        })
    }
    fn conv2d_bwd_data(
        &self,
        gy: View<Storage>,
        w: View<Storage>,
        cin_hw: [usize; 3],
        p: Conv2dParams,
    ) -> Result<Storage> {
        dispatch!(gy.0, |k, d| Ok(d.s(k.conv2d_bwd_data(d.v(gy)?, d.v(w)?, cin_hw, p)?)))
    }
    fn conv2d_bwd_weight(
        &self,
        x: View<Storage>,
        gy: View<Storage>,
        ws: [usize; 4],
        p: Conv2dParams,
    ) -> Result<Storage> {
        dispatch!(x.0, |k, d| Ok(d.s(k.conv2d_bwd_weight(d.v(x)?, d.v(gy)?, ws, p)?)))
    }
    fn norm_fwd(
        &self,
        kind: NormKind,
        x: View<Storage>,
        w: Option<View<Storage>>,
        b: Option<View<Storage>>,
        eps: f64,
    ) -> Result<(Storage, Storage, Storage)> {
        dispatch!(x.0, |k, d| {
            let (y, m, r) = k.norm_fwd(kind, d.v(x)?, d.o(w)?, d.o(b)?, eps)?;
            Ok((d.s(y), d.s(m), d.s(r)))
        })
    }
    fn norm_bwd(
        &self,
        kind: NormKind,
        gy: View<Storage>,
        x: View<Storage>,
        mean: &Storage,
        rstd: &Storage,
        w: Option<View<Storage>>,
    ) -> Result<(Storage, Storage, Storage)> {
        dispatch!(x.0, |k, d| {
            let (dx, dw, db) = k.norm_bwd(kind, d.v(gy)?, d.v(x)?, d.r(mean)?, d.r(rstd)?, d.o(w)?)?;
            Ok((d.s(dx), d.s(dw), d.s(db)))
        })
    }
    fn attention_fwd(
        &self,
        q: View<Storage>,
        kk: View<Storage>,
        v: View<Storage>,
        mask: Option<View<Storage>>,
        scale: Option<f64>,
        causal: bool,
    ) -> Result<(Storage, Storage, AttnGeom)> {
        dispatch!(q.0, |k, d| {
            let (o, lse, g) = k.attention_fwd(d.v(q)?, d.v(kk)?, d.v(v)?, d.o(mask)?, scale, causal)?;
            Ok((d.s(o), d.s(lse), g))
        })
    }
    fn attention_bwd(
        &self,
        q: View<Storage>,
        kk: View<Storage>,
        v: View<Storage>,
        mask: Option<View<Storage>>,
        out: View<Storage>,
        lse: View<Storage>,
        grad_out: View<Storage>,
        scale: Option<f64>,
        causal: bool,
    ) -> Result<(Storage, Storage, Storage)> {
        dispatch!(q.0, |k, d| {
            let (dq, dk, dv) = k.attention_bwd(
                d.v(q)?,
                d.v(kk)?,
                d.v(v)?,
                d.o(mask)?,
                d.v(out)?,
                d.v(lse)?,
                d.v(grad_out)?,
                scale,
                causal,
            )?;
            Ok((d.s(dq), d.s(dk), d.s(dv)))
        })
    }
    fn random(&self, _dtype: DType, _n: usize, _seed: u64, _offset: u64, _dist: RandDist) -> Result<Storage> {
        Err(Error::Msg("Dispatch::random needs a device: use random_on".into()))
    }
    fn randint(&self, _n: usize, _lo: i64, _hi: i64, _seed: u64, _offset: u64) -> Result<Storage> {
        Err(Error::Msg("Dispatch::randint needs a device: use randint_on".into()))
    }
    fn avg_pool2d(&self, x: View<Storage>, p: Pool2d) -> Result<Storage> {
        dispatch!(x.0, |k, d| Ok(d.s(k.avg_pool2d(d.v(x)?, p)?)))
    }
    fn avg_pool2d_bwd(&self, gy: View<Storage>, hw: [usize; 2], p: Pool2d) -> Result<Storage> {
        dispatch!(gy.0, |k, d| Ok(d.s(k.avg_pool2d_bwd(d.v(gy)?, hw, p)?)))
    }
    fn max_pool2d(&self, x: View<Storage>, p: Pool2d) -> Result<(Storage, Storage)> {
        dispatch!(x.0, |k, d| {
            let (o, i) = k.max_pool2d(d.v(x)?, p)?;
            Ok((d.s(o), d.s(i)))
        })
    }
    fn upsample_bilinear2d(&self, x: View<Storage>, oh: usize, ow: usize) -> Result<Storage> {
        dispatch!(x.0, |k, d| Ok(d.s(k.upsample_bilinear2d(d.v(x)?, oh, ow)?)))
    }
    fn upsample_bilinear2d_bwd(&self, gy: View<Storage>, hw: [usize; 2]) -> Result<Storage> {
        dispatch!(gy.0, |k, d| Ok(d.s(k.upsample_bilinear2d_bwd(d.v(gy)?, hw)?)))
    }
    fn index_select(&self, x: View<Storage>, dim: usize, idx: View<Storage>) -> Result<Storage> {
        dispatch!(x.0, |k, d| Ok(d.s(k.index_select(d.v(x)?, dim, d.v(idx)?)?)))
    }
    fn index_add(&self, src: View<Storage>, dim: usize, idx: View<Storage>, size: usize) -> Result<Storage> {
        dispatch!(src.0, |k, d| Ok(d.s(k.index_add(d.v(src)?, dim, d.v(idx)?, size)?)))
    }
    fn gather(&self, x: View<Storage>, dim: usize, idx: View<Storage>) -> Result<Storage> {
        dispatch!(x.0, |k, d| Ok(d.s(k.gather(d.v(x)?, dim, d.v(idx)?)?)))
    }
    fn scatter_add(&self, src: View<Storage>, dim: usize, idx: View<Storage>, shape: &[usize]) -> Result<Storage> {
        dispatch!(src.0, |k, d| Ok(d.s(k.scatter_add(d.v(src)?, dim, d.v(idx)?, shape)?)))
    }
    fn sid_generator_loss(
        &self,
        y_real: View<Storage>,
        y_fake: View<Storage>,
        x_g: View<Storage>,
        alpha: f64,
        weight: Option<&[f64]>,
    ) -> Result<(Storage, Storage)> {
        dispatch!(y_real.0, |k, d| {
            let (l, w) = k.sid_generator_loss(d.v(y_real)?, d.v(y_fake)?, d.v(x_g)?, alpha, weight)?;
            Ok((d.s(l), d.s(w)))
        })
    }
    fn sid_generator_loss_bwd(
        &self,
        y_real: View<Storage>,
        y_fake: View<Storage>,
        x_g: View<Storage>,
        w: &Storage,
        g: View<Storage>,
        alpha: f64,
    ) -> Result<(Storage, Storage, Storage)> {
        dispatch!(y_real.0, |k, d| {
            let (a, b, c) = k.sid_generator_loss_bwd(d.v(y_real)?, d.v(y_fake)?, d.v(x_g)?, d.r(w)?, d.v(g)?, alpha)?;
            Ok((d.s(a), d.s(b), d.s(c)))
        })
    }
    fn sid_fake_score_loss(&self, dn: View<Storage>, y: View<Storage>, weight: &[f64]) -> Result<Storage> {
        dispatch!(dn.0, |k, d| Ok(d.s(k.sid_fake_score_loss(d.v(dn)?, d.v(y)?, weight)?)))
    }
    fn sid_fake_score_loss_bwd(
        &self,
        dn: View<Storage>,
        y: View<Storage>,
        weight: &[f64],
        g: View<Storage>,
    ) -> Result<(Storage, Storage)> {
        dispatch!(dn.0, |k, d| {
            let (a, b) = k.sid_fake_score_loss_bwd(d.v(dn)?, d.v(y)?, weight, d.v(g)?)?;
            Ok((d.s(a), d.s(b)))
        })
    }
    fn beta_kl(&self, p: [View<Storage>; 4]) -> Result<Storage> {
        dispatch!(p[0].0, |k, d| Ok(d.s(k.beta_kl([d.v(p[0])?, d.v(p[1])?, d.v(p[2])?, d.v(p[3])?])?)))
    }
    fn beta_kl_bwd(&self, p: [View<Storage>; 4], g: View<Storage>) -> Result<[Storage; 4]> {
        dispatch!(p[0].0, |k, d| {
            let r = k.beta_kl_bwd([d.v(p[0])?, d.v(p[1])?, d.v(p[2])?, d.v(p[3])?], d.v(g)?)?;
            Ok(r.map(|s| d.s(s)))
        })
    }
    fn beta_klub(&self, xh: View<Storage>, x: View<Storage>, p: &KlubParams) -> Result<Storage> {
        dispatch!(xh.0, |k, d| Ok(d.s(k.beta_klub(d.v(xh)?, d.v(x)?, p)?)))
    }
    fn beta_klub_bwd(&self, xh: View<Storage>, x: View<Storage>, p: &KlubParams, g: View<Storage>) -> Result<Storage> {
        dispatch!(xh.0, |k, d| Ok(d.s(k.beta_klub_bwd(d.v(xh)?, d.v(x)?, p, d.v(g)?)?)))
    }
    fn patch_embed(&self, x: View<Storage>, tops: &[usize], lefts: &[usize], ph: usize, pw: usize) -> Result<Storage> {
        dispatch!(x.0, |k, d| Ok(d.s(k.patch_embed(d.v(x)?, tops, lefts, ph, pw)?)))
    }
    fn patch_embed_bwd(&self, g: View<Storage>, xshape: &[usize], tops: &[usize], lefts: &[usize]) -> Result<Storage> {
        dispatch!(g.0, |k, d| Ok(d.s(k.patch_embed_bwd(d.v(g)?, xshape, tops, lefts)?)))
    }
}

/// A buffer and the element range an update covers.
type Span<'a> = (&'a Storage, std::ops::Range<usize>);
type SpanMut<'a> = (&'a mut Storage, std::ops::Range<usize>);

fn split_devices(op: &str) -> Error {
    Error::Msg(format!("{op}: parameter, gradient and optimizer state live on different devices"))
}

/// Fused Adam / AdamW update on the buffers' device (see `scorch_ops::cpu::optim`).
pub fn adam_update_storage(
    p: SpanMut,
    g: Span,
    m: SpanMut,
    v: SpanMut,
    step: u64,
    hp: &scorch_ops::cpu::optim::AdamParams,
) -> Result<()> {
    use scorch_ops::cpu::optim as cpu;
    match (p.0, g.0, m.0, v.0) {
        (Storage::Cpu(ps), Storage::Cpu(gs), Storage::Cpu(ms), Storage::Cpu(vs)) => {
            cpu::adam_update_storage((ps, p.1), (gs, g.1), (ms, m.1), (vs, v.1), step, hp)
        }
        (Storage::Cuda(ps), Storage::Cuda(gs), Storage::Cuda(ms), Storage::Cuda(vs)) => {
            let cu = Cuda::of(ps);
            scorch_cuda::backend::optim::adam_update_storage(&cu, (ps, p.1), (gs, g.1), (ms, m.1), (vs, v.1), step, hp)
        }
        _ => Err(split_devices("adam")),
    }
}

/// Fused SGD update (momentum buffer optional) on the buffers' device.
pub fn sgd_update_storage(
    p: SpanMut,
    g: Span,
    buf: Option<SpanMut>,
    first: bool,
    hp: &scorch_ops::cpu::optim::SgdParams,
) -> Result<()> {
    use scorch_ops::cpu::optim as cpu;
    match (p.0, g.0) {
        (Storage::Cpu(ps), Storage::Cpu(gs)) => {
            let b = match buf {
                Some((Storage::Cpu(b), r)) => Some((b, r)),
                Some(_) => return Err(split_devices("sgd")),
                None => None,
            };
            cpu::sgd_update_storage((ps, p.1), (gs, g.1), b, first, hp)
        }
        (Storage::Cuda(ps), Storage::Cuda(gs)) => {
            let b = match buf {
                Some((Storage::Cuda(b), r)) => Some((b, r)),
                Some(_) => return Err(split_devices("sgd")),
                None => None,
            };
            let cu = Cuda::of(ps);
            scorch_cuda::backend::optim::sgd_update_storage(&cu, (ps, p.1), (gs, g.1), b, first, hp)
        }
        _ => Err(split_devices("sgd")),
    }
}

/// EMA update `shadow ← β·shadow + (1−β)·x` on the buffers' device.
pub fn ema_update_storage(shadow: SpanMut, x: Span, beta: f64) -> Result<()> {
    match (shadow.0, x.0) {
        (Storage::Cpu(s), Storage::Cpu(xs)) => {
            scorch_ops::cpu::optim::ema_update_storage((s, shadow.1), (xs, x.1), beta)
        }
        (Storage::Cuda(s), Storage::Cuda(xs)) => {
            let cu = Cuda::of(s);
            scorch_cuda::backend::optim::ema_update_storage(&cu, (s, shadow.1), (xs, x.1), beta)
        }
        _ => Err(split_devices("ema")),
    }
}
