//! IR -> CLIF: one straight sequence of loops, one per graph node. `Lower::node` is
//! the one dispatch over `Op`; each family of ops is lowered in its own file
//! (`elementwise`, `matmul`, `softmax`, `loss`, `optimizer`, `conv`, `norm`), with
//! the helpers they share here.

use std::ops::Range;

use cranelift_codegen::ir::{types, MemFlagsData, StackSlot, Type, Value};

use super::abi::{Helper, Imports};
use super::helpers::PROFILE_END;
use super::kernels::Emitter;
use crate::ir::graph::{Graph, Node, Op, Role, TensorId};
use crate::ir::layout::Layout;

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
    /// `(lr, b1, b2)` bits.
    pub alphas: Vec<([u32; 3], StackSlot)>,
    /// The function's number when each node is to be timed (`compile_profiled`).
    pub profile: Option<u64>,
}

pub(super) type R = Result<(), String>;

impl Lower<'_, '_, '_> {
    /// Lowers `nodes` (every node of a whole step), marking each for the profiler
    /// by its index in the graph.
    pub fn lower_nodes(&mut self, nodes: Range<usize>) -> R {
        let graph = self.graph;
        for (i, node) in graph
            .nodes
            .iter()
            .enumerate()
            .take(nodes.end)
            .skip(nodes.start)
        {
            self.profile_mark(i as u64);
            self.node(node)
                .map_err(|m| format!("node {i} ({:?}): {m}", node.op))?;
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

    /// Checks the node's inputs and sends it to the lowering of its family.
    fn node(&mut self, node: &Node) -> R {
        let ins = &node.inputs;
        let out = node.output;
        self.check_inputs(node, node.op.arity())?;
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
        }
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

    /// The base pointer of a tensor.
    pub(super) fn ptr(&mut self, id: TensorId) -> Result<Value, String> {
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

/// Scalar accumulators (sums of `sum_rows`, an inline product's chains) one loop
/// keeps live at once: enough chains to hide the FMA latency, few enough to stay in
/// the 16 vector registers with room for the operands.
pub(super) const INLINE_ACCUMULATORS: usize = 8;

pub(super) fn mem_flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}
