//! IR -> CLIF for the merge layers of graph models: element-by-element `sub`, `mul`,
//! `scale`, `maximum`/`minimum` and its gradient, and the copies of `concat` and its
//! gradient `slice`; and the kernel regularizer's penalty and its gradient.

use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{types, InstBuilder, Value};

use super::kernels::Emitter;
use super::lower::{fold, Lower, R};
use crate::ir::graph::TensorId;
use crate::ir::merge::MergeOp;

impl Lower<'_, '_, '_> {
    /// A merge op (`ir::merge::MergeOp`) into `out`.
    pub(super) fn merge(&mut self, m: MergeOp, ins: &[TensorId], out: TensorId) -> R {
        match m {
            MergeOp::Sub => self.binary(ins[0], ins[1], out, |e, a, b| e.fsub(a, b)),
            MergeOp::Mul => self.binary(ins[0], ins[1], out, |e, a, b| e.fmul(a, b)),
            MergeOp::ScaleBy(factor) => self.scale_by(ins[0], out, factor),
            MergeOp::Extremum { max } => self.extremum(ins[0], ins[1], out, max),
            MergeOp::ExtremumGrad { max, first } => self.extremum_grad(ins, out, max, first),
            MergeOp::Concat { axis, .. } => self.concat(ins, out, axis),
            MergeOp::Slice { axis, start, .. } => self.slice(ins[0], out, axis, start),
        }
    }

    /// `out = f(a, b)` element by element, `f32x4` lanes where it fits.
    pub(super) fn binary(
        &mut self,
        a: TensorId,
        b: TensorId,
        out: TensorId,
        f: impl Fn(&mut Emitter, Value, Value) -> Value,
    ) -> R {
        self.same_len(a, out)?;
        self.same_len(b, out)?;
        let (pa, pb, o) = (self.ptr(a)?, self.ptr(b)?, self.ptr(out)?);
        self.e.map(self.len(out), |e, ty, i| {
            let va = e.ld(ty, pa, i);
            let vb = e.ld(ty, pb, i);
            let r = f(e, va, vb);
            e.st(r, o, i);
        });
        Ok(())
    }

    pub(super) fn scale_by(&mut self, x: TensorId, out: TensorId, factor: f32) -> R {
        self.same_len(x, out)?;
        let (px, o) = (self.ptr(x)?, self.ptr(out)?);
        self.e.map(self.len(out), |e, ty, i| {
            let v = e.ld(ty, px, i);
            let r = e.fmul_c(v, factor);
            e.st(r, o, i);
        });
        Ok(())
    }

    /// `max(a, b)` or `min(a, b)`, `a` on a tie (the interpreter's `first_wins`).
    pub(super) fn extremum(&mut self, a: TensorId, b: TensorId, out: TensorId, max: bool) -> R {
        let cc = first_wins(max);
        self.binary(a, b, out, |e, va, vb| e.sel(cc, va, vb, va, vb))
    }

    /// `dy` where the chosen input (`a` when `first`) wins, else 0; inputs `(a, b, dy)`.
    pub(super) fn extremum_grad(
        &mut self,
        ins: &[TensorId],
        out: TensorId,
        max: bool,
        first: bool,
    ) -> R {
        for &t in ins {
            self.same_len(t, out)?;
        }
        let cc = first_wins(max);
        let (pa, pb, pdy, o) = (
            self.ptr(ins[0])?,
            self.ptr(ins[1])?,
            self.ptr(ins[2])?,
            self.ptr(out)?,
        );
        self.e.map(self.len(out), |e, ty, i| {
            let va = e.ld(ty, pa, i);
            let vb = e.ld(ty, pb, i);
            let dy = e.ld(ty, pdy, i);
            let zero = e.fc(ty, 0.0);
            let r = if first {
                e.sel(cc, va, vb, dy, zero)
            } else {
                e.sel(cc, va, vb, zero, dy)
            };
            e.st(r, o, i);
        });
        Ok(())
    }

    /// Concatenation along `axis`: for each index of the axes before it, every part's
    /// block in turn.
    pub(super) fn concat(&mut self, parts: &[TensorId], out: TensorId, axis: usize) -> R {
        let outer: usize = self.shape(out)[..axis].iter().product();
        let total = self.len(out) / outer.max(1);
        let mut at = 0;
        let o = self.ptr(out)?;
        for &p in parts {
            let block = self.len(p) / outer.max(1);
            if block * outer != self.len(p) || at + block > total {
                return Err(format!(
                    "part `{}` does not fit",
                    self.graph.tensors[p].name
                ));
            }
            let src = self.ptr(p)?;
            self.copy_blocks(outer, (src, block, 0), (o, total, at), block);
            at += block;
        }
        if at != total {
            return Err("the parts do not fill the output".into());
        }
        Ok(())
    }

    /// Elements `start..start + len` along `axis` of `x`.
    pub(super) fn slice(&mut self, x: TensorId, out: TensorId, axis: usize, start: usize) -> R {
        let outer: usize = self.shape(x)[..axis].iter().product();
        let inner: usize = self.shape(x)[axis + 1..].iter().product();
        let row = self.len(x) / outer.max(1);
        let block = self.len(out) / outer.max(1);
        if start * inner + block > row {
            return Err("the slice lies outside its input".into());
        }
        let (src, o) = (self.ptr(x)?, self.ptr(out)?);
        self.copy_blocks(outer, (src, row, start * inner), (o, block, 0), block);
        Ok(())
    }

    /// For `r` in `0..rows`: copies `n` floats from `src + r * src_row + src_at` to
    /// `dst + r * dst_row + dst_at` (pointers and element counts).
    fn copy_blocks(
        &mut self,
        rows: usize,
        (src, src_row, src_at): (Value, usize, usize),
        (dst, dst_row, dst_at): (Value, usize, usize),
        n: usize,
    ) {
        let src = self.e.offset(src, src_at);
        let dst = self.e.offset(dst, dst_at);
        self.e.for_loop(0, rows as i64, 1, |e, r| {
            let s_off = e.b.ins().imul_imm_s(r, (src_row * 4) as i64);
            let d_off = e.b.ins().imul_imm_s(r, (dst_row * 4) as i64);
            let s = e.b.ins().iadd(src, s_off);
            let d = e.b.ins().iadd(dst, d_off);
            e.map(n, |e, ty, i| {
                let v = e.ld(ty, s, i);
                e.st(v, d, i);
            });
        });
    }
}

impl Lower<'_, '_, '_> {
    /// `l1 * sum(|w|) + l2 * sum(w^2)` into the scalar `out`, each sum in element
    /// order as the interpreter sums.
    pub(super) fn penalty(&mut self, w: TensorId, out: TensorId, l1: f32, l2: f32) -> R {
        let (pw, o) = (self.ptr(w)?, self.ptr(out)?);
        let n = self.len(w);
        let e = &mut self.e;
        let zero = e.fc(types::F32, 0.0);
        let mut total = zero;
        for (factor, square) in [(l1, false), (l2, true)] {
            if factor == 0.0 {
                continue;
            }
            let sum = fold(
                e,
                0..n,
                zero,
                |e, a, b| e.fadd(a, b),
                |e, i| {
                    let at = e.b.ins().ishl_imm_s(i, 2);
                    let v = e.ld(types::F32, pw, at);
                    if square {
                        e.fmul(v, v)
                    } else {
                        e.b.ins().fabs(v)
                    }
                },
            );
            let term = e.fmul_c(sum, factor);
            total = e.fadd(total, term);
        }
        let at = e.iconst(0);
        e.st(total, o, at);
        Ok(())
    }

    /// `sign(w) * l1 + l2 * (2 * w)`, the terms in the interpreter's order.
    pub(super) fn penalty_grad(&mut self, w: TensorId, out: TensorId, l1: f32, l2: f32) -> R {
        self.same_len(w, out)?;
        let (pw, o) = (self.ptr(w)?, self.ptr(out)?);
        self.e.map(self.len(out), |e, ty, i| {
            let v = e.ld(ty, pw, i);
            let zero = e.fc(ty, 0.0);
            let mut g = zero;
            if l1 != 0.0 {
                let (one, minus) = (e.fc(ty, 1.0), e.fc(ty, -1.0));
                let positive = e.sel(FloatCC::GreaterThan, v, zero, one, zero);
                let sign = e.sel(FloatCC::LessThan, v, zero, minus, positive);
                let t = e.fmul_c(sign, l1);
                g = e.fadd(g, t);
            }
            if l2 != 0.0 {
                let twice = e.fmul_c(v, 2.0);
                let l2v = e.fc(ty, l2);
                let t = e.fmul(l2v, twice);
                g = e.fadd(g, t);
            }
            e.st(g, o, i);
        });
        Ok(())
    }
}

/// The comparison `a <cc> b` under which `a` is chosen (ties go to `a`).
fn first_wins(max: bool) -> FloatCC {
    if max {
        FloatCC::GreaterThanOrEqual
    } else {
        FloatCC::LessThanOrEqual
    }
}
