//! The Rust functions generated code calls (`abi.rs` declares their signatures to
//! Cranelift) and the state they keep: the thread count of matrix products and the
//! per-node profile.

use crate::ir::graph::LossKind;
use crate::ir::loss::{class_weights, weighted_loss};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Threads a matrix product or a node split over the batch may use (`nnc run
/// --threads N`); 1 runs it on the calling thread.
static THREADS: AtomicUsize = AtomicUsize::new(1);

/// Sets how many threads matrix products and nodes split over the batch use from
/// now on (at least 1). Products are split by output rows or columns
/// (`nnc_kernels`) or tiles (the `gemm` crate, on machines without AVX2), each
/// element summed by one thread: results are deterministic for a given count, and
/// with `nnc_kernels` do not depend on it at all.
pub fn set_threads(n: usize) {
    THREADS.store(n.max(1), Ordering::Relaxed);
}

/// The thread count matrix products and split nodes use.
pub fn threads() -> usize {
    THREADS.load(Ordering::Relaxed)
}

/// `c[m, n] = a[m, k] * b[k, n]` with arbitrary element strides, overwriting `c`
/// (row-major, contiguous). `a_is_input` is 1 when `a` is the call's input batch,
/// which no node writes: its nonzeros are then collected once per call.
///
/// # Safety
/// `a`, `b` and `c` must be valid for every element the shapes and strides reach
/// (`c` for writes, and distinct from `a` and `b`). Generated code passes arena or
/// batch pointers of tensors whose shapes `matmul.rs` checked to multiply, and
/// `Compiled::run` checks that the buffers hold those tensors.
pub(super) unsafe extern "C" fn nnc_sgemm(
    m: usize,
    k: usize,
    n: usize,
    a: *const f32,
    rsa: isize,
    csa: isize,
    b: *const f32,
    rsb: isize,
    csb: isize,
    c: *mut f32,
    a_is_input: i64,
) {
    #[cfg(target_arch = "x86_64")]
    if nnc_kernels::sgemm::supported() {
        // SAFETY: the caller guarantees the operands as `sgemm` requires them, and
        // AVX2/FMA were detected just above. With `a_is_input`, `a` is the batch,
        // which stays the same until the next call of generated code, and
        // `Compiled::call` says `inputs_changed` before each.
        unsafe {
            nnc_kernels::sgemm::sgemm(
                m,
                k,
                n,
                a,
                rsa,
                csa,
                b,
                rsb,
                csb,
                c,
                threads(),
                a_is_input != 0,
            )
        };
        return;
    }
    // The fallback product collects nothing it could keep.
    let _ = a_is_input;
    let threads = threads();
    let parallelism = if threads > 1 && m * n * k >= nnc_kernels::PARALLEL_MIN_MACS {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the caller guarantees `a`, `b` and `c` for the shapes and strides
    // given (`gemm` takes each column stride before its row stride);
    // `read_dst = false` means `c` is written, never read.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c,
            1,
            n as isize,
            false,
            a,
            csa,
            rsa,
            b,
            csb,
            rsb,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// The node number a profiled function marks its end with.
pub(super) const PROFILE_END: u64 = u64::MAX;

/// Time per (function, node) of the profiled functions run on this thread, and the
/// node running since the last mark.
#[derive(Default)]
struct Profiler {
    running: Option<(u64, u64, Instant)>,
    totals: HashMap<(u64, u64), Duration>,
}

thread_local! {
    static PROFILER: RefCell<Profiler> = RefCell::default();
}

/// Numbers the profiled functions, so that their nodes' times stay apart.
static NEXT_PROFILED: AtomicU64 = AtomicU64::new(0);

/// A number no other profiled function of this process has.
pub(super) fn next_profiled() -> u64 {
    NEXT_PROFILED.fetch_add(1, Ordering::Relaxed)
}

/// Seconds spent in each of the first `nodes` nodes of profiled function `function`
/// over every run so far on this thread.
pub(super) fn node_seconds(function: u64, nodes: usize) -> Vec<f64> {
    PROFILER.with(|p| {
        let p = p.borrow();
        (0..nodes as u64)
            .map(|n| {
                p.totals
                    .get(&(function, n))
                    .map_or(0.0, Duration::as_secs_f64)
            })
            .collect()
    })
}

/// Called by a profiled function before each node (and with `PROFILE_END` after the
/// last): the time since the previous mark goes to the node that was running.
pub(super) extern "C" fn nnc_profile_mark(function: u64, node: u64) {
    let now = Instant::now();
    PROFILER.with(|p| {
        let mut p = p.borrow_mut();
        if let Some((f, n, started)) = p.running.take() {
            *p.totals.entry((f, n)).or_default() += now - started;
        }
        if node != PROFILE_END {
            p.running = Some((function, node, now));
        }
    });
}

/// Adam's update of `n` weights (see `nnc_kernels::update`); `has_decay` is 1 for
/// AdamW, whose decay is `weight_decay` times `learning_rate`.
///
/// # Safety
/// `vector_adam()` must hold, and `w`, `g`, `m` and `v` must be four distinct
/// buffers of `n` floats. Generated code calls it only where the ABI table has it
/// (`vector_adam()`), with an update node's weights, gradient and moments, which
/// `optimizer.rs` checked to have one length.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe extern "C" fn nnc_adam(
    w: *mut f32,
    g: *const f32,
    m: *mut f32,
    v: *mut f32,
    n: usize,
    alpha: f32,
    one_minus_beta_1: f32,
    one_minus_beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
    learning_rate: f32,
    has_decay: i64,
) {
    let constants = nnc_kernels::update::Adam {
        alpha,
        one_minus_beta_1,
        one_minus_beta_2,
        epsilon,
        decay: (has_decay != 0).then_some((weight_decay, learning_rate)),
    };
    // SAFETY: the caller guarantees the four buffers of `n` floats, and
    // `vector_adam()` (AVX2 and FMA) what the kernel needs of the machine.
    unsafe { nnc_kernels::update::adam(w, g, m, v, n, constants) }
}

/// Whether generated code may call `nnc_adam`.
pub(super) fn vector_adam() -> bool {
    #[cfg(target_arch = "x86_64")]
    return nnc_kernels::sgemm::supported();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

pub(super) extern "C" fn nnc_powf(a: f32, b: f32) -> f32 {
    a.powf(b)
}

pub(super) extern "C" fn nnc_logf(a: f32) -> f32 {
    a.ln()
}

pub(super) extern "C" fn nnc_cosf(a: f32) -> f32 {
    a.cos()
}

/// The signature of `nnc_parts`.
pub(super) type Parts =
    unsafe extern "C" fn(*const u8, *mut f32, *const f32, *const f32, u64, usize);

/// A function generated for one part of a node split over the batch (see
/// `lower.rs`): the step's arguments, then the part's number.
type PartFn = unsafe extern "C" fn(*mut f32, *const f32, *const f32, u64, u64);

/// Runs parts `0..parts` of a node split over the batch, `part(arena, x, y, step,
/// p)` each, on up to `threads()` threads, each thread taking the next part as it is
/// free (a helper that gets its core late leaves its parts to the others). The
/// parts write disjoint slices of
/// the node's output and each computes its elements as the whole node would, so the
/// result does not depend on the thread count.
///
/// # Safety
/// `part` is a function of `PartFn`'s signature that writes only its own part's
/// slices (no two parts write the same element, and no part reads an element
/// another writes), and the buffers are those of the step function that calls this
/// (valid for what each part reads and writes, and unused by anything else during
/// the call).
pub(super) unsafe extern "C" fn nnc_parts(
    part: *const u8,
    arena: *mut f32,
    x: *const f32,
    y: *const f32,
    step: u64,
    parts: usize,
) {
    // SAFETY: the caller passes a function of `PartFn`'s signature.
    let part = unsafe { std::mem::transmute::<*const u8, PartFn>(part) };
    // Addresses as numbers, so that the closure below may cross threads.
    let (arena, x, y) = (arena as usize, x as usize, y as usize);
    let run = |p: usize| {
        // SAFETY: the caller's promise: each part writes only its own slices of
        // the buffers, which stay valid until this function returns.
        unsafe {
            part(
                arena as *mut f32,
                x as *const f32,
                y as *const f32,
                step,
                p as u64,
            )
        }
    };
    let threads = threads().min(parts);
    #[cfg(target_arch = "x86_64")]
    if threads > 1 {
        nnc_kernels::run_parts_on(threads, parts, &run);
        return;
    }
    (0..parts).for_each(run);
}

/// `ir::loss::weighted_loss` of `rows` rows: predictions `[rows, classes]`, targets
/// `[rows, width]`, weights `[rows]`; the kind as `LossKind::code` made it.
///
/// # Safety
/// `p`, `y` and `w` must hold those many floats: generated code passes the tensors
/// of a `WeightedLoss` node, whose shapes `Graph::verify` checked.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe extern "C" fn nnc_weighted_loss(
    kind: u64,
    delta: f32,
    p: *const f32,
    y: *const f32,
    w: *const f32,
    rows: usize,
    classes: usize,
    width: usize,
) -> f32 {
    let Some(kind) = LossKind::from_code(kind, delta) else {
        return f32::NAN;
    };
    // SAFETY: the caller passes buffers of these lengths (above).
    let (p, y, w) = unsafe {
        (
            std::slice::from_raw_parts(p, rows * classes),
            std::slice::from_raw_parts(y, rows * width),
            std::slice::from_raw_parts(w, rows),
        )
    };
    weighted_loss(kind, p, y, classes, w)
}

/// `ir::loss::class_weights` of `rows` target rows of `width` into `out`, with the
/// `classes` weights at `table`.
///
/// # Safety
/// `y` must hold `rows * width` floats, `table` `classes` and `out` `rows`: generated
/// code passes a `ClassWeights` node's tensors, whose shapes `Graph::verify` checked.
pub(super) unsafe extern "C" fn nnc_class_weights(
    y: *const f32,
    rows: usize,
    width: usize,
    table: *const f32,
    classes: usize,
    out: *mut f32,
) {
    // SAFETY: the caller passes buffers of these lengths (above); `out` is a
    // temporary of its own, distinct from `y` and `table`, which are only read.
    let (y, table, out) = unsafe {
        (
            std::slice::from_raw_parts(y, rows * width),
            std::slice::from_raw_parts(table, classes),
            std::slice::from_raw_parts_mut(out, rows),
        )
    };
    out.copy_from_slice(&class_weights(y, width, table));
}
