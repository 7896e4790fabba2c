//! Synchronous data-parallel training over MPI (`mpirun -np N nnc run`).
//!
//! Every process (rank) holds the whole model and the whole data set, draws the same
//! row order, and takes its shard of each batch: the global batch of `n` rows is cut
//! into `size` contiguous shards, the first `n % size` one row longer, as Keras's
//! MirroredStrategy splits a batch. Each rank runs the gradient half of the train
//! step on its shard; one `MPI_Allreduce` per step sums, in one flat buffer, every
//! gradient weighted by the shard's share of the batch (so the sum is the gradient
//! of the batch's mean loss), the loss and a stop flag; then every rank runs the
//! update half on the same sums, so the weights stay the same everywhere. Batch
//! normalization layers sum their statistics over the ranks inside the gradient
//! half (`StepPlan`). `docs/DISTRIBUTED.md` has the details and the costs.
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
    /// Batch normalization's sums inside the gradient half, in the order the step
    /// reaches them.
    syncs: Vec<StatSum>,
    /// The gradient of every trainable weight, and the loss.
    weighted: Vec<Range<usize>>,
}

/// Values the ranks sum in the middle of the gradient half, before node `at` runs.
struct StatSum {
    at: usize,
    ranges: Vec<Range<usize>>,
}

impl StepPlan {
    /// The plan of a train step `graph` laid out by `layout`: what the update tail
    /// (`Graph::update_start`) reads besides persistent tensors, and the batch
    /// statistics every rank computes over the whole batch (synchronized batch
    /// normalization, as Keras's `BatchNormalization(synchronized=True)`): each
    /// layer's batch mean, then its variance about that mean, and in the backward
    /// pass the sums over the batch of `dgamma` and `dbeta` that its `dx` uses. Each
    /// is a mean or a sum over the rank's rows; weighted by the shard's share of the
    /// batch and summed over the ranks, it is the whole batch's (`docs/DISTRIBUTED.md`).
    pub fn new(graph: &Graph, layout: &Layout) -> Result<StepPlan, String> {
        let range = |id: TensorId| {
            layout
                .range(graph, id)
                .ok_or_else(|| format!("tensor `{}` has no place", graph.tensors[id].name))
        };
        let mut weighted = vec![];
        let mut syncs: Vec<StatSum> = vec![];
        for (i, node) in graph.nodes.iter().enumerate() {
            let (at, ranges) = match node.op {
                Op::Update(_) => {
                    weighted.push(range(node.inputs[1])?);
                    continue;
                }
                Op::BatchMean | Op::BatchVariance => (i + 1, vec![range(node.output)?]),
                // [x, mean, var, gamma, dy, dgamma, dbeta] -> dx
                Op::BatchNormTrainGrad { .. } => {
                    (i, vec![range(node.inputs[5])?, range(node.inputs[6])?])
                }
                _ => continue,
            };
            match syncs.last_mut() {
                Some(last) if last.at == at => last.ranges.extend(ranges),
                _ => syncs.push(StatSum { at, ranges }),
            }
        }
        weighted.push(range(graph.loss.ok_or("a train step without a loss")?)?);
        Ok(StepPlan { syncs, weighted })
    }

    /// The ranges of the `k`th sum of batch statistics.
    fn stat_ranges(&self, k: usize) -> &[Range<usize>] {
        self.syncs.get(k).map_or(&[], |s| s.ranges.as_slice())
    }

    /// The nodes before which the gradient half stops for a sum (increasing).
    pub fn cuts(&self) -> Vec<usize> {
        self.syncs.iter().map(|s| s.at).collect()
    }
}

/// The send and receive buffers of the step's allreduces.
#[derive(Default)]
pub struct StepSum {
    send: Vec<f32>,
    recv: Vec<f32>,
}

impl StepSum {
    /// Sums the ranges `from` of this rank's arena weighted by its share of the
    /// batch (`None` when its shard is empty: it adds zeros), and writes the sums to
    /// the ranges `to`, those of the step whose functions run next. Returns the sum
    /// of `last`, a value sent after the ranges'.
    fn sum_ranges(
        &mut self,
        world: &World,
        arena: &mut [f32],
        from: Option<(&[Range<usize>], f32)>,
        to: &[Range<usize>],
        last: f32,
    ) -> f32 {
        self.send.clear();
        match from {
            Some((ranges, weight)) => {
                for r in ranges {
                    self.send
                        .extend(arena[r.clone()].iter().map(|v| v * weight));
                }
            }
            None => {
                let len = to.iter().map(ExactSizeIterator::len).sum();
                self.send.resize(len, 0.0);
            }
        }
        self.send.push(last);
        self.recv.resize(self.send.len(), 0.0);
        world.sum_f32(&self.send, &mut self.recv);
        let mut sums = self.recv.iter().copied();
        for r in to {
            for (dst, v) in arena[r.clone()].iter_mut().zip(sums.by_ref()) {
                *dst = v;
            }
        }
        sums.next().unwrap_or(0.0)
    }

    /// The `k`th sum of batch normalization statistics (`StepPlan::cuts`). `from`
    /// is this rank's plan and share of the batch (`None` for an empty shard), `to`
    /// the plan of the step whose next segment runs.
    pub fn sync(
        &mut self,
        world: &World,
        arena: &mut [f32],
        k: usize,
        from: Option<(&StepPlan, f32)>,
        to: &StepPlan,
    ) {
        let from = from.map(|(plan, weight)| (plan.stat_ranges(k), weight));
        self.sum_ranges(world, arena, from, to.stat_ranges(k), 0.0);
    }

    /// Sums the step's gradients and loss over the ranks, after the gradient half
    /// (`from` and `to` as for `sync`). Returns whether any rank asked to stop
    /// (`stop`).
    pub fn reduce(
        &mut self,
        world: &World,
        arena: &mut [f32],
        from: Option<(&StepPlan, f32)>,
        to: &StepPlan,
        stop: bool,
    ) -> bool {
        let from = from.map(|(plan, weight)| (plan.weighted.as_slice(), weight));
        let flag = f32::from(u8::from(stop));
        self.sum_ranges(world, arena, from, &to.weighted, flag) > 0.0
    }
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
    fn digest_tells_weights_apart_by_their_bits() {
        assert_eq!(digest(&[1.0, 2.0]), digest(&[1.0, 2.0]));
        assert_ne!(digest(&[1.0, 2.0]), digest(&[2.0, 1.0]));
        assert_ne!(digest(&[0.0]), digest(&[-0.0]));
    }
}
