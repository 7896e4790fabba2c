//! The functions of the language that every stage shares, each defined once with its
//! reference arithmetic: activations (`activation.rs`), the float type they are
//! generic over (`real.rs`), and the mixing function of every stateless random draw
//! (`random.rs`). Depends on nothing else in the crate, so `sema` names
//! them, `ir` runs them and `codegen` lowers them from one definition.

pub mod activation;
pub mod random;
pub mod real;

pub use activation::{sigmoid, softplus, Activation};
pub use real::Real;
