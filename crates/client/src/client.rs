//! The client: one connection per exec session or per CONTROL call.

use std::io::{Read, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use supermachine_proto::{b64_decode, b64_encode, read_frame, write_frame, Control, Kind};

use crate::error::{Error, Result};
use crate::exec::{feed_stdin, Command, ExecOutput, Process};
use crate::transport::Endpoint;

/// Bytes per `write_file_chunk` / `read_file_chunk` call, as supermachine's host uses.
pub const FILE_CHUNK: usize = 8 << 20;

/// A CONTROL reply's fields past `"ok": true`.
pub type Reply = Map<String, Value>;

/// The agent's client. Holds no connection: each call opens its own.
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: Endpoint,
    timeout: Option<Duration>,
}

impl Client {
    /// A client of the agent at `endpoint`.
    pub fn new(endpoint: Endpoint) -> Client {
        Client {
            endpoint,
            timeout: None,
        }
    }

    /// Bounds each wait for the agent (handshake, CONTROL reply, the next frame of an
    /// exec); `None` waits forever. Exec sessions that print nothing for longer fail
    /// with [`Error::Timeout`].
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// Where this client connects.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Calls [`probe`](Self::probe) until it answers, for up to `timeout`: the agent
    /// is up once this returns. Returns the protocol version.
    pub fn wait_ready(&self, timeout: Duration) -> Result<u32> {
        let deadline = Instant::now() + timeout;
        loop {
            let err = match self.probe() {
                Ok(v) => return Ok(v),
                Err(e @ Error::TooOld { .. }) => return Err(e),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "after {timeout:?} waiting for the agent to answer probe (last error: {err})"
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts `command`; read its output with [`Process::next_output`].
    pub fn spawn(&self, command: &Command) -> Result<Process> {
        let stream = self.endpoint.connect(self.timeout)?;
        stream.set_read_timeout(self.timeout)?;
        // An agent that stops reading must not hang stdin writes forever either.
        stream.set_write_timeout(self.timeout)?;
        Process::start(stream, command)
    }

    /// Runs `command` with an empty stdin and collects its output.
    pub fn exec(&self, command: &Command) -> Result<ExecOutput> {
        let process = self.spawn(command)?;
        process.close_stdin()?;
        process.wait_with_output()
    }

    /// Runs `command` with `input` as its stdin and collects its output.
    pub fn exec_with_stdin(&self, command: &Command, input: &[u8]) -> Result<ExecOutput> {
        let process = self.spawn(command)?;
        feed_stdin(process.control(), std::io::Cursor::new(input.to_vec()));
        process.wait_with_output()
    }

    /// Runs `command` with stdin read from `input` on a thread of its own.
    pub fn spawn_with_stdin(
        &self,
        command: &Command,
        input: impl Read + Send + 'static,
    ) -> Result<Process> {
        let process = self.spawn(command)?;
        feed_stdin(process.control(), input);
        Ok(process)
    }

    /// One CONTROL call: the fields of an `ok: true` reply, or [`Error::Agent`] with
    /// its `error` text.
    pub fn control(&self, request: &Control) -> Result<Reply> {
        let json = serde_json::to_vec(request)
            .map_err(|e| Error::Protocol(format!("cannot encode the CONTROL request: {e}")))?;
        if json.len() > supermachine_proto::MAX_PAYLOAD as usize {
            return Err(Error::TooLarge(format!(
                "a CONTROL request of {} bytes is over the frame limit",
                json.len()
            )));
        }
        let mut stream = self.endpoint.connect(self.timeout)?;
        stream.set_read_timeout(self.timeout)?;
        stream.set_write_timeout(self.timeout)?;
        write_frame(&mut stream, Kind::Control as u8, &json)?;
        stream.flush()?;
        let frame = read_frame(&mut stream)?.ok_or_else(|| {
            Error::Protocol("the agent closed the connection without a CONTROL reply".into())
        })?;
        match Kind::from_u8(frame.kind) {
            Some(Kind::Control) => {}
            Some(Kind::Error) => {
                return Err(Error::Agent(
                    String::from_utf8_lossy(&frame.payload).into_owned(),
                ))
            }
            _ => {
                return Err(Error::Protocol(format!(
                    "expected a CONTROL reply, got a frame of kind {:#04x}",
                    frame.kind
                )))
            }
        }
        let mut reply: Reply = serde_json::from_slice(&frame.payload)
            .map_err(|e| Error::Protocol(format!("CONTROL reply is not a JSON object: {e}")))?;
        match reply.remove("ok") {
            Some(Value::Bool(true)) => Ok(reply),
            Some(Value::Bool(false)) => Err(Error::Agent(
                reply
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("(no error text)")
                    .to_string(),
            )),
            _ => Err(Error::Protocol(
                "CONTROL reply without a boolean \"ok\"".into(),
            )),
        }
    }

    /// The agent's protocol version; [`Error::TooOld`] below [`crate::MIN_PROTOCOL`].
    pub fn probe(&self) -> Result<u32> {
        let reply = self.control(&Control::Probe)?;
        let protocol = reply
            .get("protocol")
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| Error::Protocol("probe reply without a \"protocol\" number".into()))?;
        if protocol < crate::MIN_PROTOCOL {
            return Err(Error::TooOld { protocol });
        }
        Ok(protocol)
    }

    /// Sends `signum` to the workload (the pid in `/run/supermachine-workload.pid`);
    /// returns that pid when the agent says it.
    pub fn signal_workload(&self, signum: i32) -> Result<Option<u32>> {
        let reply = self.control(&Control::Signal { signum })?;
        Ok(reply
            .get("pid")
            .and_then(Value::as_u64)
            .and_then(|p| u32::try_from(p).ok()))
    }

    /// Writes a whole file of at most [`FILE_CHUNK`] bytes in one call.
    pub fn write_file(&self, path: &str, data: &[u8], mode: Option<u32>) -> Result<()> {
        if data.len() > FILE_CHUNK {
            return Err(Error::TooLarge(format!(
                "write_file takes at most {FILE_CHUNK} bytes, not {}; use upload",
                data.len()
            )));
        }
        self.control(&Control::WriteFile {
            path: path.into(),
            data_b64: b64_encode(data),
            mode,
        })
        .map(drop)
    }

    /// One `write_file_chunk` call (see [`upload`](Self::upload) for whole files).
    pub fn write_file_chunk(
        &self,
        path: &str,
        offset: u64,
        data: &[u8],
        last: bool,
        token: &str,
        mode: Option<u32>,
    ) -> Result<()> {
        self.control(&Control::WriteFileChunk {
            path: path.into(),
            offset,
            data_b64: b64_encode(data),
            last,
            token: Some(token.into()),
            mode: if last { mode } else { None },
        })
        .map(drop)
    }

    /// Writes everything `input` yields to `path` in [`FILE_CHUNK`] pieces; the file
    /// appears in the guest, with `mode`, only when the last piece is in. Returns the size.
    pub fn upload(&self, path: &str, input: &mut dyn Read, mode: Option<u32>) -> Result<u64> {
        let token = transfer_token();
        let mut offset = 0u64;
        let mut chunk = vec![0u8; FILE_CHUNK];
        let mut filled = read_up_to(input, &mut chunk)?;
        loop {
            // Read one chunk ahead, so the last one can say so.
            let mut next = vec![0u8; FILE_CHUNK];
            let next_filled = if filled == FILE_CHUNK {
                read_up_to(input, &mut next)?
            } else {
                0
            };
            let last = next_filled == 0;
            let data = chunk.get(..filled).unwrap_or_default();
            self.write_file_chunk(path, offset, data, last, &token, mode)?;
            offset += filled as u64;
            if last {
                return Ok(offset);
            }
            chunk = next;
            filled = next_filled;
        }
    }

    /// One `read_file_chunk` call: up to `len` bytes from `offset`, and the file's size.
    pub fn read_file_chunk(
        &self,
        path: &str,
        offset: u64,
        len: u64,
        max_bytes: Option<u64>,
    ) -> Result<(Vec<u8>, u64)> {
        let reply = self.control(&Control::ReadFileChunk {
            path: path.into(),
            offset,
            len,
            max_bytes,
        })?;
        let data = reply
            .get("data_b64")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Protocol("read_file_chunk reply without data_b64".into()))?;
        let data = b64_decode(data)
            .map_err(|e| Error::Protocol(format!("read_file_chunk data_b64: {e}")))?;
        let total = reply
            .get("total_len")
            .and_then(Value::as_u64)
            .ok_or_else(|| Error::Protocol("read_file_chunk reply without total_len".into()))?;
        Ok((data, total))
    }

    /// Copies the guest file `path` into `out` in [`FILE_CHUNK`] pieces; returns its size.
    pub fn download(&self, path: &str, out: &mut dyn Write) -> Result<u64> {
        let mut offset = 0u64;
        loop {
            let (data, total) = self.read_file_chunk(path, offset, FILE_CHUNK as u64, None)?;
            out.write_all(&data)?;
            offset += data.len() as u64;
            if offset >= total {
                return Ok(offset);
            }
            if data.is_empty() {
                return Err(Error::Protocol(format!(
                    "{path} shrank while it was read (at {offset} of {total} bytes)"
                )));
            }
        }
    }

    /// Sets the guest's clock to the host's.
    pub fn sync_time(&self) -> Result<()> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| Error::Protocol("the host clock is before 1970".into()))?;
        let host_unix_ns = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
        self.control(&Control::SyncTime { host_unix_ns }).map(drop)
    }

    /// Flushes the guest's file systems (sync(2)).
    pub fn sync(&self) -> Result<()> {
        self.control(&Control::Sync).map(drop)
    }

    /// Drops the guest's page cache, dentries and inodes.
    pub fn drop_vfs_caches(&self) -> Result<()> {
        self.control(&Control::DropVfsCaches).map(drop)
    }

    /// Parks the guest's secondary vCPUs (needs `/dev/smpark`).
    pub fn smpark_park(&self) -> Result<()> {
        self.control(&Control::SmparkPark).map(drop)
    }

    /// Releases the parked vCPUs.
    pub fn smpark_unpark(&self) -> Result<()> {
        self.control(&Control::SmparkUnpark).map(drop)
    }
}

/// Fills `buf` from `input` as far as it goes; returns the bytes read (short only at EOF).
fn read_up_to(input: &mut dyn Read, buf: &mut [u8]) -> Result<usize> {
    let mut got = 0;
    while let Some(rest) = buf.get_mut(got..).filter(|b| !b.is_empty()) {
        match input.read(rest) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Io(e)),
        }
    }
    Ok(got)
}

/// A name for one upload, distinct between processes and calls.
fn transfer_token() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{:x}-{:x}-{:x}",
        std::process::id(),
        nanos,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
