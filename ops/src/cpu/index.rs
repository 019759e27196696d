//! Indexing: index_select / index_add (embedding and its gradient), gather / scatter_add.

use super::storage::{gather_strided, CpuStorage};
use crate::error::shape_err;
use crate::{Error, Layout, Result};
use rayon::prelude::*;

/// Reads an index tensor (i64 or i32) and checks every entry against `size`.
pub fn read_indices(op: &'static str, s: &CpuStorage, l: &Layout, size: usize) -> Result<Vec<usize>> {
    let raw: Vec<i64> = match s {
        CpuStorage::I64(v) => gather_strided(v, l),
        CpuStorage::I32(v) => gather_strided(v, l).into_iter().map(|x| x as i64).collect(),
        _ => return Err(Error::DType { op, dtype: s.dtype() }),
    };
    raw.into_iter()
        .map(|i| if i < 0 || i as usize >= size { Err(Error::Index { op, index: i, size }) } else { Ok(i as usize) })
        .collect()
}

fn split(shape: &[usize], dim: usize) -> (usize, usize, usize) {
    (shape[..dim].iter().product(), shape[dim], shape[dim + 1..].iter().product())
}

/// `out[o, i, r] = x[o, idx[i], r]` along `dim`.
pub fn index_select(x: &CpuStorage, lx: &Layout, dim: usize, idx: &[usize]) -> Result<CpuStorage> {
    if dim >= lx.rank() {
        return Err(Error::Axis { axis: dim as isize, rank: lx.rank() });
    }
    let (outer, size, inner) = split(&lx.shape, dim);
    if let Some(&bad) = idx.iter().find(|&&i| i >= size) {
        return Err(Error::Index { op: "index_select", index: bad as i64, size });
    }
    let n = idx.len();
    Ok(crate::map_same!(x, v => {
        // Contiguous inputs are read in place: an embedding lookup must not copy the table.
        let copied;
        let src: &[_] = if lx.is_contiguous() {
            &v[lx.offset..lx.offset + lx.numel()]
        } else {
            copied = gather_strided(v, lx);
            &copied
        };
        let mut out = Vec::with_capacity(outer * n * inner);
        for o in 0..outer {
            for &i in idx {
                out.extend_from_slice(&src[(o * size + i) * inner..][..inner]);
            }
        }
        out
    }))
}

/// Adjoint of index_select: `out[o, idx[i], r] += src[o, i, r]`, out has `size` along `dim`.
pub fn index_add(src: &CpuStorage, ls: &Layout, dim: usize, idx: &[usize], size: usize) -> Result<CpuStorage> {
    if dim >= ls.rank() || ls.shape[dim] != idx.len() {
        return shape_err("index_add", format!("source {:?} along dim {dim} vs {} indices", ls.shape, idx.len()));
    }
    if let Some(&bad) = idx.iter().find(|&&i| i >= size) {
        return Err(Error::Index { op: "index_add", index: bad as i64, size });
    }
    let (outer, n, inner) = split(&ls.shape, dim);
    super::elementwise::float_kernel(
        "index_add",
        src,
        ls,
        |v, l| Ok(index_add_t(&gather_strided(v, l), outer, n, inner, idx, size)),
        |v, l| Ok(index_add_t(&gather_strided(v, l), outer, n, inner, idx, size)),
    )
}

fn index_add_t<T: num_traits::Float + Send + Sync>(
    s: &[T],
    outer: usize,
    n: usize,
    inner: usize,
    idx: &[usize],
    size: usize,
) -> Vec<T> {
    let mut out = vec![T::zero(); outer * size * inner];
    out.par_chunks_mut((size * inner).max(1)).enumerate().for_each(|(o, dst)| {
        for (i, &t) in idx.iter().enumerate() {
            let row = &s[(o * n + i) * inner..][..inner];
            for (d, &x) in dst[t * inner..(t + 1) * inner].iter_mut().zip(row) {
                *d = *d + x;
            }
        }
    });
    out
}

/// Source offset (in a contiguous `xshape` tensor) of gather element at multi-index `m`.
fn gather_offset(m: &[usize], dim: usize, i: usize, xstrides: &[usize]) -> usize {
    m.iter().enumerate().map(|(d, &v)| if d == dim { i * xstrides[d] } else { v * xstrides[d] }).sum()
}

fn check_gather(op: &'static str, xshape: &[usize], ishape: &[usize], dim: usize) -> Result<()> {
    if xshape.len() != ishape.len() || dim >= xshape.len() {
        return shape_err(op, format!("index {ishape:?} must have the rank of {xshape:?} and dim {dim} in range"));
    }
    for d in 0..xshape.len() {
        if d != dim && ishape[d] > xshape[d] {
            return shape_err(op, format!("index {ishape:?} larger than {xshape:?} outside dim {dim}"));
        }
    }
    Ok(())
}

/// `out[m] = x[m with m[dim] = idx[m]]`; out has the index's shape.
pub fn gather(x: &CpuStorage, lx: &Layout, dim: usize, idx: &[usize], ishape: &[usize]) -> Result<CpuStorage> {
    check_gather("gather", &lx.shape, ishape, dim)?;
    if let Some(&bad) = idx.iter().find(|&&i| i >= lx.shape[dim]) {
        return Err(Error::Index { op: "gather", index: bad as i64, size: lx.shape[dim] });
    }
    let il = Layout::contiguous(ishape);
    let xs = crate::layout::contiguous_strides(&lx.shape);
    Ok(crate::map_same!(x, v => {
        let src = gather_strided(v, lx);
        let mut out = Vec::with_capacity(idx.len());
        let mut m = vec![0usize; ishape.len()];
        for k in 0..il.numel() {
            let mut rem = k;
            for d in (0..ishape.len()).rev() {
                m[d] = rem % ishape[d];
                rem /= ishape[d];
            }
            out.push(src[gather_offset(&m, dim, idx[k], &xs)]);
        }
        out
    }))
}

/// Adjoint of gather: `out[m with m[dim] = idx[m]] += src[m]`, out has shape `xshape`.
pub fn scatter_add(src: &CpuStorage, ls: &Layout, dim: usize, idx: &[usize], xshape: &[usize]) -> Result<CpuStorage> {
    check_gather("scatter_add", xshape, &ls.shape, dim)?;
    if let Some(&bad) = idx.iter().find(|&&i| i >= xshape[dim]) {
        return Err(Error::Index { op: "scatter_add", index: bad as i64, size: xshape[dim] });
    }
    let ishape = ls.shape.clone();
    let xs = crate::layout::contiguous_strides(xshape);
    let k = |v: Vec<f64>| -> Vec<f64> {
        let mut out = vec![0f64; xshape.iter().product()];
        let mut m = vec![0usize; ishape.len()];
        for (kk, &x) in v.iter().enumerate() {
            let mut rem = kk;
            for d in (0..ishape.len()).rev() {
                m[d] = rem % ishape[d];
                rem /= ishape[d];
            }
            out[gather_offset(&m, dim, idx[kk], &xs)] += x;
        }
        out
    };
    if !src.dtype().is_float() {
        return Err(Error::DType { op: "scatter_add", dtype: src.dtype() });
    }
    let r = k(src.to_f64_vec(ls));
    Ok(CpuStorage::from_f64_iter(src.dtype(), r.into_iter()))
}
