//! Why a run, an evaluation or a prediction stopped.
//!
//! The front end reports source mistakes as diagnostics; everything after it (reading
//! data, compiling, training) ends in a `RunError`. A checked `Model` always builds and
//! compiles, so a failure there is nnc's fault, not the user's: it is kept apart so
//! the command line can say so and exit with its own code.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunError {
    /// Something the user can fix (a data file, a flag, a weights file, memory): the
    /// message says what and how.
    User(String),
    /// A checked model that failed to build or compile, or a compiled function that
    /// refused its arguments: a bug in nnc.
    Internal(String),
}

impl RunError {
    /// For errors from the IR builder and codegen, which a checked model never meets.
    pub fn internal(message: impl Into<String>) -> RunError {
        RunError::Internal(message.into())
    }

    pub fn message(&self) -> &str {
        match self {
            RunError::User(m) | RunError::Internal(m) => m,
        }
    }

    pub fn is_internal(&self) -> bool {
        matches!(self, RunError::Internal(_))
    }
}

/// Data, file and flag errors are plain messages for the user.
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
