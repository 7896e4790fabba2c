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
//!   which update their parameter and optimizer-slot inputs in place.

use crate::sema::model::{Activation, Optimizer};

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
