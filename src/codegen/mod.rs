//! codegen stage
