//! Guest control: facts about the guest, the clock, sync, power.

use std::io;
use std::path::Path;

use supermachine_proto::{ErrorCode, ErrorReply, GuestInfo};

use crate::connection::os;
use crate::sys::{boottime_ns, cvt};

fn field(raw: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = raw
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Kernel release, arch, uptime, memory and CPU count, from system calls only (the
/// container may not have /proc mounted where the agent expects).
pub fn info() -> GuestInfo {
    // SAFETY: utsname and sysinfo are plain data filled in by the kernel.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is writable.
    let uts_ok = unsafe { libc::uname(&mut uts) } == 0;
    // SAFETY: as above.
    let mut si: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: `si` is writable.
    let si_ok = unsafe { libc::sysinfo(&mut si) } == 0;
    let unit = u64::from(si.mem_unit.max(1));
    // SAFETY: sysconf has no memory effects.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    GuestInfo {
        kernel_release: if uts_ok {
            field(&uts.release)
        } else {
            String::new()
        },
        arch: if uts_ok {
            field(&uts.machine)
        } else {
            String::new()
        },
        uptime_ns: boottime_ns(),
        mem_total: if si_ok {
            (si.totalram as u64).saturating_mul(unit)
        } else {
            0
        },
        mem_free: if si_ok {
            (si.freeram as u64).saturating_mul(unit)
        } else {
            0
        },
        cpus: u32::try_from(cpus).unwrap_or(0),
    }
}

/// Sets `CLOCK_REALTIME`.
pub fn set_clock(secs: i64, nanos: u32) -> Result<(), ErrorReply> {
    if nanos >= 1_000_000_000 || secs < 0 {
        return Err(ErrorReply::new(
            ErrorCode::InvalidRequest,
            format!("invalid time {secs}.{nanos:09}"),
        ));
    }
    // Both targets have a 64-bit time_t and c_long, so these casts are lossless.
    let ts = libc::timespec {
        tv_sec: secs as _,
        tv_nsec: nanos as _,
    };
    // SAFETY: `ts` is a valid timespec.
    cvt(unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) })
        .map(|_| ())
        .map_err(|e| os(&e))
}

/// Sends `signal` to `pid`.
pub fn signal(pid: libc::pid_t, signal: i32) -> Result<(), ErrorReply> {
    // SAFETY: plain kill(2).
    cvt(unsafe { libc::kill(pid, signal) })
        .map(|_| ())
        .map_err(|e| os(&e))
}

/// Flushes every file system.
pub fn sync() {
    // SAFETY: sync(2) has no arguments.
    unsafe { libc::sync() };
}

/// Power actions.
#[derive(Debug, Clone, Copy)]
pub enum Power {
    /// Power off (or end the VM, see [`reboot_command`]).
    Off,
    /// Reboot.
    Reboot,
}

/// The reboot(2) command for `power`.
///
/// An x86_64 guest without ACPI has no way to power off: RB_POWER_OFF would return into
/// a PID 1 that the kernel then kills (a panic). There the agent reboots instead, and
/// the VMM (`-no-reboot`; kernel `reboot=t` on QEMU microvm, `reboot=k` where an i8042 exists) ends the VM on reboot, as Firecracker does.
pub fn reboot_command(power: Power) -> libc::c_int {
    match power {
        Power::Reboot => libc::RB_AUTOBOOT,
        Power::Off if cfg!(target_arch = "x86_64") && !Path::new("/sys/firmware/acpi").exists() => {
            libc::RB_AUTOBOOT
        }
        Power::Off => libc::RB_POWER_OFF,
    }
}

/// Syncs, then powers off or reboots. Not as PID 1 (tests, debugging) the agent exits
/// instead: only the guest's init may take the machine down.
pub fn power(power: Power, pid1: bool) -> io::Result<()> {
    sync();
    if !pid1 {
        eprintln!("supermachine-agent: {power:?} requested; not PID 1, exiting");
        std::process::exit(0);
    }
    // Give the reply a moment to leave through the virtio queue before the reset.
    std::thread::sleep(std::time::Duration::from_millis(20));
    // SAFETY: reboot(2) with a valid command; on success it does not return.
    cvt(unsafe { libc::reboot(reboot_command(power)) }).map(|_| ())
}
