//! Starting a child: everything is prepared before `fork` so the child only makes
//! async-signal-safe calls (the agent is multi-threaded), and setup or exec failures
//! travel back, with their errno, over a close-on-exec pipe.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr;

use supermachine_proto::Resize;

use crate::reaper::{Notify, Reaper};
use crate::sys::{cvt, pipe, read_fd};

/// `PATH` for children whose environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One command checked and converted to C strings.
pub struct Plan {
    program: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    cwd: Option<CString>,
    /// For messages.
    pub cwd_text: String,
    /// For messages.
    pub program_text: String,
}

fn cstring(text: &str, what: &str) -> Result<CString, String> {
    CString::new(text).map_err(|_| format!("REQUEST.{what} contains a NUL byte"))
}

fn is_executable(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path.
    let ok = unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0;
    ok && path.is_file()
}

/// Finds `name` in `path_var` (a `PATH` value) as `execvp` would.
fn search_path(name: &str, path_var: &str) -> Option<String> {
    path_var
        .split(':')
        .filter(|dir| dir.starts_with('/'))
        .map(|dir| Path::new(dir).join(OsStr::new(name)))
        .find(|p| is_executable(p))
        .map(|p| p.to_string_lossy().into_owned())
}

impl Plan {
    /// Checks one command. `env` is the final environment as `(name, value)` pairs.
    /// Err is a message for an ERROR frame (the request itself is unusable). A program
    /// that is not found is not an error here: [`Plan::program_missing`] says so and
    /// the session reports it as a failed exec.
    pub fn new(
        argv: &[String],
        env: &[(String, String)],
        cwd: Option<&str>,
    ) -> Result<Plan, String> {
        let Some(arg0) = argv.first() else {
            return Err("REQUEST.argv is empty".into());
        };
        let path_var = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_str())
            .unwrap_or(DEFAULT_PATH);
        let program = if arg0.contains('/') {
            arg0.clone()
        } else {
            search_path(arg0, path_var).unwrap_or_default()
        };
        Ok(Plan {
            program: cstring(&program, "argv")?,
            argv: argv
                .iter()
                .map(|a| cstring(a, "argv"))
                .collect::<Result<_, _>>()?,
            env: env
                .iter()
                .map(|(k, v)| cstring(&format!("{k}={v}"), "env"))
                .collect::<Result<_, _>>()?,
            // "/" rather than the agent's own directory: the same answer however it started.
            cwd: Some(cstring(cwd.unwrap_or("/"), "cwd")?),
            cwd_text: cwd.unwrap_or("/").to_string(),
            program_text: arg0.clone(),
        })
    }

    /// `argv[0]` has no `/` and is not in `PATH`.
    pub fn program_missing(&self) -> bool {
        self.program.as_bytes().is_empty()
    }
}

/// The three descriptors the child gets as 0, 1 and 2.
pub struct ChildFds {
    /// Becomes stdin.
    pub stdin: RawFd,
    /// Becomes stdout.
    pub stdout: RawFd,
    /// Becomes stderr.
    pub stderr: RawFd,
    /// The fds are a pty slave that becomes the controlling terminal (new session);
    /// otherwise the child only gets its own process group.
    pub tty: bool,
}

/// A pseudo-terminal pair, both close-on-exec.
pub struct Pty {
    /// The agent's side.
    pub master: OwnedFd,
    /// The child's side.
    pub slave: OwnedFd,
}

/// Sets a pty's window size.
pub fn set_window_size(master: RawFd, size: Resize) -> io::Result<()> {
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
pub fn open_pty(size: Resize) -> io::Result<Pty> {
    let open_ptmx = || {
        // SAFETY: plain open(2) of a constant path.
        cvt(unsafe {
            libc::open(
                b"/dev/ptmx\0".as_ptr().cast(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            )
        })
    };
    let raw = match open_ptmx() {
        Ok(fd) => fd,
        Err(first) => {
            // supermachine's generated x86_64 init mounts no devpts, and /dev/ptmx
            // only works with one at /dev/pts: mount it on first use, then retry.
            mount_devpts().map_err(|e| {
                io::Error::new(
                    first.kind(),
                    format!("/dev/ptmx: {first}; mounting devpts on /dev/pts: {e}"),
                )
            })?;
            open_ptmx()?
        }
    };
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

/// Mounts a devpts instance on /dev/pts (creating the directory).
fn mount_devpts() -> io::Result<()> {
    match std::fs::create_dir("/dev/pts") {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    // SAFETY: mount(2) with constant NUL-terminated strings.
    cvt(unsafe {
        libc::mount(
            b"devpts\0".as_ptr().cast(),
            b"/dev/pts\0".as_ptr().cast(),
            b"devpts\0".as_ptr().cast(),
            libc::MS_NOSUID | libc::MS_NOEXEC,
            b"gid=5,mode=0620,ptmxmode=0666\0".as_ptr().cast(),
        )
    })
    .map(|_| ())
}

/// Where a child's setup failed (sent back with the errno).
const STAGE_SETSID: u8 = 0;
const STAGE_CTTY: u8 = 1;
const STAGE_DUP: u8 = 2;
const STAGE_CHDIR: u8 = 3;
const STAGE_EXEC: u8 = 4;

/// A child that was forked but failed before or in `execve`. It exits with
/// [`SetupFailure::code`]; its status still arrives through the reaper.
#[derive(Debug)]
pub struct SetupFailure {
    /// The line for the child's stderr, in the published agent's shape
    /// (`agent: chdir failed`) plus the path and the real errno text.
    pub message: String,
}

/// The code a failed exec exits with: 126 when the file is there but cannot be run,
/// 127 otherwise (the shell's convention, and the published agent's 127 for chdir).
fn failure_code(stage: u8, errno: i32) -> i32 {
    if stage == STAGE_EXEC
        && matches!(
            errno,
            libc::EACCES | libc::ENOEXEC | libc::EISDIR | libc::ETXTBSY | libc::EPERM
        )
    {
        126
    } else {
        127
    }
}

/// The message for a command not found in `PATH`.
pub fn not_found_message(plan: &Plan) -> String {
    format!(
        "agent: exec {} failed: {}\n",
        plan.program_text,
        io::Error::from_raw_os_error(libc::ENOENT)
    )
}

/// Forks and execs `plan`. `Ok(Ok(pid))` once exec has succeeded; `Ok(Err(..))` when the
/// child failed in setup (it has exited; `notify` still gets its status); `Err` when
/// no child was made. The reaper has the child registered before it can be reaped.
pub fn spawn(
    plan: &Plan,
    fds: &ChildFds,
    reaper: &Reaper,
    notify: Notify,
) -> io::Result<(libc::pid_t, Option<SetupFailure>)> {
    let mut argv: Vec<*const libc::c_char> = plan.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(ptr::null());
    let mut envp: Vec<*const libc::c_char> = plan.env.iter().map(|e| e.as_ptr()).collect();
    envp.push(ptr::null());
    let (err_read, err_write) = pipe()?;
    let raw = [fds.stdin, fds.stdout, fds.stderr];

    let pid = reaper.spawn_with(
        || {
            // SAFETY: fork(2); the child branch below only calls async-signal-safe
            // functions on memory prepared before the fork, and ends in execve or _exit.
            let pid = unsafe { libc::fork() };
            if pid < 0 {
                return Err(io::Error::last_os_error());
            }
            if pid == 0 {
                // SAFETY: see above; child_setup never returns.
                unsafe { child_setup(plan, raw, fds.tty, &argv, &envp, err_write.as_raw_fd()) }
            }
            Ok(pid)
        },
        notify,
    )?;
    drop(err_write);

    // Five bytes (errno, stage) mean the child failed before or in execve; end of file
    // means execve succeeded and closed the pipe.
    let mut report = [0u8; 5];
    let mut got = 0;
    while let Some(rest) = report.get_mut(got..).filter(|r| !r.is_empty()) {
        match read_fd(err_read.as_raw_fd(), rest) {
            Ok(0) => break,
            Ok(n) => got += n,
            // The child is registered; without a report treat it as started.
            Err(_) => break,
        }
    }
    if got < report.len() {
        return Ok((pid, None));
    }
    let [e0, e1, e2, e3, stage] = report;
    let err = io::Error::from_raw_os_error(i32::from_le_bytes([e0, e1, e2, e3]));
    let message = match stage {
        STAGE_CHDIR => format!("agent: chdir {} failed: {err}\n", plan.cwd_text),
        STAGE_EXEC => format!("agent: exec {} failed: {err}\n", plan.program_text),
        STAGE_SETSID => format!("agent: setsid failed: {err}\n"),
        STAGE_CTTY => format!("agent: TIOCSCTTY failed: {err}\n"),
        _ => format!("agent: dup2 failed: {err}\n"),
    };
    Ok((pid, Some(SetupFailure { message })))
}

/// The child side of [`spawn`]. Only async-signal-safe calls; never returns.
unsafe fn child_setup(
    plan: &Plan,
    fds: [RawFd; 3],
    tty: bool,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    err_fd: RawFd,
) -> ! {
    let fail = |stage: u8| -> ! {
        let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
        let [e0, e1, e2, e3] = errno.to_le_bytes();
        let msg = [e0, e1, e2, e3, stage];
        libc::write(err_fd, msg.as_ptr().cast(), msg.len());
        libc::_exit(failure_code(stage, errno))
    };

    // Every signal at its default disposition and none blocked: the agent's ignored
    // SIGPIPE (and anything else) must not leak into the workload.
    // The raw system call: libc wrappers refuse the signals they reserve (32, 33),
    // which may arrive ignored. All-zero is SIG_DFL, no flags, empty mask in every
    // architecture's kernel sigaction layout.
    let dfl = [0u64; 4];
    for sig in 1..65 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig as libc::c_long,
                dfl.as_ptr(),
                ptr::null_mut::<u64>(),
                8 as libc::c_long,
            );
        }
    }
    let mut set: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut set);
    libc::sigprocmask(libc::SIG_SETMASK, &set, ptr::null_mut());

    // Own process group (a new session with a pty): SIGNAL frames and a closed
    // connection reach the whole job.
    if tty {
        if libc::setsid() < 0 {
            fail(STAGE_SETSID);
        }
        if libc::ioctl(fds[0], libc::TIOCSCTTY, 0) < 0 {
            fail(STAGE_CTTY);
        }
    } else if libc::setpgid(0, 0) < 0 {
        fail(STAGE_SETSID);
    }
    for (target, &fd) in fds.iter().enumerate() {
        let target = target as RawFd;
        if fd == target {
            // dup2 onto itself keeps close-on-exec set; clear it instead.
            if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                fail(STAGE_DUP);
            }
        } else if libc::dup2(fd, target) < 0 {
            fail(STAGE_DUP);
        }
    }
    if let Some(cwd) = &plan.cwd {
        if libc::chdir(cwd.as_ptr()) < 0 {
            fail(STAGE_CHDIR);
        }
    }
    libc::execve(plan.program.as_ptr(), argv.as_ptr(), envp.as_ptr());
    fail(STAGE_EXEC)
}
