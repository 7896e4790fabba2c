//! nnc's callbacks against Keras 3's: the same model, data and callbacks, trained
//! from the same initial weights on the same batches, must stop after the same
//! epoch, restore the same epoch's weights, lower the learning rate after the same
//! epochs to the same values, and log the same CSV columns.
//!
//! The same goes for the epochs `model_checkpoint(save_best_only)` saves after and
//! the batch `terminate_on_nan` stops at.
//!
//! The fixtures under tests/keras_callbacks/ were made once by
//! tests/keras_callbacks/make_fixtures.py with Keras 3.15.1 on TensorFlow (each
//! case's `model.nn` is written by the same script); this test needs no Python.

mod common;

use std::path::{Path, PathBuf};

use nnc::runtime::checkpoint;
use serde_json::Value;

/// Worst allowed relative difference of an epoch's validation loss, and of the final
/// weights (largest difference over the tensor's largest magnitude, as in
/// tests/keras_parity.rs). Measured: 1.1e-7 to 6.4e-7.
const TOLERANCE: f64 = 1e-5;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keras_callbacks")
}

/// What nnc did: its `--json` events and the CSV log its `csv_logger` wrote.
struct Run {
    epochs: Vec<Value>,
    callbacks: Vec<Value>,
    csv: Option<String>,
    weights: PathBuf,
    _dir: tempfile::TempDir,
}

/// Runs `CASE/model.nn` from a temporary folder (the files it writes go there).
fn run(case: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let root = fixtures();
    let source = std::fs::read_to_string(root.join(case).join("model.nn")).unwrap();
    let parity = root.join("../keras_parity/data/");
    let source = source
        .replace(
            "\"../../keras_parity/data/",
            &format!("\"{}", parity.display()),
        )
        .replace("\"../data/", &format!("\"{}/data/", root.display()));
    let nn = dir.path().join("model.nn");
    std::fs::write(&nn, source).unwrap();
    let weights = dir.path().join("weights.safetensors");
    let init = root.join(case).join("init.safetensors");
    let out = common::nnc(&[
        "run",
        nn.to_str().unwrap(),
        "--init",
        init.to_str().unwrap(),
        "--save",
        weights.to_str().unwrap(),
        "--threads",
        "1",
        "--json",
    ]);
    assert_eq!(out.code, 0, "{case}: {}{}", out.stdout, out.stderr);
    let events: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |kind: &str| -> Vec<Value> {
        events
            .iter()
            .filter(|e| e["event"] == kind)
            .cloned()
            .collect()
    };
    Run {
        epochs: of("epoch"),
        callbacks: of("callback"),
        csv: std::fs::read_to_string(dir.path().join("log.csv")).ok(),
        weights,
        _dir: dir,
    }
}

fn keras(case: &str) -> Value {
    let text = std::fs::read_to_string(fixtures().join(case).join("keras.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Checks what every case shares; returns the worst relative error seen.
fn check_common(case: &str, run: &Run, keras: &Value) -> f64 {
    let epochs = keras["epochs_run"].as_u64().unwrap() as usize;
    assert_eq!(run.epochs.len(), epochs, "{case}: epochs trained");
    let mut worst = 0f64;
    let val = keras["history"]["val_loss"].as_array().unwrap();
    for (ours, theirs) in run.epochs.iter().zip(val) {
        let (a, b) = (ours["val_loss"].as_f64().unwrap(), theirs.as_f64().unwrap());
        worst = worst.max((a - b).abs() / b.abs());
    }
    // The weights training ended with (after any restoring).
    let shapes: Vec<(String, Vec<usize>)> = {
        let text = std::fs::read(fixtures().join(case).join("keras.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&text).unwrap();
        let mut names: Vec<String> = st.names().into_iter().cloned().collect();
        names.sort();
        names
            .into_iter()
            .map(|n| {
                let shape = st.tensor(&n).unwrap().shape().to_vec();
                (n, shape)
            })
            .collect()
    };
    let ours = checkpoint::load(&run.weights, &shapes).unwrap();
    let theirs =
        checkpoint::load(&fixtures().join(case).join("keras.safetensors"), &shapes).unwrap();
    for (a, b) in ours.iter().zip(&theirs) {
        let scale = b.iter().fold(1e-3f64, |m, v| m.max(f64::from(v.abs())));
        let diff = a
            .iter()
            .zip(b)
            .fold(0f64, |m, (x, y)| m.max(f64::from((x - y).abs())));
        worst = worst.max(diff / scale);
    }
    if let (Some(header), Some(csv)) = (keras["csv_header"].as_str(), &run.csv) {
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some(header), "{case}: csv_logger's columns");
        assert_eq!(lines.count(), epochs, "{case}: csv_logger's rows");
    }
    assert_eq!(keras["csv_header"].is_string(), run.csv.is_some());
    println!("{case}: worst relative difference from Keras {worst:.1e}");
    assert!(worst < TOLERANCE, "{case}: {worst:e}");
    worst
}

/// The early-stopping event nnc reported: (epoch, restored epoch).
fn stop(run: &Run) -> Option<(u64, Option<u64>)> {
    run.callbacks
        .iter()
        .find(|e| e["callback"] == "early_stopping")
        .map(|e| (e["epoch"].as_u64().unwrap(), e["restored_epoch"].as_u64()))
}

#[test]
fn early_stopping_restores_the_best_epoch_as_keras() {
    let case = "early_stopping_restore";
    let (run, keras) = (run(case), keras(case));
    check_common(case, &run, &keras);
    assert_eq!(
        stop(&run),
        Some((
            keras["stopped_after"].as_u64().unwrap(),
            keras["restored_epoch"].as_u64()
        ))
    );
    // model_checkpoint(save_best_only) saved after the same epochs as Keras's.
    let saved: Vec<u64> = run
        .callbacks
        .iter()
        .filter(|e| e["callback"] == "model_checkpoint")
        .map(|e| e["epoch"].as_u64().unwrap())
        .collect();
    let theirs: Vec<u64> = keras["checkpoint_epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_u64().unwrap())
        .collect();
    assert_eq!(saved, theirs);
}

#[test]
fn early_stopping_on_accuracy_with_min_delta_and_start_from_epoch_as_keras() {
    let case = "early_stopping_accuracy";
    let (run, keras) = (run(case), keras(case));
    check_common(case, &run, &keras);
    assert_eq!(
        stop(&run),
        Some((keras["stopped_after"].as_u64().unwrap(), None))
    );
}

#[test]
fn reduce_lr_on_plateau_lowers_the_rate_as_keras() {
    let case = "reduce_lr_on_plateau";
    let (run, keras) = (run(case), keras(case));
    check_common(case, &run, &keras);
    let ours: Vec<(u64, f32)> = run
        .callbacks
        .iter()
        .filter(|e| e["callback"] == "reduce_lr_on_plateau")
        .map(|e| {
            (
                e["epoch"].as_u64().unwrap(),
                e["learning_rate"].as_f64().unwrap() as f32,
            )
        })
        .collect();
    let theirs: Vec<(u64, f32)> = keras["reductions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_u64().unwrap(), r[1].as_f64().unwrap() as f32))
        .collect();
    assert!(!theirs.is_empty());
    assert_eq!(ours, theirs);
}

#[test]
fn terminate_on_nan_stops_at_the_batch_keras_stops_at() {
    let case = "terminate_on_nan";
    let (run, keras) = (run(case), keras(case));
    let event = run
        .callbacks
        .iter()
        .find(|e| e["callback"] == "terminate_on_nan")
        .expect("terminate_on_nan acts");
    let at = [event["epoch"].as_u64(), event["batch"].as_u64()];
    let nan_at = &keras["nan_at"];
    assert_eq!(at, [nan_at[0].as_u64(), nan_at[1].as_u64()]);
    // The complete epochs before it agree; Keras also logs the stopped epoch (with
    // its non-finite loss), which nnc does not report.
    let before = at[0].unwrap() as usize - 1;
    assert_eq!(run.epochs.len(), before);
    let val = keras["history"]["val_loss"].as_array().unwrap();
    for (ours, theirs) in run.epochs.iter().zip(val) {
        let (a, b) = (ours["val_loss"].as_f64().unwrap(), theirs.as_f64().unwrap());
        assert!(
            (a - b).abs() / b.abs() < TOLERANCE,
            "{a} against Keras's {b}"
        );
    }
}
