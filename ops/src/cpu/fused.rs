//! The three fused kernels of the papers:
//! 1. SiD's score-identity generator loss and its fake-score loss (../shared/spec/edm-sid.md §3.3–3.4);
//! 2. the Beta KL and Beta Diffusion's KLUB losses (tarflow-beta.md §B5), evaluated in f64;
//! 3. Patch Diffusion's batched random crops with coordinate channels (lego-patch-tdpm-dgan.md §3.2).
//!
//! Each reads its inputs once per pass; the engine checks each against its composite.

use super::storage::CpuStorage;
use crate::error::shape_err;
use crate::special::{digamma, lgamma, trigamma};
use crate::{Error, Layout, Result};
use rayon::prelude::*;

fn float_f64(op: &'static str, s: &CpuStorage, l: &Layout) -> Result<Vec<f64>> {
    if !s.dtype().is_float() {
        return Err(Error::DType { op, dtype: s.dtype() });
    }
    Ok(s.to_f64_vec(l))
}

fn same_shapes(op: &'static str, ls: &[&Layout]) -> Result<()> {
    same_shapes_any_rank(op, ls)?;
    if ls[0].rank() == 0 {
        return shape_err(op, "operands need a leading batch dim");
    }
    Ok(())
}

fn same_shapes_any_rank(op: &'static str, ls: &[&Layout]) -> Result<()> {
    for l in &ls[1..] {
        if l.shape != ls[0].shape {
            return shape_err(op, format!("operands must share one shape: {:?} vs {:?}", ls[0].shape, l.shape));
        }
    }
    Ok(())
}

/// SiD generator loss per sample, `ℓ_b = w_b Σ_i d_i (e_i − α d_i)` with `d = y_real − y_fake`,
/// `e = y_real − x_g` and the detached normaliser `w_b = 1 / max(mean_i |x_g − y_real|, 1e-5)`.
/// Returns (loss `[B]`, w `[B]`) in the inputs' dtype. A given `weight` replaces the
/// computed normaliser (it is a constant either way).
pub fn sid_generator_loss(
    y_real: (&CpuStorage, &Layout),
    y_fake: (&CpuStorage, &Layout),
    x_g: (&CpuStorage, &Layout),
    alpha: f64,
    weight: Option<&[f64]>,
) -> Result<(CpuStorage, CpuStorage)> {
    same_shapes("sid_generator_loss", &[y_real.1, y_fake.1, x_g.1])?;
    let dt = y_real.0.dtype();
    let (r, f, x) = (
        float_f64("sid_generator_loss", y_real.0, y_real.1)?,
        float_f64("sid_generator_loss", y_fake.0, y_fake.1)?,
        float_f64("sid_generator_loss", x_g.0, x_g.1)?,
    );
    let b = y_real.1.shape[0];
    if weight.is_some_and(|w| w.len() != b) {
        return shape_err("sid_generator_loss", format!("weight needs {b} entries"));
    }
    let per = r.len() / b.max(1);
    let (loss, w): (Vec<f64>, Vec<f64>) = (0..b)
        .into_par_iter()
        .map(|s| {
            let sl = s * per..(s + 1) * per;
            let (r, f, x) = (&r[sl.clone()], &f[sl.clone()], &x[sl]);
            let mae = r.iter().zip(x).map(|(r, x)| (x - r).abs()).sum::<f64>() / per.max(1) as f64;
            let w = weight.map_or(1.0 / mae.max(1e-5), |w| w[s]);
            let l: f64 = (0..per).map(|i| (r[i] - f[i]) * ((r[i] - x[i]) - alpha * (r[i] - f[i]))).sum();
            (l * w, w)
        })
        .unzip();
    Ok((CpuStorage::from_f64_iter(dt, loss.into_iter()), CpuStorage::from_f64_iter(dt, w.into_iter())))
}

/// Backward of [`sid_generator_loss`] for upstream `g [B]` and the saved `w [B]`:
/// `∂/∂y_real = g·w(e − 2αd + d)`, `∂/∂y_fake = −g·w(e − 2αd)`, `∂/∂x_g = −g·w·d`.
pub fn sid_generator_loss_bwd(
    y_real: (&CpuStorage, &Layout),
    y_fake: (&CpuStorage, &Layout),
    x_g: (&CpuStorage, &Layout),
    w: &CpuStorage,
    g: (&CpuStorage, &Layout),
    alpha: f64,
) -> Result<(CpuStorage, CpuStorage, CpuStorage)> {
    same_shapes("sid_generator_loss backward", &[y_real.1, y_fake.1, x_g.1])?;
    let dt = y_real.0.dtype();
    let (r, f, x) = (
        float_f64("sid_generator_loss", y_real.0, y_real.1)?,
        float_f64("sid_generator_loss", y_fake.0, y_fake.1)?,
        float_f64("sid_generator_loss", x_g.0, x_g.1)?,
    );
    let b = y_real.1.shape[0];
    let wv = w.to_f64_vec(&Layout::contiguous(&[w.len()]));
    let gv = float_f64("sid_generator_loss backward", g.0, g.1)?;
    if wv.len() != b || gv.len() != b {
        return shape_err("sid_generator_loss backward", format!("per-sample weights/grads must have {b} entries"));
    }
    let per = r.len() / b.max(1);
    let n = r.len();
    let (mut dr, mut df, mut dx) = (vec![0f64; n], vec![0f64; n], vec![0f64; n]);
    dr.par_chunks_mut(per.max(1))
        .zip(df.par_chunks_mut(per.max(1)).zip(dx.par_chunks_mut(per.max(1))))
        .enumerate()
        .for_each(|(s, (dr, (df, dx)))| {
            let c = gv[s] * wv[s];
            for i in 0..per {
                let k = s * per + i;
                let d = r[k] - f[k];
                let e = r[k] - x[k];
                dr[i] = c * (e - 2.0 * alpha * d + d);
                df[i] = -c * (e - 2.0 * alpha * d);
                dx[i] = -c * d;
            }
        });
    let mk = |v: Vec<f64>| CpuStorage::from_f64_iter(dt, v.into_iter());
    Ok((mk(dr), mk(df), mk(dx)))
}

/// KL(Γ(a1,1) ‖ Γ(a2,1)) = (a1 − a2)ψ(a1) − lnΓ(a1) + lnΓ(a2).
pub fn kl_gamma(a1: f64, a2: f64) -> f64 {
    (a1 - a2) * digamma(a1) - lgamma(a1) + lgamma(a2)
}

/// KL(Beta(a1,b1) ‖ Beta(a2,b2)) via the Gamma identity (§B5.1), in f64.
pub fn kl_beta(a1: f64, b1: f64, a2: f64, b2: f64) -> f64 {
    kl_gamma(a1, a2) + kl_gamma(b1, b2) - kl_gamma(a1 + b1, a2 + b2)
}

/// Gradient of [`kl_beta`] w.r.t. (a1, b1, a2, b2).
pub fn kl_beta_grad(a1: f64, b1: f64, a2: f64, b2: f64) -> [f64; 4] {
    let s1 = a1 + b1;
    let s2 = a2 + b2;
    let t = trigamma(s1);
    [
        (a1 - a2) * trigamma(a1) - (s1 - s2) * t,
        (b1 - b2) * trigamma(b1) - (s1 - s2) * t,
        digamma(a2) - digamma(s2) - digamma(a1) + digamma(s1),
        digamma(b2) - digamma(s2) - digamma(b1) + digamma(s1),
    ]
}

/// Elementwise Beta KL over four same-shape tensors; returns KL and the four gradients'
/// ingredients are recomputed in the backward.
pub fn beta_kl(p: [(&CpuStorage, &Layout); 4]) -> Result<CpuStorage> {
    same_shapes_any_rank("beta_kl", &[p[0].1, p[1].1, p[2].1, p[3].1])?;
    let v: Vec<Vec<f64>> = p.iter().map(|(s, l)| float_f64("beta_kl", s, l)).collect::<Result<_>>()?;
    let out: Vec<f64> = (0..v[0].len()).into_par_iter().map(|i| kl_beta(v[0][i], v[1][i], v[2][i], v[3][i])).collect();
    Ok(CpuStorage::from_f64_iter(p[0].0.dtype(), out.into_iter()))
}

/// Backward of [`beta_kl`]: the four input gradients for upstream `g`.
pub fn beta_kl_bwd(p: [(&CpuStorage, &Layout); 4], g: (&CpuStorage, &Layout)) -> Result<[CpuStorage; 4]> {
    same_shapes_any_rank("beta_kl backward", &[p[0].1, p[1].1, p[2].1, p[3].1, g.1])?;
    let v: Vec<Vec<f64>> = p.iter().map(|(s, l)| float_f64("beta_kl", s, l)).collect::<Result<_>>()?;
    let gv = float_f64("beta_kl backward", g.0, g.1)?;
    let grads: Vec<[f64; 4]> = (0..gv.len())
        .into_par_iter()
        .map(|i| kl_beta_grad(v[0][i], v[1][i], v[2][i], v[3][i]).map(|d| d * gv[i]))
        .collect();
    let dt = p[0].0.dtype();
    Ok([0, 1, 2, 3].map(|k| CpuStorage::from_f64_iter(dt, grads.iter().map(|g| g[k]))))
}

/// Per-sample schedule of the KLUB losses: α_s, α_t (δ = α_s − α_t formed in f64), η and
/// the mixture weights of the conditional and marginal KLUBs.
#[derive(Clone, Debug)]
pub struct KlubParams {
    pub alpha_s: Vec<f64>,
    pub alpha_t: Vec<f64>,
    pub eta: f64,
    pub w_cond: f64,
    pub w_marg: f64,
}

/// Affine Beta parameters (a0 + ca·x, b0 + cb·x) of the conditional and marginal KLUBs.
fn klub_coeffs(alpha_s: f64, alpha_t: f64, eta: f64) -> [(f64, f64, f64, f64); 2] {
    let delta = alpha_s - alpha_t;
    [(0.0, eta * delta, eta, -eta * alpha_s), (0.0, eta * alpha_t, eta, -eta * alpha_t)]
}

/// One pixel's mixed KLUB `w_c·KL(q(·|x̂) ‖ q(·|x))_cond + w_m·(…)_marg` and its gradient
/// w.r.t. x̂ in the well-conditioned Bregman form φ''(x̂)(x̂ − x) (§B5.4).
pub fn klub_pixel(xh: f64, x: f64, alpha_s: f64, alpha_t: f64, eta: f64, w_cond: f64, w_marg: f64) -> (f64, f64) {
    let mut val = 0.0;
    let mut grad = 0.0;
    for ((a0, ca, b0, cb), w) in klub_coeffs(alpha_s, alpha_t, eta).into_iter().zip([w_cond, w_marg]) {
        if w == 0.0 {
            continue;
        }
        let (a1, b1, a2, b2) = (a0 + ca * xh, b0 + cb * xh, a0 + ca * x, b0 + cb * x);
        val += w * kl_beta(a1, b1, a2, b2);
        let phi2 = ca * ca * trigamma(a1) + cb * cb * trigamma(b1) - (ca + cb) * (ca + cb) * trigamma(a1 + b1);
        grad += w * phi2 * (xh - x);
    }
    (val, grad)
}

fn klub_shapes(xh: &Layout, x: &Layout, p: &KlubParams) -> Result<usize> {
    same_shapes("beta_klub", &[xh, x])?;
    let b = xh.shape[0];
    if p.alpha_s.len() != b || p.alpha_t.len() != b {
        return shape_err("beta_klub", format!("α_s / α_t need one entry per sample ({b})"));
    }
    Ok(xh.numel() / b.max(1))
}

/// Mixed KLUB per element (same shape as x̂), values computed in f64.
pub fn beta_klub(xh: (&CpuStorage, &Layout), x: (&CpuStorage, &Layout), p: &KlubParams) -> Result<CpuStorage> {
    let per = klub_shapes(xh.1, x.1, p)?;
    let (a, b) = (float_f64("beta_klub", xh.0, xh.1)?, float_f64("beta_klub", x.0, x.1)?);
    let out: Vec<f64> = (0..a.len())
        .into_par_iter()
        .map(|i| {
            let s = i / per.max(1);
            klub_pixel(a[i], b[i], p.alpha_s[s], p.alpha_t[s], p.eta, p.w_cond, p.w_marg).0
        })
        .collect();
    Ok(CpuStorage::from_f64_iter(xh.0.dtype(), out.into_iter()))
}

/// Gradient of [`beta_klub`] w.r.t. x̂ for upstream `g` (x is data and gets none).
pub fn beta_klub_bwd(
    xh: (&CpuStorage, &Layout),
    x: (&CpuStorage, &Layout),
    p: &KlubParams,
    g: (&CpuStorage, &Layout),
) -> Result<CpuStorage> {
    let per = klub_shapes(xh.1, x.1, p)?;
    let (a, b) = (float_f64("beta_klub", xh.0, xh.1)?, float_f64("beta_klub", x.0, x.1)?);
    let gv = float_f64("beta_klub backward", g.0, g.1)?;
    if gv.len() != a.len() {
        return shape_err("beta_klub backward", "gradient shape differs from the input");
    }
    let out: Vec<f64> = (0..a.len())
        .into_par_iter()
        .map(|i| {
            let s = i / per.max(1);
            gv[i] * klub_pixel(a[i], b[i], p.alpha_s[s], p.alpha_t[s], p.eta, p.w_cond, p.w_marg).1
        })
        .collect();
    Ok(CpuStorage::from_f64_iter(xh.0.dtype(), out.into_iter()))
}

/// Crops `[B, C, H, W]` at per-sample top-left corners to `[B, C+2, ph, pw]`, appending the
/// coordinate channels of Patch Diffusion: channel C = 2(j+c)/(W−1) − 1 (horizontal),
/// channel C+1 = 2(i+r)/(H−1) − 1 (vertical), so the full image spans [−1, 1].
pub fn patch_embed(
    x: (&CpuStorage, &Layout),
    tops: &[usize],
    lefts: &[usize],
    ph: usize,
    pw: usize,
) -> Result<CpuStorage> {
    let s = &x.1.shape;
    if s.len() != 4 || tops.len() != s[0] || lefts.len() != s[0] {
        return shape_err("patch_embed", format!("input {s:?} needs [B,C,H,W] and one corner per sample"));
    }
    let (b, c, h, w) = (s[0], s[1], s[2], s[3]);
    for (&t, &l) in tops.iter().zip(lefts) {
        if t + ph > h || l + pw > w {
            return shape_err("patch_embed", format!("patch {ph}×{pw} at ({t},{l}) leaves the {h}×{w} image"));
        }
    }
    let v = float_f64("patch_embed", x.0, x.1)?;
    let coord = |p: usize, size: usize| {
        if size > 1 {
            2.0 * p as f64 / (size - 1) as f64 - 1.0
        } else {
            0.0
        }
    };
    let plane = ph * pw;
    let mut out = vec![0f64; b * (c + 2) * plane];
    out.par_chunks_mut(((c + 2) * plane).max(1)).enumerate().for_each(|(n, o)| {
        let (t, l) = (tops[n], lefts[n]);
        for ch in 0..c {
            for r in 0..ph {
                let src = &v[((n * c + ch) * h + t + r) * w + l..][..pw];
                o[ch * plane + r * pw..][..pw].copy_from_slice(src);
            }
        }
        for r in 0..ph {
            for col in 0..pw {
                o[c * plane + r * pw + col] = coord(l + col, w);
                o[(c + 1) * plane + r * pw + col] = coord(t + r, h);
            }
        }
    });
    Ok(CpuStorage::from_f64_iter(x.0.dtype(), out.into_iter()))
}

/// Gradient of [`patch_embed`] w.r.t. the image: each crop's first C channels go back to
/// where they were cut from (overlaps are impossible: one crop per sample).
pub fn patch_embed_bwd(
    g: (&CpuStorage, &Layout),
    xshape: &[usize],
    tops: &[usize],
    lefts: &[usize],
) -> Result<CpuStorage> {
    let (b, c, h, w) = (xshape[0], xshape[1], xshape[2], xshape[3]);
    let gs = &g.1.shape;
    if gs.len() != 4 || gs[0] != b || gs[1] != c + 2 {
        return shape_err("patch_embed backward", format!("gradient {gs:?} vs image {xshape:?}"));
    }
    let (ph, pw) = (gs[2], gs[3]);
    let gv = float_f64("patch_embed backward", g.0, g.1)?;
    let plane = ph * pw;
    let mut dx = vec![0f64; b * c * h * w];
    dx.par_chunks_mut((c * h * w).max(1)).enumerate().for_each(|(n, d)| {
        let (t, l) = (tops[n], lefts[n]);
        for ch in 0..c {
            for r in 0..ph {
                let src = &gv[(n * (c + 2) + ch) * plane + r * pw..][..pw];
                d[(ch * h + t + r) * w + l..][..pw].copy_from_slice(src);
            }
        }
    });
    Ok(CpuStorage::from_f64_iter(g.0.dtype(), dx.into_iter()))
}

/// The full-image coordinate grid used at sampling: `[B, 2, H, W]`.
pub fn coord_grid(b: usize, h: usize, w: usize) -> Vec<f64> {
    let coord = |p: usize, size: usize| {
        if size > 1 {
            2.0 * p as f64 / (size - 1) as f64 - 1.0
        } else {
            0.0
        }
    };
    let mut out = Vec::with_capacity(b * 2 * h * w);
    for _ in 0..b {
        for r in 0..h {
            for c in 0..w {
                let _ = r;
                out.push(coord(c, w));
            }
        }
        for r in 0..h {
            for _ in 0..w {
                out.push(coord(r, h));
            }
        }
    }
    out
}

/// SiD's fake-score loss per sample, `L_b = λ_b Σ_i (D_i − y_i)²` (EDM's weighted denoising
/// loss applied to generator samples). Returns `[B]`.
pub fn sid_fake_score_loss(
    denoised: (&CpuStorage, &Layout),
    target: (&CpuStorage, &Layout),
    weight: &[f64],
) -> Result<CpuStorage> {
    same_shapes("sid_fake_score_loss", &[denoised.1, target.1])?;
    let b = denoised.1.shape[0];
    if weight.len() != b {
        return shape_err("sid_fake_score_loss", format!("{} weights for a batch of {b}", weight.len()));
    }
    let (d, y) = (
        float_f64("sid_fake_score_loss", denoised.0, denoised.1)?,
        float_f64("sid_fake_score_loss", target.0, target.1)?,
    );
    let per = d.len() / b.max(1);
    let out: Vec<f64> = (0..b)
        .into_par_iter()
        .map(|s| weight[s] * (s * per..(s + 1) * per).map(|i| (d[i] - y[i]).powi(2)).sum::<f64>())
        .collect();
    Ok(CpuStorage::from_f64_iter(denoised.0.dtype(), out.into_iter()))
}

/// Backward of [`sid_fake_score_loss`]: `∂/∂D = 2λ_b g_b (D − y)`, `∂/∂y = −∂/∂D`.
pub fn sid_fake_score_loss_bwd(
    denoised: (&CpuStorage, &Layout),
    target: (&CpuStorage, &Layout),
    weight: &[f64],
    g: (&CpuStorage, &Layout),
) -> Result<(CpuStorage, CpuStorage)> {
    same_shapes("sid_fake_score_loss backward", &[denoised.1, target.1])?;
    let b = denoised.1.shape[0];
    let gv = float_f64("sid_fake_score_loss backward", g.0, g.1)?;
    if weight.len() != b || gv.len() != b {
        return shape_err("sid_fake_score_loss backward", format!("weights/grads must have {b} entries"));
    }
    let (d, y) = (
        float_f64("sid_fake_score_loss", denoised.0, denoised.1)?,
        float_f64("sid_fake_score_loss", target.0, target.1)?,
    );
    let per = d.len() / b.max(1);
    let gd: Vec<f64> = (0..d.len())
        .into_par_iter()
        .map(|i| 2.0 * weight[i / per.max(1)] * gv[i / per.max(1)] * (d[i] - y[i]))
        .collect();
    let dt = denoised.0.dtype();
    Ok((CpuStorage::from_f64_iter(dt, gd.iter().copied()), CpuStorage::from_f64_iter(dt, gd.iter().map(|v| -v))))
}
