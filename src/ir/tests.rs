//! Whole-pipeline tests of the IR: models built, initialized and trained by the
//! interpreter; gradients against finite differences in f64.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::build::train_step;
use super::graph::Graph;
use super::init::initialize;
use super::interp::{run, run_in};
use super::layout::Layout;
use super::testing::dense_model;
use crate::sema::model::{Activation, Loss, Model, Optimizer};

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
