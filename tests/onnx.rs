//! ONNX export against the real client: every example is trained briefly, exported
//! with `nnc export --onnx`, checked by `onnx.checker.check_model(full_check=True)`
//! and run in onnxruntime on its test data (`tests/onnx/check.py`), whose outputs
//! must equal `nnc predict`'s within 1e-5.
//!
//! Python comes from `NNC_ONNX_PYTHON` (`.ci/run` sets it to a virtual environment
//! with pinned onnx, onnxruntime and numpy), else `python3`. Without onnxruntime the
//! test fails when `CI` is set and is skipped with a message otherwise.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::nnc;
use serde_json::Value;

/// onnxruntime's kernels sum in other orders than nnc's; Keras and onnxruntime with
/// the same weights differ by up to 1.3e-6 on these models.
const TOLERANCE: f64 = 1e-5;

fn ok(args: &[&str]) {
    let out = nnc(args);
    assert_eq!(out.code, 0, "nnc {args:?} failed:\n{}", out.stderr);
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// The Python with onnx and onnxruntime, or `None` (skip) outside CI.
fn python() -> Option<String> {
    let python = std::env::var("NNC_ONNX_PYTHON").unwrap_or_else(|_| "python3".into());
    let found = Command::new(&python)
        .args(["-c", "import onnx, onnxruntime, numpy"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if found {
        return Some(python);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "`{python}` cannot import onnx, onnxruntime and numpy; .ci/run installs them in a \
         virtual environment and sets NNC_ONNX_PYTHON"
    );
    eprintln!(
        "skipping the onnxruntime test: `{python}` cannot import onnx, onnxruntime and numpy \
         (set NNC_ONNX_PYTHON to a Python that can)"
    );
    None
}

/// The first `count` MNIST training images and labels as raw IDX files in `dir`.
fn mnist_subset(dir: &Path, count: usize) -> (PathBuf, PathBuf) {
    let read = |name: &str| {
        let mut bytes = vec![];
        flate2::read::GzDecoder::new(
            std::fs::File::open(format!("examples/data/mnist/{name}")).unwrap(),
        )
        .read_to_end(&mut bytes)
        .unwrap();
        bytes
    };
    let (images, labels) = (
        read("train-images-idx3-ubyte.gz"),
        read("train-labels-idx1-ubyte.gz"),
    );
    let n = (count as u32).to_be_bytes();
    let mut img = vec![0, 0, 8, 3];
    img.extend(n);
    img.extend(&images[8..16]);
    img.extend(&images[16..16 + count * 784]);
    let mut lab = vec![0, 0, 8, 1];
    lab.extend(n);
    lab.extend(&labels[8..8 + count]);
    let (ip, lp) = (dir.join("images.idx"), dir.join("labels.idx"));
    std::fs::write(&ip, img).unwrap();
    std::fs::write(&lp, lab).unwrap();
    (ip, lp)
}

/// Exports `example` (trained for one epoch, on the first 2,000 MNIST images for
/// the MNIST models) and predicts its test data: (ONNX model, input, predictions).
fn export_example(example: &str, dir: &Path) -> [PathBuf; 3] {
    let name = Path::new(example).file_stem().unwrap().to_str().unwrap();
    let source = std::fs::read_to_string(example).unwrap();
    let examples = std::fs::canonicalize("examples").unwrap();
    let train_data = "mnist(\"data/mnist\", subset = \"train\")";
    let (nn, input) = if source.contains(train_data) {
        let (images, labels) = mnist_subset(dir, 2000);
        let text = source
            .replace(
                train_data,
                &format!(
                    "idx(images = \"{}\", labels = \"{}\")",
                    s(&images),
                    s(&labels)
                ),
            )
            .replace(
                "\"data/mnist\"",
                &format!("\"{}/data/mnist\"", examples.display()),
            );
        let nn = dir.join(format!("{name}.nn"));
        std::fs::write(&nn, text).unwrap();
        (nn, examples.join("data/mnist/t10k-images-idx3-ubyte.gz"))
    } else {
        let data = source
            .split("csv(\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a csv data source");
        (PathBuf::from(example), examples.join(data))
    };
    let weights = dir.join(format!("{name}.safetensors"));
    let onnx = dir.join(format!("{name}.onnx"));
    let predicted = dir.join(format!("{name}.npy"));
    ok(&[
        "run",
        s(&nn),
        "--epochs",
        "1",
        "--threads",
        "1",
        "--save",
        s(&weights),
    ]);
    ok(&[
        "export",
        s(&nn),
        "--weights",
        s(&weights),
        "--onnx",
        s(&onnx),
    ]);
    ok(&[
        "predict",
        s(&nn),
        "--weights",
        s(&weights),
        s(&input),
        "-o",
        s(&predicted),
        "--threads",
        "1",
    ]);
    [onnx, input, predicted]
}

/// check.py's verdicts on `(model, input, predictions)` triples, in order.
fn check(python: &str, triples: &[[PathBuf; 3]]) -> Vec<Value> {
    let out = Command::new(python)
        .arg("tests/onnx/check.py")
        .args(triples.iter().flatten())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdicts: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(verdicts.len(), triples.len());
    verdicts
}

/// Asserts every verdict is within `TOLERANCE`, and prints them.
fn assert_close(names: &[String], verdicts: &[Value]) {
    let mut report = vec![];
    for (name, verdict) in names.iter().zip(verdicts) {
        let diff = verdict["max_abs_diff"].as_f64().unwrap();
        assert!(verdict["rows"].as_u64().unwrap() > 0);
        assert!(verdict["opset"].as_i64().unwrap() >= 17);
        report.push(format!(
            "{name}: {} rows, largest difference {diff:e}",
            verdict["rows"]
        ));
        assert!(
            diff <= TOLERANCE,
            "{name}: onnxruntime and nnc predict differ by {diff}"
        );
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn onnxruntime_runs_every_exported_example_to_nnc_predicts_outputs() {
    let Some(python) = python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut examples: Vec<String> = std::fs::read_dir("examples")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "nn"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    examples.sort();
    assert!(examples.len() >= 7, "{examples:?}");
    let triples: Vec<[PathBuf; 3]> = examples
        .iter()
        .map(|e| export_example(e, dir.path()))
        .collect();
    assert_close(&examples, &check(&python, &triples));
}

/// Every activation (after a dense layer), and every layer kind in one image model:
/// strided `same` convolution, `same` average and max pooling with odd sizes,
/// batchnorm on images (NCHW in ONNX) and on a rank-3 tensor (transposed around),
/// reshape, flatten, dropout.
#[test]
fn every_activation_and_layer_kind_exports() {
    let Some(python) = python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let iris = std::fs::canonicalize("examples/data/iris.csv").unwrap();
    let mut names = vec![];
    let mut triples = vec![];
    for a in nnc::ops::activation::Activation::ALL {
        let name = a.name();
        let nn = dir.path().join(format!("{name}.nn"));
        std::fs::write(
            &nn,
            format!(
                "model act_{name} {{\n  input x: [4]\n  dense(8, activation = {name})\n  \
                 dense(3)\n  {name}\n  softmax\n}}\ntrain {{\n  data = csv(\"{}\", target = \
                 \"species\", standardize = true)\n  loss = sparse_categorical_crossentropy\n  \
                 optimizer = adam\n  epochs = 2\n}}\n",
                iris.display()
            ),
        )
        .unwrap();
        names.push(name.to_string());
        triples.push(export_trained(&nn, &iris, dir.path()));
    }
    let (images, labels) = mnist_subset(dir.path(), 1000);
    let nn = dir.path().join("layers.nn");
    std::fs::write(
        &nn,
        format!(
            "model layers {{
  input image: [28, 28, 1]
  conv2d(4, kernel_size = 3, strides = 2, padding = \"same\", activation = gelu)
  avgpool2d(pool_size = 3, strides = 2, padding = \"same\")
  batchnorm
  maxpool2d(pool_size = 2, padding = \"same\")
  conv2d(6, kernel_size = [2, 1], activation = elu)
  reshape(shape = [6, 12])
  batchnorm
  flatten
  dropout(0.2)
  dense(10, activation = softmax)
}}
train {{
  data = idx(images = \"{}\", labels = \"{}\")
  loss = sparse_categorical_crossentropy
  optimizer = adam
  batch_size = 64
}}
",
            images.display(),
            labels.display()
        ),
    )
    .unwrap();
    names.push("layers".into());
    triples.push(export_trained(&nn, &images, dir.path()));
    assert_close(&names, &check(&python, &triples));
}

/// Trains `nn` as its train block says, exports it and predicts `input`.
fn export_trained(nn: &Path, input: &Path, dir: &Path) -> [PathBuf; 3] {
    let name = nn.file_stem().unwrap().to_str().unwrap();
    let weights = dir.join(format!("{name}.safetensors"));
    let onnx = dir.join(format!("{name}.onnx"));
    let predicted = dir.join(format!("{name}.npy"));
    ok(&["run", s(nn), "--threads", "1", "--save", s(&weights)]);
    ok(&[
        "export",
        s(nn),
        "--weights",
        s(&weights),
        "--onnx",
        s(&onnx),
    ]);
    let input = s(input);
    ok(&[
        "predict",
        s(nn),
        "--weights",
        s(&weights),
        input,
        "-o",
        s(&predicted),
    ]);
    [onnx, PathBuf::from(input), predicted]
}

/// The sequence and normalization layers on MNIST: images pooled whole
/// (`global_avgpool2d`, `global_maxpool2d`), their rows read as sequences of 28
/// steps of 28 channels through conv1d and 1-d pools (odd sizes, strides that do
/// not divide, `same` padding) and global pools, layer normalization after a conv
/// (NCHW in ONNX) and a dense layer, with and without its parameters.
#[test]
fn sequence_and_global_pooling_layers_export() {
    let Some(python) = python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (images, labels) = mnist_subset(dir.path(), 1000);
    let models = [
        (
            "global_avg_2d",
            "input image: [28, 28, 1]\n  conv2d(6, kernel_size = 3, strides = 2, activation = relu)\n  \
             global_avgpool2d\n  dense(10, activation = softmax)",
        ),
        (
            "global_max_2d",
            "input image: [28, 28, 1]\n  conv2d(6, kernel_size = 3, padding = \"same\")\n  \
             batchnorm\n  global_maxpool2d\n  dense(10, activation = softmax)",
        ),
        (
            "layer_norm",
            "input image: [28, 28, 1]\n  conv2d(4, kernel_size = 3, strides = 2)\n  layer_norm\n  \
             layer_norm(center = false, scale = false)\n  flatten\n  dense(32, activation = relu)\n  \
             layer_norm(scale = false)\n  dense(10, activation = softmax)",
        ),
        (
            "conv1d",
            "input image: [28, 28, 1]\n  reshape(shape = [28, -1])\n  \
             conv1d(8, kernel_size = 4, strides = 3, padding = \"same\", activation = gelu)\n  \
             maxpool1d(pool_size = 3, strides = 2, padding = \"same\")\n  \
             conv1d(6, kernel_size = 2, activation = relu)\n  avgpool1d(pool_size = 3, strides = 1, \
             padding = \"same\")\n  avgpool1d\n  flatten\n  dense(10, activation = softmax)",
        ),
        (
            "global_1d",
            "input image: [28, 28, 1]\n  reshape(shape = [28, 28])\n  global_maxpool1d\n  \
             reshape(shape = [14, 2])\n  global_avgpool1d\n  dense(10, activation = softmax)",
        ),
    ];
    let mut names = vec![];
    let mut triples = vec![];
    for (name, body) in models {
        let nn = dir.path().join(format!("{name}.nn"));
        std::fs::write(
            &nn,
            format!(
                "model {name} {{\n  {body}\n}}\ntrain {{\n  data = idx(images = \"{}\", labels = \
                 \"{}\")\n  loss = sparse_categorical_crossentropy\n  optimizer = adam\n  \
                 batch_size = 64\n}}\n",
                images.display(),
                labels.display()
            ),
        )
        .unwrap();
        names.push(name.to_string());
        triples.push(export_trained(&nn, &images, dir.path()));
    }
    assert_close(&names, &check(&python, &triples));
}

/// Graph models: every merge (ONNX `Add`, `Sub`, `Mul`, `Mean`, `Max`, `Min`,
/// `Concat`) over branches of one input with fan-out, and images whose branches
/// leave convolutions (NCHW in ONNX) to be added and concatenated on the channels.
#[test]
fn graph_merges_export() {
    let Some(python) = python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (images, labels) = mnist_subset(dir.path(), 1000);
    let models = [
        (
            "merges",
            "input image: [28, 28, 1]\n  flat = flatten\n  a = dense(8, activation = tanh)\n  \
             b = dense(8, activation = relu)(flat)\n  c = dense(8)(flat)\n  s = add(a, b, c)\n  \
             d = subtract(s, a)\n  m = multiply(d, b)\n  v = average([m, a, c])\n  \
             hi = maximum(v, b, a)\n  lo = minimum(hi, c)\n  concatenate(lo, a, flat)\n  \
             dense(10, activation = softmax)",
        ),
        (
            "residual_images",
            "input image: [28, 28, 1]\n  stem = conv2d(4, kernel_size = 3, strides = 2, \
             activation = relu)\n  branch = conv2d(4, kernel_size = 3, padding = \"same\")\n  \
             norm = batchnorm\n  sum = add(stem, norm)\n  pooled = maxpool2d\n  \
             wide = conv2d(2, kernel_size = 1)(pooled)\n  both = concatenate(pooled, wide, \
             axis = -1)\n  rows = concatenate(both, both, axis = 1)\n  flatten\n  \
             dense(10, activation = softmax)",
        ),
    ];
    let mut names = vec![];
    let mut triples = vec![];
    for (name, body) in models {
        let nn = dir.path().join(format!("{name}.nn"));
        std::fs::write(
            &nn,
            format!(
                "model {name} {{\n  {body}\n}}\ntrain {{\n  data = idx(images = \"{}\", labels = \
                 \"{}\")\n  loss = sparse_categorical_crossentropy\n  optimizer = adam\n  \
                 batch_size = 64\n}}\n",
                images.display(),
                labels.display()
            ),
        )
        .unwrap();
        names.push(name.to_string());
        triples.push(export_trained(&nn, &images, dir.path()));
    }
    assert_close(&names, &check(&python, &triples));
}
