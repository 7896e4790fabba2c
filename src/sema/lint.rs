//! Warnings: models that are valid but probably not what was meant.

use super::model::{Activation, Layer, LayerKind, Loss, Source};
use crate::diag::codes;
use crate::diag::Diagnostic;

/// The activation a layer applies, if it computes one.
fn activation_of(l: &Layer) -> Option<Activation> {
    match &l.kind {
        LayerKind::Dense { activation, .. }
        | LayerKind::Conv2d { activation, .. }
        | LayerKind::Conv1d { activation, .. } => Some(*activation),
        LayerKind::Activation(a) => Some(*a),
        _ => None,
    }
}

fn is_weighted(l: &Layer) -> bool {
    matches!(
        l.kind,
        LayerKind::Dense { .. } | LayerKind::Conv2d { .. } | LayerKind::Conv1d { .. }
    )
}

/// Layers that stay linear maps (at inference) and so cannot separate two dense layers.
fn is_linear(l: &Layer) -> bool {
    match &l.kind {
        LayerKind::Dropout { .. }
        | LayerKind::Flatten
        | LayerKind::Reshape { .. }
        | LayerKind::BatchNorm { .. } => true,
        LayerKind::Activation(a) => *a == Activation::Linear,
        _ => false,
    }
}

/// The activation that produces the model's output, looking through shape-only layers.
pub fn final_activation(layers: &[Layer]) -> Option<Activation> {
    let mut l = layers.last()?;
    while matches!(
        l.kind,
        LayerKind::Dropout { .. } | LayerKind::Flatten | LayerKind::Reshape { .. }
    ) {
        match l.inputs.as_slice() {
            [Source::Layer(i)] => l = layers.get(*i)?,
            _ => return None,
        }
    }
    activation_of(l)
}

/// The one layer that reads layer `i`, if exactly one does (and reads nothing else).
fn sole_reader(layers: &[Layer], i: usize) -> Option<usize> {
    let mut readers = layers
        .iter()
        .enumerate()
        .filter(|(_, l)| l.inputs.contains(&Source::Layer(i)));
    match (readers.next(), readers.next()) {
        (Some((j, l)), None) if l.inputs.len() == 1 => Some(j),
        _ => None,
    }
}

pub fn lint_model(layers: &[Layer], d: &mut Vec<Diagnostic>) {
    // W0001: dense (linear) -> only linear layers -> dense.
    for (i, l) in layers.iter().enumerate() {
        let LayerKind::Dense {
            activation: Activation::Linear,
            ..
        } = l.kind
        else {
            continue;
        };
        // Through the linear layers that alone read it, in a chain or a branch.
        let mut next = sole_reader(layers, i);
        while let Some(j) = next.filter(|&j| is_linear(&layers[j])) {
            next = sole_reader(layers, j);
        }
        let next = next.map(|j| &layers[j]);
        if let Some(
            next @ Layer {
                kind: LayerKind::Dense { .. },
                ..
            },
        ) = next
        {
            d.push(
                Diagnostic::warning(
                    codes::LINEAR_COLLAPSE,
                    format!("`{}` and `{}` have no nonlinearity between them", l.name, next.name),
                    next.span.clone(),
                    "this dense layer follows a linear one",
                )
                .with_label(l.span.clone(), "no activation here")
                .with_help(format!(
                    "two linear maps collapse into one; give `{}` an activation, e.g. `activation = relu`",
                    l.name
                )),
            );
        }
    }
    // W0002: saturating activations in the hidden layers of a deep stack.
    let weighted = layers.iter().filter(|l| is_weighted(l)).count();
    if weighted >= 4 {
        let last = layers.iter().rposition(is_weighted).unwrap_or(0);
        for l in &layers[..last] {
            if let Some(a @ (Activation::Sigmoid | Activation::Tanh)) = activation_of(l) {
                d.push(
                    Diagnostic::warning(
                        codes::VANISHING,
                        format!("`{}` uses {} in a hidden layer of a {weighted}-layer stack", l.name, a.name()),
                        l.span.clone(),
                        "saturating activation",
                    )
                    .with_help("gradients vanish through many sigmoid/tanh layers; use `relu`, `gelu` or `silu`"),
                );
            }
        }
    }
    // W0003: softmax before the last layer.
    for l in layers.iter().take(layers.len().saturating_sub(1)) {
        if activation_of(l) == Some(Activation::Softmax) {
            d.push(
                Diagnostic::warning(
                    codes::SOFTMAX_NOT_LAST,
                    format!("`{}` applies softmax, but it is not the last layer", l.name),
                    l.span.clone(),
                    "softmax here",
                )
                .with_help("softmax belongs on the output layer; use `relu` in hidden layers"),
            );
        }
    }
}

/// W0004: a cross-entropy loss on an output that is not a probability.
pub fn lint_loss(
    layers: &[Layer],
    loss: Loss,
    loss_span: std::ops::Range<usize>,
    d: &mut Vec<Diagnostic>,
) {
    let Some(want) = loss.expects() else { return };
    let Some(last) = layers.last() else { return };
    let one_unit = last.output_shape.last() == Some(&1);
    let last_activation = final_activation(layers);
    // A softmax over one unit is error E0022 already.
    if one_unit && last_activation == Some(Activation::Softmax) {
        return;
    }
    if last_activation != Some(want) {
        let w = want.name();
        d.push(
            Diagnostic::warning(
                codes::LOSS_ACTIVATION,
                format!("this loss expects {w} probabilities, but the model's output has no {w}"),
                loss_span,
                "this loss",
            )
            .with_label(last.span.clone(), "the output comes from here")
            .with_help(format!("end the model with `activation = {w}`")),
        );
    }
}
