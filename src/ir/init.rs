//! Parameter initialization with Keras's formulas, from one seeded random stream
//! (parameters in graph order, elements in row-major order), and the list of tensors
//! a checkpoint holds.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::graph::{Graph, Role, TensorId};
use super::layout::Layout;
use crate::sema::model::{ClassWeight, Initializer, Model};

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
        Initializer::Uniform => uniform(0.05, rng, out),
    }
}

/// Initializes every parameter of `graph` in `arena` with its layer's initializer
/// (deterministic for a `seed`), zeroes the optimizer slots and sets the learning
/// rate to the optimizer's.
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
            Role::OptimizerSlot if Some(id) == graph.class_weights => {
                // `balanced` weights come from the data: the runtime sets them.
                let given = match model.train.as_ref().and_then(|t| t.class_weight.as_ref()) {
                    Some(ClassWeight::Given(w)) => w.as_slice(),
                    _ => &[],
                };
                for (i, v) in arena[range].iter_mut().enumerate() {
                    *v = given.get(i).copied().unwrap_or(1.0);
                }
            }
            Role::OptimizerSlot if Some(id) == graph.learning_rate => {
                let lr = model.train.as_ref().map(|t| t.optimizer.learning_rate());
                arena[range].fill(lr.unwrap_or(0.0));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::build::train_step;
    use crate::ir::testing::{dense, sequential};
    use crate::sema::model::{Activation, LayerKind, Loss, Optimizer};

    fn stats(v: &[f32]) -> (f64, f64, f64) {
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = v
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n;
        let max = v.iter().map(|&x| f64::from(x).abs()).fold(0.0, f64::max);
        (mean, var.sqrt(), max)
    }

    #[test]
    fn fans_follow_keras() {
        assert_eq!(fans(&[]), (1.0, 1.0));
        assert_eq!(fans(&[7]), (7.0, 7.0));
        assert_eq!(fans(&[3, 5]), (3.0, 5.0));
        // A 3x3 conv kernel from 4 to 8 channels: receptive field 9.
        assert_eq!(fans(&[3, 3, 4, 8]), (36.0, 72.0));
    }

    #[test]
    fn initializer_distributions() {
        let (fi, fo) = (200usize, 300usize);
        let shape = [fi, fo];
        let mut out = vec![0.0f32; fi * fo];
        let glorot = (2.0 / (fi + fo) as f64).sqrt();
        let he = (2.0 / fi as f64).sqrt();
        let lecun = (1.0 / fi as f64).sqrt();
        // (initializer, bound on |x|, expected standard deviation).
        let uniform_g = (6.0 / (fi + fo) as f64).sqrt();
        let uniform_h = (6.0 / fi as f64).sqrt();
        let cases = [
            (
                Initializer::GlorotUniform,
                uniform_g,
                uniform_g / 3f64.sqrt(),
            ),
            (Initializer::HeUniform, uniform_h, uniform_h / 3f64.sqrt()),
            // Truncated at two (rescaled) standard deviations; the rescaling restores
            // the intended variance.
            (
                Initializer::GlorotNormal,
                2.0 * glorot / TRUNCATION_STDDEV,
                glorot,
            ),
            (Initializer::HeNormal, 2.0 * he / TRUNCATION_STDDEV, he),
            (
                Initializer::LecunNormal,
                2.0 * lecun / TRUNCATION_STDDEV,
                lecun,
            ),
        ];
        for (init, bound, std) in cases {
            let mut rng = StdRng::seed_from_u64(1);
            sample(init, &shape, &mut rng, &mut out);
            let (mean, sd, max) = stats(&out);
            assert!(max <= bound * (1.0 + 1e-6), "{init:?}: {max} > {bound}");
            assert!(max > bound * 0.95, "{init:?}: range not used, {max}");
            assert!(mean.abs() < std * 0.02, "{init:?}: mean {mean}");
            assert!((sd / std - 1.0).abs() < 0.02, "{init:?}: sd {sd} vs {std}");
        }
        let mut rng = StdRng::seed_from_u64(1);
        sample(Initializer::Ones, &shape, &mut rng, &mut out);
        assert!(out.iter().all(|&v| v == 1.0));
        sample(Initializer::Zeros, &shape, &mut rng, &mut out);
        assert!(out.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn initialize_is_seeded_and_zeroes_slots() {
        let mut model = sequential(
            &[3],
            vec![
                dense(4, Activation::Relu),
                LayerKind::Dropout { rate: 0.1 },
                dense(2, Activation::Linear),
            ],
            Loss::Mse,
            Optimizer::RmsProp {
                learning_rate: 0.001,
                rho: 0.9,
                epsilon: 1e-7,
            },
        );
        if let LayerKind::Dense {
            bias_initializer, ..
        } = &mut model.layers[2].kind
        {
            *bias_initializer = Initializer::Ones;
        }
        let g = train_step(&model, 2).unwrap();
        let layout = Layout::new(&g);
        const SENTINEL: f32 = 12345.0;
        let fill = |seed| {
            let mut arena = vec![SENTINEL; layout.len];
            initialize(&model, &g, &layout, &mut arena, seed);
            arena[..layout.persistent_len].to_vec()
        };
        let (a, b, c) = (fill(7), fill(7), fill(8));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let names: Vec<String> = params(&g).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "dense.kernel",
                "dense.bias",
                "dense_1.kernel",
                "dense_1.bias"
            ]
        );
        let at = |name: &str| {
            let id = g.tensors.iter().position(|t| t.name == name).unwrap();
            a[layout.range(&g, id).unwrap()].to_vec()
        };
        assert!(at("dense.bias").iter().all(|&v| v == 0.0));
        assert!(at("dense_1.bias").iter().all(|&v| v == 1.0));
        let kernel = at("dense.kernel");
        let limit = (6.0f32 / 7.0).sqrt();
        assert!(kernel.iter().all(|&v| v.abs() <= limit) && kernel.iter().any(|&v| v != 0.0));
        assert_eq!(at("optimizer.learning_rate"), [0.001]);
        for (id, t) in g.tensors.iter().enumerate() {
            if t.role == Role::OptimizerSlot && Some(id) != g.learning_rate {
                assert!(
                    a[layout.range(&g, id).unwrap()].iter().all(|&v| v == 0.0),
                    "{}",
                    t.name
                );
            }
        }
        // Every persistent element was written.
        for (id, t) in g.tensors.iter().enumerate() {
            if t.role.is_persistent() {
                assert!(
                    !a[layout.range(&g, id).unwrap()].contains(&SENTINEL),
                    "{}",
                    t.name
                );
            }
        }
    }
}
