//! The losses of `LossKind` and their gradients, as Keras 3 computes them: the mean
//! over the batch of a per-sample loss, which for the elementwise losses is itself a
//! mean over the last axis (so the whole thing is a mean over every element).

use super::graph::LossKind;
use super::math::{sigmoid, Real};

/// Keras's `backend.epsilon()`, the probability clip of the non-logit forms.
const EPSILON: f64 = 1e-7;

fn clip<T: Real>(p: T) -> T {
    p.max(T::from_f64(EPSILON)).min(T::from_f64(1.0 - EPSILON))
}

/// `1` where `clip` passes its argument through (and so its gradient), else `0`.
fn clip_mask<T: Real>(p: T) -> T {
    if p >= T::from_f64(EPSILON) && p <= T::from_f64(1.0 - EPSILON) {
        T::one()
    } else {
        T::zero()
    }
}

/// The class a sparse target names, or `None` when it is not an index in range (the
/// runtime validates labels; here such a row simply contributes nothing).
fn class_of<T: Real>(y: T, classes: usize) -> Option<usize> {
    let c = y.to_f64();
    (c >= 0.0 && c.fract() == 0.0 && c < classes as f64).then_some(c as usize)
}

/// Per-row one-hot of sparse targets, so the sparse forms share the dense arithmetic.
fn one_hot<T: Real>(y: &[T], classes: usize) -> Vec<T> {
    let mut out = vec![T::zero(); y.len() * classes];
    for (r, &c) in y.iter().enumerate() {
        if let Some(c) = class_of(c, classes) {
            out[r * classes + c] = T::one();
        }
    }
    out
}

fn targets<T: Real>(kind: LossKind, y: &[T], classes: usize) -> Vec<T> {
    match kind {
        LossKind::SoftmaxSparseCategoricalCrossentropy
        | LossKind::SparseCategoricalCrossentropy => one_hot(y, classes),
        _ => y.to_vec(),
    }
}

fn log_softmax_row<T: Real>(z: &[T]) -> Vec<T> {
    let m = z.iter().fold(z[0], |a, &b| a.max(b));
    let mut s = T::zero();
    for &v in z {
        s += (v - m).exp();
    }
    let lse = m + s.ln();
    z.iter().map(|&v| v - lse).collect()
}

/// The mean batch loss. `p` is the prediction (logits for the fused kinds) with
/// `classes` elements on its last axis; `y` the targets as the graph describes them.
pub fn loss<T: Real>(kind: LossKind, p: &[T], y: &[T], classes: usize) -> T {
    let n = T::from_f64(p.len() as f64);
    let rows = T::from_f64((p.len() / classes.max(1)) as f64);
    let y = targets(kind, y, classes);
    let mut total = T::zero();
    match kind {
        LossKind::Mse => {
            for (&p, &y) in p.iter().zip(&y) {
                total += (p - y) * (p - y);
            }
            total / n
        }
        LossKind::Mae => {
            for (&p, &y) in p.iter().zip(&y) {
                total += (p - y).abs();
            }
            total / n
        }
        LossKind::Huber { delta } => {
            let d = T::from_f32(delta);
            for (&p, &y) in p.iter().zip(&y) {
                let e = (p - y).abs();
                let q = e.min(d);
                total += T::from_f64(0.5) * q * q + d * (e - q);
            }
            total / n
        }
        LossKind::BinaryCrossentropy => {
            for (&p, &y) in p.iter().zip(&y) {
                let p = clip(p);
                total += -(y * p.ln() + (T::one() - y) * (T::one() - p).ln());
            }
            total / n
        }
        LossKind::SigmoidBinaryCrossentropy => {
            for (&z, &y) in p.iter().zip(&y) {
                total += z.max(T::zero()) - z * y + (-z.abs()).exp().ln_1p();
            }
            total / n
        }
        LossKind::CategoricalCrossentropy | LossKind::SparseCategoricalCrossentropy => {
            for (p, y) in p.chunks(classes).zip(y.chunks(classes)) {
                let s = p.iter().fold(T::zero(), |a, &b| a + b);
                for (&p, &y) in p.iter().zip(y) {
                    total += -(y * clip(p / s).ln());
                }
            }
            total / rows
        }
        LossKind::SoftmaxCategoricalCrossentropy
        | LossKind::SoftmaxSparseCategoricalCrossentropy => {
            for (z, y) in p.chunks(classes).zip(y.chunks(classes)) {
                for (&l, &y) in log_softmax_row(z).iter().zip(y) {
                    total += -(y * l);
                }
            }
            total / rows
        }
    }
}

/// The gradient of `loss` with respect to `p`.
pub fn loss_grad<T: Real>(kind: LossKind, p: &[T], y: &[T], classes: usize) -> Vec<T> {
    let n = T::from_f64(p.len() as f64);
    let rows = T::from_f64((p.len() / classes.max(1)) as f64);
    let y = targets(kind, y, classes);
    let zero = T::zero();
    let one = T::one();
    match kind {
        LossKind::Mse => p
            .iter()
            .zip(&y)
            .map(|(&p, &y)| T::from_f64(2.0) * (p - y) / n)
            .collect(),
        LossKind::Mae => p
            .iter()
            .zip(&y)
            .map(|(&p, &y)| {
                let e = p - y;
                let s = if e > zero {
                    one
                } else if e < zero {
                    -one
                } else {
                    zero
                };
                s / n
            })
            .collect(),
        LossKind::Huber { delta } => {
            let d = T::from_f32(delta);
            p.iter()
                .zip(&y)
                .map(|(&p, &y)| (p - y).max(-d).min(d) / n)
                .collect()
        }
        LossKind::BinaryCrossentropy => p
            .iter()
            .zip(&y)
            .map(|(&p, &y)| {
                let c = clip(p);
                clip_mask(p) * -(y / c - (one - y) / (one - c)) / n
            })
            .collect(),
        LossKind::SigmoidBinaryCrossentropy => p
            .iter()
            .zip(&y)
            .map(|(&z, &y)| (sigmoid(z) - y) / n)
            .collect(),
        LossKind::CategoricalCrossentropy | LossKind::SparseCategoricalCrossentropy => {
            // L = -sum_j y_j log clip(q_j), q = p / sum(p):
            // dL/dp_i = (g_i - sum_j g_j q_j) / sum(p), g_j = -y_j mask_j / clip(q_j).
            let mut out = Vec::with_capacity(p.len());
            for (p, y) in p.chunks(classes).zip(y.chunks(classes)) {
                let s = p.iter().fold(zero, |a, &b| a + b);
                let q: Vec<T> = p.iter().map(|&v| v / s).collect();
                let g: Vec<T> = q
                    .iter()
                    .zip(y)
                    .map(|(&q, &y)| -(y * clip_mask(q)) / clip(q))
                    .collect();
                let dot = g.iter().zip(&q).fold(zero, |a, (&g, &q)| a + g * q);
                out.extend(g.iter().map(|&g| (g - dot) / s / rows));
            }
            out
        }
        LossKind::SoftmaxCategoricalCrossentropy
        | LossKind::SoftmaxSparseCategoricalCrossentropy => {
            // L = lse(z) sum(y) - y.z, so dL/dz = softmax(z) sum(y) - y.
            let mut out = Vec::with_capacity(p.len());
            for (z, y) in p.chunks(classes).zip(y.chunks(classes)) {
                let ysum = y.iter().fold(zero, |a, &b| a + b);
                for (&l, &y) in log_softmax_row(z).iter().zip(y) {
                    out.push((l.exp() * ysum - y) / rows);
                }
            }
            out
        }
    }
}
