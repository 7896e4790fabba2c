//! The reference interpreter: runs a `Graph` node by node over the arena in plain,
//! slow, obviously-correct Rust. Every JIT result is tested against it, and it runs
//! in `f64` too, for gradient checks by finite differences.

use super::graph::{dropout_keep, Graph, Op, Role, TensorId, Window};
use super::layout::Layout;
use super::loss::{class_weights, loss, loss_grad, weighted_loss};
use super::optim::{clip_norm, global_clip_scale, scheduled_rate, update};
use crate::ops::Real;

/// Runs one step (train or predict) in `f32`, as the compiled code does. `x` and `y`
/// hold the batch's samples and targets; `step` is the optimizer's iteration count
/// and the dropout step.
pub fn run(graph: &Graph, layout: &Layout, arena: &mut [f32], x: &[f32], y: &[f32], step: u64) {
    run_in(graph, layout, arena, x, y, step);
}

/// `run` of the nodes `nodes` only (see `Graph::update_start`).
pub fn run_nodes(
    graph: &Graph,
    layout: &Layout,
    nodes: std::ops::Range<usize>,
    arena: &mut [f32],
    x: &[f32],
    y: &[f32],
    step: u64,
) {
    run_range(graph, layout, nodes, arena, x, y, step);
}

/// `run` in any `Real`: the arena, input and targets hold `T`s.
pub fn run_in<T: Real>(
    graph: &Graph,
    layout: &Layout,
    arena: &mut [T],
    x: &[T],
    y: &[T],
    step: u64,
) {
    run_range(graph, layout, 0..graph.nodes.len(), arena, x, y, step);
}

fn run_range<T: Real>(
    graph: &Graph,
    layout: &Layout,
    nodes: std::ops::Range<usize>,
    arena: &mut [T],
    x: &[T],
    y: &[T],
    step: u64,
) {
    assert!(arena.len() >= layout.len, "arena smaller than its layout");
    let read = |arena: &[T], id: TensorId| -> Vec<T> {
        let n = graph.tensors[id].len();
        match graph.tensors[id].role {
            Role::Input => x[..n].to_vec(),
            Role::Target => y[..n].to_vec(),
            _ => arena[layout.range(graph, id).unwrap_or(0..0)].to_vec(),
        }
    };
    for node in &graph.nodes[nodes] {
        let ins: Vec<Vec<T>> = node.inputs.iter().map(|&i| read(arena, i)).collect();
        let shape = |i: usize| &graph.tensors[node.inputs[i]].shape;
        let result: Vec<T> = match &node.op {
            Op::MatMul { trans_a, trans_b } => {
                let (a, b) = (&ins[0], &ins[1]);
                let (sa, sb) = (shape(0), shape(1));
                let (m, k) = if *trans_a {
                    (sa[1], sa[0])
                } else {
                    (sa[0], sa[1])
                };
                let n = if *trans_b { sb[0] } else { sb[1] };
                let mut out = vec![T::zero(); m * n];
                for i in 0..m {
                    for j in 0..n {
                        let mut acc = T::zero();
                        for p in 0..k {
                            let av = if *trans_a { a[p * m + i] } else { a[i * k + p] };
                            let bv = if *trans_b { b[j * k + p] } else { b[p * n + j] };
                            acc += av * bv;
                        }
                        out[i * n + j] = acc;
                    }
                }
                out
            }
            Op::AddBias => {
                let n = ins[1].len();
                ins[0]
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| v + ins[1][i % n])
                    .collect()
            }
            Op::SumRows => {
                let n = graph.tensors[node.output].len();
                let mut out = vec![T::zero(); n];
                for (i, &v) in ins[0].iter().enumerate() {
                    out[i % n] += v;
                }
                out
            }
            Op::Add => ins[0].iter().zip(&ins[1]).map(|(&a, &b)| a + b).collect(),
            Op::Activate(a) => ins[0].iter().map(|&v| a.apply(v)).collect(),
            Op::ActivateGrad(a) => (0..ins[0].len())
                .map(|i| ins[2][i] * a.derivative(ins[0][i], ins[1][i]))
                .collect(),
            Op::Softmax => rows(&ins[0], last(shape(0)))
                .flat_map(|r| {
                    let m = r.iter().fold(r[0], |a, &b| a.max(b));
                    let e: Vec<T> = r.iter().map(|&v| (v - m).exp()).collect();
                    let s = e.iter().fold(T::zero(), |a, &b| a + b);
                    e.into_iter().map(move |v| v / s)
                })
                .collect(),
            Op::SoftmaxGrad => {
                let c = last(shape(0));
                rows(&ins[0], c)
                    .zip(rows(&ins[1], c))
                    .flat_map(|(y, dy)| {
                        let dot = y.iter().zip(dy).fold(T::zero(), |a, (&y, &d)| a + y * d);
                        y.iter().zip(dy).map(move |(&y, &d)| y * (d - dot))
                    })
                    .collect()
            }
            Op::Dropout { rate, seed } | Op::DropoutGrad { rate, seed } => {
                let keep_prob = T::from_f32(1.0 - rate);
                ins[0]
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        if dropout_keep(*seed, step, i as u64, *rate) {
                            v / keep_prob
                        } else {
                            T::zero()
                        }
                    })
                    .collect()
            }
            Op::Reshape => ins[0].clone(),
            Op::Loss(kind) => vec![loss(*kind, &ins[0], &ins[1], last(shape(0)))],
            Op::LossGrad(kind) => loss_grad(*kind, &ins[0], &ins[1], last(shape(0))),
            Op::Update(opt) => {
                let mut w = ins[0].clone();
                let mut slots = ins[3..].to_vec();
                update(opt, step, ins[2][0], &mut w, &ins[1], &mut slots);
                for (&id, values) in node.inputs[3..].iter().zip(&slots) {
                    write(graph, layout, arena, id, values);
                }
                w
            }
            Op::Im2col(win) => {
                let (b, c) = (shape(0)[0], last(shape(0)));
                let taps = win.size[0] * win.size[1];
                let mut out = vec![T::zero(); graph.tensors[node.output].len()];
                for_each_tap(b, win, |o, t, i| {
                    let row = (o * taps + t) * c;
                    out[row..row + c].copy_from_slice(&ins[0][i * c..(i + 1) * c]);
                });
                out
            }
            Op::Col2im(win) => {
                let shape = &graph.tensors[node.output].shape;
                let (b, c) = (shape[0], last(shape));
                let taps = win.size[0] * win.size[1];
                let mut out = vec![T::zero(); graph.tensors[node.output].len()];
                for_each_tap(b, win, |o, t, i| {
                    for ci in 0..c {
                        out[i * c + ci] += ins[0][(o * taps + t) * c + ci];
                    }
                });
                out
            }
            Op::MaxPool2dArgmax(win) => {
                let (b, c) = (shape(0)[0], last(shape(0)));
                let n = graph.tensors[node.output].len();
                let (mut best, mut arg) = (vec![T::zero(); n], vec![None; n]);
                for_each_tap(b, win, |o, t, i| {
                    for ci in 0..c {
                        let v = ins[0][i * c + ci];
                        if arg[o * c + ci].is_none() || v > best[o * c + ci] {
                            best[o * c + ci] = v;
                            arg[o * c + ci] = Some(t);
                        }
                    }
                });
                arg.iter()
                    .map(|a| T::from_f64(a.unwrap_or(0) as f64))
                    .collect()
            }
            Op::MaxPool2d(win) => {
                let (b, c) = (shape(0)[0], last(shape(0)));
                let mut out = vec![T::zero(); graph.tensors[node.output].len()];
                for_each_tap(b, win, |o, t, i| {
                    for ci in 0..c {
                        if ins[1][o * c + ci].to_f64() == t as f64 {
                            out[o * c + ci] = ins[0][i * c + ci];
                        }
                    }
                });
                out
            }
            Op::MaxPool2dGrad(win) => {
                let (b, c) = (shape(1)[0], last(shape(1)));
                let mut out = vec![T::zero(); graph.tensors[node.output].len()];
                for_each_tap(b, win, |o, t, i| {
                    for ci in 0..c {
                        if ins[0][o * c + ci].to_f64() == t as f64 {
                            out[i * c + ci] += ins[1][o * c + ci];
                        }
                    }
                });
                out
            }
            Op::AvgPool2d(win) => {
                let (b, c) = (shape(0)[0], last(shape(0)));
                let counts = tap_counts(b, win);
                let mut out = vec![T::zero(); graph.tensors[node.output].len()];
                for_each_tap(b, win, |o, _, i| {
                    for ci in 0..c {
                        out[o * c + ci] += ins[0][i * c + ci];
                    }
                });
                for (o, v) in out.iter_mut().enumerate() {
                    *v = *v / T::from_f64(counts[o / c] as f64);
                }
                out
            }
            Op::AvgPool2dGrad(win) => {
                let (b, c) = (shape(0)[0], last(shape(0)));
                let counts = tap_counts(b, win);
                let mut out = vec![T::zero(); graph.tensors[node.output].len()];
                for_each_tap(b, win, |o, _, i| {
                    for ci in 0..c {
                        out[i * c + ci] += ins[0][o * c + ci] / T::from_f64(counts[o] as f64);
                    }
                });
                out
            }
            Op::BatchMean | Op::BatchVariance => {
                let c = last(shape(0));
                let rows = T::from_f64((ins[0].len() / c) as f64);
                let mut out = vec![T::zero(); c];
                for (i, &v) in ins[0].iter().enumerate() {
                    out[i % c] += match node.op {
                        Op::BatchMean => v,
                        _ => (v - ins[1][i % c]) * (v - ins[1][i % c]),
                    };
                }
                out.into_iter().map(|s| s / rows).collect()
            }
            Op::BatchNorm { epsilon, .. } => {
                let c = last(shape(0));
                let eps = T::from_f32(*epsilon);
                ins[0]
                    .iter()
                    .enumerate()
                    .map(|(i, &x)| {
                        let (m, v, g, b) =
                            (ins[1][i % c], ins[2][i % c], ins[3][i % c], ins[4][i % c]);
                        let s = g / (v + eps).sqrt();
                        x * s + (b - m * s)
                    })
                    .collect()
            }
            Op::BatchNormGrad { epsilon } => {
                let c = last(shape(2));
                let eps = T::from_f32(*epsilon);
                ins[2]
                    .iter()
                    .enumerate()
                    .map(|(i, &dy)| dy * (ins[1][i % c] / (ins[0][i % c] + eps).sqrt()))
                    .collect()
            }
            Op::BatchNormTrainGrad { epsilon } => {
                let c = last(shape(0));
                let rows = T::from_f64((ins[0].len() / c) as f64);
                let eps = T::from_f32(*epsilon);
                let (x, mean, var, gamma, dy, dgamma, dbeta) = (
                    &ins[0], &ins[1], &ins[2], &ins[3], &ins[4], &ins[5], &ins[6],
                );
                (0..x.len())
                    .map(|i| {
                        let ch = i % c;
                        let inv = T::one() / (var[ch] + eps).sqrt();
                        let xhat = (x[i] - mean[ch]) * inv;
                        let centred = dy[i] - (dbeta[ch] + xhat * dgamma[ch]) / rows;
                        gamma[ch] * inv * centred
                    })
                    .collect()
            }
            Op::BatchNormGammaGrad { epsilon } => {
                let c = last(shape(0));
                let eps = T::from_f32(*epsilon);
                let mut out = vec![T::zero(); c];
                for (i, &x) in ins[0].iter().enumerate() {
                    let ch = i % c;
                    let inv = T::one() / (ins[2][ch] + eps).sqrt();
                    out[ch] += ins[3][i] * ((x - ins[1][ch]) * inv);
                }
                out
            }
            Op::LearningRate(schedule) => vec![T::from_f32(scheduled_rate(schedule, step))],
            Op::ClipNorm { clipnorm } => clip_norm(&ins[0], *clipnorm),
            Op::ClipValue { limit } => {
                let (lo, hi) = (T::from_f32(-limit), T::from_f32(*limit));
                ins[0].iter().map(|&v| v.max(lo).min(hi)).collect()
            }
            Op::GlobalClipScale { clipnorm, .. } => vec![global_clip_scale(&ins, *clipnorm)],
            Op::Scale => ins[0].iter().map(|&v| v * ins[1][0]).collect(),
            Op::ClassWeights => {
                let rows = graph.tensors[node.output].len().max(1);
                class_weights(&ins[0], ins[0].len() / rows, &ins[1])
            }
            Op::WeightedLoss(kind) => {
                vec![weighted_loss(
                    *kind,
                    &ins[0],
                    &ins[1],
                    last(shape(0)),
                    &ins[2],
                )]
            }
            Op::ScaleRows => {
                let cols = ins[0].len() / ins[1].len().max(1);
                ins[0]
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| v * ins[1][i / cols.max(1)])
                    .collect()
            }
            Op::Affine { scale, shift } => {
                let (a, b) = (T::from_f32(*scale), T::from_f32(*shift));
                ins[0].iter().map(|&v| v * a + b).collect()
            }
            Op::LayerNorm { epsilon, scale, .. } => {
                let c = last(shape(0));
                let eps = T::from_f32(*epsilon);
                let gamma = scale.then(|| &ins[1]);
                let beta = (ins.len() > 1 + usize::from(*scale)).then(|| &ins[ins.len() - 1]);
                rows(&ins[0], c)
                    .flat_map(|r| {
                        let (mean, inv) = row_moments(r, eps);
                        r.iter().enumerate().map(move |(j, &x)| {
                            let mut y = (x - mean) * inv;
                            if let Some(g) = gamma {
                                y = y * g[j];
                            }
                            if let Some(b) = beta {
                                y += b[j];
                            }
                            y
                        })
                    })
                    .collect()
            }
            Op::LayerNormGrad { epsilon, scale } => {
                let c = last(shape(0));
                let eps = T::from_f32(*epsilon);
                let n = T::from_f64(c as f64);
                let dy = &ins[ins.len() - 1];
                rows(&ins[0], c)
                    .zip(rows(dy, c))
                    .flat_map(|(r, d)| {
                        let (mean, inv) = row_moments(r, eps);
                        let g: Vec<T> = (0..c)
                            .map(|j| if *scale { d[j] * ins[1][j] } else { d[j] })
                            .collect();
                        let xhat: Vec<T> = r.iter().map(|&x| (x - mean) * inv).collect();
                        let sum_g = g.iter().fold(T::zero(), |a, &v| a + v);
                        let sum_gx = (0..c).fold(T::zero(), |a, j| a + g[j] * xhat[j]);
                        let (mg, mgx) = (sum_g / n, sum_gx / n);
                        (0..c).map(move |j| inv * (g[j] - mg - xhat[j] * mgx))
                    })
                    .collect()
            }
            Op::LayerNormGammaGrad { epsilon } => {
                let c = last(shape(0));
                let eps = T::from_f32(*epsilon);
                let mut out = vec![T::zero(); c];
                for (r, d) in rows(&ins[0], c).zip(rows(&ins[1], c)) {
                    let (mean, inv) = row_moments(r, eps);
                    for j in 0..c {
                        out[j] += d[j] * ((r[j] - mean) * inv);
                    }
                }
                out
            }
            Op::Gather => {
                let d = last(shape(1));
                let rows = ins[1].len() / d;
                ins[0]
                    .iter()
                    .flat_map(|&id| {
                        let r = row_index(id, rows);
                        ins[1][r * d..(r + 1) * d].iter().copied()
                    })
                    .collect()
            }
            Op::GatherGrad { rows } => {
                let d = last(shape(1));
                let mut out = vec![T::zero(); rows * d];
                for (&id, dy) in ins[0].iter().zip(ins[1].chunks_exact(d)) {
                    let r = row_index(id, *rows);
                    for (o, &g) in out[r * d..(r + 1) * d].iter_mut().zip(dy) {
                        *o += g;
                    }
                }
                out
            }
            Op::MovingAverage { momentum } => {
                let (m, rest) = (T::from_f32(*momentum), T::from_f32(1.0 - momentum));
                ins[0]
                    .iter()
                    .zip(&ins[1])
                    .map(|(&a, &v)| a * m + v * rest)
                    .collect()
            }
            Op::Merge(m) => {
                let shapes: Vec<&[usize]> = (0..ins.len()).map(|i| shape(i).as_slice()).collect();
                m.eval(&ins, &shapes, graph.tensors[node.output].len())
            }
            Op::Penalty { l1, l2 } => {
                let mut total = T::zero();
                if *l1 != 0.0 {
                    let s = ins[0].iter().fold(T::zero(), |a, &w| a + w.abs());
                    total += T::from_f32(*l1) * s;
                }
                if *l2 != 0.0 {
                    let s = ins[0].iter().fold(T::zero(), |a, &w| a + w * w);
                    total += T::from_f32(*l2) * s;
                }
                vec![total]
            }
            Op::PenaltyGrad { l1, l2 } => ins[0]
                .iter()
                .map(|&w| {
                    let mut g = T::zero();
                    if *l1 != 0.0 {
                        g += sign(w) * T::from_f32(*l1);
                    }
                    if *l2 != 0.0 {
                        g += T::from_f32(*l2) * (T::from_f32(2.0) * w);
                    }
                    g
                })
                .collect(),
        };
        write(graph, layout, arena, node.output, &result);
    }
}

/// -1, 0 or 1, as TF's `sign` (the gradient of `abs`).
fn sign<T: Real>(w: T) -> T {
    if w > T::zero() {
        T::one()
    } else if w < T::zero() {
        -T::one()
    } else {
        T::zero()
    }
}

fn write<T: Real>(graph: &Graph, layout: &Layout, arena: &mut [T], id: TensorId, values: &[T]) {
    if let Some(r) = layout.range(graph, id) {
        arena[r].copy_from_slice(values);
    }
}

/// The table row an id names: rounded toward zero, clamped to `[0, rows)`.
fn row_index<T: Real>(id: T, rows: usize) -> usize {
    let i = id.to_f64();
    if i.is_nan() || i < 0.0 {
        0
    } else {
        (i as usize).min(rows - 1)
    }
}

/// A row's mean and `1 / sqrt(var + eps)` (biased variance), summed in order.
fn row_moments<T: Real>(r: &[T], eps: T) -> (T, T) {
    let n = T::from_f64(r.len() as f64);
    let mean = r.iter().fold(T::zero(), |a, &v| a + v) / n;
    let var = r
        .iter()
        .fold(T::zero(), |a, &v| a + (v - mean) * (v - mean))
        / n;
    (mean, T::one() / (var + eps).sqrt())
}

fn last(shape: &[usize]) -> usize {
    shape.last().copied().unwrap_or(1).max(1)
}

fn rows<T>(v: &[T], n: usize) -> std::slice::ChunksExact<'_, T> {
    v.chunks_exact(n)
}

/// Calls `f(out_pixel, tap, in_pixel)` for every tap of every window over `batch`
/// images that reads the input (not the padding), in row-major order of output pixel,
/// then tap. Pixels are flat `(n, y, x)` indices, taps `ky * kw + kx`.
fn for_each_tap(batch: usize, win: &Window, mut f: impl FnMut(usize, usize, usize)) {
    let ([oh, ow], [h, w]) = (win.output().unwrap_or([0, 0]), win.input);
    let [kh, kw] = win.size;
    for n in 0..batch {
        for oy in 0..oh {
            for ox in 0..ow {
                let o = (n * oh + oy) * ow + ox;
                for ky in 0..kh {
                    for kx in 0..kw {
                        if let Some([iy, ix]) = win.tap([oy, ox], [ky, kx]) {
                            f(o, ky * kw + kx, (n * h + iy) * w + ix);
                        }
                    }
                }
            }
        }
    }
}

/// How many taps of each output pixel's window read the input.
fn tap_counts(batch: usize, win: &Window) -> Vec<usize> {
    let [oh, ow] = win.output().unwrap_or([0, 0]);
    let mut counts = vec![0; batch * oh * ow];
    for_each_tap(batch, win, |o, _, _| counts[o] += 1);
    counts
}
