//! Engine errors: kernel errors plus autograd, device and argument problems.

/// Engine-level error. Messages name the shapes, dtypes, devices or files involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kernel(#[from] scorch_ops::Error),
    #[error("autograd: {0}")]
    Autograd(String),
    #[error("device: {0}")]
    Device(String),
    #[error("{0}")]
    Msg(String),
    #[error(transparent)]
    Io(#[from] crate::safetensors_io::IoError),
}

/// Result of an engine call.
pub type Result<T> = std::result::Result<T, Error>;

/// Builds an [`Error::Msg`].
pub fn msg<T>(m: impl Into<String>) -> Result<T> {
    Err(Error::Msg(m.into()))
}
