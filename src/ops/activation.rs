//! Every activation of the language, defined once: its name, its parameter, its
//! Keras layer class, and its reference arithmetic `f(x)` and `f'(x)` (what the
//! interpreter runs and gradient checks differentiate). The native code for each is
//! in `codegen/activation.rs`; every other stage (names, "did you mean", the summary,
//! the IR printer, the test lists) reads `Activation::ALL`.
//!
//! Adding an activation: a variant, an entry in `ALL`, and an arm in each `match`
//! below (the compiler lists the ones missing), then its lowering in
//! `codegen/activation.rs`.

use std::fmt;

use super::real::Real;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    Linear,
    Relu,
    LeakyRelu {
        alpha: f32,
    },
    Elu {
        alpha: f32,
    },
    Sigmoid,
    Tanh,
    Softmax,
    Gelu,
    Silu,
    Softplus,
    /// Keras's `selu`: `scale * x` for `x >= 0`, `scale * alpha * (exp(x) - 1)` below.
    Selu,
    /// `x / (|x| + 1)`.
    Softsign,
    /// Keras 3's `hard_sigmoid`: `relu6(x + 3) / 6`.
    HardSigmoid,
    /// `x * tanh(softplus(x))`.
    Mish,
    /// `exp(x)`.
    Exponential,
}

impl Activation {
    /// Every activation, with Keras's default parameters, in the order the language's
    /// documentation and diagnostics list them.
    pub const ALL: &'static [Activation] = &[
        Activation::Linear,
        Activation::Relu,
        Activation::LeakyRelu { alpha: 0.3 },
        Activation::Elu { alpha: 1.0 },
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Softmax,
        Activation::Gelu,
        Activation::Silu,
        Activation::Softplus,
        Activation::Selu,
        Activation::Softsign,
        Activation::HardSigmoid,
        Activation::Mish,
        Activation::Exponential,
    ];

    /// Other names Keras users write for an activation: `(alias, name)`.
    pub const ALIASES: &'static [(&'static str, &'static str)] = &[("swish", "silu")];

    /// The name a `.nn` file writes.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Linear => "linear",
            Activation::Relu => "relu",
            Activation::LeakyRelu { .. } => "leaky_relu",
            Activation::Elu { .. } => "elu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Softmax => "softmax",
            Activation::Gelu => "gelu",
            Activation::Silu => "silu",
            Activation::Softplus => "softplus",
            Activation::Selu => "selu",
            Activation::Softsign => "softsign",
            Activation::HardSigmoid => "hard_sigmoid",
            Activation::Mish => "mish",
            Activation::Exponential => "exponential",
        }
    }

    /// The activation a name (or an alias) stands for, with its default parameter.
    pub fn named(name: &str) -> Option<Activation> {
        let name = Self::ALIASES
            .iter()
            .find(|(alias, _)| *alias == name)
            .map_or(name, |(_, canonical)| canonical);
        Self::ALL.iter().copied().find(|a| a.name() == name)
    }

    /// The activation a name stands for as the `activation` of another layer
    /// (`dense(8, activation = leaky_relu)`), with Keras's defaults for that use: its
    /// `leaky_relu` function slopes by 0.2, while its `LeakyReLU` layer (nnc's
    /// `leaky_relu` layer, which `named` gives) slopes by 0.3.
    pub fn named_as_argument(name: &str) -> Option<Activation> {
        Self::named(name).map(|a| match a {
            Activation::LeakyRelu { .. } => Activation::LeakyRelu { alpha: 0.2 },
            other => other,
        })
    }

    /// The `alpha` this activation takes as an argument, if any (`leaky_relu(alpha = 0.2)`).
    pub fn alpha(self) -> Option<f32> {
        match self {
            Activation::LeakyRelu { alpha } | Activation::Elu { alpha } => Some(alpha),
            _ => None,
        }
    }

    /// The same activation with another `alpha` (unchanged when it takes none).
    pub fn with_alpha(self, value: f32) -> Activation {
        match self {
            Activation::LeakyRelu { .. } => Activation::LeakyRelu { alpha: value },
            Activation::Elu { .. } => Activation::Elu { alpha: value },
            other => other,
        }
    }

    /// Whether `f'` jumps somewhere (a kink), so that inputs a rounding apart can get
    /// gradients far apart: the fuzzers compare the two executors only away from it.
    pub fn derivative_jumps(self) -> bool {
        match self {
            Activation::Relu
            | Activation::LeakyRelu { .. }
            | Activation::Elu { .. }
            | Activation::Selu
            | Activation::HardSigmoid => true,
            Activation::Linear
            | Activation::Sigmoid
            | Activation::Tanh
            | Activation::Softmax
            | Activation::Gelu
            | Activation::Silu
            | Activation::Softplus
            | Activation::Softsign
            | Activation::Mish
            | Activation::Exponential => false,
        }
    }

    /// The Keras class of the layer that applies it alone, for the summary.
    pub fn keras_layer(self) -> &'static str {
        match self {
            Activation::Relu => "ReLU",
            Activation::LeakyRelu { .. } => "LeakyReLU",
            Activation::Elu { .. } => "ELU",
            Activation::Softmax => "Softmax",
            _ => "Activation",
        }
    }

    /// `f(x)`, elementwise. `Softmax` is not elementwise: the graph builder gives it
    /// ops of its own, and here it is the identity so that this stays total.
    pub fn apply<T: Real>(self, x: T) -> T {
        let one = T::one();
        match self {
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
                    T::from_f32(alpha) * (x.exp() - one)
                }
            }
            Activation::Sigmoid => sigmoid(x),
            Activation::Tanh => x.tanh(),
            // Keras's default gelu (approximate=False).
            Activation::Gelu => {
                x * T::from_f64(0.5) * (one + (x / T::from_f64(std::f64::consts::SQRT_2)).erf())
            }
            Activation::Silu => x * sigmoid(x),
            Activation::Softplus => softplus(x),
            // `exp(x) - 1`, not `expm1`: TensorFlow's kernel, whose weights users compare.
            Activation::Selu => {
                if x < T::zero() {
                    T::from_f32(SELU_SCALE_ALPHA) * (x.exp() - one)
                } else {
                    T::from_f32(SELU_SCALE) * x
                }
            }
            Activation::Softsign => x / (x.abs() + one),
            // TensorFlow multiplies by float32(1/6) rather than divide by 6.
            Activation::HardSigmoid => relu6(x + T::from_f64(3.0)) * T::from_f32(1.0 / 6.0),
            Activation::Mish => x * softplus(x).tanh(),
            Activation::Exponential => x.exp(),
        }
    }

    /// `f'(x)`, given `x` and `y = f(x)` (a rule uses whichever is cheaper). At a
    /// kink the derivative is the one TensorFlow's gradient takes.
    pub fn derivative<T: Real>(self, x: T, y: T) -> T {
        let one = T::one();
        match self {
            Activation::Linear | Activation::Softmax => one,
            Activation::Relu => {
                if x > T::zero() {
                    one
                } else {
                    T::zero()
                }
            }
            Activation::LeakyRelu { alpha } => {
                if x > T::zero() {
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
                let cdf =
                    T::from_f64(0.5) * (one + (x / T::from_f64(std::f64::consts::SQRT_2)).erf());
                let pdf = (-(x * x) * T::from_f64(0.5)).exp()
                    / T::from_f64((2.0 * std::f64::consts::PI).sqrt());
                cdf + x * pdf
            }
            Activation::Silu => {
                let s = sigmoid(x);
                s * (one + x * (one - s))
            }
            Activation::Softplus => sigmoid(x),
            // From the output, as TensorFlow's gradient: `f'(0)` is `scale`.
            Activation::Selu => {
                if y < T::zero() {
                    y + T::from_f32(SELU_SCALE_ALPHA)
                } else {
                    T::from_f32(SELU_SCALE)
                }
            }
            Activation::Softsign => {
                let d = x.abs() + one;
                one / (d * d)
            }
            // Zero at both kinks (x = -3 and 3), as TensorFlow's gradient.
            Activation::HardSigmoid => {
                let r = relu6(x + T::from_f64(3.0));
                if r > T::zero() && r < T::from_f64(6.0) {
                    T::from_f32(1.0 / 6.0)
                } else {
                    T::zero()
                }
            }
            Activation::Mish => {
                let t = softplus(x).tanh();
                t + x * (one - t * t) * sigmoid(x)
            }
            Activation::Exponential => y,
        }
    }
}

/// The name, with the parameter when it has one: `relu`, `leaky_relu{alpha=0.3}`.
impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.alpha() {
            Some(alpha) => write!(f, "{}{{alpha={alpha}}}", self.name()),
            None => f.write_str(self.name()),
        }
    }
}

/// selu's `scale` and `scale * alpha` (Klambauer et al.'s constants), rounded to
/// float32 as TensorFlow's kernel holds them.
pub const SELU_SCALE: f32 = 1.050_701;
pub const SELU_SCALE_ALPHA: f32 = 1.758_099_3;

/// The logistic function, without overflow for large `|x|`.
pub fn sigmoid<T: Real>(x: T) -> T {
    if x >= T::zero() {
        T::one() / (T::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::one() + e)
    }
}

/// `min(max(x, 0), 6)`.
fn relu6<T: Real>(x: T) -> T {
    x.max(T::zero()).min(T::from_f64(6.0))
}

/// `log(1 + exp(x))` without overflow.
pub fn softplus<T: Real>(x: T) -> T {
    x.max(T::zero()) + (-x.abs()).exp().ln_1p()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_and_alias_finds_its_activation() {
        for &a in Activation::ALL {
            assert_eq!(Activation::named(a.name()), Some(a));
        }
        for &(alias, name) in Activation::ALIASES {
            assert_eq!(Activation::named(alias), Activation::named(name));
            assert!(Activation::named(name).is_some(), "{alias} -> {name}");
        }
        assert_eq!(Activation::named("rleu"), None);
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = Activation::ALL.iter().map(|a| a.name()).collect();
        names.extend(Activation::ALIASES.iter().map(|(alias, _)| *alias));
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count);
    }
}
