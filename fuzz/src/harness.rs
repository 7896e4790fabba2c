//! The entry points the fuzz targets drive, one per input format of nnc, and one
//! that compares the JIT with the reference interpreter. Each takes arbitrary bytes
//! and must return (with any `Ok` or `Err`) without panicking.
//!
//! tests/fuzz_regressions.rs includes this same file, so that `cargo test` replays
//! every saved crash and the seed corpus through exactly what was fuzzed.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use nnc::codegen::{compile, Compiled};
use nnc::ir::graph::{Graph, LossKind, Op};
use nnc::ir::init::initialize;
use nnc::ir::interp;
use nnc::ir::layout::Layout;
use nnc::ops::random::{mix64, GOLDEN_GAMMA};
use nnc::ops::Activation;
use nnc::ops::Real;
use nnc::runtime::{checkpoint, data};
use nnc::sema::model::{LayerKind, Loss, Model};
use nnc::sema::names::INITIALIZERS;
use nnc::sema::summary;
use nnc::CheckOptions;

/// A `.nn` file: check it, then do with the outcome what `nnc check` does (render
/// the diagnostics with ariadne, the JSON document, the summary table).
pub fn check_source(bytes: &[u8]) {
    let outcome = nnc::check_source(
        "fuzz.nn",
        bytes,
        Path::new("/nonexistent-nnc-fuzz"),
        &CheckOptions::default(),
    );
    let _ = outcome.render_diagnostics(false);
    let _ = nnc::cli::json_outcome(&outcome);
    if let (Some(s), false) = (&outcome.summary, outcome.has_errors()) {
        let _ = summary::render_text(s);
    }
}

/// A CSV data file: read it, then prepare it (targets, split, standardize) for a
/// model of the loss the file's length picks.
pub fn csv(bytes: &[u8]) {
    let path = scratch("data.csv");
    if std::fs::write(&path, bytes).is_err() {
        return;
    }
    let Ok(table) = data::csv::read(&path, "label", None) else {
        return;
    };
    let (units, activation, loss) = [
        (3, "softmax", "sparse_categorical_crossentropy"),
        (3, "softmax", "categorical_crossentropy"),
        (1, "sigmoid", "binary_crossentropy"),
        (1, "linear", "mse"),
    ][bytes.len() % 4];
    prepare(
        "csv(\"data.csv\", target = \"label\", standardize = true)\n    test = split(0.25)\n    \
         validation_split = 0.2",
        table.data.feature_count,
        units,
        activation,
        loss,
    );
}

/// An IDX pair: the first two bytes say where the images end and the labels begin;
/// read both, then prepare them for a 10-class model.
pub fn idx(bytes: &[u8]) {
    let Some((head, rest)) = bytes.split_first_chunk::<2>() else {
        return;
    };
    let cut = usize::from(u16::from_le_bytes(*head)).min(rest.len());
    let (images, labels) = (scratch("images.idx"), scratch("labels.idx"));
    if std::fs::write(&images, &rest[..cut]).is_err()
        || std::fs::write(&labels, &rest[cut..]).is_err()
    {
        return;
    }
    let Ok(set) = data::idx::read(&images, &labels) else {
        return;
    };
    prepare(
        "idx(images = \"images.idx\", labels = \"labels.idx\")",
        set.feature_count,
        10,
        "softmax",
        "sparse_categorical_crossentropy",
    );
}

/// `nnc check` with its data files against `nnc run`'s data loading: the first
/// bytes pick a model (input width, output and loss), whether the train block lists
/// its features, standardizes, and has a CSV test source, and where the training file
/// ends and the test file begins; the rest are the two CSV files. Whenever `check`
/// (reading the data) finds no error, preparing the data as `run` does must succeed:
/// `check` must know what `run` would refuse.
pub fn check_data(bytes: &[u8]) {
    let Some((head, rest)) = bytes.split_first_chunk::<4>() else {
        return;
    };
    let inputs = 1 + usize::from(head[0] % 6);
    let classes = 2 + usize::from(head[1] / 4 % 3);
    let (units, activation, loss) = [
        (classes, "softmax", "sparse_categorical_crossentropy"),
        (classes, "softmax", "categorical_crossentropy"),
        (1, "sigmoid", "binary_crossentropy"),
        (1, "linear", "mse"),
    ][usize::from(head[1] % 4)];
    let flags = head[2];
    let cut = (usize::from(head[3]) * rest.len() / 255).min(rest.len());
    let (train, test) = (scratch("train.csv"), scratch("test.csv"));
    if std::fs::write(&train, &rest[..cut]).is_err() || std::fs::write(&test, &rest[cut..]).is_err()
    {
        return;
    }
    let names = ["a", "b", "c", "d", "e", "f"];
    let features = if flags & 1 != 0 {
        let listed: Vec<String> = names[..inputs].iter().map(|n| format!("\"{n}\"")).collect();
        format!(", features = [{}]", listed.join(", "))
    } else {
        String::new()
    };
    let standardize = if flags & 2 != 0 {
        ", standardize = true"
    } else {
        ""
    };
    // A test source, with its own `features` list at times: the training ones in
    // reverse order, or a list shifted by one name.
    let test_features = match flags >> 3 & 3 {
        1 => {
            let listed: Vec<String> = names[..inputs]
                .iter()
                .rev()
                .map(|n| format!("\"{n}\""))
                .collect();
            format!(", features = [{}]", listed.join(", "))
        }
        2 => {
            let listed: Vec<String> = names[1..=inputs.min(5)]
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect();
            format!(", features = [{}]", listed.join(", "))
        }
        _ => String::new(),
    };
    let test_line = if flags & 4 != 0 {
        format!("\n    test = csv(\"test.csv\", target = \"label\"{test_features})")
    } else {
        String::new()
    };
    let text = format!(
        "model m {{\n    input x: [{inputs}]\n    dense({units}, activation = {activation})\n}}\n\
         train {{\n    data = csv(\"train.csv\", target = \"label\"{features}{standardize}){test_line}\n    \
         loss = {loss}\n    optimizer = sgd\n}}\n"
    );
    let mut outcome = nnc::check_source(
        "fuzz.nn",
        text.as_bytes(),
        &scratch_dir(),
        &CheckOptions::default(),
    );
    data::check::check_outcome(&mut outcome);
    let _ = outcome.render_diagnostics(false);
    let _ = nnc::cli::json_outcome(&outcome);
    if let Some(model) = &outcome.model {
        let config = model.train.as_ref().expect("the file has a train block");
        if let Err(e) = data::prepare(model, config) {
            panic!("`nnc check` passed, but run refuses the data: {e}\n{text}");
        }
    }
}

/// A weights file given to `--init` of a small model.
pub fn safetensors(bytes: &[u8]) {
    let path = scratch("w.safetensors");
    if std::fs::write(&path, bytes).is_err() {
        return;
    }
    let expected = [
        ("dense.kernel".to_string(), vec![4, 8]),
        ("dense.bias".to_string(), vec![8]),
        ("dense_1.kernel".to_string(), vec![8, 3]),
        ("dense_1.bias".to_string(), vec![3]),
    ];
    if let Ok(values) = checkpoint::load(&path, &expected) {
        assert!(values
            .iter()
            .zip(&expected)
            .all(|(v, (_, s))| v.len() == s.iter().product::<usize>()));
    }
}

/// Checks a model reading `data` (a `train` block's data line) from the scratch
/// folder and prepares its data as `nnc run` would before training.
fn prepare(data: &str, inputs: usize, units: usize, activation: &str, loss: &str) {
    if inputs == 0 || inputs > 1 << 20 {
        return;
    }
    let text = format!(
        "model m {{\n    input x: [{inputs}]\n    dense({units}, activation = {activation})\n}}\n\
         train {{\n    data = {data}\n    loss = {loss}\n    optimizer = sgd\n}}\n"
    );
    let outcome = nnc::check_source(
        "fuzz.nn",
        text.as_bytes(),
        &scratch_dir(),
        &CheckOptions::default(),
    );
    if let (Some(model), Some(config)) = (
        &outcome.model,
        outcome.model.as_ref().and_then(|m| m.train.as_ref()),
    ) {
        let _ = data::prepare(model, config);
    }
}

thread_local! {
    /// This thread's own scratch folder: fuzzers and tests run in parallel.
    static DIR: PathBuf = {
        let dir = std::env::temp_dir().join(format!(
            "nnc-fuzz-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::create_dir_all(&dir);
        dir
    };
}

fn scratch_dir() -> PathBuf {
    DIR.with(PathBuf::clone)
}

/// Removes this thread's scratch folder (the regression tests end with it).
pub fn remove_scratch() {
    let _ = std::fs::remove_dir_all(scratch_dir());
}

fn scratch(name: &str) -> PathBuf {
    scratch_dir().join(name)
}

// ---------------------------------------------------------------------------------
// jit_vs_interp: the compiled train step against the reference interpreter.

/// Forward multiply-adds per step (the batch included) a generated model may take. A
/// train step is about three times that, which the interpreter runs in f32 and over
/// `Bounded` numbers (see `Pair::step`): this keeps the interpreter's share of an
/// input within a few milliseconds (the JIT's compilation takes the rest).
const MAX_FORWARD_MACS: usize = 1 << 15;

/// Differential test of the compiler: the bytes pick a random valid model (checked by
/// `nnc::check_source`, which must accept it), a batch size, a few batches of inputs
/// and targets (extreme values included) and a seed; the train step then runs for a
/// few steps (and, with batchnorm, the evaluation step once) on the JIT and on the
/// reference interpreter from the same arena. Panics, naming the model, the tensor
/// and both values, when they disagree by the rule of `Pair::step`. Returns how many
/// values were compared.
pub fn jit_vs_interp(bytes: &[u8]) -> usize {
    let mut input = Bytes::new(bytes);
    let case = generate(&mut input);
    let outcome = nnc::check_source(
        "fuzz.nn",
        case.source.as_bytes(),
        Path::new("/nonexistent-nnc-fuzz"),
        &CheckOptions::default(),
    );
    let model = match (&outcome.model, outcome.has_errors()) {
        (Some(model), false) => model,
        _ => panic!(
            "nnc refuses a generated model:\n{}\n{}",
            case.source,
            outcome.render_diagnostics(false)
        ),
    };
    let context = format!("batch {}, model:\n{}", case.batch, case.source);
    let build = |what, graph: Result<Graph, nnc::ir::CompileError>| {
        Pair::new(
            what,
            graph.unwrap_or_else(|e| panic!("{e}; {context}")),
            &context,
        )
    };
    let train = build("train", nnc::ir::train_step(model, case.batch));
    // Evaluation differs from training's forward pass in batchnorm only (dropout
    // is off), and compiling a second graph doubles the time an input takes.
    let batchnorm = model
        .layers
        .iter()
        .any(|l| matches!(l.kind, LayerKind::BatchNorm { .. }));
    let eval = batchnorm.then(|| build("evaluation", nnc::ir::evaluate(model, case.batch)));

    let mut arena = vec![0.0; train.reference.len];
    initialize(model, &train.graph, &train.reference, &mut arena, case.seed);
    let mut weights = arena[..train.reference.persistent_len].to_vec();
    let batches: Vec<(Vec<f32>, Vec<f32>)> = (0..case.steps)
        .map(|_| batch(&mut input, model, case.batch, case.values))
        .collect();
    // The train steps, then evaluation (batchnorm on its moving statistics) on
    // the first batch.
    let evaluation = eval.as_ref().map(|e| (e, &batches[0]));
    let runs = batches.iter().map(|b| (&train, b)).chain(evaluation);
    let mut compared = 0;
    for (step, (pair, (x, y))) in (0u64..).zip(runs) {
        match pair.step(&mut weights, x, y, step) {
            Some(values) => compared += values,
            None => break,
        }
    }
    compared
}

/// The `.nn` text of the model an input of `jit_vs_interp` stands for.
pub fn jit_vs_interp_model(bytes: &[u8]) -> String {
    generate(&mut Bytes::new(bytes)).source
}

/// The fuzz bytes as a stream of choices. Structure comes first (a byte a choice,
/// 0 once the bytes run out), then the data; data past the end comes from a fixed
/// generator, so that short inputs still make full batches of ordinary values.
struct Bytes<'a> {
    data: &'a [u8],
    fill: u64,
}

impl<'a> Bytes<'a> {
    fn new(data: &'a [u8]) -> Bytes<'a> {
        Bytes {
            data,
            fill: data.len() as u64,
        }
    }

    fn next(&mut self) -> Option<u8> {
        let (&first, rest) = self.data.split_first()?;
        self.data = rest;
        Some(first)
    }

    fn byte(&mut self) -> u8 {
        self.next().unwrap_or(0)
    }

    /// `0..n`, for `n <= 256`.
    fn below(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n
    }

    fn wide(&mut self) -> usize {
        usize::from(u16::from_le_bytes([self.byte(), self.byte()]))
    }

    /// True `percent` of the time, never once the bytes run out.
    fn chance(&mut self, percent: u32) -> bool {
        u32::from(self.byte()) * 100 >= (100 - percent) * 256
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// A sample or target value: `scale` times `[-4, 4)`, or with `extremes` for
    /// one byte value in eight one of `EXTREMES`; the generator makes ordinary ones.
    fn value(&mut self, values: Values) -> f32 {
        let ordinary = |b: u8| (f32::from(b) - 128.0) / 32.0 * values.scale;
        match self.next() {
            Some(b) if values.extremes && b >= 224 => {
                EXTREMES[usize::from(b - 224) % EXTREMES.len()]
            }
            Some(b) => ordinary(b),
            None => ordinary(self.generated()),
        }
    }

    /// A class index or 0/1 label byte.
    fn label(&mut self) -> usize {
        usize::from(self.next().unwrap_or_else(|| self.generated()))
    }

    fn generated(&mut self) -> u8 {
        (splitmix(&mut self.fill) >> 56) as u8
    }
}

/// Values that stress overflow, underflow and signed zeros.
const EXTREMES: [f32; 16] = [
    0.0,
    -0.0,
    1e30,
    -1e30,
    f32::MAX,
    -f32::MAX,
    1e-40,
    -1e-40,
    f32::MIN_POSITIVE,
    1e-30,
    1e10,
    -1e10,
    1.0,
    -1.0,
    65504.0,
    -3e38,
];

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(GOLDEN_GAMMA);
    mix64(*state)
}

/// What the structure bytes decode to.
struct Case {
    source: String,
    batch: usize,
    steps: u64,
    /// The train block's seed (dropout masks) and the initializers' seed.
    seed: u64,
    values: Values,
}

/// What input and target values look like in one case.
#[derive(Clone, Copy)]
struct Values {
    /// The magnitude of ordinary values.
    scale: f32,
    /// Whether some are extreme: most runs with one overflow f32 at once, so
    /// they are the exception.
    extremes: bool,
}

/// A `.nn` model under construction: its layer lines, the sample shape after the last
/// one and the forward multiply-adds per sample so far.
struct Sketch {
    input: Vec<usize>,
    lines: Vec<String>,
    shape: Vec<usize>,
    macs: usize,
}

impl Sketch {
    fn new(input: Vec<usize>) -> Sketch {
        Sketch {
            shape: input.clone(),
            input,
            lines: vec![],
            macs: 0,
        }
    }

    fn push(&mut self, line: String, shape: Vec<usize>, macs: usize) {
        self.lines.push(line);
        self.shape = shape;
        self.macs += macs;
    }

    /// A layer that keeps the shape (activation, dropout, batchnorm).
    fn keep(&mut self, line: String) {
        self.push(line, self.shape.clone(), 0);
    }

    /// An activation layer (any but a softmax over one unit).
    fn keep_activation(&mut self, b: &mut Bytes) {
        let width = self.shape[self.shape.len() - 1];
        self.keep(over(activation(b), width));
    }

    fn size(&self) -> usize {
        self.shape.iter().product()
    }

    /// The widest dense layer that still fits the budget and leaves room for a layer
    /// of `next` units after it.
    fn max_units(&self, next: usize) -> usize {
        (MAX_FORWARD_MACS.saturating_sub(self.macs) / (self.size() + next)).max(1)
    }

    fn dense(&mut self, b: &mut Bytes, units: usize, activation: Option<String>) {
        let macs = self.size() * units;
        self.push(dense_call(b, units, activation), vec![units], macs);
    }
}

/// `activation` for a last axis of `width`: a softmax over one unit is always 1, and
/// nnc refuses it (E0022), so that one becomes a sigmoid.
fn over(activation: String, width: usize) -> String {
    match (width, activation.as_str()) {
        (1, "softmax") => "sigmoid".to_string(),
        _ => activation,
    }
}

/// `dense(units, ...)` with, at times, no bias and other initializers.
fn dense_call(b: &mut Bytes, units: usize, activation: Option<String>) -> String {
    let mut args = vec![units.to_string()];
    if let Some(a) = activation {
        let a = over(a, units);
        args.push(format!("activation = {a}"));
    }
    if b.chance(15) {
        args.push("use_bias = false".into());
    }
    for which in ["kernel_initializer", "bias_initializer"] {
        if b.chance(15) {
            args.push(format!("{which} = {}", b.pick(&INITIALIZERS)));
        }
    }
    format!("dense({})", args.join(", "))
}

/// A first byte that picks a graph model (`graph_model`) and is not itself a choice.
/// The seeds made before graph models never start with it, so they decode as before.
const GRAPH: u8 = 0xff;

/// The losses the generator picks from: the first ones of `Loss::ALL`, those the
/// corpus under tests/fuzz_corpus was recorded with, so its inputs keep decoding to
/// the same models. Later losses are compared with the interpreter by the random
/// models of the codegen tests, which pick from all of `Loss::ALL`.
const FUZZED_LOSSES: usize = 6;

fn generate(b: &mut Bytes) -> Case {
    let graph = b.data.first() == Some(&GRAPH);
    if graph {
        b.byte();
    }
    let loss = b.pick(&Loss::ALL[..FUZZED_LOSSES]);
    let classes = match loss {
        Loss::CategoricalCrossentropy | Loss::SparseCategoricalCrossentropy => 2 + b.below(11),
        _ => 1,
    };
    let mut s = if graph {
        graph_model(b)
    } else if b.chance(35) {
        convnet(b, classes)
    } else {
        dense_stack(b, classes)
    };
    let head = match loss {
        Loss::BinaryCrossentropy if b.chance(85) => "sigmoid".to_string(),
        Loss::CategoricalCrossentropy | Loss::SparseCategoricalCrossentropy if b.chance(80) => {
            "softmax".to_string()
        }
        _ => activation(b),
    };
    // The head's activation as its own layer still fuses with the loss.
    if b.chance(15) {
        s.dense(b, classes, None);
        s.keep(over(head, classes));
    } else {
        s.dense(b, classes, Some(head));
    }
    let optimizer = optimizer(b);
    let steps = 1 + b.below(3) as u64;
    let seed = u64::from(b.byte());
    let values = Values {
        scale: b.pick(&[1.0, 0.1, 25.0, 0.013]),
        extremes: b.chance(30),
    };
    let batch = match b.below(4) {
        0 => 1,
        1 | 2 => 2 + b.below(8),
        _ => 10 + b.below(55),
    };
    let batch = batch.min(MAX_FORWARD_MACS / s.macs.max(1)).max(1);
    let mut source = format!("model fuzz {{\n    input x: {:?}\n", s.input);
    for line in &s.lines {
        source += &format!("    {line}\n");
    }
    source += &format!(
        "}}\n\ntrain {{\n    data = csv(\"unused.csv\", target = \"y\")\n    loss = {}\n    \
         optimizer = {optimizer}\n    batch_size = {batch}\n    seed = {seed}\n}}\n",
        loss.keyword()
    );
    Case {
        source,
        batch,
        steps,
        seed,
        values,
    }
}

/// Dense layers from 1 to a few thousand units wide, with dropout, activation,
/// batchnorm and reshape layers between them.
fn dense_stack(b: &mut Bytes, classes: usize) -> Sketch {
    let mut s = if b.chance(15) {
        let shape = vec![1 + b.below(5), 1 + b.below(8)];
        let size = shape[0] * shape[1];
        let mut s = Sketch::new(shape);
        s.push("flatten".into(), vec![size], 0);
        s
    } else {
        Sketch::new(vec![units(b, MAX_FORWARD_MACS / (classes + 1))])
    };
    for _ in 0..b.below(4) {
        let n = units(b, s.max_units(classes));
        let act = b.chance(80).then(|| activation(b));
        s.dense(b, n, act);
        if b.chance(20) {
            s.keep(format!("dropout({})", b.pick(&DROPOUT_RATES)));
        }
        if b.chance(12) {
            s.keep_activation(b);
        }
        if b.chance(12) {
            s.keep(batchnorm(b));
        }
        if b.chance(8) {
            let size = s.size();
            let rows = (1..=size)
                .filter(|d| size % d == 0)
                .nth(b.below(4))
                .unwrap_or(1);
            s.push(
                format!("reshape(shape = [{rows}, {}])", size / rows),
                vec![rows, size / rows],
                0,
            );
            s.push("flatten".into(), vec![size], 0);
        }
    }
    s
}

/// The largest sample (values) a statement of a graph model may have: concatenations
/// grow them, and every one left unread is joined into the head.
const MAX_GRAPH_SIZE: usize = 256;

/// A statement of a graph model: its name, sample shape, and whether a later
/// statement reads it.
struct Statement {
    name: String,
    shape: Vec<usize>,
    read: bool,
}

/// A graph of named statements (`NAME = LAYER(ARGS)(INPUT)`) over a vector or a small
/// image: layers fed from the input or any earlier statement (fan-out), merges of
/// every kind over statements of one shape (a statement merged with itself too, in
/// both of Keras's spellings), concatenations on every axis where the shapes agree
/// elsewhere (the axis counted from either end), with dense, `same` conv2d,
/// layer_norm, batchnorm, activation and dropout layers between them. Every statement
/// nothing reads (the last included) is flattened and concatenated, so that the head
/// reads them all.
fn graph_model(b: &mut Bytes) -> Sketch {
    let input = if b.chance(30) {
        vec![1 + b.below(5), 1 + b.below(5), 1 + b.below(3)]
    } else {
        vec![1 + b.below(12)]
    };
    let mut s = Sketch::new(input.clone());
    let mut nodes = vec![Statement {
        name: "x".into(),
        shape: input,
        read: false,
    }];
    for _ in 0..2 + b.below(7) {
        let from = b.below(nodes.len());
        let shape = nodes[from].shape.clone();
        let size: usize = shape.iter().product();
        let room = MAX_FORWARD_MACS.saturating_sub(s.macs);
        match b.below(8) {
            0 | 1 if shape.len() == 1 && size * 16 <= room => {
                // Few widths, so that merges find partners.
                let units = match b.below(4) {
                    0 => 3,
                    1 => 5,
                    _ => 1 + b.below(16),
                };
                let act = b.chance(80).then(|| activation(b));
                let call = dense_call(b, units, act);
                statement(
                    b,
                    &mut s,
                    &mut nodes,
                    call,
                    &[from],
                    vec![units],
                    size * units,
                );
            }
            0 | 1 if shape.len() == 3 => {
                let filters = if b.chance(50) {
                    shape[2]
                } else {
                    1 + b.below(4)
                };
                let kernel = [1 + b.below(3), 1 + b.below(3)];
                let macs = size * kernel[0] * kernel[1] * filters;
                let out = vec![shape[0], shape[1], filters];
                if macs <= room && shape[0] * shape[1] * filters <= MAX_GRAPH_SIZE {
                    let mut call = format!(
                        "conv2d({filters}, kernel_size = {}, padding = same",
                        pair(b, kernel)
                    );
                    if b.chance(70) {
                        call += &format!(", activation = {}", over(activation(b), filters));
                    }
                    call += ")";
                    statement(b, &mut s, &mut nodes, call, &[from], out, macs);
                }
            }
            2 | 3 => {
                let merge = b.pick(&[
                    "add", "subtract", "multiply", "average", "maximum", "minimum",
                ]);
                let same: Vec<usize> = (0..nodes.len())
                    .filter(|&i| nodes[i].shape == shape)
                    .collect();
                let mut reads = vec![from, b.pick(&same)];
                if merge != "subtract" && b.chance(30) {
                    reads.push(b.pick(&same));
                }
                statement(b, &mut s, &mut nodes, merge.into(), &reads, shape, 0);
            }
            4 => {
                // Concatenate along an axis with statements that agree on the others.
                let axis = b.below(shape.len());
                let fits: Vec<usize> = (0..nodes.len())
                    .filter(|&i| {
                        let t = &nodes[i].shape;
                        t.len() == shape.len()
                            && (0..t.len()).all(|a| a == axis || t[a] == shape[a])
                    })
                    .collect();
                let mut reads = vec![from, b.pick(&fits)];
                if b.chance(30) {
                    reads.push(b.pick(&fits));
                }
                let mut out = shape.clone();
                out[axis] = reads.iter().map(|&r| nodes[r].shape[axis]).sum();
                if out.iter().product::<usize>() <= MAX_GRAPH_SIZE {
                    // Keras's numbering: the batch axis is 0, -1 the last.
                    let call = match b.below(3) {
                        0 if axis + 1 == shape.len() => "concatenate".to_string(),
                        1 => format!("concatenate(axis = {})", axis as i64 - shape.len() as i64),
                        _ => format!("concatenate(axis = {})", axis + 1),
                    };
                    statement(b, &mut s, &mut nodes, call, &reads, out, 0);
                }
            }
            5 if shape.len() == 3 => {
                let out = vec![size];
                statement(b, &mut s, &mut nodes, "flatten".into(), &[from], out, 0);
            }
            _ => {
                let call = match b.below(4) {
                    0 => "layer_norm".to_string(),
                    1 => batchnorm(b),
                    2 => format!("dropout({})", b.pick(&DROPOUT_RATES)),
                    _ => over(activation(b), shape[shape.len() - 1]),
                };
                statement(b, &mut s, &mut nodes, call, &[from], shape, 0);
            }
        }
    }
    // Flatten every statement nothing reads, and join them: the head reads them all.
    let mut ends = vec![];
    for i in 0..nodes.len() {
        if nodes[i].read {
            continue;
        }
        if nodes[i].shape.len() > 1 {
            let out = vec![nodes[i].shape.iter().product()];
            statement(b, &mut s, &mut nodes, "flatten".into(), &[i], out, 0);
            ends.push(nodes.len() - 1);
        } else {
            ends.push(i);
        }
    }
    if ends.len() > 1 {
        let out = vec![ends.iter().map(|&e| nodes[e].shape[0]).sum()];
        statement(b, &mut s, &mut nodes, "concatenate".into(), &ends, out, 0);
    }
    s
}

/// Adds `NAME = CALL` reading `reads`: a merge names them all (`add(a, b)`, or at
/// times Keras's list, `add([a, b])`); a layer names its one input as `(INPUT)`,
/// which it may leave out when it reads the statement just above.
fn statement(
    b: &mut Bytes,
    s: &mut Sketch,
    nodes: &mut Vec<Statement>,
    call: String,
    reads: &[usize],
    shape: Vec<usize>,
    macs: usize,
) {
    let names: Vec<&str> = reads.iter().map(|&r| nodes[r].name.as_str()).collect();
    let name = format!("n{}", nodes.len());
    let line = if reads.len() > 1 {
        // `concatenate(axis = 2)` takes its inputs before the axis.
        let (kind, args) = call.split_once('(').unwrap_or((&call, ")"));
        let args = args.strip_suffix(')').unwrap_or(args);
        let inputs = if b.chance(25) {
            format!("[{}]", names.join(", "))
        } else {
            names.join(", ")
        };
        let extra = if args.is_empty() {
            String::new()
        } else {
            format!(", {args}")
        };
        format!("{name} = {kind}({inputs}{extra})")
    } else if reads[0] + 1 == nodes.len() && b.chance(30) {
        format!("{name} = {call}")
    } else {
        let call = if call.contains('(') {
            call
        } else {
            format!("{call}()")
        };
        format!("{name} = {call}({})", names[0])
    };
    for &r in reads {
        nodes[r].read = true;
    }
    nodes.push(Statement {
        name,
        shape: shape.clone(),
        read: false,
    });
    s.push(line, shape, macs);
}

/// A dense width at most `max`: mostly small (1 often), sometimes past the size
/// the JIT multiplies inline, sometimes thousands wide.
fn units(b: &mut Bytes, max: usize) -> usize {
    let want = match b.below(8) {
        0..=3 => 1 + b.below(16),
        4 | 5 => 17 + b.below(64),
        6 => 1,
        _ => 100 + b.wide() % 3901,
    };
    want.clamp(1, max.max(1))
}

/// Small images through conv2d blocks (odd sizes, strides that do not divide, both
/// paddings, batchnorm, max and average pooling), flattened into a dense head.
fn convnet(b: &mut Bytes, classes: usize) -> Sketch {
    let image = vec![1 + b.below(10), 1 + b.below(10), 1 + b.below(4)];
    let mut s = if b.chance(15) {
        let size = image.iter().product();
        let mut s = Sketch::new(vec![size]);
        let line = format!("reshape(shape = {image:?})");
        s.push(line, image, 0);
        s
    } else {
        Sketch::new(image)
    };
    for _ in 0..1 + b.below(3) {
        let (kernel, strides, padding, [oh, ow]) = window(b, &s.shape, 4);
        let per_filter = oh * ow * kernel[0] * kernel[1] * s.shape[2];
        let room = MAX_FORWARD_MACS.saturating_sub(s.macs) / per_filter.max(1);
        let filters = (1 + b.below(8)).clamp(1, room.max(1));
        let mut args = vec![
            filters.to_string(),
            format!("kernel_size = {}", pair(b, kernel)),
        ];
        if strides != [1, 1] || b.chance(20) {
            args.push(format!("strides = {}", pair(b, strides)));
        }
        if padding == "same" || b.chance(20) {
            args.push(format!("padding = \"{padding}\""));
        }
        if b.chance(70) {
            args.push(format!("activation = {}", over(activation(b), filters)));
        }
        if b.chance(15) {
            args.push("use_bias = false".into());
        }
        if b.chance(15) {
            args.push(format!("kernel_initializer = {}", b.pick(&INITIALIZERS)));
        }
        let line = format!("conv2d({})", args.join(", "));
        s.push(line, vec![oh, ow, filters], per_filter * filters);
        if b.chance(30) {
            s.keep(batchnorm(b));
        }
        if b.chance(15) {
            s.keep_activation(b);
        }
        if b.chance(50) {
            let (size, strides, padding, [oh, ow]) = window(b, &s.shape, 3);
            let kind = if b.chance(50) {
                "maxpool2d"
            } else {
                "avgpool2d"
            };
            let mut args = vec![format!("pool_size = {}", pair(b, size))];
            if strides != size || b.chance(20) {
                args.push(format!("strides = {}", pair(b, strides)));
            }
            if padding == "same" || b.chance(20) {
                args.push(format!("padding = \"{padding}\""));
            }
            let line = format!("{kind}({})", args.join(", "));
            s.push(line, vec![oh, ow, s.shape[2]], 0);
        }
    }
    let size = s.size();
    s.push("flatten".into(), vec![size], 0);
    if b.chance(20) {
        s.keep(format!("dropout({})", b.pick(&DROPOUT_RATES)));
    }
    if b.chance(30) {
        let n = units(b, s.max_units(classes));
        let act = activation(b);
        s.dense(b, n, Some(act));
    }
    s
}

/// A window of up to `largest` on a side over an `[h, w, c]` image: its size,
/// strides, padding and output size. `valid` only when the window fits.
fn window(
    b: &mut Bytes,
    image: &[usize],
    largest: usize,
) -> ([usize; 2], [usize; 2], &'static str, [usize; 2]) {
    let size = [1 + b.below(largest), 1 + b.below(largest)];
    let strides = [1 + b.below(3), 1 + b.below(3)];
    let fits = size[0] <= image[0] && size[1] <= image[1];
    let same = !fits || b.chance(50);
    let out = |a: usize| {
        if same {
            image[a].div_ceil(strides[a])
        } else {
            (image[a] - size[a]) / strides[a] + 1
        }
    };
    let padding = if same { "same" } else { "valid" };
    (size, strides, padding, [out(0), out(1)])
}

/// A pair argument as `n` when both are equal (sometimes), else `[a, b]`.
fn pair(b: &mut Bytes, v: [usize; 2]) -> String {
    if v[0] == v[1] && b.chance(60) {
        v[0].to_string()
    } else {
        format!("[{}, {}]", v[0], v[1])
    }
}

const DROPOUT_RATES: [&str; 5] = ["0.0", "0.1", "0.5", "0.9", "0.99"];

/// The activations the generator draws from. The seeds in tests/fuzz_corpus decode
/// through this list by index, so it is frozen: a longer list would change the model
/// every seed stands for. The activations added since (selu, softsign, hard_sigmoid,
/// mish, exponential) are covered by the codegen tests' random models, the
/// per-activation tests and the Keras parity tests.
const FUZZ_ACTIVATIONS: [&str; 10] = [
    "linear",
    "relu",
    "leaky_relu",
    "elu",
    "sigmoid",
    "tanh",
    "softmax",
    "gelu",
    "silu",
    "softplus",
];

/// An activation name, those that take an `alpha` sometimes with it.
fn activation(b: &mut Bytes) -> String {
    let name = b.pick(&FUZZ_ACTIVATIONS);
    let takes_alpha = Activation::named(name).is_some_and(|a| a.alpha().is_some());
    if takes_alpha && b.chance(50) {
        format!("{name}(alpha = {})", b.pick(&["0.0", "0.05", "1.0", "2.5"]))
    } else {
        name.to_string()
    }
}

fn batchnorm(b: &mut Bytes) -> String {
    let mut args = vec![];
    if b.chance(50) {
        args.push(format!(
            "momentum = {}",
            b.pick(&["0.99", "0.9", "0.0", "1.0"])
        ));
    }
    if b.chance(50) {
        args.push(format!("epsilon = {}", b.pick(&["0.001", "1e-5", "0.1"])));
    }
    if args.is_empty() {
        "batchnorm".into()
    } else {
        format!("batchnorm({})", args.join(", "))
    }
}

/// Every optimizer with its hyperparameters, sometimes at their defaults.
fn optimizer(b: &mut Bytes) -> String {
    let name = b.pick(&["sgd", "adam", "adamw", "rmsprop"]);
    if b.chance(20) {
        return name.to_string();
    }
    let lr = b.pick(&["0.001", "0.01", "0.1", "1.0", "1e-5"]);
    let eps = b.pick(&["1e-7", "1e-3", "1e-10"]);
    let mut args = vec![format!("learning_rate = {lr}")];
    match name {
        "sgd" => {
            args.push(format!("momentum = {}", b.pick(&["0.0", "0.9", "0.5"])));
            args.push(format!("nesterov = {}", b.chance(50)));
        }
        "rmsprop" => {
            args.push(format!("rho = {}", b.pick(&["0.9", "0.0", "0.99"])));
            args.push(format!("epsilon = {eps}"));
        }
        _ => {
            args.push(format!("beta_1 = {}", b.pick(&["0.9", "0.5", "0.0"])));
            args.push(format!("beta_2 = {}", b.pick(&["0.999", "0.9", "0.5"])));
            args.push(format!("epsilon = {eps}"));
            if name == "adamw" {
                let wd = b.pick(&["0.004", "0.1", "0.0"]);
                args.push(format!("weight_decay = {wd}"));
            }
        }
    }
    format!("{name}({})", args.join(", "))
}

/// One batch of `rows` samples and targets valid for the model's loss: class indices
/// in range, one-hot rows, 0/1 labels, or any values for the regressions.
fn batch(b: &mut Bytes, model: &Model, rows: usize, values: Values) -> (Vec<f32>, Vec<f32>) {
    let inputs: usize = model.input_shape.iter().product();
    let x = (0..rows * inputs).map(|_| b.value(values)).collect();
    let classes = model.output_size();
    let loss = model.train.as_ref().map(|t| t.loss);
    let y = match loss {
        Some(Loss::SparseCategoricalCrossentropy) => {
            (0..rows).map(|_| (b.label() % classes) as f32).collect()
        }
        Some(Loss::CategoricalCrossentropy) => (0..rows)
            .flat_map(|_| {
                let hot = b.label() % classes;
                (0..classes).map(move |c| f32::from(u8::from(c == hot)))
            })
            .collect(),
        Some(Loss::BinaryCrossentropy) => (0..rows).map(|_| (b.label() % 2) as f32).collect(),
        _ => (0..rows * classes).map(|_| b.value(values)).collect(),
    };
    (x, y)
}

/// Any difference passes under this fraction of the tensor's largest magnitude: the
/// tolerance of the JIT's unit tests.
const TOLERANCE: f64 = 1e-5;

/// A magnitude below which differences count as absolute ones: tiny and denormal values.
const SCALE_FLOOR: f64 = 1e-6;

/// How many rounding error bounds (see `Bounded`) the JIT may be off the interpreter:
/// one for each executor, and as much again because the JIT's matrix products
/// regroup the interpreter's sums in blocks.
const BOUNDS: f64 = 4.0;

/// Past this magnitude a step may overflow f32 in one executor and not the other:
/// the squares and partial sums of values up to this size (over up to 1e6 terms)
/// stay below `f32::MAX`, larger ones may not.
const OVERFLOW_RISK: f64 = 1e16;

/// One graph, compiled for the layout training uses, and its reference layout, which
/// keeps every intermediate readable.
struct Pair<'a> {
    /// "train" or "evaluation", for messages.
    what: &'static str,
    graph: Graph,
    reference: Layout,
    planned: Layout,
    compiled: Compiled,
    context: &'a str,
}

impl<'a> Pair<'a> {
    fn new(what: &'static str, graph: Graph, context: &'a str) -> Pair<'a> {
        let planned = Layout::planned(&graph);
        let compiled = compile(&graph, &planned)
            .unwrap_or_else(|e| panic!("the JIT refuses a valid model: {e}; {context}"));
        Pair {
            what,
            reference: Layout::new(&graph),
            planned,
            compiled,
            graph,
            context,
        }
    }

    /// Runs one step from `weights` (the persistent prefix of the arena) on the JIT
    /// and on the interpreter, and compares the output, the loss and every weight,
    /// optimizer slot and moving statistic. `weights` then holds the interpreter's,
    /// so that the next step starts both from the same state and differences do
    /// not compound. Returns how many values were compared, or `None` once f32
    /// overflowed.
    ///
    /// The rule. The interpreter runs the step in f32 (`R32`, the oracle) and, node
    /// by node, over `Bounded` numbers (`B`: f64 values with a bound on how far f32
    /// rounding can move them).
    /// 1. If `R32` holds a non-finite value anywhere (any intermediate), f32
    ///    overflowed: nothing is compared and the run stops.
    /// 2. Each JIT value must be within `TOLERANCE` of the tensor's largest `|R32|`
    ///    (floored at `SCALE_FLOOR`) plus `BOUNDS` times its error bound in `B`. On
    ///    well-conditioned values the bound is below the tolerance; it widens only
    ///    where rounding is amplified (cancellation, batchnorm over a nearly
    ///    constant channel, Adam on a gradient that is only rounding noise).
    /// 3. Where a node jumps (a ReLU derivative, an MAE sign, a probability clip, a
    ///    max-pool argmax) and `B` finds an input within rounding of the threshold,
    ///    the JIT may rightly have taken the other side: that node's output, and
    ///    through it everything computed from it, gets an infinite bound.
    /// 4. A JIT NaN or infinity where `R32` is finite fails, unless some value of
    ///    the step (input, target, `B` intermediate) exceeds `OVERFLOW_RISK`.
    ///
    /// Ordinary inputs never reach rule 1 or the exception of rule 4, and rule 3
    /// only when a value lands within rounding of a threshold.
    fn step(&self, weights: &mut [f32], x: &[f32], y: &[f32], step: u64) -> Option<usize> {
        let (g, n) = (&self.graph, weights.len());
        // NaN in the temporaries: a read of one the step never wrote shows.
        let mut jit = vec![f32::NAN; self.planned.len];
        jit[..n].copy_from_slice(weights);
        self.compiled
            .run(&mut jit, x, y, step)
            .unwrap_or_else(|e| panic!("{e}; {}", self.context));
        let mut oracle = vec![0.0; self.reference.len];
        oracle[..n].copy_from_slice(weights);
        interp::run(g, &self.reference, &mut oracle, x, y, step);
        if oracle.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let bounded = self.bounded(weights, x, y, step);
        weights.copy_from_slice(&oracle[..n]);
        let data = x.iter().chain(y).map(|&v| f64::from(v));
        let overflow_risk = bounded
            .iter()
            .map(|b| b.value)
            .chain(data)
            .any(|v| v.is_nan() || v.abs() > OVERFLOW_RISK);

        let mut compared = 0;
        let results = (0..g.tensors.len())
            .filter(|&id| g.tensors[id].role.is_persistent())
            .chain([g.output])
            .chain(g.loss);
        for id in results {
            let (Some(r), Some(p)) = (self.reference.range(g, id), self.planned.range(g, id))
            else {
                continue;
            };
            let want = &oracle[r.clone()];
            let scale = want
                .iter()
                .fold(SCALE_FLOOR, |m, &v| m.max(f64::from(v).abs()));
            for (i, (&got, &w)) in jit[p].iter().zip(want).enumerate() {
                let b = bounded[r.start + i];
                let allowed = TOLERANCE * scale + BOUNDS * b.error;
                let ok = got == w
                    || (!got.is_finite() && overflow_risk)
                    || (f64::from(got) - f64::from(w)).abs() <= allowed;
                assert!(
                    ok,
                    "the JIT and the interpreter disagree on `{}`[{i}] after step {step} of \
                     the {} graph: JIT {got:e}, interpreter {w:e} (in f64 {:e}, f32 rounding \
                     error at most {:e}); allowed difference {allowed:e}; {}",
                    g.tensors[id].name, self.what, b.value, b.error, self.context
                );
                compared += usize::from(allowed.is_finite());
            }
        }
        Some(compared)
    }

    /// The step over `Bounded` numbers in the reference layout, node by node, so
    /// that a node that jumps where rounding could put an input on either side of
    /// the threshold can mark its output unbounded (rule 3 of `step`).
    fn bounded(&self, weights: &[f32], x: &[f32], y: &[f32], step: u64) -> Vec<Bounded> {
        let g = &self.graph;
        let exact =
            |v: &[f32]| -> Vec<Bounded> { v.iter().map(|&v| Bounded::exact(v.into())).collect() };
        let (x, y) = (exact(x), exact(y));
        let mut arena = exact(weights);
        arena.resize(self.reference.len, Bounded::exact(0.0));
        let unbounded = |arena: &[Bounded], id: usize| {
            let r = self.reference.range(g, id).unwrap_or(0..0);
            arena[r].iter().any(|b| b.error == f64::INFINITY)
        };
        let mut single = Graph {
            nodes: vec![],
            ..g.clone()
        };
        for node in &g.nodes {
            single.nodes = vec![node.clone()];
            // Max pooling reads its argmax as an index, which carries no error.
            let reads_index = matches!(node.op, Op::MaxPool2d(_) | Op::MaxPool2dGrad(_))
                && node.inputs.iter().any(|&i| unbounded(&arena, i));
            AMBIGUOUS.set(false);
            interp::run_in(&single, &self.reference, &mut arena, &x, &y, step);
            if reads_index || (AMBIGUOUS.get() && jumps(&node.op)) {
                let r = self.reference.range(g, node.output).unwrap_or(0..0);
                arena[r].iter_mut().for_each(|b| b.error = f64::INFINITY);
            }
        }
        arena
    }
}

/// Whether `op` may jump where one of its comparisons goes the other way. The rest
/// compare only where both sides agree (a sigmoid's two stable forms, a leaky
/// ReLU at 0) or through `max`/`min`, which `Bounded` bounds itself.
fn jumps(op: &Op) -> bool {
    match op {
        Op::Activate(_) | Op::Loss(_) => false,
        Op::ActivateGrad(a) => a.derivative_jumps(),
        Op::LossGrad(kind) => !matches!(
            kind,
            LossKind::Mse
                | LossKind::Huber { .. }
                | LossKind::SigmoidBinaryCrossentropy
                | LossKind::SoftmaxCategoricalCrossentropy
                | LossKind::SoftmaxSparseCategoricalCrossentropy
        ),
        _ => true,
    }
}

thread_local! {
    /// Set by a comparison of `Bounded` numbers that rounding could decide either way.
    static AMBIGUOUS: Cell<bool> = const { Cell::new(false) };
}

/// f32's unit roundoff: half an ulp, relative.
const ROUNDOFF: f64 = f32::EPSILON as f64 / 2.0;

/// Half the smallest f32 subnormal: the rounding of a result that underflows.
const SUBNORMAL_ROUNDOFF: f64 = 7e-46;

/// Roundoffs one exp, log, tanh, erf or powf may be off by: the JIT's polynomials
/// stay within 8 (src/codegen/tests.rs).
const FUNCTION_ROUNDOFFS: f64 = 16.0;

/// A number as the interpreter computes it in f64 (`value`), with a bound (`error`)
/// on how far an f32 evaluation of the same operations can land from it: half an
/// ulp of the operands per addition and of the result per other operation (none
/// when f32 holds the result exactly), `FUNCTION_ROUNDOFFS` per library function,
/// and the operands' errors carried through each operation (interval arithmetic on
/// `value ± error`). It ignores that errors may cancel, so it overestimates where
/// one value is subtracted from itself.
#[derive(Debug, Clone, Copy)]
struct Bounded {
    value: f64,
    error: f64,
}

impl Bounded {
    fn exact(value: f64) -> Bounded {
        Bounded { value, error: 0.0 }
    }

    fn new(value: f64, error: f64) -> Bounded {
        let error = if error.is_nan() { f64::INFINITY } else { error };
        Bounded { value, error }
    }

    /// `value`, from operands off by `carried`, rounded to f32 once, which costs
    /// half an ulp of `size` (or of the smallest subnormal) unless f32 holds
    /// `value` exactly.
    fn rounded(value: f64, carried: f64, size: f64) -> Bounded {
        let rounding = if f64::from(value as f32) == value {
            0.0
        } else {
            ROUNDOFF * size + SUBNORMAL_ROUNDOFF
        };
        Bounded::new(value, carried + rounding)
    }

    /// `picked`, one of `self` and `o` as `max` or `min` chose it: off by no more
    /// than either when rounding could have made the other choice (both functions
    /// are continuous), else by its own error.
    fn either(self, o: Bounded, picked: Bounded) -> Bounded {
        if (self.value - o.value).abs() < self.error + o.error {
            Bounded::new(picked.value, self.error.max(o.error))
        } else {
            picked
        }
    }

    /// `f(self)` for a monotonic library function: off by as much as `f` changes
    /// over the interval the operand may lie in (not defined all over it: no
    /// bound), plus `FUNCTION_ROUNDOFFS` of its own.
    fn monotonic(self, f: impl Fn(f64) -> f64) -> Bounded {
        let value = f(self.value);
        let carried = if self.error == 0.0 {
            0.0
        } else {
            let ends = [f(self.value - self.error), f(self.value + self.error)];
            ends.iter().fold(0.0, |m: f64, e| m.max((e - value).abs()))
        };
        let own = FUNCTION_ROUNDOFFS * ROUNDOFF * value.abs() + SUBNORMAL_ROUNDOFF;
        Bounded::new(value, carried + own)
    }
}

/// `a * b` with `0 * inf = 0`: an exact operand carries no error however large.
fn times(a: f64, b: f64) -> f64 {
    if a == 0.0 || b == 0.0 {
        0.0
    } else {
        a * b
    }
}

impl std::ops::Add for Bounded {
    type Output = Bounded;
    fn add(self, o: Bounded) -> Bounded {
        let size = self.value.abs() + o.value.abs();
        Bounded::rounded(self.value + o.value, self.error + o.error, size)
    }
}

impl std::ops::Sub for Bounded {
    type Output = Bounded;
    fn sub(self, o: Bounded) -> Bounded {
        self + -o
    }
}

impl std::ops::Mul for Bounded {
    type Output = Bounded;
    fn mul(self, o: Bounded) -> Bounded {
        let value = self.value * o.value;
        let carried = times(self.value.abs(), o.error)
            + times(o.value.abs(), self.error)
            + times(self.error, o.error);
        Bounded::rounded(value, carried, value.abs())
    }
}

impl std::ops::Div for Bounded {
    type Output = Bounded;
    fn div(self, o: Bounded) -> Bounded {
        let value = self.value / o.value;
        let carried = if o.error < o.value.abs() {
            (self.error + times(value.abs(), o.error)) / (o.value.abs() - o.error)
        } else {
            f64::INFINITY
        };
        Bounded::rounded(value, carried, value.abs())
    }
}

impl std::ops::Neg for Bounded {
    type Output = Bounded;
    fn neg(self) -> Bounded {
        Bounded::new(-self.value, self.error)
    }
}

impl std::ops::AddAssign for Bounded {
    fn add_assign(&mut self, o: Bounded) {
        *self = *self + o;
    }
}

impl PartialEq for Bounded {
    fn eq(&self, o: &Bounded) -> bool {
        self.partial_cmp(o) == Some(std::cmp::Ordering::Equal)
    }
}

impl PartialOrd for Bounded {
    fn partial_cmp(&self, o: &Bounded) -> Option<std::cmp::Ordering> {
        if (self.value - o.value).abs() < self.error + o.error {
            AMBIGUOUS.set(true);
        }
        self.value.partial_cmp(&o.value)
    }
}

impl Real for Bounded {
    /// A constant: f32 holds it to within its own rounding.
    fn from_f64(v: f64) -> Bounded {
        Bounded::new(v, (v - f64::from(v as f32)).abs())
    }
    fn to_f64(self) -> f64 {
        self.value
    }
    fn exp(self) -> Bounded {
        self.monotonic(f64::exp)
    }
    fn ln(self) -> Bounded {
        self.monotonic(f64::ln)
    }
    fn ln_1p(self) -> Bounded {
        self.monotonic(f64::ln_1p)
    }
    fn sqrt(self) -> Bounded {
        // Of squares and variances only, which f32 keeps non-negative.
        self.monotonic(|x| x.max(0.0).sqrt())
    }
    fn tanh(self) -> Bounded {
        self.monotonic(f64::tanh)
    }
    fn abs(self) -> Bounded {
        Bounded::new(self.value.abs(), self.error)
    }
    fn powf(self, e: Bounded) -> Bounded {
        // Raises exact hyperparameters to the step count; another exponent is not
        // bounded here.
        if e.error > 0.0 {
            return Bounded::new(self.value.powf(e.value), f64::INFINITY);
        }
        self.monotonic(|x| x.powf(e.value))
    }
    fn erf(self) -> Bounded {
        self.monotonic(Real::erf)
    }
    fn max(self, o: Bounded) -> Bounded {
        let larger = if self.value >= o.value { self } else { o };
        self.either(o, larger)
    }
    fn min(self, o: Bounded) -> Bounded {
        let smaller = if self.value <= o.value { self } else { o };
        self.either(o, smaller)
    }
}
