//! One connection: its first frame decides between an exec session and one CONTROL call.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use supermachine_proto::{read_frame, write_frame, FrameError, Kind};

use crate::reaper::Reaper;
use crate::sys::{poll, read_fd, set_nonblocking, write_some};
use crate::{control, session};

/// Both directions of a connection: the same socket twice, or stdin and stdout.
pub struct Conn {
    /// Read side.
    pub r: OwnedFd,
    /// Write side.
    pub w: OwnedFd,
    /// Writes use `send(MSG_NOSIGNAL)`.
    pub socket: bool,
}

impl Conn {
    /// A connected socket.
    pub fn socket(fd: OwnedFd) -> io::Result<Conn> {
        Ok(Conn {
            w: fd.try_clone()?,
            r: fd,
            socket: true,
        })
    }
}

/// Blocking reads on a raw descriptor.
struct FdRead(RawFd);

impl Read for FdRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_fd(self.0, buf)
    }
}

/// Blocking writes on a raw descriptor.
struct FdWrite(RawFd, bool);

impl io::Write for FdWrite {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_some(self.0, buf, self.1)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn reply(conn: &Conn, kind: Kind, payload: &[u8]) {
    let _ = write_frame(
        &mut FdWrite(conn.w.as_raw_fd(), conn.socket),
        kind as u8,
        payload,
    );
}

/// Serves one connection to the end. On a socket the reply side is then half-closed
/// and what the peer still sends is read and dropped (for up to 2 s), so that closing
/// with unread input does not reset the connection before the peer has read our
/// last frame.
pub fn serve(conn: &Conn, reaper: &Reaper) {
    serve_frames(conn, reaper);
    if conn.socket {
        linger(conn);
    }
}

fn linger(conn: &Conn) {
    // SAFETY: plain shutdown(2) on our socket.
    unsafe { libc::shutdown(conn.w.as_raw_fd(), libc::SHUT_WR) };
    let _ = set_nonblocking(conn.r.as_raw_fd(), true);
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let mut p = [libc::pollfd {
            fd: conn.r.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if poll(&mut p, i32::try_from(left.as_millis()).unwrap_or(2000) + 1).unwrap_or(0) == 0 {
            return;
        }
        match read_fd(conn.r.as_raw_fd(), &mut buf) {
            Ok(n) if n > 0 => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            _ => return,
        }
    }
}

fn serve_frames(conn: &Conn, reaper: &Reaper) {
    let _ = set_nonblocking(conn.r.as_raw_fd(), false);
    let _ = set_nonblocking(conn.w.as_raw_fd(), false);
    let mut reader = FdRead(conn.r.as_raw_fd());
    // The kind is checked as soon as its byte is in, before the length (as the
    // published agent does): a stray client gets told what it got wrong.
    let mut first = [0u8; 1];
    match reader.read(&mut first) {
        Ok(1) => {}
        _ => return,
    }
    let [kind] = first;
    if kind != Kind::Request as u8 && kind != Kind::Control as u8 {
        let msg = format!("first frame must be REQUEST(0xff) or CONTROL(0xfe), got {kind:#04x}");
        return reply(conn, Kind::Error, msg.as_bytes());
    }
    let mut rest = (&first[..]).chain(reader);
    let frame = match read_frame(&mut rest) {
        Ok(Some(f)) => f,
        Ok(None) | Err(FrameError::Io(_)) => return,
        // Oversized: framing is lost, say so and close. Truncated: the peer may still
        // read after half-closing.
        Err(e) => return reply(conn, Kind::Error, e.to_string().as_bytes()),
    };
    if frame.kind == Kind::Request as u8 {
        session::run(conn, &frame.payload, reaper)
    } else {
        reply(conn, Kind::Control, &control::handle(&frame.payload))
    }
}
