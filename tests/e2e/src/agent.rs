//! Reaching a booted guest's agent, shared by the tests that drive one.

use std::time::Duration;

use supermachine_client::{Client, Command, Endpoint, ExecOutput};

use crate::qemu::{Vm, VmConfig};

/// How a test reaches the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The bridged socket, as supermachine's VMM offers port 1028.
    Bridge,
    /// vhost-device-vsock's hybrid socket with `CONNECT 1028`.
    Hybrid,
}

/// A client of `vm`'s agent through `via`, each call bounded by `request`.
pub fn client(vm: &Vm, via: Via, request: Duration) -> Client {
    let endpoint = match via {
        Via::Bridge => Endpoint::bridged(vm.agent_uds()),
        Via::Hybrid => Endpoint::hybrid_vsock(vm.vsock_uds()),
    };
    let mut client = Client::new(endpoint);
    client.set_timeout(Some(request));
    client
}

/// Boots `config` and waits up to `ready` for its agent to answer probe through the
/// bridge; each request then times out after `request`. Fails the test with the
/// console if the agent stays silent.
pub fn boot_agent(config: &VmConfig, ready: Duration, request: Duration) -> (Vm, Client) {
    let vm = Vm::start(config);
    let client = client(&vm, Via::Bridge, request);
    if let Err(e) = client.wait_ready(ready) {
        panic!(
            "the agent did not answer on vsock port {} within {ready:?}: {e}\n--- console ---\n{}\n--- qemu ---\n{}",
            supermachine_client::AGENT_VSOCK_PORT,
            vm.console(),
            vm.qemu_log()
        );
    }
    (vm, client)
}

/// Runs `script` with the guest's `/bin/sh`; fails the test if it cannot be started.
pub fn sh(client: &Client, script: &str) -> ExecOutput {
    client
        .exec(&Command::from_argv(["/bin/sh", "-c", script]))
        .unwrap_or_else(|e| panic!("exec of {script:?} failed: {e}"))
}

/// Runs `script` with the guest's `/bin/sh`, asserts it exits 0 and returns its stdout.
pub fn sh_stdout(client: &Client, script: &str) -> String {
    let out = sh(client, script);
    assert_eq!(
        out.status.code,
        0,
        "{script:?}: stderr {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Ends the guest the way a clean shutdown does: CONTROL sync, then `reboot -f` (with
/// `reboot=t` and QEMU's `-no-reboot` that ends the VM). Fails the test if QEMU stays.
pub fn power_off(mut vm: Vm, client: &Client) {
    client.sync().expect("CONTROL sync");
    // The connection dies with the VM, so no EXIT is awaited.
    let process = client
        .spawn(&Command::from_argv([
            "/bin/sh",
            "-c",
            "/.supermachine/busybox reboot -f || reboot -f",
        ]))
        .expect("start reboot -f");
    let _ = process.close_stdin();
    assert!(
        vm.wait_exit(Duration::from_secs(60)).is_some(),
        "the VM did not end after reboot -f\n{}",
        vm.console()
    );
}
