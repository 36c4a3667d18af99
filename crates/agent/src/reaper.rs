//! The one place that calls `waitpid`: it reaps every child (our execs and the orphans
//! the kernel hands to PID 1 or a subreaper) and routes exec statuses to their sessions.
//!
//! Forks happen under the same lock that guards the pid table, so a child cannot be
//! reaped before its session has registered for its status.

use std::collections::HashMap;
use std::io;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use supermachine_proto::ExitStatus;

use crate::sys::lock;

#[derive(Default)]
struct Table {
    /// Pids whose exit a session waits for.
    waiting: HashMap<libc::pid_t, Sender<ExitStatus>>,
    /// Bumped on every fork, so the reaper knows children may exist again.
    generation: u64,
}

/// Handle on the reaper thread.
#[derive(Clone)]
pub struct Reaper {
    table: Arc<(Mutex<Table>, Condvar)>,
}

/// Converts a `waitpid` status word.
pub fn decode_status(status: libc::c_int) -> ExitStatus {
    if libc::WIFSIGNALED(status) {
        ExitStatus::Signal {
            signal: libc::WTERMSIG(status),
            core_dumped: libc::WCOREDUMP(status),
        }
    } else {
        ExitStatus::Code(libc::WEXITSTATUS(status))
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
    /// registers the pid; the receiver gets its exit status.
    pub fn spawn_with<F>(&self, fork: F) -> io::Result<(libc::pid_t, Receiver<ExitStatus>)>
    where
        F: FnOnce() -> io::Result<libc::pid_t>,
    {
        let (lock_pair, cond) = &*self.table;
        let mut table = lock(lock_pair);
        let pid = fork()?;
        let (tx, rx) = mpsc::channel();
        table.waiting.insert(pid, tx);
        table.generation = table.generation.wrapping_add(1);
        drop(table);
        cond.notify_all();
        Ok((pid, rx))
    }

    /// Stops routing `pid`'s status (its exec failed; the status is not wanted).
    pub fn forget(&self, pid: libc::pid_t) {
        lock(&self.table.0).waiting.remove(&pid);
    }

    fn run(&self) {
        let (lock_pair, cond) = &*self.table;
        loop {
            let generation = lock(lock_pair).generation;
            let mut status: libc::c_int = 0;
            // SAFETY: `status` is a valid out pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
            if pid > 0 {
                if let Some(tx) = lock(lock_pair).waiting.remove(&pid) {
                    // The session may be gone already; then nobody needs the status.
                    let _ = tx.send(decode_status(status));
                }
                continue;
            }
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => {}
                Some(libc::ECHILD) => {
                    // No children: none can appear except through our own forks, and
                    // orphans only come from descendants. Sleep until the next fork (the
                    // timeout is only a safety net).
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
