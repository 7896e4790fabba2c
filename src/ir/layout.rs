//! Memory layout: every arena tensor gets a fixed offset in one f32 arena.
//!
//! Persistent tensors come first, in graph order, so graphs of one model built for
//! different batch sizes agree on where the weights and optimizer slots live; the
//! input and target are read through their own pointers and have no offset.

use super::graph::{Graph, Role, TensorId};

/// Offsets are in f32 elements and multiples of 4, so every tensor starts on a
/// 16-byte boundary when the arena does.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub offsets: Vec<Option<usize>>,
    /// Elements taken by persistent tensors (a prefix of the arena).
    pub persistent_len: usize,
    /// Elements the whole arena needs.
    pub len: usize,
}

const ALIGN: usize = 4;

fn round_up(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

impl Layout {
    pub fn new(graph: &Graph) -> Layout {
        let mut offsets = vec![None; graph.tensors.len()];
        let mut next = 0;
        let mut place = |persistent: bool, next: &mut usize| {
            for (id, t) in graph.tensors.iter().enumerate() {
                let in_arena = !matches!(t.role, Role::Input | Role::Target);
                if in_arena && t.role.is_persistent() == persistent {
                    offsets[id] = Some(*next);
                    *next += round_up(t.len().max(1));
                }
            }
        };
        place(true, &mut next);
        let persistent_len = next;
        place(false, &mut next);
        Layout {
            offsets,
            persistent_len,
            len: next,
        }
    }

    /// The arena range of a tensor, or `None` for the input and target.
    pub fn range(&self, graph: &Graph, id: TensorId) -> Option<std::ops::Range<usize>> {
        self.offsets[id].map(|o| o..o + graph.tensors[id].len())
    }
}
