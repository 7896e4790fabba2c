//! The epoch loop: compile the step functions, feed batches, report progress and
//! metrics, evaluate, save weights.
//!
//! The trainer owns one arena shared by every compiled function of the model: the
//! persistent prefix (weights, optimizer slots) sits at the same offsets in the train
//! step of the full batch, the one of the smaller last batch, and the evaluation
//! graphs (see `ir::layout`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::codegen::Compiled;
use crate::ir::graph::Graph;
use crate::ir::layout::Layout;
use crate::ir::{build, init, interp, optim, print};
use crate::runtime::callbacks::{Callbacks, Event, Logs, Trainee};
use crate::runtime::checkpoint;
use crate::runtime::class_weight;
use crate::runtime::data::{self, Dataset};
use crate::runtime::distributed::{self, StepPlan, StepSum, World};
use crate::runtime::error::RunError;
use crate::runtime::interrupt;
use crate::runtime::memory;
use crate::runtime::metrics::Accumulator;
use crate::runtime::nan_trace::{self, NanReport};
use crate::runtime::plot::Curves;
use crate::runtime::report::{DataReport, EpochReport, NodeTime, Reporter, TestReport};
use crate::runtime::resume;
use crate::runtime::trained;
use crate::sema::model::{Model, TrainConfig};

/// Which executor runs the graphs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Native code from Cranelift (the default).
    Jit,
    /// The reference interpreter: slow, for checking the JIT.
    Interpreter,
}

/// Command-line overrides of the `train` block, and where weights come from and go.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub epochs: Option<usize>,
    pub batch_size: Option<usize>,
    pub seed: Option<u64>,
    pub init: Option<PathBuf>,
    pub save: Option<PathBuf>,
    /// Write a resume checkpoint here after every epoch (`runtime::resume`).
    pub checkpoint: Option<PathBuf>,
    /// Continue the run this resume checkpoint holds.
    pub resume: Option<PathBuf>,
    pub engine: Option<Engine>,
    /// Time every node of the full-batch train step and report it (JIT only).
    pub profile: bool,
    /// SHA-256 of the `.nn` file, stored with saved weights (`runtime::trained`).
    pub source_sha256: Option<String>,
}

/// A graph ready to run, with the layout it was compiled for.
struct Executable {
    graph: Graph,
    layout: Layout,
    jit: Option<Compiled>,
    /// In data-parallel training, the step in segments: gradients, then updates.
    halves: Option<Halves>,
}

struct Halves {
    /// The node indices where one segment ends and the next begins: the
    /// synchronized batch statistics' (`StepPlan::cuts`), then the first node of the
    /// update half (`Graph::update_start`).
    cuts: Vec<usize>,
    /// Their native code, one function per segment (`None` with the interpreter).
    jit: Option<Vec<Compiled>>,
    /// Where the values the ranks sum between the segments live.
    plan: StepPlan,
}

impl Executable {
    fn new(graph: Graph, engine: Engine, profile: bool) -> Result<Executable, RunError> {
        let layout = Layout::planned(&graph);
        let jit = match (engine, profile) {
            (Engine::Jit, false) => Some(crate::codegen::compile(&graph, &layout)),
            (Engine::Jit, true) => Some(crate::codegen::compile_profiled(&graph, &layout)),
            (Engine::Interpreter, _) => None,
        };
        Ok(Executable {
            graph,
            layout,
            jit: jit.transpose().map_err(RunError::internal)?,
            halves: None,
        })
    }

    /// A train step compiled in segments only (see `Halves`).
    fn halved(graph: Graph, engine: Engine, profile: bool) -> Result<Executable, RunError> {
        let layout = Layout::planned(&graph);
        let split = graph
            .update_start()
            .ok_or_else(|| RunError::internal("the train step does not end with its updates"))?;
        let plan = StepPlan::new(&graph, &layout).map_err(RunError::internal)?;
        let mut cuts = plan.cuts();
        cuts.push(split);
        let jit = match engine {
            Engine::Jit => Some(
                crate::codegen::compile_segments(&graph, &layout, &cuts, profile)
                    .map_err(RunError::internal)?,
            ),
            Engine::Interpreter => None,
        };
        Ok(Executable {
            graph,
            layout,
            jit: None,
            halves: Some(Halves { cuts, jit, plan }),
        })
    }

    fn run(&self, arena: &mut [f32], x: &[f32], y: &[f32], step: u64) -> Result<(), RunError> {
        match &self.jit {
            // The trainer sized the arena and batches from this graph's layout.
            Some(f) => f.run(arena, x, y, step).map_err(RunError::internal),
            None => {
                interp::run(&self.graph, &self.layout, arena, x, y, step);
                Ok(())
            }
        }
    }

    /// Runs segment `k` of a step in segments (the last is the update half).
    fn run_segment(
        &self,
        k: usize,
        arena: &mut [f32],
        x: &[f32],
        y: &[f32],
        step: u64,
    ) -> Result<(), RunError> {
        let halves = (self.halves.as_ref()).ok_or_else(|| RunError::internal("not halved"))?;
        match &halves.jit {
            // The trainer sized the arena and batches from this graph's layout.
            Some(functions) => (functions.get(k))
                .ok_or_else(|| RunError::internal(format!("no segment {k}")))?
                .run(arena, x, y, step)
                .map_err(RunError::internal),
            None => {
                let start = if k == 0 { 0 } else { halves.cuts[k - 1] };
                let end = halves
                    .cuts
                    .get(k)
                    .copied()
                    .unwrap_or(self.graph.nodes.len());
                interp::run_nodes(&self.graph, &self.layout, start..end, arena, x, y, step);
                Ok(())
            }
        }
    }

    fn node_seconds(&self) -> Vec<f64> {
        match (&self.jit, &self.halves) {
            (Some(f), _) => f.node_seconds(),
            (
                None,
                Some(Halves {
                    jit: Some(functions),
                    ..
                }),
            ) => functions.first().map_or(vec![], Compiled::node_seconds),
            _ => vec![],
        }
    }

    fn scalar(&self, arena: &[f32], id: Option<usize>) -> f32 {
        id.and_then(|id| self.layout.offsets[id])
            .map_or(f32::NAN, |o| arena[o])
    }

    fn slice<'a>(&self, arena: &'a [f32], id: usize) -> &'a [f32] {
        match self.layout.range(&self.graph, id) {
            Some(r) => &arena[r],
            None => &[],
        }
    }
}

/// Compiles the graphs of one batch size on first use and keeps them.
struct Programs<'m> {
    model: &'m Model,
    engine: Engine,
    /// Compile train steps with per-node timing (`RunOptions::profile`).
    profile: bool,
    /// Compile train steps in segments (data-parallel training).
    halved: bool,
    train: HashMap<usize, Executable>,
    evaluate: HashMap<usize, Executable>,
    compile_time: Duration,
}

impl<'m> Programs<'m> {
    fn train_step(&mut self, batch: usize) -> Result<&Executable, RunError> {
        if !self.train.contains_key(&batch) {
            let started = Instant::now();
            let graph = build::train_step(self.model, batch).map_err(RunError::internal)?;
            let exe = if self.halved {
                Executable::halved(graph, self.engine, self.profile)?
            } else {
                Executable::new(graph, self.engine, self.profile)?
            };
            self.compile_time += started.elapsed();
            self.train.insert(batch, exe);
        }
        Ok(&self.train[&batch])
    }

    fn evaluate(&mut self, batch: usize) -> Result<&Executable, RunError> {
        if !self.evaluate.contains_key(&batch) {
            let started = Instant::now();
            let graph = build::evaluate(self.model, batch).map_err(RunError::internal)?;
            let exe = Executable::new(graph, self.engine, false)?;
            self.compile_time += started.elapsed();
            self.evaluate.insert(batch, exe);
        }
        Ok(&self.evaluate[&batch])
    }
}

/// What training ends with.
pub struct Outcome {
    pub final_loss: f32,
    pub test: Option<TestReport>,
    /// Set when Ctrl-C stopped training (see `runtime::interrupt`); there is no test
    /// report then.
    pub interrupted: Option<Interrupted>,
    /// Set when a step made the loss or a weight NaN or infinite: training stopped
    /// there, nothing was saved or tested.
    pub not_finite: Option<NanReport>,
    /// Every complete epoch's loss and metrics (`nnc run --plot`).
    pub curves: Curves,
}

/// Where Ctrl-C stopped training.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interrupted {
    /// Epochs trained to their end; their last one's weights are the ones saved.
    pub completed: usize,
    pub epochs: usize,
    /// Where those weights went: `None` without `save`, or when no epoch was complete.
    pub saved: Option<PathBuf>,
    /// The resume checkpoint of that epoch, when `--checkpoint` wrote one.
    pub checkpoint: Option<PathBuf>,
}

/// Writes the weights (in `init::params` order) as `--save` does.
type SaveFn<'a> = dyn Fn(&std::path::Path, Vec<&[f32]>) -> Result<(), String> + 'a;

/// The weights of a model in its arena, for callbacks.
struct ArenaWeights<'a> {
    arena: &'a mut [f32],
    exe: &'a Executable,
    params: &'a [(String, usize)],
    save: &'a SaveFn<'a>,
}

impl Trainee for ArenaWeights<'_> {
    fn weights(&self) -> Vec<Vec<f32>> {
        self.params
            .iter()
            .map(|(_, id)| self.exe.slice(self.arena, *id).to_vec())
            .collect()
    }

    fn set_weights(&mut self, weights: &[Vec<f32>]) {
        for ((_, id), value) in self.params.iter().zip(weights) {
            if let Some(range) = self.exe.layout.range(&self.exe.graph, *id) {
                self.arena[range].copy_from_slice(value);
            }
        }
    }

    fn save(&self, path: &std::path::Path) -> Result<(), String> {
        let values = self
            .params
            .iter()
            .map(|(_, id)| self.exe.slice(self.arena, *id))
            .collect();
        (self.save)(path, values)
    }
}

/// Trains `model` as its `train` block says (with `options` overriding), reporting
/// each event to `reporter`. Errors are complete messages for the user.
pub fn train(
    model: &Model,
    options: &RunOptions,
    reporter: &mut dyn Reporter,
) -> Result<Outcome, RunError> {
    train_in(model, options, reporter, None)
}

/// `train` as one rank of data-parallel training over `world` (see
/// `runtime::distributed`): every rank calls it with the same model and options;
/// rank 0 alone reports, evaluates and saves, the other ranks' `options.save` is
/// ignored. Errors that only this rank meets once training has started stop the
/// whole job (`World::abort`) after printing the message, since the other ranks
/// would wait for this one forever.
pub fn train_distributed(
    model: &Model,
    options: &RunOptions,
    reporter: &mut dyn Reporter,
    world: &World,
) -> Result<Outcome, RunError> {
    let result = train_in(model, options, reporter, Some(world));
    if result.is_err() && world.readied().is_none() {
        // Failed before training: tell the others, who wait in `ready`.
        world.ready(false);
    }
    result
}

fn train_in(
    model: &Model,
    options: &RunOptions,
    reporter: &mut dyn Reporter,
    world: Option<&World>,
) -> Result<Outcome, RunError> {
    let lead = world.is_none_or(|w| w.rank() == 0);
    // Each rank draws its own dropout masks: the graphs' seed, not the weights'.
    let own_masks;
    let graph_model = match world.filter(|w| w.rank() > 0) {
        Some(w) => {
            let mut m = model.clone();
            if let Some(t) = m.train.as_mut() {
                t.seed = crate::ops::random::mix64(t.seed ^ w.rank() as u64);
            }
            own_masks = m;
            &own_masks
        }
        None => model,
    };
    let mut config: TrainConfig = model
        .train
        .clone()
        .ok_or("the model has no `train` block: `nnc run` needs one")?;
    if let Some(e) = options.epochs {
        config.epochs = e;
    }
    if let Some(b) = options.batch_size {
        config.batch_size = b;
    }
    if let Some(s) = options.seed {
        config.seed = s;
    }
    let processes = world.map_or(1, World::size);
    if let Some(path) = &options.resume {
        // The rows' order, the dropout masks and the steps depend on all three.
        let saved = resume::settings(path, options.source_sha256.as_deref())?;
        let (seed, batch) = (saved.seed, saved.batch_size);
        if saved.processes != processes {
            return Err(different_processes(path, saved.processes, processes).into());
        }
        for (flag, given, saved) in [
            ("--seed", options.seed, seed),
            (
                "--batch-size",
                options.batch_size.map(|b| b as u64),
                batch as u64,
            ),
        ] {
            if given.is_some_and(|g| g != saved) {
                return Err(format!(
                    "{}: the run was checkpointed with {flag} {saved}; resume it with the same \
                     value (or without {flag})",
                    path.display()
                )
                .into());
            }
        }
        (config.seed, config.batch_size) = (seed, batch);
    }
    // Every rank keeps the callbacks' state; the lead alone runs them (see the end
    // of an epoch).
    let mut callbacks = Callbacks::new(&config.callbacks);
    // Only the lead (rank 0 of several) writes files.
    let save_to = options.save.as_ref().filter(|_| lead);
    let checkpoint_to = options.checkpoint.as_ref().filter(|_| lead);
    if let Some(path) = save_to {
        checkpoint::check_writable(path, "--save", "weights.safetensors")?;
    }
    if let Some(path) = checkpoint_to {
        checkpoint::check_writable(path, "--checkpoint", "run.checkpoint")?;
    }
    for (callback, example, path) in callbacks.paths().into_iter().filter(|_| lead) {
        checkpoint::check_writable(path, callback, example)?;
    }
    let prepared = data::prepare(model, &config)?;
    let train_set = &prepared.train;
    let batch = config.batch_size.min(train_set.rows).max(1);
    if let Some(w) = world.filter(|w| batch < w.size()) {
        return Err(format!(
            "a batch of {batch} rows cannot be split over {} processes: use a batch size \
             of at least {0}, or fewer processes",
            w.size()
        )
        .into());
    }
    reporter.data_loaded(&DataReport {
        train_rows: train_set.rows,
        validation_rows: prepared.validation.as_ref().map(|d| d.rows),
        test_rows: prepared.test.as_ref().map(|d| d.rows),
        batch_size: batch,
        epochs: config.epochs,
    });

    let mut programs = Programs {
        model: graph_model,
        engine: options.engine.unwrap_or(Engine::Jit),
        profile: options.profile,
        halved: world.is_some(),
        train: HashMap::new(),
        evaluate: HashMap::new(),
        compile_time: Duration::ZERO,
    };
    // Compile every function training will need before the first step, so that the
    // reported compile time is the whole of it and the epochs are pure training.
    let last_batch = train_set.rows % batch;
    // A rank's step is that of its shard; every rank's full-batch shard has rows.
    let mine = |rows: usize| world.map_or(rows, |w| w.shard(rows).len());
    let full_batch = mine(batch);
    programs.train_step(full_batch)?;
    if last_batch != 0 && mine(last_batch) != 0 {
        programs.train_step(mine(last_batch))?;
    }
    let evaluated = [prepared.validation.as_ref(), prepared.test.as_ref()];
    for set in evaluated.into_iter().flatten().filter(|_| lead) {
        let eval_batch = batch.min(set.rows).max(1);
        programs.evaluate(eval_batch)?;
        if set.rows % eval_batch != 0 {
            programs.evaluate(set.rows % eval_batch)?;
        }
    }
    reporter.compiled(programs.compile_time.as_secs_f64());

    let arena_len = programs
        .train
        .values()
        .chain(programs.evaluate.values())
        .map(|e| e.layout.len)
        .max()
        .unwrap_or(0);
    // The one large allocation: parameters, gradients, optimizer state, activations.
    let mut arena = memory::zeroed_or_explain(
        arena_len,
        &format!("one training step at batch size {batch}"),
    )?;
    let full = &programs.train[&full_batch];
    init::initialize(model, &full.graph, &full.layout, &mut arena, config.seed);
    class_weight::apply(&config, train_set, &full.graph, &full.layout, &mut arena);
    let checkpoint_tensors = init::params(&full.graph);
    let shapes: Vec<Vec<usize>> = checkpoint_tensors
        .iter()
        .map(|(_, id)| full.graph.tensors[*id].shape.clone())
        .collect();
    if let Some(path) = &options.init {
        let expected: Vec<(String, Vec<usize>)> = checkpoint_tensors
            .iter()
            .map(|(name, _)| name.clone())
            .zip(shapes.iter().cloned())
            .collect();
        let values = checkpoint::load(path, &expected)?;
        for ((_, id), value) in checkpoint_tensors.iter().zip(values) {
            if let Some(range) = full.layout.range(&full.graph, *id) {
                arena[range].copy_from_slice(&value);
            }
        }
    }
    let persistent_len = full.layout.persistent_len;
    let identity = resume::Identity {
        source_sha256: options.source_sha256.clone(),
        layout: full
            .graph
            .tensors
            .iter()
            .filter(|t| t.role.is_persistent())
            .map(|t| (t.name.clone(), t.shape.clone()))
            .collect(),
        persistent_len,
        params: checkpoint_tensors
            .iter()
            .map(|(name, _)| name.clone())
            .zip(shapes.iter().cloned())
            .collect(),
    };

    let preparation = trained::Preparation {
        features: prepared.feature_names.clone(),
        standardization: prepared.standardization.clone(),
        classes: prepared
            .class_names
            .clone()
            .unwrap_or_else(|| trained::classes(model, config.loss)),
        seed: Some(config.seed),
    };
    let metadata = trained::metadata(model, &preparation, options.source_sha256.as_deref());
    let save = |path: &std::path::Path, values: Vec<&[f32]>| {
        let tensors: Vec<(String, Vec<usize>, &[f32])> = checkpoint_tensors
            .iter()
            .zip(&shapes)
            .zip(values)
            .map(|(((name, _), shape), data)| (name.clone(), shape.clone(), data))
            .collect();
        checkpoint::save_with_metadata(path, &tensors, Some(metadata.clone()))
    };

    let mut step: u64 = 0;
    let mut final_loss = f32::NAN;
    let mut completed = 0;
    // Set when a callback ended training before `config.epochs`.
    let mut stopped = false;
    // Every rank reads the checkpoint before the ranks agree to start, so that one
    // that cannot read it stops the job before any rank trains.
    if let Some(path) = &options.resume {
        let (snapshot, kept) = resume::load(path, &identity)?;
        arena[..persistent_len].copy_from_slice(&snapshot.persistent);
        callbacks.restore(&snapshot.callbacks, kept)?;
        (step, completed, stopped, final_loss) = (
            snapshot.step,
            snapshot.epoch,
            snapshot.stopped,
            snapshot.loss,
        );
        if lead {
            reporter.resumed(completed, path);
        }
    }
    if let Some(w) = world {
        if !w.ready(true).all {
            return Err("another process failed before training (its message is above)".into());
        }
        // The ranks' steps pair up only if they train the same rows from the same
        // weights.
        let persistent = &arena[..full.layout.persistent_len];
        let facts = [train_set.rows, batch, config.epochs, completed].map(|v| v as u64);
        if !w.all_equal(&[
            facts[0],
            facts[1],
            facts[2],
            facts[3],
            step,
            distributed::digest(persistent),
        ]) {
            return Err(
                "the processes do not agree on the data or the initial weights: each reads \
                 the .nn file, the data, --init and --resume on its own machine, and they \
                 differ"
                    .into(),
            );
        }
    }

    let x_width = train_set.feature_count;
    let y_width = train_set.target_width;
    let mut x_buf = vec![0f32; batch * x_width];
    let mut y_buf = vec![0f32; batch * y_width];
    let mut full_batches: u64 = 0;
    let batches_per_epoch = train_set.rows.div_ceil(batch);
    let weights_of = |arena: &[f32], programs: &Programs| -> Vec<Vec<f32>> {
        let full = &programs.train[&full_batch];
        checkpoint_tensors
            .iter()
            .map(|(_, id)| full.slice(arena, *id).to_vec())
            .collect()
    };
    // The weights at the end of the last complete epoch: what Ctrl-C saves and what
    // `terminate_on_nan` keeps.
    let mut kept = weights_of(&arena, &programs);
    let mut events = vec![];
    // The rows in epoch order; reshuffled in place each epoch.
    let mut order: Vec<usize> = (0..train_set.rows).collect();
    // In data-parallel training, the buffers of the step's sum, and whether any rank
    // asked to stop (Ctrl-C), which all learn in the same step.
    let mut step_sum = StepSum::default();
    let mut shared_stop = world.map(|_| false);
    // The persistent tensors at the start of the epoch: where a NaN's replay starts.
    let persistent = programs.train[&full_batch].layout.persistent_len;
    let mut epoch_start = vec![0f32; persistent];
    let mut divergence = Divergence::default();
    let mut curves = Curves::default();

    'epochs: for epoch in completed + 1..=config.epochs {
        if shared_stop.unwrap_or_else(interrupt::requested) || stopped {
            break;
        }
        let started = Instant::now();
        if config.shuffle {
            data::shuffle_order(&mut order, config.seed, epoch);
        }
        reporter.epoch_started(epoch, config.epochs, batches_per_epoch);
        epoch_start.copy_from_slice(&arena[..persistent]);
        let replay = Replay {
            set: train_set,
            order: &order,
            batch,
            start: &epoch_start,
            first_step: step,
        };
        let (mut loss_sum, mut rows_done) = (0f64, 0usize);
        let mut metrics = accumulators(&config, model, train_set)?;
        let mut batches = order.chunks(batch).enumerate().peekable();
        while let Some((index, batch_rows)) = batches.next() {
            let n = batch_rows.len();
            let rows = world.map_or(batch_rows, |w| &batch_rows[w.shard(n)]);
            // A rank without rows in a short last batch still joins the sum.
            let m = rows.len();
            let exe = match programs.train.get(&m) {
                Some(exe) => exe,
                None => &programs.train[&full_batch],
            };
            let (x, y) = (&mut x_buf[..m * x_width], &mut y_buf[..m * y_width]);
            data::gather(train_set, rows, x, y);
            if let Some((_, next)) = batches.peek() {
                let next = world.map_or(*next, |w| &next[w.shard(next.len())]);
                data::prefetch(train_set, next);
            }
            match (world, &exe.halves) {
                (Some(w), Some(halves)) => {
                    // This rank's own failure: the others wait in the sum.
                    let local = |r: Result<(), RunError>| r.unwrap_or_else(|e| w.fail(e.message()));
                    let from = (m > 0).then_some((&halves.plan, m as f32 / n as f32));
                    // The gradient half's segments, each followed by a sum of batch
                    // statistics, the last by the gradients' sum; then the updates.
                    let updates = halves.cuts.len();
                    for k in 0..updates {
                        if m > 0 {
                            local(exe.run_segment(k, &mut arena, x, y, step));
                        }
                        if k + 1 < updates {
                            step_sum.sync(w, &mut arena, k, from, &halves.plan);
                        }
                    }
                    let stop = interrupt::requested();
                    let stop = step_sum.reduce(w, &mut arena, from, &halves.plan, stop);
                    shared_stop = Some(stop);
                    local(exe.run_segment(updates, &mut arena, x, y, step));
                }
                _ => exe.run(&mut arena, x, y, step)?,
            }
            step += 1;
            full_batches += u64::from(n == batch);
            let loss = exe.scalar(&arena, exe.graph.loss);
            if !loss.is_finite() {
                let at = format!(
                    "the loss became {loss} in epoch {epoch}, batch {} of {batches_per_epoch}",
                    index + 1
                );
                if !callbacks.terminates_on_nan() {
                    if world.is_some() {
                        return Err(not_traced("the loss", epoch, index + 1, batches_per_epoch));
                    }
                    // Where the first non-finite value came from, at the user's line.
                    let report = replay.locate(&programs, arena.len(), index, epoch)?;
                    return Ok(Outcome::not_finite(report, curves));
                }
                // Every rank sees the same summed loss, so all of them stop here.
                // Keras would keep the non-finite weights; the last good ones are
                // what anyone would evaluate or save.
                let exe = &programs.train[&full_batch];
                ArenaWeights {
                    arena: &mut arena,
                    exe,
                    params: &checkpoint_tensors,
                    save: &save,
                }
                .set_weights(&kept);
                let kept_from = match completed {
                    0 => "the initial weights".to_string(),
                    n => format!("the weights of epoch {n}"),
                };
                reporter.callback(&Event {
                    callback: "terminate_on_nan",
                    epoch,
                    message: format!("{at}; training stopped, keeping {kept_from}"),
                    fields: vec![
                        ("batch", (index + 1).into()),
                        ("kept_epoch", completed.into()),
                    ],
                });
                break 'epochs;
            }
            divergence.batch_loss(loss);
            // Weighted by the batch's rows, as Keras reports an epoch's loss.
            loss_sum += f64::from(loss) * n as f64;
            rows_done += n;
            if m > 0 {
                add_batch(&mut metrics, exe.slice(&arena, exe.graph.output), y);
            }
            reporter.batch_done(index + 1, rows_done, loss_sum / rows_done as f64, &metrics);
            // After the last batch the epoch is finished and reported first.
            if shared_stop.unwrap_or_else(interrupt::requested) && index + 1 < batches_per_epoch {
                break 'epochs;
            }
        }
        final_loss = (loss_sum / rows_done.max(1) as f64) as f32;
        if !nan_trace::all_finite(&arena[..persistent]) {
            if world.is_some() {
                return Err(not_traced(
                    "a weight",
                    epoch,
                    batches_per_epoch,
                    batches_per_epoch,
                ));
            }
            // A weight went bad while the loss stayed finite: find the step.
            let report = replay.locate(&programs, arena.len(), batches_per_epoch - 1, epoch)?;
            return Ok(Outcome::not_finite(report, curves));
        }
        if let Some(w) = world {
            sum_metrics(w, &mut metrics);
            if !w.all_equal(&[distributed::digest(&arena[..persistent])]) {
                w.fail(&format!(
                    "the processes' weights differ after epoch {epoch}: this MPI library's \
                     allreduce did not give every process the same sums"
                ));
            }
        }
        let validation = match prepared.validation.as_ref().filter(|_| lead) {
            Some(set) => match (
                evaluate(&mut programs, &mut arena, set, &config, batch),
                world,
            ) {
                (Err(e), Some(w)) => w.fail(e.message()),
                (result, _) => Some(result?),
            },
            None => None,
        };
        let seconds = started.elapsed().as_secs_f64();
        let report = EpochReport {
            epoch,
            epochs: config.epochs,
            loss: f64::from(final_loss),
            metrics: values(&metrics),
            validation,
            seconds,
            samples_per_second: train_set.rows as f64 / seconds.max(1e-9),
        };
        reporter.epoch_done(&report);
        curves.push_report(&report);
        if let Some(warning) = divergence.epoch_loss(final_loss, epoch, &config) {
            reporter.warned(&warning);
        }
        let full = &programs.train[&full_batch];
        // The rate lives in the arena: every step reads it (`ir::optim`).
        let rate = optim::learning_rate(&full.graph, &full.layout, &arena);
        let mut learning_rate = rate.unwrap_or(f32::NAN);
        let mut weights = ArenaWeights {
            arena: &mut arena,
            exe: full,
            params: &checkpoint_tensors,
            save: &save,
        };
        // The lead alone evaluates, so it alone runs the callbacks (and writes their
        // files); every rank then follows its decisions, which keeps the weights and
        // the learning rate the same everywhere.
        if lead {
            let ended = callbacks.epoch_end(
                epoch,
                &logs(&report),
                &mut weights,
                &mut learning_rate,
                &mut events,
            );
            stopped = match (ended, world) {
                (Err(e), Some(w)) => w.fail(&e),
                (ended, _) => ended?,
            };
        }
        if let Some(w) = world {
            let mut decided = [u64::from(stopped), u64::from(learning_rate.to_bits())];
            w.from_rank0(&mut decided);
            stopped = decided[0] != 0;
            learning_rate = u32::try_from(decided[1]).map_or(f32::NAN, f32::from_bits);
        }
        kept = weights.weights();
        if rate.is_some_and(|r| r != learning_rate) {
            optim::set_learning_rate(&full.graph, &full.layout, &mut arena, learning_rate)?;
        }
        for event in events.drain(..) {
            reporter.callback(&event);
        }
        completed = epoch;
        if let Some(path) = checkpoint_to {
            let (json, best) = callbacks.state();
            let snapshot = resume::Snapshot {
                epoch,
                step,
                stopped,
                seed: config.seed,
                batch_size: config.batch_size,
                processes,
                loss: final_loss,
                persistent: arena[..persistent_len].to_vec(),
                callbacks: json,
            };
            match (resume::save(path, &identity, &snapshot, &best), world) {
                (Err(e), Some(w)) => w.fail(&e),
                (saved, _) => saved?,
            }
        }
    }

    if shared_stop.unwrap_or_else(interrupt::requested) {
        let saved = match (save_to, completed) {
            (Some(_), 0) | (None, _) => None,
            (Some(path), _) => {
                // The interruption's one message says where (no `saved` event).
                save(path, kept.iter().map(Vec::as_slice).collect())?;
                Some(path.clone())
            }
        };
        return Ok(Outcome {
            final_loss,
            test: None,
            interrupted: Some(Interrupted {
                completed,
                epochs: config.epochs,
                saved,
                checkpoint: options.checkpoint.clone().filter(|_| completed > 0),
            }),
            not_finite: None,
            curves,
        });
    }

    let full = &programs.train[&full_batch];
    callbacks.train_end(
        completed,
        &mut ArenaWeights {
            arena: &mut arena,
            exe: full,
            params: &checkpoint_tensors,
            save: &save,
        },
        &mut events,
    );
    for event in events.drain(..) {
        reporter.callback(&event);
    }
    if options.profile && lead {
        reporter.profiled(&profile(&programs.train[&full_batch], full_batches));
    }
    let test = match prepared.test.as_ref().filter(|_| lead) {
        Some(set) => {
            let (loss, metrics) = evaluate(&mut programs, &mut arena, set, &config, batch)?;
            let report = TestReport { loss, metrics };
            reporter.tested(&report);
            Some(report)
        }
        None => None,
    };

    if let Some(path) = save_to {
        save(
            path,
            weights_of(&arena, &programs)
                .iter()
                .map(Vec::as_slice)
                .collect(),
        )?;
        reporter.saved(path);
    }
    Ok(Outcome {
        final_loss,
        test,
        interrupted: None,
        not_finite: None,
        curves,
    })
}

/// An epoch's values under Keras's names: `loss`, the metrics, `val_loss`, `val_...`.
fn logs(report: &EpochReport) -> Logs {
    let mut logs = vec![("loss".to_string(), report.loss)];
    logs.extend(report.metrics.iter().cloned());
    if let Some((loss, metrics)) = &report.validation {
        logs.push(("val_loss".into(), *loss));
        logs.extend(metrics.iter().map(|(k, v)| (format!("val_{k}"), *v)));
    }
    logs
}

/// The nodes of `exe` (a profiled train step) by time per step over `steps` runs,
/// slowest first.
fn profile(exe: &Executable, steps: u64) -> Vec<NodeTime> {
    let seconds = exe.node_seconds();
    if seconds.is_empty() {
        return vec![];
    }
    let total: f64 = seconds.iter().sum();
    let mut nodes: Vec<NodeTime> = exe
        .graph
        .nodes
        .iter()
        .zip(&seconds)
        .map(|(node, &s)| NodeTime {
            node: print::node_label(&exe.graph, node),
            shape: exe.graph.tensors[node.output].shape.clone(),
            seconds_per_step: s / steps.max(1) as f64,
            share: s / total.max(f64::MIN_POSITIVE),
        })
        .collect();
    nodes.sort_by(|a, b| b.seconds_per_step.total_cmp(&a.seconds_per_step));
    nodes
}

/// Loss and metrics of a whole data set in inference mode (dropout off), in batches.
fn evaluate(
    programs: &mut Programs,
    arena: &mut [f32],
    set: &Dataset,
    config: &TrainConfig,
    batch: usize,
) -> Result<(f64, Vec<(String, f64)>), RunError> {
    let batch = batch.min(set.rows).max(1);
    let mut x_buf = vec![0f32; batch * set.feature_count];
    let mut y_buf = vec![0f32; batch * set.target_width];
    let mut metrics = accumulators(config, programs.model, set)?;
    let mut loss_sum = 0f64;
    let rows: Vec<usize> = (0..set.rows).collect();
    for chunk in rows.chunks(batch) {
        let n = chunk.len();
        let exe = programs.evaluate(n)?;
        let (x, y) = (
            &mut x_buf[..n * set.feature_count],
            &mut y_buf[..n * set.target_width],
        );
        data::gather(set, chunk, x, y);
        exe.run(arena, x, y, 0)?;
        // Weighted by the batch's rows: the mean over the data set, as Keras's evaluate.
        loss_sum += f64::from(exe.scalar(arena, exe.graph.loss)) * n as f64;
        add_batch(&mut metrics, exe.slice(arena, exe.graph.output), y);
    }
    Ok((loss_sum / set.rows.max(1) as f64, values(&metrics)))
}

/// A value that became non-finite in data-parallel training, which every rank sees
/// at once. The trace that names the first non-finite node replays the steps as one
/// process: the user runs that without mpirun.
fn not_traced(what: &str, epoch: usize, batch: usize, batches: usize) -> RunError {
    RunError::User(format!(
        "{what} became NaN or infinite in epoch {epoch}, batch {batch} of {batches}: \
         training diverged; run `nnc run` without mpirun to trace the first non-finite \
         value to its layer"
    ))
}

/// A checkpoint trained by another number of processes than this run has.
fn different_processes(path: &std::path::Path, saved: usize, now: usize) -> String {
    let how = match saved {
        1 => "without mpirun".to_string(),
        n => format!("with `mpirun -np {n}`"),
    };
    format!(
        "{}: the run was checkpointed by {saved} process{}, and this one has {now}: \
         resume it {how}, since each process trains its own shard of every batch and \
         the result depends on how the batches are cut (see `nnc explain {}`)",
        path.display(),
        if saved == 1 { "" } else { "es" },
        crate::diag::codes::RESUME_PROCESSES
    )
}

/// Sums every rank's metric totals, so that each rank's means are the whole batch's.
fn sum_metrics(world: &World, metrics: &mut [Accumulator]) {
    let each: Vec<Vec<f64>> = metrics.iter().map(Accumulator::totals).collect();
    let mut totals: Vec<f64> = each.concat();
    world.sum(&mut totals);
    let mut rest = totals.as_slice();
    for (m, own) in metrics.iter_mut().zip(&each) {
        let (mine, after) = rest.split_at(own.len().min(rest.len()));
        m.set_totals(mine);
        rest = after;
    }
}

fn accumulators(
    config: &TrainConfig,
    model: &Model,
    set: &Dataset,
) -> Result<Vec<Accumulator>, String> {
    config
        .metrics
        .iter()
        .map(|&m| Accumulator::new(m, model.output_size(), set.target_width))
        .collect()
}

fn add_batch(metrics: &mut [Accumulator], predictions: &[f32], targets: &[f32]) {
    for m in metrics {
        m.add(predictions, targets);
    }
}

fn values(metrics: &[Accumulator]) -> Vec<(String, f64)> {
    metrics
        .iter()
        .map(|m| (m.name().to_string(), m.mean().unwrap_or(f64::NAN)))
        .collect()
}

impl Outcome {
    /// Training stopped by a non-finite value; `curves` holds the epochs before.
    fn not_finite(report: NanReport, curves: Curves) -> Outcome {
        Outcome {
            final_loss: report.loss,
            test: None,
            interrupted: None,
            not_finite: Some(report),
            curves,
        }
    }
}

/// One epoch's steps again, from the persistent tensors at its start, to find the
/// step that first made the loss or a weight not finite (the slow path, taken once).
struct Replay<'a> {
    set: &'a Dataset,
    order: &'a [usize],
    batch: usize,
    /// The persistent prefix of the arena at the start of the epoch.
    start: &'a [f32],
    /// The step counter at the start of the epoch.
    first_step: u64,
}

impl Replay<'_> {
    /// Replays batches `0..=last` of the epoch with the trainer's executables (so
    /// the same arithmetic), stops at the first step after which the loss or a
    /// persistent tensor is not finite, and re-runs it with the interpreter.
    fn locate(
        &self,
        programs: &Programs,
        arena_len: usize,
        last: usize,
        epoch: usize,
    ) -> Result<NanReport, RunError> {
        let persistent = self.start.len();
        let mut arena = memory::zeroed_or_explain(arena_len, "replaying the failing epoch")?;
        arena[..persistent].copy_from_slice(self.start);
        let (xw, yw) = (self.set.feature_count, self.set.target_width);
        let batches = self.set.rows.div_ceil(self.batch);
        // The step before the current one: its weights, batch, counter and rows.
        struct Step {
            before: Vec<f32>,
            x: Vec<f32>,
            y: Vec<f32>,
            step: u64,
            rows: usize,
        }
        let mut previous: Option<Step> = None;
        for (index, rows) in self.order.chunks(self.batch).enumerate().take(last + 1) {
            let n = rows.len();
            let exe = &programs.train[&n];
            let (mut x, mut y) = (vec![0f32; n * xw], vec![0f32; n * yw]);
            data::gather(self.set, rows, &mut x, &mut y);
            let before = arena[..persistent].to_vec();
            let step = self.first_step + index as u64;
            exe.run(&mut arena, &x, &y, step)?;
            let loss = exe.scalar(&arena, exe.graph.loss);
            if loss.is_finite() && nan_trace::all_finite(&arena[..persistent]) {
                previous = Some(Step {
                    before,
                    x,
                    y,
                    step,
                    rows: n,
                });
                continue;
            }
            let previous_gradient_norm = match previous {
                Some(p) => {
                    let exe = &programs.train[&p.rows];
                    let rerun = nan_trace::rerun(&exe.graph, &p.before, &p.x, &p.y, p.step, None)?;
                    Some(rerun.gradient_norm)
                }
                None => None,
            };
            let rerun =
                nan_trace::rerun(&exe.graph, &before, &x, &y, step, previous_gradient_norm)?;
            return Ok(NanReport {
                epoch,
                batch: index + 1,
                batches,
                loss,
                finding: rerun.finding,
                gradient_norm: rerun.gradient_norm,
                previous_gradient_norm,
                largest_gradient: rerun.largest_gradient,
            });
        }
        // The steps are deterministic: a replay that stays finite is nnc's fault.
        Err(RunError::internal(format!(
            "a value became NaN or infinite in epoch {epoch}, but replaying the epoch \
             did not reproduce it"
        )))
    }
}

/// Watches the loss for the tenfold growth over an epoch that precedes a NaN; warns
/// once per run.
#[derive(Default)]
struct Divergence {
    /// The previous epoch's mean loss, or the first batch's loss in the first epoch.
    reference: Option<f32>,
    warned: bool,
}

impl Divergence {
    fn batch_loss(&mut self, loss: f32) {
        self.reference.get_or_insert(loss);
    }

    fn epoch_loss(
        &mut self,
        loss: f32,
        epoch: usize,
        config: &TrainConfig,
    ) -> Option<crate::diag::Diagnostic> {
        let reference = self.reference.replace(loss)?;
        if self.warned || !(loss >= 10.0 * reference && reference > 0.0) {
            return None;
        }
        self.warned = true;
        let since = if epoch == 1 {
            "at its first batch".to_string()
        } else {
            format!("in epoch {}", epoch - 1)
        };
        Some(
            crate::diag::Diagnostic::warning(
                crate::diag::codes::DIVERGING,
                format!(
                    "the loss grew {}-fold in epoch {epoch} (from {} {since} to {}): \
                     training is diverging",
                    match f64::from(loss / reference) {
                        r if r < 1e6 => format!("{r:.0}"),
                        r => nan_trace::number(r),
                    },
                    nan_trace::number(f64::from(reference)),
                    nan_trace::number(f64::from(loss)),
                ),
                config.spans.optimizer.clone(),
                "training with this optimizer",
            )
            .with_help(
                "use a smaller learning rate, `standardize = true` in the data source \
                 (and targets in small units), or clip the gradients",
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::testing::dense_model;
    use crate::ops::activation::Activation;
    use crate::sema::model::{LayerKind, Loss, Optimizer, Padding};

    /// A model the front end would have refused (pooling a flat input) stands for any
    /// model that fails to build: that failure is nnc's, not the user's.
    #[test]
    fn a_model_that_fails_to_build_is_an_internal_error() {
        let mut model = dense_model(
            2,
            &[(1, Activation::Linear)],
            Loss::Mse,
            Optimizer::Sgd {
                learning_rate: 0.1,
                momentum: 0.0,
                nesterov: false,
            },
        );
        model.layers[0].kind = LayerKind::MaxPool2d {
            pool_size: [2, 2],
            strides: [2, 2],
            padding: Padding::Valid,
        };
        let mut programs = Programs {
            model: &model,
            engine: Engine::Jit,
            profile: false,
            halved: false,
            train: HashMap::new(),
            evaluate: HashMap::new(),
            compile_time: Duration::ZERO,
        };
        match programs.train_step(4) {
            Err(RunError::Internal(message)) => {
                assert!(message.contains("needs an image input"), "{message}")
            }
            Err(other) => panic!("expected an internal error, got {other:?}"),
            Ok(_) => panic!("a pooled flat input built a graph"),
        }
    }
}
