//! Payloads: the REQUEST and CONTROL JSON, CONTROL replies, EXIT and RESIZE.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// REQUEST payload: what to run. Optional fields are left out of the JSON when empty,
/// as the host sends them; unknown fields are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// Program and arguments; `argv[0]` is looked up in `PATH`.
    pub argv: Vec<String>,
    /// Variables set on top of the agent's environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Run on a pseudo-terminal (all three standard streams).
    #[serde(default)]
    pub tty: bool,
    /// Initial pty width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cols: Option<u16>,
    /// Initial pty height.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u16>,
    /// Files written (atomically, with their mode) before the exec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stage_files: Vec<StageFile>,
    /// More commands run after `argv`, `&&`-style: the first failure ends the chain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<Vec<String>>,
}

/// One file of [`ExecRequest::stage_files`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageFile {
    /// Absolute path in the guest; its parent directory must exist.
    pub path: String,
    /// Contents, standard base64.
    pub data_b64: String,
    /// Permission bits; without one the file gets 0644.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

/// A CONTROL request: `{"action": "...", ...}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Control {
    /// Answered with `{"ok":true,"protocol":N}`.
    Probe,
    /// Signals the workload named by [`crate::WORKLOAD_PID_PATH`].
    Signal {
        /// Signal number.
        signum: i32,
    },
    /// Writes a whole file atomically.
    WriteFile {
        /// Destination path.
        path: String,
        /// Contents, standard base64.
        data_b64: String,
        /// Permission bits.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<u32>,
    },
    /// One chunk of a file written in pieces; the file appears with the last one.
    WriteFileChunk {
        /// Destination path.
        path: String,
        /// Where this chunk goes in the file.
        offset: u64,
        /// Chunk contents, standard base64.
        data_b64: String,
        /// Whether this chunk completes the file.
        #[serde(default)]
        last: bool,
        /// Names the transfer, so two uploads to one path do not mix.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// Permission bits (sent with the last chunk).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<u32>,
    },
    /// Reads part of a file: answered with `data_b64` and `total_len`.
    ReadFileChunk {
        /// Source path.
        path: String,
        /// First byte to read.
        offset: u64,
        /// Most bytes to return.
        len: u64,
        /// Refuse files larger than this.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_bytes: Option<u64>,
    },
    /// Sets the guest's realtime clock.
    SyncTime {
        /// Host time, nanoseconds since the Unix epoch.
        host_unix_ns: u64,
    },
    /// sync(2).
    Sync,
    /// Drops the page cache, dentries and inodes.
    DropVfsCaches,
    /// Parks the secondary vCPUs through `/dev/smpark`.
    SmparkPark,
    /// Releases them.
    SmparkUnpark,
}

/// Why a CONTROL payload was not understood.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlParseError {
    /// Valid JSON with an `action` this protocol does not have.
    UnknownAction(String),
    /// Not JSON, no `action`, or wrong fields for the action.
    Malformed(String),
}

impl fmt::Display for ControlParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The host string-matches this exact text.
            ControlParseError::UnknownAction(_) => f.write_str("unknown CONTROL action"),
            ControlParseError::Malformed(e) => write!(f, "CONTROL JSON parse: {e}"),
        }
    }
}

impl std::error::Error for ControlParseError {}

const ACTIONS: &[&str] = &[
    "probe",
    "signal",
    "write_file",
    "write_file_chunk",
    "read_file_chunk",
    "sync_time",
    "sync",
    "drop_vfs_caches",
    "smpark_park",
    "smpark_unpark",
];

/// Parses a CONTROL payload.
pub fn parse_control(payload: &[u8]) -> Result<Control, ControlParseError> {
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| ControlParseError::Malformed(e.to_string()))?;
    let action = match value.get("action") {
        Some(Value::String(a)) => a.clone(),
        Some(_) => {
            return Err(ControlParseError::Malformed(
                "\"action\" is not a string".into(),
            ))
        }
        None => {
            return Err(ControlParseError::Malformed(
                "missing field `action`".into(),
            ))
        }
    };
    if !ACTIONS.contains(&action.as_str()) {
        return Err(ControlParseError::UnknownAction(action));
    }
    serde_json::from_value(value).map_err(|e| ControlParseError::Malformed(e.to_string()))
}

/// Parses a REQUEST payload; the error text follows `REQUEST JSON parse: `.
pub fn parse_request(payload: &[u8]) -> Result<ExecRequest, String> {
    serde_json::from_slice(payload).map_err(|e| e.to_string())
}

/// A successful CONTROL reply: `{"ok":true}` plus `extra` ("ok" first, as the
/// published agent writes it).
pub fn control_ok(extra: Map<String, Value>) -> Vec<u8> {
    let mut out = String::from(r#"{"ok":true"#);
    for (k, v) in &extra {
        out.push(',');
        out.push_str(&Value::String(k.clone()).to_string());
        out.push(':');
        out.push_str(&v.to_string());
    }
    out.push('}');
    out.into_bytes()
}

/// A failed CONTROL reply: `{"ok":false,"error":msg}`.
pub fn control_err(msg: &str) -> Vec<u8> {
    format!(r#"{{"ok":false,"error":{}}}"#, Value::String(msg.into())).into_bytes()
}

/// Standard base64 (with padding), the encoding of every `data_b64` field.
pub fn b64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes a `data_b64` field.
pub fn b64_decode(text: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("data_b64 is not valid base64: {e}"))
}

/// EXIT payload: `u32` BE code (signal deaths folded to 128+signal), then optionally
/// the peak RSS in KiB as `u64` BE. This agent always sends both (12 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    /// Exit code, or 128+signal.
    pub code: u32,
    /// Peak resident set size of the child, KiB.
    pub peak_rss_kib: Option<u64>,
}

/// An EXIT payload shorter than the 4-byte code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitDecodeError {
    /// Bytes received.
    pub len: usize,
}

impl fmt::Display for ExitDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "truncated EXIT frame: {} byte(s), need at least 4 for the exit code",
            self.len
        )
    }
}

impl std::error::Error for ExitDecodeError {}

impl Exit {
    /// The wire payload: 4 bytes, or 12 with the peak RSS.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.code.to_be_bytes().to_vec();
        if let Some(rss) = self.peak_rss_kib {
            v.extend_from_slice(&rss.to_be_bytes());
        }
        v
    }

    /// Reads a payload as the host does: the RSS only when all 8 of its bytes are there.
    pub fn decode(p: &[u8]) -> Result<Exit, ExitDecodeError> {
        let code = p
            .get(..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .ok_or(ExitDecodeError { len: p.len() })?;
        let peak_rss_kib = p
            .get(4..12)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes);
        Ok(Exit {
            code: u32::from_be_bytes(code),
            peak_rss_kib,
        })
    }
}

/// RESIZE payload: `u16` BE columns, then `u16` BE rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resize {
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
}

impl Resize {
    /// The 4-byte payload.
    pub fn encode(&self) -> [u8; 4] {
        let c = self.cols.to_be_bytes();
        let r = self.rows.to_be_bytes();
        [c[0], c[1], r[0], r[1]]
    }

    /// Reads a payload; `None` unless it is at least 4 bytes.
    pub fn decode(p: &[u8]) -> Option<Resize> {
        match p {
            [c0, c1, r0, r1, ..] => Some(Resize {
                cols: u16::from_be_bytes([*c0, *c1]),
                rows: u16::from_be_bytes([*r0, *r1]),
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_matches_the_host_json() {
        // The shape the host's RequestPayload serializes.
        let wire = br#"{"argv":["sh","-c","x"],"env":{"A":"1"},"cwd":"/tmp","tty":true,"cols":80,"rows":24,"stage_files":[{"path":"/a","data_b64":"aGk=","mode":493}],"chain":[["true"]]}"#;
        let r = parse_request(wire).unwrap();
        assert_eq!(r.argv, ["sh", "-c", "x"]);
        assert_eq!(r.env.get("A").map(String::as_str), Some("1"));
        assert_eq!(r.cwd.as_deref(), Some("/tmp"));
        assert!(r.tty);
        assert_eq!((r.cols, r.rows), (Some(80), Some(24)));
        assert_eq!(r.stage_files[0].mode, Some(0o755));
        assert_eq!(b64_decode(&r.stage_files[0].data_b64).unwrap(), b"hi");
        assert_eq!(r.chain, vec![vec!["true".to_string()]]);
        let again = serde_json::to_vec(&r).unwrap();
        assert_eq!(parse_request(&again).unwrap(), r);
        // Minimal request: optional fields left out, both ways.
        let min = ExecRequest {
            argv: vec!["true".into()],
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&min).unwrap(),
            r#"{"argv":["true"],"env":{},"tty":false}"#
        );
        assert_eq!(
            parse_request(br#"{"argv":["true"],"extra":1}"#).unwrap(),
            min
        );
        assert!(parse_request(b"{").is_err());
        assert!(parse_request(br#"{"env":{}}"#)
            .unwrap_err()
            .contains("argv"));
    }

    #[test]
    fn control_actions_parse() {
        let cases = [
            (json!({"action":"probe"}), Control::Probe),
            (
                json!({"action":"signal","signum":15}),
                Control::Signal { signum: 15 },
            ),
            (
                json!({"action":"write_file","path":"/f","data_b64":""}),
                Control::WriteFile {
                    path: "/f".into(),
                    data_b64: String::new(),
                    mode: None,
                },
            ),
            (
                json!({"action":"write_file_chunk","path":"/f","offset":8,"data_b64":"","last":true,"token":"t","mode":420}),
                Control::WriteFileChunk {
                    path: "/f".into(),
                    offset: 8,
                    data_b64: String::new(),
                    last: true,
                    token: Some("t".into()),
                    mode: Some(0o644),
                },
            ),
            (
                json!({"action":"read_file_chunk","path":"/f","offset":0,"len":10,"max_bytes":100}),
                Control::ReadFileChunk {
                    path: "/f".into(),
                    offset: 0,
                    len: 10,
                    max_bytes: Some(100),
                },
            ),
            (
                json!({"action":"sync_time","host_unix_ns":5}),
                Control::SyncTime { host_unix_ns: 5 },
            ),
            (json!({"action":"sync"}), Control::Sync),
            (json!({"action":"drop_vfs_caches"}), Control::DropVfsCaches),
            (json!({"action":"smpark_park"}), Control::SmparkPark),
            (json!({"action":"smpark_unpark"}), Control::SmparkUnpark),
        ];
        for (v, want) in cases {
            let bytes = serde_json::to_vec(&v).unwrap();
            assert_eq!(parse_control(&bytes).unwrap(), want, "{v}");
            let back = serde_json::to_vec(&want).unwrap();
            assert_eq!(parse_control(&back).unwrap(), want);
        }
    }

    #[test]
    fn control_errors_are_told_apart() {
        let e = parse_control(br#"{"action":"reboot"}"#).unwrap_err();
        assert_eq!(e, ControlParseError::UnknownAction("reboot".into()));
        assert_eq!(e.to_string(), "unknown CONTROL action");
        for bad in [
            &b"nope"[..],
            b"{}",
            br#"{"action":3}"#,
            br#"{"action":"signal"}"#,
        ] {
            assert!(
                matches!(parse_control(bad), Err(ControlParseError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn control_replies() {
        assert_eq!(
            control_err("unknown CONTROL action"),
            br#"{"ok":false,"error":"unknown CONTROL action"}"#
        );
        let mut m = Map::new();
        m.insert("protocol".into(), json!(5));
        assert_eq!(control_ok(m), br#"{"ok":true,"protocol":5}"#);
        assert_eq!(control_ok(Map::new()), br#"{"ok":true}"#);
    }

    #[test]
    fn exit_codec() {
        let e = Exit {
            code: 143,
            peak_rss_kib: Some(0x0102_0304_0506),
        };
        let p = e.encode();
        assert_eq!(p.len(), 12);
        assert_eq!(&p[..4], &[0, 0, 0, 143]);
        assert_eq!(Exit::decode(&p).unwrap(), e);
        let short = Exit {
            code: 1,
            peak_rss_kib: None,
        };
        assert_eq!(Exit::decode(&short.encode()).unwrap(), short);
        // Partial RSS is ignored, as the host does; under 4 bytes is an error.
        assert_eq!(Exit::decode(&p[..7]).unwrap().peak_rss_kib, None);
        assert_eq!(Exit::decode(&p[..3]).unwrap_err().len, 3);
    }

    #[test]
    fn resize_codec() {
        let r = Resize {
            cols: 132,
            rows: 43,
        };
        assert_eq!(r.encode(), [0, 132, 0, 43]);
        assert_eq!(Resize::decode(&r.encode()), Some(r));
        assert_eq!(Resize::decode(&[1, 2, 3]), None);
    }

    #[test]
    fn base64_round_trip() {
        let data: Vec<u8> = (0..=255).collect();
        assert_eq!(b64_decode(&b64_encode(&data)).unwrap(), data);
        assert!(b64_decode("!!").unwrap_err().contains("base64"));
    }
}
