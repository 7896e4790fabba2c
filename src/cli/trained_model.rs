//! The commands that use a trained model: `nnc predict`, `nnc evaluate`,
//! `nnc export`. Each checks the `.nn` file, reads the weights with their metadata
//! (`runtime::trained`), and fails with a message and exit code 1 (bad input) or 2
//! (a usage error such as an output folder that does not exist).

use std::path::{Path, PathBuf};

use crate::cli::{
    checked_model, emit, internal_error, set_threads, source_bytes, EvaluateArgs, ExportArgs, Io,
    PredictArgs, EXIT_ERRORS, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE,
};
use crate::runtime::checkpoint;
use crate::runtime::data::{self, npy};
use crate::runtime::error::RunError;
use crate::runtime::predict::{self, PREDICT_BATCH};
use crate::runtime::predict_io;
use crate::runtime::report::{HumanReporter, JsonReporter, Reporter, TestReport};
use crate::runtime::trained::{self, Trained};
use crate::sema::model::{DataSource, MnistSubset, Model, TestSource};

/// A failure: its message and exit code.
type Failure = (String, i32);

fn input_error(message: impl ToString) -> Failure {
    (message.to_string(), EXIT_ERRORS)
}

fn run_failure(error: RunError) -> Failure {
    match error {
        RunError::User(message) => (message, EXIT_ERRORS),
        RunError::Data { message, .. } => (message, EXIT_ERRORS),
        RunError::Internal(message) => (message, EXIT_INTERNAL),
    }
}

/// The checked model and its trained weights; notes (another source version, ...)
/// go to stderr.
fn load(file: &Path, weights: &Path, io: &mut Io) -> Result<(Model, Trained), i32> {
    // The training data need not be at hand to use trained weights.
    let (model, _) = checked_model(file, None, false, false, io)?;
    let source = source_bytes(file).unwrap_or_default();
    let mut notes = vec![];
    match trained::load(&model, &source, weights, &mut notes) {
        Ok(t) => {
            for n in notes {
                emit(io.stderr, &format!("note: {n}\n"));
            }
            Ok((model, t))
        }
        Err(message) => {
            emit(io.stderr, &format!("error: {message}\n"));
            Err(EXIT_ERRORS)
        }
    }
}

/// Refuses an output path that cannot be written before any work is done.
fn check_output(path: &Path, what: &str) -> Result<(), Failure> {
    let usage = |m: String| Err((m, EXIT_USAGE));
    if path.is_dir() {
        return usage(format!(
            "{}: is a folder; {what} needs a file name",
            path.display()
        ));
    }
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() && !parent.is_dir() => usage(format!(
            "{}: the folder {} does not exist",
            path.display(),
            parent.display()
        )),
        _ => Ok(()),
    }
}

fn finish(result: Result<(), Failure>, io: &mut Io) -> i32 {
    match result {
        Ok(()) => EXIT_OK,
        Err((message, EXIT_INTERNAL)) => internal_error(&message, false, io),
        Err((message, code)) => {
            emit(io.stderr, &format!("error: {message}\n"));
            code
        }
    }
}

pub fn predict(args: &PredictArgs, io: &mut Io) -> i32 {
    let (model, trained) = match load(&args.file, &args.weights, io) {
        Ok(m) => m,
        Err(code) => return code,
    };
    set_threads(args.threads);
    let result = run_predict(args, &model, &trained, io);
    finish(result, io)
}

fn run_predict(
    args: &PredictArgs,
    model: &Model,
    trained: &Trained,
    io: &mut Io,
) -> Result<(), Failure> {
    let npy_out = match &args.output {
        Some(out) => {
            check_output(out, "-o")?;
            match out.extension().and_then(|e| e.to_str()) {
                Some(e) if e.eq_ignore_ascii_case("npy") => true,
                Some(e) if e.eq_ignore_ascii_case("csv") => false,
                _ => {
                    return Err((
                        format!("{}: -o writes .csv or .npy files", out.display()),
                        EXIT_USAGE,
                    ))
                }
            }
        }
        None => false,
    };
    let mut notes = vec![];
    let set = predict_io::read_input(model, &trained.preparation, &args.input, &mut notes)
        .map_err(input_error)?;
    for n in notes {
        emit(io.stderr, &format!("{n}\n"));
    }
    let batch = args.batch_size.map_or(PREDICT_BATCH, |b| b as usize);
    let outputs = predict::predict(model, trained, &set, batch).map_err(run_failure)?;
    let width = model.output_size();
    let bytes = if npy_out {
        npy::encode_f32(&[set.rows, width], &outputs).map_err(input_error)?
    } else {
        predict_io::to_csv(&outputs, width, &trained.preparation.classes).into_bytes()
    };
    match &args.output {
        Some(out) => checkpoint::write_atomically(out, &bytes)
            .map_err(|e| (format!("{}: cannot write: {e}", out.display()), EXIT_USAGE)),
        None => {
            // A closed pipe (`| head`) is not an error of the input.
            let _ = io.stdout.write_all(&bytes);
            Ok(())
        }
    }
}

pub fn evaluate(args: &EvaluateArgs, io: &mut Io) -> i32 {
    let (model, trained) = match load(&args.file, &args.weights, io) {
        Ok(m) => m,
        Err(code) => return code,
    };
    set_threads(args.threads);
    let result = run_evaluate(args, &model, &trained, io);
    finish(result, io)
}

fn run_evaluate(
    args: &EvaluateArgs,
    model: &Model,
    trained: &Trained,
    io: &mut Io,
) -> Result<(), Failure> {
    let Some(mut config) = model.train.clone() else {
        return Err(input_error(format!(
            "{}: the model has no `train` block; `nnc evaluate` takes its loss and metrics \
             from there",
            args.file.display()
        )));
    };
    let prep = &trained.preparation;
    // The seed drew the `split` rows at training time.
    if let Some(seed) = prep.seed {
        config.seed = seed;
    }
    let (set, train_rows) = match (&args.data, &config.test) {
        (Some(path), _) => {
            let source = data_source(path, &config.data, prep)?;
            let set = data::prepare_source(
                model,
                &config,
                &source,
                prep.standardization.as_ref(),
                &prep.classes,
            )
            .map_err(input_error)?;
            (set, None)
        }
        (None, Some(TestSource::Source(source))) => {
            let set = data::prepare_source(
                model,
                &config,
                source,
                prep.standardization.as_ref(),
                &prep.classes,
            )
            .map_err(input_error)?;
            (set, None)
        }
        (None, Some(TestSource::Split(_))) => {
            let prepared = data::prepare(model, &config).map_err(input_error)?;
            let rows = prepared.train.rows;
            let test = prepared.test.ok_or_else(|| input_error("no test rows"))?;
            (test, Some(rows))
        }
        (None, None) => {
            return Err((
                format!(
                    "{}: the train block has no `test` data; give the data to evaluate on \
                     with --data",
                    args.file.display()
                ),
                EXIT_USAGE,
            ))
        }
    };
    // `nnc run` evaluates in batches of its batch size (at most its training rows).
    let batch = args
        .batch_size
        .map_or(config.batch_size, |b| b as usize)
        .min(train_rows.unwrap_or(usize::MAX))
        .max(1);
    let (loss, metrics) =
        predict::evaluate(model, &config, trained, &set, batch).map_err(run_failure)?;
    let report = TestReport { loss, metrics };
    if args.json {
        JsonReporter { out: io.stdout }.tested(&report);
    } else {
        HumanReporter::new(io.stdout, false).tested(&report);
    }
    Ok(())
}

/// The data source `--data PATH` names, read as the train block's `data` was.
fn data_source(
    path: &Path,
    train_data: &DataSource,
    prep: &trained::Preparation,
) -> Result<DataSource, Failure> {
    if path.is_dir() {
        return Ok(DataSource::Mnist {
            folder: path.to_path_buf(),
            subset: MnistSubset::Test,
        });
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match (ext.as_deref(), train_data) {
        (Some("csv"), DataSource::Csv { target, .. }) => Ok(DataSource::Csv {
            path: PathBuf::from(path),
            target: target.clone(),
            features: (!prep.features.is_empty()).then(|| prep.features.clone()),
            standardize: false,
        }),
        (Some("npz"), _) => {
            // `np.savez("test.npz", x_test=..., y_test=...)`, as Keras's datasets, or x, y.
            let names = npy::npz_names(path).map_err(input_error)?;
            let pick = |split: &str, plain: &str| {
                if names.iter().any(|n| n == split) {
                    split.to_string()
                } else {
                    plain.to_string()
                }
            };
            Ok(DataSource::Npz {
                path: PathBuf::from(path),
                x: pick("x_test", "x"),
                y: pick("y_test", "y"),
            })
        }
        (Some("csv"), _) => Err(input_error(format!(
            "{}: the model was not trained on a CSV file, so which column is the target?",
            path.display()
        ))),
        _ => Err((
            format!(
                "{}: --data takes a .csv file, a .npz archive or a folder of MNIST files",
                path.display()
            ),
            EXIT_USAGE,
        )),
    }
}

pub fn export(args: &ExportArgs, io: &mut Io) -> i32 {
    let (model, trained) = match load(&args.file, &args.weights, io) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let result = check_output(&args.onnx, "--onnx").and_then(|()| {
        let bytes = crate::export::onnx::export(&model, &trained).map_err(input_error)?;
        checkpoint::write_atomically(&args.onnx, &bytes).map_err(|e| {
            (
                format!("{}: cannot write: {e}", args.onnx.display()),
                EXIT_USAGE,
            )
        })
    });
    finish(result, io)
}
