//! The command line: argument types (clap) and the commands as library functions,
//! so that tests run exactly what `nnc` runs, capturing its output.

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use serde_json::json;

use crate::diag::codes;
use crate::diag::{line_col, Severity};
use crate::runtime::distributed::{self, World};
use crate::runtime::error::RunError;
use crate::runtime::report::{self, HumanReporter, JsonReporter, Reporter};
use crate::runtime::train::{train, train_distributed, Engine, Interrupted, RunOptions};
use crate::runtime::{interrupt, trained};
use crate::sema::{self, summary, CheckOptions, CheckOutcome};

mod trained_model;

/// Exit codes: no errors (warnings allowed), errors in the input, usage error, a bug
/// in nnc; Ctrl-C is `interrupt::EXIT_INTERRUPTED` (130).
pub const EXIT_OK: i32 = 0;
pub const EXIT_ERRORS: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
/// A bug in nnc (a checked model that would not compile): sysexits' `EX_SOFTWARE`.
pub const EXIT_INTERNAL: i32 = 70;

/// `nnc --version`: the version, and whether `mpirun` can train with this binary.
const VERSION: &str = if crate::runtime::distributed::COMPILED_IN {
    concat!(env!("CARGO_PKG_VERSION"), " (MPI support: yes)")
} else {
    concat!(
        env!("CARGO_PKG_VERSION"),
        " (MPI support: no; build with --features mpi)"
    )
};

#[derive(Debug, Parser)]
#[command(
    name = "nnc",
    version = VERSION,
    about = "A compiler for a small language of neural networks"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check .nn files and print each model's summary: shapes, parameters, cost.
    Check(CheckArgs),
    /// Train the model of a .nn file as its `train` block says.
    Run(RunArgs),
    /// Predict with trained weights: one output row per sample of a CSV, .npy, .npz
    /// or IDX file.
    Predict(PredictArgs),
    /// Loss and metrics of trained weights on the test data, or on --data.
    Evaluate(EvaluateArgs),
    /// Export the model with trained weights for other tools (ONNX).
    Export(ExportArgs),
    /// Print the train step's IR (after autodiff) or its Cranelift IR, for debugging.
    Emit(EmitArgs),
    /// Draw the loss and metrics per epoch (training and validation) as an SVG, from
    /// a `nnc run --json` log or a CSV log with Keras's columns.
    Plot(PlotArgs),
    /// Explain an error or warning code, e.g. `nnc explain E0016`.
    Explain {
        /// The code, e.g. E0001 or W0002.
        code: String,
    },
    /// Rewrite .nn files in the one canonical layout, keeping their comments.
    Fmt(FmtArgs),
    /// Run the language server for editors (LSP over stdin and stdout).
    Lsp,
}

#[derive(Debug, clap::Args)]
pub struct FmtArgs {
    /// The .nn files to format; `-` reads standard input and writes standard output.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Change nothing: print a diff for each file that is not formatted, and exit
    /// with 1 if there is one.
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The .nn files to check.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Print one JSON document (summary and diagnostics) on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Batch size for the memory estimate (default: the train block's, or 32).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: Option<u64>,
    /// Do not read the data files (by default their headers, and the targets of
    /// files up to 64 MB, are checked against the model).
    #[arg(long)]
    pub no_data: bool,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The .nn file to train.
    pub file: PathBuf,
    /// Train this many epochs instead of the file's `epochs`.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub epochs: Option<u64>,
    /// Use this batch size instead of the file's `batch_size`.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch_size: Option<u64>,
    /// Use this seed (initialization, splits, shuffling, dropout) instead of the file's.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Start from the weights in this safetensors file instead of initializing.
    #[arg(long, value_name = "FILE.safetensors")]
    pub init: Option<PathBuf>,
    /// Write the trained weights to this safetensors file (atomically).
    #[arg(long, value_name = "FILE.safetensors")]
    pub save: Option<PathBuf>,
    /// After every epoch, write (atomically) everything needed to resume the run
    /// exactly: weights, optimizer state, step, epoch, callbacks' state.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Continue the run saved in this checkpoint (`--checkpoint`) up to `epochs`;
    /// it ends with the same weights as a run never stopped. Checkpoints go on to
    /// the same file unless `--checkpoint` names another.
    #[arg(long, value_name = "FILE", conflicts_with = "init")]
    pub resume: Option<PathBuf>,
    /// Print JSON Lines (compile, epoch and test events) on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Run every step with the reference interpreter instead of native code (slow;
    /// for checking the compiler).
    #[arg(long)]
    pub interpret: bool,
    /// Threads for large matrix products (default: every core). Results are the
    /// same from run to run for a given count.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub threads: Option<u64>,
    /// After training, print the time per step of every node of the train step
    /// (matrix products, activations, loss, optimizer updates), slowest first.
    #[arg(long, conflicts_with = "interpret")]
    pub profile: bool,
    /// After training, draw the loss and metrics per epoch (training and
    /// validation) into this SVG file (atomically).
    #[arg(long, value_name = "OUT.svg")]
    pub plot: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct PlotArgs {
    /// The log: JSON Lines from `nnc run --json`, or a .csv file with the columns
    /// epoch (from 0, as Keras writes it), loss, metrics..., val_loss, ...
    pub log: PathBuf,
    /// Write the SVG here (atomically).
    #[arg(short = 'o', long = "output", value_name = "OUT.svg")]
    pub output: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// The .nn file of the model.
    pub file: PathBuf,
    /// The trained weights (`nnc run --save`).
    #[arg(long, value_name = "FILE.safetensors")]
    pub weights: PathBuf,
    /// The samples: a .csv file (columns found by name; the target may be there or
    /// not), a .npy or .npz array, or an IDX image file.
    pub input: PathBuf,
    /// Write the predictions here (.csv or .npy, atomically) instead of CSV on stdout.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// Samples per forward call.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch_size: Option<u64>,
    /// Threads for large matrix products (default: every core).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub threads: Option<u64>,
}

#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    /// The .nn file of the model (its train block gives the loss and metrics).
    pub file: PathBuf,
    /// The trained weights (`nnc run --save`).
    #[arg(long, value_name = "FILE.safetensors")]
    pub weights: PathBuf,
    /// Evaluate on this data instead of the train block's `test`: a .csv file (the
    /// train data's target and feature columns, by name), a .npz archive (arrays
    /// `x_test` and `y_test`, or `x` and `y`), or a folder holding the MNIST files
    /// (its test subset).
    #[arg(long, value_name = "SOURCE")]
    pub data: Option<PathBuf>,
    /// Evaluate in batches of this size (default: the train block's, as `nnc run`).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch_size: Option<u64>,
    /// Print one JSON line instead of text.
    #[arg(long)]
    pub json: bool,
    /// Threads for large matrix products (default: every core).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub threads: Option<u64>,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The .nn file of the model.
    pub file: PathBuf,
    /// The trained weights (`nnc run --save`).
    #[arg(long, value_name = "FILE.safetensors")]
    pub weights: PathBuf,
    /// Write an ONNX model (opset 17) here, atomically.
    #[arg(long, value_name = "OUT.onnx")]
    pub onnx: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct EmitArgs {
    /// The .nn file.
    pub file: PathBuf,
    #[command(flatten)]
    pub form: EmitForm,
    /// Emit the graph for this batch size instead of the file's `batch_size`.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch_size: Option<u64>,
}

#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct EmitForm {
    /// Print the tensor IR of the train step (forward, loss, gradients, updates).
    #[arg(long)]
    pub ir: bool,
    /// Print the Cranelift IR of the train step.
    #[arg(long)]
    pub clif: bool,
}

/// Where a command writes, and whether stderr may be coloured.
pub struct Io<'a> {
    pub stdout: &'a mut dyn Write,
    pub stderr: &'a mut dyn Write,
    pub color: bool,
}

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli, io: &mut Io) -> i32 {
    match cli.command {
        Command::Check(args) => check(&args, io),
        Command::Run(args) => run_model(&args, io),
        Command::Predict(args) => trained_model::predict(&args, io),
        Command::Evaluate(args) => trained_model::evaluate(&args, io),
        Command::Export(args) => trained_model::export(&args, io),
        Command::Emit(args) => emit_ir(&args, io),
        Command::Plot(args) => plot(&args, io),
        Command::Explain { code } => explain(&code, io),
        Command::Fmt(args) => fmt(&args, io),
        Command::Lsp => lsp(),
    }
}

/// Output failures (a closed pipe) are not the input's fault; they are ignored.
pub(crate) fn emit(w: &mut dyn Write, text: &str) {
    let _ = w.write_all(text.as_bytes());
}

pub fn check(args: &CheckArgs, io: &mut Io) -> i32 {
    let opts = CheckOptions {
        batch_size: args.batch_size.and_then(|b| usize::try_from(b).ok()),
    };
    let mut worst = EXIT_OK;
    let mut docs = vec![];
    for path in &args.files {
        let outcome = match check_path(path, &opts, !args.no_data) {
            Ok(o) => o,
            Err(e) => {
                let message = format!("cannot read `{}`: {e}", path.display());
                if args.json {
                    docs.push(json_unreadable(&path.display().to_string(), &message));
                } else {
                    emit(io.stderr, &format!("error: {message}\n"));
                }
                worst = worst.max(EXIT_USAGE);
                continue;
            }
        };
        if outcome.has_errors() {
            worst = worst.max(EXIT_ERRORS);
        }
        if args.json {
            docs.push(json_outcome(&outcome));
        } else {
            emit(io.stderr, &outcome.render_diagnostics(io.color));
            if let (Some(s), false) = (&outcome.summary, outcome.has_errors()) {
                emit(io.stdout, &summary::render_text(s));
            }
        }
    }
    if args.json {
        let doc = if docs.len() == 1 {
            docs.remove(0)
        } else {
            serde_json::Value::Array(docs)
        };
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        emit(io.stdout, &format!("{text}\n"));
    }
    worst
}

/// `nnc lsp`: exit code 0 after the client's `shutdown` and `exit`, as the protocol
/// asks, else 1. Call it without holding stdout's lock.
pub fn lsp() -> i32 {
    match crate::lsp::serve() {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: language server: {e}");
            EXIT_ERRORS
        }
    }
}

pub fn fmt(args: &FmtArgs, io: &mut Io) -> i32 {
    let mut worst = EXIT_OK;
    for path in &args.files {
        let stdin = path.as_os_str() == "-";
        let name = if stdin {
            "<stdin>".to_string()
        } else {
            path.display().to_string()
        };
        let read = if stdin {
            read_limited(std::io::stdin().lock())
        } else if path.is_file() {
            // Whole, so that a file over the limit is refused with its true size.
            std::fs::read(path)
        } else {
            std::fs::File::open(path).and_then(read_limited)
        };
        let bytes = match read {
            Ok(b) => b,
            Err(e) => {
                emit(io.stderr, &format!("error: cannot read `{name}`: {e}\n"));
                worst = worst.max(EXIT_USAGE);
                continue;
            }
        };
        let text = match std::str::from_utf8(&bytes) {
            Ok(text) if bytes.len() <= crate::syntax::MAX_SOURCE_BYTES => text,
            // Refused as `check` refuses it (too large, not UTF-8), with its diagnostic.
            _ => {
                let base = path.parent().unwrap_or(std::path::Path::new(""));
                let o = sema::check_source(&name, &bytes, base, &CheckOptions::default());
                emit(io.stderr, &o.render_diagnostics(io.color));
                worst = worst.max(EXIT_ERRORS);
                continue;
            }
        };
        let formatted = match crate::syntax::fmt::format(text) {
            Ok(f) => f,
            Err(d) => {
                emit(io.stderr, &crate::diag::render(&[d], &name, text, io.color));
                worst = worst.max(EXIT_ERRORS);
                continue;
            }
        };
        if args.check {
            if formatted != text {
                let diff = similar::TextDiff::from_lines(text, &formatted)
                    .unified_diff()
                    .header(&name, &format!("{name} (formatted)"))
                    .to_string();
                emit(io.stdout, &diff);
                worst = worst.max(EXIT_ERRORS);
            }
        } else if stdin {
            emit(io.stdout, &formatted);
        } else if formatted != text {
            if let Err(e) = crate::runtime::checkpoint::write_atomically(path, formatted.as_bytes())
            {
                emit(io.stderr, &format!("error: cannot write `{name}`: {e}\n"));
                worst = worst.max(EXIT_USAGE);
            }
        }
    }
    worst
}

/// Reads at most one byte more than a source may have, so that a device or a pipe
/// that never ends (/dev/zero) is refused as too large instead of filling memory.
fn read_limited(r: impl std::io::Read) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    r.take(crate::syntax::MAX_SOURCE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// `sema::check_file`, except that a device or a pipe (/dev/zero never ends) is read
/// only one byte past the size limit, which check then refuses; with `read_data`,
/// then what `run` would refuse in the data files (`runtime::data::check`).
fn check_path(
    path: &std::path::Path,
    opts: &CheckOptions,
    read_data: bool,
) -> std::io::Result<CheckOutcome> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut outcome = if file.metadata()?.is_file() {
        sema::check_file(path, opts)?
    } else {
        let mut bytes = Vec::new();
        (&mut file)
            .take(crate::syntax::MAX_SOURCE_BYTES as u64 + 1)
            .read_to_end(&mut bytes)?;
        let base = path.parent().unwrap_or(std::path::Path::new(""));
        sema::check_source(&path.display().to_string(), &bytes, base, opts)
    };
    if read_data {
        crate::runtime::data::check::check_outcome(&mut outcome);
    }
    Ok(outcome)
}

/// The JSON document of a file that could not be read: the same shape as any
/// other file's, with one diagnostic that has no code and no position.
fn json_unreadable(file: &str, message: &str) -> serde_json::Value {
    let empty = CheckOutcome {
        file: file.to_string(),
        source: String::new(),
        model: None,
        summary: None,
        diagnostics: vec![],
    };
    let mut doc = json_outcome(&empty);
    doc["ok"] = json!(false);
    doc["diagnostics"] = json!([{
        "severity": "error",
        "code": null,
        "message": message,
        "file": file,
        "line": null,
        "column": null,
        "label": null,
        "help": null,
        "labels": [],
    }]);
    doc
}

/// The JSON document for one file: the summary's facts (null where unknown) and
/// every diagnostic with its position. `labels` holds every label (the primary one
/// first, then the secondary ones), each with its start and end, as rustc's JSON
/// holds every span; `line`, `column` and `label` repeat the primary one.
pub fn json_outcome(o: &CheckOutcome) -> serde_json::Value {
    let label = |span: &sema::model::Span, message: &str, primary: bool| {
        let (line, column) = line_col(&o.source, span.start);
        let (end_line, end_column) = line_col(&o.source, span.end);
        json!({
            "file": o.file,
            "line": line,
            "column": column,
            "end_line": end_line,
            "end_column": end_column,
            "message": message,
            "primary": primary,
        })
    };
    let diagnostics: Vec<_> = o
        .diagnostics
        .iter()
        .map(|d| {
            let (line, column) = line_col(&o.source, d.span.start);
            let mut labels = vec![label(&d.span, &d.label, true)];
            labels.extend(d.labels.iter().map(|l| label(&l.span, &l.message, false)));
            json!({
                "severity": match d.severity { Severity::Error => "error", Severity::Warning => "warning" },
                "code": d.code,
                "message": d.message,
                "file": o.file,
                "line": line,
                "column": column,
                "label": d.label,
                "help": d.help,
                "labels": labels,
            })
        })
        .collect();
    let s = o.summary.as_ref();
    // Totals of a model with errors would describe only part of it: null instead.
    let whole = s.filter(|_| !o.has_errors());
    // u128 totals go out as strings only if they do not fit a JSON-safe u64.
    let num = |x: u128| match u64::try_from(x) {
        Ok(v) => json!(v),
        Err(_) => json!(x.to_string()),
    };
    json!({
        "file": o.file,
        "ok": !o.has_errors(),
        "model": s.map(|s| s.model.clone()),
        "input_shape": s.map(|s| batch_shape(&s.input_shape)),
        "layers": s.map(|s| s.layers.iter().map(|r| json!({
            "name": r.name,
            "kind": r.kind,
            "output_shape": batch_shape(&r.output_shape),
            "params": r.params,
            "trainable_params": r.trainable_params,
            "multiply_adds": num(r.multiply_adds),
            "inputs": r.inputs,
        })).collect::<Vec<_>>()).unwrap_or_default(),
        "total_params": whole.map(|s| s.total_params),
        "trainable_params": whole.map(|s| s.trainable_params),
        "non_trainable_params": whole.map(|s| s.non_trainable_params),
        "multiply_adds": whole.map(|s| num(s.multiply_adds)),
        "memory": whole.map(|s| json!({
            "batch_size": s.memory.batch_size,
            "optimizer": s.memory.optimizer,
            "parameters": num(s.memory.parameters),
            "gradients": num(s.memory.gradients),
            "optimizer_state": num(s.memory.optimizer_state),
            "activations": num(s.memory.activations),
            "total": num(s.memory.total),
        })),
        "diagnostics": diagnostics,
    })
}

/// `[null, d1, d2, ...]`: the batch dimension first, as Keras's `None`.
fn batch_shape(shape: &[usize]) -> serde_json::Value {
    let mut v = vec![serde_json::Value::Null];
    v.extend(shape.iter().map(|&d| json!(d)));
    serde_json::Value::Array(v)
}

pub fn explain(code: &str, io: &mut Io) -> i32 {
    match codes::explain(code) {
        Some((code, title, text)) => {
            emit(io.stdout, &format!("{code}: {title}\n\n{text}\n"));
            EXIT_OK
        }
        None => {
            let known: Vec<&str> = codes::EXPLANATIONS.iter().map(|(c, _, _)| *c).collect();
            emit(
                io.stderr,
                &format!(
                    "error: no explanation for `{code}`; known codes: {}\n",
                    known.join(", ")
                ),
            );
            EXIT_USAGE
        }
    }
}

/// Checks a file for `run` and `emit`: prints its diagnostics (with `json`, also as
/// one `error` event on stdout when there are errors), and returns its model when it
/// has no errors, or the exit code to end with. `batch_size` (the flag's) is the one
/// the memory limit is checked at, so that the flag cannot bypass it; `read_data`
/// checks the data files too (`runtime::data::check`).
pub(crate) fn checked_model(
    path: &std::path::Path,
    batch_size: Option<u64>,
    json: bool,
    read_data: bool,
    io: &mut Io,
) -> Result<(crate::sema::model::Model, CheckOutcome), i32> {
    let opts = CheckOptions {
        batch_size: batch_size.and_then(|b| usize::try_from(b).ok()),
    };
    let outcome = match check_path(path, &opts, read_data) {
        Ok(o) => o,
        Err(e) => {
            let message = format!("cannot read `{}`: {e}", path.display());
            if json {
                let event = json!({"event": "error", "message": message});
                emit(io.stdout, &format!("{event}\n"));
            }
            emit(io.stderr, &format!("error: {message}\n"));
            return Err(EXIT_USAGE);
        }
    };
    emit(io.stderr, &outcome.render_diagnostics(io.color));
    if json && outcome.has_errors() {
        let doc = json_outcome(&outcome);
        let event = json!({
            "event": "error",
            "message": format!("{} has errors", outcome.file),
            "diagnostics": doc["diagnostics"],
        });
        emit(io.stdout, &format!("{event}\n"));
    }
    match outcome.model.clone() {
        Some(model) if !outcome.has_errors() => Ok((model, outcome)),
        _ => Err(EXIT_ERRORS),
    }
}

pub fn run_model(args: &RunArgs, io: &mut Io) -> i32 {
    let world = match World::start() {
        Ok(world) => world,
        Err(message) => {
            // Every process fails alike: one message is enough.
            if distributed::launched_rank() == 0 {
                emit(io.stderr, &format!("error: {message}\n"));
            }
            return EXIT_USAGE;
        }
    };
    let world = match world {
        Some(w) if w.rank() > 0 => w,
        lead => return run_process(args, io, lead.as_ref()),
    };
    // Rank 0 speaks for the job, and its exit code is the job's: another rank's
    // messages are shown, and its failure is its exit code, only when it failed to
    // start training while rank 0 did not (rank 0 then only says that another
    // process failed). Otherwise it ends with 0, so that the launcher, which ends
    // the job when a process fails, lets rank 0 finish its message and its save.
    let mut held = Vec::new();
    let code = run_process(
        args,
        &mut Io {
            stdout: &mut std::io::sink(),
            stderr: &mut held,
            color: false,
        },
        Some(&world),
    );
    if code == EXIT_OK || !world.readied().is_some_and(|r| !r.me && r.rank0) {
        return EXIT_OK;
    }
    let header = format!(
        "error: process {} of {} could not start training:\n",
        world.rank(),
        world.size()
    );
    emit(io.stderr, &header);
    emit(io.stderr, &String::from_utf8_lossy(&held));
    code
}

/// `nnc run` in this process: alone (`world` is `None`), or as one rank of
/// data-parallel training.
fn run_process(args: &RunArgs, io: &mut Io, world: Option<&World>) -> i32 {
    let (model, checked) = match checked_model(&args.file, args.batch_size, args.json, true, io) {
        Ok(m) => m,
        Err(code) => {
            // The other ranks wait to hear that this one will not train.
            if let Some(w) = world {
                w.ready(false);
            }
            return code;
        }
    };
    set_threads(args.threads);
    let options = RunOptions {
        epochs: args.epochs.and_then(|e| usize::try_from(e).ok()),
        batch_size: args.batch_size.and_then(|b| usize::try_from(b).ok()),
        seed: args.seed,
        init: args.init.clone(),
        save: args.save.clone(),
        checkpoint: args.checkpoint.clone().or_else(|| args.resume.clone()),
        resume: args.resume.clone(),
        engine: Some(if args.interpret {
            Engine::Interpreter
        } else {
            Engine::Jit
        }),
        profile: args.profile,
        source_sha256: source_bytes(&args.file).map(|s| trained::source_hash(&s)),
    };
    if let Some(path) = &args.plot {
        if let Err(message) = crate::runtime::plot::check_output(path) {
            emit(io.stderr, &format!("error: {message}\n"));
            return EXIT_USAGE;
        }
    }
    // Ctrl-C from here on stops training cleanly instead of losing every epoch.
    interrupt::install();
    let result = {
        let (mut json_reporter, mut human_reporter);
        let reporter: &mut dyn Reporter = if args.json {
            json_reporter = JsonReporter { out: io.stdout };
            &mut json_reporter
        } else {
            let warnings = report::Source {
                err: &mut *io.stderr,
                file: checked.file.clone(),
                text: checked.source.clone(),
                color: io.color,
            };
            human_reporter = HumanReporter::new(io.stdout, io.color).with_warnings(warnings);
            &mut human_reporter
        };
        match world {
            Some(w) => train_distributed(&model, &options, reporter, w),
            None => train(&model, &options, reporter),
        }
    };
    // The epochs before a NaN or Ctrl-C are drawn too; none, nothing is drawn.
    // Only rank 0 of several writes files.
    let lead = world.is_none_or(|w| w.rank() == 0);
    let drawn = (result.as_ref().ok()).filter(|o| lead && !o.curves.epochs.is_empty());
    if let (Some(path), Some(outcome)) = (&args.plot, drawn) {
        if let Err(message) = outcome.curves.write_svg(path) {
            emit(io.stderr, &format!("error: {message}\n"));
            return EXIT_ERRORS;
        }
    }
    if let Ok(Some(nan)) = result.as_ref().map(|o| &o.not_finite) {
        let d = nan.diagnostic(&model);
        if args.json {
            let event = json!({
                "event": "error",
                "message": d.message,
                "code": d.code,
                "line": line_col(&checked.source, d.span.start).0,
            });
            emit(io.stdout, &format!("{event}\n"));
        }
        emit(
            io.stderr,
            &crate::diag::render(&[d], &checked.file, &checked.source, io.color),
        );
        return EXIT_ERRORS;
    }
    match result {
        Ok(outcome) => match outcome.interrupted {
            Some(stop) => {
                let message = interrupted_message(&stop, args.save.is_some());
                if args.json {
                    let event = json!({
                        "event": "interrupted",
                        "completed_epochs": stop.completed,
                        "epochs": stop.epochs,
                        "saved": stop.saved.as_ref().map(|p| p.display().to_string()),
                        "checkpoint": stop.checkpoint.as_ref().map(|p| p.display().to_string()),
                        "message": message,
                    });
                    emit(io.stdout, &format!("{event}\n"));
                }
                emit(io.stderr, &format!("nnc: {message}\n"));
                interrupt::EXIT_INTERRUPTED
            }
            None => EXIT_OK,
        },
        Err(RunError::Internal(message)) => internal_error(&message, args.json, io),
        Err(RunError::User(message)) => {
            if args.json {
                let event = json!({"event": "error", "message": message});
                emit(io.stdout, &format!("{event}\n"));
            }
            emit(io.stderr, &format!("error: {message}\n"));
            EXIT_ERRORS
        }
        Err(RunError::Data { error, message }) => {
            if args.json {
                let column = error
                    .column()
                    .map(|(name, index)| json!({"name": name, "index": index}));
                let event = json!({
                    "event": "error",
                    "message": message,
                    "file": error.file.as_ref().map(|f| f.display().to_string()),
                    "array": error.array,
                    "row": error.row(),
                    "column": column,
                });
                emit(io.stdout, &format!("{event}\n"));
            }
            // A data file the `.nn` names: a diagnostic at that line, as check gives.
            let base = args.file.parent().unwrap_or(std::path::Path::new(""));
            match crate::runtime::data::check::file_span(&checked.source, base, &error) {
                Some(span) => {
                    let d = crate::diag::Diagnostic::error(
                        codes::DATA_FILE,
                        message,
                        span,
                        "this file",
                    );
                    emit(
                        io.stderr,
                        &crate::diag::render(&[d], &checked.file, &checked.source, io.color),
                    );
                }
                None => emit(io.stderr, &format!("error: {message}\n")),
            }
            EXIT_ERRORS
        }
    }
}

/// Reports a bug in nnc as one: the user's model was accepted, so the failure is
/// not theirs, and a distinct exit code lets scripts tell the two apart.
pub(crate) fn internal_error(message: &str, json: bool, io: &mut Io) -> i32 {
    if json {
        let event = json!({"event": "error", "internal": true, "message": message});
        emit(io.stdout, &format!("{event}\n"));
    }
    emit(
        io.stderr,
        &format!(
            "internal compiler error: {message}\n  = note: this is a bug in nnc, not in your \
             model; please report it with the .nn file and the command line\n"
        ),
    );
    EXIT_INTERNAL
}

/// `--threads N`, or every core.
pub(crate) fn set_threads(threads: Option<u64>) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    crate::codegen::set_threads(threads.map_or(cores, |t| t as usize));
}

/// The bytes of a `.nn` file that `checked_model` accepted (for its hash).
pub(crate) fn source_bytes(path: &std::path::Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(crate::syntax::MAX_SOURCE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(bytes)
}

/// What Ctrl-C left behind, in one line.
fn interrupted_message(stop: &Interrupted, save_asked: bool) -> String {
    let at = if stop.completed < stop.epochs {
        format!("in epoch {} of {}", stop.completed + 1, stop.epochs)
    } else {
        format!("after the last epoch ({})", stop.epochs)
    };
    let kept = match (&stop.saved, save_asked) {
        (Some(path), _) => format!(
            "saved the weights of epoch {} (the last complete one) to {}",
            stop.completed,
            path.display()
        ),
        (None, true) => "no epoch was complete, so no weights were saved".into(),
        (None, false) => "the weights were not saved (no --save)".into(),
    };
    let resume = match &stop.checkpoint {
        Some(path) => format!(
            "; `--resume {}` continues after epoch {}",
            path.display(),
            stop.completed
        ),
        None => String::new(),
    };
    format!("interrupted (Ctrl-C) {at}: {kept}{resume}")
}

/// `nnc plot LOG -o OUT.svg`.
pub fn plot(args: &PlotArgs, io: &mut Io) -> i32 {
    let text = match std::fs::read_to_string(&args.log) {
        Ok(text) => text,
        Err(e) => {
            let message = format!("cannot read `{}`: {e}", args.log.display());
            emit(io.stderr, &format!("error: {message}\n"));
            return EXIT_USAGE;
        }
    };
    let curves = match crate::runtime::plot::Curves::parse(&args.log, &text) {
        Ok(c) => c,
        Err(message) => {
            emit(io.stderr, &format!("error: {message}\n"));
            return EXIT_ERRORS;
        }
    };
    match curves.write_svg(&args.output) {
        Ok(()) => {
            emit(
                io.stdout,
                &format!(
                    "drew {} epochs of {} into {}\n",
                    curves.epochs.len(),
                    curves
                        .series
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    args.output.display()
                ),
            );
            EXIT_OK
        }
        Err(message) => {
            emit(io.stderr, &format!("error: {message}\n"));
            EXIT_ERRORS
        }
    }
}

pub fn emit_ir(args: &EmitArgs, io: &mut Io) -> i32 {
    // The IR does not depend on the data: `emit` works without the data files.
    let model = match checked_model(&args.file, args.batch_size, false, false, io) {
        Ok((m, _)) => m,
        Err(code) => return code,
    };
    let batch = args
        .batch_size
        .and_then(|b| usize::try_from(b).ok())
        .or(model.train.as_ref().map(|t| t.batch_size))
        .unwrap_or(32);
    let text = crate::ir::train_step(&model, batch).and_then(|graph| {
        if args.form.clif {
            // The layout and function `nnc run` compiles for this graph.
            crate::codegen::clif_text(&graph, &crate::ir::layout::Layout::planned(&graph))
        } else {
            Ok(crate::ir::print::print(&graph))
        }
    });
    match text {
        Ok(text) => {
            emit(io.stdout, &text);
            EXIT_OK
        }
        // A checked model always builds and compiles.
        Err(error) => internal_error(&error.to_string(), false, io),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_have_their_own_exit_code_and_say_they_are_bugs() {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut io = Io {
            stdout: &mut out,
            stderr: &mut err,
            color: false,
        };
        let code = internal_error("graph verification: node 3 reads tensor 9", true, &mut io);
        assert_eq!(code, EXIT_INTERNAL);
        assert_ne!(EXIT_INTERNAL, EXIT_ERRORS);
        let err = String::from_utf8(err).unwrap();
        assert!(
            err.starts_with("internal compiler error: graph verification"),
            "{err}"
        );
        assert!(err.contains("this is a bug in nnc"), "{err}");
        let event: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(event["internal"], true);
        assert_eq!(event["event"], "error");
    }

    /// Here rather than in `sema`: checking the data files is the runtime's part of
    /// `nnc check`.
    #[test]
    fn every_example_checks_clean_with_keras_counts() {
        // Totals as Keras's model.summary() prints them (shared/peers/keras_summaries.txt).
        let keras = [
            ("seed", 26u64),
            ("mnist_mlp", 101_770),
            ("mnist_cnn", 34_826),
            ("mnist_resnet", 37_898),
        ];
        let mut seen = 0;
        for entry in std::fs::read_dir("examples").unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "nn") {
                continue;
            }
            let mut o = crate::sema::check_file(&path, &CheckOptions::default()).unwrap();
            // With their data files, as `nnc check` reads them.
            crate::runtime::data::check::check_outcome(&mut o);
            assert!(
                o.diagnostics.is_empty(),
                "{}: {:?}",
                path.display(),
                o.diagnostics
            );
            assert!(o.model.as_ref().unwrap().train.is_some());
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            if let Some((_, total)) = keras.iter().find(|(n, _)| *n == stem) {
                assert_eq!(o.summary.unwrap().total_params, *total, "{stem}");
                seen += 1;
            }
        }
        assert_eq!(seen, keras.len());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// Token soup from the language's own alphabet never panics the checker, its
        /// rendering or its JSON.
        #[test]
        fn never_panics(tokens in proptest::collection::vec(proptest::sample::select(vec![
            "model", "m", "{", "}", "input", "x", ":", "[", "]", "(", ")", ",", "=", "3", "0",
            "-1", "1e99", "0.5", "\"s\"", "dense", "conv2d", "maxpool2d", "reshape", "flatten",
            "train", "data", "csv", "loss", "optimizer", "adam", "relu", "softmax", "shape",
            "\n", " ", "#", "true", "split", "mnist", "batchnorm", "é", "\r\n",
            "add", "subtract", "concatenate", "axis", "a", "a =", ")(x)", ")(a)",
            "kernel_regularizer", "l2",
        ]), 0..60)) {
            let src: String = tokens.concat();
            let o = crate::sema::check_source(
                "t.nn",
                src.as_bytes(),
                std::path::Path::new("ex"),
                &CheckOptions::default(),
            );
            let _ = o.render_diagnostics(false);
            let _ = json_outcome(&o);
        }
    }
}
