//! NaN traced to its line, beyond the golden files' text: the JSON event, nothing
//! saved, the interpreter's run reporting the same place, and the divergence warning
//! as a JSON event.

mod common;

use common::nnc;

const REGRESSION: &str = "tests/golden/nan_sgd_momentum_regression.nn";
const EXP: &str = "tests/golden/nan_exp_overflow.nn";

#[test]
fn json_gets_the_error_event_with_its_code_and_line_and_nothing_is_saved() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("w.safetensors");
    let out = nnc(&[
        "run",
        REGRESSION,
        "--json",
        "--save",
        weights.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let last = out.stdout.lines().last().unwrap();
    let event: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(event["event"], "error");
    assert_eq!(event["code"], "E0024");
    // `loss = mse` is line 11 of the file.
    assert_eq!(event["line"], 11);
    assert!(event["message"]
        .as_str()
        .unwrap()
        .contains("epoch 1, batch 8 of 18"));
    assert!(out.stderr.contains("[E0024] Error"), "{}", out.stderr);
    assert!(!weights.exists());
}

#[test]
fn the_interpreter_finds_the_same_first_value() {
    let jit = nnc(&["run", EXP]);
    let interpreted = nnc(&["run", EXP, "--interpret"]);
    assert_eq!(jit.code, 1);
    assert_eq!(interpreted.code, 1);
    assert!(
        jit.stderr.contains("forward pass of layer `dense`"),
        "{}",
        jit.stderr
    );
    assert_eq!(jit.stderr, interpreted.stderr);
}

#[test]
fn the_divergence_warning_is_a_json_event() {
    let out = nnc(&["run", "tests/golden/w0007_diverging.nn", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let events: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let warnings: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["event"] == "warning").collect();
    assert_eq!(warnings.len(), 1, "{}", out.stdout);
    assert_eq!(warnings[0]["code"], "W0007");
    // After the first epoch's event, before the second's.
    let position = |f: &dyn Fn(&serde_json::Value) -> bool| events.iter().position(f).unwrap();
    let warned = position(&|e| e["event"] == "warning");
    assert_eq!(position(&|e| e["epoch"] == 1) + 1, warned);
}

#[test]
fn a_weight_that_becomes_infinite_under_a_finite_loss_is_found_at_the_epoch_end() {
    // One sample x = 3e38 and a kernel of 1e-38: the prediction 3 and the loss 9 are
    // finite, the kernel's gradient (3e38 * 6) is not, so the update makes it -inf.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.csv"), "x,y\n3e38,0\n").unwrap();
    let nn = dir.path().join("big.nn");
    std::fs::write(
        &nn,
        "model m {\n    input x: [1]\n    dense(1)\n}\n\ntrain {\n    \
         data = csv(\"big.csv\", target = \"y\")\n    loss = mse\n    \
         optimizer = sgd(learning_rate = 0.1)\n    epochs = 1\n    batch_size = 1\n}\n",
    )
    .unwrap();
    let init = dir.path().join("init.safetensors");
    let (kernel, bias) = ([1e-38f32], [0f32]);
    nnc::runtime::checkpoint::save(
        &init,
        &[
            ("dense.kernel".into(), vec![1, 1], &kernel[..]),
            ("dense.bias".into(), vec![1], &bias[..]),
        ],
    )
    .unwrap();
    let out = nnc(&[
        "run",
        nn.to_str().unwrap(),
        "--init",
        init.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "a weight became NaN or infinite in epoch 1, batch 1 of 1; the first inf \
             appears in the backward pass of layer `dense`"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("`d(dense.kernel)` became inf here"),
        "{}",
        out.stderr
    );
    // The layer's line.
    assert!(out.stderr.contains(" 3 |     dense(1)"), "{}", out.stderr);
}
