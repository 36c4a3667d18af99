//! The host end the supermachine VMM gives its client: a plain Unix socket whose every
//! connection is already joined to guest vsock port 1028 (contract section 1,
//! `vmm/vsock_mux.rs`). Here it is built on vhost-device-vsock's hybrid socket: each
//! accepted connection dials the hybrid socket, does its `CONNECT 1028` handshake, then
//! copies bytes both ways, passing each side's end of stream on as a half-close.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::thread;

/// The guest port the agent listens on.
pub const AGENT_PORT: u32 = 1028;

/// A listening bridge; the listener thread lives as long as the test process.
pub struct Bridge {
    socket: PathBuf,
}

impl Bridge {
    /// Listens on `socket`, joining each connection to `port` behind `hybrid`.
    pub fn start(socket: &Path, hybrid: &Path, port: u32) -> Bridge {
        let listener = UnixListener::bind(socket)
            .unwrap_or_else(|e| panic!("bind the bridge socket {}: {e}", socket.display()));
        let hybrid = hybrid.to_path_buf();
        thread::spawn(move || {
            for host in listener.incoming().flatten() {
                let hybrid = hybrid.clone();
                thread::spawn(move || {
                    // A failed dial closes the host side: the client sees EOF, as it
                    // does from the VMM when the guest is not listening yet.
                    if let Ok(guest) = dial(&hybrid, port) {
                        join(host, guest);
                    }
                });
            }
        });
        Bridge {
            socket: socket.to_path_buf(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

/// Connects to guest `port` through the hybrid socket.
fn dial(hybrid: &Path, port: u32) -> io::Result<UnixStream> {
    let mut s = UnixStream::connect(hybrid)?;
    s.write_all(format!("CONNECT {port}\n").as_bytes())?;
    // Byte by byte: anything after the reply line is the agent's.
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while byte[0] != b'\n' {
        if s.read(&mut byte)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "the hybrid socket closed during CONNECT",
            ));
        }
        line.push(byte[0]);
    }
    if !line.starts_with(b"OK ") {
        return Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("CONNECT {port}: {}", String::from_utf8_lossy(&line).trim()),
        ));
    }
    Ok(s)
}

fn join(host: UnixStream, guest: UnixStream) {
    let (Ok(host2), Ok(guest2)) = (host.try_clone(), guest.try_clone()) else {
        return;
    };
    let up = thread::spawn(move || copy(host, guest));
    copy(guest2, host2);
    let _ = up.join();
}

fn copy(from: UnixStream, to: UnixStream) {
    let mut reader = BufReader::with_capacity(64 << 10, &from);
    let mut writer = &to;
    loop {
        let n = match reader.fill_buf() {
            Ok([]) | Err(_) => break,
            Ok(buf) => {
                if writer.write_all(buf).is_err() {
                    break;
                }
                buf.len()
            }
        };
        reader.consume(n);
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
