//! The loss family: the IR's loss kinds (`LossKind`, which `Op::Loss`,
//! `Op::LossGrad` and `Op::WeightedLoss` carry) and their arithmetic as Keras 3
//! computes it: the mean over the batch of a per-sample loss, which for the
//! elementwise losses is itself a mean over the last axis (so the whole thing is a
//! mean over every element). Everything the IR knows about one kind is here (its
//! source loss, printed name, target layout, loss and gradient); `op.rs`, the
//! interpreter and the gradient rules only delegate, and its native code is in
//! `codegen/loss.rs`.

use crate::ops::{sigmoid, Activation, Real};
use crate::sema::model::{Loss, Targets};

/// How a loss reads its prediction. The `*Logits` forms are fused with the model's
/// final sigmoid/softmax in the numerically stable form (as Keras does when a
/// sigmoid/softmax output feeds a cross-entropy); the others clip probabilities to
/// `[1e-7, 1 - 1e-7]` as Keras does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LossKind {
    /// Mean of squared errors over all elements.
    Mse,
    /// Mean of absolute errors over all elements.
    Mae,
    /// Huber with Keras's `delta = 1.0`, mean over all elements.
    Huber { delta: f32 },
    /// Binary cross-entropy from logits (the model ends in `sigmoid`).
    SigmoidBinaryCrossentropy,
    /// Binary cross-entropy from probabilities.
    BinaryCrossentropy,
    /// Categorical cross-entropy from logits, one-hot targets `[batch, classes]`.
    SoftmaxCategoricalCrossentropy,
    /// Categorical cross-entropy from probabilities, one-hot targets.
    CategoricalCrossentropy,
    /// Sparse categorical cross-entropy from logits, targets `[batch]` holding class
    /// indices as f32.
    SoftmaxSparseCategoricalCrossentropy,
    /// Sparse categorical cross-entropy from probabilities.
    SparseCategoricalCrossentropy,
    /// Keras's `log_cosh` of the error `x = p - y`, computed as
    /// `x + softplus(-2x) - log(2)`, mean over all elements.
    LogCosh,
    /// Keras's `poisson`: `p - y * log(p + 1e-7)`, mean over all elements.
    Poisson,
    /// Keras's `kl_divergence`: per row `sum(y * log(y / p))` with `y` and `p`
    /// clipped to `[1e-7, 1]`, mean over the rows (never fused with a softmax).
    KlDivergence,
}

impl LossKind {
    /// Every kind, for the tests that try them all.
    pub const ALL: [LossKind; 12] = [
        LossKind::Mse,
        LossKind::Mae,
        LossKind::Huber { delta: 1.0 },
        LossKind::SigmoidBinaryCrossentropy,
        LossKind::BinaryCrossentropy,
        LossKind::SoftmaxCategoricalCrossentropy,
        LossKind::CategoricalCrossentropy,
        LossKind::SoftmaxSparseCategoricalCrossentropy,
        LossKind::SparseCategoricalCrossentropy,
        LossKind::LogCosh,
        LossKind::Poisson,
        LossKind::KlDivergence,
    ];

    /// The kind computing `loss` of a model whose output is `last` applied to its
    /// logits (`None`: no final activation): a fused kind when the loss has one for
    /// that activation.
    pub fn of(loss: Loss, last: Option<Activation>) -> LossKind {
        let sigmoid = last == Some(Activation::Sigmoid);
        let softmax = last == Some(Activation::Softmax);
        match loss {
            Loss::Mse => LossKind::Mse,
            Loss::Mae => LossKind::Mae,
            Loss::Huber => LossKind::Huber { delta: 1.0 },
            Loss::BinaryCrossentropy if sigmoid => LossKind::SigmoidBinaryCrossentropy,
            Loss::BinaryCrossentropy => LossKind::BinaryCrossentropy,
            Loss::CategoricalCrossentropy if softmax => LossKind::SoftmaxCategoricalCrossentropy,
            Loss::CategoricalCrossentropy => LossKind::CategoricalCrossentropy,
            Loss::SparseCategoricalCrossentropy if softmax => {
                LossKind::SoftmaxSparseCategoricalCrossentropy
            }
            Loss::SparseCategoricalCrossentropy => LossKind::SparseCategoricalCrossentropy,
            Loss::LogCosh => LossKind::LogCosh,
            Loss::Poisson => LossKind::Poisson,
            Loss::KlDivergence => LossKind::KlDivergence,
        }
    }

    /// The source loss this kind computes.
    pub fn loss(self) -> Loss {
        match self {
            LossKind::Mse => Loss::Mse,
            LossKind::Mae => Loss::Mae,
            LossKind::Huber { .. } => Loss::Huber,
            LossKind::SigmoidBinaryCrossentropy | LossKind::BinaryCrossentropy => {
                Loss::BinaryCrossentropy
            }
            LossKind::SoftmaxCategoricalCrossentropy | LossKind::CategoricalCrossentropy => {
                Loss::CategoricalCrossentropy
            }
            LossKind::SoftmaxSparseCategoricalCrossentropy
            | LossKind::SparseCategoricalCrossentropy => Loss::SparseCategoricalCrossentropy,
            LossKind::LogCosh => Loss::LogCosh,
            LossKind::Poisson => Loss::Poisson,
            LossKind::KlDivergence => Loss::KlDivergence,
        }
    }

    /// Whether the kind reads the logits before the model's final activation.
    pub fn reads_logits(self) -> bool {
        match self {
            LossKind::SigmoidBinaryCrossentropy
            | LossKind::SoftmaxCategoricalCrossentropy
            | LossKind::SoftmaxSparseCategoricalCrossentropy => true,
            LossKind::Mse
            | LossKind::Mae
            | LossKind::Huber { .. }
            | LossKind::BinaryCrossentropy
            | LossKind::CategoricalCrossentropy
            | LossKind::SparseCategoricalCrossentropy
            | LossKind::LogCosh
            | LossKind::Poisson
            | LossKind::KlDivergence => false,
        }
    }

    /// Whether the targets are one class index per row rather than the prediction's
    /// shape.
    pub fn sparse(self) -> bool {
        self.loss().targets() == Targets::Sparse
    }

    /// The printed name (`nnc emit --ir`).
    pub fn name(self) -> String {
        match self {
            LossKind::Huber { delta } => format!("huber{{delta={delta}}}"),
            LossKind::SigmoidBinaryCrossentropy
            | LossKind::SoftmaxCategoricalCrossentropy
            | LossKind::SoftmaxSparseCategoricalCrossentropy => {
                format!(
                    "{}_{}",
                    self.loss().expects().map_or("", |a| a.name()),
                    self.loss().keyword()
                )
            }
            LossKind::Mse
            | LossKind::Mae
            | LossKind::BinaryCrossentropy
            | LossKind::CategoricalCrossentropy
            | LossKind::SparseCategoricalCrossentropy
            | LossKind::LogCosh
            | LossKind::Poisson
            | LossKind::KlDivergence => self.loss().keyword().into(),
        }
    }

    /// Every kind but `Huber`'s delta as a number, for helpers native code calls.
    pub fn code(self) -> (u64, f32) {
        match self {
            LossKind::Mse => (0, 0.0),
            LossKind::Mae => (1, 0.0),
            LossKind::Huber { delta } => (2, delta),
            LossKind::SigmoidBinaryCrossentropy => (3, 0.0),
            LossKind::BinaryCrossentropy => (4, 0.0),
            LossKind::SoftmaxCategoricalCrossentropy => (5, 0.0),
            LossKind::CategoricalCrossentropy => (6, 0.0),
            LossKind::SoftmaxSparseCategoricalCrossentropy => (7, 0.0),
            LossKind::SparseCategoricalCrossentropy => (8, 0.0),
            LossKind::LogCosh => (9, 0.0),
            LossKind::Poisson => (10, 0.0),
            LossKind::KlDivergence => (11, 0.0),
        }
    }

    /// The kind `code` made.
    pub fn from_code(code: u64, delta: f32) -> Option<LossKind> {
        Some(match code {
            0 => LossKind::Mse,
            1 => LossKind::Mae,
            2 => LossKind::Huber { delta },
            3 => LossKind::SigmoidBinaryCrossentropy,
            4 => LossKind::BinaryCrossentropy,
            5 => LossKind::SoftmaxCategoricalCrossentropy,
            6 => LossKind::CategoricalCrossentropy,
            7 => LossKind::SoftmaxSparseCategoricalCrossentropy,
            8 => LossKind::SparseCategoricalCrossentropy,
            9 => LossKind::LogCosh,
            10 => LossKind::Poisson,
            11 => LossKind::KlDivergence,
            _ => return None,
        })
    }
}

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

/// `kl_divergence`'s clip to `[1e-7, 1]`.
fn clip_to_one<T: Real>(v: T) -> T {
    v.max(T::from_f64(EPSILON)).min(T::one())
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
    if kind.sparse() {
        one_hot(y, classes)
    } else {
        y.to_vec()
    }
}

/// `log(1 + exp(z))` in the stable form, as Keras's `log_cosh` uses it.
fn softplus<T: Real>(z: T) -> T {
    z.max(T::zero()) + (-z.abs()).exp().ln_1p()
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
        LossKind::LogCosh => {
            let ln2 = T::from_f64(std::f64::consts::LN_2);
            for (&p, &y) in p.iter().zip(&y) {
                let x = p - y;
                total += x + softplus(x * T::from_f64(-2.0)) - ln2;
            }
            total / n
        }
        LossKind::KlDivergence => {
            for (&p, &y) in p.iter().zip(&y) {
                let y = clip_to_one(y);
                total += y * (y / clip_to_one(p)).ln();
            }
            total / rows
        }
        LossKind::Poisson => {
            let eps = T::from_f64(EPSILON);
            for (&p, &y) in p.iter().zip(&y) {
                total += p - y * (p + eps).ln();
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
        // d/dp of y log(y / clip(p)): -y / clip(p) where the clip passes p.
        LossKind::KlDivergence => p
            .iter()
            .zip(&y)
            .map(|(&p, &y)| {
                let inside = p >= T::from_f64(EPSILON) && p <= one;
                if inside {
                    -(clip_to_one(y) / p) / rows
                } else {
                    zero
                }
            })
            .collect(),
        LossKind::Poisson => p
            .iter()
            .zip(&y)
            .map(|(&p, &y)| (one - y / (p + T::from_f64(EPSILON))) / n)
            .collect(),
        // d/dx (x + softplus(-2x)) = 1 - 2 sigmoid(-2x), i.e. tanh(x).
        LossKind::LogCosh => p
            .iter()
            .zip(&y)
            .map(|(&p, &y)| {
                let s = sigmoid((p - y) * T::from_f64(-2.0));
                (one - T::from_f64(2.0) * s) / n
            })
            .collect(),
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

    /// Predictions and targets to check `kind`'s gradient at: errors kept away from
    /// the kinks of mae (0) and huber (±delta), probabilities inside the clip, and
    /// each cross-entropy with soft and with one-hot targets.
    fn fd_cases(
        kind: LossKind,
        rng: &mut StdRng,
        rows: usize,
        classes: usize,
    ) -> Vec<(Vec<f64>, Vec<f64>)> {
        let n = rows * classes;
        let y = uniform(rng, n, -1.0, 1.0);
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
        let off_kinks: Vec<f64> = y.iter().zip(&e).map(|(y, e)| y + e).collect();
        let probs = uniform(rng, n, 0.05, 0.95);
        let logits = uniform(rng, n, -4.0, 4.0);
        let soft = uniform(rng, n, 0.0, 1.0);
        let (hot, idx) = one_hot_rows(rng, rows, classes);
        match kind {
            LossKind::Mse | LossKind::Mae | LossKind::Huber { .. } => vec![(off_kinks, y)],
            LossKind::LogCosh => vec![(logits, y)],
            // Counts against positive rates.
            LossKind::Poisson => vec![(probs, soft.iter().map(|v| (v * 4.0).floor()).collect())],
            LossKind::BinaryCrossentropy
            | LossKind::CategoricalCrossentropy
            | LossKind::KlDivergence => vec![(probs.clone(), soft), (probs, hot)],
            LossKind::SigmoidBinaryCrossentropy => vec![(logits, soft)],
            LossKind::SoftmaxCategoricalCrossentropy => {
                vec![(logits.clone(), soft), (logits, hot)]
            }
            LossKind::SparseCategoricalCrossentropy => vec![(probs, idx)],
            LossKind::SoftmaxSparseCategoricalCrossentropy => vec![(logits, idx)],
        }
    }

    #[test]
    fn every_loss_gradient_matches_finite_differences() {
        let mut rng = StdRng::seed_from_u64(5);
        let (rows, classes) = (5, 4);
        for kind in LossKind::ALL {
            for (p, y) in fd_cases(kind, &mut rng, rows, classes) {
                let err = fd_error(kind, &p, &y, classes);
                assert!(err < 1e-6, "{kind:?}: {err}");
            }
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
        // log(cosh(x)) at x = 0, 1, -2.5 (symmetric): mean of 0, 0.4337808, 1.8503019.
        let l = loss(LossKind::LogCosh, &[1.0, 3.0, -0.5], &[1.0, 2.0, 2.0], 1);
        let want = (1f64.cosh().ln() + 2.5f64.cosh().ln()) / 3.0;
        assert!((l - want).abs() < 1e-12, "{l} {want}");
        // Poisson: p - y log(p + 1e-7), mean of 2 - 3 log(2) and 0.5.
        let l = loss(LossKind::Poisson, &[2.0, 0.5], &[3.0, 0.0], 1);
        let want = (2.0 - 3.0 * (2.0f64 + 1e-7).ln() + 0.5) / 2.0;
        assert!((l - want).abs() < 1e-12, "{l} {want}");
        // KL of rows (0.5, 0.5) and (1, 0) from p: log(0.5 / 0.25) / 2 + ..., the
        // zero target clipped to 1e-7; mean over the 2 rows.
        let l = loss(
            LossKind::KlDivergence,
            &[0.25, 0.75, 0.5, 0.5],
            &[0.5, 0.5, 1.0, 0.0],
            2,
        );
        let row1 = 0.5 * 2f64.ln() + 0.5 * (0.5f64 / 0.75).ln();
        let row2 = 2f64.ln() + 1e-7 * (1e-7f64 / 0.5).ln();
        assert!((l - (row1 + row2) / 2.0).abs() < 1e-12, "{l}");
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
