//! supermachine's frame format, written here from the contract
//! (`SUPERMACHINE-CONTRACT.md` section 1) rather than taken from our `supermachine-proto`:
//! the harness checks our agent against the protocol, so it must not share our code.
//! Used where the real client has no public entry point (raw and malformed frames) and by
//! the differential test.

use std::io::{self, Read, Write};

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const RESIZE: u8 = 3;
pub const SIGNAL: u8 = 4;
pub const EXIT: u8 = 5;
pub const ERROR: u8 = 6;
pub const CONTROL: u8 = 0xfe;
pub const REQUEST: u8 = 0xff;

/// The host's cap on a payload (`exec.rs`: 16 MiB).
pub const MAX_PAYLOAD: usize = 16 << 20;

/// One frame's bytes: `u8 kind`, `u32` big-endian length, payload.
pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A REQUEST frame carrying `json`.
pub fn request(json: &serde_json::Value) -> Vec<u8> {
    frame(REQUEST, json.to_string().as_bytes())
}

/// A CONTROL frame carrying `json`.
pub fn control(json: &serde_json::Value) -> Vec<u8> {
    frame(CONTROL, json.to_string().as_bytes())
}

/// Writes `bytes` and flushes.
pub fn send(w: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    w.write_all(bytes)?;
    w.flush()
}

/// Reads one frame; `Ok(None)` at a clean end of stream before a header.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut header = [0u8; 5];
    let mut got = 0;
    while got < header.len() {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "end of stream inside a frame header",
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over the 16 MiB cap"),
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some((header[0], payload)))
}

/// How an exchange ended.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    /// EXIT: the code and whether the peak RSS followed it (12-byte payload).
    Exit { code: u32, with_rss: bool },
    /// ERROR with its text.
    Error(String),
    /// The CONTROL ack, with fields that differ run to run (`pid`) replaced.
    Control(serde_json::Value),
    /// The agent closed the stream without a terminal frame.
    Eof,
    /// Nothing terminal arrived in time.
    Timeout,
    /// A frame that does not belong in a reply, or an unreadable one.
    Bad(String),
}

/// Everything an agent answered on one connection, normalised for comparison: STDOUT
/// and STDERR chunks joined (chunking is not part of the protocol), then the end.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub end: End,
}

impl Reply {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Folds a sequence of agent frames into a [`Reply`] (stops at the first terminal one).
pub fn fold(frames: impl IntoIterator<Item = (u8, Vec<u8>)>) -> Reply {
    let mut reply = Reply {
        stdout: Vec::new(),
        stderr: Vec::new(),
        end: End::Eof,
    };
    for (kind, payload) in frames {
        match kind {
            STDOUT => reply.stdout.extend_from_slice(&payload),
            STDERR => reply.stderr.extend_from_slice(&payload),
            EXIT => {
                reply.end = if payload.len() == 4 || payload.len() == 12 {
                    End::Exit {
                        code: u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]),
                        with_rss: payload.len() == 12,
                    }
                } else {
                    End::Bad(format!("EXIT payload of {} bytes", payload.len()))
                };
                break;
            }
            ERROR => {
                reply.end = End::Error(String::from_utf8_lossy(&payload).into_owned());
                break;
            }
            CONTROL => {
                reply.end = match serde_json::from_slice::<serde_json::Value>(&payload) {
                    Ok(mut v) => {
                        if let Some(pid) = v.get_mut("pid") {
                            *pid = serde_json::json!("<pid>");
                        }
                        End::Control(v)
                    }
                    Err(e) => End::Bad(format!("CONTROL ack is not JSON: {e}")),
                };
                break;
            }
            other => {
                reply.end = End::Bad(format!("unexpected frame kind {other:#x} from the agent"));
                break;
            }
        }
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_fold() {
        let mut wire = frame(STDOUT, b"a");
        wire.extend(frame(STDOUT, b"b"));
        wire.extend(frame(STDERR, b"e"));
        wire.extend(frame(EXIT, &[0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 1, 0]));
        let mut r = &wire[..];
        let mut frames = Vec::new();
        while let Some(f) = read_frame(&mut r).unwrap() {
            frames.push(f);
        }
        let reply = fold(frames);
        assert_eq!(reply.stdout, b"ab");
        assert_eq!(reply.stderr, b"e");
        assert_eq!(
            reply.end,
            End::Exit {
                code: 7,
                with_rss: true
            }
        );
    }

    #[test]
    fn pid_is_normalised_and_truncation_is_an_error() {
        let ack = fold([(CONTROL, br#"{"ok":true,"pid":42}"#.to_vec())]);
        assert_eq!(
            ack.end,
            End::Control(serde_json::json!({"ok": true, "pid": "<pid>"}))
        );
        let mut short = &[1u8, 0, 0][..];
        assert!(read_frame(&mut short).is_err());
        assert!(matches!(fold([(EXIT, vec![0, 1])]).end, End::Bad(_)));
    }
}
