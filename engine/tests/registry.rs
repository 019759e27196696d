//! Generic tests over the op registry: every entry's forward against its naive f64
//! reference (f64, f32, bf16), every differentiable entry's gradient against central finite
//! differences in f64, and every fused entry against its composite (values and gradients).
//! Inputs come from proptest-drawn seeds: random shapes with size-1 dims, broadcasting and
//! non-contiguous views.

use proptest::prelude::*;
use scorch_engine::registry::{check_composite, check_forward, check_grad, registry, OpInfo};
use scorch_engine::DType;

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
