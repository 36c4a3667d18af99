//! Carries out plan steps on the running system.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Duration;

use crate::console;
use crate::plan::Step;
use crate::sys;

/// A step that failed, as the one line the user sees.
#[derive(Debug)]
pub struct StepError(String);

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Runs the steps in order and stops at the first failure.
///
/// A successful `Exec` step never returns; `Ok` means the steps held no exec.
pub fn run_all(steps: &[Step]) -> Result<(), StepError> {
    steps.iter().try_for_each(run)
}

fn run(step: &Step) -> Result<(), StepError> {
    match step {
        Step::Say(text) => {
            console::say(text);
            Ok(())
        }
        Step::MakeDir(path) => fs::create_dir_all(path)
            .map_err(|err| StepError(format!("cannot create {path}: {err}"))),
        Step::WaitForBlockDevice {
            path,
            param,
            role,
            tenths,
        } => wait_for_block_device(path, param, role, *tenths),
        Step::Mount(mount) => sys::mount(
            &mount.source,
            &mount.target,
            &mount.fstype,
            mount.flags,
            mount.data.as_deref(),
        )
        .map_err(|err| {
            StepError(format!(
                "cannot mount {} on {} as {}: {err} ({})",
                mount.source, mount.target, mount.fstype, mount.hint
            ))
        }),
        Step::MoveMount { from, to } => sys::move_mount(Path::new(from), Path::new(to))
            .map_err(|err| StepError(format!("cannot move the {from} mount to {to}: {err}"))),
        Step::CopyExecutable { from, to } => copy_executable(from, to),
        Step::RemoveIfPossible(path) => {
            let _ = fs::remove_file(path);
            Ok(())
        }
        Step::SwitchRoot(path) => sys::switch_root(Path::new(path))
            .map_err(|err| StepError(format!("cannot switch the root to {path}: {err}"))),
        Step::Exec { program, args } => {
            let err = Command::new(program).args(args).exec();
            Err(StepError(format!(
                "cannot start {program} in the container: {err} (the agent must be a static binary for this CPU)"
            )))
        }
    }
}

fn wait_for_block_device(
    path: &str,
    param: &str,
    role: &str,
    tenths: u32,
) -> Result<(), StepError> {
    let mut waited = 0;
    loop {
        match fs::metadata(path) {
            Ok(meta) if meta.file_type().is_block_device() => return Ok(()),
            Ok(_) => {
                return Err(StepError(format!(
                    "no {role}: {path} is not a block device (fix {param}= on the kernel command line)"
                )))
            }
            Err(err) if err.kind() != io::ErrorKind::NotFound => {
                return Err(StepError(format!("no {role}: cannot look at {path}: {err}")))
            }
            Err(_) if waited >= tenths => {
                return Err(StepError(format!(
                    "no {role}: {path} does not exist after {}.{} s (attach a virtio-blk disk, or set {param}= on the kernel command line to the right one)",
                    tenths / 10,
                    tenths % 10
                )))
            }
            Err(_) => {
                thread::sleep(Duration::from_millis(100));
                waited += 1;
            }
        }
    }
}

fn copy_executable(from: &str, to: &str) -> Result<(), StepError> {
    let failed = |err: io::Error| {
        let hint = if err.kind() == io::ErrorKind::NotFound && !Path::new(from).exists() {
            format!(" (the initramfs has no agent at {from}; rebuild it with the agent there)")
        } else {
            String::new()
        };
        StepError(format!("cannot place the agent at {to}: {err}{hint}"))
    };
    fs::copy(from, to).map_err(failed)?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o755)).map_err(failed)
}
