//! One CUDA device: its context, its single stream, and the kernel modules compiled for its
//! architecture (loaded lazily, one per kernel family).

use crate::compile::{compile_cached, kernel_sources};
use crate::probe::{cuda_status, CudaStatus};
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream, DeviceRepr, LaunchConfig};
use cudarc::nvrtc::Ptx;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Errors of the CUDA backend, each naming what failed.
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    #[error("CUDA is not available: {0}")]
    Unavailable(String),
    #[error("CUDA driver call failed in {what}: {detail}")]
    Driver { what: String, detail: String },
    #[error(transparent)]
    Compile(#[from] crate::compile::CompileError),
    #[error("unknown kernel family {0}")]
    UnknownFamily(String),
}

pub(crate) fn drv<T, E: std::fmt::Debug>(what: &str, r: Result<T, E>) -> Result<T, CudaError> {
    r.map_err(|e| CudaError::Driver { what: what.to_string(), detail: format!("{e:?}") })
}

/// A strided view as the kernels see it (`struct Strided` in common.cuh).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Strided {
    pub shape: [i64; 8],
    pub strides: [i64; 8],
    pub offset: i64,
    pub rank: i32,
    pub contiguous: i32,
}

// SAFETY: #[repr(C)] plain data matching the C struct field for field.
unsafe impl DeviceRepr for Strided {}

impl Strided {
    /// From a layout of rank ≤ 8.
    pub fn from_layout(l: &scorch_ops::Layout) -> Result<Strided, CudaError> {
        if l.rank() > 8 {
            return Err(CudaError::Driver { what: "layout".into(), detail: format!("rank {} exceeds 8", l.rank()) });
        }
        let mut s = Strided {
            shape: [1; 8],
            strides: [0; 8],
            offset: l.offset as i64,
            rank: l.rank() as i32,
            contiguous: l.is_contiguous() as i32,
        };
        for d in 0..l.rank() {
            s.shape[d] = l.shape[d] as i64;
            s.strides[d] = l.strides[d] as i64;
        }
        Ok(s)
    }
}

/// A CUDA device with one stream and its loaded kernel modules.
pub struct CudaDevice {
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    /// `sm_XY` of the device.
    pub arch: String,
    pub name: String,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    driver_version: i32,
}

impl CudaDevice {
    /// Opens device `ordinal`; a clear error (never a panic) when CUDA is missing.
    pub fn new(ordinal: usize) -> Result<Arc<CudaDevice>, CudaError> {
        match cuda_status() {
            CudaStatus::Available { devices } if ordinal < devices => {}
            CudaStatus::Available { devices } => {
                return Err(CudaError::Unavailable(format!("cuda:{ordinal} requested, {devices} device(s) present")))
            }
            CudaStatus::Unavailable(why) => return Err(CudaError::Unavailable(why)),
        }
        let ctx = drv("cuCtx", CudaContext::new(ordinal))?;
        // One stream per device: the engine orders work itself, so cudarc's per-allocation
        // events are pure overhead. Must happen before the first allocation.
        // SAFETY: no allocations exist yet on this context.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let (maj, min) = drv("compute capability", ctx.compute_capability())?;
        let name = drv("device name", ctx.name())?;
        let mut driver_version = 0;
        // SAFETY: libcuda is present (probed); the pointer is valid.
        drv("cuDriverGetVersion", unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut driver_version) }.result())?;
        Ok(Arc::new(CudaDevice {
            ctx,
            stream,
            arch: format!("sm_{maj}{min}"),
            name,
            modules: Mutex::new(HashMap::new()),
            driver_version,
        }))
    }

    /// The CUDA driver version (e.g. 13000).
    pub fn driver_version(&self) -> i32 {
        self.driver_version
    }

    /// Loads (compiling through the cache on first use) a kernel family's module.
    pub fn module(&self, family: &'static str) -> Result<Arc<CudaModule>, CudaError> {
        let mut mods = self.modules.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = mods.get(family) {
            return Ok(m.clone());
        }
        let src = kernel_sources()
            .into_iter()
            .find(|s| s.name == family)
            .ok_or_else(|| CudaError::UnknownFamily(family.into()))?;
        let cubin = compile_cached(&src, &self.arch, &format!("driver {}", self.driver_version))?;
        let m = drv(&format!("loading {family}"), self.ctx.load_module(Ptx::from_binary(cubin)))?;
        mods.insert(family, m.clone());
        Ok(m)
    }

    /// A kernel function by family and name.
    pub fn function(&self, family: &'static str, name: &str) -> Result<CudaFunction, CudaError> {
        drv(&format!("{family}::{name}"), self.module(family)?.load_function(name))
    }

    /// A 1-D launch for `n` items: 256 threads per block, grid capped for grid-stride loops.
    pub fn cfg_1d(n: usize) -> LaunchConfig {
        let blocks = n.div_ceil(256).clamp(1, 65_535) as u32;
        LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
    }

    /// One block of 256 threads per row.
    pub fn cfg_rows(rows: usize) -> LaunchConfig {
        LaunchConfig { grid_dim: (rows.clamp(1, 65_535) as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
    }

    /// Waits for the stream.
    pub fn synchronize(&self) -> Result<(), CudaError> {
        drv("synchronize", self.stream.synchronize())
    }
}
