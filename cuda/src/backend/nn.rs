//! Norms, pooling and upsampling (`cuda/kernels/nn.cu`).

use super::{Cuda, CudaStorage};
use scorch_ops::cpu::norm::NormKind;
use scorch_ops::cpu::pool::Pool2d;
use scorch_ops::kernels::View;
use scorch_ops::{Error, Result};

fn absent(op: &str) -> Error {
    Error::Msg(format!("{op} has no CUDA kernel in this build yet; run it on the CPU"))
}

pub fn norm_fwd(
    _cu: &Cuda,
    _kind: NormKind,
    _x: View<CudaStorage>,
    _w: Option<View<CudaStorage>>,
    _b: Option<View<CudaStorage>>,
    _eps: f64,
) -> Result<(CudaStorage, CudaStorage, CudaStorage)> {
    Err(absent("norm"))
}

pub fn norm_bwd(
    _cu: &Cuda,
    _kind: NormKind,
    _gy: View<CudaStorage>,
    _x: View<CudaStorage>,
    _mean: &CudaStorage,
    _rstd: &CudaStorage,
    _w: Option<View<CudaStorage>>,
) -> Result<(CudaStorage, CudaStorage, CudaStorage)> {
    Err(absent("norm backward"))
}

pub fn avg_pool2d(_cu: &Cuda, _x: View<CudaStorage>, _p: Pool2d) -> Result<CudaStorage> {
    Err(absent("avg_pool2d"))
}

pub fn avg_pool2d_bwd(_cu: &Cuda, _gy: View<CudaStorage>, _hw: [usize; 2], _p: Pool2d) -> Result<CudaStorage> {
    Err(absent("avg_pool2d backward"))
}

pub fn max_pool2d(_cu: &Cuda, _x: View<CudaStorage>, _p: Pool2d) -> Result<(CudaStorage, CudaStorage)> {
    Err(absent("max_pool2d"))
}

pub fn upsample_bilinear2d(_cu: &Cuda, _x: View<CudaStorage>, _oh: usize, _ow: usize) -> Result<CudaStorage> {
    Err(absent("upsample_bilinear2d"))
}

pub fn upsample_bilinear2d_bwd(_cu: &Cuda, _gy: View<CudaStorage>, _hw: [usize; 2]) -> Result<CudaStorage> {
    Err(absent("upsample_bilinear2d backward"))
}
