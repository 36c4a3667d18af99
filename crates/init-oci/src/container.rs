//! After the switch: host name, network files, shares and volumes, from the delta files
//! and the command line. Problems here are reported and skipped; the workload still runs.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::cmdline::BootArgs;
use crate::console;
use crate::delta;
use crate::net;
use crate::sys;

/// Reads a delta file that may be absent (`Ok(None)`).
pub fn read_optional(path: &'static str) -> Result<Option<String>, delta::DeltaError> {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| delta::DeltaError {
                file: path,
                problem: "not UTF-8 text".into(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(delta::DeltaError {
            file: path,
            problem: format!("unreadable: {e}"),
        }),
    }
}

/// Writes a file through a temporary name and a rename, so it is never seen half done.
pub fn write_atomic(path: &str, text: &str) -> std::io::Result<()> {
    let tmp = format!("{path}.init-oci.tmp");
    let mut file = fs::File::create(&tmp)?;
    file.write_all(text.as_bytes())?;
    drop(file);
    fs::rename(&tmp, path)
}

/// Sets the host name from `/.supermachine-hostname`; returns it for /etc/hosts.
pub fn hostname() -> Option<String> {
    let name = match read_optional(delta::HOSTNAME)
        .and_then(|t| t.map(|t| delta::parse_hostname(&t)).transpose())
    {
        Ok(name) => name?,
        Err(e) => {
            console::error(&e.to_string());
            return None;
        }
    };
    if let Err(e) = sys::set_hostname(&name) {
        console::warn(&format!("cannot set the host name {name:?}: {e}"));
    }
    Some(name)
}

/// Loopback, the guest address and the resolver files.
pub fn network(args: &BootArgs, hostname: Option<&str>) {
    if let Err(e) = sys::loopback_up() {
        console::warn(&format!("cannot bring lo up: {e}"));
    }
    match sys::add_loopback_alias(net::GUEST_ADDR, net::GUEST_PREFIX) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
            console::say("no IPv4 in this kernel (CONFIG_INET): 198.18.0.1/30 not configured")
        }
        Err(e) => console::warn(&format!("cannot add 198.18.0.1/30 on lo: {e}")),
    }
    // Only present with CONFIG_INET / CONFIG_IPV6; absent files mean nothing to set.
    let _ = fs::write("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0");
    if args.host_ipv6 == Some(false) {
        let _ = fs::write("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
    }
    let _ = fs::create_dir_all("/etc");
    let existing = fs::read_to_string("/etc/hosts").unwrap_or_default();
    let mut files = vec![
        ("/etc/resolv.conf", net::resolv_conf(args.host_ipv6)),
        ("/etc/hosts", net::hosts(&existing, hostname)),
    ];
    if let Some(gai) = net::gai_conf(args.host_ipv6) {
        files.push(("/etc/gai.conf", gai));
    }
    for (path, text) in files {
        // A symlink (e.g. to a resolver daemon's file) is replaced, as container runtimes do.
        let _ = fs::remove_file(path);
        if let Err(e) = write_atomic(path, &text) {
            console::warn(&format!("cannot write {path}: {e}"));
        }
    }
}

/// virtio-fs shares first, then the ext4 volumes (which may sit inside a share).
pub fn shares_and_volumes(volume_disks: &[String]) {
    let binds = read_optional(delta::VIRTIOFS_BINDS)
        .and_then(|t| t.map(|t| delta::parse_binds(&t)).transpose())
        .unwrap_or_else(|e| {
            console::error(&e.to_string());
            None
        })
        .unwrap_or_default();
    for bind in binds {
        let _ = fs::create_dir_all(&bind.path);
        let dax = sys::mount(&bind.tag, &bind.path, "virtiofs", 0, Some("dax"));
        if let Err(e) = dax.or_else(|_| sys::mount(&bind.tag, &bind.path, "virtiofs", 0, None)) {
            console::error(&format!(
                "cannot mount virtio-fs share {:?} on {}: {e} (no such share attached, or a kernel without CONFIG_VIRTIO_FS)",
                bind.tag, bind.path
            ));
        }
    }
    let volumes = read_optional(delta::VOLUMES)
        .and_then(|t| t.map(|t| delta::parse_volumes(&t)).transpose())
        .unwrap_or_else(|e| {
            console::error(&e.to_string());
            None
        })
        .unwrap_or_default();
    for (i, path) in volumes.iter().enumerate() {
        let Some(disk) = volume_disks.get(i) else {
            console::error(&format!(
                "volume {path} has no disk: {} volumes listed in {} but {} disks after the delta",
                volumes.len(),
                delta::VOLUMES,
                volume_disks.len()
            ));
            continue;
        };
        let _ = fs::create_dir_all(path);
        let dev = format!("/dev/{disk}");
        if let Err(e) = sys::mount(&dev, path, "ext4", 0, None) {
            console::error(&format!(
                "cannot mount volume {dev} on {path} as ext4: {e} (format it with mkfs.ext4)"
            ));
        }
    }
}

/// True when `path` is an executable regular file.
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
