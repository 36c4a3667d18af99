//! Reaching the agent's port: a Unix socket whose connections the VMM already bridges
//! to guest port 1028 (supermachine's own host socket), or the hybrid-vsock Unix socket
//! of Firecracker / vhost-device-vsock (`CONNECT <port>\n`, answered by `OK <n>\n`).

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// Where the agent is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix socket where each connection already reaches the agent: bytes flow at once.
    /// This is how supermachine's VMM offers guest port 1028, and how the agent listens
    /// itself under `SUPERMACHINE_AGENT_UNIX_SOCKET`.
    Bridged(PathBuf),
    /// A hybrid-vsock socket: each connection first says `CONNECT <port>`.
    HybridVsock {
        /// The VMM's (or vhost-device-vsock's) host-side Unix socket.
        uds: PathBuf,
        /// The guest vsock port, normally [`crate::AGENT_VSOCK_PORT`].
        port: u32,
    },
}

impl Endpoint {
    /// A pre-bridged Unix socket.
    pub fn bridged(path: impl Into<PathBuf>) -> Endpoint {
        Endpoint::Bridged(path.into())
    }

    /// A hybrid-vsock socket, reaching the agent's port 1028.
    pub fn hybrid_vsock(uds: impl Into<PathBuf>) -> Endpoint {
        Endpoint::HybridVsock {
            uds: uds.into(),
            port: crate::AGENT_VSOCK_PORT,
        }
    }

    /// Opens one connection; `timeout` bounds the handshake answer.
    pub fn connect(&self, timeout: Option<Duration>) -> Result<UnixStream> {
        match self {
            Endpoint::Bridged(path) => UnixStream::connect(path).map_err(|e| {
                Error::Io(io::Error::new(
                    e.kind(),
                    format!("cannot connect to {}: {e}", path.display()),
                ))
            }),
            Endpoint::HybridVsock { uds, port } => {
                let mut stream = UnixStream::connect(uds).map_err(|e| {
                    Error::Io(io::Error::new(
                        e.kind(),
                        format!("cannot connect to the vsock socket {}: {e}", uds.display()),
                    ))
                })?;
                stream.set_read_timeout(timeout.or(Some(Duration::from_secs(30))))?;
                stream.write_all(format!("CONNECT {port}\n").as_bytes())?;
                let line = read_line(&mut stream, *port)?;
                if !line.starts_with("OK ") {
                    return Err(Error::Handshake(format!(
                        "{} answered {line:?} to CONNECT {port}",
                        uds.display()
                    )));
                }
                stream.set_read_timeout(None)?;
                Ok(stream)
            }
        }
    }
}

/// Longest handshake answer accepted (`OK 4294967295\n` fits easily).
const MAX_HANDSHAKE_LINE: usize = 64;

/// Reads one `\n`-terminated line byte by byte, so nothing after it is consumed.
fn read_line(stream: &mut UnixStream, port: u32) -> Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => {
                return Err(Error::Handshake(format!(
                    "closed before OK: nothing listens on guest port {port} yet \
                     (is the guest booted and its agent started?)"
                )))
            }
            Ok(_) if byte == [b'\n'] => break,
            Ok(_) => {
                line.extend_from_slice(&byte);
                if line.len() > MAX_HANDSHAKE_LINE {
                    return Err(Error::Handshake(
                        "answer line too long: is this a hybrid-vsock socket?".into(),
                    ));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Error::Timeout(format!(
                    "waiting for the answer to CONNECT {port}"
                )))
            }
            Err(e) => return Err(Error::Io(e)),
        }
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}
