//! Mode (b): our agent in the host build's guest (started as supermachine's VMM starts it), booted in QEMU,
//! reached through a Unix socket bridged to guest vsock port 1028 (what the VMM gives
//! the client), driven by the real client. One guest per arch, all cases in it.

use std::time::{Duration, Instant};

use supermachine_conformance::assets::Arch;
use supermachine_conformance::cases::{run_cases, Target, CASES};
use supermachine_conformance::qemu::{Vm, VmConfig};

fn conformance_in_qemu(arch: Arch) {
    let vm = Vm::start(&VmConfig::agent_guest(arch));
    let socket = vm.agent_uds();
    // The same readiness check the host makes after a boot: probe until it answers.
    let ready = Duration::from_secs(180);
    let deadline = Instant::now() + ready;
    let probe = serde_json::json!({"action": "probe"});
    while let Err(e) =
        supermachine::wire::send_control_with_ack(&socket, &probe, Some(Duration::from_secs(5)))
    {
        assert!(
            Instant::now() < deadline,
            "the agent did not answer a probe on port 1028 within {ready:?}: {e}\n\
             --- console ---\n{}\n--- qemu ---\n{}",
            vm.console(),
            vm.qemu_log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let target = Target {
        socket: socket.clone(),
        scratch: "/run/conformance".into(),
        privileged: true,
        patience: Duration::from_secs(60),
    };
    let failed = run_cases(&target, arch.name());
    assert!(
        failed.is_empty(),
        "{}: {} of {} cases failed: {failed:?}\n--- console ---\n{}",
        arch.name(),
        failed.len(),
        CASES.len(),
        vm.console()
    );
}

#[test]
fn real_client_against_our_agent_in_qemu_x86_64() {
    conformance_in_qemu(Arch::X86_64);
}

#[test]
fn real_client_against_our_agent_in_qemu_aarch64() {
    conformance_in_qemu(Arch::Aarch64);
}
