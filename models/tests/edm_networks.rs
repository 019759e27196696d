//! EDM's U-Nets: parameter counts and state-dict names of the official teachers (spec
//! §2.6–2.7), forward and backward of tiny configurations of every variant, label
//! dropout, checkpoint round trips and configuration errors.

use scorch_engine::safetensors_io::RawTensor;
use scorch_engine::{DType, Generator, Tensor};
use scorch_models::edm::networks::{DecoderType, EncoderType};
use scorch_models::edm::{presets, DhariwalUNetConfig, EdmConfig, EdmLoss, EdmPrecond, SongUNetConfig, UNetConfig};
use scorch_models::params::ParamStore;
use scorch_models::Result;
use std::path::Path;

/// `(scalar parameters, state-dict tensors, buffers)` of a zero-initialised build.
fn counts(cfg: &EdmConfig) -> Result<(usize, usize, usize)> {
    let store = ParamStore::new(DType::F32, 0);
    let net = EdmPrecond::zeroed(&store.root(), cfg)?;
    let (tensors, params) = net.num_parameters();
    let buffers = net.buffers().len();
    assert_eq!(tensors + buffers, net.state_dict_keys().len());
    assert_eq!(store.num_elements(), params, "the store holds exactly the network's parameters");
    Ok((params, tensors + buffers, buffers))
}

#[test]
fn parameter_counts_match_the_official_teachers() -> Result<()> {
    // Spec §2.6: params, state-dict tensors (incl. buffers), buffers.
    assert_eq!(counts(&presets::cifar10_ddpmpp(false))?, (55_733_891, 425, 8));
    assert_eq!(counts(&presets::cifar10_ddpmpp(true))?, (55_735_299, 427, 8));
    assert_eq!(counts(&presets::cifar10_ncsnpp(false))?, (56_397_827, 432, 11));
    assert_eq!(counts(&presets::ffhq64_ddpmpp())?, (61_805_571, 553, 12));
    // ~1.2 GB of zero pages, never touched.
    assert_eq!(counts(&presets::imagenet64_adm())?, (295_899_267, 553, 12));
    assert_eq!(counts(&presets::fashion_mnist(false))?.0, 1_752_993);
    assert_eq!(counts(&presets::fashion_mnist(true))?.0, 1_753_345);
    Ok(())
}

/// Checks `name` exists in `keys` and, for parameters, has `shape`.
fn has(store: &ParamStore, keys: &[String], name: &str, shape: &[usize]) {
    assert!(keys.iter().any(|k| k == name), "missing key {name}");
    if let Some(t) = store.get(name) {
        assert_eq!(t.shape(), shape, "{name}");
    }
}

#[test]
fn state_dict_names_and_shapes_follow_the_official_checkpoints() -> Result<()> {
    // CIFAR-10 DDPM++ (spec §2.7 block table).
    let store = ParamStore::new(DType::F32, 0);
    let net = EdmPrecond::zeroed(&store.root(), &presets::cifar10_ddpmpp(false))?;
    let keys = net.state_dict_keys();
    assert_eq!(
        keys[..5],
        [
            "model.map_augment.weight",
            "model.map_layer0.weight",
            "model.map_layer0.bias",
            "model.map_layer1.weight",
            "model.map_layer1.bias"
        ]
    );
    for (name, shape) in [
        ("model.map_augment.weight", &[128, 9][..]),
        ("model.map_layer0.weight", &[512, 128]),
        ("model.map_layer1.weight", &[512, 512]),
        ("model.enc.32x32_conv.weight", &[128, 3, 3, 3]),
        ("model.enc.32x32_block0.skip.weight", &[256, 128, 1, 1]),
        ("model.enc.32x32_block3.conv1.weight", &[256, 256, 3, 3]),
        ("model.enc.16x16_down.skip.weight", &[256, 256, 1, 1]),
        ("model.enc.16x16_down.conv0.resample_filter", &[1, 1, 2, 2]),
        ("model.enc.16x16_block2.qkv.weight", &[768, 256, 1, 1]),
        ("model.enc.16x16_block2.proj.weight", &[256, 256, 1, 1]),
        ("model.enc.8x8_block3.affine.weight", &[256, 512]),
        ("model.dec.8x8_in0.qkv.bias", &[768]),
        ("model.dec.8x8_block4.conv0.weight", &[256, 512, 3, 3]),
        ("model.dec.16x16_up.skip.resample_filter", &[1, 1, 2, 2]),
        ("model.dec.16x16_block4.norm2.weight", &[256]),
        ("model.dec.32x32_block4.skip.weight", &[256, 384, 1, 1]),
        ("model.dec.32x32_aux_norm.weight", &[256]),
        ("model.dec.32x32_aux_conv.weight", &[3, 256, 3, 3]),
    ] {
        has(&store, &keys, name, shape);
    }
    for absent in [
        "model.enc.32x32_block1.skip.weight",
        "model.dec.16x16_block3.qkv.weight",
        "model.dec.8x8_in1.qkv.weight",
        "model.map_label.weight",
    ] {
        assert!(!keys.iter().any(|k| k == absent), "unexpected {absent}");
    }
    // Sub-module order inside a block, buffers in place (PyTorch's state_dict order).
    let block: Vec<&str> = keys.iter().filter_map(|k| k.strip_prefix("model.dec.16x16_up.")).collect();
    assert_eq!(
        block,
        [
            "norm0.weight",
            "norm0.bias",
            "conv0.weight",
            "conv0.bias",
            "conv0.resample_filter",
            "affine.weight",
            "affine.bias",
            "norm1.weight",
            "norm1.bias",
            "conv1.weight",
            "conv1.bias",
            "skip.weight",
            "skip.bias",
            "skip.resample_filter",
        ]
    );
    let attn: Vec<&str> = keys.iter().filter_map(|k| k.strip_prefix("model.dec.16x16_block4.")).collect();
    assert_eq!(
        attn[attn.len() - 6..],
        ["norm2.weight", "norm2.bias", "qkv.weight", "qkv.bias", "proj.weight", "proj.bias"]
    );
    assert_eq!(keys.last().map(String::as_str), Some("model.dec.32x32_aux_conv.bias"));

    // CIFAR-10 NCSN++: Fourier buffer, aux residual path, 4×4 filters, wider noise embedding.
    let store = ParamStore::new(DType::F32, 0);
    let net = EdmPrecond::zeroed(&store.root(), &presets::cifar10_ncsnpp(true))?;
    let keys = net.state_dict_keys();
    assert_eq!(keys[0], "model.map_noise.freqs");
    for (name, shape) in [
        ("model.map_label.weight", &[256, 10][..]),
        ("model.map_augment.weight", &[256, 9]),
        ("model.map_layer0.weight", &[512, 256]),
        ("model.enc.16x16_aux_residual.weight", &[256, 3, 3, 3]),
        ("model.enc.8x8_aux_residual.weight", &[256, 256, 3, 3]),
    ] {
        has(&store, &keys, name, shape);
    }
    let bufs = net.buffers();
    assert!(bufs.iter().any(|(n, t)| n == "model.map_noise.freqs" && t.shape() == [128]));
    assert!(bufs.iter().all(|(n, t)| n.ends_with("freqs") || t.shape() == [1, 1, 4, 4]));
    assert_eq!(
        keys.iter().position(|k| k == "model.enc.16x16_aux_residual.weight"),
        keys.iter().position(|k| k == "model.enc.16x16_down.skip.resample_filter").map(|i| i + 1)
    );

    // ImageNet-64 ADM.
    let store = ParamStore::new(DType::F32, 0);
    let net = EdmPrecond::zeroed(&store.root(), &presets::imagenet64_adm())?;
    let keys = net.state_dict_keys();
    assert_eq!(
        keys[..5],
        [
            "model.map_layer0.weight",
            "model.map_layer0.bias",
            "model.map_layer1.weight",
            "model.map_layer1.bias",
            "model.map_label.weight"
        ]
    );
    for (name, shape) in [
        ("model.map_label.weight", &[768, 1000][..]),
        ("model.enc.64x64_conv.weight", &[192, 3, 3, 3]),
        ("model.enc.32x32_block0.skip.weight", &[384, 192, 1, 1]),
        ("model.enc.8x8_block0.affine.weight", &[1536, 768]),
        ("model.enc.8x8_block2.qkv.weight", &[2304, 768, 1, 1]),
        ("model.dec.8x8_block3.conv0.weight", &[768, 1344, 3, 3]),
        ("model.dec.16x16_block0.skip.weight", &[576, 1344, 1, 1]),
        ("model.dec.32x32_block3.qkv.weight", &[1152, 384, 1, 1]),
        ("model.dec.64x64_block0.conv0.weight", &[192, 576, 3, 3]),
        ("model.out_norm.weight", &[192]),
        ("model.out_conv.weight", &[3, 192, 3, 3]),
    ] {
        has(&store, &keys, name, shape);
    }
    // Up/down blocks of ADM have a resample-only skip: a filter, no weight.
    assert!(keys.iter().any(|k| k == "model.enc.32x32_down.skip.resample_filter"));
    for absent in [
        "model.enc.32x32_down.skip.weight",
        "model.map_label.bias",
        "model.map_augment.weight",
        "model.dec.64x64_block0.qkv.weight",
    ] {
        assert!(!keys.iter().any(|k| k == absent), "unexpected {absent}");
    }
    Ok(())
}

/// A tiny SongUNet: 16×16, 32 channels, levels 16²/8², attention at 8².
fn tiny_song(label_dim: usize) -> SongUNetConfig {
    SongUNetConfig {
        label_dim,
        augment_dim: 9,
        model_channels: 32,
        channel_mult: vec![1, 2],
        num_blocks: 1,
        attn_resolutions: vec![8],
        ..SongUNetConfig::ddpmpp(16, 3)
    }
}

/// One EDM loss step on a batch of 2; asserts the output shape and returns the loss.
fn loss_step(net: &EdmPrecond, labels: bool, seed: u64) -> Result<f64> {
    let gen = Generator::new(seed);
    let c = net.img_channels();
    let r = net.img_resolution();
    let x = Tensor::randn(&[2, c, r, r], DType::F32, &gen)?.mul_scalar(0.5)?;
    let one_hot =
        labels.then(|| Tensor::from_vec(vec![3i64, 7], &[2])?.one_hot(net.label_dim(), DType::F32)).transpose()?;
    let aug = Tensor::randn(&[2, 9], DType::F32, &gen)?;
    let loss = EdmLoss::default().loss(&net.with_augment_labels(&aug), &x, one_hot.as_ref(), &gen)?;
    assert_eq!(loss.shape(), x.shape());
    let total = loss.sum_all()?.mul_scalar(0.5)?;
    total.backward()?;
    total.item().map_err(Into::into)
}

/// Every parameter got a finite gradient; returns how many are not all zero.
fn check_grads(store: &ParamStore) -> Result<usize> {
    let mut nonzero = 0;
    for (name, p) in store.named_parameters() {
        let g = p.grad().unwrap_or_else(|| panic!("{name} got no gradient"));
        let v = g.to_vec_f64()?;
        assert!(v.iter().all(|x| x.is_finite()), "{name}: non-finite gradient");
        nonzero += usize::from(v.iter().any(|&x| x != 0.0));
    }
    Ok(nonzero)
}

#[test]
fn tiny_ddpmpp_forward_backward_reaches_every_parameter() -> Result<()> {
    let store = ParamStore::new(DType::F32, 3);
    let net = EdmPrecond::new(&store.root(), &EdmConfig::new(UNetConfig::Song(tiny_song(10))))?;
    let loss = loss_step(&net, true, 1)?;
    assert!(loss.is_finite() && loss > 0.0, "loss {loss}");
    let n = store.len();
    // Every tensor moves; map_augment too, since augment labels were given.
    assert_eq!(check_grads(&store)?, n);
    Ok(())
}

/// The tiny SongUNet with NCSN++'s embedding and filter and the given encoder / decoder.
fn tiny_ncsnpp(encoder_type: EncoderType, decoder_type: DecoderType) -> SongUNetConfig {
    let ncsnpp = SongUNetConfig::ncsnpp(16, 3);
    SongUNetConfig {
        embedding_type: ncsnpp.embedding_type,
        channel_mult_noise: ncsnpp.channel_mult_noise,
        resample_filter: ncsnpp.resample_filter,
        encoder_type,
        decoder_type,
        ..tiny_song(0)
    }
}

#[test]
fn tiny_ncsnpp_and_skip_variants_run() -> Result<()> {
    for (enc, dec) in [(EncoderType::Residual, DecoderType::Standard), (EncoderType::Skip, DecoderType::Skip)] {
        let store = ParamStore::new(DType::F32, 4);
        let net = EdmPrecond::new(&store.root(), &EdmConfig::new(UNetConfig::Song(tiny_ncsnpp(enc, dec))))?;
        let loss = loss_step(&net, false, 2)?;
        assert!(loss.is_finite() && loss > 0.0, "{enc:?}/{dec:?}: loss {loss}");
        check_grads(&store)?;
    }
    Ok(())
}

#[test]
fn tiny_adm_forward_backward() -> Result<()> {
    let store = ParamStore::new(DType::F32, 5);
    let cfg = DhariwalUNetConfig {
        label_dim: 10,
        augment_dim: 9,
        model_channels: 32,
        channel_mult: vec![1, 2],
        num_blocks: 1,
        attn_resolutions: vec![8],
        ..DhariwalUNetConfig::new(16, 3, 3)
    };
    let net = EdmPrecond::new(&store.root(), &EdmConfig::new(UNetConfig::Dhariwal(cfg)))?;
    // 64 channels at 8×8: one head of 64.
    assert!(store.get("model.enc.8x8_block0.qkv.weight").is_some());
    let loss = loss_step(&net, true, 3)?;
    assert!(loss.is_finite() && loss > 0.0);
    check_grads(&store)?;
    // ADM zero-initialises out_conv, so only it gets a gradient on the first step.
    assert!(store.get("model.out_conv.weight").and_then(|p| p.grad()).is_some());
    Ok(())
}

#[test]
fn label_dropout_zeroes_labels_in_training_only() -> Result<()> {
    let store = ParamStore::new(DType::F32, 6);
    let cfg = SongUNetConfig { label_dropout: 1.0, dropout: 0.0, ..tiny_song(10) };
    let net = EdmPrecond::new(&store.root(), &EdmConfig::new(UNetConfig::Song(cfg)))?;
    let gen = Generator::new(0);
    let x = Tensor::randn(&[2, 3, 16, 16], DType::F32, &gen)?;
    let sigma = Tensor::from_f64s(&[0.7, 3.0], &[2], DType::F32)?;
    let labels = Tensor::from_vec(vec![1i64, 4], &[2])?.one_hot(10, DType::F32)?;
    let with = |l: Option<&Tensor>| -> Result<Vec<f64>> { Ok(net.forward(&x, &sigma, l, None)?.to_vec_f64()?) };
    store.set_training(true);
    assert_eq!(with(Some(&labels))?, with(None)?, "p = 1 drops every label in training");
    store.set_training(false);
    assert_ne!(with(Some(&labels))?, with(None)?, "labels count in evaluation");
    Ok(())
}

#[test]
fn state_dict_round_trip_restores_parameters_and_buffers() -> Result<()> {
    let cfg = EdmConfig::new(UNetConfig::Song(tiny_ncsnpp(EncoderType::Residual, DecoderType::Standard)));
    let src_store = ParamStore::new(DType::F32, 7);
    let src = EdmPrecond::new(&src_store.root(), &cfg)?;
    let mut raw = src_store.to_raw()?;
    for (name, t) in src.buffers() {
        raw.push(RawTensor::new(name, t.dtype(), t.shape().to_vec(), t.to_bytes()?));
    }
    let dst_store = ParamStore::new(DType::F32, 8);
    let dst = EdmPrecond::zeroed(&dst_store.root(), &cfg)?;
    dst.load_state_dict(&raw, Path::new("memory"))?;
    src_store.set_training(false);
    dst_store.set_training(false);
    let x = Tensor::randn(&[1, 3, 16, 16], DType::F32, &Generator::new(1))?;
    let s = Tensor::full(&[1], 1.5, DType::F32)?;
    assert_eq!(src.forward(&x, &s, None, None)?.to_vec_f64()?, dst.forward(&x, &s, None, None)?.to_vec_f64()?);
    // A missing buffer and a stray tensor are both named.
    let bad: Vec<RawTensor> = raw
        .iter()
        .filter(|r| r.name != "model.map_noise.freqs")
        .cloned()
        .chain([RawTensor::new("stray".to_string(), DType::F32, vec![1], vec![0; 4])])
        .collect();
    let err = dst.load_state_dict(&bad, Path::new("memory")).unwrap_err().to_string();
    assert!(err.contains("model.map_noise.freqs") && err.contains("stray"), "{err}");
    Ok(())
}

#[test]
fn bad_configurations_are_errors() {
    let build = |cfg: UNetConfig| {
        let store = ParamStore::new(DType::F32, 0);
        EdmPrecond::zeroed(&store.root(), &EdmConfig::new(cfg)).map(|_| ()).map_err(|e| e.to_string())
    };
    let song = |f: &dyn Fn(&mut SongUNetConfig)| {
        let mut c = tiny_song(0);
        f(&mut c);
        build(UNetConfig::Song(c))
    };
    let err = song(&|c| c.img_resolution = 15).unwrap_err();
    assert!(err.contains("divisible"), "{err}");
    let err = song(&|c| c.channel_mult = vec![]).unwrap_err();
    assert!(err.contains("channel_mult"), "{err}");
    let err = song(&|c| c.attn_resolutions = vec![4]).unwrap_err();
    assert!(err.contains("attention resolution 4"), "{err}");
    // 36 and 72 channels split into 9 and 18 groups, but a decoder concat of 144 does
    // not split into 32.
    let err = song(&|c| c.model_channels = 36).unwrap_err();
    assert!(err.contains("GroupNorm(144)"), "{err}");
    let err = song(&|c| c.dropout = 1.5).unwrap_err();
    assert!(err.contains("dropout"), "{err}");
    let err = song(&|c| c.out_channels = 1).unwrap_err();
    assert!(err.contains("same count"), "{err}");
    let err = song(&|c| c.resample_filter = vec![1.0, -1.0]).unwrap_err();
    assert!(err.contains("resample filter"), "{err}");
    // 224 channels make 224 / 64 = 3 heads, which do not divide them.
    let adm = DhariwalUNetConfig {
        model_channels: 224,
        channel_mult: vec![1, 1],
        attn_resolutions: vec![8],
        ..DhariwalUNetConfig::new(16, 3, 3)
    };
    let err = build(UNetConfig::Dhariwal(adm)).unwrap_err();
    assert!(err.contains("attention heads"), "{err}");

    // Inputs of the wrong size, labels of the wrong width, σ of the wrong length.
    let store = ParamStore::new(DType::F32, 0);
    let net = EdmPrecond::zeroed(&store.root(), &EdmConfig::new(UNetConfig::Song(tiny_song(10)))).expect("valid");
    let x = Tensor::zeros(&[2, 3, 16, 16], DType::F32).expect("alloc");
    let s = Tensor::ones(&[2], DType::F32).expect("alloc");
    assert!(net.forward(&Tensor::zeros(&[2, 3, 8, 8], DType::F32).expect("alloc"), &s, None, None).is_err());
    assert!(net.forward(&x, &s, Some(&Tensor::zeros(&[2, 9], DType::F32).expect("alloc")), None).is_err());
    assert!(net.forward(&x, &Tensor::ones(&[3], DType::F32).expect("alloc"), None, None).is_err());
}

/// A PyTorch DDPM++ net (benches/torch_sid.py, written from the spec with the official
/// state-dict names) converted by `tools/convert_edm.py` — the path an official EDM pickle
/// takes — loads into scorch by name and gives PyTorch's output. The fixture
/// (`tools/convert_edm.py --fixture`): model_channels 16, one block per level, augment_dim 9,
/// attention at 16×16, random weights, eval mode, two inputs at σ = 0.7 and 4.
#[test]
fn converted_pytorch_ddpmpp_matches_pytorch() -> Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/edm_ddpmpp_quick.safetensors");
    let cfg = EdmConfig::new(UNetConfig::Song(SongUNetConfig {
        model_channels: 16,
        num_blocks: 1,
        ..match presets::cifar10_ddpmpp(false).unet {
            UNetConfig::Song(s) => s,
            _ => unreachable!("the CIFAR-10 DDPM++ preset is a Song U-Net"),
        }
    }));
    let store = ParamStore::new(DType::F32, 0);
    let net = EdmPrecond::new(&store.root(), &cfg)?;
    store.set_training(false);
    let report = store.load_partial(&path)?;
    assert!(report.missing.is_empty(), "missing from the converted file: {:?}", report.missing);
    assert_eq!(report.unexpected, ["test.d", "test.sigma", "test.x"], "only the test tensors are extra");
    let raw = scorch_engine::safetensors_io::load(&path).expect("fixture");
    let get = |name: &str| -> Result<Tensor> {
        let r = raw.iter().find(|r| r.name == name).expect("fixture tensor");
        Ok(Tensor::from_bytes(&r.data, r.dtype, &r.shape)?)
    };
    let (x, sigma, want) = (get("test.x")?, get("test.sigma")?, get("test.d")?);
    let got = scorch_models::edm::Denoiser::denoise(&net, &x, &sigma, None)?;
    assert_eq!(got.shape(), want.shape());
    let (g, w) = (got.to_vec_f64()?, want.to_vec_f64()?);
    let scale = w.iter().map(|v| v.abs()).fold(0.0, f64::max);
    let worst = g.iter().zip(&w).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst <= 1e-4 * scale.max(1.0), "max |scorch − PyTorch| = {worst:.3e} (max |D| {scale:.3})");
    Ok(())
}
