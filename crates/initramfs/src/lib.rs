//! Tools for the guest initramfs, shared by the host build and the Yocto recipes:
//! rendering `/init` from its template ([`init_template`]) and writing deterministic
//! newc cpio archives ([`cpio`]), gzip-compressed without a name or a time stamp.

pub mod cpio;
pub mod init_template;

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Writes `bytes` to `dest` through a temporary file in the same directory, so `dest`
/// is either the old file or the complete new one.
pub fn write_atomic(dest: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = dest.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "output path has no file name")
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        fs::rename(&tmp, dest)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Gzip at the best level with no file name and a zero time stamp, so equal input
/// gives equal bytes.
pub fn gzip(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    encoder.write_all(data)?;
    encoder.finish()
}

/// Packs the staged tree `root` (plus `/dev/console`) into a gzip'd newc archive at `dest`.
pub fn pack_tree(root: &Path, dest: &Path, mtime: u32) -> io::Result<()> {
    let mut entries = cpio::read_tree(root)
        .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", root.display())))?;
    cpio::add_console(&mut entries);
    let mut archive = Vec::new();
    cpio::write_archive(&mut archive, &entries, mtime)?;
    write_atomic(dest, &gzip(&archive)?, 0o644)
}
