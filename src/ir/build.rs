//! From a checked `Model` to the graph of one train step (forward, loss, backward,
//! updates) or of one predict call.

use super::autodiff;
use super::graph::{Graph, LossKind, Node, Op, Role, Tensor, TensorId};
use super::optim::slot_names;
use crate::sema::model::{Activation, LayerKind, Loss, Model, TrainConfig};

/// The graph of one training step on a batch of `batch` samples: forward pass, mean
/// loss, gradients, and one `Update` per trainable parameter.
pub fn train_step(model: &Model, batch: usize) -> Result<Graph, String> {
    let train = model
        .train
        .as_ref()
        .ok_or("the model has no `train` block, so it cannot be trained")?;
    build(model, batch, Some(train))
}

/// The graph of the forward pass on `batch` samples, dropout off. Its persistent
/// tensors are those of `train_step` (optimizer slots included, unused), so one arena
/// serves both.
pub fn predict(model: &Model, batch: usize) -> Result<Graph, String> {
    build(model, batch, None)
}

/// A per-layer dropout seed: the train seed and the layer's index, mixed so nearby
/// seeds and layers draw unrelated masks.
fn dropout_seed(seed: u64, layer_index: usize) -> u64 {
    let mut z = seed.wrapping_add((layer_index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn build(model: &Model, batch: usize, train: Option<&TrainConfig>) -> Result<Graph, String> {
    if batch == 0 {
        return Err("the batch size must be positive".into());
    }
    let mut g = Graph {
        batch,
        tensors: vec![],
        nodes: vec![],
        input: 0,
        target: None,
        output: 0,
        loss: None,
    };

    // Persistent tensors first, identical for every batch size and for predict.
    let mut layer_params: Vec<Vec<TensorId>> = vec![];
    let mut trainable = vec![];
    for layer in &model.layers {
        let mut ids = vec![];
        for spec in layer.params() {
            let id = add_tensor(
                &mut g,
                format!("{}.{}", layer.name, spec.name),
                spec.shape.clone(),
                Role::Param {
                    layer: layer.name.clone(),
                    name: spec.name,
                    trainable: spec.trainable,
                },
            );
            if spec.trainable {
                trainable.push(id);
            }
            ids.push(id);
        }
        layer_params.push(ids);
    }
    let optimizer = model.train.as_ref().map(|t| t.optimizer);
    let mut slots: Vec<Vec<TensorId>> = vec![];
    for &p in &trainable {
        let names = optimizer.as_ref().map(slot_names).unwrap_or(&[]);
        let ids = names
            .iter()
            .map(|s| {
                let t = &g.tensors[p];
                let (name, shape) = (format!("{}.{s}", t.name), t.shape.clone());
                add_tensor(&mut g, name, shape, Role::OptimizerSlot)
            })
            .collect();
        slots.push(ids);
    }

    let mut input_shape = vec![batch];
    input_shape.extend(&model.input_shape);
    g.input = add_tensor(&mut g, model.input_name.clone(), input_shape, Role::Input);
    if let Some(t) = train {
        let mut out_shape = vec![batch];
        out_shape.extend(
            model
                .layers
                .last()
                .map_or(&model.input_shape, |l| &l.output_shape),
        );
        if matches!(t.loss, Loss::SparseCategoricalCrossentropy) {
            out_shape.pop();
        }
        g.target = Some(add_tensor(&mut g, "target".into(), out_shape, Role::Target));
    }

    // Forward. `pre` is the input of the activation that produced `cur`, if any: the
    // logits the fused losses read.
    let mut cur = g.input;
    let mut pre: Option<(Activation, TensorId)> = None;
    for (index, layer) in model.layers.iter().enumerate() {
        let before = cur;
        let name = &layer.name;
        match &layer.kind {
            LayerKind::Dense {
                activation,
                use_bias,
                ..
            } => {
                if g.tensors[cur].shape.len() != 2 {
                    return Err(format!(
                        "layer `{name}`: dense needs a vector input, found shape {:?}",
                        &g.tensors[cur].shape[1..]
                    ));
                }
                let params = &layer_params[index];
                cur = push(
                    &mut g,
                    Op::MatMul {
                        trans_a: false,
                        trans_b: false,
                    },
                    vec![cur, params[0]],
                    format!("{name}.matmul"),
                )?;
                if *use_bias {
                    cur = push(
                        &mut g,
                        Op::AddBias,
                        vec![cur, params[1]],
                        format!("{name}.biased"),
                    )?;
                }
                (cur, pre) = activate(&mut g, cur, *activation, name)?;
            }
            LayerKind::Flatten | LayerKind::Reshape { .. } => {
                let mut shape = vec![batch];
                match &layer.kind {
                    LayerKind::Reshape { shape: s } => shape.extend(s),
                    _ => shape.push(g.tensors[cur].shape[1..].iter().product()),
                }
                if shape.iter().product::<usize>() != g.tensors[cur].len() {
                    return Err(format!(
                        "layer `{name}`: cannot reshape {:?} to {:?}",
                        &g.tensors[cur].shape[1..],
                        &shape[1..]
                    ));
                }
                if shape != g.tensors[cur].shape {
                    cur = push_reshape(&mut g, cur, shape, format!("{name}.out"));
                }
                pre = None;
            }
            LayerKind::Dropout { rate } => {
                if let Some(t) = train.filter(|_| *rate > 0.0) {
                    let op = Op::Dropout {
                        rate: *rate,
                        seed: dropout_seed(t.seed, index),
                    };
                    cur = push(&mut g, op, vec![cur], format!("{name}.out"))?;
                }
                pre = None;
            }
            LayerKind::Activation(a) => (cur, pre) = activate(&mut g, cur, *a, name)?,
            LayerKind::Conv2d { .. }
            | LayerKind::MaxPool2d { .. }
            | LayerKind::AvgPool2d { .. }
            | LayerKind::BatchNorm { .. } => {
                let what = match layer.kind {
                    LayerKind::Conv2d { .. } => "conv2d",
                    LayerKind::MaxPool2d { .. } => "maxpool2d",
                    LayerKind::AvgPool2d { .. } => "avgpool2d",
                    _ => "batchnorm",
                };
                return Err(format!(
                    "layer `{name}`: {what} is not supported by nnc run yet"
                ));
            }
        }
        if cur != before {
            g.tensors[cur].name = format!("{name}.out");
        }
    }
    if !matches!(g.tensors[cur].role, Role::Temp) {
        // Identity layers only: the runtime reads the output from the arena.
        let shape = g.tensors[cur].shape.clone();
        cur = push_reshape(&mut g, cur, shape, "output".into());
    }
    g.output = cur;

    let (Some(t), Some(target)) = (train, g.target) else {
        return Ok(g);
    };
    let (kind, prediction) = loss_kind(t.loss, pre, g.output);
    let loss = push(
        &mut g,
        Op::Loss(kind),
        vec![prediction, target],
        "loss".into(),
    )?;
    g.loss = Some(loss);
    let grads = autodiff::gradients(&mut g, loss, &trainable)?;
    for ((&p, gp), s) in trainable.iter().zip(grads).zip(slots) {
        let mut inputs = vec![p, gp];
        inputs.extend(s);
        g.nodes.push(Node {
            op: Op::Update(t.optimizer),
            inputs,
            output: p,
        });
    }
    Ok(g)
}

/// Applies an activation to `x`; returns the result and, when an activation node was
/// added, `(activation, x)`.
fn activate(
    g: &mut Graph,
    x: TensorId,
    a: Activation,
    layer: &str,
) -> Result<(TensorId, Option<(Activation, TensorId)>), String> {
    let op = match a {
        Activation::Linear => return Ok((x, None)),
        Activation::Softmax => Op::Softmax,
        a => Op::Activate(a),
    };
    Ok((push(g, op, vec![x], format!("{layer}.out"))?, Some((a, x))))
}

/// The loss node's kind and the tensor it reads: the logits when the model ends in the
/// activation the loss can be fused with.
fn loss_kind(
    loss: Loss,
    pre: Option<(Activation, TensorId)>,
    output: TensorId,
) -> (LossKind, TensorId) {
    let act = pre.map(|(a, _)| a);
    let logits = pre.map_or(output, |(_, z)| z);
    match (loss, act) {
        (Loss::BinaryCrossentropy, Some(Activation::Sigmoid)) => {
            (LossKind::SigmoidBinaryCrossentropy, logits)
        }
        (Loss::CategoricalCrossentropy, Some(Activation::Softmax)) => {
            (LossKind::SoftmaxCategoricalCrossentropy, logits)
        }
        (Loss::SparseCategoricalCrossentropy, Some(Activation::Softmax)) => {
            (LossKind::SoftmaxSparseCategoricalCrossentropy, logits)
        }
        (Loss::Mse, _) => (LossKind::Mse, output),
        (Loss::Mae, _) => (LossKind::Mae, output),
        (Loss::Huber, _) => (LossKind::Huber { delta: 1.0 }, output),
        (Loss::BinaryCrossentropy, _) => (LossKind::BinaryCrossentropy, output),
        (Loss::CategoricalCrossentropy, _) => (LossKind::CategoricalCrossentropy, output),
        (Loss::SparseCategoricalCrossentropy, _) => {
            (LossKind::SparseCategoricalCrossentropy, output)
        }
    }
}

/// Adds a tensor with no producer yet.
pub fn add_tensor(g: &mut Graph, name: String, shape: Vec<usize>, role: Role) -> TensorId {
    g.tensors.push(Tensor { name, shape, role });
    g.tensors.len() - 1
}

/// Adds a node writing a new temporary whose shape follows from the op and inputs.
/// Not for `Reshape` (see `push_reshape`) or `Update` (which writes in place).
pub fn push(
    g: &mut Graph,
    op: Op,
    inputs: Vec<TensorId>,
    name: String,
) -> Result<TensorId, String> {
    let shape = output_shape(g, &op, &inputs)?;
    let output = add_tensor(g, name, shape, Role::Temp);
    g.nodes.push(Node { op, inputs, output });
    Ok(output)
}

/// Adds a `Reshape` (copy) of `x` to `shape`, which holds as many elements.
pub fn push_reshape(g: &mut Graph, x: TensorId, shape: Vec<usize>, name: String) -> TensorId {
    let output = add_tensor(g, name, shape, Role::Temp);
    g.nodes.push(Node {
        op: Op::Reshape,
        inputs: vec![x],
        output,
    });
    output
}

/// The shape of an op's result, checking its inputs.
pub fn output_shape(g: &Graph, op: &Op, inputs: &[TensorId]) -> Result<Vec<usize>, String> {
    let arity = match op {
        Op::MatMul { .. }
        | Op::AddBias
        | Op::Add
        | Op::SoftmaxGrad
        | Op::Loss(_)
        | Op::LossGrad(_) => 2,
        Op::ActivateGrad(_) => 3,
        _ => 1,
    };
    if inputs.len() != arity {
        return Err(format!("{op:?} takes {arity} inputs, got {}", inputs.len()));
    }
    let s = |i: usize| g.tensors[inputs[i]].shape.clone();
    let same = |a: usize, b: usize| -> Result<(), String> {
        if s(a) == s(b) {
            Ok(())
        } else {
            Err(format!("{op:?}: shapes {:?} and {:?} differ", s(a), s(b)))
        }
    };
    match op {
        Op::MatMul { trans_a, trans_b } => {
            let (a, b) = (s(0), s(1));
            if a.len() != 2 || b.len() != 2 {
                return Err(format!("matmul needs matrices, got {a:?} and {b:?}"));
            }
            let (m, k) = if *trans_a { (a[1], a[0]) } else { (a[0], a[1]) };
            let (k2, n) = if *trans_b { (b[1], b[0]) } else { (b[0], b[1]) };
            if k != k2 {
                return Err(format!("matmul: inner sizes {k} and {k2} differ"));
            }
            Ok(vec![m, n])
        }
        Op::AddBias => {
            let (x, b) = (s(0), s(1));
            if b.len() != 1 || x.last() != b.first() {
                return Err(format!("add_bias: bias {b:?} does not fit {x:?}"));
            }
            Ok(x)
        }
        Op::SumRows => {
            let x = s(0);
            x.last()
                .map(|&n| vec![n])
                .ok_or_else(|| "sum_rows of a scalar".into())
        }
        Op::Add => same(0, 1).map(|_| s(0)),
        Op::Activate(Activation::Softmax) | Op::ActivateGrad(Activation::Softmax) => {
            Err("softmax is not elementwise: use the softmax ops".into())
        }
        Op::Activate(_) | Op::Softmax | Op::Dropout { .. } | Op::DropoutGrad { .. } => Ok(s(0)),
        Op::ActivateGrad(_) => same(0, 1).and(same(1, 2)).map(|_| s(0)),
        Op::SoftmaxGrad => same(0, 1).map(|_| s(0)),
        Op::Loss(kind) | Op::LossGrad(kind) => {
            let (p, mut t) = (s(0), s(1));
            if matches!(
                kind,
                LossKind::SparseCategoricalCrossentropy
                    | LossKind::SoftmaxSparseCategoricalCrossentropy
            ) {
                t.push(*p.last().unwrap_or(&0));
            }
            if p != t || p.is_empty() {
                return Err(format!(
                    "{op:?}: target {:?} does not fit prediction {p:?}",
                    s(1)
                ));
            }
            Ok(if matches!(op, Op::Loss(_)) { vec![] } else { p })
        }
        Op::Reshape | Op::Update(_) => Err(format!("{op:?} does not create a tensor of its own")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::layout::Layout;
    use crate::ir::testing::dense_model;
    use crate::sema::model::Optimizer;

    #[test]
    fn persistent_offsets_agree_across_batch_sizes_and_predict() {
        let adam = Optimizer::Adam {
            learning_rate: 0.001,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
        };
        let model = dense_model(
            3,
            &[(5, Activation::Relu), (4, Activation::Softmax)],
            Loss::SparseCategoricalCrossentropy,
            adam,
        );
        let graphs = [
            train_step(&model, 32).unwrap(),
            train_step(&model, 7).unwrap(),
            predict(&model, 32).unwrap(),
            predict(&model, 1).unwrap(),
        ];
        let layouts: Vec<Layout> = graphs.iter().map(Layout::new).collect();
        // 2 layers x (kernel, bias), each with two Adam slots.
        let persistent = |g: &Graph| g.tensors.iter().filter(|t| t.role.is_persistent()).count();
        assert_eq!(persistent(&graphs[0]), 12);
        for (g, l) in graphs.iter().zip(&layouts).skip(1) {
            assert_eq!(persistent(g), 12);
            assert_eq!(l.persistent_len, layouts[0].persistent_len);
            for id in 0..12 {
                assert_eq!(g.tensors[id], graphs[0].tensors[id]);
                assert_eq!(l.offsets[id], layouts[0].offsets[id]);
            }
        }
        // The temporaries differ with the batch size.
        assert!(layouts[0].len > layouts[1].len);
    }

    #[test]
    fn fused_losses_read_logits_and_output_stays_post_activation() {
        let sgd = Optimizer::Sgd {
            learning_rate: 0.1,
            momentum: 0.0,
            nesterov: false,
        };
        let cases = [
            (
                Activation::Sigmoid,
                1,
                Loss::BinaryCrossentropy,
                LossKind::SigmoidBinaryCrossentropy,
            ),
            (
                Activation::Softmax,
                3,
                Loss::CategoricalCrossentropy,
                LossKind::SoftmaxCategoricalCrossentropy,
            ),
            (
                Activation::Softmax,
                3,
                Loss::SparseCategoricalCrossentropy,
                LossKind::SoftmaxSparseCategoricalCrossentropy,
            ),
            (
                Activation::Linear,
                1,
                Loss::BinaryCrossentropy,
                LossKind::BinaryCrossentropy,
            ),
            (
                Activation::Relu,
                3,
                Loss::CategoricalCrossentropy,
                LossKind::CategoricalCrossentropy,
            ),
            (
                Activation::Tanh,
                2,
                Loss::Huber,
                LossKind::Huber { delta: 1.0 },
            ),
        ];
        for (act, units, loss, want) in cases {
            let model = dense_model(2, &[(units, act)], loss, sgd);
            let g = train_step(&model, 4).unwrap();
            let node = g
                .nodes
                .iter()
                .find(|n| matches!(n.op, Op::Loss(_)))
                .unwrap();
            assert_eq!(node.op, Op::Loss(want));
            let fused = !matches!(
                want,
                LossKind::BinaryCrossentropy
                    | LossKind::CategoricalCrossentropy
                    | LossKind::Huber { .. }
            );
            assert_eq!(node.inputs[0] != g.output, fused, "{act:?} {loss:?}");
            assert_eq!(g.tensors[g.output].name, "dense.out");
            let sparse = matches!(loss, Loss::SparseCategoricalCrossentropy);
            let want_target = if sparse { vec![4] } else { vec![4, units] };
            assert_eq!(g.tensors[g.target.unwrap()].shape, want_target);
        }
    }

    #[test]
    fn unsupported_layers_and_missing_train_are_errors() {
        let mut model = dense_model(
            2,
            &[(1, Activation::Linear)],
            Loss::Mse,
            Optimizer::Sgd {
                learning_rate: 0.1,
                momentum: 0.0,
                nesterov: false,
            },
        );
        assert!(train_step(&model, 0).is_err());
        model.layers[0].kind = LayerKind::BatchNorm {
            momentum: 0.99,
            epsilon: 1e-3,
        };
        let err = train_step(&model, 4).unwrap_err();
        assert!(
            err.contains("batchnorm is not supported by nnc run yet"),
            "{err}"
        );
        let mut model = dense_model(
            2,
            &[(1, Activation::Linear)],
            Loss::Mse,
            Optimizer::Sgd {
                learning_rate: 0.1,
                momentum: 0.0,
                nesterov: false,
            },
        );
        model.train = None;
        assert!(train_step(&model, 4).is_err());
        assert!(predict(&model, 4).is_ok());
    }
}
