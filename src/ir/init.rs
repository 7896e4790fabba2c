//! Parameter initialization with Keras's formulas, from one seeded random stream
//! (parameters in graph order, elements in row-major order), and the list of tensors
//! a checkpoint holds.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::graph::{Graph, Role, TensorId};
use super::layout::Layout;
use crate::sema::model::{Initializer, Model};

/// Keras divides truncated-normal standard deviations by this: the standard deviation
/// of a unit normal truncated to two standard deviations.
const TRUNCATION_STDDEV: f64 = 0.879_625_661_034_239_8;

/// `(fan_in, fan_out)` as Keras's `compute_fans` counts them (convolution kernels
/// `[.., in, out]` multiply both by the receptive field).
pub fn fans(shape: &[usize]) -> (f64, f64) {
    match shape {
        [] => (1.0, 1.0),
        [n] => (*n as f64, *n as f64),
        [fi, fo] => (*fi as f64, *fo as f64),
        [rest @ .., fi, fo] => {
            let field: usize = rest.iter().product();
            ((fi * field) as f64, (fo * field) as f64)
        }
    }
}

/// A sample of the unit normal (Box-Muller; `rand` 0.8 has no normal distribution).
fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.gen::<f64>(); // (0, 1]: the log stays finite
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// A normal sample redrawn until it lies within two standard deviations.
fn truncated_normal(rng: &mut StdRng, stddev: f64) -> f64 {
    loop {
        let z = normal(rng);
        if z.abs() <= 2.0 {
            return z * stddev;
        }
    }
}

/// Fills a tensor of `shape` with `init`'s values.
pub fn sample(init: Initializer, shape: &[usize], rng: &mut StdRng, out: &mut [f32]) {
    let (fan_in, fan_out) = fans(shape);
    let uniform = |limit: f64, rng: &mut StdRng, out: &mut [f32]| {
        for v in out.iter_mut() {
            *v = rng.gen_range(-limit..limit) as f32;
        }
    };
    let truncated = |stddev: f64, rng: &mut StdRng, out: &mut [f32]| {
        for v in out.iter_mut() {
            *v = truncated_normal(rng, stddev / TRUNCATION_STDDEV) as f32;
        }
    };
    match init {
        Initializer::GlorotUniform => uniform((6.0 / (fan_in + fan_out)).sqrt(), rng, out),
        Initializer::GlorotNormal => truncated((2.0 / (fan_in + fan_out)).sqrt(), rng, out),
        Initializer::HeUniform => uniform((6.0 / fan_in).sqrt(), rng, out),
        Initializer::HeNormal => truncated((2.0 / fan_in).sqrt(), rng, out),
        Initializer::LecunNormal => truncated((1.0 / fan_in).sqrt(), rng, out),
        Initializer::Zeros => out.fill(0.0),
        Initializer::Ones => out.fill(1.0),
    }
}

/// Initializes every parameter of `graph` in `arena` with its layer's initializer
/// (deterministic for a `seed`) and zeroes the optimizer slots.
pub fn initialize(model: &Model, graph: &Graph, layout: &Layout, arena: &mut [f32], seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    for (id, t) in graph.tensors.iter().enumerate() {
        let Some(range) = layout.range(graph, id) else {
            continue;
        };
        match &t.role {
            Role::Param { layer, name, .. } => {
                let init = model
                    .layers
                    .iter()
                    .find(|l| &l.name == layer)
                    .and_then(|l| l.params().into_iter().find(|p| p.name == *name))
                    .map_or(Initializer::Zeros, |p| p.initializer);
                sample(init, &t.shape, &mut rng, &mut arena[range]);
            }
            Role::OptimizerSlot => arena[range].fill(0.0),
            Role::Input | Role::Target | Role::Temp => {}
        }
    }
}

/// The checkpoint tensors: every parameter as `(layer.param, tensor)`, in model order.
pub fn params(graph: &Graph) -> Vec<(String, TensorId)> {
    graph
        .tensors
        .iter()
        .enumerate()
        .filter_map(|(id, t)| match &t.role {
            Role::Param { layer, name, .. } => Some((format!("{layer}.{name}"), id)),
            _ => None,
        })
        .collect()
}
