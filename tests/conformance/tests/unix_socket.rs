//! Mode (a): our agent in its Unix-socket mode (`SUPERMACHINE_AGENT_UNIX_SOCKET`), run in
//! a sandbox on the host, driven by the real client. No QEMU.

use std::time::Duration;

use supermachine_conformance::cases::{run_all, Target};
use supermachine_conformance::sandbox::{our_agent, UnixAgent, WORK};

#[test]
fn real_client_against_our_agent_over_a_unix_socket() {
    let work = tempfile::tempdir().unwrap();
    let agent = UnixAgent::start(&our_agent(), work.path());
    let target = Target {
        socket: agent.socket().to_path_buf(),
        scratch: format!("{WORK}/scratch"),
        privileged: false,
        patience: Duration::from_secs(20),
    };
    run_all(&target, "unix-socket");
}
