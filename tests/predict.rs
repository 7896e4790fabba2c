//! `nnc predict` and `nnc evaluate` on weights saved by `nnc run --save`, through
//! the same library entry point as the binary.

use std::path::{Path, PathBuf};

use clap::Parser;
use nnc::cli::{Cli, Io};
use nnc::runtime::checkpoint;
use nnc::runtime::data::npy;
use serde_json::Value;

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

fn nnc(args: &[&str]) -> Output {
    let mut argv = vec!["nnc"];
    argv.extend(args);
    let cli = Cli::try_parse_from(&argv).expect("valid flags");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = nnc::cli::run(
        cli,
        &mut Io {
            stdout: &mut out,
            stderr: &mut err,
            color: false,
        },
    );
    Output {
        code,
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    }
}

fn ok(args: &[&str]) -> Output {
    let out = nnc(args);
    assert_eq!(out.code, 0, "nnc {args:?} failed:\n{}", out.stderr);
    out
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// Trains `example` with `extra` flags, saving to `dir/NAME.safetensors`; returns the
/// weights' path and the `test` event `run --json` printed.
fn train(example: &str, extra: &[&str], dir: &Path) -> (PathBuf, Value) {
    let name = Path::new(example).file_stem().unwrap().to_str().unwrap();
    let weights = dir.join(format!("{name}.safetensors"));
    let mut args = vec![
        "run",
        example,
        "--json",
        "--threads",
        "1",
        "--save",
        s(&weights),
    ];
    args.extend(extra);
    let out = ok(&args);
    let test = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["event"] == "test")
        .expect("a test event");
    (weights, test)
}

/// Rows of a CSV text: header, then cells.
fn csv_rows(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = text.lines();
    let header = lines.next().unwrap().split(',').map(String::from).collect();
    let rows = lines
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    (header, rows)
}

#[test]
fn evaluate_reprints_runs_test_numbers_and_predict_scores_raw_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (weights, test) = train("examples/iris.nn", &["--epochs", "20"], dir.path());
    let w = s(&weights);

    // evaluate: the same split (the seed travels with the weights), the same numbers.
    let out = ok(&["evaluate", "examples/iris.nn", "--weights", w, "--json"]);
    let evaluated: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(evaluated["loss"], test["loss"], "{}", out.stdout);
    assert_eq!(evaluated["metrics"], test["metrics"]);

    // The metadata: feature names in file order, one statistic per feature, classes.
    let (_, meta) = checkpoint::load_with_metadata(
        &weights,
        &[
            ("hidden.kernel".into(), vec![4, 16]),
            ("hidden.bias".into(), vec![16]),
            ("species.kernel".into(), vec![16, 3]),
            ("species.bias".into(), vec![3]),
        ],
    )
    .unwrap();
    let header = std::fs::read_to_string("examples/data/iris.csv").unwrap();
    let columns: Vec<&str> = header.lines().next().unwrap().split(',').collect();
    let features: Vec<String> = serde_json::from_str(&meta["features"]).unwrap();
    assert_eq!(features, columns[..4]);
    let mean: Vec<f64> = serde_json::from_str(&meta["mean"]).unwrap();
    let std: Vec<f64> = serde_json::from_str(&meta["std"]).unwrap();
    assert_eq!((mean.len(), std.len()), (4, 4));
    assert!(std.iter().all(|&v| v > 0.0));
    let classes: Vec<String> = serde_json::from_str(&meta["classes"]).unwrap();
    assert_eq!(classes, ["0", "1", "2"]);

    // predict on the raw file (the target column is there, and ignored).
    let out = ok(&[
        "predict",
        "examples/iris.nn",
        "--weights",
        w,
        "examples/data/iris.csv",
    ]);
    assert!(
        out.stderr.contains("ignoring column `species`"),
        "{}",
        out.stderr
    );
    let (head, rows) = csv_rows(&out.stdout);
    assert_eq!(head, ["class", "prob_0", "prob_1", "prob_2"]);
    assert_eq!(rows.len(), 150);
    let labels: Vec<&str> = header
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap())
        .collect();
    let mut right = 0;
    for (row, label) in rows.iter().zip(&labels) {
        let p: Vec<f64> = row[1..].iter().map(|v| v.parse().unwrap()).collect();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-5, "{row:?}");
        let best = (0..3).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
        assert_eq!(row[0], best.to_string());
        right += usize::from(row[0] == *label);
    }
    // The accuracy over every row is near the test accuracy run printed.
    let accuracy = right as f64 / 150.0;
    let tested = test["metrics"]["accuracy"].as_f64().unwrap();
    assert!((accuracy - tested).abs() < 0.1, "{accuracy} vs {tested}");

    // Columns in another order, without the target: the same predictions, to the bit.
    let shuffled = dir.path().join("shuffled.csv");
    let mut text = String::from("petal_width,sepal_width,petal_length,sepal_length\n");
    for line in header.lines().skip(1) {
        let c: Vec<&str> = line.split(',').collect();
        text.push_str(&format!("{},{},{},{}\n", c[3], c[1], c[2], c[0]));
    }
    std::fs::write(&shuffled, text).unwrap();
    let again = ok(&["predict", "examples/iris.nn", "--weights", w, s(&shuffled)]);
    assert_eq!(again.stdout, out.stdout);
    assert!(again.stderr.is_empty(), "{}", again.stderr);

    // -o .npy: the probabilities as float32, [rows, classes].
    let npy_out = dir.path().join("p.npy");
    ok(&[
        "predict",
        "examples/iris.nn",
        "--weights",
        w,
        s(&shuffled),
        "-o",
        s(&npy_out),
    ]);
    let a = npy::read_npy(&npy_out).unwrap();
    assert_eq!(a.shape, vec![150, 3]);
    for (row, probs) in rows.iter().zip(a.values.chunks(3)) {
        let p: Vec<f32> = row[1..].iter().map(|v| v.parse().unwrap()).collect();
        assert_eq!(p, probs);
    }

    // --data: the whole file, which holds the test rows and the training rows.
    let out = ok(&[
        "evaluate",
        "examples/iris.nn",
        "--weights",
        w,
        "--data",
        "examples/data/iris.csv",
        "--json",
    ]);
    let all: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let acc = all["metrics"]["accuracy"].as_f64().unwrap();
    assert!((acc - accuracy).abs() < 1e-9, "{acc} vs {accuracy}");
}

#[test]
fn bad_inputs_end_in_messages_and_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let (weights, _) = train("examples/iris.nn", &["--epochs", "1"], dir.path());
    let w = s(&weights);
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let fails = |args: &[&str], code: i32, says: &str| {
        let out = nnc(args);
        assert_eq!(out.code, code, "nnc {args:?}: {}", out.stderr);
        assert!(out.stderr.contains(says), "nnc {args:?}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    };

    let missing = write(
        "missing.csv",
        "sepal_length,sepal_width,petal_length\n1,2,3\n",
    );
    fails(
        &["predict", "examples/iris.nn", "--weights", w, s(&missing)],
        1,
        "column `petal_width` that the header lacks",
    );
    let text = write(
        "text.csv",
        "sepal_length,sepal_width,petal_length,petal_width\n1,2,3,4\n1,two,3,4\n",
    );
    fails(
        &["predict", "examples/iris.nn", "--weights", w, s(&text)],
        1,
        "line 3, column 2 (`sepal_width`): `two` is not a finite number",
    );

    // Weights of another model: every tensor that differs is named.
    let (other, _) = train("examples/seed.nn", &["--epochs", "1"], dir.path());
    fails(
        &[
            "predict",
            "examples/iris.nn",
            "--weights",
            s(&other),
            "examples/data/iris.csv",
        ],
        1,
        "tensor `hidden.kernel` [4, 16] is missing",
    );

    // A truncated .npy.
    let bytes = npy::encode_f32(&[2, 4], &[1.0; 8]).unwrap();
    let cut = dir.path().join("cut.npy");
    std::fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
    fails(
        &["predict", "examples/iris.nn", "--weights", w, s(&cut)],
        1,
        "cut.npy",
    );
    // An array of the wrong shape: both shapes named.
    let wide = dir.path().join("wide.npy");
    std::fs::write(&wide, npy::encode_f32(&[2, 5], &[1.0; 10]).unwrap()).unwrap();
    fails(
        &["predict", "examples/iris.nn", "--weights", w, s(&wide)],
        1,
        "the array has shape [2, 5], the model's input `measurements` needs [samples, 4]",
    );

    // Outputs into a missing folder: a usage error, before any work, no file.
    let nowhere = dir.path().join("no/such/folder/p.csv");
    fails(
        &[
            "predict",
            "examples/iris.nn",
            "--weights",
            w,
            "examples/data/iris.csv",
            "-o",
            s(&nowhere),
        ],
        2,
        "does not exist",
    );
    let onnx = dir.path().join("no/such/folder/m.onnx");
    fails(
        &[
            "export",
            "examples/iris.nn",
            "--weights",
            w,
            "--onnx",
            s(&onnx),
        ],
        2,
        "does not exist",
    );
    assert!(!nowhere.exists() && !onnx.exists());
    // Nothing but the files written above is in the folder (no temporary left over).
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "cut.npy",
            "iris.safetensors",
            "missing.csv",
            "seed.safetensors",
            "text.csv",
            "wide.npy"
        ]
    );
}
