//! The rayon CPU reference kernels. One file per family; `cuda/` mirrors the names.

pub mod alloc;
pub mod attention;
pub mod conv;
pub mod elementwise;
pub mod fused;
pub mod index;
pub mod matmul;
pub mod norm;
pub mod optim;
pub mod pool;
pub mod reduce;
pub mod storage;

pub use storage::CpuStorage;

use crate::{philox, DType, Error, Result};

/// Random fill from the Philox stream (see `philox` for the stream definition).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RandDist {
    /// Uniform in [lo, hi).
    Uniform(f64, f64),
    /// Normal with mean and std.
    Normal(f64, f64),
}

/// `n` random values of `dtype` from (seed, offset). Halves are drawn in f32 and rounded.
pub fn random(dtype: DType, n: usize, seed: u64, offset: u64, dist: RandDist) -> Result<CpuStorage> {
    let affine = |v: &mut [f64], a: f64, b: f64| v.iter_mut().for_each(|x| *x = *x * a + b);
    match dtype {
        DType::F64 => {
            let mut v = vec![0f64; n];
            match dist {
                RandDist::Uniform(lo, hi) => {
                    philox::fill_uniform_f64(seed, offset, &mut v);
                    affine(&mut v, hi - lo, lo);
                }
                RandDist::Normal(m, s) => {
                    philox::fill_normal_f64(seed, offset, &mut v);
                    affine(&mut v, s, m);
                }
            }
            Ok(CpuStorage::F64(v))
        }
        DType::F32 | DType::BF16 | DType::F16 => {
            let mut v = vec![0f32; n];
            let (a, b) = match dist {
                RandDist::Uniform(lo, hi) => {
                    philox::fill_uniform_f32(seed, offset, &mut v);
                    (hi - lo, lo)
                }
                RandDist::Normal(m, s) => {
                    philox::fill_normal_f32(seed, offset, &mut v);
                    (s, m)
                }
            };
            if a != 1.0 || b != 0.0 {
                let (a, b) = (a as f32, b as f32);
                v.iter_mut().for_each(|x| *x = *x * a + b);
            }
            Ok(elementwise::f32_to_dtype(v, dtype))
        }
        _ => Err(Error::DType { op: "random (use randint for integers)", dtype }),
    }
}

/// Uniform integers in [lo, hi) from (seed, offset), as i64.
pub fn randint(n: usize, lo: i64, hi: i64, seed: u64, offset: u64) -> Result<CpuStorage> {
    if hi <= lo {
        return Err(Error::Msg(format!("randint needs lo < hi, got [{lo}, {hi})")));
    }
    let mut u = vec![0f64; n];
    philox::fill_uniform_f64(seed, offset, &mut u);
    let span = (hi - lo) as f64;
    Ok(CpuStorage::I64(u.into_iter().map(|x| lo + ((x * span) as i64).min(hi - lo - 1)).collect()))
}
