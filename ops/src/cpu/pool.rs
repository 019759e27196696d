//! Pooling and resampling: average / max pooling, bilinear upsampling (align_corners=false).

use super::elementwise::float_kernel;
use super::storage::{gather_strided, CpuStorage};
use crate::error::shape_err;
use crate::{Error, Layout, Result};
use num_traits::Float;
use rayon::prelude::*;

/// Kernel size, stride and padding of a 2-D pooling window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2d {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

impl Pool2d {
    /// Output size for an `h × w` input.
    pub fn out_hw(&self, h: usize, w: usize) -> Result<(usize, usize)> {
        let k = self.kernel;
        if k.contains(&0) || self.stride.contains(&0) || self.padding[0] * 2 > k[0] || self.padding[1] * 2 > k[1] {
            return shape_err("pool2d", format!("bad window {self:?} (padding must be at most half the kernel)"));
        }
        if h + 2 * self.padding[0] < k[0] || w + 2 * self.padding[1] < k[1] {
            return shape_err("pool2d", format!("window {:?} larger than padded input {h}×{w}", k));
        }
        Ok((
            (h + 2 * self.padding[0] - k[0]) / self.stride[0] + 1,
            (w + 2 * self.padding[1] - k[1]) / self.stride[1] + 1,
        ))
    }
}

fn dims4(op: &'static str, s: &[usize]) -> Result<(usize, usize, usize)> {
    if s.len() != 4 {
        return shape_err(op, format!("input {s:?} must be [N, C, H, W]"));
    }
    Ok((s[0] * s[1], s[2], s[3]))
}

/// Window rows/cols of output position `o` clipped to the input: (start, end, unclipped count).
fn window(o: usize, stride: usize, pad: usize, k: usize, size: usize) -> (usize, usize, usize) {
    let start = (o * stride) as isize - pad as isize;
    let end = (start + k as isize).min((size + pad) as isize);
    let count = (end - start) as usize;
    (start.max(0) as usize, (end.min(size as isize)).max(0) as usize, count)
}

/// Average pooling (`count_include_pad` as in PyTorch's default: padded zeros count).
pub fn avg_pool2d(x: &CpuStorage, l: &Layout, p: Pool2d) -> Result<CpuStorage> {
    let (planes, h, w) = dims4("avg_pool2d", &l.shape)?;
    let (ho, wo) = p.out_hw(h, w)?;
    fn k<T: Float + Send + Sync>(
        v: &[T],
        planes: usize,
        h: usize,
        w: usize,
        ho: usize,
        wo: usize,
        p: Pool2d,
    ) -> Vec<T> {
        let mut out = vec![T::zero(); planes * ho * wo];
        out.par_chunks_mut((ho * wo).max(1)).enumerate().for_each(|(pl, o)| {
            let src = &v[pl * h * w..][..h * w];
            for oy in 0..ho {
                let (y0, y1, cy) = window(oy, p.stride[0], p.padding[0], p.kernel[0], h);
                for ox in 0..wo {
                    let (x0, x1, cx) = window(ox, p.stride[1], p.padding[1], p.kernel[1], w);
                    let mut s = T::zero();
                    for y in y0..y1 {
                        for x in x0..x1 {
                            s = s + src[y * w + x];
                        }
                    }
                    o[oy * wo + ox] = s / T::from(cy * cx).unwrap_or_else(T::one);
                }
            }
        });
        out
    }
    float_kernel(
        "avg_pool2d",
        x,
        l,
        |v, l| Ok(k(&gather_strided(v, l), planes, h, w, ho, wo, p)),
        |v, l| Ok(k(&gather_strided(v, l), planes, h, w, ho, wo, p)),
    )
}

/// Gradient of avg_pool2d for an input of spatial size `hw`.
pub fn avg_pool2d_bwd(gy: &CpuStorage, l: &Layout, hw: [usize; 2], p: Pool2d) -> Result<CpuStorage> {
    let (planes, ho, wo) = dims4("avg_pool2d_bwd", &l.shape)?;
    let [h, w] = hw;
    if p.out_hw(h, w)? != (ho, wo) {
        return shape_err("avg_pool2d_bwd", format!("gradient {:?} does not match input {h}×{w}", l.shape));
    }
    fn k<T: Float + Send + Sync>(
        g: &[T],
        planes: usize,
        h: usize,
        w: usize,
        ho: usize,
        wo: usize,
        p: Pool2d,
    ) -> Vec<T> {
        let mut dx = vec![T::zero(); planes * h * w];
        dx.par_chunks_mut((h * w).max(1)).enumerate().for_each(|(pl, d)| {
            let gp = &g[pl * ho * wo..][..ho * wo];
            for oy in 0..ho {
                let (y0, y1, cy) = window(oy, p.stride[0], p.padding[0], p.kernel[0], h);
                for ox in 0..wo {
                    let (x0, x1, cx) = window(ox, p.stride[1], p.padding[1], p.kernel[1], w);
                    let v = gp[oy * wo + ox] / T::from(cy * cx).unwrap_or_else(T::one);
                    for y in y0..y1 {
                        for x in x0..x1 {
                            d[y * w + x] = d[y * w + x] + v;
                        }
                    }
                }
            }
        });
        dx
    }
    float_kernel(
        "avg_pool2d_bwd",
        gy,
        l,
        |v, l| Ok(k(&gather_strided(v, l), planes, h, w, ho, wo, p)),
        |v, l| Ok(k(&gather_strided(v, l), planes, h, w, ho, wo, p)),
    )
}

/// Max pooling: returns the pooled values and, per output, the flat `y·W + x` index of the
/// chosen input element within its plane (i64), for the backward.
pub fn max_pool2d(x: &CpuStorage, l: &Layout, p: Pool2d) -> Result<(CpuStorage, CpuStorage)> {
    let (planes, h, w) = dims4("max_pool2d", &l.shape)?;
    let (ho, wo) = p.out_hw(h, w)?;
    let vals = x.to_f64_vec(l);
    if !x.dtype().is_float() {
        return Err(Error::DType { op: "max_pool2d", dtype: x.dtype() });
    }
    let mut out = vec![0f64; planes * ho * wo];
    let mut idx = vec![0i64; planes * ho * wo];
    out.par_chunks_mut((ho * wo).max(1)).zip(idx.par_chunks_mut((ho * wo).max(1))).enumerate().for_each(
        |(pl, (o, ix))| {
            let src = &vals[pl * h * w..][..h * w];
            for oy in 0..ho {
                let (y0, y1, _) = window(oy, p.stride[0], p.padding[0], p.kernel[0], h);
                for ox in 0..wo {
                    let (x0, x1, _) = window(ox, p.stride[1], p.padding[1], p.kernel[1], w);
                    let (mut best, mut bi) = (f64::NEG_INFINITY, y0 * w + x0);
                    for y in y0..y1 {
                        for x in x0..x1 {
                            let v = src[y * w + x];
                            if v > best || v.is_nan() {
                                best = v;
                                bi = y * w + x;
                                if v.is_nan() {
                                    break;
                                }
                            }
                        }
                    }
                    o[oy * wo + ox] = best;
                    ix[oy * wo + ox] = bi as i64;
                }
            }
        },
    );
    Ok((CpuStorage::from_f64_iter(x.dtype(), out.into_iter()), CpuStorage::I64(idx)))
}

/// Gradient of max_pool2d: routes each output gradient to its chosen input element.
pub fn max_pool2d_bwd(gy: &CpuStorage, l: &Layout, idx: &CpuStorage, hw: [usize; 2]) -> Result<CpuStorage> {
    let (planes, ho, wo) = dims4("max_pool2d_bwd", &l.shape)?;
    let CpuStorage::I64(iv) = idx else {
        return Err(Error::DType { op: "max_pool2d_bwd indices", dtype: idx.dtype() });
    };
    if iv.len() != planes * ho * wo {
        return shape_err("max_pool2d_bwd", "index buffer does not match the gradient");
    }
    let [h, w] = hw;
    let g = gy.to_f64_vec(l);
    let mut dx = vec![0f64; planes * h * w];
    dx.par_chunks_mut((h * w).max(1)).enumerate().for_each(|(pl, d)| {
        for k in 0..ho * wo {
            let t = iv[pl * ho * wo + k] as usize;
            if t < h * w {
                d[t] += g[pl * ho * wo + k];
            }
        }
    });
    Ok(CpuStorage::from_f64_iter(gy.dtype(), dx.into_iter()))
}

/// Source coordinate and weights of bilinear sampling along one axis (align_corners=false).
fn bilinear_taps(out: usize, inp: usize) -> Vec<(usize, usize, f64)> {
    let scale = inp as f64 / out as f64;
    (0..out)
        .map(|o| {
            let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(inp - 1);
            let i1 = (i0 + 1).min(inp - 1);
            (i0, i1, src - i0 as f64)
        })
        .collect()
}

/// Bilinear resize of `[N, C, H, W]` to `[N, C, oh, ow]` (PyTorch, align_corners=false).
pub fn upsample_bilinear2d(x: &CpuStorage, l: &Layout, oh: usize, ow: usize) -> Result<CpuStorage> {
    let (planes, h, w) = dims4("upsample_bilinear2d", &l.shape)?;
    if h == 0 || w == 0 || oh == 0 || ow == 0 {
        return shape_err("upsample_bilinear2d", format!("empty input {:?} or output {oh}×{ow}", l.shape));
    }
    let (ty, tx) = (bilinear_taps(oh, h), bilinear_taps(ow, w));
    let v = x.to_f64_vec(l);
    let mut out = vec![0f64; planes * oh * ow];
    out.par_chunks_mut(oh * ow).enumerate().for_each(|(pl, o)| {
        let s = &v[pl * h * w..][..h * w];
        for (oy, &(y0, y1, fy)) in ty.iter().enumerate() {
            for (ox, &(x0, x1, fx)) in tx.iter().enumerate() {
                let top = s[y0 * w + x0] * (1.0 - fx) + s[y0 * w + x1] * fx;
                let bot = s[y1 * w + x0] * (1.0 - fx) + s[y1 * w + x1] * fx;
                o[oy * ow + ox] = top * (1.0 - fy) + bot * fy;
            }
        }
    });
    if !x.dtype().is_float() {
        return Err(Error::DType { op: "upsample_bilinear2d", dtype: x.dtype() });
    }
    Ok(CpuStorage::from_f64_iter(x.dtype(), out.into_iter()))
}

/// Adjoint of upsample_bilinear2d back to an `h × w` input.
pub fn upsample_bilinear2d_bwd(gy: &CpuStorage, l: &Layout, hw: [usize; 2]) -> Result<CpuStorage> {
    let (planes, oh, ow) = dims4("upsample_bilinear2d_bwd", &l.shape)?;
    let [h, w] = hw;
    if h == 0 || w == 0 {
        return shape_err("upsample_bilinear2d_bwd", "empty input size");
    }
    let (ty, tx) = (bilinear_taps(oh, h), bilinear_taps(ow, w));
    let g = gy.to_f64_vec(l);
    let mut dx = vec![0f64; planes * h * w];
    dx.par_chunks_mut(h * w).enumerate().for_each(|(pl, d)| {
        let gp = &g[pl * oh * ow..][..oh * ow];
        for (oy, &(y0, y1, fy)) in ty.iter().enumerate() {
            for (ox, &(x0, x1, fx)) in tx.iter().enumerate() {
                let v = gp[oy * ow + ox];
                d[y0 * w + x0] += v * (1.0 - fy) * (1.0 - fx);
                d[y0 * w + x1] += v * (1.0 - fy) * fx;
                d[y1 * w + x0] += v * fy * (1.0 - fx);
                d[y1 * w + x1] += v * fy * fx;
            }
        }
    });
    Ok(CpuStorage::from_f64_iter(gy.dtype(), dx.into_iter()))
}
