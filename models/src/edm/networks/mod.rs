//! The U-Nets `F` that EDM preconditions (spec §2): [`SongUNet`] (DDPM++ / NCSN++) and
//! [`DhariwalUNet`] (ADM), built from [`UNetBlock`]s. Every size is a config field, and
//! parameter names are the official state-dict keys, so converted checkpoints load by
//! name.

mod block;
mod dhariwal;
mod song;

pub use block::{BlockConfig, UNetBlock};
pub use dhariwal::{DhariwalUNet, DhariwalUNetConfig};
pub use song::{DecoderType, EmbeddingType, EncoderType, SongUNet, SongUNetConfig};

use crate::edm::layers::Scope;
use crate::error::{Error, Result};
use scorch_engine::{DType, Tensor};

/// Which U-Net, with its constructor arguments.
#[derive(Clone, Debug, PartialEq)]
pub enum UNetConfig {
    /// DDPM++ / NCSN++.
    Song(SongUNetConfig),
    /// ADM.
    Dhariwal(DhariwalUNetConfig),
}

impl UNetConfig {
    /// Image resolution.
    pub fn img_resolution(&self) -> usize {
        match self {
            UNetConfig::Song(c) => c.img_resolution,
            UNetConfig::Dhariwal(c) => c.img_resolution,
        }
    }

    /// `(in_channels, out_channels)`.
    pub fn channels(&self) -> (usize, usize) {
        match self {
            UNetConfig::Song(c) => (c.in_channels, c.out_channels),
            UNetConfig::Dhariwal(c) => (c.in_channels, c.out_channels),
        }
    }

    /// Number of classes (0 = unconditional).
    pub fn label_dim(&self) -> usize {
        match self {
            UNetConfig::Song(c) => c.label_dim,
            UNetConfig::Dhariwal(c) => c.label_dim,
        }
    }

    /// Augmentation-label width (0 = none).
    pub fn augment_dim(&self) -> usize {
        match self {
            UNetConfig::Song(c) => c.augment_dim,
            UNetConfig::Dhariwal(c) => c.augment_dim,
        }
    }
}

/// A built U-Net of either family.
#[derive(Clone, Debug)]
pub enum UNet {
    /// DDPM++ / NCSN++.
    Song(SongUNet),
    /// ADM.
    Dhariwal(DhariwalUNet),
}

impl UNet {
    /// Builds the network `cfg` describes in `scope`.
    pub fn build(scope: &Scope, cfg: &UNetConfig) -> Result<UNet> {
        Ok(match cfg {
            UNetConfig::Song(c) => UNet::Song(SongUNet::build(scope, c)?),
            UNetConfig::Dhariwal(c) => UNet::Dhariwal(DhariwalUNet::build(scope, c)?),
        })
    }

    /// `F(x, c_noise, class_labels, augment_labels)`.
    pub fn forward(
        &self,
        x: &Tensor,
        noise_labels: &Tensor,
        class_labels: Option<&Tensor>,
        augment_labels: Option<&Tensor>,
    ) -> Result<Tensor> {
        match self {
            UNet::Song(n) => n.forward(x, noise_labels, class_labels, augment_labels),
            UNet::Dhariwal(n) => n.forward(x, noise_labels, class_labels, augment_labels),
        }
    }

    /// `(F(x) if decode, encoder output)`; see [`SongUNet::forward_parts`]. The ADM
    /// encoder split is not implemented yet (SiDA on ADM teachers): an error says so.
    pub fn forward_parts(
        &self,
        x: &Tensor,
        noise_labels: &Tensor,
        class_labels: Option<&Tensor>,
        augment_labels: Option<&Tensor>,
        decode: bool,
    ) -> Result<(Option<Tensor>, Tensor)> {
        match self {
            UNet::Song(n) => n.forward_parts(x, noise_labels, class_labels, augment_labels, decode),
            UNet::Dhariwal(_) => Err(Error::Config(
                "the encoder output of DhariwalUNet (SiDA's discriminator on ADM) is not implemented yet".into(),
            )),
        }
    }
}

/// The constructor arguments both U-Nets share, for one validation.
pub(crate) struct CommonConfig<'a> {
    pub img_resolution: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub model_channels: usize,
    pub channel_mult: &'a [usize],
    pub channel_mult_emb: usize,
    pub attn_resolutions: &'a [usize],
    pub dropout: f64,
    pub label_dropout: f64,
}

/// Checks what the official constructors assume without asserting.
pub(crate) fn check_common(c: &CommonConfig<'_>) -> Result<()> {
    let bad = |m: String| Err(Error::Config(m));
    if c.in_channels == 0 || c.out_channels == 0 {
        return bad(format!("U-Net: {} input and {} output channels must be positive", c.in_channels, c.out_channels));
    }
    if c.model_channels == 0 || c.channel_mult_emb == 0 {
        return bad(format!(
            "U-Net: model_channels {} and channel_mult_emb {} must be positive",
            c.model_channels, c.channel_mult_emb
        ));
    }
    if c.channel_mult.is_empty() || c.channel_mult.contains(&0) {
        return bad(format!("U-Net: channel_mult {:?} needs at least one level, all positive", c.channel_mult));
    }
    let levels = c.channel_mult.len();
    let factor = 1usize.checked_shl(levels as u32 - 1).unwrap_or(0);
    if c.img_resolution == 0 || factor == 0 || c.img_resolution % factor != 0 {
        return bad(format!(
            "U-Net: resolution {} must be divisible by 2^{} for {levels} levels (channel_mult {:?})",
            c.img_resolution,
            levels - 1,
            c.channel_mult
        ));
    }
    let resolutions: Vec<usize> = (0..levels).map(|l| c.img_resolution >> l).collect();
    if let Some(r) = c.attn_resolutions.iter().find(|r| !resolutions.contains(r)) {
        return bad(format!("U-Net: attention resolution {r} is not one of the levels' resolutions {resolutions:?}"));
    }
    for (what, p) in [("dropout", c.dropout), ("label_dropout", c.label_dropout)] {
        if !(0.0..=1.0).contains(&p) {
            return bad(format!("U-Net: {what} {p} outside [0, 1]"));
        }
    }
    Ok(())
}

/// Appends the layer `make` builds at `parent.name` to an ordered module list (the
/// official `ModuleDict`s, whose keys are state-dict names).
pub(crate) fn push<L>(
    list: &mut Vec<(String, L)>,
    parent: &Scope,
    name: String,
    make: impl FnOnce(&Scope) -> Result<L>,
) -> Result<()> {
    let layer = make(&parent.pp(&name))?;
    list.push((name, layer));
    Ok(())
}

/// Checks a U-Net input `[B, C, res, res]`.
pub(crate) fn check_input(x: &Tensor, channels: usize, res: usize, net: &str) -> Result<()> {
    if x.rank() != 4 || x.shape()[1..] != [channels, res, res] {
        return Err(Error::Config(format!("{net}: input {:?} must be [B, {channels}, {res}, {res}]", x.shape())));
    }
    Ok(())
}

/// The class labels of a conditional net: `[B or 1, label_dim]`, in the net's dtype.
pub(crate) fn class_labels(
    labels: Option<&Tensor>,
    label_dim: usize,
    batch: usize,
    dtype: DType,
    net: &str,
) -> Result<Tensor> {
    let Some(labels) = labels else {
        return Err(Error::Config(format!(
            "{net}: class labels [B, {label_dim}] are required by a conditional network (zeros = no class)"
        )));
    };
    if labels.rank() != 2 || labels.shape()[1] != label_dim || (labels.shape()[0] != batch && labels.shape()[0] != 1) {
        return Err(Error::Config(format!(
            "{net}: class labels {:?} must be [{batch} or 1, {label_dim}]",
            labels.shape()
        )));
    }
    Ok(labels.cast(dtype)?)
}

/// Label dropout for classifier-free guidance: in training mode each sample's label row
/// is zeroed with probability `p` (`labels · (U(0,1) ≥ p)`), drawn from the store's
/// runtime generator.
pub(crate) fn label_dropout(labels: &Tensor, batch: usize, p: f64, scope: &Scope) -> Result<Tensor> {
    if p == 0.0 || !scope.store().is_training() {
        return Ok(labels.clone());
    }
    let u = Tensor::rand(&[batch, 1], labels.dtype(), &scope.store().rng())?;
    let keep = u.ge(&Tensor::scalar(p, labels.dtype())?)?.cast(labels.dtype())?;
    Ok(labels.mul(&keep)?)
}
