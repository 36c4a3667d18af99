//! Test harness: an agent process on a private Unix socket, and raw-frame helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use supermachine_client::Client;
use supermachine_proto::{encode_frame, read_frame, Frame, Hello, Message, PROTOCOL_VERSION};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A private scratch directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("smagent-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `supermachine-agent --unix PATH`.
pub struct Agent {
    pub child: Child,
    pub sock: PathBuf,
    /// Everything the agent wrote to stderr after its ready line.
    pub log: Arc<Mutex<String>>,
    _dir: TempDir,
}

fn drain(stderr: BufReader<ChildStderr>, log: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let mut l = log.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
}

impl Agent {
    pub fn start(extra_args: &[&str]) -> Agent {
        Agent::start_with_env(extra_args, &[])
    }

    pub fn start_with_env(extra_args: &[&str], env: &[(&str, &str)]) -> Agent {
        let dir = TempDir::new("agent");
        let sock = dir.0.join("agent.sock");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_supermachine-agent"));
        cmd.arg("--unix").arg(&sock).args(extra_args);
        cmd.envs(env.iter().copied());
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start the agent");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut ready = String::new();
        stderr.read_line(&mut ready).unwrap();
        assert_eq!(
            ready.trim_end(),
            format!(
                "supermachine-agent: ready on unix socket {}",
                sock.display()
            )
        );
        let log = Arc::new(Mutex::new(String::new()));
        drain(stderr, log.clone());
        Agent {
            child,
            sock,
            log,
            _dir: dir,
        }
    }

    pub fn client(&self) -> Client {
        Client::connect_unix(&self.sock).expect("connect to the agent")
    }

    /// A raw connection, after a successful Hello.
    pub fn raw(&self) -> Raw {
        let mut raw = Raw::connect(&self.sock);
        raw.send(1, &hello(1, PROTOCOL_VERSION));
        match raw.recv() {
            Frame {
                id: 1,
                message: Message::HelloReply(_),
            } => raw,
            other => panic!("expected a hello reply, got {other:?}"),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asserts the agent process is still running.
    pub fn assert_alive(&mut self) {
        assert!(self.child.try_wait().unwrap().is_none(), "agent exited");
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn hello(min: u16, max: u16) -> Message {
    Message::Hello(Hello {
        min_version: min,
        max_version: max,
        client: "test".into(),
    })
}

/// A socket speaking frames by hand, for malformed-input tests.
pub struct Raw {
    pub stream: UnixStream,
    buf: Vec<u8>,
}

impl Raw {
    pub fn connect(path: &Path) -> Raw {
        let stream = UnixStream::connect(path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, id: u32, message: &Message) {
        self.stream
            .write_all(&encode_frame(id, message).unwrap())
            .unwrap();
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub fn recv(&mut self) -> Frame {
        read_frame(&mut self.stream, &mut self.buf).expect("a frame from the agent")
    }

    /// True once the agent has closed the connection (a reset is a close that left
    /// some of our bytes unread).
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        match self.stream.read(&mut b) {
            Ok(n) => n == 0,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

/// A raw frame header.
pub fn header(kind: u8, flags: u8, id: u32, len: u32) -> Vec<u8> {
    let mut h = b"SM".to_vec();
    h.push(kind);
    h.push(flags);
    h.extend_from_slice(&id.to_le_bytes());
    h.extend_from_slice(&len.to_le_bytes());
    h
}

/// Polls `cond` until it holds or `timeout` passes.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// Whether a process exists (a zombie still does).
pub fn process_exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The parent pid of `pid` from /proc, if it is running.
pub fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Deterministic pseudo-random bytes (xorshift64).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A streaming SHA-256 computed by the host's `sha256sum` (optimized, unlike test code
/// built in debug mode).
pub struct Sha256Sum {
    child: Child,
}

impl Sha256Sum {
    pub fn new() -> Sha256Sum {
        let child = Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sha256sum");
        Sha256Sum { child }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.child.stdin.as_mut().unwrap().write_all(data).unwrap();
    }

    /// The hex digest.
    pub fn finish(mut self) -> String {
        drop(self.child.stdin.take());
        let out = self.child.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()[..64].to_string()
    }
}

/// The hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    let mut h = Sha256Sum::new();
    h.update(data);
    h.finish()
}
