//! `SongUNet` (spec §2.4): the DDPM++ and NCSN++ architectures of Song et al., as
//! reimplemented in EDM's `training/networks.py`.

use super::block::{BlockConfig, UNetBlock};
use super::{check_common, push, CommonConfig};
use crate::edm::layers::{
    Conv2d, FourierEmbedding, GroupNorm, InitMode, Linear, PositionalEmbedding, Resample, Scope, WeightInit,
};
use crate::error::{Error, Result};
use crate::params::ParamPath;
use scorch_engine::Tensor;

/// The noise-level embedding `map_noise`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmbeddingType {
    /// Sinusoidal in `c_noise` (DDPM++).
    Positional,
    /// Random Fourier features with a `freqs` buffer (NCSN++).
    Fourier,
}

/// How the encoder sees the input image besides the main path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncoderType {
    /// Main path only (DDPM++).
    Standard,
    /// A down-sampled copy of the image, projected by 1×1 convs and added at each level.
    Skip,
    /// A strided 3×3 conv path averaged into each level, `(x + aux) / √2` (NCSN++).
    Residual,
}

/// How the decoder produces the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecoderType {
    /// One output head at full resolution (DDPM++ and NCSN++).
    Standard,
    /// An output head at every level, up-sampled and summed.
    Skip,
}

/// `SongUNet`'s constructor arguments. [`SongUNetConfig::new`] gives the official
/// defaults; [`SongUNetConfig::ddpmpp`] and [`SongUNetConfig::ncsnpp`] apply EDM's
/// `train.py` overrides (`--arch ddpmpp` / `--arch ncsnpp`).
#[derive(Clone, Debug, PartialEq)]
pub struct SongUNetConfig {
    /// Image resolution at input and output (divisible by `2^(levels−1)`).
    pub img_resolution: usize,
    /// Colour channels in.
    pub in_channels: usize,
    /// Colour channels out.
    pub out_channels: usize,
    /// Number of classes (one-hot labels), 0 = unconditional.
    pub label_dim: usize,
    /// Augmentation-label width (9 with EDM's augment pipe), 0 = none.
    pub augment_dim: usize,
    /// Base channel count (128).
    pub model_channels: usize,
    /// Per-level channel multipliers (`[1,2,2,2]`; `[2,2,2]` for CIFAR-10).
    pub channel_mult: Vec<usize>,
    /// Embedding width = `model_channels · channel_mult_emb` (4).
    pub channel_mult_emb: usize,
    /// Residual blocks per level (4).
    pub num_blocks: usize,
    /// Resolutions with self-attention (`[16]`).
    pub attn_resolutions: Vec<usize>,
    /// Dropout in the blocks (0.10; EDM's CIFAR-10 teachers 0.13).
    pub dropout: f64,
    /// Probability of zeroing the class label in training (classifier-free guidance).
    pub label_dropout: f64,
    /// `map_noise`: positional (DDPM++) or Fourier (NCSN++).
    pub embedding_type: EmbeddingType,
    /// Noise-embedding width = `model_channels · channel_mult_noise` (1 DDPM++, 2 NCSN++).
    pub channel_mult_noise: usize,
    /// Encoder variant.
    pub encoder_type: EncoderType,
    /// Decoder variant.
    pub decoder_type: DecoderType,
    /// FIR taps of every resampling (`[1,1]` DDPM++, `[1,3,3,1]` NCSN++).
    pub resample_filter: Vec<f64>,
}

impl SongUNetConfig {
    /// The official constructor defaults for an image size and channel counts.
    pub fn new(img_resolution: usize, in_channels: usize, out_channels: usize) -> SongUNetConfig {
        SongUNetConfig {
            img_resolution,
            in_channels,
            out_channels,
            label_dim: 0,
            augment_dim: 0,
            model_channels: 128,
            channel_mult: vec![1, 2, 2, 2],
            channel_mult_emb: 4,
            num_blocks: 4,
            attn_resolutions: vec![16],
            dropout: 0.10,
            label_dropout: 0.0,
            embedding_type: EmbeddingType::Positional,
            channel_mult_noise: 1,
            encoder_type: EncoderType::Standard,
            decoder_type: DecoderType::Standard,
            resample_filter: vec![1.0, 1.0],
        }
    }

    /// DDPM++ (`--arch ddpmpp`): positional embedding, standard encoder and decoder,
    /// filter `[1,1]`, `channel_mult [2,2,2]` (CIFAR-10; FFHQ/AFHQv2 use `[1,2,2,2]`).
    pub fn ddpmpp(img_resolution: usize, channels: usize) -> SongUNetConfig {
        SongUNetConfig { channel_mult: vec![2, 2, 2], ..SongUNetConfig::new(img_resolution, channels, channels) }
    }

    /// NCSN++ (`--arch ncsnpp`): Fourier embedding of width 2·128, residual encoder,
    /// standard decoder, filter `[1,3,3,1]`, `channel_mult [2,2,2]`.
    pub fn ncsnpp(img_resolution: usize, channels: usize) -> SongUNetConfig {
        SongUNetConfig {
            embedding_type: EmbeddingType::Fourier,
            channel_mult_noise: 2,
            encoder_type: EncoderType::Residual,
            resample_filter: vec![1.0, 3.0, 3.0, 1.0],
            ..SongUNetConfig::ddpmpp(img_resolution, channels)
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

/// An encoder entry (`self.enc`, a ModuleDict whose keys are the state-dict names).
#[derive(Clone, Debug)]
enum EncLayer {
    Conv(Conv2d),
    Block(Box<UNetBlock>),
    AuxDown(Conv2d),
    AuxSkip(Conv2d),
    AuxResidual(Conv2d),
}

/// A decoder entry (`self.dec`).
#[derive(Clone, Debug)]
enum DecLayer {
    Block(Box<UNetBlock>),
    AuxUp(Conv2d),
    AuxNorm(GroupNorm),
    AuxConv(Conv2d),
}

/// The mapping network's noise embedding.
#[derive(Clone, Debug)]
enum NoiseEmbedding {
    Positional(PositionalEmbedding),
    Fourier(FourierEmbedding),
}

/// DDPM++ / NCSN++ U-Net `F(x, c_noise, class_labels, augment_labels)`.
///
/// Mapping network: `e = map_noise(c_noise)` with halves swapped to `[sin | cos]`,
/// `+ map_label(one_hot · √label_dim)`, `+ map_augment(augment_labels)`, then
/// `emb = silu(map_layer1(silu(map_layer0(e))))`. Encoder and decoder are lists of named
/// layers (`enc.32x32_conv`, `enc.16x16_down`, `dec.8x8_in0`, `dec.32x32_aux_conv`, …)
/// whose names are the official state-dict keys.
#[derive(Clone, Debug)]
pub struct SongUNet {
    cfg: SongUNetConfig,
    map_noise: NoiseEmbedding,
    map_label: Option<Linear>,
    map_augment: Option<Linear>,
    map_layer0: Linear,
    map_layer1: Linear,
    enc: Vec<(String, EncLayer)>,
    dec: Vec<(String, DecLayer)>,
    scope: Scope,
}

impl SongUNet {
    /// Builds the network under `p` with EDM's random initialisation.
    pub fn new(p: &ParamPath, cfg: &SongUNetConfig) -> Result<SongUNet> {
        SongUNet::build(&Scope::new(p, false), cfg)
    }

    /// Builds it with every parameter zero (fast: for counting, or before loading weights).
    pub fn zeroed(p: &ParamPath, cfg: &SongUNetConfig) -> Result<SongUNet> {
        SongUNet::build(&Scope::new(p, true), cfg)
    }

    /// Builds it in an existing scope (EDMPrecond's `model`).
    pub fn build(scope: &Scope, cfg: &SongUNetConfig) -> Result<SongUNet> {
        check_common(&cfg.common())?;
        if cfg.channel_mult_noise == 0 {
            return Err(Error::Config("SongUNet: channel_mult_noise must be positive".into()));
        }
        let emb_channels = cfg.model_channels * cfg.channel_mult_emb;
        let noise_channels = cfg.model_channels * cfg.channel_mult_noise;
        let init = WeightInit::new(InitMode::XavierUniform);
        let init_zero = init.weight(1e-5);
        let init_attn = init.weight(0.2f64.sqrt());
        let block = BlockConfig {
            emb_channels,
            num_heads: Some(1),
            channels_per_head: 64,
            dropout: cfg.dropout,
            skip_scale: 0.5f64.sqrt(),
            eps: 1e-6,
            resample_filter: cfg.resample_filter.clone(),
            resample_proj: true,
            adaptive_scale: false,
            init,
            init_zero,
            init_attn: Some(init_attn),
        };
        let filter = &cfg.resample_filter;

        // Mapping.
        let map_noise = match cfg.embedding_type {
            EmbeddingType::Positional => {
                NoiseEmbedding::Positional(PositionalEmbedding::new(noise_channels, 10000.0, true, scope.dtype())?)
            }
            EmbeddingType::Fourier => {
                NoiseEmbedding::Fourier(FourierEmbedding::new(&scope.pp("map_noise"), noise_channels, 16.0)?)
            }
        };
        let map_label = (cfg.label_dim > 0)
            .then(|| Linear::new(&scope.pp("map_label"), cfg.label_dim, noise_channels, true, init))
            .transpose()?;
        let map_augment = (cfg.augment_dim > 0)
            .then(|| Linear::new(&scope.pp("map_augment"), cfg.augment_dim, noise_channels, false, init))
            .transpose()?;
        let map_layer0 = Linear::new(&scope.pp("map_layer0"), noise_channels, emb_channels, true, init)?;
        let map_layer1 = Linear::new(&scope.pp("map_layer1"), emb_channels, emb_channels, true, init)?;

        // Encoder.
        let enc_scope = scope.pp("enc");
        let mut enc: Vec<(String, EncLayer)> = Vec::new();
        let mut cout = cfg.in_channels;
        let mut caux = cfg.in_channels;
        for (level, &mult) in cfg.channel_mult.iter().enumerate() {
            let res = cfg.img_resolution >> level;
            if level == 0 {
                let cin = cout;
                cout = cfg.model_channels;
                push(&mut enc, &enc_scope, format!("{res}x{res}_conv"), |s| {
                    Ok(EncLayer::Conv(Conv2d::new(s, cin, cout, 3, init)?))
                })?;
            } else {
                let c = cout;
                push(&mut enc, &enc_scope, format!("{res}x{res}_down"), |s| {
                    Ok(EncLayer::Block(Box::new(UNetBlock::new(s, c, c, Resample::Down, false, &block)?)))
                })?;
                match cfg.encoder_type {
                    EncoderType::Standard => {}
                    EncoderType::Skip => {
                        push(&mut enc, &enc_scope, format!("{res}x{res}_aux_down"), |s| {
                            let down = Conv2d::resampling(s, caux, caux, 0, true, Resample::Down, filter, false, init)?;
                            Ok(EncLayer::AuxDown(down))
                        })?;
                        push(&mut enc, &enc_scope, format!("{res}x{res}_aux_skip"), |s| {
                            Ok(EncLayer::AuxSkip(Conv2d::new(s, caux, c, 1, init)?))
                        })?;
                    }
                    EncoderType::Residual => {
                        push(&mut enc, &enc_scope, format!("{res}x{res}_aux_residual"), |s| {
                            let conv = Conv2d::resampling(s, caux, c, 3, true, Resample::Down, filter, true, init)?;
                            Ok(EncLayer::AuxResidual(conv))
                        })?;
                        caux = c;
                    }
                }
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
            .filter_map(|(_, l)| match l {
                EncLayer::Conv(c) => Some(c.out_channels()),
                EncLayer::Block(b) => Some(b.out_channels()),
                _ => None,
            })
            .collect();

        // Decoder.
        let dec_scope = scope.pp("dec");
        let mut dec: Vec<(String, DecLayer)> = Vec::new();
        let levels = cfg.channel_mult.len();
        for (level, &mult) in cfg.channel_mult.iter().enumerate().rev() {
            let res = cfg.img_resolution >> level;
            let c = cout;
            if level == levels - 1 {
                push(&mut dec, &dec_scope, format!("{res}x{res}_in0"), |s| {
                    Ok(DecLayer::Block(Box::new(UNetBlock::new(s, c, c, Resample::Keep, true, &block)?)))
                })?;
                push(&mut dec, &dec_scope, format!("{res}x{res}_in1"), |s| {
                    Ok(DecLayer::Block(Box::new(UNetBlock::new(s, c, c, Resample::Keep, false, &block)?)))
                })?;
            } else {
                push(&mut dec, &dec_scope, format!("{res}x{res}_up"), |s| {
                    Ok(DecLayer::Block(Box::new(UNetBlock::new(s, c, c, Resample::Up, false, &block)?)))
                })?;
            }
            for idx in 0..=cfg.num_blocks {
                let skip = skips.pop().expect("the encoder leaves one skip per decoder block");
                let cin = cout + skip;
                cout = cfg.model_channels * mult;
                let attn = idx == cfg.num_blocks && cfg.attn_resolutions.contains(&res);
                push(&mut dec, &dec_scope, format!("{res}x{res}_block{idx}"), |s| {
                    Ok(DecLayer::Block(Box::new(UNetBlock::new(s, cin, cout, Resample::Keep, attn, &block)?)))
                })?;
            }
            if cfg.decoder_type == DecoderType::Skip || level == 0 {
                let oc = cfg.out_channels;
                if cfg.decoder_type == DecoderType::Skip && level < levels - 1 {
                    push(&mut dec, &dec_scope, format!("{res}x{res}_aux_up"), |s| {
                        Ok(DecLayer::AuxUp(Conv2d::resampling(s, oc, oc, 0, true, Resample::Up, filter, false, init)?))
                    })?;
                }
                push(&mut dec, &dec_scope, format!("{res}x{res}_aux_norm"), |s| {
                    Ok(DecLayer::AuxNorm(GroupNorm::new(s, cout, 1e-6)?))
                })?;
                push(&mut dec, &dec_scope, format!("{res}x{res}_aux_conv"), |s| {
                    Ok(DecLayer::AuxConv(Conv2d::new(s, cout, oc, 3, init_zero)?))
                })?;
            }
        }

        Ok(SongUNet {
            cfg: cfg.clone(),
            map_noise,
            map_label,
            map_augment,
            map_layer0,
            map_layer1,
            enc,
            dec,
            scope: scope.clone(),
        })
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &SongUNetConfig {
        &self.cfg
    }

    /// Every state-dict key of the network, in PyTorch's order.
    pub fn state_dict_keys(&self) -> Vec<String> {
        self.scope.state_dict_keys()
    }

    /// The buffers (`resample_filter`, `map_noise.freqs`) with their full names.
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
        let (out, _) = self.forward_parts(x, noise_labels, class_labels, augment_labels, true)?;
        Ok(out.expect("the decoder ran"))
    }

    /// The forward pass with the encoder's output exposed (SiDA's discriminator, spec §4.1):
    /// returns `(F(x) if decode, h_enc)`, `h_enc` being the feature map after the last
    /// encoder layer (`[B, C_enc, r, r]`, r the lowest resolution). With `decode = false`
    /// only the mapping network and the encoder run.
    pub fn forward_parts(
        &self,
        x: &Tensor,
        noise_labels: &Tensor,
        class_labels: Option<&Tensor>,
        augment_labels: Option<&Tensor>,
        decode: bool,
    ) -> Result<(Option<Tensor>, Tensor)> {
        let cfg = &self.cfg;
        super::check_input(x, cfg.in_channels, cfg.img_resolution, "SongUNet")?;

        // Mapping. The official code computes [cos | sin] and flips the halves.
        let e = match &self.map_noise {
            NoiseEmbedding::Positional(m) => m.forward(noise_labels)?,
            NoiseEmbedding::Fourier(m) => m.forward(noise_labels)?,
        };
        let half = e.shape()[1] / 2;
        let mut emb = Tensor::cat(&[e.narrow(1, half, half)?, e.narrow(1, 0, half)?], 1)?;
        if let Some(map_label) = &self.map_label {
            let labels = super::class_labels(class_labels, cfg.label_dim, x.shape()[0], emb.dtype(), "SongUNet")?;
            let labels = super::label_dropout(&labels, x.shape()[0], cfg.label_dropout, &self.scope)?;
            emb = emb.add(&map_label.forward(&labels.mul_scalar((cfg.label_dim as f64).sqrt())?)?)?;
        }
        if let (Some(map_augment), Some(a)) = (&self.map_augment, augment_labels) {
            emb = emb.add(&map_augment.forward(&a.cast(emb.dtype())?)?)?;
        }
        emb = self.map_layer0.forward(&emb)?.silu()?;
        emb = self.map_layer1.forward(&emb)?.silu()?;

        // Encoder.
        let sqrt2 = std::f64::consts::SQRT_2;
        let mut skips: Vec<Tensor> = Vec::new();
        let mut x = x.clone();
        let mut aux = x.clone();
        for (_, layer) in &self.enc {
            match layer {
                EncLayer::AuxDown(conv) => aux = conv.forward(&aux)?,
                EncLayer::AuxSkip(conv) => {
                    x = x.add(&conv.forward(&aux)?)?;
                    *skips.last_mut().expect("an aux layer follows a down block") = x.clone();
                }
                EncLayer::AuxResidual(conv) => {
                    x = x.add(&conv.forward(&aux)?)?.mul_scalar(1.0 / sqrt2)?;
                    aux = x.clone();
                    *skips.last_mut().expect("an aux layer follows a down block") = x.clone();
                }
                EncLayer::Conv(conv) => {
                    x = conv.forward(&x)?;
                    skips.push(x.clone());
                }
                EncLayer::Block(block) => {
                    x = block.forward(&x, &emb)?;
                    skips.push(x.clone());
                }
            }
        }

        if !decode {
            return Ok((None, x));
        }
        let h_enc = x.clone();

        // Decoder.
        let mut aux: Option<Tensor> = None;
        let mut tmp: Option<Tensor> = None;
        for (_, layer) in &self.dec {
            match layer {
                DecLayer::AuxUp(conv) => {
                    aux = Some(conv.forward(aux.as_ref().expect("aux_up follows a level's aux_conv"))?);
                }
                DecLayer::AuxNorm(norm) => tmp = Some(norm.forward(&x)?),
                DecLayer::AuxConv(conv) => {
                    let t = conv.forward(&tmp.take().expect("aux_conv follows aux_norm").silu()?)?;
                    aux = Some(match aux {
                        Some(a) => t.add(&a)?,
                        None => t,
                    });
                }
                DecLayer::Block(block) => {
                    if x.shape()[1] != block.in_channels() {
                        let skip = skips.pop().expect("the decoder takes one skip per encoder output");
                        x = Tensor::cat(&[x, skip], 1)?;
                    }
                    x = block.forward(&x, &emb)?;
                }
            }
        }
        Ok((Some(aux.expect("the level-0 decoder ends in aux_conv")), h_enc))
    }
}
