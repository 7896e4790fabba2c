//! The native code of every activation (`ops/activation.rs` defines them and their
//! reference arithmetic): `f(x)` and `dy * f'(x)` on `f32x4` or `f32` lanes, which the
//! elementwise loops of `lower.rs` call per vector. Each must agree with the
//! reference to within the polynomial `exp`/`log`'s error (the codegen tests compare
//! both executors on every activation of `Activation::ALL`).

use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{InstBuilder, Type, Value};

use super::kernels::Emitter;
use crate::ops::activation::{SELU_SCALE, SELU_SCALE_ALPHA};
use crate::ops::Activation;

/// `f(x)` for an elementwise activation, on `f32x4` or `f32` lanes.
pub fn activate(e: &mut Emitter, act: Activation, x: Value) -> Value {
    let ty = e.b.func.dfg.value_type(x);
    let zero = e.fc(ty, 0.0);
    match act {
        Activation::Linear | Activation::Softmax => x,
        Activation::Relu => e.max_c(x, 0.0),
        Activation::LeakyRelu { alpha } => {
            let ax = e.fmul_c(x, alpha);
            e.sel(FloatCC::GreaterThanOrEqual, x, zero, x, ax)
        }
        Activation::Elu { alpha } => {
            let em1 = e.expm1(x);
            let neg = e.fmul_c(em1, alpha);
            e.sel(FloatCC::GreaterThan, x, zero, x, neg)
        }
        Activation::Sigmoid => e.sigmoid(x),
        Activation::Tanh => e.tanh(x),
        Activation::Gelu => {
            let tp = e.two_phi(x);
            let hx = e.fmul_c(x, 0.5);
            e.fmul(hx, tp)
        }
        Activation::Silu => {
            let s = e.sigmoid(x);
            e.fmul(x, s)
        }
        Activation::Softplus => softplus(e, x),
        Activation::Selu => {
            let ex = e.exp(x);
            let em1 = e.fadd_c(ex, -1.0);
            let neg = e.fmul_c(em1, SELU_SCALE_ALPHA);
            let pos = e.fmul_c(x, SELU_SCALE);
            e.sel(FloatCC::LessThan, x, zero, neg, pos)
        }
        Activation::Softsign => {
            let ax = e.b.ins().fabs(x);
            let d = e.fadd_c(ax, 1.0);
            e.fdiv(x, d)
        }
        Activation::HardSigmoid => {
            let r = relu6(e, x);
            e.fmul_c(r, 1.0 / 6.0)
        }
        Activation::Mish => {
            let sp = softplus(e, x);
            let t = e.tanh(sp);
            e.fmul(x, t)
        }
        Activation::Exponential => e.exp(x),
    }
}

/// Which of `x` and `y = f(x)` `activate_grad` reads for `act`: the gradient's loop
/// loads only those (Cranelift keeps every load it is given, used or not, and an
/// unused stream of a large tensor costs as much as a used one).
pub fn grad_reads(act: Activation) -> (bool, bool) {
    match act {
        Activation::Linear | Activation::Softmax => (false, false),
        Activation::Relu
        | Activation::LeakyRelu { .. }
        | Activation::Elu { .. }
        | Activation::Gelu
        | Activation::Silu
        | Activation::Softplus
        | Activation::Softsign
        | Activation::HardSigmoid
        | Activation::Mish => (true, false),
        Activation::Sigmoid | Activation::Tanh | Activation::Selu | Activation::Exponential => {
            (false, true)
        }
    }
}

/// `dy * f'(x)` given `x`, `y = f(x)` and `dy` (only those of `x` and `y` that
/// `grad_reads` names are read).
pub fn activate_grad(e: &mut Emitter, act: Activation, x: Value, y: Value, dy: Value) -> Value {
    let ty: Type = e.b.func.dfg.value_type(x);
    let zero = e.fc(ty, 0.0);
    match act {
        Activation::Linear | Activation::Softmax => dy,
        Activation::Relu => e.sel(FloatCC::GreaterThan, x, zero, dy, zero),
        Activation::LeakyRelu { alpha } => {
            let a = e.fmul_c(dy, alpha);
            // `x > 0` as the interpreter and Keras: the slope at 0 is `alpha`.
            e.sel(FloatCC::GreaterThan, x, zero, dy, a)
        }
        Activation::Elu { alpha } => {
            let ex = e.exp(x);
            let d = e.fmul_c(ex, alpha);
            let neg = e.fmul(dy, d);
            e.sel(FloatCC::GreaterThan, x, zero, dy, neg)
        }
        Activation::Sigmoid => {
            let omy = e.c_sub(1.0, y);
            let d = e.fmul(y, omy);
            e.fmul(dy, d)
        }
        Activation::Tanh => {
            let yy = e.fmul(y, y);
            let d = e.c_sub(1.0, yy);
            e.fmul(dy, d)
        }
        Activation::Gelu => {
            // 0.5 * 2Phi(x) + x * exp(-x^2 / 2) / sqrt(2 pi)
            let tp = e.two_phi(x);
            let cdf = e.fmul_c(tp, 0.5);
            let xx = e.fmul(x, x);
            let a = e.fmul_c(xx, -0.5);
            let ex = e.exp(a);
            let pdf = e.fmul_c(ex, 0.398_942_3);
            let xp = e.fmul(x, pdf);
            let d = e.fadd(cdf, xp);
            e.fmul(dy, d)
        }
        Activation::Silu => {
            let s = e.sigmoid(x);
            let oms = e.c_sub(1.0, s);
            let xo = e.fmul(x, oms);
            let t = e.fadd_c(xo, 1.0);
            let d = e.fmul(s, t);
            e.fmul(dy, d)
        }
        Activation::Softplus => {
            let s = e.sigmoid(x);
            e.fmul(dy, s)
        }
        Activation::Selu => {
            let ya = e.fadd_c(y, SELU_SCALE_ALPHA);
            let neg = e.fmul(dy, ya);
            let pos = e.fmul_c(dy, SELU_SCALE);
            e.sel(FloatCC::LessThan, y, zero, neg, pos)
        }
        Activation::Softsign => {
            let ax = e.b.ins().fabs(x);
            let d = e.fadd_c(ax, 1.0);
            let dd = e.fmul(d, d);
            e.fdiv(dy, dd)
        }
        Activation::HardSigmoid => {
            let r = relu6(e, x);
            let six = e.fc(ty, 6.0);
            let d = e.fmul_c(dy, 1.0 / 6.0);
            let below = e.sel(FloatCC::LessThan, r, six, d, zero);
            e.sel(FloatCC::GreaterThan, r, zero, below, zero)
        }
        Activation::Mish => {
            // tanh(sp) + x * (1 - tanh(sp)^2) * sigmoid(x)
            let sp = softplus(e, x);
            let t = e.tanh(sp);
            let tt = e.fmul(t, t);
            let omtt = e.c_sub(1.0, tt);
            let s = e.sigmoid(x);
            let xs = e.fmul(x, s);
            let slope = e.fmul(xs, omtt);
            let d = e.fadd(t, slope);
            e.fmul(dy, d)
        }
        Activation::Exponential => e.fmul(dy, y),
    }
}

/// `min(max(x + 3, 0), 6)`, hard_sigmoid's numerator.
fn relu6(e: &mut Emitter, x: Value) -> Value {
    let shifted = e.fadd_c(x, 3.0);
    let r = e.max_c(shifted, 0.0);
    e.min_c(r, 6.0)
}

/// `max(x, 0) + log(1 + exp(-|x|))`: `log(1 + exp(x))` without overflow.
fn softplus(e: &mut Emitter, x: Value) -> Value {
    let m = e.max_c(x, 0.0);
    let ax = e.b.ins().fabs(x);
    let nax = e.b.ins().fneg(ax);
    let ex = e.exp(nax);
    let l = e.log1p_pos(ex);
    e.fadd(m, l)
}
