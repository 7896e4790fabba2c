//! IR -> CLIF: one straight sequence of loops, one per graph node.

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    types, FuncRef, InstBuilder, StackSlot, StackSlotData, StackSlotKind, Type, Value,
};
use cranelift_frontend::Variable;

use super::activation::{activate, activate_grad};
use super::jit::PROFILE_END;
use super::kernels::Emitter;
use crate::ir::graph::{Graph, LossKind, Node, Op, Role, TensorId};
use crate::ir::layout::Layout;
use crate::ops::Activation;
use crate::sema::model::Optimizer;

/// Keras's `epsilon()`, the probability clip of the cross-entropies.
const CLIP_EPS: f32 = 1e-7;
/// `1 - epsilon`, rounded once from the exact value as the interpreter does.
const CLIP_HI: f32 = (1.0f64 - 1e-7) as f32;

/// The imported Rust helpers, as callable references inside the function.
pub struct Imports {
    pub sgemm: FuncRef,
    pub powf: FuncRef,
    pub logf: FuncRef,
    pub profile_mark: FuncRef,
    /// Adam's update eight weights at a time, where the machine has it.
    pub adam: Option<FuncRef>,
}

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

type R = Result<(), String>;

impl Lower<'_, '_, '_> {
    pub fn lower_all(&mut self) -> R {
        for (i, node) in self.graph.nodes.iter().enumerate() {
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
            self.e.b.ins().call(self.imports.profile_mark, &[f, n]);
        }
    }

    pub(super) fn len(&self, id: TensorId) -> usize {
        self.graph.tensors[id].len()
    }

    pub(super) fn last_dim(&self, id: TensorId) -> usize {
        self.graph.tensors[id].shape.last().copied().unwrap_or(1)
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
            _ => {
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

    pub(super) fn check_inputs(&self, node: &Node, n: usize) -> R {
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

    fn node(&mut self, node: &Node) -> R {
        let ins = &node.inputs;
        let out = node.output;
        match node.op {
            Op::MatMul { trans_a, trans_b } => {
                self.check_inputs(node, 2)?;
                self.matmul(ins[0], ins[1], out, trans_a, trans_b)
            }
            Op::AddBias => {
                self.check_inputs(node, 2)?;
                self.same_len(ins[0], out)?;
                self.add_bias(ins[0], ins[1], out)
            }
            Op::SumRows => {
                self.check_inputs(node, 1)?;
                self.sum_rows(ins[0], out)
            }
            Op::Add => {
                self.check_inputs(node, 2)?;
                self.same_len(ins[0], out)?;
                self.same_len(ins[1], out)?;
                let (a, b, o) = (self.ptr(ins[0])?, self.ptr(ins[1])?, self.ptr(out)?);
                self.e.map(self.len(out), |e, ty, i| {
                    let va = e.ld(ty, a, i);
                    let vb = e.ld(ty, b, i);
                    let s = e.fadd(va, vb);
                    e.st(s, o, i);
                });
                Ok(())
            }
            Op::Activate(act) => {
                self.check_inputs(node, 1)?;
                self.same_len(ins[0], out)?;
                if act == Activation::Softmax {
                    return Err("softmax is its own op".into());
                }
                let (x, o) = (self.ptr(ins[0])?, self.ptr(out)?);
                self.e.map(self.len(out), |e, ty, i| {
                    let v = e.ld(ty, x, i);
                    let r = activate(e, act, v);
                    e.st(r, o, i);
                });
                Ok(())
            }
            Op::ActivateGrad(act) => {
                self.check_inputs(node, 3)?;
                for &t in ins {
                    self.same_len(t, out)?;
                }
                if act == Activation::Softmax {
                    return Err("softmax has its own gradient op".into());
                }
                let (x, y, dy, o) = (
                    self.ptr(ins[0])?,
                    self.ptr(ins[1])?,
                    self.ptr(ins[2])?,
                    self.ptr(out)?,
                );
                self.e.map(self.len(out), |e, ty, i| {
                    let vx = e.ld(ty, x, i);
                    let vy = e.ld(ty, y, i);
                    let vdy = e.ld(ty, dy, i);
                    let r = activate_grad(e, act, vx, vy, vdy);
                    e.st(r, o, i);
                });
                Ok(())
            }
            Op::Softmax => {
                self.check_inputs(node, 1)?;
                self.same_len(ins[0], out)?;
                self.softmax(ins[0], out)
            }
            Op::SoftmaxGrad => {
                self.check_inputs(node, 2)?;
                self.same_len(ins[0], out)?;
                self.same_len(ins[1], out)?;
                self.softmax_grad(ins[0], ins[1], out)
            }
            Op::Dropout { rate, seed } | Op::DropoutGrad { rate, seed } => {
                self.check_inputs(node, 1)?;
                self.same_len(ins[0], out)?;
                self.dropout(ins[0], out, rate, seed)
            }
            Op::Reshape => {
                self.check_inputs(node, 1)?;
                self.same_len(ins[0], out)?;
                if self.layout.offsets[ins[0]].is_some()
                    && self.layout.offsets[ins[0]] == self.layout.offsets[out]
                {
                    // The planned layout gave both names the same memory.
                    return Ok(());
                }
                let (x, o) = (self.ptr(ins[0])?, self.ptr(out)?);
                self.e.map(self.len(out), |e, ty, i| {
                    let v = e.ld(ty, x, i);
                    e.st(v, o, i);
                });
                Ok(())
            }
            Op::Loss(kind) => {
                self.check_inputs(node, 2)?;
                self.loss(kind, ins[0], ins[1], out, false)
            }
            Op::LossGrad(kind) => {
                self.check_inputs(node, 2)?;
                self.same_len(ins[0], out)?;
                self.loss(kind, ins[0], ins[1], out, true)
            }
            Op::Update(opt) => self.update(node, opt),
            Op::Im2col(_)
            | Op::Col2im(_)
            | Op::MaxPool2dArgmax(_)
            | Op::MaxPool2d(_)
            | Op::MaxPool2dGrad(_)
            | Op::AvgPool2d(_)
            | Op::AvgPool2dGrad(_)
            | Op::BatchMean
            | Op::BatchVariance
            | Op::BatchNorm { .. }
            | Op::BatchNormGrad { .. }
            | Op::BatchNormTrainGrad { .. }
            | Op::BatchNormGammaGrad { .. }
            | Op::MovingAverage { .. } => self.image_node(node),
        }
    }

    fn matmul(&mut self, a: TensorId, b: TensorId, out: TensorId, ta: bool, tb: bool) -> R {
        let n = self.last_dim(out);
        let total = self.len(out);
        if total == 0 || n == 0 {
            return Ok(());
        }
        let m = total / n;
        let k = self.len(a) / m;
        let (a_last, b_last) = (self.last_dim(a), self.last_dim(b));
        let ok = self.len(a) == m * k
            && self.len(b) == k * n
            && a_last == if ta { m } else { k }
            && b_last == if tb { k } else { n };
        if !ok {
            return Err(format!(
                "shapes {:?} x {:?} -> {:?} do not multiply",
                self.graph.tensors[a].shape,
                self.graph.tensors[b].shape,
                self.graph.tensors[out].shape
            ));
        }
        // (row stride, column stride) of the logical [m, k] and [k, n] operands.
        let (rsa, csa) = if ta { (1, m) } else { (k, 1) };
        let (rsb, csb) = if tb { (1, k) } else { (n, 1) };
        let (pa, pb, pc) = (self.ptr(a)?, self.ptr(b)?, self.ptr(out)?);
        if m * k * n <= INLINE_MAX_MACS && n <= INLINE_MAX_COLS {
            inline_matmul(self.e, [m, k, n], (pa, rsa, csa), (pb, rsb, csb), pc);
            return Ok(());
        }
        let mut args = vec![];
        for v in [m, k, n] {
            args.push(self.e.iconst(v as i64));
        }
        args.push(pa);
        args.push(self.e.iconst(rsa as i64));
        args.push(self.e.iconst(csa as i64));
        args.push(pb);
        args.push(self.e.iconst(rsb as i64));
        args.push(self.e.iconst(csb as i64));
        args.push(pc);
        args.push(self.e.iconst(i64::from(a == self.graph.input)));
        self.e.b.ins().call(self.imports.sgemm, &args);
        Ok(())
    }

    fn add_bias(&mut self, x: TensorId, bias: TensorId, out: TensorId) -> R {
        let n = self.len(bias);
        if n == 0 || self.last_dim(x) != n {
            return Err("bias length differs from the last axis".into());
        }
        let rows = self.len(x) / n;
        let (px, pb, po) = (self.ptr(x)?, self.ptr(bias)?, self.ptr(out)?);
        self.e
            .for_loop(0, (rows * n * 4) as i64, (n * 4) as i64, |e, r| {
                let xr = e.b.ins().iadd(px, r);
                let or = e.b.ins().iadd(po, r);
                e.map(n, |e, ty, i| {
                    let v = e.ld(ty, xr, i);
                    let bv = e.ld(ty, pb, i);
                    let s = e.fadd(v, bv);
                    e.st(s, or, i);
                });
            });
        Ok(())
    }

    fn sum_rows(&mut self, x: TensorId, out: TensorId) -> R {
        let n = self.len(out);
        if n == 0 || self.last_dim(x) != n {
            return Err("output length differs from the last axis".into());
        }
        let rows = self.len(x) / n;
        let (px, po) = (self.ptr(x)?, self.ptr(out)?);
        // Start from zero and add rows in order, as the interpreter does; a group of
        // columns at a time lives in registers so that its sums advance side by side.
        for group in row_chunks(n).chunks(INLINE_ACCUMULATORS) {
            let vars: Vec<Variable> = group
                .iter()
                .map(|&(_, ty)| {
                    let var = self.e.b.declare_var(ty);
                    let z = self.e.fc(ty, 0.0);
                    self.e.b.def_var(var, z);
                    var
                })
                .collect();
            self.rows(rows, n, |e, r| {
                let xr = e.b.ins().iadd(px, r);
                for (&(j, ty), &var) in group.iter().zip(&vars) {
                    let oj = e.iconst((j * 4) as i64);
                    let v = e.ld(ty, xr, oj);
                    let acc = e.b.use_var(var);
                    let s = e.fadd(acc, v);
                    e.b.def_var(var, s);
                }
            });
            for (&(j, _), &var) in group.iter().zip(&vars) {
                let oj = self.e.iconst((j * 4) as i64);
                let acc = self.e.b.use_var(var);
                self.e.st(acc, po, oj);
            }
        }
        Ok(())
    }

    /// A scalar f32 accumulator variable initialised to `init`.
    fn var(&mut self, init: f32) -> Variable {
        let v = self.e.b.declare_var(types::F32);
        let c = self.e.b.ins().f32const(init);
        self.e.b.def_var(v, c);
        v
    }

    /// Emits `body(row_byte_offset)` for every row of `rows` rows of `cols` floats.
    pub(super) fn rows(&mut self, rows: usize, cols: usize, body: impl FnMut(&mut Emitter, Value)) {
        self.e
            .for_loop(0, (rows * cols * 4) as i64, (cols * 4) as i64, body);
    }

    /// Row-wise max, `exp(x - max)` into `o`, and returns the variable holding the
    /// row sum. Used by softmax and the fused softmax losses.
    fn exp_shifted_row(e: &mut Emitter, xr: Value, or: Value, cols: usize) -> Value {
        let m = row_max(e, xr, cols);
        let m4 = e.b.ins().splat(types::F32X4, m);
        e.map(cols, |e, ty, i| {
            let v = e.ld(ty, xr, i);
            let mv = if ty.is_vector() { m4 } else { m };
            let d = e.fsub(v, mv);
            let ex = e.exp(d);
            e.st(ex, or, i);
        });
        let sum = e.b.declare_var(types::F32);
        let z = e.b.ins().f32const(0.0);
        e.b.def_var(sum, z);
        e.for_loop(0, cols as i64, 1, |e, j| {
            let jb = e.b.ins().ishl_imm_s(j, 2);
            let v = e.ld(types::F32, or, jb);
            let s = e.b.use_var(sum);
            let s = e.fadd(s, v);
            e.b.def_var(sum, s);
        });
        e.b.use_var(sum)
    }

    /// A pointer to `softmax(z)` when the graph computes it as its output (alive
    /// through the whole function: the trainer reads it after the step) before the
    /// node writing `user`, so that a fused softmax loss's gradient need not compute
    /// it again.
    fn softmax_of(&mut self, z: TensorId, user: TensorId) -> Result<Option<Value>, String> {
        let out = self.graph.output;
        let nodes = &self.graph.nodes;
        let made = nodes
            .iter()
            .position(|n| matches!(n.op, Op::Softmax) && n.inputs == [z] && n.output == out);
        let used = nodes.iter().position(|n| n.output == user);
        match (made, used) {
            (Some(made), Some(used)) if made < used => Ok(Some(self.ptr(out)?)),
            _ => Ok(None),
        }
    }

    fn softmax(&mut self, x: TensorId, out: TensorId) -> R {
        let cols = self.last_dim(out);
        if cols == 0 {
            return Ok(());
        }
        let rows = self.len(out) / cols;
        let (px, po) = (self.ptr(x)?, self.ptr(out)?);
        self.rows(rows, cols, |e, r| {
            let xr = e.b.ins().iadd(px, r);
            let or = e.b.ins().iadd(po, r);
            let s = Self::exp_shifted_row(e, xr, or, cols);
            let s4 = e.b.ins().splat(types::F32X4, s);
            e.map(cols, |e, ty, i| {
                let v = e.ld(ty, or, i);
                let sv = if ty.is_vector() { s4 } else { s };
                let q = e.fdiv(v, sv);
                e.st(q, or, i);
            });
        });
        Ok(())
    }

    fn softmax_grad(&mut self, y: TensorId, dy: TensorId, out: TensorId) -> R {
        let cols = self.last_dim(out);
        if cols == 0 {
            return Ok(());
        }
        let rows = self.len(out) / cols;
        let (py, pdy, po) = (self.ptr(y)?, self.ptr(dy)?, self.ptr(out)?);
        self.rows(rows, cols, |e, r| {
            let yr = e.b.ins().iadd(py, r);
            let dr = e.b.ins().iadd(pdy, r);
            let or = e.b.ins().iadd(po, r);
            let dot = e.b.declare_var(types::F32);
            let z = e.b.ins().f32const(0.0);
            e.b.def_var(dot, z);
            e.for_loop(0, cols as i64, 1, |e, j| {
                let jb = e.b.ins().ishl_imm_s(j, 2);
                let vy = e.ld(types::F32, yr, jb);
                let vd = e.ld(types::F32, dr, jb);
                let p = e.fmul(vd, vy);
                let s = e.b.use_var(dot);
                let s = e.fadd(s, p);
                e.b.def_var(dot, s);
            });
            let s = e.b.use_var(dot);
            let s4 = e.b.ins().splat(types::F32X4, s);
            e.map(cols, |e, ty, i| {
                let vy = e.ld(ty, yr, i);
                let vd = e.ld(ty, dr, i);
                let sv = if ty.is_vector() { s4 } else { s };
                let d = e.fsub(vd, sv);
                let g = e.fmul(vy, d);
                e.st(g, or, i);
            });
        });
        Ok(())
    }

    fn dropout(&mut self, x: TensorId, out: TensorId, rate: f32, seed: u64) -> R {
        let (px, po) = (self.ptr(x)?, self.ptr(out)?);
        let step = self.step;
        let e = &mut self.e;
        let c1 = e.iconst(0x9E37_79B9_7F4A_7C15_u64 as i64);
        let sm = e.b.ins().imul(step, c1);
        let seed_v = e.iconst(seed as i64);
        let base = e.b.ins().bxor(seed_v, sm);
        let keep_scale = 1.0 - rate;
        e.for_loop(0, self.graph.tensors[out].len() as i64, 1, |e, i| {
            let c2 = e.iconst(0xD1B5_4A32_D192_ED03_u64 as i64);
            let im = e.b.ins().imul(i, c2);
            let z = e.b.ins().bxor(base, im);
            let z = mix(e, z, 30, 0xBF58_476D_1CE4_E5B9);
            let z = mix(e, z, 27, 0x94D0_49BB_1331_11EB);
            let s = e.b.ins().ushr_imm_u(z, 31);
            let z = e.b.ins().bxor(z, s);
            let hi = e.b.ins().ushr_imm_u(z, 40);
            // `hi` < 2^24: the signed conversion (one instruction) is exact; x86 has
            // no unsigned one and Cranelift emits a branchy sequence for it.
            let u = e.b.ins().fcvt_from_sint(types::F32, hi);
            let u = e.fmul_c(u, 1.0 / (1u64 << 24) as f32);
            let rv = e.b.ins().f32const(rate);
            let keep = e.b.ins().fcmp(FloatCC::GreaterThanOrEqual, u, rv);
            let ib = e.b.ins().ishl_imm_s(i, 2);
            let v = e.ld(types::F32, px, ib);
            let ks = e.b.ins().f32const(keep_scale);
            let scaled = e.fdiv(v, ks);
            // `keep ? scaled : 0` as a bit mask: half the elements are dropped at
            // random, so a branch (what a float `select` becomes) mispredicts often.
            let keep = e.b.ins().uextend(types::I32, keep);
            let mask = e.b.ins().ineg(keep);
            let native = cranelift_codegen::ir::MemFlagsData::new();
            let bits = e.b.ins().bitcast(types::I32, native, scaled);
            let kept = e.b.ins().band(bits, mask);
            let r = e.b.ins().bitcast(types::F32, native, kept);
            e.st(r, po, ib);
        });
        Ok(())
    }

    fn loss(&mut self, kind: LossKind, p: TensorId, t: TensorId, out: TensorId, grad: bool) -> R {
        let n = self.len(p);
        let cols = self.last_dim(p);
        if n == 0 || cols == 0 {
            return Err("empty prediction".into());
        }
        let rows = n / cols;
        let sparse = matches!(
            kind,
            LossKind::SoftmaxSparseCategoricalCrossentropy
                | LossKind::SparseCategoricalCrossentropy
        );
        if sparse {
            if self.len(t) != rows {
                return Err("sparse targets need one class index per row".into());
            }
        } else {
            self.same_len(p, t)?;
        }
        if !grad && self.len(out) != 1 {
            return Err("the loss is a scalar".into());
        }
        let (pp, pt, po) = (self.ptr(p)?, self.ptr(t)?, self.ptr(out)?);
        let logf = self.imports.logf;
        match kind {
            LossKind::Mse
            | LossKind::Mae
            | LossKind::Huber { .. }
            | LossKind::SigmoidBinaryCrossentropy
            | LossKind::BinaryCrossentropy => {
                let nf = n as f32;
                if lanes_agree(kind) {
                    self.pointwise_loss_f32x4(kind, (pp, pt, po), n, grad);
                    return Ok(());
                }
                let acc = self.var(0.0);
                let e = &mut self.e;
                e.for_loop(0, n as i64, 1, |e, i| {
                    let ib = e.b.ins().ishl_imm_s(i, 2);
                    let vp = e.ld(types::F32, pp, ib);
                    let vt = e.ld(types::F32, pt, ib);
                    let v = pointwise_loss(e, kind, vp, vt, grad, logf);
                    if grad {
                        let g = e.fdiv_c(v, nf);
                        e.st(g, po, ib);
                    } else {
                        let s = e.b.use_var(acc);
                        let s = e.fadd(s, v);
                        e.b.def_var(acc, s);
                    }
                });
                if !grad {
                    let s = self.e.b.use_var(acc);
                    let m = self.e.fdiv_c(s, nf);
                    self.e.b.ins().store(mem_flags(), m, po, 0);
                }
            }
            LossKind::SoftmaxCategoricalCrossentropy
            | LossKind::SoftmaxSparseCategoricalCrossentropy => {
                let acc = self.var(0.0);
                let rf = rows as f32;
                let softmax = if grad { self.softmax_of(p, out)? } else { None };
                let e = &mut self.e;
                e.for_loop(0, rows as i64, 1, |e, r| {
                    let rb = e.b.ins().imul_imm_s(r, (cols * 4) as i64);
                    let pr = e.b.ins().iadd(pp, rb);
                    let cls = sparse.then(|| class_index(e, pt, r, cols));
                    if grad {
                        // (softmax(z) * sum(y) - y) / batch
                        let or = e.b.ins().iadd(po, rb);
                        // The softmax row: read where the graph computed it already
                        // (the same operations, so the same values), else made here.
                        let (sm_row, s) = match softmax {
                            Some(ps) => (e.b.ins().iadd(ps, rb), None),
                            None => (or, Some(Self::exp_shifted_row(e, pr, or, cols))),
                        };
                        let tsum = target_sum(e, cls, pt, r, cols);
                        e.for_loop(0, cols as i64, 1, |e, j| {
                            let jb = e.b.ins().ishl_imm_s(j, 2);
                            let ex = e.ld(types::F32, sm_row, jb);
                            let sm = match s {
                                Some(s) => e.fdiv(ex, s),
                                None => ex,
                            };
                            let tv = target_at(e, sparse, pt, r, cols, j, cls);
                            let a = e.fmul(sm, tsum);
                            let d = e.fsub(a, tv);
                            let g = e.fdiv_c(d, rf);
                            e.st(g, or, jb);
                        });
                    } else {
                        // -sum_j y_j ((z_j - max) - log(sum_i exp(z_i - max)))
                        let m = row_max(e, pr, cols);
                        let sum = e.b.declare_var(types::F32);
                        let z0 = e.b.ins().f32const(0.0);
                        e.b.def_var(sum, z0);
                        e.for_loop(0, cols as i64, 1, |e, j| {
                            let jb = e.b.ins().ishl_imm_s(j, 2);
                            let zj = e.ld(types::F32, pr, jb);
                            let d = e.fsub(zj, m);
                            let ex = e.exp(d);
                            let a = e.b.use_var(sum);
                            let a = e.fadd(a, ex);
                            e.b.def_var(sum, a);
                        });
                        let sv = e.b.use_var(sum);
                        let ls = call(e, logf, sv);
                        let lse = e.fadd(m, ls);
                        let rv = match cls {
                            // One-hot: only the class's term, `0 - (z_c - lse)`, is not
                            // zero (none for a row without a valid class).
                            Some(c) => {
                                let valid =
                                    e.b.ins().icmp_imm_s(IntCC::SignedGreaterThanOrEqual, c, 0);
                                let first = e.iconst(0);
                                let c = e.b.ins().select(valid, c, first);
                                let cb = e.b.ins().ishl_imm_s(c, 2);
                                let zc = e.ld(types::F32, pr, cb);
                                let l = e.fsub(zc, lse);
                                let term = e.fsub(z0, l);
                                e.b.ins().select(valid, term, z0)
                            }
                            None => {
                                let row = e.b.declare_var(types::F32);
                                e.b.def_var(row, z0);
                                e.for_loop(0, cols as i64, 1, |e, j| {
                                    let jb = e.b.ins().ishl_imm_s(j, 2);
                                    let tv = target_at(e, sparse, pt, r, cols, j, cls);
                                    let zj = e.ld(types::F32, pr, jb);
                                    let l = e.fsub(zj, lse);
                                    let term = e.fmul(tv, l);
                                    let a = e.b.use_var(row);
                                    let a = e.fsub(a, term);
                                    e.b.def_var(row, a);
                                });
                                e.b.use_var(row)
                            }
                        };
                        let a = e.b.use_var(acc);
                        let a = e.fadd(a, rv);
                        e.b.def_var(acc, a);
                    }
                });
                if !grad {
                    let s = self.e.b.use_var(acc);
                    let m = self.e.fdiv_c(s, rf);
                    self.e.b.ins().store(mem_flags(), m, po, 0);
                }
            }
            LossKind::CategoricalCrossentropy | LossKind::SparseCategoricalCrossentropy => {
                let acc = self.var(0.0);
                let rf = rows as f32;
                let e = &mut self.e;
                e.for_loop(0, rows as i64, 1, |e, r| {
                    let rb = e.b.ins().imul_imm_s(r, (cols * 4) as i64);
                    let pr = e.b.ins().iadd(pp, rb);
                    let cls = sparse.then(|| class_index(e, pt, r, cols));
                    let sum = e.b.declare_var(types::F32);
                    let z0 = e.b.ins().f32const(0.0);
                    e.b.def_var(sum, z0);
                    e.for_loop(0, cols as i64, 1, |e, j| {
                        let jb = e.b.ins().ishl_imm_s(j, 2);
                        let v = e.ld(types::F32, pr, jb);
                        let s = e.b.use_var(sum);
                        let s = e.fadd(s, v);
                        e.b.def_var(sum, s);
                    });
                    let s = e.b.use_var(sum);
                    if grad {
                        // d/dp_j = (g_j + sum_{i unclipped} y_i) / S with g_i = -y_i / q_i
                        // where q = p / S is unclipped, else 0.
                        let yu = e.b.declare_var(types::F32);
                        let z0 = e.b.ins().f32const(0.0);
                        e.b.def_var(yu, z0);
                        e.for_loop(0, cols as i64, 1, |e, j| {
                            let jb = e.b.ins().ishl_imm_s(j, 2);
                            let v = e.ld(types::F32, pr, jb);
                            let q = e.fdiv(v, s);
                            let tv = target_at(e, sparse, pt, r, cols, j, cls);
                            let inside = unclipped(e, q);
                            let zero = e.b.ins().f32const(0.0);
                            let add = e.b.ins().select(inside, tv, zero);
                            let a = e.b.use_var(yu);
                            let a = e.fadd(a, add);
                            e.b.def_var(yu, a);
                        });
                        let ysum = e.b.use_var(yu);
                        let orow = e.b.ins().iadd(po, rb);
                        e.for_loop(0, cols as i64, 1, |e, j| {
                            let jb = e.b.ins().ishl_imm_s(j, 2);
                            let v = e.ld(types::F32, pr, jb);
                            let q = e.fdiv(v, s);
                            let tv = target_at(e, sparse, pt, r, cols, j, cls);
                            let inside = unclipped(e, q);
                            let g = e.fdiv(tv, q);
                            let g = e.b.ins().fneg(g);
                            let zero = e.b.ins().f32const(0.0);
                            let g = e.b.ins().select(inside, g, zero);
                            let g = e.fadd(g, ysum);
                            let g = e.fdiv(g, s);
                            let g = e.fdiv_c(g, rf);
                            e.st(g, orow, jb);
                        });
                    } else {
                        let row = e.b.declare_var(types::F32);
                        let z0 = e.b.ins().f32const(0.0);
                        e.b.def_var(row, z0);
                        e.for_loop(0, cols as i64, 1, |e, j| {
                            let jb = e.b.ins().ishl_imm_s(j, 2);
                            let v = e.ld(types::F32, pr, jb);
                            let q = e.fdiv(v, s);
                            let q = e.max_c(q, CLIP_EPS);
                            let q = e.min_c(q, CLIP_HI);
                            let lq = call(e, logf, q);
                            let tv = target_at(e, sparse, pt, r, cols, j, cls);
                            let term = e.fmul(tv, lq);
                            let a = e.b.use_var(row);
                            let a = e.fsub(a, term);
                            e.b.def_var(row, a);
                        });
                        let rv = e.b.use_var(row);
                        let a = e.b.use_var(acc);
                        let a = e.fadd(a, rv);
                        e.b.def_var(acc, a);
                    }
                });
                if !grad {
                    let s = self.e.b.use_var(acc);
                    let m = self.e.fdiv_c(s, rf);
                    self.e.b.ins().store(mem_flags(), m, po, 0);
                }
            }
        }
        Ok(())
    }

    /// An elementwise loss (or its gradient) over `n` elements, four lanes at a time;
    /// the loss sums each lane apart and adds the lanes at the end.
    fn pointwise_loss_f32x4(
        &mut self,
        kind: LossKind,
        (pp, pt, po): (Value, Value, Value),
        n: usize,
        grad: bool,
    ) {
        let nf = n as f32;
        let logf = self.imports.logf;
        let e = &mut self.e;
        let sums = [types::F32X4, types::F32].map(|ty| {
            let var = e.b.declare_var(ty);
            let z = e.fc(ty, 0.0);
            e.b.def_var(var, z);
            var
        });
        e.map(n, |e, ty, ib| {
            let vp = e.ld(ty, pp, ib);
            let vt = e.ld(ty, pt, ib);
            let v = pointwise_loss(e, kind, vp, vt, grad, logf);
            if grad {
                let g = e.fdiv_c(v, nf);
                e.st(g, po, ib);
            } else {
                let sum = sums[usize::from(!ty.is_vector())];
                let s = e.b.use_var(sum);
                let s = e.fadd(s, v);
                e.b.def_var(sum, s);
            }
        });
        if !grad {
            let v = e.b.use_var(sums[0]);
            let lane = |e: &mut Emitter, i| e.b.ins().extractlane(v, i);
            let (l0, l1, l2, l3) = (lane(e, 0), lane(e, 1), lane(e, 2), lane(e, 3));
            let (a, b) = (e.fadd(l0, l1), e.fadd(l2, l3));
            let lanes = e.fadd(a, b);
            let tail = e.b.use_var(sums[1]);
            let total = e.fadd(lanes, tail);
            let mean = e.fdiv_c(total, nf);
            e.b.ins().store(mem_flags(), mean, po, 0);
        }
    }

    fn update(&mut self, node: &Node, opt: Optimizer) -> R {
        let slots = match opt {
            Optimizer::Sgd { momentum, .. } => usize::from(momentum != 0.0),
            Optimizer::Adam { .. } | Optimizer::AdamW { .. } => 2,
            Optimizer::RmsProp { .. } => 1,
        };
        self.check_inputs(node, 2 + slots)?;
        for &t in &node.inputs {
            self.same_len(t, node.inputs[0])?;
        }
        let ptrs = node
            .inputs
            .iter()
            .map(|&t| self.ptr(t))
            .collect::<Result<Vec<_>, _>>()?;
        let n = self.len(node.inputs[0]);
        let (w, g) = (ptrs[0], ptrs[1]);
        match opt {
            Optimizer::Sgd {
                learning_rate: lr,
                momentum,
                nesterov,
            } => {
                self.e.map(n, |e, ty, i| {
                    let wv = e.ld(ty, w, i);
                    let gv = e.ld(ty, g, i);
                    let glr = e.fmul_c(gv, lr);
                    let nw = if momentum != 0.0 {
                        let m = e.ld(ty, ptrs[2], i);
                        let mm = e.fmul_c(m, momentum);
                        let m = e.fsub(mm, glr);
                        e.st(m, ptrs[2], i);
                        if nesterov {
                            let mm = e.fmul_c(m, momentum);
                            let step = e.fsub(mm, glr);
                            e.fadd(wv, step)
                        } else {
                            e.fadd(wv, m)
                        }
                    } else {
                        e.fsub(wv, glr)
                    };
                    e.st(nw, w, i);
                });
            }
            Optimizer::Adam {
                learning_rate,
                beta_1,
                beta_2,
                epsilon,
            } => self.adam(&ptrs, n, learning_rate, beta_1, beta_2, epsilon, None),
            Optimizer::AdamW {
                learning_rate,
                beta_1,
                beta_2,
                epsilon,
                weight_decay,
            } => self.adam(
                &ptrs,
                n,
                learning_rate,
                beta_1,
                beta_2,
                epsilon,
                Some(weight_decay),
            ),
            Optimizer::RmsProp {
                learning_rate: lr,
                rho,
                epsilon,
            } => {
                let one_m_rho = crate::ir::optim::one_minus(rho);
                self.e.map(n, |e, ty, i| {
                    let wv = e.ld(ty, w, i);
                    let gv = e.ld(ty, g, i);
                    let v = e.ld(ty, ptrs[2], i);
                    let rv = e.fmul_c(v, rho);
                    let g2 = e.fmul(gv, gv);
                    let g2 = e.fmul_c(g2, one_m_rho);
                    let v = e.fadd(rv, g2);
                    e.st(v, ptrs[2], i);
                    let num = e.fmul_c(gv, lr);
                    let ve = e.fadd_c(v, epsilon);
                    let den = e.b.ins().sqrt(ve);
                    let inc = e.fdiv(num, den);
                    let nw = e.fsub(wv, inc);
                    e.st(nw, w, i);
                });
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn adam(
        &mut self,
        ptrs: &[Value],
        n: usize,
        lr: f32,
        b1: f32,
        b2: f32,
        eps: f32,
        weight_decay: Option<f32>,
    ) {
        let (w, g, pm, pv) = (ptrs[0], ptrs[1], ptrs[2], ptrs[3]);
        let key = [lr, b1, b2].map(f32::to_bits);
        let slot = match self.alphas.iter().find(|(k, _)| *k == key) {
            Some(&(_, slot)) => slot,
            None => {
                let a = self.adam_alpha(lr, b1, b2);
                let slot = self.e.b.create_sized_stack_slot(StackSlotData::new(
                    StackSlotKind::ExplicitSlot,
                    4,
                    2,
                ));
                self.e.b.ins().stack_store(types::I64, a, slot, 0);
                self.alphas.push((key, slot));
                slot
            }
        };
        // Loaded, not reused as a value: Cranelift would recompute a shared pure
        // value (two square roots and a division) inside each loop that uses it.
        let e = &mut self.e;
        let alpha = e.b.ins().stack_load(types::I64, types::F32, slot, 0);
        let (omb1, omb2) = (
            crate::ir::optim::one_minus(b1),
            crate::ir::optim::one_minus(b2),
        );
        if let Some(adam) = self.imports.adam.filter(|_| n >= VECTOR_ADAM_MIN_WEIGHTS) {
            let (wd, has_decay) = (weight_decay.unwrap_or(0.0), weight_decay.is_some());
            let n = e.iconst(n as i64);
            let mut args = vec![w, g, pm, pv, n, alpha];
            for c in [omb1, omb2, eps, wd, lr] {
                args.push(e.b.ins().f32const(c));
            }
            args.push(e.iconst(i64::from(has_decay)));
            e.b.ins().call(adam, &args);
            return;
        }
        let alpha4 = e.b.ins().splat(types::F32X4, alpha);
        e.map(n, |e, ty, i| {
            let mut wv = e.ld(ty, w, i);
            if let Some(wd) = weight_decay {
                let d = e.fmul_c(wv, wd);
                let d = e.fmul_c(d, lr);
                wv = e.fsub(wv, d);
            }
            let gv = e.ld(ty, g, i);
            let m = e.ld(ty, pm, i);
            let dm = e.fsub(gv, m);
            let dm = e.fmul_c(dm, omb1);
            let m = e.fadd(m, dm);
            e.st(m, pm, i);
            let v = e.ld(ty, pv, i);
            let g2 = e.fmul(gv, gv);
            let dv = e.fsub(g2, v);
            let dv = e.fmul_c(dv, omb2);
            let v = e.fadd(v, dv);
            e.st(v, pv, i);
            let a = if ty.is_vector() { alpha4 } else { alpha };
            let num = e.fmul(m, a);
            let sv = e.b.ins().sqrt(v);
            let den = e.fadd_c(sv, eps);
            let inc = e.fdiv(num, den);
            let nw = e.fsub(wv, inc);
            e.st(nw, w, i);
        });
    }

    /// Adam's step size `lr * sqrt(1 - b2^t) / (1 - b1^t)`, `t = step + 1`, computed in
    /// straight-line code (so it dominates every later node and is shared by them).
    fn adam_alpha(&mut self, lr: f32, b1: f32, b2: f32) -> Value {
        let one = self.e.iconst(1);
        let t = self.e.b.ins().iadd(self.step, one);
        let tf = self.e.b.ins().fcvt_from_uint(types::F32, t);
        let b1v = self.e.b.ins().f32const(b1);
        let b2v = self.e.b.ins().f32const(b2);
        let c1 = self.e.b.ins().call(self.imports.powf, &[b1v, tf]);
        let p1 = self.e.b.inst_results(c1)[0];
        let c2 = self.e.b.ins().call(self.imports.powf, &[b2v, tf]);
        let p2 = self.e.b.inst_results(c2)[0];
        let e = &mut self.e;
        let one_f = e.b.ins().f32const(1.0);
        let d2 = e.fsub(one_f, p2);
        let s2 = e.b.ins().sqrt(d2);
        let lrv = e.b.ins().f32const(lr);
        let num = e.fmul(lrv, s2);
        let d1 = e.fsub(one_f, p1);
        e.fdiv(num, d1)
    }
}

/// Tensors of at least this many weights are updated by `nnc_adam` (eight at a time)
/// rather than by emitted code (four at a time), whose loop costs less than the call
/// below this.
const VECTOR_ADAM_MIN_WEIGHTS: usize = 1024;

/// Products up to this many multiply-adds are emitted inline: a call into the GEMM
/// (argument checks, packing, dispatch) costs more than the whole product.
const INLINE_MAX_MACS: usize = 1 << 13;
/// Inline products keep one output row's chunks unrolled; wider rows go to the GEMM.
const INLINE_MAX_COLS: usize = 64;
/// Inner (`k`) loops up to this length are unrolled.
const INLINE_UNROLL_K: usize = 16;

/// Independent accumulators an inline product keeps live at once: enough chains to
/// hide the FMA latency, few enough to stay in the 16 vector registers with room for
/// the operands.
const INLINE_ACCUMULATORS: usize = 8;

/// `c[m, n] = a[m, k] * b[k, n]` as straight loops. A row of `c` is split into
/// `f32x4` chunks (when `b`'s rows are contiguous) and scalars; a block of rows times
/// a group of chunks is held in registers while `p` runs over `k`, so the block's
/// chains advance side by side and each load of `b` serves every row of the block.
/// Every element is still summed over `k` in order with `fma`, as the interpreter
/// does. Operands are (pointer, row stride, column stride) in elements.
fn inline_matmul(
    e: &mut Emitter,
    [m, k, n]: [usize; 3],
    (pa, rsa, csa): (Value, usize, usize),
    (pb, rsb, csb): (Value, usize, usize),
    pc: Value,
) {
    let chunks: Vec<(usize, Type)> = if csb == 1 {
        row_chunks(n)
    } else {
        (0..n).map(|j| (j, types::F32)).collect()
    };
    for group in chunks.chunks(INLINE_ACCUMULATORS) {
        let block = (INLINE_ACCUMULATORS / group.len()).clamp(1, m);
        let full = m / block * block;
        e.for_loop(0, full as i64, block as i64, |e, i| {
            matmul_block(
                e,
                i,
                block,
                k,
                group,
                (pa, rsa, csa),
                (pb, rsb, csb),
                (pc, n),
            );
        });
        if full < m {
            let i = e.iconst(full as i64);
            matmul_block(
                e,
                i,
                m - full,
                k,
                group,
                (pa, rsa, csa),
                (pb, rsb, csb),
                (pc, n),
            );
        }
    }
}

/// A contiguous row of `n` floats as (first column, type) chunks: `f32x4` vectors,
/// then scalars for the rest.
fn row_chunks(n: usize) -> Vec<(usize, Type)> {
    let n4 = n / 4 * 4;
    (0..n4)
        .step_by(4)
        .map(|j| (j, types::F32X4))
        .chain((n4..n).map(|j| (j, types::F32)))
        .collect()
}

/// Rows `i .. i + rows` of `c` restricted to the column chunks `group` (see
/// `inline_matmul`).
#[allow(clippy::too_many_arguments)]
fn matmul_block(
    e: &mut Emitter,
    i: Value,
    rows: usize,
    k: usize,
    group: &[(usize, Type)],
    (pa, rsa, csa): (Value, usize, usize),
    (pb, rsb, csb): (Value, usize, usize),
    (pc, n): (Value, usize),
) {
    let ia = e.b.ins().imul_imm_s(i, (rsa * 4) as i64);
    let a_rows = e.b.ins().iadd(pa, ia);
    let a_row: Vec<Value> = (0..rows).map(|r| e.offset(a_rows, r * rsa)).collect();
    let b_col: Vec<Value> = group.iter().map(|&(j, _)| e.offset(pb, j * csb)).collect();
    // acc[r][g] += a[i + r, p] * b[p, chunk g]: one step of `p` for the whole block.
    let step = |e: &mut Emitter, acc: &mut [Vec<Value>], oa: Value, ob: Value| {
        let b_chunks: Vec<Value> = group
            .iter()
            .zip(&b_col)
            .map(|(&(_, ty), &bj)| e.ld(ty, bj, ob))
            .collect();
        for (r, row) in acc.iter_mut().enumerate() {
            let a = e.ld(types::F32, a_row[r], oa);
            for (g, &(_, ty)) in group.iter().enumerate() {
                let av = if ty.is_vector() {
                    e.b.ins().splat(ty, a)
                } else {
                    a
                };
                row[g] = e.b.ins().fma(av, b_chunks[g], row[g]);
            }
        }
    };
    let mut acc: Vec<Vec<Value>> = (0..rows)
        .map(|_| group.iter().map(|&(_, ty)| e.fc(ty, 0.0)).collect())
        .collect();
    if k <= INLINE_UNROLL_K {
        for p in 0..k {
            let oa = e.iconst((p * csa * 4) as i64);
            let ob = e.iconst((p * rsb * 4) as i64);
            step(e, &mut acc, oa, ob);
        }
    } else {
        let vars: Vec<Vec<Variable>> = acc
            .iter()
            .map(|row| {
                row.iter()
                    .map(|&v| {
                        let ty = e.b.func.dfg.value_type(v);
                        let var = e.b.declare_var(ty);
                        e.b.def_var(var, v);
                        var
                    })
                    .collect()
            })
            .collect();
        e.for_loop(0, k as i64, 1, |e, p| {
            let oa = e.b.ins().imul_imm_s(p, (csa * 4) as i64);
            let ob = e.b.ins().imul_imm_s(p, (rsb * 4) as i64);
            let mut now: Vec<Vec<Value>> = vars
                .iter()
                .map(|row| row.iter().map(|&v| e.b.use_var(v)).collect())
                .collect();
            step(e, &mut now, oa, ob);
            for (row, vals) in vars.iter().zip(now) {
                for (&var, val) in row.iter().zip(vals) {
                    e.b.def_var(var, val);
                }
            }
        });
        acc = vars
            .iter()
            .map(|row| row.iter().map(|&v| e.b.use_var(v)).collect())
            .collect();
    }
    let ic = e.b.ins().imul_imm_s(i, (n * 4) as i64);
    let c_rows = e.b.ins().iadd(pc, ic);
    for (r, row) in acc.iter().enumerate() {
        for (g, &(j, _)) in group.iter().enumerate() {
            let oc = e.iconst(((r * n + j) * 4) as i64);
            e.st(row[g], c_rows, oc);
        }
    }
}

fn mem_flags() -> cranelift_codegen::ir::MemFlagsData {
    cranelift_codegen::ir::MemFlagsData::new().with_notrap()
}

fn call(e: &mut Emitter, f: FuncRef, a: Value) -> Value {
    let c = e.b.ins().call(f, &[a]);
    e.b.inst_results(c)[0]
}

/// The maximum of a row of `cols` floats.
fn row_max(e: &mut Emitter, xr: Value, cols: usize) -> Value {
    let mx = e.b.declare_var(types::F32);
    let first = e.b.ins().load(types::F32, mem_flags(), xr, 0);
    e.b.def_var(mx, first);
    e.for_loop(1, cols as i64, 1, |e, j| {
        let jb = e.b.ins().ishl_imm_s(j, 2);
        let v = e.ld(types::F32, xr, jb);
        let m = e.b.use_var(mx);
        let nm = e.sel(FloatCC::LessThan, m, v, v, m);
        e.b.def_var(mx, nm);
    });
    e.b.use_var(mx)
}

/// One splitmix64 round: `(z ^ (z >> s)) * k`.
fn mix(e: &mut Emitter, z: Value, s: i64, k: u64) -> Value {
    let sh = e.b.ins().ushr_imm_u(z, s);
    let x = e.b.ins().bxor(z, sh);
    let kv = e.iconst(k as i64);
    e.b.ins().imul(x, kv)
}

/// Whether a probability lies inside the clip range (so its gradient flows).
fn unclipped(e: &mut Emitter, q: Value) -> Value {
    let lo = e.b.ins().f32const(CLIP_EPS);
    let hi = e.b.ins().f32const(CLIP_HI);
    let a = e.b.ins().fcmp(FloatCC::GreaterThanOrEqual, q, lo);
    let b = e.b.ins().fcmp(FloatCC::LessThanOrEqual, q, hi);
    e.b.ins().band(a, b)
}

/// The class index of row `r` of a sparse target, or -1 when the label is not an
/// integer in `[0, cols)` (such a row then has no target, as in the interpreter).
/// The index is only ever compared, never used to address memory.
fn class_index(e: &mut Emitter, pt: Value, r: Value, cols: usize) -> Value {
    let rb = e.b.ins().ishl_imm_s(r, 2);
    let v = e.ld(types::F32, pt, rb);
    let c = e.b.ins().fcvt_to_sint_sat(types::I64, v);
    let back = e.b.ins().fcvt_from_sint(types::F32, c);
    let integral = e.b.ins().fcmp(FloatCC::Equal, back, v);
    let zero = e.iconst(0);
    let top = e.iconst(cols as i64);
    let ge = e.b.ins().icmp(IntCC::SignedGreaterThanOrEqual, c, zero);
    let lt = e.b.ins().icmp(IntCC::SignedLessThan, c, top);
    let ok = e.b.ins().band(integral, ge);
    let ok = e.b.ins().band(ok, lt);
    let none = e.iconst(-1);
    e.b.ins().select(ok, c, none)
}

/// `y[r, j]`, or for sparse targets `1.0` when `j` is the row's class and `0.0` otherwise.
fn target_at(
    e: &mut Emitter,
    sparse: bool,
    pt: Value,
    r: Value,
    cols: usize,
    j: Value,
    cls: Option<Value>,
) -> Value {
    match (sparse, cls) {
        (true, Some(c)) => {
            let eq = e.b.ins().icmp(IntCC::Equal, j, c);
            let one = e.b.ins().f32const(1.0);
            let zero = e.b.ins().f32const(0.0);
            e.b.ins().select(eq, one, zero)
        }
        _ => {
            let rc = e.b.ins().imul_imm_s(r, cols as i64);
            let idx = e.b.ins().iadd(rc, j);
            let ib = e.b.ins().ishl_imm_s(idx, 2);
            e.ld(types::F32, pt, ib)
        }
    }
}

/// `sum_j y[r, j]` (for sparse targets 1, or 0 for a row without a valid class).
fn target_sum(e: &mut Emitter, cls: Option<Value>, pt: Value, r: Value, cols: usize) -> Value {
    if let Some(c) = cls {
        let valid = e.b.ins().icmp_imm_s(IntCC::SignedGreaterThanOrEqual, c, 0);
        let one = e.b.ins().f32const(1.0);
        let zero = e.b.ins().f32const(0.0);
        return e.b.ins().select(valid, one, zero);
    }
    let v = e.b.declare_var(types::F32);
    let z = e.b.ins().f32const(0.0);
    e.b.def_var(v, z);
    e.for_loop(0, cols as i64, 1, |e, j| {
        let tv = target_at(e, false, pt, r, cols, j, None);
        let s = e.b.use_var(v);
        let s = e.fadd(s, tv);
        e.b.def_var(v, s);
    });
    e.b.use_var(v)
}

/// Whether `pointwise_loss` of `kind` is written for `f32x4` lanes as well as `f32`.
fn lanes_agree(kind: LossKind) -> bool {
    matches!(kind, LossKind::Mse | LossKind::SigmoidBinaryCrossentropy)
}

/// One element's loss (or its gradient, before the division by the element count);
/// on `f32x4` lanes only for the kinds `lanes_agree` names.
fn pointwise_loss(
    e: &mut Emitter,
    kind: LossKind,
    p: Value,
    t: Value,
    grad: bool,
    logf: FuncRef,
) -> Value {
    let zero = e.b.ins().f32const(0.0);
    match kind {
        LossKind::Mse => {
            let d = e.fsub(p, t);
            if grad {
                e.fmul_c(d, 2.0)
            } else {
                e.fmul(d, d)
            }
        }
        LossKind::Mae => {
            let d = e.fsub(p, t);
            if grad {
                sign(e, d)
            } else {
                e.b.ins().fabs(d)
            }
        }
        LossKind::Huber { delta } => {
            let d = e.fsub(p, t);
            let ad = e.b.ins().fabs(d);
            let dv = e.b.ins().f32const(delta);
            let small = e.b.ins().fcmp(FloatCC::LessThanOrEqual, ad, dv);
            if grad {
                let s = sign(e, d);
                let lin = e.fmul_c(s, delta);
                e.b.ins().select(small, d, lin)
            } else {
                // 0.5 q^2 + delta (|d| - q) with q = min(|d|, delta)
                let q = e.b.ins().select(small, ad, dv);
                let hq = e.fmul_c(q, 0.5);
                let sq = e.fmul(hq, q);
                let rest = e.fsub(ad, q);
                let lin = e.fmul(dv, rest);
                e.fadd(sq, lin)
            }
        }
        LossKind::SigmoidBinaryCrossentropy => {
            if grad {
                let s = e.sigmoid(p);
                e.fsub(s, t)
            } else {
                // max(z, 0) - z * y + log1p(exp(-|z|))
                let m = e.max_c(p, 0.0);
                let zy = e.fmul(p, t);
                let a = e.fsub(m, zy);
                let az = e.b.ins().fabs(p);
                let naz = e.b.ins().fneg(az);
                let ex = e.exp(naz);
                // exp(-|z|) is in (0, 1]: the inline log1p, not a call per element.
                let l = e.log1p_pos(ex);
                e.fadd(a, l)
            }
        }
        LossKind::BinaryCrossentropy => {
            let q = e.max_c(p, CLIP_EPS);
            let q = e.min_c(q, CLIP_HI);
            let one = e.b.ins().f32const(1.0);
            let omq = e.fsub(one, q);
            let omt = e.fsub(one, t);
            if grad {
                // -(y / q) + (1 - y) / (1 - q), zero where the clip is active.
                let a = e.fdiv(t, q);
                let b = e.fdiv(omt, omq);
                let g = e.fsub(b, a);
                let inside = unclipped(e, p);
                e.b.ins().select(inside, g, zero)
            } else {
                let lq = call(e, logf, q);
                let l1q = call(e, logf, omq);
                let a = e.fmul(t, lq);
                let b = e.fmul(omt, l1q);
                let s = e.fadd(a, b);
                e.b.ins().fneg(s)
            }
        }
        _ => zero,
    }
}

/// `sign(d)` with `sign(0) = 0`.
fn sign(e: &mut Emitter, d: Value) -> Value {
    let zero = e.b.ins().f32const(0.0);
    let one = e.b.ins().f32const(1.0);
    let s = e.b.ins().fcopysign(one, d);
    e.sel(FloatCC::Equal, d, zero, zero, s)
}
