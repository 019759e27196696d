//! `scorch bench --device cuda`: the kernel benchmarks of the device check, run through the
//! CUDA backend's `Kernels` implementation. Each case prints one machine-readable line
//! `case|median ms|rate` with the same case keys as `benches/torch_gpu.py`, so
//! `benches/gpu_table.py` can join both sides into one table.

use scorch::cuda::{Cuda, CudaStorage};
use scorch::ops::cpu::conv::Conv2dParams;
use scorch::ops::cpu::elementwise::BinaryOp;
use scorch::ops::cpu::norm::NormKind;
use scorch::ops::cpu::reduce::ReduceOp;
use scorch::ops::cpu::RandDist;
use scorch::ops::{DType, Kernels, Layout};
use std::time::Instant;

type R<T> = std::result::Result<T, String>;

fn e<E: std::fmt::Display>(x: E) -> String {
    x.to_string()
}

/// Median over `reps` timed batches of `inner` calls each (after warm-up), in ms per call.
fn median_ms(cu: &Cuda, mut f: impl FnMut() -> R<()>) -> R<f64> {
    for _ in 0..3 {
        f()?;
    }
    cu.synchronize().map_err(e)?;
    // Batch enough calls that launch and synchronisation overheads vanish (~2 ms batches).
    let t = Instant::now();
    f()?;
    cu.synchronize().map_err(e)?;
    let one = t.elapsed().as_secs_f64();
    let inner = ((2e-3 / one.max(1e-6)) as usize).clamp(1, 200);
    let mut times = Vec::new();
    for _ in 0..15 {
        let t = Instant::now();
        for _ in 0..inner {
            f()?;
        }
        cu.synchronize().map_err(e)?;
        times.push(t.elapsed().as_secs_f64() * 1e3 / inner as f64);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn randn(cu: &Cuda, dt: DType, shape: &[usize], seed: u64) -> R<(CudaStorage, Layout)> {
    let n = shape.iter().product();
    Ok((cu.random(dt, n, seed, 0, RandDist::Normal(0.0, 1.0)).map_err(e)?, Layout::contiguous(shape)))
}

fn rand_in(cu: &Cuda, dt: DType, n: usize, lo: f64, hi: f64, seed: u64) -> R<(CudaStorage, Layout)> {
    Ok((cu.random(dt, n, seed, 0, RandDist::Uniform(lo, hi)).map_err(e)?, Layout::contiguous(&[n])))
}

/// Runs every case (or those whose key contains `filter`) and prints `case|ms|rate` lines.
pub fn run(ordinal: usize, filter: Option<&str>) -> R<()> {
    let cu = Cuda::new(ordinal).map_err(e)?;
    println!("# scorch bench on cuda:{ordinal} ({}, {})", cu.dev.name, cu.dev.arch);
    let want = |k: &str| filter.is_none_or(|f| k.contains(f));
    // One case: prints its line, or the error that stopped it (the other cases still run).
    macro_rules! case {
        ($key:expr, $body:expr) => {
            if want($key) {
                let r: R<(f64, String)> = (|| $body)();
                match r {
                    Ok((ms, rate)) => println!("{}|{ms:.4}|{rate}", $key),
                    Err(m) => println!("{}|nan|error: {}", $key, m.lines().next().unwrap_or("")),
                }
            }
        };
    }

    let n = 64 << 20;
    let (x, lx) = randn(&cu, DType::F32, &[n], 1)?;
    let (y, ly) = randn(&cu, DType::F32, &[n], 2)?;
    case!("copy_f32_64M", {
        let ms = median_ms(&cu, || cu.contiguous((&x, &lx)).map(|_| ()).map_err(e))?;
        Ok((ms, format!("{:.0} GB/s", 8.0 * n as f64 / ms / 1e6)))
    });
    case!("add_f32_64M", {
        let ms = median_ms(&cu, || cu.binary(BinaryOp::Add, (&x, &lx), (&y, &ly)).map(|_| ()).map_err(e))?;
        Ok((ms, format!("{:.0} GB/s", 12.0 * n as f64 / ms / 1e6)))
    });
    case!("sum_f32_64M", {
        let ms = median_ms(&cu, || cu.reduce(ReduceOp::Sum, (&x, &lx), &[0]).map(|_| ()).map_err(e))?;
        Ok((ms, format!("{:.0} GB/s", 4.0 * n as f64 / ms / 1e6)))
    });
    drop((x, y));
    case!("softmax_f32_16384x4096", {
        let (x, lx) = randn(&cu, DType::F32, &[16384, 4096], 3)?;
        let ms = median_ms(&cu, || cu.softmax((&x, &lx), 1, false).map(|_| ()).map_err(e))?;
        Ok((ms, format!("{:.0} GB/s", 8.0 * (16384.0 * 4096.0) / ms / 1e6)))
    });
    case!("groupnorm_f32_fwd_bwd", {
        let shape = [64, 128, 32, 32];
        let (x, lx) = randn(&cu, DType::F32, &shape, 4)?;
        let (g, lg) = randn(&cu, DType::F32, &shape, 5)?;
        let (w, lw) = randn(&cu, DType::F32, &[128], 6)?;
        let (b, lb) = randn(&cu, DType::F32, &[128], 7)?;
        let ms = median_ms(&cu, || {
            let (_, m, r) =
                cu.norm_fwd(NormKind::Group(32), (&x, &lx), Some((&w, &lw)), Some((&b, &lb)), 1e-5).map_err(e)?;
            cu.norm_bwd(NormKind::Group(32), (&g, &lg), (&x, &lx), &m, &r, Some((&w, &lw))).map(|_| ()).map_err(e)
        })?;
        // fwd reads x and writes y; bwd reads x and gy and writes dx (weights negligible).
        Ok((ms, format!("{:.0} GB/s", 5.0 * 4.0 * (64.0 * 128.0 * 1024.0) / ms / 1e6)))
    });
    case!("sid_loss_fwd_bwd", {
        let shape = [64, 3, 64, 64];
        let (yr, l) = randn(&cu, DType::F32, &shape, 8)?;
        let (yf, _) = randn(&cu, DType::F32, &shape, 9)?;
        let (xg, _) = randn(&cu, DType::F32, &shape, 10)?;
        let (g, lg) = rand_in(&cu, DType::F32, 64, 1.0, 1.0, 11)?;
        let ms = median_ms(&cu, || {
            let (_, w) = cu.sid_generator_loss((&yr, &l), (&yf, &l), (&xg, &l), 1.2, None).map_err(e)?;
            cu.sid_generator_loss_bwd((&yr, &l), (&yf, &l), (&xg, &l), &w, (&g, &lg), 1.2).map(|_| ()).map_err(e)
        })?;
        Ok((ms, String::new()))
    });
    case!("beta_kl_fwd_4M", {
        let m = 1 << 22;
        let p: Vec<_> = (0..4).map(|i| rand_in(&cu, DType::F32, m, 0.5, 20.5, 20 + i)).collect::<R<_>>()?;
        let ms = median_ms(&cu, || {
            cu.beta_kl([(&p[0].0, &p[0].1), (&p[1].0, &p[1].1), (&p[2].0, &p[2].1), (&p[3].0, &p[3].1)])
                .map(|_| ())
                .map_err(e)
        })?;
        Ok((ms, String::new()))
    });
    // The KLUB regime of Beta diffusion (η = 1e4): parameters ~1e4, KLs ~1e-8..1e-2, where
    // the lnΓ/ψ composition cancels catastrophically in f32 (PyTorch's composition answers
    // with rounding noise there; scorch's f32 path does not).
    case!("beta_kl_klub_fwd_4M", {
        let m = 1 << 22;
        let u = |lo, hi, seed| -> R<Vec<f32>> {
            let (t, l) = rand_in(&cu, DType::F32, m, lo, hi, seed)?;
            Ok(t.to_cpu().map_err(e)?.to_f64_vec(&l).into_iter().map(|v| v as f32).collect())
        };
        let (at, gap, x, jitter) = (u(0.1, 0.9, 30)?, u(1e-4, 0.05, 31)?, u(0.1, 0.9, 32)?, u(-5e-4, 5e-4, 33)?);
        let eta = 1e4f32;
        let mut host = [vec![0f32; m], vec![0f32; m], vec![0f32; m], vec![0f32; m]];
        for i in 0..m {
            let (as_, xh) = ((at[i] + gap[i]).min(0.999), x[i] * (1.0 + jitter[i]));
            let (ca, cb) = (eta * (as_ - at[i]), -eta * as_);
            for (k, v) in [ca * xh, eta + cb * xh, ca * x[i], eta + cb * x[i]].into_iter().enumerate() {
                host[k][i] = v;
            }
        }
        let l = Layout::contiguous(&[m]);
        let p: Vec<_> =
            host.iter().map(|h| cu.upload(&scorch::ops::CpuStorage::F32(h.clone())).map_err(e)).collect::<R<_>>()?;
        let ms =
            median_ms(&cu, || cu.beta_kl([(&p[0], &l), (&p[1], &l), (&p[2], &l), (&p[3], &l)]).map(|_| ()).map_err(e))?;
        Ok((ms, String::new()))
    });
    case!("matmul_bf16_4096", {
        let (a, la) = randn(&cu, DType::BF16, &[4096, 4096], 30)?;
        let (b, lb) = randn(&cu, DType::BF16, &[4096, 4096], 31)?;
        let ms = median_ms(&cu, || cu.matmul((&a, &la), (&b, &lb)).map(|_| ()).map_err(e))?;
        Ok((ms, format!("{:.1} TFLOP/s", 2.0 * 4096f64.powi(3) / ms / 1e9)))
    });
    let flops = 4.0 * 4.0 * 8.0 * 1024.0 * 1024.0 * 64.0;
    let shape = [4, 8, 1024, 64];
    let (q, l) = randn(&cu, DType::BF16, &shape, 40)?;
    let (k, _) = randn(&cu, DType::BF16, &shape, 41)?;
    let (v, _) = randn(&cu, DType::BF16, &shape, 42)?;
    let (go, _) = randn(&cu, DType::BF16, &shape, 43)?;
    case!("attn_bf16_fwd", {
        let ms = median_ms(&cu, || {
            cu.attention_fwd((&q, &l), (&k, &l), (&v, &l), None, None, false).map(|_| ()).map_err(e)
        })?;
        Ok((ms, format!("{:.1} TFLOP/s", flops / ms / 1e9)))
    });
    case!("attn_bf16_fwd_bwd", {
        let ll = Layout::contiguous(&shape[..3]);
        let ms = median_ms(&cu, || {
            let (o, lse, _) = cu.attention_fwd((&q, &l), (&k, &l), (&v, &l), None, None, false).map_err(e)?;
            cu.attention_bwd((&q, &l), (&k, &l), (&v, &l), None, (&o, &l), (&lse, &ll), (&go, &l), None, false)
                .map(|_| ())
                .map_err(e)
        })?;
        Ok((ms, format!("{:.1} TFLOP/s", 3.5 * flops / ms / 1e9)))
    });
    drop((q, k, v, go));
    let cflops = 2.0 * 64.0 * 128.0 * 32.0 * 32.0 * 128.0 * 9.0;
    let (xc, lxc) = randn(&cu, DType::BF16, &[64, 128, 32, 32], 50)?;
    let (wc, lwc) = randn(&cu, DType::BF16, &[128, 128, 3, 3], 51)?;
    let (gy, lgy) = randn(&cu, DType::BF16, &[64, 128, 32, 32], 52)?;
    let p = Conv2dParams { stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 1 };
    case!("conv3x3_bf16_fwd", {
        let ms = median_ms(&cu, || cu.conv2d((&xc, &lxc), (&wc, &lwc), p).map(|_| ()).map_err(e))?;
        Ok((ms, format!("{:.1} TFLOP/s", cflops / ms / 1e9)))
    });
    case!("conv3x3_bf16_bwd_data", {
        let ms =
            median_ms(&cu, || cu.conv2d_bwd_data((&gy, &lgy), (&wc, &lwc), [128, 32, 32], p).map(|_| ()).map_err(e))?;
        Ok((ms, format!("{:.1} TFLOP/s", cflops / ms / 1e9)))
    });
    // The weight gradient at several split-K block targets (the default is 512).
    for blocks in ["512", "264", "1056", "2112"] {
        std::env::set_var("SCORCH_CONV_WGRAD_BLOCKS", blocks);
        case!(&format!("conv3x3_bf16_bwd_weight_b{blocks}"), {
            let ms = median_ms(&cu, || {
                cu.conv2d_bwd_weight((&xc, &lxc), (&gy, &lgy), [128, 128, 3, 3], p).map(|_| ()).map_err(e)
            })?;
            Ok((ms, format!("{:.1} TFLOP/s", cflops / ms / 1e9)))
        });
    }
    std::env::remove_var("SCORCH_CONV_WGRAD_BLOCKS");
    case!("conv3x3_bf16_fwd_bwd", {
        let ms = median_ms(&cu, || {
            cu.conv2d((&xc, &lxc), (&wc, &lwc), p).map_err(e)?;
            cu.conv2d_bwd_data((&gy, &lgy), (&wc, &lwc), [128, 32, 32], p).map_err(e)?;
            cu.conv2d_bwd_weight((&xc, &lxc), (&gy, &lgy), [128, 128, 3, 3], p).map(|_| ()).map_err(e)
        })?;
        Ok((ms, format!("{:.1} TFLOP/s", 3.0 * cflops / ms / 1e9)))
    });
    case!("sid_iter_cifar_b8", sid_iteration(ordinal, false));
    case!("sid_iter_cifar_b8_autocast_bf16", sid_iteration(ordinal, true));
    let st = cu.dev.memory_stats();
    println!(
        "# memory: allocated {:.1} MiB, reserved {:.1} MiB, peak {:.1} MiB",
        st.allocated as f64 / 1048576.0,
        st.reserved as f64 / 1048576.0,
        st.peak as f64 / 1048576.0
    );
    Ok(())
}

/// One SiD iteration (fake-score step + generator step + EMA) on EDM's CIFAR-10 DDPM++ net at
/// batch 8, f32, with every tensor on the GPU (the case benches/sid.rs times on the CPU);
/// with `bf16`, under `autocast(bf16)` (f32 master weights, bf16 convolutions / matmuls /
/// attention).
fn sid_iteration(ordinal: usize, bf16: bool) -> R<(f64, String)> {
    use scorch::models::edm::{presets, EdmPrecond};
    use scorch::models::params::ParamStore;
    use scorch::models::sid::distill::{copy_params, DistillConfig, Distiller, MicroBatch};
    let dev = scorch::Device::Cuda(ordinal);
    scorch::engine::device::set_default_device(dev).map_err(e)?;
    let cfg = presets::cifar10_ddpmpp(false);
    let build = |seed: u64| -> R<_> {
        let store = ParamStore::new(DType::F32, seed);
        Ok((EdmPrecond::new(&store.root(), &cfg).map_err(e)?, store))
    };
    let (teacher, ts) = build(0)?;
    let (fake, fs) = build(1)?;
    let (generator, gs) = build(2)?;
    copy_params(&ts, &fs).map_err(e)?;
    copy_params(&ts, &gs).map_err(e)?;
    let mut sid = DistillConfig::sid();
    sid.batch = 8;
    sid.batch_gpu = 8;
    let mut d = Distiller::new(teacher, fake, generator, [3, 32, 32], sid, 0).map_err(e)?;
    let mut source = |_n: usize| Ok(MicroBatch::default());
    let _mixed = bf16.then(|| scorch::engine::autocast(Some(DType::BF16)));
    let mut times = Vec::new();
    for i in 0..7 {
        let t = Instant::now();
        d.step(&mut source).map_err(e)?;
        dev.synchronize().map_err(e)?;
        if i >= 2 {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    scorch::engine::device::set_default_device(scorch::Device::Cpu).map_err(e)?;
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], format!("{:.1} it/s", 1e3 / times[times.len() / 2])))
}
