//! Scaled dot-product attention (`cuda/kernels/attention.cu`), with the CPU reference's
//! semantics (`scorch_ops::cpu::attention`): `q [B,H,Sq,D]`, `k [B,H,Sk,D]`, `v [B,H,Sk,Dv]`,
//! an optional additive mask broadcast to `[B,H,Sq,Sk]`, top-left causal masking (query i
//! sees keys j ≤ i), scale 1/√D by default. The forward returns the output in the input dtype
//! and the natural-log `lse [B,H,Sq]` in f32 (f64 for f64); a fully masked row gives output 0
//! and lse −∞, and the backward treats its probabilities as 0.
//!
//! Two paths:
//!
//! 1. **General** (any head dims, mask, causal, f32/f64/bf16/f16): bf16/f16 inputs are cast to
//!    f32 first (as the CPU does), so scores and probabilities are f32 (f64 for f64). Per
//!    chunk of heads (≤ 256 MB of scores each): `S = Q·Kᵀ` by cuBLAS, `attn_rows_fwd_*` (scale,
//!    mask, causal, row max, exp, sum, lse, `P` in place), `O = P·V` by cuBLAS. Backward:
//!    `S = Q·Kᵀ` and `dP = dO·Vᵀ` by cuBLAS, `attn_rows_bwd_*` (P recomputed from the lse,
//!    `δ = rowsum(dO∘O)`, `dS = P∘(dP − δ)·scale`), then `dV = Pᵀ·dO`, `dQ = dS·K`,
//!    `dK = dSᵀ·Q` by cuBLAS.
//! 2. **Flash** (no mask, causal or not, `D = Dv ∈ {32, 64, 128}`): fused kernels with an
//!    online softmax that never write the score matrix. Forward: `attn_flash_fwd_f32_d*`
//!    (SIMT, exact f32) and `attn_flash_fwd_{bf16,f16}_d*` (mma.sync tensor cores, f32
//!    accumulation, probabilities rounded to the input type for `P·V` as in FlashAttention).
//!    Backward (bf16/f16 only; f32 takes path 1): `attn_delta_*` computes δ, then
//!    `attn_flash_bwd_{bf16,f16}_d*` (FlashAttention-2 style: a block owns 64 keys and loops over
//!    query tiles recomputing P from the lse; dK, dV in registers; dQ added atomically into an
//!    f32 buffer, then cast).
//!
//! The flash kernels are used whenever they apply, unless `SCORCH_ATTENTION=gemm` (read on
//! every call) forces path 1; the deterministic mode ([`super::deterministic`]) takes path 1
//! for the backward only (its dQ has no atomics).

use super::elementwise::cast;
use super::matmul::{gemm, Mat};
use super::{cfg_rows, launch, sfx, Contig, Cuda, CudaStorage};
use cudarc::driver::LaunchConfig;
use scorch_ops::cpu::attention::AttnGeom;
use scorch_ops::kernels::View;
use scorch_ops::{DType, Error, Layout, Result};

const FAM: &str = "attention.cu";
/// Bytes of one score scratch buffer of the general path (whole heads per chunk, at least one).
const SCRATCH_BYTES: usize = 256 << 20;

/// `SCORCH_ATTENTION=gemm` forces the general path.
fn gemm_forced() -> bool {
    std::env::var("SCORCH_ATTENTION").is_ok_and(|v| v == "gemm")
}

/// All operands share one float dtype (returned).
fn same_float(op: &'static str, xs: &[&CudaStorage]) -> Result<DType> {
    let d = xs[0].dtype();
    if !d.is_float() {
        return Err(Error::DType { op, dtype: d });
    }
    for x in xs {
        if x.dtype() != d {
            return Err(Error::DTypeMismatch { op, lhs: d, rhs: x.dtype() });
        }
    }
    Ok(d)
}

/// The mask as the row kernels read it, in the operands' dtype: element `(b, h, i, j)` at
/// `ptr + b·st[0] + h·st[1] + i·st[2] + j·st[3]` (broadcast dims have stride 0).
struct MaskArg {
    ptr: u64,
    st: [i64; 4],
    /// A cast copy when the mask came in another dtype (the backward does not require one).
    _cast: Option<CudaStorage>,
}

fn mask_arg(
    cu: &Cuda,
    g: &AttnGeom,
    ql: &Layout,
    mask: Option<View<CudaStorage>>,
    dt: DType,
) -> Result<Option<MaskArg>> {
    let Some((m, ml)) = mask else { return Ok(None) };
    let full = g.mask_shape(ql.shape[0], ql.shape[1]);
    let shape_err =
        || Error::Shape { op: "attention", detail: format!("mask {:?} does not broadcast to {full:?}", ml.shape) };
    let keep = if m.dtype() == dt { None } else { Some(cast(cu, (m, ml), dt)?) };
    let (m, ml) = match &keep {
        Some(c) => (c, Layout::contiguous(&ml.shape)),
        None => (m, ml.clone()),
    };
    let bl = ml.broadcast_to(&full).map_err(|_| shape_err())?;
    let st = [bl.strides[0] as i64, bl.strides[1] as i64, bl.strides[2] as i64, bl.strides[3] as i64];
    let ptr = m.ptr_at(bl.offset);
    Ok(Some(MaskArg { ptr, st, _cast: keep }))
}

/// The view as a contiguous buffer of dtype `dt` (cast when it differs).
fn as_dtype<'a>(cu: &Cuda, v: View<'a, CudaStorage>, dt: DType) -> Result<Contig<'a>> {
    if v.0.dtype() == dt {
        cu.contig(v)
    } else {
        Ok(Contig::Owned(cast(cu, v, dt)?))
    }
}

/// A contiguous buffer of `n` elements cast to `dt` (returned as is when it already has it).
fn to_dtype(cu: &Cuda, s: CudaStorage, n: usize, dt: DType) -> Result<CudaStorage> {
    if s.dtype() == dt {
        Ok(s)
    } else {
        cast(cu, (&s, &Layout::contiguous(&[n])), dt)
    }
}

/// Zeroes `bytes` bytes at device address `ptr`.
fn zero(cu: &Cuda, ptr: u64, bytes: usize) -> Result<()> {
    if bytes == 0 {
        return Ok(());
    }
    // SAFETY: the range lies inside a live allocation on this stream (callers pass a buffer
    // they own and its extent).
    unsafe { cudarc::driver::sys::cuMemsetD8Async(ptr, 0, bytes, cu.dev.stream.cu_stream()) }
        .result()
        .map_err(|e| Error::Msg(format!("CUDA memset failed: {e:?}")))
}

/// `C[b] = op(A[b])·op(B[b])` into contiguous `[batch, m, n]` at `c`; zeros when `k = 0`.
fn mm(cu: &Cuda, dt: DType, (m, n, k): (usize, usize, usize), a: Mat, b: Mat, c: u64, batch: usize) -> Result<()> {
    if k == 0 {
        return zero(cu, c, batch * m * n * dt.size());
    }
    gemm(cu, dt, (m, n, k), a, b, c, n, m * n, batch, 1.0, 0.0)
}

/// Heads per chunk of the general path: score scratch of at most [`SCRATCH_BYTES`].
fn chunk_heads(g: &AttnGeom, dt: DType) -> usize {
    SCRATCH_BYTES.checked_div(g.sq * g.sk * dt.size()).unwrap_or(usize::MAX).clamp(1, g.bh.max(1))
}

/// Whether the flash kernels take this problem (`bwd`: the backward, bf16/f16 only).
fn flash_ok(g: &AttnGeom, dt: DType, masked: bool, bwd: bool) -> bool {
    let types =
        if bwd { matches!(dt, DType::BF16 | DType::F16) } else { matches!(dt, DType::F32 | DType::BF16 | DType::F16) };
    types
        && !masked
        && g.d == g.dv
        && matches!(g.d, 32 | 64 | 128)
        && g.bh > 0
        && g.sq > 0
        && g.sk > 0
        && g.bh <= 65_535
        && g.sq.div_ceil(32) <= 65_535
        && g.sk.div_ceil(64) <= 65_535
        && !gemm_forced()
        && !(bwd && super::deterministic())
}

fn grid(x: usize, y: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (x as u32, y as u32, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 }
}

pub fn attention_fwd(
    cu: &Cuda,
    q: View<CudaStorage>,
    k: View<CudaStorage>,
    v: View<CudaStorage>,
    mask: Option<View<CudaStorage>>,
    scale: Option<f64>,
    causal: bool,
) -> Result<(CudaStorage, CudaStorage, AttnGeom)> {
    let g = AttnGeom::new(&q.1.shape, &k.1.shape, &v.1.shape, scale, causal)?;
    let mut all = vec![q.0, k.0, v.0];
    if let Some((m, _)) = mask {
        all.push(m);
    }
    for s in &all {
        cu.check("attention", s)?;
    }
    let dt = same_float("attention", &all)?;
    let ma = mask_arg(cu, &g, q.1, mask, dt)?;
    let (o, lse) = if flash_ok(&g, dt, ma.is_some(), false) {
        fwd_flash(cu, &g, dt, q, k, v)?
    } else {
        fwd_general(cu, &g, dt, q, k, v, ma.as_ref(), q.1.shape[1])?
    };
    Ok((o, lse, g))
}

fn fwd_flash(
    cu: &Cuda,
    g: &AttnGeom,
    dt: DType,
    q: View<CudaStorage>,
    k: View<CudaStorage>,
    v: View<CudaStorage>,
) -> Result<(CudaStorage, CudaStorage)> {
    let (q, k, v) = (cu.contig(q)?, cu.contig(k)?, cu.contig(v)?);
    let o = cu.alloc(dt, g.bh * g.sq * g.dv)?;
    let lse = cu.alloc(DType::F32, g.bh * g.sq)?;
    let (qp, kp, vp, op, lp) = (q.ptr(), k.ptr(), v.ptr(), o.ptr(), lse.ptr());
    let (sq, sk, causal) = (g.sq as i64, g.sk as i64, g.causal as i32);
    let name = format!("attn_flash_fwd_{}_d{}", sfx("attention", dt)?, g.d);
    if dt == DType::F32 {
        let scale = g.scale as f32;
        launch!(cu, FAM, name, grid(g.sq.div_ceil(32), g.bh); &qp, &kp, &vp, &op, &lp, &sq, &sk, &scale, &causal)?;
    } else {
        let scale_log2 = (g.scale * std::f64::consts::LOG2_E) as f32;
        launch!(cu, FAM, name, grid(g.sq.div_ceil(64), g.bh); &qp, &kp, &vp, &op, &lp, &sq, &sk, &scale_log2, &causal)?;
    }
    Ok((o, lse))
}

#[allow(clippy::too_many_arguments)]
fn fwd_general(
    cu: &Cuda,
    g: &AttnGeom,
    dt: DType,
    q: View<CudaStorage>,
    k: View<CudaStorage>,
    v: View<CudaStorage>,
    mask: Option<&MaskArg>,
    heads: usize,
) -> Result<(CudaStorage, CudaStorage)> {
    let cdt = if dt == DType::F64 { DType::F64 } else { DType::F32 };
    let (q, k, v) = (as_dtype(cu, q, cdt)?, as_dtype(cu, k, cdt)?, as_dtype(cu, v, cdt)?);
    let (bh, sq, sk, d, dv) = (g.bh, g.sq, g.sk, g.d, g.dv);
    let o = cu.alloc(cdt, bh * sq * dv)?;
    let lse = cu.alloc(cdt, bh * sq)?;
    if bh * sq > 0 {
        let chunk = chunk_heads(g, cdt);
        let s = cu.alloc(cdt, chunk * sq * sk)?;
        let sx = sfx("attention", dt)?;
        let (mp, [mb, mh, mi, mj]) = mask.map_or((0, [0; 4]), |m| (m.ptr, m.st));
        let (has_mask, causal) = (mask.is_some() as i32, g.causal as i32);
        let (sq_, sk_, heads_) = (sq as i64, sk as i64, heads as i64);
        for h0 in (0..bh).step_by(chunk) {
            let nb = chunk.min(bh - h0);
            mm(
                cu,
                cdt,
                (sq, sk, d),
                Mat::rows(q.ptr_at(h0 * sq * d), d, sq * d),
                Mat::cols(k.ptr_at(h0 * sk * d), d, sk * d),
                s.ptr(),
                nb,
            )?;
            let (sp, lp, rows, row0) = (s.ptr(), lse.ptr(), (nb * sq) as i64, (h0 * sq) as i64);
            launch!(cu, FAM, format!("attn_rows_fwd_{sx}"), cfg_rows(nb * sq, 256);
                &sp, &lp, &mp, &rows, &row0, &sq_, &sk_, &heads_, &mb, &mh, &mi, &mj, &has_mask, &causal, &g.scale)?;
            mm(
                cu,
                cdt,
                (sq, dv, sk),
                Mat::rows(s.ptr(), sk, sq * sk),
                Mat::rows(v.ptr_at(h0 * sk * dv), dv, sk * dv),
                o.ptr_at(h0 * sq * dv),
                nb,
            )?;
        }
    }
    let o = to_dtype(cu, o, bh * sq * dv, dt)?;
    Ok((o, lse))
}

#[allow(clippy::too_many_arguments)]
pub fn attention_bwd(
    cu: &Cuda,
    q: View<CudaStorage>,
    k: View<CudaStorage>,
    v: View<CudaStorage>,
    mask: Option<View<CudaStorage>>,
    out: View<CudaStorage>,
    lse: View<CudaStorage>,
    grad_out: View<CudaStorage>,
    scale: Option<f64>,
    causal: bool,
) -> Result<(CudaStorage, CudaStorage, CudaStorage)> {
    let g = AttnGeom::new(&q.1.shape, &k.1.shape, &v.1.shape, scale, causal)?;
    let (ol, gl) = (out.1, grad_out.1);
    if gl.shape != ol.shape || ol.rank() != 4 || ol.shape[..3] != q.1.shape[..3] || ol.shape[3] != g.dv {
        return Err(Error::Shape {
            op: "attention backward",
            detail: format!("grad {:?} / out {:?} vs q {:?}", gl.shape, ol.shape, q.1.shape),
        });
    }
    if lse.1.numel() != g.bh * g.sq {
        return Err(Error::Shape {
            op: "attention backward",
            detail: format!("lse {:?} vs q {:?}", lse.1.shape, q.1.shape),
        });
    }
    for s in [q.0, k.0, v.0, out.0, lse.0, grad_out.0].into_iter().chain(mask.map(|m| m.0)) {
        cu.check("attention backward", s)?;
    }
    let dt = same_float("attention backward", &[q.0, k.0, v.0, out.0, grad_out.0])?;
    let ma = mask_arg(cu, &g, q.1, mask, dt)?;
    if flash_ok(&g, dt, ma.is_some(), true) {
        bwd_flash(cu, &g, dt, [q, k, v, out, lse, grad_out])
    } else {
        bwd_general(cu, &g, dt, [q, k, v, out, lse, grad_out], ma.as_ref(), q.1.shape[1])
    }
}

/// `x = [q, k, v, out, lse, grad_out]`.
fn bwd_flash(
    cu: &Cuda,
    g: &AttnGeom,
    dt: DType,
    x: [View<CudaStorage>; 6],
) -> Result<(CudaStorage, CudaStorage, CudaStorage)> {
    let [q, k, v, o, lse, go] = x;
    let (q, k, v, o, go) = (cu.contig(q)?, cu.contig(k)?, cu.contig(v)?, cu.contig(o)?, cu.contig(go)?);
    let lse = as_dtype(cu, lse, DType::F32)?;
    let (bh, sq, sk, d) = (g.bh, g.sq, g.sk, g.d);
    let sx = sfx("attention backward", dt)?;
    let delta = cu.alloc(DType::F32, bh * sq)?;
    let (op, gp, dp, rows, dv_) = (o.ptr(), go.ptr(), delta.ptr(), (bh * sq) as i64, d as i64);
    let cfg = LaunchConfig {
        grid_dim: ((bh * sq).div_ceil(8).clamp(1, 65_535) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    launch!(cu, FAM, format!("attn_delta_{sx}"), cfg; &op, &gp, &dp, &rows, &dv_)?;
    let dq32 = cu.zeros(DType::F32, bh * sq * d)?;
    let dk = cu.alloc(dt, bh * sk * d)?;
    let dv = cu.alloc(dt, bh * sk * d)?;
    let (qp, kp, vp, lp) = (q.ptr(), k.ptr(), v.ptr(), lse.ptr());
    let (dqp, dkp, dvp) = (dq32.ptr(), dk.ptr(), dv.ptr());
    let (sq_, sk_, scale, causal) = (sq as i64, sk as i64, g.scale as f32, g.causal as i32);
    launch!(cu, FAM, format!("attn_flash_bwd_{sx}_d{d}"), grid(sk.div_ceil(64), bh);
        &qp, &kp, &vp, &gp, &lp, &dp, &dqp, &dkp, &dvp, &sq_, &sk_, &scale, &causal)?;
    let dq = to_dtype(cu, dq32, bh * sq * d, dt)?;
    Ok((dq, dk, dv))
}

/// `x = [q, k, v, out, lse, grad_out]`.
fn bwd_general(
    cu: &Cuda,
    g: &AttnGeom,
    dt: DType,
    x: [View<CudaStorage>; 6],
    mask: Option<&MaskArg>,
    heads: usize,
) -> Result<(CudaStorage, CudaStorage, CudaStorage)> {
    let cdt = if dt == DType::F64 { DType::F64 } else { DType::F32 };
    let [q, k, v, o, lse, go] = x;
    let (q, k, v) = (as_dtype(cu, q, cdt)?, as_dtype(cu, k, cdt)?, as_dtype(cu, v, cdt)?);
    let (o, lse, go) = (as_dtype(cu, o, cdt)?, as_dtype(cu, lse, cdt)?, as_dtype(cu, go, cdt)?);
    let (bh, sq, sk, d, dv) = (g.bh, g.sq, g.sk, g.d, g.dv);
    let dq = cu.alloc(cdt, bh * sq * d)?;
    let dk = cu.alloc(cdt, bh * sk * d)?;
    let dvb = cu.alloc(cdt, bh * sk * dv)?;
    if bh > 0 {
        let chunk = chunk_heads(g, cdt);
        let s = cu.alloc(cdt, chunk * sq * sk)?;
        let dp = cu.alloc(cdt, chunk * sq * sk)?;
        let sx = sfx("attention backward", dt)?;
        let (mp, [mb, mh, mi, mj]) = mask.map_or((0, [0; 4]), |m| (m.ptr, m.st));
        let (has_mask, causal) = (mask.is_some() as i32, g.causal as i32);
        let (sq_, sk_, dv_, heads_) = (sq as i64, sk as i64, dv as i64, heads as i64);
        for h0 in (0..bh).step_by(chunk) {
            let nb = chunk.min(bh - h0);
            let (qh, kh, vh) = (q.ptr_at(h0 * sq * d), k.ptr_at(h0 * sk * d), v.ptr_at(h0 * sk * dv));
            let goh = go.ptr_at(h0 * sq * dv);
            // S = Q·Kᵀ, dP = dO·Vᵀ.
            mm(cu, cdt, (sq, sk, d), Mat::rows(qh, d, sq * d), Mat::cols(kh, d, sk * d), s.ptr(), nb)?;
            mm(cu, cdt, (sq, sk, dv), Mat::rows(goh, dv, sq * dv), Mat::cols(vh, dv, sk * dv), dp.ptr(), nb)?;
            if nb * sq > 0 {
                let (sp, dpp, lp, op, gp) = (s.ptr(), dp.ptr(), lse.ptr(), o.ptr(), go.ptr());
                let (rows, row0) = ((nb * sq) as i64, (h0 * sq) as i64);
                launch!(cu, FAM, format!("attn_rows_bwd_{sx}"), cfg_rows(nb * sq, 256);
                    &sp, &dpp, &lp, &op, &gp, &mp, &rows, &row0, &sq_, &sk_, &dv_, &heads_,
                    &mb, &mh, &mi, &mj, &has_mask, &causal, &g.scale)?;
            }
            // dV = Pᵀ·dO, dQ = dS·K, dK = dSᵀ·Q.
            let st = sq * sk;
            mm(
                cu,
                cdt,
                (sk, dv, sq),
                Mat::cols(s.ptr(), sk, st),
                Mat::rows(goh, dv, sq * dv),
                dvb.ptr_at(h0 * sk * dv),
                nb,
            )?;
            mm(
                cu,
                cdt,
                (sq, d, sk),
                Mat::rows(dp.ptr(), sk, st),
                Mat::rows(kh, d, sk * d),
                dq.ptr_at(h0 * sq * d),
                nb,
            )?;
            mm(
                cu,
                cdt,
                (sk, d, sq),
                Mat::cols(dp.ptr(), sk, st),
                Mat::rows(qh, d, sq * d),
                dk.ptr_at(h0 * sk * d),
                nb,
            )?;
        }
    }
    Ok((to_dtype(cu, dq, bh * sq * d, dt)?, to_dtype(cu, dk, bh * sk * d, dt)?, to_dtype(cu, dvb, bh * sk * dv, dt)?))
}
