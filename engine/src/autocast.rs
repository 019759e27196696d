//! Mixed precision, PyTorch-autocast style: inside [`autocast`]`(Some(DType::BF16))` the
//! matrix products, convolutions and attention of wider float tensors run in bf16 (their
//! inputs rounded to bf16, f32 accumulation in the kernels) and hand back the caller's dtype.
//! Parameters stay in f32 (the master weights), and the casts are differentiable, so their
//! gradients arrive in f32. Every other op runs in its inputs' dtype as usual.

use crate::tensor::Tensor;
use scorch_ops::DType;
use std::cell::Cell;

thread_local! {
    static AUTOCAST: Cell<Option<DType>> = const { Cell::new(None) };
}

/// The low-precision dtype in effect on this thread, if any.
pub fn autocast_dtype() -> Option<DType> {
    AUTOCAST.with(|a| a.get())
}

/// Restores the previous autocast state when dropped.
#[must_use = "autocast reverts when the guard is dropped"]
pub struct AutocastGuard(Option<DType>);

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        AUTOCAST.with(|a| a.set(self.0));
    }
}

/// Runs matmul / conv2d / attention in `dtype` (bf16 or f16) until the guard drops; `None`
/// turns autocast off. Other dtypes are ignored (autocast stays as it was).
pub fn autocast(dtype: Option<DType>) -> AutocastGuard {
    let prev = autocast_dtype();
    let next = match dtype {
        Some(DType::BF16 | DType::F16) | None => dtype,
        Some(_) => prev,
    };
    AUTOCAST.with(|a| a.set(next));
    AutocastGuard(prev)
}

/// `(caller's dtype, compute dtype)` when autocast applies to an op on `ts`: autocast is on
/// and the first operand is f32 or f64 (every operand must be a float).
pub(crate) fn plan(ts: &[&Tensor]) -> Option<(DType, DType)> {
    let low = autocast_dtype()?;
    let orig = ts.first()?.dtype();
    if !matches!(orig, DType::F32 | DType::F64) || ts.iter().any(|t| !t.dtype().is_float()) {
        return None;
    }
    Some((orig, low))
}
