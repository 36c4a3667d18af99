//! Conformance of this repository's agent against the published supermachine client
//! (0.7.108), and differential testing against the published 0.7.70 agent. See README.md.

pub mod bridge;
pub mod cases;
pub mod frames;
pub mod sandbox;

// How the end-to-end tests boot a guest, compiled from their source (one copy of it)
// rather than depended on: the e2e crate brings our own client and proto, which this
// harness must not lean on, and whose changes would churn this lock file.
#[path = "../../e2e/src/assets.rs"]
pub mod assets;
#[path = "../../e2e/src/qemu.rs"]
pub mod qemu;
