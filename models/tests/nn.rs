//! Layers: parameter names and initialisers, forward results against PyTorch or the
//! engine's composites, input checks.

use scorch_engine::{no_grad, DType, Tensor};
use scorch_models::nn::{
    Conv2d, Conv2dConfig, Dropout, Embedding, GroupNorm, LayerNorm, Linear, Module, MultiHeadAttention, RmsNorm,
};
use scorch_models::params::{Init, ParamStore};
use scorch_models::Result;

fn stats(t: &Tensor) -> Result<(f64, f64, f64)> {
    let v = t.to_vec_f64()?;
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    let max = v.iter().fold(0f64, |m, x| m.max(x.abs()));
    Ok((mean, std, max))
}

#[test]
fn linear_and_conv_use_pytorch_default_init() -> Result<()> {
    let store = ParamStore::new(DType::F32, 0);
    let root = store.root();
    let fc = Linear::new(&root.pp("fc"), 400, 300)?;
    let conv = Conv2d::new(&root.pp("conv"), 16, 64, 3, Conv2dConfig { groups: 2, ..Default::default() })?;
    // U(±1/√fan_in): |x| ≤ bound and std = bound/√3.
    for (t, fan_in) in [(fc.weight(), 400.0), (conv.weight(), 8.0 * 9.0)] {
        let bound = 1.0 / f64::sqrt(fan_in);
        let (mean, std, max) = stats(t)?;
        assert!(max <= bound && max > 0.95 * bound, "max {max} vs bound {bound}");
        assert!(mean.abs() < 0.02 * bound && (std - bound / 3f64.sqrt()).abs() < 0.02 * bound, "mean {mean} std {std}");
    }
    for (t, fan_in) in [(fc.bias().expect("bias"), 400.0), (conv.bias().expect("bias"), 72.0)] {
        assert!(stats(t)?.2 <= 1.0 / f64::sqrt(fan_in));
    }
    assert_eq!(conv.weight().shape(), [64, 8, 3, 3]);
    assert_eq!(store.names(), ["fc.weight", "fc.bias", "conv.weight", "conv.bias"]);
    // Same seed, same weights; the store's runtime stream does not disturb initialisation.
    let again = ParamStore::new(DType::F32, 0);
    Linear::new(&again.root().pp("fc"), 400, 300)?;
    assert_eq!(again.get("fc.weight").expect("created").to_bytes()?, fc.weight().to_bytes()?);
    Ok(())
}

#[test]
fn embedding_and_norm_init() -> Result<()> {
    let store = ParamStore::new(DType::F64, 1);
    let root = store.root();
    let emb = Embedding::new(&root.pp("emb"), 1000, 64)?;
    let (mean, std, _) = stats(emb.weight())?;
    assert!(mean.abs() < 0.02 && (std - 1.0).abs() < 0.02, "N(0,1): mean {mean} std {std}");
    GroupNorm::new(&root.pp("gn"), 4, 8, 1e-5)?;
    LayerNorm::new(&root.pp("ln"), 8, 1e-5)?;
    RmsNorm::new(&root.pp("rms"), 8, 1e-6)?;
    for (name, want) in
        [("gn.weight", 1.0), ("gn.bias", 0.0), ("ln.weight", 1.0), ("ln.bias", 0.0), ("rms.weight", 1.0)]
    {
        let t = store.get(name).expect("created");
        assert!(t.to_vec_f64()?.iter().all(|&x| x == want), "{name}");
    }
    Ok(())
}

#[test]
fn forward_shapes_and_gradients() -> Result<()> {
    let store = ParamStore::new(DType::F32, 2);
    let root = store.root();
    let gen = scorch_engine::Generator::new(0);
    let conv = Conv2d::new(&root.pp("conv"), 3, 8, 3, Conv2dConfig { stride: 2, padding: 1, ..Default::default() })?;
    let gn = GroupNorm::new(&root.pp("gn"), 2, 8, 1e-5)?;
    let fc = Linear::new(&root.pp("fc"), 8, 5)?;
    let ln = LayerNorm::new(&root.pp("ln"), 5, 1e-5)?;
    let rms = RmsNorm::new(&root.pp("rms"), 5, 1e-6)?;
    let x = Tensor::randn(&[2, 3, 9, 9], DType::F32, &gen)?;
    let h = gn.forward(&conv.forward(&x)?)?;
    assert_eq!(h.shape(), [2, 8, 5, 5]);
    let y = rms.forward(&ln.forward(&fc.forward(&h.mean(&[2, 3], false)?)?)?)?;
    assert_eq!(y.shape(), [2, 5]);
    y.sqr()?.sum(&[], false)?.backward()?;
    for (name, p) in store.named_parameters() {
        let g = p.grad().unwrap_or_else(|| panic!("{name} got no gradient"));
        assert_eq!(g.shape(), p.shape(), "{name}");
    }
    let emb = Embedding::new(&root.pp("emb"), 10, 4)?;
    let ids = Tensor::from_vec(vec![1i64, 9, 0, 1, 2, 3], &[2, 3])?;
    let e = emb.forward(&ids)?;
    assert_eq!(e.shape(), [2, 3, 4]);
    assert_eq!(e.narrow(0, 1, 1)?.narrow(1, 1, 1)?.to_vec_f32()?, emb.weight().narrow(0, 2, 1)?.to_vec_f32()?);
    Ok(())
}

#[test]
fn bad_inputs_give_errors_naming_the_layer_and_shapes() -> Result<()> {
    let store = ParamStore::new(DType::F32, 0);
    let root = store.root();
    let fc = Linear::new(&root.pp("encoder").pp("fc1"), 784, 256)?;
    let err = fc.forward(&Tensor::zeros(&[2, 100], DType::F32)?).unwrap_err().to_string();
    assert!(err.contains("Linear(784→256)") && err.contains("encoder.fc1") && err.contains("[2, 100]"), "{err}");
    let conv = Conv2d::new(&root.pp("conv"), 3, 8, 3, Conv2dConfig::default())?;
    let err = conv.forward(&Tensor::zeros(&[1, 4, 8, 8], DType::F32)?).unwrap_err().to_string();
    assert!(err.contains("conv") && err.contains("[1, 4, 8, 8]"), "{err}");
    let err = conv.forward(&Tensor::zeros(&[1, 3, 2, 2], DType::F32)?).unwrap_err().to_string();
    assert!(err.contains("[1, 3, 2, 2]"), "kernel larger than the input: {err}");
    assert!(Conv2d::new(&root.pp("c"), 3, 8, 3, Conv2dConfig { groups: 2, ..Default::default() }).is_err());
    assert!(GroupNorm::new(&root.pp("g"), 3, 8, 1e-5).is_err());
    assert!(MultiHeadAttention::new(&root.pp("a"), 10, 3).is_err());
    let emb = Embedding::new(&root.pp("emb"), 10, 4)?;
    assert!(emb.forward(&Tensor::from_vec(vec![10i64], &[1])?).is_err());
    assert!(emb.forward(&Tensor::zeros(&[1], DType::F32)?).is_err());
    let ln = LayerNorm::new(&root.pp("ln"), 8, 1e-5)?;
    assert!(ln.forward(&Tensor::zeros(&[2, 7], DType::F32)?).is_err());
    Ok(())
}

#[test]
fn dropout_masks_in_training_and_passes_through_in_eval() -> Result<()> {
    let store = ParamStore::new(DType::F32, 0);
    let drop = Dropout::new(&store.root(), 0.25)?;
    let x = Tensor::ones(&[100_000], DType::F32)?;
    let y = drop.forward(&x)?.to_vec_f32()?;
    let zeros = y.iter().filter(|&&v| v == 0.0).count() as f64 / y.len() as f64;
    assert!((zeros - 0.25).abs() < 0.01, "dropped fraction {zeros}");
    assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
    // A fresh mask every call.
    assert_ne!(drop.forward(&x)?.to_vec_f32()?, y);
    store.set_training(false);
    assert_eq!(drop.forward(&x)?.to_vec_f32()?, x.to_vec_f32()?);
    assert!(Dropout::new(&store.root(), 1.5).is_err());
    Ok(())
}

/// Fills the attention parameters as `mharef.py` below does.
fn pytorch_mha_weights(store: &ParamStore, d: usize) -> Result<()> {
    let set = |name: &str, shape: &[usize], f: &dyn Fn(usize, usize) -> f64| -> Result<()> {
        let cols = if shape.len() == 2 { shape[1] } else { 1 };
        let v: Vec<f64> = (0..shape.iter().product()).map(|k| f(k / cols, k % cols)).collect();
        let _ng = no_grad();
        store.get(name).expect("parameter exists").assign(&Tensor::from_vec(v, shape)?)?;
        Ok(())
    };
    set("attn.in_proj_weight", &[3 * d, d], &|i, j| 0.5 * (0.3 * i as f64 + 0.7 * j as f64).sin())?;
    set("attn.in_proj_bias", &[3 * d], &|i, _| 0.01 * i as f64)?;
    set("attn.out_proj.weight", &[d, d], &|i, j| 0.4 * (0.2 * i as f64 - 0.5 * j as f64).cos())?;
    set("attn.out_proj.bias", &[d], &|i, _| -0.02 * i as f64)
}

// From PyTorch (float64):
//
// ```python
// torch.set_default_dtype(torch.float64)
// D, H = 4, 2
// m = torch.nn.MultiheadAttention(D, H, batch_first=True)
// with torch.no_grad():
//     m.in_proj_weight.copy_(torch.tensor([[0.5 * math.sin(0.3 * i + 0.7 * j) for j in range(D)] for i in range(3 * D)]))
//     m.in_proj_bias.copy_(torch.tensor([0.01 * i for i in range(3 * D)]))
//     m.out_proj.weight.copy_(torch.tensor([[0.4 * math.cos(0.2 * i - 0.5 * j) for j in range(D)] for i in range(D)]))
//     m.out_proj.bias.copy_(torch.tensor([-0.02 * i for i in range(D)]))
// x = torch.tensor([[[math.sin(1.1 * s + 0.4 * d + b) for d in range(D)] for s in range(3)] for b in range(2)])
// SELF = m(x, x, x, need_weights=False)[0].flatten()
// CROSS = m(x[:, :2] * 0.5, x, x, need_weights=False)[0].flatten()
// ```
const MHA_SELF: [f64; 24] = [
    -0.2535115303958412,
    -0.35605997681012236,
    -0.4452107724475661,
    -0.5182070933040621,
    -0.22197310269288278,
    -0.31117733278141246,
    -0.38877324147515585,
    -0.4524646616488935,
    -0.2721258853756289,
    -0.3753801947469133,
    -0.46446661722069377,
    -0.5366308951477539,
    -0.039216836175261706,
    -0.06919450083542546,
    -0.09721093598950534,
    -0.12294655166523219,
    0.09613167491051614,
    0.07177304140635932,
    0.043755706347910185,
    0.012399295583785247,
    0.38904523181115896,
    0.3711089783964442,
    0.33758044422881545,
    0.2889989692737776,
];
const MHA_CROSS: [f64; 16] = [
    -0.27664782630981277,
    -0.38519539082138315,
    -0.4791837675416028,
    -0.5556632733744609,
    -0.25625519362330695,
    -0.35787498449550054,
    -0.4460247659620286,
    -0.5179876212948924,
    0.03878294906136975,
    0.010463122249292644,
    -0.019071173114922492,
    -0.04943983476231327,
    0.12710278823368762,
    0.1021896216749646,
    0.07240514049170954,
    0.03813942107198283,
];

#[test]
fn multi_head_attention_matches_pytorch() -> Result<()> {
    let store = ParamStore::new(DType::F64, 0);
    let attn = MultiHeadAttention::new(&store.root().pp("attn"), 4, 2)?;
    assert_eq!(
        store.names(),
        ["attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight", "attn.out_proj.bias"]
    );
    pytorch_mha_weights(&store, 4)?;
    let x: Vec<f64> =
        (0..24).map(|k| (1.1 * ((k / 4) % 3) as f64 + 0.4 * (k % 4) as f64 + (k / 12) as f64).sin()).collect();
    let x = Tensor::from_vec(x, &[2, 3, 4])?;
    let close = |got: Vec<f64>, want: &[f64], what: &str| {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() < 1e-12, "{what}[{i}]: {g} vs PyTorch {w}");
        }
    };
    close(attn.forward(&x)?.to_vec_f64()?, &MHA_SELF, "self-attention");
    let q = x.narrow(1, 0, 2)?.mul_scalar(0.5)?;
    close(attn.attend(&q, &x, None, false)?.to_vec_f64()?, &MHA_CROSS, "cross-attention");
    Ok(())
}

#[test]
fn causal_attention_equals_an_explicit_mask() -> Result<()> {
    let store = ParamStore::new(DType::F64, 4);
    let attn = MultiHeadAttention::new(&store.root(), 8, 2)?;
    let x = Tensor::randn(&[2, 5, 8], DType::F64, &scorch_engine::Generator::new(1))?;
    let mut m = vec![0f64; 25];
    for i in 0..5 {
        for j in i + 1..5 {
            m[i * 5 + j] = f64::NEG_INFINITY;
        }
    }
    let mask = Tensor::from_vec(m, &[5, 5])?;
    let a = attn.self_attend(&x, None, true)?.to_vec_f64()?;
    let b = attn.self_attend(&x, Some(&mask), false)?.to_vec_f64()?;
    for (u, v) in a.iter().zip(&b) {
        assert!((u - v).abs() < 1e-12);
    }
    // The first position only sees itself, so it does not depend on later ones.
    let x2 = Tensor::cat(&[x.narrow(1, 0, 1)?, x.narrow(1, 1, 4)?.mul_scalar(3.0)?], 1)?;
    let first =
        |t: &Tensor| -> Result<Vec<f64>> { Ok(attn.self_attend(t, None, true)?.narrow(1, 0, 1)?.to_vec_f64()?) };
    let (f1, f2) = (first(&x)?, first(&x2)?);
    for (u, v) in f1.iter().zip(&f2) {
        assert!((u - v).abs() < 1e-12);
    }
    Ok(())
}

#[test]
fn init_schemes_follow_their_formulas() -> Result<()> {
    let gen = scorch_engine::Generator::new(9);
    let t = Init::XavierUniform { gain: 1.0 }.tensor(&[300, 100], DType::F64, &gen)?;
    let bound = (6.0f64 / 400.0).sqrt();
    let (_, std, max) = stats(&t)?;
    assert!(max <= bound && (std - bound / 3f64.sqrt()).abs() < 0.02 * bound);
    let t = Init::KaimingNormal { a: 0.0 }.tensor(&[200, 50, 2, 2], DType::F64, &gen)?;
    let (_, std, _) = stats(&t)?;
    assert!((std - (2.0f64 / 200.0).sqrt()).abs() < 0.02 * std, "kaiming normal std {std}");
    assert!(Init::Uniform { lo: 1.0, hi: 0.0 }.tensor(&[2], DType::F32, &gen).is_err());
    Ok(())
}
