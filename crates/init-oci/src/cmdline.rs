//! The `supermachine.*` words of the kernel command line (contract section 3).

use std::fmt;

/// What the VMM asked for on the kernel command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootArgs {
    /// `supermachine.host_time=<s>[.<frac>]`: the host's clock at bake time.
    pub host_time: Option<HostTime>,
    /// `supermachine.kcache=1`: pause for the kernel-boot-cache snapshot.
    pub kcache: bool,
    /// `supermachine.pre_exec_sync=1`: pause before forking the workload.
    pub pre_exec_sync: bool,
    /// `supermachine.host_ipv6=0|1`: whether the host can reach IPv6 (absent: unknown).
    pub host_ipv6: Option<bool>,
    /// `supermachine.tsi_token=<hex>`: read by the kernel's TSI; init only checks its shape.
    pub tsi_token: Option<String>,
}

/// Seconds and nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostTime {
    pub secs: u64,
    pub nanos: u32,
}

/// A `supermachine.*` value that cannot be used; boot goes on without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdlineWarning {
    pub key: &'static str,
    pub value: String,
    pub want: &'static str,
}

impl fmt::Display for CmdlineWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ignoring {}={:?}: want {}",
            self.key, self.value, self.want
        )
    }
}

const HOST_TIME: &str = "supermachine.host_time";
const KCACHE: &str = "supermachine.kcache";
const PRE_EXEC_SYNC: &str = "supermachine.pre_exec_sync";
const HOST_IPV6: &str = "supermachine.host_ipv6";
const TSI_TOKEN: &str = "supermachine.tsi_token";

impl BootArgs {
    /// Reads the text of `/proc/cmdline`. Unusable values are left out and reported,
    /// never fatal: a wrong clock or a missed pause is better than no guest. When a key
    /// repeats, the last one wins (the worker appends after the bake's words).
    pub fn parse(cmdline: &str) -> (Self, Vec<CmdlineWarning>) {
        let mut args = Self::default();
        let mut warnings = Vec::new();
        for word in words(cmdline) {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            let value = value.trim_matches('"');
            let bad = |key, want| CmdlineWarning {
                key,
                value: value.to_string(),
                want,
            };
            match key {
                HOST_TIME => match parse_time(value) {
                    Some(t) => args.host_time = Some(t),
                    None => warnings.push(bad(HOST_TIME, "seconds since 1970, e.g. 1764720000")),
                },
                KCACHE => match flag(value) {
                    Some(on) => args.kcache = on,
                    None => warnings.push(bad(KCACHE, "0 or 1")),
                },
                PRE_EXEC_SYNC => match flag(value) {
                    Some(on) => args.pre_exec_sync = on,
                    None => warnings.push(bad(PRE_EXEC_SYNC, "0 or 1")),
                },
                HOST_IPV6 => match flag(value) {
                    Some(on) => args.host_ipv6 = Some(on),
                    None => warnings.push(bad(HOST_IPV6, "0 or 1")),
                },
                TSI_TOKEN => {
                    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_hexdigit()) {
                        args.tsi_token = Some(value.to_string());
                    } else {
                        warnings.push(bad(TSI_TOKEN, "hex digits"));
                    }
                }
                _ => {}
            }
        }
        (args, warnings)
    }
}

fn flag(value: &str) -> Option<bool> {
    match value {
        "1" => Some(true),
        "0" => Some(false),
        _ => None,
    }
}

fn parse_time(value: &str) -> Option<HostTime> {
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 9 {
        return None;
    }
    let secs = secs.parse().ok()?;
    let nanos = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    Some(HostTime { secs, nanos })
}

/// Splits on whitespace outside double quotes, as the kernel splits its parameters.
fn words(cmdline: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let mut start = None;
    let mut quoted = false;
    for (at, ch) in cmdline.char_indices() {
        if ch == '"' {
            quoted = !quoted;
        }
        if ch.is_whitespace() && !quoted {
            if let Some(begin) = start.take() {
                words.push(&cmdline[begin..at]);
            }
        } else if start.is_none() {
            start = Some(at);
        }
    }
    if let Some(begin) = start {
        words.push(&cmdline[begin..]);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hvf_command_line() {
        let line = "earlycon=pl011,mmio32,0x09000000 console=ttyAMA0 quiet loglevel=4 tsi_hijack \
                    supermachine.host_time=1764720000 supermachine.kcache=1 \
                    supermachine.pre_exec_sync=1 supermachine.tsi_token=00ff \
                    supermachine.host_ipv6=0 ipv6.disable=1\n";
        let (args, warnings) = BootArgs::parse(line);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            args,
            BootArgs {
                host_time: Some(HostTime {
                    secs: 1_764_720_000,
                    nanos: 0
                }),
                kcache: true,
                pre_exec_sync: true,
                host_ipv6: Some(false),
                tsi_token: Some("00ff".into()),
            }
        );
    }

    #[test]
    fn absent_words_are_defaults() {
        let (args, warnings) = BootArgs::parse("console=ttyAMA0 panic=-1");
        assert_eq!(args, BootArgs::default());
        assert!(warnings.is_empty());
    }

    #[test]
    fn fractional_time_and_last_word_wins() {
        let (args, _) = BootArgs::parse(
            "supermachine.host_time=5 supermachine.host_time=\"7.25\" supermachine.kcache=1 supermachine.kcache=0",
        );
        assert_eq!(
            args.host_time,
            Some(HostTime {
                secs: 7,
                nanos: 250_000_000
            })
        );
        assert!(!args.kcache);
    }

    #[test]
    fn bad_values_are_warnings_naming_the_key() {
        let (args, warnings) = BootArgs::parse(
            "supermachine.host_time=-3 supermachine.kcache=yes supermachine.tsi_token=zz supermachine.host_ipv6=",
        );
        assert_eq!(args, BootArgs::default());
        let keys: Vec<&str> = warnings.iter().map(|w| w.key).collect();
        assert_eq!(keys, [HOST_TIME, KCACHE, TSI_TOKEN, HOST_IPV6]);
        assert_eq!(
            warnings[1].to_string(),
            "ignoring supermachine.kcache=\"yes\": want 0 or 1"
        );
    }

    #[test]
    fn similar_keys_and_quoted_spaces_do_not_match() {
        let (args, _) = BootArgs::parse(
            "xsupermachine.kcache=1 supermachine.kcachex=1 init_arg=\"a supermachine.kcache=1\"",
        );
        assert!(!args.kcache);
    }
}
