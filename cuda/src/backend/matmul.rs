//! Matrix products through cuBLAS (`cublasGemmStridedBatchedEx`): f32 (TF32 tensor cores
//! only when opted in), f64, and bf16 / f16 with f32 accumulation. Transposed views are passed
//! as transposed operands and broadcast batch dims as stride 0, so `x @ w.T` copies nothing.

use super::{Cuda, CudaStorage};
use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType};
use scorch_ops::cpu::matmul::matmul_shape;
use scorch_ops::kernels::View;
use scorch_ops::{DType, Error, Layout, Result};
use std::sync::atomic::{AtomicBool, Ordering};

static ALLOW_TF32: AtomicBool = AtomicBool::new(false);

/// Lets f32 matrix products use TF32 tensor cores (10-bit mantissa inputs, f32 accumulation),
/// like PyTorch's `allow_tf32`. Off by default; `SCORCH_ALLOW_TF32=1` turns it on at start.
pub fn set_allow_tf32(on: bool) {
    ALLOW_TF32.store(on, Ordering::Relaxed);
}

fn tf32() -> bool {
    static ENV: std::sync::Once = std::sync::Once::new();
    ENV.call_once(|| {
        if std::env::var("SCORCH_ALLOW_TF32").is_ok_and(|v| v == "1") {
            ALLOW_TF32.store(true, Ordering::Relaxed);
        }
    });
    ALLOW_TF32.load(Ordering::Relaxed)
}

/// One row-major operand of a batched product: element `(i, j)` of batch `b` is at
/// `ptr + b*stride + (trans ? j*ld + i : i*ld + j)` elements.
#[derive(Clone, Copy, Debug)]
pub struct Mat {
    pub ptr: u64,
    pub ld: i64,
    pub stride: i64,
    pub trans: bool,
}

impl Mat {
    /// A contiguous row-major `[batch, rows, cols]` buffer.
    pub fn rows(ptr: u64, cols: usize, batch_stride: usize) -> Mat {
        Mat { ptr, ld: cols as i64, stride: batch_stride as i64, trans: false }
    }
    /// The transpose of a contiguous row-major `[batch, cols, rows]` buffer.
    pub fn cols(ptr: u64, rows: usize, batch_stride: usize) -> Mat {
        Mat { ptr, ld: rows as i64, stride: batch_stride as i64, trans: true }
    }
}

/// Row-major `C[b] = alpha · op(A[b]) · op(B[b]) + beta · C[b]` for `b < batch`, with `C`
/// contiguous rows of leading dimension `ldc`. All buffers have dtype `dt`.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    cu: &Cuda,
    dt: DType,
    mnk: (usize, usize, usize),
    a: Mat,
    b: Mat,
    c: u64,
    ldc: usize,
    stride_c: usize,
    batch: usize,
    alpha: f64,
    beta: f64,
) -> Result<()> {
    gemm_ex(cu, dt, false, mnk, a, b, c, ldc, stride_c, batch, alpha, beta)
}

/// cuBLAS type and compute type of `dt` operands.
fn blas_types(dt: DType, op: &'static str) -> Result<(cudaDataType, cublasComputeType_t)> {
    Ok(match dt {
        DType::F32 if tf32() => (cudaDataType::CUDA_R_32F, cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32),
        DType::F32 => (cudaDataType::CUDA_R_32F, cublasComputeType_t::CUBLAS_COMPUTE_32F),
        DType::F64 => (cudaDataType::CUDA_R_64F, cublasComputeType_t::CUBLAS_COMPUTE_64F),
        DType::BF16 => (cudaDataType::CUDA_R_16BF, cublasComputeType_t::CUBLAS_COMPUTE_32F),
        DType::F16 => (cudaDataType::CUDA_R_16F, cublasComputeType_t::CUBLAS_COMPUTE_32F),
        _ => return Err(Error::DType { op, dtype: dt }),
    })
}

/// [`gemm`] and [`gemm_out_f32`]: `C` of dtype `dt`, or f32 when `out_f32`.
#[allow(clippy::too_many_arguments)]
fn gemm_ex(
    cu: &Cuda,
    dt: DType,
    out_f32: bool,
    (m, n, k): (usize, usize, usize),
    a: Mat,
    b: Mat,
    c: u64,
    ldc: usize,
    stride_c: usize,
    batch: usize,
    alpha: f64,
    beta: f64,
) -> Result<()> {
    if m == 0 || n == 0 || batch == 0 {
        return Ok(());
    }
    if out_f32 && dt == DType::F64 {
        return Err(Error::DType { op: "matmul with f32 output", dtype: dt });
    }
    let (ty, compute) = blas_types(dt, if out_f32 { "matmul with f32 output" } else { "matmul" })?;
    let c_ty = if out_f32 { cudaDataType::CUDA_R_32F } else { ty };
    let op = |t: bool| if t { cublasOperation_t::CUBLAS_OP_T } else { cublasOperation_t::CUBLAS_OP_N };
    let blas = cu.dev.blas().map_err(super::err)?;
    let (a32, b32) = (alpha as f32, beta as f32);
    let (pa, pb): (*const std::ffi::c_void, *const std::ffi::c_void) = if dt == DType::F64 {
        (&alpha as *const f64 as *const _, &beta as *const f64 as *const _)
    } else {
        (&a32 as *const f32 as *const _, &b32 as *const f32 as *const _)
    };
    let ld = |x: i64| x.max(1) as i32;
    // Column-major view: Cᵀ = op(B)ᵀ · op(A)ᵀ, so B goes first and m, n swap.
    // SAFETY: pointers address live device buffers large enough for the described matrices
    // (the callers derive them from checked layouts); the scalars outlive the call.
    unsafe {
        cudarc::cublas::result::gemm_strided_batched_ex(
            *blas.handle(),
            op(b.trans),
            op(a.trans),
            n as i32,
            m as i32,
            k as i32,
            pa,
            b.ptr as *const _,
            ty,
            ld(b.ld),
            b.stride,
            a.ptr as *const _,
            ty,
            ld(a.ld),
            a.stride,
            pb,
            c as *mut _,
            c_ty,
            ldc as i32,
            stride_c as i64,
            batch as i32,
            compute,
            cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
        )
    }
    .map_err(|e| {
        let out = if out_f32 { " → f32" } else { "" };
        Error::Msg(format!("cuBLAS gemm ({m}x{k} @ {k}x{n}, batch {batch}, {dt}{out}) failed: {e:?}"))
    })
}

/// The single batch stride of broadcast batch dims, if they have one.
fn batch_stride(l: &Layout, nb: usize) -> Option<i64> {
    let dims: Vec<usize> = (0..nb).filter(|&d| l.shape[d] > 1).collect();
    let Some(&last) = dims.last() else { return Some(0) };
    let s = l.strides[last];
    // Each outer batch dim must step over exactly the inner ones (or all be broadcast).
    let mut expect = s * l.shape[last];
    for &d in dims.iter().rev().skip(1) {
        if l.strides[d] != expect {
            return None;
        }
        expect *= l.shape[d];
    }
    Some(s as i64)
}

/// The operand `[batch.., rows, cols]` as a [`Mat`], copying only when its strides do not fit.
fn operand<'a>(cu: &Cuda, s: &'a CudaStorage, l: &Layout) -> Result<(super::Contig<'a>, Mat)> {
    let r = l.rank();
    let (rows, cols) = (l.shape[r - 2], l.shape[r - 1]);
    let mut st = l.strides.clone();
    if cols == 1 {
        st[r - 1] = 1;
    }
    if rows == 1 {
        st[r - 2] = cols.max(1);
    }
    let nb = r - 2;
    if let Some(bs) = batch_stride(l, nb) {
        if st[r - 1] == 1 && st[r - 2] >= cols.max(1) {
            return Ok((
                super::Contig::Borrowed(s),
                Mat { ptr: s.ptr_at(l.offset), ld: st[r - 2] as i64, stride: bs, trans: false },
            ));
        }
        if st[r - 2] == 1 && st[r - 1] >= rows.max(1) {
            return Ok((
                super::Contig::Borrowed(s),
                Mat { ptr: s.ptr_at(l.offset), ld: st[r - 1] as i64, stride: bs, trans: true },
            ));
        }
    }
    let c = cu.copy_contiguous((s, l))?;
    let ptr = c.ptr();
    Ok((super::Contig::Owned(c), Mat::rows(ptr, cols, rows * cols)))
}

pub fn matmul(cu: &Cuda, (a, la): View<CudaStorage>, (b, lb): View<CudaStorage>) -> Result<(CudaStorage, Vec<usize>)> {
    cu.check("matmul", a)?;
    cu.check("matmul", b)?;
    let shape = matmul_shape(&la.shape, &lb.shape)?;
    if a.dtype() != b.dtype() {
        return Err(Error::DTypeMismatch { op: "matmul", lhs: a.dtype(), rhs: b.dtype() });
    }
    let r = shape.len();
    let (m, n, k) = (shape[r - 2], shape[r - 1], la.shape[la.rank() - 1]);
    let batch: usize = shape[..r - 2].iter().product();
    let full = |l: &Layout| -> Result<Layout> {
        let mut s = shape[..r - 2].to_vec();
        s.extend_from_slice(&l.shape[l.rank() - 2..]);
        l.broadcast_to(&s)
    };
    let (fa, fb) = (full(la)?, full(lb)?);
    let out = if k == 0 { cu.zeros(a.dtype(), batch * m * n)? } else { cu.alloc(a.dtype(), batch * m * n)? };
    if k == 0 || batch * m * n == 0 {
        return Ok((out, shape));
    }
    let (_ka, ma) = operand(cu, a, &fa)?;
    let (_kb, mb) = operand(cu, b, &fb)?;
    gemm(cu, a.dtype(), (m, n, k), ma, mb, out.ptr(), n, m * n, batch, 1.0, 0.0)?;
    Ok((out, shape))
}

/// [`gemm`] with `A` and `B` of dtype `dt` (f32, bf16 or f16) and an f32 `C`: products of
/// 16-bit operands that must not round to 16 bits, such as gradients accumulated over several
/// calls with `beta = 1` (convolution's weight gradient).
#[allow(clippy::too_many_arguments)]
pub fn gemm_out_f32(
    cu: &Cuda,
    dt: DType,
    mnk: (usize, usize, usize),
    a: Mat,
    b: Mat,
    c: u64,
    ldc: usize,
    stride_c: usize,
    batch: usize,
    alpha: f64,
    beta: f64,
) -> Result<()> {
    gemm_ex(cu, dt, true, mnk, a, b, c, ldc, stride_c, batch, alpha, beta)
}
