//! Starting the agent and the workload, and reaping as PID 1 for ever after.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::console;
use crate::container;
use crate::delta::{self, Identity};
use crate::sys;

/// Written by the agent once it listens.
pub const AGENT_READY: &str = "/run/supermachine-agent-ready";
/// The workload's pid, for the agent's `signal` control.
pub const WORKLOAD_PID: &str = "/run/supermachine-workload.pid";
/// How long to wait for the agent before starting the workload anyway.
const AGENT_READY_LIMIT: Duration = Duration::from_secs(20);
/// PATH when the image sets none (the OCI default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Starts `/supermachine-agent` and waits for its ready file. Returns its pid.
pub fn start_agent() -> Option<i32> {
    let agent = Path::new(delta::AGENT);
    if !container::is_executable(agent) {
        console::error(&format!(
            "no agent: {} is missing or not executable in the delta layer (the VMM copies the static agent there)",
            delta::AGENT
        ));
        return None;
    }
    let _ = fs::remove_file(AGENT_READY);
    let child = Command::new(agent).stdin(Stdio::null()).spawn();
    let pid = match child {
        Ok(child) => child.id() as i32,
        Err(e) => {
            console::error(&format!("cannot start {}: {e}", delta::AGENT));
            return None;
        }
    };
    let deadline = Instant::now() + AGENT_READY_LIMIT;
    loop {
        if Path::new(AGENT_READY).exists() {
            return Some(pid);
        }
        // SAFETY: waitpid on our own child with a valid status pointer.
        let mut status = 0;
        if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
            console::error(&format!(
                "the agent exited before it was ready (exit={})",
                sys::exit_code(status)
            ));
            return None;
        }
        if Instant::now() >= deadline {
            console::warn(&format!(
                "the agent did not write {AGENT_READY} within {} s; starting the workload anyway",
                AGENT_READY_LIMIT.as_secs()
            ));
            return Some(pid);
        }
        sleep(Duration::from_millis(20));
    }
}

/// Everything needed to start the workload, read from the delta files.
#[derive(Debug)]
pub struct Workload {
    pub argv: Vec<String>,
    pub workdir: String,
    pub who: Identity,
}

/// Reads `/.supermachine-cmd`, `-workdir` and `-user`.
pub fn read_workload() -> Result<Workload, delta::DeltaError> {
    let cmd = container::read_optional(delta::CMD)?.ok_or(delta::DeltaError {
        file: delta::CMD,
        problem: "missing: the last read-only disk is not a delta layer (the VMM attaches the image layers, then the delta)".into(),
    })?;
    let argv = delta::parse_cmd(&cmd)?;
    let workdir = match container::read_optional(delta::WORKDIR)? {
        Some(text) => delta::parse_workdir(&text)?,
        None => "/".into(),
    };
    let who = match container::read_optional(delta::USER)? {
        Some(spec) => {
            let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
            let group = fs::read_to_string("/etc/group").unwrap_or_default();
            delta::resolve_user(&spec, &passwd, &group)?
        }
        None => Identity::root(),
    };
    Ok(Workload { argv, workdir, who })
}

/// The workload's environment: the image's and the VMM's env with the secrets on top,
/// plus PATH and HOME when they are not set.
pub fn workload_env(
    base: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, String>,
    who: &Identity,
) -> BTreeMap<String, String> {
    let mut env = base.clone();
    env.extend(secrets.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.entry("PATH".into())
        .or_insert_with(|| DEFAULT_PATH.into());
    if let Some(home) = &who.home {
        env.entry("HOME".into()).or_insert_with(|| home.clone());
    }
    env.entry("HOSTNAME".into()).or_insert_with(|| {
        fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .to_string()
    });
    env
}

/// Forks the workload in its workdir as its user and records its pid.
pub fn start_workload(w: &Workload, env: &BTreeMap<String, String>) -> Result<i32, String> {
    if let Err(e) = fs::create_dir_all(&w.workdir) {
        return Err(format!("cannot create the workdir {}: {e}", w.workdir));
    }
    let who = w.who.clone();
    let mut cmd = Command::new(&w.argv[0]);
    cmd.args(&w.argv[1..])
        .env_clear()
        .envs(env)
        .current_dir(&w.workdir)
        .stdin(Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            let groups: Vec<libc::gid_t> = who.groups.clone();
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setgid(who.gid) != 0
                || libc::setuid(who.uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| {
        format!(
            "cannot start the workload {:?} in {} as uid {}: {e} (check {} and the image)",
            w.argv[0],
            w.workdir,
            w.who.uid,
            delta::CMD
        )
    })?;
    let pid = child.id() as i32;
    if let Err(e) = container::write_atomic(WORKLOAD_PID, &format!("{pid}\n")) {
        console::warn(&format!("cannot write {WORKLOAD_PID}: {e}"));
    }
    Ok(pid)
}

/// PID 1's last job: reap every child for ever; say when the workload or agent ends.
pub fn reap_forever(workload: Option<i32>, agent: Option<i32>) -> ! {
    loop {
        match sys::wait_any(true) {
            Some((pid, code)) if Some(pid) == workload => {
                console::line(&console::parked_line(code))
            }
            Some((pid, code)) if Some(pid) == agent => console::error(&format!(
                "the agent exited (exit={code}); the host cannot reach this guest any more"
            )),
            Some(_) => {}
            // No children at all: nothing to reap until something forks again.
            None => sleep(Duration::from_secs(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_win_and_defaults_fill_in() {
        let base = BTreeMap::from([
            ("A".to_string(), "1".to_string()),
            ("T".to_string(), "env".to_string()),
        ]);
        let secrets = BTreeMap::from([("T".to_string(), "secret".to_string())]);
        let env = workload_env(&base, &secrets, &Identity::root());
        assert_eq!(env["A"], "1");
        assert_eq!(env["T"], "secret");
        assert_eq!(env["PATH"], DEFAULT_PATH);
        assert_eq!(env["HOME"], "/root");
        let own_path = BTreeMap::from([("PATH".to_string(), "/opt/bin".to_string())]);
        assert_eq!(
            workload_env(&own_path, &BTreeMap::new(), &Identity::root())["PATH"],
            "/opt/bin"
        );
    }
}
