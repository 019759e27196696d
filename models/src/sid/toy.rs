//! SiD on the 2-D toys: an EDM teacher ([`ToyDenoiser`]) trained on a toy set, then
//! distilled into a one-step generator, with sliced Wasserstein distances against the
//! toy's own sampler to compare the data, the teacher (Heun, NFE 35) and the generator.

use super::distill::{copy_params, DistillConfig, Distiller, Method, MicroBatch};
use crate::data::toy2d::Toy;
use crate::edm::toy::{ToyConfig, ToyDenoiser};
use crate::edm::{EdmLoss, EdmSampler};
use crate::error::Result;
use crate::metrics::toy::sliced_wasserstein;
use crate::optim::{Adam, AdamConfig, Optimizer};
use crate::params::ParamStore;
use scorch_engine::{no_grad, DType, Generator, Tensor};

/// How a toy teacher is trained (EDM's loss with σ_d = 1, Adam).
#[derive(Clone, Debug, PartialEq)]
pub struct ToyTeacherConfig {
    pub toy: Toy,
    pub net: ToyConfig,
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub seed: u64,
}

impl ToyTeacherConfig {
    /// Defaults for `toy`: a 4×128 MLP, 3000 Adam steps of 256 points at lr 1e-3.
    pub fn new(toy: Toy) -> ToyTeacherConfig {
        ToyTeacherConfig { toy, net: ToyConfig::default(), steps: 3000, batch: 256, lr: 1e-3, seed: 0 }
    }
}

/// The distillation settings of the toy runs (the tests and docs/results.md): upstream's
/// SiD / SiDA configuration with batch 128 in one micro-batch, lr 1e-3 for both networks,
/// EMA half-life 2000 points, and SiDA's warm-up scaled to 20 frozen and 40 SiD-only
/// iterations (upstream 100k and 200k images).
pub fn toy_distill_config(method: Method) -> DistillConfig {
    let mut c = if method == Method::Sida { DistillConfig::sida() } else { DistillConfig::sid() };
    c.batch = 128;
    c.batch_gpu = 128;
    c.lr_fake = 1e-3;
    c.lr_gen = 1e-3;
    c.ema_halflife_images = 2000.0;
    c.gen_freeze_images = 2560;
    c.sid_only_images = 5120;
    c
}

/// Points `[n, 2]` as the `[n, 2, 1, 1]` "images" the EDM code takes.
pub fn as_images(points: &Tensor) -> Result<Tensor> {
    let s = points.shape();
    Ok(points.reshape(&[s[0], s[1], 1, 1])?)
}

/// Trains a toy teacher; returns it in eval mode (its store is its own).
pub fn train_toy_teacher(cfg: &ToyTeacherConfig) -> Result<ToyDenoiser> {
    let store = ParamStore::new(DType::F32, cfg.seed);
    let net = ToyDenoiser::new(&store.root(), &cfg.net)?;
    let mut opt = Adam::new(store.named_parameters(), AdamConfig { lr: cfg.lr, ..AdamConfig::default() })?;
    let loss_fn = EdmLoss { sigma_data: cfg.net.sigma_data, ..EdmLoss::default() };
    let data_gen = Generator::new(cfg.seed.wrapping_add(1));
    let noise = Generator::new(cfg.seed.wrapping_add(2));
    for step in 0..cfg.steps {
        // Cosine decay to 10% over the run.
        let frac = step as f64 / cfg.steps.max(1) as f64;
        opt.set_lr(cfg.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * frac).cos())));
        opt.zero_grad();
        let x = as_images(&cfg.toy.sample(cfg.batch, &data_gen)?.cast(DType::F32)?)?;
        let loss = loss_fn.loss(&net, &x, None, &noise)?;
        loss.sum_all()?.mul_scalar(1.0 / cfg.batch as f64)?.backward()?;
        opt.step()?;
    }
    store.set_training(false);
    Ok(net)
}

/// A fresh network of the teacher's shape holding a copy of its weights.
pub fn clone_toy(net: &ToyDenoiser, seed: u64) -> Result<ToyDenoiser> {
    let store = ParamStore::new(DType::F32, seed);
    let copy = ToyDenoiser::new(&store.root(), net.config())?;
    copy_params(net.store(), &store)?;
    Ok(copy)
}

/// A distiller for a toy teacher: fake score and generator copied from it (or the
/// generator from `init_generator`, SiD²A).
pub fn toy_distiller(
    teacher: &ToyDenoiser,
    init_generator: Option<&ToyDenoiser>,
    cfg: DistillConfig,
    seed: u64,
) -> Result<Distiller<ToyDenoiser>> {
    let fake = clone_toy(teacher, seed.wrapping_add(11))?;
    let generator = clone_toy(init_generator.unwrap_or(teacher), seed.wrapping_add(12))?;
    let teacher = clone_toy(teacher, seed.wrapping_add(13))?;
    let dim = teacher.config().dim;
    Distiller::new(teacher, fake, generator, [dim, 1, 1], cfg, seed)
}

/// Runs `iterations` distillation iterations; SiDA draws its real points from `toy`.
pub fn run_toy(d: &mut Distiller<ToyDenoiser>, toy: Toy, iterations: usize, seed: u64) -> Result<()> {
    let data_gen = Generator::new(seed);
    let mut source = |n: usize| -> Result<MicroBatch> {
        Ok(MicroBatch { labels: None, real: Some(as_images(&toy.sample(n, &data_gen)?.cast(DType::F32)?)?) })
    };
    for _ in 0..iterations {
        d.step(&mut source)?;
    }
    Ok(())
}

/// `n` teacher samples (Heun, `steps` levels: NFE 2·steps − 1) as `[n, 2]`.
pub fn teacher_samples(teacher: &ToyDenoiser, n: usize, steps: usize, seed: u64) -> Result<Tensor> {
    let gen = Generator::new(seed);
    let dim = teacher.config().dim;
    let z = Tensor::randn(&[n, dim, 1, 1], DType::F32, &gen)?;
    let _ng = no_grad();
    let sampler = EdmSampler { num_steps: steps, ..EdmSampler::default() };
    Ok(sampler.sample(teacher, &z, None, &gen)?.reshape(&[n, dim])?)
}

/// `n` one-step samples of the EMA generator as `[n, 2]`.
pub fn generator_samples(d: &Distiller<ToyDenoiser>, n: usize, seed: u64) -> Result<Tensor> {
    let dim = d.teacher.config().dim;
    let z = Tensor::randn(&[n, dim, 1, 1], DType::F32, &Generator::new(seed))?;
    Ok(d.sample_ema(&z, None)?.reshape(&[n, dim])?)
}

/// Sliced Wasserstein-1 distance (200 projections) between `points [n, 2]` and `n` fresh
/// samples of `toy`.
pub fn toy_swd(points: &Tensor, toy: Toy, seed: u64) -> Result<f64> {
    let n = points.shape()[0];
    let d = points.shape()[1];
    let reference = toy.sample(n, &Generator::new(seed))?.to_vec_f64()?;
    let p = points.cast(DType::F64)?.to_vec_f64()?;
    Ok(sliced_wasserstein(&p, &reference, d, 200, seed.wrapping_add(1))?)
}
