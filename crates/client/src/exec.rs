//! One exec session: a REQUEST frame, then STDIN/RESIZE/SIGNAL from the host and
//! STDOUT/STDERR/EXIT (or ERROR) from the agent, on a connection of its own.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use supermachine_proto::{
    b64_encode, read_frame, write_frame, ExecRequest, Exit, Kind, Resize, StageFile,
};

use crate::error::{Error, Result};

/// What to run in the guest: the REQUEST of an exec session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Command {
    request: ExecRequest,
}

impl Command {
    /// Runs `program` (looked up in the guest's `PATH` by the agent when not absolute).
    pub fn new(program: impl Into<String>) -> Command {
        let mut c = Command::default();
        c.request.argv.push(program.into());
        c
    }

    /// A command from a whole argv (empty argv is refused by the agent).
    pub fn from_argv<I: IntoIterator<Item = S>, S: Into<String>>(argv: I) -> Command {
        let mut c = Command::default();
        c.request.argv = argv.into_iter().map(Into::into).collect();
        c
    }

    /// Appends one argument.
    pub fn arg(&mut self, arg: impl Into<String>) -> &mut Command {
        self.request.argv.push(arg.into());
        self
    }

    /// Appends arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(&mut self, args: I) -> &mut Command {
        self.request.argv.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets one environment variable; it overrides the guest's own for this process.
    pub fn env(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Command {
        self.request.env.insert(key.into(), value.into());
        self
    }

    /// Sets the working directory.
    pub fn current_dir(&mut self, dir: impl Into<String>) -> &mut Command {
        self.request.cwd = Some(dir.into());
        self
    }

    /// Runs the process on a pseudo-terminal of `cols` x `rows`: its stdin, stdout and
    /// stderr are the terminal, so all output arrives as stdout.
    pub fn tty(&mut self, cols: u16, rows: u16) -> &mut Command {
        self.request.tty = true;
        self.request.cols = Some(cols);
        self.request.rows = Some(rows);
        self
    }

    /// Writes `data` to `path` in the guest (atomically, with `mode`) before the exec.
    pub fn stage_file(
        &mut self,
        path: impl Into<String>,
        data: &[u8],
        mode: Option<u32>,
    ) -> &mut Command {
        self.request.stage_files.push(StageFile {
            path: path.into(),
            data_b64: b64_encode(data),
            mode,
        });
        self
    }

    /// Runs `argv` after the commands before it succeeded (`&&`): the first command is
    /// this one's argv, then each chained one in order.
    pub fn chain<I: IntoIterator<Item = S>, S: Into<String>>(&mut self, argv: I) -> &mut Command {
        self.request
            .chain
            .push(argv.into_iter().map(Into::into).collect());
        self
    }

    /// The REQUEST this command sends.
    pub fn request(&self) -> &ExecRequest {
        &self.request
    }
}

/// How a guest process ended: the EXIT frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// The exit code; a death by signal N is 128+N (the agent folds it).
    pub code: u32,
    /// The process's peak resident memory, in KiB, when the agent reports it.
    pub peak_rss_kib: Option<u64>,
}

impl ExitStatus {
    /// Whether the code is 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// One event of a running process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Bytes the process wrote to stdout (everything, in tty mode).
    Stdout(Vec<u8>),
    /// Bytes the process wrote to stderr.
    Stderr(Vec<u8>),
    /// The process ended; nothing follows.
    Exit(ExitStatus),
}

/// Everything a finished process wrote, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// How it ended.
    pub status: ExitStatus,
    /// All of its stdout.
    pub stdout: Vec<u8>,
    /// All of its stderr.
    pub stderr: Vec<u8>,
}

/// The host-to-agent half of an exec session; cheap to clone and usable from other
/// threads (stdin from one, signals and resizes from another).
#[derive(Debug, Clone)]
pub struct ProcessControl {
    writer: Arc<Mutex<UnixStream>>,
    /// Set once a SIGNAL went out: an end of stream without EXIT then means killed.
    signalled: Arc<Mutex<bool>>,
}

/// Largest STDIN frame sent; smaller than the frame limit so a slow child still lets
/// signals and resizes through between chunks.
const STDIN_CHUNK: usize = 64 * 1024;

impl ProcessControl {
    fn send(&self, kind: Kind, payload: &[u8]) -> Result<()> {
        let mut w = self
            .writer
            .lock()
            .map_err(|_| Error::Protocol("a writer thread panicked".into()))?;
        write_frame(&mut *w, kind as u8, payload).map_err(Error::from)
    }

    /// Sends bytes to the process's stdin (an empty slice sends nothing; see
    /// [`close_stdin`](Self::close_stdin)).
    pub fn write_stdin(&self, data: &[u8]) -> Result<()> {
        for chunk in data.chunks(STDIN_CHUNK) {
            self.send(Kind::Stdin, chunk)?;
        }
        Ok(())
    }

    /// Ends the process's stdin (an empty STDIN frame).
    pub fn close_stdin(&self) -> Result<()> {
        self.send(Kind::Stdin, &[])
    }

    /// Sends `signum` to the process group.
    pub fn signal(&self, signum: u8) -> Result<()> {
        if let Ok(mut s) = self.signalled.lock() {
            *s = true;
        }
        self.send(Kind::Signal, &[signum])
    }

    /// Resizes the process's terminal (ignored without a tty).
    pub fn resize(&self, cols: u16, rows: u16) -> Result<()> {
        self.send(Kind::Resize, &Resize { cols, rows }.encode())
    }
}

/// A running guest process (one connection to the agent). Dropping it closes the
/// connection, which ends the process.
#[derive(Debug)]
pub struct Process {
    reader: UnixStream,
    control: ProcessControl,
    done: bool,
}

impl Process {
    pub(crate) fn start(stream: UnixStream, command: &Command) -> Result<Process> {
        if command.request.argv.is_empty() {
            return Err(Error::Protocol("empty argv: name a program to run".into()));
        }
        let json = serde_json::to_vec(&command.request)
            .map_err(|e| Error::Protocol(format!("cannot encode the REQUEST: {e}")))?;
        if json.len() > supermachine_proto::MAX_PAYLOAD as usize {
            return Err(Error::TooLarge(format!(
                "the REQUEST is {} bytes, over the {}-byte frame limit (stage large files with `cp` instead)",
                json.len(),
                supermachine_proto::MAX_PAYLOAD
            )));
        }
        let writer = stream.try_clone()?;
        let control = ProcessControl {
            writer: Arc::new(Mutex::new(writer)),
            signalled: Arc::new(Mutex::new(false)),
        };
        control.send(Kind::Request, &json)?;
        Ok(Process {
            reader: stream,
            control,
            done: false,
        })
    }

    /// A handle for stdin, signals and resizes from other threads.
    pub fn control(&self) -> ProcessControl {
        self.control.clone()
    }

    /// See [`ProcessControl::write_stdin`].
    pub fn write_stdin(&self, data: &[u8]) -> Result<()> {
        self.control.write_stdin(data)
    }

    /// See [`ProcessControl::close_stdin`].
    pub fn close_stdin(&self) -> Result<()> {
        self.control.close_stdin()
    }

    /// See [`ProcessControl::signal`].
    pub fn signal(&self, signum: u8) -> Result<()> {
        self.control.signal(signum)
    }

    /// See [`ProcessControl::resize`].
    pub fn resize(&self, cols: u16, rows: u16) -> Result<()> {
        self.control.resize(cols, rows)
    }

    /// Bounds each wait for the agent's next frame (None: wait forever).
    pub fn set_read_timeout(&self, timeout: Option<std::time::Duration>) -> Result<()> {
        self.reader.set_read_timeout(timeout).map_err(Error::from)
    }

    /// The next event; `Ok(None)` after [`Output::Exit`] was returned. An ERROR frame
    /// is [`Error::Agent`].
    pub fn next_output(&mut self) -> Result<Option<Output>> {
        while !self.done {
            let frame = match read_frame(&mut self.reader)? {
                Some(f) => f,
                None => {
                    self.done = true;
                    // The agent drops the connection when a signalled child takes it
                    // down; supermachine's host reads that as SIGKILL, and so do we.
                    if self.control.signalled.lock().map(|s| *s).unwrap_or(false) {
                        return Ok(Some(Output::Exit(ExitStatus {
                            code: 128 + 9,
                            peak_rss_kib: None,
                        })));
                    }
                    return Err(Error::Protocol(
                        "the agent closed the connection without an EXIT".into(),
                    ));
                }
            };
            match Kind::from_u8(frame.kind) {
                Some(Kind::Stdout) => return Ok(Some(Output::Stdout(frame.payload))),
                Some(Kind::Stderr) => return Ok(Some(Output::Stderr(frame.payload))),
                Some(Kind::Exit) => {
                    self.done = true;
                    let exit = Exit::decode(&frame.payload)
                        .map_err(|e| Error::Protocol(format!("bad EXIT frame: {e}")))?;
                    return Ok(Some(Output::Exit(ExitStatus {
                        code: exit.code,
                        peak_rss_kib: exit.peak_rss_kib,
                    })));
                }
                Some(Kind::Error) => {
                    self.done = true;
                    return Err(Error::Agent(
                        String::from_utf8_lossy(&frame.payload).into_owned(),
                    ));
                }
                // Unknown kinds are legal on the wire and ignored, as the host does.
                _ => {}
            }
        }
        Ok(None)
    }

    /// Reads until the exit, collecting the output.
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
                None => return Err(Error::Protocol("no EXIT frame".into())),
            }
        }
    }

    /// Writes the output to `out`/`err` as it arrives and returns the exit status.
    pub fn stream_to(mut self, out: &mut dyn Write, err: &mut dyn Write) -> Result<ExitStatus> {
        loop {
            match self.next_output()? {
                Some(Output::Stdout(d)) => {
                    out.write_all(&d)?;
                    out.flush()?;
                }
                Some(Output::Stderr(d)) => {
                    err.write_all(&d)?;
                    err.flush()?;
                }
                Some(Output::Exit(status)) => return Ok(status),
                None => return Err(Error::Protocol("no EXIT frame".into())),
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.reader.shutdown(Shutdown::Both);
    }
}

/// Copies `input` into the process's stdin from a thread of its own (so a process that
/// writes while it reads cannot deadlock against us), then closes stdin.
pub fn feed_stdin(control: ProcessControl, mut input: impl Read + Send + 'static) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; STDIN_CHUNK];
        loop {
            match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if control
                        .write_stdin(buf.get(..n).unwrap_or_default())
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = control.close_stdin();
    });
}
