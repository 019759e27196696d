//! Special functions in `f64`, shared by the CPU kernels (the CUDA kernels mirror these
//! formulas, so keep them free of recursion, tables and platform-specific calls).
//!
//! Conventions follow scipy/PyTorch at singular points: `digamma(±0) = ∓inf`,
//! `digamma(negative integer) = NaN`, `trigamma(non-positive integer) = +inf`.

use std::f64::consts::PI;

/// `x` at or above which the asymptotic series of digamma/trigamma is used. At 10 the first
/// omitted term is below 1e-16 relative, and the upward recurrence needs at most 10 steps.
const ASYMPTOTIC_MIN: f64 = 10.0;

/// sqrt(2/pi), the tanh-GELU inner scale.
const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
/// The cubic coefficient of the tanh-GELU approximation.
const GELU_TANH_KAPPA: f64 = 0.044_715;
/// 1/sqrt(2pi), the standard normal density at 0.
const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// Natural log of |Γ(x)| (`+inf` at the poles x = 0, -1, -2, ...).
pub fn lgamma(x: f64) -> f64 {
    libm::lgamma(x)
}

/// Digamma ψ(x) = d/dx ln Γ(x).
pub fn digamma(x: f64) -> f64 {
    if x == 0.0 {
        // The sign of zero picks the side of the pole, as in scipy and PyTorch.
        return f64::INFINITY.copysign(-x);
    }
    let mut x = x;
    let mut result = 0.0;
    if x < 0.0 {
        if x == x.floor() {
            // Negative integers (and -inf) are poles with no consistent sign.
            return f64::NAN;
        }
        // Reflection ψ(x) = ψ(1-x) - π cot(πx). cot has period 1, and x - round(x) is exact,
        // whereas π·x itself would lose the fractional part for large |x|.
        let r = x - x.round();
        result = -PI / (PI * r).tan();
        x = 1.0 - x;
    }
    // Upward recurrence ψ(x) = ψ(x+1) - 1/x until the asymptotic series is accurate.
    while x < ASYMPTOTIC_MIN {
        result -= 1.0 / x;
        x += 1.0;
    }
    // ψ(x) ~ ln x - 1/(2x) - Σ B_2k / (2k x^2k), through B_14.
    let z = 1.0 / (x * x);
    let series = z
        * (1.0 / 12.0
            - z * (1.0 / 120.0
                - z * (1.0 / 252.0
                    - z * (1.0 / 240.0 - z * (1.0 / 132.0 - z * (691.0 / 32760.0 - z * (1.0 / 12.0)))))));
    result + (x.ln() - 0.5 / x - series)
}

/// Trigamma ψ₁(x) = d²/dx² ln Γ(x).
pub fn trigamma(x: f64) -> f64 {
    if x <= 0.0 && x == x.floor() {
        // Non-positive integers (and -inf) are double poles: +inf, as scipy's polygamma(1, x).
        return f64::INFINITY;
    }
    let mut x = x;
    let mut result = 0.0;
    let mut sign = 1.0;
    if x < 0.0 {
        // Reflection ψ₁(x) = π² / sin²(πx) - ψ₁(1-x); sin² has period 1, so reduce exactly first
        // (see digamma). No cancellation: the first term is >= π², the second <= π²/6.
        let r = x - x.round();
        let s = (PI * r).sin();
        result = PI * PI / (s * s);
        sign = -1.0;
        x = 1.0 - x;
    }
    // Upward recurrence ψ₁(x) = ψ₁(x+1) + 1/x².
    let mut acc = 0.0;
    while x < ASYMPTOTIC_MIN {
        acc += 1.0 / (x * x);
        x += 1.0;
    }
    // ψ₁(x) ~ 1/x + 1/(2x²) + Σ B_2k / x^(2k+1), through B_16.
    let z = 1.0 / (x * x);
    let series = z
        * (1.0 / 6.0
            - z * (1.0 / 30.0
                - z * (1.0 / 42.0
                    - z * (1.0 / 30.0
                        - z * (5.0 / 66.0 - z * (691.0 / 2730.0 - z * (7.0 / 6.0 - z * (3617.0 / 510.0))))))));
    acc += (1.0 + 0.5 / x + series) / x;
    result + sign * acc
}

/// Error function erf(x).
pub fn erf(x: f64) -> f64 {
    libm::erf(x)
}

/// Complementary error function erfc(x) = 1 - erf(x), accurate where erf(x) is near 1.
pub fn erfc(x: f64) -> f64 {
    libm::erfc(x)
}

/// Exact GELU, x·Φ(x) = 0.5·x·(1 + erf(x/√2)).
pub fn gelu_erf(x: f64) -> f64 {
    // 1 + erf(x/√2) == erfc(-x/√2), but the erfc form keeps full relative accuracy for
    // negative x, where 1 + erf cancels.
    times_limit_zero(x, 0.5 * erfc(-x * std::f64::consts::FRAC_1_SQRT_2))
}

/// Derivative of [`gelu_erf`]: Φ(x) + x·φ(x).
pub fn gelu_erf_grad(x: f64) -> f64 {
    let cdf = 0.5 * erfc(-x * std::f64::consts::FRAC_1_SQRT_2);
    let pdf = INV_SQRT_2PI * (-0.5 * x * x).exp();
    cdf + times_limit_zero(x, pdf)
}

/// Tanh-approximated GELU, 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
pub fn gelu_tanh(x: f64) -> f64 {
    let (s, _) = gelu_tanh_sigmoids(x);
    times_limit_zero(x, s)
}

/// Derivative of [`gelu_tanh`]: 0.5·(1 + tanh u) + 0.5·x·sech²(u)·u'.
pub fn gelu_tanh_grad(x: f64) -> f64 {
    let (s, one_minus_s) = gelu_tanh_sigmoids(x);
    // With s = σ(2u): 1 + tanh u = 2s and sech² u = 4·s·(1-s).
    let sech2 = 4.0 * s * one_minus_s;
    if sech2 == 0.0 {
        // Skip the second term: its x³ factor overflows to inf for huge |x|, and inf·0 is NaN.
        return s;
    }
    let du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_KAPPA * x * x);
    s + 0.5 * x * sech2 * du
}

/// `(σ(2u), 1 - σ(2u))` for the tanh-GELU inner argument u, where 0.5·(1 + tanh u) = σ(2u).
/// Both are computed directly so that neither 1 + tanh u nor 1 - tanh² u cancels.
fn gelu_tanh_sigmoids(x: f64) -> (f64, f64) {
    let u = SQRT_2_OVER_PI * (x + GELU_TANH_KAPPA * x * x * x);
    let e = (2.0 * u).exp();
    // exp overflowing to inf gives exactly 0 or 1 below, the correct limits.
    (1.0 / (1.0 + 1.0 / e), 1.0 / (1.0 + e))
}

/// `x * f` where `f == 0` yields 0 even for infinite `x`: the GELU terms using this vanish in
/// the limit (f decays faster than x grows), and inf·0 would otherwise be NaN.
fn times_limit_zero(x: f64, f: f64) -> f64 {
    if f == 0.0 {
        0.0
    } else {
        x * f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Euler–Mascheroni constant γ.
    const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

    fn rel_err(got: f64, want: f64) -> f64 {
        if got == want {
            0.0
        } else {
            ((got - want) / want).abs()
        }
    }

    fn assert_rel(got: f64, want: f64, tol: f64, what: &str) {
        let e = rel_err(got, want);
        assert!(e <= tol, "{what}: got {got:e}, want {want:e}, rel err {e:e} > {tol:e}");
    }

    /// (x, ψ(x), ψ₁(x)) computed with mpmath at 50 digits, rounded to f64.
    const POSITIVE: &[(f64, f64, f64)] = &[
        (0.001, -1000.5755719318103, 1000001.6425331958),
        (0.01, -100.56088545786868, 10001.621213528313),
        (0.1, -10.423754940411076, 101.43329915079275),
        (0.25, -4.2274535333762655, 17.19732915450711),
        (0.5, -1.9635100260214235, 4.934802200544679),
        (0.75, -1.0858608797864722, 2.5418796476716063),
        (1.0, -0.5772156649015329, 1.6449340668482264),
        (1.25, -0.22745353337626542, 1.1973291545071107),
        (1.5, 0.03648997397857652, 0.9348022005446793),
        (2.0, 0.42278433509846713, 0.6449340668482264),
        (2.5, 0.7031566406452432, 0.49035775610023485),
        (3.0, 0.9227843350984671, 0.39493406684822646),
        (4.5, 1.388870926359529, 0.24872510303901038),
        (5.999, 1.7059363290792255, 0.1813557513843386),
        (6.0, 1.7061176684318005, 0.18132295573711532),
        (7.3, 1.9178203356379862, 0.1467957681314271),
        (9.99, 2.250700372831201, 0.10527695014824179),
        (10.0, 2.251752589066721, 0.10516633568168575),
        (10.5, 2.3030010342976865, 0.09991695605912673),
        (13.7, 2.5804557238996524, 0.0757214158226239),
        (25.0, 3.198742512851974, 0.04081066325722558),
        (100.0, 4.600161852738087, 0.010050166663333571),
        (123.456, 4.811829323828985, 0.008132945834278198),
        (1000.0, 6.907255195648812, 0.0010005001666666333),
        (10000.0, 9.210290371142849, 0.00010000500016666666),
        (54321.5, 10.902666171502872, 1.840908672468767e-05),
        (100000.0, 11.512920464961896, 1.0000050000166667e-05),
    ];

    /// Negative, non-integer arguments (mpmath, as above).
    const NEGATIVE: &[(f64, f64, f64)] = &[
        (-0.001, 999.4211381978913, 1000001.6473414317),
        (-0.5, 0.03648997397857652, 8.934802200544679),
        (-1.5, 0.7031566406452432, 9.379246644989124),
        (-2.7, -1.1153471291406896, 14.769375845132314),
        (-10.3, 4.662403493582087, 14.986887065722637),
        (-100.25, 7.754238959208646, 19.729283325349364),
        (-12345.625, 8.119807243344125, 11.56287980872798),
    ];

    /// The positive root of ψ (mpmath findroot).
    const DIGAMMA_ROOT: f64 = 1.4616321449683623;

    #[test]
    fn digamma_matches_mpmath() {
        for &(x, want, _) in POSITIVE {
            assert_rel(digamma(x), want, 1e-13, &format!("digamma({x})"));
        }
    }

    #[test]
    fn trigamma_matches_mpmath() {
        for &(x, _, want) in POSITIVE {
            assert_rel(trigamma(x), want, 1e-13, &format!("trigamma({x})"));
        }
    }

    #[test]
    fn reflection_for_negative_arguments() {
        for &(x, want_psi, want_psi1) in NEGATIVE {
            assert_rel(digamma(x), want_psi, 1e-12, &format!("digamma({x})"));
            assert_rel(trigamma(x), want_psi1, 1e-12, &format!("trigamma({x})"));
        }
    }

    #[test]
    fn closed_forms() {
        let ln2 = std::f64::consts::LN_2;
        assert_rel(digamma(1.0), -EULER_GAMMA, 1e-15, "digamma(1)");
        assert_rel(digamma(0.5), -EULER_GAMMA - 2.0 * ln2, 1e-15, "digamma(0.5)");
        assert_rel(trigamma(1.0), PI * PI / 6.0, 1e-15, "trigamma(1)");
        assert_rel(trigamma(0.5), PI * PI / 2.0, 1e-15, "trigamma(0.5)");
        // ψ(n) = H_{n-1} - γ.
        let h49: f64 = (1..50).map(|k| 1.0 / k as f64).sum();
        assert_rel(digamma(50.0), h49 - EULER_GAMMA, 1e-14, "digamma(50)");
    }

    #[test]
    fn digamma_near_its_root_is_absolutely_accurate() {
        assert!(digamma(DIGAMMA_ROOT).abs() < 1e-15);
        // ψ(x0 + h) ≈ h·ψ₁(x0), ψ₁(x0) = 0.9713007..., to first order.
        let h = 1e-6;
        let slope = (digamma(DIGAMMA_ROOT + h) - digamma(DIGAMMA_ROOT - h)) / (2.0 * h);
        assert!((slope - trigamma(DIGAMMA_ROOT)).abs() < 1e-8);
    }

    #[test]
    fn recurrences_hold_across_the_range() {
        // Log-spaced sweep over [1e-3, 1e5], crossing the recurrence/series switch at 10.
        let mut x: f64 = 1e-3;
        while x <= 1e5 {
            let d = digamma(x + 1.0) - (digamma(x) + 1.0 / x);
            let t = trigamma(x + 1.0) - (trigamma(x) - 1.0 / (x * x));
            // Absolute tolerance scaled by the largest term of each identity.
            let scale_d = digamma(x).abs().max(1.0 / x).max(1.0);
            let scale_t = trigamma(x).abs();
            assert!(d.abs() <= 4e-15 * scale_d, "digamma recurrence at {x}: {d:e}");
            assert!(t.abs() <= 4e-15 * scale_t, "trigamma recurrence at {x}: {t:e}");
            x *= 1.37;
        }
    }

    #[test]
    fn poles_and_special_inputs() {
        assert_eq!(digamma(0.0), f64::NEG_INFINITY);
        assert_eq!(digamma(-0.0), f64::INFINITY);
        assert!(digamma(-1.0).is_nan());
        assert!(digamma(-7.0).is_nan());
        assert!(digamma(f64::NEG_INFINITY).is_nan());
        assert!(digamma(f64::NAN).is_nan());
        assert_eq!(digamma(f64::INFINITY), f64::INFINITY);
        assert_eq!(trigamma(0.0), f64::INFINITY);
        assert_eq!(trigamma(-3.0), f64::INFINITY);
        assert!(trigamma(f64::NAN).is_nan());
        assert_eq!(trigamma(f64::INFINITY), 0.0);
        assert_eq!(lgamma(0.0), f64::INFINITY);
        assert_eq!(lgamma(-2.0), f64::INFINITY);
    }

    #[test]
    fn lgamma_matches_mpmath_including_beta_diffusion_range() {
        // Beta Diffusion evaluates log-Beta terms with concentrations up to ~1e4.
        let cases: &[(f64, f64)] = &[
            (0.5, 0.5723649429247001),
            (0.001, 6.907178885383853),
            (3.7, 1.428072326665388),
            (100.0, 359.1342053695754),
            (10000.0, 82099.71749644238),
            (2500.0, 17057.12197600184),
            (7777.77, 61899.90487309658),
            (-2.5, -0.056243716497674054),
        ];
        for &(x, want) in cases {
            assert_rel(lgamma(x), want, 1e-14, &format!("lgamma({x})"));
        }
        // d/dx lgamma = digamma at large x (central difference, h chosen for f64 cancellation).
        let (x, h) = (1e4, 1e-2);
        let fd = (lgamma(x + h) - lgamma(x - h)) / (2.0 * h);
        assert!((fd - digamma(x)).abs() < 1e-9, "fd {fd} vs digamma {}", digamma(x));
    }

    #[test]
    fn erf_and_erfc() {
        let cases: &[(f64, f64, f64)] = &[
            (-3.0, -0.9999779095030014, 1.9999779095030015),
            (-0.5, -0.5204998778130465, 1.5204998778130465),
            (0.1, 0.1124629160182849, 0.887537083981715),
            (1.0, 0.8427007929497149, 0.15729920705028513),
            (2.0, 0.9953222650189527, 0.004677734981047266),
            (6.0, 1.0, 2.1519736712498913e-17),
        ];
        for &(x, want_erf, want_erfc) in cases {
            assert_rel(erf(x), want_erf, 1e-15, &format!("erf({x})"));
            assert_rel(erfc(x), want_erfc, 1e-14, &format!("erfc({x})"));
        }
    }

    #[test]
    fn gelu_values_match_mpmath() {
        // (x, gelu_erf, gelu_erf', gelu_tanh, gelu_tanh'), mpmath at 60 digits.
        let cases: &[(f64, f64, f64, f64, f64)] = &[
            (-30.0, -1.472014178144456e-196, -4.416031690708495e-195, -0.0, -0.0),
            (-5.0, -1.4332578593959695e-06, -7.146946001792295e-06, -2.291796196629506e-07, -1.5463619875325946e-06),
            (-1.0, -0.15865525393145705, -0.0833154705876863, -0.1588080093917233, -0.08296408384578255),
            (-0.1, -0.0460172162722971, 0.4204769079752698, -0.04601724895456484, 0.42047821072824326),
            (0.0, 0.0, 0.5, 0.0, 0.5),
            (0.3, 0.1853734266566858, 0.7323277668271099, 0.18537092354275925, 0.7322954516388018),
            (1.0, 0.8413447460685429, 1.0833154705876864, 0.8411919906082767, 1.0829640838457826),
            (2.5, 2.4844758366855597, 1.037611085908145, 2.484915733910001, 1.037951576212666),
            (8.0, 7.999999999999995, 1.0000000000000397, 8.0, 1.0),
        ];
        for &(x, ge, geg, gt, gtg) in cases {
            // Relative 1e-13 with a tiny absolute floor for the exact zeros.
            let close = |got: f64, want: f64| (got - want).abs() <= 1e-13 * want.abs() + 1e-300;
            assert!(close(gelu_erf(x), ge), "gelu_erf({x}) = {:e}, want {ge:e}", gelu_erf(x));
            assert!(close(gelu_erf_grad(x), geg), "gelu_erf_grad({x}) = {:e}", gelu_erf_grad(x));
            assert!(close(gelu_tanh(x), gt), "gelu_tanh({x}) = {:e}, want {gt:e}", gelu_tanh(x));
            assert!(close(gelu_tanh_grad(x), gtg), "gelu_tanh_grad({x}) = {:e}", gelu_tanh_grad(x));
        }
    }

    #[test]
    fn gelu_grads_match_finite_differences() {
        let h = 1e-5;
        for i in -40..=40 {
            let x = i as f64 * 0.2;
            let fe = (gelu_erf(x + h) - gelu_erf(x - h)) / (2.0 * h);
            let ft = (gelu_tanh(x + h) - gelu_tanh(x - h)) / (2.0 * h);
            assert!((fe - gelu_erf_grad(x)).abs() < 1e-9, "gelu_erf_grad({x})");
            assert!((ft - gelu_tanh_grad(x)).abs() < 1e-9, "gelu_tanh_grad({x})");
        }
    }

    #[test]
    fn gelu_limits_are_finite() {
        for f in [gelu_erf, gelu_tanh] {
            assert_eq!(f(f64::INFINITY), f64::INFINITY);
            assert_eq!(f(f64::NEG_INFINITY), 0.0);
            assert_eq!(f(1e300), 1e300);
            assert_eq!(f(-1e300), 0.0);
            assert!(f(f64::NAN).is_nan());
        }
        for g in [gelu_erf_grad, gelu_tanh_grad] {
            assert_eq!(g(f64::INFINITY), 1.0);
            assert_eq!(g(f64::NEG_INFINITY), 0.0);
            assert_eq!(g(1e300), 1.0);
            assert_eq!(g(-1e300), 0.0);
            assert!(g(f64::NAN).is_nan());
        }
    }
}

/// ψ₂(x) = d²/dx² ln Γ(x) (tetragamma): recurrence up to x ≥ 10, then the asymptotic series.
pub fn tetragamma(x: f64) -> f64 {
    if x.is_nan() || x == f64::NEG_INFINITY {
        return f64::NAN;
    }
    if x <= 0.0 && x == x.floor() {
        return f64::NAN;
    }
    if x < -1e6 {
        return f64::NAN;
    }
    let mut acc = 0.0;
    let mut z = x;
    while z < 10.0 {
        acc -= 2.0 / (z * z * z);
        z += 1.0;
    }
    let r = 1.0 / z;
    let r2 = r * r;
    // −1/z² − 1/z³ − Σ B₂ₖ (2k+1)/z^(2k+2)
    let series = r2
        * r2
        * (-0.5 + r2 * (1.0 / 6.0 + r2 * (-1.0 / 6.0 + r2 * (3.0 / 10.0 + r2 * (-5.0 / 6.0 + r2 * (691.0 / 210.0))))));
    acc + (-r2 - r2 * r + series)
}

#[cfg(test)]
mod tetragamma_tests {
    use super::*;
    #[test]
    fn tetragamma_matches_trigamma_derivative() {
        for &x in &[0.3f64, 1.0, 2.5, 7.0, 12.0, 150.0, -0.5, -3.7] {
            let h = 1e-5 * x.abs().max(1.0);
            let fd = (trigamma(x + h) - trigamma(x - h)) / (2.0 * h);
            let t = tetragamma(x);
            assert!((t - fd).abs() <= 1e-6 * t.abs().max(1.0), "x={x}: {t} vs {fd}");
        }
        // ψ₂(1) = −2ζ(3)
        assert!((tetragamma(1.0) + 2.0 * 1.202_056_903_159_594_2).abs() < 1e-13);
    }
}

/// `exp` with a form the compiler can vectorise: `FastExp::fexp` is `std`'s `exp` for f64 and
/// a range-reduced degree-7 polynomial for f32 (relative error < 2e-7 on the whole range;
/// NaN propagates, overflow gives inf, underflow gives 0). The attention, softmax and
/// sigmoid kernels spend most of their time here.
pub trait FastExp: Copy {
    fn fexp(self) -> Self;
}

impl FastExp for f64 {
    #[inline(always)]
    fn fexp(self) -> f64 {
        self.exp()
    }
}

impl FastExp for f32 {
    /// Branch-free (selects only), so loops over it vectorise: no libm call for rounding,
    /// 2ⁿ built in two halves so n = 128 (x up to ln f32::MAX) stays representable.
    #[inline(always)]
    fn fexp(self) -> f32 {
        // Adding 1.5·2²³ rounds to the nearest integer (|t| ≤ 2²²) without a libm call.
        const ROUND: f32 = 12_582_912.0;
        let x = self.clamp(-87.33654, 88.72283);
        let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
        // x = n·ln2 + r, |r| ≤ ln2/2; e^r by Taylor to r⁷ (error r⁸/8! < 6e-9 relative).
        let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
        let p = 1.0
            + r * (1.0
                + r * (0.5
                    + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
        let ni = n as i32;
        let (n1, n2) = (ni >> 1, ni - (ni >> 1));
        let y = p * f32::from_bits(((n1 + 127) as u32) << 23) * f32::from_bits(((n2 + 127) as u32) << 23);
        let y = if self > 88.72283 { f32::INFINITY } else { y };
        if self < -87.33654 {
            0.0
        } else {
            y
        }
    }
}

#[cfg(test)]
mod fast_exp_tests {
    use super::FastExp;

    #[test]
    fn fast_exp_f32_is_accurate_everywhere() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.7 {
            let want = (x as f64).exp();
            let got = x.fexp() as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.001_37;
        }
        assert!(worst < 2e-7, "worst relative error {worst}");
        assert!(f32::NAN.fexp().is_nan());
        assert_eq!(100f32.fexp(), f32::INFINITY);
        assert_eq!((-100f32).fexp(), 0.0);
        assert_eq!(0f32.fexp(), 1.0);
    }
}
