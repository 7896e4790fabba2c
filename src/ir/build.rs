//! From a checked `Model` to the graph of one train step (forward, loss, backward,
//! updates) or of one predict call.

use super::autodiff;
use super::error::CompileError;
use super::graph::{Graph, LossKind, Node, Op, Origin, Pass, Role, TensorId, Window};
use super::merge::MergeOp;
use super::optim::one_minus;
use crate::ops::random::{mix64, GOLDEN_GAMMA};
use crate::sema::model::{
    Activation, Clip, LayerKind, Loss, Merge, Model, Optimizer, Regularizer, Source, Targets,
    TrainConfig,
};

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
pub fn train_step(model: &Model, batch: usize) -> Result<Graph, CompileError> {
    build(model, batch, Mode::Train).map_err(CompileError::Build)
}

/// The graph that measures the loss (and, through `output`, the metrics) of a batch
/// without training on it: dropout off, no gradients, no updates.
pub fn evaluate(model: &Model, batch: usize) -> Result<Graph, CompileError> {
    build(model, batch, Mode::Evaluate).map_err(CompileError::Build)
}

/// The graph of the forward pass on `batch` samples, dropout off. Its persistent
/// tensors are those of `train_step` (optimizer slots included, unused), so one arena
/// serves both.
pub fn predict(model: &Model, batch: usize) -> Result<Graph, CompileError> {
    build(model, batch, Mode::Predict).map_err(CompileError::Build)
}

/// A per-layer dropout seed: the train seed and the layer's index, mixed so nearby
/// seeds and layers draw unrelated masks.
fn dropout_seed(seed: u64, layer_index: usize) -> u64 {
    mix64(seed.wrapping_add((layer_index as u64 + 1).wrapping_mul(GOLDEN_GAMMA)))
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
    let mut g = Graph::new(batch);

    // Persistent tensors first, identical for every batch size and for predict.
    let mut layer_params: Vec<Vec<TensorId>> = vec![];
    let mut trainable = vec![];
    let forward = |index| Origin::Layer {
        index,
        pass: Pass::Forward,
    };
    for (index, layer) in model.layers.iter().enumerate() {
        g.origin = forward(index);
        let mut ids = vec![];
        for spec in layer.params() {
            let id = g.add_tensor(
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
        let names = optimizer.as_ref().map_or(&[][..], Optimizer::slot_names);
        let ids = names
            .iter()
            .map(|s| {
                let t = &g.tensors[p];
                let (name, shape) = (format!("{}.{s}", t.name), t.shape.clone());
                g.origin = t.origin;
                g.add_tensor(name, shape, Role::OptimizerSlot)
            })
            .collect();
        slots.push(ids);
    }
    // After the slots, so the weights and slots keep their offsets; they belong to
    // no layer, so a problem in them is reported with the loss's gradient.
    g.origin = Origin::Loss {
        pass: Pass::Backward,
    };
    if optimizer.is_some() {
        g.learning_rate = Some(g.add_tensor(
            "optimizer.learning_rate".into(),
            vec![],
            Role::OptimizerSlot,
        ));
    }
    if model
        .train
        .as_ref()
        .is_some_and(|t| t.class_weight.is_some())
    {
        // One sigmoid unit decides between classes 0 and 1.
        let classes = model.output_size().max(2);
        g.class_weights = Some(g.add_tensor(
            "loss.class_weights".into(),
            vec![classes],
            Role::OptimizerSlot,
        ));
    }

    g.origin = Origin::Data;
    let mut input_shape = vec![batch];
    input_shape.extend(&model.input_shape);
    g.input = g.add_tensor(model.input_name.clone(), input_shape, Role::Input);
    if let Some(t) = train {
        let mut out_shape = vec![batch];
        out_shape.extend(
            model
                .layers
                .last()
                .map_or(&model.input_shape, |l| &l.output_shape),
        );
        if t.loss.targets() == Targets::Sparse {
            out_shape.pop();
        }
        g.target = Some(g.add_tensor("target".into(), out_shape, Role::Target));
    }

    // Forward, in statement order (a topological order: a layer reads only layers
    // above it). `pre` is the input of the activation that produced the last layer's
    // output, if any: the logits the fused losses read.
    let mut outputs: Vec<TensorId> = Vec::with_capacity(model.layers.len());
    let mut cur = g.input;
    let mut pre: Option<(Activation, TensorId)> = None;
    // Batch normalization's (moving statistic, batch statistic, momentum) triples,
    // updated after the gradients in training.
    let mut moving: Vec<(TensorId, TensorId, f32)> = vec![];
    for (index, layer) in model.layers.iter().enumerate() {
        let sources: Vec<TensorId> = layer
            .inputs
            .iter()
            .map(|s| match s {
                Source::Input => Ok(g.input),
                Source::Layer(i) if *i < index => Ok(outputs[*i]),
                Source::Layer(i) => Err(format!(
                    "layer `{}` reads layer {i}, which is not above it",
                    layer.name
                )),
            })
            .collect::<Result<_, String>>()?;
        cur = *sources
            .first()
            .ok_or_else(|| format!("layer `{}` reads nothing", layer.name))?;
        let before = cur;
        let name = &layer.name;
        g.origin = forward(index);
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
                cur = g.push(
                    Op::MatMul {
                        trans_a: false,
                        trans_b: false,
                    },
                    vec![cur, params[0]],
                    format!("{name}.matmul"),
                )?;
                if *use_bias {
                    cur = g.push(Op::AddBias, vec![cur, params[1]], format!("{name}.biased"))?;
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
                    cur = g.push_reshape(cur, shape, format!("{name}.out"));
                }
                pre = None;
            }
            LayerKind::Dropout { rate } => {
                if let Some(t) = train.filter(|_| *rate > 0.0 && mode == Mode::Train) {
                    let op = Op::Dropout {
                        rate: *rate,
                        seed: dropout_seed(t.seed, index),
                    };
                    cur = g.push(op, vec![cur], format!("{name}.out"))?;
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
                let (win, ..) = window(&g, cur, *kernel_size, *strides, *padding, name)?;
                let params = &layer_params[index];
                cur = convolve(&mut g, cur, win, *filters, params, *use_bias, name)?;
                (cur, pre) = activate(&mut g, cur, *activation, name)?;
            }
            LayerKind::Conv1d {
                filters,
                kernel_size,
                strides,
                padding,
                activation,
                use_bias,
                ..
            } => {
                // The sequence is an image one pixel high.
                let image = as_image(&mut g, cur, name)?;
                let (win, ..) =
                    window(&g, image, [1, *kernel_size], [1, *strides], *padding, name)?;
                let params = &layer_params[index];
                let conv = convolve(&mut g, image, win, *filters, params, *use_bias, name)?;
                cur = as_sequence(&mut g, conv, name);
                (cur, pre) = activate(&mut g, cur, *activation, name)?;
            }
            LayerKind::Pool1d {
                max,
                pool_size,
                strides,
                padding,
            } => {
                let image = as_image(&mut g, cur, name)?;
                let (win, ..) = window(&g, image, [1, *pool_size], [1, *strides], *padding, name)?;
                let pooled = if *max {
                    let argmax = g.push(
                        Op::MaxPool2dArgmax(win),
                        vec![image],
                        format!("{name}.argmax"),
                    )?;
                    g.push(
                        Op::MaxPool2d(win),
                        vec![image, argmax],
                        format!("{name}.pool"),
                    )?
                } else {
                    g.push(Op::AvgPool2d(win), vec![image], format!("{name}.pool"))?
                };
                cur = as_sequence(&mut g, pooled, name);
                pre = None;
            }
            LayerKind::MaxPool2d {
                pool_size,
                strides,
                padding,
            } => {
                let (win, ..) = window(&g, cur, *pool_size, *strides, *padding, name)?;
                let argmax = g.push(
                    Op::MaxPool2dArgmax(win),
                    vec![cur],
                    format!("{name}.argmax"),
                )?;
                cur = g.push(Op::MaxPool2d(win), vec![cur, argmax], format!("{name}.out"))?;
                pre = None;
            }
            LayerKind::AvgPool2d {
                pool_size,
                strides,
                padding,
            } => {
                let (win, ..) = window(&g, cur, *pool_size, *strides, *padding, name)?;
                cur = g.push(Op::AvgPool2d(win), vec![cur], format!("{name}.out"))?;
                pre = None;
            }
            LayerKind::Embedding { .. } => {
                if cur != g.input {
                    return Err(format!(
                        "layer `{name}`: embedding reads the model's input, the token ids"
                    ));
                }
                let table = layer_params[index][0];
                cur = g.push(Op::Gather, vec![cur, table], format!("{name}.out"))?;
                pre = None;
            }
            LayerKind::LayerNorm {
                epsilon,
                center,
                scale,
            } => {
                let op = Op::LayerNorm {
                    epsilon: *epsilon,
                    scale: *scale,
                    center: *center,
                };
                let mut inputs = vec![cur];
                inputs.extend(&layer_params[index]);
                cur = g.push(op, inputs, format!("{name}.out"))?;
                pre = None;
            }
            LayerKind::GlobalPool { max, .. } => {
                cur = global_pool(&mut g, cur, *max, name)?;
                pre = None;
            }
            LayerKind::BatchNorm { momentum, epsilon } => {
                let p = &layer_params[index];
                let (gamma, beta, moving_mean, moving_var) = (p[0], p[1], p[2], p[3]);
                let batch_stats = mode == Mode::Train;
                let (mean, var) = if batch_stats {
                    let mean = g.push(Op::BatchMean, vec![cur], format!("{name}.mean"))?;
                    let var = g.push(
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
                cur = g.push(op, vec![cur, mean, var, gamma, beta], format!("{name}.out"))?;
                pre = None;
            }
            LayerKind::Merge(m) => {
                cur = merge(&mut g, *m, &sources, name)?;
                pre = None;
            }
        }
        if cur != before {
            g.tensors[cur].name = format!("{name}.out");
        }
        outputs.push(cur);
    }
    if !matches!(g.tensors[cur].role, Role::Temp) {
        // Identity layers only: the runtime reads the output from the arena.
        let shape = g.tensors[cur].shape.clone();
        cur = g.push_reshape(cur, shape, "output".into());
    }
    g.output = cur;

    let (Some(t), Some(target)) = (train, g.target) else {
        return Ok(g);
    };
    g.origin = Origin::Loss {
        pass: Pass::Forward,
    };
    let (kind, prediction) = loss_kind(t.loss, pre, g.output);
    let smoothed = smooth_labels(&mut g, target, t)?;
    // Keras weighs the training loss by class, never the evaluation's.
    let data_loss = match (g.class_weights, mode) {
        (Some(table), Mode::Train) => {
            let w = g.push(
                Op::ClassWeights,
                vec![target, table],
                "sample_weights".into(),
            )?;
            let inputs = vec![prediction, smoothed, w];
            g.push(Op::WeightedLoss(kind), inputs, "loss".into())?
        }
        _ => g.push(Op::Loss(kind), vec![prediction, smoothed], "loss".into())?,
    };
    let mut loss = data_loss;
    // Keras adds each kernel regularizer's penalty to the loss it reports and
    // differentiates, in training and in evaluation, in layer order.
    for (layer, params) in model.layers.iter().zip(&layer_params) {
        if let Some(Regularizer { l1, l2 }) = layer.kernel_regularizer() {
            let name = format!("{}.kernel_regularizer", layer.name);
            let penalty = g.push(Op::Penalty { l1, l2 }, vec![params[0]], name)?;
            loss = g.push(Op::Add, vec![loss, penalty], "loss".into())?;
        }
    }
    if loss != data_loss {
        g.tensors[data_loss].name = "data_loss".into();
    }
    g.loss = Some(loss);
    if mode == Mode::Evaluate {
        return Ok(g);
    }
    let grads = autodiff::gradients(&mut g, loss, &trainable)?;
    let grads = clip(&mut g, grads, t.clip)?;
    let lr = g
        .learning_rate
        .ok_or("a train step needs the learning rate's tensor")?;
    if let Some(schedule) = &t.schedule {
        g.nodes.push(Node {
            op: Op::LearningRate(schedule.clone()),
            inputs: vec![lr],
            output: lr,
        });
    }
    for ((&p, gp), s) in trainable.iter().zip(grads).zip(slots) {
        let mut inputs = vec![p, gp, lr];
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

/// The targets the loss reads: with `label_smoothing`, Keras's smoothed labels,
/// `y * (1 - ls) + ls / classes` (categorical) or `y * (1 - ls) + 0.5 * ls` (binary).
fn smooth_labels(g: &mut Graph, target: TensorId, t: &TrainConfig) -> Result<TensorId, String> {
    let ls = t.label_smoothing;
    if ls == 0.0 {
        return Ok(target);
    }
    // Keras smooths one-hot rows towards `1 / classes` and binary targets towards 0.5.
    let shift = match t.loss.targets() {
        Targets::OneHot if t.loss.smooths_labels() => {
            let classes = g.tensors[target].shape.last().copied().unwrap_or(1);
            ls / classes as f32
        }
        Targets::Binary if t.loss.smooths_labels() => (0.5 * f64::from(ls)) as f32,
        _ => {
            return Err(format!(
                "label smoothing applies to the cross-entropies, not `{}`",
                t.loss.keyword()
            ))
        }
    };
    let op = Op::Affine {
        scale: one_minus(ls),
        shift,
    };
    g.push(op, vec![target], "smoothed_target".into())
}

/// The gradients `grads` after the optimizer's clipping, as Keras 3 clips them before
/// any update.
fn clip(g: &mut Graph, grads: Vec<TensorId>, clip: Option<Clip>) -> Result<Vec<TensorId>, String> {
    let name = |g: &Graph, d: TensorId| format!("clipped({})", g.tensors[d].name);
    match clip {
        None => Ok(grads),
        Some(Clip::Norm(clipnorm)) => grads
            .into_iter()
            .map(|d| {
                g.origin = g.tensors[d].origin;
                g.push(Op::ClipNorm { clipnorm }, vec![d], name(g, d))
            })
            .collect(),
        Some(Clip::Value(limit)) => grads
            .into_iter()
            .map(|d| {
                g.origin = g.tensors[d].origin;
                g.push(Op::ClipValue { limit }, vec![d], name(g, d))
            })
            .collect(),
        Some(Clip::GlobalNorm(clipnorm)) => {
            let op = Op::GlobalClipScale {
                clipnorm,
                count: grads.len(),
            };
            g.origin = Origin::Loss {
                pass: Pass::Backward,
            };
            let scale = g.push(op, grads.clone(), "global_clip_scale".into())?;
            grads
                .into_iter()
                .map(|d| {
                    g.origin = g.tensors[d].origin;
                    g.push(Op::Scale, vec![d, scale], name(g, d))
                })
                .collect()
        }
    }
}

/// A convolution of the image `x` `[batch, h, w, c]` with `params` (the kernel
/// `[kh, kw, c, filters]` or, for conv1d, `[kw, c, filters]`: the same elements,
/// then the bias): im2col, one matrix product, the bias.
fn convolve(
    g: &mut Graph,
    x: TensorId,
    win: Window,
    filters: usize,
    params: &[TensorId],
    use_bias: bool,
    name: &str,
) -> Result<TensorId, String> {
    let (batch, c) = (g.batch, *g.tensors[x].shape.last().unwrap_or(&1));
    let [oh, ow] = win.output().map_err(|e| format!("layer `{name}`: {e}"))?;
    let taps = win.size[0] * win.size[1] * c;
    let cols = if win.size == [1, 1] && win.strides == [1, 1] {
        // Every patch is one pixel: the image already is the matrix.
        g.push_reshape(x, vec![batch * oh * ow, c], format!("{name}.cols"))
    } else {
        g.push(Op::Im2col(win), vec![x], format!("{name}.cols"))?
    };
    let kernel = g.push_reshape(
        params[0],
        vec![taps, filters],
        format!("{name}.kernel_matrix"),
    );
    let mm = Op::MatMul {
        trans_a: false,
        trans_b: false,
    };
    let mut cur = g.push(mm, vec![cols, kernel], format!("{name}.matmul"))?;
    cur = g.push_reshape(cur, vec![batch, oh, ow, filters], format!("{name}.conv"));
    if use_bias {
        cur = g.push(Op::AddBias, vec![cur, params[1]], format!("{name}.biased"))?;
    }
    Ok(cur)
}

/// The sequence `x` `[batch, steps, c]` as the image `[batch, 1, steps, c]`.
fn as_image(g: &mut Graph, x: TensorId, name: &str) -> Result<TensorId, String> {
    match *g.tensors[x].shape.as_slice() {
        [b, steps, c] => Ok(g.push_reshape(x, vec![b, 1, steps, c], format!("{name}.image"))),
        ref other => Err(format!(
            "layer `{name}` needs a sequence input [steps, channels], found shape {:?}",
            &other[1..]
        )),
    }
}

/// The image `x` `[batch, 1, steps, c]` as the sequence `[batch, steps, c]`.
fn as_sequence(g: &mut Graph, x: TensorId, name: &str) -> TensorId {
    let shape = &g.tensors[x].shape;
    let sequence = vec![shape[0], shape[2], shape[3]];
    g.push_reshape(x, sequence, format!("{name}.sequence"))
}

/// A merge layer over `inputs` (two or more tensors of one shape, or for concatenate
/// of shapes that agree but on the axis), left to right as Keras computes it.
fn merge(g: &mut Graph, m: Merge, inputs: &[TensorId], name: &str) -> Result<TensorId, String> {
    let [first, rest @ ..] = inputs else {
        return Err(format!("layer `{name}` merges no inputs"));
    };
    let binary = match m {
        Merge::Add | Merge::Average => Op::Add,
        Merge::Subtract => Op::Merge(MergeOp::Sub),
        Merge::Multiply => Op::Merge(MergeOp::Mul),
        Merge::Maximum => Op::Merge(MergeOp::Extremum { max: true }),
        Merge::Minimum => Op::Merge(MergeOp::Extremum { max: false }),
        Merge::Concatenate { axis } => {
            let op = Op::Merge(MergeOp::Concat {
                axis: axis + 1,
                parts: inputs.len(),
            });
            return g.push(op, inputs.to_vec(), format!("{name}.out"));
        }
    };
    if rest.is_empty() {
        return Err(format!("layer `{name}` merges one input"));
    }
    let mut acc = *first;
    for (i, &x) in rest.iter().enumerate() {
        acc = g.push(binary.clone(), vec![acc, x], format!("{name}.{i}"))?;
    }
    if m == Merge::Average {
        let scale = Op::Merge(MergeOp::ScaleBy(1.0 / inputs.len() as f32));
        acc = g.push(scale, vec![acc], format!("{name}.mean"))?;
    }
    Ok(acc)
}

/// Global pooling: one window over the whole of `x` (`[batch, steps, c]` is seen
/// as the image `[batch, 1, steps, c]`), then `[batch, c]`.
fn global_pool(g: &mut Graph, x: TensorId, max: bool, layer: &str) -> Result<TensorId, String> {
    let shape = g.tensors[x].shape.clone();
    let (image, size) = match *shape.as_slice() {
        [_, steps, _] => (as_image(g, x, layer)?, [1, steps]),
        [_, h, w, _] => (x, [h, w]),
        _ => {
            return Err(format!(
                "layer `{layer}` needs a sequence or an image input, found shape {:?}",
                &shape[1..]
            ))
        }
    };
    let win = Window {
        input: size,
        size,
        strides: size,
        padding: crate::sema::model::Padding::Valid,
    };
    let pooled = if max {
        let argmax = g.push(
            Op::MaxPool2dArgmax(win),
            vec![image],
            format!("{layer}.argmax"),
        )?;
        g.push(
            Op::MaxPool2d(win),
            vec![image, argmax],
            format!("{layer}.pool"),
        )?
    } else {
        g.push(Op::AvgPool2d(win), vec![image], format!("{layer}.pool"))?
    };
    let (b, c) = (shape[0], shape[shape.len() - 1]);
    Ok(g.push_reshape(pooled, vec![b, c], format!("{layer}.out")))
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
    Ok((g.push(op, vec![x], format!("{layer}.out"))?, Some((a, x))))
}

/// The loss node's kind and the tensor it reads: the logits when the model ends in the
/// activation the loss can be fused with.
fn loss_kind(
    loss: Loss,
    pre: Option<(Activation, TensorId)>,
    output: TensorId,
) -> (LossKind, TensorId) {
    let kind = LossKind::of(loss, pre.map(|(a, _)| a));
    match pre {
        Some((_, logits)) if kind.reads_logits() => (kind, logits),
        _ => (kind, output),
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
        // 2 layers x (kernel, bias), each with two Adam slots, and the learning rate.
        let persistent = |g: &Graph| g.tensors.iter().filter(|t| t.role.is_persistent()).count();
        assert_eq!(persistent(&graphs[0]), 13);
        for (g, l) in graphs.iter().zip(&layouts).skip(1) {
            assert_eq!(persistent(g), 13);
            assert_eq!(g.learning_rate, graphs[0].learning_rate);
            assert_eq!(l.persistent_len, layouts[0].persistent_len);
            for id in 0..13 {
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
    fn every_tensor_knows_its_layer_and_pass() {
        let sgd = Optimizer::Sgd {
            learning_rate: 0.1,
            momentum: 0.9,
            nesterov: false,
        };
        let model = dense_model(
            3,
            &[(4, Activation::Relu), (2, Activation::Softmax)],
            Loss::CategoricalCrossentropy,
            sgd,
        );
        let g = train_step(&model, 5).unwrap();
        let layer = |index, pass| Origin::Layer { index, pass };
        assert_eq!(g.tensors[g.input].origin, Origin::Data);
        assert_eq!(
            g.tensors[g.loss.unwrap()].origin,
            Origin::Loss {
                pass: Pass::Forward
            }
        );
        assert_eq!(g.tensors[g.output].origin, layer(1, Pass::Forward));
        for node in g.nodes.iter().filter(|n| matches!(n.op, Op::Update(_))) {
            // inputs[2] is the learning rate, shared by every update.
            let (param, grad, slot) = (node.inputs[0], node.inputs[1], node.inputs[3]);
            let Role::Param { layer: name, .. } = &g.tensors[param].role else {
                panic!("an update of a non-parameter");
            };
            let index = model.layers.iter().position(|l| &l.name == name).unwrap();
            assert_eq!(g.tensors[param].origin, layer(index, Pass::Forward));
            assert_eq!(g.tensors[slot].origin, layer(index, Pass::Forward));
            assert_eq!(g.tensors[grad].origin, layer(index, Pass::Backward));
        }
        let loss_grad = g.nodes.iter().find(|n| matches!(n.op, Op::LossGrad(_)));
        assert_eq!(
            g.tensors[loss_grad.unwrap().output].origin,
            Origin::Loss {
                pass: Pass::Backward
            }
        );
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
        let err = train_step(&model, 4).unwrap_err().to_string();
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
