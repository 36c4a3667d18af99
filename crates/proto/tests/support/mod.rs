//! Shared by the integration tests: one sample of every message.
#![allow(dead_code)]

pub mod fuzz_body;

use supermachine_proto::*;

/// One or more instances of every message type, edge values included.
pub fn samples() -> Vec<Message> {
    vec![
        Message::Hello(Hello {
            min_version: 1,
            max_version: 3,
            client: "tést".into(),
        }),
        Message::Ping { nonce: u64::MAX },
        Message::GuestInfoRequest,
        Message::SetClock {
            secs: -1,
            nanos: 999_999_999,
        },
        Message::Sync,
        Message::PowerOff,
        Message::Reboot,
        Message::Exec(ExecRequest::default()),
        Message::Exec(ExecRequest {
            argv: vec![b"sh".to_vec(), b"-c".to_vec(), vec![0xff, 0]],
            env: vec![b"A=B".to_vec()],
            inherit_env: true,
            cwd: Some(b"/tmp".to_vec()),
            uid: Some(1000),
            gid: Some(0),
            pty: Some(WindowSize { rows: 24, cols: 80 }),
            stdin: true,
        }),
        Message::Stdin { data: vec![] },
        Message::Stdin {
            data: b"abc".to_vec(),
        },
        Message::Resize {
            session: 9,
            size: WindowSize { rows: 1, cols: 2 },
        },
        Message::Signal {
            session: 3,
            signal: 15,
        },
        Message::SignalPid {
            pid: 1234,
            signal: 9,
        },
        Message::HelloReply(HelloReply {
            version: 1,
            agent_version: "0.8.0".into(),
            ready_boottime_ns: 123_456_789,
            max_frame_size: MAX_FRAME_SIZE,
            max_sessions: MAX_SESSIONS,
            stdin_window: STDIN_WINDOW,
        }),
        Message::Pong { nonce: 0 },
        Message::GuestInfo(GuestInfo {
            kernel_release: "6.12.0".into(),
            arch: "aarch64".into(),
            uptime_ns: 1,
            mem_total: 2,
            mem_free: 1,
            cpus: 4,
        }),
        Message::Ok,
        Message::Started { pid: 77 },
        Message::Stdout {
            data: vec![0; 1000],
        },
        Message::Stderr { data: vec![] },
        Message::StdinAck { bytes: 65536 },
        Message::Exit(ExitStatus::Code(-1)),
        Message::Exit(ExitStatus::Signal {
            signal: 11,
            core_dumped: true,
        }),
        Message::Error(ErrorReply {
            code: ErrorCode::SpawnFailed,
            errno: 2,
            message: "nope".into(),
        }),
        Message::Error(ErrorReply::new(ErrorCode::Unknown(999), "future")),
    ]
}
