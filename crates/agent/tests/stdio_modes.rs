//! `--exec-stdio` (one connection on stdin/stdout) and `--tcp-stdio HOST PORT`.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};

use common::*;
use supermachine_proto::{read_frame, write_frame, Exit, Kind};

#[test]
fn exec_stdio_runs_one_request() {
    let mut child = Command::new(AGENT)
        .arg("--exec-stdio")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut w = child.stdin.take().unwrap();
    let mut r = child.stdout.take().unwrap();
    write_frame(
        &mut w,
        Kind::Request as u8,
        &serde_json::to_vec(&req(&["cat"])).unwrap(),
    )
    .unwrap();
    write_frame(&mut w, Kind::Stdin as u8, b"via stdio").unwrap();
    write_frame(&mut w, Kind::Stdin as u8, b"").unwrap();
    let mut out = Vec::new();
    let exit = loop {
        let f = read_frame(&mut r).unwrap().unwrap();
        match Kind::from_u8(f.kind) {
            Some(Kind::Stdout) => out.extend(f.payload),
            Some(Kind::Exit) => break Exit::decode(&f.payload).unwrap(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!((exit.code, out.as_slice()), (0, &b"via stdio"[..]));
    assert!(read_frame(&mut r).unwrap().is_none());
    assert!(child.wait().unwrap().success());
}

#[test]
fn exec_stdio_kills_a_silent_child_when_stdin_closes() {
    let mut child = Command::new(AGENT)
        .arg("--exec-stdio")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut w = child.stdin.take().unwrap();
    let mut r = child.stdout.take().unwrap();
    write_frame(
        &mut w,
        Kind::Request as u8,
        &serde_json::to_vec(&sh("echo $$; exec sleep 100")).unwrap(),
    )
    .unwrap();
    let f = read_frame(&mut r).unwrap().unwrap();
    let pid: u32 = String::from_utf8(f.payload)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    drop(w);
    assert!(wait_dead(pid), "the child outlived the connection");
    assert!(child.wait().unwrap().success());
}

#[test]
fn exec_stdio_control() {
    let mut child = Command::new(AGENT)
        .arg("--exec-stdio")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut w = child.stdin.take().unwrap();
    write_frame(&mut w, Kind::Control as u8, br#"{"action":"probe"}"#).unwrap();
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    let mut want = Vec::new();
    write_frame(
        &mut want,
        Kind::Control as u8,
        br#"{"ok":true,"protocol":5}"#,
    )
    .unwrap();
    assert_eq!(out, want);
    assert!(child.wait().unwrap().success());
}

#[test]
fn tcp_stdio_bridges_bytes_both_ways() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        s.write_all(b"echo:").unwrap();
        s.write_all(&got).unwrap();
    });
    let out = Command::new(AGENT)
        .args(["--tcp-stdio", "127.0.0.1", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(b"\x00\xffraw bytes")?;
            c.wait_with_output()
        })
        .unwrap();
    server.join().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, b"echo:\x00\xffraw bytes");
}

#[test]
fn tcp_stdio_reports_a_refused_connection() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(AGENT)
        .args(["--tcp-stdio", "127.0.0.1", &port.to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("connect to 127.0.0.1:{port}")) && err.contains("refused"),
        "{err}"
    );
}
