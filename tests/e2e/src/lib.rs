//! The end-to-end harness: real kernels from the host build booted in real QEMU, with
//! the agent reached over real virtio-vsock through vhost-device-vsock, directly
//! (hybrid `CONNECT 1028`) and through a bridge that offers port 1028 as supermachine's
//! VMM does.
//!
//! Tests find the host build's output in `$SUPERMACHINE_OUT` (default: the workspace's
//! `out/`). A missing asset fails the test with the command that builds it: these tests
//! never pass by skipping.

pub mod agent;
pub mod assets;
pub mod bridge;
pub mod hvf;
pub mod latency;
pub mod qemu;
pub mod workload;

pub use agent::{boot_agent, client, power_off, sh, sh_stdout, Via};
pub use assets::{asset, workspace_root, Arch};
pub use qemu::{Accel, Vm, VmConfig};
