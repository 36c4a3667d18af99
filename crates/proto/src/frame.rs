//! Framing: a 12-byte header, then the payload.
//!
//! ```text
//! offset size field
//!      0    2 magic   b"SM"
//!      2    1 type    message type code (see `kind`)
//!      3    1 flags   reserved, must be 0
//!      4    4 id      session or request id, little endian
//!      8    4 length  payload length in bytes, little endian, <= MAX_FRAME_SIZE
//! ```

use std::fmt;
use std::io::{self, Read, Write};

use crate::codec::DecodeError;
use crate::message::Message;
use crate::MAX_FRAME_SIZE;

/// The two bytes every frame starts with.
pub const MAGIC: [u8; 2] = *b"SM";
/// Size of the frame header.
pub const HEADER_LEN: usize = 12;

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Message type code.
    pub kind: u8,
    /// Reserved; a non-zero value makes the frame malformed.
    pub flags: u8,
    /// Session or request id.
    pub id: u32,
    /// Payload length.
    pub len: u32,
}

impl Header {
    /// Parses a header. Fails only on wrong magic: every other problem (length, type,
    /// flags) still leaves a header whose length tells where the next frame starts.
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Result<Header, FrameError> {
        let [m0, m1, kind, flags, i0, i1, i2, i3, l0, l1, l2, l3] = *bytes;
        if [m0, m1] != MAGIC {
            return Err(FrameError::BadMagic);
        }
        Ok(Header {
            kind,
            flags,
            id: u32::from_le_bytes([i0, i1, i2, i3]),
            len: u32::from_le_bytes([l0, l1, l2, l3]),
        })
    }

    /// The 12 header bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let [i0, i1, i2, i3] = self.id.to_le_bytes();
        let [l0, l1, l2, l3] = self.len.to_le_bytes();
        [
            MAGIC[0], MAGIC[1], self.kind, self.flags, i0, i1, i2, i3, l0, l1, l2, l3,
        ]
    }
}

/// A decoded frame: its id and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Session or request id from the header.
    pub id: u32,
    /// The message.
    pub message: Message,
}

/// Why a frame could not be read. The variants say how far the stream got, which decides
/// whether the connection can go on.
#[derive(Debug)]
pub enum FrameError {
    /// The stream ended cleanly between frames.
    Closed,
    /// The stream ended inside a frame after `got` of its bytes.
    Truncated {
        /// Bytes of the frame that arrived.
        got: usize,
    },
    /// The header does not start with [`MAGIC`]: framing is lost, close the connection.
    BadMagic,
    /// The declared payload length is over [`MAX_FRAME_SIZE`]. Nothing of the payload
    /// was read or allocated; [`skip_payload`] discards it to go on.
    Oversized {
        /// Id from the header.
        id: u32,
        /// Declared length.
        len: u32,
    },
    /// The whole frame was read but its payload (or type, or flags) is invalid. The
    /// stream is at the next frame.
    Malformed {
        /// Id from the header.
        id: u32,
        /// Type from the header.
        kind: u8,
        /// What is wrong.
        error: DecodeError,
    },
    /// Reading failed.
    Io(io::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Closed => f.write_str("connection closed"),
            FrameError::Truncated { got } => write!(f, "stream ended inside a frame ({got} bytes)"),
            FrameError::BadMagic => f.write_str("bad frame magic"),
            FrameError::Oversized { len, .. } => {
                write!(f, "frame payload of {len} bytes exceeds {MAX_FRAME_SIZE}")
            }
            FrameError::Malformed { kind, error, .. } => {
                write!(f, "malformed frame of type {kind:#04x}: {error}")
            }
            FrameError::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// A frame whose payload would be over [`MAX_FRAME_SIZE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameTooLarge {
    /// The payload size that was asked for.
    pub len: usize,
}

impl fmt::Display for FrameTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "payload of {} bytes exceeds {MAX_FRAME_SIZE}", self.len)
    }
}

impl std::error::Error for FrameTooLarge {}

/// Encodes a complete frame (header and payload).
pub fn encode_frame(id: u32, message: &Message) -> Result<Vec<u8>, FrameTooLarge> {
    let payload = message.encode_payload();
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l <= MAX_FRAME_SIZE)
        .ok_or(FrameTooLarge { len: payload.len() })?;
    let header = Header {
        kind: message.kind(),
        flags: 0,
        id,
        len,
    };
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Decodes a payload in the context of its header (flags and type checked).
pub fn decode_payload(header: &Header, payload: &[u8]) -> Result<Frame, FrameError> {
    let malformed = |error| FrameError::Malformed {
        id: header.id,
        kind: header.kind,
        error,
    };
    if header.flags != 0 {
        return Err(malformed(DecodeError::ReservedFlags(header.flags)));
    }
    let message = Message::decode(header.kind, payload).map_err(malformed)?;
    Ok(Frame {
        id: header.id,
        message,
    })
}

/// Decodes one frame from the front of `bytes`.
///
/// Returns `Ok(None)` when `bytes` holds only part of a frame, otherwise the frame (or
/// the error) and how many bytes it spans, so a caller can go on after a malformed frame.
/// For [`FrameError::Oversized`] and [`FrameError::BadMagic`] the span is the header only.
pub fn decode_frame(bytes: &[u8]) -> Option<(Result<Frame, FrameError>, usize)> {
    let head: &[u8; HEADER_LEN] = bytes.get(..HEADER_LEN)?.try_into().ok()?;
    let header = match Header::parse(head) {
        Ok(h) => h,
        Err(e) => return Some((Err(e), HEADER_LEN)),
    };
    if header.len > MAX_FRAME_SIZE {
        let err = FrameError::Oversized {
            id: header.id,
            len: header.len,
        };
        return Some((Err(err), HEADER_LEN));
    }
    let end = HEADER_LEN + header.len as usize;
    let payload = bytes.get(HEADER_LEN..end)?;
    Some((decode_payload(&header, payload), end))
}

/// Reads until `buf` is full; returns how many bytes arrived before end of stream.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while let Some(rest) = buf.get_mut(got..) {
        if rest.is_empty() {
            break;
        }
        match r.read(rest) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Reads one frame from a blocking stream.
///
/// `buf` is scratch space reused between calls; it never grows past [`MAX_FRAME_SIZE`]
/// because the length is checked before the payload is read.
pub fn read_frame<R: Read>(r: &mut R, buf: &mut Vec<u8>) -> Result<Frame, FrameError> {
    let mut head = [0u8; HEADER_LEN];
    match read_full(r, &mut head).map_err(FrameError::Io)? {
        0 => return Err(FrameError::Closed),
        HEADER_LEN => {}
        got => return Err(FrameError::Truncated { got }),
    }
    let header = Header::parse(&head)?;
    if header.len > MAX_FRAME_SIZE {
        return Err(FrameError::Oversized {
            id: header.id,
            len: header.len,
        });
    }
    let len = header.len as usize;
    buf.clear();
    buf.resize(len, 0);
    let got = read_full(r, buf).map_err(FrameError::Io)?;
    if got < len {
        return Err(FrameError::Truncated {
            got: HEADER_LEN + got,
        });
    }
    decode_payload(&header, buf)
}

/// Discards `len` payload bytes after [`FrameError::Oversized`], in small reads so
/// nothing the size of the payload is ever allocated.
pub fn skip_payload<R: Read>(r: &mut R, len: u32) -> io::Result<()> {
    let mut left = u64::from(len);
    let mut scratch = [0u8; 4096];
    while left > 0 {
        let want = usize::try_from(left.min(scratch.len() as u64)).unwrap_or(scratch.len());
        let chunk = scratch.get_mut(..want).unwrap_or(&mut []);
        match r.read(chunk) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => left = left.saturating_sub(n as u64),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Encodes and writes one frame.
pub fn write_frame<W: Write>(w: &mut W, id: u32, message: &Message) -> io::Result<()> {
    let bytes = encode_frame(id, message)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    w.write_all(&bytes)
}
