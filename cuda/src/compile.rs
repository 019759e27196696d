//! NVRTC compilation of the kernel families to CUBIN for one `sm_XY`, with a disk cache.
//!
//! Each `.cu` file is compiled as one program with `common.cuh` spliced in front (NVRTC's
//! safe API takes no in-memory headers); `#line` directives keep error locations pointing at
//! the right file and line. CUBIN for the exact architecture avoids the PTX-version trap of a
//! driver older than NVRTC. Cache key: source, options, NVRTC version and architecture (the
//! loader adds the driver version); files are written to a temp name and renamed.

use cudarc::nvrtc::{result, sys};
use std::ffi::{CStr, CString};
use std::path::PathBuf;

const COMMON: &str = include_str!("../kernels/common.cuh");

/// The kernel families, one `.cu` file each.
const FAMILIES: &[(&str, &str)] = &[
    ("elementwise.cu", include_str!("../kernels/elementwise.cu")),
    ("reduce.cu", include_str!("../kernels/reduce.cu")),
    ("rng.cu", include_str!("../kernels/rng.cu")),
    ("sid_loss.cu", include_str!("../kernels/sid_loss.cu")),
    ("beta.cu", include_str!("../kernels/beta.cu")),
    ("patch.cu", include_str!("../kernels/patch.cu")),
    ("conv.cu", include_str!("../kernels/conv.cu")),
    ("conv_tc.cu", include_str!("../kernels/conv_tc.cu")),
    ("nn.cu", include_str!("../kernels/nn.cu")),
    ("attention.cu", include_str!("../kernels/attention.cu")),
    ("index.cu", include_str!("../kernels/index.cu")),
    ("optim.cu", include_str!("../kernels/optim.cu")),
];

/// One kernel family ready for NVRTC.
#[derive(Clone, Debug)]
pub struct KernelSource {
    pub name: &'static str,
    /// `common.cuh` + the family's source, with `#line` markers.
    pub text: String,
}

/// Every kernel family.
pub fn kernel_sources() -> Vec<KernelSource> {
    FAMILIES
        .iter()
        .map(|(name, src)| KernelSource {
            name,
            text: format!("#line 1 \"common.cuh\"\n{COMMON}\n#line 1 \"{name}\"\n{src}"),
        })
        .collect()
}

/// A failed compilation, with NVRTC's log (file and line of each error).
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("NVRTC is not available: libnvrtc could not be loaded (install the CUDA toolkit or the nvidia-cuda-nvrtc wheel and add its lib folder to LD_LIBRARY_PATH)")]
    NoNvrtc,
    #[error("NVRTC failed to compile {file} for {arch}:\n{log}")]
    Compile { file: String, arch: String, log: String },
    #[error("NVRTC error in {file}: {detail}")]
    Nvrtc { file: String, detail: String },
}

/// NVRTC's (major, minor) version.
pub fn nvrtc_version() -> Result<(i32, i32), CompileError> {
    if !crate::probe::nvrtc_available() {
        return Err(CompileError::NoNvrtc);
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the library is present (probed above); the pointers are valid for the call.
    unsafe { sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|e| CompileError::Nvrtc { file: String::new(), detail: format!("{e:?}") })?;
    Ok((major, minor))
}

/// The options every kernel is compiled with.
pub fn compile_options(arch: &str) -> Vec<String> {
    // No --use_fast_math: its approximate tanh/exp/log lose ~1e-5 relative accuracy, and the
    // CUDA kernels must agree with the CPU reference (the bandwidth-bound kernels do not gain).
    vec![format!("--gpu-architecture={arch}"), "-std=c++17".into(), "-default-device".into()]
}

/// Compiles one source to CUBIN for `arch` (e.g. `sm_90`).
pub fn compile_cubin(src: &KernelSource, arch: &str) -> Result<Vec<u8>, CompileError> {
    if !crate::probe::nvrtc_available() {
        return Err(CompileError::NoNvrtc);
    }
    let err = |detail: String| CompileError::Nvrtc { file: src.name.to_string(), detail };
    let csrc = CString::new(src.text.as_str()).map_err(|e| err(e.to_string()))?;
    let cname = CString::new(src.name).map_err(|e| err(e.to_string()))?;
    let prog = result::create_program(&csrc, Some(&cname)).map_err(|e| err(format!("{e:?}")))?;
    let opts = compile_options(arch);
    // SAFETY: `prog` is a live program; the option strings outlive the call.
    if let Err(e) = unsafe { result::compile_program(prog, &opts) } {
        // SAFETY: reading the log of the same live program.
        let log = unsafe { result::get_program_log(prog) }
            .map(|l| unsafe { CStr::from_ptr(l.as_ptr()) }.to_string_lossy().into_owned())
            .unwrap_or_else(|_| format!("{e:?} (no log)"));
        // SAFETY: destroying the program we created.
        unsafe { result::destroy_program(prog) }.ok();
        return Err(CompileError::Compile { file: src.name.to_string(), arch: arch.to_string(), log });
    }
    let mut n = 0usize;
    // SAFETY: `prog` compiled successfully; `buf` has the size NVRTC reports.
    let cubin = unsafe {
        sys::nvrtcGetCUBINSize(prog, &mut n).result().map_err(|e| err(format!("{e:?}")))?;
        let mut buf = vec![0u8; n];
        sys::nvrtcGetCUBIN(prog, buf.as_mut_ptr() as *mut _).result().map_err(|e| err(format!("{e:?}")))?;
        buf
    };
    // SAFETY: destroying the program we created.
    unsafe { result::destroy_program(prog) }.map_err(|e| err(format!("{e:?}")))?;
    Ok(cubin)
}

/// Where compiled kernels are cached: `SCORCH_KERNEL_CACHE` (`off` disables), else
/// `$XDG_CACHE_HOME/scorch/kernels` or `~/.cache/scorch/kernels`.
pub fn cache_dir() -> Option<PathBuf> {
    match std::env::var("SCORCH_KERNEL_CACHE") {
        Ok(v) if v == "off" || v == "0" => None,
        Ok(v) if !v.is_empty() => Some(PathBuf::from(v)),
        _ => std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|p| p.join("scorch").join("kernels")),
    }
}

/// 64-bit FNV-1a: a stable hash for cache keys (std's hasher is not stable across releases).
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for p in parts {
        for &b in p.iter() {
            h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
        h = (h ^ 0xff).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Compiles through the disk cache. `extra_key` carries what else must invalidate an entry
/// (the driver version, on a device).
pub fn compile_cached(src: &KernelSource, arch: &str, extra_key: &str) -> Result<Vec<u8>, CompileError> {
    let (maj, min) = nvrtc_version()?;
    let opts = compile_options(arch).join(" ");
    let key =
        fnv1a(&[src.text.as_bytes(), opts.as_bytes(), format!("nvrtc {maj}.{min}").as_bytes(), extra_key.as_bytes()]);
    let Some(dir) = cache_dir() else { return compile_cubin(src, arch) };
    let path = dir.join(format!("{}-{arch}-{key:016x}.cubin", src.name.trim_end_matches(".cu")));
    if let Ok(bytes) = std::fs::read(&path) {
        if !bytes.is_empty() {
            return Ok(bytes);
        }
    }
    let cubin = compile_cubin(src, arch)?;
    // A cache we cannot write is not an error: the kernel still runs.
    if std::fs::create_dir_all(&dir).is_ok() {
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("k"),
            std::process::id()
        ));
        if std::fs::write(&tmp, &cubin).is_ok() && std::fs::rename(&tmp, &path).is_err() {
            std::fs::remove_file(&tmp).ok();
        }
    }
    Ok(cubin)
}
