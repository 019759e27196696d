//! The `scorch` binary as a user meets it: commands that work end to end on tiny sizes, and
//! bad input that must end in a one-line error naming the problem (never a panic).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn scorch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scorch"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("SCORCH_DEVICE")
        .output()
        .expect("running scorch")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Fails the test with the output when the command did not exit as `ok` says, and checks
/// that no panic message appeared.
fn expect(o: &Output, ok: bool) -> String {
    let t = text(o);
    assert_eq!(o.status.success(), ok, "exit status {:?}:\n{t}", o.status);
    assert!(!t.contains("panicked"), "a panic instead of an error:\n{t}");
    t
}

fn have_fmnist() -> bool {
    let dir = std::env::var("SCORCH_FMNIST_DIR").unwrap_or_else(|_| "/usr/share/datasets/fashion-mnist".into());
    let ok = Path::new(&dir).join("t10k-images-idx3-ubyte.gz").exists();
    if !ok {
        println!("SKIP: Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)");
    }
    ok
}

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("scorch-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn recipe_errors_name_the_field() {
    let out = temp("recipe");
    let o = out.display().to_string();
    for (set, field) in
        [("bogus=1", "bogus"), ("lr=-1", "lr"), ("batch=\"many\"", "batch"), ("dataset=\"cifar\"", "dataset")]
    {
        let r = scorch(&["train", "edm", "--recipe", "recipes/edm-fmnist-tiny.toml", "--out", &o, "--set", set]);
        let t = expect(&r, false);
        assert!(t.contains(field), "`--set {set}` should name `{field}`:\n{t}");
    }
    let t = expect(&scorch(&["train", "edm", "--recipe", "recipes/none.toml", "--out", &o]), false);
    assert!(t.contains("none.toml"), "{t}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn eval_reports_fd_fmnist_with_precision_recall_and_refuses_what_it_cannot_measure() {
    if !have_fmnist() {
        return;
    }
    let r =
        scorch(&["eval", "--teacher", "assets/edm-fmnist-tiny", "--count", "12", "--steps", "2", "--precision-recall"]);
    let t = expect(&r, true);
    assert!(t.contains("FD-FMNIST") && t.contains("precision") && t.contains("recall"), "{t}");

    // FID needs converted Inception weights; a missing file names the converter.
    let r = scorch(&[
        "eval",
        "--teacher",
        "assets/edm-fmnist-tiny",
        "--count",
        "4",
        "--steps",
        "2",
        "--inception",
        "nope.safetensors",
    ]);
    let t = expect(&r, false);
    assert!(t.contains("convert_inception.py"), "{t}");

    // A teacher directory that is not one.
    let t = expect(&scorch(&["eval", "--teacher", "assets/nowhere", "--count", "4"]), false);
    assert!(t.contains("nowhere"), "{t}");
}

#[test]
fn a_teacher_trains_from_an_image_folder_samples_and_is_refused_by_fd_fmnist() {
    let root = temp("folder");
    let data = root.join("data");
    for (c, class) in ["a", "b"].iter().enumerate() {
        std::fs::create_dir_all(data.join(class)).unwrap();
        for i in 0..4u8 {
            let img = image::RgbImage::from_fn(12, 12, |x, y| {
                image::Rgb([(x * 20) as u8, (y * 20) as u8, 50 * i + 90 * c as u8])
            });
            img.save(data.join(class).join(format!("{i}.png"))).unwrap();
        }
    }
    let run = root.join("run");
    let (d, r) = (format!("data_dir=\"{}\"", data.display()), run.display().to_string());
    let o = scorch(&[
        "train",
        "edm",
        "--recipe",
        "recipes/edm-fmnist-tiny.toml",
        "--out",
        &r,
        "--steps",
        "2",
        "--set",
        "dataset=\"folder\"",
        "--set",
        &d,
        "--set",
        "resolution=8",
        "--set",
        "channels=3",
        "--set",
        "conditional=true",
        "--set",
        "batch=4",
        "--set",
        "sample_count=4",
        "--set",
        "sample_steps=2",
    ]);
    expect(&o, true);
    let resolved = std::fs::read_to_string(run.join("recipe.toml")).unwrap();
    assert!(resolved.contains("num_classes = 2"), "{resolved}");
    let png = root.join("s.png").display().to_string();
    let t = expect(&scorch(&["sample", "--teacher", &r, "--count", "4", "--steps", "2", "--out", &png]), true);
    assert!(Path::new(&png).exists(), "{t}");
    let t = expect(&scorch(&["eval", "--teacher", &r, "--count", "4", "--steps", "2"]), false);
    assert!(t.contains("--inception"), "{t}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn device_requests_without_a_gpu_are_errors_not_panics() {
    if scorch::cuda::cuda_available() {
        println!("SKIP: a GPU is present; this checks the no-GPU errors");
        return;
    }
    let t = expect(&scorch(&["ops", "--check", "--device", "cuda", "--filter", "add"]), false);
    assert!(t.to_lowercase().contains("cuda") || t.contains("nvrtc"), "{t}");
    let t = expect(&scorch(&["bench", "--device", "cpu"]), false);
    assert!(t.contains("cargo bench"), "{t}");
    let t = expect(&scorch(&["eval", "--teacher", "assets/edm-fmnist-tiny", "--device", "cuda:3"]), false);
    assert!(t.to_lowercase().contains("cuda"), "{t}");
    let t = expect(&scorch(&["ops", "--device", "tpu"]), false);
    assert!(t.contains("tpu"), "{t}");
}
