//! The `callbacks` setting of the train block: each callback's arguments, with
//! Keras 3's names and defaults, and the quantity it monitors checked against what
//! the run logs (`loss`, the metrics, and their `val_` forms with validation data).

// `Diagnostic` (a contract type) is large; errors are the cold path, so it is not boxed.
#![allow(clippy::result_large_err)]

use std::path::Path;

use super::args::{self, bind, Bound};
use super::model::{Callback, Metric, Monitor};
use super::names;
use crate::diag::codes;
use crate::diag::Diagnostic;
use crate::syntax::ast::{Call, Value, ValueKind};

/// Each callback's parameters, in positional order (the editor offers them too).
pub const PARAMS: &[(&str, &[&str])] = &[
    (
        "early_stopping",
        &[
            "monitor",
            "min_delta",
            "patience",
            "mode",
            "restore_best_weights",
            "start_from_epoch",
        ],
    ),
    (
        "reduce_lr_on_plateau",
        &[
            "monitor",
            "factor",
            "patience",
            "mode",
            "min_delta",
            "cooldown",
            "min_lr",
        ],
    ),
    (
        "model_checkpoint",
        &["path", "monitor", "save_best_only", "mode"],
    ),
    ("terminate_on_nan", &[]),
    ("csv_logger", &["path"]),
];

/// What a run logs after every epoch, for checking monitored names, and whether
/// its learning rate is a schedule (which `reduce_lr_on_plateau` cannot lower).
pub struct Logged<'a> {
    pub metrics: &'a [Metric],
    /// Whether `validation_data` or `validation_split` is set (the `val_` names).
    pub validation: bool,
    pub scheduled: bool,
}

impl Logged<'_> {
    /// Every loggable name, training ones first: `loss`, the metrics, then `val_...`.
    fn names(&self) -> Vec<String> {
        let train: Vec<String> = std::iter::once("loss")
            .chain(self.metrics.iter().map(|m| m.keyword()))
            .map(str::to_string)
            .collect();
        let val = train.iter().map(|n| format!("val_{n}")).collect::<Vec<_>>();
        train.into_iter().chain(val).collect()
    }
}

/// Checks `callbacks = [...]`; `None` after reporting an error. `logged` is `None`
/// when the metrics did not check out (monitors are then not checked again).
pub fn callbacks(
    v: &Value,
    logged: Option<&Logged>,
    base: &Path,
    d: &mut Vec<Diagnostic>,
) -> Option<Vec<Callback>> {
    let ValueKind::List(items) = &v.kind else {
        d.push(
            args::type_error(v, "a list of callbacks", "callbacks")
                .with_help("write a list, e.g. `[early_stopping(patience = 3)]`"),
        );
        return None;
    };
    let mut out = vec![];
    let mut good = true;
    for item in items {
        match callback(item, logged, base, d) {
            Some(c) => out.push(c),
            None => good = false,
        }
    }
    good.then_some(out)
}

fn ok<T>(r: Result<T, Diagnostic>, d: &mut Vec<Diagnostic>) -> Option<T> {
    r.map_err(|e| d.push(e)).ok()
}

fn callback(
    v: &Value,
    logged: Option<&Logged>,
    base: &Path,
    d: &mut Vec<Diagnostic>,
) -> Option<Callback> {
    let call = match &v.kind {
        ValueKind::Call(call) => call,
        _ => {
            d.push(
                args::type_error(v, "a callback", "callbacks")
                    .with_help("write e.g. `early_stopping(patience = 3)` or `terminate_on_nan`"),
            );
            return None;
        }
    };
    let name = call.name.name.as_str();
    let Some(&(_, params)) = PARAMS.iter().find(|(n, _)| *n == name) else {
        d.push(
            Diagnostic::error(
                codes::UNKNOWN_NAME,
                format!("unknown callback `{name}`"),
                call.name.span.clone(),
                "not a callback",
            )
            .with_help(names::suggestion(name, names::CALLBACKS)),
        );
        return None;
    };
    let what = format!("`{name}`");
    let errors_before = d.len();
    let c = match name {
        "early_stopping" => {
            let b = bind(call, &what, params, &[], d);
            let monitor = monitor(call, &b, logged, d);
            let patience = count(&b, "patience", 0, d);
            let min_delta = min_delta(&b, 0.0, d);
            let restore = flag(&b, "restore_best_weights", false, d);
            let start = count(&b, "start_from_epoch", 0, d);
            Callback::EarlyStopping {
                monitor: monitor?,
                patience: patience?,
                min_delta: min_delta?,
                restore_best_weights: restore?,
                start_from_epoch: start?,
            }
        }
        "reduce_lr_on_plateau" => {
            let b = bind(call, &what, params, &[], d);
            let monitor = monitor(call, &b, logged, d);
            let factor = match b.get("factor") {
                None => Some(0.1),
                Some(v) => ok(
                    args::float_in(
                        v,
                        "factor",
                        |x| x > 0.0 && x < 1.0,
                        "must be strictly between 0 and 1 (the learning rate is multiplied by it)",
                    ),
                    d,
                ),
            };
            let patience = count(&b, "patience", 10, d);
            let min_delta = min_delta(&b, 1e-4, d);
            let cooldown = count(&b, "cooldown", 0, d);
            let min_lr = match b.get("min_lr") {
                None => Some(0.0),
                Some(v) => ok(
                    args::float_in(v, "min_lr", |x| x >= 0.0, "must not be negative"),
                    d,
                ),
            };
            if logged.is_some_and(|l| l.scheduled) {
                d.push(
                    Diagnostic::error(
                        codes::PLATEAU_SCHEDULE,
                        "`reduce_lr_on_plateau` cannot lower a learning rate that is a schedule",
                        call.span.clone(),
                        "sets the learning rate",
                    )
                    .with_help(
                        "a schedule fixes the rate of every step (Keras refuses this too); \
                         give the optimizer a number as `learning_rate`, or remove this callback",
                    ),
                );
            }
            Callback::ReduceLrOnPlateau {
                monitor: monitor?,
                factor: factor?,
                patience: patience?,
                min_delta: min_delta?,
                cooldown: cooldown?,
                min_lr: min_lr?,
            }
        }
        "model_checkpoint" => {
            let b = bind(call, &what, params, &["path"], d);
            let path = b.get("path").and_then(|v| ok(args::string(v, "path"), d));
            let best_only = flag(&b, "save_best_only", false, d);
            // Saving every epoch ignores the monitor, as Keras does: its default
            // `val_loss` must not demand validation data then.
            let checked = (best_only == Some(true) || b.get("monitor").is_some()).then_some(logged);
            let monitor = monitor(call, &b, checked.flatten(), d);
            Callback::ModelCheckpoint {
                path: base.join(path?),
                monitor: monitor?,
                save_best_only: best_only?,
            }
        }
        "csv_logger" => {
            let b = bind(call, &what, params, &["path"], d);
            let path = b.get("path").and_then(|v| ok(args::string(v, "path"), d));
            Callback::CsvLogger {
                path: base.join(path?),
            }
        }
        _ => {
            bind(call, &what, params, &[], d);
            Callback::TerminateOnNan
        }
    };
    (d.len() == errors_before).then_some(c)
}

fn count(b: &Bound, key: &str, default: u64, d: &mut Vec<Diagnostic>) -> Option<u64> {
    let Some(v) = b.get(key) else {
        return Some(default);
    };
    let n = ok(args::int(v, key), d)?;
    ok(
        u64::try_from(n).map_err(|_| {
            args::range_error(v, key, &format!("must not be negative, found {n}"))
                .with_help("it counts epochs: 0 or more")
        }),
        d,
    )
}

fn flag(b: &Bound, key: &str, default: bool, d: &mut Vec<Diagnostic>) -> Option<bool> {
    match b.get(key) {
        None => Some(default),
        Some(v) => ok(args::boolean(v, key), d),
    }
}

/// Keras reads `abs(min_delta)`; a negative one is refused here rather than flipped.
fn min_delta(b: &Bound, default: f64, d: &mut Vec<Diagnostic>) -> Option<f64> {
    let Some(v) = b.get("min_delta") else {
        return Some(default);
    };
    let x = ok(args::float(v, "min_delta"), d)?;
    if x < 0.0 {
        d.push(
            args::range_error(v, "min_delta", &format!("must not be negative, found {x}"))
                .with_help(format!(
                    "it is the smallest change that counts as an improvement, in either \
                     direction: write `min_delta = {}`",
                    -x
                )),
        );
        return None;
    }
    Some(x)
}

/// The monitored name with its direction (`mode`), checked against what the run logs.
fn monitor(
    call: &Call,
    b: &Bound,
    logged: Option<&Logged>,
    d: &mut Vec<Diagnostic>,
) -> Option<Monitor> {
    let given = b.get("monitor");
    let name = match given {
        None => "val_loss".to_string(),
        Some(v) => match &v.kind {
            ValueKind::Call(c) if c.args.is_none() => c.name.name.clone(),
            ValueKind::Str(s) => s.clone(),
            _ => {
                d.push(
                    args::type_error(v, "a logged name such as `val_loss`", "monitor")
                        .with_help("write e.g. `monitor = val_loss` or `monitor = accuracy`"),
                );
                return None;
            }
        },
    };
    let mode = match b.get("mode") {
        None => Some("auto"),
        Some(v) => ok(args::name(v, "mode", "mode", names::MODES), d),
    };
    let (span, label) = match given {
        Some(v) => (v.span.clone(), "monitored here".to_string()),
        None => (
            call.span.clone(),
            format!("`{}` monitors `val_loss` by default", call.name.name),
        ),
    };
    if let Some(logged) = logged {
        let known = logged.names();
        let base = name.strip_prefix("val_").unwrap_or(&name);
        if !known.contains(&name) {
            let refs: Vec<&str> = known.iter().map(String::as_str).collect();
            // `names::nearest` takes static names; the logged ones are few.
            let help = refs
                .iter()
                .map(|k| (names::distance(&name, k), *k))
                .filter(|(dist, k)| *dist <= (k.len().max(name.len()) / 3).max(1))
                .min_by_key(|(dist, _)| *dist)
                .map_or_else(
                    || format!("this run logs {}", list(&refs)),
                    |(_, k)| format!("did you mean `{k}`?"),
                );
            d.push(
                Diagnostic::error(
                    codes::UNKNOWN_MONITOR,
                    format!("`{name}` is not logged by this run, so it cannot be monitored"),
                    span,
                    label,
                )
                .with_help(help),
            );
            return None;
        }
        if name.starts_with("val_") && !logged.validation {
            d.push(
                Diagnostic::error(
                    codes::NO_VALIDATION,
                    format!("`{name}` needs validation data, and the train block has none"),
                    span,
                    label,
                )
                .with_help(format!(
                    "add `validation_data = ...` or `validation_split = 0.2` to the train block, \
                     or monitor the training value: `monitor = {base}`"
                )),
            );
            return None;
        }
    }
    let minimize = match mode? {
        "min" => true,
        "max" => false,
        _ => match name.strip_prefix("val_").unwrap_or(&name) {
            "loss" => true,
            other => logged
                .and_then(|l| l.metrics.iter().find(|m| m.keyword() == other))
                .is_none_or(|m| m.lower_is_better()),
        },
    };
    Some(Monitor { name, minimize })
}

fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
