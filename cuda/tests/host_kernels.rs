//! Kernels of `cuda/kernels/` compiled by the host's C++ compiler and run on the CPU
//! (`tests/host/shim.h` stands in for the CUDA built-ins: each thread of a block an OS thread,
//! barriers for `__syncthreads` and the warp shuffles, and emulations of the tensor-core PTX:
//! ldmatrix, mma.sync m16n8k16, cp.async), so the kernel source itself is checked on every
//! machine, not only when a GPU is lent:
//!
//! * the f32 Beta KL's fast path answers bit for bit what its Rust mirror
//!   (`scorch_ops::beta_f32`, tested against quadrature) answers, and defers exactly the
//!   elements the mirror defers, which the double pass then evaluates; both compile with
//!   IEEE f32 arithmetic and no contraction here, so any transcription slip shows;
//! * the double kernels (Beta KL and its gradient, the KLUB and its gradient) agree with
//!   the CPU backend's f64 functions;
//! * Philox uniforms, normals and randint give the CPU backend's stream for the same seed and
//!   offset, and the patch coordinate embedding and its backward give the CPU's crops;
//! * the fused SiD generator and fake-score losses (forward: a block per sample; backward)
//!   give the CPU backend's losses, normalisers and gradients;
//! * group, layer and RMS norm forward and backward (statistics, dx, and the chunked two-step
//!   dw / db) give the CPU backend's outputs;
//! * the fused Adam / AdamW, SGD (momentum, Nesterov) and EMA steps give the CPU's values bit
//!   for bit (explicitly rounded operations), and the clipping sum of squares its sum;
//! * the f32 convolution's im2col and col2im (both index widths), composed with a plain GEMM,
//!   give the CPU conv2d and its input gradient (stride, padding, dilation);
//! * every unary and binary op code (f32, f64, bf16, f16; strided, broadcast and float4) and
//!   every cast gives the CPU's op, through the launcher's own code tables;
//! * the general attention path's row kernels (scale, additive mask broadcast over heads,
//!   causal, fully masked rows, the lse; the backward's dS), with the products done here,
//!   give the CPU attention and its gradients;
//! * the f32 flash attention forward gives the CPU attention's output and log-sum-exp
//!   (partial tiles, causal or not, head dims 32, 64, 128), and the bf16 / f16 tensor-core
//!   flash forward and backward its output, lse and gradients;
//! * the bf16 / f16 implicit-GEMM convolution (forward, backward data unit and strided,
//!   weight gradient split over blocks) gives the CPU convolution;
//! * index_select, index_add (repeated indices, atomics), the range check, gather and
//!   scatter_add on transposed views give the CPU's, and the f64 accumulators round to f32 /
//!   bf16 / f16 exactly as the CPU rounds f64; the deterministic-mode index_add and scatter_add
//!   (no atomics) give the CPU's bytes;
//! * average and max pooling (NaN included) and bilinear resampling, forward and backward,
//!   give the CPU's bytes;
//! * both softmax kernels (block reductions over warp shuffles and shared memory) give the
//!   CPU's softmax and log-softmax on rows shorter and longer than a block, with fewer blocks
//!   than rows.
//!
//! On a GPU the same source differs from the mirror only by NVRTC's multiply-add
//! contraction and the device `logf`'s ulp, which the f32 path's error bound covers.
//! Skips with a printed reason when no C++ compiler is found, unless
//! `SCORCH_REQUIRE_HOST_CXX=1` (set by .ci/run), where that is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use scorch_ops::beta_f32::kl_beta_fast_f32;
use scorch_ops::cpu::fused::{kl_beta, kl_beta_grad, klub_pixel};
use scorch_ops::special::{digamma, lgamma, trigamma};

fn require() -> bool {
    std::env::var("SCORCH_REQUIRE_HOST_CXX").is_ok_and(|v| v == "1")
}

fn compiler() -> Option<String> {
    let candidates = std::env::var("CXX").into_iter().chain(["c++", "g++", "clang++"].map(String::from));
    candidates.into_iter().find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
}

/// The driver binary, built once per test process; `None` (after printing why) without a
/// compiler.
fn driver() -> Option<&'static Path> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let Some(cxx) = compiler() else {
                assert!(!require(), "SCORCH_REQUIRE_HOST_CXX=1 but no C++ compiler (CXX, c++, g++, clang++) was found");
                println!("SKIP host kernel tests: no C++ compiler found (set CXX)");
                return None;
            };
            let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/host/driver.cpp");
            let dir = std::env::temp_dir().join(format!("scorch-host-kernels-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let exe = dir.join("driver");
            let out = Command::new(&cxx)
                .args(["-std=c++20", "-O2", "-pthread", "-ffp-contract=off", "-fno-fast-math"])
                .args(["-Wall", "-Wno-unknown-pragmas", "-Wno-sign-compare", "-o"])
                .arg(&exe)
                .arg(&src)
                .output()
                .expect("run the C++ compiler");
            assert!(
                out.status.success(),
                "{cxx} could not compile the kernels for the host:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            Some(exe)
        })
        .as_deref()
}

/// Runs the driver in `mode` on `input`, returning its output bytes.
fn run(exe: &Path, mode: &str, input: &[u8]) -> Vec<u8> {
    let dir = exe.parent().unwrap();
    let tag = format!("{mode}-{:?}", std::thread::current().id()).replace(['(', ')'], "");
    let (inp, outp) = (dir.join(format!("{tag}.in")), dir.join(format!("{tag}.out")));
    std::fs::write(&inp, input).unwrap();
    let out = Command::new(exe).arg(mode).arg(&inp).arg(&outp).output().unwrap();
    assert!(out.status.success(), "driver {mode}: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::read(&outp).unwrap()
}

fn rng(seed: u64) -> impl FnMut() -> f64 {
    let mut s = seed;
    move || {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn bytes_f32(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn bytes_f64(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn read_f64(b: &[u8]) -> Vec<f64> {
    b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()
}
fn read_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}
/// f32 values widened to f64.
fn read_f32_wide(b: &[u8]) -> Vec<f64> {
    read_f32(b).into_iter().map(f64::from).collect()
}
/// A CPU storage's values in order, as f64.
fn values(s: &scorch_ops::CpuStorage) -> Vec<f64> {
    s.to_f64_vec(&scorch_ops::Layout::contiguous(&[s.len()]))
}

/// Beta parameter quadruples (a1, b1, a2, b2): the benchmark's uniform [0.5, 20.5], the
/// KLUB regime (η = 1e4, nearby x), log-uniform over [1e-6, 1e8] (beyond the f32 path's
/// range at both ends), equal pairs, and non-finite or non-positive parameters.
fn cases() -> Vec<[f64; 4]> {
    let mut r = rng(7);
    let mut v = Vec::new();
    for _ in 0..6000 {
        v.push([0; 4].map(|_| 0.5 + 20.0 * r()));
    }
    for _ in 0..3000 {
        let (eta, alpha, x) = (1e4, 0.3 + 0.69 * r(), 0.05 + 0.9 * r());
        let xh = x * (1.0 + (r() - 0.5) * 10f64.powf(-1.0 - 4.0 * r()));
        v.push([eta * alpha * xh, eta * (1.0 - alpha * xh), eta * alpha * x, eta * (1.0 - alpha * x)]);
    }
    for _ in 0..3000 {
        v.push([0; 4].map(|_| 10f64.powf(-6.0 + 14.0 * r())));
    }
    for _ in 0..200 {
        let (a, b) = (0.01 + 50.0 * r(), 0.01 + 50.0 * r());
        v.push([a, b, a, b]);
    }
    for bad in [f64::NAN, 0.0, -1.5, f64::INFINITY] {
        v.push([bad, 2.0, 3.0, 4.0]);
        v.push([2.0, 3.0, 4.0, bad]);
    }
    v
}

#[test]
fn host_beta_kl_f32_matches_its_rust_mirror_bit_for_bit_and_defers_the_same_elements() {
    let Some(exe) = driver() else { return };
    let c: Vec<[f32; 4]> = cases().iter().map(|q| q.map(|x| x as f32)).collect();
    let n = c.len();
    let mut input = (n as u64).to_le_bytes().to_vec();
    for k in 0..4 {
        input.extend(bytes_f32(&c.iter().map(|q| q[k]).collect::<Vec<_>>()));
    }
    let out = run(exe, "kl32", &input);
    let count = u64::from_le_bytes(out[..8].try_into().unwrap()) as usize;
    let y: Vec<f32> = read_f32(&out[8..]);
    assert_eq!(y.len(), n);
    let mut deferred = 0;
    for (i, q) in c.iter().enumerate() {
        match kl_beta_fast_f32(q[0], q[1], q[2], q[3]) {
            Some(v) => assert_eq!(y[i].to_bits(), v.to_bits(), "element {i} {q:?}: kernel {} mirror {v}", y[i]),
            None => {
                deferred += 1;
                let r = kl_beta(q[0] as f64, q[1] as f64, q[2] as f64, q[3] as f64);
                let same = (r.is_nan() && y[i].is_nan()) || (r as f32) == y[i];
                // The double pass's lnΓ form and the CPU's differ by their own rounding,
                // ~1e-16 of the lnΓ values (up to ~1e6 here), before the cast to f32.
                let scale = [q[0], q[1], q[2], q[3], q[0] + q[1], q[2] + q[3]]
                    .map(|x| lgamma(x as f64).abs())
                    .iter()
                    .sum::<f64>();
                let close = (y[i] as f64 - r).abs() <= 1e-6 * r.abs() + 64.0 * f64::EPSILON * scale;
                assert!(same || close, "deferred element {i} {q:?}: kernel {} CPU f64 {r}", y[i]);
            }
        }
    }
    assert_eq!(count, deferred, "the kernel's deferred count");
    // The cases exercise both paths.
    assert!(deferred > 100 && deferred < n / 2, "{deferred} of {n} deferred");
}

#[test]
fn host_beta_kl_f64_and_its_gradient_match_the_cpu_backend() {
    let Some(exe) = driver() else { return };
    let c: Vec<[f64; 4]> = cases().into_iter().filter(|q| q.iter().all(|x| x.is_finite() && *x > 0.0)).collect();
    let n = c.len();
    let mut input = (n as u64).to_le_bytes().to_vec();
    for k in 0..4 {
        input.extend(bytes_f64(&c.iter().map(|q| q[k]).collect::<Vec<_>>()));
    }
    let out = read_f64(&run(exe, "kl64", &input));
    assert_eq!(out.len(), 5 * n);
    for (i, q) in c.iter().enumerate() {
        let scale = [q[0], q[1], q[2], q[3], q[0] + q[1], q[2] + q[3]].map(|x| lgamma(x).abs()).iter().sum::<f64>();
        let r = kl_beta(q[0], q[1], q[2], q[3]);
        assert!((out[i] - r).abs() <= 1e-12 * r.abs() + 64.0 * f64::EPSILON * scale, "KL {i} {q:?}: {} vs {r}", out[i]);
        let g = kl_beta_grad(q[0], q[1], q[2], q[3]);
        // Each gradient is a difference of terms that can be ~1e7 times larger than it;
        // the tolerance is relative to those terms.
        let (s1, s2) = (q[0] + q[1], q[2] + q[3]);
        let tail = (s1 - s2).abs() * trigamma(s1);
        let psis = digamma(s1).abs() + digamma(s2).abs();
        let terms = [
            (q[0] - q[2]).abs() * trigamma(q[0]) + tail,
            (q[1] - q[3]).abs() * trigamma(q[1]) + tail,
            digamma(q[0]).abs() + digamma(q[2]).abs() + psis,
            digamma(q[1]).abs() + digamma(q[3]).abs() + psis,
        ];
        for k in 0..4 {
            let kernel = out[(k + 1) * n + i];
            let tol = 1e-12 * (1.0 + terms[k]);
            assert!((kernel - g[k]).abs() <= tol, "grad {k} of {i} {q:?}: {kernel} vs {}", g[k]);
        }
    }
}

#[test]
fn host_beta_klub_f64_and_its_gradient_match_the_cpu_backend() {
    let Some(exe) = driver() else { return };
    let mut r = rng(11);
    let (b, per) = (4usize, 300usize);
    let n = b * per;
    let (eta, wc, wm) = (1e4, 0.99, 0.01);
    let x: Vec<f64> = (0..n).map(|_| 0.05 + 0.9 * r()).collect();
    let xh: Vec<f64> = x.iter().map(|&v| (v + (r() - 0.5) * 0.02).clamp(1e-3, 0.999)).collect();
    let at: Vec<f64> = (0..b).map(|_| 0.2 + 0.5 * r()).collect();
    let as_: Vec<f64> = at.iter().map(|&t| t + 0.05 + 0.2 * r()).collect();
    let mut input = (n as u64).to_le_bytes().to_vec();
    input.extend((per as u64).to_le_bytes());
    input.extend(bytes_f64(&[eta, wc, wm]));
    for v in [&xh, &x, &as_, &at] {
        input.extend(bytes_f64(v));
    }
    let out = read_f64(&run(exe, "klub64", &input));
    assert_eq!(out.len(), 2 * n);
    for i in 0..n {
        let s = i / per;
        let (v, g) = klub_pixel(xh[i], x[i], as_[s], at[s], eta, wc, wm);
        // lnΓ values here are ~1e5, so each side carries ~1e-11 of rounding.
        assert!((out[i] - v).abs() <= 1e-12 * v.abs() + 1e-9, "KLUB {i}: {} vs {v}", out[i]);
        assert!((out[n + i] - g).abs() <= 1e-9 * (1.0 + g.abs()), "KLUB grad {i}: {} vs {g}", out[n + i]);
    }
}

fn u64s(v: &[u64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn host_philox_kernels_give_the_cpu_stream() {
    use scorch_ops::cpu::RandDist;
    use scorch_ops::CpuStorage;
    let Some(exe) = driver() else { return };
    // Lengths that end mid-block, offsets that carry into the counter's high word.
    for (n, seed, offset) in [(1001usize, 7u64, 0u64), (4096, 0xdead_beef_1234, (1u64 << 32) - 3), (3, 1, 5)] {
        for (dist, a, b, rd) in [
            (0u64, 1.0, 0.0, RandDist::Uniform(0.0, 1.0)),
            (0, 4.0, -2.0, RandDist::Uniform(-2.0, 2.0)),
            (1, 0.5, 3.0, RandDist::Normal(3.0, 0.5)),
        ] {
            let mut input = u64s(&[n as u64, seed, offset, dist]);
            input.extend(bytes_f64(&[a, b]));
            let out = run(exe, "rand", &input);
            let y32: Vec<f32> = read_f32(&out[..4 * n]);
            let y64 = read_f64(&out[4 * n..]);
            let (CpuStorage::F32(c32), CpuStorage::F64(c64)) = (
                scorch_ops::cpu::random(scorch_ops::DType::F32, n, seed, offset, rd).unwrap(),
                scorch_ops::cpu::random(scorch_ops::DType::F64, n, seed, offset, rd).unwrap(),
            ) else {
                panic!("storage types")
            };
            for i in 0..n {
                if dist == 0 {
                    assert_eq!(
                        y32[i].to_bits(),
                        c32[i].to_bits(),
                        "uniform f32 {i} (n {n}, seed {seed}, offset {offset})"
                    );
                    assert_eq!(
                        y64[i].to_bits(),
                        c64[i].to_bits(),
                        "uniform f64 {i} (n {n}, seed {seed}, offset {offset})"
                    );
                } else {
                    // log / sin / cos: the host's libm against the CPU backend's `libm` crate.
                    assert!((y64[i] - c64[i]).abs() <= 1e-14, "normal f64 {i}: {} vs {}", y64[i], c64[i]);
                    assert!((y32[i] - c32[i]).abs() <= 4.0 * f32::EPSILON * c32[i].abs().max(1.0), "normal f32 {i}");
                }
            }
        }
        let (lo, span) = (-5i64, 11i64);
        let input: Vec<u8> =
            [n as i64, seed as i64, offset as i64, lo, span].iter().flat_map(|x| x.to_le_bytes()).collect();
        let out: Vec<i64> =
            run(exe, "randint", &input).chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
        let CpuStorage::I64(want) = scorch_ops::cpu::randint(n, lo, lo + span, seed, offset).unwrap() else { panic!() };
        assert_eq!(out, want, "randint (n {n}, seed {seed}, offset {offset})");
    }
}

#[test]
fn host_patch_embedding_gives_the_cpu_crops_and_gradient() {
    use scorch_ops::{CpuStorage, Layout};
    let Some(exe) = driver() else { return };
    let mut r = rng(5);
    for (b, c, h, w, ph, pw) in
        [(3usize, 2usize, 9usize, 7usize, 4usize, 5usize), (2, 1, 1, 6, 1, 6), (1, 3, 5, 5, 5, 5)]
    {
        let tops: Vec<usize> = (0..b).map(|_| (r() * (h - ph + 1) as f64) as usize).collect();
        let lefts: Vec<usize> = (0..b).map(|_| (r() * (w - pw + 1) as f64) as usize).collect();
        let x: Vec<f64> = (0..b * c * h * w).map(|_| r() - 0.5).collect();
        let g: Vec<f64> = (0..b * (c + 2) * ph * pw).map(|_| r() - 0.5).collect();
        let mut input = u64s(&[b, c, h, w, ph, pw].map(|v| v as u64));
        input.extend(u64s(&tops.iter().map(|&v| v as u64).collect::<Vec<_>>()));
        input.extend(u64s(&lefts.iter().map(|&v| v as u64).collect::<Vec<_>>()));
        input.extend(bytes_f64(&x));
        input.extend(bytes_f64(&g));
        let out = read_f64(&run(exe, "patch", &input));
        let m = g.len();
        let xs = CpuStorage::F64(x.clone());
        let CpuStorage::F64(want) =
            scorch_ops::cpu::fused::patch_embed((&xs, &Layout::contiguous(&[b, c, h, w])), &tops, &lefts, ph, pw)
                .unwrap()
        else {
            panic!()
        };
        let gs = CpuStorage::F64(g.clone());
        let CpuStorage::F64(dx) = scorch_ops::cpu::fused::patch_embed_bwd(
            (&gs, &Layout::contiguous(&[b, c + 2, ph, pw])),
            &[b, c, h, w],
            &tops,
            &lefts,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(&out[..m], &want[..], "patch_embed_f64 {b}×{c}×{h}×{w} → {ph}×{pw}");
        let want32: Vec<f64> = want.iter().map(|&v| v as f32 as f64).collect();
        assert_eq!(&out[m..2 * m], &want32[..], "patch_embed_f32");
        assert_eq!(&out[2 * m..], &dx[..], "patch_embed_bwd_f64");
    }
}

#[test]
fn host_softmax_kernels_match_the_cpu_softmax() {
    use scorch_ops::{Cpu, CpuStorage, Kernels, Layout};
    let Some(exe) = driver() else { return };
    let mut r = rng(13);
    // (rows, len, grid): a partial warp, a partial block, 16 per thread exactly, and rows
    // longer than the cached kernel takes (the launcher sends those to softmax_rows).
    for (rows, len, grid) in [(5usize, 7usize, 2u64), (9, 300, 4), (4, 1028, 3), (3, 4096, 3), (2, 5000, 1)] {
        let mut x: Vec<f32> = (0..rows * len).map(|_| (8.0 * (r() - 0.5)) as f32).collect();
        // Row 1: one +inf; row 2 (when there is one): one NaN; the last row: all -inf.
        x[len] = f32::INFINITY;
        if rows > 2 {
            x[2 * len + len / 2] = f32::NAN;
            x[(rows - 1) * len..].iter_mut().for_each(|v| *v = f32::NEG_INFINITY);
        }
        let xs = CpuStorage::F32(x.clone());
        for log_out in [0u64, 1] {
            let CpuStorage::F32(want) = Cpu.softmax((&xs, &Layout::contiguous(&[rows, len])), 1, log_out == 1).unwrap()
            else {
                panic!()
            };
            // 0: softmax_rows, 1: softmax_cached, 2: softmax_cached_f32v4 (rows of whole float4s).
            for cached in [0u64, 1, 2] {
                if (cached >= 1 && len > 16 * 256) || (cached == 2 && len % 4 != 0) {
                    continue;
                }
                let mut input = u64s(&[rows as u64, len as u64, log_out, cached, grid]);
                input.extend(bytes_f32(&x));
                let y: Vec<f32> = read_f32(&run(exe, "softmax", &input));
                for i in 0..rows * len {
                    let tol = 2e-6 * want[i].abs().max(if log_out == 1 { 1.0 } else { 1e-3 });
                    if want[i].is_nan() && y[i].is_nan() {
                        continue;
                    }
                    assert!(
                        (y[i] - want[i]).abs() <= tol,
                        "softmax (cached {cached}, log {log_out}) {rows}×{len} element {i}: {} vs {}",
                        y[i],
                        want[i]
                    );
                }
            }
        }
    }
}

#[test]
fn host_flash_attention_f32_matches_the_cpu_attention() {
    use scorch_ops::cpu::attention::attention_fwd;
    use scorch_ops::{CpuStorage, Layout};
    let Some(exe) = driver() else { return };
    let mut r = rng(17);
    // Partial query and key tiles, a key count below one tile, every head dim the kernel has.
    for (bh, sq, sk, d, causal) in [
        (2usize, 37usize, 45usize, 32usize, false),
        (1, 40, 40, 64, true),
        (2, 5, 70, 128, false),
        (1, 33, 9, 64, true),
    ] {
        let scale = 1.0 / (d as f64).sqrt();
        let mut gen = |n: usize| -> Vec<f32> { (0..n).map(|_| (2.0 * r() - 1.0) as f32).collect() };
        let (q, k, v) = (gen(bh * sq * d), gen(bh * sk * d), gen(bh * sk * d));
        let mut input = u64s(&[bh as u64, sq as u64, sk as u64, d as u64, causal as u64]);
        input.extend(bytes_f64(&[scale]));
        for t in [&q, &k, &v] {
            input.extend(bytes_f32(t));
        }
        let out: Vec<f32> = read_f32(&run(exe, "attn", &input));
        let (o, lse) = out.split_at(bh * sq * d);
        let (qs, ks, vs) = (CpuStorage::F32(q), CpuStorage::F32(k), CpuStorage::F32(v));
        let (lq, lk) = (Layout::contiguous(&[1, bh, sq, d]), Layout::contiguous(&[1, bh, sk, d]));
        let (CpuStorage::F32(wo), CpuStorage::F32(wl), _) =
            attention_fwd((&qs, &lq), (&ks, &lk), (&vs, &lk), None, Some(scale), causal).unwrap()
        else {
            panic!()
        };
        let what = format!("bh {bh} sq {sq} sk {sk} d {d} causal {causal}");
        for i in 0..o.len() {
            assert!((o[i] - wo[i]).abs() <= 2e-6 * (1.0 + wo[i].abs()), "{what}: o[{i}] {} vs {}", o[i], wo[i]);
        }
        for i in 0..lse.len() {
            assert!((lse[i] - wl[i]).abs() <= 2e-6 * (1.0 + wl[i].abs()), "{what}: lse[{i}] {} vs {}", lse[i], wl[i]);
        }
    }
}

#[test]
fn host_fused_sid_losses_match_the_cpu_backend() {
    use scorch_ops::cpu::fused::{
        sid_fake_score_loss, sid_fake_score_loss_bwd, sid_generator_loss, sid_generator_loss_bwd,
    };
    use scorch_ops::{CpuStorage, Layout};
    let Some(exe) = driver() else { return };
    let mut r = rng(19);
    // More samples than blocks; a sample shorter than a block and one of several blocks' worth.
    for (b, per, weighted) in [(5usize, 300usize, false), (4, 37, true), (2, 3 * 1024 + 5, false)] {
        let n = b * per;
        let alpha = 1.2;
        let mut reals = |k: usize, s: f64| -> Vec<f64> { (0..k).map(|_| s * (2.0 * r() - 1.0)).collect() };
        let weight: Vec<f64> = reals(b, 1.0).iter().map(|w| 0.5 + w.abs()).collect();
        let (lambda, gg, gf) = (reals(b, 2.0), reals(b, 1.0), reals(b, 1.0));
        let (yr, yf, xg): (Vec<f32>, Vec<f32>, Vec<f32>) = (
            reals(n, 1.0).iter().map(|&v| v as f32).collect(),
            reals(n, 1.0).iter().map(|&v| v as f32).collect(),
            reals(n, 1.0).iter().map(|&v| v as f32).collect(),
        );
        let mut input = u64s(&[b as u64, per as u64, weighted as u64]);
        input.extend(bytes_f64(&[alpha]));
        if weighted {
            input.extend(bytes_f64(&weight));
        }
        for v in [&lambda, &gg, &gf] {
            input.extend(bytes_f64(v));
        }
        for v in [&yr, &yf, &xg] {
            input.extend(bytes_f32(v));
        }
        let out = run(exe, "sid", &input);
        let f64s = |at: usize, k: usize| read_f64(&out[at..at + 8 * k]);
        let f32s = |at: usize, k: usize| -> Vec<f64> { read_f32_wide(&out[at..at + 4 * k]) };
        let (loss, w) = (f64s(0, b), f64s(8 * b, b));
        let at = 16 * b;
        let (dr, df, dx) = (f32s(at, n), f32s(at + 4 * n, n), f32s(at + 8 * n, n));
        let fake = f64s(at + 12 * n, b);
        let (gd, gy) = (f32s(at + 12 * n + 8 * b, n), f32s(at + 16 * n + 8 * b, n));

        let cpu = |v: &[f32]| CpuStorage::F32(v.to_vec());
        let (sr, sf, sx) = (cpu(&yr), cpu(&yf), cpu(&xg));
        let (l, lb) = (Layout::contiguous(&[b, per]), Layout::contiguous(&[b]));
        let as64 = |s: &CpuStorage| -> Vec<f64> {
            match s {
                CpuStorage::F32(v) => v.iter().map(|&x| x as f64).collect(),
                CpuStorage::F64(v) => v.clone(),
                _ => panic!("float storage"),
            }
        };
        let close = |what: &str, got: &[f64], want: &[f64], tol: f64| {
            for i in 0..want.len() {
                assert!(
                    (got[i] - want[i]).abs() <= tol * (1.0 + want[i].abs()),
                    "{what}[{i}] ({b}×{per}): {} vs {}",
                    got[i],
                    want[i]
                );
            }
        };
        let (cl, cw) =
            sid_generator_loss((&sr, &l), (&sf, &l), (&sx, &l), alpha, weighted.then_some(&weight[..])).unwrap();
        close("generator loss", &loss, &as64(&cl), 1e-6);
        close("normaliser", &w, &as64(&cw), 1e-6);
        let g = CpuStorage::F64(gg.clone());
        let (cdr, cdf, cdx) = sid_generator_loss_bwd((&sr, &l), (&sf, &l), (&sx, &l), &cw, (&g, &lb), alpha).unwrap();
        close("d_real", &dr, &as64(&cdr), 1e-5);
        close("d_fake", &df, &as64(&cdf), 1e-5);
        close("d_x", &dx, &as64(&cdx), 1e-5);
        let cf = sid_fake_score_loss((&sf, &l), (&sx, &l), &lambda).unwrap();
        close("fake-score loss", &fake, &as64(&cf), 1e-6);
        let g = CpuStorage::F64(gf.clone());
        let (cgd, cgy) = sid_fake_score_loss_bwd((&sf, &l), (&sx, &l), &lambda, (&g, &lb)).unwrap();
        close("d_denoised", &gd, &as64(&cgd), 1e-6);
        close("d_target", &gy, &as64(&cgy), 1e-6);
    }
}

#[test]
fn host_norm_kernels_match_the_cpu_norms() {
    use scorch_ops::cpu::norm::{norm_bwd, norm_fwd, NormGeom, NormKind};
    use scorch_ops::{CpuStorage, Layout};
    let Some(exe) = driver() else { return };
    let mut r = rng(23);
    // (kind, shape, affine, threads, chunks): EDM-like group norm, a group longer than a block,
    // layer and RMS norm over the last dim, fewer chunks than samples.
    let cases = [
        (NormKind::Group(4), vec![3usize, 8, 5, 5], true, 128u64, 2u64),
        (NormKind::Group(2), vec![2, 4, 17, 9], false, 256, 1),
        (NormKind::Layer, vec![5, 3, 24], true, 32, 3),
        (NormKind::Rms, vec![7, 40], true, 64, 4),
        // Chunks of more samples than the 8 sample lanes of the dw / db blocks.
        (NormKind::Layer, vec![2, 30, 12], true, 32, 2),
        (NormKind::Group(2), vec![20, 4, 3, 3], true, 32, 1),
    ];
    for (kind, shape, affine, threads, chunks) in cases {
        let g = NormGeom::new(kind, &shape).unwrap();
        let (groups, center) = match kind {
            NormKind::Group(k) => (k, true),
            NormKind::Layer => (1, true),
            NormKind::Rms => (1, false),
        };
        let m: usize = shape.iter().product();
        let mut reals =
            |k: usize, s: f64, o: f64| -> Vec<f32> { (0..k).map(|_| (o + s * (2.0 * r() - 1.0)) as f32).collect() };
        let (x, gy) = (reals(m, 2.0, 0.7), reals(m, 1.0, 0.0));
        let (w, b) = (reals(g.channels, 0.5, 1.0), reals(g.channels, 0.5, 0.0));
        let eps = 1e-5;
        let head = [g.rows, g.nseg, g.seg, groups, center as usize, threads as usize, g.channels, chunks as usize];
        let mut input = u64s(&head.map(|v| v as u64));
        input.extend(u64s(&[affine as u64, affine as u64]));
        input.extend(bytes_f64(&[eps]));
        for v in [&x, &gy] {
            input.extend(bytes_f32(v));
        }
        if affine {
            input.extend(bytes_f32(&w));
            input.extend(bytes_f32(&b));
        }
        let out = read_f32_wide(&run(exe, "norm", &input));
        let mut at = 0;
        let mut next = |k: usize| {
            at += k;
            out[at - k..at].to_vec()
        };
        let (y, mean, rstd, dx, dw, db) =
            (next(m), next(g.rows), next(g.rows), next(m), next(g.channels), next(g.channels));

        let st = |v: &[f32]| CpuStorage::F32(v.to_vec());
        let (xs, gs, ws, bs) = (st(&x), st(&gy), st(&w), st(&b));
        let (l, lc) = (Layout::contiguous(&shape), Layout::contiguous(&[g.channels]));
        let (wo, bo) = if affine { (Some((&ws, &lc)), Some((&bs, &lc))) } else { (None, None) };
        let (cy, cm, cr) = norm_fwd(kind, &xs, &l, wo, bo, eps).unwrap();
        let (cdx, cdw, cdb) = norm_bwd(kind, &gs, &l, &xs, &l, &cm, &cr, wo).unwrap();
        let f = |s: &CpuStorage| -> Vec<f64> {
            let CpuStorage::F32(v) = s else { panic!("f32 storage") };
            v.iter().map(|&x| x as f64).collect()
        };
        for (what, got, want) in [
            ("y", y, f(&cy)),
            ("mean", mean, f(&cm)),
            ("rstd", rstd, f(&cr)),
            ("dx", dx, f(&cdx)),
            ("dw", dw, f(&cdw)),
            ("db", db, f(&cdb)),
        ] {
            let scale = want.iter().fold(1.0f64, |a, v| a.max(v.abs()));
            for i in 0..want.len() {
                assert!(
                    (got[i] - want[i]).abs() <= 2e-5 * scale,
                    "{kind:?} {shape:?} {what}[{i}]: {} vs {}",
                    got[i],
                    want[i]
                );
            }
        }
    }
}

#[test]
fn host_optimizer_kernels_match_the_cpu_bit_for_bit() {
    use scorch_ops::cpu::optim::{adam_update, ema_update, sgd_update, AdamParams, AdamScalars, SgdParams};
    let Some(exe) = driver() else { return };
    let mut r = rng(29);
    let n = 1000;
    let mut reals = |s: f64| -> Vec<f32> { (0..n).map(|_| (s * (2.0 * r() - 1.0)) as f32).collect() };
    let (p, g, m) = (reals(1.0), reals(0.1), reals(0.01));
    let v: Vec<f32> = reals(1e-3).iter().map(|x| x.abs()).collect();
    let (buf, shadow) = (reals(0.05), reals(1.0));
    for (decoupled, step, momentum, first, nesterov) in [(true, 3u64, 0.9, false, true), (false, 1, 0.5, true, false)] {
        let hp = AdamParams { lr: 2e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01, decoupled };
        let sp = SgdParams { lr: 0.1, momentum, dampening: 0.1, weight_decay: 1e-4, nesterov };
        let beta = 0.999;
        let s = AdamScalars::<f64>::new(step, &hp).unwrap();
        let mut input = u64s(&[n as u64, decoupled as u64, (momentum != 0.0) as u64, first as u64, nesterov as u64]);
        input.extend(bytes_f64(&[
            s.beta1_w,
            s.beta2,
            s.one_minus_beta2,
            s.neg_step_size,
            s.bias_correction2_sqrt,
            s.eps,
            s.wd,
            s.decay_factor,
        ]));
        input.extend(bytes_f64(&[-sp.lr, sp.weight_decay, sp.momentum, 1.0 - sp.dampening, 1.0 - beta]));
        for t in [&p, &g, &m, &v, &buf, &shadow] {
            input.extend(bytes_f32(t));
        }
        let out = run(exe, "optim", &input);
        let f = |k: usize| -> Vec<f32> { read_f32(&out[4 * n * k..4 * n * (k + 1)]) };
        let total = read_f64(&out[24 * n..])[0];
        let (mut cp, mut cm, mut cv) = (p.clone(), m.clone(), v.clone());
        adam_update(&mut cp, &g, &mut cm, &mut cv, step, &hp).unwrap();
        let (mut sp_, mut sb) = (p.clone(), buf.clone());
        sgd_update(&mut sp_, &g, &mut sb, first, &sp).unwrap();
        let mut cs = shadow.clone();
        ema_update(&mut cs, &p, beta).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for (what, got, want) in [("adam p", f(0), cp), ("adam m", f(1), cm), ("adam v", f(2), cv)] {
            assert_eq!(bits(&got), bits(&want), "{what} (decoupled {decoupled}, step {step})");
        }
        for (what, got, want) in [("sgd p", f(3), sp_), ("sgd buf", f(4), sb), ("ema", f(5), cs)] {
            assert_eq!(bits(&got), bits(&want), "{what} (momentum {momentum}, first {first}, nesterov {nesterov})");
        }
        let want: f64 = g.iter().map(|&x| (x as f64) * (x as f64)).sum();
        assert!((total - want).abs() <= 1e-12 * want, "sum of squares {total} vs {want}");
    }
}

#[test]
fn host_im2col_and_col2im_give_the_cpu_convolution() {
    use scorch_ops::cpu::conv::{conv2d, conv2d_bwd_data, Conv2dParams};
    use scorch_ops::{CpuStorage, Layout};
    let Some(exe) = driver() else { return };
    let mut r = rng(31);
    // (n, cin, cout, h, w, k, stride, padding, dilation): 3×3 same, strided, dilated, 1×1 and
    // a non-square kernel over a non-square image.
    let cases = [
        (2usize, 3usize, 4usize, 7usize, 6usize, [3usize, 3], [1usize, 1], [1usize, 1], [1usize, 1]),
        (1, 2, 3, 9, 8, [3, 3], [2, 2], [1, 0], [1, 1]),
        (2, 2, 2, 10, 9, [3, 2], [1, 2], [2, 1], [2, 1]),
        (3, 4, 2, 5, 5, [1, 1], [1, 1], [0, 0], [1, 1]),
    ];
    for (n, cin, cout, h, w, k, stride, padding, dilation) in cases {
        let p = Conv2dParams { stride, padding, dilation, groups: 1 };
        let ho = (h + 2 * padding[0] - dilation[0] * (k[0] - 1) - 1) / stride[0] + 1;
        let wo = (w + 2 * padding[1] - dilation[1] * (k[1] - 1) - 1) / stride[1] + 1;
        let (rows, pix) = (cin * k[0] * k[1], ho * wo);
        let mut reals = |m: usize| -> Vec<f32> { (0..m).map(|_| (2.0 * r() - 1.0) as f32).collect() };
        let (x, wt, gy) = (reals(n * cin * h * w), reals(cout * rows), reals(n * cout * pix));
        // dcols = Wᵀ · gy per sample, the backward-data GEMM.
        let mut dcols = vec![0f32; n * rows * pix];
        for s in 0..n {
            for row in 0..rows {
                for q in 0..pix {
                    dcols[(s * rows + row) * pix + q] =
                        (0..cout).map(|co| wt[co * rows + row] * gy[(s * cout + co) * pix + q]).sum();
                }
            }
        }
        let fields =
            [cin, h, w, k[0], k[1], ho, wo, stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1]];
        let mut input = u64s(&[n as u64]);
        input.extend(u64s(&fields.map(|v| v as u64)));
        input.extend(bytes_f32(&x));
        input.extend(bytes_f32(&dcols));
        let out: Vec<f32> = read_f32(&run(exe, "conv", &input));
        let cs = n * rows * pix;
        let (c1, c2, c3) = (&out[..cs], &out[cs..2 * cs], &out[2 * cs..3 * cs]);
        let (d1, d2) = (&out[3 * cs..3 * cs + x.len()], &out[3 * cs + x.len()..]);
        let what = format!("n {n} cin {cin} {h}×{w} k {k:?} stride {stride:?} pad {padding:?} dil {dilation:?}");
        assert_eq!(c1, c3, "{what}: 32- and 64-bit im2col");
        for s in 0..n {
            for row in 0..rows {
                assert_eq!(&c1[(s * rows + row) * pix..][..pix], &c2[(row * n + s) * pix..][..pix], "{what}: layouts");
            }
        }
        // y = W · cols per sample against the CPU convolution.
        let (xs, ws) = (CpuStorage::F32(x.clone()), CpuStorage::F32(wt.clone()));
        let lw = Layout::contiguous(&[cout, cin, k[0], k[1]]);
        let (CpuStorage::F32(want), _) = conv2d(&xs, &Layout::contiguous(&[n, cin, h, w]), &ws, &lw, p).unwrap() else {
            panic!()
        };
        for s in 0..n {
            for co in 0..cout {
                for q in 0..pix {
                    let y: f32 = (0..rows).map(|row| wt[co * rows + row] * c1[(s * rows + row) * pix + q]).sum();
                    let e = want[(s * cout + co) * pix + q];
                    assert!((y - e).abs() <= 1e-5 * (1.0 + e.abs()), "{what}: y[{s},{co},{q}] {y} vs {e}");
                }
            }
        }
        let gs = CpuStorage::F32(gy.clone());
        let (CpuStorage::F32(want), _) =
            conv2d_bwd_data(&gs, &Layout::contiguous(&[n, cout, ho, wo]), &ws, &lw, [cin, h, w], p).unwrap()
        else {
            panic!()
        };
        assert_eq!(d1, d2, "{what}: 32- and 64-bit col2im");
        for i in 0..want.len() {
            assert!(
                (d1[i] - want[i]).abs() <= 1e-5 * (1.0 + want[i].abs()),
                "{what}: dx[{i}] {} vs {}",
                d1[i],
                want[i]
            );
        }
    }
}

/// `Strided` as the kernels take it (144 bytes, `#[repr(C)]` like the C struct).
fn strided_bytes(l: &scorch_ops::Layout) -> Vec<u8> {
    let s = scorch_cuda::device::Strided::from_layout(l).unwrap();
    let mut b: Vec<u8> = s.shape.iter().chain(&s.strides).flat_map(|v| v.to_le_bytes()).collect();
    b.extend(s.offset.to_le_bytes());
    b.extend(s.rank.to_le_bytes());
    b.extend(s.contiguous.to_le_bytes());
    b
}

/// Elementwise outputs compared by dtype: f64 to 1e-11 relative, f32 to 2e-5 (the host's libm
/// and the CPU backend's formulas differ by an ulp or so), bf16 / f16 to one unit of their
/// last place; NaN where the CPU has NaN.
fn assert_close_bytes(what: &str, dt: scorch_ops::DType, got: &[u8], want: &[u8]) {
    use scorch_ops::DType;
    let (g, w) = (typed_values(dt, got), typed_values(dt, want));
    assert_eq!(g.len(), w.len(), "{what}: lengths");
    let (rel, abs) = match dt {
        DType::F64 => (1e-11, 1e-13),
        DType::BF16 => (7.9e-3, 1e-6),
        DType::F16 => (9.8e-4, 1e-6),
        _ => (2e-5, 1e-6),
    };
    for i in 0..w.len() {
        let ok = (g[i].is_nan() && w[i].is_nan()) || g[i] == w[i] || (g[i] - w[i]).abs() <= abs + rel * w[i].abs();
        assert!(ok, "{what}[{i}]: {} vs {}", g[i], w[i]);
    }
}

#[test]
fn host_elementwise_kernels_match_the_cpu_for_every_op_code() {
    use scorch_cuda::backend::elementwise::{binary_code, cast_code, unary_code};
    use scorch_ops::cpu::elementwise::{BinaryOp, UnaryOp};
    use scorch_ops::{Cpu, CpuStorage, DType, Kernels, Layout};
    let Some(exe) = driver() else { return };
    let mut r = rng(37);
    use UnaryOp::*;
    let positive = [Log, Sqrt, Rsqrt, Lgamma, Digamma, Trigamma, Tetragamma, PowScalar(0.7)];
    let ops = [
        Neg,
        Abs,
        Exp,
        Log,
        Log1p,
        Expm1,
        Sqrt,
        Rsqrt,
        Recip,
        Sqr,
        Sin,
        Cos,
        Tanh,
        Sigmoid,
        Silu,
        SiluGrad,
        GeluErf,
        GeluTanh,
        GeluErfGrad,
        GeluTanhGrad,
        Softplus,
        Relu,
        Step,
        Erf,
        Lgamma,
        Digamma,
        Trigamma,
        Tetragamma,
        Sign,
        Floor,
        Round,
        Affine(1.5, -0.25),
        PowScalar(0.7),
        PowScalar(2.0),
        LeakyRelu(0.1),
        Clamp(-0.5, 0.75),
        ClampMask(-0.5, 0.75),
        NanToNum(0.0, 9.0, -9.0),
    ];
    for op in ops {
        let (code, p) = unary_code(op);
        for dt in [DType::F32, DType::F64, DType::BF16, DType::F16] {
            // A transposed [7, 9] buffer (strided), then a contiguous 64 for the float4 kernel.
            let dom = |v: f64| {
                if positive.contains(&op) {
                    0.05 + 1.5 * (v + 1.0)
                } else if op == Log1p {
                    0.95 * v
                } else {
                    3.0 * v
                }
            };
            for (shape, perm) in [(vec![7usize, 9usize], true), (vec![64], false)] {
                let m: usize = shape.iter().product();
                let mut vals: Vec<f64> = (0..m).map(|_| dom(2.0 * r() - 1.0)).collect();
                // Special values for every op: NaN, ±inf, ±0 and a value below f32's normal range.
                for (i, v) in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -0.0, 1e-39].into_iter().enumerate() {
                    vals[10 + i] = v;
                }
                if op == NanToNum(0.0, 9.0, -9.0) {
                    vals[1] = f64::NAN;
                    vals[2] = f64::INFINITY;
                    vals[3] = f64::NEG_INFINITY;
                }
                if op == Round {
                    vals[0] = 2.5;
                    vals[1] = -1.5;
                }
                let s = CpuStorage::from_f64_iter(dt, vals.into_iter());
                let base = Layout::contiguous(&shape);
                let l = if perm { base.permute(&[1, 0]).unwrap() } else { base };
                let want = Cpu.unary(op, (&s, &l)).unwrap();
                let mut input = u64s(&[m as u64, code as u64, cast_code(dt) as u64]);
                input.extend(bytes_f64(&p));
                input.extend(strided_bytes(&l.coalesced()));
                input.extend(u64s(&[m as u64]));
                input.extend(s.as_bytes());
                let out = run(exe, "unary", &input);
                let k = want.as_bytes().len();
                assert_close_bytes(&format!("{op:?} {dt:?} {shape:?}"), dt, &out[..k], want.as_bytes());
                if out.len() > k {
                    assert_close_bytes(&format!("{op:?} float4"), dt, &out[k..], want.as_bytes());
                }
            }
        }
    }

    use BinaryOp::*;
    for op in [Add, Sub, Mul, Div, Pow, Maximum, Minimum, Eq, Ne, Lt, Le, Gt, Ge] {
        for dt in [DType::F32, DType::F64, DType::BF16, DType::F16] {
            // a [3, 1, 5] against a transposed [5, 4] buffer seen as [4, 5]: broadcast to [3, 4, 5];
            // then two contiguous [16] (the float4 kernel). Halves of integers, so some are equal.
            let cases: [(Vec<usize>, Vec<usize>, bool); 2] =
                [(vec![3, 1, 5], vec![5, 4], true), (vec![16], vec![16], false)];
            for (sa, sb, perm) in cases {
                let gen = |m: usize, r: &mut dyn FnMut() -> f64| -> Vec<f64> {
                    (0..m)
                        .map(|_| {
                            if op == Pow {
                                0.25 + (4.0 * r()).floor() * 0.5
                            } else {
                                ((8.0 * r()).floor() - 3.5) * 0.5
                            }
                        })
                        .collect()
                };
                // Special values in both operands, paired with each other and with ordinary ones.
                let specials = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -0.0];
                let (mut va, mut vb) = (gen(sa.iter().product(), &mut r), gen(sb.iter().product(), &mut r));
                let nb = vb.len();
                for (i, v) in specials.into_iter().enumerate() {
                    va[i] = v;
                    vb[(2 * i + 1) % nb] = v;
                }
                let a = CpuStorage::from_f64_iter(dt, va.into_iter());
                let b = CpuStorage::from_f64_iter(dt, vb.into_iter());
                let la0 = Layout::contiguous(&sa);
                let lb0 =
                    if perm { Layout::contiguous(&sb).permute(&[1, 0]).unwrap() } else { Layout::contiguous(&sb) };
                let (want, shape) = Cpu.binary(op, (&a, &la0), (&b, &lb0)).unwrap();
                let n: usize = shape.iter().product();
                let cmp = op.is_comparison();
                let mut input = u64s(&[n as u64, binary_code(op) as u64, cast_code(dt) as u64, cmp as u64]);
                for (s, l) in [(&a, la0.broadcast_to(&shape).unwrap()), (&b, lb0.broadcast_to(&shape).unwrap())] {
                    input.extend(strided_bytes(&l));
                    input.extend(u64s(&[s.len() as u64]));
                    input.extend(s.as_bytes());
                }
                let out = run(exe, "binary", &input);
                let k = want.as_bytes().len();
                let what = format!("{op:?} {dt:?} {sa:?} with {sb:?}");
                if cmp {
                    assert_eq!(&out[..k], want.as_bytes(), "{what}");
                } else {
                    assert_close_bytes(&what, dt, &out[..k], want.as_bytes());
                    if out.len() > k {
                        assert_close_bytes(&format!("{what} float4"), dt, &out[k..], want.as_bytes());
                    }
                }
            }
        }
    }

    // Casts from a strided view, every source and destination dtype, compared byte for byte.
    let all = [DType::F32, DType::F64, DType::BF16, DType::F16, DType::I64, DType::I32, DType::U8, DType::Bool];
    let vals: Vec<f64> = (0..35)
        .map(|i| if i % 7 == 0 { 0.0 } else { (250.0 * r()).floor() + if i % 2 == 0 { 0.5 } else { 0.0 } })
        .collect();
    for src in all {
        let s = CpuStorage::from_f64_iter(src, vals.iter().copied());
        let l = Layout::contiguous(&[5, 7]).permute(&[1, 0]).unwrap();
        for dst in all {
            if src == dst {
                continue;
            }
            let want = Cpu.cast((&s, &l), dst).unwrap();
            let mut input = u64s(&[35, cast_code(src) as u64, cast_code(dst) as u64]);
            input.extend(strided_bytes(&l.coalesced()));
            input.extend(u64s(&[s.as_bytes().len() as u64]));
            input.extend(s.as_bytes());
            assert_eq!(run(exe, "cast", &input), want.as_bytes(), "cast {src:?} -> {dst:?}");
        }
    }
}

/// Raw little-endian values of dtype `dt` as f64.
fn typed_values(dt: scorch_ops::DType, b: &[u8]) -> Vec<f64> {
    values(&scorch_ops::CpuStorage::from_bytes(dt, b).unwrap())
}

/// `got` within `rel` of each value plus `rel_max` of the largest, for 16-bit outputs.
fn assert_near(what: &str, got: &[f64], want: &[f64], rel: f64, rel_max: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let big = want.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    for i in 0..want.len() {
        let tol = rel * want[i].abs() + rel_max * big;
        assert!((got[i] - want[i]).abs() <= tol, "{what}[{i}]: {} vs {} (largest {big})", got[i], want[i]);
    }
}

#[test]
fn host_tensor_core_convolution_matches_the_cpu() {
    use scorch_ops::cpu::conv::{conv2d, conv2d_bwd_data, conv2d_bwd_weight, Conv2dParams};
    use scorch_ops::{CpuStorage, DType, Layout};
    let Some(exe) = driver() else { return };
    let mut r = rng(41);
    // (dtype, n, cin, cout, h, w, k, stride, padding, dilation, splits): a 3×3 same conv with
    // K = 36 (not a multiple of 8: the scalar B path), 8 input channels (16-byte B rows), a
    // strided one (the _s backward), a dilated non-square one, and the weight gradient's
    // reduction split over 3 blocks.
    let cases = [
        (
            DType::BF16,
            2usize,
            4usize,
            6usize,
            6usize,
            5usize,
            [3usize, 3usize],
            [1usize, 1],
            [1usize, 1],
            [1usize, 1],
            1usize,
        ),
        (DType::F16, 1, 8, 5, 7, 7, [3, 3], [1, 1], [1, 1], [1, 1], 3),
        (DType::BF16, 2, 3, 4, 9, 8, [3, 3], [2, 2], [1, 1], [1, 1], 2),
        (DType::F16, 1, 2, 3, 8, 9, [3, 2], [1, 2], [2, 1], [2, 1], 1),
    ];
    for (dt, n, cin, cout, h, w, k, stride, padding, dilation, splits) in cases {
        let p = Conv2dParams { stride, padding, dilation, groups: 1 };
        let ho = (h + 2 * padding[0] - dilation[0] * (k[0] - 1) - 1) / stride[0] + 1;
        let wo = (w + 2 * padding[1] - dilation[1] * (k[1] - 1) - 1) / stride[1] + 1;
        let mut gen =
            |m: usize| CpuStorage::from_f64_iter(dt, (0..m).map(|_| 2.0 * r() - 1.0).collect::<Vec<_>>().into_iter());
        let (x, wt, gy) = (gen(n * cin * h * w), gen(cout * cin * k[0] * k[1]), gen(n * cout * ho * wo));
        let fields = [
            n,
            cin,
            h,
            w,
            cout,
            k[0],
            k[1],
            ho,
            wo,
            stride[0],
            stride[1],
            padding[0],
            padding[1],
            dilation[0],
            dilation[1],
            splits,
        ];
        let mut input = u64s(&[(dt == DType::F16) as u64]);
        input.extend(u64s(&fields.map(|v| v as u64)));
        for s in [&x, &wt, &gy] {
            input.extend(s.as_bytes());
        }
        let out = run(exe, "conv_tc", &input);
        let (ny, nx) = (2 * n * cout * ho * wo, 2 * n * cin * h * w);
        let (y, dx) = (typed_values(dt, &out[..ny]), typed_values(dt, &out[ny..ny + nx]));
        let dw: Vec<f64> = read_f32_wide(&out[ny + nx..]);
        let (lx, lw, lg) = (
            Layout::contiguous(&[n, cin, h, w]),
            Layout::contiguous(&[cout, cin, k[0], k[1]]),
            Layout::contiguous(&[n, cout, ho, wo]),
        );
        let what = format!(
            "{dt:?} n {n} cin {cin} cout {cout} {h}×{w} k {k:?} stride {stride:?} pad {padding:?} dil {dilation:?}"
        );
        // One 16-bit rounding on each side, of sums that differ only in order.
        assert_near(&format!("{what} y"), &y, &values(&conv2d(&x, &lx, &wt, &lw, p).unwrap().0), 8e-3, 1e-3);
        assert_near(
            &format!("{what} dx"),
            &dx,
            &values(&conv2d_bwd_data(&gy, &lg, &wt, &lw, [cin, h, w], p).unwrap().0),
            8e-3,
            1e-3,
        );
        let want_dw = values(&conv2d_bwd_weight(&x, &lx, &gy, &lg, [cout, cin, k[0], k[1]], p).unwrap().0);
        assert_near(&format!("{what} dw"), &dw, &want_dw, 8e-3, 1e-3);
    }
}

#[test]
fn host_tensor_core_flash_attention_matches_the_cpu() {
    use scorch_ops::cpu::attention::{attention_bwd, attention_fwd};
    use scorch_ops::{CpuStorage, DType, Layout};
    let Some(exe) = driver() else { return };
    let mut r = rng(43);
    // Partial query and key tiles, causal or not, every head dim, both 16-bit types.
    for (dt, bh, sq, sk, d, causal) in [
        (DType::BF16, 2usize, 70usize, 50usize, 32usize, false),
        (DType::F16, 1, 40, 75, 64, true),
        (DType::BF16, 1, 20, 33, 128, false),
    ] {
        let scale = 1.0 / (d as f64).sqrt();
        let mut gen =
            |m: usize| CpuStorage::from_f64_iter(dt, (0..m).map(|_| 2.0 * r() - 1.0).collect::<Vec<_>>().into_iter());
        let (q, k, v, go) = (gen(bh * sq * d), gen(bh * sk * d), gen(bh * sk * d), gen(bh * sq * d));
        let mut input = u64s(&[(dt == DType::F16) as u64, bh as u64, sq as u64, sk as u64, d as u64, causal as u64]);
        input.extend(bytes_f64(&[scale]));
        for s in [&q, &k, &v, &go] {
            input.extend(s.as_bytes());
        }
        let out = run(exe, "attn_tc", &input);
        let (nq, nk) = (bh * sq * d, bh * sk * d);
        let mut at = 0;
        let mut take = |bytes: usize| {
            at += bytes;
            &out[at - bytes..at]
        };
        let o = typed_values(dt, take(2 * nq));
        let lse = read_f32_wide(take(4 * bh * sq));
        let dq = read_f32_wide(take(4 * nq));
        let (dk, dv) = (typed_values(dt, take(2 * nk)), typed_values(dt, take(2 * nk)));

        let (lq, lk) = (Layout::contiguous(&[1, bh, sq, d]), Layout::contiguous(&[1, bh, sk, d]));
        let (co, cl, _) = attention_fwd((&q, &lq), (&k, &lk), (&v, &lk), None, Some(scale), causal).unwrap();
        let (cdq, cdk, cdv) = attention_bwd(
            (&q, &lq),
            (&k, &lk),
            (&v, &lk),
            None,
            (&co, &lq),
            (&cl, &Layout::contiguous(&[bh * sq])),
            (&go, &lq),
            Some(scale),
            causal,
        )
        .unwrap();
        let what = format!("{dt:?} bh {bh} sq {sq} sk {sk} d {d} causal {causal}");
        // P is rounded to the 16-bit type before P·V and dS before the products, as in
        // FlashAttention; the CPU keeps them in f32.
        assert_near(&format!("{what} o"), &o, &values(&co), 1e-2, 1e-2);
        assert_near(&format!("{what} lse"), &lse, &values(&cl), 1e-4, 1e-4);
        assert_near(&format!("{what} dq"), &dq, &values(&cdq), 2e-2, 2e-2);
        assert_near(&format!("{what} dk"), &dk, &values(&cdk), 2e-2, 2e-2);
        assert_near(&format!("{what} dv"), &dv, &values(&cdv), 2e-2, 2e-2);
    }
}

/// A Strided view, its buffer length and its f32 buffer, as the driver's `view` reads them.
fn view_bytes(l: &scorch_ops::Layout, buf: &[f32]) -> Vec<u8> {
    let mut b = strided_bytes(l);
    b.extend(u64s(&[buf.len() as u64]));
    b.extend(bytes_f32(buf));
    b
}

#[test]
fn host_index_kernels_match_the_cpu() {
    use scorch_ops::{Cpu, CpuStorage, DType, Kernels, Layout};
    let Some(exe) = driver() else { return };
    let mut r = rng(47);
    let mut reals = |m: usize| -> Vec<f32> { (0..m).map(|_| (2.0 * r() - 1.0) as f32).collect() };
    let mut r2 = rng(53);
    // index_select / index_add along dim 1 of transposed views, indices repeating.
    let (outer, size, inner, idx) = (2usize, 5usize, 3usize, vec![4i64, 0, 2, 2, 4, 1, 4]);
    let n = idx.len();
    let x = reals(outer * inner * size);
    let lx = Layout::contiguous(&[outer, inner, size]).permute(&[0, 2, 1]).unwrap();
    let src = reals(n * outer * inner);
    let ls = Layout::contiguous(&[n, outer, inner]).permute(&[1, 0, 2]).unwrap();
    let is = CpuStorage::I64(idx.clone());
    let li = Layout::contiguous(&[n]);
    let mut input = u64s(&[outer as u64, size as u64, inner as u64, n as u64]);
    input.extend(view_bytes(&lx.coalesced(), &x));
    input.extend(idx.iter().flat_map(|v| v.to_le_bytes()));
    input.extend(view_bytes(&ls.coalesced(), &src));
    let out = run(exe, "index", &input);
    let (ny, na) = (4 * outer * n * inner, 4 * outer * size * inner);
    let (xs, ss) = (CpuStorage::F32(x.clone()), CpuStorage::F32(src.clone()));
    assert_eq!(
        read_f32_wide(&out[..ny]),
        values(&Cpu.index_select((&xs, &lx), 1, (&is, &li)).unwrap()),
        "index_select"
    );
    assert_near(
        "index_add",
        &read_f32_wide(&out[ny..ny + na]),
        &values(&Cpu.index_add((&ss, &ls), 1, (&is, &li), size).unwrap()),
        1e-6,
        1e-7,
    );
    assert_eq!(u64::from_le_bytes(out[ny + na..].try_into().unwrap()), i64::MAX as u64, "no index out of range");
    let mut bad = input.clone();
    let at = 4 * 8 + strided_bytes(&lx).len() + 8 + 4 * x.len() + 8 * 3;
    bad[at..at + 8].copy_from_slice(&7i64.to_le_bytes());
    let out = run(exe, "index", &bad);
    assert_eq!(u64::from_le_bytes(out[ny + na..].try_into().unwrap()), 3, "first index out of range");

    // gather / scatter_add along dim 2 of a transposed [3, 4, 6] view with a [3, 2, 5] index.
    let (shape, ishape, dim) = ([3usize, 4, 6], [3usize, 2, 5], 2usize);
    let x = reals(72);
    let lx = Layout::contiguous(&[6, 4, 3]).permute(&[2, 1, 0]).unwrap();
    let m: usize = ishape.iter().product();
    let idx: Vec<i64> = (0..m).map(|_| (r2() * shape[dim] as f64) as i64).collect();
    let src = reals(m);
    let lsrc = Layout::contiguous(&ishape);
    let mut input = u64s(&[dim as u64]);
    input.extend(view_bytes(&lx, &x));
    input.extend(strided_bytes(&Layout::contiguous(&ishape)));
    input.extend(idx.iter().flat_map(|v| v.to_le_bytes()));
    input.extend(view_bytes(&lsrc, &src));
    input.extend(strided_bytes(&Layout::contiguous(&shape)));
    input.extend(u64s(&[72]));
    let out = run(exe, "gather", &input);
    let is = CpuStorage::I64(idx);
    let li = Layout::contiguous(&ishape);
    let xs = CpuStorage::F32(x);
    assert_eq!(read_f32_wide(&out[..4 * m]), values(&Cpu.gather((&xs, &lx), dim, (&is, &li)).unwrap()), "gather");
    let acc = read_f64(&out[4 * m..4 * m + 8 * 72]);
    let ss = CpuStorage::F32(src);
    let want = Cpu.scatter_add((&ss, &lsrc), dim, (&is, &li), &shape).unwrap();
    // The CPU rounds its f64 sums to the source dtype (f32 here).
    assert_near("scatter_add", &acc, &values(&want), 1e-7, 1e-12);
    // The f64 sums rounded to each dtype as the CPU rounds f64.
    let rest = &out[4 * m + 8 * 72..];
    for (dt, bytes) in
        [(DType::F32, &rest[..4 * 72]), (DType::BF16, &rest[4 * 72..6 * 72]), (DType::F16, &rest[6 * 72..])]
    {
        assert_eq!(bytes, CpuStorage::from_f64_iter(dt, acc.iter().copied()).as_bytes(), "f64 to {dt:?}");
    }
}

#[test]
fn host_reduction_kernels_match_the_cpu_nan_included() {
    use scorch_ops::cpu::reduce::ReduceOp;
    use scorch_ops::{Cpu, CpuStorage, Kernels, Layout};
    let Some(exe) = driver() else { return };
    let mut r = rng(59);
    let (rows, len) = (5usize, 1000usize);
    let mut x: Vec<f32> = (0..rows * len).map(|_| (2.0 * r() - 1.0) as f32).collect();
    // Row 1 holds a NaN mid-row, row 3 one at its start; column 7 gets one in row 2.
    x[len + 500] = f32::NAN;
    x[3 * len] = f32::NAN;
    x[2 * len + 7] = f32::NAN;
    let xs = CpuStorage::F32(x.clone());
    let l = Layout::contiguous(&[rows, len]);
    let same = |what: &str, got: &[f64], want: &[f64], tol: f64| {
        for i in 0..want.len() {
            let ok = (got[i].is_nan() && want[i].is_nan()) || (got[i] - want[i]).abs() <= tol * (1.0 + want[i].abs());
            assert!(ok, "{what}[{i}]: {} vs {}", got[i], want[i]);
        }
    };
    for (code, op) in [(0u64, ReduceOp::Sum), (1, ReduceOp::Max), (2, ReduceOp::Min)] {
        let rows_want = values(&Cpu.reduce(op, (&xs, &l), &[1]).unwrap());
        let cols_want = values(&Cpu.reduce(op, (&xs, &l), &[0]).unwrap());
        for kind in [0u64, 1, 2, 3, 4] {
            let mut input = u64s(&[rows as u64, len as u64, code, kind, 4]);
            input.extend(bytes_f32(&x));
            let got = read_f32_wide(&run(exe, "reduce", &input));
            let want = if kind <= 2 { &rows_want } else { &cols_want };
            same(&format!("{op:?} kind {kind}"), &got, want, 1e-5);
        }
    }
    for (code, op) in [(0u64, ReduceOp::ArgMax), (1, ReduceOp::ArgMin)] {
        let mut input = u64s(&[rows as u64, len as u64, code, 5, 1]);
        input.extend(bytes_f32(&x));
        let got: Vec<i64> =
            run(exe, "reduce", &input).chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
        let CpuStorage::I64(want) = Cpu.reduce(op, (&xs, &l), &[1]).unwrap() else { panic!() };
        assert_eq!(got, want, "{op:?}");
    }
    let mut input = u64s(&[rows as u64, len as u64, 0, 6, 1]);
    input.extend(bytes_f32(&x));
    same("cumsum", &read_f32_wide(&run(exe, "reduce", &input)), &values(&Cpu.cumsum((&xs, &l), 1).unwrap()), 1e-6);
}

#[test]
fn host_pooling_and_upsampling_match_the_cpu() {
    use scorch_ops::cpu::pool::{
        avg_pool2d, avg_pool2d_bwd, max_pool2d, upsample_bilinear2d, upsample_bilinear2d_bwd, Pool2d,
    };
    use scorch_ops::{CpuStorage, Layout};
    let Some(exe) = driver() else { return };
    let mut r = rng(61);
    // (n·c planes, h, w, pool, upsampled size): overlapping padded windows with a NaN in the
    // input (max pooling's NaN wins), 2×2 stride 2, and down- as well as up-sampling.
    let cases = [
        (3usize, 7usize, 6usize, Pool2d { kernel: [3, 3], stride: [2, 2], padding: [1, 1] }, (13usize, 9usize)),
        (2, 8, 8, Pool2d { kernel: [2, 2], stride: [2, 2], padding: [0, 0] }, (5, 12)),
    ];
    for (planes, h, w, p, (oh, ow)) in cases {
        let (ho, wo) = p.out_hw(h, w).unwrap();
        let mut reals = |m: usize| -> Vec<f32> { (0..m).map(|_| (2.0 * r() - 1.0) as f32).collect() };
        let mut x = reals(planes * h * w);
        x[w + 2] = f32::NAN;
        x[2 * w + 5] = f32::INFINITY;
        x[3 * w + 1] = f32::NEG_INFINITY;
        let (g, gu) = (reals(planes * ho * wo), reals(planes * oh * ow));
        let d = [h, w, ho, wo, p.kernel[0], p.kernel[1], p.stride[0], p.stride[1], p.padding[0], p.padding[1], oh, ow];
        let mut input = u64s(&[planes as u64]);
        input.extend(u64s(&d.map(|v| v as u64)));
        for v in [&x, &g, &gu] {
            input.extend(bytes_f32(v));
        }
        let out = run(exe, "pool", &input);
        let mut at = 0;
        let mut next = |bytes: usize| {
            at += bytes;
            out[at - bytes..at].to_vec()
        };
        let (no, ni, nu) = (planes * ho * wo, planes * h * w, planes * oh * ow);
        let (avg, davg, mx, idx, up, dup) =
            (next(4 * no), next(4 * ni), next(4 * no), next(8 * no), next(4 * nu), next(4 * ni));
        let (lx, lg, lu) = (
            Layout::contiguous(&[planes, 1, h, w]),
            Layout::contiguous(&[planes, 1, ho, wo]),
            Layout::contiguous(&[planes, 1, oh, ow]),
        );
        let (xs, gs, us) = (CpuStorage::F32(x), CpuStorage::F32(g), CpuStorage::F32(gu));
        let what = format!("{planes}×{h}×{w} {p:?} up {oh}×{ow}");
        // Same operations in the same order as the CPU: byte for byte.
        assert_eq!(avg, avg_pool2d(&xs, &lx, p).unwrap().as_bytes(), "{what}: avg_pool2d");
        assert_eq!(davg, avg_pool2d_bwd(&gs, &lg, [h, w], p).unwrap().as_bytes(), "{what}: avg_pool2d backward");
        let (cm, ci) = max_pool2d(&xs, &lx, p).unwrap();
        assert_eq!(mx, cm.as_bytes(), "{what}: max_pool2d values");
        assert_eq!(idx, ci.as_bytes(), "{what}: max_pool2d indices");
        assert_eq!(up, upsample_bilinear2d(&xs, &lx, oh, ow).unwrap().as_bytes(), "{what}: upsample");
        assert_eq!(dup, upsample_bilinear2d_bwd(&us, &lu, [h, w]).unwrap().as_bytes(), "{what}: upsample backward");
    }
}

/// `c[m, n] = Σ_k a[m, k] b[k, n]` per batch, from row-major or transposed operands.
fn bmm(
    batch: usize,
    (m, n, k): (usize, usize, usize),
    a: impl Fn(usize, usize, usize) -> f32,
    b: impl Fn(usize, usize, usize) -> f32,
) -> Vec<f32> {
    let mut c = vec![0f32; batch * m * n];
    for z in 0..batch {
        for i in 0..m {
            for j in 0..n {
                c[(z * m + i) * n + j] = (0..k).map(|t| a(z, i, t) as f64 * b(z, t, j) as f64).sum::<f64>() as f32;
            }
        }
    }
    c
}

#[test]
fn host_attention_row_kernels_with_cpu_products_match_the_cpu_attention() {
    use scorch_ops::cpu::attention::{attention_bwd, attention_fwd};
    use scorch_ops::{CpuStorage, Layout};
    let Some(exe) = driver() else { return };
    let mut r = rng(67);
    let (b, heads, sq, sk, d, dv) = (2usize, 2usize, 9usize, 11usize, 8usize, 6usize);
    let bh = b * heads;
    let scale = 0.3;
    let mut reals = |m: usize| -> Vec<f32> { (0..m).map(|_| (2.0 * r() - 1.0) as f32).collect() };
    let (q, k, v, go) = (reals(bh * sq * d), reals(bh * sk * d), reals(bh * sk * dv), reals(bh * sq * dv));
    // An additive [B, 1, Sq, Sk] mask broadcast over heads, with -inf entries and one row
    // masked entirely (its output is 0 and its lse -inf).
    let mut mask = reals(b * sq * sk);
    mask[3] = f32::NEG_INFINITY;
    mask[sk + 4] = f32::NEG_INFINITY;
    for j in 0..sk {
        mask[(sq + 2) * sk + j] = f32::NEG_INFINITY;
    }
    for (has_mask, causal) in [(true, false), (false, true)] {
        let s = bmm(bh, (sq, sk, d), |z, i, t| q[(z * sq + i) * d + t], |z, t, j| k[(z * sk + j) * d + t]);
        let head = |bwd: u64| {
            let mut h =
                u64s(&[bh as u64, sq as u64, sk as u64, dv as u64, heads as u64, has_mask as u64, causal as u64]);
            h.extend(u64s(&[(sq * sk) as u64, 0, sk as u64, 1, bwd]));
            h.extend(bytes_f64(&[scale]));
            h.extend(u64s(&[mask.len() as u64]));
            h.extend(bytes_f32(&mask));
            h.extend(bytes_f32(&s));
            h
        };
        let out = read_f32(&run(exe, "attn_rows", &head(0)));
        let (p, lse) = out.split_at(bh * sq * sk);
        let o = bmm(bh, (sq, dv, sk), |z, i, t| p[(z * sq + i) * sk + t], |z, t, j| v[(z * sk + t) * dv + j]);
        let dp = bmm(bh, (sq, sk, dv), |z, i, t| go[(z * sq + i) * dv + t], |z, t, j| v[(z * sk + j) * dv + t]);
        let mut input = head(1);
        for t in [lse, &o, &go, &dp] {
            input.extend(bytes_f32(t));
        }
        let out = read_f32(&run(exe, "attn_rows", &input));
        let (p2, ds) = out.split_at(bh * sq * sk);
        let w = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
        // exp(x − lse) against exp(x − max) / sum: the same P to a few ulps.
        assert_near("P recomputed from the lse", &w(p2), &w(p), 1e-6, 1e-7);
        let dq = bmm(bh, (sq, d, sk), |z, i, t| ds[(z * sq + i) * sk + t], |z, t, j| k[(z * sk + t) * d + j]);
        let dk = bmm(bh, (sk, d, sq), |z, i, t| ds[(z * sq + t) * sk + i], |z, t, j| q[(z * sq + t) * d + j]);
        let dvv = bmm(bh, (sk, dv, sq), |z, i, t| p[(z * sq + t) * sk + i], |z, t, j| go[(z * sq + t) * dv + j]);

        let st = |v: &[f32]| CpuStorage::F32(v.to_vec());
        let (qs, ks, vs, gs, ms) = (st(&q), st(&k), st(&v), st(&go), st(&mask));
        let (lq, lk, lv) = (
            Layout::contiguous(&[b, heads, sq, d]),
            Layout::contiguous(&[b, heads, sk, d]),
            Layout::contiguous(&[b, heads, sk, dv]),
        );
        let (lo, lm) = (Layout::contiguous(&[b, heads, sq, dv]), Layout::contiguous(&[b, 1, sq, sk]));
        let m = has_mask.then_some((&ms, &lm));
        let (co, cl, _) = attention_fwd((&qs, &lq), (&ks, &lk), (&vs, &lv), m, Some(scale), causal).unwrap();
        let (cdq, cdk, cdv) = attention_bwd(
            (&qs, &lq),
            (&ks, &lk),
            (&vs, &lv),
            m,
            (&co, &lo),
            (&cl, &Layout::contiguous(&[bh * sq])),
            (&gs, &lo),
            Some(scale),
            causal,
        )
        .unwrap();
        let what = format!("mask {has_mask} causal {causal}");
        let (wl, gl) = (values(&cl), w(lse));
        for i in 0..wl.len() {
            assert!(
                wl[i] == gl[i] || (wl[i] - gl[i]).abs() <= 1e-5 * (1.0 + wl[i].abs()),
                "{what}: lse[{i}] {} vs {}",
                gl[i],
                wl[i]
            );
        }
        assert_near(&format!("{what} o"), &w(&o), &values(&co), 1e-5, 1e-6);
        assert_near(&format!("{what} dq"), &w(&dq), &values(&cdq), 1e-5, 1e-6);
        assert_near(&format!("{what} dk"), &w(&dk), &values(&cdk), 1e-5, 1e-6);
        assert_near(&format!("{what} dv"), &w(&dvv), &values(&cdv), 1e-5, 1e-6);
    }
}

#[test]
fn host_deterministic_index_add_and_scatter_add_are_the_cpu_bit_for_bit() {
    use scorch_cuda::backend::index::{scatter_destinations, stable_buckets};
    use scorch_ops::{Cpu, CpuStorage, Kernels, Layout};
    let Some(exe) = driver() else { return };
    let mut r = rng(71);
    let mut reals = |m: usize| -> Vec<f32> { (0..m).map(|_| (2.0 * r() - 1.0) as f32).collect() };
    // index_add along dim 1 of a transposed source, indices repeating and one target unused.
    let (outer, size, inner) = (2usize, 6usize, 3usize);
    let idx = vec![4usize, 0, 2, 2, 4, 1, 4, 0, 2];
    let n = idx.len();
    let src = reals(n * outer * inner);
    let ls = Layout::contiguous(&[n, outer, inner]).permute(&[1, 0, 2]).unwrap();
    let (offsets, order) = stable_buckets(&idx, size).unwrap();
    let mut input = u64s(&[outer as u64, size as u64, inner as u64, n as u64]);
    input.extend(view_bytes(&ls.coalesced(), &src));
    for v in [&offsets, &order] {
        input.extend(v.iter().flat_map(|x| x.to_le_bytes()));
    }
    let got = run(exe, "index_det", &input);
    let (ss, is) = (CpuStorage::F32(src), CpuStorage::I64(idx.iter().map(|&i| i as i64).collect()));
    let want = Cpu.index_add((&ss, &ls), 1, (&is, &Layout::contiguous(&[n])), size).unwrap();
    assert_eq!(got, want.as_bytes(), "deterministic index_add");

    // scatter_add along dim 1 of a transposed [3, 5, 4] source into [3, 4, 4], repeats included.
    let (sshape, oshape, dim) = ([3usize, 5, 4], [3usize, 4, 4], 1usize);
    let total: usize = sshape.iter().product();
    let src = reals(total);
    let ls = Layout::contiguous(&[4, 5, 3]).permute(&[2, 1, 0]).unwrap();
    let mut r2 = rng(73);
    let idx: Vec<usize> = (0..total).map(|_| (r2() * oshape[dim] as f64) as usize).collect();
    let out_len: usize = oshape.iter().product();
    let (offsets, order) = stable_buckets(&scatter_destinations(&sshape, dim, &idx, &oshape), out_len).unwrap();
    let mut input = u64s(&[out_len as u64]);
    input.extend(view_bytes(&ls, &src));
    for v in [&offsets, &order] {
        input.extend(v.iter().flat_map(|x| x.to_le_bytes()));
    }
    let acc = read_f64(&run(exe, "scatter_det", &input));
    // The CPU sums in f64 in source order and rounds to f32; so does the GPU path after this.
    let (ss, is) = (CpuStorage::F32(src), CpuStorage::I64(idx.iter().map(|&i| i as i64).collect()));
    let want = Cpu.scatter_add((&ss, &ls), dim, (&is, &Layout::contiguous(&sshape)), &oshape).unwrap();
    let got = CpuStorage::from_f64_iter(scorch_ops::DType::F32, acc.into_iter());
    assert_eq!(got.as_bytes(), want.as_bytes(), "deterministic scatter_add");
}
