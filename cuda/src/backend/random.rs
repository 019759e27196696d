//! Philox random numbers (`cuda/kernels/rng.cu`): the same stream as the CPU for the same
//! seed and offset (f32 uniforms bit for bit; normals to f64 transcendental accuracy).

use super::{launch, Cuda, CudaStorage};
use crate::device::CudaDevice;
use scorch_ops::cpu::RandDist;
use scorch_ops::{DType, Error, Result};

pub fn random(cu: &Cuda, dtype: DType, n: usize, seed: u64, offset: u64, dist: RandDist) -> Result<CudaStorage> {
    let (code, a, b): (i32, f64, f64) = match dist {
        RandDist::Uniform(lo, hi) => (0, hi - lo, lo),
        RandDist::Normal(m, s) => (1, s, m),
    };
    let gen_dt = match dtype {
        DType::F64 => DType::F64,
        DType::F32 | DType::BF16 | DType::F16 => DType::F32,
        _ => return Err(Error::DType { op: "random", dtype }),
    };
    let out = cu.alloc(gen_dt, n)?;
    if n > 0 {
        let (yp, ni) = (out.ptr(), n as i64);
        let name = if gen_dt == DType::F64 { "random_f64" } else { "random_f32" };
        launch!(cu, "rng.cu", name, CudaDevice::cfg_1d(n.div_ceil(4)); &yp, &ni, &seed, &offset, &code, &a, &b)?;
    }
    if gen_dt == dtype {
        Ok(out)
    } else {
        super::elementwise::cast(cu, (&out, &scorch_ops::Layout::contiguous(&[n])), dtype)
    }
}

pub fn randint(cu: &Cuda, n: usize, lo: i64, hi: i64, seed: u64, offset: u64) -> Result<CudaStorage> {
    if hi <= lo {
        return Err(Error::Msg(format!("randint needs lo < hi, got [{lo}, {hi})")));
    }
    let u = random(cu, DType::F64, n, seed, offset, RandDist::Uniform(0.0, 1.0))?;
    let out = cu.alloc(DType::I64, n)?;
    if n > 0 {
        let (up, yp, ni, span) = (u.ptr(), out.ptr(), n as i64, hi - lo);
        launch!(cu, "rng.cu", "randint_i64", CudaDevice::cfg_1d(n); &up, &yp, &ni, &lo, &span)?;
    }
    Ok(out)
}
