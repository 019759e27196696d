//! Gradient clipping by global norm.

use crate::error::Result;
use scorch_engine::{no_grad, DType, Tensor};

/// Rescales the gradients of `params` so that their global L2 norm is at most `max_norm`
/// and returns the norm before clipping (PyTorch's `clip_grad_norm_`: the factor is
/// `max_norm / (norm + 1e-6)`, applied only when below 1). Parameters without a
/// gradient are skipped. When the norm is not finite the gradients are left unchanged
/// and the NaN / inf is returned, so the caller can skip the step.
pub fn clip_grad_norm<'a>(params: impl IntoIterator<Item = &'a Tensor>, max_norm: f64) -> Result<f64> {
    let _ng = no_grad();
    let with_grad: Vec<(&Tensor, Tensor)> = params.into_iter().filter_map(|p| p.grad().map(|g| (p, g))).collect();
    let mut sum_sq = 0.0;
    for (_, g) in &with_grad {
        sum_sq += g.cast(DType::F64)?.sqr()?.sum(&[], false)?.item()?;
    }
    let norm = sum_sq.sqrt();
    let coef = max_norm / (norm + 1e-6);
    if norm.is_finite() && coef < 1.0 {
        for (p, g) in &with_grad {
            p.replace_grad(Some(g.mul_scalar(coef)?))?;
        }
    }
    Ok(norm)
}

/// Clamps every gradient element of `params` to `[−clip, clip]` (PyTorch's
/// `clip_grad_value_`; SiDA clips the fake-score network's gradients at 1). Parameters
/// without a gradient are skipped.
pub fn clip_grad_value<'a>(params: impl IntoIterator<Item = &'a Tensor>, clip: f64) -> Result<()> {
    let _ng = no_grad();
    for p in params {
        if let Some(g) = p.grad() {
            p.replace_grad(Some(g.clamp(-clip, clip)?))?;
        }
    }
    Ok(())
}

/// Replaces NaN by 0 and ±inf by ±1e5 in every gradient of `params` (EDM's and SiD's
/// `nan_to_num(nan=0, posinf=1e5, neginf=-1e5)` before each optimizer step).
pub fn grad_nan_to_num<'a>(params: impl IntoIterator<Item = &'a Tensor>) -> Result<()> {
    let _ng = no_grad();
    for p in params {
        if let Some(g) = p.grad() {
            p.replace_grad(Some(g.nan_to_num(0.0, 1e5, -1e5)?))?;
        }
    }
    Ok(())
}
