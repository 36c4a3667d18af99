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

/// liblzma's `LZMA_PRESET_EXTREME` flag (the liblzma crate does not export it).
const PRESET_EXTREME: u32 = 1 << 31;

/// The filter chain of an xz stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XzFilters {
    /// LZMA2 alone: for data that is not machine code, or is already compressed.
    Lzma2,
    /// The x86 BCJ filter, then LZMA2: for x86_64 executables. BCJ turns the relative
    /// targets of `call`/`jmp` into absolute ones, so repeated calls of one function
    /// become repeated bytes LZMA2 finds (about 5% off busybox).
    X86Lzma2,
    /// The ARM64 BCJ filter (`BL` and `ADRP` targets made absolute), then LZMA2: for arm64
    /// executables and the arm64 kernel `Image` (about 6% off it).
    Arm64Lzma2,
}

/// Compresses with `filters` at LZMA2 preset 9 extreme, CRC64 check, single-threaded:
/// the stream then depends only on the input and the (pinned, bundled) liblzma, and the
/// generated crate's pure-Rust decoder (xz4rust, which has the BCJ filters) reads it.
pub fn xz(data: &[u8], filters: XzFilters) -> io::Result<Vec<u8>> {
    let options =
        liblzma::stream::LzmaOptions::new_preset(9 | PRESET_EXTREME).map_err(io::Error::other)?;
    let mut chain = liblzma::stream::Filters::new();
    match filters {
        XzFilters::Lzma2 => {}
        XzFilters::X86Lzma2 => {
            chain.x86();
        }
        XzFilters::Arm64Lzma2 => {
            chain.arm64();
        }
    }
    chain.lzma2(&options);
    let stream = liblzma::stream::Stream::new_stream_encoder(&chain, liblzma::stream::Check::Crc64)
        .map_err(io::Error::other)?;
    let mut encoder = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
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

    /// Decodes as the generated crates' build script does (files/crates/shared/build.rs.in).
    fn unxz(compressed: &[u8]) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        xz4rust::XzReader::new(io::Cursor::new(compressed.to_vec())).read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// Up to `max` bytes of the first executable segment of this test's own ELF: real
    /// machine code of the host's arch.
    fn own_code(max: usize) -> Vec<u8> {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(
            &exe[..5],
            b"\x7fELF\x02",
            "the test binary is not a 64-bit ELF"
        );
        let u16_at = |o: usize| u16::from_le_bytes(exe[o..o + 2].try_into().unwrap()) as usize;
        let u32_at = |o: usize| u32::from_le_bytes(exe[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(exe[o..o + 8].try_into().unwrap()) as usize;
        let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
        (0..phnum)
            .map(|i| phoff + i * phentsize)
            .find(|&ph| {
                let (p_type, p_flags) = (u32_at(ph), u32_at(ph + 4));
                p_type == 1 && p_flags & 1 != 0 // PT_LOAD, PF_X
            })
            .map(|ph| {
                let (offset, size) = (u64_at(ph + 8), u64_at(ph + 0x20));
                exe[offset..offset + size.min(max)].to_vec()
            })
            .expect("the test binary has no executable segment")
    }

    #[test]
    fn xz_is_deterministic_and_round_trips() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for filters in [XzFilters::Lzma2, XzFilters::X86Lzma2, XzFilters::Arm64Lzma2] {
            let a = xz(&data, filters).unwrap();
            assert_eq!(a, xz(&data, filters).unwrap(), "{filters:?}");
            assert_eq!(unxz(&a).unwrap(), data, "{filters:?}");
            // liblzma's own decoder agrees.
            let mut back = Vec::new();
            liblzma::read::XzDecoder::new(a.as_slice())
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "{filters:?}");
        }
    }

    #[test]
    fn bcj_round_trips_real_code_through_the_build_script_decoder() {
        let code = own_code(1 << 20);
        assert!(code.len() > 100_000, "only {} bytes of code", code.len());
        let plain = xz(&code, XzFilters::Lzma2).unwrap();
        for filters in [XzFilters::X86Lzma2, XzFilters::Arm64Lzma2] {
            let bcj = xz(&code, filters).unwrap();
            assert_ne!(plain, bcj, "{filters:?} changed nothing");
            assert_eq!(unxz(&bcj).unwrap(), code, "{filters:?}");
        }
        // On the code of its own arch the filter must pay: that is the reason to use it.
        let own = if cfg!(target_arch = "x86_64") {
            XzFilters::X86Lzma2
        } else if cfg!(target_arch = "aarch64") {
            XzFilters::Arm64Lzma2
        } else {
            panic!("no BCJ filter is used for this arch's code: run on x86_64 or aarch64");
        };
        let bcj = xz(&code, own).unwrap();
        assert!(
            bcj.len() < plain.len(),
            "{own:?} made this arch's code bigger: {} bytes, {} without",
            bcj.len(),
            plain.len()
        );
    }

    #[test]
    fn corrupt_or_truncated_bcj_stream_is_an_error() {
        let code = own_code(64 << 10);
        let good = xz(&code, XzFilters::X86Lzma2).unwrap();
        let mut flipped = good.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0xff;
        let truncated = &good[..good.len() - 20];
        for (what, bad) in [("flipped", &flipped[..]), ("truncated", truncated)] {
            let err = unxz(bad).expect_err(what);
            assert!(
                matches!(
                    err.kind(),
                    io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
                ),
                "{what}: {err:?}"
            );
        }
    }
}
