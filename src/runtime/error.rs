//! Why a run, an evaluation or a prediction stopped.
//!
//! The front end reports source mistakes as diagnostics; everything after it (reading
//! data, compiling, training) ends in a `RunError`. A checked `Model` always builds and
//! compiles, so a failure there is nnc's fault, not the user's: it is kept apart so
//! the command line can say so and exit with its own code.

use std::fmt;

use crate::ir::CompileError;
use crate::runtime::data::DataError;

#[derive(Debug, Clone, PartialEq)]
pub enum RunError {
    /// Something the user can fix (a flag, a weights file, memory): the message says
    /// what and how.
    User(String),
    /// A data source that cannot be read or does not fit the model: a user error too,
    /// kept structured so the command line can point at the file, row and column.
    /// `message` is the error rendered once (by `From<DataError>`), so that `message()`
    /// lends text for every variant alike.
    Data {
        error: Box<DataError>,
        message: String,
    },
    /// A checked model that failed to build or compile, or a compiled function that
    /// refused its arguments: a bug in nnc.
    Internal(String),
}

impl RunError {
    /// For errors from the IR builder and codegen (a `CompileError`), which a checked
    /// model never meets, and for other broken promises of nnc's own code.
    pub fn internal(error: impl fmt::Display) -> RunError {
        RunError::Internal(error.to_string())
    }

    pub fn message(&self) -> &str {
        match self {
            RunError::User(m) | RunError::Internal(m) | RunError::Data { message: m, .. } => m,
        }
    }

    pub fn is_internal(&self) -> bool {
        matches!(self, RunError::Internal(_))
    }
}

impl From<DataError> for RunError {
    fn from(error: DataError) -> RunError {
        RunError::Data {
            message: error.to_string(),
            error: Box::new(error),
        }
    }
}

/// A checked model that does not build or compile is nnc's bug.
impl From<CompileError> for RunError {
    fn from(error: CompileError) -> RunError {
        RunError::internal(error)
    }
}

/// File and flag errors are plain messages for the user.
impl From<String> for RunError {
    fn from(message: String) -> RunError {
        RunError::User(message)
    }
}

impl From<&str> for RunError {
    fn from(message: &str) -> RunError {
        RunError::User(message.to_string())
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}
