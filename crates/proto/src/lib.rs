//! The wire protocol between supermachine's host and its in-guest agent, as the
//! published `supermachine` crate speaks it (host side: its `exec.rs` and `api.rs`).
//!
//! One connection carries one exec session or one CONTROL call. Every frame is a 5-byte
//! header, `u8` kind and `u32` big-endian payload length, then the payload. The first
//! frame a client sends decides the mode: [`Kind::Request`] (JSON [`ExecRequest`]) or
//! [`Kind::Control`] (JSON [`Control`], answered by exactly one CONTROL frame).
//!
//! The full description, with the choices made where the host leaves one, is
//! `docs/protocol.md`.
//!
//! ```
//! use supermachine_proto::{write_frame, Decoder, Kind};
//!
//! let mut wire = Vec::new();
//! write_frame(&mut wire, Kind::Stdin as u8, b"hello").unwrap();
//! let mut dec = Decoder::new();
//! dec.push(&wire);
//! let frame = dec.next_frame().unwrap().unwrap();
//! assert_eq!((frame.kind, frame.payload.as_slice()), (0, &b"hello"[..]));
//! ```
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod frame;
mod message;

pub use frame::{encode_header, read_frame, write_frame, Decoder, Frame, FrameError, Kind};
pub use message::{
    b64_decode, b64_encode, control_err, control_ok, parse_control, parse_request, Control,
    ControlParseError, ExecRequest, Exit, ExitDecodeError, Resize, StageFile,
};

/// Bytes in a frame header: `u8` kind, then `u32` big-endian payload length.
pub const HEADER_LEN: usize = 5;
/// Largest payload accepted, as the host caps it (16 MiB).
pub const MAX_PAYLOAD: u32 = 16 << 20;
/// Protocol version answered by CONTROL `probe`; the host needs 5 or more.
pub const PROTOCOL_VERSION: u32 = 5;
/// Guest vsock port the agent listens on.
pub const AGENT_VSOCK_PORT: u32 = 1028;
/// Host vsock port init-oci fetches the environment from (aarch64).
pub const ENV_SERVICE_PORT: u32 = 1026;
/// The host's vsock CID; the agent accepts connections only from it.
pub const HOST_CID: u32 = 2;
/// Written by the agent once it listens.
pub const AGENT_READY_PATH: &str = "/run/supermachine-agent-ready";
/// Holds the workload's pid, written by the launcher; CONTROL `signal` targets it.
pub const WORKLOAD_PID_PATH: &str = "/run/supermachine-workload.pid";
