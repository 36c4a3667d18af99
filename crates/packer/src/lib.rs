//! `supermachine-packer`: turns the guest blobs of the host build or of the Yocto
//! multiconfigs into the three crates `supermachine-kernel-x86-64`,
//! `supermachine-kernel-aarch64` and `supermachine-kernel`.
//!
//! [`pack`] validates every input first ([`validate`]), then renders the templates of
//! `files/crates` ([`template`]), compresses the blobs and writes deterministic `.crate`
//! archives ([`archive`]) with an SPDX SBOM each ([`sbom`]), the unpacked trees,
//! `SHA256SUMS`, `manifest.json` ([`manifest`]), `LICENSES/` and `NOTICE`. An arch whose input directory is absent is
//! skipped with a message; the facade is written only when both arches are.

pub mod arch;
pub mod archive;
pub mod crates;
pub mod error;
pub mod inputs;
pub mod lock;
pub mod manifest;
pub mod output;
pub mod sbom;
pub mod template;
pub mod validate;

use std::path::PathBuf;

use sha2::{Digest, Sha256};

pub use error::{Error, Result};
use inputs::Skipped;
use output::OutFile;

/// crates.io refuses a `.crate` larger than this; so does the packer.
pub const MAX_CRATE_SIZE: u64 = 10 * 1024 * 1024;

/// The default crate version: the release of the published supermachine-kernel crates
/// whose contract these assets implement, so that a `supermachine` pinning
/// `supermachine-kernel = "=0.7.70"` takes ours through `[patch.crates-io]` unchanged.
/// The one place this number is written; `scripts/build` and the Yocto class pass
/// `--version` only when their setting overrides it.
pub const DEFAULT_CRATE_VERSION: &str = "0.7.70";

/// What to pack.
#[derive(Debug, Clone)]
pub struct Options {
    /// The templates directory (`files/crates`).
    pub templates: PathBuf,
    /// The output directory.
    pub out: PathBuf,
    /// x86_64 inputs in the host-build layout, if built.
    pub x86_64: Option<PathBuf>,
    /// aarch64 inputs in the host-build layout, if built.
    pub aarch64: Option<PathBuf>,
    /// Directory holding the texts of the blobs' licences by SPDX identifier, as Yocto's
    /// common-licenses: `GPL-2.0-only` (or `GPL-2.0`), and `bzip2-1.0.6` for x86_64's busybox.
    pub license_dir: PathBuf,
    /// The agent's (MIT) licence text; default: `COPYING.MIT` of the repository.
    pub agent_license: Option<PathBuf>,
    /// The `Cargo.lock` the agent and `init-oci` were built with, for the SBOM; default:
    /// `Cargo.lock` of the repository.
    pub cargo_lock: Option<PathBuf>,
    /// Time stamp of every archive entry and written file.
    pub source_date_epoch: u64,
    /// Where the corresponding source is, for NOTICE ("built from <note>").
    pub source_note: Option<String>,
    /// Version of the three crates.
    pub version: String,
}

/// What [`pack`] did.
#[derive(Debug, Clone)]
pub struct Report {
    /// The `.crate` files written.
    pub crates: Vec<PathBuf>,
    /// Crates left out, and why.
    pub skipped: Vec<Skipped>,
}

/// Validates the inputs and writes the crates. On error nothing new is left in the output
/// directory.
pub fn pack(opts: &Options) -> Result<Report> {
    check_version(&opts.version)?;
    let agent_license = opts
        .agent_license
        .clone()
        .unwrap_or_else(|| inputs::default_agent_license(&opts.templates));
    let cargo_lock = opts
        .cargo_lock
        .clone()
        .unwrap_or_else(|| inputs::default_cargo_lock(&opts.templates));
    let lock = lock::Lock::read(&cargo_lock)?;

    let mut loaded = Vec::new();
    let mut skipped = Vec::new();
    for (arch, dir) in arch::ALL.iter().zip([&opts.x86_64, &opts.aarch64]) {
        match inputs::load_arch(arch, dir.as_deref())? {
            Ok(inputs) => loaded.push(inputs),
            Err(skip) => skipped.push(skip),
        }
    }
    if loaded.is_empty() {
        let why: Vec<String> = skipped
            .iter()
            .map(|s| format!("{}: {}", s.arch, s.reason))
            .collect();
        return Err(Error::Usage(format!(
            "nothing to pack: no arch has inputs ({})",
            why.join("; ")
        )));
    }
    // The texts of every licence of the crates to be written, MIT always (the facade's).
    let mut license_ids: Vec<&'static str> = loaded
        .iter()
        .flat_map(|inputs| inputs.arch.license_ids())
        .chain(["MIT"])
        .collect();
    license_ids.sort_unstable();
    license_ids.dedup();
    let licenses = inputs::licenses(&opts.license_dir, &agent_license, &license_ids)?;
    if loaded.len() < arch::ALL.len() {
        skipped.push(Skipped {
            arch: "all",
            crate_name: arch::FACADE,
            reason: format!(
                "the facade depends on both per-arch crates with =version, and {} is missing",
                skipped
                    .iter()
                    .map(|s| s.crate_name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }

    let default_note;
    let source_note = match &opts.source_note {
        Some(note) => note.as_str(),
        None => {
            default_note = format!(
                "Linux {} from kernel.org, busybox from busybox.net, and the sources of \
                 meta-supermachine {} ({})",
                loaded[0].kernel_release,
                opts.version,
                env!("CARGO_PKG_REPOSITORY")
            );
            &default_note
        }
    };
    let common = crates::Common {
        templates: &opts.templates,
        version: &opts.version,
        mtime: opts.source_date_epoch,
        licenses: &licenses,
        source_note,
        lock: &lock,
    };
    let mut built = Vec::new();
    for inputs in &loaded {
        built.push(crates::per_arch(&common, inputs)?);
    }
    if let [x86_64, aarch64] = loaded.as_slice() {
        built.push(crates::facade(&common, x86_64, aarch64)?);
    }

    let mut files = Vec::new();
    let mut tops = Vec::new();
    for c in &built {
        files.push(OutFile {
            path: format!("{}.crate", c.root),
            data: c.archive.clone(),
            mode: 0o644,
        });
        for e in &c.entries {
            files.push(OutFile {
                path: format!("{}/{}", c.root, e.path),
                data: e.data.clone(),
                mode: e.mode,
            });
        }
        tops.push(c.root.clone());
        tops.push(format!("{}.crate", c.root));
    }
    let arches: Vec<&inputs::ArchInputs> = loaded.iter().collect();
    for id in licenses.ids() {
        files.push(OutFile {
            path: crates::license_file(id),
            data: licenses.text(id)?,
            mode: 0o644,
        });
    }
    files.push(OutFile {
        path: "NOTICE".into(),
        data: crates::output_notice(&common, &arches)?,
        mode: 0o644,
    });
    files.push(OutFile {
        path: "SHA256SUMS".into(),
        data: manifest::sha256sums(&built),
        mode: 0o644,
    });
    files.push(OutFile {
        path: "manifest.json".into(),
        data: manifest::manifest(&opts.version, opts.source_date_epoch, &built, &skipped),
        mode: 0o644,
    });
    // Index files last, so they never describe crates that are not in place yet.
    tops.extend(["LICENSES", "NOTICE", "SHA256SUMS", "manifest.json"].map(String::from));
    let stale: Vec<String> = skipped
        .iter()
        .flat_map(|s| {
            let root = format!("{}-{}", s.crate_name, opts.version);
            [format!("{root}.crate"), root]
        })
        .collect();
    output::commit(&opts.out, &files, &tops, &stale, opts.source_date_epoch)?;

    Ok(Report {
        crates: built
            .iter()
            .map(|c| opts.out.join(format!("{}.crate", c.root)))
            .collect(),
        skipped,
    })
}

/// Crate versions are semver `X.Y.Z` with optional `-pre` and `+build` parts. Cargo
/// ignores `+build` when matching, so `0.7.70+meta-supermachine` still satisfies `=0.7.70`.
fn check_version(v: &str) -> Result<()> {
    let (rest, build) = match v.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (v, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (rest, None),
    };
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    let ident = |p: &str| {
        p.split('.').all(|part| {
            !part.is_empty() && part.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
        })
    };
    let core_ok = core.split('.').count() == 3 && core.split('.').all(numeric);
    if core_ok && pre.map_or(true, ident) && build.map_or(true, ident) {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "--version {v}: not a semver version like {DEFAULT_CRATE_VERSION} or \
             {DEFAULT_CRATE_VERSION}+rebuilt"
        )))
    }
}

/// `version` without its `+build` part: what a dependency requirement may name.
pub fn version_requirement(version: &str) -> &str {
    version.split_once('+').map_or(version, |(v, _)| v)
}

/// SHA-256 of `data`, lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
