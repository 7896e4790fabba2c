//! Cranelift code generation: a whole IR `Graph` becomes one native function
//! `extern "C" fn(arena: *mut f32, x: *const f32, y: *const f32, step: u64)`.
//!
//! `lower` walks the graph and emits one loop nest per node; `kernels` holds the
//! loop and math emitters (polynomial `exp`/`log`); `jit` owns the Cranelift module
//! and the Rust helpers the generated code calls (GEMM, `powf`, `logf`). Large
//! products go to `nnc_kernels::sgemm` (AVX2/FMA, dense or sparse-operand paths,
//! split over helper threads), or to the `gemm` crate where AVX2 is missing.

mod activation;
mod conv;
mod jit;
mod kernels;
mod lower;

pub use jit::{clif_text, compile, compile_profiled, set_threads, threads, Compiled};

#[cfg(test)]
mod tests;
