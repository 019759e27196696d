//! Where a tensor lives.

use crate::error::{Error, Result};

/// A compute device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Device {
    #[default]
    Cpu,
    Cuda(usize),
}

impl Device {
    /// Parses `cpu`, `cuda`, `cuda:N`.
    pub fn parse(s: &str) -> Result<Device> {
        let s = s.trim().to_ascii_lowercase();
        if s == "cpu" {
            return Ok(Device::Cpu);
        }
        if s == "cuda" || s == "gpu" {
            return Ok(Device::Cuda(0));
        }
        if let Some(n) = s.strip_prefix("cuda:") {
            return n.parse().map(Device::Cuda).map_err(|_| Error::Device(format!("bad CUDA ordinal in {s:?}")));
        }
        Err(Error::Device(format!("unknown device {s:?}: use cpu, cuda or cuda:N")))
    }

    /// The device named by `SCORCH_DEVICE`, else the CPU.
    pub fn from_env() -> Result<Device> {
        match std::env::var("SCORCH_DEVICE") {
            Ok(s) if !s.is_empty() => Device::parse(&s),
            _ => Ok(Device::Cpu),
        }
    }

    /// Errors unless the device can run kernels here (for CUDA: the driver, a device with
    /// this ordinal, and NVRTC to compile the kernels), naming what is missing.
    pub fn check_available(self) -> Result<()> {
        match self {
            Device::Cpu => Ok(()),
            Device::Cuda(i) => cuda_backend(i).map(|_| ()),
        }
    }

    /// `cuda:i` when that device is usable, else the CPU.
    pub fn cuda_if_available(i: usize) -> Device {
        if Device::Cuda(i).check_available().is_ok() {
            Device::Cuda(i)
        } else {
            Device::Cpu
        }
    }

    /// The first GPU when one is usable, else the CPU.
    pub fn best() -> Device {
        Device::cuda_if_available(0)
    }

    /// Bytes held by tensors on this device, reserved by its pool, and the peak (CUDA only).
    pub fn memory_stats(self) -> Result<scorch_cuda::MemoryStats> {
        match self {
            Device::Cpu => Err(Error::Device("memory_stats is tracked for CUDA devices only".into())),
            Device::Cuda(i) => Ok(cuda_backend(i)?.dev.memory_stats()),
        }
    }

    /// Waits for all queued work on this device (a no-op on the CPU).
    pub fn synchronize(self) -> Result<()> {
        match self {
            Device::Cpu => Ok(()),
            Device::Cuda(i) => Ok(cuda_backend(i)?.synchronize()?),
        }
    }
}

static DEFAULT: std::sync::Mutex<Device> = std::sync::Mutex::new(Device::Cpu);

/// CUDA's deterministic mode (`SCORCH_DETERMINISTIC=1` turns it on at start): kernels that
/// would accumulate with order-varying atomics (the bf16/f16 conv weight gradient, the flash
/// attention backward) take fixed-order paths, so a GPU run repeats bit for bit. Slower.
pub fn set_deterministic(on: bool) {
    scorch_cuda::set_deterministic(on)
}

/// Whether CUDA's deterministic mode is on.
pub fn deterministic() -> bool {
    scorch_cuda::deterministic()
}

/// The device new tensors are created on when none is named (CPU unless set).
pub fn default_device() -> Device {
    *DEFAULT.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sets the device new tensors are created on (like `torch.set_default_device`); checks it.
pub fn set_default_device(d: Device) -> Result<()> {
    d.check_available()?;
    *DEFAULT.lock().unwrap_or_else(|p| p.into_inner()) = d;
    Ok(())
}

/// The CUDA backend of device `i`, with a clear error when CUDA or NVRTC is missing.
pub(crate) fn cuda_backend(i: usize) -> Result<scorch_cuda::Cuda> {
    if !scorch_cuda::nvrtc_available() {
        return Err(Error::Device(format!(
            "cuda:{i} requested, but libnvrtc (needed to compile scorch's kernels) could not be loaded: install the CUDA toolkit or the nvidia-cuda-nvrtc wheel and add its lib folder to LD_LIBRARY_PATH"
        )));
    }
    scorch_cuda::Cuda::new(i).map_err(|e| Error::Device(format!("cuda:{i} requested: {e}")))
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}
