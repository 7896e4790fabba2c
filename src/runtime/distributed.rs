//! Synchronous data-parallel training over MPI (`mpirun -np N nnc run`).
//!
//! Every process (rank) holds the whole model and the whole data set, draws the same
//! row order, and takes its shard of each batch: the global batch of `n` rows is cut
//! into `size` contiguous shards, the first `n % size` one row longer, as Keras's
//! MirroredStrategy splits a batch. Each rank runs the gradient half of the train
//! step on its shard; one `MPI_Allreduce` per step sums, in one flat buffer, every
//! gradient weighted by the shard's share of the batch (so the sum is the gradient
//! of the batch's mean loss), the loss, the batch normalization statistics and a
//! stop flag; then every rank runs the update half on the same sums, so the weights
//! stay the same everywhere. `docs/DISTRIBUTED.md` has the details and the costs.
//!
//! Without the cargo feature `mpi`, `World::start` only refuses to run under a
//! launcher, so that `mpirun` cannot start N unrelated trainings.

use std::hash::Hasher;
use std::ops::Range;

use crate::ir::graph::{Graph, Op, TensorId};
use crate::ir::layout::Layout;

/// Whether this binary was built with MPI support (cargo feature `mpi`).
pub const COMPILED_IN: bool = cfg!(feature = "mpi");

/// The environment variables in which launchers give each process the number of
/// processes: Open MPI's `mpirun`, and PMI launchers (MPICH's Hydra, Slurm).
const SIZE_VARIABLES: [&str; 2] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"];
const RANK_VARIABLES: [&str; 2] = ["OMPI_COMM_WORLD_RANK", "PMI_RANK"];

fn launcher_number(names: &[&str]) -> Option<usize> {
    names
        .iter()
        .find_map(|name| std::env::var(name).ok()?.trim().parse().ok())
}

/// The number of processes a launcher started, as the environment says (1 without
/// one).
pub fn launched_size() -> usize {
    launcher_number(&SIZE_VARIABLES).unwrap_or(1)
}

/// This process's rank as the launcher's environment says (0 without one).
pub fn launched_rank() -> usize {
    launcher_number(&RANK_VARIABLES).unwrap_or(0)
}

/// The rows `[start, end)` of a batch of `rows` rows that rank `rank` of `size`
/// trains on: contiguous shards, the first `rows % size` one row longer.
pub fn shard(rows: usize, rank: usize, size: usize) -> Range<usize> {
    let size = size.max(1);
    let (base, extra) = (rows / size, rows % size);
    let start = rank * base + rank.min(extra);
    start..start + base + usize::from(rank < extra)
}

/// The processes of one training run and the collectives it uses.
pub struct World {
    rank: usize,
    size: usize,
    /// Whether every rank said it was ready to train (`ready`), which happens once.
    ready: std::cell::Cell<Option<Readiness>>,
    #[cfg(feature = "mpi")]
    comm: mpi::topology::SimpleCommunicator,
    /// Finalizes MPI when the world is dropped (after every collective).
    #[cfg(feature = "mpi")]
    _universe: mpi::environment::Universe,
    /// Without MPI there is no world: no value of this type exists.
    #[cfg(not(feature = "mpi"))]
    never: std::convert::Infallible,
}

/// What the ranks found when they agreed to start training.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// Every rank is ready.
    pub all: bool,
    /// Rank 0 is ready (so its messages do not explain another rank's failure).
    pub rank0: bool,
    /// This rank is ready.
    pub me: bool,
}

#[cfg(not(feature = "mpi"))]
impl World {
    /// `None` unless started by a launcher with more than one process, which this
    /// binary refuses: it was built without MPI.
    pub fn start() -> Result<Option<World>, String> {
        match launched_size() {
            0 | 1 => Ok(None),
            n => Err(format!(
                "this nnc was built without MPI support, but a launcher (mpirun) started \
                 {n} processes: each would train its own copy of the model. Rebuild with \
                 `cargo install --path . --features mpi` (needs an MPI library and \
                 libclang), or run `nnc run` without mpirun"
            )),
        }
    }

    fn sum_f32(&self, _send: &[f32], _recv: &mut [f32]) {
        match self.never {}
    }

    fn max_u64(&self, _values: &mut [u64]) {
        match self.never {}
    }

    fn sum_f64(&self, _values: &mut [f64]) {
        match self.never {}
    }

    fn broadcast_u64(&self, _values: &mut [u64]) {
        match self.never {}
    }

    /// Stops every process of the job with `code` (MPI_Abort).
    pub fn abort(&self, _code: i32) -> ! {
        match self.never {}
    }
}

#[cfg(feature = "mpi")]
impl World {
    /// Starts MPI when a launcher started more than one process; `None` otherwise,
    /// so that `nnc run` alone never touches MPI.
    pub fn start() -> Result<Option<World>, String> {
        use mpi::topology::Communicator;
        if launched_size() <= 1 {
            return Ok(None);
        }
        let universe = mpi::initialize().ok_or("MPI was already initialized")?;
        let comm = universe.world();
        let (rank, size) = (comm.rank(), comm.size());
        if rank == 0 {
            say_why_when_terminated();
        }
        Ok(Some(World {
            rank: usize::try_from(rank).map_err(|_| format!("MPI gave rank {rank}"))?,
            size: usize::try_from(size).map_err(|_| format!("MPI gave size {size}"))?,
            ready: std::cell::Cell::new(None),
            comm,
            _universe: universe,
        }))
    }

    fn sum_f32(&self, send: &[f32], recv: &mut [f32]) {
        use mpi::collective::{CommunicatorCollectives, SystemOperation};
        self.comm
            .all_reduce_into(send, recv, SystemOperation::sum());
    }

    fn max_u64(&self, values: &mut [u64]) {
        use mpi::collective::{CommunicatorCollectives, SystemOperation};
        let send = values.to_vec();
        self.comm
            .all_reduce_into(&send[..], values, SystemOperation::max());
    }

    fn sum_f64(&self, values: &mut [f64]) {
        use mpi::collective::{CommunicatorCollectives, SystemOperation};
        let send = values.to_vec();
        self.comm
            .all_reduce_into(&send[..], values, SystemOperation::sum());
    }

    fn broadcast_u64(&self, values: &mut [u64]) {
        use mpi::collective::Root;
        use mpi::topology::Communicator;
        self.comm.process_at_rank(0).broadcast_into(values);
    }

    /// Stops every process of the job with `code` (MPI_Abort): what a rank does
    /// when it fails while the others may be waiting for it in a collective.
    pub fn abort(&self, code: i32) -> ! {
        use mpi::topology::Communicator;
        self.comm.abort(code)
    }
}

/// The launcher ends every process of a job with SIGTERM when one of them dies or
/// the job is cancelled (then SIGKILL). Rank 0 says so before it goes, since it is
/// the process the user watches.
#[cfg(feature = "mpi")]
fn say_why_when_terminated() {
    const MESSAGE: &[u8] = b"nnc: stopped by the MPI launcher: another process of the job \
        ended or the job was cancelled; no weights were written since the last save\n";
    /// Only async-signal-safe calls here: write(2) and _exit(2).
    extern "C" fn on_sigterm(_: libc::c_int) {
        // SAFETY: writes a static buffer of its own length to stderr, then exits
        // without running any Rust code that might hold a lock.
        unsafe {
            libc::write(2, MESSAGE.as_ptr().cast(), MESSAGE.len());
            libc::_exit(128 + libc::SIGTERM);
        }
    }
    // SAFETY: `action` is fully initialized (zeroed, then the handler, an empty mask
    // and the flags), and `on_sigterm` is async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigterm as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        action.sa_flags = libc::SA_RESETHAND;
        // Without the handler SIGTERM still ends the process, silently.
        let _ = libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
    }
}

impl World {
    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// This rank's rows of a batch of `rows` rows.
    pub fn shard(&self, rows: usize) -> Range<usize> {
        shard(rows, self.rank, self.size)
    }

    /// Every rank says whether it is ready to train, once, before the first step (or
    /// instead of it, after a failure), so that no rank waits in a step for one that
    /// has stopped. Later calls return the first answer without communicating.
    pub fn ready(&self, ok: bool) -> Readiness {
        if let Some(r) = self.ready.get() {
            return r;
        }
        // The maximum of "failed" flags: [any rank, rank 0].
        let failed = u64::from(!ok);
        let mut flags = [failed, if self.rank == 0 { failed } else { 0 }];
        self.max_u64(&mut flags);
        let r = Readiness {
            all: flags[0] == 0,
            rank0: flags[1] == 0,
            me: ok,
        };
        self.ready.set(Some(r));
        r
    }

    /// Whether `ready` was called (training started, or failed to).
    pub fn readied(&self) -> Option<Readiness> {
        self.ready.get()
    }

    /// Whether every rank holds the same `values` (e.g. the same data set size).
    pub fn all_equal(&self, values: &[u64]) -> bool {
        // max(v) == v and max(!v) == !v on every rank exactly when all are equal.
        // When two ranks differ, every rank differs from the largest or the smallest.
        let mut both: Vec<u64> = values.iter().flat_map(|&v| [v, !v]).collect();
        let mine = both.clone();
        self.max_u64(&mut both);
        both == mine
    }

    /// Prints `message` as this rank's error and stops every process of the job:
    /// for failures the other ranks cannot know of, while they may be waiting for
    /// this one in a collective.
    pub fn fail(&self, message: &str) -> ! {
        eprintln!("error: process {} of {}: {message}", self.rank, self.size);
        // 1: the exit code of errors in the input or the run (`cli::EXIT_ERRORS`).
        self.abort(1)
    }

    /// Gives every rank rank 0's `values` (the callbacks' decisions).
    pub fn from_rank0(&self, values: &mut [u64]) {
        self.broadcast_u64(values);
    }

    /// Sums `values` over the ranks (the epoch's metric totals).
    pub fn sum(&self, values: &mut [f64]) {
        self.sum_f64(values);
    }
}

/// A 64-bit digest of `values`' bits, for checking that every rank holds the same
/// weights.
pub fn digest(values: &[f32]) -> u64 {
    // SipHash with fixed keys: the same bits give the same digest in every process.
    let mut h = std::hash::DefaultHasher::new();
    for v in values {
        h.write_u32(v.to_bits());
    }
    h.finish()
}

/// Where, in one compiled train step's arena, the values the ranks sum live.
pub struct StepPlan {
    /// The gradient of every trainable weight, and the loss.
    weighted: Vec<Range<usize>>,
    /// Each batch normalization layer's batch mean and variance, with its moving
    /// mean (the shift that keeps the variance's sum accurate).
    batch_stats: Vec<BatchStats>,
    /// Floats in the flat buffer: the ranges, two per statistic, the stop flag.
    len: usize,
}

struct BatchStats {
    mean: Range<usize>,
    variance: Range<usize>,
    moving_mean: Range<usize>,
}

impl StepPlan {
    /// The plan of a train step `graph` laid out by `layout`: what the update tail
    /// (`Graph::update_start`) reads besides persistent tensors.
    pub fn new(graph: &Graph, layout: &Layout) -> Result<StepPlan, String> {
        let range = |id: TensorId| {
            layout
                .range(graph, id)
                .ok_or_else(|| format!("tensor `{}` has no place", graph.tensors[id].name))
        };
        let mut weighted = vec![];
        let mut batch_stats = vec![];
        for node in &graph.nodes {
            match node.op {
                Op::Update(_) => weighted.push(range(node.inputs[1])?),
                // [x, mean] -> variance: the pair of one layer.
                Op::BatchVariance => {
                    let (mean, variance) = (node.inputs[1], node.output);
                    let moving_mean = graph
                        .nodes
                        .iter()
                        .find(|n| matches!(n.op, Op::MovingAverage { .. }) && n.inputs[1] == mean)
                        .map(|n| n.inputs[0])
                        .ok_or("a batch mean without its moving average")?;
                    batch_stats.push(BatchStats {
                        mean: range(mean)?,
                        variance: range(variance)?,
                        moving_mean: range(moving_mean)?,
                    });
                }
                _ => {}
            }
        }
        weighted.push(range(graph.loss.ok_or("a train step without a loss")?)?);
        let len = weighted.iter().map(ExactSizeIterator::len).sum::<usize>()
            + batch_stats.iter().map(|s| 2 * s.mean.len()).sum::<usize>()
            + 1;
        Ok(StepPlan {
            weighted,
            batch_stats,
            len,
        })
    }
}

/// The send and receive buffers of the step's allreduce.
#[derive(Default)]
pub struct StepSum {
    send: Vec<f32>,
    recv: Vec<f32>,
}

impl StepSum {
    /// Sums one step over the ranks. `from` is this rank's share of the batch and
    /// the arena its gradient half left (`None` when its shard was empty: it adds
    /// zeros); `to` is the plan of the step whose update half runs next, whose
    /// places receive the sums. Returns whether any rank asked to stop (`stop`).
    pub fn reduce(
        &mut self,
        world: &World,
        arena: &mut [f32],
        from: Option<(&StepPlan, f32)>,
        to: &StepPlan,
        stop: bool,
    ) -> bool {
        self.send.clear();
        match from {
            Some((plan, weight)) => {
                for r in &plan.weighted {
                    self.send
                        .extend(arena[r.clone()].iter().map(|v| v * weight));
                }
                for s in &plan.batch_stats {
                    let terms: Vec<(f32, f32)> = (0..s.mean.len())
                        .map(|k| {
                            let at = |r: &Range<usize>| arena[r.start + k];
                            stat_terms(at(&s.mean), at(&s.variance), at(&s.moving_mean), weight)
                        })
                        .collect();
                    self.send.extend(terms.iter().map(|t| t.0));
                    self.send.extend(terms.iter().map(|t| t.1));
                }
            }
            None => self.send.resize(to.len - 1, 0.0),
        }
        self.send.push(f32::from(u8::from(stop)));
        self.recv.resize(self.send.len(), 0.0);
        world.sum_f32(&self.send, &mut self.recv);

        let mut sums = self.recv.iter().copied();
        for r in &to.weighted {
            for (dst, v) in arena[r.clone()].iter_mut().zip(sums.by_ref()) {
                *dst = v;
            }
        }
        for s in &to.batch_stats {
            let c = s.mean.len();
            let shift: Vec<f32> = sums.by_ref().take(c).collect();
            let second: Vec<f32> = sums.by_ref().take(c).collect();
            for k in 0..c {
                let moving = arena[s.moving_mean.start + k];
                let (mean, variance) = whole_batch(moving, shift[k], second[k]);
                arena[s.mean.start + k] = mean;
                arena[s.variance.start + k] = variance;
            }
        }
        sums.next().is_some_and(|flag| flag > 0.0)
    }
}

/// One shard's terms of the sum that gives a batch normalization channel's mean
/// and variance over the whole batch: its mean's shift `d` from the moving mean and
/// its second moment about the moving mean, `var + d²`, each weighted by the
/// shard's share of the batch. The moving mean is the same on every rank; shifting
/// by it keeps the variance below a difference of large numbers.
fn stat_terms(mean: f32, variance: f32, moving_mean: f32, weight: f32) -> (f32, f32) {
    let d = mean - moving_mean;
    (d * weight, (variance + d * d) * weight)
}

/// The whole batch's mean and (biased) variance from the sums of every shard's
/// `stat_terms`: `Σ w·(var + d²) - (Σ w·d)²` is the law of total variance.
fn whole_batch(moving_mean: f32, shift: f32, second: f32) -> (f32, f32) {
    (moving_mean + shift, (second - shift * shift).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_batch_in_order_the_first_ones_longer() {
        for size in 1..=5 {
            for rows in 0..=13 {
                let shards: Vec<Range<usize>> = (0..size).map(|r| shard(rows, r, size)).collect();
                assert_eq!(shards[0].start, 0);
                assert_eq!(shards[size - 1].end, rows);
                for w in shards.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                    assert!(w[0].len() == w[1].len() || w[0].len() == w[1].len() + 1);
                }
            }
        }
        // As MirroredStrategy splits 7 rows over 3 replicas, and 2 over 4.
        let lens = |rows, size| {
            (0..size)
                .map(|r| shard(rows, r, size).len())
                .collect::<Vec<_>>()
        };
        assert_eq!(lens(7, 3), [3, 2, 2]);
        assert_eq!(lens(2, 4), [1, 1, 0, 0]);
    }

    #[test]
    fn shard_statistics_add_up_to_the_whole_batch() {
        // A channel with a large mean and a small spread, over uneven shards.
        let x: Vec<f32> = (0..23)
            .map(|i| 40.0 + ((i * 7) % 11) as f32 * 0.013)
            .collect();
        let moments = |v: &[f32]| {
            let n = v.len() as f64;
            let mean = v.iter().map(|&a| f64::from(a)).sum::<f64>() / n;
            let var = v
                .iter()
                .map(|&a| (f64::from(a) - mean).powi(2))
                .sum::<f64>()
                / n;
            (mean, var)
        };
        let (mean, var) = moments(&x);
        for moving_mean in [0.0, 39.5, 40.06] {
            let (mut shift, mut second) = (0f32, 0f32);
            for r in 0..3 {
                let rows = &x[shard(x.len(), r, 3)];
                let (m, v) = moments(rows);
                let weight = rows.len() as f32 / x.len() as f32;
                let t = stat_terms(m as f32, v as f32, moving_mean, weight);
                (shift, second) = (shift + t.0, second + t.1);
            }
            let (m, v) = whole_batch(moving_mean, shift, second);
            assert!((f64::from(m) - mean).abs() < 1e-5 * mean, "{m} {mean}");
            // Without a shift (a moving mean of 0, the first step) the variance is a
            // difference of numbers near 1600: only its order of magnitude survives.
            let tolerance = if moving_mean == 0.0 { 2e-3 } else { 1e-3 * var };
            assert!(
                (f64::from(v) - var).abs() < tolerance,
                "{moving_mean}: {v} {var}"
            );
        }
    }

    #[test]
    fn digest_tells_weights_apart_by_their_bits() {
        assert_eq!(digest(&[1.0, 2.0]), digest(&[1.0, 2.0]));
        assert_ne!(digest(&[1.0, 2.0]), digest(&[2.0, 1.0]));
        assert_ne!(digest(&[0.0]), digest(&[-0.0]));
    }
}
