//! The `scorch` command line.

use clap::{Parser, Subcommand};
use scorch::engine::registry::{
    check_composite, check_device_parity, check_forward, check_grad, registry, sample_for, OpInfo,
};
use scorch::{DType, Device};
use std::process::ExitCode;

mod gpu_bench;

#[derive(Parser)]
#[command(name = "scorch", version, about = "Autodiff engine and generative-model toolkit")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List the op registry: which ops have a CPU kernel, a backward, gradcheck, CUDA, parity.
    Ops {
        /// One JSON object per op instead of the table.
        #[arg(long)]
        json: bool,
        /// Run every op's checks (forward vs f64 reference in f64/f32/bf16, gradcheck, fused
        /// vs composite) on random samples, and report per op.
        #[arg(long)]
        check: bool,
        /// Samples per op for --check.
        #[arg(long, default_value_t = 8)]
        samples: u64,
        /// Device to check on (cpu, cuda, cuda:N); defaults to SCORCH_DEVICE or cpu.
        #[arg(long)]
        device: Option<String>,
        /// Only ops whose name contains this.
        #[arg(long)]
        filter: Option<String>,
    },
    /// Train a model from a recipe.
    Train {
        #[command(subcommand)]
        what: TrainCmd,
    },
    /// Distil an EDM teacher into a one-step generator (SiD, SiDA, SiD²A).
    Distill {
        #[command(subcommand)]
        method: DistillCmd,
    },
    /// Sample a teacher (Heun) or a one-step generator into a PNG grid.
    Sample(SampleArgs),
    /// FD-FMNIST of a teacher (Heun) or a one-step generator against the 10k test images;
    /// with --inception, FID (Inception-v3 pool features) against them or an image folder.
    Eval(SampleArgs),
    /// Distil the shipped Fashion-MNIST teacher with SiD within minutes, write
    /// samples.png (teacher NFE 35 beside the one-step generator) and print FD-FMNIST.
    Quickstart {
        /// Output directory.
        #[arg(long, default_value = "quickstart-out")]
        out: std::path::PathBuf,
        /// Recipe (default recipes/quickstart.toml, else built-in defaults).
        #[arg(long)]
        recipe: Option<std::path::PathBuf>,
        /// Recipe overrides, e.g. --set max_minutes=3.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// cpu, cuda or cuda:N (defaults to SCORCH_DEVICE or cpu).
        #[arg(long)]
        device: Option<String>,
    },
    /// Kernel benchmarks on a GPU (the device check's scorch side): one `case|ms|rate` line
    /// per case, with the case keys of benches/torch_gpu.py. CPU benchmarks: `cargo bench`.
    Bench {
        #[arg(long, default_value = "cuda:0")]
        device: String,
        /// Only cases whose key contains this.
        #[arg(long)]
        filter: Option<String>,
    },
    /// CUDA status, then every written CUDA kernel family against the CPU kernels on device
    /// `--device` (parity table with timings). Exits 2 when no GPU is usable.
    CudaCheck {
        #[arg(long, default_value = "cuda:0")]
        device: String,
    },
}

#[derive(Subcommand)]
enum TrainCmd {
    /// EDM teacher (Karras et al. 2022) on Fashion-MNIST.
    Edm(TrainArgs),
    /// The FD-FMNIST feature network: a small Fashion-MNIST classifier.
    Classifier {
        /// Where to write the weights (safetensors).
        #[arg(long, default_value = "assets/fd-fmnist-classifier.safetensors")]
        out: std::path::PathBuf,
        /// Epochs over the 60k training images.
        #[arg(long, default_value_t = 3)]
        epochs: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Fashion-MNIST directory (default: SCORCH_FMNIST_DIR or the Debian package's path).
        #[arg(long)]
        data: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum DistillCmd {
    /// SiD (data-free score identity distillation).
    Sid(DistillArgs),
    /// SiDA: SiD plus the fake network's encoder as a discriminator on real images.
    Sida(DistillArgs),
    /// SiD²A: SiDA starting from a SiD generator (recipe field init_generator).
    Sid2a(DistillArgs),
}

#[derive(clap::Args)]
struct DistillArgs {
    /// Recipe TOML (every field defaulted; see recipes/sid-fmnist.toml).
    #[arg(long)]
    recipe: Option<std::path::PathBuf>,
    /// Total iterations (overrides the recipe).
    #[arg(long)]
    steps: Option<u64>,
    /// Output directory: checkpoint, generator.safetensors, metrics.jsonl, recipe.toml, samples.
    #[arg(long, default_value = "runs/sid")]
    out: std::path::PathBuf,
    /// Continue from OUT/checkpoint.safetensors if it exists.
    #[arg(long)]
    resume: bool,
    /// cpu, cuda or cuda:N (defaults to SCORCH_DEVICE or cpu).
    #[arg(long)]
    device: Option<String>,
    /// Recipe overrides, e.g. --set glr=1e-4.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(clap::Args)]
struct SampleArgs {
    /// The teacher: an EDM run directory (recipe.toml + ema.safetensors or checkpoint).
    #[arg(long)]
    teacher: std::path::PathBuf,
    /// A one-step generator (generator.safetensors of a distillation run); without it the
    /// teacher is sampled with Heun.
    #[arg(long)]
    generator: Option<std::path::PathBuf>,
    /// Number of images.
    #[arg(long, default_value_t = 64)]
    count: usize,
    /// Heun noise levels for the teacher (18 → NFE 35).
    #[arg(long, default_value_t = 18)]
    steps: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// σ_init of the generator (SiD: 2.5).
    #[arg(long, default_value_t = 2.5)]
    sigma_init: f64,
    /// The PNG grid to write (sample).
    #[arg(long, default_value = "samples.png")]
    out: std::path::PathBuf,
    /// FD-FMNIST classifier weights (eval).
    #[arg(long, default_value = "assets/fd-fmnist-classifier.safetensors")]
    classifier: std::path::PathBuf,
    /// Eval reports FID with these Inception-v3 weights (pytorch-fid's pt_inception
    /// converted by tools/convert_inception.py) instead of FD-FMNIST.
    #[arg(long)]
    inception: Option<std::path::PathBuf>,
    /// FID reference images: an image folder (default: the Fashion-MNIST test images).
    #[arg(long)]
    reference: Option<std::path::PathBuf>,
    /// At most this many reference images.
    #[arg(long, default_value_t = 10_000)]
    reference_count: usize,
    /// FID reference statistics cache: read when the file exists, written otherwise.
    #[arg(long)]
    stats: Option<std::path::PathBuf>,
    /// Images per Inception batch.
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// Eval also reports improved precision and recall (k-NN manifolds, k = 3) on the same
    /// features, against as many reference images as samples (Inception: the reference set).
    #[arg(long)]
    precision_recall: bool,
    /// cpu, cuda or cuda:N (defaults to SCORCH_DEVICE or cpu).
    #[arg(long)]
    device: Option<String>,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Recipe TOML (every field defaulted; see recipes/).
    #[arg(long)]
    recipe: Option<std::path::PathBuf>,
    /// Total steps (overrides the recipe).
    #[arg(long)]
    steps: Option<u64>,
    /// Output directory: checkpoint, EMA weights, metrics.jsonl, recipe.toml, samples.
    #[arg(long, default_value = "runs/edm")]
    out: std::path::PathBuf,
    /// Continue from OUT/checkpoint.safetensors if it exists.
    #[arg(long)]
    resume: bool,
    /// cpu, cuda or cuda:N (defaults to SCORCH_DEVICE or cpu).
    #[arg(long)]
    device: Option<String>,
    /// Recipe overrides, e.g. --set lr=2e-4 --set model.dropout=0.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> scorch::Result<ExitCode> {
    match cli.cmd {
        Cmd::Ops { json, check, samples, device, filter } => {
            let device = match device {
                Some(d) => Device::parse(&d)?,
                None => Device::from_env()?,
            };
            device.check_available()?;
            let ops: Vec<OpInfo> =
                registry().into_iter().filter(|o| filter.as_deref().is_none_or(|f| o.name.contains(f))).collect();
            if check {
                if let Device::Cuda(_) = device {
                    return Ok(check_ops_device(&ops, samples, device));
                }
                return Ok(check_ops(&ops, samples));
            }
            if json {
                for o in &ops {
                    println!("{}", op_json(o));
                }
            } else {
                print_table(&ops);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::CudaCheck { device } => Ok(cuda_check(&device)),
        Cmd::Bench { device, filter } => match Device::parse(&device)? {
            Device::Cuda(i) => {
                Device::Cuda(i).check_available()?;
                match gpu_bench::run(i, filter.as_deref()) {
                    Ok(()) => Ok(ExitCode::SUCCESS),
                    Err(m) => {
                        eprintln!("error: {m}");
                        Ok(ExitCode::FAILURE)
                    }
                }
            }
            Device::Cpu => Err(scorch::Error::Device(
                "scorch bench runs the GPU kernel benchmarks; CPU benchmarks are `cargo bench` (benches/kernels.rs) and scripts/bench-cpu.sh".into(),
            )),
        },
        Cmd::Distill { method } => {
            let (name, a) = match method {
                DistillCmd::Sid(a) => ("sid", a),
                DistillCmd::Sida(a) => ("sida", a),
                DistillCmd::Sid2a(a) => ("sid2a", a),
            };
            select_device(a.device.as_deref(), false)?;
            Ok(report(distill_cmd(name, &a)))
        }
        Cmd::Sample(a) => {
            select_device(a.device.as_deref(), false)?;
            Ok(report(sample_cmd(&a, false)))
        }
        Cmd::Eval(a) => {
            select_device(a.device.as_deref(), false)?;
            Ok(report(sample_cmd(&a, true)))
        }
        Cmd::Quickstart { out, recipe, set, device } => {
            let d = select_device(device.as_deref(), true)?;
            println!("device: {d}");
            Ok(report(quickstart_cmd(&out, recipe.as_deref(), &set)))
        }
        Cmd::Train { what: TrainCmd::Edm(a) } => train_edm(a),
        Cmd::Train { what: TrainCmd::Classifier { out, epochs, seed, data } } => {
            Ok(report(train_classifier_cmd(&out, epochs, seed, data)))
        }
    }
}

fn train_edm(a: TrainArgs) -> scorch::Result<ExitCode> {
    use scorch::models::edm::train::{train_edm, EdmRecipe};
    use scorch::models::train::load_recipe;
    select_device(a.device.as_deref(), false)?;
    let mut overrides = a.set.clone();
    if let Some(s) = a.steps {
        overrides.push(format!("steps={s}"));
    }
    let recipe: EdmRecipe = match load_recipe(a.recipe.as_deref(), &overrides) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    match train_edm(&recipe, &a.out, a.resume, false) {
        Ok(r) => {
            println!(
                "trained {} steps in {:.1} s (last loss {:.4}); checkpoint {}, EMA weights {}",
                r.steps,
                r.seconds,
                r.last_loss,
                r.checkpoint.display(),
                a.out.join("ema.safetensors").display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The device a model command runs on: `--device`, else `SCORCH_DEVICE`, else the CPU (or,
/// with `prefer_gpu`, the first usable GPU). It becomes the engine's default device, so the
/// models create their parameters, noise and data batches there; a requested device that
/// cannot run (no driver, no NVRTC) is a clear error.
fn select_device(device: Option<&str>, prefer_gpu: bool) -> scorch::Result<Device> {
    let device = match device {
        Some(d) => Device::parse(d)?,
        None if std::env::var("SCORCH_DEVICE").is_ok_and(|v| !v.is_empty()) => Device::from_env()?,
        None if prefer_gpu => Device::best(),
        None => Device::Cpu,
    };
    scorch::engine::device::set_default_device(device)?;
    Ok(device)
}

fn distill_cmd(method: &str, a: &DistillArgs) -> Result<(), scorch::models::Error> {
    use scorch::models::sid::train::{distill_fmnist, SidRecipe};
    use scorch::models::train::load_recipe;
    let mut overrides = vec![format!("method=\"{method}\"")];
    overrides.extend(a.set.iter().cloned());
    if let Some(s) = a.steps {
        overrides.push(format!("steps={s}"));
    }
    let recipe: SidRecipe =
        load_recipe(a.recipe.as_deref(), &overrides).map_err(|e| scorch::models::Error::Config(format!("{e}")))?;
    let r = distill_fmnist(&recipe, &a.out, a.resume, false)?;
    println!(
        "{} iterations ({} images) in {:.1} s{}; EMA generator {}",
        r.iterations,
        r.images,
        r.seconds,
        r.last_fd.map(|v| format!(", last FD-FMNIST {v:.3}")).unwrap_or_default(),
        r.generator.display()
    );
    Ok(())
}

fn sample_cmd(a: &SampleArgs, eval: bool) -> Result<(), scorch::models::Error> {
    use scorch::models::data::idx::{fmnist_dir, Split};
    use scorch::models::edm::train::fmnist_32;
    use scorch::models::metrics::fmnist_net::FdFmnist;
    use scorch::models::sid::train::{edm_net, generator_samples, load_teacher, teacher_samples};
    use scorch::models::sid::SidLoss;
    let teacher = load_teacher(&a.teacher)?;
    let cond = teacher.recipe.conditional;
    let (res, ch) = (teacher.recipe.resolution, teacher.recipe.image_channels());
    if eval && a.inception.is_none() && (res, ch) != (32, 1) {
        return Err(scorch::models::Error::Config(format!(
            "FD-FMNIST measures Fashion-MNIST-shaped images (1 × 32 × 32); this teacher makes {ch} × {res} × {res}: use --inception WEIGHTS (FID) with --reference IMAGE_DIR"
        )));
    }
    let images = match &a.generator {
        Some(path) => {
            let w = scorch::engine::safetensors_io::load(path)?;
            let g = edm_net(&teacher.config, &w, path, 0)?;
            let loss = SidLoss { sigma_init: a.sigma_init, ..SidLoss::default() };
            generator_samples(&g, &loss, a.count, a.seed, cond)?
        }
        None => {
            let net = edm_net(&teacher.config, &teacher.weights, &teacher.source, 0)?;
            teacher_samples(&net, a.count, a.steps, a.seed, cond)?
        }
    };
    let what = match &a.generator {
        Some(p) => format!("one-step generator {}", p.display()),
        None => format!("teacher {} (Heun, NFE {})", a.teacher.display(), 2 * a.steps - 1),
    };
    if eval && a.inception.is_some() {
        let (fid, pr) = fid_eval(a, &images)?;
        println!("FID {fid:.3} ({} samples of the {what}; Inception-v3 pool features)", a.count);
        if let Some((p, r)) = pr {
            println!("precision {p:.4}, recall {r:.4} (k = 3, Inception-v3 pool features)");
        }
    } else if eval {
        let test = fmnist_32(&fmnist_dir(), Split::Test, 0)?;
        let fd = FdFmnist::new(&a.classifier, test.images())?;
        let generated = fd.net().features_f64(&images)?;
        println!(
            "FD-FMNIST {:.3} ({} samples of the {what}, vs the 10k test images)",
            fd.distance_of(&generated)?,
            a.count
        );
        if a.precision_recall {
            use scorch::models::metrics::{fmnist_net::FEATURES, precision_recall};
            // Equal set sizes, as in Kynkäänniemi et al.: the first `count` test images.
            let n = a.count.min(test.len());
            let real = &fd.reference_features()[..n * FEATURES];
            let (p, r) = precision_recall(real, &generated, FEATURES, 3)?;
            println!("precision {p:.4}, recall {r:.4} (k = 3, {n} test images, FD-FMNIST classifier features)");
        }
    } else {
        out_parent(&a.out)?;
        scorch::models::train::save_grid(&images, 8.min(a.count.max(1)), -1.0, 1.0, &a.out)?;
        println!("{} samples of the {what} → {}", a.count, a.out.display());
    }
    Ok(())
}

/// The reference images of `--inception` evaluation: `--reference` (an image folder, at the
/// samples' size and channels) or the Fashion-MNIST test images, at most `--reference-count`.
fn fid_reference(a: &SampleArgs, images: &scorch::Tensor) -> Result<scorch::Tensor, scorch::models::Error> {
    use scorch::models::data::folder::{load_image_folder, FolderOptions};
    use scorch::models::data::idx::{fmnist_dir, Split};
    use scorch::models::edm::train::fmnist_32;
    let reference = match &a.reference {
        Some(dir) => {
            let opt = FolderOptions {
                size: images.shape()[2],
                channels: images.shape()[1],
                limit: a.reference_count,
                ..FolderOptions::default()
            };
            load_image_folder(dir, &opt)?.data.images().clone()
        }
        None => fmnist_32(&fmnist_dir(), Split::Test, a.reference_count)?.images().clone(),
    };
    Ok(reference.to_device(scorch::engine::device::default_device())?)
}

/// FID of `images` with `--inception` weights against the reference statistics (the
/// `--stats` cache when it exists, else computed from [`fid_reference`] and cached when
/// `--stats` names a file), and with `--precision-recall` also (precision, recall).
fn fid_eval(a: &SampleArgs, images: &scorch::Tensor) -> Result<(f64, Option<(f64, f64)>), scorch::models::Error> {
    use scorch::models::metrics::frechet::FeatureStats;
    use scorch::models::metrics::inception::{
        fid_features, load_stats, save_stats, Fid, InceptionV3, FEATURES, INCEPTION_STATS,
    };
    use scorch::models::metrics::precision_recall;
    let weights =
        a.inception.as_deref().ok_or_else(|| scorch::models::Error::Config("FID needs --inception WEIGHTS".into()))?;
    let net = InceptionV3::load(weights)?;
    let generated = fid_features(&net, images, a.batch)?;
    // Reference features only when needed: no usable cache, or precision / recall asked for.
    let cached = a.stats.as_ref().filter(|p| p.exists());
    let ref_features = if cached.is_none() || a.precision_recall {
        let reference = fid_reference(a, images)?;
        eprintln!("Inception features of {} reference images …", reference.shape()[0]);
        Some(fid_features(&net, &reference, a.batch)?)
    } else {
        None
    };
    let stats = match (cached, &ref_features) {
        (Some(p), _) => {
            eprintln!("FID reference statistics from {}", p.display());
            load_stats(p, INCEPTION_STATS)?
        }
        (None, Some(f)) => {
            let stats = FeatureStats::from_rows(f, FEATURES)?;
            if let Some(p) = &a.stats {
                out_parent(p)?;
                save_stats(&stats, INCEPTION_STATS, p)?;
                eprintln!("cached the reference statistics in {}", p.display());
            }
            stats
        }
        (None, None) => unreachable!("reference features are computed when there is no cache"),
    };
    let pr = match (&ref_features, a.precision_recall) {
        (Some(r), true) => Some(precision_recall(r, &generated, FEATURES, 3)?),
        _ => None,
    };
    Ok((Fid::from_stats(net, stats, a.batch)?.distance_of(&generated)?, pr))
}

fn quickstart_cmd(
    out: &std::path::Path,
    recipe: Option<&std::path::Path>,
    set: &[String],
) -> Result<(), scorch::models::Error> {
    use scorch::models::sid::quickstart::quickstart;
    let r = quickstart(recipe, set, out)?;
    for n in &r.notes {
        println!("note: {n}");
    }
    println!("SiD: {} iterations ({} generator images) in {:.0} s", r.iterations, r.images, r.seconds);
    println!("samples: {} (each row: 8 teacher samples at NFE 35, then 8 one-step samples)", r.samples.display());
    if let (Some(t), Some(g)) = (r.fd_teacher, r.fd_generator) {
        println!("FD-FMNIST on {} samples each (lower is better):", r.eval_count);
        if let Some(i) = r.fd_initial {
            println!("  one-step generator before distillation: {i:8.3}");
        }
        println!("  teacher, Heun NFE 35:                   {t:8.3}");
        println!("  one-step generator after SiD:           {g:8.3}");
    }
    Ok(())
}

/// Prints a models-layer error and maps it to the exit code.
fn report(r: Result<(), scorch::models::Error>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn out_parent(path: &std::path::Path) -> Result<(), scorch::models::Error> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| scorch::models::Error::Output(format!("creating {}: {e}", parent.display())))?;
    }
    Ok(())
}

fn train_classifier_cmd(
    out: &std::path::Path,
    epochs: usize,
    seed: u64,
    data: Option<std::path::PathBuf>,
) -> Result<(), scorch::models::Error> {
    use scorch::models::data::idx::fmnist_dir;
    use scorch::models::metrics::fmnist_net::train_classifier;
    let dir = data.unwrap_or_else(fmnist_dir);
    out_parent(out)?;
    let r = train_classifier(&dir, out, epochs, seed, &mut |step, loss| {
        eprintln!("step {step}: loss {loss:.4}");
    })?;
    println!(
        "trained {} steps in {:.0} s; test accuracy {:.4}; weights {}",
        r.steps,
        r.seconds,
        r.test_accuracy,
        out.display()
    );
    Ok(())
}

/// CPU-vs-device parity of every op: forward values and input gradients in f32 (and bf16
/// for ops checked in low precision), on the same random samples, with device buffers
/// NaN-poisoned at allocation so an unwritten output element cannot pass. An op whose CUDA
/// kernel is not written reports `absent` (and counts as a failure).
fn check_ops_device(ops: &[OpInfo], samples: u64, device: Device) -> ExitCode {
    // Read once by the CUDA backend at its first allocation.
    std::env::set_var("SCORCH_CUDA_POISON", "1");
    println!("{:<28} {:>5} {:>12} {:>12} {:>9}  result", "op", "dtype", "fwd err/tol", "grad err/tol", "ms");
    let (mut failed, mut absent) = (0, 0);
    for o in ops {
        let dts: &[DType] = if o.low_precision { &[DType::F32, DType::BF16] } else { &[DType::F32] };
        for &dt in dts {
            let t0 = std::time::Instant::now();
            let mut worst = scorch::engine::registry::Parity::default();
            let mut err: Option<String> = None;
            for seed in 0..samples {
                match check_device_parity(o, seed, dt, device) {
                    Ok(p) => {
                        worst.forward = worst.forward.max(p.forward);
                        worst.grad = worst.grad.max(p.grad);
                    }
                    Err(e) => {
                        err = Some(e);
                        break;
                    }
                }
            }
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            let result = match &err {
                Some(e) if e.contains("has no CUDA kernel") => {
                    absent += 1;
                    "absent".to_string()
                }
                Some(e) => {
                    failed += 1;
                    format!("ERROR {e}")
                }
                None if worst.passed() => "ok".to_string(),
                None => {
                    failed += 1;
                    "FAIL".to_string()
                }
            };
            println!(
                "{:<28} {:>5} {:>12.3e} {:>12.3e} {:>9.1}  {}",
                o.name,
                dt.to_string(),
                worst.forward,
                worst.grad,
                ms,
                result
            );
        }
    }
    let total: usize = ops.iter().map(|o| if o.low_precision { 2 } else { 1 }).sum();
    println!(
        "{} passed, {} failed, {} absent (no CUDA kernel yet) on {device}",
        total - failed - absent,
        failed,
        absent
    );
    if failed == 0 && absent == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn cuda_check(device: &str) -> ExitCode {
    use scorch::cuda::{cuda_status, nvrtc_available, CudaDevice, CudaStatus};
    // NaN-fill new device buffers (read once by the backend), so an element a kernel
    // fails to write cannot pass a check.
    std::env::set_var("SCORCH_CUDA_POISON", "1");
    let ordinal = match Device::parse(device) {
        Ok(Device::Cuda(i)) => i,
        _ => {
            eprintln!("error: --device must be cuda or cuda:N, got {device:?}");
            return ExitCode::FAILURE;
        }
    };
    println!("nvrtc: {}", if nvrtc_available() { "found" } else { "not found" });
    match cuda_status() {
        CudaStatus::Available { devices } => println!("cuda: {devices} device(s)"),
        CudaStatus::Unavailable(why) => {
            println!("cuda: unavailable: {why}");
            return ExitCode::from(2);
        }
    }
    let dev = match CudaDevice::new(ordinal) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("device: {} ({}), driver {}", dev.name, dev.arch, dev.driver_version());
    match scorch::cuda::smoke::run_checks(&dev) {
        Ok(checks) => {
            println!("{:<44} {:>12} {:>10} {:>10}  result", "check", "max rel err", "tol", "ms");
            let mut failed = 0;
            for c in &checks {
                if !c.passed() {
                    failed += 1;
                }
                println!(
                    "{:<44} {:>12.3e} {:>10.1e} {:>10.3}  {}",
                    c.name,
                    c.max_err,
                    c.tol,
                    c.millis,
                    if c.passed() { "ok" } else { "FAIL" }
                );
            }
            println!("{} passed, {} failed", checks.len() - failed, failed);
            if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "-"
    }
}

/// FLOPs and bytes of the op's first sample, as an example of its cost formula.
fn example_cost(o: &OpInfo) -> (Vec<Vec<usize>>, f64, f64) {
    match sample_for(o, 0) {
        Ok(s) => {
            let shapes: Vec<Vec<usize>> = s.inputs.iter().map(|t| t.shape().to_vec()).collect();
            let (f, b) = (o.cost)(&shapes, &s.params);
            (shapes, f, b)
        }
        Err(_) => (vec![], 0.0, 0.0),
    }
}

fn print_table(ops: &[OpInfo]) {
    println!(
        "{:<22} {:<10} {:>4} {:>8} {:>9} {:>6} {:>5} {:>6}  example cost (FLOPs / bytes @ shapes)",
        "op", "family", "cpu", "backward", "gradcheck", "fused", "cuda", "parity"
    );
    for o in ops {
        let (shapes, f, b) = example_cost(o);
        println!(
            "{:<22} {:<10} {:>4} {:>8} {:>9} {:>6} {:>5} {:>6}  {f:.0} / {b:.0} @ {shapes:?}",
            o.name,
            o.family,
            "yes",
            yes(o.differentiable),
            yes(o.differentiable),
            yes(o.composite.is_some()),
            yes(o.cuda),
            "gpu run"
        );
    }
    let diff = ops.iter().filter(|o| o.differentiable).count();
    println!(
        "\n{} ops: {} with backward and gradcheck, {} fused with a composite, {} with a CUDA kernel (parity: `scorch ops --check --device cuda` on a GPU; last results in benches/RESULTS.md)",
        ops.len(),
        diff,
        ops.iter().filter(|o| o.composite.is_some()).count(),
        ops.iter().filter(|o| o.cuda).count()
    );
}

fn op_json(o: &OpInfo) -> String {
    let (shapes, f, b) = example_cost(o);
    serde_json::json!({
        "name": o.name,
        "family": o.family,
        "cpu": true,
        "backward": o.differentiable,
        "gradcheck": o.differentiable,
        "fused": o.composite.is_some(),
        "cuda": o.cuda,
        "parity": "scorch ops --check --device cuda",
        "cost_example": { "input_shapes": shapes, "flops": f, "bytes_f32": b },
    })
    .to_string()
}

fn check_ops(ops: &[OpInfo], samples: u64) -> ExitCode {
    let mut failed = 0;
    for o in ops {
        let mut errs = Vec::new();
        for seed in 0..samples {
            for dt in [DType::F64, DType::F32, DType::BF16] {
                if dt != DType::F64 && !o.low_precision {
                    continue;
                }
                if let Err(e) = check_forward(o, seed, dt) {
                    errs.push(e);
                }
            }
            if o.differentiable {
                if let Err(e) = check_grad(o, seed) {
                    errs.push(e);
                }
            }
            if let Err(e) = check_composite(o, seed) {
                errs.push(e);
            }
        }
        if errs.is_empty() {
            println!("ok    {}", o.name);
        } else {
            failed += 1;
            println!("FAIL  {}: {}", o.name, errs[0]);
        }
    }
    println!("{} passed, {} failed", ops.len() - failed, failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
