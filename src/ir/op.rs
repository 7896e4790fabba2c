//! Every op of the IR: what it computes (its variant's doc), how many inputs it reads,
//! the shape of its result, and its printed name. The interpreter (`interp.rs`), the
//! gradient rules (`autodiff.rs`) and the native code (`codegen`) each match on `Op`
//! exhaustively, so a new op is flagged wherever it still needs handling. Families
//! live in files of their own and are only delegated to here and in those matches:
//! the losses (`Loss`, `LossGrad`, `WeightedLoss` carry a `loss::LossKind`) and the
//! merges (`Merge` carries a `merge::MergeOp`).

use std::fmt;

use super::loss::LossKind;
use super::merge::MergeOp;
use crate::ops::Activation;
use crate::sema::model::{Optimizer, Padding, Schedule};

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `out[m, n] = A[m, k] * B[k, n]`, where `A` is `inputs[0]` (stored `[k, m]` when
    /// `trans_a`) and `B` is `inputs[1]` (stored `[n, k]` when `trans_b`).
    MatMul { trans_a: bool, trans_b: bool },
    /// `out[m, n] = x[m, n] + bias[n]`; inputs `(x, bias)`.
    AddBias,
    /// `out[n] = sum_m x[m, n]`; inputs `(x)`.
    SumRows,
    /// `out = a + b`, same shapes; inputs `(a, b)`. Sums gradient contributions.
    Add,
    /// Elementwise activation (never `Softmax`); inputs `(x)`.
    Activate(Activation),
    /// `dx = dy * f'(x)`; inputs `(x, y, dy)` where `y = f(x)` (rules use whichever
    /// is cheaper).
    ActivateGrad(Activation),
    /// Softmax over the last axis; inputs `(x)`.
    Softmax,
    /// `dx = y * (dy - sum_last_axis(dy * y))`; inputs `(y, dy)`.
    SoftmaxGrad,
    /// Inverted dropout: `out = x * keep / (1 - rate)` where `keep` is decided per
    /// element by `dropout_keep(seed, step, index, rate)`; inputs `(x)`.
    Dropout { rate: f32, seed: u64 },
    /// `dx = dy * keep / (1 - rate)` with the same `keep` as the forward node;
    /// inputs `(dy)`.
    DropoutGrad { rate: f32, seed: u64 },
    /// The same elements under a new shape (a copy); inputs `(x)`.
    Reshape,
    /// The mean loss of the batch as a scalar `[]`; inputs `(prediction, target)`.
    Loss(LossKind),
    /// The gradient of the mean batch loss with respect to `prediction` (the logits for
    /// the fused kinds); inputs `(prediction, target)`.
    LossGrad(LossKind),
    /// Updates `inputs[0]` (a parameter) in place from `inputs[1]` (its gradient), the
    /// learning rate `inputs[2]` (the graph's persistent scalar; the optimizer's own
    /// `learning_rate` is only its initial value) and the optimizer slots
    /// `inputs[3..]`, with Keras 3's arithmetic. Reads the step counter (Keras's
    /// `iterations`, 0 for the first step). `output == inputs[0]`.
    /// Slots: sgd with momentum: `[velocity]`; adam/adamw: `[m, v]`; rmsprop: `[avg_sq]`.
    Update(Optimizer),
    /// Image patches as matrix rows, so a convolution is one `MatMul` with the kernel
    /// seen as `[kh * kw * c, filters]`: input `x` `[batch, h, w, c]` (the window's
    /// `input` is `[h, w]`), output `[batch * oh * ow, kh * kw * c]` where row
    /// `(n, oy, ox)` holds at column `(ky, kx, ci)` the element
    /// `x[n, oy * sh + ky - pad_top, ox * sw + kx - pad_left, ci]`, or 0 where that
    /// position lies in the padding. Inputs `(x)`.
    Im2col(Window),
    /// The adjoint of `Im2col` (its gradient): every entry of `cols`
    /// `[batch * oh * ow, kh * kw * c]` is added into the element of the
    /// `[batch, h, w, c]` output it was copied from; padding entries are dropped.
    /// Inputs `(cols)`.
    Col2im(Window),
    /// Where each max-pooling window's maximum is: output `[batch, oh, ow, c]` holding,
    /// as an f32, the position `ky * kw + kx` inside the window of the first (in
    /// row-major window order) largest element that is not padding. Padding never
    /// wins: TF pads max pooling with -inf. Inputs `(x)`.
    MaxPool2dArgmax(Window),
    /// Max pooling by gathering the element each window's argmax names:
    /// `out[n, oy, ox, c] = x[n, oy * sh + ky - pad_top, ox * sw + kx - pad_left, c]`
    /// with `(ky, kx)` from `argmax[n, oy, ox, c]`. Inputs `(x, argmax)`.
    MaxPool2d(Window),
    /// The gradient of `MaxPool2d` with respect to `x`: each `dy[n, oy, ox, c]` is added
    /// into `dx` (shape `[batch, h, w, c]`, zero elsewhere) at its window's argmax.
    /// Inputs `(argmax, dy)`.
    MaxPool2dGrad(Window),
    /// Average pooling over the elements of each window that are not padding (TF's
    /// `same` padding divides by the count of those): `[batch, h, w, c]` to
    /// `[batch, oh, ow, c]`. Inputs `(x)`.
    AvgPool2d(Window),
    /// The gradient of `AvgPool2d` with respect to `x`: each `dy[n, oy, ox, c]` divided
    /// by its window's count is added into every non-padding element of the window.
    /// Inputs `(dy)`.
    AvgPool2dGrad(Window),
    /// `mean[c] = sum(x[.., c]) / rows` over every axis but the last (`rows` is the
    /// element count over the channel count). Inputs `(x)`.
    BatchMean,
    /// The biased variance over every axis but the last:
    /// `var[c] = sum((x[.., c] - mean[c])^2) / rows`. Inputs `(x, mean)`.
    BatchVariance,
    /// Batch normalization over the last axis: `y = x * s + (beta - mean * s)` with
    /// `s = gamma / sqrt(var + epsilon)` per channel. Inputs `(x, mean, var, gamma,
    /// beta)`, the last four `[c]`. With `batch_stats`, `mean` and `var` must be
    /// `BatchMean(x)` and `BatchVariance(x, mean)` (training): the gradient rule then
    /// differentiates through them into `x` and gives them no gradient of their own.
    /// Without, they are constants (the moving statistics of inference).
    BatchNorm { epsilon: f32, batch_stats: bool },
    /// The gradient of `BatchNorm { batch_stats: false }` with respect to `x`:
    /// `dx = dy * gamma / sqrt(var + epsilon)`. Inputs `(var, gamma, dy)`.
    BatchNormGrad { epsilon: f32 },
    /// The gradient of `BatchNorm { batch_stats: true }` with respect to `x`, through
    /// the batch statistics: with `inv = 1 / sqrt(var + epsilon)`,
    /// `xhat = (x - mean) * inv` and `rows` as in `BatchMean`,
    /// `dx = gamma * inv * (dy - (dbeta + xhat * dgamma) / rows)`. Inputs
    /// `(x, mean, var, gamma, dy, dgamma, dbeta)` where `dgamma` and `dbeta` are the
    /// `BatchNormGammaGrad` and `SumRows` of the same `dy`.
    BatchNormTrainGrad { epsilon: f32 },
    /// The gradient of `BatchNorm` with respect to `gamma`:
    /// `dgamma[c] = sum(dy[.., c] * (x[.., c] - mean[c]) / sqrt(var[c] + epsilon))`.
    /// Inputs `(x, mean, var, dy)`.
    BatchNormGammaGrad { epsilon: f32 },
    /// Updates `inputs[0]` (a non-trainable parameter: a moving statistic) in place:
    /// `avg = avg * momentum + value * (1 - momentum)`, as Keras's batch normalization
    /// does in training. Inputs `(avg, value)`, same shapes; `output == inputs[0]`.
    MovingAverage { momentum: f32 },
    /// Sets the learning rate `inputs[0]` (the graph's persistent scalar) in place to
    /// the schedule's value at this step (`optim::scheduled_rate`), before the
    /// `Update`s read it. `output == inputs[0]`.
    LearningRate(Schedule),
    /// Keras's `clip_by_norm` of one gradient: `g * clipnorm / max(norm, clipnorm)`
    /// with `norm` its L2 norm (0 for a zero gradient). Inputs `(g)`.
    ClipNorm { clipnorm: f32 },
    /// Each element clipped to `[-limit, limit]`. Inputs `(g)`.
    ClipValue { limit: f32 },
    /// The scale of Keras's `clip_by_global_norm` over `count` gradients: with `n` the
    /// L2 norm of all their elements, `clipnorm * min(1 / n, 1 / clipnorm) + (n - n)`
    /// (NaN when `n` is not finite). Inputs: the gradients; output a scalar `[]`.
    GlobalClipScale { clipnorm: f32, count: usize },
    /// `x * s` for a scalar `s`. Inputs `(x, s)`.
    Scale,
    /// `x * scale + shift`, elementwise: the targets' label smoothing. Inputs `(x)`.
    Affine { scale: f32, shift: f32 },
    /// Each sample's weight, the weight of its class (`loss::class_weights`): targets
    /// `[rows]` or `[rows, width]` to `[rows]`. Inputs `(target, weights)`, the
    /// weights the graph's persistent `class_weights`, one per class.
    ClassWeights,
    /// The batch's loss with per-sample weights: `sum_i w_i * l_i / rows`, `l_i` the
    /// loss of row `i` alone (`loss::weighted_loss`). Inputs `(prediction, target, w)`.
    WeightedLoss(LossKind),
    /// Row `i` of `x` times `w[i]`. Inputs `(x, w)`, `w` `[rows]`.
    ScaleRows,
    /// Layer normalization over the last axis, Keras's `LayerNormalization`: for
    /// each row of `c` values, its `mean` and biased `var`, `inv = 1 / sqrt(var +
    /// epsilon)` and `y = (x - mean) * inv * gamma + beta`. Inputs `(x, gamma,
    /// beta)`, `gamma` only with `scale` and `beta` only with `center`, each `[c]`.
    LayerNorm {
        epsilon: f32,
        scale: bool,
        center: bool,
    },
    /// The gradient of `LayerNorm` with respect to `x`: with `g = dy * gamma` (`dy`
    /// without `scale`) and `xhat = (x - mean) * inv`, per row
    /// `dx = inv * (g - sum(g) / c - xhat * sum(g * xhat) / c)`. Inputs
    /// `(x, gamma, dy)`, `gamma` only with `scale`.
    LayerNormGrad { epsilon: f32, scale: bool },
    /// The gradient of `LayerNorm` with respect to `gamma`:
    /// `dgamma[j] = sum over rows of dy[.., j] * xhat[.., j]`. Inputs `(x, dy)`.
    LayerNormGammaGrad { epsilon: f32 },
    /// A merge layer's op or its gradient (`merge.rs`).
    Merge(MergeOp),
    /// Keras's kernel regularizer: the scalar `l1 * sum(|w|) + l2 * sum(w^2)` (a term
    /// only when its factor is not 0, each sum in element order); inputs `(w)`.
    Penalty { l1: f32, l2: f32 },
    /// The gradient of `Penalty` (the total loss's unit gradient times its
    /// derivative): `sign(w) * l1 + l2 * (2 * w)`, `sign(0) = 0`; inputs `(w)`.
    PenaltyGrad { l1: f32, l2: f32 },
    /// Rows of a table by index: `out[i, ..] = table[id(ids[i]), ..]` for every
    /// element `i` of `ids` (f32 values), `out` of shape `ids`' shape + `[d]` for a
    /// table `[v, d]`. `id` rounds toward zero and clamps to `[0, v)`: the data checks
    /// refuse ids that are not whole numbers in range, and no id reads outside the
    /// table. Inputs `(ids, table)`.
    Gather,
    /// The gradient of `Gather` with respect to the table: `[v, d]` zeros, then each
    /// row `dy[i, ..]` added into row `id(ids[i])`, in order. Inputs `(ids, dy)`; the
    /// table's row count is `rows`.
    GatherGrad { rows: usize },
}

/// A 2-D sliding window (a convolution kernel or a pooling window) over channels-last
/// `[batch, h, w, c]` tensors, with TF's padding rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Height and width of the input.
    pub input: [usize; 2],
    /// Height and width of the window.
    pub size: [usize; 2],
    pub strides: [usize; 2],
    /// `Valid`: windows lie inside the input, `floor((n - k) / s) + 1` of them.
    /// `Same`: `ceil(n / s)` windows over an input padded with
    /// `max((out - 1) * s + k - n, 0)` elements, half (rounded down) before.
    pub padding: Padding,
}

impl Window {
    /// Output height and width, or an error when the window does not fit.
    pub fn output(&self) -> Result<[usize; 2], String> {
        let mut out = [0; 2];
        for (a, o) in out.iter_mut().enumerate() {
            let (n, k, s) = (self.input[a], self.size[a], self.strides[a]);
            if k == 0 || s == 0 {
                return Err(format!(
                    "window {:?} with strides {:?}",
                    self.size, self.strides
                ));
            }
            *o = match self.padding.windows(n as u64, k as u64, s as u64) {
                Some(windows) => windows as usize,
                None => {
                    return Err(format!(
                        "window {:?} does not fit input {:?}",
                        self.size, self.input
                    ))
                }
            };
        }
        Ok(out)
    }

    /// The input position `[row, column]` that tap `k = [ky, kx]` of the window at
    /// output position `out = [oy, ox]` reads, or `None` in the padding.
    pub fn tap(&self, out: [usize; 2], k: [usize; 2]) -> Option<[usize; 2]> {
        let pad = self.pad_before();
        let mut at = [0; 2];
        for a in 0..2 {
            at[a] = (out[a] * self.strides[a] + k[a])
                .checked_sub(pad[a])
                .filter(|&i| i < self.input[a])?;
        }
        Some(at)
    }

    /// Padding rows and columns before the input (top, left); 0 for `Valid`.
    pub fn pad_before(&self) -> [usize; 2] {
        let mut pad = [0; 2];
        if self.padding == Padding::Same {
            for (a, p) in pad.iter_mut().enumerate() {
                let (n, k, s) = (self.input[a], self.size[a], self.strides[a]);
                let out = n.div_ceil(s.max(1));
                let total = (out.saturating_sub(1) * s + k).saturating_sub(n);
                *p = total / 2;
            }
        }
        pad
    }
}

impl Op {
    /// How many inputs the op reads.
    pub fn arity(&self) -> usize {
        match self {
            Op::SumRows
            | Op::Activate(_)
            | Op::Softmax
            | Op::Dropout { .. }
            | Op::DropoutGrad { .. }
            | Op::Reshape
            | Op::Im2col(_)
            | Op::Col2im(_)
            | Op::MaxPool2dArgmax(_)
            | Op::AvgPool2d(_)
            | Op::AvgPool2dGrad(_)
            | Op::BatchMean
            | Op::LearningRate(_)
            | Op::ClipNorm { .. }
            | Op::ClipValue { .. }
            | Op::Affine { .. }
            | Op::Penalty { .. }
            | Op::PenaltyGrad { .. } => 1,
            Op::GlobalClipScale { count, .. } => *count,
            Op::Merge(m) => m.arity(),
            Op::MatMul { .. }
            | Op::AddBias
            | Op::Add
            | Op::SoftmaxGrad
            | Op::Loss(_)
            | Op::LossGrad(_)
            | Op::MaxPool2d(_)
            | Op::MaxPool2dGrad(_)
            | Op::BatchVariance
            | Op::MovingAverage { .. }
            | Op::Scale
            | Op::ScaleRows
            | Op::ClassWeights => 2,
            Op::WeightedLoss(_) => 3,
            Op::ActivateGrad(_) | Op::BatchNormGrad { .. } => 3,
            Op::BatchNormGammaGrad { .. } => 4,
            Op::BatchNorm { .. } => 5,
            Op::BatchNormTrainGrad { .. } => 7,
            Op::LayerNorm { scale, center, .. } => 1 + usize::from(*scale) + usize::from(*center),
            Op::LayerNormGrad { scale, .. } => 2 + usize::from(*scale),
            Op::LayerNormGammaGrad { .. } => 2,
            Op::Gather | Op::GatherGrad { .. } => 2,
            // The parameter, its gradient, the learning rate, then the optimizer's slots.
            Op::Update(optimizer) => 3 + optimizer.slot_names().len(),
        }
    }

    /// The shape of the op's result from its inputs' shapes, checking them. `Reshape`
    /// (its shape is the caller's), `Update` and `MovingAverage` (they write in place)
    /// have none.
    pub fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let arity = self.arity();
        if inputs.len() != arity {
            return Err(format!(
                "{self:?} takes {arity} inputs, got {}",
                inputs.len()
            ));
        }
        let s = |i: usize| inputs[i].to_vec();
        let same = |a: usize, b: usize| -> Result<(), String> {
            if s(a) == s(b) {
                Ok(())
            } else {
                Err(format!("{self:?}: shapes {:?} and {:?} differ", s(a), s(b)))
            }
        };
        match self {
            Op::MatMul { trans_a, trans_b } => {
                let (a, b) = (s(0), s(1));
                if a.len() != 2 || b.len() != 2 {
                    return Err(format!("matmul needs matrices, got {a:?} and {b:?}"));
                }
                let (m, k) = if *trans_a { (a[1], a[0]) } else { (a[0], a[1]) };
                let (k2, n) = if *trans_b { (b[1], b[0]) } else { (b[0], b[1]) };
                if k != k2 {
                    return Err(format!("matmul: inner sizes {k} and {k2} differ"));
                }
                Ok(vec![m, n])
            }
            Op::AddBias => {
                let (x, b) = (s(0), s(1));
                if b.len() != 1 || x.last() != b.first() {
                    return Err(format!("add_bias: bias {b:?} does not fit {x:?}"));
                }
                Ok(x)
            }
            Op::SumRows => {
                let x = s(0);
                x.last()
                    .map(|&n| vec![n])
                    .ok_or_else(|| "sum_rows of a scalar".into())
            }
            Op::Add => same(0, 1).map(|_| s(0)),
            Op::PenaltyGrad { .. } => Ok(s(0)),
            Op::Penalty { .. } => Ok(vec![]),
            Op::Merge(m) => m.output_shape(inputs),
            Op::Activate(Activation::Softmax) | Op::ActivateGrad(Activation::Softmax) => {
                Err("softmax is not elementwise: use the softmax ops".into())
            }
            Op::Activate(_) | Op::Softmax | Op::Dropout { .. } | Op::DropoutGrad { .. } => Ok(s(0)),
            Op::ActivateGrad(_) => same(0, 1).and(same(1, 2)).map(|_| s(0)),
            Op::SoftmaxGrad => same(0, 1).map(|_| s(0)),
            Op::Loss(kind) | Op::LossGrad(kind) => {
                let (p, mut t) = (s(0), s(1));
                if kind.sparse() {
                    t.push(*p.last().unwrap_or(&0));
                }
                if p != t || p.is_empty() {
                    return Err(format!(
                        "{self:?}: target {:?} does not fit prediction {p:?}",
                        s(1)
                    ));
                }
                Ok(if matches!(self, Op::Loss(_)) {
                    vec![]
                } else {
                    p
                })
            }
            Op::Im2col(win) => {
                let (b, [oh, ow], c) = image_of(&s(0), win)?;
                Ok(vec![b * oh * ow, win.size[0] * win.size[1] * c])
            }
            Op::Col2im(win) => {
                let [oh, ow] = win.output()?;
                let taps = win.size[0] * win.size[1];
                match s(0).as_slice() {
                    &[rows, cols] if rows % (oh * ow) == 0 && cols % taps == 0 => Ok(vec![
                        rows / (oh * ow),
                        win.input[0],
                        win.input[1],
                        cols / taps,
                    ]),
                    other => Err(format!("col2im: {other:?} are not patches of {win:?}")),
                }
            }
            Op::MaxPool2dArgmax(win) | Op::AvgPool2d(win) => {
                let (b, [oh, ow], c) = image_of(&s(0), win)?;
                Ok(vec![b, oh, ow, c])
            }
            Op::MaxPool2d(win) => {
                let (b, [oh, ow], c) = image_of(&s(0), win)?;
                let out = vec![b, oh, ow, c];
                if s(1) != out {
                    return Err(format!("max_pool: argmax {:?} does not fit {out:?}", s(1)));
                }
                Ok(out)
            }
            Op::MaxPool2dGrad(win) | Op::AvgPool2dGrad(win) => {
                let dy = s(inputs.len() - 1);
                let [oh, ow] = win.output()?;
                if matches!(self, Op::MaxPool2dGrad(_)) {
                    same(0, 1)?;
                }
                match dy.as_slice() {
                    &[b, h, w, c] if [h, w] == [oh, ow] => {
                        Ok(vec![b, win.input[0], win.input[1], c])
                    }
                    other => Err(format!(
                        "{self:?}: gradient {other:?} does not fit the window"
                    )),
                }
            }
            Op::BatchMean => {
                let x = s(0);
                x.last()
                    .map(|&n| vec![n])
                    .ok_or_else(|| "batch_mean of a scalar".into())
            }
            Op::BatchVariance | Op::BatchNorm { .. } | Op::BatchNormGammaGrad { .. } => {
                let x = s(0);
                let c = vec![*x.last().ok_or("batch statistics of a scalar")?];
                let channels = if matches!(self, Op::BatchNormGammaGrad { .. }) {
                    same(0, 3)?;
                    1..3
                } else {
                    1..inputs.len()
                };
                for i in channels {
                    if s(i) != c {
                        return Err(format!(
                            "{self:?}: {:?} is not one value per channel {c:?}",
                            s(i)
                        ));
                    }
                }
                Ok(if matches!(self, Op::BatchNorm { .. }) {
                    x
                } else {
                    c
                })
            }
            Op::BatchNormGrad { .. } => {
                let dy = s(2);
                let c = vec![*dy.last().ok_or("batch_norm_grad of a scalar")?];
                if s(0) != c || s(1) != c {
                    return Err(format!(
                        "{self:?}: {:?}, {:?} do not fit {dy:?}",
                        s(0),
                        s(1)
                    ));
                }
                Ok(dy)
            }
            Op::BatchNormTrainGrad { .. } => {
                let x = s(0);
                let c = vec![*x.last().ok_or("batch_norm_grad of a scalar")?];
                same(0, 4)?;
                for i in [1, 2, 3, 5, 6] {
                    if s(i) != c {
                        return Err(format!(
                            "{self:?}: {:?} is not one value per channel {c:?}",
                            s(i)
                        ));
                    }
                }
                Ok(x)
            }
            Op::ClipNorm { .. } | Op::ClipValue { .. } | Op::Affine { .. } => Ok(s(0)),
            Op::GlobalClipScale { .. } => Ok(vec![]),
            Op::ClassWeights => s(0)
                .first()
                .map(|&rows| vec![rows])
                .ok_or_else(|| "class weights of a scalar".into()),
            Op::WeightedLoss(kind) => {
                let rows = s(0).first().copied().unwrap_or(0);
                Op::Loss(*kind).output_shape(&inputs[..2])?;
                if s(2) != [rows] {
                    return Err(format!("weighted loss: weights {:?} for {rows} rows", s(2)));
                }
                Ok(vec![])
            }
            Op::ScaleRows => {
                if s(1) != s(0)[..1.min(s(0).len())] {
                    return Err(format!("scale_rows: weights {:?} for {:?}", s(1), s(0)));
                }
                Ok(s(0))
            }
            Op::Scale => {
                if inputs[1].iter().product::<usize>() != 1 {
                    return Err(format!("scale: {:?} is not a scalar", s(1)));
                }
                Ok(s(0))
            }
            Op::LayerNorm { .. } | Op::LayerNormGrad { .. } | Op::LayerNormGammaGrad { .. } => {
                let x = s(0);
                let c = vec![*x.last().ok_or("layer_norm of a scalar")?];
                // `dy` (the last input of the gradients) has `x`'s shape; the rest
                // are one value per channel.
                let dy = match self {
                    Op::LayerNorm { .. } => None,
                    _ => Some(inputs.len() - 1),
                };
                if let Some(dy) = dy {
                    same(0, dy)?;
                }
                for i in (1..inputs.len()).filter(|&i| Some(i) != dy) {
                    if s(i) != c {
                        return Err(format!(
                            "{self:?}: {:?} is not one value per channel {c:?}",
                            s(i)
                        ));
                    }
                }
                Ok(if matches!(self, Op::LayerNormGammaGrad { .. }) {
                    c
                } else {
                    x
                })
            }
            Op::Gather => {
                let (ids, table) = (s(0), s(1));
                match table.as_slice() {
                    &[v, d] if v > 0 => Ok(ids.iter().copied().chain([d]).collect()),
                    _ => Err(format!("gather: {table:?} is not a table of rows")),
                }
            }
            Op::GatherGrad { rows } => {
                let (ids, dy) = (s(0), s(1));
                match dy.split_last() {
                    Some((&d, lead)) if lead == ids.as_slice() && *rows > 0 => Ok(vec![*rows, d]),
                    _ => Err(format!(
                        "gather_grad: {dy:?} is not one row per id of {ids:?}"
                    )),
                }
            }
            Op::Reshape | Op::Update(_) | Op::MovingAverage { .. } | Op::LearningRate(_) => {
                Err(format!("{self:?} does not create a tensor of its own"))
            }
        }
    }
}

/// `(batch, output size, channels)` of a window over an image of shape `x`.
fn image_of(x: &[usize], win: &Window) -> Result<(usize, [usize; 2], usize), String> {
    match *x {
        [b, h, w, c] if [h, w] == win.input => Ok((b, win.output()?, c)),
        _ => Err(format!("{x:?} is not an image of size {:?}", win.input)),
    }
}

fn optimizer(o: Optimizer) -> String {
    match o {
        Optimizer::Sgd {
            learning_rate,
            momentum,
            nesterov,
        } => format!("sgd{{lr={learning_rate}, momentum={momentum}, nesterov={nesterov}}}"),
        Optimizer::Adam {
            learning_rate,
            beta_1,
            beta_2,
            epsilon,
        } => format!("adam{{lr={learning_rate}, beta_1={beta_1}, beta_2={beta_2}, epsilon={epsilon:e}}}"),
        Optimizer::AdamW {
            learning_rate,
            beta_1,
            beta_2,
            epsilon,
            weight_decay,
        } => format!(
            "adamw{{lr={learning_rate}, beta_1={beta_1}, beta_2={beta_2}, epsilon={epsilon:e}, weight_decay={weight_decay}}}"
        ),
        Optimizer::RmsProp {
            learning_rate,
            rho,
            epsilon,
        } => format!("rmsprop{{lr={learning_rate}, rho={rho}, epsilon={epsilon:e}}}"),
    }
}

fn window(w: &Window) -> String {
    let padding = match w.padding {
        Padding::Valid => "valid",
        Padding::Same => "same",
    };
    format!(
        "{{input={}x{}, size={}x{}, strides={}x{}, padding={padding}}}",
        w.input[0], w.input[1], w.size[0], w.size[1], w.strides[0], w.strides[1]
    )
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&match self {
            Op::MatMul { trans_a, trans_b } => match (trans_a, trans_b) {
                (false, false) => "matmul".into(),
                (true, false) => "matmul_tn".into(),
                (false, true) => "matmul_nt".into(),
                (true, true) => "matmul_tt".into(),
            },
            Op::AddBias => "add_bias".into(),
            Op::SumRows => "sum_rows".into(),
            Op::Add => "add".into(),
            Op::Activate(a) => a.to_string(),
            Op::ActivateGrad(a) => format!("{a}_grad"),
            Op::Softmax => "softmax".into(),
            Op::SoftmaxGrad => "softmax_grad".into(),
            Op::Dropout { rate, seed } => format!("dropout{{rate={rate}, seed={seed:#x}}}"),
            Op::DropoutGrad { rate, seed } => {
                format!("dropout_grad{{rate={rate}, seed={seed:#x}}}")
            }
            Op::Reshape => "reshape".into(),
            Op::Loss(k) => format!("loss.{}", k.name()),
            Op::LossGrad(k) => format!("loss_grad.{}", k.name()),
            Op::Update(o) => format!("update.{}", optimizer(*o)),
            Op::Im2col(w) => format!("im2col{}", window(w)),
            Op::Col2im(w) => format!("col2im{}", window(w)),
            Op::MaxPool2dArgmax(w) => format!("max_pool_argmax{}", window(w)),
            Op::MaxPool2d(w) => format!("max_pool{}", window(w)),
            Op::MaxPool2dGrad(w) => format!("max_pool_grad{}", window(w)),
            Op::AvgPool2d(w) => format!("avg_pool{}", window(w)),
            Op::AvgPool2dGrad(w) => format!("avg_pool_grad{}", window(w)),
            Op::BatchMean => "batch_mean".into(),
            Op::BatchVariance => "batch_variance".into(),
            Op::BatchNorm {
                epsilon,
                batch_stats,
            } => format!("batch_norm{{epsilon={epsilon}, batch_stats={batch_stats}}}"),
            Op::BatchNormGrad { epsilon } => format!("batch_norm_grad{{epsilon={epsilon}}}"),
            Op::BatchNormTrainGrad { epsilon } => {
                format!("batch_norm_train_grad{{epsilon={epsilon}}}")
            }
            Op::BatchNormGammaGrad { epsilon } => {
                format!("batch_norm_gamma_grad{{epsilon={epsilon}}}")
            }
            Op::MovingAverage { momentum } => format!("moving_average{{momentum={momentum}}}"),
            Op::LearningRate(schedule) => format!("learning_rate{{{schedule:?}}}"),
            Op::ClipNorm { clipnorm } => format!("clip_norm{{clipnorm={clipnorm}}}"),
            Op::ClipValue { limit } => format!("clip_value{{limit={limit}}}"),
            Op::GlobalClipScale { clipnorm, .. } => {
                format!("global_clip_scale{{clipnorm={clipnorm}}}")
            }
            Op::Scale => "scale".into(),
            Op::Affine { scale, shift } => format!("affine{{scale={scale}, shift={shift}}}"),
            Op::ClassWeights => "class_weights".into(),
            Op::WeightedLoss(k) => format!("weighted_loss.{}", k.name()),
            Op::ScaleRows => "scale_rows".into(),
            Op::Merge(m) => m.name(),
            Op::Penalty { l1, l2 } => format!("penalty{{l1={l1}, l2={l2}}}"),
            Op::PenaltyGrad { l1, l2 } => format!("penalty_grad{{l1={l1}, l2={l2}}}"),
            Op::LayerNorm {
                epsilon,
                scale,
                center,
            } => format!("layer_norm{{epsilon={epsilon}, scale={scale}, center={center}}}"),
            Op::LayerNormGrad { epsilon, scale } => {
                format!("layer_norm_grad{{epsilon={epsilon}, scale={scale}}}")
            }
            Op::LayerNormGammaGrad { epsilon } => {
                format!("layer_norm_gamma_grad{{epsilon={epsilon}}}")
            }
            Op::Gather => "gather".into(),
            Op::GatherGrad { rows } => format!("gather_grad{{rows={rows}}}"),
        })
    }
}
