//! `nnc run --plot` and `nnc plot`: the SVG holds one curve (a coloured polyline)
//! per series with one point per epoch, from a run, its `--json` log, or a CSV log;
//! bad logs and outputs end in clear errors.

mod common;

use std::path::{Path, PathBuf};

use common::nnc;

/// The points of every curve in the SVG at `path`: its polylines drawn in colour
/// (axes and ticks are black polylines).
fn curves(path: &Path) -> Vec<(String, usize)> {
    let text = std::fs::read_to_string(path).expect("the SVG was written");
    let doc = roxmltree::Document::parse(&text).expect("the SVG is well-formed XML");
    doc.descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .filter(|n| n.attribute("stroke") != Some("#000000"))
        .map(|n| {
            let points = n.attribute("points").unwrap_or("");
            (
                n.attribute("stroke").unwrap_or("").to_string(),
                points.split_whitespace().count(),
            )
        })
        .collect()
}

fn model(dir: &Path, epochs: usize) -> PathBuf {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/data/breast_cancer.csv");
    let nn = dir.join("model.nn");
    let text = format!(
        "model m {{\n    input x: [3]\n    dense(4, activation = relu)\n    dense(1, activation = sigmoid)\n}}\n\n\
         train {{\n    data = csv(\"{}\", target = \"benign\", features = [\"mean_radius\", \"mean_texture\", \"mean_perimeter\"], standardize = true)\n    \
         validation_split = 0.2\n    loss = binary_crossentropy\n    optimizer = adam\n    metrics = [accuracy]\n    epochs = {epochs}\n}}\n",
        data.display()
    );
    std::fs::write(&nn, text).unwrap();
    nn
}

const BLUE: &str = "#1E5AC8";
const ORANGE: &str = "#E67814";

#[test]
fn a_run_draws_loss_and_accuracy_for_training_and_validation() {
    let dir = tempfile::tempdir().unwrap();
    let nn = model(dir.path(), 3);
    let svg = dir.path().join("curves.svg");
    let out = nnc(&["run", nn.to_str().unwrap(), "--plot", svg.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // loss, val_loss, accuracy, val_accuracy: 3 epochs each.
    let found = curves(&svg);
    assert_eq!(found.len(), 4, "{found:?}");
    assert!(found.iter().all(|(_, points)| *points == 3), "{found:?}");
    assert_eq!(found.iter().filter(|(c, _)| c == BLUE).count(), 2);
    assert_eq!(found.iter().filter(|(c, _)| c == ORANGE).count(), 2);
}

#[test]
fn plot_reads_a_json_log_and_a_keras_csv_log() {
    let dir = tempfile::tempdir().unwrap();
    let nn = model(dir.path(), 4);
    let out = nnc(&["run", nn.to_str().unwrap(), "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let log = dir.path().join("log.jsonl");
    std::fs::write(&log, &out.stdout).unwrap();
    let svg = dir.path().join("from_json.svg");
    let plotted = nnc(&["plot", log.to_str().unwrap(), "-o", svg.to_str().unwrap()]);
    assert_eq!(plotted.code, 0, "{}", plotted.stderr);
    let found = curves(&svg);
    assert_eq!(found.len(), 4, "{found:?}");
    assert!(found.iter().all(|(_, points)| *points == 4), "{found:?}");

    // Keras's CSVLogger: epochs from 0, columns in its order.
    let csv = dir.path().join("training.csv");
    std::fs::write(
        &csv,
        "epoch,accuracy,loss,val_accuracy,val_loss\n\
         0,0.61,0.68,0.62,0.66\n1,0.81,0.52,0.80,0.50\n",
    )
    .unwrap();
    let svg = dir.path().join("from_csv.svg");
    let plotted = nnc(&["plot", csv.to_str().unwrap(), "-o", svg.to_str().unwrap()]);
    assert_eq!(plotted.code, 0, "{}", plotted.stderr);
    let found = curves(&svg);
    assert_eq!(found.len(), 4, "{found:?}");
    assert!(found.iter().all(|(_, points)| *points == 2), "{found:?}");
}

#[test]
fn bad_logs_and_outputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("out.svg");
    // An unreadable log is a usage error, as an unreadable `.nn` file is.
    let missing = dir.path().join("missing.jsonl");
    let out = nnc(&[
        "plot",
        missing.to_str().unwrap(),
        "-o",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("cannot read"), "{}", out.stderr);
    let cases = [
        (
            "notjson.jsonl",
            "{\"event\": \"epoch\"\nnot json\n",
            "line 1: not a JSON object",
        ),
        (
            "noepochs.jsonl",
            "{\"event\": \"compile\", \"seconds\": 0.1}\n",
            "no `epoch` events",
        ),
        (
            "noloss.jsonl",
            "{\"event\": \"epoch\", \"epoch\": 1}\n",
            "no `loss` number",
        ),
        (
            "noepoch.csv",
            "loss,val_loss\n0.5,0.6\n",
            "no `epoch` column",
        ),
        (
            "badcell.csv",
            "epoch,loss\n0,0.5\n1,lots\n",
            "row 3, column `loss`: `lots` is not a number",
        ),
        ("empty.csv", "epoch,loss\n", "no epochs"),
    ];
    for (name, content, expected) in cases {
        let log = dir.path().join(name);
        std::fs::write(&log, content).unwrap();
        let out = nnc(&["plot", log.to_str().unwrap(), "-o", svg.to_str().unwrap()]);
        assert_eq!(out.code, 1, "{name}: {}", out.stderr);
        assert!(out.stderr.contains(expected), "{name}: {}", out.stderr);
        assert!(!svg.exists(), "{name}");
    }
    // An output that is a folder, for `plot` and (before training) for `run --plot`.
    let log = dir.path().join("ok.csv");
    std::fs::write(&log, "epoch,loss\n0,0.5\n").unwrap();
    let out = nnc(&[
        "plot",
        log.to_str().unwrap(),
        "-o",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let nn = model(dir.path(), 1);
    let out = nnc(&[
        "run",
        nn.to_str().unwrap(),
        "--plot",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("is a folder"), "{}", out.stderr);
    assert!(
        !out.stdout.contains("Epoch 1/1"),
        "trained before refusing: {}",
        out.stdout
    );
}

#[test]
fn a_run_stopped_by_a_nan_draws_the_epochs_before_it() {
    // Full-batch SGD with momentum on unscaled targets: the loss grows every epoch
    // and becomes infinite in the eighth.
    let dir = tempfile::tempdir().unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/data/breast_cancer.csv");
    let nn = dir.path().join("diverging.nn");
    std::fs::write(
        &nn,
        format!(
            "model m {{\n    input x: [3]\n    area = dense(1)\n}}\n\ntrain {{\n    \
             data = csv(\"{}\", target = \"mean_area\", features = [\"mean_radius\", \"mean_texture\", \"mean_perimeter\"])\n    \
             loss = mse\n    optimizer = sgd(learning_rate = 0.01, momentum = 0.9)\n    epochs = 40\n    batch_size = 569\n}}\n",
            data.display()
        ),
    )
    .unwrap();
    let svg = dir.path().join("curves.svg");
    let out = nnc(&["run", nn.to_str().unwrap(), "--plot", svg.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let warned = out
        .stderr
        .find("[W0007] Warning")
        .expect("a divergence warning");
    let failed = out
        .stderr
        .find("[E0024] Error: the loss became inf in epoch 8, batch 1 of 1");
    assert!(failed.is_some_and(|f| warned < f), "{}", out.stderr);
    assert_eq!(out.stdout.matches("\nEpoch ").count(), 7, "{}", out.stdout);
    assert_eq!(curves(&svg), vec![(BLUE.to_string(), 7)]);
}
