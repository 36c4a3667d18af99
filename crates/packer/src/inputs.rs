//! Reading and validating the inputs: one directory per arch in the host-build layout,
//! and the licence texts. Everything is checked here, before any output exists.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::arch::{Arch, Blob, KERNEL_CONFIG};
use crate::error::{Error, Result};
use crate::validate;

/// A validated blob and what is known about it.
#[derive(Debug, Clone)]
pub struct LoadedBlob {
    /// Its place in the crate.
    pub spec: Blob,
    /// Its bytes.
    pub data: Vec<u8>,
    /// SHA-256 of `data`, lowercase hex.
    pub sha256: String,
    /// Version string found in the binary, when it carries one (busybox).
    pub version: Option<String>,
}

/// All inputs of one arch, validated.
#[derive(Debug, Clone)]
pub struct ArchInputs {
    /// The arch.
    pub arch: Arch,
    /// Its blobs, in crate order.
    pub blobs: Vec<LoadedBlob>,
    /// Kernel release (`uname -r`), from the image itself.
    pub kernel_release: String,
    /// SHA-256 of `kernel/config`.
    pub config_sha256: String,
    /// Where the kernel source came from: the `# source:` line of `kernel/MANIFEST`, when
    /// the input has one (the host build writes it; the Yocto deploy has none).
    pub kernel_source: Option<String>,
    /// Patches applied to that source by the build: the `# patches:` line of
    /// `kernel/MANIFEST`; empty when it has none.
    pub kernel_patches: Vec<String>,
    /// SHA-256 of `busybox.config`, the configuration busybox was built with, when the
    /// input carries it.
    pub busybox_config_sha256: Option<String>,
}

/// The optional kernel build record in the host-build layout.
pub const KERNEL_MANIFEST: &str = "kernel/MANIFEST";
/// The optional busybox configuration next to the busybox binary.
pub const BUSYBOX_CONFIG: &str = "busybox.config";

/// Why an arch is left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The arch.
    pub arch: &'static str,
    /// The crate that is therefore not written.
    pub crate_name: &'static str,
    /// What is missing and what builds it.
    pub reason: String,
}

/// Loads the inputs of `arch` from `dir`. `Ok(Err(skipped))` when the directory is not
/// given or does not exist (the arch is simply not built yet); `Err` when it exists but
/// anything in it is missing or wrong.
pub fn load_arch(
    arch: &Arch,
    dir: Option<&Path>,
) -> Result<std::result::Result<ArchInputs, Skipped>> {
    let skipped = |why: String| Skipped {
        arch: arch.name,
        crate_name: arch.crate_name,
        reason: format!(
            "{why}; the {} inputs are built by {}",
            arch.name, arch.built_by
        ),
    };
    let dir = match dir {
        None => return Ok(Err(skipped(format!("no {} directory given", arch.option)))),
        Some(d) if !d.exists() => {
            return Ok(Err(skipped(format!(
                "{} {} does not exist",
                arch.option,
                d.display()
            ))))
        }
        Some(d) => d,
    };
    let config_path = dir.join(KERNEL_CONFIG);
    let config = read(&config_path, arch)?;
    let config_version = validate::kernel_config(arch, &config_path, &config)?;

    let mut blobs = Vec::new();
    let mut release = None;
    let mut vermagic = None;
    for spec in arch.blobs {
        let path = dir.join(spec.input);
        let data = read(&path, arch)?;
        let facts = validate::blob(arch, spec, &path, &data)?;
        release = release.or(facts.kernel_release);
        vermagic = vermagic.or(facts.module_vermagic);
        let version = (spec.name == "busybox")
            .then(|| busybox_version(&data))
            .flatten();
        blobs.push(LoadedBlob {
            spec: *spec,
            sha256: crate::sha256_hex(&data),
            data,
            version,
        });
    }
    let release = release.expect("the first blob of every arch is its kernel");
    validate::consistent(arch, dir, &config_version, &release, vermagic.as_deref())?;
    let manifest = match fs::read_to_string(dir.join(KERNEL_MANIFEST)) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io(&dir.join(KERNEL_MANIFEST), e)),
    };
    let fact = |key: &str| {
        manifest
            .lines()
            .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
            .map(|v| v.trim().to_owned())
    };
    let kernel_patches = fact("patches")
        .filter(|p| p != "none")
        .map(|p| p.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    let busybox_config_sha256 = match fs::read(dir.join(BUSYBOX_CONFIG)) {
        Ok(data) => Some(crate::sha256_hex(&data)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(&dir.join(BUSYBOX_CONFIG), e)),
    };
    Ok(Ok(ArchInputs {
        arch: *arch,
        blobs,
        kernel_release: release,
        config_sha256: crate::sha256_hex(&config),
        kernel_source: fact("source"),
        kernel_patches,
        busybox_config_sha256,
    }))
}

fn read(path: &Path, arch: &Arch) -> Result<Vec<u8>> {
    match fs::read(path) {
        Ok(data) if data.is_empty() => Err(Error::invalid(path, "empty file")),
        Ok(data) => Ok(data),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Missing {
            file: path.to_path_buf(),
            hint: format!(
                "the {} input directory is incomplete; it is built by {}",
                arch.name, arch.built_by
            ),
        }),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// "BusyBox v1.35.0 (...)" as busybox prints it, for NOTICE and the manifest.
fn busybox_version(data: &[u8]) -> Option<String> {
    let at = data.windows(9).position(|w| w == b"BusyBox v")?;
    let rest = &data[at + 8..];
    let end = rest
        .iter()
        .position(|&c| c == 0 || c == b' ' || c == b'\n')?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// The licence texts the crates carry, by SPDX identifier.
#[derive(Debug, Clone)]
pub struct Licenses {
    texts: BTreeMap<&'static str, Vec<u8>>,
}

impl Licenses {
    /// The text of `id`. Every identifier of a loaded arch was read by [`licenses`], so a
    /// missing one is a bug in the packer, reported as such rather than as a panic.
    pub fn text(&self, id: &str) -> Result<Vec<u8>> {
        self.texts.get(id).cloned().ok_or_else(|| {
            Error::Usage(format!(
                "internal error: the {id} licence text was not read"
            ))
        })
    }

    /// The identifiers read, sorted.
    pub fn ids(&self) -> Vec<&'static str> {
        self.texts.keys().copied().collect()
    }
}

/// Reads the text of every licence in `ids`: MIT from `mit`, the others from `dir` by
/// their SPDX identifier, as Yocto's common-licenses names them (GPL-2.0-only also as
/// `GPL-2.0`, the kernel tree's LICENSES/preferred/ name). Each is checked to be the
/// licence it is named after.
pub fn licenses(dir: &Path, mit: &Path, ids: &[&'static str]) -> Result<Licenses> {
    let mut texts = BTreeMap::new();
    for &id in ids {
        let text = match id {
            "MIT" => mit_text(mit)?,
            "GPL-2.0-only" => gpl2_text(dir)?,
            _ => other_text(dir, id)?,
        };
        texts.insert(id, text);
    }
    Ok(Licenses { texts })
}

fn gpl2_text(dir: &Path) -> Result<Vec<u8>> {
    let candidates = [dir.join("GPL-2.0-only"), dir.join("GPL-2.0")];
    let gpl_path = candidates
        .iter()
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Missing {
            file: candidates[1].clone(),
            hint: format!(
                "--license-dir {} must hold the GPL-2.0 text as GPL-2.0 or GPL-2.0-only (the \
             kernel tree's LICENSES/preferred/ or Yocto's common-licenses)",
                dir.display()
            ),
        })?;
    let gpl2 = fs::read(gpl_path).map_err(|e| Error::io(gpl_path, e))?;
    let text = String::from_utf8_lossy(&gpl2);
    if !(text.contains("GNU GENERAL PUBLIC LICENSE") && text.contains("Version 2")) {
        return Err(Error::invalid(gpl_path, "not the GNU GPL version 2 text"));
    }
    Ok(gpl2)
}

fn mit_text(mit: &Path) -> Result<Vec<u8>> {
    let mit_bytes = fs::read(mit).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::Missing {
            file: mit.to_path_buf(),
            hint: "the agent's MIT licence text: the repository's COPYING.MIT, or pass \
                   --agent-license FILE"
                .into(),
        },
        _ => Error::io(mit, e),
    })?;
    if !String::from_utf8_lossy(&mit_bytes).contains("Permission is hereby granted") {
        return Err(Error::invalid(mit, "not an MIT licence text"));
    }
    Ok(mit_bytes)
}

/// Phrases the text of a licence other than GPL-2.0 and MIT must contain.
fn markers(id: &str) -> &'static [&'static str] {
    match id {
        "bzip2-1.0.6" => &[
            "Julian",
            "Redistribution and use in source and binary forms",
        ],
        _ => &[],
    }
}

fn other_text(dir: &Path, id: &str) -> Result<Vec<u8>> {
    let path = dir.join(id);
    let data = fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::Missing {
            file: path.clone(),
            hint: format!(
                "--license-dir {} must hold the {id} licence text, named {id} as in Yocto's \
                 common-licenses (scripts/build writes out/licenses/{id} from the licence \
                 of the Debian package that has it)",
                dir.display()
            ),
        },
        _ => Error::io(&path, e),
    })?;
    let text = String::from_utf8_lossy(&data);
    if let Some(missing) = markers(id).iter().find(|m| !text.contains(*m)) {
        return Err(Error::invalid(
            &path,
            format!("not the {id} licence text (it lacks \"{missing}\")"),
        ));
    }
    Ok(data)
}

/// The default `--agent-license`: COPYING.MIT at the top of the repository that holds
/// `templates` (`<repo>/files/crates`).
pub fn default_agent_license(templates: &Path) -> PathBuf {
    templates.join("../../COPYING.MIT")
}

/// The default `--cargo-lock`: `Cargo.lock` at the top of the repository that holds
/// `templates`.
pub fn default_cargo_lock(templates: &Path) -> PathBuf {
    templates.join("../../Cargo.lock")
}
