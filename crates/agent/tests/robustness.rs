//! Hostile input: malformed, truncated, oversized and garbage frames are answered with
//! errors while the agent (and, where framing allows, the connection) keeps serving.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use supermachine_proto::{
    kind, ErrorCode, ExecRequest, Frame, Message, MAX_FRAME_SIZE, MAX_SESSIONS, STDIN_WINDOW,
};

use common::{header, hello, pseudo_random, Agent, Raw};

fn expect_error(raw: &mut Raw, id: u32, code: ErrorCode) {
    match raw.recv() {
        Frame {
            id: got,
            message: Message::Error(e),
        } => {
            assert_eq!((got, e.code), (id, code), "{}", e.message);
        }
        other => panic!("expected {code:?} for id {id}, got {other:?}"),
    }
}

fn expect_pong(raw: &mut Raw, id: u32, nonce: u64) {
    raw.send(id, &Message::Ping { nonce });
    assert_eq!(
        raw.recv(),
        Frame {
            id,
            message: Message::Pong { nonce }
        }
    );
}

#[test]
fn malformed_frames_get_errors_and_the_connection_goes_on() {
    let mut agent = Agent::start(&[]);
    let mut raw = agent.raw();

    // Unknown type, with a payload that must be skipped.
    let mut f = header(0x55, 0, 10, 3);
    f.extend_from_slice(b"xyz");
    raw.send_bytes(&f);
    expect_error(&mut raw, 10, ErrorCode::UnknownType);
    expect_pong(&mut raw, 11, 1);

    // A ping whose payload is too short, then one too long.
    let mut f = header(kind::PING, 0, 12, 3);
    f.extend_from_slice(&[1, 2, 3]);
    raw.send_bytes(&f);
    expect_error(&mut raw, 12, ErrorCode::Malformed);
    let mut f = header(kind::PING, 0, 13, 9);
    f.extend_from_slice(&[0; 9]);
    raw.send_bytes(&f);
    expect_error(&mut raw, 13, ErrorCode::Malformed);

    // Reserved flags.
    let mut f = header(kind::PING, 1, 14, 8);
    f.extend_from_slice(&[0; 8]);
    raw.send_bytes(&f);
    expect_error(&mut raw, 14, ErrorCode::Malformed);

    // An exec whose list count promises more than the payload holds.
    let mut f = header(kind::EXEC, 0, 15, 4);
    f.extend_from_slice(&u32::MAX.to_le_bytes());
    raw.send_bytes(&f);
    expect_error(&mut raw, 15, ErrorCode::Malformed);

    // A frame type only the agent sends.
    raw.send(16, &Message::Pong { nonce: 3 });
    expect_error(&mut raw, 16, ErrorCode::UnexpectedType);

    // Stdin for a session that does not exist.
    raw.send(17, &Message::Stdin { data: vec![1] });
    expect_error(&mut raw, 17, ErrorCode::NoSuchSession);

    expect_pong(&mut raw, 18, 2);
    agent.assert_alive();
}

#[test]
fn oversized_frames_are_skipped_not_buffered() {
    let mut agent = Agent::start(&[]);
    let mut raw = agent.raw();
    let len = MAX_FRAME_SIZE + 1;
    raw.send_bytes(&header(kind::STDIN, 0, 20, len));
    // The error comes before the payload is even sent: nothing is buffered.
    expect_error(&mut raw, 20, ErrorCode::Oversized);
    let junk = vec![0xa5u8; len as usize];
    raw.send_bytes(&junk);
    expect_pong(&mut raw, 21, 5);

    // A 4 GiB claim on a fresh connection: answered at once; the agent stays healthy.
    let mut raw2 = agent.raw();
    raw2.send_bytes(&header(kind::EXEC, 0, 22, u32::MAX));
    expect_error(&mut raw2, 22, ErrorCode::Oversized);
    drop(raw2);
    expect_pong(&mut raw, 23, 6);
    agent.assert_alive();
}

#[test]
fn broken_framing_closes_only_that_connection() {
    let mut agent = Agent::start(&[]);

    // Bad magic: error, then the connection is closed.
    let mut raw = agent.raw();
    raw.send_bytes(b"GET / HTTP/1.1\r\n\r\n");
    expect_error(&mut raw, 0, ErrorCode::BadMagic);
    assert!(raw.is_closed());

    // Truncated: half a header and end of stream.
    let mut raw = agent.raw();
    raw.send_bytes(&header(kind::PING, 0, 30, 8)[..5]);
    raw.stream.shutdown(std::net::Shutdown::Write).unwrap();
    expect_error(&mut raw, 0, ErrorCode::Truncated);

    // Truncated inside the payload.
    let mut raw = agent.raw();
    let mut f = header(kind::PING, 0, 31, 8);
    f.extend_from_slice(&[1, 2]);
    raw.send_bytes(&f);
    raw.stream.shutdown(std::net::Shutdown::Write).unwrap();
    expect_error(&mut raw, 0, ErrorCode::Truncated);

    // Other connections were never affected.
    let mut raw = agent.raw();
    expect_pong(&mut raw, 32, 7);
    agent.assert_alive();
}

#[test]
fn version_negotiation() {
    let agent = Agent::start(&[]);
    let mut raw = Raw::connect(&agent.sock);
    // Anything before Hello is refused, politely.
    raw.send(1, &Message::Ping { nonce: 1 });
    expect_error(&mut raw, 1, ErrorCode::HelloRequired);
    // No common version.
    raw.send(2, &hello(5, 9));
    expect_error(&mut raw, 2, ErrorCode::UnsupportedVersion);
    // A client that also speaks newer versions gets the agent's newest.
    raw.send(3, &hello(1, 9));
    match raw.recv().message {
        Message::HelloReply(h) => {
            assert_eq!(h.version, supermachine_proto::PROTOCOL_VERSION);
            assert_eq!(h.max_frame_size, MAX_FRAME_SIZE);
            assert_eq!(h.max_sessions, MAX_SESSIONS);
            assert_eq!(h.stdin_window, STDIN_WINDOW);
            assert!(h.ready_boottime_ns > 0);
        }
        other => panic!("{other:?}"),
    }
    expect_pong(&mut raw, 4, 9);
}

#[test]
fn random_garbage_never_kills_the_agent() {
    let mut agent = Agent::start(&[]);
    for seed in 0..40u64 {
        let mut raw = agent.raw();
        let junk = pseudo_random(64 + (seed as usize * 37) % 4000, seed + 1);
        // Mostly valid-looking headers with random everything else, then pure noise.
        let mut bytes = Vec::new();
        for chunk in junk.chunks(24) {
            let len = (chunk.len() as u32).saturating_sub(12);
            let kind = match chunk.first().copied().unwrap_or(0) % 0x20 {
                // A well-formed power request would (rightly) end the agent.
                kind::POWER_OFF | kind::REBOOT => 0x1f,
                k => k,
            };
            let id = chunk.get(1).copied().unwrap_or(0).into();
            let mut h = header(kind, u8::from(seed % 5 == 0), id, len);
            h.extend_from_slice(chunk.get(12..).unwrap_or(&[]));
            bytes.extend_from_slice(&h);
        }
        bytes.extend_from_slice(&junk);
        let _ = raw.stream.write_all(&bytes);
        let _ = raw.stream.shutdown(std::net::Shutdown::Write);
        // Read every answer until the agent closes its end: it must not hang up on
        // garbage by dying, and must not leave the connection open either.
        // (A reset is a close with our garbage still unread on the agent's side.)
        let mut answers = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = raw.stream.read(&mut buf) {
            answers.extend_from_slice(&buf[..n]);
        }
        assert!(
            answers.starts_with(b"SM"),
            "seed {seed}: no error frame came back"
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    agent.assert_alive();
    let mut raw = agent.raw();
    expect_pong(&mut raw, 1, 1);
}

#[test]
fn stdin_beyond_the_window_is_refused() {
    let agent = Agent::start(&[]);
    let mut raw = agent.raw();
    let exec = ExecRequest {
        argv: vec![b"sleep".to_vec(), b"5".to_vec()],
        stdin: true,
        ..ExecRequest::default()
    };
    raw.send(40, &Message::Exec(exec));
    assert!(matches!(raw.recv().message, Message::Started { .. }));
    // sleep never reads: once the pipe is full and a window is queued behind it, the
    // agent must refuse more instead of buffering it.
    let window = STDIN_WINDOW as usize;
    for _ in 0..4 {
        raw.send(
            40,
            &Message::Stdin {
                data: vec![0; window],
            },
        );
    }
    loop {
        match raw.recv() {
            Frame {
                message: Message::StdinAck { .. },
                ..
            } => {}
            Frame {
                id: 40,
                message: Message::Error(e),
            } => {
                assert_eq!(e.code, ErrorCode::FlowControl);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    raw.send(41, &Message::Ping { nonce: 1 });
    loop {
        match raw.recv().message {
            Message::StdinAck { .. } | Message::Error(_) => {}
            Message::Pong { nonce: 1 } => break,
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn session_limits() {
    let agent = Agent::start(&[]);
    let mut raw = agent.raw();
    let sleep = || {
        Message::Exec(ExecRequest {
            argv: vec![b"sleep".to_vec(), b"30".to_vec()],
            ..ExecRequest::default()
        })
    };
    // Id 0 is reserved for connection-level errors.
    raw.send(0, &sleep());
    expect_error(&mut raw, 0, ErrorCode::InvalidRequest);
    for id in 1..=MAX_SESSIONS {
        raw.send(id, &sleep());
        // Nothing else can come first: output and end-of-stream only follow Started.
        let frame = raw.recv();
        assert!(
            frame.id == id && matches!(frame.message, Message::Started { .. }),
            "{frame:?}"
        );
    }
    raw.send(1, &sleep());
    expect_error(&mut raw, 1, ErrorCode::SessionExists);
    raw.send(MAX_SESSIONS + 1, &sleep());
    expect_error(&mut raw, MAX_SESSIONS + 1, ErrorCode::TooManySessions);
    expect_pong(&mut raw, 1000, 1);
}
