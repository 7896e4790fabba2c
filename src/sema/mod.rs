//! Semantic checking: names, arguments, shapes, parameter counts, lints.
//!
//! `check_file` / `check_source` run the whole front end and return a
//! `CheckOutcome`: every diagnostic, a summary, and the checked `Model` when
//! there are no errors.

pub mod args;
pub mod check;
pub mod codes;
pub mod lint;
pub mod model;
pub mod names;
pub mod summary;
pub mod train;

use std::path::Path;

use crate::diag::{self, Diagnostic};
use crate::syntax::{self, ast};
use model::Model;
use summary::Summary;

/// A model, or a training step, larger than this is refused (E0021).
pub const MEMORY_LIMIT_BYTES: u128 = 16 << 30;

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
            &input_shape,
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

/// E0021: refuse models whose parameters or training step cannot fit in memory.
fn check_memory(s: &Summary, checked: &check::CheckedModel, d: &mut Vec<Diagnostic>) {
    let m = &s.memory;
    let (what, bytes) = if m.parameters > MEMORY_LIMIT_BYTES {
        ("its parameters alone take", m.parameters)
    } else if m.total > MEMORY_LIMIT_BYTES {
        ("one training step at batch size", m.total)
    } else {
        return;
    };
    let what = if what.ends_with("size") {
        format!("{what} {} takes", m.batch_size)
    } else {
        what.to_string()
    };
    // Point at the layer with the most parameters, or the largest output.
    let biggest = checked.layers.iter().zip(&s.layers).max_by_key(|(l, r)| {
        (r.params as u128).max(
            l.output_shape
                .iter()
                .fold(1u128, |a, &x| a.saturating_mul(x as u128)),
        )
    });
    let mut diag = Diagnostic::error(
        codes::TOO_BIG,
        format!(
            "model `{}` is too large: {what} {bytes} bytes ({}), more than the {} limit",
            s.model,
            summary::human_bytes(bytes),
            summary::human_bytes(MEMORY_LIMIT_BYTES)
        ),
        checked.name_span.clone(),
        "this model",
    )
    .with_help(
        "use smaller layers, pooling or strides before dense layers, or a smaller batch size",
    );
    if let Some((l, r)) = biggest {
        diag = diag.with_label(
            l.span.clone(),
            format!(
                "`{}`: {} parameters, output {:?}",
                l.name,
                summary::thousands(r.params as u128),
                l.output_shape
            ),
        );
    }
    d.push(diag);
}
