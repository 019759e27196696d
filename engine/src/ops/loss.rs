//! Losses composed from engine functions.

use crate::error::{msg, Result};
use crate::tensor::Tensor;

impl Tensor {
    /// Mean squared error.
    pub fn mse_loss(&self, target: &Tensor) -> Result<Tensor> {
        if self.shape() != target.shape() {
            return msg(format!("mse_loss: prediction {:?} vs target {:?}", self.shape(), target.shape()));
        }
        self.sub(target)?.sqr()?.mean_all()
    }

    /// Mean cross-entropy of `logits [N, C]` against integer classes `[N]`, with label
    /// smoothing ε (targets become (1−ε)·onehot + ε/C, as in PyTorch).
    pub fn cross_entropy(&self, target: &Tensor, label_smoothing: f64) -> Result<Tensor> {
        if self.rank() != 2 || target.rank() != 1 || target.shape()[0] != self.shape()[0] {
            return msg(format!(
                "cross_entropy: logits {:?} must be [N, C] and targets {:?} must be [N]",
                self.shape(),
                target.shape()
            ));
        }
        if !(0.0..=1.0).contains(&label_smoothing) {
            return msg(format!("label_smoothing {label_smoothing} outside [0, 1]"));
        }
        let c = self.shape()[1];
        let logp = self.log_softmax(-1)?;
        let picked = logp.gather(1, &target.reshape(&[target.numel(), 1])?)?;
        let nll = picked.mean_all()?.neg()?;
        if label_smoothing == 0.0 {
            return Ok(nll);
        }
        let smooth = logp.mean(&[-1], false)?.mean_all()?.neg()?;
        if c == 0 {
            return msg("cross_entropy over zero classes");
        }
        nll.mul_scalar(1.0 - label_smoothing)?.add(&smooth.mul_scalar(label_smoothing)?)
    }
}
