//! `exec-bench`: exec round trip and stdout throughput of our agent in the host build's
//! guest, measured with supermachine 0.7.108's own client (`ExecBuilder`) through a Unix
//! socket bridged to guest vsock port 1028, which is how a supermachine user reaches the
//! agent. A benchmark: it prints figures and asserts nothing about them. `scripts/bench`
//! runs it (docs/benchmarks.md).
//!
//! usage: exec-bench [--arch x86_64|aarch64] [--execs N] [--stream-mib N]

use std::io::Read;
use std::time::{Duration, Instant};

use supermachine::wire::send_control_with_ack;
use supermachine::ExecBuilder;
use supermachine_conformance::assets::Arch;
use supermachine_conformance::latency::{samples, summary};
use supermachine_conformance::qemu::{Vm, VmConfig};

const READY: Duration = Duration::from_secs(300);
const PATIENCE: Duration = Duration::from_secs(300);

fn fail(msg: &str) -> ! {
    eprintln!("exec-bench: {msg}");
    std::process::exit(1)
}

fn main() {
    let mut arch = Arch::X86_64;
    let mut execs = 200usize;
    let mut stream_mib = 64u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| fail(&format!("{arg} needs a value")));
        let number = || -> u64 {
            value
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .unwrap_or_else(|| fail(&format!("{arg}: not a positive number: {value}")))
        };
        match arg.as_str() {
            "--arch" => {
                arch = match value.as_str() {
                    "x86_64" => Arch::X86_64,
                    "aarch64" => Arch::Aarch64,
                    other => fail(&format!("--arch: x86_64 or aarch64, not {other}")),
                }
            }
            "--execs" => execs = number() as usize,
            "--stream-mib" => stream_mib = number(),
            other => fail(&format!(
                "unknown option {other}; usage: exec-bench [--arch x86_64|aarch64] [--execs N] [--stream-mib N]"
            )),
        }
    }

    let config = VmConfig::agent_guest(arch);
    let vm = Vm::start(&config);
    let socket = vm.agent_uds();
    let deadline = Instant::now() + READY;
    let probe = serde_json::json!({"action": "probe"});
    while let Err(e) = send_control_with_ack(&socket, &probe, Some(Duration::from_secs(5))) {
        if Instant::now() > deadline {
            fail(&format!(
                "no probe answer within {READY:?}: {e}\n--- console ---\n{}",
                vm.console()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let run_true = || {
        let start = Instant::now();
        let out = ExecBuilder::new(socket.clone())
            .argv(["true"])
            .timeout(PATIENCE)
            .output()
            .unwrap_or_else(|e| fail(&format!("exec true: {e}")));
        if out.status.code() != Some(0) {
            fail(&format!("`true` exited {:?}", out.status));
        }
        start.elapsed()
    };
    let samples = samples(execs, run_true);
    println!(
        "{} exec `true` round trip, supermachine 0.7.108 client ({execs} execs, {} vCPU, {:?}): {}",
        arch.name(),
        config.cpus,
        config.accel,
        summary(&samples)
    );

    let bytes = stream_mib << 20;
    let start = Instant::now();
    let mut child = ExecBuilder::new(socket.clone())
        // busybox head takes no size suffix: the count in bytes.
        .argv(["head", "-c", &bytes.to_string(), "/dev/zero"])
        .timeout(PATIENCE)
        .spawn()
        .unwrap_or_else(|e| fail(&format!("spawn head: {e}")));
    let mut stdout = child.stdout().unwrap_or_else(|| fail("no stdout of head"));
    let mut buf = vec![0u8; 1 << 16];
    let mut received = 0u64;
    loop {
        match stdout.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received += n as u64,
            Err(e) => fail(&format!("reading head's stdout: {e}")),
        }
    }
    let status = child
        .wait()
        .unwrap_or_else(|e| fail(&format!("waiting for head: {e}")));
    let elapsed = start.elapsed();
    if status.code() != Some(0) || received != bytes {
        fail(&format!(
            "head -c {bytes} /dev/zero: got {received} bytes, exit {status:?}"
        ));
    }
    println!(
        "{} stdout throughput, supermachine 0.7.108 client, head -c {bytes} /dev/zero ({stream_mib} MiB): {:.1} MiB/s ({:.2} s)",
        arch.name(),
        stream_mib as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
}
