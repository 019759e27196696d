//! Reductions, softmax and cumsum (`cuda/kernels/reduce.cu`). The reduced axis (or axes) is
//! moved last and made contiguous, then one block reduces each row with warp shuffles; a
//! reduction over leading axes of a contiguous tensor reads coalesced columns instead.

use super::{cfg_rows, launch, sfx, Cuda, CudaStorage};
use crate::device::CudaDevice;
use scorch_ops::cpu::reduce::{check_axes, ReduceOp};
use scorch_ops::kernels::View;
use scorch_ops::{DType, Error, Layout, Result};

/// `l` permuted so that `last` axes come last (in order), with the permutation used.
fn move_last(l: &Layout, last: &[usize]) -> Result<(Layout, Vec<usize>)> {
    let mut perm: Vec<usize> = (0..l.rank()).filter(|d| !last.contains(d)).collect();
    perm.extend_from_slice(last);
    Ok((l.permute(&perm)?, perm))
}

pub fn reduce(cu: &Cuda, op: ReduceOp, (s, l): View<CudaStorage>, axes: &[usize]) -> Result<CudaStorage> {
    cu.check("reduce", s)?;
    let axes = check_axes(axes, l.rank())?;
    let red: usize = axes.iter().map(|&a| l.shape[a]).product();
    let kept: usize = (0..l.rank()).filter(|d| !axes.contains(d)).map(|d| l.shape[d]).product();
    let arg = matches!(op, ReduceOp::ArgMax | ReduceOp::ArgMin);
    if arg && axes.len() != 1 {
        return Err(Error::Shape { op: "argmax/argmin", detail: format!("needs exactly one axis, got {axes:?}") });
    }
    if red == 0 && op != ReduceOp::Sum {
        return Err(Error::Shape {
            op: "max/min",
            detail: format!("reduction over an empty axis of shape {:?}", l.shape),
        });
    }
    let sx = sfx("reduce", s.dtype())?;
    if kept == 0 {
        return cu.alloc(if arg { DType::I64 } else { s.dtype() }, 0);
    }
    let code: i32 = match op {
        ReduceOp::Sum => 0,
        ReduceOp::Max | ReduceOp::ArgMax => 1,
        ReduceOp::Min => 2,
        ReduceOp::ArgMin => 1,
    };
    if red == 0 {
        // An empty sum is 0.
        return cu.zeros(s.dtype(), kept);
    }
    // Leading axes of a contiguous tensor with enough kept columns: column sweep, no
    // transpose. (Few columns go through the row path: for one column that is no copy.)
    let leading = axes.iter().enumerate().all(|(i, &a)| i == a);
    if !arg && leading && l.is_contiguous() && kept >= 64 {
        return reduce_cols(cu, s.ptr_at(l.offset), s.dtype(), red, kept, code);
    }
    let (pl, _) = move_last(l, &axes)?;
    let x = cu.contig((s, &pl))?;
    if !arg {
        return reduce_rows(cu, x.ptr(), s.dtype(), kept, red, code);
    }
    let out = cu.alloc(DType::I64, kept)?;
    let (xp, yp, rows, len) = (x.ptr(), out.ptr(), kept as i64, red as i64);
    let c: i32 = if op == ReduceOp::ArgMax { 0 } else { 1 };
    launch!(cu, "reduce.cu", format!("arg_rows_{sx}"), CudaDevice::cfg_1d(kept); &xp, &yp, &rows, &len, &c)?;
    Ok(out)
}

/// Blocks in flight that keep every SM busy (132 SMs on an H100 / H200, a few blocks each).
const TARGET_BLOCKS: usize = 1024;

/// The f32 (or f64) partial-sum dtype of `dt`.
fn partial_dtype(dt: DType) -> DType {
    if dt == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

/// The second pass's f32 / f64 result in the caller's dtype.
fn finish(cu: &Cuda, tmp: CudaStorage, dt: DType) -> Result<CudaStorage> {
    if tmp.dtype() == dt {
        Ok(tmp)
    } else {
        super::elementwise::cast(cu, (&tmp, &Layout::contiguous(&[tmp.len()])), dt)
    }
}

/// Reduces each of `rows` contiguous rows of `len` elements at `xp` (one result each): one block per
/// row when there are many rows, else chunked partials and a second pass.
fn reduce_rows(cu: &Cuda, xp: u64, dt: DType, rows: usize, len: usize, code: i32) -> Result<CudaStorage> {
    let sx = sfx("reduce", dt)?;
    if rows >= TARGET_BLOCKS / 4 || len < 8192 {
        let out = cu.alloc(dt, rows)?;
        let (yp, r, l) = (out.ptr(), rows as i64, len as i64);
        launch!(cu, "reduce.cu", format!("reduce_rows_{sx}"), cfg_rows(rows, 256); &xp, &yp, &r, &l, &code)?;
        return Ok(out);
    }
    let nc = len.div_ceil(2048).min(TARGET_BLOCKS.div_ceil(rows)).max(2);
    let pdt = partial_dtype(dt);
    let part = cu.alloc(pdt, rows * nc)?;
    let (pp, r, l, n) = (part.ptr(), rows as i64, len as i64, nc as i64);
    // f32 rows of whole float4s at 16-byte alignment take the vectorised kernel.
    let v4 = dt == DType::F32 && len.is_multiple_of(4) && xp.is_multiple_of(16);
    let name = if v4 { "reduce_partial_rows_f32v4".to_string() } else { format!("reduce_partial_rows_{sx}") };
    launch!(cu, "reduce.cu", name, cfg_rows(rows * nc, 256); &xp, &pp, &r, &l, &n, &code)?;
    let tmp = cu.alloc(pdt, rows)?;
    let ps = sfx("reduce", pdt)?;
    let tp = tmp.ptr();
    launch!(cu, "reduce.cu", format!("reduce_rows_{ps}"), cfg_rows(rows, 256); &pp, &tp, &r, &n, &code)?;
    finish(cu, tmp, dt)
}

/// Reduces the leading `rows` of a contiguous `[rows, cols]` view at `xp` to `[cols]`.
fn reduce_cols(cu: &Cuda, xp: u64, dt: DType, rows: usize, cols: usize, code: i32) -> Result<CudaStorage> {
    let sx = sfx("reduce", dt)?;
    let tiles = cols.div_ceil(256);
    if tiles >= TARGET_BLOCKS / 4 || rows < 64 {
        let out = cu.alloc(dt, cols)?;
        let (yp, r, c) = (out.ptr(), rows as i64, cols as i64);
        launch!(cu, "reduce.cu", format!("reduce_cols_{sx}"), CudaDevice::cfg_1d(cols); &xp, &yp, &r, &c, &code)?;
        return Ok(out);
    }
    let nc = rows.div_ceil(16).min(TARGET_BLOCKS.div_ceil(tiles)).max(2);
    let pdt = partial_dtype(dt);
    let part = cu.alloc(pdt, nc * cols)?;
    let (pp, r, c, n) = (part.ptr(), rows as i64, cols as i64, nc as i64);
    launch!(cu, "reduce.cu", format!("reduce_partial_cols_{sx}"), cfg_rows(tiles * nc, 256); &xp, &pp, &r, &c, &n, &code)?;
    let tmp = cu.alloc(pdt, cols)?;
    let ps = sfx("reduce", pdt)?;
    let tp = tmp.ptr();
    launch!(cu, "reduce.cu", format!("reduce_cols_{ps}"), CudaDevice::cfg_1d(cols); &pp, &tp, &n, &c, &code)?;
    finish(cu, tmp, dt)
}

/// Runs a row kernel along `axis`: moves the axis last, runs `row_kernel` over contiguous
/// rows, and returns the result in the original (contiguous) order.
fn along_axis(
    cu: &Cuda,
    (s, l): View<CudaStorage>,
    axis: usize,
    run: impl FnOnce(u64, u64, i64, i64) -> Result<()>,
) -> Result<CudaStorage> {
    if axis >= l.rank() {
        return Err(Error::Axis { axis: axis as isize, rank: l.rank() });
    }
    let n = l.numel();
    let len = l.shape[axis];
    let (pl, perm) = move_last(l, &[axis])?;
    let x = cu.contig((s, &pl))?;
    let y = cu.alloc(s.dtype(), n)?;
    if n == 0 {
        return Ok(y);
    }
    run(x.ptr(), y.ptr(), (n / len) as i64, len as i64)?;
    if axis + 1 == l.rank() {
        return Ok(y);
    }
    // y is contiguous in the permuted order: view it in the original order and copy.
    let mut inv = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inv[p] = i;
    }
    let yl = Layout::contiguous(&pl.shape).permute(&inv)?;
    cu.copy_contiguous((&y, &yl))
}

pub fn softmax(cu: &Cuda, x: View<CudaStorage>, axis: usize, log: bool) -> Result<CudaStorage> {
    cu.check("softmax", x.0)?;
    let sx = sfx("softmax", x.0.dtype())?;
    let lg = log as i32;
    along_axis(cu, x, axis, |xp, yp, rows, len| {
        // Rows that fit 16 values per thread stay in registers (one read of x); f32 rows of
        // whole float4s at 16-byte alignment move as float4s.
        let name = if len > 16 * 256 {
            format!("softmax_rows_{sx}")
        } else if sx == "f32" && len % 4 == 0 && xp.is_multiple_of(16) && yp.is_multiple_of(16) {
            "softmax_cached_f32v4".to_string()
        } else {
            format!("softmax_cached_{sx}")
        };
        launch!(cu, "reduce.cu", name, cfg_rows(rows as usize, 256); &xp, &yp, &rows, &len, &lg)
    })
}

pub fn cumsum(cu: &Cuda, x: View<CudaStorage>, axis: usize) -> Result<CudaStorage> {
    cu.check("cumsum", x.0)?;
    let sx = sfx("cumsum", x.0.dtype())?;
    along_axis(
        cu,
        x,
        axis,
        |xp, yp, rows, len| launch!(cu, "reduce.cu", format!("cumsum_rows_{sx}"), CudaDevice::cfg_1d(rows as usize); &xp, &yp, &rows, &len),
    )
}

/// Sum of every element of a float view as f64 on the host (tests and diagnostics).
pub fn sum_all_f64(cu: &Cuda, x: View<CudaStorage>) -> Result<f64> {
    let axes: Vec<usize> = (0..x.1.rank()).collect();
    let r = reduce(cu, ReduceOp::Sum, x, &axes)?;
    Ok(r.to_cpu()?.get_f64(0))
}
