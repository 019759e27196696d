//! The Beta KL in f32 without cancellation — the algorithm of the CUDA kernel
//! `beta_kl_f32` (cuda/kernels/beta.cu), written here so it is tested on every machine.
//!
//! `KL(Beta(a1, b1) ‖ Beta(a2, b2)) = G(a1, a2) + G(b1, b2) − G(a1 + b1, a2 + b2)` with the
//! Gamma KL `G(x1, x2) = lnΓ(x2) − lnΓ(x1) − (x2 − x1) ψ(x1)`, the Bregman divergence of lnΓ.
//! Evaluated from lnΓ and ψ, G is the small difference of numbers up to ~10⁵ (tarflow-beta
//! spec §B5.5), so f32 loses everything. Written as a Bregman divergence it is a sum of
//! non-negative pieces, each computed from the step `d = x2 − x1` directly:
//!
//! * the recurrence lnΓ(x) = lnΓ(x + n) − Σₖ ln(x + k) (shifting min(x1, x2) to ≥ 4)
//!   contributes `Σₖ g(d / (x1 + k))` with `g(u) = u − ln(1 + u) ≥ 0`;
//! * Stirling's `(z − ½) ln z − z` at `z = x1 + n` contributes `z f(u) + ½ g(u)` with
//!   `u = d / z` and `f(u) = (1 + u) ln(1 + u) − u ≥ 0`;
//! * its remainder `Σ c_m z⁻ᵐ` (m = 1, 3, …, 9) contributes `Σ c_m z⁻ᵐ u² t qₘ(t)`,
//!   `t = 1/(1 + u)`, `qₘ(t) = Σ_{i<m} (m − i) tⁱ`: an exact identity with no subtraction.
//!
//! `f` and `g` come from `w = u / (2 + u)`, `ln(1 + u) = 2 atanh w`: `g = u w − 2 S`,
//! `f = u w + 2 (1 + u) S`, `S = atanh w − w` (an odd series in w for |w| ≤ ½). Each G is
//! then accurate to a few f32 ulps of itself (tests: ≤ 1.6e-6 relative against quadrature).
//!
//! In `Ga + Gb − Gs` the three leading parts `z f(u)` still cancel to first order; shifting
//! the sum by `na + nb` makes them combine exactly into a Bernoulli KL (see
//! [`kl_beta_fast_f32`]), which leaves only lower-order pieces to subtract. The answer comes
//! with an error bound, which also counts the rounding of the steps `a2 − a1`, … when the end
//! points are far apart; when the bound exceeds `1e-5 · KL` (about 5 % of elements with every
//! parameter uniform in [0.5, 20.5], 0.1 % in the KLUB regime in the tests), or an argument
//! is outside [1e-4, 1e6], the caller evaluates that element in f64 instead.

/// Arguments outside this range go to the f64 path.
pub const FAST_RANGE: (f32, f32) = (1e-4, 1e6);
/// Relative error the f32 path guarantees (by its bound) before it falls back to f64.
pub const FAST_REL_TOL: f32 = 1e-5;

/// `S(w) = atanh(w) − w` and `w = u / (2 + u)` for the step `d` from `x` (u = d / x > −1),
/// with `ln(1 + u)` taken from the end point `x + d` so that u near −1 loses nothing.
fn atanh_tail(d: f32, x: f32) -> (f32, f32, f32) {
    let u = d / x;
    let w = d / (x + (x + d));
    if w.abs() <= 0.5 {
        let w2 = w * w;
        // w³ Σ_{k≥0} w^{2k} / (2k + 3), to w^25 (the next term is < 1e-8 · w³ at |w| = ½).
        let mut p = 1.0 / 23.0;
        for den in [21.0, 19.0, 17.0, 15.0, 13.0, 11.0, 9.0, 7.0, 5.0, 3.0f32] {
            p = p * w2 + 1.0 / den;
        }
        (u, w, w * w2 * p)
    } else {
        (u, w, 0.5 * ((x + d) / x).ln() - w)
    }
}

/// `g(u) = u − ln(1 + u) ≥ 0` at `u = d / x`, without cancellation.
pub fn g_f32(d: f32, x: f32) -> f32 {
    let (u, w, s) = atanh_tail(d, x);
    u * w - 2.0 * s
}

/// `f(u) = (1 + u) ln(1 + u) − u ≥ 0` at `u = d / x`, without cancellation.
pub fn f_f32(d: f32, x: f32) -> f32 {
    let (u, w, s) = atanh_tail(d, x);
    u * w + 2.0 * ((x + d) / x) * s
}

/// Shifts lnΓ's recurrence needs before Stirling's series (to z ≥ 4, where its terms
/// through z⁻¹¹ leave a relative error below 1e-8 in every Bregman piece: the next, 1/(156 z¹³),
/// contributes at most 182 / (156 · 4¹⁴) ≈ 4e-9 of the leading z f(u)). Four rather than five
/// shifts: on a GPU every lane of a warp runs its warp's longest shift loop.
const SHIFT_TO: f32 = 4.0;

fn shifts(x1: f32, d: f32) -> u32 {
    let m = x1.min(x1 + d);
    if m >= SHIFT_TO {
        0
    } else {
        (SHIFT_TO - m).ceil() as u32
    }
}

/// Bregman divergence of `−Σₖ ln(x + k)` (k < n) from x1 to x1 + d: `Σₖ g(d / (x1 + k))`.
fn shift_sum(x1: f32, d: f32, n: u32) -> f32 {
    (0..n).map(|k| g_f32(d, x1 + k as f32)).sum()
}

/// Bregman divergence of Stirling's remainder `1/(12z) − 1/(360z³) + 1/(1260z⁵) −
/// 1/(1680z⁷) + 1/(1188z⁹) − 691/(360360z¹¹)` from z to z + d = z (1 + u): `B[z⁻ᵐ] = z⁻ᵐ u² t qₘ(t)` with
/// `t = 1/(1 + u)`, `qₘ(t) = Σ_{i<m} (m − i) tⁱ`.
fn stirling_tail(z: f32, d: f32) -> f32 {
    let (u, t) = (d / z, z / (z + d));
    let q = |m: u32| (0..m).rev().fold(0.0f32, |acc, i| acc * t + (m - i) as f32);
    let r = 1.0 / z;
    let r2 = r * r;
    let series = q(1) / 12.0
        - r2 * (q(3) / 360.0
            - r2 * (q(5) / 1260.0 - r2 * (q(7) / 1680.0 - r2 * (q(9) / 1188.0 - r2 * (q(11) * (691.0 / 360360.0))))));
    u * u * t * r * series
}

/// The Gamma KL `G(x1, x1 + d)` (the Bregman divergence of lnΓ from x1 to x1 + d) in f32
/// for x1 and x1 + d in [`FAST_RANGE`], accurate to a few ulps of itself. Taking the step
/// `d` rather than the end point lets a caller form it without rounding the end point.
pub fn gamma_kl_f32(x1: f32, d: f32) -> f32 {
    let n = shifts(x1, d);
    let z = x1 + n as f32;
    shift_sum(x1, d, n) + z * f_f32(d, z) + 0.5 * g_f32(d, z) + stirling_tail(z, d)
}

/// `a + b` rounded to f32 and its rounding error, exactly (Knuth's TwoSum).
fn two_sum(a: f32, b: f32) -> (f32, f32) {
    let s = a + b;
    let bp = s - a;
    let ap = s - bp;
    (s, (a - ap) + (b - bp))
}

/// Bound on how far the Gamma KL from x1 moves when its end point x2 moves by `e`: at most
/// |e| · max |ψ(t) − ψ(x1)| over t within |e| of x2, and for 0 < m ≤ M,
/// ψ(M) − ψ(m) < ln(M/m) + 1/m (ψ(x) lies between ln x − 1/x and ln x − 1/(2x)) with
/// ln(M/m) ≤ (M − m)/√(Mm). Infinite when the moved end point could reach 0.
fn endpoint_shift(e: f32, x1: f32, x2: f32) -> f32 {
    if e == 0.0 {
        return 0.0;
    }
    let (m, big) = (x1.min(x2) - e.abs(), x1.max(x2) + e.abs());
    if m <= 0.0 {
        return f32::INFINITY;
    }
    e.abs() * ((big - m) / (big * m).sqrt() + 1.0 / m)
}

/// KL(Beta(a1, b1) ‖ Beta(a2, b2)) in f32 when the f32 path can guarantee
/// [`FAST_REL_TOL`] relative accuracy, else `None` (evaluate in f64).
///
/// `Ga + Gb − Gs` is not formed from the three Gamma KLs: their leading Stirling parts
/// `z f(u)` cancel to first order. With a shifted by `na`, b by `nb` and the sum by
/// `na + nb` (so `zs = za + zb`), those parts combine exactly into
/// `Z2 · KL(Bernoulli(p2) ‖ Bernoulli(p1))` with `p1 = za / zs`, `p2 = (za + da) / Z2`,
/// `Z2 = zs + da + db`, a sum of non-negative terms whose `p2 − p1 = (da zb − za db) / (zs Z2)`
/// is formed with an exact difference of products. What is left (the recurrence sums, the
/// ½ ln z and remainder parts) is lower order; the error bound counts each piece's size.
///
/// The steps `da = a2 − a1`, `db`, `ds = da + db` are rounded when the end points are far
/// apart; the algebra then answers for slightly moved end points, which the bound adds
/// through [`endpoint_shift`] (with a1 = 1e4 and a2 = 1e-3 the move is comparable to a2
/// itself, so such elements go to f64).
pub fn kl_beta_fast_f32(a1: f32, b1: f32, a2: f32, b2: f32) -> Option<f32> {
    let (lo, hi) = FAST_RANGE;
    let ok = |x: f32| (lo..=hi).contains(&x);
    let (s1, s2) = (a1 + b1, a2 + b2);
    if !(ok(a1) && ok(b1) && ok(a2) && ok(b2) && ok(s1) && ok(s2)) {
        return None;
    }
    let ((da, ea), (db, eb)) = (two_sum(a2, -a1), two_sum(b2, -b1));
    let (ds, er) = two_sum(da, db);
    let (na, nb) = (shifts(a1, da), shifts(b1, db));
    let (za, zb) = (a1 + na as f32, b1 + nb as f32);
    let zs = za + zb;
    let z2 = (za + da) + (zb + db);
    // da·zb − za·db, exactly rounded once (FMA error-free product).
    let w = za * db;
    let num = da.mul_add(zb, -w) - za.mul_add(db, -w);
    let delta = num / (zs * z2);
    let (p1, q1) = (za / zs, zb / zs);
    let lead = z2 * (p1 * f_f32(delta, p1) + q1 * f_f32(-delta, q1));
    let (sa, sb, ss) = (shift_sum(a1, da, na), shift_sum(b1, db, nb), shift_sum(s1, ds, na + nb));
    let (ga, gb, gs) = (g_f32(da, za), g_f32(db, zb), g_f32(ds, zs));
    let (ma, mb, ms) = (stirling_tail(za, da), stirling_tail(zb, db), stirling_tail(zs, ds));
    let kl = lead + (sa + sb - ss) + 0.5 * (ga + gb - gs) + (ma + mb - ms);
    let size = lead + sa + sb + ss + 0.5 * (ga + gb + gs) + ma.abs() + mb.abs() + ms.abs();
    let moved = endpoint_shift(ea, a1, a2)
        + endpoint_shift(eb, b1, b2)
        + endpoint_shift(ea.abs() + eb.abs() + er.abs(), s1, s2);
    if size == 0.0 && moved == 0.0 {
        return Some(0.0);
    }
    // Every piece is within a few ulps of itself; 8 ε of their total bounds the error.
    // (NaN fails the comparison; an infinite KL is never an answer here.)
    if kl.is_finite() && 8.0 * f32::EPSILON * size + moved <= FAST_REL_TOL * kl {
        Some(kl)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::special::trigamma;

    /// Gauss–Legendre nodes and weights on [−1, 1] (Newton on Pₙ).
    fn gauss_legendre(n: usize) -> Vec<(f64, f64)> {
        (1..=n)
            .map(|i| {
                let mut x = (std::f64::consts::PI * (i as f64 - 0.25) / (n as f64 + 0.5)).cos();
                let mut dp = 0.0;
                for _ in 0..100 {
                    let (mut p0, mut p1) = (1.0, x);
                    for k in 2..=n {
                        let p2 = ((2 * k - 1) as f64 * x * p1 - (k - 1) as f64 * p0) / k as f64;
                        p0 = p1;
                        p1 = p2;
                    }
                    dp = n as f64 * (x * p1 - p0) / (x * x - 1.0);
                    let dx = p1 / dp;
                    x -= dx;
                    if dx.abs() < 1e-16 {
                        break;
                    }
                }
                (x, 2.0 / ((1.0 - x * x) * dp * dp))
            })
            .collect()
    }

    /// The Gamma KL by its integral form `∫ ψ₁(t) (x2 − t) dt` over [x1, x2] (f64, composite
    /// Gauss–Legendre on pieces whose ends differ by at most 25 %): independent of the
    /// algebra under test.
    fn gamma_kl_ref(x1: f64, x2: f64) -> f64 {
        let (lo, hi) = (x1.min(x2), x1.max(x2));
        if lo == hi {
            return 0.0;
        }
        let gl = gauss_legendre(24);
        let pieces = ((hi / lo).ln() / 1.25f64.ln()).ceil().max(1.0) as usize;
        let mut total = 0.0;
        for p in 0..pieces {
            let a = lo * (hi / lo).powf(p as f64 / pieces as f64);
            let b = if p + 1 == pieces { hi } else { lo * (hi / lo).powf((p + 1) as f64 / pieces as f64) };
            let (m, h) = (0.5 * (a + b), 0.5 * (b - a));
            for &(x, w) in &gl {
                let t = m + h * x;
                total += w * h * trigamma(t) * (x2 - t).abs();
            }
        }
        total
    }

    fn rng(seed: u64) -> impl FnMut() -> f64 {
        let mut s = seed;
        move || {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    #[test]
    fn reference_quadrature_matches_the_closed_form_where_that_is_well_conditioned() {
        use crate::special::{digamma, lgamma};
        for (x1, x2) in [(0.5, 3.0), (2.0, 1.0), (7.5, 30.0), (100.0, 40.0), (1e-3, 2.0)] {
            let closed = lgamma(x2) - lgamma(x1) - (x2 - x1) * digamma(x1);
            let q = gamma_kl_ref(x1, x2);
            assert!((q - closed).abs() <= 1e-12 * closed.abs().max(1.0), "{x1} {x2}: {q} vs {closed}");
        }
    }

    #[test]
    fn f_and_g_are_accurate_from_tiny_to_huge_arguments() {
        for &u in &[-0.999, -0.9, -0.6, -0.3, -1e-3, -1e-7, 1e-7, 1e-4, 0.01, 0.3, 0.7, 2.5, 40.0, 1e5] {
            let u32 = u as f32;
            let ud = u32 as f64;
            // f64 series for small u (cancellation-free), closed forms otherwise.
            let (g, f) = if ud.abs() < 1e-3 {
                let (u2, u3, u4) = (ud * ud, ud * ud * ud, ud * ud * ud * ud);
                (u2 / 2.0 - u3 / 3.0 + u4 / 4.0, u2 / 2.0 - u3 / 6.0 + u4 / 12.0)
            } else {
                (ud - ud.ln_1p(), (1.0 + ud) * ud.ln_1p() - ud)
            };
            let eg = (g_f32(u32, 1.0) as f64 - g).abs() / g;
            let ef = (f_f32(u32, 1.0) as f64 - f).abs() / f;
            assert!(eg < 4e-7 && ef < 4e-7, "u = {u}: g rel err {eg:.2e}, f rel err {ef:.2e}");
        }
    }

    #[test]
    fn gamma_kl_is_accurate_relative_to_itself_over_the_whole_range() {
        let mut worst: f64 = 0.0;
        let mut x1 = 1e-4f64;
        while x1 <= 1e6 {
            for rel in [-0.99, -0.5, -0.1, -1e-3, -1e-6, 1e-6, 1e-3, 0.1, 1.0, 10.0, 1e3] {
                let a = x1 as f32;
                let b = (x1 * (1.0 + rel)) as f32;
                if !(FAST_RANGE.0..=FAST_RANGE.1).contains(&b) || a == b {
                    continue;
                }
                let want = gamma_kl_ref(a as f64, b as f64);
                let got = gamma_kl_f32(a, b - a) as f64;
                let e = (got - want).abs() / want;
                worst = worst.max(e);
                assert!(e < 2e-6, "G({a}, {b}) = {got:e}, reference {want:e}: rel err {e:.2e}");
            }
            x1 *= 3.7;
        }
        println!("worst relative error of the f32 Gamma KL: {worst:.2e}");
    }

    fn kl_ref(a1: f32, b1: f32, a2: f32, b2: f32) -> f64 {
        let (a1, b1, a2, b2) = (a1 as f64, b1 as f64, a2 as f64, b2 as f64);
        gamma_kl_ref(a1, a2) + gamma_kl_ref(b1, b2) - gamma_kl_ref(a1 + b1, a2 + b2)
    }

    /// Checks accepted values against the reference; returns the accepted fraction.
    fn check(cases: &[(f32, f32, f32, f32)]) -> f64 {
        let mut accepted = 0;
        for &(a1, b1, a2, b2) in cases {
            if let Some(v) = kl_beta_fast_f32(a1, b1, a2, b2) {
                accepted += 1;
                let want = kl_ref(a1, b1, a2, b2);
                let e = (v as f64 - want).abs();
                assert!(
                    e <= FAST_REL_TOL as f64 * want.abs() + 1e-30,
                    "KL(B({a1}, {b1}) ‖ B({a2}, {b2})) = {v:e}, reference {want:e}"
                );
            }
        }
        accepted as f64 / cases.len() as f64
    }

    #[test]
    fn beta_kl_is_within_its_tolerance_whenever_it_answers() {
        // The benchmark's distribution: every parameter uniform in [0.5, 20.5].
        let mut r = rng(1);
        let mut u = || (0.5 + 20.0 * r()) as f32;
        let general: Vec<_> = (0..4000).map(|_| (u(), u(), u(), u())).collect();
        let fg = check(&general);
        // The KLUB regime (spec §B5.3): a = η δ x, b = η − η α_s x with η = 1e4, the model's
        // x̂ near the data x.
        let mut r = rng(2);
        let mut klub = Vec::new();
        for _ in 0..4000 {
            let (at, gap, x) = (0.05 + 0.9 * r(), 1e-4 + 0.05 * r(), 0.1 + 0.8 * r());
            let (eta, as_) = (1e4, (at + gap).min(0.999));
            let xh = x * (1.0 + (r() - 0.5) * 10f64.powf(-1.0 - 4.0 * r()));
            let (ca, cb) = (eta * (as_ - at), -eta * as_);
            klub.push(((ca * xh) as f32, (eta + cb * xh) as f32, (ca * x) as f32, (eta + cb * x) as f32));
        }
        let fk = check(&klub);
        // Proportional changes, where Ga + Gb − Gs cancels to first order (the Bernoulli
        // identity removes it).
        let prop: Vec<_> =
            (1..200).map(|i| (3.0, 5.0, 3.0 * (1.0 + i as f32 * 1e-4), 5.0 * (1.0 + i as f32 * 1e-4))).collect();
        let fp = check(&prop);
        println!("answered in f32: benchmark inputs {fg:.3}, KLUB regime {fk:.3}, proportional {fp:.3}");
        assert!(fg > 0.93 && fk > 0.99 && fp > 0.99, "the f32 path should answer nearly every input");
        assert_eq!(kl_beta_fast_f32(2.0, 3.0, 2.0, 3.0), Some(0.0));
        assert_eq!(kl_beta_fast_f32(0.0, 3.0, 2.0, 3.0), None, "outside the range: f64");
        assert_eq!(kl_beta_fast_f32(f32::NAN, 3.0, 2.0, 3.0), None);
    }

    #[test]
    fn far_apart_parameters_are_answered_accurately_or_deferred() {
        // Log-uniform over the whole fast range: steps like 1.8e4 → 6e-4, whose f32
        // difference is off by more than the end point itself, must not be answered from
        // the rounded step (this one once gave +inf).
        assert_eq!(kl_beta_fast_f32(18237.92, 0.00038983824, 0.0006209841, 0.16275895), None);
        let mut r = rng(3);
        let (lo, hi) = (FAST_RANGE.0 as f64, FAST_RANGE.1 as f64);
        let mut v = || (lo * (hi / lo).powf(r())) as f32;
        let wide: Vec<_> = (0..3000).map(|_| (v(), v(), v(), v())).collect();
        let fw = check(&wide);
        // One parameter far from its partner, the other close: a small KL next to a large step.
        let mut r = rng(4);
        let mut near = Vec::new();
        for _ in 0..3000 {
            let (a1, b1) = ((1e-3 * 1e6f64.powf(r())) as f32, (0.5 + 50.0 * r()) as f32);
            let a2 = (a1 as f64 * 10f64.powf(4.0 * r() - 2.0)) as f32;
            near.push((a1, b1, a2, (b1 as f64 * (1.0 + 1e-3 * (r() - 0.5))) as f32));
        }
        let fn_ = check(&near);
        println!("answered in f32: log-uniform over the range {fw:.3}, far a / near b {fn_:.3}");
    }
}
