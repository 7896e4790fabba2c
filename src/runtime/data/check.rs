//! What `nnc run` would refuse in the data files, found before any training, for
//! `nnc check` (and for `run`, which checks first): the header of a CSV or IDX file
//! is read (cheap), and a file of at most `SMALL_FILE_BYTES` is read whole with the
//! same readers `run` uses, so that every cell is checked and the classes counted.
//! Each problem is a diagnostic at the `.nn` line that names the file. It runs on a
//! file the front end found no error in (it needs the checked model).

use std::path::Path;

use super::error::{Column, DataErrorKind, Place};
use super::{csv, idx, npy, DataError};
use crate::diag::{codes, Diagnostic};
use crate::sema::model::{DataSource, Loss, Model, Span, Targets, TestSource};
use crate::sema::CheckOutcome;
use crate::syntax::ast::{Call, Item, Value, ValueKind};

/// Files up to this size are read whole; larger ones only up to their header (a
/// pass over a large file would make `check` slow).
pub const SMALL_FILE_BYTES: u64 = 64 << 20;

/// A data source with the `.nn` value that wrote it.
struct Written<'a> {
    source: &'a DataSource,
    value: &'a Value,
}

/// What the checks need to know about the model.
struct ModelFacts {
    input_size: Option<u64>,
    input_shape: String,
    output_size: Option<u64>,
    /// Where the output comes from (the last layer's span).
    output_span: Span,
    /// The `embedding` that reads the features, and its `input_dim`.
    vocabulary: Option<(String, usize)>,
}

/// Adds to `outcome` what `nnc run` would refuse in the data files its train block
/// names. Does nothing for a file with errors or without a train block; a file with
/// a data error no longer has a model, as for any other error.
pub fn check_outcome(outcome: &mut CheckOutcome) {
    let Some(model) = &outcome.model else {
        return;
    };
    let Some(config) = &model.train else {
        return;
    };
    let Ok(file) = crate::syntax::parse(&outcome.source) else {
        return;
    };
    let settings: Vec<_> = file
        .items
        .iter()
        .filter_map(|item| match item {
            Item::Train(t) => Some(t),
            Item::Model(_) => None,
        })
        .flat_map(|t| &t.settings)
        .collect();
    let value = |key: &str| {
        settings
            .iter()
            .find(|s| s.key.name == key)
            .map(|s| &s.value)
    };
    let facts = facts(model);
    let mut d = vec![];
    let data = value("data").map(|value| Written {
        source: &config.data,
        value,
    });
    let test = match (&config.test, value("test")) {
        (Some(TestSource::Source(source)), Some(value)) => Some(Written { source, value }),
        _ => None,
    };
    let validation = match (&config.validation_data, value("validation_data")) {
        (Some(source), Some(value)) => Some(Written { source, value }),
        _ => None,
    };
    check_sources(data, [test, validation], Some(config.loss), &facts, &mut d);
    if d.iter().any(Diagnostic::is_error) {
        outcome.model = None;
    }
    outcome.diagnostics.extend(d);
    outcome
        .diagnostics
        .sort_by_key(|d| (d.span.start, d.span.end));
}

fn facts(model: &Model) -> ModelFacts {
    let dims: Vec<String> = model.input_shape.iter().map(usize::to_string).collect();
    ModelFacts {
        input_size: Some(model.input_size() as u64),
        input_shape: format!("[{}]", dims.join(", ")),
        output_size: Some(model.output_size() as u64),
        output_span: model.layers.last().map_or(0..0, |l| l.span.clone()),
        vocabulary: super::vocabulary(model).map(|(l, n)| (l.to_string(), n)),
    }
}

/// Checks the training source, then the test and validation sources against it.
fn check_sources(
    data: Option<Written>,
    later: [Option<Written>; 2],
    loss: Option<Loss>,
    facts: &ModelFacts,
    d: &mut Vec<Diagnostic>,
) {
    let training = data.and_then(|w| inspect(&w, None, loss, facts, d));
    for w in later.into_iter().flatten() {
        // A test source is matched to the training columns only when both are CSV.
        let columns = training.as_ref().and_then(|t| t.as_deref());
        inspect(&w, Some(columns), loss, facts, d);
    }
}

/// Where the train block of `source` names the data file `error` of `nnc run` is
/// about (a file in it, for an `mnist(...)` folder): the span of that path, so that
/// an error found only while loading (in a file too large for `check` to read whole)
/// is shown at the line naming the file too.
pub fn file_span(source: &str, base_dir: &Path, error: &DataError) -> Option<Span> {
    let error_file = error.file.as_deref()?;
    let file = crate::syntax::parse(source).ok()?;
    let settings = file.items.iter().flat_map(|item| match item {
        Item::Train(t) => t.settings.iter().collect::<Vec<_>>(),
        Item::Model(_) => vec![],
    });
    for setting in
        settings.filter(|s| matches!(s.key.name.as_str(), "data" | "test" | "validation_data"))
    {
        let ValueKind::Call(call) = &setting.value.kind else {
            continue;
        };
        let paths: &[(&str, usize)] = match call.name.name.as_str() {
            "csv" => &[("path", 0)],
            "idx" => &[("images", 0), ("labels", 1)],
            "mnist" => &[("folder", 0)],
            "npy" => &[("x", 0), ("y", 1)],
            "npz" => &[("path", 0)],
            _ => &[],
        };
        for &(name, position) in paths {
            let span = arg_span(&setting.value, name, position);
            let written = source.get(span.clone()).unwrap_or("");
            let path = base_dir.join(written.trim_matches('"'));
            if error_file.starts_with(&path) {
                return Some(span);
            }
        }
    }
    None
}

/// The span of argument `name` (or the `position`th positional one) of the call
/// `value` writes, or the whole value's.
fn arg_span(value: &Value, name: &str, position: usize) -> Span {
    let ValueKind::Call(Call {
        args: Some(args), ..
    }) = &value.kind
    else {
        return value.span.clone();
    };
    let keyed = args
        .items
        .iter()
        .find(|a| a.key.as_ref().is_some_and(|k| k.name == name));
    let positional = args.items.iter().filter(|a| a.key.is_none()).nth(position);
    keyed
        .or(positional)
        .map_or(value.span.clone(), |a| a.value.span.clone())
}

fn data_error(message: impl ToString, span: Span, label: impl Into<String>) -> Diagnostic {
    Diagnostic::error(codes::DATA_FILE, message.to_string(), span, label)
}

/// Checks one source; returns, when its files could be read, its CSV feature names
/// (`Some(None)` for an image source). `training` is `Some` for a later source: the
/// training CSV's feature names, if it had any.
fn inspect(
    w: &Written,
    training: Option<Option<&[String]>>,
    loss: Option<Loss>,
    facts: &ModelFacts,
    d: &mut Vec<Diagnostic>,
) -> Option<Option<Vec<String>>> {
    match w.source {
        DataSource::Csv {
            path,
            target,
            features,
            standardize,
        } => {
            let file = path.display().to_string();
            if let (true, Some((layer, _))) = (*standardize, &facts.vocabulary) {
                d.push(data_error(
                    super::standardized_ids(layer),
                    arg_span(w.value, "standardize", 3),
                    "standardizes the token ids",
                ));
                return None;
            }
            let header = match csv::header(path) {
                Ok(h) => h,
                Err(e) => {
                    d.push(data_error(e, arg_span(w.value, "path", 0), "this file"));
                    return None;
                }
            };
            let target_span = arg_span(w.value, "target", 1);
            if !header.contains(target) {
                let help = match csv::nearest(&header, target) {
                    Some(n) => format!("did you mean `{n}`? (column names are case-sensitive)"),
                    None => format!("the columns are {}", csv::list_columns(&header)),
                };
                d.push(
                    data_error(
                        format!("{file} has no column `{target}`"),
                        target_span,
                        "no such column",
                    )
                    .with_help(help),
                );
                return None;
            }
            let names = match (training, features) {
                (Some(Some(training)), Some(own)) if !same_set(own, training) => {
                    d.push(
                        data_error(
                            format!(
                                "the `features` of this source are not the training features \
                                 ({})",
                                csv::list_columns(training)
                            ),
                            arg_span(w.value, "features", 2),
                            "other columns",
                        )
                        .with_help(
                            "later data must hold the columns the model was trained on; remove \
                             `features` here, they are found by name",
                        ),
                    );
                    return None;
                }
                (Some(Some(training)), _) => {
                    let missing: Vec<String> = training
                        .iter()
                        .filter(|n| !header.contains(n))
                        .map(|n| format!("`{n}`"))
                        .collect();
                    if !missing.is_empty() {
                        d.push(
                            data_error(
                                format!(
                                    "{file} lacks the training feature column{} {}",
                                    if missing.len() == 1 { "" } else { "s" },
                                    missing.join(", ")
                                ),
                                w.value.span.clone(),
                                "this source",
                            )
                            .with_help(
                                "later data is matched to the training columns by header name; \
                                 give the file every training feature column",
                            ),
                        );
                        return None;
                    }
                    training.to_vec()
                }
                (_, Some(listed)) => {
                    let mut all_found = true;
                    for name in listed.iter().filter(|n| !header.contains(n)) {
                        all_found = false;
                        let mut e = data_error(
                            format!("{file} has no column `{name}`"),
                            arg_span(w.value, "features", 2),
                            "in this list",
                        );
                        if let Some(n) = csv::nearest(&header, name) {
                            e = e.with_help(format!("did you mean `{n}`?"));
                        }
                        d.push(e);
                    }
                    if !all_found {
                        return None;
                    }
                    // Their count against the input is checked with the train block.
                    listed.clone()
                }
                (_, None) => {
                    let names: Vec<String> =
                        header.iter().filter(|h| *h != target).cloned().collect();
                    check_feature_count(
                        names.len() as u64,
                        &format!(
                            "{} feature columns (every column but the target `{target}`)",
                            names.len()
                        ),
                        w.value,
                        facts,
                        d,
                    );
                    names
                }
            };
            // A small file is read whole, as `run` will read it: every cell it uses
            // must be a number, every row complete.
            let size = std::fs::metadata(path).map_or(u64::MAX, |m| m.len());
            if size > SMALL_FILE_BYTES {
                d.push(not_read(&file, arg_span(w.value, "path", 0), "its cells"));
                return Some(Some(names));
            }
            let table = match training {
                Some(Some(training)) => csv::read_matching(path, target, training),
                // Exactly the reads `run` does (`runtime::data::load`).
                _ => csv::read(path, target, features.as_deref()),
            };
            match table {
                Ok(t) => {
                    match (loss, &t.class_names) {
                        // The training file's words are the classes; a later file's words
                        // are numbered by them when `run` reads it.
                        (Some(loss), Some(words)) if training.is_none() => {
                            check_class_words(words, &file, target_span, loss, facts, d)
                        }
                        (Some(loss), None) => {
                            check_targets(&t.data.targets, &file, target_span, loss, facts, d)
                        }
                        _ => {}
                    }
                    if let Some((layer, input_dim)) = &facts.vocabulary {
                        if let Some((row, col, v)) = super::bad_token_id(&t.data, *input_dim) {
                            let error = DataError::in_file(
                                path,
                                super::not_a_token_id(v, layer, *input_dim),
                            )
                            .at(Place::Cell {
                                line: t.lines[row],
                                column: Column {
                                    name: names.get(col).map_or("?", String::as_str).into(),
                                    index: None,
                                },
                            });
                            d.push(
                                data_error(error, arg_span(w.value, "path", 0), "this file")
                                    .with_help(format!(
                                        "every feature is a token id: a whole number from 0 to {}",
                                        input_dim - 1
                                    )),
                            );
                        }
                    }
                }
                Err(e) => {
                    d.push(data_error(e, arg_span(w.value, "path", 0), "this file"));
                    return None;
                }
            }
            Some(Some(names))
        }
        DataSource::Idx { images, labels } => {
            let images_span = arg_span(w.value, "images", 0);
            let labels_span = arg_span(w.value, "labels", 1);
            inspect_idx(images, images_span, labels, labels_span, w, loss, facts, d)
        }
        DataSource::Npy { x, y } => {
            let x_span = arg_span(w.value, "x", 0);
            let y_span = arg_span(w.value, "y", 1);
            let x = NumpyArray {
                path: x,
                member: None,
                span: x_span,
            };
            let y = NumpyArray {
                path: y,
                member: None,
                span: y_span,
            };
            inspect_arrays(&x, &y, w, loss, facts, d)
        }
        DataSource::Npz { path, x, y } => {
            let x = NumpyArray {
                path,
                member: Some(x),
                span: arg_span(w.value, "x", 1),
            };
            let y = NumpyArray {
                path,
                member: Some(y),
                span: arg_span(w.value, "y", 2),
            };
            inspect_arrays(&x, &y, w, loss, facts, d)
        }
        DataSource::Mnist { folder, subset } => match idx::mnist_paths(folder, *subset) {
            Ok((images, labels)) => {
                let span = arg_span(w.value, "folder", 0);
                inspect_idx(&images, span.clone(), &labels, span, w, loss, facts, d)
            }
            Err(e) => {
                d.push(data_error(e, arg_span(w.value, "folder", 0), "this folder"));
                None
            }
        },
    }
}

fn same_set(a: &[String], b: &[String]) -> bool {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort();
    b.sort();
    a == b
}

#[allow(clippy::too_many_arguments)]
fn inspect_idx(
    images: &Path,
    images_span: Span,
    labels: &Path,
    labels_span: Span,
    w: &Written,
    loss: Option<Loss>,
    facts: &ModelFacts,
    d: &mut Vec<Diagnostic>,
) -> Option<Option<Vec<String>>> {
    let dims = idx::image_dims(images)
        .map_err(|e| d.push(data_error(e, images_span, "this file")))
        .ok();
    let count = idx::label_count(labels)
        .map_err(|e| d.push(data_error(e, labels_span.clone(), "this file")))
        .ok();
    let (dims, count) = (dims?, count?);
    if dims[0] != count {
        d.push(data_error(
            idx::pairing(images, dims[0], labels, count),
            w.value.span.clone(),
            "these files",
        ));
        return None;
    }
    // MNIST's 784 pixels are checked with the train block.
    if !matches!(w.source, DataSource::Mnist { .. }) {
        let pixels = (dims[1] as u64).saturating_mul(dims[2] as u64);
        check_feature_count(
            pixels,
            &format!("images of {}x{} = {pixels} pixels", dims[1], dims[2]),
            w.value,
            facts,
            d,
        );
    }
    // MNIST's ten classes are checked with the train block (E0019).
    let mnist_classes = matches!(w.source, DataSource::Mnist { .. })
        && loss.is_some_and(|l| l.targets().one_per_unit());
    if let Some(loss) = loss.filter(|_| !mnist_classes) {
        let size = std::fs::metadata(labels).map_or(u64::MAX, |m| m.len());
        let file = labels.display().to_string();
        if size > SMALL_FILE_BYTES {
            d.push(not_read(&file, labels_span, "its labels"));
        } else {
            match idx::labels(labels) {
                Ok(l) => {
                    let targets: Vec<f32> = l.into_iter().map(f32::from).collect();
                    check_targets(&targets, &file, labels_span, loss, facts, d);
                }
                Err(e) => d.push(data_error(e, labels_span, "this file")),
            }
        }
    }
    Some(None)
}

/// One array of a NumPy source: a `.npy` file, or a member of a `.npz` archive.
struct NumpyArray<'a> {
    path: &'a Path,
    member: Option<&'a str>,
    /// Where the `.nn` file names it.
    span: Span,
}

impl NumpyArray<'_> {
    /// The error `kind` about this array.
    fn error(&self, kind: DataErrorKind) -> DataError {
        DataError::in_file(self.path, kind).in_array(self.member)
    }

    fn name(&self) -> String {
        match self.member {
            None => self.path.display().to_string(),
            Some(m) => format!("{}: array `{m}`", self.path.display()),
        }
    }

    /// The whole array when the file is small, else its shape alone (`None` values).
    fn read(&self) -> Result<(Vec<usize>, Option<Vec<f32>>), DataError> {
        let size = std::fs::metadata(self.path).map_or(u64::MAX, |m| m.len());
        if size > SMALL_FILE_BYTES {
            return npy::shape(self.path, self.member).map(|shape| (shape, None));
        }
        let array = match self.member {
            None => npy::read_npy(self.path)?,
            Some(m) => npy::read_npz(self.path, m)?,
        };
        Ok((array.shape, Some(array.values)))
    }
}

/// A NumPy source as `run` loads it: both arrays readable, one label per sample,
/// samples that fill the input, labels that fit the loss.
fn inspect_arrays(
    x: &NumpyArray,
    y: &NumpyArray,
    w: &Written,
    loss: Option<Loss>,
    facts: &ModelFacts,
    d: &mut Vec<Diagnostic>,
) -> Option<Option<Vec<String>>> {
    let read = |a: &NumpyArray, d: &mut Vec<Diagnostic>| {
        a.read()
            .map_err(|e| d.push(data_error(e, a.span.clone(), "this array")))
            .ok()
    };
    let (xs, ys) = (read(x, d), read(y, d));
    let ((x_shape, _), (y_shape, labels)) = (xs?, ys?);
    if x_shape.len() < 2 {
        let error = x.error(DataErrorKind::NoSampleAxis { shape: x_shape });
        d.push(data_error(error, x.span.clone(), "this array"));
        return None;
    }
    let flat = matches!(y_shape[..], [n] | [n, 1] if n == x_shape[0]);
    if !flat {
        let error = y.error(DataErrorKind::LabelShape {
            shape: y_shape,
            x_file: x.path.to_path_buf(),
            x_array: x.member.map(str::to_string),
            x_shape,
        });
        d.push(data_error(error, y.span.clone(), "this array"));
        return None;
    }
    let per_sample: u64 = x_shape[1..].iter().map(|&n| n as u64).product();
    check_feature_count(
        per_sample,
        &format!("samples of shape {:?} ({per_sample} values)", &x_shape[1..]),
        w.value,
        facts,
        d,
    );
    match (loss, labels) {
        (Some(loss), Some(labels)) => {
            check_targets(&labels, &y.name(), y.span.clone(), loss, facts, d)
        }
        (Some(_), None) => d.push(not_read(&y.name(), y.span.clone(), "its labels")),
        (None, _) => {}
    }
    Some(None)
}

/// W0006: a file too large for `check` to read whole; `what` it did not check.
fn not_read(file: &str, span: Span, what: &str) -> Diagnostic {
    Diagnostic::warning(
        codes::NOT_READ_WHOLE,
        format!(
            "{what} were not checked: {file} is over {} MB, so `nnc check` read only its header",
            SMALL_FILE_BYTES >> 20
        ),
        span,
        "header checked only",
    )
    .with_help("`nnc run` checks the whole file as it loads it")
}

/// E0020 when a source's feature count differs from the model's input.
fn check_feature_count(
    n: u64,
    what: &str,
    value: &Value,
    facts: &ModelFacts,
    d: &mut Vec<Diagnostic>,
) {
    let Some(input) = facts.input_size else {
        return;
    };
    if n != input {
        d.push(
            Diagnostic::error(
                codes::DATA_INPUT,
                format!(
                    "the data gives {what}, but the model's input {} has {input} elements",
                    facts.input_shape
                ),
                value.span.clone(),
                format!("{n} per sample"),
            )
            .with_help(format!(
                "make the input shape hold {n} element{}, e.g. `[{n}]`",
                if n == 1 { "" } else { "s" }
            )),
        );
    }
}

/// A target column of class words against the loss and the output: one output unit
/// per class (two classes for binary cross-entropy), and no regression loss.
fn check_class_words(
    words: &[String],
    file: &str,
    span: Span,
    loss: Loss,
    facts: &ModelFacts,
    d: &mut Vec<Diagnostic>,
) {
    let n = words.len() as u64;
    let shown: Vec<String> = words.iter().take(8).map(|w| format!("`{w}`")).collect();
    let more = if words.len() > 8 { ", ..." } else { "" };
    let names = format!("{}{more}", shown.join(", "));
    let plural = if n == 1 { "" } else { "es" };
    match loss.targets() {
        Targets::Value => d.push(
            data_error(
                format!(
                    "{file}: the target column holds words ({names}), but `{}` compares the \
                     output with numbers",
                    loss.keyword()
                ),
                span,
                "a column of class names",
            )
            .with_help(format!(
                "for {n} classes use `sparse_categorical_crossentropy` and end the model with \
                 `dense({n}, activation = softmax)`"
            )),
        ),
        Targets::Binary if n != 2 => d.push(
            data_error(
                format!(
                    "{file}: the target column names {n} class{plural} ({names}); \
                     binary_crossentropy needs exactly two"
                ),
                span,
                format!("{n} class{plural}"),
            )
            .with_help(format!(
                "for {n} classes use `sparse_categorical_crossentropy` and end the model with \
                 `dense({n}, activation = softmax)`"
            )),
        ),
        Targets::Binary => {}
        Targets::Sparse | Targets::OneHot => {
            let Some(out) = facts.output_size else {
                return;
            };
            if n != out {
                d.push(
                    data_error(
                        format!(
                            "{file}: the target column names {n} class{plural} ({names}), but \
                             the model outputs {out} unit{}",
                            if out == 1 { "" } else { "s" }
                        ),
                        span,
                        format!("{n} class{plural}"),
                    )
                    .with_label(facts.output_span.clone(), format!("{out} outputs"))
                    .with_help(format!(
                        "end the model with `dense({n}, activation = softmax)`"
                    )),
                );
            }
        }
    }
}

/// The targets against the loss and the output: class indices below the output
/// width for the categorical losses, 0 or 1 for binary cross-entropy.
fn check_targets(
    targets: &[f32],
    file: &str,
    span: Span,
    loss: Loss,
    facts: &ModelFacts,
    d: &mut Vec<Diagnostic>,
) {
    let categorical = loss.targets().one_per_unit();
    if !loss.targets().are_classes() {
        return;
    }
    let Some(out) = facts.output_size else {
        return;
    };
    if categorical {
        if let Some(bad) = targets.iter().find(|v| v.fract() != 0.0 || **v < 0.0) {
            d.push(data_error(
                format!("{file}: the target {bad} is not a class index (0, 1, 2, ...)"),
                span,
                "this column",
            ));
            return;
        }
        let classes = targets.iter().fold(0.0f32, |a, &v| a.max(v)) as u64 + 1;
        if classes > out {
            d.push(
                data_error(
                    format!(
                        "{file} holds class indices up to {}, so {classes} classes, but the \
                         model outputs {out} unit{}",
                        classes - 1,
                        if out == 1 { "" } else { "s" }
                    ),
                    span,
                    format!("{classes} classes"),
                )
                .with_label(facts.output_span.clone(), format!("{out} outputs"))
                .with_help(format!(
                    "end the model with `dense({classes}, activation = softmax)`"
                )),
            );
        }
    } else if let Some(bad) = targets.iter().find(|v| **v != 0.0 && **v != 1.0) {
        d.push(
            data_error(
                format!("{file}: the target {bad} is not 0 or 1, as binary_crossentropy needs"),
                span,
                "this column",
            )
            .with_help(
                "for several classes use `sparse_categorical_crossentropy` with one output unit \
                 per class",
            ),
        );
    }
}
