//! One-file training checkpoints: parameters, optimizer state and EMA weights.

use super::ema::EMA_PREFIX;
use super::{Ema, Optimizer, OPT_PREFIX};
use crate::error::{Error, Result};
use crate::params::{list, ParamStore};
use scorch_engine::safetensors_io::{self, RawTensor};
use std::collections::BTreeMap;
use std::path::Path;

/// Saves the parameters of `store` under their own names, the optimizer's state as
/// `opt.<param>.<slot>` and the EMA weights as `ema.<param>` into one safetensors file
/// (atomically). Parameter names starting with `opt.` or `ema.` are refused, since they
/// would be ambiguous.
pub fn save_checkpoint(
    path: impl AsRef<Path>,
    store: &ParamStore,
    optimizer: Option<&dyn Optimizer>,
    ema: Option<&Ema>,
) -> Result<()> {
    save_checkpoint_with(path, store, optimizer, ema, &[])
}

/// Prefix of the caller's extra entries (training step, RNG state, …).
pub const TRAIN_PREFIX: &str = "train.";

/// [`save_checkpoint`] plus the caller's `extra` tensors, whose names must start with
/// [`TRAIN_PREFIX`] (everything lands in the same file, written atomically).
pub fn save_checkpoint_with(
    path: impl AsRef<Path>,
    store: &ParamStore,
    optimizer: Option<&dyn Optimizer>,
    ema: Option<&Ema>,
    extra: &[RawTensor],
) -> Result<()> {
    let path = path.as_ref();
    if let Some(bad) = extra.iter().find(|r| !r.name.starts_with(TRAIN_PREFIX)) {
        return Err(Error::Checkpoint {
            path: path.to_path_buf(),
            detail: format!("extra entry `{}` must start with `{TRAIN_PREFIX}`", bad.name),
        });
    }
    let reserved: Vec<String> = store
        .names()
        .into_iter()
        .filter(|n| n.starts_with(OPT_PREFIX) || n.starts_with(EMA_PREFIX) || n.starts_with(TRAIN_PREFIX))
        .collect();
    if !reserved.is_empty() {
        return Err(Error::Checkpoint {
            path: path.to_path_buf(),
            detail: format!("parameter names starting with `{OPT_PREFIX}` or `{EMA_PREFIX}` clash with the optimizer / EMA entries: {}", list(&reserved)),
        });
    }
    let mut tensors = store.to_raw()?;
    if let Some(opt) = optimizer {
        tensors.extend(opt.state_tensors()?);
    }
    if let Some(ema) = ema {
        tensors.extend(ema.state_tensors()?);
    }
    tensors.extend(extra.iter().cloned());
    let meta = BTreeMap::from([("format".to_string(), "scorch.checkpoint".to_string())]);
    safetensors_io::save(path, &tensors, Some(&meta))?;
    Ok(())
}

/// Loads a file written by [`save_checkpoint`]: every parameter (strictly, see
/// [`ParamStore::load`]), and the optimizer state and EMA weights when asked for. A file
/// with optimizer or EMA entries that are not asked for is an error, so a checkpoint is
/// not half-restored by accident. Each part (parameters, optimizer, EMA) is validated
/// before it is written, in that order.
pub fn load_checkpoint(
    path: impl AsRef<Path>,
    store: &ParamStore,
    optimizer: Option<&mut dyn Optimizer>,
    ema: Option<&mut Ema>,
) -> Result<()> {
    let extra = load_checkpoint_with(path.as_ref(), store, optimizer, ema)?;
    if let Some(first) = extra.first() {
        return Err(Error::Checkpoint {
            path: path.as_ref().to_path_buf(),
            detail: format!("holds training state (e.g. `{}`); load it with load_checkpoint_with", first.name),
        });
    }
    Ok(())
}

/// [`load_checkpoint`] that also returns the [`TRAIN_PREFIX`] entries saved by
/// [`save_checkpoint_with`].
pub fn load_checkpoint_with(
    path: impl AsRef<Path>,
    store: &ParamStore,
    optimizer: Option<&mut dyn Optimizer>,
    ema: Option<&mut Ema>,
) -> Result<Vec<RawTensor>> {
    let path = path.as_ref();
    let raw = safetensors_io::load(path)?;
    let (extra, raw): (Vec<RawTensor>, Vec<RawTensor>) =
        raw.into_iter().partition(|r| r.name.starts_with(TRAIN_PREFIX));
    let (opt_part, rest): (Vec<RawTensor>, Vec<RawTensor>) =
        raw.into_iter().partition(|r| r.name.starts_with(OPT_PREFIX));
    let (ema_part, params): (Vec<RawTensor>, Vec<RawTensor>) =
        rest.into_iter().partition(|r| r.name.starts_with(EMA_PREFIX));
    let unasked = |part: &[RawTensor], what: &str| Error::Checkpoint {
        path: path.to_path_buf(),
        detail: format!(
            "holds {what} ({} tensors, e.g. `{}`) but none was given to load it into",
            part.len(),
            part[0].name
        ),
    };
    if optimizer.is_none() && !opt_part.is_empty() {
        return Err(unasked(&opt_part, "optimizer state"));
    }
    if ema.is_none() && !ema_part.is_empty() {
        return Err(unasked(&ema_part, "EMA weights"));
    }
    // Each part is checked in full before it is written; the parameters go first. A
    // mismatch in the optimizer or EMA part is reported after the parameters are loaded.
    store.load_raw(&params, path, true)?;
    if let Some(opt) = optimizer {
        opt.load_state_tensors(&opt_part, path)?;
    }
    if let Some(ema) = ema {
        ema.load_state_tensors(&ema_part, path)?;
    }
    Ok(extra)
}
