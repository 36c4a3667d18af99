//! The writable layer on a second disk (`supermachine.upper=`) of the x86_64 `/init`
//! (aarch64 follows supermachine's HVF contract instead: a tmpfs upper layer, and ext4
//! disks only as volumes): it mounts an ext4 disk as the overlay's upper layer, so what the container writes survives a power off and the next boot sees it,
//! while the squashfs rootfs stays untouched. An unformatted disk is refused with a
//! message that says how to format it, and the VM ends.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command as HostCommand;
use std::time::Duration;

use supermachine_client::Client;
use supermachine_e2e::qemu::Disk;
use supermachine_e2e::{boot_agent, sh_stdout as stdout, Arch, Vm, VmConfig};
use supermachine_packer::sha256_hex;

/// Boot to a ready agent under TCG (4 vCPUs on aarch64), with room for a loaded host.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
const UPPER_MIB: u64 = 32;

/// The agent guest of `arch` with `upper` attached as `/dev/vdb` and named as the upper.
fn config(arch: Arch, upper: &Path) -> VmConfig {
    let mut config = VmConfig::agent_guest(arch);
    config.cmdline.push_str(" supermachine.upper=/dev/vdb");
    config.disks.push(Disk {
        path: upper.to_path_buf(),
        read_only: false,
    });
    config
}

/// A zero-filled disk image of `UPPER_MIB`, formatted as ext4 when `format` is set.
fn upper_image(dir: &Path, format: bool) -> PathBuf {
    let path = dir.join(if format { "upper.ext4" } else { "blank.img" });
    let file = fs::File::create(&path).unwrap();
    file.set_len(UPPER_MIB << 20).unwrap();
    if format {
        // Debian keeps mkfs in /usr/sbin, which a user's PATH may lack.
        let search = std::env::var("PATH").unwrap_or_default() + ":/usr/sbin:/sbin";
        let status = HostCommand::new("mkfs.ext4")
            .env("PATH", search)
            .args(["-q", "-F"])
            .arg(&path)
            .status()
            .expect("mkfs.ext4 (e2fsprogs, installed by .ci/install)");
        assert!(status.success(), "mkfs.ext4 failed: {status}");
    }
    path
}

fn boot(config: &VmConfig) -> (Vm, Client) {
    boot_agent(config, BOOT_TIMEOUT, Duration::from_secs(120))
}

fn power_off(mut vm: Vm, client: Client) {
    client.power_off().expect("power off");
    assert!(
        vm.wait_exit(Duration::from_secs(120)).is_some(),
        "the VM did not end after power off\n{}",
        vm.console()
    );
}

fn writes_survive_a_reboot(arch: Arch) {
    let dir = tempfile::tempdir().unwrap();
    let upper = upper_image(dir.path(), true);
    let config = config(arch, &upper);
    let rootfs = &config.disks[0].path;
    let rootfs_before = sha256_hex(&fs::read(rootfs).unwrap());

    let (vm, client) = boot(&config);
    let console = vm.console();
    assert!(
        console.contains("rootfs /dev/vda, upper /dev/vdb; starting the agent"),
        "{console}"
    );
    let mounts = stdout(&client, "cat /proc/mounts");
    assert!(
        mounts.lines().any(|l| l.starts_with("overlay / overlay ")),
        "{mounts}"
    );
    // A new file, a changed rootfs file and a removed one: all three live in the upper.
    stdout(
        &client,
        "echo kept > /root/kept && echo changed > /etc/supermachine-test-rootfs && rm /etc/group",
    );
    power_off(vm, client);

    let (vm, client) = boot(&config);
    assert_eq!(
        stdout(
            &client,
            "cat /root/kept /etc/supermachine-test-rootfs; ls /etc/group 2>&1 || true"
        ),
        "kept\nchanged\nls: /etc/group: No such file or directory\n"
    );
    power_off(vm, client);
    assert_eq!(sha256_hex(&fs::read(rootfs).unwrap()), rootfs_before);
}

fn an_unformatted_upper_is_refused(arch: Arch) {
    let dir = tempfile::tempdir().unwrap();
    let blank = upper_image(dir.path(), false);
    let mut vm = Vm::start(&config(arch, &blank));
    let console = vm.wait_console("format the upper disk with mkfs.ext4", BOOT_TIMEOUT);
    assert!(console.contains("/dev/vdb"), "{console}");
    assert!(
        vm.wait_exit(Duration::from_secs(120)).is_some(),
        "the VM should end after the error\n{}",
        vm.console()
    );
    assert!(!vm.console().contains("Kernel panic"), "{}", vm.console());
    // Nothing was written to the disk it refused.
    assert!(fs::read(&blank).unwrap().iter().all(|&b| b == 0));
}

#[test]
fn x86_64_writes_on_an_upper_disk_survive_a_reboot() {
    writes_survive_a_reboot(Arch::X86_64);
}

#[test]
fn x86_64_an_unformatted_upper_disk_is_refused() {
    an_unformatted_upper_is_refused(Arch::X86_64);
}
