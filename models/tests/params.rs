//! Parameter store checkpoints: round trips and the errors of strict and partial loads.

use scorch_engine::DType;
use scorch_models::nn::{Conv2d, Conv2dConfig, Linear};
use scorch_models::params::{Init, ParamStore};
use scorch_models::Result;

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("scorch-params-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir is writable");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn model(seed: u64, hidden: usize) -> Result<ParamStore> {
    let store = ParamStore::new(DType::F32, seed);
    let root = store.root();
    Conv2d::new(&root.pp("down.0").pp("conv"), 1, 4, 3, Conv2dConfig::same(3))?;
    Linear::new(&root.pp("head"), 4, hidden)?;
    Ok(store)
}

#[test]
fn save_then_load_restores_every_parameter() -> Result<()> {
    let dir = TempDir::new("roundtrip");
    let path = dir.0.join("model.safetensors");
    let a = model(1, 3)?;
    a.save(&path)?;
    let b = model(2, 3)?;
    assert_ne!(a.get("head.weight").expect("exists").to_bytes()?, b.get("head.weight").expect("exists").to_bytes()?);
    b.load(&path)?;
    for ((na, ta), (nb, tb)) in a.named_parameters().iter().zip(b.named_parameters().iter()) {
        assert_eq!(na, nb);
        assert_eq!(ta.to_bytes()?, tb.to_bytes()?, "{na}");
        assert!(tb.requires_grad(), "{nb} is still a parameter");
    }
    assert_eq!(b.names(), ["down.0.conv.weight", "down.0.conv.bias", "head.weight", "head.bias"]);
    Ok(())
}

#[test]
fn strict_load_names_every_mismatch_and_changes_nothing() -> Result<()> {
    let dir = TempDir::new("strict");
    let path = dir.0.join("model.safetensors");
    model(1, 3)?.save(&path)?;

    let wider = model(2, 5)?;
    let before = wider.get("down.0.conv.weight").expect("exists").to_bytes()?;
    let err = wider.load(&path).unwrap_err().to_string();
    assert!(err.contains("head.weight") && err.contains("[3, 4]") && err.contains("[5, 4]"), "{err}");
    assert!(err.contains("model.safetensors"), "the error names the file: {err}");
    assert_eq!(wider.get("down.0.conv.weight").expect("exists").to_bytes()?, before, "a failed load changes nothing");

    let extra = model(2, 3)?;
    extra.root().pp("cond").get_or_init("scale", &[1], Init::Ones)?;
    let err = extra.load(&path).unwrap_err().to_string();
    assert!(err.contains("missing") && err.contains("cond.scale"), "{err}");

    let fewer = ParamStore::new(DType::F32, 0);
    Linear::new(&fewer.root().pp("head"), 4, 3)?;
    let err = fewer.load(&path).unwrap_err().to_string();
    assert!(err.contains("not parameters of the model") && err.contains("down.0.conv.weight"), "{err}");

    let f64_store = ParamStore::new(DType::F64, 0);
    Conv2d::new(&f64_store.root().pp("down.0").pp("conv"), 1, 4, 3, Conv2dConfig::same(3))?;
    Linear::new(&f64_store.root().pp("head"), 4, 3)?;
    let err = f64_store.load(&path).unwrap_err().to_string();
    assert!(err.contains("f32") && err.contains("f64"), "{err}");
    Ok(())
}

#[test]
fn partial_load_reports_what_it_skipped() -> Result<()> {
    let dir = TempDir::new("partial");
    let path = dir.0.join("model.safetensors");
    let src = model(1, 3)?;
    src.save(&path)?;
    let dst = ParamStore::new(DType::F32, 5);
    Linear::new(&dst.root().pp("head"), 4, 3)?;
    dst.root().get_or_init("new", &[2], Init::Zeros)?;
    let report = dst.load_partial(&path)?;
    assert_eq!(report.missing, ["new"]);
    assert_eq!(report.unexpected, ["down.0.conv.bias", "down.0.conv.weight"]);
    assert_eq!(dst.get("head.bias").expect("exists").to_bytes()?, src.get("head.bias").expect("exists").to_bytes()?);
    // Shapes must still agree.
    let wrong = ParamStore::new(DType::F32, 5);
    Linear::new(&wrong.root().pp("head"), 4, 7)?;
    assert!(wrong.load_partial(&path).is_err());
    Ok(())
}

#[test]
fn a_missing_file_is_an_error_naming_it() -> Result<()> {
    let err = model(0, 3)?.load("/nonexistent/model.safetensors").unwrap_err().to_string();
    assert!(err.contains("/nonexistent/model.safetensors"), "{err}");
    Ok(())
}
