//! The one place that calls `wait4`: it reaps every child (our execs and the orphans the
//! kernel hands to PID 1) and routes exec statuses, with peak RSS, to their sessions.
//!
//! Forks happen under the same lock that guards the pid table, so a child cannot be
//! reaped before its session has registered for its status.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::sys::lock;

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// Exit code, or 128 + the signal that killed it (as the host expects).
    pub code: u32,
    /// `ru_maxrss` of the child, KiB.
    pub peak_rss_kib: u64,
}

/// Called with the status of the pid it was registered for.
pub type Notify = Box<dyn FnOnce(Status) + Send>;

#[derive(Default)]
struct Table {
    waiting: HashMap<libc::pid_t, Notify>,
    /// Bumped on every fork, so the reaper knows children may exist again.
    generation: u64,
}

/// Handle on the reaper thread.
#[derive(Clone)]
pub struct Reaper {
    table: Arc<(Mutex<Table>, Condvar)>,
}

/// Converts a wait status word to the host's code.
pub fn fold_status(status: libc::c_int) -> u32 {
    if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status).unsigned_abs()
    } else {
        libc::WEXITSTATUS(status).unsigned_abs()
    }
}

impl Reaper {
    /// Starts the reaper thread.
    pub fn start() -> io::Result<Reaper> {
        let reaper = Reaper {
            table: Arc::new((Mutex::new(Table::default()), Condvar::new())),
        };
        let worker = reaper.clone();
        std::thread::Builder::new()
            .name("reaper".into())
            .stack_size(128 * 1024)
            .spawn(move || loop {
                // The loop body never panics by design; if it ever did, reaping must go on.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.run()));
            })?;
        Ok(reaper)
    }

    /// Runs `fork` (which returns the child's pid) with the pid table locked and
    /// registers `notify` for the pid.
    pub fn spawn_with<F>(&self, fork: F, notify: Notify) -> io::Result<libc::pid_t>
    where
        F: FnOnce() -> io::Result<libc::pid_t>,
    {
        let (lock_pair, cond) = &*self.table;
        let mut table = lock(lock_pair);
        let pid = fork()?;
        table.waiting.insert(pid, notify);
        table.generation = table.generation.wrapping_add(1);
        drop(table);
        cond.notify_all();
        Ok(pid)
    }

    fn run(&self) {
        let (lock_pair, cond) = &*self.table;
        loop {
            let generation = lock(lock_pair).generation;
            let mut status: libc::c_int = 0;
            // SAFETY: rusage is plain data filled in by the kernel.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: `status` and `usage` are valid out pointers.
            let pid = unsafe { libc::wait4(-1, &mut status, 0, &mut usage) };
            if pid > 0 {
                let notify = lock(lock_pair).waiting.remove(&pid);
                if let Some(notify) = notify {
                    notify(Status {
                        code: fold_status(status),
                        peak_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
                    });
                }
                continue;
            }
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => {}
                Some(libc::ECHILD) => {
                    // No children: none can appear except through our own forks (orphans
                    // only come from descendants). Sleep until the next fork; the timeout
                    // is only a safety net.
                    let table = lock(lock_pair);
                    if table.generation == generation {
                        let _ = cond.wait_timeout(table, Duration::from_secs(1));
                    }
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}
