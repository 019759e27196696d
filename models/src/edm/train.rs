//! EDM teacher training (../shared/spec/edm-sid.md §1.2, `training/training_loop.py`):
//! Adam with learning-rate warm-up, EMA with a half-life in images (and its ramp-up),
//! gradients through `nan_to_num`, loss scaling, gradient accumulation, and checkpoints that
//! resume bit-for-bit on the same device (data order, RNG streams, optimizer, EMA, step).

use super::loss::EdmLoss;
use super::precond::{EdmConfig, EdmPrecond};
use super::sampler::EdmSampler;
use super::{networks::SongUNetConfig, networks::UNetConfig};
use crate::data::fmnist_tensor::{load_fmnist_tensors, PixelRange, TensorDataset};
use crate::data::folder::{list_image_folder, load_image_folder, FolderOptions, LazyFolder};
use crate::data::idx::{fmnist_dir, Split};
use crate::data::loader::{HostImages, Prefetcher, SampleSource};
use crate::error::{Error, Result};
use crate::optim::{load_checkpoint_with, save_checkpoint_with, Adam, AdamConfig, Ema, Optimizer};
use crate::params::ParamStore;
use crate::train::{progress_bar, save_grid, MetricsLog};
use scorch_engine::safetensors_io::RawTensor;
use scorch_engine::{no_grad, DType, Generator, Tensor};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// The network part of a recipe (a SongUNet DDPM++ at the data's resolution).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ModelRecipe {
    /// Base channels (upstream CIFAR-10: 128).
    pub model_channels: usize,
    /// Per-level multipliers (upstream CIFAR-10: [2, 2, 2]).
    pub channel_mult: Vec<usize>,
    /// Residual blocks per level (upstream: 4).
    pub num_blocks: usize,
    /// Resolutions with self-attention (upstream: [16]).
    pub attn_resolutions: Vec<usize>,
    /// Dropout (upstream CIFAR-10: 0.13).
    pub dropout: f64,
    /// Label dropout for classifier-free guidance (upstream EDM: 0; SiD-LSG teachers use 0.1).
    pub label_dropout: f64,
}

impl Default for ModelRecipe {
    fn default() -> Self {
        ModelRecipe {
            model_channels: 32,
            channel_mult: vec![1, 2, 2],
            num_blocks: 2,
            attn_resolutions: vec![8],
            dropout: 0.1,
            label_dropout: 0.0,
        }
    }
}

/// An EDM training recipe; every field has a default (`recipes/edm-fmnist.toml` annotates
/// each with its upstream value).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EdmRecipe {
    /// Dataset: `fashion-mnist` (28×28 padded to 32×32, [−1, 1]) or `folder` (an image
    /// folder at `data_dir`: one sub-folder per class, or images directly in it;
    /// centre-cropped and resized to `resolution`, EDM's `dataset_tool.py` convention).
    pub dataset: String,
    /// Data directory (Fashion-MNIST default: SCORCH_FMNIST_DIR or the Debian package's
    /// path; required for `folder`).
    pub data_dir: Option<String>,
    /// Use only the first N training images (0 = all).
    pub limit_images: usize,
    /// Image side (`folder`; Fashion-MNIST is 32). Must halve cleanly at every U-Net level.
    pub resolution: usize,
    /// Image channels, 1 or 3 (0 = the dataset's: Fashion-MNIST 1, `folder` 3).
    pub channels: usize,
    /// Classes for a conditional model (0 = the dataset's: Fashion-MNIST 10, `folder` its
    /// sub-folder count). A run's resolved recipe.toml records the actual number.
    pub num_classes: usize,
    /// `folder` only: decode images while training instead of loading all at the start
    /// (for sets larger than memory).
    pub stream: bool,
    /// Batches prepared ahead by a background thread (0 = on the training thread).
    pub prefetch: usize,
    /// Class-conditional (one-hot labels).
    pub conditional: bool,
    /// Mirror each training image left-right with probability ½ (upstream CIFAR-10:
    /// `--xflip`, as a dataset doubling; here per batch, drawn from the noise stream).
    pub xflip: bool,
    pub model: ModelRecipe,
    /// Total optimizer steps.
    pub steps: u64,
    /// Images per step (upstream CIFAR-10: 512).
    pub batch: usize,
    /// Gradient-accumulation rounds per step (batch is split across them).
    pub accumulate: usize,
    /// Adam learning rate (upstream: 1e-3).
    pub lr: f64,
    /// Adam betas (upstream: [0.9, 0.999]).
    pub betas: [f64; 2],
    /// Adam epsilon (upstream: 1e-8).
    pub eps: f64,
    /// Learning-rate warm-up length in images (upstream: 10 Mimg; scaled to the run here).
    pub lr_rampup_images: u64,
    /// EMA half-life in images (upstream: 0.5 Mimg).
    pub ema_halflife_images: f64,
    /// EMA ramp-up ratio: half-life ≤ ratio · images seen (upstream: 0.05).
    pub ema_rampup_ratio: f64,
    /// Loss scaling (upstream: 1).
    pub loss_scaling: f64,
    /// Seed of the data order, the noise and the initialisation.
    pub seed: u64,
    /// Steps between checkpoints.
    pub checkpoint_every: u64,
    /// Steps between metric records.
    pub log_every: u64,
    /// Steps between sample grids (0 = only at the end).
    pub sample_every: u64,
    /// Images in a sample grid.
    pub sample_count: usize,
    /// Heun steps for sample grids (18 → NFE 35).
    pub sample_steps: usize,
}

impl Default for EdmRecipe {
    fn default() -> Self {
        EdmRecipe {
            dataset: "fashion-mnist".into(),
            data_dir: None,
            limit_images: 0,
            resolution: 32,
            channels: 0,
            num_classes: 0,
            stream: false,
            prefetch: 2,
            conditional: false,
            xflip: false,
            model: ModelRecipe::default(),
            steps: 20_000,
            batch: 64,
            accumulate: 1,
            lr: 1e-3,
            betas: [0.9, 0.999],
            eps: 1e-8,
            lr_rampup_images: 200_000,
            ema_halflife_images: 500_000.0,
            ema_rampup_ratio: 0.05,
            loss_scaling: 1.0,
            seed: 0,
            checkpoint_every: 500,
            log_every: 50,
            sample_every: 0,
            sample_count: 64,
            sample_steps: 18,
        }
    }
}

impl EdmRecipe {
    /// Checks values a run cannot work with, naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |f: &str, why: &str| Err(Error::Config(format!("recipe field `{f}`: {why}")));
        match self.dataset.as_str() {
            "fashion-mnist" => {
                if self.resolution != 32 || !matches!(self.channels, 0 | 1) || !matches!(self.num_classes, 0 | 10) {
                    return bad("resolution", "Fashion-MNIST is 32×32 (28 padded), 1 channel, 10 classes");
                }
                if self.stream {
                    return bad("stream", "only for `folder` datasets");
                }
            }
            "folder" => {
                if self.data_dir.is_none() {
                    return bad("data_dir", "`folder` needs the image folder's path");
                }
                if !matches!(self.channels, 0 | 1 | 3) {
                    return bad("channels", "must be 1 or 3");
                }
            }
            _ => return bad("dataset", "must be `fashion-mnist` or `folder`"),
        }
        let levels = self.model.channel_mult.len().max(1) as u32;
        let step = 1usize << (levels - 1);
        if self.resolution < step || !self.resolution.is_multiple_of(step) {
            return bad("resolution", &format!("must be a positive multiple of {step} for {levels} U-Net levels"));
        }
        if self.batch == 0 || self.accumulate == 0 || self.batch % self.accumulate != 0 {
            return bad("batch", "must be positive and divisible by `accumulate`");
        }
        if !(self.lr > 0.0) {
            return bad("lr", "must be positive");
        }
        if self.checkpoint_every == 0 || self.log_every == 0 {
            return bad("checkpoint_every", "checkpoint_every and log_every must be positive");
        }
        Ok(())
    }

    /// Image channels (resolving 0 to the dataset's).
    pub fn image_channels(&self) -> usize {
        match (self.channels, self.dataset.as_str()) {
            (0, "fashion-mnist") => 1,
            (0, _) => 3,
            (c, _) => c,
        }
    }

    /// Classes of a conditional model (0 resolves to 10 for Fashion-MNIST; a `folder`
    /// run resolves it from the folder before training, see [`EdmRecipe::resolve`]).
    pub fn classes(&self) -> usize {
        match (self.num_classes, self.dataset.as_str()) {
            (0, "fashion-mnist") => 10,
            (n, _) => n,
        }
    }

    /// Fills the fields left to the dataset (channels, class count) with actual values,
    /// reading a folder's class list; the resolved recipe is what a run records.
    pub fn resolve(&self) -> Result<EdmRecipe> {
        self.validate()?;
        let mut r = self.clone();
        r.channels = self.image_channels();
        if self.dataset == "folder" && self.conditional {
            let dir = self.data_path();
            let (_, classes) = list_image_folder(&dir, self.limit_images)?;
            if classes.len() < 2 {
                return Err(Error::Config(format!(
                    "recipe field `conditional`: image folder {} has {} class sub-folders (a conditional model needs ≥ 2)",
                    dir.display(),
                    classes.len()
                )));
            }
            if self.num_classes != 0 && self.num_classes != classes.len() {
                return Err(Error::Config(format!(
                    "recipe field `num_classes`: {} but image folder {} has {} class sub-folders",
                    self.num_classes,
                    dir.display(),
                    classes.len()
                )));
            }
            r.num_classes = classes.len();
        } else {
            r.num_classes = self.classes();
        }
        Ok(r)
    }

    /// The data directory: `data_dir`, or for Fashion-MNIST the default one (a `folder`
    /// recipe without `data_dir` does not validate).
    fn data_path(&self) -> PathBuf {
        match &self.data_dir {
            Some(d) => PathBuf::from(d),
            None => fmnist_dir(),
        }
    }

    /// The training images as a sample source for the prefetcher.
    pub fn source(&self) -> Result<Arc<dyn SampleSource>> {
        match self.dataset.as_str() {
            "fashion-mnist" => {
                Ok(Arc::new(HostImages::from_dataset(&fmnist_32(&self.data_path(), Split::Train, self.limit_images)?)?))
            }
            _ => {
                let dir = self.data_path();
                let opt = FolderOptions {
                    size: self.resolution,
                    channels: self.image_channels(),
                    limit: self.limit_images,
                    ..FolderOptions::default()
                };
                if self.stream {
                    Ok(Arc::new(LazyFolder::open(&dir, &opt)?))
                } else {
                    Ok(Arc::new(HostImages::from_dataset(&load_image_folder(&dir, &opt)?.data)?))
                }
            }
        }
    }

    /// The network configuration this recipe trains.
    pub fn edm_config(&self) -> EdmConfig {
        EdmConfig::new(UNetConfig::Song(SongUNetConfig {
            label_dim: if self.conditional { self.classes() } else { 0 },
            model_channels: self.model.model_channels,
            channel_mult: self.model.channel_mult.clone(),
            num_blocks: self.model.num_blocks,
            attn_resolutions: self.model.attn_resolutions.clone(),
            dropout: self.model.dropout,
            label_dropout: self.model.label_dropout,
            ..SongUNetConfig::ddpmpp(self.resolution, self.image_channels())
        }))
    }
}

/// Fashion-MNIST as EDM sees it: `[N, 1, 32, 32]` in [−1, 1] (padded with −1) and labels.
pub fn fmnist_32(dir: &Path, split: Split, limit: usize) -> Result<TensorDataset> {
    let ds = load_fmnist_tensors(dir, split, PixelRange::MinusOneOne)?;
    let ds = if limit > 0 && limit < ds.len() { ds.take(limit)? } else { ds };
    let padded = ds.images().pad(&[(2, 2), (2, 2)], -1.0)?;
    TensorDataset::new(padded, ds.labels().clone())
}

/// One-hot labels `0, 1, …, classes − 1, 0, …` for `n` evaluation samples (`None` for 0
/// classes, an unconditional model).
pub fn eval_labels(n: usize, classes: usize) -> Result<Option<Tensor>> {
    if classes == 0 {
        return Ok(None);
    }
    let cls: Vec<i64> = (0..n as i64).map(|i| i % classes as i64).collect();
    Ok(Some(Tensor::from_vec(cls, &[n])?.one_hot(classes, DType::F32)?))
}

/// Everything a run keeps between steps, besides the weights.
struct TrainState {
    step: u64,
    noise: Generator,
}

fn state_tensors(st: &TrainState, dropout: &Generator) -> Result<Vec<RawTensor>> {
    let (s1, o1) = st.noise.state();
    let (s2, o2) = dropout.state();
    let v = vec![st.step as i64, s1 as i64, o1 as i64, s2 as i64, o2 as i64];
    Ok(vec![Tensor::from_vec(v, &[5])?.to_raw("train.state")?])
}

/// What a finished (or interrupted) run reports.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub steps: u64,
    pub last_loss: f64,
    pub seconds: f64,
    pub checkpoint: PathBuf,
}

/// Trains (or resumes) an EDM teacher into `out`: `checkpoint.safetensors` (weights,
/// optimizer, EMA, training state; rewritten atomically), `ema.safetensors` (the EMA
/// weights alone, for sampling), `metrics.jsonl`, `recipe.toml` and sample grids.
/// Stops after `recipe.steps` steps in total (a resumed run continues to the same total).
pub fn train_edm(recipe: &EdmRecipe, out: &Path, resume: bool, quiet: bool) -> Result<RunSummary> {
    let recipe = &recipe.resolve()?;
    std::fs::create_dir_all(out).map_err(|e| Error::Output(format!("creating {}: {e}", out.display())))?;
    let resolved = toml::to_string_pretty(recipe).map_err(|e| Error::Output(format!("serialising the recipe: {e}")))?;
    std::fs::write(out.join("recipe.toml"), resolved)
        .map_err(|e| Error::Output(format!("writing recipe.toml: {e}")))?;

    let source = recipe.source()?;
    let pixels_per_image: usize = source.sample_shape().iter().product();
    if source.sample_shape() != [recipe.image_channels(), recipe.resolution, recipe.resolution] {
        return Err(Error::Config(format!(
            "dataset images are {:?}, the recipe's network takes [{}, {r}, {r}]",
            source.sample_shape(),
            recipe.image_channels(),
            r = recipe.resolution
        )));
    }
    let store = ParamStore::new(DType::F32, recipe.seed);
    let net = EdmPrecond::new(&store.root(), &recipe.edm_config())?;
    store.set_training(true);
    let named = store.named_parameters();
    let mut opt = Adam::new(
        named.clone(),
        AdamConfig {
            lr: recipe.lr,
            beta1: recipe.betas[0],
            beta2: recipe.betas[1],
            eps: recipe.eps,
            ..AdamConfig::default()
        },
    )?;
    let mut ema = Ema::new(named.clone(), 0.0)?;
    let mut st = TrainState { step: 0, noise: Generator::new(recipe.seed.wrapping_add(1)) };
    let ckpt = out.join("checkpoint.safetensors");
    if resume && ckpt.exists() {
        let extra = load_checkpoint_with(&ckpt, &store, Some(&mut opt), Some(&mut ema))?;
        let s = extra
            .iter()
            .find(|r| r.name == "train.state")
            .ok_or_else(|| Error::Checkpoint { path: ckpt.clone(), detail: "no `train.state` entry".into() })?;
        let v = Tensor::from_raw(s)?.to_vec::<i64>()?;
        if v.len() != 5 {
            return Err(Error::Checkpoint { path: ckpt.clone(), detail: "`train.state` must hold 5 values".into() });
        }
        st.step = v[0] as u64;
        st.noise.set_state(v[1] as u64, v[2] as u64);
        store.rng().set_state(v[3] as u64, v[4] as u64);
    }

    let loss_fn = EdmLoss::default();
    let log = MetricsLog::open_resumed(out, st.step)?;
    // Step s trains on samples s·batch … (s+1)·batch − 1 of the seeded order, built ahead.
    let mut batches = Prefetcher::new(source, recipe.batch, recipe.seed, st.step, recipe.prefetch)?;
    let per_round = recipe.batch / recipe.accumulate;
    let pb = progress_bar(recipe.steps, st.step);
    if quiet {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let t0 = Instant::now();
    let mut last_loss = f64::NAN;
    let start_step = st.step;
    while st.step < recipe.steps {
        let images_seen = st.step * recipe.batch as u64;
        let mut loss_sum = 0.0;
        opt.zero_grad();
        let (xs, ys) = batches.next_batch()?.to_tensors()?;
        for round in 0..recipe.accumulate {
            let (x, y) = (xs.narrow(0, round * per_round, per_round)?, ys.narrow(0, round * per_round, per_round)?);
            let x = if recipe.xflip { crate::data::folder::random_hflip(&x, &st.noise)? } else { x };
            let labels = if recipe.conditional { Some(y.one_hot(recipe.num_classes, DType::F32)?) } else { None };
            let loss = loss_fn.loss(&net, &x, labels.as_ref(), &st.noise)?;
            let total = loss.sum_all()?;
            loss_sum += total.item()?;
            total.mul_scalar(recipe.loss_scaling / recipe.batch as f64)?.backward()?;
        }
        {
            let _g = no_grad();
            for (_, p) in &named {
                if let Some(g) = p.grad() {
                    g.assign(&g.nan_to_num(0.0, 1e5, -1e5)?)?;
                }
            }
        }
        let lr = recipe.lr
            * ((images_seen + recipe.batch as u64) as f64 / (recipe.lr_rampup_images as f64).max(1e-8)).min(1.0);
        opt.set_lr(lr);
        opt.step()?;
        st.step += 1;
        let seen = st.step * recipe.batch as u64;
        ema.set_beta(Ema::edm_beta(recipe.ema_halflife_images, recipe.batch, seen, Some(recipe.ema_rampup_ratio)))?;
        ema.update()?;
        last_loss = loss_sum / (recipe.batch * pixels_per_image) as f64;
        pb.set_position(st.step);
        pb.set_message(format!("loss {last_loss:.4}"));
        if st.step % recipe.log_every == 0 || st.step == recipe.steps {
            log.log(&serde_json::json!({
                "step": st.step, "images": seen, "loss": last_loss, "lr": lr,
                "sec_per_step": t0.elapsed().as_secs_f64() / (st.step - start_step) as f64,
            }))?;
        }
        if st.step % recipe.checkpoint_every == 0 || st.step == recipe.steps {
            save_checkpoint_with(&ckpt, &store, Some(&opt), Some(&ema), &state_tensors(&st, &store.rng())?)?;
        }
        if recipe.sample_every > 0 && st.step % recipe.sample_every == 0 {
            sample_grid(&net, &ema, recipe, &out.join(format!("samples-{:07}.png", st.step)))?;
        }
    }
    pb.finish_and_clear();
    // The EMA weights alone, under the network's own names, for sampling and shipping.
    ema.swap()?;
    store.save(out.join("ema.safetensors"))?;
    if recipe.sample_count > 0 {
        sample_grid_current(&net, recipe, &out.join("samples.png"))?;
    }
    ema.swap()?;
    Ok(RunSummary { steps: st.step, last_loss, seconds: t0.elapsed().as_secs_f64(), checkpoint: ckpt })
}

fn sample_grid(net: &EdmPrecond, ema: &Ema, recipe: &EdmRecipe, path: &Path) -> Result<()> {
    ema.swap()?;
    let r = sample_grid_current(net, recipe, path);
    ema.swap()?;
    r
}

/// Samples `sample_count` images with the current weights (eval mode, Heun) into a grid.
fn sample_grid_current(net: &EdmPrecond, recipe: &EdmRecipe, path: &Path) -> Result<()> {
    let was = net.store().is_training();
    net.store().set_training(false);
    let gen = Generator::new(recipe.seed.wrapping_add(7));
    let n = recipe.sample_count;
    let (c, r, k) = (recipe.image_channels(), recipe.resolution, recipe.classes());
    let z = Tensor::randn(&[n, c, r, r], DType::F32, &gen)?;
    let labels = eval_labels(n, if recipe.conditional { k } else { 0 })?;
    let sampler = EdmSampler { num_steps: recipe.sample_steps, ..EdmSampler::default() };
    let x = sampler.sample(net, &z, labels.as_ref(), &gen)?;
    net.store().set_training(was);
    save_grid(&x, 8.min(n.max(1)), -1.0, 1.0, path)
}
