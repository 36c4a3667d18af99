//! The agent offered as supermachine's VMM offers it: a Unix socket whose every
//! accepted connection is already joined to guest vsock port 1028, with no handshake.
//! Here each connection is carried to vhost-device-vsock's hybrid socket, which needs
//! `CONNECT 1028\n` and answers `OK <port>\n` before bytes flow.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

/// A listening bridge; stops accepting when dropped.
pub struct Bridge {
    path: PathBuf,
    stop: Arc<AtomicBool>,
}

impl Bridge {
    /// Listens on `path`, joining each connection to guest `port` through `hybrid_uds`.
    pub fn start(path: &Path, hybrid_uds: &Path, port: u32) -> Bridge {
        let listener = UnixListener::bind(path)
            .unwrap_or_else(|e| panic!("cannot listen on {}: {e}", path.display()));
        let stop = Arc::new(AtomicBool::new(false));
        let (hybrid, stopping) = (hybrid_uds.to_path_buf(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let hybrid = hybrid.clone();
                thread::spawn(move || {
                    // A guest that is not listening yet: the host side just closes, as
                    // supermachine's bridge does.
                    if let Ok(guest) = connect_hybrid(&hybrid, port) {
                        splice(conn, guest);
                    }
                });
            }
        });
        Bridge {
            path: path.to_path_buf(),
            stop,
        }
    }

    /// The socket to connect to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = UnixStream::connect(&self.path);
    }
}

/// `CONNECT port` on the hybrid socket; the stream after the `OK` line.
fn connect_hybrid(uds: &Path, port: u32) -> std::io::Result<UnixStream> {
    let mut stream = UnixStream::connect(uds)?;
    stream.write_all(format!("CONNECT {port}\n").as_bytes())?;
    // Byte by byte, so nothing after the line is taken from the stream.
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.last() != Some(&b'\n') {
        if stream.read(&mut byte)? == 0 || line.len() > 64 {
            return Err(std::io::ErrorKind::ConnectionRefused.into());
        }
        line.push(byte[0]);
    }
    if !line.starts_with(b"OK ") {
        return Err(std::io::ErrorKind::ConnectionRefused.into());
    }
    Ok(stream)
}

/// Copies both ways until each side ends, passing half-closes along.
fn splice(host: UnixStream, guest: UnixStream) {
    let (Ok(mut host_r), Ok(mut guest_w)) = (host.try_clone(), guest.try_clone()) else {
        return;
    };
    let up = thread::spawn(move || {
        let _ = std::io::copy(&mut host_r, &mut guest_w);
        let _ = guest_w.shutdown(Shutdown::Write);
    });
    let (mut guest_r, mut host_w) = (guest, host);
    let _ = std::io::copy(&mut guest_r, &mut host_w);
    let _ = host_w.shutdown(Shutdown::Both);
    let _ = up.join();
    let _ = guest_r.shutdown(Shutdown::Both);
}
