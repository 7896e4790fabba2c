//! Syntax: `.nn` text to an AST whose every node keeps its byte span.

pub mod ast;
pub mod fmt;
pub mod lex;
pub mod parse;

pub use parse::{parse, MAX_NESTING, MAX_SOURCE_BYTES};
