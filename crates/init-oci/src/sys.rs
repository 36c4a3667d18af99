//! The system calls init needs that std does not offer: mount, reboot, console fds.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::plan::MountFlags;

fn c_string(text: &str) -> io::Result<CString> {
    CString::new(text)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in a path or option"))
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in a path"))
}

fn check(status: libc::c_int) -> io::Result<()> {
    if status == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `mount(2)` with the given type, flags and filesystem options.
pub fn mount(
    source: &str,
    target: &str,
    fstype: &str,
    flags: MountFlags,
    data: Option<&str>,
) -> io::Result<()> {
    let source = c_string(source)?;
    let target = c_string(target)?;
    let fstype = c_string(fstype)?;
    let data = data.map(c_string).transpose()?;
    let mut bits: libc::c_ulong = 0;
    for (on, bit) in [
        (flags.read_only, libc::MS_RDONLY),
        (flags.no_suid, libc::MS_NOSUID),
        (flags.no_dev, libc::MS_NODEV),
        (flags.no_exec, libc::MS_NOEXEC),
    ] {
        if on {
            bits |= bit;
        }
    }
    let data_ptr = data
        .as_ref()
        .map_or(std::ptr::null(), |d| d.as_ptr().cast());
    // SAFETY: every pointer is a NUL-terminated string that outlives the call, or null
    // where mount(2) allows it.
    check(unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            bits,
            data_ptr,
        )
    })
}

/// `mount --move FROM TO`.
pub fn move_mount(from: &Path, to: &Path) -> io::Result<()> {
    let from = c_path(from)?;
    let to = c_path(to)?;
    // SAFETY: both are NUL-terminated strings that outlive the call; MS_MOVE ignores
    // the type and data arguments.
    check(unsafe {
        libc::mount(
            from.as_ptr(),
            to.as_ptr(),
            std::ptr::null(),
            libc::MS_MOVE,
            std::ptr::null(),
        )
    })
}

/// Makes `new_root` the root directory, the way busybox `switch_root` does.
///
/// The initramfs is rootfs and cannot be `pivot_root`ed away, so the new root is moved
/// on top of `/` and entered with chroot. The initramfs stays underneath, unreachable.
pub fn switch_root(new_root: &Path) -> io::Result<()> {
    std::env::set_current_dir(new_root)?;
    move_mount(Path::new("."), Path::new("/"))?;
    std::os::unix::fs::chroot(".")?;
    std::env::set_current_dir("/")
}

/// Flushes the disks and turns the VM off (PSCI SYSTEM_OFF on aarch64).
///
/// Falls back to a reboot, which ends a VM started with `-no-reboot` or `reboot=k`.
/// Returns only when neither works, i.e. when not running as PID 1 with CAP_SYS_BOOT.
pub fn power_off() {
    // SAFETY: sync and reboot take no pointers; reboot only returns on failure.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
        libc::reboot(libc::RB_AUTOBOOT);
    }
}

/// The process id, to tell a boot (PID 1) from a run by hand.
pub fn is_pid_one() -> bool {
    std::process::id() == 1
}

/// Points stdin, stdout and stderr at `/dev/console` when the kernel could not.
///
/// The kernel opens the console for init only if the initramfs has `/dev/console`;
/// once devtmpfs is mounted the node exists, so messages still reach the user.
pub fn attach_console_if_missing() {
    let Ok(console) = c_string("/dev/console") else {
        return;
    };
    for fd in 0..=2 {
        // SAFETY: F_GETFD only inspects the descriptor table.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1 {
            continue;
        }
        // SAFETY: console is NUL-terminated; open returns the lowest free descriptor,
        // which is this one or lower, and dup2 onto a free slot is harmless.
        unsafe {
            let opened = libc::open(console.as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
            if opened >= 0 && opened != fd {
                libc::dup2(opened, fd);
                libc::close(opened);
            }
        }
    }
}
