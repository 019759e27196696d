//! Dataset loading: file-format readers and index utilities (shuffling, batching), plus
//! their conversion to tensors.

pub mod fmnist_tensor;
pub mod folder;
pub mod idx;
pub mod loader;
pub mod toy2d;
