//! Guest control, PID-1 duties and the host side: info, clock, power, orphan reaping,
//! the hybrid-vsock handshake with retries, and the smctl CLI.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use supermachine_client::{Client, Command, Error, ErrorCode, ExitStatus};

use common::{eventually, parent_of, process_exists, Agent, TempDir};

#[test]
fn guest_info_and_sync() {
    let agent = Agent::start(&[]);
    let client = agent.client();
    let info = client.guest_info().unwrap();
    let uname = std::process::Command::new("uname")
        .arg("-r")
        .output()
        .unwrap();
    assert_eq!(
        info.kernel_release,
        String::from_utf8_lossy(&uname.stdout).trim()
    );
    assert_eq!(info.arch, std::env::consts::ARCH);
    assert!(info.cpus >= 1);
    assert!(info.mem_total > 0 && info.mem_free > 0 && info.mem_free <= info.mem_total);
    assert!(info.uptime_ns >= client.ready_boottime_ns());
    client.sync().unwrap();
    assert!(client.ping().unwrap() < Duration::from_secs(5));
}

#[test]
fn invalid_clock_values_are_refused() {
    // Valid values would really set this host's clock, so only refusals are tested here;
    // the end-to-end tests set the clock of a real guest.
    let agent = Agent::start(&[]);
    let client = agent.client();
    for (secs, nanos) in [(0, 1_000_000_000), (-5, 0)] {
        match client.set_clock_raw(secs, nanos) {
            Err(Error::Agent(e)) => assert_eq!(e.code, ErrorCode::InvalidRequest),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn power_off_and_reboot_reply_then_end_the_agent_when_not_pid1() {
    for reboot in [false, true] {
        let mut agent = Agent::start(&[]);
        let client = agent.client();
        if reboot {
            client.reboot().unwrap();
        } else {
            client.power_off().unwrap();
        }
        assert!(eventually(Duration::from_secs(10), || agent
            .child
            .try_wait()
            .unwrap()
            .is_some()));
        assert!(agent.child.wait().unwrap().success());
    }
}

#[test]
fn orphans_are_reaped_by_a_subreaper() {
    let agent = Agent::start(&["--subreaper"]);
    let client = agent.client();
    // Each shell leaves a background child behind and exits at once.
    let script = "for i in 1 2 3 4 5 6 7 8; do sleep 1 </dev/null >/dev/null 2>&1 & echo $!; done";
    let out = client
        .exec(Command::new("sh").arg("-c").arg(script))
        .unwrap();
    assert_eq!(out.status, ExitStatus::Code(0));
    let pids: Vec<i32> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 8);
    for &pid in &pids {
        // Orphaned: now the agent's child (unless it is already gone).
        if let Some(ppid) = parent_of(pid) {
            assert_eq!(ppid as u32, agent.pid(), "orphan {pid} not adopted");
        }
    }
    // A zombie still has a /proc entry: vanishing means it was reaped.
    for &pid in &pids {
        assert!(
            eventually(Duration::from_secs(15), || !process_exists(pid)),
            "orphan {pid} was not reaped"
        );
    }
    // Exec statuses still reach their sessions while orphans come and go.
    let out = client
        .exec(Command::new("sh").arg("-c").arg("exit 9"))
        .unwrap();
    assert_eq!(out.status, ExitStatus::Code(9));
}

#[test]
fn closing_the_connection_kills_its_processes() {
    let agent = Agent::start(&[]);
    let client = agent.client();
    let p = client.spawn(Command::new("sleep").arg("100")).unwrap();
    let pid = p.pid();
    assert!(process_exists(pid));
    drop(p);
    drop(client);
    assert!(eventually(Duration::from_secs(10), || !process_exists(pid)));
}

/// A stand-in for the VMM's hybrid-vsock socket: refuses the first `refusals`
/// connections (accepts, reads CONNECT, closes, as when nothing listens in the guest),
/// then forwards `CONNECT <port>` to the agent's Unix socket.
fn hybrid_proxy(path: PathBuf, agent: PathBuf, port: u32, refusals: usize, delay: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        let listener = UnixListener::bind(&path).unwrap();
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            if n < refusals || line != format!("CONNECT {port}\n") {
                continue;
            }
            let Ok(upstream) = UnixStream::connect(&agent) else {
                continue;
            };
            let mut down = conn;
            down.write_all(b"OK 1073741824\n").unwrap();
            let mut up_w = upstream.try_clone().unwrap();
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut reader, &mut up_w);
                let _ = up_w.shutdown(std::net::Shutdown::Write);
            });
            let mut up_r = upstream;
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut up_r, &mut down);
                let _ = down.shutdown(std::net::Shutdown::Write);
            });
        }
    });
}

#[test]
fn hybrid_vsock_handshake_and_wait_ready() {
    let agent = Agent::start(&[]);
    let dir = TempDir::new("hybrid");
    let uds = dir.0.join("vsock.sock");
    // The socket appears late and the first connections are dropped: wait_ready must
    // ride through both.
    hybrid_proxy(
        uds.clone(),
        agent.sock.clone(),
        7100,
        3,
        Duration::from_millis(300),
    );
    let client = Client::wait_ready(&uds, 7100, Duration::from_secs(30)).unwrap();
    let out = client
        .exec(Command::new("echo").arg("through vsock"))
        .unwrap();
    assert_eq!(out.stdout, b"through vsock\n");

    let direct = Client::connect_hybrid_vsock(&uds, 7100).unwrap();
    direct.ping().unwrap();

    // A port nobody serves: every attempt is dropped, so wait_ready times out.
    match Client::wait_ready(&uds, 7101, Duration::from_millis(500)) {
        Err(Error::Timeout(_)) => {}
        Err(e) => panic!("expected a timeout, got {e}"),
        Ok(_) => panic!("expected a timeout, got a client"),
    }
    match Client::connect_hybrid_vsock(&uds, 7101) {
        Err(Error::Handshake(_)) => {}
        Err(e) => panic!("expected a handshake error, got {e}"),
        Ok(_) => panic!("expected a handshake error, got a client"),
    }
}

/// The smctl binary, built on demand (it lives in the client package).
fn smctl() -> PathBuf {
    let agent_bin = Path::new(env!("CARGO_BIN_EXE_supermachine-agent"));
    let status = std::process::Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "supermachine-client",
            "--bin",
            "smctl",
        ])
        .arg("--manifest-path")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml"))
        .status()
        .unwrap();
    assert!(status.success());
    agent_bin.with_file_name("smctl")
}

#[test]
fn smctl_exit_status_is_the_remote_one() {
    let agent = Agent::start(&[]);
    let smctl = smctl();
    let run = |args: &[&str], stdin: &[u8]| {
        let mut child = std::process::Command::new(&smctl)
            .arg("--unix")
            .arg(&agent.sock)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert_eq!(
        run(&["exec", "--", "sh", "-c", "exit 7"], b""),
        (Some(7), String::new())
    );
    assert_eq!(
        run(&["exec", "--", "sh", "-c", "kill -9 $$"], b"").0,
        Some(137)
    );
    assert_eq!(
        run(
            &[
                "exec",
                "-e",
                "A=b",
                "-w",
                "/tmp",
                "--",
                "sh",
                "-c",
                "echo $A; pwd"
            ],
            b""
        ),
        (Some(0), "b\n/tmp\n".into())
    );
    // A piped stdin is forwarded.
    assert_eq!(run(&["exec", "--", "wc", "-c"], b"12345").1.trim(), "5");
    assert_eq!(run(&["ping"], b"").0, Some(0));
    let (code, info) = run(&["info"], b"");
    assert_eq!(code, Some(0));
    assert!(
        info.contains(&format!("arch: {}", std::env::consts::ARCH)),
        "{info}"
    );
    // smctl's own failures are not confused with remote codes.
    assert_eq!(run(&["exec", "--", "no-such-program"], b"").0, Some(255));
    assert_eq!(run(&["bogus"], b"").0, Some(2));

    let mut out = String::new();
    let mut child = std::process::Command::new(&smctl)
        .args([
            "--unix",
            "/nonexistent/agent.sock",
            "--timeout",
            "0.3",
            "wait-ready",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(1));
    assert!(out.contains("not ready"), "{out}");
}
