//! Fused group / layer / RMS norm. The forward and first backward are single fused
//! kernels; a differentiable backward (`create_graph`) goes through the composite.

use crate::autograd::{composite_backward, is_grad_enabled, record};
use crate::backend::Dispatch;
use crate::error::{msg, Result};
use crate::tensor::Tensor;
use scorch_ops::cpu::norm::NormKind;
use scorch_ops::Kernels;

impl Tensor {
    /// Group norm over `[N, C, ...]` with optional per-channel affine.
    pub fn group_norm(&self, groups: usize, w: Option<&Tensor>, b: Option<&Tensor>, eps: f64) -> Result<Tensor> {
        fused_norm(self, NormKind::Group(groups), w, b, eps)
    }
    /// Layer norm over the last dim with optional affine.
    pub fn layer_norm(&self, w: Option<&Tensor>, b: Option<&Tensor>, eps: f64) -> Result<Tensor> {
        fused_norm(self, NormKind::Layer, w, b, eps)
    }
    /// RMS norm over the last dim with optional scale.
    pub fn rms_norm(&self, w: Option<&Tensor>, eps: f64) -> Result<Tensor> {
        fused_norm(self, NormKind::Rms, w, None, eps)
    }
}

/// The same normalisation composed from engine functions (reference and double backward).
pub fn norm_composite(x: &Tensor, kind: NormKind, w: Option<&Tensor>, b: Option<&Tensor>, eps: f64) -> Result<Tensor> {
    let shape = x.shape().to_vec();
    let (y, cshape) = match kind {
        NormKind::Group(g) => {
            let n = shape[0];
            let xr = x.reshape(&[n, g, x.numel() / (n * g).max(1)])?;
            let mu = xr.mean(&[-1], true)?;
            let d = xr.sub(&mu)?;
            let var = d.sqr()?.mean(&[-1], true)?;
            let y = d.mul(&var.add_scalar(eps)?.rsqrt()?)?.reshape(&shape)?;
            let mut cs = vec![1; shape.len()];
            cs[1] = shape[1];
            (y, cs)
        }
        NormKind::Layer | NormKind::Rms => {
            let y = if kind == NormKind::Layer {
                let d = x.sub(&x.mean(&[-1], true)?)?;
                d.mul(&d.sqr()?.mean(&[-1], true)?.add_scalar(eps)?.rsqrt()?)?
            } else {
                x.mul(&x.sqr()?.mean(&[-1], true)?.add_scalar(eps)?.rsqrt()?)?
            };
            (y, vec![*shape.last().unwrap_or(&1)])
        }
    };
    let y = match w {
        Some(w) => y.mul(&w.reshape(&cshape)?)?,
        None => y,
    };
    match b {
        Some(b) => y.add(&b.reshape(&cshape)?),
        None => Ok(y),
    }
}

fn fused_norm(x: &Tensor, kind: NormKind, w: Option<&Tensor>, b: Option<&Tensor>, eps: f64) -> Result<Tensor> {
    if !x.dtype().is_float() {
        return msg(format!("normalisation of a {} tensor", x.dtype()));
    }
    let (y, mean, rstd) = {
        let xs = x.storage();
        let ws = w.map(|t| t.storage());
        let bs = b.map(|t| t.storage());
        let wv = w.zip(ws.as_ref()).map(|(t, s)| (&**s, t.layout()));
        let bv = b.zip(bs.as_ref()).map(|(t, s)| (&**s, t.layout()));
        Dispatch.norm_fwd(kind, (&*xs, x.layout()), wv, bv, eps)?
    };
    let out = Tensor::from_storage(y, x.shape());
    let mut inputs: Vec<Tensor> = vec![x.clone()];
    inputs.extend(w.cloned());
    inputs.extend(b.cloned());
    let (has_w, has_b) = (w.is_some(), b.is_some());
    let saved = inputs.clone();
    let refs: Vec<&Tensor> = inputs.iter().collect();
    Ok(record(out, "norm", &refs, move |_, g| {
        let w = if has_w { Some(&saved[1]) } else { None };
        let b = if has_b { saved.last() } else { None };
        if is_grad_enabled() {
            return composite_backward(&saved, g, |t| {
                let w = if has_w { Some(&t[1]) } else { None };
                let b = if has_b { t.last() } else { None };
                norm_composite(&t[0], kind, w, b, eps)
            });
        }
        let x = &saved[0];
        let (dx, dw, db) = {
            let (gs, xs) = (g.storage(), x.storage());
            let ws = w.map(|t| t.storage());
            let wv = w.zip(ws.as_ref()).map(|(t, s)| (&**s, t.layout()));
            Dispatch.norm_bwd(kind, (&*gs, g.layout()), (&*xs, x.layout()), &mean, &rstd, wv)?
        };
        let c = [dw.len()];
        let mut r = vec![Some(Tensor::from_storage(dx, x.shape()))];
        if let Some(w) = w {
            r.push(Some(Tensor::from_storage(dw, &c).cast(w.dtype())?));
        }
        if let Some(b) = b {
            r.push(Some(Tensor::from_storage(db, &c).cast(b.dtype())?));
        }
        Ok(r)
    }))
}
