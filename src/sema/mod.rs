//! Semantic checking: names, arguments, shapes, parameter counts, lints.

pub mod model;
