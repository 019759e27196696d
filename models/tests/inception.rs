//! The FID Inception-v3 network against PyTorch: `tools/convert_inception.py --fixture`
//! builds the same network in PyTorch, fills its 21.8M weights by a formula this test
//! evaluates identically (splitmix64 of the tensor name and index), runs it in f64 on a
//! small batch and stores the input and the 2048 features. Plus loading by name, input
//! checks, determinism and the 8-bit rounding of the FID protocol.

use scorch_engine::safetensors_io;
use scorch_engine::{DType, Tensor};
use scorch_models::metrics::inception::{load_stats, quantize_8bit, save_stats, Fid, InceptionV3, FEATURES};
use scorch_models::params::ParamStore;
use scorch_models::Result;
use std::path::{Path, PathBuf};

fn fixture_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inception_fid_formula.safetensors")
}

fn fnv1a64(s: &str) -> u64 {
    s.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3))
}

/// `fixture_values` of tools/convert_inception.py: values in [−1, 1), exact in f32.
fn fixture_values(name: &str, n: usize) -> Vec<f64> {
    let seed = fnv1a64(name);
    (0..n as u64)
        .map(|i| {
            let mut z = seed.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 40) as f64 / (1u64 << 23) as f64 - 1.0
        })
        .collect()
}

/// `fixture_tensor` of the script.
fn fixture_tensor(name: &str, shape: &[usize]) -> Vec<f64> {
    let n: usize = shape.iter().product();
    let u = fixture_values(name, n);
    let map: Box<dyn Fn(f64) -> f64> = if name.ends_with("conv.weight") {
        let fan_in: usize = shape[1..].iter().product();
        let s = (2.0 / fan_in as f64).sqrt();
        Box::new(move |u| u * 3f64.sqrt() * s)
    } else if name.ends_with("bn.weight") {
        Box::new(|u| 1.0 + 0.1 * u)
    } else if name.ends_with("bn.bias") || name.ends_with("bn.running_mean") {
        Box::new(|u| 0.1 * u)
    } else if name.ends_with("bn.running_var") {
        Box::new(|u| 1.0 + 0.25 * (u + 1.0))
    } else {
        panic!("no fixture rule for {name}")
    };
    u.into_iter().map(|v| map(v) as f32 as f64).collect()
}

fn formula_network() -> Result<InceptionV3> {
    let store = ParamStore::new(DType::F32, 0);
    let net = InceptionV3::new(&store.root())?;
    let _ng = scorch_engine::no_grad();
    for (name, t) in store.named_parameters() {
        t.assign(&Tensor::from_f64s(&fixture_tensor(&name, t.shape()), t.shape(), DType::F32)?)?;
    }
    store.set_training(false);
    Ok(net)
}

fn fixture() -> (Vec<safetensors_io::RawTensor>, std::collections::BTreeMap<String, String>) {
    let (raw, meta) = safetensors_io::load_with_metadata(&fixture_path()).expect("fixture");
    (raw, meta.expect("fixture metadata").into_iter().collect())
}

fn get(raw: &[safetensors_io::RawTensor], name: &str) -> Result<Tensor> {
    let r = raw.iter().find(|r| r.name == name).expect("fixture tensor");
    Ok(Tensor::from_bytes(&r.data, r.dtype, &r.shape)?)
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().map(|x| x.abs()).fold(0.0, f64::max)
}

#[test]
fn fid_inception_matches_pytorch_on_formula_weights() -> Result<()> {
    let (raw, meta) = fixture();
    let net = formula_network()?;
    let params: usize = meta["params"].parse().expect("params metadata");
    assert_eq!(net.store().num_elements(), params, "same parameter (and statistics) count as the PyTorch network");
    assert_eq!(net.store().len(), 94 * 5, "94 conv + batch-norm layers, 5 tensors each");
    let x = get(&raw, "input")?;
    let want = get(&raw, "features")?.to_vec_f64()?;
    let got = net.features(&x)?;
    assert_eq!(got.shape(), [2, FEATURES]);
    let got = got.to_vec_f64()?;
    let scale = max_abs(&want);
    assert!(scale > 1e-2, "the fixture's features are not degenerate (max {scale})");
    let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    eprintln!("max abs err {worst:.3e}, max feature {scale:.3}");
    assert!(worst <= 1e-5 * scale, "max |scorch f32 − PyTorch f64| = {worst:.3e} (max |feature| {scale:.3})");
    Ok(())
}

#[test]
fn converted_weights_load_by_name_and_features_are_deterministic() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("scorch-inception-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("inception.safetensors");
    formula_network()?.store().save(&path)?;
    let net = InceptionV3::load(&path)?;
    // One grayscale 28×28 image batch, as Fashion-MNIST samples are.
    let x = Tensor::from_f64s(&fixture_values("gray", 3 * 28 * 28), &[3, 1, 28, 28], DType::F32)?;
    let a = net.features(&x)?.to_vec_f64()?;
    assert_eq!(a, net.features(&x)?.to_vec_f64()?, "the same input gives the same features");
    // Gray equals the same image on three channels; one image alone equals it in a batch.
    let rgb = net.features(&x.broadcast_to(&[3, 3, 28, 28])?.contiguous()?)?.to_vec_f64()?;
    assert_eq!(a, rgb);
    let one = net.features(&x.narrow(0, 1, 1)?)?.to_vec_f64()?;
    let worst = one.iter().zip(&a[FEATURES..2 * FEATURES]).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max);
    assert!(worst <= 1e-5 * max_abs(&one), "batching changes features by {worst:.3e}");
    let chunks = net.features_f64(&x, 2)?;
    assert_eq!(chunks.len(), 3 * FEATURES);

    // A file with a wrong shape or a missing tensor is refused, naming the tensor.
    let mut raw = safetensors_io::load(&path).expect("saved");
    raw.retain(|r| r.name != "Mixed_7c.branch_pool.bn.running_var");
    let broken = dir.join("broken.safetensors");
    safetensors_io::save(&broken, &raw, None).expect("save");
    let err = InceptionV3::load(&broken).err().expect("missing tensor must be an error").to_string();
    assert!(err.contains("Mixed_7c.branch_pool.bn.running_var"), "{err}");
    let err = InceptionV3::load(&dir.join("absent.safetensors")).err().expect("absent file").to_string();
    assert!(err.contains("convert_inception.py"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[test]
fn bad_images_are_refused() -> Result<()> {
    let store = ParamStore::new(DType::F32, 1);
    let net = InceptionV3::new(&store.root())?;
    for shape in [vec![2, 2, 32, 32], vec![3, 32, 32], vec![1, 3, 0, 8]] {
        let x = Tensor::zeros(&shape, DType::F32)?;
        let err = net.features(&x).expect_err("bad shape").to_string();
        assert!(err.contains("Inception"), "{err}");
    }
    Ok(())
}

#[test]
fn quantization_rounds_to_png_levels() -> Result<()> {
    let x = Tensor::from_f64s(&[-1.5, -1.0, -0.004, 0.0, 0.5, 1.0, 2.0], &[7], DType::F32)?;
    let q = quantize_8bit(&x)?.to_vec_f64()?;
    // (x·127.5 + 128) truncated: 0, 0, 127, 128, 191, 255, 255 → /127.5 − 1.
    let levels = [0.0, 0.0, 127.0, 128.0, 191.0, 255.0, 255.0];
    for (got, l) in q.iter().zip(levels) {
        assert!((got - (l / 127.5 - 1.0)).abs() < 1e-6, "{q:?}");
    }
    Ok(())
}

#[test]
fn reference_statistics_round_trip_and_fid_of_the_reference_is_zero() -> Result<()> {
    let net = formula_network()?;
    let x = Tensor::from_f64s(&fixture_values("ref", 4 * 3 * 16 * 16), &[4, 3, 16, 16], DType::F32)?;
    let stats = Fid::stats(&net, &x, 4)?;
    let dir = std::env::temp_dir().join(format!("scorch-fid-stats-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("stats.safetensors");
    save_stats(&stats, "test-features", &path)?;
    let back = load_stats(&path, "test-features")?;
    assert_eq!((back.mean.clone(), back.cov.clone(), back.n), (stats.mean.clone(), stats.cov.clone(), 4));
    let err = load_stats(&path, "other-features").expect_err("wrong kind").to_string();
    assert!(err.contains("other-features"), "{err}");
    let fid = Fid::from_stats(net, back, 4)?;
    let d = fid.distance(&x)?;
    assert!(d.abs() < 1e-6, "FID of the reference against itself: {d}");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
