//! `supermachine-agent`: PID 1 inside the supermachine container, driven by the host
//! over vsock (or a Unix socket, for tests). See `docs/protocol.md`.
//!
//! As PID 1 it must never exit or panic (either one panics the guest kernel): every
//! error is a value, thread bodies catch unwinding panics, and fatal start-up problems
//! are retried instead of ending the process.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod cli;
mod connection;
mod guest;
mod listener;
mod reaper;
mod session;
mod spawn;
mod sys;

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use supermachine_proto::{
    encode_frame, ErrorCode, ErrorReply, Message, DEFAULT_VSOCK_PORT, MAX_CONNECTIONS,
};

use connection::Agent;
use listener::{Accepted, Listener};
use reaper::Reaper;

macro_rules! log {
    ($($arg:tt)*) => { eprintln!("supermachine-agent: {}", format_args!($($arg)*)) };
}

/// Gives up: exits when allowed, otherwise (PID 1) stays alive reaping children.
fn fatal(pid1: bool, msg: &str) -> ! {
    log!("{msg}");
    if !pid1 {
        std::process::exit(1);
    }
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid out pointer.
        if unsafe { libc::waitpid(-1, &mut status, 0) } < 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// Makes sure 0, 1 and 2 are open, so no socket or pipe of ours ever lands on them
/// (a child's dup2 onto 0..2 would then clobber it).
fn ensure_std_fds() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only queries the descriptor.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            // SAFETY: open(2) of a constant path; the result is deliberately kept open.
            unsafe { libc::open(b"/dev/null\0".as_ptr().cast(), libc::O_RDWR) };
        }
    }
}

/// Binds everything asked for. As PID 1 a failure is retried every second (the vsock
/// device may show up late); otherwise it ends the process.
fn bind_all(opts: &cli::Options, pid1: bool) -> Vec<Listener> {
    let vsock_port = opts.vsock_port.or_else(|| {
        let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
        cli::port_from_cmdline(&cmdline)
    });
    let want_vsock = opts.vsock_port.is_some() || opts.unix.is_none();
    let mut listeners = Vec::new();
    if let Some(path) = &opts.unix {
        match Listener::bind_unix(path) {
            Ok(l) => listeners.push(l),
            Err(e) => fatal(pid1, &format!("cannot listen on {}: {e}", path.display())),
        }
    }
    if want_vsock {
        let port = vsock_port.unwrap_or(DEFAULT_VSOCK_PORT);
        let mut attempts = 0u32;
        loop {
            match Listener::bind_vsock(port) {
                Ok(l) => {
                    listeners.push(l);
                    break;
                }
                Err(e) if pid1 => {
                    if attempts % 30 == 0 {
                        log!("cannot listen on vsock port {port}: {e}; retrying");
                    }
                    attempts = attempts.wrapping_add(1);
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(e) => fatal(false, &format!("cannot listen on vsock port {port}: {e}")),
            }
        }
    }
    listeners
}

fn accept_loop(listener: &Listener, agent: &Arc<Agent>) {
    loop {
        let stream = match listener.accept() {
            Ok(Accepted::Stream(s)) => s,
            Ok(Accepted::Refused { cid }) => {
                log!(
                    "refused a vsock connection from CID {cid}: only the host (CID 2) may connect"
                );
                continue;
            }
            Err(e) => {
                log!("accept failed: {e}");
                // EMFILE and friends: back off instead of spinning.
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if agent.connections.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            agent.connections.fetch_sub(1, Ordering::SeqCst);
            let err = ErrorReply::new(
                ErrorCode::TooManyConnections,
                format!("at most {MAX_CONNECTIONS} connections"),
            );
            if let Ok(bytes) = encode_frame(0, &Message::Error(err)) {
                let mut s = stream;
                let _ = s.write_all(&bytes);
            }
            continue;
        }
        let worker = agent.clone();
        let spawned = std::thread::Builder::new()
            .name("conn".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    connection::serve(stream, worker.clone())
                }));
                if served.is_err() {
                    log!("a connection thread panicked; serving on");
                }
                worker.connections.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            log!("cannot start a connection thread: {e}");
            agent.connections.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn main() {
    let pid1 = std::process::id() == 1;
    ensure_std_fds();
    let opts = match cli::parse(std::env::args_os().skip(1)) {
        Ok(o) => o,
        Err(msg) => fatal(pid1, &msg),
    };
    if opts.subreaper && !pid1 {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
            fatal(
                pid1,
                &format!(
                    "cannot become a subreaper: {}",
                    std::io::Error::last_os_error()
                ),
            );
        }
    }
    let reaper = match Reaper::start() {
        Ok(r) => r,
        Err(e) => fatal(pid1, &format!("cannot start the reaper: {e}")),
    };
    let listeners = bind_all(&opts, pid1);
    let agent = Arc::new(Agent {
        reaper,
        ready_boottime_ns: sys::boottime_ns(),
        pid1,
        connections: AtomicU32::new(0),
    });
    let mut acceptors = Vec::new();
    for listener in listeners {
        log!("ready on {}", listener.describe());
        let agent = agent.clone();
        let spawned = std::thread::Builder::new()
            .name("accept".into())
            .spawn(move || loop {
                // accept_loop never returns; a panic inside restarts it.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    accept_loop(&listener, &agent)
                }));
            });
        match spawned {
            Ok(h) => acceptors.push(h),
            Err(e) => fatal(pid1, &format!("cannot start the accept thread: {e}")),
        }
    }
    // The acceptors run forever; main only has to never return.
    loop {
        std::thread::park();
    }
}
