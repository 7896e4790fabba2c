//! IR -> CLIF for every loss and its gradient. The elementwise losses are a mean over
//! every element; the cross-entropies a mean over rows, each row summed by the one
//! row reduction `lower::fold`, in the interpreter's order.

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, InstBuilder, Value};

use super::abi::{Helper, Imports};
use super::kernels::Emitter;
use super::lower::{fold, mem_flags, Lower, R};
use super::softmax::{exp_shifted_row, row_max};
use crate::ir::graph::{LossKind, TensorId};

/// Keras's `epsilon()`, the probability clip of the cross-entropies.
const CLIP_EPS: f32 = 1e-7;
/// `1 - epsilon`, rounded once from the exact value as the interpreter does.
const CLIP_HI: f32 = (1.0f64 - 1e-7) as f32;

/// The losses computed element by element.
#[derive(Clone, Copy)]
enum Pointwise {
    Mse,
    Mae,
    Huber { delta: f32 },
    SigmoidBinaryCrossentropy,
    BinaryCrossentropy,
    LogCosh,
    Poisson,
    KlDivergence,
}

impl Pointwise {
    /// Whether `pointwise_loss` of this kind is written for `f32x4` lanes as well as
    /// `f32`.
    fn lanes_agree(self) -> bool {
        match self {
            Pointwise::Mse | Pointwise::SigmoidBinaryCrossentropy | Pointwise::LogCosh => true,
            Pointwise::Mae
            | Pointwise::Huber { .. }
            | Pointwise::BinaryCrossentropy
            | Pointwise::Poisson
            | Pointwise::KlDivergence => false,
        }
    }

    /// Whether the loss sums each row's terms and averages over rows (Keras's
    /// `kl_divergence`) rather than averaging over every element.
    fn per_row(self) -> bool {
        match self {
            Pointwise::KlDivergence => true,
            Pointwise::Mse
            | Pointwise::Mae
            | Pointwise::Huber { .. }
            | Pointwise::SigmoidBinaryCrossentropy
            | Pointwise::BinaryCrossentropy
            | Pointwise::LogCosh
            | Pointwise::Poisson => false,
        }
    }
}

/// How a loss kind is lowered: `sparse` targets are one class index per row.
enum Family {
    Pointwise(Pointwise),
    /// Cross-entropy of `softmax(p)`, fused with the softmax.
    SoftmaxCrossentropy {
        sparse: bool,
    },
    /// Cross-entropy of probabilities `p / sum(p)`.
    Crossentropy {
        sparse: bool,
    },
}

fn family(kind: LossKind) -> Family {
    match kind {
        LossKind::Mse => Family::Pointwise(Pointwise::Mse),
        LossKind::Mae => Family::Pointwise(Pointwise::Mae),
        LossKind::Huber { delta } => Family::Pointwise(Pointwise::Huber { delta }),
        LossKind::SigmoidBinaryCrossentropy => {
            Family::Pointwise(Pointwise::SigmoidBinaryCrossentropy)
        }
        LossKind::BinaryCrossentropy => Family::Pointwise(Pointwise::BinaryCrossentropy),
        LossKind::SoftmaxCategoricalCrossentropy => Family::SoftmaxCrossentropy { sparse: false },
        LossKind::SoftmaxSparseCategoricalCrossentropy => {
            Family::SoftmaxCrossentropy { sparse: true }
        }
        LossKind::CategoricalCrossentropy => Family::Crossentropy { sparse: false },
        LossKind::SparseCategoricalCrossentropy => Family::Crossentropy { sparse: true },
        LossKind::LogCosh => Family::Pointwise(Pointwise::LogCosh),
        LossKind::Poisson => Family::Pointwise(Pointwise::Poisson),
        LossKind::KlDivergence => Family::Pointwise(Pointwise::KlDivergence),
    }
}

/// The tensors of a loss node: prediction, target and output pointers, and the
/// prediction's `[rows, cols]`.
#[derive(Clone, Copy)]
struct Operands {
    pp: Value,
    pt: Value,
    po: Value,
    rows: usize,
    cols: usize,
}

impl Lower<'_, '_, '_> {
    /// The loss of prediction `p` against target `t` into the scalar `out`, or with
    /// `grad` its gradient with respect to `p`.
    pub(super) fn loss(
        &mut self,
        kind: LossKind,
        p: TensorId,
        t: TensorId,
        out: TensorId,
        grad: bool,
    ) -> R {
        let n = self.len(p);
        let cols = self.last_dim(p);
        if n == 0 || cols == 0 {
            return Err("empty prediction".into());
        }
        let rows = n / cols;
        let family = family(kind);
        let sparse = match family {
            Family::Pointwise(_) => false,
            Family::SoftmaxCrossentropy { sparse } | Family::Crossentropy { sparse } => sparse,
        };
        if sparse {
            if self.len(t) != rows {
                return Err("sparse targets need one class index per row".into());
            }
        } else {
            self.same_len(p, t)?;
        }
        if grad {
            self.same_len(p, out)?;
        } else if self.len(out) != 1 {
            return Err("the loss is a scalar".into());
        }
        let (pp, pt, po) = (self.ptr(p)?, self.ptr(t)?, self.ptr(out)?);
        let ops = Operands {
            pp,
            pt,
            po,
            rows,
            cols,
        };
        match family {
            Family::Pointwise(kind) if kind.lanes_agree() => {
                self.pointwise_loss_f32x4(kind, (pp, pt, po), n, grad);
            }
            Family::Pointwise(kind) => {
                let count = if kind.per_row() { rows } else { n };
                self.pointwise_loss_f32(kind, (pp, pt, po), n, count as f32, grad);
            }
            Family::SoftmaxCrossentropy { sparse } => {
                let softmax = if grad { self.softmax_of(p, out)? } else { None };
                let e = &mut self.e;
                if grad {
                    softmax_crossentropy_grad(e, ops, sparse, softmax);
                } else {
                    softmax_crossentropy(e, &self.imports, ops, sparse);
                }
            }
            Family::Crossentropy { sparse } => {
                let e = &mut self.e;
                if grad {
                    crossentropy_grad(e, ops, sparse);
                } else {
                    crossentropy(e, &self.imports, ops, sparse);
                }
            }
        }
        Ok(())
    }

    /// An elementwise loss (or its gradient) over `n` elements, one at a time: the
    /// sum of their terms divided by `count` (the elements, or the rows).
    fn pointwise_loss_f32(
        &mut self,
        kind: Pointwise,
        (pp, pt, po): (Value, Value, Value),
        n: usize,
        count: f32,
        grad: bool,
    ) {
        let nf = count;
        let imports = &self.imports;
        let e = &mut self.e;
        if grad {
            e.for_loop(0, n as i64, 1, |e, i| {
                let ib = e.b.ins().ishl_imm_s(i, 2);
                let vp = e.ld(types::F32, pp, ib);
                let vt = e.ld(types::F32, pt, ib);
                let v = pointwise_loss(e, kind, vp, vt, true, imports);
                let g = e.fdiv_c(v, nf);
                e.st(g, po, ib);
            });
        } else {
            let z = e.b.ins().f32const(0.0);
            let total = fold(e, 0..n, z, Emitter::fadd, |e, i| {
                let ib = e.b.ins().ishl_imm_s(i, 2);
                let vp = e.ld(types::F32, pp, ib);
                let vt = e.ld(types::F32, pt, ib);
                pointwise_loss(e, kind, vp, vt, false, imports)
            });
            store_mean(e, total, nf, po);
        }
    }

    /// An elementwise loss (or its gradient) over `n` elements, four lanes at a time;
    /// the loss sums each lane apart and adds the lanes at the end.
    fn pointwise_loss_f32x4(
        &mut self,
        kind: Pointwise,
        (pp, pt, po): (Value, Value, Value),
        n: usize,
        grad: bool,
    ) {
        let nf = n as f32;
        let imports = &self.imports;
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
            let v = pointwise_loss(e, kind, vp, vt, grad, imports);
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
            store_mean(e, total, nf, po);
        }
    }
}

/// `total / count` into the scalar at `po`.
fn store_mean(e: &mut Emitter, total: Value, count: f32, po: Value) {
    let mean = e.fdiv_c(total, count);
    e.b.ins().store(mem_flags(), mean, po, 0);
}

/// Row `r`'s pointer into the prediction, its byte offset, and for sparse targets its
/// class index.
fn row(e: &mut Emitter, ops: Operands, sparse: bool, r: Value) -> (Value, Value, Option<Value>) {
    let rb = e.b.ins().imul_imm_s(r, (ops.cols * 4) as i64);
    let pr = e.b.ins().iadd(ops.pp, rb);
    let cls = sparse.then(|| class_index(e, ops.pt, r, ops.cols));
    (pr, rb, cls)
}

/// `mean_r -sum_j y_j ((z_j - max) - log(sum_i exp(z_i - max)))` over the rows.
fn softmax_crossentropy(e: &mut Emitter, imports: &Imports, ops: Operands, sparse: bool) {
    let Operands {
        pt, po, rows, cols, ..
    } = ops;
    let z = e.b.ins().f32const(0.0);
    let total = fold(e, 0..rows, z, Emitter::fadd, |e, r| {
        let (pr, _, cls) = row(e, ops, sparse, r);
        let m = row_max(e, pr, cols);
        let z0 = e.b.ins().f32const(0.0);
        let sv = fold(e, 0..cols, z0, Emitter::fadd, |e, j| {
            let jb = e.b.ins().ishl_imm_s(j, 2);
            let zj = e.ld(types::F32, pr, jb);
            let d = e.fsub(zj, m);
            e.exp(d)
        });
        let ls = imports.call_f32(&mut e.b, Helper::Logf, &[sv]);
        let lse = e.fadd(m, ls);
        match cls {
            // One-hot: only the class's term, `0 - (z_c - lse)`, is not zero (none
            // for a row without a valid class).
            Some(c) => {
                let valid = e.b.ins().icmp_imm_s(IntCC::SignedGreaterThanOrEqual, c, 0);
                let first = e.iconst(0);
                let c = e.b.ins().select(valid, c, first);
                let cb = e.b.ins().ishl_imm_s(c, 2);
                let zc = e.ld(types::F32, pr, cb);
                let l = e.fsub(zc, lse);
                let term = e.fsub(z0, l);
                e.b.ins().select(valid, term, z0)
            }
            None => fold(e, 0..cols, z0, Emitter::fsub, |e, j| {
                let jb = e.b.ins().ishl_imm_s(j, 2);
                let tv = target_at(e, sparse, pt, r, cols, j, cls);
                let zj = e.ld(types::F32, pr, jb);
                let l = e.fsub(zj, lse);
                e.fmul(tv, l)
            }),
        }
    });
    store_mean(e, total, rows as f32, po);
}

/// `(softmax(z) * sum(y) - y) / rows`. The softmax row is read where the graph
/// computed it already (`softmax`: the same operations, so the same values), else
/// made here.
fn softmax_crossentropy_grad(e: &mut Emitter, ops: Operands, sparse: bool, softmax: Option<Value>) {
    let Operands {
        pt, po, rows, cols, ..
    } = ops;
    let rf = rows as f32;
    e.for_loop(0, rows as i64, 1, |e, r| {
        let (pr, rb, cls) = row(e, ops, sparse, r);
        let or = e.b.ins().iadd(po, rb);
        let (sm_row, s) = match softmax {
            Some(ps) => (e.b.ins().iadd(ps, rb), None),
            None => (or, Some(exp_shifted_row(e, pr, or, cols))),
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
    });
}

/// The sum of prediction row `pr`, which the cross-entropy of probabilities divides
/// by.
fn row_total(e: &mut Emitter, pr: Value, cols: usize) -> Value {
    let z0 = e.b.ins().f32const(0.0);
    fold(e, 0..cols, z0, Emitter::fadd, |e, j| {
        let jb = e.b.ins().ishl_imm_s(j, 2);
        e.ld(types::F32, pr, jb)
    })
}

/// `mean_r -sum_j y_j log(clip(p_j / S))` over the rows, `S = sum_j p_j`.
fn crossentropy(e: &mut Emitter, imports: &Imports, ops: Operands, sparse: bool) {
    let Operands {
        pt, po, rows, cols, ..
    } = ops;
    let z = e.b.ins().f32const(0.0);
    let total = fold(e, 0..rows, z, Emitter::fadd, |e, r| {
        let (pr, _, cls) = row(e, ops, sparse, r);
        let s = row_total(e, pr, cols);
        let z0 = e.b.ins().f32const(0.0);
        fold(e, 0..cols, z0, Emitter::fsub, |e, j| {
            let jb = e.b.ins().ishl_imm_s(j, 2);
            let v = e.ld(types::F32, pr, jb);
            let q = e.fdiv(v, s);
            let q = e.max_c(q, CLIP_EPS);
            let q = e.min_c(q, CLIP_HI);
            let lq = imports.call_f32(&mut e.b, Helper::Logf, &[q]);
            let tv = target_at(e, sparse, pt, r, cols, j, cls);
            e.fmul(tv, lq)
        })
    });
    store_mean(e, total, rows as f32, po);
}

/// `d/dp_j = (g_j + sum_{i unclipped} y_i) / S / rows` with `g_i = -y_i / q_i` where
/// `q = p / S` is unclipped, else 0.
fn crossentropy_grad(e: &mut Emitter, ops: Operands, sparse: bool) {
    let Operands {
        pt, po, rows, cols, ..
    } = ops;
    let rf = rows as f32;
    e.for_loop(0, rows as i64, 1, |e, r| {
        let (pr, rb, cls) = row(e, ops, sparse, r);
        let s = row_total(e, pr, cols);
        let z0 = e.b.ins().f32const(0.0);
        let ysum = fold(e, 0..cols, z0, Emitter::fadd, |e, j| {
            let jb = e.b.ins().ishl_imm_s(j, 2);
            let v = e.ld(types::F32, pr, jb);
            let q = e.fdiv(v, s);
            let tv = target_at(e, sparse, pt, r, cols, j, cls);
            let inside = unclipped(e, q);
            let zero = e.b.ins().f32const(0.0);
            e.b.ins().select(inside, tv, zero)
        });
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
    });
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
    let z = e.b.ins().f32const(0.0);
    fold(e, 0..cols, z, Emitter::fadd, |e, j| {
        target_at(e, false, pt, r, cols, j, None)
    })
}

/// One element's loss (or its gradient, before the division by the element count);
/// on `f32x4` lanes only for the kinds `Pointwise::lanes_agree` names.
fn pointwise_loss(
    e: &mut Emitter,
    kind: Pointwise,
    p: Value,
    t: Value,
    grad: bool,
    imports: &Imports,
) -> Value {
    match kind {
        Pointwise::Mse => {
            let d = e.fsub(p, t);
            if grad {
                e.fmul_c(d, 2.0)
            } else {
                e.fmul(d, d)
            }
        }
        Pointwise::Mae => {
            let d = e.fsub(p, t);
            if grad {
                sign(e, d)
            } else {
                e.b.ins().fabs(d)
            }
        }
        Pointwise::Huber { delta } => {
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
        Pointwise::SigmoidBinaryCrossentropy => {
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
        Pointwise::LogCosh => {
            // x + softplus(-2x) - log(2), x = p - t; its derivative 1 - 2 sigmoid(-2x).
            let x = e.fsub(p, t);
            let ty = e.b.func.dfg.value_type(x);
            let m2 = e.fmul_c(x, -2.0);
            if grad {
                let s = e.sigmoid(m2);
                let s2 = e.fmul_c(s, 2.0);
                let one = e.fc(ty, 1.0);
                e.fsub(one, s2)
            } else {
                let m = e.max_c(m2, 0.0);
                let a = e.b.ins().fabs(m2);
                let na = e.b.ins().fneg(a);
                let ex = e.exp(na);
                let l = e.log1p_pos(ex);
                let sp = e.fadd(m, l);
                let xs = e.fadd(x, sp);
                let ln2 = e.fc(ty, std::f32::consts::LN_2);
                e.fsub(xs, ln2)
            }
        }
        Pointwise::KlDivergence => {
            // y log(y / q) with y, q clipped to [epsilon, 1]; its derivative -y / p
            // where the clip passes p, else 0.
            let y = e.max_c(t, CLIP_EPS);
            let y = e.min_c(y, 1.0);
            if grad {
                let g = e.fdiv(y, p);
                let g = e.b.ins().fneg(g);
                let lo = e.b.ins().f32const(CLIP_EPS);
                let hi = e.b.ins().f32const(1.0);
                let a = e.b.ins().fcmp(FloatCC::GreaterThanOrEqual, p, lo);
                let b = e.b.ins().fcmp(FloatCC::LessThanOrEqual, p, hi);
                let inside = e.b.ins().band(a, b);
                let zero = e.b.ins().f32const(0.0);
                e.b.ins().select(inside, g, zero)
            } else {
                let q = e.max_c(p, CLIP_EPS);
                let q = e.min_c(q, 1.0);
                let r = e.fdiv(y, q);
                let l = imports.call_f32(&mut e.b, Helper::Logf, &[r]);
                e.fmul(y, l)
            }
        }
        Pointwise::Poisson => {
            // p - t log(p + epsilon); its derivative 1 - t / (p + epsilon).
            let pe = e.b.ins().f32const(CLIP_EPS);
            let pe = e.fadd(p, pe);
            if grad {
                let r = e.fdiv(t, pe);
                let one = e.b.ins().f32const(1.0);
                e.fsub(one, r)
            } else {
                let l = imports.call_f32(&mut e.b, Helper::Logf, &[pe]);
                let tl = e.fmul(t, l);
                e.fsub(p, tl)
            }
        }
        Pointwise::BinaryCrossentropy => {
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
                let zero = e.b.ins().f32const(0.0);
                e.b.ins().select(inside, g, zero)
            } else {
                let lq = imports.call_f32(&mut e.b, Helper::Logf, &[q]);
                let l1q = imports.call_f32(&mut e.b, Helper::Logf, &[omq]);
                let a = e.fmul(t, lq);
                let b = e.fmul(omt, l1q);
                let s = e.fadd(a, b);
                e.b.ins().fneg(s)
            }
        }
    }
}

/// `sign(d)` with `sign(0) = 0`.
fn sign(e: &mut Emitter, d: Value) -> Value {
    let zero = e.b.ins().f32const(0.0);
    let one = e.b.ins().f32const(1.0);
    let s = e.b.ins().fcopysign(one, d);
    e.sel(FloatCC::Equal, d, zero, zero, s)
}

impl Lower<'_, '_, '_> {
    /// Each sample's class weight into `out`, by `ir::loss::class_weights`, from the
    /// weights `table`.
    pub(super) fn class_weights(&mut self, t: TensorId, table: TensorId, out: TensorId) -> R {
        let rows = self.len(out);
        if rows == 0 || !self.len(t).is_multiple_of(rows) {
            return Err("class weights need whole target rows".into());
        }
        let width = self.len(t) / rows;
        let classes = self.len(table);
        let (pt, pc, po) = (self.ptr(t)?, self.ptr(table)?, self.ptr(out)?);
        let e = &mut self.e;
        let args = [
            pt,
            e.iconst(rows as i64),
            e.iconst(width as i64),
            pc,
            e.iconst(classes as i64),
            po,
        ];
        self.imports.call(&mut e.b, Helper::ClassWeights, &args);
        Ok(())
    }

    /// The class-weighted loss into the scalar `out`, by `ir::loss::weighted_loss`.
    pub(super) fn weighted_loss(&mut self, kind: LossKind, ins: &[TensorId], out: TensorId) -> R {
        let (p, t, w) = (ins[0], ins[1], ins[2]);
        let rows = self.len(w);
        let classes = self.last_dim(p);
        if rows == 0 || self.len(p) != rows * classes || !self.len(t).is_multiple_of(rows) {
            return Err("a weighted loss needs one weight per row".into());
        }
        if self.len(out) != 1 {
            return Err("the loss is a scalar".into());
        }
        let width = self.len(t) / rows;
        let (pp, pt, pw, po) = (self.ptr(p)?, self.ptr(t)?, self.ptr(w)?, self.ptr(out)?);
        let (code, delta) = kind.code();
        let e = &mut self.e;
        let args = [
            e.iconst(code as i64),
            e.b.ins().f32const(delta),
            pp,
            pt,
            pw,
            e.iconst(rows as i64),
            e.iconst(classes as i64),
            e.iconst(width as i64),
        ];
        let loss = self.imports.call_f32(&mut e.b, Helper::WeightedLoss, &args);
        e.b.ins().store(mem_flags(), loss, po, 0);
        Ok(())
    }

    /// Row `i` of `x` times `w[i]`, into `out`.
    pub(super) fn scale_rows(&mut self, x: TensorId, w: TensorId, out: TensorId) -> R {
        self.same_len(x, out)?;
        let rows = self.len(w);
        if rows == 0 || !self.len(x).is_multiple_of(rows) {
            return Err("one weight per row".into());
        }
        let cols = self.len(x) / rows;
        let (px, pw, po) = (self.ptr(x)?, self.ptr(w)?, self.ptr(out)?);
        self.rows(rows, cols, |e, rb| {
            // The row's weight sits at `rb / cols`: rows are `cols` floats long.
            let r = e.b.ins().udiv_imm_u(rb, cols as i64);
            let wv = e.ld(types::F32, pw, r);
            e.for_loop(0, (cols * 4) as i64, 4, |e, jb| {
                let at = e.b.ins().iadd(rb, jb);
                let v = e.ld(types::F32, px, at);
                let v = e.fmul(v, wv);
                e.st(v, po, at);
            });
        });
        Ok(())
    }
}
