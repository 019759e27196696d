//! Autograd semantics: double backward (R1 penalty), grad w.r.t. any tensor, retain_graph,
//! no_grad, detach, version counters, and clear errors for misuse.

use scorch_engine::testing::{gradcheck, GradcheckOptions, SampleRng};
use scorch_engine::{grad, no_grad, ConvParams, DType, Generator, Tensor};

fn t(v: &[f64], s: &[usize]) -> Tensor {
    Tensor::from_f64s(v, s, DType::F64).unwrap()
}

/// A small discriminator: conv → leaky-ReLU → group norm → linear.
fn disc(x: &Tensor, w: &[Tensor]) -> scorch_engine::Result<Tensor> {
    let p = ConvParams { stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 1 };
    let h = x.conv2d(&w[0], Some(&w[1]), p)?.leaky_relu(0.2)?.group_norm(2, Some(&w[2]), Some(&w[3]), 1e-5)?;
    let n = h.shape()[0];
    h.reshape(&[n, h.numel() / n])?.linear(&w[4], Some(&w[5]))
}

/// R1 = Σ ‖∂ΣD(x)/∂x‖², computed with create_graph so it can be differentiated again.
fn r1(x: &Tensor, w: &[Tensor]) -> scorch_engine::Result<Tensor> {
    let x = x.detach().requires_grad_(true)?;
    let d = disc(&x, w)?.sum_all()?;
    let g = grad(&[d], &[x], None, true, true)?;
    g[0].as_ref().expect("D depends on x").sqr()?.sum_all()
}

#[test]
fn r1_penalty_double_backward_matches_finite_differences() {
    let mut r = SampleRng::new(11);
    let x = r.tensor_signed(&[2, 2, 4, 4], 0.0, 1.0, true, false).unwrap();
    let w = vec![
        r.tensor_signed(&[4, 2, 3, 3], 0.0, 0.5, true, false).unwrap(),
        r.tensor_signed(&[4], 0.0, 0.5, true, false).unwrap(),
        r.tensor(&[4], 0.5, 1.5, false).unwrap(),
        r.tensor_signed(&[4], 0.0, 0.5, true, false).unwrap(),
        r.tensor_signed(&[1, 64], 0.0, 0.3, true, false).unwrap(),
        r.tensor_signed(&[1], 0.0, 0.3, true, false).unwrap(),
    ];
    let opts = GradcheckOptions { eps: 1e-5, atol: 1e-6, rtol: 1e-4, ..Default::default() };
    let rep = gradcheck(|ws| r1(&x, ws), &w, &opts).unwrap();
    assert!(rep.passed(), "{rep}");
}

#[test]
fn third_derivative_of_a_cube() {
    let x = t(&[1.5, -2.0], &[2]).requires_grad_(true).unwrap();
    let y = x.powf(3.0).unwrap().sum_all().unwrap();
    let g1 = grad(&[y], std::slice::from_ref(&x), None, true, true).unwrap()[0].clone().unwrap();
    let g2 = grad(&[g1.sum_all().unwrap()], std::slice::from_ref(&x), None, true, true).unwrap()[0].clone().unwrap();
    assert_eq!(g2.to_vec_f64().unwrap(), vec![9.0, -12.0]);
    let g3 = grad(&[g2.sum_all().unwrap()], &[x], None, false, false).unwrap()[0].clone().unwrap();
    assert_eq!(g3.to_vec_f64().unwrap(), vec![6.0, 6.0]);
}

#[test]
fn grad_with_respect_to_intermediate_and_unused_inputs() {
    let x = t(&[1.0, 2.0], &[2]).requires_grad_(true).unwrap();
    let unused = t(&[3.0], &[1]).requires_grad_(true).unwrap();
    let h = x.mul_scalar(3.0).unwrap();
    let y = h.sqr().unwrap().sum_all().unwrap();
    let g = grad(&[y], &[h.clone(), x.clone(), unused], None, false, false).unwrap();
    assert_eq!(g[0].as_ref().unwrap().to_vec_f64().unwrap(), vec![6.0, 12.0]);
    assert_eq!(g[1].as_ref().unwrap().to_vec_f64().unwrap(), vec![18.0, 36.0]);
    assert!(g[2].is_none());
    assert!(x.grad().is_none(), "grad() must not touch .grad");
}

#[test]
fn backward_accumulates_and_frees_the_graph() {
    let x = t(&[2.0], &[1]).requires_grad_(true).unwrap();
    let y = x.exp().unwrap().sum_all().unwrap();
    y.backward_with(None, true, false).unwrap();
    y.backward().unwrap();
    let e = 2f64.exp();
    assert!((x.grad().unwrap().item().unwrap() - 2.0 * e).abs() < 1e-12);
    let err = y.backward().unwrap_err().to_string();
    assert!(err.contains("retain_graph"), "{err}");
}

#[test]
fn no_grad_and_detach_cut_the_graph() {
    let x = t(&[1.0, 2.0], &[2]).requires_grad_(true).unwrap();
    {
        let _g = no_grad();
        let y = x.mul(&x).unwrap();
        assert!(!y.requires_grad());
    }
    let y = x.detach().mul(&x).unwrap().sum_all().unwrap();
    y.backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec_f64().unwrap(), vec![1.0, 2.0]);
}

#[test]
fn in_place_modification_after_use_is_an_error() {
    let x = t(&[1.0, 2.0], &[2]).requires_grad_(true).unwrap();
    let a = t(&[3.0, 4.0], &[2]);
    let y = x.mul(&a).unwrap().sum_all().unwrap();
    {
        let _g = no_grad();
        a.assign(&t(&[0.0, 0.0], &[2])).unwrap();
    }
    let err = y.backward().unwrap_err().to_string();
    assert!(err.contains("modified in place"), "{err}");
}

#[test]
fn misuse_gives_clear_errors() {
    let x = t(&[1.0, 2.0], &[2]).requires_grad_(true).unwrap();
    let e = x.mul_scalar(2.0).unwrap().backward().unwrap_err().to_string();
    assert!(e.contains("scalar"), "{e}");
    let e = t(&[1.0], &[1]).backward().unwrap_err().to_string();
    assert!(e.contains("does not require grad"), "{e}");
    let e = Tensor::from_vec(vec![1i64, 2], &[2]).unwrap().set_requires_grad(true).unwrap_err().to_string();
    assert!(e.contains("floating point"), "{e}");
    let e = x.add(&t(&[1.0, 2.0, 3.0], &[3])).unwrap_err().to_string();
    assert!(e.contains("[2]") && e.contains("[3]"), "{e}");
    let e = t(&[1.0; 6], &[2, 3]).matmul(&t(&[1.0; 6], &[2, 3])).unwrap_err().to_string();
    assert!(e.contains("inner dimensions"), "{e}");
    let e = x.sum(&[3], false).unwrap_err().to_string();
    assert!(e.contains("axis"), "{e}");
    let e = x.index_select(0, &Tensor::from_vec(vec![5i64], &[1]).unwrap()).unwrap_err().to_string();
    assert!(e.contains("index 5"), "{e}");
    let e = Tensor::from_vec(vec![1.0f32; 5], &[2, 3]).unwrap_err().to_string();
    assert!(e.contains("5 values"), "{e}");
    let e = x.to_vec::<f32>().unwrap_err().to_string();
    assert!(e.contains("f64"), "{e}");
    let img = t(&[0.0; 16], &[1, 1, 4, 4]);
    let e = img.conv2d(&t(&[0.0; 18], &[1, 2, 3, 3]), None, ConvParams::default()).unwrap_err().to_string();
    assert!(e.contains("groups"), "{e}");
    let e = x.mul_scalar(1.0).unwrap().set_requires_grad(false).unwrap_err().to_string();
    assert!(e.contains("leaf"), "{e}");
    let e = x.assign(&t(&[0.0, 0.0], &[2])).unwrap_err().to_string();
    assert!(e.contains("no_grad"), "{e}");
}

#[test]
fn philox_streams_are_reproducible() {
    let a = Tensor::randn(&[1000], DType::F32, &Generator::new(5)).unwrap().to_vec_f32().unwrap();
    let b = Tensor::randn(&[1000], DType::F32, &Generator::new(5)).unwrap().to_vec_f32().unwrap();
    assert_eq!(a, b);
    // Two draws from one generator equal one long draw's halves (blocks of 4 values).
    let g = Generator::new(9);
    let x = Tensor::rand(&[8], DType::F64, &g).unwrap().to_vec_f64().unwrap();
    let y = Tensor::rand(&[8], DType::F64, &g).unwrap().to_vec_f64().unwrap();
    let long = Tensor::rand(&[16], DType::F64, &Generator::new(9)).unwrap().to_vec_f64().unwrap();
    assert_eq!([x, y].concat(), long);
    let (seed, off) = g.state();
    assert_eq!((seed, off), (9, 4));
    let m = Tensor::randn(&[200_000], DType::F64, &Generator::new(1)).unwrap();
    let mean = m.mean_all().unwrap().item().unwrap();
    let var = m.var(&[], 1, false).unwrap().item().unwrap();
    assert!(mean.abs() < 0.01 && (var - 1.0).abs() < 0.02, "mean {mean} var {var}");
}

#[test]
fn casts_round_trip_every_dtype() {
    let v = [0.0, 1.0, 2.0, 7.0, 100.0];
    for dt in DType::ALL {
        let x = Tensor::from_f64s(&v, &[5], dt).unwrap();
        let back = x.cast(DType::F64).unwrap().to_vec_f64().unwrap();
        let want: Vec<f64> =
            if dt == DType::Bool { v.iter().map(|&a| (a != 0.0) as u8 as f64).collect() } else { v.to_vec() };
        assert_eq!(back, want, "{dt}");
        let bytes = x.to_bytes().unwrap();
        assert_eq!(Tensor::from_bytes(&bytes, dt, &[5]).unwrap().to_vec_f64().unwrap(), want, "{dt} bytes");
    }
}

#[test]
fn safetensors_round_trip_of_tensors() {
    let dir = std::env::temp_dir().join(format!("scorch-io-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.safetensors");
    let a = Tensor::randn(&[3, 4], DType::F32, &Generator::new(0)).unwrap().t().unwrap();
    let b = Tensor::from_vec(vec![1i64, -2, 3], &[3]).unwrap();
    scorch_engine::io::save_tensors(&path, &[("down.0.weight".into(), a.clone()), ("labels".into(), b.clone())])
        .unwrap();
    let back = scorch_engine::io::load_tensors(&path).unwrap();
    assert_eq!(back[0].0, "down.0.weight");
    assert_eq!(back[0].1.shape(), &[4, 3]);
    assert_eq!(back[0].1.to_vec_f32().unwrap(), a.to_vec_f32().unwrap());
    assert_eq!(back[1].1.to_vec::<i64>().unwrap(), vec![1, -2, 3]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn second_derivatives_of_fused_backwards_match_finite_differences() {
    // First-order backwards of these use fused kernels; with create_graph they switch to
    // composites, which this checks by differentiating the gradient once more.
    let mut r = SampleRng::new(5);
    type Op = Box<dyn Fn(&Tensor) -> scorch_engine::Result<Tensor>>;
    let cases: Vec<(&str, Op)> = vec![
        ("silu", Box::new(|x: &Tensor| x.silu())),
        ("gelu", Box::new(|x: &Tensor| x.gelu())),
        ("gelu_tanh", Box::new(|x: &Tensor| x.gelu_tanh())),
        ("softplus", Box::new(|x: &Tensor| x.softplus())),
        ("log_softmax", Box::new(|x: &Tensor| x.log_softmax(-1))),
        ("layer_norm", Box::new(|x: &Tensor| x.layer_norm(None, None, 1e-5))),
        (
            "attention",
            Box::new(|x: &Tensor| {
                let q = x.reshape(&[1, 1, 3, 4])?;
                Tensor::scaled_dot_product_attention(&q, &q.sin()?, &q.cos()?, None, true, None)
            }),
        ),
    ];
    for (name, f) in cases {
        let x = r.tensor_signed(&[3, 4], 0.0, 1.5, true, false).unwrap();
        let first = |t: &[Tensor]| -> scorch_engine::Result<Tensor> {
            // gradcheck's own leaf when it checks the analytic path, a fresh leaf for its
            // finite-difference evaluations.
            let x = if t[0].requires_grad() { t[0].clone() } else { t[0].detach().requires_grad_(true)? };
            let y = f(&x)?.sqr()?.sum_all()?;
            let g = grad(&[y], &[x], None, true, true)?;
            g[0].clone().ok_or_else(|| scorch_engine::Error::Msg("no gradient".into()))
        };
        let rep = gradcheck(first, &[x], &GradcheckOptions { atol: 1e-6, rtol: 1e-5, ..Default::default() }).unwrap();
        assert!(rep.passed(), "{name}: {rep}");
    }
}
