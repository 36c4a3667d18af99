//! Loading smpark.ko and announcing its page to the VMM.

use std::fs;
use std::path::Path;

/// Where the VMM's initramfs puts the module.
pub const MODULE: &str = "/supermachine-smpark.ko";
/// The module's page address, as `0x...`.
pub const STATE_GPA: &str = "/sys/kernel/smpark/state_gpa";

/// Reads the module's `state_gpa` text (`0x1234\n`).
pub fn parse_gpa(text: &str) -> Option<u64> {
    let hex = text.trim().strip_prefix("0x")?;
    u64::from_str_radix(hex, 16).ok().filter(|&gpa| gpa != 0)
}

/// Loads the module if the initramfs has it and returns its page's address.
/// `Ok(None)`: no module here (single-vCPU bakes may leave it out).
pub fn load() -> Result<Option<u64>, String> {
    let module = Path::new(MODULE);
    if !module.exists() {
        return Ok(None);
    }
    match crate::sys::load_module(module) {
        Ok(()) => {}
        Err(err) if err.raw_os_error() == Some(libc::EEXIST) => {}
        Err(err) => {
            return Err(format!(
                "cannot load {MODULE}: {err} (it must be built for this kernel, which needs CONFIG_MODULES)"
            ))
        }
    }
    let text = fs::read_to_string(STATE_GPA)
        .map_err(|err| format!("{MODULE} loaded but {STATE_GPA} is unreadable: {err}"))?;
    parse_gpa(&text)
        .map(Some)
        .ok_or_else(|| format!("{STATE_GPA} holds {text:?}, not a 0x... address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpa_text() {
        assert_eq!(parse_gpa("0x41234000\n"), Some(0x4123_4000));
        assert_eq!(parse_gpa("0x0\n"), None);
        assert_eq!(parse_gpa("41234000"), None);
        assert_eq!(parse_gpa("0xzz"), None);
    }
}
