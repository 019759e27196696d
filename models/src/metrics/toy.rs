//! Distances between 2-D (or low-dimensional) sample sets, for the toy experiments:
//! sliced Wasserstein-2 over random directions and MMD² with an RBF kernel.

use super::{Features, MetricError};
use rayon::prelude::*;

/// Sliced Wasserstein-2 distance: the root mean over `projections` random unit directions of
/// the squared W2 between the projected 1-D samples (equal sizes, sorted matching).
pub fn sliced_wasserstein(a: &[f64], b: &[f64], d: usize, projections: usize, seed: u64) -> Result<f64, MetricError> {
    let (fa, fb) = (Features::new(a, d)?, Features::new(b, d)?);
    if fa.n != fb.n || fa.n == 0 {
        return Err(MetricError::Input(format!(
            "sliced Wasserstein needs equal non-empty sets, got {} and {}",
            fa.n, fb.n
        )));
    }
    let mut state = seed;
    let mut normal = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let u1 = (((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64).max(1e-300);
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut y = state;
        y = (y ^ (y >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        y = (y ^ (y >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let u2 = ((y ^ (y >> 31)) >> 11) as f64 / (1u64 << 53) as f64;
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    };
    let dirs: Vec<Vec<f64>> = (0..projections)
        .map(|_| {
            let v: Vec<f64> = (0..d).map(|_| normal()).collect();
            let n = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300);
            v.into_iter().map(|x| x / n).collect()
        })
        .collect();
    let total: f64 = dirs
        .par_iter()
        .map(|dir| {
            let proj = |f: &Features| -> Vec<f64> {
                let mut p: Vec<f64> = (0..f.n).map(|i| f.row(i).iter().zip(dir).map(|(x, w)| x * w).sum()).collect();
                p.sort_by(|x, y| x.total_cmp(y));
                p
            };
            let (pa, pb) = (proj(&fa), proj(&fb));
            pa.iter().zip(&pb).map(|(x, y)| (x - y) * (x - y)).sum::<f64>() / fa.n as f64
        })
        .sum();
    Ok((total / projections as f64).sqrt())
}

/// Unbiased MMD² with the RBF kernel `exp(−‖x−y‖² / (2 bandwidth²))`.
pub fn mmd_rbf(a: &[f64], b: &[f64], d: usize, bandwidth: f64) -> Result<f64, MetricError> {
    let (fa, fb) = (Features::new(a, d)?, Features::new(b, d)?);
    if fa.n < 2 || fb.n < 2 || bandwidth <= 0.0 {
        return Err(MetricError::Input("MMD needs at least 2 samples per set and a positive bandwidth".into()));
    }
    let k = |x: &[f64], y: &[f64]| {
        (-x.iter().zip(y).map(|(p, q)| (p - q) * (p - q)).sum::<f64>() / (2.0 * bandwidth * bandwidth)).exp()
    };
    let within = |f: &Features| -> f64 {
        let s: f64 = (0..f.n)
            .into_par_iter()
            .map(|i| (0..f.n).filter(|&j| j != i).map(|j| k(f.row(i), f.row(j))).sum::<f64>())
            .sum();
        s / (f.n * (f.n - 1)) as f64
    };
    let cross: f64 =
        (0..fa.n).into_par_iter().map(|i| (0..fb.n).map(|j| k(fa.row(i), fb.row(j))).sum::<f64>()).sum::<f64>()
            / (fa.n * fb.n) as f64;
    Ok(within(&fa) + within(&fb) - 2.0 * cross)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(n: usize, r: f64, shift: f64) -> Vec<f64> {
        (0..n)
            .flat_map(|i| {
                let t = i as f64 / n as f64 * std::f64::consts::TAU;
                [r * t.cos() + shift, r * t.sin()]
            })
            .collect()
    }

    #[test]
    fn sliced_wasserstein_of_a_shift_is_the_projected_shift() {
        let a = ring(400, 1.0, 0.0);
        assert!(sliced_wasserstein(&a, &a, 2, 64, 1).unwrap() < 1e-12);
        // Shifting by s along x gives E[(s·cosθ)²] = s²/2 per direction (rigid shift).
        let b = ring(400, 1.0, 2.0);
        let sw = sliced_wasserstein(&a, &b, 2, 2000, 2).unwrap();
        assert!((sw - (2.0f64 * 2.0 / 2.0).sqrt()).abs() < 0.05, "{sw}");
    }

    #[test]
    fn mmd_separates_different_sets() {
        let a = ring(200, 1.0, 0.0);
        let b = ring(200, 1.0, 0.0);
        let c = ring(200, 2.0, 0.0);
        let same = mmd_rbf(&a, &b, 2, 0.5).unwrap();
        let diff = mmd_rbf(&a, &c, 2, 0.5).unwrap();
        assert!(same.abs() < 0.01 && diff > 0.1, "{same} {diff}");
    }
}
