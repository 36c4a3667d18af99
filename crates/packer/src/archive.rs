//! Deterministic `.crate` archives and xz blobs: equal input gives equal bytes whatever
//! the machine, user or clock.

use std::io::{self, Write};

/// A file of a crate: path below the crate root (with `/`), contents, Unix mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path below the crate root, `/`-separated.
    pub path: String,
    /// The file's bytes.
    pub data: Vec<u8>,
    /// Unix permission bits.
    pub mode: u32,
}

/// Writes a `.crate`: a gzip'd tar of `<root>/<path>` for every entry, sorted by path,
/// owned by 0:0 with no user or group name, mtime `mtime`, gzip header without name or
/// time. Only regular files are stored, as `cargo package` does.
pub fn crate_file(root: &str, entries: &[Entry], mtime: u64) -> io::Result<Vec<u8>> {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut tar = tar::Builder::new(Vec::new());
    for entry in sorted {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(entry.data.len() as u64);
        header.set_mode(entry.mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(mtime);
        tar.append_data(
            &mut header,
            format!("{root}/{}", entry.path),
            entry.data.as_slice(),
        )?;
    }
    let tar = tar.into_inner()?;
    gzip(&tar)
}

/// Gzip at the best level, with no file name and a zero time stamp.
pub fn gzip(data: &[u8]) -> io::Result<Vec<u8>> {
    // GzBuilder writes mtime 0 and no name unless told otherwise; say so for the reader.
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), flate2::Compression::best());
    encoder.write_all(data)?;
    encoder.finish()
}

/// liblzma's `LZMA_PRESET_EXTREME` flag (xz2 does not export it).
const PRESET_EXTREME: u32 = 1 << 31;

/// Compresses with xz preset 9 extreme, CRC64 check, single-threaded: the stream then
/// depends only on the input and the (pinned, bundled) liblzma, and the generated crate's
/// pure-Rust decoder (lzma-rs) reads it.
pub fn xz(data: &[u8]) -> io::Result<Vec<u8>> {
    let stream =
        xz2::stream::Stream::new_easy_encoder(9 | PRESET_EXTREME, xz2::stream::Check::Crc64)
            .map_err(io::Error::other)?;
    let mut encoder = xz2::write::XzEncoder::new_stream(Vec::new(), stream);
    encoder.write_all(data)?;
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn crate_entries_are_sorted_and_normalised() {
        let entries = vec![
            Entry {
                path: "src/lib.rs".into(),
                data: b"//! x\n".to_vec(),
                mode: 0o644,
            },
            Entry {
                path: "Cargo.toml".into(),
                data: b"[package]\n".to_vec(),
                mode: 0o644,
            },
        ];
        let bytes = crate_file("c-1.0.0", &entries, 1_700_000_000).unwrap();
        assert_eq!(
            bytes,
            crate_file("c-1.0.0", &entries, 1_700_000_000).unwrap()
        );
        // gzip header: magic, method, no flags (no name), mtime 0.
        assert_eq!(&bytes[..8], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .read_to_end(&mut tar)
            .unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let got: Vec<_> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.uid().unwrap(),
                    h.mtime().unwrap(),
                    h.mode().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("c-1.0.0/Cargo.toml".to_owned(), 0, 1_700_000_000, 0o644),
                ("c-1.0.0/src/lib.rs".to_owned(), 0, 1_700_000_000, 0o644),
            ]
        );
    }

    #[test]
    fn xz_is_deterministic_and_round_trips() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let a = xz(&data).unwrap();
        assert_eq!(a, xz(&data).unwrap());
        let mut back = Vec::new();
        xz2::read::XzDecoder::new(a.as_slice())
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }
}
