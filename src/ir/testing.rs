//! Small models built directly as checked `Model`s, for tests here and in codegen
//! (JIT-against-interpreter property tests) without going through the parser.

use std::path::PathBuf;

use super::graph::{Graph, Op, TensorId};
use super::interp::run_in;
use super::layout::Layout;
use crate::sema::model::{
    Activation, DataSource, Initializer, Layer, LayerKind, Loss, Model, Optimizer, Padding,
    TrainConfig,
};

/// A sequential model over `input`-wide samples: one `dense(units, activation)` per
/// entry of `layers`, trained with `loss` and `optimizer` (seed 0).
pub fn dense_model(
    input: usize,
    layers: &[(usize, Activation)],
    loss: Loss,
    optimizer: Optimizer,
) -> Model {
    let kinds = layers
        .iter()
        .map(|&(units, activation)| dense(units, activation))
        .collect();
    sequential(&[input], kinds, loss, optimizer)
}

/// A `dense` layer with Keras's defaults (bias, glorot_uniform kernel, zero bias).
pub fn dense(units: usize, activation: Activation) -> LayerKind {
    LayerKind::Dense {
        units,
        activation,
        use_bias: true,
        kernel_initializer: Initializer::GlorotUniform,
        bias_initializer: Initializer::Zeros,
    }
}

/// A sequential model of the given layers, named Keras-style, with the output shapes
/// sema would give them.
pub fn sequential(
    input_shape: &[usize],
    kinds: Vec<LayerKind>,
    loss: Loss,
    optimizer: Optimizer,
) -> Model {
    let mut shape = input_shape.to_vec();
    let mut counts = std::collections::HashMap::new();
    let mut layers = vec![];
    for kind in kinds {
        let base = match &kind {
            LayerKind::Dense { .. } => "dense",
            LayerKind::Flatten => "flatten",
            LayerKind::Reshape { .. } => "reshape",
            LayerKind::Dropout { .. } => "dropout",
            LayerKind::Activation(_) => "activation",
            LayerKind::Conv2d { .. } => "conv2d",
            LayerKind::MaxPool2d { .. } => "maxpool2d",
            LayerKind::AvgPool2d { .. } => "avgpool2d",
            LayerKind::BatchNorm { .. } => "batchnorm",
        };
        let n = counts.entry(base).or_insert(0usize);
        let name = if *n == 0 {
            base.to_string()
        } else {
            format!("{base}_{n}")
        };
        *n += 1;
        // A shape the rule refuses stays the input's: tests build misfits on purpose.
        let output_shape = kind.output_shape(&shape).unwrap_or_else(|| shape.clone());
        layers.push(Layer {
            name,
            kind,
            input_shape: shape.clone(),
            output_shape: output_shape.clone(),
            span: 0..0,
        });
        shape = output_shape;
    }
    Model {
        name: "test".into(),
        input_name: "x".into(),
        input_shape: input_shape.to_vec(),
        layers,
        train: Some(TrainConfig {
            data: DataSource::Csv {
                path: PathBuf::from("data.csv"),
                target: "y".into(),
                features: None,
                standardize: false,
            },
            test: None,
            validation_split: None,
            loss,
            optimizer,
            metrics: vec![],
            epochs: 1,
            batch_size: 32,
            shuffle: false,
            seed: 0,
            spans: Default::default(),
        }),
    }
}

/// A `conv2d` layer with Keras's defaults (bias, glorot_uniform kernel, zero bias).
pub fn conv2d(
    filters: usize,
    kernel_size: [usize; 2],
    strides: [usize; 2],
    padding: Padding,
    activation: Activation,
) -> LayerKind {
    LayerKind::Conv2d {
        filters,
        kernel_size,
        strides,
        padding,
        activation,
        use_bias: true,
        kernel_initializer: Initializer::GlorotUniform,
        bias_initializer: Initializer::Zeros,
    }
}

/// Splits a train-step graph into its gradient part (every node but the `Update`s
/// and `MovingAverage`s) and the `(parameter, gradient)` pairs the updates read.
pub fn without_updates(g: &Graph) -> (Graph, Vec<(TensorId, TensorId)>) {
    let mut forward = g.clone();
    forward
        .nodes
        .retain(|n| !matches!(n.op, Op::Update(_) | Op::MovingAverage { .. }));
    let pairs = g
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Update(_)))
        .map(|n| (n.inputs[0], n.inputs[1]))
        .collect();
    (forward, pairs)
}

/// The worst relative disagreement between the gradients the interpreter computes in
/// f64 (`pairs` of `(tensor, its gradient)`) and central finite differences of the
/// loss, starting from `arena`. `g` must not update anything in place.
pub fn gradient_error(
    g: &Graph,
    pairs: &[(TensorId, TensorId)],
    arena: &[f64],
    x: &[f64],
    y: &[f64],
    step: u64,
) -> f64 {
    let layout = Layout::new(g);
    let loss_at = |arena: &mut Vec<f64>| -> f64 {
        run_in(g, &layout, arena, x, y, step);
        g.loss
            .and_then(|l| layout.range(g, l))
            .map_or(f64::NAN, |r| arena[r][0])
    };
    let mut base = arena.to_vec();
    loss_at(&mut base);
    let mut worst: f64 = 0.0;
    for &(w, dw) in pairs {
        let (Some(wr), Some(dr)) = (layout.range(g, w), layout.range(g, dw)) else {
            return f64::NAN;
        };
        for (i, e) in wr.enumerate() {
            let analytic = base[dr.start + i];
            let h = 1e-5 * arena[e].abs().max(1.0);
            let mut a = arena.to_vec();
            a[e] += h;
            let up = loss_at(&mut a);
            let mut a = arena.to_vec();
            a[e] -= h;
            let down = loss_at(&mut a);
            let numeric = (up - down) / (2.0 * h);
            let err = (analytic - numeric).abs() / analytic.abs().max(numeric.abs()).max(1e-3);
            if err.is_nan() {
                return f64::NAN;
            }
            worst = worst.max(err);
        }
    }
    worst
}
