//! The child's environment, merged as the published agent merges it: the agent's own
//! environment, then names from PID 1's environment the agent lacks, then the
//! request's map on top (the request wins).

use std::collections::BTreeMap;

use crate::spawn::DEFAULT_PATH;

/// Parses `/proc/<pid>/environ` content (NUL-separated `NAME=value`).
fn parse_environ(raw: &[u8]) -> Vec<(String, String)> {
    raw.split(|&b| b == 0)
        .filter_map(|entry| {
            let text = std::str::from_utf8(entry).ok()?;
            let (k, v) = text.split_once('=')?;
            (!k.is_empty()).then(|| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// Merges `own` (the agent's environment), `pid1` (PID 1's) and `request`. Keeps the
/// agent's order, appends PID 1's extra names, then sets the request's; adds a
/// default `PATH` when none of them has one.
pub fn merge(
    own: Vec<(String, String)>,
    pid1: Vec<(String, String)>,
    request: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut out = own;
    for (k, v) in pid1 {
        if !out.iter().any(|(name, _)| *name == k) {
            out.push((k, v));
        }
    }
    for (k, v) in request {
        match out.iter_mut().find(|(name, _)| name == k) {
            Some(slot) => slot.1 = v.clone(),
            None => out.push((k.clone(), v.clone())),
        }
    }
    if !out.iter().any(|(k, _)| k == "PATH") {
        out.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    out
}

/// The environment for a request's children.
pub fn for_request(request: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let own: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let pid1 = if std::process::id() == 1 {
        Vec::new()
    } else {
        std::fs::read("/proc/1/environ")
            .map(|raw| parse_environ(&raw))
            .unwrap_or_default()
    };
    merge(own, pid1, request)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn request_wins_and_pid1_fills_gaps() {
        let mut req = BTreeMap::new();
        req.insert("A".to_string(), "req".to_string());
        req.insert("NEW".to_string(), "n".to_string());
        let got = merge(
            kv(&[("A", "own"), ("B", "own"), ("PATH", "/x")]),
            kv(&[("B", "pid1"), ("C", "pid1")]),
            &req,
        );
        assert_eq!(
            got,
            kv(&[
                ("A", "req"),
                ("B", "own"),
                ("PATH", "/x"),
                ("C", "pid1"),
                ("NEW", "n")
            ])
        );
        let bare = merge(Vec::new(), Vec::new(), &BTreeMap::new());
        assert_eq!(bare, kv(&[("PATH", DEFAULT_PATH)]));
    }

    #[test]
    fn environ_parsing_skips_junk() {
        assert_eq!(
            parse_environ(b"A=1\0=x\0noeq\0B=a=b\0\0"),
            kv(&[("A", "1"), ("B", "a=b")])
        );
    }
}
