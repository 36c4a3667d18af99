//! The messages carried in frames, their type codes and payload layouts.

use crate::codec::{DecodeError, Decoder, Encoder};

/// Frame type codes. Requests from the client are below 0x80, replies and events from
/// the agent are 0x80 and above.
pub mod kind {
    /// Client → agent: version negotiation; must be the first frame.
    pub const HELLO: u8 = 0x01;
    /// Client → agent: liveness check, answered by [`PONG`].
    pub const PING: u8 = 0x02;
    /// Client → agent: ask for [`GUEST_INFO`].
    pub const GUEST_INFO_REQUEST: u8 = 0x03;
    /// Client → agent: set `CLOCK_REALTIME`.
    pub const SET_CLOCK: u8 = 0x04;
    /// Client → agent: `sync(2)`.
    pub const SYNC: u8 = 0x05;
    /// Client → agent: reply, sync, power off.
    pub const POWER_OFF: u8 = 0x06;
    /// Client → agent: reply, sync, reboot.
    pub const REBOOT: u8 = 0x07;
    /// Client → agent: start a process; the frame id names the new session.
    pub const EXEC: u8 = 0x10;
    /// Client → agent: bytes for a session's stdin; empty means end of input.
    pub const STDIN: u8 = 0x11;
    /// Client → agent: set a session's pty window size.
    pub const RESIZE: u8 = 0x12;
    /// Client → agent: signal a session's process.
    pub const SIGNAL: u8 = 0x13;
    /// Client → agent: signal any process by pid.
    pub const SIGNAL_PID: u8 = 0x14;
    /// Agent → client: answer to [`HELLO`].
    pub const HELLO_REPLY: u8 = 0x81;
    /// Agent → client: answer to [`PING`].
    pub const PONG: u8 = 0x82;
    /// Agent → client: answer to [`GUEST_INFO_REQUEST`].
    pub const GUEST_INFO: u8 = 0x83;
    /// Agent → client: a request without other result succeeded.
    pub const OK: u8 = 0x84;
    /// Agent → client: a session's process started.
    pub const STARTED: u8 = 0x85;
    /// Agent → client: a session's stdout (or pty) bytes; empty means end of stream.
    pub const STDOUT: u8 = 0x86;
    /// Agent → client: a session's stderr bytes; empty means end of stream.
    pub const STDERR: u8 = 0x87;
    /// Agent → client: stdin bytes consumed, returning send credit.
    pub const STDIN_ACK: u8 = 0x88;
    /// Agent → client: a session's process ended; the last frame of a session.
    pub const EXIT: u8 = 0x89;
    /// Agent → client: a request failed or a frame was rejected.
    pub const ERROR: u8 = 0x8f;
}

/// Client → agent version negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Oldest protocol version the client speaks.
    pub min_version: u16,
    /// Newest protocol version the client speaks.
    pub max_version: u16,
    /// Free-form client name, for the agent's log.
    pub client: String,
}

/// The agent's answer to [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloReply {
    /// The version both sides will speak (the newest in common).
    pub version: u16,
    /// The agent's package version.
    pub agent_version: String,
    /// Guest `CLOCK_BOOTTIME` in nanoseconds when the agent's listener was bound.
    pub ready_boottime_ns: u64,
    /// The agent's [`crate::MAX_FRAME_SIZE`].
    pub max_frame_size: u32,
    /// The agent's [`crate::MAX_SESSIONS`].
    pub max_sessions: u32,
    /// Unacknowledged stdin bytes allowed per session ([`crate::STDIN_WINDOW`]).
    pub stdin_window: u32,
}

/// Facts about the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestInfo {
    /// `uname -r`.
    pub kernel_release: String,
    /// `uname -m` (`x86_64`, `aarch64`).
    pub arch: String,
    /// `CLOCK_BOOTTIME` in nanoseconds.
    pub uptime_ns: u64,
    /// Total RAM in bytes.
    pub mem_total: u64,
    /// Free RAM in bytes (`sysinfo` `freeram`).
    pub mem_free: u64,
    /// Online CPUs.
    pub cpus: u32,
}

/// Window size of a pseudo-terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// What to run. Byte strings, not UTF-8: Linux paths and arguments are bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecRequest {
    /// Program and arguments; `argv[0]` without a `/` is looked up in the child's `PATH`.
    pub argv: Vec<Vec<u8>>,
    /// `KEY=VALUE` entries.
    pub env: Vec<Vec<u8>>,
    /// Start from the agent's own environment (entries in `env` override); otherwise
    /// the child gets only `env`, plus a default `PATH` if `env` has none.
    pub inherit_env: bool,
    /// Working directory; `/` when absent.
    pub cwd: Option<Vec<u8>>,
    /// User id to switch to.
    pub uid: Option<u32>,
    /// Group id to switch to (also becomes the only supplementary group).
    pub gid: Option<u32>,
    /// Run on a new pseudo-terminal of this size (stdout carries the merged output).
    pub pty: Option<WindowSize>,
    /// Whether stdin frames will follow; without it the child's stdin is `/dev/null`.
    pub stdin: bool,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal {
        /// Signal number.
        signal: i32,
        /// A core dump was written.
        core_dumped: bool,
    },
}

impl ExitStatus {
    /// The shell's convention: the code, or 128 + the signal number.
    pub fn shell_code(&self) -> i32 {
        match *self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal { signal, .. } => 128_i32.saturating_add(signal),
        }
    }

    /// Exited with code 0.
    pub fn success(&self) -> bool {
        matches!(self, ExitStatus::Code(0))
    }
}

/// Machine-readable reason of an [`ErrorReply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The payload did not decode (see the message).
    Malformed,
    /// The frame type is unknown.
    UnknownType,
    /// The declared payload length is over [`crate::MAX_FRAME_SIZE`]; it was skipped.
    Oversized,
    /// The stream ended in the middle of a frame.
    Truncated,
    /// The frame did not start with the magic bytes; the connection is closed.
    BadMagic,
    /// No protocol version in common.
    UnsupportedVersion,
    /// A request came before [`Hello`].
    HelloRequired,
    /// A frame type the agent does not accept from clients.
    UnexpectedType,
    /// The connection already has [`crate::MAX_SESSIONS`] sessions.
    TooManySessions,
    /// The agent already serves its maximum number of connections.
    TooManyConnections,
    /// An exec used an id already in use on this connection.
    SessionExists,
    /// No such session on this connection.
    NoSuchSession,
    /// A request field has an invalid value (see the message).
    InvalidRequest,
    /// The process could not be started (errno set).
    SpawnFailed,
    /// A system call failed (errno set).
    Os,
    /// More stdin was sent than the window allows; the data was dropped.
    FlowControl,
    /// A code this version does not know.
    Unknown(u16),
}

impl ErrorCode {
    /// The wire value.
    pub fn to_u16(self) -> u16 {
        match self {
            ErrorCode::Malformed => 1,
            ErrorCode::UnknownType => 2,
            ErrorCode::Oversized => 3,
            ErrorCode::Truncated => 4,
            ErrorCode::BadMagic => 5,
            ErrorCode::UnsupportedVersion => 6,
            ErrorCode::HelloRequired => 7,
            ErrorCode::UnexpectedType => 8,
            ErrorCode::TooManySessions => 9,
            ErrorCode::TooManyConnections => 10,
            ErrorCode::SessionExists => 11,
            ErrorCode::NoSuchSession => 12,
            ErrorCode::InvalidRequest => 13,
            ErrorCode::SpawnFailed => 14,
            ErrorCode::Os => 15,
            ErrorCode::FlowControl => 16,
            ErrorCode::Unknown(v) => v,
        }
    }

    /// From the wire value; unknown values are kept as [`ErrorCode::Unknown`].
    pub fn from_u16(v: u16) -> Self {
        match v {
            1 => ErrorCode::Malformed,
            2 => ErrorCode::UnknownType,
            3 => ErrorCode::Oversized,
            4 => ErrorCode::Truncated,
            5 => ErrorCode::BadMagic,
            6 => ErrorCode::UnsupportedVersion,
            7 => ErrorCode::HelloRequired,
            8 => ErrorCode::UnexpectedType,
            9 => ErrorCode::TooManySessions,
            10 => ErrorCode::TooManyConnections,
            11 => ErrorCode::SessionExists,
            12 => ErrorCode::NoSuchSession,
            13 => ErrorCode::InvalidRequest,
            14 => ErrorCode::SpawnFailed,
            15 => ErrorCode::Os,
            16 => ErrorCode::FlowControl,
            other => ErrorCode::Unknown(other),
        }
    }
}

/// A failed request or rejected frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    /// What went wrong.
    pub code: ErrorCode,
    /// The guest errno behind it, or 0.
    pub errno: i32,
    /// Human-readable detail.
    pub message: String,
}

impl ErrorReply {
    /// An error without errno.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorReply {
            code,
            errno: 0,
            message: message.into(),
        }
    }
}

/// Every message of protocol version 1. See `docs/protocol.md` for the byte layouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// See [`Hello`].
    Hello(Hello),
    /// Liveness check; the nonce comes back in [`Message::Pong`].
    Ping {
        /// Echoed.
        nonce: u64,
    },
    /// Ask for [`GuestInfo`].
    GuestInfoRequest,
    /// Set the guest's `CLOCK_REALTIME`.
    SetClock {
        /// Seconds since the Unix epoch.
        secs: i64,
        /// Nanoseconds, below 1 000 000 000.
        nanos: u32,
    },
    /// Flush file systems.
    Sync,
    /// Reply, sync, power off.
    PowerOff,
    /// Reply, sync, reboot.
    Reboot,
    /// Start a session.
    Exec(ExecRequest),
    /// Stdin bytes of the session named by the frame id; empty = end of input.
    Stdin {
        /// The bytes.
        data: Vec<u8>,
    },
    /// Resize a session's pty.
    Resize {
        /// Target session.
        session: u32,
        /// New size.
        size: WindowSize,
    },
    /// Send a signal to a session's process.
    Signal {
        /// Target session.
        session: u32,
        /// Signal number.
        signal: i32,
    },
    /// Send a signal to any guest process.
    SignalPid {
        /// Target process.
        pid: i32,
        /// Signal number.
        signal: i32,
    },
    /// See [`HelloReply`].
    HelloReply(HelloReply),
    /// Answer to [`Message::Ping`].
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
    /// See [`GuestInfo`].
    GuestInfo(GuestInfo),
    /// Success without other result.
    Ok,
    /// The session's process is running.
    Started {
        /// Its guest pid.
        pid: i32,
    },
    /// Output of the session (the pty's, for pty sessions); empty = end of stream.
    Stdout {
        /// The bytes.
        data: Vec<u8>,
    },
    /// Standard error of the session; empty = end of stream.
    Stderr {
        /// The bytes.
        data: Vec<u8>,
    },
    /// This many stdin bytes were consumed; the client may send that many more.
    StdinAck {
        /// Byte count.
        bytes: u32,
    },
    /// The session's process ended; the session is over.
    Exit(ExitStatus),
    /// See [`ErrorReply`].
    Error(ErrorReply),
}

impl Message {
    /// The frame type code of this message.
    pub fn kind(&self) -> u8 {
        match self {
            Message::Hello(_) => kind::HELLO,
            Message::Ping { .. } => kind::PING,
            Message::GuestInfoRequest => kind::GUEST_INFO_REQUEST,
            Message::SetClock { .. } => kind::SET_CLOCK,
            Message::Sync => kind::SYNC,
            Message::PowerOff => kind::POWER_OFF,
            Message::Reboot => kind::REBOOT,
            Message::Exec(_) => kind::EXEC,
            Message::Stdin { .. } => kind::STDIN,
            Message::Resize { .. } => kind::RESIZE,
            Message::Signal { .. } => kind::SIGNAL,
            Message::SignalPid { .. } => kind::SIGNAL_PID,
            Message::HelloReply(_) => kind::HELLO_REPLY,
            Message::Pong { .. } => kind::PONG,
            Message::GuestInfo(_) => kind::GUEST_INFO,
            Message::Ok => kind::OK,
            Message::Started { .. } => kind::STARTED,
            Message::Stdout { .. } => kind::STDOUT,
            Message::Stderr { .. } => kind::STDERR,
            Message::StdinAck { .. } => kind::STDIN_ACK,
            Message::Exit(_) => kind::EXIT,
            Message::Error(_) => kind::ERROR,
        }
    }

    /// The payload bytes (without frame header).
    pub fn encode_payload(&self) -> Vec<u8> {
        let mut e = Encoder::default();
        match self {
            Message::Hello(h) => {
                e.u16(h.min_version);
                e.u16(h.max_version);
                e.bytes(h.client.as_bytes());
            }
            Message::Ping { nonce } | Message::Pong { nonce } => e.u64(*nonce),
            Message::GuestInfoRequest
            | Message::Sync
            | Message::PowerOff
            | Message::Reboot
            | Message::Ok => {}
            Message::SetClock { secs, nanos } => {
                e.i64(*secs);
                e.u32(*nanos);
            }
            Message::Exec(x) => {
                e.list(&x.argv);
                e.list(&x.env);
                e.bool(x.inherit_env);
                match &x.cwd {
                    Some(cwd) => {
                        e.u8(1);
                        e.bytes(cwd);
                    }
                    None => e.u8(0),
                }
                for id in [x.uid, x.gid] {
                    match id {
                        Some(v) => {
                            e.u8(1);
                            e.u32(v);
                        }
                        None => e.u8(0),
                    }
                }
                match x.pty {
                    Some(ws) => {
                        e.u8(1);
                        e.u16(ws.rows);
                        e.u16(ws.cols);
                    }
                    None => e.u8(0),
                }
                e.bool(x.stdin);
            }
            Message::Stdin { data } | Message::Stdout { data } | Message::Stderr { data } => {
                // Raw bytes: the frame length already delimits them.
                e.buf.extend_from_slice(data);
            }
            Message::Resize { session, size } => {
                e.u32(*session);
                e.u16(size.rows);
                e.u16(size.cols);
            }
            Message::Signal { session, signal } => {
                e.u32(*session);
                e.i32(*signal);
            }
            Message::SignalPid { pid, signal } => {
                e.i32(*pid);
                e.i32(*signal);
            }
            Message::HelloReply(r) => {
                e.u16(r.version);
                e.bytes(r.agent_version.as_bytes());
                e.u64(r.ready_boottime_ns);
                e.u32(r.max_frame_size);
                e.u32(r.max_sessions);
                e.u32(r.stdin_window);
            }
            Message::GuestInfo(g) => {
                e.bytes(g.kernel_release.as_bytes());
                e.bytes(g.arch.as_bytes());
                e.u64(g.uptime_ns);
                e.u64(g.mem_total);
                e.u64(g.mem_free);
                e.u32(g.cpus);
            }
            Message::Started { pid } => e.i32(*pid),
            Message::StdinAck { bytes } => e.u32(*bytes),
            Message::Exit(status) => match *status {
                ExitStatus::Code(c) => {
                    e.u8(0);
                    e.i32(c);
                }
                ExitStatus::Signal {
                    signal,
                    core_dumped,
                } => {
                    e.u8(1);
                    e.i32(signal);
                    e.bool(core_dumped);
                }
            },
            Message::Error(r) => {
                e.u16(r.code.to_u16());
                e.i32(r.errno);
                e.bytes(r.message.as_bytes());
            }
        }
        e.buf
    }

    /// Decodes a payload of frame type `kind`. Strict: every accepted payload
    /// re-encodes to exactly the same bytes.
    pub fn decode(kind: u8, payload: &[u8]) -> Result<Message, DecodeError> {
        let mut d = Decoder::new(payload);
        let msg = match kind {
            kind::HELLO => Message::Hello(Hello {
                min_version: d.u16()?,
                max_version: d.u16()?,
                client: d.string()?,
            }),
            kind::PING => Message::Ping { nonce: d.u64()? },
            kind::GUEST_INFO_REQUEST => Message::GuestInfoRequest,
            kind::SET_CLOCK => Message::SetClock {
                secs: d.i64()?,
                nanos: d.u32()?,
            },
            kind::SYNC => Message::Sync,
            kind::POWER_OFF => Message::PowerOff,
            kind::REBOOT => Message::Reboot,
            kind::EXEC => {
                let argv = d.list()?;
                let env = d.list()?;
                let inherit_env = d.bool()?;
                let cwd = if d.present()? { Some(d.bytes()?) } else { None };
                let uid = if d.present()? { Some(d.u32()?) } else { None };
                let gid = if d.present()? { Some(d.u32()?) } else { None };
                let pty = if d.present()? {
                    Some(WindowSize {
                        rows: d.u16()?,
                        cols: d.u16()?,
                    })
                } else {
                    None
                };
                let stdin = d.bool()?;
                Message::Exec(ExecRequest {
                    argv,
                    env,
                    inherit_env,
                    cwd,
                    uid,
                    gid,
                    pty,
                    stdin,
                })
            }
            // Data frames own the whole payload; nothing to parse.
            kind::STDIN => {
                return Ok(Message::Stdin {
                    data: payload.to_vec(),
                })
            }
            kind::STDOUT => {
                return Ok(Message::Stdout {
                    data: payload.to_vec(),
                })
            }
            kind::STDERR => {
                return Ok(Message::Stderr {
                    data: payload.to_vec(),
                })
            }
            kind::RESIZE => Message::Resize {
                session: d.u32()?,
                size: WindowSize {
                    rows: d.u16()?,
                    cols: d.u16()?,
                },
            },
            kind::SIGNAL => Message::Signal {
                session: d.u32()?,
                signal: d.i32()?,
            },
            kind::SIGNAL_PID => Message::SignalPid {
                pid: d.i32()?,
                signal: d.i32()?,
            },
            kind::HELLO_REPLY => Message::HelloReply(HelloReply {
                version: d.u16()?,
                agent_version: d.string()?,
                ready_boottime_ns: d.u64()?,
                max_frame_size: d.u32()?,
                max_sessions: d.u32()?,
                stdin_window: d.u32()?,
            }),
            kind::PONG => Message::Pong { nonce: d.u64()? },
            kind::GUEST_INFO => Message::GuestInfo(GuestInfo {
                kernel_release: d.string()?,
                arch: d.string()?,
                uptime_ns: d.u64()?,
                mem_total: d.u64()?,
                mem_free: d.u64()?,
                cpus: d.u32()?,
            }),
            kind::OK => Message::Ok,
            kind::STARTED => Message::Started { pid: d.i32()? },
            kind::STDIN_ACK => Message::StdinAck { bytes: d.u32()? },
            kind::EXIT => Message::Exit(match d.u8()? {
                0 => ExitStatus::Code(d.i32()?),
                1 => ExitStatus::Signal {
                    signal: d.i32()?,
                    core_dumped: d.bool()?,
                },
                _ => return Err(DecodeError::InvalidTag),
            }),
            kind::ERROR => Message::Error(ErrorReply {
                code: ErrorCode::from_u16(d.u16()?),
                errno: d.i32()?,
                message: d.string()?,
            }),
            other => return Err(DecodeError::UnknownType(other)),
        };
        d.finish()?;
        Ok(msg)
    }
}
