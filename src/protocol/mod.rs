//! The wire protocol: JSON text frames over one WebSocket, tagged by `type`.
//!
//! This module is the reference; `docs/PROTOCOL.md` explains it with examples.
//! Clients send [`ClientFrame`]s and receive [`ServerFrame`]s. Every frame is
//! one JSON object whose `type` field names the variant (snake_case); unknown
//! extra fields are ignored so clients can be newer than the server.
//!
//! Rules a client can rely on:
//! - Within a room, `seq` starts at 1 and grows by exactly one per event (a
//!   message, an edit, a delete), so a client can tell a gap from a
//!   duplicate.
//! - An `ack` is sent only after the message is durably stored. A message
//!   that could not be stored gets an `error` with the same `ref` instead,
//!   never both.
//! - Bad input yields an `error` frame and the connection stays open, except
//!   a frame over [`MAX_FRAME_BYTES`], which is closed with code 1009.
//!
//! The protocol depends on nothing else in the crate: [`client`] holds
//! what clients send and how it is checked, [`server`] what they receive,
//! [`errors`] why a frame is refused, [`json`] the bounded JSON reader
//! every client frame goes through, and `fields` the one-pass reader of
//! the frames clients send most.

pub mod client;
pub mod errors;
mod fields;
pub mod json;
pub mod server;
#[cfg(test)]
mod tests;

pub use client::{
    check_text, parse, peek_reference, visible_text_pattern, ClientFrame, Delivery, MessageOptions,
    Ref, FRAME_KINDS, MAX_ID_BYTES, MAX_REF_BYTES,
};
pub use errors::{ErrorCode, Evict, Rejected};
pub use server::{rfc3339, ReadPosition, ServerFrame, WireMessage};

/// Largest accepted WebSocket frame; larger ones close the connection (1009).
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Longest message text, in characters (Unicode scalar values).
pub const MAX_TEXT_CHARS: usize = 4000;
/// Most messages one `history` request returns.
pub const MAX_HISTORY_LIMIT: u32 = 100;
/// Messages returned with `joined` and by `history` without a `limit`.
pub const DEFAULT_HISTORY_LIMIT: u32 = 50;

/// Most recipients of one `group` message.
pub const MAX_GROUP_RECIPIENTS: usize = 50;
/// Most undelivered messages one `fetch_missed` returns.
pub const MAX_FETCH_MISSED: u32 = 100;
