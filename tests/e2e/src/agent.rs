//! Reaching a booted guest's agent, shared by the tests that drive one.

use std::time::Duration;

use supermachine_client::{Client, Command, ExecOutput, ExitStatus};
use supermachine_proto::DEFAULT_VSOCK_PORT;

use crate::qemu::{Vm, VmConfig};

/// Boots `config` and connects to its agent, waiting up to `ready` for it; each request
/// then times out after `request`. Fails the test with the console if the agent is silent.
pub fn boot_agent(config: &VmConfig, ready: Duration, request: Duration) -> (Vm, Client) {
    let vm = Vm::start(config);
    match Client::wait_ready(vm.vsock_uds(), DEFAULT_VSOCK_PORT, ready) {
        Ok(client) => {
            client.set_timeout(Some(request));
            (vm, client)
        }
        Err(e) => panic!(
            "the agent did not answer on vsock port {DEFAULT_VSOCK_PORT} within {ready:?}: \
             {e}\n--- console ---\n{}\n--- qemu ---\n{}",
            vm.console(),
            vm.qemu_log()
        ),
    }
}

/// Runs `script` with the guest's `/bin/sh`; fails the test if it cannot be started.
pub fn sh(client: &Client, script: &str) -> ExecOutput {
    client
        .exec(Command::new("/bin/sh").args(["-c", script]))
        .unwrap_or_else(|e| panic!("exec of {script:?} failed: {e}"))
}

/// Runs `script` with the guest's `/bin/sh`, asserts it exits 0 and returns its stdout.
pub fn sh_stdout(client: &Client, script: &str) -> String {
    let out = sh(client, script);
    assert_eq!(
        out.status,
        ExitStatus::Code(0),
        "{script:?}: stderr {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}
