//! Optimizers against PyTorch, clipping, EMA, and exact resumption from checkpoints.

use scorch_engine::{DType, Tensor};
use scorch_models::nn::{Conv2d, Conv2dConfig, Linear, Module};
use scorch_models::optim::{
    clip_grad_norm, load_checkpoint, save_checkpoint, Adam, AdamConfig, Ema, Optimizer, Sgd, SgdConfig,
};
use scorch_models::params::{Init, ParamPath, ParamStore};
use scorch_models::Result;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("scorch-optim-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir is writable");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The regression problem of `optref.py` below: `w [2,3]`, `b [3]`, MSE of `x w + b`.
fn regression(store: &ParamStore) -> Result<(Tensor, Tensor)> {
    let root = store.root();
    let w = root.get_or_init("w", &[2, 3], Init::Zeros)?;
    let b = root.get_or_init("b", &[3], Init::Zeros)?;
    let _ng = scorch_engine::no_grad();
    w.assign(&Tensor::from_vec(vec![0.5f32, -0.25, 1.0, -1.0, 0.75, 0.1], &[2, 3])?)?;
    b.assign(&Tensor::from_vec(vec![0.1f32, -0.2, 0.3], &[3])?)?;
    Ok((w, b))
}

fn regression_loss(w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let x = Tensor::from_vec(vec![1.0f32, 2.0, -1.0, 0.5, 0.3, -0.7, 2.0, 1.0], &[4, 2])?;
    let t = Tensor::from_vec(vec![1.0f32, 0.0, -1.0, 0.5, 0.5, 0.5, -1.0, 2.0, 0.0, 0.0, 1.0, 1.0], &[4, 3])?;
    Ok(x.matmul(w)?.add(b)?.mse_loss(&t)?)
}

/// Five steps of `opt` on the regression problem; returns `w` then `b`, flattened.
fn five_steps(make: impl FnOnce(Vec<(String, Tensor)>) -> Result<Box<dyn Optimizer>>) -> Result<Vec<f32>> {
    let store = ParamStore::new(DType::F32, 0);
    let (w, b) = regression(&store)?;
    let mut opt = make(store.named_parameters())?;
    for _ in 0..5 {
        opt.zero_grad();
        regression_loss(&w, &b)?.backward()?;
        opt.step()?;
    }
    let mut out = w.to_vec_f32()?;
    out.extend(b.to_vec_f32()?);
    Ok(out)
}

fn assert_close(got: &[f32], torch: &[f32], what: &str) {
    for (i, (g, t)) in got.iter().zip(torch).enumerate() {
        assert!((g - t).abs() <= 2e-6 * t.abs().max(1.0), "{what}[{i}]: {g} vs PyTorch {t}");
    }
}

// Reference values from PyTorch 2.x, float32 on the CPU:
//
// ```python
// import torch
// w0 = torch.tensor([[0.5, -0.25, 1.0], [-1.0, 0.75, 0.1]])
// b0 = torch.tensor([0.1, -0.2, 0.3])
// x = torch.tensor([[1.0, 2.0], [-1.0, 0.5], [0.3, -0.7], [2.0, 1.0]])
// t = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.5], [-1.0, 2.0, 0.0], [0.0, 1.0, 1.0]])
// def run(make):
//     w = w0.clone().requires_grad_(); b = b0.clone().requires_grad_()
//     opt = make([w, b])
//     for _ in range(5):
//         opt.zero_grad()
//         torch.nn.functional.mse_loss(x @ w + b, t).backward()
//         opt.step()
//     return w.detach().flatten().tolist() + b.detach().tolist()
// run(lambda p: torch.optim.Adam(p, lr=0.1, weight_decay=0.01))                       # ADAM
// run(lambda p: torch.optim.AdamW(p, lr=0.1, weight_decay=0.1))                       # ADAMW
// run(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01))  # SGD_NESTEROV
// run(lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.5, dampening=0.3))             # SGD_DAMPENED
// ```
const ADAM: [f32; 9] =
    [0.28260964, 0.17731564, 0.52125925, -0.510278, 0.24988486, -0.36691415, 0.4764201, 0.28875893, -0.14249694];
const ADAMW: [f32; 9] =
    [0.26441586, 0.18366623, 0.48433897, -0.47182053, 0.22334129, -0.36037654, 0.462374, 0.28955925, -0.14362939];
const SGD_NESTEROV: [f32; 9] =
    [0.20075585, 0.10702286, 0.06385727, 0.25511706, -0.027363727, -0.5623136, 0.22060922, 0.473739, -0.022002472];
const SGD_DAMPENED: [f32; 9] =
    [0.49156597, -0.17076102, 0.704642, -0.68141264, 0.5941646, -0.1380933, 0.1717289, -0.060710076, 0.16119868];

#[test]
fn adam_and_adamw_match_pytorch() -> Result<()> {
    let adam =
        five_steps(|p| Ok(Box::new(Adam::new(p, AdamConfig { lr: 0.1, weight_decay: 0.01, ..Default::default() })?)))?;
    assert_close(&adam, &ADAM, "Adam");
    let adamw =
        five_steps(|p| Ok(Box::new(Adam::new(p, AdamConfig { lr: 0.1, weight_decay: 0.1, ..AdamConfig::adamw() })?)))?;
    assert_close(&adamw, &ADAMW, "AdamW");
    Ok(())
}

#[test]
fn sgd_matches_pytorch() -> Result<()> {
    let cfg = SgdConfig { lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 0.01, ..Default::default() };
    assert_close(&five_steps(|p| Ok(Box::new(Sgd::new(p, cfg)?)))?, &SGD_NESTEROV, "SGD nesterov");
    let cfg = SgdConfig { lr: 0.05, momentum: 0.5, dampening: 0.3, ..Default::default() };
    assert_close(&five_steps(|p| Ok(Box::new(Sgd::new(p, cfg)?)))?, &SGD_DAMPENED, "SGD dampened");
    Ok(())
}

#[test]
fn bad_hyper_parameters_and_parameters_are_refused() -> Result<()> {
    let store = ParamStore::new(DType::F32, 0);
    regression(&store)?;
    assert!(Adam::new(store.named_parameters(), AdamConfig { beta1: 1.0, ..Default::default() }).is_err());
    assert!(Adam::new(store.named_parameters(), AdamConfig { lr: -1.0, ..Default::default() }).is_err());
    assert!(Sgd::new(store.named_parameters(), SgdConfig { nesterov: true, ..Default::default() }).is_err());
    let frozen = Tensor::zeros(&[2], DType::F32)?;
    let err = Adam::new(vec![("frozen".to_string(), frozen)], AdamConfig::default())
        .err()
        .expect("a tensor without requires_grad is refused");
    assert!(err.to_string().contains("frozen"), "{err}");
    let mut twice = store.named_parameters();
    twice.push(twice[0].clone());
    assert!(Adam::new(twice, AdamConfig::default()).is_err());
    Ok(())
}

#[test]
fn parameters_without_gradients_are_left_alone() -> Result<()> {
    let store = ParamStore::new(DType::F32, 0);
    let (w, b) = regression(&store)?;
    let mut opt = Adam::new(store.named_parameters(), AdamConfig::default())?;
    let b0 = b.to_vec_f32()?;
    w.sum(&[], false)?.backward()?;
    opt.step()?;
    assert_eq!(b.to_vec_f32()?, b0);
    assert_eq!(opt.state("b").map(|s| s.2), Some(0));
    assert_eq!(opt.state("w").map(|s| s.2), Some(1));
    Ok(())
}

#[test]
fn clipping_scales_to_the_max_norm_and_reports_the_norm() -> Result<()> {
    let store = ParamStore::new(DType::F32, 0);
    let a = store.root().get_or_init("a", &[2], Init::Zeros)?;
    let b = store.root().get_or_init("b", &[1], Init::Zeros)?;
    // d/da = [3, 0], d/db = [4]: global norm 5.
    let ca = Tensor::from_vec(vec![3.0f32, 0.0], &[2])?;
    let cb = Tensor::from_vec(vec![4.0f32], &[1])?;
    // Both parameters in one sum, so their gradients come from one graph.
    a.mul(&ca)?.sum(&[], false)?.add(&b.mul(&cb)?.sum(&[], false)?)?.backward()?;
    let params = store.parameters();
    let norm = clip_grad_norm(&params, 1.0)?;
    assert!((norm - 5.0).abs() < 1e-6);
    let ga = a.grad().expect("a has a gradient").to_vec_f32()?;
    let gb = b.grad().expect("b has a gradient").to_vec_f32()?;
    assert!((ga[0] - 0.6).abs() < 1e-6 && ga[1] == 0.0 && (gb[0] - 0.8).abs() < 1e-6, "{ga:?} {gb:?}");
    // Under the limit: unchanged.
    assert!((clip_grad_norm(&params, 10.0)? - 1.0).abs() < 1e-5);
    assert!((a.grad().expect("still there").to_vec_f32()?[0] - 0.6).abs() < 1e-6);
    Ok(())
}

#[test]
fn clipping_does_not_touch_a_gradient_shared_by_two_parameters_twice() -> Result<()> {
    // `a + b` gives both the same gradient tensor; clipping must scale each exactly once.
    let store = ParamStore::new(DType::F32, 0);
    let a = store.root().get_or_init("a", &[3], Init::Zeros)?;
    let b = store.root().get_or_init("b", &[3], Init::Zeros)?;
    a.add(&b)?.mul_scalar(2.0)?.sum(&[], false)?.backward()?;
    let norm = clip_grad_norm(&store.parameters(), 1.0)?;
    assert!((norm - (24f64).sqrt()).abs() < 1e-5);
    let want = 2.0 / 24f32.sqrt();
    for t in [&a, &b] {
        for g in t.grad().expect("has a gradient").to_vec_f32()? {
            assert!((g - want).abs() < 1e-6, "{g} vs {want}");
        }
    }
    Ok(())
}

#[test]
fn ema_follows_the_half_life_rule() -> Result<()> {
    // EDM: beta = 0.5 ** (batch / half_life_images).
    assert!((Ema::beta_from_half_life(500_000.0, 512) - 0.5f64.powf(512.0 / 500_000.0)).abs() < 1e-15);
    assert!((Ema::beta_from_half_life(1000.0, 1000) - 0.5).abs() < 1e-15);
    // Ramp-up caps the half-life at images_seen · ratio.
    assert!((Ema::edm_beta(1e6, 100, 1000, Some(0.1)) - 0.5).abs() < 1e-15);
    let store = ParamStore::new(DType::F64, 0);
    let p = store.root().get_or_init("p", &[2], Init::Zeros)?;
    let mut ema = Ema::from_half_life_images(store.named_parameters(), 1.0, 1)?;
    assert_eq!(ema.beta(), 0.5);
    {
        let _ng = scorch_engine::no_grad();
        p.assign(&Tensor::from_vec(vec![1.0f64, -2.0], &[2])?)?;
    }
    ema.update()?;
    ema.update()?;
    let shadow = ema.shadow("p").expect("p is averaged").to_vec_f64()?;
    assert_eq!(shadow, [0.75, -1.5]);
    ema.swap()?;
    assert_eq!(p.to_vec_f64()?, [0.75, -1.5]);
    ema.swap()?;
    assert_eq!(p.to_vec_f64()?, [1.0, -2.0]);
    Ok(())
}

/// A small conv net: conv → relu → conv (stride 2) → relu → mean over space → linear.
struct SmallConvNet {
    c1: Conv2d,
    c2: Conv2d,
    head: Linear,
}

impl SmallConvNet {
    fn new(p: &ParamPath) -> Result<SmallConvNet> {
        Ok(SmallConvNet {
            c1: Conv2d::new(&p.pp("c1"), 1, 4, 3, Conv2dConfig::same(3))?,
            c2: Conv2d::new(&p.pp("c2"), 4, 8, 3, Conv2dConfig { stride: 2, padding: 1, ..Default::default() })?,
            head: Linear::new(&p.pp("head"), 8, 3)?,
        })
    }
}

impl Module for SmallConvNet {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.c2.forward(&self.c1.forward(x)?.relu()?)?.relu()?;
        self.head.forward(&h.mean(&[2, 3], false)?)
    }
}

fn toy_batch(seed: u64) -> Result<(Tensor, Tensor)> {
    let gen = scorch_engine::Generator::new(seed);
    let x = Tensor::randn(&[6, 1, 8, 8], DType::F32, &gen)?;
    let y = Tensor::from_vec(vec![0i64, 1, 2, 0, 1, 2], &[6])?;
    Ok((x, y))
}

/// One training step; returns the loss before the update.
fn train_step(net: &SmallConvNet, opt: &mut dyn Optimizer, x: &Tensor, y: &Tensor) -> Result<f64> {
    opt.zero_grad();
    let loss = net.forward(x)?.cross_entropy(y, 0.0)?;
    loss.backward()?;
    opt.step()?;
    Ok(loss.item()?)
}

#[test]
fn a_conv_net_and_adam_reduce_the_loss() -> Result<()> {
    let store = ParamStore::new(DType::F32, 3);
    let net = SmallConvNet::new(&store.root())?;
    let mut opt = Adam::new(store.named_parameters(), AdamConfig { lr: 1e-2, ..Default::default() })?;
    let (x, y) = toy_batch(11)?;
    let first = train_step(&net, &mut opt, &x, &y)?;
    let mut last = first;
    for _ in 0..30 {
        last = train_step(&net, &mut opt, &x, &y)?;
    }
    assert!(last < 0.5 * first, "loss went from {first} to {last}");
    Ok(())
}

#[test]
fn a_resumed_run_continues_bit_for_bit() -> Result<()> {
    let dir = TempDir::new("resume");
    let ckpt = dir.0.join("ckpt.safetensors");
    let batches: Vec<(Tensor, Tensor)> = (0..6).map(toy_batch).collect::<Result<_>>()?;
    let cfg = AdamConfig { lr: 3e-3, ..AdamConfig::adamw() };

    // Reference: 6 uninterrupted steps (EMA too), checkpointing after the third.
    let store = ParamStore::new(DType::F32, 5);
    let net = SmallConvNet::new(&store.root())?;
    let mut opt = Adam::new(store.named_parameters(), cfg)?;
    let mut ema = Ema::new(store.named_parameters(), 0.9)?;
    let mut losses = Vec::new();
    for (i, (x, y)) in batches.iter().enumerate() {
        losses.push(train_step(&net, &mut opt, x, y)?);
        ema.update()?;
        if i == 2 {
            save_checkpoint(&ckpt, &store, Some(&opt), Some(&ema))?;
        }
    }

    // Resume from a differently initialised model: the checkpoint must overwrite it all.
    let store2 = ParamStore::new(DType::F32, 99);
    let net2 = SmallConvNet::new(&store2.root())?;
    let mut opt2 = Adam::new(store2.named_parameters(), cfg)?;
    let mut ema2 = Ema::new(store2.named_parameters(), 0.9)?;
    load_checkpoint(&ckpt, &store2, Some(&mut opt2), Some(&mut ema2))?;
    for (i, (x, y)) in batches.iter().enumerate().skip(3) {
        let loss = train_step(&net2, &mut opt2, x, y)?;
        ema2.update()?;
        assert_eq!(loss.to_bits(), losses[i].to_bits(), "loss at step {i}");
    }
    for ((n, a), (_, b)) in store.named_parameters().iter().zip(store2.named_parameters().iter()) {
        assert_eq!(a.to_bytes()?, b.to_bytes()?, "parameter {n}");
        assert_eq!(opt.state(n).map(|s| s.2), opt2.state(n).map(|s| s.2), "step of {n}");
        let (m1, m2) = (opt.state(n).expect("state").0.to_bytes()?, opt2.state(n).expect("state").0.to_bytes()?);
        assert_eq!(m1, m2, "first moment of {n}");
        assert_eq!(ema.shadow(n).expect("ema").to_bytes()?, ema2.shadow(n).expect("ema").to_bytes()?, "EMA of {n}");
    }
    Ok(())
}

#[test]
fn optimizer_state_checks_names_and_shapes() -> Result<()> {
    let dir = TempDir::new("state");
    let path = dir.0.join("opt.safetensors");
    let store = ParamStore::new(DType::F32, 0);
    let _net = SmallConvNet::new(&store.root())?;
    let opt = Adam::new(store.named_parameters(), AdamConfig::default())?;
    opt.save(&path)?;

    // Loads into the same layout.
    let mut same = Adam::new(store.named_parameters(), AdamConfig::default())?;
    same.load(&path)?;

    // A model with one more parameter: its state is missing from the file.
    let bigger = ParamStore::new(DType::F32, 0);
    let _net = SmallConvNet::new(&bigger.root())?;
    bigger.root().get_or_init("extra", &[2], Init::Zeros)?;
    let mut opt_big = Adam::new(bigger.named_parameters(), AdamConfig::default())?;
    let err = opt_big.load(&path).unwrap_err().to_string();
    assert!(err.contains("opt.extra.m"), "{err}");

    // SGD state is not Adam state.
    let mut sgd = Sgd::new(store.named_parameters(), SgdConfig { momentum: 0.9, ..Default::default() })?;
    let err = sgd.load(&path).unwrap_err().to_string();
    assert!(err.contains("momentum_buffer"), "{err}");

    // A checkpoint with optimizer state cannot be loaded as parameters only.
    let ckpt = dir.0.join("ckpt.safetensors");
    save_checkpoint(&ckpt, &store, Some(&opt), None)?;
    let err = load_checkpoint(&ckpt, &store, None, None).unwrap_err().to_string();
    assert!(err.contains("optimizer state"), "{err}");
    Ok(())
}

/// Mixed precision on the CPU path: inside `autocast(bf16)` the convolutions and the linear
/// head compute in bf16 while the parameters (Adam's master weights), their gradients and
/// the optimizer state stay f32; the net still learns, and its logits track the f32 net's to
/// bf16 accuracy.
#[test]
fn bf16_autocast_trains_with_f32_master_weights() -> Result<()> {
    use scorch_engine::autocast;
    let store = ParamStore::new(DType::F32, 3);
    let net = SmallConvNet::new(&store.root())?;
    let (x, y) = toy_batch(11)?;
    let full = net.forward(&x)?;
    let mixed = {
        let _bf16 = autocast(Some(DType::BF16));
        net.forward(&x)?
    };
    assert_eq!(mixed.dtype(), DType::F32);
    let (f, m) = (full.to_vec_f64()?, mixed.to_vec_f64()?);
    let worst = f.iter().zip(&m).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    let scale = f.iter().map(|v| v.abs()).fold(0.0, f64::max);
    assert!(worst > 0.0, "autocast changed nothing: the layers did not run in bf16");
    assert!(worst < 0.05 * scale.max(1e-3), "bf16 logits {worst} away from f32 (scale {scale})");

    let mut opt = Adam::new(store.named_parameters(), AdamConfig { lr: 1e-2, ..Default::default() })?;
    let step = |opt: &mut Adam| -> Result<f64> {
        opt.zero_grad();
        let loss = {
            let _bf16 = autocast(Some(DType::BF16));
            net.forward(&x)?.cross_entropy(&y, 0.0)?
        };
        loss.backward()?;
        for (name, p) in store.named_parameters() {
            assert_eq!(p.dtype(), DType::F32, "{name}");
            assert_eq!(p.grad().map(|g| g.dtype()), Some(DType::F32), "{name}");
        }
        opt.step()?;
        Ok(loss.item()?)
    };
    let first = step(&mut opt)?;
    let mut last = first;
    for _ in 0..30 {
        last = step(&mut opt)?;
    }
    assert!(last < 0.5 * first, "loss went from {first} to {last} under bf16 autocast");
    Ok(())
}
