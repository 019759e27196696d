//! Fused scaled dot-product attention (flash-style on the CPU); the composite
//! matmul-softmax-matmul is its reference and its double backward.

use crate::autograd::{composite_backward, is_grad_enabled, record};
use crate::backend::Dispatch;
use crate::error::Result;
use crate::tensor::{same_device, Tensor};
use scorch_ops::{DType, Kernels};

impl Tensor {
    /// `softmax(q kᵀ · scale + mask) v` for `q [B,H,Sq,D]`, `k [B,H,Sk,D]`, `v [B,H,Sk,Dv]`.
    /// `mask` is additive and broadcast to `[B,H,Sq,Sk]` (not differentiated); `causal` masks
    /// key j > query i; `scale` defaults to 1/√D.
    pub fn scaled_dot_product_attention(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        causal: bool,
        scale: Option<f64>,
    ) -> Result<Tensor> {
        same_device("attention", &[q, k, v])?;
        if let Some((orig, low)) = crate::autocast::plan(&[q, k, v]) {
            let mask = mask.map(|m| if m.dtype().is_float() { m.cast(low) } else { Ok(m.clone()) }).transpose()?;
            let (q, k, v) = (q.cast(low)?, k.cast(low)?, v.cast(low)?);
            return Tensor::scaled_dot_product_attention(&q, &k, &v, mask.as_ref(), causal, scale)?.cast(orig);
        }
        let (o, lse) = {
            let (qs, ks, vs) = (q.storage(), k.storage(), v.storage());
            let ms = mask.map(|m| m.storage());
            let mv = mask.zip(ms.as_ref()).map(|(t, s)| (&**s, t.layout()));
            let (o, lse, _) = Dispatch.attention_fwd(
                (&*qs, q.layout()),
                (&*ks, k.layout()),
                (&*vs, v.layout()),
                mv,
                scale,
                causal,
            )?;
            (o, lse)
        };
        let mut oshape = q.shape().to_vec();
        oshape[3] = v.shape()[3];
        let out = Tensor::from_storage(o, &oshape);
        let lse = Tensor::from_storage(lse, &q.shape()[..3]);
        let saved = [q.clone(), k.clone(), v.clone()];
        let mask = mask.map(|m| m.detach());
        Ok(record(out, "attention", &[q, k, v], move |ctx, g| {
            if is_grad_enabled() {
                return composite_backward(&saved, g, |t| {
                    attention_composite(&t[0], &t[1], &t[2], mask.as_ref(), causal, scale)
                });
            }
            let out = ctx.out()?;
            let [q, k, v] = &saved;
            let (dq, dk, dv) = {
                let (qs, ks, vs, os, ls, gs) =
                    (q.storage(), k.storage(), v.storage(), out.storage(), lse.storage(), g.storage());
                let ms = mask.as_ref().map(|m| m.storage());
                let mv = mask.as_ref().zip(ms.as_ref()).map(|(t, s)| (&**s, t.layout()));
                Dispatch.attention_bwd(
                    (&*qs, q.layout()),
                    (&*ks, k.layout()),
                    (&*vs, v.layout()),
                    mv,
                    (&*os, out.layout()),
                    (&*ls, lse.layout()),
                    (&*gs, g.layout()),
                    scale,
                    causal,
                )?
            };
            Ok(vec![
                Some(Tensor::from_storage(dq, q.shape())),
                Some(Tensor::from_storage(dk, k.shape())),
                Some(Tensor::from_storage(dv, v.shape())),
            ])
        }))
    }
}

/// The unfused reference: matmul, softmax, matmul.
pub fn attention_composite(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    causal: bool,
    scale: Option<f64>,
) -> Result<Tensor> {
    let d = q.shape()[3];
    let scale = scale.unwrap_or(1.0 / (d.max(1) as f64).sqrt());
    let mut s = q.matmul(&k.t()?)?.mul_scalar(scale)?;
    if let Some(m) = mask {
        s = s.add(m)?;
    }
    if causal {
        let (sq, sk) = (q.shape()[2], k.shape()[2]);
        let mut cm = vec![0f64; sq * sk];
        for i in 0..sq {
            for j in i + 1..sk {
                cm[i * sk + j] = f64::NEG_INFINITY;
            }
        }
        s = s.add(
            &Tensor::from_f64s(&cm, &[sq, sk], if q.dtype() == DType::F64 { DType::F64 } else { q.dtype() })?
                .to_device(q.device())?,
        )?;
    }
    s.softmax(-1)?.matmul(v)
}
