//! The system calls init needs that std does not offer.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::cmdline::HostTime;
use crate::console::{has_token, Resume};

fn c_str(text: &str) -> io::Result<CString> {
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

/// `mount(2)`.
pub fn mount(
    source: &str,
    target: &str,
    fstype: &str,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let (source, target, fstype) = (c_str(source)?, c_str(target)?, c_str(fstype)?);
    let data = data.map(c_str).transpose()?;
    let data_ptr = data
        .as_ref()
        .map_or(std::ptr::null(), |d| d.as_ptr().cast());
    // SAFETY: NUL-terminated strings that outlive the call, or null where allowed.
    check(unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data_ptr,
        )
    })
}

/// `mount --move FROM TO`.
pub fn move_mount(from: &Path, to: &Path) -> io::Result<()> {
    let (from, to) = (c_path(from)?, c_path(to)?);
    // SAFETY: NUL-terminated strings that outlive the call; MS_MOVE ignores the rest.
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

/// Makes `new_root` the root: the initramfs is rootfs, which cannot be pivoted away,
/// so the new root is moved onto `/` and entered with chroot (what switch_root does).
pub fn switch_root(new_root: &Path) -> io::Result<()> {
    std::env::set_current_dir(new_root)?;
    move_mount(Path::new("."), Path::new("/"))?;
    std::os::unix::fs::chroot(".")?;
    std::env::set_current_dir("/")
}

/// Flushes the disks and turns the VM off; falls back to a reboot (which ends a VM run
/// with `reboot=t`/`-no-reboot`). Returns only without CAP_SYS_BOOT.
pub fn power_off() {
    // SAFETY: no pointers; reboot returns only on failure.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
        libc::reboot(libc::RB_AUTOBOOT);
    }
}

pub fn is_pid_one() -> bool {
    std::process::id() == 1
}

/// Points fds 0-2 at `/dev/console` when the kernel could not (the VMM's initramfs has
/// no `/dev/console` node, so init starts with no descriptors until devtmpfs is up).
pub fn attach_console_if_missing() {
    let Ok(console) = c_str("/dev/console") else {
        return;
    };
    for fd in 0..=2 {
        // SAFETY: F_GETFD only inspects the descriptor table.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1 {
            continue;
        }
        // SAFETY: console is NUL-terminated; open takes the lowest free slot.
        unsafe {
            let opened = libc::open(console.as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
            if opened >= 0 && opened != fd {
                libc::dup2(opened, fd);
                libc::close(opened);
            }
        }
    }
}

/// `clock_settime(CLOCK_REALTIME)`.
pub fn set_clock(time: HostTime) -> io::Result<()> {
    let ts = libc::timespec {
        tv_sec: time.secs as _,
        tv_nsec: time.nanos as libc::c_long,
    };
    // SAFETY: ts is a valid timespec on the stack.
    check(unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) })
}

pub fn set_hostname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe name's bytes.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })
}

/// Loads a kernel module from a file (`finit_module(2)`).
pub fn load_module(path: &Path) -> io::Result<()> {
    let file = File::open(path)?;
    let params = c_str("")?;
    use std::os::fd::AsRawFd;
    // SAFETY: a valid fd and a NUL-terminated parameter string.
    let rc = unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A connected AF_VSOCK stream, read as a file.
pub struct VsockStream(File);

impl VsockStream {
    pub fn connect(cid: u32, port: u32, timeout: Duration) -> io::Result<VsockStream> {
        // SAFETY: plain socket(2); the fd is owned right away.
        let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh socket nobody else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as _,
            tv_usec: 0,
        };
        // SO_VM_SOCKETS_CONNECT_TIMEOUT (6, the 64-bit-time_t variant on 64-bit): how long
        // connect waits for the host's answer; SO_RCVTIMEO bounds each read.
        for (level, name) in [(libc::AF_VSOCK, 6), (libc::SOL_SOCKET, libc::SO_RCVTIMEO)] {
            // SAFETY: tv is a valid timeval for the given length.
            unsafe {
                libc::setsockopt(
                    fd,
                    level,
                    name,
                    (&tv as *const libc::timeval).cast(),
                    std::mem::size_of::<libc::timeval>() as libc::socklen_t,
                );
            }
        }
        // SAFETY: zeroed sockaddr_vm is valid; fields set below.
        let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
        addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
        addr.svm_cid = cid;
        addr.svm_port = port;
        // SAFETY: addr is a sockaddr_vm of the given size.
        check(unsafe {
            libc::connect(
                fd,
                (&addr as *const libc::sockaddr_vm).cast(),
                std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
            )
        })?;
        Ok(VsockStream(File::from(owned)))
    }
}

impl io::Read for VsockStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

/// Reads the console (fd 0) until a line starting with `token` arrives, up to `limit`.
/// Echo is turned off first so the host's token does not show up in the log.
pub fn wait_console_token(token: u8, limit: Duration) -> Resume {
    // SAFETY: termios calls on fd 0 with a zeroed struct they fill in.
    unsafe {
        let mut tio: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(0, &mut tio) == 0 {
            tio.c_lflag &= !(libc::ECHO | libc::ECHONL);
            libc::tcsetattr(0, libc::TCSANOW, &tio);
        }
    }
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Resume::TimedOut;
        }
        let mut pfd = libc::pollfd {
            fd: 0,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut pfd, 1, ms) };
        if ready < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Resume::NoInput(err.to_string());
        }
        if ready == 0 {
            continue;
        }
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
        match n {
            0 => return Resume::NoInput("end of input".into()),
            n if n < 0 => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Resume::NoInput(err.to_string());
                }
            }
            n => {
                if has_token(&buf[..n as usize], token) {
                    return Resume::Token;
                }
            }
        }
    }
}

fn ifreq_named(name: &str) -> libc::ifreq {
    // SAFETY: an all-zero ifreq is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req
        .ifr_name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *dst = src as libc::c_char;
    }
    req
}

fn socket(family: libc::c_int, kind: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); owned right away.
    let fd = unsafe { libc::socket(family, kind | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Brings `lo` up. Interface ioctls work on any socket family, so this takes netlink
/// (always built with CONFIG_NET) and needs neither IPv4 nor Unix sockets.
pub fn loopback_up() -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let sock = socket(libc::AF_NETLINK, libc::SOCK_RAW)
        .or_else(|_| socket(libc::AF_UNIX, libc::SOCK_DGRAM))?;
    let mut req = ifreq_named("lo");
    // SAFETY: req is a valid ifreq for these ioctls.
    unsafe {
        check(libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCGIFFLAGS as _,
            &mut req,
        ))?;
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        check(libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req))
    }
}

/// Adds `addr/prefix` to `lo` as the alias `lo:0` (needs CONFIG_INET).
pub fn add_loopback_alias(addr: [u8; 4], prefix: u8) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let sock = socket(libc::AF_INET, libc::SOCK_DGRAM)?;
    let set = |cmd: libc::c_ulong, ip: [u8; 4]| -> io::Result<()> {
        let mut req = ifreq_named("lo:0");
        // SAFETY: sockaddr_in fits in the ifreq union; the ioctl reads it.
        unsafe {
            let sin = &mut req.ifr_ifru.ifru_addr as *mut libc::sockaddr as *mut libc::sockaddr_in;
            (*sin).sin_family = libc::AF_INET as libc::sa_family_t;
            (*sin).sin_addr.s_addr = u32::from_ne_bytes(ip);
            check(libc::ioctl(sock.as_raw_fd(), cmd as _, &req))
        }
    };
    set(libc::SIOCSIFADDR, addr)?;
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    set(libc::SIOCSIFNETMASK, mask.to_be_bytes())
}

/// `waitpid(-1)`: the next child to end, as (pid, exit code with signals as 128+N).
/// `None` when there are no children at all.
pub fn wait_any(block: bool) -> Option<(i32, i32)> {
    let mut status = 0;
    let flags = if block { 0 } else { libc::WNOHANG };
    loop {
        // SAFETY: status is a valid out pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, flags) };
        if pid < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return None;
        }
        if pid == 0 {
            return Some((0, 0));
        }
        return Some((pid, exit_code(status)));
    }
}

/// A wait status as a shell exit code.
pub fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}
