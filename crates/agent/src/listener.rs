//! The two transports: AF_VSOCK (the real one, host CID only) and a Unix socket (tests).

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use crate::sys::cvt;

use supermachine_proto::HOST_CID;

/// A bound, listening socket.
pub enum Listener {
    /// AF_VSOCK on a port, any local CID.
    Vsock {
        /// The listening socket.
        fd: OwnedFd,
        /// Its port.
        port: u32,
    },
    /// A Unix stream socket at a path.
    Unix {
        /// The listening socket.
        listener: UnixListener,
        /// Its path.
        path: PathBuf,
    },
}

/// What one `accept` gave.
pub enum Accepted {
    /// A peer to serve.
    Stream(OwnedFd),
    /// A vsock peer that is not the host, already closed.
    Refused {
        /// The peer's CID.
        cid: u32,
    },
}

impl Listener {
    /// Listens on AF_VSOCK `port`.
    pub fn bind_vsock(port: u32) -> io::Result<Listener> {
        // SAFETY: plain socket(2) call.
        let raw = cvt(unsafe {
            libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0)
        })?;
        // SAFETY: `raw` is a fresh descriptor we now own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_vm is plain data; all-zero is a valid starting value.
        let mut addr: libc::sockaddr_vm = unsafe { mem::zeroed() };
        addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
        addr.svm_port = port;
        addr.svm_cid = libc::VMADDR_CID_ANY;
        let len = mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;
        // SAFETY: `addr` is a valid sockaddr_vm of `len` bytes.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_vm).cast(),
                len,
            )
        })?;
        // SAFETY: plain listen(2) on our socket.
        cvt(unsafe { libc::listen(fd.as_raw_fd(), 64) })?;
        Ok(Listener::Vsock { fd, port })
    }

    /// Listens on a Unix socket at `path`, replacing a stale socket file.
    pub fn bind_unix(path: &Path) -> io::Result<Listener> {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(path)?;
        Ok(Listener::Unix {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// How the ready line names this listener.
    pub fn describe(&self) -> String {
        match self {
            Listener::Vsock { port, .. } => format!("vsock port {port}"),
            Listener::Unix { path, .. } => format!("unix socket {}", path.display()),
        }
    }

    /// Waits for the next peer. Vsock peers other than the host are closed at once.
    pub fn accept(&self) -> io::Result<Accepted> {
        match self {
            Listener::Unix { listener, .. } => {
                let (stream, _) = listener.accept()?;
                Ok(Accepted::Stream(OwnedFd::from(stream)))
            }
            Listener::Vsock { fd, .. } => {
                // SAFETY: all-zero is a valid sockaddr_vm to be filled by accept4.
                let mut addr: libc::sockaddr_vm = unsafe { mem::zeroed() };
                let mut len = mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;
                // SAFETY: `addr`/`len` describe a writable sockaddr_vm buffer.
                let raw = cvt(unsafe {
                    libc::accept4(
                        fd.as_raw_fd(),
                        (&mut addr as *mut libc::sockaddr_vm).cast(),
                        &mut len,
                        libc::SOCK_CLOEXEC,
                    )
                })?;
                // SAFETY: accept4 returned a fresh descriptor we now own.
                let conn = unsafe { OwnedFd::from_raw_fd(raw) };
                if addr.svm_cid != HOST_CID {
                    drop(conn);
                    return Ok(Accepted::Refused { cid: addr.svm_cid });
                }
                Ok(Accepted::Stream(conn))
            }
        }
    }
}
