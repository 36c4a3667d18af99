//! `sbom.spdx.json`: an SPDX 2.3 JSON document in each crate naming what it bundles, from
//! the same facts as `manifest.json` (blob SHA-256s, kernel release and config, busybox
//! version, the agent's and `init-oci`'s crate graph from `Cargo.lock`).
//!
//! Reproducible: `created` is `SOURCE_DATE_EPOCH`, packages and relationships are in a
//! fixed order, JSON keys are sorted, and the namespace ends in the SHA-256 of the
//! document written without it, so the same inputs give the same bytes.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::arch::BlobKind;
use crate::inputs::{ArchInputs, LoadedBlob, BUSYBOX_CONFIG, KERNEL_MANIFEST};
use crate::lock::{Lock, Package};

/// Where the document is in each crate.
pub const FILE: &str = "sbom.spdx.json";

const NOASSERTION: &str = "NOASSERTION";
const CRATES_IO: &str = "registry+https://github.com/rust-lang/crates.io-index";

/// What every document of one run shares.
pub struct Context<'a> {
    /// Crate version.
    pub version: &'a str,
    /// `SOURCE_DATE_EPOCH`, the document's `created`.
    pub source_date_epoch: u64,
    /// Where the corresponding source is (NOTICE's "built from" phrase).
    pub source_note: &'a str,
}

/// The SBOM of a per-arch crate. `Err` names what `Cargo.lock` lacks.
pub fn per_arch(
    cx: &Context,
    inputs: &ArchInputs,
    license: &str,
    lock: &Lock,
) -> Result<Vec<u8>, String> {
    let arch = &inputs.arch;
    let crate_id = spdx_id("Package", arch.crate_name);
    let mut packages = vec![crate_package(cx, arch.crate_name, license, &crate_id)];
    let mut relationships = vec![rel("SPDXRef-DOCUMENT", "DESCRIBES", &crate_id)];
    let mut cargo: BTreeSet<(String, String)> = BTreeSet::new();

    for blob in &inputs.blobs {
        let id = spdx_id("Blob", blob.spec.name);
        relationships.push(rel(&crate_id, "CONTAINS", &id));
        let (package, extra) = blob_package(inputs, blob, &id, lock)?;
        packages.push(package);
        for (kind, related, more) in extra {
            relationships.push(rel(&id, kind, &related));
            if let Some(p) = more {
                packages.push(p);
            }
        }
        if let Some(root) = blob.spec.cargo_package {
            for p in lock.closure(root)? {
                cargo.insert((p.name.clone(), p.version.clone()));
            }
        }
    }
    for key in &cargo {
        let p = &lock.packages[key];
        let id = cargo_id(p);
        packages.push(cargo_package(p, &id));
        for dep in &p.deps {
            let dep_id = cargo_id(&lock.packages[dep]);
            relationships.push(rel(&id, "DEPENDS_ON", &dep_id));
        }
    }
    Ok(document(
        cx,
        arch.crate_name,
        &format!(
            "What the crate {} {} bundles for {}, and where it comes from. Corresponding \
             source: {}.",
            arch.crate_name, cx.version, arch.name, cx.source_note
        ),
        packages,
        relationships,
    ))
}

/// The SBOM of the facade: no blobs, a dependency on each per-arch crate.
pub fn facade(
    cx: &Context,
    name: &str,
    license: &str,
    per_arch: &[(&str, &str, String)],
) -> Vec<u8> {
    let crate_id = spdx_id("Package", name);
    let mut packages = vec![crate_package(cx, name, license, &crate_id)];
    let mut relationships = vec![rel("SPDXRef-DOCUMENT", "DESCRIBES", &crate_id)];
    for (dep, target_arch, dep_license) in per_arch {
        let id = spdx_id("Package", dep);
        let mut p = crate_package(cx, dep, dep_license, &id);
        p["comment"] = json!(format!(
            "A dependency only when target_arch is {target_arch}; its own {FILE} lists what it bundles."
        ));
        packages.push(p);
        relationships.push(rel(&crate_id, "DEPENDS_ON", &id));
    }
    document(
        cx,
        name,
        &format!("The crate {name} {} bundles no binaries.", cx.version),
        packages,
        relationships,
    )
}

/// Package and relationships of one blob: (relationship type, related id, the related
/// package if it is new).
type Extra = Vec<(&'static str, String, Option<Value>)>;

fn blob_package(
    inputs: &ArchInputs,
    blob: &LoadedBlob,
    id: &str,
    lock: &Lock,
) -> Result<(Value, Extra), String> {
    let spec = &blob.spec;
    let mut extra: Extra = Vec::new();
    let bundled = format!(
        "Bundled as blobs/{}.xz (uncompressed {} bytes); {} replaces it at build time.",
        spec.name,
        blob.data.len(),
        spec.env
    );
    let (name, version, purpose, source, comment) = match spec.kind {
        BlobKind::BzImage | BlobKind::Arm64Image => {
            let config_id = spdx_id("File", &format!("{}-kernel-config", inputs.arch.name));
            let mut config = file_package(
                &format!("linux-{}-config", inputs.arch.name),
                &inputs.kernel_release,
                &inputs.config_sha256,
                &config_id,
            );
            config["comment"] =
                json!("The kernel configuration (.config) it was built with; not bundled.");
            extra.push(("GENERATED_FROM", config_id, Some(config)));
            let patches = if inputs.kernel_patches.is_empty() {
                "none".to_owned()
            } else {
                inputs.kernel_patches.join(", ")
            };
            let source = match &inputs.kernel_source {
                Some(s) => format!("Linux {} source: {s}", inputs.kernel_release),
                None => format!(
                    "Linux {} source (the input had no {KERNEL_MANIFEST} naming it)",
                    inputs.kernel_release
                ),
            };
            (
                "linux".to_owned(),
                inputs.kernel_release.clone(),
                "OPERATING-SYSTEM",
                format!("{source}; patches applied by the build: {patches}."),
                format!(
                    "{} {}; configuration SHA-256 {}. {bundled}",
                    spec.what, inputs.arch.name, inputs.config_sha256
                ),
            )
        }
        BlobKind::KernelModule => (
            spec.name.trim_end_matches(".ko").to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
            "LIBRARY",
            format!(
                "files/smpark of meta-supermachine {} ({})",
                env!("CARGO_PKG_VERSION"),
                env!("CARGO_PKG_REPOSITORY")
            ),
            format!(
                "{}, built against Linux {} ({}). {bundled}",
                spec.what, inputs.kernel_release, inputs.arch.name
            ),
        ),
        BlobKind::StaticExe => match spec.cargo_package {
            Some(root) => {
                let package = lock
                    .closure(root)?
                    .into_iter()
                    .find(|p| p.name == root && p.source.is_none())
                    .expect("a closure holds its root");
                extra.push(("GENERATED_FROM", cargo_id(package), None));
                (
                    root.to_owned(),
                    package.version.clone(),
                    "APPLICATION",
                    format!(
                        "the {root} package of meta-supermachine ({}), with the crates of its \
                         Cargo.lock graph listed here",
                        env!("CARGO_PKG_REPOSITORY")
                    ),
                    format!("{} for {}. {bundled}", spec.what, inputs.arch.name),
                )
            }
            None => {
                let version = blob
                    .version
                    .as_deref()
                    .map(|v| v.trim_start_matches('v').to_owned())
                    .unwrap_or_else(|| NOASSERTION.to_owned());
                let config = match &inputs.busybox_config_sha256 {
                    Some(sha) => {
                        let config_id = spdx_id(
                            "File",
                            &format!("{}-{}-config", inputs.arch.name, spec.name),
                        );
                        let mut config = file_package(
                            &format!("{}-config", spec.name),
                            &version,
                            sha,
                            &config_id,
                        );
                        config["comment"] =
                            json!("The configuration it was built with; not bundled.");
                        extra.push(("GENERATED_FROM", config_id, Some(config)));
                        format!("configuration SHA-256 {sha}")
                    }
                    None => format!(
                        "its build configuration was not given to the packer ({BUSYBOX_CONFIG})"
                    ),
                };
                (
                    spec.name.to_owned(),
                    version,
                    "APPLICATION",
                    format!("{} {}", spec.what, blob.version.as_deref().unwrap_or(""))
                        .trim()
                        .to_owned(),
                    format!(
                        "{} for {}; {config}. {bundled}",
                        spec.what, inputs.arch.name
                    ),
                )
            }
        },
    };
    let package = json!({
        "SPDXID": id,
        "name": name,
        "versionInfo": version,
        "packageFileName": spec.name,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": false,
        "checksums": [{ "algorithm": "SHA256", "checksumValue": blob.sha256 }],
        "licenseConcluded": spec.license,
        "licenseDeclared": spec.license,
        "copyrightText": NOASSERTION,
        "primaryPackagePurpose": purpose,
        "sourceInfo": source,
        "comment": comment,
    });
    Ok((package, extra))
}

fn crate_package(cx: &Context, name: &str, license: &str, id: &str) -> Value {
    json!({
        "SPDXID": id,
        "name": name,
        "versionInfo": cx.version,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": false,
        "licenseConcluded": license,
        "licenseDeclared": license,
        "copyrightText": NOASSERTION,
        "primaryPackagePurpose": "LIBRARY",
        "externalRefs": [purl(name, cx.version)],
    })
}

fn file_package(name: &str, version: &str, sha256: &str, id: &str) -> Value {
    json!({
        "SPDXID": id,
        "name": name,
        "versionInfo": version,
        "downloadLocation": "NONE",
        "filesAnalyzed": false,
        "checksums": [{ "algorithm": "SHA256", "checksumValue": sha256 }],
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION,
        "primaryPackagePurpose": "FILE",
    })
}

fn cargo_package(p: &Package, id: &str) -> Value {
    let (download, license, source_info) = match p.source.as_deref() {
        None => (
            NOASSERTION.to_owned(),
            // Workspace members carry the workspace's licence, the packer's own.
            env!("CARGO_PKG_LICENSE").to_owned(),
            format!(
                "a package of meta-supermachine ({})",
                env!("CARGO_PKG_REPOSITORY")
            ),
        ),
        Some(CRATES_IO) => (
            format!(
                "https://crates.io/api/v1/crates/{}/{}/download",
                p.name, p.version
            ),
            NOASSERTION.to_owned(),
            "crates.io".to_owned(),
        ),
        Some(other) => (
            NOASSERTION.to_owned(),
            NOASSERTION.to_owned(),
            other.to_owned(),
        ),
    };
    let mut package = json!({
        "SPDXID": id,
        "name": p.name,
        "versionInfo": p.version,
        "downloadLocation": download,
        "filesAnalyzed": false,
        "licenseConcluded": license,
        "licenseDeclared": license,
        "copyrightText": NOASSERTION,
        "primaryPackagePurpose": "LIBRARY",
        "sourceInfo": format!("from Cargo.lock: {source_info}"),
        "externalRefs": [purl(&p.name, &p.version)],
    });
    if let Some(sum) = &p.checksum {
        package["checksums"] = json!([{ "algorithm": "SHA256", "checksumValue": sum }]);
    }
    package
}

fn purl(name: &str, version: &str) -> Value {
    json!({
        "referenceCategory": "PACKAGE-MANAGER",
        "referenceType": "purl",
        // '+' of build metadata is percent-encoded in a purl version.
        "referenceLocator": format!("pkg:cargo/{name}@{}", version.replace('+', "%2B")),
    })
}

fn rel(from: &str, kind: &str, to: &str) -> Value {
    json!({ "spdxElementId": from, "relationshipType": kind, "relatedSpdxElement": to })
}

fn cargo_id(p: &Package) -> String {
    spdx_id("Cargo", &format!("{}-{}", p.name, p.version))
}

/// `SPDXRef-<kind>-<name>` with every character SPDX ids do not allow replaced by `-`.
fn spdx_id(kind: &str, name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("SPDXRef-{kind}-{clean}")
}

fn document(
    cx: &Context,
    name: &str,
    comment: &str,
    packages: Vec<Value>,
    relationships: Vec<Value>,
) -> Vec<u8> {
    let doc_name = format!("{name}-{}", cx.version);
    let mut doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": doc_name,
        "documentNamespace": "",
        "comment": comment,
        "creationInfo": {
            "created": rfc3339_utc(cx.source_date_epoch),
            "creators": [format!("Tool: supermachine-packer-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages,
        "relationships": relationships,
    });
    // The namespace must be unique per document: derive it from everything else in it.
    let digest = crate::sha256_hex(&to_bytes(&doc));
    doc["documentNamespace"] = json!(format!(
        "{}/spdx/{}-{digest}",
        env!("CARGO_PKG_REPOSITORY"),
        doc_name.replace('+', "-")
    ));
    to_bytes(&doc)
}

fn to_bytes(doc: &Value) -> Vec<u8> {
    let mut text = serde_json::to_string_pretty(doc).expect("a JSON value serialises");
    text.push('\n');
    text.into_bytes()
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time (proleptic Gregorian calendar, UTC).
pub fn rfc3339_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days to civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::rfc3339_utc;

    #[test]
    fn dates() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_utc(4_102_444_799), "2099-12-31T23:59:59Z");
    }
}
