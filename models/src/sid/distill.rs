//! The SiD / SiDA iteration (`training/sid_training_loop.py`, spec §3.6 and §4.2–4.3):
//! one fake-score step, then one generator step, then the generator's EMA.

use super::loss::SidLoss;
use super::DistillNet;
use crate::error::{Error, Result};
use crate::optim::{clip_grad_value, grad_nan_to_num, Adam, AdamConfig, Ema, Optimizer};
use crate::params::ParamStore;
use scorch_engine::safetensors_io::{self, RawTensor};
use scorch_engine::{no_grad, DType, Generator, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Which distillation objective.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// SiD: data-free, the score-identity generator loss alone.
    Sid,
    /// SiDA (and SiD²A, which only initialises the generator differently): the fake
    /// network's encoder doubles as a discriminator on real images.
    Sida,
}

/// Everything an iteration needs besides the networks. [`DistillConfig::sid`] and
/// [`DistillConfig::sida`] hold the upstream CIFAR-10 values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DistillConfig {
    pub method: Method,
    pub loss: SidLoss,
    /// Generator samples per step (upstream 256).
    pub batch: usize,
    /// Micro-batch (upstream `batch-gpu`, 16 for SiD and 32 for SiDA): gradients are
    /// accumulated over `batch / batch_gpu` rounds, and SiDA's BCE means run per
    /// micro-batch, as on one upstream GPU.
    pub batch_gpu: usize,
    /// Adam learning rate of the fake-score network ψ (upstream 1e-5).
    pub lr_fake: f64,
    /// Adam learning rate of the generator θ (upstream 1e-5).
    pub lr_gen: f64,
    /// Adam β1 of ψ (upstream 0).
    pub beta1_fake: f64,
    /// Adam β1 of θ (upstream 0; SiD on FFHQ 0.9).
    pub beta1_gen: f64,
    /// Adam β2 of both (upstream 0.999).
    pub beta2: f64,
    /// Adam ε of both (upstream 1e-8 in fp32, 1e-6 in fp16).
    pub eps: f64,
    /// Loss scale of the fake-score loss (upstream `ls` 1).
    pub ls: f64,
    /// Loss scale of the generator loss (upstream `lsg` 100).
    pub lsg: f64,
    /// SiDA: loss scale of the discriminator loss (upstream `lsd` 1).
    pub lsd: f64,
    /// SiDA: loss scale of the adversarial generator loss (upstream `lsg_gan` 0.01).
    pub lsg_gan: f64,
    /// EMA half-life of the generator in images (upstream 0.5 Mimg).
    pub ema_halflife_images: f64,
    /// EMA ramp-up ratio (upstream 0.05).
    pub ema_rampup_ratio: f64,
    /// SiDA: the generator takes no optimizer step until this many images (upstream 100k).
    pub gen_freeze_images: u64,
    /// SiDA: the generator loss is SiD alone until this many images (upstream 200k), then
    /// `0.5·SiD + 0.5·adversarial`.
    pub sid_only_images: u64,
    /// SiDA: ψ's gradients are clipped elementwise to ±this (upstream 1).
    pub fake_grad_clip: f64,
}

impl DistillConfig {
    /// SiD on CIFAR-10 (`run_sid.sh`): α 1.2, batch 256 (16 per GPU), lr 1e-5, β1 0.
    pub fn sid() -> DistillConfig {
        DistillConfig {
            method: Method::Sid,
            loss: SidLoss::default(),
            batch: 256,
            batch_gpu: 16,
            lr_fake: 1e-5,
            lr_gen: 1e-5,
            beta1_fake: 0.0,
            beta1_gen: 0.0,
            beta2: 0.999,
            eps: 1e-8,
            ls: 1.0,
            lsg: 100.0,
            lsd: 1.0,
            lsg_gan: 0.01,
            ema_halflife_images: 500_000.0,
            ema_rampup_ratio: 0.05,
            gen_freeze_images: 100_000,
            sid_only_images: 200_000,
            fake_grad_clip: 1.0,
        }
    }

    /// SiDA on CIFAR-10 (`run_sida.sh`): α 1, 32 per GPU, otherwise as SiD.
    pub fn sida() -> DistillConfig {
        let mut c = DistillConfig::sid();
        c.method = Method::Sida;
        c.loss.alpha = 1.0;
        c.batch_gpu = 32;
        c
    }

    /// Checks values an iteration cannot work with.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(format!("distillation: {m}")));
        if self.batch == 0 || self.batch_gpu == 0 || !self.batch.is_multiple_of(self.batch_gpu) {
            return bad(&format!(
                "batch ({}) must be a positive multiple of batch_gpu ({})",
                self.batch, self.batch_gpu
            ));
        }
        if [self.lr_fake, self.lr_gen].iter().any(|l| l.is_nan() || *l <= 0.0) {
            return bad("learning rates must be positive");
        }
        let (s, t) = (self.loss.sigma_init, self.loss.t_max);
        if s.is_nan() || s <= 0.0 || t.is_nan() || t <= 0.0 || t > 1.0 {
            return bad("need σ_init > 0 and 0 < t_max ≤ 1");
        }
        Ok(())
    }
}

/// One micro-batch from the data source: one-hot labels for a conditional teacher (drawn
/// from the data, as upstream) and, for SiDA, real images.
#[derive(Clone, Debug, Default)]
pub struct MicroBatch {
    pub labels: Option<Tensor>,
    pub real: Option<Tensor>,
}

/// Per-iteration numbers (losses are per-sample sums averaged over the batch).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepStats {
    pub fake_loss: f64,
    pub gen_loss: f64,
    /// SiDA: the discriminator loss Σλ(BCE_r + BCE_f)/2 / B.
    pub disc_loss: Option<f64>,
    /// SiDA: the batch-mean generator BCE.
    pub adv_bce: Option<f64>,
    /// Samples dropped for NaN.
    pub dropped: usize,
}

/// The three networks, two optimizers, the generator's EMA and the counters.
pub struct Distiller<N: DistillNet> {
    /// f_φ: frozen (no parameter gradients), always in eval mode.
    pub teacher: N,
    /// f_ψ.
    pub fake: N,
    /// G_θ.
    pub generator: N,
    opt_fake: Adam,
    opt_gen: Adam,
    ema: Ema,
    cfg: DistillConfig,
    images_seen: u64,
    iterations: u64,
    noise: Generator,
    shape: [usize; 3],
}

/// Copies every parameter of `from` into `to` (same names and shapes).
pub fn copy_params(from: &ParamStore, to: &ParamStore) -> Result<()> {
    to.load_raw(&from.to_raw()?, Path::new("<copy>"), true)?;
    Ok(())
}

fn prefixed(raw: Vec<RawTensor>, prefix: &str) -> Vec<RawTensor> {
    raw.into_iter()
        .map(|mut r| {
            r.name = format!("{prefix}{}", r.name);
            r
        })
        .collect()
}

fn strip(raw: &[RawTensor], prefix: &str) -> Vec<RawTensor> {
    raw.iter()
        .filter_map(|r| {
            r.name.strip_prefix(prefix).map(|n| {
                let mut r = r.clone();
                r.name = n.to_string();
                r
            })
        })
        .collect()
}

impl<N: DistillNet> Distiller<N> {
    /// Starts a distillation. `fake` and `generator` must already hold their initial
    /// weights (the teacher's, or a SiD generator's for SiD²A: see [`copy_params`]).
    /// The teacher's parameters stop requiring gradients; the EMA starts at the
    /// generator's weights. `sample_shape` is `[C, H, W]` of one sample; `seed` keys the
    /// stream of z, σ and noise.
    pub fn new(
        teacher: N,
        fake: N,
        generator: N,
        sample_shape: [usize; 3],
        cfg: DistillConfig,
        seed: u64,
    ) -> Result<Distiller<N>> {
        cfg.validate()?;
        for (_, p) in teacher.store().named_parameters() {
            p.set_requires_grad(false)?;
        }
        teacher.store().set_training(false);
        let adam =
            |lr: f64, beta1: f64| AdamConfig { lr, beta1, beta2: cfg.beta2, eps: cfg.eps, ..AdamConfig::default() };
        let opt_fake = Adam::new(fake.store().named_parameters(), adam(cfg.lr_fake, cfg.beta1_fake))?;
        let opt_gen = Adam::new(generator.store().named_parameters(), adam(cfg.lr_gen, cfg.beta1_gen))?;
        let ema = Ema::new(generator.store().named_parameters(), 0.0)?;
        fake.store().set_training(false);
        generator.store().set_training(false);
        Ok(Distiller {
            teacher,
            fake,
            generator,
            opt_fake,
            opt_gen,
            ema,
            cfg,
            images_seen: 0,
            iterations: 0,
            noise: Generator::new(seed),
            shape: sample_shape,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DistillConfig {
        &self.cfg
    }

    /// Images counted so far (one batch per iteration, as upstream).
    pub fn images_seen(&self) -> u64 {
        self.images_seen
    }

    /// Iterations done.
    pub fn iterations(&self) -> u64 {
        self.iterations
    }

    /// The generator's EMA.
    pub fn ema(&self) -> &Ema {
        &self.ema
    }

    /// One iteration. `source(n)` returns a micro-batch of `n` (labels for a conditional
    /// teacher; real images for SiDA); it is called once per micro-batch of each step.
    pub fn step(&mut self, source: &mut dyn FnMut(usize) -> Result<MicroBatch>) -> Result<StepStats> {
        let cfg = self.cfg;
        let sida = cfg.method == Method::Sida;
        let rounds = cfg.batch / cfg.batch_gpu;
        let scale = 1.0 / cfg.batch as f64;
        let mut stats = StepStats::default();

        // (1) Fake-score (and discriminator) step: G in eval mode, no graph through it.
        self.fake.store().set_training(true);
        self.generator.store().set_training(false);
        self.opt_fake.zero_grad();
        let mut disc_total = 0.0;
        for _ in 0..rounds {
            let mb = source(cfg.batch_gpu)?;
            let real = if sida { Some(need_real(&mb)?) } else { None };
            let x_g = {
                let _ng = no_grad();
                let z = self.latents(cfg.batch_gpu)?;
                self.cfg.loss.generate(&self.generator, &z, mb.labels.as_ref())?.detach()
            };
            let (loss, disc) =
                cfg.loss.fake_score_loss(&self.fake, &x_g, mb.labels.as_ref(), real.as_ref(), &self.noise)?;
            let mut total = loss.sum_all()?;
            stats.fake_loss += total.item()? * scale;
            stats.dropped += cfg.batch_gpu - loss.numel();
            total = total.mul_scalar(cfg.ls * scale)?;
            if let Some(d) = disc {
                disc_total += d.item()? * scale;
                total = total.add(&d.mul_scalar(cfg.lsd * scale)?)?;
            }
            total.backward()?;
        }
        let fake_params = self.fake.store().parameters();
        grad_nan_to_num(&fake_params)?;
        if sida {
            clip_grad_value(&fake_params, cfg.fake_grad_clip)?;
            stats.disc_loss = Some(disc_total);
        }
        self.opt_fake.step()?;
        self.fake.store().set_training(false);

        // (2) Generator step with the updated ψ: fresh labels and z, G in train mode,
        // ψ's parameters frozen for the step (input gradients only).
        self.generator.store().set_training(true);
        self.opt_gen.zero_grad();
        for p in &fake_params {
            p.set_requires_grad(false)?;
        }
        let result = self.generator_rounds(rounds, scale, source, &mut stats);
        for p in &fake_params {
            p.set_requires_grad(true)?;
        }
        result?;
        grad_nan_to_num(&self.generator.store().parameters())?;
        if !(sida && self.images_seen < cfg.gen_freeze_images) {
            self.opt_gen.step()?;
        }
        self.generator.store().set_training(false);

        // (3) EMA (half-life ramped up with the images seen before this batch) and counters.
        let beta = Ema::edm_beta(cfg.ema_halflife_images, cfg.batch, self.images_seen, Some(cfg.ema_rampup_ratio));
        self.ema.set_beta(beta)?;
        self.ema.update()?;
        self.images_seen += cfg.batch as u64;
        self.iterations += 1;
        Ok(stats)
    }

    fn generator_rounds(
        &mut self,
        rounds: usize,
        scale: f64,
        source: &mut dyn FnMut(usize) -> Result<MicroBatch>,
        stats: &mut StepStats,
    ) -> Result<()> {
        let cfg = self.cfg;
        let sida = cfg.method == Method::Sida;
        let mut adv = 0.0;
        for _ in 0..rounds {
            let mb = source(cfg.batch_gpu)?;
            let z = self.latents(cfg.batch_gpu)?;
            let x_g = cfg.loss.generate(&self.generator, &z, mb.labels.as_ref())?;
            let terms =
                cfg.loss.generator_loss(&self.teacher, &self.fake, &x_g, mb.labels.as_ref(), sida, &self.noise)?;
            stats.dropped += terms.dropped;
            let sid_sum = terms.loss.sum_all()?;
            stats.gen_loss += sid_sum.item()? * scale;
            let mut total = sid_sum.mul_scalar(cfg.lsg * scale)?;
            if let Some(logits) = &terms.logits {
                // BCE against "real" on clamped logits, a mean over the micro-batch and the
                // logit map; each sample's share is re-weighted by its w and scaled to a
                // pixel sum (§4.3).
                let bce = logits.clamp(-10.0, 10.0)?.neg()?.softplus()?.mean_all()?;
                adv += bce.item()? / rounds as f64;
                let pixels = (x_g.numel() / x_g.shape()[0]) as f64;
                let adv_sum = terms.weight.sum_all()?.cast(bce.dtype())?.mul(&bce)?.mul_scalar(pixels)?;
                if self.images_seen >= cfg.sid_only_images {
                    total = total.mul_scalar(0.5)?.add(&adv_sum.mul_scalar(0.5 * cfg.lsg_gan * scale)?)?;
                }
            }
            total.backward()?;
        }
        if sida {
            stats.adv_bce = Some(adv);
        }
        Ok(())
    }

    fn latents(&self, n: usize) -> Result<Tensor> {
        let [c, h, w] = self.shape;
        Ok(Tensor::randn(&[n, c, h, w], DType::F32, &self.noise)?)
    }

    /// One-step samples `G(σ_init·z)` from the EMA generator (eval mode) for `z [B, C, H, W]`.
    pub fn sample_ema(&self, z: &Tensor, labels: Option<&Tensor>) -> Result<Tensor> {
        self.ema.swap()?;
        let r = {
            let _ng = no_grad();
            self.cfg.loss.generate(&self.generator, z, labels)
        };
        self.ema.swap()?;
        r
    }

    /// Writes the EMA generator's weights alone (under the network's own names, loadable
    /// into a network of the teacher's architecture) to `path`, atomically.
    pub fn save_ema_generator(&self, path: &Path) -> Result<()> {
        self.ema.swap()?;
        let r = self.generator.store().save(path);
        self.ema.swap()?;
        r
    }

    /// Saves everything a resumed run needs except the teacher: both networks, both
    /// optimizers, the EMA, the counters and every random stream, as one safetensors file
    /// written atomically (`G.*`, `fake.*`, `ema.*`, `train.*` entries) plus `extra`
    /// entries whose names start with `train.`.
    pub fn save_checkpoint(&self, path: &Path, extra: &[RawTensor]) -> Result<()> {
        let mut t = prefixed(self.generator.store().to_raw()?, "G.");
        t.extend(prefixed(self.opt_gen.state_tensors()?, "G."));
        t.extend(prefixed(self.fake.store().to_raw()?, "fake."));
        t.extend(prefixed(self.opt_fake.state_tensors()?, "fake."));
        t.extend(self.ema.state_tensors()?);
        let (s0, o0) = self.noise.state();
        let (s1, o1) = self.generator.store().rng().state();
        let (s2, o2) = self.fake.store().rng().state();
        let v = vec![self.iterations, self.images_seen, s0, o0, s1, o1, s2, o2];
        let v: Vec<i64> = v.into_iter().map(|x| x as i64).collect();
        t.push(Tensor::from_vec(v, &[8])?.to_raw("train.distill_state")?);
        if let Some(bad) = extra.iter().find(|r| !r.name.starts_with("train.")) {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                detail: format!("extra entry `{}` must start with `train.`", bad.name),
            });
        }
        t.extend(extra.iter().cloned());
        let meta = BTreeMap::from([("format".to_string(), "scorch.sid-checkpoint".to_string())]);
        safetensors_io::save(path, &t, Some(&meta))?;
        Ok(())
    }

    /// Restores a file written by [`Distiller::save_checkpoint`] and returns its `train.`
    /// entries (the distiller's own state included). Everything is checked against the
    /// networks and optimizers; a mismatch is an error naming the file.
    pub fn load_checkpoint(&mut self, path: &Path) -> Result<Vec<RawTensor>> {
        let raw = safetensors_io::load(path)?;
        let err = |d: &str| Error::Checkpoint { path: path.to_path_buf(), detail: d.to_string() };
        let g = strip(&raw, "G.");
        let f = strip(&raw, "fake.");
        let (g_opt, g_par): (Vec<_>, Vec<_>) = g.into_iter().partition(|r| r.name.starts_with("opt."));
        let (f_opt, f_par): (Vec<_>, Vec<_>) = f.into_iter().partition(|r| r.name.starts_with("opt."));
        if g_par.is_empty() || f_par.is_empty() {
            return Err(err("not a distillation checkpoint (no `G.` or `fake.` weights)"));
        }
        let ema: Vec<RawTensor> = raw.iter().filter(|r| r.name.starts_with("ema.")).cloned().collect();
        let extra: Vec<RawTensor> = raw.iter().filter(|r| r.name.starts_with("train.")).cloned().collect();
        let st =
            extra.iter().find(|r| r.name == "train.distill_state").ok_or_else(|| err("no `train.distill_state`"))?;
        let v = Tensor::from_raw(st)?.to_vec::<i64>()?;
        if v.len() != 8 {
            return Err(err("`train.distill_state` must hold 8 values"));
        }
        self.generator.store().load_raw(&g_par, path, true)?;
        self.fake.store().load_raw(&f_par, path, true)?;
        self.opt_gen.load_state_tensors(&g_opt, path)?;
        self.opt_fake.load_state_tensors(&f_opt, path)?;
        self.ema.load_state_tensors(&ema, path)?;
        let v: Vec<u64> = v.into_iter().map(|x| x as u64).collect();
        self.iterations = v[0];
        self.images_seen = v[1];
        self.noise.set_state(v[2], v[3]);
        self.generator.store().rng().set_state(v[4], v[5]);
        self.fake.store().rng().set_state(v[6], v[7]);
        Ok(extra)
    }
}

fn need_real(mb: &MicroBatch) -> Result<Tensor> {
    mb.real.clone().ok_or_else(|| Error::Config("SiDA: the data source gave no real images".into()))
}
