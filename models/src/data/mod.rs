//! Dataset loading: file-format readers and index utilities (shuffling, batching), independent of the tensor type.

pub mod idx;
