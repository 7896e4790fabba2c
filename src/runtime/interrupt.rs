//! Ctrl-C during training: the first SIGINT only raises a flag, which the epoch loop
//! reads after every batch to stop cleanly and keep the last complete epoch's weights.
//! The handler uninstalls itself as it runs (`SA_RESETHAND`), so a second Ctrl-C
//! ends the process at once, as users expect of a program that seems stuck.

use std::sync::atomic::{AtomicBool, Ordering};

/// The exit code of a process stopped by SIGINT, by the shells' convention (128 + 2).
pub const EXIT_INTERRUPTED: i32 = 130;

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Whether Ctrl-C was pressed since `install`.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Catches the next SIGINT (Ctrl-C) instead of dying of it. Elsewhere than on Unix
/// this does nothing, and Ctrl-C ends the process as before.
pub fn install() {
    REQUESTED.store(false, Ordering::SeqCst);
    #[cfg(unix)]
    unix::install();
}

#[cfg(unix)]
mod unix {
    use std::sync::atomic::Ordering;

    /// Only async-signal-safe work here: one atomic store.
    extern "C" fn on_sigint(_: libc::c_int) {
        super::REQUESTED.store(true, Ordering::SeqCst);
    }

    pub(super) fn install() {
        // SAFETY: `action` is fully initialized (zeroed, then the handler, an empty
        // mask and the flags), and `on_sigint` only stores to an atomic.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            action.sa_flags = libc::SA_RESETHAND | libc::SA_RESTART;
            // Without a handler Ctrl-C still ends the process: nothing to report.
            let _ = libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut());
        }
    }
}
