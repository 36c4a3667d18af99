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

/// The character device and its ioctls (`_IO('M', 1)` park, `_IO('M', 2)` unpark).
pub const DEVICE: &str = "/dev/smpark";
pub const IOC_PARK: libc::c_ulong = 0x4d01;
pub const IOC_UNPARK: libc::c_ulong = 0x4d02;

/// Parks every CPU but the first, or releases them. Parking pins the caller to CPU 0
/// first, the one smpark leaves running, so the caller is never stuck on a parked CPU.
pub fn control(park: bool) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let dev =
        fs::File::open(DEVICE).map_err(|e| format!("{DEVICE}: {e} (smpark.ko not loaded?)"))?;
    if park {
        // SAFETY: a zeroed cpu_set_t with one bit set, for the calling thread.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
    let request = if park { IOC_PARK } else { IOC_UNPARK };
    // SAFETY: an argument-less ioctl on an open descriptor.
    let rc = unsafe { libc::ioctl(dev.as_raw_fd(), request as _) };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "smpark {}: {}",
            if park { "park" } else { "unpark" },
            std::io::Error::last_os_error()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_are_io_m_1_and_2() {
        // _IO(type, nr) = type << 8 | nr, no size and no direction bits.
        assert_eq!(IOC_PARK, (u64::from(b'M') << 8 | 1) as libc::c_ulong);
        assert_eq!(IOC_UNPARK, (u64::from(b'M') << 8 | 2) as libc::c_ulong);
    }

    #[test]
    fn gpa_text() {
        assert_eq!(parse_gpa("0x41234000\n"), Some(0x4123_4000));
        assert_eq!(parse_gpa("0x0\n"), None);
        assert_eq!(parse_gpa("41234000"), None);
        assert_eq!(parse_gpa("0xzz"), None);
    }
}
