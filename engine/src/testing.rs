//! The test harness behind the op registry, public so projects embedding scorch can check
//! their own ops with one call:
//!
//! ```
//! use scorch_engine::testing::{gradcheck, GradcheckOptions, SampleRng};
//! use scorch_engine::Tensor;
//! # fn main() -> scorch_engine::Result<()> {
//! let mut rng = SampleRng::new(7);
//! let x = rng.tensor(&[3, 4], -1.0, 1.0, true)?;
//! // f(x) = sum over the last axis of x·sin(x), a user-defined composite op
//! let report = gradcheck(|t| t[0].mul(&t[0].sin()?)?.sum(&[-1], false), &[x], &GradcheckOptions::default())?;
//! assert!(report.passed(), "{report}");
//! # Ok(()) }
//! ```

use crate::autograd::grad;
use crate::error::{msg, Result};
use crate::tensor::Tensor;
use scorch_ops::DType;

/// A small deterministic generator for test inputs (SplitMix64).
#[derive(Clone, Debug)]
pub struct SampleRng(u64);

impl SampleRng {
    pub fn new(seed: u64) -> Self {
        SampleRng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    /// Integer in [lo, hi].
    pub fn int(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
    pub fn coin(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }
    /// A random shape of the given rank with dims in [1, max_dim] (size-1 dims included).
    pub fn shape(&mut self, rank: usize, max_dim: usize) -> Vec<usize> {
        (0..rank).map(|_| self.int(1, max_dim)).collect()
    }
    /// Values uniform in [lo, hi) (or ±[lo, hi) with random signs when `lo > 0` and
    /// `signed`), laid out contiguously, transposed in memory, or as a strided slice —
    /// chosen at random when `noncontig`, so ops see every kind of view.
    pub fn tensor_signed(
        &mut self,
        shape: &[usize],
        lo: f64,
        hi: f64,
        signed: bool,
        noncontig: bool,
    ) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let vals: Vec<f64> = (0..n)
            .map(|_| {
                let v = self.uniform(lo, hi);
                if signed && self.coin() {
                    -v
                } else {
                    v
                }
            })
            .collect();
        let kind = if noncontig && !shape.is_empty() { self.int(0, 2) } else { 0 };
        match kind {
            1 => {
                // Stored transposed: the logical tensor is a permuted view.
                let r = shape.len();
                let rev: Vec<usize> = shape.iter().rev().copied().collect();
                let perm: Vec<usize> = (0..r).rev().collect();
                let mut stored = vec![0f64; n];
                let t = Tensor::from_f64s(&vals, shape, DType::F64)?;
                // stored[rev index] = vals[index]
                let strides_rev = scorch_ops::layout::contiguous_strides(&rev);
                for (i, &v) in vals.iter().enumerate() {
                    let mut rem = i;
                    let mut off = 0;
                    for d in (0..r).rev() {
                        let idx = rem % shape[d];
                        rem /= shape[d];
                        off += idx * strides_rev[r - 1 - d];
                    }
                    stored[off] = v;
                }
                drop(t);
                Tensor::from_f64s(&stored, &rev, DType::F64)?.permute(&perm)
            }
            2 => {
                // Every other element of a last dim twice as long.
                let mut big = shape.to_vec();
                let last = big.len() - 1;
                big[last] *= 2;
                let m: usize = big.iter().product();
                let mut stored = vec![f64::NAN; m];
                for (i, &v) in vals.iter().enumerate() {
                    let (row, col) = (i / shape[last], i % shape[last]);
                    stored[row * big[last] + 2 * col] = v;
                }
                Tensor::from_f64s(&stored, &big, DType::F64)?.slice(last as isize, 0, big[last], 2)
            }
            _ => Tensor::from_f64s(&vals, shape, DType::F64),
        }
    }
    /// Uniform values in [lo, hi), possibly as a non-contiguous view.
    pub fn tensor(&mut self, shape: &[usize], lo: f64, hi: f64, noncontig: bool) -> Result<Tensor> {
        self.tensor_signed(shape, lo, hi, false, noncontig)
    }
    /// Integer indices in [0, n) as i64.
    pub fn indices(&mut self, shape: &[usize], n: usize) -> Result<Tensor> {
        let k: usize = shape.iter().product();
        let v: Vec<i64> = (0..k).map(|_| self.int(0, n - 1) as i64).collect();
        Tensor::from_vec(v, shape)
    }
}

/// Tolerances of [`gradcheck`].
#[derive(Clone, Debug)]
pub struct GradcheckOptions {
    /// Central-difference step.
    pub eps: f64,
    pub atol: f64,
    pub rtol: f64,
    /// Seed of the random output weighting.
    pub seed: u64,
    /// Inputs treated as constants (not perturbed, no gradient expected), e.g. masks.
    pub constant_inputs: Vec<usize>,
}

impl Default for GradcheckOptions {
    fn default() -> Self {
        GradcheckOptions { eps: 1e-6, atol: 1e-7, rtol: 1e-5, seed: 1, constant_inputs: Vec::new() }
    }
}

/// Outcome of a [`gradcheck`]: the worst mismatch per input.
#[derive(Clone, Debug)]
pub struct GradcheckReport {
    /// Per input: (max |analytic − numeric|, allowed at that element, index).
    pub worst: Vec<Option<(f64, f64, usize)>>,
    pub failures: Vec<String>,
}

impl GradcheckReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

impl std::fmt::Display for GradcheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.passed() {
            write!(f, "gradcheck passed")
        } else {
            write!(f, "gradcheck failed: {}", self.failures.join("; "))
        }
    }
}

/// Compares the autodiff gradient of `f` with central finite differences, in f64.
/// `f` may return any shape; the scalar checked is Σ f(x)·w for a fixed random w.
/// Inputs must be f64; only inputs that are float are checked.
pub fn gradcheck(
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    inputs: &[Tensor],
    opts: &GradcheckOptions,
) -> Result<GradcheckReport> {
    for t in inputs {
        if t.dtype().is_float() && t.dtype() != DType::F64 {
            return msg(format!("gradcheck needs f64 inputs, got {}", t.dtype()));
        }
    }
    let leaves: Vec<Tensor> = inputs
        .iter()
        .enumerate()
        .map(|(k, t)| {
            let l = t.detach();
            if l.dtype().is_float() && !opts.constant_inputs.contains(&k) {
                l.set_requires_grad(true)?;
            }
            Ok(l)
        })
        .collect::<Result<_>>()?;
    let y = f(&leaves)?;
    let mut rng = SampleRng::new(opts.seed);
    let wv: Vec<f64> = (0..y.numel()).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let w = Tensor::from_f64s(&wv, y.shape(), y.dtype())?;
    let scalar = |out: &Tensor| -> Result<f64> { Ok(out.to_vec_f64()?.iter().zip(&wv).map(|(a, b)| a * b).sum()) };
    let diff: Vec<Tensor> = leaves.iter().filter(|t| t.requires_grad()).cloned().collect();
    let analytic = if y.requires_grad() {
        grad(&[y.mul(&w)?.sum_all()?], &diff, None, false, false)?
    } else {
        vec![None; diff.len()]
    };
    let mut report = GradcheckReport { worst: Vec::new(), failures: Vec::new() };
    let mut di = 0;
    for (k, inp) in leaves.iter().enumerate() {
        if !inp.requires_grad() {
            report.worst.push(None);
            continue;
        }
        let a = match &analytic[di] {
            Some(g) => g.to_vec_f64()?,
            None => vec![0.0; inp.numel()],
        };
        di += 1;
        let base = inp.to_vec_f64()?;
        let mut worst: Option<(f64, f64, usize)> = None;
        for i in 0..base.len() {
            let eval = |delta: f64| -> Result<f64> {
                let mut v = base.clone();
                v[i] += delta;
                let mut xs: Vec<Tensor> = leaves.iter().map(|t| t.detach()).collect();
                xs[k] = Tensor::from_f64s(&v, inp.shape(), DType::F64)?;
                // Recording stays on: `f` may itself take gradients (R1 penalties).
                scalar(&f(&xs)?)
            };
            let num = (eval(opts.eps)? - eval(-opts.eps)?) / (2.0 * opts.eps);
            let err = (a[i] - num).abs();
            let allowed = opts.atol + opts.rtol * num.abs().max(a[i].abs());
            if worst.is_none_or(|(e, al, _)| err / allowed > e / al) {
                worst = Some((err, allowed, i));
            }
            // Negated so that a NaN on either side counts as a failure.
            #[allow(clippy::neg_cmp_op_on_partial_ord)]
            let failed = !(err <= allowed);
            if failed {
                report.failures.push(format!(
                    "input {k} element {i}: analytic {} vs numeric {num} (|diff| {err:.3e} > {allowed:.3e})",
                    a[i]
                ));
                if report.failures.len() > 5 {
                    return Ok(report);
                }
            }
        }
        report.worst.push(worst);
    }
    Ok(report)
}

/// Asserts `got` ≈ `want` elementwise: |got − want| ≤ atol + rtol·|want| (NaN matches NaN,
/// infinities must match exactly). Returns a message naming the first mismatch.
pub fn compare(got: &[f64], want: &[f64], atol: f64, rtol: f64) -> std::result::Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("length {} vs {}", got.len(), want.len()));
    }
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            g == w
        } else {
            (g - w).abs() <= atol + rtol * w.abs()
        };
        if !ok {
            return Err(format!("element {i}: got {g}, want {w} (atol {atol}, rtol {rtol})"));
        }
    }
    Ok(())
}
