//! Exec sessions: output, exit, env, cwd, spawn errors, signals, chain, stage_files, pty.

mod common;

use std::time::Duration;

use common::*;
use supermachine_proto::{b64_encode, Kind, Resize, StageFile};

#[test]
fn output_and_exit_code_with_peak_rss() {
    let agent = Agent::start();
    let o = agent.run(&sh("echo out; echo err >&2; exit 3"));
    assert_eq!(o.out(), "out\n");
    assert_eq!(o.err(), "err\n");
    assert_eq!(o.code(), 3);
    assert_eq!(o.exit_len, 12, "EXIT is always code + peak RSS");
    assert!(o.exit.unwrap().peak_rss_kib.unwrap() > 0);
}

#[test]
fn signal_deaths_fold_to_128_plus_signal() {
    let agent = Agent::start();
    assert_eq!(agent.run(&sh("kill -TERM $$")).code(), 143);
    assert_eq!(agent.run(&sh("kill -KILL $$")).code(), 137);
}

#[test]
fn env_is_agent_env_plus_pid1_extras_with_request_on_top() {
    let agent = Agent::start_under_pid1(
        &[("AGENT_ONLY", "a"), ("SHARED", "agent")],
        ("PID1_ONLY", "from-pid1"),
    );
    let mut r = req(&["env"]);
    r.env.insert("SHARED".into(), "request".into());
    r.env.insert("NEW".into(), "n".into());
    let o = agent.run(&r);
    assert_eq!(o.code(), 0, "{o:?}");
    let out = o.out();
    let lines: Vec<&str> = out.lines().collect();
    for want in [
        "AGENT_ONLY=a",
        "SHARED=request",
        "NEW=n",
        "PID1_ONLY=from-pid1",
    ] {
        assert!(lines.contains(&want), "{want} missing in {out}");
    }
    assert!(lines.iter().any(|l| l.starts_with("PATH=")));
    // The request wins over PID 1's value too.
    let mut r = req(&["sh", "-c", "echo $PID1_ONLY"]);
    r.env.insert("PID1_ONLY".into(), "request".into());
    assert_eq!(agent.run(&r).out(), "request\n");
}

#[test]
fn cwd_is_used_and_a_missing_one_reports_the_errno() {
    let agent = Agent::start();
    let mut r = req(&["pwd"]);
    r.cwd = Some("/proc".into());
    assert_eq!(agent.run(&r).out(), "/proc\n");
    let mut r = req(&["pwd"]);
    r.cwd = Some("/nonexistent-cwd".into());
    let o = agent.run(&r);
    assert_eq!(o.code(), 127);
    assert_eq!(
        o.err(),
        "agent: chdir /nonexistent-cwd failed: No such file or directory (os error 2)\n"
    );
}

#[test]
fn exec_failures_report_the_errno() {
    let agent = Agent::start();
    let o = agent.run(&req(&["no-such-command-xyz"]));
    assert_eq!(o.code(), 127);
    assert_eq!(
        o.err(),
        "agent: exec no-such-command-xyz failed: No such file or directory (os error 2)\n"
    );
    // A file that exists but is not executable.
    let dir = TempDir::new("noexec");
    let file = dir.path("script");
    std::fs::write(&file, "#!/bin/sh\necho hi\n").unwrap();
    let o = agent.run(&req(&[&pathbuf(&file)]));
    assert_eq!(o.code(), 126);
    assert!(
        o.err()
            .ends_with("failed: Permission denied (os error 13)\n"),
        "{}",
        o.err()
    );
}

#[test]
fn children_start_with_default_signals_and_empty_mask() {
    let agent = Agent::start();
    let o = agent.run(&sh("grep -E '^Sig(Blk|Ign)' /proc/self/status"));
    assert_eq!(
        o.out(),
        "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
    );
}

#[test]
fn signal_frame_ends_the_whole_process_group() {
    let agent = Agent::start();
    for (sig, code) in [(15u8, 143), (9, 137)] {
        let mut c = agent.connect();
        c.request(&sh("sleep 100 & echo $!; wait"));
        let out = c.read_until(|s| s.ends_with('\n'));
        let bg: u32 = out.trim().parse().unwrap();
        c.send(Kind::Signal, &[sig]);
        let o = c.collect();
        assert_eq!(o.code(), code);
        assert!(wait_dead(bg), "background sleep survived signal {sig}");
    }
}

#[test]
fn chain_runs_until_the_first_failure() {
    let agent = Agent::start();
    let mut r = sh("echo one");
    r.chain = vec![
        vec!["sh".into(), "-c".into(), "echo two".into()],
        vec!["sh".into(), "-c".into(), "echo three; exit 4".into()],
        vec!["sh".into(), "-c".into(), "echo never".into()],
    ];
    let o = agent.run(&r);
    assert_eq!(o.out(), "one\ntwo\nthree\n");
    assert_eq!(o.code(), 4);
    let mut r = req(&["true"]);
    r.chain = vec![vec!["sh".into(), "-c".into(), "exit 0".into()]];
    assert_eq!(agent.run(&r).code(), 0);
    // The first command failing stops everything.
    let mut r = req(&["false"]);
    r.chain = vec![vec!["sh".into(), "-c".into(), "echo never".into()]];
    let o = agent.run(&r);
    assert_eq!((o.code(), o.out().as_str()), (1, ""));
}

#[test]
fn stage_files_are_written_with_their_mode_before_the_exec() {
    let agent = Agent::start();
    let dir = TempDir::new("stage");
    let path = pathbuf(&dir.path("tool.sh"));
    let mut r = req(&[&path]);
    r.stage_files = vec![
        StageFile {
            path: path.clone(),
            data_b64: b64_encode(b"#!/bin/sh\necho staged\n"),
            mode: Some(0o750),
        },
        StageFile {
            path: pathbuf(&dir.path("plain")),
            data_b64: b64_encode(b"x"),
            mode: None,
        },
    ];
    let o = agent.run(&r);
    assert_eq!((o.code(), o.out().as_str()), (0, "staged\n"), "{o:?}");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path("tool.sh")), 0o750);
    assert_eq!(mode(&dir.path("plain")), 0o644);
    let names: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "no temp files left: {names:?}");

    let mut r = req(&["true"]);
    r.stage_files = vec![StageFile {
        path: "/nonexistent-dir/x".into(),
        data_b64: b64_encode(b"x"),
        mode: None,
    }];
    let o = agent.run(&r);
    assert_eq!(
        o.error.as_deref(),
        Some("stage_file(/nonexistent-dir/x): No such file or directory (os error 2)")
    );
}

#[test]
fn tty_gives_a_pty_on_all_three_streams_with_size_and_resize() {
    let agent = Agent::start();
    let mut r = sh("test -t 0 && test -t 1 && test -t 2 && stty size && echo err >&2");
    r.tty = true;
    r.cols = Some(100);
    r.rows = Some(30);
    let o = agent.run(&r);
    assert_eq!(o.code(), 0, "{o:?}");
    assert_eq!(o.out(), "30 100\r\nerr\r\n");
    assert!(o.stderr.is_empty());

    let mut c = agent.connect();
    let mut r = sh("stty -echo; echo go; read x; stty size");
    r.tty = true;
    c.request(&r);
    c.read_until(|s| s.contains("go"));
    c.send(
        Kind::Resize,
        &Resize {
            cols: 120,
            rows: 40,
        }
        .encode(),
    );
    c.send(Kind::Stdin, b"\n");
    let o = c.collect();
    assert_eq!(o.code(), 0);
    assert!(o.out().contains("40 120"), "{o:?}");

    // An empty STDIN is end of input on a pty too.
    let mut r = req(&["cat"]);
    r.tty = true;
    let mut c = agent.connect();
    c.request(&r);
    c.send(Kind::Stdin, b"");
    let o = c.collect();
    assert_eq!(o.code(), 0);
}

#[test]
fn orphans_are_reaped() {
    let agent = Agent::start();
    let o = agent.run(&sh("sleep 0.2 & echo $!"));
    let orphan: u32 = o.out().trim().parse().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t0 = std::time::Instant::now();
    while std::path::Path::new(&format!("/proc/{orphan}")).exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "orphan {orphan} not reaped"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_background_writer_does_not_hold_back_exit() {
    let agent = Agent::start();
    // The shell exits at once; its background job keeps the output pipe busy.
    let t0 = std::time::Instant::now();
    let o = agent.run(&sh("echo first; (while :; do echo bg; done) & exit 5"));
    assert_eq!(o.code(), 5);
    assert!(o.out().starts_with("first\n"));
    assert!(t0.elapsed() < Duration::from_secs(10));
}

#[test]
fn tty_works_without_a_devpts_mount() {
    let agent = Agent::start_without_devpts();
    let mut r = sh("tty; stat -f -c %T /dev/pts");
    r.tty = true;
    let o = agent.run(&r);
    assert_eq!(o.code(), 0, "{o:?}");
    assert!(o.out().starts_with("/dev/pts/"), "{o:?}");
    assert!(o.out().contains("devpts"), "{o:?}");
}
