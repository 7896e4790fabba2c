//! The train-step IR: graph, autodiff, optimizers, memory layout and the reference
//! interpreter (the oracle every JIT result is tested against).

pub mod graph;
pub mod layout;
