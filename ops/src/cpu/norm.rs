//! Fused group / layer / RMS normalisation, forward and backward.
//!
//! All three normalise "rows" and apply a per-channel affine: a row is one (sample, group)
//! for group norm (C/G channels × S spatial positions) and one vector of the last dim for
//! layer / RMS norm. Within a row, channel `ch0(row) + k` covers the `k`-th segment of `seg`
//! consecutive elements. Statistics are accumulated in f64.

use super::elementwise::{f32_to_dtype, half_to_f32};
use super::storage::{gather_strided, CpuStorage};
use crate::error::shape_err;
use crate::{Error, Layout, Result};
use num_traits::Float;
use rayon::prelude::*;

/// Which normalisation, with its grouping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormKind {
    /// Group norm over `[N, C, ...]` with this many groups.
    Group(usize),
    /// Layer norm over the last dim.
    Layer,
    /// RMS norm over the last dim (no mean subtraction, no bias).
    Rms,
}

/// Row geometry of a normalisation.
#[derive(Clone, Copy, Debug)]
pub struct NormGeom {
    pub rows: usize,
    pub nseg: usize,
    pub seg: usize,
    pub channels: usize,
    groups: usize,
    center: bool,
}

impl NormGeom {
    pub fn new(kind: NormKind, shape: &[usize]) -> Result<NormGeom> {
        match kind {
            NormKind::Group(g) => {
                if shape.len() < 2 {
                    return shape_err("group_norm", format!("input {shape:?} needs at least [N, C]"));
                }
                let c = shape[1];
                if g == 0 || !c.is_multiple_of(g) {
                    return shape_err("group_norm", format!("{c} channels are not divisible into {g} groups"));
                }
                let s: usize = shape[2..].iter().product();
                Ok(NormGeom { rows: shape[0] * g, nseg: c / g, seg: s, channels: c, groups: g, center: true })
            }
            NormKind::Layer | NormKind::Rms => {
                let Some(&d) = shape.last() else {
                    return shape_err("layer_norm", "input must have at least one dim");
                };
                let rows = shape.iter().product::<usize>() / d.max(1);
                Ok(NormGeom { rows, nseg: d, seg: 1, channels: d, groups: 1, center: kind == NormKind::Layer })
            }
        }
    }
    fn len(&self) -> usize {
        self.nseg * self.seg
    }
    fn ch0(&self, row: usize) -> usize {
        (row % self.groups) * self.nseg
    }
}

fn fwd_t<T: Float + Send + Sync>(
    x: &[T],
    w: Option<&[T]>,
    b: Option<&[T]>,
    g: &NormGeom,
    eps: f64,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let len = g.len();
    let mut y = vec![T::zero(); x.len()];
    let mut mean = vec![T::zero(); g.rows];
    let mut rstd = vec![T::zero(); g.rows];
    let cv = |v: f64| T::from(v).unwrap_or_else(T::nan);
    y.par_chunks_mut(len.max(1)).zip(mean.par_iter_mut().zip(rstd.par_iter_mut())).enumerate().for_each(
        |(r, (yr, (m, rs)))| {
            let xr = &x[r * len..(r + 1) * len];
            let mu = if g.center { block_sum(xr, |v| v) / len as f64 } else { 0.0 };
            let mu_c = cv(mu);
            let var = block_sum(xr, |v| (v - mu_c) * (v - mu_c)) / len as f64;
            let inv = 1.0 / (var + eps).sqrt();
            *m = cv(mu);
            *rs = cv(inv);
            let (mu_t, inv_t) = (cv(mu), cv(inv));
            let c0 = g.ch0(r);
            for k in 0..g.nseg {
                let wk = w.map_or(T::one(), |w| w[c0 + k]);
                let bk = b.map_or(T::zero(), |b| b[c0 + k]);
                let (scale, shift) = (wk * inv_t, bk - mu_t * inv_t * wk);
                for i in k * g.seg..(k + 1) * g.seg {
                    yr[i] = xr[i] * scale + shift;
                }
            }
        },
    );
    (y, mean, rstd)
}

#[allow(clippy::type_complexity)]
fn bwd_t<T: Float + Send + Sync>(
    gy: &[T],
    x: &[T],
    mean: &[T],
    rstd: &[T],
    w: Option<&[T]>,
    g: &NormGeom,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let len = g.len();
    let mut dx = vec![T::zero(); x.len()];
    let cv = |v: f64| T::from(v).unwrap_or_else(T::nan);
    let f = |v: T| v.to_f64().unwrap_or(f64::NAN);
    // Per-row partial sums of gy and gy·x̂ per channel, for dw / db.
    let mut part_dw = vec![0f64; g.rows * g.nseg];
    let mut part_db = vec![0f64; g.rows * g.nseg];
    dx.par_chunks_mut(len.max(1))
        .zip(part_dw.par_chunks_mut(g.nseg.max(1)).zip(part_db.par_chunks_mut(g.nseg.max(1))))
        .enumerate()
        .for_each(|(r, (dxr, (pdw, pdb)))| {
            let xr = &x[r * len..(r + 1) * len];
            let gr = &gy[r * len..(r + 1) * len];
            let (mu, inv) = (mean[r], rstd[r]);
            let c0 = g.ch0(r);
            // Σ dx̂ and Σ dx̂·x̂ over the row, with dx̂ = gy·w.
            let (mut s1, mut s2) = (0f64, 0f64);
            for k in 0..g.nseg {
                let wk = w.map_or(1.0, |w| f(w[c0 + k]));
                let seg = k * g.seg..(k + 1) * g.seg;
                let (a, bsum) = block_sum2(&gr[seg.clone()], &xr[seg], |gv, xv| (gv * ((xv - mu) * inv), gv));
                pdw[k] = a;
                pdb[k] = bsum;
                s1 += bsum * wk;
                s2 += a * wk;
            }
            let n = len as f64;
            let (m1, m2) = (cv(if g.center { s1 / n } else { 0.0 }), cv(s2 / n));
            for k in 0..g.nseg {
                let wk = w.map_or(T::one(), |w| w[c0 + k]);
                let seg = k * g.seg..(k + 1) * g.seg;
                for ((d, &xv), &gv) in dxr[seg.clone()].iter_mut().zip(&xr[seg.clone()]).zip(&gr[seg]) {
                    let xh = (xv - mu) * inv;
                    *d = inv * (gv * wk - m1 - xh * m2);
                }
            }
        });
    let mut dw = vec![0f64; g.channels];
    let mut db = vec![0f64; g.channels];
    for r in 0..g.rows {
        let c0 = g.ch0(r);
        for k in 0..g.nseg {
            dw[c0 + k] += part_dw[r * g.nseg + k];
            db[c0 + k] += part_db[r * g.nseg + k];
        }
    }
    (dx, dw.into_iter().map(cv).collect(), db.into_iter().map(cv).collect())
}

/// Σ g(x) over `xs`: partial sums in T over 8 lanes (vectorisable) within blocks of 256,
/// block totals in f64, so long rows lose no more than an f32 block sum's rounding.
#[inline]
fn block_sum<T: Float>(xs: &[T], g: impl Fn(T) -> T) -> f64 {
    let mut total = 0f64;
    for blk in xs.chunks(256) {
        let mut acc = [T::zero(); 8];
        let mut it = blk.chunks_exact(8);
        for c in &mut it {
            for l in 0..8 {
                acc[l] = acc[l] + g(c[l]);
            }
        }
        let mut s = acc.iter().fold(T::zero(), |a, &b| a + b);
        for &x in it.remainder() {
            s = s + g(x);
        }
        total += s.to_f64().unwrap_or(f64::NAN);
    }
    total
}

/// Two sums at once over zipped `a`, `b` (see [`block_sum`]).
#[inline]
fn block_sum2<T: Float>(a: &[T], b: &[T], g: impl Fn(T, T) -> (T, T)) -> (f64, f64) {
    let (mut t0, mut t1) = (0f64, 0f64);
    for (ba, bb) in a.chunks(256).zip(b.chunks(256)) {
        let (mut acc0, mut acc1) = ([T::zero(); 8], [T::zero(); 8]);
        let (mut ia, mut ib) = (ba.chunks_exact(8), bb.chunks_exact(8));
        for (ca, cb) in (&mut ia).zip(&mut ib) {
            for l in 0..8 {
                let (u, v) = g(ca[l], cb[l]);
                acc0[l] = acc0[l] + u;
                acc1[l] = acc1[l] + v;
            }
        }
        let mut s0 = acc0.iter().fold(T::zero(), |x, &y| x + y);
        let mut s1 = acc1.iter().fold(T::zero(), |x, &y| x + y);
        for (&x, &y) in ia.remainder().iter().zip(ib.remainder()) {
            let (u, v) = g(x, y);
            s0 = s0 + u;
            s1 = s1 + v;
        }
        t0 += s0.to_f64().unwrap_or(f64::NAN);
        t1 += s1.to_f64().unwrap_or(f64::NAN);
    }
    (t0, t1)
}

/// The elements of a view in order: borrowed when contiguous, gathered otherwise.
fn view<'a, T: Copy + Send + Sync>(v: &'a [T], l: &Layout) -> std::borrow::Cow<'a, [T]> {
    if l.is_contiguous() {
        std::borrow::Cow::Borrowed(&v[l.offset..l.offset + l.numel()])
    } else {
        std::borrow::Cow::Owned(gather_strided(v, l))
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

type Opt<'a> = Option<(&'a CpuStorage, &'a Layout)>;

fn as_f64s(s: Opt) -> Option<Vec<f64>> {
    s.map(|(s, l)| s.to_f64_vec(l))
}

/// Forward: returns (y, mean, rstd); mean/rstd have one entry per row.
pub fn norm_fwd(
    kind: NormKind,
    x: &CpuStorage,
    lx: &Layout,
    w: Opt,
    b: Opt,
    eps: f64,
) -> Result<(CpuStorage, CpuStorage, CpuStorage)> {
    let g = NormGeom::new(kind, &lx.shape)?;
    affine_check("weight", w.map(|p| p.1), g.channels)?;
    affine_check("bias", b.map(|p| p.1), g.channels)?;
    for o in [w, b].into_iter().flatten() {
        if o.0.dtype() != x.dtype() {
            return Err(Error::DTypeMismatch { op: "norm", lhs: x.dtype(), rhs: o.0.dtype() });
        }
    }
    macro_rules! run {
        ($t:ty, $xs:expr, $wrap:expr) => {{
            let conv = |o: Opt| as_f64s(o).map(|v| v.into_iter().map(|x| x as $t).collect::<Vec<$t>>());
            let (wv, bv) = (conv(w), conv(b));
            let (y, m, r) = fwd_t::<$t>(&$xs, wv.as_deref(), bv.as_deref(), &g, eps);
            ($wrap(y), $wrap(m), $wrap(r))
        }};
    }
    Ok(match x {
        CpuStorage::F32(v) => run!(f32, view(v, lx), CpuStorage::F32),
        CpuStorage::F64(v) => run!(f64, view(v, lx), CpuStorage::F64),
        _ if x.dtype().is_half() => {
            let (y, m, r) = run!(f32, half_to_f32(x, lx).expect("half"), |v| v);
            (f32_to_dtype(y, x.dtype()), CpuStorage::F32(m), CpuStorage::F32(r))
        }
        _ => return Err(Error::DType { op: "norm", dtype: x.dtype() }),
    })
}

/// Backward: returns (dx, dw, db) (dw/db per channel, also when the forward had no affine).
#[allow(clippy::too_many_arguments)]
pub fn norm_bwd(
    kind: NormKind,
    gy: &CpuStorage,
    lgy: &Layout,
    x: &CpuStorage,
    lx: &Layout,
    mean: &CpuStorage,
    rstd: &CpuStorage,
    w: Opt,
) -> Result<(CpuStorage, CpuStorage, CpuStorage)> {
    let g = NormGeom::new(kind, &lx.shape)?;
    if lgy.shape != lx.shape {
        return shape_err("norm backward", format!("gradient {:?} vs input {:?}", lgy.shape, lx.shape));
    }
    affine_check("weight", w.map(|p| p.1), g.channels)?;
    let stats = |s: &CpuStorage| s.to_f64_vec(&Layout::contiguous(&[s.len()]));
    let (mv, rv) = (stats(mean), stats(rstd));
    if mv.len() != g.rows || rv.len() != g.rows {
        return shape_err("norm backward", format!("saved statistics have {} entries, expected {}", mv.len(), g.rows));
    }
    macro_rules! run {
        ($t:ty, $gs:expr, $xs:expr) => {{
            let c = |v: Vec<f64>| v.into_iter().map(|x| x as $t).collect::<Vec<$t>>();
            let wv = as_f64s(w).map(c);
            bwd_t::<$t>(&$gs, &$xs, &c(mv), &c(rv), wv.as_deref(), &g)
        }};
    }
    Ok(match (gy, x) {
        (CpuStorage::F32(a), CpuStorage::F32(b)) => {
            let (dx, dw, db) = run!(f32, view(a, lgy), view(b, lx));
            (CpuStorage::F32(dx), CpuStorage::F32(dw), CpuStorage::F32(db))
        }
        (CpuStorage::F64(a), CpuStorage::F64(b)) => {
            let (dx, dw, db) = run!(f64, view(a, lgy), view(b, lx));
            (CpuStorage::F64(dx), CpuStorage::F64(dw), CpuStorage::F64(db))
        }
        _ if x.dtype().is_half() && gy.dtype() == x.dtype() => {
            let (dx, dw, db) = run!(f32, half_to_f32(gy, lgy).expect("half"), half_to_f32(x, lx).expect("half"));
            (f32_to_dtype(dx, x.dtype()), f32_to_dtype(dw, x.dtype()), f32_to_dtype(db, x.dtype()))
        }
        _ => return Err(Error::DTypeMismatch { op: "norm backward", lhs: gy.dtype(), rhs: x.dtype() }),
    })
}
