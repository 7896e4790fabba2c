//! The kernels behind nnc's generated code (x86-64 with AVX2 and FMA): the matrix
//! product `sgemm`, the helper threads that split a product or any other work of
//! independent parts (`parallel`, `run_parts`), and Adam's update of large tensors
//! (`update`).
//!
//! A crate of its own so that it is built optimized even in the dev profile (see
//! the workspace's Cargo.toml): unoptimized SIMD intrinsics run hundreds of times
//! slower, and `cargo test` trains real networks through these kernels.
//!
//! Every `unsafe` block says why it is sound in a `// SAFETY:` comment (where the
//! bounds it relies on are established, which target features are checked where).

#![deny(clippy::undocumented_unsafe_blocks, unsafe_op_in_unsafe_fn)]

/// Products of at least this many multiply-adds are split across threads; smaller
/// ones cost more in synchronisation than the split saves.
pub const PARALLEL_MIN_MACS: usize = 1 << 18;

#[cfg(target_arch = "x86_64")]
mod parallel;
#[cfg(target_arch = "x86_64")]
pub use parallel::{run_parts, run_parts_on};
#[cfg(target_arch = "x86_64")]
pub mod sgemm;
#[cfg(target_arch = "x86_64")]
pub mod update;
