//! The `scorch` command line.

use clap::{Parser, Subcommand};
use scorch::engine::registry::{check_composite, check_forward, check_grad, registry, sample_for, OpInfo};
use scorch::{DType, Device};
use std::process::ExitCode;

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
        Cmd::Train { what: TrainCmd::Edm(a) } => train_edm(a),
    }
}

fn train_edm(a: TrainArgs) -> scorch::Result<ExitCode> {
    use scorch::models::edm::train::{train_edm, EdmRecipe};
    use scorch::models::train::load_recipe;
    let device = match &a.device {
        Some(d) => Device::parse(d)?,
        None => Device::from_env()?,
    };
    device.check_available()?;
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

fn cuda_check(device: &str) -> ExitCode {
    use scorch::cuda::{cuda_status, nvrtc_available, CudaDevice, CudaStatus};
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
            yes(o.cuda)
        );
    }
    let diff = ops.iter().filter(|o| o.differentiable).count();
    println!("\n{} ops: {} with backward and gradcheck, {} fused with a composite, {} dispatched to CUDA (CUDA kernels are not wired into the engine yet; see `scorch cuda-check`)", ops.len(), diff, ops.iter().filter(|o| o.composite.is_some()).count(), ops.iter().filter(|o| o.cuda).count());
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
        "parity": o.cuda,
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
