//! `DhariwalUNet` (spec §2.5): the ADM architecture of Dhariwal & Nichol, as
//! reimplemented in EDM's `training/networks.py`.

use super::block::{BlockConfig, UNetBlock};
use super::{check_common, push, CommonConfig};
use crate::edm::layers::{Conv2d, GroupNorm, InitMode, Linear, PositionalEmbedding, Resample, Scope, WeightInit};
use crate::error::Result;
use crate::params::ParamPath;
use scorch_engine::Tensor;

/// `DhariwalUNet`'s constructor arguments; [`DhariwalUNetConfig::new`] gives the official
/// defaults, which are EDM's ImageNet-64 configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct DhariwalUNetConfig {
    /// Image resolution at input and output (divisible by `2^(levels−1)`).
    pub img_resolution: usize,
    /// Colour channels in.
    pub in_channels: usize,
    /// Colour channels out.
    pub out_channels: usize,
    /// Number of classes (one-hot labels), 0 = unconditional.
    pub label_dim: usize,
    /// Augmentation-label width, 0 = none.
    pub augment_dim: usize,
    /// Base channel count (192).
    pub model_channels: usize,
    /// Per-level channel multipliers (`[1,2,3,4]`).
    pub channel_mult: Vec<usize>,
    /// Embedding width = `model_channels · channel_mult_emb` (4).
    pub channel_mult_emb: usize,
    /// Residual blocks per level (3).
    pub num_blocks: usize,
    /// Resolutions with self-attention (`[32,16,8]`), 64 channels per head.
    pub attn_resolutions: Vec<usize>,
    /// Dropout in the blocks (0.10).
    pub dropout: f64,
    /// Probability of zeroing the class label in training (classifier-free guidance).
    pub label_dropout: f64,
}

impl DhariwalUNetConfig {
    /// The official constructor defaults for an image size and channel counts.
    pub fn new(img_resolution: usize, in_channels: usize, out_channels: usize) -> DhariwalUNetConfig {
        DhariwalUNetConfig {
            img_resolution,
            in_channels,
            out_channels,
            label_dim: 0,
            augment_dim: 0,
            model_channels: 192,
            channel_mult: vec![1, 2, 3, 4],
            channel_mult_emb: 4,
            num_blocks: 3,
            attn_resolutions: vec![32, 16, 8],
            dropout: 0.10,
            label_dropout: 0.0,
        }
    }

    fn common(&self) -> CommonConfig<'_> {
        CommonConfig {
            img_resolution: self.img_resolution,
            in_channels: self.in_channels,
            out_channels: self.out_channels,
            model_channels: self.model_channels,
            channel_mult: &self.channel_mult,
            channel_mult_emb: self.channel_mult_emb,
            attn_resolutions: &self.attn_resolutions,
            dropout: self.dropout,
            label_dropout: self.label_dropout,
        }
    }
}

/// An encoder entry (`self.enc`).
#[derive(Clone, Debug)]
enum EncLayer {
    Conv(Conv2d),
    Block(Box<UNetBlock>),
}

/// ADM U-Net `F(x, c_noise, class_labels, augment_labels)`.
///
/// Mapping network: `e = map_noise(c_noise)` as `[cos | sin]` (not swapped),
/// `+ map_augment(augment_labels)`, `e = map_layer1(silu(map_layer0(e)))`,
/// `+ map_label(one_hot)` (no bias), `emb = silu(e)`. Blocks use adaptive scale/shift,
/// 64 channels per attention head, resample-only skips in up/down blocks, GroupNorm eps
/// 1e-5; every decoder block at an attention resolution attends.
#[derive(Clone, Debug)]
pub struct DhariwalUNet {
    cfg: DhariwalUNetConfig,
    map_noise: PositionalEmbedding,
    map_augment: Option<Linear>,
    map_layer0: Linear,
    map_layer1: Linear,
    map_label: Option<Linear>,
    enc: Vec<(String, EncLayer)>,
    dec: Vec<(String, UNetBlock)>,
    out_norm: GroupNorm,
    out_conv: Conv2d,
    scope: Scope,
}

impl DhariwalUNet {
    /// Builds the network under `p` with EDM's random initialisation.
    pub fn new(p: &ParamPath, cfg: &DhariwalUNetConfig) -> Result<DhariwalUNet> {
        DhariwalUNet::build(&Scope::new(p, false), cfg)
    }

    /// Builds it with every parameter zero (fast: for counting, or before loading weights).
    pub fn zeroed(p: &ParamPath, cfg: &DhariwalUNetConfig) -> Result<DhariwalUNet> {
        DhariwalUNet::build(&Scope::new(p, true), cfg)
    }

    /// Builds it in an existing scope (EDMPrecond's `model`).
    pub fn build(scope: &Scope, cfg: &DhariwalUNetConfig) -> Result<DhariwalUNet> {
        check_common(&cfg.common())?;
        let emb_channels = cfg.model_channels * cfg.channel_mult_emb;
        // kaiming_uniform × √(1/3) for weight and bias: U(±1/√fan_in), PyTorch's default.
        let init = WeightInit::new(InitMode::KaimingUniform).weight((1.0f64 / 3.0).sqrt()).bias((1.0f64 / 3.0).sqrt());
        let init_zero = WeightInit::new(InitMode::KaimingUniform).weight(0.0);
        let block = BlockConfig {
            emb_channels,
            num_heads: None,
            channels_per_head: 64,
            dropout: cfg.dropout,
            skip_scale: 1.0,
            eps: 1e-5,
            resample_filter: vec![1.0, 1.0],
            resample_proj: false,
            adaptive_scale: true,
            init,
            init_zero,
            init_attn: None,
        };

        // Mapping (registration order: map_augment, map_layer0, map_layer1, map_label).
        let map_noise = PositionalEmbedding::new(cfg.model_channels, 10000.0, false, scope.dtype())?;
        let map_augment = (cfg.augment_dim > 0)
            .then(|| Linear::new(&scope.pp("map_augment"), cfg.augment_dim, cfg.model_channels, false, init_zero))
            .transpose()?;
        let map_layer0 = Linear::new(&scope.pp("map_layer0"), cfg.model_channels, emb_channels, true, init)?;
        let map_layer1 = Linear::new(&scope.pp("map_layer1"), emb_channels, emb_channels, true, init)?;
        let label_init = WeightInit::new(InitMode::KaimingNormal).weight((cfg.label_dim as f64).sqrt());
        let map_label = (cfg.label_dim > 0)
            .then(|| Linear::new(&scope.pp("map_label"), cfg.label_dim, emb_channels, false, label_init))
            .transpose()?;

        // Encoder.
        let enc_scope = scope.pp("enc");
        let mut enc: Vec<(String, EncLayer)> = Vec::new();
        let mut cout = cfg.in_channels;
        for (level, &mult) in cfg.channel_mult.iter().enumerate() {
            let res = cfg.img_resolution >> level;
            if level == 0 {
                let cin = cout;
                cout = cfg.model_channels * mult;
                push(&mut enc, &enc_scope, format!("{res}x{res}_conv"), |s| {
                    Ok(EncLayer::Conv(Conv2d::new(s, cin, cout, 3, init)?))
                })?;
            } else {
                let c = cout;
                push(&mut enc, &enc_scope, format!("{res}x{res}_down"), |s| {
                    Ok(EncLayer::Block(Box::new(UNetBlock::new(s, c, c, Resample::Down, false, &block)?)))
                })?;
            }
            for idx in 0..cfg.num_blocks {
                let cin = cout;
                cout = cfg.model_channels * mult;
                let attn = cfg.attn_resolutions.contains(&res);
                push(&mut enc, &enc_scope, format!("{res}x{res}_block{idx}"), |s| {
                    Ok(EncLayer::Block(Box::new(UNetBlock::new(s, cin, cout, Resample::Keep, attn, &block)?)))
                })?;
            }
        }
        let mut skips: Vec<usize> = enc
            .iter()
            .map(|(_, l)| match l {
                EncLayer::Conv(c) => c.out_channels(),
                EncLayer::Block(b) => b.out_channels(),
            })
            .collect();

        // Decoder.
        let dec_scope = scope.pp("dec");
        let mut dec: Vec<(String, UNetBlock)> = Vec::new();
        let levels = cfg.channel_mult.len();
        for (level, &mult) in cfg.channel_mult.iter().enumerate().rev() {
            let res = cfg.img_resolution >> level;
            let c = cout;
            if level == levels - 1 {
                push(&mut dec, &dec_scope, format!("{res}x{res}_in0"), |s| {
                    UNetBlock::new(s, c, c, Resample::Keep, true, &block)
                })?;
                push(&mut dec, &dec_scope, format!("{res}x{res}_in1"), |s| {
                    UNetBlock::new(s, c, c, Resample::Keep, false, &block)
                })?;
            } else {
                push(&mut dec, &dec_scope, format!("{res}x{res}_up"), |s| {
                    UNetBlock::new(s, c, c, Resample::Up, false, &block)
                })?;
            }
            for idx in 0..=cfg.num_blocks {
                let cin = cout + skips.pop().expect("the encoder leaves one skip per decoder block");
                cout = cfg.model_channels * mult;
                let attn = cfg.attn_resolutions.contains(&res);
                push(&mut dec, &dec_scope, format!("{res}x{res}_block{idx}"), |s| {
                    UNetBlock::new(s, cin, cout, Resample::Keep, attn, &block)
                })?;
            }
        }
        let out_norm = GroupNorm::new(&scope.pp("out_norm"), cout, 1e-5)?;
        let out_conv = Conv2d::new(&scope.pp("out_conv"), cout, cfg.out_channels, 3, init_zero)?;

        Ok(DhariwalUNet {
            cfg: cfg.clone(),
            map_noise,
            map_augment,
            map_layer0,
            map_layer1,
            map_label,
            enc,
            dec,
            out_norm,
            out_conv,
            scope: scope.clone(),
        })
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &DhariwalUNetConfig {
        &self.cfg
    }

    /// Every state-dict key of the network, in PyTorch's order.
    pub fn state_dict_keys(&self) -> Vec<String> {
        self.scope.state_dict_keys()
    }

    /// The buffers (`resample_filter`) with their full names.
    pub fn buffers(&self) -> Vec<(String, Tensor)> {
        self.scope.buffers()
    }

    /// `F(x, c_noise, class_labels, augment_labels)`: `x [B, in, H, W]`, `noise_labels [B]`
    /// (or `[1]`, shared), one-hot `class_labels [B or 1, label_dim]` (required exactly
    /// when `label_dim > 0`), `augment_labels [B, augment_dim]` (ignored without
    /// `map_augment`) → `[B, out, H, W]`.
    pub fn forward(
        &self,
        x: &Tensor,
        noise_labels: &Tensor,
        class_labels: Option<&Tensor>,
        augment_labels: Option<&Tensor>,
    ) -> Result<Tensor> {
        let cfg = &self.cfg;
        super::check_input(x, cfg.in_channels, cfg.img_resolution, "DhariwalUNet")?;

        // Mapping.
        let mut emb = self.map_noise.forward(noise_labels)?;
        if let (Some(map_augment), Some(a)) = (&self.map_augment, augment_labels) {
            emb = emb.add(&map_augment.forward(&a.cast(emb.dtype())?)?)?;
        }
        emb = self.map_layer0.forward(&emb)?.silu()?;
        emb = self.map_layer1.forward(&emb)?;
        if let Some(map_label) = &self.map_label {
            let labels = super::class_labels(class_labels, cfg.label_dim, x.shape()[0], emb.dtype(), "DhariwalUNet")?;
            let labels = super::label_dropout(&labels, x.shape()[0], cfg.label_dropout, &self.scope)?;
            emb = emb.add(&map_label.forward(&labels)?)?;
        }
        let emb = emb.silu()?;

        // Encoder.
        let mut skips: Vec<Tensor> = Vec::new();
        let mut x = x.clone();
        for (_, layer) in &self.enc {
            x = match layer {
                EncLayer::Conv(conv) => conv.forward(&x)?,
                EncLayer::Block(block) => block.forward(&x, &emb)?,
            };
            skips.push(x.clone());
        }

        // Decoder.
        for (_, block) in &self.dec {
            if x.shape()[1] != block.in_channels() {
                let skip = skips.pop().expect("the decoder takes one skip per encoder output");
                x = Tensor::cat(&[x, skip], 1)?;
            }
            x = block.forward(&x, &emb)?;
        }
        self.out_conv.forward(&self.out_norm.forward(&x)?.silu()?)
    }
}
