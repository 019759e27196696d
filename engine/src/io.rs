//! Tensors to and from safetensors files (names preserved, atomic writes).

use crate::error::Result;
use crate::safetensors_io::{self, RawTensor};
use crate::tensor::Tensor;
use std::path::Path;

impl Tensor {
    /// This tensor's bytes under `name`, for [`safetensors_io::save`].
    pub fn to_raw(&self, name: &str) -> Result<RawTensor> {
        Ok(RawTensor {
            name: name.to_string(),
            dtype: self.dtype(),
            shape: self.shape().to_vec(),
            data: self.to_bytes()?,
        })
    }
    /// A tensor from a loaded record.
    pub fn from_raw(r: &RawTensor) -> Result<Tensor> {
        Tensor::from_bytes(&r.data, r.dtype, &r.shape)
    }
}

/// Writes named tensors to a safetensors file atomically (temp file + rename).
pub fn save_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let raw: Vec<RawTensor> = tensors.iter().map(|(n, t)| t.to_raw(n)).collect::<Result<_>>()?;
    Ok(safetensors_io::save(path, &raw, None)?)
}

/// Reads every tensor of a safetensors file, sorted by name.
pub fn load_tensors(path: &Path) -> Result<Vec<(String, Tensor)>> {
    safetensors_io::load(path)?.iter().map(|r| Ok((r.name.clone(), Tensor::from_raw(r)?))).collect()
}
