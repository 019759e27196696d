//! Fashion-MNIST classifiers trained with Adam: the proof that layers, autograd, the fused
//! optimizer and the data pipeline work together.
//!
//! ```text
//! cargo run --release --example fmnist -- --model mlp --epochs 5
//! cargo run --release --example fmnist -- --model cnn --epochs 3
//! ```
//!
//! Prints the mean training loss, test accuracy and wall time of every epoch. The data
//! directory defaults to `$SCORCH_FMNIST_DIR` or `/usr/share/datasets/fashion-mnist`.

use clap::{Parser, ValueEnum};
use scorch::engine::{no_grad, DType, Tensor};
use scorch::models::data::fmnist_tensor::{load_fmnist_tensors, PixelRange, TensorDataset};
use scorch::models::data::idx::{fmnist_dir, Split};
use scorch::models::nn::{Conv2d, Conv2dConfig, Linear, Module};
use scorch::models::optim::{save_checkpoint, Adam, AdamConfig, Optimizer};
use scorch::models::params::{ParamPath, ParamStore};
use scorch::models::Result;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Model {
    /// 784-256-10 with ReLU.
    Mlp,
    /// Two 3×3 conv + max-pool stages (32, 64 channels), then 3136-128-10.
    Cnn,
}

/// Train a Fashion-MNIST classifier with Adam and report test accuracy per epoch.
#[derive(Parser, Debug)]
struct Args {
    /// Which network.
    #[arg(long, value_enum, default_value = "mlp")]
    model: Model,
    /// Passes over the training set.
    #[arg(long, default_value_t = 5)]
    epochs: u64,
    /// Mini-batch size.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Seed of the initialisation and of the batch order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Use only the first N training images.
    #[arg(long)]
    train_limit: Option<usize>,
    /// Dataset directory (IDX files, gzipped or not).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Write parameters and optimizer state here after training.
    #[arg(long)]
    save: Option<PathBuf>,
}

/// A two-layer perceptron on flattened images.
struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    fn new(p: &ParamPath) -> Result<Mlp> {
        Ok(Mlp { fc1: Linear::new(&p.pp("fc1"), 784, 256)?, fc2: Linear::new(&p.pp("fc2"), 256, 10)? })
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.flatten(1, -1)?;
        self.fc2.forward(&self.fc1.forward(&x)?.relu()?)
    }
}

/// conv(1→32) → ReLU → max-pool → conv(32→64) → ReLU → max-pool → linear(3136→128) → ReLU → linear(128→10).
struct Cnn {
    conv1: Conv2d,
    conv2: Conv2d,
    fc1: Linear,
    fc2: Linear,
}

impl Cnn {
    fn new(p: &ParamPath) -> Result<Cnn> {
        Ok(Cnn {
            conv1: Conv2d::new(&p.pp("conv1"), 1, 32, 3, Conv2dConfig::same(3))?,
            conv2: Conv2d::new(&p.pp("conv2"), 32, 64, 3, Conv2dConfig::same(3))?,
            fc1: Linear::new(&p.pp("fc1"), 64 * 7 * 7, 128)?,
            fc2: Linear::new(&p.pp("fc2"), 128, 10)?,
        })
    }
}

impl Module for Cnn {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.conv1.forward(x)?.relu()?.max_pool2d(2, 2, 0)?;
        let h = self.conv2.forward(&h)?.relu()?.max_pool2d(2, 2, 0)?;
        self.fc2.forward(&self.fc1.forward(&h.flatten(1, -1)?)?.relu()?)
    }
}

/// Fraction of `data` classified correctly, in evaluation mode and without a graph.
fn accuracy(net: &dyn Module, store: &ParamStore, data: &TensorDataset) -> Result<f64> {
    store.set_training(false);
    let _ng = no_grad();
    let mut correct = 0usize;
    for batch in data.batches(1000, None, 0, false)? {
        let (x, y) = batch?;
        let hits = net.forward(&x)?.argmax(1, false)?.eq(&y)?;
        correct += hits.to_vec_f64()?.iter().filter(|&&h| h != 0.0).count();
    }
    store.set_training(true);
    Ok(correct as f64 / data.len().max(1) as f64)
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("fmnist: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    let dir = args.data.clone().unwrap_or_else(fmnist_dir);
    let mut train = load_fmnist_tensors(&dir, Split::Train, PixelRange::ZeroOne)?;
    if let Some(n) = args.train_limit {
        train = train.take(n)?;
    }
    let test = load_fmnist_tensors(&dir, Split::Test, PixelRange::ZeroOne)?;

    let store = ParamStore::new(DType::F32, args.seed);
    let net: Box<dyn Module> = match args.model {
        Model::Mlp => Box::new(Mlp::new(&store.root())?),
        Model::Cnn => Box::new(Cnn::new(&store.root())?),
    };
    let mut opt = Adam::new(store.named_parameters(), AdamConfig { lr: args.lr, ..Default::default() })?;
    println!(
        "{:?}: {} parameters; {} train / {} test images; batch {}, Adam lr {}, {} rayon threads",
        args.model,
        store.num_elements(),
        train.len(),
        test.len(),
        args.batch_size,
        args.lr,
        rayon::current_num_threads()
    );

    let start = Instant::now();
    for epoch in 0..args.epochs {
        let epoch_start = Instant::now();
        let (mut loss_sum, mut batches) = (0.0, 0usize);
        for batch in train.batches(args.batch_size, Some(args.seed), epoch, false)? {
            let (x, y) = batch?;
            opt.zero_grad();
            let loss = net.forward(&x)?.cross_entropy(&y, 0.0)?;
            loss.backward()?;
            opt.step()?;
            loss_sum += loss.item()?;
            batches += 1;
        }
        let train_time = epoch_start.elapsed().as_secs_f64();
        let acc = accuracy(net.as_ref(), &store, &test)?;
        println!(
            "epoch {:>2}: train loss {:.4}  test accuracy {:.2}%  ({:.1} s train, {:.1} s total)",
            epoch + 1,
            loss_sum / batches.max(1) as f64,
            100.0 * acc,
            train_time,
            start.elapsed().as_secs_f64()
        );
    }
    if let Some(path) = &args.save {
        save_checkpoint(path, &store, Some(&opt), None)?;
        println!("saved parameters and optimizer state to {}", path.display());
    }
    Ok(())
}
