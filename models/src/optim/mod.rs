//! Optimizers, weight averaging and gradient clipping.
//!
//! - [`Adam`] (Adam and AdamW) and [`Sgd`] update each parameter with one fused, in-place
//!   kernel from `scorch_ops::cpu::optim` (a single pass over parameter, gradient and
//!   state), reproducing `torch.optim` step for step.
//! - [`Ema`] keeps an exponential moving average of parameters (EDM's half-life rule).
//! - [`clip_grad_norm`] rescales gradients to a maximum global norm.
//! - [`save_checkpoint`] / [`load_checkpoint`] put parameters, optimizer state
//!   (`opt.<param>.<slot>`) and EMA weights (`ema.<param>`) in one safetensors file, so a
//!   resumed run continues exactly where the saved one stopped.

mod adam;
mod checkpoint;
mod clip;
mod ema;
mod sgd;

pub use adam::{Adam, AdamConfig};
pub use checkpoint::{load_checkpoint, load_checkpoint_with, save_checkpoint, save_checkpoint_with, TRAIN_PREFIX};
pub use clip::{clip_grad_norm, clip_grad_value, grad_nan_to_num};
pub use ema::{Ema, EMA_PREFIX};
pub use sgd::{Sgd, SgdConfig};

use crate::error::{Error, Result};
use crate::params::list;
use scorch_engine::safetensors_io::{self, RawTensor};
use scorch_engine::{no_grad, DType, Tensor};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::path::Path;

/// The name prefix of optimizer state in checkpoints.
pub const OPT_PREFIX: &str = "opt.";

/// A first-order optimizer over a fixed list of named parameters.
pub trait Optimizer {
    /// Applies one update from the parameters' current gradients; parameters without a
    /// gradient are skipped (their state does not advance), as in PyTorch.
    fn step(&mut self) -> Result<()>;

    /// Clears the gradients of the optimized parameters.
    fn zero_grad(&self);

    /// The learning rate.
    fn lr(&self) -> f64;

    /// Changes the learning rate (for schedules).
    fn set_lr(&mut self, lr: f64);

    /// The state as tensors named `opt.<param name>.<slot>`.
    fn state_tensors(&self) -> Result<Vec<RawTensor>>;

    /// Restores state saved by [`Optimizer::state_tensors`]. Tensors not starting with
    /// `opt.` are ignored (so a whole checkpoint can be passed); among the `opt.` ones,
    /// every expected name must be present with the right shape and dtype and no other may
    /// be. Nothing changes unless all fit. `path` only labels errors.
    fn load_state_tensors(&mut self, raw: &[RawTensor], path: &Path) -> Result<()>;

    /// Saves the state to its own safetensors file.
    fn save(&self, path: &Path) -> Result<()> {
        let meta = BTreeMap::from([("format".to_string(), "scorch.optimizer".to_string())]);
        safetensors_io::save(path, &self.state_tensors()?, Some(&meta))?;
        Ok(())
    }

    /// Loads state saved by [`Optimizer::save`].
    fn load(&mut self, path: &Path) -> Result<()> {
        let raw = safetensors_io::load(path)?;
        self.load_state_tensors(&raw, path)
    }
}

/// Checks a parameter list: unique names, leaf tensors requiring grad, f32 or f64,
/// contiguous (the fused kernels update one contiguous range).
fn check_params(opt: &str, params: impl IntoIterator<Item = (String, Tensor)>) -> Result<Vec<(String, Tensor)>> {
    let params: Vec<(String, Tensor)> = params.into_iter().collect();
    let mut seen = HashSet::new();
    for (name, t) in &params {
        let bad = |detail: String| Err(Error::Param { name: name.clone(), detail: format!("{opt}: {detail}") });
        if !seen.insert(name.as_str()) {
            return bad("listed twice".into());
        }
        if !t.is_leaf() || !t.requires_grad() {
            return bad("must be a leaf tensor that requires grad".into());
        }
        if !matches!(t.dtype(), DType::F32 | DType::F64) {
            return bad(format!("{} parameters are not supported (f32 or f64)", t.dtype()));
        }
        if !t.is_contiguous() {
            return bad(format!("must be contiguous (shape {:?}, strides {:?})", t.shape(), t.strides()));
        }
    }
    Ok(params)
}

/// The element range a contiguous tensor covers in its buffer.
fn span(t: &Tensor) -> Range<usize> {
    let o = t.layout().offset;
    o..o + t.numel()
}

/// The gradient of `p` as a contiguous tensor whose buffer is not shared with any of
/// `avoid` (the buffers the update writes), or `None` if `p` has no gradient.
fn grad_for_update(p: &Tensor, avoid: &[&Tensor]) -> Result<Option<Tensor>> {
    let Some(g) = p.grad() else { return Ok(None) };
    if g.is_contiguous() && !avoid.iter().any(|t| t.same_storage(&g)) {
        return Ok(Some(g));
    }
    let _ng = no_grad();
    Ok(Some(g.copy()?))
}

/// A zero tensor like `t` with its own buffer (optimizer state).
fn zeros_like(t: &Tensor) -> Result<Tensor> {
    Ok(Tensor::zeros(t.shape(), t.dtype())?)
}

/// Expected state tensors of one slot: `(full name, shape, dtype, destination)`.
type Slot<'a> = (String, Vec<usize>, DType, &'a Tensor);

/// Validates `raw` (the `opt.` part) against the expected slots, then copies them in.
fn load_slots(raw: &[RawTensor], slots: &[Slot], path: &Path) -> Result<()> {
    let by_name: HashMap<&str, &RawTensor> =
        raw.iter().filter(|r| r.name.starts_with(OPT_PREFIX)).map(|r| (r.name.as_str(), r)).collect();
    let mut problems = Vec::new();
    let mut missing = Vec::new();
    for (name, shape, dtype, _) in slots {
        match by_name.get(name.as_str()) {
            None => missing.push(name.clone()),
            Some(r) if &r.shape != shape || r.dtype != *dtype => {
                problems.push(format!("`{name}` is {} {:?} in the file, expected {dtype} {shape:?}", r.dtype, r.shape))
            }
            Some(_) => {}
        }
    }
    let expected: HashSet<&str> = slots.iter().map(|s| s.0.as_str()).collect();
    let mut unexpected: Vec<String> =
        by_name.keys().filter(|n| !expected.contains(*n)).map(|n| n.to_string()).collect();
    unexpected.sort();
    if !missing.is_empty() {
        problems.push(format!("optimizer state missing from the file: {}", list(&missing)));
    }
    if !unexpected.is_empty() {
        problems.push(format!("optimizer state for no parameter of this optimizer: {}", list(&unexpected)));
    }
    if !problems.is_empty() {
        return Err(Error::Checkpoint { path: path.to_path_buf(), detail: problems.join("; ") });
    }
    let _ng = no_grad();
    for (name, shape, dtype, dst) in slots {
        let r = by_name[name.as_str()];
        dst.assign(&Tensor::from_bytes(&r.data, *dtype, shape)?)?;
    }
    Ok(())
}

/// A step counter as a 0-d i64 tensor.
fn step_tensor(name: String, step: u64) -> RawTensor {
    RawTensor::new(name, DType::I64, vec![], (step as i64).to_le_bytes().to_vec())
}

/// Reads a 0-d i64 step counter back (after [`load_slots`] checked it).
fn read_step(t: &Tensor) -> Result<u64> {
    let s = t.item()?;
    if s < 0.0 {
        return Err(Error::Config(format!("negative optimizer step count {s}")));
    }
    Ok(s as u64)
}
