//! Writing a bundled blob to disk: atomically, so a reader (or a VMM started in parallel)
//! sees either the previous file or the complete new one, never a partial write.
//!
//! Two cases keep the published 0.7.70 crates' behaviour (`std::fs::write` in place),
//! because a user can see the difference: a symlink at the destination is followed (the
//! link stays and its target gets the bytes), and an existing file in a directory we may
//! not create files in (read-only, or owned by someone else) is overwritten in place.
//! Those two writes are not atomic. In place, a data file keeps its mode, as before.

use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Mode of data files (kernel images, modules).
pub(crate) const DATA: u32 = 0o644;
/// Mode of executables.
pub(crate) const EXECUTABLE: u32 = 0o755;

/// Distinguishes temporary files of concurrent extractions within one process.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `dest` through a temporary file in the same directory and a rename,
/// replacing any existing file. On Unix the file gets exactly `mode`, whatever the umask.
/// A symlink at `dest`, or an existing file in a directory that refuses the temporary
/// file, is written in place instead (see the module documentation).
pub(crate) fn write_atomic(dest: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let existing = fs::symlink_metadata(dest).ok();
    if existing.as_ref().is_some_and(|m| m.file_type().is_symlink()) {
        return write_in_place(dest, bytes, mode);
    }
    match write_renamed(dest, bytes, mode) {
        Err(e)
            if e.kind() == io::ErrorKind::PermissionDenied
                && existing.is_some_and(|m| m.is_file()) =>
        {
            write_in_place(dest, bytes, mode)
        }
        result => result,
    }
}

/// `std::fs::write`, then `mode` for executables, as the published crates do.
fn write_in_place(dest: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    fs::write(dest, bytes)?;
    if mode == EXECUTABLE {
        set_path_mode(dest, mode)?;
    }
    Ok(())
}

fn write_renamed(dest: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let name = dest.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: destination has no file name", dest.display()),
        )
    })?;
    let dir = match dest.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write_new(&tmp, bytes, mode).and_then(|()| fs::rename(&tmp, dest));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut file = fs::OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(bytes)?;
    set_mode(&file, mode)?;
    file.sync_all()
}

#[cfg(unix)]
fn set_mode(file: &fs::File, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_file: &fs::File, _mode: u32) -> io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn set_path_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_path_mode(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}

/// Creates the parent directory of `dest` (and its ancestors) if it is missing.
pub(crate) fn create_parent(dest: &Path) -> io::Result<()> {
    match dest.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => fs::create_dir_all(parent),
        _ => Ok(()),
    }
}
