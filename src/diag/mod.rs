//! Diagnostics: the one way errors leave the compiler.
//!
//! Every stage returns `Diagnostic`s as plain data; they are rendered last
//! (ariadne for people, JSON for tools), so no stage knows how they look.

pub mod codes;

/// A byte range of the source text: where a diagnostic, a token or an AST node is.
pub type Span = std::ops::Range<usize>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub span: Span,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// `E0001`... for errors, `W0001`... for lints; `nnc explain CODE` describes each.
    pub code: &'static str,
    pub message: String,
    /// The primary span, with its own label text.
    pub span: Span,
    pub label: String,
    /// Secondary labels, e.g. where an offending shape came from.
    pub labels: Vec<Label>,
    /// The fix, where one exists.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(
        code: &'static str,
        message: impl Into<String>,
        span: Span,
        label: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            span,
            label: label.into(),
            labels: vec![],
            help: None,
        }
    }

    pub fn warning(
        code: &'static str,
        message: impl Into<String>,
        span: Span,
        label: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, message, span, label)
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn with_label(mut self, span: Span, message: impl Into<String>) -> Self {
        self.labels.push(Label {
            span,
            message: message.into(),
        });
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// 1-based (line, column) of a byte offset; the column counts characters.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char(src, offset);
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, before[line_start..].chars().count() + 1)
}

/// Renders diagnostics as ariadne reports. `file` is the name shown to the user;
/// `color` should be true only when writing to a terminal. Trailing spaces are
/// trimmed so that the text is stable for golden files.
pub fn render(diags: &[Diagnostic], file: &str, src: &str, color: bool) -> String {
    use ariadne::{CharSet, Config, IndexType, Report, ReportKind, Source};
    let mut out = String::new();
    let source = Source::from(src);
    for d in diags {
        let kind = match d.severity {
            Severity::Error => ReportKind::Error,
            Severity::Warning => ReportKind::Warning,
        };
        let clamp = |s: &Span| {
            let start = s.start.min(src.len());
            start..s.end.clamp(start, src.len())
        };
        let mut labels: Vec<(Span, &str)> = vec![(clamp(&d.span), &d.label)];
        labels.extend(
            d.labels
                .iter()
                .map(|l| (clamp(&l.span), l.message.as_str())),
        );
        // ariadne starts a new snippet whenever a label lies above the previous one,
        // so labels go in in source order.
        labels.sort_by_key(|(s, _)| (s.start, s.end));
        if labels
            .iter()
            .any(|(span, _)| line_around(src, span.start).len() > MAX_QUOTED_LINE)
        {
            out.push_str(&render_excerpt(d, kind_name(kind), file, src, &labels));
            continue;
        }
        let mut report = Report::build(kind, (file, clamp(&d.span)))
            .with_config(
                Config::default()
                    .with_color(color)
                    .with_char_set(CharSet::Ascii)
                    .with_index_type(IndexType::Byte),
            )
            .with_code(d.code)
            .with_message(&d.message);
        for (span, msg) in labels {
            report = report.with_label(ariadne::Label::new((file, span)).with_message(msg));
        }
        if let Some(h) = &d.help {
            report = report.with_help(h);
        }
        let mut buf = Vec::new();
        // Writing into a Vec cannot fail; a failure would only lose this report's text.
        if report.finish().write((file, &source), &mut buf).is_ok() {
            for line in String::from_utf8_lossy(&buf).lines() {
                out.push_str(line.trim_end());
                out.push('\n');
            }
        }
    }
    out
}

/// Source lines longer than this are not quoted whole: a generated or minified file
/// would otherwise repeat its whole line (megabytes) in every diagnostic.
const MAX_QUOTED_LINE: usize = 240;
/// Characters shown on each side of a span on such a line.
const EXCERPT_CONTEXT: usize = 40;

fn kind_name(kind: ariadne::ReportKind) -> &'static str {
    match kind {
        ariadne::ReportKind::Warning => "Warning",
        _ => "Error",
    }
}

/// The line of `src` holding byte `offset`, without its line break.
fn line_around(src: &str, offset: usize) -> &str {
    let offset = floor_char(src, offset);
    let start = src[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = src[offset..].find('\n').map_or(src.len(), |i| offset + i);
    &src[start..end]
}

fn floor_char(src: &str, offset: usize) -> usize {
    let mut offset = offset.min(src.len());
    while !src.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// A diagnostic whose labels lie on an over-long line, in ariadne's layout but
/// quoting only the part of the line around each label.
fn render_excerpt(
    d: &Diagnostic,
    kind: &str,
    file: &str,
    src: &str,
    labels: &[(Span, &str)],
) -> String {
    let (line, col) = line_col(src, d.span.start);
    let width = line.to_string().len().max(2);
    let gutter = " ".repeat(width + 1);
    let mut out = format!("[{}] {kind}: {}\n", d.code, d.message);
    out += &format!("{gutter},-[ {file}:{line}:{col} ]\n{gutter}|\n");
    for (span, message) in labels {
        let (line, _) = line_col(src, span.start);
        let text = line_around(src, span.start);
        let start = floor_char(src, span.start);
        let line_start = src[..start].rfind('\n').map_or(0, |i| i + 1);
        let at = start - line_start;
        let from = floor_char(text, at.saturating_sub(EXCERPT_CONTEXT));
        let span_end = floor_char(
            text,
            (span.end.max(span.start + 1) - line_start).min(text.len()),
        );
        let to = floor_char(text, (span_end + EXCERPT_CONTEXT).min(text.len()));
        let (head, tail) = (
            if from > 0 { "..." } else { "" },
            if to < text.len() { "..." } else { "" },
        );
        let caret_at = head.len() + text[from..at].chars().count();
        let carets = text[at..span_end.max(at)].chars().count().max(1);
        out += &format!("{line:>width$} | {head}{}{tail}\n", &text[from..to]);
        out += &format!(
            "{gutter}| {}{} {message}\n",
            " ".repeat(caret_at),
            "^".repeat(carets)
        );
    }
    out += &format!("{gutter}|\n");
    if let Some(help) = &d.help {
        out += &format!("{gutter}| Help: {help}\n");
    }
    out += &format!("{}'\n", "-".repeat(width + 1));
    out
}
