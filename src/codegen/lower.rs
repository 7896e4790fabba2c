//! IR -> CLIF: one straight sequence of loops, one per graph node. `Lower::node` is
//! the one dispatch over `Op`; each family of ops is lowered in its own file
//! (`elementwise`, `matmul`, `softmax`, `loss`, `optimizer`, `conv`, `norm`,
//! `gather`), with
//! the helpers they share here.

use std::ops::Range;

use cranelift_codegen::ir::{
    types, FuncRef, Function, InstBuilder, MemFlagsData, StackSlot, Type, Value,
};

use super::abi::{Helper, Imports};
use super::helpers::PROFILE_END;
use super::kernels::Emitter;
use crate::ir::error::{CompileError, NodeAt};
use crate::ir::graph::{Graph, Node, Op, Role, TensorId};
use crate::ir::layout::Layout;
use crate::ops::Activation;

/// The body of a part's function: emits it, given the imports and the parameters
/// `(arena, x, y, step, part)`.
pub type PartBody<'b> = dyn FnMut(&mut Emitter, Imports, &[Value]) -> R + 'b;

/// Defines a part's function (in `jit.rs`, which owns the module) and returns a
/// reference to it from the function given.
pub type DefinePart<'d> = dyn FnMut(&mut Function, &mut PartBody) -> Result<FuncRef, String> + 'd;

pub struct Lower<'e, 'a, 'g> {
    pub e: &'e mut Emitter<'a>,
    pub graph: &'g Graph,
    pub layout: &'g Layout,
    pub imports: Imports,
    pub arena: Value,
    pub x: Value,
    pub y: Value,
    pub step: Value,
    /// The stack slots of the Adam step sizes already computed in this function, by
    /// `(b1, b2)` bits.
    pub alphas: Vec<([u32; 2], StackSlot)>,
    /// The function's number when each node is to be timed (`compile_profiled`).
    pub profile: Option<u64>,
    /// How the step function defines the functions of nodes split over the batch;
    /// `None` inside such a function.
    pub define_part: Option<&'e mut DefinePart<'e>>,
    /// Inside a part's function: the part's number (i64), and for each tensor the
    /// floats of one part's slice of it (0 for a tensor every part reads whole).
    pub part: Option<(Value, Vec<usize>)>,
}

pub(super) type R = Result<(), String>;

impl Lower<'_, '_, '_> {
    /// Lowers `nodes` (every node of a whole step), marking each for the profiler
    /// by its index in the graph.
    pub fn lower_nodes(&mut self, nodes: Range<usize>) -> Result<(), CompileError> {
        let graph = self.graph;
        for (i, node) in graph
            .nodes
            .iter()
            .enumerate()
            .take(nodes.end)
            .skip(nodes.start)
        {
            self.profile_mark(i as u64);
            self.node(node).map_err(|what| CompileError::Lower {
                node: Some(NodeAt {
                    index: i,
                    op: format!("{:?}", node.op),
                }),
                what,
            })?;
        }
        self.profile_mark(PROFILE_END);
        Ok(())
    }

    /// In a profiled function, a call telling the profiler that `node` starts.
    fn profile_mark(&mut self, node: u64) {
        if let Some(function) = self.profile {
            let f = self.e.iconst(function as i64);
            let n = self.e.iconst(node as i64);
            self.imports
                .call(&mut self.e.b, Helper::ProfileMark, &[f, n]);
        }
    }

    /// Checks the node's inputs and sends it to the lowering of its family, or
    /// splits it over the batch.
    fn node(&mut self, node: &Node) -> R {
        let ins = &node.inputs;
        let out = node.output;
        self.check_inputs(node, node.op.arity())?;
        if self.define_part.is_some() {
            if let Some((parts, sliced)) = self.batch_split(node) {
                return self.split(node, parts, &sliced);
            }
        }
        match node.op {
            Op::MatMul { trans_a, trans_b } => self.matmul(ins[0], ins[1], out, trans_a, trans_b),
            Op::AddBias => self.add_bias(ins[0], ins[1], out),
            Op::SumRows => self.sum_rows(ins[0], out),
            Op::Add => self.add(ins[0], ins[1], out),
            Op::Activate(act) => self.activate(act, ins[0], out),
            Op::ActivateGrad(act) => self.activate_grad(act, ins, out),
            Op::Softmax => self.softmax(ins[0], out),
            Op::SoftmaxGrad => self.softmax_grad(ins[0], ins[1], out),
            Op::Dropout { rate, seed } | Op::DropoutGrad { rate, seed } => {
                self.dropout(ins[0], out, rate, seed)
            }
            Op::Reshape => self.reshape(ins[0], out),
            Op::Loss(kind) => self.loss(kind, ins[0], ins[1], out, false),
            Op::LossGrad(kind) => self.loss(kind, ins[0], ins[1], out, true),
            Op::Update(opt) => self.update(ins, opt),
            Op::Im2col(win) => self.im2col(&win, ins[0], out, false),
            Op::Col2im(win) => self.im2col(&win, out, ins[0], true),
            Op::MaxPool2dArgmax(win) => self.argmax(&win, ins[0], out),
            Op::MaxPool2d(win) => self.max_pool(&win, ins[0], ins[1], out),
            Op::MaxPool2dGrad(win) => self.max_pool_grad(&win, ins[0], ins[1], out),
            Op::AvgPool2d(win) => self.avg_pool(&win, ins[0], out, false),
            Op::AvgPool2dGrad(win) => self.avg_pool(&win, out, ins[0], true),
            Op::BatchMean => self.batch_stat(ins[0], None, out),
            Op::BatchVariance => self.batch_stat(ins[0], Some(ins[1]), out),
            Op::BatchNorm { epsilon, .. } => self.batch_norm(ins, out, epsilon),
            Op::BatchNormGrad { epsilon } => self.batch_norm_grad(ins, out, epsilon),
            Op::BatchNormTrainGrad { epsilon } => self.batch_norm_train_grad(ins, out, epsilon),
            Op::BatchNormGammaGrad { epsilon } => self.gamma_grad(ins, out, epsilon),
            Op::MovingAverage { momentum } => self.moving_average(ins[0], ins[1], momentum),
            Op::LearningRate(ref schedule) => self.learning_rate(schedule, ins[0]),
            Op::ClipNorm { clipnorm } => self.clip_norm(ins[0], out, clipnorm),
            Op::ClipValue { limit } => self.clip_value(ins[0], out, limit),
            Op::GlobalClipScale { clipnorm, .. } => self.global_clip_scale(ins, out, clipnorm),
            Op::Scale => self.scale(ins[0], ins[1], out),
            Op::Affine { scale, shift } => self.affine(ins[0], out, scale, shift),
            Op::ClassWeights => self.class_weights(ins[0], ins[1], out),
            Op::WeightedLoss(kind) => self.weighted_loss(kind, ins, out),
            Op::ScaleRows => self.scale_rows(ins[0], ins[1], out),
            Op::Merge(m) => self.merge(m, ins, out),
            Op::Penalty { l1, l2 } => self.penalty(ins[0], out, l1, l2),
            Op::PenaltyGrad { l1, l2 } => self.penalty_grad(ins[0], out, l1, l2),
            Op::LayerNorm { epsilon, scale, .. } => self.layer_norm(ins, out, epsilon, scale),
            Op::LayerNormGrad { epsilon, scale } => self.layer_norm_grad(ins, out, epsilon, scale),
            Op::LayerNormGammaGrad { epsilon } => self.layer_norm_gamma_grad(ins, out, epsilon),
            Op::Gather => self.gather(ins[0], ins[1], out),
            Op::GatherGrad { .. } => self.gather_grad(ins[0], ins[1], out),
        }
    }

    /// How `node` splits over the batch: into how many parts, and which of its
    /// tensors each part takes a slice of (the others it reads whole). Only ops that
    /// compute each sample from that sample alone split (elementwise ops, the bias,
    /// image windows), and only large ones: a part costs a call, and threads that
    /// share a small node wait for each other longer than they save.
    fn batch_split(&self, node: &Node) -> Option<(usize, Vec<TensorId>)> {
        let all = || node.inputs.iter().copied().chain([node.output]).collect();
        let sliced: Vec<TensorId> = match node.op {
            Op::Add
            | Op::ActivateGrad(_)
            | Op::Im2col(_)
            | Op::Col2im(_)
            | Op::MaxPool2dArgmax(_)
            | Op::MaxPool2d(_)
            | Op::MaxPool2dGrad(_)
            | Op::AvgPool2d(_)
            | Op::AvgPool2dGrad(_) => all(),
            Op::Activate(act) if act != Activation::Softmax => all(),
            Op::AddBias => vec![node.inputs[0], node.output],
            // Every other op (and any new one) stays whole: it may mix samples.
            _ => return None,
        };
        let batch = self.graph.batch;
        let parts = (2..=MAX_PARTS).rev().find(|&p| batch.is_multiple_of(p))?;
        let batch_major = |&t: &TensorId| {
            self.shape(t)
                .first()
                .is_some_and(|d| d.is_multiple_of(batch))
        };
        (self.len(node.output) >= SPLIT_MIN_LEN && sliced.iter().all(batch_major))
            .then_some((parts, sliced))
    }

    /// Emits `node` as a function over one part of the batch (the same node on a
    /// graph whose batch is `parts` times smaller, its tensors' slices at the part's
    /// offset) and a call running its parts on the step's threads. Each element is
    /// computed by the same code as unsplit, whatever thread runs its part.
    fn split(&mut self, node: &Node, parts: usize, sliced: &[TensorId]) -> R {
        let mut sub = self.graph.clone();
        sub.batch /= parts;
        let mut slice_len = vec![0; sub.tensors.len()];
        for &t in sliced {
            let tensor = &mut sub.tensors[t];
            tensor.shape[0] /= parts;
            slice_len[t] = tensor.len();
        }
        let layout = self.layout;
        let mut body = |e: &mut Emitter, imports: Imports, p: &[Value]| {
            Lower {
                e,
                graph: &sub,
                layout,
                imports,
                arena: p[0],
                x: p[1],
                y: p[2],
                step: p[3],
                alphas: vec![],
                profile: None,
                define_part: None,
                part: Some((p[4], slice_len.clone())),
            }
            .node(node)
        };
        let define = self.define_part.as_mut().ok_or("no part functions here")?;
        let f = define(&mut *self.e.b.func, &mut body)?;
        let address = self.e.b.ins().func_addr(types::I64, f);
        let n = self.e.iconst(parts as i64);
        let args = [address, self.arena, self.x, self.y, self.step, n];
        self.imports.call(&mut self.e.b, Helper::Parts, &args);
        Ok(())
    }

    pub(super) fn len(&self, id: TensorId) -> usize {
        self.graph.tensors[id].len()
    }

    pub(super) fn last_dim(&self, id: TensorId) -> usize {
        self.graph.tensors[id].shape.last().copied().unwrap_or(1)
    }

    pub(super) fn shape(&self, id: TensorId) -> &[usize] {
        &self.graph.tensors[id].shape
    }

    /// The base pointer of a tensor (in a part's function, of the part's slice).
    pub(super) fn ptr(&mut self, id: TensorId) -> Result<Value, String> {
        let base = self.whole_ptr(id)?;
        match &self.part {
            Some((part, slice_len)) if slice_len.get(id).is_some_and(|&l| l > 0) => {
                let bytes = self.e.b.ins().imul_imm_s(*part, (slice_len[id] * 4) as i64);
                Ok(self.e.b.ins().iadd(base, bytes))
            }
            _ => Ok(base),
        }
    }

    fn whole_ptr(&mut self, id: TensorId) -> Result<Value, String> {
        let t = self
            .graph
            .tensors
            .get(id)
            .ok_or_else(|| format!("tensor {id} does not exist"))?;
        match t.role {
            Role::Input => Ok(self.x),
            Role::Target => Ok(self.y),
            Role::Param { .. } | Role::OptimizerSlot | Role::Temp => {
                let off = self
                    .layout
                    .offsets
                    .get(id)
                    .copied()
                    .flatten()
                    .ok_or_else(|| format!("tensor `{}` has no arena offset", t.name))?;
                let a = self.arena;
                Ok(self.e.offset(a, off))
            }
        }
    }

    fn check_inputs(&self, node: &Node, n: usize) -> R {
        if node.inputs.len() != n {
            return Err(format!("expects {n} inputs, got {}", node.inputs.len()));
        }
        let count = self.graph.tensors.len();
        if let Some(&bad) = node.inputs.iter().find(|&&t| t >= count) {
            return Err(format!("input tensor {bad} does not exist"));
        }
        if node.output >= count {
            return Err(format!("output tensor {} does not exist", node.output));
        }
        Ok(())
    }

    pub(super) fn same_len(&self, a: TensorId, b: TensorId) -> R {
        if self.len(a) != self.len(b) {
            return Err(format!(
                "`{}` has {} elements but `{}` has {}",
                self.graph.tensors[a].name,
                self.len(a),
                self.graph.tensors[b].name,
                self.len(b)
            ));
        }
        Ok(())
    }

    /// Emits `body(row_byte_offset)` for every row of `rows` rows of `cols` floats.
    pub(super) fn rows(&mut self, rows: usize, cols: usize, body: impl FnMut(&mut Emitter, Value)) {
        self.e
            .for_loop(0, (rows * cols * 4) as i64, (cols * 4) as i64, body);
    }

    /// Writes zeros over tensor `t`.
    pub(super) fn zero(&mut self, t: TensorId) -> R {
        let p = self.ptr(t)?;
        self.e.map(self.len(t), |e, ty, i| {
            let z = e.fc(ty, 0.0);
            e.st(z, p, i);
        });
        Ok(())
    }
}

/// `init ⊕ term(i₀) ⊕ term(i₁) ⊕ ...` over `range` in order, with `⊕` = `combine`
/// (`fadd` for a sum): the one row reduction of the softmax and loss lowerings, so
/// that every sum runs in the interpreter's order. `term` receives the index (i64).
pub(super) fn fold<'a>(
    e: &mut Emitter<'a>,
    range: Range<usize>,
    init: Value,
    combine: impl Fn(&mut Emitter<'a>, Value, Value) -> Value,
    mut term: impl FnMut(&mut Emitter<'a>, Value) -> Value,
) -> Value {
    let ty = e.b.func.dfg.value_type(init);
    let acc = e.b.declare_var(ty);
    e.b.def_var(acc, init);
    e.for_loop(range.start as i64, range.end as i64, 1, |e, i| {
        let t = term(e, i);
        let a = e.b.use_var(acc);
        let a = combine(e, a, t);
        e.b.def_var(acc, a);
    });
    e.b.use_var(acc)
}

/// A contiguous row of `n` floats as (first column, type) chunks: `f32x4` vectors,
/// then scalars for the rest.
pub(super) fn row_chunks(n: usize) -> Vec<(usize, Type)> {
    let n4 = n / 4 * 4;
    (0..n4)
        .step_by(4)
        .map(|j| (j, types::F32X4))
        .chain((n4..n).map(|j| (j, types::F32)))
        .collect()
}

/// Nodes whose output has fewer floats stay whole: a split costs a call per part
/// and waking the helper threads (microseconds), which only a node streaming
/// hundreds of kilobytes amortizes.
const SPLIT_MIN_LEN: usize = 1 << 16;
/// A split node has at most this many parts (the largest divisor of the batch up
/// to it), so that 2 or 4 threads share the parts evenly.
const MAX_PARTS: usize = 8;

/// Scalar accumulators (sums of `sum_rows`, an inline product's chains) one loop
/// keeps live at once: enough chains to hide the FMA latency, few enough to stay in
/// the 16 vector registers with room for the operands.
pub(super) const INLINE_ACCUMULATORS: usize = 8;

pub(super) fn mem_flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}
