//! Fashion-MNIST (and MNIST) as tensors, and seeded mini-batches over any
//! image / label tensor pair.
//!
//! ```no_run
//! use scorch_models::data::fmnist_tensor::{load_fmnist_tensors, PixelRange};
//! use scorch_models::data::idx::{fmnist_dir, Split};
//!
//! let train = load_fmnist_tensors(&fmnist_dir(), Split::Train, PixelRange::ZeroOne)?;
//! for epoch in 0..2 {
//!     for batch in train.batches(128, Some(0), epoch, false)? {
//!         let (images, labels) = batch?; // [B, 1, 28, 28] f32, [B] i64
//!     }
//! }
//! # Ok::<(), scorch_models::Error>(())
//! ```

use super::idx::{load_fmnist, LabeledImages, Shuffler, Split};
use crate::error::{Error, Result};
use scorch_engine::Tensor;
use std::path::Path;

/// How pixel bytes 0..=255 map to floats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelRange {
    /// `p / 255` ∈ [0, 1] (torchvision's `ToTensor`).
    ZeroOne,
    /// `p / 127.5 − 1` ∈ [−1, 1] (the convention of diffusion models).
    MinusOneOne,
}

/// Images `[N, C, H, W]` with labels `[N]` (i64), indexable in mini-batches.
#[derive(Clone, Debug)]
pub struct TensorDataset {
    images: Tensor,
    labels: Tensor,
}

impl TensorDataset {
    /// Pairs images `[N, ...]` with i64 labels `[N]`.
    pub fn new(images: Tensor, labels: Tensor) -> Result<TensorDataset> {
        if images.rank() == 0 || labels.rank() != 1 || labels.shape()[0] != images.shape()[0] {
            return Err(Error::Config(format!(
                "dataset: images {:?} and labels {:?} must be [N, ...] and [N]",
                images.shape(),
                labels.shape()
            )));
        }
        Ok(TensorDataset { images, labels })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.shape()[0]
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All images.
    pub fn images(&self) -> &Tensor {
        &self.images
    }

    /// All labels.
    pub fn labels(&self) -> &Tensor {
        &self.labels
    }

    /// The first `n` samples (or all, if fewer): views, no copy.
    pub fn take(&self, n: usize) -> Result<TensorDataset> {
        let n = n.min(self.len());
        TensorDataset::new(self.images.narrow(0, 0, n)?, self.labels.narrow(0, 0, n)?)
    }

    /// The samples at `indices`, gathered into new tensors.
    pub fn gather(&self, indices: &[usize]) -> Result<(Tensor, Tensor)> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(Error::Config(format!("sample index {bad} out of range for {} samples", self.len())));
        }
        if indices.is_empty() {
            return Err(Error::Config("cannot gather an empty batch".into()));
        }
        // Row views then one concatenation: the cost is the batch's size. (`index_select`
        // on the whole dataset would first copy all of it.)
        let rows = |t: &Tensor| -> Result<Tensor> {
            let views = indices.iter().map(|&i| t.narrow(0, i, 1)).collect::<scorch_engine::Result<Vec<_>>>()?;
            Ok(Tensor::cat(&views, 0)?)
        };
        Ok((rows(&self.images)?, rows(&self.labels)?))
    }

    /// Mini-batches of `batch_size` for one epoch: in order when `seed` is `None`,
    /// otherwise in the permutation of [`Shuffler`] for `(seed, epoch)` (so a run is
    /// reproducible and a resumed one sees the same order). The last batch is shorter
    /// unless `drop_last`.
    pub fn batches(&self, batch_size: usize, seed: Option<u64>, epoch: u64, drop_last: bool) -> Result<Batches<'_>> {
        if batch_size == 0 {
            return Err(Error::Config("batch size must be positive".into()));
        }
        let order = match seed {
            Some(s) => Shuffler::new(s).indices(self.len(), epoch),
            None => (0..self.len()).collect(),
        };
        let end = if drop_last { order.len() / batch_size * batch_size } else { order.len() };
        Ok(Batches { data: self, order, batch_size, pos: 0, end })
    }
}

/// Iterator over the mini-batches of one epoch (see [`TensorDataset::batches`]).
pub struct Batches<'a> {
    data: &'a TensorDataset,
    order: Vec<usize>,
    batch_size: usize,
    pos: usize,
    end: usize,
}

impl Iterator for Batches<'_> {
    type Item = Result<(Tensor, Tensor)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.end {
            return None;
        }
        let stop = (self.pos + self.batch_size).min(self.end);
        let batch = self.data.gather(&self.order[self.pos..stop]);
        self.pos = stop;
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = (self.end - self.pos).div_ceil(self.batch_size);
        (n, Some(n))
    }
}

impl ExactSizeIterator for Batches<'_> {}

/// Converts IDX images and labels to tensors: images f32 `[N, 1, rows, cols]` scaled by
/// `range`, labels i64 `[N]`.
pub fn to_tensors(data: &LabeledImages, range: PixelRange) -> Result<TensorDataset> {
    let im = &data.images;
    let (scale, shift) = match range {
        PixelRange::ZeroOne => (1.0 / 255.0, 0.0),
        PixelRange::MinusOneOne => (1.0 / 127.5, -1.0),
    };
    let pixels: Vec<f32> = im.pixels.iter().map(|&p| (p as f64 * scale + shift) as f32).collect();
    let images = Tensor::from_vec(pixels, &[im.n, 1, im.rows, im.cols])?;
    let labels = Tensor::from_vec(data.labels.iter().map(|&l| l as i64).collect::<Vec<i64>>(), &[data.labels.len()])?;
    TensorDataset::new(images, labels)
}

/// Loads one split of Fashion-MNIST from `dir` (see [`load_fmnist`]) as tensors.
pub fn load_fmnist_tensors(dir: &Path, split: Split, range: PixelRange) -> Result<TensorDataset> {
    to_tensors(&load_fmnist(dir, split)?, range)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::idx::IdxImages;

    fn tiny() -> LabeledImages {
        LabeledImages {
            images: IdxImages { n: 5, rows: 2, cols: 2, pixels: (0..20).map(|i| (i * 13) as u8).collect() },
            labels: vec![0, 1, 2, 3, 4],
        }
    }

    #[test]
    fn pixels_are_scaled_and_labels_widened() -> Result<()> {
        let d = to_tensors(&tiny(), PixelRange::MinusOneOne)?;
        assert_eq!(d.images().shape(), [5, 1, 2, 2]);
        assert_eq!(d.labels().to_vec::<i64>()?, [0, 1, 2, 3, 4]);
        let px = d.images().to_vec_f32()?;
        assert_eq!(px[0], -1.0);
        assert!((px[1] - (13.0 / 127.5 - 1.0)).abs() < 1e-6);
        let d = to_tensors(&tiny(), PixelRange::ZeroOne)?;
        assert!(d.images().to_vec_f32()?.iter().all(|&p| (0.0..=1.0).contains(&p)));
        Ok(())
    }

    #[test]
    fn batches_cover_every_sample_once_in_a_seeded_order() -> Result<()> {
        let d = to_tensors(&tiny(), PixelRange::ZeroOne)?;
        let labels = |seed, epoch, drop_last| -> Result<Vec<Vec<i64>>> {
            d.batches(2, seed, epoch, drop_last)?.map(|b| Ok(b?.1.to_vec::<i64>()?)).collect()
        };
        assert_eq!(labels(None, 0, false)?, [vec![0, 1], vec![2, 3], vec![4]]);
        assert_eq!(labels(None, 0, true)?.len(), 2);
        let a = labels(Some(7), 3, false)?;
        assert_eq!(a, labels(Some(7), 3, false)?);
        assert_ne!(a, labels(Some(7), 4, false)?);
        let mut all: Vec<i64> = a.concat();
        all.sort();
        assert_eq!(all, [0, 1, 2, 3, 4]);
        assert_eq!(d.batches(2, Some(1), 0, false)?.len(), 3);
        assert!(d.batches(0, None, 0, false).is_err());
        Ok(())
    }
}
