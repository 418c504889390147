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
pub mod wire;

use std::sync::atomic::{AtomicU64, Ordering};

use actix::prelude::*;
use bytestring::ByteString;

pub use crate::protocol::Evict;

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
pub struct Outgoing(pub ByteString);

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

/// Closing a connection for a reason the client acts on (the reasons are
/// the protocol's, [`Evict`]) is a message to its session.
impl Message for Evict {
    type Result = ();
}
