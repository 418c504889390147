//! The registry: which rooms run on this replica and who is in them.
//!
//! All membership changes go through here, so a room is retired only when
//! the registry knows it is empty, and a join can never reach a room that is
//! shutting down: the next join simply starts a fresh room actor.
//!
//! Here: the messages, the registry's state and its start. Beside it, by
//! concern: `connections` (sessions, single session, refusals, admins'
//! feed), `rooms` (start, members, retirement), `remote` (what other
//! replicas send), `backend` (the server API's rooms and questions).

mod backend;
mod connections;
mod remote;
mod rooms;
mod threads;

pub use backend::{
    AskConnections, Connection, DisconnectUser, Publish, Watch, QUERY_WAIT, ROOM_LINGER,
};
pub use threads::RoomThreads;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::room::Room;
use super::{Drain, Evict, Outgoing, SessionId, SetAvatar};
use crate::cluster::{node_channel, ClusterHandle, REPLICAS_CHANNEL};
use crate::hooks::Hooks;
use crate::store::backlog::Backlog;
use crate::store::{Millis, Receipt, Store};

/// How often the replicas tell each other who spent their message budget.
const BUDGET_REPORT: Duration = Duration::from_secs(1);
/// Users in one report envelope at most (about 50 bytes each).
const SPENT_PER_REPORT: usize = 4096;

/// A WebSocket connection of `user` opened.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connect {
    pub session: SessionId,
    pub user: String,
    /// The login (HTTP session) the connection was opened with.
    pub login: Option<String>,
    /// Gets every connection event: in `ADMIN_USERS`, with an account the
    /// operator made (or the auth webhook vouched for).
    pub admin: bool,
    pub socket: Recipient<Outgoing>,
    pub avatar: Recipient<SetAvatar>,
    pub drain: Recipient<Drain>,
    pub evict: Recipient<Evict>,
}

/// The connection has sent its first frame (or stayed silent for a while).
/// Until then the direct rooms it became a silent member of hold its
/// messages back ([`Activate`](crate::chat::room::Activate)): a reconnecting client's `resume`
/// would otherwise be overtaken by live messages of the same room, which
/// it would then see twice and out of order.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Ready {
    pub session: SessionId,
}

/// A connection fetched direct messages that were waiting for it; their
/// senders who asked are told, wherever they are connected.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ConfirmDeliveries(pub Vec<Receipt>);

/// The replica is shutting down: every connection, present and late, is
/// told to move to another replica and closed after `close_after`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DrainAll {
    pub close_after: Duration,
}

/// What still runs during a drain.
#[derive(Message)]
#[rtype(result = "DrainProgress")]
pub struct DrainStatus;

#[derive(MessageResponse, Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainProgress {
    /// Open connections.
    pub connections: usize,
    /// Rooms running, or retired but still storing their last messages.
    pub rooms: usize,
}

/// A connection closed: it leaves every room it was in.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    pub session: SessionId,
}

/// A login logged out: its connections here and on every replica close.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EndLogin {
    pub user: String,
    pub login: String,
}

/// A connection joins `room` (public, or a direct room of its user); the
/// reply is the room to post to. `None` if the connection is unknown.
#[derive(Message)]
#[rtype(result = "Option<Addr<Room>>")]
pub struct JoinRoom {
    pub session: SessionId,
    pub room: String,
    /// Resuming after `seq` (see [`Join::since`](crate::chat::room::Join::since)).
    pub since: Option<u64>,
}

/// A connection leaves a public room. Direct rooms cannot be left: a user's
/// connections always receive their direct messages.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LeaveRoom {
    pub session: SessionId,
    pub room: String,
}

/// `user` writes to `peer`: the reply is their direct room, started (with
/// every connection of both as members) if needed.
#[derive(Message)]
#[rtype(result = "Addr<Room>")]
pub struct OpenDirect {
    pub user: String,
    pub peer: String,
}

/// `user` has a new profile photo; their connections should use it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AvatarChanged {
    pub user: String,
    pub avatar: Option<String>,
}

struct SessionEntry {
    user: String,
    login: Option<String>,
    socket: Recipient<Outgoing>,
    avatar: Recipient<SetAvatar>,
    drain: Recipient<Drain>,
    evict: Recipient<Evict>,
    connected_at: Millis,
    rooms: HashSet<String>,
    /// See [`Ready`].
    ready: bool,
}

/// What a registry does beyond rooms: who it is, who administers, and the
/// connection policies.
pub struct Policies {
    /// This replica's name, in connection events.
    pub node: String,
    pub hooks: Arc<Hooks>,
    /// Users whose connections receive connection events.
    pub admins: HashSet<String>,
    /// At most one connection per user, cluster-wide.
    pub single_session: bool,
    /// Users' message budgets: what they spend here is told to the other
    /// replicas, and what they spend there is charged here.
    pub budgets: Arc<crate::app::budget::Budgets>,
}

struct RoomEntry {
    addr: Addr<Room>,
    members: HashSet<SessionId>,
}

pub struct Registry {
    store: Arc<dyn Store>,
    cluster: ClusterHandle,
    /// Shared by every room: what waits for the store.
    backlog: Backlog,
    /// Where room actors run: the HTTP workers' threads, round-robin.
    threads: RoomThreads,
    rooms_started: usize,
    rooms: HashMap<String, RoomEntry>,
    sessions: HashMap<SessionId, SessionEntry>,
    users: HashMap<String, HashSet<SessionId>>,
    /// Running direct rooms by participant, so a new connection finds its
    /// conversations without scanning every room.
    direct_rooms: HashMap<String, HashSet<String>>,
    /// Rooms told to shut down; they stop once their writes are stored.
    retiring: Vec<Addr<Room>>,
    /// Set once the replica drains: how long connections get to leave.
    draining: Option<Duration>,
    policies: Policies,
    /// Local admin connections.
    admin_sessions: HashSet<SessionId>,
    /// Users whose new connections are closed at once, until when, and
    /// why: revoked by the validity hook (until its next check), or
    /// disconnected by a backend for a while.
    refused: HashMap<String, (Evict, Instant)>,
    /// Rooms a backend used lately (see [`ROOM_LINGER`]), and when.
    watched: HashMap<String, Instant>,
    /// Backends' questions to the other replicas, waiting for answers.
    queries: HashMap<u64, backend::Query>,
    next_query: u64,
}

impl Registry {
    pub fn new(
        store: Arc<dyn Store>,
        cluster: ClusterHandle,
        threads: RoomThreads,
        policies: Policies,
        backlog: Backlog,
    ) -> Self {
        Self {
            store,
            cluster,
            backlog,
            threads,
            rooms_started: 0,
            rooms: HashMap::new(),
            sessions: HashMap::new(),
            users: HashMap::new(),
            direct_rooms: HashMap::new(),
            retiring: Vec::new(),
            draining: None,
            policies,
            admin_sessions: HashSet::new(),
            refused: HashMap::new(),
            watched: HashMap::new(),
            queries: HashMap::new(),
            next_query: 0,
        }
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.cluster
            .attach(ctx.address().recipient(), ctx.address().recipient());
        if self.cluster.is_clustered() {
            self.cluster
                .subscribe(node_channel(&self.policies.node), None);
            self.cluster.subscribe(REPLICAS_CHANNEL.to_owned(), None);
        }
        ctx.run_interval(backend::SWEEP, |this, _ctx| this.sweep_watched());
        ctx.run_interval(BUDGET_REPORT, |this, _ctx| this.report_spending());
        if let Some(every) = self.policies.hooks.validity_interval() {
            ctx.run_interval(every, |this, ctx| this.check_validity(ctx));
        }
    }
}

impl Registry {
    /// Tells the other replicas who spent a notable share of their message
    /// budget here (see [`crate::app::budget`]).
    fn report_spending(&mut self) {
        let spent = self.policies.budgets.report();
        if spent.is_empty() || !self.cluster.is_clustered() {
            return;
        }
        // Well under the envelope's size limit each, however many spent.
        for part in spent.chunks(SPENT_PER_REPORT) {
            self.cluster.publish(
                vec![REPLICAS_CHANNEL.to_owned()],
                crate::cluster::Control::Spent {
                    spent: part.to_vec(),
                },
            );
        }
    }
}

impl Handler<DrainAll> for Registry {
    type Result = ();

    fn handle(&mut self, drain: DrainAll, _ctx: &mut Self::Context) {
        self.draining = Some(drain.close_after);
        // Rooms kept for backends go now: the drain waits for every room.
        let watched: Vec<String> = self.watched.keys().cloned().collect();
        for room in watched {
            self.unwatch(&room);
        }
        for entry in self.sessions.values() {
            entry.drain.do_send(Drain {
                close_after: drain.close_after,
            });
        }
    }
}

impl Handler<DrainStatus> for Registry {
    type Result = DrainProgress;

    fn handle(&mut self, _: DrainStatus, _ctx: &mut Self::Context) -> DrainProgress {
        self.retiring.retain(Addr::connected);
        DrainProgress {
            connections: self.sessions.len(),
            rooms: self.rooms.len() + self.retiring.len(),
        }
    }
}
