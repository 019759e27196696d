//! Indexing (`cuda/kernels/index.cu`): index_select / index_add (embedding lookup and its
//! gradient), gather / scatter_add, with the CPU backend's semantics and errors.
//!
//! Index tensors are i64 or i32, read in row-major order. Every index is checked against the
//! dimension on the device first (one kernel and one 8-byte download, which waits for the
//! stream); an index outside `[0, size)` is the CPU's [`Error::Index`] for the first bad
//! position, and no kernel reads through it. The checks run in the CPU's order (axis,
//! index dtype, index range, then shapes and the data dtype). The additive ops accumulate
//! f32/f64 in their own type and bf16/f16 in f32 for index_add, everything in f64 for
//! scatter_add, as on the CPU: with atomics, in no fixed order, or, in deterministic mode
//! ([`super::deterministic`]), without atomics in the CPU's order ([`stable_buckets`] on the
//! host groups the sources by destination; the results are then the CPU's bit for bit).

use super::{launch, strided, Contig, Cuda, CudaStorage};
use crate::device::CudaDevice;
use scorch_ops::cpu::CpuStorage;
use scorch_ops::kernels::View;
use scorch_ops::{DType, Error, Layout, Result};

/// Element 0 of a downloaded i64 or i32 buffer.
fn first_i64(c: &CpuStorage) -> Result<i64> {
    match c {
        CpuStorage::I64(v) if !v.is_empty() => Ok(v[0]),
        CpuStorage::I32(v) if !v.is_empty() => Ok(v[0] as i64),
        other => {
            Err(Error::Msg(format!("index check: unexpected {} buffer of {} elements", other.dtype(), other.len())))
        }
    }
}

/// The index view as a contiguous buffer with its kernel suffix (`i64` / `i32`), after the
/// CPU's `read_indices` checks: an integer dtype, and every entry in `[0, size)`.
fn indices<'a>(
    cu: &Cuda,
    op: &'static str,
    (s, l): View<'a, CudaStorage>,
    size: usize,
) -> Result<(Contig<'a>, &'static str)> {
    cu.check(op, s)?;
    let ity = match s.dtype() {
        DType::I64 => "i64",
        DType::I32 => "i32",
        dtype => return Err(Error::DType { op, dtype }),
    };
    let idx = cu.contig((s, l))?;
    let n = l.numel();
    if n > 0 {
        let flag = cu.upload_i64(&[i64::MAX])?;
        let (ip, ni, sz, fp) = (idx.ptr(), n as i64, size as i64, flag.ptr());
        launch!(cu, "index.cu", format!("index_check_{ity}"), CudaDevice::cfg_1d(n); &ip, &ni, &sz, &fp)?;
        let pos = first_i64(&flag.to_cpu()?)?;
        if pos != i64::MAX {
            let at = Layout { shape: vec![1], strides: vec![1], offset: pos as usize };
            let index = first_i64(&cu.copy_contiguous((&*idx, &at))?.to_cpu()?)?;
            return Err(Error::Index { op, index, size });
        }
    }
    Ok((idx, ity))
}

/// The positions `0..keys.len()` grouped by key (a stable counting sort): `order` lists them
/// key by key, ascending within a key, and key `t`'s run is `order[offsets[t]..offsets[t + 1]]`.
/// A key of `nkeys` or more is an index error.
pub fn stable_buckets(keys: &[usize], nkeys: usize) -> Result<(Vec<i64>, Vec<i64>)> {
    let mut offsets = vec![0i64; nkeys + 1];
    for &k in keys {
        if k >= nkeys {
            return Err(Error::Index { op: "index_add / scatter_add", index: k as i64, size: nkeys });
        }
        offsets[k + 1] += 1;
    }
    for t in 0..nkeys {
        offsets[t + 1] += offsets[t];
    }
    let mut next = offsets.clone();
    let mut order = vec![0i64; keys.len()];
    for (i, &k) in keys.iter().enumerate() {
        order[next[k] as usize] = i as i64;
        next[k] += 1;
    }
    Ok((offsets, order))
}

/// scatter_add's destination (flat, in the contiguous output of shape `out`) of every source
/// position: source position k has the multi-index m over `src` (row-major), and its
/// destination is m with m[dim] replaced by idx[k], as `scatter_add_*` in index.cu computes it.
pub fn scatter_destinations(src: &[usize], dim: usize, idx: &[usize], out: &[usize]) -> Vec<usize> {
    let ostrides = scorch_ops::layout::contiguous_strides(out);
    let total: usize = src.iter().product();
    let mut m = vec![0usize; src.len()];
    idx.iter()
        .take(total)
        .enumerate()
        .map(|(k, &ik)| {
            let mut rem = k;
            for d in (0..src.len()).rev() {
                m[d] = rem % src[d];
                rem /= src[d];
            }
            (0..src.len()).map(|d| if d == dim { ik } else { m[d] } * ostrides[d]).sum()
        })
        .collect()
}

/// The first `n` (already range-checked) indices on the host, for the deterministic paths.
/// The contiguous index buffer can be longer than the view (a prefix of a larger tensor is
/// passed as the tensor's own storage), so only `n` entries are taken.
fn host_indices(iv: &CudaStorage, n: usize) -> Result<Vec<usize>> {
    Ok(match iv.to_cpu()? {
        CpuStorage::I64(v) => v.into_iter().take(n).map(|i| i as usize).collect(),
        CpuStorage::I32(v) => v.into_iter().take(n).map(|i| i as usize).collect(),
        other => return Err(Error::DType { op: "index", dtype: other.dtype() }),
    })
}

/// `(outer, shape[dim], inner)`.
fn split(shape: &[usize], dim: usize) -> (usize, usize, usize) {
    (shape[..dim].iter().product(), shape[dim], shape[dim + 1..].iter().product())
}

/// The CPU's `check_gather`: equal ranks, `dim` in range, the index no larger than the data
/// outside `dim`.
fn check_gather(op: &'static str, xshape: &[usize], ishape: &[usize], dim: usize) -> Result<()> {
    if xshape.len() != ishape.len() || dim >= xshape.len() {
        return Err(Error::Shape {
            op,
            detail: format!("index {ishape:?} must have the rank of {xshape:?} and dim {dim} in range"),
        });
    }
    for d in 0..xshape.len() {
        if d != dim && ishape[d] > xshape[d] {
            return Err(Error::Shape {
                op,
                detail: format!("index {ishape:?} larger than {xshape:?} outside dim {dim}"),
            });
        }
    }
    Ok(())
}

/// `out[o, i, r] = x[o, idx[i], r]` along `dim`; any dtype.
pub fn index_select(cu: &Cuda, (x, lx): View<CudaStorage>, dim: usize, idx: View<CudaStorage>) -> Result<CudaStorage> {
    const OP: &str = "index_select";
    cu.check(OP, x)?;
    let size = *lx.shape.get(dim).ok_or(Error::Axis { axis: dim as isize, rank: lx.rank() })?;
    let (iv, ity) = indices(cu, OP, idx, size)?;
    let (outer, _, inner) = split(&lx.shape, dim);
    let n = idx.1.numel();
    let total = outer * n * inner;
    let out = cu.alloc(x.dtype(), total)?;
    if total == 0 {
        return Ok(out);
    }
    let sl = strided(&lx.coalesced())?;
    let (xp, ip, yp) = (x.ptr(), iv.ptr(), out.ptr());
    let (t, ni, sz, inn) = (total as i64, n as i64, size as i64, inner as i64);
    let name = format!("index_select_{}_{ity}", x.dtype().size());
    launch!(cu, "index.cu", name, CudaDevice::cfg_1d(total); &xp, &sl, &ip, &yp, &t, &ni, &sz, &inn)?;
    Ok(out)
}

/// Adjoint of index_select: `out[o, idx[i], r] += src[o, i, r]`, out has `size` along `dim`;
/// floats only.
pub fn index_add(
    cu: &Cuda,
    (s, ls): View<CudaStorage>,
    dim: usize,
    idx: View<CudaStorage>,
    size: usize,
) -> Result<CudaStorage> {
    const OP: &str = "index_add";
    cu.check(OP, s)?;
    let (iv, ity) = indices(cu, OP, idx, size)?;
    let nidx = idx.1.numel();
    if dim >= ls.rank() || ls.shape[dim] != nidx {
        return Err(Error::Shape {
            op: OP,
            detail: format!("source {:?} along dim {dim} vs {nidx} indices", ls.shape),
        });
    }
    let (acc_dt, sx) = match s.dtype() {
        DType::F32 => (DType::F32, "f32"),
        DType::F64 => (DType::F64, "f64"),
        DType::BF16 => (DType::F32, "bf16"),
        DType::F16 => (DType::F32, "f16"),
        dtype => return Err(Error::DType { op: OP, dtype }),
    };
    let (outer, n, inner) = split(&ls.shape, dim);
    let out_len = outer * size * inner;
    let acc = cu.zeros(acc_dt, out_len)?;
    let total = ls.numel();
    if out_len > 0 && super::deterministic() {
        // Each output element sums its sources in the CPU's order: no atomics.
        let (offsets, order) = stable_buckets(&host_indices(&iv, nidx)?, size)?;
        let (op_, or_) = (cu.upload_i64(&offsets)?, cu.upload_i64(&order)?);
        let sl = strided(&ls.coalesced())?;
        let (sp, offp, ordp, ap) = (s.ptr(), op_.ptr(), or_.ptr(), acc.ptr());
        let (t, ni, sz, inn) = (out_len as i64, n as i64, size as i64, inner as i64);
        launch!(cu, "index.cu", format!("index_add_det_{sx}"), CudaDevice::cfg_1d(out_len);
            &sp, &sl, &offp, &ordp, &ap, &t, &ni, &sz, &inn)?;
    } else if total > 0 {
        let sl = strided(&ls.coalesced())?;
        let (sp, ip, ap) = (s.ptr(), iv.ptr(), acc.ptr());
        let (t, ni, sz, inn) = (total as i64, n as i64, size as i64, inner as i64);
        let name = format!("index_add_{sx}_{ity}");
        launch!(cu, "index.cu", name, CudaDevice::cfg_1d(total); &sp, &sl, &ip, &ap, &t, &ni, &sz, &inn)?;
    }
    if acc_dt == s.dtype() {
        Ok(acc)
    } else {
        super::elementwise::cast(cu, (&acc, &Layout::contiguous(&[out_len])), s.dtype())
    }
}

/// `out[m] = x[m with m[dim] = idx[m]]`; out has the index's shape; any dtype.
pub fn gather(cu: &Cuda, (x, lx): View<CudaStorage>, dim: usize, idx: View<CudaStorage>) -> Result<CudaStorage> {
    const OP: &str = "gather";
    cu.check(OP, x)?;
    let size = *lx.shape.get(dim).ok_or(Error::Axis { axis: dim as isize, rank: lx.rank() })?;
    let (iv, ity) = indices(cu, OP, idx, size)?;
    let ishape = &idx.1.shape;
    check_gather(OP, &lx.shape, ishape, dim)?;
    let total = idx.1.numel();
    let out = cu.alloc(x.dtype(), total)?;
    if total == 0 {
        return Ok(out);
    }
    let (sx, si) = (strided(lx)?, strided(&Layout::contiguous(ishape))?);
    let (xp, ip, yp, t, d) = (x.ptr(), iv.ptr(), out.ptr(), total as i64, dim as i32);
    let name = format!("gather_{}_{ity}", x.dtype().size());
    launch!(cu, "index.cu", name, CudaDevice::cfg_1d(total); &xp, &sx, &si, &ip, &yp, &t, &d)?;
    Ok(out)
}

/// Adjoint of gather: `out[m with m[dim] = idx[m]] += src[m]`, out has shape `shape`;
/// floats only, summed in f64.
pub fn scatter_add(
    cu: &Cuda,
    (s, ls): View<CudaStorage>,
    dim: usize,
    idx: View<CudaStorage>,
    shape: &[usize],
) -> Result<CudaStorage> {
    const OP: &str = "scatter_add";
    cu.check(OP, s)?;
    let size = *shape.get(dim).ok_or(Error::Axis { axis: dim as isize, rank: shape.len() })?;
    let (iv, ity) = indices(cu, OP, idx, size)?;
    check_gather(OP, shape, &ls.shape, dim)?;
    let total = ls.numel();
    if idx.1.numel() < total {
        return Err(Error::Shape {
            op: OP,
            detail: format!("{} indices for a source of {total} elements {:?}", idx.1.numel(), ls.shape),
        });
    }
    if !s.dtype().is_float() {
        return Err(Error::DType { op: OP, dtype: s.dtype() });
    }
    let sx = super::sfx(OP, s.dtype())?;
    let out_len: usize = shape.iter().product();
    let acc = cu.zeros(DType::F64, out_len)?;
    if out_len > 0 && super::deterministic() {
        // Each output element sums its sources in the CPU's order: no atomics.
        let keys = scatter_destinations(&ls.shape, dim, &host_indices(&iv, total)?, shape);
        let (offsets, order) = stable_buckets(&keys, out_len)?;
        let (op_, or_) = (cu.upload_i64(&offsets)?, cu.upload_i64(&order)?);
        let sl = strided(ls)?;
        let (sp, offp, ordp, ap, ol) = (s.ptr(), op_.ptr(), or_.ptr(), acc.ptr(), out_len as i64);
        launch!(cu, "index.cu", format!("scatter_add_det_{sx}"), CudaDevice::cfg_1d(out_len);
            &sp, &sl, &offp, &ordp, &ap, &ol)?;
    } else if total > 0 {
        let (sl, lo) = (strided(ls)?, strided(&Layout::contiguous(shape))?);
        let (sp, ip, ap, t, d) = (s.ptr(), iv.ptr(), acc.ptr(), total as i64, dim as i32);
        let name = format!("scatter_add_{sx}_{ity}");
        launch!(cu, "index.cu", name, CudaDevice::cfg_1d(total); &sp, &sl, &ip, &ap, &lo, &t, &d)?;
    }
    if s.dtype() == DType::F64 {
        return Ok(acc);
    }
    // Each element rounded straight from f64, as the CPU's `from_f64_iter`.
    let out = cu.alloc(s.dtype(), out_len)?;
    if out_len > 0 {
        let (ap, yp, n) = (acc.ptr(), out.ptr(), out_len as i64);
        launch!(cu, "index.cu", format!("f64_to_{sx}"), CudaDevice::cfg_1d(out_len); &ap, &yp, &n)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::stable_buckets;

    #[test]
    fn stable_buckets_group_positions_by_key_in_ascending_order() {
        let (offsets, order) = stable_buckets(&[2, 0, 2, 1, 0, 2], 4).unwrap();
        assert_eq!(offsets, [0, 2, 3, 6, 6]);
        assert_eq!(order, [1, 4, 3, 0, 2, 5]);
        let (offsets, order) = stable_buckets(&[], 3).unwrap();
        assert_eq!((offsets, order), (vec![0, 0, 0, 0], vec![]));
        let err = stable_buckets(&[0, 3], 3).unwrap_err().to_string();
        assert!(err.contains('3'), "{err}");
    }
}
