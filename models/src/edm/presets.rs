//! Ready configurations: EDM's released teachers (spec §2.6, with the parameter counts
//! the tests check) and a small Fashion-MNIST network for CPU training.
//!
//! | preset | U-Net | params |
//! |--------|-------|--------|
//! | [`cifar10_ddpmpp`]`(false)` | DDPM++ 32², `[2,2,2]` | 55,733,891 |
//! | [`cifar10_ddpmpp`]`(true)` | DDPM++ 32², 10 classes | 55,735,299 |
//! | [`cifar10_ncsnpp`]`(false)` | NCSN++ 32² | 56,397,827 |
//! | [`ffhq64_ddpmpp`] / [`afhqv2_64_ddpmpp`] | DDPM++ 64², `[1,2,2,2]` | 61,805,571 |
//! | [`imagenet64_adm`] | ADM 64², 1000 classes | 295,899,267 |
//! | [`fashion_mnist`]`(false)` | DDPM++-style 32², 1 channel | 1,752,993 |
//! | [`fashion_mnist`]`(true)` | the same, 10 classes | 1,753,345 |

use super::networks::{DhariwalUNetConfig, SongUNetConfig, UNetConfig};
use super::precond::EdmConfig;

/// Width of EDM's augmentation labels (the teachers trained with the augment pipe have a
/// `map_augment` layer of this width).
pub const AUGMENT_DIM: usize = 9;

/// `edm-cifar10-32x32-{cond,uncond}-vp`: DDPM++, dropout 0.13, augment labels.
pub fn cifar10_ddpmpp(conditional: bool) -> EdmConfig {
    EdmConfig::new(UNetConfig::Song(SongUNetConfig {
        label_dim: if conditional { 10 } else { 0 },
        augment_dim: AUGMENT_DIM,
        dropout: 0.13,
        ..SongUNetConfig::ddpmpp(32, 3)
    }))
}

/// `edm-cifar10-32x32-{cond,uncond}-ve`: NCSN++, dropout 0.13, augment labels.
pub fn cifar10_ncsnpp(conditional: bool) -> EdmConfig {
    EdmConfig::new(UNetConfig::Song(SongUNetConfig {
        label_dim: if conditional { 10 } else { 0 },
        augment_dim: AUGMENT_DIM,
        dropout: 0.13,
        ..SongUNetConfig::ncsnpp(32, 3)
    }))
}

/// `edm-ffhq-64x64-uncond-vp`: DDPM++ with `channel_mult [1,2,2,2]`, dropout 0.05.
pub fn ffhq64_ddpmpp() -> EdmConfig {
    EdmConfig::new(UNetConfig::Song(SongUNetConfig {
        augment_dim: AUGMENT_DIM,
        dropout: 0.05,
        channel_mult: vec![1, 2, 2, 2],
        ..SongUNetConfig::ddpmpp(64, 3)
    }))
}

/// `edm-afhqv2-64x64-uncond-vp`: as FFHQ with dropout 0.25.
pub fn afhqv2_64_ddpmpp() -> EdmConfig {
    let mut cfg = ffhq64_ddpmpp();
    if let UNetConfig::Song(c) = &mut cfg.unet {
        c.dropout = 0.25;
    }
    cfg
}

/// `edm-imagenet-64x64-cond-adm`: ADM with the official defaults, 1000 classes, no
/// augmentation.
pub fn imagenet64_adm() -> EdmConfig {
    EdmConfig::new(UNetConfig::Dhariwal(DhariwalUNetConfig { label_dim: 1000, ..DhariwalUNetConfig::new(64, 3, 3) }))
}

/// A small DDPM++-style network for Fashion-MNIST padded to 32×32 (1 channel), sized so
/// training on a CPU is feasible: 32 base channels, levels 32²/16²/8² with multipliers
/// `[1,2,2]` (32/64/64 channels), 2 blocks per level, attention at 8², embedding width
/// 128, dropout 0.1, no augmentation labels; 1,752,993 parameters (1,753,345 with 10
/// classes, `conditional`). Classifier-free
/// guidance needs `label_dropout > 0` (e.g. 0.1) set on the conditional config.
pub fn fashion_mnist(conditional: bool) -> EdmConfig {
    EdmConfig::new(UNetConfig::Song(SongUNetConfig {
        label_dim: if conditional { 10 } else { 0 },
        model_channels: 32,
        channel_mult: vec![1, 2, 2],
        num_blocks: 2,
        attn_resolutions: vec![8],
        dropout: 0.1,
        ..SongUNetConfig::ddpmpp(32, 1)
    }))
}
