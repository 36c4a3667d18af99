//! Rendering the guest `/init` from `files/init/init.sh.in` and the parameters in
//! `files/init/init.conf`.
//!
//! The same `init.conf` is read by `init-oci`'s build script, so both guest inits agree
//! on the kernel command line words, mount points and the agent's location.

use std::collections::BTreeMap;
use std::fmt;

/// A problem with the parameters file or the template, with the line it is on.
#[derive(Debug, PartialEq, Eq)]
pub enum TemplateError {
    /// A parameters line is not `KEY=value` with an upper-case key and a plain value.
    BadParameter { line: usize, text: String },
    /// The same key is set twice.
    DuplicateParameter { line: usize, key: String },
    /// The template names a key that the parameters file does not set.
    UnknownKey { line: usize, key: String },
    /// An `@` that does not start a `@KEY@` placeholder.
    StrayAt { line: usize },
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadParameter { line, text } => write!(
                f,
                "init.conf line {line}: expected KEY=value (upper-case key, value without spaces or quotes), found {text:?}"
            ),
            Self::DuplicateParameter { line, key } => {
                write!(f, "init.conf line {line}: {key} is set twice; keep one")
            }
            Self::UnknownKey { line, key } => write!(
                f,
                "template line {line}: @{key}@ is not set in init.conf; add {key}=... there"
            ),
            Self::StrayAt { line } => write!(
                f,
                "template line {line}: '@' outside an @KEY@ placeholder; write a literal @ as @@"
            ),
        }
    }
}

impl std::error::Error for TemplateError {}

/// Parses `KEY=value` lines; `#` comments and blank lines are skipped.
pub fn parse_params(text: &str) -> Result<BTreeMap<String, String>, TemplateError> {
    let mut params = BTreeMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let bad = || TemplateError::BadParameter {
            line,
            text: raw.to_string(),
        };
        let (key, value) = trimmed.split_once('=').ok_or_else(bad)?;
        let key_ok = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        // Values are pasted into shell and Rust source unquoted: keep them plain.
        let value_ok = !value.is_empty()
            && value
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"\"'`$\\@;&|<>".contains(&b));
        if !key_ok || !value_ok {
            return Err(bad());
        }
        if params.insert(key.to_string(), value.to_string()).is_some() {
            return Err(TemplateError::DuplicateParameter {
                line,
                key: key.to_string(),
            });
        }
    }
    Ok(params)
}

/// Replaces every `@KEY@` in `template` by its value; `@@` stands for a literal `@`.
pub fn render(template: &str, params: &BTreeMap<String, String>) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    for (index, line_text) in template.split_inclusive('\n').enumerate() {
        let line = index + 1;
        let mut rest = line_text;
        while let Some(at) = rest.find('@') {
            out.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if let Some(stripped) = after.strip_prefix('@') {
                out.push('@');
                rest = stripped;
                continue;
            }
            let end = after.find('@').ok_or(TemplateError::StrayAt { line })?;
            let key = &after[..end];
            if key.is_empty()
                || !key
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(TemplateError::StrayAt { line });
            }
            let value = params.get(key).ok_or_else(|| TemplateError::UnknownKey {
                line,
                key: key.to_string(),
            })?;
            out.push_str(value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(text: &str) -> BTreeMap<String, String> {
        parse_params(text).expect("valid parameters")
    }

    #[test]
    fn renders_placeholders_and_literal_at() {
        let p = params("# comment\n\nROOT=/dev/vda\nPORT=7100\n");
        let out = render("mount @ROOT@ # port @PORT@, mail a@@b\n", &p).expect("renders");
        assert_eq!(out, "mount /dev/vda # port 7100, mail a@b\n");
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = render("a\nb @MISSING@\n", &params("ROOT=x\n")).unwrap_err();
        assert_eq!(
            err,
            TemplateError::UnknownKey {
                line: 2,
                key: "MISSING".into()
            }
        );
        assert!(err.to_string().contains("add MISSING=... there"));
    }

    #[test]
    fn stray_at_is_refused() {
        let err = render("echo user@host\n", &params("A=b\n")).unwrap_err();
        assert_eq!(err, TemplateError::StrayAt { line: 1 });
    }

    #[test]
    fn bad_and_duplicate_parameters_are_refused() {
        assert!(matches!(
            parse_params("lower=x\n"),
            Err(TemplateError::BadParameter { line: 1, .. })
        ));
        assert!(matches!(
            parse_params("A=has space\n"),
            Err(TemplateError::BadParameter { line: 1, .. })
        ));
        assert!(matches!(
            parse_params("A=$(reboot)\n"),
            Err(TemplateError::BadParameter { line: 1, .. })
        ));
        assert_eq!(
            parse_params("A=1\nA=2\n"),
            Err(TemplateError::DuplicateParameter {
                line: 2,
                key: "A".into()
            })
        );
    }

    #[test]
    fn the_shipped_template_renders_completely() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../files/init");
        let conf = std::fs::read_to_string(format!("{dir}/init.conf")).expect("init.conf");
        let template = std::fs::read_to_string(format!("{dir}/init.sh.in")).expect("init.sh.in");
        let out = render(&template, &parse_params(&conf).expect("parses")).expect("renders");
        assert!(out.starts_with("#!/bin/busybox sh\n"));
        // A literal @ may remain (date -s @N); an @KEY@ placeholder may not.
        let left = out
            .split('@')
            .skip(1)
            .step_by(2)
            .any(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'));
        assert!(!left, "placeholder left in rendered init");
    }
}
