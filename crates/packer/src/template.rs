//! Crate templates: plain files under `files/crates/`, where `NAME.in` is rendered to
//! `NAME` by replacing `@PLACEHOLDER@`s and every other file is copied as it is.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Placeholder values, by name without the `@`s.
pub type Vars = BTreeMap<&'static str, String>;

/// Replaces every `@NAME@` in `text`. An `@NAME@` with no value is an error, so a typo in a
/// template cannot reach a published crate.
pub fn render(text: &str, vars: &Vars, file: &Path) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('@') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let name_len =
            after.find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'));
        match name_len {
            Some(n) if n > 0 && after[n..].starts_with('@') => {
                let name = &after[..n];
                let value = vars.get(name).ok_or_else(|| Error::Template {
                    file: file.to_path_buf(),
                    problem: format!("unknown placeholder @{name}@ (known: {})", known(vars)),
                })?;
                out.push_str(value);
                rest = &after[n + 1..];
            }
            // Not a placeholder (an e-mail address, a lone @): keep it.
            _ => {
                out.push('@');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn known(vars: &Vars) -> String {
    vars.keys()
        .map(|k| format!("@{k}@"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Renders the template directory `dir` into `(relative path, contents)` pairs, sorted by
/// path. Paths use `/` whatever the host, as in a `.crate`.
pub fn render_dir(dir: &Path, vars: &Vars) -> Result<Vec<(String, Vec<u8>)>> {
    if !dir.is_dir() {
        return Err(Error::Missing {
            file: dir.to_path_buf(),
            hint: "--templates must point at the repository's files/crates directory".into(),
        });
    }
    let mut files = Vec::new();
    for path in walk(dir)? {
        let rel = path.strip_prefix(dir).expect("walk stays below dir");
        let mut name: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let bytes = fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let last = name.last_mut().expect("a file has a name");
        let contents = if let Some(stem) = last.strip_suffix(".in") {
            *last = stem.to_owned();
            let text = String::from_utf8(bytes).map_err(|_| Error::Template {
                file: path.clone(),
                problem: "not UTF-8".into(),
            })?;
            render(&text, vars, &path)?.into_bytes()
        } else {
            bytes
        };
        files.push((name.join("/"), contents));
    }
    files.sort();
    Ok(files)
}

/// Every regular file below `dir`, sorted.
fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io(dir, e))?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            out.extend(walk(&path)?);
        } else {
            out.push(path);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars::from([("VERSION", "0.8.0".to_owned()), ("NAME", "x".to_owned())])
    }

    #[test]
    fn replaces_placeholders_and_keeps_other_ats() {
        let out = render(
            "v@VERSION@ of @NAME@ by a@b.c @ end@",
            &vars(),
            Path::new("t"),
        )
        .unwrap();
        assert_eq!(out, "v0.8.0 of x by a@b.c @ end@");
    }

    #[test]
    fn unknown_placeholder_names_file_and_placeholder() {
        let err = render(
            "@VERSOIN@",
            &vars(),
            Path::new("files/crates/x/Cargo.toml.in"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("files/crates/x/Cargo.toml.in"), "{err}");
        assert!(err.contains("@VERSOIN@"), "{err}");
    }
}
