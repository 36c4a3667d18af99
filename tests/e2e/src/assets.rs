//! Where the host build's outputs are, and the guest architectures.

use std::path::{Path, PathBuf};

/// A guest architecture of the project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    /// The directory name used in `out/` and in target triples.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// The kernel image file name in `out/ARCH/kernel/`.
    pub fn kernel_image(self) -> &'static str {
        match self {
            Arch::X86_64 => "bzImage",
            Arch::Aarch64 => "Image",
        }
    }
}

/// The repository root (the Cargo workspace).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The host build's output directory.
pub fn out_dir() -> PathBuf {
    std::env::var_os("SUPERMACHINE_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("out"))
}

/// A file of the host build, e.g. `asset("x86_64/kernel/bzImage")`. Panics (failing the
/// test) with the command that builds it when it is missing.
pub fn asset(relative: &str) -> PathBuf {
    let path = out_dir().join(relative);
    assert!(
        path.exists(),
        "{} is missing: run `scripts/build` first (the end-to-end tests boot the host build's assets)",
        path.display()
    );
    path
}
