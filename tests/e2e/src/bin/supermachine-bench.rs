//! `supermachine-bench`: boot time, exec latency, stdout throughput and sizes of the
//! host build's guest assets, side by side with reference kernels built from the same
//! 6.12 tree with Firecracker's CI guest config and with libkrunfw's container guest
//! config (`scripts/build-reference-kernel ARCH firecracker|libkrunfw`).
//!
//! Run it through `scripts/bench`, which builds what is missing first. It prints a
//! table; it asserts nothing about the figures (a benchmark, not a test). See
//! docs/benchmarks.md for what each figure means.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command as HostCommand, Stdio};
use std::time::{Duration, Instant};

use supermachine_client::{Client, Command, Output};
use supermachine_e2e::assets::{out_dir, Arch};
use supermachine_e2e::latency::{ms, samples, summary};
use supermachine_e2e::qemu::{Accel, Vm, VmConfig};
use supermachine_e2e::workload;
use supermachine_proto::AGENT_READY_PATH;

/// Published sizes of the crates being replaced (crates.io, 0.7.68, decimal MB).
const PUBLISHED_X86_64_CRATE: f64 = 8.44e6;
const PUBLISHED_AARCH64_CRATE: f64 = 7.96e6;

/// Generous: a full-config kernel with 4 vCPUs under single-threaded icount TCG is slow.
const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

struct Options {
    arches: Vec<Arch>,
    boots: usize,
    execs: usize,
    stream_mib: u64,
    workload: bool,
}

const USAGE: &str =
    "usage: supermachine-bench [--arch x86_64|aarch64|all] [--boots N] [--execs N] [--stream-mib N]
                          [--no-workload]

Boots the host build's kernels (and the reference kernels under out/reference/ and
out/reference-libkrunfw/, if built)
under QEMU and prints boot time to agent-ready, exec round trip, stdout throughput,
sizes, and how many of the workload's CPython regression modules pass on each kernel
(the Debian rootfs of scripts/make-workload-rootfs; --no-workload leaves that out).
Defaults: every arch with a host build in out/, 3 boots, 200 execs, 64 MiB.";

fn parse_options() -> Result<Options, String> {
    let mut arches = None;
    let mut boots = 3;
    let mut execs = 200;
    let mut stream_mib = 64;
    let mut workload = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--arch" => {
                arches = Some(match value("--arch")?.as_str() {
                    "x86_64" => vec![Arch::X86_64],
                    "aarch64" => vec![Arch::Aarch64],
                    "all" => vec![Arch::X86_64, Arch::Aarch64],
                    other => return Err(format!("unknown arch {other}")),
                })
            }
            "--boots" => boots = number(&value("--boots")?)?,
            "--execs" => execs = number(&value("--execs")?)?,
            "--stream-mib" => stream_mib = number(&value("--stream-mib")?)? as u64,
            "--no-workload" => workload = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    let arches = arches.unwrap_or_else(|| {
        [Arch::X86_64, Arch::Aarch64]
            .into_iter()
            .filter(|a| our_kernel(*a).exists())
            .collect()
    });
    if boots == 0 || execs == 0 || stream_mib == 0 {
        return Err("--boots, --execs and --stream-mib must be at least 1".into());
    }
    Ok(Options {
        arches,
        boots,
        execs,
        stream_mib,
        workload,
    })
}

fn number(s: &str) -> Result<usize, String> {
    s.parse().map_err(|_| format!("not a number: {s}"))
}

fn our_kernel(arch: Arch) -> PathBuf {
    out_dir()
        .join(arch.name())
        .join("kernel")
        .join(arch.kernel_image())
}

/// A reference kernel: the same 6.12 tree built with another project's guest config.
struct Reference {
    /// Row label, and the argument of scripts/build-reference-kernel.
    name: &'static str,
    /// Directory under out/ holding ARCH/{image,config,MANIFEST}.
    dir: &'static str,
    what: &'static str,
    /// Whether the x86_64 kernel needs QEMU's ACPI tables to find its virtio devices.
    x86_acpi: bool,
}

const REFERENCES: [Reference; 2] = [
    // Firecracker's x86_64 config has no VIRTIO_MMIO_CMDLINE_DEVICES: it finds the
    // virtio-mmio devices in ACPI tables, so QEMU must provide them.
    Reference {
        name: "firecracker",
        dir: "reference",
        what: "Firecracker CI config",
        x86_acpi: true,
    },
    // libkrunfw's takes them from the command line, as ours does.
    Reference {
        name: "libkrunfw",
        dir: "reference-libkrunfw",
        what: "libkrunfw config",
        x86_acpi: false,
    },
];

fn reference_kernel(reference: &Reference, arch: Arch) -> PathBuf {
    out_dir()
        .join(reference.dir)
        .join(arch.name())
        .join(arch.kernel_image())
}

fn main() {
    let options = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("supermachine-bench: {e}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    if options.arches.is_empty() {
        eprintln!(
            "supermachine-bench: no host build in {}: run scripts/build (or scripts/bench)",
            out_dir().display()
        );
        std::process::exit(1);
    }

    print_machine();
    for &arch in &options.arches {
        boot_section(arch, options.boots);
    }
    for &arch in &options.arches {
        exec_section(arch, options.execs, options.stream_mib);
    }
    size_section(&options.arches);
    if options.workload {
        for &arch in &options.arches {
            workload_section(arch);
        }
    }
}

/// First line of a command's output, or a note that it failed.
fn first_line(program: &str, args: &[&str]) -> String {
    HostCommand::new(program)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| format!("({program} not available)"))
}

fn print_machine() {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("supermachine-bench {}", env!("CARGO_PKG_VERSION"));
    println!("host:  {model}, {cpus} CPUs");
    println!(
        "qemu:  {}",
        first_line("qemu-system-x86_64", &["--version"])
    );
    println!("out:   {}", out_dir().display());
}

// ---------------------------------------------------------------- boot to agent-ready

struct BootSample {
    /// Guest uptime (/proc/uptime) read by the first exec after the agent answered probe.
    guest: Duration,
    /// Host wall time from starting QEMU to the agent's first probe answer.
    wall: Duration,
    kernel_release: String,
}

fn boot_config(arch: Arch, kernel: PathBuf, acpi: bool) -> VmConfig {
    let mut config = VmConfig::agent_guest(arch);
    config.kernel = kernel;
    config.accel = Accel::TcgIcount;
    config.x86_acpi = acpi;
    // Under -icount with sleep=off an idle guest's clock jumps to its next timer. A
    // tickless kernel (ours; Firecracker's config too) has far-off timers, so every wait
    // for a disk or vsock backend would add up to seconds of guest time; the periodic
    // tick bounds each jump to one tick, the same for every kernel.
    config.cmdline.push_str(" nohz=off");
    config
}

/// Seconds since midnight and the date, from busybox `stat -c %y`
/// (`2026-12-03 07:38:39.881192062 +0000`).
fn stat_time(line: &str) -> Option<(String, f64)> {
    let mut parts = line.split_whitespace();
    let date = parts.next()?.to_string();
    let mut hms = parts.next()?.split(':');
    let h: f64 = hms.next()?.parse().ok()?;
    let m: f64 = hms.next()?.parse().ok()?;
    let s: f64 = hms.next()?.parse().ok()?;
    Some((date, h * 3600.0 + m * 60.0 + s))
}

/// Boots once and waits for the agent to answer CONTROL probe through the bridge, as
/// supermachine's host does after a boot.
fn boot_once(config: &VmConfig) -> BootSample {
    let start = Instant::now();
    let vm = Vm::start(config);
    let client = ready_client(&vm);
    let wall = start.elapsed();
    let text = |argv: &[&str]| {
        client
            .exec(&Command::from_argv(argv.iter().copied()))
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|e| format!("({} failed: {e})", argv.join(" ")))
    };
    // The guest's uptime now, less how long ago (guest wall clock, file timestamps) the
    // agent wrote its ready file: the uptime at which the agent listened, whatever the
    // guest's clock did while the host probed and connected.
    let report = text(&[
        "sh",
        "-c",
        &format!(
            "cat /proc/uptime; touch /run/.bench-now; stat -c %y {AGENT_READY_PATH} /run/.bench-now"
        ),
    ]);
    let lines: Vec<&str> = report.lines().collect();
    let parsed = (|| {
        let uptime: f64 = lines.first()?.split_whitespace().next()?.parse().ok()?;
        let (ready_date, ready) = stat_time(lines.get(1)?)?;
        let (now_date, now) = stat_time(lines.get(2)?)?;
        let since_ready = if ready_date == now_date {
            now - ready
        } else {
            now + 86400.0 - ready
        };
        Some(Duration::from_secs_f64((uptime - since_ready).max(0.0)))
    })();
    let guest =
        parsed.unwrap_or_else(|| panic!("cannot read the guest's agent-ready time: {report}"));
    let kernel_release = text(&["uname", "-r"]);
    BootSample {
        guest,
        wall,
        kernel_release,
    }
}

struct BootRow {
    label: &'static str,
    machine: String,
    release: String,
    guest: Vec<Duration>,
    wall: Vec<Duration>,
}

fn boot_rows(arch: Arch, boots: usize) -> Vec<BootRow> {
    let machine = |acpi: bool| match arch {
        Arch::X86_64 => format!("microvm,acpi={}", if acpi { "on" } else { "off" }),
        Arch::Aarch64 => "virt".to_owned(),
    };
    let mut kernels = vec![("ours", our_kernel(arch), false)];
    for reference in &REFERENCES {
        let kernel = reference_kernel(reference, arch);
        if kernel.exists() {
            kernels.push((
                reference.name,
                kernel,
                arch == Arch::X86_64 && reference.x86_acpi,
            ));
        }
    }
    let mut rows = Vec::new();
    for (label, kernel, acpi) in kernels {
        let config = boot_config(arch, kernel, acpi);
        let mut row = BootRow {
            label,
            machine: machine(acpi),
            release: String::new(),
            guest: Vec::new(),
            wall: Vec::new(),
        };
        for i in 0..boots {
            let sample = boot_once(&config);
            eprintln!(
                "bench: {} {label} boot {}/{boots}: guest {:.1} ms, wall {:.1} s",
                arch.name(),
                i + 1,
                ms(sample.guest),
                sample.wall.as_secs_f64()
            );
            row.release = sample.kernel_release;
            row.guest.push(sample.guest);
            row.wall.push(sample.wall);
        }
        rows.push(row);
    }
    rows
}

fn boot_section(arch: Arch, boots: usize) {
    let cpus = VmConfig::agent_guest(arch).cpus;
    println!();
    println!(
        "== boot to agent-ready, {} (guest CLOCK_BOOTTIME when the agent listens; QEMU {} TCG -icount shift=1,sleep=off, {} vCPU, 256 MiB, our initramfs + test rootfs, vsock; {boots} boots)",
        arch.name(),
        if arch == Arch::X86_64 { "microvm" } else { "virt" },
        cpus
    );
    let rows = boot_rows(arch, boots);
    println!(
        "{:<12} {:<18} {:<32} {:>10} {:>10} {:>10} {:>12}",
        "kernel", "machine", "release", "min ms", "median ms", "max ms", "host wall s"
    );
    for row in &rows {
        let mut guest = row.guest.clone();
        guest.sort();
        let mut wall = row.wall.clone();
        wall.sort();
        println!(
            "{:<12} {:<18} {:<32} {:>10.1} {:>10.1} {:>10.1} {:>12.1}",
            row.label,
            row.machine,
            row.release,
            ms(guest[0]),
            ms(median(&guest)),
            ms(guest[guest.len() - 1]),
            median(&wall).as_secs_f64()
        );
    }
    let ours = median_sorted(&rows[0].guest).as_secs_f64();
    for reference in &REFERENCES {
        match rows.iter().find(|r| r.label == reference.name) {
            Some(row) => println!(
                "ratio ours/{} (guest median): {:.2}",
                reference.name,
                ours / median_sorted(&row.guest).as_secs_f64()
            ),
            None => println!(
                "{} reference kernel not built: run scripts/build-reference-kernel {} {}",
                reference.name,
                arch.name(),
                reference.name
            ),
        }
    }
    if arch == Arch::X86_64 && rows.iter().any(|r| r.label == "firecracker") {
        println!("note: the firecracker reference boots with ACPI (QEMU microvm acpi=on): its config finds virtio-mmio devices in ACPI, not on the command line; ours and libkrunfw's boot with acpi=off.");
    }
}

fn median(sorted: &[Duration]) -> Duration {
    sorted[sorted.len() / 2]
}

fn median_sorted(values: &[Duration]) -> Duration {
    let mut v = values.to_vec();
    v.sort();
    median(&v)
}

// ---------------------------------------------------------------- exec and throughput

fn exec_section(arch: Arch, execs: usize, stream_mib: u64) {
    let config = VmConfig::agent_guest(arch);
    println!();
    println!(
        "== exec and stdout over vsock, {} (our kernel; accelerator {:?}, {} vCPU; wall time on the host)",
        arch.name(),
        config.accel,
        config.cpus
    );
    let vm = Vm::start(&config);
    let client = ready_client(&vm);

    let run_true = || {
        let start = Instant::now();
        let out = client
            .exec(&Command::new("true"))
            .unwrap_or_else(|e| panic!("exec true: {e}"));
        assert!(
            out.status.success(),
            "`true` did not succeed: {:?}",
            out.status
        );
        start.elapsed()
    };
    let samples = samples(execs, run_true);
    println!(
        "exec `true` round trip, {execs} (one connection each, through the bridge): {}",
        summary(&samples)
    );

    let bytes = stream_mib << 20;
    let start = Instant::now();
    let mut process = client
        // busybox head takes no size suffix: the count in bytes.
        .spawn(Command::new("head").args(["-c".to_string(), bytes.to_string(), "/dev/zero".into()]))
        .unwrap_or_else(|e| panic!("spawn head: {e}"));
    let mut received = 0u64;
    let mut status = None;
    while let Some(event) = process
        .next_output()
        .unwrap_or_else(|e| panic!("head output: {e}"))
    {
        match event {
            Output::Stdout(data) => received += data.len() as u64,
            Output::Stderr(data) => eprint!("{}", String::from_utf8_lossy(&data)),
            Output::Exit(s) => status = Some(s),
        }
    }
    let elapsed = start.elapsed();
    assert!(
        status.is_some_and(|s| s.success()) && received == bytes,
        "head -c {bytes} /dev/zero: got {received} bytes, exit {status:?}"
    );
    println!(
        "stdout throughput, head -c {bytes} /dev/zero ({stream_mib} MiB): {:.1} MiB/s ({:.2} s)",
        stream_mib as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
}

/// A client of `vm`'s agent through the bridge, once it answers probe.
fn ready_client(vm: &Vm) -> Client {
    let client = supermachine_e2e::client(vm, supermachine_e2e::Via::Bridge, BOOT_TIMEOUT);
    if let Err(e) = client.wait_ready(BOOT_TIMEOUT) {
        panic!(
            "agent not reachable over vsock: {e}\n--- console ---\n{}",
            vm.console()
        );
    }
    client
}

// ---------------------------------------------------------------- workload

/// vCPUs of a workload guest; the selection runs this many modules at a time.
const WORKLOAD_CPUS: u32 = 2;
/// Boot plus the whole selection under plain TCG.
const WORKLOAD_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// Boots each kernel with the workload's Debian rootfs (plain TCG: the figure is a
/// count, not a time) and runs the CPython selection, as the workload test does.
fn workload_section(arch: Arch) {
    let selection = workload::MODULES;
    println!();
    println!(
        "== workload, {}: CPython regression modules passing of {} (Debian bookworm rootfs, {WORKLOAD_CPUS} vCPUs, 2 GiB, TCG)",
        arch.name(),
        selection.len()
    );
    let mut kernels = vec![("ours", our_kernel(arch), false)];
    for reference in &REFERENCES {
        let kernel = reference_kernel(reference, arch);
        if kernel.exists() {
            kernels.push((
                reference.name,
                kernel,
                arch == Arch::X86_64 && reference.x86_acpi,
            ));
        }
    }
    println!(
        "{:<12} {:>7} {:>10}  failing or not run",
        "kernel", "passing", "wall s"
    );
    for (label, kernel, acpi) in kernels {
        let mut config = workload::guest(arch, WORKLOAD_CPUS);
        config.kernel = kernel;
        config.x86_acpi = acpi;
        let vm = Vm::start(&config);
        let client = supermachine_e2e::client(&vm, supermachine_e2e::Via::Bridge, WORKLOAD_TIMEOUT);
        if let Err(e) = client.wait_ready(BOOT_TIMEOUT) {
            println!(
                "{label:<12} {:>7} {:>10}  the agent never answered: {e}",
                0, "-"
            );
            continue;
        }
        match workload::run_modules(&client, selection, WORKLOAD_CPUS) {
            Ok((results, wall)) => {
                let passing = results.iter().filter(|r| r.passed).count();
                let failing: Vec<&str> = selection
                    .iter()
                    .map(|m| m.name)
                    .filter(|name| !results.iter().any(|r| r.passed && r.name == *name))
                    .collect();
                println!(
                    "{label:<12} {:>7} {:>10.0}  {}",
                    format!("{passing}/{}", selection.len()),
                    wall.as_secs_f64(),
                    failing.join(" ")
                );
            }
            Err(e) => println!(
                "{label:<12} {:>7} {:>10}  the runner failed: {}",
                0,
                "-",
                e.lines().next().unwrap_or("")
            ),
        }
    }
}

// ---------------------------------------------------------------- sizes

fn size(path: &Path) -> Option<u64> {
    fs::metadata(path).ok().map(|m| m.len())
}

/// Size after `xz -9` (what a crate bundling the file would carry, less its BCJ filter's
/// gain for the arm64 `Image`: docs/benchmarks.md).
fn xz9_size(path: &Path) -> Option<u64> {
    let out = HostCommand::new("xz")
        .args(["-9", "-T1", "-c"])
        .arg(path)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status.success().then_some(out.stdout.len() as u64)
}

/// Options set in a kernel config: (built in, modules).
fn option_counts(config: &Path) -> Option<(usize, usize)> {
    let text = fs::read_to_string(config).ok()?;
    let count = |suffix: &str| {
        text.lines()
            .filter(|l| l.starts_with("CONFIG_") && l.ends_with(suffix))
            .count()
    };
    Some((count("=y"), count("=m")))
}

fn mb(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / 1e6)
}

fn size_section(arches: &[Arch]) {
    println!();
    println!("== sizes (MB = 10^6 bytes, as crates.io shows them)");
    println!(
        "{:<52} {:>12} {:>10} {:>10}",
        "file", "bytes", "MB", "xz -9 MB"
    );
    // Prints one row; returns (bytes, bytes after xz -9 when asked for).
    let row = |name: String, path: &Path, xz: bool| -> Option<(u64, Option<u64>)> {
        let Some(bytes) = size(path) else {
            println!("{name:<52} {:>12}", "(not built)");
            return None;
        };
        let compressed = if xz { xz9_size(path) } else { None };
        let shown = match (xz, compressed) {
            (false, _) => String::new(),
            (true, Some(c)) => mb(c),
            (true, None) => "?".into(),
        };
        println!("{name:<52} {bytes:>12} {:>10} {shown:>10}", mb(bytes));
        Some((bytes, compressed))
    };
    let mut ratios = Vec::new();
    let mut option_lines = Vec::new();
    for &arch in arches {
        let a = arch.name();
        let image = arch.kernel_image();
        let ours_kernel = our_kernel(arch);
        let ours = row(format!("{a} kernel {image} (ours)"), &ours_kernel, true);
        let mut options = vec![("ours", ours_kernel.with_file_name("config"))];
        for reference in &REFERENCES {
            let kernel = reference_kernel(reference, arch);
            let measured = row(
                format!("{a} kernel {image} ({})", reference.what),
                &kernel,
                true,
            );
            options.push((reference.name, kernel.with_file_name("config")));
            if let (Some((o, ox)), Some((r, rx))) = (ours, measured) {
                let xz = match (ox, rx) {
                    (Some(ox), Some(rx)) => {
                        format!(", {:.2} after xz -9", ox as f64 / rx as f64)
                    }
                    _ => String::new(),
                };
                ratios.push(format!(
                    "{a} {image} ours/{}: {:.2} raw{xz}",
                    reference.name,
                    o as f64 / r as f64
                ));
            }
        }
        row(
            format!("{a} initramfs.cpio.gz"),
            &out_dir().join(a).join("initramfs.cpio.gz"),
            false,
        );
        for (label, config) in &options {
            if let Some((y, m)) = option_counts(config) {
                option_lines.push(format!("{a} {label}: {y} built in, {m} modules"));
            }
        }
    }
    let mut crates: Vec<PathBuf> = fs::read_dir(out_dir().join("crates"))
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "crate"))
                .collect()
        })
        .unwrap_or_default();
    crates.sort();
    if crates.is_empty() {
        println!(
            "(no .crate files in {})",
            out_dir().join("crates").display()
        );
    }
    for path in &crates {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some((bytes, _)) = row(name.clone(), path, false) else {
            continue;
        };
        let published = if name.starts_with("supermachine-kernel-x86-64-") {
            PUBLISHED_X86_64_CRATE
        } else if name.starts_with("supermachine-kernel-aarch64-") {
            PUBLISHED_AARCH64_CRATE
        } else {
            continue;
        };
        ratios.push(format!(
            "{name} / published 0.7.68 ({:.2} MB): {:.2}",
            published / 1e6,
            bytes as f64 / published
        ));
    }
    for line in &ratios {
        println!("ratio {line}");
    }
    for line in &option_lines {
        println!("options {line}");
    }
}
