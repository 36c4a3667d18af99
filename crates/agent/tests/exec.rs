//! Exec over the Unix transport: status, environment, streams, pty, concurrency.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use supermachine_client::{Command, Error, ErrorCode, ExitStatus, Output};

use common::{pseudo_random, sha256_hex, Agent, Sha256Sum, TempDir};

fn sh(script: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(script);
    c
}

#[test]
fn exit_codes_and_signals() {
    let agent = Agent::start(&[]);
    let client = agent.client();

    let out = client.exec(&sh("echo out; echo err >&2; exit 42")).unwrap();
    assert_eq!(out.status, ExitStatus::Code(42));
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    assert_eq!(
        client.exec(&sh("true")).unwrap().status,
        ExitStatus::Code(0)
    );

    // Killed by its own signal.
    let out = client.exec(&sh("kill -TERM $$")).unwrap();
    assert_eq!(out.status.shell_code(), 128 + 15);
    assert!(matches!(out.status, ExitStatus::Signal { signal: 15, .. }));

    // Signalled through its session.
    let p = client.spawn(Command::new("sleep").arg("100")).unwrap();
    assert!(p.pid() > 1);
    p.signal(libc::SIGKILL).unwrap();
    assert!(matches!(
        p.wait().unwrap(),
        ExitStatus::Signal { signal: 9, .. }
    ));

    // Signalled by pid, as `smctl signal` does, from a second connection.
    let p = client.spawn(Command::new("sleep").arg("100")).unwrap();
    agent.client().signal_pid(p.pid(), libc::SIGTERM).unwrap();
    assert!(matches!(
        p.wait().unwrap(),
        ExitStatus::Signal { signal: 15, .. }
    ));

    // pid 1 and non-positive pids are refused.
    for pid in [1, 0, -1] {
        match client.signal_pid(pid, libc::SIGTERM) {
            Err(Error::Agent(e)) => assert_eq!(e.code, ErrorCode::InvalidRequest),
            other => panic!("signal_pid({pid}) gave {other:?}"),
        }
    }
}

#[test]
fn spawn_errors_are_replies() {
    let agent = Agent::start(&[]);
    let client = agent.client();
    match client.exec(&Command::new("no-such-command-here")) {
        Err(Error::Agent(e)) => {
            assert_eq!(e.code, ErrorCode::SpawnFailed);
            assert_eq!(e.errno, libc::ENOENT);
        }
        other => panic!("{other:?}"),
    }
    match client.exec(&sh("pwd").current_dir("/does/not/exist").clone()) {
        Err(Error::Agent(e)) => {
            assert_eq!(e.code, ErrorCode::SpawnFailed);
            assert!(e.message.starts_with("chdir"), "{}", e.message);
        }
        other => panic!("{other:?}"),
    }
    match client.exec(&Command::from_argv(Vec::<String>::new())) {
        Err(Error::Agent(e)) => assert_eq!(e.code, ErrorCode::InvalidRequest),
        other => panic!("{other:?}"),
    }
    // The connection is still good afterwards.
    assert_eq!(
        client.exec(&sh("exit 3")).unwrap().status,
        ExitStatus::Code(3)
    );
}

#[test]
fn env_and_cwd() {
    let agent = Agent::start_with_env(&[], &[("AGENT_MARKER", "from-agent")]);
    let client = agent.client();

    // Default: only the given variables, plus a default PATH.
    let out = client
        .exec(sh("echo \"$FOO|$AGENT_MARKER|$PATH\"; pwd").env("FOO", "bar baz"))
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text,
        "bar baz||/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n/\n"
    );

    // Inherited: the agent's variables, overridden by the request's.
    let out = client
        .exec(
            sh("echo \"$AGENT_MARKER|$PATH\"")
                .inherit_env(true)
                .env("PATH", "/bin:/usr/bin"),
        )
        .unwrap();
    assert_eq!(out.stdout, b"from-agent|/bin:/usr/bin\n");

    let dir = TempDir::new("cwd");
    let out = client.exec(sh("pwd").current_dir(&dir.0)).unwrap();
    assert_eq!(out.stdout, format!("{}\n", dir.0.display()).into_bytes());
}

#[test]
fn uid_and_gid() {
    let agent = Agent::start(&[]);
    let client = agent.client();
    let result = client.exec(sh("id -u; id -g; id -G").uid(65534).gid(65533));
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert_eq!(result.unwrap().stdout, b"65534\n65533\n65533\n");
    } else {
        // Without privilege the switch must fail loudly, not run as the agent's user.
        match result {
            Err(Error::Agent(e)) => assert_eq!(e.code, ErrorCode::SpawnFailed),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn hundred_mib_of_stdout_intact() {
    const SIZE: usize = 100 * 1024 * 1024;
    let dir = TempDir::new("big");
    let path = dir.0.join("data");
    let data = pseudo_random(SIZE, 0x5eed);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(&data)
        .unwrap();
    let expected = sha256_hex(&data);
    drop(data);

    let agent = Agent::start(&[]);
    let client = agent.client();
    let mut p = client
        .spawn(Command::new("cat").arg(&path).stdin(false))
        .unwrap();
    let (mut hash, mut len) = (Sha256Sum::new(), 0usize);
    let status = loop {
        match p.next_output().unwrap() {
            Some(Output::Stdout(d)) => {
                len += d.len();
                hash.update(&d);
            }
            Some(Output::Stderr(d)) => panic!("stderr: {}", String::from_utf8_lossy(&d)),
            Some(Output::Exit(s)) => break s,
            None => unreachable!(),
        }
    };
    assert_eq!(status, ExitStatus::Code(0));
    assert_eq!(len, SIZE);
    assert_eq!(hash.finish(), expected);
}

#[test]
fn stdin_streams_both_ways() {
    let agent = Agent::start(&[]);
    let client = agent.client();

    // 16 MiB into sha256sum: stdin flow control alone.
    let input = pseudo_random(16 * 1024 * 1024, 7);
    let out = client
        .exec_with_stdin(&Command::new("sha256sum"), &input)
        .unwrap();
    let hex = sha256_hex(&input);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{hex}  -\n")
    );

    // 8 MiB through cat: stdin in while stdout comes out, from two threads.
    let input = pseudo_random(8 * 1024 * 1024, 11);
    let mut p = client.spawn(&Command::new("cat")).unwrap();
    let stdin = p.stdin();
    let feeder = {
        let input = input.clone();
        std::thread::spawn(move || {
            for chunk in input.chunks(100_000) {
                stdin.write(chunk).unwrap();
            }
            stdin.close().unwrap();
        })
    };
    let mut echoed = Vec::new();
    while let Some(event) = p.next_output().unwrap() {
        match event {
            Output::Stdout(d) => echoed.extend_from_slice(&d),
            Output::Stderr(d) => panic!("stderr: {}", String::from_utf8_lossy(&d)),
            Output::Exit(s) => assert_eq!(s, ExitStatus::Code(0)),
        }
    }
    feeder.join().unwrap();
    assert_eq!(echoed.len(), input.len());
    assert!(echoed == input, "echoed bytes differ");

    // A process that stops reading early does not stall the writer.
    let out = client
        .exec_with_stdin(Command::new("head").arg("-c").arg("10"), &input)
        .unwrap();
    assert_eq!(out.stdout, &input[..10]);
}

#[test]
fn dropping_a_process_releases_a_stdin_writer_waiting_for_credit() {
    let agent = Agent::start(&[]);
    let client = agent.client();
    let p = client
        .spawn(Command::new("sleep").arg("100").stdin(true))
        .unwrap();
    let stdin = p.stdin();
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // The child never reads: the pipe and the window fill, then the writer waits.
        let _ = done.send(stdin.write(&vec![0u8; 4 << 20]));
    });
    std::thread::sleep(Duration::from_millis(300));
    drop(p);
    match result.recv_timeout(Duration::from_secs(20)) {
        Ok(Err(Error::Closed(_))) => {}
        Ok(other) => panic!("the writer ended with {other:?}, not a closed session"),
        Err(_) => panic!("the stdin writer still waits for credit after the process was dropped"),
    }
}

#[test]
fn sixty_four_concurrent_execs() {
    let agent = Agent::start(&[]);
    let client = agent.client();
    let start = Instant::now();
    // 64 on one connection and 64 more spread over 8 connections.
    let mut handles = Vec::new();
    for i in 0..128 {
        let c = if i < 64 {
            client.clone()
        } else if i % 8 == 0 {
            agent.client()
        } else {
            client.clone()
        };
        handles.push(std::thread::spawn(move || {
            let out = c
                .exec(sh("sleep 1; echo $0; echo e$0 >&2; exit $(($0 % 7))").arg(i.to_string()))
                .unwrap();
            assert_eq!(out.stdout, format!("{i}\n").into_bytes());
            assert_eq!(out.stderr, format!("e{i}\n").into_bytes());
            assert_eq!(out.status, ExitStatus::Code(i % 7));
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    // Serial execution would take over two minutes.
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn pty_size_resize_and_tty() {
    let agent = Agent::start(&[]);
    let client = agent.client();
    let out = client
        .exec(sh("stty size; test -t 0 && test -t 1 && test -t 2 && echo tty").pty(30, 100))
        .unwrap();
    assert_eq!(out.status, ExitStatus::Code(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "30 100\r\ntty\r\n");

    let mut p = client
        .spawn(sh("read line; stty size; echo got:$line").pty(24, 80))
        .unwrap();
    p.resize(40, 120).unwrap();
    p.write_stdin(b"hello\n").unwrap();
    let mut text = Vec::new();
    while let Some(e) = p.next_output().unwrap() {
        match e {
            Output::Stdout(d) => text.extend_from_slice(&d),
            Output::Stderr(_) => panic!("a pty session has no separate stderr"),
            Output::Exit(s) => assert_eq!(s, ExitStatus::Code(0)),
        }
    }
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("40 120\r\n"), "{text:?}");
    assert!(text.contains("got:hello"), "{text:?}");

    // Resize needs a pty.
    let p = client.spawn(&Command::new("cat")).unwrap();
    match p.resize(1, 1) {
        Err(Error::Agent(e)) => assert_eq!(e.code, ErrorCode::InvalidRequest),
        other => panic!("{other:?}"),
    }
    p.close_stdin().unwrap();
    assert_eq!(p.wait().unwrap(), ExitStatus::Code(0));
}
