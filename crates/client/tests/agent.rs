//! The client against the real agent, in its Unix-socket mode, through both transports.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{hybrid_front, Agent};
use supermachine_client::{Client, Command, Endpoint, Error, Output, FILE_CHUNK};

fn client(agent: &Agent) -> Client {
    let mut c = Client::new(Endpoint::bridged(&agent.sock));
    c.set_timeout(Some(Duration::from_secs(60)));
    c
}

fn sh(script: &str) -> Command {
    Command::from_argv(["/bin/sh", "-c", script])
}

#[test]
fn probe_answers_protocol_5_or_newer_on_both_transports() {
    let agent = Agent::start();
    assert!(client(&agent).probe().unwrap() >= 5);
    let hybrid = hybrid_front(&agent.dir.0, agent.sock.clone(), 1028);
    let c = Client::new(Endpoint::hybrid_vsock(&hybrid));
    assert!(c.wait_ready(Duration::from_secs(10)).unwrap() >= 5);
    let out = c.exec(&sh("echo via hybrid")).unwrap();
    assert_eq!(out.stdout, b"via hybrid\n");
}

#[test]
fn hybrid_handshake_refused_is_a_handshake_error() {
    let agent = Agent::start();
    // The front only knows port 1028: another port is closed before OK.
    let hybrid = hybrid_front(&agent.dir.0, agent.sock.clone(), 1028);
    let c = Client::new(Endpoint::HybridVsock {
        uds: hybrid,
        port: 7100,
    });
    let err = c.probe().unwrap_err();
    assert!(matches!(err, Error::Handshake(_)), "{err:?}");
    assert!(err.to_string().contains("guest port 7100"), "{err}");
}

#[test]
fn missing_socket_is_an_io_error_naming_it() {
    let c = Client::new(Endpoint::bridged("/nonexistent/agent.sock"));
    let err = c.probe().unwrap_err();
    assert!(matches!(err, Error::Io(_)), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/agent.sock"), "{err}");
}

#[test]
fn exec_output_exit_code_env_and_cwd() {
    let agent = Agent::start();
    let c = client(&agent);
    let out = c
        .exec(
            sh("echo \"$GREETING\"; pwd; echo oops >&2; exit 42")
                .env("GREETING", "hello")
                .current_dir("/tmp"),
        )
        .unwrap();
    assert_eq!(out.stdout, b"hello\n/tmp\n");
    assert_eq!(out.stderr, b"oops\n");
    assert_eq!(out.status.code, 42);
    assert!(!out.status.success());
    assert!(
        out.status.peak_rss_kib.is_some_and(|k| k > 0),
        "{:?}",
        out.status
    );
}

#[test]
fn stdin_streams_and_eof_ends_it() {
    let agent = Agent::start();
    let c = client(&agent);
    let input: Vec<u8> = (0..3u32 << 20).map(|i| (i * 7 + i / 251) as u8).collect();
    let out = c.exec_with_stdin(&Command::new("cat"), &input).unwrap();
    assert_eq!(out.status.code, 0);
    assert!(out.stdout == input, "stdin came back altered");

    // Piece by piece on a live process.
    let mut p = c.spawn(Command::new("wc").arg("-c")).unwrap();
    p.write_stdin(b"12345").unwrap();
    p.write_stdin(b"678").unwrap();
    p.close_stdin().unwrap();
    let mut text = Vec::new();
    loop {
        match p.next_output().unwrap() {
            Some(Output::Stdout(d)) => text.extend(d),
            Some(Output::Stderr(_)) => {}
            Some(Output::Exit(s)) => {
                assert_eq!(s.code, 0);
                break;
            }
            None => panic!("no exit"),
        }
    }
    assert_eq!(String::from_utf8_lossy(&text).trim(), "8");
    assert_eq!(p.next_output().unwrap(), None);
}

#[test]
fn signal_reaches_the_process_group() {
    let agent = Agent::start();
    let c = client(&agent);
    let mut p = c.spawn(&sh("sleep 100 & wait")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    p.signal(15).unwrap();
    let status = loop {
        if let Some(Output::Exit(s)) = p.next_output().unwrap() {
            break s;
        }
    };
    assert_eq!(status.code, 128 + 15);
}

#[test]
fn tty_size_and_resize() {
    let agent = Agent::start();
    let c = client(&agent);
    let out = c
        .exec(sh("stty size; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo tty").tty(100, 30))
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("30 100\r\n"), "{text:?}");
    assert!(text.contains("tty"), "{text:?}");

    let mut p = c.spawn(sh("read line; stty size").tty(80, 24)).unwrap();
    p.resize(132, 50).unwrap();
    p.write_stdin(b"go\n").unwrap();
    let mut text = Vec::new();
    loop {
        match p.next_output().unwrap() {
            Some(Output::Stdout(d)) => text.extend(d),
            Some(Output::Exit(_)) | None => break,
            Some(Output::Stderr(_)) => {}
        }
    }
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("50 132"), "{text:?}");
}

#[test]
fn stage_files_and_chain() {
    let agent = Agent::start();
    let c = client(&agent);
    let staged = agent.dir.0.join("staged.sh");
    let out = c
        .exec(
            Command::from_argv([staged.to_str().unwrap()])
                .stage_file(
                    staged.to_str().unwrap(),
                    b"#!/bin/sh\necho staged\n",
                    Some(0o755),
                )
                .chain(["sh", "-c", "echo second"])
                .chain(["sh", "-c", "exit 3"])
                .chain(["sh", "-c", "echo never"]),
        )
        .unwrap();
    assert_eq!(out.stdout, b"staged\nsecond\n");
    assert_eq!(out.status.code, 3);

    // The agent's ERROR text comes back as an agent error.
    let missing = agent.dir.0.join("no/such/dir/file");
    let err = c
        .exec(Command::new("true").stage_file(missing.to_str().unwrap(), b"x", None))
        .unwrap_err();
    assert!(
        matches!(err, Error::Agent(ref m) if m.contains("stage_file")),
        "{err:?}"
    );
}

#[test]
fn empty_argv_is_refused_before_sending() {
    let agent = Agent::start();
    let err = client(&agent).exec(&Command::default()).unwrap_err();
    assert!(err.to_string().contains("empty argv"), "{err}");
}

#[test]
fn files_in_and_out_in_chunks() {
    let agent = Agent::start();
    let c = client(&agent);
    let small = agent.dir.0.join("small");
    c.write_file(small.to_str().unwrap(), b"tiny", Some(0o600))
        .unwrap();
    assert_eq!(std::fs::read(&small).unwrap(), b"tiny");
    let (data, total) = c
        .read_file_chunk(small.to_str().unwrap(), 1, 2, None)
        .unwrap();
    assert_eq!((data.as_slice(), total), (&b"in"[..], 4));

    // Over one chunk: two write_file_chunk calls, then two reads.
    let big: Vec<u8> = (0..FILE_CHUNK + 12345).map(|i| (i % 253) as u8).collect();
    let path = agent.dir.0.join("big");
    let n = c
        .upload(path.to_str().unwrap(), &mut big.as_slice(), Some(0o640))
        .unwrap();
    assert_eq!(n, big.len() as u64);
    assert!(std::fs::read(&path).unwrap() == big);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o640
    );
    let mut back = Vec::new();
    assert_eq!(
        c.download(path.to_str().unwrap(), &mut back).unwrap(),
        big.len() as u64
    );
    assert!(back == big);

    let err = c
        .download("/nonexistent/file", &mut Vec::new())
        .unwrap_err();
    assert!(matches!(err, Error::Agent(_)), "{err:?}");
}

#[test]
fn lifecycle_controls() {
    let agent = Agent::start();
    let c = client(&agent);
    c.sync().unwrap();
    // No workload pid file on this host: the agent says so.
    let err = c.signal_workload(0).unwrap_err();
    assert!(
        matches!(err, Error::Agent(ref m) if m.contains("workload")),
        "{err:?}"
    );
    let err = c.smpark_park().unwrap_err();
    assert!(
        matches!(err, Error::Agent(ref m) if m.contains("/dev/smpark")),
        "{err:?}"
    );
    let err = c.smpark_unpark().unwrap_err();
    assert!(
        matches!(err, Error::Agent(ref m) if m.contains("/dev/smpark")),
        "{err:?}"
    );
}

#[test]
fn smctl_exec_cp_and_probe() {
    let agent = Agent::start();
    let smctl = env!("CARGO_BIN_EXE_smctl");
    let sock = agent.sock.to_str().unwrap();
    let run = |args: &[&str], stdin: &[u8]| {
        let mut child = std::process::Command::new(smctl)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    };

    let out = run(&["--uds", sock, "probe"], b"");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("protocol "));

    // The remote exit code is smctl's; stdin is forwarded.
    let out = run(
        &[
            "--uds",
            sock,
            "exec",
            "-e",
            "X=1",
            "--",
            "sh",
            "-c",
            "cat; echo $X; exit 7",
        ],
        b"in\n",
    );
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(out.stdout, b"in\n1\n");

    let hybrid = hybrid_front(&agent.dir.0, agent.sock.clone(), 1028);
    let out = run(
        &["--vsock-uds", hybrid.to_str().unwrap(), "exec", "true"],
        b"",
    );
    assert_eq!(out.status.code(), Some(0));

    // cp in and back out.
    let local = agent.dir.0.join("local");
    std::fs::write(&local, b"copied bytes").unwrap();
    let guest = agent.dir.0.join("guest-side");
    let dst = format!("guest:{}", guest.display());
    let out = run(
        &[
            "--uds",
            sock,
            "cp",
            local.to_str().unwrap(),
            &dst,
            "--mode",
            "600",
        ],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&guest).unwrap(), b"copied bytes");
    let back = agent.dir.0.join("back");
    let out = run(&["--uds", sock, "cp", &dst, back.to_str().unwrap()], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&back).unwrap(), b"copied bytes");

    // Clear errors.
    let out = run(&["exec", "true"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--uds PATH or --vsock-uds PATH"));
    let out = run(&["--uds", sock, "cp", "a", "b"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("guest:"));
    let out = run(
        &[
            "--uds",
            sock,
            "cp",
            "guest:/nonexistent/x",
            back.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("agent error"));
    let out = run(&["--uds", "/nonexistent.sock", "exec", "true"], b"");
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.sock"));
}
