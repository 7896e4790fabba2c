//! Semantic checking: names, arguments, shapes, parameter counts, lints.
//!
//! `check_file` / `check_source` run the whole front end and return a
//! `CheckOutcome`: every diagnostic, a summary, and the checked `Model` when
//! there are no errors.

pub mod args;
pub mod callbacks;
pub mod check;
pub mod lint;
pub mod model;
pub mod names;
pub mod summary;
pub mod train;

use std::path::Path;

use crate::diag::{self, codes, Diagnostic};
use crate::syntax::{self, ast};
use model::Model;
use summary::Summary;

/// A model, or a training step, larger than this is refused (E0021).
pub const MEMORY_LIMIT_BYTES: u128 = 16 << 30;

/// Diagnostics of one file beyond this many are summarized in one line: rendering
/// each costs time in proportion to the file, and nobody reads thousands.
pub const MAX_DIAGNOSTICS: usize = 100;

#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Batch size for the memory estimate; default: the train block's, or 32.
    pub batch_size: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct CheckOutcome {
    /// The file's name as shown in diagnostics (as given, never made absolute).
    pub file: String,
    /// The text diagnostics point into (empty when the file was refused unread).
    pub source: String,
    /// Present exactly when there are no errors; `train` is filled when the file has one.
    pub model: Option<Model>,
    /// Present when the model block could be checked at least in part.
    pub summary: Option<Summary>,
    /// Errors and warnings, in source order.
    pub diagnostics: Vec<Diagnostic>,
}

impl CheckOutcome {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// The diagnostics as ariadne text.
    pub fn render_diagnostics(&self, color: bool) -> String {
        diag::render(&self.diagnostics, &self.file, &self.source, color)
    }

    /// Writes the diagnostics to stderr, in colour when stderr is a terminal.
    pub fn eprint_diagnostics(&self) {
        use std::io::{IsTerminal, Write};
        let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let text = self.render_diagnostics(color);
        // Nothing sensible is left to do if stderr itself is gone.
        let _ = std::io::stderr().write_all(text.as_bytes());
    }
}

/// Reads and checks one file. Data paths are resolved against the file's folder.
/// An `Err` means the file could not be read at all (a usage error).
pub fn check_file(path: &Path, opts: &CheckOptions) -> std::io::Result<CheckOutcome> {
    let bytes = std::fs::read(path)?;
    let base = path.parent().unwrap_or(Path::new(""));
    Ok(check_source(
        &path.display().to_string(),
        &bytes,
        base,
        opts,
    ))
}

/// Checks the bytes of one `.nn` file; `base_dir` is where its data paths start.
pub fn check_source(
    file: &str,
    bytes: &[u8],
    base_dir: &Path,
    opts: &CheckOptions,
) -> CheckOutcome {
    let mut out = CheckOutcome {
        file: file.to_string(),
        source: String::new(),
        model: None,
        summary: None,
        diagnostics: vec![],
    };
    if bytes.len() > syntax::MAX_SOURCE_BYTES {
        out.diagnostics.push(Diagnostic::error(
            codes::TOO_LARGE,
            format!(
                "the file is {} bytes; nnc reads at most {} bytes",
                bytes.len(),
                syntax::MAX_SOURCE_BYTES
            ),
            0..0,
            "file refused",
        ));
        return out;
    }
    let src = match std::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            let at = e.valid_up_to();
            out.source = String::from_utf8_lossy(bytes).into_owned();
            let bad = bytes.get(at).copied().unwrap_or(0);
            // The lossy text is identical up to `at`, where U+FFFD takes 3 bytes.
            out.diagnostics.push(
                Diagnostic::error(
                    codes::NOT_UTF8,
                    format!("the file is not UTF-8: byte 0x{bad:02X} at offset {at}"),
                    at..at + '\u{FFFD}'.len_utf8(),
                    "not UTF-8",
                )
                .with_help("save the file as UTF-8"),
            );
            return out;
        }
    };
    out.source = src.to_string();
    let file_ast = match syntax::parse(src) {
        Ok(f) => f,
        Err(d) => {
            out.diagnostics.push(d);
            return out;
        }
    };
    check_ast(&file_ast, base_dir, opts, &mut out);
    out.diagnostics.sort_by_key(|d| (d.span.start, d.span.end));
    if out.diagnostics.len() > MAX_DIAGNOSTICS {
        let rest = out.diagnostics.split_off(MAX_DIAGNOSTICS);
        out.diagnostics.push(Diagnostic::error(
            codes::TOO_LARGE,
            format!("too many problems: {} more are not shown", rest.len()),
            rest[0].span.clone(),
            "the first one not shown",
        ));
    }
    out
}

fn check_ast(file: &ast::File, base_dir: &Path, opts: &CheckOptions, out: &mut CheckOutcome) {
    let d = &mut out.diagnostics;
    let models: Vec<&ast::ModelBlock> = file
        .items
        .iter()
        .filter_map(|i| match i {
            ast::Item::Model(m) => Some(m),
            _ => None,
        })
        .collect();
    let trains: Vec<&ast::TrainBlock> = file
        .items
        .iter()
        .filter_map(|i| match i {
            ast::Item::Train(t) => Some(t),
            _ => None,
        })
        .collect();
    for extra in models.iter().skip(1) {
        d.push(
            Diagnostic::error(
                codes::ITEMS,
                "a file holds exactly one `model` block",
                extra.keyword.clone(),
                "second model",
            )
            .with_label(models[0].keyword.clone(), "the first model")
            .with_help("put each model in its own file"),
        );
    }
    for extra in trains.iter().skip(1) {
        d.push(
            Diagnostic::error(
                codes::ITEMS,
                "a file holds at most one `train` block",
                extra.keyword.clone(),
                "second train block",
            )
            .with_label(trains[0].keyword.clone(), "the first train block"),
        );
    }
    let Some(block) = models.first() else {
        d.push(
            Diagnostic::error(
                codes::ITEMS,
                "the file has no `model` block",
                0..0,
                "expected a model here",
            )
            .with_help("start with `model NAME { input x: [n] ... }`"),
        );
        return;
    };

    let checked = check::check_model(block, d);
    let (input_name, input_shape, input_span) = match &checked.input {
        Some((n, s, sp)) => (n.clone(), s.clone(), sp.clone()),
        None => (String::new(), vec![], block.name.span.clone()),
    };
    let facts = train::ModelFacts {
        input_size: checked
            .input
            .as_ref()
            .map(|(_, s, _)| s.iter().fold(1u64, |a, &x| a.saturating_mul(x as u64))),
        input_shape: format!(
            "[{}]",
            input_shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        output_size: checked.complete.then(|| {
            let last = checked
                .layers
                .last()
                .map(|l| &l.output_shape)
                .unwrap_or(&input_shape);
            last.iter().fold(1u64, |a, &x| a.saturating_mul(x as u64))
        }),
        output_span: checked
            .layers
            .last()
            .map(|l| l.span.clone())
            .unwrap_or(input_span),
    };
    if checked.complete {
        lint::lint_model(&checked.layers, d);
    }
    let train = trains.first().and_then(|t| {
        let cfg = train::check_train(t, base_dir, &facts, d)?;
        if checked.complete {
            if let Some(s) = t.settings.iter().find(|s| s.key.name == "loss") {
                lint::lint_loss(&checked.layers, cfg.loss, s.value.span.clone(), d);
            }
        }
        Some(cfg)
    });
    let batch = opts
        .batch_size
        .or(train.as_ref().map(|t| t.batch_size))
        .unwrap_or(32);
    if checked.input.is_some() {
        let s = summary::summarize(
            &checked.name,
            (&input_name, &input_shape),
            &checked.layers,
            train.as_ref().map(|t| &t.optimizer),
            batch,
        );
        check_memory(&s, &checked, d);
        out.summary = Some(s);
    }
    if !d.iter().any(Diagnostic::is_error) {
        out.model = Some(Model {
            name: checked.name,
            input_name,
            input_shape,
            layers: checked.layers,
            train,
        });
    }
}

/// E0021: refuse models whose parameters or training step cannot fit in memory. The
/// primary label is on the layer that makes it too large, the model a secondary one.
fn check_memory(s: &Summary, checked: &check::CheckedModel, d: &mut Vec<Diagnostic>) {
    let m = &s.memory;
    // Counts saturate at the type's maximum: such a size is "at least" that.
    let bytes_text = |b: u128| {
        let exact = u64::try_from(b).is_ok_and(|b| b < u64::MAX);
        if exact {
            format!("{b} bytes ({})", summary::human_bytes(b))
        } else {
            "more bytes than a 64-bit count holds".into()
        }
    };
    let params_too_big = m.parameters > MEMORY_LIMIT_BYTES;
    let what = if params_too_big {
        format!("its parameters alone take {}", bytes_text(m.parameters))
    } else if m.total > MEMORY_LIMIT_BYTES {
        format!(
            "one training step at batch size {} takes {}",
            m.batch_size,
            bytes_text(m.total)
        )
    } else {
        return;
    };
    // The layer that costs most: by parameters when they are too many, else by the
    // bytes it adds to a step (its weights with their gradients and optimizer
    // state, and its output with its gradient for the batch, 4 bytes a value).
    let per_param = (m.parameters + m.gradients + m.optimizer_state) / m.parameters.max(1);
    let cost = |l: &model::Layer, r: &summary::Row| -> u128 {
        let weights = u128::from(r.params);
        if params_too_big {
            return weights;
        }
        let out = l
            .output_shape
            .iter()
            .fold(1u128, |a, &x| a.saturating_mul(x as u128));
        weights
            .saturating_mul(4 * per_param.max(1))
            .saturating_add(out.saturating_mul(m.batch_size as u128).saturating_mul(8))
    };
    let biggest = checked
        .layers
        .iter()
        .zip(&s.layers)
        .max_by_key(|(l, r)| cost(l, r));
    let message = format!(
        "model `{}` is too large: {what}, more than the {} limit",
        s.model,
        summary::human_bytes(MEMORY_LIMIT_BYTES)
    );
    let help =
        "use smaller layers, pooling or strides before dense layers, or a smaller batch size";
    let diag = match biggest {
        Some((l, r)) => {
            let params = if r.params == u64::MAX {
                "more parameters than a 64-bit count holds".to_string()
            } else {
                format!("{} parameters", summary::thousands(u128::from(r.params)))
            };
            Diagnostic::error(
                codes::TOO_BIG,
                message,
                l.span.clone(),
                format!("`{}`: {params}, output {:?}", l.name, l.output_shape),
            )
            .with_label(checked.name_span.clone(), "this model")
        }
        None => Diagnostic::error(
            codes::TOO_BIG,
            message,
            checked.name_span.clone(),
            "this model",
        ),
    };
    d.push(diag.with_help(help));
}

#[cfg(test)]
mod tests {
    use super::model::*;
    use super::*;
    use std::path::PathBuf;

    fn check(src: &str) -> CheckOutcome {
        check_source(
            "t.nn",
            src.as_bytes(),
            Path::new("ex"),
            &CheckOptions::default(),
        )
    }

    fn codes_of(o: &CheckOutcome) -> Vec<&'static str> {
        o.diagnostics.iter().map(|d| d.code).collect()
    }

    #[test]
    fn seed_network_model_and_train_config() {
        let src = std::fs::read_to_string("examples/seed.nn").unwrap();
        let o = check(&src);
        assert!(o.diagnostics.is_empty(), "{:?}", o.diagnostics);
        let m = o.model.unwrap();
        assert_eq!(m.input_shape, vec![3]);
        let counts: Vec<_> = m.layers.iter().map(Layer::param_counts).collect();
        assert_eq!(counts, vec![(20, 0), (6, 0)]);
        let t = m.train.unwrap();
        assert_eq!(
            t.data,
            DataSource::Csv {
                path: PathBuf::from("ex/data/breast_cancer.csv"),
                target: "benign".into(),
                features: Some(vec![
                    "mean_radius".into(),
                    "mean_texture".into(),
                    "mean_perimeter".into()
                ]),
                standardize: true,
            }
        );
        assert_eq!(t.test, Some(TestSource::Split(0.2)));
        assert_eq!(t.loss, Loss::BinaryCrossentropy);
        assert_eq!(
            t.optimizer,
            Optimizer::Adam {
                learning_rate: 0.001,
                beta_1: 0.9,
                beta_2: 0.999,
                epsilon: 1e-7
            }
        );
        assert_eq!(
            (t.epochs, t.batch_size, t.seed, t.shuffle),
            (30, 32, 7, true)
        );
        assert_eq!(t.metrics, vec![Metric::Accuracy]);
    }

    #[test]
    fn mnist_resnet_counts_are_keras_counts() {
        // Keras 3.15 (`keras.Model(...).layers[i].count_params()` of the same
        // functional model, built layer for layer with the same names; the input
        // layer, 0, left out), and its trainable / non-trainable weight sizes.
        let keras: [(&str, u64); 15] = [
            ("stem", 320),
            ("pool", 0),
            ("a_conv", 9248),
            ("a_conv_2", 9248),
            ("a_norm", 128),
            ("a_sum", 0),
            ("a_out", 0),
            ("a_pool", 0),
            ("b_conv", 9248),
            ("b_conv_2", 9248),
            ("b_norm", 128),
            ("b_sum", 0),
            ("b_out", 0),
            ("global_avgpool2d", 0),
            ("dense", 330),
        ];
        let o = check_file(
            Path::new("examples/mnist_resnet.nn"),
            &CheckOptions::default(),
        )
        .unwrap();
        let s = o.summary.unwrap();
        let rows: Vec<(&str, u64)> = s
            .layers
            .iter()
            .map(|r| (r.name.as_str(), r.params))
            .collect();
        assert_eq!(rows, keras);
        assert_eq!(
            (s.total_params, s.trainable_params, s.non_trainable_params),
            (37_898, 37_770, 128)
        );
    }

    #[test]
    fn checked_shapes_follow_the_layer_shape_rule() {
        // sema infers shapes with diagnostics; LayerKind::output_shape is the rule the
        // IR's test models use. Every layer of every valid golden file and example must
        // get the same shape from both.
        let mut layers = 0;
        for dir in ["examples", "tests/golden"] {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_none_or(|e| e != "nn") {
                    continue;
                }
                // Some golden files are not UTF-8 on purpose.
                let Ok(text) = std::fs::read_to_string(&path) else {
                    continue;
                };
                let o = check(&text);
                let Some(model) = o.model.as_ref().filter(|_| !o.has_errors()) else {
                    continue;
                };
                for l in &model.layers {
                    let rule = l.kind.output_shape_of(&model.input_shapes(l));
                    assert_eq!(
                        rule.as_ref(),
                        Some(&l.output_shape),
                        "{}: {}",
                        path.display(),
                        l.name
                    );
                    layers += 1;
                }
            }
        }
        assert!(layers > 50, "only {layers} layers compared");
    }

    #[test]
    fn reshape_puts_the_inferred_dimension_in_the_model() {
        let o = check("model m {\n input x: [12]\n reshape(shape = [2, -1, 3])\n}\n");
        let m = o.model.unwrap();
        assert_eq!(
            m.layers[0].kind,
            LayerKind::Reshape {
                shape: vec![2, 2, 3]
            }
        );
        assert_eq!(m.layers[0].output_shape, vec![2, 2, 3]);
    }

    #[test]
    fn leaky_relu_slopes_as_keras_in_each_use() {
        let o = check(
            "model m {\n input x: [3]\n dense(2, activation = leaky_relu)\n leaky_relu\n \
             dense(2, activation = leaky_relu(alpha = 0.1))\n}\n",
        );
        let m = o.model.unwrap();
        let activation = |l: &Layer| match l.kind {
            LayerKind::Dense { activation, .. } | LayerKind::Activation(activation) => activation,
            _ => panic!("{:?}", l.kind),
        };
        let slopes: Vec<Activation> = m.layers.iter().map(activation).collect();
        // Keras: the `leaky_relu` function 0.2, the `LeakyReLU` layer 0.3.
        assert_eq!(
            slopes,
            [0.2, 0.3, 0.1].map(|alpha| Activation::LeakyRelu { alpha })
        );
    }

    #[test]
    fn defaults_are_filled_in() {
        let o = check(
            "model m {\n input x: [8, 8, 1]\n conv2d(4, 3)\n maxpool2d\n flatten\n dense(2)\n}\n\
             train {\n data = mnist(\"m\")\n loss = mse\n optimizer = sgd\n}\n",
        );
        // mse with two outputs and MNIST with 64 inputs are both errors; no model then.
        assert_eq!(codes_of(&o), vec![codes::DATA_INPUT, codes::LOSS_OUTPUT]);
        assert!(o.model.is_none());
        let o = check("model m {\n input x: [8, 8, 1]\n conv2d(4, 3)\n maxpool2d\n}\n");
        let m = o.model.unwrap();
        assert_eq!(
            m.layers[1].kind,
            LayerKind::MaxPool2d {
                pool_size: [2, 2],
                strides: [2, 2],
                padding: Padding::Valid
            }
        );
        assert_eq!(m.layers[1].output_shape, vec![3, 3, 4]);
        assert!(matches!(
            m.layers[0].kind,
            LayerKind::Conv2d {
                strides: [1, 1],
                activation: Activation::Linear,
                use_bias: true,
                kernel_initializer: Initializer::GlorotUniform,
                ..
            }
        ));
    }

    #[test]
    fn kernel_regularizers_take_keras_3_defaults() {
        let o = check(
            "model m {\n input x: [2, 2, 1]\n b = conv2d(1, 1, kernel_regularizer = l1(0.5))\n \
             flatten\n a = dense(2, kernel_regularizer = l2)\n \
             dense(2, kernel_regularizer = l1_l2(l2 = 0.3))\n}\n",
        );
        let m = o.model.unwrap();
        let regs: Vec<Option<Regularizer>> =
            m.layers.iter().map(Layer::kernel_regularizer).collect();
        // Keras 3: L1(l1=0.01), L2(l2=0.01), L1L2(l1=0.0, l2=0.0).
        assert_eq!(
            regs,
            vec![
                Some(Regularizer { l1: 0.5, l2: 0.0 }),
                None,
                Some(Regularizer { l1: 0.0, l2: 0.01 }),
                Some(Regularizer { l1: 0.0, l2: 0.3 }),
            ]
        );
    }

    #[test]
    fn conv1d_keeps_its_kernel_regularizer() {
        let o = check(
            "model m {\n input x: [8, 2]\n conv1d(4, 3, kernel_regularizer = l2(0.2))\n \
             flatten\n dense(1)\n}\n",
        );
        let m = o.model.unwrap();
        assert_eq!(
            m.layers[0].kernel_regularizer(),
            Some(Regularizer { l1: 0.0, l2: 0.2 })
        );
    }

    #[test]
    fn all_errors_of_a_file_are_reported() {
        let o = check(
            "model m {\n input x: [3]\n dens(4)\n dense(4, activation = relux)\n dropout(2)\n}\n",
        );
        assert_eq!(
            codes_of(&o),
            vec![codes::UNKNOWN_LAYER, codes::UNKNOWN_NAME, codes::RANGE]
        );
    }

    #[test]
    fn hostile_inputs_end_in_diagnostics() {
        let big = vec![b' '; 10 * 1024 * 1024];
        let o = check_source("big.nn", &big, Path::new(""), &CheckOptions::default());
        assert_eq!(codes_of(&o), vec![codes::TOO_LARGE]);
        assert!(o.diagnostics[0].message.contains("10485760"));
        let o = check_source(
            "b.nn",
            b"model \xff",
            Path::new(""),
            &CheckOptions::default(),
        );
        assert_eq!(codes_of(&o), vec![codes::NOT_UTF8]);
        assert_eq!(codes_of(&check("")), vec![codes::ITEMS]);
        let deep = format!(
            "model m {{ input x: [3]\n dense({}1{}) }}",
            "(".repeat(5000),
            ")".repeat(5000)
        );
        assert_eq!(codes_of(&check(&deep)), vec![codes::TOO_LARGE]);
        let o = check("model m {\n input x: [100000000000000000000]\n}\n");
        assert_eq!(codes_of(&o), vec![codes::RANGE]);
    }

    #[test]
    fn memory_refusal_names_the_byte_count() {
        let o = check("model m {\n input x: [100000]\n dense(100000)\n}\n");
        let d = o
            .diagnostics
            .iter()
            .find(|d| d.code == codes::TOO_BIG)
            .unwrap();
        // (100000 * 100000 + 100000) float32 parameters.
        assert!(
            d.message.contains(&(4u64 * 10_000_100_000).to_string()),
            "{}",
            d.message
        );
    }

    #[test]
    fn batch_size_option_overrides_the_train_block() {
        let src = std::fs::read_to_string("examples/mnist_mlp.nn").unwrap();
        let opts = CheckOptions {
            batch_size: Some(1),
        };
        let o = check_source("t.nn", src.as_bytes(), Path::new(""), &opts);
        let m = o.summary.unwrap().memory;
        assert_eq!(m.batch_size, 1);
        // One sample: 784 inputs + 128 + 10 outputs, values and gradients, 4 bytes each.
        assert_eq!(m.activations, (784 + 128 + 10) * 2 * 4);
    }

    fn train_with(optimizer: &str, output: &str, loss: &str) -> CheckOutcome {
        check(&format!(
            "model m {{\n input x: [3]\n {output}\n}}\n\
             train {{\n data = csv(\"d.csv\", target = \"y\")\n loss = {loss}\n \
             optimizer = {optimizer}\n}}\n"
        ))
    }

    #[test]
    fn softmax_over_one_unit_is_an_error() {
        let o = train_with(
            "adam",
            "dense(1, activation = softmax)",
            "binary_crossentropy",
        );
        assert_eq!(codes_of(&o), vec![codes::SOFTMAX_ONE]);
        assert!(o.diagnostics[0]
            .help
            .as_deref()
            .unwrap()
            .contains("sigmoid"));
        let o = check("model m {\n input x: [4, 1]\n softmax\n}\n");
        assert_eq!(codes_of(&o), vec![codes::SOFTMAX_ONE]);
        // Over two units softmax is a distribution: no error.
        let o = check("model m {\n input x: [3]\n dense(2, activation = softmax)\n}\n");
        assert!(o.diagnostics.is_empty(), "{:?}", o.diagnostics);
    }

    #[test]
    fn hyperparameters_must_survive_float32() {
        for (optimizer, found) in [
            ("adam(learning_rate = 1e-50)", "1e-50"),
            ("sgd(learning_rate = 1e39)", "too large for float32"),
            ("adam(beta_2 = 0.9999999999)", "which is 1 as a float32"),
            ("rmsprop(epsilon = 1e-40)", "1e-40"),
        ] {
            let o = train_with(optimizer, "dense(1, activation = sigmoid)", "mse");
            assert_eq!(codes_of(&o), vec![codes::RANGE], "{optimizer}");
            assert!(
                o.diagnostics[0].message.contains(found),
                "{}",
                o.diagnostics[0].message
            );
        }
        let o = train_with(
            "adam(learning_rate = 1e-30)",
            "dense(1, activation = sigmoid)",
            "mse",
        );
        assert!(o.diagnostics.is_empty(), "{:?}", o.diagnostics);
    }

    #[test]
    fn standardize_on_a_test_source_is_ignored_with_a_warning() {
        let o = check(
            "model m {\n input x: [3]\n dense(1)\n}\n\
             train {\n data = csv(\"d.csv\", target = \"y\", standardize = true)\n \
             test = csv(\"t.csv\", target = \"y\", standardize = false)\n loss = mse\n \
             optimizer = adam\n}\n",
        );
        assert_eq!(codes_of(&o), vec![codes::LATER_STANDARDIZE]);
        assert!(o.model.is_some());
    }

    #[test]
    fn a_layer_name_longer_than_a_format_width_renders() {
        let name = "n".repeat(70_000);
        let o = check(&format!(
            "model m {{\n input x: [3]\n {name} = dense(2)\n}}\n"
        ));
        assert!(o.diagnostics.is_empty(), "{:?}", o.diagnostics);
        let text = summary::render_text(o.summary.as_ref().unwrap());
        let row = text.lines().find(|l| l.contains(&name)).unwrap();
        // Every row of the table is as wide as the rule above it.
        assert_eq!(row.len(), text.lines().nth(1).unwrap().len());
    }

    #[test]
    fn a_model_too_large_is_labelled_at_its_largest_layer() {
        // The dense layer's parameter count overflows 64 bits; the conv layer before
        // it has the largest output.
        let o = check(
            "model m {\n input x: [60000, 60000, 3]\n conv2d(64, 3)\n flatten\n \
             dense(100000000)\n}\n",
        );
        let d = &o.diagnostics[0];
        assert_eq!(codes_of(&o), vec![codes::TOO_BIG]);
        assert_eq!(&o.source[d.span.clone()], "dense(100000000)");
        assert!(!d.label.contains("18,446,744"), "{}", d.label);
        assert!(d
            .label
            .contains("more parameters than a 64-bit count holds"));
        assert_eq!(&o.source[d.labels[0].span.clone()], "m");
    }
}
