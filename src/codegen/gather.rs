//! IR -> CLIF for the embedding lookup: `Gather` copies the table row each id names,
//! `GatherGrad` adds each gradient row into the row its id names, in the
//! interpreter's order. Ids are f32 values: rounded toward zero and clamped to the
//! table, as the interpreter does, so no id reads or writes outside it.

use cranelift_codegen::ir::{types, InstBuilder, Value};

use super::kernels::Emitter;
use super::lower::{Lower, R};
use crate::ir::graph::TensorId;

impl Lower<'_, '_, '_> {
    /// `out[i, ..] = table[id(ids[i]), ..]`.
    pub(super) fn gather(&mut self, ids: TensorId, table: TensorId, out: TensorId) -> R {
        let d = self.last_dim(table);
        let rows = self.len(table) / d.max(1);
        let n = self.len(ids);
        if self.len(out) != n * d || rows == 0 {
            return Err("the output is not one table row per id".into());
        }
        let (pi, pt, po) = (self.ptr(ids)?, self.ptr(table)?, self.ptr(out)?);
        self.e.for_loop(0, n as i64, 1, |e, i| {
            let src = row(e, pi, i, pt, rows, d);
            let off = e.b.ins().imul_imm_s(i, (d * 4) as i64);
            let dst = e.b.ins().iadd(po, off);
            e.map(d, |e, ty, j| {
                let v = e.ld(ty, src, j);
                e.st(v, dst, j);
            });
        });
        Ok(())
    }

    /// `[rows, d]` zeros, then `dy[i, ..]` added into row `id(ids[i])`.
    pub(super) fn gather_grad(&mut self, ids: TensorId, dy: TensorId, out: TensorId) -> R {
        let d = self.last_dim(out);
        let rows = self.len(out) / d.max(1);
        let n = self.len(ids);
        if self.len(dy) != n * d || rows == 0 {
            return Err("the gradient is not one row per id".into());
        }
        self.zero(out)?;
        let (pi, pd, po) = (self.ptr(ids)?, self.ptr(dy)?, self.ptr(out)?);
        self.e.for_loop(0, n as i64, 1, |e, i| {
            let dst = row(e, pi, i, po, rows, d);
            let off = e.b.ins().imul_imm_s(i, (d * 4) as i64);
            let src = e.b.ins().iadd(pd, off);
            e.map(d, |e, ty, j| {
                let acc = e.ld(ty, dst, j);
                let g = e.ld(ty, src, j);
                let s = e.fadd(acc, g);
                e.st(s, dst, j);
            });
        });
        Ok(())
    }
}

/// The address of the row of the `[rows, d]` table at `table` that id `i` (an i64
/// index into the f32 ids at `ids`) names: truncated toward zero (NaN is 0),
/// clamped to `[0, rows)`.
fn row(e: &mut Emitter, ids: Value, i: Value, table: Value, rows: usize, d: usize) -> Value {
    let at = e.b.ins().ishl_imm_s(i, 2);
    let id = e.ld(types::F32, ids, at);
    let k = e.b.ins().fcvt_to_sint_sat(types::I64, id);
    let zero = e.iconst(0);
    let last = e.iconst(rows as i64 - 1);
    let k = e.b.ins().smax(k, zero);
    let k = e.b.ins().smin(k, last);
    let off = e.b.ins().imul_imm_s(k, (d * 4) as i64);
    e.b.ins().iadd(table, off)
}
