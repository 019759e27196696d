//! `UNetBlock` (spec §2.2): the union of the DDPM++, NCSN++ and ADM residual blocks, with
//! optional up/down-sampling and self-attention.

use crate::edm::layers::{Conv2d, GroupNorm, Linear, Resample, Scope, WeightInit};
use crate::error::{Error, Result};
use crate::nn::{layer_err, Dropout, Module};
use scorch_engine::Tensor;

/// The arguments every block of one network shares (`block_kwargs` in the official code).
#[derive(Clone, Debug, PartialEq)]
pub struct BlockConfig {
    /// Width of the embedding vector `emb`.
    pub emb_channels: usize,
    /// Attention heads; `None` means `out_channels / channels_per_head`.
    pub num_heads: Option<usize>,
    /// Channels per head when `num_heads` is `None`.
    pub channels_per_head: usize,
    /// Dropout before `conv1` (training mode only).
    pub dropout: f64,
    /// Multiplier after each residual sum (√0.5 for DDPM++/NCSN++, 1 for ADM).
    pub skip_scale: f64,
    /// GroupNorm epsilon (1e-6 for DDPM++/NCSN++, 1e-5 for ADM).
    pub eps: f64,
    /// FIR taps of the up/down-sampling.
    pub resample_filter: Vec<f64>,
    /// Whether an up/down block's skip has a 1×1 projection even when widths agree.
    pub resample_proj: bool,
    /// Whether `affine` gives a scale and a shift (ADM) instead of a bias.
    pub adaptive_scale: bool,
    /// Init of `conv0`, `affine` and `skip`.
    pub init: WeightInit,
    /// Init of `conv1` and `proj` (the layers that close a residual branch).
    pub init_zero: WeightInit,
    /// Init of `qkv`; `None` means `init`.
    pub init_attn: Option<WeightInit>,
}

/// A residual block:
/// `h = conv0(silu(norm0(x)))` (resampling inside `conv0`), then the embedding enters
/// through `affine`: `silu(norm1(h + affine(emb)))`, or with `adaptive_scale`
/// `silu(shift + norm1(h)·(scale + 1))`; then `conv1(dropout(h))`, the residual
/// `(h + skip(x)) · skip_scale`, and optionally self-attention
/// `(proj(attn(qkv(norm2(x)))) + x) · skip_scale`.
///
/// Parameters (in state-dict order): `norm0`, `conv0` (+ `resample_filter`), `affine`,
/// `norm1`, `conv1`, `skip` (if the width or resolution changes), `norm2`, `qkv`, `proj`
/// (if attention).
#[derive(Clone, Debug)]
pub struct UNetBlock {
    in_channels: usize,
    out_channels: usize,
    num_heads: usize,
    skip_scale: f64,
    adaptive_scale: bool,
    norm0: GroupNorm,
    conv0: Conv2d,
    affine: Linear,
    norm1: GroupNorm,
    conv1: Conv2d,
    dropout: Dropout,
    skip: Option<Conv2d>,
    attn: Option<Attention>,
    name: String,
}

/// The self-attention part of a block.
#[derive(Clone, Debug)]
struct Attention {
    norm2: GroupNorm,
    qkv: Conv2d,
    proj: Conv2d,
}

impl UNetBlock {
    /// A block from `in_channels` to `out_channels`; `up` / `down` resample by 2.
    pub fn new(
        scope: &Scope,
        in_channels: usize,
        out_channels: usize,
        resample: Resample,
        attention: bool,
        cfg: &BlockConfig,
    ) -> Result<UNetBlock> {
        let num_heads = match (attention, cfg.num_heads) {
            (false, _) => 0,
            (true, Some(h)) => h,
            (true, None) if cfg.channels_per_head > 0 => out_channels / cfg.channels_per_head,
            (true, None) => return Err(Error::Config("channels_per_head must be positive".into())),
        };
        if num_heads > 0 && out_channels % num_heads != 0 {
            return Err(layer_err(
                format!("UNetBlock({in_channels}→{out_channels})"),
                scope.prefix(),
                format!("{out_channels} channels do not split into {num_heads} attention heads"),
            ));
        }
        if !(0.0..=1.0).contains(&cfg.dropout) {
            return Err(Error::Config(format!("dropout {} outside [0, 1]", cfg.dropout)));
        }
        let filter = &cfg.resample_filter;
        let norm0 = GroupNorm::new(&scope.pp("norm0"), in_channels, cfg.eps)?;
        let conv0 = Conv2d::resampling(
            &scope.pp("conv0"),
            in_channels,
            out_channels,
            3,
            true,
            resample,
            filter,
            false,
            cfg.init,
        )?;
        let affine_out = out_channels * if cfg.adaptive_scale { 2 } else { 1 };
        let affine = Linear::new(&scope.pp("affine"), cfg.emb_channels, affine_out, true, cfg.init)?;
        let norm1 = GroupNorm::new(&scope.pp("norm1"), out_channels, cfg.eps)?;
        let conv1 = Conv2d::new(&scope.pp("conv1"), out_channels, out_channels, 3, cfg.init_zero)?;
        let skip = if out_channels != in_channels || resample != Resample::Keep {
            let kernel = if cfg.resample_proj || out_channels != in_channels { 1 } else { 0 };
            let s = &scope.pp("skip");
            Some(Conv2d::resampling(s, in_channels, out_channels, kernel, true, resample, filter, false, cfg.init)?)
        } else {
            None
        };
        let attn = if num_heads > 0 {
            let init_attn = cfg.init_attn.unwrap_or(cfg.init);
            Some(Attention {
                norm2: GroupNorm::new(&scope.pp("norm2"), out_channels, cfg.eps)?,
                qkv: Conv2d::new(&scope.pp("qkv"), out_channels, 3 * out_channels, 1, init_attn)?,
                proj: Conv2d::new(&scope.pp("proj"), out_channels, out_channels, 1, cfg.init_zero)?,
            })
        } else {
            None
        };
        Ok(UNetBlock {
            in_channels,
            out_channels,
            num_heads,
            skip_scale: cfg.skip_scale,
            adaptive_scale: cfg.adaptive_scale,
            norm0,
            conv0,
            affine,
            norm1,
            conv1,
            dropout: Dropout::new(scope.path(), cfg.dropout)?,
            skip,
            attn,
            name: scope.prefix().to_string(),
        })
    }

    /// Input channels (the decoder concatenates a skip when `x` has fewer).
    pub fn in_channels(&self) -> usize {
        self.in_channels
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.out_channels
    }

    /// Attention heads (0 without attention).
    pub fn num_heads(&self) -> usize {
        self.num_heads
    }

    /// `x [B, in, H, W]`, `emb [B or 1, emb_channels]` → `[B, out, H', W']`.
    pub fn forward(&self, x: &Tensor, emb: &Tensor) -> Result<Tensor> {
        if x.rank() != 4 || x.shape()[1] != self.in_channels {
            return Err(layer_err(
                format!("UNetBlock({}→{})", self.in_channels, self.out_channels),
                &self.name,
                format!("input {:?} must be [B, {}, H, W]", x.shape(), self.in_channels),
            ));
        }
        let orig = x;
        let mut h = self.conv0.forward(&self.norm0.forward(x)?.silu()?)?;

        let params = self.affine.forward(emb)?;
        let params = params.reshape(&[params.shape()[0], params.shape()[1], 1, 1])?;
        h = if self.adaptive_scale {
            let (scale, shift) =
                (params.narrow(1, 0, self.out_channels)?, params.narrow(1, self.out_channels, self.out_channels)?);
            shift.add(&self.norm1.forward(&h)?.mul(&scale.add_scalar(1.0)?)?)?.silu()?
        } else {
            self.norm1.forward(&h.add(&params)?)?.silu()?
        };

        h = self.conv1.forward(&self.dropout.forward(&h)?)?;
        h = match &self.skip {
            Some(skip) => h.add(&skip.forward(orig)?)?,
            None => h.add(orig)?,
        };
        h = h.mul_scalar(self.skip_scale)?;

        if let Some(attn) = &self.attn {
            let a = self.attention(attn, &h)?;
            h = attn.proj.forward(&a)?.add(&h)?.mul_scalar(self.skip_scale)?;
        }
        Ok(h)
    }

    /// Multi-head self-attention over the `H·W` positions. `qkv`'s output channels are
    /// laid out as `[heads, C/heads, 3]` — q, k and v interleaved per channel, exactly as
    /// the official `reshape(B·heads, C/heads, 3, H·W)` reads them — so converted
    /// checkpoints load unchanged. Scores are scaled by `1/√(C/heads)`.
    fn attention(&self, attn: &Attention, x: &Tensor) -> Result<Tensor> {
        let [b, c, hh, ww] = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
        let (heads, ch) = (self.num_heads, c / self.num_heads);
        let qkv = attn.qkv.forward(&attn.norm2.forward(x)?)?.reshape(&[b, heads, ch, 3, hh * ww])?;
        // [B, heads, C/heads, HW] → [B, heads, HW, C/heads] for the engine's attention.
        let part = |j: usize| qkv.narrow(3, j, 1)?.squeeze(3)?.transpose(2, 3);
        let (q, k, v) = (part(0)?, part(1)?, part(2)?);
        let a = Tensor::scaled_dot_product_attention(&q, &k, &v, None, false, None)?;
        Ok(a.transpose(2, 3)?.reshape(&[b, c, hh, ww])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edm::layers::InitMode;
    use crate::params::ParamStore;
    use scorch_engine::{no_grad, DType, Generator};

    /// The attention reads `qkv`'s output channel `h·3·Ch + 3·c + j` as head h, channel c
    /// of q (j = 0), k (1) or v (2): checked against loops over that layout.
    #[test]
    fn attention_reads_interleaved_qkv_channels() -> Result<()> {
        let store = ParamStore::new(DType::F64, 0);
        let scope = Scope::new(&store.root(), false);
        let init = WeightInit::new(InitMode::XavierUniform);
        let cfg = BlockConfig {
            emb_channels: 4,
            num_heads: Some(2),
            channels_per_head: 64,
            dropout: 0.0,
            skip_scale: 1.0,
            eps: 1e-6,
            resample_filter: vec![1.0, 1.0],
            resample_proj: true,
            adaptive_scale: false,
            init,
            init_zero: init,
            init_attn: None,
        };
        let (c, hw, heads) = (8, 6, 2);
        let block = UNetBlock::new(&scope, c, c, Resample::Keep, true, &cfg)?;
        let gen = Generator::new(9);
        let bias = store.get("qkv.bias").expect("qkv has a bias");
        {
            let _g = no_grad();
            bias.assign(&Tensor::randn(&[3 * c], DType::F64, &gen)?)?;
        }
        let x = Tensor::randn(&[1, c, 2, 3], DType::F64, &gen)?;
        let attn = block.attn.as_ref().expect("built with attention");
        let got = block.attention(attn, &x)?.to_vec_f64()?;

        let n = attn.norm2.forward(&x)?.to_vec_f64()?;
        let w = store.get("qkv.weight").expect("qkv has a weight").to_vec_f64()?;
        let b = bias.to_vec_f64()?;
        let qkv = |o: usize, p: usize| b[o] + (0..c).map(|i| w[o * c + i] * n[i * hw + p]).sum::<f64>();
        let ch = c / heads;
        let mut want = vec![0.0; c * hw];
        for h in 0..heads {
            let at = |cc: usize, j: usize, p: usize| qkv(h * 3 * ch + 3 * cc + j, p);
            for p in 0..hw {
                let s: Vec<f64> = (0..hw)
                    .map(|p2| (0..ch).map(|cc| at(cc, 0, p) * at(cc, 1, p2)).sum::<f64>() / (ch as f64).sqrt())
                    .collect();
                let m = s.iter().cloned().fold(f64::MIN, f64::max);
                let z: f64 = s.iter().map(|v| (v - m).exp()).sum();
                for cc in 0..ch {
                    want[(h * ch + cc) * hw + p] = (0..hw).map(|p2| (s[p2] - m).exp() / z * at(cc, 2, p2)).sum();
                }
            }
        }
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-10, "{g} vs {w}");
        }
        Ok(())
    }
}
