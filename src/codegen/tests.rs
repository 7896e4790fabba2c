//! The math emitters against f64, each op against the interpreter, and random dense
//! models (train step, several updates, predict) against the interpreter.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::abi::Helper;
use super::jit::{compile_optimized, with_imports, Unary};
use super::kernels::Emitter;
use super::{clif_text, compile};
use crate::ir::build::{predict, train_step};
use crate::ir::graph::{Graph, LossKind, Node, Op, Role, TensorId, Window};
use crate::ir::init::initialize;
use crate::ir::interp;
use crate::ir::layout::Layout;
use crate::ir::optim::set_learning_rate;
use crate::ir::testing::{conv1d, conv2d, dense, graph, sequential};
use crate::sema::model::{
    Activation, LayerKind, Loss, Merge, Optimizer, Padding, Regularizer, Source,
};
use cranelift_codegen::ir::Value;

/// Relative error with a floor: values far below `floor` count as absolute errors.
fn rel(a: f64, b: f64, floor: f64) -> f64 {
    if a == b {
        return 0.0;
    }
    (a - b).abs() / a.abs().max(b.abs()).max(floor)
}

/// Runs a unary emitter over `xs` (length not a multiple of 4, so both the vector
/// loop and the scalar tail run) and returns the worst relative error against `f`.
fn unary_error(
    xs: &[f32],
    emit: fn(&mut Emitter, Value) -> Value,
    f: fn(f64) -> f64,
    floor: f64,
) -> f64 {
    let u = Unary::new(xs.len(), emit).expect("compiles");
    let got = u.apply(xs);
    let mut worst: f64 = 0.0;
    for (&x, &g) in xs.iter().zip(&got) {
        let want = f(x as f64);
        let err = if want.is_infinite() || (want as f32).is_infinite() {
            if g.is_infinite() && g.signum() as f64 == want.signum() {
                0.0
            } else {
                f64::INFINITY
            }
        } else {
            rel(g as f64, want, floor)
        };
        assert!(!err.is_nan(), "NaN at x = {x}: got {g}, want {want}");
        if err > worst {
            worst = err;
        }
    }
    worst
}

fn sweep(lo: f32, hi: f32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| lo + (hi - lo) * (i as f32 / (n - 1) as f32))
        .collect()
}

#[test]
fn exp_is_accurate_over_the_whole_f32_range() {
    let mut xs = sweep(-110.0, 95.0, 200_003);
    xs.extend([
        0.0, -0.0, 88.72, 88.73, -87.33, -103.0, -104.5, 1e-30, -1e-30,
    ]);
    // Normal results: relative error; subnormal ones: within a few subnormal ulps.
    let normal = unary_error(
        &xs.iter()
            .copied()
            .filter(|&x| x > -87.3)
            .collect::<Vec<_>>(),
        |e, v| e.exp(v),
        f64::exp,
        0.0,
    );
    assert!(normal < 4e-7, "exp relative error {normal}");
    let tiny = unary_error(
        &xs.iter()
            .copied()
            .filter(|&x| x <= -87.3)
            .collect::<Vec<_>>(),
        |e, v| e.exp(v),
        f64::exp,
        f32::MIN_POSITIVE as f64 * 1e-5,
    );
    assert!(tiny < 1e-6 / 1e-5, "exp subnormal error {tiny}");
    let u = Unary::new(5, |e, v| e.exp(v)).expect("compiles");
    let r = u.apply(&[89.0, 1000.0, -1000.0, -104.0, 0.0]);
    assert_eq!(r, vec![f32::INFINITY, f32::INFINITY, 0.0, 0.0, 1.0]);
}

#[test]
fn log_expm1_log1p_tanh_and_erfc_are_accurate() {
    let mut pos: Vec<f32> = (0..50_001)
        .map(|i| 2f32.powf(-120.0 + i as f32 * 0.0048))
        .collect();
    pos.push(1.0);
    let err = unary_error(&pos, |e, v| e.log(v), f64::ln, 1e-30);
    assert!(err < 3e-7, "log {err}");
    let small: Vec<f32> = (0..20_001)
        .map(|i| 2f32.powf(-60.0 + i as f32 * 0.003))
        .collect();
    let err = unary_error(&small, |e, v| e.log1p_pos(v), f64::ln_1p, 0.0);
    assert!(err < 1e-6, "log1p {err}");
    let xs = sweep(-30.0, 30.0, 60_001);
    let err = unary_error(&xs, |e, v| e.expm1(v), f64::exp_m1, 0.0);
    assert!(err < 5e-7, "expm1 {err}");
    let err = unary_error(&xs, |e, v| e.tanh(v), f64::tanh, 0.0);
    assert!(err < 5e-7, "tanh {err}");
    let err = unary_error(&xs, |e, v| e.sigmoid(v), |x| 1.0 / (1.0 + (-x).exp()), 0.0);
    assert!(err < 5e-7, "sigmoid {err}");
    // erfc's tail loses about |x|^2 f32 ulps in exp(-x^2 / 2), as any f32 form does.
    let erfc = |x: f64| libm::erfc(-x / std::f64::consts::SQRT_2);
    for (lim, tol) in [(4.0, 3e-6), (12.0, 3e-5)] {
        let xs = sweep(-lim, lim, 24_001);
        let err = unary_error(&xs, |e, v| e.two_phi(v), erfc, 0.0);
        assert!(err < tol, "erfc on [-{lim}, {lim}]: {err}");
    }
}

/// A graph under construction for single-op tests.
struct G {
    g: Graph,
}

impl G {
    fn new() -> G {
        let mut g = Graph::new(1);
        g.input = g.add_tensor("x".into(), vec![1], Role::Input);
        G { g }
    }
    fn param(&mut self, name: &str, shape: &[usize]) -> TensorId {
        let role = Role::Param {
            layer: name.into(),
            name: "w",
            trainable: true,
        };
        self.g.add_tensor(name.into(), shape.to_vec(), role)
    }
    fn temp(&mut self, name: &str, shape: &[usize]) -> TensorId {
        self.g.add_tensor(name.into(), shape.to_vec(), Role::Temp)
    }
    fn node(&mut self, op: Op, inputs: &[TensorId], output: TensorId) {
        self.g.nodes.push(Node {
            op,
            inputs: inputs.to_vec(),
            output,
        });
    }
}

/// Worst tensor-scaled error between two arenas over `ids`: each tensor's
/// differences are measured against its largest magnitude (floored at `1e-6`), so
/// summation-order noise in a near-zero entry of a large tensor does not count as a
/// large relative error. With an f64 reference run, a tensor whose f32 interpreter
/// result is itself `noise` away from the f64 one (cancellation) is measured against
/// `noise * 1e6` too: the JIT passes a 1e-5 bound if it is within 10x the
/// interpreter's own rounding error.
fn arena_error(
    g: &Graph,
    layout: &Layout,
    a: &[f32],
    b: &[f32],
    exact: Option<&[f64]>,
    ids: &[TensorId],
) -> (f64, String) {
    let mut worst = (0.0, String::new());
    for &id in ids {
        let Some(r) = layout.range(g, id) else {
            continue;
        };
        let mut scale = b[r.clone()]
            .iter()
            .fold(0f64, |m, &v| m.max((v as f64).abs()))
            .max(1e-6);
        if let Some(e) = exact {
            let noise = r
                .clone()
                .fold(0f64, |m, i| m.max((b[i] as f64 - e[i]).abs()));
            scale = scale.max(noise * 1e6);
        }
        for i in r {
            let (x, y) = (a[i] as f64, b[i] as f64);
            let err = if x == y || (x.is_nan() && y.is_nan()) {
                0.0
            } else {
                (x - y).abs() / scale
            };
            if err.is_nan() || err > worst.0 {
                let f64_run = exact.map_or(String::new(), |e| format!(" (f64 {})", e[i]));
                worst = (
                    err,
                    format!(
                        "{} [{}]: jit {x} interp {y}{f64_run}",
                        g.tensors[id].name, i
                    ),
                );
                if err.is_nan() {
                    worst.0 = f64::INFINITY;
                }
            }
        }
    }
    worst
}

/// Runs `g` through the JIT (compiled with and without Cranelift's optimizer) and the
/// interpreter from the same arena and returns the worst error over every arena tensor.
fn jit_vs_interp(g: &Graph, arena: &[f32], x: &[f32], y: &[f32], steps: u64) -> (f64, String) {
    let layout = Layout::new(g);
    let mut expected = arena.to_vec();
    for step in 0..steps {
        interp::run(g, &layout, &mut expected, x, y, step);
    }
    let ids: Vec<TensorId> = (0..g.tensors.len()).collect();
    let mut worst = (0.0, String::new());
    for optimize in [false, true] {
        let compiled = compile_optimized(g, &layout, optimize).unwrap_or_else(|e| panic!("{e}"));
        let mut got = arena.to_vec();
        for step in 0..steps {
            compiled.run(&mut got, x, y, step).expect("sizes");
        }
        let (err, at) = arena_error(g, &layout, &got, &expected, None, &ids);
        if err > worst.0 {
            worst = (err, format!("{at} (optimized: {optimize})"));
        }
    }
    worst
}

fn random(rng: &mut StdRng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(lo..hi)).collect()
}

fn check_op(g: &G, x: &[f32], y: &[f32], seed: u64, tol: f64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let layout = Layout::new(&g.g);
    let arena = random(&mut rng, layout.len, -3.0, 3.0);
    let (err, at) = jit_vs_interp(&g.g, &arena, x, y, 1);
    assert!(err <= tol, "{:?}: error {err} at {at}", g.g.nodes[0].op);
}

/// The embedding lookup and its gradient, with ids of every kind (the arena is
/// random in [-3, 3]: fractions, negatives and ids past a table of 2 rows, which
/// both executors round toward zero and clamp), then whole ids that repeat.
#[test]
fn gather_and_its_gradient_match_the_interpreter() {
    for (k, (rows, d)) in [(2, 5), (3, 1), (2, 8), (4, 3)].into_iter().enumerate() {
        let mut g = G::new();
        let ids = g.param("ids", &[3, 7]);
        let table = g.param("table", &[rows, d]);
        let dy = g.param("dy", &[3, 7, d]);
        let out = g.temp("out", &[3, 7, d]);
        let dt = g.temp("dtable", &[rows, d]);
        g.node(Op::Gather, &[ids, table], out);
        g.node(Op::GatherGrad { rows }, &[ids, dy], dt);
        check_op(&g, &[0.0], &[], k as u64, 0.0);
        let layout = Layout::new(&g.g);
        let mut arena = random(&mut StdRng::seed_from_u64(k as u64), layout.len, -1.0, 1.0);
        for (i, v) in arena[layout.range(&g.g, ids).unwrap()]
            .iter_mut()
            .enumerate()
        {
            *v = (i % rows) as f32;
        }
        let (err, at) = jit_vs_interp(&g.g, &arena, &[0.0], &[], 1);
        assert!(err == 0.0, "whole ids: {err} at {at}");
    }
}

#[test]
fn matmul_with_every_transpose() {
    // Small products are emitted inline, (40, 30, 70) calls the GEMM.
    for (m, k, n) in [
        (1, 1, 1),
        (3, 5, 7),
        (9, 4, 6),
        (16, 13, 8),
        (5, 40, 9),
        (40, 30, 70),
    ] {
        for ta in [false, true] {
            for tb in [false, true] {
                let mut g = G::new();
                let a = g.param("a", &if ta { [k, m] } else { [m, k] });
                let b = g.param("b", &if tb { [n, k] } else { [k, n] });
                let o = g.temp("o", &[m, n]);
                g.node(
                    Op::MatMul {
                        trans_a: ta,
                        trans_b: tb,
                    },
                    &[a, b],
                    o,
                );
                check_op(&g, &[0.0], &[], 1, 1e-6);
            }
        }
    }
}

#[test]
fn elementwise_ops_match_the_interpreter() {
    for n in [1, 4, 7, 13, 32] {
        let cols = [1, 3, 4, 5][n % 4];
        let rows = n;
        let mut g = G::new();
        let x = g.param("x", &[rows, cols]);
        let b = g.param("b", &[cols]);
        let o = g.temp("o", &[rows, cols]);
        g.node(Op::AddBias, &[x, b], o);
        let s = g.temp("s", &[cols]);
        g.node(Op::SumRows, &[o], s);
        let a = g.temp("a", &[rows, cols]);
        g.node(Op::Add, &[o, x], a);
        let r = g.temp("r", &[rows * cols]);
        g.node(Op::Reshape, &[a], r);
        let sm = g.temp("sm", &[rows, cols]);
        g.node(Op::Softmax, &[x], sm);
        let sg = g.temp("sg", &[rows, cols]);
        g.node(Op::SoftmaxGrad, &[sm, a], sg);
        let d = g.temp("d", &[rows, cols]);
        g.node(
            Op::Dropout {
                rate: 0.3,
                seed: 77,
            },
            &[x],
            d,
        );
        let dg = g.temp("dg", &[rows, cols]);
        g.node(
            Op::DropoutGrad {
                rate: 0.5,
                seed: 78,
            },
            &[a],
            dg,
        );
        check_op(&g, &[0.0], &[], n as u64, 1e-6);
    }
}

/// Every elementwise activation, also with a non-default `alpha` where it takes one.
fn activations() -> Vec<Activation> {
    Activation::ALL
        .iter()
        .filter(|&&a| a != Activation::Softmax)
        .flat_map(|&a| match a.alpha() {
            Some(_) => vec![a, a.with_alpha(1.3)],
            None => vec![a],
        })
        .collect()
}

/// The activations of random hidden layers: all but `exponential`, whose `exp` of an
/// unbounded pre-activation overflows or, through a batchnorm of a few rows, amplifies
/// rounding past any fixed tolerance. The tests above and the Keras parity tests
/// cover it alone.
fn hidden_activations() -> Vec<Activation> {
    activations()
        .into_iter()
        .filter(|&a| a != Activation::Exponential)
        .collect()
}

#[test]
fn activations_and_their_gradients_match_the_interpreter() {
    for act in activations() {
        let mut g = G::new();
        let x = g.param("x", &[7, 5]);
        let dy = g.param("dy", &[7, 5]);
        let y = g.temp("y", &[7, 5]);
        g.node(Op::Activate(act), &[x], y);
        let dx = g.temp("dx", &[7, 5]);
        g.node(Op::ActivateGrad(act), &[x, y, dy], dx);
        // Wide inputs reach both tails of every activation.
        let layout = Layout::new(&g.g);
        let mut rng = StdRng::seed_from_u64(3);
        let arena = random(&mut rng, layout.len, -12.0, 12.0);
        let (err, at) = jit_vs_interp(&g.g, &arena, &[0.0], &[], 1);
        assert!(err < 2e-6, "{act:?}: {err} at {at}");
    }
}

#[test]
fn losses_and_their_gradients_match_the_interpreter() {
    let mut rng = StdRng::seed_from_u64(11);
    for kind in LossKind::ALL {
        for (rows, cols) in [(1, 1), (5, 3), (9, 10)] {
            let sparse = kind.sparse();
            // Poisson's rates are positive, as a probability is.
            let probs = matches!(
                kind,
                LossKind::BinaryCrossentropy
                    | LossKind::CategoricalCrossentropy
                    | LossKind::SparseCategoricalCrossentropy
                    | LossKind::Poisson
                    | LossKind::KlDivergence
            );
            let mut g = G::new();
            let p = g.param("p", &[rows, cols]);
            let tshape = if sparse { vec![rows] } else { vec![rows, cols] };
            let t = g.g.add_tensor("t".into(), tshape.clone(), Role::Target);
            g.g.target = Some(t);
            let l = g.temp("l", &[]);
            g.node(Op::Loss(kind), &[p, t], l);
            let dl = g.temp("dl", &[rows, cols]);
            g.node(Op::LossGrad(kind), &[p, t], dl);
            let layout = Layout::new(&g.g);
            let mut arena = random(&mut rng, layout.len, -3.0, 3.0);
            if probs {
                // Probabilities, some clipped at 0 and 1.
                for v in &mut arena {
                    *v = (*v / 2.5).clamp(0.0, 1.0);
                }
            }
            let y: Vec<f32> = if sparse {
                // Valid labels plus one out of range and one fractional.
                (0..rows)
                    .map(|r| match r {
                        3 => cols as f32,
                        4 => 0.5,
                        _ => rng.gen_range(0..cols) as f32,
                    })
                    .collect()
            } else if probs || matches!(kind, LossKind::SoftmaxCategoricalCrossentropy) {
                random(&mut rng, rows * cols, 0.0, 1.0)
            } else {
                random(&mut rng, rows * cols, -2.0, 2.0)
            };
            let (err, at) = jit_vs_interp(&g.g, &arena, &[0.0], &y, 1);
            assert!(err < 2e-6, "{kind:?} {rows}x{cols}: {err} at {at}");
        }
    }
}

fn optimizers() -> Vec<Optimizer> {
    vec![
        Optimizer::Sgd {
            learning_rate: 0.01,
            momentum: 0.0,
            nesterov: false,
        },
        Optimizer::Sgd {
            learning_rate: 0.05,
            momentum: 0.9,
            nesterov: false,
        },
        Optimizer::Sgd {
            learning_rate: 0.05,
            momentum: 0.8,
            nesterov: true,
        },
        Optimizer::Adam {
            learning_rate: 0.001,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
        },
        Optimizer::AdamW {
            learning_rate: 0.002,
            beta_1: 0.85,
            beta_2: 0.99,
            epsilon: 1e-7,
            weight_decay: 0.004,
        },
        Optimizer::RmsProp {
            learning_rate: 0.001,
            rho: 0.9,
            epsilon: 1e-7,
        },
    ]
}

#[test]
fn optimizer_updates_match_the_interpreter_over_steps() {
    // 1,500 weights: Adam's update is a call to the kernels' eight-wide loop (with a
    // tail of four) where the machine has it.
    for n in [11, 1500] {
        for opt in optimizers() {
            let slots = opt.slot_names().len();
            let mut g = G::new();
            let w = g.param("w", &[n]);
            let gw = g.param("g", &[n]);
            let lr = g.g.add_tensor("lr".into(), vec![], Role::OptimizerSlot);
            g.g.learning_rate = Some(lr);
            let mut ins = vec![w, gw, lr];
            for i in 0..slots {
                ins.push(g.g.add_tensor(format!("s{i}"), vec![n], Role::OptimizerSlot));
            }
            g.node(Op::Update(opt), &ins, w);
            let layout = Layout::new(&g.g);
            let mut rng = StdRng::seed_from_u64(5);
            let mut arena = random(&mut rng, layout.len, -1.0, 1.0);
            set_learning_rate(&g.g, &layout, &mut arena, opt.learning_rate()).unwrap();
            // Adam and RMSprop second moments start non-negative.
            for &s in &ins[3..] {
                if let Some(r) = layout.range(&g.g, s) {
                    arena[r].iter_mut().for_each(|v| *v = v.abs());
                }
            }
            let (err, at) = jit_vs_interp(&g.g, &arena, &[0.0], &[], 5);
            assert!(err < 1e-6, "{n} weights, {opt:?}: {err} at {at}");
        }
    }
}

#[test]
fn bad_graphs_are_errors_not_panics() {
    let mut g = G::new();
    let a = g.param("a", &[3, 4]);
    let b = g.param("b", &[5, 2]);
    let o = g.temp("o", &[3, 2]);
    g.node(
        Op::MatMul {
            trans_a: false,
            trans_b: false,
        },
        &[a, b],
        o,
    );
    let layout = Layout::new(&g.g);
    assert!(compile(&g.g, &layout).is_err());
    let mut g = G::new();
    let a = g.param("a", &[3]);
    g.node(Op::Add, &[a], a);
    assert!(compile(&g.g, &Layout::new(&g.g)).is_err());
    let mut g = G::new();
    let a = g.param("a", &[3]);
    g.node(Op::Reshape, &[a, 99], a);
    assert!(clif_text(&g.g, &Layout::new(&g.g)).is_err());
}

#[test]
fn run_checks_buffer_sizes() {
    let mut g = G::new();
    let a = g.param("a", &[3]);
    let o = g.temp("o", &[3]);
    g.node(Op::Reshape, &[a], o);
    let layout = Layout::new(&g.g);
    let c = compile(&g.g, &layout).expect("compiles");
    assert!(c.run(&mut [0.0; 2], &[0.0], &[], 0).is_err());
    let mut arena = vec![0.0; layout.len];
    arena[..3].copy_from_slice(&[1.0, 2.0, 3.0]);
    c.run(&mut arena, &[0.0], &[], 0).expect("fits");
    assert_eq!(arena[4..7], [1.0, 2.0, 3.0]);
    let text = clif_text(&g.g, &layout).expect("clif");
    assert!(text.contains("function"), "{text}");
}

/// Random targets for `loss` over `rows` samples of `classes` outputs.
fn model_targets(rng: &mut StdRng, loss: Loss, rows: usize, classes: usize) -> Vec<f32> {
    match loss {
        Loss::SparseCategoricalCrossentropy => (0..rows)
            .map(|_| rng.gen_range(0..classes) as f32)
            .collect(),
        Loss::CategoricalCrossentropy | Loss::KlDivergence => {
            let mut y = vec![0.0; rows * classes];
            for r in 0..rows {
                y[r * classes + rng.gen_range(0..classes)] = 1.0;
            }
            y
        }
        Loss::BinaryCrossentropy => (0..rows * classes)
            .map(|_| f32::from(u8::from(rng.gen_bool(0.5))))
            .collect(),
        Loss::Mse | Loss::Mae | Loss::Huber | Loss::LogCosh => {
            random(rng, rows * classes, -1.5, 1.5)
        }
        Loss::Poisson => (0..rows * classes)
            .map(|_| rng.gen_range(0..4) as f32)
            .collect(),
    }
}

/// One random dense model trained for one epoch (full batches and a smaller last
/// batch when the batch size does not divide the data) by both executors, then
/// predicted. Returns the worst error seen, with where. With `control`, the train
/// block also gets a random schedule, clipping, label smoothing and class weights.
fn random_model_error(seed: u64, control: bool) -> (f64, String) {
    let mut rng = StdRng::seed_from_u64(seed);
    let acts = hidden_activations();
    let loss = Loss::ALL[rng.gen_range(0..Loss::ALL.len())];
    let opts = optimizers();
    let opt = opts[rng.gen_range(0..opts.len())];
    let depth = rng.gen_range(1..=4);
    let mut layers: Vec<(usize, Activation)> = (0..depth)
        .map(|_| (rng.gen_range(1..=40), acts[rng.gen_range(0..acts.len())]))
        .collect();
    // The last layer: a classifier head for the cross-entropies (often with the
    // activation the fused forms need), anything for the regressions.
    let last = layers.len() - 1;
    match loss {
        Loss::CategoricalCrossentropy
        | Loss::SparseCategoricalCrossentropy
        | Loss::KlDivergence => {
            layers[last].0 = rng.gen_range(2..=10);
            if rng.gen_bool(0.7) {
                layers[last].1 = Activation::Softmax;
            } else {
                layers[last].1 = Activation::Sigmoid;
            }
        }
        Loss::BinaryCrossentropy => {
            layers[last].0 = rng.gen_range(1..=3);
            layers[last].1 = Activation::Sigmoid;
        }
        // Positive rates.
        Loss::Poisson => layers[last].1 = Activation::Softplus,
        _ => {}
    }
    let input = rng.gen_range(1..=20);
    // Dropout after some hidden layers.
    let mut kinds = vec![];
    // Layer normalization of hidden layers wide enough to have a spread, drawn from
    // a generator of its own so that the models without it stay as they were.
    let mut norm_rng = StdRng::seed_from_u64(!seed);
    for (i, &(units, act)) in layers.iter().enumerate() {
        kinds.push(dense(units, act));
        if i < last && units >= 4 && norm_rng.gen_bool(0.3) {
            kinds.push(LayerKind::LayerNorm {
                epsilon: 1e-3,
                center: norm_rng.gen_bool(0.8),
                scale: norm_rng.gen_bool(0.8),
            });
        }
        if i < last && rng.gen_bool(0.3) {
            kinds.push(LayerKind::Dropout {
                rate: rng.gen_range(0.1..0.6),
            });
        }
    }
    let norms = kinds
        .iter()
        .filter(|k| matches!(k, LayerKind::LayerNorm { .. }))
        .count();
    let mut model = sequential(&[input], kinds, loss, opt);
    let classes = layers[last].0;
    if control {
        add_training_control(&mut model, classes, seed);
    }
    let rows = rng.gen_range(1..=24);
    let batch = rng.gen_range(1..=12);
    let what = format!(
        "seed {seed}: {input} -> {layers:?} ({norms} layer_norm), {loss:?}, {opt:?}, {rows} rows / batch {batch}"
    );

    let x = random(&mut rng, rows * input, -1.5, 1.5);
    let y = model_targets(&mut rng, loss, rows, classes);
    train_both(&model, &x, &y, rows, batch, seed, &what)
}

/// Trains `model` for one epoch over `rows` samples `x` with targets `y` in batches of
/// `batch` (a smaller last batch when it does not divide `rows`) with both executors,
/// then predicts; returns the worst error seen, with where. Runs once with every
/// temporary in its own slot (so every intermediate is compared) and once with the
/// planned layout training uses (temporaries sharing memory).
fn train_both(
    model: &crate::sema::model::Model,
    x: &[f32],
    y: &[f32],
    rows: usize,
    batch: usize,
    seed: u64,
    what: &str,
) -> (f64, String) {
    let plain = train_both_in(model, x, y, rows, batch, seed, what, Layout::new);
    let planned = train_both_in(model, x, y, rows, batch, seed, what, Layout::planned);
    if planned.0 > plain.0 || planned.0.is_nan() {
        (planned.0, format!("planned layout: {}", planned.1))
    } else {
        plain
    }
}

#[allow(clippy::too_many_arguments)]
fn train_both_in(
    model: &crate::sema::model::Model,
    x: &[f32],
    y: &[f32],
    rows: usize,
    batch: usize,
    seed: u64,
    what: &str,
    layout_of: fn(&Graph) -> Layout,
) -> (f64, String) {
    let input = x.len() / rows;
    let y_per_row = y.len() / rows;
    let model = model.clone();
    let full = train_step(&model, batch).unwrap_or_else(|e| panic!("{what}: {e}"));
    let tail = rows % batch;
    let small =
        (tail != 0).then(|| train_step(&model, tail).unwrap_or_else(|e| panic!("{what}: {e}")));
    let pred = predict(&model, rows).unwrap_or_else(|e| panic!("{what}: {e}"));
    let graphs: Vec<(&Graph, Layout)> = [Some(&full), small.as_ref(), Some(&pred)]
        .into_iter()
        .flatten()
        .map(|g| (g, layout_of(g)))
        .collect();
    let len = graphs.iter().map(|(_, l)| l.len).max().unwrap_or(0);
    let mut jit_arena = vec![0.0f32; len];
    initialize(&model, &full, &graphs[0].1, &mut jit_arena, seed);
    let mut int_arena = jit_arena.clone();
    let compiled: Vec<_> = graphs
        .iter()
        .map(|(g, l)| compile(g, l).unwrap_or_else(|e| panic!("{what}: {e}")))
        .collect();

    let mut worst = (0.0, String::new());
    let mut note = |err: (f64, String), stage: &str| {
        if err.0 > worst.0 || err.0.is_nan() {
            worst = (err.0, format!("{what}; {stage}: {}", err.1));
        }
    };
    // Batches are copied into the same buffers for every step, as the trainer does.
    let (mut x_buf, mut y_buf) = (vec![0.0; batch * input], vec![0.0; batch * y_per_row]);
    for (step, start) in (0..rows).step_by(batch).enumerate() {
        let step = step as u64;
        let n = batch.min(rows - start);
        let (k, (g, layout)) = if n == batch {
            (0, &graphs[0])
        } else {
            (1, &graphs[1])
        };
        let xb = &mut x_buf[..n * input];
        xb.copy_from_slice(&x[start * input..(start + n) * input]);
        let yb = &mut y_buf[..n * y_per_row];
        yb.copy_from_slice(&y[start * y_per_row..(start + n) * y_per_row]);
        let (xb, yb) = (&*xb, &*yb);
        let before = int_arena.clone();
        let mut exact: Vec<f64> = int_arena.iter().map(|&v| v as f64).collect();
        let wide = |v: &[f32]| v.iter().map(|&v| v as f64).collect::<Vec<f64>>();
        interp::run_in(g, layout, &mut exact, &wide(xb), &wide(yb), step);
        compiled[k]
            .run(&mut jit_arena, xb, yb, step)
            .expect("sizes");
        interp::run(g, layout, &mut int_arena, xb, yb, step);
        // Everything the step computes (activations, loss, gradients, the learning
        // rate) against the interpreter; the updated parameters, optimizer slots and
        // moving statistics against the interpreter's updates of the JIT's gradients.
        let state = updated_state(g);
        let ids: Vec<TensorId> = (0..g.tensors.len())
            .filter(|id| !state.contains(id))
            .collect();
        let err = arena_error(g, layout, &jit_arena, &int_arena, Some(&exact), &ids);
        note(err, &format!("step {step}"));
        let err = update_error(g, layout, &before, &jit_arena, step);
        note(err, &format!("step {step}, updates"));
        // Continue both from the interpreter's state so errors do not compound.
        jit_arena.copy_from_slice(&int_arena);
    }
    let (g, layout) = graphs.last().expect("predict graph");
    compiled
        .last()
        .expect("predict")
        .run(&mut jit_arena, x, &[], 0)
        .expect("sizes");
    interp::run(g, layout, &mut int_arena, x, &[], 0);
    note(
        arena_error(g, layout, &jit_arena, &int_arena, None, &[g.output]),
        "predict",
    );
    worst
}

/// The persistent tensors the updates at the end of a train step write: parameters
/// and optimizer slots (`Update`), moving statistics (`MovingAverage`).
fn updated_state(g: &Graph) -> Vec<TensorId> {
    let start = g.update_start().unwrap_or(g.nodes.len());
    let mut state = vec![];
    for node in &g.nodes[start..] {
        state.push(node.output);
        if let Op::Update(_) = node.op {
            state.extend(&node.inputs[3..]);
        }
    }
    state
}

/// How far the JIT's new state (`after`) is from the interpreter's updates applied
/// to the JIT's own gradients: the update nodes replayed by the interpreter on
/// `after` with the state of `before` (the arena before the step) put back.
///
/// Why not the interpreter's new state: Adam and RMSprop scale each gradient by its
/// own running magnitude, so on a gradient that cancels to nearly zero (a sum of
/// terms a thousand times larger, as layer normalization and merges make them) the
/// two executors' rounding of it, well within the gradient tensor's tolerance, moves
/// the weight by a sizeable fraction of the learning rate either way. The gradients
/// are compared with the rest of the step; this compares the updates themselves.
fn update_error(
    g: &Graph,
    layout: &Layout,
    before: &[f32],
    after: &[f32],
    step: u64,
) -> (f64, String) {
    let Some(start) = g.update_start() else {
        return (0.0, String::new());
    };
    let state = updated_state(g);
    let mut replay = after.to_vec();
    for &id in &state {
        if let Some(r) = layout.range(g, id) {
            replay[r.clone()].copy_from_slice(&before[r]);
        }
    }
    // The updates read no batch.
    interp::run_nodes(g, layout, start..g.nodes.len(), &mut replay, &[], &[], step);
    arena_error(g, layout, after, &replay, None, &state)
}

/// `update_error` tells a right update from a wrong one: the JIT's step of the same
/// model with Adam's epsilon at 1e-3 instead of 1e-7 is far from the interpreter's
/// updates of its gradients, the right one within rounding.
#[test]
fn updates_are_checked_on_the_jits_own_gradients() {
    let model = |epsilon| {
        let adam = Optimizer::Adam {
            learning_rate: 0.01,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon,
        };
        let layers = vec![
            dense(8, Activation::Tanh),
            LayerKind::LayerNorm {
                epsilon: 1e-3,
                center: true,
                scale: true,
            },
            dense(3, Activation::Softmax),
        ];
        sequential(&[5], layers, Loss::SparseCategoricalCrossentropy, adam)
    };
    let step = |epsilon| train_step(&model(epsilon), 4).expect("a train step");
    let right = step(1e-7);
    let layout = Layout::new(&right);
    let mut before = vec![0.0; layout.len];
    initialize(&model(1e-7), &right, &layout, &mut before, 3);
    let mut rng = StdRng::seed_from_u64(3);
    let x = random(&mut rng, 4 * 5, -1.0, 1.0);
    let y = model_targets(&mut rng, Loss::SparseCategoricalCrossentropy, 4, 3);
    for (epsilon, wrong) in [(1e-7, false), (1e-3, true)] {
        let g = step(epsilon);
        let compiled = compile(&g, &Layout::new(&g)).expect("compiles");
        let mut after = before.clone();
        compiled.run(&mut after, &x, &y, 0).expect("sizes");
        let (err, at) = update_error(&right, &layout, &before, &after, 0);
        assert_eq!(err > 1e-4, wrong, "epsilon {epsilon}: {err:e} at {at}");
        assert!(wrong || err < 1e-6, "{err:e} at {at}");
    }
}

/// A random learning-rate schedule, clipping, and for a classifier label smoothing
/// and class weights, drawn from their own generator.
fn add_training_control(model: &mut crate::sema::model::Model, classes: usize, seed: u64) {
    use crate::sema::model::{ClassWeight, Clip, Schedule};
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let Some(t) = model.train.as_mut() else {
        return;
    };
    let schedules = [
        Schedule::ExponentialDecay {
            initial: 0.05,
            decay_steps: 2.0,
            decay_rate: 0.5,
            staircase: rng.gen_bool(0.5),
        },
        Schedule::CosineDecay {
            initial: 0.01,
            decay_steps: 3.0,
            alpha: 0.1,
            warmup_target: Some(0.05),
            warmup_steps: 1.0,
        },
        Schedule::PiecewiseConstantDecay {
            boundaries: vec![0, 2],
            values: vec![0.05, 0.02, 0.01],
        },
    ];
    t.schedule = Some(schedules[rng.gen_range(0..schedules.len())].clone());
    t.clip = [
        None,
        Some(Clip::Norm(0.1)),
        Some(Clip::GlobalNorm(0.2)),
        Some(Clip::Value(0.01)),
    ][rng.gen_range(0..4)];
    if matches!(
        t.loss,
        Loss::BinaryCrossentropy | Loss::CategoricalCrossentropy
    ) {
        t.label_smoothing = rng.gen_range(0.0..0.3);
    }
    if !matches!(t.loss, Loss::Mse | Loss::Mae | Loss::Huber) {
        let weights = (0..classes.max(2))
            .map(|_| rng.gen_range(0.0..3.0))
            .collect();
        t.class_weight = Some(ClassWeight::Given(weights));
    }
}

#[test]
fn random_dense_models_with_training_control_agree_with_the_interpreter() {
    let mut worst = (0.0, String::new());
    for seed in 0..60 {
        let err = random_model_error(seed, true);
        if err.0 > worst.0 || err.0.is_nan() {
            worst = err;
        }
    }
    println!(
        "largest JIT/interpreter difference: {:e} ({})",
        worst.0, worst.1
    );
    assert!(worst.0 < 1e-5, "{:e} at {}", worst.0, worst.1);
}

#[test]
fn random_dense_models_agree_with_the_interpreter() {
    let mut worst = (0.0, String::new());
    for seed in 0..200 {
        let err = random_model_error(seed, false);
        if err.0 > worst.0 || err.0.is_nan() {
            worst = err;
        }
    }
    println!(
        "largest JIT/interpreter difference: {:e} ({})",
        worst.0, worst.1
    );
    assert!(worst.0 < 1e-5, "{:e} at {}", worst.0, worst.1);
}

#[test]
fn matmul_of_a_mostly_zero_operand_matches_the_interpreter() {
    // Mostly-zero left operands (image pixels) take the GEMM's sparse path.
    for (m, k, n, ta) in [
        (40, 100, 70, false),
        (130, 90, 129, true),
        (16, 784, 128, true),
    ] {
        let mut g = G::new();
        let a = g.param("a", &if ta { [k, m] } else { [m, k] });
        let b = g.param("b", &[k, n]);
        let o = g.temp("o", &[m, n]);
        let op = Op::MatMul {
            trans_a: ta,
            trans_b: false,
        };
        g.node(op, &[a, b], o);
        let layout = Layout::new(&g.g);
        let mut rng = StdRng::seed_from_u64(5);
        let mut arena = random(&mut rng, layout.len, -1.0, 1.0);
        for v in &mut arena[layout.range(&g.g, a).unwrap()] {
            if rng.gen_bool(0.85) {
                *v = 0.0;
            }
        }
        let (err, at) = jit_vs_interp(&g.g, &arena, &[0.0], &[], 1);
        assert!(err <= 1e-6, "{m}x{k}x{n}: error {err} at {at}");
    }
}

#[test]
fn a_sparse_input_batch_is_read_anew_by_every_call() {
    // The first layer's products collect the nonzeros of a mostly-zero input batch
    // once per call (forward, then transposed for the weight gradient). Batches come
    // in one reused buffer: every call must read the new one, in training and in
    // prediction (which has no transposed product to reuse them).
    let adam = Optimizer::Adam {
        learning_rate: 0.001,
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-7,
    };
    let loss = Loss::SparseCategoricalCrossentropy;
    let layers = vec![dense(64, Activation::Relu), dense(10, Activation::Softmax)];
    let model = sequential(&[200], layers, loss, adam);
    let (rows, batch) = (48, 16);
    let mut rng = StdRng::seed_from_u64(11);
    let mut x = random(&mut rng, rows * 200, 0.0, 1.0);
    for v in &mut x {
        if rng.gen_bool(0.85) {
            *v = 0.0;
        }
    }
    let y = model_targets(&mut rng, loss, rows, 10);
    let (err, at) = train_both(&model, &x, &y, rows, batch, 11, "sparse input");
    assert!(err < 1e-5, "training: {err:e} at {at}");

    let g = predict(&model, batch).expect("predict graph");
    let layout = Layout::planned(&g);
    let compiled = compile(&g, &layout).expect("compiles");
    let mut arena = vec![0.0; layout.len];
    initialize(&model, &g, &layout, &mut arena, 3);
    let mut x_buf = vec![0.0; batch * 200];
    for chunk in x.chunks(batch * 200) {
        x_buf.copy_from_slice(chunk);
        let mut expected = arena.clone();
        interp::run(&g, &layout, &mut expected, &x_buf, &[], 0);
        compiled.run(&mut arena, &x_buf, &[], 0).expect("sizes");
        let (err, at) = arena_error(&g, &layout, &arena, &expected, None, &[g.output]);
        assert!(err < 1e-5, "prediction: {err:e} at {at}");
    }
}

#[test]
fn threaded_matmul_matches_the_interpreter_and_itself() {
    let mut g = G::new();
    let a = g.param("a", &[96, 150]);
    let b = g.param("b", &[70, 150]);
    let o = g.temp("o", &[96, 70]);
    let op = Op::MatMul {
        trans_a: false,
        trans_b: true,
    };
    g.node(op, &[a, b], o);
    let layout = Layout::new(&g.g);
    let arena = random(&mut StdRng::seed_from_u64(3), layout.len, -1.0, 1.0);
    let compiled = compile(&g.g, &layout).unwrap();
    let run = |threads| {
        super::set_threads(threads);
        let mut a = arena.clone();
        compiled.run(&mut a, &[0.0], &[], 0).unwrap();
        a
    };
    let (one, two, again) = (run(1), run(2), run(2));
    super::set_threads(1);
    assert_eq!(two, again, "two threads are not deterministic");
    let mut b = arena.clone();
    interp::run(&g.g, &layout, &mut b, &[0.0], &[], 0);
    let ids = [o];
    for out in [&one, &two] {
        let (err, at) = arena_error(&g.g, &layout, out, &b, None, &ids);
        assert!(err <= 1e-6, "error {err} at {at}");
    }
}

/// Odd sizes, strides that do not divide, both paddings, channel counts that are and
/// are not multiples of the vector width: `(h, w, c, window, strides, padding)`.
/// `(h, w, c, window, strides, padding)`.
type Case = (usize, usize, usize, [usize; 2], [usize; 2], Padding);

fn windows() -> Vec<Case> {
    use Padding::{Same, Valid};
    vec![
        (5, 7, 3, [3, 2], [2, 3], Same),
        (5, 7, 6, [3, 2], [2, 3], Valid),
        (6, 5, 4, [3, 3], [2, 2], Same),
        (4, 4, 1, [2, 2], [3, 1], Same),
        (5, 5, 9, [2, 2], [3, 3], Same),
        (3, 4, 2, [1, 1], [2, 2], Valid),
        (4, 3, 5, [4, 3], [1, 1], Same),
        (1, 1, 4, [1, 1], [1, 1], Same),
        // Windows that tile the input exactly (the max pooling gradient's write-once
        // path), with both paddings.
        (6, 4, 5, [2, 2], [2, 2], Valid),
        (6, 9, 3, [2, 3], [2, 3], Same),
    ]
}

#[test]
fn max_pool_gradient_has_the_interpreters_bits() {
    // Write-once (exact tiling) and accumulating windows; `dy` holds negative zeros,
    // whose sum with the zeroed `dx` is `+0` in the interpreter.
    for size in [[2, 2], [3, 3]] {
        let win = Window {
            input: [6, 6],
            size,
            strides: [2, 2],
            padding: Padding::Valid,
        };
        let [oh, ow] = win.output().expect("fits");
        let c = 5;
        let mut g = G::new();
        let x = g.param("x", &[2, 6, 6, c]);
        let dy = g.param("dy", &[2, oh, ow, c]);
        let arg = g.g.push(Op::MaxPool2dArgmax(win), vec![x], "arg".into());
        let arg = arg.expect("shapes");
        let dx = g.g.push(Op::MaxPool2dGrad(win), vec![arg, dy], "dx".into());
        let dx = dx.expect("shapes");
        let layout = Layout::new(&g.g);
        let mut rng = StdRng::seed_from_u64(3);
        let mut arena = random(&mut rng, layout.len, -3.0, 3.0);
        let dys = layout.range(&g.g, dy).expect("in the arena");
        for v in arena[dys].iter_mut().step_by(2) {
            *v = -0.0;
        }
        let mut expected = arena.clone();
        interp::run(&g.g, &layout, &mut expected, &[0.0], &[], 0);
        let compiled = compile(&g.g, &layout).expect("compiles");
        compiled.run(&mut arena, &[0.0], &[], 0).expect("sizes");
        let bits = |a: &[f32]| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let out = layout.range(&g.g, dx).expect("in the arena");
        assert_eq!(bits(&arena[out.clone()]), bits(&expected[out]), "{size:?}");
    }
}

#[test]
fn image_and_normalization_ops_match_the_interpreter() {
    for (k, (h, w, c, size, strides, padding)) in windows().into_iter().enumerate() {
        let win = Window {
            input: [h, w],
            size,
            strides,
            padding,
        };
        let [oh, ow] = win.output().expect("fits");
        let b = 2;
        let mut g = G::new();
        let x = g.param("x", &[b, h, w, c]);
        let dy = g.param("dy", &[b, oh, ow, c]);
        let dx = g.param("dx", &[b, h, w, c]);
        let gamma = g.param("gamma", &[c]);
        let beta = g.param("beta", &[c]);
        let avg = g.param("avg", &[c]);
        let mut push = |op: Op, ins: &[TensorId]| -> TensorId {
            let name = format!("{op:?}");
            g.g.push(op, ins.to_vec(), name).expect("shapes")
        };
        let cols = push(Op::Im2col(win), &[x]);
        push(Op::Col2im(win), &[cols]);
        let arg = push(Op::MaxPool2dArgmax(win), &[x]);
        push(Op::MaxPool2d(win), &[x, arg]);
        push(Op::MaxPool2dGrad(win), &[arg, dy]);
        push(Op::AvgPool2d(win), &[x]);
        push(Op::AvgPool2dGrad(win), &[dy]);
        let mean = push(Op::BatchMean, &[x]);
        let var = push(Op::BatchVariance, &[x, mean]);
        let epsilon = 1e-3;
        for batch_stats in [false, true] {
            let op = Op::BatchNorm {
                epsilon,
                batch_stats,
            };
            push(op, &[x, mean, var, gamma, beta]);
        }
        push(Op::BatchNormGrad { epsilon }, &[var, gamma, dx]);
        let dg = push(Op::BatchNormGammaGrad { epsilon }, &[x, mean, var, dx]);
        let db = push(Op::SumRows, &[dx]);
        let op = Op::BatchNormTrainGrad { epsilon };
        push(op, &[x, mean, var, gamma, dx, dg, db]);
        // Layer normalization over the channels of every pixel, with and without
        // its parameters.
        for (scale, center) in [(true, true), (false, true), (true, false), (false, false)] {
            let mut ins = vec![x];
            ins.extend(scale.then_some(gamma));
            ins.extend(center.then_some(beta));
            let op = Op::LayerNorm {
                epsilon,
                scale,
                center,
            };
            push(op, &ins);
            let mut ins = vec![x];
            ins.extend(scale.then_some(gamma));
            ins.push(dx);
            push(Op::LayerNormGrad { epsilon, scale }, &ins);
        }
        push(Op::LayerNormGammaGrad { epsilon }, &[x, dx]);
        g.node(Op::MovingAverage { momentum: 0.9 }, &[avg, var], avg);
        check_op(&g, &[0.0], &[], k as u64, 1e-6);
    }
}

/// A random conv model: conv blocks (odd kernels, strides that do not divide, both
/// paddings, pools and batchnorm here and there), flatten, maybe dropout, a dense
/// head; trained for an epoch by both executors, then predicted.
fn random_conv_model_error(seed: u64) -> (f64, String) {
    let mut rng = StdRng::seed_from_u64(seed);
    let acts = hidden_activations();
    let losses = [
        Loss::Mse,
        Loss::CategoricalCrossentropy,
        Loss::SparseCategoricalCrossentropy,
        Loss::BinaryCrossentropy,
    ];
    let loss = losses[rng.gen_range(0..losses.len())];
    let opts = optimizers();
    let opt = opts[rng.gen_range(0..opts.len())];
    let input = [
        rng.gen_range(2..=9),
        rng.gen_range(2..=9),
        rng.gen_range(1..=3),
    ];
    let (mut h, mut w) = (input[0], input[1]);
    let mut kinds = vec![];
    // A window that fits: `valid` only when it is no larger than the image.
    let window = |rng: &mut StdRng, h: usize, w: usize| {
        let size = [rng.gen_range(1..=3), rng.gen_range(1..=3)];
        let strides = [rng.gen_range(1..=3), rng.gen_range(1..=3)];
        let fits = size[0] <= h && size[1] <= w;
        let padding = if fits && rng.gen_bool(0.5) {
            Padding::Valid
        } else {
            Padding::Same
        };
        let win = Window {
            input: [h, w],
            size,
            strides,
            padding,
        };
        let [oh, ow] = win.output().expect("fits");
        (size, strides, padding, oh, ow)
    };
    let mut pooled = false;
    for _ in 0..rng.gen_range(1..=2) {
        let (size, strides, padding, oh, ow) = window(&mut rng, h, w);
        let filters = rng.gen_range(1..=6);
        let act = acts[rng.gen_range(0..acts.len())];
        kinds.push(conv2d(filters, size, strides, padding, act));
        (h, w) = (oh, ow);
        // Not after a pool, nor over a handful of pixels: pooling windows that cover
        // the same elements make equal pixels, and so do few pixels often enough; a
        // (near) zero variance turns f32 noise into O(1 / sqrt(epsilon)) differences
        // between any two summation orders.
        if !pooled && h * w >= 4 && rng.gen_bool(0.4) {
            // Batchnorm removes the mean the conv's bias adds: that bias's gradient
            // is 0 in exact arithmetic and rounding noise in both executors, so the
            // conv has none (as Keras models put it).
            if let Some(LayerKind::Conv2d { use_bias, .. }) = kinds.last_mut() {
                *use_bias = false;
            }
            kinds.push(LayerKind::BatchNorm {
                momentum: 0.9,
                epsilon: 1e-3,
            });
        }
        if rng.gen_bool(0.6) {
            let (pool_size, strides, padding, oh, ow) = window(&mut rng, h, w);
            kinds.push(if rng.gen_bool(0.5) {
                LayerKind::MaxPool2d {
                    pool_size,
                    strides,
                    padding,
                }
            } else {
                LayerKind::AvgPool2d {
                    pool_size,
                    strides,
                    padding,
                }
            });
            (h, w) = (oh, ow);
            pooled = true;
        }
    }
    // The image becomes a vector by flattening, by global pooling, or by global
    // pooling of its rows seen as one sequence. Not by averaging right after
    // batchnorm: over a batch of one, that is the constant `beta` (the batch's
    // mean of every channel removed), and its f32 rounding noise is all there is
    // to compare.
    let max = rng.gen_bool(0.5) || matches!(kinds.last(), Some(LayerKind::BatchNorm { .. }));
    match rng.gen_range(0..4) {
        0 | 1 => kinds.push(LayerKind::Flatten),
        2 => kinds.push(LayerKind::GlobalPool { max, dims: 2 }),
        _ => {
            let c = last_filters(&kinds);
            kinds.push(LayerKind::Reshape {
                shape: vec![h * w, c],
            });
            kinds.push(LayerKind::GlobalPool { max, dims: 1 });
        }
    }
    if rng.gen_bool(0.3) {
        kinds.push(LayerKind::Dropout { rate: 0.3 });
    }
    let classes = match loss {
        Loss::Mse => rng.gen_range(1..=3),
        Loss::BinaryCrossentropy => 1,
        _ => rng.gen_range(2..=5),
    };
    let head = match loss {
        Loss::Mse => Activation::Linear,
        Loss::BinaryCrossentropy => Activation::Sigmoid,
        _ => Activation::Softmax,
    };
    kinds.push(dense(classes, head));
    let what = format!("seed {seed}: {input:?} {kinds:?}, {loss:?}, {opt:?}");
    let model = sequential(&input, kinds, loss, opt);
    let rows = rng.gen_range(1..=9);
    let batch = rng.gen_range(1..=4);
    let x = random(&mut rng, rows * input.iter().product::<usize>(), -1.5, 1.5);
    let y = model_targets(&mut rng, loss, rows, classes);
    let what = format!("{what}, {rows} rows / batch {batch}");
    train_both(&model, &x, &y, rows, batch, seed, &what)
}

/// The channels of the last conv layer of `kinds` (pools keep them).
fn last_filters(kinds: &[LayerKind]) -> usize {
    kinds
        .iter()
        .rev()
        .find_map(|k| match k {
            LayerKind::Conv2d { filters, .. } => Some(*filters),
            _ => None,
        })
        .unwrap_or(1)
}

#[test]
fn random_conv_models_agree_with_the_interpreter() {
    let mut worst = (0.0, String::new());
    for seed in 0..150 {
        let err = random_conv_model_error(seed);
        if err.0 > worst.0 || err.0.is_nan() {
            worst = err;
        }
    }
    println!(
        "largest JIT/interpreter difference: {:e} ({})",
        worst.0, worst.1
    );
    assert!(worst.0 < 1e-5, "{:e} at {}", worst.0, worst.1);
}

/// A random sequence model: sometimes token ids through an embedding, conv1d
/// layers and 1-d pools (odd lengths, strides that do not divide, both paddings),
/// sometimes a layer_norm, then flatten or a global pool and a dense head; trained
/// for an epoch by both executors.
fn random_sequence_model_error(seed: u64) -> (f64, String) {
    let mut rng = StdRng::seed_from_u64(seed);
    let acts = hidden_activations();
    let losses = [
        Loss::Mse,
        Loss::SparseCategoricalCrossentropy,
        Loss::BinaryCrossentropy,
    ];
    let loss = losses[rng.gen_range(0..losses.len())];
    let opts = optimizers();
    let opt = opts[rng.gen_range(0..opts.len())];
    let mut input = vec![rng.gen_range(2..=12), rng.gen_range(1..=4)];
    let mut steps = input[0];
    let mut kinds = vec![];
    // Token ids: whole numbers below the vocabulary, some repeated (drawn from a
    // generator of their own, so that the other models stay as they were).
    let mut ids = StdRng::seed_from_u64(!seed);
    let vocabulary = ids.gen_bool(0.4).then(|| ids.gen_range(1..=9));
    if let Some(input_dim) = vocabulary {
        kinds.push(LayerKind::Embedding {
            input_dim,
            output_dim: input[1],
            embeddings_initializer: crate::sema::model::Initializer::Uniform,
        });
        input.pop();
    }
    // A window that fits: `valid` only when it is no longer than the sequence.
    let window = |rng: &mut StdRng, steps: usize| {
        let (size, stride) = (rng.gen_range(1..=4), rng.gen_range(1..=3));
        let padding = if size <= steps && rng.gen_bool(0.5) {
            Padding::Valid
        } else {
            Padding::Same
        };
        let out = padding
            .windows(steps as u64, size as u64, stride as u64)
            .expect("fits") as usize;
        (size, stride, padding, out)
    };
    for _ in 0..rng.gen_range(1..=2) {
        let (size, stride, padding, out) = window(&mut rng, steps);
        let filters = rng.gen_range(1..=6);
        kinds.push(conv1d(
            filters,
            size,
            stride,
            padding,
            acts[rng.gen_range(0..acts.len())],
        ));
        steps = out;
        if filters >= 4 && rng.gen_bool(0.3) {
            kinds.push(LayerKind::LayerNorm {
                epsilon: 1e-3,
                center: true,
                scale: true,
            });
        }
        if rng.gen_bool(0.5) {
            let (pool_size, strides, padding, out) = window(&mut rng, steps);
            kinds.push(LayerKind::Pool1d {
                max: rng.gen_bool(0.5),
                pool_size,
                strides,
                padding,
            });
            steps = out;
        }
    }
    kinds.push(if rng.gen_bool(0.5) {
        LayerKind::Flatten
    } else {
        LayerKind::GlobalPool {
            max: rng.gen_bool(0.5),
            dims: 1,
        }
    });
    let (classes, head) = match loss {
        Loss::Mse => (rng.gen_range(1..=3), Activation::Linear),
        Loss::BinaryCrossentropy => (1, Activation::Sigmoid),
        _ => (rng.gen_range(2..=5), Activation::Softmax),
    };
    kinds.push(dense(classes, head));
    let what = format!("seed {seed}: {input:?} {kinds:?}, {loss:?}, {opt:?}");
    let model = sequential(&input, kinds, loss, opt);
    let rows = rng.gen_range(1..=9);
    let batch = rng.gen_range(1..=4);
    let n = rows * input.iter().product::<usize>();
    let x = match vocabulary {
        Some(v) => (0..n).map(|_| ids.gen_range(0..v) as f32).collect(),
        None => random(&mut rng, n, -1.5, 1.5),
    };
    let y = model_targets(&mut rng, loss, rows, classes);
    let what = format!("{what}, {rows} rows / batch {batch}");
    train_both(&model, &x, &y, rows, batch, seed, &what)
}

#[test]
fn random_sequence_models_agree_with_the_interpreter() {
    let mut worst = (0.0, String::new());
    for seed in 0..100 {
        let err = random_sequence_model_error(seed);
        if err.0 > worst.0 || err.0.is_nan() {
            worst = err;
        }
    }
    println!(
        "largest JIT/interpreter difference: {:e} ({})",
        worst.0, worst.1
    );
    assert!(worst.0 < 1e-5, "{:e} at {}", worst.0, worst.1);
}

/// A helper call whose arguments differ from the helper's declared kinds is caught
/// where the call is emitted.
#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "argument 1 of nnc_powf")]
fn helper_calls_are_checked_against_the_abi() {
    let _ = with_imports(|e, imports| {
        let x = e.fc(cranelift_codegen::ir::types::F32, 2.0);
        let n = e.iconst(3);
        imports.call_f32(&mut e.b, Helper::Powf, &[x, n]);
    });
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "nnc_logf takes 1 arguments")]
fn helper_calls_are_checked_for_their_count() {
    let _ = with_imports(|e, imports| {
        let x = e.fc(cranelift_codegen::ir::types::F32, 2.0);
        imports.call_f32(&mut e.b, Helper::Logf, &[x, x]);
    });
}

/// Every schedule, at every step around its boundaries, decay ends and warmup: the
/// native code writes the interpreter's rate bit for bit.
#[test]
fn schedules_match_the_interpreter_at_every_step() {
    use crate::ir::optim::scheduled_rate;
    use crate::sema::model::Schedule;
    let schedules = [
        Schedule::ExponentialDecay {
            initial: 0.1,
            decay_steps: 3.0,
            decay_rate: 0.5,
            staircase: false,
        },
        Schedule::ExponentialDecay {
            initial: 0.05,
            decay_steps: 4.0,
            decay_rate: 0.3,
            staircase: true,
        },
        Schedule::InverseTimeDecay {
            initial: 0.02,
            decay_steps: 2.0,
            decay_rate: 0.7,
            staircase: true,
        },
        Schedule::InverseTimeDecay {
            initial: 0.02,
            decay_steps: 7.0,
            decay_rate: 1.5,
            staircase: false,
        },
        Schedule::PolynomialDecay {
            initial: 0.2,
            decay_steps: 7.0,
            end: 0.01,
            power: 2.0,
            cycle: false,
        },
        Schedule::PolynomialDecay {
            initial: 0.05,
            decay_steps: 4.0,
            end: 0.005,
            power: 0.5,
            cycle: true,
        },
        Schedule::CosineDecay {
            initial: 0.05,
            decay_steps: 9.0,
            alpha: 0.2,
            warmup_target: None,
            warmup_steps: 0.0,
        },
        Schedule::CosineDecay {
            initial: 0.01,
            decay_steps: 10.0,
            alpha: 0.1,
            warmup_target: Some(0.2),
            warmup_steps: 4.0,
        },
        Schedule::PiecewiseConstantDecay {
            boundaries: vec![3, 7],
            values: vec![0.1, 0.05, 0.01],
        },
    ];
    for schedule in schedules {
        let mut g = G::new();
        let lr = g.g.add_tensor("lr".into(), vec![], Role::OptimizerSlot);
        g.g.learning_rate = Some(lr);
        g.node(Op::LearningRate(schedule.clone()), &[lr], lr);
        let layout = Layout::new(&g.g);
        let at = layout.range(&g.g, lr).unwrap().start;
        let compiled = compile(&g.g, &layout).unwrap();
        let (mut native, mut interpreted) = (vec![0.0; layout.len], vec![0.0; layout.len]);
        let mut rates = vec![];
        for step in 0..25 {
            compiled.run(&mut native, &[0.0], &[], step).unwrap();
            interp::run(&g.g, &layout, &mut interpreted, &[0.0], &[], step);
            assert_eq!(
                native[at].to_bits(),
                interpreted[at].to_bits(),
                "{schedule:?} at step {step}"
            );
            assert_eq!(interpreted[at], scheduled_rate(&schedule, step));
            rates.push(native[at]);
        }
        assert_eq!(rates[0], schedule.initial(), "{schedule:?}");
        assert!(
            rates.iter().any(|&r| r != rates[0]),
            "{schedule:?} is constant"
        );
    }
}

/// The clipping ops, on gradients below and above their thresholds, and a zero one.
#[test]
fn clipping_matches_the_interpreter() {
    for (scale, zero) in [(0.01f32, false), (5.0, false), (1.0, true)] {
        let mut g = G::new();
        let grads: Vec<TensorId> = [7usize, 12, 3]
            .iter()
            .enumerate()
            .map(|(i, &n)| g.param(&format!("g{i}"), &[n]))
            .collect();
        let mut outputs = vec![];
        for (i, &d) in grads.iter().enumerate() {
            let norm = g.temp(&format!("norm{i}"), &[g.g.tensors[d].len()]);
            g.node(Op::ClipNorm { clipnorm: 0.5 }, &[d], norm);
            let value = g.temp(&format!("value{i}"), &[g.g.tensors[d].len()]);
            g.node(Op::ClipValue { limit: 0.3 }, &[d], value);
            outputs.extend([norm, value]);
        }
        let s = g.temp("scale", &[]);
        let op = Op::GlobalClipScale {
            clipnorm: 0.7,
            count: grads.len(),
        };
        g.node(op, &grads, s);
        for (i, &d) in grads.iter().enumerate() {
            let o = g.temp(&format!("scaled{i}"), &[g.g.tensors[d].len()]);
            g.node(Op::Scale, &[d, s], o);
        }
        let layout = Layout::new(&g.g);
        let mut rng = StdRng::seed_from_u64(11);
        let arena: Vec<f32> = random(&mut rng, layout.len, -1.0, 1.0)
            .into_iter()
            .map(|v| if zero { 0.0 } else { v * scale })
            .collect();
        let (err, at) = jit_vs_interp(&g.g, &arena, &[0.0], &[], 1);
        assert!(err == 0.0, "scale {scale}: {err} at {at}");
    }
}

#[test]
fn nodes_split_over_the_batch_match_the_interpreter_with_the_same_bits_on_any_thread_count() {
    // Large enough to be split into parts (outputs of 64K floats and more), at a
    // batch of 6 (6 parts) and of 8 (8 parts); a batch of 11 has no divisor up to
    // 8 and stays whole. Every image op, the bias, activations and their gradients.
    for batch in [6, 8, 11] {
        let conv = Window {
            input: [36, 36],
            size: [3, 3],
            strides: [1, 1],
            padding: Padding::Same,
        };
        let pool = Window {
            input: [36, 36],
            size: [2, 2],
            strides: [2, 2],
            padding: Padding::Valid,
        };
        let c = 9;
        let mut g = G::new();
        g.g.batch = batch;
        let x = g.param("x", &[batch, 36, 36, c]);
        let bias = g.param("bias", &[c]);
        let dy = g.param("dy", &[batch, 36, 36, c]);
        let dp = g.param("dp", &[batch, 18, 18, c]);
        let mut push = |op: Op, ins: &[TensorId]| -> TensorId {
            let name = format!("{op:?}");
            g.g.push(op, ins.to_vec(), name).expect("shapes")
        };
        let cols = push(Op::Im2col(conv), &[x]);
        push(Op::Col2im(conv), &[cols]);
        let biased = push(Op::AddBias, &[x, bias]);
        let relu = push(Op::Activate(Activation::Relu), &[biased]);
        let tanh = push(Op::Activate(Activation::Tanh), &[biased]);
        push(Op::ActivateGrad(Activation::Relu), &[biased, relu, dy]);
        push(Op::ActivateGrad(Activation::Tanh), &[biased, tanh, dy]);
        push(Op::Add, &[relu, tanh]);
        let arg = push(Op::MaxPool2dArgmax(pool), &[relu]);
        push(Op::MaxPool2d(pool), &[relu, arg]);
        push(Op::MaxPool2dGrad(pool), &[arg, dp]);
        push(Op::AvgPool2d(conv), &[tanh]);
        push(Op::AvgPool2dGrad(conv), &[dy]);
        let layout = Layout::new(&g.g);
        let arena = random(
            &mut StdRng::seed_from_u64(batch as u64),
            layout.len,
            -2.0,
            2.0,
        );
        let mut expected = arena.clone();
        interp::run(&g.g, &layout, &mut expected, &[0.0], &[], 0);
        let bits = |a: &[f32]| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let clif = clif_text(&g.g, &layout).expect("builds");
        assert_eq!(clif.contains("func_addr"), batch != 11, "batch {batch}");
        let compiled = compile(&g.g, &layout).expect("compiles");
        let ids: Vec<TensorId> = (0..g.g.tensors.len()).collect();
        let mut one_thread = None;
        for threads in [1, 2, 3] {
            super::set_threads(threads);
            let mut got = arena.clone();
            compiled.run(&mut got, &[0.0], &[], 0).expect("sizes");
            super::set_threads(1);
            let first = one_thread.get_or_insert_with(|| got.clone());
            assert!(
                bits(first) == bits(&got),
                "batch {batch}: {threads} threads differ from 1"
            );
            // tanh's native polynomial is not the interpreter's `f32::tanh`: its
            // node and those reading it are held to a tolerance, the rest to the
            // interpreter's values (equal as numbers: the native ReLU gradient
            // writes `0` where the interpreter's has `-0`, split or not).
            let (err, at) = arena_error(&g.g, &layout, &got, &expected, None, &ids);
            assert!(
                err < 1e-5,
                "batch {batch}, {threads} threads: {err:e} at {at}"
            );
            for (t, node) in g.g.nodes.iter().enumerate() {
                let uses_tanh = node.inputs.contains(&tanh) || node.output == tanh;
                let range = layout.range(&g.g, node.output).expect("in the arena");
                let differs = got[range.clone()]
                    .iter()
                    .zip(&expected[range])
                    .position(|(a, b)| a != b);
                assert!(
                    uses_tanh || differs.is_none(),
                    "batch {batch}, {threads} threads, node {t} {:?}: element {differs:?}",
                    node.op
                );
            }
        }
    }
}

/// A random graph model: branches from the input or any earlier layer (fan-out), merges
/// of every kind over layers of one width (a layer merged with itself too),
/// concatenations, and images with residual `add`s of `same` convolutions and
/// channel concatenations; dropout, layer normalization and kernel regularizers here
/// and there; every output read, a dense head last; any optimizer. Trained for an
/// epoch by both executors, then predicted.
fn random_graph_model_error(seed: u64) -> (f64, String) {
    let mut rng = StdRng::seed_from_u64(seed);
    let acts = hidden_activations();
    let loss = Loss::ALL[rng.gen_range(0..Loss::ALL.len())];
    // Every optimizer: merges make gradients that cancel to (near) zero common
    // (`subtract(a, a)`, a product with a unit near 0), which Adam and RMSprop
    // amplify; `train_both` checks their updates on the JIT's own gradients.
    let opts = optimizers();
    let opt = opts[rng.gen_range(0..opts.len())];
    let image = rng.gen_bool(0.3);
    let input: Vec<usize> = if image {
        vec![
            rng.gen_range(2..=5),
            rng.gen_range(2..=5),
            rng.gen_range(1..=3),
        ]
    } else {
        vec![rng.gen_range(1..=8)]
    };
    // Every node so far: its source and shape, and whether something reads it.
    let mut nodes: Vec<(Source, Vec<usize>, bool)> = vec![(Source::Input, input.clone(), false)];
    let mut layers: Vec<(LayerKind, Vec<Source>)> = vec![];
    let push = |layers: &mut Vec<(LayerKind, Vec<Source>)>,
                nodes: &mut Vec<(Source, Vec<usize>, bool)>,
                kind: LayerKind,
                reads: Vec<usize>| {
        let shapes: Vec<&[usize]> = reads.iter().map(|&r| nodes[r].1.as_slice()).collect();
        let shape = kind
            .output_shape_of(&shapes)
            .expect("the generator fits shapes");
        let sources = reads.iter().map(|&r| nodes[r].0).collect();
        for &r in &reads {
            nodes[r].2 = true;
        }
        nodes.push((Source::Layer(layers.len()), shape, false));
        layers.push((kind, sources));
    };
    let merges = [
        Merge::Add,
        Merge::Subtract,
        Merge::Multiply,
        Merge::Average,
        Merge::Maximum,
        Merge::Minimum,
    ];
    for _ in 0..rng.gen_range(2..=6) {
        let from = rng.gen_range(0..nodes.len());
        let shape = nodes[from].1.clone();
        let act = acts[rng.gen_range(0..acts.len())];
        // Another node of the same shape (maybe `from` itself) to merge with.
        let same: Vec<usize> = (0..nodes.len()).filter(|&i| nodes[i].1 == shape).collect();
        let partner = same[rng.gen_range(0..same.len())];
        match rng.gen_range(0..4) {
            0 if shape.len() == 3 => {
                // A `same` convolution keeping the channels: a residual branch.
                let size = [rng.gen_range(1..=3), rng.gen_range(1..=3)];
                let kind = conv2d(shape[2], size, [1, 1], Padding::Same, act);
                let kind = maybe_regularized(&mut rng, kind);
                push(&mut layers, &mut nodes, kind, vec![from]);
            }
            0 | 1 if shape.len() == 1 => {
                // Few widths, so that merges find partners.
                let units = [3, 5][rng.gen_range(0..2)];
                let kind = maybe_regularized(&mut rng, dense(units, act));
                push(&mut layers, &mut nodes, kind, vec![from]);
            }
            2 => {
                let m = merges[rng.gen_range(0..merges.len())];
                let mut reads = vec![from, partner];
                if m != Merge::Subtract && rng.gen_bool(0.3) {
                    reads.push(same[rng.gen_range(0..same.len())]);
                }
                push(&mut layers, &mut nodes, LayerKind::Merge(m), reads);
            }
            _ => {
                // Concatenate along the last axis with a node that agrees elsewhere.
                let fits: Vec<usize> = (0..nodes.len())
                    .filter(|&i| {
                        let s = &nodes[i].1;
                        s.len() == shape.len() && s[..s.len() - 1] == shape[..shape.len() - 1]
                    })
                    .collect();
                let other = fits[rng.gen_range(0..fits.len())];
                let axis = shape.len() - 1;
                let kind = LayerKind::Merge(Merge::Concatenate { axis });
                push(&mut layers, &mut nodes, kind, vec![from, other]);
            }
        }
        if rng.gen_bool(0.15) {
            let last = nodes.len() - 1;
            let kind = LayerKind::Dropout { rate: 0.3 };
            push(&mut layers, &mut nodes, kind, vec![last]);
        }
        // Layer normalization of a last axis wide enough to have a spread: over two
        // values its output is +-1 whatever the input but for epsilon, so its input
        // gradient is a cancellation to `epsilon / var` of its terms, where one
        // rounding of the forward pass's inputs is a 1e-4 relative difference.
        let last = nodes.len() - 1;
        if nodes[last].1.last().is_some_and(|&c| c >= 4) && rng.gen_bool(0.2) {
            let kind = LayerKind::LayerNorm {
                epsilon: 1e-3,
                center: rng.gen_bool(0.8),
                scale: rng.gen_bool(0.8),
            };
            push(&mut layers, &mut nodes, kind, vec![last]);
        }
    }
    // Flatten every unread node and concatenate them: nothing is left unread.
    let mut ends = vec![];
    for i in 0..nodes.len() {
        if !nodes[i].2 {
            let end = if nodes[i].1.len() > 1 {
                push(&mut layers, &mut nodes, LayerKind::Flatten, vec![i]);
                nodes.len() - 1
            } else {
                i
            };
            ends.push(end);
        }
    }
    if ends.len() > 1 {
        let kind = LayerKind::Merge(Merge::Concatenate { axis: 0 });
        push(&mut layers, &mut nodes, kind, ends);
    }
    let classes = match loss {
        Loss::BinaryCrossentropy => 1,
        Loss::CategoricalCrossentropy | Loss::SparseCategoricalCrossentropy => rng.gen_range(2..=4),
        _ => rng.gen_range(1..=3),
    };
    let head = match loss {
        Loss::BinaryCrossentropy => Activation::Sigmoid,
        Loss::CategoricalCrossentropy | Loss::SparseCategoricalCrossentropy => Activation::Softmax,
        _ => Activation::Linear,
    };
    let last = nodes.len() - 1;
    push(&mut layers, &mut nodes, dense(classes, head), vec![last]);
    let what = format!("seed {seed}: {input:?} {layers:?}, {loss:?}, {opt:?}");
    let model = graph(&input, layers, loss, opt);
    let rows = rng.gen_range(1..=12);
    let batch = rng.gen_range(1..=5);
    let x = random(&mut rng, rows * input.iter().product::<usize>(), -1.5, 1.5);
    let y = model_targets(&mut rng, loss, rows, classes);
    let what = format!("{what}, {rows} rows / batch {batch}");
    train_both(&model, &x, &y, rows, batch, seed, &what)
}

/// `kind` with, a third of the time, a kernel regularizer (l1, l2 or both).
fn maybe_regularized(rng: &mut StdRng, mut kind: LayerKind) -> LayerKind {
    if rng.gen_bool(0.33) {
        let factors = [(0.01, 0.0), (0.0, 0.02), (0.005, 0.03)];
        let (l1, l2) = factors[rng.gen_range(0..factors.len())];
        if let LayerKind::Dense {
            kernel_regularizer, ..
        }
        | LayerKind::Conv2d {
            kernel_regularizer, ..
        } = &mut kind
        {
            *kernel_regularizer = Some(Regularizer { l1, l2 });
        }
    }
    kind
}

#[test]
fn random_graph_models_agree_with_the_interpreter() {
    let mut worst = (0.0, String::new());
    for seed in 0..150 {
        let err = random_graph_model_error(seed);
        if err.0 > worst.0 || err.0.is_nan() {
            worst = err;
        }
    }
    println!(
        "largest JIT/interpreter difference: {:e} ({})",
        worst.0, worst.1
    );
    assert!(worst.0 < 1e-5, "{:e} at {}", worst.0, worst.1);
}

#[test]
fn a_step_compiled_in_segments_is_the_whole_step_bit_for_bit() {
    // What data-parallel training runs: the gradient half, cut where the ranks sum
    // batchnorm's statistics, then (after the ranks' sum) the update half, over the
    // layout training uses.
    let adam = Optimizer::Adam {
        learning_rate: 0.01,
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-7,
    };
    let batchnorm = LayerKind::BatchNorm {
        momentum: 0.9,
        epsilon: 1e-3,
    };
    let layers = vec![
        dense(12, Activation::Linear),
        batchnorm,
        LayerKind::Activation(Activation::Tanh),
        dense(3, Activation::Softmax),
    ];
    let loss = Loss::SparseCategoricalCrossentropy;
    let model = sequential(&[5], layers, loss, adam);
    let g = train_step(&model, 8).expect("train graph");
    let layout = Layout::planned(&g);
    let split = g.update_start().expect("updates at the end");
    assert!(matches!(g.nodes[split].op, Op::Update(_)));
    assert!(g.nodes[..split]
        .iter()
        .all(|n| !matches!(n.op, Op::Update(_) | Op::MovingAverage { .. })));
    assert_eq!(predict(&model, 8).expect("predict").update_start(), None);

    let mut rng = StdRng::seed_from_u64(5);
    let x = random(&mut rng, 8 * 5, -1.0, 1.0);
    let y = model_targets(&mut rng, loss, 8, 3);
    let whole = compile(&g, &layout).expect("compiles");
    let mut cuts: Vec<usize> = (g.nodes.iter().enumerate())
        .filter_map(|(i, n)| match n.op {
            Op::BatchMean | Op::BatchVariance => Some(i + 1),
            Op::BatchNormTrainGrad { .. } => Some(i),
            _ => None,
        })
        .collect();
    assert_eq!(cuts.len(), 3);
    cuts.push(split);
    let segments = super::compile_segments(&g, &layout, &cuts, false).expect("compiles");
    assert_eq!(segments.len(), 5);
    let (gradients, second) = segments.split_at(4);
    let mut a = vec![0.0; layout.len];
    initialize(&model, &g, &layout, &mut a, 1);
    let mut b = a.clone();
    let mut c = a.clone();
    for step in 0..3 {
        whole.run(&mut a, &x, &y, step).expect("sizes");
        for f in gradients {
            f.run(&mut b, &x, &y, step).expect("sizes");
        }
        second[0]
            .run(&mut b, &[], &[], step)
            .expect("the update half reads no batch");
        interp::run_nodes(&g, &layout, 0..split, &mut c, &x, &y, step);
        interp::run_nodes(&g, &layout, split..g.nodes.len(), &mut c, &x, &y, step);
    }
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    let persistent = layout.persistent_len;
    assert_eq!(bits(&a[..persistent]), bits(&b[..persistent]));
    let loss_at = layout.offsets[g.loss.unwrap()].unwrap();
    assert_eq!(a[loss_at].to_bits(), b[loss_at].to_bits());
    // The interpreter's halves train too (to the JIT's rounding).
    let (err, at) = arena_error(&g, &layout, &a, &c, None, &[g.loss.unwrap()]);
    assert!(err < 1e-5, "{err:e} at {at}");
    assert!(super::compile_segments(&g, &layout, &[g.nodes.len() + 1], false).is_err());
}
