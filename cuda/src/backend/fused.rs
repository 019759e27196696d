//! The fused paper kernels: SiD's score-identity losses (`sid_loss.cu`), the Beta KL and
//! KLUB (`beta.cu`) and Patch Diffusion's coordinate crops (`patch.cu`). Shapes are checked
//! here exactly as on the CPU; per-sample scalars travel as f64.

use super::{cfg_rows, launch, sfx, Cuda, CudaStorage};
use crate::device::CudaDevice;
use scorch_ops::cpu::fused::KlubParams;
use scorch_ops::kernels::View;
use scorch_ops::{DType, Error, Layout, Result};

fn same_shapes(op: &'static str, ls: &[&Layout], batch: bool) -> Result<()> {
    for l in &ls[1..] {
        if l.shape != ls[0].shape {
            return Err(Error::Shape {
                op,
                detail: format!("operands must share one shape: {:?} vs {:?}", ls[0].shape, l.shape),
            });
        }
    }
    if batch && ls[0].rank() == 0 {
        return Err(Error::Shape { op, detail: "operands need a leading batch dim".into() });
    }
    Ok(())
}

/// A contiguous f64 copy of a view (upstream gradients of per-sample losses).
fn as_f64(cu: &Cuda, v: View<CudaStorage>) -> Result<CudaStorage> {
    super::elementwise::cast(cu, v, DType::F64)
}

fn vec_layout(n: usize) -> Layout {
    Layout::contiguous(&[n])
}

/// Kernel suffix for the SiD kernels (f32, f64, bf16).
fn sid_sfx(op: &'static str, dt: DType) -> Result<&'static str> {
    match dt {
        DType::F16 => Err(Error::DType { op, dtype: dt }),
        _ => sfx(op, dt),
    }
}

pub fn sid_generator_loss(
    cu: &Cuda,
    y_real: View<CudaStorage>,
    y_fake: View<CudaStorage>,
    x_g: View<CudaStorage>,
    alpha: f64,
    weight: Option<&[f64]>,
) -> Result<(CudaStorage, CudaStorage)> {
    const OP: &str = "sid_generator_loss";
    same_shapes(OP, &[y_real.1, y_fake.1, x_g.1], true)?;
    let dt = y_real.0.dtype();
    let sx = sid_sfx(OP, dt)?;
    for s in [y_real.0, y_fake.0, x_g.0] {
        if s.dtype() != dt {
            return Err(Error::DTypeMismatch { op: OP, lhs: dt, rhs: s.dtype() });
        }
    }
    let b = y_real.1.shape[0];
    if weight.is_some_and(|w| w.len() != b) {
        return Err(Error::Shape { op: OP, detail: format!("weight needs {b} entries") });
    }
    let per = y_real.1.numel() / b.max(1);
    let (r, f, x) = (cu.contig(y_real)?, cu.contig(y_fake)?, cu.contig(x_g)?);
    let wbuf = weight.map(|w| cu.upload_f64(w)).transpose()?;
    let (loss, w) = (cu.alloc(DType::F64, b)?, cu.alloc(DType::F64, b)?);
    if b > 0 {
        let (rp, fp, xp, wp) = (r.ptr(), f.ptr(), x.ptr(), wbuf.as_ref().map_or(0u64, |w| w.ptr()));
        let (lp, op, bi, pi) = (loss.ptr(), w.ptr(), b as i64, per as i64);
        launch!(cu, "sid_loss.cu", format!("sid_gen_fwd_{sx}"), cfg_rows(b, 256); &rp, &fp, &xp, &wp, &lp, &op, &bi, &pi, &alpha)?;
    }
    let l = vec_layout(b);
    Ok((super::elementwise::cast(cu, (&loss, &l), dt)?, super::elementwise::cast(cu, (&w, &l), dt)?))
}

pub fn sid_generator_loss_bwd(
    cu: &Cuda,
    y_real: View<CudaStorage>,
    y_fake: View<CudaStorage>,
    x_g: View<CudaStorage>,
    w: &CudaStorage,
    g: View<CudaStorage>,
    alpha: f64,
) -> Result<(CudaStorage, CudaStorage, CudaStorage)> {
    const OP: &str = "sid_generator_loss backward";
    same_shapes(OP, &[y_real.1, y_fake.1, x_g.1], true)?;
    let dt = y_real.0.dtype();
    let sx = sid_sfx(OP, dt)?;
    let b = y_real.1.shape[0];
    if g.1.numel() != b || w.len() != b {
        return Err(Error::Shape { op: OP, detail: format!("w and the upstream gradient need {b} entries") });
    }
    let n = y_real.1.numel();
    let per = n / b.max(1);
    let (r, f, x) = (cu.contig(y_real)?, cu.contig(y_fake)?, cu.contig(x_g)?);
    let (w64, g64) = (as_f64(cu, (w, &vec_layout(b)))?, as_f64(cu, g)?);
    let (dr, df, dx) = (cu.alloc(dt, n)?, cu.alloc(dt, n)?, cu.alloc(dt, n)?);
    if n > 0 {
        let (rp, fp, xp, wp, gp) = (r.ptr(), f.ptr(), x.ptr(), w64.ptr(), g64.ptr());
        let (drp, dfp, dxp, ni, pi) = (dr.ptr(), df.ptr(), dx.ptr(), n as i64, per as i64);
        launch!(cu, "sid_loss.cu", format!("sid_gen_bwd_{sx}"), CudaDevice::cfg_1d(n);
            &rp, &fp, &xp, &wp, &gp, &drp, &dfp, &dxp, &ni, &pi, &alpha)?;
    }
    Ok((dr, df, dx))
}

pub fn sid_fake_score_loss(
    cu: &Cuda,
    d: View<CudaStorage>,
    y: View<CudaStorage>,
    weight: &[f64],
) -> Result<CudaStorage> {
    const OP: &str = "sid_fake_score_loss";
    same_shapes(OP, &[d.1, y.1], true)?;
    let dt = d.0.dtype();
    let sx = sid_sfx(OP, dt)?;
    let b = d.1.shape[0];
    if weight.len() != b {
        return Err(Error::Shape { op: OP, detail: format!("{} weights for a batch of {b}", weight.len()) });
    }
    let per = d.1.numel() / b.max(1);
    let (dc, yc, lam) = (cu.contig(d)?, cu.contig(y)?, cu.upload_f64(weight)?);
    let loss = cu.alloc(DType::F64, b)?;
    if b > 0 {
        let (dp, yp, lp, op, bi, pi) = (dc.ptr(), yc.ptr(), lam.ptr(), loss.ptr(), b as i64, per as i64);
        launch!(cu, "sid_loss.cu", format!("sid_fake_fwd_{sx}"), cfg_rows(b, 256); &dp, &yp, &lp, &op, &bi, &pi)?;
    }
    super::elementwise::cast(cu, (&loss, &vec_layout(b)), dt)
}

pub fn sid_fake_score_loss_bwd(
    cu: &Cuda,
    d: View<CudaStorage>,
    y: View<CudaStorage>,
    weight: &[f64],
    g: View<CudaStorage>,
) -> Result<(CudaStorage, CudaStorage)> {
    const OP: &str = "sid_fake_score_loss backward";
    same_shapes(OP, &[d.1, y.1], true)?;
    let dt = d.0.dtype();
    let sx = sid_sfx(OP, dt)?;
    let b = d.1.shape[0];
    if weight.len() != b || g.1.numel() != b {
        return Err(Error::Shape { op: OP, detail: format!("weights/grads must have {b} entries") });
    }
    let n = d.1.numel();
    let per = n / b.max(1);
    let (dc, yc, lam, g64) = (cu.contig(d)?, cu.contig(y)?, cu.upload_f64(weight)?, as_f64(cu, g)?);
    let (gd, gy) = (cu.alloc(dt, n)?, cu.alloc(dt, n)?);
    if n > 0 {
        let (dp, yp, lp, gp, gdp, gyp, ni, pi) =
            (dc.ptr(), yc.ptr(), lam.ptr(), g64.ptr(), gd.ptr(), gy.ptr(), n as i64, per as i64);
        launch!(cu, "sid_loss.cu", format!("sid_fake_bwd_{sx}"), CudaDevice::cfg_1d(n); &dp, &yp, &lp, &gp, &gdp, &gyp, &ni, &pi)?;
    }
    Ok((gd, gy))
}

/// f32 / f64 only: the Beta kernels evaluate in double and write the input dtype.
fn beta_sfx(op: &'static str, dt: DType) -> Result<&'static str> {
    match dt {
        DType::F32 => Ok("f32"),
        DType::F64 => Ok("f64"),
        _ => Err(Error::DType { op, dtype: dt }),
    }
}

pub fn beta_kl(cu: &Cuda, p: [View<CudaStorage>; 4]) -> Result<CudaStorage> {
    const OP: &str = "beta_kl";
    same_shapes(OP, &[p[0].1, p[1].1, p[2].1, p[3].1], false)?;
    let dt = p[0].0.dtype();
    let sx = beta_sfx(OP, dt)?;
    let c: Vec<_> = p.iter().map(|&v| cu.contig(v)).collect::<Result<_>>()?;
    let n = p[0].1.numel();
    let y = cu.alloc(dt, n)?;
    if n > 0 {
        let (a1, b1, a2, b2, yp, ni) = (c[0].ptr(), c[1].ptr(), c[2].ptr(), c[3].ptr(), y.ptr(), n as i64);
        if dt == DType::F32 {
            // f32 where its error bound allows (ops::beta_f32), the rest in double by a
            // second pass over the appended indices; one thread per 32 elements suffices
            // there (a few percent of the elements on ordinary inputs).
            let (count, list) = (cu.zeros(DType::I64, 1)?, cu.alloc(DType::I64, n)?);
            let (cp, lp) = (count.ptr(), list.ptr());
            launch!(cu, "beta.cu", "beta_kl_f32", CudaDevice::cfg_1d(n); &a1, &b1, &a2, &b2, &yp, &ni, &cp, &lp)?;
            launch!(cu, "beta.cu", "beta_kl_f32_fallback", CudaDevice::cfg_1d(n.div_ceil(32));
                &a1, &b1, &a2, &b2, &yp, &cp, &lp)?;
        } else {
            launch!(cu, "beta.cu", format!("beta_kl_{sx}"), CudaDevice::cfg_1d(n); &a1, &b1, &a2, &b2, &yp, &ni)?;
        }
    }
    Ok(y)
}

pub fn beta_kl_bwd(cu: &Cuda, p: [View<CudaStorage>; 4], g: View<CudaStorage>) -> Result<[CudaStorage; 4]> {
    const OP: &str = "beta_kl backward";
    same_shapes(OP, &[p[0].1, p[1].1, p[2].1, p[3].1, g.1], false)?;
    let dt = p[0].0.dtype();
    let sx = beta_sfx(OP, dt)?;
    let c: Vec<_> = p.iter().map(|&v| cu.contig(v)).collect::<Result<_>>()?;
    let gc = cu.contig(g)?;
    let n = p[0].1.numel();
    let out = [cu.alloc(dt, n)?, cu.alloc(dt, n)?, cu.alloc(dt, n)?, cu.alloc(dt, n)?];
    if n > 0 {
        let (a1, b1, a2, b2, gp) = (c[0].ptr(), c[1].ptr(), c[2].ptr(), c[3].ptr(), gc.ptr());
        let (o0, o1, o2, o3, ni) = (out[0].ptr(), out[1].ptr(), out[2].ptr(), out[3].ptr(), n as i64);
        launch!(cu, "beta.cu", format!("beta_kl_bwd_{sx}"), CudaDevice::cfg_1d(n);
            &a1, &b1, &a2, &b2, &gp, &o0, &o1, &o2, &o3, &ni)?;
    }
    Ok(out)
}

fn klub_per(xh: &Layout, x: &Layout, p: &KlubParams) -> Result<usize> {
    same_shapes("beta_klub", &[xh, x], true)?;
    let b = xh.shape[0];
    if p.alpha_s.len() != b || p.alpha_t.len() != b {
        return Err(Error::Shape { op: "beta_klub", detail: format!("α_s / α_t need one entry per sample ({b})") });
    }
    Ok(xh.numel() / b.max(1))
}

pub fn beta_klub(cu: &Cuda, xh: View<CudaStorage>, x: View<CudaStorage>, p: &KlubParams) -> Result<CudaStorage> {
    let per = klub_per(xh.1, x.1, p)?;
    let dt = xh.0.dtype();
    let sx = beta_sfx("beta_klub", dt)?;
    let (a, b) = (cu.contig(xh)?, cu.contig(x)?);
    let (as_, at) = (cu.upload_f64(&p.alpha_s)?, cu.upload_f64(&p.alpha_t)?);
    let n = xh.1.numel();
    let y = cu.alloc(dt, n)?;
    if n > 0 {
        let (ap, bp, sp, tp, yp, ni, pi) = (a.ptr(), b.ptr(), as_.ptr(), at.ptr(), y.ptr(), n as i64, per as i64);
        launch!(cu, "beta.cu", format!("beta_klub_{sx}"), CudaDevice::cfg_1d(n);
            &ap, &bp, &sp, &tp, &yp, &ni, &pi, &p.eta, &p.w_cond, &p.w_marg)?;
    }
    Ok(y)
}

pub fn beta_klub_bwd(
    cu: &Cuda,
    xh: View<CudaStorage>,
    x: View<CudaStorage>,
    p: &KlubParams,
    g: View<CudaStorage>,
) -> Result<CudaStorage> {
    let per = klub_per(xh.1, x.1, p)?;
    if g.1.numel() != xh.1.numel() {
        return Err(Error::Shape { op: "beta_klub backward", detail: "gradient shape differs from the input".into() });
    }
    let dt = xh.0.dtype();
    let sx = beta_sfx("beta_klub", dt)?;
    let (a, b, gc) = (cu.contig(xh)?, cu.contig(x)?, cu.contig(g)?);
    let (as_, at) = (cu.upload_f64(&p.alpha_s)?, cu.upload_f64(&p.alpha_t)?);
    let n = xh.1.numel();
    let y = cu.alloc(dt, n)?;
    if n > 0 {
        let (ap, bp, sp, tp, gp, yp) = (a.ptr(), b.ptr(), as_.ptr(), at.ptr(), gc.ptr(), y.ptr());
        let (ni, pi) = (n as i64, per as i64);
        launch!(cu, "beta.cu", format!("beta_klub_bwd_{sx}"), CudaDevice::cfg_1d(n);
            &ap, &bp, &sp, &tp, &gp, &yp, &ni, &pi, &p.eta, &p.w_cond, &p.w_marg)?;
    }
    Ok(y)
}

fn corners(cu: &Cuda, tops: &[usize], lefts: &[usize]) -> Result<(CudaStorage, CudaStorage)> {
    let t: Vec<i64> = tops.iter().map(|&v| v as i64).collect();
    let l: Vec<i64> = lefts.iter().map(|&v| v as i64).collect();
    Ok((cu.upload_i64(&t)?, cu.upload_i64(&l)?))
}

pub fn patch_embed(
    cu: &Cuda,
    x: View<CudaStorage>,
    tops: &[usize],
    lefts: &[usize],
    ph: usize,
    pw: usize,
) -> Result<CudaStorage> {
    let s = &x.1.shape;
    if s.len() != 4 || tops.len() != s[0] || lefts.len() != s[0] {
        return Err(Error::Shape {
            op: "patch_embed",
            detail: format!("input {s:?} needs [B,C,H,W] and one corner per sample"),
        });
    }
    let (b, c, h, w) = (s[0], s[1], s[2], s[3]);
    for (&t, &l) in tops.iter().zip(lefts) {
        if t + ph > h || l + pw > w {
            return Err(Error::Shape {
                op: "patch_embed",
                detail: format!("patch {ph}×{pw} at ({t},{l}) leaves the {h}×{w} image"),
            });
        }
    }
    let dt = x.0.dtype();
    let sx = sid_sfx("patch_embed", dt)?;
    let xc = cu.contig(x)?;
    let (tp, lp) = corners(cu, tops, lefts)?;
    let n = b * (c + 2) * ph * pw;
    let y = cu.alloc(dt, n)?;
    if n > 0 {
        let (xp, tpp, lpp, yp) = (xc.ptr(), tp.ptr(), lp.ptr(), y.ptr());
        let dims = [b as i64, c as i64, h as i64, w as i64, ph as i64, pw as i64];
        launch!(cu, "patch.cu", format!("patch_embed_{sx}"), CudaDevice::cfg_1d(n);
            &xp, &tpp, &lpp, &yp, &dims[0], &dims[1], &dims[2], &dims[3], &dims[4], &dims[5])?;
    }
    Ok(y)
}

pub fn patch_embed_bwd(
    cu: &Cuda,
    g: View<CudaStorage>,
    xshape: &[usize],
    tops: &[usize],
    lefts: &[usize],
) -> Result<CudaStorage> {
    if xshape.len() != 4 || tops.len() != xshape[0] || lefts.len() != xshape[0] {
        return Err(Error::Shape { op: "patch_embed backward", detail: format!("image shape {xshape:?} and corners") });
    }
    let (b, c, h, w) = (xshape[0], xshape[1], xshape[2], xshape[3]);
    let gs = &g.1.shape;
    if gs.len() != 4 || gs[0] != b || gs[1] != c + 2 {
        return Err(Error::Shape {
            op: "patch_embed backward",
            detail: format!("gradient {gs:?} vs image {xshape:?}"),
        });
    }
    let (ph, pw) = (gs[2], gs[3]);
    let dt = g.0.dtype();
    let sx = sid_sfx("patch_embed backward", dt)?;
    let gc = cu.contig(g)?;
    let (tp, lp) = corners(cu, tops, lefts)?;
    let dx = cu.zeros(dt, b * c * h * w)?;
    if b * c * ph * pw > 0 {
        let (gp, tpp, lpp, dp) = (gc.ptr(), tp.ptr(), lp.ptr(), dx.ptr());
        let dims = [b as i64, c as i64, h as i64, w as i64, ph as i64, pw as i64];
        launch!(cu, "patch.cu", format!("patch_embed_bwd_{sx}"), CudaDevice::cfg_1d(b * c * ph * pw);
            &gp, &tpp, &lpp, &dp, &dims[0], &dims[1], &dims[2], &dims[3], &dims[4], &dims[5])?;
    }
    Ok(dx)
}
