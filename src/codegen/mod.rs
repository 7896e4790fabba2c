//! Cranelift code generation: a whole IR `Graph` becomes one native function
//! `extern "C" fn(arena: *mut f32, x: *const f32, y: *const f32, step: u64)` (with,
//! for each large node split over the batch, a function for one part of it that the
//! step runs on its threads).
//!
//! `lower` walks the graph and sends each node to the file of its family
//! (`elementwise`, `matmul`, `softmax`, `loss`, `optimizer`, `conv`, `norm`,
//! `gather`, `merge`;
//! `activation` holds the activations' native code); `kernels` holds the loop and
//! math emitters (polynomial `exp`/`log`); `helpers` the Rust functions generated code
//! calls (GEMM, Adam's vector update, `powf`, `logf`, the profiler) and `abi` their
//! signatures, declared once; `jit` owns the Cranelift module and the compiled
//! function. Large products go to `nnc_kernels::sgemm` (AVX2/FMA, dense or
//! sparse-operand paths, split over helper threads), or to the `gemm` crate where
//! AVX2 is missing.

mod abi;
mod activation;
mod conv;
mod elementwise;
mod gather;
mod helpers;
mod jit;
mod kernels;
mod loss;
mod lower;
mod matmul;
mod merge;
mod norm;
mod optimizer;
mod softmax;

pub use helpers::{set_threads, threads};
pub use jit::{clif_text, compile, compile_profiled, compile_segments, Compiled};

#[cfg(test)]
mod tests;
