//! The packer on synthetic inputs: what it writes, that it writes it the same way twice,
//! and what happens when an arch is absent.

mod common;

use std::fs;
use std::io::Read;

use common::*;
use serde_json::Value;
use supermachine_packer::pack;

const CRATES: [&str; 3] = [
    "supermachine-kernel-x86-64-0.7.70.crate",
    "supermachine-kernel-aarch64-0.7.70.crate",
    "supermachine-kernel-0.7.70.crate",
];

fn manifest(dir: &std::path::Path) -> Value {
    serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

/// (path, mode, uid, mtime) of every entry of a `.crate`.
fn crate_entries(path: &std::path::Path) -> Vec<(String, u32, u64, u64)> {
    let bytes = fs::read(path).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
    let entries = archive.entries().unwrap();
    entries
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                e.path().unwrap().display().to_string(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.mtime().unwrap(),
            )
        })
        .collect()
}

#[test]
fn packs_both_arches_and_the_facade() {
    let f = Fixture::new();
    let report = pack(&f.options("out")).unwrap();
    assert!(report.skipped.is_empty());
    let out = f.path("out");
    let expected: Vec<String> = CRATES
        .iter()
        .map(|c| out.join(c).display().to_string())
        .collect();
    let got: Vec<String> = report
        .crates
        .iter()
        .map(|c| c.display().to_string())
        .collect();
    assert_eq!(got, expected);
    let mut want = vec![
        "LICENSES",
        "NOTICE",
        "SHA256SUMS",
        "manifest.json",
        "supermachine-kernel-0.7.70",
        "supermachine-kernel-aarch64-0.7.70",
        "supermachine-kernel-x86-64-0.7.70",
    ];
    want.extend(CRATES);
    want.sort();
    assert_eq!(listing(&out), want, "no staging directory is left behind");

    let x86 = crate_entries(&out.join(CRATES[0]));
    let paths: Vec<&str> = x86.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        paths,
        [
            "supermachine-kernel-x86-64-0.7.70/Cargo.toml",
            "supermachine-kernel-x86-64-0.7.70/LICENSES/GPL-2.0-only.txt",
            "supermachine-kernel-x86-64-0.7.70/LICENSES/MIT.txt",
            "supermachine-kernel-x86-64-0.7.70/LICENSES/bzip2-1.0.6.txt",
            "supermachine-kernel-x86-64-0.7.70/NOTICE",
            "supermachine-kernel-x86-64-0.7.70/README.md",
            "supermachine-kernel-x86-64-0.7.70/blobs/busybox.xz",
            "supermachine-kernel-x86-64-0.7.70/blobs/kernel.xz",
            "supermachine-kernel-x86-64-0.7.70/blobs/supermachine-agent.xz",
            "supermachine-kernel-x86-64-0.7.70/build.rs",
            "supermachine-kernel-x86-64-0.7.70/sbom.spdx.json",
            "supermachine-kernel-x86-64-0.7.70/src/extract.rs",
            "supermachine-kernel-x86-64-0.7.70/src/lib.rs",
        ]
    );
    assert!(
        x86.iter().all(|e| e.1 == 0o644 && e.2 == 0 && e.3 == EPOCH),
        "{x86:?}"
    );
    let arm = crate_entries(&out.join(CRATES[1]));
    assert!(arm.iter().any(|e| e.0.ends_with("/blobs/smpark.ko.xz")));
    assert!(arm.iter().any(|e| e.0.ends_with("/blobs/init-oci.xz")));
    let facade = crate_entries(&out.join(CRATES[2]));
    assert!(
        !facade
            .iter()
            .any(|e| e.0.contains("blobs/") || e.0.contains("build.rs")),
        "{facade:?}"
    );

    // The unpacked tree is the archive's content.
    let bytes = fs::read(out.join(CRATES[0])).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut data = Vec::new();
        let path = out.join(entry.path().unwrap());
        entry.read_to_end(&mut data).unwrap();
        assert_eq!(fs::read(&path).unwrap(), data, "{}", path.display());
    }

    // Rendered templates: no placeholder left, the blob table, the facade's cfg tables.
    let tree = out.join("supermachine-kernel-x86-64-0.7.70");
    let build_rs = fs::read_to_string(tree.join("build.rs")).unwrap();
    let bz = fs::read(f.path("x86_64/kernel/bzImage")).unwrap();
    assert!(build_rs.contains(&format!("len: {},", bz.len())));
    assert!(build_rs.contains(&supermachine_packer::sha256_hex(&bz)));
    let cargo_toml = fs::read_to_string(tree.join("Cargo.toml")).unwrap();
    assert!(
        cargo_toml.contains("license = \"GPL-2.0-only AND MIT AND bzip2-1.0.6\""),
        "{cargo_toml}"
    );
    assert!(cargo_toml.contains("version = \"0.7.70\""));
    let facade_toml =
        fs::read_to_string(out.join("supermachine-kernel-0.7.70/Cargo.toml")).unwrap();
    assert!(facade_toml.contains(
        "[target.'cfg(target_arch = \"x86_64\")'.dependencies]\nsupermachine-kernel-x86-64 = \"=0.7.70\""
    ));
    assert!(facade_toml.contains(
        "[target.'cfg(target_arch = \"aarch64\")'.dependencies]\nsupermachine-kernel-aarch64 = \"=0.7.70\""
    ));
    for c in [
        "supermachine-kernel-x86-64-0.7.70",
        "supermachine-kernel-aarch64-0.7.70",
        "supermachine-kernel-0.7.70",
    ] {
        for file in ["Cargo.toml", "README.md", "src/lib.rs", "NOTICE"] {
            let text = fs::read_to_string(out.join(c).join(file)).unwrap();
            assert!(
                !text.contains("@VERSION@") && !text.contains("@BUILD_ID@"),
                "{c}/{file}"
            );
        }
    }

    let m = manifest(&out);
    assert_eq!(m["version"], "0.7.70");
    assert_eq!(m["source_date_epoch"], EPOCH);
    let x86 = &m["crates"][0];
    assert_eq!(x86["name"], "supermachine-kernel-x86-64");
    assert_eq!(x86["kernel"]["release"], RELEASE);
    let config = fs::read(f.path("x86_64/kernel/config")).unwrap();
    assert_eq!(
        x86["kernel"]["config_sha256"],
        supermachine_packer::sha256_hex(&config)
    );
    assert_eq!(x86["blobs"][0]["size"], bz.len());
    assert_eq!(x86["blobs"][1]["mode"], "0755");
    assert_eq!(x86["blobs"][1]["version"], "v1.35.0");
    // BUILD_ID: sha256 of the sha256sum listing of the blobs, in crate order.
    let sums_listing: String = x86["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            format!(
                "{}  {}\n",
                b["sha256"].as_str().unwrap(),
                b["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        x86["build_id"],
        supermachine_packer::sha256_hex(sums_listing.as_bytes())
    );
    assert_eq!(m["crates"][2]["name"], "supermachine-kernel");

    let sums = fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    for c in CRATES {
        let sha = supermachine_packer::sha256_hex(&fs::read(out.join(c)).unwrap());
        assert!(sums.contains(&format!("{sha}  {c}\n")), "{sums}");
    }
    assert_eq!(
        listing(&out.join("LICENSES")),
        ["GPL-2.0-only.txt", "MIT.txt", "bzip2-1.0.6.txt"]
    );
    let notice = fs::read_to_string(out.join("NOTICE")).unwrap();
    assert!(notice.contains("the sources of the test"), "{notice}");
    assert!(
        notice.contains(&supermachine_packer::sha256_hex(&bz)),
        "{notice}"
    );
}

#[test]
fn packing_twice_gives_identical_bytes() {
    let f = Fixture::new();
    pack(&f.options("a")).unwrap();
    // Another output directory, another process time: the same bytes.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    pack(&f.options("b")).unwrap();
    let (a, b) = (snapshot(&f.path("a")), snapshot(&f.path("b")));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.0, y.0);
        assert!(x.1 == y.1, "{} differs between two runs", x.0);
        assert_eq!((x.2, x.3), (y.2, y.3), "mode or mtime of {} differs", x.0);
        assert_eq!(x.3, EPOCH, "{} has mtime {}", x.0, x.3);
    }
    // Packing again into the same directory replaces it with the same bytes.
    pack(&f.options("a")).unwrap();
    assert_eq!(snapshot(&f.path("a")), b);
}

#[test]
fn a_missing_arch_is_skipped_and_the_facade_with_it() {
    let f = Fixture::new();
    for aarch64 in [None, Some(f.path("not-built/aarch64"))] {
        let mut opts = f.options("out");
        opts.aarch64 = aarch64.clone();
        let report = pack(&opts).unwrap();
        let names: Vec<String> = report
            .crates
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["supermachine-kernel-x86-64-0.7.70.crate"]);
        let skipped: Vec<&str> = report.skipped.iter().map(|s| s.crate_name).collect();
        assert_eq!(
            skipped,
            ["supermachine-kernel-aarch64", "supermachine-kernel"]
        );
        let why = &report.skipped[0].reason;
        assert!(
            why.contains("--aarch64") && why.contains("scripts/build --arch aarch64"),
            "{why}"
        );
        if let Some(dir) = &aarch64 {
            assert!(why.contains(&dir.display().to_string()), "{why}");
        }
        assert!(
            report.skipped[1].reason.contains("both"),
            "{}",
            report.skipped[1].reason
        );
        let out = f.path("out");
        assert!(!out.join("supermachine-kernel-0.7.70.crate").exists());
        assert!(!out.join("supermachine-kernel-aarch64-0.7.70").exists());
        let m = manifest(&out);
        assert_eq!(m["crates"].as_array().unwrap().len(), 1);
        assert_eq!(m["skipped"][0]["arch"], "aarch64");
    }
    // x86_64 absent works the same way, and needs no bzip2 text (only busybox has it).
    fs::remove_file(f.path("licenses/bzip2-1.0.6")).unwrap();
    let mut opts = f.options("arm-only");
    opts.x86_64 = None;
    let report = pack(&opts).unwrap();
    assert_eq!(report.crates.len(), 1);
    assert!(report.crates[0].ends_with("supermachine-kernel-aarch64-0.7.70.crate"));
    assert_eq!(
        listing(&f.path("arm-only/LICENSES")),
        ["GPL-2.0-only.txt", "MIT.txt"]
    );
}

#[test]
fn a_later_run_removes_crates_it_no_longer_writes() {
    let f = Fixture::new();
    pack(&f.options("out")).unwrap();
    assert!(f.path("out/supermachine-kernel-0.7.70.crate").exists());
    let mut opts = f.options("out");
    opts.aarch64 = None;
    pack(&opts).unwrap();
    let names = listing(&f.path("out"));
    assert!(
        names
            .iter()
            .all(|n| !n.starts_with("supermachine-kernel-0.7.70")),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .all(|n| !n.starts_with("supermachine-kernel-aarch64")),
        "{names:?}"
    );
    let sums = fs::read_to_string(f.path("out/SHA256SUMS")).unwrap();
    assert_eq!(sums.lines().count(), 1, "{sums}");
}

#[test]
fn version_override_names_the_crates() {
    let f = Fixture::new();
    let mut opts = f.options("out");
    opts.version = "1.2.3-rc.1".into();
    let report = pack(&opts).unwrap();
    assert!(report.crates[2].ends_with("supermachine-kernel-1.2.3-rc.1.crate"));
    let facade =
        fs::read_to_string(f.path("out/supermachine-kernel-1.2.3-rc.1/Cargo.toml")).unwrap();
    assert!(
        facade.contains("supermachine-kernel-aarch64 = \"=1.2.3-rc.1\""),
        "{facade}"
    );
}

#[test]
fn build_metadata_stays_out_of_the_facade_requirement() {
    let f = Fixture::new();
    let mut opts = f.options("out");
    opts.version = "0.7.70+meta-supermachine".into();
    pack(&opts).unwrap();
    let root = f.path("out/supermachine-kernel-0.7.70+meta-supermachine");
    let facade = fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(
        facade.contains("version = \"0.7.70+meta-supermachine\""),
        "{facade}"
    );
    assert!(
        facade.contains("supermachine-kernel-x86-64 = \"=0.7.70\""),
        "{facade}"
    );
    for bad in ["0.7", "0.7.70+", "0.7.70+a..b", "0.7.70+m@x", "v0.7.70"] {
        opts.version = bad.into();
        let err = pack(&opts).unwrap_err().to_string();
        assert!(err.contains("not a semver version"), "{bad}: {err}");
    }
}

#[test]
fn busybox_carries_the_bzip2_licence() {
    let f = Fixture::new();
    pack(&f.options("out")).unwrap();
    let tree = f.path("out/supermachine-kernel-x86-64-0.7.70");
    assert_eq!(
        fs::read(tree.join("LICENSES/bzip2-1.0.6.txt")).unwrap(),
        fs::read(f.path("licenses/bzip2-1.0.6")).unwrap()
    );
    let notice = fs::read_to_string(tree.join("NOTICE")).unwrap();
    assert!(
        notice.contains("LICENSES/bzip2-1.0.6.txt")
            && notice.contains("GPL-2.0-only AND bzip2-1.0.6"),
        "{notice}"
    );
    let sbom: serde_json::Value =
        serde_json::from_slice(&fs::read(tree.join("sbom.spdx.json")).unwrap()).unwrap();
    let busybox = sbom["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| {
            p["name"]
                .as_str()
                .is_some_and(|n| n.contains("busybox") || n.contains("BusyBox"))
        })
        .unwrap_or_else(|| panic!("no busybox package in {sbom}"));
    assert_eq!(busybox["licenseDeclared"], "GPL-2.0-only AND bzip2-1.0.6");
    // The aarch64 crate bundles no busybox: no bzip2 text.
    assert!(!f
        .path("out/supermachine-kernel-aarch64-0.7.70/LICENSES/bzip2-1.0.6.txt")
        .exists());
}

#[test]
fn gpl_text_may_be_named_gpl_2_0_only() {
    let f = Fixture::new();
    fs::rename(f.path("licenses/GPL-2.0"), f.path("licenses/GPL-2.0-only")).unwrap();
    pack(&f.options("out")).unwrap();
    let text = fs::read(f.path("out/LICENSES/GPL-2.0-only.txt")).unwrap();
    assert_eq!(text, fs::read(f.path("licenses/GPL-2.0-only")).unwrap());
}
