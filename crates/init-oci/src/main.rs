//! `init-oci`: PID 1 of the supermachine aarch64 guest, to the VMM's HVF boot contract.
//!
//! In order: mount the kernel filesystems, read the `supermachine.*` command line, set
//! the clock, load smpark.ko and print its page address, pause for the kernel-boot
//! cache (`R`), stack the layer disks and the delta under a tmpfs overlay and switch to
//! it, mount the container's filesystems, set the host name and network files, mount
//! shares and volumes, fetch the environment from the host (vsock port 1026), start the
//! agent from the delta and wait for it, pause before the workload (`P`), start the
//! workload from the delta files and stay up reaping once it ends.
//!
//! A failure before the root exists (no disks, a missing layer) prints one
//! `init-oci: error:` line and powers the VM off; a bad delta file or a workload that
//! cannot start prints one and parks PID 1 with exit 127, the agent still serving.
//! It never panics on bad input and never waits without a limit.

mod cmdline;
mod console;
mod container;
mod delta;
mod disks;
mod envsvc;
mod net;
mod root;
mod smpark;
mod supervise;
mod sys;

use std::panic;
use std::process::ExitCode;
use std::thread::sleep;
use std::time::Duration;

use cmdline::BootArgs;

const USAGE: &str = "usage: init-oci                      (as PID 1 of a supermachine aarch64 guest: rdinit=/init)\n       init-oci smpark park|unpark   (drive /dev/smpark, as the agent's smpark controls do)\n";

fn main() -> ExitCode {
    if sys::is_pid_one() {
        boot();
    }
    // Not PID 1: never mount or power off the machine someone ran this on.
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["smpark", action @ ("park" | "unpark")] => match smpark::control(action == &"park") {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("init-oci: {e}");
                ExitCode::FAILURE
            }
        },
        ["--help" | "-h"] => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprint!("init-oci: not PID 1; it boots a supermachine guest as its init\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Never returns: either PID 1 reaps for ever, or the VM is powered off.
fn boot() -> ! {
    let reason = match panic::catch_unwind(run) {
        Ok(Err(reason)) => reason,
        Ok(Ok(never)) => match never {},
        Err(_) => {
            "init-oci stopped on an internal error (a bug; the message above says where)".into()
        }
    };
    console::error(&reason);
    console::say("powering off");
    sys::power_off();
    // Only without CAP_SYS_BOOT; as PID 1 this exit panics the kernel, which ends the VM.
    std::process::exit(1)
}

enum Never {}

fn run() -> Result<Never, String> {
    root::early_mounts()?;
    sys::attach_console_if_missing();
    let text = std::fs::read_to_string("/proc/cmdline")
        .map_err(|e| format!("cannot read /proc/cmdline: {e}"))?;
    let (args, warnings) = BootArgs::parse(&text);
    for w in warnings {
        console::warn(&w.to_string());
    }
    if let Some(time) = args.host_time {
        if let Err(e) = sys::set_clock(time) {
            console::warn(&format!("cannot set the clock to {}: {e}", time.secs));
        }
    }
    match smpark::load() {
        Ok(Some(gpa)) => console::line(&console::smpark_line(gpa)),
        Ok(None) => {
            console::say("no /supermachine-smpark.ko in the initramfs: vCPU parking unavailable")
        }
        Err(e) => console::warn(&e),
    }
    if args.kcache {
        console::pause(console::KCACHE_READY, console::KCACHE_RESUMED, b'R');
    }

    let layout = disks::classify(&root::scan_disks()?).map_err(|e| e.to_string())?;
    console::say(&format!(
        "{} layer disk(s) and the delta /dev/{}, {} volume disk(s)",
        layout.layers.len(),
        layout.delta,
        layout.volumes.len()
    ));
    root::assemble_and_switch(&layout)?;
    for w in root::container_mounts() {
        console::say(&w);
    }
    // Read the delta's workload files now, so a bad one is reported before the slow part.
    let workload = supervise::read_workload();
    let hostname = container::hostname();
    container::network(&args, hostname.as_deref());
    container::shares_and_volumes(&layout.volumes);

    let reply = envsvc::fetch().unwrap_or_else(|e| {
        console::warn(&format!("{e}; the workload gets the image's defaults only"));
        envsvc::EnvReply::default()
    });
    // The agent merges PID 1's environment into each exec, so the container's goes here;
    // secrets only go to the workload. Single-threaded here, so set_var is sound.
    for (key, value) in &reply.env {
        std::env::set_var(key, value);
    }
    let agent = supervise::start_agent();
    console::line(console::HEARTBEAT);

    let workload = match workload {
        Ok(w) => w,
        Err(e) => {
            console::error(&e.to_string());
            console::line(&console::parked_line(127));
            supervise::reap_forever(None, agent);
        }
    };
    let env = supervise::workload_env(&reply.env, &reply.secrets, &workload.who);
    console::line(console::WORKLOAD_PRE_EXEC);
    // The VMM may snapshot on the line above; give it a moment before the fork.
    sleep(Duration::from_millis(100));
    if args.pre_exec_sync {
        console::pause(console::PRE_EXEC_READY, console::PRE_EXEC_RESUMED, b'P');
    }
    match supervise::start_workload(&workload, &env) {
        Ok(pid) => supervise::reap_forever(Some(pid), agent),
        Err(e) => {
            console::error(&e);
            console::line(&console::parked_line(127));
            supervise::reap_forever(None, agent)
        }
    }
}
