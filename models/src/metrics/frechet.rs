//! Fréchet distance between the Gaussian fits of two feature sets:
//! `FD = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2})`.
//! The matrix square roots use symmetric eigendecompositions (nalgebra) in f64, which stays
//! real and stable where the classic `sqrtm(Σ₁Σ₂)` of a non-symmetric product does not.

use super::{Features, MetricError};
use nalgebra::{DMatrix, DVector, SymmetricEigen};

/// Mean and covariance (unbiased, like numpy's `np.cov(rowvar=False)`) of a feature set.
#[derive(Clone, Debug)]
pub struct FeatureStats {
    pub mean: DVector<f64>,
    pub cov: DMatrix<f64>,
    pub n: usize,
}

impl FeatureStats {
    /// Statistics of `data`, rows of `d` features.
    pub fn from_rows(data: &[f64], d: usize) -> Result<FeatureStats, MetricError> {
        FeatureStats::from_features(&Features::new(data, d)?)
    }

    pub fn from_features(f: &Features) -> Result<FeatureStats, MetricError> {
        if f.n < 2 {
            return Err(MetricError::Input(format!("need at least 2 samples for a covariance, got {}", f.n)));
        }
        let mut mean = DVector::zeros(f.d);
        for i in 0..f.n {
            mean += DVector::from_column_slice(f.row(i));
        }
        mean /= f.n as f64;
        let mut cov = DMatrix::zeros(f.d, f.d);
        for i in 0..f.n {
            let c = DVector::from_column_slice(f.row(i)) - &mean;
            cov.syger(1.0, &c, &c, 1.0);
        }
        // syger fills the lower triangle only; mirror it.
        cov.fill_upper_triangle_with_lower_triangle();
        cov /= (f.n - 1) as f64;
        Ok(FeatureStats { mean, cov, n: f.n })
    }
}

/// Square root of a symmetric positive semi-definite matrix (negative rounding noise in the
/// eigenvalues is clipped to zero).
pub fn sqrt_psd(m: &DMatrix<f64>) -> DMatrix<f64> {
    let sym = (m + m.transpose()) * 0.5;
    let e = SymmetricEigen::new(sym);
    let d = DMatrix::from_diagonal(&e.eigenvalues.map(|v| v.max(0.0).sqrt()));
    &e.eigenvectors * d * e.eigenvectors.transpose()
}

/// Fréchet distance between two fitted Gaussians.
pub fn frechet_from_stats(a: &FeatureStats, b: &FeatureStats) -> Result<f64, MetricError> {
    if a.mean.len() != b.mean.len() {
        return Err(MetricError::Input(format!("feature dims differ: {} vs {}", a.mean.len(), b.mean.len())));
    }
    let diff = (&a.mean - &b.mean).norm_squared();
    let s1 = sqrt_psd(&a.cov);
    // tr((Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2}) is the sum of the square roots of that symmetric
    // matrix's eigenvalues: no eigenvectors needed for the second decomposition.
    let m = &s1 * &b.cov * &s1;
    let inner: f64 = ((&m + m.transpose()) * 0.5).symmetric_eigenvalues().iter().map(|v| v.max(0.0).sqrt()).sum();
    Ok(diff + a.cov.trace() + b.cov.trace() - 2.0 * inner)
}

/// Fréchet distance between two feature sets (rows of `d` values each).
pub fn frechet_distance(a: &[f64], b: &[f64], d: usize) -> Result<f64, MetricError> {
    let (fa, fb) = (Features::new(a, d)?, Features::new(b, d)?);
    frechet_from_stats(&FeatureStats::from_features(&fa)?, &FeatureStats::from_features(&fb)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaussian(n: usize, d: usize, mean: f64, scale: f64, seed: u64) -> Vec<f64> {
        let mut s = seed;
        let mut next = || {
            // SplitMix64 → uniform → Box–Muller, test-only.
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        };
        (0..n * d)
            .map(|_| {
                let (u1, u2) = (next().max(1e-300), next());
                mean + scale * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
            })
            .collect()
    }

    #[test]
    fn identical_sets_have_zero_distance() {
        let a = gaussian(500, 4, 0.0, 1.0, 1);
        assert!(frechet_distance(&a, &a, 4).unwrap().abs() < 1e-9);
    }

    #[test]
    fn matches_the_closed_form_for_isotropic_gaussians() {
        // d dims: FD = d (μ₁−μ₂)² + d (s₁ − s₂)² in the large-sample limit.
        let (d, n) = (3, 40_000);
        let a = gaussian(n, d, 0.0, 1.0, 2);
        let b = gaussian(n, d, 0.5, 2.0, 3);
        let fd = frechet_distance(&a, &b, d).unwrap();
        let want = d as f64 * (0.25 + 1.0);
        assert!((fd - want).abs() < 0.1, "{fd} vs {want}");
    }

    #[test]
    fn sqrt_of_psd_squares_back() {
        let m = DMatrix::from_row_slice(3, 3, &[4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 2.0]);
        let r = sqrt_psd(&m);
        assert!((&r * &r - &m).abs().max() < 1e-12);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(frechet_distance(&[1.0, 2.0, 3.0], &[1.0, 2.0], 2).is_err());
        assert!(frechet_distance(&[1.0, 2.0], &[1.0, 2.0], 2).is_err());
    }
}
