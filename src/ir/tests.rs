//! Whole-pipeline tests of the IR: models built, initialized and trained by the
//! interpreter; gradients against finite differences in f64.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::build::{predict, train_step};
use super::graph::{Graph, Op};
use super::init::initialize;
use super::interp::{run, run_in};
use super::layout::Layout;
use super::testing::{dense, dense_model, gradient_error, sequential, without_updates};
use crate::sema::model::{Activation, LayerKind, Loss, Model, Optimizer};

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
        Loss::CategoricalCrossentropy => (0..n)
            .map(|i| f64::from(u8::from(i % classes == (i / classes) % classes)))
            .collect(),
        Loss::BinaryCrossentropy => random(rng, n, 0.0, 1.0),
        Loss::Mse | Loss::Mae | Loss::Huber => random(rng, n, -1.5, 1.5),
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
