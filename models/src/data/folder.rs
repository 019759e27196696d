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
use rayon::prelude::*;
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

/// Image files with their labels, and the class names (empty for a flat folder).
pub type FolderListing = (Vec<(PathBuf, i64)>, Vec<String>);

/// The images of a folder (see the module docs) in sorted order, with their labels, and
/// the class names; at most `limit` (0 = all).
pub fn list_image_folder(root: &Path, limit: usize) -> Result<FolderListing> {
    if !root.is_dir() {
        return Err(Error::Config(format!("image folder {} not found or not a directory", root.display())));
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
    if limit > 0 {
        files.truncate(limit);
    }
    if files.is_empty() {
        return Err(Error::Config(format!("image folder {} holds no .png / .jpg / .jpeg images", root.display())));
    }
    Ok((files, classes))
}

fn check_options(opt: &FolderOptions) -> Result<()> {
    if opt.size == 0 || !matches!(opt.channels, 1 | 3) {
        return Err(Error::Config(format!(
            "image folder options: size must be positive and channels 1 or 3 (got size {}, channels {})",
            opt.size, opt.channels
        )));
    }
    Ok(())
}

/// Decodes one image file into `out` (`channels × size × size` values, planar): centre
/// crop to a square, Lanczos-3 resize, luma or RGB, scaled by `opt.range`.
pub fn decode_image(path: &Path, opt: &FolderOptions, out: &mut [f32]) -> Result<()> {
    let (s, c) = (opt.size, opt.channels);
    if out.len() != c * s * s {
        return Err(Error::Config(format!("decode_image: buffer of {} values for {c}×{s}×{s}", out.len())));
    }
    let (scale, shift) = match opt.range {
        PixelRange::ZeroOne => (1.0 / 255.0, 0.0),
        PixelRange::MinusOneOne => (1.0 / 127.5, -1.0),
    };
    let img = image::open(path).map_err(|e| Error::Config(format!("cannot decode image {}: {e}", path.display())))?;
    let (w, h) = (img.width(), img.height());
    let side = w.min(h);
    let square = img.crop_imm((w - side) / 2, (h - side) / 2, side, side);
    let resized = square.resize_exact(s as u32, s as u32, FilterType::Lanczos3);
    let to_f = |p: u8| (p as f64 * scale + shift) as f32;
    if c == 1 {
        for (o, p) in out.iter_mut().zip(resized.to_luma8().into_raw()) {
            *o = to_f(p);
        }
    } else {
        let rgb = resized.to_rgb8().into_raw();
        for (i, px) in rgb.chunks_exact(3).enumerate() {
            for ch in 0..3 {
                out[ch * s * s + i] = to_f(px[ch]);
            }
        }
    }
    Ok(())
}

/// Loads an image folder (see the module docs) into memory, decoding in parallel. Errors
/// name the folder or the file.
pub fn load_image_folder(root: &Path, opt: &FolderOptions) -> Result<ImageFolder> {
    check_options(opt)?;
    let (files, classes) = list_image_folder(root, opt.limit)?;
    let per = opt.channels * opt.size * opt.size;
    let mut pixels = vec![0f32; files.len() * per];
    pixels.par_chunks_mut(per).zip(&files).try_for_each(|(out, (path, _))| decode_image(path, opt, out))?;
    let (s, c) = (opt.size, opt.channels);
    let images = Tensor::from_vec(pixels, &[files.len(), c, s, s])?;
    let labels = Tensor::from_vec(files.iter().map(|(_, l)| *l).collect::<Vec<i64>>(), &[files.len()])?;
    Ok(ImageFolder { data: TensorDataset::new(images, labels)?, classes })
}

/// An image folder read lazily: listed at open, each image decoded when asked for (the
/// [`super::loader::SampleSource`] for datasets larger than memory; the prefetch thread
/// does the decoding).
#[derive(Clone, Debug)]
pub struct LazyFolder {
    files: Vec<(PathBuf, i64)>,
    classes: Vec<String>,
    opt: FolderOptions,
}

impl LazyFolder {
    /// Lists `root` (see the module docs); nothing is decoded yet.
    pub fn open(root: &Path, opt: &FolderOptions) -> Result<LazyFolder> {
        check_options(opt)?;
        let (files, classes) = list_image_folder(root, opt.limit)?;
        Ok(LazyFolder { files, classes, opt: opt.clone() })
    }

    /// Class names (empty for a flat folder).
    pub fn classes(&self) -> &[String] {
        &self.classes
    }
}

impl super::loader::SampleSource for LazyFolder {
    fn len(&self) -> usize {
        self.files.len()
    }
    fn sample_shape(&self) -> [usize; 3] {
        [self.opt.channels, self.opt.size, self.opt.size]
    }
    fn read(&self, index: usize, out: &mut [f32]) -> Result<i64> {
        let (path, label) = &self.files[index];
        decode_image(path, &self.opt, out)?;
        Ok(*label)
    }
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
