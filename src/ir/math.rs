//! Scalar arithmetic shared by the reference interpreter, the optimizers and the
//! losses, generic over `f32` (what training uses) and `f64` (what gradient checks
//! use). Everything here is written for clarity first: it is the oracle.

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub};

use crate::sema::model::Activation;

/// A float the interpreter can run in.
pub trait Real:
    Copy
    + Debug
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
{
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn ln_1p(self) -> Self;
    fn sqrt(self) -> Self;
    fn tanh(self) -> Self;
    fn abs(self) -> Self;
    fn powf(self, e: Self) -> Self;
    fn erf(self) -> Self;

    fn zero() -> Self {
        Self::from_f64(0.0)
    }
    fn one() -> Self {
        Self::from_f64(1.0)
    }
    /// An `f32` hyperparameter, exactly.
    fn from_f32(v: f32) -> Self {
        Self::from_f64(v as f64)
    }
    fn max(self, o: Self) -> Self {
        if self >= o {
            self
        } else {
            o
        }
    }
    fn min(self, o: Self) -> Self {
        if self <= o {
            self
        } else {
            o
        }
    }
}

macro_rules! impl_real {
    ($t:ty, $erf:path) => {
        impl Real for $t {
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            fn powf(self, e: Self) -> Self {
                <$t>::powf(self, e)
            }
            fn erf(self) -> Self {
                $erf(self)
            }
        }
    };
}

impl_real!(f32, libm::erff);
impl_real!(f64, libm::erf);

/// The logistic function, without overflow for large `|x|`.
pub fn sigmoid<T: Real>(x: T) -> T {
    if x >= T::zero() {
        T::one() / (T::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::one() + e)
    }
}

/// `log(1 + exp(x))` without overflow.
pub fn softplus<T: Real>(x: T) -> T {
    x.max(T::zero()) + (-x.abs()).exp().ln_1p()
}

/// An elementwise activation (`Softmax` is not elementwise and is refused by the
/// graph builder before it gets here; it maps to the identity so this stays total).
pub fn activate<T: Real>(a: Activation, x: T) -> T {
    let half = T::from_f64(0.5);
    match a {
        Activation::Linear | Activation::Softmax => x,
        Activation::Relu => x.max(T::zero()),
        Activation::LeakyRelu { alpha } => {
            if x >= T::zero() {
                x
            } else {
                T::from_f32(alpha) * x
            }
        }
        Activation::Elu { alpha } => {
            if x > T::zero() {
                x
            } else {
                T::from_f32(alpha) * (x.exp() - T::one())
            }
        }
        Activation::Sigmoid => sigmoid(x),
        Activation::Tanh => x.tanh(),
        // Keras's default gelu (approximate=False).
        Activation::Gelu => {
            x * half * (T::one() + (x / T::from_f64(std::f64::consts::SQRT_2)).erf())
        }
        Activation::Silu => x * sigmoid(x),
        Activation::Softplus => softplus(x),
    }
}

/// `f'(x)`, given `x` and `y = f(x)`.
pub fn activate_derivative<T: Real>(a: Activation, x: T, y: T) -> T {
    let one = T::one();
    match a {
        Activation::Linear | Activation::Softmax => one,
        Activation::Relu => {
            if x > T::zero() {
                one
            } else {
                T::zero()
            }
        }
        Activation::LeakyRelu { alpha } => {
            if x >= T::zero() {
                one
            } else {
                T::from_f32(alpha)
            }
        }
        Activation::Elu { alpha } => {
            if x > T::zero() {
                one
            } else {
                T::from_f32(alpha) * x.exp()
            }
        }
        Activation::Sigmoid => y * (one - y),
        Activation::Tanh => one - y * y,
        Activation::Gelu => {
            let cdf = T::from_f64(0.5) * (one + (x / T::from_f64(std::f64::consts::SQRT_2)).erf());
            let pdf = (-(x * x) * T::from_f64(0.5)).exp()
                / T::from_f64((2.0 * std::f64::consts::PI).sqrt());
            cdf + x * pdf
        }
        Activation::Silu => {
            let s = sigmoid(x);
            s * (one + x * (one - s))
        }
        Activation::Softplus => sigmoid(x),
    }
}
