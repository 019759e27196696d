//! Reductions over any set of axes, softmax / log-softmax, cumsum.

use crate::autograd::record;
use crate::backend::Dispatch;
use crate::error::{msg, Result};
use crate::tensor::Tensor;
use scorch_ops::cpu::reduce::ReduceOp;
use scorch_ops::Kernels;

impl Tensor {
    /// Normalises axes (negative allowed); an empty list means all axes.
    pub(crate) fn axes(&self, axes: &[isize]) -> Result<Vec<usize>> {
        if axes.is_empty() {
            return Ok((0..self.rank()).collect());
        }
        let mut v: Vec<usize> = axes.iter().map(|&a| self.axis(a)).collect::<Result<_>>()?;
        v.sort_unstable();
        let n = v.len();
        v.dedup();
        if v.len() != n {
            return msg(format!("repeated axis in {axes:?}"));
        }
        Ok(v)
    }

    fn kept_shape(&self, axes: &[usize], keepdim: bool) -> Vec<usize> {
        let mut s = Vec::new();
        for (i, &d) in self.shape().iter().enumerate() {
            if axes.contains(&i) {
                if keepdim {
                    s.push(1);
                }
            } else {
                s.push(d);
            }
        }
        s
    }

    fn reduce_raw(&self, op: ReduceOp, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        let st = self.storage();
        let out = Dispatch.reduce(op, (&*st, self.layout()), axes)?;
        Ok(Tensor::from_storage(out, &self.kept_shape(axes, keepdim)))
    }

    /// Sum over `axes` (all when empty).
    pub fn sum(&self, axes: &[isize], keepdim: bool) -> Result<Tensor> {
        let ax = self.axes(axes)?;
        let out = self.reduce_raw(ReduceOp::Sum, &ax, keepdim)?;
        let (shape, kshape) = (self.shape().to_vec(), self.kept_shape(&ax, true));
        Ok(record(out, "sum", &[self], move |_, g| {
            Ok(vec![Some(g.reshape(&kshape)?.broadcast_to(&shape)?.contiguous()?)])
        }))
    }

    /// Sum of all elements (0-d).
    pub fn sum_all(&self) -> Result<Tensor> {
        self.sum(&[], false)
    }

    /// Mean over `axes` (all when empty).
    pub fn mean(&self, axes: &[isize], keepdim: bool) -> Result<Tensor> {
        let ax = self.axes(axes)?;
        let n: usize = ax.iter().map(|&a| self.shape()[a]).product();
        self.sum(axes, keepdim)?.mul_scalar(1.0 / n.max(1) as f64)
    }

    pub fn mean_all(&self) -> Result<Tensor> {
        self.mean(&[], false)
    }

    fn extreme(&self, op: ReduceOp, axes: &[isize], keepdim: bool, name: &'static str) -> Result<Tensor> {
        let ax = self.axes(axes)?;
        let out = self.reduce_raw(op, &ax, keepdim)?;
        let (x, kshape) = (self.clone(), self.kept_shape(&ax, true));
        let axes = axes.to_vec();
        Ok(record(out, name, &[self], move |ctx, g| {
            // Ties share the gradient evenly, like torch.amax.
            let y = ctx.out()?.detach().reshape(&kshape)?;
            let mask = x.detach().eq(&y)?.cast(g.dtype())?;
            let count = mask.sum(&axes, true)?;
            Ok(vec![Some(mask.div(&count)?.mul(&g.reshape(&kshape)?)?)])
        }))
    }

    /// Maximum over `axes`.
    pub fn max(&self, axes: &[isize], keepdim: bool) -> Result<Tensor> {
        self.extreme(ReduceOp::Max, axes, keepdim, "max")
    }

    /// Minimum over `axes`.
    pub fn min(&self, axes: &[isize], keepdim: bool) -> Result<Tensor> {
        self.extreme(ReduceOp::Min, axes, keepdim, "min")
    }

    /// Index of the maximum along `axis` (i64, not differentiable).
    pub fn argmax(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        let a = self.axis(axis)?;
        self.reduce_raw(ReduceOp::ArgMax, &[a], keepdim)
    }

    /// Index of the minimum along `axis` (i64, not differentiable).
    pub fn argmin(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        let a = self.axis(axis)?;
        self.reduce_raw(ReduceOp::ArgMin, &[a], keepdim)
    }

    /// log Σ exp over `axes`, stabilised by the (detached) maximum.
    pub fn logsumexp(&self, axes: &[isize], keepdim: bool) -> Result<Tensor> {
        let m = self.detach().max(axes, true)?.nan_to_num(0.0, 0.0, 0.0)?;
        let s = self.sub(&m)?.exp()?.sum(axes, true)?.log()?.add(&m)?;
        if keepdim {
            Ok(s)
        } else {
            let ax = self.axes(axes)?;
            s.reshape(&self.kept_shape(&ax, false))
        }
    }

    /// Variance over `axes` with `correction` (1 = unbiased, like torch.var's default).
    pub fn var(&self, axes: &[isize], correction: usize, keepdim: bool) -> Result<Tensor> {
        let ax = self.axes(axes)?;
        let n: usize = ax.iter().map(|&a| self.shape()[a]).product();
        if n <= correction {
            return msg(format!("var over {n} elements with correction {correction}"));
        }
        let d = self.sub(&self.mean(axes, true)?)?;
        d.sqr()?.sum(axes, keepdim)?.mul_scalar(1.0 / (n - correction) as f64)
    }

    /// Standard deviation (see [`Tensor::var`]).
    pub fn std(&self, axes: &[isize], correction: usize, keepdim: bool) -> Result<Tensor> {
        self.var(axes, correction, keepdim)?.sqrt()
    }

    /// Sums a broadcast gradient back to `shape` (the adjoint of broadcasting).
    pub fn sum_to_shape(&self, shape: &[usize]) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        if shape.len() > self.rank() {
            return msg(format!("sum_to_shape: {:?} cannot reduce to {shape:?}", self.shape()));
        }
        let lead = self.rank() - shape.len();
        let mut axes: Vec<isize> = (0..lead as isize).collect();
        for (i, &d) in shape.iter().enumerate() {
            if d == 1 && self.shape()[lead + i] != 1 {
                axes.push((lead + i) as isize);
            } else if d != self.shape()[lead + i] {
                return msg(format!("sum_to_shape: {:?} cannot reduce to {shape:?}", self.shape()));
            }
        }
        let s = if axes.is_empty() { self.clone() } else { self.sum(&axes, true)? };
        s.reshape(shape)
    }

    /// Softmax along `axis`.
    pub fn softmax(&self, axis: isize) -> Result<Tensor> {
        let a = self.axis(axis)?;
        let out = {
            let s = self.storage();
            Tensor::from_storage(Dispatch.softmax((&*s, self.layout()), a, false)?, self.shape())
        };
        Ok(record(out, "softmax", &[self], move |ctx, g| {
            let y = ctx.out()?;
            let dot = g.mul(y)?.sum(&[a as isize], true)?;
            Ok(vec![Some(y.mul(&g.sub(&dot)?)?)])
        }))
    }

    /// log-softmax along `axis`.
    pub fn log_softmax(&self, axis: isize) -> Result<Tensor> {
        let a = self.axis(axis)?;
        let out = {
            let s = self.storage();
            Tensor::from_storage(Dispatch.softmax((&*s, self.layout()), a, true)?, self.shape())
        };
        Ok(record(out, "log_softmax", &[self], move |ctx, g| {
            let p = ctx.out()?.exp()?;
            Ok(vec![Some(g.sub(&p.mul(&g.sum(&[a as isize], true)?)?)?)])
        }))
    }

    /// Inclusive cumulative sum along `axis`.
    pub fn cumsum(&self, axis: isize) -> Result<Tensor> {
        let a = self.axis(axis)?;
        let out = {
            let s = self.storage();
            Tensor::from_storage(Dispatch.cumsum((&*s, self.layout()), a)?, self.shape())
        };
        Ok(record(out, "cumsum", &[self], move |_, g| {
            let ax = a as isize;
            Ok(vec![Some(g.flip(&[ax])?.cumsum(ax)?.flip(&[ax])?)])
        }))
    }
}
