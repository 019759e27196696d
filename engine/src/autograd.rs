//! Define-by-run reverse-mode autodiff: the tape is the graph of `GradFn` nodes hanging off
//! results. Backward rules are written with engine functions, so with `create_graph` the
//! backward pass is itself recorded and can be differentiated again.

use crate::error::{Error, Result};
use crate::tensor::{Inner, Tensor};
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops on this thread record the graph.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Restores the previous gradient mode when dropped.
#[must_use = "gradient mode reverts when the guard is dropped"]
pub struct GradModeGuard(bool);

impl Drop for GradModeGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.0));
    }
}

/// Sets the gradient mode until the guard drops.
pub fn set_grad_enabled(on: bool) -> GradModeGuard {
    let prev = GRAD_ENABLED.with(|g| g.replace(on));
    GradModeGuard(prev)
}

/// Disables recording until the guard drops (PyTorch's `torch.no_grad()`).
pub fn no_grad() -> GradModeGuard {
    set_grad_enabled(false)
}

/// Gives backward rules access to the op's output.
pub struct Ctx {
    output: Option<Tensor>,
}

impl Ctx {
    /// The output of the op (for rules such as exp's `g·out`).
    pub fn out(&self) -> Result<&Tensor> {
        self.output.as_ref().ok_or_else(|| Error::Autograd("the output saved for this backward was freed".into()))
    }
}

type BackwardFn = dyn Fn(&Ctx, &Tensor) -> Result<Vec<Option<Tensor>>> + Send + Sync;

/// One recorded op: its inputs, the storage versions they had, and its backward rule.
pub struct GradFn {
    pub(crate) name: &'static str,
    pub(crate) inputs: Vec<Tensor>,
    versions: Vec<u64>,
    output: Weak<Inner>,
    backward: Mutex<Option<Arc<BackwardFn>>>,
}

/// Attaches a backward rule to `out` when recording is on and some input requires grad.
/// The rule returns one optional gradient per input, each of that input's shape.
pub(crate) fn record(
    out: Tensor,
    name: &'static str,
    inputs: &[&Tensor],
    f: impl Fn(&Ctx, &Tensor) -> Result<Vec<Option<Tensor>>> + Send + Sync + 'static,
) -> Tensor {
    if !is_grad_enabled() || !inputs.iter().any(|t| t.requires_grad()) || !out.dtype().is_float() {
        return out;
    }
    let gf = GradFn {
        name,
        inputs: inputs.iter().map(|t| (*t).clone()).collect(),
        versions: inputs.iter().map(|t| t.version()).collect(),
        output: Arc::downgrade(&out.0),
        backward: Mutex::new(Some(Arc::new(f))),
    };
    // A fresh output has no grad_fn yet; set cannot fail.
    let _ = out.0.grad_fn.set(Arc::new(gf));
    out.0.requires_grad.store(true, std::sync::atomic::Ordering::Relaxed);
    out
}

/// Topological order (outputs first) of everything reachable through tensors that require grad.
fn topo(roots: &[Tensor]) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut visited = HashSet::new();
    let mut stack: Vec<(Tensor, bool)> = roots.iter().rev().map(|t| (t.clone(), false)).collect();
    while let Some((t, expanded)) = stack.pop() {
        if expanded {
            order.push(t);
            continue;
        }
        if !visited.insert(t.id()) {
            continue;
        }
        stack.push((t.clone(), true));
        if let Some(gf) = t.grad_fn() {
            for inp in gf.inputs.iter().rev() {
                if inp.requires_grad() && !visited.contains(&inp.id()) {
                    stack.push((inp.clone(), false));
                }
            }
        }
    }
    order.reverse();
    order
}

/// The core engine: propagates `seeds` back through the graph. `targets` (if any) limits the
/// work to nodes on a path to them and returns their gradients; with `accumulate` the leaves'
/// `.grad` fields receive theirs.
fn run(
    seeds: Vec<(Tensor, Tensor)>,
    targets: &[Tensor],
    retain: bool,
    create: bool,
    accumulate: bool,
) -> Result<HashMap<usize, Tensor>> {
    let roots: Vec<Tensor> = seeds.iter().map(|(t, _)| t.clone()).collect();
    let order = topo(&roots);
    let target_ids: HashSet<usize> = targets.iter().map(|t| t.id()).collect();
    // needed[t]: t leads to a target (or to any leaf when accumulating).
    // expand[t]: running t's backward reaches something needed.
    let mut needed: HashSet<usize> = HashSet::new();
    let mut expand: HashSet<usize> = HashSet::new();
    for t in order.iter().rev() {
        let is_goal = if accumulate { t.is_leaf() && t.requires_grad() } else { target_ids.contains(&t.id()) };
        let via = t.grad_fn().is_some_and(|gf| gf.inputs.iter().any(|i| needed.contains(&i.id())));
        if via {
            expand.insert(t.id());
        }
        if is_goal || via {
            needed.insert(t.id());
        }
    }
    let mut grads: HashMap<usize, Tensor> = HashMap::new();
    let _mode = set_grad_enabled(create);
    for (t, g) in seeds {
        accumulate_into(&mut grads, &t, g)?;
    }
    for t in &order {
        if !expand.contains(&t.id()) {
            continue;
        }
        let Some(gf) = t.grad_fn() else { continue };
        let g = if target_ids.contains(&t.id()) { grads.get(&t.id()).cloned() } else { grads.remove(&t.id()) };
        let Some(g) = g else { continue };
        for (inp, &v) in gf.inputs.iter().zip(&gf.versions) {
            if inp.version() != v {
                return Err(Error::Autograd(format!(
                    "a tensor of shape {:?} needed to differentiate `{}` was modified in place after it was used (version {} now, {} when recorded); clone it before modifying",
                    inp.shape(),
                    gf.name,
                    inp.version(),
                    v
                )));
            }
        }
        let f = {
            let mut slot = gf.backward.lock().unwrap_or_else(|p| p.into_inner());
            let f = slot.clone().ok_or_else(|| {
                Error::Autograd(format!(
                    "the graph through `{}` was already freed by an earlier backward; pass retain_graph=true to the first one",
                    gf.name
                ))
            })?;
            if !retain {
                *slot = None;
            }
            f
        };
        let ctx = Ctx { output: gf.output.upgrade().map(Tensor) };
        let gs = f(&ctx, &g)?;
        if gs.len() != gf.inputs.len() {
            return Err(Error::Autograd(format!(
                "backward of `{}` returned {} gradients for {} inputs",
                gf.name,
                gs.len(),
                gf.inputs.len()
            )));
        }
        for (inp, gi) in gf.inputs.iter().zip(gs) {
            let Some(gi) = gi else { continue };
            if !inp.requires_grad() || !needed.contains(&inp.id()) {
                continue;
            }
            if gi.shape() != inp.shape() {
                return Err(Error::Autograd(format!(
                    "backward of `{}` produced a gradient of shape {:?} for an input of shape {:?}",
                    gf.name,
                    gi.shape(),
                    inp.shape()
                )));
            }
            accumulate_into(&mut grads, inp, gi)?;
        }
    }
    if accumulate {
        for t in &order {
            if t.is_leaf() && t.requires_grad() {
                if let Some(g) = grads.get(&t.id()) {
                    let g = if create { g.clone() } else { g.detach() };
                    let new = match t.grad() {
                        Some(old) => old.add(&g)?,
                        None => g,
                    };
                    t.set_grad(Some(new));
                }
            }
        }
    }
    Ok(grads)
}

fn accumulate_into(grads: &mut HashMap<usize, Tensor>, t: &Tensor, g: Tensor) -> Result<()> {
    let id = t.id();
    let v = match grads.remove(&id) {
        Some(old) => old.add(&g)?,
        None => g,
    };
    grads.insert(id, v);
    Ok(())
}

/// `out.backward(grad)`: accumulates d(out)/d(leaf) into every leaf's `.grad`.
pub fn backward(out: &Tensor, grad: Option<&Tensor>, retain_graph: bool, create_graph: bool) -> Result<()> {
    if !out.requires_grad() {
        return Err(Error::Autograd(format!(
            "backward() on a tensor of shape {:?} that does not require grad",
            out.shape()
        )));
    }
    let g = match grad {
        Some(g) => {
            if g.shape() != out.shape() {
                return Err(Error::Autograd(format!(
                    "gradient of shape {:?} for an output of shape {:?}",
                    g.shape(),
                    out.shape()
                )));
            }
            g.clone()
        }
        None => {
            if out.numel() != 1 {
                return Err(Error::Autograd(format!(
                    "backward() without a gradient needs a scalar output, got shape {:?}; pass a gradient or reduce first",
                    out.shape()
                )));
            }
            Tensor::ones_like(out)?
        }
    };
    run(vec![(out.clone(), g)], &[], retain_graph, create_graph, true)?;
    Ok(())
}

/// Gradients of `outputs` (weighted by `grad_outputs`, default ones for scalars) with
/// respect to any tensors `inputs` (leaves or not). An input the outputs do not depend on
/// gets `None`. With `create_graph` the results are differentiable.
pub fn grad(
    outputs: &[Tensor],
    inputs: &[Tensor],
    grad_outputs: Option<&[Tensor]>,
    retain_graph: bool,
    create_graph: bool,
) -> Result<Vec<Option<Tensor>>> {
    let mut seeds = Vec::new();
    for (i, o) in outputs.iter().enumerate() {
        let g = match grad_outputs {
            Some(gs) => {
                let g = gs.get(i).ok_or_else(|| {
                    Error::Autograd(format!("{} outputs but {} grad_outputs", outputs.len(), gs.len()))
                })?;
                if g.shape() != o.shape() {
                    return Err(Error::Autograd(format!(
                        "grad_output {i} has shape {:?}, output has {:?}",
                        g.shape(),
                        o.shape()
                    )));
                }
                g.clone()
            }
            None => {
                if o.numel() != 1 {
                    return Err(Error::Autograd(format!(
                        "grad() of a non-scalar output of shape {:?} needs grad_outputs",
                        o.shape()
                    )));
                }
                Tensor::ones_like(o)?
            }
        };
        if o.requires_grad() {
            seeds.push((o.clone(), g));
        }
    }
    if seeds.is_empty() {
        return Ok(vec![None; inputs.len()]);
    }
    let grads = run(seeds, inputs, retain_graph || create_graph, create_graph, false)?;
    Ok(inputs.iter().map(|t| grads.get(&t.id()).cloned()).collect())
}

/// Backward of a fused op through its composite: used when `create_graph` asks for a
/// differentiable gradient, so fused kernels need no hand-written double backward.
pub(crate) fn composite_backward(
    inputs: &[Tensor],
    g: &Tensor,
    composite: impl Fn(&[Tensor]) -> Result<Tensor>,
) -> Result<Vec<Option<Tensor>>> {
    let out = composite(inputs)?;
    grad(&[out], inputs, Some(std::slice::from_ref(g)), true, true)
}
