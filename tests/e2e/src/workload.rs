//! The workload of issue 14, shared by the workload test (`tests/workload.rs`) and the
//! benchmark: a Debian bookworm rootfs (`scripts/make-workload-rootfs`, cached keyed by
//! its inputs) booted as the container rootfs through the agent, and a fixed selection
//! of CPython's own regression test modules run in it (`workload/run_regrtests.py`).

use std::path::PathBuf;
use std::process::Command as HostCommand;
use std::time::{Duration, Instant};

use supermachine_client::{Client, Command};

use crate::assets::{workspace_root, Arch};
use crate::hvf::Delta;
use crate::qemu::{Disk, VmConfig};

/// One CPython regression test module and the regrtest options that narrow it.
pub struct Module {
    pub name: &'static str,
    /// Extra regrtest arguments (`-m` keeps only matching tests, `-i` leaves matching
    /// ones out); each use has its reason next to it.
    pub args: &'static [&'static str],
}

const fn module(name: &'static str) -> Module {
    Module { name, args: &[] }
}

// The full socket module takes over 5 minutes under TCG; these classes cover TCP, UDP
// and Unix sockets over loopback (IPv4 and IPv6), socketpair, sendmsg/recvmsg with
// SCM_RIGHTS, the abstract namespace, non-blocking sockets, create_server and the
// module's general API.
const SOCKET_CLASSES: &[&str] = &[
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
];

/// The selection, the same on both arches (aarch64 under TCG takes about 220 s for it
/// with two vCPUs), slowest first so the parallel runs finish together. Every module
/// must pass with at least one test run. regrtest runs without `-u`, so tests that need
/// the internet (resource `network`) are left out by regrtest itself.
pub const MODULES: &[Module] = &[
    module("test_asyncio.test_events"),
    module("test_signal"),
    module("test_subprocess"),
    Module {
        name: "test_socket",
        args: SOCKET_CLASSES,
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

/// The cached Debian rootfs of `arch`, built on first use (`scripts/make-workload-rootfs`,
/// which needs root when it has to build).
pub fn rootfs(arch: Arch) -> PathBuf {
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

/// Memory of a workload guest: CPython's tests and `cpus` of them at a time.
pub const MEMORY_MIB: u32 = 2048;

/// The guest that runs the workload: the arch's agent guest with the cached Debian
/// rootfs as its container rootfs and `cpus` vCPUs.
/// - x86_64: the initramfs and the rootfs disk, as supermachine's x86_64 backend boots.
/// - aarch64: as the VMM boots an image there, init-oci with the Debian rootfs as the one
///   image layer and the delta carrying the agent; the container's process only idles, so
///   the container stays up for the agent's execs.
pub fn guest(arch: Arch, cpus: u32) -> VmConfig {
    let rootfs = rootfs(arch);
    let mut config = match arch {
        Arch::X86_64 => {
            let mut config = VmConfig::agent_guest(arch);
            config.disks[0].path = rootfs;
            config
        }
        Arch::Aarch64 => {
            let mut config = VmConfig::hvf_guest(&Delta {
                cmd: "/bin/sleep\ninfinity\n".into(),
                workdir: None,
                user: None,
                hostname: None,
                volumes: None,
                agent: true,
            });
            let delta = config
                .disks
                .pop()
                .expect("hvf_guest ends with the delta disk");
            config.disks = vec![
                Disk {
                    path: rootfs,
                    read_only: true,
                },
                delta,
            ];
            // As from a host with IPv6: with `host_ipv6=0` init-oci turns IPv6 off on
            // every interface, loopback included, and the workload tests ::1.
            config.cmdline = config
                .cmdline
                .replace("supermachine.host_ipv6=0", "supermachine.host_ipv6=1");
            config
        }
    };
    config.cpus = cpus;
    config.memory_mib = MEMORY_MIB;
    config
}

const RUN_REGRTESTS: &str = include_str!("../workload/run_regrtests.py");

/// regrtest's own watchdog for one test.
pub const PER_TEST_TIMEOUT_S: u32 = 600;

/// What one module gave.
pub struct ModuleResult {
    pub name: String,
    pub passed: bool,
    pub seconds: f64,
    pub run: u64,
    pub skipped: u64,
    /// Skip reasons with their counts (JSON object), when any test was skipped.
    pub skips: String,
    /// For a module that did not pass: the counts, failing test ids and the log's end.
    pub report: String,
}

/// Runs `selection` in the guest, `jobs` modules at a time (one regrtest process each),
/// and returns one result per module that reported, with the wall time of the run. A
/// module passes when regrtest exits 0 with at least one test run, none failing.
pub fn run_modules(
    client: &Client,
    selection: &[Module],
    jobs: u32,
) -> Result<(Vec<ModuleResult>, Duration), String> {
    let modules: Vec<Vec<&str>> = selection
        .iter()
        .map(|m| {
            std::iter::once(m.name)
                .chain(m.args.iter().copied())
                .collect()
        })
        .collect();
    let spec = serde_json::json!({
        "jobs": jobs,
        "timeout": PER_TEST_TIMEOUT_S,
        "modules": modules,
    })
    .to_string();
    let started = Instant::now();
    let out = client
        .exec(
            Command::new("/usr/bin/python3")
                .arg("-c")
                .arg(RUN_REGRTESTS)
                .arg(spec),
        )
        .map_err(|e| format!("exec of the regrtest runner failed: {e}"))?;
    let wall = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.code != 0 || !stdout.ends_with("DONE\n") {
        return Err(format!(
            "the runner did not finish (exit {}): {stdout}\n{}",
            out.status.code,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut results = Vec::new();
    for line in stdout.lines().filter(|l| l.starts_with('{')) {
        let r: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("runner line {line:?}: {e}"))?;
        let run = r["run"].as_u64().unwrap_or(0);
        let passed = r["rc"] == 0 && run > 0 && r["failures"] == 0 && r["errors"] == 0;
        let skipped = r["skipped"].as_u64().unwrap_or(0);
        let report = if passed {
            String::new()
        } else {
            format!(
                "rc {} run {run} failures {} errors {}\n{}\n{}",
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
            )
        };
        results.push(ModuleResult {
            name: r["module"].as_str().unwrap_or("?").to_string(),
            passed,
            seconds: r["seconds"].as_f64().unwrap_or(0.0),
            run,
            skipped,
            skips: if skipped > 0 {
                r["skips"].to_string()
            } else {
                String::new()
            },
            report,
        });
    }
    Ok((results, wall))
}
