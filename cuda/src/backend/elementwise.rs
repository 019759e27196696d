//! Elementwise launchers: unary maps, broadcasting binary ops and comparisons, where, casts
//! and strided copies (`cuda/kernels/elementwise.cu`).

use super::{launch, sfx, strided, Cuda, CudaStorage};
use crate::device::CudaDevice;
use scorch_ops::cpu::elementwise::{BinaryOp, UnaryOp};
use scorch_ops::kernels::View;
use scorch_ops::layout::broadcast_shapes;
use scorch_ops::{DType, Error, Layout, Result};

/// Kernel op code and parameters of a unary op (the switch in `unary_apply` in
/// elementwise.cu); public for the host kernel tests, which run every op through it.
pub fn unary_code(op: UnaryOp) -> (i32, [f64; 3]) {
    use UnaryOp::*;
    let z = [0.0; 3];
    match op {
        Neg => (0, z),
        Abs => (1, z),
        Exp => (2, z),
        Log => (3, z),
        Log1p => (4, z),
        Expm1 => (5, z),
        Sqrt => (6, z),
        Rsqrt => (7, z),
        Recip => (8, z),
        Sqr => (9, z),
        Sin => (10, z),
        Cos => (11, z),
        Tanh => (12, z),
        Sigmoid => (13, z),
        Silu => (14, z),
        GeluErf => (15, z),
        GeluTanh => (16, z),
        Softplus => (17, z),
        Relu => (18, z),
        Step => (19, z),
        Erf => (20, z),
        Lgamma => (21, z),
        Digamma => (22, z),
        Trigamma => (23, z),
        Tetragamma => (24, z),
        Sign => (25, z),
        Floor => (26, z),
        Round => (27, z),
        Affine(a, b) => (28, [a, b, 0.0]),
        PowScalar(p) => (29, [p, 0.0, 0.0]),
        LeakyRelu(s) => (30, [s, 0.0, 0.0]),
        Clamp(lo, hi) => (31, [lo, hi, 0.0]),
        ClampMask(lo, hi) => (32, [lo, hi, 0.0]),
        NanToNum(nan, pos, neg) => (33, [nan, pos, neg]),
        SiluGrad => (34, z),
        GeluErfGrad => (35, z),
        GeluTanhGrad => (36, z),
    }
}

/// The kernels' code of a binary op (`binary_apply` in elementwise.cu).
pub fn binary_code(op: BinaryOp) -> i32 {
    use BinaryOp::*;
    match op {
        Add => 0,
        Sub => 1,
        Mul => 2,
        Div => 3,
        Pow => 4,
        Maximum => 5,
        Minimum => 6,
        Eq => 7,
        Ne => 8,
        Lt => 9,
        Le => 10,
        Gt => 11,
        Ge => 12,
    }
}

/// Whether a contiguous f32 view starting at element 0 can take the float4 path.
fn vec4_ok(s: &CudaStorage, l: &Layout) -> bool {
    s.dtype() == DType::F32 && l.is_contiguous() && l.offset == 0 && l.numel().is_multiple_of(4) && l.numel() > 0
}

pub fn unary(cu: &Cuda, op: UnaryOp, (s, l): View<CudaStorage>) -> Result<CudaStorage> {
    cu.check("unary", s)?;
    let sx = sfx("unary", s.dtype())?;
    let n = l.numel();
    let out = cu.alloc(s.dtype(), n)?;
    if n == 0 {
        return Ok(out);
    }
    let (code, [p0, p1, p2]) = unary_code(op);
    let (xp, yp) = (s.ptr(), out.ptr());
    if vec4_ok(s, l) {
        let n4 = (n / 4) as i64;
        launch!(cu, "elementwise.cu", "unary_f32_vec4", CudaDevice::cfg_1d(n / 4); &xp, &yp, &n4, &code, &p0, &p1, &p2)?;
    } else {
        let lx = strided(&l.coalesced())?;
        let ni = n as i64;
        launch!(cu, "elementwise.cu", format!("unary_{sx}"), CudaDevice::cfg_1d(n); &xp, &lx, &yp, &ni, &code, &p0, &p1, &p2)?;
    }
    Ok(out)
}

/// Both views broadcast to one shape, with shared unit dims merged away.
fn broadcast2(op: &'static str, la: &Layout, lb: &Layout) -> Result<(Vec<usize>, Layout, Layout)> {
    let shape = broadcast_shapes(&la.shape, &lb.shape).map_err(|_| Error::Shape {
        op,
        detail: format!("shapes {:?} and {:?} do not broadcast", la.shape, lb.shape),
    })?;
    Ok((shape.clone(), la.broadcast_to(&shape)?, lb.broadcast_to(&shape)?))
}

pub fn binary(
    cu: &Cuda,
    op: BinaryOp,
    (a, la): View<CudaStorage>,
    (b, lb): View<CudaStorage>,
) -> Result<(CudaStorage, Vec<usize>)> {
    cu.check("binary", a)?;
    cu.check("binary", b)?;
    if a.dtype() != b.dtype() {
        return Err(Error::DTypeMismatch { op: "binary", lhs: a.dtype(), rhs: b.dtype() });
    }
    let (shape, la, lb) = broadcast2("binary", la, lb)?;
    let n: usize = shape.iter().product();
    let cmp = op.is_comparison();
    let out = cu.alloc(if cmp { DType::Bool } else { a.dtype() }, n)?;
    if n == 0 {
        return Ok((out, shape));
    }
    let code = binary_code(op);
    let (ap, bp, yp) = (a.ptr(), b.ptr(), out.ptr());
    if !cmp && vec4_ok(a, &la) && vec4_ok(b, &lb) {
        let n4 = (n / 4) as i64;
        launch!(cu, "elementwise.cu", "binary_f32_vec4", CudaDevice::cfg_1d(n / 4); &ap, &bp, &yp, &n4, &code)?;
        return Ok((out, shape));
    }
    let name = match (a.dtype(), cmp) {
        (DType::F32 | DType::F64 | DType::BF16 | DType::F16, false) => format!("binary_{}", sfx("binary", a.dtype())?),
        (DType::F32 | DType::F64 | DType::BF16 | DType::F16, true) => format!("compare_{}", sfx("binary", a.dtype())?),
        (DType::I64, c) => format!("{}_i64", if c { "compare" } else { "binary" }),
        (DType::I32, c) => format!("{}_i32", if c { "compare" } else { "binary" }),
        (DType::U8, c) => format!("{}_u8", if c { "compare" } else { "binary" }),
        (DType::Bool, true) => "compare_bool".to_string(),
        (dt, _) => return Err(Error::DType { op: "binary arithmetic", dtype: dt }),
    };
    let (lx, ly) = (strided(&la)?, strided(&lb)?);
    let ni = n as i64;
    launch!(cu, "elementwise.cu", name, CudaDevice::cfg_1d(n); &ap, &lx, &bp, &ly, &yp, &ni, &code)?;
    Ok((out, shape))
}

pub fn where_cond(
    cu: &Cuda,
    (c, lc): View<CudaStorage>,
    (a, la): View<CudaStorage>,
    (b, lb): View<CudaStorage>,
) -> Result<(CudaStorage, Vec<usize>)> {
    for s in [c, a, b] {
        cu.check("where", s)?;
    }
    if c.dtype() != DType::Bool {
        return Err(Error::DType { op: "where (condition must be bool)", dtype: c.dtype() });
    }
    if a.dtype() != b.dtype() {
        return Err(Error::DTypeMismatch { op: "where", lhs: a.dtype(), rhs: b.dtype() });
    }
    let shape = broadcast_shapes(&broadcast_shapes(&lc.shape, &la.shape)?, &lb.shape)?;
    let (lc, la, lb) = (lc.broadcast_to(&shape)?, la.broadcast_to(&shape)?, lb.broadcast_to(&shape)?);
    let n: usize = shape.iter().product();
    let out = cu.alloc(a.dtype(), n)?;
    if n == 0 {
        return Ok((out, shape));
    }
    let name = match a.dtype().size() {
        1 => "where_u8",
        2 => "where_u16",
        4 => "where_f32",
        _ => "where_f64",
    };
    let (sc, sa, sb) = (strided(&lc)?, strided(&la)?, strided(&lb)?);
    let (cp, ap, bp, yp, ni) = (c.ptr(), a.ptr(), b.ptr(), out.ptr(), n as i64);
    launch!(cu, "elementwise.cu", name, CudaDevice::cfg_1d(n); &cp, &sc, &ap, &sa, &bp, &sb, &yp, &ni)?;
    Ok((out, shape))
}

/// The dtype code of `cast_any` in elementwise.cu.
pub fn cast_code(dt: DType) -> i32 {
    match dt {
        DType::F32 => 0,
        DType::F64 => 1,
        DType::BF16 => 2,
        DType::F16 => 3,
        DType::I64 => 4,
        DType::I32 => 5,
        DType::U8 => 6,
        DType::Bool => 7,
    }
}

pub fn cast(cu: &Cuda, (s, l): View<CudaStorage>, dtype: DType) -> Result<CudaStorage> {
    cu.check("cast", s)?;
    if s.dtype() == dtype {
        return cu.copy_contiguous((s, l));
    }
    let n = l.numel();
    let out = cu.alloc(dtype, n)?;
    if n == 0 {
        return Ok(out);
    }
    let lx = strided(&l.coalesced())?;
    let (xp, yp, src, dst, ni) = (s.ptr(), out.ptr(), cast_code(s.dtype()), cast_code(dtype), n as i64);
    launch!(cu, "elementwise.cu", "cast_any", CudaDevice::cfg_1d(n); &xp, &lx, &src, &yp, &dst, &ni)?;
    Ok(out)
}

pub fn copy_into(cu: &Cuda, dst: &mut CudaStorage, dst_l: &Layout, (s, l): View<CudaStorage>) -> Result<()> {
    cu.check("copy_into", s)?;
    cu.check("copy_into", dst)?;
    if dst.dtype() != s.dtype() {
        return Err(Error::DTypeMismatch { op: "copy_into", lhs: dst.dtype(), rhs: s.dtype() });
    }
    if dst_l.shape != l.shape {
        return Err(Error::Shape {
            op: "copy_into",
            detail: format!("destination {:?} vs source {:?}", dst_l.shape, l.shape),
        });
    }
    if dst_l.span_end() > dst.len() {
        return Err(Error::Shape { op: "copy_into", detail: "destination view exceeds its buffer".into() });
    }
    let n = dst_l.numel();
    if n == 0 {
        return Ok(());
    }
    let src = cu.contig((s, l))?;
    let ly = strided(dst_l)?;
    let (xp, yp, ni) = (src.ptr(), dst.ptr(), n as i64);
    let name = format!("copy_into_{}", s.dtype().size());
    launch!(cu, "elementwise.cu", name, CudaDevice::cfg_1d(n); &xp, &yp, &ly, &ni)?;
    Ok(())
}
