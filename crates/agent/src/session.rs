//! One exec session: the child, its output pumps, its stdin feeder and its exit report.
//!
//! Each session runs up to three small threads (stdout pump + supervisor, stderr pump,
//! stdin writer). They are created, parked, before the fork, so running out of threads
//! is an error reply rather than a half-started session.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use supermachine_proto::{
    ErrorCode, ErrorReply, ExecRequest, ExitStatus, Message, WindowSize, MAX_DATA_CHUNK,
    MAX_SESSIONS, STDIN_WINDOW,
};

use crate::connection::Conn;
use crate::spawn::{self, ChildFds, Plan, PlanError};
use crate::sys::{dup, lock, pipe, read_fd, write_all_fd};

/// Stack for session threads: they only shuttle buffers that live on the heap.
const THREAD_STACK: usize = 128 * 1024;

/// What the connection keeps of a running session.
pub struct SessionHandle {
    /// The child's pid (also its process group: the child calls `setsid`).
    pub pid: libc::pid_t,
    stdin: Option<StdinFeed>,
    pty_master: Option<Arc<OwnedFd>>,
}

struct StdinFeed {
    tx: Sender<Vec<u8>>,
    /// Bytes queued for the child and not yet acknowledged.
    outstanding: Arc<AtomicU32>,
}

impl SessionHandle {
    /// Queues stdin bytes; empty `data` closes stdin. Refuses data beyond the window.
    pub fn feed_stdin(&mut self, data: Vec<u8>) -> Result<(), ErrorReply> {
        if data.is_empty() {
            // Dropping the sender lets the writer finish the queue and close the pipe.
            self.stdin = None;
            return Ok(());
        }
        let Some(feed) = &self.stdin else {
            return Err(ErrorReply::new(
                ErrorCode::InvalidRequest,
                "stdin is closed or was not requested",
            ));
        };
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let before = feed.outstanding.fetch_add(len, Ordering::SeqCst);
        if before.saturating_add(len) > STDIN_WINDOW {
            feed.outstanding.fetch_sub(len, Ordering::SeqCst);
            return Err(ErrorReply::new(
                ErrorCode::FlowControl,
                format!("stdin window of {STDIN_WINDOW} bytes exceeded; {len} bytes dropped"),
            ));
        }
        if feed.tx.send(data).is_err() {
            feed.outstanding.fetch_sub(len, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Sets the pty window size.
    pub fn resize(&self, size: WindowSize) -> Result<(), ErrorReply> {
        let Some(master) = &self.pty_master else {
            return Err(ErrorReply::new(
                ErrorCode::InvalidRequest,
                "session has no pty",
            ));
        };
        spawn::set_window_size(master.as_raw_fd(), size).map_err(|e| os_error(ErrorCode::Os, &e))
    }

    /// Kills the child's whole process group (used when the connection goes away).
    pub fn kill_all(&self) {
        // SAFETY: plain kill(2) calls; the pid is > 1 (a fork result).
        unsafe {
            libc::kill(-self.pid, libc::SIGKILL);
            libc::kill(self.pid, libc::SIGKILL);
        }
    }
}

/// An [`ErrorReply`] for an OS error.
pub fn os_error(code: ErrorCode, e: &io::Error) -> ErrorReply {
    ErrorReply {
        code,
        errno: e.raw_os_error().unwrap_or(0),
        message: e.to_string(),
    }
}

fn spawn_thread<F: FnOnce() + Send + 'static>(name: &str, f: F) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(THREAD_STACK)
        .spawn(move || {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
                eprintln!("supermachine-agent: a session thread panicked; serving on");
            }
        })
}

/// A parked thread that runs its job once it receives its input.
fn parked<T: Send + 'static>(
    name: &str,
    job: impl FnOnce(T) + Send + 'static,
) -> io::Result<(Sender<T>, JoinHandle<()>)> {
    let (tx, rx): (Sender<T>, Receiver<T>) = mpsc::channel();
    let handle = spawn_thread(name, move || {
        if let Ok(input) = rx.recv() {
            job(input);
        }
    })?;
    Ok((tx, handle))
}

/// Copies a child's output to the client until end of stream, then sends the empty
/// end-of-stream frame. Blocking sends are the back-pressure: while the client's socket
/// is full, the pipe is not read and the child blocks writing.
fn pump(fd: &OwnedFd, conn: &Conn, id: u32, stderr: bool) {
    let mut buf = vec![0u8; MAX_DATA_CHUNK as usize];
    let frame = |data: Vec<u8>| {
        if stderr {
            Message::Stderr { data }
        } else {
            Message::Stdout { data }
        }
    };
    loop {
        match read_fd(fd.as_raw_fd(), &mut buf) {
            // A dead connection still drains the pipe so the child never blocks on it.
            Ok(n) if n > 0 => {
                let data = buf.get(..n).unwrap_or(&[]).to_vec();
                conn.out.send(id, &frame(data));
            }
            // End of file, or EIO once every pty slave descriptor is closed.
            _ => break,
        }
    }
    conn.out.send(id, &frame(Vec::new()));
}

/// Writes queued stdin to the child and returns credit. After the child stops reading
/// (EPIPE) the rest is dropped but still acknowledged, so the client never stalls.
fn stdin_writer(fd: OwnedFd, rx: Receiver<Vec<u8>>, outstanding: &AtomicU32, conn: &Conn, id: u32) {
    let mut fd = Some(fd);
    for data in rx {
        if let Some(f) = &fd {
            if write_all_fd(f.as_raw_fd(), &data).is_err() {
                fd = None;
            }
        }
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        outstanding.fetch_sub(len, Ordering::SeqCst);
        conn.out.send(id, &Message::StdinAck { bytes: len });
    }
}

struct SupervisorInput {
    output: Arc<OwnedFd>,
    stderr_thread: Option<JoinHandle<()>>,
    exit: Receiver<ExitStatus>,
}

/// Streams stdout, waits for stderr and the exit, then ends the session with `Exit`.
fn supervise(input: SupervisorInput, conn: &Conn, id: u32) {
    pump(&input.output, conn, id, false);
    drop(input.output);
    if let Some(t) = input.stderr_thread {
        let _ = t.join();
    }
    // The reaper always sends; a closed channel would mean a lost status, reported
    // as the conventional "killed" code rather than hanging the session.
    let status = input.exit.recv().unwrap_or(ExitStatus::Code(255));
    // Exit first, then forget the session: stdin the client sent before it saw Exit
    // still finds the session (and is acknowledged) instead of drawing a NoSuchSession
    // error that would arrive ahead of Exit.
    conn.out.send(id, &Message::Exit(status));
    let handle = lock(&conn.sessions).remove(&id);
    drop(handle);
}

/// Starts session `id` on `conn`: replies `Started` (or returns the error to reply).
pub fn start(conn: &Arc<Conn>, id: u32, req: &ExecRequest) -> Result<(), ErrorReply> {
    if id == 0 {
        return Err(ErrorReply::new(
            ErrorCode::InvalidRequest,
            "session id 0 is reserved",
        ));
    }
    {
        let sessions = lock(&conn.sessions);
        if sessions.contains_key(&id) {
            return Err(ErrorReply::new(
                ErrorCode::SessionExists,
                format!("session {id} is already running"),
            ));
        }
        if sessions.len() >= MAX_SESSIONS as usize {
            return Err(ErrorReply::new(
                ErrorCode::TooManySessions,
                format!("at most {MAX_SESSIONS} sessions per connection"),
            ));
        }
    }
    let plan = Plan::new(req).map_err(|e| match e {
        PlanError::Invalid(m) => ErrorReply::new(ErrorCode::InvalidRequest, m),
        PlanError::NotFound(m) => ErrorReply {
            code: ErrorCode::SpawnFailed,
            errno: libc::ENOENT,
            message: m,
        },
    })?;
    let os = |e: io::Error| os_error(ErrorCode::Os, &e);

    // Descriptors: (child's stdin, stdout, stderr) and the agent's ends.
    let (child_in, child_out, child_err, output, stdin_w, stderr_r, pty_master);
    if let Some(size) = req.pty {
        let pty = spawn::open_pty(size).map_err(os)?;
        child_in = dup(&pty.slave).map_err(os)?;
        child_out = dup(&pty.slave).map_err(os)?;
        child_err = pty.slave;
        let master = Arc::new(pty.master);
        stdin_w = if req.stdin {
            Some(dup(&master).map_err(os)?)
        } else {
            None
        };
        output = master.clone();
        pty_master = Some(master);
        stderr_r = None;
    } else {
        let (in_r, in_w) = pipe().map_err(os)?;
        let (out_r, out_w) = pipe().map_err(os)?;
        let (err_r, err_w) = pipe().map_err(os)?;
        child_in = in_r;
        child_out = out_w;
        child_err = err_w;
        // Without stdin the write end is dropped now: the child reads end of file.
        stdin_w = req.stdin.then_some(in_w);
        output = Arc::new(out_r);
        stderr_r = Some(err_r);
        pty_master = None;
    }

    let outstanding = Arc::new(AtomicU32::new(0));
    let c = conn.clone();
    let (stderr_go, stderr_thread) = match stderr_r {
        Some(_) => {
            let (tx, h) =
                parked("stderr", move |fd: OwnedFd| pump(&fd, &c, id, true)).map_err(os)?;
            (Some(tx), Some(h))
        }
        None => (None, None),
    };
    let (c, o) = (conn.clone(), outstanding.clone());
    let stdin_go = match stdin_w {
        Some(_) => Some(
            parked("stdin", move |(fd, rx): (OwnedFd, Receiver<Vec<u8>>)| {
                stdin_writer(fd, rx, &o, &c, id)
            })
            .map_err(os)?
            .0,
        ),
        None => None,
    };
    let c = conn.clone();
    let (supervisor_go, _) = parked("session", move |input: SupervisorInput| {
        supervise(input, &c, id)
    })
    .map_err(os)?;

    let fds = ChildFds {
        stdin: &child_in,
        stdout: &child_out,
        stderr: &child_err,
        controlling_tty: req.pty.is_some(),
    };
    let (pid, exit) = spawn::spawn(&plan, &fds, &conn.agent.reaper)
        .map_err(|e| os_error(ErrorCode::SpawnFailed, &e))?;
    // The child has its copies; ours would keep the pipes (or pty) from ever closing.
    drop((child_in, child_out, child_err));

    conn.out.send(id, &Message::Started { pid });
    let (stdin_tx, stdin_rx) = mpsc::channel();
    let handle = SessionHandle {
        pid,
        stdin: stdin_go.as_ref().map(|_| StdinFeed {
            tx: stdin_tx,
            outstanding,
        }),
        pty_master,
    };
    lock(&conn.sessions).insert(id, handle);

    if let (Some(go), Some(fd)) = (stdin_go, stdin_w) {
        let _ = go.send((fd, stdin_rx));
    }
    if let (Some(go), Some(fd)) = (stderr_go, stderr_r) {
        let _ = go.send(fd);
    }
    let _ = supervisor_go.send(SupervisorInput {
        output,
        stderr_thread,
        exit,
    });
    Ok(())
}
