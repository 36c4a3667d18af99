//! A real container workload on our kernels: a Debian bookworm rootfs (debootstrap
//! minbase with python3, CPython's regression test package, util-linux and procps; built
//! once by `scripts/make-workload-rootfs` and cached keyed by its inputs) booted as the
//! container rootfs through the agent, running a fixed selection of CPython's own
//! regression tests and exercising the kernel features containers rely on: user, net and
//! pid namespaces, cgroup v2 with its controllers, loopback AF_INET/AF_INET6/AF_UNIX
//! sockets, SysV shared memory and inotify.

use std::time::{Duration, Instant};

use supermachine_client::{Client, Command};
use supermachine_e2e::workload::{self, ModuleResult};
use supermachine_e2e::{boot_agent, sh_stdout, Arch, Vm};

/// Boot to a ready agent under TCG, with room for a loaded host.
const READY_TIMEOUT: Duration = Duration::from_secs(300);
/// The whole regression run of one guest.
const RUN_TIMEOUT: Duration = Duration::from_secs(40 * 60);

fn boot(arch: Arch, cpus: u32) -> (Vm, Client) {
    let config = workload::guest(arch, cpus);
    let started = Instant::now();
    let booted = boot_agent(&config, READY_TIMEOUT, RUN_TIMEOUT);
    eprintln!(
        "booted the Debian rootfs to a ready agent in {:.1} s ({cpus} vCPUs, {:?})",
        started.elapsed().as_secs_f64(),
        config.accel
    );
    booted
}

/// Runs `python3 -c SOURCE ARGS...` in the guest.
fn python(client: &Client, source: &str, args: &[&str]) -> (u32, String, String) {
    let out = client
        .exec(
            Command::new("/usr/bin/python3")
                .arg("-c")
                .arg(source)
                .args(args.iter().copied()),
        )
        .unwrap_or_else(|e| panic!("exec of python3 failed: {e}"));
    (
        out.status.code,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const KERNEL_CHECKS: &str = include_str!("../workload/kernel_checks.py");

fn check(client: &Client, name: &str) -> String {
    let (status, stdout, stderr) = python(client, KERNEL_CHECKS, &[name]);
    assert_eq!(status, 0, "{name}: stdout {stdout}\nstderr {stderr}");
    eprint!("{stdout}");
    stdout
}

#[test]
fn container_kernel_features_x86_64() {
    container_kernel_features(Arch::X86_64);
}

#[test]
fn container_kernel_features_aarch64() {
    container_kernel_features(Arch::Aarch64);
}

fn container_kernel_features(arch: Arch) {
    let (_vm, client) = boot(arch, 2);
    let os = sh_stdout(&client, "grep PRETTY_NAME /etc/os-release");
    assert!(os.contains("Debian GNU/Linux 12 (bookworm)"), "{os}");

    // User, network and PID namespaces, unprivileged: root inside, PID 1 of a new PID
    // namespace, and a network namespace of its own (only a loopback, down).
    let outer_net = sh_stdout(&client, "readlink /proc/self/ns/net");
    // As nobody, so the user namespace is what grants the rest.
    let inner = sh_stdout(
        &client,
        "setpriv --reuid=65534 --regid=65534 --clear-groups unshare -Urnp --fork \
         sh -c 'id -u; echo $$; readlink /proc/self/ns/net; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d \" \"'",
    );
    let lines: Vec<&str> = inner.lines().collect();
    assert_eq!(lines.first(), Some(&"0"), "uid inside: {inner}");
    assert_eq!(lines.get(1), Some(&"1"), "pid inside: {inner}");
    assert_ne!(
        lines.get(2).copied(),
        Some(outer_net.trim()),
        "same network namespace: {inner}"
    );
    assert_eq!(
        lines.get(3..),
        Some(&["lo"][..]),
        "interfaces inside: {inner}"
    );

    // cgroup v2: mounted at /sys/fs/cgroup (mounted here if the init did not), with the
    // controllers containers use, and enforcing: a child group limited to one task
    // cannot fork.
    let mounted_by_init = sh_stdout(
        &client,
        "grep -c ' /sys/fs/cgroup cgroup2 ' /proc/mounts || true",
    );
    eprintln!(
        "cgroup2 mounted by the guest's init: {}",
        mounted_by_init.trim() != "0"
    );
    let controllers = sh_stdout(
        &client,
        "grep -q ' /sys/fs/cgroup cgroup2 ' /proc/mounts || mount -t cgroup2 cgroup2 /sys/fs/cgroup; \
         cat /sys/fs/cgroup/cgroup.controllers",
    );
    for want in ["cpuset", "cpu", "io", "memory", "pids"] {
        assert!(
            controllers.split_whitespace().any(|c| c == want),
            "cgroup2 controller {want} missing: {controllers}"
        );
    }
    let limited = sh_stdout(
        &client,
        "cd /sys/fs/cgroup && echo '+pids +memory' > cgroup.subtree_control && mkdir -p wl && \
         echo 1 > wl/pids.max && echo 64M > wl/memory.max && \
         sh -c 'echo $$ > /sys/fs/cgroup/wl/cgroup.procs && /bin/true' 2>/dev/null; echo \"exit $?\"; \
         cat wl/pids.events",
    );
    // The shell in the group could not fork /bin/true, and the group counted it.
    assert!(!limited.starts_with("exit 0\n"), "{limited}");
    assert!(limited.contains("max 1"), "{limited}");

    // Loopback sockets of every family, SysV shared memory, inotify.
    let sockets = check(&client, "sockets");
    assert_eq!(sockets.lines().filter(|l| l.ends_with(": ok")).count(), 7);
    check(&client, "sysv_shm");
    check(&client, "inotify");
}

/// Runs the selection with `cpus` vCPUs (two modules at a time for two vCPUs: TCG
/// gives each vCPU a host thread) and fails naming every module that did not pass.
fn cpython_regression_modules(arch: Arch, cpus: u32) {
    let (_vm, client) = boot(arch, cpus);
    // Pseudo-terminals need devpts on /dev/pts. supermachine's x86_64 init mounts none
    // (contract section 2), so the agent mounts it as it starts as PID 1 (init-oci does
    // on aarch64); checked before any tty exec, as the workload's own ptys (test_pty,
    // asyncio) find it.
    let mounts = sh_stdout(&client, "cat /proc/mounts");
    assert!(
        mounts
            .lines()
            .any(|l| l.starts_with("devpts /dev/pts devpts ")),
        "no devpts on /dev/pts: {mounts}"
    );
    let selection = workload::MODULES;
    let (results, wall) = workload::run_modules(&client, selection, cpus)
        .unwrap_or_else(|e| panic!("{}: {e}", arch.name()));
    print_results(&results);
    eprintln!(
        "{}: {} modules in {:.0} s wall with {cpus} vCPUs",
        arch.name(),
        results.len(),
        wall.as_secs_f64()
    );
    for m in selection {
        assert!(
            results.iter().any(|r| r.name == m.name),
            "{} gave no result",
            m.name
        );
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| format!("{}: {}", r.name, r.report))
        .collect();
    assert!(
        failed.is_empty(),
        "failing modules:\n{}",
        failed.join("\n\n")
    );
}

fn print_results(results: &[ModuleResult]) {
    eprintln!("module                          result   secs   run  skipped");
    for r in results {
        eprintln!(
            "{:<31} {:<8} {:>5.0} {:>5} {:>8}",
            r.name,
            if r.passed { "pass" } else { "FAIL" },
            r.seconds,
            r.run,
            r.skipped
        );
        if !r.skips.is_empty() {
            eprintln!("    skips: {}", r.skips);
        }
    }
}

#[test]
fn cpython_regression_modules_x86_64() {
    cpython_regression_modules(Arch::X86_64, 2);
}

#[test]
fn cpython_regression_modules_aarch64() {
    cpython_regression_modules(Arch::Aarch64, 2);
}
