//! Diagnostics: the one way errors leave the compiler.
//!
//! Every stage returns `Diagnostic`s as plain data; they are rendered last
//! (ariadne for people, JSON for tools), so no stage knows how they look.

use crate::sema::model::Span;

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
