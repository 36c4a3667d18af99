//! Reaching the agent: a plain Unix socket, or the hybrid-vsock Unix socket of
//! Firecracker / vhost-device-vsock (`CONNECT <port>\n`, answered by `OK <n>\n`).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// Where the agent is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix socket the agent itself listens on (`supermachine-agent --unix PATH`).
    Unix(PathBuf),
    /// A hybrid-vsock socket of the VMM, forwarding to guest vsock `port`.
    HybridVsock {
        /// The VMM's host-side Unix socket.
        uds: PathBuf,
        /// The guest vsock port.
        port: u32,
    },
}

/// Longest handshake answer accepted (`OK 4294967295\n` fits easily).
const MAX_HANDSHAKE_LINE: usize = 64;

/// Opens a byte stream to the agent; `timeout` bounds the handshake reads.
pub fn open(endpoint: &Endpoint, timeout: Option<Duration>) -> Result<UnixStream> {
    match endpoint {
        Endpoint::Unix(path) => Ok(UnixStream::connect(path)?),
        Endpoint::HybridVsock { uds, port } => {
            let mut stream = UnixStream::connect(uds)?;
            stream.set_read_timeout(timeout)?;
            stream.write_all(format!("CONNECT {port}\n").as_bytes())?;
            let line = read_line(&mut stream)?;
            if !line.starts_with("OK ") {
                return Err(Error::Handshake(format!("unexpected answer {line:?}")));
            }
            stream.set_read_timeout(None)?;
            Ok(stream)
        }
    }
}

/// Reads one `\n`-terminated line byte by byte, so nothing after it is consumed.
fn read_line(stream: &mut UnixStream) -> Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => {
                return Err(Error::Handshake(
                    "closed before OK (is the guest listening on that port?)".into(),
                ))
            }
            Ok(_) if byte == [b'\n'] => break,
            Ok(_) => {
                line.extend_from_slice(&byte);
                if line.len() > MAX_HANDSHAKE_LINE {
                    return Err(Error::Handshake("answer line too long".into()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Error::Timeout("waiting for the CONNECT answer".into()))
            }
            Err(e) => return Err(Error::Io(e)),
        }
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}
