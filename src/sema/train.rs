//! The train block: settings, optimizer, data sources, and whether the loss fits.

// `Diagnostic` (a contract type) is large; errors are the cold path, so it is not boxed.
#![allow(clippy::result_large_err)]

use std::path::Path;

use super::args::{self, bind, Bound};
use super::model::{
    DataSource, Loss, Metric, MnistSubset, Optimizer, TestSource, TrainConfig, TrainSpans,
};
use super::names;
use crate::diag::codes;
use crate::diag::Diagnostic;
use crate::sema::model::Span;
use crate::syntax::ast::{Setting, TrainBlock, Value, ValueKind};

/// What the train block needs to know about the model to check the loss and data.
pub struct ModelFacts {
    /// Elements of one input sample, if the input checked out.
    pub input_size: Option<u64>,
    pub input_shape: String,
    /// Elements of one output sample, if every layer checked out.
    pub output_size: Option<u64>,
    /// Where the output comes from (the last layer's span).
    pub output_span: Span,
}

const SOURCES_WITH_SPLIT: &[&str] = &["csv", "idx", "mnist", "npy", "npz", "split"];

fn ok<T>(r: Result<T, Diagnostic>, d: &mut Vec<Diagnostic>) -> Option<T> {
    r.map_err(|e| d.push(e)).ok()
}

/// Checks the train block (its data files are checked later, by
/// `runtime::data::check`, on a model without errors).
pub fn check_train(
    block: &TrainBlock,
    base_dir: &Path,
    facts: &ModelFacts,
    d: &mut Vec<Diagnostic>,
) -> Option<TrainConfig> {
    let errors_before = d.iter().filter(|x| x.is_error()).count();
    let mut seen: Vec<&Setting> = vec![];
    for s in &block.settings {
        if !names::SETTINGS.contains(&s.key.name.as_str()) {
            d.push(
                Diagnostic::error(
                    codes::UNKNOWN_SETTING,
                    format!("unknown train setting `{}`", s.key.name),
                    s.key.span.clone(),
                    "not a setting",
                )
                .with_help(names::suggestion(&s.key.name, names::SETTINGS)),
            );
        } else if let Some(first) = seen.iter().find(|f| f.key.name == s.key.name) {
            d.push(
                Diagnostic::error(
                    codes::DUPLICATE_ARG,
                    format!("train setting `{}` is given twice", s.key.name),
                    s.key.span.clone(),
                    "given again here",
                )
                .with_label(first.key.span.clone(), "first given here"),
            );
        } else {
            seen.push(s);
        }
    }
    let get = |k: &str| seen.iter().find(|s| s.key.name == k).map(|s| &s.value);
    let setting_span = |k: &str| {
        seen.iter()
            .find(|s| s.key.name == k)
            .map_or(block.keyword.clone(), |s| s.span.clone())
    };
    for required in ["data", "loss", "optimizer"] {
        if get(required).is_none() {
            d.push(
                Diagnostic::error(
                    codes::MISSING,
                    format!("the train block is missing its required setting `{required}`"),
                    block.keyword.clone(),
                    format!("no `{required}` here"),
                )
                .with_help(match required {
                    "data" => "add e.g. `data = csv(\"data.csv\", target = \"label\")`",
                    "loss" => "add e.g. `loss = mse`",
                    _ => "add e.g. `optimizer = adam`",
                }),
            );
        }
    }

    let data = get("data").and_then(|v| data_source(v, "data", false, base_dir, d));
    let test = get("test").and_then(|v| match data_source(v, "test", true, base_dir, d)? {
        Src::Split(f) => Some(TestSource::Split(f)),
        Src::Source(s) => Some(TestSource::Source(s)),
    });
    let data = data.and_then(|s| match s {
        Src::Source(s) => Some(s),
        // `split` was refused for `data` inside `data_source`.
        Src::Split(_) => None,
    });
    let validation_split = match get("validation_split") {
        None => Some(None),
        Some(v) => ok(fraction(v, "validation_split"), d).map(Some),
    };
    let loss = get("loss").and_then(|v| ok(loss(v), d));
    let optimizer = get("optimizer").and_then(|v| optimizer(v, d));
    let metrics = match get("metrics") {
        None => Some(vec![]),
        Some(v) => metrics(v, d),
    };
    let epochs = opt_usize(get("epochs"), "epochs", 1, d);
    let batch_size = opt_usize(get("batch_size"), "batch_size", 32, d);
    let shuffle = match get("shuffle") {
        None => Some(true),
        Some(v) => ok(args::boolean(v, "shuffle"), d),
    };
    let seed = match get("seed") {
        None => Some(0),
        Some(v) => ok(
            args::int(v, "seed").and_then(|n| {
                u64::try_from(n).map_err(|_| args::range_error(v, "seed", "must not be negative"))
            }),
            d,
        ),
    };

    if let (Some(loss), Some(lv)) = (loss, get("loss")) {
        check_loss_fits(loss, lv, data.as_ref(), facts, d);
    }
    for (src, v) in [
        (data.as_ref(), get("data")),
        (
            test.as_ref().and_then(|t| match t {
                TestSource::Source(s) => Some(s),
                TestSource::Split(_) => None,
            }),
            get("test"),
        ),
    ] {
        if let (Some(src), Some(v), Some(n)) = (src, v, facts.input_size) {
            check_data_fits(src, v, n, &facts.input_shape, d);
        }
    }
    let config = TrainConfig {
        data: data?,
        test: match get("test") {
            None => None,
            Some(_) => Some(test?),
        },
        validation_split: validation_split?,
        loss: loss?,
        optimizer: optimizer?,
        metrics: metrics?,
        epochs: epochs?,
        batch_size: batch_size?,
        shuffle: shuffle?,
        seed: seed?,
        spans: TrainSpans {
            loss: setting_span("loss"),
            optimizer: setting_span("optimizer"),
        },
    };
    (d.iter().filter(|x| x.is_error()).count() == errors_before).then_some(config)
}

fn opt_usize(
    v: Option<&Value>,
    name: &str,
    default: usize,
    d: &mut Vec<Diagnostic>,
) -> Option<usize> {
    match v {
        None => Some(default),
        Some(v) => ok(args::positive(v, name), d).and_then(|n| usize::try_from(n).ok()),
    }
}

fn fraction(v: &Value, name: &str) -> Result<f64, Diagnostic> {
    args::float_in(
        v,
        name,
        |x| x > 0.0 && x < 1.0,
        "must be a fraction strictly between 0 and 1",
    )
}

enum Src {
    Source(DataSource),
    Split(f64),
}

fn resolve(base: &Path, p: &str) -> std::path::PathBuf {
    base.join(p)
}

fn data_source(
    v: &Value,
    setting: &str,
    allow_split: bool,
    base: &Path,
    d: &mut Vec<Diagnostic>,
) -> Option<Src> {
    let ValueKind::Call(call) = &v.kind else {
        d.push(
            args::type_error(v, "a data source", setting)
                .with_help("write e.g. `csv(\"data.csv\", target = \"label\")`"),
        );
        return None;
    };
    let known: &[&'static str] = if allow_split {
        SOURCES_WITH_SPLIT
    } else {
        names::SOURCES
    };
    let name = call.name.name.as_str();
    let what = format!("`{name}`");
    match name {
        "csv" => {
            let b = bind(
                call,
                &what,
                &["path", "target", "features", "standardize"],
                &["path", "target"],
                d,
            );
            let path = b.get("path").and_then(|v| ok(args::string(v, "path"), d));
            let target = b
                .get("target")
                .and_then(|v| ok(args::string(v, "target"), d));
            let features = match b.get("features") {
                None => Some(None),
                Some(v) => ok(string_list(v, "features"), d).map(Some),
            };
            let standardize = match b.get("standardize") {
                None => Some(false),
                Some(v) => ok(args::boolean(v, "standardize"), d),
            };
            if let (true, Some(v)) = (setting != "data", b.get("standardize")) {
                d.push(
                    Diagnostic::warning(
                        codes::LATER_STANDARDIZE,
                        "`standardize` of a test source is ignored",
                        v.span.clone(),
                        "ignored",
                    )
                    .with_help(
                        "test rows always take the training rows' standardization (set it on \
                         `data`); remove this argument",
                    ),
                );
            }
            Some(Src::Source(DataSource::Csv {
                path: resolve(base, path?),
                target: target?.to_string(),
                features: features?,
                standardize: standardize?,
            }))
        }
        "idx" => {
            let b = bind(call, &what, &["images", "labels"], &["images", "labels"], d);
            let images = b
                .get("images")
                .and_then(|v| ok(args::string(v, "images"), d));
            let labels = b
                .get("labels")
                .and_then(|v| ok(args::string(v, "labels"), d));
            Some(Src::Source(DataSource::Idx {
                images: resolve(base, images?),
                labels: resolve(base, labels?),
            }))
        }
        "mnist" => {
            let b = bind(call, &what, &["folder", "subset"], &["folder"], d);
            let folder = b
                .get("folder")
                .and_then(|v| ok(args::string(v, "folder"), d));
            let subset = match b.get("subset") {
                None => Some(MnistSubset::Train),
                Some(v) => ok(args::name(v, "subset", "subset", names::SUBSETS), d).map(|s| {
                    if s == "test" {
                        MnistSubset::Test
                    } else {
                        MnistSubset::Train
                    }
                }),
            };
            Some(Src::Source(DataSource::Mnist {
                folder: resolve(base, folder?),
                subset: subset?,
            }))
        }
        "npy" => {
            let b = bind(call, &what, &["x", "y"], &["x", "y"], d);
            let x = b.get("x").and_then(|v| ok(args::string(v, "x"), d));
            let y = b.get("y").and_then(|v| ok(args::string(v, "y"), d));
            Some(Src::Source(DataSource::Npy {
                x: resolve(base, x?),
                y: resolve(base, y?),
            }))
        }
        "npz" => {
            let b = bind(call, &what, &["path", "x", "y"], &["path"], d);
            let path = b.get("path").and_then(|v| ok(args::string(v, "path"), d));
            let x = match b.get("x") {
                None => Some("x"),
                Some(v) => ok(args::string(v, "x"), d),
            };
            let y = match b.get("y") {
                None => Some("y"),
                Some(v) => ok(args::string(v, "y"), d),
            };
            Some(Src::Source(DataSource::Npz {
                path: resolve(base, path?),
                x: x?.to_string(),
                y: y?.to_string(),
            }))
        }
        "split" if allow_split => {
            let b = bind(call, &what, &["fraction"], &["fraction"], d);
            let f = b
                .get("fraction")
                .and_then(|v| ok(fraction(v, "fraction"), d))?;
            Some(Src::Split(f))
        }
        "split" => {
            d.push(
                Diagnostic::error(
                    codes::TYPE,
                    "`split(...)` holds out rows of `data`, so it cannot be `data` itself",
                    v.span.clone(),
                    "not a data source",
                )
                .with_help(
                    "use `split` for `test`; `data` needs `csv(...)`, `idx(...)`, `mnist(...)`, \
                     `npy(...)` or `npz(...)`",
                ),
            );
            None
        }
        _ => {
            d.push(
                Diagnostic::error(
                    codes::UNKNOWN_NAME,
                    format!("unknown data source `{name}`"),
                    call.name.span.clone(),
                    "not a data source",
                )
                .with_help(names::suggestion(name, known)),
            );
            None
        }
    }
}

fn string_list(v: &Value, name: &str) -> Result<Vec<String>, Diagnostic> {
    match &v.kind {
        ValueKind::List(items) => items
            .iter()
            .map(|i| args::string(i, name).map(str::to_string))
            .collect(),
        _ => Err(args::type_error(v, "a list of column names", name)),
    }
}

fn loss(v: &Value) -> Result<Loss, Diagnostic> {
    Ok(match args::name(v, "loss", "loss", names::LOSSES)? {
        "mse" => Loss::Mse,
        "mae" => Loss::Mae,
        "huber" => Loss::Huber,
        "binary_crossentropy" => Loss::BinaryCrossentropy,
        "categorical_crossentropy" => Loss::CategoricalCrossentropy,
        _ => Loss::SparseCategoricalCrossentropy,
    })
}

fn metrics(v: &Value, d: &mut Vec<Diagnostic>) -> Option<Vec<Metric>> {
    let ValueKind::List(items) = &v.kind else {
        d.push(
            args::type_error(v, "a list of metrics", "metrics")
                .with_help("write a list, e.g. `[accuracy]`"),
        );
        return None;
    };
    let mut out = vec![];
    let mut seen: Vec<(&str, &Value)> = vec![];
    let mut good = true;
    for it in items {
        match args::name(it, "metrics", "metric", names::METRICS) {
            // The same metric twice would only print two equal columns.
            Ok(m) if seen.iter().any(|(s, _)| *s == m) => {
                let first = seen
                    .iter()
                    .find(|(s, _)| *s == m)
                    .map(|(_, v)| v.span.clone());
                let mut e = Diagnostic::error(
                    codes::DUPLICATE_ARG,
                    format!("metric `{m}` is listed twice"),
                    it.span.clone(),
                    "listed again here",
                )
                .with_help("list each metric once");
                if let Some(first) = first {
                    e = e.with_label(first, "first listed here");
                }
                d.push(e);
                good = false;
            }
            Ok(m) => {
                seen.push((m, it));
                out.push(match m {
                    "accuracy" => Metric::Accuracy,
                    "mse" => Metric::Mse,
                    _ => Metric::Mae,
                });
            }
            Err(e) => {
                d.push(e);
                good = false;
            }
        }
    }
    good.then_some(out)
}

fn optimizer(v: &Value, d: &mut Vec<Diagnostic>) -> Option<Optimizer> {
    let (name, span) = match &v.kind {
        ValueKind::Call(call) => (call.name.name.as_str(), call.name.span.clone()),
        // A Keras-style string names an optimizer with its defaults.
        _ => (
            ok(
                args::name(v, "optimizer", "optimizer", names::OPTIMIZERS),
                d,
            )?,
            v.span.clone(),
        ),
    };
    if !names::OPTIMIZERS.contains(&name) {
        d.push(
            Diagnostic::error(
                codes::UNKNOWN_NAME,
                format!("unknown optimizer `{name}`"),
                span,
                "not an optimizer",
            )
            .with_help(names::suggestion(name, names::OPTIMIZERS)),
        );
        return None;
    }
    let params: &[&'static str] = match name {
        "sgd" => &["learning_rate", "momentum", "nesterov"],
        "adam" => &["learning_rate", "beta_1", "beta_2", "epsilon"],
        "adamw" => &[
            "learning_rate",
            "beta_1",
            "beta_2",
            "epsilon",
            "weight_decay",
        ],
        _ => &["learning_rate", "rho", "epsilon"],
    };
    let b = match &v.kind {
        ValueKind::Call(call) => bind(call, &format!("`{name}`"), params, &[], d),
        _ => Bound { values: vec![] },
    };
    let num =
        |key: &str, default: f64, valid: fn(f64) -> bool, rule: &str, d: &mut Vec<Diagnostic>| {
            match b.get(key) {
                None => Some(default as f32),
                Some(v) => ok(args::float_in(v, key, valid, rule), d).map(|x| x as f32),
            }
        };
    let positive: fn(f64) -> bool = |x| x > 0.0;
    let unit: fn(f64) -> bool = |x| (0.0..1.0).contains(&x);
    let lr_default = if name == "sgd" { 0.01 } else { 0.001 };
    let lr = num("learning_rate", lr_default, positive, "must be positive", d);
    let opt = match name {
        "sgd" => {
            let momentum = num("momentum", 0.0, unit, "must be in [0, 1)", d);
            let nesterov = match b.get("nesterov") {
                None => Some(false),
                Some(v) => ok(args::boolean(v, "nesterov"), d),
            };
            Optimizer::Sgd {
                learning_rate: lr?,
                momentum: momentum?,
                nesterov: nesterov?,
            }
        }
        "rmsprop" => {
            let rho = num("rho", 0.9, unit, "must be in [0, 1)", d);
            let epsilon = num("epsilon", 1e-7, positive, "must be positive", d);
            Optimizer::RmsProp {
                learning_rate: lr?,
                rho: rho?,
                epsilon: epsilon?,
            }
        }
        _ => {
            let beta_1 = num("beta_1", 0.9, unit, "must be in [0, 1)", d);
            let beta_2 = num("beta_2", 0.999, unit, "must be in [0, 1)", d);
            let epsilon = num("epsilon", 1e-7, positive, "must be positive", d);
            if name == "adam" {
                Optimizer::Adam {
                    learning_rate: lr?,
                    beta_1: beta_1?,
                    beta_2: beta_2?,
                    epsilon: epsilon?,
                }
            } else {
                let wd = num("weight_decay", 0.004, |x| x >= 0.0, "must be >= 0", d);
                Optimizer::AdamW {
                    learning_rate: lr?,
                    beta_1: beta_1?,
                    beta_2: beta_2?,
                    epsilon: epsilon?,
                    weight_decay: wd?,
                }
            }
        }
    };
    Some(opt)
}

fn check_loss_fits(
    loss: Loss,
    lv: &Value,
    data: Option<&DataSource>,
    facts: &ModelFacts,
    d: &mut Vec<Diagnostic>,
) {
    let Some(out) = facts.output_size else { return };
    let classes_known = matches!(data, Some(DataSource::Mnist { .. }));
    let problem: Option<(String, &str)> = match loss {
        Loss::BinaryCrossentropy if out != 1 => Some((
            format!("binary_crossentropy needs one output unit, but the model outputs {out}"),
            "end the model with `dense(1, activation = sigmoid)`, or use sparse_categorical_crossentropy for several classes",
        )),
        Loss::SparseCategoricalCrossentropy | Loss::CategoricalCrossentropy if out < 2 => Some((
            format!("{} needs one output unit per class, but the model outputs {out}", loss.keyword()),
            "for two classes with one unit, use binary_crossentropy",
        )),
        Loss::SparseCategoricalCrossentropy | Loss::CategoricalCrossentropy
            if classes_known && out != 10 =>
        {
            Some((
                format!("MNIST has 10 classes, but the model outputs {out} units"),
                "end the model with `dense(10, activation = softmax)`",
            ))
        }
        Loss::Mse | Loss::Mae | Loss::Huber if out != 1 => Some((
            format!("the target is one column, but the model outputs {out} values per sample"),
            "end the model with one output unit, or use sparse_categorical_crossentropy for classes",
        )),
        _ => None,
    };
    if let Some((msg, help)) = problem {
        d.push(
            Diagnostic::error(codes::LOSS_OUTPUT, msg, lv.span.clone(), "this loss")
                .with_label(
                    facts.output_span.clone(),
                    format!(
                        "the model's output has {out} unit{}",
                        if out == 1 { "" } else { "s" }
                    ),
                )
                .with_help(help),
        );
    }
}

fn check_data_fits(
    src: &DataSource,
    v: &Value,
    input: u64,
    input_shape: &str,
    d: &mut Vec<Diagnostic>,
) {
    let (n, what) = match src {
        DataSource::Csv {
            features: Some(f), ..
        } => (f.len() as u64, format!("{} csv features", f.len())),
        DataSource::Mnist { .. } => (784, "MNIST images of 28x28 = 784 pixels".to_string()),
        _ => return,
    };
    if n != input {
        d.push(
            Diagnostic::error(
                codes::DATA_INPUT,
                format!("the data gives {what}, but the model's input {input_shape} has {input} elements"),
                v.span.clone(),
                format!("{n} per sample"),
            )
            .with_help(format!("make the input shape hold {n} element{}, e.g. `[{n}]`", if n == 1 { "" } else { "s" })),
        );
    }
}
