//! Conformance of this repository's agent against the published supermachine client
//! (0.7.108), and differential testing against the published 0.7.70 agent. See README.md.

pub mod bridge;
pub mod cases;
pub mod frames;
pub mod sandbox;
