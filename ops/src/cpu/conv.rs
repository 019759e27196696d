//! conv2d forward, backward-data and backward-weight by im2col + gemm (1×1 fast path).
//! conv_transpose2d is backward-data with the transposed roles.

use super::elementwise::{f32_to_dtype, half_to_f32};
use super::matmul::gemm_raw;
use super::storage::{gather_strided, CpuStorage};
use crate::error::shape_err;
use crate::{Error, Layout, Result};
use num_traits::Float;
use rayon::prelude::*;

/// Stride, padding, dilation (each `[h, w]`) and groups of a 2-D convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams { stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1 }
    }
}

/// Everything a conv kernel needs to know about the problem size.
#[derive(Clone, Copy, Debug)]
pub struct ConvGeom {
    pub n: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub ho: usize,
    pub wo: usize,
    pub p: Conv2dParams,
}

impl ConvGeom {
    /// Validates an input shape `[N, Cin, H, W]` against a weight shape `[Cout, Cin/g, kh, kw]`.
    pub fn new(x: &[usize], wt: &[usize], p: Conv2dParams) -> Result<ConvGeom> {
        if x.len() != 4 || wt.len() != 4 {
            return shape_err("conv2d", format!("input {x:?} and weight {wt:?} must both be 4-D"));
        }
        if p.groups == 0 || p.stride.contains(&0) || p.dilation.contains(&0) {
            return shape_err("conv2d", format!("groups, stride and dilation must be positive: {p:?}"));
        }
        let (n, cin, h, w) = (x[0], x[1], x[2], x[3]);
        let (cout, cg, kh, kw) = (wt[0], wt[1], wt[2], wt[3]);
        if cin % p.groups != 0 || cout % p.groups != 0 || cg * p.groups != cin {
            return shape_err(
                "conv2d",
                format!("input {x:?} / weight {wt:?} do not match groups={} (need Cin = weight[1]·groups and Cout % groups = 0)", p.groups),
            );
        }
        let eff_h = p.dilation[0] * (kh.max(1) - 1) + 1;
        let eff_w = p.dilation[1] * (kw.max(1) - 1) + 1;
        if kh == 0 || kw == 0 || h + 2 * p.padding[0] < eff_h || w + 2 * p.padding[1] < eff_w {
            return shape_err(
                "conv2d",
                format!("kernel {kh}×{kw} (dilation {:?}) larger than padded input {h}×{w}", p.dilation),
            );
        }
        let ho = (h + 2 * p.padding[0] - eff_h) / p.stride[0] + 1;
        let wo = (w + 2 * p.padding[1] - eff_w) / p.stride[1] + 1;
        Ok(ConvGeom { n, cin, h, w, cout, kh, kw, ho, wo, p })
    }
    fn cg(&self) -> usize {
        self.cin / self.p.groups
    }
    fn cog(&self) -> usize {
        self.cout / self.p.groups
    }
    /// Rows of the im2col matrix of one group.
    fn krows(&self) -> usize {
        self.cg() * self.kh * self.kw
    }
    fn pix(&self) -> usize {
        self.ho * self.wo
    }
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.p.stride == [1, 1] && self.p.padding == [0, 0]
    }
    /// Multiply-adds of the forward pass (×2 for FLOPs).
    pub fn macs(&self) -> usize {
        self.n * self.cout * self.pix() * self.krows()
    }
}

/// Output columns `ox` whose input column `ox·stride + j·dilation − pad` lies inside `0..w`.
fn valid_cols(g: &ConvGeom, j: usize) -> (usize, usize) {
    let (s, d, p) = (g.p.stride[1], g.p.dilation[1], g.p.padding[1]);
    let off = j * d;
    // first ox with ox·s + off ≥ p
    let lo = if off >= p { 0 } else { (p - off).div_ceil(s) };
    // last ox with ox·s + off − p < w
    let hi = if g.w + p > off { ((g.w + p - off - 1) / s + 1).min(g.wo) } else { 0 };
    (lo.min(g.wo), hi.max(lo.min(g.wo)))
}

/// Unfolds one group of one sample (`[cg, H, W]`) into `[cg·kh·kw, Ho·Wo]`.
fn im2col<T: Float>(x: &[T], g: &ConvGeom, cols: &mut [T]) {
    let (p, pix) = (g.p, g.pix());
    for c in 0..g.cg() {
        for i in 0..g.kh {
            for j in 0..g.kw {
                let (lo, hi) = valid_cols(g, j);
                let row = &mut cols[((c * g.kh + i) * g.kw + j) * pix..][..pix];
                for oy in 0..g.ho {
                    let iy = (oy * p.stride[0] + i * p.dilation[0]) as isize - p.padding[0] as isize;
                    let dst = &mut row[oy * g.wo..(oy + 1) * g.wo];
                    if iy < 0 || iy >= g.h as isize || lo >= hi {
                        dst.fill(T::zero());
                        continue;
                    }
                    let src = &x[(c * g.h + iy as usize) * g.w..][..g.w];
                    dst[..lo].fill(T::zero());
                    dst[hi..].fill(T::zero());
                    let ix0 = lo * p.stride[1] + j * p.dilation[1] - p.padding[1];
                    if p.stride[1] == 1 {
                        dst[lo..hi].copy_from_slice(&src[ix0..ix0 + (hi - lo)]);
                    } else {
                        for (k, d) in dst[lo..hi].iter_mut().enumerate() {
                            *d = src[ix0 + k * p.stride[1]];
                        }
                    }
                }
            }
        }
    }
}

/// Folds `[cg·kh·kw, Ho·Wo]` back, accumulating into one group of one sample `[cg, H, W]`.
fn col2im<T: Float>(cols: &[T], g: &ConvGeom, x: &mut [T]) {
    let (p, pix) = (g.p, g.pix());
    for c in 0..g.cg() {
        for i in 0..g.kh {
            for j in 0..g.kw {
                let (lo, hi) = valid_cols(g, j);
                if lo >= hi {
                    continue;
                }
                let row = &cols[((c * g.kh + i) * g.kw + j) * pix..][..pix];
                for oy in 0..g.ho {
                    let iy = (oy * p.stride[0] + i * p.dilation[0]) as isize - p.padding[0] as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let dst = &mut x[(c * g.h + iy as usize) * g.w..][..g.w];
                    let src = &row[oy * g.wo + lo..oy * g.wo + hi];
                    let ix0 = lo * p.stride[1] + j * p.dilation[1] - p.padding[1];
                    if p.stride[1] == 1 {
                        for (d, &v) in dst[ix0..ix0 + (hi - lo)].iter_mut().zip(src) {
                            *d = *d + v;
                        }
                    } else {
                        for (k, &v) in src.iter().enumerate() {
                            let t = ix0 + k * p.stride[1];
                            dst[t] = dst[t] + v;
                        }
                    }
                }
            }
        }
    }
}

/// Splits the batch over threads when there are enough samples, else threads go to gemm.
fn plan(n: usize) -> (bool, usize) {
    let t = rayon::current_num_threads();
    if n >= t {
        (true, 1)
    } else {
        (false, t)
    }
}

fn fwd_t<T: Float + Send + Sync + 'static>(x: &[T], wt: &[T], g: &ConvGeom) -> Vec<T> {
    let (cg, cog, kr, pix) = (g.cg(), g.cog(), g.krows(), g.pix());
    let in_sz = g.cin * g.h * g.w;
    let out_sz = g.cout * pix;
    let mut out = vec![T::zero(); g.n * out_sz];
    let (batch_par, threads) = plan(g.n);
    let one = |cols: &mut Vec<T>, (s, dst): (usize, &mut [T])| {
        for gi in 0..g.p.groups {
            let xs = &x[s * in_sz + gi * cg * g.h * g.w..][..cg * g.h * g.w];
            let rhs: &[T] = if g.is_pointwise() {
                xs
            } else {
                im2col(xs, g, cols);
                cols
            };
            // SAFETY: weight rows gi·cog.., rhs [kr × pix] and the destination rows are in bounds.
            unsafe {
                gemm_raw(
                    cog,
                    pix,
                    kr,
                    dst[gi * cog * pix..].as_mut_ptr(),
                    pix as isize,
                    1,
                    false,
                    wt[gi * cog * kr..].as_ptr(),
                    kr as isize,
                    1,
                    rhs.as_ptr(),
                    pix as isize,
                    1,
                    threads,
                )
            };
        }
    };
    per_sample(&mut out, out_sz, batch_par, scratch_len(g), one);
    out
}

/// Length of the im2col scratch buffer of one sample (none for 1×1 convolutions).
fn scratch_len(g: &ConvGeom) -> usize {
    if g.is_pointwise() {
        0
    } else {
        g.krows() * g.pix()
    }
}

/// Calls `f(scratch, (sample, chunk))` on each `chunk`-sized piece of `buf`, in parallel when
/// `par`. The scratch buffer is allocated once per rayon job (not per sample): every
/// kernel overwrites it completely before reading it.
fn per_sample<T: Float + Send + Sync>(
    buf: &mut [T],
    chunk: usize,
    par: bool,
    scratch: usize,
    f: impl Fn(&mut Vec<T>, (usize, &mut [T])) + Send + Sync,
) {
    if par {
        buf.par_chunks_mut(chunk).enumerate().for_each_init(|| vec![T::zero(); scratch], |c, item| f(c, item));
    } else {
        let mut c = vec![T::zero(); scratch];
        buf.chunks_mut(chunk).enumerate().for_each(|item| f(&mut c, item));
    }
}

fn bwd_data_t<T: Float + Send + Sync + 'static>(gy: &[T], wt: &[T], g: &ConvGeom) -> Vec<T> {
    let (cg, cog, kr, pix) = (g.cg(), g.cog(), g.krows(), g.pix());
    let in_sz = g.cin * g.h * g.w;
    let out_sz = g.cout * pix;
    let mut dx = vec![T::zero(); g.n * in_sz];
    let (batch_par, threads) = plan(g.n);
    let one = |cols: &mut Vec<T>, (s, dxs): (usize, &mut [T])| {
        for gi in 0..g.p.groups {
            let gys = &gy[s * out_sz + gi * cog * pix..][..cog * pix];
            let dst_group = &mut dxs[gi * cg * g.h * g.w..][..cg * g.h * g.w];
            let dst: *mut T = if g.is_pointwise() { dst_group.as_mut_ptr() } else { cols.as_mut_ptr() };
            // W_gᵀ [kr × cog] · gy_g [cog × pix].
            // SAFETY: all extents are within the buffers sized above.
            unsafe {
                gemm_raw(
                    kr,
                    pix,
                    cog,
                    dst,
                    pix as isize,
                    1,
                    false,
                    wt[gi * cog * kr..].as_ptr(),
                    1,
                    kr as isize,
                    gys.as_ptr(),
                    pix as isize,
                    1,
                    threads,
                )
            };
            if !g.is_pointwise() {
                col2im(cols, g, dst_group);
            }
        }
    };
    per_sample(&mut dx, in_sz, batch_par, scratch_len(g), one);
    dx
}

fn bwd_weight_t<T: Float + Send + Sync + 'static>(x: &[T], gy: &[T], g: &ConvGeom) -> Vec<T> {
    let (cg, cog, kr, pix) = (g.cg(), g.cog(), g.krows(), g.pix());
    let in_sz = g.cin * g.h * g.w;
    let out_sz = g.cout * pix;
    let wsz = g.cout * kr;
    let (batch_par, threads) = plan(g.n);
    let partial = |samples: std::ops::Range<usize>| -> Vec<T> {
        let mut gw = vec![T::zero(); wsz];
        let mut cols = if g.is_pointwise() { Vec::new() } else { vec![T::zero(); kr * pix] };
        for s in samples {
            for gi in 0..g.p.groups {
                let xs = &x[s * in_sz + gi * cg * g.h * g.w..][..cg * g.h * g.w];
                let rhs: &[T] = if g.is_pointwise() {
                    xs
                } else {
                    im2col(xs, g, &mut cols);
                    &cols
                };
                // gw_g [cog × kr] += gy_g [cog × pix] · colsᵀ [pix × kr].
                // SAFETY: extents within buffers.
                unsafe {
                    gemm_raw(
                        cog,
                        kr,
                        pix,
                        gw[gi * cog * kr..].as_mut_ptr(),
                        kr as isize,
                        1,
                        true,
                        gy[s * out_sz + gi * cog * pix..].as_ptr(),
                        pix as isize,
                        1,
                        rhs.as_ptr(),
                        1,
                        pix as isize,
                        threads,
                    )
                };
            }
        }
        gw
    };
    if batch_par {
        let t = rayon::current_num_threads().max(1);
        let per = g.n.div_ceil(t);
        let parts: Vec<Vec<T>> = (0..t).into_par_iter().map(|i| partial(i * per..((i + 1) * per).min(g.n))).collect();
        let mut gw = vec![T::zero(); wsz];
        for p in parts {
            for (a, b) in gw.iter_mut().zip(p) {
                *a = *a + b;
            }
        }
        gw
    } else {
        partial(0..g.n)
    }
}

/// Runs a conv kernel on two operands of one float dtype (halves through f32).
fn dispatch2(
    op: &'static str,
    a: &CpuStorage,
    la: &Layout,
    b: &CpuStorage,
    lb: &Layout,
    k32: impl Fn(&[f32], &[f32]) -> Vec<f32>,
    k64: impl Fn(&[f64], &[f64]) -> Vec<f64>,
) -> Result<CpuStorage> {
    if a.dtype() != b.dtype() {
        return Err(Error::DTypeMismatch { op, lhs: a.dtype(), rhs: b.dtype() });
    }
    Ok(match (a, b) {
        (CpuStorage::F32(x), CpuStorage::F32(y)) => {
            CpuStorage::F32(k32(&gather_strided(x, la), &gather_strided(y, lb)))
        }
        (CpuStorage::F64(x), CpuStorage::F64(y)) => {
            CpuStorage::F64(k64(&gather_strided(x, la), &gather_strided(y, lb)))
        }
        _ if a.dtype().is_half() => {
            let (x, y) = (half_to_f32(a, la).expect("half"), half_to_f32(b, lb).expect("half"));
            f32_to_dtype(k32(&x, &y), a.dtype())
        }
        _ => return Err(Error::DType { op, dtype: a.dtype() }),
    })
}

/// conv2d forward: `[N, Cin, H, W] ⋆ [Cout, Cin/g, kh, kw] → [N, Cout, Ho, Wo]`.
pub fn conv2d(
    x: &CpuStorage,
    lx: &Layout,
    w: &CpuStorage,
    lw: &Layout,
    p: Conv2dParams,
) -> Result<(CpuStorage, ConvGeom)> {
    let g = ConvGeom::new(&lx.shape, &lw.shape, p)?;
    let out = dispatch2("conv2d", x, lx, w, lw, |a, b| fwd_t(a, b, &g), |a, b| fwd_t(a, b, &g))?;
    Ok((out, g))
}

/// Gradient of conv2d w.r.t. its input, for an input of spatial size `hw`
/// (also conv_transpose2d of `gy` with weight `w`).
pub fn conv2d_bwd_data(
    gy: &CpuStorage,
    lgy: &Layout,
    w: &CpuStorage,
    lw: &Layout,
    cin_hw: [usize; 3],
    p: Conv2dParams,
) -> Result<(CpuStorage, ConvGeom)> {
    if lgy.rank() != 4 {
        return shape_err("conv2d_bwd_data", format!("output gradient {:?} must be 4-D", lgy.shape));
    }
    let g = ConvGeom::new(&[lgy.shape[0], cin_hw[0], cin_hw[1], cin_hw[2]], &lw.shape, p)?;
    if lgy.shape != [g.n, g.cout, g.ho, g.wo] {
        return shape_err(
            "conv2d_bwd_data",
            format!("output gradient {:?} does not match input {:?} and weight {:?}", lgy.shape, cin_hw, lw.shape),
        );
    }
    let out = dispatch2("conv2d_bwd_data", gy, lgy, w, lw, |a, b| bwd_data_t(a, b, &g), |a, b| bwd_data_t(a, b, &g))?;
    Ok((out, g))
}

/// Gradient of conv2d w.r.t. its weight, for a weight of shape `[Cout, Cin/g, kh, kw]`.
pub fn conv2d_bwd_weight(
    x: &CpuStorage,
    lx: &Layout,
    gy: &CpuStorage,
    lgy: &Layout,
    wshape: [usize; 4],
    p: Conv2dParams,
) -> Result<(CpuStorage, ConvGeom)> {
    let g = ConvGeom::new(&lx.shape, &wshape, p)?;
    if lgy.shape != [g.n, g.cout, g.ho, g.wo] {
        return shape_err(
            "conv2d_bwd_weight",
            format!("output gradient {:?} does not match input {:?} and weight {:?}", lgy.shape, lx.shape, wshape),
        );
    }
    let out =
        dispatch2("conv2d_bwd_weight", x, lx, gy, lgy, |a, b| bwd_weight_t(a, b, &g), |a, b| bwd_weight_t(a, b, &g))?;
    Ok((out, g))
}
