//! Fused optimizer updates (`cuda/kernels/optim.cu`): the CUDA twins of the `*_update_storage`
//! functions of [`scorch_ops::cpu::optim`], in place on contiguous element ranges of f32 or f64
//! buffers, plus the f64 sum of squares that gradient clipping needs.
//!
//! The checks and their errors are the CPU's, in its order (dtypes, ranges, lengths, step).
//! The step's scalars are computed on the host in f64 exactly as the CPU's `AdamScalars`, and
//! the kernels round every operation explicitly (no FMA contraction), so one step gives the
//! CPU's values bit for bit.

use super::{launch, sfx, Cuda, CudaStorage};
use crate::device::CudaDevice;
use cudarc::driver::LaunchConfig;
use scorch_ops::cpu::optim::{AdamParams, AdamScalars, SgdParams, Span, SpanMut};
use scorch_ops::cpu::CpuStorage;
use scorch_ops::{DType, Error, Result};
use std::ops::Range;

fn same_dtype(op: &'static str, want: DType, got: &[DType]) -> Result<()> {
    match got.iter().find(|&&d| d != want) {
        Some(&d) => Err(Error::DTypeMismatch { op, lhs: want, rhs: d }),
        None => Ok(()),
    }
}

/// Kernel suffix of an optimizer dtype (f32 or f64).
fn opt_sfx(op: &'static str, dtype: DType) -> Result<&'static str> {
    match dtype {
        DType::F32 => Ok("f32"),
        DType::F64 => Ok("f64"),
        dtype => Err(Error::DType { op, dtype }),
    }
}

/// Device address of the start of `r` in `s`, and its length, after the CPU's range check.
fn span(op: &'static str, s: &CudaStorage, r: &Range<usize>) -> Result<(u64, usize)> {
    if r.start > r.end || r.end > s.len() {
        return Err(Error::Shape { op, detail: format!("range {r:?} outside a buffer of {} elements", s.len()) });
    }
    Ok((s.ptr_at(r.start), r.end - r.start))
}

fn check_lens(op: &'static str, n: usize, others: &[(&str, usize)]) -> Result<()> {
    for &(what, len) in others {
        if len != n {
            return Err(Error::Shape { op, detail: format!("{what} has {len} elements, the parameter has {n}") });
        }
    }
    Ok(())
}

fn check_devices(cu: &Cuda, op: &str, bufs: &[&CudaStorage]) -> Result<()> {
    bufs.iter().try_for_each(|s| cu.check(op, s))
}

/// One fused Adam (or AdamW) step at `step` (1-based, already incremented), in place on the
/// parameter `p` and the moments `m`, `v` (f32 or f64, all the same dtype).
pub fn adam_update_storage(
    cu: &Cuda,
    p: SpanMut<CudaStorage>,
    g: Span<CudaStorage>,
    m: SpanMut<CudaStorage>,
    v: SpanMut<CudaStorage>,
    step: u64,
    hp: &AdamParams,
) -> Result<()> {
    const OP: &str = "adam";
    check_devices(cu, OP, &[&*p.0, g.0, &*m.0, &*v.0])?;
    same_dtype(OP, p.0.dtype(), &[g.0.dtype(), m.0.dtype(), v.0.dtype()])?;
    let sx = opt_sfx(OP, p.0.dtype())?;
    let (pp, n) = span(OP, p.0, &p.1)?;
    let (gp, gn) = span(OP, g.0, &g.1)?;
    let (mp, mn) = span(OP, m.0, &m.1)?;
    let (vp, vn) = span(OP, v.0, &v.1)?;
    check_lens("adam", n, &[("grad", gn), ("exp_avg", mn), ("exp_avg_sq", vn)])?;
    // The CPU's scalars in f64; the kernel rounds each to the element type.
    let s = AdamScalars::<f64>::new(step, hp)?;
    let (beta1_w, beta2, one_minus_beta2, neg_step_size) = (s.beta1_w, s.beta2, s.one_minus_beta2, s.neg_step_size);
    let (bc2_sqrt, eps, wd, decay) = (s.bias_correction2_sqrt, s.eps, s.wd, s.decay_factor);
    let decoupled = s.decoupled as i32;
    if n == 0 {
        return Ok(());
    }
    let ni = n as i64;
    launch!(cu, "optim.cu", format!("adam_{sx}"), CudaDevice::cfg_1d(n);
        &pp, &gp, &mp, &vp, &ni, &beta1_w, &beta2, &one_minus_beta2, &neg_step_size, &bc2_sqrt, &eps, &wd, &decay,
        &decoupled)
}

/// One fused SGD step (f32 or f64). `buf` is the momentum buffer, may be `None` when
/// `momentum == 0`; `first` says it holds nothing yet (it is then set to the gradient).
pub fn sgd_update_storage(
    cu: &Cuda,
    p: SpanMut<CudaStorage>,
    g: Span<CudaStorage>,
    buf: Option<SpanMut<CudaStorage>>,
    first: bool,
    hp: &SgdParams,
) -> Result<()> {
    const OP: &str = "sgd";
    check_devices(cu, OP, &[&*p.0, g.0])?;
    if let Some(b) = &buf {
        cu.check(OP, b.0)?;
    }
    let mut dts = vec![g.0.dtype()];
    dts.extend(buf.as_ref().map(|b| b.0.dtype()));
    same_dtype(OP, p.0.dtype(), &dts)?;
    if hp.momentum != 0.0 && buf.is_none() {
        return Err(Error::Msg("sgd: momentum needs a momentum buffer".into()));
    }
    let sx = opt_sfx(OP, p.0.dtype())?;
    // The CPU slices the buffer first, then the parameter and the gradient.
    let (bp, bn) = match &buf {
        Some(b) => span(OP, b.0, &b.1)?,
        None => (0, 0),
    };
    let (pp, n) = span(OP, p.0, &p.1)?;
    let (gp, gn) = span(OP, g.0, &g.1)?;
    let with_momentum = hp.momentum != 0.0;
    check_lens("sgd", n, &[("grad", gn), ("momentum_buffer", if with_momentum { bn } else { n })])?;
    if n == 0 {
        return Ok(());
    }
    let bp: u64 = if with_momentum { bp } else { 0 };
    let (neg_lr, wd, mu, damp) = (-hp.lr, hp.weight_decay, hp.momentum, 1.0 - hp.dampening);
    let (momentum, first, nesterov) = (with_momentum as i32, first as i32, hp.nesterov as i32);
    let ni = n as i64;
    launch!(cu, "optim.cu", format!("sgd_{sx}"), CudaDevice::cfg_1d(n);
        &pp, &gp, &bp, &ni, &neg_lr, &wd, &mu, &damp, &momentum, &first, &nesterov)
}

/// The EMA update `shadow ← lerp(shadow, x, 1 − beta)` (f32 or f64).
pub fn ema_update_storage(cu: &Cuda, shadow: SpanMut<CudaStorage>, x: Span<CudaStorage>, beta: f64) -> Result<()> {
    const OP: &str = "ema";
    check_devices(cu, OP, &[&*shadow.0, x.0])?;
    same_dtype(OP, shadow.0.dtype(), &[x.0.dtype()])?;
    let sx = opt_sfx(OP, shadow.0.dtype())?;
    let (sp, n) = span(OP, shadow.0, &shadow.1)?;
    let (xp, xn) = span(OP, x.0, &x.1)?;
    check_lens("ema", n, &[("source", xn)])?;
    if n == 0 {
        return Ok(());
    }
    let (ni, w) = (n as i64, 1.0 - beta);
    launch!(cu, "optim.cu", format!("ema_{sx}"), CudaDevice::cfg_1d(n); &sp, &xp, &ni, &w)
}

/// Blocks of the sum-of-squares pass (a fixed cap, so the summation order depends only on n).
const SUMSQ_BLOCKS: usize = 1024;

/// `Σ g²` over a range of a float buffer (f32, f64, bf16 or f16), each element widened to f64
/// and the sum taken in f64: what `clip_grad_norm` computes per gradient. Waits for the device.
pub fn grad_sumsq(cu: &Cuda, g: Span<CudaStorage>) -> Result<f64> {
    const OP: &str = "grad_sumsq";
    cu.check(OP, g.0)?;
    let sx = sfx(OP, g.0.dtype())?;
    let (gp, n) = span(OP, g.0, &g.1)?;
    if n == 0 {
        return Ok(0.0);
    }
    let blocks = n.div_ceil(256).clamp(1, SUMSQ_BLOCKS);
    let partial = cu.alloc(DType::F64, blocks)?;
    let out = cu.alloc(DType::F64, 1)?;
    let cfg = |b: usize| LaunchConfig { grid_dim: (b as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    let (pp, op, ni, nb) = (partial.ptr(), out.ptr(), n as i64, blocks as i64);
    launch!(cu, "optim.cu", format!("sumsq_{sx}"), cfg(blocks); &gp, &ni, &pp)?;
    launch!(cu, "optim.cu", "sumsq_final", cfg(1); &pp, &nb, &op)?;
    match out.to_cpu()? {
        CpuStorage::F64(v) if v.len() == 1 => Ok(v[0]),
        other => Err(Error::Msg(format!("grad_sumsq: unexpected result buffer {}", other.dtype()))),
    }
}
