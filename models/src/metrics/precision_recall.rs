//! Improved precision and recall (Kynkäänniemi et al., 2019): each set's manifold is the
//! union of balls around its samples with radius = distance to the k-th nearest neighbour.
//! Precision: fraction of generated samples inside the real manifold; recall: fraction of
//! real samples inside the generated manifold.

use super::{Features, MetricError};
use rayon::prelude::*;

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Squared k-NN radius of every row of `f` (excluding itself).
fn knn_radii(f: &Features, k: usize) -> Vec<f64> {
    (0..f.n)
        .into_par_iter()
        .map(|i| {
            let mut d: Vec<f64> = (0..f.n).filter(|&j| j != i).map(|j| sq_dist(f.row(i), f.row(j))).collect();
            let k = k.min(d.len()).max(1) - 1;
            d.select_nth_unstable_by(k, |a, b| a.total_cmp(b));
            d[k]
        })
        .collect()
}

/// Fraction of `query` rows inside the k-NN manifold of `support`.
fn coverage(support: &Features, radii: &[f64], query: &Features) -> f64 {
    let inside = (0..query.n)
        .into_par_iter()
        .filter(|&i| (0..support.n).any(|j| sq_dist(query.row(i), support.row(j)) <= radii[j]))
        .count();
    inside as f64 / query.n as f64
}

/// (precision, recall) of `generated` against `real`, both rows of `d` features.
pub fn precision_recall(real: &[f64], generated: &[f64], d: usize, k: usize) -> Result<(f64, f64), MetricError> {
    let (r, g) = (Features::new(real, d)?, Features::new(generated, d)?);
    if r.n <= k || g.n <= k || k == 0 {
        return Err(MetricError::Input(format!(
            "need more than k = {k} samples in each set (got {} and {})",
            r.n, g.n
        )));
    }
    let (rr, rg) = (knn_radii(&r, k), knn_radii(&g, k));
    Ok((coverage(&r, &rr, &g), coverage(&g, &rg, &r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(n: usize, offset: f64) -> Vec<f64> {
        (0..n * n).flat_map(|i| [(i / n) as f64 + offset, (i % n) as f64]).collect()
    }

    #[test]
    fn same_set_is_perfect_and_disjoint_sets_score_zero() {
        let a = grid(10, 0.0);
        assert_eq!(precision_recall(&a, &a, 2, 3).unwrap(), (1.0, 1.0));
        let far = grid(10, 100.0);
        assert_eq!(precision_recall(&a, &far, 2, 3).unwrap(), (0.0, 0.0));
    }

    #[test]
    fn mode_collapse_keeps_precision_and_loses_recall() {
        let real = grid(10, 0.0);
        let collapsed: Vec<f64> = real[..40].to_vec(); // 20 points from one corner
        let (p, r) = precision_recall(&real, &collapsed, 2, 3).unwrap();
        assert_eq!(p, 1.0);
        assert!(r < 0.5, "{r}");
    }
}
