//! FD-FMNIST: the Fréchet distance between feature statistics of a small Fashion-MNIST
//! classifier that scorch trains itself (reported as FD-FMNIST, never as FID).
//!
//! The classifier sees images as EDM does (`[B, 1, 32, 32]`, 28×28 padded with −1, pixels
//! in [−1, 1]): conv 3×3 1→32, ReLU, max-pool 2, conv 3×3 32→64, ReLU, max-pool 2,
//! conv 3×3 64→64, ReLU, max-pool 2, linear 1024→128, ReLU (the 128 features), linear
//! 128→10. `scorch train classifier` reproduces the shipped weights.

use super::frechet::{frechet_from_stats, FeatureStats};
use crate::data::fmnist_tensor::TensorDataset;
use crate::data::idx::{shuffled_indices, Split};
use crate::edm::train::fmnist_32;
use crate::error::{Error, Result};
use crate::nn::{Conv2d, Conv2dConfig, Linear, Module};
use crate::optim::{Adam, AdamConfig, Optimizer};
use crate::params::{ParamPath, ParamStore};
use scorch_engine::{no_grad, DType, Tensor};
use std::path::Path;

/// Width of the feature vector.
pub const FEATURES: usize = 128;

/// The classifier.
pub struct FmnistClassifier {
    convs: [Conv2d; 3],
    fc: Linear,
    head: Linear,
    store: ParamStore,
}

impl FmnistClassifier {
    /// Builds it under `p` (`conv{1,2,3}`, `fc`, `head`) with PyTorch's initialisers.
    pub fn new(p: &ParamPath) -> Result<FmnistClassifier> {
        let same = Conv2dConfig::same(3);
        Ok(FmnistClassifier {
            convs: [
                Conv2d::new(&p.pp("conv1"), 1, 32, 3, same)?,
                Conv2d::new(&p.pp("conv2"), 32, 64, 3, same)?,
                Conv2d::new(&p.pp("conv3"), 64, 64, 3, same)?,
            ],
            fc: Linear::new(&p.pp("fc"), 64 * 4 * 4, FEATURES)?,
            head: Linear::new(&p.pp("head"), FEATURES, 10)?,
            store: p.store().clone(),
        })
    }

    /// The store holding its weights.
    pub fn store(&self) -> &ParamStore {
        &self.store
    }

    /// The 128 features of `x [B, 1, 32, 32]` (pixels in [−1, 1]).
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() != 4 || x.shape()[1..] != [1, 32, 32] {
            return Err(Error::Config(format!(
                "FD-FMNIST classifier: images {:?} must be [B, 1, 32, 32] (28×28 padded to 32)",
                x.shape()
            )));
        }
        let mut h = x.cast(self.store.dtype())?;
        for c in &self.convs {
            h = c.forward(&h)?.relu()?.max_pool2d(2, 2, 0)?;
        }
        let b = h.shape()[0];
        Ok(self.fc.forward(&h.reshape(&[b, 64 * 4 * 4])?)?.relu()?)
    }

    /// Class logits `[B, 10]`.
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        self.head.forward(&self.features(x)?)
    }

    /// Loads weights saved by [`train_classifier`].
    pub fn load(path: &Path) -> Result<FmnistClassifier> {
        let store = ParamStore::new(DType::F32, 0);
        let net = FmnistClassifier::new(&store.root())?;
        store.load(path)?;
        store.set_training(false);
        Ok(net)
    }

    /// Features of many images, in batches of 500, as f64 rows.
    pub fn features_f64(&self, images: &Tensor) -> Result<Vec<f64>> {
        super::features_in_batches(images, 500, |x| self.features(x))
    }

    /// Accuracy on a labelled set.
    pub fn accuracy(&self, data: &TensorDataset) -> Result<f64> {
        let _ng = no_grad();
        let n = data.len();
        let mut correct = 0usize;
        let mut i = 0;
        while i < n {
            let b = 500.min(n - i);
            let pred = self.logits(&data.images().narrow(0, i, b)?)?.argmax(1, false)?.to_vec::<i64>()?;
            let truth = data.labels().narrow(0, i, b)?.to_vec::<i64>()?;
            correct += pred.iter().zip(&truth).filter(|(a, b)| a == b).count();
            i += b;
        }
        Ok(correct as f64 / n.max(1) as f64)
    }
}

/// What [`train_classifier`] reports.
#[derive(Clone, Copy, Debug)]
pub struct ClassifierReport {
    pub steps: usize,
    pub test_accuracy: f64,
    pub seconds: f64,
}

/// Trains the classifier on the Fashion-MNIST training split (Adam, lr 1e-3 decayed
/// linearly to 0, batch 128, `epochs` epochs, seeded order) and saves its weights to
/// `out` (atomically). `log(step, loss)` is called every 50 steps.
pub fn train_classifier(
    data_dir: &Path,
    out: &Path,
    epochs: usize,
    seed: u64,
    log: &mut dyn FnMut(usize, f64),
) -> Result<ClassifierReport> {
    let t0 = std::time::Instant::now();
    let train = fmnist_32(data_dir, Split::Train, 0)?;
    let test = fmnist_32(data_dir, Split::Test, 0)?;
    let store = ParamStore::new(DType::F32, seed);
    let net = FmnistClassifier::new(&store.root())?;
    let lr = 1e-3;
    let mut opt = Adam::new(store.named_parameters(), AdamConfig { lr, ..AdamConfig::default() })?;
    let batch = 128;
    let per_epoch = train.len() / batch;
    let total = per_epoch * epochs;
    let mut step = 0;
    for epoch in 0..epochs {
        let order = shuffled_indices(train.len(), seed, epoch as u64);
        for chunk in order.chunks_exact(batch) {
            let (x, y) = train.gather(chunk)?;
            opt.set_lr(lr * (1.0 - step as f64 / total as f64));
            opt.zero_grad();
            let loss = net.logits(&x)?.cross_entropy(&y, 0.0)?;
            loss.backward()?;
            opt.step()?;
            step += 1;
            if step % 50 == 0 {
                log(step, loss.item()?);
            }
        }
    }
    store.set_training(false);
    let test_accuracy = net.accuracy(&test)?;
    store.save(out)?;
    Ok(ClassifierReport { steps: step, test_accuracy, seconds: t0.elapsed().as_secs_f64() })
}

/// FD-FMNIST against a fixed reference set (features and their statistics computed once).
pub struct FdFmnist {
    net: FmnistClassifier,
    reference_features: Vec<f64>,
    reference: FeatureStats,
}

impl FdFmnist {
    /// The classifier at `weights`, with reference statistics from `reference` images
    /// (`[N, 1, 32, 32]`, e.g. the 10k test images).
    pub fn new(weights: &Path, reference: &Tensor) -> Result<FdFmnist> {
        let net = FmnistClassifier::load(weights)?;
        let reference_features = net.features_f64(reference)?;
        let reference = FeatureStats::from_rows(&reference_features, FEATURES)?;
        Ok(FdFmnist { net, reference_features, reference })
    }

    /// The classifier.
    pub fn net(&self) -> &FmnistClassifier {
        &self.net
    }

    /// The reference images' features, rows of [`FEATURES`] in their order.
    pub fn reference_features(&self) -> &[f64] {
        &self.reference_features
    }

    /// FD-FMNIST of `images [N, 1, 32, 32]` (N ≥ 2; use thousands for a stable value).
    pub fn distance(&self, images: &Tensor) -> Result<f64> {
        self.distance_of(&self.net.features_f64(images)?)
    }

    /// FD-FMNIST of features computed before with [`FmnistClassifier::features_f64`].
    pub fn distance_of(&self, features: &[f64]) -> Result<f64> {
        Ok(frechet_from_stats(&FeatureStats::from_rows(features, FEATURES)?, &self.reference)?)
    }
}
