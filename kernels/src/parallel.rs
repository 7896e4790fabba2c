//! Helper threads for the matrix products of `nnc run --threads N`.
//!
//! A product is split into parts that write disjoint outputs. The calling thread and
//! the helpers claim parts one at a time until none is left, so a helper that is
//! slow to start (parked, or its core taken by another process) costs nothing: the
//! caller runs the parts itself. Idle helpers spin briefly, then park until the next
//! product: on a machine whose cores share execution units (this project's 2-vCPU
//! test VM behaves so), a spinning helper slows the thread doing the work.
//!
//! One word, `TICKET`, publishes a product: its part count and its next unclaimed
//! part. A part is claimed by a compare-and-swap of that word, and only a claimed
//! part reads the job. A claim therefore never belongs to a product that is over
//! (a finished product leaves no unclaimed part), and a claimed part keeps the
//! product's caller, and so its job, alive until the part is counted done. A thread
//! descheduled at any point, for as long as it likes, holds either no claim (its
//! compare-and-swap fails, or wins a part of whichever product then runs) or a
//! claimed part its caller waits for; it never reads a stale job or count.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread::{self, Thread};

/// The job of a product: part `p` runs `job(p)`.
type Job<'a> = &'a (dyn Fn(usize) + Sync);

/// The product being run: `parts << 32 | next unclaimed part`. Between products
/// every part is claimed (`next == parts`), so nothing can be claimed.
static TICKET: AtomicU64 = AtomicU64::new(0);
/// The job of the product being run, on its caller's stack. Written before the
/// ticket is published; read only by a thread holding a claimed part.
static JOB: AtomicPtr<Job<'static>> = AtomicPtr::new(ptr::null_mut());
/// Parts of the product being run that are over (returned or panicked).
static DONE: AtomicUsize = AtomicUsize::new(0);
/// The first panic of a part of the product being run, resumed on its caller.
static PANIC: Mutex<Option<Box<dyn Any + Send>>> = Mutex::new(None);
/// Set while a product uses the helpers: one at a time (tests run products side by
/// side, and a part may itself run a product).
static IN_USE: AtomicBool = AtomicBool::new(false);

struct Helper {
    sleeping: AtomicBool,
    thread: OnceLock<Thread>,
}

static HELPERS: Mutex<Vec<&'static Helper>> = Mutex::new(Vec::new());

/// Runs `job(0)`, ..., `job(parts - 1)`, each exactly once, on this thread and up to
/// `parts - 1` helper threads, and returns when all have run. Parts must not depend
/// on one another or on which thread runs them. If parts panic, the others still
/// run, then the first panic is resumed here.
pub fn run_parts(parts: usize, job: &(dyn Fn(usize) + Sync)) {
    run_parts_on(parts, parts, job);
}

/// `run_parts` on at most `threads` threads (this one and `threads - 1` helpers).
/// More parts than threads let the threads that run share the work when one is
/// late (a helper waiting for a core the machine's other processes hold): each
/// takes the next part as it is free, and the caller waits for one part at most.
pub fn run_parts_on(threads: usize, parts: usize, job: &(dyn Fn(usize) + Sync)) {
    // The ticket counts parts in 32 bits: more (no split comes near) run here.
    let count = u32::try_from(parts).unwrap_or(0);
    if count <= 1 || threads <= 1 {
        (0..parts).for_each(job);
        return;
    }
    let Some(_pool) = Pool::take() else {
        // Another product is using the helpers: run every part here.
        (0..parts).for_each(job);
        return;
    };
    let job: Job<'_> = job;
    JOB.store(ptr::from_ref(&job).cast_mut().cast(), Ordering::Relaxed);
    stress::point();
    DONE.store(0, Ordering::Relaxed);
    stress::point();
    // Publishes the job and the reset count with the ticket (a release store).
    TICKET.store(u64::from(count) << 32, Ordering::SeqCst);
    stress::point();
    // After publishing: a helper that checks for work before this would park.
    wake_helpers(threads.min(parts) - 1);
    work();
    stress::point();
    let mut wait = Backoff::default();
    while DONE.load(Ordering::Acquire) < parts {
        wait.pause();
    }
    // Every part is over and none is left to claim: nothing reads `job` any more.
    JOB.store(ptr::null_mut(), Ordering::Relaxed);
    let panicked = PANIC.lock().unwrap_or_else(PoisonError::into_inner).take();
    if let Some(payload) = panicked {
        panic::resume_unwind(payload);
    }
}

/// The right to post products to the helpers, released when dropped.
struct Pool;

impl Pool {
    fn take() -> Option<Pool> {
        IN_USE
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| Pool)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        IN_USE.store(false, Ordering::Release);
    }
}

/// Whether `ticket` has a part left to claim.
fn claimable(ticket: u64) -> bool {
    ticket & 0xffff_ffff < ticket >> 32
}

/// Claims and runs parts of the product being run until none is left.
fn work() {
    loop {
        let ticket = TICKET.load(Ordering::Relaxed);
        if !claimable(ticket) {
            return;
        }
        stress::point();
        // Acquire: the job and the count reset, written before the ticket.
        let claim =
            TICKET.compare_exchange_weak(ticket, ticket + 1, Ordering::AcqRel, Ordering::Relaxed);
        if claim.is_ok() {
            run_claimed((ticket & 0xffff_ffff) as usize);
        }
    }
}

/// Runs a claimed part of the product being run and counts it done, even if it
/// panics.
fn run_claimed(part: usize) {
    stress::point();
    // SAFETY: the claim made after the product's ticket was stored (a release that
    // the claim acquired) shows this thread the product's `JOB`, a `Job` on its
    // caller's stack. That caller returns only once `DONE` counts this part, below,
    // and the next product's caller overwrites `JOB` after that: the `Job` is alive,
    // and so is what it borrows, until the call below has returned.
    let job: Job<'_> = unsafe { *JOB.load(Ordering::Relaxed) };
    stress::point();
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| job(part))) {
        let mut first = PANIC.lock().unwrap_or_else(PoisonError::into_inner);
        first.get_or_insert(payload);
    }
    stress::point();
    DONE.fetch_add(1, Ordering::Release);
}

/// Wakes the first `n` helpers that sleep, spawning them on first use (fewer if
/// threads cannot be made; the caller then runs their parts). No allocation after
/// the first products.
fn wake_helpers(n: usize) {
    let mut all = HELPERS.lock().unwrap_or_else(PoisonError::into_inner);
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
        // SeqCst, like the ticket's store before and the helper's side: either
        // this sees the helper asleep, or the helper sees the ticket.
        if h.sleeping.load(Ordering::SeqCst) {
            if let Some(t) = h.thread.get() {
                t.unpark();
            }
        }
    }
}

/// A helper's loop: wait for a part to claim, work on the product.
fn serve(helper: &'static Helper) {
    loop {
        let mut wait = Backoff::default();
        while !claimable(TICKET.load(Ordering::Relaxed)) {
            if wait.spinning() {
                continue;
            }
            helper.sleeping.store(true, Ordering::SeqCst);
            stress::point();
            if !claimable(TICKET.load(Ordering::SeqCst)) {
                thread::park();
            }
            helper.sleeping.store(false, Ordering::SeqCst);
        }
        stress::point();
        work();
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

/// Stalls at the steps where a thread descheduled could meet another product:
/// nothing, except in the crate's tests while `ON` is set.
#[cfg(not(test))]
mod stress {
    #[inline(always)]
    pub fn point() {}
}

#[cfg(test)]
mod stress {
    use std::cell::Cell;
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread;
    use std::time::Duration;

    /// While set, each `point` yields the core now and then, and now and then
    /// sleeps for longer than many small products take.
    pub static ON: AtomicBool = AtomicBool::new(false);

    thread_local! {
        /// A xorshift state, seeded differently on each thread and run.
        static STATE: Cell<u64> = Cell::new(RandomState::new().hash_one(thread::current().id()) | 1);
    }

    pub fn point() {
        if !ON.load(Ordering::Relaxed) {
            return;
        }
        let r = STATE.with(|state| {
            let mut x = state.get();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            state.set(x);
            x
        });
        match r % 64 {
            0 => thread::sleep(Duration::from_micros(10 + (r >> 32) % 100)),
            1..=12 => thread::yield_now(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU8;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    /// The pool's tests, one at a time: each needs the helpers to itself.
    static SERIAL: Mutex<()> = Mutex::new(());

    /// Runs `f` on a thread of its own and fails if it takes longer than `limit`:
    /// a product that never returns fails the test instead of hanging it.
    fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (send, receive) = mpsc::channel();
        thread::spawn(move || {
            let _ = send.send(panic::catch_unwind(AssertUnwindSafe(f)));
        });
        match receive.recv_timeout(limit) {
            Ok(Ok(value)) => value,
            Ok(Err(payload)) => panic::resume_unwind(payload),
            Err(_) => panic!("no result after {limit:?}: a product never returned"),
        }
    }

    /// Makes sure the helpers of a 3-part product exist and have served one.
    fn warm_up() {
        within(Duration::from_secs(10), || run_parts(3, &|_| {}));
    }

    /// Whether this thread is one of the pool's helpers.
    fn on_helper() -> bool {
        thread::current()
            .name()
            .is_some_and(|name| name.starts_with("nnc-helper"))
    }

    #[test]
    fn every_part_runs_once_while_threads_stall_anywhere() {
        let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        const PRODUCTS: usize = 20_000;
        const MOST_PARTS: usize = 4;
        let (on_helpers, errors) = within(Duration::from_secs(15), || {
            // `runs[product * MOST_PARTS + part]` counts the runs of each part.
            let runs: Vec<AtomicU8> = (0..PRODUCTS * MOST_PARTS)
                .map(|_| AtomicU8::new(0))
                .collect();
            let on_helpers = AtomicUsize::new(0);
            let mut errors = Vec::new();
            stress::ON.store(true, Ordering::Relaxed);
            for product in 0..PRODUCTS {
                // Part counts that change from one product to the next: a stale
                // count would let a late helper claim a part that is not there.
                let parts = 2 + product % (MOST_PARTS - 1);
                run_parts(parts, &|part| {
                    runs[product * MOST_PARTS + part].fetch_add(1, Ordering::Relaxed);
                    if on_helper() {
                        on_helpers.fetch_add(1, Ordering::Relaxed);
                    }
                });
                let ran = |part: usize| runs[product * MOST_PARTS + part].load(Ordering::Relaxed);
                if let Some(part) = (0..parts).find(|&part| ran(part) == 0) {
                    errors.push(format!("product {product} returned before part {part} ran"));
                }
            }
            stress::ON.store(false, Ordering::Relaxed);
            // Late runs, by helpers that woke up in a later product, show up now.
            for product in 0..PRODUCTS {
                let parts = 2 + product % (MOST_PARTS - 1);
                for part in 0..MOST_PARTS {
                    let ran = runs[product * MOST_PARTS + part].load(Ordering::Relaxed);
                    let expected = u8::from(part < parts);
                    if ran != expected {
                        errors.push(format!(
                            "product {product} of {parts} parts: part {part} ran {ran} times"
                        ));
                    }
                }
            }
            (on_helpers.into_inner(), errors)
        });
        assert!(
            errors.is_empty(),
            "{} errors, the first: {:?}",
            errors.len(),
            &errors[..errors.len().min(5)]
        );
        // The stalls must not have left the caller alone with every part.
        assert!(
            on_helpers > PRODUCTS / 10,
            "only {on_helpers} parts ran on helpers"
        );
    }

    #[test]
    fn a_panic_on_a_helper_reaches_the_caller() {
        let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        warm_up();
        let outcome = within(Duration::from_secs(10), || {
            let helper_started = AtomicBool::new(false);
            panic::catch_unwind(AssertUnwindSafe(|| {
                run_parts(3, &|_| {
                    if on_helper() {
                        helper_started.store(true, Ordering::SeqCst);
                        panic!("a part failed on a helper");
                    }
                    // The caller's parts wait for a helper to take one.
                    while !helper_started.load(Ordering::SeqCst) {
                        thread::yield_now();
                    }
                })
            }))
            .map_err(|payload| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        });
        assert_eq!(outcome, Err(Some("a part failed on a helper".to_string())));
        // The helper that panicked still serves: every part of the next product runs.
        let runs: Vec<AtomicU8> = (0..3).map(|_| AtomicU8::new(0)).collect();
        let runs = within(Duration::from_secs(10), move || {
            run_parts(3, &|part| {
                runs[part].fetch_add(1, Ordering::Relaxed);
            });
            runs.iter()
                .map(|r| r.load(Ordering::Relaxed))
                .collect::<Vec<_>>()
        });
        assert_eq!(runs, [1, 1, 1]);
    }

    #[test]
    fn a_panic_on_the_caller_waits_for_the_helpers_parts() {
        let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        warm_up();
        // Helpers may claim every part before the caller claims one: try again then.
        for _ in 0..20 {
            let (panicked, started, finished) = within(Duration::from_secs(10), || {
                let (started, finished) = (AtomicUsize::new(0), AtomicUsize::new(0));
                let returned = AtomicBool::new(false);
                let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                    run_parts(3, &|_| {
                        if on_helper() {
                            started.fetch_add(1, Ordering::SeqCst);
                            // Still running after the caller's part has panicked: a
                            // caller that does not wait returns meanwhile.
                            let deadline = Instant::now() + Duration::from_secs(1);
                            while !returned.load(Ordering::SeqCst) && Instant::now() < deadline {
                                thread::sleep(Duration::from_millis(1));
                            }
                            finished.fetch_add(1, Ordering::SeqCst);
                        } else {
                            while started.load(Ordering::SeqCst) == 0 {
                                thread::yield_now();
                            }
                            panic!("a part failed on the caller");
                        }
                    })
                }));
                let counts = (
                    started.load(Ordering::SeqCst),
                    finished.load(Ordering::SeqCst),
                );
                returned.store(true, Ordering::SeqCst);
                (outcome.is_err(), counts.0, counts.1)
            });
            if panicked {
                assert!(started > 0);
                assert_eq!(
                    finished, started,
                    "the panic came out while parts still ran"
                );
                return;
            }
        }
        panic!("the caller never ran a part");
    }
}
