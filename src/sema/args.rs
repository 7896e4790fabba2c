//! Binding call arguments to parameters, and typed reading of values.

// `Diagnostic` (a contract type) is large; errors are the cold path, so it is not boxed.
#![allow(clippy::result_large_err)]

use crate::diag::codes;
use crate::diag::Diagnostic;
use crate::sema::names;
use crate::syntax::ast::{is_float_text, Call, Value, ValueKind};

/// The arguments of one call, bound to parameter names.
pub struct Bound<'v> {
    pub values: Vec<(&'static str, &'v Value)>,
}

impl<'v> Bound<'v> {
    pub fn get(&self, name: &str) -> Option<&'v Value> {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }
}

/// Binds `call`'s arguments to `params` (positional in order, then by keyword).
/// Reports unknown, duplicated, surplus and missing arguments into `diags`.
pub fn bind<'v>(
    call: &'v Call,
    what: &str,
    params: &[&'static str],
    required: &[&'static str],
    diags: &mut Vec<Diagnostic>,
) -> Bound<'v> {
    let mut values: Vec<(&'static str, &'v Value)> = vec![];
    let mut seen_keyword = false;
    let mut positional = 0usize;
    // After a misplaced positional argument, "missing" errors would only repeat it.
    let mut misplaced = false;
    let items = call
        .args
        .as_ref()
        .map(|a| a.items.as_slice())
        .unwrap_or(&[]);
    for arg in items {
        let name = match &arg.key {
            None => {
                if seen_keyword {
                    misplaced = true;
                    diags.push(
                        Diagnostic::error(
                            codes::POSITIONAL,
                            format!("positional argument after keyword arguments in {what}"),
                            arg.span.clone(),
                            "this argument has no name",
                        )
                        .with_help("positional arguments come first; or write `name = value`"),
                    );
                    continue;
                }
                let Some(p) = params.get(positional) else {
                    let msg = if params.is_empty() {
                        format!("{what} takes no arguments")
                    } else {
                        format!(
                            "{what} takes at most {} positional argument{}",
                            params.len(),
                            if params.len() == 1 { "" } else { "s" }
                        )
                    };
                    diags.push(Diagnostic::error(
                        codes::POSITIONAL,
                        msg,
                        arg.span.clone(),
                        "surplus argument",
                    ));
                    positional += 1;
                    continue;
                };
                positional += 1;
                *p
            }
            Some(key) => {
                seen_keyword = true;
                match params.iter().find(|p| **p == key.name) {
                    Some(p) => *p,
                    None => {
                        let help = if params.is_empty() {
                            format!("{what} takes no arguments")
                        } else {
                            names::suggestion(&key.name, params)
                        };
                        diags.push(
                            Diagnostic::error(
                                codes::UNKNOWN_ARG,
                                format!("{what} has no argument `{}`", key.name),
                                key.span.clone(),
                                "unknown argument",
                            )
                            .with_help(help),
                        );
                        continue;
                    }
                }
            }
        };
        if let Some((_, first)) = values.iter().find(|(n, _)| *n == name) {
            diags.push(
                Diagnostic::error(
                    codes::DUPLICATE_ARG,
                    format!("argument `{name}` of {what} is given twice"),
                    arg.span.clone(),
                    "given again here",
                )
                .with_label(first.span.clone(), "first given here"),
            );
            continue;
        }
        values.push((name, &arg.value));
    }
    for r in required.iter().filter(|_| !misplaced) {
        if !values.iter().any(|(n, _)| n == r) {
            diags.push(
                Diagnostic::error(
                    codes::MISSING,
                    format!("{what} is missing its required argument `{r}`"),
                    call.span.clone(),
                    format!("`{r}` is missing"),
                )
                .with_help(format!("add `{r} = ...`")),
            );
        }
    }
    Bound { values }
}

pub fn type_error(v: &Value, expected: &str, param: &str) -> Diagnostic {
    Diagnostic::error(
        codes::TYPE,
        format!("`{param}` expects {expected}, found {}", v.kind.describe()),
        v.span.clone(),
        format!("expected {expected}"),
    )
}

pub fn range_error(v: &Value, param: &str, rule: &str) -> Diagnostic {
    Diagnostic::error(
        codes::RANGE,
        format!("`{param}` {rule}"),
        v.span.clone(),
        "out of range",
    )
}

pub fn int(v: &Value, param: &str) -> Result<i64, Diagnostic> {
    match &v.kind {
        ValueKind::Number(t) if !is_float_text(t) => t
            .parse::<i64>()
            .map_err(|_| range_error(v, param, "is too large: integers must fit in 64 bits")),
        _ => Err(type_error(v, "an integer", param)),
    }
}

/// A positive integer (sizes, counts, strides).
pub fn positive(v: &Value, param: &str) -> Result<u64, Diagnostic> {
    let n = int(v, param)?;
    if n <= 0 {
        return Err(range_error(
            v,
            param,
            &format!("must be positive, found {n}"),
        ));
    }
    Ok(n as u64)
}

/// A float; integers are accepted too.
pub fn float(v: &Value, param: &str) -> Result<f64, Diagnostic> {
    match &v.kind {
        ValueKind::Number(t) => match t.parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(x),
            _ => Err(range_error(v, param, "is too large to be a number")),
        },
        _ => Err(type_error(v, "a number", param)),
    }
}

/// A float in a range, described by `rule` when outside it. Every such value is used
/// as a float32, so it must also survive that conversion: not overflow, not fall
/// below float32's normal range (`learning_rate = 1e-50` would become 0 and nothing
/// would train), and still obey `rule` once rounded (`beta_2 = 0.9999999999` is 1).
pub fn float_in(
    v: &Value,
    param: &str,
    ok: impl Fn(f64) -> bool,
    rule: &str,
) -> Result<f64, Diagnostic> {
    let x = float(v, param)?;
    if !ok(x) {
        return Err(range_error(v, param, &format!("{rule}, found {x}")));
    }
    let single = x as f32;
    // As written: `1e-50` rather than fifty digits.
    let text = match &v.kind {
        ValueKind::Number(t) => t.as_str(),
        _ => "",
    };
    let problem = if single.is_infinite() {
        format!(
            "is too large for float32 (at most {:e}), found {text}",
            f32::MAX
        )
    } else if x != 0.0 && single.abs() < f32::MIN_POSITIVE {
        format!(
            "is too small for float32 (the smallest normal value is {:e}), found {text}; it would \
             become {single:e}",
            f32::MIN_POSITIVE
        )
    } else if !ok(f64::from(single)) {
        format!("{rule}, found {text}, which is {single} as a float32")
    } else {
        return Ok(x);
    };
    Err(range_error(v, param, &problem).with_help("training computes in float32"))
}

pub fn boolean(v: &Value, param: &str) -> Result<bool, Diagnostic> {
    match &v.kind {
        ValueKind::Bool(b) => Ok(*b),
        _ => Err(type_error(v, "`true` or `false`", param)),
    }
}

pub fn string<'v>(v: &'v Value, param: &str) -> Result<&'v str, Diagnostic> {
    match &v.kind {
        ValueKind::Str(s) => Ok(s),
        _ => Err(type_error(v, "a string", param)),
    }
}

/// The variant of `all` whose `keyword` the value `v` names (as `name` reads it):
/// the one way a name becomes an enum, so a name without a variant cannot exist.
pub fn keyword<T: Copy>(
    v: &Value,
    param: &str,
    kind: &str,
    all: &[T],
    keyword: fn(T) -> &'static str,
) -> Result<T, Diagnostic> {
    let known: Vec<&'static str> = all.iter().map(|&t| keyword(t)).collect();
    let name = name(v, param, kind, &known)?;
    let found = all.iter().copied().find(|&t| keyword(t) == name);
    // `name` returned one of `known`, each the keyword of a variant of `all`.
    found.ok_or_else(|| type_error(v, kind, param))
}

/// A name from `known`, written bare (`relu`) or as a Keras-style string (`"relu"`).
pub fn name(
    v: &Value,
    param: &str,
    kind: &str,
    known: &[&'static str],
) -> Result<&'static str, Diagnostic> {
    let text = match &v.kind {
        ValueKind::Call(c) if c.args.is_none() => c.name.name.as_str(),
        ValueKind::Str(s) => s.as_str(),
        _ => {
            return Err(type_error(
                v,
                &format!("{} {kind} name", article(kind)),
                param,
            ))
        }
    };
    known.iter().find(|k| **k == text).copied().ok_or_else(|| {
        Diagnostic::error(
            codes::UNKNOWN_NAME,
            format!("unknown {kind} `{text}`"),
            v.span.clone(),
            format!("not {} {kind}", article(kind)),
        )
        .with_help(names::suggestion(text, known))
    })
}

fn article(noun: &str) -> &'static str {
    if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// An int `n` (meaning `[n, n]`) or a list `[h, w]` of positive ints.
pub fn pair(v: &Value, param: &str) -> Result<[u64; 2], Diagnostic> {
    match &v.kind {
        ValueKind::List(items) => {
            if items.len() != 2 {
                let n = items.len();
                return Err(Diagnostic::error(
                    codes::TYPE,
                    format!(
                        "`{param}` expects an integer or a list of two `[h, w]`, found a list of \
                         {n} value{}",
                        if n == 1 { "" } else { "s" }
                    ),
                    v.span.clone(),
                    format!("{n} value{}", if n == 1 { "" } else { "s" }),
                )
                .with_help(match items.first().map(|i| &i.kind) {
                    Some(ValueKind::Number(k)) if n == 1 => {
                        format!("for a square window write `{param} = {k}` or `[{k}, {k}]`")
                    }
                    _ => format!("write e.g. `{param} = 3` or `[3, 3]`"),
                }));
            }
            Ok([positive(&items[0], param)?, positive(&items[1], param)?])
        }
        _ => {
            let n = positive(v, param)?;
            Ok([n, n])
        }
    }
}
