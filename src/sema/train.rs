//! The train block: settings, optimizer, data sources, and whether the loss fits.

// `Diagnostic` (a contract type) is large; errors are the cold path, so it is not boxed.
#![allow(clippy::result_large_err)]

use std::path::Path;

use super::args::{self, bind, Bound};
use super::callbacks::{self, Logged};
use super::model::{
    ClassWeight, Clip, DataSource, Loss, Metric, MnistSubset, Optimizer, Schedule, Targets,
    TestSource, TrainConfig, TrainSpans,
};
use super::names;
use crate::diag::codes;
use crate::diag::Diagnostic;
use crate::sema::model::Span;
use crate::syntax::ast::{Call, Setting, TrainBlock, Value, ValueKind};

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
    let validation_data = match get("validation_data") {
        None => Some(None),
        Some(v) => validation_source(v, base_dir, d).map(Some),
    };
    if let (Some(split), Some(data)) = (
        seen.iter().find(|s| s.key.name == "validation_split"),
        seen.iter().find(|s| s.key.name == "validation_data"),
    ) {
        d.push(
            Diagnostic::error(
                codes::VALIDATION_TWICE,
                "`validation_data` and `validation_split` both set the validation rows",
                data.key.span.clone(),
                "a separate validation set",
            )
            .with_label(split.key.span.clone(), "rows held out of `data`")
            .with_help("keep one of the two settings"),
        );
    }
    let loss = get("loss").and_then(|v| loss(v, d));
    let (loss, label_smoothing) = match loss {
        Some((l, ls)) => (Some(l), Some(ls)),
        None => (None, None),
    };
    let optimizer = get("optimizer").and_then(|v| optimizer(v, d));
    let (optimizer, schedule, clip) = match optimizer {
        Some((o, s, c)) => (Some(o), Some(s), Some(c)),
        None => (None, None, None),
    };
    let metrics = match get("metrics") {
        None => Some(vec![]),
        Some(v) => metrics(v, facts.output_size, d),
    };
    let callbacks = match get("callbacks") {
        None => Some(vec![]),
        Some(v) => {
            let logged = metrics.as_deref().map(|metrics| Logged {
                metrics,
                validation: get("validation_split").is_some() || get("validation_data").is_some(),
                scheduled: matches!(schedule, Some(Some(_))),
            });
            callbacks::callbacks(v, logged.as_ref(), base_dir, d)
        }
    };
    let epochs = opt_usize(get("epochs"), "epochs", 1, d);
    let batch_size = opt_usize(get("batch_size"), "batch_size", 32, d);
    let shuffle = match get("shuffle") {
        None => Some(true),
        Some(v) => ok(args::boolean(v, "shuffle"), d),
    };
    let class_weight = match get("class_weight") {
        None => Some(None),
        Some(v) => class_weight(v, loss, facts, d).map(Some),
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
        (
            validation_data.as_ref().and_then(Option::as_ref),
            get("validation_data"),
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
        validation_data: validation_data?,
        loss: loss?,
        label_smoothing: label_smoothing?,
        optimizer: optimizer?,
        schedule: schedule?,
        clip: clip?,
        class_weight: class_weight?,
        metrics: metrics?,
        epochs: epochs?,
        batch_size: batch_size?,
        shuffle: shuffle?,
        seed: seed?,
        spans: TrainSpans {
            loss: setting_span("loss"),
            optimizer: setting_span("optimizer"),
        },
        callbacks: callbacks?,
    };
    (d.iter().filter(|x| x.is_error()).count() == errors_before).then_some(config)
}

/// `validation_data`: any data source but `split` (that is `validation_split`).
fn validation_source(v: &Value, base: &Path, d: &mut Vec<Diagnostic>) -> Option<DataSource> {
    if let ValueKind::Call(call) = &v.kind {
        if call.name.name == "split" {
            d.push(
                Diagnostic::error(
                    codes::TYPE,
                    "`validation_data` takes a data source; a fraction of `data` is \
                     `validation_split`",
                    v.span.clone(),
                    "not a data source",
                )
                .with_help("write `validation_split = 0.2` instead"),
            );
            return None;
        }
    }
    match data_source(v, "validation_data", false, base, d)? {
        Src::Source(s) => Some(s),
        Src::Split(_) => None,
    }
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
                        format!(
                            "`standardize` of a {} source is ignored",
                            setting.replace('_', " ")
                        ),
                        v.span.clone(),
                        "ignored",
                    )
                    .with_help(
                        "test and validation rows always take the training rows' \
                         standardization (set it on `data`); remove this argument",
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

/// The loss and its `label_smoothing` (0 unless given).
fn loss(v: &Value, d: &mut Vec<Diagnostic>) -> Option<(Loss, f32)> {
    let (name, call) = match &v.kind {
        ValueKind::Call(call) if call.args.is_some() => {
            let name = call.name.name.as_str();
            if !names::LOSSES.contains(&name) {
                // The unknown-name diagnostic, with its suggestion.
                ok(args::name(v, "loss", "loss", &names::LOSSES), d)?;
            }
            (name, Some(call))
        }
        _ => (ok(args::name(v, "loss", "loss", &names::LOSSES), d)?, None),
    };
    // `args::name` accepted only names of `Loss::ALL` and its aliases.
    let loss = Loss::from_keyword(name)?;
    let Some(call) = call else {
        return Some((loss, 0.0));
    };
    let params: &[&'static str] = if loss.smooths_labels() {
        &["label_smoothing"]
    } else {
        &[]
    };
    let items = call.args.as_ref().map_or(&[][..], |a| a.items.as_slice());
    let smoothing_key = items
        .iter()
        .filter_map(|a| a.key.as_ref())
        .find(|k| k.name == "label_smoothing");
    if let (true, Some(key)) = (params.is_empty(), smoothing_key) {
        d.push(
            Diagnostic::error(
                codes::UNKNOWN_ARG,
                format!("`{name}` has no argument `label_smoothing`"),
                key.span.clone(),
                "not smoothed",
            )
            .with_help(if loss == Loss::SparseCategoricalCrossentropy {
                "as in Keras, smoothing needs one-hot targets: use `categorical_crossentropy` \
                 (nnc one-hot encodes class indices for it)"
            } else {
                "only the cross-entropies smooth labels"
            }),
        );
        return None;
    }
    let errors = d.len();
    let b = bind(call, &format!("`{name}`"), params, &[], d);
    if d.len() > errors {
        return None;
    }
    let smoothing = match b.get("label_smoothing") {
        None => 0.0,
        Some(v) => ok(
            args::float_in(
                v,
                "label_smoothing",
                |x| (0.0..=1.0).contains(&x),
                "must be in [0, 1]",
            ),
            d,
        )? as f32,
    };
    Some((loss, smoothing))
}

fn metrics(v: &Value, outputs: Option<u64>, d: &mut Vec<Diagnostic>) -> Option<Vec<Metric>> {
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
        // `top_k_accuracy(k = 3)` is the one metric with an argument.
        let named = match &it.kind {
            ValueKind::Call(call) if call.args.is_some() => match call.name.name.as_str() {
                "top_k_accuracy" => Ok("top_k_accuracy"),
                other => Err(Diagnostic::error(
                    codes::TYPE,
                    format!("metric `{other}` takes no arguments"),
                    it.span.clone(),
                    "arguments given here",
                )
                .with_help(format!("write `{other}`"))),
            },
            _ => args::name(it, "metrics", "metric", &names::METRICS),
        };
        match named {
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
                // `args::name` accepted only names of `Metric::ALL`.
                out.push(match Metric::from_keyword(m) {
                    Some(Metric::TopKAccuracy { .. }) => match top_k(it, outputs, d) {
                        Some(k) => Metric::TopKAccuracy { k },
                        None => {
                            good = false;
                            continue;
                        }
                    },
                    Some(metric) => metric,
                    None => {
                        good = false;
                        continue;
                    }
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

/// `class_weight = balanced` or one weight per class, for a classification loss.
fn class_weight(
    v: &Value,
    loss: Option<Loss>,
    facts: &ModelFacts,
    d: &mut Vec<Diagnostic>,
) -> Option<ClassWeight> {
    if let Some(loss) = loss.filter(|l| !l.targets().are_classes()) {
        d.push(
            Diagnostic::error(
                codes::CLASS_WEIGHT,
                format!(
                    "`class_weight` weighs classes, but `{}` is a regression loss",
                    loss.keyword()
                ),
                v.span.clone(),
                "no classes to weigh",
            )
            .with_help("remove `class_weight`, or train a classifier (a cross-entropy loss)"),
        );
        return None;
    }
    let ValueKind::List(_) = &v.kind else {
        ok(
            args::name(v, "class_weight", "class weighting", &["balanced"]),
            d,
        )?;
        return Some(ClassWeight::Balanced);
    };
    let weights = ok(
        number_list(v, "class_weight", |x| x >= 0.0, "must be >= 0"),
        d,
    )?;
    // One sigmoid unit decides between two classes.
    let classes = facts.output_size.map(|out| out.max(2));
    if let Some(classes) = classes.filter(|&c| c != weights.len() as u64) {
        d.push(
            Diagnostic::error(
                codes::CLASS_WEIGHT,
                format!(
                    "`class_weight` gives {} weights, but the model has {classes} classes",
                    weights.len()
                ),
                v.span.clone(),
                format!("{} weights", weights.len()),
            )
            .with_label(facts.output_span.clone(), format!("{classes} classes here"))
            .with_help(format!(
                "give one weight per class, in class order ({classes}), or write `balanced`"
            )),
        );
        return None;
    }
    Some(ClassWeight::Given(weights))
}

/// The `k` of `top_k_accuracy` (5 unless given): at least 1, at most the model's
/// output units, the classes it ranks.
fn top_k(v: &Value, outputs: Option<u64>, d: &mut Vec<Diagnostic>) -> Option<usize> {
    let k = match &v.kind {
        ValueKind::Call(call) if call.args.is_some() => {
            let b = bind(call, "`top_k_accuracy`", &["k"], &[], d);
            match b.get("k") {
                None => 5,
                Some(kv) => ok(args::positive(kv, "k"), d)?,
            }
        }
        _ => 5,
    };
    if let Some(out) = outputs.filter(|&out| k > out) {
        d.push(
            Diagnostic::error(
                codes::RANGE,
                format!("`top_k_accuracy` with k = {k} ranks more classes than the model's {out} outputs"),
                v.span.clone(),
                format!("k = {k}"),
            )
            .with_help(format!(
                "choose k below {out} (`top_k_accuracy(k = {})`); with k = {out} every sample counts as right",
                out.saturating_sub(1).max(1)
            )),
        );
        return None;
    }
    usize::try_from(k).ok()
}

/// The optimizer with its learning-rate schedule and gradient clipping, if any.
type OptimizerSetting = (Optimizer, Option<Schedule>, Option<Clip>);

fn optimizer(v: &Value, d: &mut Vec<Diagnostic>) -> Option<OptimizerSetting> {
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
        "sgd" => &[
            "learning_rate",
            "momentum",
            "nesterov",
            "clipnorm",
            "clipvalue",
            "global_clipnorm",
        ],
        "adam" => &[
            "learning_rate",
            "beta_1",
            "beta_2",
            "epsilon",
            "clipnorm",
            "clipvalue",
            "global_clipnorm",
        ],
        "adamw" => &[
            "learning_rate",
            "beta_1",
            "beta_2",
            "epsilon",
            "weight_decay",
            "clipnorm",
            "clipvalue",
            "global_clipnorm",
        ],
        _ => &[
            "learning_rate",
            "rho",
            "epsilon",
            "clipnorm",
            "clipvalue",
            "global_clipnorm",
        ],
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
    let (lr, schedule) = match b.get("learning_rate").map(|v| (v, &v.kind)) {
        Some((v, ValueKind::Call(call))) => {
            let s = schedule(call, v, d);
            (s.as_ref().map(Schedule::initial), s.map(Some))
        }
        _ => (
            num("learning_rate", lr_default, positive, "must be positive", d),
            Some(None),
        ),
    };
    let clip = clipping(&b, d);
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
    Some((opt, schedule?, clip?))
}

/// The optimizer's clipping argument: at most one of the three, as Keras allows.
fn clipping(b: &Bound, d: &mut Vec<Diagnostic>) -> Option<Option<Clip>> {
    let given: Vec<(&str, &Value)> = ["clipnorm", "global_clipnorm", "clipvalue"]
        .into_iter()
        .filter_map(|k| b.get(k).map(|v| (k, v)))
        .collect();
    if let [(first, fv), (second, sv), ..] = given.as_slice() {
        d.push(
            Diagnostic::error(
                codes::CLIP_CONFLICT,
                format!("`{first}` and `{second}` are both given"),
                sv.span.clone(),
                "a second kind of clipping",
            )
            .with_label(fv.span.clone(), "first given here")
            .with_help(
                "clip gradients one way: keep one of `clipnorm`, `global_clipnorm` and `clipvalue`",
            ),
        );
        return None;
    }
    let Some(&(key, v)) = given.first() else {
        return Some(None);
    };
    let x = ok(args::float_in(v, key, |x| x > 0.0, "must be positive"), d)? as f32;
    Some(Some(match key {
        "clipnorm" => Clip::Norm(x),
        "global_clipnorm" => Clip::GlobalNorm(x),
        _ => Clip::Value(x),
    }))
}

/// A learning-rate schedule given as an optimizer's `learning_rate`.
fn schedule(call: &Call, v: &Value, d: &mut Vec<Diagnostic>) -> Option<Schedule> {
    let name = call.name.name.as_str();
    let params: &[&'static str] = match name {
        "exponential_decay" | "inverse_time_decay" => &[
            "initial_learning_rate",
            "decay_steps",
            "decay_rate",
            "staircase",
        ],
        "polynomial_decay" => &[
            "initial_learning_rate",
            "decay_steps",
            "end_learning_rate",
            "power",
            "cycle",
        ],
        "cosine_decay" => &[
            "initial_learning_rate",
            "decay_steps",
            "alpha",
            "warmup_target",
            "warmup_steps",
        ],
        "piecewise_constant_decay" => &["boundaries", "values"],
        _ => {
            d.push(
                Diagnostic::error(
                    codes::UNKNOWN_NAME,
                    format!("unknown learning-rate schedule `{name}`"),
                    call.name.span.clone(),
                    "not a schedule",
                )
                .with_help(names::suggestion(name, names::SCHEDULES)),
            );
            return None;
        }
    };
    let required: &[&'static str] = match name {
        "piecewise_constant_decay" => &["boundaries", "values"],
        "exponential_decay" | "inverse_time_decay" => {
            &["initial_learning_rate", "decay_steps", "decay_rate"]
        }
        _ => &["initial_learning_rate", "decay_steps"],
    };
    let b = bind(call, &format!("`{name}`"), params, required, d);
    let positive: fn(f64) -> bool = |x| x > 0.0;
    let num = |key: &str,
               default: Option<f64>,
               valid: fn(f64) -> bool,
               rule: &str,
               d: &mut Vec<Diagnostic>| {
        match b.get(key) {
            None => default.map(|x| x as f32),
            Some(v) => ok(args::float_in(v, key, valid, rule), d).map(|x| x as f32),
        }
    };
    let flag = |key: &str, d: &mut Vec<Diagnostic>| match b.get(key) {
        None => Some(false),
        Some(v) => ok(args::boolean(v, key), d),
    };
    let initial = |d: &mut Vec<Diagnostic>| {
        num(
            "initial_learning_rate",
            None,
            positive,
            "must be positive",
            d,
        )
    };
    let steps = |d: &mut Vec<Diagnostic>| num("decay_steps", None, positive, "must be positive", d);
    Some(match name {
        "exponential_decay" | "inverse_time_decay" => {
            let (initial, decay_steps) = (initial(d), steps(d));
            let decay_rate = num("decay_rate", None, |x| x >= 0.0, "must be >= 0", d);
            let staircase = flag("staircase", d);
            let (initial, decay_steps, decay_rate, staircase) =
                (initial?, decay_steps?, decay_rate?, staircase?);
            if name == "exponential_decay" {
                Schedule::ExponentialDecay {
                    initial,
                    decay_steps,
                    decay_rate,
                    staircase,
                }
            } else {
                Schedule::InverseTimeDecay {
                    initial,
                    decay_steps,
                    decay_rate,
                    staircase,
                }
            }
        }
        "polynomial_decay" => {
            let (initial, decay_steps) = (initial(d), steps(d));
            let end = num(
                "end_learning_rate",
                Some(0.0001),
                |x| x >= 0.0,
                "must be >= 0",
                d,
            );
            let power = num("power", Some(1.0), positive, "must be positive", d);
            let cycle = flag("cycle", d);
            Schedule::PolynomialDecay {
                initial: initial?,
                decay_steps: decay_steps?,
                end: end?,
                power: power?,
                cycle: cycle?,
            }
        }
        "cosine_decay" => {
            let (initial, decay_steps) = (initial(d), steps(d));
            let alpha = num(
                "alpha",
                Some(0.0),
                |x| (0.0..=1.0).contains(&x),
                "must be in [0, 1]",
                d,
            );
            let warmup_target = match b.get("warmup_target") {
                None => Some(None),
                Some(v) => ok(
                    args::float_in(v, "warmup_target", positive, "must be positive"),
                    d,
                )
                .map(|x| Some(x as f32)),
            };
            let warmup_steps = num("warmup_steps", Some(0.0), |x| x >= 0.0, "must be >= 0", d);
            if let (Some(Some(_)), Some(0.0)) = (warmup_target, warmup_steps) {
                d.push(
                    Diagnostic::error(
                        codes::RANGE,
                        "`warmup_target` needs `warmup_steps` greater than 0",
                        v.span.clone(),
                        "a warmup of no steps",
                    )
                    .with_help("add e.g. `warmup_steps = 1000`, or remove `warmup_target`"),
                );
                return None;
            }
            Schedule::CosineDecay {
                initial: initial?,
                decay_steps: decay_steps?,
                alpha: alpha?,
                warmup_target: warmup_target?,
                warmup_steps: warmup_steps?,
            }
        }
        _ => {
            let boundaries = b.get("boundaries").and_then(|v| ok(step_list(v), d));
            let values = b
                .get("values")
                .and_then(|v| ok(number_list(v, "values", |x| x > 0.0, "must be positive"), d));
            let (boundaries, values) = (boundaries?, values?);
            if boundaries.len() + 1 != values.len() {
                let (bv, vv) = (b.get("boundaries")?, b.get("values")?);
                d.push(
                    Diagnostic::error(
                        codes::SCHEDULE_LENGTHS,
                        format!(
                            "`piecewise_constant_decay` needs one more value than boundaries, \
                             found {} boundaries and {} values",
                            boundaries.len(),
                            values.len()
                        ),
                        vv.span.clone(),
                        format!("{} values", values.len()),
                    )
                    .with_label(bv.span.clone(), format!("{} boundaries", boundaries.len()))
                    .with_help(format!(
                        "give {} values: one up to the first boundary, one after each boundary",
                        boundaries.len() + 1
                    )),
                );
                return None;
            }
            Schedule::PiecewiseConstantDecay { boundaries, values }
        }
    })
}

/// A non-empty, strictly increasing list of step numbers.
fn step_list(v: &Value) -> Result<Vec<u64>, Diagnostic> {
    let ValueKind::List(items) = &v.kind else {
        return Err(args::type_error(v, "a list of step numbers", "boundaries"));
    };
    let mut out: Vec<u64> = vec![];
    for it in items {
        let n = args::int(it, "boundaries")?;
        let n = u64::try_from(n)
            .map_err(|_| args::range_error(it, "boundaries", "must not be negative"))?;
        if out.last().is_some_and(|&last| n <= last) {
            return Err(args::range_error(
                it,
                "boundaries",
                "must be strictly increasing",
            ));
        }
        out.push(n);
    }
    if out.is_empty() {
        return Err(args::range_error(
            v,
            "boundaries",
            "must hold at least one step",
        ));
    }
    Ok(out)
}

/// A list of numbers, each obeying `valid`.
fn number_list(
    v: &Value,
    name: &str,
    valid: fn(f64) -> bool,
    rule: &str,
) -> Result<Vec<f32>, Diagnostic> {
    let ValueKind::List(items) = &v.kind else {
        return Err(args::type_error(v, "a list of numbers", name));
    };
    items
        .iter()
        .map(|it| args::float_in(it, name, valid, rule).map(|x| x as f32))
        .collect()
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
    let name = loss.keyword();
    let problem: Option<(String, &str)> = match loss.targets() {
        Targets::Binary if out != 1 => Some((
            format!("{name} needs one output unit, but the model outputs {out}"),
            "end the model with `dense(1, activation = sigmoid)`, or use sparse_categorical_crossentropy for several classes",
        )),
        Targets::OneHot | Targets::Sparse if out < 2 => Some((
            format!("{name} needs one output unit per class, but the model outputs {out}"),
            "for two classes with one unit, use binary_crossentropy",
        )),
        Targets::OneHot | Targets::Sparse if classes_known && out != 10 => Some((
            format!("MNIST has 10 classes, but the model outputs {out} units"),
            "end the model with `dense(10, activation = softmax)`",
        )),
        Targets::Value if out != 1 => Some((
            format!("the target is one column, but the model outputs {out} values per sample"),
            "end the model with one output unit, or use sparse_categorical_crossentropy for classes",
        )),
        Targets::Value | Targets::Binary | Targets::OneHot | Targets::Sparse => None,
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
