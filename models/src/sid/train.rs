//! `scorch distill sid|sida|sid2a`: distils an EDM teacher trained by `scorch train edm`
//! on Fashion-MNIST into a one-step generator, with checkpoints that resume bit-for-bit,
//! a JSONL metrics log (losses, and FD-FMNIST every `eval_every` iterations), a progress
//! bar and sample grids.
//!
//! A teacher is an EDM run directory: its `recipe.toml` (the architecture) and either
//! `ema.safetensors` or, for a run still in progress, the EMA entries of
//! `checkpoint.safetensors`.

use super::distill::{DistillConfig, Distiller, Method, MicroBatch};
use super::loss::SidLoss;
use crate::data::fmnist_tensor::TensorDataset;
use crate::data::idx::{fmnist_dir, shuffled_indices, Split};
use crate::edm::train::{fmnist_32, EdmRecipe};
use crate::edm::{EdmConfig, EdmPrecond, EdmSampler, UNetConfig};
use crate::error::{Error, Result};
use crate::metrics::fmnist_net::FdFmnist;
use crate::params::ParamStore;
use crate::train::{load_recipe, progress_bar, save_grid, MetricsLog};
use scorch_engine::safetensors_io::{self, RawTensor};
use scorch_engine::{no_grad, DType, Generator, Tensor};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A distillation recipe; every field has a default (`recipes/sid-fmnist.toml` annotates
/// each with its upstream value).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SidRecipe {
    /// `sid`, `sida` or `sid2a` (SiDA with the generator initialised from `init_generator`).
    pub method: String,
    /// The teacher's EDM run directory (`recipe.toml` + `ema.safetensors` or `checkpoint.safetensors`).
    pub teacher: String,
    /// SiD²A: the SiD generator to start from (a `generator.safetensors`).
    pub init_generator: Option<String>,
    /// Data directory for labels / real images (default: SCORCH_FMNIST_DIR or the Debian package's path).
    pub data_dir: Option<String>,
    /// α of the generator loss (upstream SiD 1.2, SiDA 1.0).
    pub alpha: f64,
    /// σ_init (upstream 2.5).
    pub sigma_init: f64,
    /// t_max as a fraction of the ρ-schedule (upstream 800/1000).
    pub t_max: f64,
    /// Iterations (one fake-score and one generator step each).
    pub steps: u64,
    /// Generator samples per step (upstream 256).
    pub batch: usize,
    /// Micro-batch (upstream 16 for SiD, 32 for SiDA).
    pub batch_gpu: usize,
    /// Fake-score learning rate (upstream 1e-5).
    pub lr: f64,
    /// Generator learning rate (upstream 1e-5).
    pub glr: f64,
    /// Adam β1 of the generator (upstream 0).
    pub g_beta1: f64,
    /// Adam β1 of the fake-score network (upstream 0).
    pub fake_beta1: f64,
    /// Adam β2 (upstream 0.999).
    pub beta2: f64,
    /// Adam ε (upstream 1e-8 in fp32).
    pub eps: f64,
    /// Fake-score loss scale (upstream 1).
    pub ls: f64,
    /// Generator loss scale (upstream 100).
    pub lsg: f64,
    /// SiDA discriminator loss scale (upstream 1).
    pub lsd: f64,
    /// SiDA adversarial generator loss scale (upstream 0.01).
    pub lsg_gan: f64,
    /// EMA half-life in images (upstream 0.5 Mimg).
    pub ema_halflife_images: f64,
    /// EMA ramp-up ratio (upstream 0.05).
    pub ema_rampup_ratio: f64,
    /// SiDA: images before the generator's first step (upstream 100k).
    pub gen_freeze_images: u64,
    /// SiDA: images of SiD-only generator loss (upstream 200k).
    pub sid_only_images: u64,
    /// SiDA: elementwise gradient clip of ψ (upstream 1).
    pub fake_grad_clip: f64,
    pub seed: u64,
    pub checkpoint_every: u64,
    pub log_every: u64,
    /// Iterations between sample grids (0 = only at the end).
    pub sample_every: u64,
    pub sample_count: usize,
    /// Iterations between FD-FMNIST evaluations (0 = none during the run).
    pub eval_every: u64,
    /// Generator samples per FD-FMNIST evaluation.
    pub eval_count: usize,
    /// The FD-FMNIST classifier weights (`scorch train classifier`); evaluation is skipped
    /// with a note when the file is absent.
    pub classifier: String,
    /// SiD-LSG κ₁: guidance of the fake network in its own training loss (1 = none; the
    /// released SiD-LSG models use κ₁ = κ₂ = κ₄ ∈ {1.5, 2, 3, 4.5}). κ ≠ 1 needs a
    /// class-conditional teacher trained with label dropout.
    pub kappa_fake_train: f64,
    /// SiD-LSG κ₂ = κ₃: guidance of the fake network in the generator loss.
    pub kappa_fake_eval: f64,
    /// SiD-LSG κ₄: guidance of the teacher in the generator loss.
    pub kappa_teacher: f64,
    /// Stop (after checkpointing) once this many minutes have passed (0 = no limit); a
    /// later `--resume` continues.
    pub max_minutes: f64,
}

impl Default for SidRecipe {
    fn default() -> Self {
        SidRecipe {
            method: "sid".into(),
            teacher: "assets/edm-fmnist-tiny".into(),
            init_generator: None,
            data_dir: None,
            alpha: 1.2,
            sigma_init: 2.5,
            t_max: 0.8,
            steps: 1000,
            batch: 32,
            batch_gpu: 32,
            lr: 1e-4,
            glr: 1e-4,
            g_beta1: 0.0,
            fake_beta1: 0.0,
            beta2: 0.999,
            eps: 1e-8,
            ls: 1.0,
            lsg: 100.0,
            lsd: 1.0,
            lsg_gan: 0.01,
            ema_halflife_images: 5000.0,
            ema_rampup_ratio: 0.05,
            gen_freeze_images: 2000,
            sid_only_images: 4000,
            fake_grad_clip: 1.0,
            seed: 0,
            checkpoint_every: 100,
            log_every: 10,
            sample_every: 0,
            sample_count: 64,
            eval_every: 0,
            eval_count: 2000,
            classifier: "assets/fd-fmnist-classifier.safetensors".into(),
            max_minutes: 0.0,
            kappa_fake_train: 1.0,
            kappa_fake_eval: 1.0,
            kappa_teacher: 1.0,
        }
    }
}

impl SidRecipe {
    /// The method, checked.
    pub fn method(&self) -> Result<Method> {
        match self.method.as_str() {
            "sid" => Ok(Method::Sid),
            "sida" | "sid2a" => Ok(Method::Sida),
            m => Err(Error::Config(format!("recipe field `method`: `{m}` is not one of sid, sida, sid2a"))),
        }
    }

    /// Whether any SiD-LSG guidance scale differs from 1.
    pub fn guided(&self) -> bool {
        [self.kappa_fake_train, self.kappa_fake_eval, self.kappa_teacher].iter().any(|&k| k != 1.0)
    }

    /// The iteration's configuration.
    pub fn distill_config(&self) -> Result<DistillConfig> {
        let cfg = DistillConfig {
            method: self.method()?,
            loss: SidLoss {
                alpha: self.alpha,
                sigma_init: self.sigma_init,
                t_max: self.t_max,
                guidance_fake_train: self.kappa_fake_train,
                guidance_fake_eval: self.kappa_fake_eval,
                guidance_teacher: self.kappa_teacher,
                ..SidLoss::default()
            },
            batch: self.batch,
            batch_gpu: self.batch_gpu,
            lr_fake: self.lr,
            lr_gen: self.glr,
            beta1_fake: self.fake_beta1,
            beta1_gen: self.g_beta1,
            beta2: self.beta2,
            eps: self.eps,
            ls: self.ls,
            lsg: self.lsg,
            lsd: self.lsd,
            lsg_gan: self.lsg_gan,
            ema_halflife_images: self.ema_halflife_images,
            ema_rampup_ratio: self.ema_rampup_ratio,
            gen_freeze_images: self.gen_freeze_images,
            sid_only_images: self.sid_only_images,
            fake_grad_clip: self.fake_grad_clip,
        };
        cfg.validate()?;
        if self.method == "sid2a" && self.init_generator.is_none() {
            return Err(Error::Config(
                "recipe field `init_generator`: sid2a needs a SiD generator to start from".into(),
            ));
        }
        if self.guided() && cfg.method == Method::Sida {
            return Err(Error::Config(
                "recipe fields `kappa_*`: guidance (SiD-LSG) combines with sid, not sida/sid2a".into(),
            ));
        }
        if self.checkpoint_every == 0 || self.log_every == 0 {
            return Err(Error::Config("recipe fields `checkpoint_every` and `log_every` must be positive".into()));
        }
        Ok(cfg)
    }
}

/// A teacher loaded from an EDM run directory.
pub struct Teacher {
    pub recipe: EdmRecipe,
    pub config: EdmConfig,
    pub weights: Vec<RawTensor>,
    pub source: PathBuf,
}

/// Reads `dir/recipe.toml` and the EMA weights (`ema.safetensors`, else the `ema.`
/// entries of `checkpoint.safetensors`).
pub fn load_teacher(dir: &Path) -> Result<Teacher> {
    let recipe_path = dir.join("recipe.toml");
    if !recipe_path.exists() {
        return Err(Error::Config(format!(
            "teacher `{}`: no recipe.toml (a teacher is the output directory of `scorch train edm`)",
            dir.display()
        )));
    }
    let recipe: EdmRecipe = load_recipe(Some(&recipe_path), &[]).map_err(|e| Error::Config(format!("{e}")))?;
    let ema = dir.join("ema.safetensors");
    let ckpt = dir.join("checkpoint.safetensors");
    let (weights, source) = if ema.exists() {
        (safetensors_io::load(&ema)?, ema)
    } else if ckpt.exists() {
        let raw = safetensors_io::load(&ckpt)?;
        let w: Vec<RawTensor> = raw
            .into_iter()
            .filter_map(|mut r| {
                let n = r.name.strip_prefix("ema.")?.to_string();
                r.name = n;
                Some(r)
            })
            .collect();
        if w.is_empty() {
            return Err(Error::Checkpoint { path: ckpt, detail: "holds no EMA weights".into() });
        }
        (w, ckpt)
    } else {
        return Err(Error::Config(format!(
            "teacher `{}`: neither ema.safetensors nor checkpoint.safetensors is there",
            dir.display()
        )));
    };
    Ok(Teacher { config: recipe.edm_config(), recipe, weights, source })
}

/// A network of the teacher's architecture in its own store, holding `weights`.
pub fn edm_net(config: &EdmConfig, weights: &[RawTensor], origin: &Path, seed: u64) -> Result<EdmPrecond> {
    let store = ParamStore::new(DType::F32, seed);
    let net = EdmPrecond::zeroed(&store.root(), config)?;
    store.load_raw(weights, origin, true)?;
    store.set_training(false);
    Ok(net)
}

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct DistillSummary {
    pub iterations: u64,
    pub images: u64,
    pub seconds: f64,
    pub last_fd: Option<f64>,
    pub generator: PathBuf,
}

/// Draws labels (and real images) from the training set in a seeded order that resumes.
struct DataSource<'a> {
    data: &'a TensorDataset,
    seed: u64,
    drawn: u64,
    epoch: u64,
    perm: Vec<usize>,
    conditional: bool,
    real: bool,
}

impl DataSource<'_> {
    fn next(&mut self, n: usize) -> Result<MicroBatch> {
        if !self.conditional && !self.real {
            return Ok(MicroBatch::default());
        }
        let len = self.data.len() as u64;
        let mut idx = Vec::with_capacity(n);
        for _ in 0..n {
            let epoch = self.drawn / len;
            if epoch != self.epoch || self.perm.is_empty() {
                self.perm = shuffled_indices(len as usize, self.seed, epoch);
                self.epoch = epoch;
            }
            idx.push(self.perm[(self.drawn % len) as usize]);
            self.drawn += 1;
        }
        let (x, y) = self.data.gather(&idx)?;
        Ok(MicroBatch {
            labels: if self.conditional { Some(y.one_hot(10, DType::F32)?) } else { None },
            real: self.real.then_some(x),
        })
    }
}

/// Runs (or resumes) a distillation into `out`: `checkpoint.safetensors`,
/// `generator.safetensors` (the EMA generator alone, EDM names), `metrics.jsonl`,
/// `recipe.toml`, `samples.png`.
pub fn distill_fmnist(recipe: &SidRecipe, out: &Path, resume: bool, quiet: bool) -> Result<DistillSummary> {
    let cfg = recipe.distill_config()?;
    std::fs::create_dir_all(out).map_err(|e| Error::Output(format!("creating {}: {e}", out.display())))?;
    let resolved = toml::to_string_pretty(recipe).map_err(|e| Error::Output(format!("serialising the recipe: {e}")))?;
    std::fs::write(out.join("recipe.toml"), resolved)
        .map_err(|e| Error::Output(format!("writing recipe.toml: {e}")))?;

    let teacher = load_teacher(Path::new(&recipe.teacher))?;
    let conditional = teacher.recipe.conditional;
    if recipe.guided() && (!conditional || teacher.recipe.model.label_dropout <= 0.0) {
        return Err(Error::Config(
            "recipe fields `kappa_*`: guidance needs a class-conditional teacher trained with label dropout > 0".into(),
        ));
    }
    // Label dropout: none in the generator; in the fake network only when it is trained
    // with guidance (SiD-LSG's context dropout, p = 0.1); the teacher runs in eval mode.
    let with_label_dropout = |p: f64| {
        let mut c = teacher.config.clone();
        if let UNetConfig::Song(s) = &mut c.unet {
            s.label_dropout = p;
        } else if let UNetConfig::Dhariwal(d) = &mut c.unet {
            d.label_dropout = p;
        }
        c
    };
    let fake_cfg = with_label_dropout(if recipe.guided() { 0.1 } else { 0.0 });
    let g_cfg = with_label_dropout(0.0);
    let t_net = edm_net(&teacher.config, &teacher.weights, &teacher.source, recipe.seed)?;
    let fake = edm_net(&fake_cfg, &teacher.weights, &teacher.source, recipe.seed.wrapping_add(1))?;
    let g = match &recipe.init_generator {
        Some(p) if recipe.method == "sid2a" => {
            let p = Path::new(p);
            edm_net(&g_cfg, &safetensors_io::load(p)?, p, recipe.seed.wrapping_add(2))?
        }
        _ => edm_net(&g_cfg, &teacher.weights, &teacher.source, recipe.seed.wrapping_add(2))?,
    };
    let res = t_net.img_resolution();
    let ch = t_net.img_channels();
    let mut d = Distiller::new(t_net, fake, g, [ch, res, res], cfg, recipe.seed.wrapping_add(3))?;

    // SiD is data-free: the training set is read only for a conditional teacher's labels
    // and SiDA's real images.
    let dir = recipe.data_dir.as_ref().map(PathBuf::from).unwrap_or_else(fmnist_dir);
    let needs_data = conditional || cfg.method == Method::Sida;
    let data = if needs_data { fmnist_32(&dir, Split::Train, 0)? } else { empty_dataset()? };
    let mut source = DataSource {
        data: &data,
        seed: recipe.seed,
        drawn: 0,
        epoch: 0,
        perm: Vec::new(),
        conditional,
        real: cfg.method == Method::Sida,
    };
    let ckpt = out.join("checkpoint.safetensors");
    if resume && ckpt.exists() {
        let extra = d.load_checkpoint(&ckpt)?;
        let s = extra
            .iter()
            .find(|r| r.name == "train.data_drawn")
            .ok_or_else(|| Error::Checkpoint { path: ckpt.clone(), detail: "no `train.data_drawn` entry".into() })?;
        source.drawn = Tensor::from_raw(s)?.to_vec::<i64>()?.first().copied().unwrap_or(0) as u64;
    }

    let fd = if recipe.eval_every > 0 { evaluator(recipe, &dir)? } else { None };
    if fd.is_none() && recipe.eval_every > 0 && !quiet {
        eprintln!("note: {} not found; FD-FMNIST is skipped (scorch train classifier makes it)", recipe.classifier);
    }
    let log = MetricsLog::open_resumed(out, d.iterations())?;
    let pb = progress_bar(recipe.steps, d.iterations());
    if quiet {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let t0 = Instant::now();
    let start = d.iterations();
    let mut last_fd = None;
    if start == 0 {
        if let (Some(fd), true) = (&fd, recipe.eval_every > 0) {
            let v = eval_fd(&d, fd, recipe, conditional)?;
            last_fd = Some(v);
            log.log(&serde_json::json!({"step": 0, "images": 0, "fd_fmnist": v}))?;
        }
    }
    while d.iterations() < recipe.steps {
        let stats = d.step(&mut |n| source.next(n))?;
        let it = d.iterations();
        pb.set_position(it);
        pb.set_message(format!("G {:.3} ψ {:.3}", stats.gen_loss, stats.fake_loss));
        if it % recipe.log_every == 0 || it == recipe.steps {
            let mut rec = serde_json::json!({
                "step": it, "images": d.images_seen(), "gen_loss": stats.gen_loss, "fake_loss": stats.fake_loss,
                "dropped": stats.dropped, "sec_per_step": t0.elapsed().as_secs_f64() / (it - start) as f64,
            });
            if let Some(v) = stats.disc_loss {
                rec["disc_loss"] = v.into();
            }
            if let Some(v) = stats.adv_bce {
                rec["adv_bce"] = v.into();
            }
            log.log(&rec)?;
        }
        if let (Some(fd), true) = (&fd, recipe.eval_every > 0 && it % recipe.eval_every == 0) {
            let v = eval_fd(&d, fd, recipe, conditional)?;
            last_fd = Some(v);
            log.log(&serde_json::json!({"step": it, "images": d.images_seen(), "fd_fmnist": v}))?;
            pb.println(format!("iteration {it}: FD-FMNIST {v:.3}"));
        }
        if it % recipe.checkpoint_every == 0 || it == recipe.steps {
            let drawn = Tensor::from_vec(vec![source.drawn as i64], &[1])?.to_raw("train.data_drawn")?;
            d.save_checkpoint(&ckpt, &[drawn])?;
        }
        if recipe.sample_every > 0 && it % recipe.sample_every == 0 {
            generator_grid(&d, recipe, conditional, &out.join(format!("samples-{it:07}.png")))?;
        }
        if recipe.max_minutes > 0.0 && t0.elapsed().as_secs_f64() > recipe.max_minutes * 60.0 && it < recipe.steps {
            let drawn = Tensor::from_vec(vec![source.drawn as i64], &[1])?.to_raw("train.data_drawn")?;
            d.save_checkpoint(&ckpt, &[drawn])?;
            pb.println(format!("stopping after {it} iterations: the {} minute limit is reached", recipe.max_minutes));
            break;
        }
    }
    pb.finish_and_clear();
    let generator = out.join("generator.safetensors");
    d.save_ema_generator(&generator)?;
    if recipe.sample_count > 0 {
        generator_grid(&d, recipe, conditional, &out.join("samples.png"))?;
    }
    Ok(DistillSummary {
        iterations: d.iterations(),
        images: d.images_seen(),
        seconds: t0.elapsed().as_secs_f64(),
        last_fd,
        generator,
    })
}

fn empty_dataset() -> Result<TensorDataset> {
    TensorDataset::new(Tensor::zeros(&[0, 1, 32, 32], DType::F32)?, Tensor::zeros(&[0], DType::I64)?)
}

/// Whether `dir` holds the Fashion-MNIST test images (gzipped or not).
pub fn has_test_split(dir: &Path) -> bool {
    ["t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte"].iter().any(|f| dir.join(f).exists())
}

/// The FD-FMNIST evaluator against the 10k test images, if the classifier and the test
/// set exist.
pub fn evaluator(recipe: &SidRecipe, data_dir: &Path) -> Result<Option<FdFmnist>> {
    let path = Path::new(&recipe.classifier);
    if !path.exists() || !has_test_split(data_dir) {
        return Ok(None);
    }
    let test = fmnist_32(data_dir, Split::Test, 0)?;
    Ok(Some(FdFmnist::new(path, test.images())?))
}

pub use crate::edm::train::eval_labels;

fn eval_fd<N: super::DistillNet>(
    d: &Distiller<N>,
    fd: &FdFmnist,
    recipe: &SidRecipe,
    conditional: bool,
) -> Result<f64> {
    let images = one_step_samples(d, recipe.eval_count, recipe.seed.wrapping_add(1000), conditional)?;
    fd.distance(&images)
}

/// `n` one-step EMA-generator samples in batches of 250, from a fixed seed.
pub fn one_step_samples<N: super::DistillNet>(
    d: &Distiller<N>,
    n: usize,
    seed: u64,
    conditional: bool,
) -> Result<Tensor> {
    batched_samples(n, seed, conditional, |z, l| d.sample_ema(z, l))
}

/// `n` one-step samples of a generator network (e.g. loaded from `generator.safetensors`).
pub fn generator_samples(g: &EdmPrecond, loss: &SidLoss, n: usize, seed: u64, conditional: bool) -> Result<Tensor> {
    let _ng = no_grad();
    batched_samples_of(n, seed, SampleShape::of(g, conditional), |z, l| loss.generate(g, z, l))
}

/// What a network samples: `[C, H, W]` and its number of classes (0: unconditional).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleShape {
    pub chw: [usize; 3],
    pub classes: usize,
}

impl SampleShape {
    /// Fashion-MNIST as EDM sees it: `[1, 32, 32]`, 10 classes when conditional.
    pub fn fmnist(conditional: bool) -> SampleShape {
        SampleShape { chw: [1, 32, 32], classes: if conditional { 10 } else { 0 } }
    }

    /// The images and labels `net` was built for.
    pub fn of(net: &EdmPrecond, conditional: bool) -> SampleShape {
        let r = net.img_resolution();
        SampleShape { chw: [net.img_channels(), r, r], classes: if conditional { net.label_dim() } else { 0 } }
    }
}

/// Calls `f(z, labels)` on batches of ≤ 250 fresh `z [b, 1, 32, 32]` from `seed` (labels
/// 0..9 in turn for a conditional model) and concatenates the results.
pub fn batched_samples(
    n: usize,
    seed: u64,
    conditional: bool,
    f: impl FnMut(&Tensor, Option<&Tensor>) -> Result<Tensor>,
) -> Result<Tensor> {
    batched_samples_of(n, seed, SampleShape::fmnist(conditional), f)
}

/// [`batched_samples`] for any image shape and class count.
pub fn batched_samples_of(
    n: usize,
    seed: u64,
    shape: SampleShape,
    mut f: impl FnMut(&Tensor, Option<&Tensor>) -> Result<Tensor>,
) -> Result<Tensor> {
    let gen = Generator::new(seed);
    let labels = eval_labels(n, shape.classes)?;
    let [c, h, w] = shape.chw;
    let mut parts = Vec::new();
    let mut i = 0;
    while i < n {
        let b = 250.min(n - i);
        let z = Tensor::randn(&[b, c, h, w], DType::F32, &gen)?;
        let l = labels.as_ref().map(|l| l.narrow(0, i, b)).transpose()?;
        parts.push(f(&z, l.as_ref())?);
        i += b;
    }
    Ok(Tensor::cat(&parts, 0)?)
}

fn generator_grid<N: super::DistillNet>(
    d: &Distiller<N>,
    recipe: &SidRecipe,
    conditional: bool,
    path: &Path,
) -> Result<()> {
    let n = recipe.sample_count;
    let x = one_step_samples(d, n, recipe.seed.wrapping_add(7), conditional)?;
    save_grid(&x, 8.min(n.max(1)), -1.0, 1.0, path)
}

/// `n` teacher samples (Heun with `steps` levels, NFE 2·steps − 1) from a fixed seed, in
/// batches of 250.
pub fn teacher_samples(net: &EdmPrecond, n: usize, steps: usize, seed: u64, conditional: bool) -> Result<Tensor> {
    let sampler = EdmSampler { num_steps: steps, ..EdmSampler::default() };
    let _ng = no_grad();
    let gen = Generator::new(seed.wrapping_add(1));
    batched_samples_of(n, seed, SampleShape::of(net, conditional), |z, l| {
        Ok(sampler.sample(net, z, l, &gen)?.cast(DType::F32)?)
    })
}
