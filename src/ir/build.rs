//! From a checked `Model` to the graph of one train step (forward, loss, backward,
//! updates) or of one predict call.

use super::autodiff;
use super::graph::{Graph, LossKind, Node, Op, Role, Tensor, TensorId, Window};
use super::optim::slot_names;
use crate::sema::model::{Activation, LayerKind, Loss, Model, TrainConfig};

/// What a graph is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Forward (dropout on), loss, gradients, updates.
    Train,
    /// Forward in inference mode (dropout off) and the loss: validation and test.
    Evaluate,
    /// Forward in inference mode only.
    Predict,
}

/// The graph of one training step on a batch of `batch` samples: forward pass, mean
/// loss, gradients, and one `Update` per trainable parameter.
pub fn train_step(model: &Model, batch: usize) -> Result<Graph, String> {
    build(model, batch, Mode::Train)
}

/// The graph that measures the loss (and, through `output`, the metrics) of a batch
/// without training on it: dropout off, no gradients, no updates.
pub fn evaluate(model: &Model, batch: usize) -> Result<Graph, String> {
    build(model, batch, Mode::Evaluate)
}

/// The graph of the forward pass on `batch` samples, dropout off. Its persistent
/// tensors are those of `train_step` (optimizer slots included, unused), so one arena
/// serves both.
pub fn predict(model: &Model, batch: usize) -> Result<Graph, String> {
    build(model, batch, Mode::Predict)
}

/// A per-layer dropout seed: the train seed and the layer's index, mixed so nearby
/// seeds and layers draw unrelated masks.
fn dropout_seed(seed: u64, layer_index: usize) -> u64 {
    let mut z = seed.wrapping_add((layer_index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn build(model: &Model, batch: usize, mode: Mode) -> Result<Graph, String> {
    if batch == 0 {
        return Err("the batch size must be positive".into());
    }
    let train: Option<&TrainConfig> = match mode {
        Mode::Predict => None,
        Mode::Train | Mode::Evaluate => Some(
            model
                .train
                .as_ref()
                .ok_or("the model has no `train` block, so it cannot be trained")?,
        ),
    };
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
    // Batch normalization's (moving statistic, batch statistic, momentum) triples,
    // updated after the gradients in training.
    let mut moving: Vec<(TensorId, TensorId, f32)> = vec![];
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
                if let Some(t) = train.filter(|_| *rate > 0.0 && mode == Mode::Train) {
                    let op = Op::Dropout {
                        rate: *rate,
                        seed: dropout_seed(t.seed, index),
                    };
                    cur = push(&mut g, op, vec![cur], format!("{name}.out"))?;
                }
                pre = None;
            }
            LayerKind::Activation(a) => (cur, pre) = activate(&mut g, cur, *a, name)?,
            LayerKind::Conv2d {
                filters,
                kernel_size,
                strides,
                padding,
                activation,
                use_bias,
                ..
            } => {
                let (win, [oh, ow], c) = window(&g, cur, *kernel_size, *strides, *padding, name)?;
                let params = &layer_params[index];
                let taps = kernel_size[0] * kernel_size[1] * c;
                let cols = if win.size == [1, 1] && win.strides == [1, 1] {
                    // Every patch is one pixel: the image already is the matrix.
                    push_reshape(
                        &mut g,
                        cur,
                        vec![batch * oh * ow, c],
                        format!("{name}.cols"),
                    )
                } else {
                    push(&mut g, Op::Im2col(win), vec![cur], format!("{name}.cols"))?
                };
                let kernel = push_reshape(
                    &mut g,
                    params[0],
                    vec![taps, *filters],
                    format!("{name}.kernel_matrix"),
                );
                let mm = Op::MatMul {
                    trans_a: false,
                    trans_b: false,
                };
                cur = push(&mut g, mm, vec![cols, kernel], format!("{name}.matmul"))?;
                let image = vec![batch, oh, ow, *filters];
                cur = push_reshape(&mut g, cur, image, format!("{name}.conv"));
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
            LayerKind::MaxPool2d {
                pool_size,
                strides,
                padding,
            } => {
                let (win, ..) = window(&g, cur, *pool_size, *strides, *padding, name)?;
                let argmax = push(
                    &mut g,
                    Op::MaxPool2dArgmax(win),
                    vec![cur],
                    format!("{name}.argmax"),
                )?;
                cur = push(
                    &mut g,
                    Op::MaxPool2d(win),
                    vec![cur, argmax],
                    format!("{name}.out"),
                )?;
                pre = None;
            }
            LayerKind::AvgPool2d {
                pool_size,
                strides,
                padding,
            } => {
                let (win, ..) = window(&g, cur, *pool_size, *strides, *padding, name)?;
                cur = push(&mut g, Op::AvgPool2d(win), vec![cur], format!("{name}.out"))?;
                pre = None;
            }
            LayerKind::BatchNorm { momentum, epsilon } => {
                let p = &layer_params[index];
                let (gamma, beta, moving_mean, moving_var) = (p[0], p[1], p[2], p[3]);
                let batch_stats = mode == Mode::Train;
                let (mean, var) = if batch_stats {
                    let mean = push(&mut g, Op::BatchMean, vec![cur], format!("{name}.mean"))?;
                    let var = push(
                        &mut g,
                        Op::BatchVariance,
                        vec![cur, mean],
                        format!("{name}.variance"),
                    )?;
                    moving.push((moving_mean, mean, *momentum));
                    moving.push((moving_var, var, *momentum));
                    (mean, var)
                } else {
                    (moving_mean, moving_var)
                };
                let op = Op::BatchNorm {
                    epsilon: *epsilon,
                    batch_stats,
                };
                cur = push(
                    &mut g,
                    op,
                    vec![cur, mean, var, gamma, beta],
                    format!("{name}.out"),
                )?;
                pre = None;
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
    if mode == Mode::Evaluate {
        return Ok(g);
    }
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
    for (avg, value, momentum) in moving {
        g.nodes.push(Node {
            op: Op::MovingAverage { momentum },
            inputs: vec![avg, value],
            output: avg,
        });
    }
    Ok(g)
}

/// The window of a conv/pool layer over `x`, which must be an image
/// `[batch, h, w, c]`; returns it with its output size and `c`.
fn window(
    g: &Graph,
    x: TensorId,
    size: [usize; 2],
    strides: [usize; 2],
    padding: crate::sema::model::Padding,
    layer: &str,
) -> Result<(Window, [usize; 2], usize), String> {
    let &[_, h, w, c] = g.tensors[x].shape.as_slice() else {
        return Err(format!(
            "layer `{layer}` needs an image input [height, width, channels], found shape {:?}",
            &g.tensors[x].shape[1..]
        ));
    };
    let win = Window {
        input: [h, w],
        size,
        strides,
        padding,
    };
    let out = win.output().map_err(|e| format!("layer `{layer}`: {e}"))?;
    Ok((win, out, c))
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
        Op::MaxPool2d(_) | Op::MaxPool2dGrad(_) | Op::BatchVariance => 2,
        Op::BatchNormGrad { .. } => 3,
        Op::BatchNormGammaGrad { .. } => 4,
        Op::BatchNorm { .. } => 5,
        Op::BatchNormTrainGrad { .. } => 7,
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
        Op::Im2col(win) => {
            let (b, [oh, ow], c) = image_of(&s(0), win)?;
            Ok(vec![b * oh * ow, win.size[0] * win.size[1] * c])
        }
        Op::Col2im(win) => {
            let [oh, ow] = win.output()?;
            let taps = win.size[0] * win.size[1];
            match s(0).as_slice() {
                &[rows, cols] if rows % (oh * ow) == 0 && cols % taps == 0 => Ok(vec![
                    rows / (oh * ow),
                    win.input[0],
                    win.input[1],
                    cols / taps,
                ]),
                other => Err(format!("col2im: {other:?} are not patches of {win:?}")),
            }
        }
        Op::MaxPool2dArgmax(win) | Op::AvgPool2d(win) => {
            let (b, [oh, ow], c) = image_of(&s(0), win)?;
            Ok(vec![b, oh, ow, c])
        }
        Op::MaxPool2d(win) => {
            let (b, [oh, ow], c) = image_of(&s(0), win)?;
            let out = vec![b, oh, ow, c];
            if s(1) != out {
                return Err(format!("max_pool: argmax {:?} does not fit {out:?}", s(1)));
            }
            Ok(out)
        }
        Op::MaxPool2dGrad(win) | Op::AvgPool2dGrad(win) => {
            let dy = s(inputs.len() - 1);
            let [oh, ow] = win.output()?;
            if matches!(op, Op::MaxPool2dGrad(_)) {
                same(0, 1)?;
            }
            match dy.as_slice() {
                &[b, h, w, c] if [h, w] == [oh, ow] => Ok(vec![b, win.input[0], win.input[1], c]),
                other => Err(format!(
                    "{op:?}: gradient {other:?} does not fit the window"
                )),
            }
        }
        Op::BatchMean => {
            let x = s(0);
            x.last()
                .map(|&n| vec![n])
                .ok_or_else(|| "batch_mean of a scalar".into())
        }
        Op::BatchVariance | Op::BatchNorm { .. } | Op::BatchNormGammaGrad { .. } => {
            let x = s(0);
            let c = vec![*x.last().ok_or("batch statistics of a scalar")?];
            let channels = if matches!(op, Op::BatchNormGammaGrad { .. }) {
                same(0, 3)?;
                1..3
            } else {
                1..inputs.len()
            };
            for i in channels {
                if s(i) != c {
                    return Err(format!(
                        "{op:?}: {:?} is not one value per channel {c:?}",
                        s(i)
                    ));
                }
            }
            Ok(if matches!(op, Op::BatchNorm { .. }) {
                x
            } else {
                c
            })
        }
        Op::BatchNormGrad { .. } => {
            let dy = s(2);
            let c = vec![*dy.last().ok_or("batch_norm_grad of a scalar")?];
            if s(0) != c || s(1) != c {
                return Err(format!("{op:?}: {:?}, {:?} do not fit {dy:?}", s(0), s(1)));
            }
            Ok(dy)
        }
        Op::BatchNormTrainGrad { .. } => {
            let x = s(0);
            let c = vec![*x.last().ok_or("batch_norm_grad of a scalar")?];
            same(0, 4)?;
            for i in [1, 2, 3, 5, 6] {
                if s(i) != c {
                    return Err(format!(
                        "{op:?}: {:?} is not one value per channel {c:?}",
                        s(i)
                    ));
                }
            }
            Ok(x)
        }
        Op::Reshape | Op::Update(_) | Op::MovingAverage { .. } => {
            Err(format!("{op:?} does not create a tensor of its own"))
        }
    }
}

/// `(batch, output size, channels)` of a window over an image of shape `x`.
fn image_of(x: &[usize], win: &Window) -> Result<(usize, [usize; 2], usize), String> {
    match *x {
        [b, h, w, c] if [h, w] == win.input => Ok((b, win.output()?, c)),
        _ => Err(format!("{x:?} is not an image of size {:?}", win.input)),
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
    fn misplaced_layers_and_missing_train_are_errors() {
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
        model.layers[0].kind = LayerKind::MaxPool2d {
            pool_size: [2, 2],
            strides: [2, 2],
            padding: crate::sema::model::Padding::Valid,
        };
        let err = train_step(&model, 4).unwrap_err();
        assert!(err.contains("needs an image input"), "{err}");
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
