//! `autocast`: matmul / conv2d / attention of f32 tensors run in bf16 and return f32, with
//! gradients reaching the f32 leaves in f32.

use scorch_engine::{autocast, autocast_dtype, ConvParams, DType, Generator, Tensor};

fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, DType::F32, &Generator::new(seed)).unwrap()
}

#[test]
fn autocast_matmul_is_the_bf16_product_returned_in_f32() {
    let (a, b) = (randn(&[5, 7], 1), randn(&[7, 3], 2));
    let want = a.cast(DType::BF16).unwrap().matmul(&b.cast(DType::BF16).unwrap()).unwrap().cast(DType::F32).unwrap();
    let got = {
        let _g = autocast(Some(DType::BF16));
        assert_eq!(autocast_dtype(), Some(DType::BF16));
        a.matmul(&b).unwrap()
    };
    assert_eq!(autocast_dtype(), None, "the guard restores the previous state");
    assert_eq!(got.dtype(), DType::F32);
    assert_eq!(got.to_vec_f64().unwrap(), want.to_vec_f64().unwrap());
    let plain = a.matmul(&b).unwrap();
    assert_ne!(plain.to_vec_f64().unwrap(), got.to_vec_f64().unwrap(), "outside autocast the product is f32");
}

#[test]
fn autocast_gradients_reach_f32_leaves() {
    let x = randn(&[2, 3, 6, 6], 3).requires_grad_(true).unwrap();
    let w = randn(&[4, 3, 3, 3], 4).requires_grad_(true).unwrap();
    let p = ConvParams { stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 1 };
    let loss = {
        let _g = autocast(Some(DType::BF16));
        x.conv2d(&w, None, p).unwrap().sqr().unwrap().sum_all().unwrap()
    };
    assert_eq!(loss.dtype(), DType::F32);
    loss.backward().unwrap();
    let (gx, gw) = (x.grad().unwrap(), w.grad().unwrap());
    assert_eq!((gx.dtype(), gw.dtype()), (DType::F32, DType::F32));
    // Against the f32 gradient: bf16 inputs cost ~3 significant digits.
    let xf = x.detach().requires_grad_(true).unwrap();
    let wf = w.detach().requires_grad_(true).unwrap();
    xf.conv2d(&wf, None, p).unwrap().sqr().unwrap().sum_all().unwrap().backward().unwrap();
    let (a, b) = (gw.to_vec_f64().unwrap(), wf.grad().unwrap().to_vec_f64().unwrap());
    let scale = b.iter().map(|v| v.abs()).fold(0.0, f64::max);
    let worst = a.iter().zip(&b).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max);
    assert!(worst > 0.0 && worst < 0.03 * scale, "weight gradient off by {worst} (scale {scale})");
}

#[test]
fn autocast_hands_back_the_callers_dtype() {
    let _g = autocast(Some(DType::BF16));
    // f64 operands compute in bf16 too and come back as f64.
    let a = randn(&[3, 3], 5).cast(DType::F64).unwrap();
    assert_eq!(a.matmul(&a).unwrap().dtype(), DType::F64);
    let h = randn(&[3, 3], 6).cast(DType::BF16).unwrap();
    assert_eq!(h.matmul(&h).unwrap().dtype(), DType::BF16);
    // Asking for a non-half dtype leaves autocast as it was.
    let _h = autocast(Some(DType::F64));
    assert_eq!(autocast_dtype(), Some(DType::BF16));
}
