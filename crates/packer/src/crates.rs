//! Assembling the three crates in memory: rendered templates, compressed blobs, licence
//! texts and NOTICE, then the `.crate` archive.

use std::path::Path;

use crate::arch::FACADE;
use crate::archive::{self, Entry};
use crate::error::{Error, Result};
use crate::inputs::{ArchInputs, Licenses};
use crate::lock::Lock;
use crate::sbom;
use crate::template::{self, Vars};

/// Where the text of licence `id` goes, in each crate and in the output directory.
pub fn license_file(id: &str) -> String {
    format!("LICENSES/{id}.txt")
}

/// The sentence of NOTICE naming the licence files of `ids`.
fn license_files(ids: &[&str]) -> String {
    let files: Vec<String> = ids.iter().map(|id| license_file(id)).collect();
    match files.split_last() {
        Some((last, rest)) if !rest.is_empty() => {
            format!("The texts are in {} and {last}.", rest.join(", "))
        }
        Some((last, _)) => format!("The text is in {last}."),
        None => String::new(),
    }
}

/// A finished crate.
#[derive(Debug, Clone)]
pub struct Crate {
    /// Crate name.
    pub name: &'static str,
    /// `<name>-<version>`: the `.crate` root and the unpacked tree's name.
    pub root: String,
    /// The files of the unpacked tree.
    pub entries: Vec<Entry>,
    /// The `.crate` bytes.
    pub archive: Vec<u8>,
    /// The arch and its blobs (none for the facade).
    pub inputs: Option<ArchInputs>,
    /// Per blob: size of its `.xz` (same order as the blobs).
    pub xz_sizes: Vec<u64>,
    /// SPDX licence expression of the crate.
    pub license: String,
    /// The `BUILD_ID` its build script computes when nothing is overridden.
    pub build_id: Option<String>,
    /// SHA-256 of its `sbom.spdx.json`.
    pub sbom_sha256: String,
}

/// What every crate shares.
pub struct Common<'a> {
    /// `--templates`.
    pub templates: &'a Path,
    /// Crate version.
    pub version: &'a str,
    /// `SOURCE_DATE_EPOCH`: mtime of every archive entry.
    pub mtime: u64,
    /// Licence texts.
    pub licenses: &'a Licenses,
    /// The "built from ..." phrase of NOTICE.
    pub source_note: &'a str,
    /// The `Cargo.lock` the Rust blobs were built with.
    pub lock: &'a Lock,
}

/// The `rust-version` of the generated crates, above the workspace's 1.75 (which is
/// scarthgap's Rust, for what the layer builds): their build-dependency xz4rust needs
/// 1.84.1, and 1.85 is what supermachine 0.7.108, their user, and the published
/// supermachine-kernel 0.7.70 crates declare.
const GENERATED_RUST_VERSION: &str = "1.85";

impl Common<'_> {
    fn sbom_context(&self) -> sbom::Context<'_> {
        sbom::Context {
            version: self.version,
            source_date_epoch: self.mtime,
            source_note: self.source_note,
        }
    }

    fn vars(&self) -> Vars {
        Vars::from([
            ("VERSION", self.version.to_owned()),
            (
                "VERSION_REQ",
                crate::version_requirement(self.version).to_owned(),
            ),
            ("RUST_VERSION", GENERATED_RUST_VERSION.to_owned()),
            ("REPOSITORY", env!("CARGO_PKG_REPOSITORY").to_owned()),
            ("SOURCE_NOTE", self.source_note.to_owned()),
            ("LICENSE_FILES", license_files(&self.licenses.ids())),
        ])
    }
}

/// `BUILD_ID`: SHA-256 of the `sha256sum` listing of the blobs, in crate order.
pub fn build_id(inputs: &ArchInputs) -> String {
    let listing: String = inputs
        .blobs
        .iter()
        .map(|b| format!("{}  {}\n", b.sha256, b.spec.name))
        .collect();
    crate::sha256_hex(listing.as_bytes())
}

/// The per-arch crate of `inputs`.
pub fn per_arch(common: &Common, inputs: &ArchInputs) -> Result<Crate> {
    let arch = &inputs.arch;
    let id = build_id(inputs);
    let mut vars = common.vars();
    vars.insert("LICENSE", arch.license_expression());
    vars.insert("LICENSE_FILES", license_files(&arch.license_ids()));
    vars.insert("KERNEL_RELEASE", inputs.kernel_release.clone());
    vars.insert("BUILD_ID", id.clone());
    vars.insert("BLOB_TABLE", blob_table_rs(inputs));
    vars.insert("BLOB_TABLE_MD", blob_table_md(inputs));
    vars.insert(
        "BUNDLED_BY",
        format!("The crate {} {} bundles:", arch.crate_name, common.version),
    );
    vars.insert("BUNDLED", bundled(inputs));

    let mut files = template::render_dir(&common.templates.join("shared"), &vars)?;
    files.extend(template::render_dir(
        &common.templates.join(arch.crate_name),
        &vars,
    )?);
    let mut xz_sizes = Vec::new();
    for blob in &inputs.blobs {
        let xz = archive::xz(&blob.data, arch.xz_filters(&blob.spec)).map_err(|e| {
            Error::Usage(format!("xz compression of {} failed: {e}", blob.spec.name))
        })?;
        xz_sizes.push(xz.len() as u64);
        files.push((format!("blobs/{}.xz", blob.spec.name), xz));
    }
    for id in arch.license_ids() {
        files.push((license_file(id), common.licenses.text(id)?));
    }
    files.push(("NOTICE".to_owned(), notice(common, &vars)?));
    let sbom = sbom::per_arch(
        &common.sbom_context(),
        inputs,
        &arch.license_expression(),
        common.lock,
    )
    .map_err(|problem| Error::Usage(format!("the SBOM of {}: {problem}", arch.crate_name)))?;
    files.push((sbom::FILE.to_owned(), sbom));
    let mut krate = finish(common, arch.crate_name, files, arch.license_expression())?;
    krate.inputs = Some(inputs.clone());
    krate.xz_sizes = xz_sizes;
    krate.build_id = Some(id);
    Ok(krate)
}

/// The facade, over both per-arch crates.
pub fn facade(common: &Common, x86_64: &ArchInputs, aarch64: &ArchInputs) -> Result<Crate> {
    let mut vars = common.vars();
    vars.insert("LICENSE", "MIT".to_owned());
    let per_arch_files: Vec<String> = common
        .licenses
        .ids()
        .iter()
        .filter(|id| **id != "MIT")
        .map(|id| license_file(id))
        .collect();
    vars.insert(
        "LICENSE_FILES",
        format!(
            "This crate carries {}; the per-arch crates carry {} as well.",
            license_file("MIT"),
            per_arch_files.join(", ")
        ),
    );
    vars.insert("KERNEL_RELEASE", kernel_releases(&[x86_64, aarch64]));
    vars.insert(
        "BUNDLED_BY",
        format!(
            "The crate {FACADE} {v} bundles no binaries. It depends on {} {v} on x86_64 and on \
             {} {v} on aarch64, which bundle:",
            x86_64.arch.crate_name,
            aarch64.arch.crate_name,
            v = common.version
        ),
    );
    vars.insert(
        "BUNDLED",
        format!("{}\n\n{}", bundled(x86_64), bundled(aarch64)),
    );
    let mut files = template::render_dir(&common.templates.join(FACADE), &vars)?;
    files.push((license_file("MIT"), common.licenses.text("MIT")?));
    files.push(("NOTICE".to_owned(), notice(common, &vars)?));
    let per_arch: Vec<(&str, &str, String)> = [x86_64, aarch64]
        .iter()
        .map(|a| (a.arch.crate_name, a.arch.name, a.arch.license_expression()))
        .collect();
    files.push((
        sbom::FILE.to_owned(),
        sbom::facade(&common.sbom_context(), FACADE, "MIT", &per_arch),
    ));
    finish(common, FACADE, files, "MIT".to_owned())
}

/// NOTICE of the output directory, covering every crate written.
pub fn output_notice(common: &Common, arches: &[&ArchInputs]) -> Result<Vec<u8>> {
    let mut vars = common.vars();
    let names: Vec<&str> = arches.iter().map(|a| a.arch.crate_name).collect();
    vars.insert(
        "BUNDLED_BY",
        format!("The crates {} {} bundle:", names.join(", "), common.version),
    );
    vars.insert(
        "BUNDLED",
        arches
            .iter()
            .map(|a| bundled(a))
            .collect::<Vec<_>>()
            .join("\n\n"),
    );
    notice(common, &vars)
}

fn notice(common: &Common, vars: &Vars) -> Result<Vec<u8>> {
    let path = common.templates.join("NOTICE.in");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    Ok(template::render(&text, vars, &path)?.into_bytes())
}

fn finish(
    common: &Common,
    name: &'static str,
    files: Vec<(String, Vec<u8>)>,
    license: String,
) -> Result<Crate> {
    let root = format!("{name}-{}", common.version);
    let mut entries: Vec<Entry> = files
        .into_iter()
        .map(|(path, data)| Entry {
            path,
            data,
            mode: 0o644,
        })
        .collect();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    if let Some(w) = entries.windows(2).find(|w| w[0].path == w[1].path) {
        return Err(Error::Template {
            file: common.templates.join(name),
            problem: format!(
                "{} is also generated by the packer; remove it from the templates",
                w[0].path
            ),
        });
    }
    let archive = archive::crate_file(&root, &entries, common.mtime)
        .map_err(|e| Error::Usage(format!("writing the {root}.crate archive failed: {e}")))?;
    let size = archive.len() as u64;
    if size > crate::MAX_CRATE_SIZE {
        return Err(Error::TooLarge {
            file: format!("{root}.crate"),
            size,
            limit: crate::MAX_CRATE_SIZE,
        });
    }
    let sbom_sha256 = entries
        .iter()
        .find(|e| e.path == sbom::FILE)
        .map(|e| crate::sha256_hex(&e.data))
        .unwrap_or_default();
    Ok(Crate {
        sbom_sha256,
        name,
        root,
        entries,
        archive,
        inputs: None,
        xz_sizes: Vec::new(),
        license,
        build_id: None,
    })
}

/// The `BLOBS` table of the generated `build.rs`.
fn blob_table_rs(inputs: &ArchInputs) -> String {
    inputs
        .blobs
        .iter()
        .map(|b| {
            format!(
                "    Blob {{\n        name: {:?},\n        env: {:?},\n        len: {},\n        \
                 sha256: {:?},\n    }},\n",
                b.spec.name,
                b.spec.env,
                b.data.len(),
                b.sha256
            )
        })
        .collect()
}

/// The contents table of the per-arch README.
fn blob_table_md(inputs: &ArchInputs) -> String {
    inputs
        .blobs
        .iter()
        .map(|b| {
            format!(
                "| `{}` | {} bytes | `{}` | {} | `{}` |\n",
                b.spec.name,
                b.data.len(),
                b.sha256,
                b.spec.license,
                b.spec.env
            )
        })
        .collect()
}

/// NOTICE lines for the blobs of one arch.
fn bundled(inputs: &ArchInputs) -> String {
    let mut out = format!("{} ({}):", inputs.arch.crate_name, inputs.arch.name);
    for b in &inputs.blobs {
        let what = match (b.spec.kind, &b.version) {
            (crate::arch::BlobKind::BzImage | crate::arch::BlobKind::Arm64Image, _) => {
                format!("Linux {} ({})", inputs.kernel_release, b.spec.input)
            }
            (_, Some(version)) => format!("{} {version}", b.spec.what),
            (_, None) => b.spec.what.to_owned(),
        };
        out.push_str(&format!(
            "\n  {:<20} {what}; {}; sha256 {}",
            b.spec.name, b.spec.license, b.sha256
        ));
    }
    out
}

fn kernel_releases(arches: &[&ArchInputs]) -> String {
    let mut releases: Vec<String> = arches.iter().map(|a| a.kernel_release.clone()).collect();
    releases.dedup();
    if releases.len() == 1 {
        return releases.remove(0);
    }
    arches
        .iter()
        .map(|a| format!("{} ({})", a.kernel_release, a.arch.name))
        .collect::<Vec<_>>()
        .join(", ")
}
