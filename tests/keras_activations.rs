//! Every activation against Keras 3 at fixed inputs: `f(x)` from `keras.activations`
//! and `f'(x)` from TensorFlow's gradient, as recorded in
//! tests/keras_parity/activations.json by tests/keras_parity/make_fixtures.py. Both
//! executors are checked: the reference arithmetic (`Activation::apply` and
//! `derivative`, which the interpreter runs) and the JIT's native code.
//!
//! Tolerance: `1e-6 + 1e-5 * |keras|` per value; a float32 reimplementation of
//! Keras's formulas lands within an eighth of it, while 4-digit constants (selu) or a
//! kink taken on the wrong side (hard_sigmoid at +-3) are far outside it.

use std::path::Path;

use nnc::codegen::compile;
use nnc::ir::graph::{Graph, Op, Role};
use nnc::ir::interp::run;
use nnc::ir::layout::Layout;
use nnc::ops::Activation;
use serde_json::Value;

fn within(got: f32, keras: f64) -> bool {
    (got as f64 - keras).abs() <= 1e-6 + 1e-5 * keras.abs()
}

/// `[f(x), f'(x)]` of every `x` by the interpreter and by the JIT, in that order.
fn executors(a: Activation, x: &[f32]) -> [(&'static str, Vec<f32>, Vec<f32>); 2] {
    let n = x.len();
    let mut g = Graph::new(n);
    let dy = g.add_tensor(
        "dy".into(),
        vec![n],
        Role::Param {
            layer: "test".into(),
            name: "dy",
            trainable: false,
        },
    );
    let input = g.add_tensor("x".into(), vec![n], Role::Input);
    g.input = input;
    let y = g.push(Op::Activate(a), vec![input], "y".into()).unwrap();
    let dx = g
        .push(Op::ActivateGrad(a), vec![input, y, dy], "dx".into())
        .unwrap();
    g.output = y;
    let layout = Layout::new(&g);
    let fresh_arena = || {
        let mut arena = vec![0.0f32; layout.len];
        arena[layout.range(&g, dy).unwrap()].fill(1.0);
        arena
    };
    let read = |arena: &[f32]| {
        (
            arena[layout.range(&g, y).unwrap()].to_vec(),
            arena[layout.range(&g, dx).unwrap()].to_vec(),
        )
    };
    let mut interpreted = fresh_arena();
    run(&g, &layout, &mut interpreted, x, &[], 0);
    let mut native = fresh_arena();
    compile(&g, &layout)
        .unwrap()
        .run(&mut native, x, &[], 0)
        .unwrap();
    let (fi, gi) = read(&interpreted);
    let (fj, gj) = read(&native);
    [("interpreter", fi, gi), ("JIT", fj, gj)]
}

#[test]
fn every_activation_agrees_with_keras_at_fixed_inputs() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keras_parity/activations.json");
    let table: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let floats = |v: &Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_f64().unwrap())
            .collect()
    };
    let x: Vec<f32> = floats(&table["x"]).iter().map(|&v| v as f32).collect();
    let recorded = table["activations"].as_object().unwrap();
    let mut checked = vec![];
    for &a in Activation::ALL
        .iter()
        .filter(|&&a| a != Activation::Softmax)
    {
        let Some(entry) = recorded.get(a.name()) else {
            panic!("activations.json has no `{}`", a.name());
        };
        // The table records Keras's own default where it differs from nnc's.
        let a = match entry.get("negative_slope") {
            Some(alpha) => a.with_alpha(alpha.as_f64().unwrap() as f32),
            None => a,
        };
        let (f, grad) = (floats(&entry["f"]), floats(&entry["grad"]));
        for (executor, got_f, got_grad) in executors(a, &x) {
            for i in 0..x.len() {
                assert!(
                    within(got_f[i], f[i]),
                    "{executor}: {a}({}) = {} but Keras gives {}",
                    x[i],
                    got_f[i],
                    f[i]
                );
                assert!(
                    within(got_grad[i], grad[i]),
                    "{executor}: {a}'({}) = {} but TensorFlow gives {}",
                    x[i],
                    got_grad[i],
                    grad[i]
                );
            }
        }
        checked.push(a.name());
    }
    // Keras's other names for nnc's activations must compute the same function.
    for &(alias, name) in Activation::ALIASES {
        if let (Some(a), Some(b)) = (recorded.get(alias), recorded.get(name)) {
            assert_eq!(a["f"], b["f"], "{alias} and {name} differ in Keras");
        }
    }
    assert!(checked.len() >= 9, "{checked:?}");
}
