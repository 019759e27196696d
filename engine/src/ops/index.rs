//! Indexing: index_select / embedding, gather / scatter_add.

use crate::autograd::record;
use crate::error::{msg, Result};
use crate::tensor::Tensor;
use scorch_ops::cpu::index;

impl Tensor {
    fn indices(&self, op: &'static str, size: usize) -> Result<Vec<usize>> {
        let s = self.storage();
        Ok(index::read_indices(op, s.cpu(), self.layout(), size)?)
    }

    /// Rows of `dim` picked by a 1-D integer index.
    pub fn index_select(&self, dim: isize, idx: &Tensor) -> Result<Tensor> {
        let d = self.axis(dim)?;
        if idx.rank() != 1 {
            return msg(format!("index_select: index must be 1-D, got {:?}", idx.shape()));
        }
        let size = self.shape()[d];
        let iv = idx.indices("index_select", size)?;
        let out = {
            let s = self.storage();
            let o = index::index_select(s.cpu(), self.layout(), d, &iv)?;
            let mut shape = self.shape().to_vec();
            shape[d] = iv.len();
            Tensor::from_cpu(o, &shape)
        };
        let idx = idx.clone();
        Ok(record(out, "index_select", &[self], move |_, g| Ok(vec![Some(g.index_add_from(d, &idx, size)?)])))
    }

    /// Adjoint of index_select: a tensor with `size` along `dim`, rows of `self` added at `idx`.
    pub fn index_add_from(&self, dim: usize, idx: &Tensor, size: usize) -> Result<Tensor> {
        let iv = idx.indices("index_add", size)?;
        let out = {
            let s = self.storage();
            let o = index::index_add(s.cpu(), self.layout(), dim, &iv, size)?;
            let mut shape = self.shape().to_vec();
            shape[dim] = size;
            Tensor::from_cpu(o, &shape)
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
        let iv = idx.indices("gather", self.shape()[d])?;
        let out = {
            let s = self.storage();
            Tensor::from_cpu(index::gather(s.cpu(), self.layout(), d, &iv, idx.shape())?, idx.shape())
        };
        let (idx, shape) = (idx.clone(), self.shape().to_vec());
        Ok(record(out, "gather", &[self], move |_, g| Ok(vec![Some(g.scatter_add_into(d, &idx, &shape)?)])))
    }

    /// Adjoint of gather: a `shape` tensor with `self[m]` added at `m[dim] = idx[m]`.
    pub fn scatter_add_into(&self, dim: usize, idx: &Tensor, shape: &[usize]) -> Result<Tensor> {
        if idx.shape() != self.shape() {
            return msg(format!("scatter_add: index {:?} and source {:?} differ", idx.shape(), self.shape()));
        }
        let iv = idx.indices("scatter_add", *shape.get(dim).unwrap_or(&0))?;
        let out = {
            let s = self.storage();
            Tensor::from_cpu(index::scatter_add(s.cpu(), self.layout(), dim, &iv, shape)?, shape)
        };
        let idx = idx.clone();
        Ok(record(out, "scatter_add", &[self], move |_, g| Ok(vec![Some(g.gather(dim as isize, &idx)?)])))
    }
}
