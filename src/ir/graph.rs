//! The tensor IR of one train step (or one predict call).
//!
//! A `Graph` is a straight-line list of `Node`s over tensors with static shapes; the
//! batch size is part of every shape and fixed when the graph is built. Both
//! executors (the reference interpreter in `interp` and the Cranelift code in
//! `codegen`) run the same graph over the same arena layout, so their results can be
//! compared byte for byte.
//!
//! Invariants every builder keeps:
//! - Nodes are in execution order; a node reads only tensors written by earlier nodes,
//!   the input, the target, or persistent tensors.
//! - Persistent tensors (weights, optimizer slots) are created before any other tensor
//!   and in the same order for every batch size, so graphs of one model built for
//!   different batch sizes (the full batch, the smaller last batch, predict) share the
//!   persistent part of the arena at the same offsets.
//! - Every temporary tensor is written by exactly one node, except `Update` nodes,
//!   which update their parameter and optimizer-slot inputs in place (as
//!   `MovingAverage` nodes update a moving statistic).

use crate::sema::model::{Activation, Optimizer, Padding};

pub type TensorId = usize;

#[derive(Debug, Clone, PartialEq)]
pub enum Role {
    /// The batch of samples, read through the `x` pointer (never in the arena).
    Input,
    /// The batch of targets, read through the `y` pointer (never in the arena).
    Target,
    /// A layer weight, saved as `{layer}.{name}` in checkpoints.
    Param {
        layer: String,
        name: &'static str,
        trainable: bool,
    },
    /// Optimizer state (momentum, Adam moments): persistent, never saved.
    OptimizerSlot,
    /// Per-step values: activations, gradients, the loss.
    Temp,
}

impl Role {
    pub fn is_persistent(&self) -> bool {
        matches!(self, Role::Param { .. } | Role::OptimizerSlot)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// A readable name for IR dumps, e.g. `dense.kernel`, `dense.out`, `d(dense.out)`.
    pub name: String,
    /// Row-major; `[]` is a scalar.
    pub shape: Vec<usize>,
    pub role: Role,
}

impl Tensor {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How a loss reads its prediction. The `*Logits` forms are fused with the model's
/// final sigmoid/softmax in the numerically stable form (as Keras does when a
/// sigmoid/softmax output feeds a cross-entropy); the others clip probabilities to
/// `[1e-7, 1 - 1e-7]` as Keras does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LossKind {
    /// Mean of squared errors over all elements.
    Mse,
    /// Mean of absolute errors over all elements.
    Mae,
    /// Huber with Keras's `delta = 1.0`, mean over all elements.
    Huber { delta: f32 },
    /// Binary cross-entropy from logits (the model ends in `sigmoid`).
    SigmoidBinaryCrossentropy,
    /// Binary cross-entropy from probabilities.
    BinaryCrossentropy,
    /// Categorical cross-entropy from logits, one-hot targets `[batch, classes]`.
    SoftmaxCategoricalCrossentropy,
    /// Categorical cross-entropy from probabilities, one-hot targets.
    CategoricalCrossentropy,
    /// Sparse categorical cross-entropy from logits, targets `[batch]` holding class
    /// indices as f32.
    SoftmaxSparseCategoricalCrossentropy,
    /// Sparse categorical cross-entropy from probabilities.
    SparseCategoricalCrossentropy,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `out[m, n] = A[m, k] * B[k, n]`, where `A` is `inputs[0]` (stored `[k, m]` when
    /// `trans_a`) and `B` is `inputs[1]` (stored `[n, k]` when `trans_b`).
    MatMul { trans_a: bool, trans_b: bool },
    /// `out[m, n] = x[m, n] + bias[n]`; inputs `(x, bias)`.
    AddBias,
    /// `out[n] = sum_m x[m, n]`; inputs `(x)`.
    SumRows,
    /// `out = a + b`, same shapes; inputs `(a, b)`. Sums gradient contributions.
    Add,
    /// Elementwise activation (never `Softmax`); inputs `(x)`.
    Activate(Activation),
    /// `dx = dy * f'(x)`; inputs `(x, y, dy)` where `y = f(x)` (rules use whichever
    /// is cheaper).
    ActivateGrad(Activation),
    /// Softmax over the last axis; inputs `(x)`.
    Softmax,
    /// `dx = y * (dy - sum_last_axis(dy * y))`; inputs `(y, dy)`.
    SoftmaxGrad,
    /// Inverted dropout: `out = x * keep / (1 - rate)` where `keep` is decided per
    /// element by `dropout_keep(seed, step, index, rate)`; inputs `(x)`.
    Dropout { rate: f32, seed: u64 },
    /// `dx = dy * keep / (1 - rate)` with the same `keep` as the forward node;
    /// inputs `(dy)`.
    DropoutGrad { rate: f32, seed: u64 },
    /// The same elements under a new shape (a copy); inputs `(x)`.
    Reshape,
    /// The mean loss of the batch as a scalar `[]`; inputs `(prediction, target)`.
    Loss(LossKind),
    /// The gradient of the mean batch loss with respect to `prediction` (the logits for
    /// the fused kinds); inputs `(prediction, target)`.
    LossGrad(LossKind),
    /// Updates `inputs[0]` (a parameter) in place from `inputs[1]` (its gradient) and
    /// the optimizer slots `inputs[2..]`, with Keras 3's arithmetic. Reads the step
    /// counter (Keras's `iterations`, 0 for the first step). `output == inputs[0]`.
    /// Slots: sgd with momentum: `[velocity]`; adam/adamw: `[m, v]`; rmsprop: `[avg_sq]`.
    Update(Optimizer),
    /// Image patches as matrix rows, so a convolution is one `MatMul` with the kernel
    /// seen as `[kh * kw * c, filters]`: input `x` `[batch, h, w, c]` (the window's
    /// `input` is `[h, w]`), output `[batch * oh * ow, kh * kw * c]` where row
    /// `(n, oy, ox)` holds at column `(ky, kx, ci)` the element
    /// `x[n, oy * sh + ky - pad_top, ox * sw + kx - pad_left, ci]`, or 0 where that
    /// position lies in the padding. Inputs `(x)`.
    Im2col(Window),
    /// The adjoint of `Im2col` (its gradient): every entry of `cols`
    /// `[batch * oh * ow, kh * kw * c]` is added into the element of the
    /// `[batch, h, w, c]` output it was copied from; padding entries are dropped.
    /// Inputs `(cols)`.
    Col2im(Window),
    /// Where each max-pooling window's maximum is: output `[batch, oh, ow, c]` holding,
    /// as an f32, the position `ky * kw + kx` inside the window of the first (in
    /// row-major window order) largest element that is not padding. Padding never
    /// wins: TF pads max pooling with -inf. Inputs `(x)`.
    MaxPool2dArgmax(Window),
    /// Max pooling by gathering the element each window's argmax names:
    /// `out[n, oy, ox, c] = x[n, oy * sh + ky - pad_top, ox * sw + kx - pad_left, c]`
    /// with `(ky, kx)` from `argmax[n, oy, ox, c]`. Inputs `(x, argmax)`.
    MaxPool2d(Window),
    /// The gradient of `MaxPool2d` with respect to `x`: each `dy[n, oy, ox, c]` is added
    /// into `dx` (shape `[batch, h, w, c]`, zero elsewhere) at its window's argmax.
    /// Inputs `(argmax, dy)`.
    MaxPool2dGrad(Window),
    /// Average pooling over the elements of each window that are not padding (TF's
    /// `same` padding divides by the count of those): `[batch, h, w, c]` to
    /// `[batch, oh, ow, c]`. Inputs `(x)`.
    AvgPool2d(Window),
    /// The gradient of `AvgPool2d` with respect to `x`: each `dy[n, oy, ox, c]` divided
    /// by its window's count is added into every non-padding element of the window.
    /// Inputs `(dy)`.
    AvgPool2dGrad(Window),
    /// `mean[c] = sum(x[.., c]) / rows` over every axis but the last (`rows` is the
    /// element count over the channel count). Inputs `(x)`.
    BatchMean,
    /// The biased variance over every axis but the last:
    /// `var[c] = sum((x[.., c] - mean[c])^2) / rows`. Inputs `(x, mean)`.
    BatchVariance,
    /// Batch normalization over the last axis: `y = x * s + (beta - mean * s)` with
    /// `s = gamma / sqrt(var + epsilon)` per channel. Inputs `(x, mean, var, gamma,
    /// beta)`, the last four `[c]`. With `batch_stats`, `mean` and `var` must be
    /// `BatchMean(x)` and `BatchVariance(x, mean)` (training): the gradient rule then
    /// differentiates through them into `x` and gives them no gradient of their own.
    /// Without, they are constants (the moving statistics of inference).
    BatchNorm { epsilon: f32, batch_stats: bool },
    /// The gradient of `BatchNorm { batch_stats: false }` with respect to `x`:
    /// `dx = dy * gamma / sqrt(var + epsilon)`. Inputs `(var, gamma, dy)`.
    BatchNormGrad { epsilon: f32 },
    /// The gradient of `BatchNorm { batch_stats: true }` with respect to `x`, through
    /// the batch statistics: with `inv = 1 / sqrt(var + epsilon)`,
    /// `xhat = (x - mean) * inv` and `rows` as in `BatchMean`,
    /// `dx = gamma * inv * (dy - (dbeta + xhat * dgamma) / rows)`. Inputs
    /// `(x, mean, var, gamma, dy, dgamma, dbeta)` where `dgamma` and `dbeta` are the
    /// `BatchNormGammaGrad` and `SumRows` of the same `dy`.
    BatchNormTrainGrad { epsilon: f32 },
    /// The gradient of `BatchNorm` with respect to `gamma`:
    /// `dgamma[c] = sum(dy[.., c] * (x[.., c] - mean[c]) / sqrt(var[c] + epsilon))`.
    /// Inputs `(x, mean, var, dy)`.
    BatchNormGammaGrad { epsilon: f32 },
    /// Updates `inputs[0]` (a non-trainable parameter: a moving statistic) in place:
    /// `avg = avg * momentum + value * (1 - momentum)`, as Keras's batch normalization
    /// does in training. Inputs `(avg, value)`, same shapes; `output == inputs[0]`.
    MovingAverage { momentum: f32 },
}

/// A 2-D sliding window (a convolution kernel or a pooling window) over channels-last
/// `[batch, h, w, c]` tensors, with TF's padding rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Height and width of the input.
    pub input: [usize; 2],
    /// Height and width of the window.
    pub size: [usize; 2],
    pub strides: [usize; 2],
    /// `Valid`: windows lie inside the input, `floor((n - k) / s) + 1` of them.
    /// `Same`: `ceil(n / s)` windows over an input padded with
    /// `max((out - 1) * s + k - n, 0)` elements, half (rounded down) before.
    pub padding: Padding,
}

impl Window {
    /// Output height and width, or an error when the window does not fit.
    pub fn output(&self) -> Result<[usize; 2], String> {
        let mut out = [0; 2];
        for (a, o) in out.iter_mut().enumerate() {
            let (n, k, s) = (self.input[a], self.size[a], self.strides[a]);
            if k == 0 || s == 0 {
                return Err(format!(
                    "window {:?} with strides {:?}",
                    self.size, self.strides
                ));
            }
            *o = match self.padding {
                Padding::Valid if n >= k => (n - k) / s + 1,
                Padding::Same if n > 0 => n.div_ceil(s),
                _ => {
                    return Err(format!(
                        "window {:?} does not fit input {:?}",
                        self.size, self.input
                    ))
                }
            };
        }
        Ok(out)
    }

    /// The input position `[row, column]` that tap `k = [ky, kx]` of the window at
    /// output position `out = [oy, ox]` reads, or `None` in the padding.
    pub fn tap(&self, out: [usize; 2], k: [usize; 2]) -> Option<[usize; 2]> {
        let pad = self.pad_before();
        let mut at = [0; 2];
        for a in 0..2 {
            at[a] = (out[a] * self.strides[a] + k[a])
                .checked_sub(pad[a])
                .filter(|&i| i < self.input[a])?;
        }
        Some(at)
    }

    /// Padding rows and columns before the input (top, left); 0 for `Valid`.
    pub fn pad_before(&self) -> [usize; 2] {
        let mut pad = [0; 2];
        if self.padding == Padding::Same {
            for (a, p) in pad.iter_mut().enumerate() {
                let (n, k, s) = (self.input[a], self.size[a], self.strides[a]);
                let out = n.div_ceil(s.max(1));
                let total = (out.saturating_sub(1) * s + k).saturating_sub(n);
                *p = total / 2;
            }
        }
        pad
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<TensorId>,
    pub output: TensorId,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    /// The batch size every shape was built for.
    pub batch: usize,
    pub tensors: Vec<Tensor>,
    pub nodes: Vec<Node>,
    /// `[batch, ..input_shape]`.
    pub input: TensorId,
    /// The targets; `None` in predict graphs.
    pub target: Option<TensorId>,
    /// The model's output after its final activation, `[batch, ..output_shape]`.
    pub output: TensorId,
    /// The scalar mean loss; `None` in predict graphs.
    pub loss: Option<TensorId>,
}

/// Whether dropout keeps element `index` of the tensor at `step`: a counter-based
/// hash, so both executors (and any thread split) draw the same mask without state.
pub fn dropout_keep(seed: u64, step: u64, index: u64, rate: f32) -> bool {
    let mut z =
        seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03);
    // splitmix64 finalizer
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    // 24 high bits -> a uniform f32 in [0, 1), exactly representable.
    let u = (z >> 40) as f32 * (1.0 / (1u64 << 24) as f32);
    u >= rate
}
