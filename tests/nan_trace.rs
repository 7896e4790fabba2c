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
