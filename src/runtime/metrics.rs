//! Epoch metrics as streaming accumulators: add each batch, read the value at the end.

use crate::sema::model::Metric;

/// Thresholds of `auc`, as Keras's `AUC()` (`num_thresholds = 200`).
const AUC_THRESHOLDS: usize = 200;

/// One metric over the batches seen since the last `reset`.
///
/// Predictions are `[batch, output_size]` and targets `[batch, target_width]`,
/// row-major, as `Dataset` stores them. The target width is 1 (a class index or a
/// value) or `output_size` (one-hot rows or a value per output).
#[derive(Debug, Clone, PartialEq)]
pub struct Accumulator {
    metric: Metric,
    output_size: usize,
    target_width: usize,
    /// Samples added since the last reset.
    samples: u64,
    state: State,
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    /// Correct samples (accuracy, top-k) or summed errors (mse, mae), and samples or
    /// compared elements.
    Mean { sum: f64, count: u64 },
    /// Decisions at 0.5 (precision, recall).
    Confusion {
        true_positives: f64,
        false_positives: f64,
        false_negatives: f64,
    },
    /// Positive and negative labels per threshold bucket (auc).
    Buckets {
        positives: Vec<f64>,
        negatives: Vec<f64>,
    },
}

impl State {
    fn new(metric: Metric) -> State {
        match metric {
            Metric::Precision | Metric::Recall => State::Confusion {
                true_positives: 0.0,
                false_positives: 0.0,
                false_negatives: 0.0,
            },
            Metric::Auc => State::Buckets {
                positives: vec![0.0; AUC_THRESHOLDS],
                negatives: vec![0.0; AUC_THRESHOLDS],
            },
            _ => State::Mean { sum: 0.0, count: 0 },
        }
    }
}

impl Accumulator {
    /// Fails when the target width fits neither rule above.
    pub fn new(metric: Metric, output_size: usize, target_width: usize) -> Result<Self, String> {
        if output_size == 0 || (target_width != 1 && target_width != output_size) {
            return Err(format!(
                "metric `{}` cannot compare {output_size} outputs with {target_width} targets \
                 per sample",
                metric.keyword()
            ));
        }
        Ok(Self {
            metric,
            output_size,
            target_width,
            samples: 0,
            state: State::new(metric),
        })
    }

    /// The metric's name as written in `.nn` files and reports.
    pub fn name(&self) -> &'static str {
        self.metric.keyword()
    }

    /// Adds a batch: `predictions.len() / output_size` samples.
    pub fn add(&mut self, predictions: &[f32], targets: &[f32]) {
        let (out, tw) = (self.output_size, self.target_width);
        let samples = predictions.chunks_exact(out).zip(targets.chunks_exact(tw));
        self.samples += samples.len() as u64;
        // Element `k` of a sample's target, a class index read as its one-hot row.
        let target = |t: &[f32], k: usize| {
            if tw == out {
                t[k]
            } else {
                f32::from(u8::from(t[0] == k as f32))
            }
        };
        match (&mut self.state, self.metric) {
            (State::Mean { sum, count }, Metric::Accuracy | Metric::TopKAccuracy { .. }) => {
                let k = match self.metric {
                    Metric::TopKAccuracy { k } => Some(k),
                    _ => None,
                };
                for (p, t) in samples {
                    let right = match k {
                        Some(k) => in_top_k(p, t, k),
                        None => correct(p, t),
                    };
                    *sum += f64::from(u8::from(right));
                    *count += 1;
                }
            }
            (State::Mean { sum, count }, metric) => {
                for (p, t) in samples {
                    for (k, &v) in p.iter().enumerate() {
                        let e = f64::from(v) - f64::from(target(t, k));
                        *sum += if metric == Metric::Mse {
                            e * e
                        } else {
                            e.abs()
                        };
                    }
                    *count += out as u64;
                }
            }
            (
                State::Confusion {
                    true_positives,
                    false_positives,
                    false_negatives,
                },
                _,
            ) => {
                for (p, t) in samples {
                    for (k, &v) in p.iter().enumerate() {
                        match (v > 0.5, target(t, k) != 0.0) {
                            (true, true) => *true_positives += 1.0,
                            (true, false) => *false_positives += 1.0,
                            (false, true) => *false_negatives += 1.0,
                            (false, false) => {}
                        }
                    }
                }
            }
            (
                State::Buckets {
                    positives,
                    negatives,
                },
                _,
            ) => {
                for (p, t) in samples {
                    for (k, &v) in p.iter().enumerate() {
                        let b = auc_bucket(v);
                        if target(t, k) != 0.0 {
                            positives[b] += 1.0;
                        } else {
                            negatives[b] += 1.0;
                        }
                    }
                }
            }
        }
    }

    /// Every count the value is computed from, as numbers (for adding up several
    /// processes' accumulators): the samples, then the metric's own counts.
    pub fn totals(&self) -> Vec<f64> {
        let mut v = vec![self.samples as f64];
        match &self.state {
            State::Mean { sum, count } => v.extend([*sum, *count as f64]),
            State::Confusion {
                true_positives,
                false_positives,
                false_negatives,
            } => v.extend([*true_positives, *false_positives, *false_negatives]),
            State::Buckets {
                positives,
                negatives,
            } => v.extend(positives.iter().chain(negatives)),
        }
        v
    }

    /// Replaces the counts by `totals` (laid out as `totals` gives them: the sums of
    /// several processes').
    pub fn set_totals(&mut self, totals: &[f64]) {
        let mut next = totals.iter().copied().chain(std::iter::repeat(0.0));
        let mut take = || next.next().unwrap_or(0.0);
        self.samples = take() as u64;
        match &mut self.state {
            State::Mean { sum, count } => {
                *sum = take();
                *count = take() as u64;
            }
            State::Confusion {
                true_positives,
                false_positives,
                false_negatives,
            } => {
                *true_positives = take();
                *false_positives = take();
                *false_negatives = take();
            }
            State::Buckets {
                positives,
                negatives,
            } => {
                for v in positives.iter_mut().chain(negatives.iter_mut()) {
                    *v = take();
                }
            }
        }
    }

    /// The value so far; `None` before any sample.
    pub fn mean(&self) -> Option<f64> {
        // Keras's `divide_no_nan`.
        let ratio = |a: f64, b: f64| if b == 0.0 { 0.0 } else { a / b };
        if self.samples == 0 {
            return None;
        }
        match &self.state {
            State::Mean { sum, count } => (*count > 0).then(|| sum / *count as f64),
            State::Confusion {
                true_positives: tp,
                false_positives: fp,
                false_negatives: fn_,
            } => Some(match self.metric {
                Metric::Precision => ratio(*tp, tp + fp),
                _ => ratio(*tp, tp + fn_),
            }),
            State::Buckets {
                positives,
                negatives,
            } => {
                let (all_pos, all_neg): (f64, f64) =
                    (positives.iter().sum(), negatives.iter().sum());
                // Threshold i counts the predictions in buckets i and above as positive.
                let (mut tp, mut fp) = (0.0, 0.0);
                let mut points = vec![(0.0, 0.0); AUC_THRESHOLDS];
                for i in (0..AUC_THRESHOLDS).rev() {
                    tp += positives[i];
                    fp += negatives[i];
                    // (false-positive rate, recall)
                    points[i] = (ratio(fp, all_neg), ratio(tp, all_pos));
                }
                Some(
                    points
                        .windows(2)
                        .map(|w| (w[0].0 - w[1].0) * (w[0].1 + w[1].1) / 2.0)
                        .sum(),
                )
            }
        }
    }

    pub fn reset(&mut self) {
        self.samples = 0;
        self.state = State::new(self.metric);
    }
}

/// The bucket of a prediction among `auc`'s thresholds, as Keras's evenly spaced
/// thresholds place it: `ceil(p * 199) - 1` in float32, `p` clipped to [0, 1], the
/// first bucket taking 0 (Keras's lowest threshold is just below 0).
fn auc_bucket(p: f32) -> usize {
    let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
    let b = (p * (AUC_THRESHOLDS - 1) as f32).ceil() - 1.0;
    b.max(0.0) as usize
}

/// Whether the target class is among the `k` largest predictions, as TensorFlow's
/// `in_top_k` decides: fewer than `k` predictions are larger than the target's (so
/// ties at the boundary count as in), and a non-finite prediction never is.
fn in_top_k(prediction: &[f32], target: &[f32], k: usize) -> bool {
    let class = if target.len() == 1 {
        target[0] as usize
    } else {
        argmax(target)
    };
    let Some(&mine) = prediction.get(class) else {
        return false;
    };
    if !prediction.iter().all(|v| v.is_finite()) {
        return false;
    }
    prediction.iter().filter(|&&v| v > mine).count() < k
}

/// Accuracy of one sample: a single output is a sigmoid thresholded at 0.5 (as Keras's
/// binary accuracy, `> 0.5`); wider outputs compare their argmax with the class index,
/// or with the argmax of a one-hot target.
fn correct(prediction: &[f32], target: &[f32]) -> bool {
    if prediction.len() == 1 {
        let predicted = if prediction[0] > 0.5 { 1.0 } else { 0.0 };
        return predicted == target[0];
    }
    let class = if target.len() == 1 {
        target[0]
    } else {
        argmax(target) as f32
    };
    argmax(prediction) as f32 == class
}

/// The first index of the largest value (NaNs never win).
fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] || values[best].is_nan() {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_first_maximum() {
        assert_eq!(argmax(&[0.1, 0.7, 0.7]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.2, 0.1]), 1);
    }

    #[test]
    fn auc_buckets_follow_keras_thresholds() {
        // Threshold i is i / 199; a prediction on a threshold is not above it.
        assert_eq!(auc_bucket(0.0), 0);
        assert_eq!(auc_bucket(1.0 / 199.0 + 1e-4), 1);
        assert_eq!(auc_bucket(1.0), 198);
        assert_eq!(auc_bucket(2.0), 198);
        assert_eq!(auc_bucket(-1.0), 0);
    }
}
