//! Attention (`cuda/kernels/attention.cu`).

use super::{Cuda, CudaStorage};
use scorch_ops::cpu::attention::AttnGeom;
use scorch_ops::kernels::View;
use scorch_ops::{Error, Result};

fn absent(op: &str) -> Error {
    Error::Msg(format!("{op} has no CUDA kernel in this build yet; run it on the CPU"))
}

pub fn attention_fwd(
    _cu: &Cuda,
    _q: View<CudaStorage>,
    _k: View<CudaStorage>,
    _v: View<CudaStorage>,
    _mask: Option<View<CudaStorage>>,
    _scale: Option<f64>,
    _causal: bool,
) -> Result<(CudaStorage, CudaStorage, AttnGeom)> {
    Err(absent("attention"))
}

#[allow(clippy::too_many_arguments)]
pub fn attention_bwd(
    _cu: &Cuda,
    _q: View<CudaStorage>,
    _k: View<CudaStorage>,
    _v: View<CudaStorage>,
    _mask: Option<View<CudaStorage>>,
    _out: View<CudaStorage>,
    _lse: View<CudaStorage>,
    _grad_out: View<CudaStorage>,
    _scale: Option<f64>,
    _causal: bool,
) -> Result<(CudaStorage, CudaStorage, CudaStorage)> {
    Err(absent("attention backward"))
}
