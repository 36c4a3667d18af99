//! The crate graph of the Rust blobs (agent, `init-oci`), from the `Cargo.lock` they were
//! built with, for the SBOM. The lock file resolves every target and feature of the
//! workspace, so a blob's closure here is a superset of what is linked into it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::error::{Error, Result};

/// One locked package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// Crate name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// `source` of the lock entry (`registry+https://...`, `git+...`); none for
    /// workspace members and path dependencies.
    pub source: Option<String>,
    /// SHA-256 of the `.crate` file, for registry packages.
    pub checksum: Option<String>,
    /// Its direct dependencies, as (name, version).
    pub deps: Vec<(String, String)>,
}

/// A parsed `Cargo.lock`, keyed by (name, version).
#[derive(Debug, Clone, Default)]
pub struct Lock {
    /// Every package.
    pub packages: BTreeMap<(String, String), Package>,
}

impl Lock {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<Lock> {
        let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Missing {
                file: path.to_path_buf(),
                hint: "the Cargo.lock the agent and init-oci were built with, for the SBOM: \
                       the repository's Cargo.lock, or pass --cargo-lock FILE"
                    .into(),
            },
            _ => Error::io(path, e),
        })?;
        Lock::parse(&text).map_err(|problem| Error::invalid(path, problem))
    }

    /// Parses the text of a `Cargo.lock` (version 3 or 4).
    pub fn parse(text: &str) -> std::result::Result<Lock, String> {
        let doc: toml::Table = text
            .parse()
            .map_err(|e| format!("not a Cargo.lock (TOML error: {e})"))?;
        let entries = doc
            .get("package")
            .and_then(|p| p.as_array())
            .ok_or("not a Cargo.lock: no [[package]] entries")?;
        let mut raw = Vec::new();
        for entry in entries {
            let field = |key: &str| entry.get(key).and_then(|v| v.as_str()).map(String::from);
            let (Some(name), Some(version)) = (field("name"), field("version")) else {
                return Err("a [[package]] entry lacks name or version".into());
            };
            let deps: Vec<String> = entry
                .get("dependencies")
                .and_then(|d| d.as_array())
                .map(|d| {
                    d.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            raw.push((name, version, field("source"), field("checksum"), deps));
        }
        let mut by_name: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (name, version, ..) in &raw {
            by_name.entry(name).or_default().push(version);
        }
        let mut packages = BTreeMap::new();
        for (name, version, source, checksum, deps) in &raw {
            let mut resolved = Vec::new();
            for dep in deps {
                // "name", "name version" or "name version (source)".
                let mut words = dep.split_whitespace();
                let dep_name = words.next().unwrap_or_default();
                let dep_version = match words.next() {
                    Some(v) => v.to_owned(),
                    None => match by_name.get(dep_name).map(Vec::as_slice) {
                        Some([only]) => (*only).to_owned(),
                        _ => {
                            return Err(format!(
                                "{name} {version}: dependency {dep:?} is ambiguous or unknown"
                            ))
                        }
                    },
                };
                resolved.push((dep_name.to_owned(), dep_version));
            }
            packages.insert(
                (name.clone(), version.clone()),
                Package {
                    name: name.clone(),
                    version: version.clone(),
                    source: source.clone(),
                    checksum: checksum.clone(),
                    deps: resolved,
                },
            );
        }
        Ok(Lock { packages })
    }

    /// The workspace package `name` (no source) and everything it depends on, sorted by
    /// (name, version).
    pub fn closure(&self, name: &str) -> std::result::Result<Vec<&Package>, String> {
        let root = self
            .packages
            .values()
            .find(|p| p.name == name && p.source.is_none())
            .ok_or_else(|| format!("Cargo.lock has no workspace package {name}"))?;
        let mut seen = BTreeSet::new();
        let mut todo = vec![(root.name.clone(), root.version.clone())];
        while let Some(key) = todo.pop() {
            if !seen.insert(key.clone()) {
                continue;
            }
            let package = self.packages.get(&key).ok_or_else(|| {
                format!(
                    "Cargo.lock names {} {} as a dependency but has no entry for it",
                    key.0, key.1
                )
            })?;
            todo.extend(package.deps.iter().cloned());
        }
        Ok(seen.iter().map(|k| &self.packages[k]).collect())
    }
}
