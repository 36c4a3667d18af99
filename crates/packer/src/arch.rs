//! What each per-arch crate bundles, where each blob comes from in the host-build layout
//! (docs/layout.md), and how it is checked. The crate API follows from this table.

use crate::archive::XzFilters;

/// An ELF `e_machine` value.
pub type ElfMachine = u16;

/// `EM_X86_64`.
pub const EM_X86_64: ElfMachine = 62;
/// `EM_AARCH64`.
pub const EM_AARCH64: ElfMachine = 183;

/// The format a blob must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    /// An x86 `bzImage` (boot protocol header, 64-bit kernel).
    BzImage,
    /// An arm64 `Image` (little-endian, "ARM\x64" magic).
    Arm64Image,
    /// A statically linked ELF executable for the crate's arch.
    StaticExe,
    /// A loadable kernel module (ELF relocatable with `.modinfo`) for the crate's arch.
    KernelModule,
}

/// One bundled blob.
#[derive(Debug, Clone, Copy)]
pub struct Blob {
    /// Name of the staged file in the generated crate's `OUT_DIR` (and of `blobs/NAME.xz`).
    pub name: &'static str,
    /// Path of the input below the arch's input directory.
    pub input: &'static str,
    /// The env variable that overrides the bundled copy at consumer build time: the name
    /// the published supermachine-kernel 0.7.70 crates read, so existing setups keep working.
    pub env: &'static str,
    /// Unix mode the `extract_*_to` function gives the file.
    pub mode: u32,
    /// Its expected format.
    pub kind: BlobKind,
    /// SPDX licence expression of the blob: identifiers joined by ` AND `.
    pub license: &'static str,
    /// What it is, for NOTICE and the manifest.
    pub what: &'static str,
    /// The workspace package (in `Cargo.lock`) that builds it, for the SBOM's crate graph.
    pub cargo_package: Option<&'static str>,
}

/// One per-arch crate.
#[derive(Debug, Clone, Copy)]
pub struct Arch {
    /// The Rust `target_arch` and the host-build directory name.
    pub name: &'static str,
    /// The `--x86-64` / `--aarch64` option naming its input directory.
    pub option: &'static str,
    /// The crate name (also its template directory under `--templates`).
    pub crate_name: &'static str,
    /// `e_machine` every ELF blob must have.
    pub machine: ElfMachine,
    /// The arch word of the kernel config header (`# Linux/<word> 6.12.x Kernel Configuration`).
    pub config_arch: &'static [&'static str],
    /// The blobs, in crate order (this order also defines `BUILD_ID`).
    pub blobs: &'static [Blob],
    /// What produces the inputs, for messages about missing ones.
    pub built_by: &'static str,
}

/// The kernel configuration, hashed into the manifest but not bundled.
pub const KERNEL_CONFIG: &str = "kernel/config";

const GPL: &str = "GPL-2.0-only";
const MIT: &str = "MIT";
/// BusyBox's bzip2 applet is bzip2's own code, under bzip2's licence (OE-core's busybox
/// recipe says "GPL-2.0-only & bzip2-1.0.6").
const BUSYBOX: &str = "GPL-2.0-only AND bzip2-1.0.6";

/// The x86_64 crate: bzImage, busybox, agent.
pub const X86_64: Arch = Arch {
    name: "x86_64",
    option: "--x86-64",
    crate_name: "supermachine-kernel-x86-64",
    machine: EM_X86_64,
    config_arch: &["x86_64", "x86"],
    blobs: &[
        Blob {
            name: "kernel",
            input: "kernel/bzImage",
            env: "SUPERMACHINE_X86_KERNEL_PATH",
            mode: 0o644,
            kind: BlobKind::BzImage,
            license: GPL,
            what: "Linux kernel (bzImage)",
            cargo_package: None,
        },
        Blob {
            name: "busybox",
            input: "busybox",
            env: "SUPERMACHINE_X86_BUSYBOX_PATH",
            mode: 0o755,
            kind: BlobKind::StaticExe,
            license: BUSYBOX,
            what: "BusyBox (static)",
            cargo_package: None,
        },
        Blob {
            name: "supermachine-agent",
            input: "supermachine-agent",
            env: "SUPERMACHINE_X86_AGENT_PATH",
            mode: 0o755,
            kind: BlobKind::StaticExe,
            license: MIT,
            what: "supermachine-agent (static musl)",
            cargo_package: Some("supermachine-agent"),
        },
    ],
    built_by: "`scripts/build --arch x86_64` (host build) or the supermachine-x86-64 \
               multiconfig (Yocto)",
};

/// The aarch64 crate: Image, init-oci, agent, smpark.ko.
pub const AARCH64: Arch = Arch {
    name: "aarch64",
    option: "--aarch64",
    crate_name: "supermachine-kernel-aarch64",
    machine: EM_AARCH64,
    config_arch: &["arm64"],
    blobs: &[
        Blob {
            name: "kernel",
            input: "kernel/Image",
            env: "SUPERMACHINE_KERNEL_PATH",
            mode: 0o644,
            kind: BlobKind::Arm64Image,
            license: GPL,
            what: "Linux kernel (arm64 Image)",
            cargo_package: None,
        },
        Blob {
            name: "init-oci",
            input: "init-oci",
            env: "SUPERMACHINE_INIT_OCI_PATH",
            mode: 0o755,
            kind: BlobKind::StaticExe,
            license: MIT,
            what: "init-oci PID-1 shim (static musl)",
            cargo_package: Some("init-oci"),
        },
        Blob {
            name: "supermachine-agent",
            input: "supermachine-agent",
            env: "SUPERMACHINE_AGENT_PATH",
            mode: 0o755,
            kind: BlobKind::StaticExe,
            license: MIT,
            what: "supermachine-agent (static musl)",
            cargo_package: Some("supermachine-agent"),
        },
        Blob {
            name: "smpark.ko",
            input: "smpark.ko",
            env: "SUPERMACHINE_SMPARK_PATH",
            mode: 0o644,
            kind: BlobKind::KernelModule,
            license: GPL,
            what: "smpark kernel module",
            cargo_package: None,
        },
    ],
    built_by: "`scripts/build --arch aarch64` (host build) or the supermachine-aarch64 \
               multiconfig (Yocto)",
};

/// Both arches, in the order crates are written and listed.
pub const ALL: [Arch; 2] = [X86_64, AARCH64];

/// The facade crate that picks the per-arch crate by `target_arch`.
pub const FACADE: &str = "supermachine-kernel";

impl Arch {
    /// The SPDX identifiers of every blob's licence and MIT (the crate's own code), sorted:
    /// the crate carries the text of each.
    pub fn license_ids(&self) -> Vec<&'static str> {
        let mut ids: Vec<&'static str> = self
            .blobs
            .iter()
            .flat_map(|b| b.license.split(" AND "))
            .collect();
        ids.push(MIT);
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// How `blob` is compressed in this crate: with the BCJ filter of its arch where that
    /// makes the stream smaller (measured on the host build's blobs, docs/benchmarks.md).
    /// Not for the bzImage (compressed already) nor smpark.ko (a relocatable object: its
    /// branch targets are left to relocations, and the filter made it bigger).
    pub fn xz_filters(&self, blob: &Blob) -> XzFilters {
        match (self.machine, blob.kind) {
            (EM_X86_64, BlobKind::StaticExe) => XzFilters::X86Lzma2,
            (EM_AARCH64, BlobKind::StaticExe | BlobKind::Arm64Image) => XzFilters::Arm64Lzma2,
            _ => XzFilters::Lzma2,
        }
    }

    /// The SPDX licence expression covering every blob of the crate (its code is MIT too).
    pub fn license_expression(&self) -> String {
        self.license_ids().join(" AND ")
    }
}
