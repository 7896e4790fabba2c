//! Small models built directly as checked `Model`s, for tests here and in codegen
//! (JIT-against-interpreter property tests) without going through the parser.

use std::path::PathBuf;

use super::graph::{Graph, Op, TensorId};
use super::interp::run_in;
use super::layout::Layout;
use crate::sema::model::{
    Activation, DataSource, Initializer, Layer, LayerKind, Loss, Model, Optimizer, Padding, Source,
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
        kernel_regularizer: None,
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
    let layers = kinds
        .into_iter()
        .enumerate()
        .map(|(i, kind)| {
            let previous = i.checked_sub(1).map_or(Source::Input, Source::Layer);
            (kind, vec![previous])
        })
        .collect();
    graph(input_shape, layers, loss, optimizer)
}

/// A model of layers that read the given sources, named Keras-style, with the output
/// shapes sema would give them.
pub fn graph(
    input_shape: &[usize],
    kinds: Vec<(LayerKind, Vec<Source>)>,
    loss: Loss,
    optimizer: Optimizer,
) -> Model {
    let mut counts = std::collections::HashMap::new();
    let mut layers: Vec<Layer> = vec![];
    for (kind, inputs) in kinds {
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
            LayerKind::Merge(_) => "merge",
            LayerKind::GlobalPool { .. } => "global_pool",
            LayerKind::LayerNorm { .. } => "layer_norm",
            LayerKind::Conv1d { .. } => "conv1d",
            LayerKind::Embedding { .. } => "embedding",
            LayerKind::Pool1d { max: true, .. } => "maxpool1d",
            LayerKind::Pool1d { max: false, .. } => "avgpool1d",
        };
        let n = counts.entry(base).or_insert(0usize);
        let name = if *n == 0 {
            base.to_string()
        } else {
            format!("{base}_{n}")
        };
        *n += 1;
        let shapes: Vec<Vec<usize>> = inputs
            .iter()
            .map(|s| match s {
                Source::Input => input_shape.to_vec(),
                Source::Layer(i) => layers[*i].output_shape.clone(),
            })
            .collect();
        let refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
        // A shape the rule refuses stays the input's: tests build misfits on purpose.
        let output_shape = kind
            .output_shape_of(&refs)
            .unwrap_or_else(|| shapes[0].clone());
        layers.push(Layer {
            name,
            kind,
            input_shape: shapes[0].clone(),
            output_shape,
            span: 0..0,
            inputs,
        });
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
            validation_data: None,
            loss,
            label_smoothing: 0.0,
            optimizer,
            schedule: None,
            clip: None,
            class_weight: None,
            metrics: vec![],
            epochs: 1,
            batch_size: 32,
            shuffle: false,
            seed: 0,
            spans: Default::default(),
            callbacks: vec![],
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
        kernel_regularizer: None,
    }
}

/// A `conv1d` layer with Keras's defaults (bias, glorot_uniform kernel, zero bias).
pub fn conv1d(
    filters: usize,
    kernel_size: usize,
    strides: usize,
    padding: Padding,
    activation: Activation,
) -> LayerKind {
    LayerKind::Conv1d {
        filters,
        kernel_size,
        strides,
        padding,
        activation,
        use_bias: true,
        kernel_initializer: Initializer::GlorotUniform,
        bias_initializer: Initializer::Zeros,
        kernel_regularizer: None,
    }
}

/// Splits a train-step graph into its gradient part (every node but the `Update`s,
/// `MovingAverage`s and `LearningRate`) and the `(parameter, gradient)` pairs the updates read.
pub fn without_updates(g: &Graph) -> (Graph, Vec<(TensorId, TensorId)>) {
    let mut forward = g.clone();
    forward.nodes.retain(|n| {
        !matches!(
            n.op,
            Op::Update(_) | Op::MovingAverage { .. } | Op::LearningRate(_)
        )
    });
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
