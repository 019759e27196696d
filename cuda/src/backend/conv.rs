//! Convolution (`cuda/kernels/conv.cu`): conv2d forward, backward-data and backward-weight by
//! im2col + cuBLAS GEMM, with the semantics of the CPU reference (`scorch_ops::cpu::conv`).
//!
//! - Forward: `im2col` unfolds a chunk of samples into `[nb, Cin·kh·kw, Ho·Wo]`, then per group
//!   `out[n, g] = W_g [Cout/g, K] @ cols[n, g] [K, Ho·Wo]` as strided-batched GEMMs (the
//!   weight has batch stride 0).
//! - Backward data: `dcols[n, g] = W_gᵀ @ gy[n, g]` (f32 for the 16-bit dtypes), then `col2im`
//!   gathers each input pixel's taps (no atomics).
//! - Backward weight: `dW_g = Σ_n gy[n, g] @ cols[n, g]ᵀ` as ONE GEMM per chunk contracting
//!   over samples and pixels together: the columns are unfolded channel-major
//!   (`[K·groups, nb, Ho·Wo]`) and the output gradient permuted to `[Cout, nb, Ho·Wo]`. Chunks
//!   accumulate with `beta = 1` in f32 (f64 for f64) and the result is cast to the dtype.
//!
//! Pointwise convolutions (1×1, stride 1, no padding) skip im2col: the input already is the
//! column matrix. Chunks of samples keep the column buffer near `COLS_BUDGET` (256 MiB).
//!
//! bf16 / f16 with one group take the implicit-GEMM tensor-core kernels of
//! `cuda/kernels/conv_tc.cu` instead (no column buffer; mma.sync with f32 accumulation; the
//! weight gradient accumulates split reductions with f32 atomics, then casts). The im2col path
//! stays for f32 / f64, grouped convolutions, sizes whose indices overflow 32 bits, devices
//! below sm_80, and whenever `SCORCH_CONV=im2col` (read on each call).

use super::matmul::{gemm, gemm_out_f32, Mat};
use super::{elementwise, launch, sfx, Cuda, CudaStorage};
use crate::device::CudaDevice;
use cudarc::driver::{DeviceRepr, LaunchConfig};
use scorch_ops::cpu::conv::{Conv2dParams, ConvGeom};
use scorch_ops::error::shape_err;
use scorch_ops::kernels::View;
use scorch_ops::{DType, Error, Layout, Result};

/// Bytes of column (and permuted gradient) scratch one chunk of samples may use; a single
/// sample that needs more gets a chunk of its own.
const COLS_BUDGET: usize = 256 << 20;

/// The geometry of one kernel launch (`struct ConvShape` in conv.cu, field for field).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct ConvShape {
    n: i64,
    cin: i64,
    h: i64,
    w: i64,
    kh: i64,
    kw: i64,
    ho: i64,
    wo: i64,
    sh: i64,
    sw: i64,
    ph: i64,
    pw: i64,
    dh: i64,
    dw: i64,
}

// SAFETY: #[repr(C)] plain data matching the C struct field for field.
unsafe impl DeviceRepr for ConvShape {}

/// The geometry of one tensor-core launch (`struct TcShape` in conv_tc.cu, field for field).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct TcShape {
    n: i32,
    cin: i32,
    h: i32,
    w: i32,
    cout: i32,
    kh: i32,
    kw: i32,
    ho: i32,
    wo: i32,
    sh: i32,
    sw: i32,
    ph: i32,
    pw: i32,
    dh: i32,
    dw: i32,
    /// GEMM rows, columns and reduction length.
    m: i32,
    ncols: i32,
    k: i32,
    /// Rows of the plain B operand may be read 16 bytes at a time.
    vec: i32,
    /// Weight gradient: reduction tiles per `blockIdx.z`.
    tps: i32,
}

// SAFETY: #[repr(C)] plain data matching the C struct field for field.
unsafe impl DeviceRepr for TcShape {}

/// Block tile (rows and columns) and reduction tile of the tensor-core kernels.
const TC_TILE: usize = 128;
const TC_BK: usize = 32;
/// Blocks the weight gradient aims for when it splits its reduction (a few waves on an
/// H100 / H200), and the fewest reduction tiles one block takes.
const TC_WGRAD_BLOCKS: usize = 512;
const TC_WGRAD_MIN_TILES: usize = 4;

/// Whether the tensor-core kernels take a convolution of `dt`: bf16 / f16, one group, every
/// size positive with indices that fit in 32 bits, a device of sm_80 or newer, and no
/// `SCORCH_CONV=im2col`.
fn use_tc(cu: &Cuda, g: &ConvGeom, dt: DType) -> bool {
    if !dt.is_half() || g.p.groups != 1 || std::env::var("SCORCH_CONV").is_ok_and(|v| v == "im2col") {
        return false;
    }
    let sm: u32 =
        cu.dev.arch.trim_start_matches("sm_").trim_end_matches(|c: char| c.is_alphabetic()).parse().unwrap_or(0);
    if sm < 80 {
        return false;
    }
    let lim = i32::MAX as usize;
    let khw = g.kh * g.kw;
    let dims = [g.n, g.cin, g.h, g.w, g.cout, g.kh, g.kw, g.ho, g.wo];
    let p = g.p;
    let params = [p.stride[0], p.stride[1], p.padding[0], p.padding[1], p.dilation[0], p.dilation[1]];
    dims.iter().all(|&v| v > 0)
        && params.iter().all(|&v| v < 1 << 20)
        && [
            g.n * g.cin * g.h * g.w + TC_TILE,
            g.n * g.cout * g.ho * g.wo + TC_TILE * TC_BK,
            g.cout * g.cin * khw + TC_TILE,
            g.h + p.padding[0] + p.dilation[0] * g.kh + g.ho * p.stride[0],
            g.w + p.padding[1] + p.dilation[1] * g.kw + g.wo * p.stride[1],
        ]
        .iter()
        .all(|&v| v <= lim)
}

/// The tensor-core geometry of `g` (GEMM sizes left for the caller).
fn tc_shape(g: &ConvGeom) -> TcShape {
    let p = g.p;
    let i = |v: usize| v as i32;
    TcShape {
        n: i(g.n),
        cin: i(g.cin),
        h: i(g.h),
        w: i(g.w),
        cout: i(g.cout),
        kh: i(g.kh),
        kw: i(g.kw),
        ho: i(g.ho),
        wo: i(g.wo),
        sh: i(p.stride[0]),
        sw: i(p.stride[1]),
        ph: i(p.padding[0]),
        pw: i(p.padding[1]),
        dh: i(p.dilation[0]),
        dw: i(p.dilation[1]),
        ..TcShape::default()
    }
}

/// A grid of 256-thread blocks.
fn tc_cfg(x: usize, y: usize, z: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (x as u32, y as u32, z as u32), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
}

/// Forward on tensor cores: `y [N, Cout, Ho, Wo]` from contiguous `x` and `w`.
fn tc_forward(cu: &Cuda, x: &CudaStorage, w: &CudaStorage, g: &ConvGeom) -> Result<CudaStorage> {
    let dt = x.dtype();
    let out = cu.alloc(dt, g.n * g.cout * g.ho * g.wo)?;
    let (m, k) = (g.n * g.ho * g.wo, g.cin * g.kh * g.kw);
    let mut s = tc_shape(g);
    s.m = m as i32;
    s.ncols = g.cout as i32;
    s.k = k as i32;
    s.vec = (k.is_multiple_of(8) && w.ptr().is_multiple_of(16)) as i32;
    let name = format!("conv_tc_fwd_{}", sfx("conv2d", dt)?);
    let cfg = tc_cfg(m.div_ceil(TC_TILE), g.cout.div_ceil(TC_TILE), 1);
    let (xp, wp, op) = (x.ptr(), w.ptr(), out.ptr());
    launch!(cu, "conv_tc.cu", name, cfg; &xp, &wp, &op, &s)?;
    Ok(out)
}

/// Backward data on tensor cores: `dx [N, Cin, H, W]` from contiguous `gy` and `w`.
fn tc_bwd_data(cu: &Cuda, gy: &CudaStorage, w: &CudaStorage, g: &ConvGeom) -> Result<CudaStorage> {
    let dt = gy.dtype();
    let khw = g.kh * g.kw;
    // wᵀ [Cin, Cout·kh·kw]: the plain B operand.
    let wt = cu.alloc(dt, g.cout * g.cin * khw)?;
    let (wp, wtp) = (w.ptr(), wt.ptr());
    let (co, ci, kk) = (g.cout as i32, g.cin as i32, khw as i32);
    launch!(cu, "conv_tc.cu", "conv_tc_wt", CudaDevice::cfg_1d(g.cout * g.cin * khw); &wp, &wtp, &co, &ci, &kk)?;
    let dx = cu.alloc(dt, g.n * g.cin * g.h * g.w)?;
    let (m, k) = (g.n * g.h * g.w, g.cout * khw);
    let mut s = tc_shape(g);
    s.m = m as i32;
    s.ncols = g.cin as i32;
    s.k = k as i32;
    s.vec = (k.is_multiple_of(8) && wtp.is_multiple_of(16)) as i32;
    let unit = g.p.stride == [1, 1];
    let name = format!("conv_tc_dgrad{}_{}", if unit { "" } else { "_s" }, sfx("conv2d_bwd_data", dt)?);
    let cfg = tc_cfg(m.div_ceil(TC_TILE), g.cin.div_ceil(TC_TILE), 1);
    let (gp, xp) = (gy.ptr(), dx.ptr());
    launch!(cu, "conv_tc.cu", name, cfg; &gp, &wtp, &xp, &s)?;
    Ok(dx)
}

/// Backward weight on tensor cores: `dW [Cout, Cin, kh, kw]` from contiguous `x` and `gy`.
fn tc_bwd_weight(cu: &Cuda, x: &CudaStorage, gy: &CudaStorage, g: &ConvGeom) -> Result<CudaStorage> {
    let dt = x.dtype();
    let (ncols, p) = (g.cin * g.kh * g.kw, g.n * g.ho * g.wo);
    let len = g.cout * ncols;
    let acc = cu.zeros(DType::F32, len)?;
    let tiles = ncols.div_ceil(TC_TILE) * g.cout.div_ceil(TC_TILE);
    let nt = p.div_ceil(TC_BK);
    // SCORCH_CONV_WGRAD_BLOCKS overrides the block target (a tuning knob for benchmarks).
    let target = std::env::var("SCORCH_CONV_WGRAD_BLOCKS").ok().and_then(|v| v.parse().ok()).unwrap_or(TC_WGRAD_BLOCKS);
    // Split reductions meet in f32 atomics, whose order varies: one split in deterministic mode.
    let splits = if super::deterministic() {
        1
    } else {
        target.max(1).div_ceil(tiles).min(nt.div_ceil(TC_WGRAD_MIN_TILES)).max(1)
    };
    let tps = nt.div_ceil(splits);
    let mut s = tc_shape(g);
    s.m = g.cout as i32;
    s.ncols = ncols as i32;
    s.k = p as i32;
    s.tps = tps as i32;
    let name = format!("conv_tc_wgrad_{}", sfx("conv2d_bwd_weight", dt)?);
    let cfg = tc_cfg(ncols.div_ceil(TC_TILE), g.cout.div_ceil(TC_TILE), nt.div_ceil(tps));
    let (xp, gp, ap) = (x.ptr(), gy.ptr(), acc.ptr());
    launch!(cu, "conv_tc.cu", name, cfg; &xp, &gp, &ap, &s)?;
    elementwise::cast(cu, (&acc, &Layout::contiguous(&[len])), dt)
}

/// Sizes derived from a [`ConvGeom`].
struct Dims {
    /// Output channels per group.
    cog: usize,
    /// Rows of one group's column matrix (`cg·kh·kw`) and of all groups.
    kg: usize,
    rows: usize,
    /// Output pixels per channel.
    pix: usize,
    /// Elements of one input / output sample.
    in_sz: usize,
    out_sz: usize,
    /// Whether the input is its own column matrix (1×1, stride 1, no padding).
    pointwise: bool,
}

impl Dims {
    fn new(g: &ConvGeom) -> Dims {
        let cog = g.cout / g.p.groups;
        let kg = g.cin / g.p.groups * g.kh * g.kw;
        let pix = g.ho * g.wo;
        Dims {
            cog,
            kg,
            rows: kg * g.p.groups,
            pix,
            in_sz: g.cin * g.h * g.w,
            out_sz: g.cout * pix,
            pointwise: g.kh == 1 && g.kw == 1 && g.p.stride == [1, 1] && g.p.padding == [0, 0],
        }
    }

    /// Samples per chunk when each sample needs `bytes` of scratch.
    fn chunk(&self, g: &ConvGeom, bytes: usize) -> usize {
        (COLS_BUDGET / bytes.max(1)).clamp(1, g.n.max(1))
    }
}

/// The launch geometry of `nb` samples.
fn shape(g: &ConvGeom, nb: usize) -> ConvShape {
    let p = g.p;
    ConvShape {
        n: nb as i64,
        cin: g.cin as i64,
        h: g.h as i64,
        w: g.w as i64,
        kh: g.kh as i64,
        kw: g.kw as i64,
        ho: g.ho as i64,
        wo: g.wo as i64,
        sh: p.stride[0] as i64,
        sw: p.stride[1] as i64,
        ph: p.padding[0] as i64,
        pw: p.padding[1] as i64,
        dh: p.dilation[0] as i64,
        dw: p.dilation[1] as i64,
    }
}

/// Unfolds samples `n0..n0 + nb` of the contiguous input `x` into `cols`: `[nb, rows, pix]`
/// when `sample_major`, else `[rows, nb, pix]`.
fn im2col(
    cu: &Cuda,
    x: &CudaStorage,
    g: &ConvGeom,
    d: &Dims,
    (n0, nb): (usize, usize),
    cols: &CudaStorage,
    sample_major: bool,
) -> Result<()> {
    let name = format!("im2col_{}{}", sfx("conv2d", x.dtype())?, wide_sfx(g));
    let (xp, cp, sh, sm) = (x.ptr_at(n0 * d.in_sz), cols.ptr(), shape(g, nb), sample_major as i32);
    launch!(cu, "conv.cu", name, cfg_2d(d.pix, nb * d.rows); &xp, &cp, &sh, &sm)
}

/// `""` when every in-plane index of `g` (pixel numbers, tap coordinates) fits in an `i32`, so
/// im2col / col2im may use 32-bit index math; else `"_w"` (the 64-bit kernels).
fn wide_sfx(g: &ConvGeom) -> &'static str {
    let p = g.p;
    let reach = |o: usize, s: usize, k: usize, d: usize, pad: usize| o * s + k * d + pad;
    let fits = [
        g.h * g.w,
        g.ho * g.wo * g.kh * g.kw,
        g.h + 2 * p.padding[0],
        g.w + 2 * p.padding[1],
        reach(g.ho, p.stride[0], g.kh, p.dilation[0], p.padding[0]),
        reach(g.wo, p.stride[1], g.kw, p.dilation[1], p.padding[1]),
    ]
    .iter()
    .all(|&v| v < i32::MAX as usize / 2);
    if fits {
        ""
    } else {
        "_w"
    }
}

/// A 2-D launch over `rows` rows of `cols` elements: 256 threads, `x` along a row (at least a
/// warp, at most the row rounded up to a power of two), several rows per block when rows are
/// short.
fn cfg_2d(cols: usize, rows: usize) -> LaunchConfig {
    let bx = cols.next_power_of_two().clamp(32, 256);
    let by = 256 / bx;
    LaunchConfig {
        grid_dim: (cols.div_ceil(bx).clamp(1, 65_535) as u32, rows.div_ceil(by).clamp(1, 65_535) as u32, 1),
        block_dim: (bx as u32, by as u32, 1),
        shared_mem_bytes: 0,
    }
}

/// One operand of the per-(sample, group) products: the row-major matrix at element
/// `s·sn + g·sg` of `ptr` (elements of `esz` bytes) for sample `s` and group `g`, with leading
/// dimension `ld`, transposed when `trans`.
#[derive(Clone, Copy)]
struct Operand {
    ptr: u64,
    esz: usize,
    ld: usize,
    trans: bool,
    sn: usize,
    sg: usize,
}

impl Operand {
    /// The operand of sample `s`, group `g`, stepping `stride` elements per batch entry.
    fn mat(&self, s: usize, g: usize, stride: usize) -> Mat {
        let ptr = self.ptr + ((s * self.sn + g * self.sg) * self.esz) as u64;
        Mat { ptr, ld: self.ld as i64, stride: stride as i64, trans: self.trans }
    }
}

/// `C[s, g] = A[s, g] · B[s, g] + beta · C[s, g]` for every sample `s < nb` and group
/// `g < groups`: strided-batched GEMMs over samples (one call per group) or over groups (one
/// call per sample), whichever makes fewer calls. `c_f32`: `C` is f32 while `A` and `B` are
/// `dt` (16-bit products that must not round to 16 bits).
#[allow(clippy::too_many_arguments)]
fn grouped_gemm(
    cu: &Cuda,
    dt: DType,
    mnk: (usize, usize, usize),
    a: Operand,
    b: Operand,
    c: Operand,
    nb: usize,
    groups: usize,
    beta: f64,
    c_f32: bool,
) -> Result<()> {
    let call = |am: Mat, bm: Mat, cm: Mat, batch: usize| {
        let (cp, sc) = (cm.ptr, cm.stride as usize);
        if c_f32 {
            gemm_out_f32(cu, dt, mnk, am, bm, cp, c.ld, sc, batch, 1.0, beta)
        } else {
            gemm(cu, dt, mnk, am, bm, cp, c.ld, sc, batch, 1.0, beta)
        }
    };
    if nb >= groups {
        for gi in 0..groups {
            call(a.mat(0, gi, a.sn), b.mat(0, gi, b.sn), c.mat(0, gi, c.sn), nb)?;
        }
    } else {
        for s in 0..nb {
            call(a.mat(s, 0, a.sg), b.mat(s, 0, b.sg), c.mat(s, 0, c.sg), groups)?;
        }
    }
    Ok(())
}

/// conv2d forward: `[N, Cin, H, W] ⋆ [Cout, Cin/g, kh, kw] → [N, Cout, Ho, Wo]`.
pub fn conv2d(
    cu: &Cuda,
    (x, lx): View<CudaStorage>,
    (w, lw): View<CudaStorage>,
    p: Conv2dParams,
) -> Result<(CudaStorage, ConvGeom)> {
    cu.check("conv2d", x)?;
    cu.check("conv2d", w)?;
    let g = ConvGeom::new(&lx.shape, &lw.shape, p)?;
    if x.dtype() != w.dtype() {
        return Err(Error::DTypeMismatch { op: "conv2d", lhs: x.dtype(), rhs: w.dtype() });
    }
    let dt = x.dtype();
    sfx("conv2d", dt)?;
    let d = Dims::new(&g);
    let len = g.n * d.out_sz;
    if len == 0 {
        return Ok((cu.alloc(dt, len)?, g));
    }
    if d.kg == 0 {
        // No input channels: an empty sum.
        return Ok((cu.zeros(dt, len)?, g));
    }
    let (xc, wc) = (cu.contig((x, lx))?, cu.contig((w, lw))?);
    if use_tc(cu, &g, dt) {
        return Ok((tc_forward(cu, &xc, &wc, &g)?, g));
    }
    let out = cu.alloc(dt, len)?;
    let esz = dt.size();
    // W_g [cog, kg] shared by all samples.
    let a = Operand { ptr: wc.ptr(), esz, ld: d.kg, trans: false, sn: 0, sg: d.cog * d.kg };
    let mnk = (d.cog, d.pix, d.kg);
    let run = |cols: u64, n0: usize, nb: usize| {
        let b = Operand { ptr: cols, esz, ld: d.pix, trans: false, sn: d.rows * d.pix, sg: d.kg * d.pix };
        let c =
            Operand { ptr: out.ptr_at(n0 * d.out_sz), esz, ld: d.pix, trans: false, sn: d.out_sz, sg: d.cog * d.pix };
        grouped_gemm(cu, dt, mnk, a, b, c, nb, p.groups, 0.0, false)
    };
    if d.pointwise {
        // The input [N, Cin, H·W] is the column matrix (rows = Cin, pix = H·W).
        run(xc.ptr(), 0, g.n)?;
    } else {
        let per = d.chunk(&g, d.rows * d.pix * esz);
        let cols = cu.alloc(dt, per * d.rows * d.pix)?;
        for n0 in (0..g.n).step_by(per) {
            let nb = per.min(g.n - n0);
            im2col(cu, &xc, &g, &d, (n0, nb), &cols, true)?;
            run(cols.ptr(), n0, nb)?;
        }
    }
    Ok((out, g))
}

/// Gradient of conv2d w.r.t. its input `[N, cin_hw[0], cin_hw[1], cin_hw[2]]`.
pub fn conv2d_bwd_data(
    cu: &Cuda,
    (gy, lgy): View<CudaStorage>,
    (w, lw): View<CudaStorage>,
    cin_hw: [usize; 3],
    p: Conv2dParams,
) -> Result<CudaStorage> {
    cu.check("conv2d_bwd_data", gy)?;
    cu.check("conv2d_bwd_data", w)?;
    if lgy.rank() != 4 {
        return shape_err("conv2d_bwd_data", format!("output gradient {:?} must be 4-D", lgy.shape));
    }
    let g = ConvGeom::new(&[lgy.shape[0], cin_hw[0], cin_hw[1], cin_hw[2]], &lw.shape, p)?;
    if lgy.shape != [g.n, g.cout, g.ho, g.wo] {
        return shape_err(
            "conv2d_bwd_data",
            format!("output gradient {:?} does not match input {:?} and weight {:?}", lgy.shape, cin_hw, lw.shape),
        );
    }
    if gy.dtype() != w.dtype() {
        return Err(Error::DTypeMismatch { op: "conv2d_bwd_data", lhs: gy.dtype(), rhs: w.dtype() });
    }
    let dt = gy.dtype();
    let sx = sfx("conv2d_bwd_data", dt)?;
    let d = Dims::new(&g);
    let len = g.n * d.in_sz;
    if len == 0 {
        return cu.alloc(dt, len);
    }
    if d.cog == 0 {
        // No output channels: nothing flows back.
        return cu.zeros(dt, len);
    }
    let (gyc, wc) = (cu.contig((gy, lgy))?, cu.contig((w, lw))?);
    if use_tc(cu, &g, dt) {
        return tc_bwd_data(cu, &gyc, &wc, &g);
    }
    let dx = cu.alloc(dt, len)?;
    let esz = dt.size();
    // W_gᵀ [kg, cog] shared by all samples; gy[n, g] [cog, pix].
    let a = Operand { ptr: wc.ptr(), esz, ld: d.kg, trans: true, sn: 0, sg: d.cog * d.kg };
    let mnk = (d.kg, d.pix, d.cog);
    let b_at = |n0: usize| Operand {
        ptr: gyc.ptr_at(n0 * d.out_sz),
        esz,
        ld: d.pix,
        trans: false,
        sn: d.out_sz,
        sg: d.cog * d.pix,
    };
    if d.pointwise {
        // The column gradient [N, Cin, H·W] is the input gradient.
        let c = Operand { ptr: dx.ptr(), esz, ld: d.pix, trans: false, sn: d.in_sz, sg: d.kg * d.pix };
        grouped_gemm(cu, dt, mnk, a, b_at(0), c, g.n, p.groups, 0.0, false)?;
        return Ok(dx);
    }
    // Column gradients in the compute type: f32 for bf16 / f16, so col2im sums unrounded taps.
    let half = dt.is_half();
    let cdt = if half { DType::F32 } else { dt };
    let per = d.chunk(&g, d.rows * d.pix * cdt.size());
    let dcols = cu.alloc(cdt, per * d.rows * d.pix)?;
    let name = format!("col2im_{sx}{}", wide_sfx(&g));
    for n0 in (0..g.n).step_by(per) {
        let nb = per.min(g.n - n0);
        let c = Operand {
            ptr: dcols.ptr(),
            esz: cdt.size(),
            ld: d.pix,
            trans: false,
            sn: d.rows * d.pix,
            sg: d.kg * d.pix,
        };
        grouped_gemm(cu, dt, mnk, a, b_at(n0), c, nb, p.groups, 0.0, half)?;
        let (cp, xp, sh) = (dcols.ptr(), dx.ptr_at(n0 * d.in_sz), shape(&g, nb));
        launch!(cu, "conv.cu", name, cfg_2d(g.h * g.w, nb * g.cin); &cp, &xp, &sh)?;
    }
    Ok(dx)
}

/// Samples `n0..n0 + nb` of a contiguous `[N, ch, pix]` buffer as a channel-major
/// `[ch, nb, pix]` matrix: its device address, and the copy that holds it (none for a single
/// sample, which already has that layout).
fn channel_major(
    cu: &Cuda,
    s: &CudaStorage,
    ch: usize,
    pix: usize,
    n0: usize,
    nb: usize,
) -> Result<(u64, Option<CudaStorage>)> {
    if nb == 1 {
        return Ok((s.ptr_at(n0 * ch * pix), None));
    }
    let l = Layout { shape: vec![ch, nb, pix], strides: vec![pix, ch * pix, 1], offset: n0 * ch * pix };
    let c = cu.copy_contiguous((s, &l))?;
    Ok((c.ptr(), Some(c)))
}

/// Gradient of conv2d w.r.t. its weight `wshape = [Cout, Cin/g, kh, kw]`.
pub fn conv2d_bwd_weight(
    cu: &Cuda,
    (x, lx): View<CudaStorage>,
    (gy, lgy): View<CudaStorage>,
    wshape: [usize; 4],
    p: Conv2dParams,
) -> Result<CudaStorage> {
    cu.check("conv2d_bwd_weight", x)?;
    cu.check("conv2d_bwd_weight", gy)?;
    let g = ConvGeom::new(&lx.shape, &wshape, p)?;
    if lgy.shape != [g.n, g.cout, g.ho, g.wo] {
        return shape_err(
            "conv2d_bwd_weight",
            format!("output gradient {:?} does not match input {:?} and weight {:?}", lgy.shape, lx.shape, wshape),
        );
    }
    if x.dtype() != gy.dtype() {
        return Err(Error::DTypeMismatch { op: "conv2d_bwd_weight", lhs: x.dtype(), rhs: gy.dtype() });
    }
    let dt = x.dtype();
    sfx("conv2d_bwd_weight", dt)?;
    let d = Dims::new(&g);
    let len = g.cout * d.kg;
    if len == 0 {
        return cu.alloc(dt, len);
    }
    if g.n == 0 {
        // No samples: an empty sum.
        return cu.zeros(dt, len);
    }
    let (xc, gyc) = (cu.contig((x, lx))?, cu.contig((gy, lgy))?);
    if use_tc(cu, &g, dt) {
        return tc_bwd_weight(cu, &xc, &gyc, &g);
    }
    let esz = dt.size();
    // Accumulator: f64 for f64, else f32 (cast back at the end for bf16 / f16).
    let f64_acc = dt == DType::F64;
    let acc = cu.alloc(if f64_acc { DType::F64 } else { DType::F32 }, len)?;
    let c = Operand { ptr: acc.ptr(), esz: acc.dtype().size(), ld: d.kg, trans: false, sn: 0, sg: d.cog * d.kg };
    let mnk_k = |nb: usize| (d.cog, d.kg, nb * d.pix);
    let per = d.chunk(&g, (d.rows + g.cout) * d.pix * esz);
    let cols = if d.pointwise { None } else { Some(cu.alloc(dt, per * d.rows * d.pix)?) };
    for n0 in (0..g.n).step_by(per) {
        let nb = per.min(g.n - n0);
        let k = nb * d.pix;
        // gy as [Cout, nb·pix]: row block g is gy_g [cog, nb·pix].
        let (gp, _gy_t) = channel_major(cu, &gyc, g.cout, d.pix, n0, nb)?;
        // Columns as [rows, nb·pix]; the GEMM reads their transpose [nb·pix, kg] per group.
        let (cp, _x_t) = match &cols {
            Some(cols) => {
                im2col(cu, &xc, &g, &d, (n0, nb), cols, false)?;
                (cols.ptr(), None)
            }
            None => channel_major(cu, &xc, g.cin, d.pix, n0, nb)?,
        };
        let a = Operand { ptr: gp, esz, ld: k, trans: false, sn: 0, sg: d.cog * k };
        let b = Operand { ptr: cp, esz, ld: k, trans: true, sn: 0, sg: d.kg * k };
        let beta = if n0 == 0 { 0.0 } else { 1.0 };
        grouped_gemm(cu, dt, mnk_k(nb), a, b, c, 1, p.groups, beta, !f64_acc)?;
    }
    if dt.is_half() {
        elementwise::cast(cu, (&acc, &Layout::contiguous(&[len])), dt)
    } else {
        Ok(acc)
    }
}
