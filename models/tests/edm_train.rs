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
