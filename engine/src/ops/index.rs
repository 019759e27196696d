//! Indexing: index_select / embedding, gather / scatter_add.

use crate::autograd::record;
use crate::backend::Dispatch;
use crate::error::{msg, Result};
use crate::tensor::Tensor;
use scorch_ops::Kernels;

impl Tensor {
    /// Rows of `dim` picked by a 1-D integer index.
    pub fn index_select(&self, dim: isize, idx: &Tensor) -> Result<Tensor> {
        let d = self.axis(dim)?;
        if idx.rank() != 1 {
            return msg(format!("index_select: index must be 1-D, got {:?}", idx.shape()));
        }
        let size = self.shape()[d];
        let out = {
            let (s, i) = (self.storage(), idx.storage());
            let o = Dispatch.index_select((&*s, self.layout()), d, (&*i, idx.layout()))?;
            let mut shape = self.shape().to_vec();
            shape[d] = idx.numel();
            Tensor::from_storage(o, &shape)
        };
        let idx = idx.clone();
        Ok(record(out, "index_select", &[self], move |_, g| Ok(vec![Some(g.index_add_from(d, &idx, size)?)])))
    }

    /// Adjoint of index_select: a tensor with `size` along `dim`, rows of `self` added at `idx`.
    pub fn index_add_from(&self, dim: usize, idx: &Tensor, size: usize) -> Result<Tensor> {
        let out = {
            let (s, i) = (self.storage(), idx.storage());
            let o = Dispatch.index_add((&*s, self.layout()), dim, (&*i, idx.layout()), size)?;
            let mut shape = self.shape().to_vec();
            shape[dim] = size;
            Tensor::from_storage(o, &shape)
        };
        let idx = idx.clone();
        Ok(record(out, "index_add", &[self], move |_, g| Ok(vec![Some(g.index_select(dim as isize, &idx)?)])))
    }

    /// Embedding lookup: `weight [V, D]` rows for integer `ids [..]` → `[.., D]`.
    pub fn embedding(weight: &Tensor, ids: &Tensor) -> Result<Tensor> {
        if weight.rank() != 2 {
            return msg(format!("embedding weight must be [vocab, dim], got {:?}", weight.shape()));
        }
        let flat = ids.reshape(&[ids.numel()])?;
        let rows = weight.index_select(0, &flat)?;
        let mut shape = ids.shape().to_vec();
        shape.push(weight.shape()[1]);
        rows.reshape(&shape)
    }

    /// `out[m] = self[m with m[dim] = idx[m]]` (out has idx's shape).
    pub fn gather(&self, dim: isize, idx: &Tensor) -> Result<Tensor> {
        let d = self.axis(dim)?;
        let out = {
            let (s, i) = (self.storage(), idx.storage());
            Tensor::from_storage(Dispatch.gather((&*s, self.layout()), d, (&*i, idx.layout()))?, idx.shape())
        };
        let (idx, shape) = (idx.clone(), self.shape().to_vec());
        Ok(record(out, "gather", &[self], move |_, g| Ok(vec![Some(g.scatter_add_into(d, &idx, &shape)?)])))
    }

    /// Adjoint of gather: a `shape` tensor with `self[m]` added at `m[dim] = idx[m]`.
    pub fn scatter_add_into(&self, dim: usize, idx: &Tensor, shape: &[usize]) -> Result<Tensor> {
        if idx.shape() != self.shape() {
            return msg(format!("scatter_add: index {:?} and source {:?} differ", idx.shape(), self.shape()));
        }
        let out = {
            let (s, i) = (self.storage(), idx.storage());
            Tensor::from_storage(Dispatch.scatter_add((&*s, self.layout()), dim, (&*i, idx.layout()), shape)?, shape)
        };
        let idx = idx.clone();
        Ok(record(out, "scatter_add", &[self], move |_, g| Ok(vec![Some(g.gather(dim as isize, &idx)?)])))
    }
}
