//! IR -> CLIF for the `Update` nodes: one optimizer step per weight tensor (SGD with
//! momentum and Nesterov, Adam and AdamW, RMSprop), and for what comes before them:
//! the learning-rate schedule and gradient clipping, in the interpreter's arithmetic
//! (`ir::optim`).

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, InstBuilder, StackSlotData, StackSlotKind, Value};

use super::abi::Helper;
use super::kernels::Emitter;
use super::lower::{fold, Lower, R};
use crate::ir::graph::TensorId;
use crate::ir::optim::one_minus;
use crate::sema::model::{Optimizer, Schedule};

/// Tensors of at least this many weights are updated by `nnc_adam` (eight at a time)
/// rather than by emitted code (four at a time), whose loop costs less than the call
/// below this.
const VECTOR_ADAM_MIN_WEIGHTS: usize = 1024;

impl Lower<'_, '_, '_> {
    /// One optimizer step on the weights `ins[0]` from the gradient `ins[1]` and the
    /// learning rate `ins[2]` (a scalar in the arena, read once per node), with the
    /// optimizer's slots (`Optimizer::slot_names`) after them.
    pub(super) fn update(&mut self, ins: &[TensorId], opt: Optimizer) -> R {
        let (tensors, slots) = ins.split_at(3);
        for &t in [tensors[1]].iter().chain(slots) {
            self.same_len(t, ins[0])?;
        }
        if self.len(ins[2]) != 1 {
            return Err("the learning rate is not a scalar".into());
        }
        let ptrs = ins
            .iter()
            .map(|&t| self.ptr(t))
            .collect::<Result<Vec<_>, _>>()?;
        let n = self.len(ins[0]);
        let (w, g) = (ptrs[0], ptrs[1]);
        let zero = self.e.iconst(0);
        let lr = self.e.ld(types::F32, ptrs[2], zero);
        let lr4 = self.e.b.ins().splat(types::F32X4, lr);
        let lr_of = move |ty: types::Type| if ty.is_vector() { lr4 } else { lr };
        let slot = |k: usize| ptrs[3 + k];
        match opt {
            Optimizer::Sgd {
                momentum, nesterov, ..
            } => {
                self.e.map(n, |e, ty, i| {
                    let wv = e.ld(ty, w, i);
                    let gv = e.ld(ty, g, i);
                    let glr = e.fmul(gv, lr_of(ty));
                    let nw = if momentum != 0.0 {
                        let m = e.ld(ty, slot(0), i);
                        let mm = e.fmul_c(m, momentum);
                        let m = e.fsub(mm, glr);
                        e.st(m, slot(0), i);
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
                beta_1,
                beta_2,
                epsilon,
                ..
            } => self.adam(&ptrs, n, lr, beta_1, beta_2, epsilon, None),
            Optimizer::AdamW {
                beta_1,
                beta_2,
                epsilon,
                weight_decay,
                ..
            } => self.adam(&ptrs, n, lr, beta_1, beta_2, epsilon, Some(weight_decay)),
            Optimizer::RmsProp { rho, epsilon, .. } => {
                let one_m_rho = one_minus(rho);
                self.e.map(n, |e, ty, i| {
                    let wv = e.ld(ty, w, i);
                    let gv = e.ld(ty, g, i);
                    let v = e.ld(ty, slot(0), i);
                    let rv = e.fmul_c(v, rho);
                    let g2 = e.fmul(gv, gv);
                    let g2 = e.fmul_c(g2, one_m_rho);
                    let v = e.fadd(rv, g2);
                    e.st(v, slot(0), i);
                    let num = e.fmul(gv, lr_of(ty));
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

    /// Writes the schedule's rate at this step into the learning rate `lr`.
    pub(super) fn learning_rate(&mut self, schedule: &Schedule, lr: TensorId) -> R {
        if self.len(lr) != 1 {
            return Err("the learning rate is not a scalar".into());
        }
        let p = self.ptr(lr)?;
        let step = self.step;
        let imports = &self.imports;
        let e = &mut *self.e;
        let t = e.b.ins().fcvt_from_uint(types::F32, step);
        let c = |e: &mut Emitter, x: f32| e.b.ins().f32const(x);
        let rate = match *schedule {
            Schedule::ExponentialDecay {
                initial,
                decay_steps,
                decay_rate,
                staircase,
            }
            | Schedule::InverseTimeDecay {
                initial,
                decay_steps,
                decay_rate,
                staircase,
            } => {
                let ds = c(e, decay_steps);
                let mut q = e.fdiv(t, ds);
                if staircase {
                    q = e.b.ins().floor(q);
                }
                let (lr0, r) = (c(e, initial), c(e, decay_rate));
                if matches!(schedule, Schedule::ExponentialDecay { .. }) {
                    let power = imports.call_f32(&mut e.b, Helper::Powf, &[r, q]);
                    e.fmul(lr0, power)
                } else {
                    let rq = e.fmul(r, q);
                    let den = e.fadd_c(rq, 1.0);
                    e.fdiv(lr0, den)
                }
            }
            Schedule::PolynomialDecay {
                initial,
                decay_steps,
                end,
                power,
                cycle,
            } => {
                let ds = c(e, decay_steps);
                let (t, steps) = if cycle {
                    let q = e.fdiv(t, ds);
                    let q = e.b.ins().ceil(q);
                    let (zero, one) = (c(e, 0.0), c(e, 1.0));
                    let times = e.sel(FloatCC::Equal, t, zero, one, q);
                    (t, e.fmul(ds, times))
                } else {
                    (e.min_c(t, decay_steps), ds)
                };
                let q = e.fdiv(t, steps);
                let left = e.c_sub(1.0, q);
                let pw = c(e, power);
                let pw = imports.call_f32(&mut e.b, Helper::Powf, &[left, pw]);
                let scaled = e.fmul_c(pw, initial - end);
                e.fadd_c(scaled, end)
            }
            Schedule::CosineDecay {
                initial,
                decay_steps,
                alpha,
                warmup_target,
                warmup_steps,
            } => {
                let decay = |e: &mut Emitter, t: Value, from: f32| {
                    let fraction = e.fdiv_c(t, decay_steps);
                    let angle = e.fmul_c(fraction, std::f32::consts::PI);
                    let cos = imports.call_f32(&mut e.b, Helper::Cosf, &[angle]);
                    let cos = e.fadd_c(cos, 1.0);
                    let cosine = e.fmul_c(cos, 0.5);
                    let d = e.fmul_c(cosine, one_minus(alpha));
                    let d = e.fadd_c(d, alpha);
                    e.fmul_c(d, from)
                };
                match warmup_target {
                    None => {
                        let t = e.min_c(t, decay_steps);
                        decay(e, t, initial)
                    }
                    Some(target) => {
                        let t = e.min_c(t, decay_steps + warmup_steps);
                        let fraction = e.fdiv_c(t, warmup_steps);
                        let warm = e.fmul_c(fraction, target - initial);
                        let warm = e.fadd_c(warm, initial);
                        let after = e.fadd_c(t, -warmup_steps);
                        let decayed = decay(e, after, target);
                        let ws = c(e, warmup_steps);
                        e.sel(FloatCC::LessThan, t, ws, warm, decayed)
                    }
                }
            }
            Schedule::PiecewiseConstantDecay {
                ref boundaries,
                ref values,
            } => {
                let mut rate = c(e, values[0]);
                for (&b, &v) in boundaries.iter().zip(&values[1..]) {
                    let passed =
                        e.b.ins()
                            .icmp_imm_u(IntCC::UnsignedGreaterThan, step, b as i64);
                    let v = c(e, v);
                    rate = e.b.ins().select(passed, v, rate);
                }
                rate
            }
        };
        let zero = e.iconst(0);
        e.st(rate, p, zero);
        Ok(())
    }

    /// Keras's `clip_by_norm` of the gradient `g` into `out` (see `optim::clip_norm`).
    pub(super) fn clip_norm(&mut self, g: TensorId, out: TensorId, clipnorm: f32) -> R {
        self.same_len(g, out)?;
        let (pg, po, n) = (self.ptr(g)?, self.ptr(out)?, self.len(g));
        let sum = self.sum_of_squares(pg, n);
        let e = &mut *self.e;
        let root = e.b.ins().sqrt(sum);
        let zero = e.b.ins().f32const(0.0);
        let norm = e.sel(FloatCC::GreaterThan, sum, zero, root, sum);
        let c = e.b.ins().f32const(clipnorm);
        let den = e.sel(FloatCC::GreaterThanOrEqual, norm, c, norm, c);
        let den4 = e.b.ins().splat(types::F32X4, den);
        e.map(n, |e, ty, i| {
            let v = e.ld(ty, pg, i);
            let v = e.fmul_c(v, clipnorm);
            let v = e.fdiv(v, if ty.is_vector() { den4 } else { den });
            e.st(v, po, i);
        });
        Ok(())
    }

    /// Each element of `g` clipped to `[-limit, limit]`, into `out`.
    pub(super) fn clip_value(&mut self, g: TensorId, out: TensorId, limit: f32) -> R {
        self.same_len(g, out)?;
        let (pg, po) = (self.ptr(g)?, self.ptr(out)?);
        self.e.map(self.len(g), |e, ty, i| {
            let v = e.ld(ty, pg, i);
            let v = e.max_c(v, -limit);
            let v = e.min_c(v, limit);
            e.st(v, po, i);
        });
        Ok(())
    }

    /// The factor of Keras's `clip_by_global_norm` over the gradients `gs`, into the
    /// scalar `out` (see `optim::global_clip_scale`).
    pub(super) fn global_clip_scale(&mut self, gs: &[TensorId], out: TensorId, clipnorm: f32) -> R {
        if self.len(out) != 1 {
            return Err("the scale is not a scalar".into());
        }
        let mut total = self.e.b.ins().f32const(0.0);
        for &g in gs {
            let (pg, n) = (self.ptr(g)?, self.len(g));
            let sum = self.sum_of_squares(pg, n);
            total = self.e.fadd(total, sum);
        }
        let po = self.ptr(out)?;
        let e = &mut *self.e;
        let norm = e.b.ins().sqrt(total);
        let one = e.b.ins().f32const(1.0);
        let inverse = e.fdiv(one, norm);
        let least = e.min_c(inverse, 1.0 / clipnorm);
        let scaled = e.fmul_c(least, clipnorm);
        let nan_if_infinite = e.fsub(norm, norm);
        let scale = e.fadd(scaled, nan_if_infinite);
        let zero = e.iconst(0);
        e.st(scale, po, zero);
        Ok(())
    }

    /// `x * s` for the scalar `s`, into `out`.
    pub(super) fn scale(&mut self, x: TensorId, s: TensorId, out: TensorId) -> R {
        self.same_len(x, out)?;
        if self.len(s) != 1 {
            return Err("the scale is not a scalar".into());
        }
        let (px, ps, po) = (self.ptr(x)?, self.ptr(s)?, self.ptr(out)?);
        let zero = self.e.iconst(0);
        let sv = self.e.ld(types::F32, ps, zero);
        let sv4 = self.e.b.ins().splat(types::F32X4, sv);
        self.e.map(self.len(x), |e, ty, i| {
            let v = e.ld(ty, px, i);
            let v = e.fmul(v, if ty.is_vector() { sv4 } else { sv });
            e.st(v, po, i);
        });
        Ok(())
    }

    /// `sum(x[i]^2)` over the `n` floats at `p`, in element order.
    fn sum_of_squares(&mut self, p: Value, n: usize) -> Value {
        let e = &mut *self.e;
        let zero = e.b.ins().f32const(0.0);
        fold(e, 0..n, zero, Emitter::fadd, |e, i| {
            let ib = e.b.ins().ishl_imm_s(i, 2);
            let v = e.ld(types::F32, p, ib);
            e.fmul(v, v)
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn adam(
        &mut self,
        ptrs: &[Value],
        n: usize,
        lr: Value,
        b1: f32,
        b2: f32,
        eps: f32,
        weight_decay: Option<f32>,
    ) {
        let (w, g, pm, pv) = (ptrs[0], ptrs[1], ptrs[3], ptrs[4]);
        // Every `Update` reads the same learning rate, which no node writes after the
        // first update: one step size serves every update with these betas.
        let key = [b1, b2].map(f32::to_bits);
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
        let (omb1, omb2) = (one_minus(b1), one_minus(b2));
        if n >= VECTOR_ADAM_MIN_WEIGHTS && self.imports.has(Helper::Adam) {
            let (wd, has_decay) = (weight_decay.unwrap_or(0.0), weight_decay.is_some());
            let n = e.iconst(n as i64);
            let mut args = vec![w, g, pm, pv, n, alpha];
            for c in [omb1, omb2, eps, wd] {
                args.push(e.b.ins().f32const(c));
            }
            args.push(lr);
            args.push(e.iconst(i64::from(has_decay)));
            self.imports.call(&mut e.b, Helper::Adam, &args);
            return;
        }
        let lr4 = e.b.ins().splat(types::F32X4, lr);
        let alpha4 = e.b.ins().splat(types::F32X4, alpha);
        e.map(n, |e, ty, i| {
            let mut wv = e.ld(ty, w, i);
            if let Some(wd) = weight_decay {
                let d = e.fmul_c(wv, wd);
                let d = e.fmul(d, if ty.is_vector() { lr4 } else { lr });
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
    fn adam_alpha(&mut self, lr: Value, b1: f32, b2: f32) -> Value {
        let one = self.e.iconst(1);
        let t = self.e.b.ins().iadd(self.step, one);
        let tf = self.e.b.ins().fcvt_from_uint(types::F32, t);
        let b1v = self.e.b.ins().f32const(b1);
        let b2v = self.e.b.ins().f32const(b2);
        let p1 = self
            .imports
            .call_f32(&mut self.e.b, Helper::Powf, &[b1v, tf]);
        let p2 = self
            .imports
            .call_f32(&mut self.e.b, Helper::Powf, &[b2v, tf]);
        let e = &mut self.e;
        let one_f = e.b.ins().f32const(1.0);
        let d2 = e.fsub(one_f, p2);
        let s2 = e.b.ins().sqrt(d2);
        let num = e.fmul(lr, s2);
        let d1 = e.fsub(one_f, p1);
        e.fdiv(num, d1)
    }
}
