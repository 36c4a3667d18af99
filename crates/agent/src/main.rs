//! `supermachine-agent`: the in-guest agent supermachine's host drives (see
//! `docs/protocol.md`). With no arguments it is PID 1 of the guest and serves vsock port
//! 1028; `--exec-stdio` serves one connection on stdin/stdout; `--tcp-stdio HOST PORT`
//! is a raw TCP bridge.
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
mod control;
mod cpus;
mod env;
mod files;
mod listener;
mod reaper;
mod session;
mod spawn;
mod sys;
mod tcp_bridge;

use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use supermachine_proto::{write_frame, Kind, AGENT_READY_PATH, AGENT_VSOCK_PORT};

use connection::Conn;
use listener::{Accepted, Listener};
use reaper::Reaper;

/// Connections served at once; more get an ERROR and are closed.
const MAX_CONNECTIONS: u32 = 256;

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

/// Binds the Unix socket (if asked) and vsock port 1028. Vsock is required unless a
/// Unix socket was asked for: as PID 1 it is retried every second (the device may show
/// up late); otherwise a failure ends the process. With a Unix socket, vsock is tried
/// once and skipped if unavailable (tests on a host).
fn bind_all(unix: Option<&std::path::Path>, pid1: bool) -> Vec<Listener> {
    let mut listeners = Vec::new();
    if let Some(path) = unix {
        match Listener::bind_unix(path) {
            Ok(l) => listeners.push(l),
            Err(e) => fatal(pid1, &format!("cannot listen on {}: {e}", path.display())),
        }
    }
    let mut attempts = 0u32;
    loop {
        match Listener::bind_vsock(AGENT_VSOCK_PORT) {
            Ok(l) => {
                listeners.push(l);
                break;
            }
            Err(e) if unix.is_some() => {
                log!("vsock port {AGENT_VSOCK_PORT} not available ({e}); serving the Unix socket only");
                break;
            }
            Err(e) if pid1 => {
                if attempts % 30 == 0 {
                    log!("cannot listen on vsock port {AGENT_VSOCK_PORT}: {e}; retrying");
                }
                attempts = attempts.wrapping_add(1);
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => fatal(
                false,
                &format!("cannot listen on vsock port {AGENT_VSOCK_PORT}: {e}"),
            ),
        }
    }
    listeners
}

/// Tells init-oci and the launcher the agent is listening.
fn write_ready_file() {
    let _ = std::fs::create_dir_all("/run");
    if let Err(e) = files::write_atomic(std::path::Path::new(AGENT_READY_PATH), b"", None) {
        log!("cannot write {AGENT_READY_PATH}: {e}");
    }
}

fn accept_loop(listener: &Listener, reaper: &Reaper, active: &Arc<AtomicU32>) {
    loop {
        let fd = match listener.accept() {
            Ok(Accepted::Stream(fd)) => fd,
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
        let conn = match Conn::socket(fd) {
            Ok(c) => c,
            Err(e) => {
                log!("cannot use a connection: {e}");
                continue;
            }
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            let msg =
                format!("agent busy: at most {MAX_CONNECTIONS} connections at once; retry later");
            let mut w = std::fs::File::from(conn.w);
            let _ = write_frame(&mut w, Kind::Error as u8, msg.as_bytes());
            continue;
        }
        let reaper = reaper.clone();
        let active2 = active.clone();
        let spawned = std::thread::Builder::new()
            .name("conn".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    connection::serve(&conn, &reaper)
                }));
                if served.is_err() {
                    log!("a connection thread panicked; serving on");
                }
                active2.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            log!("cannot start a connection thread: {e}");
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn listen(unix: Option<std::path::PathBuf>, pid1: bool) -> ! {
    if !pid1 {
        // Orphans of our children come back to us to be reaped, as they would to PID 1.
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    }
    if pid1 {
        match spawn::ensure_devpts() {
            Ok(true) => log!("mounted devpts on /dev/pts"),
            Ok(false) => {}
            // Not fatal: only pseudo-terminals are missing; a tty exec retries.
            Err(e) => log!("cannot mount devpts on /dev/pts: {e}"),
        }
    }
    let reaper = match Reaper::start() {
        Ok(r) => r,
        Err(e) => fatal(pid1, &format!("cannot start the reaper: {e}")),
    };
    let listeners = bind_all(unix.as_deref(), pid1);
    let active = Arc::new(AtomicU32::new(0));
    for listener in listeners {
        log!("listening on {}", listener.describe());
        let reaper = reaper.clone();
        let active = active.clone();
        let spawned = std::thread::Builder::new()
            .name("accept".into())
            .spawn(move || loop {
                // accept_loop never returns; a panic inside restarts it.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    accept_loop(&listener, &reaper, &active)
                }));
            });
        if let Err(e) = spawned {
            fatal(pid1, &format!("cannot start the accept thread: {e}"));
        }
    }
    write_ready_file();
    // The acceptors run forever; main only has to never return.
    loop {
        std::thread::park();
    }
}

/// `--exec-stdio`: one connection on stdin (read) and stdout (write).
fn exec_stdio() -> ! {
    let reaper = match Reaper::start() {
        Ok(r) => r,
        Err(e) => fatal(false, &format!("cannot start the reaper: {e}")),
    };
    // SAFETY: dup(2) of the standard descriptors; the copies are ours.
    let (r, w) = unsafe {
        (
            libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 3),
            libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3),
        )
    };
    if r < 0 || w < 0 {
        fatal(false, "cannot duplicate stdin/stdout");
    }
    // SAFETY: fresh descriptors we own.
    let conn = unsafe {
        Conn {
            r: OwnedFd::from_raw_fd(r),
            w: OwnedFd::from_raw_fd(w),
            socket: sys::is_socket(w),
        }
    };
    connection::serve(&conn, &reaper);
    std::process::exit(0)
}

fn main() {
    let pid1 = std::process::id() == 1;
    ensure_std_fds();
    let mode = match cli::parse(
        std::env::args_os().skip(1),
        std::env::var_os(cli::UNIX_SOCKET_ENV),
    ) {
        Ok(m) => m,
        Err(msg) => fatal(pid1, &msg),
    };
    match mode {
        cli::Mode::Listen { unix } => listen(unix, pid1),
        cli::Mode::ExecStdio => exec_stdio(),
        cli::Mode::TcpStdio { host, port } => match tcp_bridge::run(&host, port) {
            Ok(()) => std::process::exit(0),
            Err(e) => fatal(false, &format!("--tcp-stdio: {e}")),
        },
    }
}
