//! Host-side client of the supermachine in-guest agent.
//!
//! Connects through a VMM's hybrid-vsock Unix socket ([`Client::connect_hybrid_vsock`],
//! [`Client::wait_ready`]) or a plain Unix socket ([`Client::connect_unix`]), and
//! speaks the protocol of [`supermachine_proto`]: run processes ([`Client::exec`],
//! [`Client::spawn`] for streaming), query and control the guest.
//!
//! ```no_run
//! use supermachine_client::{Client, Command, Output};
//!
//! # fn main() -> Result<(), supermachine_client::Error> {
//! let client = Client::connect_unix("/tmp/agent.sock")?;
//! let mut cat = client.spawn(&Command::new("cat"))?;
//! cat.write_stdin(b"hello\n")?;
//! cat.close_stdin()?;
//! while let Some(event) = cat.next_output()? {
//!     match event {
//!         Output::Stdout(data) => print!("{}", String::from_utf8_lossy(&data)),
//!         Output::Stderr(data) => eprint!("{}", String::from_utf8_lossy(&data)),
//!         Output::Exit(status) => println!("exit: {status:?}"),
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
mod process;
mod transport;

pub use client::Client;
pub use error::{Error, Result};
pub use process::{Command, ExecOutput, Output, Process, ProcessControl, StdinWriter};
pub use supermachine_proto::{ErrorCode, ErrorReply, ExitStatus, GuestInfo, HelloReply};
pub use transport::Endpoint;

/// The agent's default vsock port.
pub const DEFAULT_PORT: u32 = supermachine_proto::DEFAULT_VSOCK_PORT;
