//! `Tensor`: a cheap `Arc` handle to a storage, a strided layout, a dtype, a device and an
//! optional autograd node.

use crate::autograd::{self, GradFn};
use crate::device::Device;
use crate::error::{msg, Error, Result};
use scorch_cuda::CudaStorage;
use scorch_ops::cpu::CpuStorage;
use scorch_ops::{DType, Elem, Layout};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Backend storage of a tensor.
#[derive(Debug)]
pub enum Storage {
    Cpu(CpuStorage),
    Cuda(CudaStorage),
}

impl Storage {
    pub fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(s) => s.dtype(),
            Storage::Cuda(s) => s.dtype(),
        }
    }
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Cuda(s) => Device::Cuda(s.ordinal()),
        }
    }
    /// Number of elements in the buffer.
    pub fn len(&self) -> usize {
        match self {
            Storage::Cpu(s) => s.len(),
            Storage::Cuda(s) => s.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The whole buffer on the host: borrowed on the CPU, downloaded from a GPU.
    pub fn host(&self) -> Result<std::borrow::Cow<'_, CpuStorage>> {
        match self {
            Storage::Cpu(s) => Ok(std::borrow::Cow::Borrowed(s)),
            Storage::Cuda(s) => Ok(std::borrow::Cow::Owned(s.to_cpu()?)),
        }
    }
}

/// A storage shared by views, with a version counter bumped by every in-place write.
#[derive(Debug)]
pub struct StorageCell {
    data: RwLock<Storage>,
    version: AtomicU64,
}

impl StorageCell {
    pub(crate) fn new(s: Storage) -> Arc<Self> {
        Arc::new(StorageCell { data: RwLock::new(s), version: AtomicU64::new(0) })
    }
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Storage> {
        self.data.read().unwrap_or_else(|p| p.into_inner())
    }
    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Storage> {
        self.version.fetch_add(1, Ordering::SeqCst);
        self.data.write().unwrap_or_else(|p| p.into_inner())
    }
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

pub(crate) struct Inner {
    pub(crate) id: usize,
    pub(crate) storage: Arc<StorageCell>,
    pub(crate) layout: Layout,
    pub(crate) dtype: DType,
    pub(crate) device: Device,
    pub(crate) requires_grad: AtomicBool,
    pub(crate) grad_fn: OnceLock<Arc<GradFn>>,
    pub(crate) grad: Mutex<Option<Tensor>>,
}

/// An n-dimensional array that can record the operations applied to it.
#[derive(Clone)]
pub struct Tensor(pub(crate) Arc<Inner>);

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({:?}, {}, {}", self.shape(), self.dtype(), self.device())?;
        if self.requires_grad() {
            write!(f, ", requires_grad")?;
        }
        if let Some(g) = self.grad_fn_name() {
            write!(f, ", grad_fn={g}")?;
        }
        write!(f, ")")
    }
}

impl Tensor {
    pub(crate) fn from_parts(storage: Arc<StorageCell>, layout: Layout) -> Tensor {
        let (dtype, device) = {
            let s = storage.read();
            (s.dtype(), s.device())
        };
        Tensor(Arc::new(Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            storage,
            layout,
            dtype,
            device,
            requires_grad: AtomicBool::new(false),
            grad_fn: OnceLock::new(),
            grad: Mutex::new(None),
        }))
    }

    /// A new contiguous tensor owning `s`.
    pub(crate) fn from_storage(s: Storage, shape: &[usize]) -> Tensor {
        scorch_ops::cpu::alloc::tune();
        Tensor::from_parts(StorageCell::new(s), Layout::contiguous(shape))
    }

    /// A view sharing this tensor's storage (no autograd link; callers record one).
    pub(crate) fn view_with(&self, layout: Layout) -> Tensor {
        Tensor::from_parts(self.0.storage.clone(), layout)
    }

    // ---------------------------------------------------------------- accessors

    /// Unique id of this handle's tensor (clones share it).
    pub fn id(&self) -> usize {
        self.0.id
    }
    pub fn shape(&self) -> &[usize] {
        &self.0.layout.shape
    }
    pub fn dims(&self) -> &[usize] {
        self.shape()
    }
    pub fn rank(&self) -> usize {
        self.0.layout.rank()
    }
    pub fn numel(&self) -> usize {
        self.0.layout.numel()
    }
    pub fn dtype(&self) -> DType {
        self.0.dtype
    }
    pub fn device(&self) -> Device {
        self.0.device
    }
    pub fn layout(&self) -> &Layout {
        &self.0.layout
    }
    pub fn strides(&self) -> &[usize] {
        &self.0.layout.strides
    }
    pub fn is_contiguous(&self) -> bool {
        self.0.layout.is_contiguous()
    }
    /// Size of dimension `d` (negative counts from the end).
    pub fn dim(&self, d: isize) -> Result<usize> {
        Ok(self.shape()[self.axis(d)?])
    }
    /// Normalises a possibly negative axis.
    pub fn axis(&self, d: isize) -> Result<usize> {
        Ok(scorch_ops::layout::norm_axis(d, self.rank())?)
    }
    /// Whether two handles view the same storage.
    pub fn same_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.0.storage, &other.0.storage)
    }
    /// Version of the underlying storage (bumped by in-place writes).
    pub fn version(&self) -> u64 {
        self.0.storage.version()
    }
    pub(crate) fn storage(&self) -> RwLockReadGuard<'_, Storage> {
        self.0.storage.read()
    }
    pub(crate) fn storage_cell(&self) -> &Arc<StorageCell> {
        &self.0.storage
    }

    /// Runs `f` on this tensor's CPU buffer and layout (read-only): the door for kernels
    /// that live outside the engine, such as the fused optimizer updates.
    pub fn with_cpu_storage<R>(&self, f: impl FnOnce(&CpuStorage, &Layout) -> R) -> Result<R> {
        let s = self.storage();
        match &*s {
            Storage::Cpu(c) => Ok(f(c, self.layout())),
            Storage::Cuda(_) => {
                Err(Error::Device(format!("a CPU buffer was needed, but this tensor is on {}", self.device())))
            }
        }
    }

    /// Runs `f` on this tensor's buffer (CPU or GPU) and layout (read-only).
    pub fn with_storage<R>(&self, f: impl FnOnce(&Storage, &Layout) -> R) -> Result<R> {
        let s = self.storage();
        Ok(f(&s, self.layout()))
    }

    /// Runs `f` with write access to this tensor's buffer (CPU or GPU); the same rules as
    /// [`Tensor::with_cpu_storage_mut`].
    pub fn with_storage_mut<R>(&self, f: impl FnOnce(&mut Storage, &Layout) -> R) -> Result<R> {
        if autograd::is_grad_enabled() && self.requires_grad() {
            return msg("in-place write to a tensor that requires grad; wrap the update in no_grad()");
        }
        let mut s = self.0.storage.write();
        Ok(f(&mut s, &self.0.layout))
    }

    /// Runs `f` with write access to this tensor's CPU buffer (shared with every view of
    /// it) and this view's layout. Takes the storage's write lock and bumps its version, so
    /// a graph that saved this tensor errors instead of silently using the new values.
    /// Like [`Tensor::assign`], refused on tensors that take part in autograd while
    /// gradient recording is on.
    pub fn with_cpu_storage_mut<R>(&self, f: impl FnOnce(&mut CpuStorage, &Layout) -> R) -> Result<R> {
        if autograd::is_grad_enabled() && self.requires_grad() {
            return msg("in-place write to a tensor that requires grad; wrap the update in no_grad()");
        }
        let mut s = self.0.storage.write();
        match &mut *s {
            Storage::Cpu(c) => Ok(f(c, &self.0.layout)),
            Storage::Cuda(_) => {
                Err(Error::Device(format!("a CPU buffer was needed, but this tensor is on {}", self.0.device)))
            }
        }
    }

    // ---------------------------------------------------------------- autograd state

    /// True for leaves marked with `requires_grad` and for results of recorded ops.
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad.load(Ordering::Relaxed)
    }
    /// Marks a leaf as a parameter to differentiate. Errors on non-leaves and non-floats.
    pub fn set_requires_grad(&self, on: bool) -> Result<&Tensor> {
        if self.grad_fn().is_some() {
            return Err(Error::Autograd("requires_grad can only be changed on leaf tensors; use detach()".into()));
        }
        if on && !self.dtype().is_float() {
            return Err(Error::Autograd(format!(
                "only floating point tensors can require gradients, not {}",
                self.dtype()
            )));
        }
        self.0.requires_grad.store(on, Ordering::Relaxed);
        Ok(self)
    }
    /// Builder form of [`Tensor::set_requires_grad`].
    pub fn requires_grad_(self, on: bool) -> Result<Tensor> {
        self.set_requires_grad(on)?;
        Ok(self)
    }
    pub(crate) fn grad_fn(&self) -> Option<&Arc<GradFn>> {
        self.0.grad_fn.get()
    }
    /// Name of the op that produced this tensor, if recorded.
    pub fn grad_fn_name(&self) -> Option<&'static str> {
        self.grad_fn().map(|g| g.name)
    }
    pub fn is_leaf(&self) -> bool {
        self.grad_fn().is_none()
    }
    /// The accumulated gradient of a leaf.
    pub fn grad(&self) -> Option<Tensor> {
        self.0.grad.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    /// Clears the accumulated gradient.
    pub fn zero_grad(&self) {
        *self.0.grad.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
    pub(crate) fn set_grad(&self, g: Option<Tensor>) {
        *self.0.grad.lock().unwrap_or_else(|p| p.into_inner()) = g;
    }
    /// Replaces the accumulated gradient (PyTorch's `p.grad = g`), e.g. with a clipped
    /// copy. `grad` must have this tensor's shape and dtype. Returns the previous one.
    pub fn replace_grad(&self, grad: Option<Tensor>) -> Result<Option<Tensor>> {
        if let Some(g) = &grad {
            if g.shape() != self.shape() || g.dtype() != self.dtype() {
                return Err(Error::Autograd(format!(
                    "gradient of shape {:?} ({}) for a tensor of shape {:?} ({})",
                    g.shape(),
                    g.dtype(),
                    self.shape(),
                    self.dtype()
                )));
            }
        }
        Ok(std::mem::replace(&mut *self.0.grad.lock().unwrap_or_else(|p| p.into_inner()), grad))
    }
    /// Same data, cut from the graph.
    pub fn detach(&self) -> Tensor {
        self.view_with(self.0.layout.clone())
    }
    /// Backpropagates from a scalar, accumulating into leaves' `.grad` and freeing the graph.
    pub fn backward(&self) -> Result<()> {
        autograd::backward(self, None, false, false)
    }
    /// Backpropagates with options.
    pub fn backward_with(&self, grad: Option<&Tensor>, retain_graph: bool, create_graph: bool) -> Result<()> {
        autograd::backward(self, grad, retain_graph, create_graph)
    }

    // ---------------------------------------------------------------- reading data

    /// All elements as f64, row-major.
    pub fn to_vec_f64(&self) -> Result<Vec<f64>> {
        if self.device() != Device::Cpu {
            // Download only this view's elements, not the whole buffer it may slice.
            return self.to_cpu()?.to_vec_f64();
        }
        let s = self.storage();
        Ok(s.host()?.to_f64_vec(self.layout()))
    }
    /// All elements as f32, row-major.
    pub fn to_vec_f32(&self) -> Result<Vec<f32>> {
        Ok(self.to_vec_f64()?.into_iter().map(|x| x as f32).collect())
    }
    /// All elements as `T`, which must match the dtype.
    pub fn to_vec<T: Elem>(&self) -> Result<Vec<T>> {
        if T::DTYPE != self.dtype() {
            return msg(format!("to_vec::<{}> on a {} tensor; cast first", T::DTYPE, self.dtype()));
        }
        if self.device() != Device::Cpu {
            return self.to_cpu()?.to_vec();
        }
        let c = self.contiguous()?;
        let s = c.storage();
        let h = s.host()?;
        let bytes = h.as_bytes();
        let start = c.layout().offset * T::DTYPE.size();
        let end = start + c.numel() * T::DTYPE.size();
        Ok(bytemuck::pod_collect_to_vec(&bytes[start..end]))
    }
    /// The single element of a one-element tensor.
    pub fn item(&self) -> Result<f64> {
        if self.numel() != 1 {
            return msg(format!("item() needs exactly one element, tensor has shape {:?}", self.shape()));
        }
        let s = self.storage();
        match &*s {
            Storage::Cpu(c) => Ok(c.get_f64(self.layout().offset)),
            Storage::Cuda(_) => Ok(self.to_cpu()?.item()?),
        }
    }
    /// Raw little-endian bytes (contiguous copy).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        if self.device() != Device::Cpu {
            return self.to_cpu()?.to_bytes();
        }
        let c = self.contiguous()?;
        let s = c.storage();
        let sz = self.dtype().size();
        let o = c.layout().offset * sz;
        Ok(s.host()?.as_bytes()[o..o + c.numel() * sz].to_vec())
    }

    /// Moves to a device (a copy when it differs). Differentiable: the gradient moves back.
    pub fn to_device(&self, d: Device) -> Result<Tensor> {
        d.check_available()?;
        if d == self.device() {
            return Ok(self.clone());
        }
        let src = self.device();
        let out = {
            let c =
                if self.is_contiguous() && self.layout().offset == 0 { self.clone() } else { self.contiguous_raw()? };
            let s = c.storage();
            let host = s.host()?;
            let n = c.numel();
            let host = if host.len() == n {
                host
            } else {
                std::borrow::Cow::Owned(CpuStorage::from_bytes(c.dtype(), &host.as_bytes()[..n * c.dtype().size()])?)
            };
            let st = match d {
                Device::Cpu => Storage::Cpu(host.into_owned()),
                Device::Cuda(i) => Storage::Cuda(crate::device::cuda_backend(i)?.upload(&host)?),
            };
            Tensor::from_storage(st, self.shape())
        };
        Ok(autograd::record(out, "to_device", &[self], move |_, g| Ok(vec![Some(g.to_device(src)?)])))
    }
    /// Copies the whole underlying buffer to `d` and keeps this view's layout (strides and
    /// offset), so kernels on `d` see the same kind of view. Not recorded by autograd: meant
    /// for leaves (parity checks, moving parameters).
    pub fn to_device_keep_layout(&self, d: Device) -> Result<Tensor> {
        d.check_available()?;
        let st = {
            let s = self.storage();
            let host = s.host()?;
            match d {
                Device::Cpu => Storage::Cpu(host.into_owned()),
                Device::Cuda(i) => Storage::Cuda(crate::device::cuda_backend(i)?.upload(&host)?),
            }
        };
        Ok(Tensor::from_parts(StorageCell::new(st), self.layout().clone()))
    }
    /// Copies to the CPU.
    pub fn to_cpu(&self) -> Result<Tensor> {
        self.to_device(Device::Cpu)
    }
}

/// Checks that all tensors share one device (mixing devices in one op is an error).
pub(crate) fn same_device(op: &str, ts: &[&Tensor]) -> Result<Device> {
    let d = ts[0].device();
    for t in ts {
        if t.device() != d {
            return Err(Error::Device(format!("{op}: operands on {} and {}", d, t.device())));
        }
    }
    Ok(d)
}
