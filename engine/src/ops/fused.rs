//! The papers' fused kernels as differentiable functions. Each has a composite twin built
//! from engine functions: the tests check they agree, and `create_graph` backward uses it.

use crate::autograd::{composite_backward, is_grad_enabled, record};
use crate::backend::Dispatch;
use crate::error::{msg, Result};
use crate::tensor::Tensor;
use scorch_ops::cpu::fused::{self, KlubParams};
use scorch_ops::DType;
use scorch_ops::Kernels;

fn per_sample(v: &[f64], like: &Tensor) -> Result<Tensor> {
    Tensor::from_f64s(v, &[v.len()], like.dtype())?.to_device(like.device())
}

/// SiD generator loss per sample (edm-sid.md §3.4), fused: returns `[B]`. The normaliser
/// `w = 1/max(mean|x_g − y_real|, 1e-5)` is detached, as in the official code.
pub fn sid_generator_loss(y_real: &Tensor, y_fake: &Tensor, x_g: &Tensor, alpha: f64) -> Result<Tensor> {
    sid_generator_loss_weighted(y_real, y_fake, x_g, alpha, None)
}

/// [`sid_generator_loss`] with an explicit per-sample normaliser `w [B]` (a constant)
/// instead of the computed one.
pub fn sid_generator_loss_weighted(
    y_real: &Tensor,
    y_fake: &Tensor,
    x_g: &Tensor,
    alpha: f64,
    weight: Option<&Tensor>,
) -> Result<Tensor> {
    let wv = weight.map(|w| w.to_vec_f64()).transpose()?;
    let (loss, w) = {
        let (a, b, c) = (y_real.storage(), y_fake.storage(), x_g.storage());
        Dispatch.sid_generator_loss(
            (&*a, y_real.layout()),
            (&*b, y_fake.layout()),
            (&*c, x_g.layout()),
            alpha,
            wv.as_deref(),
        )?
    };
    let wt = weight.map(|w| w.detach());
    let bsz = y_real.shape()[0];
    let out = Tensor::from_storage(loss, &[bsz]);
    let saved = [y_real.clone(), y_fake.clone(), x_g.clone()];
    Ok(record(out, "sid_generator_loss", &[y_real, y_fake, x_g], move |_, g| {
        if is_grad_enabled() {
            return composite_backward(&saved, g, |t| {
                sid_generator_loss_composite_weighted(&t[0], &t[1], &t[2], alpha, wt.as_ref())
            });
        }
        let [r, f, x] = &saved;
        let (dr, df, dx) = {
            let (a, b, c, gs) = (r.storage(), f.storage(), x.storage(), g.storage());
            Dispatch.sid_generator_loss_bwd(
                (&*a, r.layout()),
                (&*b, f.layout()),
                (&*c, x.layout()),
                &w,
                (&*gs, g.layout()),
                alpha,
            )?
        };
        Ok(vec![
            Some(Tensor::from_storage(dr, r.shape())),
            Some(Tensor::from_storage(df, f.shape())),
            Some(Tensor::from_storage(dx, x.shape())),
        ])
    }))
}

/// The composite of [`sid_generator_loss`], line for line with the official expression.
pub fn sid_generator_loss_composite(y_real: &Tensor, y_fake: &Tensor, x_g: &Tensor, alpha: f64) -> Result<Tensor> {
    sid_generator_loss_composite_weighted(y_real, y_fake, x_g, alpha, None)
}

/// Composite of [`sid_generator_loss_weighted`].
pub fn sid_generator_loss_composite_weighted(
    y_real: &Tensor,
    y_fake: &Tensor,
    x_g: &Tensor,
    alpha: f64,
    weight: Option<&Tensor>,
) -> Result<Tensor> {
    let b = y_real.shape()[0];
    let rest: Vec<isize> = (1..y_real.rank() as isize).collect();
    let mut wshape = vec![1; y_real.rank()];
    wshape[0] = b;
    let w = match weight {
        Some(w) => w.detach().reshape(&wshape)?,
        None => {
            let _g = crate::autograd::no_grad();
            x_g.sub(y_real)?.abs()?.mean(&rest, true)?.clamp(1e-5, f64::INFINITY)?.reciprocal()?
        }
    };
    let d = y_real.sub(y_fake)?;
    let e = y_real.sub(x_g)?;
    let l = d.mul(&e.sub(&d.mul_scalar(alpha)?)?)?.mul(&w)?;
    l.reshape(&[b, l.numel() / b.max(1)])?.sum(&[1], false)
}

/// SiD fake-score loss per sample, `λ_b ‖D_b − y_b‖²`, fused: returns `[B]`.
/// `weight` holds λ(σ_b) (treated as a constant).
pub fn sid_fake_score_loss(denoised: &Tensor, target: &Tensor, weight: &[f64]) -> Result<Tensor> {
    let out = {
        let (a, b) = (denoised.storage(), target.storage());
        Dispatch.sid_fake_score_loss((&*a, denoised.layout()), (&*b, target.layout()), weight)?
    };
    let out = Tensor::from_storage(out, &[denoised.shape()[0]]);
    let saved = [denoised.clone(), target.clone()];
    let weight = weight.to_vec();
    Ok(record(out, "sid_fake_score_loss", &[denoised, target], move |_, g| {
        if is_grad_enabled() {
            return composite_backward(&saved, g, |t| sid_fake_score_loss_composite(&t[0], &t[1], &weight));
        }
        let [d, y] = &saved;
        let (gd, gy) = {
            let (a, b, gs) = (d.storage(), y.storage(), g.storage());
            Dispatch.sid_fake_score_loss_bwd((&*a, d.layout()), (&*b, y.layout()), &weight, (&*gs, g.layout()))?
        };
        Ok(vec![Some(Tensor::from_storage(gd, d.shape())), Some(Tensor::from_storage(gy, y.shape()))])
    }))
}

/// Composite of [`sid_fake_score_loss`].
pub fn sid_fake_score_loss_composite(denoised: &Tensor, target: &Tensor, weight: &[f64]) -> Result<Tensor> {
    let b = denoised.shape()[0];
    let sq = denoised.sub(target)?.sqr()?.reshape(&[b, denoised.numel() / b.max(1)])?.sum(&[1], false)?;
    sq.mul(&per_sample(weight, denoised)?)
}

/// Elementwise KL(Beta(a1,b1) ‖ Beta(a2,b2)), fused (values and gradients in f64).
pub fn beta_kl(a1: &Tensor, b1: &Tensor, a2: &Tensor, b2: &Tensor) -> Result<Tensor> {
    let shape = a1.shape().to_vec();
    let out = {
        let (s0, s1, s2, s3) = (a1.storage(), b1.storage(), a2.storage(), b2.storage());
        Dispatch.beta_kl([(&*s0, a1.layout()), (&*s1, b1.layout()), (&*s2, a2.layout()), (&*s3, b2.layout())])?
    };
    let out = Tensor::from_storage(out, &shape);
    let saved = [a1.clone(), b1.clone(), a2.clone(), b2.clone()];
    Ok(record(out, "beta_kl", &[a1, b1, a2, b2], move |_, g| {
        if is_grad_enabled() {
            return composite_backward(&saved, g, |t| beta_kl_composite(&t[0], &t[1], &t[2], &t[3]));
        }
        let st: Vec<_> = saved.iter().map(|t| t.storage()).collect();
        let gs = g.storage();
        let grads = Dispatch.beta_kl_bwd(
            [
                (&*st[0], saved[0].layout()),
                (&*st[1], saved[1].layout()),
                (&*st[2], saved[2].layout()),
                (&*st[3], saved[3].layout()),
            ],
            (&*gs, g.layout()),
        )?;
        Ok(grads.into_iter().map(|s| Some(Tensor::from_storage(s, &shape))).collect())
    }))
}

/// KL(Γ(a1,1) ‖ Γ(a2,1)) from engine functions.
fn kl_gamma_composite(a1: &Tensor, a2: &Tensor) -> Result<Tensor> {
    a1.sub(a2)?.mul(&a1.digamma()?)?.sub(&a1.lgamma()?)?.add(&a2.lgamma()?)
}

/// Composite of [`beta_kl`] via the Gamma-KL identity (tarflow-beta.md §B5.1).
pub fn beta_kl_composite(a1: &Tensor, b1: &Tensor, a2: &Tensor, b2: &Tensor) -> Result<Tensor> {
    kl_gamma_composite(a1, a2)?.add(&kl_gamma_composite(b1, b2)?)?.sub(&kl_gamma_composite(&a1.add(b1)?, &a2.add(b2)?)?)
}

/// Beta Diffusion's mixed KLUB per element, `w_c·KLUB_cond + w_m·KLUB_marg` (§B5.2–B5.3),
/// values in f64 and the x̂-gradient in the Bregman form φ''(x̂)(x̂ − x). `x` is data.
pub fn beta_klub(x_hat: &Tensor, x: &Tensor, p: &KlubParams) -> Result<Tensor> {
    let out = {
        let (a, b) = (x_hat.storage(), x.storage());
        Dispatch.beta_klub((&*a, x_hat.layout()), (&*b, x.layout()), p)?
    };
    let out = Tensor::from_storage(out, x_hat.shape());
    let (xh, xd, p) = (x_hat.clone(), x.detach(), p.clone());
    Ok(record(out, "beta_klub", &[x_hat], move |_, g| {
        if is_grad_enabled() {
            let xd2 = xd.clone();
            let p2 = p.clone();
            return composite_backward(std::slice::from_ref(&xh), g, move |t| beta_klub_composite(&t[0], &xd2, &p2));
        }
        let d = {
            let (a, b, gs) = (xh.storage(), xd.storage(), g.storage());
            Dispatch.beta_klub_bwd((&*a, xh.layout()), (&*b, xd.layout()), &p, (&*gs, g.layout()))?
        };
        Ok(vec![Some(Tensor::from_storage(d, xh.shape()))])
    }))
}

/// Composite of [`beta_klub`] through [`beta_kl_composite`] on the affine Beta parameters.
pub fn beta_klub_composite(x_hat: &Tensor, x: &Tensor, p: &KlubParams) -> Result<Tensor> {
    let b = x_hat.shape()[0];
    if p.alpha_s.len() != b || p.alpha_t.len() != b {
        return msg(format!("beta_klub: α_s / α_t need {b} entries"));
    }
    let mut bshape = vec![1; x_hat.rank()];
    bshape[0] = b;
    let col = |v: Vec<f64>| Tensor::from_f64s(&v, &bshape, x_hat.dtype())?.to_device(x_hat.device());
    let eta = p.eta;
    let delta: Vec<f64> = p.alpha_s.iter().zip(&p.alpha_t).map(|(s, t)| eta * (s - t)).collect();
    let cs = col(p.alpha_s.iter().map(|s| -eta * s).collect())?;
    let ct = col(p.alpha_t.iter().map(|t| eta * t).collect())?;
    let cd = col(delta)?;
    let klub = |ca: &Tensor, cb: &Tensor| -> Result<Tensor> {
        let a1 = x_hat.mul(ca)?;
        let b1 = x_hat.mul(cb)?.add_scalar(eta)?;
        let a2 = x.mul(ca)?;
        let b2 = x.mul(cb)?.add_scalar(eta)?;
        beta_kl_composite(&a1, &b1, &a2, &b2)
    };
    let cond = klub(&cd, &cs)?.mul_scalar(p.w_cond)?;
    let marg = klub(&ct, &ct.neg()?)?.mul_scalar(p.w_marg)?;
    cond.add(&marg)
}

/// Patch Diffusion's crops with coordinate channels (fused): `[B,C,H,W] → [B,C+2,ph,pw]`
/// at per-sample top-left corners.
pub fn patch_embed(x: &Tensor, tops: &[usize], lefts: &[usize], ph: usize, pw: usize) -> Result<Tensor> {
    let out = {
        let s = x.storage();
        Dispatch.patch_embed((&*s, x.layout()), tops, lefts, ph, pw)?
    };
    let out = Tensor::from_storage(out, &[x.shape()[0], x.shape()[1] + 2, ph, pw]);
    let (xshape, tops, lefts) = (x.shape().to_vec(), tops.to_vec(), lefts.to_vec());
    Ok(record(out, "patch_embed", &[x], move |_, g| Ok(vec![Some(patch_embed_bwd(g, &xshape, &tops, &lefts)?)])))
}

fn patch_embed_bwd(g: &Tensor, xshape: &[usize], tops: &[usize], lefts: &[usize]) -> Result<Tensor> {
    let out = {
        let s = g.storage();
        Dispatch.patch_embed_bwd((&*s, g.layout()), xshape, tops, lefts)?
    };
    let out = Tensor::from_storage(out, xshape);
    let (c, ph, pw) = (xshape[1], g.shape()[2], g.shape()[3]);
    let (tops, lefts) = (tops.to_vec(), lefts.to_vec());
    Ok(record(out, "patch_embed_bwd", &[g], move |_, gg| {
        let crop = patch_embed(gg, &tops, &lefts, ph, pw)?;
        let zeros = Tensor::zeros_on(&[crop.shape()[0], 2, ph, pw], crop.dtype(), crop.device())?;
        Ok(vec![Some(Tensor::cat(&[crop.narrow(1, 0, c)?, zeros], 1)?)])
    }))
}

/// Composite of [`patch_embed`]: slices, concatenated with the coordinate grid.
pub fn patch_embed_composite(x: &Tensor, tops: &[usize], lefts: &[usize], ph: usize, pw: usize) -> Result<Tensor> {
    let (h, w) = (x.shape()[2], x.shape()[3]);
    let mut rows = Vec::new();
    for (n, (&t, &l)) in tops.iter().zip(lefts).enumerate() {
        let crop = x.narrow(0, n, 1)?.narrow(2, t, ph)?.narrow(3, l, pw)?;
        let grid = coord_grid(1, h, w, x.dtype())?.to_device(x.device())?.narrow(2, t, ph)?.narrow(3, l, pw)?;
        rows.push(Tensor::cat(&[crop, grid], 1)?);
    }
    Tensor::cat(&rows, 0)
}

/// The full-image coordinate channels `[B, 2, H, W]` (x then y, each spanning [−1, 1]).
pub fn coord_grid(b: usize, h: usize, w: usize, dtype: DType) -> Result<Tensor> {
    Tensor::from_f64s(&fused::coord_grid(b, h, w), &[b, 2, h, w], dtype)
}
