//! Before the switch: the kernel's filesystems, then the image's disks stacked under a
//! tmpfs overlay at /newroot, which becomes `/`.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::disks::{self, Disk, Layout};
use crate::sys;

/// Where the assembled root is built in the initramfs.
const NEWROOT: &str = "/newroot";
/// The overlay's tmpfs (holds `upper/` and `work/`).
const OVERLAY: &str = "/ov";
/// How long to wait for the first virtio disk to show up.
const DISK_WAIT: Duration = Duration::from_secs(3);

const KERNEL_FS: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

/// proc, sys and devtmpfs, which init needs before anything else.
pub fn early_mounts() -> Result<(), String> {
    for (fstype, target, flags, option) in [
        ("proc", "/proc", KERNEL_FS, "CONFIG_PROC_FS"),
        ("sysfs", "/sys", KERNEL_FS, "CONFIG_SYSFS"),
        ("devtmpfs", "/dev", libc::MS_NOSUID, "CONFIG_DEVTMPFS"),
    ] {
        fs::create_dir_all(target).map_err(|e| format!("cannot create {target}: {e}"))?;
        match sys::mount(fstype, target, fstype, flags, None) {
            Ok(()) => {}
            // Already there (a kernel with DEVTMPFS_MOUNT mounts /dev itself).
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => {
                return Err(format!(
                    "cannot mount {fstype} on {target}: {e} (kernel without {option}?)"
                ))
            }
        }
    }
    Ok(())
}

/// The virtio disks in kernel order, each with its squashfs check.
pub fn scan_disks() -> Result<Vec<Disk>, String> {
    let deadline = Instant::now() + DISK_WAIT;
    loop {
        let mut names: Vec<String> = fs::read_dir("/sys/block")
            .map_err(|e| format!("cannot list /sys/block: {e}"))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| disks::is_virtio_disk(n))
            .collect();
        if names.is_empty() && Instant::now() < deadline {
            sleep(Duration::from_millis(50));
            continue;
        }
        disks::sort_names(&mut names);
        return Ok(names
            .into_iter()
            .map(|name| {
                let squashfs = is_squashfs(&format!("/dev/{name}"));
                Disk { name, squashfs }
            })
            .collect());
    }
}

fn is_squashfs(dev: &str) -> bool {
    let mut magic = [0u8; 4];
    fs::File::open(dev)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == disks::SQUASHFS_MAGIC
}

/// Mounts every layer and the delta read-only, stacks them under a tmpfs upper layer at
/// /newroot, moves the kernel filesystems in and makes it `/`.
pub fn assemble_and_switch(layout: &Layout) -> Result<(), String> {
    let mkdir = |p: &str| fs::create_dir_all(p).map_err(|e| format!("cannot create {p}: {e}"));
    let mut lowers = Vec::new();
    for (i, disk) in layout.layers.iter().chain([&layout.delta]).enumerate() {
        let dir = format!("/lower-{i}");
        mkdir(&dir)?;
        let dev = format!("/dev/{disk}");
        sys::mount(&dev, &dir, "squashfs", libc::MS_RDONLY, None).map_err(|e| {
            format!("cannot mount {dev} (layer {i}) read-only as squashfs: {e} (a damaged layer disk, or a kernel without CONFIG_SQUASHFS and its compressor)")
        })?;
        lowers.push(dir);
    }
    mkdir(OVERLAY)?;
    sys::mount("tmpfs", OVERLAY, "tmpfs", 0, Some("mode=0755")).map_err(|e| {
        format!("cannot mount the overlay's tmpfs on {OVERLAY}: {e} (kernel without CONFIG_TMPFS?)")
    })?;
    mkdir(&format!("{OVERLAY}/upper"))?;
    mkdir(&format!("{OVERLAY}/work"))?;
    mkdir(NEWROOT)?;
    // xino=on: the layers are squashfs images, all with a null uuid; from the second one
    // on, xino=auto falls back to off, and a directory's st_ino would then differ from its
    // readdir d_ino (CPython's test_os checks they agree).
    let options = format!(
        "lowerdir={},upperdir={OVERLAY}/upper,workdir={OVERLAY}/work,xino=on",
        disks::lowerdir(&lowers)
    );
    sys::mount("overlay", NEWROOT, "overlay", 0, Some(&options)).map_err(|e| {
        format!("cannot stack the layers at {NEWROOT}: {e} (kernel without CONFIG_OVERLAY_FS?)")
    })?;
    for dir in ["/proc", "/sys", "/dev"] {
        let inside = format!("{NEWROOT}{dir}");
        mkdir(&inside)?;
        sys::move_mount(Path::new(dir), Path::new(&inside))
            .map_err(|e| format!("cannot move {dir} into the container root: {e}"))?;
    }
    sys::switch_root(Path::new(NEWROOT))
        .map_err(|e| format!("cannot switch the root to {NEWROOT}: {e}"))
}

/// The mounts a container expects inside its root. Returns one warning per mount the
/// kernel cannot offer; none of them stops the boot.
pub fn container_mounts() -> Vec<String> {
    let mut warnings = Vec::new();
    for (source, target, fstype, flags, data, option) in [
        (
            "devpts",
            "/dev/pts",
            "devpts",
            libc::MS_NOSUID | libc::MS_NOEXEC,
            Some("gid=5,mode=0620,ptmxmode=0666"),
            "CONFIG_UNIX98_PTYS",
        ),
        (
            "shm",
            "/dev/shm",
            "tmpfs",
            libc::MS_NOSUID | libc::MS_NODEV,
            Some("mode=1777"),
            "CONFIG_TMPFS",
        ),
        (
            "cgroup2",
            "/sys/fs/cgroup",
            "cgroup2",
            KERNEL_FS,
            None,
            "CONFIG_CGROUPS",
        ),
        (
            "binfmt_misc",
            "/proc/sys/fs/binfmt_misc",
            "binfmt_misc",
            KERNEL_FS,
            None,
            "CONFIG_BINFMT_MISC",
        ),
    ] {
        let _ = fs::create_dir_all(target);
        if let Err(e) = sys::mount(source, target, fstype, flags, data) {
            warnings.push(format!(
                "no {fstype} on {target}: {e} (kernel without {option})"
            ));
        }
    }
    for (link, to) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        let _ = std::os::unix::fs::symlink(to, link);
    }
    for dir in ["/run", "/tmp"] {
        let _ = fs::create_dir_all(dir);
    }
    let _ = fs::set_permissions("/tmp", std::os::unix::fs::PermissionsExt::from_mode(0o1777));
    warnings
}
