//! The papers' fused kernels against the spec's worked examples (mpmath-derived vectors in
//! ../shared/spec/tarflow-beta.md §C.3 and the Patch Diffusion coordinate convention).

use scorch_engine::ops::fused::{beta_klub, coord_grid, patch_embed, sid_generator_loss};
use scorch_engine::{grad, DType, Tensor};
use scorch_ops::cpu::fused::{kl_beta, klub_pixel, KlubParams};

const ETA: f64 = 1e4;
const ALPHA_T: f64 = 0.182425523806;
const ALPHA_S: f64 = 0.283940206184;
const X: f64 = 0.912;
const XH: f64 = 0.8925;

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs()
}

#[test]
fn klub_matches_the_spec_vector() {
    let delta = ALPHA_S - ALPHA_T;
    let cond = kl_beta(ETA * delta * XH, ETA - ETA * ALPHA_S * XH, ETA * delta * X, ETA - ETA * ALPHA_S * X);
    let marg = kl_beta(ETA * ALPHA_T * XH, ETA - ETA * ALPHA_T * XH, ETA * ALPHA_T * X, ETA - ETA * ALPHA_T * X);
    // The spec's values carry 15 digits, its α's 12: agreement to ~1e-9 relative is exact here.
    assert!(close(cond, 0.344958345858642, 1e-8), "KLUB_cond {cond}");
    assert!(close(marg, 0.461618965393775, 1e-8), "KLUB_marg {marg}");
    let swapped = kl_beta(ETA * delta * X, ETA - ETA * ALPHA_S * X, ETA * delta * XH, ETA - ETA * ALPHA_S * XH);
    assert!(close(swapped, 0.343819356495261, 1e-8), "-ELBO term {swapped}");
    let (mixed, _) = klub_pixel(XH, X, ALPHA_S, ALPHA_T, ETA, 0.99, 0.01);
    assert!(close(mixed, 0.346124952053994, 1e-8), "mixed {mixed}");
    let (_, dcond) = klub_pixel(XH, X, ALPHA_S, ALPHA_T, ETA, 1.0, 0.0);
    assert!(close(dcond, -35.4990561287031, 1e-7), "dKLUB_cond/dxh {dcond}");
}

#[test]
fn klub_op_value_and_gradient_in_f32_stay_accurate() {
    // f32 inputs, f64 evaluation inside the fused kernel: no cancellation garbage (§B5.5).
    let xh = Tensor::from_vec(vec![XH as f32], &[1, 1]).unwrap().requires_grad_(true).unwrap();
    let x = Tensor::from_vec(vec![X as f32], &[1, 1]).unwrap();
    let p = KlubParams { alpha_s: vec![ALPHA_S], alpha_t: vec![ALPHA_T], eta: ETA, w_cond: 1.0, w_marg: 0.0 };
    let l = beta_klub(&xh, &x, &p).unwrap();
    let (want, dwant) = klub_pixel(XH as f32 as f64, X as f32 as f64, ALPHA_S, ALPHA_T, ETA, 1.0, 0.0);
    assert!(close(l.item().unwrap(), want, 1e-6), "{} vs {want}", l.item().unwrap());
    let g = grad(&[l.sum_all().unwrap()], &[xh], None, false, false).unwrap()[0].clone().unwrap();
    assert!(close(g.item().unwrap(), dwant, 1e-5));
}

#[test]
fn coordinate_grid_spans_minus_one_to_one() {
    let g = coord_grid(1, 4, 5, DType::F64).unwrap().to_vec_f64().unwrap();
    // channel 0 is horizontal (varies along W), channel 1 vertical.
    assert_eq!(&g[0..5], &[-1.0, -0.5, 0.0, 0.5, 1.0]);
    assert_eq!(g[20], -1.0);
    assert_eq!(g[39], 1.0);
    assert!((g[25] - (2.0 / 3.0 - 1.0)).abs() < 1e-15);
    // A full-size crop reproduces the grid.
    let x = Tensor::zeros(&[1, 3, 4, 5], DType::F64).unwrap();
    let p = patch_embed(&x, &[0], &[0], 4, 5).unwrap();
    assert_eq!(p.narrow(1, 3, 2).unwrap().to_vec_f64().unwrap(), g);
}

#[test]
fn sid_loss_normaliser_is_detached() {
    // ∂/∂x_g of Σ ℓ with w held constant is −w·(y_real − y_fake) exactly.
    let yr = Tensor::from_f64s(&[0.5, -0.2, 0.1, 0.3], &[1, 4], DType::F64).unwrap();
    let yf = Tensor::from_f64s(&[0.1, 0.2, -0.3, 0.0], &[1, 4], DType::F64).unwrap();
    let xg = Tensor::from_f64s(&[0.4, 0.1, 0.2, -0.1], &[1, 4], DType::F64).unwrap().requires_grad_(true).unwrap();
    let l = sid_generator_loss(&yr, &yf, &xg, 1.2).unwrap().sum_all().unwrap();
    let g =
        grad(&[l], std::slice::from_ref(&xg), None, false, false).unwrap()[0].clone().unwrap().to_vec_f64().unwrap();
    let mae = (0.1 + 0.3 + 0.1 + 0.4) / 4.0;
    let w = 1.0 / f64::max(mae, 1e-5);
    let want: Vec<f64> = [0.4, -0.4, 0.4, 0.3].iter().map(|d| -w * d).collect();
    for (a, b) in g.iter().zip(&want) {
        assert!((a - b).abs() < 1e-12, "{g:?} vs {want:?}");
    }
}
