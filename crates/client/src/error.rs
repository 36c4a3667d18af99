//! The client's error type.

use std::fmt;
use std::io;

use supermachine_proto::{ErrorReply, FrameTooLarge};

/// Everything that can go wrong talking to the agent.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A socket operation failed.
    Io(io::Error),
    /// The hybrid-vsock `CONNECT` handshake failed (usually: nothing listens yet).
    Handshake(String),
    /// The agent sent something this client does not expect.
    Protocol(String),
    /// The agent answered with an error.
    Agent(ErrorReply),
    /// The connection is closed (the reason, when known).
    Closed(String),
    /// No answer in time (what was being waited for).
    Timeout(String),
    /// A request would not fit in one frame (argv/env too long).
    FrameTooLarge(FrameTooLarge),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "i/o error: {e}"),
            Error::Handshake(m) => write!(f, "vsock handshake failed: {m}"),
            Error::Protocol(m) => write!(f, "protocol error: {m}"),
            Error::Agent(r) if r.errno != 0 => {
                write!(
                    f,
                    "agent error ({:?}, errno {}): {}",
                    r.code, r.errno, r.message
                )
            }
            Error::Agent(r) => write!(f, "agent error ({:?}): {}", r.code, r.message),
            Error::Closed(m) => write!(f, "connection closed: {m}"),
            Error::Timeout(m) => write!(f, "timed out: {m}"),
            Error::FrameTooLarge(e) => write!(f, "request too large: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::FrameTooLarge(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<FrameTooLarge> for Error {
    fn from(e: FrameTooLarge) -> Self {
        Error::FrameTooLarge(e)
    }
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
