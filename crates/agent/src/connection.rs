//! One connection: its first frame decides between an exec session and one CONTROL call.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use supermachine_proto::{read_frame, write_frame, FrameError, Kind};

use crate::reaper::Reaper;
use crate::sys::{read_fd, set_nonblocking, write_some};
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
    let _ = write_frame(&mut FdWrite(conn.w.as_raw_fd(), conn.socket), kind as u8, payload);
}

/// Serves one connection to the end.
pub fn serve(conn: &Conn, reaper: &Reaper) {
    let _ = set_nonblocking(conn.r.as_raw_fd(), false);
    let _ = set_nonblocking(conn.w.as_raw_fd(), false);
    let frame = match read_frame(&mut FdRead(conn.r.as_raw_fd())) {
        Ok(Some(f)) => f,
        Ok(None) | Err(FrameError::Io(_)) => return,
        // Oversized: framing is lost, say so and close. Truncated: the peer may still
        // read after half-closing.
        Err(e) => return reply(conn, Kind::Error, e.to_string().as_bytes()),
    };
    match Kind::from_u8(frame.kind) {
        Some(Kind::Request) => session::run(conn, &frame.payload, reaper),
        Some(Kind::Control) => reply(conn, Kind::Control, &control::handle(&frame.payload)),
        _ => {
            let msg = format!(
                "first frame must be REQUEST(0xff) or CONTROL(0xfe), got {:#04x}",
                frame.kind
            );
            reply(conn, Kind::Error, msg.as_bytes())
        }
    }
}
