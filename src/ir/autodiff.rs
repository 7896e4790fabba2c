//! Reverse-mode differentiation of a forward graph: one vector-Jacobian rule per op
//! (`vjp`, a single match), applied to the nodes in reverse order; a tensor read by
//! several nodes gets the sum of their contributions (`Op::Add`).

use super::build::{push, push_reshape};
use super::graph::{Graph, Node, Op, TensorId};

/// The gradient flowing into a node's output.
#[derive(Clone, Copy)]
enum Seed {
    /// d loss / d loss: the root, where `Loss` nodes start.
    Unit,
    Tensor(TensorId),
}

/// Appends the nodes computing d`loss`/d`w` for every `w` in `wrt` (which must all
/// influence `loss`) and returns the gradient tensors in `wrt`'s order. Only tensors
/// that depend on some `w` get gradients, so the input's is never computed.
pub fn gradients(g: &mut Graph, loss: TensorId, wrt: &[TensorId]) -> Result<Vec<TensorId>, String> {
    let forward = g.nodes.len();
    let mut needs = vec![false; g.tensors.len()];
    for &w in wrt {
        needs[w] = true;
    }
    for node in &g.nodes {
        if node.inputs.iter().any(|&i| needs[i]) {
            needs[node.output] = true;
        }
    }
    let mut grads: Vec<Option<TensorId>> = vec![None; g.tensors.len()];
    for index in (0..forward).rev() {
        let node = g.nodes[index].clone();
        if !needs[node.output] {
            continue;
        }
        let seed = match grads[node.output] {
            _ if node.output == loss => Seed::Unit,
            Some(t) => Seed::Tensor(t),
            None => continue,
        };
        for (input, d) in vjp(g, &node, seed, &needs)? {
            let total = match grads[input] {
                Some(prev) => {
                    let name = g.tensors[d].name.clone();
                    push(g, Op::Add, vec![prev, d], name)?
                }
                None => d,
            };
            grads.resize(g.tensors.len(), None);
            grads[input] = Some(total);
        }
        needs.resize(g.tensors.len(), false);
    }
    wrt.iter()
        .map(|&w| {
            grads[w].ok_or_else(|| format!("`{}` does not influence the loss", g.tensors[w].name))
        })
        .collect()
}

/// The contributions `(input, gradient)` of one node to the gradients of those of its
/// inputs that need one, given the gradient of its output.
fn vjp(
    g: &mut Graph,
    node: &Node,
    seed: Seed,
    needs: &[bool],
) -> Result<Vec<(TensorId, TensorId)>, String> {
    let ins = &node.inputs;
    let want = |i: usize| needs[ins[i]];
    let d = |g: &Graph, i: usize| format!("d({})", g.tensors[ins[i]].name);
    let mut out = vec![];
    match (node.op.clone(), seed) {
        (Op::Loss(kind), Seed::Unit) => {
            if want(0) {
                let name = d(g, 0);
                out.push((
                    ins[0],
                    push(g, Op::LossGrad(kind), vec![ins[0], ins[1]], name)?,
                ));
            }
        }
        (op, Seed::Unit) | (op @ Op::Loss(_), _) => {
            return Err(format!(
                "{op:?}: the loss must be the root of differentiation"
            ))
        }
        (Op::MatMul { trans_a, trans_b }, Seed::Tensor(dy)) => {
            // With A' = op(A), B' = op(B): dA' = dY B'^T and dB' = A'^T dY, stored
            // transposed again when the operand is.
            let (a, b) = (ins[0], ins[1]);
            if want(0) {
                let (op, inputs) = match (trans_a, trans_b) {
                    (false, false) => ((false, true), vec![dy, b]),
                    (false, true) => ((false, false), vec![dy, b]),
                    (true, false) => ((false, true), vec![b, dy]),
                    (true, true) => ((true, true), vec![b, dy]),
                };
                let name = d(g, 0);
                let op = Op::MatMul {
                    trans_a: op.0,
                    trans_b: op.1,
                };
                out.push((a, push(g, op, inputs, name)?));
            }
            if want(1) {
                let (op, inputs) = match (trans_a, trans_b) {
                    (false, false) => ((true, false), vec![a, dy]),
                    (true, false) => ((false, false), vec![a, dy]),
                    (false, true) => ((true, false), vec![dy, a]),
                    (true, true) => ((true, true), vec![dy, a]),
                };
                let name = d(g, 1);
                let op = Op::MatMul {
                    trans_a: op.0,
                    trans_b: op.1,
                };
                out.push((b, push(g, op, inputs, name)?));
            }
        }
        (Op::AddBias, Seed::Tensor(dy)) => {
            if want(0) {
                out.push((ins[0], dy));
            }
            if want(1) {
                let name = d(g, 1);
                out.push((ins[1], push(g, Op::SumRows, vec![dy], name)?));
            }
        }
        (Op::Add, Seed::Tensor(dy)) => {
            for i in 0..2 {
                if want(i) {
                    out.push((ins[i], dy));
                }
            }
        }
        (Op::Activate(a), Seed::Tensor(dy)) => {
            if want(0) {
                let name = d(g, 0);
                out.push((
                    ins[0],
                    push(g, Op::ActivateGrad(a), vec![ins[0], node.output, dy], name)?,
                ));
            }
        }
        (Op::Softmax, Seed::Tensor(dy)) => {
            if want(0) {
                let name = d(g, 0);
                out.push((
                    ins[0],
                    push(g, Op::SoftmaxGrad, vec![node.output, dy], name)?,
                ));
            }
        }
        (Op::Dropout { rate, seed }, Seed::Tensor(dy)) => {
            if want(0) {
                let name = d(g, 0);
                out.push((
                    ins[0],
                    push(g, Op::DropoutGrad { rate, seed }, vec![dy], name)?,
                ));
            }
        }
        (Op::Reshape, Seed::Tensor(dy)) => {
            if want(0) {
                let (name, shape) = (d(g, 0), g.tensors[ins[0]].shape.clone());
                out.push((ins[0], push_reshape(g, dy, shape, name)));
            }
        }
        (
            op @ (Op::SumRows
            | Op::ActivateGrad(_)
            | Op::SoftmaxGrad
            | Op::DropoutGrad { .. }
            | Op::LossGrad(_)
            | Op::Update(_)),
            Seed::Tensor(_),
        ) => return Err(format!("{op:?} is a backward op and has no gradient rule")),
    }
    Ok(out)
}
