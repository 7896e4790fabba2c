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
    /// The shape of the first input (a merge's inputs' shapes are its sources').
    pub input_shape: Vec<usize>,
    pub output_shape: Vec<usize>,
    pub span: Span,
    /// What the layer reads, in order: one source, or a merge's two or more. Every
    /// source is the model's input or a layer before this one.
    pub inputs: Vec<Source>,
}

/// Where a layer's input comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Input,
    /// The output of `Model::layers[i]`.
    Layer(usize),
}

/// A layer that combines two or more inputs (Keras's merge layers). Keras applies the
/// binary operation left to right: `add(a, b, c)` is `(a + b) + c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    Add,
    /// Exactly two inputs: `a - b`.
    Subtract,
    Multiply,
    /// The sum divided by the number of inputs.
    Average,
    Maximum,
    Minimum,
    /// Joined along `axis`, an axis of one sample (Keras's axis minus the batch's).
    Concatenate {
        axis: usize,
    },
}

impl Merge {
    /// The merge layers' names in `.nn` files.
    pub const NAMES: [&'static str; 7] = [
        "add",
        "subtract",
        "multiply",
        "average",
        "maximum",
        "minimum",
        "concatenate",
    ];

    /// The output shape for inputs of these shapes, or `None` when they do not fit:
    /// one shape for all, or (concatenate) equal but on `axis`.
    pub fn output_shape(self, inputs: &[&[usize]]) -> Option<Vec<usize>> {
        let first = inputs.first()?;
        match self {
            Merge::Concatenate { axis } => {
                let rank_ok = |s: &&[usize]| s.len() == first.len() && axis < s.len();
                let others_ok = |s: &&[usize]| {
                    s.iter()
                        .zip(first.iter())
                        .enumerate()
                        .all(|(i, (a, b))| i == axis || a == b)
                };
                if !inputs.iter().all(|s| rank_ok(s) && others_ok(s)) {
                    return None;
                }
                let mut out = first.to_vec();
                out[axis] = inputs.iter().map(|s| s[axis]).sum();
                Some(out)
            }
            _ => inputs.iter().all(|s| s == first).then(|| first.to_vec()),
        }
    }
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
    /// Keras's `uniform`: U(-0.05, 0.05), `embedding`'s default.
    Uniform,
}

/// Keras's kernel weight penalty, added to the loss: `l1 * sum(|w|) + l2 * sum(w^2)`
/// (a term only when its factor is not 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Regularizer {
    pub l1: f32,
    pub l2: f32,
}

impl Initializer {
    /// Every initializer, in the order suggestions and completions list them.
    pub const ALL: [Initializer; 8] = [
        Initializer::GlorotUniform,
        Initializer::GlorotNormal,
        Initializer::HeUniform,
        Initializer::HeNormal,
        Initializer::LecunNormal,
        Initializer::Zeros,
        Initializer::Ones,
        Initializer::Uniform,
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
            Initializer::Uniform => "uniform",
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
        kernel_regularizer: Option<Regularizer>,
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
        kernel_regularizer: Option<Regularizer>,
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
        /// Every dimension known (sema has put the inferred one in place of `-1`).
        shape: Vec<usize>,
    },
    Merge(Merge),
    /// The mean (or, with `max`, the maximum) of each channel over every position
    /// of a `[steps, c]` (`dims == 1`) or `[h, w, c]` (`dims == 2`) input: `[c]`.
    GlobalPool {
        max: bool,
        dims: usize,
    },
    /// Keras's `LayerNormalization` over the last axis: `gamma` with `scale`,
    /// `beta` with `center`.
    LayerNorm {
        epsilon: f32,
        center: bool,
        scale: bool,
    },
    /// Keras's `Embedding`: the model's first layer, reading `[n]` token ids (whole
    /// numbers in `[0, input_dim)`, which the data checks hold) and giving each its
    /// row of the `[input_dim, output_dim]` table: `[n, output_dim]`.
    Embedding {
        input_dim: usize,
        output_dim: usize,
        embeddings_initializer: Initializer,
    },
    /// Keras's `Conv1D` over a sequence `[steps, c]`, kernel `[k, c, filters]`.
    Conv1d {
        filters: usize,
        kernel_size: usize,
        strides: usize,
        padding: Padding,
        activation: Activation,
        use_bias: bool,
        kernel_initializer: Initializer,
        bias_initializer: Initializer,
        kernel_regularizer: Option<Regularizer>,
    },
    /// Keras's `MaxPooling1D` (`max`) or `AveragePooling1D` over a sequence.
    Pool1d {
        max: bool,
        pool_size: usize,
        strides: usize,
        padding: Padding,
    },
}

impl LayerKind {
    /// The shape rule of a layer with these inputs (one, or a merge's several).
    pub fn output_shape_of(&self, inputs: &[&[usize]]) -> Option<Vec<usize>> {
        match (self, inputs) {
            (LayerKind::Merge(m), _) => m.output_shape(inputs),
            (_, [one]) => self.output_shape(one),
            _ => None,
        }
    }

    /// The layer's shape rule: its output shape for one sample of shape `input`, or
    /// `None` when it does not apply to that input (sema reports why, at the layer).
    /// A merge's is its output when every input has shape `input`.
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
        let steps = |size: usize, stride: usize, padding: Padding, channels| {
            let &[n, _] = input else { return None };
            let windows = (size > 0 && stride > 0)
                .then(|| padding.windows(n as u64, size as u64, stride as u64))
                .flatten()?;
            Some(vec![windows as usize, channels])
        };
        match self {
            LayerKind::Dense { units, .. } => (input.len() == 1).then(|| vec![*units]),
            LayerKind::Flatten => Some(vec![input.iter().product()]),
            LayerKind::Dropout { .. }
            | LayerKind::Activation(_)
            | LayerKind::BatchNorm { .. }
            | LayerKind::LayerNorm { .. } => Some(input.to_vec()),
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
            LayerKind::Conv1d {
                filters,
                kernel_size,
                strides,
                padding,
                ..
            } => steps(*kernel_size, *strides, *padding, *filters),
            LayerKind::Pool1d {
                pool_size,
                strides,
                padding,
                ..
            } => steps(*pool_size, *strides, *padding, *input.last()?),
            LayerKind::Embedding { output_dim, .. } => {
                (input.len() == 1).then(|| vec![input[0], *output_dim])
            }
            LayerKind::Merge(m) => m.output_shape(&[input, input]),
            LayerKind::GlobalPool { dims, .. } => {
                (input.len() == dims + 1).then(|| vec![input[*dims]])
            }
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
    /// The penalty on the layer's kernel, if it has one.
    pub fn kernel_regularizer(&self) -> Option<Regularizer> {
        match &self.kind {
            LayerKind::Dense {
                kernel_regularizer, ..
            }
            | LayerKind::Conv2d {
                kernel_regularizer, ..
            }
            | LayerKind::Conv1d {
                kernel_regularizer, ..
            } => *kernel_regularizer,
            _ => None,
        }
    }

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
            LayerKind::Embedding {
                input_dim,
                output_dim,
                embeddings_initializer,
            } => vec![p(
                "embeddings",
                vec![*input_dim, *output_dim],
                true,
                *embeddings_initializer,
            )],
            LayerKind::Conv1d {
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
                    vec![*kernel_size, c, *filters],
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
            LayerKind::LayerNorm { center, scale, .. } => {
                let c = *self.input_shape.last().unwrap_or(&1);
                let mut v = vec![];
                if *scale {
                    v.push(p("gamma", vec![c], true, Initializer::Ones));
                }
                if *center {
                    v.push(p("beta", vec![c], true, Initializer::Zeros));
                }
                v
            }
            LayerKind::Flatten
            | LayerKind::Dropout { .. }
            | LayerKind::Activation(_)
            | LayerKind::MaxPool2d { .. }
            | LayerKind::AvgPool2d { .. }
            | LayerKind::Reshape { .. }
            | LayerKind::GlobalPool { .. }
            | LayerKind::Pool1d { .. }
            | LayerKind::Merge(_) => vec![],
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
    /// True when every layer reads the statement before it (a version 1 model, which
    /// Keras would build as a `Sequential`).
    pub fn is_chain(&self) -> bool {
        is_chain(&self.layers)
    }

    /// The shapes of one sample of each of `layer`'s inputs.
    pub fn input_shapes(&self, layer: &Layer) -> Vec<&[usize]> {
        layer
            .inputs
            .iter()
            .map(|s| match s {
                Source::Input => self.input_shape.as_slice(),
                Source::Layer(i) => self.layers[*i].output_shape.as_slice(),
            })
            .collect()
    }

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

/// True when layer `i` reads layer `i - 1` (the first, the input) and nothing else.
pub fn is_chain(layers: &[Layer]) -> bool {
    layers.iter().enumerate().all(|(i, l)| {
        let previous = i.checked_sub(1).map_or(Source::Input, Source::Layer);
        l.inputs == [previous]
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub data: DataSource,
    pub test: Option<TestSource>,
    pub validation_split: Option<f64>,
    /// A separate validation set (`validation_data`), matched to the training
    /// features by name as `test` is; excludes `validation_split`.
    pub validation_data: Option<DataSource>,
    pub loss: Loss,
    /// The cross-entropies' `label_smoothing`, in [0, 1]; 0 smooths nothing.
    pub label_smoothing: f32,
    pub optimizer: Optimizer,
    /// The optimizer's `learning_rate` when it is a schedule (the optimizer's own
    /// `learning_rate` is then the schedule's value at step 0).
    pub schedule: Option<Schedule>,
    /// The optimizer's gradient clipping (`clipnorm`, `global_clipnorm`, `clipvalue`).
    pub clip: Option<Clip>,
    /// `fit(class_weight=...)`: each training sample's loss weighted by its class's.
    pub class_weight: Option<ClassWeight>,
    pub metrics: Vec<Metric>,
    pub epochs: usize,
    pub batch_size: usize,
    pub shuffle: bool,
    pub seed: u64,
    /// Where settings are written, for what training reports at run time.
    pub spans: TrainSpans,
    /// What runs after each batch and epoch (`runtime::callbacks`), in order.
    pub callbacks: Vec<Callback>,
}

/// The spans of `train` settings that run-time diagnostics point at (a NaN in the
/// loss, a diverging loss). Empty when the model was not built from source.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrainSpans {
    pub loss: Span,
    pub optimizer: Span,
}

/// One entry of the `callbacks` setting, checked: a monitored name is one the run
/// logs, and its direction is resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Callback {
    EarlyStopping {
        monitor: Monitor,
        patience: u64,
        min_delta: f64,
        restore_best_weights: bool,
        start_from_epoch: u64,
    },
    ReduceLrOnPlateau {
        monitor: Monitor,
        factor: f64,
        patience: u64,
        min_delta: f64,
        cooldown: u64,
        min_lr: f64,
    },
    ModelCheckpoint {
        path: PathBuf,
        monitor: Monitor,
        save_best_only: bool,
    },
    TerminateOnNan,
    CsvLogger {
        path: PathBuf,
    },
}

/// A logged quantity (`loss`, `accuracy`, `val_loss`, ...) and which way is better.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Monitor {
    pub name: String,
    /// `mode = min`, or `auto` on a loss or error; otherwise larger is better.
    pub minimize: bool,
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

/// The `loss` of a `train` block. Everything nnc knows about a loss by its name is
/// in this table (`ALL`, `keyword`, `ALIASES`, `targets`, `expects`,
/// `smooths_labels`): sema, the data checks and the runtime read it, so a new loss is
/// a variant here plus its arithmetic in `ir/loss.rs` and its native code in
/// `codegen/loss.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    Mse,
    Mae,
    Huber,
    BinaryCrossentropy,
    CategoricalCrossentropy,
    SparseCategoricalCrossentropy,
    /// Keras's `log_cosh`: `log(cosh(error))`, mean over all elements.
    LogCosh,
    /// Keras's `poisson`: `p - y log(p + epsilon)`, mean over all elements.
    Poisson,
    /// Keras's `kl_divergence`: `sum(y log(y / p))` over each row with both clipped
    /// to `[1e-7, 1]`, mean over the batch; targets one-hot class rows.
    KlDivergence,
}

/// What a loss compares the output with, which decides the data's target column
/// (one value per sample) and the output the loss fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Targets {
    /// Any number, against one output unit (regression).
    Value,
    /// 0 or 1, against one output unit.
    Binary,
    /// A class index in `[0, units)`, one-hot encoded to a row of the output's width.
    OneHot,
    /// A class index in `[0, units)`, kept as an index.
    Sparse,
}

impl Targets {
    /// Whether the targets name classes (class weights, class lists, label checks).
    pub fn are_classes(self) -> bool {
        match self {
            Targets::Value => false,
            Targets::Binary | Targets::OneHot | Targets::Sparse => true,
        }
    }

    /// Whether the targets are one class per output unit (two units at least).
    pub fn one_per_unit(self) -> bool {
        match self {
            Targets::OneHot | Targets::Sparse => true,
            Targets::Value | Targets::Binary => false,
        }
    }
}

impl Loss {
    /// Every loss, for names, tests and fuzzing that try them all.
    pub const ALL: [Loss; 9] = [
        Loss::Mse,
        Loss::Mae,
        Loss::Huber,
        Loss::BinaryCrossentropy,
        Loss::CategoricalCrossentropy,
        Loss::SparseCategoricalCrossentropy,
        Loss::LogCosh,
        Loss::Poisson,
        Loss::KlDivergence,
    ];

    /// Other names Keras's `losses.get` accepts for a loss, accepted as well.
    pub const ALIASES: &'static [(&'static str, Loss)] = &[("kld", Loss::KlDivergence)];

    /// The loss's name as written in `.nn` files.
    pub fn keyword(self) -> &'static str {
        match self {
            Loss::Mse => "mse",
            Loss::Mae => "mae",
            Loss::Huber => "huber",
            Loss::BinaryCrossentropy => "binary_crossentropy",
            Loss::CategoricalCrossentropy => "categorical_crossentropy",
            Loss::SparseCategoricalCrossentropy => "sparse_categorical_crossentropy",
            Loss::LogCosh => "log_cosh",
            Loss::Poisson => "poisson",
            Loss::KlDivergence => "kl_divergence",
        }
    }

    /// The loss a name or alias stands for.
    pub fn from_keyword(name: &str) -> Option<Loss> {
        Loss::ALL
            .into_iter()
            .find(|l| l.keyword() == name)
            .or_else(|| Loss::ALIASES.iter().find(|(a, _)| *a == name).map(|p| p.1))
    }

    /// What the loss compares the output with.
    pub fn targets(self) -> Targets {
        match self {
            Loss::Mse | Loss::Mae | Loss::Huber | Loss::LogCosh | Loss::Poisson => Targets::Value,
            Loss::BinaryCrossentropy => Targets::Binary,
            Loss::CategoricalCrossentropy | Loss::KlDivergence => Targets::OneHot,
            Loss::SparseCategoricalCrossentropy => Targets::Sparse,
        }
    }

    /// The final activation whose probabilities the loss expects (a lint otherwise).
    pub fn expects(self) -> Option<Activation> {
        match self {
            Loss::Mse | Loss::Mae | Loss::Huber | Loss::LogCosh | Loss::Poisson => None,
            Loss::BinaryCrossentropy => Some(Activation::Sigmoid),
            Loss::CategoricalCrossentropy
            | Loss::SparseCategoricalCrossentropy
            | Loss::KlDivergence => Some(Activation::Softmax),
        }
    }

    /// Whether the loss takes Keras's `label_smoothing` (sparse categorical
    /// cross-entropy does not in Keras either).
    pub fn smooths_labels(self) -> bool {
        match self {
            Loss::BinaryCrossentropy | Loss::CategoricalCrossentropy => true,
            Loss::Mse
            | Loss::Mae
            | Loss::Huber
            | Loss::SparseCategoricalCrossentropy
            | Loss::LogCosh
            | Loss::Poisson
            | Loss::KlDivergence => false,
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
    /// The learning rate the first step uses (a schedule's initial value).
    pub fn learning_rate(&self) -> f32 {
        match *self {
            Optimizer::Sgd { learning_rate, .. }
            | Optimizer::Adam { learning_rate, .. }
            | Optimizer::AdamW { learning_rate, .. }
            | Optimizer::RmsProp { learning_rate, .. } => learning_rate,
        }
    }

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

/// A learning-rate schedule of `keras.optimizers.schedules`, evaluated at every step
/// from the optimizer's iteration count (`ir::optim::scheduled_rate`).
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    ExponentialDecay {
        initial: f32,
        decay_steps: f32,
        decay_rate: f32,
        staircase: bool,
    },
    InverseTimeDecay {
        initial: f32,
        decay_steps: f32,
        decay_rate: f32,
        staircase: bool,
    },
    PolynomialDecay {
        initial: f32,
        decay_steps: f32,
        end: f32,
        power: f32,
        cycle: bool,
    },
    CosineDecay {
        initial: f32,
        decay_steps: f32,
        alpha: f32,
        /// With a target, the rate first grows linearly from `initial` to it over
        /// `warmup_steps`, then decays from it.
        warmup_target: Option<f32>,
        warmup_steps: f32,
    },
    /// `values[0]` up to step `boundaries[0]` included, ..., `values[n]` after
    /// `boundaries[n - 1]`; boundaries strictly increasing.
    PiecewiseConstantDecay {
        boundaries: Vec<u64>,
        values: Vec<f32>,
    },
}

impl Schedule {
    /// The rate of the first step.
    pub fn initial(&self) -> f32 {
        match self {
            Schedule::ExponentialDecay { initial, .. }
            | Schedule::InverseTimeDecay { initial, .. }
            | Schedule::PolynomialDecay { initial, .. }
            | Schedule::CosineDecay { initial, .. } => *initial,
            Schedule::PiecewiseConstantDecay { values, .. } => values[0],
        }
    }
}

/// Class weights of the training loss.
#[derive(Debug, Clone, PartialEq)]
pub enum ClassWeight {
    /// scikit-learn's `balanced`: `n_samples / (n_classes * count)` per class, from the
    /// training rows (`runtime::class_weight` replaces it with the weights).
    Balanced,
    /// One weight per class, by class index.
    Given(Vec<f32>),
}

/// Gradient clipping before the update, as Keras 3 applies it (one kind at a time).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Clip {
    /// Each gradient tensor rescaled to an L2 norm of at most this.
    Norm(f32),
    /// All gradients rescaled together to a global L2 norm of at most this.
    GlobalNorm(f32),
    /// Each gradient element clipped to `[-limit, limit]`.
    Value(f32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Accuracy,
    Mse,
    Mae,
    /// Keras's `Precision()`: every output a yes/no decision at 0.5.
    Precision,
    /// Keras's `Recall()`, likewise.
    Recall,
    /// Keras's `AUC()`: the ROC curve at 200 thresholds, interpolated.
    Auc,
    /// Keras's `top_k_categorical_accuracy` (one-hot targets) and
    /// `sparse_top_k_categorical_accuracy` (class indices).
    TopKAccuracy {
        k: usize,
    },
}

impl Metric {
    /// Every metric, `top_k_accuracy` with Keras's default `k = 5`; names, the
    /// `metrics` list and tests read it.
    pub const ALL: [Metric; 7] = [
        Metric::Accuracy,
        Metric::Mse,
        Metric::Mae,
        Metric::Precision,
        Metric::Recall,
        Metric::Auc,
        Metric::TopKAccuracy { k: 5 },
    ];

    /// The metric a name stands for (`top_k_accuracy` with its default `k`).
    pub fn from_keyword(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.keyword() == name)
    }

    /// The metric's name as written in `.nn` files and logs.
    pub fn keyword(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::Mse => "mse",
            Metric::Mae => "mae",
            Metric::Precision => "precision",
            Metric::Recall => "recall",
            Metric::Auc => "auc",
            Metric::TopKAccuracy { .. } => "top_k_accuracy",
        }
    }

    /// Whether a smaller value is better (Keras's metric `_direction`), for a
    /// callback's `mode = auto`.
    pub fn lower_is_better(self) -> bool {
        match self {
            Metric::Mse | Metric::Mae => true,
            Metric::Accuracy
            | Metric::Precision
            | Metric::Recall
            | Metric::Auc
            | Metric::TopKAccuracy { .. } => false,
        }
    }
}
