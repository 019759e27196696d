//! Reductions over any set of axes, softmax / log-softmax and cumsum along one axis.

use super::elementwise::{float_kernel, CHUNK};
use super::storage::{gather_strided, CpuStorage};
use crate::error::shape_err;
use crate::special::FastExp;
use crate::{Error, Layout, Result};
use num_traits::Float;
use rayon::prelude::*;

/// Reductions. Arg reductions take exactly one axis and return i64 indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Max,
    Min,
    ArgMax,
    ArgMin,
}

/// Validates axes (non-negative, in range, unique) and returns them sorted.
pub fn check_axes(axes: &[usize], rank: usize) -> Result<Vec<usize>> {
    let mut a = axes.to_vec();
    a.sort_unstable();
    a.dedup();
    if a.len() != axes.len() {
        return shape_err("reduce", format!("repeated axis in {axes:?}"));
    }
    if let Some(&bad) = a.iter().find(|&&x| x >= rank) {
        return Err(Error::Axis { axis: bad as isize, rank });
    }
    Ok(a)
}

/// Splits a view into a contiguous `[kept, reduced]` matrix (copying only when needed).
/// Returns the data and the size of the reduced part.
fn kept_by_reduced<T: Copy + Send + Sync>(v: &[T], l: &Layout, axes: &[usize]) -> (Vec<T>, usize) {
    let kept: Vec<usize> = (0..l.rank()).filter(|d| !axes.contains(d)).collect();
    let perm: Vec<usize> = kept.iter().chain(axes.iter()).copied().collect();
    let red: usize = axes.iter().map(|&a| l.shape[a]).product();
    let pl = l.permute(&perm).expect("kept ++ axes is a permutation");
    (gather_strided(v, &pl), red)
}

fn reduce_rows<T: Float + Send + Sync>(data: &[T], rows: usize, red: usize, op: ReduceOp) -> Vec<T> {
    let row = |r: &[T]| -> T {
        match op {
            // Accumulate in f64: one pass, no cancellation worries for f32 inputs.
            ReduceOp::Sum => {
                T::from(r.iter().fold(0f64, |acc, x| acc + x.to_f64().unwrap_or(f64::NAN))).unwrap_or_else(T::nan)
            }
            ReduceOp::Max => r.iter().fold(T::neg_infinity(), |m, &x| if x > m || x.is_nan() { x } else { m }),
            ReduceOp::Min => r.iter().fold(T::infinity(), |m, &x| if x < m || x.is_nan() { x } else { m }),
            _ => T::nan(),
        }
    };
    if red == 0 {
        return vec![if op == ReduceOp::Sum { T::zero() } else { T::nan() }; rows];
    }
    if rows < 4 * rayon::current_num_threads() && red >= 4 * CHUNK {
        // Few long rows: parallelise inside each row.
        return data
            .chunks(red)
            .map(|r| {
                let parts: Vec<T> = r.par_chunks(CHUNK).map(row).collect();
                row(&parts)
            })
            .collect();
    }
    let mut out = vec![T::zero(); rows];
    out.par_iter_mut()
        .enumerate()
        .with_min_len((CHUNK / red).max(1))
        .for_each(|(i, o)| *o = row(&data[i * red..(i + 1) * red]));
    out
}

fn arg_rows<T: Float + Send + Sync>(data: &[T], red: usize, max: bool) -> Vec<i64> {
    let rows = data.len() / red.max(1);
    let mut out = vec![0i64; rows];
    out.par_iter_mut().enumerate().for_each(|(i, o)| {
        let r = &data[i * red..(i + 1) * red];
        let mut best = 0usize;
        for (j, &x) in r.iter().enumerate() {
            let b = r[best];
            // First occurrence wins; NaN counts as the extreme like PyTorch.
            if (x.is_nan() && !b.is_nan()) || (!b.is_nan() && if max { x > b } else { x < b }) {
                best = j;
            }
        }
        *o = best as i64;
    });
    out
}

/// Reduces `axes` away (output shape = kept dims, in order).
pub fn reduce(op: ReduceOp, s: &CpuStorage, l: &Layout, axes: &[usize]) -> Result<CpuStorage> {
    let axes = check_axes(axes, l.rank())?;
    let red: usize = axes.iter().map(|&a| l.shape[a]).product();
    let kept: usize = (0..l.rank()).filter(|d| !axes.contains(d)).map(|d| l.shape[d]).product();
    if matches!(op, ReduceOp::ArgMax | ReduceOp::ArgMin) {
        if axes.len() != 1 {
            return shape_err("argmax/argmin", format!("needs exactly one axis, got {axes:?}"));
        }
        if red == 0 {
            return shape_err("argmax/argmin", "cannot take the arg extreme of an empty axis");
        }
        let max = op == ReduceOp::ArgMax;
        let idx = match s {
            CpuStorage::F32(v) => arg_rows(&kept_by_reduced(v, l, &axes).0, red, max),
            CpuStorage::F64(v) => arg_rows(&kept_by_reduced(v, l, &axes).0, red, max),
            _ => {
                let f = super::elementwise::cast(s, l, crate::DType::F64);
                let CpuStorage::F64(v) = f else { unreachable!("cast to f64 gives f64") };
                arg_rows(&kept_by_reduced(&v, &Layout::contiguous(&l.shape), &axes).0, red, max)
            }
        };
        return Ok(CpuStorage::I64(idx));
    }
    if matches!(op, ReduceOp::Max | ReduceOp::Min) && red == 0 {
        return shape_err("max/min", format!("reduction over an empty axis of shape {:?}", l.shape));
    }
    float_kernel(
        "reduce",
        s,
        l,
        |v, l| {
            let (d, r) = kept_by_reduced(v, l, &axes);
            Ok(reduce_rows(&d, kept, r, op))
        },
        |v, l| {
            let (d, r) = kept_by_reduced(v, l, &axes);
            Ok(reduce_rows(&d, kept, r, op))
        },
    )
}

/// For a view and an axis: each lane's input base offset, the input stride along the axis,
/// and the output (contiguous, same shape) base offset and stride.
pub(crate) struct Lanes {
    pub in_base: Vec<usize>,
    pub in_stride: usize,
    pub out_base: Vec<usize>,
    pub out_stride: usize,
    pub len: usize,
}

pub(crate) fn lanes(l: &Layout, axis: usize) -> Lanes {
    let mut other = l.clone();
    other.shape[axis] = 1;
    let out_strides = crate::layout::contiguous_strides(&l.shape);
    let mut out_l = Layout { shape: other.shape.clone(), strides: out_strides.clone(), offset: 0 };
    out_l.shape[axis] = 1;
    Lanes {
        in_base: other.offsets().collect(),
        in_stride: l.strides[axis],
        out_base: out_l.offsets().collect(),
        out_stride: out_strides[axis],
        len: l.shape[axis],
    }
}

/// Softmax (or log-softmax) along `axis`; contiguous output of the same shape.
pub fn softmax(s: &CpuStorage, l: &Layout, axis: usize, log: bool) -> Result<CpuStorage> {
    if axis >= l.rank() {
        return Err(Error::Axis { axis: axis as isize, rank: l.rank() });
    }
    fn k<T: Float + FastExp + Send + Sync>(v: &[T], l: &Layout, axis: usize, log: bool) -> Vec<T> {
        let ln = lanes(l, axis);
        let mut out = vec![T::zero(); l.numel()];
        let ptr = SendPtr(out.as_mut_ptr());
        ln.in_base.par_iter().zip(ln.out_base.par_iter()).for_each(|(&ib, &ob)| {
            let p = &ptr;
            let mut m = T::neg_infinity();
            for j in 0..ln.len {
                m = m.max(v[ib + j * ln.in_stride]);
            }
            if m == T::neg_infinity() {
                m = T::zero();
            }
            let mut sum = 0f64;
            for j in 0..ln.len {
                sum += (v[ib + j * ln.in_stride] - m).fexp().to_f64().unwrap_or(f64::NAN);
            }
            let lse = T::from(sum.ln()).unwrap_or_else(T::nan);
            for j in 0..ln.len {
                let z = v[ib + j * ln.in_stride] - m - lse;
                // SAFETY: lanes write disjoint output offsets (distinct out_base, same stride).
                unsafe { *p.0.add(ob + j * ln.out_stride) = if log { z } else { z.fexp() } };
            }
        });
        out
    }
    float_kernel("softmax", s, l, |v, l| Ok(k(v, l, axis, log)), |v, l| Ok(k(v, l, axis, log)))
}

/// Inclusive cumulative sum along `axis` (accumulated in f64).
pub fn cumsum(s: &CpuStorage, l: &Layout, axis: usize) -> Result<CpuStorage> {
    if axis >= l.rank() {
        return Err(Error::Axis { axis: axis as isize, rank: l.rank() });
    }
    fn k<T: Float + Send + Sync>(v: &[T], l: &Layout, axis: usize) -> Vec<T> {
        let ln = lanes(l, axis);
        let mut out = vec![T::zero(); l.numel()];
        let ptr = SendPtr(out.as_mut_ptr());
        ln.in_base.par_iter().zip(ln.out_base.par_iter()).for_each(|(&ib, &ob)| {
            let p = &ptr;
            let mut acc = 0f64;
            for j in 0..ln.len {
                acc += v[ib + j * ln.in_stride].to_f64().unwrap_or(f64::NAN);
                // SAFETY: lanes write disjoint output offsets.
                unsafe { *p.0.add(ob + j * ln.out_stride) = T::from(acc).unwrap_or_else(T::nan) };
            }
        });
        out
    }
    float_kernel("cumsum", s, l, |v, l| Ok(k(v, l, axis)), |v, l| Ok(k(v, l, axis)))
}

/// A raw pointer that may cross threads; users guarantee disjoint writes.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr<T>(pub *mut T);
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}
