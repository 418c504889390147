//! Frames the server sends.

use serde::Serialize;
use serde_json::Value;

use super::{ErrorCode, Ref};

/// A chat message as clients see it.
#[derive(Debug, Serialize)]
pub struct WireMessage<'a> {
    pub room: &'a str,
    /// `null` for a `fast` message seen live; it has one once stored.
    pub seq: Option<u64>,
    /// Unique per message: tells a `fast` message seen live from its stored
    /// copy in history.
    pub id: &'a str,
    pub from: &'a str,
    pub avatar: Option<&'a str>,
    /// What it says now; absent once deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<&'a str>,
    /// RFC 3339, UTC, millisecond precision.
    pub ts: String,
    /// Only on a direct message read from the store (history, a replay)
    /// that has reached its recipient.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub delivered: bool,
    /// When its text was last edited (RFC 3339); only on a message read
    /// from the store (history, a replay) that was edited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edited: Option<String>,
    /// Taken back by its author or an operator: it keeps its place, its
    /// text is gone.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// Frames the server sends.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    /// A new message in a joined room, or a direct message (room `@a:b`).
    /// The sender receives its own messages too.
    Message(WireMessage<'a>),
    /// Message `id` of `room` says `text` now: an edit, stored as `seq`.
    Edit {
        room: &'a str,
        seq: u64,
        id: &'a str,
        /// Who edited it (its author).
        from: &'a str,
        text: &'a str,
        /// When (RFC 3339): the message's `edited` from now on.
        ts: String,
    },
    /// Message `id` of `room` was taken back (by `from`, its author or an
    /// operator), stored as `seq`: show it deleted, without its text.
    Delete {
        room: &'a str,
        seq: u64,
        id: &'a str,
        from: &'a str,
        ts: String,
    },
    /// `ref`'s message (or edit, or delete) is stored as `seq` of `room`.
    Ack {
        #[serde(rename = "ref")]
        reference: Option<&'a Ref>,
        room: &'a str,
        seq: u64,
    },
    /// Answer to `join`: the latest messages (oldest first), who is online,
    /// and how far members have read (furthest first).
    Joined {
        room: &'a str,
        /// Where the room's stream stands for this member: every event up
        /// to it is in `history` (or shown in its messages); what comes
        /// live is after it. A page's newest message may be older, when
        /// edits and deletes came last.
        seq: u64,
        history: Vec<WireMessage<'a>>,
        online: &'a [String],
        read: Vec<ReadPosition<'a>>,
        /// Only in answer to `resume`: `true` when `history` holds every
        /// message after the client's `seq`, `false` when it does not (more
        /// were missed than a replay carries, or the store was unavailable):
        /// page back with `history` to fill the hole.
        #[serde(skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
        /// Only in answer to `resume`: the edits and deletes after the
        /// client's `seq` (as `edit` and `delete` frames, oldest first),
        /// for messages it has; `history` shows its messages as they are
        /// now.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        changes: Vec<ServerFrame<'a>>,
    },
    /// `user` has read `room` up to `seq`.
    Read {
        room: &'a str,
        user: &'a str,
        seq: u64,
    },
    /// The direct message acked as `seq` of `room` under `ref` reached a
    /// connection of `to` (sent to every connection of the sender).
    Delivered {
        #[serde(rename = "ref")]
        reference: &'a Value,
        to: &'a str,
        room: &'a str,
        seq: u64,
    },
    /// After connecting: `count` direct messages reached none of this
    /// user's connections while they were away; `fetch_missed` gets them.
    Pending { count: u64 },
    /// Ends a `fetch_missed` answer; `left` more wait (fetch again until 0).
    FetchMissedComplete { left: u64 },
    /// For admin users: a connection opened on replica `node`.
    UserConnected { user: &'a str, node: &'a str },
    /// For admin users: a connection closed on replica `node`.
    UserDisconnected { user: &'a str, node: &'a str },
    /// The room's online users changed.
    Presence { room: &'a str, online: &'a [String] },
    /// Another member started or stopped typing.
    Typing {
        room: &'a str,
        user: &'a str,
        active: bool,
    },
    /// Answer to `history`, oldest first; empty when there is nothing older.
    History {
        room: &'a str,
        messages: Vec<WireMessage<'a>>,
    },
    /// This replica is shutting down: finish what is in flight (wait for
    /// the acks), then reconnect, which lands on another replica, and
    /// `resume`. The server closes the connection (code 1012) if the client
    /// has not within half its shutdown timeout.
    Reconnect,
    /// Answer to `ping`, after everything sent before it.
    Pong,
    /// A refused frame; `ref` is the refused frame's, when it had one.
    Error {
        code: ErrorCode,
        message: &'a str,
        #[serde(rename = "ref")]
        reference: Option<&'a Ref>,
    },
}

/// How far one member has read a room.
#[derive(Debug, Serialize)]
pub struct ReadPosition<'a> {
    pub user: &'a str,
    pub seq: u64,
}

impl ServerFrame<'_> {
    /// Serializes the frame once, into a buffer that can be shared by every
    /// recipient without copying.
    pub fn encode(&self) -> bytestring::ByteString {
        // Serializing these types cannot fail: all keys are strings and
        // there are no non-finite floats.
        serde_json::to_string(self)
            .expect("server frames always serialize")
            .into()
    }
}

/// A time in milliseconds since the epoch as the wire shows it: RFC 3339,
/// UTC, milliseconds.
pub fn rfc3339(ts: i64) -> String {
    let nanos = i128::from(ts) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|at| {
            at.format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .ok()
        })
        .unwrap_or_default()
}
