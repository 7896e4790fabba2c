//! nnc: a compiler for a small declarative language of neural networks.
//!
//! The pipeline, one module per stage (see ARCHITECTURE.md):
//! `syntax` (text -> AST) -> `sema` (checked `Model`) -> `ir` (train-step graph,
//! autodiff, reference interpreter) -> `codegen` (Cranelift JIT) -> `runtime`
//! (data, epoch loop, checkpoints). `diag` carries errors out of every stage.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod cli;
pub mod codegen;
pub mod diag;
pub mod export;
pub mod ir;
pub mod lsp;
pub mod ops;
pub mod runtime;
pub mod sema;
pub mod syntax;

pub use sema::{check_file, check_source, CheckOptions, CheckOutcome};
