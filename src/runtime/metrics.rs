//! Epoch metrics as streaming accumulators: add each batch, read the mean at the end.

use crate::sema::model::Metric;

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
    /// Correct samples (accuracy) or summed errors (mse, mae).
    sum: f64,
    /// Samples (accuracy) or compared elements (mse, mae).
    count: u64,
}

impl Accumulator {
    /// Fails when the target width fits neither rule above.
    pub fn new(metric: Metric, output_size: usize, target_width: usize) -> Result<Self, String> {
        if output_size == 0 || (target_width != 1 && target_width != output_size) {
            return Err(format!(
                "metric `{}` cannot compare {output_size} outputs with {target_width} targets \
                 per sample",
                name(metric)
            ));
        }
        Ok(Self {
            metric,
            output_size,
            target_width,
            sum: 0.0,
            count: 0,
        })
    }

    /// The metric's name as written in `.nn` files and reports.
    pub fn name(&self) -> &'static str {
        name(self.metric)
    }

    /// Adds a batch: `predictions.len() / output_size` samples.
    pub fn add(&mut self, predictions: &[f32], targets: &[f32]) {
        let (out, tw) = (self.output_size, self.target_width);
        let samples = predictions.chunks_exact(out).zip(targets.chunks_exact(tw));
        match self.metric {
            Metric::Accuracy => {
                let seen = (predictions.len() / out).min(targets.len() / tw);
                let right = samples.filter(|(p, t)| correct(p, t)).count();
                self.sum += right as f64;
                self.count += seen as u64;
            }
            Metric::Mse | Metric::Mae => {
                for (p, t) in samples {
                    for (k, &v) in p.iter().enumerate() {
                        // A class index against several outputs is compared as one-hot.
                        let target = if tw == out {
                            f64::from(t[k])
                        } else {
                            f64::from(u8::from(t[0] == k as f32))
                        };
                        let e = f64::from(v) - target;
                        self.sum += if self.metric == Metric::Mse {
                            e * e
                        } else {
                            e.abs()
                        };
                    }
                    self.count += out as u64;
                }
            }
        }
    }

    /// The running sum and count the mean divides (for adding up several
    /// processes' accumulators).
    pub fn totals(&self) -> (f64, u64) {
        (self.sum, self.count)
    }

    /// Replaces the running sum and count (by the totals of several processes).
    pub fn set_totals(&mut self, sum: f64, count: u64) {
        (self.sum, self.count) = (sum, count);
    }

    /// The mean so far; `None` before any sample.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    pub fn reset(&mut self) {
        self.sum = 0.0;
        self.count = 0;
    }
}

fn name(metric: Metric) -> &'static str {
    match metric {
        Metric::Accuracy => "accuracy",
        Metric::Mse => "mse",
        Metric::Mae => "mae",
    }
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
}
