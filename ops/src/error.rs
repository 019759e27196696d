//! Errors raised by kernels: every message names the offending shapes, dtypes or axes.

use crate::DType;

/// Kernel-level error.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum Error {
    #[error("shape mismatch in {op}: {detail}")]
    Shape { op: &'static str, detail: String },
    #[error("{op} does not support dtype {dtype}")]
    DType { op: &'static str, dtype: DType },
    #[error("dtype mismatch in {op}: {lhs} vs {rhs}")]
    DTypeMismatch { op: &'static str, lhs: DType, rhs: DType },
    #[error("axis {axis} out of range for a tensor of rank {rank}")]
    Axis { axis: isize, rank: usize },
    #[error("index {index} out of range for dimension of size {size} in {op}")]
    Index { op: &'static str, index: i64, size: usize },
    #[error("{0}")]
    Msg(String),
}

/// Result of a kernel call.
pub type Result<T> = std::result::Result<T, Error>;

/// Builds an [`Error::Shape`].
pub fn shape_err<T>(op: &'static str, detail: impl Into<String>) -> Result<T> {
    Err(Error::Shape { op, detail: detail.into() })
}
