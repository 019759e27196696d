//! Convolutions, pooling and resampling. conv2d, its data gradient and its weight gradient
//! are three functions whose backward rules call each other, so every order of derivative
//! (R1 penalties need the second) stays differentiable.

use crate::autograd::record;
use crate::backend::Dispatch;
use crate::error::{msg, Result};
use crate::tensor::{same_device, Tensor};
use scorch_ops::cpu::conv::Conv2dParams;
use scorch_ops::cpu::pool::Pool2d;
use scorch_ops::Kernels;

pub use scorch_ops::cpu::conv::Conv2dParams as ConvParams;

impl Tensor {
    /// 2-D convolution: `self [N,Cin,H,W]`, `w [Cout,Cin/g,kh,kw]`, optional bias `[Cout]`.
    pub fn conv2d(&self, w: &Tensor, b: Option<&Tensor>, p: Conv2dParams) -> Result<Tensor> {
        let y = match crate::autocast::plan(&[self, w]) {
            Some((orig, low)) => conv2d_nobias(&self.cast(low)?, &w.cast(low)?, p)?.cast(orig)?,
            None => conv2d_nobias(self, w, p)?,
        };
        match b {
            Some(b) => {
                if b.shape() != [w.shape()[0]] {
                    return msg(format!("conv2d bias {:?} must be [{}]", b.shape(), w.shape()[0]));
                }
                y.add(&b.reshape(&[1, b.numel(), 1, 1])?)
            }
            None => Ok(y),
        }
    }

    /// Transposed convolution: `self [N,Cin,H,W]`, `w [Cin,Cout/g,kh,kw]` (PyTorch's layout).
    pub fn conv_transpose2d(
        &self,
        w: &Tensor,
        b: Option<&Tensor>,
        p: Conv2dParams,
        output_padding: [usize; 2],
    ) -> Result<Tensor> {
        if self.rank() != 4 || w.rank() != 4 {
            return msg(format!("conv_transpose2d: input {:?} and weight {:?} must be 4-D", self.shape(), w.shape()));
        }
        let (h, wd) = (self.shape()[2], self.shape()[3]);
        let out_hw = |i: usize, k: usize, d: usize| -> Option<usize> {
            ((i - 1) * p.stride[d] + p.dilation[d] * (k - 1) + output_padding[d] + 1).checked_sub(2 * p.padding[d])
        };
        let (Some(ho), Some(wo)) = (out_hw(h, w.shape()[2], 0), out_hw(wd, w.shape()[3], 1)) else {
            return msg("conv_transpose2d: padding larger than the output");
        };
        // PyTorch also allows output_padding < dilation; scorch keeps conv_transpose the exact
        // adjoint of conv2d (so its gradients are conv2d again) and requires < stride.
        if output_padding[0] >= p.stride[0] || output_padding[1] >= p.stride[1] {
            return msg(format!(
                "conv_transpose2d: output_padding {output_padding:?} must be smaller than the stride {:?}",
                p.stride
            ));
        }
        let cout = w.shape()[1] * p.groups;
        let y = conv2d_bwd_data(self, w, [cout, ho, wo], p)?;
        match b {
            Some(b) => y.add(&b.reshape(&[1, b.numel(), 1, 1])?),
            None => Ok(y),
        }
    }

    /// Average pooling (padded zeros count, PyTorch's default).
    pub fn avg_pool2d(&self, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
        let p = Pool2d { kernel: [kernel; 2], stride: [stride; 2], padding: [padding; 2] };
        let out = {
            let s = self.storage();
            let o = Dispatch.avg_pool2d((&*s, self.layout()), p)?;
            let (ho, wo) = p.out_hw(self.shape()[2], self.shape()[3])?;
            Tensor::from_storage(o, &[self.shape()[0], self.shape()[1], ho, wo])
        };
        let hw = [self.shape()[2], self.shape()[3]];
        Ok(record(out, "avg_pool2d", &[self], move |_, g| Ok(vec![Some(avg_pool2d_bwd(g, hw, p)?)])))
    }

    /// Max pooling; the gradient goes to the chosen element of each window.
    pub fn max_pool2d(&self, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
        let p = Pool2d { kernel: [kernel; 2], stride: [stride; 2], padding: [padding; 2] };
        let (out, idx) = {
            let s = self.storage();
            let (o, i) = Dispatch.max_pool2d((&*s, self.layout()), p)?;
            let (ho, wo) = p.out_hw(self.shape()[2], self.shape()[3])?;
            let shape = [self.shape()[0], self.shape()[1], ho, wo];
            (Tensor::from_storage(o, &shape), Tensor::from_storage(i, &shape))
        };
        let (h, w) = (self.shape()[2], self.shape()[3]);
        let shape = self.shape().to_vec();
        Ok(record(out, "max_pool2d", &[self], move |_, g| {
            // Route through gather/scatter on flattened planes so it stays differentiable.
            let (n, c) = (shape[0], shape[1]);
            let gi = g.reshape(&[n, c, g.numel() / (n * c).max(1)])?;
            let ii = idx.reshape(&[n, c, idx.numel() / (n * c).max(1)])?;
            Ok(vec![Some(gi.scatter_add_into(2, &ii, &[n, c, h * w])?.reshape(&shape)?)])
        }))
    }

    /// Nearest-neighbour upsampling by an integer factor (a broadcast view, then a copy).
    pub fn upsample_nearest2d(&self, factor: usize) -> Result<Tensor> {
        if self.rank() != 4 || factor == 0 {
            return msg(format!("upsample_nearest2d: need [N,C,H,W] and factor ≥ 1, got {:?}", self.shape()));
        }
        let [n, c, h, w] = [self.shape()[0], self.shape()[1], self.shape()[2], self.shape()[3]];
        self.reshape(&[n, c, h, 1, w, 1])?.broadcast_to(&[n, c, h, factor, w, factor])?.reshape(&[
            n,
            c,
            h * factor,
            w * factor,
        ])
    }

    /// Bilinear resize (align_corners = false).
    pub fn upsample_bilinear2d(&self, oh: usize, ow: usize) -> Result<Tensor> {
        let out = {
            let s = self.storage();
            let o = Dispatch.upsample_bilinear2d((&*s, self.layout()), oh, ow)?;
            Tensor::from_storage(o, &[self.shape()[0], self.shape()[1], oh, ow])
        };
        let hw = [self.shape()[2], self.shape()[3]];
        Ok(record(out, "upsample_bilinear2d", &[self], move |_, g| Ok(vec![Some(bilinear_bwd(g, hw)?)])))
    }

    /// FIR resampling by 2 as in EDM's UNet blocks (`resample_filter`, e.g. `[1, 1]`):
    /// a depthwise conv with the normalised outer-product filter, stride 2 for `down`,
    /// transposed (×4 gain) for up. With `[1, 1]` this is 2×2 average pooling / nearest ×2.
    pub fn fir_resample2d(&self, filter: &[f64], up: bool) -> Result<Tensor> {
        if self.rank() != 4 || filter.is_empty() {
            return msg(format!("fir_resample2d: need [N,C,H,W] and a filter, got {:?}", self.shape()));
        }
        let c = self.shape()[1];
        let k = filter.len();
        let s: f64 = filter.iter().sum();
        let mut f2 = Vec::with_capacity(k * k);
        for a in filter {
            for b in filter {
                f2.push(a * b / (s * s) * if up { 4.0 } else { 1.0 });
            }
        }
        let kernel = Tensor::from_f64s(&f2, &[1, 1, k, k], self.dtype())?
            .to_device(self.device())?
            .broadcast_to(&[c, 1, k, k])?
            .contiguous()?;
        let pad = (k - 1) / 2;
        let p = Conv2dParams { stride: [2, 2], padding: [pad, pad], dilation: [1, 1], groups: c };
        if up {
            self.conv_transpose2d(&kernel, None, p, [0, 0])
        } else {
            self.conv2d(&kernel, None, p)
        }
    }
}

fn conv2d_nobias(x: &Tensor, w: &Tensor, p: Conv2dParams) -> Result<Tensor> {
    same_device("conv2d", &[x, w])?;
    let out = {
        let (a, b) = (x.storage(), w.storage());
        let (o, g) = Dispatch.conv2d((&*a, x.layout()), (&*b, w.layout()), p)?;
        Tensor::from_storage(o, &[g.n, g.cout, g.ho, g.wo])
    };
    let (xs, ws) = (x.clone(), w.clone());
    Ok(record(out, "conv2d", &[x, w], move |_, g| {
        let gx = if xs.requires_grad() {
            Some(conv2d_bwd_data(g, &ws, [xs.shape()[1], xs.shape()[2], xs.shape()[3]], p)?)
        } else {
            None
        };
        let gw = if ws.requires_grad() { Some(conv2d_bwd_weight(&xs, g, ws.shape(), p)?) } else { None };
        Ok(vec![gx, gw])
    }))
}

/// d conv2d / d input, applied to `gy` (also conv_transpose2d).
pub fn conv2d_bwd_data(gy: &Tensor, w: &Tensor, cin_hw: [usize; 3], p: Conv2dParams) -> Result<Tensor> {
    same_device("conv2d_bwd_data", &[gy, w])?;
    let out = {
        let (a, b) = (gy.storage(), w.storage());
        let o = Dispatch.conv2d_bwd_data((&*a, gy.layout()), (&*b, w.layout()), cin_hw, p)?;
        Tensor::from_storage(o, &[gy.shape()[0], cin_hw[0], cin_hw[1], cin_hw[2]])
    };
    let (gs, ws) = (gy.clone(), w.clone());
    Ok(record(out, "conv2d_bwd_data", &[gy, w], move |_, gg| {
        let a = if gs.requires_grad() { Some(conv2d_nobias(gg, &ws, p)?) } else { None };
        let b = if ws.requires_grad() { Some(conv2d_bwd_weight(gg, &gs, ws.shape(), p)?) } else { None };
        Ok(vec![a, b])
    }))
}

/// d conv2d / d weight, for input `x` and output gradient `gy`.
pub fn conv2d_bwd_weight(x: &Tensor, gy: &Tensor, wshape: &[usize], p: Conv2dParams) -> Result<Tensor> {
    same_device("conv2d_bwd_weight", &[x, gy])?;
    let ws: [usize; 4] =
        wshape.try_into().map_err(|_| crate::Error::Msg(format!("weight shape {wshape:?} must be 4-D")))?;
    let out = {
        let (a, b) = (x.storage(), gy.storage());
        Tensor::from_storage(Dispatch.conv2d_bwd_weight((&*a, x.layout()), (&*b, gy.layout()), ws, p)?, wshape)
    };
    let (xs, gs) = (x.clone(), gy.clone());
    Ok(record(out, "conv2d_bwd_weight", &[x, gy], move |_, gg| {
        let a = if xs.requires_grad() {
            Some(conv2d_bwd_data(&gs, gg, [xs.shape()[1], xs.shape()[2], xs.shape()[3]], p)?)
        } else {
            None
        };
        let b = if gs.requires_grad() { Some(conv2d_nobias(&xs, gg, p)?) } else { None };
        Ok(vec![a, b])
    }))
}

fn avg_pool2d_bwd(g: &Tensor, hw: [usize; 2], p: Pool2d) -> Result<Tensor> {
    let out = {
        let s = g.storage();
        Tensor::from_storage(
            Dispatch.avg_pool2d_bwd((&*s, g.layout()), hw, p)?,
            &[g.shape()[0], g.shape()[1], hw[0], hw[1]],
        )
    };
    Ok(record(out, "avg_pool2d_bwd", &[g], move |_, gg| {
        Ok(vec![Some(gg.avg_pool2d(p.kernel[0], p.stride[0], p.padding[0])?)])
    }))
}

fn bilinear_bwd(g: &Tensor, hw: [usize; 2]) -> Result<Tensor> {
    let out = {
        let s = g.storage();
        Tensor::from_storage(
            Dispatch.upsample_bilinear2d_bwd((&*s, g.layout()), hw)?,
            &[g.shape()[0], g.shape()[1], hw[0], hw[1]],
        )
    };
    let (oh, ow) = (g.shape()[2], g.shape()[3]);
    Ok(record(out, "upsample_bilinear2d_bwd", &[g], move |_, gg| Ok(vec![Some(gg.upsample_bilinear2d(oh, ow)?)])))
}
