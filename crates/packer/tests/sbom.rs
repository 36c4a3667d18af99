//! The SPDX SBOM in each crate: checked by a real SPDX validator (`pyspdxtools` from
//! PyPI's spdx-tools, installed by .ci/install), and for the facts it must carry.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;
use supermachine_packer::{pack, DEFAULT_CRATE_VERSION};

fn sbom(out: &Path, krate: &str) -> (Vec<u8>, Value) {
    let path = out.join(format!("{krate}-{DEFAULT_CRATE_VERSION}/sbom.spdx.json"));
    let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc = serde_json::from_slice(&bytes).unwrap();
    (bytes, doc)
}

fn package<'a>(doc: &'a Value, id: &str) -> &'a Value {
    doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["SPDXID"] == id)
        .unwrap_or_else(|| panic!("no package {id}"))
}

fn related(doc: &Value, from: &str, kind: &str) -> Vec<String> {
    doc["relationships"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["spdxElementId"] == from && r["relationshipType"] == kind)
        .map(|r| r["relatedSpdxElement"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_sbom_passes_the_spdx_validator() {
    let f = Fixture::new();
    pack(&f.options("out")).unwrap();
    for krate in [
        "supermachine-kernel-x86-64",
        "supermachine-kernel-aarch64",
        "supermachine-kernel",
    ] {
        let path = f
            .path("out")
            .join(format!("{krate}-{DEFAULT_CRATE_VERSION}/sbom.spdx.json"));
        let out = Command::new("pyspdxtools")
            .arg("-i")
            .arg(&path)
            .output()
            .expect("pyspdxtools (PyPI spdx-tools) is not installed: run .ci/install");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{krate}: pyspdxtools failed:\n{text}");
        assert!(
            !text.contains("validation") || text.contains("The document is valid"),
            "{krate}: {text}"
        );
    }

    // The validator must notice a broken document, or its verdict above means nothing.
    let bad = f.path("bad.spdx.json");
    let (_, mut doc) = sbom(&f.path("out"), "supermachine-kernel-x86-64");
    doc["packages"][1]["checksums"][0]["checksumValue"] = "not-hex".into();
    fs::write(&bad, serde_json::to_vec(&doc).unwrap()).unwrap();
    let out = Command::new("pyspdxtools")
        .arg("-i")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success(), "pyspdxtools accepted a bad checksum");
}

#[test]
fn sbom_names_every_blob_with_its_facts() {
    let f = Fixture::new();
    pack(&f.options("out")).unwrap();
    let manifest: Value =
        serde_json::from_slice(&fs::read(f.path("out/manifest.json")).unwrap()).unwrap();
    for entry in manifest["crates"].as_array().unwrap() {
        let name = entry["name"].as_str().unwrap();
        let (bytes, doc) = sbom(&f.path("out"), name);
        assert_eq!(
            entry["sbom"]["sha256"],
            supermachine_packer::sha256_hex(&bytes)
        );
        assert_eq!(doc["spdxVersion"], "SPDX-2.3");
        assert_eq!(doc["creationInfo"]["created"], "2026-11-14T12:56:01Z");
        let crate_id = format!("SPDXRef-Package-{name}");
        assert_eq!(
            related(&doc, "SPDXRef-DOCUMENT", "DESCRIBES"),
            std::slice::from_ref(&crate_id)
        );
        let Some(blobs) = entry["blobs"].as_array() else {
            assert_eq!(related(&doc, &crate_id, "DEPENDS_ON").len(), 2);
            continue;
        };
        let contained = related(&doc, &crate_id, "CONTAINS");
        assert_eq!(contained.len(), blobs.len(), "{name}");
        for blob in blobs {
            let id = format!("SPDXRef-Blob-{}", blob["name"].as_str().unwrap());
            assert!(contained.contains(&id), "{name}: {id}");
            let p = package(&doc, &id);
            assert_eq!(p["checksums"][0]["checksumValue"], blob["sha256"]);
            assert_eq!(p["licenseConcluded"], blob["license"]);
            assert!(p["versionInfo"].as_str().is_some_and(|v| !v.is_empty()));
            assert!(p["sourceInfo"].as_str().is_some_and(|v| !v.is_empty()));
        }
        // The kernel names its release and comes from a config of the recorded SHA-256.
        let kernel = package(&doc, "SPDXRef-Blob-kernel");
        assert_eq!(kernel["versionInfo"], RELEASE);
        assert!(kernel["sourceInfo"]
            .as_str()
            .unwrap()
            .contains("patches applied by the build: none"));
        let config = related(&doc, "SPDXRef-Blob-kernel", "GENERATED_FROM");
        assert_eq!(
            package(&doc, &config[0])["checksums"][0]["checksumValue"],
            entry["kernel"]["config_sha256"]
        );
        // The agent comes from its Cargo.lock graph: the workspace package and its
        // registry dependencies, each with the lock's checksum.
        let agent = related(&doc, "SPDXRef-Blob-supermachine-agent", "GENERATED_FROM");
        assert_eq!(agent.len(), 1);
        assert!(agent[0].starts_with("SPDXRef-Cargo-supermachine-agent-"));
        let deps = related(&doc, &agent[0], "DEPENDS_ON");
        assert!(
            !deps.is_empty(),
            "the agent has no dependencies in the SBOM"
        );
        for dep in deps {
            let p = package(&doc, &dep);
            assert!(p["externalRefs"][0]["referenceLocator"]
                .as_str()
                .unwrap()
                .starts_with("pkg:cargo/"));
        }
    }
    let (_, x86) = sbom(&f.path("out"), "supermachine-kernel-x86-64");
    assert_eq!(
        package(&x86, "SPDXRef-Blob-busybox")["versionInfo"],
        "1.35.0"
    );
    let (_, arm) = sbom(&f.path("out"), "supermachine-kernel-aarch64");
    package(&arm, "SPDXRef-Blob-smpark.ko");
    let init = related(&arm, "SPDXRef-Blob-init-oci", "GENERATED_FROM");
    assert!(init[0].starts_with("SPDXRef-Cargo-init-oci-"));
}

#[test]
fn manifest_facts_reach_the_sbom() {
    let f = Fixture::new();
    f.write(
        "x86_64/kernel/MANIFEST",
        b"abc  bzImage\n# kernel-release: x\n# source: linux-source-6.12.tar.xz sha256 0123\n# patches: a.patch b.patch\n",
    );
    f.write("x86_64/busybox.config", b"CONFIG_STATIC=y\n");
    pack(&f.options("out")).unwrap();
    let (_, doc) = sbom(&f.path("out"), "supermachine-kernel-x86-64");
    let kernel = package(&doc, "SPDXRef-Blob-kernel")["sourceInfo"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        kernel.contains("linux-source-6.12.tar.xz sha256 0123"),
        "{kernel}"
    );
    assert!(
        kernel.contains("patches applied by the build: a.patch, b.patch"),
        "{kernel}"
    );
    let config = related(&doc, "SPDXRef-Blob-busybox", "GENERATED_FROM");
    assert_eq!(
        package(&doc, &config[0])["checksums"][0]["checksumValue"],
        supermachine_packer::sha256_hex(b"CONFIG_STATIC=y\n")
    );
}

#[test]
fn sbom_namespace_follows_the_content() {
    let f = Fixture::new();
    pack(&f.options("a")).unwrap();
    pack(&f.options("b")).unwrap();
    let (a, doc_a) = sbom(&f.path("a"), "supermachine-kernel-aarch64");
    let (b, _) = sbom(&f.path("b"), "supermachine-kernel-aarch64");
    assert_eq!(a, b, "two packs of the same inputs gave different SBOMs");
    let mut other = module(EM_AARCH64, RELEASE);
    let at = other
        .windows(4)
        .position(|w| w == [0xc0, 0x03, 0x5f, 0xd6])
        .unwrap();
    other[at] = 0x1f;
    f.write("aarch64/smpark.ko", &other);
    pack(&f.options("c")).unwrap();
    let (_, doc_c) = sbom(&f.path("c"), "supermachine-kernel-aarch64");
    assert_ne!(doc_a["documentNamespace"], doc_c["documentNamespace"]);
}
