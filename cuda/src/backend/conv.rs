//! Convolution (`cuda/kernels/conv.cu`).

use super::{Cuda, CudaStorage};
use scorch_ops::cpu::conv::{Conv2dParams, ConvGeom};
use scorch_ops::kernels::View;
use scorch_ops::{Error, Result};

fn absent(op: &str) -> Error {
    Error::Msg(format!("{op} has no CUDA kernel in this build yet; run it on the CPU"))
}

pub fn conv2d(_cu: &Cuda, _x: View<CudaStorage>, _w: View<CudaStorage>, _p: Conv2dParams) -> Result<(CudaStorage, ConvGeom)> {
    Err(absent("conv2d"))
}

pub fn conv2d_bwd_data(
    _cu: &Cuda,
    _gy: View<CudaStorage>,
    _w: View<CudaStorage>,
    _cin_hw: [usize; 3],
    _p: Conv2dParams,
) -> Result<CudaStorage> {
    Err(absent("conv2d backward (data)"))
}

pub fn conv2d_bwd_weight(
    _cu: &Cuda,
    _x: View<CudaStorage>,
    _gy: View<CudaStorage>,
    _wshape: [usize; 4],
    _p: Conv2dParams,
) -> Result<CudaStorage> {
    Err(absent("conv2d backward (weight)"))
}
