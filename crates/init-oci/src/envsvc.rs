//! The container's environment and secrets, from the VMM's env service: init connects
//! to host CID 2 port 1026 and reads one JSON object `{"env":{..},"secrets":{..}}` until
//! the host shuts the connection.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

/// Host vsock port of the env service.
pub const PORT: u32 = 1026;
/// The host's vsock CID.
pub const HOST_CID: u32 = 2;
/// The answer is a few KiB; anything much larger is not an env service.
const MAX_BYTES: usize = 4 << 20;
/// How long connect and each read may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// What the env service answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvReply {
    pub env: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, String>,
}

/// Parses the env service's JSON.
pub fn parse(bytes: &[u8]) -> Result<EnvReply, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let object = value
        .as_object()
        .ok_or("not a JSON object with \"env\" and \"secrets\"")?;
    Ok(EnvReply {
        env: map(object.get("env"), "env")?,
        secrets: map(object.get("secrets"), "secrets")?,
    })
}

fn map(value: Option<&serde_json::Value>, field: &str) -> Result<BTreeMap<String, String>, String> {
    let Some(value) = value else {
        return Ok(BTreeMap::new());
    };
    let object = value
        .as_object()
        .ok_or_else(|| format!("\"{field}\" is not an object of strings"))?;
    let mut out = BTreeMap::new();
    for (key, val) in object {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return Err(format!("\"{field}\" has an unusable name {key:?}"));
        }
        let text = val
            .as_str()
            .ok_or_else(|| format!("\"{field}\".{key} is not a string"))?;
        if text.contains('\0') {
            return Err(format!("\"{field}\".{key} holds a NUL byte"));
        }
        out.insert(key.clone(), text.to_string());
    }
    Ok(out)
}

/// Reads everything from `stream` up to EOF (bounded), then parses it.
pub fn read_reply(stream: &mut impl Read) -> Result<EnvReply, String> {
    let mut bytes = Vec::new();
    stream
        .take(MAX_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("env read: {e}"))?;
    if bytes.len() > MAX_BYTES {
        return Err(format!("env reply larger than {MAX_BYTES} bytes"));
    }
    parse(&bytes)
}

/// Connects to the host's env service and returns its answer.
pub fn fetch() -> Result<EnvReply, String> {
    let mut stream = crate::sys::VsockStream::connect(HOST_CID, PORT, TIMEOUT)
        .map_err(|e| format!("env connect to CID {HOST_CID} port {PORT}: {e}"))?;
    read_reply(&mut stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_vmm_reply() {
        let reply =
            parse(br#"{"env":{"PATH":"/bin","A":"x=y"},"secrets":{"TOKEN":"s3"}}"#).unwrap();
        assert_eq!(reply.env["PATH"], "/bin");
        assert_eq!(reply.env["A"], "x=y");
        assert_eq!(reply.secrets["TOKEN"], "s3");
        let empty = parse(br#"{"env":{},"secrets":{}}"#).unwrap();
        assert_eq!(empty, EnvReply::default());
        assert_eq!(parse(b"{}").unwrap(), EnvReply::default());
    }

    #[test]
    fn rejects_what_cannot_become_an_environment() {
        assert!(parse(b"").unwrap_err().starts_with("not JSON"));
        assert!(parse(b"[]").unwrap_err().contains("not a JSON object"));
        assert!(parse(br#"{"env":{"A":1}}"#)
            .unwrap_err()
            .contains("\"env\".A is not a string"));
        assert!(parse(br#"{"env":{"A=B":"1"}}"#)
            .unwrap_err()
            .contains("unusable name"));
        assert!(parse(br#"{"secrets":[]}"#)
            .unwrap_err()
            .contains("\"secrets\" is not an object"));
    }

    #[test]
    fn reads_until_eof_over_a_stream() {
        let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let mut b = b;
            b.write_all(br#"{"env":{"K":"#).unwrap();
            b.write_all(br#""v"},"secrets":{}}"#).unwrap();
        });
        let reply = read_reply(&mut a).unwrap();
        writer.join().unwrap();
        assert_eq!(reply.env["K"], "v");
    }
}
