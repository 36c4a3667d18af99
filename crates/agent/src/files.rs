//! Atomic file writes (stage_files, write_file, write_file_chunk) and chunked reads.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Mode of a written file when the request names none.
pub const DEFAULT_MODE: u32 = 0o644;

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A temp name beside `path` (same directory, so the rename is atomic).
fn sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{tag}"))
}

/// Writes `data` to a temp file beside `path`, sets `mode`, syncs, renames into place.
/// The parent directory must exist (it is not created, as in the published agent).
pub fn write_atomic(path: &Path, data: &[u8], mode: Option<u32>) -> io::Result<()> {
    let tmp = sibling(
        path,
        &format!(
            "sm-tmp-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ),
    );
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.set_permissions(fs::Permissions::from_mode(mode.unwrap_or(DEFAULT_MODE)))?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Keeps a token to file-name-safe characters.
fn token_tag(token: Option<&str>) -> String {
    let t: String = token
        .unwrap_or("none")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    format!("sm-upload-{t}")
}

/// One chunk of an upload: chunks land in a per-token temp file beside `path`; the last
/// one sets `mode` and renames it into place, so `path` never holds a partial file.
pub fn write_chunk(
    path: &Path,
    offset: u64,
    data: &[u8],
    last: bool,
    token: Option<&str>,
    mode: Option<u32>,
) -> Result<(), String> {
    let tmp = sibling(path, &token_tag(token));
    let io_err = |e: io::Error| format!("write_file_chunk({}): {e}", path.display());
    let mut f = if offset == 0 {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err)?
    } else {
        let f = match OpenOptions::new().write(true).open(&tmp) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(format!(
                    "write_file_chunk({}): no upload in progress for this token; send the chunk at offset 0 first",
                    path.display()
                ))
            }
            Err(e) => return Err(io_err(e)),
        };
        let have = f.metadata().map_err(io_err)?.len();
        if have != offset {
            return Err(format!(
                "write_file_chunk({}): chunk at offset {offset} but {have} bytes received so far; chunks must be sent in order",
                path.display()
            ));
        }
        f
    };
    let done = (|| {
        f.seek(SeekFrom::Start(offset))?;
        f.write_all(data)?;
        if last {
            f.set_permissions(fs::Permissions::from_mode(mode.unwrap_or(DEFAULT_MODE)))?;
            f.sync_all()?;
            fs::rename(&tmp, path)?;
        }
        Ok(())
    })();
    if let Err(e) = done {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(e));
    }
    Ok(())
}

/// Largest chunk returned by one read: its base64 (4/3 larger) plus the JSON around it
/// must fit a 16 MiB frame.
pub const MAX_READ_CHUNK: u64 = 12 << 20;

/// Reads up to `len` bytes at `offset`; returns the bytes and the file's total length.
pub fn read_chunk(
    path: &Path,
    offset: u64,
    len: u64,
    max_bytes: Option<u64>,
) -> Result<(Vec<u8>, u64), String> {
    let io_err = |e: io::Error| format!("read_file_chunk({}): {e}", path.display());
    let mut f = File::open(path).map_err(io_err)?;
    let meta = f.metadata().map_err(io_err)?;
    if meta.is_dir() {
        return Err(format!(
            "read_file_chunk({}): is a directory",
            path.display()
        ));
    }
    let total = meta.len();
    if let Some(max) = max_bytes {
        if total > max {
            return Err(format!(
                "read_file_chunk({}): file is {total} bytes, over max_bytes {max}",
                path.display()
            ));
        }
    }
    let want = len.min(MAX_READ_CHUNK).min(total.saturating_sub(offset));
    f.seek(SeekFrom::Start(offset)).map_err(io_err)?;
    let mut buf = Vec::new();
    f.take(want).read_to_end(&mut buf).map_err(io_err)?;
    Ok((buf, total))
}
