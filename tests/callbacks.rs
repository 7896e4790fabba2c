//! Callbacks through `nnc run`: what `terminate_on_nan` keeps, and the weights
//! `model_checkpoint` and `early_stopping` leave behind. (Their rules against Keras's
//! are in tests/keras_callbacks.rs; resuming them in tests/resume.rs.)

mod common;

use std::path::Path;

use common::nnc;
use nnc::runtime::checkpoint;

fn regression() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keras_parity/data/regression.csv")
        .display()
        .to_string()
}

/// SGD with momentum at a rate this data cannot take: the loss overflows in epoch 3.
fn diverging(callbacks: &str) -> String {
    format!(
        r#"model r {{
    input x: [3]
    dense(16, activation = relu)
    dense(1)
}}

train {{
    data       = csv("{}", target = "y")
    loss       = mse
    optimizer  = sgd(learning_rate = 0.2, momentum = 0.9)
    epochs     = 50
    batch_size = 8
    callbacks  = [{callbacks}]
}}
"#,
        regression()
    )
}

const SHAPES: [(&str, &[usize]); 4] = [
    ("dense.kernel", &[3, 16]),
    ("dense.bias", &[16]),
    ("dense_1.kernel", &[16, 1]),
    ("dense_1.bias", &[1]),
];

fn weights(path: &Path) -> Vec<Vec<f32>> {
    let expected: Vec<(String, Vec<usize>)> = SHAPES
        .iter()
        .map(|(n, s)| (n.to_string(), s.to_vec()))
        .collect();
    checkpoint::load(path, &expected).unwrap()
}

#[test]
fn terminate_on_nan_stops_and_keeps_the_last_complete_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let nn = dir.path().join("r.nn");
    let nn = nn.to_str().unwrap();
    let saved = dir.path().join("w.safetensors");
    let saved = saved.to_str().unwrap();

    // Without the callback, a non-finite loss is an error.
    std::fs::write(nn, diverging("")).unwrap();
    let out = nnc(&["run", nn, "--threads", "1"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stderr.contains("epoch 3"), "{}", out.stderr);

    std::fs::write(nn, diverging("terminate_on_nan")).unwrap();
    let out = nnc(&["run", nn, "--threads", "1", "--json", "--save", saved]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let event = out
        .stdout
        .lines()
        .find(|l| l.contains(r#""callback":"terminate_on_nan""#))
        .expect("a terminate_on_nan event");
    let event: serde_json::Value = serde_json::from_str(event).unwrap();
    assert_eq!(
        (event["epoch"].as_u64(), event["kept_epoch"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(out.stdout.matches(r#""event":"epoch""#).count(), 2);

    // The saved weights are exactly those of two epochs trained to the end.
    let reference = dir.path().join("two.safetensors");
    let out = nnc(&[
        "run",
        nn,
        "--threads",
        "1",
        "--epochs",
        "2",
        "--save",
        reference.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(weights(Path::new(saved)) == weights(&reference));
}

#[test]
fn model_checkpoint_keeps_the_epoch_early_stopping_restores() {
    let dir = tempfile::tempdir().unwrap();
    let nn = dir.path().join("r.nn");
    let text = diverging(
        "early_stopping(monitor = val_loss, patience = 3, restore_best_weights = true), \
         model_checkpoint(\"best.safetensors\", save_best_only = true)",
    )
    .replace("learning_rate = 0.2", "learning_rate = 0.05")
    .replace("    loss", "    validation_split = 0.3\n    loss");
    std::fs::write(&nn, text).unwrap();
    let saved = dir.path().join("w.safetensors");
    let out = nnc(&[
        "run",
        nn.to_str().unwrap(),
        "--threads",
        "1",
        "--json",
        "--save",
        saved.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let events: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let stop = events
        .iter()
        .find(|e| e["callback"] == "early_stopping")
        .expect("early stopping acts");
    let last_save = events
        .iter()
        .rfind(|e| e["callback"] == "model_checkpoint")
        .expect("model_checkpoint saved");
    // The best epoch is the one saved last, and the one restored.
    assert_eq!(stop["restored_epoch"], last_save["epoch"]);
    assert!(stop["epoch"].as_u64() > last_save["epoch"].as_u64());
    assert!(weights(&saved) == weights(&dir.path().join("best.safetensors")));
}

#[test]
fn files_callbacks_cannot_write_are_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    let nn = dir.path().join("r.nn");
    std::fs::write(&nn, diverging("csv_logger(\"logs\")")).unwrap();
    let out = nnc(&["run", nn.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(!out.stdout.contains("Epoch"), "{}", out.stdout);
    let folder = dir.path().join("logs");
    assert!(
        out.stderr.contains(&format!(
            "{}: is a folder; csv_logger needs a file name in it, e.g. {}",
            folder.display(),
            folder.join("log.csv").display()
        )),
        "{}",
        out.stderr
    );
}
