//! Sample-quality metrics, all computed in f64 on feature vectors (rows of a matrix):
//! the Fréchet distance between Gaussian fits ([`frechet`]), k-NN precision / recall
//! ([`precision_recall`]), and for 2-D toys the sliced Wasserstein distance and MMD
//! ([`toy`]). FID proper (Inception-v3 pool features) is [`inception`].
//!
//! Naming: a Fréchet distance computed on scorch's own Fashion-MNIST classifier features is
//! reported as FD-FMNIST, never as "FID" (FID means Inception-v3 pool features).

pub mod fmnist_net;
pub mod frechet;
pub mod inception;
pub mod precision_recall;
pub mod toy;

pub use frechet::{frechet_distance, FeatureStats};
pub use precision_recall::precision_recall;
pub use toy::{mmd_rbf, sliced_wasserstein};

/// Errors of the metrics (empty or mismatched inputs).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MetricError {
    #[error("{0}")]
    Input(String),
}

/// A row-major `n × d` matrix of features.
#[derive(Clone, Debug)]
pub struct Features<'a> {
    pub data: &'a [f64],
    pub n: usize,
    pub d: usize,
}

impl<'a> Features<'a> {
    /// Checks that `data` holds `n` rows of `d` values.
    pub fn new(data: &'a [f64], d: usize) -> Result<Self, MetricError> {
        if d == 0 || data.len() % d != 0 {
            return Err(MetricError::Input(format!("{} values are not rows of dimension {d}", data.len())));
        }
        Ok(Features { data, n: data.len() / d, d })
    }
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.d..(i + 1) * self.d]
    }
}

/// `f` on `images` `batch` at a time (no autograd), its `[b, d]` outputs as f64 rows.
pub(crate) fn features_in_batches(
    images: &scorch_engine::Tensor,
    batch: usize,
    f: impl Fn(&scorch_engine::Tensor) -> crate::Result<scorch_engine::Tensor>,
) -> crate::Result<Vec<f64>> {
    let _ng = scorch_engine::no_grad();
    let n = images.shape().first().copied().unwrap_or(0);
    let batch = batch.max(1);
    let mut out = Vec::new();
    let mut i = 0;
    while i < n {
        let b = batch.min(n - i);
        out.extend(f(&images.narrow(0, i, b)?)?.cast(scorch_engine::DType::F64)?.to_vec_f64()?);
        i += b;
    }
    Ok(out)
}
