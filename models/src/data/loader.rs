//! Training batches prepared in the background.
//!
//! A [`SampleSource`] hands out one sample by index into a host buffer (an in-memory image
//! set, or an image folder decoded on demand). A [`Prefetcher`] runs a thread that builds
//! the batches of steps `first, first + 1, …` in order, `depth` ahead of the training loop,
//! so reading, decoding and shuffling overlap the step. Which samples make up a step is a
//! pure function of the step ([`EpochOrder`]: sample `k` of the run is position `k mod n`
//! of epoch `k / n`'s seeded permutation), so a resumed run sees exactly the batches an
//! uninterrupted one would. Batches stay on the host until the training thread turns them
//! into tensors on its device ([`HostBatch::to_tensors`]).

use super::fmnist_tensor::TensorDataset;
use super::idx::shuffled_indices;
use crate::error::{Error, Result};
use scorch_engine::{DType, Tensor};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Samples readable by index from any thread.
pub trait SampleSource: Send + Sync {
    /// Number of samples.
    fn len(&self) -> usize;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `[C, H, W]` of every sample.
    fn sample_shape(&self) -> [usize; 3];
    /// Writes sample `index` into `out` (`C·H·W` values) and returns its label.
    fn read(&self, index: usize, out: &mut [f32]) -> Result<i64>;
}

/// Images and labels held in host memory as f32 / i64.
#[derive(Clone, Debug)]
pub struct HostImages {
    pixels: Vec<f32>,
    labels: Vec<i64>,
    shape: [usize; 3],
}

impl HostImages {
    /// Copies a dataset of `[N, C, H, W]` images (any float dtype, any device) to the host.
    pub fn from_dataset(data: &TensorDataset) -> Result<HostImages> {
        let im = data.images();
        if im.rank() != 4 {
            return Err(Error::Config(format!("HostImages: images {:?} must be [N, C, H, W]", im.shape())));
        }
        let shape = [im.shape()[1], im.shape()[2], im.shape()[3]];
        let pixels = im.cast(DType::F32)?.to_device(scorch_engine::Device::Cpu)?.to_vec::<f32>()?;
        let labels = data.labels().to_device(scorch_engine::Device::Cpu)?.to_vec::<i64>()?;
        Ok(HostImages { pixels, labels, shape })
    }
}

impl SampleSource for HostImages {
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn sample_shape(&self) -> [usize; 3] {
        self.shape
    }
    fn read(&self, index: usize, out: &mut [f32]) -> Result<i64> {
        let per = out.len();
        let src = self.pixels.get(index * per..(index + 1) * per).ok_or_else(|| {
            Error::Config(format!("sample {index} out of range for {} samples of {per} values", self.len()))
        })?;
        out.copy_from_slice(src);
        Ok(self.labels[index])
    }
}

/// The run's sample order: sample `k` is `perm(seed, k / n)[k mod n]`, each epoch's
/// permutation computed once.
pub struct EpochOrder {
    n: usize,
    seed: u64,
    cached: Option<(u64, Vec<usize>)>,
}

impl EpochOrder {
    pub fn new(n: usize, seed: u64) -> EpochOrder {
        EpochOrder { n, seed, cached: None }
    }

    /// The dataset index of the run's `k`-th sample.
    pub fn index(&mut self, k: u64) -> usize {
        let epoch = k / self.n as u64;
        if self.cached.as_ref().is_none_or(|(e, _)| *e != epoch) {
            self.cached = Some((epoch, shuffled_indices(self.n, self.seed, epoch)));
        }
        let (_, perm) = self.cached.as_ref().expect("filled above");
        perm[(k % self.n as u64) as usize]
    }
}

/// One step's batch on the host.
#[derive(Clone, Debug)]
pub struct HostBatch {
    /// The step it belongs to.
    pub step: u64,
    /// `batch · C·H·W` pixels.
    pub pixels: Vec<f32>,
    /// `batch` labels.
    pub labels: Vec<i64>,
    /// `[C, H, W]`.
    pub sample_shape: [usize; 3],
}

impl HostBatch {
    /// Images `[B, C, H, W]` (f32) and labels `[B]` (i64) on the default device.
    pub fn to_tensors(self) -> Result<(Tensor, Tensor)> {
        let b = self.labels.len();
        let [c, h, w] = self.sample_shape;
        Ok((Tensor::from_vec(self.pixels, &[b, c, h, w])?, Tensor::from_vec(self.labels, &[b])?))
    }
}

/// Builds the batch of `step`: samples `step·batch … step·batch + batch − 1` of the order.
fn build(source: &dyn SampleSource, order: &mut EpochOrder, batch: usize, step: u64) -> Result<HostBatch> {
    let shape = source.sample_shape();
    let per: usize = shape.iter().product();
    let mut pixels = vec![0f32; batch * per];
    let mut labels = Vec::with_capacity(batch);
    let first = step * batch as u64;
    let idx: Vec<usize> = (0..batch as u64).map(|j| order.index(first + j)).collect();
    // Decoding can be slow (image files): spread a batch over the rayon pool.
    use rayon::prelude::*;
    let got: Vec<Result<i64>> = pixels.par_chunks_mut(per).zip(&idx).map(|(out, &i)| source.read(i, out)).collect();
    for g in got {
        labels.push(g?);
    }
    Ok(HostBatch { step, pixels, labels, sample_shape: shape })
}

/// The batches of consecutive steps, built `depth` ahead on a background thread (or on
/// the caller's thread with `depth` 0). Dropping it stops the thread.
pub struct Prefetcher {
    inner: Inner,
    next_step: u64,
}

enum Inner {
    Sync { source: Arc<dyn SampleSource>, order: EpochOrder, batch: usize },
    Thread { rx: Option<Receiver<Result<HostBatch>>>, handle: Option<JoinHandle<()>> },
}

impl Prefetcher {
    /// Batches of `batch` samples of `source` in the order of `seed`, from step `first`.
    pub fn new(source: Arc<dyn SampleSource>, batch: usize, seed: u64, first: u64, depth: usize) -> Result<Prefetcher> {
        if batch == 0 || source.is_empty() {
            return Err(Error::Config(format!(
                "prefetch: batch ({batch}) and dataset size ({}) must be positive",
                source.len()
            )));
        }
        let mut order = EpochOrder::new(source.len(), seed);
        let inner = if depth == 0 {
            Inner::Sync { source, order, batch }
        } else {
            let (tx, rx) = sync_channel(depth);
            let handle = std::thread::Builder::new()
                .name("scorch-prefetch".into())
                .spawn(move || {
                    let mut step = first;
                    loop {
                        let b = build(&*source, &mut order, batch, step);
                        let failed = b.is_err();
                        // A closed channel means the training loop is done with us.
                        if tx.send(b).is_err() || failed {
                            return;
                        }
                        step += 1;
                    }
                })
                .map_err(|e| Error::Config(format!("starting the prefetch thread: {e}")))?;
            Inner::Thread { rx: Some(rx), handle: Some(handle) }
        };
        Ok(Prefetcher { inner, next_step: first })
    }

    /// The next step's batch (the steps come in order).
    pub fn next_batch(&mut self) -> Result<HostBatch> {
        let step = self.next_step;
        let b = match &mut self.inner {
            Inner::Sync { source, order, batch } => build(&**source, order, *batch, step)?,
            Inner::Thread { rx, .. } => match rx.as_ref().map(|r| r.recv()) {
                Some(Ok(b)) => b?,
                _ => return Err(Error::Config("the prefetch thread stopped (it failed earlier)".into())),
            },
        };
        debug_assert_eq!(b.step, step);
        self.next_step += 1;
        Ok(b)
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        if let Inner::Thread { rx, handle } = &mut self.inner {
            // Closing the channel makes the thread's next send fail; it then returns.
            drop(rx.take());
            if let Some(h) = handle.take() {
                let _ = h.join();
            }
        }
    }
}
