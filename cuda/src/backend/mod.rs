//! The [`Kernels`] trait on a CUDA device: [`CudaStorage`] buffers and the [`Cuda`] backend.
//!
//! Buffers are untyped device bytes with a dtype; kernels receive raw device pointers (a
//! `u64` has the ABI of a C pointer), so views with offsets need no copies. Every kernel runs
//! on the device's one stream; frees are stream-ordered (`cuMemFreeAsync` on that stream), so a
//! buffer dropped right after a launch that reads it stays valid for that launch.
//!
//! Outputs are new contiguous buffers, exactly as on the CPU backend. Families: elementwise
//! and casts ([`elementwise`]), reductions / softmax / cumsum ([`reduce`]), cuBLAS matrix
//! products ([`matmul`]), Philox random numbers ([`random`]), the fused paper losses
//! ([`fused`]), convolution ([`conv`]), norms / pooling / upsampling ([`nn`]), attention
//! ([`attention`]) and indexing ([`index`]).

pub mod attention;
pub mod conv;
pub mod elementwise;
pub mod fused;
pub mod index;
pub mod matmul;
pub mod nn;
pub mod optim;
pub mod random;
pub mod reduce;

use crate::device::{CudaDevice, CudaError, Strided};
use cudarc::driver::{CudaSlice, DevicePtr, LaunchConfig};
use scorch_ops::cpu::attention::AttnGeom;
use scorch_ops::cpu::conv::{Conv2dParams, ConvGeom};
use scorch_ops::cpu::elementwise::{BinaryOp, UnaryOp};
use scorch_ops::cpu::fused::KlubParams;
use scorch_ops::cpu::norm::NormKind;
use scorch_ops::cpu::pool::Pool2d;
use scorch_ops::cpu::reduce::ReduceOp;
use scorch_ops::cpu::{CpuStorage, RandDist};
use scorch_ops::kernels::{Kernels, View};
use scorch_ops::{DType, Error, Layout, Result};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Launches `name` from kernel family `fam` with `cfg`; arguments are references to values
/// bound beforehand (cudarc stores pointers to them).
macro_rules! launch {
    ($cuda:expr, $fam:expr, $name:expr, $cfg:expr; $($arg:expr),* $(,)?) => {{
        let name: &str = &$name;
        let f = $cuda.dev.function($fam, name).map_err($crate::backend::err)?;
        let mut b = $cuda.dev.stream.launch_builder(&f);
        $( cudarc::driver::PushKernelArg::arg(&mut b, $arg); )*
        // SAFETY: argument types and order match the kernel's extern "C" signature (checked
        // by the CPU-parity suite); pointers come from live buffers on this stream.
        unsafe { b.launch($cfg) }
            .map(|_| ())
            .map_err(|e| scorch_ops::Error::Msg(format!("CUDA launch of {}::{name} failed: {e:?}", $fam)))
    }};
}
pub(crate) use launch;

/// 0: not read yet, 1: off, 2: on.
static DETERMINISTIC: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Whether kernels that accumulate with float atomics in an order that varies between runs
/// take a fixed-order path instead: the bf16/f16 conv weight gradient runs without its
/// split reduction, the attention backward takes the cuBLAS path instead of the flash
/// kernel's atomic dQ, and index_add / scatter_add sum each output's sources in the CPU's
/// order (the indices are read back to the host to group them). Slower; on from
/// `SCORCH_DETERMINISTIC=1` or [`set_deterministic`].
pub fn deterministic() -> bool {
    match DETERMINISTIC.load(Ordering::Relaxed) {
        0 => {
            let on = std::env::var("SCORCH_DETERMINISTIC").is_ok_and(|v| v == "1" || v == "true");
            // A set_deterministic that raced this first read wins.
            match DETERMINISTIC.compare_exchange(0, if on { 2 } else { 1 }, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => on,
                Err(v) => v == 2,
            }
        }
        v => v == 2,
    }
}

/// Turns the deterministic mode of [`deterministic`] on or off for the whole process.
pub fn set_deterministic(on: bool) {
    DETERMINISTIC.store(if on { 2 } else { 1 }, Ordering::Relaxed);
}

/// A CUDA error as a kernel error.
pub(crate) fn err(e: CudaError) -> Error {
    Error::Msg(e.to_string())
}

/// Kernel-name suffix of a float dtype.
pub(crate) fn sfx(op: &'static str, dt: DType) -> Result<&'static str> {
    match dt {
        DType::F32 => Ok("f32"),
        DType::F64 => Ok("f64"),
        DType::BF16 => Ok("bf16"),
        DType::F16 => Ok("f16"),
        _ => Err(Error::DType { op, dtype: dt }),
    }
}

/// A device buffer of `len` elements of `dtype`.
pub struct CudaStorage {
    buf: CudaSlice<u8>,
    dtype: DType,
    len: usize,
    dev: Arc<CudaDevice>,
}

impl std::fmt::Debug for CudaStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaStorage({} x {}, cuda:{})", self.len, self.dtype, self.dev.ordinal)
    }
}

impl Drop for CudaStorage {
    fn drop(&mut self) {
        self.dev.allocated.fetch_sub(self.buf.len() as u64, Ordering::Relaxed);
    }
}

impl CudaStorage {
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn device(&self) -> &Arc<CudaDevice> {
        &self.dev
    }
    /// Device ordinal.
    pub fn ordinal(&self) -> usize {
        self.dev.ordinal
    }
    /// Device address of element 0.
    pub fn ptr(&self) -> u64 {
        self.buf.device_ptr(&self.dev.stream).0
    }
    /// Device address of element `i`.
    pub fn ptr_at(&self, i: usize) -> u64 {
        self.ptr() + (i * self.dtype.size()) as u64
    }
    /// Copies the whole buffer to the host.
    pub fn to_cpu(&self) -> Result<CpuStorage> {
        let bytes =
            self.dev.stream.clone_dtoh(&self.buf).map_err(|e| Error::Msg(format!("CUDA download failed: {e:?}")))?;
        CpuStorage::from_bytes(self.dtype, &bytes[..self.len * self.dtype.size()])
    }
}

/// Whether new buffers are filled with NaN bytes (`SCORCH_CUDA_POISON=1`): the parity check
/// sets it so a kernel that skips an output element cannot pass by reading stale zeros.
fn poison() -> bool {
    static P: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *P.get_or_init(|| std::env::var("SCORCH_CUDA_POISON").is_ok_and(|v| v == "1"))
}

/// The CUDA backend of one device.
#[derive(Clone)]
pub struct Cuda {
    pub dev: Arc<CudaDevice>,
}

impl std::fmt::Debug for Cuda {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cuda({}, {})", self.dev.ordinal, self.dev.name)
    }
}

impl Cuda {
    /// The backend of device `ordinal`; a clear error when CUDA is missing.
    pub fn new(ordinal: usize) -> std::result::Result<Cuda, CudaError> {
        Ok(Cuda { dev: CudaDevice::get(ordinal)? })
    }

    /// The backend owning `s`.
    pub fn of(s: &CudaStorage) -> Cuda {
        Cuda { dev: s.dev.clone() }
    }

    /// An uninitialised buffer (NaN-poisoned under `SCORCH_CUDA_POISON=1`).
    pub fn alloc(&self, dtype: DType, len: usize) -> Result<CudaStorage> {
        let bytes = (len * dtype.size()).max(16);
        // SAFETY: every kernel writes its whole output before it is read.
        let buf = unsafe { self.dev.stream.alloc::<u8>(bytes) }.map_err(|e| {
            Error::Msg(format!("CUDA out of memory allocating {bytes} bytes on cuda:{}: {e:?}", self.dev.ordinal))
        })?;
        let now = self.dev.allocated.fetch_add(bytes as u64, Ordering::Relaxed) + bytes as u64;
        self.dev.peak.fetch_max(now, Ordering::Relaxed);
        let s = CudaStorage { buf, dtype, len, dev: self.dev.clone() };
        if poison() {
            // SAFETY: memset of the whole live allocation on its stream.
            unsafe { cudarc::driver::sys::cuMemsetD8Async(s.ptr(), 0xFF, bytes, self.dev.stream.cu_stream()) }
                .result()
                .map_err(|e| Error::Msg(format!("CUDA memset failed: {e:?}")))?;
        }
        Ok(s)
    }

    /// A zero-filled buffer.
    pub fn zeros(&self, dtype: DType, len: usize) -> Result<CudaStorage> {
        let mut s = self.alloc(dtype, len)?;
        self.dev.stream.memset_zeros(&mut s.buf).map_err(|e| Error::Msg(format!("CUDA memset failed: {e:?}")))?;
        Ok(s)
    }

    /// Copies a host buffer to the device.
    pub fn upload(&self, c: &CpuStorage) -> Result<CudaStorage> {
        let mut s = self.alloc(c.dtype(), c.len())?;
        let bytes = c.as_bytes();
        if !bytes.is_empty() {
            let mut dst = s.buf.slice_mut(0..bytes.len());
            self.dev
                .stream
                .memcpy_htod(bytes, &mut dst)
                .map_err(|e| Error::Msg(format!("CUDA upload failed: {e:?}")))?;
        }
        Ok(s)
    }

    /// Uploads host f64 values (per-sample weights and schedules of the fused kernels).
    pub(crate) fn upload_f64(&self, v: &[f64]) -> Result<CudaStorage> {
        self.upload(&CpuStorage::F64(v.to_vec()))
    }

    /// Uploads host i64 values.
    pub(crate) fn upload_i64(&self, v: &[i64]) -> Result<CudaStorage> {
        self.upload(&CpuStorage::I64(v.to_vec()))
    }

    /// Errors unless `s` lives on this backend's device.
    pub(crate) fn check(&self, op: &str, s: &CudaStorage) -> Result<()> {
        if s.dev.ordinal != self.dev.ordinal {
            return Err(Error::Msg(format!(
                "{op}: operand on cuda:{} but the op runs on cuda:{}",
                s.dev.ordinal, self.dev.ordinal
            )));
        }
        Ok(())
    }

    /// A contiguous copy of a view (always a new buffer).
    pub fn copy_contiguous(&self, (s, l): View<CudaStorage>) -> Result<CudaStorage> {
        self.check("contiguous", s)?;
        let n = l.numel();
        let out = self.alloc(s.dtype, n)?;
        if n == 0 {
            return Ok(out);
        }
        let sz = s.dtype.size();
        if l.is_contiguous() {
            let (src, dst, bytes) = (s.ptr_at(l.offset), out.ptr(), n * sz);
            // SAFETY: both ranges lie inside live allocations on this stream.
            unsafe { cudarc::driver::sys::cuMemcpyDtoDAsync_v2(dst, src, bytes, self.dev.stream.cu_stream()) }
                .result()
                .map_err(|e| Error::Msg(format!("CUDA copy failed: {e:?}")))?;
            return Ok(out);
        }
        let l = l.coalesced();
        let lx = strided(&l)?;
        let (xp, yp, ni) = (s.ptr(), out.ptr(), n as i64);
        launch!(self, "elementwise.cu", format!("copy_strided_{sz}"), CudaDevice::cfg_1d(n); &xp, &lx, &yp, &ni)?;
        Ok(out)
    }

    /// The view as a contiguous buffer starting at element 0: borrowed when it already is one.
    pub fn contig<'a>(&self, (s, l): View<'a, CudaStorage>) -> Result<Contig<'a>> {
        self.check("contiguous", s)?;
        if l.is_contiguous() && l.offset == 0 {
            Ok(Contig::Borrowed(s))
        } else {
            Ok(Contig::Owned(self.copy_contiguous((s, l))?))
        }
    }

    /// Waits for the device.
    pub fn synchronize(&self) -> Result<()> {
        self.dev.synchronize().map_err(err)
    }
}

/// A buffer that is either borrowed from the caller or a fresh contiguous copy.
pub enum Contig<'a> {
    Borrowed(&'a CudaStorage),
    Owned(CudaStorage),
}

impl std::ops::Deref for Contig<'_> {
    type Target = CudaStorage;
    fn deref(&self) -> &CudaStorage {
        match self {
            Contig::Borrowed(s) => s,
            Contig::Owned(s) => s,
        }
    }
}

/// A layout as the kernels' `Strided` struct.
pub(crate) fn strided(l: &Layout) -> Result<Strided> {
    Strided::from_layout(l).map_err(err)
}

/// One block of `threads` per row, `rows` blocks (capped; kernels loop).
pub(crate) fn cfg_rows(rows: usize, threads: u32) -> LaunchConfig {
    LaunchConfig { grid_dim: (rows.clamp(1, 65_535) as u32, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 }
}

impl Kernels for Cuda {
    type Storage = CudaStorage;

    fn unary(&self, op: UnaryOp, x: View<CudaStorage>) -> Result<CudaStorage> {
        elementwise::unary(self, op, x)
    }
    fn binary(&self, op: BinaryOp, a: View<CudaStorage>, b: View<CudaStorage>) -> Result<(CudaStorage, Vec<usize>)> {
        elementwise::binary(self, op, a, b)
    }
    fn where_cond(
        &self,
        c: View<CudaStorage>,
        a: View<CudaStorage>,
        b: View<CudaStorage>,
    ) -> Result<(CudaStorage, Vec<usize>)> {
        elementwise::where_cond(self, c, a, b)
    }
    fn cast(&self, x: View<CudaStorage>, dtype: DType) -> Result<CudaStorage> {
        elementwise::cast(self, x, dtype)
    }
    fn contiguous(&self, x: View<CudaStorage>) -> Result<CudaStorage> {
        self.copy_contiguous(x)
    }
    fn copy_into(&self, dst: &mut CudaStorage, dst_l: &Layout, src: View<CudaStorage>) -> Result<()> {
        elementwise::copy_into(self, dst, dst_l, src)
    }
    fn reduce(&self, op: ReduceOp, x: View<CudaStorage>, axes: &[usize]) -> Result<CudaStorage> {
        reduce::reduce(self, op, x, axes)
    }
    fn softmax(&self, x: View<CudaStorage>, axis: usize, log: bool) -> Result<CudaStorage> {
        reduce::softmax(self, x, axis, log)
    }
    fn cumsum(&self, x: View<CudaStorage>, axis: usize) -> Result<CudaStorage> {
        reduce::cumsum(self, x, axis)
    }
    fn matmul(&self, a: View<CudaStorage>, b: View<CudaStorage>) -> Result<(CudaStorage, Vec<usize>)> {
        matmul::matmul(self, a, b)
    }
    fn conv2d(&self, x: View<CudaStorage>, w: View<CudaStorage>, p: Conv2dParams) -> Result<(CudaStorage, ConvGeom)> {
        conv::conv2d(self, x, w, p)
    }
    fn conv2d_bwd_data(
        &self,
        gy: View<CudaStorage>,
        w: View<CudaStorage>,
        cin_hw: [usize; 3],
        p: Conv2dParams,
    ) -> Result<CudaStorage> {
        conv::conv2d_bwd_data(self, gy, w, cin_hw, p)
    }
    fn conv2d_bwd_weight(
        &self,
        x: View<CudaStorage>,
        gy: View<CudaStorage>,
        wshape: [usize; 4],
        p: Conv2dParams,
    ) -> Result<CudaStorage> {
        conv::conv2d_bwd_weight(self, x, gy, wshape, p)
    }
    fn norm_fwd(
        &self,
        kind: NormKind,
        x: View<CudaStorage>,
        w: Option<View<CudaStorage>>,
        b: Option<View<CudaStorage>>,
        eps: f64,
    ) -> Result<(CudaStorage, CudaStorage, CudaStorage)> {
        nn::norm_fwd(self, kind, x, w, b, eps)
    }
    fn norm_bwd(
        &self,
        kind: NormKind,
        gy: View<CudaStorage>,
        x: View<CudaStorage>,
        mean: &CudaStorage,
        rstd: &CudaStorage,
        w: Option<View<CudaStorage>>,
    ) -> Result<(CudaStorage, CudaStorage, CudaStorage)> {
        nn::norm_bwd(self, kind, gy, x, mean, rstd, w)
    }
    fn attention_fwd(
        &self,
        q: View<CudaStorage>,
        k: View<CudaStorage>,
        v: View<CudaStorage>,
        mask: Option<View<CudaStorage>>,
        scale: Option<f64>,
        causal: bool,
    ) -> Result<(CudaStorage, CudaStorage, AttnGeom)> {
        attention::attention_fwd(self, q, k, v, mask, scale, causal)
    }
    fn attention_bwd(
        &self,
        q: View<CudaStorage>,
        k: View<CudaStorage>,
        v: View<CudaStorage>,
        mask: Option<View<CudaStorage>>,
        out: View<CudaStorage>,
        lse: View<CudaStorage>,
        grad_out: View<CudaStorage>,
        scale: Option<f64>,
        causal: bool,
    ) -> Result<(CudaStorage, CudaStorage, CudaStorage)> {
        attention::attention_bwd(self, q, k, v, mask, out, lse, grad_out, scale, causal)
    }
    fn random(&self, dtype: DType, n: usize, seed: u64, offset: u64, dist: RandDist) -> Result<CudaStorage> {
        random::random(self, dtype, n, seed, offset, dist)
    }
    fn randint(&self, n: usize, lo: i64, hi: i64, seed: u64, offset: u64) -> Result<CudaStorage> {
        random::randint(self, n, lo, hi, seed, offset)
    }
    fn avg_pool2d(&self, x: View<CudaStorage>, p: Pool2d) -> Result<CudaStorage> {
        nn::avg_pool2d(self, x, p)
    }
    fn avg_pool2d_bwd(&self, gy: View<CudaStorage>, hw: [usize; 2], p: Pool2d) -> Result<CudaStorage> {
        nn::avg_pool2d_bwd(self, gy, hw, p)
    }
    fn max_pool2d(&self, x: View<CudaStorage>, p: Pool2d) -> Result<(CudaStorage, CudaStorage)> {
        nn::max_pool2d(self, x, p)
    }
    fn upsample_bilinear2d(&self, x: View<CudaStorage>, oh: usize, ow: usize) -> Result<CudaStorage> {
        nn::upsample_bilinear2d(self, x, oh, ow)
    }
    fn upsample_bilinear2d_bwd(&self, gy: View<CudaStorage>, hw: [usize; 2]) -> Result<CudaStorage> {
        nn::upsample_bilinear2d_bwd(self, gy, hw)
    }
    fn index_select(&self, x: View<CudaStorage>, dim: usize, idx: View<CudaStorage>) -> Result<CudaStorage> {
        index::index_select(self, x, dim, idx)
    }
    fn index_add(
        &self,
        src: View<CudaStorage>,
        dim: usize,
        idx: View<CudaStorage>,
        size: usize,
    ) -> Result<CudaStorage> {
        index::index_add(self, src, dim, idx, size)
    }
    fn gather(&self, x: View<CudaStorage>, dim: usize, idx: View<CudaStorage>) -> Result<CudaStorage> {
        index::gather(self, x, dim, idx)
    }
    fn scatter_add(
        &self,
        src: View<CudaStorage>,
        dim: usize,
        idx: View<CudaStorage>,
        shape: &[usize],
    ) -> Result<CudaStorage> {
        index::scatter_add(self, src, dim, idx, shape)
    }
    fn sid_generator_loss(
        &self,
        y_real: View<CudaStorage>,
        y_fake: View<CudaStorage>,
        x_g: View<CudaStorage>,
        alpha: f64,
        weight: Option<&[f64]>,
    ) -> Result<(CudaStorage, CudaStorage)> {
        fused::sid_generator_loss(self, y_real, y_fake, x_g, alpha, weight)
    }
    fn sid_generator_loss_bwd(
        &self,
        y_real: View<CudaStorage>,
        y_fake: View<CudaStorage>,
        x_g: View<CudaStorage>,
        w: &CudaStorage,
        g: View<CudaStorage>,
        alpha: f64,
    ) -> Result<(CudaStorage, CudaStorage, CudaStorage)> {
        fused::sid_generator_loss_bwd(self, y_real, y_fake, x_g, w, g, alpha)
    }
    fn sid_fake_score_loss(&self, d: View<CudaStorage>, y: View<CudaStorage>, weight: &[f64]) -> Result<CudaStorage> {
        fused::sid_fake_score_loss(self, d, y, weight)
    }
    fn sid_fake_score_loss_bwd(
        &self,
        d: View<CudaStorage>,
        y: View<CudaStorage>,
        weight: &[f64],
        g: View<CudaStorage>,
    ) -> Result<(CudaStorage, CudaStorage)> {
        fused::sid_fake_score_loss_bwd(self, d, y, weight, g)
    }
    fn beta_kl(&self, p: [View<CudaStorage>; 4]) -> Result<CudaStorage> {
        fused::beta_kl(self, p)
    }
    fn beta_kl_bwd(&self, p: [View<CudaStorage>; 4], g: View<CudaStorage>) -> Result<[CudaStorage; 4]> {
        fused::beta_kl_bwd(self, p, g)
    }
    fn beta_klub(&self, xh: View<CudaStorage>, x: View<CudaStorage>, p: &KlubParams) -> Result<CudaStorage> {
        fused::beta_klub(self, xh, x, p)
    }
    fn beta_klub_bwd(
        &self,
        xh: View<CudaStorage>,
        x: View<CudaStorage>,
        p: &KlubParams,
        g: View<CudaStorage>,
    ) -> Result<CudaStorage> {
        fused::beta_klub_bwd(self, xh, x, p, g)
    }
    fn patch_embed(
        &self,
        x: View<CudaStorage>,
        tops: &[usize],
        lefts: &[usize],
        ph: usize,
        pw: usize,
    ) -> Result<CudaStorage> {
        fused::patch_embed(self, x, tops, lefts, ph, pw)
    }
    fn patch_embed_bwd(
        &self,
        g: View<CudaStorage>,
        xshape: &[usize],
        tops: &[usize],
        lefts: &[usize],
    ) -> Result<CudaStorage> {
        fused::patch_embed_bwd(self, g, xshape, tops, lefts)
    }
}
