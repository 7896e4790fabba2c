//! nnc against Keras 3: the same model, trained from the same initial weights on
//! the same batches (file order, the last batch smaller), must end with the same
//! weights and report the same per-epoch losses, with the reference interpreter and
//! with the JIT.
//!
//! The fixtures under tests/keras_parity/ (data, initial weights, Keras's final
//! weights and losses) were made once by tests/keras_parity/make_fixtures.py with
//! Keras 3.15.1 on TensorFlow (the graph models, given as `.nn` text, by
//! make_graph_fixtures.py); this test needs no Python.
//!
//! Error measure, per weight tensor: `max|nnc - keras| / max(max|keras|, 1e-3)`, the
//! largest difference relative to the tensor's largest magnitude (an elementwise
//! relative error would blow up on weights that happen to sit near zero). A case's
//! error is the worst over its tensors. Run with `--nocapture` to see them.

use std::path::{Path, PathBuf};

use nnc::codegen::compile;
use nnc::ir::graph::Graph;
use nnc::ir::init::{initialize, params};
use nnc::ir::interp::run;
use nnc::ir::layout::Layout;
use nnc::ir::testing::{conv1d, dense, sequential};
use nnc::ir::train_step;
use nnc::runtime::checkpoint;
use nnc::runtime::class_weight;
use nnc::runtime::data::{self, Dataset};
use nnc::sema::model::{
    Activation, ClassWeight, Clip, DataSource, Initializer, LayerKind, Loss, Model, Optimizer,
    Padding, Schedule,
};
use serde_json::Value;

/// Worst allowed weight error (see the module comment). Measured: 1e-7..1.5e-6 for
/// every case, now that `1 - beta` is taken from the decimal the user wrote, as
/// Keras does (`ir::optim::one_minus`).
const WEIGHT_TOLERANCE: f64 = 1e-5;
/// Worst allowed relative difference of an epoch's loss.
const LOSS_TOLERANCE: f64 = 1e-5;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keras_parity")
}

/// One case of tests/keras_parity/CASE/spec.json, as the model nnc trains.
struct Case {
    model: Model,
    train: Dataset,
    epochs: usize,
    batch: usize,
    keras_losses: Vec<f64>,
    init: PathBuf,
    keras: PathBuf,
}

fn activation(name: &str) -> Activation {
    Activation::named(name).unwrap_or_else(|| panic!("unknown activation `{name}` in a spec"))
}

fn int(v: &Value) -> usize {
    v.as_u64().unwrap_or_else(|| panic!("{v} is not a size")) as usize
}

fn layer(spec: &Value) -> LayerKind {
    let s = spec.as_array().expect("a layer is a list");
    match (&s[0], s.get(1)) {
        (Value::Number(units), Some(a)) => dense(
            units.as_u64().expect("units") as usize,
            activation(a.as_str().expect("activation name")),
        ),
        (Value::String(name), Some(alpha)) if name == "leaky_relu" => {
            LayerKind::Activation(Activation::LeakyRelu {
                alpha: alpha.as_f64().expect("alpha") as f32,
            })
        }
        (Value::String(name), Some(_)) if name == "embedding" => LayerKind::Embedding {
            input_dim: int(&s[1]),
            output_dim: int(&s[2]),
            embeddings_initializer: Initializer::Uniform,
        },
        (Value::String(name), Some(_)) if name == "conv1d" => conv1d(
            int(&s[1]),
            int(&s[2]),
            int(&s[3]),
            match s[4].as_str() {
                Some("same") => Padding::Same,
                _ => Padding::Valid,
            },
            activation(s[5].as_str().expect("activation name")),
        ),
        (Value::String(name), None) if name.starts_with("global_") => LayerKind::GlobalPool {
            max: name.contains("max"),
            dims: 1,
        },
        (Value::String(name), None) if name == "layer_norm" => LayerKind::LayerNorm {
            epsilon: 0.001,
            center: true,
            scale: true,
        },
        (Value::String(name), None) => LayerKind::Activation(activation(name)),
        _ => panic!("bad layer {spec}"),
    }
}

fn loss(name: &str) -> Loss {
    Loss::from_keyword(name).unwrap_or_else(|| panic!("unknown loss `{name}`"))
}

/// A schedule written as a dict naming it (`make_fixtures.py`'s spelling of
/// `keras.optimizers.schedules.*`).
fn schedule(s: &Value) -> Schedule {
    let f = |k: &str| s[k].as_f64().unwrap_or_else(|| panic!("schedule `{k}`")) as f32;
    let flag = |k: &str| s[k].as_bool().unwrap_or_else(|| panic!("schedule `{k}`"));
    match s["schedule"].as_str() {
        Some("exponential_decay") => Schedule::ExponentialDecay {
            initial: f("initial_learning_rate"),
            decay_steps: f("decay_steps"),
            decay_rate: f("decay_rate"),
            staircase: flag("staircase"),
        },
        Some("inverse_time_decay") => Schedule::InverseTimeDecay {
            initial: f("initial_learning_rate"),
            decay_steps: f("decay_steps"),
            decay_rate: f("decay_rate"),
            staircase: flag("staircase"),
        },
        Some("polynomial_decay") => Schedule::PolynomialDecay {
            initial: f("initial_learning_rate"),
            decay_steps: f("decay_steps"),
            end: f("end_learning_rate"),
            power: f("power"),
            cycle: flag("cycle"),
        },
        Some("cosine_decay") => Schedule::CosineDecay {
            initial: f("initial_learning_rate"),
            decay_steps: f("decay_steps"),
            alpha: f("alpha"),
            warmup_target: s["warmup_target"].as_f64().map(|x| x as f32),
            warmup_steps: s["warmup_steps"].as_f64().unwrap_or(0.0) as f32,
        },
        Some("piecewise_constant_decay") => Schedule::PiecewiseConstantDecay {
            boundaries: s["boundaries"]
                .as_array()
                .expect("boundaries")
                .iter()
                .map(|b| b.as_u64().expect("a step"))
                .collect(),
            values: s["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|v| v.as_f64().expect("a rate") as f32)
                .collect(),
        },
        _ => panic!("unknown schedule {s}"),
    }
}

/// The optimizer's schedule and clipping, when the spec gives them.
fn schedule_and_clip(o: &Value) -> (Option<Schedule>, Option<Clip>) {
    let s = o["learning_rate"]
        .is_object()
        .then(|| schedule(&o["learning_rate"]));
    let f = |k: &str| o[k].as_f64().map(|x| x as f32);
    let clip = match (f("clipnorm"), f("global_clipnorm"), f("clipvalue")) {
        (Some(c), None, None) => Some(Clip::Norm(c)),
        (None, Some(c), None) => Some(Clip::GlobalNorm(c)),
        (None, None, Some(c)) => Some(Clip::Value(c)),
        (None, None, None) => None,
        _ => panic!("more than one clipping in {o}"),
    };
    (s, clip)
}

fn optimizer(o: &Value) -> Optimizer {
    let f = |k: &str| match (k, &o[k]) {
        ("learning_rate", v @ Value::Object(_)) => schedule(v).initial(),
        (_, v) => v.as_f64().unwrap_or_else(|| panic!("optimizer `{k}`")) as f32,
    };
    match o["name"].as_str() {
        Some("sgd") => Optimizer::Sgd {
            learning_rate: f("learning_rate"),
            momentum: f("momentum"),
            nesterov: o["nesterov"].as_bool().expect("nesterov"),
        },
        Some("adam") => Optimizer::Adam {
            learning_rate: f("learning_rate"),
            beta_1: f("beta_1"),
            beta_2: f("beta_2"),
            epsilon: f("epsilon"),
        },
        Some("adamw") => Optimizer::AdamW {
            learning_rate: f("learning_rate"),
            beta_1: f("beta_1"),
            beta_2: f("beta_2"),
            epsilon: f("epsilon"),
            weight_decay: f("weight_decay"),
        },
        Some("rmsprop") => Optimizer::RmsProp {
            learning_rate: f("learning_rate"),
            rho: f("rho"),
            epsilon: f("epsilon"),
        },
        _ => panic!("unknown optimizer {o}"),
    }
}

fn load_case(name: &str) -> Case {
    load_edited_case(name, &str::to_string)
}

/// A case whose graph model's `.nn` text goes through `edit` first.
fn load_edited_case(name: &str, edit: &dyn Fn(&str) -> String) -> Case {
    let dir = fixtures().join(name);
    let text = std::fs::read_to_string(dir.join("spec.json")).expect("spec.json");
    let spec: Value = serde_json::from_str(&text).expect("spec.json is JSON");
    let layers = spec["layers"].as_array().into_iter().flatten();
    let csv = fixtures()
        .join("data")
        .join(spec["data"].as_str().expect("data"));
    // The target is the last column; the rest are the features.
    let header = std::fs::read_to_string(&csv).expect("data file");
    let target = header
        .lines()
        .next()
        .and_then(|l| l.rsplit(',').next())
        .expect("a header row")
        .to_string();
    let mut model = match spec["model"].as_str() {
        // A graph model (make_graph_fixtures.py): its `.nn` text, checked by nnc.
        Some(text) => graph_model(&edit(text), &spec, &csv, &target),
        None => sequential(
            &[header
                .lines()
                .next()
                .map_or(0, |l| l.split(',').count() - 1)],
            layers.map(layer).collect(),
            loss(spec["loss"].as_str().expect("loss")),
            optimizer(&spec["optimizer"]),
        ),
    };
    let config = model.train.as_mut().expect("a train block");
    (config.schedule, config.clip) = schedule_and_clip(&spec["optimizer"]);
    config.label_smoothing = spec["label_smoothing"].as_f64().unwrap_or(0.0) as f32;
    config.class_weight = match &spec["class_weight"] {
        Value::Null => None,
        Value::String(s) if s == "balanced" => Some(ClassWeight::Balanced),
        Value::Array(w) => Some(ClassWeight::Given(
            w.iter()
                .map(|v| v.as_f64().expect("a weight") as f32)
                .collect(),
        )),
        other => panic!("bad class_weight {other}"),
    };
    config.data = DataSource::Csv {
        path: csv,
        target,
        features: None,
        standardize: false,
    };
    // nnc's own data preparation: one-hot targets for categorical_crossentropy.
    let prepared = data::prepare(&model, model.train.as_ref().expect("train")).expect("data");
    let n = |k: &str| spec[k].as_u64().unwrap_or_else(|| panic!("`{k}`")) as usize;
    Case {
        train: prepared.train,
        epochs: n("epochs"),
        batch: n("batch_size"),
        keras_losses: spec["keras_epoch_losses"]
            .as_array()
            .expect("keras_epoch_losses")
            .iter()
            .map(|v| v.as_f64().expect("a loss"))
            .collect(),
        init: dir.join("init.safetensors"),
        keras: dir.join("keras.safetensors"),
        model,
    }
}

/// The model of a graph case: its `.nn` model text with a train block made from the
/// spec, through nnc's front end.
fn graph_model(text: &str, spec: &Value, csv: &Path, target: &str) -> Model {
    let o = &spec["optimizer"];
    let args: Vec<String> = o
        .as_object()
        .expect("optimizer")
        .iter()
        .filter(|(k, _)| *k != "name")
        .map(|(k, v)| format!("{k} = {v}"))
        .collect();
    let source = format!(
        "{text}\ntrain {{\n    data = csv(\"{}\", target = \"{target}\")\n    loss = {}\n    \
         optimizer = {}({})\n    epochs = {}\n    batch_size = {}\n    shuffle = false\n}}\n",
        csv.display(),
        spec["loss"].as_str().expect("loss"),
        o["name"].as_str().expect("optimizer name"),
        args.join(", "),
        spec["epochs"],
        spec["batch_size"],
    );
    let outcome = nnc::check_source(
        "spec.nn",
        source.as_bytes(),
        Path::new(""),
        &Default::default(),
    );
    outcome.model.clone().unwrap_or_else(|| {
        panic!(
            "nnc refuses the case's model:\n{source}\n{}",
            outcome.render_diagnostics(false)
        )
    })
}

/// The checkpoint names and shapes of a graph's parameters, in `init::params` order.
fn param_specs(g: &Graph) -> Vec<(String, Vec<usize>)> {
    params(g)
        .into_iter()
        .map(|(name, id)| (name, g.tensors[id].shape.clone()))
        .collect()
}

/// Runs one train step of a graph on `arena`.
type Step<'a> = Box<dyn Fn(&mut [f32], &[f32], &[f32], u64) + 'a>;

/// What training ends with: the final parameters (`init::params` order) and, per
/// epoch, each batch's mean loss with the batch's size.
struct Trained {
    weights: Vec<Vec<f32>>,
    batch_losses: Vec<Vec<(f64, usize)>>,
}

impl Trained {
    /// The batch-size-weighted mean loss of each epoch, as Keras reports it (its loss
    /// tracker is a `Mean` with `sample_weight` = the batch's size).
    fn epoch_losses(&self) -> Vec<f64> {
        self.batch_losses
            .iter()
            .map(|e| {
                let rows: usize = e.iter().map(|&(_, n)| n).sum();
                e.iter().map(|&(l, n)| l * n as f64).sum::<f64>() / rows as f64
            })
            .collect()
    }
}

/// Trains `case` from its initial weights, with `engine` turning each train-step
/// graph (full batch, then the smaller last batch) into a step function.
fn train(case: &Case, engine: &dyn Fn(&Graph, &Layout) -> Step<'static>) -> Trained {
    let rows = case.train.rows;
    let mut sizes = vec![case.batch];
    if !rows.is_multiple_of(case.batch) {
        sizes.push(rows % case.batch);
    }
    let graphs: Vec<(Graph, Layout)> = sizes
        .iter()
        .map(|&b| {
            let g = train_step(&case.model, b).expect("a train-step graph");
            let l = Layout::new(&g);
            (g, l)
        })
        .collect();
    let steps: Vec<Step> = graphs.iter().map(|(g, l)| engine(g, l)).collect();
    let (g0, l0) = &graphs[0];
    assert_ne!(
        sizes.len(),
        1,
        "the fixtures must cover a smaller last batch"
    );
    assert_eq!(l0.persistent_len, graphs[1].1.persistent_len);

    let mut arena = vec![0.0f32; graphs.iter().map(|(_, l)| l.len).max().unwrap_or(0)];
    // As `nnc run`: the optimizer's state and learning rate, then the given weights.
    initialize(&case.model, g0, l0, &mut arena, 0);
    let config = case.model.train.as_ref().expect("train");
    class_weight::apply(config, &case.train, g0, l0, &mut arena);
    let specs = param_specs(g0);
    let init = checkpoint::load(&case.init, &specs).expect("init weights");
    for ((_, id), values) in params(g0).into_iter().zip(&init) {
        let r = l0.range(g0, id).expect("params live in the arena");
        arena[r].copy_from_slice(values);
    }

    let (fc, tw) = (case.train.feature_count, case.train.target_width);
    let features = case.train.features.to_f32();
    let mut step = 0u64;
    let mut batch_losses = vec![];
    for _ in 0..case.epochs {
        let mut losses = vec![];
        for start in (0..rows).step_by(case.batch) {
            let end = (start + case.batch).min(rows);
            let which = usize::from(end - start != case.batch);
            let x = &features[start * fc..end * fc];
            let y = &case.train.targets[start * tw..end * tw];
            steps[which](&mut arena, x, y, step);
            step += 1;
            let (g, l) = &graphs[which];
            let loss = g.loss.and_then(|id| l.range(g, id)).expect("a loss tensor");
            losses.push((f64::from(arena[loss][0]), end - start));
        }
        batch_losses.push(losses);
    }
    let weights = params(g0)
        .into_iter()
        .map(|(_, id)| arena[l0.range(g0, id).expect("param")].to_vec())
        .collect();
    Trained {
        weights,
        batch_losses,
    }
}

fn interpreter(g: &Graph, l: &Layout) -> Step<'static> {
    let (g, l) = (g.clone(), l.clone());
    Box::new(move |arena, x, y, step| run(&g, &l, arena, x, y, step))
}

fn jit(g: &Graph, l: &Layout) -> Step<'static> {
    let compiled = compile(g, l).expect("the graph compiles");
    Box::new(move |arena, x, y, step| compiled.run(arena, x, y, step).expect("buffers fit"))
}

/// `max|a - b| / max(max|b|, 1e-3)`.
fn tensor_error(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff = a
        .iter()
        .zip(b)
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs())
        .fold(0.0, f64::max);
    let scale = b.iter().map(|&b| f64::from(b).abs()).fold(1e-3, f64::max);
    diff / scale
}

/// Keras's final weights for a case, in `init::params` order, with their names.
fn keras_weights(case: &Case) -> (Vec<String>, Vec<Vec<f32>>) {
    let g = train_step(&case.model, case.batch).expect("graph");
    let specs = param_specs(&g);
    let keras = checkpoint::load(&case.keras, &specs).expect("Keras's weights");
    (specs.into_iter().map(|(n, _)| n).collect(), keras)
}

/// The worst `tensor_error` of `ours` against `theirs`, and the tensor's name.
fn worst_error(names: &[String], ours: &[Vec<f32>], theirs: &[Vec<f32>]) -> (f64, String) {
    let mut worst = (0.0f64, String::new());
    for (name, (a, b)) in names.iter().zip(ours.iter().zip(theirs)) {
        let e = tensor_error(a, b);
        if e >= worst.0 || e.is_nan() {
            worst = (e, name.clone());
        }
    }
    worst
}

/// The worst relative difference between two lists of epoch losses.
fn loss_error(ours: &[f64], keras: &[f64]) -> f64 {
    assert_eq!(ours.len(), keras.len(), "epoch counts differ");
    ours.iter()
        .zip(keras)
        .map(|(a, b)| (a - b).abs() / b.abs().max(1e-6))
        .fold(0.0, f64::max)
}

/// Trains `name` with both engines and checks both against Keras.
fn check(name: &str) {
    let case = load_case(name);
    let (names, keras) = keras_weights(&case);
    let init = checkpoint::load(
        &case.init,
        &param_specs(&train_step(&case.model, 1).expect("graph")),
    )
    .expect("init weights");
    // The fixture must be able to tell a wrong update from a right one.
    let moved = worst_error(&names, &init, &keras).0;
    assert!(
        moved > 1e-2,
        "{name}: Keras's weights barely moved ({moved:e})"
    );

    // A schedule, clipping, label smoothing or class weighting the fixture would not
    // notice is not tested by it: without them, training must end far from Keras's
    // weights.
    let config = case.model.train.as_ref().expect("train");
    if config.schedule.is_some()
        || config.clip.is_some()
        || config.label_smoothing != 0.0
        || config.class_weight.is_some()
    {
        let mut plain = load_case(name);
        let config = plain.model.train.as_mut().expect("train");
        (config.schedule, config.clip, config.label_smoothing) = (None, None, 0.0);
        config.class_weight = None;
        let trained = train(&plain, &interpreter);
        let off = worst_error(&names, &trained.weights, &keras).0;
        assert!(
            off > 10.0 * WEIGHT_TOLERANCE,
            "{name}: training without its schedule, clipping, smoothing or class weights ends as close as {off:e}"
        );
    }

    for (engine, run) in [
        (
            "interpreter",
            &interpreter as &dyn Fn(&Graph, &Layout) -> Step<'static>,
        ),
        ("jit", &jit),
    ] {
        let trained = train(&case, run);
        let worst = worst_error(&names, &trained.weights, &keras);
        let losses = trained.epoch_losses();
        let loss_error = loss_error(&losses, &case.keras_losses);
        println!(
            "{name:32} {engine:11} worst weight error {:.2e} ({}), worst epoch loss error {:.2e}, weights moved {moved:.2e}",
            worst.0, worst.1, loss_error
        );
        assert!(
            worst.0 <= WEIGHT_TOLERANCE,
            "{name} ({engine}): `{}` differs from Keras's by {:e} (relative)",
            worst.1,
            worst.0
        );
        assert!(
            loss_error <= LOSS_TOLERANCE,
            "{name} ({engine}): epoch losses {losses:?}, Keras {:?}",
            case.keras_losses
        );
    }
}

/// The tolerances are tight enough to catch a slightly wrong update: the same SGD
/// training with the learning rate 1% off ends far outside them.
#[test]
fn a_one_percent_learning_rate_error_is_caught() {
    let mut case = load_case("reg_mse_sgd_tanh");
    let config = case.model.train.as_mut().expect("train");
    let Optimizer::Sgd { learning_rate, .. } = &mut config.optimizer else {
        panic!("the case trains with sgd");
    };
    *learning_rate *= 1.01;
    let (names, keras) = keras_weights(&case);
    let trained = train(&case, &interpreter);
    let (worst, _) = worst_error(&names, &trained.weights, &keras);
    assert!(worst > 10.0 * WEIGHT_TOLERANCE, "{worst:e}");
}

/// The residual fixture tells `add` from the other merges of two equal shapes: with
/// its `add` replaced by any of them, training ends far from Keras's weights (even
/// `average`, whose halving the `layer_norm` after it undoes but for its epsilon).
#[test]
fn the_residual_fixture_needs_its_add() {
    let keras = keras_weights(&load_case("iris_residual_layer_norm"));
    for other in ["subtract", "multiply", "average", "maximum", "minimum"] {
        let case = load_edited_case("iris_residual_layer_norm", &|text| {
            let edited = text.replace("add(x, h)", &format!("{other}(x, h)"));
            assert_ne!(edited, text, "the fixture has no `add(x, h)`");
            edited
        });
        let trained = train(&case, &interpreter);
        let (worst, at) = worst_error(&keras.0, &trained.weights, &keras.1);
        println!("add replaced by {other:9}: worst weight error {worst:.2e} ({at})");
        assert!(worst > 10.0 * WEIGHT_TOLERANCE, "{other}: {worst:e}");
    }
}

/// Keras's epoch loss weights each batch by its size: the plain mean of the batch
/// losses, which counts the smaller last batch as much as the others, is off.
#[test]
fn keras_weights_the_epoch_loss_by_batch_size() {
    let case = load_case("reg_mse_sgd_tanh");
    let trained = train(&case, &interpreter);
    let plain: Vec<f64> = trained
        .batch_losses
        .iter()
        .map(|e| e.iter().map(|&(l, _)| l).sum::<f64>() / e.len() as f64)
        .collect();
    assert!(loss_error(&plain, &case.keras_losses) > 10.0 * LOSS_TOLERANCE);
    assert!(loss_error(&trained.epoch_losses(), &case.keras_losses) <= LOSS_TOLERANCE);
}

/// One test per fixture folder. (A case that disagreed with Keras because of a known
/// difference would stay out of this list, named in a comment that says why; none does.)
macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { check(stringify!($name)); })*

        /// Every fixture folder has a test.
        #[test]
        fn every_fixture_is_tested() {
            let listed = [$(stringify!($name)),*];
            let mut missing = vec![];
            for entry in std::fs::read_dir(fixtures()).expect("fixtures") {
                let entry = entry.expect("a folder entry");
                let name = entry.file_name().to_string_lossy().into_owned();
                if entry.path().join("spec.json").exists() && !listed.contains(&name.as_str()) {
                    missing.push(name);
                }
            }
            assert!(missing.is_empty(), "fixtures without a test: {missing:?}");
        }
    };
}

cases!(
    bc_sgd_relu,
    bc_momentum_tanh,
    bc_nesterov_elu,
    bc_adam_leaky_relu,
    iris_adam_sparse_relu,
    iris_adamw_categorical_gelu,
    iris_rmsprop_sparse_silu,
    iris_sgd_categorical_sigmoid,
    reg_mse_sgd_tanh,
    reg_mae_adam_softplus,
    reg_huber_rmsprop_sigmoid,
    reg_mse_adamw_gelu_silu,
    iris_adam_exact_betas_tanh,
    iris_adamw_categorical_swish,
    iris_adam_layer_norm,
    digits_embedding_conv1d_sgd,
    reg_huber_nesterov_exponential,
    reg_mae_adam_mish,
    iris_rmsprop_sparse_hard_sigmoid,
    bc_adam_softsign,
    reg_mse_sgd_selu,
    reg_sgd_exponential_decay,
    bc_adam_exponential_staircase,
    iris_sgd_cosine_warmup,
    reg_adam_cosine_decay,
    bc_momentum_piecewise,
    iris_rmsprop_inverse_time,
    reg_sgd_polynomial,
    iris_adamw_polynomial_cycle,
    reg_sgd_clipnorm,
    iris_adam_global_clipnorm,
    bc_momentum_clipvalue,
    iris_adam_categorical_smoothing,
    bc_sgd_binary_smoothing,
    iris_adam_class_weight,
    iris_sgd_categorical_class_weight,
    bc_sgd_class_weight_balanced,
    iris_concat_l2,
    iris_residual_layer_norm,
    reg_log_cosh_adam_tanh,
    bc_poisson_adam_softplus,
    iris_kl_divergence_sgd_relu,
);

/// Each metric against Keras's value on the fixed predictions of metrics.json, fed in
/// the same batches.
#[test]
fn metrics_equal_keras() {
    use nnc::runtime::metrics::Accumulator;
    use nnc::sema::model::Metric;
    let text = std::fs::read_to_string(fixtures().join("metrics.json")).expect("metrics.json");
    let table: Value = serde_json::from_str(&text).expect("metrics.json is JSON");
    let floats = |v: &Value| -> Vec<f32> {
        v.as_array()
            .expect("a list")
            .iter()
            .map(|x| x.as_f64().expect("a number") as f32)
            .collect()
    };
    let mut checked = 0;
    for case in table["cases"].as_array().expect("cases") {
        let outputs = case["outputs"].as_u64().expect("outputs") as usize;
        let batch = case["batch"].as_u64().expect("batch") as usize;
        let (predictions, targets) = (floats(&case["predictions"]), floats(&case["targets"]));
        let width = targets.len() / (predictions.len() / outputs);
        for (name, keras) in case["keras"].as_object().expect("values") {
            let metric = match name.as_str() {
                "precision" => Metric::Precision,
                "recall" => Metric::Recall,
                "auc" => Metric::Auc,
                top => Metric::TopKAccuracy {
                    k: top["top_".len()..].parse().expect("top_K"),
                },
            };
            let mut acc = Accumulator::new(metric, outputs, width).expect("metric");
            for (p, t) in predictions
                .chunks(batch * outputs)
                .zip(targets.chunks(batch * width))
            {
                acc.add(p, t);
            }
            let (ours, keras) = (
                acc.mean().expect("a value"),
                keras.as_f64().expect("a value"),
            );
            println!(
                "{:16} {name:10} nnc {ours:.9} keras {keras:.9}",
                case["name"]
            );
            assert!(
                (ours - keras).abs() <= 1e-6 * keras.abs().max(1.0),
                "{} {name}: nnc {ours}, Keras {keras}",
                case["name"]
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 15, "every metric of every case");
}
