//! Elementwise differentiable functions: unary maps, broadcasting binary ops, where, casts.

use crate::autograd::record;
use crate::backend::Dispatch;
use crate::error::{msg, Result};
use crate::tensor::{same_device, Tensor};
use scorch_ops::cpu::elementwise::{BinaryOp, UnaryOp};
use scorch_ops::{DType, Kernels};

/// Backward rule of a binary op: (a, b, out, grad) → (grad a, grad b) before broadcasting sums.
type BinaryBackward = fn(&Tensor, &Tensor, &Tensor, &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)>;

const FRAC_2_SQRT_PI: f64 = std::f64::consts::FRAC_2_SQRT_PI;

impl Tensor {
    /// Runs a unary kernel with no autograd record.
    pub(crate) fn unary_raw(&self, op: UnaryOp) -> Result<Tensor> {
        let s = self.storage();
        let out = Dispatch.unary(op, (&*s, self.layout()))?;
        Ok(Tensor::from_storage(out, self.shape()))
    }

    /// Runs a binary kernel with no autograd record.
    pub(crate) fn binary_raw(&self, op: BinaryOp, other: &Tensor) -> Result<Tensor> {
        same_device(op_name(op), &[self, other])?;
        let (a, b) = (self.storage(), other.storage());
        let (out, shape) = Dispatch.binary(op, (&*a, self.layout()), (&*b, other.layout()))?;
        Ok(Tensor::from_storage(out, &shape))
    }

    fn unary_op(
        &self,
        op: UnaryOp,
        name: &'static str,
        back: fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let out = self.unary_raw(op)?;
        let x = self.clone();
        Ok(record(out, name, &[self], move |ctx, g| Ok(vec![Some(back(&x, ctx.out()?, g)?)])))
    }

    pub fn neg(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::Neg, "neg", |_, _, g| g.neg())
    }
    pub fn abs(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::Abs, "abs", |x, _, g| g.mul(&x.sign()?))
    }
    pub fn exp(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::Exp, "exp", |_, y, g| g.mul(y))
    }
    pub fn log(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::Log, "log", |x, _, g| g.div(x))
    }
    pub fn log1p(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::Log1p, "log1p", |x, _, g| g.div(&x.add_scalar(1.0)?))
    }
    pub fn expm1(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::Expm1, "expm1", |_, y, g| g.mul(&y.add_scalar(1.0)?))
    }
    pub fn sqrt(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::Sqrt, "sqrt", |_, y, g| g.div(&y.mul_scalar(2.0)?))
    }
    pub fn rsqrt(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::Rsqrt, "rsqrt", |_, y, g| g.mul(&y.powf(3.0)?.mul_scalar(-0.5)?))
    }
    pub fn reciprocal(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::Recip, "reciprocal", |_, y, g| g.mul(&y.sqr()?)?.neg())
    }
    pub fn sqr(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::Sqr, "sqr", |x, _, g| g.mul(&x.mul_scalar(2.0)?))
    }
    pub fn sin(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::Sin, "sin", |x, _, g| g.mul(&x.cos()?))
    }
    pub fn cos(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::Cos, "cos", |x, _, g| g.mul(&x.sin()?).and_then(|t| t.neg()))
    }
    pub fn tanh(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::Tanh, "tanh", |_, y, g| g.mul(&y.sqr()?.affine(-1.0, 1.0)?))
    }
    pub fn sigmoid(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::Sigmoid, "sigmoid", |_, y, g| g.mul(&y.mul(&y.affine(-1.0, 1.0)?)?))
    }
    /// x·σ(x).
    pub fn silu(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::Silu, "silu", |x, _, g| {
            if !crate::autograd::is_grad_enabled() {
                // First-order backward: one fused pass for σ + x·σ(1−σ).
                return g.mul(&x.unary_raw(UnaryOp::SiluGrad)?);
            }
            let s = x.sigmoid()?;
            // σ + x·σ(1−σ), composed so it can be differentiated again.
            g.mul(&s.add(&x.mul(&s)?.mul(&s.affine(-1.0, 1.0)?)?)?)
        })
    }
    /// GELU with the exact erf form.
    pub fn gelu(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::GeluErf, "gelu", |x, _, g| {
            if !crate::autograd::is_grad_enabled() {
                return g.mul(&x.unary_raw(UnaryOp::GeluErfGrad)?);
            }
            // Φ(x) + x·φ(x), written with engine ops so it is differentiable again.
            let cdf = x.mul_scalar(std::f64::consts::FRAC_1_SQRT_2)?.erf()?.affine(0.5, 0.5)?;
            let pdf = x.sqr()?.mul_scalar(-0.5)?.exp()?.mul_scalar(1.0 / (2.0 * std::f64::consts::PI).sqrt())?;
            g.mul(&cdf.add(&x.mul(&pdf)?)?)
        })
    }

    /// GELU with the tanh approximation.
    pub fn gelu_tanh(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::GeluTanh, "gelu_tanh", |x, _, g| {
            let k = (2.0 / std::f64::consts::PI).sqrt();
            let u = x.add(&x.powf(3.0)?.mul_scalar(0.044715)?)?.mul_scalar(k)?;
            let t = u.tanh()?;
            let du = x.sqr()?.affine(3.0 * 0.044715 * k, k)?;
            // 0.5(1+t) + 0.5·x·(1−t²)·u'
            let a = t.affine(0.5, 0.5)?;
            let b = x.mul(&t.sqr()?.affine(-1.0, 1.0)?)?.mul(&du)?.mul_scalar(0.5)?;
            g.mul(&a.add(&b)?)
        })
    }
    /// log(1 + eˣ).
    pub fn softplus(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::Softplus, "softplus", |x, _, g| g.mul(&x.sigmoid()?))
    }
    pub fn relu(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::Relu, "relu", |x, _, g| g.mul(&x.unary_raw(UnaryOp::Step)?))
    }
    pub fn leaky_relu(&self, slope: f64) -> Result<Tensor> {
        let out = self.unary_raw(UnaryOp::LeakyRelu(slope))?;
        let x = self.clone();
        Ok(record(out, "leaky_relu", &[self], move |_, g| {
            let m = x.unary_raw(UnaryOp::Step)?.affine(1.0 - slope, slope)?;
            Ok(vec![Some(g.mul(&m)?)])
        }))
    }
    pub fn erf(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::Erf, "erf", |x, _, g| g.mul(&x.sqr()?.neg()?.exp()?.mul_scalar(FRAC_2_SQRT_PI)?))
    }
    /// log|Γ(x)|.
    pub fn lgamma(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::Lgamma, "lgamma", |x, _, g| g.mul(&x.digamma()?))
    }
    /// ψ(x).
    pub fn digamma(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::Digamma, "digamma", |x, _, g| g.mul(&x.trigamma()?))
    }
    /// ψ₁(x).
    pub fn trigamma(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::Trigamma, "trigamma", |x, _, g| g.mul(&x.tetragamma()?))
    }
    /// ψ₂(x); the end of the polygamma chain this engine differentiates (its backward errors).
    pub fn tetragamma(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::Tetragamma, "tetragamma", |_, _, _| {
            msg("tetragamma (polygamma order 2) has no gradient in scorch: polygamma of order 3 is not implemented")
        })
    }
    /// −1, 0 or 1. Not differentiable: the result never requires grad.
    pub fn sign(&self) -> Result<Tensor> {
        self.unary_raw(UnaryOp::Sign)
    }
    /// Not differentiable: the result never requires grad.
    pub fn floor(&self) -> Result<Tensor> {
        self.unary_raw(UnaryOp::Floor)
    }
    /// Round half to even. Not differentiable: the result never requires grad.
    pub fn round(&self) -> Result<Tensor> {
        self.unary_raw(UnaryOp::Round)
    }
    /// a·x + b.
    pub fn affine(&self, a: f64, b: f64) -> Result<Tensor> {
        let out = self.unary_raw(UnaryOp::Affine(a, b))?;
        Ok(record(out, "affine", &[self], move |_, g| Ok(vec![Some(g.mul_scalar(a)?)])))
    }
    pub fn add_scalar(&self, b: f64) -> Result<Tensor> {
        self.affine(1.0, b)
    }
    pub fn mul_scalar(&self, a: f64) -> Result<Tensor> {
        self.affine(a, 0.0)
    }
    /// xᵖ for a constant p.
    pub fn powf(&self, p: f64) -> Result<Tensor> {
        let out = self.unary_raw(UnaryOp::PowScalar(p))?;
        let x = self.clone();
        Ok(record(out, "powf", &[self], move |_, g| {
            let d = if p == 2.0 { x.mul_scalar(2.0)? } else { x.powf(p - 1.0)?.mul_scalar(p)? };
            Ok(vec![Some(g.mul(&d)?)])
        }))
    }
    /// min(max(x, lo), hi); the gradient passes where lo ≤ x ≤ hi.
    pub fn clamp(&self, lo: f64, hi: f64) -> Result<Tensor> {
        if lo > hi {
            return msg(format!("clamp: lo {lo} > hi {hi}"));
        }
        let out = self.unary_raw(UnaryOp::Clamp(lo, hi))?;
        let x = self.clone();
        Ok(record(out, "clamp", &[self], move |_, g| Ok(vec![Some(g.mul(&x.unary_raw(UnaryOp::ClampMask(lo, hi))?)?)])))
    }
    /// Replaces NaN and ±inf; the gradient passes only where x was finite.
    pub fn nan_to_num(&self, nan: f64, pos: f64, neg: f64) -> Result<Tensor> {
        let out = self.unary_raw(UnaryOp::NanToNum(nan, pos, neg))?;
        let x = self.clone();
        Ok(record(out, "nan_to_num", &[self], move |_, g| {
            let finite = x.unary_raw(UnaryOp::ClampMask(f64::MIN, f64::MAX))?;
            Ok(vec![Some(g.mul(&finite)?)])
        }))
    }

    // ------------------------------------------------------------------ binary

    fn binary_op(&self, other: &Tensor, op: BinaryOp, back: BinaryBackward) -> Result<Tensor> {
        let out = self.binary_raw(op, other)?;
        let (a, b) = (self.clone(), other.clone());
        Ok(record(out, op_name(op), &[self, other], move |ctx, g| {
            let (ga, gb) = back(&a, &b, ctx.out()?, g)?;
            Ok(vec![
                ga.map(|t| t.sum_to_shape(a.shape())).transpose()?,
                gb.map(|t| t.sum_to_shape(b.shape())).transpose()?,
            ])
        }))
    }
    pub fn add(&self, o: &Tensor) -> Result<Tensor> {
        self.binary_op(o, BinaryOp::Add, |_, _, _, g| Ok((Some(g.clone()), Some(g.clone()))))
    }
    pub fn sub(&self, o: &Tensor) -> Result<Tensor> {
        self.binary_op(o, BinaryOp::Sub, |_, _, _, g| Ok((Some(g.clone()), Some(g.neg()?))))
    }
    pub fn mul(&self, o: &Tensor) -> Result<Tensor> {
        self.binary_op(o, BinaryOp::Mul, |a, b, _, g| Ok((Some(g.mul(b)?), Some(g.mul(a)?))))
    }
    pub fn div(&self, o: &Tensor) -> Result<Tensor> {
        self.binary_op(o, BinaryOp::Div, |a, b, _, g| {
            let ga = g.div(b)?;
            let gb = ga.mul(a)?.div(b)?.neg()?;
            Ok((Some(ga), Some(gb)))
        })
    }
    /// aᵇ elementwise (b's gradient uses ln a, so a must be positive where it matters).
    pub fn pow(&self, o: &Tensor) -> Result<Tensor> {
        self.binary_op(o, BinaryOp::Pow, |a, b, y, g| {
            let ga = g.mul(&b.mul(&a.pow(&b.add_scalar(-1.0)?)?)?)?;
            let gb = if b.requires_grad() { Some(g.mul(&y.mul(&a.log()?)?)?) } else { None };
            Ok((Some(ga), gb))
        })
    }
    /// Elementwise max; ties split the gradient evenly (like PyTorch).
    pub fn maximum(&self, o: &Tensor) -> Result<Tensor> {
        self.binary_op(o, BinaryOp::Maximum, |a, b, _, g| tie_split(a, b, g, BinaryOp::Gt))
    }
    /// Elementwise min; ties split the gradient evenly.
    pub fn minimum(&self, o: &Tensor) -> Result<Tensor> {
        self.binary_op(o, BinaryOp::Minimum, |a, b, _, g| tie_split(a, b, g, BinaryOp::Lt))
    }
    pub fn eq(&self, o: &Tensor) -> Result<Tensor> {
        self.binary_raw(BinaryOp::Eq, o)
    }
    pub fn ne(&self, o: &Tensor) -> Result<Tensor> {
        self.binary_raw(BinaryOp::Ne, o)
    }
    pub fn lt(&self, o: &Tensor) -> Result<Tensor> {
        self.binary_raw(BinaryOp::Lt, o)
    }
    pub fn le(&self, o: &Tensor) -> Result<Tensor> {
        self.binary_raw(BinaryOp::Le, o)
    }
    pub fn gt(&self, o: &Tensor) -> Result<Tensor> {
        self.binary_raw(BinaryOp::Gt, o)
    }
    pub fn ge(&self, o: &Tensor) -> Result<Tensor> {
        self.binary_raw(BinaryOp::Ge, o)
    }
    /// Comparison with a scalar (Bool result).
    pub fn cmp_scalar(&self, op: BinaryOp, v: f64) -> Result<Tensor> {
        self.binary_raw(op, &Tensor::full_on(&[], v, self.dtype(), self.device())?)
    }

    /// `cond ? a : b` with broadcasting (cond is Bool).
    pub fn where_cond(cond: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        same_device("where", &[cond, a, b])?;
        let out = {
            let (c, x, y) = (cond.storage(), a.storage(), b.storage());
            let (o, shape) = Dispatch.where_cond((&*c, cond.layout()), (&*x, a.layout()), (&*y, b.layout()))?;
            Tensor::from_storage(o, &shape)
        };
        let (c, ashape, bshape) = (cond.clone(), a.shape().to_vec(), b.shape().to_vec());
        Ok(record(out, "where", &[a, b], move |_, g| {
            let z = Tensor::zeros_on(&[], g.dtype(), g.device())?;
            let ga = Tensor::where_cond(&c, g, &z)?.sum_to_shape(&ashape)?;
            let gb = Tensor::where_cond(&c, &z, g)?.sum_to_shape(&bshape)?;
            Ok(vec![Some(ga), Some(gb)])
        }))
    }

    /// Converts to another dtype; differentiable between float dtypes.
    pub fn cast(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        let out = {
            let s = self.storage();
            Tensor::from_storage(Dispatch.cast((&*s, self.layout()), dtype)?, self.shape())
        };
        let src = self.dtype();
        if !dtype.is_float() {
            return Ok(out);
        }
        Ok(record(out, "cast", &[self], move |_, g| Ok(vec![Some(g.cast(src)?)])))
    }
}

/// Gradient split for maximum/minimum: the winner gets g, ties give g/2 to each.
fn tie_split(a: &Tensor, b: &Tensor, g: &Tensor, win: BinaryOp) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let dt = g.dtype();
    let wa = a.binary_raw(win, b)?.cast(dt)?;
    let tie = a.binary_raw(BinaryOp::Eq, b)?.cast(dt)?.mul_scalar(0.5)?;
    let ma = wa.add(&tie)?;
    let mb = ma.affine(-1.0, 1.0)?;
    Ok((Some(g.mul(&ma)?), Some(g.mul(&mb)?)))
}

pub(crate) fn op_name(op: BinaryOp) -> &'static str {
    match op {
        BinaryOp::Add => "add",
        BinaryOp::Sub => "sub",
        BinaryOp::Mul => "mul",
        BinaryOp::Div => "div",
        BinaryOp::Pow => "pow",
        BinaryOp::Maximum => "maximum",
        BinaryOp::Minimum => "minimum",
        BinaryOp::Eq => "eq",
        BinaryOp::Ne => "ne",
        BinaryOp::Lt => "lt",
        BinaryOp::Le => "le",
        BinaryOp::Gt => "gt",
        BinaryOp::Ge => "ge",
    }
}
