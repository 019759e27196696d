//! One CUDA device: its context, its single stream, and the kernel modules compiled for its
//! architecture (loaded lazily, one per kernel family).

use crate::compile::{compile_cached, kernel_sources};
use crate::probe::{cuda_status, CudaStatus};
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream, DeviceRepr, LaunchConfig};
use cudarc::nvrtc::Ptx;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

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
    /// Device ordinal (`cuda:N`).
    pub ordinal: usize,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    functions: Mutex<HashMap<(&'static str, String), CudaFunction>>,
    blas: OnceLock<cudarc::cublas::CudaBlas>,
    driver_version: i32,
    pub(crate) allocated: AtomicU64,
    pub(crate) peak: AtomicU64,
}

/// Bytes held by scorch tensors on a device, what the driver's pool reserves, and the peak
/// of the first since the last reset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    pub allocated: u64,
    pub reserved: u64,
    pub peak: u64,
}

impl CudaDevice {
    /// The process-wide handle of device `ordinal`, opened on first use.
    pub fn get(ordinal: usize) -> Result<Arc<CudaDevice>, CudaError> {
        static DEVICES: OnceLock<Mutex<HashMap<usize, Arc<CudaDevice>>>> = OnceLock::new();
        let mut devs = DEVICES.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = devs.get(&ordinal) {
            return Ok(d.clone());
        }
        let d = CudaDevice::new(ordinal)?;
        devs.insert(ordinal, d.clone());
        Ok(d)
    }

    /// Opens device `ordinal`; a clear error (never a panic) when CUDA is missing.
    /// Prefer [`CudaDevice::get`], which shares one handle per device.
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
        // Keep freed memory in the driver's stream-ordered pool instead of returning it at
        // every synchronize (the default threshold 0 re-grows the pool every training step).
        // SAFETY: plain attribute set on the device's default pool.
        unsafe {
            if let Ok(pool) = cudarc::driver::result::device::get_default_mem_pool(ctx.cu_device()) {
                let mut thr: u64 = u64::MAX;
                cudarc::driver::result::mem_pool::set_attribute(
                    pool,
                    cudarc::driver::sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                    &mut thr as *mut u64 as *mut _,
                )
                .ok();
            }
        }
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
            ordinal,
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
            blas: OnceLock::new(),
            driver_version,
            allocated: AtomicU64::new(0),
            peak: AtomicU64::new(0),
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

    /// A kernel function by family and name (looked up once, then cached).
    pub fn function(&self, family: &'static str, name: &str) -> Result<CudaFunction, CudaError> {
        let key = (family, name.to_string());
        if let Some(f) = self.functions.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(f.clone());
        }
        let f = drv(&format!("{family}::{name}"), self.module(family)?.load_function(name))?;
        self.functions.lock().unwrap_or_else(|p| p.into_inner()).insert(key, f.clone());
        Ok(f)
    }

    /// The device's cuBLAS handle, bound to its stream (created on first use).
    pub fn blas(&self) -> Result<&cudarc::cublas::CudaBlas, CudaError> {
        if let Some(b) = self.blas.get() {
            return Ok(b);
        }
        // SAFETY: only dlopens the candidate names.
        if !unsafe { cudarc::cublas::sys::is_culib_present() } {
            return Err(CudaError::Unavailable(
                "libcublas could not be loaded (install the CUDA toolkit or the nvidia-cublas wheel and add its lib folder to LD_LIBRARY_PATH)".into(),
            ));
        }
        let b = drv("cublasCreate", cudarc::cublas::CudaBlas::new(self.stream.clone()))?;
        Ok(self.blas.get_or_init(|| b))
    }

    /// Memory held by tensors, reserved by the pool, and the peak since [`reset_peak`].
    ///
    /// [`reset_peak`]: CudaDevice::reset_peak
    pub fn memory_stats(&self) -> MemoryStats {
        let mut reserved = 0u64;
        // SAFETY: reads an attribute of the device's default pool into a u64.
        unsafe {
            if let Ok(pool) = cudarc::driver::result::device::get_default_mem_pool(self.ctx.cu_device()) {
                cudarc::driver::result::mem_pool::get_attribute(
                    pool,
                    cudarc::driver::sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT,
                    &mut reserved as *mut u64 as *mut _,
                )
                .ok();
            }
        }
        MemoryStats {
            allocated: self.allocated.load(Ordering::Relaxed),
            reserved,
            peak: self.peak.load(Ordering::Relaxed),
        }
    }

    /// Restarts the peak at the current allocation.
    pub fn reset_peak(&self) {
        self.peak.store(self.allocated.load(Ordering::Relaxed), Ordering::Relaxed);
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
