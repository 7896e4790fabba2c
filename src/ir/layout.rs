//! Memory layout: every arena tensor gets a fixed offset in one f32 arena.
//!
//! Persistent tensors come first, in graph order, so graphs of one model built for
//! different batch sizes agree on where the weights and optimizer slots live; the
//! input and target are read through their own pointers and have no offset.

use super::graph::{Graph, Op, Role, TensorId};

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
    /// Persistent tensors first, in graph order; then every temporary in its own
    /// slot, so any tensor can be inspected after a step (what tests and the
    /// interpreter's users want).
    pub fn new(graph: &Graph) -> Layout {
        Layout::build(graph, false)
    }

    /// The same persistent prefix as `new`, with temporaries sharing memory when
    /// their lifetimes do not overlap (see `plan_temporaries`): the layout training
    /// runs on. After a step only the persistent tensors and the temporaries no node
    /// reads (the loss, the output) are guaranteed to hold their values.
    pub fn planned(graph: &Graph) -> Layout {
        Layout::build(graph, true)
    }

    fn build(graph: &Graph, reuse: bool) -> Layout {
        let mut offsets = vec![None; graph.tensors.len()];
        let mut next = 0;
        for (id, t) in graph.tensors.iter().enumerate() {
            if t.role.is_persistent() {
                offsets[id] = Some(next);
                next += round_up(t.len().max(1));
            }
        }
        let persistent_len = next;
        if reuse {
            next += plan_temporaries(graph, persistent_len, &mut offsets);
        } else {
            for (id, t) in graph.tensors.iter().enumerate() {
                if is_temporary(&t.role) {
                    offsets[id] = Some(next);
                    next += round_up(t.len().max(1));
                }
            }
        }
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

/// In the arena but not persistent: rewritten by every step.
fn is_temporary(role: &Role) -> bool {
    !role.is_persistent() && !matches!(role, Role::Input | Role::Target)
}

/// Places every temporary after `base` so that two temporaries share memory only
/// when their lifetimes do not overlap, and returns the elements the temporaries take.
///
/// A temporary lives from the node that writes it to the last node that reads it.
/// The output, the loss, and one that no node reads (a gradient a test inspects)
/// are results of the step and live to the end, so they can be read afterwards.
/// A node's output never shares memory with its inputs, because both are live at
/// that node. Placement is greedy by size (largest first), each tensor at the
/// lowest offset clear of the live-overlapping tensors already placed; the result
/// depends only on the graph, so every run of one graph uses the same layout.
fn plan_temporaries(graph: &Graph, base: usize, offsets: &mut [Option<usize>]) -> usize {
    let end = graph.nodes.len();
    let temps: Vec<usize> = graph
        .tensors
        .iter()
        .enumerate()
        .filter(|(_, t)| is_temporary(&t.role))
        .map(|(id, _)| id)
        .collect();
    // (first node, last node) of each tensor's life; unwritten ones live throughout.
    let mut born = vec![None::<usize>; graph.tensors.len()];
    let mut last_read = vec![None::<usize>; graph.tensors.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        for &t in &node.inputs {
            if let Some(slot) = last_read.get_mut(t) {
                *slot = Some(i);
            }
        }
        if let Some(slot) = born.get_mut(node.output) {
            slot.get_or_insert(i);
        }
    }
    let life = |id: usize| -> (usize, usize) {
        let from = born[id].unwrap_or(0);
        // The output and the loss are read after the step (metrics, reports) even
        // when a node reads them too (an unfused loss reads the output).
        let result = id == graph.output || Some(id) == graph.loss;
        let to = match last_read[id] {
            Some(r) if born[id].is_some() && !result => r.max(from),
            _ => end,
        };
        (from, to)
    };
    // A reshape from one temporary to another only renames the elements: its output
    // shares its input's memory (and `codegen` emits no copy). Such a chain is
    // placed once, by its first tensor, living as long as its longest-lived member.
    let mut group: Vec<usize> = (0..graph.tensors.len()).collect();
    for node in &graph.nodes {
        let (out, input) = (node.output, node.inputs.first().copied());
        if let (Op::Reshape, Some(input)) = (&node.op, input) {
            let temporary = |t: usize| graph.tensors.get(t).is_some_and(|t| is_temporary(&t.role));
            if temporary(input) && temporary(out) && born[out] > born[input] {
                group[out] = group[input];
            }
        }
    }
    let mut group_life: Vec<Option<(usize, usize)>> = vec![None; graph.tensors.len()];
    for &id in &temps {
        let (from, to) = life(id);
        let g = &mut group_life[group[id]];
        *g = Some(g.map_or((from, to), |(f, t)| (f.min(from), t.max(to))));
    }
    let mut order: Vec<usize> = temps
        .iter()
        .copied()
        .filter(|&id| group[id] == id)
        .collect();
    order.sort_by_key(|&id| (std::cmp::Reverse(graph.tensors[id].len()), id));
    // (offset from base, size, first node, last node) of the placed tensors.
    let mut placed: Vec<(usize, usize, usize, usize)> = Vec::with_capacity(order.len());
    let mut total = 0;
    for id in order {
        let size = round_up(graph.tensors[id].len().max(1));
        let (from, to) = group_life[id].unwrap_or_else(|| life(id));
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&(_, _, f, t)| f <= to && from <= t)
            .map(|&(o, s, _, _)| (o, s))
            .collect();
        busy.sort_unstable();
        let mut at = 0;
        for (o, s) in busy {
            if o >= at + size {
                break;
            }
            at = at.max(o + s);
        }
        offsets[id] = Some(base + at);
        placed.push((at, size, from, to));
        total = total.max(at + size);
    }
    for &id in &temps {
        offsets[id] = offsets[group[id]];
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::build::train_step;
    use crate::ir::testing::{conv2d, dense, graph, sequential};
    use crate::sema::model::{Activation, LayerKind, Loss, Merge, Optimizer, Padding, Source};

    fn convnet() -> crate::sema::model::Model {
        let relu = Activation::Relu;
        sequential(
            &[8, 8, 1],
            vec![
                conv2d(4, [3, 3], [1, 1], Padding::Valid, relu),
                conv2d(4, [3, 3], [1, 1], Padding::Same, relu),
                LayerKind::Flatten,
                dense(16, relu),
                dense(3, Activation::Softmax),
            ],
            Loss::SparseCategoricalCrossentropy,
            Optimizer::Adam {
                learning_rate: 0.01,
                beta_1: 0.9,
                beta_2: 0.999,
                epsilon: 1e-7,
            },
        )
    }

    /// A residual block: `skip` (dense) is read by the `add` three layers later.
    fn residual() -> crate::sema::model::Model {
        let relu = Activation::Relu;
        graph(
            &[6],
            vec![
                (dense(6, relu), vec![Source::Input]),
                (dense(6, relu), vec![Source::Layer(0)]),
                (dense(6, Activation::Tanh), vec![Source::Layer(1)]),
                (
                    LayerKind::Merge(Merge::Add),
                    vec![Source::Layer(0), Source::Layer(2)],
                ),
                (dense(2, Activation::Softmax), vec![Source::Layer(3)]),
            ],
            Loss::SparseCategoricalCrossentropy,
            Optimizer::Adam {
                learning_rate: 0.01,
                beta_1: 0.9,
                beta_2: 0.999,
                epsilon: 1e-7,
            },
        )
    }

    /// Every node's index range in which `id` must keep its value: from its writer
    /// to its last reader, or to the end when nothing reads it.
    fn live(g: &Graph, id: usize) -> (usize, usize) {
        let from = g.nodes.iter().position(|n| n.output == id).unwrap_or(0);
        let to = g
            .nodes
            .iter()
            .rposition(|n| n.inputs.contains(&id))
            .unwrap_or(g.nodes.len());
        (from, to.max(from))
    }

    /// Whether `a` and `b` name the same elements through a chain of reshapes.
    fn renamed(g: &Graph, a: usize, b: usize) -> bool {
        let source = |mut t: usize| {
            while let Some(n) = g
                .nodes
                .iter()
                .find(|n| n.output == t && matches!(n.op, Op::Reshape))
            {
                t = n.inputs[0];
            }
            t
        };
        source(a) == source(b)
    }

    #[test]
    fn temporaries_share_memory_only_when_their_lives_are_disjoint() {
        for model in [convnet(), residual()] {
            lives_are_disjoint(&model);
        }
    }

    #[test]
    fn a_tensor_a_later_merge_reads_stays_live_until_then() {
        let g = train_step(&residual(), 4).unwrap();
        let l = Layout::planned(&g);
        let skip = g
            .tensors
            .iter()
            .position(|t| t.name == "dense.out")
            .unwrap();
        let written = g.nodes.iter().position(|n| n.output == skip).unwrap();
        let merged = g
            .nodes
            .iter()
            .position(|n| n.op == Op::Add && n.inputs.contains(&skip))
            .unwrap();
        // The branch between them: two dense layers, each a product, a bias and an
        // activation.
        assert!(merged - written >= 6, "{written}..{merged}");
        let r = l.range(&g, skip).unwrap();
        for node in &g.nodes[written + 1..merged] {
            let o = l.range(&g, node.output).unwrap();
            assert!(
                o.end <= r.start || r.end <= o.start,
                "`{}` overwrites the skip connection before the add reads it",
                g.tensors[node.output].name
            );
        }
    }

    fn lives_are_disjoint(model: &crate::sema::model::Model) {
        let g = train_step(model, 5).unwrap();
        let l = Layout::planned(&g);
        let ranged: Vec<(usize, std::ops::Range<usize>)> = (0..g.tensors.len())
            .filter_map(|id| l.range(&g, id).map(|r| (id, r)))
            .collect();
        let (mut shared, mut renames) = (0, 0);
        for (i, (a, ra)) in ranged.iter().enumerate() {
            assert!(ra.end <= l.len);
            for (b, rb) in &ranged[i + 1..] {
                if ra.start < rb.end && rb.start < ra.end && !ra.is_empty() && !rb.is_empty() {
                    let persistent = |t: usize| g.tensors[t].role.is_persistent();
                    assert!(!persistent(*a) && !persistent(*b), "{a} and {b} overlap");
                    let ((fa, ta), (fb, tb)) = (live(&g, *a), live(&g, *b));
                    if renamed(&g, *a, *b) {
                        assert_eq!(ra, rb, "{a} and {b}: a reshape shares all of its input");
                        renames += 1;
                    } else {
                        assert!(ta < fb || tb < fa, "{a} and {b} overlap while both live");
                        shared += 1;
                    }
                }
            }
        }
        assert!(shared > 0, "no temporary was reused");
        // Flatten, and the conv kernels' matrix views in the backward pass.
        let reshapes = g.nodes.iter().any(|n| n.op == Op::Reshape);
        assert!(
            !reshapes || renames > 0,
            "no reshape shares its input's memory"
        );
        let temps: usize = (0..g.tensors.len())
            .filter(|&id| l.offsets[id].is_some() && !g.tensors[id].role.is_persistent())
            .map(|id| round_up(g.tensors[id].len().max(1)))
            .sum();
        assert!(l.len - l.persistent_len < temps);
    }

    #[test]
    fn planned_keeps_the_persistent_prefix_of_new() {
        for batch in [1, 4, 9] {
            let g = train_step(&convnet(), batch).unwrap();
            let (plain, planned) = (Layout::new(&g), Layout::planned(&g));
            assert_eq!(plain.persistent_len, planned.persistent_len);
            for (id, t) in g.tensors.iter().enumerate() {
                if t.role.is_persistent() || !is_temporary(&t.role) {
                    assert_eq!(plain.offsets[id], planned.offsets[id]);
                }
            }
            assert!(planned.len < plain.len);
        }
    }

    #[test]
    fn the_loss_and_output_survive_the_step() {
        let g = train_step(&convnet(), 3).unwrap();
        let l = Layout::planned(&g);
        for id in [g.output, g.loss.unwrap()] {
            let r = l.range(&g, id).unwrap();
            for (other, node) in g.nodes.iter().enumerate() {
                let o = node.output;
                if o == id || other < live(&g, id).0 {
                    continue;
                }
                if let Some(ro) = l.range(&g, o) {
                    assert!(
                        ro.end <= r.start || r.end <= ro.start,
                        "node {other} clobbers {id}"
                    );
                }
            }
        }
    }
}
