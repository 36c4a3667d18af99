//! The x86_64 guest end to end, booted the way supermachine's KVM backend boots it: the
//! host build's kernel and initramfs (busybox /init, the agent), the KVM backend's
//! command line, every squashfs disk stacked under a tmpfs overlay, and the agent as
//! PID 1 on vsock port 1028. The host drives it over real virtio-vsock
//! (vhost-device-vsock), through the bridge supermachine's VMM would offer and through
//! the hybrid socket directly.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command as HostCommand;
use std::time::Duration;

use sha2::{Digest, Sha256};
use supermachine_client::{Command, Error, Output, FILE_CHUNK};
use supermachine_e2e::qemu::Disk;
use supermachine_e2e::{
    asset, boot_agent, client, power_off, sh, sh_stdout as stdout, Arch, Via, Vm, VmConfig,
};

/// Boot plus agent start under TCG takes a few seconds; leave room for a loaded host.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// A squashfs image layer made from `files` (path, contents, mode), as the VMM adds one
/// disk per image layer.
fn layer(dir: &Path, name: &str, files: &[(&str, &str, u32)]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let stage = dir.join(format!("{name}.d"));
    for (path, text, mode) in files {
        let p = stage.join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).unwrap();
    }
    // The top layer's root directory is the container's /: keep it 0755.
    fs::set_permissions(&stage, fs::Permissions::from_mode(0o755)).unwrap();
    let image = dir.join(format!("{name}.squashfs"));
    let status = HostCommand::new("mksquashfs")
        .arg(&stage)
        .arg(&image)
        .args([
            "-noappend",
            "-quiet",
            "-no-progress",
            "-all-root",
            "-comp",
            "zstd",
        ])
        .status()
        .expect("mksquashfs (squashfs-tools) is needed");
    assert!(status.success(), "mksquashfs failed");
    image
}

/// The kernel's config has `symbol=y`.
fn kernel_has(symbol: &str) -> bool {
    fs::read_to_string(asset("x86_64/kernel/config"))
        .unwrap()
        .lines()
        .any(|l| l == format!("{symbol}=y"))
}

#[test]
fn container_boots_as_supermachine_boots_it_and_serves_exec_and_control() {
    let rootfs = asset("rootfs/test-rootfs-x86_64.squashfs");
    let rootfs_before = sha256(&fs::read(&rootfs).unwrap());
    let work = tempfile::tempdir().unwrap();
    // A second image layer: it overrides a rootfs file and brings the workload the
    // launch script starts (export lines first, as the VMM bakes them).
    let top = layer(
        work.path(),
        "top",
        &[
            ("/etc/layer-marker", "from the top layer\n", 0o644),
            (
                "/.supermachine/run-workload",
                "#!/.supermachine/busybox sh\nexport WORKLOAD_GREETING=hello-from-image\n\
                 echo \"$WORKLOAD_GREETING\" > /run/workload-ran\nexec /bin/sleep 100000\n",
                0o755,
            ),
        ],
    );
    let mut config = VmConfig::agent_guest(Arch::X86_64);
    let booted_at: u64 = config
        .cmdline
        .split_once("supermachine.host_time=")
        .and_then(|(_, t)| t.split(' ').next()?.parse().ok())
        .expect("the x86_64 command line carries supermachine.host_time=");
    config.disks.push(Disk {
        path: top,
        read_only: true,
    });
    let (vm, c) = boot_agent(&config, READY_TIMEOUT, REQUEST_TIMEOUT);
    let console = vm.console();
    assert!(
        console.contains(
            "supermachine-init: 2 squashfs layer(s) under a tmpfs overlay; starting the agent"
        ),
        "{console}"
    );
    let cmdline = stdout(&c, "cat /proc/cmdline");
    assert!(
        cmdline.starts_with(&format!(
            "console=ttyS0 panic=-1 reboot=t tsi_hijack supermachine.host_time={booted_at}"
        )),
        "{cmdline}"
    );

    // Both ways in reach the same agent, which speaks protocol 5 or newer.
    let hybrid = client(&vm, Via::Hybrid, REQUEST_TIMEOUT);
    assert!(c.probe().unwrap() >= 5);
    assert!(hybrid.probe().unwrap() >= 5);

    // The agent is PID 1, started with no arguments, from the stage directory; the
    // workload runs beside it with its pid recorded.
    assert_eq!(stdout(&c, "cat /proc/1/comm"), "agent\n");
    assert_eq!(
        stdout(&c, "tr '\\0' '\\n' < /proc/1/cmdline"),
        "/.supermachine/agent\n"
    );
    assert_eq!(
        stdout(
            &c,
            "for i in $(seq 100); do [ -s /run/workload-ran ] && break; sleep 0.1; done; cat /run/workload-ran"
        ),
        "hello-from-image\n"
    );
    let pid: u32 = stdout(&c, "cat /run/supermachine-workload.pid")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        stdout(&c, &format!("cat /proc/{pid}/comm")),
        "sleep\n",
        "the pid file names the workload"
    );
    // The launch script's export lines reach the agent's environment.
    assert!(stdout(&c, "tr '\\0' '\\n' < /proc/1/environ")
        .contains("WORKLOAD_GREETING=hello-from-image\n"));

    // The clock came from the command line (the guest has no usable RTC).
    let guest_now: u64 = stdout(&c, "date +%s").trim().parse().unwrap();
    assert!(
        guest_now >= booted_at && guest_now < booted_at + 600,
        "guest {guest_now}, host {booted_at}"
    );

    // Root: the top layer wins over the rootfs, writes go to the tmpfs upper.
    let mounts = stdout(&c, "cat /proc/mounts");
    assert!(
        mounts.lines().any(
            |l| l.starts_with("overlay / overlay ") && l.contains("lowerdir=/lower/1:/lower/0")
        ),
        "{mounts}"
    );
    assert!(
        mounts
            .lines()
            .any(|l| l.starts_with("tmpfs /dev/shm tmpfs ")),
        "{mounts}"
    );
    assert_eq!(stdout(&c, "cat /etc/layer-marker"), "from the top layer\n");
    assert_eq!(
        stdout(&c, "cat /etc/supermachine-test-rootfs"),
        "supermachine test rootfs (x86_64)\n"
    );
    assert_eq!(
        stdout(
            &c,
            "echo changed > /etc/supermachine-test-rootfs && cat /etc/supermachine-test-rootfs"
        ),
        "changed\n"
    );
    assert_eq!(
        stdout(&c, "cat /etc/resolv.conf"),
        "nameserver 1.1.1.1\noptions timeout:2 attempts:2 no-aaaa single-request\n"
    );
    assert!(stdout(&c, "cat /etc/hosts").contains("localhost"));
    assert_eq!(
        stdout(&c, "readlink /dev/fd; readlink /dev/stdin"),
        "/proc/self/fd\n/proc/self/fd/0\n"
    );
    // The loopback address and low ports need IPv4 in the kernel; without it the
    // steps are skipped quietly, as the VMM's init skips them.
    let lo = sh(
        &c,
        "ip addr show lo 2>&1; cat /proc/sys/net/ipv4/ip_unprivileged_port_start 2>&1",
    );
    let lo = String::from_utf8_lossy(&lo.stdout);
    assert_eq!(
        lo.contains("198.18.0.1/30"),
        kernel_has("CONFIG_INET"),
        "{lo}"
    );

    // Exec: exit codes, signals folded into 128+N, a missing program, output size.
    assert_eq!(sh(&c, "exit 42").status.code, 42);
    assert_eq!(sh(&c, "kill -9 $$").status.code, 137);
    match c.exec(&Command::new("/no/such/program")) {
        Ok(out) => assert_eq!(out.status.code, 127, "{out:?}"),
        Err(e) => assert!(matches!(e, Error::Agent(_)), "{e:?}"),
    }
    let ten_mib = 10 << 20;
    let out = sh(&c, "yes 0123456789abcde | head -c 10485760");
    assert_eq!(out.status.code, 0);
    let expected: Vec<u8> = b"0123456789abcde\n"
        .iter()
        .copied()
        .cycle()
        .take(ten_mib)
        .collect();
    assert_eq!(sha256(&out.stdout), sha256(&expected));
    assert!(
        out.status.peak_rss_kib.is_some_and(|k| k > 0),
        "{:?}",
        out.status
    );

    // stdin through the hybrid path: 1 MiB through cat and sha256sum.
    let input: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let echoed = hybrid
        .exec_with_stdin(&Command::new("cat"), &input)
        .unwrap();
    assert_eq!(echoed.status.code, 0);
    assert!(echoed.stdout == input, "stdin came back altered");
    let hashed = c
        .exec_with_stdin(&Command::new("sha256sum"), &input)
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&hashed.stdout)
            .split_whitespace()
            .next(),
        Some(sha256(&input).as_str())
    );

    // env, cwd, staged files and a chain.
    let out = c
        .exec(
            Command::from_argv(["/tmp/staged.sh"])
                .env("GREETING", "hello from the host")
                .current_dir("/etc")
                .stage_file(
                    "/tmp/staged.sh",
                    b"#!/bin/sh\necho \"$GREETING\"; pwd\n",
                    Some(0o755),
                )
                .chain(["sh", "-c", "exit 5"])
                .chain(["sh", "-c", "echo never"]),
        )
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from the host\n/etc\n"
    );
    assert_eq!(out.status.code, 5);

    // A signal to a running process group, through the bridge.
    let mut p = c
        .spawn(&Command::from_argv(["sh", "-c", "sleep 1000 & wait"]))
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    p.signal(15).unwrap();
    let code = loop {
        match p.next_output().unwrap() {
            Some(Output::Exit(s)) => break s.code,
            Some(_) => {}
            None => panic!("no exit"),
        }
    };
    assert_eq!(code, 143);

    // A terminal: size, then a resize.
    let mut p = c
        .spawn(Command::from_argv(["sh", "-c", "stty size; read x; stty size"]).tty(100, 30))
        .unwrap();
    p.resize(132, 50).unwrap();
    p.write_stdin(b"go\n").unwrap();
    let mut text = Vec::new();
    while let Some(ev) = p.next_output().unwrap() {
        match ev {
            Output::Stdout(d) => text.extend(d),
            Output::Stderr(_) => {}
            Output::Exit(s) => assert_eq!(s.code, 0),
        }
    }
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.starts_with("30 100\r\n") && text.contains("50 132"),
        "{text:?}"
    );

    // Files in and out in 8 MiB chunks, over the hybrid path and back over the bridge.
    let big: Vec<u8> = (0..FILE_CHUNK + 4321)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    hybrid
        .upload("/root/big", &mut big.as_slice(), Some(0o600))
        .unwrap();
    assert_eq!(stdout(&c, "stat -c %a /root/big"), "600\n");
    let mut back = Vec::new();
    c.download("/root/big", &mut back).unwrap();
    assert!(back == big, "file came back altered");
    assert!(matches!(
        c.download("/no/such/file", &mut Vec::new()),
        Err(Error::Agent(_))
    ));

    // Lifecycle controls.
    c.sync_time().unwrap();
    c.drop_vfs_caches().unwrap();
    let err = c.smpark_park().unwrap_err();
    assert!(err.to_string().contains("/dev/smpark"), "{err}");
    // CONTROL signal reaches the recorded workload.
    assert_eq!(c.signal_workload(15).unwrap(), Some(pid));
    let gone = stdout(&c, &format!("for i in $(seq 50); do [ -e /proc/{pid}/comm ] && grep -qv Z /proc/{pid}/stat || {{ echo gone; exit; }}; sleep 0.1; done"));
    assert_eq!(gone, "gone\n");

    // A clean end; the rootfs image is untouched.
    power_off(vm, &c);
    assert_eq!(sha256(&fs::read(&rootfs).unwrap()), rootfs_before);
}

#[test]
fn without_a_squashfs_disk_init_says_why_and_the_vm_ends() {
    let mut config = VmConfig::agent_guest(Arch::X86_64);
    config.disks.clear();
    let mut vm = Vm::start(&config);
    let console = vm.wait_console("supermachine-init: error:", READY_TIMEOUT);
    assert!(
        console.contains(
            "supermachine-init: error: no squashfs root file system: attach the image as a virtio-blk disk (/dev/vda)"
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

/// `sm.volume=DEV:MOUNT`: an ext4 disk mounted in the container keeps its files across
/// a reboot; an unformatted one is reported on the console and the guest still serves.
#[test]
fn a_volume_keeps_its_files_across_a_reboot() {
    let work = tempfile::tempdir().unwrap();
    let volume = work.path().join("volume.ext4");
    fs::write(&volume, vec![0u8; 32 << 20]).unwrap();
    let mut config = VmConfig::agent_guest(Arch::X86_64);
    config.cmdline.push_str(" sm.volume=/dev/vdb:/data");
    config.disks.push(Disk {
        path: volume.clone(),
        read_only: false,
    });

    // Unformatted first.
    let (vm, c) = boot_agent(&config, READY_TIMEOUT, REQUEST_TIMEOUT);
    assert!(
        vm.console()
            .contains("supermachine-init: cannot mount volume /dev/vdb at /data"),
        "{}",
        vm.console()
    );
    assert_eq!(stdout(&c, "echo still serving"), "still serving\n");
    power_off(vm, &c);

    let status = HostCommand::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&volume)
        .status()
        .expect("mkfs.ext4 (e2fsprogs) is needed");
    assert!(status.success());
    let (vm, c) = boot_agent(&config, READY_TIMEOUT, REQUEST_TIMEOUT);
    let mounts = stdout(&c, "cat /proc/mounts");
    assert!(
        mounts
            .lines()
            .any(|l| l.starts_with("/dev/vdb /data ext4 ")),
        "{mounts}"
    );
    stdout(&c, "echo kept > /data/note && echo gone > /root/new");
    power_off(vm, &c);
    let (vm, c) = boot_agent(&config, READY_TIMEOUT, REQUEST_TIMEOUT);
    assert_eq!(stdout(&c, "cat /data/note"), "kept\n");
    // The container's own root is a tmpfs overlay: its writes are gone.
    assert_eq!(
        stdout(&c, "cat /root/new 2>/dev/null || echo absent"),
        "absent\n"
    );
    power_off(vm, &c);
}
