//! Checks every blob before anything is written: a crate must never ship a blob that
//! cannot boot or run on its arch. Each check reports the file, the problem and the fix.

use std::path::Path;

use crate::arch::{Arch, Blob, BlobKind, ElfMachine, EM_AARCH64, EM_X86_64};
use crate::error::{Error, Result};

/// Facts learnt while validating a blob.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BlobFacts {
    /// Kernel release (`uname -r`) of a kernel image.
    pub kernel_release: Option<String>,
    /// The release a kernel module was built for (first word of its `vermagic`).
    pub module_vermagic: Option<String>,
}

/// Checks `bytes` (read from `path`) against what `blob` must be for `arch`.
pub fn blob(arch: &Arch, blob: &Blob, path: &Path, bytes: &[u8]) -> Result<BlobFacts> {
    match blob.kind {
        BlobKind::BzImage => bz_image(path, bytes),
        BlobKind::Arm64Image => arm64_image(path, bytes),
        BlobKind::StaticExe => static_exe(arch, path, bytes),
        BlobKind::KernelModule => kernel_module(arch, path, bytes),
    }
}

/// Checks an x86 boot-protocol `bzImage` of a 64-bit kernel and reads its release from
/// the header's `kernel_version` string (the payload itself is compressed).
pub fn bz_image(path: &Path, b: &[u8]) -> Result<BlobFacts> {
    let fix = "give the arch/x86/boot/bzImage of an x86_64 kernel build";
    let bad = |what: String| Error::invalid(path, format!("not an x86 bzImage: {what}; {fix}"));
    if b.len() < 0x268 {
        return Err(bad(format!(
            "only {} bytes, shorter than the boot header",
            b.len()
        )));
    }
    if b[0x1fe..0x200] != [0x55, 0xaa] {
        return Err(bad("no 0x55AA boot signature at 0x1FE".into()));
    }
    if &b[0x202..0x206] != b"HdrS" {
        return Err(bad(format!(
            "no \"HdrS\" magic at 0x202 (found {:02x?})",
            &b[0x202..0x206]
        )));
    }
    let protocol = u16_at(b, 0x206);
    // 2.12 added xloadflags, which is how a 64-bit kernel says so.
    if protocol < 0x020c {
        return Err(bad(format!(
            "boot protocol {}.{:02} is older than 2.12",
            protocol >> 8,
            protocol & 0xff
        )));
    }
    if b[0x211] & 0x01 == 0 {
        return Err(bad("loadflags lack LOADED_HIGH: this is a zImage".into()));
    }
    if u16_at(b, 0x236) & 0x01 == 0 {
        return Err(Error::invalid(
            path,
            "bzImage of a 32-bit kernel (xloadflags lack XLF_KERNEL_64); build with ARCH=x86_64",
        ));
    }
    let ptr = u16_at(b, 0x20e) as usize;
    let release = if ptr == 0 {
        None
    } else {
        c_str(b, 0x200 + ptr)
            .and_then(|s| s.split_whitespace().next())
            .map(str::to_owned)
    };
    match release {
        Some(r) if !r.is_empty() => Ok(BlobFacts {
            kernel_release: Some(r),
            ..Default::default()
        }),
        _ => Err(Error::invalid(
            path,
            "bzImage header has no kernel_version string, so its release is unknown",
        )),
    }
}

/// Checks an uncompressed little-endian arm64 `Image` and reads its release from the
/// `Linux version` banner inside it.
pub fn arm64_image(path: &Path, b: &[u8]) -> Result<BlobFacts> {
    let fix = "give the uncompressed arch/arm64/boot/Image (not Image.gz, not vmlinux)";
    if b.len() < 64 || &b[0x38..0x3c] != b"ARM\x64" {
        let found = b
            .get(0x38..0x3c)
            .map(|m| format!("{m:02x?}"))
            .unwrap_or("end of file".into());
        return Err(Error::invalid(
            path,
            format!("not an arm64 Image: no \"ARM\\x64\" magic at 0x38 (found {found}); {fix}"),
        ));
    }
    // Header flags bit 0: kernel endianness, 1 = big endian.
    if u64_at(b, 0x18) & 1 != 0 {
        return Err(Error::invalid(
            path,
            "arm64 Image of a big-endian kernel; supermachine guests are little-endian",
        ));
    }
    let release = find(b, b"Linux version ")
        .and_then(|at| c_str(b, at + 14))
        .and_then(|s| s.split_whitespace().next())
        .map(str::to_owned);
    match release {
        Some(r) => Ok(BlobFacts {
            kernel_release: Some(r),
            ..Default::default()
        }),
        None => Err(Error::invalid(
            path,
            format!(
                "arm64 Image has no \"Linux version\" banner, so its release is unknown; {fix}"
            ),
        )),
    }
}

/// Checks a statically linked ELF executable for `arch` (static-pie is fine: what
/// matters is that no `PT_INTERP` asks for a dynamic loader the guest does not have).
pub fn static_exe(arch: &Arch, path: &Path, b: &[u8]) -> Result<BlobFacts> {
    let elf = elf64(arch, path, b)?;
    if elf.e_type != ET_EXEC && elf.e_type != ET_DYN {
        return Err(Error::invalid(
            path,
            format!(
                "ELF type {} is not an executable (ET_EXEC or ET_DYN)",
                elf.e_type
            ),
        ));
    }
    for i in 0..elf.phnum {
        let ph = elf.phoff + i * elf.phentsize;
        let header = b.get(ph..ph + 56).ok_or_else(|| truncated(path))?;
        if u32_at(header, 0) == PT_INTERP {
            let off = u64_at(header, 8) as usize;
            let interp = c_str(b, off).unwrap_or("?");
            return Err(Error::invalid(
                path,
                format!(
                    "dynamically linked (PT_INTERP asks for {interp}), but the guest has no \
                     dynamic loader; build it statically (Rust: --target {}-unknown-linux-musl; \
                     busybox: busybox-static / CONFIG_STATIC=y)",
                    arch.name
                ),
            ));
        }
    }
    Ok(BlobFacts::default())
}

/// Checks a loadable kernel module for `arch`: ELF relocatable with a `.modinfo` section.
pub fn kernel_module(arch: &Arch, path: &Path, b: &[u8]) -> Result<BlobFacts> {
    let elf = elf64(arch, path, b)?;
    if elf.e_type != ET_REL {
        return Err(Error::invalid(
            path,
            format!(
                "ELF type {} ({}) is not a relocatable object (ET_REL); a kernel module is the \
                 .ko that kbuild writes, not a linked executable",
                elf.e_type,
                type_name(elf.e_type)
            ),
        ));
    }
    let modinfo = elf.section(b, ".modinfo").ok_or_else(|| {
        Error::invalid(
            path,
            "no .modinfo section: not a kernel module; build it with kbuild (make -C KDIR M=...)",
        )
    })?;
    let vermagic = modinfo
        .split(|&c| c == 0)
        .filter_map(|field| field.strip_prefix(b"vermagic="))
        .filter_map(|v| std::str::from_utf8(v).ok())
        .filter_map(|v| v.split_whitespace().next())
        .map(str::to_owned)
        .next();
    Ok(BlobFacts {
        module_vermagic: vermagic,
        ..Default::default()
    })
}

/// Checks the kernel `config` header (`# Linux/<arch> <version> Kernel Configuration`) and
/// returns the version it names.
pub fn kernel_config(arch: &Arch, path: &Path, b: &[u8]) -> Result<String> {
    let text = String::from_utf8_lossy(&b[..b.len().min(4096)]);
    let header = text.lines().take(8).find_map(|line| {
        let rest = line
            .strip_prefix("# Linux/")?
            .strip_suffix(" Kernel Configuration")?;
        let (word, version) = rest.split_once(' ')?;
        Some((word.to_owned(), version.to_owned()))
    });
    let Some((word, version)) = header else {
        return Err(Error::invalid(
            path,
            "no \"# Linux/<arch> <version> Kernel Configuration\" header; give the .config of \
             the kernel build",
        ));
    };
    if !arch.config_arch.contains(&word.as_str()) {
        return Err(Error::invalid(
            path,
            format!(
                "kernel config is for Linux/{word}, but the {} crate needs {}",
                arch.name, arch.config_arch[0]
            ),
        ));
    }
    Ok(version)
}

/// Checks that the config, the kernel and any module belong to the same build.
pub fn consistent(
    arch: &Arch,
    dir: &Path,
    config_version: &str,
    release: &str,
    vermagic: Option<&str>,
) -> Result<()> {
    let kernel = dir.join(arch.blobs[0].input);
    // The release may carry a LOCALVERSION suffix that the config header lacks.
    if !release.starts_with(config_version) {
        return Err(Error::invalid(
            &kernel,
            format!(
                "kernel release {release} does not match {} (Linux {config_version}); the \
                 config and the image come from different builds",
                crate::arch::KERNEL_CONFIG
            ),
        ));
    }
    if let (Some(magic), Some(module)) = (
        vermagic,
        arch.blobs.iter().find(|b| b.kind == BlobKind::KernelModule),
    ) {
        if magic != release {
            return Err(Error::invalid(
                &dir.join(module.input),
                format!(
                    "module built for kernel {magic} (vermagic) but the kernel is {release}; \
                     rebuild it against this kernel tree or it will not load"
                ),
            ));
        }
    }
    Ok(())
}

const ET_REL: u16 = 1;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const PT_INTERP: u32 = 3;

struct Elf64 {
    e_type: u16,
    phoff: usize,
    phentsize: usize,
    phnum: usize,
    shoff: usize,
    shentsize: usize,
    shnum: usize,
    shstrndx: usize,
}

/// Parses the ELF header and checks class, byte order and machine against `arch`.
fn elf64(arch: &Arch, path: &Path, b: &[u8]) -> Result<Elf64> {
    if b.len() < 64 || &b[..4] != b"\x7fELF" {
        return Err(Error::invalid(path, "not an ELF file (no \\x7fELF magic)"));
    }
    if b[4] != 2 {
        let class = if b[4] == 1 {
            "32-bit".to_owned()
        } else {
            format!("unknown ({})", b[4])
        };
        return Err(Error::invalid(
            path,
            format!(
                "ELF class is {class}, but the {} crate needs 64-bit (ELFCLASS64) {} binaries",
                arch.name, arch.name
            ),
        ));
    }
    if b[5] != 1 {
        return Err(Error::invalid(
            path,
            "ELF is big-endian; the guest is little-endian",
        ));
    }
    let machine = u16_at(b, 18);
    if machine != arch.machine {
        return Err(Error::invalid(
            path,
            format!(
                "ELF machine is {} ({machine}), but the {} crate needs {} ({}); it was built \
                 for the wrong arch",
                machine_name(machine),
                arch.name,
                machine_name(arch.machine),
                arch.machine
            ),
        ));
    }
    let elf = Elf64 {
        e_type: u16_at(b, 16),
        phoff: u64_at(b, 32) as usize,
        phentsize: u16_at(b, 54) as usize,
        phnum: u16_at(b, 56) as usize,
        shoff: u64_at(b, 40) as usize,
        shentsize: u16_at(b, 58) as usize,
        shnum: u16_at(b, 60) as usize,
        shstrndx: u16_at(b, 62) as usize,
    };
    if (elf.phnum > 0 && elf.phentsize < 56) || (elf.shnum > 0 && elf.shentsize < 64) {
        return Err(truncated(path));
    }
    Ok(elf)
}

impl Elf64 {
    /// The contents of the section called `name`, if any.
    fn section<'a>(&self, b: &'a [u8], name: &str) -> Option<&'a [u8]> {
        let header = |i: usize| b.get(self.shoff + i * self.shentsize..)?.get(..64);
        let strtab = header(self.shstrndx)?;
        let strtab_off = u64_at(strtab, 24) as usize;
        (0..self.shnum).find_map(|i| {
            let sh = header(i)?;
            let sh_name = c_str(b, strtab_off + u32_at(sh, 0) as usize)?;
            if sh_name != name {
                return None;
            }
            let (off, len) = (u64_at(sh, 24) as usize, u64_at(sh, 32) as usize);
            b.get(off..off.checked_add(len)?)
        })
    }
}

fn truncated(path: &Path) -> Error {
    Error::invalid(
        path,
        "ELF headers point past the end of the file (truncated or corrupt)",
    )
}

fn machine_name(m: ElfMachine) -> &'static str {
    match m {
        EM_X86_64 => "x86_64",
        EM_AARCH64 => "aarch64",
        3 => "i386",
        40 => "arm",
        243 => "riscv",
        _ => "unknown",
    }
}

fn type_name(t: u16) -> &'static str {
    match t {
        ET_REL => "ET_REL",
        ET_EXEC => "ET_EXEC",
        ET_DYN => "ET_DYN",
        4 => "ET_CORE",
        _ => "unknown",
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The NUL-terminated UTF-8 string at `at`, if there is one.
fn c_str(b: &[u8], at: usize) -> Option<&str> {
    let rest = b.get(at..)?;
    let end = rest.iter().position(|&c| c == 0)?;
    std::str::from_utf8(&rest[..end]).ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_str_stops_at_nul_and_refuses_unterminated() {
        assert_eq!(c_str(b"ab\0cd", 0), Some("ab"));
        assert_eq!(c_str(b"ab\0cd", 3), None);
        assert_eq!(c_str(b"ab", 9), None);
    }

    #[test]
    fn config_header_names_version_and_arch() {
        let cfg = b"#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86_64 6.12.117 Kernel Configuration\n#\n";
        let v = kernel_config(&crate::arch::X86_64, Path::new("config"), cfg).unwrap();
        assert_eq!(v, "6.12.117");
        let err = kernel_config(&crate::arch::AARCH64, Path::new("config"), cfg).unwrap_err();
        assert!(err.to_string().contains("Linux/x86_64"), "{err}");
    }
}
