//! The aarch64 guest as supermachine's HVF backend runs it, played in
//! `qemu-system-aarch64 -M virt` (TCG) with 4 vCPUs: the host build's `Image`, the VMM's
//! initramfs (`init-oci` as `/init`, `/supermachine-smpark.ko`), one read-only disk per
//! layer of the two-layer test image then the delta disk (agent and delta files), the
//! env service on vsock port 1026, the console scanned for the markers and answered with
//! `R` and `P`, and guest RAM in a shared file so the host can release smpark directly.
//! The host drives the agent with `supermachine-client`, as the x86_64 tests do.
//!
//! The assets come from `scripts/build`; without them these tests fail and say so.

use std::fmt::Debug;
use std::fs;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use supermachine_client::{Client, Command, Error, ExecOutput, AGENT_VSOCK_PORT};
use supermachine_e2e::hvf::{self, Delta};
use supermachine_e2e::{asset, client, Arch, Via, Vm, VmConfig};
use supermachine_packer::sha256_hex;

/// Boot to a ready agent: TCG emulating 4 vCPUs on a shared host is slow.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
/// One exec, including a few MiB of output through vsock under TCG.
const EXEC_TIMEOUT: Duration = Duration::from_secs(180);
const CPUS: u32 = 4;

/// A booted guest and clients of its agent: through the bridge (port 1028 as the VMM
/// offers it) and straight through vhost-device-vsock's hybrid socket.
struct Guest {
    vm: Vm,
    client: Client,
    hybrid: Client,
}

impl Guest {
    fn boot() -> Guest {
        let config = VmConfig::agent_guest(Arch::Aarch64);
        assert_eq!(config.cpus, CPUS, "the aarch64 agent guest has 4 vCPUs");
        let start = Instant::now();
        let vm = Vm::start(&config);
        // Control requests must not hang the test either.
        let hybrid = client(&vm, Via::Hybrid, EXEC_TIMEOUT);
        let client = client(&vm, Via::Bridge, EXEC_TIMEOUT);
        match client.wait_ready(BOOT_TIMEOUT) {
            Ok(_) => {
                eprintln!("e2e: aarch64 agent ready after {:.1?}", start.elapsed());
                Guest { vm, client, hybrid }
            }
            Err(e) => panic!(
                "the agent did not answer on vsock port {AGENT_VSOCK_PORT} within \
                 {BOOT_TIMEOUT:?}: {e}\n--- console ---\n{}\n--- qemu ---\n{}",
                vm.console(),
                vm.qemu_log()
            ),
        }
    }

    /// Fails the test with `what` and the guest's console.
    fn fail(&self, what: impl std::fmt::Display) -> ! {
        panic!(
            "{what}\n--- console ---\n{}\n--- qemu ---\n{}",
            self.vm.console(),
            self.vm.qemu_log()
        )
    }

    fn check<T: Debug>(&self, result: supermachine_client::Result<T>, what: &str) -> T {
        result.unwrap_or_else(|e| self.fail(format!("{what}: {e}")))
    }

    /// Runs `command` to completion (stdin from `input`, if any) within `EXEC_TIMEOUT`;
    /// a guest that stops answering fails the test with the console instead of hanging it.
    fn try_exec(
        &self,
        command: &Command,
        input: Option<&[u8]>,
    ) -> supermachine_client::Result<ExecOutput> {
        self.try_exec_via(&self.client, command, input)
    }

    fn try_exec_via(
        &self,
        client: &Client,
        command: &Command,
        input: Option<&[u8]>,
    ) -> supermachine_client::Result<ExecOutput> {
        let (tx, rx) = mpsc::channel();
        let client = client.clone();
        let owned = command.clone();
        let input = input.map(<[u8]>::to_vec);
        std::thread::spawn(move || {
            let result = match input {
                Some(data) => client.exec_with_stdin(&owned, &data),
                None => client.exec(&owned),
            };
            let _ = tx.send(result);
        });
        match rx.recv_timeout(EXEC_TIMEOUT) {
            Ok(result) => result,
            Err(_) => self.fail(format!(
                "exec {} did not finish within {EXEC_TIMEOUT:?}",
                describe(command)
            )),
        }
    }

    /// Runs `command`, which must exit 0; returns its output.
    fn exec_ok(&self, command: &Command, input: Option<&[u8]>) -> ExecOutput {
        self.exec_ok_via(&self.client, command, input)
    }

    fn exec_ok_via(&self, client: &Client, command: &Command, input: Option<&[u8]>) -> ExecOutput {
        let what = format!("exec {}", describe(command));
        let out = self.check(self.try_exec_via(client, command, input), &what);
        if out.status.code != 0 {
            self.fail(format!(
                "{what} ended with {:?}\nstdout: {}\nstderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        out
    }

    /// `sh -c script`, which must exit 0; returns its stdout.
    fn sh(&self, script: &str) -> String {
        let out = self.exec_ok(&sh(script), None);
        String::from_utf8(out.stdout).unwrap_or_else(|e| self.fail(e))
    }

    fn assert_eq<T: PartialEq + Debug>(&self, got: T, want: T, what: &str) {
        if got != want {
            self.fail(format!("{what}: got {got:?}, want {want:?}"));
        }
    }

    /// The kernel said nothing alarming on the console.
    fn assert_console_clean(&self) {
        let console = self.vm.console();
        for bad in [
            "Kernel panic",
            "Oops",
            "BUG:",
            "Internal error",
            "Call trace:",
            "overlayfs: failed to set xattr",
        ] {
            if console.contains(bad) {
                self.fail(format!("the console shows {bad:?}"));
            }
        }
    }

    /// CPU count the guest sees.
    fn cpus(&self) -> u32 {
        self.sh("grep -c ^processor /proc/cpuinfo")
            .trim()
            .parse()
            .unwrap_or_else(|e| self.fail(e))
    }

    /// Syncs and reboots the guest through the agent (-no-reboot: QEMU ends by itself).
    fn power_off(mut self) {
        let result = self.client.sync();
        self.check(result, "CONTROL sync");
        let result = self.client.spawn(&sh("reboot -f"));
        let process = self.check(result, "reboot -f");
        let _ = process.close_stdin();
        match self.vm.wait_exit(Duration::from_secs(120)) {
            Some(status) if status.success() => {}
            Some(status) => self.fail(format!("QEMU ended with {status} after power off")),
            None => self.fail("QEMU still runs 120 s after reboot -f"),
        }
    }
}

/// The argv of `command`, for messages.
fn describe(command: &Command) -> String {
    let argv: Vec<String> = command.request().argv.to_vec();
    format!("{argv:?}")
}

fn sh(script: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(script);
    c
}

/// Deterministic pseudo-random bytes (xorshift64*), so the data is not compressible and
/// a failure is reproducible.
fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out.extend_from_slice(&seed.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The CPU a process ran on, from the `processor` field (39) of its `/proc/PID/stat`.
fn stat_processor(stat: &str) -> Option<u32> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Fields from 3 (state) on follow the command name.
    after_comm.split_whitespace().nth(39 - 3)?.parse().ok()
}

#[test]
fn agent_answers_and_exec_works_on_aarch64() {
    let guest = Guest::boot();

    // What the guest is.
    guest.assert_eq(guest.sh("uname -m"), "aarch64\n".to_owned(), "uname -m");
    guest.assert_eq(guest.cpus(), CPUS, "online CPUs");
    let release = guest.sh("uname -r");
    if !release.starts_with("6.12.") {
        guest.fail(format!("kernel release {release:?} is not 6.12.x"));
    }
    let protocol = guest.check(guest.client.probe(), "probe");
    guest.assert_eq(protocol >= 5, true, "protocol 5 or newer");

    // A file only the container rootfs has: the agent runs in the switched root.
    let out = guest.exec_ok(
        &Command::new("cat")
            .arg("/etc/supermachine-test-rootfs")
            .clone(),
        None,
    );
    guest.assert_eq(
        String::from_utf8_lossy(&out.stdout).as_ref(),
        "supermachine test rootfs (aarch64)\n",
        "/etc/supermachine-test-rootfs",
    );
    // The agent is PID 1 and the initramfs is gone.
    guest.assert_eq(
        guest.sh("cat /proc/1/comm; test -e /lower-0 && echo initramfs-left || echo switched"),
        "init\nswitched\n".to_owned(),
        "PID 1 (init-oci) and root",
    );

    // Exit codes, signals, stderr, spawn errors.
    let out = guest.check(
        guest.try_exec(&sh("echo to-stderr >&2; exit 42"), None),
        "exit 42",
    );
    guest.assert_eq(out.status.code, 42, "exit status");
    guest.assert_eq(out.stderr.as_slice(), b"to-stderr\n", "stderr");
    guest.assert_eq(out.stdout.as_slice(), b"", "stdout");
    let out = guest.check(guest.try_exec(&sh("kill -9 $$"), None), "kill -9 $$");
    guest.assert_eq(out.status.code, 128 + 9, "status of a killed shell");
    match guest.try_exec(&Command::new("no-such-program"), None) {
        Err(Error::Agent(_)) => {}
        Ok(out) if out.status.code == 127 => {}
        other => guest.fail(format!("spawning a missing program: {other:?}")),
    }

    // A few MiB of stdout, generated in the guest, compared by hash.
    let size = 4 << 20;
    let guest_sum = guest.sh(&format!(
        "head -c {size} /dev/urandom > /tmp/blob && sha256sum /tmp/blob"
    ));
    let start = Instant::now();
    let out = guest.exec_ok(&Command::new("cat").arg("/tmp/blob").clone(), None);
    let elapsed = start.elapsed();
    guest.assert_eq(out.stdout.len(), size, "bytes of stdout");
    guest.assert_eq(
        guest_sum.split_whitespace().next().unwrap_or_default(),
        sha256_hex(&out.stdout).as_str(),
        "sha256 of 4 MiB of stdout",
    );
    eprintln!(
        "e2e: 4 MiB of stdout in {elapsed:.2?} ({:.1} MiB/s)",
        4.0 / elapsed.as_secs_f64()
    );

    // Stdin round trip, larger than the stdin window, straight through the hybrid
    // socket: echoed back and hashed in the guest.
    let data = pseudo_random(1 << 20, 0x5eed_aa64);
    let out = guest.exec_ok_via(&guest.hybrid, &Command::new("cat"), Some(&data));
    if out.stdout != data {
        guest.fail(format!(
            "cat returned {} bytes that differ from the {} sent",
            out.stdout.len(),
            data.len()
        ));
    }
    let out = guest.exec_ok(&Command::new("sha256sum"), Some(&data));
    guest.assert_eq(
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned(),
        sha256_hex(&data),
        "sha256 of stdin in the guest",
    );

    // Environment (the request's names on top of the agent's) and working directory.
    let out = guest.exec_ok(
        sh("pwd; echo \"$GREETING\"")
            .env("GREETING", "hi")
            .current_dir("/etc"),
        None,
    );
    guest.assert_eq(
        String::from_utf8_lossy(&out.stdout).as_ref(),
        "/etc\nhi\n",
        "cwd and env",
    );

    // A rootfs directory removed and made again is empty: overlayfs marks it opaque with
    // an xattr on the tmpfs upper layer. (Last, since /etc goes away.)
    guest.assert_eq(
        guest.sh("rm -rf /etc && mkdir /etc && ls -A /etc && echo empty"),
        "empty\n".to_owned(),
        "a re-created rootfs directory",
    );

    guest.assert_console_clean();
    guest.power_off();
}

/// The console lines of the boot, in the order init-oci prints them.
const MARKERS_IN_ORDER: &[&str] = &[
    "[SUPERMACHINE-SMPARK] state_gpa=0x",
    "[SUPERMACHINE-KCACHE] ready",
    "[SUPERMACHINE-KCACHE] resumed token=R",
    "[SUPERMACHINE-INIT] heartbeat counter=1",
    "init-oci: workload-pre-exec",
    "[SUPERMACHINE-PRE-EXEC] ready",
    "[SUPERMACHINE-PRE-EXEC] resumed token=P",
    "workload: uid=1000 cwd=/srv/app host=smtest GREETING=hello from port 1026 TOKEN=s3cr3t",
    "init-oci: parking PID 1 (exit=3)",
];

/// Waits `wait` and asserts the console did not move past `stop` (a pause holds).
fn assert_holds(vm: &mut Vm, paused_at: &str, not_yet: &str, wait: Duration) {
    std::thread::sleep(wait);
    let console = vm.console();
    assert!(
        console.contains(paused_at) && !console.contains(not_yet),
        "init-oci did not hold at {paused_at:?} (console shows {not_yet:?} already)\n--- console ---\n{console}"
    );
}

#[test]
fn the_vmm_contract_markers_pauses_env_and_workload_on_aarch64() {
    let mut config = VmConfig::agent_guest(Arch::Aarch64);
    config
        .cmdline
        .push_str(" supermachine.kcache=1 supermachine.pre_exec_sync=1");
    let start = Instant::now();
    let mut vm = Vm::start(&config);

    // The kcache pause holds until the VMM pushes R.
    vm.wait_console("[SUPERMACHINE-KCACHE] ready", BOOT_TIMEOUT);
    eprintln!("e2e: KCACHE ready after {:.1?}", start.elapsed());
    assert_holds(
        &mut vm,
        "[SUPERMACHINE-KCACHE] ready",
        "layer disk(s)",
        Duration::from_secs(3),
    );
    vm.push_console(b"R\n");
    vm.wait_console("[SUPERMACHINE-KCACHE] resumed token=R", BOOT_TIMEOUT);

    // The pre-exec pause holds the workload until P.
    vm.wait_console("[SUPERMACHINE-PRE-EXEC] ready", BOOT_TIMEOUT);
    eprintln!("e2e: PRE-EXEC ready after {:.1?}", start.elapsed());
    assert_holds(
        &mut vm,
        "[SUPERMACHINE-PRE-EXEC] ready",
        "workload:",
        Duration::from_secs(3),
    );
    vm.push_console(b"P\n");
    let console = vm.wait_console("init-oci: parking PID 1 (exit=", BOOT_TIMEOUT);
    eprintln!("e2e: workload parked after {:.1?}", start.elapsed());

    // Every marker, byte for byte and in order; the workload ran from the delta files
    // (cmd, workdir, user, hostname) with the env and secrets from port 1026.
    let mut from = 0;
    for marker in MARKERS_IN_ORDER {
        match console[from..].find(marker) {
            Some(at) => from += at + marker.len(),
            None => {
                panic!("console lacks {marker:?} after byte {from}\n--- console ---\n{console}")
            }
        }
    }
    let gpa = hvf::smpark_gpa(&console).expect("state_gpa parses");
    assert!(
        gpa >= hvf::VIRT_RAM_BASE && gpa % 4096 == 0,
        "state_gpa 0x{gpa:x} is not a page in guest RAM"
    );
    assert_eq!(vm.env_requests(), 1, "env fetches from port 1026");
    assert!(
        console.contains("init-oci: 2 layer disk(s) and the delta /dev/vdc, 0 volume disk(s)"),
        "disk roles\n{console}"
    );
    assert!(!console.contains("init-oci: error"), "{console}");

    // The agent from the delta answers afterwards, in the assembled root.
    let client = client(&vm, Via::Bridge, EXEC_TIMEOUT);
    if let Err(e) = client.wait_ready(BOOT_TIMEOUT) {
        panic!("agent silent: {e}\n--- console ---\n{}", vm.console());
    }
    let kernel_config = fs::read_to_string(asset("aarch64/kernel/config")).unwrap();
    let has = |option: &str| kernel_config.lines().any(|l| l == format!("{option}=y"));
    let run = |script: &str| {
        let out = client
            .exec(&sh(script))
            .unwrap_or_else(|e| panic!("{script}: {e}\n--- console ---\n{}", vm.console()));
        assert_eq!(
            out.status.code,
            0,
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(
        run("cat /etc/test-layer /etc/layer-0-only /srv/app/layer-1-only; test -e /etc/deleted-by-layer-1 || echo whiteout-honoured"),
        "layer 1\nfrom layer 0\nfrom layer 1\nwhiteout-honoured\n",
        "the layers stack bottom first, the upper one winning"
    );
    assert_eq!(
        run("cat /proc/1/comm; hostname; test -e /lower-0 || echo switched"),
        "init\nsmtest\nswitched\n"
    );
    let pid = run("cat /run/supermachine-workload.pid");
    assert!(
        pid.trim().parse::<u32>().is_ok_and(|p| p > 1),
        "workload pid file: {pid:?}"
    );
    assert_eq!(
        run(&format!(
            "test -e /proc/{} && echo alive || echo reaped",
            pid.trim()
        )),
        "reaped\n"
    );
    let mounts = run("cat /proc/mounts");
    for (fstype, target, option) in [
        ("devpts", "/dev/pts", "CONFIG_UNIX98_PTYS"),
        ("tmpfs", "/dev/shm", "CONFIG_TMPFS"),
        ("cgroup2", "/sys/fs/cgroup", "CONFIG_CGROUPS"),
        (
            "binfmt_misc",
            "/proc/sys/fs/binfmt_misc",
            "CONFIG_BINFMT_MISC",
        ),
    ] {
        let mounted = mounts.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 2 && f[1] == target && f[2] == fstype
        });
        let said = console.contains(&format!("init-oci: no {fstype} on {target}"));
        // What the kernel offers decides which of the two must hold.
        assert_eq!(
            (mounted, said),
            (has(option), !has(option)),
            "{fstype} on {target} ({option})\n{mounts}"
        );
    }
    assert!(
        mounts.lines().any(|l| l.starts_with("overlay / overlay ")),
        "{mounts}"
    );
    assert_eq!(
        run("cat /etc/resolv.conf"),
        "nameserver 1.1.1.1\noptions timeout:2 attempts:2\n"
    );
    assert!(run("cat /etc/hosts").contains("127.0.0.1\tlocalhost\n"));
    assert!(run("cat /etc/gai.conf").contains("precedence ::ffff:0:0/96"));
    assert_eq!(
        run("cat /sys/class/net/lo/operstate /sys/class/net/lo/flags"),
        "unknown\n0x9\n",
        "lo is up"
    );
    assert_eq!(
        run("ls /dev/smpark && cat /sys/kernel/smpark/state_gpa"),
        format!("/dev/smpark\n0x{gpa:x}\n")
    );
}

/// Reads the smpark page: (release byte, CPUs in the parking loop).
fn smpark_page(vm: &Vm, gpa: u64) -> (u8, u32) {
    let page = vm.read_guest(gpa, 8);
    (
        page[0],
        u32::from_le_bytes([page[4], page[5], page[6], page[7]]),
    )
}

fn wait_page(vm: &Vm, gpa: u64, want: (u8, u32), what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = smpark_page(vm, gpa);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the smpark page shows (release, parked) = {got:?}, want {want:?}\n--- console ---\n{}",
            vm.console()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn smpark_parks_three_vcpus_and_releases_them_through_the_agent_and_the_page_on_aarch64() {
    let guest = Guest::boot();
    let console = guest.vm.console();
    let gpa = hvf::smpark_gpa(&console).expect("state_gpa on the console");
    guest.assert_eq(smpark_page(&guest.vm, gpa), (1, 0), "page before any park");

    // Each round parks through the agent's smpark_park control; the host watches the page
    // (release byte, CPUs in the loop). The reply may only come after the release: the
    // agent's threads can sit on a CPU that is parked.
    let park = |what: &str| {
        let (tx, rx) = mpsc::channel();
        let client = guest.client.clone();
        std::thread::spawn(move || {
            let _ = tx.send(client.smpark_park());
        });
        wait_page(&guest.vm, gpa, (0, 3), what);
        rx
    };
    let acked = |rx: mpsc::Receiver<supermachine_client::Result<()>>, what: &str| {
        let result = rx
            .recv_timeout(EXEC_TIMEOUT)
            .unwrap_or_else(|_| guest.fail(format!("{what}: no reply")));
        guest.check(result, what);
    };

    // Round 1: released by the host storing 1 in guest memory (the VMM's direct unpark),
    // then smpark_unpark reaps the parkers.
    let rx = park("round 1: 3 CPUs parked through the agent");
    guest.vm.write_guest(gpa, &[1]);
    wait_page(
        &guest.vm,
        gpa,
        (1, 0),
        "round 1: released by the host's store",
    );
    acked(rx, "round 1: smpark_park");
    guest.check(guest.client.smpark_unpark(), "round 1: smpark_unpark");

    // Round 2: released by the agent's smpark_unpark.
    let rx = park("round 2: 3 CPUs parked through the agent");
    let unpark = guest.client.smpark_unpark();
    if unpark.is_err() {
        // Do not leave the guest parked for the power-off below.
        guest.vm.write_guest(gpa, &[1]);
    }
    guest.check(unpark, "round 2: smpark_unpark");
    wait_page(&guest.vm, gpa, (1, 0), "round 2: released by smpark_unpark");
    acked(rx, "round 2: smpark_park");

    // Round 3: init-oci's own smpark mode, from one shell pinned to CPU 0.
    let out = guest.sh("taskset 1 sh -c '/init smpark park && /init smpark unpark && echo cycled'");
    guest.assert_eq(
        out.as_str(),
        "cycled\n",
        "park/unpark through init-oci smpark",
    );
    guest.assert_eq(smpark_page(&guest.vm, gpa), (1, 0), "page after unpark");
    let console = guest.vm.console();
    guest.assert_eq(
        console.matches("smpark: parked 3 CPUs").count(),
        3,
        "kernel lines for the three parks",
    );

    // All four CPUs run user code again.
    for cpu in 0..CPUS {
        let stat = guest.sh(&format!("taskset {:x} cat /proc/self/stat", 1u32 << cpu));
        guest.assert_eq(
            stat_processor(&stat),
            Some(cpu),
            &format!("CPU of cat ({stat})"),
        );
    }
    guest.assert_console_clean();
    guest.power_off();
}

/// Boots `delta` over the test layers (or `layers`), waits for `line`, returns the VM.
fn boot_for_line(config: &VmConfig, line: &str) -> (Vm, String) {
    let mut vm = Vm::start(config);
    let console = vm.wait_console(line, BOOT_TIMEOUT);
    (vm, console)
}

#[test]
fn a_missing_layer_is_named_and_the_vm_powers_off_on_aarch64() {
    let mut config = VmConfig::hvf_guest(&Delta::reporting_workload());
    let dir = tempfile::tempdir().unwrap();
    let blank = dir.path().join("blank.img");
    fs::write(&blank, vec![0u8; 1 << 20]).unwrap();
    config.disks[1].path = blank;
    let (mut vm, _) = boot_for_line(
        &config,
        "init-oci: error: missing layer: /dev/vdb is not a squashfs image but /dev/vdc after it is",
    );
    match vm.wait_exit(Duration::from_secs(120)) {
        Some(_) => {}
        None => panic!("QEMU still runs after the error\n{}", vm.console()),
    }
    assert!(!vm.console().contains("workload:"));
}

#[test]
fn a_bad_delta_file_is_named_and_pid_1_parks_on_aarch64() {
    let mut delta = Delta::reporting_workload();
    delta.user = Some("ghost\n".into());
    let config = VmConfig::hvf_guest(&delta);
    let (mut vm, console) = boot_for_line(&config, "init-oci: parking PID 1 (exit=127)");
    assert!(
        console.contains("init-oci: error: bad delta file /.supermachine-user: user \"ghost\" is not in the image's /etc/passwd"),
        "{console}"
    );
    assert!(!console.contains("workload:"), "{console}");
    // PID 1 stays up.
    assert!(
        vm.wait_exit(Duration::from_secs(3)).is_none(),
        "QEMU ended\n{console}"
    );
}

#[test]
fn a_workload_that_cannot_start_is_named_and_pid_1_parks_on_aarch64() {
    let mut delta = Delta::reporting_workload();
    delta.cmd = "/no/such/program\n--flag\n".into();
    let config = VmConfig::hvf_guest(&delta);
    let (mut vm, console) = boot_for_line(&config, "init-oci: parking PID 1 (exit=127)");
    assert!(
        console.contains("init-oci: error: cannot start the workload \"/no/such/program\" in /srv/app as uid 1000: No such file or directory"),
        "{console}"
    );
    assert!(
        vm.wait_exit(Duration::from_secs(3)).is_none(),
        "QEMU ended\n{console}"
    );
}
