//! IR -> CLIF for the dense layer's ops: matrix products (small ones inline, the
//! rest by a call to `nnc_sgemm`, see `helpers.rs`), the bias and its gradient.

use cranelift_codegen::ir::{types, InstBuilder, Type, Value};
use cranelift_frontend::Variable;

use super::abi::Helper;
use super::kernels::Emitter;
use super::lower::{row_chunks, Lower, INLINE_ACCUMULATORS, R};
use crate::ir::graph::TensorId;

impl Lower<'_, '_, '_> {
    /// `out = a * b`, either operand transposed: small products inline, the rest by
    /// the GEMM helper.
    pub(super) fn matmul(
        &mut self,
        a: TensorId,
        b: TensorId,
        out: TensorId,
        ta: bool,
        tb: bool,
    ) -> R {
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
        self.imports.call(&mut self.e.b, Helper::Sgemm, &args);
        Ok(())
    }

    pub(super) fn add_bias(&mut self, x: TensorId, bias: TensorId, out: TensorId) -> R {
        self.same_len(x, out)?;
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

    /// The column sums of `x` (the bias gradient).
    pub(super) fn sum_rows(&mut self, x: TensorId, out: TensorId) -> R {
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
}

/// Products up to this many multiply-adds are emitted inline: a call into the GEMM
/// (argument checks, packing, dispatch) costs more than the whole product.
const INLINE_MAX_MACS: usize = 1 << 13;
/// Inline products keep one output row's chunks unrolled; wider rows go to the GEMM.
const INLINE_MAX_COLS: usize = 64;
/// Inner (`k`) loops up to this length are unrolled.
const INLINE_UNROLL_K: usize = 16;

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
