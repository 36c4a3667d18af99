//! Command line: the three ways the host starts the agent.

use std::ffi::OsString;
use std::path::PathBuf;

/// Names a Unix socket to listen on as well (tests; the runsc backend writes the name).
pub const UNIX_SOCKET_ENV: &str = "SUPERMACHINE_AGENT_UNIX_SOCKET";

/// What the agent was asked to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Mode {
    /// No arguments: serve connections on vsock port 1028 (and a Unix socket when
    /// [`UNIX_SOCKET_ENV`] is set).
    Listen {
        /// From [`UNIX_SOCKET_ENV`].
        unix: Option<PathBuf>,
    },
    /// `--exec-stdio`: one connection on stdin/stdout.
    ExecStdio,
    /// `--tcp-stdio HOST PORT`: copy bytes between stdin/stdout and a TCP connection.
    TcpStdio {
        /// Host to connect to.
        host: String,
        /// Its port.
        port: u16,
    },
}

/// The usage text.
pub const USAGE: &str = "usage: supermachine-agent [--exec-stdio | --tcp-stdio HOST PORT]\n\
    (no arguments: listen on vsock port 1028; set SUPERMACHINE_AGENT_UNIX_SOCKET=PATH to \
    listen on a Unix socket too)";

/// Parses the arguments (without the program name) and the socket variable.
pub fn parse(
    args: impl IntoIterator<Item = OsString>,
    unix_env: Option<OsString>,
) -> Result<Mode, String> {
    let args: Vec<OsString> = args.into_iter().collect();
    let strs: Vec<Option<&str>> = args.iter().map(|a| a.to_str()).collect();
    match strs.as_slice() {
        [] => Ok(Mode::Listen {
            unix: unix_env.filter(|p| !p.is_empty()).map(PathBuf::from),
        }),
        [Some("--exec-stdio")] => Ok(Mode::ExecStdio),
        [Some("--tcp-stdio"), Some(host), Some(port)] => {
            let port = port.parse().map_err(|_| {
                format!("--tcp-stdio: bad port {port:?}; give a number 1-65535\n{USAGE}")
            })?;
            Ok(Mode::TcpStdio {
                host: (*host).to_string(),
                port,
            })
        }
        [Some("--tcp-stdio"), ..] => Err(format!("--tcp-stdio needs HOST and PORT\n{USAGE}")),
        [Some("-h" | "--help"), ..] => Err(USAGE.into()),
        _ => Err(format!("unknown arguments {args:?}\n{USAGE}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str], env: Option<&str>) -> Result<Mode, String> {
        parse(args.iter().map(OsString::from), env.map(OsString::from))
    }

    #[test]
    fn modes() {
        assert_eq!(p(&[], None), Ok(Mode::Listen { unix: None }));
        assert_eq!(
            p(&[], Some("/tmp/s")),
            Ok(Mode::Listen {
                unix: Some("/tmp/s".into())
            })
        );
        assert_eq!(p(&[], Some("")), Ok(Mode::Listen { unix: None }));
        assert_eq!(p(&["--exec-stdio"], None), Ok(Mode::ExecStdio));
        assert_eq!(
            p(&["--tcp-stdio", "127.0.0.1", "8080"], None),
            Ok(Mode::TcpStdio {
                host: "127.0.0.1".into(),
                port: 8080
            })
        );
        assert!(p(&["--tcp-stdio", "h", "x"], None)
            .unwrap_err()
            .contains("bad port"));
        assert!(p(&["--tcp-stdio", "h"], None)
            .unwrap_err()
            .contains("HOST and PORT"));
        assert!(p(&["--vsock-port", "1"], None)
            .unwrap_err()
            .contains("unknown"));
    }
}
