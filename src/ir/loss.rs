//! The losses of `LossKind` and their gradients, as Keras 3 computes them: the mean
//! over the batch of a per-sample loss, which for the elementwise losses is itself a
//! mean over the last axis (so the whole thing is a mean over every element).

use super::graph::LossKind;
use crate::ops::{sigmoid, Real};

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

/// Keras's loss with sample weights `w` (one per row): each row's loss alone, times
/// its weight, summed in row order and divided by the rows (`sum_over_batch_size`).
pub fn weighted_loss<T: Real>(kind: LossKind, p: &[T], y: &[T], classes: usize, w: &[T]) -> T {
    let rows = w.len();
    let width = y.len() / rows.max(1);
    let mut total = T::zero();
    for (r, &weight) in w.iter().enumerate() {
        let pr = &p[r * classes..(r + 1) * classes];
        let yr = &y[r * width..(r + 1) * width];
        total += weight * loss(kind, pr, yr, classes);
    }
    total / T::from_f64(rows.max(1) as f64)
}

/// The class of a target row as Keras reads it for `class_weight`: the argmax (the
/// first largest) of a one-hot row, otherwise the value rounded; `None` below 0.
pub fn class_of_row<T: Real>(row: &[T]) -> Option<usize> {
    if row.len() > 1 {
        let mut best = 0;
        for (i, v) in row.iter().enumerate() {
            if *v > row[best] {
                best = i;
            }
        }
        return Some(best);
    }
    let c = row.first()?.to_f64().round();
    (c >= 0.0).then_some(c as usize)
}

/// Each row's weight, as Keras turns `class_weight` into sample weights: the weight
/// of its class (`class_of_row`), or 1 for a class without one.
pub fn class_weights<T: Real>(y: &[T], width: usize, table: &[T]) -> Vec<T> {
    y.chunks(width.max(1))
        .map(|row| {
            class_of_row(row)
                .and_then(|c| table.get(c))
                .copied()
                .unwrap_or(T::one())
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Worst relative error of `loss_grad` against central differences of `loss`.
    fn fd_error(kind: LossKind, p: &[f64], y: &[f64], classes: usize) -> f64 {
        let grad = loss_grad(kind, p, y, classes);
        let mut worst: f64 = 0.0;
        for i in 0..p.len() {
            let h = 1e-6;
            let (mut up, mut down) = (p.to_vec(), p.to_vec());
            up[i] += h;
            down[i] -= h;
            let numeric = (loss(kind, &up, y, classes) - loss(kind, &down, y, classes)) / (2.0 * h);
            let err = (grad[i] - numeric).abs() / grad[i].abs().max(numeric.abs()).max(1e-3);
            worst = worst.max(err);
        }
        worst
    }

    fn uniform(rng: &mut StdRng, n: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..n).map(|_| rng.gen_range(lo..hi)).collect()
    }

    fn one_hot_rows(rng: &mut StdRng, rows: usize, classes: usize) -> (Vec<f64>, Vec<f64>) {
        let idx: Vec<f64> = (0..rows)
            .map(|_| rng.gen_range(0..classes) as f64)
            .collect();
        (one_hot(&idx, classes), idx)
    }

    #[test]
    fn every_loss_gradient_matches_finite_differences() {
        let mut rng = StdRng::seed_from_u64(5);
        let (rows, classes) = (5, 4);
        let n = rows * classes;
        let y = uniform(&mut rng, n, -1.0, 1.0);
        // Errors kept away from the kinks of mae (0) and huber (±delta).
        let e: Vec<f64> = (0..n)
            .map(|i| {
                let mag = if i % 2 == 0 {
                    rng.gen_range(0.05..0.95)
                } else {
                    rng.gen_range(1.05..2.0)
                };
                if rng.gen::<bool>() {
                    mag
                } else {
                    -mag
                }
            })
            .collect();
        let p: Vec<f64> = y.iter().zip(&e).map(|(y, e)| y + e).collect();
        for kind in [LossKind::Mse, LossKind::Mae, LossKind::Huber { delta: 1.0 }] {
            let err = fd_error(kind, &p, &y, classes);
            assert!(err < 1e-6, "{kind:?}: {err}");
        }

        let probs = uniform(&mut rng, n, 0.05, 0.95);
        let logits = uniform(&mut rng, n, -4.0, 4.0);
        let soft = uniform(&mut rng, n, 0.0, 1.0);
        let (hot, idx) = one_hot_rows(&mut rng, rows, classes);
        let cases = [
            (LossKind::BinaryCrossentropy, &probs, &soft),
            (LossKind::BinaryCrossentropy, &probs, &hot),
            (LossKind::SigmoidBinaryCrossentropy, &logits, &soft),
            (LossKind::CategoricalCrossentropy, &probs, &soft),
            (LossKind::CategoricalCrossentropy, &probs, &hot),
            (LossKind::SoftmaxCategoricalCrossentropy, &logits, &soft),
            (LossKind::SoftmaxCategoricalCrossentropy, &logits, &hot),
            (LossKind::SparseCategoricalCrossentropy, &probs, &idx),
            (
                LossKind::SoftmaxSparseCategoricalCrossentropy,
                &logits,
                &idx,
            ),
        ];
        for (kind, p, y) in cases {
            let err = fd_error(kind, p, y, classes);
            assert!(err < 1e-6, "{kind:?}: {err}");
        }
    }

    #[test]
    fn fused_forms_agree_with_probability_forms() {
        let mut rng = StdRng::seed_from_u64(6);
        let (rows, classes) = (6, 3);
        let z = uniform(&mut rng, rows * classes, -3.0, 3.0);
        let soft = uniform(&mut rng, rows * classes, 0.0, 1.0);
        let sig: Vec<f64> = z.iter().map(|&v| 1.0 / (1.0 + (-v).exp())).collect();
        let a = loss(LossKind::SigmoidBinaryCrossentropy, &z, &soft, classes);
        let b = loss(LossKind::BinaryCrossentropy, &sig, &soft, classes);
        assert!((a - b).abs() < 1e-12, "{a} {b}");

        let sm: Vec<f64> = z
            .chunks(classes)
            .flat_map(|r| {
                let s: f64 = r.iter().map(|v| v.exp()).sum();
                r.iter().map(move |v| v.exp() / s)
            })
            .collect();
        let (hot, idx) = one_hot_rows(&mut rng, rows, classes);
        let fused = loss(LossKind::SoftmaxCategoricalCrossentropy, &z, &hot, classes);
        let probs = loss(LossKind::CategoricalCrossentropy, &sm, &hot, classes);
        let sparse = loss(
            LossKind::SoftmaxSparseCategoricalCrossentropy,
            &z,
            &idx,
            classes,
        );
        let sparse_probs = loss(LossKind::SparseCategoricalCrossentropy, &sm, &idx, classes);
        assert!((fused - probs).abs() < 1e-12, "{fused} {probs}");
        assert!((fused - sparse).abs() < 1e-12, "{fused} {sparse}");
        assert!(
            (fused - sparse_probs).abs() < 1e-12,
            "{fused} {sparse_probs}"
        );
        // Keras normalizes probabilities by their row sum first.
        let doubled: Vec<f64> = sm.iter().map(|v| 2.0 * v).collect();
        let d = loss(LossKind::CategoricalCrossentropy, &doubled, &hot, classes);
        assert!((d - probs).abs() < 1e-12);
    }

    #[test]
    fn values_by_hand() {
        // Mean over all 4 elements of squared / absolute errors 1, 4, 0.25, 0.
        let p = [1.0, -2.0, 0.5, 3.0];
        let y = [0.0, 0.0, 0.0, 3.0];
        assert_eq!(loss(LossKind::Mse, &p, &y, 2), (1.0 + 4.0 + 0.25) / 4.0);
        assert_eq!(loss(LossKind::Mae, &p, &y, 2), (1.0 + 2.0 + 0.5) / 4.0);
        // Huber, delta 1: 0.5 e^2 inside, |e| - 0.5 outside.
        assert_eq!(
            loss(LossKind::Huber { delta: 1.0 }, &p, &y, 2),
            (0.5 + 1.5 + 0.125) / 4.0
        );
        assert_eq!(
            loss_grad(LossKind::Mae, &[2.0, 2.0], &[2.0, 1.0], 1),
            vec![0.0, 0.5]
        );
        // Probabilities are clipped to [1e-7, 1 - 1e-7] and get no gradient outside.
        let clipped = loss(LossKind::BinaryCrossentropy, &[0.0], &[1.0], 1);
        assert!((clipped + 1e-7f64.ln()).abs() < 1e-9, "{clipped}");
        assert_eq!(
            loss_grad(LossKind::BinaryCrossentropy, &[0.0], &[1.0], 1),
            vec![0.0]
        );
        // Sparse, 2 rows of 3: -mean(log p[class]).
        let p = [0.2, 0.3, 0.5, 0.1, 0.8, 0.1];
        let l = loss(LossKind::SparseCategoricalCrossentropy, &p, &[2.0, 1.0], 3);
        assert!((l + (0.5f64.ln() + 0.8f64.ln()) / 2.0).abs() < 1e-12);
        // A label out of range contributes nothing (and does not panic).
        let l = loss(LossKind::SparseCategoricalCrossentropy, &p, &[2.0, 7.0], 3);
        assert!((l + 0.5f64.ln() / 2.0).abs() < 1e-12);
        // Logit BCE stays finite for huge logits.
        let big = loss(
            LossKind::SigmoidBinaryCrossentropy,
            &[1000.0f32, -1000.0],
            &[0.0, 0.0],
            1,
        );
        assert!((big - 500.0).abs() < 1e-3, "{big}");
    }
}
