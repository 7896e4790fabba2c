//! IR -> CLIF for batch normalization: the batch statistics, the normalization and
//! its gradients, and the moving averages inference uses. The loops take their
//! sizes from the graph's tensors, whose agreement `Graph::verify` checked. Sums over
//! the batch run in the interpreter's order, so they round the same way.

use cranelift_codegen::ir::{InstBuilder, Type, Value};

use super::conv::UNROLL_CHANNEL_VECTORS;
use super::kernels::Emitter;
use super::lower::{Lower, R};
use crate::ir::graph::TensorId;

impl Lower<'_, '_, '_> {
    /// The per-channel mean (`mean: None`) or biased variance around `mean`.
    pub(super) fn batch_stat(&mut self, x: TensorId, mean: Option<TensorId>, out: TensorId) -> R {
        let c = self.len(out);
        if c == 0 {
            return Ok(());
        }
        let rows = self.len(x) / c;
        self.zero(out)?;
        let (px, po) = (self.ptr(x)?, self.ptr(out)?);
        let pm = mean.map(|m| self.ptr(m)).transpose()?;
        self.rows(rows, c, |e, r| {
            let xr = e.b.ins().iadd(px, r);
            e.map_unrolled(c, UNROLL_CHANNEL_VECTORS, |e, ty, i| {
                let v = e.ld(ty, xr, i);
                let term = match pm {
                    Some(pm) => {
                        let m = e.ld(ty, pm, i);
                        let d = e.fsub(v, m);
                        e.fmul(d, d)
                    }
                    None => v,
                };
                let acc = e.ld(ty, po, i);
                let s = e.fadd(acc, term);
                e.st(s, po, i);
            });
        });
        let rf = rows as f32;
        self.e.map_unrolled(c, UNROLL_CHANNEL_VECTORS, |e, ty, i| {
            let s = e.ld(ty, po, i);
            let m = e.fdiv_c(s, rf);
            e.st(m, po, i);
        });
        Ok(())
    }

    /// `y = x * s + (beta - mean * s)`, `s = gamma / sqrt(var + eps)`.
    pub(super) fn batch_norm(&mut self, ins: &[TensorId], out: TensorId, eps: f32) -> R {
        let c = self.last_dim(out);
        let rows = self.len(out) / c.max(1);
        let p = ins
            .iter()
            .map(|&t| self.ptr(t))
            .collect::<Result<Vec<_>, _>>()?;
        let po = self.ptr(out)?;
        self.rows(rows, c, |e, r| {
            let xr = e.b.ins().iadd(p[0], r);
            let or = e.b.ins().iadd(po, r);
            e.map_unrolled(c, UNROLL_CHANNEL_VECTORS, |e, ty, i| {
                let x = e.ld(ty, xr, i);
                let m = e.ld(ty, p[1], i);
                let g = e.ld(ty, p[3], i);
                let b = e.ld(ty, p[4], i);
                let s = norm_scale(e, ty, p[2], g, i, eps);
                let ms = e.fmul(m, s);
                let shift = e.fsub(b, ms);
                let xs = e.fmul(x, s);
                let y = e.fadd(xs, shift);
                e.st(y, or, i);
            });
        });
        Ok(())
    }

    /// `dx = dy * (gamma / sqrt(var + eps))`; inputs `(var, gamma, dy)`.
    pub(super) fn batch_norm_grad(&mut self, ins: &[TensorId], out: TensorId, eps: f32) -> R {
        let c = self.last_dim(out);
        let rows = self.len(out) / c.max(1);
        let (pv, pg, pd, po) = (
            self.ptr(ins[0])?,
            self.ptr(ins[1])?,
            self.ptr(ins[2])?,
            self.ptr(out)?,
        );
        self.rows(rows, c, |e, r| {
            let dr = e.b.ins().iadd(pd, r);
            let or = e.b.ins().iadd(po, r);
            e.map_unrolled(c, UNROLL_CHANNEL_VECTORS, |e, ty, i| {
                let d = e.ld(ty, dr, i);
                let g = e.ld(ty, pg, i);
                let s = norm_scale(e, ty, pv, g, i, eps);
                let dx = e.fmul(d, s);
                e.st(dx, or, i);
            });
        });
        Ok(())
    }

    /// `dx = gamma * inv * (dy - (dbeta + xhat * dgamma) / rows)`; inputs
    /// `(x, mean, var, gamma, dy, dgamma, dbeta)`.
    pub(super) fn batch_norm_train_grad(&mut self, ins: &[TensorId], out: TensorId, eps: f32) -> R {
        let c = self.last_dim(out);
        let rows = self.len(out) / c.max(1);
        let p = ins
            .iter()
            .map(|&t| self.ptr(t))
            .collect::<Result<Vec<_>, _>>()?;
        let po = self.ptr(out)?;
        let rf = rows as f32;
        self.rows(rows, c, |e, r| {
            let xr = e.b.ins().iadd(p[0], r);
            let dr = e.b.ins().iadd(p[4], r);
            let or = e.b.ins().iadd(po, r);
            e.map_unrolled(c, UNROLL_CHANNEL_VECTORS, |e, ty, i| {
                let x = e.ld(ty, xr, i);
                let m = e.ld(ty, p[1], i);
                let g = e.ld(ty, p[3], i);
                let dy = e.ld(ty, dr, i);
                let dg = e.ld(ty, p[5], i);
                let db = e.ld(ty, p[6], i);
                let inv = inv_std(e, ty, p[2], i, eps);
                let xm = e.fsub(x, m);
                let xhat = e.fmul(xm, inv);
                let t = e.fmul(xhat, dg);
                let t = e.fadd(db, t);
                let t = e.fdiv_c(t, rf);
                let centred = e.fsub(dy, t);
                let gi = e.fmul(g, inv);
                let dx = e.fmul(gi, centred);
                e.st(dx, or, i);
            });
        });
        Ok(())
    }

    /// `dgamma = sum_rows(dy * ((x - mean) * inv))`; inputs `(x, mean, var, dy)`.
    pub(super) fn gamma_grad(&mut self, ins: &[TensorId], out: TensorId, eps: f32) -> R {
        let c = self.len(out);
        if c == 0 {
            return Ok(());
        }
        let rows = self.len(ins[0]) / c;
        self.zero(out)?;
        let p = ins
            .iter()
            .map(|&t| self.ptr(t))
            .collect::<Result<Vec<_>, _>>()?;
        let po = self.ptr(out)?;
        self.rows(rows, c, |e, r| {
            let xr = e.b.ins().iadd(p[0], r);
            let dr = e.b.ins().iadd(p[3], r);
            e.map_unrolled(c, UNROLL_CHANNEL_VECTORS, |e, ty, i| {
                let x = e.ld(ty, xr, i);
                let m = e.ld(ty, p[1], i);
                let dy = e.ld(ty, dr, i);
                let inv = inv_std(e, ty, p[2], i, eps);
                let xm = e.fsub(x, m);
                let xhat = e.fmul(xm, inv);
                let t = e.fmul(dy, xhat);
                let acc = e.ld(ty, po, i);
                let s = e.fadd(acc, t);
                e.st(s, po, i);
            });
        });
        Ok(())
    }

    /// `avg = avg * momentum + value * (1 - momentum)`, in place.
    pub(super) fn moving_average(&mut self, avg: TensorId, value: TensorId, momentum: f32) -> R {
        let (pa, pv) = (self.ptr(avg)?, self.ptr(value)?);
        let rest = 1.0 - momentum;
        self.e.map(self.len(avg), |e, ty, i| {
            let a = e.ld(ty, pa, i);
            let v = e.ld(ty, pv, i);
            let am = e.fmul_c(a, momentum);
            let vr = e.fmul_c(v, rest);
            let s = e.fadd(am, vr);
            e.st(s, pa, i);
        });
        Ok(())
    }
}

/// `gamma / sqrt(var[i] + eps)`.
fn norm_scale(e: &mut Emitter, ty: Type, pv: Value, g: Value, i: Value, eps: f32) -> Value {
    let v = e.ld(ty, pv, i);
    let ve = e.fadd_c(v, eps);
    let sd = e.b.ins().sqrt(ve);
    e.fdiv(g, sd)
}

/// `1 / sqrt(var[i] + eps)`.
fn inv_std(e: &mut Emitter, ty: Type, pv: Value, i: Value, eps: f32) -> Value {
    let one = e.fc(ty, 1.0);
    norm_scale(e, ty, pv, one, i, eps)
}
