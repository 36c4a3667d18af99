//! A real container workload on our kernels: a Debian bookworm rootfs (debootstrap
//! minbase with python3, CPython's regression test package, util-linux and procps; built
//! once by `scripts/make-workload-rootfs` and cached keyed by its inputs) booted as the
//! container rootfs through the agent, running a fixed selection of CPython's own
//! regression tests and exercising the kernel features containers rely on: user, net and
//! pid namespaces, cgroup v2 with its controllers, loopback AF_INET/AF_INET6/AF_UNIX
//! sockets, SysV shared memory and inotify.

use std::path::PathBuf;
use std::process::Command as HostCommand;
use std::time::{Duration, Instant};

use supermachine_client::{Client, Command};
use supermachine_e2e::{boot_agent, sh_stdout, workspace_root, Arch, Vm, VmConfig};

/// One CPython regression test module and the regrtest options that narrow it.
struct Module {
    name: &'static str,
    /// Extra regrtest arguments (`-m` keeps only matching tests, `-i` leaves matching
    /// ones out); each use has its reason next to it.
    args: &'static [&'static str],
}

const fn module(name: &'static str) -> Module {
    Module { name, args: &[] }
}

/// The x86_64 selection, slowest first so the parallel runs finish together. Every
/// module must pass with at least one test run. regrtest runs without `-u`, so tests
/// that need the internet (resource `network`) are left out by regrtest itself.
const X86_64_MODULES: &[Module] = &[
    module("test_asyncio.test_events"),
    module("test_signal"),
    module("test_subprocess"),
    // The full module takes over 5 minutes under TCG; these classes cover TCP, UDP and
    // Unix sockets over loopback (IPv4 and IPv6), socketpair, sendmsg/recvmsg with
    // SCM_RIGHTS, the abstract namespace, non-blocking sockets, create_server and the
    // module's general API.
    Module {
        name: "test_socket",
        args: &[
            "-m",
            "GeneralModuleTests",
            "-m",
            "BasicTCPTest",
            "-m",
            "BasicUDPTest",
            "-m",
            "BasicSocketPairTest",
            "-m",
            "SendmsgUnixStreamTest",
            "-m",
            "RecvmsgSCMRightsStreamTest",
            "-m",
            "TestUnixDomain",
            "-m",
            "TestLinuxAbstractNamespace",
            "-m",
            "NonBlockingTCPTests",
            "-m",
            "InheritanceTest",
            "-m",
            "NonblockConstantTest",
            "-m",
            "RecvmsgUDP6Test",
            "-m",
            "SendRecvFdsTests",
            "-m",
            "CreateServerFunctionalTest",
        ],
    },
    module("test_threading"),
    module("test_selectors"),
    // The full multiprocessing suites take tens of minutes under TCG; these classes cover
    // processes, queues, locks, semaphores (POSIX semaphores in /dev/shm), pipes and
    // shared memory.
    Module {
        name: "test_multiprocessing_fork",
        args: &[
            "-m",
            "WithProcessesTestProcess",
            "-m",
            "WithProcessesTestQueue",
            "-m",
            "WithProcessesTestLock",
            "-m",
            "WithProcessesTestSemaphore",
            "-m",
            "WithProcessesTestConnection",
            "-m",
            "WithProcessesTestSharedMemory",
            "-m",
            "WithProcessesTestPoll",
        ],
    },
    module("test_os"),
    module("test_eintr"),
    // Only loopback servers; `network` also stands for the internet elsewhere, so it
    // is enabled for this module alone.
    Module {
        name: "test_socketserver",
        args: &["-u", "network"],
    },
    module("test_sqlite3"),
    module("test_tempfile"),
    module("test_shutil"),
    module("test_posix"),
    module("test_time"),
    module("test_select"),
    module("test_poll"),
    module("test_file_eintr"),
    module("test_threadsignals"),
    module("test_epoll"),
    module("test_mmap"),
    module("test_fcntl"),
    module("test_pty"),
    module("test_resource"),
    module("test_wait4"),
    module("test_fork1"),
    // Excluded: these three look for the build-time Makefile and pyconfig.h, which
    // Debian ships in python3.11-dev, not in the interpreter (a packaging split, not
    // the guest): test_get_config_h_filename, test_get_makefile_filename, test_srcdir.
    Module {
        name: "test_sysconfig",
        args: &[
            "-i",
            "test_get_config_h_filename",
            "-i",
            "test_get_makefile_filename",
            "-i",
            "test_srcdir",
        ],
    },
];

/// Boot to a ready agent under TCG, with room for a loaded host.
const READY_TIMEOUT: Duration = Duration::from_secs(300);
/// The whole regression run of one guest, and regrtest's own per-test watchdog.
const RUN_TIMEOUT: Duration = Duration::from_secs(40 * 60);
const PER_TEST_TIMEOUT_S: u32 = 600;

/// The cached Debian rootfs, built on first use (`scripts/make-workload-rootfs`).
fn workload_rootfs(arch: Arch) -> PathBuf {
    let script = workspace_root().join("scripts/make-workload-rootfs");
    let started = Instant::now();
    let out = HostCommand::new(&script)
        .arg(arch.name())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} {} failed ({}):\n{}",
        script.display(),
        arch.name(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "workload rootfs ready in {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let path = String::from_utf8(out.stdout).expect("utf-8 path");
    PathBuf::from(
        path.trim()
            .lines()
            .last()
            .expect("the script prints the path"),
    )
}

fn boot(arch: Arch, cpus: u32) -> (Vm, Client) {
    let mut config = VmConfig::agent_guest(arch);
    config.disks[0].path = workload_rootfs(arch);
    config.cpus = cpus;
    config.memory_mib = 2048;
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
const RUN_REGRTESTS: &str = include_str!("../workload/run_regrtests.py");

fn check(client: &Client, name: &str) -> String {
    let (status, stdout, stderr) = python(client, KERNEL_CHECKS, &[name]);
    assert_eq!(status, 0, "{name}: stdout {stdout}\nstderr {stderr}");
    eprint!("{stdout}");
    stdout
}

#[test]
fn container_kernel_features_x86_64() {
    let (_vm, client) = boot(Arch::X86_64, 2);
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

#[test]
fn cpython_regression_modules_x86_64() {
    // Two vCPUs run two modules at a time (TCG gives each vCPU a host thread).
    let cpus = 2;
    let (_vm, client) = boot(Arch::X86_64, cpus);
    // Pseudo-terminals need devpts on /dev/pts. supermachine's x86_64 init mounts none
    // (contract section 2), so the agent mounts it as it starts as PID 1; checked before
    // any tty exec, as the workload's own ptys (test_pty, asyncio) find it.
    let mounts = sh_stdout(&client, "cat /proc/mounts");
    assert!(
        mounts
            .lines()
            .any(|l| l.starts_with("devpts /dev/pts devpts ")),
        "no devpts on /dev/pts: {mounts}"
    );
    let modules: Vec<Vec<&str>> = X86_64_MODULES
        .iter()
        .map(|m| {
            std::iter::once(m.name)
                .chain(m.args.iter().copied())
                .collect()
        })
        .collect();
    let spec = format!(
        "{{\"jobs\": {cpus}, \"timeout\": {PER_TEST_TIMEOUT_S}, \"modules\": {}}}",
        serde_json::to_string(&modules).unwrap()
    );
    let started = Instant::now();
    let (status, stdout, stderr) = python(&client, RUN_REGRTESTS, &[&spec]);
    let wall = started.elapsed();
    assert_eq!(status, 0, "runner: {stdout}\n{stderr}");
    assert!(
        stdout.ends_with("DONE\n"),
        "runner did not finish: {stdout}\n{stderr}"
    );

    let mut failed = Vec::new();
    let mut seen = Vec::new();
    eprintln!("module                          result   secs   run  skipped");
    for line in stdout.lines().filter(|l| l.starts_with('{')) {
        let r: serde_json::Value = serde_json::from_str(line).expect("runner JSON line");
        let name = r["module"].as_str().unwrap().to_string();
        let run = r["run"].as_u64().unwrap_or(0);
        let ok = r["rc"] == 0 && run > 0 && r["failures"] == 0 && r["errors"] == 0;
        eprintln!(
            "{name:<31} {:<8} {:>5.0} {:>5} {:>8}",
            if ok { "pass" } else { "FAIL" },
            r["seconds"].as_f64().unwrap_or(0.0),
            run,
            r["skipped"]
        );
        if r["skipped"].as_u64().unwrap_or(0) > 0 {
            eprintln!("    skips: {}", r["skips"]);
        }
        if !ok {
            failed.push(format!(
                "{name}: rc {} run {run} failures {} errors {}\n{}\n{}",
                r["rc"],
                r["failures"],
                r["errors"],
                r["failed"]
                    .as_array()
                    .map(|f| f
                        .iter()
                        .map(|t| format!("  {}\n", t.as_str().unwrap_or("")))
                        .collect::<String>())
                    .unwrap_or_default(),
                r["log_tail"].as_str().unwrap_or("")
            ));
        }
        seen.push(name);
    }
    eprintln!(
        "{} modules in {:.0} s wall with {cpus} vCPUs",
        seen.len(),
        wall.as_secs_f64()
    );
    for m in X86_64_MODULES {
        assert!(
            seen.iter().any(|s| s == m.name),
            "{} gave no result",
            m.name
        );
    }
    assert!(
        failed.is_empty(),
        "failing modules:\n{}",
        failed.join("\n\n")
    );
}
