//! Rooms and the registry that finds them.
//!
//! Data flows one way: a session actor posts to a [`room::Room`], the room
//! stores the message (the store hands out its `seq`), then fans the frame
//! out to its local members and to the cluster adapter. The
//! [`registry::Registry`] decides membership: it starts a room on first
//! join, stops it when its last member leaves, and adds every connection of
//! two users to their direct room, so a direct message reaches all their tabs.

pub mod names;
pub mod registry;
pub mod room;

use std::sync::atomic::{AtomicU64, Ordering};

use actix::prelude::*;
use bytestring::ByteString;

/// Identifies one WebSocket connection within this process.
pub type SessionId = u64;

/// Hands out process-unique session ids.
pub fn next_session_id() -> SessionId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// An encoded server frame for one connection. Rooms encode a frame once and
/// share the buffer among all recipients.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct Deliver(pub ByteString);

/// The replica is draining: tell the client to move to another replica, and
/// close the connection after `close_after` if it has not left by then.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "()")]
pub struct Drain {
    pub close_after: std::time::Duration,
}

/// The user's profile photo changed; later messages from this connection carry it.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct SetAvatar(pub Option<String>);

/// Closes a connection with close code 1008 and a reason the client acts
/// on instead of reconnecting as usual.
#[derive(Message, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[rtype(result = "()")]
#[serde(rename_all = "snake_case")]
pub enum Evict {
    /// The validity webhook reported the user invalid, or a backend
    /// revoked them (`/api/v1`): do not reconnect.
    Revoked,
    /// A backend disconnected the user: reconnecting is allowed (after a
    /// pause; a backend may refuse reconnects for a while).
    Disconnected,
    /// `SINGLE_SESSION`: the user connected elsewhere.
    Replaced,
    /// The login this connection was opened with logged out (on any
    /// replica): do not reconnect, log in again.
    LoggedOut,
}

impl Evict {
    /// The close reason on the wire.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Revoked => "revoked",
            Self::Disconnected => "disconnected",
            Self::Replaced => "replaced",
            Self::LoggedOut => "logged_out",
        }
    }
}
