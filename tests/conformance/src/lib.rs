//! Conformance of this repository's agent against the published supermachine client
//! (0.7.108), and differential testing against the published 0.7.70 agent. See README.md.

pub mod cases;
pub mod frames;
pub mod sandbox;

// How the end-to-end tests boot a guest and offer guest port 1028 as supermachine's VMM
// does, compiled from their source (one copy of it) rather than depended on: the e2e
// crate brings our own client, which this harness must not lean on. Our proto is a
// dependency only for the port constant qemu.rs names.
#[path = "../../e2e/src/assets.rs"]
pub mod assets;
#[path = "../../e2e/src/bridge.rs"]
pub mod bridge;
#[path = "../../e2e/src/hvf.rs"]
pub mod hvf;
#[path = "../../e2e/src/latency.rs"]
pub mod latency;
#[path = "../../e2e/src/qemu.rs"]
pub mod qemu;
