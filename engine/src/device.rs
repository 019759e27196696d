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

    /// Errors unless the device can run kernels in this build.
    pub fn check_available(self) -> Result<()> {
        match self {
            Device::Cpu => Ok(()),
            Device::Cuda(i) => Err(Error::Device(format!(
                "cuda:{i} requested, but this build's CUDA backend has no kernels yet (the scorch-cuda crate is a placeholder until the CUDA backend lands); use --device cpu"
            ))),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}
