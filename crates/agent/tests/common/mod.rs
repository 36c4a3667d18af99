//! Test harness: the agent on a private Unix socket (SUPERMACHINE_AGENT_UNIX_SOCKET), in
//! its own mount namespace so /run (ready file, workload pid) and
//! /proc/sys/vm/drop_caches are private; raw-frame helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use supermachine_proto::{read_frame, write_frame, ExecRequest, Exit, Frame, Kind, HEADER_LEN};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub const AGENT: &str = env!("CARGO_BIN_EXE_supermachine-agent");

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
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running agent in listen mode.
pub struct Agent {
    pub child: Child,
    pub sock: PathBuf,
    pub dir: TempDir,
}

impl Agent {
    pub fn start() -> Agent {
        Agent::start_with_env(&[])
    }

    /// Starts the agent with a cleared environment plus PATH and `env`.
    pub fn start_with_env(env: &[(&str, &str)]) -> Agent {
        Agent::start_inner(env, None)
    }

    /// Starts the agent in its own pid namespace, as a child of a PID 1 shell that has
    /// `pid1_var` in its environment and the agent does not.
    pub fn start_under_pid1(env: &[(&str, &str)], pid1_var: (&str, &str)) -> Agent {
        Agent::start_inner(env, Some(pid1_var))
    }

    /// Starts the agent as PID 1 of its own pid namespace, as in the guest.
    pub fn start_as_pid1() -> Agent {
        Agent::start_inner(&[], Some(("", "")))
    }

    /// Starts the agent with /dev/pts hidden under an empty tmpfs, as in a guest whose
    /// init mounted no devpts.
    pub fn start_without_devpts() -> Agent {
        Agent::start_full(&[], None, " && mount -t tmpfs tmpfs /dev/pts")
    }

    fn start_inner(env: &[(&str, &str)], pid1_var: Option<(&str, &str)>) -> Agent {
        Agent::start_full(env, pid1_var, "")
    }

    fn start_full(env: &[(&str, &str)], pid1_var: Option<(&str, &str)>, extra: &str) -> Agent {
        let dir = TempDir::new("agent");
        let sock = dir.path("agent.sock");
        let setup = format!(
            "mount -t tmpfs tmpfs /run && : > /run/drop_caches && \
             mount --bind /run/drop_caches /proc/sys/vm/drop_caches{extra}"
        );
        let mut cmd = Command::new("unshare");
        if !is_root() {
            // Mounting needs a user namespace when the tests do not run as root.
            cmd.args(["--user", "--map-root-user"]);
        }
        cmd.args(["--mount", "--propagation", "private"]);
        match pid1_var {
            // unshare execs in place: the agent keeps this pid.
            None => {
                let script = format!("{setup} && exec \"$0\"");
                cmd.args(["--", "sh", "-c", &script, AGENT]);
            }
            Some(("", _)) => {
                let script = format!("{setup} && exec \"$0\"");
                cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child", "--"]);
                cmd.args(["sh", "-c", &script, AGENT]);
            }
            Some((k, v)) => {
                let script = format!("{setup} && env -u {k} \"$0\"");
                cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child", "--"]);
                cmd.args(["env", &format!("{k}={v}"), "sh", "-c", &script, AGENT]);
            }
        }
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("SUPERMACHINE_AGENT_UNIX_SOCKET", &sock)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = cmd.spawn().expect("start unshare + agent");
        let agent = Agent { child, sock, dir };
        // Ready = the socket is there and the ready file exists in the agent's own /run
        // (looked at only once the agent is in its new mount namespace, since the
        // host's /run may hold a ready file of some other agent).
        let ready = agent.root().join("run/supermachine-agent-ready");
        let own_ns = std::fs::read_link("/proc/self/ns/mnt").unwrap();
        let t0 = Instant::now();
        loop {
            let ns = std::fs::read_link(format!("/proc/{}/ns/mnt", agent.pid())).ok();
            if ns.is_some_and(|n| n != own_ns) && ready.exists() && agent.sock.exists() {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "agent never became ready"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        agent
    }

    /// The agent's view of `/` (its mount namespace).
    pub fn root(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.child.id()))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn connect(&self) -> Conn {
        let s = UnixStream::connect(&self.sock).expect("connect to the agent");
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        Conn { s }
    }

    pub fn assert_alive(&mut self) {
        assert!(self.child.try_wait().unwrap().is_none(), "agent exited");
    }

    /// Runs a request to the end.
    pub fn run(&self, req: &ExecRequest) -> Outcome {
        let mut c = self.connect();
        c.request(req);
        c.send(Kind::Stdin, b"");
        c.collect()
    }

    pub fn control(&self, json: &str) -> String {
        let mut c = self.connect();
        c.send(Kind::Control, json.as_bytes());
        let f = c.recv().expect("a CONTROL reply");
        assert_eq!(f.kind, Kind::Control as u8);
        assert!(c.recv().is_none(), "one reply, then close");
        String::from_utf8(f.payload).unwrap()
    }

    /// Resident memory of the agent process, KiB.
    pub fn rss_kib(&self) -> u64 {
        status_field(self.pid(), "VmRSS:")
    }
}

/// Whether the tests run as root (then the agent can also set the clock).
pub fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("run id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

pub fn status_field(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One connection.
pub struct Conn {
    pub s: UnixStream,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit: Option<Exit>,
    pub exit_len: usize,
    pub error: Option<String>,
}

impl Outcome {
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn err(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    pub fn code(&self) -> u32 {
        self.exit
            .unwrap_or_else(|| panic!("no EXIT: {self:?}"))
            .code
    }
}

impl Conn {
    pub fn send(&mut self, kind: Kind, payload: &[u8]) {
        write_frame(&mut self.s, kind as u8, payload).unwrap();
    }
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }
    pub fn request(&mut self, req: &ExecRequest) {
        self.send(Kind::Request, &serde_json::to_vec(req).unwrap());
    }
    /// Next frame; None at end of stream.
    pub fn recv(&mut self) -> Option<Frame> {
        read_frame(&mut self.s).expect("a whole frame")
    }
    /// Reads frames to EXIT or ERROR, then checks the connection ends.
    pub fn collect(&mut self) -> Outcome {
        let mut o = Outcome::default();
        while let Some(f) = self.recv() {
            match Kind::from_u8(f.kind) {
                Some(Kind::Stdout) => o.stdout.extend(f.payload),
                Some(Kind::Stderr) => o.stderr.extend(f.payload),
                Some(Kind::Exit) => {
                    o.exit_len = f.payload.len();
                    o.exit = Some(Exit::decode(&f.payload).unwrap());
                    break;
                }
                Some(Kind::Error) => {
                    o.error = Some(String::from_utf8(f.payload).unwrap());
                    break;
                }
                _ => panic!("unexpected frame {f:?}"),
            }
        }
        o
    }
    /// Reads output until `pred` holds on stdout.
    pub fn read_until(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let mut out = Vec::new();
        loop {
            let f = self.recv().expect("output before the end");
            if f.kind == Kind::Stdout as u8 || f.kind == Kind::Stderr as u8 {
                out.extend(f.payload);
                let s = String::from_utf8_lossy(&out).into_owned();
                if pred(&s) {
                    return s;
                }
            } else {
                panic!(
                    "unexpected frame {f:?} after {:?}",
                    String::from_utf8_lossy(&out)
                );
            }
        }
    }
}

pub fn req(argv: &[&str]) -> ExecRequest {
    ExecRequest {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: BTreeMap::new(),
        ..Default::default()
    }
}

pub fn sh(script: &str) -> ExecRequest {
    req(&["sh", "-c", script])
}

/// Waits until `pid` is gone or a zombie.
pub fn wait_dead(pid: u32) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(s) => {
                let state = s
                    .rsplit(')')
                    .next()
                    .and_then(|r| r.split_whitespace().next());
                if state == Some("Z") {
                    return true;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

pub fn header(kind: u8, len: u32) -> [u8; HEADER_LEN] {
    supermachine_proto::encode_header(kind, len)
}

pub fn exists_in(agent: &Agent, p: &str) -> bool {
    agent.root().join(p.trim_start_matches('/')).exists()
}

pub fn read_in(agent: &Agent, p: &str) -> Vec<u8> {
    let mut v = Vec::new();
    std::fs::File::open(agent.root().join(p.trim_start_matches('/')))
        .unwrap()
        .read_to_end(&mut v)
        .unwrap();
    v
}

pub fn pathbuf(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}
