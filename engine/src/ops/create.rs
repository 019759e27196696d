//! Creating tensors: constants, ranges, data from Rust values, random draws.

use crate::device::cuda_backend;
use crate::error::{msg, Result};
use crate::rng::Generator;
use crate::tensor::Storage;
use crate::tensor::Tensor;
use crate::Device;
use scorch_ops::cpu::elementwise::UnaryOp;
use scorch_ops::cpu::{CpuStorage, RandDist};
use scorch_ops::{Cpu, DType, Elem, Kernels, Layout};

impl Tensor {
    /// A tensor of `shape` filled with `v`.
    pub fn full(shape: &[usize], v: f64, dtype: DType) -> Result<Tensor> {
        Tensor::full_on(shape, v, dtype, Tensor::default_device())
    }
    pub fn zeros(shape: &[usize], dtype: DType) -> Result<Tensor> {
        Tensor::full_on(shape, 0.0, dtype, Tensor::default_device())
    }
    /// A tensor of `shape` filled with `v` on `device`.
    pub fn full_on(shape: &[usize], v: f64, dtype: DType, device: Device) -> Result<Tensor> {
        let n = shape.iter().product();
        let st = match device {
            Device::Cpu => Storage::Cpu(CpuStorage::full(dtype, n, v)),
            Device::Cuda(i) => {
                let cu = cuda_backend(i)?;
                if v == 0.0 {
                    Storage::Cuda(cu.zeros(dtype, n)?)
                } else if dtype.is_float() {
                    let z = cu.zeros(dtype, n)?;
                    Storage::Cuda(cu.unary(UnaryOp::Affine(0.0, v), (&z, &Layout::contiguous(&[n])))?)
                } else {
                    Storage::Cuda(cu.upload(&CpuStorage::full(dtype, n, v))?)
                }
            }
        };
        Ok(Tensor::from_storage(st, shape))
    }
    /// Zeros on `device`.
    pub fn zeros_on(shape: &[usize], dtype: DType, device: Device) -> Result<Tensor> {
        Tensor::full_on(shape, 0.0, dtype, device)
    }
    /// A host buffer as a tensor on the default device.
    fn from_host(s: CpuStorage, shape: &[usize]) -> Result<Tensor> {
        let t = Tensor::from_storage(Storage::Cpu(s), shape);
        match Tensor::default_device() {
            Device::Cpu => Ok(t),
            d => t.to_device(d),
        }
    }
    pub fn ones(shape: &[usize], dtype: DType) -> Result<Tensor> {
        Tensor::full(shape, 1.0, dtype)
    }
    pub fn zeros_like(t: &Tensor) -> Result<Tensor> {
        Tensor::full_on(t.shape(), 0.0, t.dtype(), t.device())
    }
    pub fn ones_like(t: &Tensor) -> Result<Tensor> {
        Tensor::full_on(t.shape(), 1.0, t.dtype(), t.device())
    }
    pub fn full_like(t: &Tensor, v: f64) -> Result<Tensor> {
        Tensor::full_on(t.shape(), v, t.dtype(), t.device())
    }
    /// A 0-d tensor.
    pub fn scalar(v: f64, dtype: DType) -> Result<Tensor> {
        Tensor::full(&[], v, dtype)
    }
    /// `start, start+step, …` below `end`.
    pub fn arange(start: f64, end: f64, step: f64, dtype: DType) -> Result<Tensor> {
        if step == 0.0 || !step.is_finite() || !start.is_finite() || !end.is_finite() {
            return msg(format!("arange({start}, {end}, {step}): step must be finite and non-zero"));
        }
        let n = ((end - start) / step).ceil().max(0.0) as usize;
        let s = CpuStorage::from_f64_iter(dtype, (0..n).map(|i| start + i as f64 * step));
        Tensor::from_host(s, &[n])
    }
    /// `n` evenly spaced points from `start` to `end` inclusive.
    pub fn linspace(start: f64, end: f64, n: usize, dtype: DType) -> Result<Tensor> {
        let step = if n > 1 { (end - start) / (n - 1) as f64 } else { 0.0 };
        let s = CpuStorage::from_f64_iter(
            dtype,
            (0..n).map(|i| if i + 1 == n && n > 1 { end } else { start + i as f64 * step }),
        );
        Tensor::from_host(s, &[n])
    }
    /// The `n × n` identity.
    pub fn eye(n: usize, dtype: DType) -> Result<Tensor> {
        let s = CpuStorage::from_f64_iter(dtype, (0..n * n).map(|i| if i / n == i % n { 1.0 } else { 0.0 }));
        Tensor::from_host(s, &[n, n])
    }
    /// Takes ownership of `data` as a tensor of `shape`.
    pub fn from_vec<T: Elem>(data: Vec<T>, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if data.len() != n {
            return msg(format!("from_vec: {} values for shape {shape:?} ({n} elements)", data.len()));
        }
        let bytes: &[u8] = bytemuck::cast_slice(&data);
        Tensor::from_bytes(bytes, T::DTYPE, shape)
    }
    /// Copies `data` into a tensor of `shape`.
    pub fn from_slice<T: Elem>(data: &[T], shape: &[usize]) -> Result<Tensor> {
        Tensor::from_vec(data.to_vec(), shape)
    }
    /// f64 values converted to `dtype`.
    pub fn from_f64s(data: &[f64], shape: &[usize], dtype: DType) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if data.len() != n {
            return msg(format!("from_f64s: {} values for shape {shape:?} ({n} elements)", data.len()));
        }
        Tensor::from_host(CpuStorage::from_f64_iter(dtype, data.iter().copied()), shape)
    }
    /// Little-endian raw bytes (as written by `to_bytes` or safetensors).
    pub fn from_bytes(bytes: &[u8], dtype: DType, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if bytes.len() != n * dtype.size() {
            return msg(format!(
                "from_bytes: {} bytes for {dtype} shape {shape:?} (needs {})",
                bytes.len(),
                n * dtype.size()
            ));
        }
        Tensor::from_host(CpuStorage::from_bytes(dtype, bytes)?, shape)
    }

    /// Normal draws from `gen`'s Philox stream.
    pub fn randn(shape: &[usize], dtype: DType, gen: &Generator) -> Result<Tensor> {
        Tensor::random(shape, dtype, gen, RandDist::Normal(0.0, 1.0))
    }
    /// Uniform draws in [0, 1).
    pub fn rand(shape: &[usize], dtype: DType, gen: &Generator) -> Result<Tensor> {
        Tensor::random(shape, dtype, gen, RandDist::Uniform(0.0, 1.0))
    }
    /// Draws from a distribution.
    pub fn random(shape: &[usize], dtype: DType, gen: &Generator, dist: RandDist) -> Result<Tensor> {
        Tensor::random_on(shape, dtype, gen, dist, Tensor::default_device())
    }
    /// Draws from a distribution on `device`: the same values on every device for the same
    /// generator state (one Philox stream).
    pub fn random_on(shape: &[usize], dtype: DType, gen: &Generator, dist: RandDist, device: Device) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let (seed, offset) = gen.reserve(n);
        let st = match device {
            Device::Cpu => Storage::Cpu(Cpu.random(dtype, n, seed, offset, dist)?),
            Device::Cuda(i) => Storage::Cuda(cuda_backend(i)?.random(dtype, n, seed, offset, dist)?),
        };
        Ok(Tensor::from_storage(st, shape))
    }
    /// Integers uniform in [lo, hi), i64.
    pub fn randint(shape: &[usize], lo: i64, hi: i64, gen: &Generator) -> Result<Tensor> {
        Tensor::randint_on(shape, lo, hi, gen, Tensor::default_device())
    }
    /// Integers uniform in [lo, hi) on `device`.
    pub fn randint_on(shape: &[usize], lo: i64, hi: i64, gen: &Generator, device: Device) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let (seed, offset) = gen.reserve(n);
        let st = match device {
            Device::Cpu => Storage::Cpu(Cpu.randint(n, lo, hi, seed, offset)?),
            Device::Cuda(i) => Storage::Cuda(cuda_backend(i)?.randint(n, lo, hi, seed, offset)?),
        };
        Ok(Tensor::from_storage(st, shape))
    }
    /// 1 with probability `p` (per element of `self`, which holds probabilities), else 0.
    pub fn bernoulli(&self, gen: &Generator) -> Result<Tensor> {
        let u = Tensor::random_on(self.shape(), self.dtype(), gen, RandDist::Uniform(0.0, 1.0), self.device())?;
        u.lt(self)?.cast(self.dtype())
    }
    /// The device this tensor would be created on by default.
    pub fn default_device() -> Device {
        crate::device::default_device()
    }
}
