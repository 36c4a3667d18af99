//! Booting a guest in QEMU the way the supermachine VMM boots it: virtio-mmio devices
//! (on x86_64 passed as `virtio_mmio.device=` by QEMU `microvm` with `acpi=off`; on
//! aarch64 from the `virt` machine's device tree), the serial console in a file, and
//! vsock through `vhost-device-vsock`'s hybrid Unix socket, with a [`Bridge`] in front
//! of it that offers guest port 1028 the way supermachine's VMM does.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

use crate::assets::{asset, Arch};
use crate::bridge::Bridge;
use crate::hvf::{self, Delta, EnvService};

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
    /// The console on a socket the harness reads and writes (for `R`/`P`), instead of a
    /// file.
    pub console_input: bool,
    /// Guest RAM in a shared file the harness can read and write (`Vm::write_guest`).
    pub memory_file: bool,
    /// Answer guest connections to host vsock port 1026 with this body.
    pub env_service: Option<String>,
    /// Files the disks live in, kept as long as the configuration.
    pub keep: Vec<Arc<tempfile::TempDir>>,
}

impl VmConfig {
    /// The host build's kernel and agent initramfs for `arch`, booting the test
    /// container rootfs as `/dev/vda`, with vsock. On x86_64 the command line is the
    /// one supermachine's KVM backend gives (the devices come from QEMU).
    pub fn agent_guest(arch: Arch) -> VmConfig {
        if arch == Arch::Aarch64 {
            return VmConfig::hvf_guest(&Delta::reporting_workload());
        }
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
            console_input: false,
            memory_file: false,
            env_service: None,
            keep: Vec::new(),
        }
    }

    /// The aarch64 guest as supermachine's HVF backend boots it: the VMM's initramfs
    /// (init-oci and smpark.ko), one read-only disk per image layer then the delta,
    /// the env service on port 1026, the console open for `R`/`P`, 4 vCPUs.
    pub fn hvf_guest(delta: &Delta) -> VmConfig {
        let dir = Arc::new(tempfile::tempdir().expect("temporary directory for the delta"));
        let mut disks: Vec<Disk> = hvf::layers()
            .into_iter()
            .map(|path| Disk {
                path,
                read_only: true,
            })
            .collect();
        disks.push(Disk {
            path: delta.build(dir.path()),
            read_only: true,
        });
        let host_time = host_time();
        VmConfig {
            arch: Arch::Aarch64,
            kernel: asset("aarch64/kernel/Image"),
            initrd: Some(asset("aarch64/initramfs.cpio.gz")),
            cmdline: format!("supermachine.host_time={host_time} supermachine.host_ipv6=0"),
            disks,
            vsock: true,
            cpus: 4,
            memory_mib: 256,
            accel: Accel::Tcg,
            x86_acpi: false,
            console_input: true,
            memory_file: true,
            env_service: Some(hvf::env_json(
                &[("GREETING", "hello from port 1026"), ("PATH", "/bin")],
                &[("SECRET_TOKEN", "s3cr3t")],
            )),
            keep: vec![dir],
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
    env_service: Option<EnvService>,
    console_in: Option<Mutex<UnixStream>>,
    guest_ram: Option<PathBuf>,
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
        let env_service = config
            .env_service
            .clone()
            .map(|body| EnvService::start(&uds, body));
        let guest_ram = config.memory_file.then(|| dir.path().join("guest-ram"));
        let console_sock = dir.path().join("console.sock");
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
        if config.console_input {
            // wait=on: the guest starts only once the harness is connected, so no
            // output is lost.
            cmd.arg("-chardev")
                .arg(format!(
                    "socket,id=con0,path={},server=on,wait=on",
                    console_sock.display()
                ))
                .args(["-serial", "chardev:con0"]);
        } else {
            cmd.arg("-serial")
                .arg(format!("file:{}", console.display()));
        }
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
        if let Some(ram) = &guest_ram {
            // A shared file mapping: what the guest stores, the harness reads, and back.
            cmd.arg("-object")
                .arg(format!(
                    "memory-backend-file,id=mem,size={mem},share=on,mem-path={}",
                    ram.display()
                ))
                .args(["-machine", "memory-backend=mem"]);
        } else if config.vsock {
            cmd.args([
                "-object",
                &format!("memory-backend-memfd,id=mem,size={mem},share=on"),
                "-machine",
                "memory-backend=mem",
            ]);
        }
        if config.vsock {
            // vhost-user needs the guest memory shared with the backend process (above).
            cmd.args(["-chardev"])
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
        let console_in = config.console_input.then(|| {
            let stream = connect_retry(&console_sock, Duration::from_secs(20));
            let mut reader = stream.try_clone().expect("console stream");
            let mut log = fs::File::create(&console).expect("console log");
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = reader.read(&mut buf) {
                    if n == 0 || log.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
            Mutex::new(stream)
        });
        Vm {
            qemu,
            vsock_backend,
            env_service,
            console_in,
            guest_ram,
            bridge,
            dir,
            console,
            exit: None,
        }
    }

    /// Sends bytes to the guest's console input, as the VMM pushes `R\n` and `P\n`.
    pub fn push_console(&self, bytes: &[u8]) {
        let stream = self
            .console_in
            .as_ref()
            .expect("the VM was configured without console_input");
        stream
            .lock()
            .expect("console lock")
            .write_all(bytes)
            .expect("write to the guest console");
    }

    /// How many times the guest fetched its environment from port 1026.
    pub fn env_requests(&self) -> usize {
        self.env_service.as_ref().map_or(0, EnvService::served)
    }

    fn ram_file(&self) -> fs::File {
        let path = self
            .guest_ram
            .as_ref()
            .expect("the VM was configured without memory_file");
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .expect("guest RAM file")
    }

    /// Reads guest-physical memory (QEMU `virt`: RAM from 0x4000_0000).
    pub fn read_guest(&self, gpa: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        self.ram_file()
            .read_exact_at(&mut buf, gpa - hvf::VIRT_RAM_BASE)
            .expect("read guest memory");
        buf
    }

    /// Stores bytes into guest-physical memory, as the VMM's direct smpark release does.
    pub fn write_guest(&self, gpa: u64, bytes: &[u8]) {
        self.ram_file()
            .write_all_at(bytes, gpa - hvf::VIRT_RAM_BASE)
            .expect("write guest memory");
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

    /// QEMU's own error output and the vsock backend's (for failure messages).
    pub fn qemu_log(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        let vsock = read("vhost-device-vsock.log");
        if vsock.is_empty() {
            read("qemu.log")
        } else {
            format!("{}--- vhost-device-vsock ---\n{vsock}", read("qemu.log"))
        }
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

fn connect_retry(path: &Path, timeout: Duration) -> UnixStream {
    let deadline = Instant::now() + timeout;
    loop {
        match UnixStream::connect(path) {
            Ok(stream) => return stream,
            Err(e) => assert!(
                Instant::now() < deadline,
                "QEMU's console socket {} did not accept within {timeout:?}: {e}",
                path.display()
            ),
        }
        sleep(Duration::from_millis(20));
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
