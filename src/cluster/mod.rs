//! The seam between one replica and the rest of the cluster.
//!
//! A room actor hands every event its local members saw to a
//! [`ClusterAdapter`]; an adapter for a broker forwards it to the replicas
//! that have members in that room. [`LocalOnly`] is the single-replica
//! adapter: there is nobody to tell, so it drops everything.
//!
//! The room calls the adapter without waiting on it: a slow or dead broker
//! must never stall local delivery.

use crate::store::StoredMessage;

/// What a room tells the other replicas.
#[derive(Clone, Debug)]
pub enum ClusterEvent {
    /// A message was stored and delivered to this replica's members.
    Message(StoredMessage),
    Typing {
        room: String,
        user: String,
        active: bool,
    },
    /// The set of users of `room` connected to this replica changed.
    Presence { room: String, online: Vec<String> },
}

pub trait ClusterAdapter: Send + Sync + 'static {
    /// This replica has local members in `room`: start receiving its traffic.
    fn room_opened(&self, room: &str);
    /// No local member is left in `room`: stop receiving its traffic.
    fn room_closed(&self, room: &str);
    /// Fire and forget: hand an event to the other replicas.
    fn publish(&self, event: ClusterEvent);
}

/// The adapter of a single replica.
pub struct LocalOnly;

impl ClusterAdapter for LocalOnly {
    fn room_opened(&self, _room: &str) {}
    fn room_closed(&self, _room: &str) {}
    fn publish(&self, _event: ClusterEvent) {}
}
