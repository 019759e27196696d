//! Strided, broadcasting elementwise kernels: unary maps, binary ops, where, casts, copies.

use super::storage::{gather_strided, CpuStorage};
use crate::error::shape_err;
use crate::layout::broadcast_shapes;
use crate::special::FastExp;
use crate::{special, DType, Elem, Error, Layout, Result};
use half::{bf16, f16};
use num_traits::Float;
use rayon::prelude::*;

/// Elements per parallel task.
pub(crate) const CHUNK: usize = 1 << 14;

/// Unary maps. Parameterised variants carry their scalars.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    Neg,
    Abs,
    Exp,
    Log,
    Log1p,
    Expm1,
    Sqrt,
    Rsqrt,
    Recip,
    Sqr,
    Sin,
    Cos,
    Tanh,
    Sigmoid,
    Silu,
    /// d/dx silu = σ(x)(1 + x(1 − σ(x))).
    SiluGrad,
    GeluErf,
    GeluTanh,
    /// d/dx gelu_erf.
    GeluErfGrad,
    /// d/dx gelu_tanh.
    GeluTanhGrad,
    Softplus,
    Relu,
    /// 1 where x > 0, else 0 (the derivative of relu).
    Step,
    Erf,
    Lgamma,
    Digamma,
    Trigamma,
    Tetragamma,
    Sign,
    Floor,
    Round,
    /// a·x + b.
    Affine(f64, f64),
    /// x^p.
    PowScalar(f64),
    /// x if x > 0 else slope·x.
    LeakyRelu(f64),
    /// min(max(x, lo), hi).
    Clamp(f64, f64),
    /// 1 where lo ≤ x ≤ hi, else 0 (the derivative of clamp).
    ClampMask(f64, f64),
    /// NaN → nan, +inf → pos, -inf → neg.
    NanToNum(f64, f64, f64),
}

impl UnaryOp {
    /// Applies the op to one value.
    #[inline(always)]
    pub fn apply<T: Float>(self, x: T) -> T {
        let f = |v: f64| T::from(v).unwrap_or_else(T::nan);
        let d = || x.to_f64().unwrap_or(f64::NAN);
        match self {
            UnaryOp::Neg => -x,
            UnaryOp::Abs => x.abs(),
            UnaryOp::Exp => x.exp(),
            UnaryOp::Log => x.ln(),
            UnaryOp::Log1p => x.ln_1p(),
            UnaryOp::Expm1 => x.exp_m1(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Rsqrt => x.sqrt().recip(),
            UnaryOp::Recip => x.recip(),
            UnaryOp::Sqr => x * x,
            UnaryOp::Sin => x.sin(),
            UnaryOp::Cos => x.cos(),
            UnaryOp::Tanh => x.tanh(),
            UnaryOp::Sigmoid => sigmoid(x),
            UnaryOp::Silu => x * sigmoid(x),
            UnaryOp::SiluGrad => {
                let s = sigmoid(x);
                s * (T::one() + x * (T::one() - s))
            }
            UnaryOp::GeluErf => f(special::gelu_erf(d())),
            UnaryOp::GeluTanh => f(special::gelu_tanh(d())),
            UnaryOp::GeluErfGrad => f(special::gelu_erf_grad(d())),
            UnaryOp::GeluTanhGrad => f(special::gelu_tanh_grad(d())),
            UnaryOp::Softplus => {
                // log(1 + e^x) without overflow.
                let z = T::zero();
                x.max(z) + (-x.abs()).exp().ln_1p()
            }
            UnaryOp::Relu => x.max(T::zero()),
            UnaryOp::Step => {
                if x > T::zero() {
                    T::one()
                } else {
                    T::zero()
                }
            }
            UnaryOp::Erf => f(special::erf(d())),
            UnaryOp::Lgamma => f(special::lgamma(d())),
            UnaryOp::Digamma => f(special::digamma(d())),
            UnaryOp::Trigamma => f(special::trigamma(d())),
            UnaryOp::Tetragamma => f(special::tetragamma(d())),
            UnaryOp::Sign => {
                if x > T::zero() {
                    T::one()
                } else if x < T::zero() {
                    -T::one()
                } else {
                    x
                }
            }
            UnaryOp::Floor => x.floor(),
            UnaryOp::Round => {
                // Round half to even, like PyTorch.
                let r = x.round();
                if (x - x.trunc()).abs() == f(0.5) {
                    f(2.0) * (x / f(2.0)).round()
                } else {
                    r
                }
            }
            UnaryOp::Affine(a, b) => x * f(a) + f(b),
            UnaryOp::PowScalar(p) => {
                if p == 2.0 {
                    x * x
                } else if p == 0.5 {
                    x.sqrt()
                } else if p == 1.0 {
                    x
                } else {
                    x.powf(f(p))
                }
            }
            UnaryOp::LeakyRelu(s) => {
                if x > T::zero() {
                    x
                } else {
                    x * f(s)
                }
            }
            UnaryOp::Clamp(lo, hi) => {
                if x.is_nan() {
                    x
                } else {
                    x.max(f(lo)).min(f(hi))
                }
            }
            UnaryOp::ClampMask(lo, hi) => {
                if x >= f(lo) && x <= f(hi) {
                    T::one()
                } else {
                    T::zero()
                }
            }
            UnaryOp::NanToNum(nan, pos, neg) => {
                if x.is_nan() {
                    f(nan)
                } else if x == T::infinity() {
                    f(pos)
                } else if x == T::neg_infinity() {
                    f(neg)
                } else {
                    x
                }
            }
        }
    }
}

#[inline(always)]
fn sigmoid<T: Float>(x: T) -> T {
    if x >= T::zero() {
        T::one() / (T::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::one() + e)
    }
}

/// Sigmoid through the vectorisable exp (the hot-loop version).
#[inline(always)]
fn sigmoid_fast<T: Float + crate::special::FastExp>(x: T) -> T {
    let e = (-x.abs()).fexp();
    if x >= T::zero() {
        T::one() / (T::one() + e)
    } else {
        e / (T::one() + e)
    }
}

/// Binary ops (broadcasting). Comparisons produce `Bool`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Maximum,
    Minimum,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl BinaryOp {
    pub fn is_comparison(self) -> bool {
        matches!(self, BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge)
    }

    #[inline(always)]
    fn arith<T: Float>(self, a: T, b: T) -> T {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
            BinaryOp::Pow => a.powf(b),
            // NaN-propagating like torch.maximum.
            BinaryOp::Maximum => {
                if a.is_nan() || b.is_nan() {
                    T::nan()
                } else {
                    a.max(b)
                }
            }
            BinaryOp::Minimum => {
                if a.is_nan() || b.is_nan() {
                    T::nan()
                } else {
                    a.min(b)
                }
            }
            _ => T::nan(),
        }
    }

    #[inline(always)]
    fn compare(self, a: f64, b: f64) -> bool {
        match self {
            BinaryOp::Eq => a == b,
            BinaryOp::Ne => a != b,
            BinaryOp::Lt => a < b,
            BinaryOp::Le => a <= b,
            BinaryOp::Gt => a > b,
            BinaryOp::Ge => a >= b,
            _ => false,
        }
    }
}

/// Applies `f` elementwise over a strided view into a new contiguous Vec.
pub fn map1<T: Copy + Send + Sync, U: Copy + Send + Sync + Default>(
    v: &[T],
    l: &Layout,
    f: impl Fn(T) -> U + Sync,
) -> Vec<U> {
    let n = l.numel();
    let mut out = vec![U::default(); n];
    if l.is_contiguous() {
        let src = &v[l.offset..l.offset + n];
        out.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(o, s)| {
            for (d, &x) in o.iter_mut().zip(s) {
                *d = f(x);
            }
        });
    } else {
        let rows = JointRows::new(&[l]);
        let (len, st) = (rows.row_len, rows.inner[0]);
        let per_task = (CHUNK / len).max(1);
        out.par_chunks_mut(per_task * len).enumerate().for_each(|(ti, o)| {
            let mut it = rows.iter_from(ti * per_task);
            for row in o.chunks_mut(len) {
                let [off] = it.next_row();
                if st == 1 {
                    for (d, &x) in row.iter_mut().zip(&v[off..off + len]) {
                        *d = f(x);
                    }
                } else {
                    for (i, d) in row.iter_mut().enumerate() {
                        *d = f(v[off + i * st]);
                    }
                }
            }
        });
    }
    out
}

/// Applies `f` to pairs of a broadcast: both layouts must already have the output shape.
pub fn map2<A: Copy + Send + Sync, B: Copy + Send + Sync, U: Copy + Send + Sync + Default>(
    a: &[A],
    la: &Layout,
    b: &[B],
    lb: &Layout,
    f: impl Fn(A, B) -> U + Sync,
) -> Vec<U> {
    let n = la.numel();
    let mut out = vec![U::default(); n];
    let a_c = la.is_contiguous();
    let b_c = lb.is_contiguous();
    let b_scalar = lb.strides.iter().all(|&s| s == 0);
    let a_scalar = la.strides.iter().all(|&s| s == 0);
    if a_c && b_c {
        let (sa, sb) = (&a[la.offset..la.offset + n], &b[lb.offset..lb.offset + n]);
        out.par_chunks_mut(CHUNK).enumerate().for_each(|(ci, o)| {
            let s = ci * CHUNK;
            for (i, d) in o.iter_mut().enumerate() {
                *d = f(sa[s + i], sb[s + i]);
            }
        });
    } else if a_c && b_scalar && n > 0 {
        let (sa, y) = (&a[la.offset..la.offset + n], b[lb.offset]);
        out.par_chunks_mut(CHUNK).enumerate().for_each(|(ci, o)| {
            let s = ci * CHUNK;
            for (i, d) in o.iter_mut().enumerate() {
                *d = f(sa[s + i], y);
            }
        });
    } else if b_c && a_scalar && n > 0 {
        let (x, sb) = (a[la.offset], &b[lb.offset..lb.offset + n]);
        out.par_chunks_mut(CHUNK).enumerate().for_each(|(ci, o)| {
            let s = ci * CHUNK;
            for (i, d) in o.iter_mut().enumerate() {
                *d = f(x, sb[s + i]);
            }
        });
    } else {
        // Broadcast or strided: walk rows of the jointly coalesced layouts, with a tight
        // (vectorisable) inner loop per row instead of an N-d index step per element.
        let rows = JointRows::new(&[la, lb]);
        let len = rows.row_len;
        let (sa, sb) = (rows.inner[0], rows.inner[1]);
        let per_task = (CHUNK / len).max(1);
        out.par_chunks_mut(per_task * len).enumerate().for_each(|(ti, o)| {
            let mut it = rows.iter_from(ti * per_task);
            for row in o.chunks_mut(len) {
                let [oa, ob] = it.next_row();
                match (sa, sb) {
                    (1, 1) => {
                        let (ra, rb) = (&a[oa..oa + len], &b[ob..ob + len]);
                        for ((d, &x), &y) in row.iter_mut().zip(ra).zip(rb) {
                            *d = f(x, y);
                        }
                    }
                    (1, 0) => {
                        let (ra, y) = (&a[oa..oa + len], b[ob]);
                        for (d, &x) in row.iter_mut().zip(ra) {
                            *d = f(x, y);
                        }
                    }
                    (0, 1) => {
                        let (x, rb) = (a[oa], &b[ob..ob + len]);
                        for (d, &y) in row.iter_mut().zip(rb) {
                            *d = f(x, y);
                        }
                    }
                    _ => {
                        for (i, d) in row.iter_mut().enumerate() {
                            *d = f(a[oa + i * sa], b[ob + i * sb]);
                        }
                    }
                }
            }
        });
    }
    out
}

/// Several layouts of one shape walked together row by row: the dims are coalesced
/// jointly (merged only where every layout allows it), the last one is the row.
pub(crate) struct JointRows<const K: usize> {
    /// Outer dims (all but the row), outermost first.
    outer: Vec<usize>,
    /// Per layout, the strides of the outer dims.
    outer_strides: [Vec<usize>; K],
    offsets: [usize; K],
    pub(crate) row_len: usize,
    /// Per layout, the stride along the row.
    pub(crate) inner: [usize; K],
}

impl<const K: usize> JointRows<K> {
    pub(crate) fn new(ls: &[&Layout; K]) -> Self {
        let shape = &ls[0].shape;
        let mut dims: Vec<(usize, [usize; K])> = Vec::with_capacity(shape.len());
        for (d, &size) in shape.iter().enumerate() {
            if size == 1 {
                continue;
            }
            let st: [usize; K] = std::array::from_fn(|k| ls[k].strides[d]);
            if let Some((lsize, lst)) = dims.last_mut() {
                if (0..K).all(|k| lst[k] == st[k] * size) {
                    *lsize *= size;
                    *lst = st;
                    continue;
                }
            }
            dims.push((size, st));
        }
        let (row_len, inner) = dims.pop().unwrap_or((1, [0; K]));
        JointRows {
            outer: dims.iter().map(|d| d.0).collect(),
            outer_strides: std::array::from_fn(|k| dims.iter().map(|d| d.1[k]).collect()),
            offsets: std::array::from_fn(|k| ls[k].offset),
            row_len,
            inner,
        }
    }

    /// A cursor at row `r`.
    pub(crate) fn iter_from(&self, r: usize) -> RowCursor<'_, K> {
        let mut index = vec![0; self.outer.len()];
        let mut rem = r;
        let mut cur = self.offsets;
        for i in (0..self.outer.len()).rev() {
            index[i] = rem % self.outer[i];
            rem /= self.outer[i];
            for (k, c) in cur.iter_mut().enumerate() {
                *c += index[i] * self.outer_strides[k][i];
            }
        }
        RowCursor { rows: self, index, cur }
    }
}

pub(crate) struct RowCursor<'a, const K: usize> {
    rows: &'a JointRows<K>,
    index: Vec<usize>,
    cur: [usize; K],
}

impl<const K: usize> RowCursor<'_, K> {
    /// The row's starting offsets, then advances to the next row.
    #[inline]
    pub(crate) fn next_row(&mut self) -> [usize; K] {
        let out = self.cur;
        let r = self.rows;
        let mut i = r.outer.len();
        while i > 0 {
            i -= 1;
            self.index[i] += 1;
            for k in 0..K {
                self.cur[k] += r.outer_strides[k][i];
            }
            if self.index[i] < r.outer[i] {
                break;
            }
            for k in 0..K {
                self.cur[k] -= r.outer_strides[k][i] * r.outer[i];
            }
            self.index[i] = 0;
        }
        out
    }
}

/// Contiguous f32 copy of a half-precision view (CPU kernels compute halves in f32).
pub fn half_to_f32(s: &CpuStorage, l: &Layout) -> Option<Vec<f32>> {
    match s {
        CpuStorage::BF16(v) => Some(map1(v, l, |x| x.to_f32())),
        CpuStorage::F16(v) => Some(map1(v, l, |x| x.to_f32())),
        _ => None,
    }
}

/// Rounds an f32 result back to a half dtype.
pub fn f32_to_dtype(v: Vec<f32>, dtype: DType) -> CpuStorage {
    match dtype {
        DType::BF16 => CpuStorage::BF16(v.into_par_iter().map(bf16::from_f32).collect()),
        DType::F16 => CpuStorage::F16(v.into_par_iter().map(f16::from_f32).collect()),
        DType::F64 => CpuStorage::F64(v.into_par_iter().map(|x| x as f64).collect()),
        _ => CpuStorage::F32(v),
    }
}

/// Runs a float kernel: f32/f64 natively, bf16/f16 through an f32 copy and back.
/// `k32`/`k64` receive contiguous-or-strided data with its layout.
pub fn float_kernel(
    op: &'static str,
    s: &CpuStorage,
    l: &Layout,
    k32: impl Fn(&[f32], &Layout) -> Result<Vec<f32>>,
    k64: impl Fn(&[f64], &Layout) -> Result<Vec<f64>>,
) -> Result<CpuStorage> {
    match s {
        CpuStorage::F32(v) => Ok(CpuStorage::F32(k32(v, l)?)),
        CpuStorage::F64(v) => Ok(CpuStorage::F64(k64(v, l)?)),
        CpuStorage::BF16(_) | CpuStorage::F16(_) => {
            let tmp = half_to_f32(s, l).expect("half variants convert");
            let r = k32(&tmp, &Layout::contiguous(&l.shape))?;
            Ok(f32_to_dtype(r, s.dtype()))
        }
        _ => Err(Error::DType { op, dtype: s.dtype() }),
    }
}

/// Unary op over a strided view; floats only.
pub fn unary(op: UnaryOp, s: &CpuStorage, l: &Layout) -> Result<CpuStorage> {
    // The hot ops get their own loop (the op is matched once, and the body can vectorise);
    // the rest go through `apply`.
    macro_rules! run {
        (|$x:ident| $body:expr) => {
            float_kernel("unary", s, l, |v, l| Ok(map1(v, l, |$x: f32| $body)), |v, l| Ok(map1(v, l, |$x: f64| $body)))
        };
    }
    match op {
        UnaryOp::Neg => run!(|x| -x),
        UnaryOp::Sqr => run!(|x| x * x),
        UnaryOp::Exp => run!(|x| x.fexp()),
        UnaryOp::Relu => run!(|x| x.max(0.0)),
        UnaryOp::Step => run!(|x| if x > 0.0 { 1.0 } else { 0.0 }),
        UnaryOp::Sigmoid => run!(|x| sigmoid_fast(x)),
        UnaryOp::Silu => run!(|x| x * sigmoid_fast(x)),
        UnaryOp::SiluGrad => run!(|x| {
            let s = sigmoid_fast(x);
            s * (1.0 + x * (1.0 - s))
        }),
        UnaryOp::Affine(a, b) => float_kernel(
            "unary",
            s,
            l,
            |v, l| Ok(map1(v, l, |x: f32| x * a as f32 + b as f32)),
            |v, l| Ok(map1(v, l, |x: f64| x * a + b)),
        ),
        _ => {
            float_kernel("unary", s, l, |v, l| Ok(map1(v, l, |x| op.apply(x))), |v, l| Ok(map1(v, l, |x| op.apply(x))))
        }
    }
}

/// Binary op with NumPy broadcasting. Both operands must have the same dtype.
pub fn binary(
    op: BinaryOp,
    a: &CpuStorage,
    la: &Layout,
    b: &CpuStorage,
    lb: &Layout,
) -> Result<(CpuStorage, Vec<usize>)> {
    if a.dtype() != b.dtype() {
        return Err(Error::DTypeMismatch { op: "binary", lhs: a.dtype(), rhs: b.dtype() });
    }
    let shape = broadcast_shapes(&la.shape, &lb.shape)?;
    let (la, lb) = (la.broadcast_to(&shape)?, lb.broadcast_to(&shape)?);
    let out = if op.is_comparison() {
        let r = crate::with_vec!(a, x => {
            let y: &[_] = match crate::cpu::storage::same_variant(b, x) { Some(y) => y, None => unreachable!("dtypes checked equal") };
            map2(x, &la, y, &lb, |p, q| op.compare(p.to_f64(), q.to_f64()) as u8)
        });
        CpuStorage::Bool(r)
    } else {
        match (a, b) {
            (CpuStorage::F32(x), CpuStorage::F32(y)) => CpuStorage::F32(map2(x, &la, y, &lb, |p, q| op.arith(p, q))),
            (CpuStorage::F64(x), CpuStorage::F64(y)) => CpuStorage::F64(map2(x, &la, y, &lb, |p, q| op.arith(p, q))),
            (CpuStorage::BF16(x), CpuStorage::BF16(y)) => {
                CpuStorage::BF16(map2(x, &la, y, &lb, |p, q| bf16::from_f32(op.arith(p.to_f32(), q.to_f32()))))
            }
            (CpuStorage::F16(x), CpuStorage::F16(y)) => {
                CpuStorage::F16(map2(x, &la, y, &lb, |p, q| f16::from_f32(op.arith(p.to_f32(), q.to_f32()))))
            }
            (CpuStorage::I64(x), CpuStorage::I64(y)) => {
                CpuStorage::I64(map2(x, &la, y, &lb, |p, q| int_arith(op, p, q)))
            }
            (CpuStorage::I32(x), CpuStorage::I32(y)) => {
                CpuStorage::I32(map2(x, &la, y, &lb, |p, q| int_arith(op, p as i64, q as i64) as i32))
            }
            (CpuStorage::U8(x), CpuStorage::U8(y)) => {
                CpuStorage::U8(map2(x, &la, y, &lb, |p, q| int_arith(op, p as i64, q as i64) as u8))
            }
            _ => return Err(Error::DType { op: "binary arithmetic", dtype: a.dtype() }),
        }
    };
    Ok((out, shape))
}

/// Integer arithmetic with wrapping; division truncates toward zero and x/0 gives 0.
#[inline(always)]
fn int_arith(op: BinaryOp, a: i64, b: i64) -> i64 {
    match op {
        BinaryOp::Add => a.wrapping_add(b),
        BinaryOp::Sub => a.wrapping_sub(b),
        BinaryOp::Mul => a.wrapping_mul(b),
        BinaryOp::Div => a.checked_div(b).unwrap_or(0),
        BinaryOp::Pow => {
            if b < 0 {
                0
            } else {
                a.wrapping_pow(b.min(u32::MAX as i64) as u32)
            }
        }
        BinaryOp::Maximum => a.max(b),
        BinaryOp::Minimum => a.min(b),
        _ => 0,
    }
}

/// `cond ? a : b` with three-way broadcasting. `cond` must be Bool.
pub fn where_cond(
    c: &CpuStorage,
    lc: &Layout,
    a: &CpuStorage,
    la: &Layout,
    b: &CpuStorage,
    lb: &Layout,
) -> Result<(CpuStorage, Vec<usize>)> {
    let CpuStorage::Bool(cv) = c else {
        return Err(Error::DType { op: "where (condition must be bool)", dtype: c.dtype() });
    };
    if a.dtype() != b.dtype() {
        return Err(Error::DTypeMismatch { op: "where", lhs: a.dtype(), rhs: b.dtype() });
    }
    let shape = broadcast_shapes(&broadcast_shapes(&lc.shape, &la.shape)?, &lb.shape)?;
    let (lc, la, lb) = (lc.broadcast_to(&shape)?, la.broadcast_to(&shape)?, lb.broadcast_to(&shape)?);
    let n = shape.iter().product::<usize>();
    let out = crate::map_same!(a, x => {
        let y = crate::cpu::storage::same_variant(b, x).expect("dtypes checked equal");
        let mut out = vec![x.first().copied().unwrap_or_else(Elem::zero); n];
        out.par_chunks_mut(CHUNK).enumerate().for_each(|(ci, o)| {
            let it = lc.offsets_from(ci * CHUNK).zip(la.offsets_from(ci * CHUNK)).zip(lb.offsets_from(ci * CHUNK));
            for (d, ((oc, oa), ob)) in o.iter_mut().zip(it) {
                *d = if cv[oc] != 0 { x[oa] } else { y[ob] };
            }
        });
        out
    });
    Ok((out, shape))
}

/// Contiguous copy of a view.
pub fn contiguous(s: &CpuStorage, l: &Layout) -> CpuStorage {
    crate::map_same!(s, v => gather_strided(v, l))
}

/// Converts a view to another dtype (contiguous result). Float → int truncates toward zero;
/// anything → bool is `x != 0`.
pub fn cast(s: &CpuStorage, l: &Layout, dtype: DType) -> CpuStorage {
    if s.dtype() == dtype {
        return contiguous(s, l);
    }
    macro_rules! conv {
        ($f:expr) => {
            crate::with_vec!(s, v => map1(v, l, |x| $f(x.to_f64())))
        };
    }
    match dtype {
        DType::F32 => match s {
            CpuStorage::BF16(v) => CpuStorage::F32(map1(v, l, |x| x.to_f32())),
            CpuStorage::F16(v) => CpuStorage::F32(map1(v, l, |x| x.to_f32())),
            _ => CpuStorage::F32(conv!(|x: f64| x as f32)),
        },
        DType::F64 => CpuStorage::F64(conv!(|x: f64| x)),
        DType::BF16 => match s {
            CpuStorage::F32(v) => CpuStorage::BF16(map1(v, l, bf16::from_f32)),
            _ => CpuStorage::BF16(conv!(bf16::from_f64)),
        },
        DType::F16 => match s {
            CpuStorage::F32(v) => CpuStorage::F16(map1(v, l, f16::from_f32)),
            _ => CpuStorage::F16(conv!(f16::from_f64)),
        },
        DType::I64 => match s {
            CpuStorage::I32(v) => CpuStorage::I64(map1(v, l, |x| x as i64)),
            _ => CpuStorage::I64(conv!(|x: f64| x as i64)),
        },
        DType::I32 => CpuStorage::I32(conv!(|x: f64| x as i32)),
        DType::U8 => CpuStorage::U8(conv!(|x: f64| x as u8)),
        DType::Bool => CpuStorage::Bool(conv!(|x: f64| (x != 0.0) as u8)),
    }
}

/// Writes the view `src` into the view `dst_l` of `dst` (same shape, same dtype).
pub fn copy_into(dst: &mut CpuStorage, dst_l: &Layout, src: &CpuStorage, src_l: &Layout) -> Result<()> {
    if dst_l.shape != src_l.shape {
        return shape_err("copy_into", format!("destination {:?} vs source {:?}", dst_l.shape, src_l.shape));
    }
    if dst.dtype() != src.dtype() {
        return Err(Error::DTypeMismatch { op: "copy_into", lhs: dst.dtype(), rhs: src.dtype() });
    }
    let src_c = contiguous(src, src_l);
    crate::with_vec!(dst, d => {
        let s = crate::cpu::storage::same_variant(&src_c, d).expect("dtypes checked equal");
        if dst_l.is_contiguous() {
            let n = dst_l.numel();
            d[dst_l.offset..dst_l.offset + n].copy_from_slice(s);
        } else {
            for (o, &x) in dst_l.offsets().zip(s.iter()) {
                d[o] = x;
            }
        }
    });
    Ok(())
}
