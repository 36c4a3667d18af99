//! `init-oci`: PID 1 of the supermachine aarch64 guest's initramfs.
//!
//! It does what the x86_64 busybox `/init` does, as one static binary: mount proc, sys
//! and devtmpfs, read the kernel command line, mount the read-only container rootfs,
//! stack a writable overlay on it (tmpfs, or the disk named by the upper parameter),
//! copy the agent in, move the kernel mounts over, switch root and exec the agent as
//! PID 1. On any failure it prints one `init-oci: error:` line saying what is missing
//! and how to fix it, then powers the VM off; it never panics on bad input and never
//! waits forever.
//!
//! Run by hand (not as PID 1) it only offers `--plan CMDLINE`, which prints the steps it
//! would take for that kernel command line.

mod cmdline;
mod conf;
mod console;
mod execute;
mod plan;
mod sys;

use std::convert::Infallible;
use std::fmt;
use std::panic;
use std::process::ExitCode;

use cmdline::{BootArgs, CmdlineError};
use execute::StepError;
use plan::PlanError;

/// Why the boot stopped.
#[derive(Debug)]
enum Failure {
    ReadCmdline(std::io::Error),
    Cmdline(CmdlineError),
    Plan(PlanError),
    Step(StepError),
    NoExec,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReadCmdline(err) => write!(f, "cannot read /proc/cmdline: {err}"),
            Self::Cmdline(err) => err.fmt(f),
            Self::Plan(err) => err.fmt(f),
            Self::Step(err) => err.fmt(f),
            Self::NoExec => {
                f.write_str("the boot plan ended without starting the agent (a bug in init-oci)")
            }
        }
    }
}

impl From<CmdlineError> for Failure {
    fn from(err: CmdlineError) -> Self {
        Self::Cmdline(err)
    }
}

impl From<PlanError> for Failure {
    fn from(err: PlanError) -> Self {
        Self::Plan(err)
    }
}

impl From<StepError> for Failure {
    fn from(err: StepError) -> Self {
        Self::Step(err)
    }
}

const USAGE: &str = "usage: init-oci            (as PID 1: boot the container)\n       init-oci --plan CMDLINE (print the steps for a kernel command line)\n";

fn main() -> ExitCode {
    if sys::is_pid_one() {
        boot();
    }
    // Not PID 1: never mount or power off the machine someone ran this on.
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, line] if flag == "--plan" => print_plan(line),
        [flag] if flag == "--help" || flag == "-h" => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprint!("init-oci: not PID 1; it boots a supermachine guest as its init (rdinit=/init)\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Boots the container; any way out of here ends the VM.
fn boot() -> ! {
    let reason = match panic::catch_unwind(boot_steps) {
        Ok(Ok(never)) => match never {},
        Ok(Err(failure)) => failure.to_string(),
        Err(_) => "init-oci stopped on an internal error (a bug; the message above says where)"
            .to_string(),
    };
    console::error(&reason);
    console::say("powering off");
    sys::power_off();
    // Only reachable without CAP_SYS_BOOT; as PID 1 this exit makes the kernel panic,
    // which is the last way left to stop the VM.
    std::process::exit(1)
}

fn boot_steps() -> Result<Infallible, Failure> {
    execute::run_all(&plan::early_steps())?;
    sys::attach_console_if_missing();
    let text = std::fs::read_to_string("/proc/cmdline").map_err(Failure::ReadCmdline)?;
    let args = BootArgs::parse(&text)?;
    execute::run_all(&plan::container_steps(&args)?)?;
    Err(Failure::NoExec)
}

fn print_plan(line: &str) -> ExitCode {
    let steps = BootArgs::parse(line)
        .map_err(Failure::from)
        .and_then(|args| plan::container_steps(&args).map_err(Failure::from));
    match steps {
        Ok(steps) => {
            for step in plan::early_steps().iter().chain(&steps) {
                println!("{step}");
            }
            ExitCode::SUCCESS
        }
        Err(failure) => {
            console::error(&failure.to_string());
            ExitCode::FAILURE
        }
    }
}
