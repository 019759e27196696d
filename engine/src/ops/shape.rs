//! Views and data movement: reshape, permute, narrow, expand, squeeze, cat, pad, flip, …
//! Views share storage; their backward rules move gradients back to the input's shape.

use crate::autograd::record;
use crate::backend::Dispatch;
use crate::error::{msg, Result};
use crate::tensor::{same_device, Tensor};
use scorch_ops::{DType, Kernels, Layout};

impl Tensor {
    /// Contiguous copy (or `self` when already contiguous).
    pub fn contiguous(&self) -> Result<Tensor> {
        if self.is_contiguous() {
            return Ok(self.clone());
        }
        let out = {
            let s = self.storage();
            Tensor::from_storage(Dispatch.contiguous((&*s, self.layout()))?, self.shape())
        };
        Ok(record(out, "contiguous", &[self], |_, g| Ok(vec![Some(g.clone())])))
    }

    /// New shape with the same elements; a view when the strides allow, else a copy.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if n != self.numel() {
            return msg(format!(
                "reshape: cannot view {:?} ({} elements) as {shape:?} ({n} elements)",
                self.shape(),
                self.numel()
            ));
        }
        let out = match self.layout().reshape(shape) {
            Some(l) => self.view_with(l),
            None => {
                let c = {
                    let s = self.storage();
                    Tensor::from_storage(Dispatch.contiguous((&*s, self.layout()))?, self.shape())
                };
                c.view_with(Layout::contiguous(shape))
            }
        };
        let old = self.shape().to_vec();
        Ok(record(out, "reshape", &[self], move |_, g| Ok(vec![Some(g.reshape(&old)?)])))
    }

    /// Reshape with one `-1` inferred.
    pub fn reshape_infer(&self, shape: &[isize]) -> Result<Tensor> {
        let known: usize = shape.iter().filter(|&&d| d >= 0).map(|&d| d as usize).product();
        let holes = shape.iter().filter(|&&d| d < 0).count();
        if holes > 1 || (holes == 1 && (known == 0 || !self.numel().is_multiple_of(known))) {
            return msg(format!("reshape: cannot infer {shape:?} for {:?}", self.shape()));
        }
        let s: Vec<usize> =
            shape.iter().map(|&d| if d < 0 { self.numel() / known.max(1) } else { d as usize }).collect();
        self.reshape(&s)
    }

    /// Reorders dimensions (a view).
    pub fn permute(&self, dims: &[usize]) -> Result<Tensor> {
        let out = self.view_with(self.layout().permute(dims)?);
        let mut inv = vec![0; dims.len()];
        for (i, &d) in dims.iter().enumerate() {
            inv[d] = i;
        }
        Ok(record(out, "permute", &[self], move |_, g| Ok(vec![Some(g.permute(&inv)?)])))
    }

    /// Swaps two dimensions (negative counts from the end).
    pub fn transpose(&self, a: isize, b: isize) -> Result<Tensor> {
        let (a, b) = (self.axis(a)?, self.axis(b)?);
        let mut p: Vec<usize> = (0..self.rank()).collect();
        p.swap(a, b);
        self.permute(&p)
    }

    /// Matrix transpose of the last two dims.
    pub fn t(&self) -> Result<Tensor> {
        self.transpose(-2, -1)
    }

    /// `len` elements of `dim` from `start` (a view).
    pub fn narrow(&self, dim: isize, start: usize, len: usize) -> Result<Tensor> {
        self.slice(dim, start, start + len, 1)
    }

    /// Elements `start..end` of `dim`, every `step`-th (a view).
    pub fn slice(&self, dim: isize, start: usize, end: usize, step: usize) -> Result<Tensor> {
        let d = self.axis(dim)?;
        if end < start || end > self.shape()[d] {
            return msg(format!("slice {start}..{end} out of range for dim {d} of {:?}", self.shape()));
        }
        let len = if step == 0 { 0 } else { (end - start).div_ceil(step) };
        let out = self.view_with(self.layout().narrow(d, start, len, step)?);
        let full = self.shape().to_vec();
        Ok(record(out, "slice", &[self], move |_, g| Ok(vec![Some(g.slice_backward(&full, d, start, step)?)])))
    }

    /// Zeros of `full` shape with `self` written at `start, start+step, …` along `dim`
    /// (the adjoint of `slice`).
    pub(crate) fn slice_backward(&self, full: &[usize], dim: usize, start: usize, step: usize) -> Result<Tensor> {
        let out = Tensor::zeros_on(full, self.dtype(), self.device())?;
        let len = self.shape()[dim];
        let dst = out.layout().narrow(dim, start, len, step)?;
        out.write_view(&dst, self)?;
        let out = Tensor::from_parts(out.storage_cell().clone(), Layout::contiguous(full));
        Ok(record(out, "slice_backward", &[self], move |_, g| {
            let end = start + len.saturating_sub(1) * step + usize::from(len > 0);
            Ok(vec![Some(g.slice(dim as isize, start, end, step)?)])
        }))
    }

    /// Copies `src` into the view `dst` of this tensor's storage (no autograd).
    pub(crate) fn write_view(&self, dst: &Layout, src: &Tensor) -> Result<()> {
        same_device("copy", &[self, src])?;
        if src.same_storage(self) {
            let tmp = src.detach().contiguous_raw()?;
            return self.write_view(dst, &tmp);
        }
        let s = src.storage();
        let mut d = self.storage_cell().write();
        Dispatch.copy_into(&mut d, dst, (&*s, src.layout()))?;
        Ok(())
    }

    pub(crate) fn contiguous_raw(&self) -> Result<Tensor> {
        let s = self.storage();
        Ok(Tensor::from_storage(Dispatch.contiguous((&*s, self.layout()))?, self.shape()))
    }

    /// Broadcasts to `shape` (a view with zero strides).
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Tensor> {
        if shape == self.shape() {
            return Ok(self.clone());
        }
        let out = self.view_with(self.layout().broadcast_to(shape)?);
        let old = self.shape().to_vec();
        Ok(record(out, "broadcast_to", &[self], move |_, g| Ok(vec![Some(g.sum_to_shape(&old)?)])))
    }

    /// Alias of [`Tensor::broadcast_to`].
    pub fn expand(&self, shape: &[usize]) -> Result<Tensor> {
        self.broadcast_to(shape)
    }

    /// Inserts a size-1 dim at `dim` (may equal the rank; negative counts from the end).
    pub fn unsqueeze(&self, dim: isize) -> Result<Tensor> {
        let r = self.rank() as isize + 1;
        let d = if dim < 0 { dim + r } else { dim };
        if d < 0 || d >= r {
            return msg(format!("unsqueeze: dim {dim} out of range for rank {}", self.rank()));
        }
        let mut s = self.shape().to_vec();
        s.insert(d as usize, 1);
        self.reshape(&s)
    }

    /// Removes `dim` if it has size 1.
    pub fn squeeze(&self, dim: isize) -> Result<Tensor> {
        let d = self.axis(dim)?;
        if self.shape()[d] != 1 {
            return msg(format!("squeeze: dim {d} of {:?} is not 1", self.shape()));
        }
        let mut s = self.shape().to_vec();
        s.remove(d);
        self.reshape(&s)
    }

    /// Removes all size-1 dims.
    pub fn squeeze_all(&self) -> Result<Tensor> {
        let s: Vec<usize> = self.shape().iter().copied().filter(|&d| d != 1).collect();
        self.reshape(&s)
    }

    /// Merges dims `start..=end`.
    pub fn flatten(&self, start: isize, end: isize) -> Result<Tensor> {
        if self.rank() == 0 {
            return self.reshape(&[1]);
        }
        let (a, b) = (self.axis(start)?, self.axis(end)?);
        if a > b {
            return msg(format!("flatten: start {a} after end {b}"));
        }
        let s = self.shape();
        let mut out: Vec<usize> = s[..a].to_vec();
        out.push(s[a..=b].iter().product());
        out.extend_from_slice(&s[b + 1..]);
        self.reshape(&out)
    }

    /// Concatenates along `dim`; all other dims must match.
    pub fn cat(ts: &[Tensor], dim: isize) -> Result<Tensor> {
        let Some(first) = ts.first() else {
            return msg("cat of an empty list");
        };
        let d = first.axis(dim)?;
        let dtype = first.dtype();
        let mut shape = first.shape().to_vec();
        let mut total = 0;
        for t in ts {
            if t.rank() != first.rank() || t.dtype() != dtype {
                return msg(format!("cat: {:?} {} vs {:?} {}", t.shape(), t.dtype(), first.shape(), dtype));
            }
            for (i, (&x, &y)) in t.shape().iter().zip(first.shape()).enumerate() {
                if i != d && x != y {
                    return msg(format!(
                        "cat along {d}: shapes {:?} and {:?} differ in dim {i}",
                        first.shape(),
                        t.shape()
                    ));
                }
            }
            total += t.shape()[d];
        }
        shape[d] = total;
        let out = Tensor::zeros_on(&shape, dtype, first.device())?;
        let mut at = 0;
        let mut starts = Vec::new();
        for t in ts {
            let len = t.shape()[d];
            out.write_view(&out.layout().narrow(d, at, len, 1)?, t)?;
            starts.push((at, len));
            at += len;
        }
        let out = Tensor::from_parts(out.storage_cell().clone(), Layout::contiguous(&shape));
        let refs: Vec<&Tensor> = ts.iter().collect();
        Ok(record(out, "cat", &refs, move |_, g| {
            starts.iter().map(|&(s, l)| g.narrow(d as isize, s, l).map(Some)).collect()
        }))
    }

    /// Stacks equal-shape tensors along a new dim.
    pub fn stack(ts: &[Tensor], dim: isize) -> Result<Tensor> {
        let us: Vec<Tensor> = ts.iter().map(|t| t.unsqueeze(dim)).collect::<Result<_>>()?;
        Tensor::cat(&us, dim)
    }

    /// Splits into pieces of `size` along `dim` (the last may be shorter).
    pub fn split(&self, size: usize, dim: isize) -> Result<Vec<Tensor>> {
        let d = self.axis(dim)?;
        if size == 0 {
            return msg("split size must be positive");
        }
        let n = self.shape()[d];
        (0..n).step_by(size).map(|s| self.narrow(d as isize, s, size.min(n - s))).collect()
    }

    /// Splits into `n` nearly equal pieces along `dim`.
    pub fn chunk(&self, n: usize, dim: isize) -> Result<Vec<Tensor>> {
        let d = self.axis(dim)?;
        if n == 0 {
            return msg("chunk count must be positive");
        }
        self.split(self.shape()[d].div_ceil(n).max(1), dim)
    }

    /// Constant padding: `pads[i] = (before, after)` for the last `pads.len()` dims.
    pub fn pad(&self, pads: &[(usize, usize)], value: f64) -> Result<Tensor> {
        if pads.len() > self.rank() {
            return msg(format!("pad: {} pairs for a rank-{} tensor", pads.len(), self.rank()));
        }
        let lead = self.rank() - pads.len();
        let mut shape = self.shape().to_vec();
        let mut l = Layout::contiguous(&[]);
        for (i, &(b, a)) in pads.iter().enumerate() {
            shape[lead + i] += b + a;
        }
        let out = Tensor::full_on(&shape, value, self.dtype(), self.device())?;
        l.clone_from(out.layout());
        for (i, &(b, _)) in pads.iter().enumerate() {
            l = l.narrow(lead + i, b, self.shape()[lead + i], 1)?;
        }
        out.write_view(&l, self)?;
        let out = Tensor::from_parts(out.storage_cell().clone(), Layout::contiguous(&shape));
        let (pads, lead) = (pads.to_vec(), lead);
        let inner = self.shape().to_vec();
        Ok(record(out, "pad", &[self], move |_, g| {
            let mut r = g.clone();
            for (i, &(b, _)) in pads.iter().enumerate() {
                r = r.narrow((lead + i) as isize, b, inner[lead + i])?;
            }
            Ok(vec![Some(r)])
        }))
    }

    /// Reverses the order along each of `dims`.
    pub fn flip(&self, dims: &[isize]) -> Result<Tensor> {
        let mut r = self.clone();
        for &d in dims {
            let ax = self.axis(d)?;
            let n = self.shape()[ax];
            let idx = Tensor::from_vec((0..n as i64).rev().collect::<Vec<i64>>(), &[n])?.to_device(self.device())?;
            r = r.index_select(ax as isize, &idx)?;
        }
        Ok(r)
    }

    /// Copies `src` (broadcast to this shape) into this tensor in place. Errors on tensors
    /// that take part in autograd unless gradient recording is off.
    pub fn assign(&self, src: &Tensor) -> Result<()> {
        if crate::autograd::is_grad_enabled() && (self.requires_grad() || src.requires_grad()) {
            return msg("in-place assign on a tensor that requires grad; wrap the update in no_grad()");
        }
        let src = if src.dtype() != self.dtype() { src.cast(self.dtype())? } else { src.clone() };
        let src = src.broadcast_to(self.shape())?;
        self.write_view(&self.layout().clone(), &src)
    }

    /// In-place fill.
    pub fn fill_(&self, v: f64) -> Result<()> {
        self.assign(&Tensor::full_on(&[], v, self.dtype(), self.device())?)
    }

    /// Deep copy with its own storage (differentiable).
    pub fn copy(&self) -> Result<Tensor> {
        let out = self.contiguous_raw()?;
        Ok(record(out, "copy", &[self], |_, g| Ok(vec![Some(g.clone())])))
    }

    /// One-hot encoding of integer classes: `[..] → [.., n]` in `dtype`.
    pub fn one_hot(&self, n: usize, dtype: DType) -> Result<Tensor> {
        let idx = self.to_vec_f64()?;
        let mut v = vec![0f64; idx.len() * n];
        for (i, &c) in idx.iter().enumerate() {
            if c < 0.0 || c as usize >= n || c.fract() != 0.0 {
                return msg(format!("one_hot: class {c} out of range 0..{n}"));
            }
            v[i * n + c as usize] = 1.0;
        }
        let mut shape = self.shape().to_vec();
        shape.push(n);
        Tensor::from_f64s(&v, &shape, dtype)?.to_device(self.device())
    }
}
