//! The model block: names, layer arguments, shape inference.

// `Diagnostic` (a contract type) is large; errors are the cold path, so it is not boxed.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;

use super::args::{self, bind, Bound};
use super::model::{
    Activation, Initializer, Layer, LayerKind, Merge, Padding, Regularizer, Source, Span,
};
use super::names;
use crate::diag::codes;
use crate::diag::Diagnostic;
use crate::syntax::ast::{Arg, Args, Call, Ident, ModelBlock, Stmt, Value, ValueKind};

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

/// A statement checked so far, as later statements may read it.
struct Def {
    /// Its output shape, when known.
    shape: Option<Vec<u64>>,
    span: Span,
    /// How labels name it: "input `x`" or "`dense_1`".
    from_name: String,
    /// Where its output is in the checked model, when it is there.
    source: Option<Source>,
    /// Some later statement reads it.
    read: bool,
}

/// The statements checked so far (one `Def` per statement, in order).
#[derive(Default)]
struct Graph {
    defs: Vec<Def>,
    /// A name was unknown or used too early, or the input is missing or misplaced:
    /// then "never read" would be noise.
    broken: bool,
}

impl Graph {
    /// The statement `name` refers to, read by statement `at`; an error when no
    /// statement is named so, or the one named so is not above `at`.
    fn resolve(
        &mut self,
        name: &Ident,
        at: usize,
        taken: &HashMap<String, (Span, usize)>,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<usize> {
        match taken.get(&name.name) {
            Some((_, index)) if *index < at => {
                self.defs[*index].read = true;
                Some(*index)
            }
            Some((defined, index)) => {
                self.broken = true;
                let (label, help) = if *index == at {
                    (
                        "the layer being defined",
                        "a layer cannot read its own output; name an earlier statement".to_string(),
                    )
                } else {
                    (
                        "defined here, below",
                        format!(
                            "move the statement that defines `{}` above this one",
                            name.name
                        ),
                    )
                };
                diags.push(
                    Diagnostic::error(
                        codes::USED_BEFORE_DEFINED,
                        format!("`{}` is used before it is defined", name.name),
                        name.span.clone(),
                        "used here",
                    )
                    .with_label(defined.clone(), label)
                    .with_help(help),
                );
                None
            }
            None => {
                self.broken = true;
                let mut above: Vec<(&str, usize)> = taken
                    .iter()
                    .filter(|(_, (_, index))| *index < at)
                    .map(|(n, (_, index))| (n.as_str(), *index))
                    .collect();
                above.sort_by_key(|(_, index)| *index);
                let names: Vec<&str> = above.iter().map(|(n, _)| *n).collect();
                let help = match names::nearest_user_name(&name.name, &names) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None if names.is_empty() => "no statement above this one has a name".into(),
                    None => format!(
                        "the names defined above are {}",
                        names
                            .iter()
                            .map(|n| format!("`{n}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                diags.push(
                    Diagnostic::error(
                        codes::UNKNOWN_INPUT,
                        format!("no statement of the model is named `{}`", name.name),
                        name.span.clone(),
                        "unknown name",
                    )
                    .with_help(help),
                );
                None
            }
        }
    }
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
    let mut taken: HashMap<String, (Span, usize)> = HashMap::new();
    let mut duplicates = false;
    for (index, stmt) in block.stmts.iter().enumerate() {
        let id = match stmt {
            Stmt::Input { name, .. } => name,
            Stmt::Layer { name: Some(n), .. } => n,
            Stmt::Layer { name: None, .. } => continue,
        };
        if let Some((first, _)) = taken.get(&id.name) {
            duplicates = true;
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
            taken.insert(id.name.clone(), (id.span.clone(), index));
        }
    }
    let mut counters: HashMap<&str, usize> = HashMap::new();

    let mut graph = Graph {
        // A name used twice reads its first statement: the second one's "never read"
        // would only repeat the error.
        broken: duplicates,
        ..Graph::default()
    };
    let mut seen_input = false;
    // Errors of layers whose shapes are fine: the model is still complete, so the
    // loss and the data are checked against it too.
    let mut constant = vec![];
    for (i, stmt) in block.stmts.iter().enumerate() {
        match stmt {
            Stmt::Input { name, shape, span } => {
                let mut def = Def {
                    shape: None,
                    span: span.clone(),
                    from_name: format!("input `{}`", name.name),
                    source: None,
                    read: false,
                };
                graph.broken |= seen_input || i != 0;
                if seen_input {
                    diags.push(Diagnostic::error(
                        codes::INPUT,
                        "a model has exactly one `input`",
                        span.clone(),
                        "second input",
                    ));
                    graph.defs.push(def);
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
                        def.shape = Some(dims);
                        def.source = Some(Source::Input);
                    }
                }
                graph.defs.push(def);
            }
            Stmt::Layer {
                name,
                call,
                input,
                span,
            } => {
                let kind_name = call.name.name.as_str();
                let layer_name = match name {
                    Some(n) => n.name.clone(),
                    None => generate_name(kind_name, &mut counters, &taken),
                };
                let is_merge = Merge::NAMES.contains(&kind_name);
                // Concatenate's `axis` as written, and where: its meaning needs the rank.
                let mut axis = (-1, call.span.clone());
                let (reads, kind) = if is_merge {
                    let (names, options) = merge_inputs(call, input.as_ref(), diags);
                    // What a malformed merge meant to read is unknown: no "never read".
                    graph.broken |= names.is_none();
                    let reads = names.and_then(|names| {
                        // Every name is resolved (and reported), not only the first bad one.
                        let ids: Vec<Option<usize>> = names
                            .iter()
                            .map(|n| graph.resolve(n, i, &taken, diags))
                            .collect();
                        let ids: Option<Vec<usize>> = ids.into_iter().collect();
                        let ids = ids?;
                        let fits = merge_arity(kind_name, call, ids.len(), diags);
                        graph.broken |= !fits;
                        fits.then_some(ids)
                    });
                    let kind = merge_kind(kind_name, &options, diags).map(|(kind, a)| {
                        if let Some(a) = a {
                            axis = a;
                        }
                        kind
                    });
                    (reads, kind)
                } else {
                    let reads = match input {
                        Some(n) => graph.resolve(n, i, &taken, diags).map(|id| vec![id]),
                        None => i.checked_sub(1).map(|prev| {
                            graph.defs[prev].read = true;
                            vec![prev]
                        }),
                    };
                    let before = diags.len();
                    let kind = layer_kind(call, diags);
                    explain_name_arguments(call, &taken, &mut diags[before..]);
                    (reads, kind)
                };
                let mut def = Def {
                    shape: None,
                    span: span.clone(),
                    from_name: format!("`{layer_name}`"),
                    source: None,
                    read: false,
                };
                let (Some(kind), Some(reads)) = (kind, reads) else {
                    graph.defs.push(def);
                    continue;
                };
                if matches!(kind, LayerKind::Embedding { .. }) && reads != [0] {
                    let read = &graph.defs[reads[0]];
                    diags.push(embedding_not_first(&layer_name, span, read));
                }
                let shapes: Option<Vec<Vec<u64>>> =
                    reads.iter().map(|&r| graph.defs[r].shape.clone()).collect();
                let Some(shapes) = shapes else {
                    graph.defs.push(def);
                    continue;
                };
                let mut kind = match kind {
                    LayerKind::Merge(Merge::Concatenate { .. }) => {
                        match concat_axis(axis, shapes[0].len(), diags) {
                            Some(axis) => LayerKind::Merge(Merge::Concatenate { axis }),
                            None => {
                                graph.defs.push(def);
                                continue;
                            }
                        }
                    }
                    kind => kind,
                };
                let inferred = match &kind {
                    LayerKind::Merge(m) => {
                        merge_shape(*m, &layer_name, call, &reads, &shapes, &graph, diags)
                    }
                    _ => {
                        let cur = Current {
                            shape: shapes[0].clone(),
                            from: graph.defs[reads[0]].span.clone(),
                            from_name: graph.defs[reads[0]].from_name.clone(),
                        };
                        infer(&kind, &cur, call, &layer_name, diags)
                    }
                };
                let shape = match inferred {
                    Ok(shape) => shape,
                    Err(next) => {
                        // Later layers are still checked when this one's output is known.
                        def.shape = next;
                        graph.defs.push(def);
                        continue;
                    }
                };
                def.shape = Some(shape.clone());
                if let LayerKind::Reshape { shape: target } = &mut kind {
                    // A `-1` is known now.
                    *target = shape.iter().map(|&x| x as usize).collect();
                }
                if shape.last() == Some(&1) && applies_softmax(&kind) {
                    constant.push(softmax_over_one(&layer_name, span));
                }
                // A layer joins the model when every layer it reads did.
                let sources: Option<Vec<Source>> =
                    reads.iter().map(|&r| graph.defs[r].source).collect();
                if let Some(inputs) = sources {
                    def.source = Some(Source::Layer(out.layers.len()));
                    out.layers.push(Layer {
                        name: layer_name,
                        kind,
                        input_shape: shapes[0].iter().map(|&d| d as usize).collect(),
                        output_shape: shape.iter().map(|&d| d as usize).collect(),
                        span: span.clone(),
                        inputs,
                    });
                }
                graph.defs.push(def);
            }
        }
    }
    if seen_input && !graph.broken {
        unused_outputs(&graph, block, &out, diags);
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
        } | LayerKind::Conv1d {
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

/// E0040: an `embedding` reads token ids, which only the input holds.
fn embedding_not_first(layer: &str, span: &Span, read: &Def) -> Diagnostic {
    Diagnostic::error(
        codes::EMBEDDING_FIRST,
        format!("`{layer}` must read the model's input: it turns token ids into vectors"),
        span.clone(),
        "does not read the input",
    )
    .with_label(read.span.clone(), format!("it reads {}", read.from_name))
    .with_help(
        "put the `embedding` right after `input`, or give it the input's name: `embedding(...)(x)`",
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
    taken: &HashMap<String, (Span, usize)>,
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

/// `kernel_regularizer`: absent (`Some(None)`), or `l1(0.01)`, `l2(0.01)`,
/// `l1_l2(l1 = 0, l2 = 0)` with Keras 3's defaults (a bare name takes them all);
/// `None` after an error.
fn opt_regularizer(b: &Bound, d: &mut Vec<Diagnostic>) -> Option<Option<Regularizer>> {
    let Some(v) = b.get("kernel_regularizer") else {
        return Some(None);
    };
    let param = "kernel_regularizer";
    let (name, call) = match &v.kind {
        ValueKind::Call(c) => (c.name.name.as_str(), c),
        _ => {
            return ok(
                Err(args::type_error(
                    v,
                    "`l1(x)`, `l2(x)` or `l1_l2(l1 = x, l2 = y)`",
                    param,
                )),
                d,
            )
            .map(Some)
        }
    };
    let known = ["l1", "l2", "l1_l2"];
    if !known.contains(&name) {
        d.push(
            Diagnostic::error(
                codes::UNKNOWN_NAME,
                format!("unknown regularizer `{name}`"),
                call.name.span.clone(),
                "not a regularizer of nnc",
            )
            .with_help(names::suggestion(name, &known)),
        );
        return None;
    }
    let what = format!("`{name}`");
    let (params, defaults): (&[&'static str], [f64; 2]) = match name {
        "l1" => (&["l1"], [0.01, 0.0]),
        "l2" => (&["l2"], [0.0, 0.01]),
        _ => (&["l1", "l2"], [0.0, 0.0]),
    };
    let bound = bind(call, &what, params, &[], d);
    let factor = |p: &str, default: f64, d: &mut Vec<Diagnostic>| {
        opt(
            &bound,
            p,
            default,
            |v, p| args::float_in(v, p, |x| x >= 0.0, "must be >= 0"),
            d,
        )
    };
    let l1 = factor("l1", defaults[0], d);
    let l2 = factor("l2", defaults[1], d);
    Some(Some(Regularizer {
        l1: l1? as f32,
        l2: l2? as f32,
    }))
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
    "kernel_regularizer",
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
    "kernel_regularizer",
];
const POOL: &[&str] = &["pool_size", "strides", "padding"];

/// The arguments dense and convolution layers share, read in this order so that
/// their diagnostics come out in the order of the parameter list.
struct Weights {
    activation: Activation,
    use_bias: bool,
    kernel_initializer: Initializer,
    bias_initializer: Initializer,
    kernel_regularizer: Option<Regularizer>,
}

fn weights(b: &Bound, d: &mut Vec<Diagnostic>) -> Option<Weights> {
    let activation = match b.get("activation") {
        None => Some(Activation::Linear),
        Some(v) => activation_value(v, "activation", d),
    };
    let use_bias = opt(b, "use_bias", true, args::boolean, d);
    let ki = opt(
        b,
        "kernel_initializer",
        Initializer::GlorotUniform,
        initializer,
        d,
    );
    let bi = opt(b, "bias_initializer", Initializer::Zeros, initializer, d);
    let reg = opt_regularizer(b, d);
    Some(Weights {
        activation: activation?,
        use_bias: use_bias?,
        kernel_initializer: ki?,
        bias_initializer: bi?,
        kernel_regularizer: reg?,
    })
}

/// The layer's kind with its arguments checked and defaults filled in.
fn layer_kind(call: &Call, diags: &mut Vec<Diagnostic>) -> Option<LayerKind> {
    let name = call.name.name.as_str();
    let what = format!("`{name}`");
    let d = diags;
    match name {
        "dense" => {
            let b = bind(call, &what, DENSE, &["units"], d);
            let units = req(&b, "units", args::positive, d);
            let w = weights(&b, d)?;
            Some(LayerKind::Dense {
                units: units? as usize,
                activation: w.activation,
                use_bias: w.use_bias,
                kernel_initializer: w.kernel_initializer,
                bias_initializer: w.bias_initializer,
                kernel_regularizer: w.kernel_regularizer,
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
            let w = weights(&b, d)?;
            let (kernel, strides) = (kernel?, strides?);
            Some(LayerKind::Conv2d {
                filters: filters? as usize,
                kernel_size: [kernel[0] as usize, kernel[1] as usize],
                strides: [strides[0] as usize, strides[1] as usize],
                padding: pad?,
                activation: w.activation,
                use_bias: w.use_bias,
                kernel_initializer: w.kernel_initializer,
                bias_initializer: w.bias_initializer,
                kernel_regularizer: w.kernel_regularizer,
            })
        }
        "embedding" => {
            let params = &["input_dim", "output_dim", "embeddings_initializer"];
            let b = bind(call, &what, params, &["input_dim", "output_dim"], d);
            let input_dim = req(&b, "input_dim", args::positive, d);
            let output_dim = req(&b, "output_dim", args::positive, d);
            let init = opt(
                &b,
                "embeddings_initializer",
                Initializer::Uniform,
                initializer,
                d,
            );
            Some(LayerKind::Embedding {
                input_dim: input_dim? as usize,
                output_dim: output_dim? as usize,
                embeddings_initializer: init?,
            })
        }
        "conv1d" => {
            let b = bind(call, &what, CONV, &["filters", "kernel_size"], d);
            let filters = req(&b, "filters", args::positive, d);
            let kernel = req(&b, "kernel_size", args::positive, d);
            let strides = opt(&b, "strides", 1, args::positive, d);
            let pad = opt(&b, "padding", Padding::Valid, padding, d);
            let w = weights(&b, d)?;
            Some(LayerKind::Conv1d {
                filters: filters? as usize,
                kernel_size: kernel? as usize,
                strides: strides? as usize,
                padding: pad?,
                activation: w.activation,
                use_bias: w.use_bias,
                kernel_initializer: w.kernel_initializer,
                bias_initializer: w.bias_initializer,
                kernel_regularizer: w.kernel_regularizer,
            })
        }
        "maxpool1d" | "avgpool1d" => {
            let b = bind(call, &what, POOL, &[], d);
            let pool = opt(&b, "pool_size", 2, args::positive, d)?;
            let strides = opt(&b, "strides", pool, args::positive, d)?;
            let pad = opt(&b, "padding", Padding::Valid, padding, d)?;
            Some(LayerKind::Pool1d {
                max: name == "maxpool1d",
                pool_size: pool as usize,
                strides: strides as usize,
                padding: pad,
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
        "global_avgpool1d" | "global_maxpool1d" | "global_avgpool2d" | "global_maxpool2d" => {
            bind(call, &what, &[], &[], d);
            Some(LayerKind::GlobalPool {
                max: name.starts_with("global_max"),
                dims: if name.ends_with("1d") { 1 } else { 2 },
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
        "layer_norm" => {
            let b = bind(call, &what, &["epsilon", "center", "scale"], &[], d);
            let epsilon = opt(
                &b,
                "epsilon",
                0.001,
                |v, p| args::float_in(v, p, |x| x > 0.0, "must be positive"),
                d,
            );
            let center = opt(&b, "center", true, args::boolean, d);
            let scale = opt(&b, "scale", true, args::boolean, d);
            Some(LayerKind::LayerNorm {
                epsilon: epsilon? as f32,
                center: center?,
                scale: scale?,
            })
        }
        "reshape" => {
            let b = bind(call, &what, &["shape"], &["shape"], d);
            let shape = req(&b, "shape", reshape_target, d)?;
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

/// The output shape of a window (`conv1d` or a 1-d pool) sliding along a sequence
/// `[steps, c]`.
#[allow(clippy::too_many_arguments)]
fn infer_steps(
    what: &str,
    win: &str,
    (k, s, padding): (usize, usize, Padding),
    channels: Option<u64>,
    cur: &Current,
    call: &Call,
    name: &str,
    d: &mut Vec<Diagnostic>,
) -> Inferred {
    let shape = &cur.shape;
    let came_from = format!("{} gives {}", cur.from_name, show(shape));
    let layer = if name == what {
        format!("`{name}`")
    } else {
        format!("`{name}` ({what})")
    };
    let [n, c] = shape[..] else {
        let help = match shape.len() {
            1 => "a vector is one step: reshape it to steps of channels first, e.g. `reshape(shape = [-1, 1])`"
                .to_string(),
            3 => format!("for an image `[h, w, c]` use `{}`", what.replace("1d", "2d")),
            _ => "the input must be `[steps, channels]` (channels last)".to_string(),
        };
        d.push(
            Diagnostic::error(
                codes::RANK,
                format!(
                    "{layer} needs a sequence `[steps, channels]`, but its input has shape {}",
                    show(shape)
                ),
                call.span.clone(),
                format!("input shape {}", show(shape)),
            )
            .with_label(cur.from.clone(), came_from)
            .with_help(help),
        );
        return Err(None);
    };
    let Some(steps) = window(n, k as u64, s as u64, padding) else {
        d.push(
            Diagnostic::error(
                codes::WINDOW,
                format!("the {win} of {k} steps of `{name}` is longer than its {n}-step input"),
                call.span.clone(),
                format!("{win} of {k}"),
            )
            .with_label(cur.from.clone(), came_from)
            .with_help("use a smaller window, or `padding = same`"),
        );
        return Err(None);
    };
    Ok(vec![steps, channels.unwrap_or(c)])
}

/// The `.nn` name of a global pooling layer.
pub fn global_pool_name(max: bool, dims: usize) -> &'static str {
    match (max, dims) {
        (false, 1) => "global_avgpool1d",
        (true, 1) => "global_maxpool1d",
        (false, _) => "global_avgpool2d",
        (true, _) => "global_maxpool2d",
    }
}

/// `reshape`'s target: positive dimensions and at most one `-1`, held as 0 until
/// `infer` knows the input's size and puts the dimension there.
fn reshape_target(v: &Value, param: &str) -> Result<Vec<usize>, Diagnostic> {
    let ValueKind::List(items) = &v.kind else {
        return Err(args::type_error(v, "a non-empty list of dimensions", param));
    };
    if items.is_empty() {
        return Err(args::type_error(v, "a non-empty list of dimensions", param));
    }
    let mut unknown: Option<&Value> = None;
    let mut dims = vec![];
    for it in items {
        if args::int(it, param).ok() == Some(-1) {
            if let Some(first) = unknown {
                return Err(Diagnostic::error(
                    codes::RESHAPE,
                    "`reshape` can infer one dimension, but its shape has two `-1`",
                    it.span.clone(),
                    "second `-1`",
                )
                .with_label(first.span.clone(), "first `-1`")
                .with_help("write every dimension but one"));
            }
            unknown = Some(it);
            dims.push(0);
        } else {
            let d = args::positive(it, param).map_err(|e| {
                e.with_help("a dimension is a positive integer, or `-1` for the one inferred")
            })?;
            dims.push(d as usize);
        }
    }
    Ok(dims)
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
        // A merge's shapes are checked by `merge_shape`; with one input it is that input.
        LayerKind::Dropout { .. }
        | LayerKind::Activation(_)
        | LayerKind::BatchNorm { .. }
        | LayerKind::LayerNorm { .. }
        | LayerKind::Merge(_) => return Ok(shape.clone()),
        LayerKind::Reshape { shape: target } if target.contains(&0) => {
            // One dimension is `-1`: the input's elements over the known ones.
            let have = shape
                .iter()
                .fold(1u128, |a, &b| a.saturating_mul(b as u128));
            let known = target
                .iter()
                .filter(|&&x| x != 0)
                .fold(1u128, |a, &b| a.saturating_mul(b as u128));
            let written = || {
                let dims: Vec<String> = target
                    .iter()
                    .map(|&x| if x == 0 { "-1".into() } else { x.to_string() })
                    .collect();
                format!("[{}]", dims.join(", "))
            };
            if have % known != 0 {
                d.push(
                    Diagnostic::error(
                        codes::RESHAPE,
                        format!(
                            "cannot reshape {} ({have} elements) to {}: {have} is not a multiple of {known}",
                            show(shape),
                            written()
                        ),
                        call.span.clone(),
                        format!("the known dimensions hold {known} elements"),
                    )
                    .with_label(cur.from.clone(), format!("{came_from}: {have} elements"))
                    .with_help("the `-1` dimension must come out whole: change the known dimensions"),
                );
                return Err(None);
            }
            let inferred = (have / known) as u64;
            return Ok(target
                .iter()
                .map(|&x| if x == 0 { inferred } else { x as u64 })
                .collect());
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
        LayerKind::Embedding { output_dim, .. } => {
            if let [n] = shape[..] {
                return Ok(vec![n, *output_dim as u64]);
            }
            d.push(rank_error(
                "embedding",
                "a vector of token ids `[n]`",
                "the input is one sample's token ids: declare it as a vector, e.g. `input tokens: [64]`",
            ));
            return Err(None);
        }
        LayerKind::GlobalPool { max, dims } => {
            if shape.len() == dims + 1 {
                return Ok(vec![shape[*dims]]);
            }
            let what = global_pool_name(*max, *dims);
            let other = global_pool_name(*max, 3 - dims);
            let needs = if *dims == 1 {
                "a sequence `[steps, channels]`"
            } else {
                "an image `[h, w, c]`"
            };
            let help = if shape.len() == 3 - dims + 1 {
                format!("for an input of this rank use `{other}`")
            } else {
                format!("`{what}` pools every position of each channel of its input; its last axis holds the channels")
            };
            d.push(rank_error(what, needs, &help));
            return Err(None);
        }
        LayerKind::Conv1d {
            filters,
            kernel_size,
            strides,
            padding,
            ..
        } => {
            let win = (*kernel_size, *strides, *padding);
            return infer_steps(
                "conv1d",
                "kernel",
                win,
                Some(*filters as u64),
                cur,
                call,
                name,
                d,
            );
        }
        LayerKind::Pool1d {
            max,
            pool_size,
            strides,
            padding,
        } => {
            let what = if *max { "maxpool1d" } else { "avgpool1d" };
            let win = (*pool_size, *strides, *padding);
            return infer_steps(what, "pool window", win, None, cur, call, name, d);
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

/// `flatten(c)` for Keras's `Flatten()(c)`: a surplus positional argument that names
/// a statement gets the spelling that feeds the layer from it.
fn explain_name_arguments(
    call: &Call,
    taken: &HashMap<String, (Span, usize)>,
    new: &mut [Diagnostic],
) {
    let items = call.args.as_ref().map_or(&[][..], |a| a.items.as_slice());
    for arg in items.iter().filter(|a| a.key.is_none()) {
        let ValueKind::Call(c) = &arg.value.kind else {
            continue;
        };
        if c.args.is_some() || !taken.contains_key(&c.name.name) {
            continue;
        }
        for d in new.iter_mut() {
            if d.code == codes::POSITIONAL && d.span == arg.span {
                d.help = Some(format!(
                    "to feed `{}` to this layer, write it after the arguments: `{}()({})`",
                    c.name.name, call.name.name, c.name.name
                ));
            }
        }
    }
}

/// A merge layer's inputs, as names (`add(a, b)`, or Keras's list `add([a, b])`), and
/// the call with its keyword arguments only. `None` when the inputs are malformed
/// (reported here).
fn merge_inputs(
    call: &Call,
    input: Option<&Ident>,
    diags: &mut Vec<Diagnostic>,
) -> (Option<Vec<Ident>>, Call) {
    let kind = &call.name.name;
    let items = call.args.as_ref().map_or(&[][..], |a| a.items.as_slice());
    let (positional, keyword): (Vec<&Arg>, Vec<&Arg>) = items.iter().partition(|a| a.key.is_none());
    let options = Call {
        name: call.name.clone(),
        args: call.args.as_ref().map(|a| Args {
            items: keyword.into_iter().cloned().collect(),
            span: a.span.clone(),
        }),
        span: call.span.clone(),
    };
    let mut ok = true;
    if let Some(input) = input {
        ok = false;
        diags.push(
            Diagnostic::error(
                codes::MERGE_INPUTS,
                format!("`{kind}` names its inputs inside its parentheses"),
                input.span.clone(),
                "a merge layer takes no `(INPUT)`",
            )
            .with_help(format!("write `{kind}({}, ...)`", input.name)),
        );
    }
    // Keras's spelling: one list of names.
    let values: Vec<&Value> = match positional.as_slice() {
        [only] => match &only.value.kind {
            ValueKind::List(items) => items.iter().collect(),
            _ => vec![&only.value],
        },
        _ => positional.iter().map(|a| &a.value).collect(),
    };
    let mut names = vec![];
    for v in values {
        match &v.kind {
            ValueKind::Call(c) if c.args.is_none() => names.push(c.name.clone()),
            _ => {
                ok = false;
                diags.push(
                    args::type_error(v, "the name of an earlier statement", kind).with_help(
                        format!("merge layers read named statements: `{kind}(a, b)`"),
                    ),
                );
            }
        }
    }
    (ok.then_some(names), options)
}

/// E0039: a merge needs two inputs or more; `subtract` exactly two.
fn merge_arity(kind: &str, call: &Call, n: usize, diags: &mut Vec<Diagnostic>) -> bool {
    let (fits, needs) = if kind == "subtract" {
        (n == 2, "exactly two inputs")
    } else {
        (n >= 2, "at least two inputs")
    };
    if !fits {
        let found = match n {
            0 => "none".to_string(),
            1 => "one".to_string(),
            n => n.to_string(),
        };
        diags.push(
            Diagnostic::error(
                codes::MERGE_INPUTS,
                format!("`{kind}` needs {needs}, found {found}"),
                call.span.clone(),
                format!("{found} input{}", if n == 1 { "" } else { "s" }),
            )
            .with_help(if kind == "subtract" {
                "`subtract(a, b)` computes `a - b`; to subtract several, add them first \
                 (`s = add(b, c)`, then `subtract(a, s)`)"
                    .to_string()
            } else {
                format!("name the statements to merge: `{kind}(a, b)`")
            }),
        );
    }
    fits
}

/// A merge layer's kind from its keyword arguments, and concatenate's `axis` as
/// written (Keras's default -1) with its span.
fn merge_kind(
    kind: &str,
    options: &Call,
    diags: &mut Vec<Diagnostic>,
) -> Option<(LayerKind, Option<(i64, Span)>)> {
    let what = format!("`{kind}`");
    let params: &[&'static str] = if kind == "concatenate" {
        &["axis"]
    } else {
        &[]
    };
    let b = bind(options, &what, params, &[], diags);
    let merge = match kind {
        "add" => Merge::Add,
        "subtract" => Merge::Subtract,
        "multiply" => Merge::Multiply,
        "average" => Merge::Average,
        "maximum" => Merge::Maximum,
        "minimum" => Merge::Minimum,
        _ => {
            let axis = match b.get("axis") {
                None => None,
                Some(v) => Some((ok(args::int(v, "axis"), diags)?, v.span.clone())),
            };
            return Some((LayerKind::Merge(Merge::Concatenate { axis: 0 }), axis));
        }
    };
    Some((LayerKind::Merge(merge), None))
}

/// Keras's `axis` (counting the batch axis 0; negative from the end) as an axis of
/// one sample of rank `rank`.
fn concat_axis(
    (axis, span): (i64, Span),
    rank: usize,
    diags: &mut Vec<Diagnostic>,
) -> Option<usize> {
    let r = rank as i64;
    let sample = if axis < 0 { r + axis } else { axis - 1 };
    if (0..r).contains(&sample) {
        return Some(sample as usize);
    }
    let rule = if axis == 0 || axis == -(r + 1) {
        "cannot be the batch axis".to_string()
    } else {
        format!("must be in 1..={r} or -{r}..=-1 for inputs of rank {r} (without the batch axis)")
    };
    diags.push(
        Diagnostic::error(
            codes::RANGE,
            format!("`axis` {rule}, found {axis}"),
            span,
            "out of range",
        )
        .with_help("`axis = -1`, the default, joins the last axis (features or channels)"),
    );
    None
}

/// E0038: the output shape of a merge, or an error labelling each input's shape at
/// the statement that gives it.
fn merge_shape(
    m: Merge,
    name: &str,
    call: &Call,
    reads: &[usize],
    shapes: &[Vec<u64>],
    graph: &Graph,
    d: &mut Vec<Diagnostic>,
) -> Inferred {
    let usize_shapes: Vec<Vec<usize>> = shapes
        .iter()
        .map(|s| s.iter().map(|&x| x as usize).collect())
        .collect();
    let refs: Vec<&[usize]> = usize_shapes.iter().map(Vec::as_slice).collect();
    if let Some(out) = m.output_shape(&refs) {
        return Ok(out.iter().map(|&x| x as u64).collect());
    }
    let kind = &call.name.name;
    let (message, help) = match m {
        Merge::Concatenate { axis } => (
            format!(
                "the inputs of `{name}` differ on an axis other than the joined one \
                 (`axis = {}`)",
                axis + 1
            ),
            "`concatenate` needs inputs of one rank whose shapes agree on every axis but \
             `axis`; `flatten` or `reshape` a branch to make them agree"
                .to_string(),
        ),
        _ => (
            format!("the inputs of `{name}` have different shapes"),
            format!(
                "`{kind}` combines inputs of one shape element by element; a `dense` or \
                 `reshape` on one branch can make the shapes agree"
            ),
        ),
    };
    let mut diag = Diagnostic::error(
        codes::MERGE_SHAPES,
        message,
        call.span.clone(),
        "merged here",
    );
    let mut labelled: Vec<usize> = vec![];
    for (&r, shape) in reads.iter().zip(shapes) {
        // A statement merged with itself gets one label.
        if labelled.contains(&r) {
            continue;
        }
        labelled.push(r);
        let def = &graph.defs[r];
        diag = diag.with_label(
            def.span.clone(),
            format!("{} gives {}", def.from_name, show(shape)),
        );
    }
    d.push(diag.with_help(help));
    Err(None)
}

/// E0037: every statement but the last must be read by a later one.
fn unused_outputs(
    graph: &Graph,
    block: &ModelBlock,
    out: &CheckedModel,
    diags: &mut Vec<Diagnostic>,
) {
    let Some(last) = graph.defs.len().checked_sub(1) else {
        return;
    };
    for (def, stmt) in graph.defs[..last].iter().zip(&block.stmts) {
        if def.read {
            continue;
        }
        let help = match stmt {
            Stmt::Layer { name: Some(n), .. } | Stmt::Input { name: n, .. } => format!(
                "feed it to a later layer (`dense(8)({0})`, `add({0}, ...)`), or remove it",
                n.name
            ),
            Stmt::Layer {
                name: None, call, ..
            } => format!(
                "name it (`branch = {}(...)`) and feed it to a later layer, or remove it",
                call.name.name
            ),
        };
        diags.push(
            Diagnostic::error(
                codes::UNUSED_OUTPUT,
                format!("the output of {} is never read", def.from_name),
                def.span.clone(),
                "nothing reads this",
            )
            .with_label(
                stmt_span(&block.stmts[last]),
                format!("the output of model `{}` is its last statement", out.name),
            )
            .with_help(help),
        );
    }
}
