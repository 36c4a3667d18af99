//! The x86_64 kernel on its own: the shared fragments hold, and the kernel (the bzImage,
//! and the ELF vmlinux through its PVH entry) boots a minimal initramfs under QEMU
//! `microvm` with virtio-mmio devices from the command line.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use supermachine_e2e::qemu::Disk;
use supermachine_e2e::{asset, workspace_root, Accel, Arch, Vm, VmConfig};

const MARKER: &str = "SUPERMACHINE-E2E-INIT-REACHED";

/// An initramfs whose /init reports what the guest sees and ends the VM.
fn probe_initramfs(dir: &std::path::Path) -> std::path::PathBuf {
    let root = dir.join("root");
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::copy(asset("x86_64/busybox"), root.join("bin/busybox")).unwrap();
    let init = format!(
        "#!/bin/busybox sh\n\
         /bin/busybox mkdir -p /proc /sys\n\
         /bin/busybox mount -t proc proc /proc\n\
         /bin/busybox mount -t sysfs sysfs /sys\n\
         echo {MARKER} pid=$$\n\
         for d in /sys/bus/virtio/devices/*; do echo \"virtio-device $(/bin/busybox cat $d/device)\"; done\n\
         echo \"cmdline: $(/bin/busybox cat /proc/cmdline)\"\n\
         echo END-OF-PROBE\n\
         /bin/busybox reboot -f\n"
    );
    fs::write(root.join("init"), init).unwrap();
    fs::set_permissions(root.join("init"), fs::Permissions::from_mode(0o755)).unwrap();
    let out = dir.join("probe.cpio.gz");
    supermachine_initramfs::pack_tree(&root, &out, 0).unwrap();
    out
}

#[test]
fn minimal_initramfs_reaches_init_and_sees_virtio_mmio_devices() {
    boot_probe("x86_64/kernel/bzImage");
}

/// QEMU loads an ELF kernel only through its PVH note ("Error loading uncompressed
/// kernel without PVH ELF Note" otherwise), so reaching /init proves the PVH entry.
#[test]
fn the_elf_vmlinux_boots_directly_through_pvh() {
    boot_probe("x86_64/kernel/vmlinux");
}

/// Boots KERNEL (an asset path) with the probe initramfs, a disk and vsock, and checks
/// what /init saw.
fn boot_probe(kernel: &str) {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let config = VmConfig {
        arch: Arch::X86_64,
        kernel: asset(kernel),
        initrd: Some(probe_initramfs(dir.path())),
        cmdline: String::new(),
        disks: vec![Disk {
            path: disk,
            read_only: true,
        }],
        vsock: true,
        cpus: 1,
        memory_mib: 256,
        accel: Accel::detect(Arch::X86_64),
        x86_acpi: false,
        console_input: false,
        memory_file: false,
        env_service: None,
        keep: Vec::new(),
    };
    let mut vm = Vm::start(&config);
    let console = vm.wait_console("END-OF-PROBE", Duration::from_secs(120));
    assert!(console.contains(&format!("{MARKER} pid=1")), "{console}");
    // microvm with acpi=off hands the devices to the kernel on its command line.
    let cmdline = console
        .lines()
        .find(|l| l.starts_with("cmdline: "))
        .expect("cmdline line");
    assert_eq!(
        cmdline.matches("virtio_mmio.device=").count(),
        2,
        "{cmdline}"
    );
    // 0x0002 is virtio-blk, 0x0013 virtio-vsock.
    assert!(console.contains("virtio-device 0x0002"), "{console}");
    assert!(console.contains("virtio-device 0x0013"), "{console}");
    assert!(
        vm.wait_exit(Duration::from_secs(60)).is_some(),
        "reboot -f with reboot=t and -no-reboot should end QEMU"
    );
}

#[test]
fn a_fragment_symbol_that_cannot_be_set_fails_the_build_with_its_name() {
    let work = tempfile::tempdir().unwrap();
    let fragment = work.path().join("impossible.cfg");
    // ACPI_BUTTON depends on ACPI, which x86_64.cfg turns off; the other does not exist.
    fs::write(
        &fragment,
        "CONFIG_ACPI_BUTTON=y\nCONFIG_SUPERMACHINE_NO_SUCH_SYMBOL=y\n",
    )
    .unwrap();
    let output = Command::new(workspace_root().join("scripts/build-kernel"))
        .args(["x86_64", "--config-only", "--fragment"])
        .arg(&fragment)
        .env("SUPERMACHINE_WORK", work.path())
        .env("SUPERMACHINE_OUT", work.path().join("out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the build should fail:\n{stderr}");
    assert!(
        stderr.contains("impossible.cfg: CONFIG_ACPI_BUTTON=y did not survive olddefconfig"),
        "{stderr}"
    );
    assert!(
        stderr.contains("CONFIG_SUPERMACHINE_NO_SUCH_SYMBOL=y did not survive"),
        "{stderr}"
    );
    assert!(stderr.contains("2 fragment symbol(s) dropped"), "{stderr}");
    // Nothing was published.
    assert!(!work.path().join("out/x86_64").exists());
}

/// Every busybox applet the rendered x86_64 `/init` and its launch script call is in the
/// busybox the host build ships (`busybox --list`).
#[test]
fn every_applet_the_init_calls_is_in_the_shipped_busybox() {
    let dir = workspace_root().join("files/init");
    let params = supermachine_initramfs::init_template::parse_params(
        &fs::read_to_string(dir.join("init.conf")).unwrap(),
    )
    .unwrap();
    let init = supermachine_initramfs::init_template::render(
        &fs::read_to_string(dir.join("init.sh.in")).unwrap(),
        &params,
    )
    .unwrap();
    // `$bb APPLET` in /init, `$b APPLET` in the launch script, plus the shebangs' sh.
    let mut used = std::collections::BTreeSet::from(["sh".to_string()]);
    for prefix in ["$bb ", "$b "] {
        for part in init.split(prefix).skip(1) {
            let applet: String = part
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !applet.is_empty() {
                used.insert(applet);
            }
        }
    }
    for expected in ["mount", "switch_root", "cp", "ip", "date", "grep", "printf"] {
        assert!(used.contains(expected), "{expected} not found in {used:?}");
    }
    let list = Command::new(asset("x86_64/busybox"))
        .arg("--list")
        .output()
        .unwrap();
    assert!(list.status.success());
    let list = String::from_utf8(list.stdout).unwrap();
    let have: std::collections::BTreeSet<&str> = list.lines().collect();
    let missing: Vec<&String> = used.iter().filter(|a| !have.contains(a.as_str())).collect();
    assert!(
        missing.is_empty(),
        "the shipped busybox lacks {missing:?}, which /init calls"
    );
}
