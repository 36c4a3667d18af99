//! `smctl`: drive a supermachine agent from the host. See `smctl --help`.

mod args;
mod tty;

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use supermachine_client::{Client, Output, Result};

use args::{Action, Args, ExecArgs};

/// smctl's own failure during `exec`, distinct from any plausible remote code.
const EXEC_FAILED: u8 = 255;

fn connect(args: &Args) -> Result<Client> {
    match args.timeout {
        Some(t) => Client::connect_timeout(&args.endpoint, t),
        None => Client::connect(&args.endpoint),
    }
}

fn forward_stdin(writer: supermachine_client::StdinWriter) {
    let _ = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut buf = vec![0u8; 16 * 1024];
            let mut stdin = std::io::stdin().lock();
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if writer.write(buf.get(..n).unwrap_or(&[])).is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = writer.close();
        });
}

fn exec(client: &Client, mut e: ExecArgs) -> Result<i32> {
    let raw = if e.tty {
        let (rows, cols) = tty::window_size().unwrap_or((24, 80));
        e.command.pty(rows, cols);
        if !e.has_term {
            let term = std::env::var("TERM").unwrap_or_else(|_| "xterm".into());
            e.command.env("TERM", term);
        }
        Some(tty::RawMode::enter())
    } else {
        None
    };
    e.command.stdin(e.forward_stdin);
    let result = (|| {
        let mut process = client.spawn(&e.command)?;
        if e.forward_stdin {
            forward_stdin(process.stdin());
        }
        if e.tty {
            let control = process.control();
            tty::forward_winch(move |rows, cols| {
                let _ = control.resize(rows, cols);
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
                Some(Output::Exit(status)) => return Ok(status.shell_code()),
                None => return Err(supermachine_client::Error::Protocol("no exit".into())),
            }
        }
    })();
    if let Some(r) = raw {
        r.restore();
    }
    result
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match args::parse(&argv) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let is_exec = matches!(args.action, Action::Exec(_));
    match run(args) {
        Ok(code) => ExitCode::from(u8::try_from(code & 0xff).unwrap_or(EXEC_FAILED)),
        Err(e) => {
            eprintln!("smctl: {e}");
            ExitCode::from(if is_exec { EXEC_FAILED } else { 1 })
        }
    }
}

fn run(args: Args) -> Result<i32> {
    if let Action::WaitReady = args.action {
        let timeout = args.timeout.unwrap_or(Duration::from_secs(60));
        let client = Client::wait_ready_at(&args.endpoint, timeout)?;
        println!(
            "ready (agent {}, protocol {}, ready at {:.3} s guest boot time)",
            client.hello().agent_version,
            client.hello().version,
            client.ready_boottime_ns() as f64 / 1e9
        );
        return Ok(0);
    }
    let client = connect(&args)?;
    client.set_timeout(args.timeout);
    match args.action {
        Action::WaitReady => Ok(0),
        Action::Ping => {
            let rtt = client.ping()?;
            println!("pong in {:.3} ms", rtt.as_secs_f64() * 1e3);
            Ok(0)
        }
        Action::Info => {
            let i = client.guest_info()?;
            println!("kernel_release: {}", i.kernel_release);
            println!("arch: {}", i.arch);
            println!("uptime_s: {:.3}", i.uptime_ns as f64 / 1e9);
            println!("mem_total: {}", i.mem_total);
            println!("mem_free: {}", i.mem_free);
            println!("cpus: {}", i.cpus);
            println!(
                "ready_boottime_s: {:.3}",
                client.ready_boottime_ns() as f64 / 1e9
            );
            Ok(0)
        }
        Action::Exec(e) => exec(&client, e),
        Action::Signal { pid, signal } => client.signal_pid(pid, signal).map(|()| 0),
        Action::SetClock(Some((secs, nanos))) => client.set_clock_raw(secs, nanos).map(|()| 0),
        Action::SetClock(None) => client.set_clock(SystemTime::now()).map(|()| 0),
        Action::PowerOff => client.power_off().map(|()| 0),
        Action::Reboot => client.reboot().map(|()| 0),
    }
}
