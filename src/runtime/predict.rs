//! A trained model run forward: `nnc predict` (outputs of new samples) and
//! `nnc evaluate` (loss and metrics of labelled samples).
//!
//! Both compile inference graphs (dropout off, batchnorm's moving statistics, no
//! gradients) for a full batch and, when the rows do not divide evenly, for the last
//! one; the two share one arena whose persistent prefix holds the weights.

use crate::codegen::Compiled;
use crate::ir::graph::Graph;
use crate::ir::layout::Layout;
use crate::ir::{build, init, CompileError};
use crate::runtime::data::{self, Dataset};
use crate::runtime::error::RunError;
use crate::runtime::metrics::Accumulator;
use crate::runtime::trained::Trained;
use crate::sema::model::{Model, TrainConfig};

/// Samples per `predict` call: small enough that a convnet's im2col buffer stays in
/// cache (the MNIST convnet's 10,000 test images took 3.0 s at 64 against 4.1 s at
/// 256, the same minutes on a loaded 2-core VM), large enough for the products to
/// run at full speed (the MLP takes the same time at 64 and 256).
pub const PREDICT_BATCH: usize = 64;

/// One compiled inference graph.
struct Program {
    graph: Graph,
    layout: Layout,
    jit: Compiled,
}

/// The compiled graphs of a full and a last batch, with the arena they share.
struct Runner {
    full: Program,
    last: Option<Program>,
    arena: Vec<f32>,
}

impl Runner {
    /// Compiles `make(batch)` for `batch` and for the remainder of `rows`, and loads
    /// the weights of `trained` into the arena.
    fn new(
        rows: usize,
        batch: usize,
        trained: &Trained,
        make: impl Fn(usize) -> Result<Graph, CompileError>,
    ) -> Result<Runner, RunError> {
        let batch = batch.min(rows).max(1);
        // A checked model always builds and compiles: a failure here is a bug.
        let program = |b: usize| -> Result<Program, RunError> {
            let graph = make(b)?;
            let layout = Layout::planned(&graph);
            let jit = crate::codegen::compile(&graph, &layout)?;
            Ok(Program { graph, layout, jit })
        };
        let full = program(batch)?;
        let last = match rows % batch {
            0 => None,
            r => Some(program(r)?),
        };
        let len = full
            .layout
            .len
            .max(last.as_ref().map_or(0, |p| p.layout.len));
        let mut arena = vec![0f32; len];
        for (name, id) in init::params(&full.graph) {
            let values = trained
                .tensor(&name)
                .ok_or_else(|| format!("the weights have no tensor `{name}`"))?;
            if let Some(range) = full.layout.range(&full.graph, id) {
                arena[range].copy_from_slice(values);
            }
        }
        Ok(Runner { full, last, arena })
    }

    /// The program for `n` rows: the full batch's, or the last one's.
    fn program(&self, n: usize) -> &Program {
        match &self.last {
            Some(p) if p.graph.batch == n => p,
            _ => &self.full,
        }
    }

    /// Runs the program for `n` rows on `x` (and targets `y`).
    fn run(&mut self, n: usize, x: &[f32], y: &[f32]) -> Result<(), RunError> {
        let program = match &self.last {
            Some(p) if p.graph.batch == n => p,
            _ => &self.full,
        };
        program
            .jit
            .run(&mut self.arena, x, y, 0)
            .map_err(RunError::internal)
    }

    fn slice(&self, program: &Program, id: usize) -> &[f32] {
        match program.layout.range(&program.graph, id) {
            Some(r) => &self.arena[r],
            None => &[],
        }
    }
}

/// The model's outputs for every sample of `set` (features only), row after row:
/// `set.rows * model.output_size()` values.
pub fn predict(
    model: &Model,
    trained: &Trained,
    set: &Dataset,
    batch: usize,
) -> Result<Vec<f32>, RunError> {
    data::check_token_ids(model, set, "the input")?;
    // The forward pass alone: without the train block the graph has no optimizer slots.
    let forward = Model {
        train: None,
        ..model.clone()
    };
    let mut runner = Runner::new(set.rows, batch, trained, |b| build::predict(&forward, b))?;
    let batch = runner.full.graph.batch;
    let (fc, out) = (set.feature_count, model.output_size());
    let mut x = vec![0f32; batch * fc];
    let mut outputs = Vec::with_capacity(set.rows * out);
    let rows: Vec<usize> = (0..set.rows).collect();
    for chunk in rows.chunks(batch) {
        let n = chunk.len();
        data::gather(set, chunk, &mut x[..n * fc], &mut []);
        runner.run(n, &x[..n * fc], &[])?;
        let program = runner.program(n);
        outputs.extend_from_slice(runner.slice(program, program.graph.output));
    }
    Ok(outputs)
}

/// The mean loss and every metric of `config` over `set` (features and targets as
/// the loss reads them), in batches of `batch` as `nnc run` evaluates its test set,
/// so that the numbers are the ones `run` printed for the same weights.
pub fn evaluate(
    model: &Model,
    config: &TrainConfig,
    trained: &Trained,
    set: &Dataset,
    batch: usize,
) -> Result<(f64, Vec<(String, f64)>), RunError> {
    data::check_token_ids(model, set, "the data")?;
    let mut runner = Runner::new(set.rows, batch, trained, |b| build::evaluate(model, b))?;
    let batch = runner.full.graph.batch;
    let (fc, tw) = (set.feature_count, set.target_width);
    let mut x = vec![0f32; batch * fc];
    let mut y = vec![0f32; batch * tw];
    let mut metrics = config
        .metrics
        .iter()
        .map(|&m| Accumulator::new(m, model.output_size(), tw))
        .collect::<Result<Vec<_>, _>>()?;
    let mut loss_sum = 0f64;
    let rows: Vec<usize> = (0..set.rows).collect();
    for chunk in rows.chunks(batch) {
        let n = chunk.len();
        let (xs, ys) = (&mut x[..n * fc], &mut y[..n * tw]);
        data::gather(set, chunk, xs, ys);
        runner.run(n, xs, ys)?;
        let program = runner.program(n);
        let loss = program
            .graph
            .loss
            .and_then(|id| runner.slice(program, id).first().copied())
            .unwrap_or(f32::NAN);
        // Weighted by the batch's rows: the mean over the set, as `run` reports it.
        loss_sum += f64::from(loss) * n as f64;
        let output = runner.slice(program, program.graph.output);
        for m in &mut metrics {
            m.add(output, ys);
        }
    }
    let values = metrics
        .iter()
        .map(|m| (m.name().to_string(), m.mean().unwrap_or(f64::NAN)))
        .collect();
    Ok((loss_sum / set.rows.max(1) as f64, values))
}
