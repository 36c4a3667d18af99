//! smctl's command line.

use std::path::PathBuf;
use std::time::Duration;

use supermachine_client::{Command, Endpoint, DEFAULT_PORT};

pub const USAGE: &str = "\
usage: smctl [--uds H.sock [--port N] | --unix PATH] [--timeout SECS] COMMAND ...

commands:
  wait-ready                 retry until the agent answers (bounded by --timeout, default 60)
  ping                       round trip to the agent
  info                       kernel release, arch, uptime, memory, CPUs
  exec [-t] [-i] [-e K=V]... [-w CWD] [-u UID[:GID]] [--inherit-env] -- ARGV...
                             run ARGV; smctl exits with its exit code (128+N for signal N).
                             -t: interactive, on a pty; -i: forward stdin (the default
                             when stdin is not a terminal)
  signal PID SIGNAL          send SIGNAL (number or name, e.g. TERM) to a guest process
  set-clock [SECS[.FRAC]]    set the guest clock (default: this host's time)
  poweroff                   sync and power the guest off
  reboot                     sync and reboot the guest";

/// What `exec` runs and how.
pub struct ExecArgs {
    pub command: Command,
    pub tty: bool,
    pub forward_stdin: bool,
    pub has_term: bool,
}

pub enum Action {
    WaitReady,
    Ping,
    Info,
    Exec(ExecArgs),
    Signal { pid: i32, signal: i32 },
    SetClock(Option<(i64, u32)>),
    PowerOff,
    Reboot,
}

pub struct Args {
    pub endpoint: Endpoint,
    pub timeout: Option<Duration>,
    pub action: Action,
}

fn value<'a>(it: &mut impl Iterator<Item = &'a String>, flag: &str) -> Result<&'a String, String> {
    it.next().ok_or_else(|| format!("{flag} needs a value"))
}

fn number<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("bad {what}: {s:?}"))
}

pub fn signal_number(s: &str) -> Result<i32, String> {
    if let Ok(n) = s.parse() {
        return Ok(n);
    }
    let name = s.trim_start_matches("SIG").to_ascii_uppercase();
    Ok(match name.as_str() {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "TERM" => libc::SIGTERM,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "WINCH" => libc::SIGWINCH,
        _ => return Err(format!("unknown signal {s:?}")),
    })
}

fn parse_time(s: &str) -> Result<(i64, u32), String> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs = number(secs, "seconds")?;
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad fraction in {s:?}"));
    }
    let nanos = if frac.is_empty() {
        0
    } else {
        number::<u32>(&format!("{frac:0<9}"), "fraction")?
    };
    Ok((secs, nanos))
}

fn parse_exec(rest: &[String]) -> Result<ExecArgs, String> {
    let mut tty = false;
    let mut forward = None;
    let mut env = Vec::new();
    let mut cwd = None;
    let mut user = None;
    let mut inherit = false;
    let mut it = rest.iter();
    let mut argv = Vec::new();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-t" => tty = true,
            "-i" => forward = Some(true),
            "-e" => {
                let kv = value(&mut it, "-e")?;
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| format!("-e wants K=V, got {kv:?}"))?;
                env.push((k.to_string(), v.to_string()));
            }
            "-w" => cwd = Some(value(&mut it, "-w")?.clone()),
            "-u" => {
                let u = value(&mut it, "-u")?;
                let (uid, gid) = match u.split_once(':') {
                    Some((a, b)) => (number::<u32>(a, "uid")?, Some(number::<u32>(b, "gid")?)),
                    None => (number::<u32>(u, "uid")?, None),
                };
                user = Some((uid, gid));
            }
            "--inherit-env" => inherit = true,
            "--" => {
                argv.extend(it.by_ref().cloned());
            }
            s if s.starts_with('-') => return Err(format!("unknown exec option {s:?}")),
            _ => {
                argv.push(a.clone());
                argv.extend(it.by_ref().cloned());
            }
        }
    }
    if argv.is_empty() {
        return Err("exec needs a command".into());
    }
    let mut command = Command::from_argv(&argv);
    let has_term = env.iter().any(|(k, _)| k == "TERM");
    for (k, v) in &env {
        command.env(k, v);
    }
    command.inherit_env(inherit);
    if let Some(dir) = cwd {
        command.current_dir(dir);
    }
    if let Some((uid, gid)) = user {
        command.uid(uid);
        if let Some(g) = gid {
            command.gid(g);
        }
    }
    // SAFETY: isatty only inspects descriptor 0.
    let stdin_is_tty = unsafe { libc::isatty(0) } == 1;
    Ok(ExecArgs {
        command,
        tty,
        forward_stdin: tty || forward.unwrap_or(!stdin_is_tty),
        has_term,
    })
}

pub fn parse(argv: &[String]) -> Result<Args, String> {
    let mut uds = None;
    let mut port = None;
    let mut unix = None;
    let mut timeout = None;
    let mut i = 0;
    while let Some(a) = argv.get(i) {
        let next = || argv.get(i + 1).ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--uds" => uds = Some(PathBuf::from(next()?)),
            "--port" => port = Some(number::<u32>(next()?, "port")?),
            "--unix" => unix = Some(PathBuf::from(next()?)),
            "--timeout" => {
                timeout = Some(Duration::from_secs_f64(
                    number::<f64>(next()?, "timeout")?.max(0.0),
                ))
            }
            "-h" | "--help" => return Err(USAGE.into()),
            _ => break,
        }
        i += 2;
    }
    let endpoint = match (uds, unix) {
        (Some(uds), None) => Endpoint::HybridVsock {
            uds,
            port: port.unwrap_or(DEFAULT_PORT),
        },
        (None, Some(path)) if port.is_none() => Endpoint::Unix(path),
        (None, None) => {
            return Err(format!(
                "give --uds H.sock [--port N] or --unix PATH\n{USAGE}"
            ))
        }
        _ => {
            return Err(format!(
                "--uds/--port and --unix exclude each other\n{USAGE}"
            ))
        }
    };
    let command = argv.get(i).ok_or_else(|| format!("no command\n{USAGE}"))?;
    let rest = argv.get(i + 1..).unwrap_or(&[]);
    let no_args = |action: Action| {
        if rest.is_empty() {
            Ok(action)
        } else {
            Err(format!("{command} takes no arguments"))
        }
    };
    let action = match command.as_str() {
        "wait-ready" => no_args(Action::WaitReady)?,
        "ping" => no_args(Action::Ping)?,
        "info" => no_args(Action::Info)?,
        "poweroff" => no_args(Action::PowerOff)?,
        "reboot" => no_args(Action::Reboot)?,
        "exec" => Action::Exec(parse_exec(rest)?),
        "signal" => match rest {
            [pid, sig] => Action::Signal {
                pid: number(pid, "pid")?,
                signal: signal_number(sig)?,
            },
            _ => return Err("usage: smctl ... signal PID SIGNAL".into()),
        },
        "set-clock" => match rest {
            [] => Action::SetClock(None),
            [t] => Action::SetClock(Some(parse_time(t)?)),
            _ => return Err("usage: smctl ... set-clock [SECS[.FRAC]]".into()),
        },
        other => return Err(format!("unknown command {other:?}\n{USAGE}")),
    };
    Ok(Args {
        endpoint,
        timeout,
        action,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_exec() {
        let a = parse(&args("--unix /s exec -e A=1 -w /tmp -u 5:6 -- ls -l")).unwrap();
        assert_eq!(a.endpoint, Endpoint::Unix("/s".into()));
        let Action::Exec(e) = a.action else {
            panic!("not exec")
        };
        let r = e.command.request();
        assert_eq!(r.argv, vec![b"ls".to_vec(), b"-l".to_vec()]);
        assert_eq!(r.env, vec![b"A=1".to_vec()]);
        assert_eq!(r.cwd, Some(b"/tmp".to_vec()));
        assert_eq!((r.uid, r.gid), (Some(5), Some(6)));
        assert!(!e.tty);
    }

    #[test]
    fn parses_endpoints_and_errors() {
        let a = parse(&args("--uds /h.sock ping")).unwrap();
        assert_eq!(
            a.endpoint,
            Endpoint::HybridVsock {
                uds: "/h.sock".into(),
                port: 7100
            }
        );
        assert!(parse(&args("ping")).is_err());
        assert!(parse(&args("--unix /s --uds /h ping")).is_err());
        assert!(parse(&args("--unix /s exec")).is_err());
        assert!(parse(&args("--unix /s bogus")).is_err());
        assert_eq!(signal_number("SIGTERM"), Ok(15));
        assert_eq!(signal_number("kill"), Ok(9));
        assert_eq!(parse_time("12.5"), Ok((12, 500_000_000)));
        assert!(parse_time("1.x").is_err());
    }
}
