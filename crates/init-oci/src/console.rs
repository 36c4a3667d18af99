//! Lines for the user on the VM console, prefixed so they stand out in a boot log.

use std::io::Write;

/// Prints `init-oci: TEXT`.
pub fn say(text: &str) {
    write_line(&format!("init-oci: {text}\n"));
}

/// Prints `init-oci: error: TEXT`.
pub fn error(text: &str) {
    write_line(&format!("init-oci: error: {text}\n"));
}

// stderr is unbuffered, so the line is out before an exec or a power-off; a missing
// console must not become a panic, so write errors are dropped.
fn write_line(line: &str) {
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}
