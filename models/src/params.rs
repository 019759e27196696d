//! Named parameters: a [`ParamStore`] owns every trainable tensor of a model under a
//! dotted name, and a [`ParamPath`] hands them out with a path prefix (like candle's
//! `VarBuilder`), so the Rust structure of a model mirrors its checkpoint names:
//!
//! ```
//! use scorch_models::nn::{Linear, Module};
//! use scorch_models::params::ParamStore;
//! use scorch_engine::{DType, Tensor};
//!
//! let store = ParamStore::new(DType::F32, 0);
//! let root = store.root();
//! let fc = Linear::new(&root.pp("head").pp("fc"), 4, 2)?;
//! assert_eq!(store.names(), ["head.fc.weight", "head.fc.bias"]);
//! let y = fc.forward(&Tensor::zeros(&[3, 4], DType::F32)?)?;
//! assert_eq!(y.shape(), [3, 2]);
//! # Ok::<(), scorch_models::Error>(())
//! ```
//!
//! The store iterates in creation order (the order a model's constructor asks for its
//! parameters, as PyTorch's `named_parameters`), saves to and loads from safetensors with
//! every name, shape and dtype checked, and carries the train / eval flag that layers
//! such as [`crate::nn::Dropout`] read.

use crate::error::{Error, Result};
use scorch_engine::safetensors_io::{self, RawTensor};
use scorch_engine::{no_grad, DType, Generator, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// How a new parameter is filled. The fan-based schemes compute `fan_in` / `fan_out` from
/// the shape as PyTorch does: `fan_in = shape[1] · receptive field`, `fan_out = shape[0] ·
/// receptive field`, the receptive field being the product of `shape[2..]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// All zeros.
    Zeros,
    /// All ones.
    Ones,
    /// Every element `v`.
    Const(f64),
    /// Uniform in `[lo, hi)`.
    Uniform {
        /// Lower bound.
        lo: f64,
        /// Upper bound.
        hi: f64,
    },
    /// Normal with the given mean and standard deviation.
    Normal {
        /// Mean.
        mean: f64,
        /// Standard deviation.
        std: f64,
    },
    /// `torch.nn.init.kaiming_uniform_(w, a)` (fan_in mode, leaky-ReLU gain):
    /// U(±gain·√(3/fan_in)) with gain = √(2/(1+a²)).
    KaimingUniform {
        /// Negative slope of the rectifier that follows.
        a: f64,
    },
    /// `torch.nn.init.kaiming_normal_(w, a)` (fan_in mode): N(0, gain²/fan_in).
    KaimingNormal {
        /// Negative slope of the rectifier that follows.
        a: f64,
    },
    /// `torch.nn.init.xavier_uniform_(w, gain)`: U(±gain·√(6/(fan_in+fan_out))).
    XavierUniform {
        /// Scale factor.
        gain: f64,
    },
}

impl Init {
    /// PyTorch's default for `nn.Linear` / `nn.Conv2d` weights: kaiming uniform with a = √5,
    /// which is U(±1/√fan_in).
    pub fn pytorch_weight() -> Init {
        Init::KaimingUniform { a: 5f64.sqrt() }
    }

    /// PyTorch's default for `nn.Linear` / `nn.Conv2d` biases: U(±1/√fan_in), `fan_in`
    /// being the weight's.
    pub fn pytorch_bias(fan_in: usize) -> Init {
        let bound = if fan_in > 0 { 1.0 / (fan_in as f64).sqrt() } else { 0.0 };
        Init::Uniform { lo: -bound, hi: bound }
    }

    /// `(fan_in, fan_out)` of a weight shape (PyTorch's `_calculate_fan_in_and_fan_out`,
    /// which refuses fewer than 2 dims; here a 1-D shape `[n]` gives `(n, n)` and a 0-d
    /// one `(1, 1)`).
    pub fn fans(shape: &[usize]) -> (usize, usize) {
        match shape.len() {
            0 => (1, 1),
            1 => (shape[0], shape[0]),
            _ => {
                let receptive: usize = shape[2..].iter().product();
                (shape[1] * receptive, shape[0] * receptive)
            }
        }
    }

    /// A new tensor of `shape` and `dtype` filled by this scheme, drawing from `gen`.
    pub fn tensor(&self, shape: &[usize], dtype: DType, gen: &Generator) -> Result<Tensor> {
        let (fan_in, fan_out) = Init::fans(shape);
        let leaky_gain = |a: f64| (2.0 / (1.0 + a * a)).sqrt();
        let uniform =
            |bound: f64| -> Result<Tensor> { Ok(Tensor::rand(shape, dtype, gen)?.affine(2.0 * bound, -bound)?) };
        let normal =
            |mean: f64, std: f64| -> Result<Tensor> { Ok(Tensor::randn(shape, dtype, gen)?.affine(std, mean)?) };
        let per_fan = |fan: usize| if fan > 0 { 1.0 / fan as f64 } else { 0.0 };
        match *self {
            Init::Zeros => Ok(Tensor::zeros(shape, dtype)?),
            Init::Ones => Ok(Tensor::ones(shape, dtype)?),
            Init::Const(v) => Ok(Tensor::full(shape, v, dtype)?),
            Init::Uniform { lo, hi } => {
                if lo.is_nan() || hi.is_nan() || lo > hi {
                    return Err(Error::Config(format!("Init::Uniform needs lo ≤ hi, got [{lo}, {hi})")));
                }
                Ok(Tensor::rand(shape, dtype, gen)?.affine(hi - lo, lo)?)
            }
            Init::Normal { mean, std } => normal(mean, std),
            Init::KaimingUniform { a } => uniform(leaky_gain(a) * (3.0 * per_fan(fan_in)).sqrt()),
            Init::KaimingNormal { a } => normal(0.0, leaky_gain(a) * per_fan(fan_in).sqrt()),
            Init::XavierUniform { gain } => uniform(gain * (6.0 * per_fan(fan_in + fan_out)).sqrt()),
        }
    }
}

/// The shared train / eval switch of a store, held by layers whose behaviour depends on it.
#[derive(Clone, Debug)]
pub struct TrainFlag(Arc<AtomicBool>);

impl TrainFlag {
    /// Whether the model is in training mode.
    pub fn is_training(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Parameters in creation order with a name index.
#[derive(Default)]
struct Entries {
    order: Vec<(String, Tensor)>,
    index: HashMap<String, usize>,
}

struct StoreInner {
    entries: Mutex<Entries>,
    dtype: DType,
    training: TrainFlag,
    init_rng: Generator,
    rng: Arc<Generator>,
}

/// What a partial load left out (see [`ParamStore::load_partial`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Parameters of the store the file does not have (left as they were).
    pub missing: Vec<String>,
    /// Tensors of the file the store does not have (ignored).
    pub unexpected: Vec<String>,
}

/// A model's named parameters. Cloning gives another handle to the same store.
#[derive(Clone)]
pub struct ParamStore(Arc<StoreInner>);

impl std::fmt::Debug for ParamStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = self.entries();
        f.debug_struct("ParamStore")
            .field("dtype", &self.0.dtype)
            .field("params", &e.order.len())
            .field("elements", &e.order.iter().map(|(_, t)| t.numel()).sum::<usize>())
            .field("training", &self.is_training())
            .finish()
    }
}

impl ParamStore {
    /// An empty store creating parameters of `dtype`, initialised from a Philox stream
    /// seeded with `seed` (so the same model code and seed give the same weights). The
    /// store also owns a second generator, [`ParamStore::rng`], for dropout masks and other
    /// draws made while running, so those never shift the initialisation stream. Starts in
    /// training mode.
    pub fn new(dtype: DType, seed: u64) -> ParamStore {
        // An arbitrary odd constant: a different Philox key gives an independent stream.
        const RUNTIME_STREAM: u64 = 0x9E37_79B9_7F4A_7C15;
        ParamStore(Arc::new(StoreInner {
            entries: Mutex::new(Entries::default()),
            dtype,
            training: TrainFlag(Arc::new(AtomicBool::new(true))),
            init_rng: Generator::new(seed),
            rng: Arc::new(Generator::new(seed ^ RUNTIME_STREAM)),
        }))
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        self.0.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The builder at the root of the name hierarchy.
    pub fn root(&self) -> ParamPath {
        ParamPath { store: self.clone(), prefix: String::new() }
    }

    /// The dtype new parameters get.
    pub fn dtype(&self) -> DType {
        self.0.dtype
    }

    /// Number of parameter tensors.
    pub fn len(&self) -> usize {
        self.entries().order.len()
    }

    /// Whether the store holds no parameters.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total number of scalar parameters.
    pub fn num_elements(&self) -> usize {
        self.entries().order.iter().map(|(_, t)| t.numel()).sum()
    }

    /// Names in creation order.
    pub fn names(&self) -> Vec<String> {
        self.entries().order.iter().map(|(n, _)| n.clone()).collect()
    }

    /// `(name, tensor)` pairs in creation order. The tensors are handles to the parameters
    /// themselves (what optimizers update).
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.entries().order.clone()
    }

    /// The parameters whose name is `prefix` or starts with `prefix.` (e.g. one sub-network
    /// that gets its own optimizer).
    pub fn named_parameters_under(&self, prefix: &str) -> Vec<(String, Tensor)> {
        self.entries()
            .order
            .iter()
            .filter(|(n, _)| {
                prefix.is_empty() || n == prefix || n.strip_prefix(prefix).is_some_and(|r| r.starts_with('.'))
            })
            .cloned()
            .collect()
    }

    /// The parameter tensors in creation order.
    pub fn parameters(&self) -> Vec<Tensor> {
        self.entries().order.iter().map(|(_, t)| t.clone()).collect()
    }

    /// The parameter called `name`, if any.
    pub fn get(&self, name: &str) -> Option<Tensor> {
        let e = self.entries();
        e.index.get(name).map(|&i| e.order[i].1.clone())
    }

    /// Clears every parameter's gradient.
    pub fn zero_grad(&self) {
        for (_, t) in self.entries().order.iter() {
            t.zero_grad();
        }
    }

    /// Switches to training (`true`) or evaluation (`false`) mode.
    pub fn set_training(&self, on: bool) {
        self.0.training.0.store(on, Ordering::Relaxed);
    }

    /// Whether the store is in training mode.
    pub fn is_training(&self) -> bool {
        self.0.training.is_training()
    }

    /// The shared train / eval flag (for layers that behave differently in each mode).
    pub fn train_flag(&self) -> TrainFlag {
        self.0.training.clone()
    }

    /// The generator for random draws made while running the model (dropout masks).
    pub fn rng(&self) -> Arc<Generator> {
        self.0.rng.clone()
    }

    /// The parameter `name` of `shape`, created with `init` if the store does not have it.
    fn get_or_init(&self, name: String, shape: &[usize], init: Option<Init>) -> Result<Tensor> {
        let mut e = self.entries();
        if let Some(&i) = e.index.get(&name) {
            let t = &e.order[i].1;
            if t.shape() != shape || t.dtype() != self.0.dtype {
                return Err(Error::Param {
                    name,
                    detail: format!(
                        "requested as {} {shape:?} but the store holds {} {:?}",
                        self.0.dtype,
                        t.dtype(),
                        t.shape()
                    ),
                });
            }
            return Ok(t.clone());
        }
        let Some(init) = init else {
            return Err(Error::Param {
                name,
                detail: format!("not in the store (requested as {} {shape:?})", self.0.dtype),
            });
        };
        let t = {
            let _g = no_grad();
            init.tensor(shape, self.0.dtype, &self.0.init_rng)?
        };
        // Made under no_grad, so a leaf with its own storage.
        let t = t.requires_grad_(true)?;
        let i = e.order.len();
        e.order.push((name.clone(), t.clone()));
        e.index.insert(name, i);
        Ok(t)
    }

    /// Every parameter as a [`RawTensor`] (contiguous little-endian bytes), in creation order.
    pub fn to_raw(&self) -> Result<Vec<RawTensor>> {
        self.named_parameters()
            .into_iter()
            .map(|(name, t)| Ok(RawTensor::new(name, t.dtype(), t.shape().to_vec(), t.to_bytes()?)))
            .collect()
    }

    /// Saves every parameter to a safetensors file (atomically: a crash leaves the old file).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let meta = BTreeMap::from([("format".to_string(), "scorch.params".to_string())]);
        safetensors_io::save(path.as_ref(), &self.to_raw()?, Some(&meta))?;
        Ok(())
    }

    /// Loads a safetensors file written by [`ParamStore::save`] (or PyTorch, with the same
    /// names): every parameter must be in the file and every tensor of the file must be a
    /// parameter, each with the parameter's shape and dtype. Nothing is changed unless all
    /// of them fit; the error names every tensor that does not.
    pub fn load(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let raw = safetensors_io::load(path)?;
        self.load_raw(&raw, path, true).map(|_| ())
    }

    /// Like [`ParamStore::load`] but tolerates missing and unexpected names (PyTorch's
    /// `strict=False`): loads what matches and reports the rest. A tensor present in both
    /// with a different shape or dtype is still an error.
    pub fn load_partial(&self, path: impl AsRef<Path>) -> Result<LoadReport> {
        let path = path.as_ref();
        let raw = safetensors_io::load(path)?;
        self.load_raw(&raw, path, false)
    }

    /// Copies `raw` tensors into the parameters of the same names. `path` only labels
    /// errors. With `strict`, missing or unexpected names are errors.
    pub fn load_raw(&self, raw: &[RawTensor], path: &Path, strict: bool) -> Result<LoadReport> {
        let params = self.named_parameters();
        let by_name: HashMap<&str, &RawTensor> = raw.iter().map(|r| (r.name.as_str(), r)).collect();
        let mut report = LoadReport::default();
        let mut problems = Vec::new();
        let mut updates = Vec::new();
        for (name, t) in &params {
            match by_name.get(name.as_str()) {
                None => report.missing.push(name.clone()),
                Some(r) if r.shape != t.shape() || r.dtype != t.dtype() => problems.push(format!(
                    "`{name}` is {} {:?} in the file but {} {:?} in the model",
                    r.dtype,
                    r.shape,
                    t.dtype(),
                    t.shape()
                )),
                Some(r) => updates.push((t, *r)),
            }
        }
        let known: std::collections::HashSet<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
        report.unexpected = raw.iter().filter(|r| !known.contains(r.name.as_str())).map(|r| r.name.clone()).collect();
        if strict {
            if !report.missing.is_empty() {
                problems.push(format!("missing from the file: {}", list(&report.missing)));
            }
            if !report.unexpected.is_empty() {
                problems.push(format!("not parameters of the model: {}", list(&report.unexpected)));
            }
        }
        if !problems.is_empty() {
            return Err(Error::Checkpoint { path: path.to_path_buf(), detail: problems.join("; ") });
        }
        let _g = no_grad();
        for (t, r) in updates {
            t.assign(&Tensor::from_bytes(&r.data, r.dtype, &r.shape)?)?;
        }
        Ok(report)
    }
}

/// `a, b, c` (at most 10 names, then a count).
pub(crate) fn list(names: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut s = names.iter().take(SHOWN).map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    s
}

/// A position in a store's name hierarchy: asks the store for parameters under a prefix.
#[derive(Clone, Debug)]
pub struct ParamPath {
    store: ParamStore,
    prefix: String,
}

impl ParamPath {
    /// The path one level down: `root.pp("down.0").pp("conv")` names `down.0.conv.*`.
    /// Dots inside `name` are fine (they simply add levels).
    pub fn pp(&self, name: impl AsRef<str>) -> ParamPath {
        ParamPath { store: self.store.clone(), prefix: self.join(name.as_ref()) }
    }

    /// The dotted prefix of this path (empty at the root).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full name of `name` under this path.
    pub fn join(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// The store this path belongs to.
    pub fn store(&self) -> &ParamStore {
        &self.store
    }

    /// The parameter `name` under this path, created with `init` if new. An existing one
    /// (e.g. loaded, or asked for by a layer that shares it) is returned when its shape
    /// and dtype agree, otherwise it is an error.
    pub fn get_or_init(&self, name: &str, shape: &[usize], init: Init) -> Result<Tensor> {
        let full = self.checked_name(name)?;
        self.store.get_or_init(full, shape, Some(init))
    }

    /// The existing parameter `name` under this path, which must have `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let full = self.checked_name(name)?;
        self.store.get_or_init(full, shape, None)
    }

    /// Whether the store is in training mode.
    pub fn is_training(&self) -> bool {
        self.store.is_training()
    }

    fn checked_name(&self, name: &str) -> Result<String> {
        let full = self.join(name);
        if full.split('.').any(str::is_empty) {
            return Err(Error::Param { name: full, detail: "names are dot-separated non-empty parts".into() });
        }
        Ok(full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fans_follow_pytorch() {
        assert_eq!(Init::fans(&[256, 784]), (784, 256));
        assert_eq!(Init::fans(&[32, 16, 3, 3]), (144, 288));
        assert_eq!(Init::fans(&[7]), (7, 7));
    }

    #[test]
    fn names_nest_and_must_be_well_formed() -> Result<()> {
        let store = ParamStore::new(DType::F32, 1);
        let p = store.root().pp("down.0").pp("conv");
        assert_eq!(p.join("weight"), "down.0.conv.weight");
        assert!(p.get_or_init("", &[1], Init::Zeros).is_err());
        assert!(store.root().pp("a..b").get_or_init("w", &[1], Init::Zeros).is_err());
        let w = p.get_or_init("weight", &[2, 3], Init::Ones)?;
        assert!(w.requires_grad() && w.is_leaf());
        // The same name again is the same tensor; another shape is an error naming it.
        assert!(p.get_or_init("weight", &[2, 3], Init::Zeros)?.same_storage(&w));
        let err = p.get_or_init("weight", &[3, 2], Init::Zeros).unwrap_err().to_string();
        assert!(err.contains("down.0.conv.weight") && err.contains("[3, 2]"), "{err}");
        assert!(p.get("bias", &[2]).is_err());
        Ok(())
    }

    #[test]
    fn named_parameters_under_matches_whole_components() -> Result<()> {
        let store = ParamStore::new(DType::F32, 1);
        for n in ["enc.w", "enc2.w", "enc.sub.b", "dec.w"] {
            store.root().get_or_init(n, &[1], Init::Zeros)?;
        }
        let names: Vec<String> = store.named_parameters_under("enc").into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["enc.w", "enc.sub.b"]);
        assert_eq!(store.named_parameters_under("").len(), 4);
        Ok(())
    }
}
