//! Optimizer state and the arithmetic of one `Update`, transcribed from Keras 3's
//! optimizers (`keras/src/optimizers/{sgd,adam,adamw,rmsprop}.py`) operation by
//! operation, in the same order, so float32 results match.

use super::math::Real;
use crate::sema::model::Optimizer;

/// Names of the optimizer slots each trainable parameter gets, in `Update` input order.
/// Keras creates SGD's momentum variable only when `momentum != 0`.
pub fn slot_names(opt: &Optimizer) -> &'static [&'static str] {
    match opt {
        Optimizer::Sgd { momentum, .. } if *momentum != 0.0 => &["momentum"],
        Optimizer::Sgd { .. } => &[],
        Optimizer::Adam { .. } | Optimizer::AdamW { .. } => &["m", "v"],
        Optimizer::RmsProp { .. } => &["velocity"],
    }
}

/// Applies one step to `w` given its gradient `g` and its `slots` (as `slot_names`
/// lists them). `step` is Keras's `iterations`: 0 for the first update.
pub fn update<T: Real>(opt: &Optimizer, step: u64, w: &mut [T], g: &[T], slots: &mut [Vec<T>]) {
    let one = T::one();
    match *opt {
        Optimizer::Sgd {
            learning_rate,
            momentum,
            nesterov,
        } => {
            let lr = T::from_f32(learning_rate);
            if let [m] = slots {
                let mu = T::from_f32(momentum);
                for i in 0..w.len() {
                    m[i] = m[i] * mu - g[i] * lr;
                    if nesterov {
                        w[i] += m[i] * mu - g[i] * lr;
                    } else {
                        w[i] += m[i];
                    }
                }
            } else {
                for i in 0..w.len() {
                    w[i] = w[i] - g[i] * lr;
                }
            }
        }
        Optimizer::Adam {
            learning_rate,
            beta_1,
            beta_2,
            epsilon,
        } => adam(step, w, g, slots, [learning_rate, beta_1, beta_2, epsilon]),
        Optimizer::AdamW {
            learning_rate,
            beta_1,
            beta_2,
            epsilon,
            weight_decay,
        } => {
            // Keras's `_apply_weight_decay` runs before the Adam step.
            let lr = T::from_f32(learning_rate);
            let wd = T::from_f32(weight_decay);
            for wi in w.iter_mut() {
                *wi = *wi - *wi * wd * lr;
            }
            adam(step, w, g, slots, [learning_rate, beta_1, beta_2, epsilon]);
        }
        Optimizer::RmsProp {
            learning_rate,
            rho,
            epsilon,
        } => {
            let lr = T::from_f32(learning_rate);
            let rho = T::from_f32(rho);
            let eps = T::from_f32(epsilon);
            if let [v] = slots {
                for i in 0..w.len() {
                    v[i] = rho * v[i] + (one - rho) * (g[i] * g[i]);
                    w[i] = w[i] - (lr * g[i]) / (v[i] + eps).sqrt();
                }
            }
        }
    }
}

fn adam<T: Real>(step: u64, w: &mut [T], g: &[T], slots: &mut [Vec<T>], hyper: [f32; 4]) {
    let [lr, b1, b2, eps] = hyper.map(T::from_f32);
    let one = T::one();
    let t = T::from_f64((step + 1) as f64);
    let alpha = lr * (one - b2.powf(t)).sqrt() / (one - b1.powf(t));
    if let [m, v] = slots {
        for i in 0..w.len() {
            m[i] = m[i] + (g[i] - m[i]) * (one - b1);
            v[i] = v[i] + (g[i] * g[i] - v[i]) * (one - b2);
            w[i] = w[i] - (m[i] * alpha) / (v[i].sqrt() + eps);
        }
    }
}
