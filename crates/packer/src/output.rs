//! Writing the output directory: everything is staged in a temporary directory inside it
//! and renamed into place only when complete, so a failure leaves nothing new behind.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use crate::error::{Error, Result};

/// A file of the output: path relative to the output directory, bytes, mode.
#[derive(Debug, Clone)]
pub struct OutFile {
    /// Relative path, `/`-separated.
    pub path: String,
    /// Contents.
    pub data: Vec<u8>,
    /// Unix mode.
    pub mode: u32,
}

/// Writes `files` into `out`. `tops` lists the top-level names written, in the order they
/// are moved into place; `stale` lists top-level names to remove once that succeeded
/// (outputs of an earlier run that this run no longer produces).
pub fn commit(
    out: &Path,
    files: &[OutFile],
    tops: &[String],
    stale: &[String],
    mtime: u64,
) -> Result<()> {
    let created_out = !out.exists();
    fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let stage = out.join(format!(".supermachine-packer.{}.tmp", std::process::id()));
    let result =
        stage_files(&stage, files, mtime).and_then(|()| move_into_place(&stage, out, tops));
    let _ = fs::remove_dir_all(&stage);
    if result.is_err() && created_out {
        let _ = fs::remove_dir_all(out);
    }
    result?;
    for name in stale {
        let path = out.join(name);
        remove(&path)?;
    }
    Ok(())
}

fn stage_files(stage: &Path, files: &[OutFile], mtime: u64) -> Result<()> {
    fs::create_dir(stage).map_err(|e| Error::io(stage, e))?;
    for f in files {
        let path = stage.join(&f.path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        write_file(&path, &f.data, f.mode, mtime).map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}

fn write_file(path: &Path, data: &[u8], mode: u32, mtime: u64) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut file = File::create(path)?;
    file.write_all(data)?;
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    // The unpacked trees should look like the archives, time stamps included.
    file.set_modified(UNIX_EPOCH + Duration::from_secs(mtime))?;
    file.sync_all()
}

fn move_into_place(stage: &Path, out: &Path, tops: &[String]) -> Result<()> {
    for name in tops {
        let (from, to): (PathBuf, PathBuf) = (stage.join(name), out.join(name));
        remove(&to)?;
        fs::rename(&from, &to).map_err(|e| Error::io(&to, e))?;
    }
    Ok(())
}

fn remove(path: &Path) -> Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(_) => Ok(()),
    };
    result.map_err(|e| Error::io(path, e))
}
