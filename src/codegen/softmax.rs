//! IR -> CLIF for softmax over the last axis and its gradient, and the row helpers
//! the fused softmax losses share with them.

use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{types, InstBuilder, Value};

use super::kernels::Emitter;
use super::lower::{fold, mem_flags, Lower, R};
use crate::ir::graph::{Op, TensorId};

impl Lower<'_, '_, '_> {
    pub(super) fn softmax(&mut self, x: TensorId, out: TensorId) -> R {
        self.same_len(x, out)?;
        let cols = self.last_dim(out);
        if cols == 0 {
            return Ok(());
        }
        let rows = self.len(out) / cols;
        let (px, po) = (self.ptr(x)?, self.ptr(out)?);
        self.rows(rows, cols, |e, r| {
            let xr = e.b.ins().iadd(px, r);
            let or = e.b.ins().iadd(po, r);
            let s = exp_shifted_row(e, xr, or, cols);
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

    /// `y * (dy - sum(dy * y))` per row, from the inputs `(y = softmax(x), dy)`.
    pub(super) fn softmax_grad(&mut self, y: TensorId, dy: TensorId, out: TensorId) -> R {
        self.same_len(y, out)?;
        self.same_len(dy, out)?;
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
            let z = e.b.ins().f32const(0.0);
            let s = fold(e, 0..cols, z, Emitter::fadd, |e, j| {
                let jb = e.b.ins().ishl_imm_s(j, 2);
                let vy = e.ld(types::F32, yr, jb);
                let vd = e.ld(types::F32, dr, jb);
                e.fmul(vd, vy)
            });
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

    /// A pointer to `softmax(z)` when the graph computes it as its output (alive
    /// through the whole function: the trainer reads it after the step) before the
    /// node writing `user`, so that a fused softmax loss's gradient need not compute
    /// it again.
    pub(super) fn softmax_of(
        &mut self,
        z: TensorId,
        user: TensorId,
    ) -> Result<Option<Value>, String> {
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
}

/// Row-wise max, `exp(x - max)` into `or`, and returns the row sum. Used by softmax
/// and the fused softmax losses.
pub(super) fn exp_shifted_row(e: &mut Emitter, xr: Value, or: Value, cols: usize) -> Value {
    let m = row_max(e, xr, cols);
    let m4 = e.b.ins().splat(types::F32X4, m);
    e.map(cols, |e, ty, i| {
        let v = e.ld(ty, xr, i);
        let mv = if ty.is_vector() { m4 } else { m };
        let d = e.fsub(v, mv);
        let ex = e.exp(d);
        e.st(ex, or, i);
    });
    let z = e.b.ins().f32const(0.0);
    fold(e, 0..cols, z, Emitter::fadd, |e, j| {
        let jb = e.b.ins().ishl_imm_s(j, 2);
        e.ld(types::F32, or, jb)
    })
}

/// The maximum of a row of `cols` floats.
pub(super) fn row_max<'a>(e: &mut Emitter<'a>, xr: Value, cols: usize) -> Value {
    let first = e.b.ins().load(types::F32, mem_flags(), xr, 0);
    let larger = |e: &mut Emitter<'a>, m, v| e.sel(FloatCC::LessThan, m, v, v, m);
    fold(e, 1..cols, first, larger, |e, j| {
        let jb = e.b.ins().ishl_imm_s(j, 2);
        e.ld(types::F32, xr, jb)
    })
}
