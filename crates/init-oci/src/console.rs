//! The VM console: progress lines, the markers the VMM scans for, and the resume tokens
//! it pushes back on the console's input.
//!
//! The VMM matches markers per line, byte for byte (supermachine `devices/serial.rs`), so
//! every marker is printed as one whole `write(2)` ending in a newline.

use std::io::Write;
use std::time::Duration;

/// Counted by the VMM as a sign of life; printed once the agent is up.
pub const HEARTBEAT: &str = "[SUPERMACHINE-INIT] heartbeat counter=1";
/// Printed just before the workload is forked (a snapshot trigger).
pub const WORKLOAD_PRE_EXEC: &str = "init-oci: workload-pre-exec";
/// Prefix of the smpark line; the GPA follows as hex.
pub const SMPARK_GPA: &str = "[SUPERMACHINE-SMPARK] state_gpa=0x";
/// The kernel-boot-cache pause; the VMM answers `R\n`.
pub const KCACHE_READY: &str = "[SUPERMACHINE-KCACHE] ready";
/// Printed when the kcache pause ends.
pub const KCACHE_RESUMED: &str = "[SUPERMACHINE-KCACHE] resumed";
/// The pre-exec pause; the VMM answers `P\n`.
pub const PRE_EXEC_READY: &str = "[SUPERMACHINE-PRE-EXEC] ready";
/// Printed when the pre-exec pause ends.
pub const PRE_EXEC_RESUMED: &str = "[SUPERMACHINE-PRE-EXEC] resumed";
/// Start of the line printed when the workload has exited and PID 1 idles.
pub const PARKED: &str = "init-oci: parking PID 1";

/// How long a pause waits for its token before going on without it. The VMM answers
/// within milliseconds; the limit only keeps a guest whose host never answers alive.
pub const PAUSE_LIMIT: Duration = Duration::from_secs(30);

/// Prints `init-oci: TEXT`.
pub fn say(text: &str) {
    line(&format!("init-oci: {text}"));
}

/// Prints `init-oci: error: TEXT`.
pub fn error(text: &str) {
    line(&format!("init-oci: error: {text}"));
}

/// Prints `init-oci: warning: TEXT`.
pub fn warn(text: &str) {
    line(&format!("init-oci: warning: {text}"));
}

/// Prints one line as a single write, so a marker never straddles two writes.
pub fn line(text: &str) {
    let mut bytes = Vec::with_capacity(text.len() + 1);
    bytes.extend_from_slice(text.as_bytes());
    bytes.push(b'\n');
    // A missing console must not become a panic: errors are dropped.
    let _ = std::io::stderr().lock().write_all(&bytes);
}

/// The line the VMM parses for the smpark page address.
pub fn smpark_line(gpa: u64) -> String {
    format!("{SMPARK_GPA}{gpa:x}")
}

/// The line printed when the workload ended with `code`.
pub fn parked_line(code: i32) -> String {
    format!("{PARKED} (exit={code})")
}

/// What ended a pause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// The expected token arrived.
    Token,
    /// Nothing usable arrived within the limit.
    TimedOut,
    /// The console cannot be read (closed or an error).
    NoInput(String),
}

/// Prints `ready`, then blocks reading the console until a line holding `token`
/// arrives, and prints `resumed token=T` (or says why it went on without it).
pub fn pause(ready: &str, resumed: &str, token: u8) -> Resume {
    line(ready);
    let outcome = crate::sys::wait_console_token(token, PAUSE_LIMIT);
    match &outcome {
        Resume::Token => line(&format!("{resumed} token={}", token as char)),
        Resume::TimedOut => warn(&format!(
            "no '{}' from the host within {} s after {ready:?}; going on",
            token as char,
            PAUSE_LIMIT.as_secs()
        )),
        Resume::NoInput(err) => warn(&format!(
            "cannot read the console for '{}' ({err}); going on",
            token as char
        )),
    }
    outcome
}

/// True when `chunk` (bytes read from the console) holds `token` as a line's first byte,
/// the way the VMM sends it (`R\n`, `P\n`).
pub fn has_token(chunk: &[u8], token: u8) -> bool {
    chunk
        .split(|&b| b == b'\n' || b == b'\r')
        .any(|part| part.first() == Some(&token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_match_the_vmm_scanner_byte_for_byte() {
        assert_eq!(
            HEARTBEAT
                .as_bytes()
                .windows(18)
                .filter(|w| *w == b"heartbeat counter=")
                .count(),
            1
        );
        assert!(parked_line(0).contains("parking PID 1"));
        assert_eq!(parked_line(127), "init-oci: parking PID 1 (exit=127)");
        assert_eq!(
            smpark_line(0x4123_4000),
            "[SUPERMACHINE-SMPARK] state_gpa=0x41234000"
        );
        assert_eq!(WORKLOAD_PRE_EXEC, "init-oci: workload-pre-exec");
        assert_eq!(KCACHE_READY, "[SUPERMACHINE-KCACHE] ready");
        assert_eq!(PRE_EXEC_READY, "[SUPERMACHINE-PRE-EXEC] ready");
        assert!(format!("{KCACHE_RESUMED} token=R").starts_with("[SUPERMACHINE-KCACHE] resumed"));
        assert!(
            format!("{PRE_EXEC_RESUMED} token=P").starts_with("[SUPERMACHINE-PRE-EXEC] resumed")
        );
    }

    #[test]
    fn token_is_the_first_byte_of_a_line() {
        assert!(has_token(b"R\n", b'R'));
        assert!(has_token(b"R", b'R'));
        assert!(has_token(b"\nP\n", b'P'));
        assert!(has_token(b"xx\r\nP", b'P'));
        assert!(!has_token(b"P\n", b'R'));
        assert!(!has_token(b"xR\n", b'R'));
        assert!(!has_token(b"", b'R'));
    }
}
