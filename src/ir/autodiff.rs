//! Reverse-mode differentiation of a forward graph: one vector-Jacobian rule per op
//! (`vjp`, a single match), applied to the nodes in reverse order; a tensor read by
//! several nodes gets the sum of their contributions (`Op::Add`).

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
    // Tensors whose gradient is the unit: the loss, and the terms of a total loss
    // (the model's loss plus the regularizers' penalties) summed by `Add` nodes.
    let mut unit = vec![false; g.tensors.len()];
    unit[loss] = true;
    for index in (0..forward).rev() {
        let node = g.nodes[index].clone();
        if !needs[node.output] {
            continue;
        }
        if unit[node.output] && node.op == Op::Add {
            for &input in &node.inputs {
                unit[input] = true;
            }
            continue;
        }
        let seed = match grads[node.output] {
            _ if unit[node.output] => Seed::Unit,
            Some(t) => Seed::Tensor(t),
            None => continue,
        };
        // The gradients a node's rule adds belong to its layer's backward pass.
        g.origin = g.tensors[node.output].origin.backward();
        for (input, d) in vjp(g, &node, seed, &needs)? {
            let total = match grads[input] {
                Some(prev) => {
                    let name = g.tensors[d].name.clone();
                    g.push(Op::Add, vec![prev, d], name)?
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
                    g.push(Op::LossGrad(kind), vec![ins[0], ins[1]], name)?,
                ));
            }
        }
        (Op::WeightedLoss(kind), Seed::Unit) => {
            // d(sum_i w_i l_i / rows) = w_i * (row i of the mean loss's gradient).
            if want(0) {
                let name = d(g, 0);
                let unweighted = g.push(Op::LossGrad(kind), vec![ins[0], ins[1]], name.clone())?;
                out.push((
                    ins[0],
                    g.push(Op::ScaleRows, vec![unweighted, ins[2]], name)?,
                ));
            }
        }
        (Op::Penalty { l1, l2 }, Seed::Unit) => {
            if want(0) {
                let name = d(g, 0);
                out.push((
                    ins[0],
                    g.push(Op::PenaltyGrad { l1, l2 }, vec![ins[0]], name)?,
                ));
            }
        }
        (op, Seed::Unit) | (op @ (Op::Loss(_) | Op::WeightedLoss(_) | Op::Penalty { .. }), _) => {
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
                out.push((a, g.push(op, inputs, name)?));
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
                out.push((b, g.push(op, inputs, name)?));
            }
        }
        (Op::AddBias, Seed::Tensor(dy)) => {
            if want(0) {
                out.push((ins[0], dy));
            }
            if want(1) {
                let name = d(g, 1);
                out.push((ins[1], g.push(Op::SumRows, vec![dy], name)?));
            }
        }
        (Op::Add, Seed::Tensor(dy)) => {
            for &input in ins.iter().filter(|&&i| needs[i]) {
                out.push((input, dy));
            }
        }
        (Op::Activate(a), Seed::Tensor(dy)) => {
            if want(0) {
                let name = d(g, 0);
                out.push((
                    ins[0],
                    g.push(Op::ActivateGrad(a), vec![ins[0], node.output, dy], name)?,
                ));
            }
        }
        (Op::Softmax, Seed::Tensor(dy)) => {
            if want(0) {
                let name = d(g, 0);
                out.push((
                    ins[0],
                    g.push(Op::SoftmaxGrad, vec![node.output, dy], name)?,
                ));
            }
        }
        (Op::Dropout { rate, seed }, Seed::Tensor(dy)) => {
            if want(0) {
                let name = d(g, 0);
                out.push((
                    ins[0],
                    g.push(Op::DropoutGrad { rate, seed }, vec![dy], name)?,
                ));
            }
        }
        (Op::Reshape, Seed::Tensor(dy)) => {
            if want(0) {
                let (name, shape) = (d(g, 0), g.tensors[ins[0]].shape.clone());
                out.push((ins[0], g.push_reshape(dy, shape, name)));
            }
        }
        (Op::Im2col(win), Seed::Tensor(dy)) => {
            if want(0) {
                let name = d(g, 0);
                out.push((ins[0], g.push(Op::Col2im(win), vec![dy], name)?));
            }
        }
        (Op::MaxPool2d(win), Seed::Tensor(dy)) => {
            // The argmax is piecewise constant: only `x` gets a gradient.
            if want(0) {
                let name = d(g, 0);
                let op = Op::MaxPool2dGrad(win);
                out.push((ins[0], g.push(op, vec![ins[1], dy], name)?));
            }
        }
        (Op::MaxPool2dArgmax(_), Seed::Tensor(_)) => {}
        (Op::AvgPool2d(win), Seed::Tensor(dy)) => {
            if want(0) {
                let name = d(g, 0);
                out.push((ins[0], g.push(Op::AvgPool2dGrad(win), vec![dy], name)?));
            }
        }
        (
            Op::BatchNorm {
                epsilon,
                batch_stats,
            },
            Seed::Tensor(dy),
        ) => {
            let (x, mean, var, gamma, beta) = (ins[0], ins[1], ins[2], ins[3], ins[4]);
            if !batch_stats && (want(1) || want(2)) {
                return Err("batch_norm: the moving statistics have no gradient".into());
            }
            // The batch-statistics form of dx needs both parameter gradients.
            let through_stats = batch_stats && want(0);
            let dgamma = if want(3) || through_stats {
                let name = d(g, 3);
                let op = Op::BatchNormGammaGrad { epsilon };
                Some(g.push(op, vec![x, mean, var, dy], name)?)
            } else {
                None
            };
            let dbeta = if want(4) || through_stats {
                let name = d(g, 4);
                Some(g.push(Op::SumRows, vec![dy], name)?)
            } else {
                None
            };
            if want(0) {
                let name = d(g, 0);
                let dx = match (dgamma, dbeta) {
                    (Some(dg), Some(db)) if batch_stats => {
                        let op = Op::BatchNormTrainGrad { epsilon };
                        g.push(op, vec![x, mean, var, gamma, dy, dg, db], name)?
                    }
                    _ => g.push(Op::BatchNormGrad { epsilon }, vec![var, gamma, dy], name)?,
                };
                out.push((x, dx));
            }
            if let Some(dg) = dgamma.filter(|_| want(3)) {
                out.push((gamma, dg));
            }
            if let Some(db) = dbeta.filter(|_| want(4)) {
                out.push((beta, db));
            }
        }
        (Op::Merge(m), Seed::Tensor(dy)) => return m.vjp(g, ins, dy, &want, &d),
        (
            Op::LayerNorm {
                epsilon,
                scale,
                center,
            },
            Seed::Tensor(dy),
        ) => {
            let x = ins[0];
            let gamma = scale.then(|| ins[1]);
            if want(0) {
                let name = d(g, 0);
                let mut inputs = vec![x];
                inputs.extend(gamma);
                inputs.push(dy);
                let op = Op::LayerNormGrad { epsilon, scale };
                out.push((x, g.push(op, inputs, name)?));
            }
            if let Some(gamma) = gamma.filter(|&t| needs[t]) {
                let name = format!("d({})", g.tensors[gamma].name);
                let op = Op::LayerNormGammaGrad { epsilon };
                out.push((gamma, g.push(op, vec![x, dy], name)?));
            }
            if let Some(&beta) = ins.last().filter(|&&t| center && needs[t]) {
                let name = format!("d({})", g.tensors[beta].name);
                out.push((beta, g.push(Op::SumRows, vec![dy], name)?));
            }
        }
        (Op::Gather, Seed::Tensor(dy)) => {
            // The ids are data: only the table gets a gradient.
            if want(1) {
                let name = d(g, 1);
                let rows = g.tensors[ins[1]].shape[0];
                let op = Op::GatherGrad { rows };
                out.push((ins[1], g.push(op, vec![ins[0], dy], name)?));
            }
        }
        (op @ (Op::BatchMean | Op::BatchVariance), Seed::Tensor(_)) => {
            return Err(format!(
                "{op:?} is differentiated through `BatchNorm {{ batch_stats: true }}` only"
            ))
        }
        (op @ (Op::ClassWeights | Op::ScaleRows), Seed::Tensor(_)) => {
            return Err(format!("{op:?} is not differentiated through"))
        }
        (op @ Op::Affine { .. }, Seed::Tensor(_)) => {
            return Err(format!("{op:?} transforms targets, which have no gradient"))
        }
        (
            op @ (Op::SumRows
            | Op::Col2im(_)
            | Op::MaxPool2dGrad(_)
            | Op::AvgPool2dGrad(_)
            | Op::BatchNormGrad { .. }
            | Op::BatchNormTrainGrad { .. }
            | Op::BatchNormGammaGrad { .. }
            | Op::LayerNormGrad { .. }
            | Op::LayerNormGammaGrad { .. }
            | Op::GatherGrad { .. }
            | Op::MovingAverage { .. }
            | Op::ActivateGrad(_)
            | Op::SoftmaxGrad
            | Op::DropoutGrad { .. }
            | Op::LossGrad(_)
            | Op::Update(_)
            | Op::LearningRate(_)
            | Op::ClipNorm { .. }
            | Op::ClipValue { .. }
            | Op::GlobalClipScale { .. }
            | Op::Scale
            | Op::PenaltyGrad { .. }),
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
    use crate::ir::graph::{LossKind, Role, Window};
    use crate::ir::layout::Layout;
    use crate::ir::merge::MergeOp;
    use crate::ir::testing::gradient_error;
    use crate::sema::model::{Activation, Padding};

    /// Builds `mse(f(params), target)` over parameters of `shapes` filled with random
    /// values in `±[lo, hi]`, differentiates it, and returns the worst finite-difference
    /// error of the gradients.
    fn fd_error(
        shapes: &[Vec<usize>],
        range: (f64, f64),
        f: impl Fn(&mut Graph, &[TensorId]) -> TensorId,
    ) -> f64 {
        fd_error_with(shapes, &[], range, |g, p, _| f(g, p))
    }

    /// `fd_error` with constant (non-trainable) tensors of `consts` shapes too, filled
    /// with values in `[0.5, 1.5]`, passed to `f` after the parameters.
    fn fd_error_with(
        shapes: &[Vec<usize>],
        consts: &[Vec<usize>],
        (lo, hi): (f64, f64),
        f: impl Fn(&mut Graph, &[TensorId], &[TensorId]) -> TensorId,
    ) -> f64 {
        let mut g = Graph::new(1);
        let params: Vec<TensorId> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let role = Role::Param {
                    layer: format!("p{i}"),
                    name: "w",
                    trainable: true,
                };
                g.add_tensor(format!("p{i}"), s.clone(), role)
            })
            .collect();
        let constants: Vec<TensorId> = consts
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let role = Role::Param {
                    layer: format!("c{i}"),
                    name: "c",
                    trainable: false,
                };
                g.add_tensor(format!("c{i}"), s.clone(), role)
            })
            .collect();
        g.input = g.add_tensor("x".into(), vec![1], Role::Input);
        let out = f(&mut g, &params, &constants);
        g.output = out;
        let shape = g.tensors[out].shape.clone();
        let target = g.add_tensor("y".into(), shape, Role::Target);
        let loss = g
            .push(Op::Loss(LossKind::Mse), vec![out, target], "loss".into())
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
        for &c in &constants {
            for v in &mut arena[layout.range(&g, c).unwrap()] {
                *v = rng.gen_range(0.5..1.5);
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
                    g.push(op, vec![p[0], p[1]], "ab".into()).unwrap()
                });
                assert!(err < TOL, "trans {trans_a} {trans_b}: {err}");
            }
        }
    }

    #[test]
    fn add_bias() {
        let err = fd_error(&[vec![3, 4], vec![4]], (0.1, 1.0), |g, p| {
            g.push(Op::AddBias, vec![p[0], p[1]], "xb".into()).unwrap()
        });
        assert!(err < TOL, "{err}");
    }

    #[test]
    fn add_and_accumulation_over_several_consumers() {
        // p0 feeds tanh, a matmul and both sides of an add: four contributions.
        let err = fd_error(&[vec![3, 3]], (0.1, 1.0), |g, p| {
            let t = g
                .push(Op::Activate(Activation::Tanh), vec![p[0]], "t".into())
                .unwrap();
            let mm = Op::MatMul {
                trans_a: false,
                trans_b: false,
            };
            let m = g.push(mm, vec![t, p[0]], "m".into()).unwrap();
            let s = g.push(Op::Add, vec![p[0], p[0]], "s".into()).unwrap();
            g.push(Op::Add, vec![m, s], "out".into()).unwrap()
        });
        assert!(err < TOL, "{err}");
    }

    #[test]
    fn every_elementwise_activation() {
        let all = Activation::ALL
            .iter()
            .filter(|&&a| a != Activation::Softmax)
            .flat_map(|&a| match a.alpha() {
                Some(_) => vec![a, a.with_alpha(0.5)],
                None => vec![a],
            });
        for a in all {
            // Away from 0, where relu-like activations have their kink.
            let err = fd_error(&[vec![4, 5]], (0.05, 3.0), |g, p| {
                g.push(Op::Activate(a), vec![p[0]], "y".into()).unwrap()
            });
            assert!(err < TOL, "{a:?}: {err}");
        }
    }

    #[test]
    fn softmax_dropout_and_reshape() {
        let err = fd_error(&[vec![3, 4]], (0.0, 3.0), |g, p| {
            g.push(Op::Softmax, vec![p[0]], "y".into()).unwrap()
        });
        assert!(err < TOL, "softmax: {err}");
        let err = fd_error(&[vec![4, 5]], (0.0, 1.0), |g, p| {
            let op = Op::Dropout { rate: 0.4, seed: 9 };
            g.push(op, vec![p[0]], "y".into()).unwrap()
        });
        assert!(err < TOL, "dropout: {err}");
        let err = fd_error(&[vec![2, 6]], (0.0, 1.0), |g, p| {
            let r = g.push_reshape(p[0], vec![3, 4], "r".into());
            g.push(Op::Activate(Activation::Sigmoid), vec![r], "y".into())
                .unwrap()
        });
        assert!(err < TOL, "reshape: {err}");
    }

    /// Odd image sizes, strides that do not divide them, both paddings, windows wider
    /// than their stride and strides wider than their window:
    /// `(h, w, c, window, strides, padding)`.
    /// `(h, w, c, window, strides, padding)`.
    type Case = (usize, usize, usize, [usize; 2], [usize; 2], Padding);

    fn windows() -> Vec<Case> {
        use Padding::{Same, Valid};
        vec![
            (5, 7, 2, [3, 2], [2, 3], Same),
            (5, 7, 2, [3, 2], [2, 3], Valid),
            (6, 5, 3, [3, 3], [2, 2], Valid),
            (6, 5, 3, [3, 3], [2, 2], Same),
            (4, 4, 1, [2, 2], [3, 1], Same),
            (5, 5, 1, [2, 2], [3, 3], Same),
            (3, 4, 2, [1, 1], [2, 2], Valid),
            (4, 3, 2, [4, 3], [1, 1], Same),
        ]
    }

    fn win(h: usize, w: usize, size: [usize; 2], strides: [usize; 2], p: Padding) -> Window {
        Window {
            input: [h, w],
            size,
            strides,
            padding: p,
        }
    }

    #[test]
    fn convolution_by_im2col_and_matmul() {
        let (b, filters) = (2, 3);
        for (h, w, c, size, strides, padding) in windows() {
            let wi = win(h, w, size, strides, padding);
            let taps = size[0] * size[1] * c;
            let shapes = [vec![b, h, w, c], vec![taps, filters]];
            let err = fd_error(&shapes, (0.1, 1.0), |g, p| {
                let cols = g.push(Op::Im2col(wi), vec![p[0]], "cols".into()).unwrap();
                let mm = Op::MatMul {
                    trans_a: false,
                    trans_b: false,
                };
                g.push(mm, vec![cols, p[1]], "y".into()).unwrap()
            });
            assert!(err < TOL, "{wi:?}: {err}");
        }
    }

    #[test]
    fn max_and_average_pooling() {
        for (h, w, c, size, strides, padding) in windows() {
            let wi = win(h, w, size, strides, padding);
            let err = fd_error(&[vec![2, h, w, c]], (0.1, 1.0), |g, p| {
                let op = Op::MaxPool2dArgmax(wi);
                let arg = g.push(op, vec![p[0]], "arg".into()).unwrap();
                g.push(Op::MaxPool2d(wi), vec![p[0], arg], "y".into())
                    .unwrap()
            });
            assert!(err < TOL, "max {wi:?}: {err}");
            let err = fd_error(&[vec![2, h, w, c]], (0.1, 1.0), |g, p| {
                g.push(Op::AvgPool2d(wi), vec![p[0]], "y".into()).unwrap()
            });
            assert!(err < TOL, "avg {wi:?}: {err}");
        }
    }

    #[test]
    fn batch_norm_through_the_batch_statistics_and_with_constants() {
        // With one sample per channel the output is beta whatever x is: dx = 0.
        for shape in [vec![5, 3], vec![2, 3, 2, 4], vec![1, 1]] {
            let c = *shape.last().unwrap();
            // tanh after the normalization, so the loss is not quadratic in x.
            let shapes = [shape.clone(), vec![c], vec![c]];
            let err = fd_error(&shapes, (0.1, 1.5), |g, p| {
                let m = g.push(Op::BatchMean, vec![p[0]], "m".into()).unwrap();
                let v = g
                    .push(Op::BatchVariance, vec![p[0], m], "v".into())
                    .unwrap();
                let op = Op::BatchNorm {
                    epsilon: 1e-3,
                    batch_stats: true,
                };
                let y = g
                    .push(op, vec![p[0], m, v, p[1], p[2]], "y".into())
                    .unwrap();
                g.push(Op::Activate(Activation::Tanh), vec![y], "t".into())
                    .unwrap()
            });
            assert!(err < TOL, "batch stats {shape:?}: {err}");
            let err = fd_error_with(&shapes, &[vec![c], vec![c]], (0.1, 1.5), |g, p, k| {
                let op = Op::BatchNorm {
                    epsilon: 1e-3,
                    batch_stats: false,
                };
                let y = g
                    .push(op, vec![p[0], k[0], k[1], p[1], p[2]], "y".into())
                    .unwrap();
                g.push(Op::Activate(Activation::Tanh), vec![y], "t".into())
                    .unwrap()
            });
            assert!(err < TOL, "moving stats {shape:?}: {err}");
        }
    }

    #[test]
    fn backward_ops_and_non_loss_roots_are_refused() {
        let mut g = Graph::new(1);
        let role = Role::Param {
            layer: "p".into(),
            name: "w",
            trainable: true,
        };
        let p = g.add_tensor("p".into(), vec![2, 3], role);
        let s = g.push(Op::SumRows, vec![p], "s".into()).unwrap();
        let t = g
            .push(Op::Activate(Activation::Tanh), vec![s], "t".into())
            .unwrap();
        // `t` is not a loss: there is no unit seed to start from.
        assert!(gradients(&mut g.clone(), t, &[p]).is_err());
        let y = g.add_tensor("y".into(), vec![3], Role::Target);
        let loss = g
            .push(Op::Loss(LossKind::Mse), vec![t, y], "loss".into())
            .unwrap();
        let err = gradients(&mut g, loss, &[p]).unwrap_err();
        assert!(err.contains("backward op"), "{err}");
    }

    #[test]
    fn binary_merges_with_fan_out() {
        let ops = [
            Op::Add,
            Op::Merge(MergeOp::Sub),
            Op::Merge(MergeOp::Mul),
            Op::Merge(MergeOp::Extremum { max: true }),
            Op::Merge(MergeOp::Extremum { max: false }),
        ];
        for op in ops {
            // p0 is read by both merges (fan-out): its gradient sums two paths.
            let err = fd_error(&[vec![3, 5], vec![3, 5]], (0.1, 2.0), |g, p| {
                let m = g.push(op.clone(), vec![p[0], p[1]], "m".into()).unwrap();
                let t = g
                    .push(Op::Activate(Activation::Tanh), vec![m], "t".into())
                    .unwrap();
                let again = g.push(op.clone(), vec![t, p[0]], "again".into()).unwrap();
                g.push(Op::Merge(MergeOp::ScaleBy(0.75)), vec![again], "y".into())
                    .unwrap()
            });
            assert!(err < TOL, "{op:?}: {err}");
        }
    }

    #[test]
    fn concat_on_every_axis_with_a_repeated_part() {
        // Odd sizes; p0 appears twice among the parts.
        for (a, b, axis) in [
            (vec![2, 3], vec![2, 5], 1),
            (vec![2, 1, 4], vec![2, 3, 4], 1),
            (vec![2, 3, 4], vec![2, 3, 1], 2),
            (vec![2, 3, 3, 2], vec![2, 3, 3, 1], 3),
        ] {
            let err = fd_error(&[a.clone(), b.clone()], (0.1, 2.0), |g, p| {
                let op = Op::Merge(MergeOp::Concat { axis, parts: 3 });
                let c = g.push(op, vec![p[0], p[1], p[0]], "c".into()).unwrap();
                g.push(Op::Activate(Activation::Tanh), vec![c], "y".into())
                    .unwrap()
            });
            assert!(err < TOL, "{a:?} ++ {b:?} on {axis}: {err}");
        }
    }
}
