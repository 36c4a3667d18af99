//! The wire protocol between the supermachine in-guest agent and its host clients.
//!
//! One byte stream (vsock, or a Unix socket) carries frames both ways: a 12-byte header
//! (magic, type, flags, id, length) and a compact little-endian payload. The client
//! opens with [`Message::Hello`]; the agent answers with the negotiated version. Requests
//! carry a client-chosen id that the reply echoes; an [`Message::Exec`] id names a
//! session whose output, stdin credit and exit travel under the same id.
//!
//! The full description, with byte layouts and limits, is `docs/protocol.md`.
//!
//! ```
//! use supermachine_proto::{decode_frame, encode_frame, Message};
//!
//! let bytes = encode_frame(7, &Message::Ping { nonce: 42 }).unwrap();
//! let (frame, used) = decode_frame(&bytes).unwrap();
//! assert_eq!(used, bytes.len());
//! assert_eq!(frame.unwrap().message, Message::Ping { nonce: 42 });
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

mod codec;
mod frame;
mod message;

pub use codec::DecodeError;
pub use frame::{
    decode_frame, decode_payload, encode_frame, read_frame, skip_payload, write_frame, Frame,
    FrameError, FrameTooLarge, Header, HEADER_LEN, MAGIC,
};
pub use message::{
    kind, ErrorCode, ErrorReply, ExecRequest, ExitStatus, GuestInfo, Hello, HelloReply, Message,
    WindowSize,
};

/// The protocol version this crate speaks (the newest).
pub const PROTOCOL_VERSION: u16 = 1;
/// The oldest protocol version this crate still speaks.
pub const MIN_PROTOCOL_VERSION: u16 = 1;
/// The vsock port the agent listens on unless told otherwise.
pub const DEFAULT_VSOCK_PORT: u32 = 7100;
/// Largest payload of one frame, in bytes (the 12-byte header not counted).
pub const MAX_FRAME_SIZE: u32 = 256 * 1024;
/// Most sessions (running execs) one connection may have at once.
pub const MAX_SESSIONS: u32 = 128;
/// Most client connections the agent serves at once.
pub const MAX_CONNECTIONS: u32 = 16;
/// Stdin bytes a client may send to one session before the agent acknowledges them.
pub const STDIN_WINDOW: u32 = 64 * 1024;
/// Largest data chunk the agent puts in one stdout/stderr frame.
pub const MAX_DATA_CHUNK: u32 = 32 * 1024;

/// Picks the version both sides speak: the newest in `[min, max]` that this crate knows.
pub fn negotiate_version(min: u16, max: u16) -> Option<u16> {
    let top = max.min(PROTOCOL_VERSION);
    (top >= min && top >= MIN_PROTOCOL_VERSION).then_some(top)
}
