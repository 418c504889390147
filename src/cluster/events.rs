//! What replicas tell each other, and the channels it travels on.

use serde::{Deserialize, Serialize};

use crate::store::{Delivery, Millis, StoredMessage};

/// What a room tells the other replicas.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ClusterEvent {
    /// Messages were stored, in `seq` order.
    Messages {
        room: String,
        messages: Vec<StoredMessage>,
    },
    Typing {
        room: String,
        user: String,
        active: bool,
    },
    /// The users of `room` connected to the sending replica (empty: none
    /// any more). Repeated as a heartbeat; with `reply`, replicas that have
    /// the room answer with their own, so a new room learns who is online.
    Presence {
        room: String,
        users: Vec<String>,
        reply: bool,
    },
    /// A `fast` message, fanned out before it is stored.
    Fast {
        room: String,
        message: StoredMessage,
    },
    /// `user` read `room` up to `seq`.
    Read {
        room: String,
        user: String,
        seq: u64,
    },
    /// Direct messages of `room` reached their recipient; their senders
    /// asked to be told.
    Delivered {
        room: String,
        deliveries: Vec<Delivery>,
    },
    /// `SINGLE_SESSION`: `user` opened a connection at `at`; their older
    /// connections elsewhere close.
    SessionOpened { user: String, at: Millis },
    /// The login `login` of `user` logged out: its connections close.
    LoginEnded { user: String, login: String },
    /// For admin users, on [`ADMIN_CHANNEL`]: a connection of `user` opened
    /// or closed on the sending replica.
    UserActivity { user: String, connected: bool },
    /// A backend asks for `user`'s connections, on the user's channel (so
    /// only replicas with one hear it); they answer on the asker's
    /// [`node_channel`] with [`ClusterEvent::Connections`].
    ConnectionsAsked { user: String, query: u64 },
    Connections {
        query: u64,
        connections: Vec<Connection>,
    },
    /// A backend closed `user`'s connections, on [`REPLICAS_CHANNEL`]:
    /// every replica closes its own and refuses new ones until `until`.
    UserDisconnected {
        user: String,
        reason: crate::protocol::Evict,
        until: Millis,
    },
}

impl ClusterEvent {
    /// The room the event is for; `None` for events about users.
    pub fn room(&self) -> Option<&str> {
        match self {
            Self::Messages { room, .. }
            | Self::Typing { room, .. }
            | Self::Presence { room, .. }
            | Self::Fast { room, .. }
            | Self::Read { room, .. }
            | Self::Delivered { room, .. } => Some(room),
            Self::SessionOpened { .. }
            | Self::LoginEnded { .. }
            | Self::UserActivity { .. }
            | Self::ConnectionsAsked { .. }
            | Self::Connections { .. }
            | Self::UserDisconnected { .. } => None,
        }
    }
}

/// Where connection activity for admin users travels; subscribed while the
/// replica has an admin connected.
pub const ADMIN_CHANNEL: &str = "rookery.admin";

/// An event as it travels: who sent it, and what.
#[derive(Serialize, Deserialize)]
pub(super) struct Envelope {
    pub(super) node: String,
    pub(super) event: ClusterEvent,
}

/// One open connection of a user, as a replica reports it to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// The replica holding it.
    pub node: String,
    pub connected_at: Millis,
    /// The rooms it is a member of, sorted.
    pub rooms: Vec<String>,
}

/// What every replica holds: events for the whole cluster.
pub const REPLICAS_CHANNEL: &str = "rookery.replicas";

/// One replica's own channel: answers to its questions.
pub fn node_channel(node: &str) -> String {
    format!("rookery.node.{node}")
}

pub fn room_channel(room: &str) -> String {
    format!("rookery.room.{room}")
}

pub fn user_channel(user: &str) -> String {
    format!("rookery.user.{user}")
}
