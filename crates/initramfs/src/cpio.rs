//! A deterministic writer of newc ("070701") cpio archives, the format the kernel
//! unpacks as an initramfs.
//!
//! Determinism comes from the entries, not the file system: paths are sorted
//! byte-wise (a parent always sorts before its children), inode numbers count up in that
//! order, owners are 0:0, every mtime is the one given, and modes are normalised to
//! 0755 (directories, executables), 0644 (other files) and 0777 (symlinks).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// What one archive member is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A directory.
    Dir,
    /// A regular file with its contents; `executable` selects mode 0755 over 0644.
    File { data: Vec<u8>, executable: bool },
    /// A symbolic link to `target`.
    Symlink { target: String },
    /// A character device node (e.g. `/dev/console`, 5:1).
    CharDev { major: u32, minor: u32, mode: u32 },
}

/// One archive member; `path` is relative to the archive root, without a leading `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub body: Body,
}

/// Reads a staged directory tree into entries. Sockets, fifos and block devices are
/// refused: nothing in a guest initramfs needs them, and they would not be reproducible.
pub fn read_tree(root: &Path) -> io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    walk(root, PathBuf::new(), &mut entries)?;
    Ok(entries)
}

fn walk(root: &Path, rel: PathBuf, entries: &mut Vec<Entry>) -> io::Result<()> {
    let dir = root.join(&rel);
    for item in fs::read_dir(&dir)? {
        let item = item?;
        let rel_path = rel.join(item.file_name());
        let path_str = rel_path.to_str().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: file name is not UTF-8",
                    dir.join(item.file_name()).display()
                ),
            )
        })?;
        let meta = fs::symlink_metadata(item.path())?;
        let ft = meta.file_type();
        let body = if ft.is_dir() {
            Body::Dir
        } else if ft.is_file() {
            Body::File {
                data: fs::read(item.path())?,
                executable: meta.permissions().mode() & 0o111 != 0,
            }
        } else if ft.is_symlink() {
            let target = fs::read_link(item.path())?;
            let target = target.to_str().ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: symlink target is not UTF-8", item.path().display()),
                )
            })?;
            Body::Symlink {
                target: target.to_string(),
            }
        } else if ft.is_char_device() {
            let rdev = meta.rdev();
            Body::CharDev {
                major: ((rdev >> 8) & 0xfff) as u32,
                minor: ((rdev & 0xff) | ((rdev >> 12) & 0xfff00)) as u32,
                mode: meta.permissions().mode() & 0o7777,
            }
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: only directories, files, symlinks and character devices can go into an initramfs",
                    item.path().display()
                ),
            ));
        };
        entries.push(Entry {
            path: path_str.to_string(),
            body,
        });
        if ft.is_dir() {
            walk(root, rel_path, entries)?;
        }
    }
    Ok(())
}

/// Adds what the kernel needs before any init runs: `/dev` and `/dev/console`, so
/// init's stdio is the console from its first instruction.
pub fn add_console(entries: &mut Vec<Entry>) {
    if !entries.iter().any(|e| e.path == "dev") {
        entries.push(Entry {
            path: "dev".into(),
            body: Body::Dir,
        });
    }
    if !entries.iter().any(|e| e.path == "dev/console") {
        entries.push(Entry {
            path: "dev/console".into(),
            body: Body::CharDev {
                major: 5,
                minor: 1,
                mode: 0o600,
            },
        });
    }
}

/// Writes `entries` as a newc archive, sorted, ending with the `TRAILER!!!` record.
pub fn write_archive<W: Write>(out: &mut W, entries: &[Entry], mtime: u32) -> io::Result<()> {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    if let Some(pair) = sorted.windows(2).find(|w| w[0].path == w[1].path) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: appears twice in the archive", pair[0].path),
        ));
    }
    let mut written = 0u64;
    for (index, entry) in sorted.iter().enumerate() {
        let ino = (index + 1) as u32;
        let (mode, data, rdev): (u32, &[u8], (u32, u32)) = match &entry.body {
            Body::Dir => (S_IFDIR | 0o755, &[], (0, 0)),
            Body::File { data, executable } => (
                S_IFREG | if *executable { 0o755 } else { 0o644 },
                data,
                (0, 0),
            ),
            Body::Symlink { target } => (S_IFLNK | 0o777, target.as_bytes(), (0, 0)),
            Body::CharDev { major, minor, mode } => (S_IFCHR | mode, &[], (*major, *minor)),
        };
        let nlink = if matches!(entry.body, Body::Dir) {
            2
        } else {
            1
        };
        written += write_record(out, ino, mode, nlink, mtime, rdev, &entry.path, data)?;
    }
    written += write_record(out, 0, 0, 1, 0, (0, 0), "TRAILER!!!", &[])?;
    // Pad to 512 bytes, as cpio(1) does; the kernel ignores the zeros.
    let tail = (512 - written % 512) % 512;
    out.write_all(&vec![0u8; tail as usize])
}

#[allow(clippy::too_many_arguments)]
fn write_record<W: Write>(
    out: &mut W,
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    rdev: (u32, u32),
    name: &str,
    data: &[u8],
) -> io::Result<u64> {
    let size = u32::try_from(data.len()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name}: larger than the 4 GiB a newc record can hold"),
        )
    })?;
    let namesize = name.len() as u32 + 1;
    let header = format!(
        "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{mtime:08x}{size:08x}{:08x}{:08x}{:08x}{:08x}{namesize:08x}{:08x}",
        0, 0, 0, 0, rdev.0, rdev.1, 0
    );
    out.write_all(header.as_bytes())?;
    out.write_all(name.as_bytes())?;
    out.write_all(&[0])?;
    let head_len = 110 + namesize as u64;
    let pad1 = pad4(head_len);
    out.write_all(&[0; 3][..pad1])?;
    out.write_all(data)?;
    let pad2 = pad4(data.len() as u64);
    out.write_all(&[0; 3][..pad2])?;
    Ok(head_len + pad1 as u64 + data.len() as u64 + pad2 as u64)
}

fn pad4(n: u64) -> usize {
    ((4 - n % 4) % 4) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, data: &[u8], executable: bool) -> Entry {
        Entry {
            path: path.into(),
            body: Body::File {
                data: data.to_vec(),
                executable,
            },
        }
    }

    /// Parses an archive back into (name, mode, mtime, data) records.
    fn parse(mut bytes: &[u8]) -> Vec<(String, u32, u32, Vec<u8>)> {
        let field = |h: &[u8], i: usize| {
            u32::from_str_radix(std::str::from_utf8(&h[6 + i * 8..14 + i * 8]).unwrap(), 16)
                .unwrap()
        };
        let mut out = Vec::new();
        loop {
            assert_eq!(&bytes[..6], b"070701");
            let (mode, mtime, size, namesize) = (
                field(bytes, 1),
                field(bytes, 5),
                field(bytes, 6),
                field(bytes, 11),
            );
            let name = std::str::from_utf8(&bytes[110..110 + namesize as usize - 1])
                .unwrap()
                .to_string();
            let data_start = 110 + namesize as usize + pad4(110 + namesize as u64);
            let data = bytes[data_start..data_start + size as usize].to_vec();
            let next = data_start + size as usize + pad4(size as u64);
            if name == "TRAILER!!!" {
                assert!(bytes[next..].iter().all(|b| *b == 0));
                return out;
            }
            out.push((name, mode, mtime, data));
            bytes = &bytes[next..];
        }
    }

    #[test]
    fn sorted_normalised_and_parseable() {
        let mut entries = vec![
            file("bin/busybox", b"\x7fELF...", true),
            Entry {
                path: "bin".into(),
                body: Body::Dir,
            },
            file("init", b"#!/bin/busybox sh\n", true),
            file("etc-note", b"x", false),
            Entry {
                path: "bin/sh".into(),
                body: Body::Symlink {
                    target: "busybox".into(),
                },
            },
        ];
        add_console(&mut entries);
        let mut buf = Vec::new();
        write_archive(&mut buf, &entries, 1_700_000_000).unwrap();
        assert_eq!(buf.len() % 512, 0);
        let records = parse(&buf);
        let names: Vec<&str> = records.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/busybox",
                "bin/sh",
                "dev",
                "dev/console",
                "etc-note",
                "init"
            ]
        );
        let modes: Vec<u32> = records.iter().map(|r| r.1).collect();
        assert_eq!(
            modes,
            [0o40755, 0o100755, 0o120777, 0o40755, 0o20600, 0o100644, 0o100755]
        );
        assert!(records.iter().all(|r| r.2 == 1_700_000_000));
        assert_eq!(records[2].3, b"busybox");
    }

    #[test]
    fn order_of_input_does_not_matter() {
        let a = vec![file("a", b"1", false), file("b/c", b"2", true)];
        let b: Vec<Entry> = a.iter().rev().cloned().collect();
        let (mut x, mut y) = (Vec::new(), Vec::new());
        write_archive(&mut x, &a, 7).unwrap();
        write_archive(&mut y, &b, 7).unwrap();
        assert_eq!(x, y);
    }

    #[test]
    fn duplicate_paths_are_refused() {
        let entries = vec![file("init", b"1", true), file("init", b"2", true)];
        let err = write_archive(&mut Vec::new(), &entries, 0).unwrap_err();
        assert!(err.to_string().contains("init: appears twice"));
    }

    #[test]
    fn reads_a_staged_tree_with_modes_and_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("bin")).unwrap();
        fs::write(dir.path().join("bin/tool"), b"tool").unwrap();
        fs::set_permissions(
            dir.path().join("bin/tool"),
            fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        std::os::unix::fs::symlink("tool", dir.path().join("bin/alias")).unwrap();
        let mut entries = read_tree(dir.path()).unwrap();
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(entries.len(), 3);
        assert_eq!(
            entries[2].body,
            Body::File {
                data: b"tool".to_vec(),
                executable: true
            }
        );
        assert_eq!(
            entries[1].body,
            Body::Symlink {
                target: "tool".into()
            }
        );
    }
}
