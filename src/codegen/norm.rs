//! IR -> CLIF for batch normalization: the batch statistics, the normalization and
//! its gradients, and the moving averages inference uses; and layer normalization
//! (statistics per row) with its gradients. The loops take their
//! sizes from the graph's tensors, whose agreement `Graph::verify` checked. Sums over
//! the batch run in the interpreter's order, so they round the same way.

use cranelift_codegen::ir::{types, InstBuilder, Type, Value};

use super::conv::UNROLL_CHANNEL_VECTORS;
use super::kernels::Emitter;
use super::lower::{fold, Lower, R};
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

/// Layer normalization: statistics per row of the last axis, each row's computed
/// again where a gradient needs them.
impl Lower<'_, '_, '_> {
    /// `y = (x - mean) * inv * gamma + beta` per row; inputs `(x, [gamma], [beta])`.
    pub(super) fn layer_norm(
        &mut self,
        ins: &[TensorId],
        out: TensorId,
        eps: f32,
        scale: bool,
    ) -> R {
        let c = self.last_dim(out);
        if c == 0 {
            return Ok(());
        }
        let rows = self.len(out) / c;
        let px = self.ptr(ins[0])?;
        let pg = if scale { Some(self.ptr(ins[1])?) } else { None };
        let pb = if ins.len() > 1 + usize::from(scale) {
            Some(self.ptr(ins[ins.len() - 1])?)
        } else {
            None
        };
        let po = self.ptr(out)?;
        self.rows(rows, c, |e, r| {
            let xr = e.b.ins().iadd(px, r);
            let or = e.b.ins().iadd(po, r);
            let (mean, inv) = row_moments(e, xr, c, eps);
            e.map_unrolled(c, UNROLL_CHANNEL_VECTORS, |e, ty, i| {
                let x = e.ld(ty, xr, i);
                let mut y = xhat(e, ty, x, mean, inv);
                if let Some(pg) = pg {
                    let g = e.ld(ty, pg, i);
                    y = e.fmul(y, g);
                }
                if let Some(pb) = pb {
                    let b = e.ld(ty, pb, i);
                    y = e.fadd(y, b);
                }
                e.st(y, or, i);
            });
        });
        Ok(())
    }

    /// `dx = inv * (g - sum(g) / c - xhat * sum(g * xhat) / c)` per row, with
    /// `g = dy * gamma`; inputs `(x, [gamma], dy)`.
    pub(super) fn layer_norm_grad(
        &mut self,
        ins: &[TensorId],
        out: TensorId,
        eps: f32,
        scale: bool,
    ) -> R {
        let c = self.last_dim(out);
        if c == 0 {
            return Ok(());
        }
        let rows = self.len(out) / c;
        let px = self.ptr(ins[0])?;
        let pg = if scale { Some(self.ptr(ins[1])?) } else { None };
        let pd = self.ptr(ins[ins.len() - 1])?;
        let po = self.ptr(out)?;
        let n = c as f32;
        self.rows(rows, c, |e, r| {
            let xr = e.b.ins().iadd(px, r);
            let dr = e.b.ins().iadd(pd, r);
            let or = e.b.ins().iadd(po, r);
            let (mean, inv) = row_moments(e, xr, c, eps);
            // The upstream gradient times gamma, at byte index `i`.
            let scaled = |e: &mut Emitter, ty: Type, i: Value| {
                let d = e.ld(ty, dr, i);
                match pg {
                    Some(pg) => {
                        let g = e.ld(ty, pg, i);
                        e.fmul(d, g)
                    }
                    None => d,
                }
            };
            let z = e.b.ins().f32const(0.0);
            let sum_g = fold(e, 0..c, z, Emitter::fadd, |e, j| {
                let jb = e.b.ins().ishl_imm_s(j, 2);
                scaled(e, types::F32, jb)
            });
            let sum_gx = fold(e, 0..c, z, Emitter::fadd, |e, j| {
                let jb = e.b.ins().ishl_imm_s(j, 2);
                let g = scaled(e, types::F32, jb);
                let x = e.ld(types::F32, xr, jb);
                let xh = xhat(e, types::F32, x, mean, inv);
                e.fmul(g, xh)
            });
            let mg = e.fdiv_c(sum_g, n);
            let mgx = e.fdiv_c(sum_gx, n);
            e.map_unrolled(c, UNROLL_CHANNEL_VECTORS, |e, ty, i| {
                let g = scaled(e, ty, i);
                let x = e.ld(ty, xr, i);
                let xh = xhat(e, ty, x, mean, inv);
                let (mg, mgx, inv) = (splat(e, ty, mg), splat(e, ty, mgx), splat(e, ty, inv));
                let t = e.fsub(g, mg);
                let u = e.fmul(xh, mgx);
                let t = e.fsub(t, u);
                let dx = e.fmul(inv, t);
                e.st(dx, or, i);
            });
        });
        Ok(())
    }

    /// `dgamma[j] = sum over rows of dy * xhat`; inputs `(x, dy)`.
    pub(super) fn layer_norm_gamma_grad(&mut self, ins: &[TensorId], out: TensorId, eps: f32) -> R {
        let c = self.len(out);
        if c == 0 {
            return Ok(());
        }
        let rows = self.len(ins[0]) / c;
        self.zero(out)?;
        let (px, pd, po) = (self.ptr(ins[0])?, self.ptr(ins[1])?, self.ptr(out)?);
        self.rows(rows, c, |e, r| {
            let xr = e.b.ins().iadd(px, r);
            let dr = e.b.ins().iadd(pd, r);
            let (mean, inv) = row_moments(e, xr, c, eps);
            e.map_unrolled(c, UNROLL_CHANNEL_VECTORS, |e, ty, i| {
                let x = e.ld(ty, xr, i);
                let d = e.ld(ty, dr, i);
                let xh = xhat(e, ty, x, mean, inv);
                let t = e.fmul(d, xh);
                let acc = e.ld(ty, po, i);
                let s = e.fadd(acc, t);
                e.st(s, po, i);
            });
        });
        Ok(())
    }
}

/// A row's mean and `1 / sqrt(var + eps)` (biased variance), as f32 scalars, summed
/// in the interpreter's order.
fn row_moments(e: &mut Emitter, xr: Value, c: usize, eps: f32) -> (Value, Value) {
    let n = c as f32;
    let z = e.b.ins().f32const(0.0);
    let sum = fold(e, 0..c, z, Emitter::fadd, |e, j| {
        let jb = e.b.ins().ishl_imm_s(j, 2);
        e.ld(types::F32, xr, jb)
    });
    let mean = e.fdiv_c(sum, n);
    let sq = fold(e, 0..c, z, Emitter::fadd, |e, j| {
        let jb = e.b.ins().ishl_imm_s(j, 2);
        let v = e.ld(types::F32, xr, jb);
        let d = e.fsub(v, mean);
        e.fmul(d, d)
    });
    let var = e.fdiv_c(sq, n);
    let ve = e.fadd_c(var, eps);
    let sd = e.b.ins().sqrt(ve);
    let one = e.fc(types::F32, 1.0);
    (mean, e.fdiv(one, sd))
}

/// `(x - mean) * inv` for a value of type `ty` and the row's scalar statistics.
fn xhat(e: &mut Emitter, ty: Type, x: Value, mean: Value, inv: Value) -> Value {
    let (mean, inv) = (splat(e, ty, mean), splat(e, ty, inv));
    let d = e.fsub(x, mean);
    e.fmul(d, inv)
}

/// A scalar as a value of type `ty` (splat across the lanes of a vector).
fn splat(e: &mut Emitter, ty: Type, v: Value) -> Value {
    if ty.is_vector() {
        e.b.ins().splat(ty, v)
    } else {
        v
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
