//! `cargo bench --bench kernels`: nnc's compiled train steps (the whole native
//! function, no data loading) and the matrix products inside them, on the shapes of
//! the examples. Timing lives here, never in tests.

use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nnc::codegen::{compile, set_threads, Compiled};
use nnc::ir::graph::{Graph, Node, Op, Origin, Role, Tensor};
use nnc::ir::init::initialize;
use nnc::ir::layout::Layout;
use nnc::sema::model::Model;
use nnc::{check_source, CheckOptions};

const SEED: &str = "model seed { input features: [3]
    dense(5, activation = relu)
    dense(1, activation = sigmoid) }";
const MLP: &str = "model mlp { input image: [784]
    dense(128, activation = relu)
    dense(10, activation = softmax) }";
const CNN: &str = "model cnn { input image: [28, 28, 1]
    conv2d(32, kernel_size = 3, activation = relu)
    maxpool2d(pool_size = 2)
    conv2d(64, kernel_size = 3, activation = relu)
    maxpool2d(pool_size = 2)
    flatten
    dropout(0.5)
    dense(10, activation = softmax) }";

/// A checked model from `source` plus a train block with `loss` and Adam.
fn model(source: &str, loss: &str) -> Model {
    let text = format!(
        "{source}\ntrain {{ data = csv(\"unused.csv\", target = \"t\")\n loss = {loss}\n \
         optimizer = adam\n epochs = 1\n batch_size = 32 }}"
    );
    check_source(
        "bench.nn",
        text.as_bytes(),
        Path::new("."),
        &CheckOptions::default(),
    )
    .model
    .expect("the bench models check")
}

struct Step {
    compiled: Compiled,
    arena: Vec<f32>,
    x: Vec<f32>,
    y: Vec<f32>,
}

fn step(model: &Model, batch: usize, classes: usize) -> Step {
    let graph = nnc::ir::train_step(model, batch).expect("graph");
    let layout = Layout::planned(&graph);
    let compiled = compile(&graph, &layout).expect("compiles");
    let mut arena = vec![0.0; layout.len];
    initialize(model, &graph, &layout, &mut arena, 1);
    let x_len = graph.tensors[graph.input].len();
    let x = (0..x_len).map(|i| (i % 17) as f32 / 17.0).collect();
    let y_len = graph.target.map_or(0, |t| graph.tensors[t].len());
    let y = (0..y_len).map(|i| (i % classes) as f32).collect();
    Step {
        compiled,
        arena,
        x,
        y,
    }
}

fn train_steps(c: &mut Criterion) {
    set_threads(1);
    let mut group = c.benchmark_group("train_step");
    let cases = [
        ("seed_b32", model(SEED, "binary_crossentropy"), 32, 2),
        (
            "mlp_b128",
            model(MLP, "sparse_categorical_crossentropy"),
            128,
            10,
        ),
        (
            "cnn_b128",
            model(CNN, "sparse_categorical_crossentropy"),
            128,
            10,
        ),
    ];
    for (name, m, batch, classes) in &cases {
        let mut s = step(m, *batch, *classes);
        let mut t = 0u64;
        group.throughput(Throughput::Elements(*batch as u64));
        if name.starts_with("cnn") {
            group.sample_size(10);
        }
        group.bench_function(*name, |b| {
            b.iter(|| {
                s.compiled.run(&mut s.arena, &s.x, &s.y, t).expect("sizes");
                t += 1;
            })
        });
    }
    group.finish();
}

/// One `MatMul` node `[m, k] x [k, n]` (B transposed when `tb`) as its own function,
/// with an arena where `a` is nonzero at about `density` of its places.
fn matmul(m: usize, k: usize, n: usize, tb: bool, density: f64) -> (Compiled, Vec<f32>) {
    let t = |name: &str, shape: Vec<usize>, role: Role| Tensor {
        name: name.into(),
        shape,
        role,
        origin: Origin::Data,
    };
    let param = |name: &str| Role::Param {
        layer: "bench".into(),
        name: if name == "a" { "kernel" } else { "bias" },
        trainable: true,
    };
    let g = Graph {
        batch: m,
        tensors: vec![
            t("x", vec![1], Role::Input),
            t("a", vec![m, k], param("a")),
            t("b", if tb { vec![n, k] } else { vec![k, n] }, param("b")),
            t("c", vec![m, n], Role::Temp),
        ],
        nodes: vec![Node {
            op: Op::MatMul {
                trans_a: false,
                trans_b: tb,
            },
            inputs: vec![1, 2],
            output: 3,
        }],
        input: 0,
        target: None,
        output: 3,
        loss: None,
        origin: Origin::Data,
    };
    let layout = Layout::new(&g);
    let mut arena: Vec<f32> = (0..layout.len)
        .map(|i| (i % 13) as f32 * 0.1 + 0.1)
        .collect();
    let a = layout.range(&g, 1).expect("a is in the arena");
    for (i, v) in arena[a].iter_mut().enumerate() {
        // A fixed scatter of zeros (Knuth's multiplicative hash of the index).
        if (i as u64).wrapping_mul(2_654_435_761) % 1000 >= (density * 1000.0) as u64 {
            *v = 0.0;
        }
    }
    (compile(&g, &layout).expect("compiles"), arena)
}

fn matmuls(c: &mut Criterion) {
    let mut group = c.benchmark_group("matmul");
    // The MNIST MLP's products (dense, and as sparse as MNIST pixels: the sparse-
    // operand path), the seed network's (inline) and a CNN im2col product.
    let shapes = [
        (128, 784, 128, false, 1.0),
        (128, 784, 128, false, 0.18),
        (784, 128, 128, false, 1.0),
        (128, 128, 10, true, 1.0),
        (32, 3, 5, false, 1.0),
        (32, 5, 1, false, 1.0),
        (128 * 11 * 11, 288, 64, false, 1.0),
    ];
    for threads in [1, 2] {
        set_threads(threads);
        for &(m, k, n, tb, density) in &shapes {
            let (f, mut arena) = matmul(m, k, n, tb, density);
            group.throughput(Throughput::Elements((2 * m * k * n) as u64));
            let name = format!("{m}x{k}x{n}{}", if density < 1.0 { "-sparse" } else { "" });
            let id = BenchmarkId::new(name, format!("{threads}t"));
            group.bench_function(id, |b| {
                b.iter(|| f.run(&mut arena, &[0.0], &[], 0).expect("sizes"))
            });
        }
    }
    set_threads(1);
    group.finish();
}

criterion_group!(benches, train_steps, matmuls);
criterion_main!(benches);
