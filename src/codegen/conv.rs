//! IR -> CLIF for the image and normalization ops: im2col/col2im (the convolution
//! itself is the `MatMul` between them, on the GEMM helper), max and average pooling,
//! batch normalization and the moving averages. Every loop visits elements in the
//! interpreter's order, so sums round the same way.

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData, Type, Value};

use super::kernels::Emitter;
use super::lower::Lower;
use crate::ir::graph::{Node, Op, TensorId, Window};
use crate::sema::model::Padding;

type R = Result<(), String>;

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
    /// Lowers the ops of this file; `lower` sends them here.
    pub(super) fn image_node(&mut self, node: &Node) -> R {
        let ins = &node.inputs;
        let out = node.output;
        if let Op::MovingAverage { momentum } = node.op {
            self.check_inputs(node, 2)?;
            self.same_len(ins[0], ins[1])?;
            if out != ins[0] {
                return Err("a moving average updates its first input in place".into());
            }
            return self.moving_average(ins[0], ins[1], momentum);
        }
        let count = self.graph.tensors.len();
        if out >= count || ins.iter().any(|&t| t >= count) {
            return Err("a tensor does not exist".into());
        }
        let shapes: Vec<&[usize]> = ins
            .iter()
            .map(|&t| &self.graph.tensors[t].shape[..])
            .collect();
        let want = node.op.output_shape(&shapes)?;
        if want != self.graph.tensors[out].shape {
            return Err(format!(
                "output shape {:?}, expected {want:?}",
                self.graph.tensors[out].shape
            ));
        }
        match node.op {
            Op::Im2col(win) => self.im2col(&win, ins[0], out, false),
            Op::Col2im(win) => self.im2col(&win, out, ins[0], true),
            Op::MaxPool2dArgmax(win) => self.argmax(&win, ins[0], out),
            Op::MaxPool2d(win) => self.max_pool(&win, ins[0], ins[1], out),
            Op::MaxPool2dGrad(win) => self.max_pool_grad(&win, ins[0], ins[1], out),
            Op::AvgPool2d(win) => self.avg_pool(&win, ins[0], out, false),
            Op::AvgPool2dGrad(win) => self.avg_pool(&win, out, ins[0], true),
            Op::BatchMean => self.batch_stat(ins[0], None, out),
            Op::BatchVariance => self.batch_stat(ins[0], Some(ins[1]), out),
            Op::BatchNorm { epsilon, .. } => self.batch_norm(ins, out, epsilon),
            Op::BatchNormGrad { epsilon } => self.batch_norm_grad(ins, out, epsilon),
            Op::BatchNormTrainGrad { epsilon } => self.batch_norm_train_grad(ins, out, epsilon),
            Op::BatchNormGammaGrad { epsilon } => self.gamma_grad(ins, out, epsilon),
            ref op => Err(format!("{op:?} is not an image op")),
        }
    }

    fn zero(&mut self, t: TensorId) -> R {
        let p = self.ptr(t)?;
        self.e.map(self.len(t), |e, ty, i| {
            let z = e.fc(ty, 0.0);
            e.st(z, p, i);
        });
        Ok(())
    }

    /// `(batch, channels)` of the image `[batch, h, w, c]` tensor `t`.
    fn image(&self, t: TensorId) -> (usize, usize) {
        let s = &self.graph.tensors[t].shape;
        (s.first().copied().unwrap_or(0), self.last_dim(t))
    }

    /// Im2col (`col2im: false`, reading `image`, writing `cols`) or its adjoint
    /// (`col2im: true`, reading `cols`, adding into `image`).
    fn im2col(&mut self, win: &Window, image: TensorId, cols: TensorId, col2im: bool) -> R {
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

    fn argmax(&mut self, win: &Window, x: TensorId, out: TensorId) -> R {
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
    fn max_pool(&mut self, win: &Window, x: TensorId, argmax: TensorId, out: TensorId) -> R {
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

    fn max_pool_grad(&mut self, win: &Window, argmax: TensorId, dy: TensorId, dx: TensorId) -> R {
        let (b, c) = self.image(dy);
        self.zero(dx)?;
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
                    let acc = e.ld(ty, xr, i);
                    let s = e.fadd(acc, add);
                    e.st(s, xr, i);
                });
            });
        });
        Ok(())
    }

    /// Average pooling (`grad: false`, `x` to `y`) or its gradient (`grad: true`,
    /// `dy` in `y` spread over `dx` in `x`).
    fn avg_pool(&mut self, win: &Window, x: TensorId, y: TensorId, grad: bool) -> R {
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

    /// The per-channel mean (`mean: None`) or biased variance around `mean`.
    fn batch_stat(&mut self, x: TensorId, mean: Option<TensorId>, out: TensorId) -> R {
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
    fn batch_norm(&mut self, ins: &[TensorId], out: TensorId, eps: f32) -> R {
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
    fn batch_norm_grad(&mut self, ins: &[TensorId], out: TensorId, eps: f32) -> R {
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
    fn batch_norm_train_grad(&mut self, ins: &[TensorId], out: TensorId, eps: f32) -> R {
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
    fn gamma_grad(&mut self, ins: &[TensorId], out: TensorId, eps: f32) -> R {
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

    fn moving_average(&mut self, avg: TensorId, value: TensorId, momentum: f32) -> R {
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

/// Window axes up to this length are emitted unrolled (3x3 kernels, 2x2 pools).
const UNROLL_WINDOW: usize = 5;
/// A pixel's channels up to this many `f32x4` vectors are emitted unrolled.
const UNROLL_CHANNEL_VECTORS: usize = 16;

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
