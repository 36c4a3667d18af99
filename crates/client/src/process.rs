//! Exec: building a request, streaming a running process, collecting its output.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use supermachine_proto::{ExecRequest, ExitStatus, Message, WindowSize, STDIN_WINDOW};

use crate::client::{Client, Credit};
use crate::error::{Error, Result};

/// What to run in the guest; a builder like `std::process::Command`.
///
/// By default the process gets only the variables set with [`Command::env`] (plus a
/// default `PATH`), runs in `/` as the agent's user (root), without a pty and with
/// empty stdin (unless it is spawned for streaming, where stdin is open).
#[derive(Debug, Clone)]
pub struct Command {
    request: ExecRequest,
    stdin_set: bool,
}

fn bytes(s: impl AsRef<OsStr>) -> Vec<u8> {
    s.as_ref().as_bytes().to_vec()
}

impl Command {
    /// A command running `program` (looked up in the guest `PATH` if it has no `/`).
    pub fn new(program: impl AsRef<OsStr>) -> Command {
        Command {
            request: ExecRequest {
                argv: vec![bytes(program)],
                ..ExecRequest::default()
            },
            stdin_set: false,
        }
    }

    /// A command from a whole argv (`argv[0]` is the program). Empty argv is refused by
    /// the agent.
    pub fn from_argv<I, S>(argv: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Command {
            request: ExecRequest {
                argv: argv.into_iter().map(bytes).collect(),
                ..ExecRequest::default()
            },
            stdin_set: false,
        }
    }

    /// Adds an argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Command {
        self.request.argv.push(bytes(arg));
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.request.argv.extend(args.into_iter().map(bytes));
        self
    }

    /// Sets an environment variable.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Command {
        let mut entry = bytes(key);
        entry.push(b'=');
        entry.extend_from_slice(value.as_ref().as_bytes());
        self.request.env.push(entry);
        self
    }

    /// Starts from the agent's environment instead of an empty one.
    pub fn inherit_env(&mut self, inherit: bool) -> &mut Command {
        self.request.inherit_env = inherit;
        self
    }

    /// Sets the working directory.
    pub fn current_dir(&mut self, dir: impl AsRef<OsStr>) -> &mut Command {
        self.request.cwd = Some(bytes(dir));
        self
    }

    /// Runs as this user id.
    pub fn uid(&mut self, uid: u32) -> &mut Command {
        self.request.uid = Some(uid);
        self
    }

    /// Runs with this group id (and only it as supplementary group).
    pub fn gid(&mut self, gid: u32) -> &mut Command {
        self.request.gid = Some(gid);
        self
    }

    /// Runs on a new pseudo-terminal of `rows` x `cols`; output arrives as stdout.
    pub fn pty(&mut self, rows: u16, cols: u16) -> &mut Command {
        self.request.pty = Some(WindowSize { rows, cols });
        self
    }

    /// Whether stdin stays open for writing (default: open when spawned, closed for
    /// [`Client::exec`]).
    pub fn stdin(&mut self, open: bool) -> &mut Command {
        self.request.stdin = open;
        self.stdin_set = true;
        self
    }

    /// The wire request.
    pub fn request(&self) -> ExecRequest {
        let mut r = self.request.clone();
        if !self.stdin_set {
            r.stdin = true;
        }
        r
    }
}

/// A finished process's status and output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// How it ended.
    pub status: ExitStatus,
    /// Everything written to stdout (or to the pty).
    pub stdout: Vec<u8>,
    /// Everything written to stderr.
    pub stderr: Vec<u8>,
}

/// One thing that happened to a running process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Bytes written to stdout (or the pty).
    Stdout(Vec<u8>),
    /// Bytes written to stderr.
    Stderr(Vec<u8>),
    /// The process ended; no more events follow.
    Exit(ExitStatus),
}

/// Writes a process's stdin; `Clone` and `Send`, so one thread can feed stdin while
/// another reads output (which it must: the output queues are bounded).
#[derive(Clone)]
pub struct StdinWriter {
    client: Client,
    id: u32,
    credit: Arc<Credit>,
}

/// Largest stdin frame the client sends; a quarter of the window keeps data flowing
/// while acknowledgements travel back.
const STDIN_CHUNK: u32 = STDIN_WINDOW / 4;

impl StdinWriter {
    /// Sends all of `data`, waiting for flow-control credit as needed.
    pub fn write(&self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let want = u32::try_from(data.len())
                .unwrap_or(u32::MAX)
                .min(STDIN_CHUNK);
            let n = self.credit.take(want)? as usize;
            let (chunk, rest) = data.split_at(n.min(data.len()));
            self.client.inner.send(
                self.id,
                &Message::Stdin {
                    data: chunk.to_vec(),
                },
            )?;
            data = rest;
        }
        Ok(())
    }

    /// Closes stdin (the process reads end of file; on a pty nothing happens).
    pub fn close(&self) -> Result<()> {
        self.client
            .inner
            .send(self.id, &Message::Stdin { data: Vec::new() })
    }
}

/// Resizes and signals a process; `Clone` and `Send`.
#[derive(Clone)]
pub struct ProcessControl {
    client: Client,
    id: u32,
}

impl ProcessControl {
    /// Sets the pty window size (the session must have a pty).
    pub fn resize(&self, rows: u16, cols: u16) -> Result<()> {
        self.client.resize_session(self.id, rows, cols)
    }

    /// Sends a signal to the process.
    pub fn signal(&self, signal: i32) -> Result<()> {
        self.client.signal_session(self.id, signal)
    }
}

/// A running guest process.
///
/// Read its output with [`Process::next_output`] until [`Output::Exit`], or use
/// [`Process::wait`] / [`Process::wait_with_output`]. Dropping it unread stops its
/// output from being delivered (the process itself keeps running until it exits or the
/// connection closes).
pub struct Process {
    client: Client,
    id: u32,
    pid: i32,
    events: Receiver<Message>,
    credit: Arc<Credit>,
    exit: Option<ExitStatus>,
}

impl Process {
    pub(crate) fn start(client: Client, request: ExecRequest) -> Result<Process> {
        let (id, events, credit) = client.inner.start_session(&request)?;
        let first = events.recv();
        match first {
            Ok(Message::Started { pid }) => Ok(Process {
                client,
                id,
                pid,
                events,
                credit,
                exit: None,
            }),
            Ok(Message::Error(e)) => {
                client.inner.unregister(id);
                Err(Error::Agent(e))
            }
            Ok(other) => {
                client.inner.unregister(id);
                Err(crate::client::unexpected(&other))
            }
            Err(_) => Err(Error::Closed(
                "connection lost before the process started".into(),
            )),
        }
    }

    /// The guest pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// A handle for writing stdin (from this or another thread).
    pub fn stdin(&self) -> StdinWriter {
        StdinWriter {
            client: self.client.clone(),
            id: self.id,
            credit: self.credit.clone(),
        }
    }

    /// A handle for resizing and signalling (from this or another thread).
    pub fn control(&self) -> ProcessControl {
        ProcessControl {
            client: self.client.clone(),
            id: self.id,
        }
    }

    /// Sends all of `data` to stdin (see [`StdinWriter::write`]).
    pub fn write_stdin(&self, data: &[u8]) -> Result<()> {
        self.stdin().write(data)
    }

    /// Closes stdin.
    pub fn close_stdin(&self) -> Result<()> {
        self.stdin().close()
    }

    /// Sets the pty window size.
    pub fn resize(&self, rows: u16, cols: u16) -> Result<()> {
        self.control().resize(rows, cols)
    }

    /// Sends a signal to the process.
    pub fn signal(&self, signal: i32) -> Result<()> {
        self.control().signal(signal)
    }

    /// The next output or the exit; `None` once the exit has been returned.
    pub fn next_output(&mut self) -> Result<Option<Output>> {
        loop {
            if self.exit.is_some() {
                return Ok(None);
            }
            let message = self.events.recv().map_err(|_| {
                Error::Closed("connection lost while the process was running".into())
            })?;
            match message {
                // Empty data frames only mark end of stream.
                Message::Stdout { data } if data.is_empty() => {}
                Message::Stderr { data } if data.is_empty() => {}
                Message::Stdout { data } => return Ok(Some(Output::Stdout(data))),
                Message::Stderr { data } => return Ok(Some(Output::Stderr(data))),
                Message::Exit(status) => {
                    self.exit = Some(status);
                    return Ok(Some(Output::Exit(status)));
                }
                Message::Error(e) => return Err(Error::Agent(e)),
                other => return Err(crate::client::unexpected(&other)),
            }
        }
    }

    /// Waits for the exit, discarding output.
    pub fn wait(mut self) -> Result<ExitStatus> {
        loop {
            if let Some(status) = self.exit {
                return Ok(status);
            }
            self.next_output()?;
        }
    }

    /// Waits for the exit, collecting output.
    pub fn wait_with_output(mut self) -> Result<ExecOutput> {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        loop {
            match self.next_output()? {
                Some(Output::Stdout(d)) => stdout.extend_from_slice(&d),
                Some(Output::Stderr(d)) => stderr.extend_from_slice(&d),
                Some(Output::Exit(status)) => {
                    return Ok(ExecOutput {
                        status,
                        stdout,
                        stderr,
                    })
                }
                None => {
                    return Err(Error::Protocol("process already waited for".into()));
                }
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.exit.is_none() {
            self.client.inner.unregister(self.id);
        }
    }
}
