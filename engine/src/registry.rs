//! The op registry: one entry per primitive or differentiable function. Each entry knows how
//! to draw sample inputs (random shapes with size-1 dims, broadcasting, non-contiguous
//! views), its naive f64 reference, whether it is differentiable, its fused composite if any,
//! and its FLOP / byte counts. The generic tests (engine/tests/registry.rs), `scorch ops`
//! and the benchmarks all walk this one table.

use crate::autograd::grad;
use crate::error::Result;
use crate::ops::conv::ConvParams;
use crate::ops::{attention, fused, norm};
use crate::testing::SampleRng;
use crate::testing::{compare, gradcheck, GradcheckOptions};
use crate::Tensor;
use scorch_ops::cpu::fused::KlubParams;
use scorch_ops::cpu::norm::NormKind;
use scorch_ops::{special, DType};

/// A dense f64 array for naive references.
#[derive(Clone, Debug, PartialEq)]
pub struct Nd {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

impl Nd {
    pub fn new(shape: &[usize], data: Vec<f64>) -> Nd {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Nd { shape: shape.to_vec(), data }
    }
    pub fn zeros(shape: &[usize]) -> Nd {
        Nd::new(shape, vec![0.0; shape.iter().product()])
    }
    pub fn from_tensor(t: &Tensor) -> Result<Nd> {
        Ok(Nd::new(t.shape(), t.to_vec_f64()?))
    }
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    /// Row-major multi-index of flat position `i`.
    pub fn unravel(&self, mut i: usize) -> Vec<usize> {
        let mut idx = vec![0; self.rank()];
        for d in (0..self.rank()).rev() {
            idx[d] = i % self.shape[d];
            i /= self.shape[d];
        }
        idx
    }
    pub fn ravel(&self, idx: &[usize]) -> usize {
        idx.iter().zip(&self.shape).fold(0, |acc, (&i, &d)| acc * d + i)
    }
    pub fn at(&self, idx: &[usize]) -> f64 {
        self.data[self.ravel(idx)]
    }
    /// Element at an index of a broadcast shape (right-aligned; size-1 dims repeat).
    pub fn at_bcast(&self, idx: &[usize]) -> f64 {
        let lead = idx.len() - self.rank();
        let own: Vec<usize> = (0..self.rank()).map(|d| if self.shape[d] == 1 { 0 } else { idx[lead + d] }).collect();
        self.at(&own)
    }
    pub fn map(&self, f: impl Fn(f64) -> f64) -> Nd {
        Nd::new(&self.shape, self.data.iter().map(|&x| f(x)).collect())
    }
}

fn bshape(shapes: &[&[usize]]) -> Vec<usize> {
    let r = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    (0..r)
        .map(|i| shapes.iter().map(|s| if i + s.len() >= r { s[i + s.len() - r] } else { 1 }).max().unwrap_or(1))
        .collect()
}

fn zip2(a: &Nd, b: &Nd, f: impl Fn(f64, f64) -> f64) -> Nd {
    let shape = bshape(&[&a.shape, &b.shape]);
    let mut out = Nd::zeros(&shape);
    for i in 0..out.data.len() {
        let idx = out.unravel(i);
        out.data[i] = f(a.at_bcast(&idx), b.at_bcast(&idx));
    }
    out
}

/// Reduces `axes` with `f` over the visited values (keepdim layout when `keep`).
fn reduce_nd(x: &Nd, axes: &[usize], keep: bool, f: impl Fn(&[f64]) -> f64) -> Nd {
    let kshape: Vec<usize> = x.shape.iter().enumerate().map(|(d, &s)| if axes.contains(&d) { 1 } else { s }).collect();
    let mut groups: Vec<Vec<f64>> = vec![Vec::new(); kshape.iter().product()];
    let kn = Nd::zeros(&kshape);
    for i in 0..x.data.len() {
        let mut idx = x.unravel(i);
        for &a in axes {
            idx[a] = 0;
        }
        groups[kn.ravel(&idx)].push(x.data[i]);
    }
    let data: Vec<f64> = groups.iter().map(|g| f(g)).collect();
    let shape: Vec<usize> = if keep {
        kshape
    } else {
        x.shape.iter().enumerate().filter(|(d, _)| !axes.contains(d)).map(|(_, &s)| s).collect()
    };
    Nd::new(&shape, data)
}

/// Operates along one axis: `f` maps each lane to a lane of the same length.
fn along(x: &Nd, axis: usize, f: impl Fn(&[f64]) -> Vec<f64>) -> Nd {
    let mut out = x.clone();
    let n = x.shape[axis];
    for i in 0..x.data.len() {
        let idx = x.unravel(i);
        if idx[axis] != 0 {
            continue;
        }
        let pos: Vec<usize> = (0..n)
            .map(|j| {
                let mut k = idx.clone();
                k[axis] = j;
                x.ravel(&k)
            })
            .collect();
        let lane: Vec<f64> = pos.iter().map(|&p| x.data[p]).collect();
        for (p, v) in pos.iter().zip(f(&lane)) {
            out.data[*p] = v;
        }
    }
    out
}

/// Scalar and integer parameters of one sample.
#[derive(Clone, Debug, Default)]
pub struct Params {
    pub i: Vec<usize>,
    pub f: Vec<f64>,
    pub b: Vec<bool>,
}

/// Inputs and parameters of one registry test case.
#[derive(Clone, Debug)]
pub struct Sample {
    pub inputs: Vec<Tensor>,
    pub params: Params,
    /// Float inputs that are constants (masks, targets): not gradchecked.
    pub constant: Vec<usize>,
}

type SampleFn = fn(&mut SampleRng) -> Result<Sample>;
type FwdFn = fn(&[Tensor], &Params) -> Result<Tensor>;
type RefFn = fn(&[Nd], &Params) -> Nd;
type CostFn = fn(&[Vec<usize>], &Params) -> (f64, f64);

/// One registry entry.
#[derive(Clone)]
pub struct OpInfo {
    pub name: &'static str,
    pub family: &'static str,
    pub differentiable: bool,
    /// Also checked in f32 and bf16 against the f64 reference.
    pub low_precision: bool,
    /// f32 tolerance multiplier (long accumulations, ill-conditioned ops).
    pub tol: f64,
    pub sample: SampleFn,
    pub forward: FwdFn,
    pub reference: RefFn,
    /// The composite a fused kernel must equal.
    pub composite: Option<FwdFn>,
    /// FLOPs and bytes (f32) for inputs of these shapes.
    pub cost: CostFn,
    /// Whether the CUDA backend implements it (every op does; its CPU parity is checked on a
    /// GPU by `scorch ops --check --device cuda` and engine/tests/cuda.rs).
    pub cuda: bool,
}

fn numel(s: &[usize]) -> f64 {
    s.iter().product::<usize>() as f64
}
fn ew_cost(s: &[Vec<usize>], _: &Params) -> (f64, f64) {
    let n = s.iter().map(|x| numel(x)).fold(0.0, f64::max);
    (n, 4.0 * (s.iter().map(|x| numel(x)).sum::<f64>() + n))
}

fn one(x: Tensor) -> Sample {
    Sample { inputs: vec![x], params: Params::default(), constant: vec![] }
}

macro_rules! unary {
    ($name:expr, $lo:expr, $hi:expr, $signed:expr, $diff:expr, $fwd:expr, $rf:expr) => {
        OpInfo {
            name: $name,
            family: "unary",
            differentiable: $diff,
            low_precision: true,
            tol: 1.0,
            sample: |r| {
                let rank = r.int(0, 3);
                let s = r.shape(rank, 5);
                Ok(one(r.tensor_signed(&s, $lo, $hi, $signed, true)?))
            },
            forward: |t, _| $fwd(&t[0]),
            reference: |x, _| x[0].map($rf),
            composite: None,
            cost: ew_cost,
            cuda: true,
        }
    };
}

fn bin_sample(r: &mut SampleRng, lo: f64, hi: f64, signed: bool) -> Result<Sample> {
    let rank = r.int(0, 4);
    let out = r.shape(rank, 4);
    let mk = |r: &mut SampleRng| -> Vec<usize> {
        let drop = r.int(0, rank);
        out[drop..].iter().map(|&d| if r.int(0, 3) == 0 { 1 } else { d }).collect()
    };
    let (sa, sb) = (mk(r), mk(r));
    Ok(Sample {
        inputs: vec![r.tensor_signed(&sa, lo, hi, signed, true)?, r.tensor_signed(&sb, lo, hi, signed, true)?],
        params: Params::default(),
        constant: vec![],
    })
}

macro_rules! binary {
    ($name:expr, $lo:expr, $hi:expr, $signed:expr, $diff:expr, $fwd:expr, $rf:expr) => {
        OpInfo {
            name: $name,
            family: "binary",
            differentiable: $diff,
            low_precision: true,
            tol: 1.0,
            sample: |r| bin_sample(r, $lo, $hi, $signed),
            forward: |t, _| $fwd(&t[0], &t[1]),
            reference: |x, _| zip2(&x[0], &x[1], $rf),
            composite: None,
            cost: ew_cost,
            cuda: true,
        }
    };
}

fn b2f(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

fn as_f64(t: Result<Tensor>) -> Result<Tensor> {
    t?.cast(DType::F64)
}

/// Random non-empty axes subset plus keepdim, for reductions.
fn red_sample(r: &mut SampleRng, lo: f64, hi: f64) -> Result<Sample> {
    let rank = r.int(1, 4);
    let s = r.shape(rank, 5);
    let mut axes: Vec<usize> = (0..rank).filter(|_| r.coin()).collect();
    if axes.is_empty() {
        axes.push(r.int(0, rank - 1));
    }
    let keep = r.coin();
    Ok(Sample {
        inputs: vec![r.tensor_signed(&s, lo, hi, true, true)?],
        params: Params { i: axes, f: vec![], b: vec![keep] },
        constant: vec![],
    })
}

fn iaxes(p: &Params) -> Vec<isize> {
    p.i.iter().map(|&a| a as isize).collect()
}

macro_rules! reduction {
    ($name:expr, $fwd:expr, $rf:expr) => {
        OpInfo {
            name: $name,
            family: "reduce",
            differentiable: true,
            low_precision: true,
            tol: 2.0,
            sample: |r| red_sample(r, 0.1, 2.0),
            forward: |t, p| $fwd(&t[0], &iaxes(p), p.b[0]),
            reference: |x, p| reduce_nd(&x[0], &p.i, p.b[0], $rf),
            composite: None,
            cost: |s, _| (numel(&s[0]), 4.0 * numel(&s[0])),
            cuda: true,
        }
    };
}

fn axis_sample(r: &mut SampleRng) -> Result<Sample> {
    let rank = r.int(1, 3);
    let s = r.shape(rank, 6);
    let a = r.int(0, rank - 1);
    Ok(Sample {
        inputs: vec![r.tensor_signed(&s, 0.0, 3.0, true, true)?],
        params: Params { i: vec![a], ..Default::default() },
        constant: vec![],
    })
}

fn softmax_lane(v: &[f64]) -> Vec<f64> {
    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let s: f64 = v.iter().map(|x| (x - m).exp()).sum();
    v.iter().map(|x| (x - m).exp() / s).collect()
}

fn matmul_nd(a: &Nd, b: &Nd) -> Nd {
    let (ra, rb) = (a.rank(), b.rank());
    let (m, k, n) = (a.shape[ra - 2], a.shape[ra - 1], b.shape[rb - 1]);
    let batch = bshape(&[&a.shape[..ra - 2], &b.shape[..rb - 2]]);
    let mut shape = batch.clone();
    shape.extend([m, n]);
    let mut out = Nd::zeros(&shape);
    for i in 0..out.data.len() {
        let idx = out.unravel(i);
        let (bi, r, c) = (&idx[..idx.len() - 2], idx[idx.len() - 2], idx[idx.len() - 1]);
        let mut s = 0.0;
        for kk in 0..k {
            let mut ia = bi.to_vec();
            ia.extend([r, kk]);
            let mut ib = bi.to_vec();
            ib.extend([kk, c]);
            s += a.at_bcast(&ia) * b.at_bcast(&ib);
        }
        out.data[i] = s;
    }
    out
}

/// Naive direct convolution (the definition, seven loops).
fn conv_nd(x: &Nd, w: &Nd, p: &ConvParams) -> Nd {
    let (n, cin, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let (cout, cg, kh, kw) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3]);
    let ho = (h + 2 * p.padding[0] - p.dilation[0] * (kh - 1) - 1) / p.stride[0] + 1;
    let wo = (wd + 2 * p.padding[1] - p.dilation[1] * (kw - 1) - 1) / p.stride[1] + 1;
    let cog = cout / p.groups;
    let _ = cin;
    let mut out = Nd::zeros(&[n, cout, ho, wo]);
    for b in 0..n {
        for co in 0..cout {
            let g = co / cog;
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut s = 0.0;
                    for ci in 0..cg {
                        for i in 0..kh {
                            for j in 0..kw {
                                let iy = (oy * p.stride[0] + i * p.dilation[0]) as isize - p.padding[0] as isize;
                                let ix = (ox * p.stride[1] + j * p.dilation[1]) as isize - p.padding[1] as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                    s += x.at(&[b, g * cg + ci, iy as usize, ix as usize]) * w.at(&[co, ci, i, j]);
                                }
                            }
                        }
                    }
                    out.data[((b * cout + co) * ho + oy) * wo + ox] = s;
                }
            }
        }
    }
    out
}

/// Naive transposed convolution: scatter each input pixel through the kernel.
fn conv_t_nd(x: &Nd, w: &Nd, p: &ConvParams, op: [usize; 2]) -> Nd {
    let (n, cin, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let (coutg, kh, kw) = (w.shape[1], w.shape[2], w.shape[3]);
    let cout = coutg * p.groups;
    let cig = cin / p.groups;
    let ho = (h - 1) * p.stride[0] + p.dilation[0] * (kh - 1) + op[0] + 1 - 2 * p.padding[0];
    let wo = (wd - 1) * p.stride[1] + p.dilation[1] * (kw - 1) + op[1] + 1 - 2 * p.padding[1];
    let mut out = Nd::zeros(&[n, cout, ho, wo]);
    for b in 0..n {
        for ci in 0..cin {
            let g = ci / cig;
            for y in 0..h {
                for xx in 0..wd {
                    let v = x.at(&[b, ci, y, xx]);
                    for co in 0..coutg {
                        for i in 0..kh {
                            for j in 0..kw {
                                let oy = (y * p.stride[0] + i * p.dilation[0]) as isize - p.padding[0] as isize;
                                let ox = (xx * p.stride[1] + j * p.dilation[1]) as isize - p.padding[1] as isize;
                                if oy >= 0 && ox >= 0 && (oy as usize) < ho && (ox as usize) < wo {
                                    let o = ((b * cout + g * coutg + co) * ho + oy as usize) * wo + ox as usize;
                                    out.data[o] += v * w.at(&[ci, co, i, j]);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

fn conv_params(p: &Params) -> ConvParams {
    ConvParams { stride: [p.i[0], p.i[1]], padding: [p.i[2], p.i[3]], dilation: [p.i[4], p.i[5]], groups: p.i[6] }
}

fn conv_sample(r: &mut SampleRng, transposed: bool) -> Result<Sample> {
    let groups = r.int(1, 2);
    let cin = groups * r.int(1, 2);
    let cout = groups * r.int(1, 2);
    let (kh, kw) = (r.int(1, 3), r.int(1, 3));
    let stride = [r.int(1, 2), r.int(1, 2)];
    let dil = [r.int(1, 2), r.int(1, 2)];
    let pad = [r.int(0, 1).min(kh - 1), r.int(0, 1).min(kw - 1)];
    let (h, w) = (r.int(dil[0] * (kh - 1) + 1, 6), r.int(dil[1] * (kw - 1) + 1, 6));
    let n = r.int(1, 2);
    let x = r.tensor_signed(&[n, cin, h, w], 0.0, 1.0, true, true)?;
    let wt = if transposed {
        r.tensor_signed(&[cin, cout / groups, kh, kw], 0.0, 1.0, true, true)?
    } else {
        r.tensor_signed(&[cout, cin / groups, kh, kw], 0.0, 1.0, true, true)?
    };
    let bias_c = cout;
    let b = r.tensor_signed(&[bias_c], 0.0, 1.0, true, false)?;
    let op = if transposed { [r.int(0, stride[0] - 1), r.int(0, stride[1] - 1)] } else { [0, 0] };
    let params = Params {
        i: vec![stride[0], stride[1], pad[0], pad[1], dil[0], dil[1], groups, op[0], op[1]],
        ..Default::default()
    };
    Ok(Sample { inputs: vec![x, wt, b], params, constant: vec![] })
}

fn add_bias(mut y: Nd, b: &Nd) -> Nd {
    let c = y.shape[1];
    let plane: usize = y.shape[2..].iter().product();
    for (i, v) in y.data.iter_mut().enumerate() {
        *v += b.data[(i / plane) % c];
    }
    y
}

fn pool_sample(r: &mut SampleRng) -> Result<Sample> {
    let k = r.int(1, 3);
    let s = r.int(1, 2);
    let p = r.int(0, k / 2);
    let (h, w) = (r.int(k, 6), r.int(k, 6));
    let sh = [r.int(1, 2), r.int(1, 3), h, w];
    let x = r.tensor_signed(&sh, 0.0, 2.0, true, true)?;
    Ok(Sample { inputs: vec![x], params: Params { i: vec![k, s, p], ..Default::default() }, constant: vec![] })
}

fn pool_nd(x: &Nd, k: usize, s: usize, p: usize, max: bool) -> Nd {
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let (ho, wo) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
    let mut out = Nd::zeros(&[n, c, ho, wo]);
    for b in 0..n {
        for ch in 0..c {
            for oy in 0..ho {
                for ox in 0..wo {
                    let (mut acc, mut best) = (0.0, f64::NEG_INFINITY);
                    for i in 0..k {
                        for j in 0..k {
                            let (y, xx) = ((oy * s + i) as isize - p as isize, (ox * s + j) as isize - p as isize);
                            if y >= 0 && xx >= 0 && (y as usize) < h && (xx as usize) < w {
                                let v = x.at(&[b, ch, y as usize, xx as usize]);
                                acc += v;
                                best = best.max(v);
                            }
                        }
                    }
                    out.data[((b * c + ch) * ho + oy) * wo + ox] = if max { best } else { acc / (k * k) as f64 };
                }
            }
        }
    }
    out
}

fn bilinear_nd(x: &Nd, oh: usize, ow: usize) -> Nd {
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let src = |o: usize, out: usize, inp: usize| -> (usize, usize, f64) {
        let s = ((o as f64 + 0.5) * inp as f64 / out as f64 - 0.5).max(0.0);
        let i0 = (s.floor() as usize).min(inp - 1);
        (i0, (i0 + 1).min(inp - 1), s - i0 as f64)
    };
    let mut out = Nd::zeros(&[n, c, oh, ow]);
    for b in 0..n {
        for ch in 0..c {
            for oy in 0..oh {
                let (y0, y1, fy) = src(oy, oh, h);
                for ox in 0..ow {
                    let (x0, x1, fx) = src(ox, ow, w);
                    let v = (1.0 - fy) * ((1.0 - fx) * x.at(&[b, ch, y0, x0]) + fx * x.at(&[b, ch, y0, x1]))
                        + fy * ((1.0 - fx) * x.at(&[b, ch, y1, x0]) + fx * x.at(&[b, ch, y1, x1]));
                    out.data[((b * c + ch) * oh + oy) * ow + ox] = v;
                }
            }
        }
    }
    out
}

/// Normalises groups of `len` consecutive elements and applies per-channel affine.
fn norm_nd(
    x: &Nd,
    rows: usize,
    center: bool,
    eps: f64,
    chan: impl Fn(usize) -> usize,
    w: Option<&Nd>,
    b: Option<&Nd>,
) -> Nd {
    let len = x.data.len() / rows.max(1);
    let mut out = x.clone();
    for r in 0..rows {
        let v = &x.data[r * len..(r + 1) * len];
        let mu = if center { v.iter().sum::<f64>() / len as f64 } else { 0.0 };
        let var = v.iter().map(|a| (a - mu).powi(2)).sum::<f64>() / len as f64;
        for i in 0..len {
            let k = r * len + i;
            let c = chan(k);
            out.data[k] =
                (x.data[k] - mu) / (var + eps).sqrt() * w.map_or(1.0, |w| w.data[c]) + b.map_or(0.0, |b| b.data[c]);
        }
    }
    out
}

fn attention_nd(q: &Nd, k: &Nd, v: &Nd, mask: Option<&Nd>, causal: bool) -> Nd {
    let (b, h, sq, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3]);
    let (sk, dv) = (k.shape[2], v.shape[3]);
    let scale = 1.0 / (d as f64).sqrt();
    let mut out = Nd::zeros(&[b, h, sq, dv]);
    for bi in 0..b {
        for hi in 0..h {
            for i in 0..sq {
                let mut s: Vec<f64> = (0..sk)
                    .map(|j| {
                        let dot: f64 = (0..d).map(|c| q.at(&[bi, hi, i, c]) * k.at(&[bi, hi, j, c])).sum();
                        let m = mask.map_or(0.0, |m| m.at_bcast(&[bi, hi, i, j]));
                        if causal && j > i {
                            f64::NEG_INFINITY
                        } else {
                            dot * scale + m
                        }
                    })
                    .collect();
                s = softmax_lane(&s);
                for c in 0..dv {
                    out.data[((bi * h + hi) * sq + i) * dv + c] = (0..sk).map(|j| s[j] * v.at(&[bi, hi, j, c])).sum();
                }
            }
        }
    }
    out
}

fn kl_beta_ref(a1: f64, b1: f64, a2: f64, b2: f64) -> f64 {
    // Direct lnB / digamma form (§B5.1, second line), independent of the Gamma identity.
    let lnb = |a: f64, b: f64| special::lgamma(a) + special::lgamma(b) - special::lgamma(a + b);
    lnb(a2, b2) - lnb(a1, b1)
        + (a1 - a2) * special::digamma(a1)
        + (b1 - b2) * special::digamma(b1)
        + (a2 - a1 + b2 - b1) * special::digamma(a1 + b1)
}

fn klub_params(p: &Params) -> KlubParams {
    let b = p.i[0];
    KlubParams {
        alpha_s: p.f[..b].to_vec(),
        alpha_t: p.f[b..2 * b].to_vec(),
        eta: p.f[2 * b],
        w_cond: 0.99,
        w_marg: 0.01,
    }
}

fn patch_corners(p: &Params) -> (Vec<usize>, Vec<usize>, usize, usize) {
    let b = p.i[0];
    (p.i[3..3 + b].to_vec(), p.i[3 + b..3 + 2 * b].to_vec(), p.i[1], p.i[2])
}

/// Every registered op.
pub fn registry() -> Vec<OpInfo> {
    let mut v = vec![
        unary!("neg", -2.0, 2.0, false, true, |x: &Tensor| x.neg(), |x| -x),
        unary!("abs", 0.05, 2.0, true, true, |x: &Tensor| x.abs(), f64::abs),
        unary!("exp", -2.0, 2.0, false, true, |x: &Tensor| x.exp(), f64::exp),
        unary!("log", 0.1, 3.0, false, true, |x: &Tensor| x.log(), f64::ln),
        unary!("log1p", -0.5, 2.0, false, true, |x: &Tensor| x.log1p(), f64::ln_1p),
        unary!("expm1", -2.0, 2.0, false, true, |x: &Tensor| x.expm1(), f64::exp_m1),
        unary!("sqrt", 0.1, 3.0, false, true, |x: &Tensor| x.sqrt(), f64::sqrt),
        unary!("rsqrt", 0.1, 3.0, false, true, |x: &Tensor| x.rsqrt(), |x: f64| 1.0 / x.sqrt()),
        unary!("reciprocal", 0.2, 2.0, true, true, |x: &Tensor| x.reciprocal(), |x: f64| 1.0 / x),
        unary!("sqr", -2.0, 2.0, false, true, |x: &Tensor| x.sqr(), |x: f64| x * x),
        unary!("sin", -3.0, 3.0, false, true, |x: &Tensor| x.sin(), f64::sin),
        unary!("cos", -3.0, 3.0, false, true, |x: &Tensor| x.cos(), f64::cos),
        unary!("tanh", -2.0, 2.0, false, true, |x: &Tensor| x.tanh(), f64::tanh),
        unary!("sigmoid", -4.0, 4.0, false, true, |x: &Tensor| x.sigmoid(), |x: f64| 1.0 / (1.0 + (-x).exp())),
        unary!("silu", -3.0, 3.0, false, true, |x: &Tensor| x.silu(), |x: f64| x / (1.0 + (-x).exp())),
        unary!("gelu", -3.0, 3.0, false, true, |x: &Tensor| x.gelu(), |x: f64| 0.5
            * x
            * (1.0 + special::erf(x / 2f64.sqrt()))),
        unary!("gelu_tanh", -3.0, 3.0, false, true, |x: &Tensor| x.gelu_tanh(), |x: f64| 0.5
            * x
            * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())),
        unary!("softplus", -4.0, 4.0, false, true, |x: &Tensor| x.softplus(), |x: f64| (1.0 + x.exp()).ln()),
        unary!("relu", 0.05, 2.0, true, true, |x: &Tensor| x.relu(), |x: f64| x.max(0.0)),
        unary!("leaky_relu", 0.05, 2.0, true, true, |x: &Tensor| x.leaky_relu(0.2), |x: f64| if x > 0.0 {
            x
        } else {
            0.2 * x
        }),
        unary!("erf", -2.0, 2.0, false, true, |x: &Tensor| x.erf(), special::erf),
        unary!("lgamma", 0.2, 8.0, false, true, |x: &Tensor| x.lgamma(), special::lgamma),
        unary!("digamma", 0.3, 8.0, false, true, |x: &Tensor| x.digamma(), special::digamma),
        unary!("trigamma", 0.3, 8.0, false, true, |x: &Tensor| x.trigamma(), special::trigamma),
        unary!("sign", 0.05, 2.0, true, false, |x: &Tensor| x.sign(), f64::signum),
        unary!("floor", 0.05, 3.0, true, false, |x: &Tensor| x.floor(), f64::floor),
        unary!("round", 0.05, 3.0, true, false, |x: &Tensor| x.round(), |x: f64| {
            let r = x.round();
            if (x - x.trunc()).abs() == 0.5 {
                2.0 * (x / 2.0).round()
            } else {
                r
            }
        }),
        unary!("affine", -2.0, 2.0, false, true, |x: &Tensor| x.affine(-1.5, 0.25), |x: f64| -1.5 * x + 0.25),
        unary!("powf", 0.1, 3.0, false, true, |x: &Tensor| x.powf(2.5), |x: f64| x.powf(2.5)),
        unary!("clamp", 0.0, 2.0, true, true, |x: &Tensor| x.clamp(-0.5, 0.7), |x: f64| x.clamp(-0.5, 0.7)),
        binary!("add", 0.0, 2.0, true, true, |a: &Tensor, b: &Tensor| a.add(b), |a, b| a + b),
        binary!("sub", 0.0, 2.0, true, true, |a: &Tensor, b: &Tensor| a.sub(b), |a, b| a - b),
        binary!("mul", 0.0, 2.0, true, true, |a: &Tensor, b: &Tensor| a.mul(b), |a, b| a * b),
        binary!("div", 0.3, 2.0, true, true, |a: &Tensor, b: &Tensor| a.div(b), |a, b| a / b),
        binary!("pow", 0.2, 2.0, false, true, |a: &Tensor, b: &Tensor| a.pow(b), f64::powf),
        binary!("maximum", 0.0, 2.0, true, true, |a: &Tensor, b: &Tensor| a.maximum(b), f64::max),
        binary!("minimum", 0.0, 2.0, true, true, |a: &Tensor, b: &Tensor| a.minimum(b), f64::min),
        binary!("lt", 0.0, 2.0, true, false, |a: &Tensor, b: &Tensor| as_f64(a.lt(b)), |a, b| b2f(a < b)),
        binary!("ge", 0.0, 2.0, true, false, |a: &Tensor, b: &Tensor| as_f64(a.ge(b)), |a, b| b2f(a >= b)),
        binary!("eq", 0.0, 2.0, true, false, |a: &Tensor, b: &Tensor| as_f64(a.eq(&a.maximum(b)?)), |a, b| b2f(a >= b)),
        OpInfo {
            name: "where",
            family: "binary",
            differentiable: true,
            low_precision: true,
            tol: 1.0,
            sample: |r| {
                let mut s = bin_sample(r, 0.0, 2.0, true)?;
                let shape = s.inputs[0].shape().to_vec();
                s.inputs.push(r.tensor_signed(&shape, 0.0, 1.0, true, false)?);
                Ok(s)
            },
            forward: |t, _| {
                Tensor::where_cond(&t[2].cmp_scalar(scorch_ops::cpu::elementwise::BinaryOp::Gt, 0.0)?, &t[0], &t[1])
            },
            reference: |x, _| {
                let shape = bshape(&[&x[0].shape, &x[1].shape, &x[2].shape]);
                let mut o = Nd::zeros(&shape);
                for i in 0..o.data.len() {
                    let idx = o.unravel(i);
                    o.data[i] = if x[2].at_bcast(&idx) > 0.0 { x[0].at_bcast(&idx) } else { x[1].at_bcast(&idx) };
                }
                o
            },
            composite: None,
            cost: ew_cost,
            cuda: true,
        },
        reduction!("sum", |x: &Tensor, a: &[isize], k| x.sum(a, k), |g: &[f64]| g.iter().sum()),
        reduction!("mean", |x: &Tensor, a: &[isize], k| x.mean(a, k), |g: &[f64]| g.iter().sum::<f64>()
            / g.len() as f64),
        reduction!("max", |x: &Tensor, a: &[isize], k| x.max(a, k), |g: &[f64]| g
            .iter()
            .cloned()
            .fold(f64::NEG_INFINITY, f64::max)),
        reduction!("min", |x: &Tensor, a: &[isize], k| x.min(a, k), |g: &[f64]| g
            .iter()
            .cloned()
            .fold(f64::INFINITY, f64::min)),
        reduction!("logsumexp", |x: &Tensor, a: &[isize], k| x.logsumexp(a, k), |g: &[f64]| g
            .iter()
            .map(|v| v.exp())
            .sum::<f64>()
            .ln()),
        OpInfo {
            name: "var",
            family: "reduce",
            differentiable: true,
            low_precision: true,
            tol: 4.0,
            sample: |r| {
                let mut s = red_sample(r, 0.1, 2.0)?;
                let n: usize = s.params.i.iter().map(|&a| s.inputs[0].shape()[a]).product();
                if n < 2 {
                    // Needs two elements for the unbiased estimate: widen the reduced axis.
                    let shape: Vec<usize> = s.inputs[0]
                        .shape()
                        .iter()
                        .enumerate()
                        .map(|(d, &v)| if d == s.params.i[0] { v + 1 } else { v })
                        .collect();
                    s.inputs[0] = r.tensor_signed(&shape, 0.1, 2.0, true, true)?;
                }
                Ok(s)
            },
            forward: |t, p| t[0].std(&iaxes(p), 1, p.b[0])?.sqr(),
            reference: |x, p| {
                reduce_nd(&x[0], &p.i, p.b[0], |g| {
                    let m = g.iter().sum::<f64>() / g.len() as f64;
                    g.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (g.len() - 1) as f64
                })
            },
            composite: None,
            cost: |s, _| (3.0 * numel(&s[0]), 4.0 * numel(&s[0])),
            cuda: true,
        },
        OpInfo {
            name: "argmax",
            family: "reduce",
            differentiable: false,
            low_precision: false,
            tol: 1.0,
            sample: axis_sample,
            forward: |t, p| as_f64(t[0].argmax(p.i[0] as isize, true)),
            reference: |x, p| {
                reduce_nd(&x[0], &p.i, true, |g| {
                    g.iter()
                        .enumerate()
                        .fold((0, f64::NEG_INFINITY), |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) })
                        .0 as f64
                })
            },
            composite: None,
            cost: |s, _| (numel(&s[0]), 4.0 * numel(&s[0])),
            cuda: true,
        },
        OpInfo {
            name: "softmax",
            family: "reduce",
            differentiable: true,
            low_precision: true,
            tol: 1.0,
            sample: axis_sample,
            forward: |t, p| t[0].softmax(p.i[0] as isize),
            reference: |x, p| along(&x[0], p.i[0], softmax_lane),
            composite: None,
            cost: |s, _| (5.0 * numel(&s[0]), 8.0 * numel(&s[0])),
            cuda: true,
        },
        OpInfo {
            name: "log_softmax",
            family: "reduce",
            differentiable: true,
            low_precision: true,
            tol: 2.0,
            sample: axis_sample,
            forward: |t, p| t[0].log_softmax(p.i[0] as isize),
            reference: |x, p| along(&x[0], p.i[0], |l| softmax_lane(l).iter().map(|v| v.ln()).collect()),
            composite: None,
            cost: |s, _| (5.0 * numel(&s[0]), 8.0 * numel(&s[0])),
            cuda: true,
        },
        OpInfo {
            name: "cumsum",
            family: "reduce",
            differentiable: true,
            low_precision: true,
            tol: 2.0,
            sample: axis_sample,
            forward: |t, p| t[0].cumsum(p.i[0] as isize),
            reference: |x, p| {
                along(&x[0], p.i[0], |l| {
                    let mut acc = 0.0;
                    l.iter()
                        .map(|v| {
                            acc += v;
                            acc
                        })
                        .collect()
                })
            },
            composite: None,
            cost: |s, _| (numel(&s[0]), 8.0 * numel(&s[0])),
            cuda: true,
        },
        OpInfo {
            name: "matmul",
            family: "matmul",
            differentiable: true,
            low_precision: true,
            tol: 4.0,
            sample: |r| {
                let (m, k, n) = (r.int(1, 6), r.int(1, 6), r.int(1, 6));
                let rk = r.int(0, 2);
                let batch = r.shape(rk, 3);
                let mut sa: Vec<usize> = batch.iter().map(|&d| if r.coin() { d } else { 1 }).collect();
                let mut sb: Vec<usize> = batch[r.int(0, batch.len())..].to_vec();
                sa.extend([m, k]);
                sb.extend([k, n]);
                Ok(Sample {
                    inputs: vec![
                        r.tensor_signed(&sa, 0.0, 1.0, true, true)?,
                        r.tensor_signed(&sb, 0.0, 1.0, true, true)?,
                    ],
                    params: Params::default(),
                    constant: vec![],
                })
            },
            forward: |t, _| t[0].matmul(&t[1]),
            reference: |x, _| matmul_nd(&x[0], &x[1]),
            composite: None,
            cost: |s, _| {
                let (a, b) = (&s[0], &s[1]);
                let batch = numel(&bshape(&[&a[..a.len() - 2], &b[..b.len() - 2]]));
                let (m, k, n) = (a[a.len() - 2] as f64, a[a.len() - 1] as f64, b[b.len() - 1] as f64);
                (2.0 * batch * m * k * n, 4.0 * batch * (m * k + k * n + m * n))
            },
            cuda: true,
        },
        OpInfo {
            name: "linear",
            family: "matmul",
            differentiable: true,
            low_precision: true,
            tol: 4.0,
            sample: |r| {
                let (i, o) = (r.int(1, 6), r.int(1, 6));
                let rk = r.int(0, 2);
                let mut xs = r.shape(rk, 3);
                xs.push(i);
                Ok(Sample {
                    inputs: vec![
                        r.tensor_signed(&xs, 0.0, 1.0, true, true)?,
                        r.tensor_signed(&[o, i], 0.0, 1.0, true, true)?,
                        r.tensor_signed(&[o], 0.0, 1.0, true, false)?,
                    ],
                    params: Params::default(),
                    constant: vec![],
                })
            },
            forward: |t, _| t[0].linear(&t[1], Some(&t[2])),
            reference: |x, _| {
                let wt = Nd::new(&[x[1].shape[1], x[1].shape[0]], {
                    let (o, i) = (x[1].shape[0], x[1].shape[1]);
                    (0..i * o).map(|k| x[1].data[(k % o) * i + k / o]).collect()
                });
                let mut xm = x[0].clone();
                if xm.rank() == 1 {
                    xm.shape.insert(0, 1);
                }
                let mut y = matmul_nd(&xm, &wt);
                y.shape = {
                    let mut s = x[0].shape.clone();
                    let l = s.len();
                    s[l - 1] = x[1].shape[0];
                    s
                };
                zip2(&y, &x[2], |a, b| a + b)
            },
            composite: None,
            cost: |s, _| {
                let (n, i, o) = (numel(&s[0]) / *s[0].last().unwrap_or(&1) as f64, s[1][1] as f64, s[1][0] as f64);
                (2.0 * n * i * o, 4.0 * (n * i + i * o + n * o))
            },
            cuda: true,
        },
        OpInfo {
            name: "conv2d",
            family: "conv",
            differentiable: true,
            low_precision: true,
            tol: 4.0,
            sample: |r| conv_sample(r, false),
            forward: |t, p| t[0].conv2d(&t[1], Some(&t[2]), conv_params(p)),
            reference: |x, p| add_bias(conv_nd(&x[0], &x[1], &conv_params(p)), &x[2]),
            composite: None,
            cost: |s, p| {
                let cp = conv_params(p);
                let ho = (s[0][2] + 2 * cp.padding[0] - cp.dilation[0] * (s[1][2] - 1) - 1) / cp.stride[0] + 1;
                let wo = (s[0][3] + 2 * cp.padding[1] - cp.dilation[1] * (s[1][3] - 1) - 1) / cp.stride[1] + 1;
                let out = (s[0][0] * s[1][0] * ho * wo) as f64;
                (2.0 * out * (s[1][1] * s[1][2] * s[1][3]) as f64, 4.0 * (numel(&s[0]) + numel(&s[1]) + out))
            },
            cuda: true,
        },
        OpInfo {
            name: "conv_transpose2d",
            family: "conv",
            differentiable: true,
            low_precision: true,
            tol: 4.0,
            sample: |r| conv_sample(r, true),
            forward: |t, p| t[0].conv_transpose2d(&t[1], Some(&t[2]), conv_params(p), [p.i[7], p.i[8]]),
            reference: |x, p| add_bias(conv_t_nd(&x[0], &x[1], &conv_params(p), [p.i[7], p.i[8]]), &x[2]),
            composite: None,
            cost: |s, _| {
                (2.0 * numel(&s[0]) * (s[1][1] * s[1][2] * s[1][3]) as f64, 4.0 * (numel(&s[0]) + numel(&s[1])))
            },
            cuda: true,
        },
        OpInfo {
            name: "avg_pool2d",
            family: "pool",
            differentiable: true,
            low_precision: true,
            tol: 1.0,
            sample: pool_sample,
            forward: |t, p| t[0].avg_pool2d(p.i[0], p.i[1], p.i[2]),
            reference: |x, p| pool_nd(&x[0], p.i[0], p.i[1], p.i[2], false),
            composite: None,
            cost: |s, p| {
                (numel(&s[0]) * (p.i[0] * p.i[0]) as f64 / (p.i[1] * p.i[1]) as f64, 4.0 * numel(&s[0]) * 1.25)
            },
            cuda: true,
        },
        OpInfo {
            name: "max_pool2d",
            family: "pool",
            differentiable: true,
            low_precision: true,
            tol: 1.0,
            sample: pool_sample,
            forward: |t, p| t[0].max_pool2d(p.i[0], p.i[1], p.i[2]),
            reference: |x, p| pool_nd(&x[0], p.i[0], p.i[1], p.i[2], true),
            composite: None,
            cost: |s, p| {
                (numel(&s[0]) * (p.i[0] * p.i[0]) as f64 / (p.i[1] * p.i[1]) as f64, 4.0 * numel(&s[0]) * 1.25)
            },
            cuda: true,
        },
        OpInfo {
            name: "upsample_nearest2d",
            family: "pool",
            differentiable: true,
            low_precision: true,
            tol: 1.0,
            sample: |r| {
                let sh = [r.int(1, 2), r.int(1, 3), r.int(1, 4), r.int(1, 4)];
                let x = r.tensor_signed(&sh, 0.0, 1.0, true, true)?;
                Ok(Sample {
                    inputs: vec![x],
                    params: Params { i: vec![r.int(1, 3)], ..Default::default() },
                    constant: vec![],
                })
            },
            forward: |t, p| t[0].upsample_nearest2d(p.i[0]),
            reference: |x, p| {
                let f = p.i[0];
                let s = &x[0].shape;
                let mut o = Nd::zeros(&[s[0], s[1], s[2] * f, s[3] * f]);
                for i in 0..o.data.len() {
                    let idx = o.unravel(i);
                    o.data[i] = x[0].at(&[idx[0], idx[1], idx[2] / f, idx[3] / f]);
                }
                o
            },
            composite: None,
            cost: |s, p| (0.0, 4.0 * numel(&s[0]) * (1 + p.i[0] * p.i[0]) as f64),
            cuda: true,
        },
        OpInfo {
            name: "upsample_bilinear2d",
            family: "pool",
            differentiable: true,
            low_precision: true,
            tol: 1.0,
            sample: |r| {
                let sh = [r.int(1, 2), r.int(1, 2), r.int(1, 5), r.int(1, 5)];
                let x = r.tensor_signed(&sh, 0.0, 1.0, true, true)?;
                Ok(Sample {
                    inputs: vec![x],
                    params: Params { i: vec![r.int(1, 8), r.int(1, 8)], ..Default::default() },
                    constant: vec![],
                })
            },
            forward: |t, p| t[0].upsample_bilinear2d(p.i[0], p.i[1]),
            reference: |x, p| bilinear_nd(&x[0], p.i[0], p.i[1]),
            composite: None,
            cost: |s, p| {
                (
                    8.0 * (s[0][0] * s[0][1] * p.i[0] * p.i[1]) as f64,
                    4.0 * (numel(&s[0]) + (s[0][0] * s[0][1] * p.i[0] * p.i[1]) as f64),
                )
            },
            cuda: true,
        },
        OpInfo {
            name: "fir_resample2d",
            family: "pool",
            differentiable: true,
            low_precision: true,
            tol: 1.0,
            sample: |r| {
                let up = r.coin();
                let (h, w) = if up { (r.int(1, 4), r.int(1, 4)) } else { (2 * r.int(1, 3), 2 * r.int(1, 3)) };
                let sh = [r.int(1, 2), r.int(1, 3), h, w];
                let x = r.tensor_signed(&sh, 0.0, 1.0, true, true)?;
                Ok(Sample { inputs: vec![x], params: Params { b: vec![up], ..Default::default() }, constant: vec![] })
            },
            forward: |t, p| t[0].fir_resample2d(&[1.0, 1.0], p.b[0]),
            // [1,1] FIR: down = 2×2 mean, up = nearest ×2 (EDM's resample_filter=[1,1]).
            reference: |x, p| {
                if p.b[0] {
                    let s = &x[0].shape;
                    let mut o = Nd::zeros(&[s[0], s[1], s[2] * 2, s[3] * 2]);
                    for i in 0..o.data.len() {
                        let idx = o.unravel(i);
                        o.data[i] = x[0].at(&[idx[0], idx[1], idx[2] / 2, idx[3] / 2]);
                    }
                    o
                } else {
                    pool_nd(&x[0], 2, 2, 0, false)
                }
            },
            composite: None,
            cost: |s, _| (4.0 * numel(&s[0]), 4.0 * numel(&s[0]) * 2.0),
            cuda: true,
        },
        OpInfo {
            name: "group_norm",
            family: "norm",
            differentiable: true,
            low_precision: true,
            tol: 4.0,
            sample: |r| {
                let g = r.int(1, 3);
                let c = g * r.int(1, 3);
                let mut shape = vec![r.int(1, 3), c];
                let rk = r.int(0, 2);
                shape.extend(r.shape(rk, 4));
                if shape.iter().product::<usize>() / (shape[0] * g) < 2 {
                    shape.push(2);
                }
                Ok(Sample {
                    inputs: vec![
                        r.tensor_signed(&shape, 0.0, 2.0, true, true)?,
                        r.tensor(&[c], 0.5, 1.5, false)?,
                        r.tensor_signed(&[c], 0.0, 1.0, true, false)?,
                    ],
                    params: Params { i: vec![g], ..Default::default() },
                    constant: vec![],
                })
            },
            forward: |t, p| t[0].group_norm(p.i[0], Some(&t[1]), Some(&t[2]), 1e-5),
            reference: |x, p| {
                let (n, c) = (x[0].shape[0], x[0].shape[1]);
                let s: usize = x[0].shape[2..].iter().product();
                norm_nd(&x[0], n * p.i[0], true, 1e-5, |k| (k / s) % c, Some(&x[1]), Some(&x[2]))
            },
            composite: Some(|t, p| {
                norm::norm_composite(&t[0], NormKind::Group(p.i[0]), Some(&t[1]), Some(&t[2]), 1e-5)
            }),
            cost: |s, _| (8.0 * numel(&s[0]), 8.0 * numel(&s[0])),
            cuda: true,
        },
        OpInfo {
            name: "layer_norm",
            family: "norm",
            differentiable: true,
            low_precision: true,
            tol: 4.0,
            sample: |r| {
                let rk = r.int(0, 2);
                let mut shape = r.shape(rk, 3);
                let d = r.int(2, 6);
                shape.push(d);
                Ok(Sample {
                    inputs: vec![
                        r.tensor_signed(&shape, 0.0, 2.0, true, true)?,
                        r.tensor(&[d], 0.5, 1.5, false)?,
                        r.tensor_signed(&[d], 0.0, 1.0, true, false)?,
                    ],
                    params: Params::default(),
                    constant: vec![],
                })
            },
            forward: |t, _| t[0].layer_norm(Some(&t[1]), Some(&t[2]), 1e-5),
            reference: |x, _| {
                let d = *x[0].shape.last().unwrap_or(&1);
                norm_nd(&x[0], x[0].data.len() / d, true, 1e-5, |k| k % d, Some(&x[1]), Some(&x[2]))
            },
            composite: Some(|t, _| norm::norm_composite(&t[0], NormKind::Layer, Some(&t[1]), Some(&t[2]), 1e-5)),
            cost: |s, _| (8.0 * numel(&s[0]), 8.0 * numel(&s[0])),
            cuda: true,
        },
        OpInfo {
            name: "rms_norm",
            family: "norm",
            differentiable: true,
            low_precision: true,
            tol: 4.0,
            sample: |r| {
                let rk = r.int(0, 2);
                let mut shape = r.shape(rk, 3);
                let d = r.int(1, 6);
                shape.push(d);
                Ok(Sample {
                    inputs: vec![r.tensor_signed(&shape, 0.1, 2.0, true, true)?, r.tensor(&[d], 0.5, 1.5, false)?],
                    params: Params::default(),
                    constant: vec![],
                })
            },
            forward: |t, _| t[0].rms_norm(Some(&t[1]), 1e-6),
            reference: |x, _| {
                let d = *x[0].shape.last().unwrap_or(&1);
                norm_nd(&x[0], x[0].data.len() / d, false, 1e-6, |k| k % d, Some(&x[1]), None)
            },
            composite: Some(|t, _| norm::norm_composite(&t[0], NormKind::Rms, Some(&t[1]), None, 1e-6)),
            cost: |s, _| (6.0 * numel(&s[0]), 8.0 * numel(&s[0])),
            cuda: true,
        },
        OpInfo {
            name: "attention",
            family: "attention",
            differentiable: true,
            low_precision: true,
            tol: 4.0,
            sample: |r| {
                let (b, h, sq, sk, d, dv) =
                    (r.int(1, 2), r.int(1, 2), r.int(1, 9), r.int(1, 9), r.int(1, 8), r.int(1, 8));
                let causal = r.coin();
                let mut inputs = vec![
                    r.tensor_signed(&[b, h, sq, d], 0.0, 1.0, true, true)?,
                    r.tensor_signed(&[b, h, sk, d], 0.0, 1.0, true, true)?,
                    r.tensor_signed(&[b, h, sk, dv], 0.0, 1.0, true, true)?,
                ];
                let masked = r.coin();
                if masked {
                    inputs.push(r.tensor_signed(&[1, h, sq, sk], 0.0, 1.0, true, false)?);
                }
                Ok(Sample {
                    inputs,
                    params: Params { b: vec![causal, masked], ..Default::default() },
                    constant: if masked { vec![3] } else { vec![] },
                })
            },
            forward: |t, p| {
                Tensor::scaled_dot_product_attention(
                    &t[0],
                    &t[1],
                    &t[2],
                    if p.b[1] { Some(&t[3]) } else { None },
                    p.b[0],
                    None,
                )
            },
            reference: |x, p| attention_nd(&x[0], &x[1], &x[2], if p.b[1] { Some(&x[3]) } else { None }, p.b[0]),
            composite: Some(|t, p| {
                attention::attention_composite(
                    &t[0],
                    &t[1],
                    &t[2],
                    if p.b[1] { Some(&t[3]) } else { None },
                    p.b[0],
                    None,
                )
            }),
            cost: |s, _| {
                let (bh, sq, d, sk, dv) =
                    ((s[0][0] * s[0][1]) as f64, s[0][2] as f64, s[0][3] as f64, s[1][2] as f64, s[2][3] as f64);
                (2.0 * bh * sq * sk * (d + dv), 4.0 * bh * (sq * d + sk * d + sk * dv + sq * dv))
            },
            cuda: true,
        },
        OpInfo {
            name: "embedding",
            family: "index",
            differentiable: true,
            low_precision: true,
            tol: 1.0,
            sample: |r| {
                let (v, d) = (r.int(1, 6), r.int(1, 4));
                let rk = r.int(1, 2);
                let is = r.shape(rk, 4);
                let ids = r.indices(&is, v)?;
                Ok(Sample {
                    inputs: vec![r.tensor_signed(&[v, d], 0.0, 1.0, true, true)?, ids],
                    params: Params::default(),
                    constant: vec![],
                })
            },
            forward: |t, _| Tensor::embedding(&t[0], &t[1]),
            reference: |x, _| {
                let d = x[0].shape[1];
                let mut shape = x[1].shape.clone();
                shape.push(d);
                Nd::new(
                    &shape,
                    x[1].data
                        .iter()
                        .flat_map(|&i| (0..d).map(move |c| (i as usize, c)))
                        .map(|(i, c)| x[0].at(&[i, c]))
                        .collect(),
                )
            },
            composite: None,
            cost: |s, _| (0.0, 4.0 * 2.0 * numel(&s[1]) * s[0][1] as f64),
            cuda: true,
        },
        OpInfo {
            name: "index_select",
            family: "index",
            differentiable: true,
            low_precision: true,
            tol: 1.0,
            sample: |r| {
                let rank = r.int(1, 3);
                let s = r.shape(rank, 4);
                let d = r.int(0, rank - 1);
                let k = r.int(1, 5);
                let idx = r.indices(&[k], s[d])?;
                Ok(Sample {
                    inputs: vec![r.tensor_signed(&s, 0.0, 1.0, true, true)?, idx],
                    params: Params { i: vec![d], ..Default::default() },
                    constant: vec![],
                })
            },
            forward: |t, p| t[0].index_select(p.i[0] as isize, &t[1]),
            reference: |x, p| {
                let d = p.i[0];
                let mut shape = x[0].shape.clone();
                shape[d] = x[1].data.len();
                let mut o = Nd::zeros(&shape);
                for i in 0..o.data.len() {
                    let mut idx = o.unravel(i);
                    idx[d] = x[1].data[idx[d]] as usize;
                    o.data[i] = x[0].at(&idx);
                }
                o
            },
            composite: None,
            cost: |s, _| (0.0, 8.0 * numel(&s[0])),
            cuda: true,
        },
        OpInfo {
            name: "gather",
            family: "index",
            differentiable: true,
            low_precision: true,
            tol: 1.0,
            sample: |r| {
                let rank = r.int(1, 3);
                let s = r.shape(rank, 4);
                let d = r.int(0, rank - 1);
                let mut is: Vec<usize> = s.iter().map(|&v| r.int(1, v)).collect();
                is[d] = r.int(1, 5);
                let idx = r.indices(&is, s[d])?;
                Ok(Sample {
                    inputs: vec![r.tensor_signed(&s, 0.0, 1.0, true, true)?, idx],
                    params: Params { i: vec![d], ..Default::default() },
                    constant: vec![],
                })
            },
            forward: |t, p| t[0].gather(p.i[0] as isize, &t[1]),
            reference: |x, p| {
                let mut o = Nd::zeros(&x[1].shape);
                for i in 0..o.data.len() {
                    let mut idx = o.unravel(i);
                    idx[p.i[0]] = x[1].data[i] as usize;
                    o.data[i] = x[0].at(&idx);
                }
                o
            },
            composite: None,
            cost: |s, _| (0.0, 12.0 * numel(&s[1])),
            cuda: true,
        },
        OpInfo {
            name: "scatter_add",
            family: "index",
            differentiable: true,
            low_precision: true,
            tol: 1.0,
            sample: |r| {
                let rank = r.int(1, 3);
                let s = r.shape(rank, 4);
                let d = r.int(0, rank - 1);
                let mut is: Vec<usize> = s.iter().map(|&v| r.int(1, v)).collect();
                is[d] = r.int(1, 5);
                let idx = r.indices(&is, s[d])?;
                let mut p = s.clone();
                p.insert(0, d);
                Ok(Sample {
                    inputs: vec![r.tensor_signed(&is, 0.0, 1.0, true, true)?, idx],
                    params: Params { i: p, ..Default::default() },
                    constant: vec![],
                })
            },
            forward: |t, p| t[0].scatter_add_into(p.i[0], &t[1], &p.i[1..]),
            reference: |x, p| {
                let mut o = Nd::zeros(&p.i[1..]);
                for i in 0..x[0].data.len() {
                    let mut idx = x[0].unravel(i);
                    idx[p.i[0]] = x[1].data[i] as usize;
                    let k = o.ravel(&idx);
                    o.data[k] += x[0].data[i];
                }
                o
            },
            composite: None,
            cost: |s, _| (numel(&s[0]), 12.0 * numel(&s[0])),
            cuda: true,
        },
        OpInfo {
            name: "cat",
            family: "shape",
            differentiable: true,
            low_precision: true,
            tol: 1.0,
            sample: |r| {
                let rank = r.int(1, 3);
                let s = r.shape(rank, 4);
                let d = r.int(0, rank - 1);
                let mut inputs = Vec::new();
                for _ in 0..r.int(1, 3) {
                    let mut si = s.clone();
                    si[d] = r.int(1, 3);
                    inputs.push(r.tensor_signed(&si, 0.0, 1.0, true, true)?);
                }
                Ok(Sample { inputs, params: Params { i: vec![d], ..Default::default() }, constant: vec![] })
            },
            forward: |t, p| Tensor::cat(t, p.i[0] as isize),
            reference: |x, p| {
                let d = p.i[0];
                let mut shape = x[0].shape.clone();
                shape[d] = x.iter().map(|a| a.shape[d]).sum();
                let mut o = Nd::zeros(&shape);
                for i in 0..o.data.len() {
                    let mut idx = o.unravel(i);
                    let mut k = 0;
                    while idx[d] >= x[k].shape[d] {
                        idx[d] -= x[k].shape[d];
                        k += 1;
                    }
                    o.data[i] = x[k].at(&idx);
                }
                o
            },
            composite: None,
            cost: |s, _| (0.0, 8.0 * s.iter().map(|x| numel(x)).sum::<f64>()),
            cuda: true,
        },
        OpInfo {
            name: "pad",
            family: "shape",
            differentiable: true,
            low_precision: true,
            tol: 1.0,
            sample: |r| {
                let rank = r.int(1, 3);
                let s = r.shape(rank, 4);
                let k = r.int(1, rank);
                let pads: Vec<usize> = (0..2 * k).map(|_| r.int(0, 2)).collect();
                Ok(Sample {
                    inputs: vec![r.tensor_signed(&s, 0.0, 1.0, true, true)?],
                    params: Params { i: pads, f: vec![0.5], b: vec![] },
                    constant: vec![],
                })
            },
            forward: |t, p| t[0].pad(&p.i.chunks(2).map(|c| (c[0], c[1])).collect::<Vec<_>>(), p.f[0]),
            reference: |x, p| {
                let k = p.i.len() / 2;
                let lead = x[0].rank() - k;
                let mut shape = x[0].shape.clone();
                for j in 0..k {
                    shape[lead + j] += p.i[2 * j] + p.i[2 * j + 1];
                }
                let mut o = Nd::new(&shape, vec![p.f[0]; shape.iter().product()]);
                for i in 0..x[0].data.len() {
                    let mut idx = x[0].unravel(i);
                    for j in 0..k {
                        idx[lead + j] += p.i[2 * j];
                    }
                    let q = o.ravel(&idx);
                    o.data[q] = x[0].data[i];
                }
                o
            },
            composite: None,
            cost: |s, _| (0.0, 8.0 * numel(&s[0])),
            cuda: true,
        },
        OpInfo {
            name: "flip",
            family: "shape",
            differentiable: true,
            low_precision: true,
            tol: 1.0,
            sample: axis_sample,
            forward: |t, p| t[0].flip(&[p.i[0] as isize]),
            reference: |x, p| along(&x[0], p.i[0], |l| l.iter().rev().cloned().collect()),
            composite: None,
            cost: |s, _| (0.0, 8.0 * numel(&s[0])),
            cuda: true,
        },
        OpInfo {
            name: "slice_permute_reshape",
            family: "shape",
            differentiable: true,
            low_precision: true,
            tol: 1.0,
            sample: |r| {
                let s = vec![r.int(1, 4), r.int(2, 6), r.int(1, 4)];
                Ok(Sample {
                    inputs: vec![r.tensor_signed(&s, 0.0, 1.0, true, true)?],
                    params: Params { i: vec![r.int(1, 2)], ..Default::default() },
                    constant: vec![],
                })
            },
            // x[:, ::step, :] → permute(2,0,1) → reshape(-1) → expand to [2, n]
            forward: |t, p| {
                let x = &t[0];
                let n1 = x.shape()[1];
                let y = x.slice(1, 0, n1, p.i[0])?.permute(&[2, 0, 1])?;
                let n = y.numel();
                y.reshape(&[1, n])?.expand(&[2, n])?.contiguous()
            },
            reference: |x, p| {
                let (a, b, c) = (x[0].shape[0], x[0].shape[1], x[0].shape[2]);
                let bs: Vec<usize> = (0..b).step_by(p.i[0]).collect();
                let mut v = Vec::new();
                for k in 0..c {
                    for i in 0..a {
                        for &j in &bs {
                            v.push(x[0].at(&[i, j, k]));
                        }
                    }
                }
                let n = v.len();
                let mut both = v.clone();
                both.extend(v);
                Nd::new(&[2, n], both)
            },
            composite: None,
            cost: |s, _| (0.0, 12.0 * numel(&s[0])),
            cuda: true,
        },
        OpInfo {
            name: "cross_entropy",
            family: "loss",
            differentiable: true,
            low_precision: true,
            tol: 2.0,
            sample: |r| {
                let (n, c) = (r.int(1, 5), r.int(2, 6));
                let t = r.indices(&[n], c)?;
                Ok(Sample {
                    inputs: vec![r.tensor_signed(&[n, c], 0.0, 3.0, true, true)?, t],
                    params: Params { f: vec![if r.coin() { 0.1 } else { 0.0 }], ..Default::default() },
                    constant: vec![],
                })
            },
            forward: |t, p| t[0].cross_entropy(&t[1], p.f[0]),
            reference: |x, p| {
                let (n, c) = (x[0].shape[0], x[0].shape[1]);
                let eps = p.f[0];
                let mut tot = 0.0;
                for i in 0..n {
                    let row = &x[0].data[i * c..(i + 1) * c];
                    let lp: Vec<f64> = softmax_lane(row).iter().map(|v| v.ln()).collect();
                    let t = x[1].data[i] as usize;
                    tot += -(1.0 - eps) * lp[t] - eps / c as f64 * lp.iter().sum::<f64>();
                }
                Nd::new(&[], vec![tot / n as f64])
            },
            composite: None,
            cost: |s, _| (5.0 * numel(&s[0]), 4.0 * numel(&s[0])),
            cuda: true,
        },
        OpInfo {
            name: "mse_loss",
            family: "loss",
            differentiable: true,
            low_precision: true,
            tol: 2.0,
            sample: |r| {
                let rk = r.int(1, 3);
                let s = r.shape(rk, 4);
                Ok(Sample {
                    inputs: vec![
                        r.tensor_signed(&s, 0.0, 1.0, true, true)?,
                        r.tensor_signed(&s, 0.0, 1.0, true, true)?,
                    ],
                    params: Params::default(),
                    constant: vec![],
                })
            },
            forward: |t, _| t[0].mse_loss(&t[1]),
            reference: |x, _| {
                Nd::new(
                    &[],
                    vec![
                        x[0].data.iter().zip(&x[1].data).map(|(a, b)| (a - b).powi(2)).sum::<f64>()
                            / x[0].data.len() as f64,
                    ],
                )
            },
            composite: None,
            cost: |s, _| (3.0 * numel(&s[0]), 8.0 * numel(&s[0])),
            cuda: true,
        },
        OpInfo {
            name: "sid_generator_loss",
            family: "fused",
            differentiable: false,
            low_precision: true,
            tol: 4.0,
            sample: |r| {
                let mut s = vec![r.int(1, 3)];
                let rk = r.int(1, 3);
                s.extend(r.shape(rk, 4));
                let mk = |r: &mut SampleRng| r.tensor_signed(&s, 0.0, 1.0, true, true);
                Ok(Sample {
                    inputs: vec![mk(r)?, mk(r)?, mk(r)?],
                    params: Params { f: vec![r.uniform(0.5, 1.5)], ..Default::default() },
                    constant: vec![],
                })
            },
            forward: |t, p| fused::sid_generator_loss(&t[0], &t[1], &t[2], p.f[0]),
            reference: |x, p| {
                let b = x[0].shape[0];
                let per = x[0].data.len() / b;
                let a = p.f[0];
                let v = (0..b)
                    .map(|s| {
                        let rg = s * per..(s + 1) * per;
                        let (r, f, g) = (&x[0].data[rg.clone()], &x[1].data[rg.clone()], &x[2].data[rg]);
                        let mae = r.iter().zip(g).map(|(r, g)| (g - r).abs()).sum::<f64>() / per as f64;
                        let w = 1.0 / mae.max(1e-5);
                        (0..per).map(|i| (r[i] - f[i]) * ((r[i] - g[i]) - a * (r[i] - f[i])) * w).sum()
                    })
                    .collect();
                Nd::new(&[b], v)
            },
            composite: Some(|t, p| fused::sid_generator_loss_composite(&t[0], &t[1], &t[2], p.f[0])),
            cost: |s, _| (10.0 * numel(&s[0]), 12.0 * numel(&s[0])),
            cuda: true,
        },
        OpInfo {
            name: "sid_generator_loss_w",
            family: "fused",
            differentiable: true,
            low_precision: true,
            tol: 4.0,
            sample: |r| {
                let mut s = vec![r.int(1, 3)];
                let rk = r.int(1, 3);
                s.extend(r.shape(rk, 4));
                let mk = |r: &mut SampleRng| r.tensor_signed(&s, 0.0, 1.0, true, true);
                let b = s[0];
                let w = r.tensor(&[b], 0.5, 2.0, false)?;
                Ok(Sample {
                    inputs: vec![mk(r)?, mk(r)?, mk(r)?, w],
                    params: Params { f: vec![r.uniform(0.5, 1.5)], ..Default::default() },
                    constant: vec![3],
                })
            },
            forward: |t, p| fused::sid_generator_loss_weighted(&t[0], &t[1], &t[2], p.f[0], Some(&t[3])),
            reference: |x, p| {
                let b = x[0].shape[0];
                let per = x[0].data.len() / b;
                let a = p.f[0];
                let v = (0..b)
                    .map(|s| {
                        let rg = s * per..(s + 1) * per;
                        let (r, f, g) = (&x[0].data[rg.clone()], &x[1].data[rg.clone()], &x[2].data[rg]);
                        let mae = r.iter().zip(g).map(|(r, g)| (g - r).abs()).sum::<f64>() / per as f64;
                        let _ = mae;
                        let w = x[3].data[s];
                        (0..per).map(|i| (r[i] - f[i]) * ((r[i] - g[i]) - a * (r[i] - f[i])) * w).sum()
                    })
                    .collect();
                Nd::new(&[b], v)
            },
            composite: Some(|t, p| {
                fused::sid_generator_loss_composite_weighted(&t[0], &t[1], &t[2], p.f[0], Some(&t[3]))
            }),
            cost: |s, _| (10.0 * numel(&s[0]), 12.0 * numel(&s[0])),
            cuda: true,
        },
        OpInfo {
            name: "sid_fake_score_loss",
            family: "fused",
            differentiable: true,
            low_precision: true,
            tol: 2.0,
            sample: |r| {
                let b = r.int(1, 3);
                let mut s = vec![b];
                let rk = r.int(1, 3);
                s.extend(r.shape(rk, 4));
                let w: Vec<f64> = (0..b).map(|_| r.uniform(0.1, 3.0)).collect();
                Ok(Sample {
                    inputs: vec![
                        r.tensor_signed(&s, 0.0, 1.0, true, true)?,
                        r.tensor_signed(&s, 0.0, 1.0, true, true)?,
                    ],
                    params: Params { f: w, ..Default::default() },
                    constant: vec![],
                })
            },
            forward: |t, p| fused::sid_fake_score_loss(&t[0], &t[1], &p.f),
            reference: |x, p| {
                let b = x[0].shape[0];
                let per = x[0].data.len() / b;
                Nd::new(
                    &[b],
                    (0..b)
                        .map(|s| {
                            p.f[s]
                                * (s * per..(s + 1) * per).map(|i| (x[0].data[i] - x[1].data[i]).powi(2)).sum::<f64>()
                        })
                        .collect(),
                )
            },
            composite: Some(|t, p| fused::sid_fake_score_loss_composite(&t[0], &t[1], &p.f)),
            cost: |s, _| (3.0 * numel(&s[0]), 8.0 * numel(&s[0])),
            cuda: true,
        },
        OpInfo {
            name: "beta_kl",
            family: "fused",
            differentiable: true,
            low_precision: false,
            tol: 1.0,
            sample: |r| {
                let rk = r.int(0, 2);
                let s = r.shape(rk, 4);
                let mut mk = || r.tensor(&s, 0.5, 20.0, true);
                Ok(Sample { inputs: vec![mk()?, mk()?, mk()?, mk()?], params: Params::default(), constant: vec![] })
            },
            forward: |t, _| fused::beta_kl(&t[0], &t[1], &t[2], &t[3]),
            reference: |x, _| {
                Nd::new(
                    &x[0].shape,
                    (0..x[0].data.len())
                        .map(|i| kl_beta_ref(x[0].data[i], x[1].data[i], x[2].data[i], x[3].data[i]))
                        .collect(),
                )
            },
            composite: Some(|t, _| fused::beta_kl_composite(&t[0], &t[1], &t[2], &t[3])),
            cost: |s, _| (60.0 * numel(&s[0]), 20.0 * numel(&s[0])),
            cuda: true,
        },
        OpInfo {
            name: "beta_klub",
            family: "fused",
            differentiable: true,
            low_precision: false,
            tol: 1.0,
            sample: |r| {
                let b = r.int(1, 3);
                let mut s = vec![b];
                let rk = r.int(0, 2);
                s.extend(r.shape(rk, 3));
                let mut f: Vec<f64> = Vec::new();
                let at: Vec<f64> = (0..b).map(|_| r.uniform(0.1, 0.8)).collect();
                let as_: Vec<f64> = at.iter().map(|&t| (t + r.uniform(0.01, 0.15)).min(0.99)).collect();
                f.extend(&as_);
                f.extend(&at);
                f.push(r.uniform(20.0, 200.0));
                Ok(Sample {
                    inputs: vec![r.tensor(&s, 0.1, 0.9, true)?, r.tensor(&s, 0.1, 0.9, true)?],
                    params: Params { i: vec![b], f, b: vec![] },
                    constant: vec![1],
                })
            },
            forward: |t, p| fused::beta_klub(&t[0], &t[1], &klub_params(p)),
            reference: |x, p| {
                let kp = klub_params(p);
                let b = x[0].shape[0];
                let per = x[0].data.len() / b;
                Nd::new(
                    &x[0].shape,
                    (0..x[0].data.len())
                        .map(|i| {
                            let s = i / per;
                            let (xh, xd, eta) = (x[0].data[i], x[1].data[i], kp.eta);
                            let (asv, atv) = (kp.alpha_s[s], kp.alpha_t[s]);
                            let dl = asv - atv;
                            let cond =
                                kl_beta_ref(eta * dl * xh, eta - eta * asv * xh, eta * dl * xd, eta - eta * asv * xd);
                            let marg =
                                kl_beta_ref(eta * atv * xh, eta - eta * atv * xh, eta * atv * xd, eta - eta * atv * xd);
                            0.99 * cond + 0.01 * marg
                        })
                        .collect(),
                )
            },
            composite: Some(|t, p| fused::beta_klub_composite(&t[0], &t[1], &klub_params(p))),
            cost: |s, _| (120.0 * numel(&s[0]), 12.0 * numel(&s[0])),
            cuda: true,
        },
        OpInfo {
            name: "patch_embed",
            family: "fused",
            differentiable: true,
            low_precision: true,
            tol: 1.0,
            sample: |r| {
                let (b, c, h, w) = (r.int(1, 3), r.int(1, 3), r.int(2, 7), r.int(2, 7));
                let (ph, pw) = (r.int(1, h), r.int(1, w));
                let mut i = vec![b, ph, pw];
                for _ in 0..b {
                    i.push(r.int(0, h - ph));
                }
                for _ in 0..b {
                    i.push(r.int(0, w - pw));
                }
                Ok(Sample {
                    inputs: vec![r.tensor_signed(&[b, c, h, w], 0.0, 1.0, true, true)?],
                    params: Params { i, ..Default::default() },
                    constant: vec![],
                })
            },
            forward: |t, p| {
                let (tops, lefts, ph, pw) = patch_corners(p);
                fused::patch_embed(&t[0], &tops, &lefts, ph, pw)
            },
            reference: |x, p| {
                let (tops, lefts, ph, pw) = patch_corners(p);
                let (b, c, h, w) = (x[0].shape[0], x[0].shape[1], x[0].shape[2], x[0].shape[3]);
                let mut o = Nd::zeros(&[b, c + 2, ph, pw]);
                for i in 0..o.data.len() {
                    let idx = o.unravel(i);
                    let (n, ch, r, cc) = (idx[0], idx[1], idx[2], idx[3]);
                    let (y, xx) = (tops[n] + r, lefts[n] + cc);
                    o.data[i] = if ch < c {
                        x[0].at(&[n, ch, y, xx])
                    } else if ch == c {
                        2.0 * xx as f64 / (w - 1) as f64 - 1.0
                    } else {
                        2.0 * y as f64 / (h - 1) as f64 - 1.0
                    };
                }
                o
            },
            composite: Some(|t, p| {
                let (tops, lefts, ph, pw) = patch_corners(p);
                fused::patch_embed_composite(&t[0], &tops, &lefts, ph, pw)
            }),
            cost: |s, _| (0.0, 8.0 * numel(&s[0])),
            cuda: true,
        },
    ];
    v.sort_by_key(|o| (o.family, o.name));
    v
}

// ------------------------------------------------------------------ generic checks

/// The sample an op draws for `seed`.
pub fn sample_for(op: &OpInfo, seed: u64) -> std::result::Result<Sample, String> {
    let mut r = SampleRng::new(seed ^ fxhash(op.name));
    (op.sample)(&mut r).map_err(|e| format!("{}: sample failed: {e}", op.name))
}

fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

/// The naive f64 reference of `op` on a sample.
pub fn reference_for(op: &OpInfo, s: &Sample) -> std::result::Result<Nd, String> {
    let nds: Vec<Nd> = s.inputs.iter().map(Nd::from_tensor).collect::<Result<_>>().map_err(|e| e.to_string())?;
    Ok((op.reference)(&nds, &s.params))
}

fn to_dtype(s: &Sample, dt: DType) -> std::result::Result<Vec<Tensor>, String> {
    s.inputs
        .iter()
        .map(|t| if t.dtype().is_float() { t.cast(dt).map_err(|e| e.to_string()) } else { Ok(t.clone()) })
        .collect()
}

/// Forward of `op` in `dt` against its f64 reference (inputs rounded to `dt` first).
pub fn check_forward(op: &OpInfo, seed: u64, dt: DType) -> std::result::Result<(), String> {
    let s = sample_for(op, seed)?;
    let inputs = to_dtype(&s, dt)?;
    // The reference sees exactly the values the op sees (rounded to `dt`), in f64.
    let rounded = Sample {
        inputs: inputs
            .iter()
            .map(|t| if t.dtype().is_float() { t.cast(DType::F64).map_err(|e| e.to_string()) } else { Ok(t.clone()) })
            .collect::<std::result::Result<_, String>>()?,
        ..s.clone()
    };
    let want = reference_for(op, &rounded)?;
    let got = (op.forward)(&inputs, &s.params).map_err(|e| format!("{} ({dt}): forward failed: {e}", op.name))?;
    if got.shape() != want.shape.as_slice() {
        return Err(format!("{} ({dt}): shape {:?}, reference {:?}", op.name, got.shape(), want.shape));
    }
    let (atol, rtol) = match dt {
        DType::F64 => (1e-10, 1e-9),
        DType::F32 => (2e-5 * op.tol, 2e-5 * op.tol),
        _ => (3e-2 * op.tol, 3e-2 * op.tol),
    };
    let g = got.to_vec_f64().map_err(|e| e.to_string())?;
    compare(&g, &want.data, atol, rtol).map_err(|m| {
        format!(
            "{} ({dt}, seed {seed}): {m}; inputs {:?}",
            op.name,
            s.inputs.iter().map(|t| t.shape().to_vec()).collect::<Vec<_>>()
        )
    })
}

/// f64 gradient of `op` against central finite differences.
pub fn check_grad(op: &OpInfo, seed: u64) -> std::result::Result<(), String> {
    let s = sample_for(op, seed)?;
    let params = s.params.clone();
    let f = op.forward;
    let opts = GradcheckOptions { constant_inputs: s.constant.clone(), ..Default::default() };
    let rep = gradcheck(|t| f(t, &params), &s.inputs, &opts).map_err(|e| format!("{}: {e}", op.name))?;
    if rep.passed() {
        Ok(())
    } else {
        Err(format!(
            "{} (seed {seed}): {rep}; inputs {:?}",
            op.name,
            s.inputs.iter().map(|t| t.shape().to_vec()).collect::<Vec<_>>()
        ))
    }
}

/// A fused `op` against its composite: values and gradients.
pub fn check_composite(op: &OpInfo, seed: u64) -> std::result::Result<(), String> {
    let Some(comp) = op.composite else {
        return Ok(());
    };
    let s = sample_for(op, seed)?;
    let leaves: Vec<Tensor> = s
        .inputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let l = t.detach();
            if l.dtype().is_float() && !s.constant.contains(&i) {
                let _ = l.set_requires_grad(true);
            }
            l
        })
        .collect();
    let diff: Vec<Tensor> = leaves.iter().filter(|t| t.requires_grad()).cloned().collect();
    let a = (op.forward)(&leaves, &s.params).map_err(|e| e.to_string())?;
    let b = comp(&leaves, &s.params).map_err(|e| e.to_string())?;
    compare(&a.to_vec_f64().map_err(|e| e.to_string())?, &b.to_vec_f64().map_err(|e| e.to_string())?, 1e-10, 1e-9)
        .map_err(|m| format!("{} fused vs composite: {m}", op.name))?;
    let w = Tensor::randn(a.shape(), DType::F64, &crate::Generator::new(seed)).map_err(|e| e.to_string())?;
    let la = a.mul(&w).and_then(|t| t.sum_all()).map_err(|e| e.to_string())?;
    let lb = b.mul(&w).and_then(|t| t.sum_all()).map_err(|e| e.to_string())?;
    let ga = grad(&[la], &diff, None, false, false).map_err(|e| e.to_string())?;
    let gb = grad(&[lb], &diff, None, false, false).map_err(|e| e.to_string())?;
    for (x, y) in ga.iter().zip(&gb) {
        let (Some(x), Some(y)) = (x, y) else {
            return Err(format!(
                "{}: a gradient is missing (fused {} / composite {})",
                op.name,
                x.is_some(),
                y.is_some()
            ));
        };
        let (x, y) = (x.to_vec_f64().map_err(|e| e.to_string())?, y.to_vec_f64().map_err(|e| e.to_string())?);
        compare(&x, &y, 1e-9, 1e-8).map_err(|m| format!("{} fused vs composite gradient: {m}", op.name))?;
    }
    Ok(())
}

/// Largest error of a CPU-vs-device parity check, normalised so that 1 is the tolerance.
#[derive(Clone, Copy, Debug, Default)]
pub struct Parity {
    /// max |device − cpu| / (atol + rtol·|cpu|) over the forward output.
    pub forward: f64,
    /// The same over every input gradient (0 when the op has none).
    pub grad: f64,
}

impl Parity {
    pub fn passed(&self) -> bool {
        self.forward <= 1.0 && self.grad <= 1.0
    }
}

/// Tolerances of a parity check in `dt` (same algorithm on both sides, different summation
/// order and transcendental implementations).
pub fn parity_tolerance(op: &OpInfo, dt: DType) -> (f64, f64) {
    match dt {
        DType::F64 => (1e-9 * op.tol, 1e-9 * op.tol),
        DType::F32 => (1e-4 * op.tol, 1e-4 * op.tol),
        _ => (2e-2 * op.tol, 2e-2 * op.tol),
    }
}

fn worst(got: &[f64], want: &[f64], atol: f64, rtol: f64) -> f64 {
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    got.iter()
        .zip(want)
        .map(|(&g, &w)| {
            if g.is_nan() && w.is_nan() || g == w {
                0.0
            } else {
                let e = (g - w).abs() / (atol + rtol * w.abs());
                if e.is_nan() {
                    f64::INFINITY
                } else {
                    e
                }
            }
        })
        .fold(0.0, f64::max)
}

/// Forward values and each input's gradient (None where it gets none).
type Run = (Vec<f64>, Vec<Option<Vec<f64>>>);

/// Forward output and input gradients (of Σ out·w, w a fixed random tensor) on the inputs'
/// device.
fn run_with_grads(op: &OpInfo, s: &Sample, inputs: &[Tensor], seed: u64) -> Result<Run> {
    let leaves: Vec<Tensor> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let l = t.detach();
            if op.differentiable && l.dtype().is_float() && !s.constant.contains(&i) {
                let _ = l.set_requires_grad(true);
            }
            l
        })
        .collect();
    let out = (op.forward)(&leaves, &s.params)?;
    let vals = out.to_vec_f64()?;
    let diff: Vec<&Tensor> = leaves.iter().filter(|t| t.requires_grad()).collect();
    if diff.is_empty() || !out.dtype().is_float() || !out.requires_grad() {
        return Ok((vals, vec![]));
    }
    let gen = crate::Generator::new(seed ^ 0x9e37_79b9_7f4a_7c15);
    let w =
        Tensor::random_on(out.shape(), out.dtype(), &gen, scorch_ops::cpu::RandDist::Normal(0.0, 1.0), out.device())?;
    let loss = out.mul(&w)?.sum_all()?;
    let diff: Vec<Tensor> = diff.into_iter().cloned().collect();
    let grads = grad(&[loss], &diff, None, false, false)?;
    let grads = grads.iter().map(|g| g.as_ref().map(|g| g.to_vec_f64()).transpose()).collect::<Result<_>>()?;
    Ok((vals, grads))
}

/// `op` in `dt` on the CPU and on `device` with the same sample (device inputs keep the
/// CPU views' strides): forward values and input gradients compared.
pub fn check_device_parity(
    op: &OpInfo,
    seed: u64,
    dt: DType,
    device: crate::Device,
) -> std::result::Result<Parity, String> {
    let s = sample_for(op, seed)?;
    let inputs = to_dtype(&s, dt)?;
    let on_dev: Vec<Tensor> =
        inputs.iter().map(|t| t.to_device_keep_layout(device)).collect::<Result<_>>().map_err(|e| e.to_string())?;
    let (cf, cg) = run_with_grads(op, &s, &inputs, seed).map_err(|e| format!("{} ({dt}) on cpu: {e}", op.name))?;
    let (df, dg) = run_with_grads(op, &s, &on_dev, seed).map_err(|e| format!("{} ({dt}) on {device}: {e}", op.name))?;
    let (atol, rtol) = parity_tolerance(op, dt);
    let mut p = Parity { forward: worst(&df, &cf, atol, rtol), grad: 0.0 };
    if cg.len() != dg.len() {
        return Err(format!("{} ({dt}): {} gradients on cpu, {} on {device}", op.name, cg.len(), dg.len()));
    }
    for (c, d) in cg.iter().zip(&dg) {
        p.grad = p.grad.max(match (c, d) {
            (Some(c), Some(d)) => worst(d, c, atol, rtol),
            (None, None) => 0.0,
            _ => f64::INFINITY,
        });
    }
    Ok(p)
}
