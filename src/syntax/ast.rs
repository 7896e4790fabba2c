//! The abstract syntax tree. Names stay plain identifiers here; `sema` decides
//! what they mean, so that it can suggest the nearest known name.

use crate::diag::Span;

#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct File {
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Model(ModelBlock),
    Train(TrainBlock),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelBlock {
    /// The `model` keyword.
    pub keyword: Span,
    pub name: Ident,
    pub stmts: Vec<Stmt>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Stmt {
    Input {
        name: Ident,
        shape: Value,
        span: Span,
    },
    Layer {
        name: Option<Ident>,
        call: Call,
        /// `(INPUT)` after the call: the statement the layer reads, when it is not
        /// the previous one.
        input: Option<Ident>,
        span: Span,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrainBlock {
    pub keyword: Span,
    pub settings: Vec<Setting>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub key: Ident,
    pub value: Value,
    pub span: Span,
}

/// `name` or `name(args)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub name: Ident,
    pub args: Option<Args>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    pub items: Vec<Arg>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Arg {
    pub key: Option<Ident>,
    pub value: Value,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub kind: ValueKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ValueKind {
    /// The literal text; `sema` converts it so that an overflow gets a span.
    Number(String),
    Str(String),
    Bool(bool),
    List(Vec<Value>),
    Call(Call),
}

impl ValueKind {
    /// How a value is described in "expected X, found Y" messages.
    pub fn describe(&self) -> &'static str {
        match self {
            ValueKind::Number(t) if is_float_text(t) => "a float",
            ValueKind::Number(_) => "an integer",
            ValueKind::Str(_) => "a string",
            ValueKind::Bool(_) => "a boolean",
            ValueKind::List(_) => "a list",
            ValueKind::Call(c) if c.args.is_some() => "a call",
            ValueKind::Call(_) => "a name",
        }
    }
}

/// A number literal is a float when it has a fraction or an exponent.
pub fn is_float_text(text: &str) -> bool {
    text.contains(['.', 'e', 'E'])
}
