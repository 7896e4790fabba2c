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
//!   `MovingAverage` nodes update a moving statistic, and a `LearningRate` node the
//!   learning rate).

pub use super::loss::LossKind;
pub use super::op::{Op, Window};
use crate::ops::random::{mix64, GOLDEN_GAMMA};

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

/// Which pass of the train step computes a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    Forward,
    Backward,
}

/// What part of the user's model a tensor was built for, so that a problem found in
/// it at run time (a NaN) can be reported at the right line of the `.nn` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The input batch and targets.
    Data,
    /// The layer `Model::layers[index]` (its weights, optimizer slots, outputs, and
    /// in the backward pass the gradients its rules produce).
    Layer { index: usize, pass: Pass },
    /// The loss and, backward, its gradient.
    Loss { pass: Pass },
}

impl Origin {
    /// The same origin in the backward pass (autodiff's tensors for a forward node).
    pub fn backward(self) -> Origin {
        match self {
            Origin::Data => Origin::Data,
            Origin::Layer { index, .. } => Origin::Layer {
                index,
                pass: Pass::Backward,
            },
            Origin::Loss { .. } => Origin::Loss {
                pass: Pass::Backward,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// A readable name for IR dumps, e.g. `dense.kernel`, `dense.out`, `d(dense.out)`.
    pub name: String,
    /// Row-major; `[]` is a scalar.
    pub shape: Vec<usize>,
    pub role: Role,
    pub origin: Origin,
}

impl Tensor {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
    /// The persistent scalar every `Update` reads its learning rate from; `None` when
    /// the model has no optimizer. The runtime sets it (`ir::optim::set_learning_rate`),
    /// or a `LearningRate` node computes it from the step when it is a schedule.
    pub learning_rate: Option<TensorId>,
    /// The persistent weight of each class when the train block has `class_weight`
    /// (set by `init::initialize`, or by the runtime for `balanced`).
    pub class_weights: Option<TensorId>,
    /// The origin `add_tensor` gives new tensors: builders set it as they go.
    pub origin: Origin,
}

impl Graph {
    /// An empty graph for batches of `batch` samples. `input` and `output` name tensor
    /// 0 until the builder sets them.
    pub fn new(batch: usize) -> Graph {
        Graph {
            batch,
            tensors: vec![],
            nodes: vec![],
            input: 0,
            target: None,
            output: 0,
            loss: None,
            learning_rate: None,
            class_weights: None,
            origin: Origin::Data,
        }
    }

    /// Adds a tensor with no producer yet.
    pub fn add_tensor(&mut self, name: String, shape: Vec<usize>, role: Role) -> TensorId {
        self.tensors.push(Tensor {
            name,
            shape,
            role,
            origin: self.origin,
        });
        self.tensors.len() - 1
    }

    /// Adds a node writing a new temporary whose shape follows from the op and inputs.
    /// Not for `Reshape` (see `push_reshape`) or `Update` (which writes in place).
    pub fn push(
        &mut self,
        op: Op,
        inputs: Vec<TensorId>,
        name: String,
    ) -> Result<TensorId, String> {
        if let Some(&bad) = inputs.iter().find(|&&i| i >= self.tensors.len()) {
            return Err(format!("{op:?} reads tensor {bad}, which does not exist"));
        }
        let shapes: Vec<&[usize]> = inputs.iter().map(|&i| &self.tensors[i].shape[..]).collect();
        let shape = op.output_shape(&shapes)?;
        let output = self.add_tensor(name, shape, Role::Temp);
        self.nodes.push(Node { op, inputs, output });
        Ok(output)
    }

    /// The index of the first node of the update tail: a train step ends with its
    /// `Update` and `MovingAverage` nodes, which read only persistent tensors and
    /// values computed before them. Running `nodes[..k]` and then `nodes[k..]` is one
    /// step, with room in between to change those values (data-parallel training
    /// sums the gradients of every process there). `None` when the graph has no such
    /// tail or another node follows one of them.
    pub fn update_start(&self) -> Option<usize> {
        let is_update = |n: &Node| matches!(n.op, Op::Update(_) | Op::MovingAverage { .. });
        let k = self.nodes.iter().position(is_update)?;
        self.nodes[k..].iter().all(is_update).then_some(k)
    }

    /// Adds a `Reshape` (copy) of `x` to `shape`, which holds as many elements.
    pub fn push_reshape(&mut self, x: TensorId, shape: Vec<usize>, name: String) -> TensorId {
        let output = self.add_tensor(name, shape, Role::Temp);
        self.nodes.push(Node {
            op: Op::Reshape,
            inputs: vec![x],
            output,
        });
        output
    }
}

/// Whether dropout keeps element `index` of the tensor at `step`: a counter-based
/// hash, so both executors (and any thread split) draw the same mask without state.
pub fn dropout_keep(seed: u64, step: u64, index: u64, rate: f32) -> bool {
    let z =
        mix64(seed ^ step.wrapping_mul(GOLDEN_GAMMA) ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03));
    // 24 high bits -> a uniform f32 in [0, 1), exactly representable.
    let u = (z >> 40) as f32 * (1.0 / (1u64 << 24) as f32);
    u >= rate
}
