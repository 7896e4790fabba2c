//! Whole-pipeline tests of the IR: models built, initialized and trained by the
//! interpreter; gradients against finite differences in f64.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::build::{evaluate, predict, train_step};
use super::graph::{Graph, Op};
use super::init::initialize;
use super::interp::{run, run_in};
use super::layout::Layout;
use super::testing::{
    conv1d, conv2d, dense, dense_model, gradient_error, graph, sequential, without_updates,
};
use crate::sema::model::{
    Activation, LayerKind, Loss, Merge, Model, Optimizer, Padding, Regularizer, Source,
};

const ADAM: Optimizer = Optimizer::Adam {
    learning_rate: 0.01,
    beta_1: 0.9,
    beta_2: 0.999,
    epsilon: 1e-7,
};

fn random(rng: &mut StdRng, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..n).map(|_| rng.gen_range(lo..hi)).collect()
}

fn loss_of(g: &Graph, layout: &Layout, arena: &[f32]) -> f32 {
    let l = g.loss.and_then(|l| layout.range(g, l)).unwrap();
    arena[l][0]
}

#[test]
fn tiny_model_loss_decreases_under_interpreter() {
    let model = dense_model(
        2,
        &[(8, Activation::Relu), (1, Activation::Sigmoid)],
        Loss::BinaryCrossentropy,
        ADAM,
    );
    let batch = 16;
    let g = train_step(&model, batch).unwrap();
    let layout = Layout::new(&g);
    let mut arena = vec![0.0f32; layout.len];
    initialize(&model, &g, &layout, &mut arena, 1);
    // A linearly separable problem: the class is whether x0 + x1 > 0.
    let mut rng = StdRng::seed_from_u64(2);
    let x: Vec<f32> = random(&mut rng, batch * 2, -1.0, 1.0)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let y: Vec<f32> = x.chunks(2).map(|p| f32::from(p[0] + p[1] > 0.0)).collect();
    run(&g, &layout, &mut arena, &x, &y, 0);
    let first = loss_of(&g, &layout, &arena);
    assert!(first.is_finite() && first > 0.3, "{first}");
    for step in 1..200 {
        run(&g, &layout, &mut arena, &x, &y, step);
    }
    let last = loss_of(&g, &layout, &arena);
    assert!(last < first * 0.3, "loss went from {first} to {last}");
    // The output is the post-sigmoid probability and classifies the batch.
    let out = &arena[layout.range(&g, g.output).unwrap()];
    assert!(out.iter().all(|&p| (0.0..=1.0).contains(&p)));
    let correct = out
        .iter()
        .zip(&y)
        .filter(|(&p, &t)| f32::from(p > 0.5) == t)
        .count();
    assert!(correct >= batch - 1, "{correct}/{batch}");
}

/// Random targets fitting `g`'s target tensor for `loss`.
fn targets(rng: &mut StdRng, g: &Graph, loss: Loss) -> Vec<f64> {
    let target = g.target.unwrap();
    let n = g.tensors[target].len();
    let classes = *g.tensors[g.output].shape.last().unwrap();
    match loss {
        Loss::SparseCategoricalCrossentropy => {
            (0..n).map(|_| rng.gen_range(0..classes) as f64).collect()
        }
        Loss::CategoricalCrossentropy | Loss::KlDivergence => (0..n)
            .map(|i| f64::from(u8::from(i % classes == (i / classes) % classes)))
            .collect(),
        Loss::BinaryCrossentropy => random(rng, n, 0.0, 1.0),
        Loss::Mse | Loss::Mae | Loss::Huber | Loss::LogCosh => random(rng, n, -1.5, 1.5),
        Loss::Poisson => (0..n).map(|_| rng.gen_range(0..4) as f64).collect(),
    }
}

/// The worst finite-difference error of a whole model's parameter gradients.
fn model_fd_error(model: &Model, batch: usize, seed: u64) -> f64 {
    let g = train_step(model, batch).unwrap();
    let (fwd, pairs) = without_updates(&g);
    assert!(!pairs.is_empty());
    let layout = Layout::new(&fwd);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut arena = vec![0.0f64; layout.len];
    for &(p, _) in &pairs {
        for v in &mut arena[layout.range(&fwd, p).unwrap()] {
            *v = rng.gen_range(-0.8..0.8);
        }
    }
    let x = random(&mut rng, g.tensors[g.input].len(), -1.5, 1.5);
    let y = targets(&mut rng, &g, model.train.as_ref().unwrap().loss);
    gradient_error(&fwd, &pairs, &arena, &x, &y, 3)
}

fn with_loss(kinds: Vec<LayerKind>, input: &[usize], loss: Loss) -> Model {
    sequential(input, kinds, loss, ADAM)
}

#[test]
fn whole_model_gradients_match_finite_differences() {
    use Activation::*;
    let act = LayerKind::Activation;
    let models = [
        dense_model(
            3,
            &[(6, Relu), (4, Softmax)],
            Loss::SparseCategoricalCrossentropy,
            ADAM,
        ),
        dense_model(
            3,
            &[(5, Tanh), (3, Softmax)],
            Loss::CategoricalCrossentropy,
            ADAM,
        ),
        with_loss(
            vec![
                dense(5, Tanh),
                LayerKind::Dropout { rate: 0.3 },
                dense(1, Sigmoid),
            ],
            &[3],
            Loss::BinaryCrossentropy,
        ),
        with_loss(
            vec![
                LayerKind::Flatten,
                dense(4, Gelu),
                LayerKind::Reshape { shape: vec![2, 2] },
                LayerKind::Flatten,
                dense(2, Linear),
            ],
            &[2, 3],
            Loss::Mse,
        ),
        with_loss(
            vec![
                dense(4, Linear),
                act(LeakyRelu { alpha: 0.3 }),
                dense(3, Elu { alpha: 1.0 }),
                act(Silu),
                dense(3, Softplus),
            ],
            &[3],
            Loss::Huber,
        ),
        // Softmax, then dropout: the unfused probability form.
        with_loss(
            vec![dense(3, Softmax), LayerKind::Dropout { rate: 0.2 }],
            &[4],
            Loss::CategoricalCrossentropy,
        ),
        // A standalone sigmoid layer still fuses with the loss.
        with_loss(
            vec![dense(1, Linear), act(Sigmoid)],
            &[3],
            Loss::BinaryCrossentropy,
        ),
        with_loss(vec![dense(2, Sigmoid)], &[3], Loss::Mae),
        with_loss(
            vec![dense(3, Relu), dense(4, Softmax)],
            &[2],
            Loss::SparseCategoricalCrossentropy,
        ),
    ];
    for (i, model) in models.iter().enumerate() {
        let err = model_fd_error(model, 3, i as u64);
        assert!(err < 1e-6, "model {i}: {err}");
    }
}

#[test]
fn dropout_only_in_training_with_a_seed_per_layer() {
    let model = with_loss(
        vec![
            dense(4, Activation::Relu),
            LayerKind::Dropout { rate: 0.5 },
            dense(4, Activation::Relu),
            LayerKind::Dropout { rate: 0.5 },
            dense(1, Activation::Linear),
        ],
        &[2],
        Loss::Mse,
    );
    let seeds = |g: &Graph| -> Vec<u64> {
        g.nodes
            .iter()
            .filter_map(|n| match n.op {
                Op::Dropout { seed, .. } => Some(seed),
                _ => None,
            })
            .collect()
    };
    let train = train_step(&model, 4).unwrap();
    let s = seeds(&train);
    assert_eq!(s.len(), 2);
    assert_ne!(s[0], s[1]);
    assert!(seeds(&predict(&model, 4).unwrap()).is_empty());
    let mut other = model.clone();
    other.train.as_mut().unwrap().seed = 1;
    let t = seeds(&train_step(&other, 4).unwrap());
    assert!(t[0] != s[0] && t[1] != s[1]);
}

#[test]
fn predict_matches_the_train_forward_pass_and_f64() {
    // No dropout: both graphs compute the same output from the same weights.
    let model = dense_model(
        3,
        &[(5, Activation::Gelu), (3, Activation::Softmax)],
        Loss::SparseCategoricalCrossentropy,
        ADAM,
    );
    let (train, pred) = (train_step(&model, 4).unwrap(), predict(&model, 4).unwrap());
    let (lt, lp) = (Layout::new(&train), Layout::new(&pred));
    let mut arena = vec![0.0f32; lt.len.max(lp.len)];
    initialize(&model, &train, &lt, &mut arena, 3);
    let mut rng = StdRng::seed_from_u64(4);
    let x: Vec<f32> = random(&mut rng, 12, -1.0, 1.0)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let y = [0.0f32, 1.0, 2.0, 1.0];
    let mut a64: Vec<f64> = arena.iter().map(|&v| f64::from(v)).collect();
    run(&pred, &lp, &mut arena, &x, &[], 0);
    let predicted = arena[lp.range(&pred, pred.output).unwrap()].to_vec();
    assert!(predicted
        .chunks(3)
        .all(|r| (r.iter().sum::<f32>() - 1.0).abs() < 1e-6));
    let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    let y64: Vec<f64> = y.iter().map(|&v| f64::from(v)).collect();
    run_in(&train, &lt, &mut a64, &x64, &y64, 0);
    let trained = &a64[lt.range(&train, train.output).unwrap()];
    for (p, t) in predicted.iter().zip(trained) {
        assert!((f64::from(*p) - t).abs() < 1e-6, "{p} {t}");
    }
}

#[test]
fn evaluate_measures_the_train_loss_without_changing_weights() {
    let kinds = vec![
        dense(6, Activation::Tanh),
        LayerKind::Dropout { rate: 0.5 },
        dense(3, Activation::Softmax),
    ];
    let model = with_loss(kinds, &[4], Loss::SparseCategoricalCrossentropy);
    let batch = 5;
    let eval = super::build::evaluate(&model, batch).unwrap();
    assert!(eval
        .nodes
        .iter()
        .all(|n| !matches!(n.op, Op::Update(_) | Op::Dropout { .. } | Op::LossGrad(_))));
    let layout = Layout::new(&eval);
    let mut arena = vec![0.0f32; layout.len];
    initialize(&model, &eval, &layout, &mut arena, 3);
    let mut rng = StdRng::seed_from_u64(4);
    let x: Vec<f32> = random(&mut rng, batch * 4, -1.0, 1.0)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let y: Vec<f32> = (0..batch).map(|i| (i % 3) as f32).collect();
    let before = arena.clone();
    run(&eval, &layout, &mut arena, &x, &y, 0);
    assert_eq!(
        before[..layout.persistent_len],
        arena[..layout.persistent_len]
    );
    // The same loss by hand from the predicted probabilities.
    let probs = &arena[layout.range(&eval, eval.output).unwrap()];
    let by_hand: f32 = -(0..batch).map(|i| probs[i * 3 + i % 3].ln()).sum::<f32>() / batch as f32;
    let measured = loss_of(&eval, &layout, &arena);
    assert!((measured - by_hand).abs() < 1e-5, "{measured} vs {by_hand}");
}

fn set_param(g: &Graph, layout: &Layout, arena: &mut [f32], name: &str, values: &[f32]) {
    let id = g.tensors.iter().position(|t| t.name == name).unwrap();
    let r = layout.range(g, id).unwrap();
    assert_eq!(r.len(), values.len(), "{name}");
    arena[r].copy_from_slice(values);
}

/// The output of a one-layer predict graph over one `[3, 3, 1]` image holding 1..9,
/// with every kernel weight 1 and the bias 0.
fn one_layer_on_1_to_9(kind: LayerKind) -> Vec<f32> {
    let model = sequential(&[3, 3, 1], vec![kind], Loss::Mse, ADAM);
    let g = predict(&model, 1).unwrap();
    let layout = Layout::new(&g);
    let mut arena = vec![0.0; layout.len];
    for (id, t) in g.tensors.iter().enumerate() {
        if t.name.ends_with(".kernel") {
            arena[layout.range(&g, id).unwrap()].fill(1.0);
        }
    }
    let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    run(&g, &layout, &mut arena, &x, &[], 0);
    arena[layout.range(&g, g.output).unwrap()].to_vec()
}

#[test]
fn conv_and_pools_by_hand_with_tf_padding() {
    use Padding::{Same, Valid};
    let conv = |size, strides, padding| conv2d(1, size, strides, padding, Activation::Linear);
    let pool = |max: bool, padding| {
        let (pool_size, strides) = ([2, 2], [2, 2]);
        if max {
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
        }
    };
    // 1 2 3 / 4 5 6 / 7 8 9. Same padding with a 2x2 window pads one row and column
    // after, none before.
    let cases: [(LayerKind, &[f32]); 8] = [
        (conv([2, 2], [1, 1], Valid), &[12.0, 16.0, 24.0, 28.0]),
        (
            conv([2, 2], [1, 1], Same),
            &[12.0, 16.0, 9.0, 24.0, 28.0, 15.0, 15.0, 17.0, 9.0],
        ),
        // 3x3 same, stride 2: pad one before and one after, windows start at -1 and
        // 1, so each sees a 2x2 corner of the image.
        (conv([3, 3], [2, 2], Same), &[12.0, 16.0, 24.0, 28.0]),
        (conv([3, 3], [2, 2], Valid), &[45.0]),
        (pool(true, Valid), &[5.0]),
        (pool(true, Same), &[5.0, 6.0, 8.0, 9.0]),
        (pool(false, Valid), &[3.0]),
        // Averages over the elements inside the image only.
        (pool(false, Same), &[3.0, 4.5, 7.5, 9.0]),
    ];
    for (kind, want) in cases {
        let what = format!("{kind:?}");
        assert_eq!(one_layer_on_1_to_9(kind), want, "{what}");
    }
}

#[test]
fn conv_models_gradients_match_finite_differences() {
    use Activation::*;
    use Padding::{Same, Valid};
    let maxpool = |p, s, padding| LayerKind::MaxPool2d {
        pool_size: p,
        strides: s,
        padding,
    };
    let avgpool = |p, s, padding| LayerKind::AvgPool2d {
        pool_size: p,
        strides: s,
        padding,
    };
    let bn = LayerKind::BatchNorm {
        momentum: 0.9,
        epsilon: 1e-3,
    };
    let models = [
        with_loss(
            vec![
                conv2d(3, [3, 2], [2, 1], Same, Tanh),
                maxpool([2, 2], [2, 2], Same),
                LayerKind::Flatten,
                dense(3, Softmax),
            ],
            &[5, 4, 2],
            Loss::SparseCategoricalCrossentropy,
        ),
        with_loss(
            vec![
                conv2d(2, [2, 2], [1, 1], Valid, Linear),
                bn.clone(),
                act(Relu),
                avgpool([2, 3], [1, 2], Same),
                conv2d(2, [1, 1], [1, 1], Valid, Sigmoid),
                LayerKind::Flatten,
                dense(1, Linear),
            ],
            &[4, 5, 1],
            Loss::Mse,
        ),
        with_loss(
            vec![LayerKind::Flatten, dense(4, Tanh), bn, dense(2, Sigmoid)],
            &[2, 3],
            Loss::BinaryCrossentropy,
        ),
        // Layer normalization over a vector, and over the channels of a sequence,
        // with and without its parameters.
        with_loss(
            vec![
                dense(5, Tanh),
                LayerKind::LayerNorm {
                    epsilon: 1e-3,
                    center: true,
                    scale: true,
                },
                dense(3, Softmax),
            ],
            &[3],
            Loss::SparseCategoricalCrossentropy,
        ),
        with_loss(
            vec![
                dense(6, Linear),
                LayerKind::Reshape { shape: vec![2, 3] },
                LayerKind::LayerNorm {
                    epsilon: 0.01,
                    center: false,
                    scale: true,
                },
                LayerKind::Flatten,
                dense(2, Linear),
            ],
            &[3],
            Loss::Mse,
        ),
        with_loss(
            vec![
                dense(7, Elu { alpha: 1.0 }),
                LayerKind::LayerNorm {
                    epsilon: 1e-3,
                    center: true,
                    scale: false,
                },
                dense(1, Sigmoid),
            ],
            &[2],
            Loss::BinaryCrossentropy,
        ),
        // Sequences: odd lengths, strides that do not divide, `same` padding.
        with_loss(
            vec![
                conv1d(3, 3, 2, Same, Tanh),
                LayerKind::Pool1d {
                    max: true,
                    pool_size: 2,
                    strides: 1,
                    padding: Same,
                },
                conv1d(2, 2, 1, Valid, Sigmoid),
                LayerKind::Flatten,
                dense(3, Softmax),
            ],
            &[7, 2],
            Loss::SparseCategoricalCrossentropy,
        ),
        with_loss(
            vec![
                conv1d(4, 2, 3, Valid, Elu { alpha: 1.0 }),
                LayerKind::Pool1d {
                    max: false,
                    pool_size: 3,
                    strides: 2,
                    padding: Same,
                },
                LayerKind::GlobalPool { max: true, dims: 1 },
                dense(1, Linear),
            ],
            &[9, 3],
            Loss::Mse,
        ),
        // Global pooling over odd images and sequences.
        with_loss(
            vec![
                conv2d(3, [2, 2], [2, 1], Same, Tanh),
                LayerKind::GlobalPool { max: true, dims: 2 },
                dense(2, Softmax),
            ],
            &[5, 3, 2],
            Loss::CategoricalCrossentropy,
        ),
        with_loss(
            vec![
                conv2d(3, [3, 1], [1, 1], Valid, Elu { alpha: 1.0 }),
                LayerKind::GlobalPool {
                    max: false,
                    dims: 2,
                },
                dense(1, Linear),
            ],
            &[5, 3, 2],
            Loss::Mse,
        ),
        with_loss(
            vec![
                dense(6, Tanh),
                LayerKind::Reshape { shape: vec![3, 2] },
                LayerKind::GlobalPool { max: true, dims: 1 },
                dense(3, Sigmoid),
            ],
            &[4],
            Loss::BinaryCrossentropy,
        ),
        with_loss(
            vec![
                dense(10, Tanh),
                LayerKind::Reshape { shape: vec![5, 2] },
                LayerKind::GlobalPool {
                    max: false,
                    dims: 1,
                },
                dense(2, Linear),
            ],
            &[3],
            Loss::Huber,
        ),
    ];
    for (i, model) in models.iter().enumerate() {
        let err = model_fd_error(model, 3, i as u64);
        assert!(err < 1e-6, "model {i}: {err}");
    }
}

#[test]
fn embedding_gradients_match_finite_differences() {
    use Activation::*;
    let embedding = LayerKind::Embedding {
        input_dim: 5,
        output_dim: 3,
        embeddings_initializer: crate::sema::model::Initializer::Uniform,
    };
    let models = [
        with_loss(
            vec![
                embedding.clone(),
                conv1d(4, 3, 2, Padding::Same, Tanh),
                LayerKind::GlobalPool {
                    max: false,
                    dims: 1,
                },
                dense(3, Softmax),
            ],
            &[7],
            Loss::SparseCategoricalCrossentropy,
        ),
        with_loss(
            vec![embedding, LayerKind::Flatten, dense(2, Linear)],
            &[4],
            Loss::Mse,
        ),
    ];
    for (i, model) in models.iter().enumerate() {
        let g = train_step(model, 3).unwrap();
        let (fwd, pairs) = without_updates(&g);
        let layout = Layout::new(&fwd);
        let mut rng = StdRng::seed_from_u64(i as u64);
        let mut arena = vec![0.0f64; layout.len];
        for &(p, _) in &pairs {
            for v in &mut arena[layout.range(&fwd, p).unwrap()] {
                *v = rng.gen_range(-0.8..0.8);
            }
        }
        // Token ids, some repeated within a sample and across the batch.
        let x: Vec<f64> = (0..g.tensors[g.input].len())
            .map(|_| f64::from(rng.gen_range(0..5u8)))
            .collect();
        let y = targets(&mut rng, &g, model.train.as_ref().unwrap().loss);
        let err = gradient_error(&fwd, &pairs, &arena, &x, &y, 3);
        assert!(err < 1e-6, "model {i}: {err}");
    }
}

fn act(a: Activation) -> LayerKind {
    LayerKind::Activation(a)
}

#[test]
fn batchnorm_trains_on_batch_statistics_and_infers_with_moving_ones() {
    let (momentum, epsilon) = (0.9f32, 1e-3f32);
    let model = with_loss(
        vec![
            LayerKind::BatchNorm { momentum, epsilon },
            dense(1, Activation::Linear),
        ],
        &[2],
        Loss::Mse,
    );
    let batch = 4;
    let train = train_step(&model, batch).unwrap();
    let eval = super::build::evaluate(&model, batch).unwrap();
    let (lt, le) = (Layout::new(&train), Layout::new(&eval));
    let mut arena = vec![0.0f32; lt.len.max(le.len)];
    initialize(&model, &train, &lt, &mut arena, 1);
    set_param(&train, &lt, &mut arena, "batchnorm.gamma", &[2.0, 0.5]);
    set_param(&train, &lt, &mut arena, "batchnorm.beta", &[1.0, -1.0]);
    set_param(
        &train,
        &lt,
        &mut arena,
        "batchnorm.moving_mean",
        &[0.5, -0.5],
    );
    set_param(
        &train,
        &lt,
        &mut arena,
        "batchnorm.moving_variance",
        &[2.0, 3.0],
    );
    let x = [1.0f32, 10.0, 2.0, 20.0, 4.0, 30.0, 5.0, 60.0];
    let y = [0.0f32; 4];
    let column = |c: usize| -> Vec<f64> { (0..batch).map(|r| x[r * 2 + c] as f64).collect() };
    let bn_out = |g: &Graph, l: &Layout, a: &[f32]| -> Vec<f32> {
        let id = g
            .tensors
            .iter()
            .position(|t| t.name == "batchnorm.out")
            .unwrap();
        a[l.range(g, id).unwrap()].to_vec()
    };

    // Evaluate: the moving statistics, weights untouched.
    let mut e = arena.clone();
    run(&eval, &le, &mut e, &x, &y, 0);
    let out = bn_out(&eval, &le, &e);
    let (mm, mv, gamma, beta) = ([0.5, -0.5], [2.0, 3.0], [2.0, 0.5], [1.0, -1.0]);
    for (i, &o) in out.iter().enumerate() {
        let c = i % 2;
        let want = gamma[c] * (x[i] as f64 - mm[c]) / (mv[c] + epsilon as f64).sqrt() + beta[c];
        assert!((o as f64 - want).abs() < 1e-5, "{o} vs {want}");
    }

    // Train: the batch statistics, then the moving ones move towards them.
    run(&train, &lt, &mut arena, &x, &y, 0);
    let out = bn_out(&train, &lt, &arena);
    for c in 0..2 {
        let col = column(c);
        let mean = col.iter().sum::<f64>() / batch as f64;
        let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / batch as f64;
        for r in 0..batch {
            let want = gamma[c] * (col[r] - mean) / (var + epsilon as f64).sqrt() + beta[c];
            let got = out[r * 2 + c] as f64;
            assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        }
        let m = momentum as f64;
        let id = |n: &str| train.tensors.iter().position(|t| t.name == n).unwrap();
        let new_mean = arena[lt.range(&train, id("batchnorm.moving_mean")).unwrap()][c] as f64;
        let new_var = arena[lt.range(&train, id("batchnorm.moving_variance")).unwrap()][c] as f64;
        let want_mean = mm[c] * m + mean * (1.0 - m);
        let want_var = mv[c] * m + var * (1.0 - m);
        assert!(
            (new_mean - want_mean).abs() < 1e-5,
            "{new_mean} vs {want_mean}"
        );
        assert!((new_var - want_var).abs() < 1e-4, "{new_var} vs {want_var}");
        // gamma and beta were trained.
        let g_now = arena[lt.range(&train, id("batchnorm.gamma")).unwrap()][c] as f64;
        assert_ne!(g_now, gamma[c]);
    }
}

/// `kind` (dense, conv2d or conv1d) with a kernel regularizer.
fn regularized(mut kind: LayerKind, l1: f32, l2: f32) -> LayerKind {
    if let LayerKind::Dense {
        kernel_regularizer, ..
    }
    | LayerKind::Conv2d {
        kernel_regularizer, ..
    }
    | LayerKind::Conv1d {
        kernel_regularizer, ..
    } = &mut kind
    {
        *kernel_regularizer = Some(Regularizer { l1, l2 });
    }
    kind
}

#[test]
fn graph_models_with_regularizers_match_finite_differences() {
    use Activation::*;
    use Source::{Input, Layer as L};
    let merge = |m| LayerKind::Merge(m);
    let models = [
        // Two branches of the input, added, concatenated with one of them (fan-out
        // into three readers), every kernel penalized differently.
        graph(
            &[3],
            vec![
                (regularized(dense(4, Tanh), 0.0, 0.02), vec![Input]),
                (regularized(dense(4, Relu), 0.05, 0.0), vec![Input]),
                (merge(Merge::Add), vec![L(0), L(1)]),
                (merge(Merge::Concatenate { axis: 0 }), vec![L(2), L(0)]),
                (merge(Merge::Maximum), vec![L(0), L(1), L(0)]),
                (merge(Merge::Concatenate { axis: 0 }), vec![L(3), L(4)]),
                (regularized(dense(3, Softmax), 0.01, 0.03), vec![L(5)]),
            ],
            Loss::SparseCategoricalCrossentropy,
            ADAM,
        ),
        // subtract, multiply, average and minimum into a sigmoid.
        graph(
            &[4],
            vec![
                (dense(3, Sigmoid), vec![Input]),
                (dense(3, Tanh), vec![Input]),
                (merge(Merge::Subtract), vec![L(0), L(1)]),
                (merge(Merge::Multiply), vec![L(2), L(1), L(0)]),
                (merge(Merge::Average), vec![L(3), L(0), L(2)]),
                (merge(Merge::Minimum), vec![L(4), L(1)]),
                (regularized(dense(1, Sigmoid), 0.0, 0.1), vec![L(5)]),
            ],
            Loss::BinaryCrossentropy,
            ADAM,
        ),
        // A residual block of `same` convolutions, channels concatenated.
        graph(
            &[4, 4, 2],
            vec![
                (
                    regularized(conv2d(2, [3, 3], [1, 1], Padding::Same, Tanh), 0.0, 0.05),
                    vec![Input],
                ),
                (merge(Merge::Add), vec![L(0), Input]),
                (merge(Merge::Concatenate { axis: 2 }), vec![L(1), Input]),
                (LayerKind::Flatten, vec![L(2)]),
                (dense(2, Linear), vec![L(3)]),
            ],
            Loss::Mse,
            ADAM,
        ),
    ];
    for (i, model) in models.iter().enumerate() {
        let err = model_fd_error(model, 3, 40 + i as u64);
        assert!(err < 1e-6, "model {i}: {err}");
    }
}

#[test]
fn a_conv1d_kernel_regularizer_is_a_penalty_on_its_kernel() {
    let conv = conv1d(2, 3, 1, Padding::Valid, Activation::Linear);
    let model = graph(
        &[6, 2],
        vec![
            (regularized(conv, 0.0, 0.01), vec![Source::Input]),
            (LayerKind::Flatten, vec![Source::Layer(0)]),
        ],
        Loss::Mse,
        ADAM,
    );
    let g = train_step(&model, 2).unwrap();
    let penalty = g
        .nodes
        .iter()
        .find(|n| matches!(n.op, Op::Penalty { .. }))
        .expect("a penalty node");
    assert_eq!(g.tensors[penalty.inputs[0]].name, "conv1d.kernel");
}

#[test]
fn a_regularizer_adds_keras_penalty_to_the_reported_loss() {
    // One dense kernel with l1 and l2: the loss is the data loss plus
    // 0.01 * sum|w| + 0.02 * sum w^2, computed here from the arena's weights.
    let model = graph(
        &[3],
        vec![(
            regularized(dense(2, Activation::Linear), 0.01, 0.02),
            vec![Source::Input],
        )],
        Loss::Mse,
        ADAM,
    );
    let g = evaluate(&model, 2).unwrap();
    let layout = Layout::new(&g);
    let mut rng = StdRng::seed_from_u64(5);
    let mut arena: Vec<f64> = random(&mut rng, layout.len, -0.9, 0.9);
    let x = random(&mut rng, 6, -1.0, 1.0);
    let y = random(&mut rng, 4, -1.0, 1.0);
    run_in(&g, &layout, &mut arena, &x, &y, 0);
    let kernel = g
        .tensors
        .iter()
        .position(|t| t.name == "dense.kernel")
        .unwrap();
    let bias = g
        .tensors
        .iter()
        .position(|t| t.name == "dense.bias")
        .unwrap();
    let w = &arena[layout.range(&g, kernel).unwrap()];
    let b = &arena[layout.range(&g, bias).unwrap()];
    let mut data = 0.0;
    for r in 0..2 {
        for j in 0..2 {
            let p: f64 = (0..3).map(|i| x[r * 3 + i] * w[i * 2 + j]).sum::<f64>() + b[j];
            data += (p - y[r * 2 + j]).powi(2) / 4.0;
        }
    }
    // The factors as the model holds them, in f32.
    let (l1, l2) = (f64::from(0.01f32), f64::from(0.02f32));
    let penalty =
        l1 * w.iter().map(|v| v.abs()).sum::<f64>() + l2 * w.iter().map(|v| v * v).sum::<f64>();
    let loss = arena[layout.range(&g, g.loss.unwrap()).unwrap()][0];
    assert!(
        (loss - (data + penalty)).abs() < 1e-12,
        "{loss} vs {data} + {penalty}"
    );
    assert!(penalty > 0.01, "{penalty}");
}
