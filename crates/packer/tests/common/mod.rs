//! Synthetic but valid inputs for the packer: minimal ELF files, a bzImage boot header, an
//! arm64 Image header and kernel configs, laid out as the host build writes them. The
//! tests need no kernel build.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use supermachine_packer::Options;

pub const RELEASE: &str = "6.12.117";
pub const EPOCH: u64 = 1_794_660_961;

pub const EM_X86_64: u16 = 62;
pub const EM_AARCH64: u16 = 183;
pub const ET_REL: u16 = 1;
pub const ET_EXEC: u16 = 2;
pub const ET_DYN: u16 = 3;

/// Deterministic filler that xz cannot shrink much, like real code.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// An ELF64 little-endian file: header, program headers (a `PT_INTERP` when `interp`
/// is given, else one `PT_LOAD`), the named sections and a section name table.
pub fn elf(machine: u16, e_type: u16, interp: Option<&str>, sections: &[(&str, &[u8])]) -> Vec<u8> {
    let phnum = 1usize;
    let mut data = vec![0u8; 64 + 56 * phnum];
    // Program header.
    let (p_type, p_off, p_size) = match interp {
        Some(path) => {
            let off = data.len();
            data.extend_from_slice(path.as_bytes());
            data.push(0);
            (3u32, off, path.len() + 1)
        }
        None => (1u32, 0, 0),
    };
    let ph = 64;
    data[ph..ph + 4].copy_from_slice(&p_type.to_le_bytes());
    data[ph + 8..ph + 16].copy_from_slice(&(p_off as u64).to_le_bytes());
    data[ph + 32..ph + 40].copy_from_slice(&(p_size as u64).to_le_bytes());
    // Section contents, then the name table.
    let mut placed = Vec::new();
    for (_, contents) in sections {
        placed.push((data.len(), contents.len()));
        data.extend_from_slice(contents);
    }
    let mut names = vec![0u8];
    let mut name_offsets = Vec::new();
    for (name, _) in sections.iter().copied().chain([(".shstrtab", &[][..])]) {
        name_offsets.push(names.len());
        names.extend_from_slice(name.as_bytes());
        names.push(0);
    }
    let strtab_off = data.len();
    data.extend_from_slice(&names);
    data.extend(noise(4096, machine as u64 + e_type as u64));
    while data.len() % 8 != 0 {
        data.push(0);
    }
    // Section headers: null, the sections, .shstrtab.
    let shoff = data.len();
    data.extend_from_slice(&[0u8; 64]);
    let mut all = placed.clone();
    all.push((strtab_off, names.len()));
    for (i, (off, len)) in all.iter().enumerate() {
        let mut sh = [0u8; 64];
        sh[0..4].copy_from_slice(&(name_offsets[i] as u32).to_le_bytes());
        sh[4..8].copy_from_slice(&(if i + 1 == all.len() { 3u32 } else { 1 }).to_le_bytes());
        sh[24..32].copy_from_slice(&(*off as u64).to_le_bytes());
        sh[32..40].copy_from_slice(&(*len as u64).to_le_bytes());
        data.extend_from_slice(&sh);
    }
    // ELF header.
    data[..4].copy_from_slice(b"\x7fELF");
    data[4] = 2; // ELFCLASS64
    data[5] = 1; // little endian
    data[6] = 1; // EV_CURRENT
    data[16..18].copy_from_slice(&e_type.to_le_bytes());
    data[18..20].copy_from_slice(&machine.to_le_bytes());
    data[20..24].copy_from_slice(&1u32.to_le_bytes());
    data[32..40].copy_from_slice(&64u64.to_le_bytes());
    data[40..48].copy_from_slice(&(shoff as u64).to_le_bytes());
    data[52..54].copy_from_slice(&64u16.to_le_bytes());
    data[54..56].copy_from_slice(&56u16.to_le_bytes());
    data[56..58].copy_from_slice(&(phnum as u16).to_le_bytes());
    data[58..60].copy_from_slice(&64u16.to_le_bytes());
    data[60..62].copy_from_slice(&((all.len() + 1) as u16).to_le_bytes());
    data[62..64].copy_from_slice(&(all.len() as u16).to_le_bytes());
    data
}

/// A static executable (static-pie, like Rust's musl targets).
pub fn static_exe(machine: u16) -> Vec<u8> {
    elf(
        machine,
        ET_DYN,
        None,
        &[(".text", &noise(2048, machine as u64))],
    )
}

/// A kernel module built for `release`.
pub fn module(machine: u16, release: &str) -> Vec<u8> {
    let modinfo = format!("license=GPL\0vermagic={release} SMP mod_unload aarch64\0");
    elf(
        machine,
        ET_REL,
        None,
        &[
            (".text", &[0xc0, 0x03, 0x5f, 0xd6]),
            (".modinfo", modinfo.as_bytes()),
        ],
    )
}

/// A bzImage: the boot header of protocol 2.15, a 64-bit kernel, `release` in its
/// kernel_version string, then `payload` bytes of noise.
pub fn bz_image(release: &str, payload: usize) -> Vec<u8> {
    let mut b = vec![0u8; 0x400];
    b[0x1f1] = 0x03; // setup_sects
    b[0x1fe] = 0x55;
    b[0x1ff] = 0xaa;
    b[0x202..0x206].copy_from_slice(b"HdrS");
    b[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    b[0x20e..0x210].copy_from_slice(&0x0100u16.to_le_bytes()); // kernel_version at 0x300
    b[0x211] = 0x01; // LOADED_HIGH
    b[0x236..0x238].copy_from_slice(&0x0001u16.to_le_bytes()); // XLF_KERNEL_64
    let version = format!("{release} (supermachine@supermachine) #1 SMP\0");
    b[0x300..0x300 + version.len()].copy_from_slice(version.as_bytes());
    b.extend(noise(payload, 1));
    b
}

/// An arm64 Image: the 64-byte header with "ARM\x64" at 0x38, noise, the banner.
pub fn arm64_image(release: &str) -> Vec<u8> {
    let mut b = vec![0u8; 64];
    b[0..4].copy_from_slice(&0x1400_0010u32.to_le_bytes()); // b #0x40
    b[0x10..0x18].copy_from_slice(&(4u64 << 20).to_le_bytes()); // image_size
    b[0x18..0x20].copy_from_slice(&0b1010u64.to_le_bytes()); // LE, 4K pages
    b[0x38..0x3c].copy_from_slice(b"ARM\x64");
    b.extend(noise(30_000, 2));
    b.extend_from_slice(
        format!("Linux version {release} (supermachine@supermachine) #1 SMP\n\0").as_bytes(),
    );
    b.extend(noise(10_000, 3));
    b
}

/// A kernel `.config` with the header `make olddefconfig` writes.
pub fn config(arch_word: &str, version: &str) -> Vec<u8> {
    format!(
        "#\n# Automatically generated file; DO NOT EDIT.\n# Linux/{arch_word} {version} Kernel Configuration\n#\nCONFIG_64BIT=y\n"
    )
    .into_bytes()
}

/// A complete set of inputs in a temporary directory.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let f = Fixture { tmp };
        f.write("x86_64/kernel/bzImage", &bz_image(RELEASE, 50_000));
        f.write("x86_64/kernel/config", &config("x86_64", RELEASE));
        f.write(
            "x86_64/busybox",
            &elf(
                EM_X86_64,
                ET_EXEC,
                None,
                &[(".text", b"BusyBox v1.35.0 (test)\0")],
            ),
        );
        f.write("x86_64/supermachine-agent", &static_exe(EM_X86_64));
        f.write("aarch64/kernel/Image", &arm64_image(RELEASE));
        f.write("aarch64/kernel/config", &config("arm64", RELEASE));
        f.write("aarch64/init-oci", &static_exe(EM_AARCH64));
        f.write("aarch64/supermachine-agent", &static_exe(EM_AARCH64));
        f.write("aarch64/smpark.ko", &module(EM_AARCH64, RELEASE));
        f.write(
            "licenses/GPL-2.0",
            b"Valid-License-Identifier: GPL-2.0-only\n\n\t\t    GNU GENERAL PUBLIC LICENSE\n\t\t       Version 2, June 1991\n",
        );
        // Stand-ins carrying the phrases the packer checks, not the licence texts.
        f.write(
            "licenses/bzip2-1.0.6",
            b"copyright (C) Julian R Seward\n\nRedistribution and use in source and binary forms, ...\n",
        );
        f.write(
            "COPYING.MIT",
            b"Copyright (c) test\n\nPermission is hereby granted, free of charge, ...\n",
        );
        f
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    pub fn write(&self, rel: &str, data: &[u8]) {
        let path = self.path(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, data).unwrap();
    }

    pub fn options(&self, out: &str) -> Options {
        Options {
            templates: templates(),
            out: self.path(out),
            x86_64: Some(self.path("x86_64")),
            aarch64: Some(self.path("aarch64")),
            license_dir: self.path("licenses"),
            agent_license: Some(self.path("COPYING.MIT")),
            cargo_lock: Some(templates().join("../../Cargo.lock")),
            source_date_epoch: EPOCH,
            source_note: Some("the sources of the test".into()),
            version: supermachine_packer::DEFAULT_CRATE_VERSION.into(),
        }
    }
}

/// The repository's crate templates.
pub fn templates() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../files/crates")
}

/// Every file below `dir`: relative path, bytes, mode, mtime.
pub fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>, u32, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            let meta = fs::metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().display().to_string();
                out.push((
                    rel,
                    fs::read(&path).unwrap(),
                    meta.mode() & 0o7777,
                    meta.mtime() as u64,
                ));
            }
        }
    }
    out.sort();
    out
}

/// The names directly in `dir`, sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
