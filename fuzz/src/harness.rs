//! The entry points the fuzz targets drive, one per input format of nnc. Each takes
//! arbitrary bytes and must return (with any `Ok` or `Err`) without panicking.
//!
//! tests/fuzz_regressions.rs includes this same file, so that `cargo test` replays
//! every saved crash and the seed corpus through exactly what was fuzzed.

use std::path::{Path, PathBuf};

use nnc::runtime::{checkpoint, data};
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
