//! Helper threads for the matrix products of `nnc run --threads N`.
//!
//! A product is split into parts that write disjoint outputs; the calling thread
//! runs part 0 and each helper one other part. Helpers wait by spinning for a
//! while (a train step calls products every few microseconds, faster than a
//! sleeping thread wakes up), then park until the next product.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// How long an idle helper spins before it parks.
const SPIN: Duration = Duration::from_millis(5);

/// A part of a product to run: `(job, part)`. The pointer is valid while the
/// posting thread waits in `run_parts`.
type Job = *const (dyn Fn(usize) + Sync);

struct Helper {
    /// Bumped for each new job; the helper runs a job once per bump.
    posted: AtomicU64,
    /// Bumped by the helper when it has run the posted job.
    finished: AtomicU64,
    job: Mutex<Option<(SendJob, usize)>>,
    sleeping: AtomicBool,
    thread: OnceLock<Thread>,
}

/// The job pointer, sent to the helper thread.
#[derive(Clone, Copy)]
struct SendJob(Job);
// SAFETY: the job is `Sync` and outlives its use (see `run_parts`).
unsafe impl Send for SendJob {}

static HELPERS: OnceLock<Mutex<Vec<&'static Helper>>> = OnceLock::new();
/// Serializes products that use helpers (tests may run products side by side).
static IN_USE: Mutex<()> = Mutex::new(());
static SPAWNED: AtomicUsize = AtomicUsize::new(0);

/// Runs `job(0)`, ..., `job(parts - 1)`, part 0 on this thread and the others on
/// helper threads, and returns when all have run. Parts must not depend on one
/// another's order.
pub fn run_parts(parts: usize, job: &(dyn Fn(usize) + Sync)) {
    if parts <= 1 {
        job(0);
        return;
    }
    let Ok(_exclusive) = IN_USE.try_lock() else {
        // Another product is using the helpers: run every part here.
        (0..parts).for_each(job);
        return;
    };
    let helpers = helpers(parts - 1);
    // SAFETY of the lifetime erasure: every helper has finished with `job` before
    // this function returns (the wait below).
    let erased: Job = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(job) };
    let mut targets = Vec::with_capacity(helpers.len());
    for (h, part) in helpers.iter().zip(1..) {
        *h.job.lock().unwrap_or_else(|e| e.into_inner()) = Some((SendJob(erased), part));
        let target = h.posted.fetch_add(1, Ordering::SeqCst) + 1;
        if h.sleeping.load(Ordering::SeqCst) {
            if let Some(t) = h.thread.get() {
                t.unpark();
            }
        }
        targets.push(target);
    }
    job(0);
    // Parts no helper could take (threads could not be spawned) run here.
    (helpers.len() + 1..parts).for_each(job);
    for (h, target) in helpers.iter().zip(targets) {
        while h.finished.load(Ordering::Acquire) < target {
            std::hint::spin_loop();
        }
    }
}

/// The first `n` helpers, spawned on first use.
fn helpers(n: usize) -> Vec<&'static Helper> {
    let mut all = HELPERS
        .get_or_init(|| Mutex::new(Vec::new()))
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    while all.len() < n {
        let helper: &'static Helper = Box::leak(Box::new(Helper {
            posted: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            job: Mutex::new(None),
            sleeping: AtomicBool::new(false),
            thread: OnceLock::new(),
        }));
        let spawned = thread::Builder::new()
            .name(format!(
                "nnc-helper-{}",
                SPAWNED.fetch_add(1, Ordering::Relaxed)
            ))
            .spawn(move || serve(helper));
        match spawned {
            Ok(handle) => {
                let _ = helper.thread.set(handle.thread().clone());
                all.push(helper);
            }
            // No more threads: the products run with the helpers there are.
            Err(_) => break,
        }
    }
    all.iter().take(n).copied().collect()
}

/// A helper's loop: wait for a posted job, run its part, report.
fn serve(helper: &'static Helper) {
    let mut done = 0u64;
    loop {
        let idle_since = Instant::now();
        while helper.posted.load(Ordering::Acquire) == done {
            if idle_since.elapsed() < SPIN {
                std::hint::spin_loop();
                continue;
            }
            helper.sleeping.store(true, Ordering::SeqCst);
            if helper.posted.load(Ordering::SeqCst) == done {
                thread::park();
            }
            helper.sleeping.store(false, Ordering::SeqCst);
        }
        let posted = *helper.job.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((SendJob(job), part)) = posted {
            // SAFETY: the poster waits for `finished` before `job` goes away.
            unsafe { (*job)(part) };
        }
        done += 1;
        helper.finished.store(done, Ordering::Release);
    }
}
