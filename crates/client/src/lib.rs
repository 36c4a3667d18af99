//! Host-side client of the supermachine in-guest agent, speaking supermachine's own
//! protocol ([`supermachine_proto`]): one connection per exec session or CONTROL call.
//!
//! The agent is reached through a Unix socket already bridged to guest port 1028, as
//! supermachine's VMM offers it ([`Endpoint::Bridged`]), or through the hybrid-vsock
//! socket of Firecracker / vhost-device-vsock ([`Endpoint::HybridVsock`],
//! `CONNECT 1028`).
//!
//! ```no_run
//! use supermachine_client::{Client, Command, Endpoint, Output};
//!
//! # fn main() -> Result<(), supermachine_client::Error> {
//! let client = Client::new(Endpoint::hybrid_vsock("/run/vm/vsock.sock"));
//! client.probe()?;
//! let mut cat = client.spawn(&Command::new("cat"))?;
//! cat.write_stdin(b"hello\n")?;
//! cat.close_stdin()?;
//! while let Some(event) = cat.next_output()? {
//!     match event {
//!         Output::Stdout(data) => print!("{}", String::from_utf8_lossy(&data)),
//!         Output::Stderr(data) => eprint!("{}", String::from_utf8_lossy(&data)),
//!         Output::Exit(status) => println!("exit code {}", status.code),
//!     }
//! }
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod client;
mod error;
mod exec;
mod transport;

pub use client::{Client, Reply, FILE_CHUNK};
pub use error::{Error, Result};
pub use exec::{feed_stdin, Command, ExecOutput, ExitStatus, Output, Process, ProcessControl};
pub use supermachine_proto::AGENT_VSOCK_PORT;
pub use transport::Endpoint;

/// The oldest agent protocol this client (like supermachine's host) works with.
pub const MIN_PROTOCOL: u32 = 5;
