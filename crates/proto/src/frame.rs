//! Framing: a 5-byte header (`u8` kind, `u32` big-endian length) and the payload.

use std::fmt;
use std::io::{self, Read, Write};

use crate::{HEADER_LEN, MAX_PAYLOAD};

/// Frame kinds. The wire keeps the raw byte ([`Frame::kind`]): unknown kinds are legal
/// and a host ignores them.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Host → agent: bytes for the child's stdin; an empty payload is EOF.
    Stdin = 0,
    /// Agent → host: the child's stdout (with a pty: all of its output).
    Stdout = 1,
    /// Agent → host: the child's stderr.
    Stderr = 2,
    /// Host → agent: new pty size, see [`crate::Resize`].
    Resize = 3,
    /// Host → agent: one byte, a signal number for the child's process group.
    Signal = 4,
    /// Agent → host: exit status, see [`crate::Exit`]. Ends the session.
    Exit = 5,
    /// Agent → host: UTF-8 error text. Ends the session.
    Error = 6,
    /// First frame of a CONTROL call, and its single reply.
    Control = 0xfe,
    /// First frame of an exec session: JSON [`crate::ExecRequest`].
    Request = 0xff,
}

impl Kind {
    /// The kind with this wire byte, if it is one this protocol defines.
    pub fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            0 => Kind::Stdin,
            1 => Kind::Stdout,
            2 => Kind::Stderr,
            3 => Kind::Resize,
            4 => Kind::Signal,
            5 => Kind::Exit,
            6 => Kind::Error,
            0xfe => Kind::Control,
            0xff => Kind::Request,
            _ => return None,
        })
    }
}

/// One frame: its raw kind byte and its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The kind byte as sent; see [`Kind::from_u8`].
    pub kind: u8,
    /// The payload, at most [`MAX_PAYLOAD`] bytes.
    pub payload: Vec<u8>,
}

/// Why a frame could not be read.
#[derive(Debug)]
pub enum FrameError {
    /// The byte stream failed.
    Io(io::Error),
    /// The header announced more than [`MAX_PAYLOAD`] bytes; framing is lost.
    TooLarge {
        /// The announced payload length.
        len: u32,
    },
    /// The stream ended inside a frame.
    Truncated {
        /// Bytes the frame needed (header and payload, as far as known).
        expected: usize,
        /// Bytes that arrived.
        got: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "connection error: {e}"),
            FrameError::TooLarge { len } => write!(
                f,
                "frame payload of {len} bytes is over the {MAX_PAYLOAD}-byte limit; send data in smaller frames"
            ),
            FrameError::Truncated { expected, got } => write!(
                f,
                "connection closed inside a frame: got {got} of {expected} bytes"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        FrameError::Io(e)
    }
}

/// The header for a frame of `kind` with a `len`-byte payload.
pub fn encode_header(kind: u8, len: u32) -> [u8; HEADER_LEN] {
    let l = len.to_be_bytes();
    [kind, l[0], l[1], l[2], l[3]]
}

fn parse_header(h: &[u8; HEADER_LEN]) -> (u8, u32) {
    (h[0], u32::from_be_bytes([h[1], h[2], h[3], h[4]]))
}

/// Writes one frame (header and payload in one buffer, so a frame is never split by a
/// concurrent writer that also writes whole buffers). Refuses payloads over
/// [`MAX_PAYLOAD`].
pub fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| *l <= MAX_PAYLOAD)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "frame payload of {} bytes is over the {MAX_PAYLOAD}-byte limit",
                    payload.len()
                ),
            )
        })?;
    let mut buf = Vec::with_capacity(HEADER_LEN + payload.len());
    buf.extend_from_slice(&encode_header(kind, len));
    buf.extend_from_slice(payload);
    w.write_all(&buf)
}

/// Reads as much of `buf` as the stream has; returns how many bytes were read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while let Some(rest) = buf.get_mut(got..).filter(|b| !b.is_empty()) {
        match r.read(rest) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Reads one frame from a blocking stream. `Ok(None)` is a clean end of stream before
/// a header. The payload buffer grows only as bytes arrive, so a lying length costs no
/// memory up front.
pub fn read_frame(r: &mut impl Read) -> Result<Option<Frame>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let got = read_full(r, &mut header)?;
    if got == 0 {
        return Ok(None);
    }
    if got < HEADER_LEN {
        return Err(FrameError::Truncated {
            expected: HEADER_LEN,
            got,
        });
    }
    let (kind, len) = parse_header(&header);
    if len > MAX_PAYLOAD {
        return Err(FrameError::TooLarge { len });
    }
    let mut payload = Vec::new();
    let n = r.take(u64::from(len)).read_to_end(&mut payload)?;
    if n < len as usize {
        return Err(FrameError::Truncated {
            expected: HEADER_LEN + len as usize,
            got: HEADER_LEN + n,
        });
    }
    Ok(Some(Frame { kind, payload }))
}

/// Incremental decoder for non-blocking loops: [`push`](Decoder::push) bytes as they
/// arrive, then take whole frames with [`next_frame`](Decoder::next_frame).
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    start: usize,
}

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, `Ok(None)` if more bytes are needed. After
    /// [`FrameError::TooLarge`] framing is lost: the caller must close the connection.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let rest = self.buf.get(self.start..).unwrap_or_default();
        let Some(header) = rest.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(header);
        let (kind, len) = parse_header(&h);
        if len > MAX_PAYLOAD {
            return Err(FrameError::TooLarge { len });
        }
        let end = HEADER_LEN + len as usize;
        let Some(payload) = rest.get(HEADER_LEN..end) else {
            return Ok(None);
        };
        let frame = Frame {
            kind,
            payload: payload.to_vec(),
        };
        self.start += end;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 && self.start * 2 > self.buf.len() {
            // Keep the buffer from growing without bound under a steady stream.
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Ok(Some(frame))
    }

    /// Bytes pushed but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Bytes the frame being received still needs: the header's announced total when a
    /// header is in, otherwise the header itself. Lets a caller at end of stream report
    /// [`FrameError::Truncated`].
    pub fn truncated(&self) -> Option<FrameError> {
        let got = self.buffered();
        if got == 0 {
            return None;
        }
        let rest = self.buf.get(self.start..).unwrap_or_default();
        let expected = match rest.get(..HEADER_LEN) {
            Some(h) => {
                let mut hh = [0u8; HEADER_LEN];
                hh.copy_from_slice(h);
                HEADER_LEN + parse_header(&hh).1 as usize
            }
            None => HEADER_LEN,
        };
        Some(FrameError::Truncated { expected, got })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_bytes(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        write_frame(&mut v, kind, payload).unwrap();
        v
    }

    #[test]
    fn header_layout_is_kind_then_big_endian_length() {
        assert_eq!(encode_header(0xff, 0x0102_0304), [0xff, 1, 2, 3, 4]);
        assert_eq!(frame_bytes(5, b"ab"), vec![5, 0, 0, 0, 2, b'a', b'b']);
    }

    #[test]
    fn kinds_round_trip_and_unknown_is_none() {
        for b in 0..=255u8 {
            if let Some(k) = Kind::from_u8(b) {
                assert_eq!(k as u8, b);
            }
        }
        assert_eq!(Kind::from_u8(0xfd), None);
        assert_eq!(Kind::from_u8(7), None);
        assert_eq!(Kind::from_u8(0xfe), Some(Kind::Control));
    }

    #[test]
    fn read_frame_round_trip_and_clean_eof() {
        let mut wire = frame_bytes(1, b"out");
        wire.extend(frame_bytes(0, b""));
        wire.extend(frame_bytes(0x42, &[7; 300]));
        let mut r = wire.as_slice();
        let f = read_frame(&mut r).unwrap().unwrap();
        assert_eq!((f.kind, f.payload.as_slice()), (1, &b"out"[..]));
        let f = read_frame(&mut r).unwrap().unwrap();
        assert_eq!((f.kind, f.payload.len()), (0, 0));
        let f = read_frame(&mut r).unwrap().unwrap();
        assert_eq!((f.kind, f.payload), (0x42, vec![7; 300]));
        assert!(read_frame(&mut r).unwrap().is_none());
    }

    #[test]
    fn read_frame_truncated_header_and_payload() {
        let wire = frame_bytes(1, b"hello");
        for cut in 1..wire.len() {
            match read_frame(&mut &wire[..cut]) {
                Err(FrameError::Truncated { expected, got }) => {
                    assert_eq!(got, cut);
                    assert_eq!(expected, if cut < 5 { 5 } else { 10 });
                }
                other => panic!("cut {cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn oversize_is_refused_both_ways() {
        let mut wire = encode_header(0xff, MAX_PAYLOAD + 1).to_vec();
        wire.extend_from_slice(b"{}");
        match read_frame(&mut wire.as_slice()) {
            Err(e @ FrameError::TooLarge { len }) => {
                assert_eq!(len, MAX_PAYLOAD + 1);
                assert!(e.to_string().contains("16777217"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        let mut d = Decoder::new();
        d.push(&wire);
        assert!(matches!(d.next_frame(), Err(FrameError::TooLarge { .. })));
        let big = vec![0u8; MAX_PAYLOAD as usize + 1];
        assert!(write_frame(&mut Vec::new(), 0, &big).is_err());
        // Exactly the limit is fine.
        let max = vec![0u8; MAX_PAYLOAD as usize];
        let wire = frame_bytes(0, &max);
        assert_eq!(
            read_frame(&mut wire.as_slice())
                .unwrap()
                .unwrap()
                .payload
                .len(),
            max.len()
        );
    }

    #[test]
    fn decoder_byte_by_byte() {
        let mut wire = Vec::new();
        let frames: Vec<(u8, Vec<u8>)> = (0..50u8).map(|i| (i, vec![i; i as usize * 7])).collect();
        for (k, p) in &frames {
            wire.extend(frame_bytes(*k, p));
        }
        let mut d = Decoder::new();
        let mut out = Vec::new();
        for b in &wire {
            d.push(std::slice::from_ref(b));
            while let Some(f) = d.next_frame().unwrap() {
                out.push((f.kind, f.payload));
            }
        }
        assert_eq!(out, frames);
        assert_eq!(d.buffered(), 0);
        assert!(d.truncated().is_none());
    }

    #[test]
    fn decoder_reports_truncation() {
        let wire = frame_bytes(2, b"abcdef");
        let mut d = Decoder::new();
        d.push(&wire[..3]);
        assert!(d.next_frame().unwrap().is_none());
        assert!(matches!(
            d.truncated(),
            Some(FrameError::Truncated {
                expected: 5,
                got: 3
            })
        ));
        d.push(&wire[3..8]);
        assert!(d.next_frame().unwrap().is_none());
        assert!(matches!(
            d.truncated(),
            Some(FrameError::Truncated {
                expected: 11,
                got: 8
            })
        ));
        d.push(&wire[8..]);
        assert_eq!(d.next_frame().unwrap().unwrap().payload, b"abcdef");
    }
}
