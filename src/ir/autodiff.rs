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

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::ir::build::add_tensor;
    use crate::ir::graph::{LossKind, Role};
    use crate::ir::layout::Layout;
    use crate::ir::testing::gradient_error;
    use crate::sema::model::Activation;

    /// Builds `mse(f(params), target)` over parameters of `shapes` filled with random
    /// values in `±[lo, hi]`, differentiates it, and returns the worst finite-difference
    /// error of the gradients.
    fn fd_error(
        shapes: &[Vec<usize>],
        (lo, hi): (f64, f64),
        f: impl Fn(&mut Graph, &[TensorId]) -> TensorId,
    ) -> f64 {
        let mut g = Graph {
            batch: 1,
            tensors: vec![],
            nodes: vec![],
            input: 0,
            target: None,
            output: 0,
            loss: None,
        };
        let params: Vec<TensorId> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let role = Role::Param {
                    layer: format!("p{i}"),
                    name: "w",
                    trainable: true,
                };
                add_tensor(&mut g, format!("p{i}"), s.clone(), role)
            })
            .collect();
        g.input = add_tensor(&mut g, "x".into(), vec![1], Role::Input);
        let out = f(&mut g, &params);
        g.output = out;
        let shape = g.tensors[out].shape.clone();
        let target = add_tensor(&mut g, "y".into(), shape, Role::Target);
        let loss = push(
            &mut g,
            Op::Loss(LossKind::Mse),
            vec![out, target],
            "loss".into(),
        )
        .unwrap();
        g.loss = Some(loss);
        let grads = gradients(&mut g, loss, &params).unwrap();
        let pairs: Vec<_> = params.iter().copied().zip(grads).collect();

        let layout = Layout::new(&g);
        let mut rng = StdRng::seed_from_u64(11);
        let mut arena = vec![0.0; layout.len];
        for &p in &params {
            for v in &mut arena[layout.range(&g, p).unwrap()] {
                let sign = if rng.gen::<bool>() { 1.0 } else { -1.0 };
                *v = sign * rng.gen_range(lo..hi);
            }
        }
        let y: Vec<f64> = (0..g.tensors[target].len())
            .map(|_| rng.gen_range(-1.0..1.0))
            .collect();
        gradient_error(&g, &pairs, &arena, &[0.0], &y, 3)
    }

    const TOL: f64 = 1e-6;

    #[test]
    fn matmul_in_every_transposition() {
        let (m, k, n) = (3, 4, 2);
        for trans_a in [false, true] {
            for trans_b in [false, true] {
                let a = if trans_a { vec![k, m] } else { vec![m, k] };
                let b = if trans_b { vec![n, k] } else { vec![k, n] };
                let err = fd_error(&[a, b], (0.1, 1.0), |g, p| {
                    let op = Op::MatMul { trans_a, trans_b };
                    push(g, op, vec![p[0], p[1]], "ab".into()).unwrap()
                });
                assert!(err < TOL, "trans {trans_a} {trans_b}: {err}");
            }
        }
    }

    #[test]
    fn add_bias() {
        let err = fd_error(&[vec![3, 4], vec![4]], (0.1, 1.0), |g, p| {
            push(g, Op::AddBias, vec![p[0], p[1]], "xb".into()).unwrap()
        });
        assert!(err < TOL, "{err}");
    }

    #[test]
    fn add_and_accumulation_over_several_consumers() {
        // p0 feeds tanh, a matmul and both sides of an add: four contributions.
        let err = fd_error(&[vec![3, 3]], (0.1, 1.0), |g, p| {
            let t = push(g, Op::Activate(Activation::Tanh), vec![p[0]], "t".into()).unwrap();
            let mm = Op::MatMul {
                trans_a: false,
                trans_b: false,
            };
            let m = push(g, mm, vec![t, p[0]], "m".into()).unwrap();
            let s = push(g, Op::Add, vec![p[0], p[0]], "s".into()).unwrap();
            push(g, Op::Add, vec![m, s], "out".into()).unwrap()
        });
        assert!(err < TOL, "{err}");
    }

    #[test]
    fn every_elementwise_activation() {
        let all = [
            Activation::Linear,
            Activation::Relu,
            Activation::LeakyRelu { alpha: 0.3 },
            Activation::Elu { alpha: 1.0 },
            Activation::Elu { alpha: 0.5 },
            Activation::Sigmoid,
            Activation::Tanh,
            Activation::Gelu,
            Activation::Silu,
            Activation::Softplus,
        ];
        for a in all {
            // Away from 0, where relu-like activations have their kink.
            let err = fd_error(&[vec![4, 5]], (0.05, 3.0), |g, p| {
                push(g, Op::Activate(a), vec![p[0]], "y".into()).unwrap()
            });
            assert!(err < TOL, "{a:?}: {err}");
        }
    }

    #[test]
    fn softmax_dropout_and_reshape() {
        let err = fd_error(&[vec![3, 4]], (0.0, 3.0), |g, p| {
            push(g, Op::Softmax, vec![p[0]], "y".into()).unwrap()
        });
        assert!(err < TOL, "softmax: {err}");
        let err = fd_error(&[vec![4, 5]], (0.0, 1.0), |g, p| {
            let op = Op::Dropout { rate: 0.4, seed: 9 };
            push(g, op, vec![p[0]], "y".into()).unwrap()
        });
        assert!(err < TOL, "dropout: {err}");
        let err = fd_error(&[vec![2, 6]], (0.0, 1.0), |g, p| {
            let r = push_reshape(g, p[0], vec![3, 4], "r".into());
            push(g, Op::Activate(Activation::Sigmoid), vec![r], "y".into()).unwrap()
        });
        assert!(err < TOL, "reshape: {err}");
    }

    #[test]
    fn backward_ops_and_non_loss_roots_are_refused() {
        let mut g = Graph {
            batch: 1,
            tensors: vec![],
            nodes: vec![],
            input: 0,
            target: None,
            output: 0,
            loss: None,
        };
        let role = Role::Param {
            layer: "p".into(),
            name: "w",
            trainable: true,
        };
        let p = add_tensor(&mut g, "p".into(), vec![2, 3], role);
        let s = push(&mut g, Op::SumRows, vec![p], "s".into()).unwrap();
        let t = push(&mut g, Op::Activate(Activation::Tanh), vec![s], "t".into()).unwrap();
        // `t` is not a loss: there is no unit seed to start from.
        assert!(gradients(&mut g.clone(), t, &[p]).is_err());
        let y = add_tensor(&mut g, "y".into(), vec![3], Role::Target);
        let loss = push(&mut g, Op::Loss(LossKind::Mse), vec![t, y], "loss".into()).unwrap();
        let err = gradients(&mut g, loss, &[p]).unwrap_err();
        assert!(err.contains("backward op"), "{err}");
    }
}
