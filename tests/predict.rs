//! `nnc predict` and `nnc evaluate` on weights saved by `nnc run --save`, through
//! the same library entry point as the binary.

use std::path::{Path, PathBuf};

mod common;
use common::{nnc, Output};
use nnc::runtime::checkpoint;
use nnc::runtime::data::npy;
use serde_json::Value;

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

    // evaluate on a class the model never saw: the row and the classes it knows.
    let unseen = write(
        "unseen.csv",
        "sepal_length,sepal_width,petal_length,petal_width,species\n1,2,3,4,0\n1,2,3,4,3\n",
    );
    fails(
        &[
            "evaluate",
            "examples/iris.nn",
            "--weights",
            w,
            "--data",
            s(&unseen),
        ],
        1,
        "unseen.csv: line 3, column `species`: the target 3 is not a class index in [0, 3)",
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
            "unseen.csv",
            "wide.npy"
        ]
    );
}

/// The iris rows as arrays: features `[150, 4]` and class indices `[150]`.
fn iris_arrays() -> (Vec<f32>, Vec<i64>) {
    let text = std::fs::read_to_string("examples/data/iris.csv").unwrap();
    let (mut x, mut y) = (vec![], vec![]);
    for line in text.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        x.extend(cells[..4].iter().map(|c| c.parse::<f32>().unwrap()));
        y.push(cells[4].parse::<i64>().unwrap());
    }
    (x, y)
}

fn npy_bytes<T: npyz::Serialize + npyz::AutoSerialize + Copy>(shape: &[u64], v: &[T]) -> Vec<u8> {
    use npyz::WriterBuilder;
    let mut out = vec![];
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(&mut out)
        .begin_nd()
        .unwrap();
    w.extend(v.iter().copied()).unwrap();
    w.finish().unwrap();
    out
}

/// The iris model reading `data`, without standardization, testing on a split.
fn iris_nn(dir: &Path, name: &str, data: &str) -> PathBuf {
    let text = std::fs::read_to_string("examples/iris.nn")
        .unwrap()
        .replace(
            "csv(\"data/iris.csv\", target = \"species\", standardize = true)",
            data,
        );
    assert!(text.contains(data));
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn npy_and_npz_sources_train_as_the_same_csv_rows_do() {
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = iris_arrays();
    std::fs::write(dir.path().join("x.npy"), npy_bytes(&[150, 4], &x)).unwrap();
    std::fs::write(dir.path().join("y.npy"), npy_bytes(&[150], &y)).unwrap();
    // An .npz as np.savez_compressed writes it: deflated members NAME.npy.
    let npz = dir.path().join("iris.npz");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&npz).unwrap());
    let deflated =
        zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in [
        ("x_train.npy", npy_bytes(&[150, 4], &x)),
        ("y_train.npy", npy_bytes(&[150, 1], &y)),
    ] {
        zip.start_file(name, deflated).unwrap();
        std::io::Write::write_all(&mut zip, &bytes).unwrap();
    }
    zip.finish().unwrap();
    let csv = std::fs::canonicalize("examples/data/iris.csv").unwrap();
    let from_csv = iris_nn(
        dir.path(),
        "csv.nn",
        &format!("csv(\"{}\", target = \"species\")", csv.display()),
    );
    let from_npy = iris_nn(dir.path(), "npy.nn", "npy(x = \"x.npy\", y = \"y.npy\")");
    let from_npz = iris_nn(
        dir.path(),
        "npz.nn",
        "npz(\"iris.npz\", x = \"x_train\", y = \"y_train\")",
    );
    let (csv_weights, reference) = train(s(&from_csv), &["--epochs", "5"], dir.path());
    let (weights, npy_test) = train(s(&from_npy), &["--epochs", "5"], dir.path());
    let (_, npz_test) = train(s(&from_npz), &["--epochs", "5"], dir.path());
    assert_eq!(npy_test, reference);
    assert_eq!(npz_test, reference);

    // predict takes the .npy too: the same rows, the same predictions.
    let x_npy = dir.path().join("x.npy");
    let by_npy = ok(&["predict", s(&from_npy), "--weights", s(&weights), s(&x_npy)]);
    let by_csv = ok(&[
        "predict",
        s(&from_csv),
        "--weights",
        s(&csv_weights),
        s(&csv),
    ]);
    assert_eq!(by_npy.stdout, by_csv.stdout);

    // Bad arrays: the file and both shapes, or the dtype, are named, by `check` as
    // by `run` (which checks the data the same way before it trains).
    let fails = |nn: &Path, says: &str| {
        for args in [vec!["check", s(nn)], vec!["run", s(nn), "--epochs", "1"]] {
            let out = nnc(&args);
            assert_eq!(out.code, 1, "{}", out.stderr);
            assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
        }
    };
    std::fs::write(
        dir.path().join("x5.npy"),
        npy_bytes(&[150, 5], &[0f32; 750]),
    )
    .unwrap();
    let wide = iris_nn(dir.path(), "wide.nn", "npy(x = \"x5.npy\", y = \"y.npy\")");
    fails(
        &wide,
        "the data gives samples of shape [5] (5 values), but the model's input",
    );
    std::fs::write(dir.path().join("y9.npy"), npy_bytes(&[9], &[0i64; 9])).unwrap();
    let short = iris_nn(dir.path(), "short.nn", "npy(x = \"x.npy\", y = \"y9.npy\")");
    fails(&short, "y9.npy: the array has shape [9]");
    std::fs::write(
        dir.path().join("x16.npy"),
        npy_bytes(&[150, 4], &[0u16; 600]),
    )
    .unwrap();
    let ints = iris_nn(dir.path(), "u16.nn", "npy(x = \"x16.npy\", y = \"y.npy\")");
    fails(&ints, "x16.npy: dtype `<u2` is not read by nnc");
    let mut big = y.clone();
    big[7] = 5;
    std::fs::write(dir.path().join("y5.npy"), npy_bytes(&[150], &big)).unwrap();
    let five = iris_nn(dir.path(), "five.nn", "npy(x = \"x.npy\", y = \"y5.npy\")");
    fails(&five, "y5.npy holds class indices up to 5, so 6 classes");
    let unnamed = iris_nn(dir.path(), "missing.nn", "npz(\"iris.npz\")");
    fails(
        &unnamed,
        "no array named `x`; the archive holds `x_train`, `y_train`",
    );
}

/// Iris with its species as words, in a folder of its own with a copy of
/// `examples/iris.nn` reading it; `units` output units.
fn iris_with_names(dir: &Path, units: usize) -> PathBuf {
    let names = ["setosa", "versicolor", "virginica"];
    let text = std::fs::read_to_string("examples/data/iris.csv").unwrap();
    let mut lines = text.lines();
    let mut out = format!("{}\n", lines.next().unwrap());
    for line in lines {
        let (features, class) = line.rsplit_once(',').unwrap();
        let class: usize = class.parse().unwrap();
        out.push_str(&format!("{features},{}\n", names[class]));
    }
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/iris.csv"), out).unwrap();
    let model = std::fs::read_to_string("examples/iris.nn")
        .unwrap()
        .replace(
            "dense(3, activation = softmax)",
            &format!("dense({units}, activation = softmax)"),
        );
    let path = dir.join("iris.nn");
    std::fs::write(&path, model).unwrap();
    path
}

#[test]
fn class_words_travel_with_the_weights_into_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let model = iris_with_names(dir.path(), 3);
    let (weights, test) = train(s(&model), &["--epochs", "20"], dir.path());
    assert!(
        test["metrics"]["accuracy"].as_f64().unwrap() > 0.8,
        "{test}"
    );
    let out = ok(&[
        "predict",
        s(&model),
        "--weights",
        s(&weights),
        s(&dir.path().join("data/iris.csv")),
    ]);
    let (header, rows) = csv_rows(&out.stdout);
    assert_eq!(
        header,
        ["class", "prob_setosa", "prob_versicolor", "prob_virginica"]
    );
    // The file lists 50 of each species in order; most predictions name them.
    let right = rows
        .iter()
        .enumerate()
        .filter(|(i, r)| r[0] == ["setosa", "versicolor", "virginica"][i / 50])
        .count();
    assert!(right > 120, "{right} of 150 rows predicted right");

    // `check` counts the classes a column of words names against the output.
    let two = tempfile::tempdir().unwrap();
    let model = iris_with_names(two.path(), 2);
    let out = nnc(&["check", s(&model)]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("names 3 classes (`setosa`, `versicolor`, `virginica`)"),
        "{}",
        out.stderr
    );
}
