//! One client connection: the frame reading loop, request dispatch and the shared,
//! serialized writer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use supermachine_proto::{
    encode_frame, negotiate_version, read_frame, skip_payload, DecodeError, ErrorCode, ErrorReply,
    Frame, FrameError, HelloReply, Message, MAX_FRAME_SIZE, MAX_SESSIONS, PROTOCOL_VERSION,
    STDIN_WINDOW,
};

use crate::guest::{self, Power};
use crate::reaper::Reaper;
use crate::session::{self, os_error, SessionHandle};
use crate::sys::{lock, SocketStream};

/// State shared by every connection.
pub struct Agent {
    /// The central reaper.
    pub reaper: Reaper,
    /// `CLOCK_BOOTTIME` when the listeners were bound.
    pub ready_boottime_ns: u64,
    /// The agent is PID 1 (then it never exits, and really powers off).
    pub pid1: bool,
    /// Connections being served.
    pub connections: AtomicU32,
}

/// Longest error text sent, so error replies stay small whatever caused them.
const MAX_ERROR_TEXT: usize = 1024;

/// Largest single write to the socket. On vsock each write becomes one packet, and
/// Linux (6.12.y stable and later) carries packets over 32 KiB as scattered buffers,
/// which device backends such as vhost-device-vsock 0.3 lose or stall on; smaller
/// writes keep every packet in one buffer, at no cost on Unix sockets.
const MAX_WRITE: usize = 16 * 1024;

/// The writing half: whole frames, one at a time, from any thread.
pub struct Outbox {
    stream: Mutex<SocketStream>,
    dead: AtomicBool,
}

impl Outbox {
    /// Sends one frame. Returns false once the peer is gone (then the socket is shut
    /// down, which also ends the reading loop).
    pub fn send(&self, id: u32, message: &Message) -> bool {
        use std::io::Write;
        if self.dead.load(Ordering::SeqCst) {
            return false;
        }
        let bytes = match encode_frame(id, message) {
            Ok(b) => b,
            Err(e) => {
                let err = ErrorReply::new(ErrorCode::Os, format!("reply not sent: {e}"));
                match encode_frame(id, &Message::Error(err)) {
                    Ok(b) => b,
                    Err(_) => return false,
                }
            }
        };
        let mut stream = lock(&self.stream);
        let written = bytes
            .chunks(MAX_WRITE)
            .try_for_each(|piece| stream.write_all(piece));
        if written.is_err() {
            self.dead.store(true, Ordering::SeqCst);
            stream.shutdown();
            return false;
        }
        true
    }

    /// Sends an error reply.
    pub fn error(&self, id: u32, mut reply: ErrorReply) -> bool {
        if reply.message.len() > MAX_ERROR_TEXT {
            let mut cut = MAX_ERROR_TEXT;
            while !reply.message.is_char_boundary(cut) {
                cut -= 1;
            }
            reply.message.truncate(cut);
        }
        self.send(id, &Message::Error(reply))
    }
}

/// One connection's state.
pub struct Conn {
    /// Where replies and events go.
    pub out: Outbox,
    /// Running sessions by id.
    pub sessions: Mutex<HashMap<u32, SessionHandle>>,
    /// Shared agent state.
    pub agent: Arc<Agent>,
}

/// Serves `stream` until the peer closes it or framing is lost.
pub fn serve(stream: SocketStream, agent: Arc<Agent>) {
    let Ok(mut reader) = stream.try_clone() else {
        stream.shutdown();
        return;
    };
    let conn = Arc::new(Conn {
        out: Outbox {
            stream: Mutex::new(stream),
            dead: AtomicBool::new(false),
        },
        sessions: Mutex::new(HashMap::new()),
        agent,
    });

    let mut negotiated = false;
    let mut buf = Vec::new();
    loop {
        match read_frame(&mut reader, &mut buf) {
            Ok(frame) => handle(&conn, frame, &mut negotiated),
            Err(FrameError::Closed) | Err(FrameError::Io(_)) => break,
            Err(FrameError::Truncated { got }) => {
                let msg = format!("stream ended inside a frame after {got} bytes");
                conn.out
                    .error(0, ErrorReply::new(ErrorCode::Truncated, msg));
                break;
            }
            Err(FrameError::BadMagic) => {
                let msg = "frame does not start with \"SM\"; closing the connection";
                conn.out.error(0, ErrorReply::new(ErrorCode::BadMagic, msg));
                break;
            }
            Err(FrameError::Oversized { id, len }) => {
                let msg = format!("payload of {len} bytes exceeds {MAX_FRAME_SIZE}; skipped");
                conn.out
                    .error(id, ErrorReply::new(ErrorCode::Oversized, msg));
                // Discarding (never buffering) keeps the stream in sync at bounded cost.
                if skip_payload(&mut reader, len).is_err() {
                    break;
                }
            }
            Err(FrameError::Malformed { id, kind, error }) => {
                let code = match error {
                    DecodeError::UnknownType(_) => ErrorCode::UnknownType,
                    _ => ErrorCode::Malformed,
                };
                let msg = format!("frame type {kind:#04x}: {error}");
                conn.out.error(id, ErrorReply::new(code, msg));
            }
        }
    }

    // The client is gone: its processes go too, and their stdin feeders stop.
    let sessions: Vec<SessionHandle> = lock(&conn.sessions).drain().map(|(_, s)| s).collect();
    for s in &sessions {
        s.kill_all();
    }
    drop(sessions);
    conn.out.dead.store(true, Ordering::SeqCst);
    lock(&conn.out.stream).shutdown();
}

fn handle(conn: &Arc<Conn>, frame: Frame, negotiated: &mut bool) {
    let Frame { id, message } = frame;
    let out = &conn.out;
    if let Message::Hello(h) = &message {
        match negotiate_version(h.min_version, h.max_version) {
            Some(version) => {
                *negotiated = true;
                out.send(
                    id,
                    &Message::HelloReply(HelloReply {
                        version,
                        agent_version: env!("CARGO_PKG_VERSION").into(),
                        ready_boottime_ns: conn.agent.ready_boottime_ns,
                        max_frame_size: MAX_FRAME_SIZE,
                        max_sessions: MAX_SESSIONS,
                        stdin_window: STDIN_WINDOW,
                    }),
                );
            }
            None => {
                let msg = format!(
                    "client speaks versions {}..={}, agent speaks 1..={PROTOCOL_VERSION}",
                    h.min_version, h.max_version
                );
                out.error(id, ErrorReply::new(ErrorCode::UnsupportedVersion, msg));
            }
        }
        return;
    }
    if !*negotiated {
        out.error(
            id,
            ErrorReply::new(ErrorCode::HelloRequired, "send Hello first"),
        );
        return;
    }
    let reply = match message {
        Message::Hello(_) => return,
        Message::Ping { nonce } => Ok(Message::Pong { nonce }),
        Message::GuestInfoRequest => Ok(Message::GuestInfo(guest::info())),
        Message::SetClock { secs, nanos } => guest::set_clock(secs, nanos).map(|()| Message::Ok),
        Message::Sync => {
            guest::sync();
            Ok(Message::Ok)
        }
        Message::PowerOff | Message::Reboot => {
            let power = if matches!(message, Message::PowerOff) {
                Power::Off
            } else {
                Power::Reboot
            };
            // Reply first: after reboot(2) nothing can be sent.
            out.send(id, &Message::Ok);
            if let Err(e) = guest::power(power, conn.agent.pid1) {
                eprintln!("supermachine-agent: {power:?} failed: {e}");
            }
            return;
        }
        Message::Exec(req) => match session::start(conn, id, &req) {
            Ok(()) => return,
            Err(e) => Err(e),
        },
        Message::Stdin { data } => {
            let result = match lock(&conn.sessions).get_mut(&id) {
                Some(s) => s.feed_stdin(data),
                None => Err(no_session(id)),
            };
            // Stdin has no reply when it succeeds; credit comes back as StdinAck.
            match result {
                Ok(()) => return,
                Err(e) => Err(e),
            }
        }
        Message::Resize { session, size } => match lock(&conn.sessions).get(&session) {
            Some(s) => s.resize(size).map(|()| Message::Ok),
            None => Err(no_session(session)),
        },
        Message::Signal { session, signal } => {
            let pid = lock(&conn.sessions).get(&session).map(|s| s.pid);
            match pid {
                Some(pid) => guest::signal(pid, signal).map(|()| Message::Ok),
                None => Err(no_session(session)),
            }
        }
        Message::SignalPid { pid, signal } => {
            // pid <= 0 would address process groups or every process; 1 is init.
            if pid <= 1 || u32::try_from(pid).ok() == Some(std::process::id()) {
                Err(ErrorReply::new(
                    ErrorCode::InvalidRequest,
                    format!("refusing to signal pid {pid}"),
                ))
            } else {
                guest::signal(pid, signal).map(|()| Message::Ok)
            }
        }
        other => Err(ErrorReply::new(
            ErrorCode::UnexpectedType,
            format!(
                "frame type {:#04x} is sent by the agent, not to it",
                other.kind()
            ),
        )),
    };
    match reply {
        Ok(m) => out.send(id, &m),
        Err(e) => out.error(id, e),
    };
}

fn no_session(id: u32) -> ErrorReply {
    ErrorReply::new(ErrorCode::NoSuchSession, format!("no session {id}"))
}

/// Reports an OS error as a reply (re-exported for `guest`).
pub fn os(e: &std::io::Error) -> ErrorReply {
    os_error(ErrorCode::Os, e)
}
