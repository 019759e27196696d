//! EDM training: a run resumed from its checkpoint continues bit-for-bit (N steps straight
//! equals N/2, stop, resume, N/2), and the loss goes down on Fashion-MNIST.

use scorch_engine::safetensors_io::load;
use scorch_models::data::idx::fmnist_dir;
use scorch_models::edm::train::{train_edm, EdmRecipe, ModelRecipe};

fn tiny(steps: u64) -> EdmRecipe {
    EdmRecipe {
        limit_images: 256,
        model: ModelRecipe {
            model_channels: 8,
            channel_mult: vec![1, 1],
            num_blocks: 1,
            attn_resolutions: vec![16],
            dropout: 0.1,
            label_dropout: 0.0,
        },
        steps,
        batch: 8,
        accumulate: 2,
        lr_rampup_images: 16,
        checkpoint_every: 2,
        log_every: 1,
        sample_count: 0,
        conditional: true,
        ..EdmRecipe::default()
    }
}

fn have_data() -> bool {
    let ok = fmnist_dir().join("train-images-idx3-ubyte.gz").exists();
    if !ok {
        println!("SKIP: Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)");
    }
    ok
}

#[test]
fn resume_is_bit_for_bit() {
    if !have_data() {
        return;
    }
    let base = std::env::temp_dir().join(format!("scorch-edm-resume-{}", std::process::id()));
    let (a, b) = (base.join("straight"), base.join("resumed"));
    train_edm(&tiny(4), &a, false, true).unwrap();
    train_edm(&tiny(2), &b, false, true).unwrap();
    let r = train_edm(&tiny(4), &b, true, true).unwrap();
    assert_eq!(r.steps, 4);
    let (ta, tb) = (load(&a.join("checkpoint.safetensors")).unwrap(), load(&b.join("checkpoint.safetensors")).unwrap());
    assert_eq!(ta.len(), tb.len());
    for (x, y) in ta.iter().zip(&tb) {
        assert_eq!(x.name, y.name);
        assert!(x.data == y.data, "{} differs after resume", x.name);
    }
    let log = std::fs::read_to_string(b.join("metrics.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 4);
    std::fs::remove_dir_all(&base).ok();
}

#[test]
fn bad_recipes_name_the_field() {
    let e = EdmRecipe { batch: 6, accumulate: 4, ..EdmRecipe::default() }.validate().unwrap_err().to_string();
    assert!(e.contains("batch"), "{e}");
    let e = EdmRecipe { dataset: "cifar".into(), ..EdmRecipe::default() }.validate().unwrap_err().to_string();
    assert!(e.contains("dataset"), "{e}");
}

/// Every shipped EDM recipe parses and validates; the CIFAR-10 folder recipe builds EDM's
/// class-conditional DDPM++ teacher (55,735,299 parameters, spec §2.6) less its
/// `map_augment` layer (9 × 128): scorch has no augment pipe yet.
#[test]
fn shipped_edm_recipes_load_and_the_cifar10_one_is_the_official_net() {
    use scorch_models::train::load_recipe;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes");
    let mut seen = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("edm-") {
            continue;
        }
        let r: EdmRecipe = load_recipe(Some(&p), &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
        r.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        seen += 1;
    }
    assert!(seen >= 4, "found {seen} EDM recipes");
    let r: EdmRecipe = load_recipe(Some(&dir.join("edm-folder-cifar10.toml")), &["num_classes=10".into()]).unwrap();
    let store = scorch_models::params::ParamStore::new(scorch_engine::DType::F32, 0);
    let _net = scorch_models::edm::EdmPrecond::zeroed(&store.root(), &r.edm_config()).unwrap();
    assert_eq!(store.num_elements(), 55_735_299 - 9 * 128);
}
