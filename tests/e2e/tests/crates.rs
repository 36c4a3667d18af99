//! Real cargo on the three `.crate` files, packed from the host build's blobs.
//!
//! The crates are packed into a temporary directory from `$SUPERMACHINE_OUT` (default: the
//! workspace's `out/`), served with their build-dependencies as a local registry that
//! replaces crates.io, and a consumer depending on `supermachine-kernel = "=<version>"` is
//! built offline with its own `CARGO_HOME` and target directory, then run: it calls every
//! `extract_*` and the test compares bytes and modes with the inputs.
//!
//! The blobs come from `scripts/build`; without them these tests fail and say so.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::{json, Value};
use supermachine_packer::arch::{Arch, AARCH64, ALL, FACADE, X86_64};
use supermachine_packer::sha256_hex;

const VERSION: &str = supermachine_packer::DEFAULT_CRATE_VERSION;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The host build's output directory.
fn host_out() -> PathBuf {
    std::env::var_os("SUPERMACHINE_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("out"))
}

/// The host build's licence texts (out/licenses/), or a panic that says how to make them.
fn licenses_dir() -> PathBuf {
    let dir = host_out().join("licenses");
    for id in ["GPL-2.0", "bzip2-1.0.6"] {
        assert!(
            dir.join(id).is_file(),
            "no {id} licence text in {}: run `scripts/build`, which writes out/licenses/",
            dir.display()
        );
    }
    dir
}

/// The input directory of `arch`, complete, or a panic that says how to make it.
fn arch_inputs(arch: &Arch) -> PathBuf {
    let dir = host_out().join(arch.name);
    let mut missing: Vec<String> = ["kernel/config"]
        .into_iter()
        .chain(arch.blobs.iter().map(|b| b.input))
        .filter(|f| !dir.join(f).is_file())
        .map(String::from)
        .collect();
    missing.sort();
    assert!(
        missing.is_empty(),
        "the {} blobs of the host build are missing in {} ({}): run `scripts/build` first \
         (or set SUPERMACHINE_OUT to a host-build output directory)",
        arch.name,
        dir.display(),
        missing.join(", ")
    );
    dir
}

/// The crates packed from the real blobs, and a local registry serving them.
struct Packed {
    _tmp: tempfile::TempDir,
    /// The packer's output directory.
    out: PathBuf,
    /// The local registry (the three crates and the build-dependencies).
    registry: PathBuf,
    manifest: Value,
}

fn packed() -> &'static Packed {
    static PACKED: OnceLock<Packed> = OnceLock::new();
    PACKED.get_or_init(|| {
        let inputs: Vec<PathBuf> = ALL.iter().map(arch_inputs).collect();
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("crates");
        let license_dir = licenses_dir();
        let report = supermachine_packer::pack(&supermachine_packer::Options {
            templates: workspace().join("files/crates"),
            out: out.clone(),
            x86_64: Some(inputs[0].clone()),
            aarch64: Some(inputs[1].clone()),
            license_dir,
            agent_license: None,
            cargo_lock: None,
            source_date_epoch: 1_700_000_000,
            source_note: Some("the test's inputs".into()),
            version: VERSION.into(),
        })
        .unwrap_or_else(|e| panic!("packing the host build's blobs failed: {e}"));
        assert!(report.skipped.is_empty(), "{:?}", report.skipped);
        assert_eq!(report.crates.len(), 3);

        let registry = tmp.path().join("registry");
        let mut crate_files = report.crates.clone();
        crate_files.extend(build_dependency_crates());
        local_registry(&registry, &crate_files);
        let manifest =
            serde_json::from_slice(&fs::read(out.join("manifest.json")).unwrap()).unwrap();
        Packed {
            _tmp: tmp,
            out,
            registry,
            manifest,
        }
    })
}

// ---- the consumer ----

const CONSUMER_MAIN: &str = r#"
use std::path::Path;

use supermachine_kernel as k;

fn main() {
    let dir = std::env::args_os().nth(1).expect("usage: consumer DIR");
    let dir = Path::new(&dir);
    assert_eq!(k::KERNEL_LEN, k::KERNEL_BYTES.len());
    assert_eq!(k::SUPERMACHINE_AGENT_LEN, k::SUPERMACHINE_AGENT_BYTES.len());
    // extract_*_to replaces an existing file and needs the parent to exist.
    std::fs::write(dir.join("kernel"), b"stale").unwrap();
    k::extract_kernel_to(&dir.join("kernel")).unwrap();
    assert!(k::extract_kernel_to(&dir.join("no-such-dir/kernel")).is_err());
    k::extract_kernel_to_with_parents(&dir.join("nested/kernel")).unwrap();
    k::extract_supermachine_agent_to(&dir.join("supermachine-agent")).unwrap();
    k::extract_supermachine_agent_to_with_parents(&dir.join("nested/supermachine-agent")).unwrap();
    #[cfg(target_arch = "x86_64")]
    {
        assert_eq!(k::BUSYBOX_LEN, k::BUSYBOX_BYTES.len());
        k::extract_busybox_to(&dir.join("busybox")).unwrap();
        k::extract_busybox_to_with_parents(&dir.join("nested/busybox")).unwrap();
    }
    #[cfg(target_arch = "aarch64")]
    {
        assert_eq!(k::INIT_OCI_LEN, k::INIT_OCI_BYTES.len());
        assert_eq!(k::SMPARK_KO_LEN, k::SMPARK_KO_BYTES.len());
        k::extract_init_oci_to(&dir.join("init-oci")).unwrap();
        k::extract_init_oci_to_with_parents(&dir.join("nested/init-oci")).unwrap();
        k::extract_smpark_ko_to(&dir.join("smpark.ko")).unwrap();
        k::extract_smpark_ko_to_with_parents(&dir.join("nested/smpark.ko")).unwrap();
    }
    // A symlink at the destination is followed, as std::fs::write (the published
    // crates) does: the link stays and its target gets the bytes.
    std::fs::create_dir_all(dir.join("linked")).unwrap();
    std::os::unix::fs::symlink("../link-target", dir.join("linked/kernel")).unwrap();
    k::extract_kernel_to(&dir.join("linked/kernel")).unwrap();
    assert!(std::fs::symlink_metadata(dir.join("linked/kernel")).unwrap().file_type().is_symlink());
    assert!(std::fs::read(dir.join("link-target")).unwrap() == k::KERNEL_BYTES);
    println!("BUILD_ID={}", k::BUILD_ID);
}
"#;

/// A consumer project with its own Cargo home (offline, crates.io replaced by `registry`)
/// and target directory.
struct Consumer {
    tmp: tempfile::TempDir,
}

impl Consumer {
    fn new(registry: &Path) -> Consumer {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("consumer");
        fs::create_dir_all(root.join("src")).unwrap();
        fs::write(
            root.join("Cargo.toml"),
            format!(
                "[package]\nname = \"consumer\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
                 [dependencies]\nsupermachine-kernel = \"={VERSION}\"\n\n[workspace]\n"
            ),
        )
        .unwrap();
        fs::write(root.join("src/main.rs"), CONSUMER_MAIN).unwrap();
        let home = tmp.path().join("cargo-home");
        fs::create_dir_all(&home).unwrap();
        fs::write(
            home.join("config.toml"),
            format!(
                "[source.crates-io]\nreplace-with = \"packed\"\n\n[source.packed]\n\
                 local-registry = {:?}\n\n[net]\noffline = true\n",
                registry.display().to_string()
            ),
        )
        .unwrap();
        Consumer { tmp }
    }

    /// `cargo <command> --offline --manifest-path ... <args>` for the consumer.
    fn cargo(&self, command: &str, args: &[&str], env: &[(&str, &Path)]) -> Output {
        let root = self.tmp.path().join("consumer");
        let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cmd.arg(command)
            .arg("--offline")
            .arg("--manifest-path")
            .arg(root.join("Cargo.toml"))
            .args(args)
            .env("CARGO_HOME", self.tmp.path().join("cargo-home"))
            .env("CARGO_TARGET_DIR", self.tmp.path().join("target"))
            // The outer cargo's settings must not leak into the consumer's build.
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .env_remove("CARGO_ENCODED_RUSTFLAGS");
        for arch in ALL {
            for blob in arch.blobs {
                cmd.env_remove(blob.env);
            }
        }
        for (key, value) in env {
            cmd.env(key, value);
        }
        cmd.output().unwrap()
    }

    /// Builds and runs the consumer; returns the extraction directory and its BUILD_ID.
    fn run(&self, name: &str, env: &[(&str, &Path)]) -> (PathBuf, String) {
        let dir = self.tmp.path().join(name);
        fs::create_dir_all(&dir).unwrap();
        let out = self.cargo("run", &["--quiet", "--", dir.to_str().unwrap()], env);
        assert!(
            out.status.success(),
            "consumer build or run failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let id = stdout
            .lines()
            .find_map(|l| l.strip_prefix("BUILD_ID="))
            .unwrap_or_else(|| panic!("no BUILD_ID in the consumer's output: {stdout}"))
            .to_owned();
        (dir, id)
    }
}

/// The per-arch crate the facade picks on this host.
fn host_arch() -> &'static Arch {
    ALL.iter()
        .find(|a| a.name == std::env::consts::ARCH)
        .expect("the tests run on x86_64 or aarch64")
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn manifest_crate<'a>(manifest: &'a Value, name: &str) -> &'a Value {
    manifest["crates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
}

#[test]
fn consumer_builds_offline_and_extracts_every_blob() {
    let packed = packed();
    let arch = host_arch();
    let inputs = arch_inputs(arch);
    let consumer = Consumer::new(&packed.registry);
    let (dir, build_id) = consumer.run("default", &[]);

    for blob in arch.blobs {
        let want = fs::read(inputs.join(blob.input)).unwrap();
        for path in [dir.join(blob.name), dir.join("nested").join(blob.name)] {
            let got = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(
                got == want,
                "{} differs from {}",
                path.display(),
                blob.input
            );
            assert_eq!(mode(&path), blob.mode, "mode of {}", path.display());
        }
    }
    let entry = manifest_crate(&packed.manifest, arch.crate_name);
    assert_eq!(
        build_id,
        entry["build_id"].as_str().unwrap(),
        "BUILD_ID differs from manifest.json"
    );

    // Cargo fetched only this arch's crate, as the facade's cfg tables promise.
    let other = ALL.iter().find(|a| a.name != arch.name).unwrap();
    let fetched = dir_names(&consumer.tmp.path().join("cargo-home/registry/src"));
    assert!(
        fetched.iter().any(|n| n.starts_with(arch.crate_name)),
        "{fetched:?}"
    );
    assert!(
        !fetched.iter().any(|n| n.starts_with(other.crate_name)),
        "{fetched:?}"
    );

    // An env override replaces that blob (and only it), and BUILD_ID follows.
    let busybox_like = arch.blobs[1];
    let replacement = consumer.tmp.path().join("replacement");
    fs::write(
        &replacement,
        b"\x7fELF not really, but the override is taken as it is",
    )
    .unwrap();
    let (dir, overridden_id) = consumer.run("override", &[(busybox_like.env, &replacement)]);
    assert_eq!(
        fs::read(dir.join(busybox_like.name)).unwrap(),
        fs::read(&replacement).unwrap()
    );
    assert_eq!(mode(&dir.join(busybox_like.name)), busybox_like.mode);
    assert_eq!(
        fs::read(dir.join("kernel")).unwrap(),
        fs::read(inputs.join(arch.blobs[0].input)).unwrap()
    );
    assert_ne!(
        overridden_id, build_id,
        "BUILD_ID must change with an overridden blob"
    );

    // As with the published crates, a relative path is taken from the crate's directory
    // (where Cargo runs build scripts), and a set but empty variable is an error.
    let crate_dir = fs::read_dir(consumer.tmp.path().join("cargo-home/registry/src"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .join(format!("{}-{VERSION}", arch.crate_name))
        })
        .find(|p| p.is_dir())
        .unwrap();
    let relative = PathBuf::from("Cargo.toml");
    let (dir, _) = consumer.run("relative", &[(busybox_like.env, &relative)]);
    assert_eq!(
        fs::read(dir.join(busybox_like.name)).unwrap(),
        fs::read(crate_dir.join("Cargo.toml")).unwrap()
    );
    for (value, expect) in [
        (PathBuf::new(), "is set but empty"),
        (PathBuf::from("/no/such/file"), "is not a file"),
    ] {
        let out = consumer.cargo("build", &[], &[(busybox_like.env, &value)]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{value:?} was accepted");
        assert!(stderr.contains(expect), "{value:?}: {stderr}");
        assert!(stderr.contains(busybox_like.env), "{value:?}: {stderr}");
    }
}

#[test]
fn corrupt_bundled_blob_fails_the_consumer_build() {
    let packed = packed();
    let arch = host_arch();
    let root = format!("{}-{VERSION}", arch.crate_name);
    let damage = |name: &str| {
        let mut bytes = fs::read(packed.out.join(&root).join(format!("blobs/{name}.xz"))).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        bytes
    };
    let kernel = &arch.blobs[0];
    // On x86_64 the agent's stream has the x86 BCJ filter before LZMA2; the kernel's not.
    let agent = arch
        .blobs
        .iter()
        .find(|b| b.name == "supermachine-agent")
        .unwrap();
    // Intact xz of other bytes: only the recorded SHA-256 notices.
    let other = supermachine_packer::archive::xz(
        b"not the kernel that was packed",
        supermachine_packer::archive::XzFilters::Lzma2,
    )
    .unwrap();

    for (blob, what, bytes, expect) in [
        (
            kernel,
            "damaged",
            damage(kernel.name),
            "blobs/kernel.xz is corrupt: xz decoding failed",
        ),
        (
            agent,
            "damaged",
            damage(agent.name),
            "blobs/supermachine-agent.xz is corrupt: xz decoding failed",
        ),
        (kernel, "replaced", other, "but the crate was packed with"),
    ] {
        let what = format!("{what} {}.xz", blob.name);
        let blob_xz = format!("blobs/{}.xz", blob.name);
        let tmp = tempfile::tempdir().unwrap();
        let bad_crate = tmp.path().join(format!("{root}.crate"));
        repack_with(
            &packed.out.join(format!("{root}.crate")),
            &bad_crate,
            &root,
            &blob_xz,
            &bytes,
        );
        let mut files: Vec<PathBuf> = packed
            .out
            .read_dir()
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.extension().is_some_and(|e| e == "crate") && !p.ends_with(format!("{root}.crate"))
            })
            .collect();
        files.push(bad_crate);
        files.extend(build_dependency_crates());
        let registry = tmp.path().join("registry");
        local_registry(&registry, &files);

        let consumer = Consumer::new(&registry);
        let out = consumer.cargo("build", &[], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{what}: the consumer build succeeded"
        );
        assert!(
            stderr.contains(&format!("error: {}: ", arch.crate_name)),
            "{what}: {stderr}"
        );
        assert!(
            stderr.contains(expect),
            "{what}: expected {expect:?} in:\n{stderr}"
        );
        assert!(stderr.contains(blob.env), "{what}: no hint in:\n{stderr}");
    }
}

#[test]
fn packed_crates_match_manifest_and_sums() {
    let packed = packed();
    let sums = fs::read_to_string(packed.out.join("SHA256SUMS")).unwrap();
    for name in [X86_64.crate_name, AARCH64.crate_name, FACADE] {
        let file = format!("{name}-{VERSION}.crate");
        let bytes = fs::read(packed.out.join(&file)).unwrap();
        let sha = sha256_hex(&bytes);
        assert!(
            sums.contains(&format!("{sha}  {file}\n")),
            "{file} not in SHA256SUMS:\n{sums}"
        );
        let entry = manifest_crate(&packed.manifest, name);
        assert_eq!(entry["sha256"], json!(sha));
        assert_eq!(entry["size"], json!(bytes.len()));
        assert!(bytes.len() as u64 <= supermachine_packer::MAX_CRATE_SIZE);
    }
    for arch in ALL {
        let inputs = arch_inputs(&arch);
        let entry = manifest_crate(&packed.manifest, arch.crate_name);
        let config = fs::read(inputs.join("kernel/config")).unwrap();
        assert_eq!(entry["kernel"]["config_sha256"], json!(sha256_hex(&config)));
        for (blob, recorded) in arch.blobs.iter().zip(entry["blobs"].as_array().unwrap()) {
            let data = fs::read(inputs.join(blob.input)).unwrap();
            assert_eq!(
                recorded["sha256"],
                json!(sha256_hex(&data)),
                "{}",
                blob.input
            );
            assert_eq!(recorded["size"], json!(data.len()));
        }
    }
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for registry in fs::read_dir(dir).into_iter().flatten() {
        for e in fs::read_dir(registry.unwrap().path()).into_iter().flatten() {
            names.push(e.unwrap().file_name().to_string_lossy().into_owned());
        }
    }
    names
}

// ---- a local registry, as `cargo local-registry` would write it ----

/// Writes a Cargo local registry at `root` serving `crates`: each `.crate` file next to
/// an index entry derived from the `Cargo.toml` inside it.
fn local_registry(root: &Path, crates: &[PathBuf]) {
    let mut index: BTreeMap<PathBuf, String> = BTreeMap::new();
    fs::create_dir_all(root.join("index")).unwrap();
    for file in crates {
        let bytes = fs::read(file).unwrap();
        let manifest: toml::Table = read_manifest(&bytes).parse().unwrap();
        let entry = index_entry(&manifest, &sha256_hex(&bytes));
        let name = entry["name"].as_str().unwrap().to_owned();
        let vers = entry["vers"].as_str().unwrap();
        fs::write(root.join(format!("{name}-{vers}.crate")), &bytes).unwrap();
        let line = serde_json::to_string(&entry).unwrap() + "\n";
        index
            .entry(root.join("index").join(index_path(&name)))
            .or_default()
            .push_str(&line);
    }
    for (path, lines) in index {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, lines).unwrap();
    }
}

/// The index path of a crate name (cargo's registry layout).
fn index_path(name: &str) -> String {
    let n = name.to_lowercase();
    match n.len() {
        1 => format!("1/{n}"),
        2 => format!("2/{n}"),
        3 => format!("3/{}/{n}", &n[..1]),
        _ => format!("{}/{}/{n}", &n[..2], &n[2..4]),
    }
}

/// The `Cargo.toml` inside a `.crate`.
fn read_manifest(crate_bytes: &[u8]) -> String {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(crate_bytes));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().into_owned();
        if path.components().count() == 2 && path.ends_with("Cargo.toml") {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            return text;
        }
    }
    panic!("no Cargo.toml in the .crate");
}

/// A registry index entry (one JSON line) for a package manifest.
fn index_entry(manifest: &toml::Table, cksum: &str) -> Value {
    let package = manifest["package"].as_table().unwrap();
    let mut deps = Vec::new();
    let mut add = |table: Option<&toml::Value>, kind: &str, target: Option<&str>| {
        for (name, spec) in table.and_then(|t| t.as_table()).into_iter().flatten() {
            let get = |key: &str| spec.as_table().and_then(|t| t.get(key));
            let req = match spec {
                toml::Value::String(req) => req.clone(),
                _ => get("version")
                    .and_then(|v| v.as_str())
                    .unwrap_or("*")
                    .to_owned(),
            };
            let features: Vec<&str> = get("features")
                .and_then(|f| f.as_array())
                .map(|a| a.iter().filter_map(|f| f.as_str()).collect())
                .unwrap_or_default();
            deps.push(json!({
                "name": name,
                "req": req,
                "features": features,
                "optional": get("optional").and_then(|v| v.as_bool()).unwrap_or(false),
                "default_features": get("default-features")
                    .or_else(|| get("default_features"))
                    .and_then(|v| v.as_bool())
                    .unwrap_or(true),
                "target": target,
                "kind": kind,
                "registry": null,
                "package": get("package").and_then(|v| v.as_str()),
            }));
        }
    };
    // Dev-dependencies play no part in resolving a dependency's graph.
    for (key, kind) in [("dependencies", "normal"), ("build-dependencies", "build")] {
        add(manifest.get(key), kind, None);
        for (cfg, table) in manifest
            .get("target")
            .and_then(|t| t.as_table())
            .into_iter()
            .flatten()
        {
            add(table.get(key), kind, Some(cfg));
        }
    }
    let features: BTreeMap<String, Vec<String>> = manifest
        .get("features")
        .and_then(|f| f.as_table())
        .map(|t| {
            t.iter()
                .map(|(k, v)| {
                    let list = v
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| s.as_str().unwrap().to_owned());
                    (k.clone(), list.collect())
                })
                .collect()
        })
        .unwrap_or_default();
    // Features using the `dep:` / `?/` syntax must be in `features2` (index format v2).
    let new_syntax = features
        .values()
        .flatten()
        .any(|f| f.starts_with("dep:") || f.contains("?/"));
    let mut entry = json!({
        "name": package["name"].as_str().unwrap(),
        "vers": package["version"].as_str().unwrap(),
        "deps": deps,
        "cksum": cksum,
        "features": if new_syntax { json!({}) } else { json!(features) },
        "yanked": false,
        "links": package.get("links").and_then(|l| l.as_str()),
    });
    if new_syntax {
        entry["features2"] = json!(features);
        entry["v"] = json!(2);
    }
    entry
}

/// The `.crate` files of the generated crates' build-dependencies (xz4rust and what it
/// needs), taken from Cargo's download cache: the workspace lists xz4rust as a
/// dev-dependency of this crate, so building these tests put them there.
fn build_dependency_crates() -> Vec<PathBuf> {
    let lock: toml::Table = fs::read_to_string(workspace().join("Cargo.lock"))
        .unwrap()
        .parse()
        .unwrap();
    let packages = lock["package"].as_array().unwrap();
    let find = |spec: &str| {
        let mut words = spec.split(' ');
        let (name, version) = (words.next().unwrap(), words.next());
        packages
            .iter()
            .find(|p| {
                p["name"].as_str() == Some(name)
                    && version.map_or(true, |v| p["version"].as_str() == Some(v))
            })
            .unwrap_or_else(|| panic!("{spec} is not in Cargo.lock"))
    };
    let mut todo = vec!["xz4rust".to_owned()];
    let mut seen = BTreeMap::new();
    while let Some(spec) = todo.pop() {
        let p = find(&spec);
        let id = format!(
            "{}-{}",
            p["name"].as_str().unwrap(),
            p["version"].as_str().unwrap()
        );
        if seen.insert(id, ()).is_some() {
            continue;
        }
        for dep in p
            .get("dependencies")
            .and_then(|d| d.as_array())
            .into_iter()
            .flatten()
        {
            todo.push(dep.as_str().unwrap().to_owned());
        }
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
    let caches: Vec<PathBuf> = fs::read_dir(home.join("registry/cache"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    seen.into_keys()
        .map(|id| {
            caches
                .iter()
                .map(|c| c.join(format!("{id}.crate")))
                .find(|p| p.is_file())
                .unwrap_or_else(|| {
                    panic!(
                        "{id}.crate is not in Cargo's cache under {}",
                        home.display()
                    )
                })
        })
        .collect()
}

/// Copies the `.crate` at `from` to `to` with `path` (below `root/`) replaced by `data`.
fn repack_with(from: &Path, to: &Path, root: &str, path: &str, data: &[u8]) {
    let bytes = fs::read(from).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
    let mut entries = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let mut contents = Vec::new();
        entry.read_to_end(&mut contents).unwrap();
        let rel = name.strip_prefix(&format!("{root}/")).unwrap().to_owned();
        let contents = if rel == path { data.to_vec() } else { contents };
        entries.push(supermachine_packer::archive::Entry {
            path: rel,
            data: contents,
            mode: 0o644,
        });
    }
    fs::write(
        to,
        supermachine_packer::archive::crate_file(root, &entries, 0).unwrap(),
    )
    .unwrap();
}

/// The consumer cross-built for `aarch64-unknown-linux-musl` (the static-musl target a VMM
/// on an aarch64 host uses): the facade must pick the aarch64 crate (the consumer uses
/// items only that crate has), Cargo must fetch only it, and the binary, run under QEMU
/// user-mode emulation, must extract exactly the host build's aarch64 blobs.
#[test]
fn consumer_cross_built_for_aarch64_musl_picks_the_aarch64_crate() {
    const TARGET: &str = "aarch64-unknown-linux-musl";
    let qemu_user = Command::new("qemu-aarch64").arg("--version").output();
    assert!(
        qemu_user.is_ok_and(|o| o.status.success()),
        "qemu-aarch64 (user-mode emulation) is needed to run the aarch64 consumer: install \
         qemu-user (sudo bash .ci/install)"
    );
    let packed = packed();
    let inputs = arch_inputs(&AARCH64);
    let consumer = Consumer::new(&packed.registry);
    // `cargo run` with the target from the environment, so Consumer::run serves as is.
    let env: [(&str, &Path); 3] = [
        ("CARGO_BUILD_TARGET", Path::new(TARGET)),
        (
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER",
            Path::new("aarch64-linux-gnu-gcc"),
        ),
        (
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER",
            Path::new("qemu-aarch64"),
        ),
    ];
    let (dir, build_id) = consumer.run("aarch64", &env);

    // It really is a static aarch64 executable: ELF, e_machine EM_AARCH64 (183), and no
    // program interpreter (PT_INTERP = 3) among its program headers.
    let binary = fs::read(
        consumer
            .tmp
            .path()
            .join(format!("target/{TARGET}/debug/consumer")),
    )
    .unwrap();
    assert_eq!(&binary[..4], b"\x7fELF");
    assert_eq!(binary[4], 2, "ELFCLASS64");
    assert_eq!(
        u16::from_le_bytes([binary[18], binary[19]]),
        183,
        "e_machine"
    );
    let phoff = u64::from_le_bytes(binary[32..40].try_into().unwrap()) as usize;
    let phentsize = u16::from_le_bytes([binary[54], binary[55]]) as usize;
    let phnum = u16::from_le_bytes([binary[56], binary[57]]) as usize;
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let p_type = u32::from_le_bytes(binary[at..at + 4].try_into().unwrap());
        assert_ne!(p_type, 3, "the musl consumer must be statically linked");
    }

    // Every aarch64 blob (kernel Image, agent, init-oci, smpark.ko) came out intact.
    for blob in AARCH64.blobs {
        let want = fs::read(inputs.join(blob.input)).unwrap();
        for path in [dir.join(blob.name), dir.join("nested").join(blob.name)] {
            let got = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(
                got == want,
                "{} differs from out/aarch64/{}",
                path.display(),
                blob.input
            );
            assert_eq!(mode(&path), blob.mode, "mode of {}", path.display());
        }
    }
    let entry = manifest_crate(&packed.manifest, AARCH64.crate_name);
    assert_eq!(
        build_id,
        entry["build_id"].as_str().unwrap(),
        "BUILD_ID differs from the aarch64 crate's in manifest.json"
    );

    // Only the aarch64 crate was compiled. (A cross build may still download the x86_64
    // crate: Cargo fetches what the facade's cfg tables activate for the host platform
    // too, in case a build script needs it, but never builds it for the target.)
    let built = file_names_under(&consumer.tmp.path().join("target"));
    assert!(
        built
            .iter()
            .any(|n| n.starts_with("libsupermachine_kernel_aarch64-") && n.ends_with(".rlib")),
        "no aarch64 crate library among the build outputs"
    );
    let x86 = built
        .iter()
        .filter(|n| n.contains("supermachine_kernel_x86_64") || n.contains(X86_64.crate_name))
        .collect::<Vec<_>>();
    assert!(x86.is_empty(), "the x86_64 crate was built: {x86:?}");
}

/// The names of every file and directory below `dir`.
fn file_names_under(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).into_iter().flatten() {
            let e = e.unwrap();
            names.push(e.file_name().to_string_lossy().into_owned());
            if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
            }
        }
    }
    names
}

// ---- the published API ----

/// The published release whose public API ours must have, item for item.
const PUBLISHED: &str = "0.7.70";

/// A public item: its name, its Rust type, and whether it is `#[deprecated]`.
type Item = (String, String, bool);

/// Every `pub const NAME: TYPE` and `pub fn NAME(ARGS) -> RET` of a published `lib.rs`.
fn public_items(lib_rs: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let mut deprecated = false;
    for line in lib_rs.lines().map(str::trim) {
        if line.starts_with("#[deprecated") {
            deprecated = true;
        } else if let Some(rest) = line.strip_prefix("pub const ") {
            let (name, rest) = rest.split_once(':').unwrap();
            let ty = rest.split_once('=').unwrap().0.trim();
            items.push((name.trim().to_owned(), ty.to_owned(), deprecated));
            deprecated = false;
        } else if let Some(rest) = line.strip_prefix("pub fn ") {
            let (name, rest) = rest.split_once('(').unwrap();
            let (args, rest) = rest.split_once(')').unwrap();
            let ret = rest.trim().trim_end_matches('{').trim();
            let arg_types: Vec<&str> = args
                .split(',')
                .filter(|a| !a.trim().is_empty())
                .map(|a| a.split_once(':').unwrap().1.trim())
                .collect();
            items.push((
                name.to_owned(),
                format!("fn({}) {ret}", arg_types.join(", ")),
                deprecated,
            ));
            deprecated = false;
        } else if line.starts_with("pub ") && !line.starts_with("pub use") {
            panic!("a public item this test does not know how to check: {line}");
        } else if !line.starts_with("#[") && !line.starts_with("///") && !line.is_empty() {
            deprecated = false;
        }
    }
    items
}

/// A consumer naming every item with its published type: consts are bound to constants
/// of that type, functions coerced to function pointers of that signature.
fn api_consumer(per_arch: &[(&str, Vec<Item>)]) -> String {
    let mut src = String::from("#![allow(dead_code)]\n");
    for (krate, items) in per_arch {
        let module = krate.replace('-', "_");
        src.push_str(&format!("mod {module} {{\n    use {module} as k;\n"));
        // Deprecated items are used without an allow: the test checks the warning.
        for (name, ty, _deprecated) in items {
            let lower = name.to_lowercase();
            if ty.starts_with("fn(") {
                src.push_str(&format!(
                    "    pub fn use_{lower}() -> {ty} {{\n        k::{name}\n    }}\n"
                ));
            } else {
                src.push_str(&format!("    pub const {name}: {ty} = k::{name};\n"));
            }
        }
        src.push_str("}\n");
    }
    // The facade re-exports the target's crate: its common items at least.
    src.push_str(
        "pub fn facade() -> (&'static [u8], usize, &'static [u8], usize) {\n    \
         (supermachine_kernel::KERNEL_BYTES, supermachine_kernel::KERNEL_LEN, \
         supermachine_kernel::SUPERMACHINE_AGENT_BYTES, supermachine_kernel::SUPERMACHINE_AGENT_LEN)\n}\n\
         pub fn facade_fns() -> [fn(&std::path::Path) -> std::io::Result<()>; 4] {\n    [\
         supermachine_kernel::extract_kernel_to, supermachine_kernel::extract_kernel_to_with_parents, \
         supermachine_kernel::extract_supermachine_agent_to, \
         supermachine_kernel::extract_supermachine_agent_to_with_parents]\n}\n\
         fn main() {}\n",
    );
    src
}

fn api_manifest() -> String {
    let deps: String = [FACADE, X86_64.crate_name, AARCH64.crate_name]
        .iter()
        .map(|n| format!("{n} = \"={PUBLISHED}\"\n"))
        .collect();
    format!(
        "[package]\nname = \"api-consumer\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
         [dependencies]\n{deps}\n[workspace]\n"
    )
}

fn cargo_in(dir: &Path, home: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    if let Some(home) = home {
        cmd.env("CARGO_HOME", home);
    }
    for arch in ALL {
        for blob in arch.blobs {
            cmd.env_remove(blob.env);
        }
    }
    cmd.output().unwrap()
}

/// The published crates' `lib.rs`, through a real `cargo metadata` of a project that
/// depends on them (from crates.io, with the user's Cargo home and its cache).
fn published_sources(dir: &Path) -> Vec<(&'static str, String)> {
    fs::create_dir_all(dir.join("src")).unwrap();
    fs::write(dir.join("Cargo.toml"), api_manifest()).unwrap();
    fs::write(dir.join("src/main.rs"), "fn main() {}\n").unwrap();
    let out = cargo_in(dir, None, &["metadata", "--format-version", "1"]);
    assert!(
        out.status.success(),
        "cargo metadata of the published {PUBLISHED} crates failed (they come from \
         crates.io):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    [X86_64.crate_name, AARCH64.crate_name]
        .into_iter()
        .map(|name| {
            let p = meta["packages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .unwrap();
            assert_eq!(p["version"], PUBLISHED);
            let lib = Path::new(p["manifest_path"].as_str().unwrap())
                .parent()
                .unwrap()
                .join("src/lib.rs");
            (name, fs::read_to_string(lib).unwrap())
        })
        .collect()
}

/// `cargo check` of the consumer for both arches; returns the warnings of each.
fn check_both_arches(dir: &Path, home: Option<&Path>, what: &str) -> Vec<String> {
    ["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"]
        .iter()
        .map(|target| {
            let mut args = vec!["check", "--target", target];
            if home.is_some() {
                args.push("--offline");
            }
            let out = cargo_in(dir, home, &args);
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(
                out.status.success(),
                "the consumer of every published item does not compile against {what} for \
                 {target}:\n{stderr}"
            );
            stderr
        })
        .collect()
}

#[test]
fn consumer_of_every_published_item_compiles_against_ours_on_both_arches() {
    assert_eq!(
        VERSION, PUBLISHED,
        "the default version must be the published one"
    );
    let tmp = tempfile::tempdir().unwrap();

    // The item list and types, from the published sources themselves.
    let published = tmp.path().join("published");
    let sources = published_sources(&published);
    let items: Vec<(&str, Vec<Item>)> = sources
        .iter()
        .map(|(name, src)| (*name, public_items(src)))
        .collect();
    let count: usize = items.iter().map(|(_, i)| i.len()).sum();
    assert_eq!(
        count, 30,
        "the published crates have 30 public items: {items:?}"
    );
    let deprecated: Vec<&str> = items
        .iter()
        .flat_map(|(_, i)| i.iter().filter(|x| x.2).map(|x| x.0.as_str()))
        .collect();
    assert_eq!(deprecated, ["extract_to", "extract_to_with_parents"]);
    let consumer = api_consumer(&items);
    fs::write(published.join("src/main.rs"), &consumer).unwrap();

    // The same consumer compiles against the published crates (so it is a fair test)...
    let warnings_published = check_both_arches(&published, None, "the published crates");

    // ...and, unchanged, against ours, offline from the local registry.
    let packed = packed();
    let ours = Consumer::new(&packed.registry);
    let root = ours.tmp.path().join("consumer");
    fs::write(root.join("Cargo.toml"), api_manifest()).unwrap();
    fs::write(root.join("src/main.rs"), &consumer).unwrap();
    let warnings_ours = check_both_arches(
        &root,
        Some(&ours.tmp.path().join("cargo-home")),
        "our crates",
    );

    // The deprecated aliases are still deprecated, with the published notes.
    for (what, warnings) in [("published", &warnings_published), ("ours", &warnings_ours)] {
        for w in warnings {
            for (name, note) in [
                ("extract_to", "use extract_kernel_to"),
                (
                    "extract_to_with_parents",
                    "use extract_kernel_to_with_parents",
                ),
            ] {
                let want = format!(
                    "use of deprecated function `supermachine_kernel_aarch64::{name}`: {note}"
                );
                assert!(w.contains(&want), "{what}: no {want:?} in:\n{w}");
            }
        }
    }
}

/// Crates versioned `0.7.70+meta-supermachine` still satisfy an `=0.7.70` pin (Cargo
/// ignores build metadata when matching), so `[patch.crates-io]` takes them for a
/// dependent that pins the published release, as `supermachine` does.
#[test]
fn build_metadata_version_satisfies_the_published_pin_through_patch() {
    let packed = packed();
    let tmp = tempfile::tempdir().unwrap();
    let version = format!("{PUBLISHED}+meta-supermachine");
    let out = tmp.path().join("crates");
    let inputs: Vec<PathBuf> = ALL.iter().map(arch_inputs).collect();
    supermachine_packer::pack(&supermachine_packer::Options {
        templates: workspace().join("files/crates"),
        out: out.clone(),
        x86_64: Some(inputs[0].clone()),
        aarch64: Some(inputs[1].clone()),
        license_dir: licenses_dir(),
        agent_license: None,
        cargo_lock: None,
        source_date_epoch: 1_700_000_000,
        source_note: Some("the test's inputs".into()),
        version: version.clone(),
    })
    .unwrap();

    let consumer = Consumer::new(&packed.registry);
    let root = consumer.tmp.path().join("consumer");
    let patch: String = [FACADE, X86_64.crate_name, AARCH64.crate_name]
        .iter()
        .map(|n| {
            format!(
                "{n} = {{ path = {:?} }}\n",
                out.join(format!("{n}-{version}"))
            )
        })
        .collect();
    fs::write(
        root.join("Cargo.toml"),
        format!(
            "[package]\nname = \"consumer\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
             [dependencies]\nsupermachine-kernel = \"={PUBLISHED}\"\n\n\
             [patch.crates-io]\n{patch}\n[workspace]\n"
        ),
    )
    .unwrap();
    let meta = consumer.cargo("metadata", &["--format-version", "1"], &[]);
    let stderr = String::from_utf8_lossy(&meta.stderr);
    assert!(meta.status.success(), "{stderr}");
    assert!(
        !stderr.contains("was not used"),
        "the patch was not used:\n{stderr}"
    );
    let meta: Value = serde_json::from_slice(&meta.stdout).unwrap();
    let facade = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == FACADE)
        .unwrap();
    assert_eq!(facade["version"], json!(version));
    assert_eq!(facade["source"], Value::Null, "{facade}");
    let (_, build_id) = consumer.run("meta", &[]);
    assert_eq!(
        build_id,
        manifest_crate(&packed.manifest, host_arch().crate_name)["build_id"]
            .as_str()
            .unwrap()
    );
}
