//! One SiD iteration (fake-score step + generator step + EMA) on EDM's CIFAR-10 DDPM++
//! network (55.7M parameters, unconditional) at batch 8, f32, on the CPU — the case
//! `benches/torch_sid.py` times in PyTorch.
//!
//!     cargo bench --bench sid
//!     python3 benches/torch_sid.py --json target/torch_sid.json

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use scorch::models::edm::{presets, EdmPrecond};
use scorch::models::params::ParamStore;
use scorch::models::sid::distill::{copy_params, DistillConfig, Distiller, MicroBatch};
use scorch::DType;
use std::time::Duration;

fn sid_iteration(c: &mut Criterion) {
    let cfg = presets::cifar10_ddpmpp(false);
    let build = |seed: u64| {
        let store = ParamStore::new(DType::F32, seed);
        (EdmPrecond::new(&store.root(), &cfg).expect("network"), store)
    };
    let (teacher, ts) = build(0);
    let (fake, fs) = build(1);
    let (generator, gs) = build(2);
    copy_params(&ts, &fs).expect("copy");
    copy_params(&ts, &gs).expect("copy");
    let mut sid = DistillConfig::sid();
    sid.batch = 8;
    sid.batch_gpu = 8;
    let mut d = Distiller::new(teacher, fake, generator, [3, 32, 32], sid, 0).expect("distiller");
    let mut source = |_n: usize| Ok(MicroBatch::default());

    let mut g = c.benchmark_group("sid_iteration");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(60));
    g.sampling_mode(SamplingMode::Flat);
    g.bench_function("cifar_ddpmpp_b8", |b| b.iter(|| d.step(&mut source).expect("iteration")));
    g.finish();
}

criterion_group!(benches, sid_iteration);
criterion_main!(benches);
