//! CPU buffers: one typed `Vec` per dtype.

use crate::{DType, Elem, Error, Layout, Result};
use half::{bf16, f16};

/// A CPU buffer. `Bool` is stored as one byte per element (0 or 1).
#[derive(Clone, Debug, PartialEq)]
pub enum CpuStorage {
    F32(Vec<f32>),
    F64(Vec<f64>),
    BF16(Vec<bf16>),
    F16(Vec<f16>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    U8(Vec<u8>),
    Bool(Vec<u8>),
}

/// Runs `$body` with `$v` bound to the inner `Vec` of any variant.
#[macro_export]
macro_rules! with_vec {
    ($s:expr, $v:ident => $body:expr) => {
        match $s {
            $crate::cpu::CpuStorage::F32($v) => $body,
            $crate::cpu::CpuStorage::F64($v) => $body,
            $crate::cpu::CpuStorage::BF16($v) => $body,
            $crate::cpu::CpuStorage::F16($v) => $body,
            $crate::cpu::CpuStorage::I64($v) => $body,
            $crate::cpu::CpuStorage::I32($v) => $body,
            $crate::cpu::CpuStorage::U8($v) => $body,
            $crate::cpu::CpuStorage::Bool($v) => $body,
        }
    };
}

/// Maps a storage to a storage of the same variant: `map_same!(s, v => expr producing Vec<T>)`.
#[macro_export]
macro_rules! map_same {
    ($s:expr, $v:ident => $body:expr) => {
        match $s {
            $crate::cpu::CpuStorage::F32($v) => $crate::cpu::CpuStorage::F32($body),
            $crate::cpu::CpuStorage::F64($v) => $crate::cpu::CpuStorage::F64($body),
            $crate::cpu::CpuStorage::BF16($v) => $crate::cpu::CpuStorage::BF16($body),
            $crate::cpu::CpuStorage::F16($v) => $crate::cpu::CpuStorage::F16($body),
            $crate::cpu::CpuStorage::I64($v) => $crate::cpu::CpuStorage::I64($body),
            $crate::cpu::CpuStorage::I32($v) => $crate::cpu::CpuStorage::I32($body),
            $crate::cpu::CpuStorage::U8($v) => $crate::cpu::CpuStorage::U8($body),
            $crate::cpu::CpuStorage::Bool($v) => $crate::cpu::CpuStorage::Bool($body),
        }
    };
}

impl CpuStorage {
    pub fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F64(_) => DType::F64,
            CpuStorage::BF16(_) => DType::BF16,
            CpuStorage::F16(_) => DType::F16,
            CpuStorage::I64(_) => DType::I64,
            CpuStorage::I32(_) => DType::I32,
            CpuStorage::U8(_) => DType::U8,
            CpuStorage::Bool(_) => DType::Bool,
        }
    }

    pub fn len(&self) -> usize {
        with_vec!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A zero-filled buffer.
    pub fn zeros(dtype: DType, n: usize) -> Self {
        match dtype {
            DType::F32 => CpuStorage::F32(vec![0.0; n]),
            DType::F64 => CpuStorage::F64(vec![0.0; n]),
            DType::BF16 => CpuStorage::BF16(vec![bf16::ZERO; n]),
            DType::F16 => CpuStorage::F16(vec![f16::ZERO; n]),
            DType::I64 => CpuStorage::I64(vec![0; n]),
            DType::I32 => CpuStorage::I32(vec![0; n]),
            DType::U8 => CpuStorage::U8(vec![0; n]),
            DType::Bool => CpuStorage::Bool(vec![0; n]),
        }
    }

    /// A buffer holding `n` copies of `v` (converted to `dtype`).
    pub fn full(dtype: DType, n: usize, v: f64) -> Self {
        Self::from_f64_iter(dtype, std::iter::repeat_n(v, n))
    }

    /// Converts f64 values to `dtype` (bool: non-zero is true).
    pub fn from_f64_iter(dtype: DType, it: impl Iterator<Item = f64>) -> Self {
        match dtype {
            DType::F32 => CpuStorage::F32(it.map(|x| x as f32).collect()),
            DType::F64 => CpuStorage::F64(it.collect()),
            DType::BF16 => CpuStorage::BF16(it.map(bf16::from_f64).collect()),
            DType::F16 => CpuStorage::F16(it.map(f16::from_f64).collect()),
            DType::I64 => CpuStorage::I64(it.map(|x| x as i64).collect()),
            DType::I32 => CpuStorage::I32(it.map(|x| x as i32).collect()),
            DType::U8 => CpuStorage::U8(it.map(|x| x as u8).collect()),
            DType::Bool => CpuStorage::Bool(it.map(|x| (x != 0.0) as u8).collect()),
        }
    }

    /// Raw little-endian bytes of the whole buffer.
    pub fn as_bytes(&self) -> &[u8] {
        with_vec!(self, v => bytemuck::cast_slice(v))
    }

    /// Builds a buffer from little-endian bytes; the length must be a multiple of the size.
    pub fn from_bytes(dtype: DType, bytes: &[u8]) -> Result<Self> {
        if !bytes.len().is_multiple_of(dtype.size()) {
            return Err(Error::Msg(format!(
                "{} bytes is not a whole number of {dtype} elements ({} bytes each)",
                bytes.len(),
                dtype.size()
            )));
        }
        fn read<T: bytemuck::Pod>(b: &[u8]) -> Vec<T> {
            // pod_collect_to_vec copies, so unaligned input is fine.
            bytemuck::pod_collect_to_vec(b)
        }
        Ok(match dtype {
            DType::F32 => CpuStorage::F32(read(bytes)),
            DType::F64 => CpuStorage::F64(read(bytes)),
            DType::BF16 => CpuStorage::BF16(read(bytes)),
            DType::F16 => CpuStorage::F16(read(bytes)),
            DType::I64 => CpuStorage::I64(read(bytes)),
            DType::I32 => CpuStorage::I32(read(bytes)),
            DType::U8 => CpuStorage::U8(bytes.to_vec()),
            DType::Bool => CpuStorage::Bool(bytes.iter().map(|&b| (b != 0) as u8).collect()),
        })
    }

    /// Elements of a view as f64, row-major.
    pub fn to_f64_vec(&self, layout: &Layout) -> Vec<f64> {
        with_vec!(self, v => layout.offsets().map(|o| v[o].to_f64()).collect())
    }

    /// The element at buffer offset `o` as f64.
    pub fn get_f64(&self, o: usize) -> f64 {
        with_vec!(self, v => v[o].to_f64())
    }
}

/// Typed access to a storage variant.
pub trait StorageElem: Elem {
    fn slice(s: &CpuStorage) -> Option<&[Self]>;
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [Self]>;
    fn wrap(v: Vec<Self>) -> CpuStorage;
}

macro_rules! storage_elem {
    ($t:ty, $var:ident) => {
        impl StorageElem for $t {
            fn slice(s: &CpuStorage) -> Option<&[Self]> {
                match s {
                    CpuStorage::$var(v) => Some(v),
                    _ => None,
                }
            }
            fn slice_mut(s: &mut CpuStorage) -> Option<&mut [Self]> {
                match s {
                    CpuStorage::$var(v) => Some(v),
                    _ => None,
                }
            }
            fn wrap(v: Vec<Self>) -> CpuStorage {
                CpuStorage::$var(v)
            }
        }
    };
}
storage_elem!(f32, F32);
storage_elem!(f64, F64);
storage_elem!(bf16, BF16);
storage_elem!(f16, F16);
storage_elem!(i64, I64);
storage_elem!(i32, I32);

/// Gathers a strided view into a new contiguous Vec.
pub fn gather_strided<T: Copy + Send + Sync>(v: &[T], layout: &Layout) -> Vec<T> {
    let n = layout.numel();
    if n == 0 {
        return Vec::new();
    }
    if layout.is_contiguous() {
        return v[layout.offset..layout.offset + n].to_vec();
    }
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 14;
    let mut out: Vec<T> = Vec::with_capacity(n);
    // SAFETY-free version: fill chunk by chunk in parallel into a pre-sized vec.
    out.resize(n, v[layout.offset]);
    // Row by row over the coalesced layout: contiguous rows are slice copies.
    let rows = super::elementwise::JointRows::new(&[layout]);
    let (len, st) = (rows.row_len, rows.inner[0]);
    let per_task = (CHUNK / len).max(1);
    out.par_chunks_mut(per_task * len).enumerate().for_each(|(ti, chunk)| {
        let mut it = rows.iter_from(ti * per_task);
        for row in chunk.chunks_mut(len) {
            let [off] = it.next_row();
            if st == 1 {
                row.copy_from_slice(&v[off..off + len]);
            } else {
                for (i, d) in row.iter_mut().enumerate() {
                    *d = v[off + i * st];
                }
            }
        }
    });
    out
}

/// The slice of `s` when it holds the same element type as `_like` (used after a dtype check).
pub fn same_variant<'a, T: 'static>(s: &'a CpuStorage, _like: &[T]) -> Option<&'a [T]> {
    with_vec!(s, v => (v as &dyn std::any::Any).downcast_ref::<Vec<T>>().map(|v| v.as_slice()))
}
