//! What init does, as a list of steps built from the command line without touching the
//! system, so the whole decision logic is testable on any host.
//!
//! Each step carries the hint printed when it fails, so the console line says what is
//! missing and how to fix it.

use std::fmt;

use crate::cmdline::BootArgs;
use crate::conf;

/// Mount options that are flags rather than filesystem data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MountFlags {
    /// `MS_RDONLY`
    pub read_only: bool,
    /// `MS_NOSUID`
    pub no_suid: bool,
    /// `MS_NODEV`
    pub no_dev: bool,
    /// `MS_NOEXEC`
    pub no_exec: bool,
}

/// One `mount(2)` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Device or pseudo-filesystem name.
    pub source: String,
    /// Mount point.
    pub target: String,
    /// Filesystem type.
    pub fstype: String,
    /// Flag options.
    pub flags: MountFlags,
    /// Filesystem-specific options (`-o` text that is not a flag).
    pub data: Option<String>,
    /// Why it might fail and what to do, printed after the error.
    pub hint: String,
}

/// One thing init does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Print a progress line on the console.
    Say(String),
    /// Create a directory and its parents.
    MakeDir(String),
    /// Wait for a block device node to appear (virtio probing may lag behind init).
    WaitForBlockDevice {
        /// The device node.
        path: String,
        /// The command line key that named it.
        param: &'static str,
        /// What the disk is for, as in "rootfs disk".
        role: &'static str,
        /// How long to wait, in tenths of a second.
        tenths: u32,
    },
    /// Mount a filesystem.
    Mount(Mount),
    /// Move a mount to another mount point (`mount --move`).
    MoveMount {
        /// The current mount point.
        from: String,
        /// The new mount point.
        to: String,
    },
    /// Copy a file and make it executable (mode 0755).
    CopyExecutable {
        /// Source file.
        from: String,
        /// Destination file.
        to: String,
    },
    /// Remove a file if possible; failing to is not an error (it only frees memory).
    RemoveIfPossible(String),
    /// Make the directory the new `/`: chdir, move it onto `/`, chroot.
    SwitchRoot(String),
    /// Replace init with a program (path as seen after the switch).
    Exec {
        /// The program.
        program: String,
        /// Its arguments after `argv[0]`.
        args: Vec<String>,
    },
}

/// Why no plan can be made from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// The command line does not name the rootfs disk.
    NoRootfs,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRootfs => write!(
                f,
                "no rootfs disk named (set {}=/dev/vdX on the kernel command line)",
                conf::ROOTFS_PARAM
            ),
        }
    }
}

/// The pseudo-filesystems init itself needs, before it can read the command line.
pub fn early_steps() -> Vec<Step> {
    let kernel_fs = MountFlags {
        no_suid: true,
        no_dev: true,
        no_exec: true,
        ..MountFlags::default()
    };
    let dev_fs = MountFlags {
        no_suid: true,
        ..MountFlags::default()
    };
    let mut steps = vec![
        Step::MakeDir("/proc".into()),
        Step::MakeDir("/sys".into()),
        Step::MakeDir("/dev".into()),
    ];
    for (fstype, target, flags, option) in [
        ("proc", "/proc", kernel_fs, "CONFIG_PROC_FS"),
        ("sysfs", "/sys", kernel_fs, "CONFIG_SYSFS"),
        ("devtmpfs", "/dev", dev_fs, "CONFIG_DEVTMPFS"),
    ] {
        steps.push(Step::Mount(Mount {
            source: fstype.into(),
            target: target.into(),
            fstype: fstype.into(),
            flags,
            data: None,
            hint: format!("kernel without {option}?"),
        }));
    }
    steps
}

/// Everything after the early mounts: assemble the container root and exec the agent.
pub fn container_steps(args: &BootArgs) -> Result<Vec<Step>, PlanError> {
    let rootfs = args.rootfs.as_deref().ok_or(PlanError::NoRootfs)?;
    let newroot = conf::NEWROOT;
    let overlay = conf::OVERLAY_DIR;
    let agent_in_newroot = format!("{newroot}{}", conf::AGENT_ROOTFS_PATH);

    let mut steps = vec![
        wait_for(rootfs, conf::ROOTFS_PARAM, "rootfs disk"),
        Step::MakeDir(conf::LOWER_DIR.into()),
        Step::MakeDir(overlay.into()),
        Step::MakeDir(newroot.into()),
        Step::Mount(Mount {
            source: rootfs.into(),
            target: conf::LOWER_DIR.into(),
            fstype: conf::ROOTFS_FSTYPE.into(),
            flags: MountFlags {
                read_only: true,
                ..MountFlags::default()
            },
            data: None,
            hint: format!(
                "is {rootfs} a {} image? kernel without its support?",
                conf::ROOTFS_FSTYPE
            ),
        }),
    ];
    match args.upper.as_deref() {
        Some(upper) => {
            steps.push(wait_for(upper, conf::UPPER_PARAM, "upper disk"));
            steps.push(Step::Mount(Mount {
                source: upper.into(),
                target: overlay.into(),
                fstype: conf::UPPER_FSTYPE.into(),
                flags: MountFlags::default(),
                data: None,
                hint: format!(
                    "format the upper disk with mkfs.{0}, or drop {1}= to use a tmpfs",
                    conf::UPPER_FSTYPE,
                    conf::UPPER_PARAM
                ),
            }));
        }
        None => steps.push(Step::Mount(Mount {
            source: "tmpfs".into(),
            target: overlay.into(),
            fstype: "tmpfs".into(),
            flags: MountFlags::default(),
            data: Some("mode=0755".into()),
            hint: "kernel without CONFIG_TMPFS?".into(),
        })),
    }
    steps.extend([
        Step::MakeDir(format!("{overlay}/upper")),
        Step::MakeDir(format!("{overlay}/work")),
        Step::Mount(Mount {
            source: "overlay".into(),
            target: newroot.into(),
            fstype: "overlay".into(),
            flags: MountFlags::default(),
            data: Some(format!(
                "lowerdir={},upperdir={overlay}/upper,workdir={overlay}/work",
                conf::LOWER_DIR
            )),
            hint: "kernel without CONFIG_OVERLAY_FS?".into(),
        }),
        Step::MakeDir(parent(&agent_in_newroot).into()),
        Step::CopyExecutable {
            from: conf::AGENT_INITRAMFS_PATH.into(),
            to: agent_in_newroot,
        },
        // The initramfs stays in memory after the switch; its agent copy is its only
        // large file, and dropping it is the cheap part of what switch_root's wipe frees.
        Step::RemoveIfPossible(conf::AGENT_INITRAMFS_PATH.into()),
    ]);
    for dir in ["/proc", "/sys", "/dev"] {
        steps.push(Step::MakeDir(format!("{newroot}{dir}")));
        steps.push(Step::MoveMount {
            from: dir.into(),
            to: format!("{newroot}{dir}"),
        });
    }
    // The agent's exec with a pseudo-terminal needs devpts.
    steps.push(Step::MakeDir(format!("{newroot}/dev/pts")));
    steps.push(Step::Mount(Mount {
        source: "devpts".into(),
        target: format!("{newroot}/dev/pts"),
        fstype: "devpts".into(),
        flags: MountFlags {
            no_suid: true,
            no_exec: true,
            ..MountFlags::default()
        },
        data: Some("gid=5,mode=0620,ptmxmode=0666".into()),
        hint: "kernel without CONFIG_UNIX98_PTYS?".into(),
    }));
    steps.push(Step::Say(format!(
        "rootfs {rootfs}, upper {}; starting the agent",
        args.upper.as_deref().unwrap_or("tmpfs")
    )));
    steps.push(Step::SwitchRoot(newroot.into()));
    let mut agent_args = Vec::new();
    if let Some(port) = args.agent_port {
        agent_args.push("--vsock-port".to_string());
        agent_args.push(port.to_string());
    }
    steps.push(Step::Exec {
        program: conf::AGENT_ROOTFS_PATH.into(),
        args: agent_args,
    });
    Ok(steps)
}

fn wait_for(path: &str, param: &'static str, role: &'static str) -> Step {
    Step::WaitForBlockDevice {
        path: path.into(),
        param,
        role,
        tenths: conf::DEVICE_WAIT_TENTHS,
    }
}

/// The directory part of an absolute path ("/" for a file at the top).
fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(at) => &path[..at],
    }
}

impl fmt::Display for MountFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (self.read_only, "ro"),
            (self.no_suid, "nosuid"),
            (self.no_dev, "nodev"),
            (self.no_exec, "noexec"),
        ];
        let set: Vec<&str> = names
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, name)| *name)
            .collect();
        f.write_str(&set.join(","))
    }
}

/// Shell-like rendering, for `init-oci --plan` and for reading test failures.
impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Say(text) => write!(f, "say {text:?}"),
            Self::MakeDir(path) => write!(f, "mkdir -p {path}"),
            Self::WaitForBlockDevice { path, tenths, .. } => {
                write!(
                    f,
                    "wait-for-block {path} ({}.{} s)",
                    tenths / 10,
                    tenths % 10
                )
            }
            Self::Mount(mount) => {
                let mut options = mount.flags.to_string();
                if let Some(data) = &mount.data {
                    if !options.is_empty() {
                        options.push(',');
                    }
                    options.push_str(data);
                }
                write!(f, "mount -t {}", mount.fstype)?;
                if !options.is_empty() {
                    write!(f, " -o {options}")?;
                }
                write!(f, " {} {}", mount.source, mount.target)
            }
            Self::MoveMount { from, to } => write!(f, "mount --move {from} {to}"),
            Self::CopyExecutable { from, to } => write!(f, "install -m 0755 {from} {to}"),
            Self::RemoveIfPossible(path) => write!(f, "rm -f {path}"),
            Self::SwitchRoot(path) => write!(f, "switch-root {path}"),
            Self::Exec { program, args } => {
                write!(f, "exec {program}")?;
                args.iter().try_for_each(|arg| write!(f, " {arg}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(rootfs: &str, upper: Option<&str>, port: Option<u32>) -> BootArgs {
        BootArgs {
            rootfs: Some(rootfs.into()),
            upper: upper.map(Into::into),
            agent_port: port,
        }
    }

    fn mounts(steps: &[Step]) -> Vec<&Mount> {
        steps
            .iter()
            .filter_map(|step| match step {
                Step::Mount(mount) => Some(mount),
                _ => None,
            })
            .collect()
    }

    fn position(steps: &[Step], wanted: impl Fn(&Step) -> bool) -> usize {
        steps.iter().position(wanted).expect("step present")
    }

    #[test]
    fn early_steps_mount_proc_sys_dev() {
        let steps = early_steps();
        let targets: Vec<&str> = mounts(&steps).iter().map(|m| m.target.as_str()).collect();
        assert_eq!(targets, ["/proc", "/sys", "/dev"]);
        assert!(matches!(steps[0], Step::MakeDir(_)));
    }

    #[test]
    fn no_rootfs_is_an_error_naming_the_key() {
        let err = container_steps(&BootArgs::default()).expect_err("no rootfs");
        assert_eq!(err, PlanError::NoRootfs);
        assert!(err.to_string().contains(conf::ROOTFS_PARAM));
    }

    #[test]
    fn rootfs_is_waited_for_then_mounted_read_only() {
        let steps = container_steps(&args("/dev/vda", None, None)).expect("plan");
        let wait = position(
            &steps,
            |s| matches!(s, Step::WaitForBlockDevice { path, .. } if path == "/dev/vda"),
        );
        let lower = mounts(&steps)[0];
        assert_eq!(lower.source, "/dev/vda");
        assert_eq!(lower.target, conf::LOWER_DIR);
        assert_eq!(lower.fstype, conf::ROOTFS_FSTYPE);
        assert!(lower.flags.read_only);
        let mount = position(
            &steps,
            |s| matches!(s, Step::Mount(m) if m.source == "/dev/vda"),
        );
        assert!(wait < mount);
    }

    #[test]
    fn tmpfs_upper_without_an_upper_disk() {
        let steps = container_steps(&args("/dev/vda", None, None)).expect("plan");
        let upper = mounts(&steps)[1];
        assert_eq!(
            (upper.fstype.as_str(), upper.target.as_str()),
            ("tmpfs", conf::OVERLAY_DIR)
        );
        assert_eq!(
            steps
                .iter()
                .filter(|s| matches!(s, Step::WaitForBlockDevice { .. }))
                .count(),
            1
        );
    }

    #[test]
    fn upper_disk_is_waited_for_and_mounted() {
        let steps = container_steps(&args("/dev/vda", Some("/dev/vdb"), None)).expect("plan");
        let upper = mounts(&steps)[1];
        assert_eq!(upper.source, "/dev/vdb");
        assert_eq!(upper.fstype, conf::UPPER_FSTYPE);
        assert!(!upper.flags.read_only);
        assert!(steps.iter().any(|s| matches!(
            s,
            Step::WaitForBlockDevice { path, param, .. } if path == "/dev/vdb" && *param == conf::UPPER_PARAM
        )));
    }

    #[test]
    fn overlay_stacks_upper_on_lower_at_newroot() {
        let steps = container_steps(&args("/dev/vda", None, None)).expect("plan");
        let overlay = mounts(&steps)[2];
        assert_eq!(overlay.fstype, "overlay");
        assert_eq!(overlay.target, conf::NEWROOT);
        let data = overlay.data.as_deref().expect("options");
        assert!(data.contains(&format!("lowerdir={}", conf::LOWER_DIR)));
        assert!(data.contains(&format!("upperdir={}/upper", conf::OVERLAY_DIR)));
        assert!(data.contains(&format!("workdir={}/work", conf::OVERLAY_DIR)));
    }

    #[test]
    fn agent_is_copied_in_before_the_switch_and_execed_after() {
        let steps = container_steps(&args("/dev/vda", None, None)).expect("plan");
        let copy = position(&steps, |s| {
            matches!(s, Step::CopyExecutable { from, to }
                if from == conf::AGENT_INITRAMFS_PATH
                && *to == format!("{}{}", conf::NEWROOT, conf::AGENT_ROOTFS_PATH))
        });
        let overlay = position(
            &steps,
            |s| matches!(s, Step::Mount(m) if m.fstype == "overlay"),
        );
        let switch = position(
            &steps,
            |s| matches!(s, Step::SwitchRoot(p) if p == conf::NEWROOT),
        );
        assert!(overlay < copy && copy < switch);
        assert_eq!(
            steps.last(),
            Some(&Step::Exec {
                program: conf::AGENT_ROOTFS_PATH.into(),
                args: vec![]
            })
        );
        assert_eq!(switch, steps.len() - 2);
    }

    #[test]
    fn kernel_mounts_move_into_the_new_root_before_the_switch() {
        let steps = container_steps(&args("/dev/vda", None, None)).expect("plan");
        let switch = position(&steps, |s| matches!(s, Step::SwitchRoot(_)));
        for dir in ["/proc", "/sys", "/dev"] {
            let moved = position(
                &steps,
                |s| matches!(s, Step::MoveMount { from, to } if from == dir && *to == format!("{}{dir}", conf::NEWROOT)),
            );
            assert!(moved < switch, "{dir}");
        }
        let pts = position(
            &steps,
            |s| matches!(s, Step::Mount(m) if m.fstype == "devpts"),
        );
        let dev = position(
            &steps,
            |s| matches!(s, Step::MoveMount { from, .. } if from == "/dev"),
        );
        assert!(dev < pts && pts < switch);
    }

    #[test]
    fn agent_port_becomes_the_vsock_port_flag() {
        let steps = container_steps(&args("/dev/vda", None, Some(1025))).expect("plan");
        let Some(Step::Exec { args, .. }) = steps.last() else {
            panic!("last step is not exec: {:?}", steps.last());
        };
        assert_eq!(args, &["--vsock-port", "1025"]);
    }

    #[test]
    fn rendering_reads_like_shell() {
        let steps = container_steps(&args("/dev/vda", None, Some(7))).expect("plan");
        let text: Vec<String> = steps.iter().map(ToString::to_string).collect();
        assert!(text.contains(&format!(
            "mount -t {} -o ro /dev/vda {}",
            conf::ROOTFS_FSTYPE,
            conf::LOWER_DIR
        )));
        assert_eq!(
            text.last().map(String::as_str),
            Some(format!("exec {} --vsock-port 7", conf::AGENT_ROOTFS_PATH).as_str())
        );
    }

    #[test]
    fn parent_of_paths() {
        assert_eq!(
            parent("/newroot/.supermachine/agent"),
            "/newroot/.supermachine"
        );
        assert_eq!(parent("/agent"), "/");
    }
}
