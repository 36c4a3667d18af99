//! The client's error type.

use std::fmt;
use std::io;

use supermachine_proto::FrameError;

/// Everything that can go wrong talking to the agent.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A socket operation failed (connect, read, write).
    Io(io::Error),
    /// The hybrid-vsock `CONNECT` handshake failed (usually: nothing listens on the port yet).
    Handshake(String),
    /// The agent refused the request: the text of its ERROR frame, or the `error` of a
    /// CONTROL reply with `ok: false`.
    Agent(String),
    /// The agent sent something this protocol does not allow.
    Protocol(String),
    /// The agent answers CONTROL `probe` with a version older than this client needs.
    TooOld {
        /// The version the agent answered.
        protocol: u32,
    },
    /// No answer in time (what was being waited for).
    Timeout(String),
    /// A request does not fit in one frame (argv, env or staged files too large).
    TooLarge(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "i/o error talking to the agent: {e}"),
            Error::Handshake(m) => write!(f, "vsock CONNECT handshake failed: {m}"),
            Error::Agent(m) => write!(f, "agent error: {m}"),
            Error::Protocol(m) => write!(f, "protocol error: {m}"),
            Error::TooOld { protocol } => write!(
                f,
                "the agent speaks protocol {protocol}, this client needs {} or newer: \
                 rebuild the guest assets with a newer agent",
                crate::MIN_PROTOCOL
            ),
            Error::Timeout(m) => write!(f, "timed out {m}"),
            Error::TooLarge(m) => write!(f, "request too large: {m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            return Error::Timeout("waiting for the agent".into());
        }
        Error::Io(e)
    }
}

impl From<FrameError> for Error {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Io(e) => e.into(),
            other => Error::Protocol(other.to_string()),
        }
    }
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
