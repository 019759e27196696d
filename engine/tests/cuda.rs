//! CUDA through the engine. Without a usable GPU these tests print why and pass, unless
//! `SCORCH_REQUIRE_CUDA=1` (then a missing GPU fails them). On a GPU they run the registry's
//! CPU-vs-CUDA parity and a few engine-level checks.

use scorch_engine::registry::{check_device_parity, registry};
use scorch_engine::{DType, Device, Generator, Tensor};

/// The GPU to test on, or `None` after printing why there is none.
fn gpu() -> Option<Device> {
    match Device::Cuda(0).check_available() {
        Ok(()) => Some(Device::Cuda(0)),
        Err(e) => {
            if std::env::var("SCORCH_REQUIRE_CUDA").is_ok_and(|v| v == "1") {
                panic!("SCORCH_REQUIRE_CUDA=1 but no usable GPU: {e}");
            }
            eprintln!("skipped: no usable GPU ({e})");
            None
        }
    }
}

#[test]
fn cuda_request_without_gpu_is_a_clear_error() {
    if Device::Cuda(0).check_available().is_ok() {
        return;
    }
    let err = Device::Cuda(0).check_available().unwrap_err().to_string();
    assert!(err.contains("cuda:0"), "{err}");
    assert!(err.contains("libcuda") || err.contains("libnvrtc") || err.contains("driver"), "{err}");
    let t = Tensor::zeros(&[2], DType::F32).unwrap();
    assert!(t.to_device(Device::Cuda(0)).is_err());
    assert!(Tensor::zeros_on(&[2], DType::F32, Device::Cuda(0)).is_err());
    assert_eq!(Device::best(), Device::Cpu);
    assert_eq!(Device::cuda_if_available(0), Device::Cpu);
}

#[test]
fn cuda_registry_parity() {
    let Some(dev) = gpu() else { return };
    std::env::set_var("SCORCH_CUDA_POISON", "1");
    let mut failures = Vec::new();
    for op in registry() {
        for dt in [DType::F32, DType::BF16] {
            if dt == DType::BF16 && !op.low_precision {
                continue;
            }
            for seed in 0..2 {
                match check_device_parity(&op, seed, dt, dev) {
                    Ok(p) if p.passed() => {}
                    Ok(p) => failures.push(format!("{} {dt} seed {seed}: {p:?}", op.name)),
                    Err(e) => failures.push(e),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn cuda_round_trip_and_mixing() {
    let Some(dev) = gpu() else { return };
    let x = Tensor::randn(&[3, 5], DType::F32, &Generator::new(1)).unwrap();
    let g = x.to_device(dev).unwrap();
    assert_eq!(g.device(), dev);
    assert_eq!(g.to_cpu().unwrap().to_vec_f64().unwrap(), x.to_vec_f64().unwrap());
    // Same Philox stream on both devices.
    let a =
        Tensor::random_on(&[1000], DType::F32, &Generator::new(7), scorch_ops::cpu::RandDist::Uniform(0.0, 1.0), dev)
            .unwrap();
    let b = Tensor::rand(&[1000], DType::F32, &Generator::new(7)).unwrap();
    assert_eq!(a.to_vec_f64().unwrap(), b.to_vec_f64().unwrap());
    let err = x.add(&g).unwrap_err().to_string();
    assert!(err.contains("cpu") && err.contains("cuda"), "{err}");
    // Gradients flow back across the transfer.
    let leaf = x.detach().requires_grad_(true).unwrap();
    let y = leaf.to_device(dev).unwrap().sqr().unwrap().sum_all().unwrap();
    y.backward().unwrap();
    let gx = leaf.grad().unwrap();
    assert_eq!(gx.device(), Device::Cpu);
    let want: Vec<f64> = x.to_vec_f64().unwrap().iter().map(|v| 2.0 * v).collect();
    let got = gx.to_vec_f64().unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-5, "{g} vs {w}");
    }
}
