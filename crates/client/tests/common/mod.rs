//! The real agent on a private Unix socket (`SUPERMACHINE_AGENT_UNIX_SOCKET`), and a
//! hybrid-vsock front for it, for the client's tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The agent binary: `SUPERMACHINE_AGENT_BIN`, or the workspace's agent built by cargo
/// into a target directory of its own (the test's own is locked while tests run).
pub fn agent_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("SUPERMACHINE_AGENT_BIN") {
            return PathBuf::from(p);
        }
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let workspace = manifest.join("../..");
        let target = workspace.join("target/client-tests-agent");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(&workspace)
            .args([
                "build",
                "--quiet",
                "-p",
                "supermachine-agent",
                "--target-dir",
            ])
            .arg(&target)
            .status()
            .expect("cannot run cargo to build the agent");
        assert!(status.success(), "building supermachine-agent failed");
        target.join("debug/supermachine-agent")
    })
    .clone()
}

/// A scratch directory, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "smclient-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running agent listening on `sock`.
pub struct Agent {
    child: Child,
    pub sock: PathBuf,
    pub dir: Scratch,
}

impl Agent {
    pub fn start() -> Agent {
        let dir = Scratch::new("agent");
        let sock = dir.0.join("agent.sock");
        let child = Command::new(agent_bin())
            .env("SUPERMACHINE_AGENT_UNIX_SOCKET", &sock)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the agent");
        let deadline = Instant::now() + Duration::from_secs(20);
        while UnixStream::connect(&sock).is_err() {
            assert!(
                Instant::now() < deadline,
                "the agent did not listen on {}",
                sock.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Agent { child, sock, dir }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A hybrid-vsock socket in front of `target` that answers `CONNECT <port>\n` with
/// `OK <n>\n` for `port` and closes otherwise, as vhost-device-vsock does for a port
/// nothing listens on. Each accepted connection is then spliced to `target`.
pub fn hybrid_front(dir: &Path, target: PathBuf, port: u32) -> PathBuf {
    let path = dir.join("hybrid.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let target = target.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() || line != format!("CONNECT {port}\n") {
                    return;
                }
                let Ok(upstream) = UnixStream::connect(&target) else {
                    return;
                };
                let mut conn_w = conn;
                if conn_w.write_all(b"OK 49152\n").is_err() {
                    return;
                }
                splice(reader, conn_w, upstream);
            });
        }
    });
    path
}

fn splice(mut from_client: BufReader<UnixStream>, mut to_client: UnixStream, upstream: UnixStream) {
    let mut up_w = upstream.try_clone().unwrap();
    let mut up_r = upstream;
    let t = std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_client, &mut up_w);
        let _ = up_w.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut up_r, &mut to_client);
    let _ = to_client.shutdown(std::net::Shutdown::Both);
    let _ = t.join();
}
