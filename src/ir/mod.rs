//! The train-step IR: graph, autodiff, optimizers, memory layout and the reference
//! interpreter (the oracle every JIT result is tested against).

pub mod autodiff;
pub mod build;
pub mod error;
pub mod graph;
pub mod init;
pub mod interp;
pub mod layout;
pub mod loss;
pub mod merge;
pub mod op;
pub mod optim;
pub mod print;
pub mod testing;
mod verify;

pub use build::{evaluate, predict, train_step};
pub use error::CompileError;

#[cfg(test)]
mod tests;
