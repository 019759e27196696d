//! `scorch distill` and the quickstart end to end on a tiny Fashion-MNIST teacher:
//! outputs, FD-FMNIST records, bit-for-bit resume (SiD and SiDA), the teacher-directory
//! errors.

use scorch_models::data::idx::fmnist_dir;
use scorch_models::edm::train::{train_edm, EdmRecipe, ModelRecipe};
use scorch_models::sid::quickstart::quickstart;
use scorch_models::sid::train::{distill_fmnist, load_teacher, SidRecipe};
use std::path::{Path, PathBuf};

fn have_data() -> bool {
    let ok = fmnist_dir().join("train-images-idx3-ubyte.gz").exists();
    if !ok {
        println!("SKIP: Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)");
    }
    ok
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("scorch-sid-fmnist-{}-{name}", std::process::id()));
    std::fs::remove_dir_all(&d).ok();
    d
}

/// A 2-step conditional teacher with 8 base channels.
fn teacher(dir: &Path, label_dropout: f64) {
    let r = EdmRecipe {
        limit_images: 64,
        conditional: true,
        model: ModelRecipe {
            model_channels: 8,
            channel_mult: vec![1, 1],
            num_blocks: 1,
            attn_resolutions: vec![],
            dropout: 0.1,
            label_dropout,
        },
        steps: 2,
        batch: 4,
        sample_count: 0,
        ..EdmRecipe::default()
    };
    train_edm(&r, dir, false, true).unwrap();
}

fn recipe(teacher: &Path, method: &str, steps: u64) -> SidRecipe {
    SidRecipe {
        method: method.into(),
        teacher: teacher.to_string_lossy().into(),
        steps,
        batch: 4,
        batch_gpu: 2,
        checkpoint_every: 1,
        log_every: 1,
        sample_count: 0,
        gen_freeze_images: 4,
        sid_only_images: 8,
        classifier: "../assets/fd-fmnist-classifier.safetensors".into(),
        ..SidRecipe::default()
    }
}

#[test]
fn distill_writes_outputs_and_resumes_bit_for_bit() {
    if !have_data() {
        return;
    }
    let t = tmp("teacher");
    teacher(&t, 0.0);
    for method in ["sid", "sida"] {
        let straight = tmp(&format!("{method}-straight"));
        let mut r = recipe(&t, method, 4);
        r.eval_every = 2;
        r.eval_count = 20;
        let s = distill_fmnist(&r, &straight, false, true).unwrap();
        assert_eq!((s.iterations, s.images), (4, 16));
        assert!(s.last_fd.is_some_and(|v| v.is_finite() && v > 0.0), "{:?}", s.last_fd);
        let log = std::fs::read_to_string(straight.join("metrics.jsonl")).unwrap();
        assert_eq!(log.lines().filter(|l| l.contains("fd_fmnist")).count(), 3, "{log}"); // steps 0, 2, 4
        assert_eq!(log.lines().filter(|l| l.contains("gen_loss")).count(), 4, "{log}");
        if method == "sida" {
            assert!(log.contains("disc_loss") && log.contains("adv_bce"), "{log}");
        }

        let resumed = tmp(&format!("{method}-resumed"));
        distill_fmnist(&recipe(&t, method, 2), &resumed, false, true).unwrap();
        let mut r4 = recipe(&t, method, 4);
        r4.eval_every = 2;
        r4.eval_count = 20;
        distill_fmnist(&r4, &resumed, true, true).unwrap();
        let a = std::fs::read(straight.join("generator.safetensors")).unwrap();
        let b = std::fs::read(resumed.join("generator.safetensors")).unwrap();
        assert!(a == b, "{method}: the resumed run's generator differs from the straight run's");
        let ca = std::fs::read(straight.join("checkpoint.safetensors")).unwrap();
        let cb = std::fs::read(resumed.join("checkpoint.safetensors")).unwrap();
        assert!(ca == cb, "{method}: checkpoints differ");
        std::fs::remove_dir_all(&straight).ok();
        std::fs::remove_dir_all(&resumed).ok();
    }
    std::fs::remove_dir_all(&t).ok();
}

#[test]
fn quickstart_runs_end_to_end() {
    if !have_data() {
        return;
    }
    let t = tmp("qs-teacher");
    teacher(&t, 0.0);
    let out = tmp("qs-out");
    let set = [
        format!("teacher=\"{}\"", t.display()),
        "steps=2".into(),
        "batch=4".into(),
        "batch_gpu=4".into(),
        "eval_count=20".into(),
        "classifier=\"../assets/fd-fmnist-classifier.safetensors\"".into(),
    ];
    let r = quickstart(Some(Path::new("../recipes/quickstart.toml")), &set, &out).unwrap();
    assert_eq!(r.iterations, 2);
    for v in [r.fd_initial, r.fd_teacher, r.fd_generator] {
        assert!(v.is_some_and(|v| v.is_finite() && v > 0.0), "{r:?}");
    }
    let png = std::fs::read(&r.samples).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    std::fs::remove_dir_all(&t).ok();
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn teacher_directory_errors_are_clear() {
    let d = tmp("no-teacher");
    std::fs::create_dir_all(&d).unwrap();
    let e = load_teacher(&d).err().unwrap().to_string();
    assert!(e.contains("recipe.toml"), "{e}");
    std::fs::write(d.join("recipe.toml"), "steps = 1\n").unwrap();
    let e = load_teacher(&d).err().unwrap().to_string();
    assert!(e.contains("ema.safetensors") && e.contains("checkpoint.safetensors"), "{e}");
    std::fs::write(d.join("recipe.toml"), "stepz = 1\n").unwrap();
    let e = load_teacher(&d).err().unwrap().to_string();
    assert!(e.contains("stepz"), "{e}");
    let e = SidRecipe { method: "dmd".into(), ..SidRecipe::default() }.distill_config().unwrap_err().to_string();
    assert!(e.contains("method"), "{e}");
    let e = SidRecipe { method: "sid2a".into(), ..SidRecipe::default() }.distill_config().unwrap_err().to_string();
    assert!(e.contains("init_generator"), "{e}");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn lsg_guidance_needs_a_guided_teacher_and_runs() {
    if !have_data() {
        return;
    }
    let plain = tmp("lsg-plain-teacher");
    teacher(&plain, 0.0);
    let guided = tmp("lsg-guided-teacher");
    teacher(&guided, 0.1);
    let out = tmp("lsg-out");
    let lsg = |t: &Path, method: &str| SidRecipe {
        kappa_fake_train: 2.0,
        kappa_fake_eval: 2.0,
        kappa_teacher: 2.0,
        ..recipe(t, method, 2)
    };
    let e = distill_fmnist(&lsg(&plain, "sid"), &out, false, true).err().unwrap().to_string();
    assert!(e.contains("label dropout"), "{e}");
    let e = distill_fmnist(&lsg(&guided, "sida"), &out, false, true).err().unwrap().to_string();
    assert!(e.contains("kappa"), "{e}");
    let s = distill_fmnist(&lsg(&guided, "sid"), &out, false, true).unwrap();
    assert_eq!(s.iterations, 2);
    // Guidance changes the generator's update: κ = 2 and κ = 1 runs end with different weights.
    let out1 = tmp("lsg-out-1");
    distill_fmnist(&recipe(&guided, "sid", 2), &out1, false, true).unwrap();
    let a = std::fs::read(out.join("generator.safetensors")).unwrap();
    let b = std::fs::read(out1.join("generator.safetensors")).unwrap();
    assert!(a != b);
    for d in [plain, guided, out, out1] {
        std::fs::remove_dir_all(&d).ok();
    }
}
