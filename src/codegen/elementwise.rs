//! IR -> CLIF for the elementwise ops: sums, activations and their gradients (whose
//! native code is in `activation.rs`), copies and dropout.

use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData, Value};

use super::activation::{activate, activate_grad, grad_reads};
use super::kernels::Emitter;
use super::lower::{Lower, R};
use crate::ir::graph::TensorId;
use crate::ops::Activation;

impl Lower<'_, '_, '_> {
    pub(super) fn add(&mut self, a: TensorId, b: TensorId, out: TensorId) -> R {
        self.same_len(a, out)?;
        self.same_len(b, out)?;
        let (pa, pb, o) = (self.ptr(a)?, self.ptr(b)?, self.ptr(out)?);
        self.e.map(self.len(out), |e, ty, i| {
            let va = e.ld(ty, pa, i);
            let vb = e.ld(ty, pb, i);
            let s = e.fadd(va, vb);
            e.st(s, o, i);
        });
        Ok(())
    }

    /// `x * scale + shift` into `out`.
    pub(super) fn affine(&mut self, x: TensorId, out: TensorId, scale: f32, shift: f32) -> R {
        self.same_len(x, out)?;
        let (px, o) = (self.ptr(x)?, self.ptr(out)?);
        self.e.map(self.len(out), |e, ty, i| {
            let v = e.ld(ty, px, i);
            let v = e.fmul_c(v, scale);
            let v = e.fadd_c(v, shift);
            e.st(v, o, i);
        });
        Ok(())
    }

    pub(super) fn activate(&mut self, act: Activation, x: TensorId, out: TensorId) -> R {
        self.same_len(x, out)?;
        if act == Activation::Softmax {
            return Err("softmax is its own op".into());
        }
        let (px, o) = (self.ptr(x)?, self.ptr(out)?);
        self.e.map(self.len(out), |e, ty, i| {
            let v = e.ld(ty, px, i);
            let r = activate(e, act, v);
            e.st(r, o, i);
        });
        Ok(())
    }

    /// `dy * f'(x)` from the inputs `(x, y = f(x), dy)`.
    pub(super) fn activate_grad(&mut self, act: Activation, ins: &[TensorId], out: TensorId) -> R {
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
        let (reads_x, reads_y) = grad_reads(act);
        self.e.map(self.len(out), |e, ty, i| {
            // An input the gradient does not read is not loaded: a zero stands in.
            let mut load =
                |reads: bool, p: Value| if reads { e.ld(ty, p, i) } else { e.fc(ty, 0.0) };
            let (vx, vy) = (load(reads_x, x), load(reads_y, y));
            let vdy = e.ld(ty, dy, i);
            let r = activate_grad(e, act, vx, vy, vdy);
            e.st(r, o, i);
        });
        Ok(())
    }

    /// A reshape copies, unless the planned layout gave both names the same memory.
    pub(super) fn reshape(&mut self, x: TensorId, out: TensorId) -> R {
        self.same_len(x, out)?;
        if self.layout.offsets[x].is_some() && self.layout.offsets[x] == self.layout.offsets[out] {
            return Ok(());
        }
        let (px, o) = (self.ptr(x)?, self.ptr(out)?);
        self.e.map(self.len(out), |e, ty, i| {
            let v = e.ld(ty, px, i);
            e.st(v, o, i);
        });
        Ok(())
    }

    /// Inverted dropout (and its gradient, the same mask): each element is kept, divided
    /// by `1 - rate`, when a hash of `(seed, step, index)` is at least `rate`.
    pub(super) fn dropout(&mut self, x: TensorId, out: TensorId, rate: f32, seed: u64) -> R {
        self.same_len(x, out)?;
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
            let native = MemFlagsData::new();
            let bits = e.b.ins().bitcast(types::I32, native, scaled);
            let kept = e.b.ins().band(bits, mask);
            let r = e.b.ins().bitcast(types::F32, native, kept);
            e.st(r, po, ib);
        });
        Ok(())
    }
}

/// One splitmix64 round: `(z ^ (z >> s)) * k`.
fn mix(e: &mut Emitter, z: Value, s: i64, k: u64) -> Value {
    let sh = e.b.ins().ushr_imm_u(z, s);
    let x = e.b.ins().bxor(z, sh);
    let kv = e.iconst(k as i64);
    e.b.ins().imul(x, kv)
}
