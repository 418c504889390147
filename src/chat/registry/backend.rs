//! What a backend asks of the registry through `/api/v1`: posting without
//! a connection, a room's presence, a user's connections on every replica,
//! and closing them.
//!
//! A room a backend posts to or watches runs here even with no member
//! here, for [`ROOM_LINGER`] after its last use: it is what gives the post
//! its `seq`, fans it out to local members and publishes it, exactly as
//! for a member's post, and what hears the other replicas' presence.

use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::{Registry, SessionEntry};
use crate::chat::room::{self, Room};
use crate::chat::Evict;
use crate::cluster::{node_channel, user_channel, Control, REPLICAS_CHANNEL};
use crate::store::{now_millis, Millis};

/// How long a room started for a backend stays after its last use with no
/// member here: repeated publishes and presence reads reuse it instead of
/// subscribing anew each time.
pub const ROOM_LINGER: Duration = Duration::from_secs(60);
/// How often lingering rooms are looked at.
pub(super) const SWEEP: Duration = Duration::from_secs(10);
/// How long a question to the other replicas waits for their answers: a
/// replica that has not answered by then (or has no broker link) is left
/// out of the answer.
pub const QUERY_WAIT: Duration = Duration::from_millis(300);
/// Questions waiting at once, at most; past it the oldest is answered with
/// what it has.
const MAX_QUERIES: usize = 1024;
/// Rooms kept for backends at once, at most (each holds a broker
/// subscription); past it the least recently used one goes.
const MAX_WATCHED: usize = 1024;

/// A backend posts to `room`: the registry starts it if needed and hands
/// it `post` (whose `session` is `None`). The sender and the room were
/// checked by the caller.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish {
    pub room: String,
    pub post: room::Post,
}

/// The room, running here, to read its presence; with `true` if it was
/// just started (the other replicas' presence is then on its way).
#[derive(Message)]
#[rtype(result = "(Addr<Room>, bool)")]
pub struct Watch {
    pub room: String,
}

/// `user`'s connections on every replica, answered after [`QUERY_WAIT`]
/// (at once without a cluster).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AskConnections {
    pub user: String,
    pub answer: oneshot::Sender<Vec<Connection>>,
}

pub use crate::cluster::Connection;

/// Closes `user`'s connections on every replica with `reason`, and refuses
/// their new ones for `refuse_for` (zero: none refused).
#[derive(Message)]
#[rtype(result = "()")]
pub struct DisconnectUser {
    pub user: String,
    pub reason: Evict,
    pub refuse_for: Duration,
}

/// A question to the other replicas, collecting answers.
pub(super) struct Query {
    connections: Vec<Connection>,
    answer: oneshot::Sender<Vec<Connection>>,
}

impl Registry {
    /// The running room, started if needed, kept for [`ROOM_LINGER`].
    fn watch(&mut self, room: &str) -> (Addr<Room>, bool) {
        if !self.watched.contains_key(room) && self.watched.len() >= MAX_WATCHED {
            let oldest = self
                .watched
                .iter()
                .min_by_key(|(_, used)| **used)
                .map(|(room, _)| room.clone());
            if let Some(oldest) = oldest {
                self.unwatch(&oldest);
            }
        }
        let fresh = !self.rooms.contains_key(room);
        let addr = self.ensure_room(room);
        self.watched.insert(room.to_owned(), Instant::now());
        (addr, fresh)
    }

    /// No backend keeps `room` any more: it goes if nobody here is in it.
    pub(super) fn unwatch(&mut self, room: &str) {
        self.watched.remove(room);
        if self
            .rooms
            .get(room)
            .is_some_and(|entry| entry.members.is_empty())
        {
            self.retire(room);
        }
    }

    /// Retires the rooms no backend used for [`ROOM_LINGER`] that have no
    /// member here.
    pub(super) fn sweep_watched(&mut self) {
        let stale: Vec<String> = self
            .watched
            .iter()
            .filter(|(_, used)| used.elapsed() >= ROOM_LINGER)
            .map(|(room, _)| room.clone())
            .collect();
        for room in stale {
            self.unwatch(&room);
        }
    }

    fn local_connections(&self, user: &str) -> Vec<Connection> {
        let mut connections: Vec<Connection> = self
            .users
            .get(user)
            .into_iter()
            .flatten()
            .filter_map(|session| self.sessions.get(session))
            .map(|entry: &SessionEntry| {
                let mut rooms: Vec<String> = entry.rooms.iter().cloned().collect();
                rooms.sort();
                Connection {
                    node: self.policies.node.clone(),
                    connected_at: entry.connected_at,
                    rooms,
                }
            })
            .collect();
        connections.sort_by_key(|c| c.connected_at);
        connections
    }

    /// Another replica asked for `user`'s connections: ours, to its channel.
    pub(super) fn answer_connections(&self, user: &str, query: u64, asker: &str) {
        let connections = self.local_connections(user);
        if connections.is_empty() {
            return;
        }
        self.cluster.publish(
            vec![node_channel(asker)],
            Control::Connections { query, connections },
        );
    }

    pub(super) fn collect_connections(&mut self, query: u64, connections: &[Connection]) {
        if let Some(waiting) = self.queries.get_mut(&query) {
            waiting.connections.extend_from_slice(connections);
        }
    }

    fn finish_query(&mut self, query: u64) {
        if let Some(mut done) = self.queries.remove(&query) {
            done.connections
                .sort_by(|a, b| (&a.node, a.connected_at).cmp(&(&b.node, b.connected_at)));
            let _ = done.answer.send(done.connections);
        }
    }
}

impl Handler<Publish> for Registry {
    type Result = ();

    fn handle(&mut self, publish: Publish, _ctx: &mut Self::Context) {
        let (addr, _) = self.watch(&publish.room);
        addr.do_send(publish.post);
    }
}

impl Handler<Watch> for Registry {
    type Result = MessageResult<Watch>;

    fn handle(&mut self, watch: Watch, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.watch(&watch.room))
    }
}

impl Handler<AskConnections> for Registry {
    type Result = ();

    fn handle(&mut self, ask: AskConnections, ctx: &mut Self::Context) {
        let connections = self.local_connections(&ask.user);
        if !self.cluster.is_clustered() {
            let _ = ask.answer.send(connections);
            return;
        }
        if self.queries.len() >= MAX_QUERIES {
            if let Some(&oldest) = self.queries.keys().min() {
                self.finish_query(oldest);
            }
        }
        let query = self.next_query;
        self.next_query = self.next_query.wrapping_add(1);
        self.queries.insert(
            query,
            Query {
                connections,
                answer: ask.answer,
            },
        );
        self.cluster.publish(
            vec![user_channel(&ask.user)],
            Control::ConnectionsAsked {
                user: ask.user,
                query,
            },
        );
        ctx.run_later(QUERY_WAIT, move |this, _ctx| this.finish_query(query));
    }
}

impl Handler<DisconnectUser> for Registry {
    type Result = ();

    fn handle(&mut self, disconnect: DisconnectUser, _ctx: &mut Self::Context) {
        // Every replica hears it, not only those with a connection now: a
        // refusal must hold wherever the user comes back.
        self.cluster.publish(
            vec![REPLICAS_CHANNEL.to_owned()],
            Control::UserDisconnected {
                user: disconnect.user.clone(),
                reason: disconnect.reason,
                until: now_millis() + disconnect.refuse_for.as_millis() as Millis,
            },
        );
        self.refuse(disconnect.user, disconnect.reason, disconnect.refuse_for);
    }
}
