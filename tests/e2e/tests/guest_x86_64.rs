//! The x86_64 guest end to end: the host build's kernel and agent initramfs boot the test
//! container rootfs from a virtio-blk disk, stack a writable overlay on it, and run the
//! agent as PID 1; the host drives it over real virtio-vsock (vhost-device-vsock).

use std::fs;
use std::time::Duration;

use sha2::{Digest, Sha256};
use supermachine_client::{Client, Command, ExitStatus};
use supermachine_e2e::{asset, boot_agent, sh, sh_stdout as stdout, Arch, Vm, VmConfig};

/// Boot plus agent start under TCG takes a few seconds; leave room for a loaded host.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

fn boot() -> (Vm, Client) {
    let config = VmConfig::agent_guest(Arch::X86_64);
    boot_agent(&config, READY_TIMEOUT, Duration::from_secs(120))
}

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

#[test]
fn container_over_vsock_exec_overlay_and_power_off() {
    let rootfs = asset("rootfs/test-rootfs-x86_64.squashfs");
    let rootfs_before = sha256(&fs::read(&rootfs).unwrap());
    let (mut vm, client) = boot();
    let console = vm.console();
    assert!(
        console.contains("supermachine-init: rootfs /dev/vda, upper tmpfs; starting the agent"),
        "{console}"
    );

    // The agent is PID 1 of the container, and the guest is what we built.
    let info = client.guest_info().expect("guest info");
    assert_eq!(info.arch, "x86_64");
    assert!(info.kernel_release.starts_with("6.12."), "{info:?}");
    assert_eq!(info.cpus, 1);
    assert!(info.mem_total > 128 << 20 && info.mem_free > 0, "{info:?}");
    assert!(info.uptime_ns > 0);
    assert!(client.ready_boottime_ns() > 0 && client.ready_boottime_ns() <= info.uptime_ns);
    assert_eq!(stdout(&client, "cat /proc/1/comm"), "supermachine-ag\n");
    assert!(client.ping().is_ok());

    // A file only the container rootfs has.
    assert_eq!(
        stdout(&client, "cat /etc/supermachine-test-rootfs"),
        "supermachine test rootfs (x86_64)\n"
    );
    // The root is an overlay; writes land in the tmpfs upper, also over rootfs files.
    let mounts = stdout(&client, "cat /proc/mounts");
    assert!(
        mounts.lines().any(|l| l.starts_with("overlay / overlay ")),
        "{mounts}"
    );
    assert_eq!(
        stdout(
            &client,
            "echo written > /root/new && cat /root/new && echo changed > /etc/supermachine-test-rootfs && cat /etc/supermachine-test-rootfs"
        ),
        "written\nchanged\n"
    );

    // Exit codes and signals.
    assert_eq!(sh(&client, "exit 42").status, ExitStatus::Code(42));
    assert!(matches!(
        sh(&client, "kill -9 $$").status,
        ExitStatus::Signal { signal: 9, .. }
    ));
    let missing = client.exec(&Command::new("/no/such/program"));
    assert!(
        missing.is_err(),
        "spawning a missing program must fail: {missing:?}"
    );

    // 10 MiB of stdout, intact.
    let ten_mib = 10 << 20;
    let out = sh(&client, "yes 0123456789abcde | head -c 10485760");
    assert_eq!(out.status, ExitStatus::Code(0));
    assert_eq!(out.stdout.len(), ten_mib);
    let expected: Vec<u8> = b"0123456789abcde\n"
        .iter()
        .copied()
        .cycle()
        .take(ten_mib)
        .collect();
    assert_eq!(sha256(&out.stdout), sha256(&expected));

    // stdin round trip: 1 MiB through cat, and its hash computed in the guest.
    let input: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let echoed = client
        .exec_with_stdin(Command::new("/bin/cat").stdin(true), &input)
        .expect("cat with stdin");
    assert_eq!(echoed.status, ExitStatus::Code(0));
    assert!(echoed.stdout == input, "stdin came back altered");
    let hashed = client
        .exec_with_stdin(Command::new("/bin/sha256sum").stdin(true), &input)
        .expect("sha256sum with stdin");
    assert_eq!(
        String::from_utf8_lossy(&hashed.stdout)
            .split_whitespace()
            .next(),
        Some(sha256(&input).as_str())
    );

    // env and cwd.
    let out = client
        .exec(
            Command::new("/bin/sh")
                .args(["-c", "echo \"$GREETING\"; pwd"])
                .env("GREETING", "hello from the host")
                .current_dir("/etc"),
        )
        .expect("exec with env and cwd");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from the host\n/etc\n"
    );

    // uid/gid.
    let out = client
        .exec(Command::new("/bin/id").uid(65534).gid(65534))
        .expect("exec as nobody");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("uid=65534(nobody) gid=65534(nogroup)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A directory of the rootfs removed and made again is empty: the overlay marks it
    // opaque, which needs extended attributes on the tmpfs upper layer. (Last, since
    // /etc goes away.)
    assert_eq!(
        stdout(
            &client,
            "rm -rf /etc && mkdir /etc && ls -A /etc && echo empty"
        ),
        "empty\n"
    );
    let console = vm.console();
    assert!(
        !console.contains("overlayfs: failed to set xattr"),
        "{console}"
    );

    // A clean power off ends the VM; the rootfs image is untouched.
    client.power_off().expect("power off");
    assert!(
        vm.wait_exit(Duration::from_secs(60)).is_some(),
        "the VM did not end after power off\n{}",
        vm.console()
    );
    assert_eq!(sha256(&fs::read(&rootfs).unwrap()), rootfs_before);
}

#[test]
fn without_a_rootfs_disk_init_says_why_and_the_vm_ends() {
    let mut config = VmConfig::agent_guest(Arch::X86_64);
    config.disks.clear();
    let mut vm = Vm::start(&config);
    let console = vm.wait_console("supermachine-init: error:", READY_TIMEOUT);
    assert!(
        console.contains(
            "supermachine-init: error: no disk /dev/vda: the device does not exist (attach a virtio-blk disk, or fix supermachine.rootfs= on the kernel command line)"
        ),
        "{console}"
    );
    assert!(
        vm.wait_exit(Duration::from_secs(60)).is_some(),
        "the VM should end after the error\n{}",
        vm.console()
    );
    assert!(!vm.console().contains("Kernel panic"), "{}", vm.console());
}

#[test]
fn without_the_rootfs_parameter_init_names_it() {
    let mut config = VmConfig::agent_guest(Arch::X86_64);
    config.cmdline.clear();
    let mut vm = Vm::start(&config);
    let console = vm.wait_console("supermachine-init: error:", READY_TIMEOUT);
    assert!(
        console.contains(
            "no rootfs disk named: put supermachine.rootfs=/dev/vdX on the kernel command line"
        ),
        "{console}"
    );
    assert!(vm.wait_exit(Duration::from_secs(60)).is_some());
}
