//! One exec session on one poll loop: REQUEST in; STDIN, RESIZE and SIGNAL applied;
//! STDOUT, STDERR and finally EXIT out.
//!
//! Memory stays bounded both ways. Child output is read only while less than
//! [`OUT_CAP`] bytes wait for the connection (so a host that does not read stalls the
//! child, not the agent), and the connection is read only while less than
//! [`STDIN_CAP`] bytes wait for the child's stdin, which is written non-blocking (so a
//! child that does not read stalls the host, while output and the child's exit are
//! still noticed). When the last command exits, pending stdin is dropped and EXIT sent.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use supermachine_proto::{
    b64_decode, encode_header, parse_request, Decoder, ExecRequest, Exit, FrameError, Kind, Resize,
    MAX_PAYLOAD,
};

use crate::connection::Conn;
use crate::files;
use crate::reaper::{Reaper, Status};
use crate::spawn::{self, ChildFds, Plan};
use crate::sys::{self, kill_group, lock, pipe, poll, read_fd, set_nonblocking, write_some};

/// Stdin bytes queued for the child before the connection is no longer read.
pub const STDIN_CAP: usize = 256 * 1024;
/// Output bytes queued for the connection before child output is no longer read.
pub const OUT_CAP: usize = 256 * 1024;
const READ_CHUNK: usize = 64 * 1024;
/// After a hang-up SIGHUP, how long the job gets before SIGKILL.
const HANGUP_GRACE: Duration = Duration::from_secs(1);
/// After the last command exits, how long its output is still read while something
/// else (a background job) keeps a pty open or keeps writing into the pipes.
const DRAIN_LIMIT: Duration = Duration::from_millis(500);
/// Window size when the request names none.
const DEFAULT_SIZE: Resize = Resize { cols: 80, rows: 24 };

/// The agent's ends of the child's standard streams, and the child's ends (kept for
/// the next command of a chain).
struct Stdio {
    tty: bool,
    /// Where stdin goes (pipe write end, or the pty master).
    stdin: Option<OwnedFd>,
    /// Stdout (or everything, with a pty).
    out: Option<OwnedFd>,
    /// Stderr; none with a pty.
    err: Option<OwnedFd>,
    /// The pty master, for RESIZE.
    master: Option<RawFd>,
    /// Child ends: stdin, stdout, stderr.
    child: Option<[OwnedFd; 3]>,
}

fn nonblocking(fd: OwnedFd) -> io::Result<OwnedFd> {
    set_nonblocking(fd.as_raw_fd(), true)?;
    Ok(fd)
}

impl Stdio {
    fn new(req: &ExecRequest) -> io::Result<Stdio> {
        if req.tty {
            let size = Resize {
                cols: req.cols.unwrap_or(DEFAULT_SIZE.cols),
                rows: req.rows.unwrap_or(DEFAULT_SIZE.rows),
            };
            let pty = spawn::open_pty(size)?;
            let master = nonblocking(pty.master)?;
            let raw = master.as_raw_fd();
            Ok(Stdio {
                tty: true,
                stdin: Some(master.try_clone()?),
                out: Some(master),
                err: None,
                master: Some(raw),
                child: Some([pty.slave.try_clone()?, pty.slave.try_clone()?, pty.slave]),
            })
        } else {
            let (in_r, in_w) = pipe()?;
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            Ok(Stdio {
                tty: false,
                stdin: Some(nonblocking(in_w)?),
                out: Some(nonblocking(out_r)?),
                err: Some(nonblocking(err_r)?),
                master: None,
                child: Some([in_r, out_w, err_w]),
            })
        }
    }
}

/// Output waiting for the connection: whole encoded frames.
#[derive(Default)]
struct Outbox {
    buf: Vec<u8>,
    off: usize,
}

impl Outbox {
    fn pending(&self) -> usize {
        self.buf.len() - self.off
    }

    fn frame(&mut self, kind: Kind, payload: &[u8]) {
        // Payloads here are at most READ_CHUNK or a short message.
        let len = u32::try_from(payload.len())
            .unwrap_or(MAX_PAYLOAD)
            .min(MAX_PAYLOAD);
        self.buf.extend_from_slice(&encode_header(kind as u8, len));
        self.buf
            .extend_from_slice(payload.get(..len as usize).unwrap_or(payload));
    }

    /// Writes what the connection takes now. Err when the connection is gone.
    fn flush(&mut self, conn: &Conn) -> io::Result<()> {
        while self.pending() > 0 {
            let rest = self.buf.get(self.off..).unwrap_or_default();
            match write_some(conn.w.as_raw_fd(), rest, conn.socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if self.off == self.buf.len() {
            self.buf.clear();
            self.off = 0;
        } else if self.off > OUT_CAP {
            self.buf.drain(..self.off);
            self.off = 0;
        }
        Ok(())
    }
}

/// Sends one ERROR frame on a blocking connection (before the session loop starts).
fn send_error(conn: &Conn, msg: &str) {
    let _ = set_nonblocking(conn.w.as_raw_fd(), false);
    let mut out = Outbox::default();
    out.frame(Kind::Error, msg.as_bytes());
    let _ = out.flush(conn);
}

/// Builds everything a REQUEST needs before the first fork; Err is the ERROR text.
fn prepare(payload: &[u8]) -> Result<(ExecRequest, Vec<Plan>), String> {
    let req = parse_request(payload).map_err(|e| format!("REQUEST JSON parse: {e}"))?;
    if req.argv.is_empty() {
        return Err("REQUEST.argv is empty".into());
    }
    let env = crate::env::for_request(&req.env);
    let mut plans = vec![Plan::new(&req.argv, &env, req.cwd.as_deref())?];
    for (i, link) in req.chain.iter().enumerate() {
        if link.is_empty() {
            return Err(format!("REQUEST.chain[{i}] is empty"));
        }
        plans.push(Plan::new(link, &env, req.cwd.as_deref())?);
    }
    for f in &req.stage_files {
        let data = b64_decode(&f.data_b64).map_err(|e| format!("stage_file({}): {e}", f.path))?;
        files::write_atomic(std::path::Path::new(&f.path), &data, f.mode)
            .map_err(|e| format!("stage_file({}): {e}", f.path))?;
    }
    Ok((req, plans))
}

/// Runs the exec session for a REQUEST payload.
pub fn run(conn: &Conn, payload: &[u8], reaper: &Reaper) {
    let (req, plans) = match prepare(payload) {
        Ok(p) => p,
        Err(msg) => return send_error(conn, &msg),
    };
    let stdio = match Stdio::new(&req) {
        Ok(s) => s,
        Err(e) => return send_error(conn, &format!("cannot set up the child's stdio: {e}")),
    };
    let (wake_r, wake_w) = match pipe().and_then(|(r, w)| Ok((nonblocking(r)?, w))) {
        Ok(p) => p,
        Err(e) => return send_error(conn, &format!("cannot create a pipe: {e}")),
    };
    if set_nonblocking(conn.r.as_raw_fd(), true)
        .and_then(|_| set_nonblocking(conn.w.as_raw_fd(), true))
        .is_err()
    {
        return send_error(conn, "cannot make the connection non-blocking");
    }
    let mut s = Session {
        conn,
        reaper,
        plans,
        next: 0,
        stdio,
        wake_r,
        wake_w,
        status: Arc::new(Mutex::new(None)),
        running: None,
        final_status: None,
        exit_queued: false,
        conn_open: true,
        closing: false,
        dec: Decoder::new(),
        out: Outbox::default(),
        stdin_q: VecDeque::new(),
        stdin_eof: false,
        hangup_at: None,
        drain_until: None,
    };
    s.start_next();
    s.run_loop();
    s.finish();
}

struct Session<'a> {
    conn: &'a Conn,
    reaper: &'a Reaper,
    plans: Vec<Plan>,
    /// Index of the next command to start.
    next: usize,
    stdio: Stdio,
    wake_r: OwnedFd,
    wake_w: OwnedFd,
    /// Filled by the reaper for the running command.
    status: Arc<Mutex<Option<Status>>>,
    /// Pid (= process group) of the running command.
    running: Option<libc::pid_t>,
    /// Set when the last command has exited.
    final_status: Option<Status>,
    exit_queued: bool,
    conn_open: bool,
    /// A fatal frame error: ERROR is queued; no more input, no EXIT.
    closing: bool,
    dec: Decoder,
    out: Outbox,
    stdin_q: VecDeque<u8>,
    /// The host sent end of input; close stdin once the queue is written.
    stdin_eof: bool,
    /// SIGKILL the job at this time (the connection went away).
    hangup_at: Option<Instant>,
    /// Stop draining a pty at this time.
    drain_until: Option<Instant>,
}

impl Session<'_> {
    /// Output kind for the agent's own messages about the child.
    fn stderr_kind(&self) -> Kind {
        if self.stdio.tty {
            Kind::Stdout
        } else {
            Kind::Stderr
        }
    }

    fn start_next(&mut self) {
        let Some(plan) = self.plans.get(self.next) else {
            return;
        };
        self.next += 1;
        if plan.program_missing() {
            let msg = spawn::not_found_message(plan);
            self.out.frame(self.stderr_kind(), msg.as_bytes());
            return self.command_done(Status {
                code: 127,
                peak_rss_kib: 0,
            });
        }
        let Some(child) = &self.stdio.child else {
            return;
        };
        let fds = ChildFds {
            stdin: child[0].as_raw_fd(),
            stdout: child[1].as_raw_fd(),
            stderr: child[2].as_raw_fd(),
            tty: self.stdio.tty,
        };
        let slot = self.status.clone();
        let wake = self.wake_w.try_clone();
        let notify = Box::new(move |st: Status| {
            *lock(&slot) = Some(st);
            if let Ok(w) = wake {
                let _ = sys::write_all_fd(w.as_raw_fd(), &[1]);
            }
        });
        match spawn::spawn(plan, &fds, self.reaper, notify) {
            Ok((pid, failure)) => {
                if let Some(f) = failure {
                    self.out.frame(self.stderr_kind(), f.message.as_bytes());
                }
                self.running = Some(pid);
            }
            Err(e) => {
                let msg = format!("agent: fork failed: {e}\n");
                self.out.frame(self.stderr_kind(), msg.as_bytes());
                self.command_done(Status {
                    code: 127,
                    peak_rss_kib: 0,
                });
            }
        }
    }

    /// A command ended: start the next one of the chain, or finish.
    fn command_done(&mut self, st: Status) {
        self.running = None;
        if st.code == 0 && self.next < self.plans.len() && self.conn_open && !self.closing {
            return self.start_next();
        }
        self.final_status = Some(st);
        self.stdin_q.clear();
        self.stdio.stdin = None;
        // Without our copies of the child ends, the output fds end once every
        // process that inherited them is gone.
        self.stdio.child = None;
        self.drain_until = Some(Instant::now() + DRAIN_LIMIT);
    }

    fn hang_up(&mut self) {
        self.conn_open = false;
        self.out = Outbox::default();
        if let Some(pid) = self.running {
            kill_group(pid, libc::SIGHUP);
            kill_group(pid, libc::SIGCONT);
            self.hangup_at = Some(Instant::now() + HANGUP_GRACE);
        }
    }

    fn done(&self) -> bool {
        if !self.conn_open {
            return self.running.is_none();
        }
        if self.closing {
            return self.running.is_none() && self.out.pending() == 0;
        }
        self.exit_queued && self.out.pending() == 0
    }

    fn run_loop(&mut self) {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            if self.conn_open && self.out.flush(self.conn).is_err() {
                self.hang_up();
            }
            self.maybe_queue_exit();
            if self.conn_open && self.out.flush(self.conn).is_err() {
                self.hang_up();
            }
            if self.done() {
                return;
            }
            let now = Instant::now();
            if let (Some(at), Some(pid)) = (self.hangup_at, self.running) {
                if now >= at {
                    kill_group(pid, libc::SIGKILL);
                    self.hangup_at = None;
                }
            }
            let timeout = [self.hangup_at, self.drain_until]
                .iter()
                .flatten()
                .map(|t| t.saturating_duration_since(now).as_millis() as i32 + 1)
                .min()
                .unwrap_or(-1);

            let out_room = self.out.pending() < OUT_CAP && self.conn_open;
            let read_conn = self.conn_open
                && !self.closing
                && self.final_status.is_none()
                && self.stdin_q.len() < STDIN_CAP;
            let mut fds: Vec<libc::pollfd> = Vec::with_capacity(6);
            let pfd = |fd: RawFd, events: libc::c_short| libc::pollfd {
                fd,
                events,
                revents: 0,
            };
            // Slot 0: connection read side; slot 1: write side (or -1 when shared).
            let conn_r = self.conn.r.as_raw_fd();
            let conn_w = self.conn.w.as_raw_fd();
            let mut r_ev = 0;
            if self.conn_open {
                r_ev |= libc::POLLRDHUP;
                if read_conn {
                    r_ev |= libc::POLLIN;
                }
            }
            let w_ev = if self.conn_open && self.out.pending() > 0 {
                libc::POLLOUT
            } else {
                0
            };
            if conn_r == conn_w {
                fds.push(pfd(if self.conn_open { conn_r } else { -1 }, r_ev | w_ev));
                fds.push(pfd(-1, 0));
            } else {
                fds.push(pfd(if self.conn_open { conn_r } else { -1 }, r_ev));
                fds.push(pfd(if w_ev != 0 { conn_w } else { -1 }, w_ev));
            }
            let fd_of = |f: &Option<OwnedFd>| f.as_ref().map_or(-1, |f| f.as_raw_fd());
            let draining = self.final_status.is_some();
            let out_ev = if out_room || !self.conn_open {
                libc::POLLIN
            } else {
                0
            };
            // Without room the output fds leave the set: a hung-up pipe would otherwise
            // wake the loop for nothing.
            let gated = |fd: RawFd| if out_ev != 0 { fd } else { -1 };
            fds.push(pfd(gated(fd_of(&self.stdio.out)), out_ev));
            fds.push(pfd(gated(fd_of(&self.stdio.err)), out_ev));
            let stdin_ev = if self.stdin_q.is_empty() {
                0
            } else {
                libc::POLLOUT
            };
            fds.push(pfd(
                if stdin_ev != 0 {
                    fd_of(&self.stdio.stdin)
                } else {
                    -1
                },
                stdin_ev,
            ));
            fds.push(pfd(self.wake_r.as_raw_fd(), libc::POLLIN));
            // After the last exit, pipes are drained without waiting: what the child
            // wrote is already in them.
            let timeout = if draining && !self.stdio.tty && out_ev != 0 {
                0
            } else {
                timeout
            };
            if poll(&mut fds, timeout).is_err() {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            let rev = |i: usize| fds.get(i).map_or(0, |p| p.revents);

            // Child exit first, so a full stdin never hides it.
            if rev(5) != 0 {
                let mut b = [0u8; 16];
                let _ = read_fd(self.wake_r.as_raw_fd(), &mut b);
                let st = lock(&self.status).take();
                if let Some(st) = st {
                    self.command_done(st);
                }
            }
            // Child output.
            for idx in [2usize, 3] {
                let kind = if idx == 2 { Kind::Stdout } else { Kind::Stderr };
                let ready = rev(idx) != 0 || (draining && !self.stdio.tty && out_ev != 0);
                if ready && (self.out.pending() < OUT_CAP || !self.conn_open) {
                    self.read_output(idx == 2, kind, &mut buf);
                }
            }
            if let Some(until) = self.drain_until {
                if Instant::now() >= until {
                    self.stdio.out = None;
                    self.stdio.err = None;
                }
            }
            // Stdin.
            if rev(4) != 0 {
                self.write_stdin();
            }
            // Connection.
            let c = rev(0);
            if c & libc::POLLIN != 0 {
                self.read_conn(&mut buf);
            } else if c & (libc::POLLHUP | libc::POLLRDHUP | libc::POLLERR) != 0 {
                self.hang_up();
            }
            if rev(1) & (libc::POLLERR | libc::POLLHUP) != 0 {
                self.hang_up();
            }
        }
    }

    fn maybe_queue_exit(&mut self) {
        if self.exit_queued || self.closing || self.stdio.out.is_some() || self.stdio.err.is_some()
        {
            return;
        }
        if let Some(st) = self.final_status {
            let exit = Exit {
                code: st.code,
                peak_rss_kib: Some(st.peak_rss_kib),
            };
            self.out.frame(Kind::Exit, &exit.encode());
            self.exit_queued = true;
        }
    }

    fn read_output(&mut self, stdout: bool, kind: Kind, buf: &mut [u8]) {
        let slot = if stdout {
            &mut self.stdio.out
        } else {
            &mut self.stdio.err
        };
        let Some(fd) = slot.as_ref() else { return };
        match read_fd(fd.as_raw_fd(), buf) {
            Ok(0) => *slot = None,
            Ok(n) => {
                if self.conn_open && !self.closing {
                    let data = buf.get(..n).unwrap_or_default();
                    self.out.frame(kind, data);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Drained: for pipes this is the end once the last command is gone.
                if self.final_status.is_some() && !self.stdio.tty {
                    *slot = None;
                }
            }
            // EIO: the pty's last slave is closed.
            Err(_) => *slot = None,
        }
    }

    fn write_stdin(&mut self) {
        let Some(fd) = self.stdio.stdin.as_ref() else {
            self.stdin_q.clear();
            return;
        };
        while !self.stdin_q.is_empty() {
            let (front, _) = self.stdin_q.as_slices();
            match write_some(fd.as_raw_fd(), front, false) {
                Ok(n) if n > 0 => {
                    self.stdin_q.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // EPIPE: the child closed its stdin; the rest has nowhere to go.
                _ => {
                    self.stdin_q.clear();
                    self.stdio.stdin = None;
                    return;
                }
            }
        }
        self.maybe_close_stdin();
    }

    fn maybe_close_stdin(&mut self) {
        if self.stdin_eof && self.stdin_q.is_empty() && !self.stdio.tty {
            self.stdio.stdin = None;
        }
    }

    fn read_conn(&mut self, buf: &mut [u8]) {
        match read_fd(self.conn.r.as_raw_fd(), buf) {
            Ok(0) => return self.hang_up(),
            Ok(n) => self.dec.push(buf.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(_) => return self.hang_up(),
        }
        loop {
            match self.dec.next_frame() {
                Ok(Some(f)) => self.on_frame(f.kind, &f.payload),
                Ok(None) => break,
                Err(e @ FrameError::TooLarge { .. }) => {
                    // Framing is lost: end the job, say why (after the output already
                    // queued, without blocking on a host that does not read) and close.
                    self.out.frame(Kind::Error, e.to_string().as_bytes());
                    self.closing = true;
                    if let Some(pid) = self.running {
                        kill_group(pid, libc::SIGKILL);
                    }
                    break;
                }
                Err(_) => break,
            }
        }
        // Keep what is queued for stdin moving without waiting for the next poll.
        if !self.stdin_q.is_empty() {
            self.write_stdin();
        }
    }

    fn on_frame(&mut self, kind: u8, payload: &[u8]) {
        match Kind::from_u8(kind) {
            Some(Kind::Stdin) => {
                if self.final_status.is_some() || self.stdio.stdin.is_none() {
                    return;
                }
                if payload.is_empty() {
                    self.stdin_eof = true;
                    if self.stdio.tty {
                        // A pty has no end of file: send the terminal's EOF character.
                        self.stdin_q.push_back(eof_char(self.stdio.master));
                    }
                    self.maybe_close_stdin();
                } else if !self.stdin_eof {
                    self.stdin_q.extend(payload);
                }
            }
            Some(Kind::Resize) => {
                if let (Some(master), Some(size)) = (self.stdio.master, Resize::decode(payload)) {
                    let _ = spawn::set_window_size(master, size);
                }
            }
            Some(Kind::Signal) => {
                if let (Some(&sig), Some(pid)) = (payload.first(), self.running) {
                    if sig > 0 && i32::from(sig) < 65 {
                        kill_group(pid, i32::from(sig));
                    }
                }
            }
            // Unknown or out-of-place kinds are ignored, as the host ignores ours.
            _ => {}
        }
    }

    /// Ends the session: a job still running (the connection went away first) is
    /// killed.
    fn finish(&mut self) {
        if let Some(pid) = self.running {
            kill_group(pid, libc::SIGKILL);
        }
    }
}

/// The pty's EOF character (^D unless changed).
fn eof_char(master: Option<RawFd>) -> u8 {
    let Some(fd) = master else { return 4 };
    // SAFETY: termios is plain data filled in by tcgetattr.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `t` is writable.
    if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
        return 4;
    }
    t.c_cc.get(libc::VEOF).copied().unwrap_or(4)
}
