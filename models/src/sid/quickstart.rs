//! `scorch quickstart`: the shipped Fashion-MNIST teacher distilled into a one-step
//! generator with SiD within a time budget, then `samples.png` (teacher at NFE 35 beside
//! the one-step generator, same noise) and FD-FMNIST of both.

use super::train::{
    distill_fmnist, edm_net, evaluator, generator_samples, has_test_split, load_teacher, teacher_samples, SidRecipe,
};
use crate::data::idx::fmnist_dir;
use crate::error::{Error, Result};
use crate::train::{load_recipe, save_grid};
use scorch_engine::Tensor;
use std::path::{Path, PathBuf};

/// What the quickstart measured.
#[derive(Clone, Debug)]
pub struct QuickstartReport {
    pub iterations: u64,
    pub images: u64,
    pub seconds: f64,
    /// FD-FMNIST of the teacher (Heun, NFE 35) and the one-step generator, on
    /// `eval_count` samples each; `None` without the data or the classifier.
    pub fd_teacher: Option<f64>,
    pub fd_generator: Option<f64>,
    /// FD-FMNIST of the generator before distillation (the teacher's one-step output).
    pub fd_initial: Option<f64>,
    pub eval_count: usize,
    pub samples: PathBuf,
    pub notes: Vec<String>,
}

/// Runs the quickstart with `recipe_path` (default `recipes/quickstart.toml` if it exists,
/// else the built-in defaults) and `overrides`, writing into `out`.
pub fn quickstart(recipe_path: Option<&Path>, overrides: &[String], out: &Path) -> Result<QuickstartReport> {
    let default = in_repo("recipes/quickstart.toml");
    let path = recipe_path.or(default.exists().then_some(default.as_path()));
    let mut recipe: SidRecipe = load_recipe(path, overrides).map_err(|e| Error::Config(format!("{e}")))?;
    recipe.teacher = in_repo(&recipe.teacher).to_string_lossy().into_owned();
    recipe.classifier = in_repo(&recipe.classifier).to_string_lossy().into_owned();
    let mut notes = Vec::new();
    let data_dir = recipe.data_dir.as_ref().map(PathBuf::from).unwrap_or_else(fmnist_dir);
    let has_data = has_test_split(&data_dir);
    if !has_data {
        notes.push(format!(
            "Fashion-MNIST is not in {} — install it with `sudo apt install dataset-fashion-mnist` \
             (or set SCORCH_FMNIST_DIR); SiD itself is data-free and runs, FD-FMNIST is skipped",
            data_dir.display()
        ));
    } else if !Path::new(&recipe.classifier).exists() {
        notes
            .push(format!("{} is missing (scorch train classifier makes it); FD-FMNIST is skipped", recipe.classifier));
    }
    let teacher = load_teacher(Path::new(&recipe.teacher))?;
    if teacher.recipe.conditional && !has_data {
        return Err(Error::Config(
            "the quickstart teacher is class-conditional and needs Fashion-MNIST for its labels".into(),
        ));
    }
    let fd = if has_data { evaluator(&recipe, &data_dir)? } else { None };
    let cond = teacher.recipe.conditional;

    // Before: the teacher's own one-step output is where the generator starts.
    let loss = recipe.distill_config()?.loss;
    let net = edm_net(&teacher.config, &teacher.weights, &teacher.source, 0)?;
    let eval_seed = recipe.seed.wrapping_add(1000);
    let fd_initial = match &fd {
        Some(fd) => Some(fd.distance(&generator_samples(&net, &loss, recipe.eval_count, eval_seed, cond)?)?),
        None => None,
    };

    let mut r = recipe.clone();
    r.eval_every = 0; // evaluated once at the end, below
    r.sample_count = 0;
    let summary = distill_fmnist(&r, out, false, false)?;

    // The grid: each row has 8 teacher samples (NFE 35) then 8 one-step samples, same noise.
    let gen_weights = scorch_engine::safetensors_io::load(&summary.generator)?;
    let generator = edm_net(&teacher.config, &gen_weights, &summary.generator, 1)?;
    let seed = recipe.seed.wrapping_add(7);
    let t_grid = teacher_samples(&net, 64, 18, seed, cond)?;
    let g_grid = generator_samples(&generator, &loss, 64, seed, cond)?;
    let mut rows = Vec::new();
    for i in 0..8 {
        rows.push(t_grid.narrow(0, 8 * i, 8)?);
        rows.push(g_grid.narrow(0, 8 * i, 8)?);
    }
    let samples = out.join("samples.png");
    save_grid(&Tensor::cat(&rows, 0)?, 16, -1.0, 1.0, &samples)?;

    let (fd_teacher, fd_generator) = match &fd {
        Some(fd) => {
            let n = recipe.eval_count;
            let t = fd.distance(&teacher_samples(&net, n, 18, eval_seed, cond)?)?;
            let g = fd.distance(&generator_samples(&generator, &loss, n, eval_seed, cond)?)?;
            (Some(t), Some(g))
        }
        None => (None, None),
    };
    Ok(QuickstartReport {
        iterations: summary.iterations,
        images: summary.images,
        seconds: summary.seconds,
        fd_teacher,
        fd_generator,
        fd_initial,
        eval_count: recipe.eval_count,
        samples,
        notes,
    })
}

/// `rel` as given when it exists, else the same path in the scorch checkout this binary was
/// built from (so the quickstart finds its shipped assets from any working directory).
fn in_repo(rel: &str) -> PathBuf {
    let p = PathBuf::from(rel);
    if p.exists() || p.is_absolute() {
        return p;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new("."));
    let q = root.join(rel);
    if q.exists() {
        q
    } else {
        p
    }
}
