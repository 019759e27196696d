//! Adam and AdamW.

use super::{
    check_params, grad_for_update, load_slots, read_step, span, step_tensor, zeros_like, Optimizer, Slot, OPT_PREFIX,
};
use crate::error::{Error, Result};
use scorch_engine::backend::adam_update_storage;
use scorch_engine::safetensors_io::RawTensor;
use scorch_engine::{no_grad, DType, Tensor};
use scorch_ops::cpu::optim::AdamParams;
use std::path::Path;

/// Hyper-parameters of [`Adam`]; the defaults are `torch.optim.Adam`'s, and
/// [`AdamConfig::adamw`] gives `torch.optim.AdamW`'s.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// L2 penalty (Adam) or decoupled decay rate (AdamW).
    pub weight_decay: f64,
    /// AdamW: decay the parameter directly (`p ← p·(1 − lr·wd)`) instead of adding
    /// `wd·p` to the gradient.
    pub decoupled_weight_decay: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled_weight_decay: false }
    }
}

impl AdamConfig {
    /// `torch.optim.AdamW`'s defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, decoupled
    /// weight decay 0.01.
    pub fn adamw() -> AdamConfig {
        AdamConfig { weight_decay: 1e-2, decoupled_weight_decay: true, ..Default::default() }
    }

    fn validate(&self) -> Result<()> {
        let bad = |what: &str, v: f64| Err(Error::Config(format!("Adam: invalid {what} {v}")));
        if self.lr.is_nan() || self.lr < 0.0 {
            return bad("learning rate", self.lr);
        }
        for (what, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return bad(what, b);
            }
        }
        if self.eps.is_nan() || self.eps < 0.0 {
            return bad("eps", self.eps);
        }
        if self.weight_decay.is_nan() || self.weight_decay < 0.0 {
            return bad("weight_decay", self.weight_decay);
        }
        Ok(())
    }

    fn kernel_params(&self) -> AdamParams {
        AdamParams {
            lr: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            decoupled: self.decoupled_weight_decay,
        }
    }
}

/// Per-parameter state: PyTorch's `exp_avg`, `exp_avg_sq` and `step`.
struct AdamState {
    name: String,
    param: Tensor,
    m: Tensor,
    v: Tensor,
    step: u64,
}

/// Adam / AdamW with bias correction (Kingma & Ba; Loshchilov & Hutter), matching
/// `torch.optim.Adam` / `AdamW` (`amsgrad=False`, `maximize=False`). Each parameter is
/// updated by one fused in-place kernel.
///
/// ```
/// use scorch_models::optim::{Adam, AdamConfig, Optimizer};
/// use scorch_models::params::{Init, ParamStore};
/// use scorch_engine::DType;
///
/// let store = ParamStore::new(DType::F32, 0);
/// let w = store.root().get_or_init("w", &[3], Init::Ones)?;
/// let mut opt = Adam::new(store.named_parameters(), AdamConfig { lr: 0.1, ..AdamConfig::adamw() })?;
/// w.sqr()?.sum(&[], false)?.backward()?;
/// opt.step()?;
/// opt.zero_grad();
/// assert!(w.to_vec_f32()?.iter().all(|&x| x < 1.0));
/// # Ok::<(), scorch_models::Error>(())
/// ```
pub struct Adam {
    cfg: AdamConfig,
    states: Vec<AdamState>,
}

impl Adam {
    /// An optimizer over `params` (e.g. [`ParamStore::named_parameters`](crate::params::ParamStore::named_parameters)),
    /// with zeroed moments.
    pub fn new(params: impl IntoIterator<Item = (String, Tensor)>, cfg: AdamConfig) -> Result<Adam> {
        cfg.validate()?;
        let states = check_params("Adam", params)?
            .into_iter()
            .map(|(name, param)| Ok(AdamState { m: zeros_like(&param)?, v: zeros_like(&param)?, name, param, step: 0 }))
            .collect::<Result<_>>()?;
        Ok(Adam { cfg, states })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &AdamConfig {
        &self.cfg
    }

    /// The first moment, second moment and step count of parameter `name`.
    pub fn state(&self, name: &str) -> Option<(&Tensor, &Tensor, u64)> {
        self.states.iter().find(|s| s.name == name).map(|s| (&s.m, &s.v, s.step))
    }
}

impl Optimizer for Adam {
    fn step(&mut self) -> Result<()> {
        let hp = self.cfg.kernel_params();
        let _ng = no_grad();
        for st in &mut self.states {
            let Some(g) = grad_for_update(&st.param, &[&st.param, &st.m, &st.v])? else {
                continue;
            };
            st.step += 1;
            let (pr, gr, sr) = (span(&st.param), span(&g), 0..st.param.numel());
            let (m, v, step) = (&st.m, &st.v, st.step);
            // One `?` per buffer lock taken (parameter, m, v, gradient); the kernel's result is mapped below.
            st.param
                .with_storage_mut(|ps, _| {
                    m.with_storage_mut(|ms, _| {
                        v.with_storage_mut(|vs, _| {
                            g.with_storage(|gs, _| {
                                adam_update_storage((ps, pr), (gs, gr), (ms, sr.clone()), (vs, sr), step, &hp)
                            })
                        })
                    })
                })????
                .map_err(|e| Error::Param { name: st.name.clone(), detail: format!("Adam step: {e}") })?;
        }
        Ok(())
    }

    fn zero_grad(&self) {
        self.states.iter().for_each(|s| s.param.zero_grad());
    }

    fn lr(&self) -> f64 {
        self.cfg.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }

    fn state_tensors(&self) -> Result<Vec<RawTensor>> {
        let mut out = Vec::with_capacity(3 * self.states.len());
        for s in &self.states {
            let (dt, shape) = (s.param.dtype(), s.param.shape().to_vec());
            out.push(RawTensor::new(format!("{OPT_PREFIX}{}.m", s.name), dt, shape.clone(), s.m.to_bytes()?));
            out.push(RawTensor::new(format!("{OPT_PREFIX}{}.v", s.name), dt, shape, s.v.to_bytes()?));
            out.push(step_tensor(format!("{OPT_PREFIX}{}.step", s.name), s.step));
        }
        Ok(out)
    }

    fn load_state_tensors(&mut self, raw: &[RawTensor], path: &Path) -> Result<()> {
        let steps: Vec<Tensor> =
            self.states.iter().map(|_| Tensor::zeros(&[], DType::I64)).collect::<scorch_engine::Result<_>>()?;
        let mut slots: Vec<Slot> = Vec::with_capacity(3 * self.states.len());
        for (s, step) in self.states.iter().zip(&steps) {
            let (dt, shape) = (s.param.dtype(), s.param.shape().to_vec());
            slots.push((format!("{OPT_PREFIX}{}.m", s.name), shape.clone(), dt, &s.m));
            slots.push((format!("{OPT_PREFIX}{}.v", s.name), shape, dt, &s.v));
            slots.push((format!("{OPT_PREFIX}{}.step", s.name), vec![], DType::I64, step));
        }
        load_slots(raw, &slots, path)?;
        for (s, step) in self.states.iter_mut().zip(&steps) {
            s.step = read_step(step)?;
        }
        Ok(())
    }
}
