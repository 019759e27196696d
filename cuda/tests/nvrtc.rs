//! Every `.cu` file compiles under NVRTC for sm_80 and sm_90 (no GPU needed, only libnvrtc).
//! Skips with a printed reason when libnvrtc is absent, unless `SCORCH_REQUIRE_NVRTC=1`
//! (set by .ci/run, which installs the NVRTC wheel), where the absence is a failure.

use scorch_cuda::compile::{compile_cached, compile_cubin, kernel_sources, nvrtc_version};
use scorch_cuda::nvrtc_available;

fn require() -> bool {
    std::env::var("SCORCH_REQUIRE_NVRTC").is_ok_and(|v| v == "1")
}

#[test]
fn nvrtc_compiles_every_kernel_family() {
    if !nvrtc_available() {
        assert!(!require(), "SCORCH_REQUIRE_NVRTC=1 but libnvrtc cannot be loaded (LD_LIBRARY_PATH?)");
        println!(
            "SKIP nvrtc_compiles_every_kernel_family: libnvrtc not found (set LD_LIBRARY_PATH to a CUDA 13 NVRTC)"
        );
        return;
    }
    let (maj, min) = nvrtc_version().expect("version");
    println!("NVRTC {maj}.{min}");
    let mut failures = Vec::new();
    for src in kernel_sources() {
        for arch in ["sm_80", "sm_90"] {
            match compile_cubin(&src, arch) {
                Ok(cubin) => {
                    assert!(cubin.len() > 100, "{} for {arch}: empty CUBIN", src.name);
                    println!("ok {} {arch}: {} bytes", src.name, cubin.len());
                }
                Err(e) => failures.push(e.to_string()),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn nvrtc_errors_name_the_file_and_line() {
    if !nvrtc_available() {
        println!("SKIP nvrtc_errors_name_the_file_and_line: libnvrtc not found");
        return;
    }
    let mut src = kernel_sources().remove(0);
    src.text.push_str("\nextern \"C\" __global__ void broken() { undeclared_symbol = 1; }\n");
    let err = compile_cubin(&src, "sm_80").unwrap_err().to_string();
    assert!(err.contains("elementwise.cu(") && err.contains("undeclared_symbol"), "{err}");
}

#[test]
fn nvrtc_cache_round_trip() {
    if !nvrtc_available() {
        println!("SKIP nvrtc_cache_round_trip: libnvrtc not found");
        return;
    }
    let dir = std::env::temp_dir().join(format!("scorch-kcache-{}", std::process::id()));
    std::env::set_var("SCORCH_KERNEL_CACHE", &dir);
    let src = kernel_sources().into_iter().find(|s| s.name == "patch.cu").unwrap();
    let a = compile_cached(&src, "sm_80", "test").unwrap();
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(files.len(), 1);
    let b = compile_cached(&src, "sm_80", "test").unwrap();
    assert_eq!(a, b);
    std::fs::remove_dir_all(&dir).ok();
}
