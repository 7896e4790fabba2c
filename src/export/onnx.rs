//! `nnc export --onnx`: the inference graph of a trained model as an ONNX model
//! (IR version 8, opset 17) that onnxruntime runs to `nnc predict`'s outputs.
//!
//! The ONNX model's input is the model's input, raw: when the model was trained with
//! `standardize`, its first nodes subtract the training means and divide by the
//! standard deviations, as `nnc predict` does. Tensors stay channels-last (NHWC, as
//! in nnc and Keras) between layers; convolution and pooling, which ONNX defines on
//! NCHW, get a `Transpose` before them, and one back only where a layer needs
//! channels-last again (flatten, reshape, dense, the output), so that a stack of
//! conv/pool layers is transposed once. Kernels go from Keras's HWIO to ONNX's OIHW.
//! `same` padding is written as explicit pads, the extra row or column after the
//! input as Keras pads; `avgpool2d` does not count the padding, as Keras.
//! Batch normalization is its inference form (moving statistics); dropout is the
//! identity and leaves no node. Sequence layers (`conv1d`, the 1-d pools) run on
//! `[batch, c, steps]` between two transposes.

use prost::Message;

use super::onnx_proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use crate::ir::graph::Window;
use crate::ops::activation::{SELU_SCALE, SELU_SCALE_ALPHA};
use crate::runtime::trained::Trained;
use crate::sema::model::{Activation, LayerKind, Merge, Model, Padding, Source};

/// The opset the nodes are written for: the first with `Softmax` over one axis and
/// every operator used here in its current form.
pub const OPSET: i64 = 17;
/// ONNX IR version 8 (ONNX 1.10 and later read it; opset 17 needs at least 8).
const IR_VERSION: i64 = 8;

/// The serialized ONNX model of `model` with the weights of `trained`.
pub fn export(model: &Model, trained: &Trained) -> Result<Vec<u8>, String> {
    let mut b = Builder::new(trained);
    let output = "output";
    b.names.insert(output.to_string());
    b.names.insert(model.input_name.clone());
    let mut x = model.input_name.clone();
    let mut nchw = false;
    if let Some((mean, std)) = &trained.preparation.standardization {
        let shape = model.input_shape.clone();
        let m = b.constant("standardize.mean", &shape, &to_f32(mean));
        let s = b.constant("standardize.std", &shape, &to_f32(std));
        let centred = b.node("Sub", &[&x, &m], vec![], "standardize.centred");
        x = b.node("Div", &[&centred, &s], vec![], "standardize");
    }
    // Each layer's output: its ONNX name and whether it is NCHW. A layer starts from
    // its (first) input's.
    let mut outputs: Vec<(String, bool)> = vec![];
    let source = |s: &Source, outputs: &[(String, bool)], input: &(String, bool)| match s {
        Source::Input => input.clone(),
        Source::Layer(i) => outputs[*i].clone(),
    };
    let input = (x.clone(), nchw);
    for layer in &model.layers {
        let name = layer.name.as_str();
        let rank = layer.input_shape.len() + 1;
        (x, nchw) = match layer.inputs.first() {
            Some(s) => source(s, &outputs, &input),
            None => return Err(format!("layer `{name}` reads nothing")),
        };
        match &layer.kind {
            LayerKind::Dense {
                activation,
                use_bias,
                ..
            } => {
                x = b.channels_last(&x, &mut nchw, rank);
                let kernel = b.weight(name, "kernel")?;
                x = if *use_bias {
                    let bias = b.weight(name, "bias")?;
                    b.node("Gemm", &[&x, &kernel, &bias], vec![], name)
                } else {
                    b.node("MatMul", &[&x, &kernel], vec![], name)
                };
                x = b.activation(&x, *activation, false, name);
            }
            LayerKind::Conv2d {
                filters,
                kernel_size,
                strides,
                padding,
                activation,
                use_bias,
                ..
            } => {
                x = b.channels_first(&x, &mut nchw);
                let c = layer.input_shape[2];
                let hwio = b.values(&format!("{name}.kernel"))?;
                let oihw = hwio_to_oihw(hwio, *kernel_size, c, *filters);
                let kernel = b.constant(
                    &format!("{name}.kernel"),
                    &[*filters, c, kernel_size[0], kernel_size[1]],
                    &oihw,
                );
                let mut inputs = vec![x.clone(), kernel];
                if *use_bias {
                    inputs.push(b.weight(name, "bias")?);
                }
                let attrs = window_attrs(
                    layer.input_shape[..2].try_into().unwrap_or([0; 2]),
                    *kernel_size,
                    *strides,
                    *padding,
                );
                let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                x = b.node("Conv", &refs, attrs, name);
                x = b.activation(&x, *activation, true, name);
            }
            LayerKind::MaxPool2d {
                pool_size,
                strides,
                padding,
            }
            | LayerKind::AvgPool2d {
                pool_size,
                strides,
                padding,
            } => {
                x = b.channels_first(&x, &mut nchw);
                let input = [layer.input_shape[0], layer.input_shape[1]];
                let mut attrs = window_attrs(input, *pool_size, *strides, *padding);
                let op = if matches!(layer.kind, LayerKind::MaxPool2d { .. }) {
                    "MaxPool"
                } else {
                    // Keras averages over the window's cells inside the input only.
                    attrs.push(int_attr("count_include_pad", 0));
                    "AveragePool"
                };
                x = b.node(op, &[&x], attrs, name);
            }
            LayerKind::BatchNorm { epsilon, .. } => {
                let params: Vec<String> = ["gamma", "beta", "moving_mean", "moving_variance"]
                    .iter()
                    .map(|p| b.weight(name, p))
                    .collect::<Result<_, _>>()?;
                let attrs = vec![float_attr("epsilon", *epsilon)];
                // ONNX normalizes axis 1: NCHW images as they are, and any other
                // rank with its last axis moved there and back.
                let moved = rank > 2 && !(rank == 4 && nchw);
                if moved {
                    x = b.channels_last(&x, &mut nchw, rank);
                    let to_front: Vec<i64> = std::iter::once(0)
                        .chain(std::iter::once(rank as i64 - 1))
                        .chain(1..rank as i64 - 1)
                        .collect();
                    x = b.transpose(&x, &to_front, &format!("{name}.channels_first"));
                }
                let mut inputs = vec![x.as_str()];
                inputs.extend(params.iter().map(String::as_str));
                x = b.node("BatchNormalization", &inputs, attrs, name);
                if moved {
                    let back: Vec<i64> = std::iter::once(0)
                        .chain(2..rank as i64)
                        .chain(std::iter::once(1))
                        .collect();
                    x = b.transpose(&x, &back, &format!("{name}.channels_last"));
                }
            }
            LayerKind::GlobalPool { max, dims } => {
                x = if *dims == 2 {
                    // GlobalAveragePool/GlobalMaxPool give [batch, c, 1, 1].
                    x = b.channels_first(&x, &mut nchw);
                    let op = if *max {
                        "GlobalMaxPool"
                    } else {
                        "GlobalAveragePool"
                    };
                    let pooled = b.node(op, &[&x], vec![], &format!("{name}.pool"));
                    nchw = false;
                    b.node("Flatten", &[&pooled], vec![int_attr("axis", 1)], name)
                } else {
                    let op = if *max { "ReduceMax" } else { "ReduceMean" };
                    let attrs = vec![ints_attr("axes", &[1]), int_attr("keepdims", 0)];
                    b.node(op, &[&x], attrs, name)
                };
            }
            LayerKind::Embedding { .. } => {
                // The ids arrive as floats (whole numbers, as the data checks hold).
                let ids = b.node(
                    "Cast",
                    &[&x],
                    vec![int_attr("to", DataType::Int64 as i64)],
                    &format!("{name}.ids"),
                );
                let table = b.weight(name, "embeddings")?;
                x = b.node("Gather", &[&table, &ids], vec![int_attr("axis", 0)], name);
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
                // ONNX's 1-d Conv reads [batch, c, steps].
                let [steps, c] = [layer.input_shape[0], layer.input_shape[1]];
                let ncw = b.transpose(&x, &[0, 2, 1], &format!("{name}.ncw"));
                // Keras's [k, c, filters] is HWIO with a height of 1; OIHW's
                // elements are then those of [filters, c, k].
                let wio = b.values(&format!("{name}.kernel"))?;
                let oiw = hwio_to_oihw(wio, [1, *kernel_size], c, *filters);
                let kernel = b.constant(
                    &format!("{name}.kernel"),
                    &[*filters, c, *kernel_size],
                    &oiw,
                );
                let mut inputs = vec![ncw, kernel];
                if *use_bias {
                    inputs.push(b.weight(name, "bias")?);
                }
                let attrs = window_attrs_1d(steps, *kernel_size, *strides, *padding);
                let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                let conv = b.node("Conv", &refs, attrs, &format!("{name}.conv"));
                x = b.transpose(&conv, &[0, 2, 1], name);
                x = b.activation(&x, *activation, false, name);
            }
            LayerKind::Pool1d {
                max,
                pool_size,
                strides,
                padding,
            } => {
                let ncw = b.transpose(&x, &[0, 2, 1], &format!("{name}.ncw"));
                let mut attrs =
                    window_attrs_1d(layer.input_shape[0], *pool_size, *strides, *padding);
                let op = if *max {
                    "MaxPool"
                } else {
                    attrs.push(int_attr("count_include_pad", 0));
                    "AveragePool"
                };
                let pooled = b.node(op, &[&ncw], attrs, &format!("{name}.pool"));
                x = b.transpose(&pooled, &[0, 2, 1], name);
            }
            LayerKind::LayerNorm {
                epsilon,
                center,
                scale,
            } => {
                x = b.channels_last(&x, &mut nchw, rank);
                let c = *layer.input_shape.last().unwrap_or(&1);
                // ONNX's Scale is required: ones when the layer has no gamma.
                let gamma = if *scale {
                    b.weight(name, "gamma")?
                } else {
                    b.constant(&format!("{name}.ones"), &[c], &vec![1.0; c])
                };
                let mut inputs = vec![x.clone(), gamma];
                if *center {
                    inputs.push(b.weight(name, "beta")?);
                }
                let attrs = vec![int_attr("axis", -1), float_attr("epsilon", *epsilon)];
                let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                x = b.node("LayerNormalization", &refs, attrs, name);
            }
            LayerKind::Dropout { .. } => {}
            LayerKind::Flatten => {
                x = b.channels_last(&x, &mut nchw, rank);
                x = b.node("Flatten", &[&x], vec![int_attr("axis", 1)], name);
            }
            LayerKind::Reshape { shape } => {
                x = b.channels_last(&x, &mut nchw, rank);
                let dims: Vec<i64> = std::iter::once(-1)
                    .chain(shape.iter().map(|&d| d as i64))
                    .collect();
                let target = b.constant_i64(&format!("{name}.shape"), &dims);
                x = b.node("Reshape", &[&x, &target], vec![], name);
            }
            LayerKind::Activation(a) => {
                x = b.activation(&x, *a, nchw && rank == 4, name);
            }
            LayerKind::Merge(m) => {
                // Every input channels-last, so that the merged axes line up.
                let mut inputs = vec![];
                for s in &layer.inputs {
                    let (t, mut t_nchw) = source(s, &outputs, &input);
                    inputs.push(b.channels_last(&t, &mut t_nchw, rank));
                }
                nchw = false;
                let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                x = match m {
                    // Keras's order, left to right, for the binary ones.
                    Merge::Add | Merge::Subtract | Merge::Multiply => {
                        let op = match m {
                            Merge::Add => "Add",
                            Merge::Subtract => "Sub",
                            _ => "Mul",
                        };
                        let mut acc = refs[0].to_string();
                        for r in &refs[1..] {
                            acc = b.node(op, &[&acc, r], vec![], name);
                        }
                        acc
                    }
                    Merge::Average => b.node("Mean", &refs, vec![], name),
                    Merge::Maximum => b.node("Max", &refs, vec![], name),
                    Merge::Minimum => b.node("Min", &refs, vec![], name),
                    Merge::Concatenate { axis } => {
                        let attrs = vec![int_attr("axis", *axis as i64 + 1)];
                        b.node("Concat", &refs, attrs, name)
                    }
                };
            }
        }
        outputs.push((x.clone(), nchw));
    }
    let out_rank = model
        .layers
        .last()
        .map_or(model.input_shape.len(), |l| l.output_shape.len())
        + 1;
    x = b.channels_last(&x, &mut nchw, out_rank);
    b.node_named("Identity", &[&x], vec![], output);

    let out_shape = model
        .layers
        .last()
        .map_or(model.input_shape.clone(), |l| l.output_shape.clone());
    let graph = GraphProto {
        name: Some(model.name.clone()),
        node: b.nodes,
        initializer: b.initializers,
        input: vec![value_info(&model.input_name, &model.input_shape)],
        output: vec![value_info(output, &out_shape)],
        ..Default::default()
    };
    let json = |v: &[String]| serde_json::Value::from(v.to_vec()).to_string();
    let prep = &trained.preparation;
    let model_proto = ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        producer_name: Some("nnc".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        graph: Some(graph),
        metadata_props: vec![
            entry("classes", json(&prep.classes)),
            entry("features", json(&prep.features)),
        ],
        ..Default::default()
    };
    Ok(model_proto.encode_to_vec())
}

/// Builds the node list and initializers, naming every value uniquely.
struct Builder<'t> {
    trained: &'t Trained,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    names: std::collections::HashSet<String>,
}

impl<'t> Builder<'t> {
    fn new(trained: &'t Trained) -> Self {
        Builder {
            trained,
            nodes: vec![],
            initializers: vec![],
            names: Default::default(),
        }
    }

    /// `hint`, or `hint_1`, `hint_2`, ... if taken.
    fn fresh(&mut self, hint: &str) -> String {
        let mut name = hint.to_string();
        let mut i = 1;
        while self.names.contains(&name) {
            name = format!("{hint}_{i}");
            i += 1;
        }
        self.names.insert(name.clone());
        name
    }

    fn values(&self, name: &str) -> Result<&'t [f32], String> {
        self.trained
            .tensor(name)
            .ok_or_else(|| format!("the weights have no tensor `{name}`"))
    }

    /// A weight of the model as an initializer, in Keras's layout.
    fn weight(&mut self, layer: &str, param: &str) -> Result<String, String> {
        let name = format!("{layer}.{param}");
        let (_, shape, values) = self
            .trained
            .weights
            .iter()
            .find(|(n, _, _)| *n == name)
            .ok_or_else(|| format!("the weights have no tensor `{name}`"))?;
        Ok(self.constant(&name, shape, values))
    }

    fn constant(&mut self, hint: &str, shape: &[usize], values: &[f32]) -> String {
        let name = self.fresh(hint);
        self.initializers.push(TensorProto {
            name: Some(name.clone()),
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: Some(DataType::Float as i32),
            raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
            ..Default::default()
        });
        name
    }

    fn constant_i64(&mut self, hint: &str, values: &[i64]) -> String {
        let name = self.fresh(hint);
        self.initializers.push(TensorProto {
            name: Some(name.clone()),
            dims: vec![values.len() as i64],
            data_type: Some(DataType::Int64 as i32),
            raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
            ..Default::default()
        });
        name
    }

    /// A node with one output named after `hint`; returns the output's name.
    fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
        hint: &str,
    ) -> String {
        let out = self.fresh(hint);
        self.node_named(op, inputs, attrs, &out);
        out
    }

    fn node_named(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>, out: &str) {
        self.names.insert(out.to_string());
        self.nodes.push(NodeProto {
            op_type: Some(op.into()),
            name: Some(format!("{out}.{op}")),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.to_string()],
            attribute: attrs,
            ..Default::default()
        });
    }

    fn transpose(&mut self, x: &str, perm: &[i64], hint: &str) -> String {
        self.node("Transpose", &[x], vec![ints_attr("perm", perm)], hint)
    }

    /// `x` in NCHW (transposed from NHWC unless it is already).
    fn channels_first(&mut self, x: &str, nchw: &mut bool) -> String {
        if *nchw {
            return x.to_string();
        }
        *nchw = true;
        self.transpose(x, &[0, 3, 1, 2], &format!("{x}.nchw"))
    }

    /// `x` in NHWC, nnc's layout (transposed back from NCHW if needed).
    fn channels_last(&mut self, x: &str, nchw: &mut bool, rank: usize) -> String {
        if !*nchw || rank != 4 {
            return x.to_string();
        }
        *nchw = false;
        self.transpose(x, &[0, 2, 3, 1], &format!("{x}.nhwc"))
    }

    /// `activation(x)`; softmax over the channels, axis 1 when `nchw`.
    fn activation(&mut self, x: &str, a: Activation, nchw: bool, layer: &str) -> String {
        let hint = format!("{layer}.{}", a.name());
        match a {
            Activation::Linear => x.to_string(),
            Activation::Relu => self.node("Relu", &[x], vec![], &hint),
            Activation::LeakyRelu { alpha } => {
                self.node("LeakyRelu", &[x], vec![float_attr("alpha", alpha)], &hint)
            }
            Activation::Elu { alpha } => {
                self.node("Elu", &[x], vec![float_attr("alpha", alpha)], &hint)
            }
            Activation::Sigmoid => self.node("Sigmoid", &[x], vec![], &hint),
            Activation::Tanh => self.node("Tanh", &[x], vec![], &hint),
            Activation::Softplus => self.node("Softplus", &[x], vec![], &hint),
            Activation::Softmax => {
                let axis = if nchw { 1 } else { -1 };
                self.node("Softmax", &[x], vec![int_attr("axis", axis)], &hint)
            }
            Activation::Silu => {
                let s = self.node("Sigmoid", &[x], vec![], &format!("{hint}.sigmoid"));
                self.node("Mul", &[x, &s], vec![], &hint)
            }
            Activation::Selu => {
                // ONNX's Selu is gamma * alpha * (exp(x) - 1) below 0: Keras's
                // constants as nnc holds them (scale, scale * alpha).
                let attrs = vec![
                    float_attr("alpha", SELU_SCALE_ALPHA / SELU_SCALE),
                    float_attr("gamma", SELU_SCALE),
                ];
                self.node("Selu", &[x], attrs, &hint)
            }
            Activation::Softsign => self.node("Softsign", &[x], vec![], &hint),
            // relu6(x + 3) / 6 is max(0, min(1, x / 6 + 0.5)).
            Activation::HardSigmoid => self.node(
                "HardSigmoid",
                &[x],
                vec![float_attr("alpha", 1.0 / 6.0), float_attr("beta", 0.5)],
                &hint,
            ),
            Activation::Mish => {
                // Mish is an operator from opset 18 on.
                let sp = self.node("Softplus", &[x], vec![], &format!("{hint}.softplus"));
                let t = self.node("Tanh", &[&sp], vec![], &format!("{hint}.tanh"));
                self.node("Mul", &[x, &t], vec![], &hint)
            }
            Activation::Exponential => self.node("Exp", &[x], vec![], &hint),
            Activation::Gelu => {
                // Keras's exact gelu: x * 0.5 * (1 + erf(x / sqrt(2))); opset 17 has
                // no Gelu operator.
                let sqrt2 =
                    self.constant(&format!("{hint}.sqrt2"), &[], &[std::f32::consts::SQRT_2]);
                let one = self.constant(&format!("{hint}.one"), &[], &[1.0]);
                let half = self.constant(&format!("{hint}.half"), &[], &[0.5]);
                let scaled = self.node("Div", &[x, &sqrt2], vec![], &format!("{hint}.scaled"));
                let erf = self.node("Erf", &[&scaled], vec![], &format!("{hint}.erf"));
                let plus = self.node("Add", &[&erf, &one], vec![], &format!("{hint}.plus"));
                let times = self.node("Mul", &[x, &half], vec![], &format!("{hint}.half_x"));
                self.node("Mul", &[&times, &plus], vec![], &hint)
            }
        }
    }
}

/// Keras's `[kh, kw, in, out]` kernel as ONNX's `[out, in, kh, kw]`.
fn hwio_to_oihw(hwio: &[f32], k: [usize; 2], c: usize, filters: usize) -> Vec<f32> {
    let mut out = vec![0f32; hwio.len()];
    for h in 0..k[0] {
        for w in 0..k[1] {
            for i in 0..c {
                for o in 0..filters {
                    out[((o * c + i) * k[0] + h) * k[1] + w] =
                        hwio[((h * k[1] + w) * c + i) * filters + o];
                }
            }
        }
    }
    out
}

/// `kernel_shape`, `strides` and explicit `pads` (top, left, bottom, right) of a
/// window as Keras pads it: `same` puts the odd row or column after the input.
fn window_attrs(
    input: [usize; 2],
    size: [usize; 2],
    strides: [usize; 2],
    padding: Padding,
) -> Vec<AttributeProto> {
    let window = Window {
        input,
        size,
        strides,
        padding,
    };
    let before = window.pad_before();
    let mut pads = [0i64; 4];
    if padding == Padding::Same {
        for a in 0..2 {
            let out = input[a].div_ceil(strides[a].max(1));
            let total = ((out.saturating_sub(1)) * strides[a] + size[a]).saturating_sub(input[a]);
            pads[a] = before[a] as i64;
            pads[a + 2] = (total - before[a]) as i64;
        }
    }
    let to_i64 = |v: [usize; 2]| [v[0] as i64, v[1] as i64];
    vec![
        ints_attr("kernel_shape", &to_i64(size)),
        ints_attr("strides", &to_i64(strides)),
        ints_attr("pads", &pads),
    ]
}

/// `window_attrs` of a window along a sequence of `steps`: the second axis of the
/// same window over an image one row high.
fn window_attrs_1d(
    steps: usize,
    size: usize,
    stride: usize,
    padding: Padding,
) -> Vec<AttributeProto> {
    let image = window_attrs([1, steps], [1, size], [1, stride], padding);
    image
        .into_iter()
        .map(|mut attr| {
            // [height, width] -> [width]; pads [top, left, bottom, right] -> [left, right].
            attr.ints = match attr.ints.as_slice() {
                &[_, w] => vec![w],
                &[_, left, _, right] => vec![left, right],
                other => other.to_vec(),
            };
            attr
        })
        .collect()
}

fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

fn float_attr(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(v),
        ..Default::default()
    }
}

fn ints_attr(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn entry(key: &str, value: String) -> StringStringEntryProto {
    StringStringEntryProto {
        key: Some(key.into()),
        value: Some(value),
    }
}

/// A float tensor `[batch, ..shape]` with a symbolic batch dimension.
fn value_info(name: &str, shape: &[usize]) -> ValueInfoProto {
    let batch = tensor_shape_proto::Dimension {
        value: Some(tensor_shape_proto::dimension::Value::DimParam(
            "batch".into(),
        )),
        ..Default::default()
    };
    let dims = std::iter::once(batch).chain(shape.iter().map(|&d| tensor_shape_proto::Dimension {
        value: Some(tensor_shape_proto::dimension::Value::DimValue(d as i64)),
        ..Default::default()
    }));
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(TensorShapeProto {
                    dim: dims.collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_move_from_hwio_to_oihw() {
        // A 1x2 kernel, 2 input channels, 3 filters: value = h*100 + w*10 + i + o/10
        // at [h][w][i][o]; OIHW must hold the same value at [o][i][h][w].
        let (k, c, f) = ([1, 2], 2, 3);
        let mut hwio = vec![];
        for h in 0..1 {
            for w in 0..2 {
                for i in 0..c {
                    for o in 0..f {
                        hwio.push((h * 100 + w * 10 + i) as f32 + o as f32 / 10.0);
                    }
                }
            }
        }
        let oihw = hwio_to_oihw(&hwio, k, c, f);
        for o in 0..f {
            for i in 0..c {
                for w in 0..2 {
                    let v = oihw[(o * c + i) * 2 + w];
                    assert_eq!(v, (w * 10 + i) as f32 + o as f32 / 10.0);
                }
            }
        }
    }

    #[test]
    fn same_padding_puts_the_odd_cell_after() {
        // 5 wide, window 2, stride 2: 3 outputs need 6 cells, the 1 extra after.
        let attrs = window_attrs([5, 4], [2, 2], [2, 2], Padding::Same);
        assert_eq!(attrs[2].ints, vec![0, 0, 1, 0]);
        // 28 wide, a 5-wide kernel, stride 1: 4 cells of padding, 2 before, 2 after.
        let attrs = window_attrs([28, 28], [5, 5], [1, 1], Padding::Same);
        assert_eq!(attrs[2].ints, vec![2, 2, 2, 2]);
    }
}
