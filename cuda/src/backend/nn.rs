//! Norms, pooling and upsampling (`cuda/kernels/nn.cu`), with the CPU reference's semantics
//! (`scorch_ops::cpu::norm`, `scorch_ops::cpu::pool`): same shape / dtype checks and errors in
//! the same order, same outputs and saved statistics.
//!
//! * Norms ([`NormKind::Group`], [`NormKind::Layer`], [`NormKind::Rms`]): a row is one
//!   (sample, group) or one last-dim vector ([`NormGeom`]). The forward runs one block per row
//!   (`norm_fwd_*`): mean (layer / group only) and biased variance are block-reduced in f32
//!   (f64 for f64), `rstd = 1 / sqrt(var + eps)` is formed in f64, and `y = x·(w·rstd) +
//!   (b − mean·rstd·w)`. `mean` / `rstd` hold one entry per row, f32 for f32 / bf16 / f16 and
//!   f64 for f64 (as the CPU). The backward's `dx` is one block per row (`norm_bwd_dx_*`, row
//!   sums of gy·w and gy·w·x̂); `dw` / `db` are always returned per channel, also without an
//!   affine: `norm_bwd_part_*` writes per-chunk column sums of gy·x̂ and gy over the input
//!   viewed as `[samples, channels·spatial]` (32 columns × 8 sample lanes per block, coalesced),
//!   then `norm_bwd_fin_*` block-reduces each channel's columns and chunks into the dtype.
//! * Pooling over `[N, C, H, W]`: one thread per output for `avg_pool2d_*` (count includes
//!   padding within the padded input, as the CPU) and `max_pool2d_*` (first maximum wins, a
//!   NaN wins; index `y·W + x` within the plane, i64). `avg_pool2d_bwd_*` gathers per input
//!   pixel over the windows that cover it (no atomics, deterministic, CPU summation order).
//! * Bilinear resampling (align_corners = false): computed in f64 for every dtype with
//!   explicitly rounded operations and rounded to the dtype as `CpuStorage::from_f64_iter` does
//!   (bit-identical to the CPU on the device check); the backward gathers per input pixel in the
//!   CPU's scatter order, so results are deterministic. A large upsampling factor makes each
//!   input pixel's gather long (work ≈ the output size, but only `N·C·H·W` threads).

use super::elementwise::cast;
use super::{cfg_rows, launch, sfx, Contig, Cuda, CudaStorage};
use crate::device::CudaDevice;
use cudarc::driver::LaunchConfig;
use scorch_ops::cpu::norm::{NormGeom, NormKind};
use scorch_ops::cpu::pool::Pool2d;
use scorch_ops::kernels::View;
use scorch_ops::{DType, Error, Layout, Result};

const FAM: &str = "nn.cu";

/// Threads of a one-block-per-row kernel for rows of `len` elements.
fn row_threads(len: usize) -> u32 {
    len.next_power_of_two().clamp(32, 256) as u32
}

/// Dtype of the saved statistics / accumulators for input dtype `dt` (a float).
fn acc_dtype(dt: DType) -> DType {
    if dt == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

fn affine_check(name: &str, l: Option<&Layout>, c: usize) -> Result<()> {
    if let Some(l) = l {
        if l.shape != [c] {
            return Err(Error::Shape { op: "norm", detail: format!("{name} has shape {:?}, expected [{c}]", l.shape) });
        }
    }
    Ok(())
}

/// Groups per sample and whether the mean is subtracted.
fn groups_center(kind: NormKind) -> (usize, bool) {
    match kind {
        NormKind::Group(g) => (g, true),
        NormKind::Layer => (1, true),
        NormKind::Rms => (1, false),
    }
}

/// An optional operand as a contiguous buffer (`None` stays `None`).
fn opt_contig<'a>(cu: &Cuda, v: Option<View<'a, CudaStorage>>) -> Result<Option<Contig<'a>>> {
    v.map(|v| cu.contig(v)).transpose()
}

/// Device pointer of an optional buffer, 0 (null) when absent.
fn opt_ptr(v: &Option<Contig<'_>>) -> u64 {
    v.as_ref().map_or(0, |s| s.ptr())
}

pub fn norm_fwd(
    cu: &Cuda,
    kind: NormKind,
    x: View<CudaStorage>,
    w: Option<View<CudaStorage>>,
    b: Option<View<CudaStorage>>,
    eps: f64,
) -> Result<(CudaStorage, CudaStorage, CudaStorage)> {
    cu.check("norm", x.0)?;
    let g = NormGeom::new(kind, &x.1.shape)?;
    affine_check("weight", w.map(|p| p.1), g.channels)?;
    affine_check("bias", b.map(|p| p.1), g.channels)?;
    let dt = x.0.dtype();
    for o in [w, b].into_iter().flatten() {
        cu.check("norm", o.0)?;
        if o.0.dtype() != dt {
            return Err(Error::DTypeMismatch { op: "norm", lhs: dt, rhs: o.0.dtype() });
        }
    }
    let sx = sfx("norm", dt)?;
    let (groups, center) = groups_center(kind);
    let y = cu.alloc(dt, x.1.numel())?;
    let mean = cu.alloc(acc_dtype(dt), g.rows)?;
    let rstd = cu.alloc(acc_dtype(dt), g.rows)?;
    if g.rows == 0 {
        return Ok((y, mean, rstd));
    }
    let xc = cu.contig(x)?;
    let (wc, bc) = (opt_contig(cu, w)?, opt_contig(cu, b)?);
    let (xp, wp, bp, yp, mp, rp) = (xc.ptr(), opt_ptr(&wc), opt_ptr(&bc), y.ptr(), mean.ptr(), rstd.ptr());
    let (rows, nseg, seg, grp, cen) = (g.rows as i64, g.nseg as i64, g.seg as i64, groups as i64, center as i32);
    let cfg = cfg_rows(g.rows, row_threads(g.nseg * g.seg));
    launch!(cu, FAM, format!("norm_fwd_{sx}"), cfg; &xp, &wp, &bp, &yp, &mp, &rp, &rows, &nseg, &seg, &grp, &cen, &eps)?;
    Ok((y, mean, rstd))
}

/// A saved statistic as a contiguous buffer of the accumulator dtype.
fn stat<'a>(cu: &Cuda, s: &'a CudaStorage, want: DType) -> Result<Contig<'a>> {
    cu.check("norm backward", s)?;
    if s.dtype() == want {
        Ok(Contig::Borrowed(s))
    } else {
        Ok(Contig::Owned(cast(cu, (s, &Layout::contiguous(&[s.len()])), want)?))
    }
}

pub fn norm_bwd(
    cu: &Cuda,
    kind: NormKind,
    gy: View<CudaStorage>,
    x: View<CudaStorage>,
    mean: &CudaStorage,
    rstd: &CudaStorage,
    w: Option<View<CudaStorage>>,
) -> Result<(CudaStorage, CudaStorage, CudaStorage)> {
    const OP: &str = "norm backward";
    cu.check(OP, x.0)?;
    cu.check(OP, gy.0)?;
    let g = NormGeom::new(kind, &x.1.shape)?;
    if gy.1.shape != x.1.shape {
        return Err(Error::Shape { op: OP, detail: format!("gradient {:?} vs input {:?}", gy.1.shape, x.1.shape) });
    }
    affine_check("weight", w.map(|p| p.1), g.channels)?;
    if mean.len() != g.rows || rstd.len() != g.rows {
        return Err(Error::Shape {
            op: OP,
            detail: format!("saved statistics have {} entries, expected {}", mean.len(), g.rows),
        });
    }
    let dt = x.0.dtype();
    if gy.0.dtype() != dt || !dt.is_float() {
        return Err(Error::DTypeMismatch { op: OP, lhs: gy.0.dtype(), rhs: dt });
    }
    let sx = sfx(OP, dt)?;
    let acc = acc_dtype(dt);
    let (groups, center) = groups_center(kind);

    let dx = cu.alloc(dt, x.1.numel())?;
    let dw = cu.alloc(dt, g.channels)?;
    let db = cu.alloc(dt, g.channels)?;
    let (mc, rc) = (stat(cu, mean, acc)?, stat(cu, rstd, acc)?);
    let xc = cu.contig(x)?;
    let gc = cu.contig(gy)?;
    let wc = match w {
        None => None,
        Some(v) => {
            cu.check(OP, v.0)?;
            // The CPU reads the weight through f64 whatever its dtype.
            Some(if v.0.dtype() == dt { cu.contig(v)? } else { Contig::Owned(cast(cu, v, dt)?) })
        }
    };
    let (xp, gp, mp, rp, wp) = (xc.ptr(), gc.ptr(), mc.ptr(), rc.ptr(), opt_ptr(&wc));
    let (grp, cen) = (groups as i64, center as i32);
    let (nseg, seg) = (g.nseg as i64, g.seg as i64);

    // dx: one block per row.
    if g.rows > 0 {
        let (dxp, rows) = (dx.ptr(), g.rows as i64);
        let cfg = cfg_rows(g.rows, row_threads(g.nseg * g.seg));
        launch!(cu, FAM, format!("norm_bwd_dx_{sx}"), cfg; &gp, &xp, &mp, &rp, &wp, &dxp, &rows, &nseg, &seg, &grp, &cen)?;
    }

    // dw / db: the input as [n samples, l = channels·seg columns]; column j is channel j / seg.
    if g.channels == 0 {
        return Ok((dx, dw, db));
    }
    let n = g.rows / groups.max(1);
    let l = g.channels * g.seg;
    let tiles = l.div_ceil(32);
    let nchunks = if n == 0 || l == 0 { 0 } else { 4096usize.div_ceil(tiles).clamp(1, n.div_ceil(8)).min(65_535) };
    let chunk = if nchunks == 0 { 0 } else { n.div_ceil(nchunks) };
    let nchunks = if chunk == 0 { 0 } else { n.div_ceil(chunk) };
    let pw = cu.alloc(acc, nchunks * l)?;
    let pb = cu.alloc(acc, nchunks * l)?;
    let (pwp, pbp) = (pw.ptr(), pb.ptr());
    let (ni, li, si, nc) = (n as i64, l as i64, g.seg as i64, nchunks as i64);
    if nchunks > 0 {
        let cfg =
            LaunchConfig { grid_dim: (tiles as u32, nchunks as u32, 1), block_dim: (32, 8, 1), shared_mem_bytes: 0 };
        let ch = chunk as i64;
        launch!(cu, FAM, format!("norm_bwd_part_{sx}"), cfg; &gp, &xp, &mp, &rp, &pwp, &pbp, &ni, &li, &si, &nseg, &grp, &ch)?;
    }
    let (dwp, dbp, chans) = (dw.ptr(), db.ptr(), g.channels as i64);
    let cfg = cfg_rows(g.channels, row_threads(nchunks * g.seg).min(128));
    launch!(cu, FAM, format!("norm_bwd_fin_{sx}"), cfg; &pwp, &pbp, &dwp, &dbp, &chans, &li, &si, &nc)?;
    Ok((dx, dw, db))
}

/// `(planes, h, w)` of an `[N, C, H, W]` shape.
fn dims4(op: &'static str, s: &[usize]) -> Result<(usize, usize, usize)> {
    if s.len() != 4 {
        return Err(Error::Shape { op, detail: format!("input {s:?} must be [N, C, H, W]") });
    }
    Ok((s[0] * s[1], s[2], s[3]))
}

/// The window parameters as kernel arguments: kh, kw, sh, sw, ph, pw.
fn pool_args(p: Pool2d) -> [i64; 6] {
    [p.kernel[0], p.kernel[1], p.stride[0], p.stride[1], p.padding[0], p.padding[1]].map(|v| v as i64)
}

pub fn avg_pool2d(cu: &Cuda, x: View<CudaStorage>, p: Pool2d) -> Result<CudaStorage> {
    cu.check("avg_pool2d", x.0)?;
    let (planes, h, w) = dims4("avg_pool2d", &x.1.shape)?;
    let (ho, wo) = p.out_hw(h, w)?;
    let sx = sfx("avg_pool2d", x.0.dtype())?;
    let y = cu.alloc(x.0.dtype(), planes * ho * wo)?;
    let n = planes * ho * wo;
    if n == 0 {
        return Ok(y);
    }
    let xc = cu.contig(x)?;
    let (xp, yp) = (xc.ptr(), y.ptr());
    let [pl, hi, wi, hoi, woi] = [planes, h, w, ho, wo].map(|v| v as i64);
    let [kh, kw, sh, sw, ph, pw] = pool_args(p);
    launch!(cu, FAM, format!("avg_pool2d_{sx}"), CudaDevice::cfg_1d(n);
        &xp, &yp, &pl, &hi, &wi, &hoi, &woi, &kh, &kw, &sh, &sw, &ph, &pw)?;
    Ok(y)
}

pub fn avg_pool2d_bwd(cu: &Cuda, gy: View<CudaStorage>, hw: [usize; 2], p: Pool2d) -> Result<CudaStorage> {
    cu.check("avg_pool2d_bwd", gy.0)?;
    let (planes, ho, wo) = dims4("avg_pool2d_bwd", &gy.1.shape)?;
    let [h, w] = hw;
    if p.out_hw(h, w)? != (ho, wo) {
        return Err(Error::Shape {
            op: "avg_pool2d_bwd",
            detail: format!("gradient {:?} does not match input {h}×{w}", gy.1.shape),
        });
    }
    let sx = sfx("avg_pool2d_bwd", gy.0.dtype())?;
    let n = planes * h * w;
    let dx = cu.alloc(gy.0.dtype(), n)?;
    if n == 0 {
        return Ok(dx);
    }
    let gc = cu.contig(gy)?;
    let (gp, dxp) = (gc.ptr(), dx.ptr());
    let [pl, hi, wi, hoi, woi] = [planes, h, w, ho, wo].map(|v| v as i64);
    let [kh, kw, sh, sw, ph, pw] = pool_args(p);
    launch!(cu, FAM, format!("avg_pool2d_bwd_{sx}"), CudaDevice::cfg_1d(n);
        &gp, &dxp, &pl, &hi, &wi, &hoi, &woi, &kh, &kw, &sh, &sw, &ph, &pw)?;
    Ok(dx)
}

pub fn max_pool2d(cu: &Cuda, x: View<CudaStorage>, p: Pool2d) -> Result<(CudaStorage, CudaStorage)> {
    cu.check("max_pool2d", x.0)?;
    let (planes, h, w) = dims4("max_pool2d", &x.1.shape)?;
    let (ho, wo) = p.out_hw(h, w)?;
    let sx = sfx("max_pool2d", x.0.dtype())?;
    let n = planes * ho * wo;
    let y = cu.alloc(x.0.dtype(), n)?;
    let idx = cu.alloc(DType::I64, n)?;
    if n == 0 {
        return Ok((y, idx));
    }
    let xc = cu.contig(x)?;
    let (xp, yp, ip) = (xc.ptr(), y.ptr(), idx.ptr());
    let [pl, hi, wi, hoi, woi] = [planes, h, w, ho, wo].map(|v| v as i64);
    let [kh, kw, sh, sw, ph, pw] = pool_args(p);
    launch!(cu, FAM, format!("max_pool2d_{sx}"), CudaDevice::cfg_1d(n);
        &xp, &yp, &ip, &pl, &hi, &wi, &hoi, &woi, &kh, &kw, &sh, &sw, &ph, &pw)?;
    Ok((y, idx))
}

pub fn upsample_bilinear2d(cu: &Cuda, x: View<CudaStorage>, oh: usize, ow: usize) -> Result<CudaStorage> {
    const OP: &str = "upsample_bilinear2d";
    cu.check(OP, x.0)?;
    let (planes, h, w) = dims4(OP, &x.1.shape)?;
    if h == 0 || w == 0 || oh == 0 || ow == 0 {
        return Err(Error::Shape { op: OP, detail: format!("empty input {:?} or output {oh}×{ow}", x.1.shape) });
    }
    let sx = sfx(OP, x.0.dtype())?;
    let n = planes * oh * ow;
    let y = cu.alloc(x.0.dtype(), n)?;
    if n == 0 {
        return Ok(y);
    }
    let xc = cu.contig(x)?;
    let (xp, yp) = (xc.ptr(), y.ptr());
    let [pl, hi, wi, ohi, owi] = [planes, h, w, oh, ow].map(|v| v as i64);
    let (scale_y, scale_x) = (h as f64 / oh as f64, w as f64 / ow as f64);
    launch!(cu, FAM, format!("upsample_bilinear2d_{sx}"), CudaDevice::cfg_1d(n);
        &xp, &yp, &pl, &hi, &wi, &ohi, &owi, &scale_y, &scale_x)?;
    Ok(y)
}

pub fn upsample_bilinear2d_bwd(cu: &Cuda, gy: View<CudaStorage>, hw: [usize; 2]) -> Result<CudaStorage> {
    const OP: &str = "upsample_bilinear2d_bwd";
    cu.check(OP, gy.0)?;
    let (planes, oh, ow) = dims4(OP, &gy.1.shape)?;
    let [h, w] = hw;
    if h == 0 || w == 0 {
        return Err(Error::Shape { op: OP, detail: "empty input size".into() });
    }
    let sx = sfx(OP, gy.0.dtype())?;
    let n = planes * h * w;
    let dx = cu.alloc(gy.0.dtype(), n)?;
    if n == 0 {
        return Ok(dx);
    }
    let gc = cu.contig(gy)?;
    let (gp, dxp) = (gc.ptr(), dx.ptr());
    let [pl, hi, wi, ohi, owi] = [planes, h, w, oh, ow].map(|v| v as i64);
    let (scale_y, scale_x) = (h as f64 / oh as f64, w as f64 / ow as f64);
    launch!(cu, FAM, format!("upsample_bilinear2d_bwd_{sx}"), CudaDevice::cfg_1d(n);
        &gp, &dxp, &pl, &hi, &wi, &ohi, &owi, &scale_y, &scale_x)?;
    Ok(dx)
}
