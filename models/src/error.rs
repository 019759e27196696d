//! Errors of the models crate: engine and data errors, plus parameter, checkpoint and
//! layer problems. Every message names the parameter, the layer or the file involved.

use std::path::PathBuf;

/// Errors from layers, parameter stores, optimizers and datasets.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Engine(#[from] scorch_engine::Error),
    /// Reading a dataset failed.
    #[error(transparent)]
    Data(#[from] crate::data::idx::DataError),
    /// Reading or writing a safetensors file failed.
    #[error(transparent)]
    Io(#[from] scorch_engine::safetensors_io::IoError),

    #[error(transparent)]
    Metric(#[from] crate::metrics::MetricError),
    /// A parameter was requested with a shape or dtype other than the one stored, or a
    /// name is not valid.
    #[error("parameter `{name}`: {detail}")]
    Param {
        /// The full dotted name.
        name: String,
        /// What is wrong.
        detail: String,
    },
    /// A checkpoint does not fit what it is loaded into.
    #[error("checkpoint `{}`: {detail}", path.display())]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What does not fit (names the tensors).
        detail: String,
    },
    /// A layer got an input it cannot take, or was built with impossible sizes.
    #[error("{layer} `{name}`: {detail}")]
    Layer {
        /// The layer kind, e.g. `Linear(784→256)`.
        layer: String,
        /// The layer's parameter path (empty at the root).
        name: String,
        /// What is wrong, with the shapes.
        detail: String,
    },
    /// A hyper-parameter or argument is out of range.
    #[error("{0}")]
    Config(String),
    /// Writing a run output (image grid, metrics log) failed; names the file.
    #[error("{0}")]
    Output(String),
}

/// Result of a models-crate call.
pub type Result<T> = std::result::Result<T, Error>;
