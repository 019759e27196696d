//! Background prefetch and image-folder training: the prefetched batches are exactly the
//! seeded order's (from any starting step, across epochs, with or without a thread); a lazy
//! folder decodes what the in-memory loader does; a bad file fails the batch that reads it,
//! naming it, without hanging; and an EDM teacher trains on an RGB class folder (streamed)
//! and resumes bit-for-bit, then samples at its own shape.

use scorch_engine::safetensors_io::load;
use scorch_models::data::fmnist_tensor::{PixelRange, TensorDataset};
use scorch_models::data::folder::{load_image_folder, FolderOptions, LazyFolder};
use scorch_models::data::idx::shuffled_indices;
use scorch_models::data::loader::{HostImages, Prefetcher, SampleSource};
use scorch_models::edm::train::{train_edm, EdmRecipe, ModelRecipe};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `n` images of 1×1×2 whose pixels are (i, −i) and label i % 3.
fn numbered(n: usize) -> TensorDataset {
    let px: Vec<f32> = (0..n).flat_map(|i| [i as f32, -(i as f32)]).collect();
    let labels: Vec<i64> = (0..n as i64).map(|i| i % 3).collect();
    TensorDataset::new(
        scorch_engine::Tensor::from_vec(px, &[n, 1, 1, 2]).unwrap(),
        scorch_engine::Tensor::from_vec(labels, &[n]).unwrap(),
    )
    .unwrap()
}

#[test]
fn prefetched_batches_follow_the_seeded_order_from_any_step() {
    let n = 10;
    let source: Arc<dyn SampleSource> = Arc::new(HostImages::from_dataset(&numbered(n)).unwrap());
    let (batch, seed) = (4, 7);
    for depth in [0, 1, 3] {
        for first in [0u64, 2, 5] {
            let mut p = Prefetcher::new(source.clone(), batch, seed, first, depth).unwrap();
            for step in first..first + 6 {
                let b = p.next_batch().unwrap();
                assert_eq!(b.step, step);
                let want: Vec<usize> = (0..batch as u64)
                    .map(|j| {
                        let k = step * batch as u64 + j;
                        shuffled_indices(n, seed, k / n as u64)[(k % n as u64) as usize]
                    })
                    .collect();
                let got: Vec<usize> = b.pixels.chunks(2).map(|p| p[0] as usize).collect();
                assert_eq!(got, want, "depth {depth}, first step {first}, step {step}");
                assert!(b.pixels.chunks(2).all(|p| p[1] == -p[0]));
                assert_eq!(b.labels, want.iter().map(|&i| (i % 3) as i64).collect::<Vec<_>>());
                let (x, y) = b.to_tensors().unwrap();
                assert_eq!((x.shape(), y.shape()), (&[batch, 1, 1, 2][..], &[batch][..]));
            }
            // Dropped with batches still queued: the thread stops (the test would hang otherwise).
            drop(p);
        }
    }
    assert!(Prefetcher::new(source, 0, 0, 0, 2).is_err(), "batch 0 is refused");
}

/// `root/<class>/<i>.png`: 2 classes × 3 RGB images of 20×16 with distinct colours.
fn rgb_folder(tag: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("scorch-loader-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for (c, class) in ["cats", "dogs"].iter().enumerate() {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..3u8 {
            let img = image::RgbImage::from_fn(20, 16, |x, y| {
                image::Rgb([(x * 12) as u8, (y * 15) as u8, 60 * i + 100 * c as u8])
            });
            img.save(root.join(class).join(format!("{i}.png"))).unwrap();
        }
    }
    root
}

#[test]
fn lazy_folder_decodes_what_the_in_memory_loader_does_and_bad_files_fail_by_name() {
    let root = rgb_folder("lazy");
    let opt = FolderOptions { size: 8, channels: 3, range: PixelRange::MinusOneOne, limit: 0 };
    let eager = load_image_folder(&root, &opt).unwrap();
    let lazy = LazyFolder::open(&root, &opt).unwrap();
    assert_eq!(lazy.classes(), ["cats", "dogs"]);
    assert_eq!((lazy.len(), lazy.sample_shape()), (6, [3, 8, 8]));
    let all = eager.data.images().to_vec::<f32>().unwrap();
    let mut buf = vec![0f32; 3 * 64];
    for i in 0..6 {
        let label = lazy.read(i, &mut buf).unwrap();
        assert_eq!(buf, all[i * 192..(i + 1) * 192], "image {i}");
        assert_eq!(label, eager.data.labels().to_vec::<i64>().unwrap()[i]);
    }

    // A corrupt file: the batch that reads it fails with its name, through the thread too.
    std::fs::write(root.join("dogs").join("2.png"), "not a png").unwrap();
    let lazy: Arc<dyn SampleSource> = Arc::new(LazyFolder::open(&root, &opt).unwrap());
    let mut p = Prefetcher::new(lazy, 6, 0, 0, 2).unwrap();
    let err = p.next_batch().unwrap_err().to_string();
    assert!(err.contains("2.png"), "{err}");
    assert!(p.next_batch().is_err(), "a failed prefetcher keeps failing instead of hanging");
    let _ = std::fs::remove_dir_all(&root);
}

fn folder_recipe(root: &Path, steps: u64, stream: bool) -> EdmRecipe {
    EdmRecipe {
        dataset: "folder".into(),
        data_dir: Some(root.display().to_string()),
        resolution: 8,
        stream,
        conditional: true,
        model: ModelRecipe {
            model_channels: 8,
            channel_mult: vec![1, 1],
            num_blocks: 1,
            attn_resolutions: vec![],
            dropout: 0.0,
            label_dropout: 0.1,
        },
        steps,
        batch: 4,
        accumulate: 2,
        lr_rampup_images: 8,
        checkpoint_every: 2,
        log_every: 1,
        sample_count: 4,
        sample_steps: 2,
        ..EdmRecipe::default()
    }
}

#[test]
fn edm_trains_on_an_rgb_class_folder_resumes_and_samples_at_its_shape() {
    let root = rgb_folder("train");
    let base = std::env::temp_dir().join(format!("scorch-folder-edm-{}", std::process::id()));
    let (a, b, c) = (base.join("straight"), base.join("resumed"), base.join("in-memory"));
    train_edm(&folder_recipe(&root, 4, true), &a, false, true).unwrap();
    train_edm(&folder_recipe(&root, 2, true), &b, false, true).unwrap();
    train_edm(&folder_recipe(&root, 4, true), &b, true, true).unwrap();
    // Loading the folder into memory instead of streaming it trains on the same batches.
    train_edm(&EdmRecipe { prefetch: 0, ..folder_recipe(&root, 4, false) }, &c, false, true).unwrap();
    let ta = load(&a.join("checkpoint.safetensors")).unwrap();
    for other in [&b, &c] {
        let tb = load(&other.join("checkpoint.safetensors")).unwrap();
        assert_eq!(ta.len(), tb.len());
        for (x, y) in ta.iter().zip(&tb) {
            assert!(x.name == y.name && x.data == y.data, "{} differs in {}", x.name, other.display());
        }
    }
    // The run records the resolved shape, and the teacher samples RGB 8×8 images by class.
    let resolved = std::fs::read_to_string(a.join("recipe.toml")).unwrap();
    assert!(resolved.contains("channels = 3") && resolved.contains("num_classes = 2"), "{resolved}");
    let teacher = scorch_models::sid::train::load_teacher(&a).unwrap();
    let net = scorch_models::sid::train::edm_net(&teacher.config, &teacher.weights, &teacher.source, 0).unwrap();
    let x = scorch_models::sid::train::teacher_samples(&net, 3, 2, 0, true).unwrap();
    assert_eq!(x.shape(), [3, 3, 8, 8]);
    assert!(x.to_vec_f64().unwrap().iter().all(|v| v.is_finite()));

    // Recipe problems name the field.
    let e = train_edm(&EdmRecipe { num_classes: 5, ..folder_recipe(&root, 1, false) }, &base.join("x"), false, true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("num_classes") && e.contains('2'), "{e}");
    let e = EdmRecipe { data_dir: None, ..folder_recipe(&root, 1, false) }.validate().unwrap_err().to_string();
    assert!(e.contains("data_dir"), "{e}");
    let e = EdmRecipe { resolution: 7, ..folder_recipe(&root, 1, false) }.validate().unwrap_err().to_string();
    assert!(e.contains("resolution"), "{e}");
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&base);
}
