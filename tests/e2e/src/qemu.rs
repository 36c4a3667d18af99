//! Booting a guest in QEMU the way the supermachine VMM boots it: virtio-mmio devices
//! (on x86_64 passed as `virtio_mmio.device=` by QEMU `microvm` with `acpi=off`; on
//! aarch64 from the `virt` machine's device tree), the serial console in a file, and
//! vsock through `vhost-device-vsock`'s hybrid Unix socket, with a [`Bridge`] in front
//! of it that offers guest port 1028 the way supermachine's VMM does.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::assets::{asset, Arch};
use crate::bridge::Bridge;

/// Guest CID given to vhost-device-vsock; the host is always CID 2.
pub const GUEST_CID: u32 = 3;

/// How QEMU runs the guest's CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
    /// TCG with `-icount shift=1,sleep=off`: guest time is a function of the
    /// instructions run, so boot figures repeat from run to run.
    TcgIcount,
}

impl Accel {
    /// KVM when `/dev/kvm` exists and a probe boot under it reaches the kernel's
    /// init stage, TCG otherwise (nested KVM is broken on some hosts). Only x86_64
    /// guests can use KVM on this host. `SUPERMACHINE_ACCEL=kvm|tcg` overrides.
    pub fn detect(arch: Arch) -> Accel {
        if arch != Arch::X86_64 || cfg!(not(target_arch = "x86_64")) {
            return Accel::Tcg;
        }
        match std::env::var("SUPERMACHINE_ACCEL").as_deref() {
            Ok("kvm") => return Accel::Kvm,
            Ok("tcg") => return Accel::Tcg,
            _ => {}
        }
        static PROBED: OnceLock<Accel> = OnceLock::new();
        *PROBED.get_or_init(|| {
            let accel = if kvm_boots() { Accel::Kvm } else { Accel::Tcg };
            eprintln!("e2e: accelerator {accel:?} (probed)");
            accel
        })
    }
}

/// Boots the x86_64 kernel under KVM with no initramfs: a working KVM gets as far as
/// looking for a root file system within seconds; a broken one errors or stalls.
fn kvm_boots() -> bool {
    if fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return false;
    }
    let Ok(dir) = tempfile::tempdir() else {
        return false;
    };
    let console = dir.path().join("probe.log");
    let child = Command::new("qemu-system-x86_64")
        .args([
            "-M",
            "microvm,acpi=off",
            "-accel",
            "kvm",
            "-cpu",
            "host",
            "-m",
            "128M",
        ])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-kernel")
        .arg(asset("x86_64/kernel/bzImage"))
        .args([
            "-append",
            "console=ttyS0 earlyprintk=ttyS0 reboot=t panic=-1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return false;
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ok = false;
    while Instant::now() < deadline {
        let text = fs::read_to_string(&console).unwrap_or_default();
        if text.contains("VFS:") || text.contains("No working init") {
            ok = true;
            break;
        }
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    ok
}

/// A disk attached as a virtio-blk device, in the order given (first is `/dev/vda`).
#[derive(Debug, Clone)]
pub struct Disk {
    pub path: PathBuf,
    pub read_only: bool,
}

/// What to boot.
#[derive(Debug, Clone)]
pub struct VmConfig {
    pub arch: Arch,
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    /// Appended after the console, panic and reboot words.
    pub cmdline: String,
    pub disks: Vec<Disk>,
    pub vsock: bool,
    pub cpus: u32,
    pub memory_mib: u32,
    pub accel: Accel,
    /// x86_64 only: let QEMU describe the devices in ACPI tables instead of on the
    /// command line (for reference kernels built without `VIRTIO_MMIO_CMDLINE_DEVICES`).
    pub x86_acpi: bool,
}

impl VmConfig {
    /// The host build's kernel and agent initramfs for `arch`, booting the test
    /// container rootfs as `/dev/vda`, with vsock. On x86_64 the command line is the
    /// one supermachine's KVM backend gives (the devices come from QEMU).
    pub fn agent_guest(arch: Arch) -> VmConfig {
        let a = arch.name();
        let cmdline = match arch {
            Arch::X86_64 => format!("tsi_hijack supermachine.host_time={}", host_time()),
            Arch::Aarch64 => "supermachine.rootfs=/dev/vda".into(),
        };
        VmConfig {
            arch,
            kernel: asset(&format!("{a}/kernel/{}", arch.kernel_image())),
            initrd: Some(asset(&format!("{a}/initramfs.cpio.gz"))),
            cmdline,
            disks: vec![Disk {
                path: asset(&format!("rootfs/test-rootfs-{a}.squashfs")),
                read_only: true,
            }],
            vsock: true,
            cpus: if arch == Arch::Aarch64 { 4 } else { 1 },
            memory_mib: 256,
            accel: Accel::detect(arch),
            x86_acpi: false,
        }
    }
}

/// Seconds since the epoch, as the VMM passes them in `supermachine.host_time=`.
pub fn host_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A running guest. Dropping it kills QEMU and the vsock backend.
pub struct Vm {
    qemu: Child,
    vsock_backend: Option<Child>,
    bridge: Option<Bridge>,
    dir: tempfile::TempDir,
    console: PathBuf,
    exit: Option<ExitStatus>,
}

impl Vm {
    /// Starts the guest (and vhost-device-vsock first, when asked for vsock).
    pub fn start(config: &VmConfig) -> Vm {
        let dir = tempfile::tempdir().expect("temporary directory for the VM");
        let console = dir.path().join("console.log");
        let vhost_sock = dir.path().join("vhost.sock");
        let uds = dir.path().join("vsock.sock");

        let vsock_backend = config.vsock.then(|| {
            let child = Command::new("vhost-device-vsock")
                .arg("--vm")
                .arg(format!(
                    "guest-cid={GUEST_CID},socket={},uds-path={}",
                    vhost_sock.display(),
                    uds.display()
                ))
                .stdout(Stdio::null())
                .stderr(Stdio::from(
                    fs::File::create(dir.path().join("vhost-device-vsock.log"))
                        .expect("vhost log file"),
                ))
                .spawn()
                .expect("vhost-device-vsock is not installed: run `sudo bash .ci/install`");
            wait_for_path(&vhost_sock, Duration::from_secs(10));
            child
        });
        let bridge = config.vsock.then(|| {
            Bridge::start(
                &dir.path().join("agent.sock"),
                &uds,
                supermachine_proto::AGENT_VSOCK_PORT,
            )
        });

        let mut cmd = match config.arch {
            Arch::X86_64 => {
                let mut c = Command::new("qemu-system-x86_64");
                let acpi = if config.x86_acpi { "on" } else { "off" };
                c.args(["-M", &format!("microvm,acpi={acpi}")]);
                c
            }
            Arch::Aarch64 => {
                let mut c = Command::new("qemu-system-aarch64");
                c.args(["-M", "virt"]);
                c
            }
        };
        let mem = format!("{}M", config.memory_mib);
        match config.accel {
            Accel::Kvm => cmd.args(["-accel", "kvm", "-cpu", "host"]),
            Accel::Tcg | Accel::TcgIcount => {
                // pauth-impdef: the architected pointer-auth algorithm is slow to emulate.
                let cpu = match config.arch {
                    Arch::X86_64 => "max",
                    Arch::Aarch64 => "max,pauth-impdef=on",
                };
                cmd.args(["-accel", "tcg", "-cpu", cpu])
            }
        };
        if config.accel == Accel::TcgIcount {
            cmd.args(["-icount", "shift=1,sleep=off"]);
        }
        cmd.args(["-m", &mem, "-smp", &config.cpus.to_string()]);
        cmd.args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ]);
        cmd.arg("-serial")
            .arg(format!("file:{}", console.display()));
        cmd.arg("-kernel").arg(&config.kernel);
        if let Some(initrd) = &config.initrd {
            cmd.arg("-initrd").arg(initrd);
        }
        let console_words = match config.arch {
            // supermachine's KVM backend's words; reboot=t since microvm has no i8042.
            Arch::X86_64 => "console=ttyS0 panic=-1 reboot=t",
            Arch::Aarch64 => "console=ttyAMA0 earlycon panic=-1",
        };
        cmd.arg("-append")
            .arg(format!("{console_words} {}", config.cmdline));
        // `virt` probes its virtio-mmio slots from the top, so the last disk given to QEMU
        // becomes /dev/vda there; list them backwards to keep "first is /dev/vda".
        let mut disks: Vec<(usize, &Disk)> = config.disks.iter().enumerate().collect();
        if config.arch == Arch::Aarch64 {
            disks.reverse();
        }
        for (i, disk) in disks {
            let ro = if disk.read_only { ",readonly=on" } else { "" };
            cmd.arg("-drive").arg(format!(
                "id=disk{i},file={},format=raw,if=none{ro}",
                disk.path.display()
            ));
            cmd.args(["-device", &format!("virtio-blk-device,drive=disk{i}")]);
        }
        if config.vsock {
            // vhost-user needs the guest memory shared with the backend process.
            cmd.args([
                "-object",
                &format!("memory-backend-memfd,id=mem,size={mem},share=on"),
                "-machine",
                "memory-backend=mem",
                "-chardev",
            ])
            .arg(format!("socket,id=vsock,path={}", vhost_sock.display()))
            .args(["-device", "vhost-user-vsock-device,chardev=vsock"]);
        }
        let qemu_log = fs::File::create(dir.path().join("qemu.log")).expect("qemu log file");
        let qemu = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(qemu_log))
            .spawn()
            .expect("QEMU is not installed: run `sudo bash .ci/install`");
        Vm {
            qemu,
            vsock_backend,
            bridge,
            dir,
            console,
            exit: None,
        }
    }

    /// The hybrid-vsock Unix socket (`CONNECT <port>\n`) reaching the guest.
    pub fn vsock_uds(&self) -> PathBuf {
        self.dir.path().join("vsock.sock")
    }

    /// The bridged socket: each connection reaches guest port 1028 at once, as on
    /// supermachine's VMM. Panics without vsock.
    pub fn agent_uds(&self) -> PathBuf {
        self.bridge
            .as_ref()
            .expect("the VM has no vsock device")
            .path()
            .to_path_buf()
    }

    /// A directory that lives as long as the VM (for test files).
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the guest printed on its serial console so far.
    pub fn console(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.console).unwrap_or_default()).into_owned()
    }

    /// QEMU's own error output (for failure messages).
    pub fn qemu_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("qemu.log")).unwrap_or_default()
    }

    /// Waits until the console shows `needle`; fails the test with the console on timeout
    /// or if QEMU ends first.
    pub fn wait_console(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.console();
            if text.contains(needle) {
                return text;
            }
            if let Some(status) = self.try_exit() {
                panic!(
                    "QEMU ended ({status}) before the console showed {needle:?}\n--- console ---\n{text}\n--- qemu ---\n{}",
                    self.qemu_log()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "console did not show {needle:?} within {timeout:?}\n--- console ---\n{text}\n--- qemu ---\n{}",
                    self.qemu_log()
                );
            }
            sleep(Duration::from_millis(50));
        }
    }

    fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.qemu.try_wait().ok().flatten();
        }
        self.exit
    }

    /// Waits for QEMU to end by itself (the guest powered off or rebooted); `None` on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
        if let Some(backend) = &mut self.vsock_backend {
            let _ = backend.kill();
            let _ = backend.wait();
        }
    }
}

fn wait_for_path(path: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} did not appear within {timeout:?}",
            path.display()
        );
        sleep(Duration::from_millis(20));
    }
}
