//! Starting a child: everything is prepared before `fork` so the child only makes
//! async-signal-safe calls (the agent is multi-threaded), and exec failures travel back
//! over a close-on-exec pipe.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr;

use supermachine_proto::{ExecRequest, WindowSize};

use crate::reaper::Reaper;
use crate::sys::{cvt, pipe, read_fd};

/// `PATH` for children whose environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// An exec request checked and converted to C strings.
pub struct Plan {
    program: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    cwd: Option<CString>,
    uid: Option<u32>,
    gid: Option<u32>,
}

/// Why a request cannot become a [`Plan`].
#[derive(Debug)]
pub enum PlanError {
    /// The request itself is wrong (message for the client).
    Invalid(String),
    /// `argv[0]` was not found in `PATH`.
    NotFound(String),
}

fn cstring(bytes: &[u8], what: &str) -> Result<CString, PlanError> {
    CString::new(bytes).map_err(|_| PlanError::Invalid(format!("{what} contains a NUL byte")))
}

/// The child's environment: `KEY=VALUE` entries, later ones replacing earlier keys.
fn merged_env(req: &ExecRequest) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let key = |e: &[u8]| -> Vec<u8> {
        let end = e.iter().position(|&b| b == b'=').unwrap_or(e.len());
        e.get(..end).unwrap_or(e).to_vec()
    };
    let mut put = |entry: Vec<u8>| {
        let k = key(&entry);
        out.retain(|e| key(e) != k);
        out.push(entry);
    };
    if req.inherit_env {
        for (k, v) in std::env::vars_os() {
            let mut e = k.as_bytes().to_vec();
            e.push(b'=');
            e.extend_from_slice(v.as_bytes());
            put(e);
        }
    }
    for e in &req.env {
        put(e.clone());
    }
    if !out.iter().any(|e| e.starts_with(b"PATH=")) {
        out.push(format!("PATH={DEFAULT_PATH}").into_bytes());
    }
    out
}

fn is_executable(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path.
    let ok = unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0;
    ok && path.is_file()
}

/// Finds `name` in `path_var` (a `PATH` value) like `execvp` would.
fn search_path(name: &[u8], path_var: &[u8]) -> Option<Vec<u8>> {
    path_var
        .split(|&b| b == b':')
        .filter(|dir| dir.starts_with(b"/"))
        .map(|dir| Path::new(OsStr::from_bytes(dir)).join(OsStr::from_bytes(name)))
        .find(|p| is_executable(p))
        .map(|p| p.into_os_string().as_bytes().to_vec())
}

impl Plan {
    /// Validates `req` and resolves the program.
    pub fn new(req: &ExecRequest) -> Result<Plan, PlanError> {
        let Some(arg0) = req.argv.first() else {
            return Err(PlanError::Invalid("argv is empty".into()));
        };
        if arg0.is_empty() {
            return Err(PlanError::Invalid("argv[0] is empty".into()));
        }
        let env = merged_env(req);
        let program = if arg0.contains(&b'/') {
            arg0.clone()
        } else {
            let path_var = env
                .iter()
                .find_map(|e| e.strip_prefix(b"PATH="))
                .unwrap_or(DEFAULT_PATH.as_bytes());
            search_path(arg0, path_var).ok_or_else(|| {
                PlanError::NotFound(format!(
                    "{}: command not found",
                    String::from_utf8_lossy(arg0)
                ))
            })?
        };
        Ok(Plan {
            program: cstring(&program, "program")?,
            argv: req
                .argv
                .iter()
                .map(|a| cstring(a, "argv"))
                .collect::<Result<_, _>>()?,
            env: env
                .iter()
                .map(|e| cstring(e, "env"))
                .collect::<Result<_, _>>()?,
            // "/" rather than the agent's own directory: the same answer however it was started.
            cwd: Some(cstring(req.cwd.as_deref().unwrap_or(b"/"), "cwd")?),
            uid: req.uid,
            gid: req.gid,
        })
    }
}

/// The three descriptors the child gets as 0, 1 and 2.
pub struct ChildFds<'a> {
    /// Becomes stdin.
    pub stdin: &'a OwnedFd,
    /// Becomes stdout.
    pub stdout: &'a OwnedFd,
    /// Becomes stderr.
    pub stderr: &'a OwnedFd,
    /// The fds are a pty slave that must become the controlling terminal.
    pub controlling_tty: bool,
}

/// A pseudo-terminal pair, both close-on-exec.
pub struct Pty {
    /// The agent's side.
    pub master: OwnedFd,
    /// The child's side.
    pub slave: OwnedFd,
}

/// Sets a pty's window size.
pub fn set_window_size(master: RawFd, size: WindowSize) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the valid pointer.
    cvt(unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &ws) }).map(|_| ())
}

/// Opens a pty pair without ever having a descriptor that lacks close-on-exec (another
/// thread may fork at any time, and a leaked slave would keep the pty open).
pub fn open_pty(size: WindowSize) -> io::Result<Pty> {
    // SAFETY: plain open(2) of a constant path.
    let raw = cvt(unsafe {
        libc::open(
            b"/dev/ptmx\0".as_ptr().cast(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: fresh descriptor we own.
    let master = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: unlockpt on a ptmx descriptor.
    cvt(unsafe { libc::unlockpt(master.as_raw_fd()) })?;
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes open flags and returns a new descriptor.
    let peer = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) };
    let slave_raw = if peer >= 0 {
        peer
    } else {
        // Kernels before 4.13: open the slave by name.
        let mut name = [0 as libc::c_char; 128];
        // SAFETY: `name` is writable for its length.
        let rc = unsafe { libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        // SAFETY: ptsname_r wrote a NUL-terminated path into `name`.
        cvt(unsafe { libc::open(name.as_ptr(), flags) })?
    };
    // SAFETY: fresh descriptor we own.
    let slave = unsafe { OwnedFd::from_raw_fd(slave_raw) };
    set_window_size(master.as_raw_fd(), size)?;
    Ok(Pty { master, slave })
}

/// Where in the child setup a failure happened, for the error message.
const STAGES: [&str; 7] = [
    "setsid",
    "TIOCSCTTY",
    "dup2",
    "setgroups",
    "setgid",
    "setuid",
    "chdir",
];
const STAGE_EXEC: u8 = 7;

/// Forks and execs `plan`; returns the pid once exec has succeeded. The reaper gets
/// the child registered before it can be reaped.
pub fn spawn(
    plan: &Plan,
    fds: &ChildFds<'_>,
    reaper: &Reaper,
) -> io::Result<(
    libc::pid_t,
    std::sync::mpsc::Receiver<supermachine_proto::ExitStatus>,
)> {
    let mut argv: Vec<*const libc::c_char> = plan.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(ptr::null());
    let mut envp: Vec<*const libc::c_char> = plan.env.iter().map(|e| e.as_ptr()).collect();
    envp.push(ptr::null());
    let (err_read, err_write) = pipe()?;
    let raw = [
        fds.stdin.as_raw_fd(),
        fds.stdout.as_raw_fd(),
        fds.stderr.as_raw_fd(),
    ];

    let (pid, status_rx) = reaper.spawn_with(|| {
        // SAFETY: fork(2); the child branch below only calls async-signal-safe functions
        // on memory prepared before the fork, and always ends in execve or _exit.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: see above; child_setup never returns.
            unsafe {
                child_setup(
                    plan,
                    raw,
                    fds.controlling_tty,
                    &argv,
                    &envp,
                    err_write.as_raw_fd(),
                )
            }
        }
        Ok(pid)
    })?;
    drop(err_write);

    // Five bytes (errno, stage) mean the child failed before or in execve; end of file
    // means execve succeeded and closed the pipe.
    let mut report = [0u8; 5];
    let mut got = 0;
    while let Some(rest) = report.get_mut(got..) {
        match read_fd(err_read.as_raw_fd(), rest) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(e),
        }
        if got == report.len() {
            break;
        }
    }
    if got == 0 {
        return Ok((pid, status_rx));
    }
    reaper.forget(pid);
    let [e0, e1, e2, e3, stage] = report;
    let errno = i32::from_le_bytes([e0, e1, e2, e3]);
    let what = if stage == STAGE_EXEC {
        "execve"
    } else {
        STAGES.get(usize::from(stage)).copied().unwrap_or("setup")
    };
    let err = io::Error::from_raw_os_error(errno);
    Err(io::Error::new(err.kind(), format!("{what}: {err}")))
}

/// The child side of [`spawn`]. Only async-signal-safe calls; never returns.
unsafe fn child_setup(
    plan: &Plan,
    fds: [RawFd; 3],
    controlling_tty: bool,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    err_fd: RawFd,
) -> ! {
    let fail = |stage: u8| -> ! {
        let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
        let [e0, e1, e2, e3] = errno.to_le_bytes();
        let msg = [e0, e1, e2, e3, stage];
        libc::write(err_fd, msg.as_ptr().cast(), msg.len());
        libc::_exit(127)
    };

    // The agent's ignored SIGPIPE and any blocked signals must not leak into the child.
    let mut set: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut set);
    libc::sigprocmask(libc::SIG_SETMASK, &set, ptr::null_mut());
    libc::signal(libc::SIGPIPE, libc::SIG_DFL);

    // Own session and process group: signals to the group reach the whole job.
    if libc::setsid() < 0 {
        fail(0);
    }
    if controlling_tty && libc::ioctl(fds[0], libc::TIOCSCTTY, 0) < 0 {
        fail(1);
    }
    for (target, &fd) in fds.iter().enumerate() {
        let target = target as RawFd;
        if fd == target {
            // dup2 onto itself keeps close-on-exec set; clear it instead.
            if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                fail(2);
            }
        } else if libc::dup2(fd, target) < 0 {
            fail(2);
        }
    }
    if let Some(gid) = plan.gid {
        let groups = [gid];
        if libc::setgroups(1, groups.as_ptr()) < 0 {
            fail(3);
        }
        if libc::setgid(gid) < 0 {
            fail(4);
        }
    }
    if let Some(uid) = plan.uid {
        if libc::setuid(uid) < 0 {
            fail(5);
        }
    }
    if let Some(cwd) = &plan.cwd {
        if libc::chdir(cwd.as_ptr()) < 0 {
            fail(6);
        }
    }
    libc::execve(plan.program.as_ptr(), argv.as_ptr(), envp.as_ptr());
    fail(STAGE_EXEC)
}
