//! Indexing (`cuda/kernels/index.cu`).

use super::{Cuda, CudaStorage};
use scorch_ops::kernels::View;
use scorch_ops::{Error, Result};

fn absent(op: &str) -> Error {
    Error::Msg(format!("{op} has no CUDA kernel in this build yet; run it on the CPU"))
}

pub fn index_select(_cu: &Cuda, _x: View<CudaStorage>, _dim: usize, _idx: View<CudaStorage>) -> Result<CudaStorage> {
    Err(absent("index_select"))
}

pub fn index_add(_cu: &Cuda, _src: View<CudaStorage>, _dim: usize, _idx: View<CudaStorage>, _size: usize) -> Result<CudaStorage> {
    Err(absent("index_add"))
}

pub fn gather(_cu: &Cuda, _x: View<CudaStorage>, _dim: usize, _idx: View<CudaStorage>) -> Result<CudaStorage> {
    Err(absent("gather"))
}

pub fn scatter_add(
    _cu: &Cuda,
    _src: View<CudaStorage>,
    _dim: usize,
    _idx: View<CudaStorage>,
    _shape: &[usize],
) -> Result<CudaStorage> {
    Err(absent("scatter_add"))
}
