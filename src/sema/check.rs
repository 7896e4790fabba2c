//! The model block: names, layer arguments, shape inference.

// `Diagnostic` (a contract type) is large; errors are the cold path, so it is not boxed.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;

use super::args::{self, bind, Bound};
use super::model::{Activation, Initializer, Layer, LayerKind, Padding, Span};
use super::names;
use crate::diag::codes;
use crate::diag::Diagnostic;
use crate::syntax::ast::{Call, ModelBlock, Stmt, Value, ValueKind};

/// The model block as far as it could be checked.
pub struct CheckedModel {
    pub name: String,
    pub name_span: Span,
    pub input: Option<(String, Vec<usize>, Span)>,
    /// Every layer whose arguments and input shape checked out, in order.
    pub layers: Vec<Layer>,
    /// True when every statement checked out, so `layers` is the whole model.
    pub complete: bool,
}

/// Where the current shape came from, for secondary labels.
struct Current {
    shape: Vec<u64>,
    from: Span,
    from_name: String,
}

pub fn check_model(block: &ModelBlock, diags: &mut Vec<Diagnostic>) -> CheckedModel {
    let errors_before = diags.iter().filter(|d| d.is_error()).count();
    let mut out = CheckedModel {
        name: block.name.name.clone(),
        name_span: block.name.span.clone(),
        input: None,
        layers: vec![],
        complete: false,
    };

    // Names first: explicit names are reserved, so generated ones never collide.
    let mut taken: HashMap<String, Span> = HashMap::new();
    for stmt in &block.stmts {
        let id = match stmt {
            Stmt::Input { name, .. } => name,
            Stmt::Layer { name: Some(n), .. } => n,
            Stmt::Layer { name: None, .. } => continue,
        };
        if let Some(first) = taken.get(&id.name) {
            diags.push(
                Diagnostic::error(
                    codes::DUPLICATE_NAME,
                    format!(
                        "the name `{}` is used twice in model `{}`",
                        id.name, block.name.name
                    ),
                    id.span.clone(),
                    "used again here",
                )
                .with_label(first.clone(), "first used here")
                .with_help("give each layer its own name, or leave it out to get a generated one"),
            );
        } else {
            taken.insert(id.name.clone(), id.span.clone());
        }
    }
    let mut counters: HashMap<&str, usize> = HashMap::new();

    let mut current: Option<Current> = None;
    let mut seen_input = false;
    // Errors of layers whose shapes are fine: the model is still complete, so the
    // loss and the data are checked against it too.
    let mut constant = vec![];
    for (i, stmt) in block.stmts.iter().enumerate() {
        match stmt {
            Stmt::Input { name, shape, span } => {
                if seen_input {
                    diags.push(Diagnostic::error(
                        codes::INPUT,
                        "a model has exactly one `input`",
                        span.clone(),
                        "second input",
                    ));
                    continue;
                }
                seen_input = true;
                if i != 0 {
                    diags.push(
                        Diagnostic::error(
                            codes::INPUT,
                            "`input` must be the first statement of the model",
                            span.clone(),
                            "input declared here",
                        )
                        .with_label(stmt_span(&block.stmts[0]), "the model starts here")
                        .with_help("move the `input` line to the top of the model block"),
                    );
                }
                if let Some(dims) = input_dims(shape, diags) {
                    out.input = Some((
                        name.name.clone(),
                        dims.iter().map(|&d| d as usize).collect(),
                        span.clone(),
                    ));
                    if i == 0 {
                        current = Some(Current {
                            shape: dims,
                            from: span.clone(),
                            from_name: format!("input `{}`", name.name),
                        });
                    }
                }
            }
            Stmt::Layer { name, call, span } => {
                let kind_name = call.name.name.as_str();
                let layer_name = match name {
                    Some(n) => n.name.clone(),
                    None => generate_name(kind_name, &mut counters, &taken),
                };
                let kind = layer_kind(call, diags);
                let input_shape = current.take();
                let (Some(kind), Some(cur)) = (kind, input_shape) else {
                    continue;
                };
                let shape = match infer(&kind, &cur, call, &layer_name, diags) {
                    Ok(shape) => shape,
                    Err(next) => {
                        // Later layers are still checked when this one's output is known.
                        current = next.map(|shape| Current {
                            shape,
                            from: span.clone(),
                            from_name: format!("`{layer_name}`"),
                        });
                        continue;
                    }
                };
                current = Some(Current {
                    shape: shape.clone(),
                    from: span.clone(),
                    from_name: format!("`{layer_name}`"),
                });
                if shape.last() == Some(&1) && applies_softmax(&kind) {
                    constant.push(softmax_over_one(&layer_name, span));
                }
                out.layers.push(Layer {
                    name: layer_name,
                    kind,
                    input_shape: cur.shape.iter().map(|&d| d as usize).collect(),
                    output_shape: shape.iter().map(|&d| d as usize).collect(),
                    span: span.clone(),
                });
            }
        }
    }
    if !seen_input {
        diags.push(
            Diagnostic::error(
                codes::INPUT,
                format!("model `{}` has no `input`", block.name.name),
                block.name.span.clone(),
                "this model needs an input",
            )
            .with_help("add `input x: [n]` as the first line, with the shape of one sample"),
        );
    }
    out.complete = diags.iter().filter(|d| d.is_error()).count() == errors_before;
    diags.extend(constant);
    out
}

fn applies_softmax(kind: &LayerKind) -> bool {
    matches!(
        kind,
        LayerKind::Dense {
            activation: Activation::Softmax,
            ..
        } | LayerKind::Conv2d {
            activation: Activation::Softmax,
            ..
        } | LayerKind::Activation(Activation::Softmax)
    )
}

/// E0022: a softmax over an axis of one value is the constant 1, whatever its input,
/// so nothing before it can learn (Keras trains such a model without a word).
fn softmax_over_one(layer: &str, span: &Span) -> Diagnostic {
    Diagnostic::error(
        codes::SOFTMAX_ONE,
        format!("`{layer}` applies softmax over one unit, which always outputs 1"),
        span.clone(),
        "softmax over a last axis of size 1",
    )
    .with_help(
        "for one output (two classes with binary_crossentropy) use `activation = sigmoid`; \
         for N classes use N units with softmax",
    )
}

fn stmt_span(s: &Stmt) -> Span {
    match s {
        Stmt::Input { span, .. } | Stmt::Layer { span, .. } => span.clone(),
    }
}

/// Keras-style: `dense`, `dense_1`, ... per kind, skipping names the user took.
fn generate_name(
    kind: &str,
    counters: &mut HashMap<&str, usize>,
    taken: &HashMap<String, Span>,
) -> String {
    let key: &str = names::LAYERS
        .iter()
        .find(|k| **k == kind)
        .copied()
        .unwrap_or("layer");
    loop {
        let n = counters.entry(key).or_insert(0);
        let candidate = if *n == 0 {
            key.to_string()
        } else {
            format!("{key}_{n}")
        };
        *n += 1;
        if !taken.contains_key(&candidate) {
            return candidate;
        }
    }
}

fn input_dims(shape: &Value, diags: &mut Vec<Diagnostic>) -> Option<Vec<u64>> {
    let ValueKind::List(items) = &shape.kind else {
        diags.push(
            args::type_error(shape, "a list of dimensions like `[28, 28, 1]`", "input")
                .with_help("write the shape of one sample in brackets, e.g. `[3]`"),
        );
        return None;
    };
    if items.is_empty() {
        diags.push(Diagnostic::error(
            codes::RANGE,
            "the input shape needs at least one dimension",
            shape.span.clone(),
            "empty shape",
        ));
        return None;
    }
    let mut dims = vec![];
    let mut ok = true;
    for it in items {
        match args::positive(it, "input dimension") {
            Ok(d) => dims.push(d),
            Err(e) => {
                diags.push(e);
                ok = false;
            }
        }
    }
    ok.then_some(dims)
}

/// Records an error and gives `None`, so that a layer's other arguments are still checked.
fn ok<T>(r: Result<T, Diagnostic>, diags: &mut Vec<Diagnostic>) -> Option<T> {
    r.map_err(|e| diags.push(e)).ok()
}

fn opt<T>(
    b: &Bound,
    name: &str,
    default: T,
    f: impl Fn(&Value, &str) -> Result<T, Diagnostic>,
    diags: &mut Vec<Diagnostic>,
) -> Option<T> {
    match b.get(name) {
        None => Some(default),
        Some(v) => ok(f(v, name), diags),
    }
}

fn req<T>(
    b: &Bound,
    name: &str,
    f: impl Fn(&Value, &str) -> Result<T, Diagnostic>,
    diags: &mut Vec<Diagnostic>,
) -> Option<T> {
    // A missing required argument was reported by `bind`.
    b.get(name).and_then(|v| ok(f(v, name), diags))
}

fn initializer(v: &Value, param: &str) -> Result<Initializer, Diagnostic> {
    args::keyword(
        v,
        param,
        "initializer",
        &Initializer::ALL,
        Initializer::keyword,
    )
}

fn padding(v: &Value, param: &str) -> Result<Padding, Diagnostic> {
    args::keyword(v, param, "padding", &Padding::ALL, Padding::keyword)
}

/// An activation given as a value: `relu`, `"relu"` or `leaky_relu(alpha = 0.2)`.
fn activation_value(v: &Value, param: &str, diags: &mut Vec<Diagnostic>) -> Option<Activation> {
    match &v.kind {
        ValueKind::Call(c) if c.args.is_some() => {
            if !names::ACTIVATIONS.contains(&c.name.name.as_str()) {
                return ok(
                    args::name(
                        &Value {
                            kind: ValueKind::Str(c.name.name.clone()),
                            span: c.name.span.clone(),
                        },
                        param,
                        "activation",
                        &names::ACTIVATIONS,
                    ),
                    diags,
                )
                .and_then(|n| activation_named(n, None, true));
            }
            activation_call(c, true, diags)
        }
        _ => {
            let n = ok(
                args::name(v, param, "activation", &names::ACTIVATIONS),
                diags,
            )?;
            activation_named(n, None, true)
        }
    }
}

/// The activation a known name stands for, with `alpha` when given, as a layer of
/// its own or as another layer's `activation` (Keras's defaults differ).
fn activation_named(name: &str, alpha: Option<f32>, as_argument: bool) -> Option<Activation> {
    let a = if as_argument {
        Activation::named_as_argument(name)?
    } else {
        Activation::named(name)?
    };
    Some(alpha.map_or(a, |alpha| a.with_alpha(alpha)))
}

/// A call to a known activation name, with its optional `alpha`.
fn activation_call(c: &Call, as_argument: bool, diags: &mut Vec<Diagnostic>) -> Option<Activation> {
    let name = c.name.name.as_str();
    let what = format!("`{name}`");
    let params: &[&'static str] = match Activation::named(name)?.alpha() {
        Some(_) => &["alpha"],
        None => &[],
    };
    let b = bind(c, &what, params, &[], diags);
    let alpha = match b.get("alpha") {
        None => None,
        Some(v) => Some(ok(
            args::float_in(v, "alpha", |x| x >= 0.0, "must be >= 0"),
            diags,
        )? as f32),
    };
    activation_named(name, alpha, as_argument)
}

const DENSE: &[&str] = &[
    "units",
    "activation",
    "use_bias",
    "kernel_initializer",
    "bias_initializer",
];
const CONV: &[&str] = &[
    "filters",
    "kernel_size",
    "strides",
    "padding",
    "activation",
    "use_bias",
    "kernel_initializer",
    "bias_initializer",
];
const POOL: &[&str] = &["pool_size", "strides", "padding"];

/// The layer's kind with its arguments checked and defaults filled in.
fn layer_kind(call: &Call, diags: &mut Vec<Diagnostic>) -> Option<LayerKind> {
    let name = call.name.name.as_str();
    let what = format!("`{name}`");
    let d = diags;
    match name {
        "dense" => {
            let b = bind(call, &what, DENSE, &["units"], d);
            let units = req(&b, "units", args::positive, d);
            let act = match b.get("activation") {
                None => Some(Activation::Linear),
                Some(v) => activation_value(v, "activation", d),
            };
            let use_bias = opt(&b, "use_bias", true, args::boolean, d);
            let ki = opt(
                &b,
                "kernel_initializer",
                Initializer::GlorotUniform,
                initializer,
                d,
            );
            let bi = opt(&b, "bias_initializer", Initializer::Zeros, initializer, d);
            Some(LayerKind::Dense {
                units: units? as usize,
                activation: act?,
                use_bias: use_bias?,
                kernel_initializer: ki?,
                bias_initializer: bi?,
            })
        }
        "flatten" => {
            bind(call, &what, &[], &[], d);
            Some(LayerKind::Flatten)
        }
        "dropout" => {
            let b = bind(call, &what, &["rate"], &["rate"], d);
            let rate = req(
                &b,
                "rate",
                |v, p| args::float_in(v, p, |x| (0.0..1.0).contains(&x), "must be in [0, 1)"),
                d,
            )?;
            Some(LayerKind::Dropout { rate: rate as f32 })
        }
        "conv2d" => {
            let b = bind(call, &what, CONV, &["filters", "kernel_size"], d);
            let filters = req(&b, "filters", args::positive, d);
            let kernel = req(&b, "kernel_size", args::pair, d);
            let strides = opt(&b, "strides", [1, 1], args::pair, d);
            let pad = opt(&b, "padding", Padding::Valid, padding, d);
            let act = match b.get("activation") {
                None => Some(Activation::Linear),
                Some(v) => activation_value(v, "activation", d),
            };
            let use_bias = opt(&b, "use_bias", true, args::boolean, d);
            let ki = opt(
                &b,
                "kernel_initializer",
                Initializer::GlorotUniform,
                initializer,
                d,
            );
            let bi = opt(&b, "bias_initializer", Initializer::Zeros, initializer, d);
            let (kernel, strides) = (kernel?, strides?);
            Some(LayerKind::Conv2d {
                filters: filters? as usize,
                kernel_size: [kernel[0] as usize, kernel[1] as usize],
                strides: [strides[0] as usize, strides[1] as usize],
                padding: pad?,
                activation: act?,
                use_bias: use_bias?,
                kernel_initializer: ki?,
                bias_initializer: bi?,
            })
        }
        "maxpool2d" | "avgpool2d" => {
            let b = bind(call, &what, POOL, &[], d);
            let pool = opt(&b, "pool_size", [2, 2], args::pair, d)?;
            let strides = opt(&b, "strides", pool, args::pair, d)?;
            let pad = opt(&b, "padding", Padding::Valid, padding, d)?;
            let pool_size = [pool[0] as usize, pool[1] as usize];
            let strides = [strides[0] as usize, strides[1] as usize];
            Some(if name == "maxpool2d" {
                LayerKind::MaxPool2d {
                    pool_size,
                    strides,
                    padding: pad,
                }
            } else {
                LayerKind::AvgPool2d {
                    pool_size,
                    strides,
                    padding: pad,
                }
            })
        }
        "batchnorm" => {
            let b = bind(call, &what, &["momentum", "epsilon"], &[], d);
            let momentum = opt(
                &b,
                "momentum",
                0.99,
                |v, p| args::float_in(v, p, |x| (0.0..=1.0).contains(&x), "must be in [0, 1]"),
                d,
            );
            let epsilon = opt(
                &b,
                "epsilon",
                0.001,
                |v, p| args::float_in(v, p, |x| x > 0.0, "must be positive"),
                d,
            );
            Some(LayerKind::BatchNorm {
                momentum: momentum? as f32,
                epsilon: epsilon? as f32,
            })
        }
        "reshape" => {
            let b = bind(call, &what, &["shape"], &["shape"], d);
            let shape = req(
                &b,
                "shape",
                |v, p| match &v.kind {
                    ValueKind::List(items) if !items.is_empty() => items
                        .iter()
                        .map(|it| args::positive(it, p).map(|x| x as usize))
                        .collect(),
                    _ => Err(args::type_error(v, "a non-empty list of dimensions", p)),
                },
                d,
            )?;
            Some(LayerKind::Reshape { shape })
        }
        _ if names::ACTIVATIONS.contains(&name) => {
            activation_call(call, false, d).map(LayerKind::Activation)
        }
        _ => {
            d.push(
                Diagnostic::error(
                    codes::UNKNOWN_LAYER,
                    format!("unknown layer `{name}`"),
                    call.name.span.clone(),
                    "not a layer of nnc",
                )
                .with_help(names::suggestion(name, &names::LAYERS)),
            );
            None
        }
    }
}

fn show(shape: &[u64]) -> String {
    format!(
        "[{}]",
        shape
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Output size of a sliding window along one axis, as Keras computes it.
fn window(n: u64, k: u64, s: u64, pad: Padding) -> Option<u64> {
    pad.windows(n, k, s)
}

/// The layer's output shape; on an error (reported here), the output shape if it
/// is known anyway, so that later layers can still be checked.
type Inferred = Result<Vec<u64>, Option<Vec<u64>>>;

fn infer(
    kind: &LayerKind,
    cur: &Current,
    call: &Call,
    name: &str,
    d: &mut Vec<Diagnostic>,
) -> Inferred {
    let shape = &cur.shape;
    let came_from = format!("{} gives {}", cur.from_name, show(shape));
    let rank_error = |what: &str, needs: &str, help: &str| {
        // An anonymous layer's name is its kind: say it once.
        let layer = if name == what {
            format!("`{name}`")
        } else {
            format!("`{name}` ({what})")
        };
        Diagnostic::error(
            codes::RANK,
            format!(
                "{layer} needs {needs}, but its input has shape {}",
                show(shape)
            ),
            call.span.clone(),
            format!("input shape {}", show(shape)),
        )
        .with_label(cur.from.clone(), came_from.clone())
        .with_help(help.to_string())
    };
    let (what, win, kernel, strides, padding, channels) = match kind {
        LayerKind::Dense { units, .. } => {
            if shape.len() != 1 {
                d.push(rank_error(
                    "dense",
                    "a vector `[n]`",
                    "add `flatten` before this layer",
                ));
                return Err(Some(vec![*units as u64]));
            }
            return Ok(vec![*units as u64]);
        }
        LayerKind::Flatten => {
            return Ok(vec![shape.iter().fold(1u64, |a, &b| a.saturating_mul(b))])
        }
        LayerKind::Dropout { .. } | LayerKind::Activation(_) | LayerKind::BatchNorm { .. } => {
            return Ok(shape.clone())
        }
        LayerKind::Reshape { shape: target } => {
            let have = shape
                .iter()
                .fold(1u128, |a, &b| a.saturating_mul(b as u128));
            let want = target
                .iter()
                .fold(1u128, |a, &b| a.saturating_mul(b as u128));
            let target: Vec<u64> = target.iter().map(|&x| x as u64).collect();
            if have != want {
                d.push(
                    Diagnostic::error(
                        codes::RESHAPE,
                        format!(
                            "cannot reshape {} ({have} elements) to {} ({want} elements)",
                            show(shape),
                            show(&target)
                        ),
                        call.span.clone(),
                        format!("{want} elements"),
                    )
                    .with_label(cur.from.clone(), format!("{came_from}: {have} elements")),
                );
                return Err(Some(target));
            }
            return Ok(target);
        }
        LayerKind::Conv2d {
            filters,
            kernel_size,
            strides,
            padding,
            ..
        } => (
            "conv2d",
            "kernel",
            kernel_size,
            strides,
            padding,
            Some(*filters as u64),
        ),
        LayerKind::MaxPool2d {
            pool_size,
            strides,
            padding,
        } => (
            "maxpool2d",
            "pool window",
            pool_size,
            strides,
            padding,
            None,
        ),
        LayerKind::AvgPool2d {
            pool_size,
            strides,
            padding,
        } => (
            "avgpool2d",
            "pool window",
            pool_size,
            strides,
            padding,
            None,
        ),
    };
    let [h, w, c] = shape[..] else {
        let help = if shape.len() == 1 {
            "reshape the vector to an image first, e.g. `reshape(shape = [h, w, 1])`"
        } else {
            "the input must be `[height, width, channels]` (channels last)"
        };
        d.push(rank_error(what, "an image `[h, w, c]`", help));
        return Err(None);
    };
    let (k, s) = (kernel.map(|x| x as u64), strides.map(|x| x as u64));
    let (Some(oh), Some(ow)) = (
        window(h, k[0], s[0], *padding),
        window(w, k[1], s[1], *padding),
    ) else {
        d.push(
            Diagnostic::error(
                codes::WINDOW,
                format!(
                    "the {}x{} {win} of `{name}` is larger than its {h}x{w} input",
                    k[0], k[1]
                ),
                call.span.clone(),
                format!("{}x{} {win}", k[0], k[1]),
            )
            .with_label(cur.from.clone(), came_from.clone())
            .with_help("use a smaller window, or `padding = same`"),
        );
        return Err(None);
    };
    Ok(vec![oh, ow, channels.unwrap_or(c)])
}
