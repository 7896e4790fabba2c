//! NaN traced to its line: when a training step makes the loss or a weight NaN or
//! infinite, the trainer replays the epoch up to that step and this module re-runs
//! the step with the reference interpreter (every temporary kept), finds the first
//! node whose output is not finite, names its likely cause from its inputs, and
//! reports it at the line of the layer (or the loss) the node was built for.
//!
//! The normal path pays one copy of the persistent tensors per epoch (the replay's
//! starting point) and one finiteness check of them at the epoch's end.

use crate::diag::{codes, Diagnostic};
use crate::ir::graph::{Graph, Op, Origin, Pass, Role, TensorId};
use crate::ir::interp;
use crate::ir::layout::Layout;
use crate::ir::print;
use crate::ops::Activation;
use crate::runtime::memory;
use crate::sema::model::Model;

/// exp(x) overflows float32 above this.
const EXP_LIMIT: f32 = 88.722_84;

/// A gradient norm from which a non-finite result is put down to an exploding
/// gradient rather than to the op alone.
const EXPLODING_NORM: f64 = 1e6;

/// Why a node's output is not finite, judged from its (finite) inputs.
#[derive(Debug, Clone, PartialEq)]
pub enum Cause {
    /// The `exponential` activation (or its gradient) of an input above 88.7.
    ExpOverflow { largest: f32 },
    /// The gradient grew without bound: its global norm at the step (or the step
    /// before, when this step's is not finite).
    ExplodingGradient { norm: f64 },
    /// Finite inputs whose result does not fit in float32 (up to 3.4e38).
    Overflow { largest: f32 },
    /// A NaN from finite inputs (inf - inf or 0 * inf inside the op).
    Invalid,
    /// An input already held a NaN or infinity (the data, or a weight).
    NonFiniteInput { tensor: String },
}

/// The first non-finite value of a failing step.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub origin: Origin,
    /// The node is an optimizer update (or a moving average).
    pub update: bool,
    /// The tensor holding it, e.g. `dense.out`.
    pub tensor: String,
    /// The node as `nnc emit --ir` writes it.
    pub node: String,
    /// The first non-finite value: NaN, inf or -inf.
    pub value: f32,
    pub cause: Cause,
    /// The node's first input: its origin, name and largest magnitude (the
    /// prediction, when the loss overflows).
    pub input: Option<(Origin, String, f32)>,
}

/// What went wrong and where in training.
#[derive(Debug, Clone, PartialEq)]
pub struct NanReport {
    pub epoch: usize,
    /// 1-based, of `batches` in the epoch.
    pub batch: usize,
    pub batches: usize,
    /// The loss of the failing step, as the compiled code computed it.
    pub loss: f32,
    /// `None` when the interpreter's re-run stayed finite (the compiled code's
    /// rounding differs from it).
    pub finding: Option<Finding>,
    /// The global gradient norm of the failing step, and of the step before.
    pub gradient_norm: f64,
    pub previous_gradient_norm: Option<f64>,
    /// The weight with the largest gradient norm at the failing step, and that norm.
    pub largest_gradient: Option<(String, f64)>,
}

/// Whether every value is finite; the check the trainer makes on the weights.
pub fn all_finite(values: &[f32]) -> bool {
    // A sum of `v * 0` is 0 for finite values and NaN otherwise: one branch-free
    // pass, in eight independent lanes so that it vectorizes.
    let mut lanes = [0f32; 8];
    let mut chunks = values.chunks_exact(8);
    for chunk in &mut chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += v * 0.0;
        }
    }
    let tail: f32 = chunks.remainder().iter().map(|&v| v * 0.0).sum();
    lanes.iter().sum::<f32>() + tail == 0.0
}

/// One train step re-run with the interpreter from `persistent` (the arena's
/// persistent prefix before the step).
pub struct Rerun {
    /// The first node whose output is not finite, with its cause.
    pub finding: Option<Finding>,
    /// The global norm of the step's gradients (infinite when one is not finite).
    pub gradient_norm: f64,
    /// The weight whose gradient has the largest norm, and that norm.
    pub largest_gradient: Option<(String, f64)>,
}

/// `previous_norm` is the global gradient norm of the step before, when known: a
/// non-finite result after a huge gradient is put down to the gradient.
pub fn rerun(
    graph: &Graph,
    persistent: &[f32],
    x: &[f32],
    y: &[f32],
    step: u64,
    previous_norm: Option<f64>,
) -> Result<Rerun, String> {
    let layout = Layout::new(graph);
    // Every temporary in its own place: larger than the trainer's arena.
    let mut arena = memory::zeroed_or_explain(layout.len, "re-running the failing step")?;
    let n = layout.persistent_len.min(persistent.len());
    arena[..n].copy_from_slice(&persistent[..n]);
    interp::run(graph, &layout, &mut arena, x, y, step);
    // Weights as the step read them: updates overwrote them in `arena`.
    let value = |id: TensorId| -> &[f32] {
        let t = &graph.tensors[id];
        match t.role {
            Role::Input => &x[..t.len().min(x.len())],
            Role::Target => &y[..t.len().min(y.len())],
            _ => match layout.range(graph, id) {
                Some(r) if t.role.is_persistent() => &persistent[r],
                Some(r) => &arena[r],
                None => &[],
            },
        }
    };
    let mut squares = 0f64;
    let mut largest_gradient: Option<(String, f64)> = None;
    for node in &graph.nodes {
        if let Op::Update(_) = node.op {
            let sum: f64 = value(node.inputs[1])
                .iter()
                .map(|&g| f64::from(g) * f64::from(g))
                .sum();
            squares += sum;
            if largest_gradient
                .as_ref()
                .is_none_or(|(_, n)| sum.sqrt() > *n)
            {
                let name = graph.tensors[node.inputs[0]].name.clone();
                largest_gradient = Some((name, sum.sqrt()));
            }
        }
    }
    let gradient_norm = squares.sqrt();
    let finding = graph.nodes.iter().find_map(|node| {
        let out: &[f32] = match layout.range(graph, node.output) {
            Some(r) => &arena[r],
            None => &[],
        };
        let &bad = out.iter().find(|v| !v.is_finite())?;
        let inputs: Vec<&[f32]> = node.inputs.iter().map(|&i| value(i)).collect();
        let cause = match node
            .inputs
            .iter()
            .zip(&inputs)
            .find(|(_, v)| !all_finite(v))
        {
            Some((&i, _)) => Cause::NonFiniteInput {
                tensor: graph.tensors[i].name.clone(),
            },
            None => cause(&node.op, &inputs, Some(gradient_norm), previous_norm),
        };
        Some(Finding {
            origin: graph.tensors[node.output].origin,
            update: matches!(node.op, Op::Update(_) | Op::MovingAverage { .. }),
            tensor: graph.tensors[node.output].name.clone(),
            node: print::node_label(graph, node),
            value: bad,
            cause,
            input: node.inputs.first().map(|&i| {
                let t = &graph.tensors[i];
                (t.origin, t.name.clone(), largest(value(i)))
            }),
        })
    });
    Ok(Rerun {
        finding,
        gradient_norm,
        largest_gradient,
    })
}

fn largest(values: &[f32]) -> f32 {
    values.iter().fold(0f32, |m, v| m.max(v.abs()))
}

fn max(values: &[f32]) -> f32 {
    values.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

/// The likely cause of a non-finite output of `op` from the finite `inputs`, given
/// the gradient norms of this step and the one before.
fn cause(op: &Op, inputs: &[&[f32]], norm: Option<f64>, previous_norm: Option<f64>) -> Cause {
    let specific = match op {
        // The other activations built on exp (elu, selu, softplus, mish) only take
        // it of non-positive values.
        Op::Activate(Activation::Exponential) | Op::ActivateGrad(Activation::Exponential)
            if max(inputs[0]) > EXP_LIMIT =>
        {
            Some(Cause::ExpOverflow {
                largest: max(inputs[0]),
            })
        }
        _ => None,
    };
    if let Some(c) = specific {
        return c;
    }
    // This step's norm when finite, else the previous step's.
    let norm = norm.filter(|n| n.is_finite()).or(previous_norm);
    if let Some(norm) = norm.filter(|&n| n >= EXPLODING_NORM && n.is_finite()) {
        return Cause::ExplodingGradient { norm };
    }
    let big = inputs.iter().map(|v| largest(v)).fold(0f32, f32::max);
    if big > 1e15 || !matches!(op, Op::Loss(_) | Op::LossGrad(_)) && big > 1e6 {
        Cause::Overflow { largest: big }
    } else {
        Cause::Invalid
    }
}

/// `3.4e38`, `412.3`: values that may be anything from tiny to huge.
pub fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
    } else if v != 0.0 && !(1e-3..1e6).contains(&v.abs()) {
        format!("{v:.2e}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}

impl NanReport {
    /// The report as a diagnostic at the layer's line (or the loss setting's).
    pub fn diagnostic(&self, model: &Model) -> Diagnostic {
        let at = format!(
            "in epoch {}, batch {} of {}",
            self.epoch, self.batch, self.batches
        );
        let what = if self.loss.is_finite() {
            "a weight became NaN or infinite".to_string()
        } else {
            format!("the loss became {}", number(f64::from(self.loss)))
        };
        let train_spans = model.train.as_ref().map(|t| &t.spans);
        let Some(f) = &self.finding else {
            let span = train_spans.map_or(0..0, |s| s.optimizer.clone());
            return Diagnostic::error(
                codes::NOT_FINITE,
                format!("{what} {at}"),
                span,
                "training with these settings",
            )
            .with_help(
                "the reference interpreter's re-run of this step stayed finite, so no \
                 single layer is to blame; try a smaller learning rate",
            );
        };
        let (span, place, pass) = match f.origin {
            Origin::Layer { index, pass } => match model.layers.get(index) {
                Some(layer) => (layer.span.clone(), format!("layer `{}`", layer.name), pass),
                None => (0..0, "the model".into(), pass),
            },
            Origin::Loss { pass } => (
                train_spans.map_or(0..0, |s| s.loss.clone()),
                "the loss".into(),
                pass,
            ),
            Origin::Data => (0..0, "the data".into(), Pass::Forward),
        };
        let pass = match (f.update, pass) {
            (true, _) => "optimizer update",
            (false, Pass::Forward) => "forward pass",
            (false, Pass::Backward) => "backward pass",
        };
        let value = number(f64::from(f.value));
        let (why, help) = self.explain(&f.cause);
        let d = Diagnostic::error(
            codes::NOT_FINITE,
            format!("{what} {at}; the first {value} appears in the {pass} of {place}"),
            span,
            format!("`{}` became {value} here: {why}", f.tensor),
        )
        .with_help(format!("{help} (the node: {})", f.node));
        // The loss reads the last layer's output: show where it comes from.
        let d = match (&f.origin, &f.input) {
            (Origin::Loss { .. }, Some((Origin::Layer { index, .. }, name, big))) => {
                match model.layers.get(*index) {
                    Some(layer) => d.with_label(
                        layer.span.clone(),
                        format!("`{name}` reaches {} here", number(f64::from(*big))),
                    ),
                    None => d,
                }
            }
            _ => d,
        };
        match (&f.cause, train_spans) {
            (Cause::ExplodingGradient { .. }, Some(s)) => d.with_label(
                s.optimizer.clone(),
                "the steps of this optimizer made the weights grow",
            ),
            _ => d,
        }
    }

    /// The cause in words, and the fix.
    fn explain(&self, cause: &Cause) -> (String, String) {
        let mut norms = match &self.largest_gradient {
            Some((weight, norm)) if self.gradient_norm.is_finite() => format!(
                "the gradient norm was {} at this step (largest for `{weight}`: {})",
                number(self.gradient_norm),
                number(*norm)
            ),
            _ => "the gradient was not finite at this step".to_string(),
        };
        if let Some(before) = self.previous_gradient_norm {
            norms.push_str(&format!(", {} at the one before", number(before)));
        }
        match cause {
            Cause::ExpOverflow { largest } => (
                format!(
                    "overflow in exp (its input reaches {}; exp overflows float32 above 88.7)",
                    number(f64::from(*largest))
                ),
                "scale the features (`standardize = true` in the data source) or use a \
                 smaller learning rate"
                    .into(),
            ),
            Cause::ExplodingGradient { norm } => (
                format!(
                    "an exploding gradient (norm {}): training diverged",
                    number(*norm)
                ),
                format!(
                    "{norms}: use a smaller learning rate, scale the features and targets \
                     (`standardize = true`), or clip the gradients"
                ),
            ),
            Cause::Overflow { largest } => (
                format!(
                    "overflow (its inputs reach {}; float32 holds up to 3.4e38)",
                    number(f64::from(*largest))
                ),
                format!(
                    "{norms}: use a smaller learning rate, or scale the features and targets \
                     (`standardize = true`)"
                ),
            ),
            Cause::Invalid => (
                "a NaN from finite inputs (inf - inf or 0 * inf inside the operation)".into(),
                format!("{norms}: try a smaller learning rate"),
            ),
            Cause::NonFiniteInput { tensor } => (
                format!("its input `{tensor}` already held NaN or infinity"),
                "check the data and the initial weights".into(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finiteness_check_sees_nan_and_both_infinities() {
        assert!(all_finite(&[0.0, -1.5, f32::MAX, f32::MIN_POSITIVE]));
        assert!(all_finite(&[]));
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            assert!(!all_finite(&[1.0, bad, 2.0]), "{bad}");
            // In a lane and in the tail of a longer slice.
            for at in [3, 16, 18] {
                let mut values = vec![-1e38f32; 19];
                values[at] = bad;
                assert!(!all_finite(&values), "{bad} at {at}");
            }
        }
        assert!(all_finite(&[f32::MAX; 19]));
    }

    use crate::ir::build;
    use crate::ir::testing::dense_model;
    use crate::sema::model::{Loss, Optimizer};

    /// One linear unit, weights set by name, re-run on one sample.
    fn rerun_one(x: f32, kernel: f32, previous_norm: Option<f64>) -> Rerun {
        let sgd = Optimizer::Sgd {
            learning_rate: 0.1,
            momentum: 0.0,
            nesterov: false,
        };
        let model = dense_model(1, &[(1, Activation::Linear)], Loss::Mse, sgd);
        let graph = build::train_step(&model, 1).unwrap();
        let layout = Layout::new(&graph);
        let mut persistent = vec![0f32; layout.persistent_len];
        let id = graph.tensors.iter().position(|t| t.name == "dense.kernel");
        let range = layout.range(&graph, id.unwrap()).unwrap();
        persistent[range].fill(kernel);
        rerun(&graph, &persistent, &[x], &[0.0], 0, previous_norm).unwrap()
    }

    #[test]
    fn a_gradient_that_overflows_is_found_in_the_backward_pass_of_its_layer() {
        // Forward: 3e38 * 1e-38 = 3 and a loss of 9, finite; backward: the kernel's
        // gradient 3e38 * 2 * 3 is not.
        let r = rerun_one(3e38, 1e-38, None);
        let f = r.finding.unwrap();
        assert_eq!(
            f.origin,
            Origin::Layer {
                index: 0,
                pass: Pass::Backward
            }
        );
        assert!(!f.update);
        assert_eq!(f.tensor, "d(dense.kernel)");
        assert_eq!(f.value, f32::INFINITY);
        assert!(matches!(f.cause, Cause::Overflow { largest } if largest == 3e38));
        assert!(r.gradient_norm.is_infinite());
        // After a huge gradient at the step before, the same value is put down to it.
        let r = rerun_one(3e38, 1e-38, Some(1e12));
        let cause = r.finding.unwrap().cause;
        assert_eq!(cause, Cause::ExplodingGradient { norm: 1e12 });
    }

    #[test]
    fn a_finite_step_has_no_finding_and_its_gradient_norm() {
        // p = 2 * 0.5 = 1, target 0: d(loss)/dp = 2, d(kernel) = 2 * 2 = 4 and
        // d(bias) = 2, so the norm is sqrt(16 + 4).
        let r = rerun_one(2.0, 0.5, None);
        assert_eq!(r.finding, None);
        assert!(
            (r.gradient_norm - 20f64.sqrt()).abs() < 1e-6,
            "{}",
            r.gradient_norm
        );
        assert_eq!(
            r.largest_gradient.map(|(w, _)| w).as_deref(),
            Some("dense.kernel")
        );
    }

    #[test]
    fn numbers_are_short_at_every_scale() {
        assert_eq!(number(f64::INFINITY), "inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(412.25), "412.2");
        assert_eq!(number(0.5), "0.5000");
        assert_eq!(number(3.4e38), "3.40e38");
    }
}
