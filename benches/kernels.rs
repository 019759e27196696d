//! CPU benchmark suite: the cases of benches/torch_cpu.py, measured through the engine
//! (autograd included, as a user would call it). Case ids match the PyTorch script so
//! `benches/compare.py` can pair criterion's medians with PyTorch's; see benches/RESULTS.md
//! and scripts/bench-cpu.sh, which runs both on one machine in one session.
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo bench --bench kernels            # everything (~5 min on 2 cores)
//! RAYON_NUM_THREADS=2 cargo bench --bench kernels -- sgemm   # one family
//! ```

use criterion::{black_box, criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use scorch::engine::ConvParams;
use scorch::models::optim::{Adam, AdamConfig, Optimizer};
use scorch::{no_grad, DType, Generator, Result, Tensor};
use std::time::Duration;

const F32: DType = DType::F32;

fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, F32, &Generator::new(seed)).expect("randn of a valid shape")
}

fn param(shape: &[usize], seed: u64, scale: f64) -> Tensor {
    let p = randn(shape, seed).mul_scalar(scale).expect("scaling a fresh tensor");
    p.set_requires_grad(true).expect("a fresh f32 leaf can require grad");
    p
}

fn pad(p: usize) -> ConvParams {
    ConvParams { stride: [1, 1], padding: [p, p], dilation: [1, 1], groups: 1 }
}

// ---------------------------------------------------------------------------- kernels

fn sgemm(c: &mut Criterion) {
    let mut g = c.benchmark_group("sgemm");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).sampling_mode(SamplingMode::Flat);
    for n in [1024usize, 2048] {
        g.throughput(Throughput::Elements(2 * (n * n * n) as u64)); // FLOPs
        g.measurement_time(Duration::from_secs(if n == 1024 { 3 } else { 8 }));
        g.bench_function(n.to_string(), |bch| {
            let (a, b) = (randn(&[n, n], 1), randn(&[n, n], 2));
            bch.iter(|| black_box(a.matmul(&b).expect("sgemm")))
        });
    }
    g.finish();
}

fn conv2d(c: &mut Criterion) {
    let mut g = c.benchmark_group("conv2d_3x3_b16_64c_32px");
    g.sample_size(15).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    let flops = 2 * 16 * 64 * 32 * 32 * 64 * 9u64;
    let x = || randn(&[16, 64, 32, 32], 1);
    let w = || param(&[64, 64, 3, 3], 2, 1.0 / 24.0);
    g.throughput(Throughput::Elements(flops));
    g.bench_function("fwd", |bch| {
        let (x, w) = (x(), w());
        let _ng = no_grad();
        bch.iter(|| black_box(x.conv2d(&w, None, pad(1)).expect("conv2d fwd")))
    });
    g.throughput(Throughput::Elements(3 * flops));
    g.bench_function("fwd_bwd", |bch| {
        let (x, w, gy) = (x(), w(), randn(&[16, 64, 32, 32], 3));
        x.set_requires_grad(true).expect("leaf");
        bch.iter(|| {
            x.zero_grad();
            w.zero_grad();
            let y = x.conv2d(&w, None, pad(1)).expect("conv2d fwd");
            y.backward_with(Some(&gy), false, false).expect("conv2d bwd");
        })
    });
    g.finish();
}

fn attention(c: &mut Criterion) {
    let mut g = c.benchmark_group("attention_b8h4s256d64");
    g.sample_size(15).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    let shape = [8, 4, 256, 64];
    // Forward 2 matmuls, backward 5 (scores recomputed); 2·S²·D FLOPs each.
    g.throughput(Throughput::Elements(7 * 2 * 8 * 4 * 256 * 256 * 64));
    g.bench_function("fwd_bwd", |bch| {
        let (q, k, v) = (param(&shape, 1, 1.0), param(&shape, 2, 1.0), param(&shape, 3, 1.0));
        let go = randn(&shape, 4);
        bch.iter(|| {
            for t in [&q, &k, &v] {
                t.zero_grad();
            }
            let o = Tensor::scaled_dot_product_attention(&q, &k, &v, None, false, None).expect("sdpa fwd");
            o.backward_with(Some(&go), false, false).expect("sdpa bwd");
        })
    });
    g.finish();
}

fn group_norm(c: &mut Criterion) {
    let mut g = c.benchmark_group("group_norm_b16c128g32_32px");
    g.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Bytes(5 * 4 * 16 * 128 * 32 * 32)); // x→y, (x, gy)→gx
    g.bench_function("fwd_bwd", |bch| {
        let x = param(&[16, 128, 32, 32], 1, 1.0);
        let w = Tensor::ones(&[128], F32).expect("ones").requires_grad_(true).expect("leaf");
        let b = Tensor::zeros(&[128], F32).expect("zeros").requires_grad_(true).expect("leaf");
        let gy = randn(&[16, 128, 32, 32], 2);
        bch.iter(|| {
            for t in [&x, &w, &b] {
                t.zero_grad();
            }
            let y = x.group_norm(32, Some(&w), Some(&b), 1e-5).expect("group_norm fwd");
            y.backward_with(Some(&gy), false, false).expect("group_norm bwd");
        })
    });
    g.finish();
}

fn elementwise(c: &mut Criterion) {
    let mut g = c.benchmark_group("elementwise_silu_xa_b_16M");
    g.sample_size(15).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    let n = 16 << 20;
    g.throughput(Throughput::Bytes(16 * n as u64)); // read x, a, b; write y
    g.bench_function("fwd", |bch| {
        let (x, a, b) = (randn(&[n], 1), randn(&[n], 2), randn(&[n], 3));
        let _ng = no_grad();
        bch.iter(|| black_box(x.mul(&a).and_then(|t| t.add(&b)).and_then(|t| t.silu()).expect("silu(x·a+b)")))
    });
    g.finish();
}

// ---------------------------------------------------------------------------- the UNet

/// The EDM-style UNet of `UNet` in benches/torch_cpu.py, layer for layer (same parameter
/// count), built from engine functions.
mod unet {
    use super::*;

    pub const CH: usize = 64;
    pub const MULT: [usize; 3] = [1, 2, 2];
    pub const BLOCKS: usize = 2;
    pub const ATTN_RES: [usize; 1] = [16];
    pub const EMB: usize = 256;
    pub const NOISE_FEAT: usize = 64;
    pub const HEAD_CH: usize = 64;
    const SKIP_SCALE: f64 = std::f64::consts::FRAC_1_SQRT_2;
    const FIR: [f64; 2] = [1.0, 1.0];

    /// Hands out parameters with distinct seeds and keeps the list for the optimiser.
    #[derive(Default)]
    pub struct Params {
        pub all: Vec<Tensor>,
    }

    impl Params {
        fn weight(&mut self, shape: &[usize], fan_in: usize) -> Tensor {
            let p = param(shape, 1000 + self.all.len() as u64, 1.0 / (fan_in as f64).sqrt());
            self.all.push(p.clone());
            p
        }
        fn constant(&mut self, shape: &[usize], v: f64) -> Tensor {
            let p = Tensor::full(shape, v, F32).expect("full").requires_grad_(true).expect("leaf");
            self.all.push(p.clone());
            p
        }
        pub fn count(&self) -> usize {
            self.all.iter().map(|p| p.numel()).sum()
        }
    }

    struct Conv {
        w: Tensor,
        b: Tensor,
        pad: usize,
    }
    impl Conv {
        fn new(ps: &mut Params, cin: usize, cout: usize, k: usize) -> Conv {
            Conv { w: ps.weight(&[cout, cin, k, k], cin * k * k), b: ps.constant(&[cout], 0.0), pad: k / 2 }
        }
        fn fwd(&self, x: &Tensor) -> Result<Tensor> {
            x.conv2d(&self.w, Some(&self.b), pad(self.pad))
        }
    }

    struct Linear {
        w: Tensor,
        b: Tensor,
    }
    impl Linear {
        fn new(ps: &mut Params, i: usize, o: usize) -> Linear {
            Linear { w: ps.weight(&[o, i], i), b: ps.constant(&[o], 0.0) }
        }
        fn fwd(&self, x: &Tensor) -> Result<Tensor> {
            x.linear(&self.w, Some(&self.b))
        }
    }

    struct Norm {
        w: Tensor,
        b: Tensor,
    }
    impl Norm {
        fn new(ps: &mut Params, c: usize) -> Norm {
            Norm { w: ps.constant(&[c], 1.0), b: ps.constant(&[c], 0.0) }
        }
        fn fwd(&self, x: &Tensor) -> Result<Tensor> {
            x.group_norm(32, Some(&self.w), Some(&self.b), 1e-5)
        }
    }

    struct Attn {
        norm: Norm,
        qkv: Conv,
        proj: Conv,
        heads: usize,
    }

    /// EDM's UNetBlock without dropout and adaptive scale.
    struct Block {
        norm0: Norm,
        conv0: Conv,
        affine: Linear,
        norm1: Norm,
        conv1: Conv,
        skip: Option<Conv>,
        attn: Option<Attn>,
    }

    impl Block {
        fn new(ps: &mut Params, cin: usize, cout: usize, attn: bool) -> Block {
            let norm0 = Norm::new(ps, cin);
            let conv0 = Conv::new(ps, cin, cout, 3);
            let affine = Linear::new(ps, EMB, cout);
            let norm1 = Norm::new(ps, cout);
            let conv1 = Conv::new(ps, cout, cout, 3);
            let skip = (cin != cout).then(|| Conv::new(ps, cin, cout, 1));
            let attn = attn.then(|| Attn {
                norm: Norm::new(ps, cout),
                qkv: Conv::new(ps, cout, 3 * cout, 1),
                proj: Conv::new(ps, cout, cout, 1),
                heads: cout / HEAD_CH,
            });
            Block { norm0, conv0, affine, norm1, conv1, skip, attn }
        }

        fn fwd(&self, x: &Tensor, emb: &Tensor) -> Result<Tensor> {
            let (b, cout) = (x.shape()[0], self.conv1.w.shape()[0]);
            let h = self.conv0.fwd(&self.norm0.fwd(x)?.silu()?)?;
            let h = h.add(&self.affine.fwd(emb)?.reshape(&[b, cout, 1, 1])?)?;
            let h = self.conv1.fwd(&self.norm1.fwd(&h)?.silu()?)?;
            let skip = match &self.skip {
                Some(s) => s.fwd(x)?,
                None => x.clone(),
            };
            let x = h.add(&skip)?.mul_scalar(SKIP_SCALE)?;
            let Some(at) = &self.attn else { return Ok(x) };
            let [b, c, hh, ww] = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
            let hd = c / at.heads;
            let qkv = at.qkv.fwd(&at.norm.fwd(&x)?)?.reshape(&[b, 3, at.heads, hd, hh * ww])?;
            // [B, heads, hd, HW] → [B, heads, HW, hd] (strided views, as in the PyTorch twin).
            let part = |i: usize| qkv.narrow(1, i, 1)?.reshape(&[b, at.heads, hd, hh * ww])?.transpose(2, 3);
            let (q, k, v) = (part(0)?, part(1)?, part(2)?);
            let a = Tensor::scaled_dot_product_attention(&q, &k, &v, None, false, None)?;
            let a = a.transpose(2, 3)?.reshape(&[b, c, hh, ww])?;
            at.proj.fwd(&a)?.add(&x)?.mul_scalar(SKIP_SCALE)
        }
    }

    pub struct UNet {
        map0: Linear,
        map1: Linear,
        conv_in: Conv,
        enc: Vec<Block>,
        mid: Vec<Block>,
        dec: Vec<Block>,
        norm_out: Norm,
        conv_out: Conv,
    }

    impl UNet {
        pub fn new(ps: &mut Params) -> UNet {
            let map0 = Linear::new(ps, NOISE_FEAT, EMB);
            let map1 = Linear::new(ps, EMB, EMB);
            let conv_in = Conv::new(ps, 3, CH, 3);
            let mut skips = vec![CH];
            let mut c = CH;
            let mut enc = Vec::new();
            for (lvl, m) in MULT.iter().enumerate() {
                let res = 32 >> lvl;
                for _ in 0..BLOCKS {
                    enc.push(Block::new(ps, c, CH * m, ATTN_RES.contains(&res)));
                    c = CH * m;
                    skips.push(c);
                }
                if lvl + 1 < MULT.len() {
                    skips.push(c);
                }
            }
            let mid = vec![Block::new(ps, c, c, true), Block::new(ps, c, c, false)];
            let mut dec = Vec::new();
            for lvl in (0..MULT.len()).rev() {
                let res = 32 >> lvl;
                for _ in 0..=BLOCKS {
                    let cout = CH * MULT[lvl];
                    let skip = skips.pop().expect("one skip per decoder block");
                    dec.push(Block::new(ps, c + skip, cout, ATTN_RES.contains(&res)));
                    c = cout;
                }
            }
            let norm_out = Norm::new(ps, c);
            let conv_out = Conv::new(ps, c, 3, 3);
            UNet { map0, map1, conv_in, enc, mid, dec, norm_out, conv_out }
        }

        pub fn fwd(&self, x: &Tensor, noise_feat: &Tensor) -> Result<Tensor> {
            let emb = self.map1.fwd(&self.map0.fwd(noise_feat)?.silu()?)?.silu()?;
            let mut h = self.conv_in.fwd(x)?;
            let mut skips = vec![h.clone()];
            let mut blocks = self.enc.iter();
            for lvl in 0..MULT.len() {
                for _ in 0..BLOCKS {
                    h = blocks.next().expect("encoder block").fwd(&h, &emb)?;
                    skips.push(h.clone());
                }
                if lvl + 1 < MULT.len() {
                    h = h.fir_resample2d(&FIR, false)?;
                    skips.push(h.clone());
                }
            }
            for blk in &self.mid {
                h = blk.fwd(&h, &emb)?;
            }
            let mut blocks = self.dec.iter();
            for lvl in (0..MULT.len()).rev() {
                for _ in 0..=BLOCKS {
                    let s = skips.pop().expect("one skip per decoder block");
                    h = blocks.next().expect("decoder block").fwd(&Tensor::cat(&[h, s], 1)?, &emb)?;
                }
                if lvl > 0 {
                    h = h.fir_resample2d(&FIR, true)?;
                }
            }
            self.conv_out.fwd(&self.norm_out.fwd(&h)?.silu()?)
        }
    }

    /// EDM's positional embedding of c_noise = ln(σ)/4, σ log-spaced over the batch.
    pub fn noise_features(b: usize) -> Result<Tensor> {
        let half = NOISE_FEAT / 2;
        let mut v = vec![0f64; b * NOISE_FEAT];
        for i in 0..b {
            let sigma = 10f64.powf(-2.0 + 3.9 * i as f64 / (b - 1).max(1) as f64);
            let c_noise = sigma.ln() / 4.0;
            for j in 0..half {
                let a = c_noise * (1.0f64 / 10000.0).powf(j as f64 / half as f64);
                v[i * NOISE_FEAT + j] = a.cos();
                v[i * NOISE_FEAT + half + j] = a.sin();
            }
        }
        Tensor::from_f64s(&v, &[b, NOISE_FEAT], F32)
    }
}

fn unet_step(c: &mut Criterion) {
    let mut g = c.benchmark_group("unet_train_step_b16_32px");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(20))
        .sampling_mode(SamplingMode::Flat);
    g.bench_function("adam", |bch| {
        let mut ps = unet::Params::default();
        let net = unet::UNet::new(&mut ps);
        println!("unet parameters (scorch): {}", ps.count());
        // The fused in-place Adam of scorch::models::optim (torch.optim.Adam's defaults, lr 1e-4).
        let named = ps.all.iter().enumerate().map(|(i, p)| (format!("p{i}"), p.clone()));
        let mut opt = Adam::new(named, AdamConfig { lr: 1e-4, ..AdamConfig::default() }).expect("Adam over leaves");
        let x = randn(&[16, 3, 32, 32], 1);
        let target = randn(&[16, 3, 32, 32], 2);
        let feat = unet::noise_features(16).expect("noise features");
        let mut step = || -> std::result::Result<f64, Box<dyn std::error::Error>> {
            opt.zero_grad();
            let loss = net.fwd(&x, &feat)?.mse_loss(&target)?;
            loss.backward()?;
            opt.step()?;
            Ok(loss.item()?)
        };
        // Fail with the engine's message if a step cannot run at all.
        if let Err(e) = step() {
            panic!("UNet training step failed: {e}");
        }
        bch.iter(|| black_box(step().expect("UNet training step")))
    });
    g.finish();
}

criterion_group!(benches, sgemm, conv2d, attention, group_norm, elementwise, unet_step);
criterion_main!(benches);
