//! IR -> CLIF for the image ops: im2col/col2im (the convolution itself is the
//! `MatMul` between them, see `matmul.rs`) and max and average pooling. The loops
//! take their sizes from the graph's tensors and windows, whose agreement
//! `Graph::verify` checked. Every loop visits elements in the interpreter's order,
//! so sums round the same way.

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData, Type, Value};

use super::kernels::Emitter;
use super::lower::{Lower, R};
use crate::ir::graph::{TensorId, Window};
use crate::sema::model::Padding;

/// One output pixel of a window walk: image `n`, position `(oy, ox)`, and its flat
/// index `o = (n * oh + oy) * ow + ox` (all i64).
#[derive(Clone, Copy)]
struct Pixel {
    n: Value,
    oy: Value,
    ox: Value,
    o: Value,
}

impl Lower<'_, '_, '_> {
    /// `(batch, channels)` of the image `[batch, h, w, c]` tensor `t`.
    fn image(&self, t: TensorId) -> (usize, usize) {
        (
            self.shape(t).first().copied().unwrap_or(0),
            self.last_dim(t),
        )
    }

    /// Im2col (`col2im: false`, reading `image`, writing `cols`) or its adjoint
    /// (`col2im: true`, reading `cols`, adding into `image`).
    pub(super) fn im2col(
        &mut self,
        win: &Window,
        image: TensorId,
        cols: TensorId,
        col2im: bool,
    ) -> R {
        let (b, c) = self.image(image);
        let taps = win.size[0] * win.size[1];
        if col2im || win.padding == Padding::Same {
            // Col2im accumulates; im2col leaves the padding taps at zero.
            self.zero(if col2im { image } else { cols })?;
        }
        let (pi, pc) = (self.ptr(image)?, self.ptr(cols)?);
        pixels(self.e, b, win, |e, px| {
            taps_of(e, win, px, |e, t, ip| {
                let row = e.b.ins().imul_imm_s(px.o, taps as i64);
                let row = e.b.ins().iadd(row, t);
                let src = element(e, pi, ip, c);
                let dst = element(e, pc, row, c);
                e.map_unrolled(c, UNROLL_CHANNEL_VECTORS, |e, ty, i| {
                    if col2im {
                        let acc = e.ld(ty, src, i);
                        let v = e.ld(ty, dst, i);
                        let s = e.fadd(acc, v);
                        e.st(s, src, i);
                    } else {
                        let v = e.ld(ty, src, i);
                        e.st(v, dst, i);
                    }
                });
            });
        });
        Ok(())
    }

    /// The tap index of each window's maximum (the first, on ties).
    pub(super) fn argmax(&mut self, win: &Window, x: TensorId, out: TensorId) -> R {
        let (b, c) = self.image(x);
        let (px_, po) = (self.ptr(x)?, self.ptr(out)?);
        pixels(self.e, b, win, |e, px| {
            let orow = element(e, po, px.o, c);
            e.map_unrolled(c, UNROLL_CHANNEL_VECTORS, |e, ty, i| {
                let best = e.b.declare_var(ty);
                let arg = e.b.declare_var(ty);
                let z = e.fc(ty, 0.0);
                let none = e.fc(ty, -1.0);
                e.b.def_var(best, z);
                e.b.def_var(arg, none);
                taps_of(e, win, px, |e, t, ip| {
                    let xr = element(e, px_, ip, c);
                    let v = e.ld(ty, xr, i);
                    let (bv, av) = (e.b.use_var(best), e.b.use_var(arg));
                    // The first tap, or a strictly larger element, wins.
                    let zero = e.fc(ty, 0.0);
                    let first = e.b.ins().fcmp(FloatCC::LessThan, av, zero);
                    let larger = e.b.ins().fcmp(FloatCC::GreaterThan, v, bv);
                    let take = e.b.ins().bor(first, larger);
                    let tf = tap_float(e, ty, t);
                    let nb = pick(e, ty, take, v, bv);
                    let na = pick(e, ty, take, tf, av);
                    e.b.def_var(best, nb);
                    e.b.def_var(arg, na);
                });
                let av = e.b.use_var(arg);
                e.st(av, orow, i);
            });
        });
        Ok(())
    }

    /// Gathers each window's argmax element (a select per tap, as the interpreter
    /// compares every tap with the stored index).
    pub(super) fn max_pool(
        &mut self,
        win: &Window,
        x: TensorId,
        argmax: TensorId,
        out: TensorId,
    ) -> R {
        let (b, c) = self.image(x);
        let (pxp, pa, po) = (self.ptr(x)?, self.ptr(argmax)?, self.ptr(out)?);
        pixels(self.e, b, win, |e, px| {
            let arow = element(e, pa, px.o, c);
            let orow = element(e, po, px.o, c);
            e.map_unrolled(c, UNROLL_CHANNEL_VECTORS, |e, ty, i| {
                let acc = e.b.declare_var(ty);
                let z = e.fc(ty, 0.0);
                e.b.def_var(acc, z);
                let a = e.ld(ty, arow, i);
                taps_of(e, win, px, |e, t, ip| {
                    let xr = element(e, pxp, ip, c);
                    let v = e.ld(ty, xr, i);
                    let tf = tap_float(e, ty, t);
                    let cur = e.b.use_var(acc);
                    let r = e.sel(FloatCC::Equal, a, tf, v, cur);
                    e.b.def_var(acc, r);
                });
                let r = e.b.use_var(acc);
                e.st(r, orow, i);
            });
        });
        Ok(())
    }

    pub(super) fn max_pool_grad(
        &mut self,
        win: &Window,
        argmax: TensorId,
        dy: TensorId,
        dx: TensorId,
    ) -> R {
        let (b, c) = self.image(dy);
        // Windows that tile the input exactly (a 2x2 pool of an even-sized image)
        // give every element of `dx` one term: it is written once, `0 + term` as the
        // interpreter's sum over a zeroed `dx` (so `-0` becomes `0` as there), with
        // no pass zeroing `dx` first and no read of it.
        let once = tiles_exactly(win);
        if !once {
            self.zero(dx)?;
        }
        let (pa, pd, pdx) = (self.ptr(argmax)?, self.ptr(dy)?, self.ptr(dx)?);
        pixels(self.e, b, win, |e, px| {
            let arow = element(e, pa, px.o, c);
            let drow = element(e, pd, px.o, c);
            e.map_unrolled(c, UNROLL_CHANNEL_VECTORS, |e, ty, i| {
                let a = e.ld(ty, arow, i);
                let d = e.ld(ty, drow, i);
                taps_of(e, win, px, |e, t, ip| {
                    let xr = element(e, pdx, ip, c);
                    let tf = tap_float(e, ty, t);
                    let z = e.fc(ty, 0.0);
                    let add = e.sel(FloatCC::Equal, a, tf, d, z);
                    let acc = if once { z } else { e.ld(ty, xr, i) };
                    let s = e.fadd(acc, add);
                    e.st(s, xr, i);
                });
            });
        });
        Ok(())
    }

    /// Average pooling (`grad: false`, `x` to `y`) or its gradient (`grad: true`,
    /// `dy` in `y` spread over `dx` in `x`).
    pub(super) fn avg_pool(&mut self, win: &Window, x: TensorId, y: TensorId, grad: bool) -> R {
        let (b, c) = self.image(x);
        if grad {
            self.zero(x)?;
        }
        let (pxp, py) = (self.ptr(x)?, self.ptr(y)?);
        pixels(self.e, b, win, |e, px| {
            let yrow = element(e, py, px.o, c);
            let count = window_count(e, win, px);
            let count4 = e.b.ins().splat(types::F32X4, count);
            e.map_unrolled(c, UNROLL_CHANNEL_VECTORS, |e, ty, i| {
                let n = if ty.is_vector() { count4 } else { count };
                if grad {
                    let d = e.ld(ty, yrow, i);
                    let g = e.fdiv(d, n);
                    taps_of(e, win, px, |e, _, ip| {
                        let xr = element(e, pxp, ip, c);
                        let acc = e.ld(ty, xr, i);
                        let s = e.fadd(acc, g);
                        e.st(s, xr, i);
                    });
                } else {
                    let acc = e.b.declare_var(ty);
                    let z = e.fc(ty, 0.0);
                    e.b.def_var(acc, z);
                    taps_of(e, win, px, |e, _, ip| {
                        let xr = element(e, pxp, ip, c);
                        let v = e.ld(ty, xr, i);
                        let cur = e.b.use_var(acc);
                        let s = e.fadd(cur, v);
                        e.b.def_var(acc, s);
                    });
                    let s = e.b.use_var(acc);
                    let m = e.fdiv(s, n);
                    e.st(m, yrow, i);
                }
            });
        });
        Ok(())
    }
}

/// Whether the windows cover every input element exactly once: no padding, strides
/// equal to the window, and as many windows as fit the input without a remainder.
fn tiles_exactly(win: &Window) -> bool {
    let Ok(out) = win.output() else {
        return false;
    };
    win.pad_before() == [0, 0]
        && (0..2).all(|a| win.strides[a] == win.size[a] && out[a] * win.size[a] == win.input[a])
}

/// Window axes up to this length are emitted unrolled (3x3 kernels, 2x2 pools).
const UNROLL_WINDOW: usize = 5;
/// A pixel's channels up to this many `f32x4` vectors are emitted unrolled.
pub(super) const UNROLL_CHANNEL_VECTORS: usize = 16;

/// The address of pixel `index` (i64) of a tensor of `c` channels at `base`.
fn element(e: &mut Emitter, base: Value, index: Value, c: usize) -> Value {
    let off = e.b.ins().imul_imm_s(index, (c * 4) as i64);
    e.b.ins().iadd(base, off)
}

/// A tap index (i64) as an f32 of type `ty`.
fn tap_float(e: &mut Emitter, ty: Type, t: Value) -> Value {
    let f = e.b.ins().fcvt_from_sint(types::F32, t);
    if ty.is_vector() {
        e.b.ins().splat(ty, f)
    } else {
        f
    }
}

/// Per-lane `mask ? a : b` for a float-compare mask.
fn pick(e: &mut Emitter, ty: Type, mask: Value, a: Value, b: Value) -> Value {
    if ty.is_vector() {
        let m = e.b.ins().bitcast(ty, MemFlagsData::new(), mask);
        e.b.ins().bitselect(m, a, b)
    } else {
        e.b.ins().select(mask, a, b)
    }
}

/// Runs `body` only when the i1/i8 `cond` is true.
fn if_then(e: &mut Emitter, cond: Value, body: impl FnOnce(&mut Emitter)) {
    let then = e.b.create_block();
    let merge = e.b.create_block();
    e.b.ins().brif(cond, then, &[], merge, &[]);
    e.b.seal_block(then);
    e.b.switch_to_block(then);
    body(e);
    e.b.ins().jump(merge, &[]);
    e.b.seal_block(merge);
    e.b.switch_to_block(merge);
}

/// Emits loops over every output pixel of `batch` images, in row-major order.
fn pixels(e: &mut Emitter, batch: usize, win: &Window, mut body: impl FnMut(&mut Emitter, Pixel)) {
    let [oh, ow] = win.output().unwrap_or([0, 0]);
    e.for_loop(0, batch as i64, 1, |e, n| {
        e.for_loop(0, oh as i64, 1, |e, oy| {
            e.for_loop(0, ow as i64, 1, |e, ox| {
                let o = e.b.ins().imul_imm_s(n, oh as i64);
                let o = e.b.ins().iadd(o, oy);
                let o = e.b.ins().imul_imm_s(o, ow as i64);
                let o = e.b.ins().iadd(o, ox);
                body(e, Pixel { n, oy, ox, o });
            });
        });
    });
}

/// `pos * stride + k - pad` (i64), the input coordinate of a tap.
fn coordinate(e: &mut Emitter, pos: Value, stride: usize, k: Value, pad: usize) -> Value {
    let a = e.b.ins().imul_imm_s(pos, stride as i64);
    let a = e.b.ins().iadd(a, k);
    e.b.ins().iadd_imm_s(a, -(pad as i64))
}

/// Emits loops over the taps of `px`'s window that read the input, in row-major
/// order, calling `body(tap, input_pixel)` (both i64). Valid padding needs no checks.
fn taps_of(
    e: &mut Emitter,
    win: &Window,
    px: Pixel,
    mut body: impl FnMut(&mut Emitter, Value, Value),
) {
    let [kh, kw] = win.size;
    let [h, w] = win.input;
    let pad = win.pad_before();
    let check = win.padding == Padding::Same;
    e.repeat(kh, UNROLL_WINDOW, |e, ky| {
        let iy = coordinate(e, px.oy, win.strides[0], ky, pad[0]);
        let mut row = |e: &mut Emitter| {
            e.repeat(kw, UNROLL_WINDOW, |e, kx| {
                let ix = coordinate(e, px.ox, win.strides[1], kx, pad[1]);
                let mut cell = |e: &mut Emitter| {
                    let t = e.b.ins().imul_imm_s(ky, kw as i64);
                    let t = e.b.ins().iadd(t, kx);
                    let ip = e.b.ins().imul_imm_s(px.n, h as i64);
                    let ip = e.b.ins().iadd(ip, iy);
                    let ip = e.b.ins().imul_imm_s(ip, w as i64);
                    let ip = e.b.ins().iadd(ip, ix);
                    body(e, t, ip);
                };
                if check {
                    // Unsigned: a negative coordinate is out of range too.
                    let inside = e.b.ins().icmp_imm_u(IntCC::UnsignedLessThan, ix, w as i64);
                    if_then(e, inside, cell);
                } else {
                    cell(e);
                }
            });
        };
        if check {
            let inside = e.b.ins().icmp_imm_u(IntCC::UnsignedLessThan, iy, h as i64);
            if_then(e, inside, row);
        } else {
            row(e);
        }
    });
}

/// How many taps of `px`'s window read the input, as an f32: the product over both
/// axes of `min(start + k, n) - max(start, 0)` with `start = pos * s - pad`.
fn window_count(e: &mut Emitter, win: &Window, px: Pixel) -> Value {
    let pad = win.pad_before();
    let mut count = e.iconst(1);
    for (a, pos) in [px.oy, px.ox].into_iter().enumerate() {
        let zero = e.iconst(0);
        let start = coordinate(e, pos, win.strides[a], zero, pad[a]);
        let end = e.b.ins().iadd_imm_s(start, win.size[a] as i64);
        let n = e.iconst(win.input[a] as i64);
        let over = e.b.ins().icmp(IntCC::SignedGreaterThan, end, n);
        let end = e.b.ins().select(over, n, end);
        let under = e.b.ins().icmp(IntCC::SignedLessThan, start, zero);
        let start = e.b.ins().select(under, zero, start);
        let len = e.b.ins().isub(end, start);
        count = e.b.ins().imul(count, len);
    }
    e.b.ins().fcvt_from_sint(types::F32, count)
}
