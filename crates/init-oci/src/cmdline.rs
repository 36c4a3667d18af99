//! The supermachine words of the kernel command line.

use std::fmt;

use crate::conf;

/// What the VMM asked for on the kernel command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootArgs {
    /// Block device holding the read-only container rootfs (`supermachine.rootfs=`).
    pub rootfs: Option<String>,
    /// Block device holding the writable upper layer (`supermachine.upper=`); tmpfs if absent.
    pub upper: Option<String>,
    /// vsock port the agent should listen on (`supermachine.agent_port=`).
    pub agent_port: Option<u32>,
}

/// A supermachine word on the command line whose value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdlineError {
    /// A disk parameter that is not an absolute device path.
    RelativeDevice {
        /// The command line key.
        param: &'static str,
        /// The value given.
        value: String,
    },
    /// An agent port that is not a number in `0..=4294967295`.
    BadPort {
        /// The value given.
        value: String,
    },
}

impl fmt::Display for CmdlineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RelativeDevice { param, value } => write!(
                f,
                "{param}={value} is not a device path (write {param}=/dev/{})",
                value.trim_start_matches("dev/")
            ),
            Self::BadPort { value } => write!(
                f,
                "{}={value} is not a vsock port number (use a whole number such as 1024)",
                conf::AGENT_PORT_PARAM
            ),
        }
    }
}

impl BootArgs {
    /// Picks the supermachine words out of the text of `/proc/cmdline`.
    ///
    /// Words are separated by whitespace and may be double-quoted as the kernel allows
    /// (`key="value"`). When a key is repeated, the last one wins, as in the shell `/init`.
    /// An empty value counts as absent.
    pub fn parse(cmdline: &str) -> Result<Self, CmdlineError> {
        let mut args = Self::default();
        for word in words(cmdline) {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            let value = value.trim_matches('"');
            if key == conf::ROOTFS_PARAM {
                args.rootfs = device(conf::ROOTFS_PARAM, value)?;
            } else if key == conf::UPPER_PARAM {
                args.upper = device(conf::UPPER_PARAM, value)?;
            } else if key == conf::AGENT_PORT_PARAM {
                args.agent_port = if value.is_empty() {
                    None
                } else {
                    let port = value.parse().map_err(|_| CmdlineError::BadPort {
                        value: value.to_string(),
                    })?;
                    Some(port)
                };
            }
        }
        Ok(args)
    }
}

/// Splits on whitespace outside double quotes, the way the kernel splits its parameters.
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

fn device(param: &'static str, value: &str) -> Result<Option<String>, CmdlineError> {
    if value.is_empty() {
        return Ok(None);
    }
    if !value.starts_with('/') {
        return Err(CmdlineError::RelativeDevice {
            param,
            value: value.to_string(),
        });
    }
    Ok(Some(value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_supermachine_words_among_others() {
        let line = format!(
            "console=ttyAMA0 {}=/dev/vda quiet {}=/dev/vdb {}=1025 panic=-1\n",
            conf::ROOTFS_PARAM,
            conf::UPPER_PARAM,
            conf::AGENT_PORT_PARAM
        );
        let args = BootArgs::parse(&line).expect("valid");
        assert_eq!(args.rootfs.as_deref(), Some("/dev/vda"));
        assert_eq!(args.upper.as_deref(), Some("/dev/vdb"));
        assert_eq!(args.agent_port, Some(1025));
    }

    #[test]
    fn absent_and_empty_values_are_none() {
        assert_eq!(
            BootArgs::parse("console=ttyAMA0").expect("valid"),
            BootArgs::default()
        );
        let line = format!("{}= {}=", conf::UPPER_PARAM, conf::AGENT_PORT_PARAM);
        assert_eq!(BootArgs::parse(&line).expect("valid"), BootArgs::default());
        assert_eq!(BootArgs::parse("").expect("valid"), BootArgs::default());
    }

    #[test]
    fn last_repeated_word_wins() {
        let line = format!("{0}=/dev/vda {0}=/dev/vdc", conf::ROOTFS_PARAM);
        let args = BootArgs::parse(&line).expect("valid");
        assert_eq!(args.rootfs.as_deref(), Some("/dev/vdc"));
    }

    #[test]
    fn quoted_values_and_quoted_spaces() {
        let line = format!(
            "init_arg=\"a b {0}=/dev/vdz\" {0}=\"/dev/vda\"",
            conf::ROOTFS_PARAM
        );
        let args = BootArgs::parse(&line).expect("valid");
        assert_eq!(args.rootfs.as_deref(), Some("/dev/vda"));
    }

    #[test]
    fn similar_keys_do_not_match() {
        let line = format!("x{0}=/dev/vda {0}x=/dev/vdb {0}", conf::ROOTFS_PARAM);
        assert_eq!(BootArgs::parse(&line).expect("valid"), BootArgs::default());
    }

    #[test]
    fn relative_device_is_an_error_that_says_the_fix() {
        let line = format!("{}=vda", conf::ROOTFS_PARAM);
        let err = BootArgs::parse(&line).expect_err("relative");
        assert_eq!(
            err.to_string(),
            format!(
                "{0}=vda is not a device path (write {0}=/dev/vda)",
                conf::ROOTFS_PARAM
            )
        );
    }

    #[test]
    fn bad_port_is_an_error() {
        for value in ["abc", "-1", "4294967296", "12x"] {
            let line = format!("{}={value}", conf::AGENT_PORT_PARAM);
            let err = BootArgs::parse(&line).expect_err(value);
            assert_eq!(
                err,
                CmdlineError::BadPort {
                    value: value.to_string()
                }
            );
        }
    }
}
