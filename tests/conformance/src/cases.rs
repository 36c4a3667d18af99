//! The conformance cases: each drives an agent through supermachine 0.7.108's own client
//! (`ExecBuilder`, `ExecChild`, `ExecSignaler`, `wire::send_control_with_ack`) over a Unix
//! socket that reaches it, and asserts what a user of supermachine relies on. The same
//! cases run against the agent's Unix-socket mode and against guests in QEMU.
//!
//! The control calls a user makes (`Vm::write_file`, `Vm::read_file`,
//! `Vm::workload_signal`, the probe, clock sync, sync and cache drop done around
//! snapshots) are methods of a running `Vm` or `pub(crate)` functions of the crate, so
//! they cannot be called on a bare socket; their bodies are one JSON CONTROL frame each
//! sent with the public `send_control_with_ack`. Here the same JSON is built (fields and
//! chunk loop as in supermachine 0.7.108 `api.rs`) and sent through that public function.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::mpsc::channel;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use supermachine::wire::{b64_decode, b64_encode, send_control_with_ack};
use supermachine::{ExecBuilder, ExecChild, ExecOutcome};

use crate::frames;

/// An agent as the real client reaches it.
pub struct Target {
    /// A Unix socket each of whose connections reaches the agent.
    pub socket: PathBuf,
    /// A directory the agent can write, for the file cases.
    pub scratch: String,
    /// Whether the agent may set the clock and drop caches (a guest: yes; the host
    /// sandbox, a user namespace: no).
    pub privileged: bool,
    /// How long a control or exec may take (TCG guests are slow).
    pub patience: Duration,
}

impl Target {
    fn exec(&self) -> ExecBuilder {
        ExecBuilder::new(self.socket.clone())
    }

    fn sh(&self, script: &str) -> ExecOutcome {
        self.exec()
            .argv(["sh", "-c", script])
            .timeout(self.patience)
            .output()
            .unwrap_or_else(|e| panic!("exec sh -c {script:?}: {e}"))
    }

    /// Runs `script` and returns its stdout, asserting it exits 0.
    fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert_eq!(
            out.status.code(),
            Some(0),
            "sh -c {script:?}: stdout {:?} stderr {:?}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn control(&self, body: Value) -> std::io::Result<Value> {
        send_control_with_ack(&self.socket, &body, Some(self.patience))
    }

    fn path(&self, name: &str) -> String {
        format!("{}/{name}", self.scratch)
    }
}

/// Reads `child`'s stdout until `needle` has appeared (so the child is known to run).
fn wait_for_line(child: &mut ExecChild, needle: &str) -> supermachine::ExecStdout {
    let mut stdout = child.stdout().expect("stdout handle");
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let n = stdout.read(&mut buf).expect("read stdout");
        assert!(n > 0, "stdout ended before {needle:?}: {seen:?}");
        seen.extend_from_slice(&buf[..n]);
    }
    stdout
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Mode bits as `ls -ln` prints them for `path`.
fn ls_mode(t: &Target, path: &str) -> String {
    t.sh_ok(&format!("ls -ln {path}"))
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

// ---- exec ----

fn output_streams_and_exit(t: &Target) {
    let out = t.sh("echo out; echo err >&2; exit 7");
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n");
    assert!(!out.timed_out);
    assert!(
        out.peak_rss_kib.is_some(),
        "EXIT carried no peak RSS (the 12-byte form)"
    );
}

fn argv_is_passed_verbatim(t: &Target) {
    let out = t
        .exec()
        .argv([
            "sh",
            "-c",
            "printf '%s|' \"$@\"",
            "sh",
            "a b",
            "",
            "*",
            "$HOME",
        ])
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "a b||*|$HOME|");
}

fn large_output(t: &Target) {
    let out = t.sh("head -c 3000000 /dev/zero; head -c 100000 /dev/zero >&2");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(out.stdout.len(), 3_000_000);
    assert!(out.stdout.iter().all(|&b| b == 0));
    assert_eq!(out.stderr.len(), 100_000);
}

fn env_is_merged(t: &Target) {
    let out = t
        .exec()
        .argv(["sh", "-c", "echo \"$CONF_A|$CONF_B|${PATH:+path}\""])
        .env("CONF_A", "one two")
        .env("CONF_B", "")
        .output()
        .unwrap();
    assert_eq!(
        text(&out.stdout),
        "one two||path\n",
        "stderr {}",
        text(&out.stderr)
    );
}

fn cwd_is_used(t: &Target) {
    let out = t
        .exec()
        .argv(["pwd"])
        .cwd(t.scratch.clone())
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout).trim(), t.scratch);
}

/// A failed spawn is reported, not run, with the real errno's text.
fn spawn_failures_name_the_errno(t: &Target) {
    for b in [
        t.exec().argv(["true"]).cwd("/nonexistent-conformance-dir"),
        t.exec().argv(["/nonexistent-conformance-program"]),
    ] {
        let report = match b.output() {
            Ok(out) => {
                assert_ne!(out.status.code(), Some(0), "a failed spawn exited 0");
                text(&out.stderr)
            }
            Err(e) => e.to_string(),
        };
        assert!(
            report.contains("No such file or directory"),
            "the failure does not name ENOENT: {report:?}"
        );
    }
}

fn tty_with_winsize(t: &Target) {
    let out = t
        .exec()
        .argv([
            "sh",
            "-c",
            "stty size; test -t 0 && test -t 1 && test -t 2 && echo all-tty",
        ])
        .tty(true)
        .winsize(91, 33)
        .timeout(t.patience)
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(stdout.contains("33 91"), "stty size: {stdout:?}");
    assert!(stdout.contains("all-tty"), "{stdout:?}");
    assert!(out.stderr.is_empty(), "a pty merges stderr into stdout");
    assert_eq!(out.status.code(), Some(0));
}

fn tty_resize(t: &Target) {
    let mut child = t
        .exec()
        .argv(["sh", "-c", "stty -echo; echo ready; read line; stty size"])
        .tty(true)
        .winsize(80, 24)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin().unwrap();
    let mut stdout = wait_for_line(&mut child, "ready");
    child.resize(120, 50).unwrap();
    stdin.write_all(b"go\n").unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("50 120"), "after RESIZE: {rest:?}");
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

fn stage_files_before_exec(t: &Target) {
    let script = t.path("staged.sh");
    let data = t.path("staged.txt");
    let out = t
        .exec()
        .stage_file_mode(
            script.clone(),
            format!("#!/bin/sh\necho staged; cat {data}\n"),
            0o750,
        )
        .stage_file(data.clone(), b"payload\n".to_vec())
        .argv([script.clone()])
        .output()
        .unwrap();
    assert_eq!(
        text(&out.stdout),
        "staged\npayload\n",
        "stderr {}",
        text(&out.stderr)
    );
    assert_eq!(ls_mode(t, &script), "-rwxr-x---");
}

fn chain_stops_at_first_failure(t: &Target) {
    let out = t
        .exec()
        .argv(["sh", "-c", "echo one"])
        .chain(["sh", "-c", "echo two; exit 3"])
        .chain(["sh", "-c", "echo never"])
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "one\ntwo\n");
    assert_eq!(out.status.code(), Some(3));
}

fn stdin_streams_to_the_child(t: &Target) {
    let mut child = t.exec().argv(["cat"]).spawn().unwrap();
    let mut stdin = child.stdin().unwrap();
    let mut stdout = child.stdout().unwrap();
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let sent = data.clone();
    let writer = thread::spawn(move || {
        for chunk in sent.chunks(60_000) {
            stdin.write_all(chunk).unwrap();
        }
        stdin.close().unwrap();
    });
    let mut echoed = Vec::new();
    stdout.read_to_end(&mut echoed).unwrap();
    writer.join().unwrap();
    assert_eq!(echoed.len(), data.len());
    assert!(echoed == data, "cat echoed different bytes");
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

fn output_gives_stdin_eof(t: &Target) {
    let out = t.exec().argv(["cat"]).timeout(t.patience).output().unwrap();
    assert!(!out.timed_out, "cat did not see EOF on stdin");
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
}

fn signal_reaches_the_child(t: &Target) {
    let mut child = t
        .exec()
        .argv(["sh", "-c", "echo up; exec sleep 100"])
        .spawn()
        .unwrap();
    let _stdout = wait_for_line(&mut child, "up");
    assert!(child.try_wait().unwrap().is_none(), "exited early");
    child.signal(15).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(128 + 15));
}

fn kill_ends_the_process_group(t: &Target) {
    let mut child = t
        .exec()
        .argv(["sh", "-c", "sleep 100 & echo up; wait"])
        .spawn()
        .unwrap();
    let _stdout = wait_for_line(&mut child, "up");
    let signaler = child.signaler();
    thread::spawn(move || signaler.kill().unwrap())
        .join()
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(128 + 9));
}

fn timeout_kills(t: &Target) {
    let out = t
        .exec()
        .argv(["sleep", "100"])
        .timeout(Duration::from_millis(500))
        .output()
        .unwrap();
    assert!(out.timed_out);
    assert_eq!(out.status.code(), Some(128 + 9));
}

fn cancel_kills(t: &Target) {
    let (tx, rx) = channel();
    thread::spawn(move || {
        thread::sleep(Duration::from_millis(500));
        let _ = tx.send(());
    });
    let out = t
        .exec()
        .argv(["sleep", "100"])
        .output_with_cancel(rx)
        .unwrap();
    assert_eq!(out.status.code(), Some(128 + 9));
}

/// Closing the connection ends the child (the VMM drops connections of dead clients).
fn dropping_the_child_ends_it(t: &Target) {
    let pidfile = t.path("victim.pid");
    let mut child = t
        .exec()
        .argv([
            "sh",
            "-c",
            &format!("echo $$ > {pidfile}; echo up; exec sleep 100"),
        ])
        .spawn()
        .unwrap();
    let _stdout = wait_for_line(&mut child, "up");
    drop(child);
    let deadline = Instant::now() + t.patience;
    loop {
        let out = t.sh(&format!("kill -0 $(cat {pidfile}) 2>/dev/null"));
        if out.status.code() != Some(0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the child outlived its connection"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

// ---- control ----

fn probe_answers_version_5(t: &Target) {
    let ack = t.control(json!({"action": "probe"})).unwrap();
    let protocol = ack["protocol"].as_u64().expect("protocol field");
    assert!(protocol >= 5, "the host needs protocol 5 or more: {ack}");
}

fn write_file_then_read_back(t: &Target) {
    let path = t.path("written.bin");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    // Vm::write_file's one-frame form (files up to 8 MiB).
    t.control(
        json!({"action": "write_file", "path": path, "data_b64": b64_encode(&data), "mode": 0o640}),
    )
    .unwrap();
    assert_eq!(ls_mode(t, &path), "-rw-r-----");
    // Vm::read_file's loop, with a smaller chunk than its 8 MiB to take several rounds.
    let mut back = Vec::new();
    loop {
        let ack = t
            .control(json!({"action": "read_file_chunk", "path": path,
                            "offset": back.len() as u64, "len": 65_536u64, "max_bytes": 1u64 << 20}))
            .unwrap();
        let total = ack["total_len"].as_u64().expect("total_len");
        let chunk = b64_decode(ack["data_b64"].as_str().expect("data_b64")).unwrap();
        assert!(
            !chunk.is_empty() || back.len() as u64 >= total,
            "no progress"
        );
        back.extend(chunk);
        if back.len() as u64 >= total {
            break;
        }
    }
    assert!(back == data, "read back {} bytes, differing", back.len());
    // Over max_bytes, and a missing file: errors, nothing sent.
    let err = t
        .control(
            json!({"action": "read_file_chunk", "path": path, "offset": 0,
                        "len": 65_536, "max_bytes": 1000}),
        )
        .unwrap_err();
    assert!(!err.to_string().is_empty());
    t.control(
        json!({"action": "read_file_chunk", "path": t.path("missing"), "offset": 0,
                     "len": 10, "max_bytes": 10}),
    )
    .unwrap_err();
}

fn write_file_chunks_appear_whole(t: &Target) {
    let path = t.path("chunked.bin");
    let data: Vec<u8> = (0..90_000u32).map(|i| (i % 253) as u8).collect();
    let token = format!("{}-conformance", std::process::id());
    let chunks: Vec<&[u8]> = data.chunks(40_000).collect();
    let mut offset = 0u64;
    for (i, chunk) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        let mut body = json!({"action": "write_file_chunk", "path": path, "offset": offset,
                              "data_b64": b64_encode(chunk), "last": last, "token": token});
        if last {
            body["mode"] = json!(0o600);
        } else {
            let seen = t.sh(&format!("test -e {path}")).status.code();
            assert_ne!(
                seen,
                Some(0),
                "a partial file is visible before the last chunk"
            );
        }
        t.control(body).unwrap();
        offset += chunk.len() as u64;
    }
    assert_eq!(ls_mode(t, &path), "-rw-------");
    let ack = t
        .control(
            json!({"action": "read_file_chunk", "path": path, "offset": 0,
                        "len": 1u64 << 20, "max_bytes": 1u64 << 20}),
        )
        .unwrap();
    assert!(b64_decode(ack["data_b64"].as_str().unwrap()).unwrap() == data);
}

fn workload_signal(t: &Target) {
    const PIDFILE: &str = "/run/supermachine-workload.pid";
    // The guest's launch script wrote one for its workload: kept and put back.
    let saved = t.sh(&format!("cat {PIDFILE}"));
    if saved.status.code() != Some(0) {
        let err = t
            .control(json!({"action": "signal", "signum": 15}))
            .unwrap_err();
        assert!(
            err.to_string().contains("no workload pid"),
            "without a pid file: {err}"
        );
    }
    let mut child = t
        .exec()
        .argv([
            "sh",
            "-c",
            &format!("echo $$ > {PIDFILE}; echo up; exec sleep 100"),
        ])
        .spawn()
        .unwrap();
    let _stdout = wait_for_line(&mut child, "up");
    let ack = t
        .control(json!({"action": "signal", "signum": 15}))
        .unwrap();
    let pid = t.sh_ok(&format!("cat {PIDFILE}"));
    assert_eq!(
        ack["pid"].as_u64().map(|p| p.to_string()),
        Some(pid.trim().to_string())
    );
    assert_eq!(child.wait().unwrap().code(), Some(128 + 15));
    if saved.status.code() == Some(0) {
        t.control(json!({"action": "write_file", "path": PIDFILE,
                         "data_b64": b64_encode(&saved.stdout)}))
            .unwrap();
    }
}

fn sync_and_caches(t: &Target) {
    t.control(json!({"action": "sync"})).unwrap();
    let drop = t.control(json!({"action": "drop_vfs_caches"}));
    // In the host sandbox /proc/sys is read-only; an ack either way is what matters
    // there (the published agent answers ok).
    if t.privileged {
        drop.unwrap();
    } else if let Err(e) = drop {
        assert!(!e.to_string().is_empty());
    }
}

fn sync_time_sets_the_clock(t: &Target) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let ahead = now + Duration::from_secs(86_400 * 400);
    let r = t.control(json!({"action": "sync_time", "host_unix_ns": ahead.as_nanos() as u64}));
    if !t.privileged {
        // A user namespace cannot set the clock: the error must say so.
        let e = r.unwrap_err().to_string();
        assert!(e.contains("not permitted"), "{e}");
        return;
    }
    r.unwrap();
    let guest: u64 = t.sh_ok("date +%s").trim().parse().unwrap();
    let back = t.control(json!({"action": "sync_time",
        "host_unix_ns": SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64}));
    back.unwrap();
    assert!(
        guest.abs_diff(ahead.as_secs()) < 120,
        "guest clock {guest}, set to {}",
        ahead.as_secs()
    );
}

fn smpark_without_device(t: &Target) {
    match t.control(json!({"action": "smpark_park"})) {
        Err(e) => assert!(e.to_string().contains("/dev/smpark"), "{e}"),
        // A guest with the module: park must be undone.
        Ok(_) => {
            t.control(json!({"action": "smpark_unpark"})).unwrap();
        }
    }
}

fn unknown_action(t: &Target) {
    let e = t.control(json!({"action": "no_such_action"})).unwrap_err();
    // api.rs matches this text to tell a stale agent from a broken one.
    assert!(e.to_string().contains("unknown CONTROL action"), "{e}");
}

// ---- raw frames (no public client call sends these) ----

fn raw(t: &Target, bytes: &[u8]) -> frames::Reply {
    let mut s = UnixStream::connect(&t.socket).unwrap();
    s.set_read_timeout(Some(t.patience)).unwrap();
    s.write_all(bytes).unwrap();
    let mut got = Vec::new();
    while let Ok(Some(f)) = frames::read_frame(&mut s) {
        let terminal = matches!(f.0, frames::EXIT | frames::ERROR | frames::CONTROL);
        got.push(f);
        if terminal {
            break;
        }
    }
    frames::fold(got)
}

fn malformed_first_frames(t: &Target) {
    let r = raw(t, &frames::frame(0x41, b"x"));
    assert!(
        matches!(&r.end, frames::End::Error(m) if m.contains("0x41")),
        "{r:?}"
    );
    let r = raw(t, &frames::frame(frames::REQUEST, b"{not json"));
    assert!(matches!(r.end, frames::End::Error(_)), "{r:?}");
    let r = raw(t, &frames::request(&json!({"argv": []})));
    assert!(matches!(r.end, frames::End::Error(_)), "{r:?}");
    let r = raw(t, &frames::frame(frames::CONTROL, b"{not json"));
    assert!(
        matches!(&r.end, frames::End::Control(v) if v["ok"] == json!(false)),
        "{r:?}"
    );
    // Over the cap: the agent must not wait for 16 MiB + 1, and must stay up.
    let mut header = vec![frames::REQUEST];
    header.extend_from_slice(&((16u32 << 20) + 1).to_be_bytes());
    let r = raw(t, &header);
    assert!(
        matches!(r.end, frames::End::Error(_) | frames::End::Eof),
        "{r:?}"
    );
    probe_answers_version_5(t);
}

/// A case: panics when the agent does not conform.
pub type Case = fn(&Target);

/// Every case, by name.
pub const CASES: &[(&str, Case)] = &[
    ("output_streams_and_exit", output_streams_and_exit),
    ("argv_is_passed_verbatim", argv_is_passed_verbatim),
    ("large_output", large_output),
    ("env_is_merged", env_is_merged),
    ("cwd_is_used", cwd_is_used),
    (
        "spawn_failures_name_the_errno",
        spawn_failures_name_the_errno,
    ),
    ("tty_with_winsize", tty_with_winsize),
    ("tty_resize", tty_resize),
    ("stage_files_before_exec", stage_files_before_exec),
    ("chain_stops_at_first_failure", chain_stops_at_first_failure),
    ("stdin_streams_to_the_child", stdin_streams_to_the_child),
    ("output_gives_stdin_eof", output_gives_stdin_eof),
    ("signal_reaches_the_child", signal_reaches_the_child),
    ("kill_ends_the_process_group", kill_ends_the_process_group),
    ("timeout_kills", timeout_kills),
    ("cancel_kills", cancel_kills),
    ("dropping_the_child_ends_it", dropping_the_child_ends_it),
    ("probe_answers_version_5", probe_answers_version_5),
    ("write_file_then_read_back", write_file_then_read_back),
    (
        "write_file_chunks_appear_whole",
        write_file_chunks_appear_whole,
    ),
    ("workload_signal", workload_signal),
    ("sync_and_caches", sync_and_caches),
    ("sync_time_sets_the_clock", sync_time_sets_the_clock),
    ("smpark_without_device", smpark_without_device),
    ("unknown_action", unknown_action),
    ("malformed_first_frames", malformed_first_frames),
];

/// Runs every case against `t` (after creating its scratch directory), printing one
/// line per case, and fails naming each case that failed.
pub fn run_all(t: &Target, label: &str) {
    let failed = run_cases(t, label);
    assert!(
        failed.is_empty(),
        "{label}: {} of {} cases failed: {failed:?}",
        failed.len(),
        CASES.len()
    );
}

/// Runs every case against `t`, printing one line per case; returns the failed ones.
pub fn run_cases(t: &Target, label: &str) -> Vec<&'static str> {
    t.sh_ok(&format!("mkdir -p {}", t.scratch));
    let mut failed = Vec::new();
    for (name, case) in CASES {
        let started = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| case(t)));
        let ms = started.elapsed().as_millis();
        match result {
            Ok(()) => eprintln!("conformance[{label}] {name}: ok ({ms} ms)"),
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                eprintln!("conformance[{label}] {name}: FAILED: {msg}");
                failed.push(*name);
            }
        }
    }
    failed
}
