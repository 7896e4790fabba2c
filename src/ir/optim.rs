//! Optimizer state and the arithmetic of one `Update`, transcribed from Keras 3's
//! optimizers (`keras/src/optimizers/{sgd,adam,adamw,rmsprop}.py`) operation by
//! operation, in the same order, so float32 results match.

use super::graph::{Graph, Op};
use super::layout::Layout;
use crate::ops::Real;
use crate::sema::model::{Optimizer, Schedule};

/// Applies one step to `w` given its gradient `g`, the learning rate `lr` and its
/// `slots` (as `Optimizer::slot_names` lists them). `step` is Keras's `iterations`:
/// 0 for the first update. The optimizer's own `learning_rate` is not read: it is the
/// learning rate's initial value, and the caller passes the current one.
pub fn update<T: Real>(
    opt: &Optimizer,
    step: u64,
    lr: T,
    w: &mut [T],
    g: &[T],
    slots: &mut [Vec<T>],
) {
    match *opt {
        Optimizer::Sgd {
            momentum, nesterov, ..
        } => {
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
            beta_1,
            beta_2,
            epsilon,
            ..
        } => adam(step, lr, w, g, slots, [beta_1, beta_2, epsilon]),
        Optimizer::AdamW {
            beta_1,
            beta_2,
            epsilon,
            weight_decay,
            ..
        } => {
            // Keras's `_apply_weight_decay` runs before the Adam step.
            let wd = T::from_f32(weight_decay);
            for wi in w.iter_mut() {
                *wi = *wi - *wi * wd * lr;
            }
            adam(step, lr, w, g, slots, [beta_1, beta_2, epsilon]);
        }
        Optimizer::RmsProp { rho, epsilon, .. } => {
            let one_minus_rho = T::from_f32(one_minus(rho));
            let rho = T::from_f32(rho);
            let eps = T::from_f32(epsilon);
            if let [v] = slots {
                for i in 0..w.len() {
                    v[i] = rho * v[i] + one_minus_rho * (g[i] * g[i]);
                    w[i] = w[i] - (lr * g[i]) / (v[i] + eps).sqrt();
                }
            }
        }
    }
}

/// A schedule's learning rate at `step` (Keras's `iterations`, 0 for the first
/// update), in float32 in the order of operations of Keras 3's
/// `keras/src/optimizers/schedules/learning_rate_schedule.py`.
pub fn scheduled_rate(schedule: &Schedule, step: u64) -> f32 {
    let t = step as f32;
    match *schedule {
        Schedule::ExponentialDecay {
            initial,
            decay_steps,
            decay_rate,
            staircase,
        } => {
            let p = t / decay_steps;
            let p = if staircase { p.floor() } else { p };
            initial * decay_rate.powf(p)
        }
        Schedule::InverseTimeDecay {
            initial,
            decay_steps,
            decay_rate,
            staircase,
        } => {
            let p = t / decay_steps;
            let p = if staircase { p.floor() } else { p };
            initial / (1.0 + decay_rate * p)
        }
        Schedule::PolynomialDecay {
            initial,
            decay_steps,
            end,
            power,
            cycle,
        } => {
            let (t, steps) = if cycle {
                let times = if t == 0.0 {
                    1.0
                } else {
                    (t / decay_steps).ceil()
                };
                (t, decay_steps * times)
            } else {
                (t.min(decay_steps), decay_steps)
            };
            let p = t / steps;
            (initial - end) * (1.0 - p).powf(power) + end
        }
        Schedule::CosineDecay {
            initial,
            decay_steps,
            alpha,
            warmup_target,
            warmup_steps,
        } => {
            // Keras computes `1 - alpha` in Python, from the decimal written.
            let decay = |t: f32, from: f32| {
                let fraction = t / decay_steps;
                let cosine = 0.5 * (1.0 + (std::f32::consts::PI * fraction).cos());
                from * (one_minus(alpha) * cosine + alpha)
            };
            match warmup_target {
                None => decay(t.min(decay_steps), initial),
                Some(target) => {
                    let t = t.min(decay_steps + warmup_steps);
                    if t < warmup_steps {
                        (target - initial) * (t / warmup_steps) + initial
                    } else {
                        decay(t - warmup_steps, target)
                    }
                }
            }
        }
        Schedule::PiecewiseConstantDecay {
            ref boundaries,
            ref values,
        } => {
            let passed = boundaries.iter().filter(|&&b| step > b).count();
            values[passed.min(values.len() - 1)]
        }
    }
}

/// Keras's `clip_by_norm`: `g * clipnorm / max(norm, clipnorm)`, where the norm of a
/// zero gradient is 0.
pub fn clip_norm<T: Real>(g: &[T], clipnorm: f32) -> Vec<T> {
    let sum = g.iter().fold(T::zero(), |a, &v| a + v * v);
    let norm = if sum > T::zero() { sum.sqrt() } else { sum };
    let c = T::from_f32(clipnorm);
    let denominator = norm.max(c);
    g.iter().map(|&v| v * c / denominator).collect()
}

/// The factor of Keras's `clip_by_global_norm` for the gradients `gs`:
/// `clipnorm * min(1 / norm, 1 / clipnorm) + (norm - norm)`, so that a non-finite
/// norm makes every gradient NaN. Each tensor's squares are summed, then the sums.
pub fn global_clip_scale<T: Real>(gs: &[Vec<T>], clipnorm: f32) -> T {
    let sum = gs
        .iter()
        .map(|g| g.iter().fold(T::zero(), |a, &v| a + v * v))
        .fold(T::zero(), |a, s| a + s);
    let norm = sum.sqrt();
    let (one, c) = (T::one(), T::from_f32(clipnorm));
    // Keras's `+ (norm - norm)`: 0 for a finite norm, NaN otherwise.
    let nan_unless_finite = if norm.to_f64().is_finite() {
        T::zero()
    } else {
        T::from_f64(f64::NAN)
    };
    c * (one / norm).min(one / c) + nan_unless_finite
}

/// The learning rate of the graph's next step (with a schedule, the one its last step
/// used), read from the arena; `None` for a graph without an optimizer.
pub fn learning_rate(graph: &Graph, layout: &Layout, arena: &[f32]) -> Option<f32> {
    let range = layout.range(graph, graph.learning_rate?)?;
    arena.get(range.start).copied()
}

/// Sets the learning rate every later step uses (what Keras's
/// `optimizer.learning_rate = lr` does, e.g. for `reduce_lr_on_plateau`). Refused when
/// the graph computes it from a schedule (as Keras refuses), and for a rate that is
/// not a positive finite number.
pub fn set_learning_rate(
    graph: &Graph,
    layout: &Layout,
    arena: &mut [f32],
    lr: f32,
) -> Result<(), String> {
    if graph
        .nodes
        .iter()
        .any(|n| matches!(n.op, Op::LearningRate(_)))
    {
        return Err("the learning rate is a schedule, so it cannot be set".into());
    }
    if !(lr.is_finite() && lr > 0.0) {
        return Err(format!("a learning rate must be positive, not {lr}"));
    }
    let slot = graph
        .learning_rate
        .and_then(|id| layout.range(graph, id))
        .and_then(|r| arena.get_mut(r.start))
        .ok_or("this graph has no learning rate")?;
    *slot = lr;
    Ok(())
}

/// `1 - beta` as Keras computes it: from the decimal the user wrote, in f64, then
/// rounded to f32. (`1 - 0.999f32` is 0.00099998713, 1.3e-5 away from Keras's 0.001.)
/// The shortest decimal that reads back as `beta` is the one the user wrote.
pub fn one_minus(beta: f32) -> f32 {
    let written: f64 = beta.to_string().parse().unwrap_or(f64::from(beta));
    (1.0 - written) as f32
}

fn adam<T: Real>(step: u64, lr: T, w: &mut [T], g: &[T], slots: &mut [Vec<T>], hyper: [f32; 3]) {
    let (omb1, omb2) = (
        T::from_f32(one_minus(hyper[0])),
        T::from_f32(one_minus(hyper[1])),
    );
    let [b1, b2, eps] = hyper.map(T::from_f32);
    let one = T::one();
    let t = T::from_f64((step + 1) as f64);
    let alpha = lr * (one - b2.powf(t)).sqrt() / (one - b1.powf(t));
    if let [m, v] = slots {
        for i in 0..w.len() {
            m[i] = m[i] + (g[i] - m[i]) * omb1;
            v[i] = v[i] + (g[i] * g[i] - v[i]) * omb2;
            w[i] = w[i] - (m[i] * alpha) / (v[i].sqrt() + eps);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::graph::{Node, Role};
    use crate::ir::interp::run;
    use crate::ir::layout::Layout;

    const W0: [f32; 3] = [0.5, -1.25, 2.0];

    /// The gradient fed at each step: varying in sign and size.
    fn grad(step: u64) -> [f32; 3] {
        let s = step as f32;
        [0.3 - 0.1 * s, -0.7 + 0.05 * s * s, 1.5 / (1.0 + s)]
    }

    /// Runs `steps` updates of one 3-element weight through the interpreter's
    /// `Update` op and returns the weights after each.
    fn interpreted(opt: Optimizer, steps: u64) -> Vec<[f32; 3]> {
        let mut g = Graph::new(1);
        let param = |name: &'static str, trainable| Role::Param {
            layer: "l".into(),
            name,
            trainable,
        };
        let w = g.add_tensor("w".into(), vec![3], param("kernel", true));
        let gw = g.add_tensor("g".into(), vec![3], param("grad", false));
        let lr = g.add_tensor("lr".into(), vec![], Role::OptimizerSlot);
        g.learning_rate = Some(lr);
        let mut inputs = vec![w, gw, lr];
        for s in opt.slot_names() {
            inputs.push(g.add_tensor(s.to_string(), vec![3], Role::OptimizerSlot));
        }
        g.nodes.push(Node {
            op: Op::Update(opt),
            inputs,
            output: w,
        });
        let layout = Layout::new(&g);
        let mut arena = vec![0.0f32; layout.len];
        arena[layout.range(&g, w).unwrap()].copy_from_slice(&W0);
        set_learning_rate(&g, &layout, &mut arena, opt.learning_rate()).unwrap();
        let mut out = vec![];
        for step in 0..steps {
            arena[layout.range(&g, gw).unwrap()].copy_from_slice(&grad(step));
            run(&g, &layout, &mut arena, &[], &[], step);
            let mut now = [0.0; 3];
            now.copy_from_slice(&arena[layout.range(&g, w).unwrap()]);
            out.push(now);
        }
        out
    }

    /// Keras 3's update rules, transcribed by hand for one scalar weight in f32.
    fn keras(opt: Optimizer, steps: u64) -> Vec<[f32; 3]> {
        let mut out: Vec<[f32; 3]> = vec![];
        let mut w = W0;
        let (mut m, mut v) = ([0.0f32; 3], [0.0f32; 3]);
        for step in 0..steps {
            let g = grad(step);
            for i in 0..3 {
                let (g, w, m, v) = (g[i], &mut w[i], &mut m[i], &mut v[i]);
                match opt {
                    Optimizer::Sgd {
                        learning_rate: lr,
                        momentum: mu,
                        nesterov,
                    } => {
                        if mu != 0.0 {
                            *m = *m * mu - g * lr;
                            if nesterov {
                                *w += *m * mu - g * lr;
                            } else {
                                *w += *m;
                            }
                        } else {
                            *w -= g * lr;
                        }
                    }
                    Optimizer::Adam {
                        learning_rate: lr,
                        beta_1: b1,
                        beta_2: b2,
                        epsilon: eps,
                    }
                    | Optimizer::AdamW {
                        learning_rate: lr,
                        beta_1: b1,
                        beta_2: b2,
                        epsilon: eps,
                        ..
                    } => {
                        if let Optimizer::AdamW { weight_decay, .. } = opt {
                            *w -= *w * weight_decay * lr;
                        }
                        let t = (step + 1) as f32;
                        let alpha = lr * (1.0 - b2.powf(t)).sqrt() / (1.0 - b1.powf(t));
                        *m += (g - *m) * one_minus(b1);
                        *v += (g * g - *v) * one_minus(b2);
                        *w -= (*m * alpha) / (v.sqrt() + eps);
                    }
                    Optimizer::RmsProp {
                        learning_rate: lr,
                        rho,
                        epsilon: eps,
                    } => {
                        *v = rho * *v + one_minus(rho) * (g * g);
                        *w -= (lr * g) / (*v + eps).sqrt();
                    }
                }
            }
            out.push(w);
        }
        out
    }

    #[test]
    fn every_optimizer_matches_keras_bit_for_bit() {
        let opts = [
            Optimizer::Sgd {
                learning_rate: 0.01,
                momentum: 0.0,
                nesterov: false,
            },
            Optimizer::Sgd {
                learning_rate: 0.05,
                momentum: 0.9,
                nesterov: false,
            },
            Optimizer::Sgd {
                learning_rate: 0.05,
                momentum: 0.8,
                nesterov: true,
            },
            Optimizer::Adam {
                learning_rate: 0.001,
                beta_1: 0.9,
                beta_2: 0.999,
                epsilon: 1e-7,
            },
            Optimizer::Adam {
                learning_rate: 0.1,
                beta_1: 0.5,
                beta_2: 0.9,
                epsilon: 1e-3,
            },
            Optimizer::AdamW {
                learning_rate: 0.01,
                beta_1: 0.9,
                beta_2: 0.999,
                epsilon: 1e-7,
                weight_decay: 0.004,
            },
            Optimizer::RmsProp {
                learning_rate: 0.001,
                rho: 0.9,
                epsilon: 1e-7,
            },
        ];
        for opt in opts {
            let (got, want) = (interpreted(opt, 6), keras(opt, 6));
            assert_eq!(got, want, "{opt:?}");
            assert_ne!(got[5], W0, "{opt:?} did not move");
        }
    }

    #[test]
    fn first_adam_step_moves_each_weight_by_about_the_learning_rate() {
        let lr = 0.01;
        let opt = Optimizer::Adam {
            learning_rate: lr,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
        };
        let w1 = interpreted(opt, 1)[0];
        for i in 0..3 {
            let delta = W0[i] - w1[i];
            assert!((delta - lr * grad(0)[i].signum()).abs() < 1e-6, "{delta}");
        }
    }
}
