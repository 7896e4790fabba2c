//! Code-emission helpers: loops, vector/scalar arithmetic written once for both
//! `f32x4` and `f32`, and the polynomial `exp`/`log`/`erfc` (Cranelift has no
//! transcendental instructions).

// Polynomial coefficients are kept digit for digit as published (Cephes, Numerical
// Recipes), even where f32 cannot hold every digit.
#![allow(clippy::excessive_precision)]

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData, Type, Value};
use cranelift_frontend::FunctionBuilder;

/// Plain loads and stores: the arena and the data pointers never trap here, but the
/// input pointers are not necessarily 16-byte aligned.
fn mem() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

/// The integer type with the same lane layout as a float type.
fn int_of(ty: Type) -> Type {
    if ty.is_vector() {
        types::I32X4
    } else {
        types::I32
    }
}

pub struct Emitter<'a> {
    pub b: FunctionBuilder<'a>,
}

impl<'a> Emitter<'a> {
    /// An f32 constant of type `ty` (splatted for vectors).
    pub fn fc(&mut self, ty: Type, c: f32) -> Value {
        let s = self.b.ins().f32const(c);
        if ty.is_vector() {
            self.b.ins().splat(ty, s)
        } else {
            s
        }
    }

    /// An i32 constant of the integer type matching `ty`.
    fn ic(&mut self, ty: Type, c: i32) -> Value {
        let s = self.b.ins().iconst(types::I32, i64::from(c));
        if ty.is_vector() {
            self.b.ins().splat(types::I32X4, s)
        } else {
            s
        }
    }

    pub fn iconst(&mut self, c: i64) -> Value {
        self.b.ins().iconst(types::I64, c)
    }

    /// `ptr + byte_index`, then a load of `ty`.
    pub fn ld(&mut self, ty: Type, ptr: Value, idx: Value) -> Value {
        let a = self.b.ins().iadd(ptr, idx);
        self.b.ins().load(ty, mem(), a, 0)
    }

    pub fn st(&mut self, v: Value, ptr: Value, idx: Value) {
        let a = self.b.ins().iadd(ptr, idx);
        self.b.ins().store(mem(), v, a, 0);
    }

    /// A pointer `base + elems * 4`.
    pub fn offset(&mut self, base: Value, elems: usize) -> Value {
        if elems == 0 {
            return base;
        }
        let off = self.iconst((elems * 4) as i64);
        self.b.ins().iadd(base, off)
    }

    /// `for i in (start..end).step_by(step) { body(i) }` with `i: i64`.
    pub fn for_loop(
        &mut self,
        start: i64,
        end: i64,
        step: i64,
        mut body: impl FnMut(&mut Self, Value),
    ) {
        if start >= end {
            return;
        }
        if start + step >= end {
            // One iteration: straight-line code.
            let i = self.iconst(start);
            body(self, i);
            return;
        }
        let header = self.b.create_block();
        let body_block = self.b.create_block();
        let exit = self.b.create_block();
        self.b.append_block_param(header, types::I64);
        let s = self.iconst(start);
        self.b.ins().jump(header, &[s.into()]);
        self.b.switch_to_block(header);
        let i = self.b.block_params(header)[0];
        let c = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, i, end);
        self.b.ins().brif(c, body_block, &[], exit, &[]);
        self.b.seal_block(body_block);
        self.b.seal_block(exit);
        self.b.switch_to_block(body_block);
        body(self, i);
        let next = self.b.ins().iadd_imm_s(i, step);
        self.b.ins().jump(header, &[next.into()]);
        self.b.seal_block(header);
        self.b.switch_to_block(exit);
    }

    /// `for i in 0..n { body(i) }`, as straight-line code (constant `i`) when `n` is
    /// at most `unroll`: short loops inside hot loops (pooling windows, channel
    /// chunks) cost more in loop control than in work.
    pub fn repeat(&mut self, n: usize, unroll: usize, mut body: impl FnMut(&mut Self, Value)) {
        if n <= unroll {
            for k in 0..n {
                let i = self.iconst(k as i64);
                body(self, i);
            }
        } else {
            self.for_loop(0, n as i64, 1, body);
        }
    }

    /// Calls `body(ty, byte_index)` for every element of an `n`-element map: a
    /// `f32x4` loop over the multiple-of-4 prefix, then scalar code for the rest.
    pub fn map(&mut self, n: usize, body: impl FnMut(&mut Self, Type, Value)) {
        self.map_unrolled(n, 0, body);
    }

    /// `map`, with the `f32x4` part as straight-line code when it has at most
    /// `unroll` vectors.
    pub fn map_unrolled(
        &mut self,
        n: usize,
        unroll: usize,
        mut body: impl FnMut(&mut Self, Type, Value),
    ) {
        let n4 = n / 4 * 4;
        if n4 / 4 <= unroll {
            for k in (0..n4).step_by(4) {
                let i = self.iconst((k * 4) as i64);
                body(self, types::F32X4, i);
            }
        } else {
            self.for_loop(0, (n4 * 4) as i64, 16, |e, i| body(e, types::F32X4, i));
        }
        for k in n4..n {
            let i = self.iconst((k * 4) as i64);
            body(self, types::F32, i);
        }
    }

    /// Per-lane `cond ? t : f` where `cond = a <cc> b`. On vectors this is
    /// `bitselect(fcmp)`, which becomes a single `minps`/`maxps` for min/max shapes.
    pub fn sel(&mut self, cc: FloatCC, a: Value, b: Value, t: Value, f: Value) -> Value {
        let ty = self.b.func.dfg.value_type(t);
        let c = self.b.ins().fcmp(cc, a, b);
        if ty.is_vector() {
            let m = self.b.ins().bitcast(ty, MemFlagsData::new(), c);
            self.b.ins().bitselect(m, t, f)
        } else {
            self.b.ins().select(c, t, f)
        }
    }

    /// `max(x, c)` (pseudo-max: returns `c` when `x` is NaN).
    pub fn max_c(&mut self, x: Value, c: f32) -> Value {
        let ty = self.b.func.dfg.value_type(x);
        let k = self.fc(ty, c);
        self.sel(FloatCC::LessThan, k, x, x, k)
    }

    /// `min(x, c)` (pseudo-min).
    pub fn min_c(&mut self, x: Value, c: f32) -> Value {
        let ty = self.b.func.dfg.value_type(x);
        let k = self.fc(ty, c);
        self.sel(FloatCC::LessThan, x, k, x, k)
    }

    pub fn fadd(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fadd(a, b)
    }
    pub fn fsub(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fsub(a, b)
    }
    pub fn fmul(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fmul(a, b)
    }
    pub fn fdiv(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fdiv(a, b)
    }
    pub fn fmul_c(&mut self, a: Value, c: f32) -> Value {
        let ty = self.b.func.dfg.value_type(a);
        let k = self.fc(ty, c);
        self.b.ins().fmul(a, k)
    }
    pub fn fadd_c(&mut self, a: Value, c: f32) -> Value {
        let ty = self.b.func.dfg.value_type(a);
        let k = self.fc(ty, c);
        self.b.ins().fadd(a, k)
    }
    pub fn fdiv_c(&mut self, a: Value, c: f32) -> Value {
        let ty = self.b.func.dfg.value_type(a);
        let k = self.fc(ty, c);
        self.b.ins().fdiv(a, k)
    }
    /// `c - a`.
    pub fn c_sub(&mut self, c: f32, a: Value) -> Value {
        let ty = self.b.func.dfg.value_type(a);
        let k = self.fc(ty, c);
        self.b.ins().fsub(k, a)
    }

    /// `mag` (non-negative) with the sign bit of `s`; x64 has no vector `fcopysign`.
    pub fn with_sign_of(&mut self, mag: Value, s: Value) -> Value {
        let ty = self.b.func.dfg.value_type(mag);
        let ity = int_of(ty);
        let mb = self.b.ins().bitcast(ity, MemFlagsData::new(), mag);
        let sb = self.b.ins().bitcast(ity, MemFlagsData::new(), s);
        let bit = self.ic(ty, i32::MIN);
        let sign = self.b.ins().band(sb, bit);
        let r = self.b.ins().bor(mb, sign);
        self.b.ins().bitcast(ty, MemFlagsData::new(), r)
    }

    /// Horner evaluation of `coeffs[0] * x^(n-1) + ... + coeffs[n-1]` with FMAs.
    fn poly(&mut self, x: Value, coeffs: &[f32]) -> Value {
        let ty = self.b.func.dfg.value_type(x);
        let mut acc = self.fc(ty, coeffs[0]);
        for &c in &coeffs[1..] {
            let k = self.fc(ty, c);
            acc = self.b.ins().fma(acc, x, k);
        }
        acc
    }

    /// `2^n` for integer lanes `n` in `[-126, 127]`, as floats.
    fn pow2i(&mut self, ty: Type, n: Value) -> Value {
        let bias = self.ic(ty, 127);
        let e = self.b.ins().iadd(n, bias);
        let sh = self.b.ins().iconst(types::I32, 23);
        let bits = self.b.ins().ishl(e, sh);
        self.b.ins().bitcast(ty, MemFlagsData::new(), bits)
    }

    /// `exp(x)` over the whole f32 range: overflow gives `inf`, underflow gives
    /// subnormals and then 0. Cody-Waite reduction `x = n ln2 + r`, |r| <= ln2/2, a
    /// degree-7 polynomial (Cephes `expf`), and `2^n` applied in two halves so
    /// subnormal and overflowing results round once.
    pub fn exp(&mut self, x: Value) -> Value {
        let ty = self.b.func.dfg.value_type(x);
        let x = self.max_c(x, -104.0);
        let x = self.min_c(x, 89.0);
        // Round-to-nearest through the 1.5 * 2^23 shifter: the low mantissa bits of
        // `t` hold the integer `n`.
        const SHIFTER: f32 = 12_582_912.0;
        let l2e = self.fc(ty, std::f32::consts::LOG2_E);
        let sh = self.fc(ty, SHIFTER);
        let t = self.b.ins().fma(x, l2e, sh);
        let nf = self.fsub(t, sh);
        let neg_hi = self.fc(ty, -0.693_359_4);
        let neg_lo = self.fc(ty, 2.121_944_4e-4);
        let r = self.b.ins().fma(nf, neg_hi, x);
        let r = self.b.ins().fma(nf, neg_lo, r);
        let p = self.poly(
            r,
            &[
                1.987_569_1e-4,
                1.398_2e-3,
                8.333_452e-3,
                4.166_579_6e-2,
                1.666_666_5e-1,
                5.000_000_1e-1,
            ],
        );
        let r2 = self.fmul(r, r);
        let one = self.fc(ty, 1.0);
        let r1 = self.fadd(r, one);
        let p = self.b.ins().fma(p, r2, r1);
        let ity = int_of(ty);
        let tb = self.b.ins().bitcast(ity, MemFlagsData::new(), t);
        let sb = self.ic(ty, SHIFTER.to_bits() as i32);
        let n = self.b.ins().isub(tb, sb);
        let one_i = self.b.ins().iconst(types::I32, 1);
        let n1 = self.b.ins().sshr(n, one_i);
        let n2 = self.b.ins().isub(n, n1);
        let s1 = self.pow2i(ty, n1);
        let s2 = self.pow2i(ty, n2);
        let p = self.fmul(p, s1);
        self.fmul(p, s2)
    }

    /// `ln(x)` for positive normal `x` (Cephes `logf`): `x = 2^e m`, m in
    /// `[sqrt(1/2), sqrt(2))`, a degree-9 polynomial in `m - 1`.
    pub fn log(&mut self, x: Value) -> Value {
        let ty = self.b.func.dfg.value_type(x);
        let ity = int_of(ty);
        let bits = self.b.ins().bitcast(ity, MemFlagsData::new(), x);
        let sh = self.b.ins().iconst(types::I32, 23);
        let eb = self.b.ins().sshr(bits, sh);
        let bias = self.ic(ty, 127);
        let e = self.b.ins().isub(eb, bias);
        let mask = self.ic(ty, 0x007F_FFFF);
        let mb = self.b.ins().band(bits, mask);
        let one_bits = self.ic(ty, 0x3F80_0000);
        let mb = self.b.ins().bor(mb, one_bits);
        let m = self.b.ins().bitcast(ty, MemFlagsData::new(), mb);
        let ef = self.b.ins().fcvt_from_sint(ty, e);
        // m in [1, 2): fold the upper part to [sqrt(1/2), 1) and bump the exponent.
        let sqrt2 = self.fc(ty, std::f32::consts::SQRT_2);
        let half_m = self.fmul_c(m, 0.5);
        let ef1 = self.fadd_c(ef, 1.0);
        let ef = self.sel(FloatCC::GreaterThan, m, sqrt2, ef1, ef);
        let m = self.sel(FloatCC::GreaterThan, m, sqrt2, half_m, m);
        let f = self.fadd_c(m, -1.0);
        let z = self.fmul(f, f);
        let p = self.poly(
            f,
            &[
                7.037_683_6e-2,
                -1.151_461e-1,
                1.167_699_9e-1,
                -1.242_014_1e-1,
                1.424_932_3e-1,
                -1.666_805_8e-1,
                2.000_071_4e-1,
                -2.499_999_4e-1,
                3.333_333_1e-1,
            ],
        );
        let fz = self.fmul(f, z);
        let y = self.fmul(fz, p);
        let lo = self.fc(ty, -2.121_944_4e-4);
        let y = self.b.ins().fma(ef, lo, y);
        let mhalf = self.fc(ty, -0.5);
        let y = self.b.ins().fma(z, mhalf, y);
        let r = self.fadd(f, y);
        let hi = self.fc(ty, 0.693_359_4);
        self.b.ins().fma(ef, hi, r)
    }

    /// `ln(1 + u)` for `u >= 0`, accurate for tiny `u` (Goldberg's correction:
    /// `log(w) * u / (w - 1)` with `w = 1 + u`).
    pub fn log1p_pos(&mut self, u: Value) -> Value {
        let ty = self.b.func.dfg.value_type(u);
        let w = self.fadd_c(u, 1.0);
        let lw = self.log(w);
        let wm1 = self.fadd_c(w, -1.0);
        let q = self.fdiv(u, wm1);
        let r = self.fmul(lw, q);
        let one = self.fc(ty, 1.0);
        self.sel(FloatCC::Equal, w, one, u, r)
    }

    /// `exp(x) - 1`, accurate near 0 (a Taylor polynomial for |x| < 0.5).
    pub fn expm1(&mut self, x: Value) -> Value {
        let ty = self.b.func.dfg.value_type(x);
        let e = self.exp(x);
        let big = self.fadd_c(e, -1.0);
        let p = self.poly(
            x,
            &[
                1.0 / 40320.0,
                1.0 / 5040.0,
                1.0 / 720.0,
                1.0 / 120.0,
                1.0 / 24.0,
                1.0 / 6.0,
                0.5,
                1.0,
            ],
        );
        let small = self.fmul(p, x);
        let ax = self.b.ins().fabs(x);
        let half = self.fc(ty, 0.5);
        self.sel(FloatCC::LessThan, ax, half, small, big)
    }

    /// `1 / (1 + exp(-x))`.
    pub fn sigmoid(&mut self, x: Value) -> Value {
        let ty = self.b.func.dfg.value_type(x);
        let nx = self.b.ins().fneg(x);
        let e = self.exp(nx);
        let one = self.fc(ty, 1.0);
        let d = self.fadd(one, e);
        self.fdiv(one, d)
    }

    /// `tanh(x)`: an odd polynomial for |x| < 0.625 (Cephes `tanhf`), otherwise
    /// `sign(x) (1 - 2 / (exp(2|x|) + 1))`.
    pub fn tanh(&mut self, x: Value) -> Value {
        let ty = self.b.func.dfg.value_type(x);
        let ax = self.b.ins().fabs(x);
        let two_ax = self.fmul_c(ax, 2.0);
        let e = self.exp(two_ax);
        let e1 = self.fadd_c(e, 1.0);
        let two = self.fc(ty, 2.0);
        let q = self.fdiv(two, e1);
        let big = self.c_sub(1.0, q);
        let big = self.with_sign_of(big, x);
        let z = self.fmul(x, x);
        let p = self.poly(
            z,
            &[
                -5.704_988_7e-3,
                2.063_908_9e-2,
                -5.373_971_6e-2,
                1.333_144_2e-1,
                -3.333_328_2e-1,
            ],
        );
        let zx = self.fmul(z, x);
        let small = self.b.ins().fma(p, zx, x);
        let lim = self.fc(ty, 0.625);
        self.sel(FloatCC::LessThan, ax, lim, small, big)
    }

    /// `erfc(-x / sqrt(2))`, i.e. `2 * Phi(x)`, with small relative error on both
    /// tails (Numerical Recipes' `erfcc`, fractional error < 1.2e-7).
    pub fn two_phi(&mut self, x: Value) -> Value {
        let ty = self.b.func.dfg.value_type(x);
        let ax = self.b.ins().fabs(x);
        let z = self.fmul_c(ax, std::f32::consts::FRAC_1_SQRT_2);
        let hz = self.fmul_c(z, 0.5);
        let d = self.fadd_c(hz, 1.0);
        let one = self.fc(ty, 1.0);
        let t = self.fdiv(one, d);
        let p = self.poly(
            t,
            &[
                0.170_872_77,
                -0.822_152_2,
                1.488_515_9,
                -1.135_203_9,
                0.278_868_07,
                -0.186_288_06,
                0.096_784_18,
                0.374_091_96,
                1.000_023_7,
                -1.265_512_2,
            ],
        );
        let zz = self.fmul(z, z);
        let arg = self.fsub(p, zz);
        let e = self.exp(arg);
        let tail = self.fmul(t, e); // erfc(|x| / sqrt 2)
        let upper = self.c_sub(2.0, tail);
        let zero = self.fc(ty, 0.0);
        self.sel(FloatCC::LessThan, x, zero, tail, upper)
    }
}
