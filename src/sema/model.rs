//! The checked model: what `sema` hands to every later stage.
//!
//! Everything here is validated: shapes are consistent, arguments are in range and
//! defaults are filled in. Later stages (ir, runtime) never see the AST and never
//! need to report a source error for anything this type describes.

use std::path::PathBuf;

pub use crate::diag::Span;

#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub name: String,
    pub input_name: String,
    /// Shape of one sample, without the batch dimension.
    pub input_shape: Vec<usize>,
    pub layers: Vec<Layer>,
    /// Present when the file has a `train` block.
    pub train: Option<TrainConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// The user's name, or the Keras-style generated one (`dense`, `dense_1`, ...).
    pub name: String,
    pub kind: LayerKind,
    pub input_shape: Vec<usize>,
    pub output_shape: Vec<usize>,
    pub span: Span,
}

pub use crate::ops::Activation;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initializer {
    GlorotUniform,
    GlorotNormal,
    HeUniform,
    HeNormal,
    LecunNormal,
    Zeros,
    Ones,
}

impl Initializer {
    /// Every initializer, in the order suggestions and completions list them.
    pub const ALL: [Initializer; 7] = [
        Initializer::GlorotUniform,
        Initializer::GlorotNormal,
        Initializer::HeUniform,
        Initializer::HeNormal,
        Initializer::LecunNormal,
        Initializer::Zeros,
        Initializer::Ones,
    ];

    /// Its name in `.nn` files, as Keras spells it.
    pub fn keyword(self) -> &'static str {
        match self {
            Initializer::GlorotUniform => "glorot_uniform",
            Initializer::GlorotNormal => "glorot_normal",
            Initializer::HeUniform => "he_uniform",
            Initializer::HeNormal => "he_normal",
            Initializer::LecunNormal => "lecun_normal",
            Initializer::Zeros => "zeros",
            Initializer::Ones => "ones",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    Valid,
    Same,
}

impl Padding {
    pub const ALL: [Padding; 2] = [Padding::Valid, Padding::Same];

    pub fn keyword(self) -> &'static str {
        match self {
            Padding::Valid => "valid",
            Padding::Same => "same",
        }
    }

    /// How many windows of size `k` and stride `s > 0` fit along an axis of `n`, as
    /// Keras counts them (`None` when a `valid` window does not fit): `valid`:
    /// `floor((n - k) / s) + 1`; `same`: `ceil(n / s)`, the input padded to fit.
    pub fn windows(self, n: u64, k: u64, s: u64) -> Option<u64> {
        match self {
            Padding::Same => (n > 0).then(|| n.div_ceil(s)),
            Padding::Valid => (k <= n).then(|| (n - k) / s + 1),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum LayerKind {
    Dense {
        units: usize,
        activation: Activation,
        use_bias: bool,
        kernel_initializer: Initializer,
        bias_initializer: Initializer,
    },
    Flatten,
    Dropout {
        rate: f32,
    },
    /// A standalone activation layer (`relu`, `softmax`, ...).
    Activation(Activation),
    Conv2d {
        filters: usize,
        kernel_size: [usize; 2],
        strides: [usize; 2],
        padding: Padding,
        activation: Activation,
        use_bias: bool,
        kernel_initializer: Initializer,
        bias_initializer: Initializer,
    },
    MaxPool2d {
        pool_size: [usize; 2],
        strides: [usize; 2],
        padding: Padding,
    },
    AvgPool2d {
        pool_size: [usize; 2],
        strides: [usize; 2],
        padding: Padding,
    },
    BatchNorm {
        momentum: f32,
        epsilon: f32,
    },
    Reshape {
        shape: Vec<usize>,
    },
}

impl LayerKind {
    /// The layer's shape rule: its output shape for one sample of shape `input`, or
    /// `None` when it does not apply to that input (sema reports why, at the layer).
    pub fn output_shape(&self, input: &[usize]) -> Option<Vec<usize>> {
        let window = |size: [usize; 2], strides: [usize; 2], padding: Padding, channels| {
            let &[h, w, _] = input else { return None };
            let along = |n: usize, a: usize| {
                (size[a] > 0 && strides[a] > 0)
                    .then(|| padding.windows(n as u64, size[a] as u64, strides[a] as u64))
                    .flatten()
                    .map(|windows| windows as usize)
            };
            Some(vec![along(h, 0)?, along(w, 1)?, channels])
        };
        match self {
            LayerKind::Dense { units, .. } => (input.len() == 1).then(|| vec![*units]),
            LayerKind::Flatten => Some(vec![input.iter().product()]),
            LayerKind::Dropout { .. } | LayerKind::Activation(_) | LayerKind::BatchNorm { .. } => {
                Some(input.to_vec())
            }
            LayerKind::Reshape { shape } => (shape.iter().product::<usize>()
                == input.iter().product::<usize>())
            .then(|| shape.clone()),
            LayerKind::Conv2d {
                filters,
                kernel_size,
                strides,
                padding,
                ..
            } => window(*kernel_size, *strides, *padding, *filters),
            LayerKind::MaxPool2d {
                pool_size,
                strides,
                padding,
            }
            | LayerKind::AvgPool2d {
                pool_size,
                strides,
                padding,
            } => window(*pool_size, *strides, *padding, *input.last()?),
        }
    }
}

/// One named weight tensor of a layer, in Keras's layout.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// `kernel`, `bias`, `gamma`, `beta`, `moving_mean` or `moving_variance`.
    pub name: &'static str,
    pub shape: Vec<usize>,
    pub trainable: bool,
    pub initializer: Initializer,
}

impl Layer {
    /// The layer's weights in Keras order; the checkpoint name is `{layer}.{param}`.
    pub fn params(&self) -> Vec<ParamSpec> {
        let p = |name, shape: Vec<usize>, trainable, initializer| ParamSpec {
            name,
            shape,
            trainable,
            initializer,
        };
        match &self.kind {
            LayerKind::Dense {
                units,
                use_bias,
                kernel_initializer,
                bias_initializer,
                ..
            } => {
                // Saturating: the summary counts a layer sema is about to refuse as too big.
                let inputs = self
                    .input_shape
                    .iter()
                    .fold(1, |a: usize, &d| a.saturating_mul(d));
                let mut v = vec![p("kernel", vec![inputs, *units], true, *kernel_initializer)];
                if *use_bias {
                    v.push(p("bias", vec![*units], true, *bias_initializer));
                }
                v
            }
            LayerKind::Conv2d {
                filters,
                kernel_size,
                use_bias,
                kernel_initializer,
                bias_initializer,
                ..
            } => {
                let c = *self.input_shape.last().unwrap_or(&1);
                let mut v = vec![p(
                    "kernel",
                    vec![kernel_size[0], kernel_size[1], c, *filters],
                    true,
                    *kernel_initializer,
                )];
                if *use_bias {
                    v.push(p("bias", vec![*filters], true, *bias_initializer));
                }
                v
            }
            LayerKind::BatchNorm { .. } => {
                let c = *self.input_shape.last().unwrap_or(&1);
                vec![
                    p("gamma", vec![c], true, Initializer::Ones),
                    p("beta", vec![c], true, Initializer::Zeros),
                    p("moving_mean", vec![c], false, Initializer::Zeros),
                    p("moving_variance", vec![c], false, Initializer::Ones),
                ]
            }
            LayerKind::Flatten
            | LayerKind::Dropout { .. }
            | LayerKind::Activation(_)
            | LayerKind::MaxPool2d { .. }
            | LayerKind::AvgPool2d { .. }
            | LayerKind::Reshape { .. } => vec![],
        }
    }

    /// (trainable, non-trainable) parameter counts, saturating at `u64::MAX` (the
    /// summary shows them for layers sema then refuses as too big); the one count
    /// every stage and the summary use.
    pub fn param_counts(&self) -> (u64, u64) {
        let mut counts = (0u64, 0u64);
        for spec in self.params() {
            let n = spec
                .shape
                .iter()
                .fold(1u64, |acc, &d| acc.saturating_mul(d as u64));
            if spec.trainable {
                counts.0 = counts.0.saturating_add(n);
            } else {
                counts.1 = counts.1.saturating_add(n);
            }
        }
        counts
    }
}

impl Model {
    /// Elements of one output sample.
    pub fn output_size(&self) -> usize {
        self.layers
            .last()
            .map(|l| l.output_shape.iter().product())
            .unwrap_or_else(|| self.input_shape.iter().product())
    }

    pub fn input_size(&self) -> usize {
        self.input_shape.iter().product()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub data: DataSource,
    pub test: Option<TestSource>,
    pub validation_split: Option<f64>,
    pub loss: Loss,
    pub optimizer: Optimizer,
    pub metrics: Vec<Metric>,
    pub epochs: usize,
    pub batch_size: usize,
    pub shuffle: bool,
    pub seed: u64,
    /// Where settings are written, for what training reports at run time.
    pub spans: TrainSpans,
}

/// The spans of `train` settings that run-time diagnostics point at (a NaN in the
/// loss, a diverging loss). Empty when the model was not built from source.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrainSpans {
    pub loss: Span,
    pub optimizer: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TestSource {
    Source(DataSource),
    /// A fraction of `data`'s rows, held out before training.
    Split(f64),
}

/// Paths are already resolved against the `.nn` file's folder.
#[derive(Debug, Clone, PartialEq)]
pub enum DataSource {
    Csv {
        path: PathBuf,
        target: String,
        /// `None`: every column but the target.
        features: Option<Vec<String>>,
        standardize: bool,
    },
    Idx {
        images: PathBuf,
        labels: PathBuf,
    },
    Mnist {
        folder: PathBuf,
        subset: MnistSubset,
    },
    /// NumPy `.npy` files: `x` (first axis the sample) and `y` (one value each).
    Npy {
        x: PathBuf,
        y: PathBuf,
    },
    /// Arrays `x` and `y` of a NumPy `.npz` archive.
    Npz {
        path: PathBuf,
        x: String,
        y: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MnistSubset {
    Train,
    Test,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    Mse,
    Mae,
    Huber,
    BinaryCrossentropy,
    CategoricalCrossentropy,
    SparseCategoricalCrossentropy,
}

impl Loss {
    /// Every loss, for tests and fuzzing that try them all.
    pub const ALL: [Loss; 6] = [
        Loss::Mse,
        Loss::Mae,
        Loss::Huber,
        Loss::BinaryCrossentropy,
        Loss::CategoricalCrossentropy,
        Loss::SparseCategoricalCrossentropy,
    ];

    /// The loss's name as written in `.nn` files.
    pub fn keyword(self) -> &'static str {
        match self {
            Loss::Mse => "mse",
            Loss::Mae => "mae",
            Loss::Huber => "huber",
            Loss::BinaryCrossentropy => "binary_crossentropy",
            Loss::CategoricalCrossentropy => "categorical_crossentropy",
            Loss::SparseCategoricalCrossentropy => "sparse_categorical_crossentropy",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Optimizer {
    Sgd {
        learning_rate: f32,
        momentum: f32,
        nesterov: bool,
    },
    Adam {
        learning_rate: f32,
        beta_1: f32,
        beta_2: f32,
        epsilon: f32,
    },
    AdamW {
        learning_rate: f32,
        beta_1: f32,
        beta_2: f32,
        epsilon: f32,
        weight_decay: f32,
    },
    RmsProp {
        learning_rate: f32,
        rho: f32,
        epsilon: f32,
    },
}

impl Optimizer {
    /// Names of the optimizer slots each trainable parameter gets, in `Update` input
    /// order. Keras creates SGD's momentum variable only when `momentum != 0`.
    pub fn slot_names(&self) -> &'static [&'static str] {
        match self {
            Optimizer::Sgd { momentum, .. } if *momentum != 0.0 => &["momentum"],
            Optimizer::Sgd { .. } => &[],
            Optimizer::Adam { .. } | Optimizer::AdamW { .. } => &["m", "v"],
            Optimizer::RmsProp { .. } => &["velocity"],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Accuracy,
    Mse,
    Mae,
}
