//! Image folders (PNG / JPEG through the `image` crate) as tensors, and the random
//! horizontal flip diffusion training uses.
//!
//! Layout: either one sub-folder per class (`root/<class>/*.png`; classes are the sorted
//! sub-folder names, label = index) or images directly in `root` (every label 0). Each image
//! is centre-cropped to a square and resized to `size × size` (Lanczos 3), then converted to
//! `channels` (1: luma, 3: RGB) and scaled by a [`PixelRange`] — EDM's `dataset_tool.py`
//! `--transform=center-crop` convention.

use super::fmnist_tensor::{PixelRange, TensorDataset};
use crate::error::{Error, Result};
use image::imageops::FilterType;
use scorch_engine::{DType, Generator, Tensor};
use std::path::{Path, PathBuf};

/// Options of [`load_image_folder`].
#[derive(Clone, Debug)]
pub struct FolderOptions {
    /// Output side length.
    pub size: usize,
    /// 1 (grayscale) or 3 (RGB).
    pub channels: usize,
    /// Pixel scaling.
    pub range: PixelRange,
    /// Read at most this many images (0 = all), in sorted path order.
    pub limit: usize,
}

impl Default for FolderOptions {
    fn default() -> Self {
        FolderOptions { size: 32, channels: 3, range: PixelRange::MinusOneOne, limit: 0 }
    }
}

/// An image folder loaded as `[N, C, size, size]` f32 images with i64 labels, plus the class
/// names (empty for a flat folder).
#[derive(Clone, Debug)]
pub struct ImageFolder {
    pub data: TensorDataset,
    pub classes: Vec<String>,
}

fn is_image(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref(),
        Some("png" | "jpg" | "jpeg")
    )
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| Error::Config(format!("cannot read image folder {}: {e}", dir.display())))?;
    let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    v.sort();
    Ok(v)
}

/// Loads an image folder (see the module docs). Errors name the folder or the file.
pub fn load_image_folder(root: &Path, opt: &FolderOptions) -> Result<ImageFolder> {
    if !root.is_dir() {
        return Err(Error::Config(format!("image folder {} not found or not a directory", root.display())));
    }
    if opt.size == 0 || !matches!(opt.channels, 1 | 3) {
        return Err(Error::Config(format!(
            "image folder options: size must be positive and channels 1 or 3 (got size {}, channels {})",
            opt.size, opt.channels
        )));
    }
    let entries = sorted_entries(root)?;
    let class_dirs: Vec<&PathBuf> = entries.iter().filter(|p| p.is_dir()).collect();
    let mut files: Vec<(PathBuf, i64)> = Vec::new();
    let mut classes = Vec::new();
    if class_dirs.is_empty() {
        files.extend(entries.iter().filter(|p| is_image(p)).map(|p| (p.clone(), 0)));
    } else {
        for (label, dir) in class_dirs.iter().enumerate() {
            classes.push(dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
            files.extend(sorted_entries(dir)?.into_iter().filter(|p| is_image(p)).map(|p| (p, label as i64)));
        }
    }
    if opt.limit > 0 {
        files.truncate(opt.limit);
    }
    if files.is_empty() {
        return Err(Error::Config(format!("image folder {} holds no .png / .jpg / .jpeg images", root.display())));
    }
    let (s, c) = (opt.size, opt.channels);
    let (scale, shift) = match opt.range {
        PixelRange::ZeroOne => (1.0 / 255.0, 0.0),
        PixelRange::MinusOneOne => (1.0 / 127.5, -1.0),
    };
    let mut pixels = Vec::with_capacity(files.len() * c * s * s);
    for (path, _) in &files {
        let img =
            image::open(path).map_err(|e| Error::Config(format!("cannot decode image {}: {e}", path.display())))?;
        let (w, h) = (img.width(), img.height());
        let side = w.min(h);
        let square = img.crop_imm((w - side) / 2, (h - side) / 2, side, side);
        let resized = square.resize_exact(s as u32, s as u32, FilterType::Lanczos3);
        let planes: Vec<Vec<u8>> = if c == 1 {
            vec![resized.to_luma8().into_raw()]
        } else {
            let rgb = resized.to_rgb8().into_raw();
            (0..3).map(|ch| rgb.iter().skip(ch).step_by(3).copied().collect()).collect()
        };
        for plane in planes {
            pixels.extend(plane.into_iter().map(|p| (p as f64 * scale + shift) as f32));
        }
    }
    let images = Tensor::from_vec(pixels, &[files.len(), c, s, s])?;
    let labels = Tensor::from_vec(files.iter().map(|(_, l)| *l).collect::<Vec<i64>>(), &[files.len()])?;
    Ok(ImageFolder { data: TensorDataset::new(images, labels)?, classes })
}

/// Flips each image of `x [B, C, H, W]` left-right with probability ½ (draws from `gen`),
/// EDM's `--xflip` augmentation applied per batch.
pub fn random_hflip(x: &Tensor, gen: &Generator) -> Result<Tensor> {
    if x.rank() != 4 {
        return Err(Error::Config(format!("random_hflip: images {:?} must be [B, C, H, W]", x.shape())));
    }
    let b = x.shape()[0];
    let coin =
        Tensor::random_on(&[b, 1, 1, 1], DType::F32, gen, scorch_ops::cpu::RandDist::Uniform(0.0, 1.0), x.device())?;
    let half = Tensor::full_on(&[], 0.5, DType::F32, x.device())?;
    let flip = coin.lt(&half)?;
    Ok(Tensor::where_cond(&flip, &x.flip(&[3])?, x)?)
}
