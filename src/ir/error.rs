//! Why a checked model's train step could not be built, verified or compiled. A
//! checked model always builds and compiles, so each of these is a bug in nnc (or a
//! machine the JIT does not support); the runtime turns them into its internal
//! errors, and `Display` gives the text the report shows.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompileError {
    /// The IR builder refused the model (`ir::build`): what it could not build, by
    /// the layer's name where one is at fault.
    Build(String),
    /// `Graph::verify` refused the graph or its layout: the node at fault, if one is.
    Verify { node: Option<NodeAt>, what: String },
    /// Codegen could not lower a node to Cranelift IR.
    Lower { node: Option<NodeAt>, what: String },
    /// Cranelift refused a setting, a declaration or the code generated.
    Cranelift(String),
    /// The JIT does not generate code for this machine.
    Unsupported(String),
    /// A compiled function called with buffers shorter than it was compiled for:
    /// the (given, needed) floats of the arena, the input and the target.
    Buffers {
        arena: (usize, usize),
        x: (usize, usize),
        y: (usize, usize),
    },
}

/// A node of the graph: its index and its op as printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAt {
    pub index: usize,
    pub op: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompileError::Build(what)
            | CompileError::Cranelift(what)
            | CompileError::Unsupported(what) => f.write_str(what),
            CompileError::Verify { node, what } | CompileError::Lower { node, what } => {
                match node {
                    Some(NodeAt { index, op }) => write!(f, "node {index} ({op}): {what}"),
                    None => f.write_str(what),
                }
            }
            CompileError::Buffers { arena, x, y } => write!(
                f,
                "buffers too small: arena {} (needs {}), x {} (needs {}), y {} (needs {})",
                arena.0, arena.1, x.0, x.1, y.0, y.1
            ),
        }
    }
}

impl std::error::Error for CompileError {}
