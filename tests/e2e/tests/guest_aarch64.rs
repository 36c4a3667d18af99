//! The aarch64 guest as the supermachine VMM runs it, under `qemu-system-aarch64 -M virt`
//! (TCG) with 4 vCPUs: the host build's `Image`, the initramfs with `init-oci` as `/init`
//! and the agent inside, the test container rootfs as `/dev/vda`, and vsock through
//! vhost-device-vsock. The host drives the guest with `supermachine-client` over the
//! hybrid-vsock socket, as the x86_64 tests do, then loads `smpark.ko` through the agent,
//! parks and releases the secondary vCPUs and checks the guest keeps working.
//!
//! The assets come from `scripts/build`; without them these tests fail and say so.

use std::fmt::Debug;
use std::fs;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use supermachine_client::{Client, Command, Error, ExecOutput, AGENT_VSOCK_PORT};
use supermachine_e2e::{asset, client, Arch, Via, Vm, VmConfig};
use supermachine_packer::sha256_hex;

/// Boot to a ready agent: TCG emulating 4 vCPUs on a shared host is slow.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
/// One exec, including a few MiB of output through vsock under TCG.
const EXEC_TIMEOUT: Duration = Duration::from_secs(180);
const CPUS: u32 = 4;
const SMPARK: &str = "/sys/kernel/smpark";

/// A booted guest and a client connected to its agent.
struct Guest {
    vm: Vm,
    client: Client,
}

impl Guest {
    fn boot() -> Guest {
        let config = VmConfig::agent_guest(Arch::Aarch64);
        assert_eq!(config.cpus, CPUS, "the aarch64 agent guest has 4 vCPUs");
        let start = Instant::now();
        let vm = Vm::start(&config);
        // Control requests must not hang the test either.
        let client = client(&vm, Via::Hybrid, EXEC_TIMEOUT);
        match client.wait_ready(BOOT_TIMEOUT) {
            Ok(_) => {
                eprintln!("e2e: aarch64 agent ready after {:.1?}", start.elapsed());
                Guest { vm, client }
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
        let (tx, rx) = mpsc::channel();
        let client = self.client.clone();
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
        let what = format!("exec {}", describe(command));
        let out = self.check(self.try_exec(command, input), &what);
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
        guest.sh("cat /proc/1/comm; test -e /init && echo initramfs-left || echo switched"),
        "supermachine-ag\nswitched\n".to_owned(),
        "PID 1 and root",
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

    // Stdin round trip, larger than the stdin window: echoed back and hashed in the guest.
    let data = pseudo_random(1 << 20, 0x5eed_aa64);
    let out = guest.exec_ok(&Command::new("cat"), Some(&data));
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

#[test]
fn smpark_parks_three_vcpus_and_releases_them_on_aarch64() {
    let module = fs::read(asset("aarch64/smpark.ko")).unwrap();
    let guest = Guest::boot();
    guest.assert_eq(guest.cpus(), CPUS, "online CPUs before loading smpark");

    // The module goes in through exec stdin and is loaded through the agent.
    guest.exec_ok(&sh("cat > /tmp/smpark.ko"), Some(&module));
    guest.assert_eq(
        guest
            .sh("sha256sum /tmp/smpark.ko")
            .split_whitespace()
            .next()
            .map(String::from),
        Some(sha256_hex(&module)),
        "sha256 of smpark.ko in the guest",
    );
    guest.exec_ok(&Command::new("insmod").arg("/tmp/smpark.ko").clone(), None);
    guest.assert_eq(
        guest.sh(&format!(
            "grep -c '^smpark ' /proc/modules; cat {SMPARK}/online {SMPARK}/parked {SMPARK}/park"
        )),
        "1\n4\n0\n0\n".to_owned(),
        "after insmod: loaded, online, parked, park",
    );

    // Park and release from one shell pinned to CPU 0, reading the state while parked
    // with shell builtins only (no fork while three CPUs are parked), then report.
    let park_cycle = format!(
        "set -e; cd {SMPARK}; \
         echo 1 > park; \
         read -r state < park; read -r parked < parked; read -r online < online; \
         echo 0 > park; \
         echo \"parked: park=$state parked=$parked online=$online\"; \
         read -r state < park; read -r parked < parked; read -r online < online; \
         echo \"released: park=$state parked=$parked online=$online\""
    );
    for round in 1..=2 {
        let start = Instant::now();
        let report = guest.sh(&format!("taskset 1 sh -c '{park_cycle}'"));
        eprintln!(
            "e2e: smpark park/release round {round} took {:.2?} (round trip)",
            start.elapsed()
        );
        guest.assert_eq(
            report.as_str(),
            "parked: park=1 parked=3 online=4\nreleased: park=0 parked=0 online=4\n",
            &format!("park/release round {round}"),
        );
    }

    // The guest keeps working: all 4 CPUs online and each runs user code again.
    guest.check(guest.client.probe(), "probe after release");
    guest.assert_eq(guest.cpus(), CPUS, "online CPUs after release");
    guest.assert_eq(
        guest.sh(&format!("cat {SMPARK}/online {SMPARK}/parked")),
        "4\n0\n".to_owned(),
        "online and parked after release",
    );
    for cpu in 0..CPUS {
        let stat = guest.sh(&format!("taskset {:x} cat /proc/self/stat", 1u32 << cpu));
        guest.assert_eq(
            stat_processor(&stat),
            Some(cpu),
            &format!("the CPU `taskset` put cat on ({stat})"),
        );
    }
    let out = guest.exec_ok(&Command::new("cat"), Some(b"still here\n"));
    guest.assert_eq(
        out.stdout.as_slice(),
        b"still here\n",
        "stdin round trip after release",
    );

    // Unloading removes the interface.
    guest.exec_ok(&Command::new("rmmod").arg("smpark").clone(), None);
    guest.assert_eq(
        guest.sh(&format!("grep -c '^smpark ' /proc/modules || true; test -e {SMPARK} && echo present || echo gone")),
        "0\ngone\n".to_owned(),
        "after rmmod",
    );

    guest.assert_console_clean();
    guest.power_off();
}
