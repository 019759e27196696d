//! Stochastic gradient descent with momentum.

use super::{
    check_params, grad_for_update, load_slots, read_step, span, step_tensor, zeros_like, Optimizer, Slot, OPT_PREFIX,
};
use crate::error::{Error, Result};
use scorch_engine::backend::sgd_update_storage;
use scorch_engine::safetensors_io::RawTensor;
use scorch_engine::{no_grad, DType, Tensor};
use scorch_ops::cpu::optim::SgdParams;
use std::path::Path;

/// Hyper-parameters of [`Sgd`], defaults as `torch.optim.SGD`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    /// Learning rate.
    pub lr: f64,
    /// Momentum factor (0: plain SGD, no buffer).
    pub momentum: f64,
    /// Dampening of the gradient entering the momentum buffer.
    pub dampening: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Nesterov momentum (needs momentum > 0 and no dampening).
    pub nesterov: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig { lr: 1e-3, momentum: 0.0, dampening: 0.0, weight_decay: 0.0, nesterov: false }
    }
}

impl SgdConfig {
    fn validate(&self) -> Result<()> {
        let bad = |what: &str, v: f64| Err(Error::Config(format!("SGD: invalid {what} {v}")));
        if self.lr.is_nan() || self.lr < 0.0 {
            return bad("learning rate", self.lr);
        }
        if self.momentum.is_nan() || self.momentum < 0.0 {
            return bad("momentum", self.momentum);
        }
        if self.weight_decay.is_nan() || self.weight_decay < 0.0 {
            return bad("weight_decay", self.weight_decay);
        }
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::Config("SGD: Nesterov momentum requires a momentum and zero dampening".into()));
        }
        Ok(())
    }
}

struct SgdState {
    name: String,
    param: Tensor,
    /// Present when momentum is on.
    buf: Option<Tensor>,
    step: u64,
}

/// SGD with optional momentum, dampening, Nesterov and weight decay, matching
/// `torch.optim.SGD` (the momentum buffer starts as the first gradient).
pub struct Sgd {
    cfg: SgdConfig,
    states: Vec<SgdState>,
}

impl Sgd {
    /// An optimizer over `params`.
    pub fn new(params: impl IntoIterator<Item = (String, Tensor)>, cfg: SgdConfig) -> Result<Sgd> {
        cfg.validate()?;
        let states = check_params("SGD", params)?
            .into_iter()
            .map(|(name, param)| {
                let buf = if cfg.momentum != 0.0 { Some(zeros_like(&param)?) } else { None };
                Ok(SgdState { name, param, buf, step: 0 })
            })
            .collect::<Result<_>>()?;
        Ok(Sgd { cfg, states })
    }

    /// The momentum buffer of parameter `name` (once it has taken a step with momentum on).
    pub fn momentum_buffer(&self, name: &str) -> Option<&Tensor> {
        self.states.iter().find(|s| s.name == name && s.step > 0).and_then(|s| s.buf.as_ref())
    }
}

impl Optimizer for Sgd {
    fn step(&mut self) -> Result<()> {
        let cfg = &self.cfg;
        let hp = SgdParams {
            lr: cfg.lr,
            momentum: cfg.momentum,
            dampening: cfg.dampening,
            weight_decay: cfg.weight_decay,
            nesterov: cfg.nesterov,
        };
        let _ng = no_grad();
        for st in &mut self.states {
            let mut avoid = vec![&st.param];
            avoid.extend(st.buf.as_ref());
            let Some(g) = grad_for_update(&st.param, &avoid)? else {
                continue;
            };
            let first = st.step == 0;
            st.step += 1;
            let (pr, gr, br) = (span(&st.param), span(&g), 0..st.param.numel());
            let result = match &st.buf {
                // One `?` per buffer lock taken; the kernel's result is mapped below.
                Some(b) => st.param.with_storage_mut(|ps, _| {
                    b.with_storage_mut(|bs, _| {
                        g.with_storage(|gs, _| sgd_update_storage((ps, pr), (gs, gr), Some((bs, br)), first, &hp))
                    })
                })???,
                None => st.param.with_storage_mut(|ps, _| {
                    g.with_storage(|gs, _| sgd_update_storage((ps, pr), (gs, gr), None, first, &hp))
                })??,
            };
            result.map_err(|e| Error::Param { name: st.name.clone(), detail: format!("SGD step: {e}") })?;
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
        let mut out = Vec::new();
        for s in &self.states {
            if let Some(b) = &s.buf {
                out.push(RawTensor::new(
                    format!("{OPT_PREFIX}{}.momentum_buffer", s.name),
                    b.dtype(),
                    b.shape().to_vec(),
                    b.to_bytes()?,
                ));
            }
            out.push(step_tensor(format!("{OPT_PREFIX}{}.step", s.name), s.step));
        }
        Ok(out)
    }

    fn load_state_tensors(&mut self, raw: &[RawTensor], path: &Path) -> Result<()> {
        let steps: Vec<Tensor> =
            self.states.iter().map(|_| Tensor::zeros(&[], DType::I64)).collect::<scorch_engine::Result<_>>()?;
        let mut slots: Vec<Slot> = Vec::new();
        for (s, step) in self.states.iter().zip(&steps) {
            if let Some(b) = &s.buf {
                slots.push((format!("{OPT_PREFIX}{}.momentum_buffer", s.name), b.shape().to_vec(), b.dtype(), b));
            }
            slots.push((format!("{OPT_PREFIX}{}.step", s.name), vec![], DType::I64, step));
        }
        load_slots(raw, &slots, path)?;
        for (s, step) in self.states.iter_mut().zip(&steps) {
            s.step = read_step(step)?;
        }
        Ok(())
    }
}
