//! End to end: the shipped examples train through `nnc run` (the same library entry
//! point as the binary) to the accuracy a Keras user would expect.

mod common;
use common::nnc;
use serde_json::Value;

/// Runs `nnc run --json` and returns its events. One thread each: the test harness
/// already runs tests side by side, and more threads than cores only contend.
fn train(args: &[&str]) -> Vec<Value> {
    let mut all = vec!["run", "--json", "--threads", "1"];
    all.extend(args);
    let out = nnc(&all);
    assert_eq!(out.code, 0, "nnc {all:?} failed:\n{}", out.stderr);
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

fn test_accuracy(events: &[Value]) -> f64 {
    let test = events
        .iter()
        .find(|e| e["event"] == "test")
        .expect("a test event");
    test["metrics"]["accuracy"].as_f64().expect("accuracy")
}

/// The README's examples table states each example's test accuracy as measured by
/// the test below that trains it: the figure must be this run's, to 0.1%, so that
/// the table cannot drift from what nnc does. The cell's first percentage counts.
#[track_caller]
fn assert_readme_states(example: &str, accuracy: f64) {
    let readme = std::fs::read_to_string("README.md").expect("README.md");
    let row = readme
        .lines()
        .find(|l| l.starts_with(&format!("| `{example}` |")))
        .unwrap_or_else(|| panic!("README.md has no examples row for `{example}`"));
    let cell = row.trim_end_matches('|').rsplit('|').next().unwrap_or("");
    let documented = cell.split('%').next().unwrap_or("").trim();
    let measured = format!("{:.1}", accuracy * 100.0);
    assert_eq!(
        documented, measured,
        "README.md states {documented}% for {example}, this run measured {measured}%; \
         update the row: {row}"
    );
}

#[test]
fn json_lines_have_the_documented_events() {
    let events = train(&["examples/iris.nn", "--epochs", "3"]);
    assert_eq!(events[0]["event"], "compile");
    assert!(events[0]["seconds"].as_f64().unwrap() > 0.0);
    let epochs: Vec<&Value> = events.iter().filter(|e| e["event"] == "epoch").collect();
    assert_eq!(epochs.len(), 3);
    for (i, e) in epochs.iter().enumerate() {
        assert_eq!(e["epoch"], i as u64 + 1);
        assert!(e["loss"].as_f64().unwrap().is_finite());
        assert!(e["metrics"]["accuracy"].as_f64().is_some());
        assert!(e["samples_per_second"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(events.last().unwrap()["event"], "test");
}

#[test]
fn profile_times_every_node_of_the_train_step() {
    let events = train(&["examples/iris.nn", "--epochs", "2", "--profile"]);
    let profile = events
        .iter()
        .find(|e| e["event"] == "profile")
        .expect("a profile event");
    let nodes = profile["nodes"].as_array().expect("nodes");
    // iris.nn: two dense layers, softmax cross-entropy, Adam on four tensors.
    let labels: Vec<&str> = nodes.iter().map(|n| n["node"].as_str().unwrap()).collect();
    assert!(labels.iter().any(|l| l.contains("= matmul(")), "{labels:?}");
    assert_eq!(
        labels
            .iter()
            .filter(|l| l.starts_with("update.adam"))
            .count(),
        4
    );
    let shares: Vec<f64> = nodes.iter().map(|n| n["share"].as_f64().unwrap()).collect();
    assert!(
        (shares.iter().sum::<f64>() - 1.0).abs() < 1e-6,
        "{shares:?}"
    );
    assert!(
        shares.windows(2).all(|w| w[0] >= w[1]),
        "slowest first: {shares:?}"
    );
}

#[test]
fn profile_names_the_nodes_of_a_graph() {
    let events = train(&["examples/wide_and_deep.nn", "--epochs", "1", "--profile"]);
    let profile = events
        .iter()
        .find(|e| e["event"] == "profile")
        .expect("a profile event");
    let labels: Vec<&str> = profile["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["node"].as_str().unwrap())
        .collect();
    // `both = concatenate(wide, deep_2)`, and its gradient split back to each branch.
    for node in [
        "both.out = concat{axis=1, parts=2}(wide.out, deep_2.out)",
        "d(wide.out) = slice{axis=1, 0..16}(d(both.out))",
        "d(deep_2.out) = slice{axis=1, 16..48}(d(both.out))",
    ] {
        assert!(labels.contains(&node), "no `{node}` in {labels:?}");
    }
}

#[test]
fn iris_reaches_93_percent() {
    let acc = test_accuracy(&train(&["examples/iris.nn"]));
    assert!(acc >= 0.93, "iris test accuracy {acc}");
    assert_readme_states("examples/iris.nn", acc);
}

#[test]
fn breast_cancer_30_features_reaches_95_percent() {
    let acc = test_accuracy(&train(&["examples/breast_cancer.nn"]));
    assert!(acc >= 0.95, "breast_cancer test accuracy {acc}");
    assert_readme_states("examples/breast_cancer.nn", acc);
}

#[test]
fn breast_cancer_with_callbacks_stops_early_and_reaches_95_percent() {
    let events = train(&["examples/breast_cancer_callbacks.nn"]);
    let acts: Vec<&str> = events
        .iter()
        .filter_map(|e| e["callback"].as_str())
        .collect();
    assert!(acts.contains(&"reduce_lr_on_plateau"), "{acts:?}");
    assert_eq!(acts.last(), Some(&"early_stopping"), "{acts:?}");
    // The README quotes the lines these events print.
    let readme = std::fs::read_to_string("README.md").expect("README.md");
    for event in events
        .iter()
        .filter(|e| e["callback"].is_string())
        .take(1)
        .chain(events.iter().filter(|e| e["callback"] == "early_stopping"))
    {
        let line = format!(
            "{}: {}",
            event["callback"].as_str().unwrap_or("").replace('_', " "),
            event["message"].as_str().unwrap_or("")
        );
        assert!(readme.contains(&line), "README.md does not quote: {line}");
    }
    let acc = test_accuracy(&events);
    assert!(acc >= 0.95, "breast_cancer test accuracy {acc}");
    assert_readme_states("examples/breast_cancer_callbacks.nn", acc);
}

#[test]
fn digits_reaches_95_percent() {
    let acc = test_accuracy(&train(&["examples/digits.nn"]));
    assert!(acc >= 0.95, "digits test accuracy {acc}");
    assert_readme_states("examples/digits.nn", acc);
}

/// The digits' pixel intensities as token ids through an embedding, a conv1d and
/// global max pooling.
#[test]
fn digits_tokens_reaches_95_percent() {
    let acc = test_accuracy(&train(&["examples/digits_tokens.nn"]));
    assert!(acc >= 0.95, "digits_tokens test accuracy {acc}");
    assert_readme_states("examples/digits_tokens.nn", acc);
}

#[test]
fn wide_and_deep_graph_reaches_96_percent() {
    let acc = test_accuracy(&train(&["examples/wide_and_deep.nn"]));
    assert!(acc >= 0.96, "wide_and_deep test accuracy {acc}");
    assert_readme_states("examples/wide_and_deep.nn", acc);
}

#[test]
fn seed_network_reaches_88_percent() {
    let acc = test_accuracy(&train(&["examples/seed.nn", "--epochs", "400"]));
    assert!(acc >= 0.88, "seed network test accuracy {acc}");
    assert_readme_states("examples/seed.nn", acc);
}

#[test]
fn mnist_mlp_reaches_95_5_percent_in_two_epochs() {
    let acc = test_accuracy(&train(&["examples/mnist_mlp.nn"]));
    assert!(acc >= 0.955, "MNIST MLP test accuracy {acc}");
    assert_readme_states("examples/mnist_mlp.nn", acc);
}

#[test]
fn the_same_seed_gives_bit_identical_weights() {
    let dir = tempfile::tempdir().unwrap();
    let save = |name: &str, seed: &str| {
        let path = dir.path().join(name);
        let path_text = path.to_str().unwrap().to_string();
        train(&[
            "examples/digits.nn",
            "--epochs",
            "2",
            "--seed",
            seed,
            "--save",
            &path_text,
        ]);
        std::fs::read(path).unwrap()
    };
    let (a, b, c) = (save("a", "5"), save("b", "5"), save("c", "6"));
    assert_eq!(a, b, "two runs with one seed differ");
    assert_ne!(a, c, "another seed gave the same weights");
}

#[test]
fn jit_and_interpreter_train_to_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let weights = |engine: &[&str]| {
        let path = dir.path().join(format!("{}.safetensors", engine.len()));
        let path_text = path.to_str().unwrap().to_string();
        let mut args = vec!["examples/iris.nn", "--epochs", "5", "--save", &path_text];
        args.extend(engine);
        train(&args);
        let bytes = std::fs::read(&path).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut names = file.names();
        names.sort();
        assert_eq!(names.len(), 4, "kernel and bias of two layers");
        names
            .iter()
            .flat_map(|name| {
                let t = file.tensor(name).unwrap();
                t.data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<f32>>()
    };
    let (jit, interp) = (weights(&[]), weights(&["--interpret"]));
    assert_eq!(jit.len(), interp.len());
    let scale = interp.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = jit
        .iter()
        .zip(&interp)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        worst <= 1e-4 * scale,
        "largest difference {worst} (scale {scale})"
    );
}

#[test]
fn saved_weights_load_back_with_init() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.safetensors");
    let first_text = first.to_str().unwrap();
    let events = train(&["examples/iris.nn", "--epochs", "40", "--save", first_text]);
    let trained = test_accuracy(&events);
    // Zero epochs is not allowed, so continue one epoch at a tiny learning rate's
    // worth of change: the accuracy must stay that of a trained model, far above
    // what a fresh initialization gives.
    let resumed = train(&["examples/iris.nn", "--epochs", "1", "--init", first_text]);
    let fresh = train(&["examples/iris.nn", "--epochs", "1"]);
    assert!(test_accuracy(&resumed) >= trained - 0.07);
    assert!(test_accuracy(&resumed) > test_accuracy(&fresh));
}

#[test]
fn a_diverging_loss_stops_with_the_epoch_and_batch() {
    let dir = tempfile::tempdir().unwrap();
    let src = std::fs::read_to_string("examples/iris.nn").unwrap();
    let bad = src.replace("adam(learning_rate = 0.01)", "sgd(learning_rate = 1e30)");
    assert_ne!(src, bad, "the example's optimizer line changed");
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::copy("examples/data/iris.csv", dir.path().join("data/iris.csv")).unwrap();
    let path = dir.path().join("diverge.nn");
    std::fs::write(&path, bad).unwrap();
    let out = nnc(&["run", path.to_str().unwrap()]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("in epoch 1, batch"), "{}", out.stderr);
    assert!(
        out.stderr.contains("smaller learning rate"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_missing_data_file_is_an_error_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let src = std::fs::read_to_string("examples/iris.nn").unwrap();
    let path = dir.path().join("nodata.nn");
    std::fs::write(&path, src).unwrap();
    let out = nnc(&["run", path.to_str().unwrap()]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("iris.csv"), "{}", out.stderr);
    assert!(
        out.stdout.is_empty(),
        "trained without data: {}",
        out.stdout
    );
}

#[test]
fn mnist_convnet_reaches_98_percent_in_two_epochs() {
    // The file trains 15 epochs, as the Keras example does; two are enough for 98%.
    let acc = test_accuracy(&train(&["examples/mnist_cnn.nn", "--epochs", "2"]));
    assert!(acc >= 0.98, "MNIST convnet test accuracy {acc}");
    assert_readme_states("examples/mnist_cnn.nn", acc);
}

#[test]
fn mnist_resnet_reaches_98_5_percent_in_two_epochs() {
    let acc = test_accuracy(&train(&["examples/mnist_resnet.nn"]));
    assert!(acc >= 0.985, "MNIST residual convnet test accuracy {acc}");
    assert_readme_states("examples/mnist_resnet.nn", acc);
}

#[test]
fn lenet5_with_batchnorm_reaches_98_percent_in_two_epochs() {
    let acc = test_accuracy(&train(&["examples/lenet5.nn"]));
    assert!(acc >= 0.98, "LeNet-5 test accuracy {acc}");
    assert_readme_states("examples/lenet5.nn", acc);
}
