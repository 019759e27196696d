//! Fused scaled dot-product attention, flash-style on the CPU: query blocks stream over key
//! blocks with an online softmax, so the full score matrix is never materialised. The
//! backward recomputes scores from the saved log-sum-exp.

use super::elementwise::{f32_to_dtype, half_to_f32};
use super::matmul::gemm_raw;
use super::storage::{gather_strided, CpuStorage};
use crate::error::shape_err;
use crate::special::FastExp;
use crate::{Error, Layout, Result};
use num_traits::Float;
use rayon::prelude::*;

const BQ: usize = 64;
const BK: usize = 64;

/// Problem size and options of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttnGeom {
    pub bh: usize,
    pub sq: usize,
    pub sk: usize,
    pub d: usize,
    pub dv: usize,
    pub scale: f64,
    /// Top-left aligned causal mask (query i sees keys j ≤ i), like PyTorch's `is_causal`.
    pub causal: bool,
}

impl AttnGeom {
    /// Validates `q [B,H,Sq,D]`, `k [B,H,Sk,D]`, `v [B,H,Sk,Dv]`.
    pub fn new(q: &[usize], k: &[usize], v: &[usize], scale: Option<f64>, causal: bool) -> Result<AttnGeom> {
        if q.len() != 4 || k.len() != 4 || v.len() != 4 || q[..2] != k[..2] || k[..3] != v[..3] || q[3] != k[3] {
            return shape_err(
                "attention",
                format!("q {q:?}, k {k:?}, v {v:?}: need [B,H,Sq,D], [B,H,Sk,D], [B,H,Sk,Dv]"),
            );
        }
        let d = q[3];
        Ok(AttnGeom {
            bh: q[0] * q[1],
            sq: q[2],
            sk: k[2],
            d,
            dv: v[3],
            scale: scale.unwrap_or(1.0 / (d.max(1) as f64).sqrt()),
            causal,
        })
    }
    pub fn mask_shape(&self, b: usize, h: usize) -> [usize; 4] {
        [b, h, self.sq, self.sk]
    }
    /// Multiply-adds of the forward (QKᵀ and PV).
    pub fn macs(&self) -> usize {
        self.bh * self.sq * self.sk * (self.d + self.dv)
    }
}

/// Fills `s[bq×bk]` with scaled scores plus mask for query rows `q0..` and key cols `k0..`.
#[allow(clippy::too_many_arguments)]
fn scores<T: Float + 'static>(
    g: &AttnGeom,
    q: &[T],
    k: &[T],
    mask: Option<&[T]>,
    q0: usize,
    bq: usize,
    k0: usize,
    bk: usize,
    s: &mut [T],
) {
    // SAFETY: q rows q0..q0+bq and k rows k0..k0+bk are in bounds; s holds bq·bk.
    unsafe {
        gemm_raw(
            bq,
            bk,
            g.d,
            s.as_mut_ptr(),
            bk as isize,
            1,
            false,
            q[q0 * g.d..].as_ptr(),
            g.d as isize,
            1,
            k[k0 * g.d..].as_ptr(),
            1,
            g.d as isize,
            1,
        )
    };
    let sc = T::from(g.scale).unwrap_or_else(T::nan);
    for i in 0..bq {
        for j in 0..bk {
            let mut x = s[i * bk + j] * sc;
            if let Some(m) = mask {
                x = x + m[(q0 + i) * g.sk + k0 + j];
            }
            if g.causal && k0 + j > q0 + i {
                x = T::neg_infinity();
            }
            s[i * bk + j] = x;
        }
    }
}

fn fwd_t<T: Float + FastExp + Send + Sync + 'static>(
    g: &AttnGeom,
    q: &[T],
    k: &[T],
    v: &[T],
    mask: Option<&[T]>,
) -> (Vec<T>, Vec<T>) {
    let mut out = vec![T::zero(); g.bh * g.sq * g.dv];
    let mut lse = vec![T::zero(); g.bh * g.sq];
    out.par_chunks_mut((g.sq * g.dv).max(1)).zip(lse.par_chunks_mut(g.sq.max(1))).enumerate().for_each(
        |(h, (o, l))| {
            let (q, k, v) = (&q[h * g.sq * g.d..], &k[h * g.sk * g.d..], &v[h * g.sk * g.dv..]);
            let mask = mask.map(|m| &m[h * g.sq * g.sk..]);
            let mut s = vec![T::zero(); BQ * BK];
            let mut acc = vec![T::zero(); BQ * g.dv];
            let (mut m_run, mut l_run) = (vec![T::neg_infinity(); BQ], vec![T::zero(); BQ]);
            for q0 in (0..g.sq).step_by(BQ) {
                let bq = BQ.min(g.sq - q0);
                acc[..bq * g.dv].fill(T::zero());
                m_run[..bq].fill(T::neg_infinity());
                l_run[..bq].fill(T::zero());
                let k_end = if g.causal { g.sk.min(q0 + bq) } else { g.sk };
                for k0 in (0..k_end).step_by(BK) {
                    let bk = BK.min(k_end - k0);
                    scores(g, q, k, mask, q0, bq, k0, bk, &mut s);
                    for i in 0..bq {
                        let row = &mut s[i * bk..(i + 1) * bk];
                        let mx = row.iter().fold(T::neg_infinity(), |a, &b| a.max(b));
                        let m_new = m_run[i].max(mx);
                        if m_new == T::neg_infinity() {
                            row.fill(T::zero());
                            continue;
                        }
                        let corr = (m_run[i] - m_new).fexp();
                        let mut sum = T::zero();
                        for x in row.iter_mut() {
                            *x = (*x - m_new).fexp();
                            sum = sum + *x;
                        }
                        l_run[i] = l_run[i] * corr + sum;
                        m_run[i] = m_new;
                        for a in &mut acc[i * g.dv..(i + 1) * g.dv] {
                            *a = *a * corr;
                        }
                    }
                    // acc += P · V_blk.
                    // SAFETY: extents in bounds.
                    unsafe {
                        gemm_raw(
                            bq,
                            g.dv,
                            bk,
                            acc.as_mut_ptr(),
                            g.dv as isize,
                            1,
                            true,
                            s.as_ptr(),
                            bk as isize,
                            1,
                            v[k0 * g.dv..].as_ptr(),
                            g.dv as isize,
                            1,
                            1,
                        )
                    };
                }
                for i in 0..bq {
                    let inv = if l_run[i] > T::zero() { l_run[i].recip() } else { T::zero() };
                    for c in 0..g.dv {
                        o[(q0 + i) * g.dv + c] = acc[i * g.dv + c] * inv;
                    }
                    l[q0 + i] = m_run[i] + l_run[i].ln();
                }
            }
        },
    );
    (out, lse)
}

#[allow(clippy::too_many_arguments)]
fn bwd_t<T: Float + FastExp + Send + Sync + 'static>(
    g: &AttnGeom,
    q: &[T],
    k: &[T],
    v: &[T],
    mask: Option<&[T]>,
    o: &[T],
    lse: &[T],
    go: &[T],
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let mut dq = vec![T::zero(); g.bh * g.sq * g.d];
    let mut dk = vec![T::zero(); g.bh * g.sk * g.d];
    let mut dv = vec![T::zero(); g.bh * g.sk * g.dv];
    let sc = T::from(g.scale).unwrap_or_else(T::nan);
    dq.par_chunks_mut((g.sq * g.d).max(1))
        .zip(dk.par_chunks_mut((g.sk * g.d).max(1)).zip(dv.par_chunks_mut((g.sk * g.dv).max(1))))
        .enumerate()
        .for_each(|(h, (dq, (dk, dv)))| {
            let (q, k, v) = (&q[h * g.sq * g.d..], &k[h * g.sk * g.d..], &v[h * g.sk * g.dv..]);
            let (o, go, lse) = (&o[h * g.sq * g.dv..], &go[h * g.sq * g.dv..], &lse[h * g.sq..]);
            let mask = mask.map(|m| &m[h * g.sq * g.sk..]);
            let delta: Vec<T> =
                (0..g.sq).map(|i| (0..g.dv).fold(T::zero(), |a, c| a + go[i * g.dv + c] * o[i * g.dv + c])).collect();
            let mut p = vec![T::zero(); BQ * BK];
            let mut dp = vec![T::zero(); BQ * BK];
            for q0 in (0..g.sq).step_by(BQ) {
                let bq = BQ.min(g.sq - q0);
                let k_end = if g.causal { g.sk.min(q0 + bq) } else { g.sk };
                for k0 in (0..k_end).step_by(BK) {
                    let bk = BK.min(k_end - k0);
                    scores(g, q, k, mask, q0, bq, k0, bk, &mut p);
                    for i in 0..bq {
                        let l = lse[q0 + i];
                        for x in &mut p[i * bk..(i + 1) * bk] {
                            *x = if l == T::neg_infinity() || *x == T::neg_infinity() {
                                T::zero()
                            } else {
                                (*x - l).exp()
                            };
                        }
                    }
                    // SAFETY (all gemm calls below): extents in bounds of the per-head slices.
                    unsafe {
                        // dV_blk += Pᵀ · dO_blk.
                        gemm_raw(
                            bk,
                            g.dv,
                            bq,
                            dv[k0 * g.dv..].as_mut_ptr(),
                            g.dv as isize,
                            1,
                            true,
                            p.as_ptr(),
                            1,
                            bk as isize,
                            go[q0 * g.dv..].as_ptr(),
                            g.dv as isize,
                            1,
                            1,
                        );
                        // dP = dO_blk · V_blkᵀ.
                        gemm_raw(
                            bq,
                            bk,
                            g.dv,
                            dp.as_mut_ptr(),
                            bk as isize,
                            1,
                            false,
                            go[q0 * g.dv..].as_ptr(),
                            g.dv as isize,
                            1,
                            v[k0 * g.dv..].as_ptr(),
                            1,
                            g.dv as isize,
                            1,
                        );
                    }
                    // dS = P ⊙ (dP − δ) · scale, stored in dp.
                    for i in 0..bq {
                        for j in 0..bk {
                            let idx = i * bk + j;
                            dp[idx] = p[idx] * (dp[idx] - delta[q0 + i]) * sc;
                        }
                    }
                    unsafe {
                        // dQ_blk += dS · K_blk.
                        gemm_raw(
                            bq,
                            g.d,
                            bk,
                            dq[q0 * g.d..].as_mut_ptr(),
                            g.d as isize,
                            1,
                            true,
                            dp.as_ptr(),
                            bk as isize,
                            1,
                            k[k0 * g.d..].as_ptr(),
                            g.d as isize,
                            1,
                            1,
                        );
                        // dK_blk += dSᵀ · Q_blk.
                        gemm_raw(
                            bk,
                            g.d,
                            bq,
                            dk[k0 * g.d..].as_mut_ptr(),
                            g.d as isize,
                            1,
                            true,
                            dp.as_ptr(),
                            1,
                            bk as isize,
                            q[q0 * g.d..].as_ptr(),
                            g.d as isize,
                            1,
                            1,
                        );
                    }
                }
            }
        });
    (dq, dk, dv)
}

type Opt<'a> = Option<(&'a CpuStorage, &'a Layout)>;

fn same_float(op: &'static str, xs: &[&CpuStorage]) -> Result<()> {
    let d = xs[0].dtype();
    if !d.is_float() {
        return Err(Error::DType { op, dtype: d });
    }
    for x in xs {
        if x.dtype() != d {
            return Err(Error::DTypeMismatch { op, lhs: d, rhs: x.dtype() });
        }
    }
    Ok(())
}

fn mask_full(g: &AttnGeom, ql: &Layout, mask: Opt) -> Result<Option<(CpuStorage, Layout)>> {
    let Some((m, ml)) = mask else { return Ok(None) };
    let full = g.mask_shape(ql.shape[0], ql.shape[1]);
    let bl = ml.broadcast_to(&full).map_err(|_| Error::Shape {
        op: "attention",
        detail: format!("mask {:?} does not broadcast to {full:?}", ml.shape),
    })?;
    Ok(Some((m.clone(), bl)))
}

macro_rules! f32_or_f64 {
    ($dt:expr, $body32:expr, $body64:expr) => {
        match $dt {
            crate::DType::F64 => $body64,
            _ => $body32,
        }
    };
}

fn to_f32(s: &CpuStorage, l: &Layout) -> Vec<f32> {
    match s {
        CpuStorage::F32(v) => gather_strided(v, l),
        _ => half_to_f32(s, l).unwrap_or_else(|| s.to_f64_vec(l).into_iter().map(|x| x as f32).collect()),
    }
}
fn to_f64(s: &CpuStorage, l: &Layout) -> Vec<f64> {
    match s {
        CpuStorage::F64(v) => gather_strided(v, l),
        _ => s.to_f64_vec(l),
    }
}

/// Forward: returns (out `[B,H,Sq,Dv]`, lse `[B,H,Sq]` in f32 or f64).
pub fn attention_fwd(
    q: (&CpuStorage, &Layout),
    k: (&CpuStorage, &Layout),
    v: (&CpuStorage, &Layout),
    mask: Opt,
    scale: Option<f64>,
    causal: bool,
) -> Result<(CpuStorage, CpuStorage, AttnGeom)> {
    let g = AttnGeom::new(&q.1.shape, &k.1.shape, &v.1.shape, scale, causal)?;
    let mut all = vec![q.0, k.0, v.0];
    if let Some((m, _)) = mask {
        all.push(m);
    }
    same_float("attention", &all)?;
    let mf = mask_full(&g, q.1, mask)?;
    let dt = q.0.dtype();
    let (o, l) = f32_or_f64!(
        dt,
        {
            let mv = mf.as_ref().map(|(m, l)| to_f32(m, l));
            let (o, l) = fwd_t(&g, &to_f32(q.0, q.1), &to_f32(k.0, k.1), &to_f32(v.0, v.1), mv.as_deref());
            (f32_to_dtype(o, dt), CpuStorage::F32(l))
        },
        {
            let mv = mf.as_ref().map(|(m, l)| to_f64(m, l));
            let (o, l) = fwd_t(&g, &to_f64(q.0, q.1), &to_f64(k.0, k.1), &to_f64(v.0, v.1), mv.as_deref());
            (CpuStorage::F64(o), CpuStorage::F64(l))
        }
    );
    Ok((o, l, g))
}

/// Backward: returns (dq, dk, dv) given the forward's output and lse.
#[allow(clippy::too_many_arguments)]
pub fn attention_bwd(
    q: (&CpuStorage, &Layout),
    k: (&CpuStorage, &Layout),
    v: (&CpuStorage, &Layout),
    mask: Opt,
    out: (&CpuStorage, &Layout),
    lse: (&CpuStorage, &Layout),
    grad_out: (&CpuStorage, &Layout),
    scale: Option<f64>,
    causal: bool,
) -> Result<(CpuStorage, CpuStorage, CpuStorage)> {
    let g = AttnGeom::new(&q.1.shape, &k.1.shape, &v.1.shape, scale, causal)?;
    if grad_out.1.shape != out.1.shape || out.1.shape[..3] != q.1.shape[..3] || out.1.shape[3] != g.dv {
        return shape_err(
            "attention backward",
            format!("grad {:?} / out {:?} vs q {:?}", grad_out.1.shape, out.1.shape, q.1.shape),
        );
    }
    same_float("attention backward", &[q.0, k.0, v.0, out.0, grad_out.0])?;
    let mf = mask_full(&g, q.1, mask)?;
    let dt = q.0.dtype();
    Ok(f32_or_f64!(
        dt,
        {
            let mv = mf.as_ref().map(|(m, l)| to_f32(m, l));
            let (a, b, c) = bwd_t(
                &g,
                &to_f32(q.0, q.1),
                &to_f32(k.0, k.1),
                &to_f32(v.0, v.1),
                mv.as_deref(),
                &to_f32(out.0, out.1),
                &to_f32(lse.0, lse.1),
                &to_f32(grad_out.0, grad_out.1),
            );
            (f32_to_dtype(a, dt), f32_to_dtype(b, dt), f32_to_dtype(c, dt))
        },
        {
            let mv = mf.as_ref().map(|(m, l)| to_f64(m, l));
            let (a, b, c) = bwd_t(
                &g,
                &to_f64(q.0, q.1),
                &to_f64(k.0, k.1),
                &to_f64(v.0, v.1),
                mv.as_deref(),
                &to_f64(out.0, out.1),
                &to_f64(lse.0, lse.1),
                &to_f64(grad_out.0, grad_out.1),
            );
            (CpuStorage::F64(a), CpuStorage::F64(b), CpuStorage::F64(c))
        }
    ))
}
