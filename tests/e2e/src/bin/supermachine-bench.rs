//! `supermachine-bench`: boot time, exec latency, stdout throughput and sizes of the
//! host build's guest assets, side by side with a reference kernel built from the same
//! 6.12 tree with Firecracker's CI guest config (`scripts/build-reference-kernel`).
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
use supermachine_e2e::qemu::{Accel, Vm, VmConfig};

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
}

const USAGE: &str =
    "usage: supermachine-bench [--arch x86_64|aarch64|all] [--boots N] [--execs N] [--stream-mib N]

Boots the host build's kernels (and the reference kernels under out/reference/, if built)
under QEMU and prints boot time to agent-ready, exec round trip, stdout throughput and
sizes. Defaults: every arch with a host build in out/, 3 boots, 200 execs, 64 MiB.";

fn parse_options() -> Result<Options, String> {
    let mut arches = None;
    let mut boots = 3;
    let mut execs = 200;
    let mut stream_mib = 64;
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

fn reference_kernel(arch: Arch) -> PathBuf {
    out_dir()
        .join("reference")
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
    config
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
    let uptime = text(&["cat", "/proc/uptime"]);
    let guest = uptime
        .split_whitespace()
        .next()
        .and_then(|s| s.parse::<f64>().ok())
        .map(Duration::from_secs_f64)
        .unwrap_or_else(|| panic!("cannot read the guest uptime: {uptime}"));
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
    let reference = reference_kernel(arch);
    if reference.exists() {
        // Firecracker's x86_64 config has no VIRTIO_MMIO_CMDLINE_DEVICES: it finds the
        // virtio-mmio devices in ACPI tables, so QEMU must provide them.
        kernels.push(("reference", reference, arch == Arch::X86_64));
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
        "{:<10} {:<18} {:<32} {:>10} {:>10} {:>10} {:>12}",
        "kernel", "machine", "release", "min ms", "median ms", "max ms", "host wall s"
    );
    for row in &rows {
        let mut guest = row.guest.clone();
        guest.sort();
        let mut wall = row.wall.clone();
        wall.sort();
        println!(
            "{:<10} {:<18} {:<32} {:>10.1} {:>10.1} {:>10.1} {:>12.1}",
            row.label,
            row.machine,
            row.release,
            ms(guest[0]),
            ms(median(&guest)),
            ms(guest[guest.len() - 1]),
            median(&wall).as_secs_f64()
        );
    }
    match rows.as_slice() {
        [ours, reference] => println!(
            "ratio ours/reference (guest median): {:.2}",
            median_sorted(&ours.guest).as_secs_f64()
                / median_sorted(&reference.guest).as_secs_f64()
        ),
        _ => println!(
            "reference kernel not built: run scripts/build-reference-kernel {}",
            arch.name()
        ),
    }
    if arch == Arch::X86_64 && rows.len() == 2 {
        println!("note: the reference boots with ACPI (QEMU microvm acpi=on): its config finds virtio-mmio devices in ACPI, not on the command line; ours boots with acpi=off.");
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ---------------------------------------------------------------- exec and throughput

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

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
    // Warm up the page cache and the agent's first-use paths.
    for _ in 0..10 {
        run_true();
    }
    let mut samples: Vec<Duration> = (0..execs).map(|_| run_true()).collect();
    samples.sort();
    println!(
        "exec `true` round trip, {execs} (one connection each, through the bridge): p50 {:.2} ms, p99 {:.2} ms (min {:.2}, max {:.2})",
        ms(percentile(&samples, 50.0)),
        ms(percentile(&samples, 99.0)),
        ms(samples[0]),
        ms(samples[samples.len() - 1])
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

// ---------------------------------------------------------------- sizes

fn size(path: &Path) -> Option<u64> {
    fs::metadata(path).ok().map(|m| m.len())
}

/// Size after `xz -9` (what a crate bundling the file would carry).
fn xz9_size(path: &Path) -> Option<u64> {
    let out = HostCommand::new("xz")
        .args(["-9", "-T1", "-c"])
        .arg(path)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status.success().then_some(out.stdout.len() as u64)
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
    for &arch in arches {
        let a = arch.name();
        let image = arch.kernel_image();
        let ours = row(
            format!("{a} kernel {image} (ours)"),
            &our_kernel(arch),
            true,
        );
        let reference = row(
            format!("{a} kernel {image} (reference, Firecracker CI config)"),
            &reference_kernel(arch),
            true,
        );
        row(
            format!("{a} initramfs.cpio.gz"),
            &out_dir().join(a).join("initramfs.cpio.gz"),
            false,
        );
        if let (Some((o, ox)), Some((r, rx))) = (ours, reference) {
            let xz = match (ox, rx) {
                (Some(ox), Some(rx)) => format!(", {:.2} after xz -9", ox as f64 / rx as f64),
                _ => String::new(),
            };
            ratios.push(format!(
                "{a} {image} ours/reference: {:.2} raw{xz}",
                o as f64 / r as f64
            ));
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
}
