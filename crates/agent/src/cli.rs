//! Command line and kernel command line.

use std::ffi::OsString;
use std::path::PathBuf;

/// What to listen on.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// `--vsock-port N`.
    pub vsock_port: Option<u32>,
    /// `--unix PATH`.
    pub unix: Option<PathBuf>,
    /// `--subreaper`.
    pub subreaper: bool,
}

/// The usage text.
pub const USAGE: &str = "usage: supermachine-agent [--vsock-port N] [--unix PATH] [--subreaper]";

/// Parses the arguments (without the program name).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Options, String> {
    let mut opts = Options::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--vsock-port") => {
                let v = args.next().ok_or("--vsock-port needs a value")?;
                let port = v
                    .to_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("bad port {v:?}"))?;
                opts.vsock_port = Some(port);
            }
            Some("--unix") => {
                opts.unix = Some(args.next().ok_or("--unix needs a path")?.into());
            }
            Some("--subreaper") => opts.subreaper = true,
            Some("-h" | "--help") => return Err(USAGE.into()),
            _ => return Err(format!("unknown argument {arg:?}\n{USAGE}")),
        }
    }
    Ok(opts)
}

/// The `supermachine.agent_port=N` word of a kernel command line, if any.
pub fn port_from_cmdline(cmdline: &str) -> Option<u32> {
    cmdline
        .split_ascii_whitespace()
        // The last occurrence wins, as for kernel parameters.
        .rev()
        .find_map(|w| w.strip_prefix("supermachine.agent_port="))
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn parses_flags() {
        let o = parse(args(&["--vsock-port", "9", "--unix", "/x", "--subreaper"])).unwrap();
        assert_eq!(o.vsock_port, Some(9));
        assert_eq!(o.unix, Some(PathBuf::from("/x")));
        assert!(o.subreaper);
        assert!(parse(args(&["--vsock-port", "x"])).is_err());
        assert!(parse(args(&["--vsock-port"])).is_err());
        assert!(parse(args(&["--bogus"])).is_err());
    }

    #[test]
    fn reads_cmdline_port() {
        assert_eq!(
            port_from_cmdline("console=ttyS0 supermachine.agent_port=7200 quiet\n"),
            Some(7200)
        );
        assert_eq!(port_from_cmdline("supermachine.agent_port=x"), None);
        assert_eq!(port_from_cmdline("console=ttyS0"), None);
    }
}
