//! SiD / SiDA: the generator gradient against finite differences, the noise schedule,
//! bit-for-bit resume, and distillation on a 2-D toy reducing the sliced Wasserstein
//! distance.

use scorch_engine::{no_grad, DType, Generator, Tensor};
use scorch_models::data::toy2d::Toy;
use scorch_models::edm::toy::{ToyConfig, ToyDenoiser};
use scorch_models::params::ParamStore;
use scorch_models::sid::toy::{
    generator_samples, run_toy, toy_distill_config, toy_distiller, toy_swd, train_toy_teacher, ToyTeacherConfig,
};
use scorch_models::sid::{Method, SidLoss};

fn tiny(seed: u64) -> ToyDenoiser {
    let store = ParamStore::new(DType::F64, seed);
    let cfg = ToyConfig { hidden: 8, hidden_layers: 2, noise_freqs: 2, ..ToyConfig::default() };
    let net = ToyDenoiser::new(&store.root(), &cfg).unwrap();
    store.set_training(false);
    net
}

#[test]
fn generator_sigma_schedule_matches_the_spec() {
    let l = SidLoss::default();
    assert!((l.sigma_at(0.0) - 0.002).abs() < 1e-12);
    assert!((l.sigma_at(1.0) - 80.0).abs() < 1e-9);
    // spec §3.2: t = 0.8 ⇒ σ = 24.408
    assert!((l.sigma_at(0.8) - 24.408).abs() < 5e-3, "{}", l.sigma_at(0.8));
    let s = l.sample_generator_sigma(1000, DType::F64, &Generator::new(0)).unwrap().to_vec_f64().unwrap();
    assert!(s.iter().all(|&v| (0.002..=24.41).contains(&v)));
    let below = s.iter().filter(|&&v| v < 0.1).count() as f64 / 1000.0;
    assert!((below - 0.26).abs() < 0.05, "P(σ < 0.1) = {below}, spec ≈ 0.26");
}

/// The loss with the normaliser `w` held at its value at θ0 (the code detaches it), as a
/// function of the generator's parameters: the backward gradient must equal central
/// finite differences of this function.
#[test]
fn sid_generator_gradient_matches_finite_differences() {
    let (teacher, fake, g) = (tiny(1), tiny(2), tiny(3));
    let loss = SidLoss::default();
    let z = Tensor::randn(&[3, 2, 1, 1], DType::F64, &Generator::new(9)).unwrap();
    let eval = |w0: Option<&Tensor>| -> (Tensor, Tensor) {
        let x_g = loss.generate(&g, &z, None).unwrap();
        let t = loss.generator_loss(&teacher, &fake, &x_g, None, false, &Generator::new(4)).unwrap();
        let w = t.weight.clone();
        let l = match w0 {
            None => t.loss.sum_all().unwrap(),
            Some(w0) => t.loss.div(&w).unwrap().mul(w0).unwrap().sum_all().unwrap(),
        };
        (l, w)
    };
    let (l, w0) = eval(None);
    l.backward().unwrap();
    let params = g.store().named_parameters();
    let mut checked = 0;
    for (name, p) in &params {
        let grad = p.grad().unwrap().to_vec_f64().unwrap();
        let n = p.numel();
        for &i in &[0, n / 2, n - 1] {
            let orig = p.to_vec_f64().unwrap();
            let h = 1e-6;
            let shifted = |d: f64| {
                let mut v = orig.clone();
                v[i] += d;
                {
                    let _ng = no_grad();
                    p.assign(&Tensor::from_f64s(&v, p.shape(), DType::F64).unwrap()).unwrap();
                }
                let (l, _) = eval(Some(&w0));
                l.item().unwrap()
            };
            let fd = (shifted(h) - shifted(-h)) / (2.0 * h);
            {
                let _ng = no_grad();
                p.assign(&Tensor::from_f64s(&orig, p.shape(), DType::F64).unwrap()).unwrap();
            }
            let tol = 1e-6 * (1.0 + fd.abs().max(grad[i].abs()));
            assert!((fd - grad[i]).abs() < tol, "{name}[{i}]: backward {} vs finite differences {fd}", grad[i]);
            checked += 1;
        }
    }
    assert!(checked >= 12);
}

#[test]
fn toy_sid_and_sida_reduce_sliced_wasserstein() {
    let toy = Toy::EightGaussians;
    let teacher = train_toy_teacher(&ToyTeacherConfig { steps: 3000, ..ToyTeacherConfig::new(toy) }).unwrap();
    for method in [Method::Sid, Method::Sida] {
        let mut d = toy_distiller(&teacher, None, toy_distill_config(method), 3).unwrap();
        let before = toy_swd(&generator_samples(&d, 2000, 8).unwrap(), toy, 7).unwrap();
        run_toy(&mut d, toy, 300, 100).unwrap();
        let after = toy_swd(&generator_samples(&d, 2000, 8).unwrap(), toy, 7).unwrap();
        eprintln!("{method:?}: sliced Wasserstein {before:.4} → {after:.4} after 300 iterations");
        // Measured: SiD 0.615 → 0.271 (teacher at NFE 35: 0.262, data vs data 0.142).
        assert!(after < 0.65 * before, "{method:?}: {before} → {after}");
    }
}

#[test]
fn toy_distillation_resumes_bit_for_bit() {
    let toy = Toy::EightGaussians;
    let teacher = train_toy_teacher(&ToyTeacherConfig { steps: 50, ..ToyTeacherConfig::new(toy) }).unwrap();
    let dir = std::env::temp_dir().join(format!("scorch-sid-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ckpt = dir.join("ckpt.safetensors");
    for method in [Method::Sid, Method::Sida] {
        let mut cfg = toy_distill_config(method);
        cfg.batch = 32;
        cfg.batch_gpu = 16;
        cfg.gen_freeze_images = 64;
        cfg.sid_only_images = 96;
        let mut straight = toy_distiller(&teacher, None, cfg, 5).unwrap();
        run_toy(&mut straight, toy, 3, 1).unwrap();
        run_toy(&mut straight, toy, 3, 2).unwrap();
        // The teacher is frozen (no parameter gradients); the fake network's parameters,
        // frozen during each generator step, require gradients again afterwards.
        assert!(straight.teacher.store().parameters().iter().all(|p| p.grad().is_none() && !p.requires_grad()));
        assert!(straight.fake.store().parameters().iter().all(|p| p.requires_grad()));

        let mut first = toy_distiller(&teacher, None, cfg, 5).unwrap();
        run_toy(&mut first, toy, 3, 1).unwrap();
        first.save_checkpoint(&ckpt, &[]).unwrap();
        drop(first);
        let mut resumed = toy_distiller(&teacher, None, cfg, 5).unwrap();
        resumed.load_checkpoint(&ckpt).unwrap();
        assert_eq!(resumed.iterations(), 3);
        run_toy(&mut resumed, toy, 3, 2).unwrap();
        for (net_a, net_b) in [(&straight.generator, &resumed.generator), (&straight.fake, &resumed.fake)] {
            for ((n, a), (_, b)) in net_a.store().named_parameters().iter().zip(net_b.store().named_parameters()) {
                assert_eq!(a.to_vec_f64().unwrap(), b.to_vec_f64().unwrap(), "{method:?}: {n} differs after resume");
            }
        }
        let za = generator_samples(&straight, 16, 1).unwrap().to_vec_f64().unwrap();
        let zb = generator_samples(&resumed, 16, 1).unwrap().to_vec_f64().unwrap();
        assert_eq!(za, zb, "{method:?}: EMA generator differs after resume");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_configs_and_checkpoints_are_clear_errors() {
    let toy = Toy::EightGaussians;
    let teacher = train_toy_teacher(&ToyTeacherConfig { steps: 1, ..ToyTeacherConfig::new(toy) }).unwrap();
    let mut cfg = toy_distill_config(Method::Sid);
    cfg.batch_gpu = 100;
    let e = toy_distiller(&teacher, None, cfg, 0).err().unwrap().to_string();
    assert!(e.contains("batch_gpu"), "{e}");
    let mut d = toy_distiller(&teacher, None, toy_distill_config(Method::Sid), 0).unwrap();
    let dir = std::env::temp_dir().join(format!("scorch-sid-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("not-a-checkpoint.safetensors");
    teacher.store().save(&p).unwrap();
    let e = d.load_checkpoint(&p).err().unwrap().to_string();
    assert!(e.contains("not a distillation checkpoint"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// SiD-LSG: with κ₄ the teacher's output in the generator loss is `D_u + κ₄(D_c − D_u)`
/// (the all-zeros label row being the unconditional evaluation).
#[test]
fn lsg_teacher_guidance_enters_the_generator_loss() {
    use scorch_engine::ops::fused::sid_generator_loss_composite;
    use scorch_models::edm::{Denoiser, EdmConfig, EdmPrecond, SongUNetConfig, UNetConfig};
    let net = |seed: u64| {
        let store = ParamStore::new(DType::F64, seed);
        let cfg = EdmConfig::new(UNetConfig::Song(SongUNetConfig {
            label_dim: 3,
            model_channels: 8,
            channel_mult: vec![1],
            num_blocks: 1,
            attn_resolutions: vec![],
            ..SongUNetConfig::ddpmpp(8, 1)
        }));
        let n = EdmPrecond::new(&store.root(), &cfg).unwrap();
        store.set_training(false);
        // EDM zero-initialises output layers; perturb everything so labels matter.
        let _ng = no_grad();
        let g = Generator::new(seed + 100);
        for p in store.parameters() {
            p.assign(&p.add(&Tensor::randn(p.shape(), DType::F64, &g).unwrap().mul_scalar(0.1).unwrap()).unwrap())
                .unwrap();
        }
        n
    };
    let (teacher, fake) = (net(1), net(2));
    let x_g = Tensor::randn(&[2, 1, 8, 8], DType::F64, &Generator::new(3)).unwrap();
    let labels = Tensor::from_vec(vec![0i64, 2], &[2]).unwrap().one_hot(3, DType::F64).unwrap();
    let kappa = 2.5;
    let loss = SidLoss { guidance_teacher: kappa, ..SidLoss::default() };
    let got = loss.generator_loss(&teacher, &fake, &x_g, Some(&labels), false, &Generator::new(4)).unwrap();
    // The same draws by hand: σ from u, then the noise.
    let gen = Generator::new(4);
    let sigma = loss.sample_generator_sigma(2, DType::F64, &gen).unwrap();
    let x_t = x_g.add(&Tensor::randn(x_g.shape(), DType::F64, &gen).unwrap().mul(&sigma).unwrap()).unwrap();
    let sig = sigma.reshape(&[2]).unwrap();
    let d_c = teacher.denoise(&x_t, &sig, Some(&labels)).unwrap();
    let d_u = teacher.denoise(&x_t, &sig, Some(&Tensor::zeros(&[2, 3], DType::F64).unwrap())).unwrap();
    let y_real = d_u.add(&d_c.sub(&d_u).unwrap().mul_scalar(kappa).unwrap()).unwrap();
    let y_fake = fake.denoise(&x_t, &sig, Some(&labels)).unwrap();
    let want = sid_generator_loss_composite(&y_real, &y_fake, &x_g, 1.2).unwrap().to_vec_f64().unwrap();
    let got = got.loss.to_vec_f64().unwrap();
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() < 1e-9 * (1.0 + b.abs()), "{got:?} vs {want:?}");
    }
    let plain = SidLoss::default()
        .generator_loss(&teacher, &fake, &x_g, Some(&labels), false, &Generator::new(4))
        .unwrap()
        .loss
        .to_vec_f64()
        .unwrap();
    assert!(plain.iter().zip(&got).any(|(a, b)| (a - b).abs() > 1e-6), "κ₄ had no effect");
}
