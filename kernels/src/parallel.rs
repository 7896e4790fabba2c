//! Helper threads for the matrix products of `nnc run --threads N`.
//!
//! A product is split into parts that write disjoint outputs. The calling thread and
//! the helpers claim parts one at a time until none is left, so a helper that is
//! slow to start (parked, or its core taken by another process) costs nothing: the
//! caller runs the parts itself. Idle helpers spin briefly, then park until the next
//! product: on a machine whose cores share execution units (this project's 2-vCPU
//! test VM behaves so), a spinning helper slows the thread doing the work.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::{self, Thread};

/// The job of the product being run. The pointer is valid while the posting thread
/// waits in `run_parts`, which is until every part has run.
type Job = *const (dyn Fn(usize) + Sync);

#[derive(Clone, Copy)]
struct SendJob(Job);
// SAFETY: the job is `Sync`, and only called through a claimed part (see `work`).
unsafe impl Send for SendJob {}

/// The product being run, shared by the caller and the helpers.
struct Shared {
    /// Bumped for each product; helpers wake up when it changes.
    generation: AtomicU64,
    /// `generation << 32 | next unclaimed part`: a claim made for an older product
    /// fails, so a late helper never runs a part of the wrong job.
    claim: AtomicU64,
    parts: AtomicUsize,
    done: AtomicUsize,
    job: Mutex<Option<SendJob>>,
}

static SHARED: Shared = Shared {
    generation: AtomicU64::new(0),
    claim: AtomicU64::new(0),
    parts: AtomicUsize::new(0),
    done: AtomicUsize::new(0),
    job: Mutex::new(None),
};

struct Helper {
    sleeping: AtomicBool,
    thread: OnceLock<Thread>,
}

static HELPERS: Mutex<Vec<&'static Helper>> = Mutex::new(Vec::new());
/// One product at a time uses the helpers (tests may run products side by side).
static IN_USE: Mutex<()> = Mutex::new(());

/// Runs `job(0)`, ..., `job(parts - 1)`, on this thread and up to `parts - 1`
/// helper threads, and returns when all have run. Parts must not depend on one
/// another or on which thread runs them.
pub fn run_parts(parts: usize, job: &(dyn Fn(usize) + Sync)) {
    if parts <= 1 {
        (0..parts).for_each(job);
        return;
    }
    let Ok(_exclusive) = IN_USE.try_lock() else {
        // Another product is using the helpers: run every part here.
        (0..parts).for_each(job);
        return;
    };
    // SAFETY of the lifetime erasure: parts run only while claimed, and this
    // function returns only after every part has run.
    let erased: Job = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(job) };
    let generation = SHARED.generation.load(Ordering::Relaxed) + 1;
    *SHARED.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(SendJob(erased));
    SHARED.parts.store(parts, Ordering::Relaxed);
    SHARED.done.store(0, Ordering::Relaxed);
    SHARED.claim.store(generation << 32, Ordering::SeqCst);
    SHARED.generation.store(generation, Ordering::SeqCst);
    // After posting: a helper woken before would see no new product and sleep on.
    wake_helpers(parts - 1);
    // SAFETY: `erased` is this call's `job`.
    unsafe { work(generation, erased, parts) };
    let mut wait = Backoff::default();
    while SHARED.done.load(Ordering::Acquire) < parts {
        wait.pause();
    }
}

/// Claims and runs parts of product `generation` until none is left.
///
/// # Safety
/// `job` is the job of that product, or the product has no unclaimed part left.
unsafe fn work(generation: u64, job: Job, parts: usize) {
    loop {
        let claim = SHARED.claim.load(Ordering::Acquire);
        let part = (claim & 0xffff_ffff) as usize;
        if claim >> 32 != generation || part >= parts {
            return;
        }
        let claimed =
            SHARED
                .claim
                .compare_exchange(claim, claim + 1, Ordering::AcqRel, Ordering::Relaxed);
        if claimed.is_ok() {
            // SAFETY: a claimed part keeps the poster waiting, so `job` is alive.
            unsafe { (*job)(part) };
            SHARED.done.fetch_add(1, Ordering::Release);
        }
    }
}

/// Wakes the first `n` helpers that sleep, spawning them on first use (fewer if
/// threads cannot be made; the caller then runs their parts). No allocation after
/// the first products.
fn wake_helpers(n: usize) {
    let mut all = HELPERS.lock().unwrap_or_else(|e| e.into_inner());
    while all.len() < n {
        let helper: &'static Helper = Box::leak(Box::new(Helper {
            sleeping: AtomicBool::new(false),
            thread: OnceLock::new(),
        }));
        let name = format!("nnc-helper-{}", all.len() + 1);
        match thread::Builder::new()
            .name(name)
            .spawn(move || serve(helper))
        {
            Ok(handle) => {
                let _ = helper.thread.set(handle.thread().clone());
                all.push(helper);
            }
            Err(_) => break,
        }
    }
    for h in all.iter().take(n) {
        if h.sleeping.load(Ordering::SeqCst) {
            if let Some(t) = h.thread.get() {
                t.unpark();
            }
        }
    }
}

/// A helper's loop: wait for a new product, work on its parts.
fn serve(helper: &'static Helper) {
    let mut seen = SHARED.generation.load(Ordering::Acquire);
    loop {
        let mut wait = Backoff::default();
        while SHARED.generation.load(Ordering::Acquire) == seen {
            if wait.spinning() {
                continue;
            }
            helper.sleeping.store(true, Ordering::SeqCst);
            if SHARED.generation.load(Ordering::SeqCst) == seen {
                thread::park();
            }
            helper.sleeping.store(false, Ordering::SeqCst);
        }
        seen = SHARED.generation.load(Ordering::Acquire);
        let job = *SHARED.job.lock().unwrap_or_else(|e| e.into_inner());
        let parts = SHARED.parts.load(Ordering::Acquire);
        if let Some(SendJob(job)) = job {
            // SAFETY: `work` runs `job` only through a claim of generation `seen`;
            // if `job` belongs to another product, every such claim fails.
            unsafe { work(seen, job, parts) };
        }
    }
}

/// Spins a little, then yields the core at each pause: when the machine has more
/// runnable threads than cores, the thread being waited for may need this one's.
#[derive(Default)]
struct Backoff {
    spins: u32,
}

impl Backoff {
    const SPINS: u32 = 1 << 10;

    /// Spins once and says so, or says the spinning is over.
    fn spinning(&mut self) -> bool {
        let spin = self.spins < Self::SPINS;
        if spin {
            self.spins += 1;
            std::hint::spin_loop();
        }
        spin
    }

    fn pause(&mut self) {
        if self.spins < Self::SPINS {
            self.spins += 1;
            std::hint::spin_loop();
        } else {
            thread::yield_now();
        }
    }
}
