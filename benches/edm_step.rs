//! One EDM training step — loss (log-normal σ, λ(σ)-weighted denoising error) forward and
//! backward, gradient nan_to_num, Adam — on the CPU, f32, for the two nets issue 4 names:
//! EDM's CIFAR-10 DDPM++ (unconditional, 55.7M parameters, dropout 0.13) at batch 8 and the
//! Fashion-MNIST teacher net of recipes/edm-fmnist-tiny.toml (308,545 parameters) at batch 64.
//! `benches/torch_edm.py` times the same steps in PyTorch.
//!
//!     cargo bench --bench edm_step
//!     python3 benches/torch_edm.py

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use scorch::models::edm::train::EdmRecipe;
use scorch::models::edm::{presets, EdmConfig, EdmLoss, EdmPrecond};
use scorch::models::optim::{Adam, AdamConfig, Optimizer};
use scorch::models::params::ParamStore;
use scorch::{no_grad, DType, Generator, Tensor};
use std::time::Duration;

fn case(c: &mut Criterion, name: &str, cfg: &EdmConfig, shape: [usize; 4], secs: u64) {
    let store = ParamStore::new(DType::F32, 0);
    store.set_training(true);
    let net = EdmPrecond::new(&store.root(), cfg).expect("network");
    let named = store.named_parameters();
    let n_params: usize = named.iter().map(|(_, p)| p.numel()).sum();
    eprintln!("{name}: {n_params} parameters");
    let mut opt = Adam::new(named.clone(), AdamConfig { lr: 1e-3, ..AdamConfig::default() }).expect("adam");
    let gen = Generator::new(1);
    let images = Tensor::rand(&shape, DType::F32, &gen).and_then(|t| t.affine(2.0, -1.0)).expect("images");
    let loss_fn = EdmLoss::default();
    let mut step = || {
        opt.zero_grad();
        let loss = loss_fn.loss(&net, &images, None, &gen).expect("loss");
        loss.sum_all().and_then(|t| t.mul_scalar(1.0 / shape[0] as f64)).and_then(|t| t.backward()).expect("backward");
        {
            let _g = no_grad();
            for (_, p) in &named {
                if let Some(g) = p.grad() {
                    g.assign(&g.nan_to_num(0.0, 1e5, -1e5).expect("nan_to_num")).expect("assign");
                }
            }
        }
        opt.step().expect("adam");
    };
    let mut g = c.benchmark_group("edm_train_step");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(secs));
    g.sampling_mode(SamplingMode::Flat);
    g.bench_function(name, |b| b.iter(&mut step));
    g.finish();
}

fn edm_steps(c: &mut Criterion) {
    case(c, "cifar_ddpmpp_b8", &presets::cifar10_ddpmpp(false), [8, 3, 32, 32], 40);
    let fmnist: EdmRecipe =
        scorch::models::train::load_recipe(Some(std::path::Path::new("recipes/edm-fmnist-tiny.toml")), &[])
            .expect("recipes/edm-fmnist-tiny.toml (run from the repository root)");
    case(c, "fmnist_tiny_b64", &fmnist.edm_config(), [64, 1, 32, 32], 20);
}

criterion_group!(benches, edm_steps);
criterion_main!(benches);
