//! Running an agent binary on the host, as the guest would run it, without harming the
//! host: in new user, mount and pid namespaces (`unshare`), so the agent is PID 1 of its
//! own pid namespace, `/run` is a private tmpfs (the ready file, the workload pid file),
//! and its privileged actions (`sync_time`, `drop_vfs_caches`) cannot reach the host's
//! clock or caches. The test's work directory is bind-mounted at [`WORK`].

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use crate::frames::{self, Reply};

/// Where the sandbox sees the test's work directory.
pub const WORK: &str = "/run/work";

/// The PATH agents start with, the same for ours and the published one.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs inside the namespaces before the agent replaces it: `$1...` is the agent's argv.
const SETUP: &str = "mount -t tmpfs -o mode=0755 tmpfs /run && mkdir /run/work && \
                     mount --bind \"$SANDBOX_WORK\" /run/work && cd /run/work && exec \"$@\"";

/// The command running `agent args...` in the sandbox with `work` at [`WORK`].
pub fn command(agent: &Path, args: &[&str], work: &Path) -> Command {
    preflight(work);
    let mut c = Command::new("unshare");
    // --kill-child: the agent (PID 1 of the namespace, so every process in it) dies with
    // the unshare process, however that ends.
    c.args([
        "--user",
        "--map-root-user",
        "--mount",
        "--propagation",
        "private",
        "--pid",
        "--fork",
        "--kill-child",
        "--mount-proc",
        "sh",
        "-c",
        SETUP,
        "sandbox",
    ])
    .arg(agent)
    .args(args)
    .env_clear()
    .env("PATH", PATH)
    .env("SANDBOX_WORK", work)
    .current_dir(work);
    c
}

/// Fails the test, saying how to fix it, when this host cannot make the sandbox.
fn preflight(work: &Path) {
    static CHECKED: std::sync::Once = std::sync::Once::new();
    CHECKED.call_once(|| {
        let out = Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "--pid", "--fork"])
            .args(["--mount-proc", "sh", "-c", "mount -t tmpfs tmpfs /run"])
            .current_dir(work)
            .output()
            .expect("unshare (util-linux) is not installed");
        assert!(
            out.status.success(),
            "cannot create user, mount and pid namespaces for the agent sandbox: {}\n\
             Run as root, or allow unprivileged user namespaces \
             (sysctl kernel.unprivileged_userns_clone=1, and on Ubuntu \
             kernel.apparmor_restrict_unprivileged_userns=0).",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    });
}

/// The agent this repository builds: `$SUPERMACHINE_CONFORMANCE_AGENT`, else the host
/// build's static agent for this machine's arch in `out/`. Fails loudly when missing.
pub fn our_agent() -> PathBuf {
    let path = match std::env::var_os("SUPERMACHINE_CONFORMANCE_AGENT") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../out")
            .join(std::env::consts::ARCH)
            .join("supermachine-agent"),
    };
    assert!(
        path.is_file(),
        "our agent is not at {}: run scripts/build (or set SUPERMACHINE_CONFORMANCE_AGENT \
         to a supermachine-agent binary for this host)",
        path.display()
    );
    path
}

/// The agent published in `supermachine-kernel-x86-64` 0.7.70 (the one supermachine
/// 0.7.108 ships), written from the crate's bytes into `dir`.
#[cfg(target_arch = "x86_64")]
pub fn published_agent(dir: &Path) -> PathBuf {
    let path = dir.join("supermachine-agent-0.7.70");
    // The crate's own extract API writes it executable.
    supermachine_kernel_x86_64::extract_supermachine_agent_to(&path)
        .expect("write the published agent");
    path
}

/// An agent listening on a Unix socket (our agent's `SUPERMACHINE_AGENT_UNIX_SOCKET`
/// mode), killed on drop.
pub struct UnixAgent {
    child: Child,
    socket: PathBuf,
}

impl UnixAgent {
    /// Starts `agent` in the sandbox with its socket in `work`, and waits until it
    /// answers a `probe`.
    pub fn start(agent: &Path, work: &Path) -> UnixAgent {
        let socket = work.join("agent.sock");
        let mut cmd = command(agent, &[], work);
        cmd.env(
            "SUPERMACHINE_AGENT_UNIX_SOCKET",
            Path::new(WORK).join("agent.sock"),
        )
        .stdin(Stdio::null());
        let child = cmd.spawn().expect("unshare (util-linux) is not installed");
        let mut agent = UnixAgent { child, socket };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let probe = serde_json::json!({"action": "probe"});
            match supermachine::wire::send_control_with_ack(&agent.socket, &probe, None) {
                Ok(_) => return agent,
                Err(e) => {
                    if let Ok(Some(status)) = agent.child.try_wait() {
                        panic!("the agent exited ({status}) before answering on its socket");
                    }
                    assert!(
                        Instant::now() < deadline,
                        "the agent did not answer a probe on {} within 20 s: {e}",
                        agent.socket.display()
                    );
                    thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    /// The socket the real client dials.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for UnixAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one read of a frame from the agent gave.
type FrameRead = io::Result<Option<(u8, Vec<u8>)>>;

/// One connection to an agent run with `--exec-stdio` in the sandbox: frames go to its
/// stdin and come back on its stdout.
pub struct StdioSession {
    child: Child,
    stdin: Option<ChildStdin>,
    frames: Receiver<FrameRead>,
}

impl StdioSession {
    pub fn start(agent: &Path, work: &Path) -> StdioSession {
        let mut child = command(agent, &["--exec-stdio"], work)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("unshare (util-linux) is not installed");
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().expect("piped stdout");
        let (tx, frames) = channel();
        thread::spawn(move || loop {
            let f = frames::read_frame(&mut stdout);
            let done = !matches!(f, Ok(Some(_)));
            if tx.send(f).is_err() || done {
                return;
            }
        });
        StdioSession {
            child,
            stdin,
            frames,
        }
    }

    /// Sends raw bytes to the agent (errors ignored: the agent may have closed).
    pub fn send(&mut self, bytes: &[u8]) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = stdin.write_all(bytes).and_then(|()| stdin.flush());
        }
    }

    /// Collects the agent's frames until a terminal one, its end of stream, or `wait`.
    pub fn reply(&mut self, wait: Duration) -> Reply {
        let deadline = Instant::now() + wait;
        let mut got = Vec::new();
        let mut end = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.frames.recv_timeout(left) {
                Ok(Ok(Some((kind, payload)))) => {
                    // EXIT, ERROR, a CONTROL ack, or anything else the reply ends on.
                    let terminal = !matches!(kind, frames::STDOUT | frames::STDERR);
                    got.push((kind, payload));
                    if terminal {
                        break;
                    }
                }
                Ok(Ok(None)) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(Err(e)) => {
                    end = Some(frames::End::Bad(format!("reading the agent: {e}")));
                    break;
                }
                Err(RecvTimeoutError::Timeout) => {
                    end = Some(frames::End::Timeout);
                    break;
                }
            }
        }
        let mut reply = frames::fold(got);
        if let (frames::End::Eof, Some(end)) = (&reply.end, end) {
            reply.end = end;
        }
        reply
    }
}

impl Drop for StdioSession {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Unix socket where each connection gets its own `agent --exec-stdio` in a fresh
/// sandbox (how supermachine's runsc backend reaches an agent): lets the Unix-socket
/// cases run against an agent without a socket mode, such as the published one.
pub fn stdio_socket(agent: &Path, work: &Path) -> PathBuf {
    let socket = work.join("stdio.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind stdio.sock");
    let agent = agent.to_path_buf();
    let work = work.to_path_buf();
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let Ok(mut child) = command(&agent, &["--exec-stdio"], &work)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
            else {
                continue;
            };
            let (mut to_agent, mut from_agent) =
                (child.stdin.take().unwrap(), child.stdout.take().unwrap());
            let (mut rd, mut wr) = (conn.try_clone().unwrap(), conn);
            thread::spawn(move || {
                pump(&mut rd, &mut to_agent);
            });
            thread::spawn(move || {
                pump(&mut from_agent, &mut wr);
                let _ = wr.shutdown(std::net::Shutdown::Both);
                let _ = child.kill();
                let _ = child.wait();
            });
        }
    });
    socket
}

/// Copies until end of stream, each read passed on at once (`io::copy` may use splice,
/// which holds a socket's bytes until it has a full buffer).
fn pump(from: &mut impl io::Read, to: &mut impl Write) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).and_then(|()| to.flush()).is_err() {
                    return;
                }
            }
        }
    }
}
