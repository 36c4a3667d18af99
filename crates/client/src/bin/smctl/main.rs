//! `smctl`: drive a supermachine agent from the host. See `smctl --help`.

mod tty;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use supermachine_client::{Client, Command, Endpoint, Error, Output, Result};

const USAGE: &str = "\
usage: smctl (--uds PATH | --vsock-uds PATH) [--timeout SECS] COMMAND

  --uds PATH        a Unix socket already bridged to the agent (supermachine's VMM
                    socket, or the agent's SUPERMACHINE_AGENT_UNIX_SOCKET)
  --vsock-uds PATH  a hybrid-vsock socket (Firecracker, vhost-device-vsock): smctl
                    sends CONNECT 1028 on each connection
  --timeout SECS    give up when the agent is silent for this long

commands:
  exec [-t] [-e KEY=VALUE]... [-w DIR] [--] PROGRAM [ARG]...
                    run a program; smctl exits with its exit code. stdin is forwarded.
                    -t: on a pseudo-terminal (raw local terminal, window size followed)
  cp LOCAL guest:PATH [--mode OCTAL]
  cp guest:PATH LOCAL
                    copy a file into or out of the guest (8 MiB pieces)
  probe             print the agent's protocol version (needs 5 or newer)";

/// smctl's own failure during `exec`, distinct from the usual remote codes.
const EXEC_FAILED: u8 = 255;

/// A usage mistake: the message and the usage text, exit code 2.
struct Usage(String);

enum Action {
    Exec {
        command: Command,
        tty: bool,
        has_term: bool,
    },
    CpIn {
        local: PathBuf,
        guest: String,
        mode: Option<u32>,
    },
    CpOut {
        guest: String,
        local: PathBuf,
    },
    Probe,
}

struct Args {
    endpoint: Endpoint,
    timeout: Option<Duration>,
    action: Action,
}

fn parse(argv: &[String]) -> std::result::Result<Args, Usage> {
    let mut endpoint = None;
    let mut timeout = None;
    let mut i = 0;
    let value = |i: usize, flag: &str| {
        argv.get(i + 1)
            .cloned()
            .ok_or_else(|| Usage(format!("{flag} needs a value")))
    };
    while let Some(a) = argv.get(i) {
        match a.as_str() {
            "--uds" => endpoint = Some(Endpoint::bridged(value(i, a)?)),
            "--vsock-uds" => endpoint = Some(Endpoint::hybrid_vsock(value(i, a)?)),
            "--timeout" => {
                let v = value(i, a)?;
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| Usage(format!("--timeout takes seconds > 0, not {v:?}")))?;
                timeout = Some(Duration::from_secs_f64(secs));
            }
            "-h" | "--help" => return Err(Usage(String::new())),
            _ => break,
        }
        i += 2;
    }
    let endpoint = endpoint.ok_or_else(|| {
        Usage("name the agent's socket with --uds PATH or --vsock-uds PATH".into())
    })?;
    let rest = argv.get(i + 1..).unwrap_or_default();
    let action = match argv.get(i).map(String::as_str) {
        Some("exec") => parse_exec(rest)?,
        Some("cp") => parse_cp(rest)?,
        Some("probe") if rest.is_empty() => Action::Probe,
        Some("probe") => return Err(Usage("probe takes no arguments".into())),
        Some(other) => return Err(Usage(format!("unknown command {other:?}"))),
        None => return Err(Usage("no command given".into())),
    };
    Ok(Args {
        endpoint,
        timeout,
        action,
    })
}

fn parse_exec(rest: &[String]) -> std::result::Result<Action, Usage> {
    let mut command = Command::default();
    let (mut tty, mut has_term, mut i) = (false, false, 0);
    while let Some(a) = rest.get(i) {
        match a.as_str() {
            "-t" => tty = true,
            "-e" => {
                let kv = rest
                    .get(i + 1)
                    .ok_or_else(|| Usage("-e needs KEY=VALUE".into()))?;
                let (k, v) = kv
                    .split_once('=')
                    .filter(|(k, _)| !k.is_empty())
                    .ok_or_else(|| Usage(format!("-e takes KEY=VALUE, not {kv:?}")))?;
                has_term |= k == "TERM";
                command.env(k, v);
                i += 1;
            }
            "-w" => {
                let dir = rest
                    .get(i + 1)
                    .ok_or_else(|| Usage("-w needs a directory".into()))?;
                command.current_dir(dir.as_str());
                i += 1;
            }
            "--" => {
                i += 1;
                break;
            }
            s if s.starts_with('-') => return Err(Usage(format!("unknown exec option {s:?}"))),
            _ => break,
        }
        i += 1;
    }
    let argv = rest.get(i..).unwrap_or_default();
    if argv.is_empty() {
        return Err(Usage("exec needs a program to run".into()));
    }
    command.args(argv.iter().cloned());
    Ok(Action::Exec {
        command,
        tty,
        has_term,
    })
}

fn parse_cp(rest: &[String]) -> std::result::Result<Action, Usage> {
    let mut paths = Vec::new();
    let mut mode = None;
    let mut i = 0;
    while let Some(a) = rest.get(i) {
        if a == "--mode" {
            let v = rest
                .get(i + 1)
                .ok_or_else(|| Usage("--mode needs an octal mode".into()))?;
            mode = Some(
                u32::from_str_radix(v, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| {
                        Usage(format!("--mode takes an octal mode like 755, not {v:?}"))
                    })?,
            );
            i += 2;
        } else {
            paths.push(a.clone());
            i += 1;
        }
    }
    let [src, dst] = paths.as_slice() else {
        return Err(Usage("cp takes a source and a destination".into()));
    };
    match (src.strip_prefix("guest:"), dst.strip_prefix("guest:")) {
        (None, Some(guest)) if guest.starts_with('/') => Ok(Action::CpIn {
            local: src.into(),
            guest: guest.into(),
            mode,
        }),
        (Some(guest), None) if guest.starts_with('/') => {
            if mode.is_some() {
                return Err(Usage("--mode applies to copies into the guest".into()));
            }
            Ok(Action::CpOut {
                guest: guest.into(),
                local: dst.into(),
            })
        }
        (Some(_), Some(_)) => Err(Usage(
            "cp copies between host and guest: one side only is guest:PATH".into(),
        )),
        (None, None) => Err(Usage(
            "cp needs one side written guest:/absolute/path".into(),
        )),
        _ => Err(Usage("the guest path must be absolute: guest:/path".into())),
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse(&argv) {
        Ok(a) => a,
        Err(Usage(msg)) if msg.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(Usage(msg)) => {
            eprintln!("smctl: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let is_exec = matches!(args.action, Action::Exec { .. });
    let mut client = Client::new(args.endpoint);
    client.set_timeout(args.timeout);
    match run(&client, args.action) {
        // Exit codes are 8 bits; 128+signal codes already fit.
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(EXEC_FAILED)),
        Err(e) => {
            eprintln!("smctl: {e}");
            ExitCode::from(if is_exec { EXEC_FAILED } else { 1 })
        }
    }
}

fn run(client: &Client, action: Action) -> Result<u32> {
    match action {
        Action::Probe => {
            println!("protocol {}", client.probe()?);
            Ok(0)
        }
        Action::CpIn { local, guest, mode } => {
            let mut file = fs::File::open(&local).map_err(|e| named(&local, e))?;
            // Keep the local file's permission bits unless told otherwise.
            let mode = match mode {
                Some(m) => m,
                None => {
                    use std::os::unix::fs::PermissionsExt;
                    file.metadata()
                        .map_err(|e| named(&local, e))?
                        .permissions()
                        .mode()
                        & 0o7777
                }
            };
            client.upload(&guest, &mut file, Some(mode))?;
            Ok(0)
        }
        Action::CpOut { guest, local } => {
            copy_out(client, &guest, &local)?;
            Ok(0)
        }
        Action::Exec {
            command,
            tty,
            has_term,
        } => exec(client, command, tty, has_term),
    }
}

fn named(path: &Path, e: std::io::Error) -> Error {
    Error::Io(std::io::Error::new(
        e.kind(),
        format!("{}: {e}", path.display()),
    ))
}

/// Downloads into a temporary file beside `local`, renamed into place when complete.
fn copy_out(client: &Client, guest: &str, local: &Path) -> Result<()> {
    let dir = match local.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = local
        .file_name()
        .ok_or_else(|| named(local, std::io::ErrorKind::InvalidInput.into()))?;
    let tmp = dir.join(format!(
        ".{}.smctl-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut out = fs::File::create(&tmp).map_err(|e| named(&tmp, e))?;
        client.download(guest, &mut out)?;
        out.sync_all().map_err(|e| named(&tmp, e))?;
        fs::rename(&tmp, local).map_err(|e| named(local, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn exec(client: &Client, mut command: Command, tty: bool, has_term: bool) -> Result<u32> {
    let raw = if tty {
        let (rows, cols) = tty::window_size().unwrap_or((24, 80));
        command.tty(cols, rows);
        if !has_term {
            command.env(
                "TERM",
                std::env::var("TERM").unwrap_or_else(|_| "xterm".into()),
            );
        }
        Some(tty::RawMode::enter())
    } else {
        None
    };
    let result = (|| {
        let mut process = client.spawn(&command)?;
        supermachine_client::feed_stdin(process.control(), std::io::stdin());
        if tty {
            let control = process.control();
            tty::forward_winch(move |rows, cols| {
                let _ = control.resize(cols, rows);
            });
        }
        let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
        loop {
            match process.next_output()? {
                Some(Output::Stdout(d)) => {
                    let _ = out.write_all(&d).and_then(|()| out.flush());
                }
                Some(Output::Stderr(d)) => {
                    let _ = err.write_all(&d).and_then(|()| err.flush());
                }
                Some(Output::Exit(status)) => return Ok(status.code),
                None => return Err(Error::Protocol("no EXIT frame".into())),
            }
        }
    })();
    if let Some(r) = raw {
        r.restore();
    }
    result
}
