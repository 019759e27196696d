//! Matrix products through the `gemm` crate (strided operands, no packing copies on our side).

use super::elementwise::{f32_to_dtype, half_to_f32};
use super::storage::CpuStorage;
use crate::error::shape_err;
use crate::layout::broadcast_shapes;
use crate::{Error, Layout, Result};
use num_traits::Float;
use rayon::prelude::*;

/// `dst[m×n] = (accumulate ? dst : 0) + lhs[m×k] · rhs[k×n]` on raw strided pointers.
///
/// # Safety
/// All pointers must be valid for the given extents and strides; `dst` must not alias the
/// operands and must not be written concurrently by another caller.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_raw<T: Float + 'static>(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    dst_rs: isize,
    dst_cs: isize,
    accumulate: bool,
    lhs: *const T,
    lhs_rs: isize,
    lhs_cs: isize,
    rhs: *const T,
    rhs_rs: isize,
    rhs_cs: isize,
    threads: usize,
) {
    let par = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    gemm::gemm(
        m,
        n,
        k,
        dst,
        dst_cs,
        dst_rs,
        accumulate,
        lhs,
        lhs_cs,
        lhs_rs,
        rhs,
        rhs_cs,
        rhs_rs,
        T::one(),
        T::one(),
        false,
        false,
        false,
        par,
    );
}

/// Shape of `a @ b` for batched operands `[..., m, k] @ [..., k, n]` (rank ≥ 2 each).
pub fn matmul_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    if a.len() < 2 || b.len() < 2 {
        return shape_err("matmul", format!("operands need rank >= 2, got {a:?} and {b:?}"));
    }
    let (m, k) = (a[a.len() - 2], a[a.len() - 1]);
    let (k2, n) = (b[b.len() - 2], b[b.len() - 1]);
    if k != k2 {
        return shape_err("matmul", format!("inner dimensions differ: {a:?} @ {b:?}"));
    }
    let mut batch = broadcast_shapes(&a[..a.len() - 2], &b[..b.len() - 2]).map_err(|_| Error::Shape {
        op: "matmul",
        detail: format!("batch dims of {a:?} and {b:?} do not broadcast"),
    })?;
    batch.push(m);
    batch.push(n);
    Ok(batch)
}

fn matmul_t<T: Float + Send + Sync + 'static>(a: &[T], la: &Layout, b: &[T], lb: &Layout, shape: &[usize]) -> Vec<T> {
    let r = shape.len();
    let (m, n) = (shape[r - 2], shape[r - 1]);
    let k = la.shape[la.rank() - 1];
    let batch_shape = &shape[..r - 2];
    let nb: usize = batch_shape.iter().product();
    // Broadcast each operand's batch dims to the output's, keep its matrix dims.
    let bl = |l: &Layout| -> Layout {
        let mut full = batch_shape.to_vec();
        full.extend_from_slice(&l.shape[l.rank() - 2..]);
        l.broadcast_to(&full).expect("batch dims broadcast (checked by matmul_shape)")
    };
    let (la, lb) = (bl(la), bl(lb));
    let batch_offsets = |l: &Layout| -> Vec<usize> {
        let bshape = Layout { shape: batch_shape.to_vec(), strides: l.strides[..r - 2].to_vec(), offset: l.offset };
        bshape.offsets().collect()
    };
    let (oa, ob) = (batch_offsets(&la), batch_offsets(&lb));
    let (ars, acs) = (la.strides[r - 2] as isize, la.strides[r - 1] as isize);
    let (brs, bcs) = (lb.strides[r - 2] as isize, lb.strides[r - 1] as isize);
    let mut out = vec![T::zero(); nb * m * n];
    if m * n == 0 {
        return out;
    }
    let threads = rayon::current_num_threads();
    let small = m * n * k < 64 * 64 * 64;
    let run = |bi: usize, dst: &mut [T], threads: usize| {
        if k == 0 {
            return;
        }
        // SAFETY: offsets come from layouts that index within the operand buffers; dst is one
        // batch's exclusive m×n slice.
        unsafe {
            gemm_raw(
                m,
                n,
                k,
                dst.as_mut_ptr(),
                n as isize,
                1,
                false,
                a.as_ptr().add(oa[bi]),
                ars,
                acs,
                b.as_ptr().add(ob[bi]),
                brs,
                bcs,
                threads,
            )
        }
    };
    if nb >= threads && small || nb >= 4 * threads {
        out.par_chunks_mut(m * n).enumerate().for_each(|(bi, dst)| run(bi, dst, 1));
    } else {
        out.chunks_mut(m * n).enumerate().for_each(|(bi, dst)| run(bi, dst, threads));
    }
    out
}

/// Batched matrix product with broadcast batch dims. Returns the contiguous result and its shape.
pub fn matmul(a: &CpuStorage, la: &Layout, b: &CpuStorage, lb: &Layout) -> Result<(CpuStorage, Vec<usize>)> {
    let shape = matmul_shape(&la.shape, &lb.shape)?;
    if a.dtype() != b.dtype() {
        return Err(Error::DTypeMismatch { op: "matmul", lhs: a.dtype(), rhs: b.dtype() });
    }
    let out = match (a, b) {
        (CpuStorage::F32(x), CpuStorage::F32(y)) => CpuStorage::F32(matmul_t(x, la, y, lb, &shape)),
        (CpuStorage::F64(x), CpuStorage::F64(y)) => CpuStorage::F64(matmul_t(x, la, y, lb, &shape)),
        _ if a.dtype().is_half() => {
            let x = half_to_f32(a, la).expect("half");
            let y = half_to_f32(b, lb).expect("half");
            let r = matmul_t(&x, &Layout::contiguous(&la.shape), &y, &Layout::contiguous(&lb.shape), &shape);
            f32_to_dtype(r, a.dtype())
        }
        _ => return Err(Error::DType { op: "matmul", dtype: a.dtype() }),
    };
    Ok((out, shape))
}
