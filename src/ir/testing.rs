//! Small models built directly as checked `Model`s, for tests here and in codegen
//! (JIT-against-interpreter property tests) without going through the parser.

use std::path::PathBuf;

use crate::sema::model::{
    Activation, DataSource, Initializer, Layer, LayerKind, Loss, Model, Optimizer, TrainConfig,
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

/// A sequential model of the given layers (dense, flatten, reshape, dropout and
/// activation layers; others keep their input shape), named Keras-style.
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
        let output_shape = match &kind {
            LayerKind::Dense { units, .. } => vec![*units],
            LayerKind::Flatten => vec![shape.iter().product()],
            LayerKind::Reshape { shape } => shape.clone(),
            _ => shape.clone(),
        };
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
        }),
    }
}
