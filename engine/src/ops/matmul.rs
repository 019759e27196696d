//! Matrix products and the linear layer's function.

use crate::autograd::record;
use crate::backend::Dispatch;
use crate::error::{msg, Result};
use crate::tensor::{same_device, Tensor};
use scorch_ops::Kernels;

impl Tensor {
    /// Matrix product with PyTorch's rules: 1-D operands are promoted (and the added dim
    /// removed), batch dims broadcast.
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        if self.rank() == 0 || other.rank() == 0 {
            return msg(format!("matmul of 0-d tensors {:?} and {:?}", self.shape(), other.shape()));
        }
        if let Some((orig, low)) = crate::autocast::plan(&[self, other]) {
            return self.cast(low)?.matmul(&other.cast(low)?)?.cast(orig);
        }
        let a = if self.rank() == 1 { self.unsqueeze(0)? } else { self.clone() };
        let b = if other.rank() == 1 { other.unsqueeze(1)? } else { other.clone() };
        let mut y = a.matmul_nd(&b)?;
        if other.rank() == 1 {
            y = y.squeeze(-1)?;
        }
        if self.rank() == 1 {
            y = y.squeeze(if other.rank() == 1 { -1 } else { -2 })?;
        }
        Ok(y)
    }

    fn matmul_nd(&self, other: &Tensor) -> Result<Tensor> {
        same_device("matmul", &[self, other])?;
        let out = {
            let (a, b) = (self.storage(), other.storage());
            let (o, shape) = Dispatch.matmul((&*a, self.layout()), (&*b, other.layout()))?;
            Tensor::from_storage(o, &shape)
        };
        let (a, b) = (self.clone(), other.clone());
        Ok(record(out, "matmul", &[self, other], move |_, g| {
            let ga = if a.requires_grad() { Some(g.matmul_nd(&b.t()?)?.sum_to_shape(a.shape())?) } else { None };
            let gb = if b.requires_grad() { Some(a.t()?.matmul_nd(g)?.sum_to_shape(b.shape())?) } else { None };
            Ok(vec![ga, gb])
        }))
    }

    /// `x · wᵀ + b` with `w: [out, in]` (PyTorch's layout).
    pub fn linear(&self, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        if w.rank() != 2 || self.rank() == 0 || self.shape()[self.rank() - 1] != w.shape()[1] {
            return msg(format!(
                "linear: input {:?} and weight {:?} (expected [.., in] and [out, in])",
                self.shape(),
                w.shape()
            ));
        }
        let y = self.matmul(&w.t()?)?;
        match b {
            Some(b) => y.add(b),
            None => Ok(y),
        }
    }
}
