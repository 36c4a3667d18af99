//! The connection: handshake, a reader thread that routes frames by id, and requests.

use std::collections::HashMap;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use supermachine_proto::{
    read_frame, write_frame, ExecRequest, Frame, FrameError, GuestInfo, Hello, HelloReply, Message,
    MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};

use crate::error::{Error, Result};
use crate::process::{Command, ExecOutput, Process};
use crate::transport::{self, Endpoint};

/// Frames buffered per session before the reader thread waits for the consumer.
const SESSION_QUEUE: usize = 64;
/// Default bound on the connect handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Stdin send credit of one session, returned by the agent's `StdinAck`s.
pub(crate) struct Credit {
    state: Mutex<(u32, bool)>,
    cond: Condvar,
}

impl Credit {
    fn new(window: u32) -> Self {
        Credit {
            state: Mutex::new((window, false)),
            cond: Condvar::new(),
        }
    }

    fn add(&self, n: u32) {
        let mut s = lock(&self.state);
        s.0 = s.0.saturating_add(n);
        self.cond.notify_all();
    }

    fn close(&self) {
        lock(&self.state).1 = true;
        self.cond.notify_all();
    }

    /// Takes up to `want` bytes of credit, waiting until some is available.
    pub(crate) fn take(&self, want: u32) -> Result<u32> {
        let mut s = lock(&self.state);
        loop {
            if s.1 {
                return Err(Error::Closed("session ended".into()));
            }
            if s.0 > 0 {
                let n = s.0.min(want);
                s.0 -= n;
                return Ok(n);
            }
            s = self.cond.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

enum Route {
    Reply(SyncSender<Message>),
    Session(SyncSender<Message>, Arc<Credit>),
}

#[derive(Default)]
struct Routes {
    map: HashMap<u32, Route>,
    /// Set once the reader thread has stopped: why.
    closed: Option<String>,
}

pub(crate) struct Inner {
    writer: Mutex<UnixStream>,
    routes: Arc<Mutex<Routes>>,
    next_id: AtomicU32,
    hello: HelloReply,
    timeout: Mutex<Option<Duration>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Ends the reader thread, and with it every session of this connection.
        let _ = lock(&self.writer).shutdown(std::net::Shutdown::Both);
    }
}

impl Inner {
    pub(crate) fn next_id(&self) -> u32 {
        loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return id;
            }
        }
    }

    pub(crate) fn send(&self, id: u32, message: &Message) -> Result<()> {
        let mut w = lock(&self.writer);
        write_frame(&mut *w, id, message).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidInput => Error::Protocol(e.to_string()),
            _ => Error::Io(e),
        })
    }

    fn closed_error(&self) -> Error {
        let why = lock(&self.routes).closed.clone();
        Error::Closed(why.unwrap_or_else(|| "connection lost".into()))
    }

    fn register(&self, id: u32, route: Route) -> Result<()> {
        let mut routes = lock(&self.routes);
        if let Some(why) = &routes.closed {
            return Err(Error::Closed(why.clone()));
        }
        routes.map.insert(id, route);
        Ok(())
    }

    pub(crate) fn unregister(&self, id: u32) {
        let route = lock(&self.routes).map.remove(&id);
        // A stdin writer waiting for credit of a forgotten session must not wait forever.
        if let Some(Route::Session(_, credit)) = route {
            credit.close();
        }
    }

    /// Sends a request and waits for its one reply; agent errors become `Error::Agent`.
    fn request(&self, message: &Message) -> Result<Message> {
        let id = self.next_id();
        let (tx, rx) = mpsc::sync_channel(1);
        self.register(id, Route::Reply(tx))?;
        if let Err(e) = self.send(id, message) {
            self.unregister(id);
            return Err(e);
        }
        let timeout = *lock(&self.timeout);
        let reply = match timeout {
            Some(t) => rx.recv_timeout(t).map_err(|e| match e {
                RecvTimeoutError::Timeout => {
                    Error::Timeout(format!("reply to frame type {:#04x}", message.kind()))
                }
                RecvTimeoutError::Disconnected => self.closed_error(),
            }),
            None => rx.recv().map_err(|_| self.closed_error()),
        };
        if reply.is_err() {
            self.unregister(id);
        }
        match reply? {
            Message::Error(e) => Err(Error::Agent(e)),
            m => Ok(m),
        }
    }

    /// Registers a session and sends its `Exec`; returns the event queue and credit.
    pub(crate) fn start_session(
        &self,
        request: &ExecRequest,
    ) -> Result<(u32, Receiver<Message>, Arc<Credit>)> {
        let id = self.next_id();
        let (tx, rx) = mpsc::sync_channel(SESSION_QUEUE);
        let credit = Arc::new(Credit::new(self.hello.stdin_window));
        self.register(id, Route::Session(tx, credit.clone()))?;
        if let Err(e) = self.send(id, &Message::Exec(request.clone())) {
            self.unregister(id);
            return Err(e);
        }
        Ok((id, rx, credit))
    }
}

/// Routes incoming frames until the connection ends. Never holds the routes lock while
/// blocked on a full session queue.
fn reader_loop(mut stream: UnixStream, routes: Arc<Mutex<Routes>>) {
    let mut buf = Vec::new();
    let why = loop {
        let Frame { id, message } = match read_frame(&mut stream, &mut buf) {
            Ok(f) => f,
            Err(FrameError::Closed) => break "the agent closed the connection".to_string(),
            Err(e) => break e.to_string(),
        };
        let target = {
            let mut r = lock(&routes);
            match r.map.get(&id) {
                Some(Route::Reply(_)) => match r.map.remove(&id) {
                    Some(Route::Reply(tx)) => Some(tx),
                    _ => None,
                },
                Some(Route::Session(tx, credit)) => {
                    if let Message::StdinAck { bytes } = message {
                        credit.add(bytes);
                        None
                    } else {
                        let tx = tx.clone();
                        let last = matches!(message, Message::Exit(_));
                        if last {
                            if let Some(Route::Session(_, c)) = r.map.remove(&id) {
                                c.close();
                            }
                        }
                        Some(tx)
                    }
                }
                // Connection-level errors (id 0) and late frames of dropped sessions.
                None => None,
            }
        };
        if let Some(tx) = target {
            // A dropped receiver just means nobody wants this frame any more.
            let _ = tx.send(message);
        }
    };
    let mut r = lock(&routes);
    r.closed = Some(why);
    for (_, route) in r.map.drain() {
        if let Route::Session(_, credit) = route {
            credit.close();
        }
    }
}

/// A connection to a supermachine agent.
///
/// Cheap to clone (clones share the connection) and usable from many threads at once;
/// the connection closes when the last clone and the last [`Process`] are dropped, and
/// the agent then kills that connection's remaining processes.
///
/// ```no_run
/// use std::time::Duration;
/// use supermachine_client::{Client, Command};
///
/// # fn main() -> Result<(), supermachine_client::Error> {
/// // Through the VMM's hybrid-vsock socket, retrying while the guest boots.
/// let client = Client::wait_ready("/run/vm/vsock.sock", 7100, Duration::from_secs(60))?;
/// let info = client.guest_info()?;
/// println!("{} {} with {} CPUs", info.kernel_release, info.arch, info.cpus);
///
/// let out = client.exec(&Command::new("sh").arg("-c").arg("echo hi; exit 3"))?;
/// assert_eq!(out.stdout, b"hi\n");
/// assert_eq!(out.status.shell_code(), 3);
/// client.power_off()?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl Client {
    /// Connects to `endpoint` and negotiates the protocol version, giving up on the
    /// handshake after `timeout`.
    pub fn connect_timeout(endpoint: &Endpoint, timeout: Duration) -> Result<Client> {
        let mut stream = transport::open(endpoint, Some(timeout))?;
        stream.set_read_timeout(Some(timeout))?;
        let hello = Message::Hello(Hello {
            min_version: MIN_PROTOCOL_VERSION,
            max_version: PROTOCOL_VERSION,
            client: concat!("supermachine-client ", env!("CARGO_PKG_VERSION")).into(),
        });
        write_frame(&mut stream, 1, &hello)?;
        let mut buf = Vec::new();
        let reply = match read_frame(&mut stream, &mut buf) {
            Ok(f) => f.message,
            Err(FrameError::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Error::Timeout("waiting for the agent's hello".into()))
            }
            Err(FrameError::Closed) => {
                return Err(Error::Closed("closed before the agent's hello".into()))
            }
            Err(e) => return Err(Error::Protocol(e.to_string())),
        };
        let hello = match reply {
            Message::HelloReply(h) => h,
            Message::Error(e) => return Err(Error::Agent(e)),
            other => {
                return Err(Error::Protocol(format!(
                    "expected a hello reply, got frame type {:#04x}",
                    other.kind()
                )))
            }
        };
        stream.set_read_timeout(None)?;
        let reader = stream.try_clone()?;
        let routes = Arc::new(Mutex::new(Routes::default()));
        let reader_routes = routes.clone();
        std::thread::Builder::new()
            .name("smctl-reader".into())
            .spawn(move || reader_loop(reader, reader_routes))?;
        let inner = Arc::new(Inner {
            writer: Mutex::new(stream),
            routes,
            next_id: AtomicU32::new(2),
            hello,
            timeout: Mutex::new(None),
        });
        Ok(Client { inner })
    }

    /// Connects to `endpoint` (30 s handshake bound).
    pub fn connect(endpoint: &Endpoint) -> Result<Client> {
        Client::connect_timeout(endpoint, HANDSHAKE_TIMEOUT)
    }

    /// Connects to an agent listening on a Unix socket (`--unix PATH`).
    pub fn connect_unix(path: impl AsRef<Path>) -> Result<Client> {
        Client::connect(&Endpoint::Unix(path.as_ref().to_path_buf()))
    }

    /// Connects through a hybrid-vsock socket to guest vsock `port`.
    pub fn connect_hybrid_vsock(uds_path: impl AsRef<Path>, port: u32) -> Result<Client> {
        Client::connect(&Endpoint::HybridVsock {
            uds: uds_path.as_ref().to_path_buf(),
            port,
        })
    }

    /// Retries connecting to `endpoint` until the agent answers a ping, or `timeout`.
    ///
    /// Copes with every stage of a slow boot: the socket not existing yet, the VMM
    /// accepting and then closing (nothing listens on the guest port yet), and an agent
    /// that accepted but has not answered.
    pub fn wait_ready_at(endpoint: &Endpoint, timeout: Duration) -> Result<Client> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let attempt = Client::connect_timeout(
                endpoint,
                left.clamp(Duration::from_millis(100), Duration::from_secs(5)),
            )
            .and_then(|c| {
                c.set_timeout(Some(left.max(Duration::from_millis(100))));
                c.ping()?;
                c.set_timeout(None);
                Ok(c)
            });
            match attempt {
                Ok(c) => return Ok(c),
                Err(e) if Instant::now() >= deadline => {
                    return Err(Error::Timeout(format!("agent not ready: {e}")))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// [`Client::wait_ready_at`] through a hybrid-vsock socket.
    pub fn wait_ready(uds_path: impl AsRef<Path>, port: u32, timeout: Duration) -> Result<Client> {
        let endpoint = Endpoint::HybridVsock {
            uds: uds_path.as_ref().to_path_buf(),
            port,
        };
        Client::wait_ready_at(&endpoint, timeout)
    }

    /// [`Client::wait_ready_at`] on a plain Unix socket.
    pub fn wait_ready_unix(path: impl AsRef<Path>, timeout: Duration) -> Result<Client> {
        Client::wait_ready_at(&Endpoint::Unix(path.as_ref().to_path_buf()), timeout)
    }

    /// Bounds how long control requests (not exec) wait for their reply; `None`
    /// (the default) waits forever.
    pub fn set_timeout(&self, timeout: Option<Duration>) {
        *lock(&self.inner.timeout) = timeout;
    }

    /// The agent's answer to the version handshake.
    pub fn hello(&self) -> &HelloReply {
        &self.inner.hello
    }

    /// Guest `CLOCK_BOOTTIME` (ns) when the agent became ready to accept connections.
    pub fn ready_boottime_ns(&self) -> u64 {
        self.inner.hello.ready_boottime_ns
    }

    /// Round trip to the agent; returns the time it took.
    pub fn ping(&self) -> Result<Duration> {
        let start = Instant::now();
        let nonce = u64::from(self.inner.next_id());
        match self.inner.request(&Message::Ping { nonce })? {
            Message::Pong { nonce: n } if n == nonce => Ok(start.elapsed()),
            other => Err(unexpected(&other)),
        }
    }

    /// Kernel release, arch, uptime, memory and CPU count of the guest.
    pub fn guest_info(&self) -> Result<GuestInfo> {
        match self.inner.request(&Message::GuestInfoRequest)? {
            Message::GuestInfo(info) => Ok(info),
            other => Err(unexpected(&other)),
        }
    }

    fn expect_ok(&self, message: &Message) -> Result<()> {
        match self.inner.request(message)? {
            Message::Ok => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Sets the guest's wall clock.
    pub fn set_clock(&self, time: SystemTime) -> Result<()> {
        let since = time
            .duration_since(UNIX_EPOCH)
            .map_err(|_| Error::Protocol("time before the Unix epoch".into()))?;
        let secs = i64::try_from(since.as_secs())
            .map_err(|_| Error::Protocol("time out of range".into()))?;
        self.set_clock_raw(secs, since.subsec_nanos())
    }

    /// Sets the guest's wall clock from seconds and nanoseconds since the epoch.
    pub fn set_clock_raw(&self, secs: i64, nanos: u32) -> Result<()> {
        self.expect_ok(&Message::SetClock { secs, nanos })
    }

    /// Flushes the guest's file systems.
    pub fn sync(&self) -> Result<()> {
        self.expect_ok(&Message::Sync)
    }

    /// Powers the guest off (after a sync). Returns once the agent acknowledged.
    pub fn power_off(&self) -> Result<()> {
        self.expect_ok(&Message::PowerOff)
    }

    /// Reboots the guest (after a sync); under a `-no-reboot` VMM this ends the VM.
    pub fn reboot(&self) -> Result<()> {
        self.expect_ok(&Message::Reboot)
    }

    /// Sends `signal` to any guest process (not init, not the agent).
    pub fn signal_pid(&self, pid: i32, signal: i32) -> Result<()> {
        self.expect_ok(&Message::SignalPid { pid, signal })
    }

    pub(crate) fn signal_session(&self, session: u32, signal: i32) -> Result<()> {
        self.expect_ok(&Message::Signal { session, signal })
    }

    pub(crate) fn resize_session(&self, session: u32, rows: u16, cols: u16) -> Result<()> {
        let size = supermachine_proto::WindowSize { rows, cols };
        self.expect_ok(&Message::Resize { session, size })
    }

    /// Starts a process and returns it for streaming (stdin, output, signals, wait).
    pub fn spawn(&self, command: &Command) -> Result<Process> {
        Process::start(self.clone(), command.request())
    }

    /// Runs a process to completion with empty stdin, collecting its output.
    pub fn exec(&self, command: &Command) -> Result<ExecOutput> {
        let mut command = command.clone();
        command.stdin(false);
        self.spawn(&command)?.wait_with_output()
    }

    /// Runs a process to completion feeding it `input` on stdin, collecting its output.
    pub fn exec_with_stdin(&self, command: &Command, input: &[u8]) -> Result<ExecOutput> {
        let mut command = command.clone();
        command.stdin(true);
        let process = self.spawn(&command)?;
        let stdin = process.stdin();
        std::thread::scope(|s| {
            let feeder = s.spawn(move || -> Result<()> {
                stdin.write(input)?;
                stdin.close()
            });
            let output = process.wait_with_output();
            // The process may exit without reading everything; that is not an error.
            let _ = feeder.join();
            output
        })
    }
}

pub(crate) fn unexpected(m: &Message) -> Error {
    Error::Protocol(format!("unexpected reply of frame type {:#04x}", m.kind()))
}
