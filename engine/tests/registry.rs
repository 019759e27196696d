//! Generic tests over the op registry: every entry's forward against its naive f64
//! reference (f64, f32, bf16), every differentiable entry's gradient against central finite
//! differences in f64, and every fused entry against its composite (values and gradients).
//! Inputs come from proptest-drawn seeds: random shapes with size-1 dims, broadcasting and
//! non-contiguous views.

use proptest::prelude::*;
use scorch_engine::registry::{registry, Nd, OpInfo, Sample};
use scorch_engine::testing::{compare, gradcheck, GradcheckOptions, SampleRng};
use scorch_engine::{grad, DType, Tensor};

fn sample(op: &OpInfo, seed: u64) -> Sample {
    let mut r = SampleRng::new(seed ^ fxhash(op.name));
    (op.sample)(&mut r).unwrap_or_else(|e| panic!("{}: sample failed: {e}", op.name))
}

fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

fn reference(op: &OpInfo, s: &Sample) -> Nd {
    let nds: Vec<Nd> = s.inputs.iter().map(|t| Nd::from_tensor(t).expect("readable")).collect();
    (op.reference)(&nds, &s.params)
}

fn to_dtype(s: &Sample, dt: DType) -> Vec<Tensor> {
    s.inputs.iter().map(|t| if t.dtype().is_float() { t.cast(dt).expect("cast") } else { t.clone() }).collect()
}

fn check_forward(op: &OpInfo, seed: u64, dt: DType) -> Result<(), String> {
    let s = sample(op, seed);
    let inputs = to_dtype(&s, dt);
    // The reference sees exactly the values the op sees (rounded to `dt`), in f64.
    let rounded = Sample { inputs: inputs.iter().map(|t| if t.dtype().is_float() { t.cast(DType::F64).expect("cast") } else { t.clone() }).collect(), ..s.clone() };
    let want = reference(op, &rounded);
    let got = (op.forward)(&inputs, &s.params).map_err(|e| format!("{} ({dt}): forward failed: {e}", op.name))?;
    if got.shape() != want.shape.as_slice() {
        return Err(format!("{} ({dt}): shape {:?}, reference {:?}", op.name, got.shape(), want.shape));
    }
    let (atol, rtol) = match dt {
        DType::F64 => (1e-10, 1e-9),
        DType::F32 => (2e-5 * op.tol, 2e-5 * op.tol),
        _ => (3e-2 * op.tol, 3e-2 * op.tol),
    };
    let g = got.to_vec_f64().map_err(|e| e.to_string())?;
    compare(&g, &want.data, atol, rtol).map_err(|m| format!("{} ({dt}, seed {seed}): {m}; inputs {:?}", op.name, s.inputs.iter().map(|t| t.shape().to_vec()).collect::<Vec<_>>()))
}

fn check_grad(op: &OpInfo, seed: u64) -> Result<(), String> {
    let s = sample(op, seed);
    let params = s.params.clone();
    let f = op.forward;
    let opts = GradcheckOptions { constant_inputs: s.constant.clone(), ..Default::default() };
    let rep = gradcheck(|t| f(t, &params), &s.inputs, &opts).map_err(|e| format!("{}: {e}", op.name))?;
    if rep.passed() {
        Ok(())
    } else {
        Err(format!("{} (seed {seed}): {rep}; inputs {:?}", op.name, s.inputs.iter().map(|t| t.shape().to_vec()).collect::<Vec<_>>()))
    }
}

fn check_composite(op: &OpInfo, seed: u64) -> Result<(), String> {
    let Some(comp) = op.composite else { return Ok(()) };
    let s = sample(op, seed);
    let leaves: Vec<Tensor> = s
        .inputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let l = t.detach();
            if l.dtype().is_float() && !s.constant.contains(&i) {
                l.set_requires_grad(true).expect("float leaf");
            }
            l
        })
        .collect();
    let diff: Vec<Tensor> = leaves.iter().filter(|t| t.requires_grad()).cloned().collect();
    let a = (op.forward)(&leaves, &s.params).map_err(|e| e.to_string())?;
    let b = comp(&leaves, &s.params).map_err(|e| e.to_string())?;
    compare(&a.to_vec_f64().unwrap(), &b.to_vec_f64().unwrap(), 1e-10, 1e-9).map_err(|m| format!("{} fused vs composite: {m}", op.name))?;
    let w = Tensor::randn(a.shape(), DType::F64, &scorch_engine::Generator::new(seed)).unwrap();
    let ga = grad(&[a.mul(&w).unwrap().sum_all().unwrap()], &diff, None, false, false).map_err(|e| e.to_string())?;
    let gb = grad(&[b.mul(&w).unwrap().sum_all().unwrap()], &diff, None, false, false).map_err(|e| e.to_string())?;
    for (x, y) in ga.iter().zip(&gb) {
        let (x, y) = (x.as_ref().expect("fused grad").to_vec_f64().unwrap(), y.as_ref().expect("composite grad").to_vec_f64().unwrap());
        compare(&x, &y, 1e-9, 1e-8).map_err(|m| format!("{} fused vs composite gradient: {m}", op.name))?;
    }
    Ok(())
}

fn all(check: impl Fn(&OpInfo) -> Result<(), String>, filter: impl Fn(&OpInfo) -> bool) -> Result<(), TestCaseError> {
    let errs: Vec<String> = registry().iter().filter(|o| filter(o)).filter_map(|o| check(o).err()).collect();
    if errs.is_empty() {
        Ok(())
    } else {
        Err(TestCaseError::fail(errs.join("\n")))
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn forward_f64_matches_reference(seed in any::<u64>()) {
        all(|o| check_forward(o, seed, DType::F64), |_| true)?;
    }

    #[test]
    fn forward_f32_matches_reference(seed in any::<u64>()) {
        all(|o| check_forward(o, seed, DType::F32), |o| o.low_precision)?;
    }

    #[test]
    fn forward_bf16_matches_reference(seed in any::<u64>()) {
        all(|o| check_forward(o, seed, DType::BF16), |o| o.low_precision && o.family != "reduce" || o.name == "max" || o.name == "softmax")?;
    }

    #[test]
    fn gradcheck_f64(seed in any::<u64>()) {
        all(|o| check_grad(o, seed), |o| o.differentiable)?;
    }

    #[test]
    fn fused_equals_composite(seed in any::<u64>()) {
        all(|o| check_composite(o, seed), |o| o.composite.is_some())?;
    }
}

#[test]
fn registry_names_are_unique() {
    let r = registry();
    let mut names: Vec<&str> = r.iter().map(|o| o.name).collect();
    names.sort();
    let n = names.len();
    names.dedup();
    assert_eq!(n, names.len(), "duplicate registry names");
    assert!(n >= 60, "registry has {n} entries");
}
