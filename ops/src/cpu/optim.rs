//! Fused, in-place optimizer updates: Adam / AdamW, SGD with momentum, and the EMA lerp.
//!
//! Each update reads and writes every state buffer once per element, in parallel over
//! chunks. The arithmetic follows PyTorch's single-tensor (`foreach=False`) CPU path
//! operation by operation, so results match `torch.optim` to rounding; the `*_reference`
//! functions spell the same formulas out one whole-buffer pass at a time and the tests
//! check the fused kernels against them and against numbers computed by PyTorch.

use super::storage::CpuStorage;
use crate::error::shape_err;
use crate::{DType, Error, Result};
use num_traits::Float;
use rayon::prelude::*;

/// Elements per rayon task: large enough to amortise scheduling, small enough to balance.
const CHUNK: usize = 1 << 14;

/// Hyper-parameters of one Adam / AdamW step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamParams {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first moment (PyTorch's `betas[0]`).
    pub beta1: f64,
    /// Decay of the second moment (PyTorch's `betas[1]`).
    pub beta2: f64,
    /// Added to the bias-corrected root of the second moment.
    pub eps: f64,
    /// L2 penalty (Adam: added to the gradient) or decoupled decay (AdamW: applied to the
    /// parameter as `p ← p·(1 − lr·wd)` before the update).
    pub weight_decay: f64,
    /// `true` for AdamW's decoupled weight decay.
    pub decoupled: bool,
}

/// Hyper-parameters of one SGD step (PyTorch's `torch.optim.SGD`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdParams {
    /// Learning rate.
    pub lr: f64,
    /// Momentum factor; 0 disables the buffer.
    pub momentum: f64,
    /// Dampening of the gradient added to the buffer (not applied on the first step).
    pub dampening: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
}

/// Floats the optimizer kernels run on.
pub trait OptimFloat: Float + Send + Sync + 'static {
    /// `f64 → Self`, rounding to nearest (as PyTorch converts Python scalars).
    fn cv(v: f64) -> Self;
}

impl OptimFloat for f32 {
    #[inline(always)]
    fn cv(v: f64) -> Self {
        v as f32
    }
}

impl OptimFloat for f64 {
    #[inline(always)]
    fn cv(v: f64) -> Self {
        v
    }
}

/// PyTorch's `lerp(a, b, w)`: the formula switches at w = ½ for accuracy.
#[inline(always)]
fn lerp<T: OptimFloat>(a: T, b: T, w: T) -> T {
    if w.abs() < T::cv(0.5) {
        a + w * (b - a)
    } else {
        b - (b - a) * (T::one() - w)
    }
}

/// Scalars of an Adam step that do not depend on the element, computed once in f64 as
/// PyTorch does (its step count is a Python float there) and rounded to `T`. The CUDA
/// backend takes `AdamScalars::<f64>` and rounds them to the element type in the kernel.
pub struct AdamScalars<T> {
    pub beta1_w: T,
    pub beta2: T,
    pub one_minus_beta2: T,
    pub neg_step_size: T,
    pub bias_correction2_sqrt: T,
    pub eps: T,
    pub wd: T,
    pub decay_factor: T,
    pub decoupled: bool,
}

impl<T: OptimFloat> AdamScalars<T> {
    /// The scalars of step `step` (1-based; 0 is an error).
    pub fn new(step: u64, p: &AdamParams) -> Result<Self> {
        if step == 0 {
            return Err(Error::Msg("adam: the step count starts at 1 (bias correction divides by 1 − β₁^step)".into()));
        }
        let bias_correction1 = 1.0 - p.beta1.powf(step as f64);
        let bias_correction2 = 1.0 - p.beta2.powf(step as f64);
        Ok(AdamScalars {
            beta1_w: T::cv(1.0 - p.beta1),
            beta2: T::cv(p.beta2),
            one_minus_beta2: T::cv(1.0 - p.beta2),
            neg_step_size: T::cv(-(p.lr / bias_correction1)),
            bias_correction2_sqrt: T::cv(bias_correction2.sqrt()),
            eps: T::cv(p.eps),
            wd: T::cv(p.weight_decay),
            decay_factor: T::cv(1.0 - p.lr * p.weight_decay),
            decoupled: p.decoupled,
        })
    }

    #[inline(always)]
    fn update(&self, p: &mut T, g: T, m: &mut T, v: &mut T) {
        let mut g = g;
        if self.wd != T::zero() {
            if self.decoupled {
                *p = *p * self.decay_factor;
            } else {
                g = g + self.wd * *p;
            }
        }
        *m = lerp(*m, g, self.beta1_w);
        *v = *v * self.beta2 + self.one_minus_beta2 * g * g;
        let denom = v.sqrt() / self.bias_correction2_sqrt + self.eps;
        *p = *p + self.neg_step_size * *m / denom;
    }
}

fn check_lens(op: &'static str, n: usize, others: &[(&str, usize)]) -> Result<()> {
    for &(what, len) in others {
        if len != n {
            return shape_err(op, format!("{what} has {len} elements, the parameter has {n}"));
        }
    }
    Ok(())
}

/// One fused Adam (or AdamW) step at `step` (1-based, already incremented), in place on
/// the parameter `p` and the moments `m`, `v`.
pub fn adam_update<T: OptimFloat>(
    p: &mut [T],
    g: &[T],
    m: &mut [T],
    v: &mut [T],
    step: u64,
    hp: &AdamParams,
) -> Result<()> {
    check_lens("adam", p.len(), &[("grad", g.len()), ("exp_avg", m.len()), ("exp_avg_sq", v.len())])?;
    let s = AdamScalars::<T>::new(step, hp)?;
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
        .for_each(|((pc, gc), (mc, vc))| {
            for (((p, &g), m), v) in pc.iter_mut().zip(gc).zip(mc.iter_mut()).zip(vc.iter_mut()) {
                s.update(p, g, m, v);
            }
        });
    Ok(())
}

/// The unfused Adam step: PyTorch's `_single_tensor_adam`, one whole-buffer pass per
/// tensor op, in the same order. The reference the fused kernel is tested against.
pub fn adam_update_reference<T: OptimFloat>(
    p: &mut [T],
    g: &[T],
    m: &mut [T],
    v: &mut [T],
    step: u64,
    hp: &AdamParams,
) -> Result<()> {
    check_lens("adam", p.len(), &[("grad", g.len()), ("exp_avg", m.len()), ("exp_avg_sq", v.len())])?;
    let c = T::cv;
    let mut g = g.to_vec();
    if hp.weight_decay != 0.0 {
        if hp.decoupled {
            // param.mul_(1 - lr * weight_decay)
            p.iter_mut().for_each(|p| *p = *p * c(1.0 - hp.lr * hp.weight_decay));
        } else {
            // grad = grad.add(param, alpha=weight_decay)
            g.iter_mut().zip(p.iter()).for_each(|(g, &p)| *g = *g + c(hp.weight_decay) * p);
        }
    }
    // exp_avg.lerp_(grad, 1 - beta1)
    m.iter_mut().zip(&g).for_each(|(m, &g)| *m = lerp(*m, g, c(1.0 - hp.beta1)));
    // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    v.iter_mut().for_each(|v| *v = *v * c(hp.beta2));
    v.iter_mut().zip(&g).for_each(|(v, &g)| *v = *v + c(1.0 - hp.beta2) * g * g);
    let bias_correction1 = 1.0 - hp.beta1.powf(step as f64);
    let bias_correction2 = 1.0 - hp.beta2.powf(step as f64);
    let step_size = hp.lr / bias_correction1;
    // denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
    let denom: Vec<T> = v.iter().map(|&v| v.sqrt() / c(bias_correction2.sqrt()) + c(hp.eps)).collect();
    // param.addcdiv_(exp_avg, denom, value=-step_size)
    p.iter_mut().zip(m.iter().zip(&denom)).for_each(|(p, (&m, &d))| *p = *p + c(-step_size) * m / d);
    Ok(())
}

/// One fused SGD step. `buf` is the momentum buffer (ignored when `momentum == 0`);
/// `first` says it holds nothing yet, in which case it is set to the gradient (PyTorch's
/// `torch.clone(d_p)`), without dampening.
pub fn sgd_update<T: OptimFloat>(p: &mut [T], g: &[T], buf: &mut [T], first: bool, hp: &SgdParams) -> Result<()> {
    let with_momentum = hp.momentum != 0.0;
    let buf_len = if with_momentum { buf.len() } else { p.len() };
    check_lens("sgd", p.len(), &[("grad", g.len()), ("momentum_buffer", buf_len)])?;
    let (lr, wd, mu, damp) = (T::cv(-hp.lr), T::cv(hp.weight_decay), T::cv(hp.momentum), T::cv(1.0 - hp.dampening));
    let nesterov = hp.nesterov;
    let update = move |p: &mut T, g: T, b: Option<&mut T>| {
        let mut d = g;
        if wd != T::zero() {
            d = d + wd * *p;
        }
        if let Some(b) = b {
            *b = if first { d } else { *b * mu + damp * d };
            d = if nesterov { d + mu * *b } else { *b };
        }
        *p = *p + lr * d;
    };
    if with_momentum {
        p.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).zip(buf.par_chunks_mut(CHUNK)).for_each(|((pc, gc), bc)| {
            for ((p, &g), b) in pc.iter_mut().zip(gc).zip(bc.iter_mut()) {
                update(p, g, Some(b));
            }
        });
    } else {
        p.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).for_each(|(pc, gc)| {
            for (p, &g) in pc.iter_mut().zip(gc) {
                update(p, g, None);
            }
        });
    }
    Ok(())
}

/// The EMA update `shadow ← lerp(shadow, x, 1 − beta)` (PyTorch's `ema.lerp_(p, 1 - beta)`).
pub fn ema_update<T: OptimFloat>(shadow: &mut [T], x: &[T], beta: f64) -> Result<()> {
    check_lens("ema", shadow.len(), &[("source", x.len())])?;
    let w = T::cv(1.0 - beta);
    shadow.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(sc, xc)| {
        for (s, &x) in sc.iter_mut().zip(xc) {
            *s = lerp(*s, x, w);
        }
    });
    Ok(())
}

/// The `f32` or `f64` slice of a storage, or a dtype error naming the op.
fn floats<'a, T: 'static>(op: &'static str, s: &'a CpuStorage) -> Result<&'a [T]> {
    super::storage::same_variant(s, &[] as &[T]).ok_or(Error::DType { op, dtype: s.dtype() })
}

/// A buffer plus the contiguous element range an update covers.
pub type Span<'a, S> = (&'a S, std::ops::Range<usize>);
/// A mutable buffer plus the contiguous element range an update covers.
pub type SpanMut<'a, S> = (&'a mut S, std::ops::Range<usize>);

fn same_dtype(op: &'static str, want: DType, got: &[DType]) -> Result<()> {
    match got.iter().find(|&&d| d != want) {
        Some(&d) => Err(Error::DTypeMismatch { op, lhs: want, rhs: d }),
        None => Ok(()),
    }
}

fn slice_at<'a, T>(op: &'static str, v: &'a [T], r: std::ops::Range<usize>) -> Result<&'a [T]> {
    let len = v.len();
    v.get(r.clone())
        .ok_or_else(|| Error::Shape { op, detail: format!("range {r:?} outside a buffer of {len} elements") })
}

fn slice_at_mut<'a, T>(op: &'static str, v: &'a mut [T], r: std::ops::Range<usize>) -> Result<&'a mut [T]> {
    let len = v.len();
    v.get_mut(r.clone())
        .ok_or_else(|| Error::Shape { op, detail: format!("range {r:?} outside a buffer of {len} elements") })
}

/// [`adam_update`] on storages (f32 or f64, all the same dtype).
pub fn adam_update_storage(
    p: SpanMut<CpuStorage>,
    g: Span<CpuStorage>,
    m: SpanMut<CpuStorage>,
    v: SpanMut<CpuStorage>,
    step: u64,
    hp: &AdamParams,
) -> Result<()> {
    const OP: &str = "adam";
    same_dtype(OP, p.0.dtype(), &[g.0.dtype(), m.0.dtype(), v.0.dtype()])?;
    macro_rules! run {
        ($t:ty, $var:ident) => {{
            let (CpuStorage::$var(pv), CpuStorage::$var(mv), CpuStorage::$var(vv)) = (p.0, m.0, v.0) else {
                unreachable!("dtypes were checked equal")
            };
            let gv: &[$t] = floats(OP, g.0)?;
            adam_update(
                slice_at_mut(OP, pv, p.1)?,
                slice_at(OP, gv, g.1)?,
                slice_at_mut(OP, mv, m.1)?,
                slice_at_mut(OP, vv, v.1)?,
                step,
                hp,
            )
        }};
    }
    match p.0.dtype() {
        DType::F32 => run!(f32, F32),
        DType::F64 => run!(f64, F64),
        dtype => Err(Error::DType { op: OP, dtype }),
    }
}

/// [`sgd_update`] on storages (f32 or f64). `buf` may be `None` when `momentum == 0`.
pub fn sgd_update_storage(
    p: SpanMut<CpuStorage>,
    g: Span<CpuStorage>,
    buf: Option<SpanMut<CpuStorage>>,
    first: bool,
    hp: &SgdParams,
) -> Result<()> {
    const OP: &str = "sgd";
    let mut dts = vec![g.0.dtype()];
    dts.extend(buf.as_ref().map(|b| b.0.dtype()));
    same_dtype(OP, p.0.dtype(), &dts)?;
    if hp.momentum != 0.0 && buf.is_none() {
        return Err(Error::Msg("sgd: momentum needs a momentum buffer".into()));
    }
    macro_rules! run {
        ($t:ty, $var:ident) => {{
            let CpuStorage::$var(pv) = p.0 else { unreachable!("dtype was matched") };
            let gv: &[$t] = floats(OP, g.0)?;
            let mut empty: [$t; 0] = [];
            let bv: &mut [$t] = match buf {
                Some((CpuStorage::$var(b), r)) => slice_at_mut(OP, b, r)?,
                Some(_) => unreachable!("dtypes were checked equal"),
                None => &mut empty,
            };
            sgd_update(slice_at_mut(OP, pv, p.1)?, slice_at(OP, gv, g.1)?, bv, first, hp)
        }};
    }
    match p.0.dtype() {
        DType::F32 => run!(f32, F32),
        DType::F64 => run!(f64, F64),
        dtype => Err(Error::DType { op: OP, dtype }),
    }
}

/// [`ema_update`] on storages (f32 or f64).
pub fn ema_update_storage(shadow: SpanMut<CpuStorage>, x: Span<CpuStorage>, beta: f64) -> Result<()> {
    const OP: &str = "ema";
    same_dtype(OP, shadow.0.dtype(), &[x.0.dtype()])?;
    match shadow.0 {
        CpuStorage::F32(s) => {
            ema_update(slice_at_mut(OP, s, shadow.1)?, slice_at(OP, floats::<f32>(OP, x.0)?, x.1)?, beta)
        }
        CpuStorage::F64(s) => {
            ema_update(slice_at_mut(OP, s, shadow.1)?, slice_at(OP, floats::<f64>(OP, x.0)?, x.1)?, beta)
        }
        other => Err(Error::DType { op: OP, dtype: other.dtype() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adam(lr: f64, wd: f64, decoupled: bool) -> AdamParams {
        AdamParams { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: wd, decoupled }
    }

    /// Deterministic, varied values in about [-2, 2].
    fn wave(n: usize, phase: f64) -> Vec<f64> {
        (0..n).map(|i| 2.0 * ((i as f64) * 0.7311 + phase).sin() * ((i as f64) * 0.123 + 1.0).cos()).collect()
    }

    fn run_both<T: OptimFloat + std::fmt::Debug>(n: usize, hp: &AdamParams, steps: u64) -> (Vec<T>, Vec<T>) {
        let p0: Vec<T> = wave(n, 0.0).into_iter().map(T::cv).collect();
        let (mut pf, mut mf, mut vf) = (p0.clone(), vec![T::zero(); n], vec![T::zero(); n]);
        let (mut pr, mut mr, mut vr) = (p0, vec![T::zero(); n], vec![T::zero(); n]);
        for step in 1..=steps {
            let g: Vec<T> = wave(n, step as f64).into_iter().map(T::cv).collect();
            adam_update(&mut pf, &g, &mut mf, &mut vf, step, hp).unwrap();
            adam_update_reference(&mut pr, &g, &mut mr, &mut vr, step, hp).unwrap();
            assert_eq!(mf, mr, "first moments differ at step {step}");
            assert_eq!(vf, vr, "second moments differ at step {step}");
        }
        (pf, pr)
    }

    #[test]
    fn fused_adam_equals_the_unfused_formula() {
        // Several chunks plus a ragged tail, so the parallel split is exercised.
        let n = 3 * CHUNK + 17;
        for hp in [adam(1e-3, 0.0, false), adam(1e-2, 0.1, false), adam(3e-3, 0.05, true)] {
            let (f, r) = run_both::<f32>(n, &hp, 5);
            assert_eq!(f, r, "f32 {hp:?}");
            let (f, r) = run_both::<f64>(n, &hp, 5);
            assert_eq!(f, r, "f64 {hp:?}");
        }
    }

    /// Values from PyTorch 2.x (CPU, float64, single-tensor path):
    ///
    /// ```python
    /// import torch
    /// p = torch.tensor([0.5, -1.5, 2.0, 0.0], dtype=torch.float64, requires_grad=True)
    /// opt = torch.optim.Adam([p], lr=0.1, betas=(0.9, 0.99), eps=1e-6, weight_decay=0.01)
    /// for k in range(3):
    ///     opt.zero_grad(); p.grad = torch.tensor([1.0, -0.5, 0.25, 2.0], dtype=torch.float64) * (k + 1) - p.detach()
    ///     opt.step()
    /// print(p.tolist(), opt.state[p]['exp_avg'].tolist(), opt.state[p]['exp_avg_sq'].tolist())
    /// ```
    #[test]
    fn adam_matches_pytorch() {
        let hp = AdamParams { lr: 0.1, beta1: 0.9, beta2: 0.99, eps: 1e-6, weight_decay: 0.01, decoupled: false };
        let (mut p, mut m, mut v) = (vec![0.5f64, -1.5, 2.0, 0.0], vec![0.0; 4], vec![0.0; 4]);
        for k in 0..3 {
            let g: Vec<f64> = [1.0, -0.5, 0.25, 2.0].iter().zip(&p).map(|(b, p)| b * (k + 1) as f64 - p).collect();
            adam_update(&mut p, &g, &mut m, &mut v, k + 1, &hp).unwrap();
        }
        let torch_p = PYTORCH_ADAM_P;
        let torch_m = PYTORCH_ADAM_M;
        let torch_v = PYTORCH_ADAM_V;
        for i in 0..4 {
            assert!((p[i] - torch_p[i]).abs() <= 1e-14, "param {i}: {} vs torch {}", p[i], torch_p[i]);
            assert!((m[i] - torch_m[i]).abs() <= 1e-14, "exp_avg {i}: {} vs torch {}", m[i], torch_m[i]);
            assert!((v[i] - torch_v[i]).abs() <= 1e-14, "exp_avg_sq {i}: {} vs torch {}", v[i], torch_v[i]);
        }
    }

    const PYTORCH_ADAM_P: [f64; 4] = [0.2178884521775164, -1.7788300192517938, 2.2987686193215224, -0.2914223956136575];
    const PYTORCH_ADAM_M: [f64; 4] = [0.4546667153330234, 0.15021906834651305, -0.4250081973491312, 1.1503259785168265];
    const PYTORCH_ADAM_V: [f64; 4] =
        [0.1005476659297217, 0.013205111105433617, 0.07439925665580836, 0.5892179858435244];

    #[test]
    fn sgd_momentum_first_step_copies_the_gradient() {
        let hp = SgdParams { lr: 0.1, momentum: 0.9, dampening: 0.5, weight_decay: 0.0, nesterov: false };
        let (mut p, mut b) = (vec![1.0f32, 2.0], vec![0.0f32; 2]);
        sgd_update(&mut p, &[1.0, -1.0], &mut b, true, &hp).unwrap();
        assert_eq!(b, [1.0, -1.0]);
        assert_eq!(p, [0.9, 2.1]);
        sgd_update(&mut p, &[1.0, -1.0], &mut b, false, &hp).unwrap();
        // buf = 0.9·buf + 0.5·g
        assert_eq!(b, [1.4, -1.4]);
    }

    #[test]
    fn length_and_dtype_mismatches_are_errors() {
        let hp = adam(1e-3, 0.0, false);
        let err = adam_update(&mut [0f32; 3], &[0.0; 2], &mut [0.0; 3], &mut [0.0; 3], 1, &hp).unwrap_err();
        assert!(err.to_string().contains("grad has 2 elements"), "{err}");
        assert!(adam_update(&mut [0f32; 1], &[0.0], &mut [0.0], &mut [0.0], 0, &hp).is_err());
        let mut p = CpuStorage::F32(vec![0.0; 2]);
        let g = CpuStorage::F64(vec![0.0; 2]);
        let (mut m, mut v) = (CpuStorage::F32(vec![0.0; 2]), CpuStorage::F32(vec![0.0; 2]));
        let err = adam_update_storage((&mut p, 0..2), (&g, 0..2), (&mut m, 0..2), (&mut v, 0..2), 1, &hp).unwrap_err();
        assert!(matches!(err, Error::DTypeMismatch { .. }), "{err}");
        let mut h = CpuStorage::BF16(vec![half::bf16::ZERO; 2]);
        let gh = CpuStorage::BF16(vec![half::bf16::ZERO; 2]);
        assert!(ema_update_storage((&mut h, 0..2), (&gh, 0..2), 0.9).is_err());
    }

    #[test]
    fn ema_is_a_lerp_towards_the_source() {
        let mut s = vec![0.0f64, 10.0];
        ema_update(&mut s, &[1.0, 0.0], 0.75).unwrap();
        assert_eq!(s, [0.25, 7.5]);
    }
}
