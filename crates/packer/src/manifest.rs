//! `manifest.json` and `SHA256SUMS`: what was packed, from what, so a release can be
//! audited and a rebuild compared byte for byte.

use serde_json::{json, Value};

use crate::crates::Crate;
use crate::inputs::Skipped;

/// Format version of `manifest.json`; bump it when a field changes meaning.
pub const FORMAT: u32 = 1;

/// The manifest. Paths in it are relative to the arch input directory, so it does not
/// depend on where the build ran.
pub fn manifest(
    version: &str,
    source_date_epoch: u64,
    crates: &[Crate],
    skipped: &[Skipped],
) -> Vec<u8> {
    let crates: Vec<Value> = crates.iter().map(crate_entry).collect();
    let skipped: Vec<Value> = skipped
        .iter()
        .map(|s| json!({ "arch": s.arch, "crate": s.crate_name, "reason": s.reason }))
        .collect();
    let doc = json!({
        "format": FORMAT,
        "packer": format!("supermachine-packer {}", env!("CARGO_PKG_VERSION")),
        "version": version,
        "source_date_epoch": source_date_epoch,
        "crates": crates,
        "skipped": skipped,
    });
    let mut text = serde_json::to_string_pretty(&doc).expect("a JSON value serialises");
    text.push('\n');
    text.into_bytes()
}

fn crate_entry(c: &Crate) -> Value {
    let mut entry = json!({
        "name": c.name,
        "version": c.root.trim_start_matches(c.name).trim_start_matches('-'),
        "file": format!("{}.crate", c.root),
        "size": c.archive.len(),
        "sha256": crate::sha256_hex(&c.archive),
        "license": c.license,
        "sbom": { "file": crate::sbom::FILE, "sha256": c.sbom_sha256 },
    });
    if let Some(inputs) = &c.inputs {
        let blobs: Vec<Value> = inputs
            .blobs
            .iter()
            .zip(&c.xz_sizes)
            .map(|(b, xz_size)| {
                let mut blob = json!({
                    "name": b.spec.name,
                    "input": b.spec.input,
                    "size": b.data.len(),
                    "sha256": b.sha256,
                    "xz_size": xz_size,
                    "mode": format!("{:04o}", b.spec.mode),
                    "license": b.spec.license,
                    "env_override": b.spec.env,
                });
                if let Some(v) = &b.version {
                    blob["version"] = json!(v);
                }
                blob
            })
            .collect();
        entry["arch"] = json!(inputs.arch.name);
        entry["build_id"] = json!(c.build_id);
        entry["kernel"] = json!({
            "release": inputs.kernel_release,
            "config_sha256": inputs.config_sha256,
        });
        entry["blobs"] = json!(blobs);
    }
    entry
}

/// `SHA256SUMS` of the `.crate` files, in `sha256sum` format, sorted by file name.
pub fn sha256sums(crates: &[Crate]) -> Vec<u8> {
    let mut lines: Vec<String> = crates
        .iter()
        .map(|c| format!("{}  {}.crate\n", crate::sha256_hex(&c.archive), c.root))
        .collect();
    lines.sort_by(|a, b| a[66..].cmp(&b[66..]));
    lines.concat().into_bytes()
}
